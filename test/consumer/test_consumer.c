/* The consumer loop (src/consumer.c, SPEC §4) on its own, against a
 * private redis-server on a unix socket: no master, no worker process.
 * A fake host (struct consumer_host) lends the connection and heartbeat
 * and answers the loop's questions; a fake kind records every entry it is
 * handed and gives verdicts.  Each case drives consumer_step the way
 * worker.c does (reconnect when dropped, then one step) until a condition
 * holds, with generous deadlines and no wall-clock asserts:
 *   claim       entries pending on a dead consumer past claim_idle_ms are
 *               claimed and handed over;
 *   re-read     a consumer's own pending entries come first after a
 *               restart; after an unclean exit in one batch while on
 *               their first redelivery, one at a time once redelivered
 *               (or with max_deliveries < 3);
 *   shortfall   XACKs that acknowledge fewer than sent (finished
 *               elsewhere) do not stall or desynchronise the loop; XACKs
 *               lost with the connection are sent again: nothing is left
 *               pending, nothing lost;
 *   group loss  the group (or the whole stream) is destroyed under the
 *               consumer, even while its read blocks: it is re-created at
 *               0, nothing is lost, and XGROUP CREATE is not spun on;
 *   patterns    streams added at run time (consumer_streams_update) are
 *               read from 0 of a new group; one DEL'ed is dropped and never
 *               re-created while a literal stream still heals; 40 streams
 *               read 8 keys at a time all get read; a removed stream is
 *               no longer read;
 *   fill/deep   streams with little each: several reads in one round trip,
 *               one batch of many streams; streams with much behind: fewer
 *               keys per read with a larger COUNT; busy streams starve
 *               none of the others;
 *   defer       (issue 13) entries the kind defers are not acked; settled
 *               later (consumer_settle) they are acked once, dead-lettered
 *               once, or left pending;
 *   poll fds    a kind's fd that becomes readable while the read blocks
 *               is serviced at once, and the read's reply still handed
 *               over;
 *   capacity    never more entries in hand than the kind's free slots,
 *               new or claimed; none read while it has none.
 * REDIS_SERVER names the redis-server binary; without it the program
 * exits 77 (skipped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "consumer.h"
#include "log.h"
#include "util.h"

#define STREAM "s1"
#define GROUP "g"
#define ME "t1/p/0"          /* the consumer name heartbeat_init makes */
#define MAX_RECS 4096
#define DEADLINE_MS 20000    /* per condition: generous, never a timing assert */

static char tmpdir[] = "/tmp/sv_test_consumer.XXXXXX";
static char sock[256];
static pid_t redis_pid;
static struct sv_config *cfg;
static redisContext *admin;  /* the test's own connection: set-up and checks */

/* ---------- the private redis-server ---------- */

static void stop_redis(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGTERM);
		waitpid(redis_pid, NULL, 0);
		redis_pid = 0;
	}
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

static int start_redis(const char *bin)
{
	snprintf(sock, sizeof(sock), "%s/redis.sock", tmpdir);
	char logfile[300];
	snprintf(logfile, sizeof(logfile), "%s/redis.log", tmpdir);
	redis_pid = fork();
	if (redis_pid < 0)
		return -errno;
	if (redis_pid == 0) {
		/* Dies with the test, however the test ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(bin, bin, "--unixsocket", sock, "--unixsocketperm", "700", "--port", "0", "--save", "",
		      "--appendonly", "no", "--dir", tmpdir, "--logfile", logfile, (char *)NULL);
		_exit(127);
	}
	for (int64_t until = util_mono_ms() + 15000; util_mono_ms() < until; util_sleep_ms(20, NULL)) {
		admin = redisConnectUnix(sock);
		if (admin && !admin->err)
			return 0;
		if (admin)
			redisFree(admin);
		admin = NULL;
	}
	fprintf(stderr, "redis-server did not start (see %s)\n", logfile);
	return -ETIMEDOUT;
}

static redisReply *cmd(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(admin, fmt, ap);
	va_end(ap);
	assert_non_null(r);
	return r;
}

static long long cmd_int(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(admin, fmt, ap);
	va_end(ap);
	assert_non_null(r);
	if (r->type != REDIS_REPLY_INTEGER)
		fail_msg("expected an integer, got type %d (%s)", r->type, r->str ? r->str : "");
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

static void cmd_ok(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(admin, fmt, ap);
	va_end(ap);
	assert_non_null(r);
	if (r->type == REDIS_REPLY_ERROR)
		fail_msg("redis: %s", r->str);
	freeReplyObject(r);
}

/* XADD n entries; their ids go to ids[] (ID_LEN each) when not NULL. */
#define ID_LEN 48
static void add_entries(int n, char (*ids)[ID_LEN])
{
	for (int i = 0; i < n; i++) {
		redisReply *r = cmd("XADD " STREAM " * run r%d type response.created seq %d data {}", i, i + 1);
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		if (ids)
			snprintf(ids[i], ID_LEN, "%s", r->str);
		freeReplyObject(r);
	}
}

/* Entries pending in the group, for one consumer or (NULL) for all. */
static long long pending(const char *consumer)
{
	redisReply *r = consumer ? cmd("XPENDING " STREAM " " GROUP " - + 100000 %s", consumer)
				 : cmd("XPENDING " STREAM " " GROUP " - + 100000");
	long long n = r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : -1;
	freeReplyObject(r);
	return n;
}

/* Calls of a command so far (INFO commandstats): "xgroup|create". */
static long long calls_of(const char *name)
{
	redisReply *r = cmd("INFO commandstats");
	char key[64];
	snprintf(key, sizeof(key), "cmdstat_%s:calls=", name);
	const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, key) : NULL;
	long long n = p ? atoll(p + strlen(key)) : 0;
	freeReplyObject(r);
	return n;
}

static bool group_exists(void)
{
	redisReply *r = cmd("XINFO GROUPS " STREAM);
	bool found = false;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		redisReply *g = r->element[i];
		for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2)
			if (strcmp(g->element[k]->str, "name") == 0 && strcmp(g->element[k + 1]->str, GROUP) == 0)
				found = true;
	}
	freeReplyObject(r);
	return found;
}

/* ---------- the fake host and kind ---------- */

struct rec {
	char id[ID_LEN];
	char stream[64];
	int64_t deliveries;
	bool history;
	size_t batch;            /* which batch (1-based) */
	size_t batch_n;          /* entries in that batch */
};

