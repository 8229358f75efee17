#include "lib/backoff.h"

int64_t mt_backoff_delay(const struct mt_backoff *policy, unsigned attempt)
{
	if (attempt == 0)
		return 0;
	/* Past sqrt(max/base) the square only grows: stop before it can overflow. */
	int64_t n = attempt;
	if (n > 1000000)
		return policy->max_delay_s;
	int64_t delay = policy->base_delay_s * n * n;
	return delay > policy->max_delay_s ? policy->max_delay_s : delay;
}

int mt_backoff_next(const struct mt_backoff *policy, int64_t first_attempt_s, int64_t now_s,
                    unsigned attempts_done, int64_t *next_r)
{
	int64_t next = now_s + mt_backoff_delay(policy, attempts_done);
	if (next > first_attempt_s + policy->expiry_s)
		return -1;
	*next_r = next;
	return 0;
}
