/* master_int: master internals shared by master.c, master_cmd.c and
 * master_monitor.c: the supervisor's state and what each part calls in
 * the others. */
#ifndef SV_MASTER_INT_H
#define SV_MASTER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <jansson.h>

#include "chan.h"
#include "children.h"
#include "control.h"
#include "dispatch.h"
#include "heartbeat.h"
#include "proc.h"
#include "sv_config.h"
#include "util.h"

/* Bytes the master lets wait towards one child before it judges the
 * child stuck: workers get a few small messages; the monitor gets control
 * calls and heartbeat field removals for a whole fleet. */
#define WORKER_OUTQ_MAX (1u << 20)
#define MONITOR_OUTQ_MAX (64u << 20)
/* File descriptors the master keeps besides its children's: the control
 * socket and its clients, the signalfd, epoll, the log, metrics. */
#define MASTER_FD_RESERVE 128
/* Per pattern summary rows one beats report may carry (one per pattern
 * and group of the configuration). */
#define MASTER_PATTERN_ROWS_MAX 4096u

struct pool;

/* Counters of processes gone, so totals never go backwards. */
struct counters {
	uint64_t processed, failed, dead_lettered, lost;
	uint64_t forgotten, conflicts, reruns; /* run lifecycle (heartbeat.h) */
	uint64_t batch_hist[HB_HIST_N];
	uint64_t batch_sum_us;
};

/* One worker slot: NODE/POOL/SLOT, whichever process currently runs it.
 * It keeps its own copy of everything status, metrics and the state
 * machine need, so it outlives its pool's configuration (a removed pool's
 * busy worker finishing its call). */
struct slot {
	struct pool *pool;
	int index;
	char name[256];       /* NODE/POOL/SLOT: the consumer name */
	char proc_name[256];  /* POOL/SLOT: the log's proc= */
	enum pool_kind kind;
	struct proc proc;
	enum proc_state announced;
	pid_t pid;
	struct child *child;  /* the running process, or NULL */
	bool registered;
	bool fence_wait;      /* another live process holds our consumer name */
	bool paused;
	bool unclean_prev;
	pid_t prev_pid;
	int64_t restarts;     /* restarts after a crash or hang */
	uint64_t spawns;
	int64_t started_mono, started_wall;
	int64_t beat_ms, beat_change_mono;
	json_t *hb;           /* the last heartbeat seen from this pid */
	struct counters carry;
	int64_t pending;
	pid_t tool_pid;       /* the worker's tool, as the master verified it */
	int last_code;        /* last exit: status, or -signal */
	bool have_exit;
	char last_exit[64];
	char error_line[CHILD_ERROR_MAX]; /* the process's last error-level log line */
};

struct pool {
	const struct pool_config *cfg; /* NULL once removed: never read it then */
	char name[128];
	enum pool_kind kind;
	struct slot **slots;
	size_t nslots;
	int64_t want;         /* desired size: config count, or `scale` */
	bool removed;         /* gone from the config: retire, then free (or revived
			       * when a reload adds it back first) */
	struct counters carry; /* of slots retired */
};

/* A control request waiting for workers to settle (start/stop/restart). */
struct pending_op {
	struct pending_op *next;
	struct control_client *client;
	enum { OP_START, OP_STOP } want;
	json_t *names;
	int64_t deadline;
};

/* A control request forwarded to the monitor (pending, dead, drain). */
struct monitor_call {
	struct monitor_call *next;
	struct control_client *client;
	json_int_t id;
};

struct master {
	struct sv_config *cfg;
	char *config_path;
	struct proc_policy policy;
	struct pool **pools;
	size_t npools;
	struct dispatch *d;
	struct children *children;
	int sigfd;
	struct dispatch_file sig_file;
	struct control *ctl;
	pid_t self;
	struct rlimit nofile_orig;  /* what children get back */
	rlim_t nofile;              /* the master's own (raised) soft limit */
	int64_t next_orphan_scan;

	pid_t monitor_pid;
	struct child *monitor;
	int64_t monitor_respawn_at;
	bool monitor_stop_sent;
	int64_t monitor_kill_at;

	bool redis_ok;
	int64_t redis_back_mono;
	int64_t last_report_mono;
	json_t *remote;

	bool shutting_down;
	bool ready_sent;
	int64_t ready_deadline;
	int64_t next_watchdog;
	int64_t next_status_notify;
	struct pending_op *ops;
	struct monitor_call *calls;
	json_int_t next_call_id;
	json_t *groups;       /* stream/group figures from the monitor */
	json_t *pattern_rows; /* checked per pattern summaries, master_monitor_check_patterns */
	json_t *dead_letters; /* {stream: depth} of literal streams, master_monitor_check_dead */
	json_t *tool_carry;   /* per tool counters of processes gone (master_tools_add_hb) */
	json_t *warned_fields; /* NS:workers fields already logged as bad */
	json_t *pattern_streams; /* {pattern: {name: true}}: discovered streams */
	bool warned_streams;  /* a bad CHAN_MON_STREAMS name was logged */
	struct master_web *web;  /* the web child and its listeners (master_web.c) */
};

extern struct master *master_instance; /* for the children: keep memory reachable */

