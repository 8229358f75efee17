#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/limits.h"
#include "proto/oauth_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(long status, const char *body, struct oauth_token_reply *reply, const char **error)
{
	*error = NULL;
	return oauth_token_reply_parse(status, body, strlen(body), reply, error);
}

static void assert_secret(const struct mt_secret *secret, const char *want)
{
	assert_non_null(secret);
	assert_int_equal(mt_secret_len(secret), strlen(want));
	assert_memory_equal(mt_secret_bytes(secret), want, strlen(want));
}

static void test_token(void **state)
{
	(void)state;
	struct oauth_token_reply r;
	const char *error;
	assert_int_equal(parse(200,
	                       "{\"access_token\":\"ya29.a0Af\",\"token_type\":\"Bearer\","
	                       "\"expires_in\":3599,\"scope\":\"https://mail.google.com/\"}",
	                       &r, &error),
	                 0);
	assert_int_equal(r.outcome, OAUTH_OK);
	assert_secret(r.access_token, "ya29.a0Af");
	assert_null(r.refresh_token);
	assert_int_equal(r.expires_in, 3599);
	oauth_token_reply_clear(&r);
	assert_null(r.access_token);
	/* Microsoft rotates the refresh token; some endpoints send expires_in as a string and
	 * token_type in lower case. */
	assert_int_equal(parse(200,
	                       "{\"token_type\":\"bearer\",\"expires_in\":\"4999\","
	                       "\"access_token\":\"eyJ0eXAi\",\"refresh_token\":\"0.AXEA\"}",
	                       &r, &error),
	                 0);
	assert_secret(r.refresh_token, "0.AXEA");
	assert_int_equal(r.expires_in, 4999);
	oauth_token_reply_clear(&r);
	/* No expires_in: 0, the caller decides. */
	assert_int_equal(parse(200, "{\"access_token\":\"t\"}", &r, &error), 0);
	assert_int_equal(r.expires_in, 0);
	oauth_token_reply_clear(&r);
}

static void test_errors(void **state)
{
	(void)state;
	struct oauth_token_reply r;
	const char *error;
	assert_int_equal(parse(400,
	                       "{\"error\":\"invalid_grant\",\"error_description\":\"Token has "
	                       "been expired or revoked.\"}",
	                       &r, &error),
	                 0);
	assert_int_equal(r.outcome, OAUTH_REVOKED);
	assert_string_equal(r.error, "invalid_grant");
	assert_string_equal(r.reason,
	                    "invalid_grant: Token has been expired or revoked. (HTTP 400)");
	assert_null(r.access_token);
	oauth_token_reply_clear(&r);
	assert_int_equal(parse(401, "{\"error\":\"invalid_client\"}", &r, &error), 0);
	assert_int_equal(r.outcome, OAUTH_REFUSED);
	oauth_token_reply_clear(&r);
	assert_int_equal(parse(400, "{\"error\":\"temporarily_unavailable\"}", &r, &error), 0);
	assert_int_equal(r.outcome, OAUTH_TEMPORARY);
	oauth_token_reply_clear(&r);
	/* A 5xx or 429 is temporary whatever its body says, HTML included. */
	assert_int_equal(parse(503, "<html>down</html>", &r, &error), 0);
	assert_int_equal(r.outcome, OAUTH_TEMPORARY);
	oauth_token_reply_clear(&r);
	assert_int_equal(parse(429, "{\"error\":\"invalid_request\"}", &r, &error), 0);
	assert_int_equal(r.outcome, OAUTH_TEMPORARY);
	oauth_token_reply_clear(&r);
	/* Control bytes in a description do not reach the reason. */
	assert_int_equal(
	    parse(400, "{\"error\":\"invalid_scope\",\"error_description\":\"a\\nb\"}", &r, &error),
	    0);
	assert_string_equal(r.reason, "invalid_scope: a?b (HTTP 400)");
	oauth_token_reply_clear(&r);
}

static void test_unreadable(void **state)
{
	(void)state;
	struct oauth_token_reply r;
	const char *error;
	static const char *const bad_200[] = {
	    "",
	    "not json",
	    "[\"access_token\"]",
	    "{\"token_type\":\"Bearer\"}",
	    "{\"access_token\":\"\"}",
	    "{\"access_token\":42}",
	    "{\"access_token\":\"a b\"}",
	    "{\"access_token\":\"a\\u0001b\"}",
	    "{\"access_token\":\"t\",\"token_type\":\"mac\"}",
	    "{\"access_token\":\"t\",\"expires_in\":-5}",
	    "{\"access_token\":\"t\",\"refresh_token\":7}",
	    "{\"access_token\":\"t\",\"access_token\":\"u\"}",
	};
	for (size_t i = 0; i < sizeof(bad_200) / sizeof(bad_200[0]); i++) {
		assert_int_equal(parse(200, bad_200[i], &r, &error), -1);
		assert_non_null(error);
		assert_null(r.access_token);
		assert_null(r.refresh_token);
	}
	assert_int_equal(parse(400, "<html>bad</html>", &r, &error), -1);
	/* The caps: a token of MT_OAUTH_TOKEN_MAX goes, one byte more does not; a body over
	 * MT_OAUTH_RESPONSE_MAX is refused before it is read. */
	size_t size = MT_OAUTH_TOKEN_MAX + 64;
	char *body = malloc(size);
	assert_non_null(body);
	for (int extra = 0; extra <= 1; extra++) {
		int n = snprintf(body, size, "{\"access_token\":\"");
		memset(body + n, 'a', MT_OAUTH_TOKEN_MAX + (size_t)extra);
		snprintf(body + n + MT_OAUTH_TOKEN_MAX + extra, 8, "\"}");
		assert_int_equal(parse(200, body, &r, &error), extra ? -1 : 0);
		oauth_token_reply_clear(&r);
	}
	free(body);
	assert_int_equal(oauth_token_reply_parse(200, "{}", MT_OAUTH_RESPONSE_MAX + 1, &r, &error),
	                 -1);
	assert_string_equal(error, "the reply is over its cap");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_unreadable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
