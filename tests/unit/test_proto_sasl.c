#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/limits.h"
#include "proto/sasl.h"

#include <string.h>

static void test_mech_names(void **state)
{
	(void)state;
	assert_int_equal(sasl_mech_from_name("plain", 5), SASL_MECH_PLAIN);
	assert_int_equal(sasl_mech_from_name("XOAUTH2", 7), SASL_MECH_XOAUTH2);
	assert_int_equal(sasl_mech_from_name("Cram-MD5", 8), SASL_MECH_CRAM_MD5);
	assert_int_equal(sasl_mech_from_name("XOAUTH", 6), 0);
	assert_int_equal(sasl_mech_from_name("PLAINX", 6), 0);
	assert_int_equal(sasl_mech_from_name("PLAIN-CLIENTTOKEN", 17), 0);
	assert_int_equal(sasl_mech_from_name("", 0), 0);
	assert_string_equal(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN");
	assert_string_equal(sasl_mech_name(SASL_MECH_OAUTHBEARER), "OAUTHBEARER");
}

static void test_plain(void **state)
{
	(void)state;
	struct mt_buf out;
	mt_buf_init(&out, MT_SASL_RESPONSE_MAX);
	struct mt_secret *secret = mt_secret_new("p\xc3\xa4ss word", 10);
	assert_non_null(secret);
	assert_int_equal(sasl_plain_command(&out, "user@example.com", secret), 0);
	assert_string_equal(out.data, "AUTH PLAIN AHVzZXJAZXhhbXBsZS5jb20AcMOkc3Mgd29yZA==\r\n");

	size_t before = out.len;
	assert_int_equal(sasl_plain_command(&out, "user\r\nRSET", secret), -1);
	assert_int_equal(sasl_plain_command(&out, "", secret), -1);
	assert_int_equal(out.len, before);
	mt_secret_free(&secret);

	/* a NUL in the password would shift PLAIN's fields */
	secret = mt_secret_new("a\0b", 3);
	assert_int_equal(sasl_plain_command(&out, "u", secret), -1);
	mt_secret_free(&secret);

	/* the cap: nothing partial is left behind */
	struct mt_buf small;
	mt_buf_init(&small, 20);
	secret = mt_secret_new("secret", 6);
	assert_int_equal(sasl_plain_command(&small, "user@example.com", secret), -1);
	assert_int_equal(small.len, 0);
	mt_buf_free_wipe(&small);
	mt_secret_free(&secret);
	mt_buf_free_wipe(&out);
}

static void test_login(void **state)
{
	(void)state;
	struct mt_buf out;
	mt_buf_init(&out, MT_SASL_RESPONSE_MAX);
	struct mt_secret *secret = mt_secret_new("secret", 6);
	assert_int_equal(sasl_login_command(&out), 0);
	assert_int_equal(sasl_login_user(&out, "user@example.com"), 0);
	assert_int_equal(sasl_login_secret(&out, secret), 0);
	assert_string_equal(out.data, "AUTH LOGIN\r\ndXNlckBleGFtcGxlLmNvbQ==\r\nc2VjcmV0\r\n");
	assert_int_equal(sasl_login_user(&out, "a\nb"), -1);
	mt_secret_free(&secret);
	mt_buf_free_wipe(&out);
}

static void test_xoauth2(void **state)
{
	(void)state;
	struct mt_buf out;
	mt_buf_init(&out, MT_SASL_RESPONSE_MAX);
	/* the example of Google's XOAUTH2 protocol page */
	struct mt_secret *token =
	    mt_secret_new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", 45);
	assert_int_equal(sasl_xoauth2_command(&out, "someuser@example.com", token), 0);
	assert_string_equal(out.data,
	                    "AUTH XOAUTH2 "
	                    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbV"
	                    "RjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n");
	assert_int_equal(sasl_xoauth2_command(&out, "a\001b", token), -1);
	mt_secret_free(&token);
	token = mt_secret_new("tok\001auth=x", 10);
	assert_int_equal(sasl_xoauth2_command(&out, "a", token), -1);
	mt_secret_free(&token);
	token = mt_secret_new("tok\r\n", 5);
	assert_int_equal(sasl_xoauth2_command(&out, "a", token), -1);
	mt_secret_free(&token);
	mt_buf_free_wipe(&out);
}

static int parse_error(const char *challenge, struct sasl_xoauth2_error *err)
{
	const char *error = NULL;
	int ret = sasl_xoauth2_parse_error(challenge, strlen(challenge), err, &error);
	if (ret < 0)
		assert_non_null(error);
	return ret;
}

/* IMAP's AUTHENTICATE takes the same messages without SMTP's "AUTH MECH " prefix. */
static void test_bare_responses(void **state)
{
	(void)state;
	struct mt_buf out;
	mt_buf_init(&out, MT_SASL_RESPONSE_MAX);
	struct mt_secret *secret = mt_secret_new("p\xc3\xa4ss word", 10);
	assert_int_equal(sasl_plain_response(&out, "user@example.com", secret), 0);
	assert_string_equal(out.data, "AHVzZXJAZXhhbXBsZS5jb20AcMOkc3Mgd29yZA==\r\n");
	size_t before = out.len;
	assert_int_equal(sasl_plain_response(&out, "user\r\nx", secret), -1);
	assert_int_equal(out.len, before);
	mt_buf_reset(&out);
	struct mt_secret *token =
	    mt_secret_new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", 45);
	assert_int_equal(sasl_xoauth2_response(&out, "someuser@example.com", token), 0);
	assert_string_equal(out.data,
	                    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbV"
	                    "RjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n");
	mt_secret_free(&secret);
	mt_secret_free(&token);
	mt_buf_free_wipe(&out);
}

static void test_xoauth2_error(void **state)
{
	(void)state;
	struct sasl_xoauth2_error err;
	/* Gmail's challenge after an expired token */
	assert_int_equal(
	    parse_error("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHR"
	                "wczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
	                &err),
	    0);
	assert_string_equal(err.status, "401");
	assert_string_equal(err.scope, "https://mail.google.com/");
	/* a numeric status */
	assert_int_equal(
	    parse_error("eyJzdGF0dXMiOjQwMSwic2NoZW1lcyI6ImJlYXJlciIsInNjb3BlIjoiaHR0cH"
	                "M6Ly9vdXRsb29rLm9mZmljZS5jb20vU01UUC5TZW5kIn0=",
	                &err),
	    0);
	assert_string_equal(err.status, "401");
	assert_string_equal(err.scope, "https://outlook.office.com/SMTP.Send");
	/* no scope; and padding left out by the server */
	assert_int_equal(parse_error("eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0", &err), 0);
	assert_string_equal(err.status, "400");
	assert_string_equal(err.scope, "");
	assert_int_equal(parse_error(" eyJzdGF0dXMiOiI0MDEifQ==\r\n", &err), 0);
	assert_string_equal(err.status, "401");

	assert_int_equal(parse_error("", &err), -1);
	assert_int_equal(parse_error("not base64!", &err), -1);
	assert_int_equal(parse_error("aGVsbG8=", &err), -1);             /* "hello" */
	assert_int_equal(parse_error("WzQwMV0=", &err), -1);             /* [401] */
	assert_int_equal(parse_error("eyJzY29wZSI6IngifQ==", &err), -1); /* no status */
	assert_int_equal(parse_error("eyJzdGF0dXMiOnRydWV9", &err), -1); /* true */
	assert_int_equal(parse_error("eyJzdGF0dXMiOiIifQ==", &err), -1); /* "" */
	assert_string_equal(err.status, "");
	/* {"status":"401","status":"400"} */
	assert_int_equal(parse_error("eyJzdGF0dXMiOiI0MDEiLCJzdGF0dXMiOiI0MDAifQ==", &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mech_names),    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_login),         cmocka_unit_test(test_xoauth2),
	    cmocka_unit_test(test_xoauth2_error), cmocka_unit_test(test_bare_responses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
