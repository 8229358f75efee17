/* The store's SQL helpers (src/store/sql.h) on a scratch table of a temp-file store: a failed
 * bind reported by the step, rows read through field tables (a value longer than its field is
 * an error, an unknown name reads as the fallback), lists capped and grown, pages by id with
 * their cursor, and write statements refused in a read job. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/sql.h"
#include "store/store_internal.h"
#include "store/store.h"
#include "temp_store.h"

#include <stdlib.h>
#include <string.h>

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct store *store;
};

static int j_scratch(struct store_tx *tx, void *arg)
{
	(void)arg;
	static const char *const rows[] = {
	    "INSERT INTO scratch VALUES ('one', 1, 'red', x'0102')",
	    "INSERT INTO scratch VALUES ('three', 3, 'blue', NULL)",
	    "INSERT INTO scratch VALUES ('fourteen', 14, 'red', x'')",
	    "INSERT INTO scratch VALUES ('two', 2, 'red', NULL)",
	    "INSERT INTO scratch VALUES ('five', 5, 'puce', NULL)",
	    "CREATE TABLE pages (id TEXT, org TEXT)",
	    "INSERT INTO pages VALUES ('pg_1', 'a'), ('pg_2', 'a'), ('pg_3', 'b'), ('pg_4', 'a'),"
	    " ('pg_5', 'a')"};
	if (db_exec(tx->db,
	            "CREATE TABLE scratch (name TEXT, n BIGINT, colour TEXT, bytes BYTEA)") < 0)
		return -1;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (db_exec(tx->db, rows[i]) < 0)
			return -1;
	}
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (temp_store_open("test_store_sql", f->dir, f->path, &f->store) < 0)
		return -1;
	if (store_run(f->store, STORE_WRITE, j_scratch, NULL) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	temp_store_close(f->dir, f->path, &f->store);
	free(f);
	return 0;
}

enum colour { COLOUR_RED, COLOUR_BLUE, COLOUR_UNKNOWN };
static const char *const colour_names[] = {[COLOUR_RED] = "red", [COLOUR_BLUE] = "blue"};

struct row {
	char name[6]; /* "fourteen" does not fit */
	int64_t n;
	enum colour colour;
	unsigned char bytes[2];
	size_t bytes_len;
};
#define ROW(F, G, T)                                                                               \
	F(T, TEXT, "name", name)                                                                   \
	G(T, INT64, "n", n)                                                                        \
	G(T, NAME, "colour", colour, colour_names, COLOUR_UNKNOWN)                                 \
	G(T, BLOB, "bytes", bytes, bytes_len)
SQL_TABLE(row_table, ROW, struct row);
SQL_TEXT_TABLE(name_table, "name", 16);

struct call {
	int64_t n;
	struct row row;
	int64_t changed;
	char names[8][16];
	size_t count;
	void *rows;
};

static int j_get(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	memset(&c->row, 0xff, sizeof(c->row));
	return sql_get(tx, "test", "SELECT " SQL_COLUMNS(ROW) " FROM scratch WHERE n = ?",
	               SQL_ARGS(SQL_INT(c->n)), &row_table, &c->row);
}

static void test_rows(void **state)
{
	struct fixture *f = *state;
	struct call c = {.n = 1};
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), 0);
	assert_string_equal(c.row.name, "one");
	assert_int_equal(c.row.n, 1);
	assert_int_equal(c.row.colour, COLOUR_RED);
	assert_int_equal(c.row.bytes_len, 2);
	assert_int_equal(c.row.bytes[1], 2);

	/* NULL bytes are none. */
	c.n = 3;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), 0);
	assert_string_equal(c.row.name, "three");
	assert_int_equal(c.row.colour, COLOUR_BLUE);
	assert_int_equal(c.row.bytes_len, 0);

	/* A name not in the table reads as the fallback. */
	c.n = 5;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), 0);
	assert_int_equal(c.row.colour, COLOUR_UNKNOWN);

	/* A text longer than its field is an error, not a truncated value. */
	c.n = 14;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), -1);

	c.n = 99;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), STORE_NOT_FOUND);
}

static int j_bad_bind(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	/* Three arguments for two parameters: the third bind fails, the step reports it. */
	c->changed = sql_exec(tx, "test", "UPDATE scratch SET n = ? WHERE name = ?",
	                      SQL_ARGS(SQL_INT(10), SQL_TEXT("one"), SQL_INT(0)));
	if (c->changed != -1)
		return 1;
	/* The cached statement is clean again once finished. */
	c->changed = sql_exec(tx, "test", "UPDATE scratch SET n = ? WHERE name = ?",
	                      SQL_ARGS(SQL_INT(10), SQL_TEXT("one")));
	return 0;
}

static void test_bind_failure_reported_by_step(void **state)
{
	struct fixture *f = *state;
	struct call c = {0};
	assert_int_equal(store_run(f->store, STORE_WRITE, j_bad_bind, &c), 0);
	assert_int_equal(c.changed, 1);
	c.n = 10;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), 0);
	assert_string_equal(c.row.name, "one");
}

static int j_list(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	return sql_list(tx, "test", "SELECT name FROM scratch ORDER BY n", NULL, &name_table,
	                c->names, 3, &c->count);
}

static int j_list_alloc(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	return sql_list_alloc(tx, "test", "SELECT name FROM scratch ORDER BY n", NULL, &name_table,
	                      1, 4, &c->rows, &c->count);
}

