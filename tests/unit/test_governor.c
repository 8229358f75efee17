#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/governor.h"
#include "store/store_governor.h"
#include "temp_store.h"

#include <string.h>

#define NOW  INT64_C(1800000000000) /* ms */
#define MIN  INT64_C(60000)
#define HOUR (60 * MIN)

/* The windows as the store gives them (store_governor_count / _nth): a slot counts while its
 * time is after now - window, and the slot that must leave is the excess-th oldest of those. */
static void windows_from(const int64_t *times, size_t n, const struct store_send_limit *limits,
                         size_t count, int64_t want, struct governor_window *out)
{
	for (size_t w = 0; w < count; w++) {
		out[w].limit = limits[w].limit;
		out[w].window_ms = (int64_t)limits[w].window_s * 1000;
		out[w].leave_ms = 0;
		int64_t since = governor_since_ms(NOW, out[w].window_ms);
		int64_t counting[64];
		size_t k = 0;
		for (size_t i = 0; i < n; i++) /* times are ascending */
			if (times[i] > since)
				counting[k++] = times[i];
		out[w].used = (int64_t)k;
		int64_t excess = governor_excess(&out[w], want);
		if (excess > 0 && excess <= (int64_t)k)
			out[w].leave_ms = counting[excess - 1];
	}
}

struct decide_row {
	const char *what;
	struct store_send_limit limits[3];
	size_t limit_count;
	int64_t times[40]; /* ascending, relative to NOW; a 0 ends them */
	int64_t want;
	enum governor_verdict verdict;
	int64_t next; /* relative to NOW */
	int which;
};

/* clang-format off */
static const struct decide_row decide_rows[] = {
    {"nothing sent", {{30, 60}}, 1, {0}, 1, GOVERNOR_GO, 0, -1},
    {"one slot left", {{3, 60}}, 1, {-50000, -40000}, 1, GOVERNOR_GO, 0, -1},
    {"full: the oldest's leaving frees a slot", {{3, 60}}, 1, {-50000, -40000, -30000}, 1,
     GOVERNOR_WAIT, 10000, 0},
    {"a slot exactly one window old no longer counts", {{2, 60}}, 1, {-60000, -30000}, 1,
     GOVERNOR_GO, 0, -1},
    {"a slot a millisecond younger still does", {{2, 60}}, 1, {-59999, -30000}, 1,
     GOVERNOR_WAIT, 1, 0},
    {"two recipients need the two oldest to leave", {{3, 60}}, 1, {-50000, -40000, -30000}, 2,
     GOVERNOR_WAIT, 20000, 0},
    {"a reservation in flight counts until its lease ends", {{1, 60}}, 1, {900000}, 1,
     GOVERNOR_WAIT, 960000, 0},
    {"the minute has room, the hour does not", {{20, 60}, {3, 3600}}, 2,
     {-3000000, -2000000, -1000000}, 1, GOVERNOR_WAIT, 600000, 1},
    {"both full: the later of the two", {{2, 60}, {3, 3600}}, 2,
     {-3500000, -20000, -10000}, 1, GOVERNOR_WAIT, 100000, 1},
    {"both full, the minute frees last", {{2, 60}, {3, 3600}}, 2,
     {-3599000, -20000, -10000}, 1, GOVERNOR_WAIT, 40000, 0},
    {"more recipients than the minute allows", {{2, 60}, {100, 3600}}, 2, {0}, 3,
     GOVERNOR_NEVER, 0, 0},
    {"no limits: anything goes", {{0, 0}}, 0, {-1, -2}, 100, GOVERNOR_GO, 0, -1},
};
/* clang-format on */

