/* master_cmd: the master's answers to control-socket commands (status,
 * start/stop/restart, pause, scale, reload, config, metrics, shutdown, and
 * the calls forwarded to the monitor) and the metrics state. */
#include "master_int.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"
#include "heartbeat.h"
#include "log.h"
#include "metrics.h"
#include "patsum.h"
#include "proc.h"
#include "reducer.h"
#include "util.h"

/* ---------- deferred control replies ---------- */

static struct slot *find_slot_by_name(struct master *m, const char *name)
{
	FOREACH_SLOT(m, s)
	if (strcmp(s->name, name) == 0 || strcmp(s->proc_name, name) == 0)
		return s;
	return NULL;
}

static bool slot_settled(const struct slot *s, int want)
{
	enum proc_state st = s->proc.state;
	if (want == OP_STOP)
		return st == PROC_STOPPED || st == PROC_FATAL || st == PROC_BACKOFF || st == PROC_EXITED;
	return st == PROC_RUNNING || st == PROC_FATAL || st == PROC_BACKOFF || st == PROC_STOPPED;
}

static json_t *op_results(struct master *m, struct pending_op *op, bool *all_ok)
{
	json_t *res = json_array();
	size_t i;
	json_t *v;
	*all_ok = true;
	json_array_foreach(op->names, i, v) {
		struct slot *s = find_slot_by_name(m, json_string_value(v));
		enum proc_state st = s ? s->proc.state : PROC_STOPPED;
		bool ok = op->want == OP_STOP ? st == PROC_STOPPED : st == PROC_RUNNING;
		*all_ok &= ok;
		json_t *r = json_pack("{s:o, s:s}", "name", json_incref(v), "state", proc_state_name(st));
		if (s && s->pid > 0)
			json_object_set_new(r, "pid", json_integer(s->pid));
		if (!ok)
			json_object_set_new(r, "error", json_string(s ? s->proc.reason : "retired"));
		json_array_append_new(res, r);
	}
	return res;
}

void master_cmd_ops_check(struct master *m, int64_t now)
{
	struct pending_op **pp = &m->ops;
	while (*pp) {
		struct pending_op *op = *pp;
		bool settled = true;
		size_t i;
		json_t *v;
		json_array_foreach(op->names, i, v) {
			struct slot *s = find_slot_by_name(m, json_string_value(v));
			if (s && !slot_settled(s, (int)op->want))
				settled = false;
		}
		bool expired = now >= op->deadline;
		if (!settled && !expired && control_client_alive(op->client)) {
			pp = &op->next;
			continue;
		}
		bool ok;
		json_t *res = op_results(m, op, &ok);
		json_t *reply = json_pack("{s:b, s:o}", "ok", ok, "results", res);
		if (!ok)
			json_object_set_new(reply, "error", json_string(expired && !settled
										? "timed out waiting for the workers"
										: "not every worker reached the wanted state"));
		control_reply(op->client, reply);
		control_client_unref(op->client);
		*pp = op->next;
		json_decref(op->names);
		free(op);
	}
}

int64_t master_cmd_ops_deadline(struct master *m)
{
	int64_t d = 0;
	for (struct pending_op *op = m->ops; op; op = op->next)
		d = master_min_deadline(d, op->deadline);
	return d;
}

/* ---------- status ---------- */

static const char *slot_health(struct master *m, const struct slot *s)
{
	if (!proc_state_has_pid(s->proc.state))
		return "-";
	if (s->proc.state == PROC_HUNG)
		return "hung";
	if (!m->redis_ok)
		return "unknown";
	if (!s->hb)
		return s->proc.state == PROC_STARTING ? "starting" : "unknown";
	return master_slot_late(m, s) ? "late" : "ok";
}

/* Why a worker is in BACKOFF or FATAL: the state machine's reason and
 * the last error line the worker logged before it exited. */
static json_t *failed_start_error(const struct slot *s)
{
	if (!s->error_line[0])
		return json_string(s->proc.reason);
	char buf[sizeof(s->proc.reason) + sizeof(s->error_line) + 2];
	snprintf(buf, sizeof(buf), "%s: %s", s->proc.reason, s->error_line);
	return json_string(buf);
}

