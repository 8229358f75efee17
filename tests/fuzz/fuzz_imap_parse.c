/* The IMAP response parser fed twice — in one piece and in pieces whose size comes from the
 * first byte — must produce the same responses, the same streamed bytes and the same error.
 * Every response goes through the typed helpers, whose results are checked against the caps. */
#include "fuzz_checks.h"
#include "proto/imap_fetch.h"
#include "proto/imap_parse.h"
#include "proto/imap_response.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
	char *buf;
	size_t len, cap;
};

static void put(struct out *out, const void *bytes, size_t len)
{
	if (out->len + len + 1 > out->cap) {
		out->cap = (out->len + len + 1) * 2;
		out->buf = realloc(out->buf, out->cap);
		if (out->buf == NULL)
			abort();
	}
	memcpy(out->buf + out->len, bytes, len);
	out->len += len;
	out->buf[out->len] = '\0';
}

static void put_str(struct out *out, const char *s)
{
	put(out, s, strlen(s));
}

static void put_num(struct out *out, uint64_t n)
{
	char num[32];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
	put_str(out, num);
}

static void flatten_value(struct out *out, const struct imap_value *v, unsigned depth)
{
	if (depth > MT_IMAP_DEPTH_MAX + 1)
		abort();
	put_num(out, (uint64_t)v->type);
	put_str(out, ":");
	if (v->type == IMAP_LIST) {
		size_t n = 0;
		put_str(out, "(");
		for (const struct imap_value *c = v->child; c != NULL; c = c->next, n++) {
			flatten_value(out, c, depth + 1);
			put_str(out, " ");
		}
		put_str(out, ")");
		if (n != v->len)
			abort();
		return;
	}
	if (v->type == IMAP_NIL) {
		if (v->str != NULL)
			abort();
		return;
	}
	if (v->streamed) {
		if (v->str != NULL || v->type != IMAP_LITERAL)
			abort();
		put_num(out, v->len);
		return;
	}
	/* strings hold no NUL: their length is their strlen */
	if (v->str == NULL || strlen(v->str) != v->len || v->len > MT_IMAP_BODY_LITERAL_MAX)
		abort();
	put(out, v->str, v->len);
	if (v->type == IMAP_NUMBER)
		put_num(out, v->num);
}

static void check_seqset(const struct imap_seqset *set)
{
	if (set->count > MT_IMAP_SEQSET_RANGES_MAX)
		abort();
	for (size_t i = 0; i < set->count; i++) {
		if (set->ranges[i].first > set->ranges[i].last || set->ranges[i].first == 0)
			abort();
	}
}

static void check_ret(int ret, const char *error)
{
	if (ret != 0 && (ret != -1 || error == NULL))
		abort();
}

static void typed(const struct imap_response *r)
{
	const char *error = NULL;
	struct imap_code_data code;
	int ret = imap_response_code(r, &code, &error);
	check_ret(ret, error);
	if (ret == 0 && (code.code == IMAP_CODE_NONE) != (r->code[0] == '\0'))
		abort();
	error = NULL;
	struct imap_fetch fetch;
	ret = imap_fetch_parse(r, &fetch, &error);
	check_ret(ret, error);
	if (ret == 0) {
		if (fetch.section_count > MT_IMAP_FETCH_SECTIONS_MAX)
			abort();
		struct imap_envelope env;
		check_ret(imap_envelope_parse(fetch.envelope, &env, &error), error);
		struct imap_body_part parts[32];
		size_t count = 0;
		ret = imap_bodystructure_parse(fetch.bodystructure, parts, 32, &count, &error);
		check_ret(ret, error);
		if (count > 32 || imap_bodystructure_attachments(parts, count) > count)
			abort();
	}
	struct imap_list list;
	error = NULL;
	ret = imap_list_parse(r, 0, &list, &error);
	check_ret(ret, error);
	if (ret == 0)
		fuzz_check_utf8(list.name_utf8, sizeof(list.name_utf8) - 1);
	ret = imap_list_parse(r, 1, &list, &error);
	check_ret(ret, error);
	if (ret == 0)
		fuzz_check_utf8(list.name_utf8, sizeof(list.name_utf8) - 1);
	struct imap_status_data st;
	check_ret(imap_status_parse(r, &st, &error), error);
	struct imap_search search;
	if (imap_search_parse(r, &search, &error) == 0)
		check_seqset(&search.numbers);
	imap_seqset_deinit(&search.numbers);
	struct imap_esearch es;
	if (imap_esearch_parse(r, &es, &error) == 0)
		check_seqset(&es.all);
	imap_seqset_deinit(&es.all);
	struct imap_vanished van;
	if (imap_vanished_parse(r, &van, &error) == 0)
		check_seqset(&van.uids);
	imap_seqset_deinit(&van.uids);
}

