/* Small string helpers the C library lacks. */
#ifndef MT_LIB_STR_H
#define MT_LIB_STR_H

#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copies with truncation, always NUL-terminates; returns strlen(src). */
size_t mt_strlcpy(char *dst, const char *src, size_t size);
bool mt_str_has_crlf(const char *s);
/* ASCII case-insensitive prefix test over `len` bytes of `s`. */
bool mt_str_istarts(const char *s, size_t len, const char *prefix);
/* Parses a decimal port 1..65535. */
int mt_parse_port(const char *s, uint16_t *port_r);
/* The value of a hex digit (either case), -1 for another character. */
int mt_hex_value(char c);
/* Bytes of the well-formed UTF-8 sequence at `s` (RFC 3629: no overlong forms, surrogates or
 * code points past U+10FFFF), 0 when there is none. NUL is a valid one-byte sequence. */
size_t mt_utf8_sequence(const char *s, size_t len);
bool mt_utf8_valid(const char *s, size_t len);
/* True if the bytes hold an octet above 0x7f (64 bytes a step: bodies and texts of megabytes go
 * through it). */
bool mt_mem_has_8bit(const char *data, size_t len);
/* Monotonic milliseconds, for timeouts and benchmarks. */
int64_t mt_now_ms(void);
/* Wall clock seconds since the epoch. */
int64_t mt_wall_s(void);
/* Wall clock milliseconds since the epoch. */
int64_t mt_wall_ms(void);
/* English month abbreviations ("Jan".."Dec"), as the mail and HTTP dates and IMAP's date-text
 * write them whatever the locale. */
extern const char mt_month_names[12][4];
/* "Sat, 06 Dec 2025 05:46:40 ZONE": RFC 5322's date-time in UTC with `zone` "+0000", RFC 9110's
 * IMF-fixdate with "GMT"; in English whatever the locale. False (out empty) for a time
 * gmtime_r() cannot convert or past the year 9999. */
bool mt_date_format(int64_t t, const char *zone, char out[MT_DATE_TEXT_MAX]);

#endif
