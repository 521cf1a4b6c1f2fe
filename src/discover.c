/* discover: pattern streams found by paced SCAN passes and, when the
 * server has them on, keyspace notifications (see discover.h). */
#include "discover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "util.h"

/* ---------- the known set ---------- */

void disc_known_free(struct disc_known *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i].name);
	free(k->v);
	memset(k, 0, sizeof(*k));
}

/* Where name is or would go. */
static size_t lower_bound(const struct disc_known *k, const char *name, bool *found)
{
	size_t lo = 0, hi = k->n;
	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(k->v[mid].name, name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

long disc_known_find(const struct disc_known *k, const char *name)
{
	bool found;
	size_t i = lower_bound(k, name, &found);
	return found ? (long)i : -1;
}

size_t disc_known_after(const struct disc_known *k, const char *after)
{
	size_t lo = 0, hi = k->n;
	while (after && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(k->v[mid].name, after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void disc_known_pass_begin(struct disc_known *k)
{
	for (size_t i = 0; i < k->n; i++)
		k->v[i].seen = false;
}

int disc_known_seen(struct disc_known *k, const char *name)
{
	bool found;
	size_t i = lower_bound(k, name, &found);
	if (found) {
		k->v[i].seen = true;
		return 0;
	}
	if (k->n == k->cap) {
		size_t ncap = k->cap ? k->cap * 2 : 16;
		struct disc_name *nv = realloc(k->v, ncap * sizeof(*nv));
		if (!nv)
			abort();
		k->v = nv;
		k->cap = ncap;
	}
	memmove(&k->v[i + 1], &k->v[i], (k->n - i) * sizeof(*k->v));
	k->v[i].name = util_xstrdup(name);
	k->v[i].seen = true;
	k->v[i].last_add_ms = 0;
	k->n++;
	return 1;
}

int disc_known_remove(struct disc_known *k, const char *name)
{
	bool found;
	size_t i = lower_bound(k, name, &found);
	if (!found)
		return 0;
	free(k->v[i].name);
	memmove(&k->v[i], &k->v[i + 1], (k->n - i - 1) * sizeof(*k->v));
	k->n--;
	return 1;
}

json_t *disc_known_unseen(const struct disc_known *k)
{
	json_t *out = json_array();
	for (size_t i = 0; i < k->n; i++)
		if (!k->v[i].seen)
			json_array_append_new(out, json_string(k->v[i].name));
	return out;
}

size_t disc_json_cost(size_t len)
{
	return 6 * len + 3;
}

/* ---------- pending changes and reporting ---------- */

static void drop_from(json_t *list, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		if (strcmp(json_string_value(v), name) == 0) {
			json_array_remove(list, i);
			return;
		}
	}
}

/* A name came: report it.  A name that went and came back before the
 * report stays in "remove" too: the master applies remove, then add. */
static void note_add(struct disc_pattern *p, const char *name)
{
	if (disc_known_seen(&p->known, name) == 1)
		json_array_append_new(p->add, json_string(name));
}

/* An entry was added to name (an xadd notification): a new name is
 * reported as added; a known one that had no xadd for wake_after_ms as
 * woken (its readers may have let it go idle). */
static void note_xadd(struct disc_pattern *p, const char *name, int64_t now)
{
	long i = disc_known_find(&p->known, name);
	if (i < 0) {
		note_add(p, name); /* new: its readers start with it active */
		i = disc_known_find(&p->known, name);
	} else if (now - p->known.v[i].last_add_ms >= p->wake_after_ms) {
		/* Also the first xadd seen on a stream SCAN found (0): whether
		 * its readers hold it active is unknown, and a wake costs little. */
		json_array_append_new(p->wake, json_string(name));
	}
	p->known.v[i].last_add_ms = now;
}

/* A name went: a name never reported is simply forgotten. */
static void note_remove(struct disc_pattern *p, const char *name)
{
	if (disc_known_remove(&p->known, name) != 1)
		return;
	size_t before = json_array_size(p->add);
	drop_from(p->add, name);
	if (json_array_size(p->add) == before)
		json_array_append_new(p->remove, json_string(name));
}

/* A key name from Redis that may be reported: no NUL, UTF-8 (JSON),
 * not ours, matching, and small enough for a message. */
static bool acceptable(struct discover *d, const struct disc_pattern *p, const char *s, size_t len)
{
	if (!s || strlen(s) != len || disc_json_cost(len) > DISCOVER_MSG_BUDGET / 2) {
		if (d->bad_names++ == 0)
			log_warn("%s: a key matching %s with a NUL or over %u bytes; left out (logged once)",
				 __func__, p->pattern, DISCOVER_MSG_BUDGET / 12);
		return false;
	}
	if (config_own_key(d->cfg, s) || !config_pattern_match(p->pattern, s))
		return false;
	json_t *probe = json_stringn(s, len);
	if (!probe) {
		if (d->bad_names++ == 0)
			log_warn("%s: a key matching %s is not UTF-8; left out (logged once)", __func__,
				 p->pattern);
		return false;
	}
	json_decref(probe);
	return true;
}

static json_t *new_msg(const struct disc_pattern *p)
{
	return json_pack("{s:s, s:[], s:[], s:[]}", "pattern", p->pattern, "add", "remove", "wake");
}

/* Removals first, then additions, in messages of at most
 * DISCOVER_MSG_BUDGET bytes each. */
static void report(struct discover *d, struct disc_pattern *p)
{
	if (json_array_size(p->add) == 0 && json_array_size(p->remove) == 0 && json_array_size(p->wake) == 0)
		return;
	size_t base = 64 + disc_json_cost(strlen(p->pattern)), used = base;
	json_t *msg = new_msg(p);
	const char *lists[] = {"remove", "add", "wake"};
	json_t *src[] = {p->remove, p->add, p->wake};
	for (int l = 0; l < 3; l++) {
		size_t i;
		json_t *v;
		json_array_foreach(src[l], i, v) {
			size_t cost = disc_json_cost(json_string_length(v));
			if (used + cost > DISCOVER_MSG_BUDGET) {
				d->emit(d->ctx, msg);
				msg = new_msg(p);
				used = base;
			}
			json_array_append(json_object_get(msg, lists[l]), v);
			used += cost;
		}
	}
	d->emit(d->ctx, msg);
	json_array_clear(p->add);
	json_array_clear(p->remove);
	json_array_clear(p->wake);
}

/* ---------- set-up ---------- */

int discover_init(struct discover *d, const struct sv_config *cfg, discover_emit_fn emit, void *ctx)
{
	memset(d, 0, sizeof(*d));
	d->cfg = cfg;
	d->emit = emit;
	d->ctx = ctx;
	snprintf(d->prefix, sizeof(d->prefix), "__keyspace@%d__:", cfg->redis.parsed.db);
	size_t total = 0;
	for (size_t i = 0; i < cfg->npools; i++)
		total += cfg->pools[i].patterns.n;
	if (total == 0)
		return 0;
	d->p = calloc(total, sizeof(*d->p));
	if (!d->p)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_config *pc = &cfg->pools[i];
		for (size_t j = 0; j < pc->patterns.n; j++) {
			struct disc_pattern *p = NULL;
			for (size_t k = 0; k < d->np && !p; k++)
				if (strcmp(d->p[k].pattern, pc->patterns.v[j]) == 0)
					p = &d->p[k];
			if (p) {
				if (pc->discover_ms < p->period_ms)
					p->period_ms = pc->discover_ms;
				if (pc->idle_ms / 2 < p->wake_after_ms)
					p->wake_after_ms = pc->idle_ms / 2;
				continue;
			}
			p = &d->p[d->np++];
			p->pattern = util_xstrdup(pc->patterns.v[j]);
			p->period_ms = pc->discover_ms;
			p->wake_after_ms = pc->idle_ms / 2;
			p->full_pace = true;
			strcpy(p->cursor, "0");
			p->add = json_array();
			p->remove = json_array();
			p->wake = json_array();
		}
	}
	rconn_init(&d->sub, cfg, 5000);
	return 0;
}

void discover_free(struct discover *d)
{
	for (size_t i = 0; i < d->np; i++) {
		free(d->p[i].pattern);
		disc_known_free(&d->p[i].known);
		json_decref(d->p[i].add);
		json_decref(d->p[i].remove);
		json_decref(d->p[i].wake);
	}
	free(d->p);
	if (d->np)
		rconn_close(&d->sub);
	memset(d, 0, sizeof(*d));
}

/* ---------- keyspace notifications ---------- */

static void notify_close(struct discover *d)
{
	rconn_close(&d->sub);
}

/* PSUBSCRIBE every pattern on a connection of its own. */
static void notify_open(struct discover *d)
{
	if (rconn_connect(&d->sub) < 0)
		return; /* logged by rconn */
	const char **argv = util_xcalloc(d->np + 1, sizeof(char *));
	char **chans = util_xcalloc(d->np, sizeof(char *));
	argv[0] = "PSUBSCRIBE";
	for (size_t i = 0; i < d->np; i++) {
		size_t n = strlen(d->prefix) + strlen(d->p[i].pattern) + 1;
		chans[i] = util_xcalloc(n, 1);
		snprintf(chans[i], n, "%s%s", d->prefix, d->p[i].pattern);
		argv[i + 1] = chans[i];
	}
	redisAppendCommandArgv(d->sub.c, (int)d->np + 1, argv, NULL);
	for (size_t i = 0; i < d->np && d->sub.c; i++) {
		redisReply *r = rconn_get_reply(&d->sub);
		if (r)
			freeReplyObject(r);
	}
	for (size_t i = 0; i < d->np; i++)
		free(chans[i]);
	free(chans);
	free(argv);
	if (!d->sub.c)
		return;
	log_debug("discovery: subscribed to keyspace events of %zu patterns", d->np);
	/* What changed while nobody listened is found by a pass started now. */
	int64_t now = util_mono_ms();
	for (size_t i = 0; i < d->np; i++) {
		d->p[i].full_pace = true;
		if (!d->p[i].in_pass)
			d->p[i].next_call_ms = now;
	}
}

/* Does the server publish keyspace events for streams?  Only looked at;
 * a refused CONFIG counts as off. */
static void notify_check(struct discover *d, struct rconn *rc, int64_t now)
{
	d->next_notify_check_ms = now + DISCOVER_NOTIFY_CHECK_MS;
	redisReply *r = rconn_command(rc, "CONFIG GET notify-keyspace-events");
	if (!r)
		return;
	bool on = false;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING) {
		const char *v = r->element[1]->str;
		on = strchr(v, 'K') && (strchr(v, 't') || strchr(v, 'A'));
	}
	freeReplyObject(r);
	if (on != d->notify_on)
		log_info("discovery: keyspace notifications for streams are %s (the server's notify-keyspace-events)%s",
			 on ? "on" : "off", on ? "; new streams are found at their first event" : "");
	d->notify_on = on;
	if (on && !d->sub.c)
		notify_open(d);
	else if (!on && d->sub.c)
		notify_close(d);
}

int discover_fd(const struct discover *d)
{
	return d->sub.c ? d->sub.c->fd : -1;
}

static void on_event(struct discover *d, const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 4)
		return;
	for (size_t i = 0; i < 4; i++)
		if (r->element[i]->type != REDIS_REPLY_STRING)
			return;
	if (strcmp(r->element[0]->str, "pmessage") != 0)
		return;
	const char *chan = r->element[2]->str, *ev = r->element[3]->str;
	size_t plen = strlen(d->prefix);
	if ((size_t)r->element[2]->len <= plen || strncmp(chan, d->prefix, plen) != 0 ||
	    (size_t)r->element[1]->len < plen)
		return;
	const char *key = chan + plen;
	size_t klen = (size_t)r->element[2]->len - plen;
	for (size_t i = 0; i < d->np; i++) {
		struct disc_pattern *p = &d->p[i];
		if (strcmp(r->element[1]->str + plen, p->pattern) != 0 || !acceptable(d, p, key, klen))
			continue;
		if (!strcmp(ev, "xadd"))
			note_xadd(p, key, util_mono_ms());
		else if (ev[0] == 'x')
			note_add(p, key);
		else if (!strcmp(ev, "del") || !strcmp(ev, "expired") || !strcmp(ev, "evicted") ||
			 !strcmp(ev, "rename_from"))
			note_remove(p, key);
	}
}

void discover_read(struct discover *d)
{
	if (!d->sub.c)
		return;
	if (redisBufferRead(d->sub.c) != REDIS_OK) {
		rconn_drop(&d->sub, "keyspace notifications");
		d->next_notify_check_ms = util_mono_ms() + 1000;
		return;
	}
	void *reply;
	while (d->sub.c && redisGetReplyFromReader(d->sub.c, &reply) == REDIS_OK && reply) {
		on_event(d, reply);
		freeReplyObject(reply);
	}
	for (size_t i = 0; i < d->np; i++)
		report(d, &d->p[i]);
}

/* ---------- SCAN passes ---------- */

/* New streams come by notification: SCAN is only the safety net, except
 * for the first pass after the start or a new subscription, which finds
 * the streams that exist already (or came while nobody listened) at the
 * full pace. */
static bool safety_net(const struct discover *d, const struct disc_pattern *p)
{
	return d->notify_on && d->sub.c && !p->full_pace;
}

static int64_t pass_period(const struct discover *d, const struct disc_pattern *p)
{
	return safety_net(d, p) && p->period_ms < DISCOVER_NOTIFY_PASS_MS ? DISCOVER_NOTIFY_PASS_MS : p->period_ms;
}

static int64_t least_gap(const struct discover *d, const struct disc_pattern *p)
{
	return safety_net(d, p) ? DISCOVER_NOTIFY_SCAN_GAP_MS : DISCOVER_SCAN_GAP_MS;
}

/* A pass much longer than discover_ms without notifications: the
 * keyspace is too large for the period (said once a pattern). */
static void warn_slow_pass(const struct discover *d, struct disc_pattern *p, int64_t now)
{
	if ((d->notify_on && d->sub.c) || p->warned_slow || now - p->pass_start_ms <= 2 * p->period_ms)
		return;
	p->warned_slow = true;
	log_warn("discovery of %s: a SCAN pass took %lld ms (%u calls), longer than discover_ms (%lld): new "
		 "streams are found that late; with notify-keyspace-events holding K and t (or A) they are "
		 "found at their first entry (logged once)",
		 p->pattern, (long long)(now - p->pass_start_ms), p->calls, (long long)p->period_ms);
}

/* A pass completed: known names it did not see are removed once EXISTS
 * (pipelined) says they are gone. */
static void end_pass(struct discover *d, struct disc_pattern *p, struct rconn *rc, int64_t now)
{
	p->in_pass = false;
	p->prev_calls = p->calls;
	warn_slow_pass(d, p, now);
	int64_t next = p->pass_start_ms + pass_period(d, p);
	p->full_pace = false;
	p->next_call_ms = next > now + least_gap(d, p) ? next : now + least_gap(d, p);
	json_t *unseen = disc_known_unseen(&p->known);
	size_t n = json_array_size(unseen), i;
	json_t *v;
	json_array_foreach(unseen, i, v) redisAppendCommand(rc->c, "EXISTS %s", json_string_value(v));
	for (i = 0; i < n; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			break; /* dropped: the next pass checks again */
		if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
			note_remove(p, json_string_value(json_array_get(unseen, i)));
		freeReplyObject(r);
	}
	json_decref(unseen);
	/* At info once, then at debug whenever the count changed. */
	static const char fmt[] = "discovered %zu streams for pattern %s (pass of %u SCAN calls)";
	if (!p->logged)
		log_info(fmt, p->known.n, p->pattern, p->calls);
	else if (p->known.n != p->logged_n)
		log_debug(fmt, p->known.n, p->pattern, p->calls);
	p->logged = true;
	p->logged_n = p->known.n;
}

/* One SCAN call of the pattern's pass. */
static void scan_call(struct discover *d, struct disc_pattern *p, struct rconn *rc, int64_t now)
{
	const char *argv[] = {"SCAN", p->cursor, "MATCH", p->pattern, "TYPE", "stream", "COUNT", DISCOVER_SCAN_COUNT};
	redisReply *r = rconn_commandv(rc, (int)ARRAY_SIZE(argv), argv, NULL);
	if (!r)
		return;
	p->calls++;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= (int)sizeof(p->cursor)) {
		log_error("%s: SCAN MATCH %s: %s; next try in %lld ms", __func__, p->pattern,
			  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply", (long long)p->period_ms);
		freeReplyObject(r);
		p->in_pass = false;
		p->next_call_ms = now + p->period_ms;
		return;
	}
	const redisReply *keys = r->element[1];
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (k->type == REDIS_REPLY_STRING && acceptable(d, p, k->str, (size_t)k->len))
			note_add(p, k->str);
	}
	snprintf(p->cursor, sizeof(p->cursor), "%s", r->element[0]->str);
	freeReplyObject(r);
	if (strcmp(p->cursor, "0") == 0)
		end_pass(d, p, rc, now);
}

