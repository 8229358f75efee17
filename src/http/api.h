/* The HTTP API of DESIGN.md §2: routes, their handlers, and what they share.
 *
 * Handlers run on the event loop. They decode the request, call one engine function (src/engine)
 * and encode its result or verdict from the engine's `done` callback: the rules and the store
 * jobs are the engine's. Ownership: `struct api` is owned by `serve` and outlives the HTTP
 * server; a handler's own state (the request, or a small struct it allocates) is owned by the
 * handler until its reply. */
#ifndef MT_HTTP_API_H
#define MT_HTTP_API_H

#include "http/server.h"
#include "lib/limits.h"
#include "proto/json_decode.h"

#include <jansson.h>
#include <stdbool.h>

struct event_base;
struct evdns_base;
struct mt_config;
struct mt_keyring;
struct mt_tls_config;
struct sender;
struct store;
struct accounts;
struct auth_cache_entry;
struct crud_outcome;
struct outbox;
struct campaigns;
struct imap_syncer;
struct store_activity;
struct users;
struct api_keys;
struct webhooks;
struct work_pool;

struct api {
	struct event_base *base;
	struct evdns_base *dns;
	struct store *store;
	struct mt_keyring *keyring;
	const struct mt_config *config;
	struct mt_tls_config *tls;
	struct accounts *accounts; /* users' mail accounts (engine/account.h) */
	struct users *users;       /* users, tokens, authentication (engine/users.h) */
	struct api_keys *api_keys; /* org-level API keys (engine/api_keys.h) */
	/* Tokens authenticated lately (api.c); auth_generation moves whenever a user or token
	 * changes, which invalidates them. */
	struct auth_cache_entry *auth_cache;
	uint64_t auth_generation;
	unsigned long long started_at;
	struct sender *sender;
	struct outbox *outbox;
	struct campaigns *campaigns;     /* engine/campaign.h */
	struct imap_syncer *imap_syncer; /* engine/imap_sync.h */
	struct work_pool *work;          /* CPU-heavy request steps, off the loop */
	struct oauth_flows *oauth_flows; /* engine/oauth_flow.h */
	struct webhooks *webhooks;       /* engine/webhooks.h */
	/* The platform relay (config `relay`); relay_from is its envelope sender. */
	bool relay_configured;
	char relay_from[MT_ADDRESS_MAX + 1];
};

/* The route table and the authentication hook for http_server_new(). */
const struct http_route *api_routes(size_t *count_r);
void api_authenticate(struct http_request *req, const char *token, void *app);
/* A change to someone's access was submitted, or has finished (engine/users.h
 * on_access_change): tokens authenticated before are read again. */
void api_auth_changed(struct api *api);

/* ---- shared by the handlers (api.c) ---- */

/* The header of a handler's state that outlives the handler call: the request and its caller. */
struct api_job {
	struct api *api;
	struct http_request *req;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	bool admin;
};

/* Allocates a zeroed job of `size` bytes whose header is filled from the request. */
void *api_job_new(struct api *api, struct http_request *req, size_t size);
/* Replies for an engine outcome that is not CRUD_OK (engine/crud.h: 400, 403, 404, 409, 500,
 * 503) and returns true; false for CRUD_OK. `what` names the object in a 404 or 409 ("user",
 * "a user with that address"). */
bool api_reply_outcome(struct http_request *req, const struct crud_outcome *outcome,
                       const char *what);

/* Replies for an account save's or view's verdict that is not ACCOUNT_OK (engine/account.h):
 * 400, 403, 404, 409, 422 (with the server's reply and the certificate's pin), 429, 500, 503. */
struct account_result;
void api_reply_account(struct http_request *req, const struct account_result *r);
/* Parses and checks a JSON body against `fields`; on error replies 400 and returns NULL. The
 * returned object owns the strings the fields point to: json_decref() it when done. */
json_t *api_decode(struct http_request *req, const struct json_field *fields, size_t count);
/* The Idempotency-Key header into `out` ("" when absent); replies 400 and returns false when it
 * is not 1 to size-1 printable ASCII characters. */
bool api_idempotency_key(struct http_request *req, char *out, size_t size);
/* The `limit` and `cursor` query parameters; replies 400 and returns false when bad. */
bool api_list_params(struct http_request *req, size_t *limit_r, const char **cursor_r);
/* RFC 3339 UTC ("2026-11-26T10:00:00Z"), or JSON null for 0. */
json_t *api_time(int64_t unix_seconds);
/* An activity as the API shows it (DESIGN.md §1 Activity); a tombstone (the feed) as
 * {id, profile_id, deleted: true, reason, deleted_at}. */
