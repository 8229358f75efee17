/* The store: every operation through store_run() on a temp-file store without a loop, the group
 * commit through an event loop, and two handles on one file (`init` beside `serve`). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "temp_store.h"
#include "store_gate.h"
#include "store/db.h"
#include "store/store_internal.h"
#include "store/store_org.h"
#include "store/store_profile.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

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
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (temp_store_open("test_store", f->dir, f->path, &f->store) < 0)
		return -1;
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

/* One argument block for all the small jobs below; big, so it lives on the heap. */
struct call {
	const char *org_id, *id, *address, *query, *cursor;
	size_t limit;
	struct store_org org;
	struct store_user user;
	struct store_token token;
	struct store_profile profile;
	struct store_profile_list list;
	struct store_smtp_account account;
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
	char ids[4][MT_ID_MAX];
	size_t count;
	unsigned char hash[32];
	int version;
};

static struct call *call_new(void)
{
	struct call *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	return c;
}

JOB(j_org_create, store_org_create(tx, &c->org))
JOB(j_org_get, store_org_get(tx, c->id, &c->org))
JOB(j_org_update, store_org_update(tx, &c->org))
JOB(j_user_create, store_user_create(tx, &c->user))
JOB(j_user_get, store_user_get(tx, c->org_id, c->id, &c->user))
JOB(j_user_update, store_user_update(tx, &c->user))
JOB(j_user_deactivate, store_user_deactivate(tx, c->org_id, c->id))
JOB(j_user_by_address, store_user_by_address(tx, c->org_id, c->address, &c->user))
JOB(j_token_create, store_token_create(tx, &c->token))
JOB(j_token_auth, store_token_authenticate(tx, c->hash, &c->token, &c->user))
JOB(j_token_revoke, store_token_revoke(tx, c->id, c->token.id))
JOB(j_profile_create, store_profile_create(tx, &c->profile))
JOB(j_profile_get, store_profile_get(tx, c->org_id, c->id, &c->profile))
JOB(j_profile_update, store_profile_update(tx, &c->profile))
JOB(j_profile_delete, store_profile_delete(tx, c->org_id, c->id))
JOB(j_profile_list, store_profile_list(tx, c->org_id, c->query, c->cursor, c->limit, &c->list))
JOB(j_by_address, store_profiles_by_address(tx, c->org_id, c->address, c->ids, 4, &c->count))
JOB(j_smtp_get, store_smtp_account_get(tx, c->org_id, c->id, &c->account))
JOB(j_smtp_put, store_smtp_account_put(tx, &c->account))
JOB(j_smtp_limits, store_smtp_account_set_limits(tx, c->org_id, c->id, c->limits, c->limit_count))
JOB(j_smtp_off, store_smtp_account_off(tx, c->org_id, c->id))
JOB(j_version, store_schema_version(tx, &c->version))

static int run(struct fixture *f, enum store_job_kind kind, store_job_fn *fn, struct call *c)
{
	return store_run(f->store, kind, fn, c);
}

static void make_org(struct fixture *f, const char *name, char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->org.name, sizeof(c->org.name), "%s", name);
	assert_int_equal(run(f, STORE_WRITE, j_org_create, c), 0);
	memcpy(id_r, c->org.id, MT_ID_MAX);
	free(c);
}

static void make_user(struct fixture *f, const char *org_id, const char *email, const char *alias,
                      char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->user.org_id, sizeof(c->user.org_id), "%s", org_id);
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

static void test_new_id(void **state)
{
	(void)state;
	char a[MT_ID_MAX], b[MT_ID_MAX];
	store_new_id("usr", a);
	store_new_id("usr", b);
	assert_int_equal(strlen(a), 4 + MT_STORE_ID_RANDOM);
	assert_memory_equal(a, "usr_", 4);
	assert_string_not_equal(a, b);
	for (const char *p = a + 4; *p != '\0'; p++)
		assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", *p));
}

/* Ordered ids: same shape and alphabet, unique, and later ones sort after. */
static void test_new_ordered_id(void **state)
{
	(void)state;
	char prev[MT_ID_MAX], next[MT_ID_MAX];
	store_new_ordered_id("msg", prev);
	assert_int_equal(strlen(prev), 4 + MT_STORE_ID_RANDOM);
	for (int i = 0; i < 50; i++) {
		usleep(1500); /* a later millisecond */
		store_new_ordered_id("msg", next);
		assert_memory_equal(next, "msg_", 4);
		for (const char *p = next + 4; *p != '\0'; p++)
			assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", *p));
		assert_true(strcmp(prev, next) < 0);
		memcpy(prev, next, sizeof(prev));
	}
	char same_ms[2][MT_ID_MAX];
	store_new_ordered_id("msg", same_ms[0]);
	store_new_ordered_id("msg", same_ms[1]);
	assert_string_not_equal(same_ms[0], same_ms[1]);
}

static void test_org(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	snprintf(c->org.name, sizeof(c->org.name), "Acme");
	snprintf(c->org.domains[0], sizeof(c->org.domains[0]), "acme.example");
	snprintf(c->org.domains[1], sizeof(c->org.domains[1]), "acme.test");
	c->org.domain_count = 2;
	assert_int_equal(run(f, STORE_WRITE_DURABLE, j_org_create, c), 0);
	assert_memory_equal(c->org.id, "org_", 4);
	assert_true(c->org.created_at > 0);
	char id[MT_ID_MAX];
	memcpy(id, c->org.id, sizeof(id));

	struct call *g = call_new();
	g->id = id;
	assert_int_equal(run(f, STORE_READ, j_org_get, g), 0);
	assert_string_equal(g->org.name, "Acme");
	assert_int_equal(g->org.domain_count, 2);
	assert_string_equal(g->org.domains[1], "acme.test");
	assert_false(g->org.custom_smtp || g->org.imap_sync || g->org.bcc_sync);

	/* Update replaces domains and features, never the name. */
	g->org.custom_smtp = true;
	snprintf(g->org.name, sizeof(g->org.name), "Renamed");
	snprintf(g->org.domains[0], sizeof(g->org.domains[0]), "new.example");
	g->org.domain_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_org_update, g), 0);
	struct call *h = call_new();
	h->id = id;
	assert_int_equal(run(f, STORE_READ, j_org_get, h), 0);
	assert_string_equal(h->org.name, "Acme");
	assert_true(h->org.custom_smtp);
	assert_int_equal(h->org.domain_count, 1);
	assert_string_equal(h->org.domains[0], "new.example");

	h->id = "org_nonexistent";
	assert_int_equal(run(f, STORE_READ, j_org_get, h), STORE_NOT_FOUND);
	snprintf(g->org.id, sizeof(g->org.id), "org_nonexistent");
	assert_int_equal(run(f, STORE_WRITE, j_org_update, g), STORE_NOT_FOUND);
	free(c);
	free(g);
	free(h);
}

