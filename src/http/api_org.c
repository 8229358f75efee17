/* GET/PUT /v1/org and PUT /v1/org/features: the org's own mail domains and its feature
 * switches, admin only. The rules (free-mail domains refused, switches only for features this
 * build has) are the engine's (engine/org_settings.h). */
#include "http/api.h"

#include "engine/imap_sync.h"
#include "engine/org_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *features_json(const struct store_org *org)
{
	return json_pack("{s:b,s:b,s:b}", "custom_smtp", org->custom_smtp, "imap_sync",
	                 org->imap_sync, "bcc_sync", org->bcc_sync);
}

static json_t *org_json(const struct store_org *org)
{
	json_t *domains = json_array();
	for (size_t i = 0; i < org->domain_count; i++)
		json_array_append_new(domains, json_string(org->domains[i]));
	return json_pack("{s:s,s:s,s:o,s:o,s:o}", "id", org->id, "name", org->name, "domains",
	                 domains, "features", features_json(org), "created_at",
	                 api_time(org->created_at));
}

/* A change of the org's imap_sync switch starts or stops its accounts' sync now (the request
 * carries the api when the change set it). */
static void imap_sync_switched(struct http_request *req, const struct org_settings_result *r)
{
	struct api *api = http_request_get_data(req);
	if (api != NULL && r->outcome.verdict == CRUD_OK)
		imap_syncer_rescan(api->imap_syncer);
}

static void org_done(void *ctx, const struct org_settings_result *r)
{
	struct http_request *req = ctx;
	imap_sync_switched(req, r);
	if (!api_reply_outcome(req, &r->outcome, "org"))
		http_reply_json(req, 200, org_json(r->org));
}

static void features_done(void *ctx, const struct org_settings_result *r)
{
	struct http_request *req = ctx;
	imap_sync_switched(req, r);
	if (!api_reply_outcome(req, &r->outcome, "org"))
		http_reply_json(req, 200, features_json(r->org));
}

void api_org_get(struct http_request *req, void *app)
{
	struct api *api = app;
	org_settings_get(api->store, http_request_auth(req)->org_id, org_done, req);
}

/* Reads the features object into the change; false after replying 400. */
static bool decode_features(struct http_request *req, json_t *features,
                            struct org_settings_change *change)
{
	const struct json_field fields[] = {
	    {.name = "custom_smtp",
	     .type = JSON_FIELD_BOOL,
	     .out = &change->custom_smtp,
	     .present = &change->set_custom_smtp},
	    {.name = "imap_sync",
	     .type = JSON_FIELD_BOOL,
	     .out = &change->imap_sync,
	     .present = &change->set_imap_sync},
	    {.name = "bcc_sync",
	     .type = JSON_FIELD_BOOL,
	     .out = &change->bcc_sync,
	     .present = &change->set_bcc_sync},
	};
	char error[256];
	if (json_decode_fields(features, fields, sizeof(fields) / sizeof(fields[0]), error,
	                       sizeof(error)) < 0) {
		char message[300];
		snprintf(message, sizeof(message), "features: %s", error);
		http_reply_error(req, 400, "input", message, NULL, NULL);
		return false;
	}
	return true;
}

void api_org_put(struct http_request *req, void *app)
{
	struct api *api = app;
	struct org_settings_change change = {0};
	json_t *domains = NULL, *features = NULL;
	const struct json_field fields[] = {
	    {.name = "domains",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_HOST_FIELD_MAX,
	     .max_items = MT_ORG_DOMAINS_MAX,
	     .single_line = true,
	     .out = &domains,
	     .present = &change.set_domains},
	    {.name = "features", .type = JSON_FIELD_OBJECT, .out = &features},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return;
	if (features == NULL || decode_features(req, features, &change)) {
		for (size_t i = 0;
		     domains != NULL && i < json_array_size(domains) && i < MT_ORG_DOMAINS_MAX; i++)
			change.domains[change.domain_count++] =
			    json_string_value(json_array_get(domains, i));
		if (change.set_imap_sync)
			http_request_set_data(req, api);
		org_settings_update(api->store, http_request_auth(req)->org_id, &change, org_done,
		                    req);
	}
	json_decref(root);
}

void api_org_features_put(struct http_request *req, void *app)
{
	struct api *api = app;
	struct org_settings_change change = {0};
	size_t len;
	const char *body = http_request_body(req, &len);
	char error[256];
	json_t *root = json_decode_body(body != NULL ? body : "", body != NULL ? len : 0, error,
	                                sizeof(error));
	if (root == NULL) {
		http_reply_error(req, 400, "input", error, NULL, NULL);
		return;
	}
	if (decode_features(req, root, &change)) {
		if (change.set_imap_sync)
			http_request_set_data(req, api);
		org_settings_update(api->store, http_request_auth(req)->org_id, &change,
		                    features_done, req);
	}
	json_decref(root);
}
