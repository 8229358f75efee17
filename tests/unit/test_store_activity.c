/* The store's message records, activities, feed and never-log lists, through store_run() on a
 * temp-file store (DESIGN.md §1 Activity, Message records, Never-log list). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_activity.h"
#include "store/store_message.h"
#include "store/store_never_log.h"
#include "store/store_org.h"
#include "store/store_profile.h"
#include "store/store_user.h"
#include "temp_store.h"
#include "store_gate.h"

#include <event2/event.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct store *store;
	char org[MT_ID_MAX], other_org[MT_ID_MAX];
	char user_a[MT_ID_MAX], user_b[MT_ID_MAX];
	char jack[MT_ID_MAX], jill[MT_ID_MAX];
};

/* One argument block for the small jobs below; big, so it lives on the heap. */
struct call {
	const char *org_id, *id, *key, *address, *cursor;
	const char *thread_id; /* store_message_put's, and the timeline's filter; NULL: none */
	size_t limit;
	int64_t since, before;
	enum store_source source;
	enum store_activity_type type;
	enum store_never_log_scope scope;
	struct store_org org;
	struct store_user user;
	struct store_profile profile;
	struct store_message msg;
	struct store_mailbox to[4], cc[4];
	struct store_attachment att[2];
	char key_r[MT_MESSAGE_KEY_MAX];
	enum store_source source_r;
	bool flag;
	int64_t date_r, rid;
	size_t count;
	char keys[8][MT_MESSAGE_KEY_MAX];
	char addresses[8][MT_ADDRESS_MAX + 1];
	struct store_activity_list list;
	struct store_never_log never;
	int is_user;
};

static struct call *call_new(void)
{
	struct call *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	return c;
}

JOB(j_org_create, store_org_create(tx, &c->org))
JOB(j_user_create, store_user_create(tx, &c->user))
JOB(j_user_deactivate, store_user_deactivate(tx, c->org_id, c->id))
JOB(j_profile_create, store_profile_create(tx, &c->profile))
JOB(j_profile_delete, store_profile_delete(tx, c->org_id, c->id))
JOB(j_lookup, store_message_lookup(tx, c->org_id, &c->msg, c->key_r, &c->source_r))
JOB(j_put, store_message_put(tx, c->org_id, c->key, c->source, c->type,
                             c->thread_id != NULL ? c->thread_id : "", &c->msg, &c->flag,
                             &c->date_r, &c->rid))
JOB(j_add_user, store_message_add_user(tx, c->rid, c->id, &c->flag))
JOB(j_ensure, store_activity_ensure(tx, c->org_id, c->id, c->key, &c->flag))
JOB(j_touch, store_activities_touch(tx, c->org_id, c->rid))
JOB(j_keys, store_message_keys_by_address(tx, c->org_id, c->address, c->keys, 8, &c->count))
JOB(j_parts, store_message_participants(tx, c->org_id, c->key, c->addresses, 8, &c->count))
JOB(j_purge, store_messages_purge(tx, c->before, &c->count))
JOB(j_timeline,
    store_profile_activities(tx, c->org_id, c->id, c->thread_id, c->cursor, c->limit, &c->list))
JOB(j_feed, store_activity_feed(tx, c->org_id, c->since, c->limit, &c->list))
JOB(j_msg_acts, store_message_activities(tx, c->org_id, c->key, &c->list))
JOB(j_never_get, store_never_log_get(tx, c->org_id, c->scope, c->id, &c->never))
JOB(j_never_put, store_never_log_put(tx, c->org_id, c->scope, c->id, &c->never))

static int j_is_user(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	c->is_user = store_address_is_user(tx, c->org_id, c->address);
	return c->is_user < 0 ? -1 : 0;
}

static int run(struct fixture *f, enum store_job_kind kind, store_job_fn *fn, struct call *c)
{
	return store_run(f->store, kind, fn, c);
}

static void make_org(struct fixture *f, const char *name, const char *domain, char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->org.name, sizeof(c->org.name), "%s", name);
	snprintf(c->org.domains[0], sizeof(c->org.domains[0]), "%s", domain);
	c->org.domain_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_org_create, c), 0);
	memcpy(id_r, c->org.id, MT_ID_MAX);
	free(c);
}

static void make_user(struct fixture *f, const char *org, const char *email, const char *alias,
                      char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->user.org_id, sizeof(c->user.org_id), "%s", org);
	snprintf(c->user.email, sizeof(c->user.email), "%s", email);
	snprintf(c->user.name, sizeof(c->user.name), "User %s", email);
	if (alias != NULL) {
		snprintf(c->user.aliases[0], sizeof(c->user.aliases[0]), "%s", alias);
		c->user.alias_count = 1;
	}
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), 0);
	memcpy(id_r, c->user.id, MT_ID_MAX);
	free(c);
}

