/* IMAP auto sync settings: decoding the requests and encoding the answers. Every rule — the
 * admin switch, the host policy, the reuse of a stored password, the live check, sealing, the
 * fence, the sync itself — is the engine's (engine/imap_account.h, engine/imap_sync.h). The
 * secret is never returned. */
#include "http/api.h"

#include "engine/imap_account.h"
#include "engine/imap_sync.h"
#include "lib/str.h"
#include "store/store_imap.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *nullable(const char *s)
{
	return s[0] != '\0' ? api_text(s) : json_null();
}

static json_t *folders_json(const struct store_imap_account *a)
{
	json_t *list = json_array();
	for (size_t i = 0; i < a->folder_count; i++) {
		const struct store_imap_folder *f = &a->folders[i];
		json_array_append_new(
		    list, json_pack("{s:o,s:o,s:I,s:I,s:I,s:I}", "name", api_text(f->name), "role",
		                    nullable(f->role), "uidvalidity", (json_int_t)f->uidvalidity,
		                    "last_uid", (json_int_t)f->last_uid, "highestmodseq",
		                    (json_int_t)f->highestmodseq, "messages_synced",
		                    (json_int_t)f->messages_synced));
	}
	return list;
}

static json_t *since_json(int64_t since)
{
	char day[16];
	time_t t = (time_t)since;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	return json_string(day);
}

/* An account on an OAuth grant shows the grant, never a token: {provider, expires_at, state}. */
static json_t *oauth_json(const struct account_oauth_view *o)
{
	if (!o->present)
		return json_null();
	return json_pack("{s:s,s:o,s:s}", "provider", o->provider, "expires_at",
	                 o->expires_at > 0 ? api_time(o->expires_at) : json_null(), "state",
	                 o->state);
}

static json_t *view_json(const struct account_imap_view *v)
{
	const struct store_imap_account *a = &v->account;
	json_t *doc;
	if (!v->exists)
		doc = json_pack("{s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:[]}", "state",
		                "off", "host", "port", "security", "auth", "username", "since",
		                "tls_fingerprint", "verified_at", "last_sync_at", "lag_seconds",
		                "last_error", "folders");
	else
		doc = json_pack(
		    "{s:s,s:s,s:i,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "state",
		    store_account_state_name(a->state), "host", a->host, "port", a->port,
		    "security", store_security_name(a->security), "auth", store_auth_name(a->auth),
		    "username", a->username, "since", since_json(a->since), "tls_fingerprint",
		    nullable(a->tls_fingerprint), "verified_at", api_time(a->verified_at),
		    "last_sync_at", api_time(a->last_sync_at), "lag_seconds",
		    v->lag_seconds >= 0 ? json_integer(v->lag_seconds) : json_null(), "last_error",
		    nullable(a->last_error), "folders", folders_json(a));
	if (doc != NULL) {
		json_object_set_new(doc, "feature_enabled", json_boolean(v->feature_enabled));
		json_object_set_new(doc, "oauth", oauth_json(&v->oauth));
	}
	return doc;
}

static void viewed(void *ctx, const struct account_result *result,
                   const struct account_imap_view *view)
{
	struct http_request *req = ctx;
	if (result->verdict != ACCOUNT_OK)
		api_reply_account(req, result);
	else
		http_reply_json(req, 200, view_json(view));
}

void api_imap_get(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	account_imap_view(api->accounts, auth->org_id, auth->user_id, viewed, req);
}

static void turned_off(void *ctx, const struct account_result *result)
{
	struct http_request *req = ctx;
	if (result->verdict != ACCOUNT_OK)
		api_reply_account(req, result);
	else
		http_reply_empty(req, 204);
}

void api_imap_delete(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	account_imap_off(api->accounts, auth->org_id, auth->user_id, turned_off, req);
}

static void sync_queued(void *ctx, enum imap_sync_verdict verdict, const char *reason)
{
	struct http_request *req = ctx;
	switch (verdict) {
	case IMAP_SYNC_QUEUED:
		http_reply_json(req, 202, json_pack("{s:s}", "state", "queued"));
		return;
	case IMAP_SYNC_NOT_CONNECTED:
		http_reply_error(req, 409, "input", reason, NULL, NULL);
		return;
	case IMAP_SYNC_BUSY:
		http_reply_error_retry(req, 503, "internal", reason, 1);
		return;
	case IMAP_SYNC_FAILED:
		break;
	}
	http_reply_error(req, 500, "internal", reason, NULL, NULL);
}

