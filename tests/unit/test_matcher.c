/* The activity rules (src/engine/matcher.c) on a temp-file store: direction, exactly one
 * activity per (profile, message) whichever side and source logs it, never-log lists, internal
 * mail, source trust, aliases, backfill and erasure. Messages are built by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/matcher.h"
#include "lib/str.h"
#include "mime/message.h"
#include "store/store.h"
#include "store/store_activity.h"
#include "store/store_message.h"
#include "store/store_never_log.h"
#include "store/store_org.h"
#include "store/store_profile.h"
#include "store/store_user.h"
#include "temp_store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define A_ADDR    "a@staffing.example"
#define B_ADDR    "b@staffing.example"
#define JACK_ADDR "jack@candidates.example"

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct store *store;
	char org[MT_ID_MAX];
	char user_a[MT_ID_MAX], user_b[MT_ID_MAX];
	char jack[MT_ID_MAX];
};

/* A message under construction, with room for its arrays. */
struct tmsg {
	struct store_message m;
	struct store_mailbox to[4], cc[4], bcc[2];
};

/* One argument block for the jobs. */
struct call {
	const char *org_id, *user_id, *id, *key;
	const char *thread_id; /* the timeline's filter; NULL: none */
	enum store_source source;
	struct tmsg t;
	struct matcher_result result;
	struct store_org org;
	struct store_user user;
	struct store_profile profile;
	struct store_never_log never;
	enum store_never_log_scope scope;
	struct store_activity_list list;
	char key_r[MT_MESSAGE_KEY_MAX];
	enum store_source source_r;
	size_t count;
	int64_t since;
};

static struct call *call_new(void)
{
	struct call *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	return c;
}

JOB(j_org_create, store_org_create(tx, &c->org))
JOB(j_user_create, store_user_create(tx, &c->user))
JOB(j_profile_create, store_profile_create(tx, &c->profile))
JOB(j_profile_delete, store_profile_delete(tx, c->org_id, c->id))
JOB(j_never_put, store_never_log_put(tx, c->org_id, c->scope, c->id, &c->never))
JOB(j_log, matcher_log_message(tx, c->org_id, c->user_id, c->source, &c->t.m, &c->result))
JOB(j_backfill, matcher_backfill_profile(tx, c->org_id, c->id, &c->count))
JOB(j_msg_acts, store_message_activities(tx, c->org_id, c->key, &c->list))
JOB(j_lookup, store_message_lookup(tx, c->org_id, &c->t.m, c->key_r, &c->source_r))
JOB(j_feed, store_activity_feed(tx, c->org_id, c->since, 1000, &c->list))
JOB(j_feed_page, store_activity_feed(tx, c->org_id, c->since, c->count, &c->list))
JOB(j_tomb_purge, store_tombstones_purge(tx, c->since, &c->count))
JOB(j_timeline, store_profile_activities(tx, c->org_id, c->id, c->thread_id, NULL, 100, &c->list))

static int run(struct fixture *f, enum store_job_kind kind, store_job_fn *fn, struct call *c)
{
	return store_run(f->store, kind, fn, c);
}

static void make_user(struct fixture *f, const char *email, char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->user.org_id, sizeof(c->user.org_id), "%s", f->org);
	snprintf(c->user.email, sizeof(c->user.email), "%s", email);
	snprintf(c->user.name, sizeof(c->user.name), "Recruiter");
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), 0);
	memcpy(id_r, c->user.id, MT_ID_MAX);
	free(c);
}

static void make_profile(struct fixture *f, const char *name, const char *email,
                         char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->profile.org_id, sizeof(c->profile.org_id), "%s", f->org);
	snprintf(c->profile.name, sizeof(c->profile.name), "%s", name);
	snprintf(c->profile.emails[0], sizeof(c->profile.emails[0]), "%s", email);
	c->profile.email_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_profile_create, c), 0);
	memcpy(id_r, c->profile.id, MT_ID_MAX);
	free(c);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (temp_store_open("test_matcher", f->dir, f->path, &f->store) < 0)
		return -1;
	struct call *c = call_new();
	snprintf(c->org.name, sizeof(c->org.name), "Staffing");
	snprintf(c->org.domains[0], sizeof(c->org.domains[0]), "staffing.example");
	c->org.domain_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_org_create, c), 0);
	memcpy(f->org, c->org.id, MT_ID_MAX);
	free(c);
	make_user(f, A_ADDR, f->user_a);
	make_user(f, B_ADDR, f->user_b);
	make_profile(f, "Jack", JACK_ADDR, f->jack);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	temp_store_close(f->dir, f->path, &f->store);
	free(f);
	return 0;
}

/* ---- building messages ---- */

static void msg_init(struct tmsg *t, const char *mid, const char *mt, const char *from,
                     const char *subject)
{
	memset(t, 0, sizeof(*t));
	if (mid != NULL) {
		snprintf(t->m.aliases[t->m.alias_count++], MT_MESSAGE_KEY_MAX, "mid:%s", mid);
		snprintf(t->m.message_id, sizeof(t->m.message_id), "%s", mid);
	}
	if (mt != NULL)
		snprintf(t->m.aliases[t->m.alias_count++], MT_MESSAGE_KEY_MAX, "mt:%s", mt);
	t->m.date = 1700000000;
	if (from != NULL)
		snprintf(t->m.from.address, sizeof(t->m.from.address), "%s", from);
	snprintf(t->m.subject, sizeof(t->m.subject), "%s", subject);
	snprintf(t->m.snippet, sizeof(t->m.snippet), "text of %s", subject);
	t->m.to = t->to;
	t->m.cc = t->cc;
	t->m.bcc = t->bcc;
}

