/* worker_persist: stream events -> SQLite snapshots. */
#include "worker_persist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "store.h"
#include "util.h"

/* NS:forget is read at least this often while idle, and before every
 * batch (see poll_forgets). */
#define FORGET_POLL_MS 1000
#define FORGET_READ_COUNT 64
/* Bounds on what an NS:forget entry may ask (anyone can write to Redis):
 * runs per entry, bytes per run id. */
#define FORGET_RUNS_MAX 10000
#define FORGET_RUN_MAX 65536

struct persist {
	const struct sv_config *cfg;
	const struct pool_config *pool;
	struct store *store;
	struct sv_event *events;  /* decoded events of the batch in hand */
	size_t cap;
	int64_t next_prune;
	char forget_key[160];     /* NS:forget */
	char forget_last[48];     /* id of the last NS:forget entry applied here */
	int64_t next_forget_poll; /* monotonic ms */
	/* The batch last handed to us (first entry id, size) and whether
	 * NS:forget was read since it arrived: a degraded retry of it needs
	 * no new read, so it can commit while Redis is away. */
	char batch_first[48];
	size_t batch_n;
	bool batch_polled;
	bool forgets_fresh;       /* NS:forget read in this round's pipeline (rt_replies) */
	/* The writer lease (see "one writer per file" below). */
	struct heartbeat *hb;
	char holder[320];         /* "NODE/POOL/SLOT pid PID" */
	bool writer;              /* holds the lease: reads and commits */
	int64_t lease_ttl_ms, lease_every_ms;
	int64_t next_lease_ms;    /* monotonic: next renewal (writer) or check (standby) */
	int lock_fd;              /* SQLITE_PATH.lock, flock()ed by the writer when it can */
	bool have_flock;
	int quick_checks;         /* lease checks 10 ms apart left (the flock just came) */
	int lock_efd;             /* eventfd: the waiter thread got the flock */
	bool waiter_started;
	pthread_t waiter;
};

static const char *pool_sqlite_path(const struct persist *p)
{
	return p->pool->sqlite_path && p->pool->sqlite_path[0] ? p->pool->sqlite_path : p->cfg->sqlite.path;
}

/* A persistence group shared with another node would scatter one run's
 * events over several databases: refuse to start (exit 78). */
static int check_foreign_consumers(struct persist *p, struct consumer *c)
{
	const struct pool_config *pool = p->pool;
	size_t nodelen = strlen(p->cfg->node);
	for (size_t i = 0; i < pool->streams.n; i++) {
		redisReply *r = consumer_list(c, pool->streams.v[i]);
		if (!r)
			return -ENOTCONN;
		for (size_t j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements; j++) {
			redisReply *info = r->element[j];
			for (size_t k = 0; info->type == REDIS_REPLY_ARRAY && k + 1 < info->elements; k += 2) {
				if (strcmp(info->element[k]->str, "name") != 0)
					continue;
				const char *name = info->element[k + 1]->str;
				if (strncmp(name, p->cfg->node, nodelen) == 0 && name[nodelen] == '/')
					continue;
				log_error("group %s on %s has consumer %s of another node: a persistence group "
					  "must belong to one node (use persist@{node}); refusing to start",
					  pool->group, pool->streams.v[i], name);
				freeReplyObject(r);
				return -EINVAL;
			}
		}
		freeReplyObject(r);
	}
	return 0;
}

/* ---- forgetting runs (streamvisorctl forget) ---- */

/* Take the runs and the forget position of an NS:forget entry (fields
 * "runs": a JSON array of run ids, "position": an entry id).  Returns the
 * runs (json array, owned) or NULL with why set. */
static json_t *forget_entry_decode(const redisReply *fields, uint64_t *pos_ms, uint64_t *pos_seq,
				   const char **why)
{
	const redisReply *runs = NULL, *pos = NULL;
	for (size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k->str, "runs") == 0)
			runs = v;
		else if (strcmp(k->str, "position") == 0)
			pos = v;
	}
	*why = "no runs or position field";
	if (!runs || !pos)
		return NULL;
	*why = "bad position";
	if (event_parse_id(pos->str, pos_ms, pos_seq) < 0)
		return NULL;
	*why = "runs is not a JSON array of run ids";
	json_t *a = json_loadb(runs->str, runs->len, 0, NULL);
	size_t i;
	json_t *r;
	bool ok = json_is_array(a) && json_array_size(a) <= FORGET_RUNS_MAX;
	json_array_foreach(a, i, r) ok = ok && json_is_string(r) && json_string_length(r) > 0 &&
					 json_string_length(r) <= FORGET_RUN_MAX &&
					 strlen(json_string_value(r)) == json_string_length(r);
	if (!ok) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* Apply one NS:forget entry to the SQLite file (an entry that makes no
 * sense is recorded as applied, with nothing forgotten). */