static void make_profile(struct fixture *f, const char *org, const char *name, const char *email,
                         char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->profile.org_id, sizeof(c->profile.org_id), "%s", org);
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
	if (temp_store_open("test_store_activity", f->dir, f->path, &f->store) < 0)
		return -1;
	make_org(f, "Staffing", "staffing.example", f->org);
	make_org(f, "Other", "other.example", f->other_org);
	make_user(f, f->org, "a@staffing.example", "alice@staffing-alias.example", f->user_a);
	make_user(f, f->org, "b@staffing.example", NULL, f->user_b);
	make_profile(f, f->org, "Jack", "jack@candidates.example", f->jack);
	make_profile(f, f->org, "Jill", "jill@candidates.example", f->jill);
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

/* A message from a@ to the given recipient, identified by "mid:<mid>" (and "mt:<mt>"). */
static void fill_msg(struct call *c, const char *mid, const char *mt, int64_t date,
                     const char *from, const char *to, const char *subject)
{
	memset(&c->msg, 0, sizeof(c->msg));
	size_t n = 0;
	if (mid != NULL) {
		snprintf(c->msg.aliases[n++], MT_MESSAGE_KEY_MAX, "mid:%s", mid);
		snprintf(c->msg.message_id, sizeof(c->msg.message_id), "%s", mid);
	}
	if (mt != NULL)
		snprintf(c->msg.aliases[n++], MT_MESSAGE_KEY_MAX, "mt:%s", mt);
	c->msg.alias_count = n;
	c->msg.date = date;
	snprintf(c->msg.from.address, sizeof(c->msg.from.address), "%s", from);
	snprintf(c->msg.from.name, sizeof(c->msg.from.name), "Sender");
	snprintf(c->to[0].address, sizeof(c->to[0].address), "%s", to);
	snprintf(c->to[0].name, sizeof(c->to[0].name), "Jack \"J\" Smith");
	c->msg.to = c->to;
	c->msg.to_count = 1;
	snprintf(c->msg.subject, sizeof(c->msg.subject), "%s", subject);
	snprintf(c->msg.snippet, sizeof(c->msg.snippet), "Hello %s", subject);
	c->msg.attachments = c->att;
}

/* Puts a message and gives `profile` its activity; returns the key through c->key_r. */
static void log_msg(struct fixture *f, struct call *c, const char *profile, const char *user)
{
	c->org_id = f->org;
	if (run(f, STORE_READ, j_lookup, c) == STORE_NOT_FOUND)
		snprintf(c->key_r, sizeof(c->key_r), "%s", c->msg.aliases[0]);
	c->key = c->key_r;
	assert_int_equal(run(f, STORE_WRITE, j_put, c), 0);
	if (user != NULL) {
		c->id = user;
		assert_int_equal(run(f, STORE_WRITE, j_add_user, c), 0);
	}
	if (profile != NULL) {
		c->id = profile;
		assert_int_equal(run(f, STORE_WRITE, j_ensure, c), 0);
	}
}

static void test_source_names(void **state)
{
	(void)state;
	assert_string_equal(store_source_name(STORE_SOURCE_OUTBOX), "outbox");
	assert_string_equal(store_source_name(STORE_SOURCE_ADDIN), "addin");
	assert_int_equal(store_source_parse("imap"), STORE_SOURCE_IMAP);
	assert_int_equal(store_source_parse("bcc"), STORE_SOURCE_BCC);
	assert_int_equal(store_source_parse("pigeon"), 0);
	assert_true(STORE_SOURCE_OUTBOX > STORE_SOURCE_IMAP &&
	            STORE_SOURCE_IMAP > STORE_SOURCE_BCC && STORE_SOURCE_BCC > STORE_SOURCE_ADDIN);
}

