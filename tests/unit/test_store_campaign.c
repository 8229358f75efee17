/* Campaigns in the store: creation with its idempotency key, counts per state, pause / resume /
 * cancel on the messages not yet sending, the sender's give-back (fenced, and deciding by the
 * campaign's state at that moment), suppressions through unsubscribe tokens. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_campaign.h"
#include "store/store_outbox.h"
#include "temp_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct store *store;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (temp_store_open("test_store_campaign", f->dir, f->path, &f->store) < 0)
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

struct call {
	const char *id;
	int64_t lease_token;
	enum store_campaign_action action;
	bool suppressed;
	struct store_campaign campaign;
	struct store_outbox_message message;
	struct store_outbox_rcpt rcpt;
	struct store_unsubscribe unsub;
	struct store_outbox_message claimed[8];
	size_t count;
	char existing[MT_ID_MAX];
	char body[8];
};

static struct call *call_new(void)
{
	struct call *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	return c;
}

JOB(j_create, store_campaign_create(tx, &c->campaign, c->existing))
JOB(j_get, store_campaign_get(tx, "org_1", "usr_1", c->id, &c->campaign))
JOB(j_act, store_campaign_act(tx, "org_1", "usr_1", c->id, c->action))
JOB(j_enqueue, store_outbox_enqueue(tx, &c->message, c->existing))
JOB(j_claim, temp_store_claim(tx, "node_1", time(NULL), 600, 1, c->claimed, &c->count))
JOB(j_give_back, store_outbox_give_back(tx, c->id, c->lease_token))
JOB(j_token_add, store_unsubscribe_token_add(tx, &c->unsub))
JOB(j_unsub_get, store_unsubscribe_get(tx, c->id, &c->unsub))
JOB(j_unsub_apply, store_unsubscribe_apply(tx, c->id, &c->unsub))
JOB(j_suppressed, store_suppression_has(tx, "org_1", "a@cand.example", &c->suppressed))

static void make_campaign(struct fixture *f, const char *key, char id_r[MT_ID_MAX])
{
	struct call *c = call_new();
	snprintf(c->campaign.org_id, sizeof(c->campaign.org_id), "org_1");
	snprintf(c->campaign.user_id, sizeof(c->campaign.user_id), "usr_1");
	snprintf(c->campaign.idempotency_key, sizeof(c->campaign.idempotency_key), "%s", key);
	snprintf(c->campaign.subject, sizeof(c->campaign.subject), "Hello");
	c->campaign.total = 4;
	c->campaign.suppressed = 1;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_create, c), 0);
	memcpy(id_r, c->campaign.id, MT_ID_MAX);
	free(c);
}

static void enqueue(struct fixture *f, const char *campaign_id, int n)
{
	struct call *c = call_new();
	for (int i = 0; i < n; i++) {
		memset(&c->message, 0, sizeof(c->message));
		struct store_outbox_message *m = &c->message;
		snprintf(m->org_id, sizeof(m->org_id), "org_1");
		snprintf(m->user_id, sizeof(m->user_id), "usr_1");
		snprintf(m->campaign_id, sizeof(m->campaign_id), "%s", campaign_id);
		snprintf(m->route, sizeof(m->route), "custom");
		snprintf(m->mail_from, sizeof(m->mail_from), "u@x.example");
		snprintf(m->subject, sizeof(m->subject), "Hello");
		snprintf(m->message_id, sizeof(m->message_id), "m%d@x.example", i);
		snprintf(m->mailtrail_id, sizeof(m->mailtrail_id), "t%d", i);
		snprintf(c->rcpt.address, sizeof(c->rcpt.address), "r%d@cand.example", i);
		m->rcpts = &c->rcpt;
		m->rcpt_count = 1;
		m->body = c->body;
		m->body_len = 1;
		m->state = STORE_OUTBOX_QUEUED;
		assert_int_equal(store_run(f->store, STORE_WRITE, j_enqueue, c), 0);
		m->rcpts = NULL;
		m->body = NULL;
	}
	free(c);
}

static void counts(struct fixture *f, const char *id, enum store_campaign_state state,
                   int64_t queued, int64_t held, int64_t sending, int64_t cancelled)
{
	struct call *c = call_new();
	c->id = id;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->campaign.state, state);
	assert_int_equal(c->campaign.counts[STORE_OUTBOX_QUEUED], queued);
	assert_int_equal(c->campaign.counts[STORE_OUTBOX_HELD], held);
	assert_int_equal(c->campaign.counts[STORE_OUTBOX_SENDING], sending);
	assert_int_equal(c->campaign.counts[STORE_OUTBOX_CANCELLED], cancelled);
	assert_int_equal(c->campaign.total, 4);
	assert_int_equal(c->campaign.suppressed, 1);
	free(c);
}

static int act(struct fixture *f, const char *id, enum store_campaign_action action)
{
	struct call *c = call_new();
	c->id = id;
	c->action = action;
	int rc = store_run(f->store, STORE_WRITE, j_act, c);
	free(c);
	return rc;
}

/* Claims one message: its id and lease token. */
static void claim_one(struct fixture *f, char id_r[MT_ID_MAX], int64_t *token_r)
{
	struct call *c = call_new();
	assert_int_equal(store_run(f->store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 1);
	memcpy(id_r, c->claimed[0].id, MT_ID_MAX);
	*token_r = c->claimed[0].lease_token;
	store_outbox_message_free(&c->claimed[0]);
	free(c);
}

static int give_back(struct fixture *f, const char *id, int64_t token)
{
	struct call *c = call_new();
	c->id = id;
	c->lease_token = token;
	int rc = store_run(f->store, STORE_WRITE, j_give_back, c);
	free(c);
	return rc;
}

static void test_idempotency(void **state)
{
	struct fixture *f = *state;
	char first[MT_ID_MAX];
	make_campaign(f, "key-1", first);
	assert_memory_equal(first, "cmp", 3);
	struct call *c = call_new();
	snprintf(c->campaign.org_id, sizeof(c->campaign.org_id), "org_1");
	snprintf(c->campaign.user_id, sizeof(c->campaign.user_id), "usr_1");
	snprintf(c->campaign.idempotency_key, sizeof(c->campaign.idempotency_key), "key-1");
	assert_int_equal(store_run(f->store, STORE_WRITE, j_create, c), STORE_CONFLICT);
	assert_string_equal(c->existing, first);
	/* Another user's key is another key. */
	snprintf(c->campaign.user_id, sizeof(c->campaign.user_id), "usr_2");
	assert_int_equal(store_run(f->store, STORE_WRITE, j_create, c), 0);
	assert_string_not_equal(c->campaign.id, first);
	/* Another user's campaign is not found. */
	c->id = c->campaign.id;
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), STORE_NOT_FOUND);
	free(c);
}

