#include "proto/http_request.h"

#include "lib/str.h"

#include <string.h>
#include <strings.h>

#define STR_(x) #x
#define STR(x)  STR_(x)

enum state {
	S_REQUEST_LINE,
	S_FIELDS,
	S_HEAD_DONE,
	S_BODY_LENGTH,
	S_CHUNK_SIZE,
	S_CHUNK_SIZE_WS,
	S_CHUNK_EXT,
	S_CHUNK_SIZE_LF,
	S_CHUNK_DATA,
	S_CHUNK_DATA_CR,
	S_CHUNK_DATA_LF,
	S_TRAILERS,
	S_DONE,
	S_ERROR,
};

/* The line buffer holds the longest line either section allows, CRLF included; storage holds
 * every stored line without its CRLF but with a NUL after each part. */
#define LINE_MAX_                                                                                  \
	(MT_HTTP_REQUEST_LINE_MAX > MT_HTTP_HEADERS_MAX ? MT_HTTP_REQUEST_LINE_MAX                 \
	                                                : MT_HTTP_HEADERS_MAX)
#define STORAGE_MAX (MT_HTTP_REQUEST_LINE_MAX + MT_HTTP_HEADERS_MAX)

void http_request_parser_init(struct http_request_parser *parser)
{
	memset(parser, 0, sizeof(*parser));
	parser->state = S_REQUEST_LINE;
	parser->status = 400;
	mt_buf_init(&parser->line, LINE_MAX_);
	mt_buf_init(&parser->storage, STORAGE_MAX);
}

void http_request_parser_deinit(struct http_request_parser *parser)
{
	mt_buf_free(&parser->line);
	mt_buf_free(&parser->storage);
	memset(parser, 0, sizeof(*parser));
	parser->state = S_ERROR;
}

int http_request_parser_status(const struct http_request_parser *parser)
{
	return parser->status;
}

static int fail(struct http_request_parser *parser, int status, const char *why,
                const char **error_r)
{
	parser->state = S_ERROR;
	parser->status = status;
	*error_r = why;
	return -1;
}

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
 *       / "~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* origin-form = absolute-path [ "?" query ], RFC 3986:
 *   absolute-path = 1*( "/" segment );  segment = *pchar;  query = *( pchar / "/" / "?" )
 *   pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
 * Every one of those characters may follow the first "/", so one set does for both parts. */
static bool origin_form(const char *s, size_t len)
{
	if (len == 0 || s[0] != '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= len || mt_hex_value((unsigned char)s[i + 1]) < 0 ||
			    mt_hex_value((unsigned char)s[i + 2]) < 0)
				return false;
			i += 2;
			continue;
		}
		bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		          (c >= 'A' && c <= 'Z') || (c != '\0' && strchr("-._~!$&'()*+,;=:@/?", c));
		if (!ok)
			return false;
	}
	return true;
}

static int store(struct http_request_parser *parser, size_t index, const char *s, size_t len,
                 const char **error_r)
{
	parser->offsets[index] = parser->storage.len;
	if (mt_buf_append(&parser->storage, s, len) < 0 ||
	    mt_buf_append(&parser->storage, "", 1) < 0)
		return fail(parser, 503, "out of memory for the request head", error_r);
	return 0;
}

/* Moves bytes up to and including the next LF into parser->line. 1: a whole line is there, its
 * CRLF removed; 0: every byte was taken and the line goes on; -1: the line passed `budget`
 * (CRLF included) or ended in a bare LF. */
static int take_line(struct http_request_parser *parser, const char *data, size_t len, size_t *pos,
                     size_t budget, int over_status, const char *over_why, const char **error_r)
{
	const char *lf = memchr(data + *pos, '\n', len - *pos);
	size_t chunk = lf != NULL ? (size_t)(lf - (data + *pos)) + 1 : len - *pos;
	if (chunk > budget || parser->line.len > budget - chunk)
		return fail(parser, over_status, over_why, error_r);
	if (mt_buf_append(&parser->line, data + *pos, chunk) < 0)
		return fail(parser, 503, "out of memory for the request head", error_r);
	*pos += chunk;
	if (lf == NULL)
		return 0;
	struct mt_buf *line = &parser->line;
	if (line->len < 2 || line->data[line->len - 2] != '\r')
		return fail(parser, 400, "a line ends in a bare LF (CRLF expected)", error_r);
	line->len -= 2;
	line->data[line->len] = '\0';
	return 1;
}

