/* The store's SQL helpers (src/store/sql.h) on a scratch table of a temp-file store: a failed
 * bind reported by the step, rows read through field tables (a value longer than its field is
 * an error, an unknown name reads as the fallback), lists capped and grown, and write
 * statements refused in a read job. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/sql.h"
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
	    "INSERT INTO scratch VALUES ('five', 5, 'puce', NULL)"};
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bind_failure_reported_by_step, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_refused_in_read_job, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
