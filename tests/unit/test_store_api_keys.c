/* The store side of service credentials (issue 16): org-level API keys (created, found by hash
 * only while unrevoked, counted, listed, revoked within their org) and an admin's view of users
 * and tokens (users paged in id order, a user's unrevoked tokens, a token revoked only through
 * its own user and org). Through store_run() on a temp-file store without a loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/str.h"
#include "store/store.h"
#include "store/store_api_key.h"
#include "store/store_org.h"
#include "store/store_user.h"
#include "temp_store.h"

#include <string.h>

struct call {
	struct store_org org, org2;
	struct store_user users[5]; /* 0-3 in org, 4 in org2 */
	struct store_api_key key, found;
	struct store_api_key_list keys;
	struct store_user_list list;
	struct store_token token, tokens[4];
	size_t token_count;
	const char *org_id, *user_id, *id;
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	unsigned char hash[32];
	int64_t count;
};

static int j_setup(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	mt_strlcpy(c->org.name, "Org", sizeof(c->org.name));
	mt_strlcpy(c->org2.name, "Org 2", sizeof(c->org2.name));
	int rc = store_org_create(tx, &c->org);
	if (rc == 0)
		rc = store_org_create(tx, &c->org2);
	for (int i = 0; rc == 0 && i < 5; i++) {
		struct store_user *u = &c->users[i];
		mt_strlcpy(u->org_id, i < 4 ? c->org.id : c->org2.id, sizeof(u->org_id));
		snprintf(u->email, sizeof(u->email), "u%d@a.example", i);
		mt_strlcpy(u->name, "U", sizeof(u->name));
		rc = store_user_create(tx, u);
	}
	return rc;
}

JOB(j_key_create, store_api_key_create(tx, &c->key))
JOB(j_key_auth, store_api_key_authenticate(tx, c->hash, &c->found))
JOB(j_key_revoke, store_api_key_revoke(tx, c->org_id, c->id))
JOB(j_key_count, store_api_key_count(tx, c->org_id, &c->count))
JOB(j_key_list, store_api_key_list(tx, c->org_id, &c->keys))
JOB(j_user_list, store_user_list(tx, c->org_id, c->cursor, c->limit, &c->list))
JOB(j_token_create, store_token_create(tx, &c->token))
JOB(j_token_list, store_token_list(tx, c->org_id, c->user_id, c->tokens, 4, &c->token_count))
JOB(j_token_revoke_in_org, store_token_revoke_in_org(tx, c->org_id, c->user_id, c->id))

