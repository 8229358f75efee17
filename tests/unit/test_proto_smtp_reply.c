#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/smtp_reply.h"

#include <stdio.h>
#include <string.h>

/* A reply flattened for comparison: "code|enhanced|line0|line1|..." */
static void flatten(const struct smtp_reply *reply, char *out, size_t size)
{
	int n = snprintf(out, size, "%d|%s", reply->code, reply->enhanced);
	for (unsigned i = 0; i < reply->line_count && n >= 0 && (size_t)n < size; i++)
		n += snprintf(out + n, size - (size_t)n, "|%s", reply->lines[i]);
}

/* Feeds `input` in the given pieces; expects exactly one reply that uses all of the input. */
static void feed_pieces(const char *input, const size_t *cuts, size_t ncuts, char *flat,
                        size_t flat_size)
{
	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	size_t len = strlen(input), start = 0;
	int got = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t consumed = 0;
		const struct smtp_reply *reply = NULL;
		const char *error = NULL;
		int ret = smtp_reply_parser_feed(&parser, input + start, end - start, &consumed,
		                                 &reply, &error);
		assert_int_not_equal(ret, -1);
		if (ret == 1) {
			assert_int_equal(got, 0);
			assert_int_equal(start + consumed, len);
			assert_int_equal(end, len);
			assert_false(smtp_reply_parser_busy(&parser));
			flatten(reply, flat, flat_size);
			got = 1;
		} else {
			assert_int_equal(consumed, end - start);
			if (end > start)
				assert_true(smtp_reply_parser_busy(&parser));
		}
		start = end;
	}
	assert_int_equal(got, 1);
	smtp_reply_parser_deinit(&parser);
}

static const char *const replies[] = {
    "220 smtp.gmail.com ESMTP a1sm123 - gsmtp\r\n",
    ("250-smtp.gmail.com at your service, [203.0.113.5]\r\n250-SIZE 35882577\r\n"
     "250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n"
     "250-CHUNKING\r\n250 SMTPUTF8\r\n"),
    ("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
     "550-5.4.5 sending limits go to\r\n"
     "550 5.4.5  https://support.google.com/a/answer/166852 a1sm123 - gsmtp\r\n"),
    "250\r\n",
    "250-first\n250-\n250 last\n",
    "354 Start mail input; end with <CRLF>.<CRLF>\r\n",
    ("535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
     "535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1 - gsmtp\r\n"),
};

static void test_split_everywhere(void **state)
{
	(void)state;
	for (size_t r = 0; r < sizeof(replies) / sizeof(replies[0]); r++) {
		const char *input = replies[r];
		size_t len = strlen(input);
		char whole[8192], split[8192];
		feed_pieces(input, NULL, 0, whole, sizeof(whole));
		for (size_t i = 0; i <= len; i++) {
			size_t cut = i;
			feed_pieces(input, &cut, 1, split, sizeof(split));
			assert_string_equal(whole, split);
		}
		size_t cuts[1024];
		assert_true(len < 1024);
		for (size_t i = 0; i < len; i++)
			cuts[i] = i + 1;
		feed_pieces(input, cuts, len - 1, split, sizeof(split));
		assert_string_equal(whole, split);
	}
}

static void test_values(void **state)
{
	(void)state;
	char flat[8192];
	feed_pieces(replies[2], NULL, 0, flat, sizeof(flat));
	assert_string_equal(flat, "550|5.4.5|5.4.5 Daily user sending limit exceeded. For more "
	                          "information on Gmail|5.4.5 sending limits go to|5.4.5  "
	                          "https://support.google.com/a/answer/166852 a1sm123 - gsmtp");
	feed_pieces(replies[3], NULL, 0, flat, sizeof(flat));
	assert_string_equal(flat, "250||");
	feed_pieces(replies[4], NULL, 0, flat, sizeof(flat));
	assert_string_equal(flat, "250||first||last");
	feed_pieces(replies[5], NULL, 0, flat, sizeof(flat));
	assert_string_equal(flat, "354||Start mail input; end with <CRLF>.<CRLF>");
}

static void test_two_replies_one_chunk(void **state)
{
	(void)state;
	const char *input = "250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250 2.1.5 fine\r\n354 go";
	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	size_t len = strlen(input), consumed = 0;
	const struct smtp_reply *reply = NULL;
	const char *error = NULL;
	assert_int_equal(smtp_reply_parser_feed(&parser, input, len, &consumed, &reply, &error), 1);
	assert_int_equal(consumed, 14);
	assert_int_equal(reply->code, 250);
	assert_string_equal(reply->enhanced, "2.1.0");
	assert_string_equal(reply->lines[0], "2.1.0 Ok");
	/* leftover bytes are visible to the caller, the parser holds nothing */
	assert_false(smtp_reply_parser_busy(&parser));
	size_t pos = consumed;
	assert_int_equal(
	    smtp_reply_parser_feed(&parser, input + pos, len - pos, &consumed, &reply, &error), 1);
	assert_int_equal(reply->line_count, 2);
	assert_string_equal(reply->lines[1], "2.1.5 fine");
	pos += consumed;
	assert_int_equal(
	    smtp_reply_parser_feed(&parser, input + pos, len - pos, &consumed, &reply, &error), 0);
	assert_int_equal(consumed, len - pos);
	assert_true(smtp_reply_parser_busy(&parser));
	smtp_reply_parser_deinit(&parser);
}