static void msg_to(struct tmsg *t, const char *address)
{
	snprintf(t->to[t->m.to_count++].address, MT_ADDRESS_MAX + 1, "%s", address);
}

static void msg_cc(struct tmsg *t, const char *address)
{
	snprintf(t->cc[t->m.cc_count++].address, MT_ADDRESS_MAX + 1, "%s", address);
}

static void msg_bcc(struct tmsg *t, const char *address)
{
	snprintf(t->bcc[t->m.bcc_count++].address, MT_ADDRESS_MAX + 1, "%s", address);
}

/* Logs c->t as `user` through `source`; returns the outcome. */
static enum matcher_outcome log_as(struct fixture *f, struct call *c, const char *user,
                                   enum store_source source)
{
	c->org_id = f->org;
	c->user_id = user;
	c->source = source;
	assert_int_equal(run(f, STORE_WRITE, j_log, c), 0);
	return c->result.outcome;
}

/* What a CRM mirroring the feed holds after replaying it from the start in pages of `page`:
 * activities upserted by id, tombstones deleting theirs. Fills ids_r (up to `max`) and returns
 * how many; *last_r is the last next_cursor. Positions must rise strictly across pages. */
static size_t mirror_replay(struct fixture *f, size_t page, char (*ids_r)[MT_ID_MAX], size_t max,
                            int64_t *last_r)
{
	struct call *c = call_new();
	size_t n = 0;
	int64_t prev = 0;
	c->org_id = f->org;
	c->since = 0;
	for (;;) {
		c->count = page;
		assert_int_equal(run(f, STORE_READ, j_feed_page, c), 0);
		if (c->list.count == 0)
			break;
		for (size_t i = 0; i < c->list.count; i++) {
			const struct store_activity *a = &c->list.items[i];
			assert_true(a->seq > prev);
			prev = a->seq;
			size_t k = 0;
			while (k < n && strcmp(ids_r[k], a->id) != 0)
				k++;
			if (a->deleted) {
				assert_null(a->users_json);
				if (k < n) {
					memmove(ids_r[k], ids_r[k + 1],
					        (n - k - 1) * sizeof(*ids_r));
					n--;
				}
			} else if (k == n) {
				assert_true(n < max);
				memcpy(ids_r[n++], a->id, MT_ID_MAX);
			}
		}
		c->since = strtoll(c->list.next_cursor, NULL, 10);
		store_activity_list_free(&c->list);
	}
	*last_r = c->since;
	free(c);
	return n;
}

/* The activities of a message, into c->list (the caller frees). */
static size_t activities_of(struct fixture *f, struct call *c, const char *key)
{
	c->org_id = f->org;
	c->key = key;
	assert_int_equal(run(f, STORE_READ, j_msg_acts, c), 0);
	return c->list.count;
}

static void set_never_log(struct fixture *f, enum store_never_log_scope scope, const char *user,
                          const char *entry)
{
	struct call *c = call_new();
	char entries[1][MT_ADDRESS_MAX + 1];
	snprintf(entries[0], sizeof(entries[0]), "%s", entry != NULL ? entry : "");
	c->org_id = f->org;
	c->scope = scope;
	c->id = user;
	c->never.entries = entries;
	c->never.count = entry != NULL ? 1 : 0;
	assert_int_equal(run(f, STORE_WRITE, j_never_put, c), 0);
	free(c);
}

static bool stored(struct fixture *f, struct call *c)
{
	c->org_id = f->org;
	int rc = run(f, STORE_READ, j_lookup, c);
	assert_true(rc == 0 || rc == STORE_NOT_FOUND);
	return rc == 0;
}

/* ---- tests ---- */

static void test_one_activity_from_both_sides(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	msg_init(&c->t, "m1@staffing.example", NULL, A_ADDR, "Interview");
	msg_to(&c->t, JACK_ADDR);
	msg_cc(&c->t, B_ADDR);

	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.type, STORE_EMAIL_SENT);
	assert_int_equal(c->result.profiles_matched, 1);
	assert_int_equal(c->result.activities_created, 1);
	assert_string_equal(c->result.key, "mid:m1@staffing.example");
	assert_int_equal(activities_of(f, c, "mid:m1@staffing.example"), 1);
	int64_t first_seq = c->list.items[0].seq;
	store_activity_list_free(&c->list);

	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 0);
	assert_int_equal(activities_of(f, c, "mid:m1@staffing.example"), 1);
	assert_int_equal(c->list.items[0].seq, first_seq); /* nothing changed: not moved */
	store_activity_list_free(&c->list);

	/* B's mailbox: the same answer, and B joins the users. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(log_as(f, c, f->user_b, STORE_SOURCE_IMAP), MATCHER_LOGGED);
		assert_int_equal(c->result.type, STORE_EMAIL_SENT);
		assert_int_equal(c->result.profiles_matched, 1);
		assert_int_equal(c->result.activities_created, 0);
	}
	assert_int_equal(activities_of(f, c, "mid:m1@staffing.example"), 1);
	struct store_activity *a = &c->list.items[0];
	assert_string_equal(a->profile_id, f->jack);
	assert_int_equal(a->type, STORE_EMAIL_SENT);
	assert_true(a->seq > first_seq); /* the new user moved it in the feed, once */
	assert_non_null(strstr(a->users_json, f->user_a));
	assert_non_null(strstr(a->users_json, f->user_b));
	assert_non_null(strstr(a->users_json, "\"email\":\"" A_ADDR "\""));
	assert_non_null(strstr(a->users_json, "\"email\":\"" B_ADDR "\""));
	store_activity_list_free(&c->list);

	/* The feed holds it once. */
	c->since = 0;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 1);
	store_activity_list_free(&c->list);

	/* Jack's reply is "Email Received". */
	msg_init(&c->t, "reply1@candidates.example", NULL, JACK_ADDR, "Re: Interview");
	msg_to(&c->t, A_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.type, STORE_EMAIL_RECEIVED);
	assert_int_equal(c->result.activities_created, 1);
	c->id = f->jack;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 2);
	store_activity_list_free(&c->list);
	free(c);
}