json_t *api_activity_json(const struct store_activity *activity);
/* A JSON string of stored text; bytes that are not UTF-8 (stored before it was checked on the
 * way in) become U+FFFD instead of failing the whole reply. Never NULL but out of memory. */
json_t *api_text(const char *text);
/* Text for an HTML page, with the characters HTML gives a meaning escaped (truncated to fit). */
void api_html_escape(const char *in, char *out, size_t size);
/* A small HTML page for a person's browser (the unsubscribe link, the OAuth callback):
 * `title` and `body_html` are put in as they are (escape what came from outside). */
void api_reply_page(struct http_request *req, int status, const char *title, const char *body_html);
/* A new JSON array of strings. */
json_t *api_string_array(const char (*items)[MT_ADDRESS_MAX + 1], size_t count);

/* Handlers, one file per area. */
void api_org_get(struct http_request *req, void *app);
void api_org_put(struct http_request *req, void *app);
void api_org_features_put(struct http_request *req, void *app);
void api_users_create(struct http_request *req, void *app);
void api_users_update(struct http_request *req, void *app);
void api_users_delete(struct http_request *req, void *app);
void api_users_list(struct http_request *req, void *app);
void api_users_get(struct http_request *req, void *app);
void api_users_tokens(struct http_request *req, void *app);
void api_users_tokens_create(struct http_request *req, void *app);
void api_users_tokens_revoke(struct http_request *req, void *app);
void api_keys_create_handler(struct http_request *req, void *app);
void api_keys_list_handler(struct http_request *req, void *app);
void api_keys_revoke_handler(struct http_request *req, void *app);
void api_tokens_create(struct http_request *req, void *app);
void api_tokens_delete(struct http_request *req, void *app);
void api_profiles_create(struct http_request *req, void *app);
void api_profiles_get(struct http_request *req, void *app);
void api_profiles_update(struct http_request *req, void *app);
void api_profiles_delete(struct http_request *req, void *app);
void api_profiles_upsert_external(struct http_request *req, void *app);
void api_profiles_get_external(struct http_request *req, void *app);
void api_profiles_list(struct http_request *req, void *app);
void api_profiles_import(struct http_request *req, void *app);
void api_smtp_presets(struct http_request *req, void *app);
void api_smtp_get(struct http_request *req, void *app);
void api_smtp_put(struct http_request *req, void *app);
void api_smtp_patch(struct http_request *req, void *app);
void api_smtp_delete(struct http_request *req, void *app);
void api_imap_get(struct http_request *req, void *app);
void api_imap_put(struct http_request *req, void *app);
void api_imap_delete(struct http_request *req, void *app);
void api_imap_sync(struct http_request *req, void *app);
void api_oauth_start(struct http_request *req, void *app);
void api_oauth_callback(struct http_request *req, void *app);
void api_profile_activities(struct http_request *req, void *app);
void api_activity_feed(struct http_request *req, void *app);
void api_addin_log(struct http_request *req, void *app);
void api_never_log_get(struct http_request *req, void *app);
void api_never_log_put(struct http_request *req, void *app);
void api_messages_send(struct http_request *req, void *app);
void api_messages_get(struct http_request *req, void *app);
void api_messages_list(struct http_request *req, void *app);
void api_messages_cancel(struct http_request *req, void *app);
void api_notifications_list(struct http_request *req, void *app);
void api_campaigns_create(struct http_request *req, void *app);
void api_campaigns_get(struct http_request *req, void *app);
void api_campaigns_pause(struct http_request *req, void *app);
void api_campaigns_resume(struct http_request *req, void *app);
void api_campaigns_cancel(struct http_request *req, void *app);
void api_unsubscribe_get(struct http_request *req, void *app);
void api_unsubscribe_post(struct http_request *req, void *app);
void api_webhooks_create(struct http_request *req, void *app);
void api_webhooks_list(struct http_request *req, void *app);
void api_webhooks_get(struct http_request *req, void *app);
void api_webhooks_delete(struct http_request *req, void *app);
void api_webhooks_deliveries(struct http_request *req, void *app);
void api_webhooks_replay(struct http_request *req, void *app);
void api_healthz(struct http_request *req, void *app);
void api_metrics(struct http_request *req, void *app);

#endif
