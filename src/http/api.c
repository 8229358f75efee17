#include "http/api.h"

#include "crypto/seal.h"
#include "lib/log.h"
#include "lib/str.h"
#include "engine/account.h"
#include "engine/api_keys.h"
#include "engine/users.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct http_route routes[] = {
    {"GET", "/healthz", HTTP_PUBLIC, api_healthz, "healthz", 0, NULL, false},
    {"GET", "/metrics", HTTP_PUBLIC, api_metrics, "metrics", 0, NULL, false},
    {"GET", "/v1/org", HTTP_ADMIN, api_org_get, "org.get", 0, NULL, false},
    {"PUT", "/v1/org", HTTP_ADMIN, api_org_put, "org.put", 0, NULL, false},
    {"PUT", "/v1/org/features", HTTP_ADMIN, api_org_features_put, "org.features", 0, NULL, false},
    {"POST", "/v1/users", HTTP_ADMIN, api_users_create, "users.create", 0, NULL, false},
    {"GET", "/v1/users", HTTP_ADMIN, api_users_list, "users.list", 0, "limit,cursor", false},
    {"GET", "/v1/users/{id}", HTTP_ADMIN, api_users_get, "users.get", 0, NULL, false},
    {"GET", "/v1/users/{id}/tokens", HTTP_ADMIN, api_users_tokens, "users.tokens", 0, NULL, false},
    {"POST", "/v1/users/{id}/tokens", HTTP_ADMIN, api_users_tokens_create, "users.tokens_create", 0,
     NULL, false},
    {"DELETE", "/v1/users/{id}/tokens/{token_id}", HTTP_ADMIN, api_users_tokens_revoke,
     "users.tokens_revoke", 0, NULL, false},
    {"POST", "/v1/api-keys", HTTP_ADMIN, api_keys_create_handler, "api_keys.create", 0, NULL,
     false},
    {"GET", "/v1/api-keys", HTTP_ADMIN, api_keys_list_handler, "api_keys.list", 0, NULL, false},
    {"DELETE", "/v1/api-keys/{id}", HTTP_ADMIN, api_keys_revoke_handler, "api_keys.revoke", 0, NULL,
     false},
    {"PATCH", "/v1/users/{id}", HTTP_ADMIN, api_users_update, "users.update", 0, NULL, false},
    {"DELETE", "/v1/users/{id}", HTTP_ADMIN, api_users_delete, "users.delete", 0, NULL, false},
    {"POST", "/v1/tokens", HTTP_USER, api_tokens_create, "tokens.create", 0, NULL, false},
    {"DELETE", "/v1/tokens/{id}", HTTP_USER, api_tokens_delete, "tokens.delete", 0, NULL, false},
    {"POST", "/v1/profiles", HTTP_USER, api_profiles_create, "profiles.create", 0, NULL, false},
    {"GET", "/v1/profiles", HTTP_USER, api_profiles_list, "profiles.list", 0, "q,limit,cursor",
     false},
    {"POST", "/v1/profiles/import", HTTP_USER, api_profiles_import, "profiles.import",
     MT_HTTP_IMPORT_STREAM_MAX, NULL, true},
    /* Before /v1/profiles/{id}/...: an external id may be any text, "activities" too. */
    {"GET", "/v1/profiles/by-external-id/{id}", HTTP_USER, api_profiles_get_external,
     "profiles.get_external", 0, NULL, false},
    {"PUT", "/v1/profiles/by-external-id/{id}", HTTP_USER, api_profiles_upsert_external,
     "profiles.upsert_external", 0, NULL, false},
    {"GET", "/v1/profiles/{id}", HTTP_USER, api_profiles_get, "profiles.get", 0, NULL, false},
    {"GET", "/v1/profiles/{id}/activities", HTTP_USER, api_profile_activities,
     "profiles.activities", 0, "limit,cursor,thread_id", false},
    {"GET", "/v1/activities", HTTP_USER, api_activity_feed, "activities.feed", 0,
     "since,cursor,limit", false},
    {"POST", "/v1/addin/log", HTTP_USER, api_addin_log, "addin.log", MT_HTTP_MESSAGE_MAX, NULL,
     false},
    {"GET", "/v1/never-log", HTTP_USER, api_never_log_get, "never_log.get", 0, "scope", false},
    {"PUT", "/v1/never-log", HTTP_USER, api_never_log_put, "never_log.put", 0, NULL, false},
    {"PATCH", "/v1/profiles/{id}", HTTP_USER, api_profiles_update, "profiles.update", 0, NULL,
     false},
    {"DELETE", "/v1/profiles/{id}", HTTP_USER, api_profiles_delete, "profiles.delete", 0, NULL,
     false},
    {"POST", "/v1/messages", HTTP_USER, api_messages_send, "messages.send", MT_HTTP_MESSAGE_MAX,
     NULL, false},
    {"GET", "/v1/messages", HTTP_USER, api_messages_list, "messages.list", 0,
     "state,user,campaign,limit,cursor", false},
    {"GET", "/v1/messages/{id}", HTTP_USER, api_messages_get, "messages.get", 0, NULL, false},
    {"DELETE", "/v1/messages/{id}", HTTP_USER, api_messages_cancel, "messages.cancel", 0, NULL,
     false},
    {"GET", "/v1/smtp/presets", HTTP_USER, api_smtp_presets, "smtp.presets", 0, NULL, false},
    {"GET", "/v1/smtp", HTTP_USER, api_smtp_get, "smtp.get", 0, NULL, false},
    {"PUT", "/v1/smtp", HTTP_USER, api_smtp_put, "smtp.put", 0, NULL, false},
    {"PATCH", "/v1/smtp", HTTP_USER, api_smtp_patch, "smtp.patch", 0, NULL, false},
    {"DELETE", "/v1/smtp", HTTP_USER, api_smtp_delete, "smtp.delete", 0, NULL, false},
    {"GET", "/v1/imap", HTTP_USER, api_imap_get, "imap.get", 0, NULL, false},
    {"PUT", "/v1/imap", HTTP_USER, api_imap_put, "imap.put", 0, NULL, false},
    {"DELETE", "/v1/imap", HTTP_USER, api_imap_delete, "imap.delete", 0, NULL, false},
    {"POST", "/v1/imap/sync", HTTP_USER, api_imap_sync, "imap.sync", 0, NULL, false},
    {"GET", "/v1/oauth/start", HTTP_USER, api_oauth_start, "oauth.start", 0, "provider,for", false},
    /* The provider sends the user's browser here: the flow's state is the only credential. */
    {"GET", "/oauth/callback", HTTP_PUBLIC, api_oauth_callback, "oauth.callback", 0, "*", false},
    {"GET", "/v1/notifications", HTTP_USER, api_notifications_list, "notifications.list", 0,
     "limit,cursor", false},
    {"POST", "/v1/campaigns", HTTP_USER, api_campaigns_create, "campaigns.create",
     MT_HTTP_CAMPAIGN_MAX, NULL, false},
    {"GET", "/v1/campaigns/{id}", HTTP_USER, api_campaigns_get, "campaigns.get", 0, NULL, false},
    {"POST", "/v1/campaigns/{id}/pause", HTTP_USER, api_campaigns_pause, "campaigns.pause", 0, NULL,
     false},
    {"POST", "/v1/campaigns/{id}/resume", HTTP_USER, api_campaigns_resume, "campaigns.resume", 0,
     NULL, false},
    {"POST", "/v1/campaigns/{id}/cancel", HTTP_USER, api_campaigns_cancel, "campaigns.cancel", 0,
     NULL, false},
    {"POST", "/v1/webhooks", HTTP_ADMIN, api_webhooks_create, "webhooks.create", 0, NULL, false},
    {"GET", "/v1/webhooks", HTTP_ADMIN, api_webhooks_list, "webhooks.list", 0, NULL, false},
    {"GET", "/v1/webhooks/{id}", HTTP_ADMIN, api_webhooks_get, "webhooks.get", 0, NULL, false},
    {"DELETE", "/v1/webhooks/{id}", HTTP_ADMIN, api_webhooks_delete, "webhooks.delete", 0, NULL,
     false},
    {"GET", "/v1/webhooks/{id}/deliveries", HTTP_ADMIN, api_webhooks_deliveries,
     "webhooks.deliveries", 0, "limit,cursor", false},
    {"POST", "/v1/webhooks/{id}/replay", HTTP_ADMIN, api_webhooks_replay, "webhooks.replay", 0,
     NULL, false},
    /* The unsubscribe links in campaign mail: their token is the only credential. */
    {"GET", "/u/{token}", HTTP_PUBLIC, api_unsubscribe_get, "unsubscribe.get", 0, "*", false},
    {"POST", "/u/{token}", HTTP_PUBLIC, api_unsubscribe_post, "unsubscribe.post", 0, "*", false},
};

