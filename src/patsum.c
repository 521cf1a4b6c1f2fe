/* patsum: per pattern and group summaries of pattern streams (patsum.h). */
#include "patsum.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

json_t *patsum_configured(const struct sv_config *cfg)
{
	json_t *set = json_object();
	for (size_t p = 0; p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].patterns.n; i++) {
			const char *pat = cfg->pools[p].patterns.v[i];
			json_t *groups = json_object_get(set, pat);
			if (!groups) {
				groups = json_array();
				json_object_set_new(set, pat, groups);
			}
			bool have = false;
			size_t k;
			json_t *g;
			json_array_foreach(groups, k, g) have |= strcmp(json_string_value(g), cfg->pools[p].group) == 0;
			if (!have)
				json_array_append_new(groups, json_string(cfg->pools[p].group));
		}
	return set;
}

/* The value of key in one group of an XINFO GROUPS reply (a flat
 * key/value list), or NULL. */
static const redisReply *field(const redisReply *g, const char *key)
{
	if (g->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < g->elements; i += 2) {
		const redisReply *k = g->element[i];
		if ((k->type == REDIS_REPLY_STRING || k->type == REDIS_REPLY_STATUS) && k->str &&
		    strcmp(k->str, key) == 0)
			return g->element[i + 1];
	}
	return NULL;
}

static json_int_t int_field(const redisReply *g, const char *key)
{
	const redisReply *v = field(g, key);
	return v && v->type == REDIS_REPLY_INTEGER ? (json_int_t)v->integer : 0;
}

/* The group named want in an XINFO GROUPS reply, or NULL (also for an
 * error reply: the key is gone since discovery saw it). */
static const redisReply *find_group(const redisReply *r, const char *want)
{
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *name = field(r->element[i], "name");
		if (name && name->type == REDIS_REPLY_STRING && name->str && strcmp(name->str, want) == 0)
			return r->element[i];
	}
	return NULL;
}

/* One stream's XINFO GROUPS reply into the sums of each group;
 * pend_at[g] says the group has entries pending there (its oldest is
 * asked next). */
static void sum_stream(const redisReply *r, const json_t *groups, struct patsum_fig *sums, bool *pend_at)
{
	for (size_t g = 0; g < json_array_size(groups); g++) {
		const redisReply *info = find_group(r, json_string_value(json_array_get(groups, g)));
		pend_at[g] = false;
		if (!info) {
			sums[g].missing++;
			continue;
		}
		/* lag is nil when Redis cannot tell (entries deleted inside
		 * the unread range): counted as 0. */
		json_int_t lag = int_field(info, "lag"), pend = int_field(info, "pending");
		sums[g].lag += lag > 0 ? lag : 0;
		sums[g].pending += pend > 0 ? pend : 0;
		if (lag > 0 || pend > 0)
			sums[g].active++;
		pend_at[g] = pend > 0;
	}
}

/* The idle time of the first pending entry, from XPENDING ... IDLE 0 - + 1. */
static json_int_t oldest_idle(const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 1)
		return 0;
	const redisReply *e = r->element[0];
	if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[2]->type != REDIS_REPLY_INTEGER)
		return 0;
	return (json_int_t)e->element[2]->integer;
}

/* Second round of a batch: the oldest pending entry of each (stream,
 * group) with entries pending, pipelined. */
static int sum_oldest(struct rconn *rc, const struct disc_known *k, size_t from, size_t to, const json_t *groups,
		      const bool *pend_at, struct patsum_fig *sums)
{
	size_t ng = json_array_size(groups), asked = 0;
	for (size_t i = from; i < to; i++)
		for (size_t g = 0; g < ng; g++)
			if (pend_at[(i - from) * ng + g]) {
				redisAppendCommand(rc->c, "XPENDING %s %s IDLE 0 - + 1", k->v[i].name,
						   json_string_value(json_array_get(groups, g)));
				asked++;
			}
	for (size_t i = from; i < to && asked; i++)
		for (size_t g = 0; g < ng; g++) {
			if (!pend_at[(i - from) * ng + g])
				continue;
			redisReply *r = rconn_get_reply(rc);
			if (!r)
				return -ENOTCONN;
			json_int_t idle = oldest_idle(r);
			if (idle > sums[g].oldest_idle_ms)
				sums[g].oldest_idle_ms = idle;
			freeReplyObject(r);
		}
	return 0;
}

int patsum_batch(struct rconn *rc, const struct disc_known *k, size_t from, size_t to, const json_t *groups,
		 struct patsum_fig *sums)
{
	if (!rc->c)
		return -ENOTCONN;
	if (from >= to)
		return 0;
	size_t ng = json_array_size(groups);
	bool *pend_at = util_xcalloc((to - from) * (ng ? ng : 1), sizeof(bool));
	for (size_t i = from; i < to; i++)
		redisAppendCommand(rc->c, "XINFO GROUPS %s", k->v[i].name);
	int ret = 0;
	for (size_t i = from; i < to; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r) {
			ret = -ENOTCONN;
			break;
		}
		sum_stream(r, groups, sums, &pend_at[(i - from) * ng]);
		freeReplyObject(r);
	}
	if (ret == 0)
		ret = sum_oldest(rc, k, from, to, groups, pend_at, sums);
	free(pend_at);
	return ret;
}

