#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/smtp_data.h"

#include <string.h>

#define OUT_MAX (64 * 1024)

/* Stuffs `len` bytes given in pieces cut at the `ncuts` offsets, then finishes. */
static void stuff(const char *in, size_t len, const size_t *cuts, size_t ncuts, struct mt_buf *out)
{
	struct smtp_dot_writer writer;
	smtp_dot_writer_init(&writer);
	mt_buf_init(out, OUT_MAX);
	size_t start = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		assert_int_equal(smtp_dot_writer_write(&writer, out, in + start, end - start), 0);
		start = end;
	}
	assert_int_equal(smtp_dot_writer_finish(&writer, out), 0);
}

static const struct {
	const char *in;
	const char *out;
} cases[] = {
    {"", ".\r\n"},
    {"a", "a\r\n.\r\n"},
    {"a\r\n", "a\r\n.\r\n"},
    {".", "..\r\n.\r\n"},
    {".\r\n", "..\r\n.\r\n"},
    {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\r.\rb\r", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\r\r\n\n.", "a\r\n\r\n\r\n..\r\n.\r\n"},
    {"..x\r\n x.\r\n...", "...x\r\n x.\r\n....\r\n.\r\n"},
    {"\n", "\r\n.\r\n"},
    {"\r", "\r\n.\r\n"},
    {"\r\n\r\n", "\r\n\r\n.\r\n"},
    {"Subject: hi\r\n\r\n.\r\n.\r\nend", "Subject: hi\r\n\r\n..\r\n..\r\nend\r\n.\r\n"},
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mt_buf out;
		size_t len = strlen(cases[i].in);
		stuff(cases[i].in, len, NULL, 0, &out);
		assert_string_equal(out.data, cases[i].out);
		mt_buf_free(&out);
		/* two pieces cut at every offset */
		for (size_t cut = 0; cut <= len; cut++) {
			stuff(cases[i].in, len, &cut, 1, &out);
			assert_string_equal(out.data, cases[i].out);
			mt_buf_free(&out);
		}
		/* byte by byte */
		size_t cuts[64];
		assert_true(len < 64);
		for (size_t k = 0; k + 1 < len; k++)
			cuts[k] = k + 1;
		stuff(cases[i].in, len, cuts, len > 0 ? len - 1 : 0, &out);
		assert_string_equal(out.data, cases[i].out);
		mt_buf_free(&out);
	}
}

/* A longer body mixing every kind of line end: all two-piece splits equal the one-shot result. */
static void test_split_long(void **state)
{
	(void)state;
	const char *body = "From: a@example.com\r\nTo: b@example.com\n\n.hidden\r.\r\n..\r\n"
	                   "line\rwith\r\rcr\n\r\n.\n\r.\r\r\n.last";
	size_t len = strlen(body);
	struct mt_buf whole;
	stuff(body, len, NULL, 0, &whole);
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b += 7) {
			size_t cuts[2] = {a, b};
			struct mt_buf out;
			stuff(body, len, cuts, 2, &out);
			assert_int_equal(out.len, whole.len);
			assert_memory_equal(out.data, whole.data, whole.len);
			mt_buf_free(&out);
		}
	}
	mt_buf_free(&whole);
}

static void test_cap(void **state)
{
	(void)state;
	struct smtp_dot_writer writer;
	smtp_dot_writer_init(&writer);
	struct mt_buf out;
	mt_buf_init(&out, 8);
	assert_int_equal(smtp_dot_writer_write(&writer, &out, "abc\r", 4), 0);
	assert_string_equal(out.data, "abc");
	/* does not fit: nothing written, state kept, so the same chunk can be retried */
	assert_int_equal(smtp_dot_writer_write(&writer, &out, "\n.defgh", 7), -1);
	assert_string_equal(out.data, "abc");
	mt_buf_reset(&out);
	assert_int_equal(smtp_dot_writer_write(&writer, &out, "\n.defgh", 7), -1);
	assert_string_equal(out.data, "");
	assert_int_equal(smtp_dot_writer_write(&writer, &out, "\n.d", 3), 0);
	assert_string_equal(out.data, "\r\n..d");
	assert_int_equal(smtp_dot_writer_finish(&writer, &out), -1);
	assert_string_equal(out.data, "\r\n..d");
	mt_buf_reset(&out);
	assert_int_equal(smtp_dot_writer_finish(&writer, &out), 0);
	assert_string_equal(out.data, "\r\n.\r\n");
	mt_buf_free(&out);
}

static void test_8bit(void **state)
{
	(void)state;
	assert_false(smtp_data_has_8bit("plain ascii\r\n", 13));
	assert_true(smtp_data_has_8bit("caf\xc3\xa9", 5));
	assert_false(smtp_data_has_8bit("", 0));
	/* the block scan: one high byte at every offset of every length up to three blocks, at
	 * an unaligned start, and nothing read past the end */
	char buf[1 + 3 * 64];
	for (size_t len = 1; len <= 3 * 64; len++) {
		memset(buf, 'a', sizeof(buf));
		assert_false(smtp_data_has_8bit(buf + 1, len));
		if (len < 3 * 64) {
			buf[1 + len] = (char)0x80; /* just past the end: not seen */
			assert_false(smtp_data_has_8bit(buf + 1, len));
		}
		for (size_t at = 0; at < len; at++) {
			memset(buf, 'a', sizeof(buf));
			buf[1 + at] = (char)0xff;
			assert_true(smtp_data_has_8bit(buf + 1, len));
			buf[1 + at] = (char)0x80;
			assert_true(smtp_data_has_8bit(buf + 1, len));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_split_long),
	    cmocka_unit_test(test_cap),
	    cmocka_unit_test(test_8bit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
