/* worker_tool_persist: the persistent half of the tool kind (issue 13,
 * doc/handlers.md sections 1 and 2): one handler (handler.h) per
 * persistent tool the pool serves, calls deferred (CE_DEFER) and answered
 * on a second Redis connection of its own while the consumer reads,
 * renewed under the owner check, suspect calls re-dispatched one at a
 * time with durable delivery counts, and a drain at stop. */
#ifndef SV_WORKER_TOOL_PERSIST_H
#define SV_WORKER_TOOL_PERSIST_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consumer.h"
#include "sv_config.h"
#include "worker_tool_int.h"

struct pt;

/* NULL when the pool serves no persistent tool (exec only: the kind's
 * hooks stay unset).  Handlers are started by pt_start. */
struct pt *pt_new(const struct sv_config *cfg, const struct pool_config *pool);
void pt_free(struct pt *pt);
/* The consumer's start: handlers created (they start at the first
 * service), second connection opened.  0 or -ENOMEM. */
int pt_start(struct pt *pt, struct consumer *c);
/* Already in hand (a history batch hands an entry over again)? */
bool pt_holds(const struct pt *pt, const char *stream, const char *id);
/* Take the call (checked: not done, not forgotten) for tool t: moves
 * call's owned strings, copies the rest.  Returns CE_DEFER. */
enum consumer_verdict pt_take(struct pt *pt, struct consumer *c, const struct consumer_entry *ce, struct call *call,
			      const struct tool_config *t);
/* After a batch: send waiting calls, refresh the heartbeat's calls. */
void pt_after_batch(struct pt *pt, struct consumer *c);

/* consumer_kind hooks (ctx: the struct pt). */
size_t pt_poll_fds(struct pt *pt, struct pollfd *fds, size_t max, int64_t *deadline_ms);
void pt_poll_ready(struct pt *pt, struct consumer *c, const struct pollfd *fds, size_t n);
size_t pt_capacity(struct pt *pt);
/* The service pass of pt_poll_ready, from the run loop of an exec call in
 * a pool that also serves persistent tools (fds from pt_poll_fds): the
 * handlers go on, answers are published and entries renewed while the
 * exec tool runs.  Leaves the heartbeat's calls alone (the exec call's). */
void pt_service_exec(struct pt *pt, struct consumer *c, const struct pollfd *fds, size_t n);

/* The worker stops (consumer still alive, no read in flight): handlers
 * stopped, answers published until they are gone or
 * restart.stop_timeout_ms, the rest left pending (CE_DROP). */
void pt_finish(struct pt *pt, struct consumer *c);

#endif
