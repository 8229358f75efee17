/* The broker's pure decisions: when a grant's access token is handed out, refreshed (missing,
 * within the margin, the one a server refused) or the grant is revoked; and the checks of a new
 * grant, which wipe the request's secrets whatever the verdict. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/oauth_broker.h"
#include "lib/str.h"

#include <string.h>

static struct store_oauth_grant grant_with(int64_t expires_at, int64_t updated_at)
{
	struct store_oauth_grant g;
	memset(&g, 0, sizeof(g));
	g.state = STORE_GRANT_ACTIVE;
	g.access_token.len = 80;
	g.expires_at = expires_at;
	g.updated_at = updated_at;
	return g;
}

static void test_decide(void **state)
{
	(void)state;
	const int64_t now = 1000000;
	struct store_oauth_grant g = grant_with(now + 3600, 5000);
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_USE);
	/* within the margin, at it, just beyond it */
	g.expires_at = now + MT_OAUTH_REFRESH_MARGIN_S - 1;
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_REFRESH);
	g.expires_at = now + MT_OAUTH_REFRESH_MARGIN_S;
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_REFRESH);
	g.expires_at = now + MT_OAUTH_REFRESH_MARGIN_S + 1;
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_USE);
	/* expired long ago */
	g.expires_at = now - 10;
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_REFRESH);
	/* an unknown expiry is used until a server refuses it */
	g.expires_at = 0;
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_USE);
	/* no access token yet */
	g = grant_with(now + 3600, 5000);
	g.access_token.len = 0;
	assert_int_equal(oauth_broker_decide(&g, now, -1), OAUTH_ACTION_REFRESH);
	/* revoked wins over everything */
	g = grant_with(now + 3600, 5000);
	g.state = STORE_GRANT_REVOKED;
	assert_int_equal(oauth_broker_decide(&g, now, 5000), OAUTH_ACTION_REVOKED);
}

static void test_decide_forced(void **state)
{
	(void)state;
	const int64_t now = 1000000;
	struct store_oauth_grant g = grant_with(now + 3600, 5000);
	/* the refused token is the grant's current one: refresh although it looks valid */
	assert_int_equal(oauth_broker_decide(&g, now, 5000), OAUTH_ACTION_REFRESH);
	/* refused with an older version: someone refreshed since, the newer token is used */
	assert_int_equal(oauth_broker_decide(&g, now, 4999), OAUTH_ACTION_USE);
	/* a version from the future (clock of another node) still refreshes */
	assert_int_equal(oauth_broker_decide(&g, now, 6000), OAUTH_ACTION_REFRESH);
}

static void test_grant_take(void **state)
{
	(void)state;
	char refresh[] = "1//refresh-secret";
	char access[] = "ya29.access-secret";
	char client_secret[] = "client-secret";
	struct oauth_grant_request req = {
	    .provider = "google",
	    .token_url = "https://oauth2.example/token",
	    .client_id = "client-1",
	    .client_secret = client_secret,
	    .refresh_token = refresh,
	    .access_token = access,
	    .expires_at = 1234,
	};
	struct oauth_new_grant g;
	assert_null(oauth_grant_take(&g, &req));
	assert_string_equal(g.provider, "google");
	assert_int_equal(g.expires_at, 1234);
	assert_int_equal(mt_secret_len(g.refresh_token), strlen("1//refresh-secret"));
	assert_memory_equal(mt_secret_bytes(g.access_token), "ya29.access-secret", 18);
	assert_non_null(g.client_secret);
	/* the request's copies are wiped */
	assert_int_equal(refresh[0], 0);
	assert_int_equal(access[0], 0);
	assert_int_equal(client_secret[0], 0);
	oauth_grant_clear(&g);
	assert_null(g.refresh_token);
}

static void test_grant_take_refused(void **state)
{
	(void)state;
	char refresh[] = "rt";
	struct oauth_grant_request req = {
	    .token_url = "http://oauth2.example/token",
	    .client_id = "client-1",
	    .refresh_token = refresh,
	};
	struct oauth_new_grant g;
	const char *why = oauth_grant_take(&g, &req);
	assert_non_null(why);
	assert_non_null(strstr(why, "token_url"));
	assert_int_equal(refresh[0], 0); /* wiped although refused */
	assert_null(g.refresh_token);
	char refresh2[] = "rt";
	req.refresh_token = refresh2;
	req.token_url = "https://oauth2.example/token";
	req.client_id = NULL;
	assert_non_null(oauth_grant_take(&g, &req));
	req.client_id = "client-1";
	req.refresh_token = NULL;
	assert_non_null(oauth_grant_take(&g, &req));
	char spaced[] = "a b";
	req.refresh_token = spaced;
	assert_non_null(oauth_grant_take(&g, &req));
	/* the defaults: provider custom, no expiry without an access token */
	char refresh3[] = "rt3";
	req.refresh_token = refresh3;
	req.expires_at = 99;
	assert_null(oauth_grant_take(&g, &req));
	assert_string_equal(g.provider, "custom");
	assert_int_equal(g.expires_at, 0);
	assert_null(g.access_token);
	assert_null(g.client_secret);
	oauth_grant_clear(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decide),
	    cmocka_unit_test(test_decide_forced),
	    cmocka_unit_test(test_grant_take),
	    cmocka_unit_test(test_grant_take_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