static void test_users_and_tokens(void **state)
{
	struct fixture *f = *state;
	char org[MT_ID_MAX], other[MT_ID_MAX], uid[MT_ID_MAX], uid2[MT_ID_MAX];
	make_org(f, "A", org);
	make_org(f, "B", other);
	make_user(f, org, "ann@a.example", "ann.alias@a.example", uid);
	assert_memory_equal(uid, "usr_", 4);

	/* Conflicts: the email, or an alias, of another user of the org. */
	struct call *c = call_new();
	snprintf(c->user.org_id, sizeof(c->user.org_id), "%s", org);
	snprintf(c->user.email, sizeof(c->user.email), "ann@a.example");
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), STORE_CONFLICT);
	snprintf(c->user.email, sizeof(c->user.email), "bob@a.example");
	snprintf(c->user.aliases[0], sizeof(c->user.aliases[0]), "ann.alias@a.example");
	c->user.alias_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), STORE_CONFLICT);
	/* ...which left nothing behind: bob can be created without the alias. */
	c->user.alias_count = 0;
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), 0);
	memcpy(uid2, c->user.id, sizeof(uid2));
	/* The same address in another org is fine. */
	snprintf(c->user.org_id, sizeof(c->user.org_id), "%s", other);
	snprintf(c->user.email, sizeof(c->user.email), "ann@a.example");
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), 0);
	/* No such org. */
	snprintf(c->user.org_id, sizeof(c->user.org_id), "org_missing");
	snprintf(c->user.email, sizeof(c->user.email), "x@a.example");
	assert_int_equal(run(f, STORE_WRITE, j_user_create, c), STORE_NOT_FOUND);

	/* Get, scoped by org. */
	struct call *g = call_new();
	g->org_id = org;
	g->id = uid;
	assert_int_equal(run(f, STORE_READ, j_user_get, g), 0);
	assert_string_equal(g->user.email, "ann@a.example");
	assert_int_equal(g->user.alias_count, 1);
	assert_string_equal(g->user.aliases[0], "ann.alias@a.example");
	assert_true(g->user.active);
	assert_int_equal(g->user.role, STORE_ROLE_USER);
	g->org_id = other;
	assert_int_equal(run(f, STORE_READ, j_user_get, g), STORE_NOT_FOUND);

	/* Update: role, name, aliases; an alias of bob's is a conflict and changes nothing. */
	g->org_id = org;
	assert_int_equal(run(f, STORE_READ, j_user_get, g), 0);
	g->user.role = STORE_ROLE_ADMIN;
	snprintf(g->user.name, sizeof(g->user.name), "Ann A.");
	snprintf(g->user.aliases[0], sizeof(g->user.aliases[0]), "bob@a.example");
	assert_int_equal(run(f, STORE_WRITE, j_user_update, g), STORE_CONFLICT);
	snprintf(g->user.aliases[0], sizeof(g->user.aliases[0]), "ann2@a.example");
	snprintf(g->user.aliases[1], sizeof(g->user.aliases[1]), "ann3@a.example");
	g->user.alias_count = 2;
	assert_int_equal(run(f, STORE_WRITE, j_user_update, g), 0);
	struct call *h = call_new();
	h->org_id = org;
	h->id = uid;
	assert_int_equal(run(f, STORE_READ, j_user_get, h), 0);
	assert_int_equal(h->user.role, STORE_ROLE_ADMIN);
	assert_string_equal(h->user.name, "Ann A.");
	assert_int_equal(h->user.alias_count, 2);
	assert_string_equal(h->user.aliases[1], "ann3@a.example");
	snprintf(g->user.org_id, sizeof(g->user.org_id), "%s", other);
	assert_int_equal(run(f, STORE_WRITE, j_user_update, g), STORE_NOT_FOUND);

	/* By address: email and alias; the old alias is gone; scoped. */
	h->address = "ann3@a.example";
	assert_int_equal(run(f, STORE_READ, j_user_by_address, h), 0);
	assert_string_equal(h->user.id, uid);
	h->address = "ann@a.example";
	assert_int_equal(run(f, STORE_READ, j_user_by_address, h), 0);
	assert_string_equal(h->user.id, uid);
	h->address = "ann.alias@a.example";
	assert_int_equal(run(f, STORE_READ, j_user_by_address, h), STORE_NOT_FOUND);
	h->org_id = other;
	h->address = "ann3@a.example";
	assert_int_equal(run(f, STORE_READ, j_user_by_address, h), STORE_NOT_FOUND);

	/* Tokens: create, authenticate, revoke, duplicates, foreign users. */
	struct call *t = call_new();
	snprintf(t->token.org_id, sizeof(t->token.org_id), "%s", org);
	snprintf(t->token.user_id, sizeof(t->token.user_id), "%s", uid);
	memset(t->token.hash, 0xab, 32);
	assert_int_equal(run(f, STORE_WRITE, j_token_create, t), 0);
	assert_memory_equal(t->token.id, "tok_", 4);
	char tok1[MT_ID_MAX];
	memcpy(tok1, t->token.id, sizeof(tok1));
	assert_int_equal(run(f, STORE_WRITE, j_token_create, t), STORE_CONFLICT);
	memset(t->token.hash, 0xcd, 32);
	snprintf(t->token.org_id, sizeof(t->token.org_id), "%s", other);
	assert_int_equal(run(f, STORE_WRITE, j_token_create, t), STORE_NOT_FOUND);
	snprintf(t->token.org_id, sizeof(t->token.org_id), "%s", org);
	assert_int_equal(run(f, STORE_WRITE, j_token_create, t), 0);
	char tok2[MT_ID_MAX];
	memcpy(tok2, t->token.id, sizeof(tok2));

	struct call *a = call_new();
	memset(a->hash, 0xab, 32);
	assert_int_equal(run(f, STORE_READ, j_token_auth, a), 0);
	assert_string_equal(a->token.id, tok1);
	assert_string_equal(a->token.org_id, org);
	assert_string_equal(a->user.id, uid);
	assert_int_equal(a->user.alias_count, 2);
	memset(a->hash, 0x01, 32);
	assert_int_equal(run(f, STORE_READ, j_token_auth, a), STORE_NOT_FOUND);

	/* Revoke: only by its own user. */
	struct call *r = call_new();
	r->id = uid2;
	snprintf(r->token.id, sizeof(r->token.id), "%s", tok1);
	assert_int_equal(run(f, STORE_WRITE, j_token_revoke, r), STORE_NOT_FOUND);
	r->id = uid;
	assert_int_equal(run(f, STORE_WRITE, j_token_revoke, r), 0);
	assert_int_equal(run(f, STORE_WRITE, j_token_revoke, r), 0);
	memset(a->hash, 0xab, 32);
	assert_int_equal(run(f, STORE_READ, j_token_auth, a), STORE_NOT_FOUND);
	memset(a->hash, 0xcd, 32);
	assert_int_equal(run(f, STORE_READ, j_token_auth, a), 0);
	assert_string_equal(a->token.id, tok2);

	free(c);
	free(g);
	free(h);
	free(t);
	free(a);
	free(r);
}

static void fill_account(struct call *c, const char *org, const char *uid)
{
	struct store_smtp_account *a = &c->account;
	snprintf(a->org_id, sizeof(a->org_id), "%s", org);
	snprintf(a->user_id, sizeof(a->user_id), "%s", uid);
	a->state = STORE_ACCOUNT_CONNECTED;
	snprintf(a->preset, sizeof(a->preset), "gmail");
	snprintf(a->host, sizeof(a->host), "smtp.example");
	a->port = 587;
	a->security = STORE_SECURITY_TLS;
	a->auth = STORE_AUTH_XOAUTH2;
	snprintf(a->username, sizeof(a->username), "ann@a.example");
	snprintf(a->from_address, sizeof(a->from_address), "ann@a.example");
	a->limits[0] = (struct store_send_limit){100, 3600};
	a->limits[1] = (struct store_send_limit){500, 86400};
	a->limit_count = 2;
	snprintf(a->tls_fingerprint, sizeof(a->tls_fingerprint), "sha256:%064d", 0);
	memset(a->sealed_secret, 0x5a, 48);
	a->sealed_secret_len = 48;
	a->verified_at = 1700000000;
	snprintf(a->confirmation_message_id, sizeof(a->confirmation_message_id), "m1@x");
}

