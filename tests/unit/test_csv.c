#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "proto/csv.h"

#include <stdio.h>
#include <string.h>

/* Parses `input` split at the given cut points into a printable dump of the records
 * ("3:[a|b]\n" per record) or "ERR <message>". */
static void dump(const char *input, size_t len, const size_t *cuts, size_t cut_count,
                 struct mt_buf *out)
{
	struct csv_parser parser;
	csv_parser_init(&parser);
	size_t start = 0;
	for (size_t c = 0; c <= cut_count; c++) {
		size_t end = c < cut_count ? cuts[c] : len;
		bool eof = c == cut_count;
		size_t pos = start;
		for (;;) {
			struct csv_record record;
			size_t consumed = 0;
			const char *error = NULL;
			int ret = csv_parse(&parser, input + pos, end - pos, eof, &consumed,
			                    &record, &error);
			assert_true(consumed <= end - pos);
			pos += consumed;
			if (ret < 0) {
				mt_buf_printf(out, "ERR %s", error);
				csv_parser_deinit(&parser);
				return;
			}
			if (ret == 0) {
				assert_int_equal(pos, end);
				break;
			}
			mt_buf_printf(out, "%u:[", record.line);
			for (size_t i = 0; i < record.field_count; i++) {
				assert_int_equal(strlen(record.fields[i]), record.lengths[i]);
				mt_buf_printf(out, "%s%s", i > 0 ? "|" : "", record.fields[i]);
			}
			mt_buf_append_str(out, "]\n");
		}
		start = end;
	}
	csv_parser_deinit(&parser);
}

static void check(const char *input, const char *expected)
{
	struct mt_buf out;
	mt_buf_init(&out, 1 << 20);
	dump(input, strlen(input), NULL, 0, &out);
	assert_string_equal(out.data != NULL ? out.data : "", expected);

	/* every split point, and byte by byte, must give the same result */
	size_t len = strlen(input);
	for (size_t cut = 0; cut <= len; cut++) {
		struct mt_buf split;
		mt_buf_init(&split, 1 << 20);
		dump(input, len, &cut, 1, &split);
		assert_string_equal(split.data != NULL ? split.data : "", expected);
		mt_buf_free(&split);
	}
	size_t cuts[512];
	assert_true(len < 512);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	struct mt_buf bytes;
	mt_buf_init(&bytes, 1 << 20);
	dump(input, len, cuts, len, &bytes);
	assert_string_equal(bytes.data != NULL ? bytes.data : "", expected);
	mt_buf_free(&bytes);
	mt_buf_free(&out);
}

static void test_plain(void **state)
{
	(void)state;
	check("kind,name,emails\napplicant,Jack,jack@x.com\n",
	      "1:[kind|name|emails]\n2:[applicant|Jack|jack@x.com]\n");
	check("a,b\r\nc,d\r\n", "1:[a|b]\n2:[c|d]\n");
	check("a,b\rc,d", "1:[a|b]\n2:[c|d]\n");
	check("a,b", "1:[a|b]\n");
	check("a,", "1:[a|]\n");
	check(",", "1:[|]\n");
	check("a,\n", "1:[a|]\n");
	check("", "");
	check("\n\n", "");
	check("a\n\n\r\n\nb\n", "1:[a]\n5:[b]\n");
	check(" a , b ", "1:[ a | b ]\n");
}

static void test_quoting(void **state)
{
	(void)state;
	check("\"a,b\",\"c\"\"d\"\n", "1:[a,b|c\"d]\n");
	check("\"\"\n", "1:[]\n");
	check("\"\",\"\"", "1:[|]\n");
	check("x,\"line1\nline2\r\nline3\",y\nnext\n", "1:[x|line1\nline2\r\nline3|y]\n4:[next]\n");
	check("\"a\"\r\n\"b\"", "1:[a]\n2:[b]\n");
	check("contact,\"Smith, Jack\",\"j@x.com;jack@y.com\"\n",
	      "1:[contact|Smith, Jack|j@x.com;jack@y.com]\n");
}

