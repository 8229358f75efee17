/* The store: the one interface the engines and the API use to keep state. Operations, not SQL.
 * This header is its core — the store object and its thread, jobs, result codes, identifiers;
 * the operations are declared one header per aggregate, each beside its ops_*.c: store_org.h,
 * store_user.h (users, tokens), store_profile.h, store_smtp.h, store_message.h (message
 * records), store_activity.h, store_never_log.h, store_outbox.h. Include the ones you use.
 *
 * Threading. A store runs its own thread. The event loop never waits on disk: it submits a job
 * (a function run on the store thread inside a transaction) and gets the result back on the loop
 * through a wake-up (eventfd/pipe read by libevent). Write jobs that arrive together are
 * group-committed: one transaction, one fsync, each job inside its own SAVEPOINT so a failing
 * job rolls back alone. A `durable` job's completion is reported only after its commit reached
 * the disk (SQLite: synchronous=FULL for that commit).
 *
 * The operations (store_org_*, store_user_*, ...) take a `struct store_tx *` and may only be
 * called from inside a job, on the store thread. They return 0 on success, STORE_NOT_FOUND,
 * STORE_CONFLICT (a uniqueness rule), or -1 on a database error (logged; the job should fail).
 * Every operation on tenant data is scoped by org id: another org's object is "not found".
 *
 * Backends: SQLite (a file path) now, PostgreSQL (postgresql://) later, behind the same
 * operations; identifiers are opaque strings generated here, never rowids.
 *
 * Ownership: the caller owns the structs it passes in and out; what an operation allocates is
 * said in its aggregate's header, with the function that frees it. */
#ifndef MT_STORE_STORE_H
#define MT_STORE_STORE_H

#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct store_tx;

#define STORE_NOT_FOUND 1
#define STORE_CONFLICT  2
#define STORE_INVALID   3 /* an argument the store cannot use (a malformed cursor) */

/* ---- life cycle ---- */

/* Opens (creating if needed) the store at `url`: a file path for SQLite or "postgresql://...".
 * Applies pending migrations. `base` may be NULL for synchronous use only (CLI init, tools,
 * tests); with a base, job completions are delivered on that loop. NULL with *error_r. */
struct store *store_open(const char *url, struct event_base *base, const char **error_r);
/* Finishes queued jobs, stops the thread, closes the database. */
void store_close(struct store **store);

/* ---- jobs ---- */

enum store_job_kind {
	STORE_READ = 0,          /* no writes; may run without a write transaction */
	STORE_WRITE = 1,         /* group-committed; completion after commit */
	STORE_WRITE_DURABLE = 2, /* as WRITE, and the commit is fsynced before completion */
	/* Or'd into a write kind: the job may be run again. A group of write jobs runs with a
	 * savepoint around each (SQLite copies every page a job changes into its sub-journal); a
	 * group whose jobs are all replayable runs without, and when one of them fails the whole
	 * transaction is rolled back and the jobs that had succeeded are run again (with the
	 * savepoints). A replayable job reads its inputs from `arg` and the database only, and
	 * sets its outputs in `arg` afresh on every run (never adds to them, frees what a run
	 * before left there); the failed job itself is not run again. */
	STORE_REPLAYABLE = 4,
};

/* Runs on the store thread inside a transaction. Return 0 to keep the job's changes, anything
 * else to roll them back (only this job's); that value is passed to `done`. */
typedef int store_job_fn(struct store_tx *tx, void *arg);
/* Runs on the event loop thread with the job's result (or -1 when the commit failed). */
typedef void store_done_fn(void *arg, int result);

/* Queues a job. -1 when the queue is full (MT_STORE_QUEUE_MAX) or the store is closing. */
int store_submit(struct store *store, enum store_job_kind kind, store_job_fn *fn,
                 store_done_fn *done, void *arg);
/* Runs a job on the store thread and waits for its commit, blocking the calling thread; for the
 * CLI, tools and tests (never on the event loop thread, never from inside a job). Works with a
 * NULL base. Returns the job's result, or -1 on a commit failure or a full queue. */
int store_run(struct store *store, enum store_job_kind kind, store_job_fn *fn, void *arg);

/* Counters since store_open(), for tests, benchmarks and /metrics. */
struct store_stats {
	uint64_t jobs;              /* jobs finished */
	uint64_t write_jobs;        /* of which STORE_WRITE or STORE_WRITE_DURABLE */
	uint64_t read_jobs;         /* of which STORE_READ */
	uint64_t commits;           /* write transactions committed: one per group of write jobs */
	uint64_t durable_commits;   /* of which fsynced (a durable job was in the group) */
	uint64_t failed_commits;    /* groups whose every job got -1 */
	uint64_t read_batches;      /* read transactions */
	uint64_t max_batch;         /* most write jobs in one commit */
	uint64_t checkpoints;       /* write-ahead log checkpoints run by the checkpoint thread */
	uint64_t replays;           /* groups run again after a replayable job failed */
	uint64_t commit_us;         /* in COMMIT (WAL frames written), and in the log syncs */
	uint64_t durable_commit_us; /* of which in durable ones, and their log syncs: what their
	                             * callers wait for */
	uint64_t log_syncs;         /* fdatasyncs of the log by the sync threads (store.c) */
};
void store_stats(struct store *store, struct store_stats *stats_r);

/* The schema version in force (the highest migration applied). */
int store_schema_version(struct store_tx *tx, int *version_r);

/* ---- time and identifiers (helpers usable from jobs) ---- */

/* A new random identifier "<prefix>_<20 base32 chars>", e.g. "usr_k3j...". */
void store_new_id(const char *prefix, char out[MT_ID_MAX]);
/* The same shape, but ids made later sort after (10 characters of wall-clock milliseconds,
 * then 50 random bits): rows keyed by them are appended to their b-trees instead of landing
 * on a random page each, which is what a busy table's commits write. For ids minted at a
 * high rate (outbox messages); they tell their creation time, which the API shows anyway. */
void store_new_ordered_id(const char *prefix, char out[MT_ID_MAX]);

#endif