static json_t *slot_status(struct master *m, const struct slot *s, int64_t now, int64_t wall)
{
	bool alive = s->pid > 0;
	json_t *hb = alive ? s->hb : NULL;
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "name", s->name, "pool", s->pool->name,
			      "slot", s->index, "kind", config_pool_kind_name(s->kind),
			      "state", proc_state_name(s->proc.state));
	json_object_set_new(o, "pid", alive ? json_integer(s->pid) : json_null());
	json_t *inc = hb ? json_object_get(hb, "incarnation") : NULL;
	json_object_set_new(o, "incarnation", inc ? json_incref(inc) : json_null());
	json_object_set_new(o, "uptime_ms", alive ? json_integer(now - s->started_mono) : json_null());
	json_object_set_new(o, "beat_age_ms", hb && s->beat_ms ? json_integer(wall - s->beat_ms) : json_null());
	json_t *st = hb ? json_object_get(hb, "status") : NULL;
	json_object_set_new(o, "status", st ? json_incref(st) : json_null());
	const char *health = slot_health(m, s);
	json_object_set_new(o, "health", json_string(health));
	json_object_set_new(o, "late", json_boolean(strcmp(health, "late") == 0));
	json_object_set_new(o, "processed", json_integer(json_integer_value(json_object_get(hb, "processed"))));
	json_object_set_new(o, "failed", json_integer(json_integer_value(json_object_get(hb, "failed"))));
	json_object_set_new(o, "dead_lettered",
			    json_integer(json_integer_value(json_object_get(hb, "dead_lettered"))));
	/* Run lifecycle counters of this process (heartbeat.h). */
	static const char *const lifecycle[] = {"forgotten", "conflicts", "reruns"};
	for (size_t i = 0; i < ARRAY_SIZE(lifecycle); i++)
		json_object_set_new(o, lifecycle[i], json_integer(json_integer_value(json_object_get(hb, lifecycle[i]))));
	json_object_set_new(o, "restarts", json_integer(s->restarts));
	json_object_set_new(o, "pending", json_integer(s->pending));
	/* The worker's stream set and active read set (issue 11). */
	static const char *const sets[] = {"streams", "active"};
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		json_t *v = hb ? json_object_get(hb, sets[i]) : NULL;
		json_object_set_new(o, sets[i], v ? json_incref(v) : json_null());
	}
	json_object_set_new(o, "paused", json_boolean(s->paused));
	json_t *cur = hb ? json_object_get(hb, "current") : NULL;
	json_object_set_new(o, "current", cur ? json_incref(cur) : json_null());
	/* Tool calls in hand: run, call id, tool, entry (checked, bounded). */
	json_t *calls = hb ? json_object_get(hb, "calls") : NULL;
	json_object_set_new(o, "calls", calls ? json_incref(calls) : json_array());
	json_object_set_new(o, "calls_more", json_integer(json_integer_value(json_object_get(hb, "calls_more"))));
	/* A tool worker's persistent handlers (checked, bounded). */
	json_t *handlers = hb ? json_object_get(hb, "handlers") : NULL;
	json_object_set_new(o, "handlers", handlers ? json_incref(handlers) : json_array());
	json_object_set_new(o, "last_exit", s->last_exit[0] ? json_string(s->last_exit) : json_null());
	json_t *le = hb ? json_object_get(hb, "last_error") : NULL;
	if (!json_is_string(le) && (s->proc.state == PROC_FATAL || s->proc.state == PROC_BACKOFF))
		json_object_set_new(o, "last_error", failed_start_error(s));
	else
		json_object_set_new(o, "last_error", le ? json_incref(le) : json_null());
	return o;
}

/* A slot of a removed pool whose process is gone is waiting to be freed:
 * it is no longer shown or acted on. */
static bool slot_gone(const struct slot *s)
{
	return s->pool->removed && s->pid <= 0;
}

static bool slot_matches(const struct slot *s, const char *target)
{
	if (slot_gone(s))
		return false;
	return !target || strcmp(target, "all") == 0 || strcmp(s->pool->name, target) == 0 ||
	       strcmp(s->name, target) == 0 || strcmp(s->proc_name, target) == 0;
}

/* Resolve NAME | POOL | "all" into slot names; NULL if nothing matched. */
static json_t *resolve_targets(struct master *m, const char *target)
{
	json_t *names = json_array();
	FOREACH_SLOT(m, s)
	if (slot_matches(s, target))
		json_array_append_new(names, json_string(s->name));
	if (target && strcmp(target, "all") != 0 && json_array_size(names) == 0) {
		json_decref(names);
		return NULL;
	}
	return names;
}

/* ---------- per pattern summaries ---------- */

