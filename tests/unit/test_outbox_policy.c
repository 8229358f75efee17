#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/outbox_policy.h"

#include <string.h>

/* 60 s, quadratic, capped at an hour, 24 h to live: the mail default. */
static const struct mt_backoff backoff = {60, 3600, 24 * 3600};
#define NOW 1000000

/* QUOTA: a 5xx quota reply (permanent by its code), which pauses the account instead. */
enum { OK, TEMP, PERM, QUOTA };

struct row {
	const char *what;
	int outcomes[3];
	size_t count;
	size_t sent_before, failed_before;
	unsigned attempts_before;
	int64_t first_attempt_at, held_seconds, not_before;
	/* expected */
	enum store_outbox_state state;
	enum store_rcpt_state rcpts[3];
	int64_t next_attempt_at;
	bool expired, any_sent;
	enum mt_failure_class cls;
	const char *error_prefix;
};

/* clang-format off: one row per line of the table */
static const struct row rows[] = {
    {"one accepted",
     {OK},
     1,
     0,
     0,
     0,
     0,
     0,
     0,
     STORE_OUTBOX_SENT,
     {STORE_RCPT_SENT},
     0,
     false,
     true,
     MT_CLASS_NONE,
     ""},
    {"one of three refused for good",
     {OK, PERM, OK},
     3,
     0,
     0,
     0,
     0,
     0,
     0,
     STORE_OUTBOX_PARTIAL,
     {STORE_RCPT_SENT, STORE_RCPT_FAILED, STORE_RCPT_SENT},
     0,
     false,
     true,
     MT_CLASS_RESP,
     "550"},
    {"all refused for good",
     {PERM, PERM},
     2,
     0,
     0,
     0,
     0,
     0,
     0,
     STORE_OUTBOX_FAILED,
     {STORE_RCPT_FAILED, STORE_RCPT_FAILED},
     0,
     false,
     false,
     MT_CLASS_RESP,
     "550"},
    {"first attempt, one deferred: retried alone after 60 s (+1)",
     {OK, TEMP},
     2,
     0,
     0,
     0,
     0,
     0,
     0,
     STORE_OUTBOX_QUEUED,
     {STORE_RCPT_SENT, STORE_RCPT_PENDING},
     NOW + 61,
     false,
     true,
     MT_CLASS_RESP,
     "452"},
    {"third attempt waits 9 minutes",
     {TEMP},
     1,
     0,
     0,
     2,
     NOW - 300,
     0,
     0,
     STORE_OUTBOX_QUEUED,
     {STORE_RCPT_PENDING},
     NOW + 541,
     false,
     false,
     MT_CLASS_RESP,
     "452"},
    {"not before the account's cool-down",
     {TEMP},
     1,
     0,
     0,
     0,
     0,
     0,
     NOW + 600,
     STORE_OUTBOX_QUEUED,
     {STORE_RCPT_PENDING},
     NOW + 600,
     false,
     false,
     MT_CLASS_RESP,
     "452"},
    {"retry time ran out: the pending one fails",
     {TEMP},
     1,
     0,
     0,
     9,
     NOW - 86400,
     0,
     0,
     STORE_OUTBOX_FAILED,
     {STORE_RCPT_FAILED},
     0,
     true,
     false,
     MT_CLASS_RESP,
     "retry time ran out: 452"},
    {"time held does not count",
     {TEMP},
     1,
     0,
     0,
     9,
     NOW - 86400,
     7200,
     0,
     STORE_OUTBOX_QUEUED,
     {STORE_RCPT_PENDING},
     NOW + 3601,
     false,
     false,
     MT_CLASS_RESP,
     "452"},
    {"ran out after an earlier attempt sent some: partial",
     {TEMP},
     1,
     2,
     0,
     9,
     NOW - 86400,
     0,
     0,
     STORE_OUTBOX_PARTIAL,
     {STORE_RCPT_FAILED},
     0,
     true,
     false,
     MT_CLASS_RESP,
     "retry time ran out"},
    {"last pending one sent after earlier failures: partial",
     {OK},
     1,
     0,
     1,
     1,
     NOW - 60,
     0,
     0,
     STORE_OUTBOX_PARTIAL,
     {STORE_RCPT_SENT},
     0,
     false,
     true,
     MT_CLASS_NONE,
     ""},
    {"last pending one sent after earlier sends: sent",
     {OK},
     1,
     3,
     0,
     1,
     NOW - 60,
     0,
     0,
     STORE_OUTBOX_SENT,
     {STORE_RCPT_SENT},
     0,
     false,
     true,
     MT_CLASS_NONE,
     ""},
    {"a quota reply holds the message, whatever its code",
     {QUOTA},
     1,
     0,
     0,
     0,
     0,
     0,
     0,
     STORE_OUTBOX_HELD,
     {STORE_RCPT_PENDING},
     0,
     false,
     false,
     MT_CLASS_QUOTA,
     "550 5.4.5"},
    {"one accepted, one over quota: held, the other stays sent",
     {OK, QUOTA, PERM},
     3,
     0,
     0,
     0,
     0,
     0,
     0,
     STORE_OUTBOX_HELD,
     {STORE_RCPT_SENT, STORE_RCPT_PENDING, STORE_RCPT_FAILED},
     0,
     false,
     true,
     MT_CLASS_QUOTA,
     "550 5.4.5"},
    {"paused past the retry time: held, never expired",
     {QUOTA},
     1,
     0,
     0,
     40,
     NOW - 30 * 86400,
     0,
     0,
     STORE_OUTBOX_HELD,
     {STORE_RCPT_PENDING},
     0,
     false,
     false,
     MT_CLASS_QUOTA,
     "550 5.4.5"},
};
/* clang-format on */

