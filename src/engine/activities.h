/* Reading activities (DESIGN.md §1 Activity, §2): a profile's timeline, newest first, paged by
 * an opaque cursor; and the org's feed in commit order, for a CRM to ingest, whose cursor
 * (`since`) is the position of the last activity seen — a number — and always comes back, the
 * point to resume from, even after an empty page. Writing them is the matcher's
 * (engine/matcher.h), through the outbox, the intake and backfill.
 *
 * Ownership: the functions borrow the store and copy their arguments before returning; the list
 * handed to `done` is valid during the call only. */
#ifndef MT_ENGINE_ACTIVITIES_H
#define MT_ENGINE_ACTIVITIES_H

#include "engine/crud.h"
#include "store/store_activity.h"

#include <stddef.h>

struct store;

struct activities_result {
	struct crud_outcome outcome;
	const struct store_activity_list *list; /* CRUD_OK: the page and its next_cursor */
};

typedef void activities_done_fn(void *ctx, const struct activities_result *result);

/* Both call `done` exactly once on the loop thread: later, or before returning when the cursor
 * is refused (CRUD_INVALID) or the store's queue is full (CRUD_BUSY). */

/* At most `limit` of the profile's activities after `cursor` ("" or NULL from the newest);
 * next_cursor "" on the last page; only thread `thread_id`'s unless it is "" or NULL.
 * CRUD_NOT_FOUND for another org's profile, CRUD_BAD_CURSOR for a cursor no page gave,
 * CRUD_INVALID for a thread_id that is not one. */
void activities_timeline(struct store *store, const char *org_id, const char *profile_id,
                         const char *thread_id, const char *cursor, size_t limit,
                         activities_done_fn *done, void *ctx);
/* At most `limit` of the org's activities after `since` ("" or NULL from the start). */
void activities_feed(struct store *store, const char *org_id, const char *since, size_t limit,
                     activities_done_fn *done, void *ctx);

#endif
