/* The sender's results on their way to the store (engine/outbox_lease.h, outbox_finishes): while
 * a batch is in the store the next results gather and go as one job when it is back, and an
 * attempt whose lease was lost is left untouched while the others of its batch are recorded
 * with their activity records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/outbox_lease.h"
#include "store/store.h"
#include "store/store_message.h"
#include "store/store_org.h"
#include "store/store_outbox.h"
#include "store/store_user.h"
#include "temp_store.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MESSAGES 3

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct event_base *base;
	struct store *store;
	struct store_org org;
	struct store_user user;
};

struct call {
	struct fixture *f;
	struct store_outbox_message message;
	struct store_outbox_rcpt rcpt;
	struct store_outbox_message claimed[MESSAGES];
	size_t count;
	const char *id;
	int64_t lease_token;
	const char *address;
	char keys[4][MT_MESSAGE_KEY_MAX];
	char existing[MT_ID_MAX];
	char body[8];
	struct store_outbox_result result;
};

static int j_world(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	int rc = store_org_create(tx, &c->f->org);
	if (rc != 0)
		return rc;
	snprintf(c->f->user.org_id, sizeof(c->f->user.org_id), "%s", c->f->org.id);
	return store_user_create(tx, &c->f->user);
}

JOB(j_enqueue, store_outbox_enqueue(tx, &c->message, c->existing))
JOB(j_claim, temp_store_claim(tx, "node_1", time(NULL), 600, MESSAGES, c->claimed, &c->count))
JOB(j_give_back, store_outbox_give_back(tx, c->id, c->lease_token))
JOB(j_finish, store_outbox_finish(tx, &c->result))
JOB(j_get, store_outbox_get(tx, c->f->org.id, c->f->user.id, c->id, &c->message))
JOB(j_records, store_message_keys_by_address(tx, c->f->org.id, c->address, c->keys, 4, &c->count))

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_outbox_lease.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/mailtrail.db", f->dir);
	f->base = event_base_new();
	const char *error = NULL;
	f->store = store_open(f->path, f->base, &error);
	if (f->store == NULL)
		return -1;
	snprintf(f->org.name, sizeof(f->org.name), "Staffing");
	snprintf(f->user.email, sizeof(f->user.email), "rec@staffing.example");
	snprintf(f->user.name, sizeof(f->user.name), "Rita Rec");
	f->user.role = STORE_ROLE_USER;
	f->user.active = true;
	struct call c = {.f = f};
	if (store_run(f->store, STORE_WRITE, j_world, &c) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	temp_store_close(f->dir, f->path, &f->store);
	event_base_free(f->base);
	free(f);
	return 0;
}

static struct {
	int results[MESSAGES];
	int done;
	struct event_base *base;
} finished;

static void on_finished(void *ctx, int result)
{
	int *slot = ctx;
	*slot = result;
	if (++finished.done == MESSAGES)
		event_base_loopbreak(finished.base);
}

static int state_of(struct fixture *f, const char *id)
{
	struct call *c = calloc(1, sizeof(*c));
	c->f = f;
	c->id = id;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	int state = (int)c->message.state;
	store_outbox_message_free(&c->message);
	free(c);
	return state;
}

static size_t records_of(struct fixture *f, const char *address)
{
	struct call *c = calloc(1, sizeof(*c));
	c->f = f;
	c->address = address;
	assert_int_equal(store_run(f->store, STORE_READ, j_records, c), 0);
	size_t n = c->count;
	free(c);
	return n;
}

/* `count` messages (Message-ID m<i>@, one recipient r<i>@cand.example) enqueued and claimed by
 * node_1: items[i] holds message i (the claim's order is the queue's). */