static void test_record_aliases_and_trust(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	fill_msg(c, "m1@staffing.example", "T1", 1000, "a@staffing.example",
	         "jack@candidates.example", "first");
	c->org_id = f->org;
	assert_int_equal(run(f, STORE_READ, j_lookup, c), STORE_NOT_FOUND);
	c->key = "mid:m1@staffing.example";
	c->source = STORE_SOURCE_IMAP;
	c->type = STORE_EMAIL_SENT;
	snprintf(c->att[0].name, sizeof(c->att[0].name), "cv.pdf");
	snprintf(c->att[0].type, sizeof(c->att[0].type), "application/pdf");
	c->att[0].size = 12345;
	c->msg.attachment_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_put, c), 0);
	assert_false(c->flag);
	assert_int_equal(c->date_r, 1000);

	/* A copy showing only the X-Mailtrail-Id, and one with a rewritten Message-ID. */
	fill_msg(c, NULL, "T1", 1000, "a@staffing.example", "jack@candidates.example", "x");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), 0);
	assert_string_equal(c->key_r, "mid:m1@staffing.example");
	assert_int_equal(c->source_r, STORE_SOURCE_IMAP);
	fill_msg(c, "rewritten@provider.example", "T1", 1500, "a@staffing.example",
	         "jack@candidates.example", "weaker copy");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), 0);
	c->key = "mid:m1@staffing.example";
	c->source = STORE_SOURCE_BCC;
	assert_int_equal(run(f, STORE_WRITE, j_put, c), 0);
	assert_false(c->flag); /* weaker: the content stays */
	assert_int_equal(c->date_r, 1000);
	fill_msg(c, "rewritten@provider.example", NULL, 0, "", "", "");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), 0);
	assert_string_equal(c->key_r, "mid:m1@staffing.example");
	/* Another org never sees it. */
	c->org_id = f->other_org;
	assert_int_equal(run(f, STORE_READ, j_lookup, c), STORE_NOT_FOUND);
	c->org_id = f->org;

	/* Jack's activity takes the record's content. */
	c->id = f->jack;
	c->key = "mid:m1@staffing.example";
	assert_int_equal(run(f, STORE_WRITE, j_ensure, c), 0);
	assert_true(c->flag);
	assert_int_equal(run(f, STORE_WRITE, j_ensure, c), 0);
	assert_false(c->flag);
	assert_int_equal(run(f, STORE_READ, j_msg_acts, c), 0);
	assert_int_equal(c->list.count, 1);
	struct store_activity *a = &c->list.items[0];
	assert_string_equal(a->subject, "first");
	assert_int_equal(a->type, STORE_EMAIL_SENT);
	assert_int_equal(a->source, STORE_SOURCE_IMAP);
	assert_string_equal(a->message_id, "m1@staffing.example");
	assert_string_equal(a->from_address, "a@staffing.example");
	assert_int_equal(a->date, 1000);
	assert_string_equal(a->to_json, "[{\"address\":\"jack@candidates.example\","
	                                "\"name\":\"Jack \\\"J\\\" Smith\"}]");
	assert_string_equal(a->cc_json, "[]");
	assert_string_equal(a->attachments_json,
	                    "[{\"name\":\"cv.pdf\",\"type\":\"application/pdf\",\"size\":12345}]");
	assert_string_equal(a->users_json, "[]");
	int64_t seq = a->seq;
	store_activity_list_free(&c->list);

	/* A stronger source replaces the content, and the activity's date follows. */
	fill_msg(c, "m1@staffing.example", "T1", 2000, "a@staffing.example",
	         "jack@candidates.example", "from the outbox");
	c->key = "mid:m1@staffing.example";
	c->source = STORE_SOURCE_OUTBOX;
	assert_int_equal(run(f, STORE_WRITE, j_put, c), 0);
	assert_true(c->flag);
	assert_int_equal(c->date_r, 2000);
	assert_int_equal(run(f, STORE_WRITE, j_touch, c), 0);
	assert_int_equal(run(f, STORE_READ, j_msg_acts, c), 0);
	assert_int_equal(c->list.count, 1);
	assert_string_equal(c->list.items[0].subject, "from the outbox");
	assert_int_equal(c->list.items[0].source, STORE_SOURCE_OUTBOX);
	assert_int_equal(c->list.items[0].date, 2000);
	assert_true(c->list.items[0].seq > seq);
	assert_string_equal(c->list.items[0].attachments_json, "[]");
	store_activity_list_free(&c->list);

	/* Users, in the order they saw it. */
	c->id = f->user_b;
	assert_int_equal(run(f, STORE_WRITE, j_add_user, c), 0);
	assert_true(c->flag);
	assert_int_equal(run(f, STORE_WRITE, j_add_user, c), 0);
	assert_false(c->flag);
	c->id = f->user_a;
	assert_int_equal(run(f, STORE_WRITE, j_add_user, c), 0);
	assert_int_equal(run(f, STORE_READ, j_msg_acts, c), 0);
	char want[256];
	snprintf(want, sizeof(want),
	         "[{\"id\":\"%s\",\"email\":\"b@staffing.example\"},"
	         "{\"id\":\"%s\",\"email\":\"a@staffing.example\"}]",
	         f->user_b, f->user_a);
	if (strcmp(c->list.items[0].users_json, want) != 0) {
		/* Same second: the order falls back to the user id. */
		snprintf(
		    want, sizeof(want),
		    "[{\"id\":\"%s\",\"email\":\"%s\"},{\"id\":\"%s\",\"email\":\"%s\"}]",
		    strcmp(f->user_a, f->user_b) < 0 ? f->user_a : f->user_b,
		    strcmp(f->user_a, f->user_b) < 0 ? "a@staffing.example" : "b@staffing.example",
		    strcmp(f->user_a, f->user_b) < 0 ? f->user_b : f->user_a,
		    strcmp(f->user_a, f->user_b) < 0 ? "b@staffing.example" : "a@staffing.example");
	}
	assert_string_equal(c->list.items[0].users_json, want);
	store_activity_list_free(&c->list);

	/* Participants: the union of every copy's. */
	c->key = "mid:m1@staffing.example";
	assert_int_equal(run(f, STORE_READ, j_parts, c), 0);
	assert_int_equal(c->count, 2);
	assert_string_equal(c->addresses[0], "a@staffing.example");
	assert_string_equal(c->addresses[1], "jack@candidates.example");

	/* Not found: another org's profile, an unknown record. */
	c->id = f->jack;
	c->org_id = f->other_org;
	assert_int_equal(run(f, STORE_WRITE, j_ensure, c), STORE_NOT_FOUND);
	c->org_id = f->org;
	c->key = "mid:nope";
	assert_int_equal(run(f, STORE_WRITE, j_ensure, c), STORE_NOT_FOUND);
	/* A write in a read job is refused. */
	c->key = "mid:m1@staffing.example";
	assert_int_equal(run(f, STORE_READ, j_put, c), -1);
	free(c);
}