struct fake {
	struct pool_config pool;  /* a copy: cases change timings */
	struct rconn rc;
	struct heartbeat hb;
	struct consumer *c;
	bool paused, stop;
	unsigned progress;
	int64_t waited_ms;
	/* kind */
	enum consumer_verdict verdict;  /* given to every entry */
	struct rec recs[MAX_RECS];
	size_t nrecs, nbatches;
	/* deferring kinds (issue 13) */
	bool defer;                     /* CE_DEFER every undecided entry */
	struct rec held[MAX_RECS];      /* deferred, not settled yet */
	size_t nheld, most_held;
	size_t cap;                     /* capacity(): cap - nheld */
	int pipe_r;                     /* poll_fds: this fd, when >= 0 */
	unsigned ready_calls;           /* poll_ready saw it readable */
	int64_t ready_ms;               /* the first time */
};

static void host_wait(void *ctx, int64_t ms)
{
	struct fake *f = ctx;
	if (ms <= 0 || f->stop)
		return;
	f->waited_ms += ms;
	poll(NULL, 0, (int)ms);
}

static bool host_paused(void *ctx) { return ((struct fake *)ctx)->paused; }
static bool host_stopping(void *ctx) { return ((struct fake *)ctx)->stop; }
static bool host_abandon(void *ctx) { (void)ctx; return false; }
static void host_stop(void *ctx) { ((struct fake *)ctx)->stop = true; }
static void host_progress(void *ctx) { ((struct fake *)ctx)->progress++; }
static void host_work_group(void *ctx, pid_t pgid) { (void)ctx, (void)pgid; }

static int kind_batch(void *ctx, struct consumer *c, struct consumer_batch *b)
{
	struct fake *f = ctx;
	(void)c;
	f->nbatches++;
	for (size_t i = 0; i < b->n; i++) {
		struct consumer_entry *ce = &b->v[i];
		if (ce->verdict != CE_UNDECIDED)
			continue; /* the consumer judged it already (dropped, dead) */
		assert_true(f->nrecs < MAX_RECS);
		struct rec *r = &f->recs[f->nrecs++];
		snprintf(r->id, sizeof(r->id), "%s", ce->e.id);
		snprintf(r->stream, sizeof(r->stream), "%s", ce->e.stream); /* batches may mix streams */
		r->deliveries = ce->deliveries;
		r->history = b->history;
		r->batch = f->nbatches;
		r->batch_n = b->n;
		ce->verdict = f->verdict;
		if (f->defer) {
			ce->verdict = CE_DEFER;
			f->held[f->nheld++] = *r;
			if (f->nheld > f->most_held)
				f->most_held = f->nheld;
		}
	}
	return 0;
}

static size_t kind_capacity(void *ctx)
{
	struct fake *f = ctx;
	return f->cap > f->nheld ? f->cap - f->nheld : 0;
}

static size_t kind_poll_fds(void *ctx, struct pollfd *fds, size_t max, int64_t *deadline_ms)
{
	struct fake *f = ctx;
	(void)deadline_ms;
	if (f->pipe_r < 0 || max < 1)
		return 0;
	fds[0] = (struct pollfd){.fd = f->pipe_r, .events = POLLIN};
	return 1;
}

static void kind_poll_ready(void *ctx, struct consumer *c, const struct pollfd *fds, size_t n)
{
	struct fake *f = ctx;
	(void)c;
	for (size_t i = 0; i < n; i++) {
		if (fds[i].fd != f->pipe_r || !(fds[i].revents & POLLIN))
			continue;
		char buf[64];
		if (read(f->pipe_r, buf, sizeof(buf)) > 0 && f->ready_calls++ == 0)
			f->ready_ms = util_mono_ms();
	}
}

/* A new incarnation of consumer ME; unclean: its predecessor crashed;
 * hooks: with the kind hooks poll_fds, poll_ready and capacity. */
static struct fake *fake_new_kind(bool unclean, void (*tune)(struct pool_config *), bool hooks)
{
	struct fake *f = util_xcalloc(1, sizeof(*f));
	f->pool = cfg->pools[0];
	if (tune)
		tune(&f->pool);
	f->verdict = CE_ACK;
	rconn_init(&f->rc, cfg, 500);
	heartbeat_init(&f->hb, cfg, f->pool.name, "persistence", 0, 0, 0);
	assert_int_equal(rconn_connect(&f->rc), 0);
	assert_int_equal(heartbeat_register(&f->hb, &f->rc), 1);
	struct consumer_host host = {
		.rc = &f->rc, .hb = &f->hb, .pool = &f->pool, .unclean = unclean,
		.warn_redis_config = false, .wake_fd = -1, .ctx = f,
		.wait = host_wait, .paused = host_paused, .stopping = host_stopping,
		.abandon = host_abandon, .stop = host_stop, .progress = host_progress,
		.work_group = host_work_group,
	};
	struct consumer_kind kind = {.batch = kind_batch, .ctx = f};
	f->pipe_r = -1;
	f->cap = SIZE_MAX;
	if (hooks) {
		kind.poll_fds = kind_poll_fds;
		kind.poll_ready = kind_poll_ready;
		kind.capacity = kind_capacity;
	}
	f->c = consumer_new(&host, &kind);
	return f;
}

static struct fake *fake_new(bool unclean, void (*tune)(struct pool_config *))
{
	return fake_new_kind(unclean, tune, false);
}

/* Clean exit: queued acks flushed, fence released. */
static void fake_finish(struct fake *f)
{
	consumer_finish(f->c);
	consumer_free(f->c);
	heartbeat_release(&f->hb, &f->rc);
	rconn_close(&f->rc);
	free(f);
}

/* A crash: nothing flushed, the fence left to expire. */
static void fake_crash(struct fake *f)
{
	consumer_free(f->c);
	rconn_close(&f->rc);
	/* The next incarnation must not wait for the fence's TTL. */
	cmd_ok("DEL svt:consumer:" ME);
	free(f);
}

/* One round as worker.c runs it: reconnect when dropped, then a step. */
static void round_once(struct fake *f)
{
	int64_t now = util_mono_ms();
	if (!rconn_ready(&f->rc, now)) {
		int64_t ms = rconn_wait_ms(&f->rc, now);
		poll(NULL, 0, (int)(ms > 0 && ms < 200 ? ms : 20));
		return;
	}
	assert_int_equal(consumer_step(f->c), 0);
}