/* The monitor's checked row for pattern and group, or NULL. */
static const json_t *pattern_row_seen(const struct master *m, const char *pattern, const char *group)
{
	size_t i;
	json_t *r;
	json_array_foreach(m->pattern_rows, i, r) {
		if (!strcmp(json_string_value(json_object_get(r, "pattern")), pattern) &&
		    !strcmp(json_string_value(json_object_get(r, "group")), group))
			return r;
	}
	return NULL;
}

/* The names of the pools reading pattern with group. */
static json_t *pattern_pools(const struct sv_config *cfg, const char *pattern, const char *group)
{
	json_t *names = json_array();
	for (size_t i = 0; i < cfg->npools; i++)
		if (!strcmp(cfg->pools[i].group, group) && config_strlist_has(&cfg->pools[i].patterns, pattern))
			json_array_append_new(names, json_string(cfg->pools[i].name));
	return names;
}

static bool any_pool_in(const json_t *names, const json_t *only)
{
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v) if (json_object_get(only, json_string_value(v))) return true;
	return false;
}

/* One row per configured pattern and group (the pools reading it, the
 * monitor's figures and their age, or nulls before its first walk
 * ended); only (when not NULL) keeps the rows of those pools. */
static json_t *pattern_views(const struct master *m, int64_t now, const json_t *only)
{
	static const char *const figures[] = {"matched", "active", "lag", "pending", "oldest_pending_idle_ms",
					      "missing"};
	json_t *conf = patsum_configured(m->cfg), *rows = json_array();
	const char *pat;
	json_t *groups;
	json_object_foreach(conf, pat, groups) {
		size_t i;
		json_t *g;
		json_array_foreach(groups, i, g) {
			const char *grp = json_string_value(g);
			json_t *pools = pattern_pools(m->cfg, pat, grp);
			if (only && !any_pool_in(pools, only)) {
				json_decref(pools);
				continue;
			}
			const json_t *seen = pattern_row_seen(m, pat, grp);
			json_t *row = json_pack("{s:s, s:s, s:o}", "pattern", pat, "group", grp, "pools", pools);
			for (size_t f = 0; f < ARRAY_SIZE(figures); f++) {
				json_t *v = seen ? json_object_get(seen, figures[f]) : NULL;
				json_object_set_new(row, figures[f], v ? json_incref(v) : json_null());
			}
			json_int_t taken = seen ? json_integer_value(json_object_get(seen, "taken_mono")) : 0;
			json_object_set_new(row, "age_ms", seen ? json_integer(now - taken) : json_null());
			json_array_append_new(rows, row);
		}
	}
	json_decref(conf);
	return rows;
}

static void cmd_status(struct master *m, struct control_client *c, const char *target)
{
	int64_t now = util_mono_ms(), wall = util_wall_ms();
	json_t *workers = json_array();
	json_t *pools = json_object(); /* of the workers shown */
	FOREACH_SLOT(m, s)
	if (slot_matches(s, target)) {
		json_array_append_new(workers, slot_status(m, s, now, wall));
		json_object_set_new(pools, s->pool->name, json_true());
	}
	if (target && strcmp(target, "all") != 0 && json_array_size(workers) == 0) {
		json_decref(workers);
		json_decref(pools);
		control_reply_error(c, "no such worker or pool: %s", target);
		return;
	}
	json_t *reply = json_pack("{s:b, s:s, s:o, s:s}", "ok", 1, "node", m->cfg->node, "workers", workers,
				  "redis", m->redis_ok ? "ok" : "unknown");
	json_object_set_new(reply, "remote", m->remote ? json_incref(m->remote) : json_array());
	bool all = !target || !strcmp(target, "all");
	json_object_set_new(reply, "patterns", pattern_views(m, now, all ? NULL : pools));
	json_object_set_new(reply, "web", master_web_status(m));
	json_decref(pools);
	control_reply(c, reply);
}

static void defer_reply(struct master *m, struct control_client *c, json_t *names, int want)
{
	struct pending_op *op = util_xcalloc(1, sizeof(*op));
	op->client = control_client_ref(c);
	op->names = names;
	op->want = want;
	op->deadline = util_mono_ms() + m->cfg->restart.stop_timeout_ms + m->cfg->restart.start_ms +
		       m->cfg->restart.backoff_max_ms + 5000;
	op->next = m->ops;
	m->ops = op;
	master_cmd_ops_check(m, util_mono_ms());
}

