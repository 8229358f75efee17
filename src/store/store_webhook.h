/* Webhooks (docs/webhooks.md): an org's subscriptions, the durable event queue behind them and
 * their delivery log. The queue is the org's feed: activities are read from it as they are
 * (store_activity.h), and the other events (message, account, notification) are rows of
 * webhook_events numbered by the same feed counter, written by the transaction that made the
 * change — so one cursor per webhook (a feed position) says what was delivered, in commit
 * order. Operations run inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; lists are malloc'd and freed
 * with their *_free() function. */
#ifndef MT_STORE_STORE_WEBHOOK_H
#define MT_STORE_STORE_WEBHOOK_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_activity.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_WEBHOOK_EVENTS_TEXT_MAX (MT_WEBHOOK_EVENTS_MAX * (MT_WEBHOOK_EVENT_NAME_MAX + 1))

struct store_webhook {
	char id[MT_ID_MAX]; /* whk_… */
	char org_id[MT_ID_MAX];
	char url[MT_WEBHOOK_URL_MAX + 1];
	char events[STORE_WEBHOOK_EVENTS_TEXT_MAX + 1]; /* patterns, comma-separated */
	unsigned char sealed_secret[MT_SEALED_MAX];
	size_t sealed_secret_len;
	bool active;
	int64_t cursor;          /* feed position delivered up to */
	int attempts;            /* failed attempts of the event at the head */
	int64_t next_attempt_at; /* ms */
	int last_status;
	char last_error[MT_ERROR_TEXT_MAX];
	char lease_owner[MT_ID_MAX];
	int64_t lease_expires; /* ms */
	int64_t created_at;
};

/* Fills id (unless set: the engine names it first, to seal its secret to it), created_at and the
 * cursor (the org's feed position now: only later events are
 * delivered). STORE_CONFLICT when the org has MT_WEBHOOKS_PER_ORG already. */
int store_webhook_create(struct store_tx *tx, struct store_webhook *webhook);
int store_webhook_get(struct store_tx *tx, const char *org_id, const char *id,
                      struct store_webhook *webhook_r);
/* Every webhook of the org (at most MT_WEBHOOKS_PER_ORG), oldest first; `rows` holds that many. */
int store_webhook_list(struct store_tx *tx, const char *org_id, struct store_webhook *rows,
                       size_t *count_r);
/* Deletes the webhook and its delivery log. */
int store_webhook_delete(struct store_tx *tx, const char *org_id, const char *id);
/* Due now (next_attempt_at passed) with no pending back-off: the cursor moves back to just
 * before feed position `from_seq` when it is > 0 (events from there are delivered again). */
int store_webhook_replay(struct store_tx *tx, const char *org_id, const char *id, int64_t from_seq);

/* Records an event of the org for its webhooks, inside the transaction that made the change;
 * nothing when the org has no active webhook. `payload` is a JSON object (the event's data). */
int store_webhook_event_add(struct store_tx *tx, const char *org_id, const char *type,
                            const char *object_id, const char *payload);
/* The same for outbox message `id` reaching a final state: type "message.<state>", the payload
 * read from the message (id, user_id, state, subject, route, error). */
int store_webhook_message_event(struct store_tx *tx, const char *message_id);

/* account.connected / account.disconnected for a user's `protocol` ("smtp" | "imap") account. */
int store_webhook_account_event(struct store_tx *tx, const char *org_id, const char *user_id,
                                const char *protocol, bool connected, const char *error);

/* ---- delivery (engine/webhooks.c) ---- */

/* Whether store_webhook_claim would find anything (a read: an idle poll writes nothing). */
int store_webhook_due(struct store_tx *tx, const char *owner, int64_t now_ms, bool *due_r);
/* Claims up to `max` webhooks that have something to deliver and are due (a free lease, an
 * expired one, or `owner`'s own), leasing them to `owner` until now_ms + lease_ms. */
int store_webhook_claim(struct store_tx *tx, const char *owner, int64_t now_ms, int64_t lease_ms,
                        struct store_webhook *rows, size_t max, size_t *count_r);

struct store_webhook_event {
	int64_t seq;
	char type[MT_WEBHOOK_EVENT_NAME_MAX + 1];
	char object_id[MT_ID_MAX];
	char *payload; /* malloc'd JSON */
	int64_t created_at;
};
/* What follows a webhook's cursor: activities (the feed) and events, each in seq order, up to
 * `limit` of each; *head_r is the org's feed counter in the same snapshot: when both lists hold
 * fewer than `limit`, nothing at or before *head_r is left to deliver. */
struct store_webhook_pending {
	struct store_activity_list activities;
	struct store_webhook_event *events;
	size_t event_count;
	int64_t head;
	bool complete; /* both lists shorter than the limit */
};
int store_webhook_pending(struct store_tx *tx, const char *org_id, int64_t cursor, size_t limit,
                          struct store_webhook_pending *pending_r);
void store_webhook_pending_free(struct store_webhook_pending *pending);

/* One attempt's outcome, fenced by the lease (STORE_CONFLICT when `owner` lost it). */
struct store_webhook_result {
	const char *webhook_id;
	const char *owner;
	int64_t cursor;          /* new cursor */
	int attempts;            /* failed attempts of the (new) head */
	int64_t next_attempt_at; /* ms */
	int64_t lease_expires;   /* ms; 0 releases the lease */
	int last_status;
	const char *last_error;
	/* The delivery log row; event_id NULL for none (a cursor moved over skipped events). */
	const char *event_id;
	const char *type;
	const char *outcome; /* "delivered" | "retrying" | "failed" */
	int attempt;         /* this event's attempt number (1 for the first) */
	int64_t duration_ms;
};
int store_webhook_record(struct store_tx *tx, const struct store_webhook_result *result);

struct store_webhook_delivery {
	char id[MT_ID_MAX]; /* whd_…, ordered */
	char event_id[MT_ID_MAX + 24];
	char type[MT_WEBHOOK_EVENT_NAME_MAX + 1];
	int attempt;
	int status; /* HTTP status; 0 when there was no answer */
	char outcome[16];
	char error[MT_ERROR_TEXT_MAX];
	int64_t duration_ms;
	int64_t created_at;
};
struct store_webhook_delivery_list {
	struct store_webhook_delivery *items;
	size_t count;
	char next_cursor[MT_CURSOR_MAX]; /* "" on the last page */
};
void store_webhook_delivery_list_free(struct store_webhook_delivery_list *list);
/* Newest first, older than `cursor` ("" for the newest). STORE_NOT_FOUND for another org's
 * webhook, STORE_INVALID for a cursor no page gave. */
int store_webhook_deliveries(struct store_tx *tx, const char *org_id, const char *webhook_id,
                             const char *cursor, size_t limit,
                             struct store_webhook_delivery_list *list_r);

/* Drops events and delivery log rows made before `before` (unix seconds). */
int store_webhook_purge(struct store_tx *tx, int64_t before, size_t *purged_r);

#endif
