/* Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3), both directions, strict.
 *
 *   In modified UTF-7, printable US-ASCII characters, except for "&", represent themselves;
 *   that is, characters with octet values 0x20-0x25 and 0x27-0x7e. The character "&" (0x26)
 *   is represented by the two-octet sequence "&-". All other characters are represented in
 *   modified BASE64 (UTF-16, RFC 2152 BASE64 with "," instead of "/"), shifted in by "&" and
 *   out by "-". Modified BASE64 MUST NOT be used to represent any printing US-ASCII character
 *   which can represent itself; null shifts ("-&" while in BASE64) are not permitted.
 *
 * Decoding refuses everything that is not the one canonical form: 8-bit or control bytes, an
 * unterminated or empty shift, characters outside the modified BASE64 alphabet, leftover or
 * non-zero padding bits, a partial UTF-16 unit, unpaired surrogates, an encoded printable
 * ASCII character, U+0000, and two shifted runs in a row. Functions return 0, or -1 with
 * *error_r set (static text); the output is always NUL-terminated when out_size > 0. No
 * allocation: the caller owns both buffers. */
#ifndef MT_PROTO_IMAP_UTF7_H
#define MT_PROTO_IMAP_UTF7_H

#include <stddef.h>

/* UTF-8 (well-formed, RFC 3629, no NUL) to modified UTF-7; -1 on bad input or when `out` is
 * too small. */
int imap_utf7_encode(const char *utf8, char *out, size_t out_size, const char **error_r);
/* Modified UTF-7 to UTF-8; -1 on a non-canonical or invalid name or when `out` is too small. */
int imap_utf7_decode(const char *mutf7, char *out, size_t out_size, const char **error_r);

#endif
