/* Strict decoding of JSON request bodies (DESIGN.md §2: duplicate keys, unknown fields and
 * anything a field table does not allow are refused with a message naming the field). Pure: no
 * I/O, no logging.
 *
 * Ownership: json_decode_body() returns a new reference the caller must json_decref().
 * json_decode_fields() only borrows: the strings and json_t pointers it writes point into
 * `object` and stay valid while `object` lives. Error messages go into the caller's buffer. */
#ifndef MT_PROTO_JSON_DECODE_H
#define MT_PROTO_JSON_DECODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a request body: rejects duplicate keys, depth > MT_JSON_DEPTH_MAX, a top level that is
 * not an object, trailing garbage, invalid UTF-8 and NUL in strings. NULL with a message in
 * `error` (e.g. "invalid JSON at line 1 column 7: ..."). */
json_t *json_decode_body(const char *body, size_t len, char *error, size_t error_size);
/* The same with another cap on the values than MT_JSON_VALUES_MAX: for a route whose body is
 * decoded off the loop and may list more (a campaign's recipients). */
json_t *json_decode_body_max(const char *body, size_t len, size_t values_max, char *error,
                             size_t error_size);

enum json_field_type {
	JSON_FIELD_STRING,
	JSON_FIELD_INT,
	JSON_FIELD_BOOL,
	JSON_FIELD_STRING_ARRAY,
	JSON_FIELD_OBJECT,
	JSON_FIELD_ARRAY
};

struct json_field {
	const char *name;
	enum json_field_type type;
	bool required;
	size_t max_len;   /* strings and array items: max bytes; 0 = MT_JSON_STRING_MAX */
	size_t max_items; /* arrays: 0 = MT_JSON_ARRAY_ITEMS_MAX */
	bool single_line; /* refuse CR or LF (anything that ends up in a header) */
	bool nullable;    /* JSON null accepted and reported as absent */
	int64_t min, max; /* JSON_FIELD_INT range when min < max */
	/* STRING: const char **; INT: int64_t *; BOOL: bool *; STRING_ARRAY, OBJECT, ARRAY:
	 * json_t ** (borrowed). Left untouched when the field is absent, so it can hold a default.
	 */
	void *out;
	bool *present; /* optional: set to whether the field was given (null counts as absent) */
};

/* Checks `object` against the table: unknown fields, missing required ones, wrong types,
 * over-long strings, too many items, CR/LF where single_line are errors. Outputs are written
 * only when the whole object is valid. Returns 0, or -1 with a message naming the field
 * ("field 'port': expected an integer"). */
int json_decode_fields(const json_t *object, const struct json_field *fields, size_t count,
                       char *error, size_t error_size);

/* The same, with the error's stable machine code (docs/api.md "Error codes": unknown_field,
 * missing_field, invalid_type, out_of_range, too_long, too_many_items, invalid_value,
 * invalid_json) and the field it is about ("" when none). */
struct json_decode_error {
	const char *code; /* static */
	char field[65];
	char message[256];
};
int json_decode_fields_at(const json_t *object, const struct json_field *fields, size_t count,
                          struct json_decode_error *err);

#endif
