/* Org-level API keys (issue 16): one secret a service holds to act for any user of its org,
 * created by an admin, shown once, stored as its hash, revocable, and limited by its scopes.
 *
 * A request with a key acts either for the org itself (the admin routes: org settings, users,
 * keys) or, named by the caller, for one active user of the key's org; it then is that user's
 * request (that user's role, mail and settings) but never more than the key's scopes allow.
 * Which scope each operation needs is decided here (api_key_permits) from a table of every
 * authenticated operation of the API; an operation not in the table is refused to keys.
 *
 * Scopes: `read` the reading operations; `send` those and sending (messages, campaigns);
 * `admin` everything.
 *
 * Ownership: `struct api_keys` borrows its store, which must outlive it. Results handed to
 * `done` are valid during the call only; a new key's text in one is wiped afterwards. */
#ifndef MT_ENGINE_API_KEYS_H
#define MT_ENGINE_API_KEYS_H

#include "engine/crud.h"
#include "lib/limits.h"
#include "store/store_api_key.h"

#include <stdbool.h>
#include <stddef.h>

struct store;
struct api_keys;

enum api_key_scope {
	API_KEY_READ = 1u << 0,
	API_KEY_SEND = 1u << 1,
	API_KEY_ADMIN = 1u << 2,
};
#define API_KEY_SCOPES_ALL (API_KEY_READ | API_KEY_SEND | API_KEY_ADMIN)

/* The scope named ("read", "send", "admin"), or 0. */
unsigned api_key_scope_parse(const char *name);
/* The names of the scopes set, in the order above, into `out` (room for 3); their count. */
size_t api_key_scope_names(unsigned scopes, const char *out[3]);

enum api_key_verdict {
	API_KEY_ALLOWED,
	API_KEY_NEEDS_USER, /* the operation acts for a user and the request named none */
	API_KEY_DENIED,     /* not with these scopes (or not for keys at all) */
};
/* Whether a key with `scopes` may run `operation` (a route's name, "messages.send"), the
 * request naming a user or not. `reason_r` (may be NULL) gets a sentence for the caller on
 * anything but API_KEY_ALLOWED. Pure. */
enum api_key_verdict api_key_permits(unsigned scopes, const char *operation, bool names_user,
                                     const char **reason_r);
/* Whether `operation` is in the table (for the test that every route is). */
bool api_key_operation_known(const char *operation);

typedef void api_keys_change_fn(void *ctx);

struct api_keys_params {
	struct store *store;
	/* A key was revoked: announced when submitted and when finished (as engine/users.h). */
	api_keys_change_fn *on_access_change; /* may be NULL */
	void *on_access_change_ctx;
};

struct api_keys *api_keys_new(const struct api_keys_params *params);
void api_keys_free(struct api_keys **keys);

struct api_keys_result {
	struct crud_outcome outcome;
	const struct store_api_key *key;  /* create: the key as stored */
	const char *key_text;             /* create: its text, shown once */
	const struct store_api_key *keys; /* list */
	size_t count;
};
typedef void api_keys_done_fn(void *ctx, const struct api_keys_result *result);

/* Each calls `done` exactly once on the loop thread (before returning when a rule refuses or the
 * store's queue is full). `creator_id` is the user or key asking. */

/* A new key: `name` 1..MT_NAME_MAX single-line, scopes one or more of the names above;
 * CRUD_REFUSED past MT_API_KEYS_MAX unrevoked keys. */
void api_keys_create(struct api_keys *keys, const char *org_id, const char *creator_id,
                     const char *name, const char *const *scope_names, size_t scope_count,
                     api_keys_done_fn *done, void *ctx);
void api_keys_list(struct api_keys *keys, const char *org_id, api_keys_done_fn *done, void *ctx);
/* CRUD_NOT_FOUND for another org's or an unknown key. */
void api_keys_revoke(struct api_keys *keys, const char *org_id, const char *key_id,
                     api_keys_done_fn *done, void *ctx);

/* Whom a key's request speaks for. */
struct api_key_identity {
	char org_id[MT_ID_MAX];
	char key_id[MT_ID_MAX];
	char user_id[MT_ID_MAX]; /* "" when acting for the org */
	unsigned scopes;
	bool admin; /* the user's role; true for the org itself */
};
typedef void api_keys_auth_fn(void *ctx, const struct crud_outcome *outcome,
                              const struct api_key_identity *identity);
/* The key whose SHA-256 is `key_hash`, acting for `user_id` (NULL: for the org). Outcomes:
 * CRUD_OK with the identity; CRUD_NOT_FOUND for an unknown or revoked key; CRUD_FORBIDDEN
 * (reason; the identity names the key and the user asked for, to be logged, never admitted)
 * when the user is not an active user of the key's org — unknown and another org's
 * alike, so that nothing of another org shows; CRUD_BUSY, CRUD_FAILED. */
void api_keys_authenticate(struct api_keys *keys, const unsigned char key_hash[32],
                           const char *user_id, api_keys_auth_fn *done, void *ctx);

#endif
