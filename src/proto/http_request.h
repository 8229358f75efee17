/* HTTP/1.1 request parser (RFC 9112): the head (request line and header fields), the message
 * framing of §6.3, and the body, Content-Length or chunked.
 *
 *   HTTP-message      = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
 *   request-line      = method SP request-target SP HTTP-version
 *   method            = token
 *   request-target    = origin-form                    ; the only form taken here
 *   origin-form       = absolute-path [ "?" query ]    ; RFC 3986 pchar, "/", "?", pct-encoded
 *   HTTP-version      = %s"HTTP" "/" DIGIT "." DIGIT   ; 1.0 and 1.1; another DIGIT.DIGIT: 505
 *   field-line        = field-name ":" OWS field-value OWS
 *   field-name        = token
 *   field-value       = *( VCHAR / obs-text / SP / HTAB )  ; no other CTL
 *   token             = 1*tchar
 *   Content-Length    = 1*DIGIT                        ; one field with one value
 *   Transfer-Encoding = #transfer-coding               ; "chunked", once and last
 *   chunked-body      = *chunk last-chunk trailer-section CRLF
 *   chunk             = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size        = 1*HEXDIG
 *   last-chunk        = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext         = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   trailer-section   = *( field-line CRLF )
 *
 * Stricter than the RFC allows where two parsers could otherwise disagree about where a message
 * ends (request smuggling): lines end in CRLF only (no bare LF, §2.2 makes it optional); obs-fold
 * (§5.2) and whitespace before the colon (§5.1) are refused; two Content-Length fields, a list
 * in one, or Content-Length with Transfer-Encoding are refused even when they agree (§6.3 allows
 * it); Transfer-Encoding in HTTP/1.0 is refused; HTTP/1.1 needs exactly one Host (§3.2). Empty
 * lines before the request line are skipped (§2.2). Chunk extensions are checked for control
 * characters and ignored; trailers are parsed like header fields and dropped.
 *
 * Caps (lib/limits.h): the request line (MT_HTTP_REQUEST_LINE_MAX, else 414), the method
 * (MT_HTTP_METHOD_MAX, else 501), the header section and the trailer section together
 * (MT_HTTP_HEADERS_MAX bytes, MT_HTTP_HEADER_FIELDS_MAX lines, else 431), a chunk-size line
 * (MT_HTTP_CHUNK_LINE_MAX, MT_HTTP_CHUNK_SIZE_DIGITS), and the body (the `body` buffer's max,
 * else 413, decided by the declared length or chunk-size before the bytes arrive). A cap is
 * refused as soon as it is passed, before the line ends.
 *
 * Pure and resumable: bytes may arrive split anywhere. Ownership: the parser owns the head it
 * hands out, valid until deinit; the caller owns the body buffer. */
#ifndef MT_PROTO_HTTP_REQUEST_H
#define MT_PROTO_HTTP_REQUEST_H

#include "lib/buf.h"
#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_body_kind { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

struct http_field {
	const char *name; /* as sent; compare without case */
	const char *value;
};

struct http_request_head {
	const char *method;
	const char *target; /* origin-form, still percent-encoded */
	int minor;          /* HTTP/1.minor: 0 or 1 */
	size_t field_count;
	struct http_field fields[MT_HTTP_HEADER_FIELDS_MAX];
	enum http_body_kind body;
	uint64_t content_length; /* HTTP_BODY_LENGTH; 0 otherwise */
	bool keep_alive;         /* 1.1 without "Connection: close", 1.0 with "keep-alive" */
	bool expect_continue;    /* "Expect: 100-continue" */
};

struct http_request_parser {
	int state;
	int status; /* the HTTP status an error calls for */
	struct mt_buf line;
	struct mt_buf storage; /* method, target, then name and value of each field, NUL-ended */
	size_t offsets[2 + 2 * MT_HTTP_HEADER_FIELDS_MAX];
	size_t skipped;     /* bytes of empty lines before the request line */
	size_t field_bytes; /* field lines so far, CRLF included, head and trailers */
	size_t field_lines;
	unsigned content_lengths, hosts;
	bool te_seen, te_last_chunked, te_other, conn_close, conn_keep_alive;
	unsigned te_chunked;
	uint64_t remaining; /* body bytes still to come (of the body or of the current chunk) */
	unsigned size_digits;
	size_t chunk_line;
	struct http_request_head head;
};

void http_request_parser_init(struct http_request_parser *parser);
void http_request_parser_deinit(struct http_request_parser *parser);

/* Consumes bytes of the head. Returns 1 when it is complete: *head_r is valid until deinit and
 * *consumed_r bytes were used (the rest is the body or the next request); 0 when all `len` bytes
 * were used and more are needed; -1 on an error with *error_r set and
 * http_request_parser_status() telling the status to answer. */
int http_request_parse_head(struct http_request_parser *parser, const char *data, size_t len,
                            size_t *consumed_r, const struct http_request_head **head_r,
                            const char **error_r);

/* After the head: consumes bytes of the body, appending what it decodes to `body` (whose max is
 * the cap: more is -1 with status 413). Returns 1 when the body (and any trailers) is complete,
 * *consumed_r bytes having been used; 0 when all `len` bytes were used and more are needed; -1 on
 * an error. A request without a body is complete at once. */
int http_request_parse_body(struct http_request_parser *parser, const char *data, size_t len,
                            size_t *consumed_r, struct mt_buf *body, const char **error_r);

/* The status an error calls for: 400, 413, 414, 431, 501 or 505 (400 before any error). */
int http_request_parser_status(const struct http_request_parser *parser);

#endif
