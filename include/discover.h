/* discover: finding the streams that match the configured patterns
 * (issue 11), once per node, in the monitor.
 *
 * What: for each distinct pattern of the configured pools, a
 * cursor-following `SCAN cursor MATCH pattern TYPE stream COUNT 1000`,
 * spread so that one full pass takes about the smallest discover_ms of the
 * pools using the pattern (longer on a huge keyspace: at most one SCAN call
 * per pattern every DISCOVER_SCAN_GAP_MS, a bounded number per loop turn).
 * Each pattern keeps the set of names it knows; a name seen for the first
 * time is reported as "add"; a known name not seen in a completed pass and
 * confirmed missing by EXISTS is reported as "remove".  When the server
 * already publishes keyspace events for streams (CONFIG GET
 * notify-keyspace-events has K and t or A; we never CONFIG SET), a second
 * connection PSUBSCRIBEs __keyspace@DB__:PATTERN and adds a name at its
 * first stream event, removes it at del/expired/evicted, so a new stream is
 * found at once instead of at the next pass; then the SCAN passes slow
 * down to a safety net (DISCOVER_NOTIFY_*).  An xadd on a known stream
 * after a quiet spell of half the pools' idle_ms is reported as "wake": the
 * workers may have let it leave their active read set (consumer.h).  Changes go to the master as
 * CHAN_MON_STREAMS messages, split so that none passes DISCOVER_MSG_BUDGET.
 *
 * Why here: the monitor is one process per node with a Redis connection of
 * its own; discovery in every worker would multiply the SCAN load. */
#ifndef SV_DISCOVER_H
#define SV_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rconn.h"
#include "sv_config.h"

#define DISCOVER_SCAN_COUNT "1000"
#define DISCOVER_SCAN_GAP_MS 10      /* at most 100 SCAN calls a second per pattern */
#define DISCOVER_CALLS_PER_TURN 4    /* per pattern and loop turn */
#define DISCOVER_NOTIFY_CHECK_MS 30000
/* With keyspace notifications on, new streams are found at their first
 * event and SCAN is only a safety net: at most one call per
 * DISCOVER_NOTIFY_SCAN_GAP_MS and a pass at most every
 * DISCOVER_NOTIFY_PASS_MS.  A SCAN call of COUNT 1000 with MATCH and TYPE
 * costs Redis ~0.65-1 ms, so a keyspace of 1,000,000 keys costs ~0.1% of
 * a core instead of the 6.5% of a paced pass at 100 calls a second (the
 * first pass after a start or a new subscription runs at that pace: it
 * finds the streams that exist already). */
#define DISCOVER_NOTIFY_SCAN_GAP_MS 1000
#define DISCOVER_NOTIFY_PASS_MS 60000
/* JSON bytes of one CHAN_MON_STREAMS message at most (names are counted
 * at their worst-case escaped size), so the master can relay a message as
 * one CHAN_M_STREAMS (CHAN_MON_OP_MAX) too. */
#define DISCOVER_MSG_BUDGET (4u << 20)

/* ---- pure logic (unit-tested): the known set of one pattern ---- */

struct disc_name {
	char *name;
	bool seen;    /* in the current pass */
	int64_t last_add_ms;  /* monotonic: its last xadd notification, 0 none */
};

/* Sorted by name (strcmp); binary search. */
struct disc_known {
	struct disc_name *v;
	size_t n, cap;
};

void disc_known_free(struct disc_known *k);
/* Index of name, or -1. */
long disc_known_find(const struct disc_known *k, const char *name);
/* Index of the first name sorting after `after` (NULL: 0): where a walk
 * over k resumes, unmoved by names added or dropped meanwhile. */
size_t disc_known_after(const struct disc_known *k, const char *after);
/* A pass starts: nothing seen yet. */
void disc_known_pass_begin(struct disc_known *k);
/* name was seen (SCAN or a notification): 1 when it is new (now known),
 * 0 when known already; either way it counts as seen in this pass. */
int disc_known_seen(struct disc_known *k, const char *name);
/* Drop name: 1 when it was known, 0 otherwise. */
int disc_known_remove(struct disc_known *k, const char *name);
/* The pass completed: the known names not seen in it (a JSON array of
 * strings, the candidates for removal; the caller checks them). */
json_t *disc_known_unseen(const struct disc_known *k);

/* Worst-case JSON size of name as an array element ("\u00XX" per byte,
 * quotes and a comma). */
size_t disc_json_cost(size_t len);

/* ---- the discoverer ---- */

struct disc_pattern {
	char *pattern;
	int64_t period_ms;        /* smallest discover_ms of the pools using it */
	struct disc_known known;
	char cursor[32];          /* "0" between passes */
	bool in_pass;
	int64_t pass_start_ms, next_call_ms;
	unsigned calls, prev_calls;
	int64_t wake_after_ms;    /* half the smallest idle_ms of its pools */
	json_t *add, *remove, *wake; /* to report */
	bool logged;              /* first completed pass logged at info */
	bool warned_slow;         /* a pass took far longer than period_ms */
	bool full_pace;           /* this pass at discover_ms pace even with
				   * notifications (the first after a start or
				   * a new subscription) */
	size_t logged_n;          /* the count last logged */
};

typedef void (*discover_emit_fn)(void *ctx, json_t *msg);

struct discover {
	const struct sv_config *cfg;
	struct disc_pattern *p;
	size_t np;
	discover_emit_fn emit;
	void *ctx;
	/* keyspace notifications */
	struct rconn sub;
	bool notify_on;           /* the server publishes what we need */
	int64_t next_notify_check_ms;
	char prefix[48];          /* "__keyspace@DB__:" */
	unsigned bad_names;
};

/* Patterns of cfg's pools (distinct).  emit gets each CHAN_MON_STREAMS
 * message (a reference it owns).  Returns 0 or -ENOMEM. */
int discover_init(struct discover *d, const struct sv_config *cfg, discover_emit_fn emit, void *ctx);
void discover_free(struct discover *d);
/* Run what is due with rc (the monitor's connection, connected): SCAN
 * steps, removals' EXISTS checks, the notification check, then report. */
void discover_step(struct discover *d, struct rconn *rc, int64_t now_ms);
/* Milliseconds until discover_step has something to do (0: now). */
int64_t discover_wait_ms(const struct discover *d, int64_t now_ms);
/* The notification connection's fd to poll for input, or -1. */
int discover_fd(const struct discover *d);
/* The fd is readable: take what arrived (never blocks). */
void discover_read(struct discover *d);
/* Read-only: the streams known for pattern (sorted by name), or NULL
 * when pattern is not one of d's.  Valid until the next discover_step or
 * discover_read. */
const struct disc_known *discover_known(const struct discover *d, const char *pattern);

#endif