#define ROUND_UNTIL(f, cond)                                                                  \
	do {                                                                                  \
		int64_t until_ = util_mono_ms() + DEADLINE_MS;                                \
		while (!(cond) && util_mono_ms() < until_)                                    \
			round_once(f);                                                        \
		if (!(cond))                                                                  \
			fail_msg("%s:%d: not reached in %d ms: %s", __FILE__, __LINE__,       \
				 DEADLINE_MS, #cond);                                         \
	} while (0)

/* How often id was handed over. */
static int seen(const struct fake *f, const char *id)
{
	int n = 0;
	for (size_t i = 0; i < f->nrecs; i++)
		n += strcmp(f->recs[i].id, id) == 0;
	return n;
}

static bool all_seen(const struct fake *f, char (*ids)[ID_LEN], int n)
{
	for (int i = 0; i < n; i++)
		if (!seen(f, ids[i]))
			return false;
	return true;
}

static void assert_each_once(const struct fake *f, char (*ids)[ID_LEN], int n)
{
	for (int i = 0; i < n; i++)
		if (seen(f, ids[i]) != 1)
			fail_msg("entry %s handed over %d times, want once", ids[i], seen(f, ids[i]));
}

/* A group at 0, n entries, and a consumer ME that has been handed them
 * (their acks queued, not sent yet). */
static struct fake *consumer_with(int n, char (*ids)[ID_LEN], void (*tune)(struct pool_config *))
{
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	add_entries(n, ids);
	struct fake *f = fake_new(false, tune);
	ROUND_UNTIL(f, f->nrecs == (size_t)n);
	return f;
}

/* consumer_with, then its acks sent: nothing pending.  *creates: the
 * XGROUP CREATE calls so far, for assert_healed. */
static struct fake *consumer_settled(int n, char (*ids)[ID_LEN], void (*tune)(struct pool_config *),
				     long long *creates)
{
	struct fake *f = consumer_with(n, ids, tune);
	ROUND_UNTIL(f, pending(NULL) == 0);
	*creates = calls_of("xgroup|create");
	return f;
}

/* After a loss: the group exists again, re-created by 1 to `most` XGROUP
 * CREATE calls since `since` (consumer_settled): healed, and not by
 * spinning on it. */
static void assert_healed(long long since, long long most)
{
	assert_true(group_exists());
	long long more = calls_of("xgroup|create") - since;
	if (more < 1 || more > most)
		fail_msg("%lld XGROUP CREATE calls after one loss (1..%lld expected)", more, most);
}

/* ---------- cases ---------- */

static int reset(void **state)
{
	(void)state;
	cmd_ok("FLUSHALL");
	cmd_ok("CONFIG RESETSTAT");
	return 0;
}

static void fast_claim(struct pool_config *p)
{
	p->claim_idle_ms = 300;
}

/* SPEC §4.5: a dead consumer's pending entries, idle past claim_idle_ms,
 * are claimed by XAUTOCLAIM and handed over as history with their
 * delivery counts; acked, nothing stays pending. */
static void test_claim(void **state)
{
	(void)state;
	char ids[40][ID_LEN];
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	add_entries(40, ids);
	/* t1/p/9 reads them and dies without acking. */
	redisReply *r = cmd("XREADGROUP GROUP " GROUP " t1/p/9 COUNT 100 STREAMS " STREAM " >");
	freeReplyObject(r);
	assert_int_equal(pending("t1/p/9"), 40);

	struct fake *f = fake_new(false, fast_claim);
	ROUND_UNTIL(f, all_seen(f, ids, 40));
	assert_each_once(f, ids, 40);
	for (size_t i = 0; i < f->nrecs; i++) {
		assert_true(f->recs[i].history);
		/* Read once by t1/p/9, once by the claim. */
		assert_int_equal(f->recs[i].deliveries, 2);
	}
	assert_true(f->progress >= 1);
	/* The acks go out with the next round trip. */
	ROUND_UNTIL(f, pending(NULL) == 0);
	assert_int_equal(pending("t1/p/9"), 0);
	fake_finish(f);
}

/* Incarnation 1 reads 5 entries and crashes with them in hand (pending
 * on ME); 3 more are written.  Returns the ids: 5 old, then 3 new. */
static void crash_with_five(char (*ids)[ID_LEN])
{
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	add_entries(5, ids);
	struct fake *f = fake_new(false, NULL);
	f->verdict = CE_DROP; /* handed over, never acked: a crash mid-batch */
	ROUND_UNTIL(f, f->nrecs == 5);
	for (size_t i = 0; i < 5; i++) {
		assert_false(f->recs[i].history);
		assert_int_equal(f->recs[i].deliveries, 1);
	}
	fake_crash(f);
	assert_int_equal(pending(ME), 5);
	add_entries(3, ids + 5);
}

/* The next incarnation after crash_with_five: the 5 own pending entries
 * come first, in order, as history, then the 3 new ones. */
static struct fake *restart_after_crash(bool unclean, char (*ids)[ID_LEN])
{
	crash_with_five(ids);
	struct fake *f = fake_new(unclean, NULL);
	ROUND_UNTIL(f, f->nrecs >= 8);
	assert_int_equal(f->nrecs, 8);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(f->recs[i].id, ids[i]);
		assert_true(f->recs[i].history);
		assert_int_equal(f->recs[i].deliveries, 2);
	}
	for (size_t i = 5; i < 8; i++) {
		assert_string_equal(f->recs[i].id, ids[i]);
		assert_false(f->recs[i].history);
	}
	return f;
}

/* SPEC §4.3 after a clean restart: own pending entries first, in batches.
 * The time split (issue 14): round trips that brought entries count as
 * Redis time, acks as ack time; idle blocking reads (block_ms 100 each)
 * count as neither. */
static void test_reread_clean(void **state)
{
	(void)state;
	char ids[8][ID_LEN];
	struct fake *f = restart_after_crash(false, ids);
	assert_int_equal(f->recs[0].batch_n, 5); /* one batch: COUNT batch */
	ROUND_UNTIL(f, pending(NULL) == 0);
	assert_true(f->hb.split_us[HB_SPLIT_REDIS] > 0);
	assert_true(f->hb.split_us[HB_SPLIT_ACK] > 0);
	uint64_t redis0 = f->hb.split_us[HB_SPLIT_REDIS];
	for (int i = 0; i < 6; i++)
		round_once(f); /* idle: each read blocks block_ms */
	uint64_t idle_us = f->hb.split_us[HB_SPLIT_REDIS] - redis0;
	if (idle_us > 250000)
		fail_msg("%llu us of Redis time counted for 6 idle blocking reads", (unsigned long long)idle_us);
	fake_finish(f);
}

/* After an unclean exit (issue 14): entries on their first redelivery
 * (read once, by the crashed predecessor) are taken over in one batch:
 * the crash recovery of a full batch costs one round trip, not one per
 * entry. */
static void test_reread_unclean(void **state)
{
	(void)state;
	char ids[8][ID_LEN];
	struct fake *f = restart_after_crash(true, ids);
	assert_int_equal(f->recs[0].batch_n, 5);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(f->recs[i].batch, 1);
	ROUND_UNTIL(f, pending(NULL) == 0);
	fake_finish(f);
}

/* The predecessor crashed while it held entries it had taken over (their
 * second delivery: a poison entry among them would crash every batch):
 * now they come one at a time, so a poison entry is met alone, with
 * every good one still within max_deliveries 3. */