static void cmd_startstop(struct master *m, struct control_client *c, const char *cmd, const char *target)
{
	if (m->shutting_down) {
		control_reply_error(c, "shutting down");
		return;
	}
	json_t *names = target ? resolve_targets(m, target) : NULL;
	if (!names) {
		control_reply_error(c, target ? "no such worker or pool: %s" : "%s needs NAME, POOL or all",
				    target ? target : cmd);
		return;
	}
	int64_t now = util_mono_ms();
	bool stop = strcmp(cmd, "stop") == 0, restart = strcmp(cmd, "restart") == 0;
	size_t i;
	json_t *v;
	/* A removed pool's worker finishing its call can only be stopped. */
	json_t *acted = json_array();
	json_array_foreach(names, i, v) {
		struct slot *s = find_slot_by_name(m, json_string_value(v));
		if (s->pool->removed && !stop)
			continue;
		json_array_append(acted, v);
		if (stop) {
			/* retire stays set for a removed pool: freed once reaped */
			master_slot_act(m, s, proc_stop(&s->proc, &m->policy, now, s->pool->removed));
		} else if (restart && proc_state_has_pid(s->proc.state)) {
			master_slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
			master_slot_act(m, s, proc_start(&s->proc, &m->policy, now));
		} else {
			master_slot_act(m, s, proc_start(&s->proc, &m->policy, now));
		}
	}
	json_decref(names);
	defer_reply(m, c, acted, stop ? OP_STOP : OP_START);
}

static void cmd_pause(struct master *m, struct control_client *c, bool pause, const char *target)
{
	json_t *names = target ? resolve_targets(m, target) : NULL;
	if (!names) {
		control_reply_error(c, target ? "no such worker or pool: %s" : "needs NAME, POOL or all",
				    target);
		return;
	}
	json_t *res = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v) {
		struct slot *s = find_slot_by_name(m, json_string_value(v));
		s->paused = pause;
		master_slot_send(s, pause ? CHAN_M_PAUSE : CHAN_M_RESUME, NULL, 0);
		json_array_append_new(res, json_pack("{s:O, s:b}", "name", v, "paused", pause));
	}
	json_decref(names);
	control_reply(c, json_pack("{s:b, s:o}", "ok", 1, "results", res));
}

static void cmd_scale(struct master *m, struct control_client *c, const char *pool, const char *count)
{
	struct pool *p = pool ? master_find_pool(m, pool) : NULL;
	char *end = NULL;
	long long n = count ? strtoll(count, &end, 10) : -1;
	if (!p) {
		control_reply_error(c, "no such pool: %s", pool ? pool : "(none)");
		return;
	}
	if (!count || *end || n < 0 || n > 1000) {
		control_reply_error(c, "scale needs a count from 0 to 1000");
		return;
	}
	char why[300];
	if (master_fds_check(m, master_workers_wanted(m, p, n), why, sizeof(why)) < 0) {
		log_error("scale %s to %lld refused: %s", p->name, n, why);
		control_reply_error(c, "%s", why);
		return;
	}
	log_info("scale %s from %lld to %lld workers", p->name, (long long)p->want, n);
	p->want = n;
	master_pool_resize(m, p);
	control_reply(c, json_pack("{s:b, s:s, s:I}", "ok", 1, "pool", p->name, "count", (json_int_t)n));
}

/* Each persistence pool's SQLite file: where `streamvisorctl -s SOCKET
 * snapshot` looks for a run. */
static json_t *persistence_files(const struct sv_config *cfg)
{
	json_t *pools = json_array();
	for (size_t i = 0; pools && i < cfg->npools; i++) {
		const struct pool_config *p = &cfg->pools[i];
		if (p->kind == POOL_PERSISTENCE && p->sqlite_path)
			json_array_append_new(pools, json_pack("{s:s, s:s, s:s}", "name", p->name, "sqlite_path",
							       p->sqlite_path, "reducer",
							       reducer_kind_name(p->reducer)));
	}
	return pools;
}

static void cmd_config(struct master *m, struct control_client *c)
{
	json_t *streams = json_array();
	for (size_t i = 0; i < m->cfg->streams.n; i++)
		json_array_append_new(streams, json_string(m->cfg->streams.v[i]));
	control_reply(c, json_pack("{s:b, s:s, s:o, s:s, s:s, s:o, s:s, s:s}", "ok", 1, "sqlite_path",
				   m->cfg->sqlite.path, "pools", persistence_files(m->cfg), "namespace",
				   m->cfg->namespace, "node", m->cfg->node, "streams", streams, "redis",
				   m->cfg->redis.url_redacted, "socket", m->cfg->control.socket));
}