static void flatten(struct out *out, const struct imap_response *r)
{
	put_num(out, (uint64_t)r->kind * 10 + r->status);
	put_str(out, r->tag);
	put_str(out, "|");
	put_str(out, r->name);
	put_str(out, "|");
	put_num(out, r->has_number ? r->number + 1ull : 0);
	put_str(out, r->code);
	put_str(out, "|");
	put_str(out, r->code_args);
	for (const struct imap_value *v = r->code_values; v != NULL; v = v->next)
		flatten_value(out, v, 0);
	put_str(out, r->text);
	size_t n = 0;
	for (const struct imap_value *v = r->data; v != NULL; v = v->next, n++)
		flatten_value(out, v, 0);
	if (n != r->data_count || strlen(r->tag) > MT_IMAP_TAG_MAX)
		abort();
	put_str(out, "\n");
}

static int on_chunk(void *ctx, const struct imap_literal_chunk *chunk)
{
	struct out *out = ctx;
	if (chunk->offset + chunk->len > chunk->size || chunk->size > MT_IMAP_STREAM_LITERAL_MAX)
		abort();
	if (chunk->offset == 0) {
		put_str(out, "[");
		put_str(out, chunk->item);
		put_num(out, chunk->size);
	}
	put(out, chunk->data, chunk->len);
	return 0;
}

/* Feeds `len` bytes in pieces of `step`; returns the output, ending with the error if any. */
static void run(const char *input, size_t len, size_t step, int stream, struct out *out, int check)
{
	struct imap_parser parser;
	imap_parser_init(&parser);
	if (stream)
		imap_parser_set_literal_cb(&parser, on_chunk, out);
	for (size_t pos = 0; pos < len;) {
		size_t chunk = len - pos < step ? len - pos : step;
		size_t used = 0;
		while (used < chunk) {
			size_t consumed = 0;
			const struct imap_response *resp = NULL;
			const char *error = NULL;
			int ret = imap_parser_feed(&parser, input + pos + used, chunk - used,
			                           &consumed, &resp, &error);
			if (ret < 0) {
				if (error == NULL)
					abort();
				put_str(out, "ERROR ");
				put_str(out, error);
				imap_parser_deinit(&parser);
				return;
			}
			if (consumed > chunk - used || (ret == 0 && consumed != chunk - used))
				abort();
			used += consumed;
			if (ret == 1) {
				if (imap_parser_busy(&parser))
					abort();
				flatten(out, resp);
				if (check)
					typed(resp);
			}
		}
		pos += chunk;
	}
	put_str(out, imap_parser_busy(&parser) ? "BUSY" : "IDLE");
	imap_parser_deinit(&parser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 32) + 1;
	int stream = data[0] >= 128;
	const char *input = (const char *)data + 1;
	size_t len = size - 1;
	struct out whole = {0}, split = {0};
	run(input, len, len > 0 ? len : 1, stream, &whole, 1);
	run(input, len, step, stream, &split, 0);
	if (whole.len != split.len || memcmp(whole.buf, split.buf, whole.len) != 0)
		abort();
	free(whole.buf);
	free(split.buf);
	return 0;
}
