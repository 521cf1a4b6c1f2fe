/* worker: the body of a forked worker process.  Owns the process's Redis
 * connection, heartbeat and channel to the master (pause/resume/log level
 * in, registration out), and runs the pool's work loop on top of them. */
#ifndef SV_WORKER_H
#define SV_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "chan.h"
#include "heartbeat.h"
#include "rconn.h"
#include "sv_config.h"
#include "util.h"

struct worker_args {
	const struct sv_config *cfg;
	const struct pool_config *pool;
	int slot;
	int chan_fd;       /* socketpair end shared with the master */
	bool unclean;      /* the predecessor of this slot exited uncleanly */
	pid_t prev_pid;    /* that predecessor, whose fence we may take over */
	int64_t restarts;
	bool paused;       /* start paused (the operator paused the slot) */
	pid_t master_pid;
};

struct consumer;
struct consumer_batch;

/* A worker kind, plugged into the consumer loop (consumer.h).  batch()
 * decides a verdict for each entry; it returns 0, or -EAGAIN when the work
 * could not be made durable (SQLite busy, full): then the whole batch is
 * retried later, with the worker degraded, its entries renewed and nothing
 * acked.  start() runs once after the groups exist; it returns 0 or a
 * negative errno: -EINVAL (the setup is wrong: exit 78), anything else
 * exits 1 (transient). */
struct consumer_kind {
	int (*start)(void *ctx, struct consumer *c);
	/* Optional: periodic housekeeping when a read found nothing. */
	void (*idle)(void *ctx, struct consumer *c);
	int (*batch)(void *ctx, struct consumer *c, struct consumer_batch *b);
	void *ctx;
};

struct worker {
	const struct worker_args *args;
	const struct sv_config *cfg;
	const struct pool_config *pool;
	struct rconn rc;
	struct heartbeat hb;
	struct chan_reader chan;
	bool paused;
	bool master_gone;
	bool fence_reported;
	struct consumer *consumer;   /* NULL for a kind without stream work */
	struct consumer_kind kind;
};

/* Set by SIGTERM/SIGINT (and PDEATHSIG): finish the entry in hand, exit. */
extern volatile sig_atomic_t worker_stop;

/* Runs in the child after fork; returns the process exit status
 * (0 asked to stop, 1 transient, 78 configuration). */
int worker_main(const struct worker_args *args);

/* Send one message to the master over the channel (chan.h). */
void worker_tell_master(struct worker *w, enum chan_type type, const void *payload, size_t len);
/* Read and apply what the master sent (non-blocking). */
void worker_poll_master(struct worker *w);
/* Wait up to ms for the master's channel or a signal; applies messages. */
void worker_wait(struct worker *w, int64_t ms);
/* Keep the heartbeat going while waiting/working outside the consumer
 * loop's pipelined reads (e.g. while a tool runs or SQLite is retried).
 * Returns 0, -ENOTCONN (dropped) or -EPERM (fence lost): heartbeat.h. */
int worker_beat_if_due(struct worker *w);

#endif