const struct http_route *api_routes(size_t *count_r)
{
	*count_r = sizeof(routes) / sizeof(routes[0]);
	return routes;
}

/* ---- authentication ---- */

/* Tokens seen lately, by hash, so that most requests need no store read to authenticate: an
 * entry lives MT_AUTH_CACHE_MS and only while no user or token of this process changed since it
 * was read (auth_generation, bumped when such a change is submitted and again when it is
 * committed, so a read that raced one is never kept). Another node's revocation reaches this
 * one within MT_AUTH_CACHE_MS. */
struct auth_cache_entry {
	unsigned char hash[32]; /* a token's; for a key, of the key's hash and the user it names */
	struct http_auth auth;
	unsigned scopes; /* a key's */
	bool key;
	int64_t expires_ms;
	uint64_t generation;
	bool used;
};

static struct auth_cache_entry *auth_slot(struct api *api, const unsigned char hash[32])
{
	if (api->auth_cache == NULL) {
		api->auth_cache = calloc(MT_AUTH_CACHE_ENTRIES, sizeof(*api->auth_cache));
		if (api->auth_cache == NULL)
			return NULL;
	}
	uint32_t index;
	memcpy(&index, hash, sizeof(index)); /* a hash: any bytes are as good as a modulo */
	return &api->auth_cache[index % MT_AUTH_CACHE_ENTRIES];
}

