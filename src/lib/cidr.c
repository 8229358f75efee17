#include "lib/cidr.h"
#include "lib/limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool prefix_match(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - bits));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

static void clear_host_bits(unsigned char *addr, size_t size, unsigned prefix)
{
	for (size_t i = 0; i < size; i++) {
		unsigned keep = prefix >= (i + 1) * 8 ? 8
		                : prefix > i * 8      ? prefix - (unsigned)i * 8
		                                      : 0;
		addr[i] &= (unsigned char)(0xff << (8 - keep));
	}
}

int mt_cidr_parse(const char *text, size_t len, struct mt_cidr *cidr_r)
{
	char buf[MT_CIDR_ENTRY_MAX + 1];
	if (len == 0 || len > MT_CIDR_ENTRY_MAX)
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL && strlen(buf) != len)
		return -1;

	char *slash = strchr(buf, '/');
	long prefix = -1;
	if (slash != NULL) {
		*slash = '\0';
		const char *p = slash + 1;
		/* digits only: strtol would take "+8", " 8" or "0x8" */
		if (*p == '\0' || strlen(p) > 3)
			return -1;
		prefix = 0;
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			prefix = prefix * 10 + (*p - '0');
		}
	}

	struct mt_cidr cidr;
	memset(&cidr, 0, sizeof(cidr));
	if (inet_pton(AF_INET, buf, cidr.addr) == 1) {
		if (prefix > 32)
			return -1;
		cidr.family = AF_INET;
		cidr.prefix = prefix < 0 ? 32 : (unsigned)prefix;
	} else if (inet_pton(AF_INET6, buf, cidr.addr) == 1) {
		if (prefix > 128)
			return -1;
		cidr.family = AF_INET6;
		cidr.prefix = prefix < 0 ? 128 : (unsigned)prefix;
		/* keep a mapped entry as IPv4 so one comparison covers both spellings */
		if (cidr.prefix >= 96 && memcmp(cidr.addr, v4_mapped_prefix, 12) == 0) {
			memmove(cidr.addr, cidr.addr + 12, 4);
			memset(cidr.addr + 4, 0, 12);
			cidr.family = AF_INET;
			cidr.prefix -= 96;
		}
	} else {
		return -1;
	}
	clear_host_bits(cidr.addr, sizeof(cidr.addr), cidr.prefix);
	*cidr_r = cidr;
	return 0;
}

static _Thread_local char cidr_error[MT_CIDR_ENTRY_MAX + 64];

int mt_cidr_list_parse(const char *text, struct mt_cidr_list *list_r, const char **error_r)
{
	static const char separators[] = ", \t";
	list_r->items = NULL;
	list_r->count = 0;
	struct mt_cidr *items = NULL;
	size_t count = 0;
	const char *p = text;
	for (;;) {
		p += strspn(p, separators);
		if (*p == '\0')
			break;
		size_t len = strcspn(p, separators);
		if (count == MT_CIDR_LIST_MAX) {
			snprintf(cidr_error, sizeof(cidr_error), "more than %d entries",
			         MT_CIDR_LIST_MAX);
			goto fail;
		}
		struct mt_cidr cidr;
		if (mt_cidr_parse(p, len, &cidr) < 0) {
			/* quoted back printable only: the text may come from anywhere */
			char shown[MT_CIDR_ENTRY_MAX + 1];
			size_t n = len > MT_CIDR_ENTRY_MAX ? MT_CIDR_ENTRY_MAX : len;
			for (size_t i = 0; i < n; i++)
				shown[i] = p[i] > 0x20 && p[i] < 0x7f ? p[i] : '?';
			shown[n] = '\0';
			snprintf(cidr_error, sizeof(cidr_error), "not an address or CIDR: \"%s%s\"",
			         shown, len > MT_CIDR_ENTRY_MAX ? "..." : "");
			goto fail;
		}
		if (items == NULL) {
			items = calloc(MT_CIDR_LIST_MAX, sizeof(*items));
			if (items == NULL) {
				snprintf(cidr_error, sizeof(cidr_error), "out of memory");
				goto fail;
			}
		}
		items[count++] = cidr;
		p += len;
	}
	if (count > 0) {
		struct mt_cidr *shrunk = realloc(items, count * sizeof(*items));
		list_r->items = shrunk != NULL ? shrunk : items;
	}
	list_r->count = count;
	return 0;
fail:
	free(items);
	*error_r = cidr_error;
	return -1;
}

