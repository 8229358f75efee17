/* OAuth grants in the store: one per user, replaced by a new consent; a refresh's tokens written
 * only over the grant it refreshed (never over a newer consent); a revoke happening once (the one
 * notification) and taking the access token with it; the expiring list the background refresh
 * reads. Through store_run() on a temp-file store without a loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/str.h"
#include "store/store.h"
#include "store/store_oauth.h"
#include "store/store_org.h"
#include "store/store_user.h"
#include "temp_store.h"

#include <string.h>

struct call {
	struct store_org org, other_org;
	struct store_user user, other;
	struct store_oauth_grant grant, seen, got;
	struct store_sealed_token access, refresh;
	bool rotate;
	int64_t expires_at, updated_at, before;
	char reason[64];
	struct store_oauth_ref ids[8];
	size_t count;
	struct store_oauth_flow flow, taken;
	unsigned char hash[32];
	int64_t expired_before;
};

static int j_setup(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	mt_strlcpy(c->org.name, "Org", sizeof(c->org.name));
	mt_strlcpy(c->other_org.name, "Other", sizeof(c->other_org.name));
	int rc = store_org_create(tx, &c->org);
	if (rc == 0)
		rc = store_org_create(tx, &c->other_org);
	mt_strlcpy(c->user.org_id, c->org.id, sizeof(c->user.org_id));
	mt_strlcpy(c->user.email, "ann@a.example", sizeof(c->user.email));
	mt_strlcpy(c->user.name, "Ann", sizeof(c->user.name));
	if (rc == 0)
		rc = store_user_create(tx, &c->user);
	mt_strlcpy(c->other.org_id, c->org.id, sizeof(c->other.org_id));
	mt_strlcpy(c->other.email, "bob@a.example", sizeof(c->other.email));
	mt_strlcpy(c->other.name, "Bob", sizeof(c->other.name));
	return rc == 0 ? store_user_create(tx, &c->other) : rc;
}

JOB(j_put, store_oauth_grant_put(tx, &c->grant))
JOB(j_get, store_oauth_grant_get(tx, c->grant.org_id, c->grant.user_id, &c->got))
JOB(j_tokens, store_oauth_grant_tokens(tx, &c->seen, &c->access, c->rotate ? &c->refresh : NULL,
                                       c->expires_at, &c->updated_at))
JOB(j_revoke, store_oauth_grant_revoke(tx, c->seen.id, c->reason))
JOB(j_expiring, store_oauth_grants_expiring(tx, c->before, c->ids, 8, &c->count))
JOB(j_flow_put, store_oauth_flow_put(tx, &c->flow, c->expired_before, 3))
JOB(j_flow_take, store_oauth_flow_take(tx, c->hash, c->expired_before, &c->taken))

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct store *store;
	struct call *c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL || temp_store_open("mt-oauth", f->dir, f->path, &f->store) < 0)
		return -1;
	f->c = calloc(1, sizeof(*f->c));
	if (f->c == NULL || store_run(f->store, STORE_WRITE, j_setup, f->c) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	temp_store_close(f->dir, f->path, &f->store);
	free(f->c);
	free(f);
	return 0;
}

static void token(struct store_sealed_token *t, unsigned char byte, size_t len)
{
	memset(t->bytes, byte, len);
	t->len = len;
}

static void put_grant(struct fixture *f, const struct store_user *u, unsigned char refresh,
                      int64_t expires_at)
{
	struct store_oauth_grant *g = &f->c->grant;
	memset(g, 0, sizeof(*g));
	mt_strlcpy(g->org_id, u->org_id, sizeof(g->org_id));
	mt_strlcpy(g->user_id, u->id, sizeof(g->user_id));
	mt_strlcpy(g->provider, "google", sizeof(g->provider));
	mt_strlcpy(g->token_url, "https://oauth2.googleapis.com/token", sizeof(g->token_url));
	mt_strlcpy(g->client_id, "123.apps.googleusercontent.com", sizeof(g->client_id));
	token(&g->client_secret, 0xc5, 60);
	token(&g->refresh_token, refresh, 80);
	token(&g->access_token, 0xa1, 90);
	g->expires_at = expires_at;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_put, f->c), 0);
	assert_true(strncmp(g->id, "grt", 3) == 0);
}

static void test_put_get_replace(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	put_grant(f, &c->user, 0x11, 1000);
	char first[MT_ID_MAX];
	mt_strlcpy(first, c->grant.id, sizeof(first));
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_string_equal(c->got.id, first);
	assert_string_equal(c->got.provider, "google");
	assert_string_equal(c->got.client_id, "123.apps.googleusercontent.com");
	assert_int_equal(c->got.refresh_token.len, 80);
	assert_int_equal(c->got.refresh_token.bytes[79], 0x11);
	assert_int_equal(c->got.client_secret.len, 60);
	assert_int_equal(c->got.access_token.len, 90);
	assert_int_equal(c->got.expires_at, 1000);
	assert_int_equal(c->got.state, STORE_GRANT_ACTIVE);
	/* a new consent replaces it: a new id, the new refresh token */
	put_grant(f, &c->user, 0x22, 2000);
	assert_string_not_equal(c->grant.id, first);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_string_equal(c->got.id, c->grant.id);
	assert_int_equal(c->got.refresh_token.bytes[0], 0x22);
	/* another user has none; a user of another org cannot be given one here */
	mt_strlcpy(c->grant.user_id, c->other.id, sizeof(c->grant.user_id));
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), STORE_NOT_FOUND);
	mt_strlcpy(c->grant.org_id, c->other_org.id, sizeof(c->grant.org_id));
	mt_strlcpy(c->grant.user_id, c->user.id, sizeof(c->grant.user_id));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_put, c), STORE_NOT_FOUND);
	/* no refresh token: refused (-1, logged: a caller's bug) */
	put_grant(f, &c->user, 0x33, 0);
	c->grant.refresh_token.len = 0;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_put, c), -1);
}