void api_auth_changed(struct api *api)
{
	api->auth_generation++;
}

/* A token being read from the store: what is needed to keep the answer in the cache. */
struct auth_wait {
	struct api *api;
	struct http_request *req;
	unsigned char hash[32];
	uint64_t generation; /* when the read was asked for */
};

/* A credential read from the store kept for MT_AUTH_CACHE_MS, unless access changed meanwhile. */
static void auth_remember(const struct auth_wait *wait, const struct http_auth *auth,
                          unsigned scopes, bool key)
{
	struct auth_cache_entry *e = auth_slot(wait->api, wait->hash);
	if (e == NULL || wait->generation != wait->api->auth_generation)
		return;
	memcpy(e->hash, wait->hash, sizeof(e->hash));
	e->auth = *auth;
	e->scopes = scopes;
	e->key = key;
	e->expires_ms = mt_now_ms() + MT_AUTH_CACHE_MS;
	e->generation = wait->generation;
	e->used = true;
}

static void authenticated(void *ctx, const struct crud_outcome *outcome,
                          const struct users_identity *identity)
{
	struct auth_wait *wait = ctx;
	if (outcome->verdict == CRUD_BUSY) {
		http_reply_error_retry(wait->req, 503, "internal", "the store is busy; try again",
		                       1);
	} else if (identity == NULL) {
		/* Unknown, revoked, or the store failed: nobody gets in on a failure. */
		http_request_authenticated(wait->req, NULL);
	} else {
		struct http_auth auth;
		memset(&auth, 0, sizeof(auth));
		mt_strlcpy(auth.org_id, identity->org_id, sizeof(auth.org_id));
		mt_strlcpy(auth.user_id, identity->user_id, sizeof(auth.user_id));
		mt_strlcpy(auth.token_id, identity->token_id, sizeof(auth.token_id));
		auth.admin = identity->admin;
		auth_remember(wait, &auth, 0, false);
		http_request_authenticated(wait->req, &auth);
	}
	sodium_memzero(wait->hash, sizeof(wait->hash));
	free(wait);
}

/* ---- org-level API keys (engine/api_keys.h) ---- */

/* A key's request, its key and user known: what the key's scopes allow decides. */
static void key_admit(struct http_request *req, const struct http_auth *auth, unsigned scopes)
{
	const char *reason;
	enum api_key_verdict v = api_key_permits(scopes, http_request_route_name(req),
	                                         auth->user_id[0] != '\0', &reason);
	http_request_note_auth(req, auth);
	if (v == API_KEY_NEEDS_USER)
		http_reply_error_at(req, 400, "input", "missing_header", "X-Mailtrail-User",
		                    reason);
	else if (v == API_KEY_DENIED)
		http_reply_error_at(req, 403, "auth", "scope_denied", NULL, reason);
	else
		http_request_authenticated(req, auth);
}

