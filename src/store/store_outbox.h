/* The outbox (DESIGN.md §1 Message). A message is stored durably with its built MIME bytes and
 * one row per recipient before the API answers 202. The sender claims due messages under a lease:
 * lease_owner is the node's id, lease_token a number every later state change must present
 * (fencing: a node whose lease was taken over cannot overwrite the new owner's result). A node
 * that restarts takes back its own leases at once (store_outbox_release_owner). Operations run
 * inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; a store_outbox_message read or
 * claimed here holds malloc'd attachments, body and rcpts, freed with
 * store_outbox_message_free(). A store_outbox_result's pointers are borrowed. */
#ifndef MT_STORE_STORE_OUTBOX_H
#define MT_STORE_STORE_OUTBOX_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_outbox_state {
	STORE_OUTBOX_QUEUED,
	STORE_OUTBOX_HELD,
	STORE_OUTBOX_SENDING,
	STORE_OUTBOX_SENT,
	STORE_OUTBOX_PARTIAL,
	STORE_OUTBOX_FAILED,
	STORE_OUTBOX_CANCELLED,
};
const char *store_outbox_state_name(enum store_outbox_state state);

enum store_rcpt_kind { STORE_RCPT_TO, STORE_RCPT_CC, STORE_RCPT_BCC };
enum store_rcpt_state { STORE_RCPT_PENDING, STORE_RCPT_SENT, STORE_RCPT_FAILED };

struct store_outbox_rcpt {
	char address[MT_ADDRESS_MAX + 1];
	char name[MT_NAME_MAX + 1];
	enum store_rcpt_kind kind;
	enum store_rcpt_state state;
	char reply[512];
};

struct store_outbox_message {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char campaign_id[MT_ID_MAX]; /* "" when not part of a campaign */
	enum store_outbox_state state;
	char route[8]; /* "custom" | "relay": planned at enqueue, then the last attempt's */
	char idempotency_key[128];
	char mail_from[MT_ADDRESS_MAX + 1]; /* envelope sender */
	struct store_mailbox from;          /* the From header's mailbox (for the activity) */
	struct store_mailbox reply_to;      /* the user's own Reply-To; address "" when none */
	/* The body lacks From, Sender, Reply-To, Message-ID and X-Mailtrail-Id: the sender puts
	 * them before it for the route of the attempt (mime_build_head_fields). */
	bool head_apart;
	/* Only the platform relay may carry it: a notice about the user's own account. */
	bool relay_only;
	char subject[MT_SUBJECT_MAX + 1];
	char message_id[MT_MESSAGE_ID_MAX + 1];
	char mailtrail_id[MT_MESSAGE_ID_MAX + 1];
	char snippet[MT_SNIPPET_BYTES + 1];
	struct store_attachment *attachments; /* malloc'd; written at enqueue, not read back */
	size_t attachment_count;
	char *body; /* the MIME bytes, malloc'd; NULL once purged */
	size_t body_len;
	int attempts;
	int64_t first_attempt_at; /* 0 before the first attempt */
	int64_t next_attempt_at;
	int64_t held_seconds; /* time spent held, excluded from retry_expiry */
	char last_error[MT_ERROR_TEXT_MAX];
	char last_class[16];
	char lease_owner[MT_ID_MAX];
	int64_t lease_token;
	int64_t lease_expires;
	int64_t created_at, updated_at, sent_at;
	struct store_outbox_rcpt *rcpts; /* malloc'd */
	size_t rcpt_count;
	size_t sent_before, failed_before; /* claimed: recipients earlier attempts finished */
};
void store_outbox_message_free(struct store_outbox_message *message);

/* Stores a new message (state queued, or held) with its recipients; fills id and created_at.
 * With an idempotency key already used by this user within 24 h: STORE_CONFLICT and *id_r is the
 * first message's id (its result is the answer). */
int store_outbox_enqueue(struct store_tx *tx, struct store_outbox_message *message,
                         char existing_id_r[MT_ID_MAX]);
/* GET /v1/messages: an org's messages, newest first, without recipients or body. Filters are
 * ANDed; NULL or -1 leaves one out. */
struct store_outbox_filter {
	const char *user_id;     /* NULL: every user of the org */
	const char *campaign_id; /* NULL: campaign mail or not */
	int state;               /* an enum store_outbox_state, or -1 */
};
struct store_outbox_list {
	struct store_outbox_message *items; /* malloc'd, without rcpts */
	size_t count;
	char next_cursor[MT_ID_MAX]; /* "" on the last page */
};
/* `cursor` "" or a next_cursor handed out before (else STORE_INVALID). */
int store_outbox_list(struct store_tx *tx, const char *org_id,
                      const struct store_outbox_filter *filter, const char *cursor, size_t limit,
                      struct store_outbox_list *list_r);
void store_outbox_list_free(struct store_outbox_list *list);
/* The message with its recipients (body not loaded). STORE_NOT_FOUND unless it is this user's. */
int store_outbox_get(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                     struct store_outbox_message *message_r);
/* queued/held -> cancelled; STORE_CONFLICT when it is already sending or final. */
int store_outbox_cancel(struct store_tx *tx, const char *org_id, const char *user_id,
                        const char *id);
/* Claims up to `max` messages due at `now` (queued, next_attempt_at <= now; or sending with an
 * expired lease) for `owner`, with a new lease token each, lease until now + lease_s: their ids
 * in ids_r[0..*count_r) (`max` slots, caller-provided). */
