/* The SQL helpers every operation uses: failures logged once, statements run in one call, rows
 * read through field tables, savepoints around multi-statement operations. */
#include "store/sql.h"
#include "lib/log.h"
#include "lib/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- failures ---- */

int store_fail(struct store_tx *tx, const char *op)
{
	mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", op), MT_KV("error", db_errmsg(tx->db)));
	return -1;
}

/* A failed step, logged, and its statement finished. A bind failure is told as such: the
 * backend's message has moved on since (SQLite clears it on the next successful bind). */
static int fail_stmt(struct store_tx *tx, const char *op, struct db_stmt *s)
{
	if (s->bind_failed != 0) {
		char why[64];
		snprintf(why, sizeof(why), "parameter %d could not be bound", s->bind_failed);
		store_invalid(op, why);
	} else {
		store_fail(tx, op);
	}
	db_finish(s);
	return -1;
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

int store_new_row(struct store_tx *tx, const char *op, const char *prefix, char id_r[MT_ID_MAX],
                  int64_t *created_r)
{
	if (store_need_write(tx, op) < 0)
		return -1;
	store_new_id(prefix, id_r);
	*created_r = mt_wall_s();
	return 0;
}

/* The helpers that bind arguments of their own beside a statement's: `before` (nb), the
 * caller's `args` (at most MT_STORE_CALLER_ARGS_MAX), `after` (na), into `all` (room for
 * JOINED_ARGS). 0, or -1 (logged) over the cap. */
#define JOINED_ARGS (MT_STORE_CALLER_ARGS_MAX + 3)
static int join_args(const char *op, const struct db_arg *before, size_t nb,
                     const struct db_arg *args, const struct db_arg *after, size_t na,
                     struct db_arg all[JOINED_ARGS])
{
	size_t n = 0;
	for (size_t i = 0; i < nb; i++)
		all[n++] = before[i];
	for (size_t i = 0; args != NULL && args[i].type != DB_ARG_END; i++) {
		if (i == MT_STORE_CALLER_ARGS_MAX)
			return store_invalid(op, "too many arguments beside the helper's");
		all[n++] = args[i];
	}
	for (size_t i = 0; i < na; i++)
		all[n++] = after[i];
	all[n] = (struct db_arg){.type = DB_ARG_END};
	return 0;
}

int sql_insert_new(struct store_tx *tx, const char *op, const char *prefix, char id_r[MT_ID_MAX],
                   int64_t *created_r, const char *sql, const struct db_arg *args)
{
	if (store_new_row(tx, op, prefix, id_r, created_r) < 0)
		return -1;
	const struct db_arg row[] = {SQL_TEXT(id_r), SQL_INT(*created_r)};
	struct db_arg all[JOINED_ARGS];
	if (join_args(op, row, 2, args, NULL, 0, all) < 0)
		return -1;
	return sql_insert(tx, op, sql, all);
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

/* ---- rows ---- */

const struct sql_table sql_int64_table = {
    (const struct sql_field[]){
        {.type = SQL_FIELD_INT64, .column = "value", .size = sizeof(int64_t)}},
    1,
    sizeof(int64_t),
};

const char *sql_name(const char *const *names, size_t count, unsigned value, unsigned fallback)
{
	return value < count ? names[value] : names[fallback];
}

/* An integer into a field of its size (int, enum, size_t, int64_t). */
static void put_int(void *dst, size_t size, int64_t v)
{
	if (size == sizeof(int32_t)) {
		int32_t n = (int32_t)v;
		memcpy(dst, &n, sizeof(n));
	} else {
		memcpy(dst, &v, sizeof(v));
	}
}

/* A stored value longer than its field: a row the operations would not have written. */
static int too_long(const char *op, const struct sql_field *f)
{
	mt_log(MT_LOG_ERROR, "store.error", MT_KV("op", op),
	       MT_KV("error", "a stored value is longer than its field"),
	       MT_KV("column", f->column));
	return -1;
}

static void read_name(const struct sql_field *f, struct db_stmt *s, int col, void *dst)
{
	const char *text = db_column_text(s, col);
	int value = f->fallback;
	for (size_t i = 0; i < f->aux; i++) {
		if (f->names[i] != NULL && strcmp(text, f->names[i]) == 0) {
			value = (int)i;
			break;
		}
	}
	put_int(dst, f->size, value);
}

static int read_blob(const char *op, const struct sql_field *f, struct db_stmt *s, int col,
                     char *row)
{
	size_t len = 0;
	const void *p = db_column_blob(s, col, &len);
	if (f->type == SQL_FIELD_BLOB_DUP ? db_column_is_null(s, col) : p == NULL) {
		if (f->type == SQL_FIELD_BLOB)
			memset(row + f->aux, 0, sizeof(size_t));
		return 0;
	}
	void *dst = row + f->offset;
	if (f->type == SQL_FIELD_BLOB_DUP) {
		char *copy = malloc(len + 1);
		if (copy == NULL)
			return store_invalid(op, "out of memory");
		copy[len] = '\0';
		memcpy(dst, &copy, sizeof(copy));
		dst = copy;
	} else if (len > f->size) {
		return too_long(op, f);
	}
	if (len > 0)
		memcpy(dst, p, len);
	memcpy(row + f->aux, &len, sizeof(len));
	return 0;
}

/* Returns the column after the field's, or -1 (logged). */
static int read_field(const char *op, const struct sql_field *f, struct db_stmt *s, int col,
                      char *row)
{
	void *dst = row + f->offset;
	size_t len;
	const char *text;
	switch (f->type) {
	case SQL_FIELD_TEXT:
		text = db_column_text(s, col);
		len = strlen(text);
		if (len >= f->size)
			return too_long(op, f);
		memcpy(dst, text, len + 1);
		return col + 1;
	case SQL_FIELD_TEXT_DUP: {
		text = db_column_text(s, col);
		len = strlen(text);
		char *copy = malloc(len + 1);
		if (copy == NULL)
			return store_invalid(op, "out of memory");
		memcpy(copy, text, len + 1);
		memcpy(dst, &copy, sizeof(copy));
		return col + 1;
	}
	case SQL_FIELD_INT64:
	case SQL_FIELD_INT:
		put_int(dst, f->size, db_column_int64(s, col));
		return col + 1;
	case SQL_FIELD_BOOL:
		*(bool *)dst = db_column_int64(s, col) != 0;
		return col + 1;
	case SQL_FIELD_NAME:
		read_name(f, s, col, dst);
		return col + 1;
	case SQL_FIELD_BLOB:
	case SQL_FIELD_BLOB_DUP:
		return read_blob(op, f, s, col, row) < 0 ? -1 : col + 1;
	}
	return store_invalid(op, "unknown field type");
}

int sql_read(const char *op, struct db_stmt *s, int first, const struct sql_table *table, void *row)
{
	int col = first;
	for (size_t i = 0; i < table->count && col >= 0; i++)
		col = read_field(op, &table->fields[i], s, col, row);
	return col;
}

/* ---- statements ---- */

struct db_stmt *sql_prepare(struct store_tx *tx, const char *op, const char *sql,
                            const struct db_arg *args)
{
	struct db_stmt *s = db_prepare(tx->db, sql);
	if (s == NULL) {
		store_fail(tx, op);
		return NULL;
	}
	if (args != NULL)
		db_bind_args(s, args);
	return s;
}

int sql_step(struct store_tx *tx, const char *op, struct db_stmt *s)
{
	int rc = db_step(s);
	if (rc == DB_ROW)
		return 1;
	if (rc == DB_DONE) {
		db_finish(s);
		return 0;
	}
	return fail_stmt(tx, op, s);
}

/* Runs a statement without result rows — a write, refused in a read job — to its end: its
 * enum db_rc. Constraint violations are returned unlogged when `constraints` says the caller
 * decides on them; every other failure is logged (DB_ERROR). */
static int run(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
               bool constraints)
{
	if (!tx->writable && store_need_write(tx, op) < 0)
		return DB_ERROR;
	struct db_stmt *s = sql_prepare(tx, op, sql, args);
	if (s == NULL)
		return DB_ERROR;
	int rc = db_step(s);
	if (rc == DB_DONE || (constraints && (rc == DB_UNIQUE || rc == DB_FOREIGN))) {
		db_finish(s);
		return rc;
	}
	fail_stmt(tx, op, s);
	return DB_ERROR;
}

int64_t sql_exec(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args)
{
	if (run(tx, op, sql, args, false) != DB_DONE)
		return -1;
	return db_changes(tx->db);
}

int sql_change(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args)
{
	int64_t n = sql_exec(tx, op, sql, args);
	if (n < 0)
		return -1;
	return n == 0 ? STORE_NOT_FOUND : 0;
}

int sql_insert(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args)
{
	switch (run(tx, op, sql, args, true)) {
	case DB_DONE:
		return db_changes(tx->db) == 0 ? STORE_NOT_FOUND : 0;
	case DB_UNIQUE:
		return STORE_CONFLICT;
	case DB_FOREIGN:
		return STORE_NOT_FOUND;
	default:
		return -1;
	}
}

struct db_stmt *sql_first(struct store_tx *tx, const char *op, const char *sql,
                          const struct db_arg *args, int *rc_r)
{
	*rc_r = -1;
	struct db_stmt *s = sql_prepare(tx, op, sql, args);
	int rc = s != NULL ? sql_step(tx, op, s) : -1;
	if (rc > 0)
		return s;
	*rc_r = rc == 0 ? STORE_NOT_FOUND : -1;
	return NULL;
}

int sql_get(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
            const struct sql_table *table, void *row)
{
	int rc;
	struct db_stmt *s = sql_first(tx, op, sql, args, &rc);
	if (s == NULL)
		return rc;
	rc = table != NULL && sql_read(op, s, 0, table, row) < 0 ? -1 : 0;
	db_finish(s);
	return rc;
}

/* Reads the rows of `s` into rows[*count_r...] while there is room (*cap), growing the array
 * (to `grow` rows at first, then twice as many) when `grow` is not 0, up to `max`. Consumes
 * `s`. */
static int list_rows(struct store_tx *tx, const char *op, struct db_stmt *s,
                     const struct sql_table *table, char **rows, size_t *cap, size_t max,
                     size_t grow, size_t *count_r)
{
	size_t size = table->row_size;
	int rc = 1;
	while (*count_r < max && (rc = sql_step(tx, op, s)) > 0) {
		if (*count_r == *cap) {
			size_t ncap = *cap == 0 ? grow : *cap * 2;
			if (ncap > max)
				ncap = max;
			char *p = grow > 0 ? realloc(*rows, ncap * size) : NULL;
			if (p == NULL) {
				db_finish(s);
				return store_invalid(op, "out of memory");
			}
			*rows = p;
			*cap = ncap;
		}
		/* Zeroed as it is read, while its memory is at hand. */
		char *row = *rows + (*count_r)++ * size;
		if (grow > 0)
			memset(row, 0, size);
		if (sql_read(op, s, 0, table, row) < 0) {
			db_finish(s);
			return -1;
		}
	}
	if (rc > 0)
		db_finish(s); /* full: the rest is not read */
	return rc < 0 ? -1 : 0;
}

int sql_list(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
             const struct sql_table *table, void *rows, size_t max, size_t *count_r)
{
	*count_r = 0;
	struct db_stmt *s = sql_prepare(tx, op, sql, args);
	if (s == NULL)
		return -1;
	char *p = rows;
	size_t cap = max;
	return list_rows(tx, op, s, table, &p, &cap, max, 0, count_r);
}

int sql_list_alloc(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
                   const struct sql_table *table, size_t first, size_t max, void **rows_r,
                   size_t *count_r)
{
	*rows_r = NULL;
	*count_r = 0;
	struct db_stmt *s = sql_prepare(tx, op, sql, args);
	if (s == NULL)
		return -1;
	char *rows = NULL;
	size_t cap = 0;
	int rc = list_rows(tx, op, s, table, &rows, &cap, max, first > 0 ? first : 1, count_r);
	*rows_r = rows;
	return rc;
}

/* Whether a list cursor is an id such a list handed out: `prefix` ("ntf_", "msg_") and the
 * lower-case base32 or digits store ids are made of (lists page by id). */
static bool id_cursor_valid(const char *cursor, const char *prefix)
{
	size_t len = strlen(cursor), plen = strlen(prefix);
	return len > plen && len < MT_ID_MAX && strncmp(cursor, prefix, plen) == 0 &&
	       strspn(cursor + plen, "0123456789abcdefghijklmnopqrstuvwxyz") == len - plen;
}

int store_page_check(const char *op, const char **cursor, const char *prefix, size_t limit)
{
	if (*cursor == NULL)
		*cursor = "";
	if ((*cursor)[0] != '\0' && !id_cursor_valid(*cursor, prefix))
		return STORE_INVALID;
	if (limit == 0 || limit > MT_LIST_LIMIT_MAX)
		return store_invalid(op, "limit out of range");
	return 0;
}

int store_page_read(struct store_tx *tx, const char *op, const struct store_page_query *query,
                    const struct db_arg *args, const char *cursor, size_t limit, void *items_slot,
                    size_t item_size, size_t *count_r, char *next_cursor, size_t next_cursor_size)
{
	void *items = NULL;
	memcpy(items_slot, &items, sizeof(items));
	*count_r = 0;
	next_cursor[0] = '\0';
	int rc = store_page_check(op, &cursor, query->prefix, limit);
	if (rc != 0)
		return rc;
	if (item_size != query->table->row_size)
		return store_invalid(op, "page items are not the table's rows");
	for (size_t i = 0; i < query->table->count; i++) {
		enum sql_field_type t = query->table->fields[i].type;
		if (t == SQL_FIELD_TEXT_DUP || t == SQL_FIELD_BLOB_DUP)
			return store_invalid(op, "page items hold malloc'd fields");
	}
	const struct db_arg page[] = {SQL_TEXT(cursor[0] != '\0'     ? cursor
	                                       : query->newest_first ? "~"
	                                                             : ""),
	                              SQL_INT((int64_t)limit + 1)};
	struct db_arg all[JOINED_ARGS];
	if (join_args(op, NULL, 0, args, page, 2, all) < 0)
		return -1;
	size_t count = 0;
	rc = sql_list_alloc(tx, op, query->sql, all, query->table, 8, limit + 1, &items, &count);
	if (rc != 0) {
		free(items); /* rows without malloc'd fields (checked above) */
		return rc;
	}
	if (count > limit) {
		count = limit;
		const char *last = (const char *)items + (limit - 1) * item_size + query->id_offset;
		mt_strlcpy(next_cursor, last, next_cursor_size);
	}
	memcpy(items_slot, &items, sizeof(items));
	*count_r = count;
	return 0;
}

int store_feed_rows(struct store_tx *tx, const char *op, const char *sql, const char *org_id,
                    int64_t after, size_t limit, const struct sql_table *table, void **rows_r,
                    size_t *count_r)
{
	return sql_list_alloc(tx, op, sql,
	                      SQL_ARGS(SQL_TEXT(org_id), SQL_INT(after), SQL_INT(limit)), table,
	                      limit < 16 ? limit : 16, limit, rows_r, count_r);
}