static void key_authenticated(void *ctx, const struct crud_outcome *outcome,
                              const struct api_key_identity *identity)
{
	struct auth_wait *wait = ctx;
	if (outcome->verdict == CRUD_BUSY) {
		http_reply_error_retry(wait->req, 503, "internal", "the store is busy; try again",
		                       1);
	} else if (outcome->verdict == CRUD_FORBIDDEN && identity != NULL) {
		struct http_auth asked;
		memset(&asked, 0, sizeof(asked));
		mt_strlcpy(asked.key_id, identity->key_id, sizeof(asked.key_id));
		mt_strlcpy(asked.user_id, identity->user_id, sizeof(asked.user_id));
		http_request_note_auth(wait->req, &asked);
		http_reply_error(wait->req, 403, "auth", outcome->reason, NULL, NULL);
	} else if (identity == NULL) {
		http_request_authenticated(wait->req, NULL);
	} else {
		struct http_auth auth;
		memset(&auth, 0, sizeof(auth));
		mt_strlcpy(auth.org_id, identity->org_id, sizeof(auth.org_id));
		mt_strlcpy(auth.user_id, identity->user_id, sizeof(auth.user_id));
		mt_strlcpy(auth.key_id, identity->key_id, sizeof(auth.key_id));
		auth.admin = identity->admin;
		auth_remember(wait, &auth, identity->scopes, true);
		key_admit(wait->req, &auth, identity->scopes);
	}
	sodium_memzero(wait->hash, sizeof(wait->hash));
	free(wait);
}

/* The X-Mailtrail-User value: a user id's shape (what it names is the engine's question). */
static bool user_id_shaped(const char *id)
{
	size_t len = strlen(id);
	return len > 4 && len < MT_ID_MAX && strncmp(id, "usr_", 4) == 0 &&
	       strspn(id + 4, "abcdefghijklmnopqrstuvwxyz0123456789") == len - 4;
}

static void key_authenticate(struct api *api, struct http_request *req, const char *text)
{
	const char *user = http_request_header(req, "X-Mailtrail-User");
	if (user != NULL && !user_id_shaped(user)) {
		http_reply_error_at(req, 400, "input", "invalid_value", "X-Mailtrail-User",
		                    "X-Mailtrail-User: must be a user id (usr_...)");
		return;
	}
	unsigned char key_hash[32], slot[32];
	mt_token_hash(text, key_hash);
	/* The cache remembers a key with the user it acted for: the user's part is a store read. */
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, key_hash, sizeof(key_hash));
	crypto_hash_sha256_update(&st, (const unsigned char *)"\n", 1);
	if (user != NULL)
		crypto_hash_sha256_update(&st, (const unsigned char *)user, strlen(user));
	crypto_hash_sha256_final(&st, slot);
	struct auth_cache_entry *e = auth_slot(api, slot);
	if (e != NULL && e->used && e->key && e->generation == api->auth_generation &&
	    e->expires_ms > mt_now_ms() && sodium_memcmp(e->hash, slot, sizeof(slot)) == 0) {
		sodium_memzero(key_hash, sizeof(key_hash));
		sodium_memzero(slot, sizeof(slot));
		key_admit(req, &e->auth, e->scopes);
		return;
	}
	struct auth_wait *wait = calloc(1, sizeof(*wait));
	if (wait == NULL) {
		sodium_memzero(key_hash, sizeof(key_hash));
		sodium_memzero(slot, sizeof(slot));
		http_request_authenticated(req, NULL);
		return;
	}
	wait->api = api;
	wait->req = req;
	wait->generation = api->auth_generation;
	memcpy(wait->hash, slot, sizeof(slot));
	sodium_memzero(slot, sizeof(slot));
	api_keys_authenticate(api->api_keys, key_hash, user, key_authenticated, wait);
	sodium_memzero(key_hash, sizeof(key_hash));
}

void api_authenticate(struct http_request *req, const char *token, void *app)
{
	struct api *api = app;
	if (strncmp(token, MT_API_KEY_PREFIX, strlen(MT_API_KEY_PREFIX)) == 0) {
		key_authenticate(api, req, token);
		return;
	}
	/* Only a key acts for someone else: with a user's token the header would be ignored, and
	 * mail meant to go out as one recruiter would go out as the token's owner. */
	if (http_request_header(req, "X-Mailtrail-User") != NULL) {
		http_reply_error_at(req, 400, "input", "invalid_combination", "X-Mailtrail-User",
		                    "X-Mailtrail-User is for org-level API keys; a user token acts "
		                    "for its own user");
		return;
	}
	unsigned char hash[32];
	mt_token_hash(token, hash);
	struct auth_cache_entry *e = auth_slot(api, hash);
	if (e != NULL && e->used && !e->key && e->generation == api->auth_generation &&
	    e->expires_ms > mt_now_ms() && sodium_memcmp(e->hash, hash, sizeof(hash)) == 0) {
		sodium_memzero(hash, sizeof(hash));
		http_request_authenticated(req, &e->auth);
		return;
	}
	struct auth_wait *wait = calloc(1, sizeof(*wait));
	if (wait == NULL) {
		sodium_memzero(hash, sizeof(hash));
		http_request_authenticated(req, NULL);
		return;
	}
	wait->api = api;
	wait->req = req;
	wait->generation = api->auth_generation;
	memcpy(wait->hash, hash, sizeof(hash));
	sodium_memzero(hash, sizeof(hash));
	users_authenticate(api->users, wait->hash, authenticated, wait);
}

