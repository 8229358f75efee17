#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* A sockaddr for a literal address; static storage, one at a time. */
static const struct sockaddr *sa(const char *text)
{
	static struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		fail_msg("bad literal %s", text);
	return (const struct sockaddr *)&ss;
}

static void test_parse(void **state)
{
	(void)state;
	struct mt_cidr_list list;
	const char *error = NULL;
	assert_int_equal(mt_cidr_list_parse("127.0.0.0/8, ::1/128, 10.1.2.3", &list, &error), 0);
	assert_int_equal(list.count, 3);
	assert_int_equal(list.items[0].family, AF_INET);
	assert_int_equal(list.items[0].prefix, 8);
	assert_int_equal(list.items[1].family, AF_INET6);
	assert_int_equal(list.items[1].prefix, 128);
	assert_int_equal(list.items[2].prefix, 32);
	assert_true(mt_cidr_list_contains(&list, sa("127.9.9.9")));
	assert_true(mt_cidr_list_contains(&list, sa("::1")));
	assert_true(mt_cidr_list_contains(&list, sa("10.1.2.3")));
	assert_false(mt_cidr_list_contains(&list, sa("10.1.2.4")));
	assert_false(mt_cidr_list_contains(&list, sa("128.0.0.1")));
	/* IPv4-mapped IPv6 matches IPv4 entries */
	assert_true(mt_cidr_list_contains(&list, sa("::ffff:127.0.0.1")));
	assert_false(mt_cidr_list_contains(&list, sa("::2")));
	mt_cidr_list_free(&list);
	assert_null(list.items);

	assert_int_equal(mt_cidr_list_parse("", &list, &error), 0);
	assert_int_equal(list.count, 0);
	assert_false(mt_cidr_list_contains(&list, sa("127.0.0.1")));
	assert_int_equal(mt_cidr_list_parse(" , \t", &list, &error), 0);
	assert_int_equal(list.count, 0);

	/* host bits are ignored; a mapped entry matches plain IPv4 */
	assert_int_equal(
	    mt_cidr_list_parse("192.168.1.77/24 ::ffff:172.16.0.0/108 fe80::1/10", &list, &error),
	    0);
	assert_true(mt_cidr_list_contains(&list, sa("192.168.1.1")));
	assert_true(mt_cidr_list_contains(&list, sa("172.16.9.1")));
	assert_false(mt_cidr_list_contains(&list, sa("172.32.0.1")));
	assert_true(mt_cidr_list_contains(&list, sa("fe80::abcd")));
	assert_true(mt_cidr_list_contains(&list, sa("febf::1")));
	assert_false(mt_cidr_list_contains(&list, sa("fec0::1")));
	mt_cidr_list_free(&list);

	assert_int_equal(mt_cidr_list_parse("0.0.0.0/0", &list, &error), 0);
	assert_true(mt_cidr_list_contains(&list, sa("8.8.8.8")));
	assert_false(mt_cidr_list_contains(&list, sa("2001:4860::8888")));
	mt_cidr_list_free(&list);

	const char *bad[] = {"10.0.0.0/33",  "::1/129",      "10.0.0/8",
	                     "example.com",  "10.0.0.0/",    "10.0.0.0/+8",
	                     "10.0.0.0/8/8", "fe80::1%eth0", "1.2.3.4/ 8"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		if (mt_cidr_list_parse(bad[i], &list, &error) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(error);
		assert_null(list.items);
	}
	assert_int_equal(mt_cidr_list_parse("10.0.0.0/8, nonsense/3", &list, &error), -1);
	assert_string_equal(error, "not an address or CIDR: \"nonsense/3\"");
}

static void test_private(void **state)
{
	(void)state;
	const char *private[] = {
	    "127.0.0.1",
	    "127.255.0.1",
	    "0.0.0.0",
	    "10.0.0.1",
	    "172.16.0.1",
	    "172.31.255.255",
	    "192.168.1.1",
	    "100.64.0.1",
	    "100.127.255.1",
	    "169.254.169.254",
	    "224.0.0.1",
	    "239.1.1.1",
	    "255.255.255.255",
	    "240.0.0.1",
	    "192.0.2.1",
	    "198.51.100.7",
	    "203.0.113.9",
	    "198.18.0.1",
	    "192.0.0.8",
	    "::",
	    "::1",
	    "fe80::1",
	    "fc00::1",
	    "fd12:3456::1",
	    "ff02::1",
	    "::ffff:127.0.0.1",
	    "::ffff:10.0.0.1",
	    "::127.0.0.1",
	    "64:ff9b::a00:1",
	    "2002:7f00:1::1",
	    "2001:db8::1",
	    "fec0::1",
	    "100::1",
	    "3fff::1",
	};
	for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
		if (!mt_addr_is_private(sa(private[i])))
			fail_msg("%s should be private", private[i]);
	}
	const char *public[] = {
	    "8.8.8.8",        "1.1.1.1",          "172.32.0.1",           "100.128.0.1",
	    "192.169.0.1",    "11.0.0.1",         "2001:4860:4860::8888", "2606:4700::1111",
	    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",      "169.253.0.1",
	};
	for (size_t i = 0; i < sizeof(public) / sizeof(public[0]); i++) {
		if (mt_addr_is_private(sa(public[i])))
			fail_msg("%s should be public", public[i]);
	}
	struct sockaddr other = {.sa_family = AF_UNIX};
	assert_true(mt_addr_is_private(&other));
	assert_true(mt_addr_is_private(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_private),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
