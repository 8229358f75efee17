/* The send governor's rows (engine/governor.h): one slot per recipient sent (or about to be)
 * through an account, and one row per account for its held mail's wake-up and its pause.
 *
 * A slot counts in a rolling window while its time is inside it (at_ms > now - window). A
 * reservation (pending) is written before RCPT with the end of its lease as its time, so it
 * counts in every window while the attempt runs, and one left behind by a node that died keeps
 * counting until its lease and the window have passed (the server may have accepted it); the
 * attempt's result turns it into a send at the moment the acceptance was known, or deletes it.
 *
 * Several nodes may share the store: a reservation first takes its account's row
 * (store_governor_lock, an upsert: a row lock on PostgreSQL, the write lock on SQLite), so that
 * the count and the insert of one account's reservations never interleave.
 *
 * Ownership: the caller owns the structs it passes in and out; nothing is allocated here. */
#ifndef MT_STORE_STORE_GOVERNOR_H
#define MT_STORE_STORE_GOVERNOR_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_governor {
	char account[MT_GOVERNOR_KEY_MAX];
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	bool relay;
	int64_t wake_at_ms;      /* held mail waits for this; 0 when none is held */
	int64_t paused_until_ms; /* after a throttle or quota reply */
	int pauses;              /* consecutive pauses (the back-off doubles per pause) */
};

/* The account's row, created when missing (wake and pause 0), and locked for the rest of the
 * transaction. */
int store_governor_lock(struct store_tx *tx, const char *account, const char *org_id,
                        const char *user_id, bool relay, struct store_governor *row_r);
/* The row as it is; STORE_NOT_FOUND when the account never had one. */
int store_governor_get(struct store_tx *tx, const char *account, struct store_governor *row_r);
/* Sets the wake-up, pause and pause count of a locked row. */
int store_governor_set(struct store_tx *tx, const struct store_governor *row);
/* The account sent something: its next pause starts again from the shortest. */
int store_governor_sent(struct store_tx *tx, const char *account);
/* Brings the account's wake-up forward to `when_ms` if it is later (a slot may have freed). */
int store_governor_wake_by(struct store_tx *tx, const char *account, int64_t when_ms);
/* Up to `max` rows whose wake-up is due (0 < wake_at_ms <= now_ms), earliest first. */
int store_governor_due(struct store_tx *tx, int64_t now_ms, struct store_governor *rows_r,
                       size_t max, size_t *count_r);
/* The earliest wake-up of any account (0 when none waits). */
int store_governor_next_wake(struct store_tx *tx, int64_t *when_ms_r);

/* Slots of `account` counting after `since_ms` (at_ms > since_ms). */
int store_governor_count(struct store_tx *tx, const char *account, int64_t since_ms,
                         int64_t *count_r);
/* The time of the n-th oldest (1-based) of those slots; STORE_NOT_FOUND when there are fewer. */
int store_governor_nth(struct store_tx *tx, const char *account, int64_t since_ms, int64_t n,
                       int64_t *at_ms_r);

/* One slot: a reservation (pending, at_ms the end of its lease) or a send (at_ms its time). */
struct store_governor_slot {
	const char *account;
	const char *message_id;
	int64_t lease_token; /* the attempt's; 0 for mail outside the outbox (a confirmation) */
	const char *address;
	int64_t at_ms;
	bool pending;
};
int store_governor_add(struct store_tx *tx, const struct store_governor_slot *slot);
/* The reservation `slot` describes (pending, its at_ms) becomes a send at `sent_at_ms`, or is
 * deleted when `sent_at_ms` is 0 (the recipient was refused or not tried). */
int store_governor_settle(struct store_tx *tx, const struct store_governor_slot *slot,
                          int64_t sent_at_ms);
/* Deletes the account's slots that no window counts any more (at_ms < before_ms). */
int store_governor_purge(struct store_tx *tx, const char *account, int64_t before_ms);

#endif
