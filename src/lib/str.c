#include "lib/str.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

size_t mt_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

bool mt_str_has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

bool mt_str_istarts(const char *s, size_t len, const char *prefix)
{
	size_t plen = strlen(prefix);
	return len >= plen && strncasecmp(s, prefix, plen) == 0;
}

int mt_parse_port(const char *s, uint16_t *port_r)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

int64_t mt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mt_wall_s(void)
{
	return (int64_t)time(NULL);
}

int64_t mt_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t mt_utf8_sequence(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	if (len == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	size_t n;
	uint32_t min, c;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, min = 0x80, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, min = 0x800, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, min = 0x10000, c = p[0] & 0x07;
	else
		return 0;
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	/* overlong forms, UTF-16 surrogates and code points past Unicode are not UTF-8 */
	if (c < min || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	return n;
}

bool mt_utf8_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = mt_utf8_sequence(s + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

bool mt_mem_has_8bit(const char *data, size_t len)
{
	const unsigned char *p = (const unsigned char *)data;
	while (len >= 64) {
		uint64_t any = 0;
		for (size_t i = 0; i < 64; i += 8) {
			uint64_t word;
			memcpy(&word, p + i, sizeof(word));
			any |= word;
		}
		if (any & UINT64_C(0x8080808080808080))
			return true;
		p += 64;
		len -= 64;
	}
	for (size_t i = 0; i < len; i++) {
		if (p[i] & 0x80)
			return true;
	}
	return false;
}

int mt_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

const char mt_month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool mt_date_format(int64_t t, const char *zone, char out[MT_DATE_TEXT_MAX])
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	out[0] = '\0';
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		return false;
	int n = snprintf(out, MT_DATE_TEXT_MAX, "%s, %02d %s %04d %02d:%02d:%02d %s",
	                 days[tm.tm_wday], tm.tm_mday, mt_month_names[tm.tm_mon], tm.tm_year + 1900,
	                 tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
	if (n < 0 || n >= MT_DATE_TEXT_MAX) {
		out[0] = '\0';
		return false;
	}
	return true;
}
