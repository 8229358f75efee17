#include "engine/api_keys.h"

#include "crypto/seal.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_user.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- scopes and the operations they open ---- */

static const struct {
	const char *name;
	unsigned scope;
} scope_names[] = {{"read", API_KEY_READ}, {"send", API_KEY_SEND}, {"admin", API_KEY_ADMIN}};

unsigned api_key_scope_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
		if (strcmp(name, scope_names[i].name) == 0)
			return scope_names[i].scope;
	return 0;
}

size_t api_key_scope_names(unsigned scopes, const char *out[3])
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
		if (scopes & scope_names[i].scope)
			out[n++] = scope_names[i].name;
	return n;
}

/* Every authenticated operation (route name, http/api.c) and the scope it needs; for_user: it
 * acts for a user, who must be named. The org-level ones (the admin routes) act for the org, or
 * for the user named, with that user's role. Writes other than sending need `admin`: a key
 * that reads and sends cannot change profiles, settings, accounts or anyone's access. */
#define R API_KEY_READ
#define S API_KEY_SEND
#define A API_KEY_ADMIN
static const struct {
	const char *operation;
	unsigned scope;
	bool for_user;
} rules[] = {
    {"org.get", R, false},
    {"org.put", A, false},
    {"org.features", A, false},
    {"users.list", R, false},
    {"users.get", R, false},
    {"users.create", A, false},
    {"users.update", A, false},
    {"users.delete", A, false},
    /* Token and key metadata is read by admins only: it maps who can get in. */
    {"users.tokens", A, false},
    {"users.tokens_create", A, false},
    {"users.tokens_revoke", A, false},
    {"api_keys.create", A, false},
    {"api_keys.list", A, false},
    {"api_keys.revoke", A, false},
    {"tokens.create", A, true},
    {"tokens.delete", A, true},
    {"profiles.create", A, true},
    {"profiles.list", R, true},
    {"profiles.import", A, true},
    {"profiles.get_external", R, true},
    {"profiles.upsert_external", A, true},
    {"profiles.get", R, true},
    {"profiles.activities", R, true},
    {"profiles.update", A, true},
    {"profiles.delete", A, true},
    {"activities.feed", R, true},
    {"addin.log", A, true},
    {"never_log.get", R, true},
    {"never_log.put", A, true},
    {"messages.send", S, true},
    {"messages.list", R, true},
    {"messages.get", R, true},
    {"messages.cancel", S, true},
    {"smtp.presets", R, true},
    {"smtp.get", R, true},
    {"smtp.put", A, true},
    {"smtp.patch", A, true},
    {"smtp.delete", A, true},
    {"imap.get", R, true},
    {"imap.put", A, true},
    {"imap.delete", A, true},
    {"imap.sync", A, true},
    /* A GET, but it starts a consent flow for the user's mailbox. */
    {"oauth.start", A, true},
    {"notifications.list", R, true},
    {"campaigns.create", S, true},
    {"campaigns.get", R, true},
    {"campaigns.pause", S, true},
    {"campaigns.resume", S, true},
    {"campaigns.cancel", S, true},
    /* Webhooks are the org's: no user is acted for. */
    {"webhooks.create", A, false},
    {"webhooks.list", A, false},
    {"webhooks.get", A, false},
    {"webhooks.delete", A, false},
    {"webhooks.deliveries", A, false},
    {"webhooks.replay", A, false},
};
#undef R
#undef S
#undef A

static int rule_index(const char *operation)
{
	for (size_t i = 0; operation != NULL && i < sizeof(rules) / sizeof(rules[0]); i++)
		if (strcmp(rules[i].operation, operation) == 0)
			return (int)i;
	return -1;
}

bool api_key_operation_known(const char *operation)
{
	return rule_index(operation) >= 0;
}

/* What a key's scopes stand for: send includes read, admin everything. */
static unsigned effective(unsigned scopes)
{
	if (scopes & API_KEY_ADMIN)
		return API_KEY_SCOPES_ALL;
	if (scopes & API_KEY_SEND)
		return scopes | API_KEY_READ;
	return scopes & API_KEY_SCOPES_ALL;
}

