/* The outbox's front door (DESIGN.md §1 Message): a message a user asked to send becomes a
 * durable outbox row. outbox_submit() builds the MIME (on the loop for a small request, else on
 * a worker thread) — without the fields
 * that depend on the route (From, Sender, Reply-To) and the identity, which are put before it at
 * delivery — with its summary taken from the input (no build-then-parse round trip); then one
 * store job checks that some route could carry it, mints its identity, stores it (durable before
 * the answer), and the sender is woken.
 *
 * The route is chosen at delivery, not frozen here (as in OpenSMTPD, the session never routes;
 * the MTA does): outbox_route() is the one rule, used by this check and by the sender for each
 * attempt, so a disconnected account's mail can fall back to the relay.
 *
 * Identity: every Message-ID and X-Mailtrail-Id mailtrail writes comes from
 * outbox_identity_new(), so copies of any of our messages are recognised the same way.
 *
 * Ownership: the outbox borrows everything in its params. outbox_submit() takes the draft (and
 * what it points to) whatever it returns; the result handed to `done` is valid during the call. */
#ifndef MT_ENGINE_OUTBOX_H
#define MT_ENGINE_OUTBOX_H

#include "engine/crud.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "mime/build.h"
#include "mime/message.h"
#include "store/store_org.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct work_pool;
struct sender;
struct outbox;

/* The platform relay, as far as routing is concerned. */
struct outbox_relay {
	bool configured;
	const char *from; /* its envelope sender; "" when not set */
	/* Its per-user send limits (relay_user_limits; engine/governor.h) */
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
};

/* What kind of mail is routed: the rules differ while the user's account is disconnected. */
enum outbox_mail_kind {
	OUTBOX_MAIL_SINGLE,   /* a message the user sent: the relay stands in */
	OUTBOX_MAIL_CAMPAIGN, /* bulk mail: waits held for the reconnect instead */
	OUTBOX_MAIL_NOTICE,   /* our notice about the user's account: the relay only */
};

/* Where one attempt goes, and the fields that follow from it. */
struct outbox_route {
	bool held;                          /* not now: wait held for the account's reconnect */
	bool relay;                         /* else the user's custom SMTP */
	char mail_from[MT_ADDRESS_MAX + 1]; /* the envelope sender */
	struct store_mailbox from;          /* the From field */
	struct store_mailbox sender;        /* the Sender field; address "" when none */
	struct store_mailbox reply_to;      /* the Reply-To field; address "" when none */
	struct store_mailbox record_from;   /* the activity's From: always the user's own mail */
};

struct outbox_params {
	struct store *store;
	struct work_pool *work;
	struct sender *sender; /* woken after an enqueue; may be NULL */
	int64_t max_message_bytes;
	struct outbox_relay relay;
};

/* The route for a message of `kind` of `user` (`account` NULL when it has none), whose own
 * Reply-To is `reply_to` (address "" when none): the custom SMTP account while it is connected
 * and the org's custom_smtp switch is on, else the relay — which may only claim domains that
 * authorise it (DMARC), so the org's own domains stay in From with the relay as Sender, and any
 * other domain (a recruiter on a free-mail address) goes From the relay's address with the
 * user's name and a Reply-To to the user. While the account is disconnected (and the switch on)
 * a campaign's message is not sent at all: route_r->held, it waits for the reconnect. A notice
 * goes through the relay whatever the account. 0, or -1 with the reason when no route can carry
 * it. */
int outbox_route(const struct store_org *org, const struct store_user *user,
                 const struct store_smtp_account *account, const struct outbox_relay *relay,
                 enum outbox_mail_kind kind, const struct store_mailbox *reply_to,
                 struct outbox_route *route_r, const char **reason_r);
/* The kind of a stored message (its campaign, its relay_only flag). */
enum outbox_mail_kind outbox_mail_kind_of(const struct store_outbox_message *message);

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