/* request-line = method SP request-target SP HTTP-version */
static int parse_request_line(struct http_request_parser *parser, const char *line, size_t len,
                              const char **error_r)
{
	size_t m = 0;
	while (m < len && is_tchar((unsigned char)line[m]))
		m++;
	if (m == 0 || m == len || line[m] != ' ')
		return fail(parser, 400, "malformed request line", error_r);
	if (m > MT_HTTP_METHOD_MAX)
		return fail(parser, 501, "method not implemented", error_r);
	size_t t0 = m + 1, t = t0;
	while (t < len && line[t] != ' ')
		t++;
	if (t == len)
		return fail(parser, 400, "malformed request line", error_r);
	if (!origin_form(line + t0, t - t0))
		return fail(parser, 400,
		            "the request target is not a valid absolute path and query", error_r);
	/* HTTP-version = HTTP-name "/" DIGIT "." DIGIT; HTTP-name = %s"HTTP" */
	const char *v = line + t + 1;
	size_t vlen = len - t - 1;
	if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
	    v[7] < '0' || v[7] > '9')
		return fail(parser, 400, "malformed HTTP version", error_r);
	if (v[5] != '1' || v[7] > '1')
		return fail(parser, 505, "HTTP version not supported (1.0 and 1.1 are)", error_r);
	parser->head.minor = v[7] - '0';
	if (store(parser, 0, line, m, error_r) < 0 ||
	    store(parser, 1, line + t0, t - t0, error_r) < 0)
		return -1;
	return 0;
}

static bool token_equal(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* Calls fn on each non-empty element of a #list (RFC 9110 §5.6.1: elements separated by commas
 * with optional whitespace around them; empty elements are skipped). */
static void each_element(const char *value,
                         void (*fn)(struct http_request_parser *, const char *, size_t),
                         struct http_request_parser *parser)
{
	const char *s = value;
	for (;;) {
		size_t n = strcspn(s, ",");
		size_t a = 0, b = n;
		while (a < b && (s[a] == ' ' || s[a] == '\t'))
			a++;
		while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
			b--;
		if (b > a)
			fn(parser, s + a, b - a);
		if (s[n] == '\0')
			break;
		s += n + 1;
	}
}

/* Transfer-Encoding = #transfer-coding; only "chunked" is decoded, and it must come last. */
static void te_element(struct http_request_parser *parser, const char *s, size_t len)
{
	bool chunked = token_equal(s, len, "chunked");
	parser->te_last_chunked = chunked;
	if (chunked)
		parser->te_chunked++;
	else
		parser->te_other = true;
}

/* Connection = #connection-option */
static void connection_element(struct http_request_parser *parser, const char *s, size_t len)
{
	if (token_equal(s, len, "close"))
		parser->conn_close = true;
	else if (token_equal(s, len, "keep-alive"))
		parser->conn_keep_alive = true;
}

/* Content-Length = 1*DIGIT */
static int content_length(struct http_request_parser *parser, const char *value,
                          const char **error_r)
{
	if (++parser->content_lengths > 1)
		return fail(parser, 400, "more than one Content-Length", error_r);
	uint64_t n = 0;
	if (*value == '\0')
		return fail(parser, 400, "malformed Content-Length", error_r);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return fail(parser, 400, "malformed Content-Length", error_r);
		unsigned d = (unsigned)(*p - '0');
		if (n > (UINT64_MAX - d) / 10)
			return fail(parser, 400, "malformed Content-Length", error_r);
		n = n * 10 + d;
	}
	parser->head.content_length = n;
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS. `keep`: a header field (stored, framing
 * fields looked at) rather than a trailer field (checked and dropped). */
