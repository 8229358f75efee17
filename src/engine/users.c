#include "engine/users.h"

#include "crypto/seal.h"
#include "engine/provision.h"
#include "lib/str.h"
#include "mime/address.h"
#include "store/store.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct users {
	struct users_params p;
};

struct users *users_new(const struct users_params *params)
{
	struct users *users = calloc(1, sizeof(*users));
	if (users != NULL)
		users->p = *params;
	return users;
}

void users_free(struct users **users_p)
{
	free(*users_p);
	*users_p = NULL;
}

static void announce(struct users *users)
{
	if (users->p.on_access_change != NULL)
		users->p.on_access_change(users->p.on_access_change_ctx);
}

const char *users_role_name(enum store_role role)
{
	return role == STORE_ROLE_ADMIN ? "admin" : "user";
}

int users_role_parse(const char *text, enum store_role *role_r)
{
	if (strcmp(text, "admin") == 0)
		*role_r = STORE_ROLE_ADMIN;
	else if (strcmp(text, "user") == 0)
		*role_r = STORE_ROLE_USER;
	else
		return -1;
	return 0;
}

/* ---- the jobs ---- */

enum users_op {
	OP_CREATE,
	OP_UPDATE,
	OP_DEACTIVATE,
	OP_TOKEN_CREATE,
	OP_TOKEN_REVOKE,
	OP_TOKEN_REVOKE_FOR
};

struct users_job {
	struct users *users;
	enum users_op op;
	users_done_fn *done;
	void *ctx;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];  /* the user changed, or the owner of the token */
	char token_id[MT_ID_MAX]; /* OP_TOKEN_REVOKE */
	struct store_user user;   /* the user as stored (create, update) */
	struct store_token token;
	char token_text[MT_TOKEN_TEXT_MAX];
	bool token_made;
	/* OP_UPDATE: the change, normalised */
	bool set_name, set_role, set_aliases, set_active;
	bool active;
	char name[MT_NAME_MAX + 1];
	enum store_role role;
	char aliases[MT_ALIASES_MAX][MT_ADDRESS_MAX + 1];
	size_t alias_count;
};

static bool announced(const struct users_job *job)
{
	return job->op == OP_UPDATE || job->op == OP_DEACTIVATE || job->op == OP_TOKEN_REVOKE ||
	       job->op == OP_TOKEN_REVOKE_FOR;
}

static void finish(struct users_job *job, const struct crud_outcome *outcome)
{
	struct users_result r = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK && (job->op == OP_CREATE || job->op == OP_UPDATE))
		r.user = &job->user;
	if (outcome->verdict == CRUD_OK && job->token_made) {
		r.token = &job->token;
		r.token_text = job->token_text;
	}
	job->done(job->ctx, &r);
	sodium_memzero(job->token_text, sizeof(job->token_text));
	free(job);
}

static int make_token(struct store_tx *tx, struct users_job *job)
{
	int rc = provision_token(tx, &job->user, job->token_text, &job->token);
	job->token_made = rc == 0;
	return rc;
}

static int create_run(struct store_tx *tx, struct users_job *job)
{
	int rc = store_user_create(tx, &job->user);
	return rc != 0 ? rc : make_token(tx, job);
}

