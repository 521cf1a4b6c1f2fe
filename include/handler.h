/* handler: the process manager of ONE persistent tool's handler
 * (doc/handlers.md 2.1 and 2.3, streamvisor-handlers(7)).
 *
 * No Redis, no consumer: its owner (the tool worker) drives it through a
 * poll-style interface and hears back through struct handler_events.
 *
 *   loop:  n = handler_poll_fds(h, fds, max, &deadline);
 *          poll(fds, n (+ the owner's own), until deadline);
 *          handler_service(h, fds, n, util_mono_ms());
 *          while (handler_free_slots(h)) handler_send(h, &call);
 *
 * Every call handed over with handler_send() gets exactly one event:
 * answer (the handler answered), failed (it gets an error output: a
 * timeout, a protocol violation, a handler that fails to start), or
 * suspect (the handler died with it in flight: the owner re-dispatches
 * such calls one at a time, HANDLER_CALL_SUSPECT, bumping their delivery
 * counts).  Events may call handler_send(); never handler_free().
 *
 * Times are util_mono_ms().  The process must ignore SIGPIPE (workers do).
 * Nothing the handler writes is used to signal anything: the only
 * process group ever killed is the one we forked. */
#ifndef SV_HANDLER_H
#define SV_HANDLER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "sv_config.h"

/* Late answers for calls no longer in flight are remembered this far. */
#define HANDLER_RECENT_IDS 4096
/* A cancelled call not settled within this is ended by a kill. */
#define HANDLER_KILL_GRACE_MS 1000
/* fds handler_poll_fds() may fill: 5 per process, and while one drains
 * its replacement runs too. */
#define HANDLER_POLL_MAX 16

enum handler_state {
	HANDLER_DOWN,      /* not started yet / between a death and its restart */
	HANDLER_STARTING,  /* started, waiting for {"ready": true} */
	HANDLER_READY,     /* takes calls */
	HANDLER_BACKOFF,   /* failed to start; next start after the backoff */
	HANDLER_FAILED,    /* failed restart.max_retries times in a row: calls
			    * fail at once; still retried every backoff_max_ms */
	HANDLER_STOPPING,  /* handler_stop(): EOF sent, waiting for answers */
	HANDLER_STOPPED,   /* stopped: no process left */
};

/* For status (heartbeat, streamvisorctl). */
struct handler_status {
	pid_t pid;                 /* the current process, 0 when none */
	enum handler_state state;
	bool draining;             /* an older process is draining too */
	size_t inflight;           /* calls in flight, draining process included */
	uint64_t served;           /* answers received */
	uint64_t restarts;         /* processes started after the first */
	const char *last_error;    /* "" when none; valid until the next call */
};

struct handler_events {
	/* The handler answered: output (borrowed JSON value, as given) or,
	 * for {"error": {"message"}}, error (the message). */
	void (*answer)(void *ctx, void *owner, const json_t *output, const char *error);
	/* The call gets an error output: why ("timed out after N ms",
	 * "handler protocol violation: ...", "handler for T failed to
	 * start N times: ..."). */
	void (*failed)(void *ctx, void *owner, const char *why);
	/* The handler died (or was stopped) with the call in flight, and
	 * not because of a protocol violation: re-dispatch it. */
	void (*suspect)(void *ctx, void *owner);
	/* State or pid changed (optional). */
	void (*state)(void *ctx, const struct handler_status *st);
};

/* One call.  Strings are copied into the line written at once. */
struct handler_call {
	uint64_t id;             /* ours on the wire; unique among calls in flight */
	const char *call_id, *run, *name;
	const char *arguments;   /* JSON text; sent as that value (a string if not JSON) */
	int64_t deadline_ms;     /* util_mono_ms() time at which it times out */
	int64_t timeout_ms;      /* only for the message "timed out after N ms" */
	void *owner;             /* handed back in its event */
	unsigned flags;
};
/* A re-dispatch of a suspect call: sent only when nothing is in flight;
 * until it is settled, no other call is taken (free slots 0). */
#define HANDLER_CALL_SUSPECT 1u

/* A handler for tool t (mode persistent) with cfg->restart's backoff,
 * max_retries and stop_timeout_ms; both must outlive it.  The first
 * start happens at the first handler_service().  NULL only when out of
 * memory (logged). */
struct handler *handler_new(const struct tool_config *t, const struct sv_config *cfg,
			    const struct handler_events *ev, void *ctx);
/* SIGKILL every process group it started and reap them; no events. */
void handler_free(struct handler *h);

/* The fds to poll (at most max, HANDLER_POLL_MAX is always enough) and
 * *deadline_ms lowered to the next time handler_service() must run. */
size_t handler_poll_fds(struct handler *h, struct pollfd *fds, size_t max, int64_t *deadline_ms);
/* Read, write, reap and act on deadlines; fds as returned by poll()
 * (others' fds in the array are ignored). */
void handler_service(struct handler *h, const struct pollfd *fds, size_t n, int64_t now_ms);

/* Calls handler_send() takes now: concurrency minus calls in flight when
 * READY; 0 while starting, backing off, stopping, or while a suspect call
 * is re-dispatched.  In FAILED: concurrency (each call is failed at the
 * next handler_service(), so an owner's waiting calls do not wait for
 * ever). */
size_t handler_free_slots(const struct handler *h);
/* Calls in flight (draining process included). */
size_t handler_inflight(const struct handler *h);
/* Write the call as one line on the handler's stdin.  Returns 0; -EAGAIN
 * when no slot is free (or, for a suspect call, something is in flight);
 * -EEXIST for an id in flight; -ENOMEM. */
int handler_send(struct handler *h, const struct handler_call *call);

/* The worker stops: no new calls, EOF on stdin, answers still taken
 * until restart.stop_timeout_ms, then the group is killed and calls
 * still in flight are reported suspect.  handler_stopped() tells when no
 * process is left. */
void handler_stop(struct handler *h, int64_t now_ms);
bool handler_stopped(const struct handler *h);

void handler_status(const struct handler *h, struct handler_status *st);
const char *handler_state_name(enum handler_state s);

#endif
