/* spawn: fork and exec a configured tool (exec mode, one process per call,
 * and persistent handlers), and the rate limit of the lines it logs.
 * Shared by src/worker_tool.c and src/handler.c so both start a tool the
 * same way: its own process group, PR_SET_PDEATHSIG, rlimits, exactly the
 * configured environment, cwd, every other descriptor closed. */
#ifndef SV_SPAWN_H
#define SV_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sv_config.h"

/* A started tool: the parent's ends of its pipes, non-blocking and
 * close-on-exec; -1 where there is none. */
struct spawn_proc {
	pid_t pid;     /* also its process group */
	int pidfd;     /* readable when it exits (-1: poll by time) */
	int in;        /* its standard input (we write) */
	int out, err;  /* its standard output and error (we read) */
	int answers;   /* its fd 3 (we read); -1 unless asked for */
};

/* Fork and exec t->command.  extra_env (nextra "K=V" strings) is added to
 * the configured environment (PATH is added when it has none); with
 * answers_fd the child gets a fourth pipe on fd 3 (persistent handlers,
 * streamvisor-handlers(7)), else fd 3 and up are all closed.  Returns 0
 * with *p set, or a negative errno (the child's when it could not chdir or
 * exec) with nothing left open and no child left unreaped. */
int spawn_tool_start(const struct tool_config *t, char *const *extra_env, size_t nextra, bool answers_fd,
		     struct spawn_proc *p);
/* Close the parent's ends that are still open (pid and pidfd included:
 * the caller has reaped or given up on the child). */
void spawn_proc_close(struct spawn_proc *p);
/* kill(-pgid, sig) when pgid > 0. */
void spawn_kill_group(pid_t pgid, int sig);

/* At most SPAWN_LINES_PER_S lines a second of a tool's stdout/stderr
 * reach the log, so a chatty tool cannot flood it. */
#define SPAWN_LINES_PER_S 20
struct spawn_rate {
	int64_t window_ms;
	unsigned lines, dropped;
};
/* May this line be logged now?  *suppressed is set to the count of lines
 * dropped in the window that just ended (0: nothing to report). */
bool spawn_rate_take(struct spawn_rate *r, int64_t now_ms, unsigned *suppressed);

#endif
