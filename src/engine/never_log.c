#include "engine/never_log.h"

#include "lib/limits.h"
#include "lib/str.h"
#include "mime/address.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

struct never_log_job {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	enum store_never_log_scope scope;
	never_log_done_fn *done;
	void *ctx;
	struct store_never_log list;
};

const char *never_log_scope_name(enum store_never_log_scope scope)
{
	return scope == STORE_NEVER_LOG_ORG ? "org" : "user";
}

static void finish(struct never_log_job *job, const struct crud_outcome *outcome)
{
	struct never_log_result r = {.outcome = *outcome, .scope = job->scope};
	if (outcome->verdict == CRUD_OK)
		r.list = &job->list;
	job->done(job->ctx, &r);
	store_never_log_free(&job->list);
	free(job);
}

static void job_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	finish(arg, &outcome);
}

/* A job for the caller's list; NULL after `done` was called (out of memory, or a scope the
 * caller may not use). */
static struct never_log_job *job_for_caller(const struct never_log_caller *caller,
                                            never_log_done_fn *done, void *ctx)
{
	struct never_log_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct never_log_result r = {0};
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return NULL;
	}
	mt_strlcpy(job->org_id, caller->org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, caller->user_id, sizeof(job->user_id));
	job->done = done;
	job->ctx = ctx;
	struct crud_outcome outcome = {0};
	if (caller->scope == NULL || strcmp(caller->scope, "user") == 0) {
		job->scope = STORE_NEVER_LOG_USER;
	} else if (strcmp(caller->scope, "org") == 0) {
		job->scope = STORE_NEVER_LOG_ORG;
	} else {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "scope",
		            "scope: must be org or user");
		finish(job, &outcome);
		return NULL;
	}
	if (job->scope == STORE_NEVER_LOG_ORG && !caller->admin) {
		crud_set_at(&outcome, CRUD_FORBIDDEN, "admin_only", "scope",
		            "the org's never-log list is for admins");
		finish(job, &outcome);
		return NULL;
	}
	return job;
}

static void submit(struct store *store, struct never_log_job *job, enum store_job_kind kind,
                   store_job_fn *run)
{
	if (store_submit(store, kind, run, job_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		finish(job, &outcome);
	}
}

static int get_run(struct store_tx *tx, void *arg)
{
	struct never_log_job *job = arg;
	return store_never_log_get(tx, job->org_id, job->scope, job->user_id, &job->list);
}

void never_log_get(struct store *store, const struct never_log_caller *caller,
                   never_log_done_fn *done, void *ctx)
{
	struct never_log_job *job = job_for_caller(caller, done, ctx);
	if (job != NULL)
		submit(store, job, STORE_READ, get_run);
}

/* An address as the matcher compares it, or a domain without its leading dot. */
static int normalise_entry(const char *text, char out[MT_ADDRESS_MAX + 1], const char **error_r)
{
	if (strchr(text, '@') != NULL)
		return mime_address_normalize(text, out, error_r);
	char domain[MT_HOST_FIELD_MAX + 1];
	if (mime_domain_normalize(text[0] == '.' ? text + 1 : text, domain, error_r) < 0)
		return -1;
	mt_strlcpy(out, domain, MT_ADDRESS_MAX + 1);
	return 0;
}

static int put_run(struct store_tx *tx, void *arg)
{
	struct never_log_job *job = arg;
	return store_never_log_put(tx, job->org_id, job->scope, job->user_id, &job->list);
}

void never_log_put(struct store *store, const struct never_log_caller *caller,
                   const char *const *entries, size_t count, never_log_done_fn *done, void *ctx)
{
	struct never_log_job *job = job_for_caller(caller, done, ctx);
	if (job == NULL)
		return;
	struct crud_outcome outcome = {0};
	if (count > MT_NEVER_LOG_MAX)
		count = MT_NEVER_LOG_MAX;
	job->list.entries = calloc(count ? count : 1, sizeof(*job->list.entries));
	if (job->list.entries == NULL) {
		crud_set(&outcome, CRUD_FAILED, "out of memory");
		return finish(job, &outcome);
	}
	for (size_t i = 0; i < count; i++) {
		char entry[MT_ADDRESS_MAX + 1];
		const char *error;
		if (normalise_entry(entries[i], entry, &error) < 0) {
			crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "entries",
			            "entries[%zu]: %s", i, error);
			return finish(job, &outcome);
		}
		bool seen = false;
		for (size_t j = 0; j < job->list.count; j++)
			seen = seen || strcmp(job->list.entries[j], entry) == 0;
		if (!seen)
			memcpy(job->list.entries[job->list.count++], entry, sizeof(entry));
	}
	submit(store, job, STORE_WRITE_DURABLE, put_run);
}
