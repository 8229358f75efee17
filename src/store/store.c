/* The store thread, its job queue and the completion path back to the event loop.
 *
 * Batching: the thread takes every queued job at once (up to MT_STORE_BATCH_MAX). The write jobs
 * run first, in one write transaction with a savepoint each (none when all are replayable, see
 * STORE_REPLAYABLE), and one COMMIT (with an fsync when any of them is durable) — the group
 * commit. The read jobs of the batch then run in one read
 * transaction, so a read sees every write submitted before it. Completions are queued for the
 * loop and announced on an eventfd; store_run() callers are woken through a condition variable.
 *
 * Syncing behind (SQLite): a durable group's COMMIT does not wait for the disk. It writes and
 * publishes its frames, and the sync thread fdatasyncs the log while the store thread runs the
 * next batch; completions are handed over in order, a batch's only after the sync that covers
 * it (and after every earlier batch's), so no caller hears of a commit before it is durable nor
 * of anything that read it. Up to MT_STORE_SYNC_THREADS syncs run at once: a sync covers every
 * batch committed before it began, so a commit waits for one sync of its own rather than also
 * for the rest of the one in flight (two fdatasyncs overlap on the device), and whichever sync
 * ends delivers, in order, every batch it covers. A durable batch that finds every sync thread
 * busy makes the store thread wait, and the jobs that queue meanwhile make the next group. */
#include "store/store_internal.h"
#include "store/sql.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/random.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct store_waiter {
	bool finished;
	int result;
};

struct store_job {
	struct store_job *next;
	enum store_job_kind kind;
	store_job_fn *fn;
	store_done_fn *done;
	void *arg;
	int result;
	struct store_waiter *waiter; /* store_run(): wake the caller instead of the loop */
	uint64_t needs;              /* the last durable batch at or before its own (sync_mu) */
};

struct job_list {
	struct store_job *head, *tail;
	size_t count;
};

struct store {
	struct db *db;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu; /* guards queue, closing, waiters and stats */
	pthread_cond_t work_cv;
	pthread_cond_t run_cv;
	struct job_list queue;
	bool closing;
	struct store_stats stats;

	pthread_mutex_t done_mu;
	struct job_list done; /* completions for the loop */
	int wake_fd;          /* eventfd, -1 without a loop */
	struct event *wake_ev;

	/* The checkpoint thread and its own connection (SQLite; see db_log_pages). */
	struct db *ckpt_db;
	pthread_t ckpt_thread;
	bool ckpt_started;
	pthread_mutex_t ckpt_mu; /* guards ckpt_wanted, ckpt_stop */
	pthread_cond_t ckpt_cv;
	bool ckpt_wanted, ckpt_stop;
	int64_t ckpt_asked_at; /* the log's length when the thread was last asked (store thread) */

	/* The sync threads (see the top of this file); not started when the backend has no log
	 * descriptor (db_log_fd), and then a durable group's COMMIT syncs itself. Batches handed
	 * over are numbered from 1; the numbers below are such batch numbers. */
	int log_fd;
	pthread_t sync_threads[MT_STORE_SYNC_THREADS];
	size_t sync_thread_count;
	bool sync_started;
	pthread_mutex_t sync_mu;  /* guards everything below */
	pthread_cond_t sync_cv;   /* the sync threads wait for work */
	pthread_cond_t synced_cv; /* the store thread waits for room */
	struct job_list unsynced; /* finished jobs, in order, not yet delivered */
	uint64_t handed;          /* the last batch handed over */
	uint64_t durable_handed;  /* the last of them that committed durable writes */
	uint64_t sync_claimed;    /* the last batch a sync that has begun covers */
	uint64_t synced;          /* the last batch a sync that has ended covers */
	size_t syncs_busy;        /* syncs in flight */
	bool sync_stop;
};

static void list_push(struct job_list *l, struct store_job *j)
{
	j->next = NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	l->count++;
}

/* Moves every job of `from` to the end of `to`. */
static void list_append(struct job_list *to, struct job_list *from)
{
	if (from->head == NULL)
		return;
	if (to->tail != NULL)
		to->tail->next = from->head;
	else
		to->head = from->head;
	to->tail = from->tail;
	to->count += from->count;
	*from = (struct job_list){0};
}