static void test_reread_unclean_twice(void **state)
{
	(void)state;
	char ids[8][ID_LEN];
	crash_with_five(ids);
	struct fake *f = fake_new(true, NULL);
	f->verdict = CE_DROP; /* crashes with the taken-over batch in hand */
	ROUND_UNTIL(f, f->nrecs >= 5);
	assert_int_equal(f->recs[0].batch_n, 5);
	fake_crash(f);
	assert_int_equal(pending(ME), 5);
	f = fake_new(true, NULL);
	ROUND_UNTIL(f, f->nrecs >= 8);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(f->recs[i].id, ids[i]);
		assert_true(f->recs[i].history);
		assert_int_equal(f->recs[i].batch_n, 1);
		assert_int_equal(f->recs[i].batch, i + 1);
		assert_int_equal(f->recs[i].deliveries, 3);
	}
	ROUND_UNTIL(f, pending(NULL) == 0);
	fake_finish(f);
}

/* One redelivered entry among first redeliveries: the ones before it in
 * a batch, it alone, the ones after it in a batch again. */
static void test_reread_unclean_mixed(void **state)
{
	(void)state;
	char ids[8][ID_LEN];
	crash_with_five(ids);
	/* ids[2] was delivered twice already (a predecessor's take-over). */
	cmd_ok("XCLAIM " STREAM " " GROUP " " ME " 0 %s RETRYCOUNT 2 JUSTID", ids[2]);
	struct fake *f = fake_new(true, NULL);
	ROUND_UNTIL(f, f->nrecs >= 8);
	size_t want_n[5] = {2, 2, 1, 2, 2}, want_batch[5] = {1, 1, 2, 3, 3};
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(f->recs[i].id, ids[i]);
		assert_int_equal(f->recs[i].batch_n, want_n[i]);
		assert_int_equal(f->recs[i].batch, want_batch[i]);
		assert_int_equal(f->recs[i].deliveries, i == 2 ? 3 : 2);
	}
	ROUND_UNTIL(f, pending(NULL) == 0);
	fake_finish(f);
}

/* A take-over that ends without an empty read (it took the whole rest)
 * leaves the acks of its last batch queued; a claim sweep with min-idle 0
 * right after it (consumer_claim_now: a writer that took its file's
 * lease) sends them first, so nothing handled is claimed and handed over
 * again (it was, counting a delivery more: a good entry dead-lettered in
 * test_sec_poison_pair). */
static void test_reread_unclean_claim_now(void **state)
{
	(void)state;
	char ids[8][ID_LEN];
	crash_with_five(ids);
	struct fake *f = fake_new(true, NULL);
	consumer_claim_now(f->c);
	ROUND_UNTIL(f, f->nrecs >= 8 && pending(NULL) == 0);
	for (int i = 0; i < 6; i++)
		round_once(f);
	assert_each_once(f, ids, 8);
	assert_int_equal(f->recs[0].batch_n, 5);
	fake_finish(f);
}

static void two_deliveries(struct pool_config *p)
{
	p->max_deliveries = 2;
}

/* max_deliveries 2 leaves no delivery for a batch before the one alone:
 * one at a time at once, as SPEC §4 step 3 has it. */
static void test_reread_unclean_maxdel2(void **state)
{
	(void)state;
	char ids[8][ID_LEN];
	crash_with_five(ids);
	struct fake *f = fake_new(true, two_deliveries);
	ROUND_UNTIL(f, f->nrecs >= 8);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(f->recs[i].id, ids[i]);
		assert_int_equal(f->recs[i].batch_n, 1);
		assert_int_equal(f->recs[i].batch, i + 1);
		assert_int_equal(f->recs[i].deliveries, 2);
	}
	ROUND_UNTIL(f, pending(NULL) == 0);
	fake_finish(f);
}

/* The test_persist_ack_shortfall.sh situation at the consumer level: a
 * batch is handled and its XACKs are queued; before they go out, the
 * entries are acked elsewhere and another consumer takes a new one.  The
 * pipelined XACK acknowledges 0 of N: the loop carries on in step (the
 * read of the same round trip is handed over, nothing is read and left
 * unprocessed), the group is not re-created, and the other consumer's
 * entry is claimed in its time. */
static void test_ack_shortfall(void **state)
{
	(void)state;
	char first[10][ID_LEN], next[20][ID_LEN];
	struct fake *f = consumer_with(10, first, fast_claim);
	assert_int_equal(pending(ME), 10); /* acks queued, not sent yet */
	long long creates = calls_of("xgroup|create");

	for (int i = 0; i < 10; i++)
		cmd_ok("XACK " STREAM " " GROUP " %s", first[i]);
	char theirs[1][ID_LEN];
	add_entries(1, theirs);
	redisReply *r = cmd("XREADGROUP GROUP " GROUP " t1/p/8 COUNT 1 STREAMS " STREAM " >");
	freeReplyObject(r);
	add_entries(20, next);

	ROUND_UNTIL(f, all_seen(f, next, 20) && seen(f, theirs[0]));
	assert_each_once(f, first, 10);
	assert_each_once(f, next, 20);
	assert_int_equal(seen(f, theirs[0]), 1);
	ROUND_UNTIL(f, pending(NULL) == 0);
	assert_true(group_exists());
	assert_int_equal(calls_of("xgroup|create"), creates);
	fake_finish(f);
}

/* XACKs lost with the connection stay queued and are sent after the
 * reconnect: the entries are not handed over twice and none stays
 * pending. */
static void test_ack_after_drop(void **state)
{
	(void)state;
	char ids[10][ID_LEN], more[5][ID_LEN];
	struct fake *f = consumer_with(10, ids, NULL);
	assert_int_equal(pending(ME), 10);
	/* Every connection but the test's own. */
	cmd_ok("CLIENT KILL TYPE normal SKIPME yes");
	round_once(f); /* the round trip with the acks fails */
	assert_int_equal(pending(ME), 10);
	add_entries(5, more);
	ROUND_UNTIL(f, all_seen(f, more, 5) && pending(NULL) == 0);
	assert_each_once(f, ids, 10);
	assert_each_once(f, more, 5);
	fake_finish(f);
}

/* Run consumer rounds until every id is handed over after a loss, then
 * until nothing is pending: nothing lost. */
static void recover(struct fake *f, size_t before, char (*ids)[ID_LEN], int n)
{
	int64_t until = util_mono_ms() + DEADLINE_MS;
	for (;;) {
		bool all = true;
		for (int i = 0; i < n && all; i++) {
			bool found = false;
			for (size_t k = before; k < f->nrecs && !found; k++)
				found = strcmp(f->recs[k].id, ids[i]) == 0;
			all = found;
		}
		if (all && pending(NULL) == 0)
			return;
		if (util_mono_ms() >= until)
			fail_msg("not recovered in %d ms: %zu entries since the loss, %lld pending", DEADLINE_MS,
				 f->nrecs - before, pending(NULL));
		round_once(f);
	}
}

