/* Profiles: the CRM's people (applicants, contacts, employees) and their addresses, which the
 * activity matcher looks up. Addresses are validated and normalised (engine/profiles.h) before the
 * store sees them. The CSV import is the engine's (engine/import.h): a bad file is refused whole
 * (400, nothing stored); bad rows are reported by line, the good ones stored a chunk at a time. */
#include "http/api.h"

#include "engine/import.h"
#include "engine/matcher.h"
#include "engine/profiles.h"
#include "lib/str.h"
#include "store/store_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *profile_json(const struct store_profile *profile)
{
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "id", profile->id, "kind",
	                 profile_kind_name(profile->kind), "name", api_text(profile->name),
	                 "emails", api_string_array(profile->emails, profile->email_count),
	                 "created_at", api_time(profile->created_at), "updated_at",
	                 api_time(profile->updated_at));
}

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
}

struct profile_job {
	struct api_job base;
	struct store_profile profile;
	char target_id[MT_ID_MAX];
	bool set_kind, set_name, set_emails;
};

/* ---- create / get / update / delete ---- */

/* A new address gets the mail already on record for it (backfill), in the same transaction:
 * the profile never shows up without its history. */
static int profiles_create_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	size_t created;
	int rc = store_profile_create(tx, &job->profile);
	return rc != 0 ? rc
	               : matcher_backfill_profile(tx, job->base.org_id, job->profile.id, &created);
}

static void profile_reply(struct profile_job *job, int result, int status)
{
	if (!api_reply_store_error(job->base.req, result, "profile"))
		http_reply_json(job->base.req, status, profile_json(&job->profile));
	free(job);
}

static void profiles_create_done(void *arg, int result)
{
	profile_reply(arg, result, 201);
}

static void profile_ok_done(void *arg, int result)
{
	profile_reply(arg, result, 200);
}

/* Decodes {kind,name,emails} into job->profile; `partial` allows omissions (PATCH). */
static bool decode_profile(struct http_request *req, struct profile_job *job, bool partial)
{
	const char *kind = NULL, *name = NULL;
	json_t *emails = NULL;
	const struct json_field fields[] = {
	    {.name = "kind",
	     .type = JSON_FIELD_STRING,
	     .required = !partial,
	     .max_len = 16,
	     .out = &kind,
	     .present = &job->set_kind},
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .required = !partial,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &name,
	     .present = &job->set_name},
	    {.name = "emails",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = !partial,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_PROFILE_EMAILS_MAX,
	     .single_line = true,
	     .out = &emails,
	     .present = &job->set_emails},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return false;
	struct store_profile *p = &job->profile;
	bool ok = false;
	if (job->set_kind && (kind == NULL || profile_kind_parse(kind, &p->kind) < 0)) {
		http_reply_error(req, 400, "input", "kind: must be applicant, contact or employee",
		                 NULL, NULL);
		goto out;
	}
	if (job->set_name) {
		if (name == NULL || name[0] == '\0') {
			http_reply_error(req, 400, "input", "name: must not be empty", NULL, NULL);
			goto out;
		}
		mt_strlcpy(p->name, name, sizeof(p->name));
	}
	if (job->set_emails) {
		if (emails == NULL || json_array_size(emails) == 0) {
			http_reply_error(req, 400, "input",
			                 "emails: at least one address is needed", NULL, NULL);
			goto out;
		}
		for (size_t i = 0; i < json_array_size(emails); i++) {
			const char *error;
			if (profile_add_email(p, json_string_value(json_array_get(emails, i)),
			                      &error) < 0) {
				http_reply_errorf(req, 400, "input", "emails[%zu]: %s", i, error);
				goto out;
			}
		}
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

void api_profiles_create(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->profile.org_id, job->base.org_id, sizeof(job->profile.org_id));
	if (!decode_profile(req, job, false)) {
		free(job);
		return;
	}
	api_job_submit(&job->base, STORE_WRITE_DURABLE, profiles_create_run, profiles_create_done);
}

static int profiles_get_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_get(tx, job->base.org_id, job->target_id, &job->profile);
}

void api_profiles_get(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	api_job_submit(&job->base, STORE_READ, profiles_get_run, profile_ok_done);
}

