#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "oauth/authorize.h"

#include <string.h>

static void test_pkce(void **state)
{
	(void)state;
	char challenge[OAUTH_RANDOM_TEXT_SIZE];
	/* RFC 7636 Appendix B */
	assert_int_equal(
	    oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge), 0);
	assert_string_equal(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	/* 43 to 128 unreserved characters */
	assert_int_equal(oauth_pkce_challenge("short", challenge), -1);
	assert_int_equal(
	    oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX+", challenge), -1);
	char verifier[OAUTH_RANDOM_TEXT_SIZE], again[OAUTH_RANDOM_TEXT_SIZE];
	assert_int_equal(oauth_pkce_new(verifier, challenge), 0);
	assert_int_equal(strlen(verifier), 43);
	assert_int_equal(oauth_pkce_challenge(verifier, again), 0);
	assert_string_equal(again, challenge);
	char state1[OAUTH_RANDOM_TEXT_SIZE], state2[OAUTH_RANDOM_TEXT_SIZE];
	assert_int_equal(oauth_state_new(state1), 0);
	assert_int_equal(oauth_state_new(state2), 0);
	assert_int_equal(strlen(state1), 43);
	assert_string_not_equal(state1, state2);
}

static void test_url(void **state)
{
	(void)state;
	struct oauth_authorize a = {
	    .auth_url = "https://accounts.google.com/o/oauth2/v2/auth",
	    .client_id = "123.apps.googleusercontent.com",
	    .redirect_uri = "https://crm.example.com/oauth/callback",
	    .scope = "https://mail.google.com/",
	    .state = "st-1",
	    .code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
	    .login_hint = "ann+jobs@example.com",
	    .extra = "access_type=offline&prompt=consent",
	};
	char url[1024];
	const char *error = NULL;
	assert_int_equal(oauth_authorize_url(&a, url, sizeof(url), &error), 0);
	assert_string_equal(url, "https://accounts.google.com/o/oauth2/v2/auth?response_type=code"
	                         "&client_id=123.apps.googleusercontent.com"
	                         "&redirect_uri=https%3A%2F%2Fcrm.example.com%2Foauth%2Fcallback"
	                         "&scope=https%3A%2F%2Fmail.google.com%2F&state=st-1"
	                         "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	                         "&code_challenge_method=S256&login_hint=ann%2Bjobs%40example.com"
	                         "&access_type=offline&prompt=consent");
	/* a space in the scope list is %20 */
	a.scope = "https://outlook.office.com/SMTP.Send offline_access";
	a.extra = NULL;
	a.login_hint = NULL;
	assert_int_equal(oauth_authorize_url(&a, url, sizeof(url), &error), 0);
	assert_non_null(
	    strstr(url, "&scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send%20offline_access&"));
	/* too long for the buffer, a plain-http endpoint, a missing state */
	assert_int_equal(oauth_authorize_url(&a, url, 64, &error), -1);
	assert_string_equal(error, "the authorisation URL is too long");
	a.auth_url = "http://accounts.google.com/o/oauth2/v2/auth";
	assert_int_equal(oauth_authorize_url(&a, url, sizeof(url), &error), -1);
	a.auth_url = "https://accounts.google.com/o/oauth2/v2/auth";
	a.state = NULL;
	assert_int_equal(oauth_authorize_url(&a, url, sizeof(url), &error), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pkce),
	    cmocka_unit_test(test_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
