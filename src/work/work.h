/* A small pool of threads for the CPU-heavy steps of a request (decoding a large JSON body,
 * building or parsing a MIME message, reading a CSV file), so that the event loop, which serves
 * every tenant, never spends more than about a millisecond on one request.
 *
 * A work item is two functions: `run` on a worker thread, then `done` on the loop thread. `run`
 * may only compute: no loop, no store, no logging of secrets; `done` carries the result on.
 * Items run in the order they were submitted when there is one thread; with more, in any order.
 *
 * Ownership: the pool belongs to its creator and borrows the event base; `arg` stays the
 * caller's throughout (the pool never frees it). work_pool_free() runs what is queued, waits
 * for the threads, then calls every outstanding `done` on the calling thread, so no item is
 * ever lost. */
#ifndef MT_WORK_WORK_H
#define MT_WORK_WORK_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct work_pool;

/* Returns whether `done` is still to run on the loop; false when the run handed `arg` on
 * (to a store job whose completion carries it on, say): the loop is then not woken for it. */
typedef bool work_run_fn(void *arg);
typedef void work_done_fn(void *arg);

/* `threads` workers; at most `queue_max` items waiting or running (work_submit refuses more).
 * NULL with *error_r on failure. */
struct work_pool *work_pool_new(struct event_base *base, unsigned threads, size_t queue_max,
                                const char **error_r);
/* 0, or -1 when the queue is full or the pool is stopping (the caller answers 503). */
int work_submit(struct work_pool *pool, work_run_fn *run, work_done_fn *done, void *arg);
/* Items waiting or running, for metrics and tests. */
size_t work_pool_pending(struct work_pool *pool);
void work_pool_free(struct work_pool **pool);

#endif