/* ---- jobs ---- */

void *api_job_new(struct api *api, struct http_request *req, size_t size)
{
	struct api_job *job = calloc(1, size);
	if (job == NULL)
		return NULL;
	job->api = api;
	job->req = req;
	const struct http_auth *auth = http_request_auth(req);
	if (auth != NULL) {
		mt_strlcpy(job->org_id, auth->org_id, sizeof(job->org_id));
		mt_strlcpy(job->user_id, auth->user_id, sizeof(job->user_id));
		job->admin = auth->admin;
	}
	return job;
}

bool api_reply_outcome(struct http_request *req, const struct crud_outcome *outcome,
                       const char *what)
{
	char message[MT_ERROR_TEXT_MAX + 64];
	const char *code = outcome->code, *field = outcome->field;
	switch (outcome->verdict) {
	case CRUD_OK:
		return false;
	case CRUD_INVALID:
		http_reply_error_at(req, 400, "input", code, field, outcome->reason);
		break;
	case CRUD_FORBIDDEN:
		http_reply_error_at(req, 403, "auth", code, field, outcome->reason);
		break;
	case CRUD_REFUSED:
		http_reply_error_at(req, 409, "input", code, field, outcome->reason);
		break;
	case CRUD_NOT_FOUND:
		snprintf(message, sizeof(message), "%s not found", what);
		http_reply_error_at(req, 404, "input", code, field, message);
		break;
	case CRUD_CONFLICT:
		snprintf(message, sizeof(message), "%s conflicts with an existing one", what);
		http_reply_error_at(req, 409, "input", code, field, message);
		break;
	case CRUD_BAD_CURSOR:
		http_reply_error_at(req, 400, "input", "invalid_cursor", "cursor",
		                    "invalid cursor: use a next_cursor from an earlier page");
		break;
	case CRUD_BUSY:
		http_reply_error_retry(req, 503, "internal", "the store is busy; try again", 1);
		break;
	case CRUD_FAILED:
		http_reply_error_at(req, 500, "internal", code, field, outcome->reason);
		break;
	}
	return true;
}

void api_reply_account(struct http_request *req, const struct account_result *r)
{
	static const int status[] = {
	    [ACCOUNT_OK] = 200,        [ACCOUNT_INVALID] = 400, [ACCOUNT_FEATURE_OFF] = 403,
	    [ACCOUNT_NOT_FOUND] = 404, [ACCOUNT_CHANGED] = 409, [ACCOUNT_CHECK_FAILED] = 422,
	    [ACCOUNT_THROTTLED] = 429, [ACCOUNT_BUSY] = 503,    [ACCOUNT_FAILED] = 500,
	};
	int code = status[r->verdict];
	if (r->verdict == ACCOUNT_THROTTLED || r->verdict == ACCOUNT_BUSY) {
		http_reply_error_retry(
		    req, code, r->verdict == ACCOUNT_THROTTLED ? "throttle" : "internal", r->reason,
		    r->verdict == ACCOUNT_THROTTLED ? MT_LIVE_CHECK_STEP_MS / 1000 : 1);
		return;
	}
	const char *cls = r->verdict == ACCOUNT_CHECK_FAILED ? mt_class_name(r->cls)
	                  : r->verdict == ACCOUNT_FAILED     ? "internal"
	                                                     : "input";
	/* An IMAP server's response goes where SMTP puts its reply. */
	http_reply_error_check(req, code, cls, r->code, r->field, r->reason,
	                       r->smtp_reply[0] ? r->smtp_reply : NULL,
	                       r->fingerprint[0] ? r->fingerprint : NULL);
}

