#include "engine/governor.h"

#include "lib/str.h"
#include "store/store_governor.h"
#include "store/store_smtp.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (86400 * INT64_C(1000))
/* A wake-up that put mail back looks again this soon: by then the mail it put back has taken
 * its slots, and the next wake-up is computed from them. */
#define REWAKE_MS 1000

/* ---- pure ---- */

int64_t governor_since_ms(int64_t now_ms, int64_t window_ms)
{
	return now_ms - window_ms;
}

int64_t governor_excess(const struct governor_window *w, int64_t want)
{
	int64_t excess = w->used + want - w->limit;
	return excess > 0 ? excess : 0;
}

enum governor_verdict governor_decide(const struct governor_window *windows, size_t count,
                                      int64_t want, int64_t *next_ms_r, int *which_r)
{
	*next_ms_r = 0;
	*which_r = -1;
	for (size_t i = 0; i < count; i++) {
		if (want > windows[i].limit) {
			*which_r = (int)i;
			return GOVERNOR_NEVER;
		}
	}
	for (size_t i = 0; i < count; i++) {
		if (governor_excess(&windows[i], want) == 0)
			continue;
		int64_t free_at = windows[i].leave_ms + windows[i].window_ms;
		if (*which_r < 0 || free_at > *next_ms_r) {
			*next_ms_r = free_at;
			*which_r = (int)i;
		}
	}
	return *which_r < 0 ? GOVERNOR_GO : GOVERNOR_WAIT;
}

int64_t governor_room(const struct governor_window *windows, size_t count)
{
	int64_t room = INT64_MAX;
	for (size_t i = 0; i < count; i++) {
		int64_t left = windows[i].limit - windows[i].used;
		if (left < room)
			room = left;
	}
	return room > 0 ? room : 0;
}

int64_t governor_pause_s(int64_t base_s, int pauses)
{
	int64_t pause = base_s > 0 ? base_s : 1;
	for (int i = 1; i < pauses && pause < MT_GOVERNOR_PAUSE_MAX_S; i++)
		pause *= 2;
	return pause < MT_GOVERNOR_PAUSE_MAX_S ? pause : MT_GOVERNOR_PAUSE_MAX_S;
}

int governor_fits_ever(const struct store_send_limit *limits, size_t count, int64_t want,
                       size_t *which_r)
{
	for (size_t i = 0; i < count; i++) {
		if (want > limits[i].limit) {
			*which_r = i;
			return -1;
		}
	}
	return 0;
}

const char *governor_window_name(int64_t window_ms)
{
	return window_ms == 60000      ? "minute"
	       : window_ms == 3600000  ? "hour"
	       : window_ms == 86400000 ? "day"
	                               : "?";
}

/* ---- in store jobs ---- */

void governor_key(bool relay, const char *user_id, char key[MT_GOVERNOR_KEY_MAX])
{
	snprintf(key, MT_GOVERNOR_KEY_MAX, "%s:%s", relay ? "relay" : "custom", user_id);
}

void governor_account_init(struct governor_account *a, const char *org_id, const char *user_id,
                           bool relay, const struct store_send_limit *limits, size_t limit_count)
{
	memset(a, 0, sizeof(*a));
	governor_key(relay, user_id, a->key);
	mt_strlcpy(a->org_id, org_id, sizeof(a->org_id));
	mt_strlcpy(a->user_id, user_id, sizeof(a->user_id));
	a->relay = relay;
	if (limit_count > MT_SEND_LIMITS_MAX)
		limit_count = MT_SEND_LIMITS_MAX;
	if (limit_count > 0)
		memcpy(a->limits, limits, limit_count * sizeof(*limits));
	a->limit_count = limit_count;
}

/* Each window's use at `now_ms` and, where `want` more do not fit, the slot whose leaving
 * makes room for them. */
static int load_windows(struct store_tx *tx, const char *key, const struct store_send_limit *limits,
                        size_t count, int64_t want, int64_t now_ms,
                        struct governor_window windows[MT_SEND_LIMITS_MAX])
{
	for (size_t i = 0; i < count && i < MT_SEND_LIMITS_MAX; i++) {
		struct governor_window *w = &windows[i];
		w->limit = limits[i].limit;
		w->window_ms = (int64_t)limits[i].window_s * 1000;
		w->leave_ms = 0;
		int64_t since = governor_since_ms(now_ms, w->window_ms);
		if (store_governor_count(tx, key, since, &w->used) < 0)
			return -1;
		int64_t excess = governor_excess(w, want);
		if (excess == 0 || want > w->limit)
			continue;
		int rc = store_governor_nth(tx, key, since, excess, &w->leave_ms);
		if (rc == STORE_NOT_FOUND)
			w->leave_ms = now_ms; /* counted a moment ago, gone now: look again soon */
		else if (rc != 0)
			return -1;
	}
	return 0;
}

