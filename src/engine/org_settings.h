/* An org's settings (DESIGN.md §1 Org), which only its admins change: its own mail domains and
 * its feature switches. Domains are set by hand, never derived from users' addresses, and a
 * free-mail domain is refused: a recruiter on gmail.com must not make every Gmail candidate
 * "internal". A switch may only be turned on for a feature this build has.
 *
 * Ownership: the functions borrow the store; a change is copied before the call returns (the
 * strings it points to need not outlive it); the org handed to `done` is valid during the call
 * only. */
#ifndef MT_ENGINE_ORG_SETTINGS_H
#define MT_ENGINE_ORG_SETTINGS_H

#include "engine/crud.h"
#include "lib/limits.h"
#include "store/store_org.h"

#include <stdbool.h>
#include <stddef.h>

struct store;

/* What an admin changes: only what is `set`. The domains are as given, not yet normalised; a
 * set list replaces the stored one (empty clears it). */
struct org_settings_change {
	bool set_domains;
	const char *domains[MT_ORG_DOMAINS_MAX];
	size_t domain_count;
	bool set_custom_smtp, set_imap_sync, set_bcc_sync;
	bool custom_smtp, imap_sync, bcc_sync;
};

struct org_settings_result {
	struct crud_outcome outcome;
	const struct store_org *org; /* CRUD_OK: the org as stored */
};

typedef void org_settings_done_fn(void *ctx, const struct org_settings_result *result);

/* Both call `done` exactly once on the loop thread: later, or before returning when a rule
 * refuses the change (CRUD_INVALID) or the store's queue is full (CRUD_BUSY). */
void org_settings_get(struct store *store, const char *org_id, org_settings_done_fn *done,
                      void *ctx);
void org_settings_update(struct store *store, const char *org_id,
                         const struct org_settings_change *change, org_settings_done_fn *done,
                         void *ctx);

#endif
