/* backoff: exponential delays with "equal jitter" for restarts and
 * reconnects.  A delay is drawn from [max(cur/2, last), cur], so delays
 * never shrink, even once cur has reached max. */
#include "backoff.h"

void backoff_init(struct backoff *b, int64_t initial_ms, int64_t max_ms)
{
	if (initial_ms < 1)
		initial_ms = 1;
	if (max_ms < initial_ms)
		max_ms = initial_ms;
	b->initial_ms = initial_ms;
	b->max_ms = max_ms;
	backoff_reset(b);
}

int64_t backoff_next(struct backoff *b, uint32_t rnd)
{
	int64_t hi = b->cur_ms;
	int64_t lo = hi / 2;
	if (lo < b->last_ms)
		lo = b->last_ms;
	if (lo > hi)
		lo = hi;
	uint64_t span = (uint64_t)(hi - lo) + 1;
	int64_t d = lo + (int64_t)((uint64_t)rnd % span);
	b->last_ms = d;
	if (b->cur_ms > b->max_ms / 2)
		b->cur_ms = b->max_ms;
	else
		b->cur_ms *= 2;
	return d;
}

void backoff_reset(struct backoff *b)
{
	b->cur_ms = b->initial_ms;
	b->last_ms = 0;
}
