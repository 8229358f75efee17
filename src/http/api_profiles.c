/* Profiles: the CRM's people (applicants, contacts, employees) and their addresses, which the
 * activity matcher looks up. Creating, changing (with backfill), erasing and listing them is the
 * engine's (engine/profile_ops.h), and so is the CSV import (engine/import.h), whose body is
 * streamed into it as it arrives: a bad file is refused whole (400, nothing stored) when found
 * before its first chunk is stored; bad rows are reported by line, the good ones stored a chunk
 * at a time. */
#include "http/api.h"

#include "engine/import.h"
#include "engine/profile_ops.h"
#include "engine/profiles.h"
#include "lib/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *profile_json(const struct store_profile *profile)
{
	return json_pack(
	    "{s:s,s:s,s:o,s:o,s:o,s:o,s:o}", "id", profile->id, "kind",
	    profile_kind_name(profile->kind), "name", api_text(profile->name), "external_id",
	    profile->external_id[0] ? api_text(profile->external_id) : json_null(), "emails",
	    api_string_array(profile->emails, profile->email_count), "created_at",
	    api_time(profile->created_at), "updated_at", api_time(profile->updated_at));
}

/* A changed profile, with the other profiles that share one of its addresses. */
static json_t *changed_json(const struct profile_result *r)
{
	json_t *j = profile_json(r->profile);
	json_t *shared = json_array();
	for (size_t i = 0; i < r->shared_count; i++)
		json_array_append_new(shared, json_string(r->shared_with[i]));
	json_object_set_new(j, "shared_with", shared);
	if (r->shared_total > r->shared_count)
		json_object_set_new(j, "shared_with_total",
		                    json_integer((json_int_t)r->shared_total));
	return j;
}

/* Decodes {kind,name,external_id,emails} into `input`; `partial` allows omissions (PATCH). Returns
 * the decoded document, which owns the strings `input` points to, or NULL after replying 400. */
static json_t *decode_profile(struct http_request *req, struct profile_input *input, bool partial)
{
	json_t *emails = NULL;
	const struct json_field fields[] = {
	    {.name = "kind",
	     .type = JSON_FIELD_STRING,
	     .required = !partial,
	     .max_len = 16,
	     .out = &input->kind,
	     .present = &input->set_kind},
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .required = !partial,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &input->name,
	     .present = &input->set_name},
	    {.name = "external_id",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_EXTERNAL_ID_MAX,
	     .single_line = true,
	     .out = &input->external_id,
	     .present = &input->set_external_id},
	    {.name = "emails",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = !partial,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_PROFILE_EMAILS_MAX,
	     .single_line = true,
	     .out = &emails,
	     .present = &input->set_emails},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	for (size_t i = 0; root != NULL && emails != NULL && i < json_array_size(emails) &&
	                   i < MT_PROFILE_EMAILS_MAX;
	     i++)
		input->emails[input->email_count++] = json_string_value(json_array_get(emails, i));
	return root;
}

/* ---- create / get / update / delete ---- */

static void profile_created(void *ctx, const struct profile_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "profile"))
		http_reply_json(req, 201, changed_json(r));
}

static void profile_changed(void *ctx, const struct profile_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "profile"))
		http_reply_json(req, r->created ? 201 : 200, changed_json(r));
}

static void profile_done(void *ctx, const struct profile_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "profile"))
		http_reply_json(req, 200, profile_json(r->profile));
}

void api_profiles_create(struct http_request *req, void *app)
{
	struct api *api = app;
	struct profile_input input = {0};
	json_t *root = decode_profile(req, &input, false);
	if (root == NULL)
		return;
	profile_create(api->store, http_request_auth(req)->org_id, &input, profile_created, req);
	json_decref(root);
}

void api_profiles_get(struct http_request *req, void *app)
{
	struct api *api = app;
	profile_get(api->store, http_request_auth(req)->org_id, http_request_param(req, "id"),
	            profile_done, req);
}

void api_profiles_update(struct http_request *req, void *app)
{
	struct api *api = app;
	struct profile_input input = {0};
	json_t *root = decode_profile(req, &input, true);
	if (root == NULL)
		return;
	profile_update(api->store, http_request_auth(req)->org_id, http_request_param(req, "id"),
	               &input, profile_changed, req);
	json_decref(root);
}

void api_profiles_upsert_external(struct http_request *req, void *app)
{
	struct api *api = app;
	struct profile_input input = {0};
	json_t *root = decode_profile(req, &input, false);
	if (root == NULL)
		return;
	profile_upsert_external(api->store, http_request_auth(req)->org_id,
	                        http_request_param(req, "id"), &input, profile_changed, req);
	json_decref(root);
}

void api_profiles_get_external(struct http_request *req, void *app)
{
	struct api *api = app;
	profile_get_external(api->store, http_request_auth(req)->org_id,
	                     http_request_param(req, "id"), profile_done, req);
}

static void profile_erased(void *ctx, const struct profile_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "profile"))
		http_reply_empty(req, 204);
}

