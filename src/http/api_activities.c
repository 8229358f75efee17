/* Activities: a profile's timeline, the org's feed for a CRM to ingest, the add-in endpoint that
 * logs one message, and the never-log lists. The rules live in src/engine/matcher; this file
 * turns requests into matcher and store jobs. */
#include "http/api.h"

#include "config/config.h"
#include "engine/intake.h"
#include "engine/matcher.h"
#include "lib/str.h"
#include "mime/address.h"
#include "mime/message.h"
#include "store/store.h"
#include "store/store_activity.h"
#include "store/store_message.h"
#include "store/store_never_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
}

/* A JSON text column from the store, embedded as a value (an empty array if absent). */
static json_t *embed(const char *text)
{
	json_t *value = text != NULL ? json_loads(text, 0, NULL) : NULL;
	return value != NULL ? value : json_array();
}

json_t *api_activity_json(const struct store_activity *a)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:{s:s,s:s},s:o,s:o,s:o,s:s,s:o,s:o,s:o}", "id",
	                 a->id, "profile_id", a->profile_id, "type",
	                 a->type == STORE_EMAIL_SENT ? "email_sent" : "email_received", "source",
	                 store_source_name(a->source), "subject", a->subject, "date",
	                 api_time(a->date), "from", "address", a->from_address, "name",
	                 a->from_name, "to", embed(a->to_json), "cc", embed(a->cc_json),
	                 "message_id", a->message_id[0] ? json_string(a->message_id) : json_null(),
	                 "snippet", a->snippet, "attachments", embed(a->attachments_json), "users",
	                 embed(a->users_json), "logged_at", api_time(a->created_at));
}

static json_t *activities_json(const struct store_activity_list *list)
{
	json_t *items = json_array();
	for (size_t i = 0; i < list->count; i++)
		json_array_append_new(items, api_activity_json(&list->items[i]));
	return items;
}

/* ---- GET /v1/profiles/{id}/activities ---- */

struct timeline_job {
	struct api_job base;
	char profile_id[MT_ID_MAX];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	int64_t since;
	struct store_activity_list list;
};

static int timeline_run(struct store_tx *tx, void *arg)
{
	struct timeline_job *job = arg;
	return store_profile_activities(tx, job->base.org_id, job->profile_id, job->cursor,
	                                job->limit, &job->list);
}

static void timeline_done(void *arg, int result)
{
	struct timeline_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "profile"))
		http_reply_json(
		    job->base.req, 200,
		    json_pack("{s:o,s:o}", "activities", activities_json(&job->list), "next_cursor",
		              job->list.next_cursor[0] ? json_string(job->list.next_cursor)
		                                       : json_null()));
	store_activity_list_free(&job->list);
	free(job);
}

void api_profile_activities(struct http_request *req, void *app)
{
	struct timeline_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	const char *cursor;
	if (!api_list_params(req, &job->limit, &cursor)) {
		free(job);
		return;
	}
	mt_strlcpy(job->profile_id, http_request_param(req, "id"), sizeof(job->profile_id));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	api_job_submit(&job->base, STORE_READ, timeline_run, timeline_done);
}

/* ---- GET /v1/activities?since= ---- */

static int feed_run(struct store_tx *tx, void *arg)
{
	struct timeline_job *job = arg;
	return store_activity_feed(tx, job->base.org_id, job->since, job->limit, &job->list);
}

static void feed_done(void *arg, int result)
{
	struct timeline_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "feed"))
		http_reply_json(job->base.req, 200,
		                json_pack("{s:o,s:s}", "activities", activities_json(&job->list),
		                          "next_cursor", job->list.next_cursor));
	store_activity_list_free(&job->list);
	free(job);
}

void api_activity_feed(struct http_request *req, void *app)
{
	struct timeline_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	const char *cursor;
	if (!api_list_params(req, &job->limit, &cursor)) {
		free(job);
		return;
	}
	const char *since = http_request_query(req, "since");
	if (since == NULL)
		since = cursor; /* `cursor` is accepted as a synonym, like the other lists */
	if (since != NULL && since[0] != '\0') {
		char *end;
		errno = 0;
		long long v = strtoll(since, &end, 10);
		if (errno != 0 || end == since || *end != '\0' || v < 0 ||
		    strspn(since, "0123456789") != strlen(since)) {
			http_reply_error(req, 400, "input",
			                 "since: must be a next_cursor from an earlier page", NULL,
			                 NULL);
			free(job);
			return;
		}
		job->since = v;
	}
	api_job_submit(&job->base, STORE_READ, feed_run, feed_done);
}

/* ---- POST /v1/addin/log ---- */

static const char *const outcome_names[] = {
    [MATCHER_LOGGED] = "logged",
    [MATCHER_NEVER_LOG] = "never_log",
    [MATCHER_INTERNAL_ONLY] = "internal_only",
    [MATCHER_NO_PARTICIPANTS] = "no_participants",
};