void api_imap_sync(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	if (api->imap_syncer == NULL) {
		http_reply_error(req, 409, "input", "IMAP sync does not run on this node", NULL,
		                 NULL);
		return;
	}
	imap_sync_now(api->imap_syncer, auth->org_id, auth->user_id, sync_queued, req);
}

static void saved(void *ctx, const struct account_imap_result *result)
{
	struct http_request *req = ctx;
	if (result->r.verdict != ACCOUNT_OK) {
		api_reply_account(req, &result->r);
		return;
	}
	http_reply_json(req, 200,
	                json_pack("{s:s,s:o,s:o}", "state", "connected", "verified_at",
	                          api_time(result->account->verified_at), "folders",
	                          folders_json(result->account)));
}

void api_imap_put(struct http_request *req, void *app)
{
	struct api *api = app;
	struct account_imap_request r;
	memset(&r, 0, sizeof(r));
	json_t *folders = NULL;
	const char *access_token = NULL;
	const struct json_field fields[] = {
	    {.name = "host",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_HOST_FIELD_MAX,
	     .single_line = true,
	     .out = &r.host},
	    {.name = "port",
	     .type = JSON_FIELD_INT,
	     .required = true,
	     .min = 1,
	     .max = 65535,
	     .out = &r.port,
	     .present = &r.have_port},
	    {.name = "security",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = 15,
	     .out = &r.security},
	    {.name = "auth", .type = JSON_FIELD_STRING, .max_len = 15, .out = &r.auth},
	    {.name = "username",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_ADDRESS_MAX,
	     .single_line = true,
	     .out = &r.username},
	    {.name = "password",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .single_line = true,
	     .out = &r.password},
	    {.name = "access_token", /* xoauth2: another name for the token in `password` */
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .single_line = true,
	     .out = &access_token},
	    {.name = "preset", .type = JSON_FIELD_STRING, .max_len = 31, .out = &r.preset},
	    {.name = "refresh_token",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_OAUTH_TOKEN_MAX,
	     .single_line = true,
	     .out = &r.oauth.refresh_token},
	    {.name = "client_secret",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_OAUTH_TOKEN_MAX,
	     .single_line = true,
	     .out = &r.oauth.client_secret},
	    {.name = "token_url",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_OAUTH_URL_MAX,
	     .single_line = true,
	     .out = &r.oauth.token_url},
	    {.name = "client_id",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_OAUTH_CLIENT_ID_MAX,
	     .single_line = true,
	     .out = &r.oauth.client_id},
	    {.name = "expires_at",
	     .type = JSON_FIELD_INT,
	     .min = 0,
	     .max = INT64_MAX / 2,
	     .out = &r.oauth.expires_at},
	    {.name = "since", .type = JSON_FIELD_STRING, .max_len = 10, .out = &r.since},
	    {.name = "folders",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_IMAP_MAILBOX_MAX - 1,
	     .max_items = MT_IMAP_FOLDERS_MAX,
	     .single_line = true,
	     .out = &folders},
	    {.name = "tls_fingerprint",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_TLS_FINGERPRINT_MAX - 1,
	     .single_line = true,
	     .nullable = true,
	     .out = &r.tls_fingerprint},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	for (size_t i = 0;
	     folders != NULL && i < json_array_size(folders) && i < MT_IMAP_FOLDERS_MAX; i++)
		r.folders[r.folder_count++] = json_string_value(json_array_get(folders, i));
	const struct http_auth *auth = http_request_auth(req);
	if (r.password == NULL)
		r.password = access_token;
	account_imap_save(api->accounts, auth->org_id, auth->user_id, &r, saved, req);
	if (access_token != NULL)
		sodium_memzero((char *)access_token, strlen(access_token));
	if (r.password != NULL)
		sodium_memzero((char *)r.password, strlen(r.password));
	const char *oauth_secrets[] = {r.oauth.refresh_token, r.oauth.client_secret};
	for (size_t i = 0; i < 2; i++)
		if (oauth_secrets[i] != NULL)
			sodium_memzero((char *)oauth_secrets[i], strlen(oauth_secrets[i]));
	size_t body_len;
	const char *body = http_request_body(req, &body_len);
	if (body != NULL)
		sodium_memzero((char *)body, body_len);
	json_decref(root);
}
