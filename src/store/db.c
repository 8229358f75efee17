#include "store/db.h"

#include <string.h>

struct db *db_open(const char *url, const char **error_r)
{
	if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
		*error_r = "the PostgreSQL backend is not built yet";
		return NULL;
	}
	if (strncmp(url, "sqlite://", 9) == 0)
		url += 9;
	if (url[0] == '\0') {
		*error_r = "empty database path";
		return NULL;
	}
	return db_sqlite_open(url, error_r);
}

void db_close(struct db **db)
{
	if (*db == NULL)
		return;
	(*db)->driver->close(*db);
	*db = NULL;
}

const char *db_errmsg(struct db *db)
{
	return db->driver->errmsg(db);
}

int db_exec(struct db *db, const char *sql)
{
	return db->driver->exec(db, sql);
}

struct db_stmt *db_prepare(struct db *db, const char *sql)
{
	return db->driver->prepare(db, sql);
}

static struct db *stmt_db(struct db_stmt *stmt)
{
	return stmt->db;
}

void db_finish(struct db_stmt *stmt)
{
	if (stmt == NULL)
		return;
	stmt->bind_failed = 0;
	stmt_db(stmt)->driver->finish(stmt);
}

void db_bind_failed(struct db_stmt *stmt, int index)
{
	if (stmt->bind_failed == 0)
		stmt->bind_failed = index;
}

void db_bind_args(struct db_stmt *stmt, const struct db_arg *args)
{
	stmt_db(stmt)->driver->bind_args(stmt, args);
}

int db_step(struct db_stmt *stmt)
{
	if (stmt->bind_failed != 0)
		return DB_ERROR;
	return stmt_db(stmt)->driver->step(stmt);
}

const char *db_column_text(struct db_stmt *stmt, int index)
{
	return stmt_db(stmt)->driver->column_text(stmt, index);
}

int64_t db_column_int64(struct db_stmt *stmt, int index)
{
	return stmt_db(stmt)->driver->column_int64(stmt, index);
}

const void *db_column_blob(struct db_stmt *stmt, int index, size_t *len_r)
{
	return stmt_db(stmt)->driver->column_blob(stmt, index, len_r);
}

bool db_column_is_null(struct db_stmt *stmt, int index)
{
	return stmt_db(stmt)->driver->column_is_null(stmt, index);
}

int db_begin(struct db *db, enum db_tx_mode mode)
{
	return db->driver->begin(db, mode);
}

/* The calls that pass the connection alone to the driver and return what it does. */
#define DB_FORWARD(type, name)                                                                     \
	type db_##name(struct db *db)                                                              \
	{                                                                                          \
		return db->driver->name(db);                                                       \
	}
DB_FORWARD(int64_t, changes)
DB_FORWARD(int64_t, last_insert_id)
DB_FORWARD(int, commit)
DB_FORWARD(int, rollback)
DB_FORWARD(int, savepoint)
DB_FORWARD(int, release)
DB_FORWARD(int, rollback_to)
DB_FORWARD(bool, in_transaction)

int64_t db_log_pages(struct db *db)
{
	return db->driver->log_pages != NULL ? db->driver->log_pages(db) : -1;
}

int db_log_fd(struct db *db)
{
	return db->driver->log_fd != NULL ? db->driver->log_fd(db) : -1;
}

int db_checkpoint(struct db *db, bool restart)
{
	return db->driver->checkpoint != NULL ? db->driver->checkpoint(db, restart) : 0;
}
