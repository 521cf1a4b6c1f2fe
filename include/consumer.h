/* consumer: the Redis Streams consumer loop shared by both worker kinds
 * (SPEC §4): groups created at 0 and re-created when lost, take-over of the
 * consumer's own pending entries (after an unclean exit: see "Crash
 * recovery" below), blocking reads with the heartbeat and the
 * previous batch's XACKs pipelined in the same round trip, XAUTOCLAIM
 * sweeps, delivery counting and atomic dead-lettering, pause, and degraded
 * retries that renew the entries in hand instead of losing them.
 *
 * Dependencies run one way: worker -> kind -> consumer -> rconn/heartbeat.
 * The consumer knows nothing of the process that runs it: that process
 * (worker.c, or a test) hands it a struct consumer_host at consumer_new,
 * which lends the Redis connection and heartbeat and answers, through
 * callbacks, the few questions the loop asks of its process (wait for news,
 * paused?, stopping?) and passes on what the loop reports (progress, stop).
 * A kind (worker_persist.c, worker_tool.c) plugs its work into the loop
 * through struct consumer_kind and reaches the same host services through
 * consumer_host().
 *
 * Crash recovery (issue 14, which amends SPEC §4 step 3).  After an
 * unclean exit (host->unclean) the own pending entries are not all taken
 * over one at a time: before each history read, the delivery counts of
 * the entries after the cursor are looked at (XPENDING in a script: it
 * delivers nothing), and
 *  - entries on their first redelivery (delivered once: the predecessor
 *    read them with ">" and died holding them) are taken in one batch,
 *    up to the first entry delivered more than once;
 *  - an entry delivered more than once already (a predecessor crashed
 *    while it held it after a take-over) is taken alone, so a poison
 *    entry is found alone on its third delivery at the latest and
 *    dead-lettered after max_deliveries; its batch-mates come one at a
 *    time too (each on its third delivery, within max_deliveries 3);
 *  - with max_deliveries < 3 every entry is taken alone, as SPEC §4 says
 *    (a batch-mate of a poison entry could not afford the batch's
 *    delivery and then one alone).
 * A poison entry still crashes at most max_deliveries times (the batch
 * delivery replaces the first delivery alone), and a batch held at a
 * SIGKILL is stored and acked again in one round of the kind, not in one
 * per entry (bench: tools/bench.sh --crash).  The owner check and the
 * durable delivery count of a history read (claim_range_script) ride in
 * the read's own round trip. */
#ifndef SV_CONSUMER_H
#define SV_CONSUMER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"
#include "heartbeat.h"
#include "rconn.h"
#include "sv_config.h"

/* What the consumer borrows from the process that runs it.  Copied by
 * consumer_new; the pointers must outlive the consumer.  Every callback
 * is required and gets ctx. */
struct consumer_host {
	struct rconn *rc;            /* the process's Redis connection */
	struct heartbeat *hb;        /* its registration: consumer name, status, counters */
	const struct pool_config *pool;
	bool unclean;                /* the predecessor exited uncleanly: own pending
				      * entries are taken over with care (crash
				      * recovery, above) */
	bool warn_redis_config;      /* warn once at start about eviction and
				      * persistence settings (one worker per pool) */
	int wake_fd;                 /* readable when wait(ctx, 0) has news to apply;
				      * for kinds that poll fds of their own; -1: none */
	void *ctx;
	/* Sleep up to ms; return early on news from the supervisor (applied
	 * here: pause, resume, log level) or on a stop request.  With ms 0
	 * it applies only what has already arrived. */
	void (*wait)(void *ctx, int64_t ms);
	bool (*paused)(void *ctx);
	/* A stop was asked (signal, supervisor gone): finish the entry in
	 * hand, then return from consumer_step. */
	bool (*stopping)(void *ctx);
	/* Stopping because the supervisor is gone: work in hand is abandoned
	 * (a tool is killed) rather than finished. */
	bool (*abandon)(void *ctx);
	/* The loop asks its process to stop cleanly: the fence is lost
	 * (another process owns the name) or RSS is over max_rss_mb. */
	void (*stop)(void *ctx);
	/* The first batch was handled: this incarnation works (sent once). */
	void (*progress)(void *ctx);
	/* For kinds: the process group of the work in hand was started
	 * (pgid), or is gone (0). */
	void (*work_group)(void *ctx, pid_t pgid);
};

struct consumer;
struct consumer_batch;

/* A worker kind, plugged into the consumer loop.  batch() decides a
 * verdict for each entry; it returns 0, or -EAGAIN when the work could not
 * be made durable (SQLite busy, full): then the whole batch is retried
 * later, with the worker degraded, its entries renewed and nothing acked.
 * start() runs once after the groups exist; it returns 0 or a negative
 * errno: -EINVAL (the setup is wrong: exit 78), anything else exits 1
 * (transient). */