static void test_tokens_fenced(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	put_grant(f, &c->user, 0x11, 1000);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	c->seen = c->got;
	token(&c->access, 0xb2, 95);
	c->expires_at = 5000;
	c->rotate = false;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_tokens, c), 0);
	assert_true(c->updated_at > c->seen.updated_at);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->got.access_token.bytes[0], 0xb2);
	assert_int_equal(c->got.expires_at, 5000);
	assert_int_equal(c->got.refresh_token.bytes[0], 0x11);
	/* the same `seen` again: its fence moved, so a second write (a late refresh) loses */
	assert_int_equal(store_run(f->store, STORE_WRITE, j_tokens, c), STORE_CONFLICT);
	/* with the new fence and a rotated refresh token */
	c->seen = c->got;
	c->rotate = true;
	token(&c->refresh, 0x44, 70);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_tokens, c), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->got.refresh_token.len, 70);
	assert_int_equal(c->got.refresh_token.bytes[0], 0x44);
	/* a refresh of the old grant does not overwrite a new consent */
	c->seen = c->got;
	put_grant(f, &c->user, 0x55, 100);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_tokens, c), STORE_CONFLICT);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->got.refresh_token.bytes[0], 0x55);
	/* an empty access token is refused (-1, logged) */
	c->seen = c->got;
	c->access.len = 0;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_tokens, c), -1);
}

static void test_revoke_once(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	put_grant(f, &c->user, 0x11, 1000);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	c->seen = c->got;
	mt_strlcpy(c->reason, "invalid_grant: Token has been expired or revoked.",
	           sizeof(c->reason));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_revoke, c), 0);
	/* a second failure of the same grant: no second change, so no second notification */
	assert_int_equal(store_run(f->store, STORE_WRITE, j_revoke, c), STORE_CONFLICT);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->got.state, STORE_GRANT_REVOKED);
	assert_string_equal(c->got.revoked_reason, c->reason);
	assert_int_equal(c->got.access_token.len, 0);
	/* a refresh that was in flight cannot bring it back */
	token(&c->access, 0xb2, 95);
	c->rotate = false;
	c->seen = c->got;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_tokens, c), STORE_CONFLICT);
	/* a new consent makes it active again */
	put_grant(f, &c->user, 0x66, 1000);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->got.state, STORE_GRANT_ACTIVE);
	assert_string_equal(c->got.revoked_reason, "");
}

