/* The SQLite driver: one connection in WAL mode, statements cached per SQL text. */
#include "store/db.h"
#include "lib/limits.h"
#include "lib/str.h"
#include "store/wal_vfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sq_stmt {
	struct db_stmt base;
	sqlite3_stmt *st;
	char *sql; /* the cache key; NULL for a statement prepared beside a busy cached one */
	uint32_t hash;
	bool busy;
};

struct sq_db {
	struct db base;
	sqlite3 *conn;
	/* Open addressing keyed by the SQL text: the operations use a fixed set of statements, so
	 * after warm-up no job pays for parsing and planning. */
	struct sq_stmt *cache[MT_STORE_STMT_CACHE];
	size_t cached;
	/* The operations pass string literals: the text's address finds its statement without
	 * hashing the text (the text is still compared, since an address could be reused). */
	struct {
		const char *sql;
		struct sq_stmt *stmt;
	} by_address[MT_STORE_STMT_CACHE];
	int synchronous;   /* the PRAGMA value in force: 1 NORMAL, 2 FULL */
	int64_t log_pages; /* frames in the WAL after this connection's last commit */
	int log_fd;        /* the WAL file opened for db_log_fd(); -1 until asked */
	int busy_limit_ms; /* how long a lock is waited for (busy_retry) */
	int64_t busy_since_ms;
};

static const struct db_driver sqlite_driver;

static struct sq_db *sq(struct db *db)
{
	return (struct sq_db *)db;
}

static struct sq_stmt *sqs(struct db_stmt *stmt)
{
	return (struct sq_stmt *)stmt;
}

static uint32_t hash_sql(const char *sql)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)sql; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static const char *sqlite_errmsg_of(struct db *db)
{
	return sqlite3_errmsg(sq(db)->conn);
}

