/* Org-level API keys: POST/GET /v1/api-keys, DELETE /v1/api-keys/{id} (admins). The rules and
 * what a key may do are the engine's (engine/api_keys.h). A key's text is in the answer to its
 * creation only; the store keeps its hash. */
#include "http/api.h"

#include "engine/api_keys.h"

#include <stdlib.h>
#include <string.h>

static json_t *key_json(const struct store_api_key *key)
{
	const char *names[3];
	size_t n = api_key_scope_names(key->scopes, names);
	json_t *scopes = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(scopes, json_string(names[i]));
	return json_pack("{s:s,s:o,s:o,s:s,s:o}", "id", key->id, "name", api_text(key->name),
	                 "scopes", scopes, "created_by", key->created_by, "created_at",
	                 api_time(key->created_at));
}

static void created(void *ctx, const struct api_keys_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "org"))
		return;
	json_t *body = key_json(r->key);
	json_object_set_new(body, "key", json_string(r->key_text));
	http_reply_json(req, 201, body);
}

void api_keys_create_handler(struct http_request *req, void *app)
{
	struct api *api = app;
	const char *name = NULL;
	json_t *scopes = NULL;
	const struct json_field fields[] = {
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &name},
	    {.name = "scopes",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = true,
	     .max_len = 16,
	     .max_items = 3,
	     .single_line = true,
	     .out = &scopes},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	const char *names[3];
	size_t count = 0;
	for (; count < json_array_size(scopes) && count < 3; count++)
		names[count] = json_string_value(json_array_get(scopes, count));
	const struct http_auth *auth = http_request_auth(req);
	api_keys_create(api->api_keys, auth->org_id,
	                auth->user_id[0] != '\0' ? auth->user_id : auth->key_id, name, names, count,
	                created, req);
	json_decref(root);
}

static void listed(void *ctx, const struct api_keys_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "org"))
		return;
	json_t *items = json_array();
	for (size_t i = 0; i < r->count; i++)
		json_array_append_new(items, key_json(&r->keys[i]));
	http_reply_json(req, 200, json_pack("{s:o}", "api_keys", items));
}

void api_keys_list_handler(struct http_request *req, void *app)
{
	struct api *api = app;
	api_keys_list(api->api_keys, http_request_auth(req)->org_id, listed, req);
}

static void revoked(void *ctx, const struct api_keys_result *r)
{
	struct http_request *req = ctx;
	if (!api_reply_outcome(req, &r->outcome, "API key"))
		http_reply_empty(req, 204);
}

void api_keys_revoke_handler(struct http_request *req, void *app)
{
	struct api *api = app;
	api_keys_revoke(api->api_keys, http_request_auth(req)->org_id,
	                http_request_param(req, "id"), revoked, req);
}