static int update_run(struct store_tx *tx, struct users_job *job)
{
	int rc = store_user_get(tx, job->org_id, job->user_id, &job->user);
	if (rc == 0 && job->set_active && !job->active && job->user.active)
		rc = store_user_deactivate(tx, job->org_id, job->user_id);
	if (rc == 0 && job->set_active && job->active && !job->user.active) {
		/* Its old tokens stay revoked: whoever held them when it was switched off must not
		 * get back in. The admin passes the new one on. */
		bool was_inactive;
		rc = store_user_reactivate(tx, job->org_id, job->user_id, &was_inactive);
		if (rc == 0 && was_inactive)
			rc = make_token(tx, job);
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

static int job_run(struct store_tx *tx, void *arg)
{
	struct users_job *job = arg;
	job->token_made = false;
	switch (job->op) {
	case OP_CREATE:
		return create_run(tx, job);
	case OP_UPDATE:
		return update_run(tx, job);
	case OP_DEACTIVATE:
		return store_user_deactivate(tx, job->org_id, job->user_id);
	case OP_TOKEN_CREATE: {
		int rc = store_user_get(tx, job->org_id, job->user_id, &job->user);
		return rc != 0 ? rc : make_token(tx, job);
	}
	case OP_TOKEN_REVOKE:
		return store_token_revoke(tx, job->user_id, job->token_id);
	case OP_TOKEN_REVOKE_FOR:
		return store_token_revoke_in_org(tx, job->org_id, job->user_id, job->token_id);
	}
	return -1;
}

static void job_done(void *arg, int result)
{
	struct users_job *job = arg;
	if (announced(job))
		announce(job->users);
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	finish(job, &outcome);
}

static void submit(struct users_job *job)
{
	if (announced(job))
		announce(job->users);
	if (store_submit(job->users->p.store, STORE_WRITE_DURABLE, job_run, job_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		finish(job, &outcome);
	}
}

static struct users_job *job_new(struct users *users, enum users_op op, const char *org_id,
                                 const char *user_id, users_done_fn *done, void *ctx)
{
	struct users_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct users_result r = {0};
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return NULL;
	}
	job->users = users;
	job->op = op;
	job->done = done;
	job->ctx = ctx;
	mt_strlcpy(job->org_id, org_id != NULL ? org_id : "", sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id != NULL ? user_id : "", sizeof(job->user_id));
	return job;
}

/* ---- the rules ---- */

/* Normalises `inputs` into the job's aliases, each once and never `email` (NULL: not known
 * yet); false with the outcome for the first that is not an address. */
static bool take_aliases(struct users_job *job, const char *const *inputs, size_t count,
                         const char *email, struct crud_outcome *outcome)
{
	for (size_t i = 0; i < count && i < MT_ALIASES_MAX; i++) {
		char address[MT_ADDRESS_MAX + 1];
		const char *error;
		if (mime_address_normalize(inputs[i], address, &error) < 0) {
			crud_set_at(outcome, CRUD_INVALID, "invalid_address", "aliases",
			            "aliases[%zu]: %s", i, error);
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

void users_create(struct users *users, const char *org_id, const struct users_new_request *request,
                  users_done_fn *done, void *ctx)
{
	struct users_job *job = job_new(users, OP_CREATE, org_id, NULL, done, ctx);
	if (job == NULL)
		return;
	struct crud_outcome outcome = {.verdict = CRUD_OK};
	struct store_user *user = &job->user;
	mt_strlcpy(user->org_id, org_id, sizeof(user->org_id));
	user->active = true;
	user->role = STORE_ROLE_USER;
	const char *error;
	if (mime_address_normalize(request->email != NULL ? request->email : "", user->email,
	                           &error) < 0) {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_address", "email", "email: %s", error);
		return finish(job, &outcome);
	}
	if (request->name == NULL || request->name[0] == '\0') {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "name",
		            "name: must not be empty");
		return finish(job, &outcome);
	}
	mt_strlcpy(user->name, request->name, sizeof(user->name));
	if (request->role != NULL && users_role_parse(request->role, &user->role) < 0) {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "role",
		            "role: must be admin or user");
		return finish(job, &outcome);
	}
	if (!take_aliases(job, request->aliases, request->alias_count, user->email, &outcome))
		return finish(job, &outcome);
	memcpy(user->aliases, job->aliases, sizeof(job->aliases));
	user->alias_count = job->alias_count;
	submit(job);
}

void users_update(struct users *users, const char *org_id, const char *actor_id,
                  const char *user_id, const struct users_change_request *request,
                  users_done_fn *done, void *ctx)
{
	struct users_job *job = job_new(users, OP_UPDATE, org_id, user_id, done, ctx);
	if (job == NULL)
		return;
	struct crud_outcome outcome = {.verdict = CRUD_OK};
	bool self = strcmp(job->user_id, actor_id) == 0;
	job->set_name = request->set_name;
	job->set_role = request->set_role;
	job->set_aliases = request->set_aliases;
	job->set_active = request->set_active;
	job->active = request->active;
	if (job->set_active && !job->active && self) {
		crud_set_at(&outcome, CRUD_REFUSED, "self_lockout", NULL,
		            "you cannot deactivate yourself");
		return finish(job, &outcome);
	}
	if (job->set_name && (request->name == NULL || request->name[0] == '\0')) {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "name",
		            "name: must not be empty");
		return finish(job, &outcome);
	}
	if (request->name != NULL)
		mt_strlcpy(job->name, request->name, sizeof(job->name));
	if (job->set_role &&
	    (request->role == NULL || users_role_parse(request->role, &job->role) < 0)) {
		crud_set_at(&outcome, CRUD_INVALID, "invalid_value", "role",
		            "role: must be admin or user");
		return finish(job, &outcome);
	}
	if (job->set_role && self && job->role != STORE_ROLE_ADMIN) {
		crud_set_at(&outcome, CRUD_REFUSED, "self_lockout", "role",
		            "you cannot take away your own admin role; ask another admin");
		return finish(job, &outcome);
	}
	/* The user's own address is dropped in the job, once the stored one is known. */
	if (job->set_aliases &&
	    !take_aliases(job, request->aliases, request->alias_count, NULL, &outcome))
		return finish(job, &outcome);
	submit(job);
}

void users_deactivate(struct users *users, const char *org_id, const char *actor_id,
                      const char *user_id, users_done_fn *done, void *ctx)
{
	struct users_job *job = job_new(users, OP_DEACTIVATE, org_id, user_id, done, ctx);
	if (job == NULL)
		return;
	if (strcmp(job->user_id, actor_id) == 0) {
		struct crud_outcome outcome = {0};
		crud_set_at(&outcome, CRUD_REFUSED, "self_lockout", NULL,
		            "you cannot deactivate yourself");
		return finish(job, &outcome);
	}
	submit(job);
}

void users_token_create(struct users *users, const char *org_id, const char *user_id,
                        users_done_fn *done, void *ctx)
{
	struct users_job *job = job_new(users, OP_TOKEN_CREATE, org_id, user_id, done, ctx);
	if (job != NULL)
		submit(job);
}

void users_token_revoke(struct users *users, const char *user_id, const char *token_id,
                        users_done_fn *done, void *ctx)
{
	struct users_job *job = job_new(users, OP_TOKEN_REVOKE, NULL, user_id, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->token_id, token_id, sizeof(job->token_id));
	submit(job);
}

void users_token_revoke_for(struct users *users, const char *org_id, const char *user_id,
                            const char *token_id, users_done_fn *done, void *ctx)
{
	struct users_job *job = job_new(users, OP_TOKEN_REVOKE_FOR, org_id, user_id, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->token_id, token_id, sizeof(job->token_id));
	submit(job);
}

/* ---- an admin's view ---- */

enum view_op { VIEW_LIST, VIEW_GET, VIEW_TOKENS };

struct view_job {
	enum view_op op;
	users_view_fn *done;
	void *ctx;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	struct store_user_list list;
	struct store_user user;
	struct store_token *tokens; /* VIEW_TOKENS: MT_TOKENS_LISTED_MAX */
	size_t token_count;
};

static void view_finish(struct view_job *job, const struct crud_outcome *outcome)
{
	struct users_view v = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK) {
		switch (job->op) {
		case VIEW_LIST:
			v.users = job->list.items;
			v.count = job->list.count;
			v.next_cursor = job->list.next_cursor;
			break;
		case VIEW_GET:
			v.users = &job->user;
			v.count = 1;
			break;
		case VIEW_TOKENS:
			v.tokens = job->tokens;
			v.token_count = job->token_count;
			break;
		}
	}
	job->done(job->ctx, &v);
	store_user_list_free(&job->list);
	free(job->tokens);
	free(job);
}

static int view_run(struct store_tx *tx, void *arg)
{
	struct view_job *job = arg;
	switch (job->op) {
	case VIEW_LIST:
		return store_user_list(tx, job->org_id, job->cursor, job->limit, &job->list);
	case VIEW_GET:
		return store_user_get(tx, job->org_id, job->user_id, &job->user);
	case VIEW_TOKENS: {
		int rc = store_user_get(tx, job->org_id, job->user_id, &job->user);
		return rc != 0 ? rc
		               : store_token_list(tx, job->org_id, job->user_id, job->tokens,
		                                  MT_TOKENS_LISTED_MAX, &job->token_count);
	}
	}
	return -1;
}

static void view_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	view_finish(arg, &outcome);
}