static void test_never_log(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();

	/* The org's domain entry. */
	set_never_log(f, STORE_NEVER_LOG_ORG, NULL, "candidates.example");
	msg_init(&c->t, "n1@staffing.example", NULL, A_ADDR, "hidden");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_NEVER_LOG);
	assert_false(stored(f, c));
	/* A subdomain participant, here only in Bcc. */
	msg_init(&c->t, "n2@staffing.example", NULL, A_ADDR, "hidden too");
	msg_to(&c->t, "someone@elsewhere.example");
	msg_bcc(&c->t, "x@mail.candidates.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_NEVER_LOG);
	assert_false(stored(f, c));
	/* A label boundary: "xcandidates.example" is not under it. */
	msg_init(&c->t, "n3@staffing.example", NULL, A_ADDR, "not hidden");
	msg_to(&c->t, "y@xcandidates.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_LOGGED);

	/* A subdomain entry does not cover its parent. */
	set_never_log(f, STORE_NEVER_LOG_ORG, NULL, "mail.candidates.example");
	msg_init(&c->t, "n4@staffing.example", NULL, A_ADDR, "to jack");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	msg_init(&c->t, "n5@staffing.example", NULL, "ceo@mail.candidates.example", "from sub");
	msg_to(&c->t, A_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_NEVER_LOG);
	set_never_log(f, STORE_NEVER_LOG_ORG, NULL, NULL);

	/* A user's own entry applies to that user's mail only. */
	set_never_log(f, STORE_NEVER_LOG_USER, f->user_a, JACK_ADDR);
	msg_init(&c->t, "n6@staffing.example", NULL, A_ADDR, "private to A");
	msg_to(&c->t, JACK_ADDR);
	msg_cc(&c->t, B_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_NEVER_LOG);
	assert_false(stored(f, c));
	assert_int_equal(log_as(f, c, f->user_b, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 1);
	assert_int_equal(activities_of(f, c, "mid:n6@staffing.example"), 1);
	assert_non_null(strstr(c->list.items[0].users_json, f->user_b));
	assert_null(strstr(c->list.items[0].users_json, f->user_a));
	store_activity_list_free(&c->list);
	free(c);
}

static void test_internal_and_empty(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	/* Everyone in the org's domain or a subdomain of it. */
	msg_init(&c->t, "i1@staffing.example", NULL, A_ADDR, "lunch?");
	msg_to(&c->t, B_ADDR);
	msg_cc(&c->t, "ops@eu.staffing.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_INTERNAL_ONLY);
	assert_false(stored(f, c));
	/* One outsider makes it loggable. */
	msg_cc(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 1);
	/* No From, no recipients. */
	msg_init(&c->t, "e1@x.example", NULL, NULL, "nobody");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_NO_PARTICIPANTS);
	assert_false(stored(f, c));
	/* Recipients without From still count. */
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.type, STORE_EMAIL_RECEIVED);
	free(c);
}

static void test_trust(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	msg_init(&c->t, "tr@staffing.example", NULL, A_ADDR, "bcc copy");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_BCC), MATCHER_LOGGED);
	assert_int_equal(activities_of(f, c, "mid:tr@staffing.example"), 1);
	int64_t seq = c->list.items[0].seq;
	store_activity_list_free(&c->list);

	/* Weaker: nothing changes, nothing moves. */
	snprintf(c->t.m.subject, sizeof(c->t.m.subject), "addin copy");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_ADDIN), MATCHER_LOGGED);
	assert_int_equal(activities_of(f, c, "mid:tr@staffing.example"), 1);
	assert_string_equal(c->list.items[0].subject, "bcc copy");
	assert_int_equal(c->list.items[0].source, STORE_SOURCE_BCC);
	assert_int_equal(c->list.items[0].seq, seq);
	store_activity_list_free(&c->list);

	/* Stronger: the content is replaced and the activity moves to the feed's end. */
	snprintf(c->t.m.subject, sizeof(c->t.m.subject), "imap copy");
	c->t.m.date += 60;
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(activities_of(f, c, "mid:tr@staffing.example"), 1);
	assert_string_equal(c->list.items[0].subject, "imap copy");
	assert_int_equal(c->list.items[0].source, STORE_SOURCE_IMAP);
	assert_int_equal(c->list.items[0].date, c->t.m.date);
	assert_true(c->list.items[0].seq > seq);
	seq = c->list.items[0].seq;
	store_activity_list_free(&c->list);
	c->since = seq - 1;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 1);
	assert_string_equal(c->list.items[0].subject, "imap copy");
	store_activity_list_free(&c->list);
	free(c);
}