static void test_smtp_account_and_deactivate(void **state)
{
	struct fixture *f = *state;
	char org[MT_ID_MAX], other[MT_ID_MAX], uid[MT_ID_MAX];
	make_org(f, "A", org);
	make_org(f, "B", other);
	make_user(f, org, "ann@a.example", NULL, uid);

	struct call *c = call_new();
	c->org_id = org;
	c->id = uid;
	assert_int_equal(run(f, STORE_READ, j_smtp_get, c), STORE_NOT_FOUND);
	fill_account(c, other, uid);
	assert_int_equal(run(f, STORE_WRITE, j_smtp_put, c), STORE_NOT_FOUND);
	fill_account(c, org, uid);
	assert_int_equal(run(f, STORE_WRITE, j_smtp_put, c), 0);

	struct call *g = call_new();
	g->org_id = org;
	g->id = uid;
	assert_int_equal(run(f, STORE_READ, j_smtp_get, g), 0);
	struct store_smtp_account *a = &g->account;
	assert_int_equal(a->state, STORE_ACCOUNT_CONNECTED);
	assert_string_equal(a->preset, "gmail");
	assert_string_equal(a->host, "smtp.example");
	assert_int_equal(a->port, 587);
	assert_int_equal(a->security, STORE_SECURITY_TLS);
	assert_int_equal(a->auth, STORE_AUTH_XOAUTH2);
	assert_string_equal(store_security_name(a->security), "tls");
	assert_string_equal(store_auth_name(a->auth), "xoauth2");
	assert_string_equal(a->from_address, "ann@a.example");
	assert_int_equal(a->limit_count, 2);
	assert_int_equal(a->limits[1].limit, 500);
	assert_int_equal(a->limits[1].window_s, 86400);
	assert_int_equal(a->sealed_secret_len, 48);
	assert_memory_equal(a->sealed_secret, c->account.sealed_secret, 48);
	assert_int_equal(a->verified_at, 1700000000);
	assert_string_equal(a->confirmation_message_id, "m1@x");
	assert_true(a->updated_at > 0);
	g->org_id = other;
	assert_int_equal(run(f, STORE_READ, j_smtp_get, g), STORE_NOT_FOUND);

	/* Replace (upsert) and limits only. */
	c->account.port = 465;
	c->account.limit_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_smtp_put, c), 0);
	struct call *l = call_new();
	l->org_id = org;
	l->id = uid;
	l->limits[0] = (struct store_send_limit){10, 60};
	l->limits[1] = (struct store_send_limit){20, 3600};
	l->limits[2] = (struct store_send_limit){30, 86400};
	l->limit_count = 3;
	assert_int_equal(run(f, STORE_WRITE, j_smtp_limits, l), 0);
	l->org_id = other;
	assert_int_equal(run(f, STORE_WRITE, j_smtp_limits, l), STORE_NOT_FOUND);
	g->org_id = org;
	assert_int_equal(run(f, STORE_READ, j_smtp_get, g), 0);
	assert_int_equal(g->account.port, 465);
	assert_int_equal(g->account.limit_count, 3);
	assert_int_equal(g->account.limits[0].window_s, 60);
	assert_int_equal(g->account.limits[2].limit, 30);

	/* Off: state and secret go, settings stay. */
	struct call *o = call_new();
	o->org_id = other;
	o->id = uid;
	assert_int_equal(run(f, STORE_WRITE, j_smtp_off, o), STORE_NOT_FOUND);
	o->org_id = org;
	assert_int_equal(run(f, STORE_WRITE, j_smtp_off, o), 0);
	assert_int_equal(run(f, STORE_READ, j_smtp_get, g), 0);
	assert_int_equal(g->account.state, STORE_ACCOUNT_OFF);
	assert_int_equal(g->account.sealed_secret_len, 0);
	assert_string_equal(g->account.host, "smtp.example");

	/* Deactivate: inactive, tokens revoked, account off with the secret wiped. */
	assert_int_equal(run(f, STORE_WRITE, j_smtp_put, c), 0);
	struct call *t = call_new();
	snprintf(t->token.org_id, sizeof(t->token.org_id), "%s", org);
	snprintf(t->token.user_id, sizeof(t->token.user_id), "%s", uid);
	memset(t->token.hash, 0x77, 32);
	assert_int_equal(run(f, STORE_WRITE, j_token_create, t), 0);
	struct call *d = call_new();
	d->org_id = other;
	d->id = uid;
	assert_int_equal(run(f, STORE_WRITE, j_user_deactivate, d), STORE_NOT_FOUND);
	d->org_id = org;
	assert_int_equal(run(f, STORE_WRITE_DURABLE, j_user_deactivate, d), 0);

	memset(d->hash, 0x77, 32);
	assert_int_equal(run(f, STORE_READ, j_token_auth, d), STORE_NOT_FOUND);
	assert_int_equal(run(f, STORE_READ, j_user_get, d), 0);
	assert_false(d->user.active);
	d->address = "ann@a.example";
	assert_int_equal(run(f, STORE_READ, j_user_by_address, d), STORE_NOT_FOUND);
	assert_int_equal(run(f, STORE_READ, j_smtp_get, g), 0);
	assert_int_equal(g->account.state, STORE_ACCOUNT_OFF);
	assert_int_equal(g->account.sealed_secret_len, 0);
	/* No new token for an inactive user. */
	memset(t->token.hash, 0x78, 32);
	assert_int_equal(run(f, STORE_WRITE, j_token_create, t), STORE_NOT_FOUND);

	/* The revocation is in the database, not only in the join. */
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(raw,
	                                    "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL"
	                                    " UNION ALL SELECT COUNT(*) FROM smtp_accounts"
	                                    " WHERE sealed_secret IS NOT NULL",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 0);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 0);
	sqlite3_finalize(st);
	sqlite3_close(raw);

	free(c);
	free(g);
	free(l);
	free(o);
	free(t);
	free(d);
}

static void make_profile(struct fixture *f, const char *org, const char *name, const char *e1,
                         const char *e2, char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->profile.org_id, sizeof(c->profile.org_id), "%s", org);
	snprintf(c->profile.name, sizeof(c->profile.name), "%s", name);
	c->profile.kind = STORE_PROFILE_APPLICANT;
	snprintf(c->profile.emails[0], sizeof(c->profile.emails[0]), "%s", e1);
	c->profile.email_count = 1;
	if (e2 != NULL) {
		snprintf(c->profile.emails[1], sizeof(c->profile.emails[1]), "%s", e2);
		c->profile.email_count = 2;
	}
	assert_int_equal(run(f, STORE_WRITE, j_profile_create, c), 0);
	memcpy(id_r, c->profile.id, MT_ID_MAX);
	free(c);
}

