#include "engine/profile_ops.h"

#include "engine/matcher.h"
#include "engine/profiles.h"
#include "lib/str.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

struct profile_job {
	char org_id[MT_ID_MAX];
	char profile_id[MT_ID_MAX];
	profile_done_fn *done;
	void *ctx;
	struct store_profile profile; /* the input, validated; then the profile as stored */
	bool set_kind, set_name, set_emails, set_external_id;
	char external_id[MT_EXTERNAL_ID_MAX + 1]; /* upsert, get by external id */
	bool created;
	char shared_with[MT_SHARED_WITH_MAX][MT_ID_MAX];
	size_t shared_count, shared_total;
	/* list */
	char query[MT_NAME_MAX + 1];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	struct store_profile_list list;
	enum { GIVES_PROFILE, GIVES_LIST, GIVES_NOTHING } gives;
};

static void finish(struct profile_job *job, const struct crud_outcome *outcome)
{
	struct profile_result r = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK && job->gives == GIVES_PROFILE) {
		r.profile = &job->profile;
		r.created = job->created;
		r.shared_with = (const char(*)[MT_ID_MAX])job->shared_with;
		r.shared_count = job->shared_count;
		r.shared_total = job->shared_total;
	}
	if (outcome->verdict == CRUD_OK && job->gives == GIVES_LIST)
		r.list = &job->list;
	job->done(job->ctx, &r);
	store_profile_list_free(&job->list);
	free(job);
}

static void job_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	finish(arg, &outcome);
}

static struct profile_job *job_new(const char *org_id, const char *profile_id,
                                   profile_done_fn *done, void *ctx)
{
	struct profile_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct profile_result r = {0};
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return NULL;
	}
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->profile_id, profile_id != NULL ? profile_id : "", sizeof(job->profile_id));
	job->done = done;
	job->ctx = ctx;
	return job;
}

static void submit(struct store *store, struct profile_job *job, enum store_job_kind kind,
                   store_job_fn *run)
{
	if (store_submit(store, kind, run, job_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		finish(job, &outcome);
	}
}

/* Validates what the input sets into job->profile; false with the outcome when a rule refuses
 * it. */
static bool take_input(struct profile_job *job, const struct profile_input *in,
                       struct crud_outcome *outcome)
{
	struct store_profile *p = &job->profile;
	if (job->set_kind && (in->kind == NULL || profile_kind_parse(in->kind, &p->kind) < 0)) {
		crud_set_at(outcome, CRUD_INVALID, "invalid_value", "kind",
		            "kind: must be applicant, contact or employee");
		return false;
	}
	if (job->set_name) {
		if (in->name == NULL || in->name[0] == '\0') {
			crud_set_at(outcome, CRUD_INVALID, "invalid_value", "name",
			            "name: must not be empty");
			return false;
		}
		mt_strlcpy(p->name, in->name, sizeof(p->name));
	}
	if (job->set_external_id) {
		const char *e = in->external_id != NULL ? in->external_id : "";
		size_t n = strlen(e);
		bool control = false;
		for (size_t i = 0; i < n; i++)
			control |= (unsigned char)e[i] < 0x20 || e[i] == 0x7f;
		if (n > MT_EXTERNAL_ID_MAX || control) {
			crud_set_at(
			    outcome, CRUD_INVALID, "invalid_value", "external_id",
			    "external_id: at most %d bytes, no control characters ('' clears it)",
			    MT_EXTERNAL_ID_MAX);
			return false;
		}
		mt_strlcpy(p->external_id, e, sizeof(p->external_id));
	}
	if (job->set_emails) {
		if (in->email_count == 0) {
			crud_set_at(outcome, CRUD_INVALID, "missing_field", "emails",
			            "emails: at least one address is needed");
			return false;
		}
		for (size_t i = 0; i < in->email_count && i < MT_PROFILE_EMAILS_MAX; i++) {
			const char *error;
			if (profile_add_email(p, in->emails[i], &error) < 0) {
				crud_set_at(outcome, CRUD_INVALID, "invalid_address", "emails",
				            "emails[%zu]: %s", i, error);
				return false;
			}
		}
	}
	return true;
}

/* The other profiles with one of its addresses, for the reply. */
static int find_shared(struct store_tx *tx, struct profile_job *job)
{
	if (store_profiles_sharing(tx, job->org_id, job->profile.id, job->shared_with,
	                           MT_SHARED_WITH_MAX, &job->shared_total) < 0)
		return -1;
	job->shared_count =
	    job->shared_total < MT_SHARED_WITH_MAX ? job->shared_total : MT_SHARED_WITH_MAX;
	return 0;
}

static int create_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	size_t created;
	int rc = store_profile_create(tx, &job->profile);
	if (rc == 0)
		rc = matcher_backfill_profile(tx, job->org_id, job->profile.id, &created);
	return rc != 0 ? rc : find_shared(tx, job);
}

