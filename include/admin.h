/* admin: the Redis side of streamvisorctl's stream commands, run by the
 * monitor process: `pending` (per stream and group: length, lag, pending,
 * oldest pending idle, per-consumer counts, missing and unknown groups),
 * `dead list|retry|purge`, and `drain`.  Each takes the request's args and
 * returns the reply object for the control client. */
#ifndef SV_ADMIN_H
#define SV_ADMIN_H

#include <jansson.h>

#include "rconn.h"
#include "sv_config.h"

/* cmd is "pending", "dead" or "drain"; args a JSON array of strings.
 * Never returns NULL. */
json_t *admin_call(struct rconn *rc, const struct sv_config *cfg, const char *cmd, json_t *args);

#endif