static void test_profiles(void **state)
{
	struct fixture *f = *state;
	char org[MT_ID_MAX], other[MT_ID_MAX], jack[MT_ID_MAX], jill[MT_ID_MAX], x[MT_ID_MAX];
	make_org(f, "A", org);
	make_org(f, "B", other);
	make_profile(f, org, "Jack Smith", "jack@c.example", "j.smith@d.example", jack);
	make_profile(f, org, "Jill Jones", "jill@c.example", NULL, jill);
	make_profile(f, other, "Jack Other", "jack@c.example", NULL, x);
	assert_memory_equal(jack, "prf_", 4);

	struct call *g = call_new();
	g->org_id = org;
	g->id = jack;
	assert_int_equal(run(f, STORE_READ, j_profile_get, g), 0);
	assert_string_equal(g->profile.name, "Jack Smith");
	assert_int_equal(g->profile.kind, STORE_PROFILE_APPLICANT);
	assert_int_equal(g->profile.email_count, 2);
	assert_string_equal(g->profile.emails[1], "j.smith@d.example");
	g->org_id = other;
	assert_int_equal(run(f, STORE_READ, j_profile_get, g), STORE_NOT_FOUND);

	/* By address: scoped, and an address may belong to several profiles. */
	struct call *b = call_new();
	b->org_id = org;
	b->address = "jack@c.example";
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 1);
	assert_string_equal(b->ids[0], jack);
	b->org_id = other;
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 1);
	assert_string_equal(b->ids[0], x);
	b->org_id = org;
	b->address = "nobody@c.example";
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 0);
	char dup[MT_ID_MAX];
	make_profile(f, org, "Jill Again", "jill@c.example", NULL, dup);
	b->address = "jill@c.example";
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 2);

	/* Update replaces kind, name and addresses; other org's id is not found. */
	g->org_id = org;
	assert_int_equal(run(f, STORE_READ, j_profile_get, g), 0);
	g->profile.kind = STORE_PROFILE_CONTACT;
	snprintf(g->profile.name, sizeof(g->profile.name), "Jack Smythe");
	snprintf(g->profile.emails[0], sizeof(g->profile.emails[0]), "jack@new.example");
	g->profile.email_count = 1;
	assert_int_equal(run(f, STORE_WRITE, j_profile_update, g), 0);
	b->address = "j.smith@d.example";
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 0);
	b->address = "jack@new.example";
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 1);
	snprintf(g->profile.org_id, sizeof(g->profile.org_id), "%s", other);
	assert_int_equal(run(f, STORE_WRITE, j_profile_update, g), STORE_NOT_FOUND);
	struct call *h = call_new();
	h->org_id = org;
	h->id = jack;
	assert_int_equal(run(f, STORE_READ, j_profile_get, h), 0);
	assert_int_equal(h->profile.kind, STORE_PROFILE_CONTACT);
	assert_string_equal(h->profile.name, "Jack Smythe");

	/* Delete: scoped; takes the addresses with it. */
	h->org_id = other;
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, h), STORE_NOT_FOUND);
	h->org_id = org;
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, h), 0);
	assert_int_equal(run(f, STORE_READ, j_profile_get, h), STORE_NOT_FOUND);
	assert_int_equal(run(f, STORE_WRITE, j_profile_delete, h), STORE_NOT_FOUND);
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 0);
	b->org_id = other;
	b->address = "jack@c.example";
	assert_int_equal(run(f, STORE_READ, j_by_address, b), 0);
	assert_int_equal(b->count, 1);
	free(g);
	free(b);
	free(h);
}

static int cmp_ids(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_profile_list(void **state)
{
	struct fixture *f = *state;
	char org[MT_ID_MAX], other[MT_ID_MAX];
	make_org(f, "A", org);
	make_org(f, "B", other);
	enum { N = 25 };
	char ids[N][MT_ID_MAX];
	for (int i = 0; i < N; i++) {
		char name[64], email[64];
		snprintf(name, sizeof(name), "%s %02d", i % 2 ? "Émile" : "Zoe", i);
		snprintf(email, sizeof(email), "p%02d%s@x.example", i, i == 3 ? "_%" : "");
		make_profile(f, org, name, email, NULL, ids[i]);
	}
	char foreign[MT_ID_MAX];
	make_profile(f, other, "Zoe Foreign", "p01@x.example", NULL, foreign);
	qsort(ids, N, MT_ID_MAX, cmp_ids);

	/* Pages of 10 in id order, the cursor being the last id of a page. */
	struct call *c = call_new();
	c->org_id = org;
	c->limit = 10;
	char cursor[MT_ID_MAX + 8] = "";
	size_t seen = 0;
	for (int page = 0; page < 3; page++) {
		c->cursor = cursor;
		assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
		for (size_t i = 0; i < c->list.count; i++)
			assert_string_equal(c->list.items[i].id, ids[seen + i]);
		seen += c->list.count;
		assert_int_equal(c->list.count, page < 2 ? 10 : 5);
		if (page < 2)
			assert_string_equal(c->list.next_cursor, ids[seen - 1]);
		else
			assert_string_equal(c->list.next_cursor, "");
		snprintf(cursor, sizeof(cursor), "%s", c->list.next_cursor);
		store_profile_list_free(&c->list);
	}
	assert_int_equal(seen, N);

	/* An exact multiple of the page: the last full page says there is no more. */
	c->limit = N;
	c->cursor = NULL;
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, N);
	assert_string_equal(c->list.next_cursor, "");
	store_profile_list_free(&c->list);

	/* Name prefix, case-insensitive (also beyond ASCII). */
	c->limit = 100;
	c->query = "ÉMI";
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 12);
	store_profile_list_free(&c->list);
	c->query = "zoe 1";
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 5); /* 10 12 14 16 18 */
	store_profile_list_free(&c->list);

	/* Address prefix; % and _ are plain characters. */
	c->query = "P0";
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 10);
	store_profile_list_free(&c->list);
	c->query = "p03_%";
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 1);
	assert_string_equal(c->list.items[0].emails[0], "p03_%@x.example");
	store_profile_list_free(&c->list);
	c->query = "p0_";
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 0);
	store_profile_list_free(&c->list);

	/* A query matching both the name and the address counts the profile once; paging works
	 * with a query too. */
	make_profile(f, org, "Pam", "pam@x.example", NULL, foreign);
	c->query = "p";
	c->limit = 20;
	c->cursor = NULL;
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 20);
	snprintf(cursor, sizeof(cursor), "%s", c->list.next_cursor);
	assert_string_not_equal(cursor, "");
	store_profile_list_free(&c->list);
	c->cursor = cursor;
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, N + 1 - 20);
	assert_string_equal(c->list.next_cursor, "");
	store_profile_list_free(&c->list);

	/* Another org sees only its own. */
	c->org_id = other;
	c->query = NULL;
	c->cursor = NULL;
	assert_int_equal(run(f, STORE_READ, j_profile_list, c), 0);
	assert_int_equal(c->list.count, 1);
	store_profile_list_free(&c->list);
	free(c);
}

/* A job that changes something and then fails: only its own changes roll back. */
static int j_create_then_fail(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	int rc = store_org_create(tx, &c->org);
	return rc == 0 ? 42 : rc;
}

