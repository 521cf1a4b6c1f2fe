/* worker_persist: stream events -> SQLite snapshots. */
#include "worker_persist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "util.h"

struct persist {
	const struct sv_config *cfg;
	const struct pool_config *pool;
	int slot;
	struct store *store;
	struct sv_event *events;  /* decoded events of the batch in hand */
	size_t cap;
	int64_t next_prune;
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
	int r = store_begin(p->store);
	if (r < 0)
		return fail_batch(p, c, 0, "BEGIN", r);
	size_t decoded = 0;
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
		if (r == STORE_REDUCER_ERROR || r == STORE_ARCHIVED) {
			ce->verdict = CE_DEAD;
			if (r == STORE_ARCHIVED)
				snprintf(ce->reason_buf, sizeof(ce->reason_buf), "run archived");
			ce->reason = ce->reason_buf;
		} else {
			ce->verdict = CE_ACK;
		}
	}
	r = store_commit(p->store);
	if (r < 0)
		return fail_batch(p, c, decoded, "COMMIT", r);
	clear_events(p, decoded);
	return 0;
}

/* retention.events_keep_ms: slot 0 prunes events of terminal runs while
 * the pool is idle, once a minute; snapshots stay. */
static void persist_idle(void *ctx, struct consumer *c)
{
	struct persist *p = ctx;
	(void)c;
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