static int forget_apply(struct persist *p, const char *id, const redisReply *fields)
{
	uint64_t pos_ms = 0, pos_seq = 0;
	const char *why = NULL;
	json_t *a = forget_entry_decode(fields, &pos_ms, &pos_seq, &why);
	size_t n = a ? json_array_size(a) : 0;
	const char **runs = util_xcalloc(n ? n : 1, sizeof(*runs));
	for (size_t i = 0; i < n; i++)
		runs[i] = json_string_value(json_array_get(a, i));
	if (!a)
		log_warn("%s: %s entry %s ignored: %s", __func__, p->forget_key, id, why);
	int r = store_forget(p->store, id, pos_ms, pos_seq, runs, n);
	if (r > 0 || (r == 0 && n > 0))
		log_kv(LOG_INFO, KV("forget_entry", id, "run", runs[0]),
		       "forgot %zu run(s) before position %llu-%llu (%d with stored state in this file)", n,
		       (unsigned long long)pos_ms, (unsigned long long)pos_seq, r);
	free(runs);
	json_decref(a);
	return r < 0 ? r : 0;
}

/* Apply the forgets written since the last one applied.  Before every
 * batch: a producer that reuses a run id writes after its forget, so by
 * the time its entries are read the forget is in NS:forget, and applied
 * here before them (they must not meet the old run's events).  Returns 0,
 * -ENOTCONN, or a store error. */
/* Apply the entries of an XREAD reply of NS:forget.  *got: how many
 * entries it had.  Returns 0 or a store error. */
static int forget_reply(struct persist *p, const redisReply *r, size_t *got)
{
	*got = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		/* Not a stream (someone wrote another type there). */
		log_warn("%s: XREAD %s: %s", __func__, p->forget_key, r->str);
		return 0;
	}
	const redisReply *entries = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
					    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2
					    ? r->element[0]->element[1]
					    : NULL;
	for (size_t i = 0; entries && entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[0]->len >= sizeof(p->forget_last))
			continue;
		(*got)++;
		int ret = forget_apply(p, e->element[0]->str, e->element[1]);
		if (ret < 0)
			return ret;
		snprintf(p->forget_last, sizeof(p->forget_last), "%s", e->element[0]->str);
	}
	return 0;
}

/* Apply the forgets written since the last one applied.  Before every
 * batch: a producer that reuses a run id writes after its forget, so by
 * the time its entries are read the forget is in NS:forget, and applied
 * here before them (they must not meet the old run's events).  A batch of
 * new entries has it read already, in its read's round trip (rt_append:
 * Redis runs it after the read).  Returns 0, -ENOTCONN, or a store
 * error. */
static int poll_forgets(struct persist *p, struct consumer *c)
{
	struct rconn *rc = consumer_host(c)->rc;
	p->next_forget_poll = util_mono_ms() + FORGET_POLL_MS;
	for (;;) {
		redisReply *r = rconn_command(rc, "XREAD COUNT %d STREAMS %s %s", FORGET_READ_COUNT, p->forget_key,
					      p->forget_last);
		if (!r)
			return -ENOTCONN;
		size_t got = 0;
		int ret = forget_reply(p, r, &got);
		freeReplyObject(r);
		if (ret < 0 || got < FORGET_READ_COUNT)
			return ret;
	}
}

static int persist_rt_append(void *ctx, redisContext *rc)
{
	struct persist *p = ctx;
	p->forgets_fresh = false;
	if (!p->store || !p->writer || !rc)
		return 0;
	redisAppendCommand(rc, "XREAD COUNT %d STREAMS %s %s", FORGET_READ_COUNT, p->forget_key, p->forget_last);
	return 1;
}

static void persist_rt_replies(void *ctx, redisReply **r, size_t n)
{
	struct persist *p = ctx;
	size_t got = 0;
	if (n == 1 && forget_reply(p, r[0], &got) == 0 && got < FORGET_READ_COUNT) {
		p->forgets_fresh = true; /* all read: the round's batch needs no poll */
		p->next_forget_poll = util_mono_ms() + FORGET_POLL_MS;
	}
}