static void test_address_is_user(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	c->org_id = f->org;
	c->address = "a@staffing.example";
	assert_int_equal(run(f, STORE_READ, j_is_user, c), 0);
	assert_int_equal(c->is_user, 1);
	c->address = "alice@staffing-alias.example";
	assert_int_equal(run(f, STORE_READ, j_is_user, c), 0);
	assert_int_equal(c->is_user, 1);
	c->address = "jack@candidates.example";
	assert_int_equal(run(f, STORE_READ, j_is_user, c), 0);
	assert_int_equal(c->is_user, 0);
	c->org_id = f->other_org;
	c->address = "a@staffing.example";
	assert_int_equal(run(f, STORE_READ, j_is_user, c), 0);
	assert_int_equal(c->is_user, 0);
	/* A deactivated user's mail is still the org's. */
	c->org_id = f->org;
	c->id = f->user_b;
	assert_int_equal(run(f, STORE_WRITE, j_user_deactivate, c), 0);
	c->address = "b@staffing.example";
	assert_int_equal(run(f, STORE_READ, j_is_user, c), 0);
	assert_int_equal(c->is_user, 1);
	free(c);
}

static void test_feed(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	static char keys[10][MT_MESSAGE_KEY_MAX];
	int64_t rids[10];
	for (int i = 0; i < 10; i++) {
		char mid[32];
		snprintf(mid, sizeof(mid), "feed%d@x.example", i);
		fill_msg(c, mid, NULL, 1000 + i, "a@staffing.example", "jack@candidates.example",
		         "feed");
		c->source = STORE_SOURCE_IMAP;
		log_msg(f, c, f->jack, f->user_a);
		c->id = f->jill;
		assert_int_equal(run(f, STORE_WRITE, j_ensure, c), 0);
		snprintf(keys[i], sizeof(keys[i]), "%s", c->key_r);
		rids[i] = c->rid;
	}
	/* Pages of 3 see all 20 once, in strictly increasing order. */
	c->org_id = f->org;
	c->limit = 3;
	c->since = 0;
	size_t seen = 0;
	int64_t last = 0;
	for (;;) {
		assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
		for (size_t i = 0; i < c->list.count; i++) {
			assert_true(c->list.items[i].seq > last);
			last = c->list.items[i].seq;
		}
		seen += c->list.count;
		size_t n = c->list.count;
		store_activity_list_free(&c->list);
		char *end;
		int64_t next = strtoll(c->list.next_cursor, &end, 10);
		assert_true(*end == '\0');
		if (n == 0) {
			assert_int_equal(next, c->since); /* empty page: resume where we are */
			break;
		}
		assert_int_equal(next, last);
		c->since = next;
	}
	assert_int_equal(seen, 20);

	/* A touched message's activities move to the end; the reader sees them again once. */
	c->rid = rids[2];
	assert_int_equal(run(f, STORE_WRITE, j_touch, c), 0);
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 2);
	assert_string_equal(c->list.items[0].key, keys[2]);
	assert_string_equal(c->list.items[1].key, keys[2]);
	assert_true(c->list.items[0].seq > last && c->list.items[1].seq > c->list.items[0].seq);
	store_activity_list_free(&c->list);

	/* Another org's feed is its own. */
	c->org_id = f->other_org;
	c->since = 0;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 0);
	assert_string_equal(c->list.next_cursor, "0");
	store_activity_list_free(&c->list);
	free(c);
}

/* ---- feed positions across the jobs of one group commit ---- */

struct two_acts {
	struct call *c;
	const char (*profiles)[MT_ID_MAX];
	bool fail;
	int result;
};

