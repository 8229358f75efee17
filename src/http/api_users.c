/* Users and tokens: POST/PATCH/DELETE /v1/users (admins), POST/DELETE /v1/tokens (anyone, for
 * themselves). A token is shown once, at creation; the store keeps only its hash. */
#include "http/api.h"

#include "crypto/seal.h"
#include "engine/provision.h"
#include "lib/str.h"
#include "mime/address.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct user_job {
	struct api_job base;
	struct store_user user;
	struct store_token token;
	char token_text[MT_TOKEN_TEXT_MAX];
	bool set_name, set_role, set_aliases, set_active;
	bool active;
	bool reactivated; /* a new token was made: it is in token_text */
	char name[MT_NAME_MAX + 1];
	enum store_role role;
	char aliases[MT_ALIASES_MAX][MT_ADDRESS_MAX + 1];
	size_t alias_count;
	char target_id[MT_ID_MAX];
};

static const char *role_name(enum store_role role)
{
	return role == STORE_ROLE_ADMIN ? "admin" : "user";
}

static json_t *user_json(const struct store_user *user)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:o,s:b,s:o}", "id", user->id, "email", user->email,
	                 "name", user->name, "role", role_name(user->role), "aliases",
	                 api_string_array(user->aliases, user->alias_count), "active", user->active,
	                 "created_at", api_time(user->created_at));
}

static int parse_role(const char *text, enum store_role *role_r)
{
	if (strcmp(text, "admin") == 0)
		*role_r = STORE_ROLE_ADMIN;
	else if (strcmp(text, "user") == 0)
		*role_r = STORE_ROLE_USER;
	else
		return -1;
	return 0;
}

/* Normalises the aliases array into the job; false after replying 400. */
static bool decode_aliases(struct http_request *req, json_t *aliases, const char *email,
                           struct user_job *job)
{
	for (size_t i = 0; aliases != NULL && i < json_array_size(aliases); i++) {
		char address[MT_ADDRESS_MAX + 1];
		const char *error;
		if (mime_address_normalize(json_string_value(json_array_get(aliases, i)), address,
		                           &error) < 0) {
			http_reply_errorf(req, 400, "input", "aliases[%zu]: %s", i, error);
			return false;
		}
		bool seen = email != NULL && strcmp(address, email) == 0;
		for (size_t j = 0; j < job->alias_count; j++)
			seen = seen || strcmp(job->aliases[j], address) == 0;
		if (!seen)
			memcpy(job->aliases[job->alias_count++], address, sizeof(address));
	}
	return true;
}

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
}

/* ---- POST /v1/users ---- */

static int create_token_for(struct store_tx *tx, struct user_job *job)
{
	return provision_token(tx, &job->user, job->token_text, &job->token);
}

static int users_create_run(struct store_tx *tx, void *arg)
{
	struct user_job *job = arg;
	int rc = store_user_create(tx, &job->user);
	return rc != 0 ? rc : create_token_for(tx, job);
}

static void users_create_done(void *arg, int result)
{
	struct user_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "a user with that address")) {
		json_t *body = user_json(&job->user);
		json_object_set_new(body, "token", json_string(job->token_text));
		http_reply_json(job->base.req, 201, body);
	}
	memset(job->token_text, 0, sizeof(job->token_text));
	free(job);
}

void api_users_create(struct http_request *req, void *app)
{
	struct user_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	const char *email = NULL, *name = NULL, *role = NULL;
	json_t *aliases = NULL;
	const struct json_field fields[] = {
	    {.name = "email",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .single_line = true,
	     .out = &email},
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &name},
	    {.name = "role", .type = JSON_FIELD_STRING, .max_len = 16, .out = &role},
	    {.name = "aliases",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_ALIASES_MAX,
	     .single_line = true,
	     .out = &aliases},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		free(job);
		return;
	}
	const char *error;
	struct store_user *user = &job->user;
	mt_strlcpy(user->org_id, job->base.org_id, sizeof(user->org_id));
	user->active = true;
	user->role = STORE_ROLE_USER;
	if (mime_address_normalize(email, user->email, &error) < 0) {
		http_reply_errorf(req, 400, "input", "email: %s", error);
		goto fail;
	}
	if (name[0] == '\0') {
		http_reply_error(req, 400, "input", "name: must not be empty", NULL, NULL);
		goto fail;
	}
	mt_strlcpy(user->name, name, sizeof(user->name));
	if (role != NULL && parse_role(role, &user->role) < 0) {
		http_reply_error(req, 400, "input", "role: must be admin or user", NULL, NULL);
		goto fail;
	}
	if (!decode_aliases(req, aliases, user->email, job))
		goto fail;
	memcpy(user->aliases, job->aliases, sizeof(job->aliases));
	user->alias_count = job->alias_count;
	json_decref(root);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, users_create_run, users_create_done);
	return;
fail:
	json_decref(root);
	free(job);
}

/* ---- PATCH /v1/users/{id} ---- */