/* ---- one writer per file ----
 *
 * Two workers committing to one SQLite file spend half their time waiting
 * for each other's write lock, and each replays the runs the other moved
 * (issue 14: 2 workers gave 0.6x of 1).  So a persistence pool has one
 * writer per file, holding the file's lease (store_lease_take), and hot
 * standbys: started, connected, heartbeating (status "standby"), reading
 * nothing (capacity 0).  The lease is checked inside every batch's
 * transaction, so a writer that was stopped past its expiry and replaced
 * commits nothing when it resumes.
 *
 * Taking over:
 * - the writer dies (crash, SIGKILL) or exits: it also holds an flock()
 *   on SQLITE_PATH.lock, which the kernel releases with the process.  A
 *   standby's waiter thread sleeps in flock() and wakes the loop through
 *   an eventfd; the standby then takes the lease at once (forced, once the
 *   holder's pid is gone) and claims every pending entry of the group
 *   (consumer_claim_now), not after claim_idle_ms;
 * - the writer stalls (SIGSTOP): the lease (heartbeat.timeout_ms / 2)
 *   expires, which standbys check every heartbeat.interval_ms, before the
 *   master's hang detection (heartbeat.timeout_ms) kills the writer.
 * A thread, not a poll: no file-lock release is pollable, and a standby
 * must not wake every few ms to ask (SPEC §10 idle cost). */

/* arg: the lock fd and the eventfd packed in one word (the thread may
 * outlive struct persist, freed at exit while it sleeps). */
static void *lock_waiter(void *arg)
{
	uintptr_t fds = (uintptr_t)arg;
	int lock_fd = (int)(fds >> 32), efd = (int)(fds & 0xffffffffu);
	while (flock(lock_fd, LOCK_EX) < 0 && errno == EINTR)
		;
	uint64_t one = 1;
	ssize_t w = write(efd, &one, sizeof(one));
	(void)w; /* an eventfd write of 1 cannot fail short of overflow */
	return NULL;
}

/* Start the waiter thread, with every signal blocked in it (signals are
 * for the loop's thread, whose poll() they must interrupt). */
static void waiter_start(struct persist *p)
{
	if (p->waiter_started || p->have_flock)
		return;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = pthread_create(&p->waiter, NULL, lock_waiter,
				(void *)(((uintptr_t)(unsigned)p->lock_fd << 32) | (unsigned)p->lock_efd));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		log_warn("%s: pthread_create: %s: a dead writer is noticed at its lease expiry only", __func__,
			 strerror(r));
		return;
	}
	pthread_detach(p->waiter); /* may sleep in flock() until exit */
	p->waiter_started = true;
}

/* The holder named in a lease row ("NAME pid PID") is a process that is
 * gone.  Only asked while we hold the flock, which a live holder would
 * normally hold: a holder without it took the lease at an expiry. */
static bool holder_gone(const char *holder)
{
	const char *at = strrchr(holder, ' ');
	char *end;
	long pid = at ? strtol(at + 1, &end, 10) : 0;
	if (!at || pid <= 1 || *end || at - holder < 4 || strncmp(at - 4, " pid", 4) != 0)
		return true; /* not one of ours: nothing holds it */
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return true;
	/* Exited but not reaped yet (its flock is released at exit, before
	 * the master's waitpid): a zombie is gone as well. */
	char buf[256];
	const char *st = util_proc_stat((pid_t)pid, buf, sizeof(buf));
	return !st || *st == 'Z' || *st == 'X';
}

static void become_standby(struct persist *p)
{
	p->writer = false;
	p->hb->status = HB_STANDBY;
	p->next_lease_ms = util_mono_ms() + p->lease_every_ms;
	waiter_start(p);
}

/* Take the lease if we may.  Returns 1 (writer now), 0 (standby) or a
 * negative errno (SQLite). */