/* Puts c->msg and gives both profiles their activity; fails afterwards when asked. */
static int j_two_acts(struct store_tx *tx, void *arg)
{
	struct two_acts *t = arg;
	struct call *c = t->c;
	bool replaced;
	int64_t date, rid;
	size_t created = 0;
	if (store_message_put(tx, c->org_id, c->msg.aliases[0], STORE_SOURCE_IMAP, STORE_EMAIL_SENT,
	                      "", &c->msg, &replaced, &date, &rid) != 0 ||
	    store_activities_ensure(tx, c->org_id, t->profiles, 2, c->msg.aliases[0], &created) !=
	        0 ||
	    created != 2)
		return -1;
	return t->fail ? -1 : 0;
}

/* The batch of two jobs and the loop waiting for both. */
struct two_batch {
	struct gate gate;
	int pending;
	struct event_base *base;
};

static struct two_batch *batch_of; /* the done callback's way back */

static void on_two_done(void *arg, int result)
{
	((struct two_acts *)arg)->result = result;
	if (--batch_of->pending == 0)
		event_base_loopbreak(batch_of->base);
}

/* A job that took feed positions and was rolled back inside a group commit must not leave the
 * next job of that commit numbering from a reservation that no longer exists: every later
 * transaction would then hand out the same numbers again (a UNIQUE failure, or a reader missing
 * rows below its cursor). */
static void feed_positions_after_rollback(struct fixture *f, enum store_job_kind kind)
{
	const char profiles[2][MT_ID_MAX];
	memcpy((char *)profiles[0], f->jack, MT_ID_MAX);
	memcpy((char *)profiles[1], f->jill, MT_ID_MAX);
	struct two_batch *g = calloc(1, sizeof(*g));
	g->base = event_base_new();
	batch_of = g;
	const char *error = NULL;
	struct store *s = store_open(f->path, g->base, &error);
	assert_non_null(s);

	struct call *failed = call_new(), *kept = call_new(), *later = call_new();
	fill_msg(failed, "rolled-back@x.example", NULL, 2000, "a@staffing.example",
	         "jack@candidates.example", "rolled back");
	fill_msg(kept, "kept@x.example", NULL, 2001, "a@staffing.example",
	         "jack@candidates.example", "kept");
	failed->org_id = kept->org_id = later->org_id = f->org;
	struct two_acts jobs[2] = {{failed, profiles, true, 0}, {kept, profiles, false, 0}};

	/* Hold the store thread so that both jobs are one batch. */
	gate_close(s, &g->gate);
	struct store_stats before, after;
	store_stats(s, &before);
	g->pending = 2;
	for (int i = 0; i < 2; i++)
		assert_int_equal(store_submit(s, kind, j_two_acts, on_two_done, &jobs[i]), 0);
	gate_open(&g->gate);
	event_base_dispatch(g->base);
	store_stats(s, &after);
	assert_int_equal(after.commits - before.commits, 1);
	assert_int_not_equal(jobs[0].result, 0);
	assert_int_equal(jobs[1].result, 0);
	store_close(&s);

	/* Two later transactions, one message each: their positions come after the kept ones. */
	for (int i = 0; i < 2; i++) {
		char mid[32];
		snprintf(mid, sizeof(mid), "later%d@x.example", i);
		fill_msg(later, mid, NULL, 2002 + i, "a@staffing.example",
		         "jack@candidates.example", "later");
		later->org_id = f->org;
		struct two_acts t = {later, profiles, false, 0};
		assert_int_equal(store_run(f->store, STORE_WRITE, j_two_acts, &t), 0);
	}
	struct call *c = call_new();
	c->org_id = f->org;
	c->since = 0;
	c->limit = 100;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 6);
	for (size_t i = 0; i < c->list.count; i++) {
		assert_true(i == 0 || c->list.items[i].seq > c->list.items[i - 1].seq);
		assert_string_not_equal(c->list.items[i].key, "mid:rolled-back@x.example");
	}
	assert_string_equal(c->list.items[0].key, "mid:kept@x.example");
	assert_string_equal(c->list.items[1].key, "mid:kept@x.example");
	assert_string_equal(c->list.items[5].key, "mid:later1@x.example");
	store_activity_list_free(&c->list);
	free(c);
	free(failed);
	free(kept);
	free(later);
	event_base_free(g->base);
	gate_destroy(&g->gate);
	free(g);
}

static void test_feed_positions_after_rollback(void **state)
{
	feed_positions_after_rollback(*state, STORE_WRITE);
}

/* The same without savepoints: the failed job rolls the transaction back (no replay: it was
 * the first), and the kept job's positions still follow. */
static void test_feed_positions_after_rollback_replayable(void **state)
{
	feed_positions_after_rollback(*state, STORE_WRITE | STORE_REPLAYABLE);
}