/* SPEC §4.4: the group is destroyed between reads (NOGROUP).  It is
 * re-created at 0: the entries written while it was gone are handed
 * over, and so is everything older (at 0 nothing is skipped). */
static void test_group_destroyed(void **state)
{
	(void)state;
	char ids[30][ID_LEN];
	long long creates;
	struct fake *f = consumer_settled(10, ids, NULL, &creates);

	assert_int_equal(cmd_int("XGROUP DESTROY " STREAM " " GROUP), 1);
	add_entries(20, ids + 10);
	size_t before = f->nrecs;
	recover(f, before, ids, 30);
	assert_healed(creates, 2); /* one NOGROUP, one re-creation */
	fake_finish(f);
}

/* The whole stream is deleted while the consumer's read blocks (Redis
 * answers UNBLOCKED or NOGROUP), then written again. */
static void long_block(struct pool_config *p)
{
	p->block_ms = 1000;
	p->claim_idle_ms = 60000; /* no sweep instead of the blocking read */
}

static void test_stream_deleted_while_blocked(void **state)
{
	(void)state;
	char ids[15][ID_LEN];
	long long creates;
	struct fake *f = consumer_settled(5, ids, long_block, &creates);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* While the parent's next read blocks. */
		redisContext *c = redisConnectUnix(sock);
		util_sleep_ms(300, NULL);
		redisReply *r = c && !c->err ? redisCommand(c, "DEL " STREAM) : NULL;
		_exit(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : 1);
	}
	round_once(f);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	add_entries(10, ids + 5);
	recover(f, f->nrecs, ids + 5, 10);
	assert_healed(creates, 3);
	fake_finish(f);
}

/* ---------- pattern streams (issue 11) ---------- */

/* XADD n entries to stream; their ids go to ids[] when not NULL. */
static void add_to(const char *stream, int n, char (*ids)[ID_LEN])
{
	for (int i = 0; i < n; i++) {
		redisReply *r = cmd("XADD %s * run r%d type response.created seq %d data {}", stream, i, i + 1);
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		if (ids)
			snprintf(ids[i], ID_LEN, "%s", r->str);
		freeReplyObject(r);
	}
}

static size_t seen_of(const struct fake *f, const char *stream)
{
	size_t n = 0;
	for (size_t i = 0; i < f->nrecs; i++)
		n += strcmp(f->recs[i].stream, stream) == 0;
	return n;
}

static long long pending_of(const char *stream)
{
	redisReply *r = cmd("XPENDING %s " GROUP " - + 100000", stream);
	long long n = r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : -1;
	freeReplyObject(r);
	return n;
}

/* Every stream run:1 .. run:n-1 handed over per entries (ids of different
 * streams may be equal: count by stream). */
static bool rotation_done(const struct fake *f, int n, size_t per)
{
	char name[32];
	for (int s = 1; s < n; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		if (seen_of(f, name) < per)
			return false;
	}
	return true;
}

static void streams_add(struct fake *f, const char *name)
{
	const char *v[] = {name};
	assert_int_equal(consumer_streams_update(f->c, v, 1, NULL, 0), 0);
}

/* A stream added at run time gets the group at 0: its entries written
 * before are read, and it keeps being read. */
static void test_pattern_added(void **state)
{
	(void)state;
	char ids[16][ID_LEN];
	long long creates;
	struct fake *f = consumer_settled(3, ids, NULL, &creates);
	add_to("run:1", 4, ids);
	streams_add(f, "run:1");
	/* Ids of two streams may be equal: count by stream. */
	ROUND_UNTIL(f, seen_of(f, "run:1") == 4);
	add_to("run:1", 2, ids + 4);
	ROUND_UNTIL(f, seen_of(f, "run:1") == 6);
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_int_equal(seen_of(f, "run:1"), 6);
	assert_int_equal(consumer_stream_count(f->c), 2);
	redisReply *r = cmd("XINFO GROUPS run:1");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 1);
	freeReplyObject(r);
	ROUND_UNTIL(f, pending(NULL) == 0 && pending_of("run:1") == 0);
	/* Added before its key exists: no MKSTREAM, dropped, not created. */
	streams_add(f, "run:none");
	for (int i = 0; i < 5; i++)
		round_once(f);
	assert_int_equal(cmd_int("EXISTS run:none"), 0);
	assert_int_equal(consumer_stream_count(f->c), 2);
	fake_finish(f);
}

/* consumer_settled with n literal entries, then the pattern stream run:1
 * with k entries added and read. */
static struct fake *with_run1(int n, char (*ids)[ID_LEN], int k)
{
	long long creates;
	struct fake *f = consumer_settled(n, ids, NULL, &creates);
	add_to("run:1", k, NULL);
	streams_add(f, "run:1");
	ROUND_UNTIL(f, seen_of(f, "run:1") == (size_t)k);
	return f;
}

/* A pattern stream DEL'ed (a harness reset) is dropped and never
 * re-created; the literal stream's lost group is still healed at 0, and
 * its reads go on. */
static void test_pattern_deleted(void **state)
{
	(void)state;
	char ids[30][ID_LEN];
	struct fake *f = with_run1(5, ids, 4);
	assert_int_equal(cmd_int("DEL run:1"), 1);
	assert_int_equal(cmd_int("XGROUP DESTROY " STREAM " " GROUP), 1);
	add_entries(10, ids + 5);
	recover(f, f->nrecs, ids + 5, 10);
	assert_true(group_exists());
	add_entries(5, ids + 15);
	recover(f, f->nrecs, ids + 15, 5);
	for (int i = 0; i < 5; i++)
		round_once(f);
	assert_int_equal(cmd_int("EXISTS run:1"), 0);
	assert_int_equal(consumer_stream_count(f->c), 1);
	fake_finish(f);
}

/* A pattern stream deleted and written anew before discovery noticed
 * (no "remove" came): parked while its key is gone, then read again from
 * its new first entry. */
static void test_pattern_recreated(void **state)
{
	(void)state;
	char ids[16][ID_LEN];
	struct fake *f = with_run1(2, ids, 3);
	assert_int_equal(cmd_int("DEL run:1"), 1);
	ROUND_UNTIL(f, consumer_stream_count(f->c) == 1);
	assert_int_equal(cmd_int("EXISTS run:1"), 0);
	size_t before = seen_of(f, "run:1");
	add_to("run:1", 2, NULL);
	ROUND_UNTIL(f, seen_of(f, "run:1") == before + 2);
	assert_int_equal(consumer_stream_count(f->c), 2);
	ROUND_UNTIL(f, pending_of("run:1") == 0);
	fake_finish(f);
}

static void keys_of_8(struct pool_config *p)
{
	p->read_keys = 8;
	p->batch = 16;
	p->claim_idle_ms = 60000;
}

/* 40 streams, at most 8 keys per read, one of them kept busy: every
 * stream's entries are read (the rotation starves none). */