static int lease_try(struct persist *p, struct consumer *c)
{
	char other[256] = "";
	/* Without the flock, only an expired lease: a free one is for the
	 * flock's holder (two workers starting at once), whose death the
	 * standbys notice at once only while it holds both. */
	int r = store_lease_take(p->store, p->holder, p->lease_ttl_ms,
				 p->have_flock ? STORE_LEASE_FREE : STORE_LEASE_EXPIRED, other, sizeof(other));
	if (r == 0 && p->have_flock && holder_gone(other))
		r = store_lease_take(p->store, p->holder, p->lease_ttl_ms, STORE_LEASE_FORCE, NULL, 0);
	if (r < 0)
		return r;
	p->next_lease_ms = util_mono_ms() + p->lease_every_ms;
	if (r == 0) {
		if (p->writer)
			log_warn("writer lease lost to %s: standing by", other);
		become_standby(p);
		if (p->quick_checks > 0) {
			/* The flock is released early in a process's exit, before
			 * it is a zombie: for a moment the holder looks alive. */
			p->quick_checks--;
			p->next_lease_ms = util_mono_ms() + 10;
		}
		return 0;
	}
	if (!p->writer) {
		log_info("writer of %s%s", pool_sqlite_path(p), p->have_flock ? "" : " (lease taken at expiry)");
		p->writer = true;
		p->hb->status = HB_IDLE;
		consumer_claim_now(c);
	}
	return 1;
}

/* Renew (writer) or check (standby) the lease when due.  Writers renew at
 * every commit too. */
static void lease_tick(struct persist *p, struct consumer *c)
{
	if (p->store && util_mono_ms() >= p->next_lease_ms)
		(void)lease_try(p, c); /* an SQLite error: tried again next time */
}

static int lease_open(struct persist *p)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s.lock", pool_sqlite_path(p)) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	p->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (p->lock_fd < 0) {
		log_error("%s: open %s: %s", __func__, path, strerror(errno));
		return -errno;
	}
	p->lock_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->lock_efd < 0) {
		log_error("%s: eventfd: %s", __func__, strerror(errno));
		return -errno;
	}
	p->have_flock = flock(p->lock_fd, LOCK_EX | LOCK_NB) == 0;
	return 0;
}

static size_t persist_capacity(void *ctx)
{
	struct persist *p = ctx;
	if (!p->writer && p->hb)
		p->hb->status = HB_STANDBY;
	return p->writer ? SIZE_MAX : 0;
}

/* The store's share of the heartbeat's time split (cumulative since
 * store_open, like the split). */
static void split_from_store(struct persist *p)
{
	struct store_stats st;
	if (!p->store || !p->hb)
		return;
	store_stats(p->store, &st);
	p->hb->split_us[HB_SPLIT_REDUCE] = st.reduce_us;
	p->hb->split_us[HB_SPLIT_INSERT] = st.insert_us;
	p->hb->split_us[HB_SPLIT_COMMIT] = st.commit_us;
}

/* Checkpoints (store.h): write the rows of runs whose events stopped
 * once they are due (all: every row behind, before exiting). */
static void flush_rows(struct persist *p, bool all)
{
	if (!p->store || !p->writer)
		return;
	int r = store_flush(p->store, all);
	if (r > 0)
		split_from_store(p);
	if (r == -ESTALE) {
		log_warn("rows not flushed: the writer lease was lost; standing by");
		become_standby(p);
	}
	/* other errors: logged by the store, tried again when next due */
}

static size_t persist_poll_fds(void *ctx, struct pollfd *fds, size_t max, int64_t *deadline_ms)
{
	struct persist *p = ctx;
	if (p->next_lease_ms < *deadline_ms)
		*deadline_ms = p->next_lease_ms;
	if (p->writer && p->store) {
		/* a blocking read must not keep a due row waiting */
		int64_t due = store_flush_due_ms(p->store);
		if (due >= 0 && util_mono_ms() + due < *deadline_ms)
			*deadline_ms = util_mono_ms() + due;
	}
	if (!max || !p->waiter_started || p->have_flock)
		return 0;
	fds[0] = (struct pollfd){.fd = p->lock_efd, .events = POLLIN};
	return 1;
}

