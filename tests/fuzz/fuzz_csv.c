/* The CSV reader fed once whole and once in chunks whose sizes come from the first byte: both
 * must give the same records (and the same error), and every record must respect the caps. */
#include "proto/csv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

static void put_record(struct out *out, const struct csv_record *record)
{
	if (record->field_count == 0 || record->field_count > MT_CSV_FIELDS_MAX ||
	    record->line == 0)
		abort();
	put(out, &record->line, sizeof(record->line));
	put(out, &record->field_count, sizeof(record->field_count));
	for (size_t i = 0; i < record->field_count; i++) {
		if (record->lengths[i] > MT_CSV_FIELD_MAX ||
		    record->fields[i][record->lengths[i]] != 0)
			abort();
		put(out, &record->lengths[i], sizeof(record->lengths[i]));
		put(out, record->fields[i], record->lengths[i]);
	}
}

/* step 0: all at once */
static void run(const char *input, size_t len, size_t step, struct out *out)
{
	struct csv_parser parser;
	csv_parser_init(&parser);
	size_t pos = 0;
	unsigned last_line = 0;
	for (;;) {
		size_t chunk = step == 0 || len - pos < step ? len - pos : step;
		bool eof = pos + chunk == len;
		size_t used = 0;
		for (;;) {
			struct csv_record record;
			size_t consumed = 0;
			const char *error = NULL;
			int ret = csv_parse(&parser, input + pos + used, chunk - used, eof,
			                    &consumed, &record, &error);
			if (consumed > chunk - used)
				abort();
			used += consumed;
			if (ret < 0) {
				if (error == NULL || strncmp(error, "line ", 5) != 0)
					abort();
				put(out, "E", 1);
				put(out, error, strlen(error));
				csv_parser_deinit(&parser);
				return;
			}
			if (ret == 0) {
				if (used != chunk)
					abort();
				break;
			}
			if (record.line <= last_line && last_line != 0)
				abort();
			last_line = record.line;
			put_record(out, &record);
		}
		pos += chunk;
		if (eof)
			break;
	}
	csv_parser_deinit(&parser);
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