static void step_pattern(struct discover *d, struct disc_pattern *p, struct rconn *rc, int64_t now)
{
	for (int i = 0; i < DISCOVER_CALLS_PER_TURN && rc->c && now >= p->next_call_ms; i++) {
		if (!p->in_pass) {
			p->in_pass = true;
			p->pass_start_ms = now;
			p->calls = 0;
			strcpy(p->cursor, "0");
			disc_known_pass_begin(&p->known);
		}
		/* Spread the pass: as many calls as the last one took, over
		 * the period, never closer than the least gap. */
		int64_t gap = p->prev_calls ? pass_period(d, p) / (int64_t)p->prev_calls : 0;
		if (gap < least_gap(d, p))
			gap = least_gap(d, p);
		int64_t sched = p->next_call_ms;
		scan_call(d, p, rc, now);
		/* More calls than the last pass took: the keyspace grew and the
		 * spread no longer fits it (a pass that found one call's worth
		 * of keys would then find 1000 new streams a period); the rest
		 * of the pass goes at the least gap (10 ms; 1 s in the safety
		 * net while notifications are on). */
		if (p->in_pass && p->calls >= p->prev_calls)
			gap = least_gap(d, p);
		if (p->in_pass)
			p->next_call_ms = sched + gap < now ? now : sched + gap;
	}
}

void discover_step(struct discover *d, struct rconn *rc, int64_t now_ms)
{
	if (d->np == 0 || !rc->c)
		return;
	if (now_ms >= d->next_notify_check_ms)
		notify_check(d, rc, now_ms);
	for (size_t i = 0; i < d->np && rc->c; i++)
		step_pattern(d, &d->p[i], rc, now_ms);
	for (size_t i = 0; i < d->np; i++)
		report(d, &d->p[i]);
}

int64_t discover_wait_ms(const struct discover *d, int64_t now_ms)
{
	int64_t wait = INT64_MAX;
	if (d->np == 0)
		return wait;
	if (d->next_notify_check_ms - now_ms < wait)
		wait = d->next_notify_check_ms - now_ms;
	for (size_t i = 0; i < d->np; i++)
		if (d->p[i].next_call_ms - now_ms < wait)
			wait = d->p[i].next_call_ms - now_ms;
	return wait < 0 ? 0 : wait;
}

const struct disc_known *discover_known(const struct discover *d, const char *pattern)
{
	for (size_t i = 0; d && i < d->np; i++)
		if (strcmp(d->p[i].pattern, pattern) == 0)
			return &d->p[i].known;
	return NULL;
}