static void enqueue_and_claim(struct fixture *f, struct call *c, int count,
                              struct outbox_item *items)
{
	for (int i = 0; i < count; i++) {
		memset(&c->message, 0, sizeof(c->message));
		struct store_outbox_message *m = &c->message;
		snprintf(m->org_id, sizeof(m->org_id), "%s", f->org.id);
		snprintf(m->user_id, sizeof(m->user_id), "%s", f->user.id);
		snprintf(m->route, sizeof(m->route), "custom");
		snprintf(m->mail_from, sizeof(m->mail_from), "rec@staffing.example");
		snprintf(m->from.address, sizeof(m->from.address), "rec@staffing.example");
		snprintf(m->subject, sizeof(m->subject), "Role %d", i);
		snprintf(m->message_id, sizeof(m->message_id), "m%d@staffing.example", i);
		snprintf(m->mailtrail_id, sizeof(m->mailtrail_id), "t%d", i);
		memset(&c->rcpt, 0, sizeof(c->rcpt));
		snprintf(c->rcpt.address, sizeof(c->rcpt.address), "r%d@cand.example", i);
		m->rcpts = &c->rcpt;
		m->rcpt_count = 1;
		m->body = &c->body[i]; /* a byte each */
		m->body_len = 1;
		m->state = STORE_OUTBOX_QUEUED;
		assert_int_equal(store_run(f->store, STORE_WRITE, j_enqueue, c), 0);
	}
	assert_int_equal(store_run(f->store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, (size_t)count);
	memset(items, 0, (size_t)count * sizeof(*items));
	for (int i = 0; i < count; i++) {
		int n = c->claimed[i].message_id[1] - '0';
		assert_true(n >= 0 && n < count);
		items[n].msg = c->claimed[i];
	}
}

static void test_results_gather_and_a_lost_lease_stays_alone(void **state)
{
	struct fixture *f = *state;
	struct call *c = calloc(1, sizeof(*c));
	c->f = f;
	struct outbox_item items[MESSAGES];
	enqueue_and_claim(f, c, MESSAGES, items);
	/* The second one's lease is lost: given back, it is queued again. */
	c->id = items[1].msg.id;
	c->lease_token = items[1].msg.lease_token;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_give_back, c), 0);

	struct outbox_finishes *finishes = outbox_finishes_new(f->store);
	assert_non_null(finishes);
	struct store_stats before, after;
	store_stats(f->store, &before);
	enum store_rcpt_state sent[MESSAGES][1];
	finished.base = f->base;
	finished.done = 0;
	for (int i = 0; i < MESSAGES; i++) {
		finished.results[i] = 12345;
		sent[i][0] = STORE_RCPT_SENT;
		struct outbox_verdict verdict = {.state = STORE_OUTBOX_SENT,
		                                 .rcpt_states = sent[i],
		                                 .first_attempt_at = (int64_t)time(NULL),
		                                 .any_sent = true};
		/* The first goes alone; the two after it gather while it is in the store. */
		assert_int_equal(outbox_lease_finish(finishes, &items[i], &verdict, 60, on_finished,
		                                     &finished.results[i]),
		                 0);
	}
	event_base_dispatch(f->base);
	assert_int_equal(finished.done, MESSAGES);
	store_stats(f->store, &after);
	assert_int_equal(after.write_jobs - before.write_jobs, 2);
	assert_int_equal(finished.results[0], 0);
	assert_int_equal(finished.results[1], STORE_CONFLICT);
	assert_int_equal(finished.results[2], 0);
	/* Its batch-mate recorded, with its activity record; the lost one untouched. */
	assert_int_equal(state_of(f, items[0].msg.id), STORE_OUTBOX_SENT);
	assert_int_equal(state_of(f, items[1].msg.id), STORE_OUTBOX_QUEUED);
	assert_int_equal(state_of(f, items[2].msg.id), STORE_OUTBOX_SENT);
	assert_int_equal(records_of(f, "r0@cand.example"), 1);
	assert_int_equal(records_of(f, "r1@cand.example"), 0);
	assert_int_equal(records_of(f, "r2@cand.example"), 1);
	outbox_finishes_free(&finishes);
	for (int i = 0; i < MESSAGES; i++)
		store_outbox_message_free(&items[i].msg);
	free(c);
}

static struct {
	int order[MESSAGES + 1];
	int count;
} arrivals;

static void on_finished_in_order(void *ctx, int result)
{
	int *slot = ctx;
	*slot = result;
	arrivals.order[arrivals.count++] = (int)(slot - finished.results);
	if (++finished.done == MESSAGES)
		event_base_loopbreak(finished.base);
}

/* A job submitted after the flush, standing for the sender's lease release. */
static int j_after(struct store_tx *tx, void *arg)
{
	(void)tx;
	(void)arg;
	return 0;
}

static void after_done(void *arg, int result)
{
	(void)arg;
	(void)result;
	arrivals.order[arrivals.count++] = MESSAGES;
	if (++finished.done == MESSAGES)
		event_base_loopbreak(finished.base);
}

/* A stopping sender flushes what gathers behind a batch in the store: it goes at once, so a job
 * submitted after the flush (the lease release) comes after it. */
