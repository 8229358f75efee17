/* The send governor (DESIGN.md §1 SMTP account, Relay): each account's send limits, enforced.
 *
 * An account here is a route of one user: its custom SMTP ("custom:<user>", the account's own
 * `limits`) or the platform relay ("relay:<user>", the operator's relay_user_limits). Several
 * windows may apply at once (30 per minute and 10,000 per day); each is rolling and counts the
 * recipients the server accepted. A recipient's slot is reserved before its RCPT, in the store
 * and in the claim's short transaction (store_governor.h: atomic across sessions and nodes),
 * becomes a send when the server's acceptance is known (a slot counts from then), and is freed
 * when the recipient was refused. The confirmation mail of PUT /v1/smtp counts too.
 *
 * Mail its account cannot send now is held (persisted, so it survives restarts; never expires
 * while held): the account's row gets a wake-up at the moment its next slot frees, and the
 * sender, whose next claim is timed by the earliest wake-up, puts back as many held messages as
 * the windows then have room for. A message with more recipients than a window allows is
 * refused at enqueue (422). A throttle or quota reply pauses the account (back-off from
 * throttle_pause, doubling per consecutive pause up to MT_GOVERNOR_PAUSE_MAX_S); it is not a
 * disconnect and fails no message: they are held until the pause ends.
 *
 * The window arithmetic is pure (governor_decide and the helpers below, table-tested); the
 * functions taking a `struct store_tx` run inside a store job (on the store thread).
 *
 * Ownership: the caller's structs and arrays, filled in place; nothing is allocated. */
#ifndef MT_ENGINE_GOVERNOR_H
#define MT_ENGINE_GOVERNOR_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- pure ---- */

/* One window of an account at `now`: a slot counts while its time is after now - window. */
struct governor_window {
	int64_t limit;
	int64_t window_ms;
	int64_t used; /* slots counting now */
	/* When `want` more do not fit: the time of the oldest slot whose leaving makes room, the
	 * (used + want - limit)-th oldest (governor_excess); 0 otherwise. */
	int64_t leave_ms;
};

enum governor_verdict {
	GOVERNOR_GO,    /* they fit in every window now */
	GOVERNOR_WAIT,  /* not now: at *next_ms at the earliest */
	GOVERNOR_NEVER, /* more than a window's limit: they never fit */
};

/* The start of a rolling window: slots after it count. */
int64_t governor_since_ms(int64_t now_ms, int64_t window_ms);
/* How many of the window's slots must leave it before `want` more fit (0: they fit now). */
int64_t governor_excess(const struct governor_window *window, int64_t want);
/* Whether `want` more fit in all `count` windows; for WAIT, *next_ms is when the last window
 * that is too full has room (its leaving slot's time + the window); *which_r the window that
 * decided (WAIT: the latest to free, NEVER: the one too small; -1 for GO). */
enum governor_verdict governor_decide(const struct governor_window *windows, size_t count,
                                      int64_t want, int64_t *next_ms_r, int *which_r);
/* Recipients that fit in every window now (INT64_MAX with no window). */
int64_t governor_room(const struct governor_window *windows, size_t count);
/* The pause after the `pauses`-th consecutive throttle or quota reply (1-based): `base_s`
 * doubled per earlier pause, at most MT_GOVERNOR_PAUSE_MAX_S. */
int64_t governor_pause_s(int64_t base_s, int pauses);
/* Whether a message of `want` recipients can ever go under `limits`; else -1 and the index of
 * the window too small. */
int governor_fits_ever(const struct store_send_limit *limits, size_t count, int64_t want,
                       size_t *which_r);
/* "minute", "hour", "day" ("?" for another length): the metrics' window label. */
const char *governor_window_name(int64_t window_ms);

/* ---- in store jobs ---- */

/* One user's account on one route, with the limits that apply to it. */
struct governor_account {
	char key[MT_GOVERNOR_KEY_MAX];
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	bool relay;
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
};
void governor_account_init(struct governor_account *account, const char *org_id,
                           const char *user_id, bool relay, const struct store_send_limit *limits,
                           size_t limit_count);

/* What a reservation came to. */
struct governor_grant {
	enum governor_verdict verdict;
	bool paused;            /* WAIT because of a pause */
	int64_t until_ms;       /* WAIT: when to look again */
	int64_t reserved_at_ms; /* GO: the reservations' time (0: none made, the account has no
	                         * limits; its sends are recorded at the result) */
	const char *window;     /* WAIT/NEVER: the window that decided ("pause" for a pause) */
	int64_t limit;          /* NEVER: that window's limit */
};

/* Reserves a slot for each of `count` recipients of the message `message_id` (its lease token
 * `lease_token`) before RCPT; reservations count until now + lease_ms unless settled. When they
 * do not fit (or the account is paused), nothing is reserved and the account's wake-up is set
 * for the time they may. */
int governor_reserve(struct store_tx *tx, const struct governor_account *account,
                     const char *message_id, int64_t lease_token,
                     const struct store_outbox_rcpt *rcpts, size_t count, int64_t now_ms,
                     int64_t lease_ms, struct governor_grant *grant_r);

/* An attempt's result: each recipient's reservation (made at `reserved_at_ms`; 0 for none)
 * becomes a send at now_ms when `rcpts[i].state` is sent, or is freed. With `pause`, the account
 * pauses (unless it already is) and *paused_until_ms_r says until when. */
int governor_settle(struct store_tx *tx, const struct governor_account *account,
                    const char *message_id, int64_t lease_token, int64_t reserved_at_ms,
                    const struct store_outbox_rcpt *rcpts, size_t count, int64_t now_ms, bool pause,
                    int64_t pause_base_s, int64_t *paused_until_ms_r);

/* A send made outside the outbox (the confirmation mail of PUT /v1/smtp), at `at_ms`. */
int governor_record(struct store_tx *tx, const char *key, const char *message_id,
                    const char *address, int64_t at_ms);

/* The accounts whose wake-up is due: each puts back (held -> queued, due now) as many of its
 * held messages as its windows have room for, the longest waiting first, and sets its next
 * wake-up. `relay_limits` are the relay's per-user limits. *promoted_r messages were put back. */
int governor_wake(struct store_tx *tx, int64_t now_ms, const struct store_send_limit *relay_limits,
                  size_t relay_limit_count, size_t *promoted_r);

/* Each window's use now and, when it is full, when its next slot frees (0 otherwise). */
struct governor_usage {
	int64_t used;
	int64_t next_slot_at_ms;
};
int governor_usage(struct store_tx *tx, const char *key, const struct store_send_limit *limits,
                   size_t count, int64_t now_ms, struct governor_usage *usage_r);

/* "custom:<user>" / "relay:<user>". */
void governor_key(bool relay, const char *user_id, char key[MT_GOVERNOR_KEY_MAX]);

#endif