static void test_failed_job_rolls_back(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	snprintf(c->org.name, sizeof(c->org.name), "Ghost");
	assert_int_equal(run(f, STORE_WRITE, j_create_then_fail, c), 42);
	c->id = c->org.id;
	assert_int_equal(run(f, STORE_READ, j_org_get, c), STORE_NOT_FOUND);
	/* A write operation in a read job is refused. */
	assert_int_equal(run(f, STORE_READ, j_org_create, c), -1);
	free(c);
}

static int raw_count(const char *path, const char *sql)
{
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(raw);
	return n;
}

/* A database of its own at schema `version` beside the fixture's (closed meanwhile), for rows
 * written the way that schema wanted; the caller fills it, closes it and migrates it. */
static struct db *old_schema(struct fixture *f, int version, char path[TEMP_STORE_PATH_MAX + 8])
{
	store_close(&f->store);
	snprintf(path, TEMP_STORE_PATH_MAX + 8, "%s.v%d", f->path, version);
	const char *error = NULL;
	struct db *db = db_sqlite_open(path, &error);
	assert_non_null(db);
	assert_int_equal(store_migrate_until(db, version, &error), 0);
	return db;
}

/* The old-schema database migrated to the latest (a store opened and closed on it). */
static void migrate_old(const char *path)
{
	const char *error = NULL;
	struct store *s = store_open(path, NULL, &error);
	assert_non_null(s);
	store_close(&s);
}

/* Removes it and opens the fixture's store again. */
static void drop_old_schema(struct fixture *f, const char *path)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		char p[TEMP_STORE_PATH_MAX + 16];
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	const char *error = NULL;
	f->store = store_open(f->path, NULL, &error);
	assert_non_null(f->store);
}

/* Migration 5 moves outbox bodies apart and rebuilds message_records: rows written under
 * schema 4 come through whole. */
/* Migrations 5 (outbox bodies apart, message_records rebuilt) and 6 (keys led by the value:
 * six tables rebuilt) on rows written under schema 4. */
static void test_migration_5_keeps_rows(void **state)
{
	struct fixture *f = *state;
	char path[TEMP_STORE_PATH_MAX + 8];
	struct db *db = old_schema(f, 4, path);
	assert_int_equal(
	    db_exec(
	        db,
	        "INSERT INTO message_records VALUES ('org_1', 'mid:a', 'imap', 'email_sent',"
	        " 'a', 1, 'f@x.example', 'F', '[]', '[]', '[]', 's', 'snip', '[]',"
	        " 'f@x.example', 1, 2);"
	        "INSERT INTO outbox_messages (id, org_id, user_id, state, route, mail_from,"
	        " from_address, from_name, subject, message_id, mailtrail_id, snippet, body,"
	        " body_len, next_attempt_at, created_at, updated_at) VALUES"
	        " ('msg_1', 'org_1', 'usr_1', 0, 'relay', 'a@x', 'a@x', 'A', 'S', 'm', 't', 'sn',"
	        " X'414243', 3, 0, 0, 0),"
	        " ('msg_2', 'org_1', 'usr_1', 3, 'relay', 'a@x', 'a@x', 'A', 'S', 'm', 't', 'sn',"
	        " NULL, 0, 0, 0, 0);"
	        "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'O', 0);"
	        "INSERT INTO profiles VALUES ('prf_1', 'org_1', 'applicant', 'P', 'p', 0, 0);"
	        "INSERT INTO profile_addresses VALUES ('org_1', 'p@x.example', 'prf_1', 0);"
	        "INSERT INTO message_aliases VALUES ('org_1', 'mt:a', 'mid:a');"
	        "INSERT INTO message_participants VALUES ('org_1', 'f@x.example', 'mid:a');"
	        "INSERT INTO message_users VALUES ('org_1', 'mid:a', 'usr_1', 5);"
	        "INSERT INTO activities VALUES ('org_1', 'mid:a', 'prf_1', 'act_1', 1, 7, 0, 0);"
	        "INSERT INTO feed_counter VALUES ('org_1', 7)"),
	    0);
	db_close(&db);
	migrate_old(path);
	assert_int_equal(raw_count(path, "SELECT MAX(version) FROM schema_migrations"),
	                 store_schema_latest());
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM message_records WHERE"
	                                 " key = 'mid:a' AND source = 'imap' AND last_seen = 2"),
	                 1);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_bodies WHERE"
	                                 " message_id = 'msg_1' AND body = X'414243'"),
	                 1);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_bodies"), 1);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_messages"), 2);
	/* Migration 6: every row kept, found through the rebuilt keys. */
	static const char *const kept[] = {
	    "SELECT COUNT(*) FROM profile_addresses WHERE address = 'p@x.example'"
	    " AND org_id = 'org_1' AND profile_id = 'prf_1' AND pos = 0",
	    "SELECT COUNT(*) FROM message_aliases a JOIN message_records r ON r.rid = a.rid"
	    " WHERE a.alias = 'mt:a' AND a.org_id = 'org_1' AND r.key = 'mid:a'",
	    "SELECT COUNT(*) FROM message_participants p JOIN message_records r ON r.rid = p.rid"
	    " WHERE p.address = 'f@x.example' AND p.org_id = 'org_1' AND r.key = 'mid:a'",
	    "SELECT COUNT(*) FROM message_users u JOIN message_records r ON r.rid = u.rid"
	    " WHERE r.key = 'mid:a' AND u.user_id = 'usr_1' AND u.added_at = 5",
	    "SELECT COUNT(*) FROM activities a JOIN message_records r ON r.rid = a.rid"
	    " WHERE r.key = 'mid:a' AND a.org_id = 'org_1' AND a.profile_id = 'prf_1'"
	    " AND a.id = 'act_1' AND a.seq = 7",
	    "SELECT COUNT(*) FROM activities INDEXED BY activities_feed WHERE org_id = 'org_1'"
	    " AND seq = 7",
	    "SELECT COUNT(*) FROM activities INDEXED BY activities_timeline"
	    " WHERE profile_id = 'prf_1' AND date = 1",
	};
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		assert_int_equal(raw_count(path, kept[i]), 1);
	drop_old_schema(f, path);
}

/* Migration 7 (the route at delivery): a message stored before keeps its whole MIME
 * (head_apart 0) and its attachments' JSON becomes rows. */
static void test_migration_7_outbox(void **state)
{
	struct fixture *f = *state;
	char path[TEMP_STORE_PATH_MAX + 8];
	struct db *db = old_schema(f, 6, path);
	assert_int_equal(
	    db_exec(
	        db,
	        "INSERT INTO outbox_messages (id, org_id, user_id, state, route, mail_from,"
	        " from_address, from_name, subject, message_id, mailtrail_id, snippet,"
	        " attachments_json, body_len, next_attempt_at, created_at, updated_at) VALUES"
	        " ('msg_1', 'org_1', 'usr_1', 0, 'relay', 'a@x', 'a@x', 'A', 'S', 'm', 't', 'sn',"
	        " '[{\"name\":\"cv.pdf\",\"type\":\"application/pdf\",\"size\":10},"
	        "{\"name\":\"b.txt\",\"type\":\"text/plain\",\"size\":3}]', 3, 0, 0, 0),"
	        " ('msg_2', 'org_1', 'usr_1', 0, 'relay', 'a@x', 'a@x', 'A', 'S', 'm', 't', 'sn',"
	        " '[]', 3, 0, 0, 0)"),
	    0);
	db_close(&db);
	migrate_old(path);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_attachments"), 2);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_attachments WHERE"
	                                 " message_id = 'msg_1' AND pos = 0 AND name = 'cv.pdf'"
	                                 " AND type = 'application/pdf' AND size = 10"),
	                 1);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_attachments WHERE"
	                                 " message_id = 'msg_1' AND pos = 1 AND name = 'b.txt'"),
	                 1);
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_messages WHERE"
	                                 " head_apart = 0 AND reply_to_address = ''"),
	                 2);
	drop_old_schema(f, path);
}