static int profiles_update_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	struct store_profile current;
	int rc = store_profile_get(tx, job->base.org_id, job->target_id, &current);
	if (rc != 0)
		return rc;
	if (job->set_kind)
		current.kind = job->profile.kind;
	if (job->set_name)
		memcpy(current.name, job->profile.name, sizeof(current.name));
	if (job->set_emails) {
		memcpy(current.emails, job->profile.emails, sizeof(current.emails));
		current.email_count = job->profile.email_count;
	}
	rc = store_profile_update(tx, &current);
	size_t created;
	if (rc == 0 && job->set_emails)
		rc = matcher_backfill_profile(tx, job->base.org_id, job->target_id, &created);
	if (rc == 0)
		rc = store_profile_get(tx, job->base.org_id, job->target_id, &job->profile);
	return rc;
}

void api_profiles_update(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	if (!decode_profile(req, job, true)) {
		free(job);
		return;
	}
	api_job_submit(&job->base, STORE_WRITE_DURABLE, profiles_update_run, profile_ok_done);
}

static int profiles_delete_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_delete(tx, job->base.org_id, job->target_id);
}

static void profiles_delete_done(void *arg, int result)
{
	struct profile_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "profile"))
		http_reply_empty(job->base.req, 204);
	free(job);
}

void api_profiles_delete(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	api_job_submit(&job->base, STORE_WRITE_DURABLE, profiles_delete_run, profiles_delete_done);
}

/* ---- list and search ---- */

struct list_job {
	struct api_job base;
	char query[MT_NAME_MAX + 1];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	struct store_profile_list list;
};

static int profiles_list_run(struct store_tx *tx, void *arg)
{
	struct list_job *job = arg;
	return store_profile_list(tx, job->base.org_id, job->query, job->cursor, job->limit,
	                          &job->list);
}

static void profiles_list_done(void *arg, int result)
{
	struct list_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "profiles")) {
		json_t *items = json_array();
		for (size_t i = 0; i < job->list.count; i++)
			json_array_append_new(items, profile_json(&job->list.items[i]));
		http_reply_json(job->base.req, 200,
		                json_pack("{s:o,s:o}", "profiles", items, "next_cursor",
		                          job->list.next_cursor[0]
		                              ? json_string(job->list.next_cursor)
		                              : json_null()));
	}
	store_profile_list_free(&job->list);
	free(job);
}

void api_profiles_list(struct http_request *req, void *app)
{
	struct list_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	const char *cursor, *query = http_request_query(req, "q");
	if (!api_list_params(req, &job->limit, &cursor)) {
		free(job);
		return;
	}
	if (query != NULL && (strlen(query) > MT_NAME_MAX || mt_str_has_crlf(query))) {
		http_reply_error(req, 400, "input", "q: too long or contains a line break", NULL,
		                 NULL);
		free(job);
		return;
	}
	mt_strlcpy(job->query, query != NULL ? query : "", sizeof(job->query));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	api_job_submit(&job->base, STORE_READ, profiles_list_run, profiles_list_done);
}

/* ---- CSV import ---- */

static void imported(void *ctx, const struct import_result *result)
{
	struct http_request *req = ctx;
	switch (result->verdict) {
	case IMPORT_DONE: {
		json_t *rejected = json_array();
		for (size_t i = 0; i < result->reject_count; i++)
			json_array_append_new(
			    rejected, json_pack("{s:i,s:o}", "line", (int)result->rejects[i].line,
			                        "error", api_text(result->rejects[i].error)));
		http_reply_json(req, 200,
		                json_pack("{s:I,s:o,s:I}", "imported", (json_int_t)result->imported,
		                          "rejected", rejected, "rejected_total",
		                          (json_int_t)result->rejected_total));
		break;
	}
	case IMPORT_BAD_FILE:
		http_reply_error(req, 400, "input", result->reason, NULL, NULL);
		break;
	case IMPORT_TOO_LARGE:
		http_reply_error(req, 413, "input", result->reason, NULL, NULL);
		break;
	case IMPORT_BUSY:
		http_reply_error_retry(req, 503, "internal", result->reason, 1);
		break;
	}
}

void api_profiles_import(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t len;
	const char *body = http_request_body(req, &len);
	profile_import(api->store, api->work, http_request_auth(req)->org_id,
	               body != NULL ? body : "", body != NULL ? len : 0, imported, req);
}
