/* Helpers for the operations (ops_*.c) and the store's own files: a failure logged once with
 * its operation's name, one-call statements, savepoints around multi-statement operations.
 * Internal to src/store. Ownership: nothing here keeps a pointer it is given. */
#ifndef MT_STORE_SQL_H
#define MT_STORE_SQL_H

#include "store/store_internal.h"

/* Logs "store.error op=OP error=<backend message>" and returns -1. Never pass values: secrets
 * and sealed blobs must not reach a log line, and the backend message does not contain them. */
int store_fail(struct store_tx *tx, const char *op);
/* As store_fail, and finishes `stmt`. */
int store_fail_stmt(struct store_tx *tx, const char *op, struct db_stmt *stmt);

/* Runs one statement without results whose parameters are all text: `count` values after it,
 * bound in order. 0, or -1 (logged). *changes_r (may be NULL) is the number of rows changed. */
int store_exec_texts(struct store_tx *tx, const char *op, const char *sql, int64_t *changes_r,
                     size_t count, ...);

/* Whether a query with text parameters returns a row: 0 when it does, STORE_NOT_FOUND when not,
 * -1 (logged) on a failure. For "does this id belong to this org" checks. */
int store_row_exists(struct store_tx *tx, const char *op, const char *sql, size_t count, ...);

/* Logs a refused argument (a count over its cap, an unknown enum value) and returns -1. */
int store_invalid(const char *op, const char *why);
/* -1 (logged) when a write operation is called from a STORE_READ job. */
int store_need_write(struct store_tx *tx, const char *op);

/* A savepoint around a multi-statement operation, so that a conflict half-way leaves nothing
 * behind even when the job goes on and returns 0. op_end() releases on 0 and rolls back
 * otherwise, then returns `rc` (or -1 if that failed).
 *
 * Most operations do without: they decide every outcome other than -1 (not found, conflict)
 * before their first write, and after -1 the job must fail anyway. Only those that can meet a
 * conflict after writing (user create/update: an alias) pay for one. That matters: a savepoint
 * nested in a long job makes SQLite copy every page it touches into the statement journal,
 * which made a 50,000-profile import job quadratic. */
int store_op_begin(struct store_tx *tx, const char *op);
int store_op_end(struct store_tx *tx, const char *op, int rc);

/* Copies a column into a fixed field, truncating (the schema never stores longer values than the
 * structs hold: the operations refuse them first). */
void store_col_copy(struct db_stmt *stmt, int index, char *dst, size_t size);

#endif