static void test_pause_resume_cancel(void **state)
{
	struct fixture *f = *state;
	char id[MT_ID_MAX], msg[MT_ID_MAX];
	int64_t token;
	make_campaign(f, "", id);
	enqueue(f, id, 3);
	counts(f, id, STORE_CAMPAIGN_RUNNING, 3, 0, 0, 0);
	claim_one(f, msg, &token);
	counts(f, id, STORE_CAMPAIGN_RUNNING, 2, 0, 1, 0);

	assert_int_equal(act(f, id, STORE_CAMPAIGN_PAUSE), 0);
	counts(f, id, STORE_CAMPAIGN_PAUSED, 0, 2, 1, 0);
	assert_int_equal(act(f, id, STORE_CAMPAIGN_PAUSE), 0); /* again: nothing changes */
	/* The sender gives the claimed one back: held, as the campaign is paused. */
	assert_int_equal(give_back(f, msg, token + 1), STORE_CONFLICT); /* not its lease */
	assert_int_equal(give_back(f, msg, token), 0);
	counts(f, id, STORE_CAMPAIGN_PAUSED, 0, 3, 0, 0);
	assert_int_equal(give_back(f, msg, token), STORE_CONFLICT); /* no longer sending */

	assert_int_equal(act(f, id, STORE_CAMPAIGN_RESUME), 0);
	counts(f, id, STORE_CAMPAIGN_RUNNING, 3, 0, 0, 0);
	/* A give-back after a resume queues it again. */
	claim_one(f, msg, &token);
	assert_int_equal(give_back(f, msg, token), 0);
	counts(f, id, STORE_CAMPAIGN_RUNNING, 3, 0, 0, 0);

	claim_one(f, msg, &token);
	assert_int_equal(act(f, id, STORE_CAMPAIGN_CANCEL), 0);
	counts(f, id, STORE_CAMPAIGN_CANCELLED, 0, 0, 1, 2);
	assert_int_equal(give_back(f, msg, token), 0);
	counts(f, id, STORE_CAMPAIGN_CANCELLED, 0, 0, 0, 3);
	assert_int_equal(act(f, id, STORE_CAMPAIGN_RESUME), STORE_CONFLICT);
	assert_int_equal(act(f, id, STORE_CAMPAIGN_PAUSE), STORE_CONFLICT);
	assert_int_equal(act(f, id, STORE_CAMPAIGN_CANCEL), 0);
	assert_int_equal(act(f, "cmp_nope", STORE_CAMPAIGN_PAUSE), STORE_NOT_FOUND);
	/* A single message is no campaign's: a give-back queues it again. */
	enqueue(f, "", 1);
	claim_one(f, msg, &token);
	assert_int_equal(give_back(f, msg, token), 0);
	claim_one(f, msg, &token);
}

static void test_unsubscribe(void **state)
{
	struct fixture *f = *state;
	struct call *c = call_new();
	snprintf(c->unsub.token, sizeof(c->unsub.token), "0123456789abcdef0123456789abcdef");
	snprintf(c->unsub.org_id, sizeof(c->unsub.org_id), "org_1");
	snprintf(c->unsub.campaign_id, sizeof(c->unsub.campaign_id), "cmp_1");
	snprintf(c->unsub.address, sizeof(c->unsub.address), "a@cand.example");
	assert_int_equal(store_run(f->store, STORE_WRITE, j_token_add, c), 0);
	c->id = "0123456789abcdef0123456789abcdef";
	assert_int_equal(store_run(f->store, STORE_READ, j_unsub_get, c), 0);
	assert_string_equal(c->unsub.address, "a@cand.example");
	assert_false(c->unsub.suppressed);
	assert_int_equal(store_run(f->store, STORE_READ, j_suppressed, c), 0);
	assert_false(c->suppressed);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_unsub_apply, c), 0);
	assert_true(c->unsub.suppressed);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_unsub_apply, c), 0); /* again */
	assert_int_equal(store_run(f->store, STORE_READ, j_suppressed, c), 0);
	assert_true(c->suppressed);
	c->id = "ffffffffffffffffffffffffffffffff";
	assert_int_equal(store_run(f->store, STORE_WRITE, j_unsub_apply, c), STORE_NOT_FOUND);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pause_resume_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsubscribe, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