static int parse_field_line(struct http_request_parser *parser, char *line, size_t len, bool keep,
                            const char **error_r)
{
	if (line[0] == ' ' || line[0] == '\t')
		return fail(parser, 400,
		            "obs-fold (a field line starting with whitespace) is refused", error_r);
	size_t n = 0;
	while (n < len && is_tchar((unsigned char)line[n]))
		n++;
	if (n < len && (line[n] == ' ' || line[n] == '\t'))
		return fail(parser, 400, "whitespace between a field name and its colon", error_r);
	if (n == 0 || n == len || line[n] != ':')
		return fail(parser, 400, "malformed header field", error_r);
	size_t v = n + 1, e = len;
	while (v < e && (line[v] == ' ' || line[v] == '\t'))
		v++;
	while (e > v && (line[e - 1] == ' ' || line[e - 1] == '\t'))
		e--;
	for (size_t i = v; i < e; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(parser, 400, "control character in a header field", error_r);
	}
	if (parser->field_lines == MT_HTTP_HEADER_FIELDS_MAX)
		return fail(parser, 431,
		            "more than " STR(MT_HTTP_HEADER_FIELDS_MAX) " header fields", error_r);
	if (!keep) {
		parser->field_lines++;
		return 0;
	}
	size_t index = 2 + 2 * parser->field_lines;
	parser->field_lines++;
	line[n] = '\0';
	line[e] = '\0';
	const char *name = line, *value = line + v;
	if (strcasecmp(name, "Content-Length") == 0) {
		if (content_length(parser, value, error_r) < 0)
			return -1;
	} else if (strcasecmp(name, "Transfer-Encoding") == 0) {
		parser->te_seen = true;
		/* a field with no coding at all must not leave an earlier "chunked" last */
		parser->te_last_chunked = false;
		each_element(value, te_element, parser);
	} else if (strcasecmp(name, "Host") == 0) {
		parser->hosts++;
	} else if (strcasecmp(name, "Connection") == 0) {
		each_element(value, connection_element, parser);
	} else if (strcasecmp(name, "Expect") == 0) {
		if (strcasecmp(value, "100-continue") == 0)
			parser->head.expect_continue = true;
	}
	if (store(parser, index, name, n, error_r) < 0 ||
	    store(parser, index + 1, value, e - v, error_r) < 0)
		return -1;
	return 0;
}

/* The empty line after the fields: RFC 9112 §6.3 decides how the body is framed. */
static int head_complete(struct http_request_parser *parser, const char **error_r)
{
	struct http_request_head *head = &parser->head;
	if (parser->hosts > 1 || (head->minor == 1 && parser->hosts == 0))
		return fail(parser, 400, "an HTTP/1.1 request needs exactly one Host", error_r);
	if (parser->te_seen) {
		if (head->minor == 0)
			return fail(parser, 400, "Transfer-Encoding in an HTTP/1.0 request",
			            error_r);
		if (parser->content_lengths > 0)
			return fail(parser, 400, "both Transfer-Encoding and Content-Length",
			            error_r);
		if (!parser->te_last_chunked || parser->te_chunked != 1)
			return fail(parser, 400, "chunked must be the last transfer coding, once",
			            error_r);
		if (parser->te_other)
			return fail(parser, 501,
			            "transfer coding not implemented (only chunked is)", error_r);
		head->body = HTTP_BODY_CHUNKED;
	} else {
		head->body = head->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	}
	head->keep_alive = !parser->conn_close && (head->minor == 1 || parser->conn_keep_alive);
	/* storage may have moved while it grew: the pointers are taken only now */
	const char *base = parser->storage.data;
	head->method = base + parser->offsets[0];
	head->target = base + parser->offsets[1];
	head->field_count = parser->field_lines;
	for (size_t i = 0; i < head->field_count; i++) {
		head->fields[i].name = base + parser->offsets[2 + 2 * i];
		head->fields[i].value = base + parser->offsets[3 + 2 * i];
	}
	/* trailers are counted from here, against what the head left of the caps */
	parser->state = S_HEAD_DONE;
	return 1;
}

