/* Helpers for the operations (ops_*.c) and the store's own files: a failure logged once with its
 * operation's name, statements run in one call with typed arguments, rows read into structs
 * through field tables, savepoints around multi-statement operations. Internal to src/store.
 *
 * Ownership: arguments are borrowed — texts are bound without a copy, so they must stay as they
 * are until the statement is finished (the one-call helpers finish it before they return). Rows
 * read into a caller's struct may hold malloc'd fields (SQL_FIELD_TEXT_DUP, SQL_FIELD_BLOB_DUP),
 * which the struct's own free function releases; sql_list_alloc's array is the caller's to free. */
#ifndef MT_STORE_SQL_H
#define MT_STORE_SQL_H

#include "store/db.h"
#include "store/store_internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- failures ---- */

/* Logs "store.error op=OP error=<backend message>" and returns -1. Never pass values: secrets
 * and sealed blobs must not reach a log line, and the backend message does not contain them. */
int store_fail(struct store_tx *tx, const char *op);
/* Logs a refused argument (a count over its cap, an unknown enum value) and returns -1. */
int store_invalid(const char *op, const char *why);
/* -1 (logged) when a write operation is called from a STORE_READ job. The write statements
 * below check it themselves; an operation calls it first when it reads before it writes. */
int store_need_write(struct store_tx *tx, const char *op);
/* The start of an operation that creates a row: store_need_write, then a new id with `prefix`
 * in id_r and the time (unix seconds) in *created_r. 0 or -1. */
int store_new_row(struct store_tx *tx, const char *op, const char *prefix, char id_r[MT_ID_MAX],
                  int64_t *created_r);

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

/* ---- arguments ----
 *
 * A statement's parameters, bound in order (?1, ?2, ... or ? ? ...) from a list (db.h's
 * struct db_arg): SQL_ARGS(SQL_TEXT(org_id), SQL_INT(now)). NULL is a statement without any.
 * A failed bind is not checked where it happens: the statement keeps it and its step fails. */

#define SQL_TEXT(v)    ((struct db_arg){.type = DB_ARG_TEXT, .text = (v)})
#define SQL_INT(v)     ((struct db_arg){.type = DB_ARG_INT, .value = (v)})
#define SQL_BLOB(p, n) ((struct db_arg){.type = DB_ARG_BLOB, .blob = (p), .value = (n)})
#define SQL_NULL       ((struct db_arg){.type = DB_ARG_NULL})
#define SQL_ARGS(...)  ((const struct db_arg[]){__VA_ARGS__, {.type = DB_ARG_END}})

/* ---- rows ----
 *
 * A row struct is read through a table of its fields, one per column: the column as the
 * SELECT list spells it, the field's type, offset and size. The table is written once, as a
 * list macro ROW(F, G, T) whose first entry is F(...) and every other G(...) — the
 * preprocessor cannot leave a last comma out, so each later entry brings its own:
 *
 *   #define USER_ROW(F, G, T)                                                             \
 *	F(T, TEXT, "u.id", id)                                                               \
 *	G(T, NAME, "u.role", role, role_names, STORE_ROLE_USER)                              \
 *	G(T, INT64, "u.created_at", created_at)
 *   SQL_TABLE(user_table, USER_ROW, struct store_user);
 *   ... "SELECT " SQL_COLUMNS(USER_ROW) " FROM users u WHERE ..."
 *
 * SQL_COLUMNS() is a string literal, so a statement stays one literal (the driver finds its
 * cached statement by the text's address), and the columns and the reader cannot disagree.
 * Each field's C type is checked at compile time against its kind. */

enum sql_field_type {
	SQL_FIELD_TEXT,     /* into a char array; a longer value is an error, never truncated */
	SQL_FIELD_TEXT_DUP, /* into a malloc'd char * ("" for NULL) */
	SQL_FIELD_INT64,
	SQL_FIELD_INT,      /* an int, size_t or enum stored as its number */
	SQL_FIELD_BOOL,     /* stored as 0/1 */
	SQL_FIELD_NAME,     /* an enum stored as its name: its index in `names` (NULL: none) */
	SQL_FIELD_BLOB,     /* bytes into an array, their count in the size_t at `aux` (NULL: 0) */
	SQL_FIELD_BLOB_DUP, /* bytes into a malloc'd, NUL-terminated char *, their count at `aux`;
	                     * NULL leaves both as they are */
};