static void test_expiring(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	put_grant(f, &c->user, 0x11, 3000);
	put_grant(f, &c->other, 0x22, 1000);
	c->before = 2000;
	assert_int_equal(store_run(f->store, STORE_READ, j_expiring, c), 0);
	assert_int_equal(c->count, 1);
	assert_string_equal(c->ids[0].user_id, c->other.id);
	assert_string_equal(c->ids[0].org_id, c->org.id);
	c->before = 4000;
	assert_int_equal(store_run(f->store, STORE_READ, j_expiring, c), 0);
	assert_int_equal(c->count, 2);
	assert_string_equal(c->ids[0].user_id, c->other.id); /* soonest first */
	assert_string_equal(c->ids[1].user_id, c->user.id);
	/* a revoked grant is not refreshed */
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0); /* grant = other's */
	c->seen = c->got;
	mt_strlcpy(c->reason, "invalid_grant", sizeof(c->reason));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_revoke, c), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_expiring, c), 0);
	assert_int_equal(c->count, 1);
	assert_string_equal(c->ids[0].user_id, c->user.id);
}

static void make_flow(struct call *c, unsigned char tag, int64_t created_at)
{
	memset(&c->flow, 0, sizeof(c->flow));
	memset(c->flow.state_hash, tag, sizeof(c->flow.state_hash));
	mt_strlcpy(c->flow.org_id, c->org.id, sizeof(c->flow.org_id));
	mt_strlcpy(c->flow.user_id, c->user.id, sizeof(c->flow.user_id));
	mt_strlcpy(c->flow.provider, "google", sizeof(c->flow.provider));
	c->flow.purposes = 3;
	memset(c->flow.verifier.bytes, tag, 60);
	c->flow.verifier.len = 60;
	c->flow.created_at = created_at;
}

/* A flow is taken once; an expired one is not given out; a user keeps at most 3 (the oldest
 * go); a flow for a user of another org is refused. */
static void test_flows(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	c->expired_before = 1000;
	make_flow(c, 1, 2000);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
	memset(c->hash, 1, sizeof(c->hash));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), 0);
	assert_string_equal(c->taken.user_id, c->user.id);
	assert_string_equal(c->taken.provider, "google");
	assert_int_equal(c->taken.purposes, 3);
	assert_int_equal(c->taken.verifier.len, 60);
	assert_memory_equal(c->taken.verifier.bytes, c->flow.verifier.bytes, 60);
	assert_int_equal(c->taken.created_at, 2000);
	/* once only */
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), STORE_NOT_FOUND);

	/* expired: not given out */
	make_flow(c, 2, 2000);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
	c->expired_before = 2001;
	memset(c->hash, 2, sizeof(c->hash));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), STORE_NOT_FOUND);

	/* at most 3 per user: the fourth drops the oldest */
	c->expired_before = 0;
	for (unsigned char t = 10; t < 14; t++) {
		make_flow(c, t, 3000 + t);
		assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
	}
	memset(c->hash, 10, sizeof(c->hash));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), STORE_NOT_FOUND);
	for (unsigned char t = 11; t < 14; t++) {
		memset(c->hash, t, sizeof(c->hash));
		assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), 0);
	}

	/* putting one purges every expired flow */
	make_flow(c, 20, 100);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
	c->expired_before = 200;
	make_flow(c, 21, 300);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
	c->expired_before = 0; /* even asked without an expiry, the purged one is gone */
	memset(c->hash, 20, sizeof(c->hash));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), STORE_NOT_FOUND);

	/* flows started in the same millisecond keep the order they were put in: the first
	 * goes when a fourth comes */
	c->expired_before = 0;
	for (unsigned char t = 40; t < 44; t++) {
		make_flow(c, t, 9000);
		assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
	}
	memset(c->hash, 40, sizeof(c->hash));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), STORE_NOT_FOUND);
	for (unsigned char t = 41; t < 44; t++) {
		memset(c->hash, t, sizeof(c->hash));
		assert_int_equal(store_run(f->store, STORE_WRITE, j_flow_take, c), 0);
	}

	/* another org's user */
	make_flow(c, 30, 4000);
	mt_strlcpy(c->flow.org_id, c->other_org.id, sizeof(c->flow.org_id));
	assert_int_not_equal(store_run(f->store, STORE_WRITE, j_flow_put, c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_put_get_replace, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tokens_fenced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiring, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flows, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
