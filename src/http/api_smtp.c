/* Custom SMTP settings (the seed's "Custom SMTP Settings" page): decoding the requests and
 * encoding the answers. Every rule — presets, the admin switch, the disclaimer, the host policy,
 * the reuse of a stored password, the live check, sealing, the fence — is the engine's
 * (engine/account.h). The secret is never returned. */
#include "http/api.h"

#include "engine/account.h"
#include "engine/smtp_presets.h"
#include "lib/str.h"
#include "store/store_smtp.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *limits_json(const struct store_send_limit *limits, size_t count)
{
	json_t *array = json_array();
	for (size_t i = 0; i < count; i++)
		json_array_append_new(array,
		                      json_pack("{s:I,s:s}", "limit", (json_int_t)limits[i].limit,
		                                "window", account_window_name(limits[i].window_s)));
	return array;
}

static json_t *nullable(const char *s)
{
	return s[0] != '\0' ? api_text(s) : json_null();
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

/* The settings without the secret, each window's usage (accepted recipients in the rolling
 * window, and when a slot frees up once it is full), the org's switch and the route now. */
static json_t *view_json(const struct account_smtp_view *v)
{
	json_t *doc;
	const struct store_smtp_account *a = &v->account;
	if (!v->exists) {
		doc = json_pack("{s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:[],s:n,s:n,s:n,s:n,s:[]}",
		                "state", "off", "preset", "host", "port", "security", "auth",
		                "username", "from", "limits", "tls_fingerprint", "verified_at",
		                "confirmation_message_id", "last_error", "usage");
	} else {
		json_t *usage = json_array();
		for (size_t i = 0; i < a->limit_count; i++)
			json_array_append_new(
			    usage, json_pack("{s:s,s:I,s:I,s:o}", "window",
			                     account_window_name(a->limits[i].window_s), "limit",
			                     (json_int_t)a->limits[i].limit, "used",
			                     (json_int_t)v->usage[i].used, "next_slot_at",
			                     v->usage[i].next_slot_at > 0
			                         ? api_time(v->usage[i].next_slot_at)
			                         : json_null()));
		doc = json_pack(
		    "{s:s,s:o,s:s,s:i,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "state",
		    store_account_state_name(a->state), "preset", nullable(a->preset), "host",
		    a->host, "port", a->port, "security", store_security_name(a->security), "auth",
		    store_auth_name(a->auth), "username", a->username, "from", a->from_address,
		    "limits", limits_json(a->limits, a->limit_count), "tls_fingerprint",
		    nullable(a->tls_fingerprint), "verified_at", api_time(a->verified_at),
		    "confirmation_message_id", nullable(a->confirmation_message_id), "last_error",
		    nullable(a->last_error), "usage", usage);
	}
	if (doc != NULL) {
		json_object_set_new(doc, "feature_enabled", json_boolean(v->feature_enabled));
		json_object_set_new(doc, "route", json_string(v->route));
		json_object_set_new(doc, "oauth", oauth_json(&v->oauth));
	}
	return doc;
}

struct limits_input {
	json_t *limits;
	int64_t limit;
	bool have_limit;
	const char *window;
};

#define LIMIT_FIELDS(in)                                                                           \
	{.name = "limits",                                                                         \
	 .type = JSON_FIELD_ARRAY,                                                                 \
	 .max_items = MT_SEND_LIMITS_MAX,                                                          \
	 .out = &(in).limits},                                                                     \
	    {.name = "limit",                                                                      \
	     .type = JSON_FIELD_INT,                                                               \
	     .min = 1,                                                                             \
	     .max = 10000000,                                                                      \
	     .out = &(in).limit,                                                                   \
	     .present = &(in).have_limit},                                                         \
	{                                                                                          \
		.name = "window", .type = JSON_FIELD_STRING, .max_len = 16, .out = &(in).window    \
	}

/* Returns the count of limits decoded into `out`, or -1 after replying 400. */
static int decode_limits(struct http_request *req, const struct limits_input *in,
                         struct store_send_limit *out)
{
	json_t *limits = in->limits;
	bool have_limit = in->have_limit;
	int64_t limit = in->limit;
	const char *window = in->window;
	size_t count = 0;
	if (limits != NULL && have_limit) {
		http_reply_error(req, 400, "input", "give either limits or limit + window", NULL,
		                 NULL);
		return -1;
	}
	if (have_limit != (window != NULL)) {
		http_reply_error(req, 400, "input", "limit and window go together", NULL, NULL);
		return -1;
	}
	json_t *single = NULL;
	if (have_limit) {
		single = json_pack("[{s:I,s:s}]", "limit", (json_int_t)limit, "window", window);
		limits = single;
	}
	for (size_t i = 0; limits != NULL && i < json_array_size(limits); i++) {
		int64_t value = 0;
		const char *name = NULL;
		const struct json_field fields[] = {
		    {.name = "limit",
		     .type = JSON_FIELD_INT,
		     .required = true,
		     .min = 1,
		     .max = 10000000,
		     .out = &value},
		    {.name = "window",
		     .type = JSON_FIELD_STRING,
		     .required = true,
		     .max_len = 16,
		     .out = &name},
		};
		char error[256];
		json_t *item = json_array_get(limits, i);
		if (!json_is_object(item)) {
			http_reply_errorf(req, 400, "input", "limits[%zu]: expected an object", i);
			goto fail;
		}
		if (json_decode_fields(item, fields, 2, error, sizeof(error)) < 0) {
			http_reply_errorf(req, 400, "input", "limits[%zu]: %s", i, error);
			goto fail;
		}
		int seconds = account_window_seconds(name);
		if (seconds == 0) {
			http_reply_errorf(req, 400, "input",
			                  "limits[%zu]: window must be minute, hour or day", i);
			goto fail;
		}
		for (size_t j = 0; j < count; j++) {
			if (out[j].window_s == seconds) {
				http_reply_errorf(req, 400, "input",
				                  "limits[%zu]: a second limit per %s", i, name);
				goto fail;
			}
		}
		out[count].limit = value;
		out[count].window_s = seconds;
		count++;
	}
	json_decref(single);
	return (int)count;
fail:
	json_decref(single);
	return -1;
}

/* ---- GET / PATCH / DELETE ---- */

static void viewed(void *ctx, const struct account_result *result,
                   const struct account_smtp_view *view)
{
	struct http_request *req = ctx;
	if (result->verdict != ACCOUNT_OK)
		api_reply_account(req, result);
	else
		http_reply_json(req, 200, view_json(view));
}

void api_smtp_get(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	account_smtp_view(api->accounts, auth->org_id, auth->user_id, viewed, req);
}

void api_smtp_patch(struct http_request *req, void *app)
{
	struct api *api = app;
	struct limits_input lim = {0};
	const struct json_field fields[] = {
	    LIMIT_FIELDS(lim),
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	if (lim.limits == NULL && !lim.have_limit) {
		http_reply_error(req, 400, "input", "limits (or limit + window) is required", NULL,
		                 NULL);
		json_decref(root);
		return;
	}
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	int count = decode_limits(req, &lim, limits);
	json_decref(root);
	if (count < 0)
		return;
	const struct http_auth *auth = http_request_auth(req);
	account_smtp_set_limits(api->accounts, auth->org_id, auth->user_id, limits, (size_t)count,
	                        viewed, req);
}

static void turned_off(void *ctx, const struct account_result *result)
{
	struct http_request *req = ctx;
	if (result->verdict != ACCOUNT_OK)
		api_reply_account(req, result);
	else
		http_reply_empty(req, 204);
}

void api_smtp_delete(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	account_smtp_off(api->accounts, auth->org_id, auth->user_id, turned_off, req);
}

/* ---- presets ---- */

void api_smtp_presets(struct http_request *req, void *app)
{
	(void)app;
	size_t count;
	const struct smtp_preset *presets = smtp_presets(&count);
	json_t *list = json_array();
	for (size_t i = 0; i < count; i++) {
		const struct smtp_preset *p = &presets[i];
		json_t *limits = json_array();
		for (size_t j = 0; j < p->limit_count; j++)
			json_array_append_new(limits, json_pack("{s:I,s:s}", "limit",
			                                        (json_int_t)p->limits[j].limit,
			                                        "window", p->limits[j].window));
		json_t *item = json_pack(
		    "{s:s,s:s,s:o,s:i,s:s,s:s,s:o,s:s}", "id", p->id, "name", p->name, "host",
		    p->host ? json_string(p->host) : json_null(), "port", p->port, "security",
		    p->security, "auth", p->auth, "limits", limits, "notes", p->notes);
		if (p->oauth_token_url != NULL)
			json_object_set_new(
			    item, "oauth",
			    json_pack("{s:s,s:s,s:s}", "auth_url", p->oauth_auth_url, "token_url",
			              p->oauth_token_url, "scopes", p->oauth_scopes));
		json_array_append_new(list, item);
	}
	http_reply_json(req, 200, json_pack("{s:o}", "presets", list));
}

/* ---- PUT ---- */

static void saved(void *ctx, const struct account_result *result)
{
	struct http_request *req = ctx;
	if (result->verdict != ACCOUNT_OK) {
		api_reply_account(req, result);
		return;
	}
	http_reply_json(req, 200,
	                json_pack("{s:s,s:o,s:s}", "state", "connected", "verified_at",
	                          api_time(result->verified_at), "confirmation_message_id",
	                          result->confirmation_message_id));
}

void api_smtp_put(struct http_request *req, void *app)
{
	struct api *api = app;
	struct account_smtp_request r;
	memset(&r, 0, sizeof(r));
	struct limits_input lim = {0};
	const struct json_field fields[] = {
	    {.name = "preset", .type = JSON_FIELD_STRING, .max_len = 31, .out = &r.preset},
	    {.name = "host",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_HOST_FIELD_MAX,
	     .single_line = true,
	     .out = &r.host},
	    {.name = "port",
	     .type = JSON_FIELD_INT,
	     .min = 1,
	     .max = 65535,
	     .out = &r.port,
	     .present = &r.have_port},
	    {.name = "security", .type = JSON_FIELD_STRING, .max_len = 15, .out = &r.security},
	    {.name = "auth", .type = JSON_FIELD_STRING, .max_len = 15, .out = &r.auth},
	    {.name = "username",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_ADDRESS_MAX,
	     .single_line = true,
	     .out = &r.username},
	    {.name = "password",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .single_line = true,
	     .out = &r.password},
	    {.name = "access_token",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .single_line = true,
	     .out = &r.access_token},
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
	    {.name = "from",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .single_line = true,
	     .out = &r.from},
	    LIMIT_FIELDS(lim),
	    {.name = "accept_disclaimer", .type = JSON_FIELD_BOOL, .out = &r.accept_disclaimer},
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
	int count = decode_limits(req, &lim, r.limits);
	if (count >= 0) {
		r.limit_count = (size_t)count;
		r.limits_given = count > 0 || lim.limits != NULL;
		const struct http_auth *auth = http_request_auth(req);
		account_smtp_save(api->accounts, auth->org_id, auth->user_id, &r, saved, req);
	}
	/* Every copy of the secret in the request goes: the tree's and the body's. */
	if (r.password != NULL)
		sodium_memzero((char *)r.password, strlen(r.password));
	if (r.access_token != NULL)
		sodium_memzero((char *)r.access_token, strlen(r.access_token));
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