static int feed_all(const char *input, size_t len, const char **error_r)
{
	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	size_t consumed = 0;
	const struct smtp_reply *reply = NULL;
	int ret = smtp_reply_parser_feed(&parser, input, len, &consumed, &reply, error_r);
	smtp_reply_parser_deinit(&parser);
	return ret;
}

static void test_errors(void **state)
{
	(void)state;
	const char *error = NULL;
	char line[MT_SMTP_REPLY_LINE_MAX + 16];
	/* exactly at the cap, CRLF included: accepted */
	memset(line, 'x', sizeof(line));
	memcpy(line, "250 ", 4);
	memcpy(line + MT_SMTP_REPLY_LINE_MAX - 2, "\r\n", 2);
	assert_int_equal(feed_all(line, MT_SMTP_REPLY_LINE_MAX, &error), 1);
	/* one more byte: refused, even before its end arrives */
	memset(line, 'x', sizeof(line));
	memcpy(line, "250 ", 4);
	assert_int_equal(feed_all(line, MT_SMTP_REPLY_LINE_MAX + 1, &error), -1);
	assert_non_null(strstr(error, "longer than"));

	assert_int_equal(feed_all("250-a\r\n251 b\r\n", 14, &error), -1);
	assert_non_null(strstr(error, "code"));
	assert_int_equal(feed_all("25x ok\r\n", 8, &error), -1);
	assert_int_equal(feed_all("hello\r\n", 7, &error), -1);
	assert_int_equal(feed_all("\r\n", 2, &error), -1);
	assert_int_equal(feed_all("250_ok\r\n", 8, &error), -1);
	assert_int_equal(feed_all("650 ok\r\n", 8, &error), -1);
	assert_int_equal(feed_all("250 a\0b\r\n", 9, &error), -1);

	/* MT_SMTP_REPLY_LINES_MAX lines pass, one more does not */
	char many[(MT_SMTP_REPLY_LINES_MAX + 1) * 8];
	size_t len = 0;
	for (int i = 0; i < MT_SMTP_REPLY_LINES_MAX - 1; i++) {
		memcpy(many + len, "250-x\r\n", 7);
		len += 7;
	}
	memcpy(many + len, "250 x\r\n", 7);
	assert_int_equal(feed_all(many, len + 7, &error), 1);
	memcpy(many + len, "250-x\r\n250 x\r\n", 14);
	assert_int_equal(feed_all(many, len + 14, &error), -1);
	assert_non_null(strstr(error, "too many lines"));
}

static const char *enhanced_of(const char *input)
{
	static char enhanced[16];
	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	size_t consumed = 0;
	const struct smtp_reply *reply = NULL;
	const char *error = NULL;
	assert_int_equal(
	    smtp_reply_parser_feed(&parser, input, strlen(input), &consumed, &reply, &error), 1);
	strcpy(enhanced, reply->enhanced);
	smtp_reply_parser_deinit(&parser);
	return enhanced;
}

static void test_enhanced(void **state)
{
	(void)state;
	assert_string_equal(enhanced_of("550 5.4.5 Daily\r\n"), "5.4.5");
	assert_string_equal(enhanced_of("451 4.7.500 Server busy\r\n"), "4.7.500");
	assert_string_equal(enhanced_of("250 2.0.0\r\n"), "2.0.0");
	assert_string_equal(enhanced_of("550 999.1.1 x\r\n"), "");
	assert_string_equal(enhanced_of("550 3.1.1 x\r\n"), "");
	assert_string_equal(enhanced_of("550 5.1234.1 x\r\n"), "");
	assert_string_equal(enhanced_of("550 5.1.1x\r\n"), "");
	assert_string_equal(enhanced_of("550 5.1. x\r\n"), "");
	assert_string_equal(enhanced_of("550 Requested action not taken\r\n"), "");
	/* taken from the first line only */
	assert_string_equal(enhanced_of("550-No code here\r\n550 5.1.1 x\r\n"), "");
}

static void test_format(void **state)
{
	(void)state;
	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	size_t consumed = 0;
	const struct smtp_reply *reply = NULL;
	const char *error = NULL;
	assert_int_equal(smtp_reply_parser_feed(&parser, replies[2], strlen(replies[2]), &consumed,
	                                        &reply, &error),
	                 1);
	char out[MT_SMTP_REPLY_TEXT_MAX + 1];
	smtp_reply_format(reply, out, sizeof(out));
	assert_string_equal(out,
	                    "550 5.4.5 Daily user sending limit exceeded. For more information "
	                    "on Gmail sending limits go to "
	                    "https://support.google.com/a/answer/166852 a1sm123 - gsmtp");
	char small[12];
	smtp_reply_format(reply, small, sizeof(small));
	assert_string_equal(small, "550 5.4.5 D");

	const char *odd = "250-\r\n250 a\tb\x01\r\n";
	assert_int_equal(
	    smtp_reply_parser_feed(&parser, odd, strlen(odd), &consumed, &reply, &error), 1);
	smtp_reply_format(reply, out, sizeof(out));
	assert_string_equal(out, "250 a b?");

	assert_int_equal(smtp_reply_parser_feed(&parser, "250\n", 4, &consumed, &reply, &error), 1);
	smtp_reply_format(reply, out, sizeof(out));
	assert_string_equal(out, "250");
	smtp_reply_parser_deinit(&parser);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_everywhere),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_two_replies_one_chunk),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_enhanced),
	    cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
