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
#include "lib/limits.h"
#include "lib/random.h"
#include "lib/secret.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* A buffer sized for a known length is filled without moving: the HTTP server relies on it to
 * keep a large body's bytes from being copied again on the loop. */
static void test_buf_presize(void **state)
{
	(void)state;
	struct mt_buf buf;
	mt_buf_init(&buf, 1 << 20);
	assert_int_equal(mt_buf_presize(&buf, (1 << 20) + 1), -1);
	assert_int_equal(mt_buf_presize(&buf, 300000), 0);
	assert_int_equal(buf.cap, 300001);
	const char *start = buf.data;
	char chunk[1000];
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 300; i++)
		assert_int_equal(mt_buf_append(&buf, chunk, sizeof(chunk)), 0);
	assert_ptr_equal(buf.data, start);
	assert_int_equal(buf.cap, 300001);
	assert_int_equal(buf.len, 300000);
	assert_int_equal(buf.data[buf.len], '\0');
	assert_int_equal(mt_buf_presize(&buf, 10), -1); /* below what it holds */
	mt_buf_free(&buf);
}

/* Mail and HTTP dates in English whatever the locale; a time past the year 9999 is refused. */
static void test_date_format(void **state)
{
	(void)state;
	char date[MT_DATE_TEXT_MAX];
	assert_true(mt_date_format(1765000000, "+0000", date));
	assert_string_equal(date, "Sat, 06 Dec 2025 05:46:40 +0000");
	assert_true(mt_date_format(0, "GMT", date));
	assert_string_equal(date, "Thu, 01 Jan 1970 00:00:00 GMT");
	assert_false(mt_date_format(253402300800LL, "+0000", date)); /* 10000-01-01 */
	assert_string_equal(date, "");
	assert_string_equal(mt_month_names[11], "Dec");
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

/* Identifier randomness: no 8-byte draw repeats within a thread, across threads, or between a
 * parent and the child it forks after both had the same pool. */
#define DRAWS 4000

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void *draw_thread(void *arg)
{
	uint64_t *out = arg;
	for (int i = 0; i < DRAWS; i++)
		mt_random_id_bytes(&out[i], sizeof(out[i]));
	return NULL;
}

static void test_random_id_bytes(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	uint64_t *all = calloc(3 * DRAWS, sizeof(*all));
	assert_non_null(all);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, draw_thread, all + DRAWS), 0);
	draw_thread(all);
	assert_int_equal(pthread_join(t, NULL), 0);
	/* A draw larger than the pool comes straight from libsodium. */
	unsigned char big[MT_RANDOM_POOL_BYTES + 1] = {0};
	mt_random_id_bytes(big, sizeof(big));
	memcpy(&all[2 * DRAWS], big, sizeof(uint64_t));

	/* A child forked now must not hand out what the parent hands out next. */
	uint64_t first = 0;
	mt_random_id_bytes(&first, sizeof(first)); /* the pool is full of bytes both would share */
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t mine[8];
		for (int i = 0; i < 8; i++)
			mt_random_id_bytes(&mine[i], sizeof(mine[i]));
		_exit(write(fds[1], mine, sizeof(mine)) == (ssize_t)sizeof(mine) ? 0 : 1);
	}
	for (int i = 0; i < 8; i++)
		mt_random_id_bytes(&all[2 * DRAWS + 1 + i], sizeof(uint64_t));
	uint64_t child[8];
	assert_int_equal(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fds[0]);
	close(fds[1]);
	for (int i = 0; i < 8; i++)
		all[2 * DRAWS + 9 + i] = child[i];

	size_t n = 2 * DRAWS + 17;
	qsort(all, n, sizeof(*all), compare_u64);
	for (size_t i = 1; i < n; i++)
		assert_true(all[i] != all[i - 1]);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_cap),         cmocka_unit_test(test_buf_presize),
	    cmocka_unit_test(test_log_escapes),     cmocka_unit_test(test_date_format),
	    cmocka_unit_test(test_backoff),         cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_base64),          cmocka_unit_test(test_secret_and_classes),
	    cmocka_unit_test(test_random_id_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
