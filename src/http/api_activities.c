/* Activities: a profile's timeline, the org's feed for a CRM to ingest, the add-in endpoint that
 * logs one message, and the never-log lists. The engine reads the pages (engine/activities.h),
 * logs the message (engine/intake.h) and keeps the lists (engine/never_log.h); this file decodes
 * and encodes. */
#include "http/api.h"

#include "config/config.h"
#include "engine/activities.h"
#include "engine/intake.h"
#include "engine/matcher.h"
#include "engine/never_log.h"
#include "lib/str.h"
#include "store/store_activity.h"
#include "store/store_message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A JSON text column from the store, embedded as a value (an empty array if absent). */
static json_t *embed(const char *text)
{
	json_t *value = text != NULL ? json_loads(text, 0, NULL) : NULL;
	return value != NULL ? value : json_array();
}

/* A text column that may be absent: null then. */
static json_t *opt_string(const char *text)
{
	return text[0] != '\0' ? json_string(text) : json_null();
}

json_t *api_activity_json(const struct store_activity *a)
{
	/* A tombstone: the id to delete, nothing of the content it had. */
	if (a->deleted)
		return json_pack("{s:s,s:s,s:b,s:s,s:o}", "id", a->id, "profile_id", a->profile_id,
		                 "deleted", 1, "reason", a->reason, "deleted_at",
		                 api_time(a->updated_at));
	json_t *o =
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:{s:s,s:s},s:o,s:o,s:o,s:s,s:o,s:o,s:o}", "id",
	              a->id, "profile_id", a->profile_id, "type",
	              a->type == STORE_EMAIL_SENT ? "email_sent" : "email_received", "source",
	              store_source_name(a->source), "subject", a->subject, "date",
	              api_time(a->date), "from", "address", a->from_address, "name", a->from_name,
	              "to", embed(a->to_json), "cc", embed(a->cc_json), "message_id",
	              a->message_id[0] ? json_string(a->message_id) : json_null(), "snippet",
	              a->snippet, "attachments", embed(a->attachments_json), "users",
	              embed(a->users_json), "logged_at", api_time(a->created_at));
	if (o != NULL && (json_object_set_new(o, "outbox_id", opt_string(a->outbox_id)) < 0 ||
	                  json_object_set_new(o, "in_reply_to", opt_string(a->in_reply_to)) < 0 ||
	                  json_object_set_new(o, "thread_id", opt_string(a->thread_id)) < 0)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

static json_t *activities_json(const struct store_activity_list *list)
{
	json_t *items = json_array();
	for (size_t i = 0; i < list->count; i++)
		json_array_append_new(items, api_activity_json(&list->items[i]));
	return items;
}

/* ---- GET /v1/profiles/{id}/activities ---- */

static void timeline_done(void *ctx, const struct activities_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "profile"))
		http_reply_json(
		    req, 200,
		    json_pack("{s:o,s:o}", "activities", activities_json(r->list), "next_cursor",
		              r->list->next_cursor[0] ? json_string(r->list->next_cursor)
		                                      : json_null()));
}

void api_profile_activities(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t limit;
	const char *cursor;
	if (!api_list_params(req, &limit, &cursor))
		return;
	activities_timeline(api->store, http_request_auth(req)->org_id,
	                    http_request_param(req, "id"), http_request_query(req, "thread_id"),
	                    cursor, limit, timeline_done, req);
}

/* ---- GET /v1/activities?since= ---- */

static void feed_done(void *ctx, const struct activities_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "feed"))
		http_reply_json(req, 200,
		                json_pack("{s:o,s:s}", "activities", activities_json(r->list),
		                          "next_cursor", r->list->next_cursor));
}

void api_activity_feed(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t limit;
	const char *cursor;
	if (!api_list_params(req, &limit, &cursor))
		return;
	const char *since = http_request_query(req, "since");
	if (since == NULL)
		since = cursor; /* `cursor` is accepted as a synonym, like the other lists */
	activities_feed(api->store, http_request_auth(req)->org_id, since, limit, feed_done, req);
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

static void never_log_done(void *ctx, const struct never_log_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "never-log list"))
		return;
	json_t *entries = json_array();
	for (size_t i = 0; i < r->list->count; i++)
		json_array_append_new(entries, json_string(r->list->entries[i]));
	http_reply_json(
	    req, 200,
	    json_pack("{s:s,s:o}", "scope", never_log_scope_name(r->scope), "entries", entries));
}

static struct never_log_caller caller_of(struct http_request *req, const char *scope)
{
	const struct http_auth *auth = http_request_auth(req);
	return (struct never_log_caller){
	    .org_id = auth->org_id, .user_id = auth->user_id, .admin = auth->admin, .scope = scope};
}

void api_never_log_get(struct http_request *req, void *app)
{
	struct api *api = app;
	struct never_log_caller caller = caller_of(req, http_request_query(req, "scope"));
	never_log_get(api->store, &caller, never_log_done, req);
}

void api_never_log_put(struct http_request *req, void *app)
{
	struct api *api = app;
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
	if (root == NULL)
		return;
	const char *texts[MT_NEVER_LOG_MAX];
	size_t count = 0;
	for (; count < json_array_size(entries) && count < MT_NEVER_LOG_MAX; count++)
		texts[count] = json_string_value(json_array_get(entries, count));
	struct never_log_caller caller = caller_of(req, scope);
	never_log_put(api->store, &caller, texts, count, never_log_done, req);
	json_decref(root);
}
