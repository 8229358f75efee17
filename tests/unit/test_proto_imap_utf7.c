#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/imap_utf7.h"

#include <string.h>

static const struct {
	const char *utf8, *mutf7;
} pairs[] = {
    {"INBOX", "INBOX"},
    {"", ""},
    {"Entw\xc3\xbc"
     "rfe",
     "Entw&APw-rfe"},
    {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
    {"\xf0\x9f\x98\x80", "&2D3eAA-"}, /* U+1F600, a surrogate pair */
    {"a\xf0\x9f\x98\x80"
     "b\xe2\x82\xac",
     "a&2D3eAA-b&IKw-"},
    {"\xc3\x89l\xc3\xa9ments envoy\xc3\xa9s", "&AMk-l&AOk-ments envoy&AOk-s"},
    {"&&", "&-&-"},
    {"Tom & Jerry", "Tom &- Jerry"},
    {"\xd0\x9a\xd0\xbe\xd1\x80\xd0\xb7\xd0\xb8\xd0\xbd\xd0\xb0", "&BBoEPgRABDcEOAQ9BDA-"},
    {"\x01", "&AAE-"},
    {"[Gmail]/Corbeille \xc3\xa0 jeter", "[Gmail]/Corbeille &AOA- jeter"},
};

static void test_round_trips(void **state)
{
	(void)state;
	char out[256];
	const char *error = NULL;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		assert_int_equal(imap_utf7_encode(pairs[i].utf8, out, sizeof(out), &error), 0);
		assert_string_equal(out, pairs[i].mutf7);
		assert_int_equal(imap_utf7_decode(pairs[i].mutf7, out, sizeof(out), &error), 0);
		assert_string_equal(out, pairs[i].utf8);
	}
}

static void test_invalid(void **state)
{
	(void)state;
	char out[256];
	const char *error = NULL;
	static const char *const bad[] = {
	    "&",            /* unterminated */
	    "&Jjo",         /* unterminated */
	    "&Jjo!-",       /* outside the alphabet */
	    "&Jj/-",        /* "/" is "," in modified BASE64 */
	    "&AGE-",        /* "a" must be direct */
	    "&ACY-",        /* "&" must be "&-" */
	    "&AAA-",        /* U+0000 */
	    "&2D0-",        /* high surrogate alone */
	    "&2D3-",        /* high surrogate, partial unit */
	    "&3gA-",        /* low surrogate alone */
	    "&2D3YPQ-",     /* high surrogate twice */
	    "&AOk-&AOk-",   /* two shifted runs in a row */
	    "&AOkA-",       /* leftover bits (a partial unit) */
	    "&AOl-",        /* non-zero padding bits */
	    "&AOkAOk-",     /* six leftover bits: an extra character */
	    "Entw\xc3\xbc", /* 8-bit */
	    "a\tb",         /* control character */
	    "a\x7f",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		if (imap_utf7_decode(bad[i], out, sizeof(out), &error) != -1)
			fail_msg("accepted \"%s\" as \"%s\"", bad[i], out);
		assert_non_null(error);
	}
	/* encoding refuses what is not UTF-8 */
	static const char *const bad_utf8[] = {"\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf",
	                                       "\xf4\x90\x80\x80"};
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
		assert_int_equal(imap_utf7_encode(bad_utf8[i], out, sizeof(out), &error), -1);
}

static void test_output_size(void **state)
{
	(void)state;
	char out[16];
	const char *error = NULL;
	/* "&2D3eAA-" needs 8 bytes and its NUL */
	assert_int_equal(imap_utf7_encode("\xf0\x9f\x98\x80", out, 9, &error), 0);
	assert_int_equal(imap_utf7_encode("\xf0\x9f\x98\x80", out, 8, &error), -1);
	assert_non_null(strstr(error, "too long"));
	assert_int_equal(imap_utf7_decode("&2D3eAA-", out, 5, &error), 0);
	assert_int_equal(imap_utf7_decode("&2D3eAA-", out, 4, &error), -1);
	assert_int_equal(imap_utf7_decode("abc", out, 0, &error), -1);
	assert_int_equal(imap_utf7_decode("", out, 1, &error), 0);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trips),
	    cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_output_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