static void view_submit(enum view_op op, struct users *users, const char *org_id,
                        const char *user_id, const char *cursor, size_t limit, users_view_fn *done,
                        void *ctx)
{
	struct view_job *job = calloc(1, sizeof(*job));
	if (job != NULL && op == VIEW_TOKENS &&
	    (job->tokens = calloc(MT_TOKENS_LISTED_MAX, sizeof(*job->tokens))) == NULL) {
		free(job);
		job = NULL;
	}
	if (job == NULL) {
		struct users_view v = {0};
		crud_set(&v.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &v);
		return;
	}
	job->op = op;
	job->done = done;
	job->ctx = ctx;
	job->limit = limit;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id != NULL ? user_id : "", sizeof(job->user_id));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	if (store_submit(users->p.store, STORE_READ, view_run, view_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		view_finish(job, &outcome);
	}
}

void users_list(struct users *users, const char *org_id, const char *cursor, size_t limit,
                users_view_fn *done, void *ctx)
{
	view_submit(VIEW_LIST, users, org_id, NULL, cursor, limit, done, ctx);
}

void users_get(struct users *users, const char *org_id, const char *user_id, users_view_fn *done,
               void *ctx)
{
	view_submit(VIEW_GET, users, org_id, user_id, NULL, 0, done, ctx);
}

