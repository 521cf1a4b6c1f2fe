/* retention: trimming acknowledged stream entries (SPEC §4 step 11), run
 * by the monitor.  One Lua script per stream computes the safe trim point
 * (the oldest entry still pending or undelivered in ANY group of the
 * stream, configured or not, so unprocessed entries always win over a
 * bounded length) and trims with XTRIM MINID only behind it and only
 * entries older than retention.keep_ms.  A stream with a configured group
 * missing is skipped.  Dead-letter streams are trimmed by age. */
#ifndef SV_RETENTION_H
#define SV_RETENTION_H

#include <stdint.h>

#include "rconn.h"
#include "sv_config.h"

/* How often the monitor runs it: keep_ms / 2, clamped to [1 s, 60 s]. */
int64_t retention_period_ms(const struct sv_config *cfg);
/* One pass over every configured stream.  Returns the number of entries
 * trimmed, or -ENOTCONN when the connection dropped. */
long long retention_run(struct rconn *rc, const struct sv_config *cfg);

#endif
