/* metrics: the Prometheus text exposition (version 0.0.4) of the master's
 * view, for `streamvisorctl metrics` and GET /metrics, which the web
 * child serves (src/web.c: on http.listen, and on metrics.listen alone)
 * from the master's `state` view.  Rendering is pure: it takes a JSON
 * description of the state, so it is unit-testable.
 *
 * Input: {"node":N, "redis_up":bool,
 *         "workers":[{"name","pool","state","restarts","beat_age_ms"}...],
 *         "pools":[{"name","processed","failed","dead_lettered","lost",
 *                   "forgotten","conflicts","reruns",
 *                   "batch_hist":[HB_HIST_N counts],"batch_sum_us"}...],
 *         "groups":[{"stream","group","length","lag","pending",
 *                    "oldest_pending_idle_ms","configured","pinned"}...],
 *         "patterns":[{"pattern","group","matched","active","lag","pending",
 *                      "oldest_pending_idle_ms","missing","age_ms"}...]}
 * Workers may also carry "streams" and "active" (their stream sets). */
#ifndef SV_METRICS_H
#define SV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* malloc'd text; NULL only on allocation failure. */
char *metrics_render(const json_t *state);

#endif