static void test_bom(void **state)
{
	(void)state;
	check("\xef\xbb\xbfkind,name\n", "1:[kind|name]\n");
	check("\xef\xbb\xbf", "");
	check("\xef\xbb,x\n", "1:[\xef\xbb|x]\n");
	check("\xef", "1:[\xef]\n");
	check("a\n\xef\xbb\xbf", "1:[a]\n2:[\xef\xbb\xbf]\n");
}

static void test_errors(void **state)
{
	(void)state;
	check("a\nb\n\"open\nstill\n", "1:[a]\n2:[b]\nERR line 3: unterminated quoted field");
	check("a\nb\n\"x\"y\n", "1:[a]\n2:[b]\nERR line 3: text after a closing quote");
	check("a\nb\"c\n", "1:[a]\nERR line 2: quote in an unquoted field");
	check("\"a\" ,b\n", "ERR line 1: text after a closing quote");
	check("h\n1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,"
	      "17\n",
	      "1:[h]\n2:[1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16]\nERR line 3: more than 16 fields");
	/* the line counter keeps counting through quoted line breaks */
	check("\"a\nb\"\n\"c\"x\n", "1:[a\nb]\nERR line 3: text after a closing quote");
}

static void test_field_cap(void **state)
{
	(void)state;
	static char input[MT_CSV_FIELD_MAX + 64];
	memset(input, 'x', MT_CSV_FIELD_MAX);
	strcpy(input + MT_CSV_FIELD_MAX, "\n");
	struct mt_buf expected;
	mt_buf_init(&expected, 1 << 20);
	mt_buf_printf(&expected, "1:[%.*s]\n", MT_CSV_FIELD_MAX, input);
	struct mt_buf out;
	mt_buf_init(&out, 1 << 20);
	dump(input, strlen(input), NULL, 0, &out);
	assert_string_equal(out.data, expected.data);
	mt_buf_free(&expected);
	mt_buf_reset(&out);

	const char *head = "a\nb\nc\n\"";
	size_t hl = strlen(head);
	memcpy(input, head, hl);
	memset(input + hl, 'y', MT_CSV_FIELD_MAX + 1);
	strcpy(input + hl + MT_CSV_FIELD_MAX + 1, "\"\n");
	dump(input, strlen(input), NULL, 0, &out);
	assert_string_equal(out.data,
	                    "1:[a]\n2:[b]\n3:[c]\nERR line 4: field longer than 4096 bytes");
	mt_buf_free(&out);
}

static void test_error_sticks(void **state)
{
	(void)state;
	struct csv_parser parser;
	csv_parser_init(&parser);
	struct csv_record record;
	size_t consumed;
	const char *error = NULL;
	assert_int_equal(csv_parse(&parser, "a\"\n", 3, false, &consumed, &record, &error), -1);
	error = NULL;
	assert_int_equal(csv_parse(&parser, "b\n", 2, true, &consumed, &record, &error), -1);
	assert_string_equal(error, "line 1: quote in an unquoted field");
	csv_parser_deinit(&parser);
	csv_parser_deinit(&parser);
}

static void test_embedded_nul(void **state)
{
	(void)state;
	struct csv_parser parser;
	csv_parser_init(&parser);
	struct csv_record record;
	size_t consumed;
	const char *error = NULL;
	assert_int_equal(csv_parse(&parser, "a\0b,c\n", 6, true, &consumed, &record, &error), 1);
	assert_int_equal(record.field_count, 2);
	assert_int_equal(record.lengths[0], 3);
	assert_memory_equal(record.fields[0], "a\0b", 4);
	assert_int_equal(consumed, 6);
	assert_int_equal(csv_parse(&parser, "", 0, true, &consumed, &record, &error), 0);
	csv_parser_deinit(&parser);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain),        cmocka_unit_test(test_quoting),
	    cmocka_unit_test(test_bom),          cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_field_cap),    cmocka_unit_test(test_error_sticks),
	    cmocka_unit_test(test_embedded_nul),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