static struct store_job *list_pop(struct job_list *l)
{
	struct store_job *j = l->head;
	if (j == NULL)
		return NULL;
	l->head = j->next;
	if (l->head == NULL)
		l->tail = NULL;
	l->count--;
	j->next = NULL;
	return j;
}

/* ---- identifiers ---- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_state;

static void sodium_setup(void)
{
	sodium_state = sodium_init();
}

void store_new_id(const char *prefix, char out[MT_ID_MAX])
{
	/* RFC 4648 base32 alphabet, lower case: 20 characters carry 100 random bits. */
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char raw[MT_STORE_ID_RANDOM];
	pthread_once(&sodium_once, sodium_setup);
	mt_random_id_bytes(raw, sizeof(raw));
	size_t n = mt_strlcpy(out, prefix, MT_ID_MAX - MT_STORE_ID_RANDOM - 1);
	if (n > MT_ID_MAX - MT_STORE_ID_RANDOM - 2)
		n = MT_ID_MAX - MT_STORE_ID_RANDOM - 2;
	out[n++] = '_';
	for (size_t i = 0; i < sizeof(raw); i++)
		out[n++] = alphabet[raw[i] & 31];
	out[n] = '\0';
}

void store_new_ordered_id(const char *prefix, char out[MT_ID_MAX])
{
	/* The base32 characters in ASCII order, so that the text sorts as the number does. */
	static const char ordered[] = "234567abcdefghijklmnopqrstuvwxyz";
	store_new_id(prefix, out);
	char *p = strchr(out, '_');
	if (p == NULL)
		return;
	uint64_t ms = (uint64_t)mt_wall_ms();
	for (int i = MT_STORE_ID_TIME_CHARS - 1; i >= 0; i--, ms >>= 5)
		p[1 + i] = ordered[ms & 31];
}

/* ---- the store thread ---- */

static void after_commit(struct store *store);

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void store_tx_forget(struct store_tx *tx)
{
	tx->memo.feed_org[0] = '\0';
	tx->memo.feed_next = tx->memo.feed_last = 0;
}

static bool kind_durable(enum store_job_kind kind)
{
	return (kind & ~STORE_REPLAYABLE) == STORE_WRITE_DURABLE;
}

enum group_outcome {
	GROUP_COMMITTED,
	GROUP_FAILED, /* every job's result is -1 */
	GROUP_REPLAY, /* rolled back for a failed job without a savepoint: run the group again */
};

/* One attempt at a group commit. `careful`: a savepoint around every job, so that a failed
 * job's changes are undone alone. Without it (every job replayable), a failed job rolls back
 * the whole transaction: it keeps its result and is marked in `skip`; when jobs before it had
 * succeeded, the attempt ends and the caller runs the group again, carefully; when none had,
 * nothing else was lost and the attempt goes on in a new transaction. `skip` may be NULL when
 * careful. */
static enum group_outcome run_group(struct store *store, struct store_job **jobs, size_t n,
                                    bool *skip, bool durable, bool careful, uint64_t *commit_us)
{
	struct store_tx tx = {.db = store->db, .writable = true};
	/* With the sync thread, durability comes from its fdatasync, after the COMMIT. */
	enum db_tx_mode begin = durable && !store->sync_started ? DB_TX_WRITE_DURABLE : DB_TX_WRITE;
	if (db_begin(store->db, begin) < 0) {
		store_fail(&tx, "store.begin");
		return GROUP_FAILED;
	}
	bool broken = false;
	size_t kept = 0; /* jobs whose changes this transaction holds */
	for (size_t i = 0; i < n && !broken; i++) {
		struct store_job *j = jobs[i];
		if (skip != NULL && skip[i])
			continue;
		if (careful && db_savepoint(store->db) < 0) {
			store_fail(&tx, "store.savepoint");
			broken = true;
			break;
		}
		j->result = j->fn(&tx, j->arg);
		if (!db_in_transaction(store->db)) {
			/* SQLite ends the whole transaction on some I/O and memory errors: every
			 * job of the batch lost its changes. */
			mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", "store.job"),
			       MT_KV("error", "transaction rolled back by the database"));
			broken = true;
			break;
		}
		if (j->result != 0)
			store_tx_forget(&tx);
		if (careful) {
			int rc = j->result == 0 ? db_release(store->db) : db_rollback_to(store->db);
			if (rc < 0) {
				store_fail(&tx, "store.savepoint");
				broken = true;
			}
			continue;
		}
		if (j->result == 0) {
			kept++;
			continue;
		}
		skip[i] = true;
		if (db_rollback(store->db) < 0) {
			store_fail(&tx, "store.rollback");
			return GROUP_FAILED;
		}
		if (kept > 0)
			return GROUP_REPLAY;
		if (db_begin(store->db, begin) < 0) {
			store_fail(&tx, "store.begin");
			return GROUP_FAILED;
		}
	}
	if (!broken) {
		uint64_t started = mono_us();
		int rc = db_commit(store->db);
		*commit_us += mono_us() - started;
		if (rc == 0) {
			after_commit(store);
			return GROUP_COMMITTED;
		}
		store_fail(&tx, "store.commit");
	}
	db_rollback(store->db);
	return GROUP_FAILED;
}

