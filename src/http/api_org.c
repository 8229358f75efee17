/* GET/PUT /v1/org and PUT /v1/org/features: the org's own mail domains and its feature
 * switches, admin only. Domains are never derived from users' addresses, and free-mail domains
 * are refused: a recruiter on gmail.com must not make every Gmail candidate "internal". */
#include "http/api.h"

#include "mime/address.h"
#include "store/store.h"
#include "store/store_org.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct org_job {
	struct api_job base;
	struct store_org org;
	bool set_domains;
	char domains[MT_ORG_DOMAINS_MAX][MT_HOST_FIELD_MAX + 1];
	size_t domain_count;
	bool set_custom_smtp, set_imap_sync, set_bcc_sync;
	bool custom_smtp, imap_sync, bcc_sync;
	bool features_only; /* reply with the features object alone */
};

static json_t *features_json(const struct store_org *org)
{
	return json_pack("{s:b,s:b,s:b}", "custom_smtp", org->custom_smtp, "imap_sync",
	                 org->imap_sync, "bcc_sync", org->bcc_sync);
}

static json_t *org_json(const struct store_org *org)
{
	json_t *domains = json_array();
	for (size_t i = 0; i < org->domain_count; i++)
		json_array_append_new(domains, json_string(org->domains[i]));
	return json_pack("{s:s,s:s,s:o,s:o,s:o}", "id", org->id, "name", org->name, "domains",
	                 domains, "features", features_json(org), "created_at",
	                 api_time(org->created_at));
}

static int org_read(struct store_tx *tx, void *arg)
{
	struct org_job *job = arg;
	return store_org_get(tx, job->base.org_id, &job->org);
}

static int org_write(struct store_tx *tx, void *arg)
{
	struct org_job *job = arg;
	int rc = store_org_get(tx, job->base.org_id, &job->org);
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

static void org_done(void *arg, int result)
{
	struct org_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "org"))
		http_reply_json(job->base.req, 200,
		                job->features_only ? features_json(&job->org)
		                                   : org_json(&job->org));
	free(job);
}

void api_org_get(struct http_request *req, void *app)
{
	struct org_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL) {
		http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	api_job_submit(&job->base, STORE_READ, org_read, org_done);
}

/* Reads the features object into the job; false after replying 400. */
static bool decode_features(struct http_request *req, json_t *features, struct org_job *job)
{
	const struct json_field fields[] = {
	    {.name = "custom_smtp",
	     .type = JSON_FIELD_BOOL,
	     .out = &job->custom_smtp,
	     .present = &job->set_custom_smtp},
	    {.name = "imap_sync",
	     .type = JSON_FIELD_BOOL,
	     .out = &job->imap_sync,
	     .present = &job->set_imap_sync},
	    {.name = "bcc_sync",
	     .type = JSON_FIELD_BOOL,
	     .out = &job->bcc_sync,
	     .present = &job->set_bcc_sync},
	};
	char error[256];
	if (json_decode_fields(features, fields, sizeof(fields) / sizeof(fields[0]), error,
	                       sizeof(error)) < 0) {
		char message[300];
		snprintf(message, sizeof(message), "features: %s", error);
		http_reply_error(req, 400, "input", message, NULL, NULL);
		return false;
	}
	/* A switch for a feature this build lacks would promise sync that never happens. */
	const char *missing = job->set_imap_sync && job->imap_sync ? "imap_sync"
	                      : job->set_bcc_sync && job->bcc_sync ? "bcc_sync"
	                                                           : NULL;
	if (missing != NULL) {
		http_reply_errorf(req, 400, "input",
		                  "features: %s is not available yet in this version of mailtrail",
		                  missing);
		return false;
	}
	return true;
}

static void org_update(struct http_request *req, void *app, bool features_only)
{
	struct org_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL) {
		http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	job->features_only = features_only;
	json_t *root;
	if (features_only) {
		size_t len;
		const char *body = http_request_body(req, &len);
		char error[256];
		root = json_decode_body(body != NULL ? body : "", body != NULL ? len : 0, error,
		                        sizeof(error));
		if (root == NULL) {
			http_reply_error(req, 400, "input", error, NULL, NULL);
			free(job);
			return;
		}
		if (!decode_features(req, root, job)) {
			json_decref(root);
			free(job);
			return;
		}
		json_decref(root);
		api_job_submit(&job->base, STORE_WRITE_DURABLE, org_write, org_done);
		return;
	}
	json_t *domains = NULL, *features = NULL;
	const struct json_field fields[] = {
	    {.name = "domains",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_HOST_FIELD_MAX,
	     .max_items = MT_ORG_DOMAINS_MAX,
	     .single_line = true,
	     .out = &domains,
	     .present = &job->set_domains},
	    {.name = "features", .type = JSON_FIELD_OBJECT, .out = &features},
	};
	root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		free(job);
		return;
	}
	if (features != NULL && !decode_features(req, features, job))
		goto fail;
	for (size_t i = 0; domains != NULL && i < json_array_size(domains); i++) {
		const char *text = json_string_value(json_array_get(domains, i));
		char domain[MT_HOST_FIELD_MAX + 1];
		const char *error;
		if (mime_domain_normalize(text, domain, &error) < 0) {
			http_reply_errorf(req, 400, "input", "domains[%zu]: %s", i, error);
			goto fail;
		}
		if (mime_domain_is_freemail(domain)) {
			http_reply_errorf(req, 400, "input",
			                  "domains[%zu]: %s is a free-mail domain shared with "
			                  "candidates; it cannot be an org domain",
			                  i, domain);
			goto fail;
		}
		bool seen = false;
		for (size_t j = 0; j < job->domain_count; j++)
			seen = seen || strcmp(job->domains[j], domain) == 0;
		if (!seen)
			memcpy(job->domains[job->domain_count++], domain, sizeof(domain));
	}
	json_decref(root);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, org_write, org_done);
	return;
fail:
	json_decref(root);
	free(job);
}

void api_org_put(struct http_request *req, void *app)
{
	org_update(req, app, false);
}

void api_org_features_put(struct http_request *req, void *app)
{
	org_update(req, app, true);
}