enum api_key_verdict api_key_permits(unsigned scopes, const char *operation, bool names_user,
                                     const char **reason_r)
{
	const char *unused;
	if (reason_r == NULL)
		reason_r = &unused;
	*reason_r = NULL;
	int i = rule_index(operation);
	if (i < 0) {
		*reason_r = "API keys may not call this endpoint";
		return API_KEY_DENIED;
	}
	if (!(effective(scopes) & rules[i].scope)) {
		*reason_r = rules[i].scope == API_KEY_ADMIN  ? "this API key lacks the admin scope"
		            : rules[i].scope == API_KEY_SEND ? "this API key lacks the send scope"
		                                             : "this API key lacks the read scope";
		return API_KEY_DENIED;
	}
	if (rules[i].for_user && !names_user) {
		*reason_r =
		    "an API key acts for a user here: name them with X-Mailtrail-User: usr_...";
		return API_KEY_NEEDS_USER;
	}
	return API_KEY_ALLOWED;
}

/* ---- the jobs ---- */

struct api_keys {
	struct api_keys_params p;
};

struct api_keys *api_keys_new(const struct api_keys_params *params)
{
	struct api_keys *keys = calloc(1, sizeof(*keys));
	if (keys != NULL)
		keys->p = *params;
	return keys;
}

void api_keys_free(struct api_keys **keys_p)
{
	free(*keys_p);
	*keys_p = NULL;
}

static void announce(struct api_keys *keys)
{
	if (keys->p.on_access_change != NULL)
		keys->p.on_access_change(keys->p.on_access_change_ctx);
}

enum key_op { OP_CREATE, OP_LIST, OP_REVOKE };

struct key_job {
	struct api_keys *keys;
	enum key_op op;
	api_keys_done_fn *done;
	void *ctx;
	char org_id[MT_ID_MAX];
	char key_id[MT_ID_MAX]; /* OP_REVOKE */
	struct store_api_key key;
	char key_text[MT_TOKEN_TEXT_MAX];
	struct store_api_key_list list;
};

static void finish(struct key_job *job, const struct crud_outcome *outcome)
{
	struct api_keys_result r = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK && job->op == OP_CREATE) {
		r.key = &job->key;
		r.key_text = job->key_text;
	}
	if (outcome->verdict == CRUD_OK && job->op == OP_LIST) {
		r.keys = job->list.items;
		r.count = job->list.count;
	}
	job->done(job->ctx, &r);
	sodium_memzero(job->key_text, sizeof(job->key_text));
	store_api_key_list_free(&job->list);
	free(job);
}

/* Past the cap is refused, not an error: it is told apart from the store's codes. */
#define KEYS_FULL 100

static int job_run(struct store_tx *tx, void *arg)
{
	struct key_job *job = arg;
	switch (job->op) {
	case OP_CREATE: {
		int64_t count;
		int rc = store_api_key_count(tx, job->org_id, &count);
		if (rc != 0)
			return rc;
		if (count >= MT_API_KEYS_MAX)
			return KEYS_FULL;
		return store_api_key_create(tx, &job->key);
	}
	case OP_LIST:
		store_api_key_list_free(&job->list);
		return store_api_key_list(tx, job->org_id, &job->list);
	case OP_REVOKE:
		return store_api_key_revoke(tx, job->org_id, job->key_id);
	}
	return -1;
}

static void job_done(void *arg, int result)
{
	struct key_job *job = arg;
	if (job->op == OP_REVOKE)
		announce(job->keys);
	struct crud_outcome outcome = {0};
	if (result == KEYS_FULL)
		crud_set(&outcome, CRUD_REFUSED,
		         "the org has %d API keys: revoke one before creating another",
		         MT_API_KEYS_MAX);
	else
		crud_from_store(&outcome, result);
	finish(job, &outcome);
}

static struct key_job *job_new(struct api_keys *keys, enum key_op op, const char *org_id,
                               api_keys_done_fn *done, void *ctx)
{
	struct key_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct api_keys_result r = {0};
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return NULL;
	}
	job->keys = keys;
	job->op = op;
	job->done = done;
	job->ctx = ctx;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	return job;
}