static int64_t earliest(int64_t a, int64_t b)
{
	return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

int governor_reserve(struct store_tx *tx, const struct governor_account *a, const char *message_id,
                     int64_t lease_token, const struct store_outbox_rcpt *rcpts, size_t count,
                     int64_t now_ms, int64_t lease_ms, struct governor_grant *g)
{
	memset(g, 0, sizeof(*g));
	struct store_governor row;
	/* Without limits only a pause can hold the message back: a read, not a write per message
	 * on the hot path. */
	int rc = a->limit_count == 0
	             ? store_governor_get(tx, a->key, &row)
	             : store_governor_lock(tx, a->key, a->org_id, a->user_id, a->relay, &row);
	if (rc == STORE_NOT_FOUND && a->limit_count == 0) {
		g->verdict = GOVERNOR_GO;
		return 0;
	}
	if (rc != 0)
		return rc;
	if (row.paused_until_ms > now_ms) {
		g->verdict = GOVERNOR_WAIT;
		g->paused = true;
		g->until_ms = row.paused_until_ms;
		g->window = "pause";
		row.wake_at_ms = earliest(row.wake_at_ms, row.paused_until_ms);
		return store_governor_set(tx, &row);
	}
	if (a->limit_count == 0) {
		g->verdict = GOVERNOR_GO;
		return 0;
	}
	struct governor_window windows[MT_SEND_LIMITS_MAX];
	if (load_windows(tx, a->key, a->limits, a->limit_count, (int64_t)count, now_ms, windows) <
	    0)
		return -1;
	int which;
	g->verdict = governor_decide(windows, a->limit_count, (int64_t)count, &g->until_ms, &which);
	if (which >= 0) {
		g->window = governor_window_name(windows[which].window_ms);
		g->limit = windows[which].limit;
	}
	if (g->verdict == GOVERNOR_NEVER)
		return 0;
	if (g->verdict == GOVERNOR_WAIT) {
		row.wake_at_ms = earliest(row.wake_at_ms, g->until_ms);
		return store_governor_set(tx, &row);
	}
	g->reserved_at_ms = now_ms + lease_ms;
	for (size_t i = 0; i < count; i++) {
		const struct store_governor_slot slot = {
		    .account = a->key,
		    .message_id = message_id,
		    .lease_token = lease_token,
		    .address = rcpts[i].address,
		    .at_ms = g->reserved_at_ms,
		    .pending = true,
		};
		if (store_governor_add(tx, &slot) < 0)
			return -1;
	}
	return 0;
}

int governor_settle(struct store_tx *tx, const struct governor_account *a, const char *message_id,
                    int64_t lease_token, int64_t reserved_at_ms,
                    const struct store_outbox_rcpt *rcpts, size_t count, int64_t now_ms, bool pause,
                    int64_t pause_base_s, int64_t *paused_until_ms_r)
{
	*paused_until_ms_r = 0;
	bool any_sent = false;
	for (size_t i = 0; i < count; i++) {
		bool sent = rcpts[i].state == STORE_RCPT_SENT;
		struct store_governor_slot slot = {
		    .account = a->key,
		    .message_id = message_id,
		    .lease_token = lease_token,
		    .address = rcpts[i].address,
		    .at_ms = reserved_at_ms != 0 ? reserved_at_ms : now_ms,
		    .pending = false,
		};
		int rc = 0;
		if (reserved_at_ms != 0)
			rc = store_governor_settle(tx, &slot, sent ? now_ms : 0);
		else if (sent)
			rc = store_governor_add(tx, &slot);
		if (rc != 0)
			return rc;
		any_sent = any_sent || sent;
	}
	if (any_sent) {
		/* No window is longer than a day: older sends count nowhere. */
		if (store_governor_purge(tx, a->key, now_ms - DAY_MS) < 0)
			return -1;
		if (store_governor_sent(tx, a->key) < 0)
			return -1;
	}
	/* The reservations that just became sends (or were freed) may free a slot earlier than
	 * held mail was told: it is looked at again at the next claim. */
	if (reserved_at_ms != 0 && store_governor_wake_by(tx, a->key, now_ms) < 0)
		return -1;
	if (!pause)
		return 0;
	struct store_governor row;
	int rc = store_governor_lock(tx, a->key, a->org_id, a->user_id, a->relay, &row);
	if (rc != 0)
		return rc;
	if (row.paused_until_ms <= now_ms) {
		/* One pause per incident: the other messages in flight when it began do not
		 * lengthen it. */
		row.pauses++;
		row.paused_until_ms = now_ms + governor_pause_s(pause_base_s, row.pauses) * 1000;
	}
	row.wake_at_ms = earliest(row.wake_at_ms, row.paused_until_ms);
	*paused_until_ms_r = row.paused_until_ms;
	return store_governor_set(tx, &row);
}

int governor_record(struct store_tx *tx, const char *key, const char *message_id,
                    const char *address, int64_t at_ms)
{
	const struct store_governor_slot slot = {
	    .account = key,
	    .message_id = message_id,
	    .lease_token = 0,
	    .address = address,
	    .at_ms = at_ms,
	    .pending = false,
	};
	return store_governor_add(tx, &slot);
}

/* One account's wake-up: held mail back to the queue as far as the windows have room. */
static int wake_one(struct store_tx *tx, struct store_governor *row, int64_t now_ms,
                    const struct store_send_limit *limits, size_t limit_count, size_t *promoted_r)
{
	if (row->paused_until_ms > now_ms) {
		row->wake_at_ms = row->paused_until_ms;
		return store_governor_set(tx, row);
	}
	struct governor_window windows[MT_SEND_LIMITS_MAX];
	if (load_windows(tx, row->account, limits, limit_count, 1, now_ms, windows) < 0)
		return -1;
	int64_t room = governor_room(windows, limit_count);
	size_t max = room > MT_SENDER_CLAIM_MAX ? MT_SENDER_CLAIM_MAX : room > 0 ? (size_t)room : 1;
	struct store_outbox_held held[MT_SENDER_CLAIM_MAX];
	size_t count = 0;
	if (store_outbox_held_list(tx, row->user_id, row->account, max, held, &count) < 0)
		return -1;
	size_t promoted = 0;
	int64_t now_s = now_ms / 1000;
	for (; promoted < count; promoted++) {
		size_t which;
		bool never =
		    governor_fits_ever(limits, limit_count, held[promoted].pending, &which) < 0;
		/* One that can never fit goes anyway: its claim fails it with the reason. */
		if (!never && held[promoted].pending > room)
			break;
		int rc = store_outbox_unhold(tx, held[promoted].id, now_s);
		if (rc != 0 && rc != STORE_NOT_FOUND)
			return -1;
		room -= never ? 0 : held[promoted].pending;
	}
	*promoted_r += promoted;
	row->wake_at_ms = 0;
	if (promoted > 0 && (promoted < count || count == max)) {
		row->wake_at_ms = now_ms + REWAKE_MS;
	} else if (promoted < count) {
		/* The first still held decides: when its recipients fit. */
		if (load_windows(tx, row->account, limits, limit_count, held[promoted].pending,
		                 now_ms, windows) < 0)
			return -1;
		int64_t next;
		int which;
		if (governor_decide(windows, limit_count, held[promoted].pending, &next, &which) !=
		    GOVERNOR_WAIT)
			next = now_ms + REWAKE_MS;
		row->wake_at_ms = next;
	}
	return store_governor_set(tx, row);
}

int governor_wake(struct store_tx *tx, int64_t now_ms, const struct store_send_limit *relay_limits,
                  size_t relay_limit_count, size_t *promoted_r)
{
	*promoted_r = 0;
	struct store_governor rows[MT_GOVERNOR_WAKE_MAX];
	size_t count = 0;
	if (store_governor_due(tx, now_ms, rows, MT_GOVERNOR_WAKE_MAX, &count) < 0)
		return -1;
	struct store_smtp_account *account = NULL;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < count; i++) {
		const struct store_send_limit *limits = relay_limits;
		size_t limit_count = relay_limit_count;
		if (!rows[i].relay) {
			if (account == NULL && (account = malloc(sizeof(*account))) == NULL) {
				rc = -1;
				break;
			}
			int got =
			    store_smtp_account_get(tx, rows[i].org_id, rows[i].user_id, account);
			if (got != 0 && got != STORE_NOT_FOUND) {
				rc = -1;
				break;
			}
			limits = account->limits;
			limit_count = got == 0 ? account->limit_count : 0;
		}
		rc = wake_one(tx, &rows[i], now_ms, limits, limit_count, promoted_r);
	}
	if (account != NULL) {
		sodium_memzero(account, sizeof(*account));
		free(account);
	}
	return rc;
}

int governor_usage(struct store_tx *tx, const char *key, const struct store_send_limit *limits,
                   size_t count, int64_t now_ms, struct governor_usage *usage_r)
{
	for (size_t i = 0; i < count && i < MT_SEND_LIMITS_MAX; i++) {
		int64_t window_ms = (int64_t)limits[i].window_s * 1000;
		int64_t since = governor_since_ms(now_ms, window_ms);
		usage_r[i].next_slot_at_ms = 0;
		if (store_governor_count(tx, key, since, &usage_r[i].used) < 0)
			return -1;
		if (usage_r[i].used < limits[i].limit)
			continue;
		int64_t at;
		int rc =
		    store_governor_nth(tx, key, since, usage_r[i].used - limits[i].limit + 1, &at);
		if (rc != 0 && rc != STORE_NOT_FOUND)
			return -1;
		usage_r[i].next_slot_at_ms = rc == 0 ? at + window_ms : now_ms;
	}
	return 0;
}
