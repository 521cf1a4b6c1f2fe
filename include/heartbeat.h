/* heartbeat: a worker's registration, heartbeat and fencing key in Redis.
 * The heartbeat is a JSON value in the hash NS:workers under the consumer
 * name; the fencing key NS:consumer:NAME = "pid:incarnation" proves which
 * process owns that name, and is renewed with each beat (TTL timeout_ms). */
#ifndef SV_HEARTBEAT_H
#define SV_HEARTBEAT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rconn.h"
#include "sv_config.h"

/* Upper bounds (ms) of the batch processing time histogram; one more
 * bucket counts everything above the last. */
#define HB_HIST_BOUNDS {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500}
#define HB_HIST_N 12

/* HB_STANDBY: a persistence worker waiting for its SQLite file's writer
 * lease (issue 14): alive, connected, reading nothing. */
enum hb_status { HB_STARTING = 0, HB_IDLE, HB_BUSY, HB_PAUSED, HB_STOPPING, HB_DEGRADED, HB_STANDBY };

/* Where a persistence worker's time goes (issue 14), cumulative
 * microseconds per activity, for svbench: waiting for Redis replies of
 * round trips that carried entries or acks, decoding entries, the reducer,
 * event INSERTs, snapshot writes + COMMIT, acks. */
enum hb_split { HB_SPLIT_REDIS, HB_SPLIT_DECODE, HB_SPLIT_REDUCE, HB_SPLIT_INSERT,
		HB_SPLIT_COMMIT, HB_SPLIT_ACK, HB_SPLIT_N };

/* Tool calls in hand, shown in the heartbeat as "calls" (the one running
 * first, then those of the batch waiting for it), at most HB_CALLS_MAX,
 * and "calls_more" for the rest.  Texts are valid UTF-8 (the tool kind
 * sanitizes them), at most HB_CALL_TEXT_MAX - 1 bytes: a longer run or
 * call id is cut and ends in "...". */
#define HB_CALLS_MAX 8
#define HB_CALL_TEXT_MAX 132
struct hb_call {
	char run[HB_CALL_TEXT_MAX], call_id[HB_CALL_TEXT_MAX], tool[HB_CALL_TEXT_MAX];
	char entry[64];           /* the tool.call's entry id */
	bool running;             /* else waiting in the batch */
};

/* A tool worker's persistent handlers (handler.h's handler_status), shown
 * in the heartbeat as "handlers", at most HB_HANDLERS_MAX; texts as for
 * calls (sanitized, cut with "...").  state is a handler_state_name(). */
#define HB_HANDLERS_MAX 8
#define HB_HANDLER_ERROR_MAX 160
#define HB_HANDLER_STATES {"down", "starting", "ready", "backoff", "failed", "stopping", "stopped"}
struct hb_handler {
	char tool[HB_CALL_TEXT_MAX];
	pid_t pid;                /* 0: none */
	char state[16];
	bool draining;
	uint64_t inflight, served, restarts;
	char last_error[HB_HANDLER_ERROR_MAX];
};

/* Per tool counters of a tool worker, both modes, shown as "tools": one
 * entry per tool its pool serves that counted a call (bounded by the
 * configuration's tools, and to HB_TOOLS_BUDGET bytes of text: the
 * tools past it are not reported).
 * Call durations in ms buckets, one more above the last. */
#define HB_TOOL_HIST_BOUNDS {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}
#define HB_TOOL_HIST_N 16
#define HB_TOOLS_BUDGET (24u * 1024)
struct hb_tool {
	const char *name;         /* the configuration's tool name */
	uint64_t calls, errors, timeouts, redispatches;
	uint64_t hist[HB_TOOL_HIST_N];
	uint64_t sum_us;
};
enum hb_tool_result { HB_TOOL_OK = 0, HB_TOOL_ERROR, HB_TOOL_TIMEOUT };

struct heartbeat {
	char name[256];           /* NODE/POOL/SLOT */
	char workers_key[128];    /* NS:workers */
	char fence_key[384];      /* NS:consumer:NAME */
	char incarn_key[128];     /* NS:incarnations */
	char fence_val[64];       /* "pid:incarnation" */
	char takeover[32];        /* "pid:" of the predecessor the master reaped, or "" */
	const char *pool, *kind, *node;
	int slot;
	pid_t pid;
	int64_t incarnation;      /* 0 until registered */
	int64_t started_ms;       /* wall clock */
	int64_t interval_ms, timeout_ms;
	int64_t last_beat_mono;   /* when the last beat was written */
	bool registered;          /* holds the fence and wrote the field */

