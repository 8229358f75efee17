/* The writes gathered by store/wal_vfs.c, through the SQLite driver: every commit is on the
 * file when SQLite publishes it (a second connection, on SQLite's own VFS, reads it at once,
 * also after the log starts over), a commit of many pages takes a few writes rather than two a
 * page and more than the unix VFS's 128 KiB a call, so does the checkpoint that copies them
 * back (and a connection opened after it reads them from the database file), and a
 * transaction that spills pages into the log mid-way and rewrites them reads its own gathered
 * frames back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
	char dir[64];
	char path[96];
	struct db *db;   /* ours: the gathering VFS */
	sqlite3 *reader; /* SQLite's default VFS, another connection */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_wal_vfs.XXXXXX");
	if (f == NULL || mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/wal.db", f->dir);
	const char *error = NULL;
	f->db = db_sqlite_open(f->path, &error);
	if (f->db == NULL) {
		fprintf(stderr, "db_sqlite_open: %s\n", error);
		return -1;
	}
	if (db_exec(f->db, "CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)") < 0 ||
	    sqlite3_open_v2(f->path, &f->reader, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	sqlite3_close(f->reader);
	db_close(&f->db);
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char p[128];
		snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static int64_t reader_int(sqlite3 *reader, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(reader, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void assert_reader_sound(sqlite3 *reader)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(reader, "PRAGMA integrity_check", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

/* Write system calls of this process so far (/proc/self/io's syscw). */
static long long write_calls(void)
{
	FILE *io = fopen("/proc/self/io", "r");
	assert_non_null(io);
	char line[128];
	long long n = -1;
	while (fgets(line, sizeof(line), io) != NULL) {
		if (sscanf(line, "syscw: %lld", &n) == 1)
			break;
	}
	fclose(io);
	assert_true(n >= 0);
	return n;
}

/* ~1,000 pages: 2,000 rows of 2,000 random bytes, in the caller's transaction. */
static void insert_2000_rows(struct db *db)
{
	assert_int_equal(db_exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
	                             " FROM n WHERE i < 2000)"
	                             " INSERT INTO t (pad) SELECT randomblob(2000) FROM n"),
	                 0);
}

/* Non-durable commits (no sync): only the flush at the commit frame puts them on the file
 * before SQLite's wal-index says they are there. */
static void test_each_commit_visible_to_another_connection(void **state)
{
	struct fixture *f = *state;
	for (int i = 1; i <= 60; i++) {
		assert_int_equal(db_begin(f->db, DB_TX_WRITE), 0);
		assert_int_equal(db_exec(f->db, "INSERT INTO t (pad) VALUES (randomblob(3000))"),
		                 0);
		assert_int_equal(db_commit(f->db), 0);
		assert_int_equal(reader_int(f->reader, "SELECT count(*) FROM t"), i);
		if (i % 20 == 0) {
			/* The log starts over: the writer's next frames go to offset 32 again. */
			assert_int_equal(db_checkpoint(f->db, true), 0);
			assert_int_equal(sqlite3_wal_checkpoint_v2(f->reader, NULL,
			                                           SQLITE_CHECKPOINT_TRUNCATE, NULL,
			                                           NULL),
			                 SQLITE_OK);
		}
	}
	assert_reader_sound(f->reader);
}

static void test_large_commit_takes_few_writes(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(db_begin(f->db, DB_TX_WRITE_DURABLE), 0);
	insert_2000_rows(f->db);
	long long before = write_calls();
	assert_int_equal(db_commit(f->db), 0);
	long long writes = write_calls() - before;
	/* ~1,000 pages (4 MiB of frames): two writes a page ungathered, ~32 of 128 KiB gathered. */
	assert_in_range(writes, 1, 100);
	assert_int_equal(reader_int(f->reader, "SELECT count(*) FROM t"), 2000);
	assert_reader_sound(f->reader);
}

static int64_t writer_int(struct db *db, const char *sql)
{
	struct db_stmt *st = db_prepare(db, sql);
	assert_non_null(st);
	assert_int_equal(db_step(st), DB_ROW);
	int64_t v = db_column_int64(st, 0);
	db_finish(st);
	return v;
}

/* The checkpoint copies the commit's ~1,000 pages back into the database file in page order:
 * a few gathered writes, not one a page. A connection opened afterwards, on SQLite's own VFS,
 * reads them from the database file (the log has started over). */
static void test_checkpoint_takes_few_writes(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(db_begin(f->db, DB_TX_WRITE), 0);
	insert_2000_rows(f->db);
	assert_int_equal(db_commit(f->db), 0);
	long long before = write_calls();
	assert_int_equal(db_checkpoint(f->db, true), 0);
	long long writes = write_calls() - before;
	assert_in_range(writes, 1, 100);
	sqlite3 *fresh = NULL;
	assert_int_equal(sqlite3_open_v2(f->path, &fresh, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(reader_int(fresh, "SELECT count(*) FROM t"), 2000);
	assert_int_equal(reader_int(fresh, "SELECT count(*) FROM t WHERE length(pad) = 2000"),
	                 2000);
	assert_reader_sound(fresh);
	sqlite3_close(fresh);
}

/* A cache of 8 pages: the transaction writes frames before its commit, reads the last ones
 * back (still gathered, not yet on the file), and rewrites some in place (not at the end of
 * the log). */
static void test_spilled_frames_read_back(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(db_exec(f->db, "PRAGMA cache_size=8"), 0);
	assert_int_equal(db_begin(f->db, DB_TX_WRITE), 0);
	assert_int_equal(db_exec(f->db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
	                                " FROM n WHERE i < 3000)"
	                                " INSERT INTO t (n, pad) SELECT i, zeroblob(900) FROM n"),
	                 0);
	assert_int_equal(writer_int(f->db, "SELECT sum(length(pad)) FROM t"), 3000 * 900);
	for (int i = 0; i < 1000; i++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "UPDATE t SET pad = randomblob(900) WHERE n = %d",
		         (i * 7919) % 240 + 1);
		assert_int_equal(db_exec(f->db, sql), 0);
	}
	assert_int_equal(db_exec(f->db, "DELETE FROM t WHERE n % 7 = 0"), 0);
	assert_int_equal(db_commit(f->db), 0);
	assert_int_equal(reader_int(f->reader, "SELECT count(*) FROM t"), 3000 - 3000 / 7);
	assert_int_equal(reader_int(f->reader, "SELECT count(*) FROM t WHERE length(pad) = 900"),
	                 3000 - 3000 / 7);
	assert_int_equal(reader_int(f->reader, "SELECT count(*) FROM t WHERE n <= 240 AND"
	                                       " pad = zeroblob(900)"),
	                 0);
	assert_reader_sound(f->reader);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_each_commit_visible_to_another_connection, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_large_commit_takes_few_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkpoint_takes_few_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spilled_frames_read_back, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
