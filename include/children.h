/* children: the master's proc layer, after relayd's proc.c.  Every process
 * the master forks (a worker, the monitor) is one struct child, registered
 * once: it owns the child's channel (chan.h) and stderr pipe as dispatch
 * files, a bounded output queue towards the child, and the child's pid.
 * Messages are checked on receipt (chan.h's table, then the owner's own
 * check); a child that breaks the protocol or lets its output queue
 * overflow is logged once and SIGKILLed, and its exit is reported as a
 * violation so the owner restarts it as a failed child.
 *
 * The master is a child subreaper (PR_SET_CHILD_SUBREAPER): every process
 * descended from it that loses its parent is re-parented to the master,
 * never to init.  Any such process that is not a registered child (a tool
 * whose worker died, a background process a tool left behind, a daemon a
 * handler double-forked) is killed with SIGKILL, with its process group
 * when it leads one, and reaped.  That is decided from what the kernel
 * says (/proc), never from what a child claims: no process outlives the
 * worker that started it.
 *
 * Children get the master's original RLIMIT_NOFILE soft limit back (the
 * master raises its own to the hard limit), so tools using select() keep
 * working. */
#ifndef SV_CHILDREN_H
#define SV_CHILDREN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "chan.h"
#include "dispatch.h"

struct children;
struct child;

/* Bytes kept of a child's error line (child_ops.error_line), NUL included. */
#define CHILD_ERROR_MAX 256

struct child_ops {
	/* A message that passed chan.h's checks.  Return 0, or -EPROTO with
	 * why filled when it is impossible for this child (the child is then
	 * killed as a violator). */
	int (*message)(void *owner, const struct chan_msg *m, char *why, size_t whylen);
	/* The process was reaped, after its channel and stderr were drained.
	 * code: exit status, or -signal.  violated: the master killed it for
	 * breaking the protocol.  The child object is freed after this. */
	void (*exited)(void *owner, int code, bool violated);
	/* Optional: the child logged a line at error level; msg is its
	 * message, at most CHILD_ERROR_MAX - 1 bytes, without control
	 * characters (log_relay).  Called before exited for the last ones. */
	void (*error_line)(void *owner, const char *msg);
};

/* In the child, before body: e.g. the privilege drop.  Returns 0 or
 * -errno (the child then exits 78). */
typedef int (*children_setup_fn)(void *ctx);

struct child_spec {
	const char *name;          /* for the master's log: "worker t1/tools/3" */
	const char *log_proc;      /* proc= of the child's relayed stderr lines */
	enum chan_peer peer;       /* what the child may send */
	size_t outq_max;           /* bytes that may wait towards the child */
	/* Runs in the child after fork, with fds 0-2 set up, every other fd
	 * closed but chan, and the original RLIMIT_NOFILE; returns the exit
	 * status. */
	int (*body)(void *arg, int chan);
	void *arg;
	const struct child_ops *ops;
	void *owner;
	/* Optional: more fds the child keeps open (the web child's listening
	 * sockets), and a setup of its own instead of the children's one. */
	const int *keep_fds;
	size_t nkeep;
	children_setup_fn setup;
	void *setup_ctx;
};

/* Make the master a subreaper and remember the limits to give children.
 * Returns 0 or -errno (logged). */
int children_new(struct children **out, struct dispatch *d, const struct rlimit *child_nofile,
		 children_setup_fn setup, void *setup_ctx);
void children_free(struct children *ch);

/* Fork a child.  Returns its pid, or -errno (logged). */
pid_t child_spawn(struct children *ch, const struct child_spec *spec, struct child **out);
pid_t child_pid(const struct child *c);
/* Queue one message; -ENOBUFS when the child's queue is full (the child
 * is then killed as a violator: it stopped reading), -EPIPE when its
 * channel is closed. */
int child_send(struct child *c, uint16_t type, const void *payload, size_t len);
int child_signal(struct child *c, int sig);
/* Stop the child for a protocol violation: logged once, SIGKILL. */
void child_violation(struct child *c, const char *why);
/* Is pid a process of this child's own making, as the kernel tells it:
 * its parent is the child and it leads its own process group?  0 yes,
 * -ENOENT gone already, -EPERM no. */
int child_owns_process(const struct child *c, pid_t pid);

/* On SIGCHLD: reap every exited process (registered children get their
 * exited callback), then kill the orphans. */
void children_reap(struct children *ch);
/* Kill processes re-parented to the master that are not registered
 * children (also run periodically: a re-parent sends no signal).
 * Returns how many were killed. */
int children_kill_orphans(struct children *ch);
size_t children_count(const struct children *ch);
/* File descriptors one child costs the master while it runs. */
#define CHILD_FDS 2

#endif
