#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "work/work.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct item {
	pthread_t loop_thread;
	atomic_bool ran_off_loop;
	bool done_on_loop;
	bool done;
	int *done_count;
	struct event_base *base;
	int stop_after;
	useconds_t sleep_us;
};

static bool run(void *arg)
{
	struct item *it = arg;
	if (it->sleep_us > 0)
		usleep(it->sleep_us);
	atomic_store(&it->ran_off_loop, !pthread_equal(pthread_self(), it->loop_thread));
	return true;
}

static void done(void *arg)
{
	struct item *it = arg;
	it->done_on_loop = pthread_equal(pthread_self(), it->loop_thread);
	it->done = true;
	if (++*it->done_count == it->stop_after && it->base != NULL)
		event_base_loopbreak(it->base);
}

/* Work runs on a worker thread, its `done` on the loop, each exactly once. */
static void test_run_and_done(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	const char *error;
	struct work_pool *pool = work_pool_new(base, 2, 100, &error);
	assert_non_null(pool);
	enum { N = 50 };
	struct item items[N];
	int done_count = 0;
	for (int i = 0; i < N; i++) {
		items[i] = (struct item){.loop_thread = pthread_self(),
		                         .done_count = &done_count,
		                         .base = base,
		                         .stop_after = N};
		assert_int_equal(work_submit(pool, run, done, &items[i]), 0);
	}
	struct timeval limit = {10, 0};
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	assert_int_equal(done_count, N);
	for (int i = 0; i < N; i++) {
		assert_true(atomic_load(&items[i].ran_off_loop));
		assert_true(items[i].done_on_loop);
	}
	assert_int_equal(work_pool_pending(pool), 0);
	work_pool_free(&pool);
	assert_null(pool);
	event_base_free(base);
}

/* The queue is capped: a full pool refuses (the API answers 503) until items finish. */
static void test_queue_cap(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	const char *error;
	struct work_pool *pool = work_pool_new(base, 1, 3, &error);
	assert_non_null(pool);
	int done_count = 0;
	struct item items[4];
	for (int i = 0; i < 4; i++)
		items[i] = (struct item){
		    .loop_thread = pthread_self(), .done_count = &done_count, .sleep_us = 20000};
	for (int i = 0; i < 3; i++)
		assert_int_equal(work_submit(pool, run, done, &items[i]), 0);
	assert_int_equal(work_submit(pool, run, done, &items[3]), -1);
	/* Freeing answers every accepted item, even those not run yet. */
	work_pool_free(&pool);
	assert_int_equal(done_count, 3);
	for (int i = 0; i < 3; i++)
		assert_true(items[i].done && items[i].done_on_loop);
	assert_false(items[3].done);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_run_and_done),
	    cmocka_unit_test(test_queue_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