static void test_aliases(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	/* Our outbox copy: our Message-ID and X-Mailtrail-Id. */
	msg_init(&c->t, "ours@staffing.example", "MT42", A_ADDR, "Offer");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 1);
	/* The provider rewrote the Message-ID in the Sent copy. */
	msg_init(&c->t, "rewritten@provider.example", "MT42", A_ADDR, "Offer");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_string_equal(c->result.key, "mid:ours@staffing.example");
	assert_int_equal(c->result.activities_created, 0);
	/* A copy with only our header. */
	msg_init(&c->t, NULL, "MT42", A_ADDR, "Offer");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_b, STORE_SOURCE_BCC), MATCHER_LOGGED);
	assert_string_equal(c->result.key, "mid:ours@staffing.example");
	assert_int_equal(c->result.activities_created, 0);
	/* And the rewritten id alone now finds it too. */
	msg_init(&c->t, "rewritten@provider.example", NULL, A_ADDR, "Offer");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_string_equal(c->result.key, "mid:ours@staffing.example");

	assert_int_equal(activities_of(f, c, "mid:ours@staffing.example"), 1);
	assert_int_equal(c->list.items[0].source, STORE_SOURCE_OUTBOX);
	store_activity_list_free(&c->list);
	c->id = f->jack;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 1);
	store_activity_list_free(&c->list);
	free(c);
}

/* Copies seen out of order: first the Message-ID alone (an add-in copy), then our header alone
 * (a BCC copy whose Message-ID was rewritten), then a copy with both: two records that turn out to
 * be one message are merged, and Jack keeps one activity. */
static void test_aliases_out_of_order(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	msg_init(&c->t, "late@staffing.example", NULL, A_ADDR, "Interview");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_ADDIN), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 1);
	msg_init(&c->t, "other@provider.example", "MT77", A_ADDR, "Interview");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_b, STORE_SOURCE_BCC), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 1); /* not known yet to be the same */
	/* Jack's two activities, as a CRM following the feed has them. */
	char before[4][MT_ID_MAX];
	int64_t cursor;
	assert_int_equal(mirror_replay(f, 1000, before, 4, &cursor), 2);
	msg_init(&c->t, "late@staffing.example", "MT77", A_ADDR, "Interview");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 0);
	/* The merge leaves a tombstone for the duplicate and moves the one kept, after what the
	 * CRM has seen; replayed, the feed leaves the CRM with the one activity Jack has. */
	c->org_id = f->org;
	c->since = cursor;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 2);
	const struct store_activity *tomb = &c->list.items[c->list.items[0].deleted ? 0 : 1];
	const struct store_activity *kept = &c->list.items[c->list.items[0].deleted ? 1 : 0];
	assert_true(tomb->deleted && !kept->deleted);
	assert_string_equal(tomb->reason, "merged");
	assert_string_equal(tomb->profile_id, f->jack);
	assert_true(strcmp(tomb->id, kept->id) != 0);
	assert_true((strcmp(tomb->id, before[0]) == 0 && strcmp(kept->id, before[1]) == 0) ||
	            (strcmp(tomb->id, before[1]) == 0 && strcmp(kept->id, before[0]) == 0));
	char kept_id[MT_ID_MAX];
	memcpy(kept_id, kept->id, MT_ID_MAX);
	store_activity_list_free(&c->list);
	char after[4][MT_ID_MAX];
	assert_int_equal(mirror_replay(f, 1, after, 4, &cursor), 1);
	assert_string_equal(after[0], kept_id);
	c->id = f->jack;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	size_t interviews = 0;
	for (size_t i = 0; i < c->list.count; i++) {
		if (strcmp(c->list.items[i].subject, "Interview") != 0)
			continue;
		interviews++;
		assert_int_equal(c->list.items[i].source, STORE_SOURCE_OUTBOX);
		/* Both users' copies are on the one activity. */
		assert_non_null(strstr(c->list.items[i].users_json, f->user_a));
		assert_non_null(strstr(c->list.items[i].users_json, f->user_b));
	}
	assert_int_equal(interviews, 1);
	store_activity_list_free(&c->list);
	/* Every alias now finds the one record. */
	msg_init(&c->t, "other@provider.example", NULL, A_ADDR, "Interview");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 0);

	/* One record is left, and no alias, participant, user or activity row points to the one
	 * that was merged away. */
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	static const char *const counts[] = {
	    "SELECT COUNT(*) FROM message_records WHERE subject = 'Interview'",
	    "SELECT COUNT(*) - 1 FROM message_aliases a JOIN message_records r ON r.rid = a.rid"
	    " WHERE r.subject = 'Interview' AND a.alias IN ('mid:late@staffing.example',"
	    " 'mt:MT77', 'mid:other@provider.example')",
	    "SELECT COUNT(*) + 1 FROM message_aliases x"
	    " WHERE NOT EXISTS (SELECT 1 FROM message_records r WHERE r.rid = x.rid)",
	    "SELECT COUNT(*) + 1 FROM message_participants x"
	    " WHERE NOT EXISTS (SELECT 1 FROM message_records r WHERE r.rid = x.rid)",
	    "SELECT COUNT(*) + 1 FROM message_users x"
	    " WHERE NOT EXISTS (SELECT 1 FROM message_records r WHERE r.rid = x.rid)",
	    "SELECT COUNT(*) + 1 FROM activities x"
	    " WHERE NOT EXISTS (SELECT 1 FROM message_records r WHERE r.rid = x.rid)",
	};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		sqlite3_stmt *st;
		assert_int_equal(sqlite3_prepare_v2(raw, counts[i], -1, &st, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 1);
		sqlite3_finalize(st);
	}
	sqlite3_close(raw);
	free(c);
}