static void test_timeline(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	/* Dates out of order, two sharing a date. */
	static const int64_t dates[] = {5000, 1000, 3000, 3000, 4000, 2000};
	for (size_t i = 0; i < 6; i++) {
		char mid[32];
		snprintf(mid, sizeof(mid), "t%zu@x.example", i);
		fill_msg(c, mid, NULL, dates[i], "jack@candidates.example", "a@staffing.example",
		         mid);
		c->source = STORE_SOURCE_IMAP;
		c->type = STORE_EMAIL_RECEIVED;
		log_msg(f, c, f->jack, f->user_a);
	}
	c->org_id = f->org;
	c->id = f->jack;
	c->limit = 4;
	c->cursor = NULL;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 4);
	assert_int_equal(c->list.items[0].date, 5000);
	assert_int_equal(c->list.items[1].date, 4000);
	assert_int_equal(c->list.items[2].date, 3000);
	assert_int_equal(c->list.items[3].date, 3000);
	assert_true(strcmp(c->list.items[2].id, c->list.items[3].id) > 0);
	assert_int_equal(c->list.items[0].type, STORE_EMAIL_RECEIVED);
	assert_string_not_equal(c->list.next_cursor, "");
	char cursor[64];
	snprintf(cursor, sizeof(cursor), "%s", c->list.next_cursor);
	store_activity_list_free(&c->list);
	c->cursor = cursor;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 2);
	assert_int_equal(c->list.items[0].date, 2000);
	assert_int_equal(c->list.items[1].date, 1000);
	assert_string_equal(c->list.next_cursor, "");
	store_activity_list_free(&c->list);

	/* Exactly a page: no next page. */
	c->cursor = NULL;
	c->limit = 6;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 6);
	assert_string_equal(c->list.next_cursor, "");
	store_activity_list_free(&c->list);

	/* Not the org's profile, a cursor we did not make. */
	c->org_id = f->other_org;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), STORE_NOT_FOUND);
	c->org_id = f->org;
	c->cursor = "garbage";
	assert_int_equal(run(f, STORE_READ, j_timeline, c), STORE_INVALID);
	/* Jill has none. */
	c->cursor = NULL;
	c->id = f->jill;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 0);
	assert_string_equal(c->list.next_cursor, "");
	store_activity_list_free(&c->list);

	/* Backfill's index: newest first. */
	c->address = "jack@candidates.example";
	assert_int_equal(run(f, STORE_READ, j_keys, c), 0);
	assert_int_equal(c->count, 6);
	assert_string_equal(c->keys[0], "mid:t0@x.example");
	assert_string_equal(c->keys[5], "mid:t1@x.example");
	c->address = "nobody@x.example";
	assert_int_equal(run(f, STORE_READ, j_keys, c), 0);
	assert_int_equal(c->count, 0);
	free(c);
}

/* The record `key` is gone, and no alias, participant, user or activity row points to a record
 * that is not there. */
static void assert_gone(sqlite3 *raw, const char *key)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM message_records WHERE key = '%s'", key);
	static const char *const children[] = {"message_aliases", "message_participants",
	                                       "message_users", "activities"};
	for (size_t i = 0; i <= 4; i++) {
		if (i > 0)
			snprintf(sql, sizeof(sql),
			         "SELECT COUNT(*) FROM %s x WHERE NOT EXISTS"
			         " (SELECT 1 FROM message_records r WHERE r.rid = x.rid)",
			         children[i - 1]);
		sqlite3_stmt *st;
		assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 0);
		sqlite3_finalize(st);
	}
}

static void test_purge(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	/* Three records: an old one with an activity on Jack (the CRM's history: it stays), an old
	 * one nobody's profile has (kept only for backfill: it goes), and a new one. */
	fill_msg(c, "old@x.example", "OLD", 1000, "a@staffing.example", "jack@candidates.example",
	         "old");
	c->source = STORE_SOURCE_IMAP;
	log_msg(f, c, f->jack, f->user_a);
	fill_msg(c, "orphan@x.example", "ORPHAN", 1000, "a@staffing.example",
	         "nobody@elsewhere.example", "orphan");
	log_msg(f, c, NULL, f->user_a);
	fill_msg(c, "new@x.example", NULL, 2000, "a@staffing.example", "jack@candidates.example",
	         "new");
	log_msg(f, c, f->jack, f->user_a);

	/* Age two records behind the store's back. */
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	sqlite3_busy_timeout(raw, 5000);
	assert_int_equal(sqlite3_exec(raw,
	                              "UPDATE message_records SET last_seen = 100 WHERE key IN"
	                              " ('mid:old@x.example', 'mid:orphan@x.example')",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	c->before = 1000;
	assert_int_equal(run(f, STORE_WRITE, j_purge, c), 0);
	assert_int_equal(c->count, 1);
	c->org_id = f->org;
	c->id = f->jack;
	c->cursor = NULL;
	c->limit = 10;
	assert_int_equal(run(f, STORE_READ, j_timeline, c), 0);
	assert_int_equal(c->list.count, 2);
	store_activity_list_free(&c->list);
	fill_msg(c, NULL, "ORPHAN", 0, "", "", "");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), STORE_NOT_FOUND);
	fill_msg(c, NULL, "OLD", 0, "", "", "");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), 0);
	assert_gone(raw, "mid:orphan@x.example");
	sqlite3_close(raw);
	/* Nothing else can go. */
	assert_int_equal(run(f, STORE_WRITE, j_purge, c), 0);
	assert_int_equal(c->count, 0);
	free(c);
}

