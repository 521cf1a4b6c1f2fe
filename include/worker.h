/* worker: the body of a forked worker process.  Owns the process's Redis
 * connection, heartbeat and channel to the master (pause/resume/log level
 * in; registration, progress and tool process groups out), and runs the
 * pool's kind (worker_persist.h, worker_tool.h) in the consumer loop
 * (consumer.h), lending both of them these services through a struct
 * consumer_host.  Nothing below the worker calls back into it. */
#ifndef SV_WORKER_H
#define SV_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sv_config.h"

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

/* Runs in the child after fork; returns the process exit status
 * (0 asked to stop, 1 transient, 78 configuration). */
int worker_main(const struct worker_args *args);

#endif
