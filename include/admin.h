/* admin: the Redis side of streamvisorctl's stream commands, run by the
 * monitor process: `pending` (per literal stream and group: length, lag,
 * pending, oldest pending idle, per-consumer counts, missing and unknown
 * groups; per pattern and group one summary row over the streams
 * discovery knows, at most ADMIN_PATTERN_MAX of them; `--stream NAME`:
 * one stream's rows),
 * `dead list|retry|purge`, `drain`, and `forget RUN... --yes` (the run
 * lifecycle: tombstones in NS:forgotten, the runs' tool done hashes
 * deleted, one NS:forget entry for the persistence workers; one Lua
 * script per call).  Each takes the request's args and returns the reply
 * object for the control client. */
#ifndef SV_ADMIN_H
#define SV_ADMIN_H

#include <jansson.h>

#include "discover.h"
#include "rconn.h"
#include "sv_config.h"

/* Pattern streams summed per `pending` call, and per pipelined batch. */
#define ADMIN_PATTERN_MAX 10000
#define ADMIN_PATTERN_BATCH 256
/* Supervisor events one `events` call returns at most. */
#define ADMIN_EVENTS_MAX 500

/* cmd is "pending", "dead", "drain", "forget" or "events" (the newest
 * supervisor events, {"ok", "events": [{"id", "fields"}]}); args a JSON array of strings;
 * disc the monitor's discoverer (the pattern streams known), or NULL.
 * Never returns NULL. */
json_t *admin_call(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc, const char *cmd,
		   json_t *args);
/* The literal streams' rows of `pending` ({"ok", "groups"}): the
 * heartbeat-interval figures of status and metrics.  Pattern streams are
 * left out: walking them every interval would not be bounded (the
 * monitor's paced walker, patsum.h, summarises them). */
json_t *admin_groups(struct rconn *rc, const struct sv_config *cfg);
/* The dead-letter depth of each literal stream, {STREAM: XLEN STREAM:dead}
 * (pipelined, one round trip), for metrics; NULL when the connection
 * dropped. */
json_t *admin_dead_depths(struct rconn *rc, const struct sv_config *cfg);

#endif
