/* The view of a user's SMTP account (GET /v1/smtp) with its usage and route, and the two
 * changes that need no live check: limits (PATCH) and off (DELETE). See engine/account.h. */
#include "engine/account.h"
#include "engine/account_internal.h"
#include "engine/governor.h"
#include "engine/oauth_broker.h"

#include "lib/str.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_outbox.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- view, limits, off ---------------------------------------------------------------------- */

enum view_op { VIEW_READ, VIEW_SET_LIMITS, VIEW_OFF };

struct view_job {
	struct accounts *accounts;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	enum view_op op;
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
	account_view_fn *view_done;
	account_done_fn *done;
	void *ctx;
	struct store_org org;
	struct account_smtp_view view;
	enum store_account_state state_before;
	bool changed;
};

/* The governor's count (engine/governor.h): the account's slots, the confirmation mail's
 * included. */
static int load_usage(struct store_tx *tx, struct account_smtp_view *v)
{
	const struct store_smtp_account *a = &v->account;
	char key[MT_GOVERNOR_KEY_MAX];
	governor_key(false, a->user_id, key);
	struct governor_usage usage[MT_SEND_LIMITS_MAX];
	size_t count = a->limit_count < MT_SEND_LIMITS_MAX ? a->limit_count : MT_SEND_LIMITS_MAX;
	if (governor_usage(tx, key, a->limits, count, mt_wall_ms(), usage) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		v->usage[i].used = usage[i].used;
		/* Whole seconds, rounded up: never shown before the slot is free. */
		v->usage[i].next_slot_at =
		    usage[i].next_slot_at_ms > 0 ? (usage[i].next_slot_at_ms + 999) / 1000 : 0;
	}
	return 0;
}

static int view_run(struct store_tx *tx, void *arg)
{
	struct view_job *job = arg;
	struct account_smtp_view *v = &job->view;
	int rc = 0;
	if (job->op == VIEW_SET_LIMITS)
		rc = store_smtp_account_set_limits(tx, job->org_id, job->user_id, job->limits,
		                                   job->limit_count);
	if (job->op == VIEW_OFF) {
		int got = store_smtp_account_get(tx, job->org_id, job->user_id, &v->account);
		job->state_before = got == 0 ? v->account.state : STORE_ACCOUNT_OFF;
		rc = store_smtp_account_off(tx, job->org_id, job->user_id);
		job->changed = rc == 0 && job->state_before != STORE_ACCOUNT_OFF;
		sodium_memzero(&v->account, sizeof(v->account));
		return rc == STORE_NOT_FOUND ? 0 : rc;
	}
	if (rc == 0)
		rc = store_org_get(tx, job->org_id, &job->org);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, job->org_id, job->user_id, &v->account);
	v->exists = rc == 0;
	if (rc == 0)
		rc = load_usage(tx, v);
	if (rc == 0)
		rc = account_oauth_view_load(
		    tx, job->org_id, job->user_id,
		    oauth_account_uses_grant(v->account.auth == STORE_AUTH_XOAUTH2,
		                             v->account.sealed_secret_len),
		    &v->oauth);
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void view_done(void *arg, int result)
{
	struct view_job *job = arg;
	struct account_result r = {.verdict = ACCOUNT_OK};
	if (result != 0) {
		r.verdict = result == STORE_NOT_FOUND ? ACCOUNT_NOT_FOUND : ACCOUNT_FAILED;
		mt_strlcpy(r.reason,
		           result == STORE_NOT_FOUND ? "SMTP account not found"
		                                     : "the store failed; nothing was changed",
		           sizeof(r.reason));
	}
	struct account_smtp_view *v = &job->view;
	/* Never out of the engine: the secret. */
	sodium_memzero(v->account.sealed_secret, sizeof(v->account.sealed_secret));
	v->account.sealed_secret_len = 0;
	if (job->op == VIEW_OFF) {
		job->done(job->ctx, &r);
		if (r.verdict == ACCOUNT_OK && job->changed && job->accounts->p.on_state != NULL)
			job->accounts->p.on_state(job->accounts->p.on_state_ctx, job->org_id,
			                          job->user_id, job->state_before,
			                          STORE_ACCOUNT_OFF, "turned off by the user");
	} else {
		v->feature_enabled = job->org.custom_smtp;
		bool custom =
		    v->feature_enabled && v->exists && v->account.state == STORE_ACCOUNT_CONNECTED;
		v->route = custom ? "custom" : job->accounts->p.relay.configured ? "relay" : "none";
		job->view_done(job->ctx, &r, r.verdict == ACCOUNT_OK ? v : NULL);
	}
	free(job);
}

static void view_submit(struct accounts *accounts, struct view_job *job, enum store_job_kind kind)
{
	if (store_submit(accounts->p.store, kind, view_run, view_done, job) == 0)
		return;
	struct account_result r = {.verdict = ACCOUNT_BUSY};
	mt_strlcpy(r.reason, "the store is busy; try again", sizeof(r.reason));
	if (job->op == VIEW_OFF)
		job->done(job->ctx, &r);
	else
		job->view_done(job->ctx, &r, NULL);
	free(job);
}

static struct view_job *view_job_new(struct accounts *accounts, const char *org_id,
                                     const char *user_id, enum view_op op)
{
	struct view_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	job->accounts = accounts;
	job->op = op;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id, sizeof(job->user_id));
	return job;
}

static void view_oom(account_view_fn *done, void *ctx)
{
	struct account_result r = {.verdict = ACCOUNT_FAILED};
	mt_strlcpy(r.reason, "out of memory", sizeof(r.reason));
	done(ctx, &r, NULL);
}

void account_smtp_view(struct accounts *accounts, const char *org_id, const char *user_id,
                       account_view_fn *done, void *ctx)
{
	struct view_job *job = view_job_new(accounts, org_id, user_id, VIEW_READ);
	if (job == NULL)
		return view_oom(done, ctx);
	job->view_done = done;
	job->ctx = ctx;
	view_submit(accounts, job, STORE_READ);
}

void account_smtp_set_limits(struct accounts *accounts, const char *org_id, const char *user_id,
                             const struct store_send_limit *limits, size_t count,
                             account_view_fn *done, void *ctx)
{
	struct view_job *job = view_job_new(accounts, org_id, user_id, VIEW_SET_LIMITS);
	if (job == NULL)
		return view_oom(done, ctx);
	job->limit_count = count < MT_SEND_LIMITS_MAX ? count : MT_SEND_LIMITS_MAX;
	memcpy(job->limits, limits, job->limit_count * sizeof(*limits));
	job->view_done = done;
	job->ctx = ctx;
	view_submit(accounts, job, STORE_WRITE_DURABLE);
}

void account_smtp_off(struct accounts *accounts, const char *org_id, const char *user_id,
                      account_done_fn *done, void *ctx)
{
	struct view_job *job = view_job_new(accounts, org_id, user_id, VIEW_OFF);
	if (job == NULL) {
		struct account_result r = {.verdict = ACCOUNT_FAILED};
		mt_strlcpy(r.reason, "out of memory", sizeof(r.reason));
		done(ctx, &r);
		return;
	}
	job->done = done;
	job->ctx = ctx;
	view_submit(accounts, job, STORE_WRITE_DURABLE);
}