void users_tokens(struct users *users, const char *org_id, const char *user_id, users_view_fn *done,
                  void *ctx)
{
	view_submit(VIEW_TOKENS, users, org_id, user_id, NULL, 0, done, ctx);
}

/* ---- authentication ---- */

struct auth_job {
	users_auth_fn *done;
	void *ctx;
	unsigned char hash[32];
	struct store_token token;
	struct store_user user;
};

static int auth_run(struct store_tx *tx, void *arg)
{
	struct auth_job *job = arg;
	return store_token_authenticate(tx, job->hash, &job->token, &job->user);
}

static void auth_finish(struct auth_job *job, const struct crud_outcome *outcome)
{
	struct users_identity identity;
	memset(&identity, 0, sizeof(identity));
	if (outcome->verdict == CRUD_OK) {
		mt_strlcpy(identity.org_id, job->user.org_id, sizeof(identity.org_id));
		mt_strlcpy(identity.user_id, job->user.id, sizeof(identity.user_id));
		mt_strlcpy(identity.token_id, job->token.id, sizeof(identity.token_id));
		identity.admin = job->user.role == STORE_ROLE_ADMIN;
	}
	job->done(job->ctx, outcome, outcome->verdict == CRUD_OK ? &identity : NULL);
	sodium_memzero(job->hash, sizeof(job->hash));
	free(job);
}

static void auth_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	auth_finish(arg, &outcome);
}

void users_authenticate(struct users *users, const unsigned char token_hash[32],
                        users_auth_fn *done, void *ctx)
{
	struct auth_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct crud_outcome outcome = {0};
		crud_set(&outcome, CRUD_FAILED, "out of memory");
		done(ctx, &outcome, NULL);
		return;
	}
	job->done = done;
	job->ctx = ctx;
	memcpy(job->hash, token_hash, sizeof(job->hash));
	if (store_submit(users->p.store, STORE_READ, auth_run, auth_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		auth_finish(job, &outcome);
	}
}
