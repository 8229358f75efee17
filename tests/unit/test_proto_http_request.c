#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/http_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEXT "GET /next HTTP/1.1\r\n" /* bytes of the next request: never consumed */

static void add(char *flat, size_t size, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends to `flat`; a result too long for it fails the test rather than being cut. */
static void add(char *flat, size_t size, size_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(flat + *n, size - *n, fmt, ap);
	va_end(ap);
	assert_true(len >= 0 && (size_t)len < size - *n);
	*n += (size_t)len;
}

/* One request fed in the given pieces, flattened for comparison: the head, the body and the
 * bytes used, or "E<status>" on an error. */
static void run(const char *input, size_t len, const size_t *cuts, size_t ncuts, size_t body_max,
                char *flat, size_t flat_size)
{
	struct http_request_parser parser;
	http_request_parser_init(&parser);
	struct mt_buf body;
	mt_buf_init(&body, body_max);
	const struct http_request_head *head = NULL;
	size_t start = 0, used = 0;
	int done = 0, in_body = 0;
	const char *error = NULL;
	for (size_t c = 0; c <= ncuts && !done; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t pos = start;
		while (!done) {
			size_t consumed = 0;
			int ret;
			if (!in_body)
				ret = http_request_parse_head(&parser, input + pos, end - pos,
				                              &consumed, &head, &error);
			else
				ret = http_request_parse_body(&parser, input + pos, end - pos,
				                              &consumed, &body, &error);
			if (ret < 0) {
				assert_non_null(error);
				snprintf(flat, flat_size, "E%d",
				         http_request_parser_status(&parser));
				http_request_parser_deinit(&parser);
				mt_buf_free(&body);
				return;
			}
			assert_true(consumed <= end - pos);
			pos += consumed;
			used += consumed;
			if (ret == 0) {
				assert_int_equal(pos, end);
				break;
			}
			/* the head's 1 leads on to the body; the body's 1 ends the request */
			if (in_body)
				done = 1;
			in_body = 1;
		}
		start = end;
	}
	if (!done) {
		snprintf(flat, flat_size, "incomplete");
	} else {
		size_t n = 0;
		add(flat, flat_size, &n, "%s|%s|1.%d|ka=%d|ec=%d|body=%d|cl=%llu", head->method,
		    head->target, head->minor, head->keep_alive, head->expect_continue,
		    (int)head->body, (unsigned long long)head->content_length);
		for (size_t i = 0; i < head->field_count; i++)
			add(flat, flat_size, &n, "|%s=%s", head->fields[i].name,
			    head->fields[i].value);
		add(flat, flat_size, &n, "|%zu:%s|used=%zu", body.len,
		    body.data != NULL ? body.data : "", used);
	}
	http_request_parser_deinit(&parser);
	mt_buf_free(&body);
}

static const char *const good[] = {
    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ("\r\n\r\nPOST /v1/items?x=1&y=%C3%A9 HTTP/1.1\r\nHost: localhost:8025\r\n"
     "Content-Length: 5\r\nContent-Type:application/json \t\r\nX-Empty:\r\n\r\nhello"),
    ("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , Chunked\r\n\r\n"
     "5;name=value;other\r\nhello\r\n0A \t; x=\"q\"\r\n0123456789\r\n"
     "000\r\nTrailer-A: b\r\nX-Trail: \x80\xff\r\n\r\n"),
    "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    "GET /a/b;c=d/:@!$&'()*+,=-._~?q=/? HTTP/1.0\r\n\r\n",
    ("PUT /v1/admin HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n"
     "Connection: keep-alive, close\r\nAuthorization: Bearer good\r\n\r\nabc"),
    "DELETE /v1/items/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ("POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
};

static void split_everywhere(const char *request, size_t body_max)
{
	char input[4096], whole[8192], split[8192];
	size_t len = (size_t)snprintf(input, sizeof(input), "%s%s", request, NEXT);
	run(input, len, NULL, 0, body_max, whole, sizeof(whole));
	assert_int_equal(strncmp(whole, "E", 1) != 0 && strcmp(whole, "incomplete") != 0, 1);
	char want_used[32];
	snprintf(want_used, sizeof(want_used), "|used=%zu", strlen(request));
	if (strstr(whole, want_used) == NULL)
		fail_msg("%s: %s", request, whole);
	for (size_t i = 0; i <= len; i++) {
		run(input, len, &i, 1, body_max, split, sizeof(split));
		assert_string_equal(whole, split);
	}
	size_t *cuts = malloc(len * sizeof(*cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	run(input, len, cuts, len - 1, body_max, split, sizeof(split));
	assert_string_equal(whole, split);
	free(cuts);
}

static void test_split_everywhere(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		split_everywhere(good[i], 64);
}

/* The flattened result without its "|used=N", which must be the whole input. */
static void flat_of(const char *input, size_t body_max, char *flat, size_t size)
{
	run(input, strlen(input), NULL, 0, body_max, flat, size);
	char *used = strstr(flat, "|used=");
	if (used != NULL) {
		assert_int_equal(strtoul(used + 6, NULL, 10), strlen(input));
		*used = '\0';
	}
}

static void test_values(void **state)
{
	(void)state;
	char flat[8192];
	flat_of(good[0], 64, flat, sizeof(flat));
	assert_string_equal(flat, "GET|/healthz|1.1|ka=1|ec=0|body=0|cl=0|Host=x|0:");
	flat_of(good[1], 64, flat, sizeof(flat));
	assert_string_equal(flat, "POST|/v1/items?x=1&y=%C3%A9|1.1|ka=1|ec=0|body=1|cl=5|"
	                          "Host=localhost:8025|Content-Length=5|"
	                          "Content-Type=application/json|X-Empty=|5:hello");
	flat_of(good[2], 64, flat, sizeof(flat));
	assert_string_equal(flat, "POST|/big|1.1|ka=1|ec=0|body=2|cl=0|Host=x|"
	                          "Transfer-Encoding=, Chunked|15:hello0123456789");
	flat_of(good[3], 64, flat, sizeof(flat));
	assert_string_equal(flat, "GET|/|1.0|ka=1|ec=0|body=0|cl=0|Connection=Keep-Alive|0:");
	flat_of("GET / HTTP/1.0\r\n\r\n", 64, flat, sizeof(flat));
	assert_string_equal(flat, "GET|/|1.0|ka=0|ec=0|body=0|cl=0|0:");
	flat_of(good[5], 64, flat, sizeof(flat));
	assert_non_null(strstr(flat, "|ka=0|ec=1|body=1|cl=3|"));
	assert_non_null(strstr(flat, "|3:abc"));
	flat_of(good[6], 64, flat, sizeof(flat));
	assert_non_null(strstr(flat, "|body=0|cl=0|"));
}

/* The status of the error `input` leads to, the same whether it arrives whole, split once
 * anywhere, or byte by byte. */
static int error_status(const char *input, size_t len, size_t body_max)
{
	static char whole[4 * MT_HTTP_HEADERS_MAX], split[4 * MT_HTTP_HEADERS_MAX];
	run(input, len, NULL, 0, body_max, whole, sizeof(whole));
	if (whole[0] != 'E')
		fail_msg("not refused: %.200s -> %.200s", input, whole);
	for (size_t i = 0; i <= len; i++) {
		run(input, len, &i, 1, body_max, split, sizeof(split));
		assert_string_equal(whole, split);
	}
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	run(input, len, cuts, len > 0 ? len - 1 : 0, body_max, split, sizeof(split));
	free(cuts);
	assert_string_equal(whole, split);
	return atoi(whole + 1);
}

static int status_of(const char *input)
{
	return error_status(input, strlen(input), 64);
}

#define HEAD "POST /x HTTP/1.1\r\nHost: x\r\n"

static void test_framing_errors(void **state)
{
	(void)state;
	/* RFC 9112 §6.3: duplicates refused even when equal, lists too */
	assert_int_equal(status_of(HEAD "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
	                 400);
	assert_int_equal(status_of(HEAD "Content-Length: 5, 5\r\n\r\nhello"), 400);
	assert_int_equal(status_of(HEAD "Content-Length: +5\r\n\r\nhello"), 400);
	assert_int_equal(status_of(HEAD "Content-Length: 0x5\r\n\r\nhello"), 400);
	assert_int_equal(status_of(HEAD "Content-Length:\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "Content-Length: 5 5\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "Content-Length: 99999999999999999999\r\n\r\n"), 400);
	assert_int_equal(
	    status_of(HEAD "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
	    400);
	assert_int_equal(
	    status_of(HEAD "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
	    400);
	assert_int_equal(status_of(HEAD "Transfer-Encoding: chunked, gzip\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: "
	                                "chunked\r\n\r\n"),
	                 400);
	assert_int_equal(status_of(HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n"),
	                 400);
	assert_int_equal(status_of(HEAD "Transfer-Encoding: identity\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "Transfer-Encoding: gzip, chunked\r\n\r\n"), 501);
	assert_int_equal(status_of("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

static void test_head_errors(void **state)
{
	(void)state;
	assert_int_equal(status_of("POST /x HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
	assert_int_equal(status_of("POST /x HTTP/1.1\r\nHost\t: x\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "X-A: b\r\n c\r\n\r\n"), 400); /* obs-fold */
	assert_int_equal(status_of(HEAD "X-A: b\r\n\tc\r\n\r\n"), 400);
	assert_int_equal(status_of("POST /x HTTP/1.1\r\n Host: x\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "X-A: b\x01z\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "X-A: b\x7fz\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "X-A: b\rz\r\n\r\n"), 400);
	assert_int_equal(error_status(HEAD "X-A: b\0z\r\n\r\n", sizeof(HEAD) + 10, 64), 400);
	assert_int_equal(status_of(HEAD "X(A): b\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD ": b\r\n\r\n"), 400);
	assert_int_equal(status_of(HEAD "X-A b\r\n\r\n"), 400);
	assert_int_equal(status_of("GET / HTTP/1.1\nHost: x\n\n"), 400); /* bare LF */
	assert_int_equal(status_of(HEAD "X-A: b\n\r\n"), 400);
	assert_int_equal(status_of("GET / HTTP/1.1\r\n\r\n"), 400);                       /* Host */
	assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400); /* 2 */
	assert_int_equal(status_of("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(status_of("GET / HTTP/2.0\r\n\r\n"), 505);
	assert_int_equal(status_of("GET / HTTP/1.2\r\n\r\n"), 505);
	assert_int_equal(status_of("GET / HTTP/0.9\r\n\r\n"), 505);
	assert_int_equal(status_of("GET / http/1.1\r\n\r\n"), 400);
	assert_int_equal(status_of("GET / HTTP/1.10\r\n\r\n"), 400);
	assert_int_equal(status_of("GET / HTTP/1.1 \r\n\r\n"), 400);
	assert_int_equal(status_of("GET /\r\n\r\n"), 400);
	assert_int_equal(status_of("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /%2 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("G(T / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of(" GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
	assert_int_equal(status_of("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\nHost: x\r\n\r\n"), 501);
	/* exactly MT_HTTP_METHOD_MAX is fine */
	char flat[8192];
	flat_of("ABCDEFGHIJKLMNOP / HTTP/1.1\r\nHost: x\r\n\r\n", 64, flat, sizeof(flat));
	assert_int_equal(strncmp(flat, "ABCDEFGHIJKLMNOP|", 17), 0);
}

static void test_caps(void **state)
{
	(void)state;
	static char flat[4 * MT_HTTP_HEADERS_MAX];
	/* request line: exactly at the cap (CRLF included) passes, one more byte is 414, even
	 * before the line ends */
	size_t n = MT_HTTP_REQUEST_LINE_MAX + 64 + MT_HTTP_HEADERS_MAX;
	char *big = malloc(n + 256);
	size_t target = MT_HTTP_REQUEST_LINE_MAX - strlen("GET  HTTP/1.1\r\n");
	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', target - 1);
	strcpy(big + 4 + target, " HTTP/1.1\r\nHost: x\r\n\r\n");
	flat_of(big, 64, flat, sizeof(flat));
	assert_int_equal(strncmp(flat, "GET|/aaa", 8), 0);
	memset(big + 5, 'a', target);
	strcpy(big + 5 + target, " HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(error_status(big, strlen(big), 64), 414);
	assert_int_equal(error_status(big, MT_HTTP_REQUEST_LINE_MAX + 1, 64), 414);

	/* the header section: MT_HTTP_HEADERS_MAX bytes including the empty line pass */
	size_t len = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: x\r\n");
	size_t fill = MT_HTTP_HEADERS_MAX - strlen("Host: x\r\n") - strlen("X: \r\n") - 2;
	memcpy(big + len, "X: ", 3);
	memset(big + len + 3, 'v', fill);
	strcpy(big + len + 3 + fill, "\r\n\r\n");
	flat_of(big, 64, flat, sizeof(flat));
	assert_int_equal(strncmp(flat, "GET|/|", 6), 0);
	memset(big + len + 3, 'v', fill + 1);
	strcpy(big + len + 3 + fill + 1, "\r\n\r\n");
	assert_int_equal(error_status(big, strlen(big), 64), 431);
	/* refused before the line ends */
	memset(big + len + 3, 'v', MT_HTTP_HEADERS_MAX);
	assert_int_equal(error_status(big, len + 3 + MT_HTTP_HEADERS_MAX, 64), 431);

	/* MT_HTTP_HEADER_FIELDS_MAX lines pass, one more is 431 */
	len = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: x\r\n");
	for (int i = 1; i < MT_HTTP_HEADER_FIELDS_MAX; i++)
		len += (size_t)sprintf(big + len, "X%d: y\r\n", i);
	strcpy(big + len, "\r\n");
	flat_of(big, 64, flat, sizeof(flat));
	assert_int_equal(strncmp(flat, "GET|/|", 6), 0);
	strcpy(big + len, "Y: z\r\n\r\n");
	assert_int_equal(error_status(big, strlen(big), 64), 431);
	free(big);
}

static void test_body_errors(void **state)
{
	(void)state;
	char flat[8192];
	/* the body cap: exactly at it passes, over it is 413 before the bytes arrive */
	flat_of(HEAD "Content-Length: 8\r\n\r\n12345678", 8, flat, sizeof(flat));
	assert_non_null(strstr(flat, "|8:12345678"));
	assert_int_equal(error_status(HEAD "Content-Length: 9\r\n\r\n", strlen(HEAD) + 23, 8), 413);
#define CHUNKED HEAD "Transfer-Encoding: chunked\r\n\r\n"
	flat_of(CHUNKED "4\r\n1234\r\n4\r\n5678\r\n0\r\n\r\n", 8, flat, sizeof(flat));
	assert_non_null(strstr(flat, "|8:12345678"));
	assert_int_equal(error_status(CHUNKED "4\r\n1234\r\n5\r\n", strlen(CHUNKED) + 14, 8), 413);
	assert_int_equal(status_of(CHUNKED "ffffffffffffffff\r\n"), 413);
	assert_int_equal(status_of(CHUNKED "00000000000000001\r\n"), 400); /* 17 digits */
	assert_int_equal(status_of(CHUNKED "zz\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "\r\n"), 400);
	assert_int_equal(status_of(CHUNKED ";x\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "5\nhello\r\n0\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "5 x\r\nhello\r\n0\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "5\r\nhelloX\r\n0\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "5\r\nhello\rX0\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "5;a\x01\r\nhello\r\n0\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "5;a\nhello\r\n0\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "0\r\nX: a\r\n b\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "0\r\nX : a\r\n\r\n"), 400);
	assert_int_equal(status_of(CHUNKED "0\r\n\n"), 400);
	/* extensions: exactly MT_HTTP_CHUNK_LINE_MAX bytes before the CRLF pass */
	char *ext = malloc(MT_HTTP_CHUNK_LINE_MAX + 256);
	int n = sprintf(ext, "%s1;", CHUNKED);
	memset(ext + n, 'e', MT_HTTP_CHUNK_LINE_MAX - 2);
	strcpy(ext + n + MT_HTTP_CHUNK_LINE_MAX - 2, "\r\nA\r\n0\r\n\r\n");
	flat_of(ext, 8, flat, sizeof(flat));
	assert_non_null(strstr(flat, "|1:A"));
	memset(ext + n, 'e', MT_HTTP_CHUNK_LINE_MAX - 1);
	strcpy(ext + n + MT_HTTP_CHUNK_LINE_MAX - 1, "\r\nA\r\n0\r\n\r\n");
	assert_int_equal(error_status(ext, strlen(ext), 8), 400);
	free(ext);
	/* trailers count against the header caps that the head left */
	char *trail = malloc(2 * MT_HTTP_HEADERS_MAX);
	n = sprintf(trail, "%s0\r\nT: ", CHUNKED);
	memset(trail + n, 't', MT_HTTP_HEADERS_MAX);
	strcpy(trail + n + MT_HTTP_HEADERS_MAX, "\r\n\r\n");
	assert_int_equal(error_status(trail, strlen(trail), 8), 431);
	n = sprintf(trail, "%s0\r\n", CHUNKED);
	for (int i = 0; i < MT_HTTP_HEADER_FIELDS_MAX; i++)
		n += sprintf(trail + n, "T%d: t\r\n", i);
	strcpy(trail + n, "\r\n");
	assert_int_equal(error_status(trail, strlen(trail), 8), 431);
	free(trail);
}

static void test_pipelined(void **state)
{
	(void)state;
	/* Two requests in one buffer: the first stops exactly at its end. */
	const char *input = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
	                    "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t len = strlen(input), pos = 0;
	for (int i = 0; i < 2; i++) {
		struct http_request_parser parser;
		http_request_parser_init(&parser);
		struct mt_buf body;
		mt_buf_init(&body, 64);
		const struct http_request_head *head = NULL;
		const char *error = NULL;
		size_t consumed = 0;
		assert_int_equal(http_request_parse_head(&parser, input + pos, len - pos, &consumed,
		                                         &head, &error),
		                 1);
		pos += consumed;
		assert_string_equal(head->target, i == 0 ? "/a" : "/b");
		assert_int_equal(http_request_parse_body(&parser, input + pos, len - pos, &consumed,
		                                         &body, &error),
		                 1);
		pos += consumed;
		assert_int_equal(body.len, i == 0 ? 2 : 0);
		http_request_parser_deinit(&parser);
		mt_buf_free(&body);
	}
	assert_int_equal(pos, len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_everywhere),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_framing_errors),
	    cmocka_unit_test(test_head_errors),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_body_errors),
	    cmocka_unit_test(test_pipelined),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
