#include "engine/imap_sync_sched.h"

static void refill(struct imap_bucket *b, int64_t now_ms, unsigned rate, unsigned burst)
{
	if (b->at_ms == 0) {
		b->tokens = burst;
		b->at_ms = now_ms;
		return;
	}
	if (now_ms > b->at_ms) {
		b->tokens += (double)(now_ms - b->at_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
		b->at_ms = now_ms;
	}
}

int64_t imap_bucket_take(struct imap_bucket *b, int64_t now_ms, unsigned rate, unsigned burst)
{
	if (rate == 0 || burst == 0)
		return 0; /* no limit */
	refill(b, now_ms, rate, burst);
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	int64_t wait = (int64_t)((1.0 - b->tokens) * 1000.0 / rate + 0.999);
	return wait > 0 ? wait : 1;
}

bool imap_bucket_idle(const struct imap_bucket *b, int64_t now_ms, unsigned rate, unsigned burst)
{
	struct imap_bucket copy = *b;
	refill(&copy, now_ms, rate, burst);
	return copy.tokens >= burst;
}

int64_t imap_sync_jitter(int64_t ms, uint32_t random)
{
	if (ms <= 0)
		return 0;
	return ms + (int64_t)(random % (uint32_t)(ms / 2 + 1));
}

int64_t imap_sync_backoff(unsigned failures, int64_t min_ms, int64_t max_ms, uint32_t random)
{
	int64_t ms = min_ms;
	for (unsigned i = 1; i < failures && ms < max_ms; i++)
		ms *= 2;
	if (ms > max_ms)
		ms = max_ms;
	return ms / 2 + (int64_t)(random % ((uint32_t)ms + 1));
}

bool imap_sync_watch_second(int max_connections, unsigned folder_count)
{
	return max_connections >= 2 && folder_count >= 2;
}