static void test_lists(void **state)
{
	struct fixture *f = *state;
	struct call c = {0};
	assert_int_equal(store_run(f->store, STORE_READ, j_list, &c), 0);
	assert_int_equal(c.count, 3);
	assert_string_equal(c.names[0], "one");
	assert_string_equal(c.names[2], "three");

	/* Grown from one row, stopped at the cap. */
	assert_int_equal(store_run(f->store, STORE_READ, j_list_alloc, &c), 0);
	assert_int_equal(c.count, 4);
	const char(*names)[16] = c.rows;
	assert_string_equal(names[1], "two");
	assert_string_equal(names[3], "five");
	free(c.rows);
}

static int j_write(struct store_tx *tx, void *arg)
{
	(void)arg;
	return sql_exec(tx, "test", "DELETE FROM scratch", NULL) < 0 ? -1 : 0;
}

static void test_write_refused_in_read_job(void **state)
{
	struct fixture *f = *state;
	struct call c = {.n = 1};
	assert_int_equal(store_run(f->store, STORE_READ, j_write, NULL), -1);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), 0);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_write, NULL), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, &c), STORE_NOT_FOUND);
}

/* ---- pages (store_page_read) ---- */

struct page_item {
	char id[MT_ID_MAX];
};
struct page_list {
	struct page_item *items;
	size_t count;
	char next_cursor[MT_ID_MAX];
};
#define PAGE_ROW(F, G, T) F(T, TEXT, "id", id)
SQL_TABLE(page_table, PAGE_ROW, struct page_item);
struct dup_item {
	char *id;
};
#define DUP_ROW(F, G, T) F(T, TEXT_DUP, "id", id)
SQL_TABLE(dup_table, DUP_ROW, struct dup_item);

static const struct store_page_query oldest_first = {
    "SELECT id FROM pages WHERE org = ? AND id > ? ORDER BY id LIMIT ?", &page_table,
    offsetof(struct page_item, id), "pg_", false};
static const struct store_page_query newest_first = {
    "SELECT id FROM pages WHERE org = ? AND id < ? ORDER BY id DESC LIMIT ?", &page_table,
    offsetof(struct page_item, id), "pg_", true};
static const struct store_page_query malloc_rows = {
    "SELECT id FROM pages WHERE org = ? AND id < ? ORDER BY id DESC LIMIT ?", &dup_table,
    offsetof(struct dup_item, id), "pg_", true};

struct page_call {
	const struct store_page_query *query;
	const char *cursor;
	size_t limit;
	bool too_many_args, wrong_items;
	struct page_list list;
};

static int j_page(struct store_tx *tx, void *arg)
{
	struct page_call *c = arg;
	if (c->too_many_args)
		return STORE_PAGE_READ(tx, "test", c->query,
		                       SQL_ARGS(SQL_TEXT("a"), SQL_NULL, SQL_NULL, SQL_NULL,
		                                SQL_NULL, SQL_NULL, SQL_NULL),
		                       c->cursor, c->limit, &c->list);
	if (c->wrong_items) {
		struct {
			char (*items)[8];
			size_t count;
			char next_cursor[MT_ID_MAX];
		} small;
		memset(&small, 0xff, sizeof(small));
		int rc = STORE_PAGE_READ(tx, "test", c->query, SQL_ARGS(SQL_TEXT("a")), c->cursor,
		                         c->limit, &small);
		c->list.items = (struct page_item *)(void *)small.items;
		c->list.count = small.count;
		memcpy(c->list.next_cursor, small.next_cursor, sizeof(small.next_cursor));
		return rc;
	}
	return STORE_PAGE_READ(tx, "test", c->query, SQL_ARGS(SQL_TEXT("a")), c->cursor, c->limit,
	                       &c->list);
}

static void page(struct fixture *f, struct page_call *c, int rc, const char *ids, const char *next)
{
	free(c->list.items);
	memset(&c->list, 0xff, sizeof(c->list)); /* every field is set on every return */
	assert_int_equal(store_run(f->store, STORE_READ, j_page, c), rc);
	char got[64] = "";
	for (size_t i = 0; i < c->list.count; i++) {
		strcat(got, c->list.items[i].id);
		strcat(got, " ");
	}
	assert_string_equal(got, ids);
	assert_string_equal(c->list.next_cursor, next);
	if (rc != 0)
		assert_null(c->list.items);
}

static void test_pages(void **state)
{
	struct fixture *f = *state;
	/* Oldest first, the caller's argument (org 'a') before the cursor and the row count. */
	struct page_call c = {.query = &oldest_first, .cursor = NULL, .limit = 2};
	page(f, &c, 0, "pg_1 pg_2 ", "pg_2");
	c.cursor = "pg_2";
	page(f, &c, 0, "pg_4 pg_5 ", "");
	/* Newest first: the first page starts after every id. */
	c.query = &newest_first;
	c.cursor = "";
	page(f, &c, 0, "pg_5 pg_4 ", "pg_4");
	c.cursor = "pg_4";
	page(f, &c, 0, "pg_2 pg_1 ", "");
	c.limit = 3;
	c.cursor = "pg_5";
	page(f, &c, 0, "pg_4 pg_2 pg_1 ", "");
	/* Refused: a cursor it did not hand out, a limit out of range, items that are not the
	 * table's rows, rows with malloc'd fields, arguments over the cap. */
	c.cursor = "usr_1";
	page(f, &c, STORE_INVALID, "", "");
	c.cursor = "";
	c.limit = 0;
	page(f, &c, -1, "", "");
	c.limit = 2;
	c.wrong_items = true;
	page(f, &c, -1, "", "");
	c.wrong_items = false;
	c.query = &malloc_rows;
	page(f, &c, -1, "", "");
	c.query = &newest_first;
	c.too_many_args = true;
	page(f, &c, -1, "", "");
	c.too_many_args = false;
	page(f, &c, 0, "pg_5 pg_4 ", "pg_4");
	free(c.list.items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bind_failure_reported_by_step, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_refused_in_read_job, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
