/* proc: the per-worker supervision state machine (supervisord's states plus
 * HUNG).  Pure logic: the master feeds it events and carries out the action
 * it returns, so every transition is unit-testable without processes. */
#ifndef SV_PROC_H
#define SV_PROC_H

#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"

enum proc_state {
	PROC_STOPPED = 0,
	PROC_STARTING,
	PROC_RUNNING,
	PROC_BACKOFF,
	PROC_STOPPING,
	PROC_EXITED,
	PROC_FATAL,
	PROC_HUNG,
};

enum proc_action {
	PROC_ACT_NONE = 0,
	PROC_ACT_SPAWN,       /* fork the worker now */
	PROC_ACT_TERM,        /* send SIGTERM (graceful stop) */
	PROC_ACT_CONT_TERM,   /* HUNG: SIGCONT then SIGTERM */
	PROC_ACT_KILL,        /* SIGKILL */
};

struct proc_policy {
	int64_t start_ms;
	int64_t max_retries;
	int64_t burst;
	int64_t burst_window_ms;
	int64_t backoff_initial_ms;
	int64_t backoff_max_ms;
	int64_t stop_timeout_ms;
	int64_t hung_kill_ms;   /* SIGTERM -> SIGKILL for a HUNG worker */
};

#define PROC_BURST_MAX 64
/* The largest restart.burst that can trip: the policy trips on more
 * crashes than burst inside the window, and the history holds
 * PROC_BURST_MAX of them.  The configuration refuses anything larger. */
#define PROC_BURST_LIMIT (PROC_BURST_MAX - 1)

struct proc {
	enum proc_state state;
	bool want_up;           /* the operator/config wants it running */
	bool retire;            /* stop for good (scale down / pool removed) */
	bool restart_after_stop;/* restart/reload: start again once stopped */
	int64_t retries;        /* consecutive failed starts */
	int64_t deadline_ms;    /* next timer, or 0 */
	int64_t spawned_ms;
	uint64_t spawned_count;
	int64_t last_delay_ms;  /* the last backoff delay chosen */
	struct backoff backoff;
	int64_t crashes[PROC_BURST_MAX]; /* monotonic times of recent crashes from RUNNING */
	unsigned ncrashes;
	char reason[96];        /* why the last transition happened */
};

const char *proc_state_name(enum proc_state s);
/* Does the state count as "up" for `status` exit code 3? (RUNNING only) */
bool proc_state_is_running(enum proc_state s);
/* Is a process alive in this state? */
bool proc_state_has_pid(enum proc_state s);

void proc_init(struct proc *p, const struct proc_policy *pol);
/* Operator/config asks for the worker to run.  From STOPPED/EXITED/FATAL/
 * BACKOFF: returns SPAWN (retries reset). */
enum proc_action proc_start(struct proc *p, const struct proc_policy *pol, int64_t now);
/* The master forked it. */
void proc_spawned(struct proc *p, const struct proc_policy *pol, int64_t now);
/* Operator asks for a stop (retire: never start again). */
enum proc_action proc_stop(struct proc *p, const struct proc_policy *pol, int64_t now, bool retire);
/* The process exited.  exit_code is the exit status, or -signo when killed
 * by a signal.  Returns SPAWN for an immediate restart, NONE otherwise (a
 * BACKOFF deadline may have been set; see proc_timer). */
enum proc_action proc_exited(struct proc *p, const struct proc_policy *pol, int64_t now,
			     int exit_code, uint32_t rnd);
/* The heartbeat judge says the process is hung. */
enum proc_action proc_hung(struct proc *p, const struct proc_policy *pol, int64_t now);
/* The worker made progress (finished a batch: entries stored, acked or
 * dead-lettered): STARTING→RUNNING before start_ms.  A worker that works
 * has started, so the failed-start streak ends; otherwise a poison entry
 * right after another (each crashing up to max_deliveries fresh starts)
 * would add up to max_retries and make the pool FATAL. */
enum proc_action proc_progress(struct proc *p, const struct proc_policy *pol, int64_t now);
/* Time passed: STARTING→RUNNING after start_ms, BACKOFF→SPAWN, STOPPING/HUNG
 * → KILL after its grace. */
enum proc_action proc_timer(struct proc *p, const struct proc_policy *pol, int64_t now);

#endif
