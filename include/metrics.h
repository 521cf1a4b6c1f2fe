/* metrics: the Prometheus text exposition (version 0.0.4) of the master's
 * view, for `streamvisorctl metrics` and the optional HTTP listener
 * (metrics.listen), plus that small HTTP/1.0 server.  Rendering is pure:
 * it takes a JSON description of the state, so it is unit-testable.
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

struct metrics_http;
struct dispatch;
/* Listen on "HOST:PORT"; render() is called for each GET /metrics.
 * Returns 0 or -errno (logged). */
int metrics_http_open(struct metrics_http **out, const char *listen, char *(*render)(void *ctx), void *ctx);
/* Serve from the master's loop (a dispatch file per connection). */
int metrics_http_attach(struct metrics_http *h, struct dispatch *d);
/* Drop connections older than their 5 s. */
void metrics_http_tick(struct metrics_http *h, int64_t now);
void metrics_http_close(struct metrics_http *h);

#endif
