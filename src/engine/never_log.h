/* The never-log lists (DESIGN.md §1 Never-log list) as users and admins read and replace them:
 * the org's list, which only its admins may see or change, and each user's own. An entry with
 * '@' is an address, anything else a domain (covering its subdomains; a leading dot is allowed
 * and dropped), normalised as the matcher compares them, each once. How the lists are applied is
 * the matcher's (engine/matcher.h).
 *
 * Ownership: the functions borrow the store and copy their arguments before returning; the list
 * handed to `done` is valid during the call only. */
#ifndef MT_ENGINE_NEVER_LOG_H
#define MT_ENGINE_NEVER_LOG_H

#include "engine/crud.h"
#include "store/store_never_log.h"

#include <stdbool.h>
#include <stddef.h>

struct store;

/* Who asks, and for which list: `scope` as given, "org" or "user" (NULL: "user"). */
struct never_log_caller {
	const char *org_id;
	const char *user_id;
	bool admin;
	const char *scope;
};

struct never_log_result {
	struct crud_outcome outcome;
	enum store_never_log_scope scope;
	const struct store_never_log *list; /* CRUD_OK: the list as stored */
};

typedef void never_log_done_fn(void *ctx, const struct never_log_result *result);

const char *never_log_scope_name(enum store_never_log_scope scope); /* "org" or "user" */

/* Both call `done` exactly once on the loop thread: later, or before returning when the request
 * is refused — CRUD_INVALID for an unknown scope or entry, CRUD_FORBIDDEN for the org's list
 * asked for by a user who is not an admin — or the store's queue is full (CRUD_BUSY). */
void never_log_get(struct store *store, const struct never_log_caller *caller,
                   never_log_done_fn *done, void *ctx);
/* Replaces the list with `entries` (at most MT_NEVER_LOG_MAX, as given, not yet normalised). */
void never_log_put(struct store *store, const struct never_log_caller *caller,
                   const char *const *entries, size_t count, never_log_done_fn *done, void *ctx);

#endif