enum outbox_submit_verdict {
	OUTBOX_QUEUED,     /* stored: id and state */
	OUTBOX_EXISTING,   /* the Idempotency-Key was used within 24 h: the first message's id/state
	                    */
	OUTBOX_INVALID,    /* the message cannot be built (reason) */
	OUTBOX_TOO_LARGE,  /* over max_message_bytes once built (reason) */
	OUTBOX_NO_ROUTE,   /* no custom SMTP in use and no relay (reason) */
	OUTBOX_OVER_LIMIT, /* more recipients than a send window of its route allows (reason) */
	OUTBOX_GONE,       /* the user or org no longer exists */
	OUTBOX_BUSY,       /* a queue is full: try again */
	OUTBOX_FAILED,     /* the store failed; nothing was stored */
};

struct outbox_result {
	enum outbox_submit_verdict verdict;
	char id[MT_ID_MAX];
	enum store_outbox_state state;
	char reason[MT_ERROR_TEXT_MAX];
};

typedef void outbox_done_fn(void *ctx, const struct outbox_result *result);

/* Fills the draft from a request (the caller's decoder: the engine decides where it runs, in the
 * same step as the build, on the loop or on a worker). 0, or -1 with `error` for a 400. */
typedef int outbox_decode_fn(void *ctx, struct outbox_draft *draft, char *error, size_t error_size);

/* `decode` (may be NULL: the draft is complete) runs first, then the build: on the loop when the
 * request is `input_bytes` <= MT_OUTBOX_INLINE_BYTES long, else on a worker. Calls `done` exactly
 * once on the loop thread: later, or before returning when the request is refused on the loop
 * (invalid, too large) or a queue is full (OUTBOX_BUSY). */
void outbox_submit(struct outbox *outbox, struct outbox_draft *draft, outbox_decode_fn *decode,
                   void *decode_ctx, size_t input_bytes, outbox_done_fn *done, void *ctx);

/* A message as GET /v1/messages/{id} shows it, or cancelled first (DELETE): queued or held
 * messages can be; sending or final ones cannot (too_late). */
struct outbox_status {
	enum outbox_status_verdict {
		OUTBOX_STATUS_OK,
		OUTBOX_STATUS_NOT_FOUND, /* not this user's */
		OUTBOX_STATUS_TOO_LATE,  /* a cancel of a message already sending or final */
		OUTBOX_STATUS_BUSY,
		OUTBOX_STATUS_FAILED,
	} verdict;
	struct store_outbox_message message; /* recipients loaded, no body */
};
typedef void outbox_status_fn(void *ctx, const struct outbox_status *status);
void outbox_message(struct outbox *outbox, const char *org_id, const char *user_id, const char *id,
                    bool cancel, outbox_status_fn *done, void *ctx);

/* GET /v1/messages: the org's messages newest first, filtered. A user sees their own; an admin
 * anyone's in the org (all of them without `user_id`). */
struct outbox_list_query {
	const char *user_id;     /* NULL: the caller, or every user for an admin */
	const char *campaign_id; /* NULL: any */
	const char *state;       /* a state's name, or NULL */
	const char *cursor;      /* NULL or a next_cursor */
	size_t limit;            /* 1..MT_MESSAGES_LIST_MAX */
};
struct outbox_page {
	struct crud_outcome outcome; /* INVALID (a filter, the limit), FORBIDDEN (another user's
	                                messages for a non-admin), BAD_CURSOR, BUSY, FAILED */
	const struct store_outbox_list *list;
};
typedef void outbox_page_fn(void *ctx, const struct outbox_page *page);
void outbox_list(struct outbox *outbox, const char *org_id, const char *caller_id, bool admin,
                 const struct outbox_list_query *query, outbox_page_fn *done, void *ctx);

/* Our identity for a new message whose From is at `domain` ("" for mailtrail.invalid): the
 * X-Mailtrail-Id (48 bits of wall-clock milliseconds then 48 random bits, in hex, so ids sort
 * by time and the indexes keyed by them grow at their ends) and a Message-ID built on it. */
void outbox_identity_new(const char *domain, char mailtrail_id[MT_MESSAGE_ID_MAX + 1],
                         char message_id[MT_MESSAGE_ID_MAX + 1]);

#endif
