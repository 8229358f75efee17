#include "proto/imap_utf7.h"

#include "lib/str.h"

#include <stdint.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;
	return p != NULL ? (int)(p - b64) : -1;
}

struct out {
	char *buf;
	size_t size, len;
};

static int put(struct out *out, const char *bytes, size_t len)
{
	if (out->size == 0 || len > out->size - 1 - out->len)
		return -1;
	memcpy(out->buf + out->len, bytes, len);
	out->len += len;
	out->buf[out->len] = '\0';
	return 0;
}

static int is_direct(uint32_t cp)
{
	return cp >= 0x20 && cp <= 0x7e;
}

static uint32_t utf8_decode(const unsigned char *s, size_t n)
{
	if (n == 1)
		return s[0];
	uint32_t cp = s[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++)
		cp = cp << 6 | (s[i] & 0x3f);
	return cp;
}

static size_t utf8_encode(uint32_t cp, char *buf)
{
	if (cp < 0x80) {
		buf[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		buf[0] = (char)(0xc0 | cp >> 6);
		buf[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		buf[0] = (char)(0xe0 | cp >> 12);
		buf[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		buf[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	buf[0] = (char)(0xf0 | cp >> 18);
	buf[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	buf[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	buf[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int imap_utf7_encode(const char *utf8, char *out_buf, size_t out_size, const char **error_r)
{
	struct out out = {out_buf, out_size, 0};
	if (out_size > 0)
		out_buf[0] = '\0';
	size_t len = strlen(utf8);
	uint32_t bits = 0;
	unsigned nbits = 0;
	int shifted = 0;
	for (size_t i = 0; i <= len;) {
		uint32_t cp = 0;
		size_t n = 0;
		if (i < len) {
			n = mt_utf8_sequence(utf8 + i, len - i);
			if (n == 0) {
				*error_r = "mailbox name is not valid UTF-8";
				return -1;
			}
			cp = utf8_decode((const unsigned char *)utf8 + i, n);
		}
		if (shifted && (i == len || is_direct(cp))) {
			if (nbits > 0) {
				char c = b64[(bits << (6 - nbits)) & 0x3f];
				if (put(&out, &c, 1) < 0)
					goto full;
			}
			if (put(&out, "-", 1) < 0)
				goto full;
			shifted = 0;
			bits = nbits = 0;
		}
		if (i == len)
			break;
		i += n;
		if (is_direct(cp)) {
			if (put(&out, cp == '&' ? "&-" : (const char *)&utf8[i - 1],
			        cp == '&' ? 2 : 1) < 0)
				goto full;
			continue;
		}
		if (!shifted) {
			if (put(&out, "&", 1) < 0)
				goto full;
			shifted = 1;
		}
		uint16_t units[2];
		size_t nunits = 1;
		if (cp >= 0x10000) {
			units[0] = (uint16_t)(0xd800 + ((cp - 0x10000) >> 10));
			units[1] = (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff));
			nunits = 2;
		} else {
			units[0] = (uint16_t)cp;
		}
		for (size_t u = 0; u < nunits; u++) {
			bits = bits << 16 | units[u];
			nbits += 16;
			while (nbits >= 6) {
				char c = b64[(bits >> (nbits - 6)) & 0x3f];
				nbits -= 6;
				if (put(&out, &c, 1) < 0)
					goto full;
			}
			bits &= (1u << nbits) - 1;
		}
	}
	return 0;
full:
	*error_r = "mailbox name too long";
	return -1;
}

int imap_utf7_decode(const char *mutf7, char *out_buf, size_t out_size, const char **error_r)
{
	struct out out = {out_buf, out_size, 0};
	if (out_size > 0)
		out_buf[0] = '\0';
	const char *s = mutf7;
	int after_shift = 0; /* the previous run was shifted: "&...-&...-" is not canonical */
	while (*s != '\0') {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c > 0x7e) {
			*error_r = "modified UTF-7 name with a byte outside printable ASCII";
			return -1;
		}
		if (c != '&') {
			if (put(&out, s, 1) < 0)
				goto full;
			s++;
			after_shift = 0;
			continue;
		}
		s++;
		if (*s == '-') {
			if (put(&out, "&", 1) < 0)
				goto full;
			s++;
			after_shift = 0;
			continue;
		}
		if (after_shift) {
			*error_r = "modified UTF-7 name with two shifted runs in a row";
			return -1;
		}
		uint32_t bits = 0, high = 0;
		unsigned nbits = 0;
		for (; *s != '-'; s++) {
			int v = b64_value(*s);
			if (v < 0) {
				*error_r = *s == '\0' ? "modified UTF-7 shift without \"-\""
				                      : "invalid character in modified BASE64";
				return -1;
			}
			bits = bits << 6 | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			uint32_t unit = bits >> (nbits - 16) & 0xffff;
			nbits -= 16;
			bits &= (1u << nbits) - 1;
			uint32_t cp;
			if (high != 0) {
				if (unit < 0xdc00 || unit > 0xdfff) {
					*error_r = "modified UTF-7 with an unpaired surrogate";
					return -1;
				}
				cp = 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
				high = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff) {
				high = unit;
				continue;
			} else if (unit >= 0xdc00 && unit <= 0xdfff) {
				*error_r = "modified UTF-7 with an unpaired surrogate";
				return -1;
			} else {
				cp = unit;
			}
			if (is_direct(cp) || cp == 0) {
				*error_r = "modified UTF-7 encodes a character that must be direct";
				return -1;
			}
			char utf8[4];
			if (put(&out, utf8, utf8_encode(cp, utf8)) < 0)
				goto full;
			after_shift = 1;
		}
		s++;
		if (!after_shift || high != 0 || nbits >= 6 || bits != 0) {
			*error_r = !after_shift ? "empty or partial modified UTF-7 shift"
			           : high != 0  ? "modified UTF-7 with an unpaired surrogate"
			                        : "modified UTF-7 with leftover bits";
			return -1;
		}
	}
	return 0;
full:
	*error_r = "mailbox name too long";
	return -1;
}
