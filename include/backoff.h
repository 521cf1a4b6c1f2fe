/* backoff: exponential delays with jitter, for restarts and reconnects. */
#ifndef SV_BACKOFF_H
#define SV_BACKOFF_H

#include <stdint.h>

struct backoff {
	int64_t initial_ms;
	int64_t max_ms;
	int64_t cur_ms;  /* the next step's nominal delay */
	int64_t last_ms; /* the previous delay (0 after init/reset) */
};

void backoff_init(struct backoff *b, int64_t initial_ms, int64_t max_ms);
/* The next delay: a value in [cur/2, cur] ("equal jitter"), and never less
 * than the previous delay, so successive delays never shrink (also once cur
 * is capped at max); then cur doubles up to max.  rnd is a uniform 32-bit
 * random value (util_rand32() in production, fixed in tests). */
int64_t backoff_next(struct backoff *b, uint32_t rnd);
void backoff_reset(struct backoff *b);

#endif
