/* The outbox's front door (DESIGN.md §1 Message): a message a user asked to send becomes a
 * durable outbox row. outbox_submit() loads the user, the org and the custom SMTP account,
 * decides whether any route can carry it (the user's connected custom SMTP while the org's
 * custom_smtp switch is on, else the platform relay), mints its identity, builds the MIME on a
 * worker thread with its summary taken from the input (no build-then-parse round trip), stores
 * it (group-committed, durable before the answer) and wakes the sender.
 *
 * Identity: every Message-ID and X-Mailtrail-Id mailtrail writes comes from
 * outbox_identity_new(), so copies of any of our messages are recognised the same way.
 *
 * Ownership: the outbox borrows everything in its params. outbox_submit() takes the draft (and
 * what it points to) whatever it returns; the result handed to `done` is valid during the call. */
#ifndef MT_ENGINE_OUTBOX_H
#define MT_ENGINE_OUTBOX_H

#include "lib/buf.h"
#include "lib/limits.h"
#include "mime/build.h"
#include "mime/message.h"
#include "store/store_outbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct work_pool;
struct sender;
struct outbox;

struct outbox_params {
	struct store *store;
	struct work_pool *work;
	struct sender *sender; /* woken after an enqueue; may be NULL */
	int64_t max_message_bytes;
	bool relay_configured;
	const char *relay_from; /* the relay's envelope sender; "" when not set */
};

struct outbox *outbox_new(const struct outbox_params *params);
void outbox_free(struct outbox **outbox);

/* A message as the user asked for it, decoded and validated as input (addresses parsed,
 * attachments decoded). All pointers are malloc'd and owned by the draft. */
struct outbox_draft {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char idempotency_key[128];
	struct mime_mailbox *rcpts; /* to, then cc, then bcc; one per address */
	size_t to_count, cc_count, bcc_count;
	struct mime_mailbox reply_to;
	bool have_reply_to;
	char *subject, *text, *html;               /* text or html may be NULL, not both */
	struct mime_build_attachment *attachments; /* names malloc'd one by one; data in `bytes` */
	size_t attachment_count;
	struct mt_buf bytes;
};
void outbox_draft_free(struct outbox_draft **draft);

enum outbox_verdict {
	OUTBOX_QUEUED,    /* stored: id and state */
	OUTBOX_EXISTING,  /* the Idempotency-Key was used within 24 h: the first message's id/state
	                   */
	OUTBOX_INVALID,   /* the message cannot be built (reason) */
	OUTBOX_TOO_LARGE, /* over max_message_bytes once built (reason) */
	OUTBOX_NO_ROUTE,  /* no custom SMTP in use and no relay (reason) */
	OUTBOX_GONE,      /* the user or org no longer exists */
	OUTBOX_BUSY,      /* a queue is full: try again */
	OUTBOX_FAILED,    /* the store failed; nothing was stored */
};

struct outbox_result {
	enum outbox_verdict verdict;
	char id[MT_ID_MAX];
	enum store_outbox_state state;
	char reason[MT_ERROR_TEXT_MAX];
};

typedef void outbox_done_fn(void *ctx, const struct outbox_result *result);

/* Calls `done` exactly once on the loop thread: later, or before returning when a queue is
 * full (OUTBOX_BUSY). */
void outbox_submit(struct outbox *outbox, struct outbox_draft *draft, outbox_done_fn *done,
                   void *ctx);

/* Our identity for a new message whose From is at `domain` ("" for mailtrail.invalid): the
 * X-Mailtrail-Id (48 bits of wall-clock milliseconds then 48 random bits, in hex, so ids sort
 * by time and the indexes keyed by them grow at their ends) and a Message-ID built on it. */
void outbox_identity_new(const char *domain, char mailtrail_id[MT_MESSAGE_ID_MAX + 1],
                         char message_id[MT_MESSAGE_ID_MAX + 1]);

#endif