/* Runs the write jobs of a batch as one group commit; each job's result is set. A savepoint
 * per job costs a copy of every page the job changes (SQLite's sub-journal), so a group of
 * replayable jobs runs without them and pays only when one of its jobs fails. */
static void run_writes(struct store *store, struct store_job **jobs, size_t n)
{
	bool durable = false, careful = false;
	for (size_t i = 0; i < n; i++) {
		durable |= kind_durable(jobs[i]->kind);
		careful |= (jobs[i]->kind & STORE_REPLAYABLE) == 0;
	}
	bool *skip = careful ? NULL : calloc(n, sizeof(*skip));
	careful |= skip == NULL;
	enum group_outcome outcome;
	uint64_t replays = 0;
	uint64_t commit_us = 0; /* in COMMIT, a failed one included */
	while ((outcome = run_group(store, jobs, n, skip, durable, careful, &commit_us)) ==
	       GROUP_REPLAY) {
		careful = true;
		replays++;
	}
	if (outcome == GROUP_FAILED) {
		for (size_t i = 0; i < n; i++)
			jobs[i]->result = -1;
	}
	free(skip);
	pthread_mutex_lock(&store->mu);
	if (outcome == GROUP_COMMITTED) {
		store->stats.commits++;
		store->stats.durable_commits += durable;
		if (n > store->stats.max_batch)
			store->stats.max_batch = n;
	} else {
		store->stats.failed_commits++;
	}
	store->stats.replays += replays;
	store->stats.write_jobs += n;
	store->stats.commit_us += commit_us;
	if (durable)
		store->stats.durable_commit_us += commit_us;
	pthread_mutex_unlock(&store->mu);
}

/* After a commit: a long write-ahead log is folded back by the checkpoint thread, so that the
 * next commits do not wait for it; only a log the thread cannot keep up with is checkpointed
 * here. */
static void after_commit(struct store *store)
{
	int64_t pages = db_log_pages(store->db);
	if (pages < store->ckpt_asked_at)
		store->ckpt_asked_at = 0; /* rewound */
	if (pages < MT_SQLITE_CHECKPOINT_PAGES)
		return;
	if (!store->ckpt_started || pages >= MT_SQLITE_CHECKPOINT_INLINE) {
		if (db_checkpoint(store->db, false) < 0)
			mt_log(MT_LOG_WARN, "store.checkpoint_failed",
			       MT_KV("error", db_errmsg(store->db)));
		return;
	}
	/* Once per MT_SQLITE_CHECKPOINT_PAGES appended, not after every commit past that length
	 * (the log is rewound only past MT_SQLITE_CHECKPOINT_RESTART): a page that commit after
	 * commit rewrites (an index's, with random keys) is then copied once per checkpoint, not
	 * once per commit. */
	if (pages - store->ckpt_asked_at < MT_SQLITE_CHECKPOINT_PAGES)
		return;
	store->ckpt_asked_at = pages;
	pthread_mutex_lock(&store->ckpt_mu);
	store->ckpt_wanted = true;
	pthread_cond_signal(&store->ckpt_cv);
	pthread_mutex_unlock(&store->ckpt_mu);
}