json_t *patsum_row(const char *pattern, const char *group, size_t matched, const struct patsum_fig *f)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "pattern", pattern, "group", group, "matched",
			 (json_int_t)matched, "active", f->active, "lag", f->lag, "pending", f->pending,
			 "oldest_pending_idle_ms", f->oldest_idle_ms, "missing", f->missing);
}

/* ---------- the paced walker ---------- */

int patsum_init(struct patsum *ps, const struct sv_config *cfg)
{
	memset(ps, 0, sizeof(*ps));
	ps->conf = patsum_configured(cfg);
	ps->np = json_object_size(ps->conf);
	ps->p = util_xcalloc(ps->np ? ps->np : 1, sizeof(*ps->p));
	size_t i = 0;
	const char *pat;
	json_t *groups;
	json_object_foreach(ps->conf, pat, groups) {
		struct patsum_pat *p = &ps->p[i++];
		p->pattern = pat;
		p->groups = groups;
		p->ng = json_array_size(groups);
		p->cur = util_xcalloc(p->ng ? p->ng : 1, sizeof(*p->cur));
		p->done = util_xcalloc(p->ng ? p->ng : 1, sizeof(*p->done));
	}
	int64_t period = cfg->heartbeat.interval_ms;
	ps->period_ms = period < PATSUM_PERIOD_MIN_MS   ? PATSUM_PERIOD_MIN_MS
			: period > PATSUM_PERIOD_MAX_MS ? PATSUM_PERIOD_MAX_MS
							: period;
	return 0;
}

void patsum_free(struct patsum *ps)
{
	for (size_t i = 0; i < ps->np; i++) {
		free(ps->p[i].cur);
		free(ps->p[i].done);
	}
	free(ps->p);
	free(ps->after);
	json_decref(ps->conf);
	memset(ps, 0, sizeof(*ps));
}

/* The pattern being walked is done: publish its figures, go on. */
static void finish_pattern(struct patsum *ps, size_t matched, int64_t now_ms)
{
	struct patsum_pat *p = &ps->p[ps->at];
	memcpy(p->done, p->cur, p->ng * sizeof(*p->cur));
	memset(p->cur, 0, p->ng * sizeof(*p->cur));
	p->done_matched = matched;
	p->done_ms = now_ms ? now_ms : 1;
	free(ps->after);
	ps->after = NULL;
	if (++ps->at == ps->np)
		ps->in_pass = false;
}

static void abandon_pass(struct patsum *ps)
{
	for (size_t i = 0; i < ps->np; i++)
		memset(ps->p[i].cur, 0, ps->p[i].ng * sizeof(*ps->p[i].cur));
	free(ps->after);
	ps->after = NULL;
	ps->in_pass = false;
}

void patsum_step(struct patsum *ps, struct rconn *rc, const struct discover *d, int64_t now_ms)
{
	if (ps->np == 0 || now_ms < ps->next_ms || !rc->c)
		return;
	if (!ps->in_pass) {
		ps->in_pass = true;
		ps->at = 0;
		ps->pass_start_ms = now_ms;
	}
	size_t keys = 0;
	/* Up to PATSUM_STEP_KEYS keys, over as many patterns as that takes
	 * (a pattern with no streams costs nothing). */
	while (ps->in_pass && keys < PATSUM_STEP_KEYS) {
		struct patsum_pat *p = &ps->p[ps->at];
		const struct disc_known *k = discover_known(d, p->pattern);
		size_t n = k ? k->n : 0;
		size_t from = ps->after && k ? disc_known_after(k, ps->after) : 0;
		size_t to = from + (PATSUM_STEP_KEYS - keys) < n ? from + (PATSUM_STEP_KEYS - keys) : n;
		if (from < to) {
			if (patsum_batch(rc, k, from, to, p->groups, p->cur) < 0) {
				abandon_pass(ps);
				break;
			}
			free(ps->after);
			ps->after = util_xstrdup(k->v[to - 1].name);
			keys += to - from;
		}
		if (to >= n)
			finish_pattern(ps, n, now_ms);
	}
	/* The rate: each key summed buys 1000 / PATSUM_KEYS_PER_S ms of rest. */
	ps->next_ms = now_ms + (int64_t)keys * 1000 / PATSUM_KEYS_PER_S;
	if (!ps->in_pass && ps->next_ms < ps->pass_start_ms + ps->period_ms)
		ps->next_ms = ps->pass_start_ms + ps->period_ms;
}

int64_t patsum_wait_ms(const struct patsum *ps, int64_t now_ms)
{
	if (ps->np == 0)
		return INT64_MAX;
	return ps->next_ms > now_ms ? ps->next_ms - now_ms : 0;
}

json_t *patsum_rows(const struct patsum *ps, int64_t now_ms)
{
	json_t *rows = json_array();
	for (size_t i = 0; i < ps->np; i++) {
		const struct patsum_pat *p = &ps->p[i];
		if (!p->done_ms)
			continue;
		for (size_t g = 0; g < p->ng; g++) {
			json_t *row = patsum_row(p->pattern, json_string_value(json_array_get(p->groups, g)),
						 p->done_matched, &p->done[g]);
			json_object_set_new(row, "age_ms", json_integer(now_ms - p->done_ms));
			json_array_append_new(rows, row);
		}
	}
	return rows;
}
