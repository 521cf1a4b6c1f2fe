/* consumer: the Redis Streams consumer loop shared by both worker kinds
 * (SPEC §4): groups created at 0 and re-created when lost, take-over of the
 * consumer's own pending entries (one at a time after an unclean exit, so a
 * poison entry is found alone), blocking reads with the heartbeat and the
 * previous batch's XACKs pipelined in the same round trip, XAUTOCLAIM
 * sweeps, delivery counting and atomic dead-lettering, pause, and degraded
 * retries that renew the entries in hand instead of losing them. */
#ifndef SV_CONSUMER_H
#define SV_CONSUMER_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "worker.h"

enum consumer_verdict {
	CE_UNDECIDED = 0, /* the handler did not say: acked */
	CE_ACK,           /* done: ack it */
	CE_DEAD,          /* move to STREAM:dead with reason (acked atomically) */
	CE_DONE,          /* the handler acked it itself (tool publish script) */
	CE_DROP,          /* no longer ours (claimed by another consumer): leave it */
};

struct consumer_entry {
	struct sv_entry e;
	int64_t deliveries;     /* 1 for entries read with ">" */
	enum consumer_verdict verdict;
	const char *reason;     /* CE_DEAD: static or owned by the handler until it returns */
	char reason_buf[160];
};

struct consumer_batch {
	const char *stream;
	struct consumer_entry *v;
	size_t n;
	bool history;           /* taken over or claimed (not a first delivery) */
};

struct consumer *consumer_new(struct worker *w, const struct consumer_kind *kind);
void consumer_free(struct consumer *c);
/* One round: ensure groups, read (or sweep), hand the batch over, ack.
 * Returns 0 to go on, or an exit status > 0. */
int consumer_step(struct consumer *c);
/* Flush queued acks (clean exit). */
void consumer_finish(struct consumer *c);

/* For kinds: the worker, group, consumer name. */
struct worker *consumer_worker(struct consumer *c);
const char *consumer_group(const struct consumer *c);
const char *consumer_name(const struct consumer *c);
/* Renew the idle time of ids of stream that this consumer still owns (Lua:
 * XPENDING owner check, then XCLAIM ... 0 JUSTID).  Marks owned[i].
 * Returns how many are still owned, or -ENOTCONN when the connection
 * dropped. */
int consumer_renew(struct consumer *c, const char *stream, const char *const *ids, size_t n,
		   bool *owned);
/* Names of consumers of the group on stream (XINFO CONSUMERS); for the
 * foreign-node check.  Returns a redisReply array (free it) or NULL. */
redisReply *consumer_list(struct consumer *c, const char *stream);

#endif