struct consumer_kind {
	int (*start)(void *ctx, struct consumer *c);
	/* Optional: periodic housekeeping when a read found nothing. */
	void (*idle)(void *ctx, struct consumer *c);
	int (*batch)(void *ctx, struct consumer *c, struct consumer_batch *b);
	/* The three hooks below are optional (all NULL: exec tools,
	 * persistence; the loop is then exactly the one without them).  They
	 * are for a kind that keeps entries in hand (CE_DEFER) and works on
	 * fds of its own while the consumer reads (persistent tools).
	 *
	 * poll_fds: the fds to watch while the consumer waits, at most max
	 * (CONSUMER_POLL_MAX) of them, each with fd and events set (revents
	 * is cleared by the consumer); *deadline_ms (monotonic, util_mono_ms;
	 * INT64_MAX on entry: none) may be lowered to the kind's next
	 * deadline (timeouts, renewals, restarts).  Returns how many.  Called
	 * before every poll() of a wait: while a blocking read is in flight on
	 * the consumer's connection (the XREADGROUP is sent, its reply read
	 * only once the Redis fd is readable), and while capacity() is 0.
	 * Nothing may be sent on the consumer's connection (host->rc) from
	 * these hooks: a read is in flight on it; use a connection of the
	 * kind's own (consumer_renew_on). */
	size_t (*poll_fds)(void *ctx, struct pollfd *fds, size_t max, int64_t *deadline_ms);
	/* poll_fds' fds with their revents, after a poll() in which one of
	 * them fired or the deadline passed (then possibly none fired).  n is
	 * what poll_fds returned.  Also called with fds NULL and n 0 at
	 * least every heartbeat interval while a batch waits in degraded
	 * retry.  May call consumer_settle(). */
	void (*poll_ready)(void *ctx, struct consumer *c, const struct pollfd *fds, size_t n);
	/* How many new entries the kind can take now (its free slots).  The
	 * entries of one round trip (new entries of every read of it, a
	 * history batch, a claim sweep, an idle re-check) never outnumber it:
	 * reads name at most that many keys, with COUNT shared among them.
	 * One exception, documented rather than paid for with a delivery:
	 * with more active streams than free slots, the consumer reads them
	 * in rotation, capacity() keys at a time, and once a whole turn found
	 * nothing it blocks on every active key with COUNT 1 (so an entry on
	 * any of them ends the wait at once); streams that receive an entry
	 * at the very same moment may then bring one entry each, up to
	 * (active streams - free slots) beyond capacity, which the kind keeps
	 * waiting.  (Giving them back would cost a delivery each: Redis has
	 * no "undeliver".)  0: the consumer reads nothing (no new
	 * entries, no history, no claim sweep: those wait until there is
	 * room), and waits in the poll loop (bounded by block_ms and the
	 * heartbeat), sending its acks, heartbeats and settled verdicts, until
	 * there is room, something to settle, or news.  Absent: unbounded. */
	size_t (*capacity)(void *ctx);
	/* Optional, both or neither: commands of the kind's own that ride in
	 * the pipeline of every round trip reading new entries, right after
	 * the reads (so Redis runs them after it served the reads).
	 * rt_append appends them to rc (redisAppendCommand) and returns how
	 * many (at most CONSUMER_RT_MAX); rt_replies gets their replies (all
	 * of them, in order; not called when the connection dropped) before
	 * the round trip's entries are handed over, and must not send on the
	 * consumer's connection.  The replies are freed by the consumer.
	 * (Persistence: its NS:forget read, a round trip per batch saved.) */
	int (*rt_append)(void *ctx, redisContext *rc);
	void (*rt_replies)(void *ctx, redisReply **r, size_t n);
	void *ctx;
};

/* Commands rt_append may append at most. */
#define CONSUMER_RT_MAX 4

/* Fds poll_fds may hand over at most. */
#define CONSUMER_POLL_MAX 256

enum consumer_verdict {
	CE_UNDECIDED = 0, /* the handler did not say: acked */
	CE_ACK,           /* done: ack it */
	CE_DEAD,          /* move to STREAM:dead with reason (acked atomically) */
	CE_DONE,          /* the handler acked it itself (tool publish script) */
	CE_DROP,          /* no longer ours (claimed by another consumer): leave it */
	CE_DEFER,         /* the kind owns it now: it publishes and acks it itself
			   * (tool publish script) or settles it later
			   * (consumer_settle); not acked, not counted, not renewed
			   * by the consumer (the kind renews its own entries:
			   * consumer_renew_on).  A history batch (own pending read
			   * again after a reconnect) may hand over an entry the kind
			   * already holds: it recognises it by stream and id and
			   * answers CE_DEFER again without taking it twice. */
};

struct consumer_entry {
	struct sv_entry e;
	int64_t deliveries;     /* 1 for entries read with ">" */
	enum consumer_verdict verdict;
	const char *reason;     /* CE_DEAD: static or owned by the handler until it returns */
	char reason_buf[160];
	size_t si;              /* the consumer's own: index of e.stream in its set */
};