/* Migrations 21 (the idempotency index holds keyed messages only) and 22 (recipients in one
 * b-tree) on rows written under schema 20. */
static void test_migration_22_recipients(void **state)
{
	struct fixture *f = *state;
	char path[TEMP_STORE_PATH_MAX + 8];
	struct db *db = old_schema(f, 20, path);
	assert_int_equal(
	    db_exec(db,
	            "INSERT INTO outbox_messages (id, org_id, user_id, state, route, mail_from,"
	            " from_address, from_name, subject, message_id, mailtrail_id, snippet,"
	            " idempotency_key, body_len, next_attempt_at, created_at, updated_at) VALUES"
	            " ('msg_1', 'org_1', 'usr_1', 0, 'relay', 'a@x', 'a@x', 'A', 'S', 'm', 't',"
	            " 'sn', 'key-1', 3, 0, 9, 9),"
	            " ('msg_2', 'org_1', 'usr_1', 0, 'relay', 'a@x', 'a@x', 'A', 'S', 'm', 't',"
	            " 'sn', '', 3, 0, 9, 9);"
	            "INSERT INTO outbox_recipients VALUES"
	            " ('msg_1', 0, 'r@x.example', 'R', 0, 1, '250 ok'),"
	            " ('msg_1', 1, 's@x.example', '', 1, 0, ''),"
	            " ('msg_2', 0, 't@x.example', 'T', 2, 3, '550 no')"),
	    0);
	db_close(&db);
	migrate_old(path);
	static const char *const kept[] = {
	    "SELECT COUNT(*) FROM outbox_recipients WHERE message_id = 'msg_1' AND pos = 0"
	    " AND address = 'r@x.example' AND name = 'R' AND kind = 0 AND state = 1"
	    " AND reply = '250 ok'",
	    "SELECT COUNT(*) FROM outbox_recipients WHERE message_id = 'msg_1' AND pos = 1"
	    " AND address = 's@x.example' AND kind = 1 AND state = 0",
	    "SELECT COUNT(*) FROM outbox_recipients WHERE message_id = 'msg_2' AND pos = 0"
	    " AND address = 't@x.example' AND kind = 2 AND state = 3 AND reply = '550 no'",
	    "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'outbox_recipients'"
	    " AND sql LIKE '%WITHOUT ROWID'",
	    /* the keyed message is found through the index; the other is not in it */
	    "SELECT COUNT(*) FROM outbox_messages INDEXED BY outbox_idempotency"
	    " WHERE org_id = 'org_1' AND user_id = 'usr_1' AND idempotency_key = 'key-1'"
	    " AND idempotency_key <> ''",
	    "SELECT COUNT(*) FROM outbox_messages INDEXED BY outbox_idempotency"
	    " WHERE idempotency_key <> ''",
	};
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		print_message("%s\n", kept[i]);
		assert_int_equal(raw_count(path, kept[i]), 1);
	}
	assert_int_equal(raw_count(path, "SELECT COUNT(*) FROM outbox_recipients"), 3);
	drop_old_schema(f, path);
}

