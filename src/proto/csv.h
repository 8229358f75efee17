/* CSV reader (RFC 4180, the profile import: `kind,name,emails`). Pure and resumable: feed any
 * chunking of the input and get the same records.
 *
 *   file       = record *(line-break record) [line-break]
 *   record     = field *(COMMA field)
 *   field      = escaped / non-escaped
 *   escaped    = DQUOTE *(TEXTDATA / COMMA / CR / LF / 2DQUOTE) DQUOTE
 *   non-escaped = *TEXTDATA              ; any byte but COMMA, DQUOTE, CR, LF
 *   line-break = CRLF / LF / CR          ; RFC 4180 says CRLF; exports use all three
 *
 * Beyond the RFC: empty lines are skipped, a UTF-8 BOM at the very start is skipped. Strict
 * where the RFC is: a quote in an unquoted field or text after a closing quote is an error.
 *
 * Ownership: the parser owns its record storage (allocated on first use, released by
 * csv_parser_deinit()); a returned record points into it and is valid until the next call. */
#ifndef MT_PROTO_CSV_H
#define MT_PROTO_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/limits.h"

struct csv_record {
	size_t field_count;
	const char *fields[MT_CSV_FIELDS_MAX]; /* NUL-terminated; may also contain NUL bytes */
	size_t lengths[MT_CSV_FIELDS_MAX];
	unsigned line; /* 1-based line where the record starts */
};

enum csv_state {
	CSV_RECORD_START,
	CSV_FIELD_START,
	CSV_UNQUOTED,
	CSV_QUOTED,
	CSV_QUOTE, /* a '"' inside a quoted field: a closing quote or the first of "" */
	CSV_ERROR,
};

struct csv_parser {
	/* private */
	enum csv_state state;
	char *storage; /* MT_CSV_FIELDS_MAX fields of up to MT_CSV_FIELD_MAX bytes + NUL each */
	size_t used;   /* bytes of storage used by the record being built */
	size_t field_count;
	size_t offsets[MT_CSV_FIELDS_MAX];
	size_t lengths[MT_CSV_FIELDS_MAX];
	unsigned line;        /* line of the next byte */
	unsigned record_line; /* line where the record being built started */
	unsigned quote_line;  /* line of the open quote, for "unterminated" */
	unsigned bom_seen;    /* BOM bytes matched at the very start (0..3) */
	bool started;         /* past the place where a BOM may be */
	bool last_cr;         /* the previous byte was a CR: a following LF ends nothing */
	bool emitted;         /* a record was returned: reset storage on the next call */
	char error[96];
};

void csv_parser_init(struct csv_parser *parser);
void csv_parser_deinit(struct csv_parser *parser);
/* 1 with *record_r (valid until the next call), having used *consumed_r bytes; 0 when all
 * `len` bytes were used and more are needed, or at the end (eof) when no record is left; -1 on
 * a format error with *error_r ("line 7: unterminated quoted field", "line 3: text after a
 * closing quote", "line 2: more than 16 fields", "line 4: field longer than 4096 bytes");
 * after an error every call fails. At the end of input, call with eof=true (any len) until it
 * returns 0: the last record may lack its line break. */
int csv_parse(struct csv_parser *parser, const char *data, size_t len, bool eof, size_t *consumed_r,
              struct csv_record *record_r, const char **error_r);

#endif