/* New entries of one read are one batch whatever the number of streams
 * they come from (one SQLite transaction for a read over many per-run
 * streams); each entry says its stream (e.stream).  History batches
 * (taken over, claimed) hold one stream's entries. */
struct consumer_batch {
	const char *stream;     /* the stream of every entry, or NULL when mixed */
	struct consumer_entry *v;
	size_t n;
	bool history;           /* taken over or claimed (not a first delivery) */
	bool counted;           /* the consumer's: delivery counts known, entries renewed */
};

struct consumer *consumer_new(const struct consumer_host *host, const struct consumer_kind *kind);
void consumer_free(struct consumer *c);
/* One round: apply the host's news, ensure groups, read (or sweep), hand
 * the batch over, ack.  Call it once the heartbeat is registered.  Returns
 * 0 to go on, or an exit status > 0 (SV_EX_CONFIG, SV_EX_TRANSIENT). */
int consumer_step(struct consumer *c);
/* Change the stream set (issue 11): pattern streams to read from now on
 * (add) or to drop (remove).  Copied and applied at the start of the next
 * consumer_step, never in the middle of a round.  An added stream gets the
 * group at 0 without MKSTREAM; one whose key is gone is dropped and never
 * re-created.  A literal (configured) stream is never removed.  Returns 0. */
int consumer_streams_update(struct consumer *c, const char *const *add, size_t nadd,
			    const char *const *remove, size_t nremove);
/* New entries were written to these streams of the set (the monitor saw
 * them with keyspace notifications): idle ones are active again at the
 * start of the next consumer_step.  Names not in the set are ignored.
 * Returns 0. */
int consumer_streams_wake(struct consumer *c, const char *const *names, size_t n);
/* Streams in the set now (literal and pattern). */
size_t consumer_stream_count(const struct consumer *c);
/* Of them, in the active read set: literal streams always; a pattern
 * stream from when it is added, gives entries or is woken, until it gave
 * nothing for the pool's idle_ms.  Blocking reads name only these; idle
 * ones are re-checked at the pool's idle_check_rate. */
size_t consumer_active_count(const struct consumer *c);
/* Claim every pending entry of the group on every stream of the set at
 * once (XAUTOCLAIM with min-idle 0, in the next rounds, until each
 * stream's cursor wraps), whoever holds them: for a persistence standby
 * that has just taken its file's writer lease, whose predecessor's
 * entries must not wait claim_idle_ms.  Claimed entries are history
 * batches (owner check, delivery counts).  Only for a group where no
 * other live consumer works (the lease guarantees it). */
void consumer_claim_now(struct consumer *c);
/* Flush queued acks (clean exit). */
void consumer_finish(struct consumer *c);

/* For kinds: the host services, group, consumer name. */
const struct consumer_host *consumer_host(const struct consumer *c);
const char *consumer_group(const struct consumer *c);
const char *consumer_name(const struct consumer *c);
/* Renew the idle time of ids of stream that this consumer still owns (Lua:
 * XPENDING owner check, then XCLAIM ... 0 JUSTID).  Marks owned[i].
 * Returns how many are still owned, or -ENOTCONN when the connection
 * dropped. */
int consumer_renew(struct consumer *c, const char *stream, const char *const *ids, size_t n,
		   bool *owned);
/* consumer_renew on an explicit connection: a kind's own second
 * connection (rc), usable while a read is in flight on the consumer's.
 * The owner check is the same (the consumer's group and name). */
int consumer_renew_on(struct consumer *c, struct rconn *rc, const char *stream, const char *const *ids,
		      size_t n, bool *owned);
/* Settle an entry the kind deferred (CE_DEFER) other than by its own
 * publish: v is CE_ACK (ack it, counted as processed), CE_DEAD (dead
 * letter with reason, copied; its fields are read back with XRANGE and
 * its delivery count with the owner check: an entry no longer ours is
 * left alone, one deleted meanwhile is acked as lost) or CE_DROP (leave it
 * pending: a successor takes it over).  Queued, and applied at the start
 * of the next consumer_step (acks go out with that round's pipeline);
 * settling is not sending.  The queue is not bounded by the consumer: it
 * holds the kind's own deferred entries, so it is bounded by what the
 * kind keeps in hand (its concurrency, capped by capacity()).  A verdict
 * that cannot be applied for want of a connection stays queued.  Returns
 * 0, or -EINVAL (another verdict, an id too long, a stream not in the
 * set). */
int consumer_settle(struct consumer *c, const char *stream, const char *id, enum consumer_verdict v,
		    const char *reason);
/* Verdicts settled and not applied yet. */
size_t consumer_settle_pending(const struct consumer *c);
/* Names of consumers of the group on stream (XINFO CONSUMERS); for the
 * foreign-node check.  Returns a redisReply array (free it) or NULL. */
redisReply *consumer_list(struct consumer *c, const char *stream);

#endif
