#include "proto/csv.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORAGE_SIZE ((size_t)MT_CSV_FIELDS_MAX * (MT_CSV_FIELD_MAX + 1))

static const unsigned char utf8_bom[3] = {0xef, 0xbb, 0xbf};

void csv_parser_init(struct csv_parser *parser)
{
	memset(parser, 0, sizeof(*parser));
	parser->state = CSV_RECORD_START;
	parser->line = 1;
}

void csv_parser_deinit(struct csv_parser *parser)
{
	free(parser->storage);
	parser->storage = NULL;
}

static int fail(struct csv_parser *parser, unsigned line, const char *reason)
{
	snprintf(parser->error, sizeof(parser->error), "line %u: %s", line, reason);
	parser->state = CSV_ERROR;
	return -1;
}

static void reset_record(struct csv_parser *parser)
{
	parser->used = 0;
	parser->field_count = 0;
}

static int begin_field(struct csv_parser *parser)
{
	if (parser->field_count == MT_CSV_FIELDS_MAX) {
		char reason[48];
		snprintf(reason, sizeof(reason), "more than %d fields", MT_CSV_FIELDS_MAX);
		return fail(parser, parser->line, reason);
	}
	parser->offsets[parser->field_count] = parser->used;
	parser->lengths[parser->field_count] = 0;
	parser->field_count++;
	return 0;
}

static int append(struct csv_parser *parser, char c)
{
	size_t *len = &parser->lengths[parser->field_count - 1];
	if (*len == MT_CSV_FIELD_MAX) {
		char reason[48];
		snprintf(reason, sizeof(reason), "field longer than %d bytes", MT_CSV_FIELD_MAX);
		return fail(parser, parser->line, reason);
	}
	parser->storage[parser->used++] = c;
	(*len)++;
	return 0;
}

static void end_field(struct csv_parser *parser)
{
	/* room is reserved: each field has MT_CSV_FIELD_MAX + 1 bytes */
	parser->storage[parser->used++] = '\0';
}

static void fill_record(const struct csv_parser *parser, struct csv_record *record)
{
	record->field_count = parser->field_count;
	for (size_t i = 0; i < parser->field_count; i++) {
		record->fields[i] = parser->storage + parser->offsets[i];
		record->lengths[i] = parser->lengths[i];
	}
	for (size_t i = parser->field_count; i < MT_CSV_FIELDS_MAX; i++) {
		record->fields[i] = NULL;
		record->lengths[i] = 0;
	}
	record->line = parser->record_line;
}

static int next_line(struct csv_parser *parser)
{
	if (parser->line == UINT_MAX)
		return fail(parser, parser->line, "too many lines");
	parser->line++;
	return 0;
}

/* One byte. 1: a record ended with this byte; 0: go on; -1: error. */
static int feed(struct csv_parser *parser, char c)
{
	bool after_cr = parser->last_cr;
	parser->last_cr = c == '\r';
	bool line_end = c == '\r' || (c == '\n' && !after_cr);

	switch (parser->state) {
	case CSV_RECORD_START:
		if (c == '\n' && after_cr)
			return 0; /* the LF of a CRLF that ended the previous line */
		if (line_end)
			return next_line(parser); /* blank line */
		parser->record_line = parser->line;
		__attribute__((fallthrough));
	case CSV_FIELD_START:
		if (begin_field(parser) < 0)
			return -1;
		if (c == '"') {
			parser->quote_line = parser->line;
			parser->state = CSV_QUOTED;
			return 0;
		}
		parser->state = CSV_UNQUOTED;
		__attribute__((fallthrough));
	case CSV_UNQUOTED:
		if (c == ',') {
			end_field(parser);
			parser->state = CSV_FIELD_START;
			return 0;
		}
		if (c == '\r' || c == '\n') {
			end_field(parser);
			parser->state = CSV_RECORD_START;
			return next_line(parser) < 0 ? -1 : 1;
		}
		if (c == '"')
			return fail(parser, parser->line, "quote in an unquoted field");
		return append(parser, c);
	case CSV_QUOTED:
		if (c == '"') {
			parser->state = CSV_QUOTE;
			return 0;
		}
		if (line_end && next_line(parser) < 0)
			return -1;
		return append(parser, c);
	case CSV_QUOTE:
		if (c == '"') {
			parser->state = CSV_QUOTED;
			return append(parser, c);
		}
		if (c == ',') {
			end_field(parser);
			parser->state = CSV_FIELD_START;
			return 0;
		}
		if (c == '\r' || c == '\n') {
			end_field(parser);
			parser->state = CSV_RECORD_START;
			return next_line(parser) < 0 ? -1 : 1;
		}
		return fail(parser, parser->line, "text after a closing quote");
	case CSV_ERROR:
		return -1;
	}
	return -1;
}