void profile_create(struct store *store, const char *org_id, const struct profile_input *input,
                    profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, NULL, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->profile.org_id, job->org_id, sizeof(job->profile.org_id));
	job->set_kind = job->set_name = job->set_emails = true;
	job->set_external_id = input->set_external_id;
	struct crud_outcome outcome = {.verdict = CRUD_OK};
	if (!take_input(job, input, &outcome))
		return finish(job, &outcome);
	submit(store, job, STORE_WRITE_DURABLE, create_run);
}

static int get_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_get(tx, job->org_id, job->profile_id, &job->profile);
}

void profile_get(struct store *store, const char *org_id, const char *profile_id,
                 profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, profile_id, done, ctx);
	if (job != NULL)
		submit(store, job, STORE_READ, get_run);
}

static int update_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	struct store_profile current;
	int rc = store_profile_get(tx, job->org_id, job->profile_id, &current);
	if (rc != 0)
		return rc;
	if (job->set_kind)
		current.kind = job->profile.kind;
	if (job->set_name)
		memcpy(current.name, job->profile.name, sizeof(current.name));
	if (job->set_external_id)
		memcpy(current.external_id, job->profile.external_id, sizeof(current.external_id));
	if (job->set_emails) {
		memcpy(current.emails, job->profile.emails, sizeof(current.emails));
		current.email_count = job->profile.email_count;
	}
	rc = store_profile_update(tx, &current);
	size_t created;
	if (rc == 0 && job->set_emails)
		rc = matcher_backfill_profile(tx, job->org_id, job->profile_id, &created);
	if (rc == 0)
		rc = store_profile_get(tx, job->org_id, job->profile_id, &job->profile);
	return rc != 0 ? rc : find_shared(tx, job);
}

void profile_update(struct store *store, const char *org_id, const char *profile_id,
                    const struct profile_input *input, profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, profile_id, done, ctx);
	if (job == NULL)
		return;
	job->set_kind = input->set_kind;
	job->set_name = input->set_name;
	job->set_emails = input->set_emails;
	job->set_external_id = input->set_external_id;
	struct crud_outcome outcome = {.verdict = CRUD_OK};
	if (!take_input(job, input, &outcome))
		return finish(job, &outcome);
	submit(store, job, STORE_WRITE_DURABLE, update_run);
}

static int upsert_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	struct store_profile *current = malloc(sizeof(*current));
	if (current == NULL)
		return -1;
	int rc = store_profile_get_by_external(tx, job->org_id, job->external_id, current);
	if (rc == STORE_NOT_FOUND) {
		free(current);
		job->created = true;
		return create_run(tx, job);
	}
	if (rc == 0) {
		mt_strlcpy(job->profile_id, current->id, sizeof(job->profile_id));
		mt_strlcpy(job->profile.id, current->id, sizeof(job->profile.id));
	}
	free(current);
	return rc != 0 ? rc : update_run(tx, job);
}

void profile_upsert_external(struct store *store, const char *org_id, const char *external_id,
                             const struct profile_input *input, profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, NULL, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->profile.org_id, job->org_id, sizeof(job->profile.org_id));
	job->set_kind = job->set_name = job->set_emails = job->set_external_id = true;
	struct crud_outcome outcome = {.verdict = CRUD_OK};
	if (input->set_external_id &&
	    strcmp(input->external_id != NULL ? input->external_id : "", external_id) != 0) {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "external_id",
		            "external_id: differs from the one in the path");
		return finish(job, &outcome);
	}
	struct profile_input in = *input;
	in.external_id = external_id;
	if (!take_input(job, &in, &outcome))
		return finish(job, &outcome);
	if (job->profile.external_id[0] == '\0') {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "external_id",
		            "external_id: must not be empty");
		return finish(job, &outcome);
	}
	mt_strlcpy(job->external_id, job->profile.external_id, sizeof(job->external_id));
	submit(store, job, STORE_WRITE_DURABLE, upsert_run);
}

static int get_external_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_get_by_external(tx, job->org_id, job->external_id, &job->profile);
}

void profile_get_external(struct store *store, const char *org_id, const char *external_id,
                          profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, NULL, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->external_id, external_id != NULL ? external_id : "",
	           sizeof(job->external_id));
	submit(store, job, STORE_READ, get_external_run);
}

static int erase_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_delete(tx, job->org_id, job->profile_id);
}

void profile_erase(struct store *store, const char *org_id, const char *profile_id,
                   profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, profile_id, done, ctx);
	if (job == NULL)
		return;
	job->gives = GIVES_NOTHING;
	submit(store, job, STORE_WRITE_DURABLE, erase_run);
}

static int list_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_list(tx, job->org_id, job->query, job->cursor, job->limit, &job->list);
}

void profile_list(struct store *store, const char *org_id, const char *query, const char *cursor,
                  size_t limit, profile_done_fn *done, void *ctx)
{
	struct profile_job *job = job_new(org_id, NULL, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->query, query != NULL ? query : "", sizeof(job->query));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	job->limit = limit;
	job->gives = GIVES_LIST;
	submit(store, job, STORE_READ, list_run);
}
