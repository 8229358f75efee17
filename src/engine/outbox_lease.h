/* The sender's store work (DESIGN.md §3: claim due rows under a lease, commit, then talk to the
 * network): claiming due messages with the route each attempt takes (and the bodies of those
 * whose account has a session ready), loading a body when a session is ready for it, recording an
 * attempt fenced by its lease token (with the message's outbox activity when recipients got it),
 * renewing and releasing a node's leases. Each call submits one store job and reports on the loop
 * thread (the results: one job for those that gather meanwhile, outbox_finishes).
 *
 * Ownership: a claim's items belong to the caller from the `done` callback on (free each with
 * outbox_item_free()); a finish takes nothing and borrows the item until its `done`. */
#ifndef MT_ENGINE_OUTBOX_LEASE_H
#define MT_ENGINE_OUTBOX_LEASE_H

#include "engine/outbox.h"
#include "engine/outbox_policy.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* One claimed message and where this attempt goes. */
struct outbox_item {
	struct store_outbox_message msg; /* pending recipients only; body loaded later */
	bool routable;                   /* else: no route now (reason), tried again later */
	bool held;                       /* held for its account's reconnect by the claim */
	char reason[MT_ERROR_TEXT_MAX];
	struct outbox_route route;
	/* The send governor (engine/governor.h): the account whose limits this attempt goes
	 * under and when its recipients' reservations were made (0: none, the account has no
	 * limits); `never` when it has more recipients than one of its windows allows (reason). */
	char governor[MT_GOVERNOR_KEY_MAX];
	int64_t reserved_at_ms;
	bool never;
	char *head; /* the route's fields before a head_apart body (malloc'd, outbox_item_head) */
	size_t head_len;
	/* The loaded body has a byte over 0x7f: looked for on the store thread as it loads, so the
	 * SMTP client need not scan a large body on the loop before its MAIL FROM. */
	bool body_8bit;
};
/* Frees the item and what it holds; sets the pointer to NULL. */
void outbox_item_free(struct outbox_item **item);
/* Writes the route's head fields of a routable head_apart item (GMime: run it on a worker);
 * -1 when they cannot be written (the item is no longer routable, with the reason). */
int outbox_item_head(struct outbox_item *item);

/* A claim: its items (each malloc'd: take them, setting the slot to NULL) and the custom SMTP
 * accounts of its users with a custom route, as stored at the claim. */
struct outbox_claim {
	struct outbox_item **items;
	size_t count;
	struct store_smtp_account *accounts;
	size_t account_count, account_cap;
	bool full; /* `max` were claimed: more may be due */
	/* Held by the governor in this claim, per window (GOVERNOR_HOLD_*), and the time they
	 * were told to wait; the earliest wake-up of any held mail (0: none). */
	size_t holds[4];
	int64_t hold_wait_ms[4];
	int64_t next_wake_ms;
	size_t woken; /* held messages the claim put back in the queue */
};
/* The windows of outbox_claim.holds: a full window, or a paused account. */
enum { GOVERNOR_HOLD_MINUTE, GOVERNOR_HOLD_HOUR, GOVERNOR_HOLD_DAY, GOVERNOR_HOLD_PAUSE };
const char *outbox_hold_name(size_t index);
/* Frees what is left of a claim (items not taken, the accounts wiped). */
void outbox_claim_free(struct outbox_claim *claim);

typedef void outbox_claim_done_fn(void *ctx, int result, struct outbox_claim *claim);

/* Which claimed messages come with their bodies: those routed to an account with a session
 * ready now (the relay, or the custom account of a user in `users`), in claim order, within
 * `bytes` (a body loads only when a session is up to take it; the others are loaded when one is,
 * outbox_lease_bodies). */
struct outbox_preload {
	bool relay;
	const char *const *users; /* user ids; copied by outbox_lease_claim */
	size_t user_count;
	size_t bytes;
};

/* Claims up to `max` due messages for `owner` and decides each one's route (outbox_route); the
 * head fields are left to outbox_item_head(). First, held mail whose wake-up is due goes back to
 * the queue as far as its account has room; then each claimed message reserves its recipients'
 * slots (engine/governor.h) or is held, and is not in the claim; then the bodies `preload` asks
 * for are read. 0 once submitted, -1 when the queue is full. */
int outbox_lease_claim(struct store *store, const char *owner, int64_t now_ms, int64_t lease_s,
                       size_t max, const struct outbox_preload *preload,
                       const struct outbox_relay *relay, outbox_claim_done_fn *done, void *ctx);

/* Loads the bodies of `count` items (their msg.body and body_len); an item whose body is gone
 * keeps body NULL. `done` gets 0 or a store error. */
typedef void outbox_bodies_done_fn(void *ctx, int result);
int outbox_lease_bodies(struct store *store, struct outbox_item *const *items, size_t count,
                        outbox_bodies_done_fn *done, void *ctx);

/* Where attempts' results wait to be recorded: one store job at a time carries all that came
 * while the one before was in the store (its caller's own; free it when none of its results is
 * still pending). */
struct outbox_finishes;
struct outbox_finishes *outbox_finishes_new(struct store *store);
void outbox_finishes_free(struct outbox_finishes **finishes);
/* What waits goes to the store now (a stopping caller, before it releases its leases). */
void outbox_finishes_flush(struct outbox_finishes *finishes);

/* Records the attempt's verdict for `item` (its recipients in item->msg.rcpts order, states in
 * verdict->rcpt_states), fenced by the lease token, and the outbox activity of the recipients
 * it reached; the governor's reservations become sends or are freed, and a paused verdict
 * pauses the account (the first pause `pause_s`, doubling) and holds the message until then —
 * such a result is submitted at once, so that what its caller submits next comes after it.
 * `done` gets 0, STORE_CONFLICT (the lease was lost: nothing of this attempt is written, the
 * others of its batch are) or a store error (the batch's). It is called exactly once, later;
 * or with -1 before this returns when the store refused the job. -1 (and no call) when out of
 * memory. */
typedef void outbox_finish_done_fn(void *ctx, int result);
int outbox_lease_finish(struct outbox_finishes *finishes, const struct outbox_item *item,
                        const struct outbox_verdict *verdict, int64_t pause_s,
                        outbox_finish_done_fn *done, void *ctx);

/* The item goes back to the queue, due now, no attempt counted (its account turned out
 * unusable before anything was handed to a server: its next claim routes it again), fenced by
 * its lease token. `done` gets 0, STORE_CONFLICT (the lease was lost) or a store error. */
int outbox_lease_requeue(struct store *store, const struct outbox_item *item,
                         outbox_finish_done_fn *done, void *ctx);

/* Gives a claimed item back without an attempt (store_outbox_give_back: held, cancelled or
 * queued as its campaign's state says). `done` gets 0, STORE_CONFLICT (the lease was lost) or a
 * store error. */
int outbox_lease_give_back(struct store *store, const struct outbox_item *item,
                           outbox_finish_done_fn *done, void *ctx);

typedef void outbox_lease_done_fn(void *ctx, int result, size_t count);
/* Extends every lease `owner` holds until `until`. */
int outbox_lease_renew(struct store *store, const char *owner, int64_t until,
                       outbox_lease_done_fn *done, void *ctx);
/* Every message `owner` holds goes back to the queue (*count messages). */
int outbox_lease_release(struct store *store, const char *owner, outbox_lease_done_fn *done,
                         void *ctx);
/* Messages per state, for /metrics. */
typedef void outbox_counts_done_fn(void *ctx, int result, const int64_t *counts);
int outbox_lease_counts(struct store *store, outbox_counts_done_fn *done, void *ctx);

#endif