#define FOREACH_SLOT(m, s)                                                        \
	for (size_t _pi = 0; _pi < (m)->npools; _pi++)                            \
		for (size_t _si = 0; _si < (m)->pools[_pi]->nslots; _si++)        \
			for (struct slot *s = (m)->pools[_pi]->slots[_si]; s; s = NULL)

/* master.c: helpers, slot and pool lifecycle, reload, shutdown. */
int64_t master_min_deadline(int64_t a, int64_t b);
void master_counters_add_hb(struct counters *c, const json_t *hb);
void master_counters_add(struct counters *c, const struct counters *o);
/* Add a checked heartbeat's per tool counters ("tools") into acc,
 * {TOOL: {"calls", "errors", "timeouts", "redispatches", "sum_us",
 * "hist": [HB_TOOL_HIST_N]}}. */
void master_tools_add_hb(json_t *acc, const json_t *hb);
struct pool *master_find_pool(struct master *m, const char *name);
void master_slot_act(struct master *m, struct slot *s, enum proc_action act);
void master_slot_send(struct slot *s, enum chan_type type, const void *payload, size_t len);
/* Does a fleet of nworkers fit in the master's RLIMIT_NOFILE?  0, or
 * -EMFILE with the reason in why. */
int master_fds_check(const struct master *m, int64_t nworkers, char *why, size_t whylen);
int64_t master_workers_wanted(const struct master *m, const struct pool *except, int64_t except_count);
void master_pool_resize(struct master *m, struct pool *p);
json_t *master_reload(struct master *m);
void master_begin_shutdown(struct master *m, const char *why);

/* master_web.c: the web child (console, JSON API, /metrics; issue 15).
 * open binds the listeners (start-up: an error is fatal); the rest keep
 * the child running, answer its requests and restart it on reload when a
 * listener, TLS or its user changed. */
int master_web_open(struct master *m);
void master_web_timers(struct master *m, int64_t now);
int64_t master_web_deadline(const struct master *m);
void master_web_reload(struct master *m, const struct sv_config *old);
/* At shutdown: stop the child; true once it is gone. */
bool master_web_stopped(struct master *m, int64_t now);
void master_web_free(struct master *m);
json_t *master_web_status(const struct master *m);
/* master_cmd.c: the `state` view (metrics' input plus status and the
 * configured pools), what the web child shows. */
json_t *master_cmd_state(struct master *m);

/* master_monitor.c: the link to the monitor child. */
void master_monitor_send(struct master *m, json_t *op);
void master_monitor_hdel(struct master *m, const char *name);
void master_monitor_spawn(struct master *m);
void master_monitor_restart(struct master *m);
void master_monitor_redis_health(struct master *m, bool ok, const char *why);
/* The per-worker late flag.  A healthy worker beats at least every
 * interval while idle and blocked, and within 1.5 intervals once a flow
 * of entries stops (consumer.c beat_now); late means the monitor's last
 * read of the registry found its beat older than that plus a quarter
 * interval for scheduling and round trips (master_late_ms: 1.75
 * intervals).  So a stopped worker is flagged at the first read after
 * that: within 2.75 intervals of its last beat. */
int64_t master_late_ms(const struct sv_config *cfg);
bool master_slot_late(const struct master *m, const struct slot *s);
void master_monitor_calls_answer(struct master *m, json_int_t id, json_t *reply);
/* Check one heartbeat relayed from Redis (any client can write NS:workers):
 * returns a clean copy with only well-typed known fields, or NULL with the
 * reason in why.  Per tool counters ("tools") are kept only when they
 * name distinct tools of cfg (NULL: never). */
json_t *master_monitor_check_beat(const struct sv_config *cfg, const json_t *hb, char *why, size_t whylen);
/* Check the dead-letter depths of a beats report ({STREAM: count}):
 * 0 and *out (the streams cfg reads literally; others dropped, the
 * monitor may run the configuration before a reload), or -EPROTO with
 * the reason in why when it is not an object of non-negative integers. */
int master_monitor_check_dead(const struct sv_config *cfg, const json_t *dead, json_t **out, char *why,
			      size_t whylen);
/* Check the per pattern summary rows of a beats report (patsum.c):
 * 0 and *out (the rows of pattern and group pairs cfg configures, each
 * with "taken_mono" instead of "age_ms"), or -EPROTO with the reason in
 * why when rows is not an array of at most MASTER_PATTERN_ROWS_MAX
 * well-typed rows, each pair once. */
int master_monitor_check_patterns(const struct sv_config *cfg, const json_t *rows, int64_t now_mono,
				  json_t **out, char *why, size_t whylen);
/* Pattern streams (issue 11): a newly registered worker gets every stream
 * known for its pool's patterns; a reload forgets patterns no longer
 * configured. */
void master_streams_send_all(struct master *m, struct slot *s);
void master_streams_prune(struct master *m);

/* master_cmd.c: the control-socket commands. */
void master_cmd_ops_check(struct master *m, int64_t now);
int64_t master_cmd_ops_deadline(struct master *m);
void master_cmd_on_request(void *ctx, struct control_client *c, json_t *req);

#endif