static void test_api_keys(void **state)
{
	(void)state;
	char dir[TEMP_STORE_DIR_MAX], path[TEMP_STORE_PATH_MAX];
	struct store *s;
	assert_int_equal(temp_store_open("test_store_api_keys", dir, path, &s), 0);
	struct call *c = calloc(1, sizeof(*c));
	assert_int_equal(store_run(s, STORE_WRITE, j_setup, c), 0);

	mt_strlcpy(c->key.org_id, c->org.id, sizeof(c->key.org_id));
	mt_strlcpy(c->key.name, "CRM", sizeof(c->key.name));
	mt_strlcpy(c->key.created_by, c->users[0].id, sizeof(c->key.created_by));
	c->key.scopes = 3;
	memset(c->key.hash, 0xab, sizeof(c->key.hash));
	assert_int_equal(store_run(s, STORE_WRITE, j_key_create, c), 0);
	assert_true(strncmp(c->key.id, "key_", 4) == 0);
	/* the same hash again is a conflict; an unknown org is not found */
	char first[MT_ID_MAX];
	mt_strlcpy(first, c->key.id, sizeof(first));
	assert_int_equal(store_run(s, STORE_WRITE, j_key_create, c), STORE_CONFLICT);
	mt_strlcpy(c->key.org_id, "org_nosuch", sizeof(c->key.org_id));
	c->key.hash[0] = 1;
	assert_int_equal(store_run(s, STORE_WRITE, j_key_create, c), STORE_NOT_FOUND);

	memset(c->hash, 0xab, sizeof(c->hash));
	assert_int_equal(store_run(s, STORE_READ, j_key_auth, c), 0);
	assert_string_equal(c->found.id, first);
	assert_string_equal(c->found.org_id, c->org.id);
	assert_string_equal(c->found.name, "CRM");
	assert_int_equal(c->found.scopes, 3);
	c->hash[31] ^= 1;
	assert_int_equal(store_run(s, STORE_READ, j_key_auth, c), STORE_NOT_FOUND);
	c->hash[31] ^= 1;

	c->org_id = c->org.id;
	assert_int_equal(store_run(s, STORE_READ, j_key_count, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(store_run(s, STORE_READ, j_key_list, c), 0);
	assert_int_equal(c->keys.count, 1);
	assert_string_equal(c->keys.items[0].id, first);
	store_api_key_list_free(&c->keys);

	/* another org cannot revoke it; its own can, twice */
	c->org_id = c->org2.id;
	c->id = first;
	assert_int_equal(store_run(s, STORE_WRITE, j_key_revoke, c), STORE_NOT_FOUND);
	assert_int_equal(store_run(s, STORE_READ, j_key_auth, c), 0);
	c->org_id = c->org.id;
	assert_int_equal(store_run(s, STORE_WRITE, j_key_revoke, c), 0);
	assert_int_equal(store_run(s, STORE_WRITE, j_key_revoke, c), 0);
	assert_int_equal(store_run(s, STORE_READ, j_key_auth, c), STORE_NOT_FOUND);
	assert_int_equal(store_run(s, STORE_READ, j_key_count, c), 0);
	assert_int_equal(c->count, 0);
	assert_int_equal(store_run(s, STORE_READ, j_key_list, c), 0);
	assert_int_equal(c->keys.count, 0);
	store_api_key_list_free(&c->keys);

	free(c);
	temp_store_close(dir, path, &s);
}

static void test_users_and_tokens_view(void **state)
{
	(void)state;
	char dir[TEMP_STORE_DIR_MAX], path[TEMP_STORE_PATH_MAX];
	struct store *s;
	assert_int_equal(temp_store_open("test_store_api_keys", dir, path, &s), 0);
	struct call *c = calloc(1, sizeof(*c));
	assert_int_equal(store_run(s, STORE_WRITE, j_setup, c), 0);

	/* pages of 3 then 1, in id order, the other org's user never */
	c->org_id = c->org.id;
	c->limit = 3;
	assert_int_equal(store_run(s, STORE_READ, j_user_list, c), 0);
	assert_int_equal(c->list.count, 3);
	assert_string_equal(c->list.next_cursor, c->list.items[2].id);
	assert_true(strcmp(c->list.items[0].id, c->list.items[1].id) < 0);
	mt_strlcpy(c->cursor, c->list.next_cursor, sizeof(c->cursor));
	char last_of_first[MT_ID_MAX];
	mt_strlcpy(last_of_first, c->list.items[2].id, sizeof(last_of_first));
	store_user_list_free(&c->list);
	assert_int_equal(store_run(s, STORE_READ, j_user_list, c), 0);
	assert_int_equal(c->list.count, 1);
	assert_string_equal(c->list.next_cursor, "");
	assert_true(strcmp(c->list.items[0].id, last_of_first) > 0);
	assert_string_equal(c->list.items[0].org_id, c->org.id);
	store_user_list_free(&c->list);
	mt_strlcpy(c->cursor, "prf_abc", sizeof(c->cursor));
	assert_int_equal(store_run(s, STORE_READ, j_user_list, c), STORE_INVALID);

	/* two tokens for user 1, one for user 2 */
	for (int i = 0; i < 3; i++) {
		memset(&c->token, 0, sizeof(c->token));
		struct store_user *u = &c->users[i < 2 ? 1 : 2];
		mt_strlcpy(c->token.org_id, u->org_id, sizeof(c->token.org_id));
		mt_strlcpy(c->token.user_id, u->id, sizeof(c->token.user_id));
		memset(c->token.hash, 0x10 + i, sizeof(c->token.hash));
		assert_int_equal(store_run(s, STORE_WRITE, j_token_create, c), 0);
	}
	char other_token[MT_ID_MAX];
	mt_strlcpy(other_token, c->token.id, sizeof(other_token));
	c->user_id = c->users[1].id;
	assert_int_equal(store_run(s, STORE_READ, j_token_list, c), 0);
	assert_int_equal(c->token_count, 2);
	char revoked[MT_ID_MAX];
	mt_strlcpy(revoked, c->tokens[0].id, sizeof(revoked));
	/* user 2's token is not user 1's to revoke; nor is org 2 user 1's org */
	c->id = other_token;
	assert_int_equal(store_run(s, STORE_WRITE, j_token_revoke_in_org, c), STORE_NOT_FOUND);
	c->id = revoked;
	c->org_id = c->org2.id;
	assert_int_equal(store_run(s, STORE_WRITE, j_token_revoke_in_org, c), STORE_NOT_FOUND);
	c->org_id = c->org.id;
	assert_int_equal(store_run(s, STORE_WRITE, j_token_revoke_in_org, c), 0);
	assert_int_equal(store_run(s, STORE_READ, j_token_list, c), 0);
	assert_int_equal(c->token_count, 1);
	assert_string_not_equal(c->tokens[0].id, revoked);
	c->user_id = c->users[2].id;
	assert_int_equal(store_run(s, STORE_READ, j_token_list, c), 0);
	assert_int_equal(c->token_count, 1);
	assert_string_equal(c->tokens[0].id, other_token);

	free(c);
	temp_store_close(dir, path, &s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_api_keys),
	    cmocka_unit_test(test_users_and_tokens_view),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
