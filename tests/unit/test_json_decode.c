#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/limits.h"
#include "proto/json_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[MT_JSON_ERROR_MAX];

static json_t *decode(const char *text)
{
	err[0] = '\0';
	return json_decode_body(text, strlen(text), err, sizeof(err));
}

static void body_valid(void **state)
{
	(void)state;
	json_t *j = decode("{\"a\": 1, \"b\": [true, null], \"c\": {\"d\": \"\\u00e9\"}}");
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
	json_decref(j);
	j = decode("  {}\r\n");
	assert_non_null(j);
	json_decref(j);
}

static void body_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "   ",
	    "[]",
	    "[1,2]",
	    "\"text\"",
	    "42",
	    "null",
	    "{\"a\":1,\"a\":2}",
	    "{\"a\":1} {}",
	    "{\"a\":1} x",
	    "{\"a\":\"\\u0000\"}",
	    "{\"a\":1,}",
	    "{'a':1}",
	    "{\"a\":\"\xff\"}",
	    "{\"a\":\"\xc3\"}",
	    "{\"a\":\"\xed\xa0\x80\"}", /* UTF-16 surrogate encoded in UTF-8 */
	    "{\"a\":99999999999999999999999}",
	    "{\"a\":NaN}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = decode(bad[i]);
		if (j != NULL)
			fail_msg("accepted: %s", bad[i]);
		assert_true(strlen(err) > 0);
		for (const char *p = err; *p != '\0'; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
	}
	json_t *j = decode("{\"a\":1,\"a\":2}");
	assert_null(j);
	assert_non_null(strstr(err, "duplicate"));
	assert_non_null(strstr(err, "line 1"));
}

static void body_embedded_nul(void **state)
{
	(void)state;
	static const char text[] = "{\"a\":1}\0{}";
	assert_null(json_decode_body(text, sizeof(text) - 1, err, sizeof(err)));
	assert_null(json_decode_body(NULL, 0, err, sizeof(err)));
}

/* Values are counted before jansson builds a tree, at each '[', '{' and ',' (so an object in
 * an array counts twice): {"a":[{},{},...]} with half the cap in items decodes, with the cap in
 * items it is refused before an allocation per value. */
static void body_values(void **state)
{
	(void)state;
	const size_t counts[] = {MT_JSON_VALUES_MAX / 2 - 10, MT_JSON_VALUES_MAX};
	for (size_t k = 0; k < 2; k++) {
		size_t items = counts[k];
		char *text = malloc(16 + items * 3);
		assert_non_null(text);
		size_t n = (size_t)sprintf(text, "{\"a\":[");
		for (size_t i = 0; i < items; i++)
			n += (size_t)sprintf(text + n, i ? ",{}" : "{}");
		n += (size_t)sprintf(text + n, "]}");
		json_t *j = json_decode_body(text, n, err, sizeof(err));
		if (k == 0) {
			assert_non_null(j);
			json_decref(j);
		} else {
			assert_null(j);
			assert_non_null(strstr(err, "values"));
		}
		free(text);
	}
	/* Commas inside strings do not count. */
	json_t *j = decode("{\"a\":\",,,,,,,,,,\"}");
	assert_non_null(j);
	json_decref(j);
}

static void body_depth(void **state)
{
	(void)state;
	char text[256];
	/* MT_JSON_DEPTH_MAX levels are fine, one more is not. */
	for (int depth = MT_JSON_DEPTH_MAX; depth <= MT_JSON_DEPTH_MAX + 1; depth++) {
		size_t n = 0;
		text[n++] = '{';
		for (int i = 1; i < depth; i++) {
			memcpy(text + n, "\"a\":{", 5);
			n += 5;
		}
		for (int i = 1; i < depth; i++)
			text[n++] = '}';
		text[n++] = '}';
		text[n] = '\0';
		json_t *j = decode(text);
		if (depth <= MT_JSON_DEPTH_MAX) {
			assert_non_null(j);
			json_decref(j);
		} else {
			assert_null(j);
			assert_non_null(strstr(err, "deeper"));
		}
	}
	/* Brackets inside strings do not count. */
	json_t *j = decode("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[\"}");
	assert_non_null(j);
	json_decref(j);
	/* 100000 levels must not recurse. */
	size_t big = 200000;
	char *deep = malloc(big + 1);
	memset(deep, '[', big);
	deep[big] = '\0';
	assert_null(json_decode_body(deep, big, err, sizeof(err)));
	free(deep);
}