static void test_table(void **state)
{
	(void)state;
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		const struct row *row = &rows[r];
		struct outbox_rcpt_outcome outcomes[3];
		for (size_t i = 0; i < row->count; i++) {
			int o = row->outcomes[i];
			outcomes[i] = (struct outbox_rcpt_outcome){
			    .accepted = o == OK,
			    .permanent = o == PERM || o == QUOTA,
			    .cls = o == OK      ? MT_CLASS_NONE
			           : o == QUOTA ? MT_CLASS_QUOTA
			                        : MT_CLASS_RESP,
			    .reply = o == OK      ? "250 2.1.5 ok"
			             : o == TEMP  ? "452 4.2.2 mailbox full"
			             : o == QUOTA ? "550 5.4.5 Daily sending quota exceeded"
			                          : "550 5.1.1 no such user"};
		}
		struct outbox_attempt a = {
		    .rcpt_count = row->count,
		    .outcomes = outcomes,
		    .sent_before = row->sent_before,
		    .failed_before = row->failed_before,
		    .attempts_before = row->attempts_before,
		    .first_attempt_at = row->first_attempt_at,
		    .held_seconds = row->held_seconds,
		    .now = NOW,
		    .not_before = row->not_before,
		    .reason = "",
		};
		enum store_rcpt_state states[3];
		struct outbox_verdict v = {.rcpt_states = states};
		outbox_verdict(&a, &backoff, &v);
		print_message("%s\n", row->what);
		assert_int_equal(v.state, row->state);
		for (size_t i = 0; i < row->count; i++)
			assert_int_equal(states[i], row->rcpts[i]);
		assert_int_equal(v.next_attempt_at, row->next_attempt_at);
		assert_int_equal(v.expired, row->expired);
		assert_int_equal(v.paused, row->state == STORE_OUTBOX_HELD);
		assert_int_equal(v.any_sent, row->any_sent);
		assert_int_equal(v.cls, row->cls);
		assert_int_equal(
		    strncmp(v.last_error, row->error_prefix, strlen(row->error_prefix)), 0);
		assert_int_equal(v.first_attempt_at,
		                 row->first_attempt_at ? row->first_attempt_at : NOW);
	}
}

/* A session that failed as a whole gives its own class and reason to every recipient. */
static void test_session_failure(void **state)
{
	(void)state;
	struct outbox_rcpt_outcome outcomes[2] = {
	    {.cls = MT_CLASS_CONN, .reply = ""},
	    {.cls = MT_CLASS_CONN, .reply = ""},
	};
	struct outbox_attempt a = {.rcpt_count = 2,
	                           .outcomes = outcomes,
	                           .now = NOW,
	                           .cls = MT_CLASS_CONN,
	                           .reason = "connection refused"};
	enum store_rcpt_state states[2];
	struct outbox_verdict v = {.rcpt_states = states};
	outbox_verdict(&a, &backoff, &v);
	assert_int_equal(v.state, STORE_OUTBOX_QUEUED);
	assert_int_equal(v.cls, MT_CLASS_CONN);
	assert_string_equal(v.last_error, "connection refused");
	for (size_t i = 0; outbox_transition_name(i) != NULL; i++)
		assert_true(strlen(outbox_transition_name(i)) > 0);
}

#define MIB ((size_t)1024 * 1024)

/* Bodies held by the sender are capped in bytes per node and per account (issue 10): with
 * many accounts each under its own cap, the node's cap still binds. */
static void test_body_budget(void **state)
{
	(void)state;
	const size_t node = MT_SENDER_BODY_BYTES_MAX, account = MT_SENDER_ACCOUNT_BODY_BYTES_MAX;
	assert_true(account < node);
	/* an empty node and account take even an oversized body, alone */
	assert_true(outbox_body_admits(0, 0, node + 1));
	assert_true(outbox_body_admits(0, 0, 10 * MIB));
	/* the account's cap */
	assert_true(outbox_body_admits(10 * MIB, account - MIB, MIB));
	assert_false(outbox_body_admits(10 * MIB, account - MIB, MIB + 1));
	/* the node's cap, every account well within its own: five accounts at 52 MiB = 260 MiB */
	assert_false(outbox_body_admits(node - MIB, 4 * MIB, 2 * MIB));
	assert_true(outbox_body_admits(node - 2 * MIB, 4 * MIB, 2 * MIB));
	assert_false(outbox_body_admits(node, 0, 1));
	/* a node over its cap (a large first body) admits nothing more, even for a new account */
	assert_false(outbox_body_admits(node + 5, 0, 1));
	/* no overflow near SIZE_MAX */
	assert_false(outbox_body_admits(MIB, MIB, SIZE_MAX));
	/* what a claim may preload: the smaller of the two rooms */
	assert_int_equal(outbox_body_claim_room(0, 0), account);
	assert_int_equal(outbox_body_claim_room(node - MIB, 0), MIB);
	assert_int_equal(outbox_body_claim_room(10 * MIB, account - 3 * MIB), 3 * MIB);
	assert_int_equal(outbox_body_claim_room(node + 1, 0), 0);
	assert_int_equal(outbox_body_claim_room(0, account + 1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_session_failure),
	    cmocka_unit_test(test_body_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