static void persist_poll_ready(void *ctx, struct consumer *c, const struct pollfd *fds, size_t n)
{
	struct persist *p = ctx;
	uint64_t v;
	if (n && fds[0].revents && read(p->lock_efd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
		p->have_flock = true;
		p->next_lease_ms = 0; /* the writer may be gone: ask now */
		p->quick_checks = 50;
	}
	lease_tick(p, c);
	flush_rows(p, false);
}

/* store_opts.tick: beat while a schema migration runs. */
static void migrate_tick(void *arg)
{
	const struct consumer_host *h = arg;
	heartbeat_beat_if_due(h->hb, h->rc);
}

static int persist_start(void *ctx, struct consumer *c)
{
	struct persist *p = ctx;
	int r = check_foreign_consumers(p, c);
	if (r < 0)
		return r;
	char group[128];
	struct store_opts opts = {
		.synchronous = p->cfg->sqlite.synchronous,
		.busy_timeout_ms = p->cfg->sqlite.busy_timeout_ms,
		.group = config_files_group(p->cfg, group, sizeof(group)),
		.reducer = p->pool->reducer,
		.tick = migrate_tick,
		.tick_arg = (void *)consumer_host(c),
		.snapshot_interval_ms = p->pool->snapshot_interval_ms,
	};
	if (store_open(&p->store, pool_sqlite_path(p), &opts) < 0)
		return -EIO; /* store_open logged why */
	p->hb = consumer_host(c)->hb;
	snprintf(p->holder, sizeof(p->holder), "%s pid %ld", consumer_name(c), (long)getpid());
	if (lease_open(p) < 0 || lease_try(p, c) < 0)
		return -EIO;
	snprintf(p->forget_key, sizeof(p->forget_key), "%s:forget", p->cfg->namespace);
	if (store_forget_last(p->store, p->forget_last, sizeof(p->forget_last)) < 0)
		return -EIO;
	/* A failure here is retried before the first batch. */
	(void)poll_forgets(p, c);
	return 0;
}

static void clear_events(struct persist *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		event_clear(&p->events[i]);
}

/* The batch is not durable: roll back, say why in the heartbeat, and let
 * the consumer retry it degraded. */
static int fail_batch(struct persist *p, struct consumer *c, size_t decoded, const char *what, int err)
{
	struct heartbeat *hb = consumer_host(c)->hb;
	store_rollback(p->store);
	clear_events(p, decoded);
	snprintf(hb->last_error, sizeof(hb->last_error), "sqlite %s: %s (%s)", what, store_errmsg(p->store),
		 strerror(-err));
	hb->failed++;
	return -EAGAIN;
}

static int persist_batch(void *ctx, struct consumer *c, struct consumer_batch *b)
{
	struct persist *p = ctx;
	if (!p->writer) {
		/* Claimed while we were the writer, handed over after a lost
		 * lease: the new writer claims them. */
		for (size_t i = 0; i < b->n; i++)
			b->v[i].verdict = CE_DROP;
		return 0;
	}
	if (b->n > p->cap) {
		free(p->events);
		p->cap = b->n;
		p->events = util_xcalloc(p->cap, sizeof(*p->events));
	}
	struct heartbeat *hb = consumer_host(c)->hb;
	bool retry = b->n == p->batch_n && b->n && strcmp(b->v[0].e.id, p->batch_first) == 0;
	if (!retry) {
		snprintf(p->batch_first, sizeof(p->batch_first), "%s", b->n ? b->v[0].e.id : "");
		p->batch_n = b->n;
		p->batch_polled = false;
	}
	bool fresh = p->forgets_fresh && !b->history;
	p->forgets_fresh = false;
	int r = fresh ? 0 : poll_forgets(p, c);
	if (r == 0)
		p->batch_polled = true;
	else if (r == -ENOTCONN && p->batch_polled)
		r = 0; /* read after this batch arrived: its forgets are applied */
	if (r == -ENOTCONN) {
		snprintf(hb->last_error, sizeof(hb->last_error), "redis: cannot read %s", p->forget_key);
		return -EAGAIN;
	}
	if (r < 0)
		return fail_batch(p, c, 0, "forget", r);
	r = store_begin(p->store);
	if (r < 0)
		return fail_batch(p, c, 0, "BEGIN", r);
	size_t decoded = 0, forgotten = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct consumer_entry *ce = &b->v[i];
		if (ce->verdict == CE_DEAD || ce->verdict == CE_DROP)
			continue;
		const char *reason = NULL;
		struct sv_event *ev = &p->events[decoded];
		int64_t t0 = util_mono_us();
		int dr = event_decode(&ce->e, ev, &reason);
		hb->split_us[HB_SPLIT_DECODE] += (uint64_t)(util_mono_us() - t0);
		if (dr < 0) {
			ce->verdict = CE_DEAD;
			ce->reason = reason ? reason : "undecodable entry";
			continue;
		}
		decoded++;
		r = store_apply(p->store, ev, ce->reason_buf, sizeof(ce->reason_buf));
		if (r < 0)
			return fail_batch(p, c, decoded, "insert", r);
		if (r == STORE_REDUCER_ERROR || r == STORE_ARCHIVED || r == STORE_CONFLICT) {
			ce->verdict = CE_DEAD;
			if (r == STORE_ARCHIVED)
				snprintf(ce->reason_buf, sizeof(ce->reason_buf), "run archived");
			ce->reason = ce->reason_buf;
			hb->conflicts += r == STORE_CONFLICT;
		} else {
			ce->verdict = CE_ACK;
			forgotten += r == STORE_FORGOTTEN;
			hb->reruns += r == STORE_RERUN;
		}
	}
	r = store_commit(p->store);
	split_from_store(p);
	if (r == -ESTALE) {
		/* Another worker writes the file now (we were stopped past the
		 * lease): nothing was committed; it claims these entries. */
		clear_events(p, decoded);
		for (size_t i = 0; i < b->n; i++)
			b->v[i].verdict = CE_DROP;
		log_warn("batch of %zu entries not committed: the writer lease was lost; standing by", b->n);
		become_standby(p);
		return 0;
	}
	if (r < 0)
		return fail_batch(p, c, decoded, "COMMIT", r);
	p->next_lease_ms = util_mono_ms() + p->lease_every_ms; /* the commit renewed it */
	clear_events(p, decoded);
	if (forgotten) {
		hb->forgotten += forgotten;
		log_info("acked %zu entries of forgotten runs (written before their forget): not stored", forgotten);
	}
	return 0;
}

