/* The HTTP request parser fed once whole and once in chunks whose sizes come from the first byte,
 * request after request (pipelining) until the input ends or is refused: both runs must give the
 * same heads, bodies and error status, and what they give must respect the caps and the grammar
 * the parser promises. */
#include "proto/http_request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BODY_MAX 4096

struct out {
	unsigned char *data;
	size_t len, cap;
};

static void put(struct out *out, const void *bytes, size_t len)
{
	if (out->len + len > out->cap) {
		size_t cap = (out->len + len) * 2 + 64;
		unsigned char *grown = realloc(out->data, cap);
		if (grown == NULL)
			abort();
		out->data = grown;
		out->cap = cap;
	}
	memcpy(out->data + out->len, bytes, len);
	out->len += len;
}

static void put_str(struct out *out, const char *s)
{
	put(out, s, strlen(s) + 1);
}

static void check_value(const char *s)
{
	size_t len = strlen(s);
	if (len > MT_HTTP_HEADERS_MAX)
		abort();
	if (len > 0 && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		abort(); /* OWS is trimmed */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			abort();
	}
}

static void put_head(struct out *out, const struct http_request_head *head)
{
	size_t mlen = strlen(head->method), tlen = strlen(head->target);
	if (mlen == 0 || mlen > MT_HTTP_METHOD_MAX || head->target[0] != '/' ||
	    mlen + tlen > MT_HTTP_REQUEST_LINE_MAX || head->minor < 0 || head->minor > 1 ||
	    head->field_count > MT_HTTP_HEADER_FIELDS_MAX)
		abort();
	if (strpbrk(head->target, " #\"<>\\^`{|}") != NULL)
		abort();
	if (head->body != HTTP_BODY_LENGTH && head->content_length != 0)
		abort();
	if (head->body == HTTP_BODY_LENGTH && head->content_length == 0)
		abort();
	put_str(out, head->method);
	put_str(out, head->target);
	unsigned char flags[4] = {(unsigned char)head->minor, head->keep_alive,
	                          head->expect_continue, (unsigned char)head->body};
	put(out, flags, sizeof(flags));
	put(out, &head->content_length, sizeof(head->content_length));
	size_t hosts = 0, lengths = 0;
	for (size_t i = 0; i < head->field_count; i++) {
		const char *name = head->fields[i].name;
		if (name[0] == '\0' || strpbrk(name, " \t:") != NULL)
			abort();
		check_value(head->fields[i].value);
		hosts += strcasecmp(name, "Host") == 0;
		lengths += strcasecmp(name, "Content-Length") == 0;
		put_str(out, name);
		put_str(out, head->fields[i].value);
	}
	if (hosts > 1 || (head->minor == 1 && hosts != 1) || lengths > 1)
		abort();
}

/* step 0: all at once */
static void run(const char *input, size_t len, size_t step, struct out *out)
{
	size_t pos = 0;
	int failed = 0;
	while (pos < len && !failed) {
		struct http_request_parser parser;
		http_request_parser_init(&parser);
		struct mt_buf body;
		mt_buf_init(&body, BODY_MAX);
		const struct http_request_head *head = NULL;
		int in_body = 0, ret = 0;
		while (pos < len || in_body) {
			size_t chunk = step == 0 || len - pos < step ? len - pos : step;
			size_t consumed = 0;
			const char *error = NULL;
			if (!in_body)
				ret = http_request_parse_head(&parser, input + pos, chunk,
				                              &consumed, &head, &error);
			else
				ret = http_request_parse_body(&parser, input + pos, chunk,
				                              &consumed, &body, &error);
			if (consumed > chunk)
				abort();
			pos += consumed;
			if (ret < 0) {
				int status = http_request_parser_status(&parser);
				if (error == NULL || status < 400 || status > 505)
					abort();
				put(out, "E", 1);
				put(out, &status, sizeof(status));
				failed = 1; /* where it was refused depends on the pieces */
				break;
			}
			if (ret == 0) {
				if (consumed != chunk)
					abort();
				if (pos == len)
					break;
				continue;
			}
			if (in_body)
				break;
			in_body = 1;
			put_head(out, head);
		}
		if (ret == 1 && in_body) {
			if (body.len > BODY_MAX ||
			    (head->body == HTTP_BODY_LENGTH && body.len != head->content_length) ||
			    (head->body == HTTP_BODY_NONE && body.len != 0))
				abort();
			put(out, "B", 1);
			put(out, &body.len, sizeof(body.len));
			put(out, body.data != NULL ? body.data : "", body.len);
		}
		http_request_parser_deinit(&parser);
		mt_buf_free(&body);
		if (ret != 1)
			break;
	}
	if (!failed)
		put(out, &pos, sizeof(pos));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 16) + 1;
	const char *input = (const char *)data + 1;
	size_t len = size - 1;

	struct out whole = {0}, chunked = {0};
	run(input, len, 0, &whole);
	run(input, len, step, &chunked);
	if (whole.len != chunked.len ||
	    (whole.len > 0 && memcmp(whole.data, chunked.data, whole.len)))
		abort();
	free(whole.data);
	free(chunked.data);
	return 0;
}