int store_outbox_claim_ids(struct store_tx *tx, const char *owner, int64_t now, int64_t lease_s,
                           size_t max, char (*ids_r)[MT_ID_MAX], size_t *count_r);
/* A message claimed in this transaction, with only its pending recipients and the counts of the
 * others, without its body (the sender loads a body when a session is ready for it:
 * store_outbox_body); free it with store_outbox_message_free. */
int store_outbox_get_claimed(struct store_tx *tx, const char *id, struct store_outbox_message *m);
/* A message's attachments (name, type, size), malloc'd into *list_r (NULL when none). */
int store_outbox_attachments(struct store_tx *tx, const char *id, struct store_attachment **list_r,
                             size_t *count_r);
/* The body of a message (malloc'd into *body_r); STORE_NOT_FOUND once purged. */
int store_outbox_body(struct store_tx *tx, const char *id, char **body_r, size_t *len_r);
/* Extends every lease `owner` holds on messages still sending, until `until`. */
int store_outbox_renew(struct store_tx *tx, const char *owner, int64_t until);
/* A restarted node: its own leases go back to queued at once. *count_r how many. */
int store_outbox_release_owner(struct store_tx *tx, const char *owner, size_t *count_r);

/* A claimed message given back without an attempt, fenced by its lease token (STORE_CONFLICT
 * when the lease was lost): the sender recalls what it has not handed to a server yet when its
 * campaign is paused or cancelled. It becomes what its campaign's state says now: held while
 * paused, cancelled once cancelled, else queued and due at once. */
int store_outbox_give_back(struct store_tx *tx, const char *id, int64_t lease_token);
/* The values of enum store_campaign_state (store_campaign.h) the give-back reads. */
#define STORE_CAMPAIGN_PAUSED_VALUE    1
#define STORE_CAMPAIGN_CANCELLED_VALUE 2

/* The outcome of one attempt. Recipients are matched by address among the pending ones. */
struct store_outbox_result {
	const char *id;
	int64_t lease_token;
	enum store_outbox_state state; /* sent, partial, failed, queued for a retry, or held */
	const char *route;             /* the attempt's: "custom" | "relay" */
	const char *mail_from;         /* ... and its envelope sender */
	int64_t next_attempt_at;       /* for queued; for held, when its account may go again */
	const char *hold_key;          /* for held: the governor account it waits for */
	int64_t first_attempt_at;      /* set on the first attempt */
	const char *last_error;
	const char *last_class;
	const struct store_outbox_rcpt *rcpts; /* address, state, reply */
	size_t rcpt_count;
	int64_t sent_at;
};
/* Applies a result, fenced by the lease token: STORE_CONFLICT when the lease was lost (another
 * node owns the message now) or the message is gone; nothing is changed then. */
int store_outbox_finish(struct store_tx *tx, const struct store_outbox_result *result);
/* Whether `lease_token`'s attempt still holds the message (it is sending under that lease): 0,
 * STORE_CONFLICT when the lease was lost, STORE_NOT_FOUND, or -1. Writes nothing: a caller
 * recording several attempts in one job asks first and leaves a lost one untouched. */
int store_outbox_lease_held(struct store_tx *tx, const char *id, int64_t lease_token);

/* The send governor's holds (engine/governor.h). A claimed message that its account cannot
 * send now goes held, fenced by its lease token (STORE_CONFLICT when the lease was lost), waiting
 * for `hold_key` until about `until` (shown as its next_attempt_at). */
int store_outbox_hold(struct store_tx *tx, const char *id, int64_t lease_token,
                      const char *hold_key, int64_t until, int64_t now);
/* A held message and the recipients it still has to send. */
struct store_outbox_held {
	char id[MT_ID_MAX];
	int64_t pending;
};
/* Up to `max` messages of `user_id` held for `hold_key`, the longest waiting first. */
int store_outbox_held_list(struct store_tx *tx, const char *user_id, const char *hold_key,
                           size_t max, struct store_outbox_held *rows_r, size_t *count_r);
/* A held message goes back to queued, due `now`; its time held is added to held_seconds. */
int store_outbox_unhold(struct store_tx *tx, const char *id, int64_t now);

/* The hold key of a message waiting for its account's reconnect (store_outbox_hold): a
 * successful PUT /v1/smtp of a disconnected account releases them. */
#define STORE_HOLD_RECONNECT "reconnect"
/* The user's messages held for `hold_key` are queued again, due now (*count_r of them); their
 * time held is added to held_seconds. */
int store_outbox_release_held(struct store_tx *tx, const char *org_id, const char *user_id,
                              const char *hold_key, int64_t now, size_t *count_r);
/* A claimed message goes back to the queue, due now, without counting an attempt: it was never
 * handed to a server (its account turned out unusable; the next claim routes it again). Fenced
 * by its lease token: STORE_CONFLICT when the lease was lost. */
int store_outbox_requeue(struct store_tx *tx, const char *id, int64_t lease_token, int64_t now);

/* Messages per state (for /metrics). */
int store_outbox_counts(struct store_tx *tx, int64_t counts_r[STORE_OUTBOX_CANCELLED + 1]);
/* The earliest next_attempt_at of a queued message (0 when none): the sender's next wake-up. */
int store_outbox_next_due(struct store_tx *tx, int64_t *when_r);
/* Drops the bodies of final messages older than `before`; metadata and activities stay. */
int store_outbox_purge_bodies(struct store_tx *tx, int64_t before, size_t *purged_r);

#endif
