/* worker_tool: the tool worker kind (SPEC §6).  For each `tool.call` it
 * runs the configured command (fork/execve, never a shell, own process
 * group, rlimits, exact environment), feeds `arguments` as JSON on stdin,
 * captures stdout (bounded, valid UTF-8), keeps heartbeating and renewing
 * its claim while the tool runs, enforces the timeout, and publishes one
 * `tool.output` atomically with its XACK (a Lua script guarded by a done
 * key), so the output exists exactly once even though a tool may run more
 * than once after a crash. */
#ifndef SV_WORKER_TOOL_H
#define SV_WORKER_TOOL_H

#include <stddef.h>

#include "consumer.h"

/* Fills kind (cfg: the namespace and the tools); host services come
 * through consumer_host().  Freed by worker_tool_free.  Returns 0. */
int worker_tool_init(const struct sv_config *cfg, const struct pool_config *pool, struct consumer_kind *kind);
/* The worker stops, its consumer still there and no read in flight:
 * persistent handlers drain (answers published up to
 * restart.stop_timeout_ms, the rest left pending).  No-op for exec. */
void worker_tool_finish(struct consumer_kind *kind, struct consumer *c);
void worker_tool_free(struct consumer_kind *kind);

/* Sanitize captured output: cut at max bytes on a character boundary and
 * replace invalid UTF-8 (and NUL) with U+FFFD.  Returns a malloc'd NUL-
 * terminated string; *truncated is set when input was cut. */
char *worker_tool_sanitize(const char *buf, size_t len, size_t max, int *truncated);

/* The done key of a call (a malloc'd string).  Short form
 * "NS:tool:RUN:CALL_ID" when that is at most 511 bytes (the keys of
 * earlier versions, which stay valid); longer pairs, which earlier
 * versions cut to 511 bytes (two calls could share a key), get
 * "NS:tool:LEN:RUN:CALL_ID" with LEN the run's length in bytes: whole,
 * and unambiguous however either id is split. */
char *worker_tool_done_key(const char *ns, const char *run, const char *call_id);
/* The run's done hash "NS:tooldone:RUN" (call id -> the output's entry
 * id, TTL renewed at each output): what tool workers record now, so
 * `forget` finds a run's done calls in one key.  Done keys of the form
 * above are still honoured when set after the run's last forget. */
char *worker_tool_done_hash(const char *ns, const char *run);

#endif