static int users_update_run(struct store_tx *tx, void *arg)
{
	struct user_job *job = arg;
	job->reactivated = false;
	int rc = store_user_get(tx, job->base.org_id, job->target_id, &job->user);
	if (rc == 0 && job->set_active && !job->active && job->user.active)
		rc = store_user_deactivate(tx, job->base.org_id, job->target_id);
	if (rc == 0 && job->set_active && job->active && !job->user.active) {
		/* Its old tokens stay revoked: whoever held them when it was switched off must not
		 * get back in. The admin passes the new one on. */
		bool was_inactive;
		rc = store_user_reactivate(tx, job->base.org_id, job->target_id, &was_inactive);
		if (rc == 0 && was_inactive) {
			rc = create_token_for(tx, job);
			job->reactivated = rc == 0;
		}
	}
	if (rc == 0 && job->set_active)
		job->user.active = job->active;
	if (rc != 0)
		return rc;
	if (job->set_name)
		memcpy(job->user.name, job->name, sizeof(job->name));
	if (job->set_role)
		job->user.role = job->role;
	if (job->set_aliases) {
		size_t kept = 0;
		for (size_t i = 0; i < job->alias_count; i++)
			if (strcmp(job->aliases[i], job->user.email) != 0)
				memcpy(job->user.aliases[kept++], job->aliases[i],
				       sizeof(job->aliases[i]));
		job->user.alias_count = kept;
	}
	return store_user_update(tx, &job->user);
}

static void user_reply_done(void *arg, int result)
{
	struct user_job *job = arg;
	api_auth_changed(job->base.api); /* committed (or not): read tokens again */
	if (!api_reply_store_error(job->base.req, result, "user")) {
		json_t *body = user_json(&job->user);
		if (job->reactivated)
			json_object_set_new(body, "token", json_string(job->token_text));
		http_reply_json(job->base.req, 200, body);
	}
	memset(job->token_text, 0, sizeof(job->token_text));
	free(job);
}

void api_users_update(struct http_request *req, void *app)
{
	struct user_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	const char *name = NULL, *role = NULL;
	json_t *aliases = NULL;
	const struct json_field fields[] = {
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &name,
	     .present = &job->set_name},
	    {.name = "role",
	     .type = JSON_FIELD_STRING,
	     .max_len = 16,
	     .out = &role,
	     .present = &job->set_role},
	    {.name = "aliases",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_ALIASES_MAX,
	     .single_line = true,
	     .out = &aliases,
	     .present = &job->set_aliases},
	    {.name = "active",
	     .type = JSON_FIELD_BOOL,
	     .out = &job->active,
	     .present = &job->set_active},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		free(job);
		return;
	}
	if (job->set_active && !job->active && strcmp(job->target_id, job->base.user_id) == 0) {
		http_reply_error(req, 409, "input", "you cannot deactivate yourself", NULL, NULL);
		goto fail;
	}
	if (job->set_name && (name == NULL || name[0] == '\0')) {
		http_reply_error(req, 400, "input", "name: must not be empty", NULL, NULL);
		goto fail;
	}
	if (name != NULL)
		mt_strlcpy(job->name, name, sizeof(job->name));
	if (job->set_role && (role == NULL || parse_role(role, &job->role) < 0)) {
		http_reply_error(req, 400, "input", "role: must be admin or user", NULL, NULL);
		goto fail;
	}
	if (job->set_role && strcmp(job->target_id, job->base.user_id) == 0 &&
	    job->role != STORE_ROLE_ADMIN) {
		http_reply_error(req, 409, "input",
		                 "you cannot take away your own admin role; ask another admin",
		                 NULL, NULL);
		goto fail;
	}
	if (!decode_aliases(req, aliases, NULL, job))
		goto fail;
	json_decref(root);
	api_auth_changed(job->base.api);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, users_update_run, user_reply_done);
	return;
fail:
	json_decref(root);
	free(job);
}

/* ---- DELETE /v1/users/{id} ---- */

static int users_delete_run(struct store_tx *tx, void *arg)
{
	struct user_job *job = arg;
	return store_user_deactivate(tx, job->base.org_id, job->target_id);
}

static void empty_reply_done(void *arg, int result)
{
	struct user_job *job = arg;
	api_auth_changed(job->base.api); /* committed (or not): read tokens again */
	if (!api_reply_store_error(job->base.req, result, "user"))
		http_reply_empty(job->base.req, 204);
	free(job);
}

void api_users_delete(struct http_request *req, void *app)
{
	struct user_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	if (strcmp(job->target_id, job->base.user_id) == 0) {
		http_reply_error(req, 409, "input", "you cannot deactivate yourself", NULL, NULL);
		free(job);
		return;
	}
	api_auth_changed(job->base.api);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, users_delete_run, empty_reply_done);
}

/* ---- tokens ---- */

static int tokens_create_run(struct store_tx *tx, void *arg)
{
	struct user_job *job = arg;
	int rc = store_user_get(tx, job->base.org_id, job->base.user_id, &job->user);
	return rc != 0 ? rc : create_token_for(tx, job);
}

static void tokens_create_done(void *arg, int result)
{
	struct user_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "user"))
		http_reply_json(
		    job->base.req, 201,
		    json_pack("{s:s,s:s}", "id", job->token.id, "token", job->token_text));
	memset(job->token_text, 0, sizeof(job->token_text));
	free(job);
}

void api_tokens_create(struct http_request *req, void *app)
{
	struct user_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	size_t len;
	const char *body = http_request_body(req, &len);
	if (body != NULL && len > 0) {
		/* An optional empty object; anything in it is unknown. */
		json_t *root = api_decode(req, NULL, 0);
		if (root == NULL) {
			free(job);
			return;
		}
		json_decref(root);
	}
	api_job_submit(&job->base, STORE_WRITE_DURABLE, tokens_create_run, tokens_create_done);
}

static int tokens_delete_run(struct store_tx *tx, void *arg)
{
	struct user_job *job = arg;
	return store_token_revoke(tx, job->base.user_id, job->target_id);
}

void api_tokens_delete(struct http_request *req, void *app)
{
	struct user_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	api_auth_changed(job->base.api);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, tokens_delete_run, empty_reply_done);
}

/* ---- mailtrail init ---- */
