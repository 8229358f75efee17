#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/smtp_caps.h"

#include <string.h>

static struct smtp_reply_parser parser;

static const struct smtp_reply *parse(const char *input)
{
	smtp_reply_parser_deinit(&parser);
	smtp_reply_parser_init(&parser);
	size_t consumed = 0;
	const struct smtp_reply *reply = NULL;
	const char *error = NULL;
	assert_int_equal(
	    smtp_reply_parser_feed(&parser, input, strlen(input), &consumed, &reply, &error), 1);
	return reply;
}

static int setup(void **state)
{
	(void)state;
	smtp_reply_parser_init(&parser);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	smtp_reply_parser_deinit(&parser);
	return 0;
}

static void test_gmail(void **state)
{
	(void)state;
	struct smtp_caps caps;
	const char *error = NULL;
	/* smtp.gmail.com:587 before and after STARTTLS */
	assert_int_equal(
	    smtp_caps_parse(parse("250-smtp.gmail.com at your service, [203.0.113.5]\r\n"
	                          "250-SIZE 35882577\r\n250-8BITMIME\r\n250-STARTTLS\r\n"
	                          "250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n"
	                          "250-CHUNKING\r\n250 SMTPUTF8\r\n"),
	                    &caps, &error),
	    0);
	assert_true(caps.starttls && caps.pipelining && caps.eightbitmime && caps.smtputf8 &&
	            caps.enhancedstatuscodes && caps.chunking && caps.size);
	assert_int_equal(caps.size_max, 35882577);
	assert_int_equal(caps.auth_mechs, 0);
	assert_int_equal(
	    smtp_caps_parse(parse("250-smtp.gmail.com at your service, [203.0.113.5]\r\n"
	                          "250-SIZE 35882577\r\n250-8BITMIME\r\n"
	                          "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER "
	                          "XOAUTH\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n"
	                          "250-CHUNKING\r\n250 SMTPUTF8\r\n"),
	                    &caps, &error),
	    0);
	assert_false(caps.starttls);
	assert_int_equal(caps.auth_mechs, SASL_MECH_LOGIN | SASL_MECH_PLAIN | SASL_MECH_XOAUTH2 |
	                                      SASL_MECH_OAUTHBEARER);
}

static void test_outlook_old_auth(void **state)
{
	(void)state;
	struct smtp_caps caps;
	const char *error = NULL;
	/* smtp.office365.com after STARTTLS; plus a server with only the old form */
	assert_int_equal(
	    smtp_caps_parse(parse("250-LO2P265CA0001.outlook.office365.com Hello [203.0.113.5]\r\n"
	                          "250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n"
	                          "250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN XOAUTH2\r\n"
	                          "250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n"
	                          "250 SMTPUTF8\r\n"),
	                    &caps, &error),
	    0);
	assert_int_equal(caps.auth_mechs, SASL_MECH_LOGIN | SASL_MECH_XOAUTH2);
	assert_int_equal(caps.size_max, 157286400);
	assert_int_equal(smtp_caps_parse(parse("250-mail.example.org\r\n250-auth=login  Plain\r\n"
	                                       "250-size\r\n250 starttls\r\n"),
	                                 &caps, &error),
	                 0);
	assert_int_equal(caps.auth_mechs, SASL_MECH_LOGIN | SASL_MECH_PLAIN);
	assert_true(caps.size);
	assert_int_equal(caps.size_max, 0);
	assert_true(caps.starttls);
	/* Postfix sends both forms; they add up */
	assert_int_equal(smtp_caps_parse(parse("250-mx.example.net\r\n250-AUTH PLAIN\r\n"
	                                       "250-AUTH=LOGIN CRAM-MD5\r\n250 SIZE 0\r\n"),
	                                 &caps, &error),
	                 0);
	assert_int_equal(caps.auth_mechs, SASL_MECH_PLAIN | SASL_MECH_LOGIN | SASL_MECH_CRAM_MD5);
	assert_true(caps.size);
	assert_int_equal(caps.size_max, 0);
}

static void test_odd(void **state)
{
	(void)state;
	struct smtp_caps caps;
	const char *error = NULL;
	assert_int_equal(smtp_caps_parse(parse("250 only a greeting\r\n"), &caps, &error), 0);
	assert_false(caps.pipelining || caps.size || caps.starttls);
	assert_int_equal(smtp_caps_parse(parse("250-x\r\n250-STARTTLSX\r\n250-PIPELINING-ish\r\n"
	                                       "250-SIZE 99999999999999999999999\r\n"
	                                       "250-AUTHX PLAIN\r\n250 \r\n"),
	                                 &caps, &error),
	                 0);
	assert_false(caps.starttls || caps.pipelining);
	assert_int_equal(caps.auth_mechs, 0);
	assert_int_equal(caps.size_max, UINT64_MAX);
	assert_int_equal(smtp_caps_parse(parse("250-x\r\n250 SIZE 12k\r\n"), &caps, &error), 0);
	assert_int_equal(caps.size_max, 0);
	assert_int_equal(smtp_caps_parse(parse("502 5.5.1 EHLO not supported\r\n"), &caps, &error),
	                 -1);
	assert_non_null(error);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gmail),
	    cmocka_unit_test(test_outlook_old_auth),
	    cmocka_unit_test(test_odd),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
