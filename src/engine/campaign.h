/* Campaigns (DESIGN.md §1 Campaign): a mass mail becomes one outbox message per recipient, that
 * recipient alone in To, each with its own List-Unsubscribe link (RFC 2369) and one-click
 * List-Unsubscribe-Post (RFC 8058). campaign_submit() builds every message on a worker thread,
 * then one durable store job checks the route — over the platform relay a campaign may have at
 * most relay_campaign_max recipients; the user's own SMTP lifts the cap — skips the addresses
 * on the org's suppression list (counted `suppressed`), and stores the campaign with its
 * messages before the answer. The sender delivers them as any other outbox message, paced by
 * the account's limits; pause / resume / cancel act on the messages not yet handed to a server.
 *
 * Ownership: the engine borrows its params (public_url too). campaign_submit() takes the draft
 * whatever it returns; a result handed to `done` is valid during the call. */
#ifndef MT_ENGINE_CAMPAIGN_H
#define MT_ENGINE_CAMPAIGN_H

#include "engine/outbox.h"
#include "lib/limits.h"
#include "mime/message.h"
#include "store/store_campaign.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct work_pool;
struct sender;
struct campaigns;

struct campaigns_params {
	struct store *store;
	struct work_pool *work;
	struct sender *sender; /* woken once a campaign is stored; may be NULL */
	struct outbox_relay relay;
	int64_t relay_campaign_max;
	int64_t max_message_bytes;
	const char *public_url; /* the unsubscribe links' base; NULL: campaigns are refused */
};

struct campaigns *campaigns_new(const struct campaigns_params *params);
void campaigns_free(struct campaigns **campaigns);

/* A campaign as the user asked for it. All pointers malloc'd and owned by the draft. */
struct campaign_draft {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char idempotency_key[128];
	struct mime_mailbox *rcpts; /* 1 to MT_CAMPAIGN_RECIPIENTS_MAX; duplicates go once */
	size_t rcpt_count;
	char *subject, *text, *html; /* text or html may be NULL, not both */
};
void campaign_draft_free(struct campaign_draft **draft);

enum campaign_verdict {
	CAMPAIGN_OK,             /* created (submit), or as it is now */
	CAMPAIGN_EXISTING,       /* submit: the Idempotency-Key was used within 24 h */
	CAMPAIGN_INVALID,        /* the input cannot make messages (reason) */
	CAMPAIGN_TOO_LARGE,      /* its messages together are over MT_CAMPAIGN_BYTES_MAX (reason) */
	CAMPAIGN_RELAY_CAP,      /* over relay_campaign_max on the relay (reason) */
	CAMPAIGN_NO_ROUTE,       /* no custom SMTP in use and no relay (reason) */
	CAMPAIGN_NOT_CONFIGURED, /* no public_url for the unsubscribe links (reason) */
	CAMPAIGN_NOT_FOUND,      /* not this user's campaign */
	CAMPAIGN_CONFLICT,       /* pause or resume of a cancelled campaign (reason) */
	CAMPAIGN_GONE,           /* the user is no longer active */
	CAMPAIGN_BUSY,           /* a queue is full: try again */
	CAMPAIGN_FAILED,         /* the store failed or memory ran out: nothing was changed */
};

struct campaign_result {
	enum campaign_verdict verdict;
	char reason[MT_ERROR_TEXT_MAX];
	struct store_campaign campaign; /* OK, EXISTING: with its counts */
	size_t messages;                /* submit: the messages stored (suppressed ones not) */
};
typedef void campaign_done_fn(void *ctx, const struct campaign_result *result);

/* Fills the draft from a request on the worker, before the build (the caller's decoder). 0, or
 * -1 with `error` for a 400. */
typedef int campaign_decode_fn(void *ctx, struct campaign_draft *draft, char *error,
                               size_t error_size);

/* Calls `done` exactly once on the loop thread: later, or before returning when a queue is
 * full or public_url is not set. */
void campaign_submit(struct campaigns *campaigns, struct campaign_draft *draft,
                     campaign_decode_fn *decode, void *decode_ctx, campaign_done_fn *done,
                     void *ctx);
/* The campaign with its counts (`act` NULL), or after a pause / resume / cancel. */
void campaign_get(struct campaigns *campaigns, const char *org_id, const char *user_id,
                  const char *id, const enum store_campaign_action *act, campaign_done_fn *done,
                  void *ctx);

/* GET /u/{token} shows whom a link unsubscribes (`apply` false); POST applies it. */
struct campaign_unsubscribe_result {
	enum {
		UNSUBSCRIBE_OK,
		UNSUBSCRIBE_NOT_FOUND,
		UNSUBSCRIBE_BUSY,
		UNSUBSCRIBE_FAILED
	} verdict;
	struct store_unsubscribe who;
};
typedef void campaign_unsubscribe_fn(void *ctx, const struct campaign_unsubscribe_result *r);
void campaign_unsubscribe(struct campaigns *campaigns, const char *token, bool apply,
                          campaign_unsubscribe_fn *done, void *ctx);

#endif