json_t *api_decode(struct http_request *req, const struct json_field *fields, size_t count)
{
	size_t len;
	const char *body = http_request_body(req, &len);
	char error[256];
	json_t *root = json_decode_body(body != NULL ? body : "", body != NULL ? len : 0, error,
	                                sizeof(error));
	if (root == NULL) {
		http_reply_error_at(req, 400, "input", "invalid_json", NULL, error);
		return NULL;
	}
	struct json_decode_error err;
	if (json_decode_fields_at(root, fields, count, &err) < 0) {
		json_decref(root);
		http_reply_error_at(req, 400, "input", err.code, err.field, err.message);
		return NULL;
	}
	return root;
}

bool api_list_params(struct http_request *req, size_t *limit_r, const char **cursor_r)
{
	const char *limit = http_request_query(req, "limit");
	*limit_r = MT_LIST_LIMIT_DEFAULT;
	if (limit != NULL) {
		char *end;
		long v = strtol(limit, &end, 10);
		if (end == limit || *end != '\0' || v < 1 || v > MT_LIST_LIMIT_MAX) {
			char message[64];
			snprintf(message, sizeof(message), "limit must be 1..%d",
			         MT_LIST_LIMIT_MAX);
			http_reply_error_at(req, 400, "input", "out_of_range", "limit", message);
			return false;
		}
		*limit_r = (size_t)v;
	}
	*cursor_r = http_request_query(req, "cursor");
	if (*cursor_r != NULL && strlen(*cursor_r) >= MT_CURSOR_MAX) {
		http_reply_error_at(req, 400, "input", "invalid_cursor", "cursor",
		                    "invalid cursor");
		return false;
	}
	return true;
}

json_t *api_time(int64_t unix_seconds)
{
	if (unix_seconds == 0)
		return json_null();
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	gmtime_r(&t, &tm);
	char text[32];
	strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(text);
}

json_t *api_string_array(const char (*items)[MT_ADDRESS_MAX + 1], size_t count)
{
	json_t *array = json_array();
	for (size_t i = 0; i < count; i++)
		json_array_append_new(array, json_string(items[i]));
	return array;
}

json_t *api_text(const char *text)
{
	json_t *j = json_string(text);
	if (j != NULL || text == NULL)
		return j;
	size_t len = strlen(text);
	char *clean = malloc(len * 3 + 1);
	if (clean == NULL)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		size_t seq = mt_utf8_sequence(text + i, len - i);
		if (seq == 0) {
			memcpy(clean + n, "\xef\xbf\xbd", 3); /* U+FFFD */
			n += 3;
			i++;
		} else {
			memcpy(clean + n, text + i, seq);
			n += seq;
			i += seq;
		}
	}
	j = json_stringn(clean, n);
	free(clean);
	return j;
}

bool api_idempotency_key(struct http_request *req, char *out, size_t size)
{
	out[0] = '\0';
	const char *key = http_request_header(req, "Idempotency-Key");
	if (key == NULL)
		return true;
	size_t len = strlen(key);
	bool printable = len > 0 && len < size;
	for (size_t i = 0; printable && i < len; i++)
		printable = key[i] > 0x20 && key[i] < 0x7f;
	if (!printable) {
		http_reply_errorf(req, 400, "input",
		                  "Idempotency-Key: 1 to %zu printable ASCII characters", size - 1);
		return false;
	}
	mt_strlcpy(out, key, size);
	return true;
}

/* ---- plain pages (unsubscribe, the OAuth callback) ---- */

void api_html_escape(const char *in, char *out, size_t size)
{
	size_t o = 0;
	for (; *in != '\0' && o + 7 < size; in++) {
		const char *rep = *in == '<'   ? "&lt;"
		                  : *in == '>' ? "&gt;"
		                  : *in == '&' ? "&amp;"
		                  : *in == '"' ? "&quot;"
		                               : NULL;
		if (rep != NULL) {
			size_t n = strlen(rep);
			memcpy(out + o, rep, n);
			o += n;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

void api_reply_page(struct http_request *req, int status, const char *title, const char *body_html)
{
	char html[4096];
	int n = snprintf(html, sizeof(html),
	                 "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	                 "<meta name=\"viewport\" content=\"width=device-width\">"
	                 "<title>%s</title></head><body style=\"font-family:sans-serif;"
	                 "max-width:32em;margin:3em auto\"><h1>%s</h1>%s</body></html>\n",
	                 title, title, body_html);
	http_reply_text(req, status, "text/html; charset=utf-8", html,
	                n > 0 && (size_t)n < sizeof(html) ? (size_t)n : strlen(html));
}