static void submit(struct key_job *job, enum store_job_kind kind)
{
	if (job->op == OP_REVOKE)
		announce(job->keys);
	if (store_submit(job->keys->p.store, kind, job_run, job_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		finish(job, &outcome);
	}
}

void api_keys_create(struct api_keys *keys, const char *org_id, const char *creator_id,
                     const char *name, const char *const *scope_names_in, size_t scope_count,
                     api_keys_done_fn *done, void *ctx)
{
	struct key_job *job = job_new(keys, OP_CREATE, org_id, done, ctx);
	if (job == NULL)
		return;
	struct crud_outcome outcome = {0};
	if (name == NULL || name[0] == '\0' || strlen(name) > MT_NAME_MAX) {
		crud_set(&outcome, CRUD_INVALID, "name: 1 to %d characters", MT_NAME_MAX);
		return finish(job, &outcome);
	}
	unsigned scopes = 0;
	for (size_t i = 0; i < scope_count; i++) {
		unsigned s = scope_names_in[i] != NULL ? api_key_scope_parse(scope_names_in[i]) : 0;
		if (s == 0) {
			crud_set(&outcome, CRUD_INVALID, "scopes[%zu]: must be read, send or admin",
			         i);
			return finish(job, &outcome);
		}
		scopes |= s;
	}
	if (scopes == 0) {
		crud_set(&outcome, CRUD_INVALID, "scopes: name at least one of read, send, admin");
		return finish(job, &outcome);
	}
	mt_strlcpy(job->key.org_id, org_id, sizeof(job->key.org_id));
	mt_strlcpy(job->key.name, name, sizeof(job->key.name));
	mt_strlcpy(job->key.created_by, creator_id, sizeof(job->key.created_by));
	job->key.scopes = scopes;
	mt_api_key_new(job->key_text);
	mt_token_hash(job->key_text, job->key.hash);
	submit(job, STORE_WRITE_DURABLE);
}

void api_keys_list(struct api_keys *keys, const char *org_id, api_keys_done_fn *done, void *ctx)
{
	struct key_job *job = job_new(keys, OP_LIST, org_id, done, ctx);
	if (job != NULL)
		submit(job, STORE_READ);
}

void api_keys_revoke(struct api_keys *keys, const char *org_id, const char *key_id,
                     api_keys_done_fn *done, void *ctx)
{
	struct key_job *job = job_new(keys, OP_REVOKE, org_id, done, ctx);
	if (job == NULL)
		return;
	mt_strlcpy(job->key_id, key_id, sizeof(job->key_id));
	submit(job, STORE_WRITE_DURABLE);
}

/* ---- authentication ---- */

/* The named user is not an active user of the key's org: refused, not an error. */
#define USER_UNKNOWN     101
#define USER_DEACTIVATED 102

struct auth_job {
	api_keys_auth_fn *done;
	void *ctx;
	unsigned char hash[32];
	char user_id[MT_ID_MAX];
	struct store_api_key key;
	struct store_user user;
};

static int auth_run(struct store_tx *tx, void *arg)
{
	struct auth_job *job = arg;
	int rc = store_api_key_authenticate(tx, job->hash, &job->key);
	if (rc != 0 || job->user_id[0] == '\0')
		return rc;
	rc = store_user_get(tx, job->key.org_id, job->user_id, &job->user);
	if (rc == STORE_NOT_FOUND)
		return USER_UNKNOWN;
	if (rc == 0 && !job->user.active)
		return USER_DEACTIVATED;
	return rc;
}

static void auth_finish(struct auth_job *job, const struct crud_outcome *outcome)
{
	struct api_key_identity identity;
	memset(&identity, 0, sizeof(identity));
	/* A refused user still names the key, for the request's log line. */
	bool known = outcome->verdict == CRUD_OK || outcome->verdict == CRUD_FORBIDDEN;
	if (known) {
		mt_strlcpy(identity.org_id, job->key.org_id, sizeof(identity.org_id));
		mt_strlcpy(identity.key_id, job->key.id, sizeof(identity.key_id));
		mt_strlcpy(identity.user_id, job->user_id, sizeof(identity.user_id));
		identity.scopes = job->key.scopes;
		identity.admin =
		    job->user_id[0] != '\0' ? job->user.role == STORE_ROLE_ADMIN : true;
	}
	job->done(job->ctx, outcome, known ? &identity : NULL);
	sodium_memzero(job->hash, sizeof(job->hash));
	free(job);
}

static void auth_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	if (result == USER_UNKNOWN)
		crud_set(&outcome, CRUD_FORBIDDEN, "X-Mailtrail-User: not a user of this org");
	else if (result == USER_DEACTIVATED)
		crud_set(&outcome, CRUD_FORBIDDEN, "X-Mailtrail-User: that user is deactivated");
	else
		crud_from_store(&outcome, result);
	auth_finish(arg, &outcome);
}

void api_keys_authenticate(struct api_keys *keys, const unsigned char key_hash[32],
                           const char *user_id, api_keys_auth_fn *done, void *ctx)
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
	memcpy(job->hash, key_hash, sizeof(job->hash));
	mt_strlcpy(job->user_id, user_id != NULL ? user_id : "", sizeof(job->user_id));
	if (store_submit(keys->p.store, STORE_READ, auth_run, auth_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		auth_finish(job, &outcome);
	}
}