/* Housekeeping while idle: the lease; and, for the writer, forgets and
 * retention.events_keep_ms (events of terminal runs pruned, once a
 * minute; snapshots stay). */
static void persist_idle(void *ctx, struct consumer *c)
{
	struct persist *p = ctx;
	p->forgets_fresh = false; /* for this round's (empty) read only */
	lease_tick(p, c);
	if (!p->writer)
		return;
	flush_rows(p, false);
	if (p->store && util_mono_ms() >= p->next_forget_poll)
		(void)poll_forgets(p, c); /* retried at the next batch */
	int64_t keep = p->cfg->retention.events_keep_ms;
	if (keep <= 0 || !p->store || util_mono_ms() < p->next_prune)
		return;
	p->next_prune = util_mono_ms() + (keep / 2 < 60000 ? (keep / 2 > 1000 ? keep / 2 : 1000) : 60000);
	int64_t n = store_prune(p->store, util_wall_ms() - keep);
	if (n > 0)
		log_info("archived %lld terminal runs older than %lld ms (events pruned, snapshots kept)",
			 (long long)n, (long long)keep);
}

int worker_persist_init(const struct sv_config *cfg, const struct pool_config *pool, int slot,
			struct consumer_kind *kind)
{
	struct persist *p = util_xcalloc(1, sizeof(*p));
	p->cfg = cfg;
	p->pool = pool;
	(void)slot; /* the writer prunes, whatever its slot */
	p->lock_fd = p->lock_efd = -1;
	/* Renewed every heartbeat interval (and at every commit), so it
	 * outlives a block_ms read; half the heartbeat timeout, so a stopped
	 * writer is replaced before the master's hang detection kills it
	 * (and the resumed writer is seen to commit nothing). */
	p->lease_ttl_ms = cfg->heartbeat.timeout_ms / 2;
	p->lease_every_ms = cfg->heartbeat.interval_ms;
	kind->ctx = p;
	kind->capacity = persist_capacity;
	kind->poll_fds = persist_poll_fds;
	kind->poll_ready = persist_poll_ready;
	kind->rt_append = persist_rt_append;
	kind->rt_replies = persist_rt_replies;
	kind->start = persist_start;
	kind->batch = persist_batch;
	kind->idle = persist_idle;
	return 0;
}

void worker_persist_free(struct consumer_kind *kind)
{
	struct persist *p = kind->ctx;
	if (!p)
		return;
	if (p->store) {
		flush_rows(p, true); /* no row left behind by a clean exit */
		store_lease_release(p->store);
		store_close(p->store);
	}
	/* The waiter thread may sleep in flock() on lock_fd until exit:
	 * closing the fd under it would be a use of a closed fd.  The
	 * process is about to exit; the kernel closes both. */
	if (!p->waiter_started) {
		if (p->lock_fd >= 0)
			close(p->lock_fd);
		if (p->lock_efd >= 0)
			close(p->lock_efd);
	}
	free(p->events);
	free(p);
	kind->ctx = NULL;
}