/* End of input: the last record may lack its line break. */
static int finish(struct csv_parser *parser)
{
	switch (parser->state) {
	case CSV_RECORD_START:
	case CSV_ERROR:
		return parser->state == CSV_ERROR ? -1 : 0;
	case CSV_FIELD_START:
		/* "a," ends with an empty field */
		if (begin_field(parser) < 0)
			return -1;
		__attribute__((fallthrough));
	case CSV_UNQUOTED:
	case CSV_QUOTE:
		end_field(parser);
		parser->state = CSV_RECORD_START;
		return 1;
	case CSV_QUOTED:
		return fail(parser, parser->quote_line, "unterminated quoted field");
	}
	return -1;
}

int csv_parse(struct csv_parser *parser, const char *data, size_t len, bool eof, size_t *consumed_r,
              struct csv_record *record_r, const char **error_r)
{
	*consumed_r = 0;
	if (parser->state == CSV_ERROR) {
		*error_r = parser->error;
		return -1;
	}
	if (parser->storage == NULL) {
		parser->storage = malloc(STORAGE_SIZE);
		if (parser->storage == NULL) {
			snprintf(parser->error, sizeof(parser->error), "out of memory");
			parser->state = CSV_ERROR;
			*error_r = parser->error;
			return -1;
		}
	}
	if (parser->emitted) {
		reset_record(parser);
		parser->emitted = false;
	}

	size_t pos = 0;
	/* A BOM may arrive split across calls: hold back its bytes until it is complete or
	 * proven not to be one, then replay them as data. */
	while (!parser->started && pos < len) {
		if ((unsigned char)data[pos] == utf8_bom[parser->bom_seen]) {
			pos++;
			if (++parser->bom_seen == 3) {
				parser->started = true;
				parser->bom_seen = 0;
			}
			continue;
		}
		parser->started = true;
		for (unsigned i = 0; i < parser->bom_seen; i++) {
			/* BOM bytes are never separators, so they cannot end a record */
			if (feed(parser, (char)utf8_bom[i]) < 0) {
				*error_r = parser->error;
				return -1;
			}
		}
		parser->bom_seen = 0;
	}
	if (!parser->started && eof) {
		parser->started = true;
		for (unsigned i = 0; i < parser->bom_seen; i++) {
			if (feed(parser, (char)utf8_bom[i]) < 0) {
				*error_r = parser->error;
				return -1;
			}
		}
		parser->bom_seen = 0;
	}

	while (pos < len) {
		int ret = feed(parser, data[pos++]);
		if (ret < 0) {
			*consumed_r = pos;
			*error_r = parser->error;
			return -1;
		}
		if (ret > 0) {
			*consumed_r = pos;
			fill_record(parser, record_r);
			parser->emitted = true;
			return 1;
		}
	}
	*consumed_r = pos;
	if (!eof)
		return 0;
	int ret = finish(parser);
	if (ret < 0) {
		*error_r = parser->error;
		return -1;
	}
	if (ret > 0) {
		fill_record(parser, record_r);
		parser->emitted = true;
	}
	return ret;
}