int http_request_parse_head(struct http_request_parser *parser, const char *data, size_t len,
                            size_t *consumed_r, const struct http_request_head **head_r,
                            const char **error_r)
{
	size_t pos = 0;
	*consumed_r = 0;
	if (parser->state == S_ERROR)
		return fail(parser, parser->status, "the request was already refused", error_r);
	if (parser->state != S_REQUEST_LINE && parser->state != S_FIELDS) {
		*head_r = &parser->head;
		return 1;
	}
	while (pos < len) {
		int ret;
		if (parser->state == S_REQUEST_LINE) {
			ret = take_line(
			    parser, data, len, &pos, MT_HTTP_REQUEST_LINE_MAX - parser->skipped,
			    414, "request line longer than " STR(MT_HTTP_REQUEST_LINE_MAX) " bytes",
			    error_r);
		} else {
			ret = take_line(
			    parser, data, len, &pos, MT_HTTP_HEADERS_MAX - parser->field_bytes, 431,
			    "header section larger than " STR(MT_HTTP_HEADERS_MAX) " bytes",
			    error_r);
		}
		if (ret < 0)
			return -1;
		*consumed_r = pos;
		if (ret == 0)
			break;
		char *line = parser->line.data;
		size_t line_len = parser->line.len;
		if (parser->state == S_REQUEST_LINE) {
			if (line_len == 0) {
				parser->skipped += 2; /* RFC 9112 §2.2: empty lines before it */
			} else {
				if (parse_request_line(parser, line, line_len, error_r) < 0)
					return -1;
				parser->state = S_FIELDS;
			}
		} else {
			parser->field_bytes += line_len + 2;
			if (line_len == 0) {
				mt_buf_reset(&parser->line);
				ret = head_complete(parser, error_r);
				if (ret < 0)
					return -1;
				*head_r = &parser->head;
				return 1;
			}
			if (parse_field_line(parser, line, line_len, true, error_r) < 0)
				return -1;
		}
		mt_buf_reset(&parser->line);
	}
	*consumed_r = pos;
	return 0;
}

static bool room_for(const struct mt_buf *body, uint64_t n)
{
	return body->len <= body->max && n <= (uint64_t)(body->max - body->len);
}

static int append_body(struct http_request_parser *parser, struct mt_buf *body, const char *data,
                       size_t n, const char **error_r)
{
	if (!room_for(body, n))
		return fail(parser, 413, "request body larger than allowed", error_r);
	if (mt_buf_append(body, data, n) < 0)
		return fail(parser, 503, "out of memory for the request body", error_r);
	parser->remaining -= n;
	return 0;
}