/* ---------- metrics ---------- */

static json_t *counters_json(const char *pool, const struct counters *c)
{
	json_t *hist = json_array();
	for (size_t i = 0; i < HB_HIST_N; i++)
		json_array_append_new(hist, json_integer((json_int_t)c->batch_hist[i]));
	json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "name", pool, "processed",
			      (json_int_t)c->processed, "failed", (json_int_t)c->failed, "dead_lettered",
			      (json_int_t)c->dead_lettered, "lost", (json_int_t)c->lost, "batch_hist", hist,
			      "batch_sum_us", (json_int_t)c->batch_sum_us);
	json_object_set_new(o, "forgotten", json_integer((json_int_t)c->forgotten));
	json_object_set_new(o, "conflicts", json_integer((json_int_t)c->conflicts));
	json_object_set_new(o, "reruns", json_integer((json_int_t)c->reruns));
	return o;
}

/* Per tool counters summed over the tool workers, those gone included:
 * one row per configured tool (zeros before any call), then any tool
 * no longer configured that counted calls. */
static json_t *tools_state(struct master *m)
{
	json_t *acc = m->tool_carry ? json_deep_copy(m->tool_carry) : json_object();
	FOREACH_SLOT(m, s)
	if (s->pid > 0 && s->hb)
		master_tools_add_hb(acc, s->hb);
	json_t *rows = json_array();
	for (size_t i = 0; i < m->cfg->ntools; i++) {
		const char *name = m->cfg->tools[i].name;
		json_t *a = json_object_get(acc, name);
		if (!a) { /* zeros: added from an entry without counters */
			json_t *one = json_pack("{s:[{s:s, s:[]}]}", "tools", "tool", name, "hist");
			master_tools_add_hb(acc, one);
			json_decref(one);
			a = json_object_get(acc, name);
		}
		json_t *row = json_deep_copy(a);
		json_object_set_new(row, "tool", json_string(name));
		json_array_append_new(rows, row);
	}
	const char *name;
	json_t *a;
	json_object_foreach(acc, name, a) {
		if (config_find_tool(m->cfg, name))
			continue;
		json_t *row = json_deep_copy(a);
		json_object_set_new(row, "tool", json_string(name));
		json_array_append_new(rows, row);
	}
	json_decref(acc);
	return rows;
}

static json_t *metrics_state(struct master *m)
{
	int64_t now = util_mono_ms(), wall = util_wall_ms();
	json_t *workers = json_array(), *pools = json_array();
	for (size_t i = 0; i < m->npools; i++) {
		struct pool *p = m->pools[i];
		struct counters total = p->carry;
		for (size_t j = 0; j < p->nslots; j++) {
			struct slot *s = p->slots[j];
			master_counters_add(&total, &s->carry);
			master_counters_add_hb(&total, s->pid > 0 ? s->hb : NULL);
			if (!slot_gone(s))
				json_array_append_new(workers, slot_status(m, s, now, wall));
		}
		json_array_append_new(pools, counters_json(p->name, &total));
	}
	json_t *st = json_pack("{s:s, s:b, s:o, s:o, s:O, s:o}", "node", m->cfg->node, "redis_up", m->redis_ok,
			       "workers", workers, "pools", pools, "groups", m->groups ? m->groups : json_null(),
			       "patterns", pattern_views(m, now, NULL));
	json_object_set_new(st, "tools", tools_state(m));
	json_object_set_new(st, "dead", m->dead_letters ? json_incref(m->dead_letters) : json_object());
	return st;
}

/* The configured pools, for the console: what each reads and how many
 * workers it wants now (scale changes it). */
static json_t *pools_config(struct master *m)
{
	json_t *rows = json_array();
	for (size_t i = 0; i < m->npools; i++) {
		const struct pool *p = m->pools[i];
		const struct pool_config *pc = p->cfg;
		if (p->removed || !pc)
			continue;
		json_t *streams = json_array(), *patterns = json_array();
		for (size_t j = 0; j < pc->streams.n; j++)
			json_array_append_new(streams, json_string(pc->streams.v[j]));
		for (size_t j = 0; j < pc->patterns.n; j++)
			json_array_append_new(patterns, json_string(pc->patterns.v[j]));
		json_array_append_new(rows, json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "name", pc->name, "kind",
						      config_pool_kind_name(pc->kind), "count", (json_int_t)p->want,
						      "group", pc->group, "streams", streams, "patterns", patterns));
	}
	return rows;
}