static int sqlite_exec(struct db *db, const char *sql)
{
	return sqlite3_exec(sq(db)->conn, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static size_t address_slot(const char *sql)
{
	uintptr_t a = (uintptr_t)sql;
	return (size_t)((a >> 3) ^ (a >> 11)) % MT_STORE_STMT_CACHE;
}

static struct db_stmt *sqlite_prepare(struct db *db, const char *sql)
{
	struct sq_db *d = sq(db);
	size_t by = address_slot(sql);
	struct sq_stmt *known = d->by_address[by].sql == sql ? d->by_address[by].stmt : NULL;
	if (known != NULL && !known->busy && strcmp(known->sql, sql) == 0) {
		known->busy = true;
		return &known->base;
	}
	uint32_t h = hash_sql(sql);
	size_t slot = h % MT_STORE_STMT_CACHE;
	bool cacheable = d->cached < MT_STORE_STMT_CACHE * 3 / 4;
	for (size_t n = 0; n < MT_STORE_STMT_CACHE; n++) {
		struct sq_stmt *s = d->cache[slot];
		if (s == NULL)
			break;
		if (s->hash == h && strcmp(s->sql, sql) == 0) {
			if (!s->busy) {
				s->busy = true;
				d->by_address[by].sql = sql;
				d->by_address[by].stmt = s;
				return &s->base;
			}
			/* The same text is already in use (a nested query): a private copy. */
			cacheable = false;
			break;
		}
		slot = (slot + 1) % MT_STORE_STMT_CACHE;
	}
	struct sq_stmt *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	unsigned flags = cacheable ? SQLITE_PREPARE_PERSISTENT : 0;
	if (sqlite3_prepare_v3(d->conn, sql, -1, flags, &s->st, NULL) != SQLITE_OK) {
		free(s);
		return NULL;
	}
	s->base.db = db;
	s->hash = h;
	s->busy = true;
	if (cacheable) {
		s->sql = strdup(sql);
		if (s->sql != NULL) {
			d->cache[slot] = s;
			d->cached++;
			d->by_address[by].sql = sql;
			d->by_address[by].stmt = s;
		}
	}
	return &s->base;
}

static void sqlite_finish(struct db_stmt *stmt)
{
	struct sq_stmt *s = sqs(stmt);
	if (s->sql == NULL) {
		sqlite3_finalize(s->st);
		free(s);
		return;
	}
	sqlite3_reset(s->st);
	sqlite3_clear_bindings(s->st);
	s->busy = false;
}

/* The result of an sqlite3_bind_*() for parameter `index`. */
static void bound(struct db_stmt *stmt, int index, int rc)
{
	if (rc != SQLITE_OK)
		db_bind_failed(stmt, index);
}

/* SQLITE_STATIC texts: SQLite reads the caller's text until the statement is reset
 * (db_finish). */
static void sqlite_bind_args(struct db_stmt *stmt, const struct db_arg *args)
{
	sqlite3_stmt *st = sqs(stmt)->st;
	for (int i = 0; args[i].type != DB_ARG_END; i++) {
		const struct db_arg *a = &args[i];
		int rc;
		if (a->type == DB_ARG_TEXT && a->text != NULL)
			rc = sqlite3_bind_text(st, i + 1, a->text, -1, SQLITE_STATIC);
		else if (a->type == DB_ARG_INT)
			rc = sqlite3_bind_int64(st, i + 1, a->value);
		else if (a->type == DB_ARG_BLOB)
			rc = sqlite3_bind_blob64(st, i + 1, a->blob, (sqlite3_uint64)a->value,
			                         SQLITE_TRANSIENT);
		else
			rc = sqlite3_bind_null(st, i + 1);
		bound(stmt, i + 1, rc);
	}
}

static int sqlite_step(struct db_stmt *stmt)
{
	int rc = sqlite3_step(sqs(stmt)->st);
	switch (rc) {
	case SQLITE_ROW:
		return DB_ROW;
	case SQLITE_DONE:
		return DB_DONE;
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return DB_UNIQUE;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return DB_FOREIGN;
	default:
		return DB_ERROR;
	}
}

static const char *sqlite_column_text(struct db_stmt *stmt, int index)
{
	const unsigned char *t = sqlite3_column_text(sqs(stmt)->st, index);
	return t == NULL ? "" : (const char *)t;
}

static int64_t sqlite_column_int64(struct db_stmt *stmt, int index)
{
	return sqlite3_column_int64(sqs(stmt)->st, index);
}

static const void *sqlite_column_blob(struct db_stmt *stmt, int index, size_t *len_r)
{
	const void *p = sqlite3_column_blob(sqs(stmt)->st, index);
	*len_r = (size_t)sqlite3_column_bytes(sqs(stmt)->st, index);
	return p;
}

static bool sqlite_column_is_null(struct db_stmt *stmt, int index)
{
	return sqlite3_column_type(sqs(stmt)->st, index) == SQLITE_NULL;
}

static int64_t sqlite_changes(struct db *db)
{
	return sqlite3_changes64(sq(db)->conn);
}

static int64_t sqlite_last_insert_id(struct db *db)
{
	return sqlite3_last_insert_rowid(sq(db)->conn);
}

/* Runs one cached parameterless statement to completion. */
static int run_simple(struct db *db, const char *sql)
{
	struct db_stmt *s = sqlite_prepare(db, sql);
	if (s == NULL)
		return -1;
	int rc = sqlite_step(s);
	sqlite_finish(s);
	return rc == DB_DONE || rc == DB_ROW ? 0 : -1;
}

/* WAL with synchronous=NORMAL does not fsync at commit; FULL does. A FULL commit also makes every
 * earlier NORMAL commit durable (they precede it in the same log), so switching per batch is
 * safe. The setting cannot change inside a transaction, hence here. */
static int set_synchronous(struct sq_db *d, int level)
{
	if (d->synchronous == level)
		return 0;
	if (sqlite_exec(&d->base,
	                level == 2 ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") < 0)
		return -1;
	d->synchronous = level;
	return 0;
}

static int sqlite_begin(struct db *db, enum db_tx_mode mode)
{
	switch (mode) {
	case DB_TX_READ:
		return run_simple(db, "BEGIN");
	case DB_TX_WRITE:
		if (set_synchronous(sq(db), 1) < 0)
			return -1;
		return run_simple(db, "BEGIN IMMEDIATE");
	case DB_TX_WRITE_DURABLE:
		if (set_synchronous(sq(db), 2) < 0)
			return -1;
		return run_simple(db, "BEGIN IMMEDIATE");
	}
	return -1;
}

static int sqlite_commit(struct db *db)
{
	return run_simple(db, "COMMIT");
}

static int sqlite_rollback(struct db *db)
{
	if (sqlite3_get_autocommit(sq(db)->conn))
		return 0; /* the engine already rolled back */
	return run_simple(db, "ROLLBACK");
}

static int sqlite_savepoint(struct db *db)
{
	return run_simple(db, "SAVEPOINT s");
}

static int sqlite_release(struct db *db)
{
	return run_simple(db, "RELEASE s");
}

static int sqlite_rollback_to(struct db *db)
{
	if (run_simple(db, "ROLLBACK TO s") < 0)
		return -1;
	return run_simple(db, "RELEASE s");
}

static bool sqlite_in_transaction(struct db *db)
{
	return !sqlite3_get_autocommit(sq(db)->conn);
}

static void sqlite_close(struct db *db)
{
	struct sq_db *d = sq(db);
	for (size_t i = 0; i < MT_STORE_STMT_CACHE; i++) {
		if (d->cache[i] != NULL) {
			sqlite3_finalize(d->cache[i]->st);
			free(d->cache[i]->sql);
			free(d->cache[i]);
		}
	}
	sqlite3_close_v2(d->conn);
	if (d->log_fd >= 0)
		close(d->log_fd);
	free(d);
}

static int on_wal_commit(void *arg, sqlite3 *conn, const char *schema, int pages)
{
	(void)conn;
	(void)schema;
	((struct sq_db *)arg)->log_pages = pages;
	return SQLITE_OK;
}

static int64_t sqlite_log_pages(struct db *db)
{
	return sq(db)->log_pages;
}

/* The WAL's name is SQLite's to make (sqlite3_filename_wal). SQLite deletes the file only when
 * the last connection closes, so it stays one file while this connection is open; fdatasync()
 * through any descriptor of it writes back what SQLite wrote through its own. */
static int sqlite_log_fd(struct db *db)
{
	struct sq_db *d = sq(db);
	if (d->log_fd >= 0)
		return d->log_fd;
	const char *main_file = sqlite3_db_filename(d->conn, "main");
	const char *wal =
	    main_file != NULL && main_file[0] != '\0' ? sqlite3_filename_wal(main_file) : NULL;
	if (wal != NULL && wal[0] != '\0')
		d->log_fd = open(wal, O_RDONLY | O_CLOEXEC);
	return d->log_fd;
}

/* SQLite's own busy handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25,
 * 50... ms between tries, so a writer held off 25 ms by the log's rewind waited 33 and one held
 * 105 ms waited 128 — and every request of that moment waited with it; a checkpoint that wants
 * the write lock between two commits likewise tried only at those steps. This one tries again
 * every millisecond for a short wait (the store's own checkpoints and commits) and every 10 ms
 * for a long one (another process's write), until busy_limit_ms. */
static int busy_retry(void *arg, int count)
{
	struct sq_db *d = arg;
	int64_t now = mt_now_ms();
	if (count == 0)
		d->busy_since_ms = now;
	int64_t waited = now - d->busy_since_ms;
	if (waited >= d->busy_limit_ms)
		return 0;
	sqlite3_sleep(waited < MT_SQLITE_BUSY_FINE_MS ? 1 : 10);
	return 1;
}

static int sqlite_checkpoint(struct db *db, bool restart)
{
	int log = 0, done = 0;
	/* A pending RESTART holds off new writers: it may wait only briefly for a reader. */
	if (restart)
		sq(db)->busy_limit_ms = MT_SQLITE_CHECKPOINT_WAIT_MS;
	int rc = sqlite3_wal_checkpoint_v2(
	    sq(db)->conn, NULL, restart ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE,
	    &log, &done);
	if (restart)
		sq(db)->busy_limit_ms = MT_STORE_BUSY_TIMEOUT_MS;
	if (rc == SQLITE_OK)
		sq(db)->log_pages = restart ? 0 : log;
	/* BUSY: another checkpoint is running (another process's), or the writer held on past
	 * the busy timeout; the next round does the work. */
	return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : -1;
}

static _Thread_local char open_error[MT_ERROR_TEXT_MAX];

/* Caps from limits.h spelled into the PRAGMA texts. */
#define STRINGIFY_(x) #x
#define STRINGIFY(x)  STRINGIFY_(x)

static void configure_sqlite(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	/* A big commit grows the page cache by tens of thousands of 4 KB pages; glibc would extend
	 * the store thread's heap 128 KB at a time (an mprotect each). Address space only: pages
	 * become resident when SQLite touches them. */
	mallopt(M_TOP_PAD, MT_MALLOC_TOP_PAD);
}

struct db *db_sqlite_open(const char *path, const char **error_r)
{
	struct sq_db *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	d->base.driver = &sqlite_driver;
	d->log_fd = -1;
	/* Process-wide settings: no global memory statistics (they take a process-wide mutex on
	 * every allocation), malloc's heap step. Has to precede SQLite's initialisation; later
	 * calls fail harmlessly. */
	static pthread_once_t configured = PTHREAD_ONCE_INIT;
	pthread_once(&configured, configure_sqlite);
	/* NOMUTEX: the connection is only ever used by one thread at a time (the store thread).
	 * The VFS gathers WAL frames into large writes (wal_vfs.h); NULL, the default, if it
	 * could not be registered. */
	int flags =
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
	if (sqlite3_open_v2(path, &d->conn, flags, wal_vfs_name()) != SQLITE_OK) {
		snprintf(open_error, sizeof(open_error), "%s: %s", path,
		         d->conn != NULL ? sqlite3_errmsg(d->conn) : "out of memory");
		*error_r = open_error;
		sqlite3_close_v2(d->conn);
		free(d);
		return NULL;
	}
	sqlite3_extended_result_codes(d->conn, 1);
	/* A larger lookaside pool: statements and records allocate many small objects per row,
	 * which otherwise go through malloc. Debian 12's libsqlite3 (3.40.1) is built with
	 * SQLITE_OMIT_LOOKASIDE (sqlite3_compileoption_used says so), so there this changes
	 * nothing and SQLite's small allocations are malloc's; a build with lookaside uses it. */
	sqlite3_db_config(d->conn, SQLITE_DBCONFIG_LOOKASIDE, NULL, MT_SQLITE_LOOKASIDE_SLOT,
	                  MT_SQLITE_LOOKASIDE_SLOTS);
	/* Another process (`mailtrail init` beside `serve`) may hold the write lock briefly. */
	d->busy_limit_ms = MT_STORE_BUSY_TIMEOUT_MS;
	sqlite3_busy_handler(d->conn, busy_retry, d);
	/* secure_delete=FAST zeroes freed cell content where that costs no extra I/O, so a wiped
	 * sealed secret does not linger in the page's free space.
	 *
	 * cache_size (a ceiling, in KiB; pages are allocated as used): a group commit is one
	 * transaction whose dirty pages must all stay in the cache. Past the ceiling SQLite spills
	 * them into the WAL mid-transaction and reads them back at the next change — 100 matcher
	 * jobs of 1,000 messages dirty ~150 MB, and 64 MB made that run 2.5 times slower.
	 *
	 * mmap_size: clean pages are read from the mapped file instead of being copied into the
	 * cache, so a large read-mostly index (a million profile addresses) neither competes with
	 * the dirty pages for the cache nor costs a read() per page. */
	static const char *const setup[] = {
	    "PRAGMA journal_mode=WAL",
	    "PRAGMA foreign_keys=ON",
	    "PRAGMA synchronous=FULL",
	    "PRAGMA secure_delete=FAST",
	    "PRAGMA cache_size=-" STRINGIFY(MT_SQLITE_CACHE_KIB),
	    "PRAGMA temp_store=MEMORY",
	    "PRAGMA mmap_size=" STRINGIFY(MT_SQLITE_MMAP_BYTES),
	};
	for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++) {
		if (sqlite_exec(&d->base, setup[i]) < 0) {
			snprintf(open_error, sizeof(open_error), "%s: %s: %s", path, setup[i],
			         sqlite3_errmsg(d->conn));
			*error_r = open_error;
			sqlite3_close_v2(d->conn);
			free(d);
			return NULL;
		}
	}
	d->synchronous = 2;
	/* Our hook replaces SQLite's automatic checkpoint (see db_log_pages in db.h). */
	sqlite3_wal_hook(d->conn, on_wal_commit, d);
	return &d->base;
}

static const struct db_driver sqlite_driver = {
    .name = "sqlite",
    .close = sqlite_close,
    .errmsg = sqlite_errmsg_of,
    .exec = sqlite_exec,
    .prepare = sqlite_prepare,
    .finish = sqlite_finish,
    .bind_args = sqlite_bind_args,
    .step = sqlite_step,
    .column_text = sqlite_column_text,
    .column_int64 = sqlite_column_int64,
    .column_blob = sqlite_column_blob,
    .column_is_null = sqlite_column_is_null,
    .changes = sqlite_changes,
    .last_insert_id = sqlite_last_insert_id,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .savepoint = sqlite_savepoint,
    .release = sqlite_release,
    .rollback_to = sqlite_rollback_to,
    .in_transaction = sqlite_in_transaction,
    .log_pages = sqlite_log_pages,
    .checkpoint = sqlite_checkpoint,
    .log_fd = sqlite_log_fd,
};
