/* retention: trimming acknowledged stream entries (SPEC §4 step 11), run
 * by the monitor.  One Lua script per stream computes the safe trim point
 * (the oldest entry still pending or undelivered in ANY group of the
 * stream, configured or not, so unprocessed entries always win over a
 * bounded length) and trims with XTRIM MINID only behind it and only
 * entries older than retention.keep_ms.  A stream with a configured group
 * missing is skipped.  Dead-letter streams are trimmed by age.
 *
 * Pattern streams (issue 11) may be deleted outright
 * (retention.delete_idle_streams): see struct retention_idle. */
#ifndef SV_RETENTION_H
#define SV_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rconn.h"
#include "sv_config.h"

struct discover;

/* How often the monitor runs it: keep_ms / 2, clamped to [1 s, 60 s]. */
int64_t retention_period_ms(const struct sv_config *cfg);
/* One pass over every configured stream.  Returns the number of entries
 * trimmed, or -ENOTCONN when the connection dropped. */
long long retention_run(struct rconn *rc, const struct sv_config *cfg);

/* ---- deleting idle pattern streams ----
 *
 * Which groups must read a pattern stream before it may go is kept in
 * Redis, not taken from XINFO GROUPS at one moment: a node that has not
 * read a new stream yet has no group on it.  Every node's monitor SADDs
 * the groups of its pools (count above 0: a pool of count 0 reads
 * nothing) into NS:patterns:PATTERN:groups (at start,
 * after each reconnect, and at every retention period), whatever
 * delete_idle_streams says; nothing ever SREMs them (an operator does,
 * once a node is gone for good).
 *
 * With delete_idle_streams, every retention period a pass walks the
 * streams discovery knows, RETENTION_IDLE_BATCH names per pipelined
 * batch, the batches spread over half the period, one Lua script per
 * stream (idle_script) that DELs it only when it is a stream, its
 * last-generated-id is older than keep_ms, the registry is not empty and
 * every registered group (and every local group of the pattern) is on it
 * with nothing pending and the last entry delivered.  Literal (configured)
 * streams are never deleted. */
#define RETENTION_IDLE_BATCH 200
#define RETENTION_IDLE_GAP_MIN_MS 10  /* between batches: the monitor loop breathes */

struct retention_pat {
	char *pattern;
	char *key;             /* NS:patterns:PATTERN:groups */
	const char **groups;   /* this node's groups reading the pattern */
	size_t ngroups;
};

struct retention_idle {
	const struct sv_config *cfg;
	const struct discover *disc;
	struct retention_pat *p;
	size_t np;
	const char **argv;         /* one script call's arguments */
	char nkeys[16];
	char sha[48];              /* idle_script's SHA1 ("" = not loaded) */
	uint64_t registered_conn;  /* rconn.connects when last registered */
	bool reg_logged;           /* a failed SADD was logged */
	/* the pass */
	bool in_pass;
	size_t pat;                /* the pattern being walked */
	char *after;               /* the last name handled in it (NULL: none) */
	int64_t next_pass_ms, next_batch_ms, gap_ms;
	long long deleted;         /* this pass */
	long long kept[5];         /* this pass: why the others stayed (the
				    * script's codes 0 .. -4, retention.c) */
	long long errors;          /* this pass: error replies (the first logged) */
};

/* Patterns of cfg's pools and their local groups; disc is read (at each
 * step) for the streams it knows.  Returns 0 or -ENOMEM. */
int retention_idle_init(struct retention_idle *ri, const struct sv_config *cfg, const struct discover *disc);
void retention_idle_free(struct retention_idle *ri);
/* rc is connected: register the groups when the connection is new, run
 * what is due of the pass.  Returns 0, or -ENOTCONN / -EPROTO (logged). */
int retention_idle_step(struct retention_idle *ri, struct rconn *rc, int64_t now_ms);
/* Milliseconds until retention_idle_step has something to do. */
int64_t retention_idle_wait_ms(const struct retention_idle *ri, int64_t now_ms);

#endif
