/* Raw messages into activities (DESIGN.md §1 Activity), for every source that hands us a whole
 * message (the add-in today; the BCC dropbox and IMAP sync next): the MIME parse runs on a worker
 * thread, its summary goes to the matcher in one replayable store job, and the message's
 * activities come back. parse -> summary -> matcher -> one job, whatever the source.
 *
 * Ownership: the intake borrows its store and work pool. intake_log() borrows `data` until
 * `done` has been called; the result handed to `done` is valid during the call only. */
#ifndef MT_ENGINE_INTAKE_H
#define MT_ENGINE_INTAKE_H

#include "engine/matcher.h"
#include "lib/limits.h"
#include "store/store_activity.h"
#include "store/store_message.h"

#include <stddef.h>

struct store;
struct work_pool;

enum intake_verdict {
	INTAKE_DONE,     /* matched: see result and activities */
	INTAKE_NOT_MAIL, /* the bytes are not a message (reason) */
	INTAKE_GONE,     /* the org no longer exists */
	INTAKE_BUSY,     /* a queue is full: try again */
	INTAKE_FAILED,   /* the store failed; nothing was stored */
};

struct intake_result {
	enum intake_verdict verdict;
	char reason[MT_ERROR_TEXT_MAX];
	struct matcher_result match;
	struct store_activity_list activities; /* the message's activities when LOGGED */
};

typedef void intake_done_fn(void *ctx, const struct intake_result *result);

struct intake_request {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX]; /* "" when no user's mailbox is involved */
	enum store_source source;
	const char *data;
	size_t len;
};

/* Calls `done` exactly once on the loop thread: later, or before returning when a queue is
 * full (INTAKE_BUSY). */
void intake_log(struct store *store, struct work_pool *work, const struct intake_request *request,
                intake_done_fn *done, void *ctx);

#endif
