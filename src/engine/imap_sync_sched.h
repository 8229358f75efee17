/* The pure parts of the IMAP sync scheduler (engine/imap_sync.h): a token bucket per server
 * host (the rate of new logins), jittered delays and back-off, and the per-account connection
 * plan. No I/O, no clock, no randomness of their own: time and random numbers are arguments,
 * so tests pin them. */
#ifndef MT_ENGINE_IMAP_SYNC_SCHED_H
#define MT_ENGINE_IMAP_SYNC_SCHED_H

#include <stdbool.h>
#include <stdint.h>

/* At most `rate` tokens a second, `burst` at most held; starts full. */
struct imap_bucket {
	double tokens;
	int64_t at_ms; /* when `tokens` was last brought up to date; 0: never used (full) */
};

/* Takes one token at `now_ms`: 0 when taken, else the ms until one is there (nothing taken). */
int64_t imap_bucket_take(struct imap_bucket *b, int64_t now_ms, unsigned rate, unsigned burst);
/* True when the bucket is full at now_ms (it may be forgotten). */
bool imap_bucket_idle(const struct imap_bucket *b, int64_t now_ms, unsigned rate, unsigned burst);

/* `ms` spread over ms .. ms + ms/2 (so that sessions told to wait the same time do not come
 * back together); `random` is any 32-bit random number. */
int64_t imap_sync_jitter(int64_t ms, uint32_t random);

/* Back-off after `failures` broken sessions in a row (1, 2, ...): min_ms doubled each time up
 * to max_ms, then times 0.5 .. 1.5 (`random` as above). */
int64_t imap_sync_backoff(unsigned failures, int64_t min_ms, int64_t max_ms, uint32_t random);

/* Whether an account watches Sent with IDLE on a second connection (rather than polling it):
 * only when its connection cap allows two and there is a second folder. */
bool imap_sync_watch_second(int max_connections, unsigned folder_count);

#endif
