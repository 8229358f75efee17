/* The SQL helpers every operation uses: failures logged once, statements run in one call,
 * savepoints around multi-statement operations. */
#include "store/sql.h"
#include "lib/log.h"
#include "lib/str.h"

#include <stdarg.h>

int store_fail(struct store_tx *tx, const char *op)
{
	mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", op), MT_KV("error", db_errmsg(tx->db)));
	return -1;
}

int store_fail_stmt(struct store_tx *tx, const char *op, struct db_stmt *stmt)
{
	store_fail(tx, op);
	db_finish(stmt);
	return -1;
}

int store_exec_texts(struct store_tx *tx, const char *op, const char *sql, int64_t *changes_r,
                     size_t count, ...)
{
	struct db_stmt *s = db_prepare(tx->db, sql);
	if (s == NULL)
		return store_fail(tx, op);
	va_list ap;
	va_start(ap, count);
	for (size_t i = 0; i < count; i++)
		db_bind_text_ref(s, (int)i + 1, va_arg(ap, const char *));
	va_end(ap);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	if (changes_r != NULL)
		*changes_r = db_changes(tx->db);
	return 0;
}

int store_row_exists(struct store_tx *tx, const char *op, const char *sql, size_t count, ...)
{
	struct db_stmt *s = db_prepare(tx->db, sql);
	if (s == NULL)
		return store_fail(tx, op);
	va_list ap;
	va_start(ap, count);
	for (size_t i = 0; i < count; i++)
		db_bind_text_ref(s, (int)i + 1, va_arg(ap, const char *));
	va_end(ap);
	int rc = db_step(s);
	if (rc != DB_ROW && rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return rc == DB_ROW ? 0 : STORE_NOT_FOUND;
}

int store_invalid(const char *op, const char *why)
{
	mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", op), MT_KV("error", why));
	return -1;
}

int store_need_write(struct store_tx *tx, const char *op)
{
	if (tx->writable)
		return 0;
	mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", op), MT_KV("error", "write in a read job"));
	return -1;
}

int store_op_begin(struct store_tx *tx, const char *op)
{
	if (store_need_write(tx, op) < 0)
		return -1;
	if (db_savepoint(tx->db) < 0)
		return store_fail(tx, op);
	return 0;
}

int store_op_end(struct store_tx *tx, const char *op, int rc)
{
	if (rc == 0) {
		if (db_release(tx->db) < 0)
			return store_fail(tx, op);
		return 0;
	}
	if (db_rollback_to(tx->db) < 0)
		return store_fail(tx, op);
	return rc;
}

void store_col_copy(struct db_stmt *stmt, int index, char *dst, size_t size)
{
	mt_strlcpy(dst, db_column_text(stmt, index), size);
}