static void test_flush_goes_ahead_of_later_jobs(void **state)
{
	struct fixture *f = *state;
	struct call *c = calloc(1, sizeof(*c));
	c->f = f;
	struct outbox_item items[2];
	enqueue_and_claim(f, c, 2, items);
	struct outbox_finishes *finishes = outbox_finishes_new(f->store);
	assert_non_null(finishes);
	enum store_rcpt_state sent[2][1] = {{STORE_RCPT_SENT}, {STORE_RCPT_SENT}};
	finished.base = f->base;
	finished.done = 0; /* two results and the job after them: MESSAGES (3) answers */
	arrivals.count = 0;
	for (int i = 0; i < 2; i++) {
		struct outbox_verdict verdict = {.state = STORE_OUTBOX_SENT,
		                                 .rcpt_states = sent[i],
		                                 .first_attempt_at = (int64_t)time(NULL),
		                                 .any_sent = true};
		assert_int_equal(outbox_lease_finish(finishes, &items[i], &verdict, 60,
		                                     on_finished_in_order, &finished.results[i]),
		                 0);
	}
	/* The second waits behind the first; the flush sends it now, before the job below. */
	outbox_finishes_flush(finishes);
	assert_int_equal(store_submit(f->store, STORE_WRITE, j_after, after_done, NULL), 0);
	event_base_dispatch(f->base);
	assert_int_equal(arrivals.count, 3);
	assert_int_equal(arrivals.order[0], 0);
	assert_int_equal(arrivals.order[1], 1);
	assert_int_equal(arrivals.order[2], MESSAGES);
	assert_int_equal(finished.results[0], 0);
	assert_int_equal(finished.results[1], 0);
	assert_int_equal(state_of(f, items[1].msg.id), STORE_OUTBOX_SENT);
	outbox_finishes_free(&finishes);
	for (int i = 0; i < 2; i++)
		store_outbox_message_free(&items[i].msg);
	free(c);
}

static void on_bodies(void *ctx, int result)
{
	struct fixture *f = ctx;
	finished.results[0] = result;
	event_base_loopbreak(f->base);
}

/* A body's 8-bit bytes are found where it loads, on the store thread, and handed to the SMTP
 * client with it (so a large body is not scanned on the loop before its MAIL FROM). */
static void test_bodies_tell_8bit(void **state)
{
	struct fixture *f = *state;
	struct call *c = calloc(1, sizeof(*c));
	c->f = f;
	c->body[0] = 'x';
	c->body[1] = (char)0xe9;
	struct outbox_item items[2];
	enqueue_and_claim(f, c, 2, items);
	items[0].body_8bit = true; /* a load sets it afresh */
	struct outbox_item *const list[2] = {&items[0], &items[1]};
	finished.results[0] = 12345;
	assert_int_equal(outbox_lease_bodies(f->store, list, 2, on_bodies, f), 0);
	event_base_dispatch(f->base);
	assert_int_equal(finished.results[0], 0);
	assert_int_equal(items[0].msg.body_len, 1);
	assert_int_equal(items[0].msg.body[0], 'x');
	assert_false(items[0].body_8bit);
	assert_int_equal(items[1].msg.body_len, 1);
	assert_true(items[1].body_8bit);
	for (int i = 0; i < 2; i++)
		store_outbox_message_free(&items[i].msg);
	free(c);
}

/* The store's own fence: a result under a stale lease token changes nothing, not the row and
 * not its recipients; under the held token it is recorded. */
static void test_finish_fenced_by_the_lease(void **state)
{
	struct fixture *f = *state;
	struct call *c = calloc(1, sizeof(*c));
	c->f = f;
	struct outbox_item items[1];
	enqueue_and_claim(f, c, 1, items);
	struct store_outbox_rcpt rcpt = items[0].msg.rcpts[0];
	rcpt.state = STORE_RCPT_SENT;
	snprintf(rcpt.reply, sizeof(rcpt.reply), "250 ok");
	c->result = (struct store_outbox_result){.id = items[0].msg.id,
	                                         .lease_token = items[0].msg.lease_token + 1,
	                                         .state = STORE_OUTBOX_SENT,
	                                         .route = "custom",
	                                         .mail_from = "rec@staffing.example",
	                                         .rcpts = &rcpt,
	                                         .rcpt_count = 1,
	                                         .sent_at = (int64_t)time(NULL)};
	assert_int_equal(store_run(f->store, STORE_WRITE, j_finish, c), STORE_CONFLICT);
	c->id = items[0].msg.id;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->message.state, STORE_OUTBOX_SENDING);
	assert_int_equal(c->message.attempts, 0);
	assert_int_equal(c->message.rcpts[0].state, STORE_RCPT_PENDING);
	assert_string_equal(c->message.rcpts[0].reply, "");
	store_outbox_message_free(&c->message);
	c->result.lease_token = items[0].msg.lease_token;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_finish, c), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->message.state, STORE_OUTBOX_SENT);
	assert_int_equal(c->message.rcpts[0].state, STORE_RCPT_SENT);
	assert_string_equal(c->message.rcpts[0].reply, "250 ok");
	store_outbox_message_free(&c->message);
	store_outbox_message_free(&items[0].msg);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_results_gather_and_a_lost_lease_stays_alone, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_flush_goes_ahead_of_later_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_finish_fenced_by_the_lease, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bodies_tell_8bit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