static void *checkpoint_thread(void *arg)
{
	struct store *store = arg;
	/* Copying the log back is background work: on a machine with few cores it must not take
	 * the event loop's core while the loop has requests to answer (it only has to keep up over
	 * time; a commit checkpoints itself past MT_SQLITE_CHECKPOINT_INLINE). */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), MT_CHECKPOINT_NICE) != 0)
		mt_log(MT_LOG_DEBUG, "store.checkpoint_nice_failed",
		       MT_KV("errno", strerror(errno)));
	pthread_mutex_lock(&store->ckpt_mu);
	for (;;) {
		while (!store->ckpt_wanted && !store->ckpt_stop)
			pthread_cond_wait(&store->ckpt_cv, &store->ckpt_mu);
		if (store->ckpt_stop)
			break;
		store->ckpt_wanted = false;
		pthread_mutex_unlock(&store->ckpt_mu);
		int rc = db_checkpoint(store->ckpt_db, false);
		if (rc == 0 && db_log_pages(store->ckpt_db) >= MT_SQLITE_CHECKPOINT_RESTART)
			rc = db_checkpoint(store->ckpt_db, true);
		if (rc < 0)
			mt_log(MT_LOG_WARN, "store.checkpoint_failed",
			       MT_KV("error", db_errmsg(store->ckpt_db)));
		pthread_mutex_lock(&store->mu);
		store->stats.checkpoints++;
		pthread_mutex_unlock(&store->mu);
		pthread_mutex_lock(&store->ckpt_mu);
	}
	pthread_mutex_unlock(&store->ckpt_mu);
	return NULL;
}

/* Without it (another connection refused, say) commits checkpoint themselves. */
static void checkpoint_start(struct store *store, const char *url)
{
	if (db_log_pages(store->db) < 0)
		return;
	const char *error = NULL;
	store->ckpt_db = db_open(url, &error);
	if (store->ckpt_db == NULL) {
		mt_log(MT_LOG_WARN, "store.checkpoint_thread", MT_KV("error", error));
		return;
	}
	if (pthread_create(&store->ckpt_thread, NULL, checkpoint_thread, store) != 0) {
		db_close(&store->ckpt_db);
		return;
	}
	/* Named for top -H, perf and /proc/PID/task/TID/comm (15 bytes at most). */
	pthread_setname_np(store->ckpt_thread, "mt-checkpoint");
	store->ckpt_started = true;
}

static void checkpoint_stop(struct store *store)
{
	if (store->ckpt_started) {
		pthread_mutex_lock(&store->ckpt_mu);
		store->ckpt_stop = true;
		pthread_cond_signal(&store->ckpt_cv);
		pthread_mutex_unlock(&store->ckpt_mu);
		pthread_join(store->ckpt_thread, NULL);
		store->ckpt_started = false;
	}
	db_close(&store->ckpt_db);
}

static void run_reads(struct store *store, struct store_job **jobs, size_t n)
{
	struct store_tx tx = {.db = store->db, .writable = false};
	if (db_begin(store->db, DB_TX_READ) < 0) {
		store_fail(&tx, "store.begin");
		for (size_t i = 0; i < n; i++)
			jobs[i]->result = -1;
		return;
	}
	for (size_t i = 0; i < n; i++)
		jobs[i]->result = jobs[i]->fn(&tx, jobs[i]->arg);
	/* Ending a read transaction cannot lose anything; a failure here is only logged. */
	if (db_in_transaction(store->db) && db_commit(store->db) < 0) {
		store_fail(&tx, "store.end_read");
		db_rollback(store->db);
	}
	pthread_mutex_lock(&store->mu);
	store->stats.read_jobs += n;
	store->stats.read_batches++;
	pthread_mutex_unlock(&store->mu);
}