static void test_decide(void **state)
{
	(void)state;
	for (size_t r = 0; r < sizeof(decide_rows) / sizeof(decide_rows[0]); r++) {
		const struct decide_row *row = &decide_rows[r];
		int64_t times[40];
		size_t n = 0;
		for (; n < 40 && row->times[n] != 0; n++)
			times[n] = NOW + row->times[n];
		struct governor_window w[3];
		windows_from(times, n, row->limits, row->limit_count, row->want, w);
		int64_t next;
		int which;
		print_message("%s\n", row->what);
		assert_int_equal(governor_decide(w, row->limit_count, row->want, &next, &which),
		                 row->verdict);
		assert_int_equal(which, row->which);
		if (row->verdict == GOVERNOR_WAIT)
			assert_int_equal(next - NOW, row->next);
	}
}

static void test_room(void **state)
{
	(void)state;
	static const struct {
		int64_t limit[2], used[2];
		size_t count;
		int64_t room;
	} rows[] = {
	    {{30, 0}, {0, 0}, 1, 30},
	    {{30, 10000}, {29, 9000}, 2, 1},
	    {{30, 100}, {5, 99}, 2, 1},
	    {{30, 100}, {31, 5}, 2, 0}, /* over (a limit lowered): no room, not less */
	    {{0, 0}, {0, 0}, 0, INT64_MAX},
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		struct governor_window w[2];
		for (size_t i = 0; i < 2; i++)
			w[i] = (struct governor_window){rows[r].limit[i], MIN, rows[r].used[i], 0};
		assert_int_equal(governor_room(w, rows[r].count), rows[r].room);
	}
}

