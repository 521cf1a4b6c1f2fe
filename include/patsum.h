/* patsum: one summary row per pattern and group over the streams a
 * pattern matches (issue 11): streams matched, active (lag > 0 or pending
 * > 0), total lag, total pending, the oldest pending entry's idle time,
 * and the streams lacking the group.  Nothing here prints one row per
 * stream: 10,000 run streams are two rows.
 *
 * Two users.  `streamvisorctl pending` (admin.c) sums on demand with
 * patsum_batch.  status and metrics get their rows from the monitor's
 * paced walker (struct patsum): it walks the streams discovery knows in
 * pipelined batches of XINFO GROUPS (plus one XPENDING for each group with
 * entries pending), at most PATSUM_KEYS_PER_S stream keys a second over
 * all patterns, so 10,000 streams cost Redis ~0.3% of a core and a pass
 * takes 20 s; a small set is walked again every period_ms (the heartbeat
 * interval, between PATSUM_PERIOD_MIN_MS and PATSUM_PERIOD_MAX_MS).  One
 * step sums at most PATSUM_STEP_KEYS keys, so the monitor's loop never
 * waits on it for long.  A pattern's row is published when its walk ends
 * and goes to the master with each heartbeat report, with its age. */
#ifndef SV_PATSUM_H
#define SV_PATSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "discover.h"
#include "rconn.h"
#include "sv_config.h"

#define PATSUM_KEYS_PER_S 500
#define PATSUM_STEP_KEYS 50
#define PATSUM_PERIOD_MIN_MS 1000
#define PATSUM_PERIOD_MAX_MS 10000

/* The figures of one group over a pattern's streams. */
struct patsum_fig {
	json_int_t active, lag, pending, missing, oldest_idle_ms;
};

/* Each distinct pattern of cfg's pools: {pattern: [distinct groups of the
 * pools reading it]}, in configuration order. */
json_t *patsum_configured(const struct sv_config *cfg);

/* Sum streams [from, to) of k into sums (one per group of groups, a JSON
 * array of strings), pipelined.  Returns 0, or -ENOTCONN when the
 * connection dropped (rconn logged it). */
int patsum_batch(struct rconn *rc, const struct disc_known *k, size_t from, size_t to, const json_t *groups,
		 struct patsum_fig *sums);

/* One row as `pending`, status and metrics show it. */
json_t *patsum_row(const char *pattern, const char *group, size_t matched, const struct patsum_fig *f);

/* ---- the monitor's paced walker ---- */

struct patsum_pat {
	const char *pattern;      /* a key of struct patsum.conf */
	const json_t *groups;     /* its value */
	size_t ng;
	struct patsum_fig *cur;   /* this pass, so far */
	struct patsum_fig *done;  /* the last complete walk */
	size_t done_matched;
	int64_t done_ms;          /* when it completed (monotonic); 0: never */
};

struct patsum {
	json_t *conf;             /* patsum_configured() */
	struct patsum_pat *p;
	size_t np;
	int64_t period_ms;
	bool in_pass;
	size_t at;                /* the pattern being walked */
	char *after;              /* the last name summed in it; NULL: from its start */
	int64_t pass_start_ms, next_ms;
};

/* Returns 0 (a configuration without patterns makes an idle walker). */
int patsum_init(struct patsum *ps, const struct sv_config *cfg);
void patsum_free(struct patsum *ps);
/* Sum the next batch when due, with rc connected; d says which streams
 * each pattern matches now (the walk resumes after the last name summed,
 * so names coming and going between steps do no harm).  A dropped
 * connection abandons the pass (the published rows stay, ageing). */
void patsum_step(struct patsum *ps, struct rconn *rc, const struct discover *d, int64_t now_ms);
/* Milliseconds until patsum_step has something to do (0: now; INT64_MAX:
 * no patterns). */
int64_t patsum_wait_ms(const struct patsum *ps, int64_t now_ms);
/* The published rows (patsum_row plus "age_ms"), for the heartbeat
 * report: a pattern not walked completely yet has none. */
json_t *patsum_rows(const struct patsum *ps, int64_t now_ms);

#endif