static void test_backfill_and_erasure(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	/* Mail with Jill before she is a profile. */
	msg_init(&c->t, "early1@staffing.example", NULL, A_ADDR, "before");
	msg_to(&c->t, "jill@candidates.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.profiles_matched, 0);
	msg_init(&c->t, "early2@candidates.example", NULL, "jill@candidates.example", "reply");
	msg_to(&c->t, A_ADDR);
	msg_cc(&c->t, "hr@client.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);

	/* The org now refuses mail with the client's HR: that record is not backfilled. */
	set_never_log(f, STORE_NEVER_LOG_ORG, NULL, "client.example");
	char jill[MT_ID_MAX];
	make_profile(f, "Jill", "jill@candidates.example", jill);
	c->org_id = f->org;
	c->id = jill;
	assert_int_equal(run(f, STORE_WRITE, j_backfill, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(run(f, STORE_WRITE, j_backfill, c), 0);
	assert_int_equal(c->count, 0);
	set_never_log(f, STORE_NEVER_LOG_ORG, NULL, NULL);
	c->id = jill;
	assert_int_equal(run(f, STORE_WRITE, j_backfill, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 2);
	assert_int_equal(c->list.items[0].type + c->list.items[1].type,
	                 STORE_EMAIL_SENT + STORE_EMAIL_RECEIVED);
	store_activity_list_free(&c->list);
	c->id = "prf_nobody";
	assert_int_equal(run(f, STORE_WRITE, j_backfill, c), STORE_NOT_FOUND);

	/* Erasure: her activities and the records no one else keeps go. */
	msg_init(&c->t, "both@staffing.example", NULL, A_ADDR, "both");
	msg_to(&c->t, "jill@candidates.example");
	msg_to(&c->t, JACK_ADDR);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 2);
	c->org_id = f->org;
	c->id = jill;
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, c), 0);
	msg_init(&c->t, "early1@staffing.example", NULL, NULL, "");
	assert_false(stored(f, c));
	msg_init(&c->t, "early2@candidates.example", NULL, NULL, "");
	assert_false(stored(f, c));
	msg_init(&c->t, "both@staffing.example", NULL, NULL, "");
	assert_true(stored(f, c));
	assert_int_equal(activities_of(f, c, "mid:both@staffing.example"), 1);
	assert_string_equal(c->list.items[0].profile_id, f->jack);
	store_activity_list_free(&c->list);
	free(c);
}

/* Erasing a profile leaves a tombstone per activity at new feed positions, in the erasing
 * transaction; a CRM replaying the feed keeps nothing of hers, whatever the page size; the
 * retention purge removes the tombstones by age and the feed stays consistent. */
static void test_tombstones(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	char jill[MT_ID_MAX];
	make_profile(f, "Jill", "jill@candidates.example", jill);
	msg_init(&c->t, "t1@staffing.example", NULL, A_ADDR, "to both");
	msg_to(&c->t, JACK_ADDR);
	msg_to(&c->t, "jill@candidates.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	msg_init(&c->t, "t2@staffing.example", NULL, A_ADDR, "to Jill");
	msg_to(&c->t, "jill@candidates.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	char ids[8][MT_ID_MAX];
	int64_t cursor;
	assert_int_equal(mirror_replay(f, 1000, ids, 8, &cursor), 3);

	c->org_id = f->org;
	c->id = jill;
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, c), 0);
	c->since = cursor;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 2);
	size_t found = 0;
	for (size_t i = 0; i < 2; i++) {
		const struct store_activity *t = &c->list.items[i];
		assert_true(t->deleted);
		assert_true(t->seq > cursor);
		assert_string_equal(t->reason, "profile_erased");
		assert_string_equal(t->profile_id, jill);
		assert_true(t->updated_at > 0);
		assert_string_equal(t->subject, "");
		for (size_t k = 0; k < 3; k++)
			found += strcmp(t->id, ids[k]) == 0;
	}
	assert_int_equal(found, 2);
	int64_t tomb_cursor = strtoll(c->list.next_cursor, NULL, 10);
	store_activity_list_free(&c->list);
	/* Replayed from the start, in pages of 1, 2 and 1000: only Jack's activity is left. */
	static const size_t pages[] = {1, 2, 1000};
	for (size_t p = 0; p < 3; p++) {
		char left[8][MT_ID_MAX];
		assert_int_equal(mirror_replay(f, pages[p], left, 8, &cursor), 1);
		assert_int_equal(cursor, tomb_cursor);
		assert_int_equal(activities_of(f, c, "mid:t1@staffing.example"), 1);
		assert_string_equal(left[0], c->list.items[0].id);
		store_activity_list_free(&c->list);
	}

	/* Retention: tombstones younger than the bound stay, older ones go. */
	c->since = mt_wall_s() - 3600;
	assert_int_equal(run(f, STORE_WRITE, j_tomb_purge, c), 0);
	assert_int_equal(c->count, 0);
	c->since = mt_wall_s() + 1;
	assert_int_equal(run(f, STORE_WRITE, j_tomb_purge, c), 0);
	assert_int_equal(c->count, 2);
	char left[8][MT_ID_MAX];
	assert_int_equal(mirror_replay(f, 1, left, 8, &cursor), 1);
	/* A cursor given before the purge is still a valid one: an empty page, not 400. */
	c->org_id = f->org;
	c->since = tomb_cursor;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 0);
	assert_int_equal(strtoll(c->list.next_cursor, NULL, 10), tomb_cursor);
	store_activity_list_free(&c->list);
	free(c);
}

