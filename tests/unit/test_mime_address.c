#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mime/address.h"

#include <string.h>

static void expect_address(const char *input, const char *expected)
{
	char out[MT_ADDRESS_MAX + 1];
	const char *error = NULL;
	int ret = mime_address_normalize(input, out, &error);
	if (ret != 0)
		fail_msg("\"%s\": %s", input, error);
	assert_string_equal(out, expected);
}

static void expect_reject(const char *input, const char *reason)
{
	char out[MT_ADDRESS_MAX + 1];
	const char *error = NULL;
	if (mime_address_normalize(input, out, &error) != -1)
		fail_msg("\"%s\" accepted as %s", input, out);
	if (strcmp(error, reason) != 0)
		fail_msg("\"%s\": \"%s\", expected \"%s\"", input, error, reason);
}

static void test_normalise(void **state)
{
	(void)state;
	expect_address("jack@example.com", "jack@example.com");
	expect_address("Jack Smith <Jack@Example.COM>", "jack@example.com");
	expect_address("  JACK@EXAMPLE.COM\t", "jack@example.com");
	expect_address("jack@bücher.de", "jack@xn--bcher-kva.de");
	expect_address(" jack@exämple.de ", "jack@xn--exmple-cua.de");
	expect_address("Jack@BÜCHER.DE", "jack@xn--bcher-kva.de");
	expect_address("jack@xn--bcher-kva.de", "jack@xn--bcher-kva.de");
	expect_address("\"Smith, Jack\" <j@x.com>", "j@x.com");
	expect_address("=?utf-8?q?J=C3=A4ck_Sm=C3=AFth?= <jack@x.com>", "jack@x.com");
	expect_address("=?utf-8?q?a=2C_b?= <jack@x.com>", "jack@x.com");
	expect_address("=?bogus?x?zz?= <jack@x.com>", "jack@x.com");
	expect_address("Jäck <JACK@x.com>", "jack@x.com");
	expect_address("<jack@x.com>", "jack@x.com");
	expect_address("jack@x.com <jack@x.com>", "jack@x.com");
	expect_address("jack+tag@x.com", "jack+tag@x.com"); /* no other rewriting */
	expect_address("j.a.c.k@gmail.com", "j.a.c.k@gmail.com");
	expect_address("jack@x.com.", "jack@x.com");
	expect_address("jack@x.com (work)", "jack@x.com");
	expect_address("jack@x.com,", "jack@x.com");
	expect_address("\xc2\xa0jack@x.com\xc2\xa0", "jack@x.com");
	expect_address("Jöhn@x.com", "jöhn@x.com");
}

static void test_reject(void **state)
{
	(void)state;
	expect_reject("", "not an email address");
	expect_reject("   ", "not an email address");
	expect_reject("john", "not an email address");
	expect_reject("Jack Smith", "not an email address");
	expect_reject("a@x.com;b@x.com", "more than one address");
	expect_reject("a@x.com, b@x.com", "more than one address");
	expect_reject("a@x.com b@x.com", "more than one address");
	expect_reject("x <a@x.com> <b@x.com>", "more than one address");
	expect_reject("<a@x.com> b@x.com", "more than one address");
	expect_reject("jack@x.com\r\nBcc: evil@x.com", "contains a line break");
	expect_reject("jack@x.com\n", "contains a line break");
	expect_reject("jack\r@x.com", "contains a line break");
	expect_reject("jack@localhost", "not an email address");
	expect_reject("jack@x", "not an email address");
	expect_reject("a@b@x.com", "not an email address");
	expect_reject("@x.com", "not an email address");
	expect_reject("jack@", "not an email address");
	expect_reject("jack@[1.2.3.4]", "not an email address");
	expect_reject("jack@1.2.3.4", "not an email address");
	expect_reject("jack@-x.com", "not an email address");
	expect_reject("jack@x_y.com", "not an email address");
	expect_reject("jack@x..com", "not an email address");
	expect_reject("\"a b\"@x.com", "not an email address");
	expect_reject("Jack <jack@x.com", "not an email address");
	expect_reject("Jack jack@x.com>", "not an email address");
	expect_reject("\"unterminated <jack@x.com>", "not an email address");
	expect_reject("jack@x.com\x01", "not an email address");
	expect_reject("g: a@x.com;", "not an email address");
	expect_reject("jack@\xff.com", "not an email address");
	char long_local[128];
	memset(long_local, 'a', 65);
	strcpy(long_local + 65, "@x.com");
	expect_reject(long_local, "not an email address");
	char long_input[MT_ADDRESS_INPUT_MAX + 16];
	memset(long_input, 'a', sizeof(long_input) - 1);
	long_input[sizeof(long_input) - 1] = '\0';
	expect_reject(long_input, "too long");
	char long_domain[400] = "a@";
	for (int i = 0; i < 5; i++)
		strcat(long_domain, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.");
	strcat(long_domain, "com");
	expect_reject(long_domain, "not an email address");
}

static void test_domains(void **state)
{
	(void)state;
	char out[MT_HOST_FIELD_MAX + 1];
	const char *error = NULL;
	assert_int_equal(mime_domain_normalize(" Example.COM ", out, &error), 0);
	assert_string_equal(out, "example.com");
	assert_int_equal(mime_domain_normalize("Bücher.de", out, &error), 0);
	assert_string_equal(out, "xn--bcher-kva.de");
	assert_int_equal(mime_domain_normalize("mail.example.co.uk.", out, &error), 0);
	assert_string_equal(out, "mail.example.co.uk");
	const char *bad[] = {"",        "localhost", "jack@example.com", "exa mple.com",
	                     "-x.com",  "x-.com",    "x..com",           ".x.com",
	                     "x.com\n", "1.2.3.4",   "x_y.com",          "\xff.com"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mime_domain_normalize(bad[i], out, &error) != -1)
			fail_msg("accepted domain \"%s\" as %s", bad[i], out);
	}
}

static void test_freemail(void **state)
{
	(void)state;
	const char *yes[] = {
	    "gmail.com",      "googlemail.com", "outlook.com",  "hotmail.com", "hotmail.co.uk",
	    "hotmail.fr",     "live.com",       "msn.com",      "yahoo.com",   "yahoo.co.jp",
	    "yahoo.com.br",   "yahoo.de",       "ymail.com",    "aol.com",     "icloud.com",
	    "me.com",         "mac.com",        "mail.com",     "gmx.com",     "gmx.de",
	    "gmx.net",        "web.de",         "yandex.com",   "yandex.ru",   "proton.me",
	    "protonmail.com", "zoho.com",       "fastmail.com", "hey.com",     "qq.com",
	    "163.com",        "mail.ru",        "GMAIL.COM",    "gmail.com.",  "eu.gmail.com"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!mime_domain_is_freemail(yes[i]))
			fail_msg("%s should be free-mail", yes[i]);
	}
	const char *no[] = {"example.com",
	                    "acme.co.uk",
	                    "notgmail.com",
	                    "gmail.co",
	                    "yahoo.example.com",
	                    "mail.acme.com",
	                    "hotmail.com.evil.io",
	                    "",
	                    "com"};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		if (mime_domain_is_freemail(no[i]))
			fail_msg("%s should not be free-mail", no[i]);
	}
}

int main(void)
{
	mime_init();
	mime_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalise),
	    cmocka_unit_test(test_reject),
	    cmocka_unit_test(test_domains),
	    cmocka_unit_test(test_freemail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
