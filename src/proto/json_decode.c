#include "proto/json_decode.h"

#include "lib/limits.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Error messages end up in JSON replies and logs; jansson quotes input bytes in its messages, so
 * anything outside printable ASCII is replaced to keep the message valid UTF-8 and one line. */
static void sanitize(char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x7f)
			*s = '?';
	}
}

static void set_error(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t error_size, const char *fmt, ...)
{
	if (error == NULL || error_size == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
	sanitize(error);
}

static void field_error(struct json_decode_error *err, const char *code, const char *field,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void field_error(struct json_decode_error *err, const char *code, const char *field,
                        const char *fmt, ...)
{
	err->code = code;
	/* A field name may be client text (an unknown key): capped like the message. */
	snprintf(err->field, sizeof(err->field), "%.64s", field != NULL ? field : "");
	sanitize(err->field);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	sanitize(err->message);
}

/* jansson's own nesting limit is 2048 and it recurses for each level, and it spends ~250 bytes
 * on every value (31 MiB of "[{},{},...]" grew to 2.5 GB): counting brackets and separators
 * outside strings first refuses deep or amplifying input before any allocation. A value is
 * counted at each '[', '{' and ',' (at least one per value but the first, at most two: an object
 * in an array counts twice). Malformed input is left for jansson to describe. Returns the
 * reason, or NULL. */
static const char *over_caps(const char *body, size_t len, size_t values_max, char *why,
                             size_t why_size)
{
	int depth = 0;
	size_t values = 1;
	bool in_string = false, escaped = false;
	for (size_t i = 0; i < len; i++) {
		char c = body[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"') {
			in_string = true;
		} else if (c == '{' || c == '[') {
			if (++depth > MT_JSON_DEPTH_MAX)
				return "nested deeper than " MT_STRINGIFY(
				    MT_JSON_DEPTH_MAX) " levels";
			values++;
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (c == ',') {
			values++;
		}
		if (values > values_max) {
			snprintf(why, why_size, "more than %zu values", values_max);
			return why;
		}
	}
	return NULL;
}

json_t *json_decode_body(const char *body, size_t len, char *error, size_t error_size)
{
	return json_decode_body_max(body, len, MT_JSON_VALUES_MAX, error, error_size);
}

json_t *json_decode_body_max(const char *body, size_t len, size_t values_max, char *error,
                             size_t error_size)
{
	if (body == NULL)
		len = 0;
	char reason[64];
	const char *why = len > 0 ? over_caps(body, len, values_max, reason, sizeof(reason)) : NULL;
	if (why != NULL) {
		set_error(error, error_size, "invalid JSON: %s", why);
		return NULL;
	}
	json_error_t jerr;
	/* Without JSON_DECODE_ANY the top level must be an object or array; without
	 * JSON_DISABLE_EOF_CHECK trailing data is an error; without JSON_ALLOW_NUL "\u0000" is. */
	json_t *root = json_loadb(len > 0 ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		set_error(error, error_size, "invalid JSON at line %d column %d: %s", jerr.line,
		          jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		set_error(error, error_size, "invalid JSON: the body must be an object");
		return NULL;
	}
	return root;
}

static const char *type_name(enum json_field_type type)
{
	switch (type) {
	case JSON_FIELD_STRING:
		return "a string";
	case JSON_FIELD_INT:
		return "an integer";
	case JSON_FIELD_BOOL:
		return "a boolean";
	case JSON_FIELD_STRING_ARRAY:
		return "an array of strings";
	case JSON_FIELD_OBJECT:
		return "an object";
	case JSON_FIELD_ARRAY:
		return "an array";
	}
	return "a value";
}

static int check_string(const json_t *value, const struct json_field *f, const char *what,
                        struct json_decode_error *err)
{
	size_t max = f->max_len > 0 ? f->max_len : MT_JSON_STRING_MAX;
	size_t len = json_string_length(value);
	if (len > max) {
		field_error(err, "too_long", f->name, "field '%s': %s longer than %zu bytes",
		            f->name, what, max);
		return -1;
	}
	const char *s = json_string_value(value);
	/* JSON_ALLOW_NUL is off, so a value built by our decoder has no NUL; one built by hand
	 * might, and a NUL would silently cut a header value short. */
	if (memchr(s, '\0', len) != NULL) {
		field_error(err, "invalid_value", f->name, "field '%s': %s contains NUL", f->name,
		            what);
		return -1;
	}
	if (f->single_line && (memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL)) {
		field_error(err, "invalid_value", f->name,
		            "field '%s': %s must not contain CR or LF", f->name, what);
		return -1;
	}
	return 0;
}

static int check_items(const json_t *value, const struct json_field *f,
                       struct json_decode_error *err)
{
	size_t max = f->max_items > 0 ? f->max_items : MT_JSON_ARRAY_ITEMS_MAX;
	if (json_array_size(value) > max) {
		field_error(err, "too_many_items", f->name, "field '%s': more than %zu items",
		            f->name, max);
		return -1;
	}
	return 0;
}

static int check_value(const json_t *value, const struct json_field *f,
                       struct json_decode_error *err)
{
	switch (f->type) {
	case JSON_FIELD_STRING:
		if (!json_is_string(value))
			break;
		return check_string(value, f, "value", err);
	case JSON_FIELD_INT:
		if (!json_is_integer(value))
			break;
		if (f->min < f->max) {
			json_int_t n = json_integer_value(value);
			if (n < f->min || n > f->max) {
				field_error(err, "out_of_range", f->name,
				            "field '%s': must be between %" PRId64 " and %" PRId64,
				            f->name, f->min, f->max);
				return -1;
			}
		}
		return 0;
	case JSON_FIELD_BOOL:
		if (!json_is_boolean(value))
			break;
		return 0;
	case JSON_FIELD_STRING_ARRAY: {
		if (!json_is_array(value))
			break;
		if (check_items(value, f, err) < 0)
			return -1;
		size_t i;
		json_t *item;
		json_array_foreach(value, i, item)
		{
			if (!json_is_string(item)) {
				field_error(err, "invalid_type", f->name,
				            "field '%s': item %zu is not a string", f->name, i);
				return -1;
			}
			char what[40];
			snprintf(what, sizeof(what), "item %zu", i);
			if (check_string(item, f, what, err) < 0)
				return -1;
		}
		return 0;
	}
	case JSON_FIELD_OBJECT:
		if (!json_is_object(value))
			break;
		return 0;
	case JSON_FIELD_ARRAY:
		if (!json_is_array(value))
			break;
		return check_items(value, f, err);
	}
	field_error(err, "invalid_type", f->name, "field '%s': expected %s", f->name,
	            type_name(f->type));
	return -1;
}

static void store(json_t *value, const struct json_field *f)
{
	if (f->out == NULL)
		return;
	switch (f->type) {
	case JSON_FIELD_STRING:
		*(const char **)f->out = json_string_value(value);
		break;
	case JSON_FIELD_INT:
		*(int64_t *)f->out = (int64_t)json_integer_value(value);
		break;
	case JSON_FIELD_BOOL:
		*(bool *)f->out = json_is_true(value);
		break;
	case JSON_FIELD_STRING_ARRAY:
	case JSON_FIELD_OBJECT:
	case JSON_FIELD_ARRAY:
		*(json_t **)f->out = value;
		break;
	}
}

/* A missing field and a null one are the same to callers that allow null. */
static json_t *given(const json_t *object, const struct json_field *f)
{
	json_t *value = json_object_get(object, f->name);
	if (value != NULL && json_is_null(value) && f->nullable)
		return NULL;
	return value;
}

int json_decode_fields_at(const json_t *object, const struct json_field *fields, size_t count,
                          struct json_decode_error *err)
{
	err->code = "";
	err->field[0] = '\0';
	err->message[0] = '\0';
	if (!json_is_object(object)) {
		field_error(err, "invalid_json", NULL, "expected a JSON object");
		return -1;
	}
	const char *key;
	json_t *value;
	json_object_foreach((json_t *)object, key, value)
	{
		bool known = false;
		for (size_t i = 0; i < count && !known; i++)
			known = strcmp(fields[i].name, key) == 0;
		if (!known) {
			/* The key is client text: cap it so the message stays short. */
			field_error(err, "unknown_field", key, "field '%.64s': unknown field", key);
			return -1;
		}
	}
	for (size_t i = 0; i < count; i++) {
		const struct json_field *f = &fields[i];
		value = given(object, f);
		if (value == NULL) {
			if (f->required) {
				field_error(err, "missing_field", f->name, "field '%s': required",
				            f->name);
				return -1;
			}
			continue;
		}
		if (check_value(value, f, err) < 0)
			return -1;
	}
	/* Written only now, so a refused body leaves the caller's defaults alone. */
	for (size_t i = 0; i < count; i++) {
		const struct json_field *f = &fields[i];
		value = given(object, f);
		if (f->present != NULL)
			*f->present = value != NULL;
		if (value != NULL)
			store(value, f);
	}
	return 0;
}

int json_decode_fields(const json_t *object, const struct json_field *fields, size_t count,
                       char *error, size_t error_size)
{
	struct json_decode_error err;
	int rc = json_decode_fields_at(object, fields, count, &err);
	if (rc < 0 && error != NULL && error_size > 0)
		snprintf(error, error_size, "%s", err.message);
	return rc;
}