static void test_migrations_idempotent(void **state)
{
	struct fixture *f = *state;
	char org[MT_ID_MAX];
	make_org(f, "Kept", org);
	struct call *c = call_new();
	assert_int_equal(run(f, STORE_READ, j_version, c), 0);
	assert_int_equal(c->version, store_schema_latest());
	for (int i = 0; i < 2; i++) {
		store_close(&f->store);
		const char *error = NULL;
		f->store = store_open(f->path, NULL, &error);
		assert_non_null(f->store);
	}
	c->id = org;
	assert_int_equal(run(f, STORE_READ, j_org_get, c), 0);
	assert_string_equal(c->org.name, "Kept");
	assert_int_equal(run(f, STORE_READ, j_version, c), 0);
	assert_int_equal(c->version, store_schema_latest());

	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(
	    /* MAX, not COUNT: versions may have gaps (one per branch that adds a migration). */
	    sqlite3_prepare_v2(raw, "SELECT MAX(version) FROM schema_migrations", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), store_schema_latest());
	sqlite3_finalize(st);
	/* A schema from the future is refused rather than written to. */
	assert_int_equal(sqlite3_exec(raw,
	                              "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(raw);
	store_close(&f->store);
	const char *error = NULL;
	assert_null(store_open(f->path, NULL, &error));
	assert_non_null(strstr(error, "newer"));
	assert_null(store_open("postgresql://localhost/x", NULL, &error));
	f->store = NULL;
	free(c);
	/* Reopen something for teardown. */
	raw = NULL;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "DELETE FROM schema_migrations WHERE version = 999",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(raw);
	f->store = store_open(f->path, NULL, &error);
	assert_non_null(f->store);
}

/* ---- the group commit, through an event loop ---- */

struct async {
	struct event_base *base;
	int done, ok;
	struct gate gate;
	struct store_org orgs[1000];
};

static int j_async_org(struct store_tx *tx, void *arg)
{
	return store_org_create(tx, arg);
}

static struct async *async_of; /* the done callback's only way back to its test */

static void on_done(void *arg, int result)
{
	(void)arg;
	struct async *a = async_of;
	a->done++;
	a->ok += result == 0;
	if (a->done == 1000)
		event_base_loopbreak(a->base);
}

static void test_group_commit(void **state)
{
	struct fixture *f = *state;
	struct async *a = calloc(1, sizeof(*a));
	async_of = a;
	a->base = event_base_new();
	const char *error = NULL;
	struct store *s = store_open(f->path, a->base, &error);
	assert_non_null(s);

	/* Hold the store thread so that all 1000 are queued when it comes back. */
	gate_close(s, &a->gate);
	struct store_stats before;
	store_stats(s, &before);
	for (int i = 0; i < 1000; i++) {
		snprintf(a->orgs[i].name, sizeof(a->orgs[i].name), "org %d", i);
		assert_int_equal(
		    store_submit(s, STORE_WRITE_DURABLE, j_async_org, on_done, &a->orgs[i]), 0);
	}
	gate_open(&a->gate);

	event_base_dispatch(a->base);
	assert_int_equal(a->done, 1000);
	assert_int_equal(a->ok, 1000);
	struct store_stats after;
	store_stats(s, &after);
	assert_int_equal(after.write_jobs - before.write_jobs, 1000);
	assert_int_equal(after.commits - before.commits, 1);
	assert_int_equal(after.durable_commits - before.durable_commits, 1);
	/* made durable by the sync thread's fdatasync, once, before the completions came */
	assert_int_equal(after.log_syncs - before.log_syncs, 1);
	assert_int_equal(after.max_batch, 1000);
	/* a durable COMMIT of 1000 rows takes time, all of it counted as durable */
	assert_true(after.durable_commit_us > before.durable_commit_us);
	assert_true(after.commit_us - before.commit_us >=
	            after.durable_commit_us - before.durable_commit_us);

	/* Without the gate, jobs submitted in a burst still share commits. */
	a->done = a->ok = 0;
	store_stats(s, &before);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(
		    store_submit(s, STORE_WRITE_DURABLE, j_async_org, on_done, &a->orgs[i]), 0);
	event_base_dispatch(a->base);
	assert_int_equal(a->ok, 1000);
	store_stats(s, &after);
	assert_true(after.commits - before.commits < 1000);
	store_close(&s);

	/* All 2000 rows are there. */
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(raw,
	                                    "SELECT COUNT(*) FROM orgs WHERE name LIKE 'org %'", -1,
	                                    &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 2000);
	sqlite3_finalize(st);
	sqlite3_close(raw);

	/* A submit without a loop has nowhere to report. */
	assert_int_equal(store_submit(f->store, STORE_WRITE, j_async_org, on_done, &a->orgs[0]),
	                 -1);
	event_base_free(a->base);
	gate_destroy(&a->gate);
	free(a);
}

/* ---- completions after the log sync, in submission order ---- */

#define ORDER_JOBS 600

struct order_job {
	int index;
	enum store_job_kind kind;
	struct store_org org;
	uint64_t syncs_at_run, syncs_at_done;
	uint64_t ran_us, done_us;
};

/* Every fdatasync of the store's sync threads (linked with --wrap=fdatasync): when it began and
 * when it ended, to hold the store to "a durable job's completion only after a sync that began
 * after the job ran" without trusting its own bookkeeping. */
#define SYNCS_MAX 20000
static struct {
	pthread_mutex_t mu;
	size_t count;
	uint64_t began[SYNCS_MAX], ended[SYNCS_MAX];
} syncs = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
	uint64_t began = now_us();
	int rc = __real_fdatasync(fd);
	uint64_t ended = now_us();
	pthread_mutex_lock(&syncs.mu);
	if (syncs.count < SYNCS_MAX) {
		syncs.began[syncs.count] = began;
		syncs.ended[syncs.count] = ended;
		syncs.count++;
	}
	pthread_mutex_unlock(&syncs.mu);
	return rc;
}

static bool synced_between(uint64_t after, uint64_t before)
{
	bool found = false;
	pthread_mutex_lock(&syncs.mu);
	for (size_t i = 0; i < syncs.count && !found; i++)
		found = syncs.began[i] > after && syncs.ended[i] < before;
	pthread_mutex_unlock(&syncs.mu);
	return found;
}

static struct {
	struct event_base *base;
	struct store *store;
	int done, out_of_order, failed;
} order_test;

static uint64_t log_syncs_now(void)
{
	struct store_stats st;
	store_stats(order_test.store, &st);
	return st.log_syncs;
}

static int j_order(struct store_tx *tx, void *arg)
{
	struct order_job *j = arg;
	j->syncs_at_run = log_syncs_now();
	j->ran_us = now_us();
	if (j->kind == STORE_READ) {
		struct store_org org;
		return store_org_get(tx, "org_none", &org) == STORE_NOT_FOUND ? 0 : -1;
	}
	return store_org_create(tx, &j->org);
}

static void on_order_done(void *arg, int result)
{
	struct order_job *j = arg;
	j->syncs_at_done = log_syncs_now();
	j->done_us = now_us();
	order_test.out_of_order += j->index != order_test.done;
	order_test.failed += result != 0;
	if (++order_test.done == ORDER_JOBS)
		event_base_loopbreak(order_test.base);
}

/* Durable writes, plain writes and reads in a burst, so that batches commit while an earlier
 * one's sync is in flight: every completion comes in submission order (a read or a plain write
 * never overtakes a durable write still waiting for its sync), and every durable write's only
 * after a log sync that began after its batch was committed — with syncs overlapping
 * (MT_STORE_SYNC_THREADS), one that ends after the job ran is not enough. */
static void test_completions_after_sync_in_order(void **state)
{
	struct fixture *f = *state;
	order_test.base = event_base_new();
	const char *error = NULL;
	order_test.store = store_open(f->path, order_test.base, &error);
	assert_non_null(order_test.store);
	struct order_job *jobs = calloc(ORDER_JOBS, sizeof(*jobs));
	static const enum store_job_kind kinds[] = {STORE_WRITE_DURABLE, STORE_READ, STORE_WRITE};
	for (int i = 0; i < ORDER_JOBS; i++) {
		jobs[i].index = i;
		jobs[i].kind = kinds[i % 3];
		snprintf(jobs[i].org.name, sizeof(jobs[i].org.name), "order %d", i);
		assert_int_equal(
		    store_submit(order_test.store, jobs[i].kind, j_order, on_order_done, &jobs[i]),
		    0);
		/* The durable write goes alone, and the read and plain write after it come while
		 * its sync is likely in flight: batches without a durable write of their own. */
		if (jobs[i].kind == STORE_WRITE_DURABLE)
			usleep(300);
		if (i % 3 == 2)
			event_base_loop(order_test.base, EVLOOP_NONBLOCK);
	}
	if (order_test.done < ORDER_JOBS)
		event_base_dispatch(order_test.base);
	assert_int_equal(order_test.done, ORDER_JOBS);
	assert_int_equal(order_test.failed, 0);
	assert_int_equal(order_test.out_of_order, 0);
	for (int i = 0; i < ORDER_JOBS; i++) {
		if (jobs[i].kind == STORE_WRITE_DURABLE) {
			assert_true(jobs[i].syncs_at_done > jobs[i].syncs_at_run);
			assert_true(synced_between(jobs[i].ran_us, jobs[i].done_us));
		}
	}
	store_close(&order_test.store);
	event_base_free(order_test.base);
	free(jobs);
}

/* ---- replayable jobs: a group without savepoints, run again when one of its jobs fails ---- */

#define REPLAY_JOBS 6

struct replay_job {
	struct store_org org;
	bool fail; /* create the org, then fail: its row must not stay */
	int runs;  /* the test's own count; a real job sets its outputs afresh */
	int result;
};

struct replay {
	struct event_base *base;
	struct replay_job jobs[REPLAY_JOBS];
	int done;
	struct gate gate;
};

static struct replay *replay_of;

static int j_replay(struct store_tx *tx, void *arg)
{
	struct replay_job *j = arg;
	j->runs++;
	j->org.id[0] = '\0';
	int rc = store_org_create(tx, &j->org);
	return rc == 0 && j->fail ? STORE_CONFLICT : rc;
}

static void on_replay_done(void *arg, int result)
{
	struct replay_job *j = arg;
	j->result = result;
	if (++replay_of->done == REPLAY_JOBS)
		event_base_loopbreak(replay_of->base);
}

static int orgs_named(const char *path, const char *name)
{
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(
	    sqlite3_prepare_v2(raw, "SELECT COUNT(*) FROM orgs WHERE name = ?", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(raw);
	return n;
}

/* Runs REPLAY_JOBS jobs as one batch: `failing` (-1: none) creates its org and fails, `plain`
 * (-1: none) is submitted without STORE_REPLAYABLE. Returns the replays counted. */
static uint64_t run_replay_batch(struct fixture *f, const char *tag, int failing, int plain)
{
	struct replay *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	replay_of = r;
	r->base = event_base_new();
	const char *error = NULL;
	struct store *s = store_open(f->path, r->base, &error);
	assert_non_null(s);
	gate_close(s, &r->gate);
	struct store_stats before, after;
	store_stats(s, &before);
	for (int i = 0; i < REPLAY_JOBS; i++) {
		struct replay_job *j = &r->jobs[i];
		snprintf(j->org.name, sizeof(j->org.name), "%s %d", tag, i);
		j->fail = i == failing;
		enum store_job_kind kind =
		    i == plain ? STORE_WRITE : STORE_WRITE | STORE_REPLAYABLE;
		assert_int_equal(store_submit(s, kind, j_replay, on_replay_done, j), 0);
	}
	gate_open(&r->gate);
	event_base_dispatch(r->base);
	store_stats(s, &after);
	store_close(&s);

	assert_int_equal(r->done, REPLAY_JOBS);
	assert_int_equal(after.commits - before.commits, 1);
	assert_int_equal(after.max_batch, REPLAY_JOBS);
	uint64_t replays = after.replays - before.replays;
	for (int i = 0; i < REPLAY_JOBS; i++) {
		struct replay_job *j = &r->jobs[i];
		assert_int_equal(j->result, i == failing ? STORE_CONFLICT : 0);
		/* Each kept job's org is there once, the failed job's not at all. */
		assert_int_equal(orgs_named(f->path, j->org.name), i == failing ? 0 : 1);
		/* Only the jobs that had succeeded before the failure run again; the failed one
		 * does not. */
		int runs = replays > 0 && failing >= 0 && i < failing ? 2 : 1;
		assert_int_equal(j->runs, runs);
	}
	event_base_free(r->base);
	gate_destroy(&r->gate);
	free(r);
	return replays;
}

static void test_replayable_jobs(void **state)
{
	struct fixture *f = *state;
	/* All succeed: no savepoints, no replay. */
	assert_int_equal(run_replay_batch(f, "clean", -1, -1), 0);
	/* The fourth fails after its write: rolled back with the three before it, which run
	 * again; the two after it run once. */
	assert_int_equal(run_replay_batch(f, "middle", 3, -1), 1);
	/* The first fails: nothing else was lost, the group goes on without a replay. */
	assert_int_equal(run_replay_batch(f, "first", 0, -1), 0);
	/* One job that is not replayable: savepoints for all, the failure undone alone. */
	assert_int_equal(run_replay_batch(f, "mixed", 3, 5), 0);
}

/* ---- checkpoints: once per MT_SQLITE_CHECKPOINT_PAGES appended to the log ---- */

#define HOT_ROWS 600 /* a 4,000-byte row a page: each commit rewrites the same ~600 pages */

static int j_hot_create(struct store_tx *tx, void *arg)
{
	(void)arg;
	char sql[160];
	if (db_exec(tx->db, "CREATE TABLE hot (n INTEGER PRIMARY KEY, b BLOB)") < 0)
		return -1;
	snprintf(sql, sizeof(sql),
	         "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < %d) "
	         "INSERT INTO hot SELECT n, zeroblob(4000) FROM r",
	         HOT_ROWS);
	return db_exec(tx->db, sql);
}

static int j_hot_rewrite(struct store_tx *tx, void *arg)
{
	(void)arg;
	return db_exec(tx->db, "UPDATE hot SET b = randomblob(4000)");
}

/* A log that commits keep appending to (a writer always busy, as a first sync is) is copied back
 * once per MT_SQLITE_CHECKPOINT_PAGES appended, not after every commit once it is that long: a
 * page rewritten commit after commit (an index's) is then copied once per checkpoint. */
static void test_checkpoint_per_log_growth(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_hot_create, NULL), 0);
	/* ~40 commits of ~600 pages: the log passes MT_SQLITE_CHECKPOINT_PAGES (16,000) once and
	 * stays under MT_SQLITE_CHECKPOINT_RESTART; asking after every commit past 16,000 would
	 * run a checkpoint after each of the last ~13 (fewer only when the asks coalesce). */
	int commits = (int)(MT_SQLITE_CHECKPOINT_PAGES * 3 / 2 / HOT_ROWS);
	for (int i = 0; i < commits; i++)
		assert_int_equal(store_run(f->store, STORE_WRITE, j_hot_rewrite, NULL), 0);
	struct store_stats st;
	for (int waited = 0; waited < 3000; waited += 10) {
		store_stats(f->store, &st);
		if (st.checkpoints >= 1)
			break;
		usleep(10 * 1000);
	}
	usleep(200 * 1000); /* a second one, were it asked for, has run by now */
	store_stats(f->store, &st);
	assert_int_equal(st.checkpoints, 1);
}

/* ---- two handles on one file: `mailtrail init` beside `serve` ---- */

struct writer {
	const char *path;
	int ok;
	char last_id[MT_ID_MAX];
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	const char *error = NULL;
	struct store *s = store_open(w->path, NULL, &error);
	if (s == NULL)
		return NULL;
	for (int i = 0; i < 200; i++) {
		struct store_org org = {0};
		snprintf(org.name, sizeof(org.name), "w%d", i);
		if (store_run(s, i % 2 ? STORE_WRITE_DURABLE : STORE_WRITE, j_async_org, &org) ==
		    0) {
			w->ok++;
			memcpy(w->last_id, org.id, sizeof(w->last_id));
		}
	}
	store_close(&s);
	return NULL;
}

static void test_two_handles(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct store *init = store_open(f->path, NULL, &error);
	assert_non_null(init);
	struct call *c = call_new();
	snprintf(c->org.name, sizeof(c->org.name), "Provisioned");
	assert_int_equal(store_run(init, STORE_WRITE_DURABLE, j_org_create, c), 0);
	/* Visible at once through the serving handle. */
	struct call *g = call_new();
	g->id = c->org.id;
	assert_int_equal(run(f, STORE_READ, j_org_get, g), 0);
	assert_string_equal(g->org.name, "Provisioned");
	store_close(&init);

	/* Two writers on two handles at once: busy_timeout + BEGIN IMMEDIATE serialise them. */
	struct writer w1 = {.path = f->path}, w2 = {.path = f->path};
	pthread_t t1, t2;
	assert_int_equal(pthread_create(&t1, NULL, writer_thread, &w1), 0);
	assert_int_equal(pthread_create(&t2, NULL, writer_thread, &w2), 0);
	for (int i = 0; i < 50; i++) {
		struct store_org org = {0};
		snprintf(org.name, sizeof(org.name), "main%d", i);
		assert_int_equal(store_run(f->store, STORE_WRITE, j_async_org, &org), 0);
	}
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_int_equal(w1.ok, 200);
	assert_int_equal(w2.ok, 200);
	g->id = w2.last_id;
	assert_int_equal(run(f, STORE_READ, j_org_get, g), 0);
	free(c);
	free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_id),
	    cmocka_unit_test(test_new_ordered_id),
	    cmocka_unit_test_setup_teardown(test_migration_5_keeps_rows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_7_outbox, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_22_recipients, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_org, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_users_and_tokens, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_smtp_account_and_deactivate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_profiles, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_profile_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_job_rolls_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrations_idempotent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_completions_after_sync_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replayable_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkpoint_per_log_growth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
