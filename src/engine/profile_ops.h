/* Profiles as the API changes and reads them (DESIGN.md §1 Profile): create, get, change,
 * erase, list and search. A new profile, or one given new addresses, gets the mail already on
 * record for them (backfill, engine/matcher) in the same transaction, so a profile never shows
 * up without its history; erasing one erases its activities too (right to erasure). What a
 * profile may hold is engine/profiles.h; the CSV import is engine/import.h.
 *
 * Ownership: the functions borrow the store; an input is copied before the call returns (the
 * strings it points to need not outlive it); the profile or list handed to `done` is valid during
 * the call only. */
#ifndef MT_ENGINE_PROFILE_OPS_H
#define MT_ENGINE_PROFILE_OPS_H

#include "engine/crud.h"
#include "lib/limits.h"
#include "store/store_profile.h"

#include <stdbool.h>
#include <stddef.h>

struct store;

/* A profile as the user gave it, not yet validated. A change alters only what is `set` (a set
 * string may be NULL, and is refused); a new profile needs all three. */
struct profile_input {
	bool set_kind, set_name, set_emails, set_external_id;
	const char *kind;
	const char *name;
	const char *external_id; /* "" clears it; optional on create */
	const char *emails[MT_PROFILE_EMAILS_MAX];
	size_t email_count;
};

struct profile_result {
	struct crud_outcome outcome;           /* CONFLICT: another profile has the external_id */
	const struct store_profile *profile;   /* CRUD_OK of create, get, update, upsert */
	const struct store_profile_list *list; /* CRUD_OK of list */
	bool created;                          /* upsert: a new profile */
	/* create, update, upsert: other profiles with one of this one's addresses (allowed, and
	 * said, so that a CRM notices a duplicate person): the first MT_SHARED_WITH_MAX ids. */
	const char (*shared_with)[MT_ID_MAX];
	size_t shared_count, shared_total;
};

typedef void profile_done_fn(void *ctx, const struct profile_result *result);

/* Each calls `done` exactly once on the loop thread: later, or before returning when a rule
 * refuses the input (CRUD_INVALID) or the store's queue is full (CRUD_BUSY). CRUD_NOT_FOUND
 * for another org's profile. */
void profile_create(struct store *store, const char *org_id, const struct profile_input *input,
                    profile_done_fn *done, void *ctx);
void profile_get(struct store *store, const char *org_id, const char *profile_id,
                 profile_done_fn *done, void *ctx);
/* The profile afterwards. */
void profile_update(struct store *store, const char *org_id, const char *profile_id,
                    const struct profile_input *input, profile_done_fn *done, void *ctx);
/* PUT /v1/profiles/by-external-id/{id}: the org's profile with this external_id replaced by
 * `input` (kind, name and emails all needed; an external_id in it must be this one), or created
 * with it (`created`). */
void profile_upsert_external(struct store *store, const char *org_id, const char *external_id,
                             const struct profile_input *input, profile_done_fn *done, void *ctx);
/* The org's profile with this external_id. */
void profile_get_external(struct store *store, const char *org_id, const char *external_id,
                          profile_done_fn *done, void *ctx);
void profile_erase(struct store *store, const char *org_id, const char *profile_id,
                   profile_done_fn *done, void *ctx);
/* At most `limit` after `cursor` ("" from the start); `query` "" for all, else those whose name
 * or an address starts with it. */
void profile_list(struct store *store, const char *org_id, const char *query, const char *cursor,
                  size_t limit, profile_done_fn *done, void *ctx);

#endif