static void test_pattern_rotation(void **state)
{
	(void)state;
	enum { NS = 40, PER = 5 };
	static char ids[NS * PER][ID_LEN];
	char name[32];
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	struct fake *f = fake_new(false, keys_of_8);
	for (int s = 0; s < NS; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		add_to(name, PER, ids + s * PER);
		streams_add(f, name);
	}
	int64_t until = util_mono_ms() + DEADLINE_MS;
	while (!rotation_done(f, NS, PER) && util_mono_ms() < until) {
		add_to("run:0", 4, NULL); /* more than one read's COUNT (16 / 8) */
		round_once(f);
	}
	if (!rotation_done(f, NS, PER))
		fail_msg("not every stream was read: %zu entries of run:39", seen_of(f, "run:39"));
	assert_int_equal(consumer_stream_count(f->c), NS + 1);
	for (int s = 1; s < NS; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		assert_int_equal(seen_of(f, name), PER);
	}
	fake_finish(f);
}

/* The most distinct streams one batch held; *largest: the largest batch. */
static size_t most_streams_in_a_batch(const struct fake *f, size_t *largest)
{
	size_t most = 0;
	*largest = 0;
	for (size_t b = 1; b <= f->nbatches; b++) {
		size_t n = 0;
		for (size_t i = 0; i < f->nrecs; i++) {
			const struct rec *r = &f->recs[i];
			if (r->batch != b)
				continue;
			if (r->batch_n > *largest)
				*largest = r->batch_n;
			bool again = false;
			for (size_t j = 0; j < i && !again; j++)
				again = f->recs[j].batch == b && strcmp(f->recs[j].stream, r->stream) == 0;
			n += !again;
		}
		if (n > most)
			most = n;
	}
	return most;
}

/* The most entries of one stream in one batch. */
static size_t most_of_a_stream_in_a_batch(const struct fake *f)
{
	size_t most = 0;
	for (size_t i = 0; i < f->nrecs; i++) {
		size_t n = 0;
		for (size_t j = 0; j < f->nrecs; j++)
			n += f->recs[j].batch == f->recs[i].batch && strcmp(f->recs[j].stream, f->recs[i].stream) == 0;
		if (n > most)
			most = n;
	}
	return most;
}

/* Streams run:0 .. run:n-1, each with per entries, added to the set. */
static void add_runs(struct fake *f, int n, int per)
{
	char name[32];
	for (int s = 0; s < n; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		add_to(name, per, NULL);
		streams_add(f, name);
	}
}

/* Every stream run:from .. run:to-1 handed over exactly per entries. */
static void assert_runs_once(const struct fake *f, int from, int to, size_t per)
{
	char name[32];
	for (int s = from; s < to; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		if (seen_of(f, name) != per)
			fail_msg("%s: %zu entries handed over, want %zu", name, seen_of(f, name), per);
	}
}

static void keys_of_4(struct pool_config *p)
{
	p->read_keys = 4;
	p->batch = 64;
	p->claim_idle_ms = 60000;
}

/* (consumer.c's FILL_READS_MAX) */
#define FILL_READS_MAX 8

/* 40 streams of 2 entries, at most 4 keys per read: a read gives far
 * fewer than a batch, so one round trip carries several reads (of 4 keys
 * each), and what they bring is one batch of many streams; each entry
 * once, and no batch over FILL_READS_MAX times batch. */
static void test_fill_reads(void **state)
{
	(void)state;
	enum { NS = 40, PER = 2 };
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	struct fake *f = fake_new(false, keys_of_4);
	add_runs(f, NS, PER);
	ROUND_UNTIL(f, f->nrecs >= NS * PER);
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_runs_once(f, 0, NS, PER);
	size_t largest, most = most_streams_in_a_batch(f, &largest);
	if (most <= 4)
		fail_msg("at most %zu streams in one batch: one read (4 keys) per round trip", most);
	assert_true(largest <= FILL_READS_MAX * 64);
	ROUND_UNTIL(f, pending_of("run:0") == 0 && pending_of("run:39") == 0);
	fake_finish(f);
}

static void keys_of_4_batch_16(struct pool_config *p)
{
	p->read_keys = 4;
	p->batch = 16;
	p->claim_idle_ms = 60000;
}

/* 12 streams with 40 entries each behind, 4 keys of COUNT 4 per read:
 * the keys come back full, so reads narrow to fewer keys with a larger
 * COUNT (a stream drained in fewer visits), never past batch per read;
 * every entry once. */
static void test_deep_reads(void **state)
{
	(void)state;
	enum { NS = 12, PER = 40 };
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	struct fake *f = fake_new(false, keys_of_4_batch_16);
	add_runs(f, NS, PER);
	ROUND_UNTIL(f, f->nrecs >= NS * PER);
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_runs_once(f, 0, NS, PER);
	size_t largest;
	most_streams_in_a_batch(f, &largest);
	size_t deep = most_of_a_stream_in_a_batch(f);
	if (deep <= 16 / 4)
		fail_msg("at most %zu entries of a stream in one batch: COUNT stayed batch / read_keys", deep);
	assert_true(largest <= FILL_READS_MAX * 16);
	fake_finish(f);
}

/* 3 streams always more than full (8 new entries each every round) among
 * 20 with 2 entries each, 4 keys per read: the busy ones narrow nothing
 * for the others, whose entries are all read (no stream starves), and
 * the busy ones keep being read. */
static void test_busy_streams_no_starving(void **state)
{
	(void)state;
	enum { NS = 23, HOT = 3, PER = 2 };
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	struct fake *f = fake_new(false, keys_of_4_batch_16);
	add_runs(f, NS, PER);
	char name[32];
	bool done = false;
	int64_t until = util_mono_ms() + DEADLINE_MS;
	while (!done && util_mono_ms() < until) {
		for (int s = 0; s < HOT; s++) {
			snprintf(name, sizeof(name), "run:%d", s);
			add_to(name, 8, NULL);
		}
		round_once(f);
		done = true;
		for (int s = HOT; s < NS && done; s++) {
			snprintf(name, sizeof(name), "run:%d", s);
			done = seen_of(f, name) >= PER;
		}
	}
	if (!done)
		fail_msg("a stream starved: %zu entries of run:%d read", seen_of(f, "run:22"), NS - 1);
	assert_runs_once(f, HOT, NS, PER);
	for (int s = 0; s < HOT; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		assert_true(seen_of(f, name) >= PER);
	}
	fake_finish(f);
}