struct smtp_body {
	const char *host, *security, *from;
	int64_t port;
	bool accept;
	bool has_port;
	json_t *limits;
	json_t *aliases;
};

static int decode_smtp(json_t *j, struct smtp_body *b)
{
	const struct json_field fields[] = {
	    {.name = "host",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = 253,
	     .single_line = true,
	     .out = &b->host},
	    {.name = "port",
	     .type = JSON_FIELD_INT,
	     .required = true,
	     .min = 1,
	     .max = 65535,
	     .out = &b->port,
	     .present = &b->has_port},
	    {.name = "security", .type = JSON_FIELD_STRING, .nullable = true, .out = &b->security},
	    {.name = "from", .type = JSON_FIELD_STRING, .single_line = true, .out = &b->from},
	    {.name = "accept_disclaimer", .type = JSON_FIELD_BOOL, .out = &b->accept},
	    {.name = "limits", .type = JSON_FIELD_ARRAY, .max_items = 3, .out = &b->limits},
	    {.name = "aliases",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_items = 2,
	     .max_len = 10,
	     .single_line = true,
	     .out = &b->aliases},
	};
	err[0] = '\0';
	return json_decode_fields(j, fields, sizeof(fields) / sizeof(fields[0]), err, sizeof(err));
}

static int decode_smtp_text(const char *text, struct smtp_body *b)
{
	json_t *j = decode(text);
	assert_non_null(j);
	int ret = decode_smtp(j, b);
	json_decref(j);
	return ret;
}

static void fields_ok(void **state)
{
	(void)state;
	struct smtp_body b = {.security = "starttls", .port = 587};
	json_t *j = decode("{\"host\":\"smtp.example.com\",\"port\":465,\"security\":null,"
	                   "\"accept_disclaimer\":true,\"limits\":[{\"limit\":10}],"
	                   "\"aliases\":[\"a@x\",\"b@x\"]}");
	assert_non_null(j);
	assert_int_equal(decode_smtp(j, &b), 0);
	assert_string_equal(b.host, "smtp.example.com");
	assert_int_equal(b.port, 465);
	assert_true(b.has_port);
	assert_string_equal(b.security, "starttls"); /* null = absent: default kept */
	assert_null(b.from);
	assert_true(b.accept);
	assert_int_equal(json_array_size(b.limits), 1);
	assert_int_equal(json_array_size(b.aliases), 2);
	json_decref(j);
}

static void fields_errors(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		const char *message;
	} cases[] = {
	    {"{\"port\":25}", "field 'host': required"},
	    {"{\"host\":\"h\"}", "field 'port': required"},
	    {"{\"host\":\"h\",\"port\":\"25\"}", "field 'port': expected an integer"},
	    {"{\"host\":\"h\",\"port\":25.0}", "field 'port': expected an integer"},
	    {"{\"host\":\"h\",\"port\":0}", "field 'port': must be between 1 and 65535"},
	    {"{\"host\":\"h\",\"port\":65536}", "field 'port': must be between 1 and 65535"},
	    {"{\"host\":null,\"port\":25}", "field 'host': expected a string"},
	    {"{\"host\":\"h\",\"port\":25,\"extra\":1}", "field 'extra': unknown field"},
	    {"{\"host\":\"h\\r\\nX: y\",\"port\":25}",
	     "field 'host': value must not contain CR or LF"},
	    {"{\"host\":\"h\",\"port\":25,\"from\":\"a\\nb\"}",
	     "field 'from': value must not contain CR or LF"},
	    {"{\"host\":\"h\",\"port\":25,\"accept_disclaimer\":1}",
	     "field 'accept_disclaimer': expected a boolean"},
	    {"{\"host\":\"h\",\"port\":25,\"limits\":{}}", "field 'limits': expected an array"},
	    {"{\"host\":\"h\",\"port\":25,\"limits\":[1,2,3,4]}",
	     "field 'limits': more than 3 items"},
	    {"{\"host\":\"h\",\"port\":25,\"aliases\":[\"a\",1]}",
	     "field 'aliases': item 1 is not a string"},
	    {"{\"host\":\"h\",\"port\":25,\"aliases\":[\"a\",\"b\",\"c\"]}",
	     "field 'aliases': more than 2 items"},
	    {"{\"host\":\"h\",\"port\":25,\"aliases\":[\"12345678901\"]}",
	     "field 'aliases': item 0 longer than 10 bytes"},
	    {"{\"host\":\"h\",\"port\":25,\"aliases\":[\"a\\rb\"]}",
	     "field 'aliases': item 0 must not contain CR or LF"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_body b = {.port = 7};
		if (decode_smtp_text(cases[i].body, &b) != -1)
			fail_msg("accepted: %s", cases[i].body);
		assert_string_equal(err, cases[i].message);
		assert_int_equal(b.port, 7); /* nothing written on error */
		assert_null(b.host);
	}
}

