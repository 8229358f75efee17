/* Users and tokens: POST/PATCH/DELETE /v1/users (admins), POST/DELETE /v1/tokens (anyone, for
 * themselves). The rules are the engine's (engine/users.h). A token is shown once, at creation
 * or reactivation; the store keeps only its hash. */
#include "http/api.h"

#include "engine/users.h"
#include "lib/str.h"

#include <stdlib.h>
#include <string.h>

static json_t *user_json(const struct store_user *user)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:o,s:b,s:o}", "id", user->id, "email", user->email,
	                 "name", user->name, "role", users_role_name(user->role), "aliases",
	                 api_string_array(user->aliases, user->alias_count), "active", user->active,
	                 "created_at", api_time(user->created_at));
}

/* The strings of a JSON array (already checked by the decoder) into `out`, at most `max`. */
static size_t strings_of(json_t *array, const char **out, size_t max)
{
	size_t n = 0;
	for (; array != NULL && n < json_array_size(array) && n < max; n++)
		out[n] = json_string_value(json_array_get(array, n));
	return n;
}

/* ---- POST /v1/users ---- */

static void created(void *ctx, const struct users_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "a user with that address"))
		return;
	json_t *body = user_json(r->user);
	json_object_set_new(body, "token", json_string(r->token_text));
	http_reply_json(req, 201, body);
}

void api_users_create(struct http_request *req, void *app)
{
	struct api *api = app;
	struct users_new_request request = {0};
	json_t *aliases = NULL;
	const struct json_field fields[] = {
	    {.name = "email",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .single_line = true,
	     .out = &request.email},
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &request.name},
	    {.name = "role", .type = JSON_FIELD_STRING, .max_len = 16, .out = &request.role},
	    {.name = "aliases",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_ALIASES_MAX,
	     .single_line = true,
	     .out = &aliases},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	request.alias_count = strings_of(aliases, request.aliases, MT_ALIASES_MAX);
	users_create(api->users, http_request_auth(req)->org_id, &request, created, req);
	json_decref(root);
}

/* ---- PATCH /v1/users/{id} ---- */

static void updated(void *ctx, const struct users_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "user"))
		return;
	json_t *body = user_json(r->user);
	if (r->token_text != NULL) /* switched back on */
		json_object_set_new(body, "token", json_string(r->token_text));
	http_reply_json(req, 200, body);
}

void api_users_update(struct http_request *req, void *app)
{
	struct api *api = app;
	struct users_change_request request = {0};
	json_t *aliases = NULL;
	const struct json_field fields[] = {
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &request.name,
	     .present = &request.set_name},
	    {.name = "role",
	     .type = JSON_FIELD_STRING,
	     .max_len = 16,
	     .out = &request.role,
	     .present = &request.set_role},
	    {.name = "aliases",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_ALIASES_MAX,
	     .single_line = true,
	     .out = &aliases,
	     .present = &request.set_aliases},
	    {.name = "active",
	     .type = JSON_FIELD_BOOL,
	     .out = &request.active,
	     .present = &request.set_active},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	request.alias_count = strings_of(aliases, request.aliases, MT_ALIASES_MAX);
	const struct http_auth *auth = http_request_auth(req);
	users_update(api->users, auth->org_id, auth->user_id, http_request_param(req, "id"),
	             &request, updated, req);
	json_decref(root);
}

/* ---- DELETE /v1/users/{id}, DELETE /v1/tokens/{id} ---- */

static void emptied(void *ctx, const struct users_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "user"))
		http_reply_empty(req, 204);
}

void api_users_delete(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	users_deactivate(api->users, auth->org_id, auth->user_id, http_request_param(req, "id"),
	                 emptied, req);
}

void api_tokens_delete(struct http_request *req, void *app)
{
	struct api *api = app;
	users_token_revoke(api->users, http_request_auth(req)->user_id,
	                   http_request_param(req, "id"), emptied, req);
}

/* ---- POST /v1/tokens ---- */

static void token_created(void *ctx, const struct users_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "user"))
		http_reply_json(req, 201,
		                json_pack("{s:s,s:s}", "id", r->token->id, "token", r->token_text));
}

void api_tokens_create(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t len;
	const char *body = http_request_body(req, &len);
	if (body != NULL && len > 0) {
		/* An optional empty object; anything in it is unknown. */
		json_t *root = api_decode(req, NULL, 0);
		if (root == NULL)
			return;
		json_decref(root);
	}
	const struct http_auth *auth = http_request_auth(req);
	users_token_create(api->users, auth->org_id, auth->user_id, token_created, req);
}

/* ---- GET /v1/users, GET /v1/users/{id} ---- */

static void users_listed(void *ctx, const struct users_view *v)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &v->outcome, "user"))
		return;
	json_t *items = json_array();
	for (size_t i = 0; i < v->count; i++)
		json_array_append_new(items, user_json(&v->users[i]));
	http_reply_json(
	    req, 200,
	    json_pack("{s:o,s:o}", "users", items, "next_cursor",
	              v->next_cursor[0] != '\0' ? json_string(v->next_cursor) : json_null()));
}

void api_users_list(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t limit;
	const char *cursor;
	if (!api_list_params(req, &limit, &cursor))
		return;
	users_list(api->users, http_request_auth(req)->org_id, cursor, limit, users_listed, req);
}

static void user_got(void *ctx, const struct users_view *v)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &v->outcome, "user"))
		http_reply_json(req, 200, user_json(&v->users[0]));
}

void api_users_get(struct http_request *req, void *app)
{
	struct api *api = app;
	users_get(api->users, http_request_auth(req)->org_id, http_request_param(req, "id"),
	          user_got, req);
}

/* ---- /v1/users/{id}/tokens: an admin lists, mints and revokes a user's tokens ---- */

static void tokens_listed(void *ctx, const struct users_view *v)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &v->outcome, "user"))
		return;
	json_t *items = json_array();
	for (size_t i = 0; i < v->token_count; i++)
		json_array_append_new(items,
		                      json_pack("{s:s,s:o}", "id", v->tokens[i].id, "created_at",
		                                api_time(v->tokens[i].created_at)));
	http_reply_json(req, 200, json_pack("{s:o}", "tokens", items));
}

void api_users_tokens(struct http_request *req, void *app)
{
	struct api *api = app;
	users_tokens(api->users, http_request_auth(req)->org_id, http_request_param(req, "id"),
	             tokens_listed, req);
}

void api_users_tokens_create(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t len;
	const char *body = http_request_body(req, &len);
	if (body != NULL && len > 0) {
		json_t *root = api_decode(req, NULL, 0);
		if (root == NULL)
			return;
		json_decref(root);
	}
	users_token_create(api->users, http_request_auth(req)->org_id,
	                   http_request_param(req, "id"), token_created, req);
}

static void token_revoked(void *ctx, const struct users_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "token"))
		http_reply_empty(req, 204);
}

void api_users_tokens_revoke(struct http_request *req, void *app)
{
	struct api *api = app;
	users_token_revoke_for(api->users, http_request_auth(req)->org_id,
	                       http_request_param(req, "id"), http_request_param(req, "token_id"),
	                       token_revoked, req);
}