/* A removed stream is no longer read; the others are. */
static void test_pattern_removed(void **state)
{
	(void)state;
	char ids[16][ID_LEN];
	struct fake *f = with_run1(2, ids, 2);
	const char *v[] = {"run:1"};
	assert_int_equal(consumer_streams_update(f->c, NULL, 0, v, 1), 0);
	round_once(f);
	assert_int_equal(consumer_stream_count(f->c), 1);
	size_t before = seen_of(f, "run:1");
	add_to("run:1", 2, NULL);
	add_entries(5, ids + 2);
	ROUND_UNTIL(f, all_seen(f, ids + 2, 5));
	for (int i = 0; i < 5; i++)
		round_once(f);
	assert_int_equal(seen_of(f, "run:1"), before);
	/* Its acks were sent before it left: nothing of it pending. */
	assert_int_equal(cmd_int("XLEN run:1"), 4);
	assert_int_equal(pending_of("run:1"), 0);
	fake_finish(f);
}

static void idle_fast(struct pool_config *p)
{
	p->read_keys = 8;
	p->idle_ms = 200;
	p->idle_check_rate = 4; /* one idle stream each 250 ms tick */
	p->claim_idle_ms = 60000;
}

/* Pattern streams that gave nothing for idle_ms leave the active read set
 * (the literal stream never does); a late entry in one is read by the
 * idle re-check, a wake-up makes one active at once, and a re-checked
 * stream with entries is active again. */
static void test_pattern_idle(void **state)
{
	(void)state;
	char name[32];
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	struct fake *f = fake_new(false, idle_fast);
	for (int s = 1; s <= 3; s++) {
		snprintf(name, sizeof(name), "run:%d", s);
		add_to(name, 2, NULL);
		streams_add(f, name);
	}
	ROUND_UNTIL(f, seen_of(f, "run:1") == 2 && seen_of(f, "run:2") == 2 && seen_of(f, "run:3") == 2);
	assert_int_equal(consumer_active_count(f->c), 4);
	ROUND_UNTIL(f, consumer_active_count(f->c) == 1);
	assert_int_equal(consumer_stream_count(f->c), 4);
	/* A late entry: found by the re-check, the stream active again. */
	add_to("run:2", 1, NULL);
	ROUND_UNTIL(f, seen_of(f, "run:2") == 3);
	assert_int_equal(consumer_active_count(f->c), 2);
	ROUND_UNTIL(f, consumer_active_count(f->c) == 1);
	/* A wake-up: active at the next round, before any re-check. */
	const char *w[] = {"run:3", "run:unknown"};
	assert_int_equal(consumer_streams_wake(f->c, w, 2), 0);
	round_once(f);
	assert_true(consumer_active_count(f->c) >= 2);
	assert_int_equal(consumer_stream_count(f->c), 4);
	ROUND_UNTIL(f, pending_of("run:1") == 0 && pending_of("run:2") == 0 && pending_of("run:3") == 0);
	fake_finish(f);
}

/* ---------- deferred entries and the kind's hooks (issue 13) ---------- */

/* Settle the held entry i (swap-removed from held). */
static void settle_held(struct fake *f, size_t i, enum consumer_verdict v, const char *reason)
{
	assert_int_equal(consumer_settle(f->c, f->held[i].stream, f->held[i].id, v, reason), 0);
	f->held[i] = f->held[--f->nheld];
}

static size_t held_index(const struct fake *f, const char *id)
{
	for (size_t i = 0; i < f->nheld; i++)
		if (strcmp(f->held[i].id, id) == 0)
			return i;
	fail_msg("%s is not held", id);
	return 0;
}

/* A field of the first entry of an XRANGE reply, or "". */
static void entry_field(redisReply *r, const char *name, char *out, size_t len)
{
	out[0] = '\0';
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return;
	redisReply *fv = r->element[0]->element[1];
	for (size_t k = 0; k + 1 < fv->elements; k += 2)
		if (strcmp(fv->element[k]->str, name) == 0)
			snprintf(out, len, "%s", fv->element[k + 1]->str);
}

/* Entries the kind defers stay pending, unacked and uncounted, across
 * rounds; settled in a later step: CE_ACK acks (counted once), CE_DEAD
 * makes exactly one dead letter with the reason and the original fields,
 * CE_DROP leaves the entry pending. */
static void test_defer_settle(void **state)
{
	(void)state;
	char ids[6][ID_LEN];
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	add_entries(6, ids);
	struct fake *f = fake_new(false, NULL);
	f->defer = true;
	ROUND_UNTIL(f, f->nrecs == 6);
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_int_equal(pending(ME), 6);
	assert_int_equal(f->hb.processed, 0);
	assert_int_equal(f->nheld, 6);
	/* Only ACK, DEAD and DROP settle; an entry of another stream neither. */
	assert_int_equal(consumer_settle(f->c, STREAM, ids[0], CE_DEFER, NULL), -EINVAL);
	assert_int_equal(consumer_settle(f->c, "nope", ids[0], CE_ACK, NULL), -EINVAL);

	for (int i = 0; i < 4; i++)
		settle_held(f, held_index(f, ids[i]), CE_ACK, NULL);
	settle_held(f, held_index(f, ids[4]), CE_DEAD, "handler died 3 times on this call");
	settle_held(f, held_index(f, ids[5]), CE_DROP, NULL);
	assert_int_equal(consumer_settle_pending(f->c), 6);
	ROUND_UNTIL(f, pending(NULL) == 1);
	assert_int_equal(consumer_settle_pending(f->c), 0);
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_int_equal(pending(NULL), 1);
	redisReply *r = cmd("XPENDING " STREAM " " GROUP " - + 10");
	assert_int_equal(r->elements, 1);
	assert_string_equal(r->element[0]->element[0]->str, ids[5]);
	freeReplyObject(r);
	assert_int_equal(f->hb.processed, 4);
	assert_int_equal(f->hb.dead_lettered, 1);
	assert_int_equal(cmd_int("XLEN " STREAM ":dead"), 1);
	r = cmd("XRANGE " STREAM ":dead - +");
	char v[160];
	entry_field(r, "origin_id", v, sizeof(v));
	assert_string_equal(v, ids[4]);
	entry_field(r, "reason", v, sizeof(v));
	assert_string_equal(v, "handler died 3 times on this call");
	entry_field(r, "deliveries", v, sizeof(v));
	assert_string_equal(v, "1");
	entry_field(r, "run", v, sizeof(v));
	assert_string_equal(v, "r4");
	freeReplyObject(r);
	assert_each_once(f, ids, 6);
	/* Settled again (a kind's mistake): no longer pending, so left
	 * alone: still one dead letter. */
	assert_int_equal(consumer_settle(f->c, STREAM, ids[4], CE_DEAD, "again"), 0);
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_int_equal(cmd_int("XLEN " STREAM ":dead"), 1);
	fake_finish(f);
	assert_int_equal(pending(NULL), 1); /* the dropped one, for a successor */
}

static void very_long_block(struct pool_config *p)
{
	p->block_ms = 4000; /* < command_timeout_ms (5000) */
	p->claim_idle_ms = 60000;
}

/* A kind's fd becomes readable while the consumer's read blocks for 4 s:
 * poll_ready is called at once, and the entry that ends the block is
 * still handed over by that same step. */