void mt_cidr_list_free(struct mt_cidr_list *list)
{
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* The address as (family, 16 bytes), with IPv4-mapped IPv6 turned into IPv4. */
static int addr_bytes(const struct sockaddr *addr, unsigned char out[16])
{
	memset(out, 0, 16);
	if (addr == NULL)
		return -1;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
		memcpy(out, &sin->sin_addr, 4);
		return AF_INET;
	}
	if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
		memcpy(out, &sin6->sin6_addr, 16);
		if (memcmp(out, v4_mapped_prefix, 12) == 0) {
			memmove(out, out + 12, 4);
			memset(out + 4, 0, 12);
			return AF_INET;
		}
		return AF_INET6;
	}
	return -1;
}

bool mt_cidr_list_contains(const struct mt_cidr_list *list, const struct sockaddr *addr)
{
	unsigned char bytes[16];
	int family = addr_bytes(addr, bytes);
	if (family < 0 || list == NULL)
		return false;
	for (size_t i = 0; i < list->count; i++) {
		const struct mt_cidr *cidr = &list->items[i];
		if (cidr->family == family && prefix_match(cidr->addr, bytes, cidr->prefix))
			return true;
	}
	return false;
}

struct range {
	unsigned char addr[16];
	unsigned prefix;
};

/* IANA IPv4 Special-Purpose Address Registry entries that are not globally reachable, plus
 * multicast and the reserved 240/4 (which holds the limited broadcast address). */
static const struct range private_v4[] = {
    {{0, 0, 0, 0}, 8},       /* "this network" (0.0.0.0 reaches the local host on Linux) */
    {{10, 0, 0, 0}, 8},      /* RFC 1918 */
    {{100, 64, 0, 0}, 10},   /* CGNAT, RFC 6598 */
    {{127, 0, 0, 0}, 8},     /* loopback */
    {{169, 254, 0, 0}, 16},  /* link-local (cloud metadata lives here) */
    {{172, 16, 0, 0}, 12},   /* RFC 1918 */
    {{192, 0, 0, 0}, 24},    /* IETF protocol assignments */
    {{192, 0, 2, 0}, 24},    /* TEST-NET-1 */
    {{192, 88, 99, 0}, 24},  /* deprecated 6to4 relay anycast */
    {{192, 168, 0, 0}, 16},  /* RFC 1918 */
    {{198, 18, 0, 0}, 15},   /* benchmarking */
    {{198, 51, 100, 0}, 24}, /* TEST-NET-2 */
    {{203, 0, 113, 0}, 24},  /* TEST-NET-3 */
    {{224, 0, 0, 0}, 4},     /* multicast */
    {{240, 0, 0, 0}, 4},     /* reserved, and 255.255.255.255 broadcast */
};

static const struct range private_v6[] = {
    {{0}, 128},                                              /* unspecified */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128}, /* loopback */
    {{0x01, 0x00}, 64},                                      /* discard-only 100::/64 */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48},              /* local-use NAT64 64:ff9b:1::/48 */
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48},              /* benchmarking 2001:2::/48 */
    {{0x20, 0x01, 0x00, 0x10}, 28},                          /* deprecated ORCHID */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},                          /* documentation */
    {{0x3f, 0xff}, 20},                                      /* documentation, RFC 9637 */
    {{0xfc}, 7},                                             /* unique-local */
    {{0xfe, 0x80}, 10},                                      /* link-local */
    {{0xfe, 0xc0}, 10},                                      /* deprecated site-local */
    {{0xff}, 8},                                             /* multicast */
};

static bool in_ranges(const unsigned char *bytes, const struct range *ranges, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (prefix_match(ranges[i].addr, bytes, ranges[i].prefix))
			return true;
	}
	return false;
}

static bool v4_is_private(const unsigned char *bytes)
{
	return in_ranges(bytes, private_v4, sizeof(private_v4) / sizeof(private_v4[0]));
}

bool mt_addr_is_private(const struct sockaddr *addr)
{
	unsigned char bytes[16];
	int family = addr_bytes(addr, bytes);
	if (family == AF_INET)
		return v4_is_private(bytes);
	if (family != AF_INET6)
		return true;
	if (in_ranges(bytes, private_v6, sizeof(private_v6) / sizeof(private_v6[0])))
		return true;
	/* Forms that carry an IPv4 address a gateway or the kernel may route to: IPv4-compatible
	 * ::a.b.c.d (deprecated), NAT64 64:ff9b::/96 and 6to4 2002::/16. */
	static const unsigned char zero12[12] = {0};
	static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	if (memcmp(bytes, zero12, 12) == 0 || memcmp(bytes, nat64, 12) == 0)
		return v4_is_private(bytes + 12);
	if (bytes[0] == 0x20 && bytes[1] == 0x02)
		return v4_is_private(bytes + 2);
	return false;
}
