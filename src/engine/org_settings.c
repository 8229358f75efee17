#include "engine/org_settings.h"

#include "lib/str.h"
#include "mime/address.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

struct org_job {
	char org_id[MT_ID_MAX];
	org_settings_done_fn *done;
	void *ctx;
	bool set_domains;
	char domains[MT_ORG_DOMAINS_MAX][MT_HOST_FIELD_MAX + 1]; /* normalised, distinct */
	size_t domain_count;
	bool set_custom_smtp, set_imap_sync, set_bcc_sync;
	bool custom_smtp, imap_sync, bcc_sync;
	struct store_org org;
};

static void finish(struct org_job *job, const struct crud_outcome *outcome)
{
	struct org_settings_result r = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK)
		r.org = &job->org;
	job->done(job->ctx, &r);
	free(job);
}

static int get_run(struct store_tx *tx, void *arg)
{
	struct org_job *job = arg;
	return store_org_get(tx, job->org_id, &job->org);
}

static int update_run(struct store_tx *tx, void *arg)
{
	struct org_job *job = arg;
	int rc = store_org_get(tx, job->org_id, &job->org);
	if (rc != 0)
		return rc;
	if (job->set_domains) {
		memcpy(job->org.domains, job->domains, sizeof(job->domains));
		job->org.domain_count = job->domain_count;
	}
	if (job->set_custom_smtp)
		job->org.custom_smtp = job->custom_smtp;
	if (job->set_imap_sync)
		job->org.imap_sync = job->imap_sync;
	if (job->set_bcc_sync)
		job->org.bcc_sync = job->bcc_sync;
	return store_org_update(tx, &job->org);
}

static void job_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	finish(arg, &outcome);
}

static struct org_job *job_new(const char *org_id, org_settings_done_fn *done, void *ctx)
{
	struct org_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct org_settings_result r = {0};
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return NULL;
	}
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	job->done = done;
	job->ctx = ctx;
	return job;
}

static void submit(struct store *store, struct org_job *job, enum store_job_kind kind,
                   store_job_fn *run)
{
	if (store_submit(store, kind, run, job_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		finish(job, &outcome);
	}
}

void org_settings_get(struct store *store, const char *org_id, org_settings_done_fn *done,
                      void *ctx)
{
	struct org_job *job = job_new(org_id, done, ctx);
	if (job != NULL)
		submit(store, job, STORE_READ, get_run);
}

/* Takes the change into the job; false with the outcome when a rule refuses it. */
static bool take_change(struct org_job *job, const struct org_settings_change *change,
                        struct crud_outcome *outcome)
{
	job->set_custom_smtp = change->set_custom_smtp;
	job->set_imap_sync = change->set_imap_sync;
	job->set_bcc_sync = change->set_bcc_sync;
	job->custom_smtp = change->custom_smtp;
	job->imap_sync = change->imap_sync;
	job->bcc_sync = change->bcc_sync;
	/* A switch for a feature this build lacks would promise sync that never happens. */
	const char *missing = job->set_bcc_sync && job->bcc_sync ? "bcc_sync" : NULL;
	if (missing != NULL) {
		crud_set_at(outcome, CRUD_INVALID, "not_available", "features",
		            "features: %s is not available yet in this version of mailtrail",
		            missing);
		return false;
	}
	job->set_domains = change->set_domains;
	for (size_t i = 0; i < change->domain_count && i < MT_ORG_DOMAINS_MAX; i++) {
		char domain[MT_HOST_FIELD_MAX + 1];
		const char *error;
		if (mime_domain_normalize(change->domains[i], domain, &error) < 0) {
			crud_set_at(outcome, CRUD_INVALID, "invalid_domain", "domains",
			            "domains[%zu]: %s", i, error);
			return false;
		}
		if (mime_domain_is_freemail(domain)) {
			crud_set_at(
			    outcome, CRUD_INVALID, "freemail_domain", "domains",
			    "domains[%zu]: %s is a free-mail domain shared with candidates; it "
			    "cannot be an org domain",
			    i, domain);
			return false;
		}
		bool seen = false;
		for (size_t j = 0; j < job->domain_count; j++)
			seen = seen || strcmp(job->domains[j], domain) == 0;
		if (!seen)
			memcpy(job->domains[job->domain_count++], domain, sizeof(domain));
	}
	return true;
}

void org_settings_update(struct store *store, const char *org_id,
                         const struct org_settings_change *change, org_settings_done_fn *done,
                         void *ctx)
{
	struct org_job *job = job_new(org_id, done, ctx);
	if (job == NULL)
		return;
	struct crud_outcome outcome = {.verdict = CRUD_OK};
	if (!take_change(job, change, &outcome))
		return finish(job, &outcome);
	submit(store, job, STORE_WRITE_DURABLE, update_run);
}