/* The pause doubles per consecutive throttle or quota reply, capped (MT_GOVERNOR_PAUSE_MAX_S). */
static void test_pause(void **state)
{
	(void)state;
	static const struct {
		int64_t base;
		int pauses;
		int64_t pause;
	} rows[] = {
	    {60, 1, 60}, {60, 2, 120}, {60, 3, 240}, {60, 6, 1920},   {60, 7, 3600}, {60, 40, 3600},
	    {2, 1, 2},   {2, 4, 16},   {0, 1, 1},    {7200, 1, 3600}, {60, 0, 60},
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
		assert_int_equal(governor_pause_s(rows[r].base, rows[r].pauses), rows[r].pause);
}

static void test_fits_ever(void **state)
{
	(void)state;
	const struct store_send_limit limits[] = {{30, 60}, {1, 3600}, {10000, 86400}};
	size_t which = 99;
	assert_int_equal(governor_fits_ever(limits, 3, 1, &which), 0);
	assert_int_equal(governor_fits_ever(limits, 3, 2, &which), -1);
	assert_int_equal(which, 1);
	assert_int_equal(governor_fits_ever(limits, 1, 30, &which), 0);
	assert_int_equal(governor_fits_ever(limits, 1, 31, &which), -1);
	assert_int_equal(which, 0);
	assert_int_equal(governor_fits_ever(limits, 0, 100, &which), 0);
	assert_string_equal(governor_window_name(MIN), "minute");
	assert_string_equal(governor_window_name(HOUR), "hour");
	assert_string_equal(governor_window_name(24 * HOUR), "day");
}

/* ---- against a store ---- */

struct call {
	struct governor_account account;
	const char *message_id;
	int64_t token;
	struct store_outbox_rcpt rcpts[3];
	size_t count;
	int64_t now_ms;
	struct governor_grant grant;
	int64_t reserved_at_ms;
	bool pause;
	int64_t paused_until_ms;
	struct governor_usage usage[MT_SEND_LIMITS_MAX];
	size_t promoted;
	int64_t next_wake_ms;
	struct store_governor row;
};

JOB(reserve_job, governor_reserve(tx, &c->account, c->message_id, c->token, c->rcpts, c->count,
                                  c->now_ms, 15 * MIN, &c->grant))
JOB(settle_job, governor_settle(tx, &c->account, c->message_id, c->token, c->reserved_at_ms,
                                c->rcpts, c->count, c->now_ms, c->pause, 60, &c->paused_until_ms))
JOB(usage_job, governor_usage(tx, c->account.key, c->account.limits, c->account.limit_count,
                              c->now_ms, c->usage))
JOB(wake_job, governor_wake(tx, c->now_ms, c->account.limits, c->account.limit_count, &c->promoted))
JOB(next_wake_job, store_governor_next_wake(tx, &c->next_wake_ms))
JOB(get_job, store_governor_get(tx, c->account.key, &c->row))

static void set_rcpts(struct call *c, size_t count)
{
	memset(c->rcpts, 0, sizeof(c->rcpts));
	for (size_t i = 0; i < count; i++)
		snprintf(c->rcpts[i].address, sizeof(c->rcpts[i].address), "r%zu@cand.example", i);
	c->count = count;
}

static void test_store_reserve_settle(void **state)
{
	(void)state;
	char dir[TEMP_STORE_DIR_MAX], path[TEMP_STORE_PATH_MAX];
	struct store *store;
	assert_int_equal(temp_store_open("mt-governor", dir, path, &store), 0);
	struct call c;
	memset(&c, 0, sizeof(c));
	const struct store_send_limit limits[] = {{2, 60}, {3, 3600}};
	governor_account_init(&c.account, "org_1", "usr_1", false, limits, 2);
	assert_string_equal(c.account.key, "custom:usr_1");

	/* Two recipients take the minute's two slots, before RCPT. */
	c.message_id = "msg_a";
	c.token = 1;
	c.now_ms = NOW;
	set_rcpts(&c, 2);
	assert_int_equal(store_run(store, STORE_WRITE, reserve_job, &c), 0);
	assert_int_equal(c.grant.verdict, GOVERNOR_GO);
	assert_int_equal(c.grant.reserved_at_ms, NOW + 15 * MIN);
	int64_t reserved_a = c.grant.reserved_at_ms;

	/* Another message waits, counted against the reservations in flight. */
	c.message_id = "msg_b";
	c.token = 1;
	c.now_ms = NOW + 1000;
	set_rcpts(&c, 1);
	assert_int_equal(store_run(store, STORE_WRITE, reserve_job, &c), 0);
	assert_int_equal(c.grant.verdict, GOVERNOR_WAIT);
	assert_string_equal(c.grant.window, "minute");
	assert_int_equal(c.grant.until_ms, reserved_a + MIN);
	assert_int_equal(store_run(store, STORE_READ, get_job, &c), 0);
	assert_int_equal(c.row.wake_at_ms, reserved_a + MIN);

	/* The first attempt: one accepted, one refused: one slot stays, from now; the wake-up
	 * comes forward so the held message is looked at again. */
	c.message_id = "msg_a";
	c.reserved_at_ms = reserved_a;
	c.now_ms = NOW + 2000;
	set_rcpts(&c, 2);
	c.rcpts[0].state = STORE_RCPT_SENT;
	c.rcpts[1].state = STORE_RCPT_FAILED;
	assert_int_equal(store_run(store, STORE_WRITE, settle_job, &c), 0);
	assert_int_equal(store_run(store, STORE_READ, get_job, &c), 0);
	assert_int_equal(c.row.wake_at_ms, NOW + 2000);
	c.now_ms = NOW + 3000;
	assert_int_equal(store_run(store, STORE_READ, usage_job, &c), 0);
	assert_int_equal(c.usage[0].used, 1);
	assert_int_equal(c.usage[0].next_slot_at_ms, 0);
	assert_int_equal(c.usage[1].used, 1);

	/* So the waiting one goes now; then the minute is full until the first send leaves it. */
	c.message_id = "msg_b";
	set_rcpts(&c, 1);
	assert_int_equal(store_run(store, STORE_WRITE, reserve_job, &c), 0);
	assert_int_equal(c.grant.verdict, GOVERNOR_GO);
	c.reserved_at_ms = c.grant.reserved_at_ms;
	c.now_ms = NOW + 4000;
	c.rcpts[0].state = STORE_RCPT_SENT;
	assert_int_equal(store_run(store, STORE_WRITE, settle_job, &c), 0);
	assert_int_equal(store_run(store, STORE_READ, usage_job, &c), 0);
	assert_int_equal(c.usage[0].used, 2);
	assert_int_equal(c.usage[0].next_slot_at_ms, NOW + 2000 + MIN);

	/* A quota reply pauses the account: the next reservation waits for the pause. */
	c.message_id = "msg_c";
	c.reserved_at_ms = 0;
	c.pause = true;
	c.rcpts[0].state = STORE_RCPT_PENDING;
	assert_int_equal(store_run(store, STORE_WRITE, settle_job, &c), 0);
	assert_int_equal(c.paused_until_ms, NOW + 4000 + 60000);
	c.now_ms = NOW + 5 * MIN;
	c.pause = false;
	assert_int_equal(store_run(store, STORE_WRITE, reserve_job, &c), 0);
	assert_int_equal(c.grant.verdict, GOVERNOR_GO);
	/* The hour is now full (three sends); a fourth waits for the first to leave it. */
	c.reserved_at_ms = c.grant.reserved_at_ms;
	c.rcpts[0].state = STORE_RCPT_SENT;
	assert_int_equal(store_run(store, STORE_WRITE, settle_job, &c), 0);
	c.message_id = "msg_d";
	c.now_ms = NOW + 6 * MIN;
	assert_int_equal(store_run(store, STORE_WRITE, reserve_job, &c), 0);
	assert_int_equal(c.grant.verdict, GOVERNOR_WAIT);
	assert_string_equal(c.grant.window, "hour");
	assert_int_equal(c.grant.until_ms, NOW + 2000 + HOUR);
	temp_store_close(dir, path, &store);
}

/* One claim wakes at most MT_GOVERNOR_WAKE_MAX accounts; the rest keep their wake-up. */
static int wake_setup(struct store_tx *tx, struct call *c)
{
	for (int i = 0; i < MT_GOVERNOR_WAKE_MAX + 6; i++) {
		char user[MT_ID_MAX], key[MT_GOVERNOR_KEY_MAX];
		snprintf(user, sizeof(user), "usr_%d", i);
		governor_key(true, user, key);
		struct store_governor row;
		if (store_governor_lock(tx, key, "org_1", user, true, &row) != 0)
			return -1;
		row.wake_at_ms = c->now_ms - 1000 + i;
		if (store_governor_set(tx, &row) != 0)
			return -1;
	}
	return 0;
}

JOB(due_setup_job, wake_setup(tx, c))

static void test_wake_cap(void **state)
{
	(void)state;
	char dir[TEMP_STORE_DIR_MAX], path[TEMP_STORE_PATH_MAX];
	struct store *store;
	assert_int_equal(temp_store_open("mt-governor-wake", dir, path, &store), 0);
	struct call c;
	memset(&c, 0, sizeof(c));
	c.now_ms = NOW;
	assert_int_equal(store_run(store, STORE_WRITE, due_setup_job, &c), 0);
	assert_int_equal(store_run(store, STORE_WRITE, wake_job, &c), 0);
	assert_int_equal(store_run(store, STORE_READ, next_wake_job, &c), 0);
	/* The earliest were woken (nothing held: no wake-up left); the last six still wait. */
	assert_int_equal(c.next_wake_ms, NOW - 1000 + MT_GOVERNOR_WAKE_MAX);
	assert_int_equal(store_run(store, STORE_WRITE, wake_job, &c), 0);
	assert_int_equal(store_run(store, STORE_READ, next_wake_job, &c), 0);
	assert_int_equal(c.next_wake_ms, 0);
	temp_store_close(dir, path, &store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decide),
	    cmocka_unit_test(test_room),
	    cmocka_unit_test(test_pause),
	    cmocka_unit_test(test_fits_ever),
	    cmocka_unit_test(test_store_reserve_settle),
	    cmocka_unit_test(test_wake_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