	enum hb_status status;
	uint64_t processed, failed, dead_lettered, lost;
	/* run lifecycle: entries of forgotten runs acked unstored, conflicting
	 * duplicates dead-lettered, tool re-runs (a second output, or a call
	 * run again after its first delivery) */
	uint64_t forgotten, conflicts, reruns;
	uint64_t batch_hist[HB_HIST_N]; /* batches by processing time */
	uint64_t batch_sum_us;
	int64_t restarts;
	char current[64];         /* entry id in hand or "" */
	struct hb_call calls[HB_CALLS_MAX];
	size_t ncalls;
	uint64_t calls_more;      /* calls in hand beyond calls[] */
	char last_error[256];
	int64_t redis_rtt_us;
	pid_t tool_pgid;
	int64_t client_id;        /* the connection's CLIENT ID (rconn), 0 unknown */
	int64_t streams;          /* streams in the consumer's set (literal and pattern) */
	int64_t active;           /* of them, in the active read set (issue 11) */
	struct hb_handler handlers[HB_HANDLERS_MAX];
	size_t nhandlers;
	struct hb_tool *tools;    /* heartbeat_tools_init; NULL for other kinds */
	size_t ntools;
	uint64_t split_us[HB_SPLIT_N]; /* persistence workers: enum hb_split */
	uint64_t cpu_us;          /* the process's CPU (user + sys) at the last beat */
};

const char *heartbeat_status_name(enum hb_status s);

void heartbeat_init(struct heartbeat *hb, const struct sv_config *cfg, const char *pool,
		    const char *kind, int slot, int64_t restarts, pid_t prev_pid);
/* Errors follow the tree's convention (negative errno):
 *   -ENOTCONN  the connection dropped (logged by rconn_drop): reconnect;
 *   -EPERM     the fence was lost: another process owns the name (logged
 *              here): stop using the name;
 *   -EPROTO    Redis answered with an error where a value was needed.
 *
 * Take a new incarnation number (first call only), acquire the fencing key
 * and write the field.  Returns 1 when registered, 0 when another live
 * process holds the name (try again later), or a negative errno. */
int heartbeat_register(struct heartbeat *hb, struct rconn *rc);
/* Is a beat due (interval elapsed)? */
bool heartbeat_due(const struct heartbeat *hb, int64_t now_mono);
int64_t heartbeat_next_ms(const struct heartbeat *hb, int64_t now_mono);
/* Append the HSET and the fence renewal to the connection's output buffer
 * (pipelined with whatever the caller sends next); returns the number of
 * replies the caller must pass to heartbeat_replies, or 0 when not
 * registered. */
int heartbeat_append(struct heartbeat *hb, struct rconn *rc);
/* Consume those replies.  Returns 0, -ENOTCONN when the connection
 * dropped, or -EPERM when the fence was lost (another process owns the
 * name: exit); a drop after a lost fence reports -ENOTCONN. */
int heartbeat_replies(struct heartbeat *hb, struct rconn *rc, int n);
/* A tool worker: one hb_tool per tool of cfg that pool serves. */
void heartbeat_tools_init(struct heartbeat *hb, const struct sv_config *cfg, const struct pool_config *pool);
/* Count one finished call of tool name (a tool not served: ignored); a
 * timeout is an error too. */
void heartbeat_tool_call(struct heartbeat *hb, const char *name, enum hb_tool_result res, int64_t us);
/* Count one re-dispatch of a call its handler died with. */
void heartbeat_tool_redispatch(struct heartbeat *hb, const char *name);
/* Free what heartbeat_tools_init took. */
void heartbeat_free(struct heartbeat *hb);
/* Count one batch that took us microseconds. */
void heartbeat_observe_batch(struct heartbeat *hb, int64_t us);
/* Beat now (a round trip of its own): 0, -ENOTCONN or -EPERM. */
int heartbeat_beat(struct heartbeat *hb, struct rconn *rc);
/* Keep the heartbeat going while waiting or working outside the consumer
 * loop's pipelined reads (a tool runs, SQLite is retried): beat when due
 * and connected.  0, -ENOTCONN or -EPERM. */
int heartbeat_beat_if_due(struct heartbeat *hb, struct rconn *rc);
/* Clean exit: write status=stopping and release the fence if still ours. */
void heartbeat_release(struct heartbeat *hb, struct rconn *rc);

#endif