static void test_from_summary(void **state)
{
	(void)state;
	struct mime_summary s;
	memset(&s, 0, sizeof(s));
	snprintf(s.message_id, sizeof(s.message_id), "abc@staffing.example");
	snprintf(s.mailtrail_id, sizeof(s.mailtrail_id), "MT7");
	s.date = 1700000000;
	snprintf(s.from.address, sizeof(s.from.address), A_ADDR);
	snprintf(s.from.name, sizeof(s.from.name), "Alice");
	struct mime_mailbox to[2] = {0}, cc[1] = {0};
	snprintf(to[0].address, sizeof(to[0].address), JACK_ADDR);
	snprintf(to[0].name, sizeof(to[0].name), "Jack");
	snprintf(to[1].address, sizeof(to[1].address), "jill@candidates.example");
	snprintf(cc[0].address, sizeof(cc[0].address), B_ADDR);
	s.to = to;
	s.to_count = 2;
	s.cc = cc;
	s.cc_count = 1;
	struct mime_attachment att = {.size = 42};
	snprintf(att.name, sizeof(att.name), "cv.pdf");
	snprintf(att.type, sizeof(att.type), "application/pdf");
	s.attachments = &att;
	s.attachment_count = 1;
	snprintf(s.subject, sizeof(s.subject), "Hello");
	snprintf(s.snippet, sizeof(s.snippet), "Hi Jack");
	snprintf(s.in_reply_to, sizeof(s.in_reply_to), "parent@candidates.example");
	snprintf(s.references[0], sizeof(s.references[0]), "root@staffing.example");
	snprintf(s.references[1], sizeof(s.references[1]), "parent@candidates.example");
	s.reference_count = 2;

	struct store_message *m = calloc(1, sizeof(*m));
	assert_int_equal(matcher_message_from_summary(&s, m), 0);
	assert_int_equal(m->alias_count, 2);
	assert_string_equal(m->aliases[0], "mid:abc@staffing.example");
	assert_string_equal(m->aliases[1], "mt:MT7");
	assert_string_equal(m->message_id, "abc@staffing.example");
	assert_int_equal(m->date, 1700000000);
	assert_string_equal(m->from.name, "Alice");
	assert_int_equal(m->to_count, 2);
	assert_string_equal(m->to[1].address, "jill@candidates.example");
	assert_string_equal(m->to[0].name, "Jack");
	assert_int_equal(m->cc_count, 1);
	assert_int_equal(m->bcc_count, 0);
	assert_null(m->bcc);
	assert_int_equal(m->attachment_count, 1);
	assert_int_equal(m->attachments[0].size, 42);
	assert_string_equal(m->subject, "Hello");
	assert_string_equal(m->snippet, "Hi Jack");
	assert_string_equal(m->in_reply_to, "parent@candidates.example");
	struct store_message *want = calloc(1, sizeof(*want));
	assert_non_null(want);
	matcher_set_thread_root(want, "root@staffing.example");
	assert_memory_equal(m->thread_root, want->thread_root, sizeof(want->thread_root));
	free(want);
	assert_string_equal(m->outbox_id, "");
	matcher_message_free(m);
	assert_null(m->to);
	assert_int_equal(m->to_count, 0);

	/* Neither id: one digest alias. */
	s.message_id[0] = s.mailtrail_id[0] = '\0';
	assert_int_equal(matcher_message_from_summary(&s, m), 0);
	assert_int_equal(m->alias_count, 1);
	assert_memory_equal(m->aliases[0], "sha:", 4);
	matcher_message_free(m);
	free(m);
}

/* A message prepared ahead (matcher_message_prepare(), as IMAP sync's workers do) is stored as
 * the same message logged without: the same JSON columns, participants column (with an address
 * JSON cannot hold, which makes the content lossy) and thread id. */