static void fields_long_string(void **state)
{
	(void)state;
	char text[600];
	snprintf(text, sizeof(text), "{\"host\":\"%0254d\",\"port\":25}", 0);
	struct smtp_body b = {0};
	assert_int_equal(decode_smtp_text(text, &b), -1);
	assert_string_equal(err, "field 'host': value longer than 253 bytes");
	snprintf(text, sizeof(text), "{\"host\":\"%0253d\",\"port\":25}", 0);
	assert_int_equal(decode_smtp_text(text, &b), 0);

	/* max_len 0 = MT_JSON_STRING_MAX */
	size_t n = MT_JSON_STRING_MAX + 1;
	char *big = malloc(n + 64);
	int len = sprintf(big, "{\"host\":\"h\",\"port\":25,\"security\":\"");
	memset(big + len, 'x', n);
	strcpy(big + len + n, "\"}");
	assert_int_equal(decode_smtp_text(big, &b), -1);
	assert_non_null(strstr(err, "field 'security'"));
	free(big);
}

static void fields_unknown_name_sanitized(void **state)
{
	(void)state;
	struct smtp_body b = {0};
	assert_int_equal(decode_smtp_text("{\"\\u00e9\\n\":1}", &b), -1);
	assert_string_equal(err, "field '??"
	                         "?': unknown field");
}

static void fields_default_array_cap(void **state)
{
	(void)state;
	const struct json_field fields[] = {{.name = "to", .type = JSON_FIELD_STRING_ARRAY}};
	json_t *j = json_pack("{s:[]}", "to");
	json_t *to = json_object_get(j, "to");
	for (int i = 0; i < MT_JSON_ARRAY_ITEMS_MAX; i++)
		json_array_append_new(to, json_string("a"));
	assert_int_equal(json_decode_fields(j, fields, 1, err, sizeof(err)), 0);
	json_array_append_new(to, json_string("a"));
	assert_int_equal(json_decode_fields(j, fields, 1, err, sizeof(err)), -1);
	json_decref(j);
	/* A hand-built string with a NUL is refused even though the decoder never makes one. */
	const struct json_field one[] = {{.name = "s", .type = JSON_FIELD_STRING}};
	j = json_object();
	json_object_set_new(j, "s", json_stringn("a\0b", 3));
	assert_int_equal(json_decode_fields(j, one, 1, err, sizeof(err)), -1);
	json_decref(j);
	/* Not an object. */
	j = json_array();
	assert_int_equal(json_decode_fields(j, one, 1, err, sizeof(err)), -1);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(body_valid),
	    cmocka_unit_test(body_rejects),
	    cmocka_unit_test(body_embedded_nul),
	    cmocka_unit_test(body_depth),
	    cmocka_unit_test(body_values),
	    cmocka_unit_test(fields_ok),
	    cmocka_unit_test(fields_errors),
	    cmocka_unit_test(fields_long_string),
	    cmocka_unit_test(fields_unknown_name_sanitized),
	    cmocka_unit_test(fields_default_array_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
