#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/backoff.h"
#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/str.h"
#include "lib/failure.h"
#include "lib/log.h"
#include "lib/secret.h"

#include <string.h>

static void test_buf_cap(void **state)
{
	(void)state;
	struct mt_buf buf;
	mt_buf_init(&buf, 8);
	assert_int_equal(mt_buf_append_str(&buf, "12345678"), 0);
	assert_int_equal(mt_buf_append_str(&buf, "9"), -1);
	assert_int_equal(buf.len, 8);
	mt_buf_consume(&buf, 3);
	assert_string_equal(buf.data, "45678");
	assert_int_equal(mt_buf_printf(&buf, "%d", 12), 0);
	assert_string_equal(buf.data, "4567812");
	mt_buf_free(&buf);
}

static void test_log_escapes(void **state)
{
	(void)state;
	char line[256];
	struct mt_log_field fields[] = {MT_KV("reply", "550 bad\r\nx=\"y\""), MT_KV("n", "3")};
	mt_log_format(line, sizeof(line), MT_LOG_WARN, "smtp.reply", fields, 2);
	assert_non_null(
	    strstr(line, "level=warn event=smtp.reply reply=\"550 bad\\r\\nx=\\\"y\\\"\" n=3"));
}

static void test_backoff(void **state)
{
	(void)state;
	struct mt_backoff policy = MT_BACKOFF_MAIL;
	assert_int_equal(mt_backoff_delay(&policy, 1), 60);
	assert_int_equal(mt_backoff_delay(&policy, 2), 240);
	assert_int_equal(mt_backoff_delay(&policy, 100), 3600);
	int64_t next;
	assert_int_equal(mt_backoff_next(&policy, 0, 1000, 3, &next), 0);
	assert_int_equal(next, 1000 + 540);
	assert_int_equal(mt_backoff_next(&policy, 0, 24 * 3600 - 10, 5, &next), -1);
}

static void test_base64(void **state)
{
	(void)state;
	struct mt_buf buf;
	mt_buf_init(&buf, 1024);
	assert_int_equal(mt_base64_encode(&buf, "\0u\0p", 4), 0);
	assert_string_equal(buf.data, "AHUAcA==");
	struct mt_buf dec;
	mt_buf_init(&dec, 1024);
	assert_int_equal(mt_base64_decode(&dec, buf.data, buf.len), 0);
	assert_int_equal(dec.len, 4);
	assert_memory_equal(dec.data, "\0u\0p", 4);
	mt_buf_reset(&dec);
	assert_int_equal(mt_base64_decode(&dec, "a b", 3), -1);
	mt_buf_free(&buf);
	mt_buf_free(&dec);
}

static void test_secret_and_classes(void **state)
{
	(void)state;
	struct mt_secret *secret = mt_secret_new("hunter2", 7);
	assert_non_null(secret);
	assert_int_equal(mt_secret_len(secret), 7);
	mt_secret_free(&secret);
	assert_null(secret);
	assert_string_equal(mt_class_name(MT_CLASS_QUOTA), "quota");
	assert_int_equal(mt_class_exit_code(MT_CLASS_CONN), 10);
	assert_int_equal(mt_class_exit_code(MT_CLASS_INTERNAL), 17);
}

static void test_utf8(void **state)
{
	(void)state;
	assert_true(mt_utf8_valid("", 0));
	assert_true(mt_utf8_valid("plain", 5));
	assert_true(mt_utf8_valid("\xc3\xa9\xe6\x97\xa5\xf0\x9f\x8e\x89", 9)); /* é 日 🎉 */
	assert_true(mt_utf8_valid("a\0b", 3)); /* NUL is UTF-8; callers that mind check it */
	assert_false(mt_utf8_valid("\xff", 1));
	assert_false(mt_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
	assert_false(mt_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
	assert_false(mt_utf8_valid("\xed\xa0\x80", 3));     /* surrogate U+D800 */
	assert_false(mt_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
	assert_false(mt_utf8_valid("\xc3", 1));             /* cut short */
	assert_false(mt_utf8_valid("\xc3\x28", 2));         /* bad continuation */
	assert_int_equal(mt_utf8_sequence("\xf0\x9f\x8e\x89x", 5), 4);
	assert_int_equal(mt_utf8_sequence("\x80", 1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_cap), cmocka_unit_test(test_log_escapes),
	    cmocka_unit_test(test_backoff), cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_base64),  cmocka_unit_test(test_secret_and_classes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
