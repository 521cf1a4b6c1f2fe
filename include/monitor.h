/* monitor: the master's Redis hands (OpenBSD privsep style).  A small child
 * process that owns a Redis connection so the master never blocks on
 * Redis: every heartbeat interval it reads NS:workers and the pending
 * counts and reports them over a socketpair; it carries out the master's
 * writes (supervisor events, removal of retired heartbeat fields) and
 * queues them while Redis is away.
 *
 * Master -> monitor, one JSON object per line:
 *   {"op":"event","fields":{"worker":..,"from":..,...}}   XADD NS:supervisor
 *   {"op":"hdel","names":[...]}                         HDEL NS:workers
 *   {"op":"prune","keep":[...]}   HDEL this node's fields not in keep
 *   {"op":"stop"}                 flush what is queued (bounded) and exit
 *   {"op":"call","id":N,"cmd":C,"args":[...]}   pending/dead/drain (admin.h),
 *                                 answered {"op":"reply","id":N,"reply":{...}}
 * Monitor -> master:
 *   {"op":"beats","ok":true,"wall_ms":N,"workers":{NAME:{heartbeat}...},
 *    "pending":{NAME:N...},"groups":[...],"patterns":[{"pattern","group",
 *    "matched","active","lag","pending","oldest_pending_idle_ms","missing",
 *    "age_ms"}...]}   or   {"op":"beats","ok":false,"error":"..."}
 */
#ifndef SV_MONITOR_H
#define SV_MONITOR_H

#include <sys/types.h>

#include "sv_config.h"

struct monitor_args {
	const struct sv_config *cfg;
	int fd;
	pid_t master_pid;
};

int monitor_main(const struct monitor_args *a);

#endif