static void read_record(struct fixture *f, const char *key, char out[6][512])
{
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(raw,
	                                    "SELECT to_json, cc_json, bcc_json, attachments_json,"
	                                    " participants, thread_id FROM message_records"
	                                    " WHERE key = ?",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	for (int i = 0; i < 6; i++)
		snprintf(out[i], 512, "%s", (const char *)sqlite3_column_text(st, i));
	sqlite3_finalize(st);
	sqlite3_close(raw);
}

static void test_prepared_message(void **state)
{
	struct fixture *f = *state;
	static const char *const mids[2] = {"prepared@staffing.example", "plain@staffing.example"};
	char rows[2][6][512], want_thread[MT_ID_MAX];
	for (int k = 0; k < 2; k++) {
		struct call *c = call_new();
		msg_init(&c->t, NULL, NULL, A_ADDR, "Prepared");
		snprintf(c->t.m.aliases[c->t.m.alias_count++], MT_MESSAGE_KEY_MAX, "mid:%s",
		         mids[k]);
		msg_to(&c->t, JACK_ADDR);
		snprintf(c->t.to[0].name, sizeof(c->t.to[0].name), "Jack \"J\" Smith");
		msg_to(&c->t, "\xff\xfe@candidates.example"); /* not UTF-8: lossy */
		msg_cc(&c->t, "jill@candidates.example");
		struct store_attachment att = {.size = 42};
		snprintf(att.name, sizeof(att.name), "cv \xc3\xa9t\xc3\xa9.pdf");
		snprintf(att.type, sizeof(att.type), "application/pdf");
		c->t.m.attachments = &att;
		c->t.m.attachment_count = 1;
		if (k == 0) {
			matcher_thread_id(f->org, &c->t.m, want_thread);
			assert_int_equal(matcher_message_prepare(&c->t.m), 0);
			assert_non_null(c->t.m.columns);
			assert_true(c->t.m.columns->lossy);
			static const unsigned char none[STORE_THREAD_ROOT_BYTES];
			assert_memory_not_equal(c->t.m.thread_root, none, sizeof(none));
			/* what the write binds is the caller's: a marker proves it is not rebuilt
			 */
			struct store_message_columns *cols =
			    (struct store_message_columns *)c->t.m.columns;
			free(cols->bcc);
			cols->bcc = strdup("[\"prepared\"]");
		}
		assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
		assert_int_equal(c->result.activities_created, 1);
		char key[MT_MESSAGE_KEY_MAX];
		snprintf(key, sizeof(key), "mid:%s", mids[k]);
		read_record(f, key, rows[k]);
		if (k == 0) {
			struct store_message_columns *cols =
			    (struct store_message_columns *)c->t.m.columns;
			store_message_columns_free(cols);
			free(cols);
		}
		free(c);
	}
	assert_string_equal(rows[0][2], "[\"prepared\"]");
	assert_string_equal(rows[1][2], "[]");
	for (int i = 0; i < 5; i++) {
		if (i != 2)
			assert_string_equal(rows[0][i], rows[1][i]);
	}
	assert_non_null(strstr(rows[1][0], "Jack \\\"J\\\" Smith"));
	assert_non_null(strstr(rows[1][4], "candidates.example")); /* lossy: all listed */
	assert_string_equal(rows[0][5], want_thread);
}

/* ---- threads ---- */

static void test_thread_id_rule(void **state)
{
	(void)state;
	struct tmsg *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	msg_init(t, "b@x.example", NULL, JACK_ADDR, "Re: job");
	matcher_set_thread_root(&t->m, "a@x.example");
	char one[MT_ID_MAX], again[MT_ID_MAX], other_org[MT_ID_MAX], other_root[MT_ID_MAX];
	matcher_thread_id("org_1", &t->m, one);
	matcher_thread_id("org_1", &t->m, again);
	matcher_thread_id("org_2", &t->m, other_org);
	assert_string_equal(one, again);
	assert_true(matcher_thread_id_valid(one));
	assert_int_equal(strlen(one), 24);
	assert_memory_equal(one, "thr_", 4);
	assert_string_not_equal(one, other_org);
	/* the root alone decides: another message with the same root is in the same thread */
	msg_init(t, "c@x.example", "MT1", A_ADDR, "Re: Re: job");
	matcher_set_thread_root(&t->m, "a@x.example");
	matcher_thread_id("org_1", &t->m, again);
	assert_string_equal(one, again);
	matcher_set_thread_root(&t->m, "z@x.example");
	matcher_thread_id("org_1", &t->m, other_root);
	assert_string_not_equal(one, other_root);
	/* no root (no Message-ID, In-Reply-To or References): the first alias, a thread of its
	 * own */
	msg_init(t, NULL, "MT2", A_ADDR, "Alone");
	matcher_thread_id("org_1", &t->m, again);
	assert_true(matcher_thread_id_valid(again));
	assert_string_not_equal(one, again);
	/* the org is NUL-terminated in the digest: ("org_1", "2a@x") is not ("org_12", "a@x") */
	msg_init(t, "a@x.example", NULL, JACK_ADDR, "Hi");
	matcher_set_thread_root(&t->m, "2a@x");
	matcher_thread_id("org_1", &t->m, one);
	matcher_set_thread_root(&t->m, "a@x");
	matcher_thread_id("org_12", &t->m, again);
	assert_string_not_equal(one, again);
	free(t);

	static const char *const bad[] = {
	    "",
	    "thr_",
	    "thr_aaaaaaaaaaaaaaaaaaa",
	    "thr_aaaaaaaaaaaaaaaaaaaaa",
	    "THR_aaaaaaaaaaaaaaaaaaaa",
	    "thr_aaaaaaaaaaaaaaaaaaaA",
	    "thr_aaaaaaaaaaaaaaaaaaa1",
	    "msg_aaaaaaaaaaaaaaaaaaaa",
	    "thr_aaaaaaaaaaaaaaaaaa'-",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (matcher_thread_id_valid(bad[i]))
			fail_msg("\"%s\" taken for a thread id", bad[i]);
	}
	assert_true(matcher_thread_id_valid("thr_abcdefghijklmnopqr27"));
}

/* Jack's only activity of message `mid`, copied into *a_r. */
static void jack_activity(struct fixture *f, struct call *c, const char *mid,
                          struct store_activity *a_r)
{
	char key[MT_MESSAGE_KEY_MAX];
	snprintf(key, sizeof(key), "mid:%s", mid);
	assert_int_equal(activities_of(f, c, key), 1);
	*a_r = c->list.items[0];
	a_r->to_json = a_r->cc_json = a_r->attachments_json = a_r->users_json = NULL;
	store_activity_list_free(&c->list);
}

/* Our outbox id is on the one activity whichever copy came first: the IMAP Sent copy before
 * the outbox's (the outbox adds it), or after (it stays); a weaker copy later changes nothing. */
static void test_outbox_id_either_order(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	struct store_activity *a = calloc(1, sizeof(*a));
	assert_non_null(a);
	/* IMAP first, then the outbox */
	msg_init(&c->t, "sent1@staffing.example", "MT100", A_ADDR, "Offer");
	msg_to(&c->t, JACK_ADDR);
	matcher_set_thread_root(&c->t.m, "sent1@staffing.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	jack_activity(f, c, "sent1@staffing.example", a);
	assert_string_equal(a->outbox_id, "");
	assert_true(matcher_thread_id_valid(a->thread_id));
	char thread[MT_ID_MAX];
	snprintf(thread, sizeof(thread), "%s", a->thread_id);
	snprintf(c->t.m.outbox_id, sizeof(c->t.m.outbox_id), "msg_first");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 0);
	jack_activity(f, c, "sent1@staffing.example", a);
	assert_string_equal(a->outbox_id, "msg_first");
	assert_int_equal(a->source, STORE_SOURCE_OUTBOX);
	assert_string_equal(a->thread_id, thread);
	/* a BCC copy after it: still ours */
	c->t.m.outbox_id[0] = '\0';
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_BCC), MATCHER_LOGGED);
	jack_activity(f, c, "sent1@staffing.example", a);
	assert_string_equal(a->outbox_id, "msg_first");

	/* the outbox first, then IMAP (the provider rewrote the Message-ID: found by ours) */
	msg_init(&c->t, "sent2@staffing.example", "MT200", A_ADDR, "Offer 2");
	msg_to(&c->t, JACK_ADDR);
	snprintf(c->t.m.outbox_id, sizeof(c->t.m.outbox_id), "msg_second");
	matcher_set_thread_root(&c->t.m, "sent2@staffing.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_OUTBOX), MATCHER_LOGGED);
	msg_init(&c->t, "rewritten2@provider.example", "MT200", A_ADDR, "Offer 2");
	msg_to(&c->t, JACK_ADDR);
	matcher_set_thread_root(&c->t.m, "rewritten2@provider.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
	assert_int_equal(c->result.activities_created, 0);
	jack_activity(f, c, "sent2@staffing.example", a);
	assert_string_equal(a->outbox_id, "msg_second");
	assert_int_equal(a->source, STORE_SOURCE_OUTBOX);
	free(a);
	free(c);
}

/* A chain of three (our message, Jack's reply, our answer) logged newest first shares one
 * thread on Jack's timeline; an unrelated message is not in it; a record from before threads
 * (thread_id NULL) gets its thread when a copy is seen again. */
static void test_thread_chain_any_order(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	struct store_activity *a = calloc(1, sizeof(*a));
	assert_non_null(a);
	static const struct {
		const char *mid, *from, *to, *irt, *root;
	} chain[] = {
	    {"c3@staffing.example", A_ADDR, JACK_ADDR, "c2@candidates.example",
	     "c1@staffing.example"},
	    {"c2@candidates.example", JACK_ADDR, A_ADDR, "c1@staffing.example",
	     "c1@staffing.example"},
	    {"c1@staffing.example", A_ADDR, JACK_ADDR, "", "c1@staffing.example"},
	};
	char thread[MT_ID_MAX] = "";
	for (size_t i = 0; i < 3; i++) {
		msg_init(&c->t, chain[i].mid, NULL, chain[i].from, "Chain");
		msg_to(&c->t, chain[i].to);
		c->t.m.date += (int64_t)(3 - i) * 60;
		snprintf(c->t.m.in_reply_to, sizeof(c->t.m.in_reply_to), "%s", chain[i].irt);
		matcher_set_thread_root(&c->t.m, chain[i].root);
		assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);
		jack_activity(f, c, chain[i].mid, a);
		assert_string_equal(a->in_reply_to, chain[i].irt);
		if (i == 0)
			snprintf(thread, sizeof(thread), "%s", a->thread_id);
		assert_string_equal(a->thread_id, thread);
	}
	msg_init(&c->t, "other@staffing.example", NULL, A_ADDR, "Other");
	msg_to(&c->t, JACK_ADDR);
	matcher_set_thread_root(&c->t.m, "other@staffing.example");
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_IMAP), MATCHER_LOGGED);

	c->org_id = f->org;
	c->id = f->jack;
	c->thread_id = thread;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 3);
	for (size_t i = 0; i < 3; i++) /* newest first */
		assert_string_equal(c->list.items[i].message_id, chain[i].mid);
	store_activity_list_free(&c->list);
	c->thread_id = NULL;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 4);
	store_activity_list_free(&c->list);

	/* A record from before threads: its columns are NULL until a copy is seen again. */
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw,
	                              "UPDATE message_records SET thread_id = NULL, in_reply_to ="
	                              " NULL WHERE message_id = 'c2@candidates.example'",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(raw);
	jack_activity(f, c, "c2@candidates.example", a);
	assert_string_equal(a->thread_id, "");
	assert_string_equal(a->in_reply_to, "");
	msg_init(&c->t, chain[1].mid, NULL, chain[1].from, "Chain");
	msg_to(&c->t, chain[1].to);
	snprintf(c->t.m.in_reply_to, sizeof(c->t.m.in_reply_to), "%s", chain[1].irt);
	matcher_set_thread_root(&c->t.m, chain[1].root);
	assert_int_equal(log_as(f, c, f->user_a, STORE_SOURCE_ADDIN), MATCHER_LOGGED);
	jack_activity(f, c, "c2@candidates.example", a);
	assert_string_equal(a->thread_id, thread);
	assert_string_equal(a->in_reply_to, "c1@staffing.example");
	free(a);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_one_activity_from_both_sides, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_never_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_internal_and_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aliases_out_of_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backfill_and_erasure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tombstones, setup, teardown),
	    cmocka_unit_test(test_from_summary),
	    cmocka_unit_test_setup_teardown(test_prepared_message, setup, teardown),
	    cmocka_unit_test(test_thread_id_rule),
	    cmocka_unit_test_setup_teardown(test_outbox_id_either_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_thread_chain_any_order, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