static void deliver(struct store *store, struct job_list *jobs)
{
	struct job_list for_loop = {0};
	bool woke_waiters = false;
	pthread_mutex_lock(&store->mu);
	store->stats.jobs += jobs->count;
	struct store_job *j;
	while ((j = list_pop(jobs)) != NULL) {
		if (j->waiter != NULL) {
			j->waiter->result = j->result;
			j->waiter->finished = true;
			woke_waiters = true;
			free(j);
		} else if (j->done == NULL) {
			free(j);
		} else {
			list_push(&for_loop, j);
		}
	}
	if (woke_waiters)
		pthread_cond_broadcast(&store->run_cv);
	pthread_mutex_unlock(&store->mu);

	if (for_loop.head == NULL)
		return;
	pthread_mutex_lock(&store->done_mu);
	bool was_empty = store->done.head == NULL;
	list_append(&store->done, &for_loop);
	pthread_mutex_unlock(&store->done_mu);
	/* One wake-up per batch is enough: the loop takes the whole list. */
	if (was_empty) {
		uint64_t one = 1;
		while (write(store->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
}

/* Delivers, in order, the jobs at the head of the unsynced list that no sync is still owed for
 * (sync_mu held: two sync threads ending at once must not deliver out of order). */
static void deliver_synced(struct store *store)
{
	struct job_list ready = {0};
	while (store->unsynced.head != NULL && store->unsynced.head->needs <= store->synced)
		list_push(&ready, list_pop(&store->unsynced));
	if (ready.head != NULL)
		deliver(store, &ready);
}

/* A batch's jobs go to the loop and the store_run() callers now, or after the sync that covers
 * them when they committed durable writes or an earlier batch still waits for one (order is
 * kept). */
static void hand_over(struct store *store, struct job_list *jobs, bool durable)
{
	if (!store->sync_started) {
		deliver(store, jobs);
		return;
	}
	pthread_mutex_lock(&store->sync_mu);
	uint64_t batch = ++store->handed;
	if (durable)
		store->durable_handed = batch;
	for (struct store_job *j = jobs->head; j != NULL; j = j->next)
		j->needs = store->durable_handed;
	list_append(&store->unsynced, jobs);
	if (durable)
		pthread_cond_signal(&store->sync_cv);
	else
		deliver_synced(store);
	pthread_mutex_unlock(&store->sync_mu);
}

/* The next batch waits while a committed durable batch waits for a sync thread: the jobs that
 * arrive meanwhile join the next group instead of making a commit each. */
static void wait_for_sync_room(struct store *store)
{
	if (!store->sync_started)
		return;
	pthread_mutex_lock(&store->sync_mu);
	while (store->syncs_busy == store->sync_thread_count &&
	       store->durable_handed > store->sync_claimed)
		pthread_cond_wait(&store->synced_cv, &store->sync_mu);
	pthread_mutex_unlock(&store->sync_mu);
}

static void *sync_thread(void *arg)
{
	struct store *store = arg;
	pthread_mutex_lock(&store->sync_mu);
	for (;;) {
		while (store->durable_handed <= store->sync_claimed && !store->sync_stop)
			pthread_cond_wait(&store->sync_cv, &store->sync_mu);
		if (store->durable_handed <= store->sync_claimed)
			break; /* stopping, and every durable batch has a sync that delivers it */
		/* Everything committed so far: its frames were written before this sync begins. */
		uint64_t covers = store->handed;
		store->sync_claimed = covers;
		store->syncs_busy++;
		pthread_mutex_unlock(&store->sync_mu);
		uint64_t started = mono_us();
		/* A failed fdatasync may have dropped the written pages from the kernel's cache:
		 * nothing can tell these callers their commits are on disk, and the next start
		 * recovers the log from what is. */
		if (fdatasync(store->log_fd) < 0) {
			mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", "store.log_sync"),
			       MT_KV("error", strerror(errno)));
			abort();
		}
		uint64_t took = mono_us() - started;
		pthread_mutex_lock(&store->mu);
		store->stats.log_syncs++;
		store->stats.commit_us += took;
		store->stats.durable_commit_us += took;
		pthread_mutex_unlock(&store->mu);
		pthread_mutex_lock(&store->sync_mu);
		store->syncs_busy--;
		if (covers > store->synced)
			store->synced = covers;
		deliver_synced(store);
		pthread_cond_broadcast(&store->synced_cv);
	}
	pthread_mutex_unlock(&store->sync_mu);
	return NULL;
}

/* After the migrations' commits, so that the log exists. Without a descriptor or a thread,
 * durable commits sync themselves. */
static void sync_start(struct store *store)
{
	store->log_fd = db_log_fd(store->db);
	if (store->log_fd < 0)
		return;
	for (size_t i = 0; i < MT_STORE_SYNC_THREADS; i++) {
		if (pthread_create(&store->sync_threads[i], NULL, sync_thread, store) != 0)
			break;
		pthread_setname_np(store->sync_threads[i], "mt-sync");
		store->sync_thread_count++;
	}
	store->sync_started = store->sync_thread_count > 0;
}

/* After the store thread ended: what it handed over is synced and delivered first. */
static void sync_stop(struct store *store)
{
	if (!store->sync_started)
		return;
	pthread_mutex_lock(&store->sync_mu);
	store->sync_stop = true;
	pthread_cond_broadcast(&store->sync_cv);
	pthread_mutex_unlock(&store->sync_mu);
	for (size_t i = 0; i < store->sync_thread_count; i++)
		pthread_join(store->sync_threads[i], NULL);
	store->sync_thread_count = 0;
	store->sync_started = false;
}

static void *store_thread(void *arg)
{
	struct store *store = arg;
	struct store_job **writes = calloc(MT_STORE_BATCH_MAX, sizeof(*writes));
	struct store_job **reads = calloc(MT_STORE_BATCH_MAX, sizeof(*reads));
	struct store_job **all = calloc(MT_STORE_BATCH_MAX, sizeof(*all));
	if (writes == NULL || reads == NULL || all == NULL)
		abort(); /* three small arrays at start-up; nothing sensible to do without them */

	for (;;) {
		wait_for_sync_room(store);
		pthread_mutex_lock(&store->mu);
		while (store->queue.head == NULL && !store->closing)
			pthread_cond_wait(&store->work_cv, &store->mu);
		if (store->queue.head == NULL) {
			pthread_mutex_unlock(&store->mu);
			break;
		}
		size_t nw = 0, nr = 0, n = 0;
		struct store_job *j;
		while (n < MT_STORE_BATCH_MAX && (j = list_pop(&store->queue)) != NULL) {
			all[n++] = j;
			if (j->kind == STORE_READ)
				reads[nr++] = j;
			else
				writes[nw++] = j;
		}
		pthread_mutex_unlock(&store->mu);

		bool durable = false;
		for (size_t i = 0; i < nw; i++)
			durable |= kind_durable(writes[i]->kind);
		if (nw > 0)
			run_writes(store, writes, nw);
		if (nr > 0)
			run_reads(store, reads, nr);
		struct job_list done = {0};
		for (size_t i = 0; i < n; i++)
			list_push(&done, all[i]);
		hand_over(store, &done, durable);
	}
	free(writes);
	free(reads);
	free(all);
	return NULL;
}

/* ---- the loop side ---- */

static void run_done(struct store *store)
{
	pthread_mutex_lock(&store->done_mu);
	struct job_list l = store->done;
	store->done = (struct job_list){0};
	pthread_mutex_unlock(&store->done_mu);
	struct store_job *j;
	while ((j = list_pop(&l)) != NULL) {
		j->done(j->arg, j->result);
		free(j);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	uint64_t count;
	/* Nonblocking: a spurious wake-up finds nothing and that is fine. */
	if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
		mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", "store.wake"),
		       MT_KV("error", strerror(errno)));
	run_done(arg);
}

/* ---- life cycle ---- */

static void store_destroy(struct store *store)
{
	sync_stop(store);
	checkpoint_stop(store);
	if (store->wake_ev != NULL)
		event_free(store->wake_ev);
	if (store->wake_fd >= 0)
		close(store->wake_fd);
	db_close(&store->db);
	pthread_mutex_destroy(&store->mu);
	pthread_mutex_destroy(&store->done_mu);
	pthread_mutex_destroy(&store->ckpt_mu);
	pthread_mutex_destroy(&store->sync_mu);
	pthread_cond_destroy(&store->sync_cv);
	pthread_cond_destroy(&store->synced_cv);
	pthread_cond_destroy(&store->work_cv);
	pthread_cond_destroy(&store->run_cv);
	pthread_cond_destroy(&store->ckpt_cv);
	free(store);
}

struct store *store_open(const char *url, struct event_base *base, const char **error_r)
{
	pthread_once(&sodium_once, sodium_setup);
	if (sodium_state < 0) {
		*error_r = "libsodium failed to initialise";
		return NULL;
	}
	struct store *store = calloc(1, sizeof(*store));
	if (store == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	store->wake_fd = -1;
	pthread_mutex_init(&store->mu, NULL);
	pthread_mutex_init(&store->done_mu, NULL);
	pthread_cond_init(&store->work_cv, NULL);
	pthread_cond_init(&store->run_cv, NULL);
	pthread_mutex_init(&store->ckpt_mu, NULL);
	pthread_cond_init(&store->ckpt_cv, NULL);
	pthread_mutex_init(&store->sync_mu, NULL);
	pthread_cond_init(&store->sync_cv, NULL);
	pthread_cond_init(&store->synced_cv, NULL);
	store->log_fd = -1;

	store->db = db_open(url, error_r);
	if (store->db == NULL) {
		store_destroy(store);
		return NULL;
	}
	if (store_migrate(store->db, error_r) < 0) {
		store_destroy(store);
		return NULL;
	}
	checkpoint_start(store, url);
	sync_start(store);
	if (base != NULL) {
		store->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (store->wake_fd < 0) {
			*error_r = "eventfd failed";
			store_destroy(store);
			return NULL;
		}
		store->wake_ev =
		    event_new(base, store->wake_fd, EV_READ | EV_PERSIST, on_wake, store);
		if (store->wake_ev == NULL || event_add(store->wake_ev, NULL) < 0) {
			*error_r = "cannot register the store's wake-up with the event loop";
			store_destroy(store);
			return NULL;
		}
	}
	if (pthread_create(&store->thread, NULL, store_thread, store) != 0) {
		*error_r = "cannot start the store thread";
		store_destroy(store);
		return NULL;
	}
	store->thread_started = true;
	pthread_setname_np(store->thread, "mt-store");
	return store;
}

void store_close(struct store **storep)
{
	struct store *store = *storep;
	if (store == NULL)
		return;
	pthread_mutex_lock(&store->mu);
	store->closing = true;
	pthread_cond_signal(&store->work_cv);
	pthread_mutex_unlock(&store->mu);
	if (store->thread_started)
		pthread_join(store->thread, NULL);
	sync_stop(store);
	/* Completions the loop has not picked up yet still reach their owners, here, so that no
	 * argument is leaked; store_close() runs on the loop thread (or after the loop ended). */
	run_done(store);
	store_destroy(store);
	*storep = NULL;
}

static struct store_job *job_new(enum store_job_kind kind, store_job_fn *fn, store_done_fn *done,
                                 void *arg)
{
	struct store_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	/* A read is never replayed: the flag means nothing there. */
	j->kind = (kind & ~STORE_REPLAYABLE) == STORE_READ ? STORE_READ : kind;
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	return j;
}

/* Takes ownership of `j`; -1 (and frees it) when the queue is full or closing. Called locked. */
static int enqueue_locked(struct store *store, struct store_job *j)
{
	if (store->closing || store->queue.count >= MT_STORE_QUEUE_MAX) {
		free(j);
		return -1;
	}
	list_push(&store->queue, j);
	pthread_cond_signal(&store->work_cv);
	return 0;
}

int store_submit(struct store *store, enum store_job_kind kind, store_job_fn *fn,
                 store_done_fn *done, void *arg)
{
	/* Without a loop there is nowhere to run `done`. */
	if (done != NULL && store->wake_ev == NULL)
		return -1;
	struct store_job *j = job_new(kind, fn, done, arg);
	if (j == NULL)
		return -1;
	pthread_mutex_lock(&store->mu);
	int rc = enqueue_locked(store, j);
	pthread_mutex_unlock(&store->mu);
	if (rc < 0)
		mt_log(MT_LOG_WARN, "store.queue_full");
	return rc;
}

int store_run(struct store *store, enum store_job_kind kind, store_job_fn *fn, void *arg)
{
	struct store_job *j = job_new(kind, fn, NULL, arg);
	if (j == NULL)
		return -1;
	struct store_waiter waiter = {0};
	j->waiter = &waiter;
	pthread_mutex_lock(&store->mu);
	if (enqueue_locked(store, j) < 0) {
		pthread_mutex_unlock(&store->mu);
		return -1;
	}
	while (!waiter.finished)
		pthread_cond_wait(&store->run_cv, &store->mu);
	pthread_mutex_unlock(&store->mu);
	return waiter.result;
}

void store_stats(struct store *store, struct store_stats *stats_r)
{
	pthread_mutex_lock(&store->mu);
	*stats_r = store->stats;
	pthread_mutex_unlock(&store->mu);
}
