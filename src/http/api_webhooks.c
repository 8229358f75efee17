/* Webhooks (docs/webhooks.md), admin only: create (the signing secret shown once), list, get,
 * delete, the delivery log and a replay. The engine (engine/webhooks.h) checks and delivers;
 * this file decodes and encodes. */
#include "http/api.h"

#include "engine/webhooks.h"
#include "store/store_webhook.h"

#include <string.h>

static json_t *events_json(const char *events)
{
	json_t *list = json_array();
	const char *p = events;
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		if (len > 0)
			json_array_append_new(list, json_stringn(p, len));
		p += len;
		if (*p == ',')
			p++;
	}
	return list;
}

static json_t *webhook_json(const struct store_webhook *h)
{
	return json_pack(
	    "{s:s,s:o,s:o,s:b,s:o,s:i,s:o,s:o,s:o}", "id", h->id, "url", api_text(h->url), "events",
	    events_json(h->events), "active", h->active, "created_at", api_time(h->created_at),
	    "failed_attempts", h->attempts, "next_attempt_at",
	    h->attempts > 0 ? api_time(h->next_attempt_at / 1000) : json_null(), "last_status",
	    h->last_status > 0 ? json_integer(h->last_status) : json_null(), "last_error",
	    h->last_error[0] ? api_text(h->last_error) : json_null());
}

static void create_done(void *ctx, const struct webhooks_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "webhook"))
		return;
	json_t *doc = webhook_json(r->webhook);
	/* The only time the secret is shown: the store keeps it sealed. */
	json_object_set_new(doc, "secret", json_string(r->secret));
	http_reply_json(req, 201, doc);
}

void api_webhooks_create(struct http_request *req, void *app)
{
	struct api *api = app;
	const char *url = NULL;
	json_t *events = NULL;
	const struct json_field fields[] = {
	    {.name = "url",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_WEBHOOK_URL_MAX,
	     .single_line = true,
	     .out = &url},
	    {.name = "events",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = true,
	     .max_len = MT_WEBHOOK_EVENT_NAME_MAX,
	     .max_items = MT_WEBHOOK_EVENTS_MAX,
	     .single_line = true,
	     .out = &events},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	const char *names[MT_WEBHOOK_EVENTS_MAX];
	size_t count = 0;
	for (; count < json_array_size(events) && count < MT_WEBHOOK_EVENTS_MAX; count++)
		names[count] = json_string_value(json_array_get(events, count));
	const struct http_auth *auth = http_request_auth(req);
	webhooks_create(api->webhooks, auth->org_id, url, names, count, create_done, req);
	json_decref(root);
}

static void list_done(void *ctx, const struct webhooks_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "webhooks"))
		return;
	json_t *items = json_array();
	for (size_t i = 0; i < r->count; i++)
		json_array_append_new(items, webhook_json(&r->list[i]));
	http_reply_json(req, 200, json_pack("{s:o}", "webhooks", items));
}

void api_webhooks_list(struct http_request *req, void *app)
{
	struct api *api = app;
	webhooks_list(api->webhooks, http_request_auth(req)->org_id, list_done, req);
}

static void get_done(void *ctx, const struct webhooks_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "webhook"))
		return;
	http_reply_json(req, 200, webhook_json(r->webhook));
}

void api_webhooks_get(struct http_request *req, void *app)
{
	struct api *api = app;
	webhooks_get(api->webhooks, http_request_auth(req)->org_id, http_request_param(req, "id"),
	             get_done, req);
}

static void delete_done(void *ctx, const struct webhooks_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "webhook"))
		return;
	http_reply_empty(req, 204);
}

void api_webhooks_delete(struct http_request *req, void *app)
{
	struct api *api = app;
	webhooks_delete(api->webhooks, http_request_auth(req)->org_id,
	                http_request_param(req, "id"), delete_done, req);
}

static void deliveries_done(void *ctx, const struct webhooks_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "webhook"))
		return;
	const struct store_webhook_delivery_list *list = r->deliveries;
	json_t *items = json_array();
	for (size_t i = 0; i < list->count; i++) {
		const struct store_webhook_delivery *d = &list->items[i];
		json_array_append_new(
		    items,
		    json_pack("{s:s,s:s,s:s,s:i,s:o,s:s,s:o,s:I,s:o}", "id", d->id, "event_id",
		              d->event_id, "type", d->type, "attempt", d->attempt, "status",
		              d->status > 0 ? json_integer(d->status) : json_null(), "outcome",
		              d->outcome, "error", d->error[0] ? api_text(d->error) : json_null(),
		              "duration_ms", (json_int_t)d->duration_ms, "created_at",
		              api_time(d->created_at)));
	}
	http_reply_json(
	    req, 200,
	    json_pack("{s:o,s:o}", "deliveries", items, "next_cursor",
	              list->next_cursor[0] ? json_string(list->next_cursor) : json_null()));
}

void api_webhooks_deliveries(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t limit;
	const char *cursor;
	if (!api_list_params(req, &limit, &cursor))
		return;
	webhooks_deliveries(api->webhooks, http_request_auth(req)->org_id,
	                    http_request_param(req, "id"), cursor, limit, deliveries_done, req);
}

void api_webhooks_replay(struct http_request *req, void *app)
{
	struct api *api = app;
	const char *since = NULL;
	const struct json_field fields[] = {
	    {.name = "since_event",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_ID_MAX + 24,
	     .single_line = true,
	     .nullable = true,
	     .out = &since},
	};
	/* The body is optional: none replays nothing but retries now. */
	json_t *root = NULL;
	size_t body_len = 0;
	http_request_body(req, &body_len);
	if (body_len > 0 &&
	    (root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]))) == NULL)
		return;
	webhooks_replay(api->webhooks, http_request_auth(req)->org_id,
	                http_request_param(req, "id"), since, get_done, req);
	json_decref(root);
}