json_t *master_cmd_state(struct master *m)
{
	json_t *st = metrics_state(m);
	json_object_set_new(st, "ok", json_true());
	json_object_set_new(st, "redis", json_string(m->redis_ok ? "ok" : "unknown"));
	json_object_set_new(st, "wall_ms", json_integer(util_wall_ms()));
	json_object_set_new(st, "remote", m->remote ? json_incref(m->remote) : json_array());
	json_t *actions = json_array();
	for (size_t i = 0; i < m->cfg->http.actions.n; i++)
		json_array_append_new(actions, json_string(m->cfg->http.actions.v[i]));
	json_object_set_new(st, "config", json_pack("{s:o, s:o}", "pools", pools_config(m), "actions", actions));
	json_object_set_new(st, "web", master_web_status(m));
	return st;
}

static void cmd_metrics(struct master *m, struct control_client *c)
{
	json_t *state = metrics_state(m);
	char *text = metrics_render(state);
	json_decref(state);
	if (!text) {
		control_reply_error(c, "out of memory");
		return;
	}
	control_reply(c, json_pack("{s:b, s:s}", "ok", 1, "text", text));
	free(text);
}

/* ---------- control requests ---------- */

/* pending, dead ..., drain, forget: the monitor owns the Redis connection. */
static void cmd_forward(struct master *m, struct control_client *c, const char *cmd, json_t *req)
{
	if (!m->monitor || m->monitor_stop_sent) {
		control_reply_error(c, "monitor not running (restarting); try again");
		return;
	}
	json_t *args = json_object_get(req, "args");
	if (strcmp(cmd, "drain") == 0 || strcmp(cmd, "forget") == 0) {
		bool yes = false;
		size_t i;
		json_t *v;
		json_array_foreach(args, i, v) yes |= json_is_string(v) && strcmp(json_string_value(v), "--yes") == 0;
		if (!yes) {
			control_reply_error(c, strcmp(cmd, "drain") == 0
						       ? "drain destroys every consumer group and stream: confirm with --yes"
						       : "forget deletes the runs' stored events and snapshots everywhere: "
							 "confirm with --yes");
			return;
		}
	}
	struct monitor_call *call = util_xcalloc(1, sizeof(*call));
	call->client = control_client_ref(c);
	call->id = ++m->next_call_id;
	call->next = m->calls;
	m->calls = call;
	master_monitor_send(m, json_pack("{s:s, s:I, s:s, s:O?}", "op", "call", "id", call->id, "cmd", cmd,
					 "args", args));
}

static const char *req_arg(json_t *req, size_t i)
{
	return json_string_value(json_array_get(json_object_get(req, "args"), i));
}

void master_cmd_on_request(void *ctx, struct control_client *c, json_t *req)
{
	struct master *m = ctx;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	const char *a0 = req_arg(req, 0), *a1 = req_arg(req, 1);
	if (!cmd) {
		control_reply_error(c, "bad request: no cmd");
	} else if (strcmp(cmd, "status") == 0) {
		cmd_status(m, c, a0);
	} else if (!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart")) {
		cmd_startstop(m, c, cmd, a0);
	} else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		cmd_pause(m, c, !strcmp(cmd, "pause"), a0);
	} else if (strcmp(cmd, "scale") == 0) {
		cmd_scale(m, c, a0, a1);
	} else if (strcmp(cmd, "reload") == 0) {
		if (m->shutting_down)
			control_reply_error(c, "shutting down");
		else
			control_reply(c, master_reload(m));
	} else if (strcmp(cmd, "config") == 0) {
		cmd_config(m, c);
	} else if (strcmp(cmd, "metrics") == 0) {
		cmd_metrics(m, c);
	} else if (!strcmp(cmd, "pending") || !strcmp(cmd, "dead") || !strcmp(cmd, "drain") ||
		   !strcmp(cmd, "forget") || !strcmp(cmd, "events")) {
		cmd_forward(m, c, cmd, req);
	} else if (strcmp(cmd, "shutdown") == 0) {
		control_reply(c, json_pack("{s:b}", "ok", 1));
		master_begin_shutdown(m, "streamvisorctl shutdown");
	} else {
		control_reply_error(c, "unknown command: %s", cmd);
	}
}