static void test_erasure(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	/* One message to Jack alone, one to Jack and Jill. */
	fill_msg(c, "only-jack@x.example", "OJ", 1000, "a@staffing.example",
	         "jack@candidates.example", "private");
	c->source = STORE_SOURCE_IMAP;
	log_msg(f, c, f->jack, f->user_a);
	fill_msg(c, "both@x.example", NULL, 2000, "a@staffing.example", "jack@candidates.example",
	         "shared");
	snprintf(c->cc[0].address, sizeof(c->cc[0].address), "jill@candidates.example");
	c->msg.cc = c->cc;
	c->msg.cc_count = 1;
	log_msg(f, c, f->jack, f->user_a);
	c->id = f->jill;
	assert_int_equal(run(f, STORE_WRITE, j_ensure, c), 0);

	c->org_id = f->other_org;
	c->id = f->jack;
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, c), STORE_NOT_FOUND);
	c->org_id = f->org;
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, c), 0);
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, c), STORE_NOT_FOUND);

	/* Jack's private mail is gone entirely; the shared one stays for Jill. */
	fill_msg(c, NULL, "OJ", 0, "", "", "");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), STORE_NOT_FOUND);
	fill_msg(c, "only-jack@x.example", NULL, 0, "", "", "");
	assert_int_equal(run(f, STORE_READ, j_lookup, c), STORE_NOT_FOUND);
	c->address = "jack@candidates.example";
	assert_int_equal(run(f, STORE_READ, j_keys, c), 0);
	assert_int_equal(c->count, 1);
	assert_string_equal(c->keys[0], "mid:both@x.example");
	c->key = "mid:both@x.example";
	assert_int_equal(run(f, STORE_READ, j_msg_acts, c), 0);
	assert_int_equal(c->list.count, 1);
	assert_string_equal(c->list.items[0].profile_id, f->jill);
	store_activity_list_free(&c->list);
	/* The feed: Jill's activity, then a tombstone for each of Jack's two, after it. */
	c->since = 0;
	c->limit = 100;
	assert_int_equal(run(f, STORE_READ, j_feed, c), 0);
	assert_int_equal(c->list.count, 3);
	assert_false(c->list.items[0].deleted);
	assert_string_equal(c->list.items[0].profile_id, f->jill);
	for (size_t i = 1; i < 3; i++) {
		assert_true(c->list.items[i].deleted);
		assert_string_equal(c->list.items[i].profile_id, f->jack);
		assert_string_equal(c->list.items[i].reason, "profile_erased");
		assert_true(c->list.items[i].seq > c->list.items[i - 1].seq);
	}
	store_activity_list_free(&c->list);

	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	assert_gone(raw, "mid:only-jack@x.example");
	sqlite3_close(raw);
	free(c);
}

/* The record's participants column holds only what its content does not tell; content and
 * column together still find every index row (purge leaves none behind). */
static const char *raw_text(sqlite3 *raw, const char *sql, char *buf, size_t size)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