static void addin_done(void *ctx, const struct intake_result *result)
{
	struct http_request *req = ctx;
	switch (result->verdict) {
	case INTAKE_DONE:
		http_reply_json(req, 200,
		                json_pack("{s:s,s:o,s:I}", "outcome",
		                          outcome_names[result->match.outcome], "activities",
		                          activities_json(&result->activities), "created",
		                          (json_int_t)result->match.activities_created));
		break;
	case INTAKE_NOT_MAIL:
		http_reply_error(req, 400, "input", result->reason, NULL, NULL);
		break;
	case INTAKE_GONE:
		http_reply_error(req, 404, "input", "org not found", NULL, NULL);
		break;
	case INTAKE_BUSY:
		http_reply_error_retry(req, 503, "internal", result->reason, 1);
		break;
	case INTAKE_FAILED:
		http_reply_error(req, 500, "internal", "the store failed; nothing was changed",
		                 NULL, NULL);
		break;
	}
}

void api_addin_log(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t len;
	const char *body = http_request_body(req, &len);
	int64_t max = mt_config_int(api->config, "max_message_bytes");
	if (body == NULL || len == 0) {
		http_reply_error(req, 400, "input", "the body must be the message (message/rfc822)",
		                 NULL, NULL);
		return;
	}
	if (max > 0 && (int64_t)len > max) {
		http_reply_errorf(req, 413, "input", "the message is larger than %lld bytes",
		                  (long long)max);
		return;
	}
	const struct http_auth *auth = http_request_auth(req);
	struct intake_request request = {.source = STORE_SOURCE_ADDIN, .data = body, .len = len};
	mt_strlcpy(request.org_id, auth->org_id, sizeof(request.org_id));
	mt_strlcpy(request.user_id, auth->user_id, sizeof(request.user_id));
	intake_log(api->store, api->work, &request, addin_done, req);
}

/* ---- GET/PUT /v1/never-log ---- */

struct never_log_job {
	struct api_job base;
	enum store_never_log_scope scope;
	struct store_never_log list;
};

static bool parse_scope(struct http_request *req, const char *text,
                        enum store_never_log_scope *scope_r)
{
	if (text == NULL || strcmp(text, "user") == 0) {
		*scope_r = STORE_NEVER_LOG_USER;
	} else if (strcmp(text, "org") == 0) {
		*scope_r = STORE_NEVER_LOG_ORG;
	} else {
		http_reply_error(req, 400, "input", "scope: must be org or user", NULL, NULL);
		return false;
	}
	if (*scope_r == STORE_NEVER_LOG_ORG && !http_request_auth(req)->admin) {
		http_reply_error(req, 403, "auth", "the org's never-log list is for admins", NULL,
		                 NULL);
		return false;
	}
	return true;
}

static void never_log_destroy(void *arg)
{
	struct never_log_job *job = arg;
	store_never_log_free(&job->list);
	free(job);
}

static int never_log_get_run(struct store_tx *tx, void *arg)
{
	struct never_log_job *job = arg;
	return store_never_log_get(tx, job->base.org_id, job->scope, job->base.user_id, &job->list);
}

static int never_log_put_run(struct store_tx *tx, void *arg)
{
	struct never_log_job *job = arg;
	return store_never_log_put(tx, job->base.org_id, job->scope, job->base.user_id, &job->list);
}

static void never_log_done(void *arg, int result)
{
	struct never_log_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "never-log list")) {
		json_t *entries = json_array();
		for (size_t i = 0; i < job->list.count; i++)
			json_array_append_new(entries, json_string(job->list.entries[i]));
		http_reply_json(job->base.req, 200,
		                json_pack("{s:s,s:o}", "scope",
		                          job->scope == STORE_NEVER_LOG_ORG ? "org" : "user",
		                          "entries", entries));
	}
	store_never_log_free(&job->list);
	free(job);
}

void api_never_log_get(struct http_request *req, void *app)
{
	struct never_log_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	if (!parse_scope(req, http_request_query(req, "scope"), &job->scope)) {
		free(job);
		return;
	}
	api_job_submit(&job->base, STORE_READ, never_log_get_run, never_log_done);
}

/* An entry with '@' is an address, else a domain (which covers its subdomains). */
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

void api_never_log_put(struct http_request *req, void *app)
{
	struct never_log_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	job->base.destroy = never_log_destroy;
	const char *scope = NULL;
	json_t *entries = NULL;
	const struct json_field fields[] = {
	    {.name = "scope",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = 8,
	     .out = &scope},
	    {.name = "entries",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = true,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_NEVER_LOG_MAX,
	     .single_line = true,
	     .out = &entries},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		free(job);
		return;
	}
	if (!parse_scope(req, scope, &job->scope))
		goto fail;
	size_t n = json_array_size(entries);
	job->list.entries = calloc(n ? n : 1, sizeof(*job->list.entries));
	if (job->list.entries == NULL) {
		fail_oom(req);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		char entry[MT_ADDRESS_MAX + 1];
		const char *error;
		if (normalise_entry(json_string_value(json_array_get(entries, i)), entry, &error) <
		    0) {
			http_reply_errorf(req, 400, "input", "entries[%zu]: %s", i, error);
			goto fail;
		}
		bool seen = false;
		for (size_t j = 0; j < job->list.count; j++)
			seen = seen || strcmp(job->list.entries[j], entry) == 0;
		if (!seen)
			memcpy(job->list.entries[job->list.count++], entry, sizeof(entry));
	}
	json_decref(root);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, never_log_put_run, never_log_done);
	return;
fail:
	json_decref(root);
	store_never_log_free(&job->list);
	free(job);
}