static void test_poll_fds_while_blocked(void **state)
{
	(void)state;
	char ids[2][ID_LEN];
	int p[2];
	assert_int_equal(pipe(p), 0);
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	add_entries(1, ids);
	struct fake *f = fake_new_kind(false, very_long_block, true);
	f->pipe_r = p[0];
	ROUND_UNTIL(f, f->nrecs == 1);
	ROUND_UNTIL(f, pending(NULL) == 0); /* a blocking round trip carried the ack */
	assert_int_equal(f->ready_calls, 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* While the parent's read blocks: the fd, then an entry. */
		redisContext *rc = redisConnectUnix(sock);
		util_sleep_ms(300, NULL);
		if (write(p[1], "x", 1) != 1)
			_exit(2);
		util_sleep_ms(300, NULL);
		redisReply *r = rc && !rc->err ? redisCommand(rc, "XADD " STREAM " * run late seq 1 data {}") : NULL;
		_exit(r && r->type == REDIS_REPLY_STRING ? 0 : 1);
	}
	int64_t t0 = util_mono_ms();
	round_once(f);
	int64_t took = util_mono_ms() - t0;
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(f->ready_calls >= 1);
	if (f->ready_ms - t0 > 2000)
		fail_msg("poll_ready came %lld ms into a 4000 ms block", (long long)(f->ready_ms - t0));
	assert_int_equal(f->nrecs, 2);     /* the late entry, from the same step */
	assert_true(took < 3000);
	assert_non_null(f->rc.c);          /* not dropped */
	ROUND_UNTIL(f, pending(NULL) == 0);
	close(p[0]);
	close(p[1]);
	fake_finish(f);
}

static void claim_fast_batch_16(struct pool_config *p)
{
	p->claim_idle_ms = 300;
	p->batch = 16;
}

/* capacity() 3: entries claimed from a dead consumer and new ones (COUNT
 * would be 16) come at most 3 in hand at a time; with none free nothing is
 * read; settled one by one, all are handed over once and acked. */
static void test_capacity(void **state)
{
	(void)state;
	enum { OLD = 10, NEW = 10 };
	char ids[OLD + NEW][ID_LEN];
	cmd_ok("XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
	add_entries(OLD, ids);
	redisReply *r = cmd("XREADGROUP GROUP " GROUP " t1/p/9 COUNT 100 STREAMS " STREAM " >");
	freeReplyObject(r);
	add_entries(NEW, ids + OLD);
	struct fake *f = fake_new_kind(false, claim_fast_batch_16, true);
	f->defer = true;
	f->cap = 3;
	ROUND_UNTIL(f, f->nheld == 3);
	/* No room: rounds read nothing (and still return). */
	size_t before = f->nrecs;
	for (int i = 0; i < 3; i++)
		round_once(f);
	assert_int_equal(f->nrecs, before);
	int64_t until = util_mono_ms() + DEADLINE_MS;
	while ((!all_seen(f, ids, OLD + NEW) || f->nheld) && util_mono_ms() < until) {
		if (f->nheld)
			settle_held(f, 0, CE_ACK, NULL);
		round_once(f);
		assert_true(f->nheld <= 3);
	}
	if (!all_seen(f, ids, OLD + NEW))
		fail_msg("%zu entries handed over, want %d", f->nrecs, OLD + NEW);
	assert_each_once(f, ids, OLD + NEW);
	assert_int_equal(f->most_held, 3);
	ROUND_UNTIL(f, pending(NULL) == 0);
	assert_int_equal(f->hb.processed, OLD + NEW);
	fake_finish(f);
}

/* ---------- main ---------- */

static int write_config(char *path, size_t len)
{
	snprintf(path, len, "%s/consumer.conf", tmpdir);
	FILE *fp = fopen(path, "w");
	if (!fp)
		return -errno;
	fprintf(fp,
		"node = \"t1\";\n"
		"namespace = \"svt\";\n"
		"redis = { url = \"unix://%s\"; command_timeout_ms = 5000; };\n"
		"sqlite = { path = \"%s/snap.db\"; };\n"
		"control = { socket = \"%s/ctl.sock\"; };\n"
		"heartbeat = { interval_ms = 1000; timeout_ms = 3000; };\n"
		"streams = [ \"" STREAM "\" ];\n"
		"pools = ( { name = \"p\"; kind = \"persistence\"; count = 1; group = \"" GROUP "\";\n"
		"            batch = 16; block_ms = 100; claim_idle_ms = 3000; max_deliveries = 3; } );\n",
		sock, tmpdir, tmpdir);
	return fclose(fp) == 0 ? 0 : -errno;
}

int main(void)
{
	const char *bin = getenv("REDIS_SERVER");
	if (!bin || access(bin, X_OK) != 0) {
		printf("REDIS_SERVER is not set or not executable: skipped\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(stop_redis);
	if (start_redis(bin) < 0)
		return 1;
	char path[300];
	struct config_errors errs = {0};
	if (write_config(path, sizeof(path)) < 0 || config_load(path, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.v[i]);
		return 1;
	}
	log_set_level(LOG_WARN);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_claim, reset),
		cmocka_unit_test_setup(test_reread_clean, reset),
		cmocka_unit_test_setup(test_reread_unclean, reset),
		cmocka_unit_test_setup(test_reread_unclean_twice, reset),
		cmocka_unit_test_setup(test_reread_unclean_mixed, reset),
		cmocka_unit_test_setup(test_reread_unclean_maxdel2, reset),
		cmocka_unit_test_setup(test_reread_unclean_claim_now, reset),
		cmocka_unit_test_setup(test_ack_shortfall, reset),
		cmocka_unit_test_setup(test_ack_after_drop, reset),
		cmocka_unit_test_setup(test_group_destroyed, reset),
		cmocka_unit_test_setup(test_stream_deleted_while_blocked, reset),
		cmocka_unit_test_setup(test_pattern_added, reset),
		cmocka_unit_test_setup(test_pattern_deleted, reset),
		cmocka_unit_test_setup(test_pattern_rotation, reset),
		cmocka_unit_test_setup(test_pattern_removed, reset),
		cmocka_unit_test_setup(test_fill_reads, reset),
		cmocka_unit_test_setup(test_deep_reads, reset),
		cmocka_unit_test_setup(test_busy_streams_no_starving, reset),
		cmocka_unit_test_setup(test_pattern_idle, reset),
		cmocka_unit_test_setup(test_pattern_recreated, reset),
		cmocka_unit_test_setup(test_defer_settle, reset),
		cmocka_unit_test_setup(test_poll_fds_while_blocked, reset),
		cmocka_unit_test_setup(test_capacity, reset),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	redisFree(admin);
	config_free(cfg);
	config_errors_free(&errs);
	return failed ? 1 : 0;
}