void api_profiles_delete(struct http_request *req, void *app)
{
	struct api *api = app;
	profile_erase(api->store, http_request_auth(req)->org_id, http_request_param(req, "id"),
	              profile_erased, req);
}

/* ---- list and search ---- */

static void profiles_listed(void *ctx, const struct profile_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "profiles"))
		return;
	json_t *items = json_array();
	for (size_t i = 0; i < r->list->count; i++)
		json_array_append_new(items, profile_json(&r->list->items[i]));
	http_reply_json(
	    req, 200,
	    json_pack("{s:o,s:o}", "profiles", items, "next_cursor",
	              r->list->next_cursor[0] ? json_string(r->list->next_cursor) : json_null()));
}

void api_profiles_list(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t limit;
	const char *cursor, *query = http_request_query(req, "q");
	if (!api_list_params(req, &limit, &cursor))
		return;
	if (query != NULL && (strlen(query) > MT_NAME_MAX || mt_str_has_crlf(query))) {
		http_reply_error(req, 400, "input", "q: too long or contains a line break", NULL,
		                 NULL);
		return;
	}
	profile_list(api->store, http_request_auth(req)->org_id, query != NULL ? query : "",
	             cursor != NULL ? cursor : "", limit, profiles_listed, req);
}

/* ---- CSV import ---- */

static void imported(void *ctx, const struct import_result *result)
{
	struct http_request *req = ctx;
	http_request_set_data(req, NULL); /* the stream is gone */
	switch (result->verdict) {
	case IMPORT_DONE: {
		json_t *rejected = json_array();
		for (size_t i = 0; i < result->reject_count; i++)
			json_array_append_new(
			    rejected, json_pack("{s:i,s:o}", "line", (int)result->rejects[i].line,
			                        "error", api_text(result->rejects[i].error)));
		json_t *profiles = json_array();
		for (size_t i = 0; i < result->id_count; i++) {
			const struct import_id *x = &result->ids[i];
			json_array_append_new(
			    profiles,
			    json_pack("{s:i,s:s,s:o,s:b}", "line", (int)x->line, "id", x->id,
			              "external_id",
			              x->external_id[0] ? api_text(x->external_id) : json_null(),
			              "created", x->created));
		}
		json_t *stopped = result->stopped_line > 0
		                      ? json_pack("{s:i,s:o}", "line", (int)result->stopped_line,
		                                  "error", api_text(result->reason))
		                      : json_null();
		http_reply_json(req, 200,
		                json_pack("{s:I,s:I,s:o,s:o,s:I,s:o}", "imported",
		                          (json_int_t)result->imported, "updated",
		                          (json_int_t)result->updated, "profiles", profiles,
		                          "rejected", rejected, "rejected_total",
		                          (json_int_t)result->rejected_total, "stopped", stopped));
		break;
	}
	case IMPORT_BAD_FILE:
		http_reply_error(req, 400, "input", result->reason, NULL, NULL);
		break;
	case IMPORT_TOO_LARGE:
		http_reply_error(req, 413, "input", result->reason, NULL, NULL);
		break;
	case IMPORT_BODY_FAILED:
		if (result->status == 503)
			http_reply_error_retry(req, 503, "internal", result->reason, 1);
		else
			http_reply_error(req, result->status, "input", result->reason, NULL, NULL);
		break;
	case IMPORT_ORG_BUSY:
		http_reply_error_retry(req, 429, "throttle", result->reason, 5);
		break;
	case IMPORT_BUSY:
		http_reply_error_retry(req, 503, "internal", result->reason, 1);
		break;
	}
}

static void import_flow(void *ctx, bool pause)
{
	struct http_request *req = ctx;
	if (pause)
		http_request_stream_pause(req);
	else
		http_request_stream_resume(req);
}

/* The body's pieces go to the import as they arrive (copied; parsed on a worker). */
static void import_body(void *ctx, const struct http_stream_item *item)
{
	struct http_request *req = ctx;
	struct import_stream *stream = http_request_get_data(req);
	if (stream == NULL)
		return; /* answered already */
	switch (item->event) {
	case HTTP_STREAM_DATA:
		profile_import_feed(stream, item->data, item->len);
		break;
	case HTTP_STREAM_END:
		profile_import_end(stream, IMPORT_END_COMPLETE, 0, NULL);
		break;
	case HTTP_STREAM_FAILED:
		profile_import_end(stream, IMPORT_END_FAILED, item->status, item->why);
		break;
	case HTTP_STREAM_GONE:
		profile_import_end(stream, IMPORT_END_GONE, 0, NULL);
		break;
	}
}

void api_profiles_import(struct http_request *req, void *app)
{
	struct api *api = app;
	struct import_stream *stream = profile_import_start(
	    api->store, api->work, http_request_auth(req)->org_id, imported, import_flow, req);
	if (stream == NULL)
		return; /* answered */
	http_request_set_data(req, stream);
	http_request_stream_body(req, import_body, req);
}
