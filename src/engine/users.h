/* Users and their API tokens (DESIGN.md §1 User): who may use the API, and with what role. The
 * rules of the users API live here — addresses normalised, a user's own address never also its
 * alias, the two roles, an admin may neither deactivate nor demote themselves (an org must not
 * lose its last way in by a slip), deactivation revokes every token (store_user_deactivate also
 * turns the user's accounts off), reactivation leaves the old tokens revoked and mints a new one
 * for the admin to pass on — and so does authentication: a token, by its hash, to the user it
 * speaks for.
 *
 * A change that may end or alter someone's access (an update, a deactivation, a revoked token) is
 * announced through on_access_change twice: when it is submitted and when it has finished
 * (committed or not), so that whoever caches authentications reads them again and never keeps
 * one read while the change was under way. Creating a user or a token takes nothing away and is
 * not announced.
 *
 * Ownership: `struct users` borrows its store, which must outlive it. Requests are copied before
 * the call returns (the strings they point to need not outlive it); the result handed to `done`
 * is valid during the call only, and a token's text in it is wiped afterwards: it is shown once. */
#ifndef MT_ENGINE_USERS_H
#define MT_ENGINE_USERS_H

#include "engine/crud.h"
#include "lib/limits.h"
#include "store/store_user.h"

#include <stdbool.h>
#include <stddef.h>

struct store;
struct users;

typedef void users_change_fn(void *ctx);

struct users_params {
	struct store *store;
	users_change_fn *on_access_change; /* may be NULL */
	void *on_access_change_ctx;
};

struct users *users_new(const struct users_params *params);
void users_free(struct users **users);

/* "admin" or "user". */
const char *users_role_name(enum store_role role);
/* 0, or -1 for another word. */
int users_role_parse(const char *text, enum store_role *role_r);

/* A new user as the admin asked for it, not yet normalised; role NULL makes a plain user. */
struct users_new_request {
	const char *email;
	const char *name;
	const char *role;
	const char *aliases[MT_ALIASES_MAX];
	size_t alias_count;
};

/* A change to a user: only what is `set` changes; a set string may be NULL (and is refused). */
struct users_change_request {
	bool set_name, set_role, set_aliases, set_active;
	const char *name;
	const char *role;
	const char *aliases[MT_ALIASES_MAX];
	size_t alias_count;
	bool active;
};

struct users_result {
	struct crud_outcome outcome;
	const struct store_user *user;   /* CRUD_OK of create and update: the user as stored */
	const struct store_token *token; /* CRUD_OK: the token this request made; NULL if none */
	const char *token_text;          /* its text, shown once; NULL with token */
};

typedef void users_done_fn(void *ctx, const struct users_result *result);

/* Every function below calls `done` exactly once on the loop thread: later, or before returning
 * when a rule refuses the request (CRUD_INVALID, CRUD_REFUSED) or the store's queue is full
 * (CRUD_BUSY). `actor_id` is the admin asking. */

/* A user of the org and its first token. CRUD_CONFLICT when its address or an alias is already
 * another user's. */
void users_create(struct users *users, const char *org_id, const struct users_new_request *request,
                  users_done_fn *done, void *ctx);
/* Name, role, aliases, active; switching a user back on gives it a new token (in the result). */
void users_update(struct users *users, const char *org_id, const char *actor_id,
                  const char *user_id, const struct users_change_request *request,
                  users_done_fn *done, void *ctx);
/* Deactivates: DELETE /v1/users/{id} switches a user off, its row stays (DESIGN.md §2). */
void users_deactivate(struct users *users, const char *org_id, const char *actor_id,
                      const char *user_id, users_done_fn *done, void *ctx);
/* A new token for the user itself. */
void users_token_create(struct users *users, const char *org_id, const char *user_id,
                        users_done_fn *done, void *ctx);
/* Revokes one of the user's own tokens; CRUD_NOT_FOUND for another's. */
void users_token_revoke(struct users *users, const char *user_id, const char *token_id,
                        users_done_fn *done, void *ctx);

/* ---- an admin's view of the org's users and their tokens (issue 16) ---- */

struct users_view {
	struct crud_outcome outcome;
	const struct store_user *users; /* list: a page; get: the one user */
	size_t count;
	const char *next_cursor;          /* list: "" on the last page */
	const struct store_token *tokens; /* tokens: the user's unrevoked tokens, no hash */
	size_t token_count;
};
typedef void users_view_fn(void *ctx, const struct users_view *view);

/* A page of the org's users (active or not) in id order; CRUD_BAD_CURSOR for a cursor no page
 * gave. */
void users_list(struct users *users, const char *org_id, const char *cursor, size_t limit,
                users_view_fn *done, void *ctx);
/* One user of the org; CRUD_NOT_FOUND for another org's. */
void users_get(struct users *users, const char *org_id, const char *user_id, users_view_fn *done,
               void *ctx);
/* A user's unrevoked tokens (ids and times, never a secret); CRUD_NOT_FOUND for a user of
 * another org. */
void users_tokens(struct users *users, const char *org_id, const char *user_id, users_view_fn *done,
                  void *ctx);
/* Revokes one token of a user of the org (an admin's doing); CRUD_NOT_FOUND for any other. */
void users_token_revoke_for(struct users *users, const char *org_id, const char *user_id,
                            const char *token_id, users_done_fn *done, void *ctx);

/* Whom a token speaks for. */
struct users_identity {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char token_id[MT_ID_MAX];
	bool admin;
};

typedef void users_auth_fn(void *ctx, const struct crud_outcome *outcome,
                           const struct users_identity *identity);

/* The identity of the token whose SHA-256 is `token_hash` (mt_token_hash); NULL with
 * CRUD_NOT_FOUND when the token is unknown or revoked or its user deactivated, CRUD_BUSY,
 * CRUD_FAILED. `done` exactly once, as above. */
void users_authenticate(struct users *users, const unsigned char token_hash[32],
                        users_auth_fn *done, void *ctx);

#endif