static void test_participants_column(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	sqlite3_busy_timeout(raw, 5000);
	char buf[512];
	static const char column[] =
	    "SELECT participants FROM message_records WHERE key = 'mid:p@x'";

	/* New: everything is in the content, the column is empty. */
	fill_msg(c, "p@x", NULL, 1000, "a@staffing.example", "jack@candidates.example", "p");
	snprintf(c->cc[0].address, sizeof(c->cc[0].address), "x1@elsewhere.example");
	c->msg.cc = c->cc;
	c->msg.cc_count = 1;
	c->source = STORE_SOURCE_IMAP;
	log_msg(f, c, NULL, NULL);
	assert_string_equal(raw_text(raw, column, buf, sizeof(buf)), "");
	c->key = "mid:p@x";
	assert_int_equal(run(f, STORE_READ, j_parts, c), 0);
	assert_int_equal(c->count, 3);
	assert_string_equal(c->addresses[2], "x1@elsewhere.example");

	/* A weaker copy with a Bcc: the new address goes into the column. */
	fill_msg(c, "p@x", NULL, 1000, "a@staffing.example", "jack@candidates.example", "p");
	snprintf(c->cc[0].address, sizeof(c->cc[0].address), "x2@elsewhere.example");
	c->msg.bcc = c->cc;
	c->msg.bcc_count = 1;
	c->source = STORE_SOURCE_BCC;
	log_msg(f, c, NULL, NULL);
	assert_string_equal(raw_text(raw, column, buf, sizeof(buf)), "x2@elsewhere.example");

	/* A stronger copy without x1: x1 leaves the content for the column. */
	fill_msg(c, "p@x", NULL, 1000, "a@staffing.example", "jack@candidates.example", "p");
	c->source = STORE_SOURCE_OUTBOX;
	log_msg(f, c, NULL, NULL);
	assert_string_equal(raw_text(raw, column, buf, sizeof(buf)),
	                    "x2@elsewhere.example\nx1@elsewhere.example");
	assert_int_equal(run(f, STORE_READ, j_parts, c), 0);
	assert_int_equal(c->count, 4);
	assert_string_equal(c->addresses[0], "a@staffing.example");
	assert_string_equal(c->addresses[1], "jack@candidates.example");
	assert_string_equal(c->addresses[2], "x1@elsewhere.example");
	assert_string_equal(c->addresses[3], "x2@elsewhere.example");

	/* An address the content cannot hold as it is (not UTF-8): the column lists them all. */
	fill_msg(c, "q@x", NULL, 1000, "a@staffing.example", "\xff\xfe@bad.example", "q");
	c->source = STORE_SOURCE_IMAP;
	log_msg(f, c, NULL, NULL);
	assert_string_equal(
	    raw_text(raw, "SELECT participants FROM message_records WHERE key = 'mid:q@x'", buf,
	             sizeof(buf)),
	    "a@staffing.example\n\xff\xfe@bad.example");

	/* Purged, neither leaves an index row behind. */
	assert_int_equal(sqlite3_exec(raw,
	                              "UPDATE message_records SET last_seen = 100 WHERE key IN"
	                              " ('mid:p@x', 'mid:q@x')",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	c->before = 1000;
	assert_int_equal(run(f, STORE_WRITE, j_purge, c), 0);
	assert_int_equal(c->count, 2);
	assert_gone(raw, "mid:p@x");
	assert_gone(raw, "mid:q@x");
	sqlite3_close(raw);
	free(c);
}

static void test_never_log_lists(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	c->org_id = f->org;
	c->scope = STORE_NEVER_LOG_ORG;
	assert_int_equal(run(f, STORE_READ, j_never_get, c), 0);
	assert_int_equal(c->never.count, 0);
	store_never_log_free(&c->never);

	char entries[3][MT_ADDRESS_MAX + 1] = {"hr.example", "boss@x.example", "hr.example"};
	c->never.entries = entries;
	c->never.count = 3;
	assert_int_equal(run(f, STORE_WRITE, j_never_put, c), 0);
	c->scope = STORE_NEVER_LOG_USER;
	c->id = f->user_a;
	c->never.count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_never_put, c), 0);
	c->id = "usr_nobody";
	assert_int_equal(run(f, STORE_WRITE, j_never_put, c), STORE_NOT_FOUND);
	c->org_id = f->other_org;
	c->id = f->user_a;
	assert_int_equal(run(f, STORE_WRITE, j_never_put, c), STORE_NOT_FOUND);
	c->never.entries = NULL;

	c->org_id = f->org;
	c->scope = STORE_NEVER_LOG_ORG;
	assert_int_equal(run(f, STORE_READ, j_never_get, c), 0);
	assert_int_equal(c->never.count, 2);
	assert_string_equal(c->never.entries[0], "hr.example");
	assert_string_equal(c->never.entries[1], "boss@x.example");
	store_never_log_free(&c->never);
	c->scope = STORE_NEVER_LOG_USER;
	c->id = f->user_a;
	assert_int_equal(run(f, STORE_READ, j_never_get, c), 0);
	assert_int_equal(c->never.count, 1);
	store_never_log_free(&c->never);
	c->id = f->user_b;
	assert_int_equal(run(f, STORE_READ, j_never_get, c), 0);
	assert_int_equal(c->never.count, 0);
	store_never_log_free(&c->never);
	c->org_id = f->other_org;
	c->scope = STORE_NEVER_LOG_ORG;
	assert_int_equal(run(f, STORE_READ, j_never_get, c), 0);
	assert_int_equal(c->never.count, 0);
	store_never_log_free(&c->never);

	/* Replacing with an empty list clears it. */
	c->org_id = f->org;
	assert_int_equal(run(f, STORE_WRITE, j_never_put, c), 0);
	assert_int_equal(run(f, STORE_READ, j_never_get, c), 0);
	assert_int_equal(c->never.count, 0);
	store_never_log_free(&c->never);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_source_names),
	    cmocka_unit_test_setup_teardown(test_record_aliases_and_trust, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_address_is_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_feed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_feed_positions_after_rollback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_feed_positions_after_rollback_replayable, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_timeline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_erasure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_participants_column, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_never_log_lists, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
