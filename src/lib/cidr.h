/* CIDR lists and the "private address" test that keeps user-supplied hosts off the server's own
 * network (DESIGN §1, Safety of user-supplied hosts). Pure: no I/O, no DNS.
 * Ownership: a parsed list owns `items`; mt_cidr_list_free() releases it. */
#ifndef MT_LIB_CIDR_H
#define MT_LIB_CIDR_H

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;

struct mt_cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct mt_cidr_list {
	struct mt_cidr *items;
	size_t count;
};

/* "127.0.0.0/8, ::1/128, 10.1.2.3" (comma/space separated; a bare address is /32 or /128).
 * 0, or -1 with *error_r naming the bad entry (valid until the next call from this thread).
 * Host bits beyond the prefix are ignored. At most MT_CIDR_LIST_MAX entries. */
int mt_cidr_list_parse(const char *text, struct mt_cidr_list *list_r, const char **error_r);
void mt_cidr_list_free(struct mt_cidr_list *list);
/* IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match IPv4 entries. */
bool mt_cidr_list_contains(const struct mt_cidr_list *list, const struct sockaddr *addr);
/* Parses one entry ("10.0.0.0/8", "::1"); 0 or -1. */
int mt_cidr_parse(const char *text, size_t len, struct mt_cidr *cidr_r);
/* Loopback, unspecified, RFC 1918 private, CGNAT 100.64/10, link-local, unique-local, multicast,
 * broadcast, documentation/reserved ranges, and IPv4-mapped/compatible forms of those: the
 * server's own network a user-supplied host must not reach. Unknown families count as private. */
bool mt_addr_is_private(const struct sockaddr *addr);

#endif
