/* Quadratic back-off with an expiry: attempt n (1-based) waits base * n^2 seconds, capped at
 * `max_delay`, and no retry is scheduled past `first_attempt + expiry`. */
#ifndef MT_LIB_BACKOFF_H
#define MT_LIB_BACKOFF_H

#include <stdint.h>

struct mt_backoff {
	int64_t base_delay_s;
	int64_t max_delay_s;
	int64_t expiry_s;
};

/* Default for mail retries: 60 s, 240 s, 540 s, ... capped at 1 h, given up after 24 h. */
#define MT_BACKOFF_MAIL ((struct mt_backoff){60, 3600, 24 * 3600})

int64_t mt_backoff_delay(const struct mt_backoff *policy, unsigned attempt);
/* Sets *next_r to when attempt `attempts_done + 1` may run; returns 0, or -1 if that would be past
 * the expiry (the caller gives up: the message fails with its last reason). */
int mt_backoff_next(const struct mt_backoff *policy, int64_t first_attempt_s, int64_t now_s,
                    unsigned attempts_done, int64_t *next_r);

#endif
