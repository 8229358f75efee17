/* What one delivery attempt means for a message (DESIGN.md §1 Message): pure, no I/O, so that
 * the outbox's whole state decision lives here and is table-tested like the SMTP classifier.
 *
 * Each recipient of the attempt ends accepted (sent), permanently refused (failed) or
 * temporarily refused (pending: retried alone). A refusal of class throttle or quota is never
 * permanent, whatever its code: it pauses the account (engine/governor.h). The message then
 * follows one transition table, keyed by whether recipients are still pending, whether one of
 * them was refused by a throttle or quota reply (paused), whether the retry time (retry_expiry
 * from the first attempt, time spent held excluded) has run out, and whether any recipient, in
 * this attempt or an earlier one, was sent or failed:
 *
 *   pending  paused  expired  sent  failed  ->  state
 *   yes      yes     -        any   any         held (until the account's pause ends; the
 *                                               retry time does not run while held)
 *   yes      no      no       any   any         queued (retry at the back-off's next time, not
 *                                               before the account may open a session again)
 *   yes      no      yes      -     -           the pending ones fail ("retry time ran out"):
 *   no       -       -        yes   no          sent
 *   no       -       -        yes   yes         partial
 *   no       -       -        no    yes         failed
 *
 * Ownership: the caller's arrays, filled in place. */
#ifndef MT_ENGINE_OUTBOX_POLICY_H
#define MT_ENGINE_OUTBOX_POLICY_H

#include "lib/backoff.h"
#include "lib/failure.h"
#include "lib/limits.h"
#include "store/store_outbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One recipient's outcome in the attempt. */
struct outbox_rcpt_outcome {
	bool accepted;
	bool permanent;
	enum mt_failure_class cls;
	const char *reply; /* the server's reply, or the session's reason */
};

struct outbox_attempt {
	size_t rcpt_count; /* the recipients tried: those still pending before it */
	const struct outbox_rcpt_outcome *outcomes;
	size_t sent_before, failed_before; /* recipients finished by earlier attempts */
	unsigned attempts_before;
	int64_t first_attempt_at; /* 0 when this is the first */
	int64_t held_seconds;     /* not counted against the retry time */
	int64_t now;
	int64_t not_before;        /* the account's cool-down: no retry earlier (0: none) */
	enum mt_failure_class cls; /* the attempt's own class when it failed as a whole */
	const char *reason;        /* ... and its reason ("" when it did not) */
};

struct outbox_verdict {
	enum store_outbox_state state;      /* queued, held, sent, partial or failed */
	enum store_rcpt_state *rcpt_states; /* caller's array of rcpt_count */
	int64_t first_attempt_at;
	int64_t next_attempt_at; /* when queued */
	bool any_sent;           /* in this attempt: the message's activity is due */
	bool expired;
	bool paused;               /* held: a throttle or quota reply pauses the account */
	enum mt_failure_class cls; /* MT_CLASS_NONE when everything went */
	char last_error[MT_ERROR_TEXT_MAX];
};

/* A session to a user's custom SMTP that failed before sending anything (DESIGN.md §1 SMTP
 * account states). An auth failure, or a certificate that no longer verifies or matches its
 * pin, may be passing (a server restarting, a password changed and changed back): it is
 * confirmed by one more attempt on a fresh connection after a pause, and only then does the
 * account go disconnected. Anything else is an ordinary failure, retried under the back-off:
 *
 *   broken account  confirming attempt  ->  verdict
 *   yes             no                      confirm (pause, then one fresh session)
 *   yes             yes                     disconnect
 *   no              any                     retry (the messages' back-off, the cool-down)
 *
 * A failure of another session of the account while the pause runs is neither: it only waits
 * for the confirming attempt (awaiting). The relay's failures are always `retry`: it is the
 * operator's, not the user's. */
enum outbox_session_verdict {
	OUTBOX_SESSION_RETRY,
	OUTBOX_SESSION_CONFIRM,
	OUTBOX_SESSION_AWAIT,
	OUTBOX_SESSION_DISCONNECT,
};
struct outbox_session_failure {
	bool relay;
	enum mt_failure_class cls;
	bool certificate;      /* a tls failure about the presented certificate (verify, pin) */
	bool confirming;       /* the session was the confirming attempt */
	bool awaiting_confirm; /* the account's pause before its confirming attempt runs */
};
enum outbox_session_verdict outbox_session_failed(const struct outbox_session_failure *failure);
const char *outbox_session_verdict_name(enum outbox_session_verdict verdict);

const char *outbox_transition_name(size_t index);
/* Fills `verdict` (whose rcpt_states the caller provides). */
void outbox_verdict(const struct outbox_attempt *attempt, const struct mt_backoff *backoff,
                    struct outbox_verdict *verdict);

/* The sender's memory for message bodies (issue 10): claimed and loaded bodies count against a
 * node-wide budget (MT_SENDER_BODY_BYTES_MAX) and a per-account one
 * (MT_SENDER_ACCOUNT_BODY_BYTES_MAX), in bytes, not only in messages.
 *
 * The bytes a claim may preload, given what the node holds and the most any account holds. */
size_t outbox_body_claim_room(size_t node_bytes, size_t account_bytes_max);
/* Whether a body of `len` bytes may be loaded now. The first body of an empty node or account is
 * always admitted, however large, so that a message over the budget is still sent (alone). */
bool outbox_body_admits(size_t node_bytes, size_t account_bytes, size_t len);

#endif