int http_request_parse_body(struct http_request_parser *parser, const char *data, size_t len,
                            size_t *consumed_r, struct mt_buf *body, const char **error_r)
{
	size_t pos = 0;
	*consumed_r = 0;
	if (parser->state == S_HEAD_DONE) {
		switch (parser->head.body) {
		case HTTP_BODY_NONE:
			parser->state = S_DONE;
			break;
		case HTTP_BODY_LENGTH:
			if (!room_for(body, parser->head.content_length))
				return fail(parser, 413, "request body larger than allowed",
				            error_r);
			parser->remaining = parser->head.content_length;
			parser->state = S_BODY_LENGTH;
			break;
		case HTTP_BODY_CHUNKED:
			parser->state = S_CHUNK_SIZE;
			break;
		}
	}
	while (parser->state != S_DONE) {
		if (parser->state == S_ERROR)
			return fail(parser, parser->status, "the request was already refused",
			            error_r);
		if (parser->state < S_HEAD_DONE)
			return fail(parser, 400, "the head is not complete", error_r);
		if (pos == len) {
			*consumed_r = pos;
			return 0;
		}
		const char *p = data + pos;
		unsigned char c = (unsigned char)*p;
		switch (parser->state) {
		case S_BODY_LENGTH:
		case S_CHUNK_DATA: {
			size_t n = len - pos;
			if (n > parser->remaining)
				n = (size_t)parser->remaining;
			if (append_body(parser, body, p, n, error_r) < 0)
				return -1;
			pos += n;
			if (parser->remaining == 0)
				parser->state =
				    parser->state == S_BODY_LENGTH ? S_DONE : S_CHUNK_DATA_CR;
			break;
		}
		/* chunk-size [ chunk-ext ] CRLF */
		case S_CHUNK_SIZE: {
			int v = mt_hex_value(c);
			pos++;
			if (v >= 0) {
				if (++parser->size_digits > MT_HTTP_CHUNK_SIZE_DIGITS)
					return fail(parser, 400, "chunk size too long", error_r);
				parser->remaining = parser->remaining * 16 + (unsigned)v;
			} else if (parser->size_digits == 0) {
				return fail(parser, 400, "malformed chunk size", error_r);
			} else if (c == ';') {
				parser->state = S_CHUNK_EXT;
			} else if (c == ' ' || c == '\t') {
				parser->state = S_CHUNK_SIZE_WS;
			} else if (c == '\r') {
				parser->state = S_CHUNK_SIZE_LF;
				break;
			} else {
				return fail(parser, 400, "malformed chunk size", error_r);
			}
			parser->chunk_line++;
			break;
		}
		case S_CHUNK_SIZE_WS: /* BWS ";" */
			pos++;
			if (c == ';')
				parser->state = S_CHUNK_EXT;
			else if (c != ' ' && c != '\t')
				return fail(parser, 400, "malformed chunk extension", error_r);
			if (++parser->chunk_line > MT_HTTP_CHUNK_LINE_MAX)
				return fail(parser, 400, "chunk extensions too long", error_r);
			break;
		case S_CHUNK_EXT: /* ignored, but no control characters and not for ever */
			pos++;
			if (c == '\r') {
				parser->state = S_CHUNK_SIZE_LF;
				break;
			}
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return fail(parser, 400, "control character in a chunk extension",
				            error_r);
			if (++parser->chunk_line > MT_HTTP_CHUNK_LINE_MAX)
				return fail(parser, 400, "chunk extensions too long", error_r);
			break;
		case S_CHUNK_SIZE_LF:
			pos++;
			if (c != '\n')
				return fail(parser, 400, "chunk size line not ended by CRLF",
				            error_r);
			parser->size_digits = 0;
			parser->chunk_line = 0;
			if (parser->remaining == 0) {
				parser->state = S_TRAILERS;
			} else if (!room_for(body, parser->remaining)) {
				return fail(parser, 413, "request body larger than allowed",
				            error_r);
			} else {
				parser->state = S_CHUNK_DATA;
			}
			break;
		case S_CHUNK_DATA_CR:
		case S_CHUNK_DATA_LF:
			pos++;
			if (c != (parser->state == S_CHUNK_DATA_CR ? '\r' : '\n'))
				return fail(parser, 400, "chunk data not followed by CRLF",
				            error_r);
			parser->state =
			    parser->state == S_CHUNK_DATA_CR ? S_CHUNK_DATA_LF : S_CHUNK_SIZE;
			break;
		case S_TRAILERS: {
			int ret = take_line(parser, data, len, &pos,
			                    MT_HTTP_HEADERS_MAX - parser->field_bytes, 431,
			                    "header and trailer sections larger than " STR(
			                        MT_HTTP_HEADERS_MAX) " bytes",
			                    error_r);
			if (ret < 0)
				return -1;
			if (ret == 0)
				break;
			size_t line_len = parser->line.len;
			parser->field_bytes += line_len + 2;
			if (line_len == 0)
				parser->state = S_DONE;
			else if (parse_field_line(parser, parser->line.data, line_len, false,
			                          error_r) < 0)
				return -1;
			mt_buf_reset(&parser->line);
			break;
		}
		default:
			return fail(parser, 400, "unexpected parser state", error_r);
		}
	}
	*consumed_r = pos;
	return 1;
}
