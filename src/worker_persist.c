/* worker_persist: stream events -> SQLite snapshots. */
#include "worker_persist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	int slot;
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
static int poll_forgets(struct persist *p, struct consumer *c)
{
	struct rconn *rc = consumer_host(c)->rc;
	p->next_forget_poll = util_mono_ms() + FORGET_POLL_MS;
	for (;;) {
		redisReply *r = rconn_command(rc, "XREAD COUNT %d STREAMS %s %s", FORGET_READ_COUNT, p->forget_key,
					      p->forget_last);
		if (!r)
			return -ENOTCONN;
		if (r->type == REDIS_REPLY_ERROR) {
			/* Not a stream (someone wrote another type there). */
			log_warn("%s: XREAD %s: %s", __func__, p->forget_key, r->str);
			freeReplyObject(r);
			return 0;
		}
		size_t got = 0;
		int ret = 0;
		const redisReply *entries = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
							    r->element[0]->type == REDIS_REPLY_ARRAY &&
							    r->element[0]->elements == 2
						    ? r->element[0]->element[1]
						    : NULL;
		for (size_t i = 0; entries && entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
			const redisReply *e = entries->element[i];
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
			    e->element[0]->len >= sizeof(p->forget_last))
				continue;
			got++;
			if ((ret = forget_apply(p, e->element[0]->str, e->element[1])) < 0)
				break;
			snprintf(p->forget_last, sizeof(p->forget_last), "%s", e->element[0]->str);
		}
		freeReplyObject(r);
		if (ret < 0 || got < FORGET_READ_COUNT)
			return ret;
	}
}

static int persist_start(void *ctx, struct consumer *c)
{
	struct persist *p = ctx;
	int r = check_foreign_consumers(p, c);
	if (r < 0)
		return r;
	struct store_opts opts = {
		.synchronous = p->cfg->sqlite.synchronous,
		.busy_timeout_ms = p->cfg->sqlite.busy_timeout_ms,
		.group = p->cfg->control.group,
		.reducer = p->pool->reducer,
	};
	if (store_open(&p->store, pool_sqlite_path(p), &opts) < 0)
		return -EIO; /* store_open logged why */
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
	int r = poll_forgets(p, c);
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
		if (event_decode(&ce->e, ev, &reason) < 0) {
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
	if (r < 0)
		return fail_batch(p, c, decoded, "COMMIT", r);
	clear_events(p, decoded);
	if (forgotten) {
		hb->forgotten += forgotten;
		log_info("acked %zu entries of forgotten runs (written before their forget): not stored", forgotten);
	}
	return 0;
}

/* retention.events_keep_ms: slot 0 prunes events of terminal runs while
 * the pool is idle, once a minute; snapshots stay. */
static void persist_idle(void *ctx, struct consumer *c)
{
	struct persist *p = ctx;
	if (p->store && util_mono_ms() >= p->next_forget_poll)
		(void)poll_forgets(p, c); /* retried at the next batch */
	int64_t keep = p->cfg->retention.events_keep_ms;
	if (keep <= 0 || p->slot != 0 || !p->store || util_mono_ms() < p->next_prune)
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
	p->slot = slot;
	kind->ctx = p;
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
	if (p->store)
		store_close(p->store);
	free(p->events);
	free(p);
	kind->ctx = NULL;
}