struct sql_field {
	enum sql_field_type type;
	const char *column; /* for the log line of a value that does not fit */
	size_t offset, size;
	size_t aux;               /* BLOB, BLOB_DUP: the length's offset; NAME: the name count */
	const char *const *names; /* NAME */
	int fallback;             /* NAME: the value a name not in the table reads as */
};

struct sql_table {
	const struct sql_field *fields;
	size_t count;
	size_t row_size; /* the struct's size: the stride of sql_list's array */
};

#define SQL_COLUMNS(ROW)                        ROW(SQL_COLUMN_FIRST_, SQL_COLUMN_NEXT_, )
#define SQL_COLUMN_FIRST_(T, kind, column, ...) column
#define SQL_COLUMN_NEXT_(T, kind, column, ...)  ", " column

#define SQL_TABLE(name, ROW, T)                                                                    \
	static const struct sql_field name##_fields[] = {ROW(SQL_FIELD_, SQL_FIELD_, T)};          \
	static const struct sql_table name = {                                                     \
	    name##_fields, sizeof(name##_fields) / sizeof(name##_fields[0]), sizeof(T)}
/* A table of one text column read into a char[size] (lists of ids, addresses, keys). */
#define SQL_TEXT_TABLE(name, col, bytes)                                                           \
	static const struct sql_field name##_fields[] = {                                          \
	    {.type = SQL_FIELD_TEXT, .column = (col), .size = (bytes)}};                           \
	static const struct sql_table name = {name##_fields, 1, bytes}

#define SQL_FIELD_(T, kind, column, ...) SQL_F_##kind(T, column, __VA_ARGS__),
/* The member's place, and a compile error unless &member has type `type`. */
#define SQL_AT_(T, m, type)                                                                        \
	.offset = offsetof(T, m) + 0 * sizeof(_Generic(&((T *)0)->m, type : 1)),                   \
	.size = sizeof(((T *)0)->m)
#define SQL_LEN_(T, len)                                                                           \
	.aux = offsetof(T, len) + 0 * sizeof(_Generic(&((T *)0)->len, size_t * : 1))
#define SQL_F_TEXT(T, c, m)                                                                        \
	{                                                                                          \
		.type = SQL_FIELD_TEXT, .column = c, SQL_AT_(T, m, char(*)[sizeof(((T *)0)->m)])   \
	}
#define SQL_F_TEXT_DUP(T, c, m)                                                                    \
	{                                                                                          \
		.type = SQL_FIELD_TEXT_DUP, .column = c, SQL_AT_(T, m, char **)                    \
	}
#define SQL_F_INT64(T, c, m)                                                                       \
	{                                                                                          \
		.type = SQL_FIELD_INT64, .column = c, SQL_AT_(T, m, int64_t *)                     \
	}
#define SQL_F_BOOL(T, c, m)                                                                        \
	{                                                                                          \
		.type = SQL_FIELD_BOOL, .column = c, SQL_AT_(T, m, bool *)                         \
	}
#define SQL_F_INT(T, c, m)                                                                         \
	{                                                                                          \
		.type = SQL_FIELD_INT, .column = c,                                                \
		.offset = offsetof(T, m) + 0 * sizeof(_Generic(&((T *)0)->m, int * : 1,            \
		                                               unsigned * : 1, size_t * : 1)),     \
		.size = sizeof(((T *)0)->m)                                                        \
	}
#define SQL_F_NAME(T, c, m, table, value_else)                                                     \
	{                                                                                          \
		.type = SQL_FIELD_NAME, .column = c, SQL_AT_(T, m, unsigned *),                    \
		.aux = sizeof(table) / sizeof((table)[0]), .names = (table),                       \
		.fallback = (value_else)                                                           \
	}
#define SQL_F_BLOB(T, c, m, len)                                                                   \
	{                                                                                          \
		.type = SQL_FIELD_BLOB, .column = c,                                               \
		SQL_AT_(T, m, unsigned char(*)[sizeof(((T *)0)->m)]), SQL_LEN_(T, len)             \
	}
#define SQL_F_BLOB_DUP(T, c, m, len)                                                               \
	{                                                                                          \
		.type = SQL_FIELD_BLOB_DUP, .column = c, SQL_AT_(T, m, char **), SQL_LEN_(T, len)  \
	}

/* One int64 column (a count, a number, a time) into an int64_t. */
extern const struct sql_table sql_int64_table;

/* The name of `value` in a table of `count` names, or `names[fallback]` outside it. */
const char *sql_name(const char *const *names, size_t count, unsigned value, unsigned fallback);

/* ---- statements ---- */

/* Prepares `sql` and binds `args`; NULL (logged) on a failure. */
struct db_stmt *sql_prepare(struct store_tx *tx, const char *op, const char *sql,
                            const struct db_arg *args);
/* Steps `s`: 1 on a row; 0 at the end and -1 (logged) on a failure, both with `s` finished. A
 * caller that stops at a row finishes `s` itself. */
int sql_step(struct store_tx *tx, const char *op, struct db_stmt *s);
/* Reads the current row of `s`, from column `first`, into `row` through `table`; returns the
 * column after the last one read, or -1 (logged) when a value does not fit its field or memory
 * ran out (`row` may then hold some malloc'd fields: free it as a read row). */
int sql_read(const char *op, struct db_stmt *s, int first, const struct sql_table *table,
             void *row);

/* Runs a statement without result rows: the number of rows it changed, or -1 (logged). These
 * three are for writes: in a STORE_READ job they fail (-1, logged) before preparing. */
int64_t sql_exec(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args);
/* sql_exec for a statement that is to change a row: 0, STORE_NOT_FOUND when it changed none,
 * or -1. */
int sql_change(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args);
/* An INSERT whose constraints are the caller's outcomes: 0 when it wrote a row;
 * STORE_CONFLICT on a UNIQUE violation; STORE_NOT_FOUND on a FOREIGN KEY violation or when it
 * wrote nothing (an INSERT ... SELECT that found no row); -1 (logged) on any other failure. */
int sql_insert(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args);

/* sql_insert of a new row: store_new_row (a write job, a new id with `prefix` in id_r, the time
 * in *created_r), then `sql` with the id and the time bound first, before `args` (at most
 * MT_STORE_CALLER_ARGS_MAX). */
int sql_insert_new(struct store_tx *tx, const char *op, const char *prefix, char id_r[MT_ID_MAX],
                   int64_t *created_r, const char *sql, const struct db_arg *args);
/* Runs a query to its first row: the statement, to read and finish, or NULL with *rc_r
 * STORE_NOT_FOUND (no row) or -1 (logged). */
struct db_stmt *sql_first(struct store_tx *tx, const char *op, const char *sql,
                          const struct db_arg *args, int *rc_r);
/* The first row of a query into `row` (NULL `table`: only whether there is one): 0,
 * STORE_NOT_FOUND without a row, or -1. */
int sql_get(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
            const struct sql_table *table, void *row);
/* The rows of a query into `rows`, an array of `max` rows of table->row_size bytes; rows past
 * `max` are not read. *count_r is how many were filled (on -1, with the one that failed). */
int sql_list(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
             const struct sql_table *table, void *rows, size_t max, size_t *count_r);
/* The same into an array grown as rows come (`first` rows, then doubling), at most `max` rows,
 * each zeroed before it is read: *rows_r (malloc'd, NULL without rows) and *count_r are set
 * even on -1. */
int sql_list_alloc(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
                   const struct sql_table *table, size_t first, size_t max, void **rows_r,
                   size_t *count_r);

#endif
