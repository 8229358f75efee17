/* A thin database driver interface under the store operations, so that the operations (ops_*.c)
 * are written once in portable SQL and a PostgreSQL driver can slot in beside db_sqlite.c.
 *
 * Portable SQL here means: `?` placeholders (a pg driver rewrites them to $n), ON CONFLICT,
 * RETURNING, BIGINT times, INTEGER booleans (0/1), BYTEA for bytes (SQLite gives it NUMERIC
 * affinity, which stores blobs unchanged), no engine-specific functions.
 *
 * Ownership: a `struct db` is used by one thread at a time (the store thread after open).
 * Statements from db_prepare() are owned by the driver (it caches them per SQL text) and must be
 * handed back with db_finish() before the transaction ends; a statement left unfinished would
 * keep a read snapshot open. */
#ifndef MT_STORE_DB_H
#define MT_STORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_stmt;

/* db_step() results: a row, the end, or a failure. Constraint failures are told apart because
 * the store maps them to STORE_CONFLICT / STORE_NOT_FOUND. */
enum db_rc {
	DB_DONE = 0,
	DB_ROW = 1,
	DB_ERROR = -1,
	DB_UNIQUE = -2,  /* UNIQUE or PRIMARY KEY violation */
	DB_FOREIGN = -3, /* FOREIGN KEY violation */
};

enum db_tx_mode {
	DB_TX_READ,          /* a consistent snapshot; no writes */
	DB_TX_WRITE,         /* takes the write lock at once (SQLite: BEGIN IMMEDIATE) */
	DB_TX_WRITE_DURABLE, /* as WRITE, and COMMIT returns only once the commit is on disk */
};

/* A statement's parameters as one list, ending with a DB_ARG_END entry (sql.h builds them). */
enum db_arg_type { DB_ARG_END, DB_ARG_TEXT, DB_ARG_INT, DB_ARG_BLOB, DB_ARG_NULL };
struct db_arg {
	enum db_arg_type type;
	union {
		const char *text; /* DB_ARG_TEXT; NULL binds SQL NULL */
		const void *blob; /* DB_ARG_BLOB */
	};
	int64_t value; /* DB_ARG_INT, or the blob's length */
};

/* Implemented by each backend. */
struct db_driver {
	const char *name;
	void (*close)(struct db *db);
	const char *(*errmsg)(struct db *db);
	int (*exec)(struct db *db, const char *sql);
	struct db_stmt *(*prepare)(struct db *db, const char *sql);
	void (*finish)(struct db_stmt *stmt);
	/* A failed bind is recorded with db_bind_failed(). */
	void (*bind_args)(struct db_stmt *stmt, const struct db_arg *args);
	int (*step)(struct db_stmt *stmt);
	const char *(*column_text)(struct db_stmt *stmt, int index);
	int64_t (*column_int64)(struct db_stmt *stmt, int index);
	const void *(*column_blob)(struct db_stmt *stmt, int index, size_t *len_r);
	bool (*column_is_null)(struct db_stmt *stmt, int index);
	int64_t (*changes)(struct db *db);
	int64_t (*last_insert_id)(struct db *db);
	int (*begin)(struct db *db, enum db_tx_mode mode);
	int (*commit)(struct db *db);
	int (*rollback)(struct db *db);
	int (*savepoint)(struct db *db);
	int (*release)(struct db *db);
	int (*rollback_to)(struct db *db);
	bool (*in_transaction)(struct db *db);
	/* NULL for a backend without a write-ahead log of its own to fold back (PostgreSQL). */
	int64_t (*log_pages)(struct db *db);
	int (*checkpoint)(struct db *db, bool restart);
	int (*log_fd)(struct db *db); /* NULL: no log file to sync from another thread */
};

/* Every backend's connection and statement start with these. */
struct db {
	const struct db_driver *driver;
};
struct db_stmt {
	struct db *db;
	/* The first parameter whose binding failed (0: none). Binding does not return a result:
	 * the failure sticks to the statement and db_step() reports it, so a statement's binds
	 * need no check each. Cleared by db_finish(). */
	int bind_failed;
};

/* Opens a SQLite file path (or "file:" URI); "postgresql://" is refused until its driver exists.
 * NULL with a static or thread-local message in *error_r. */
struct db *db_open(const char *url, const char **error_r);
struct db *db_sqlite_open(const char *path, const char **error_r);
void db_close(struct db **db);

/* The backend's message for the last failure, for log lines. */
const char *db_errmsg(struct db *db);
/* Runs statements without parameters or results (DDL, migrations). 0 or -1. */
int db_exec(struct db *db, const char *sql);

/* NULL on a failure (see db_errmsg). */
struct db_stmt *db_prepare(struct db *db, const char *sql);
/* Resets the statement and gives it back to the driver; NULL is allowed. */
void db_finish(struct db_stmt *stmt);
/* Binds args[0], args[1], ... to parameters 1, 2, ... (numbered from 1). Texts are bound
 * without a copy — they must stay as they are until the statement is finished — and blobs with
 * one. A failure is kept in the statement (bind_failed) and reported by db_step(). One call for
 * the list: the hot statements bind a dozen values each. */
void db_bind_args(struct db_stmt *stmt, const struct db_arg *args);
/* For drivers: parameter `index` could not be bound (the first such is kept). */
void db_bind_failed(struct db_stmt *stmt, int index);
/* enum db_rc; DB_ERROR without running the statement when a bind failed. */
int db_step(struct db_stmt *stmt);
/* Columns are numbered from 0. Text is "" for NULL; valid until the next step or finish. */
const char *db_column_text(struct db_stmt *stmt, int index);
int64_t db_column_int64(struct db_stmt *stmt, int index);
const void *db_column_blob(struct db_stmt *stmt, int index, size_t *len_r);
bool db_column_is_null(struct db_stmt *stmt, int index);
/* Rows changed by the last INSERT/UPDATE/DELETE. */
int64_t db_changes(struct db *db);
/* The number the last INSERT gave its row (an INTEGER PRIMARY KEY / identity column). */
int64_t db_last_insert_id(struct db *db);

/* Transactions. Savepoints nest (one per job, one per multi-statement operation inside it);
 * db_rollback_to() undoes the innermost savepoint and removes it, as db_release() does. */
int db_begin(struct db *db, enum db_tx_mode mode);
int db_commit(struct db *db);
int db_rollback(struct db *db);
int db_savepoint(struct db *db);
int db_release(struct db *db);
int db_rollback_to(struct db *db);
/* False when the engine ended the transaction on its own (SQLite does on some I/O errors). */
bool db_in_transaction(struct db *db);

/* The write-ahead log. SQLite does not fold its log back into the database file by itself here
 * (no automatic checkpoint): the store does it from a second connection on a thread of its own,
 * so that a commit never pays for it. db_log_pages() is the log's length in pages after this
 * connection's last commit or checkpoint, -1 when the backend has no such log.
 * db_checkpoint() copies what it can without waiting for anyone (passive), or with `restart`
 * waits for the writer's transaction to end, copies the rest and lets the log start over (a
 * log that writers keep appending to is otherwise never rewound): 0 or -1. */
int64_t db_log_pages(struct db *db);
int db_checkpoint(struct db *db, bool restart);
/* A descriptor of the write-ahead log file, so that another thread can make the commits before
 * a point durable with fdatasync() while this connection goes on (see store.c's sync thread);
 * -1 when the backend has none (or the log does not exist yet: call it after a commit). Owned
 * by the db, closed with it; the log file stays the same file while the connection is open. */
int db_log_fd(struct db *db);

#endif
