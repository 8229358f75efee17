#include "work/work.h"

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/metrics.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

struct work_item {
	work_run_fn *run;
	work_done_fn *done;
	void *arg;
	struct work_item *next;
};

struct work_pool {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t ready; /* a queued item or stopping */
	struct work_item *queue_head, *queue_tail;
	struct work_item *finished; /* run, waiting for `done` on the loop (newest first) */
	size_t pending;             /* queued + running + finished, under the cap */
	size_t queue_max;
	bool stopping;
	pthread_t *threads;
	unsigned thread_count;
	int wake_fd;
	struct event *wake_ev;
};

static void *worker_main(void *arg)
{
	struct work_pool *pool = arg;
	/* Workers take the bulk work (MIME of tens of MiB, CSV, conversions) so that the loop
	 * stays quick; on a machine with few cores they would still take the loop's CPU time
	 * while it has requests to answer. A lower priority (Linux: per thread) gives the loop
	 * the core first; idle cores still run the workers at full speed. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), MT_WORK_NICE) != 0)
		mt_log(MT_LOG_DEBUG, "work.nice_failed", MT_KV("errno", strerror(errno)));
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->queue_head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->ready, &pool->lock);
		struct work_item *item = pool->queue_head;
		if (item == NULL)
			break; /* stopping and nothing left */
		pool->queue_head = item->next;
		if (pool->queue_head == NULL)
			pool->queue_tail = NULL;
		pthread_mutex_unlock(&pool->lock);
		bool wants_done = item->run(item->arg);
		pthread_mutex_lock(&pool->lock);
		if (!wants_done) {
			pool->pending--;
			free(item);
			continue;
		}
		bool was_empty = pool->finished == NULL;
		item->next = pool->finished;
		pool->finished = item;
		/* One wake-up while the loop has not taken the list yet is enough. */
		if (was_empty && pool->wake_fd >= 0) {
			uint64_t one = 1;
			while (write(pool->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
				;
		}
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Runs the `done` of everything finished, oldest first. */
static void drain(struct work_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	struct work_item *list = pool->finished;
	pool->finished = NULL;
	size_t n = 0;
	for (struct work_item *i = list; i != NULL; i = i->next)
		n++;
	pool->pending -= n;
	pthread_mutex_unlock(&pool->lock);
	struct work_item *oldest = NULL;
	while (list != NULL) {
		struct work_item *next = list->next;
		list->next = oldest;
		oldest = list;
		list = next;
	}
	while (oldest != NULL) {
		struct work_item *next = oldest->next;
		oldest->done(oldest->arg);
		free(oldest);
		oldest = next;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	uint64_t count;
	/* Nonblocking: a spurious wake-up finds nothing and that is fine. */
	if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
		mt_log(MT_LOG_ERROR, "work.wake_failed");
	drain(arg);
}

struct work_pool *work_pool_new(struct event_base *base, unsigned threads, size_t queue_max,
                                const char **error_r)
{
	if (threads == 0 || queue_max == 0) {
		*error_r = "a work pool needs threads and room";
		return NULL;
	}
	struct work_pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	pool->base = base;
	pool->queue_max = queue_max;
	pool->wake_fd = -1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->ready, NULL);
	pool->threads = calloc(threads, sizeof(*pool->threads));
	pool->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->threads == NULL || pool->wake_fd < 0) {
		*error_r = pool->threads == NULL ? "out of memory" : "eventfd failed";
		work_pool_free(&pool);
		return NULL;
	}
	pool->wake_ev = event_new(base, pool->wake_fd, EV_READ | EV_PERSIST, on_wake, pool);
	if (pool->wake_ev == NULL || event_add(pool->wake_ev, NULL) < 0) {
		*error_r = "cannot watch the work pool's eventfd";
		work_pool_free(&pool);
		return NULL;
	}
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
			*error_r = "cannot start a worker thread";
			work_pool_free(&pool);
			return NULL;
		}
		/* Named for top -H, perf and /proc/PID/task/TID/comm. */
		pthread_setname_np(pool->threads[i], "mt-work");
		pool->thread_count++;
	}
	return pool;
}

int work_submit(struct work_pool *pool, work_run_fn *run, work_done_fn *done, void *arg)
{
	struct work_item *item = malloc(sizeof(*item));
	if (item == NULL)
		return -1;
	*item = (struct work_item){run, done, arg, NULL};
	pthread_mutex_lock(&pool->lock);
	if (pool->stopping || pool->pending >= pool->queue_max) {
		pthread_mutex_unlock(&pool->lock);
		free(item);
		mt_metric_inc("mailtrail_work_refused_total",
		              "Work items refused because the worker queue was full", NULL, NULL,
		              NULL, NULL);
		return -1;
	}
	if (pool->queue_tail != NULL)
		pool->queue_tail->next = item;
	else
		pool->queue_head = item;
	pool->queue_tail = item;
	pool->pending++;
	pthread_cond_signal(&pool->ready);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

size_t work_pool_pending(struct work_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	size_t n = pool->pending;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

void work_pool_free(struct work_pool **pool_p)
{
	struct work_pool *pool = *pool_p;
	if (pool == NULL)
		return;
	*pool_p = NULL;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->ready);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->thread_count; i++)
		pthread_join(pool->threads[i], NULL);
	/* Items queued when the pool had no thread left never ran: run them here, then answer
	 * everything, so that each caller's `done` frees what it owns. */
	while (pool->queue_head != NULL) {
		struct work_item *item = pool->queue_head;
		pool->queue_head = item->next;
		if (!item->run(item->arg)) {
			pool->pending--;
			free(item);
			continue;
		}
		item->next = pool->finished;
		pool->finished = item;
	}
	drain(pool);
	if (pool->wake_ev != NULL)
		event_free(pool->wake_ev);
	if (pool->wake_fd >= 0)
		close(pool->wake_fd);
	pthread_cond_destroy(&pool->ready);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}
