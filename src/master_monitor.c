/* master_monitor: the master's link to its monitor child: forking it,
 * the channel both ways, its stderr, heartbeat reports and the answers to
 * forwarded control calls. */
#include "master_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "log.h"
#include "monitor.h"
#include "util.h"

/* ---------- the monitor ---------- */

void master_monitor_send(struct master *m, json_t *op)
{
	if (!m->monitor || m->monitor_stop_sent) {
		json_decref(op);
		return;
	}
	char *s = json_dumps(op, JSON_COMPACT);
	json_decref(op);
	if (!s)
		return;
	int r = child_send(m->monitor, CHAN_MON_OP, s, strlen(s));
	if (r < 0 && r != -ENOBUFS)
		log_warn("monitor channel: %s", strerror(-r));
	free(s);
}

void master_monitor_hdel(struct master *m, const char *name)
{
	master_monitor_send(m, json_pack("{s:s, s:[s]}", "op", "hdel", "names", name));
}

static int monitor_body(void *arg, int chan)
{
	(void)arg;
	struct master *m = master_instance;
	struct monitor_args a = {.cfg = m->cfg, .fd = chan, .master_pid = m->self};
	return monitor_main(&a);
}

static void monitor_prune(struct master *m)
{
	json_t *keep = json_array();
	FOREACH_SLOT(m, s)
	json_array_append_new(keep, json_string(s->name));
	master_monitor_send(m, json_pack("{s:s, s:o}", "op", "prune", "keep", keep));
}

static int monitor_message(void *owner, const struct chan_msg *msg, char *why, size_t whylen);

static void monitor_exited(void *owner, int code, bool violated)
{
	struct master *m = owner;
	m->monitor = NULL;
	m->monitor_pid = 0;
	master_monitor_calls_answer(m, 0, NULL);
	m->redis_ok = false;
	if (!m->shutting_down) {
		if (!m->monitor_stop_sent)
			log_warn("monitor exited (%s %d); restarting it", code < 0 ? "signal" : "status",
				 code < 0 ? -code : code);
		/* A violator waits like a crash: it may do it again at once. */
		m->monitor_respawn_at = util_mono_ms() + (m->monitor_stop_sent && !violated ? 0 : 1000);
	}
	m->monitor_stop_sent = false;
}

static const struct child_ops monitor_ops = {
	.message = monitor_message,
	.exited = monitor_exited,
};

void master_monitor_spawn(struct master *m)
{
	struct child_spec spec = {
		.name = "monitor",
		.log_proc = "monitor",
		.peer = CHAN_FROM_MONITOR,
		.outq_max = MONITOR_OUTQ_MAX,
		.body = monitor_body,
		.ops = &monitor_ops,
		.owner = m,
	};
	struct child *c;
	pid_t pid = child_spawn(m->children, &spec, &c);
	m->monitor_respawn_at = 0;
	if (pid < 0) {
		m->monitor_respawn_at = util_mono_ms() + 1000;
		return;
	}
	m->monitor_pid = pid;
	m->monitor = c;
	m->monitor_stop_sent = false;
	m->last_report_mono = util_mono_ms();
	monitor_prune(m);
}

/* Ask the monitor to finish its queue and exit; it is re-forked (with
 * the current configuration) unless we are shutting down. */
void master_monitor_restart(struct master *m)
{
	if (m->monitor_pid <= 0 || m->monitor_stop_sent)
		return;
	master_monitor_send(m, json_pack("{s:s}", "op", "stop"));
	m->monitor_stop_sent = true;
	m->monitor_kill_at = util_mono_ms() + m->cfg->redis.connect_timeout_ms +
			     m->cfg->redis.command_timeout_ms + 1000;
}

void master_monitor_redis_health(struct master *m, bool ok, const char *why)
{
	if (ok && !m->redis_ok) {
		m->redis_back_mono = util_mono_ms();
		log_info("heartbeat health known again: redis reachable; hang judgement resumes in %lld ms",
			 (long long)m->cfg->heartbeat.timeout_ms);
	} else if (!ok && m->redis_ok) {
		log_warn("heartbeat health unknown: %s; supervising from process state alone", why);
	}
	m->redis_ok = ok;
}

static void slot_take_beat(struct master *m, struct slot *s, json_t *hb, int64_t wall, int64_t now)
{
	if (!hb || json_integer_value(json_object_get(hb, "pid")) != s->pid)
		return;
	int64_t beat = json_integer_value(json_object_get(hb, "beat_ms"));
	if (beat != s->beat_ms) {
		/* When did it change?  At most one poll interval ago; the wall
		 * clock narrows it, the clamp keeps clock steps harmless. */
		int64_t age = wall - beat;
		if (age < 0)
			age = 0;
		if (age > m->cfg->heartbeat.interval_ms)
			age = m->cfg->heartbeat.interval_ms;
		s->beat_ms = beat;
		s->beat_change_mono = now - age;
	}
	json_decref(s->hb);
	s->hb = json_incref(hb);
}

int64_t master_late_ms(const struct sv_config *cfg)
{
	return cfg->heartbeat.interval_ms * 7 / 4;
}

/* Judged at the last registry read, not now: between two reads (one
 * interval apart) the master cannot know of a newer beat, and an age
 * taken now would flip a healthy worker just before every read (beat
 * every interval, read every interval: ages up to two intervals). */
bool master_slot_late(const struct master *m, const struct slot *s)
{
	int64_t base = s->beat_change_mono;
	if (s->started_mono > base)
		base = s->started_mono;
	if (m->redis_back_mono > base)
		base = m->redis_back_mono; /* no beat could land while Redis was away */
	return m->last_report_mono - base > master_late_ms(m->cfg);
}

/* ---------- checking what Redis relayed ---------- */

#define HB_TEXT_MAX 256
#define HB_ERROR_MAX 4096

static const char *const hb_counts[] = {"incarnation", "started_ms", "processed", "failed", "dead_lettered",
					"lost", "restarts", "redis_rtt_us", "batch_sum_us", "slot",
					"client_id", "forgotten", "conflicts", "reruns"};
static const char *const hb_texts[] = {"pool", "kind", "status"};
static const char *const hb_optional_texts[] = {"current", "last_error"};
/* A worker's stream set and active read set: shown, never acted on. */
static const char *const hb_set_sizes[] = {"streams", "active"};
#define HB_STREAMS_MAX 100000000

static bool is_count(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0;
}

static bool is_text(const json_t *v, size_t max)
{
	return json_is_string(v) && json_string_length(v) <= max;
}

static bool is_hist(const json_t *v)
{
	if (!json_is_array(v) || json_array_size(v) > HB_HIST_N)
		return false;
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e) if (!is_count(e)) return false;
	return true;
}

/* A worker's tool calls in hand (heartbeat.h): shown, never acted on.
 * A clean copy of a well-formed list, or NULL. */
static json_t *clean_calls(const json_t *v)
{
	static const char *const texts[] = {"run", "call_id", "tool", "entry"};
	if (!json_is_array(v) || json_array_size(v) > HB_CALLS_MAX)
		return NULL;
	json_t *out = json_array();
	size_t i;
	const json_t *c;
	json_array_foreach(v, i, c) {
		const char *st = json_string_value(json_object_get(c, "state"));
		json_t *o = st && (!strcmp(st, "running") || !strcmp(st, "waiting"))
				    ? json_pack("{s:s}", "state", st) : NULL;
		for (size_t k = 0; o && k < ARRAY_SIZE(texts); k++) {
			json_t *t = json_object_get(c, texts[k]);
			if (is_text(t, HB_CALL_TEXT_MAX))
				json_object_set(o, texts[k], t);
			else
				json_decref(o), o = NULL;
		}
		if (!o) {
			json_decref(out);
			return NULL;
		}
		json_array_append_new(out, o);
	}
	return out;
}

/* A tool worker's handlers (heartbeat.h): shown, never acted on (the pid
 * is not used to signal anything).  A clean copy of a well-formed list
 * (known keys, well-typed, texts bounded, a known state, at most
 * HB_HANDLERS_MAX), or NULL. */
static json_t *clean_handlers(const json_t *v)
{
	static const char *const states[] = HB_HANDLER_STATES;
	static const char *const counts[] = {"inflight", "served", "restarts"};
	if (!json_is_array(v) || json_array_size(v) > HB_HANDLERS_MAX)
		return NULL;
	json_t *out = json_array();
	size_t i;
	const json_t *e;
	json_array_foreach(v, i, e) {
		const json_t *tool = json_object_get(e, "tool"), *pid = json_object_get(e, "pid"),
			     *st = json_object_get(e, "state"), *dr = json_object_get(e, "draining"),
			     *le = json_object_get(e, "last_error");
		bool ok = json_is_object(e) && is_text(tool, HB_CALL_TEXT_MAX) && json_is_boolean(dr) &&
			  (json_is_null(pid) || (json_is_integer(pid) && json_integer_value(pid) > 0 &&
						 json_integer_value(pid) <= INT32_MAX)) &&
			  (json_is_null(le) || is_text(le, HB_HANDLER_ERROR_MAX)) && json_is_string(st);
		bool known = false;
		for (size_t k = 0; ok && k < ARRAY_SIZE(states); k++)
			known = known || strcmp(json_string_value(st), states[k]) == 0;
		for (size_t k = 0; ok && k < ARRAY_SIZE(counts); k++)
			ok = is_count(json_object_get(e, counts[k]));
		if (!ok || !known) {
			json_decref(out);
			return NULL;
		}
		json_t *o = json_pack("{s:O, s:O, s:O, s:O, s:O}", "tool", tool, "pid", pid, "state", st, "draining",
				      dr, "last_error", le);
		for (size_t k = 0; k < ARRAY_SIZE(counts); k++)
			json_object_set(o, counts[k], json_object_get(e, counts[k]));
		json_array_append_new(out, o);
	}
	return out;
}

/* A tool worker's per tool counters (heartbeat.h), summed into metrics:
 * a clean copy when every entry names a distinct tool of cfg (so at most
 * cfg->ntools entries) with well-typed counters and a histogram of
 * exactly HB_TOOL_HIST_N buckets, else NULL. */
static json_t *clean_tools(const struct sv_config *cfg, const json_t *v)
{
	static const char *const counts[] = {"calls", "errors", "timeouts", "redispatches", "sum_us"};
	if (!cfg || !json_is_array(v) || json_array_size(v) > cfg->ntools)
		return NULL;
	json_t *out = json_array(), *seen = json_object();
	size_t i;
	const json_t *e;
	json_array_foreach(v, i, e) {
		const json_t *tool = json_object_get(e, "tool"), *hist = json_object_get(e, "hist");
		const char *name = json_string_value(tool);
		bool ok = json_is_object(e) && name && strlen(name) == json_string_length(tool) &&
			  config_find_tool(cfg, name) && !json_object_get(seen, name) && json_is_array(hist) &&
			  json_array_size(hist) == HB_TOOL_HIST_N;
		for (size_t k = 0; ok && k < ARRAY_SIZE(counts); k++)
			ok = is_count(json_object_get(e, counts[k]));
		size_t b;
		const json_t *x;
		json_array_foreach(ok ? hist : NULL, b, x) ok = ok && is_count(x);
		if (!ok) {
			json_decref(out);
			json_decref(seen);
			return NULL;
		}
		json_object_set_new(seen, name, json_true());
		json_t *o = json_pack("{s:O, s:O}", "tool", tool, "hist", hist);
		for (size_t k = 0; k < ARRAY_SIZE(counts); k++)
			json_object_set(o, counts[k], json_object_get(e, counts[k]));
		json_array_append_new(out, o);
	}
	json_decref(seen);
	return out;
}

/* Copy key when ok(value); a known key with a bad value is dropped. */
static void take_if(json_t *out, const json_t *hb, const char *key, bool ok)
{
	json_t *v = json_object_get(hb, key);
	if (v && ok)
		json_object_set(out, key, v);
}

json_t *master_monitor_check_beat(const struct sv_config *cfg, const json_t *hb, char *why, size_t whylen)
{
	if (!json_is_object(hb)) {
		snprintf(why, whylen, "not a JSON object");
		return NULL;
	}
	const json_t *pid = json_object_get(hb, "pid"), *beat = json_object_get(hb, "beat_ms"),
		     *node = json_object_get(hb, "node");
	if (!json_is_integer(pid) || json_integer_value(pid) <= 0 || !is_count(beat) ||
	    !is_text(node, HB_TEXT_MAX)) {
		snprintf(why, whylen, "pid, beat_ms or node missing or of the wrong type");
		return NULL;
	}
	json_t *out = json_pack("{s:O, s:O, s:O}", "pid", pid, "beat_ms", beat, "node", node);
	for (size_t i = 0; i < ARRAY_SIZE(hb_counts); i++)
		take_if(out, hb, hb_counts[i], is_count(json_object_get(hb, hb_counts[i])));
	for (size_t i = 0; i < ARRAY_SIZE(hb_texts); i++)
		take_if(out, hb, hb_texts[i], is_text(json_object_get(hb, hb_texts[i]), HB_TEXT_MAX));
	for (size_t i = 0; i < ARRAY_SIZE(hb_optional_texts); i++) {
		const json_t *v = json_object_get(hb, hb_optional_texts[i]);
		take_if(out, hb, hb_optional_texts[i], json_is_null(v) || is_text(v, HB_ERROR_MAX));
	}
	take_if(out, hb, "batch_hist", is_hist(json_object_get(hb, "batch_hist")));
	json_t *calls = clean_calls(json_object_get(hb, "calls"));
	if (calls)
		json_object_set_new(out, "calls", calls);
	take_if(out, hb, "calls_more", is_count(json_object_get(hb, "calls_more")));
	json_t *handlers = clean_handlers(json_object_get(hb, "handlers"));
	if (handlers)
		json_object_set_new(out, "handlers", handlers);
	json_t *tools = clean_tools(cfg, json_object_get(hb, "tools"));
	if (tools)
		json_object_set_new(out, "tools", tools);
	const json_t *tp = json_object_get(hb, "tool_pgid");
	take_if(out, hb, "tool_pgid", json_is_null(tp) || is_count(tp));
	for (size_t i = 0; i < ARRAY_SIZE(hb_set_sizes); i++) {
		const json_t *v = json_object_get(hb, hb_set_sizes[i]);
		take_if(out, hb, hb_set_sizes[i], is_count(v) && json_integer_value(v) <= HB_STREAMS_MAX);
	}
	return out;
}

/* A bad field is logged once per name (bounded), not once per report. */
static void warn_bad_field(struct master *m, const char *name, const char *why)
{
	if (!m->warned_fields)
		m->warned_fields = json_object();
	if (json_object_get(m->warned_fields, name))
		return;
	if (json_object_size(m->warned_fields) >= 1000)
		json_object_clear(m->warned_fields);
	json_object_set_new(m->warned_fields, name, json_true());
	log_warn("%s:workers field %s ignored: %s", m->cfg->namespace, name, why);
}

/* Keep the well-formed heartbeats of the report, field by field. */
static json_t *checked_workers(struct master *m, const json_t *workers)
{
	json_t *out = json_object();
	const char *name;
	json_t *hb;
	json_object_foreach((json_t *)workers, name, hb) {
		char why[160];
		json_t *clean = master_monitor_check_beat(m->cfg, hb, why, sizeof(why));
		if (clean)
			json_object_set_new(out, name, clean);
		else
			warn_bad_field(m, name, why);
	}
	return out;
}

static void show_remote(struct master *m, const json_t *workers, int64_t wall)
{
	json_t *remote = json_array();
	const char *name;
	json_t *hb;
	json_object_foreach((json_t *)workers, name, hb) {
		const char *node = json_string_value(json_object_get(hb, "node"));
		if (strcmp(node, m->cfg->node) == 0)
			continue;
		int64_t age = wall - json_integer_value(json_object_get(hb, "beat_ms"));
		/* Another node's worker: judged by its own master; only
		 * shown, and marked stale after 3 x timeout. */
		json_array_append_new(remote, json_pack("{s:s, s:O, s:O?, s:O?, s:I, s:b}", "name", name,
							"node", json_object_get(hb, "node"), "pool",
							json_object_get(hb, "pool"), "status",
							json_object_get(hb, "status"), "beat_age_ms",
							(json_int_t)age, "stale",
							age > 3 * m->cfg->heartbeat.timeout_ms));
	}
	json_decref(m->remote);
	m->remote = remote;
}

/* ---------- per pattern summaries (patsum.c computes them) ---------- */

static const char *const pattern_figures[] = {"matched", "active", "lag", "pending", "oldest_pending_idle_ms",
					      "missing"};

/* Does a pool reading pattern have group? */
static bool pattern_group_configured(const struct sv_config *cfg, const char *pattern, const char *group)
{
	for (size_t i = 0; i < cfg->npools; i++)
		if (strcmp(cfg->pools[i].group, group) == 0 && config_strlist_has(&cfg->pools[i].patterns, pattern))
			return true;
	return false;
}

/* One row: two strings without a NUL (jansson has checked the UTF-8;
 * their length is bounded by the configured names they must equal), the
 * figures as non-negative integers, and an age no older than the master's
 * clock (the monitor is younger), so now - age cannot overflow. */
static bool pattern_row_typed(const json_t *row, int64_t now_mono)
{
	if (!json_is_object(row))
		return false;
	static const char *const texts[] = {"pattern", "group"};
	for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
		const json_t *v = json_object_get(row, texts[i]);
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
			return false;
	}
	for (size_t i = 0; i < ARRAY_SIZE(pattern_figures); i++)
		if (!is_count(json_object_get(row, pattern_figures[i])))
			return false;
	const json_t *age = json_object_get(row, "age_ms");
	return is_count(age) && json_integer_value(age) <= now_mono;
}

int master_monitor_check_patterns(const struct sv_config *cfg, const json_t *rows, int64_t now_mono,
				  json_t **out, char *why, size_t whylen)
{
	*out = NULL;
	if (!json_is_array(rows) || json_array_size(rows) > MASTER_PATTERN_ROWS_MAX) {
		snprintf(why, whylen, "beats: patterns not an array of at most %u rows", MASTER_PATTERN_ROWS_MAX);
		return -EPROTO;
	}
	json_t *clean = json_array(), *seen = json_object();
	size_t i;
	json_t *row;
	json_array_foreach((json_t *)rows, i, row) {
		if (!pattern_row_typed(row, now_mono)) {
			snprintf(why, whylen, "beats: pattern row %zu is not well-typed", i);
			json_decref(clean);
			json_decref(seen);
			return -EPROTO;
		}
		const char *pat = json_string_value(json_object_get(row, "pattern"));
		const char *grp = json_string_value(json_object_get(row, "group"));
		/* The monitor may still run the configuration before a
		 * reload: a pair not configured now is dropped, not blamed. */
		if (!pattern_group_configured(cfg, pat, grp))
			continue;
		json_t *groups = json_object_get(seen, pat);
		if (!groups) {
			groups = json_object();
			json_object_set_new(seen, pat, groups);
		}
		if (json_object_get(groups, grp)) {
			snprintf(why, whylen, "beats: pattern row %zu repeats a pattern and group", i);
			json_decref(clean);
			json_decref(seen);
			return -EPROTO;
		}
		json_object_set_new(groups, grp, json_true());
		json_t *c = json_pack("{s:O, s:O}", "pattern", json_object_get(row, "pattern"), "group",
				      json_object_get(row, "group"));
		for (size_t f = 0; f < ARRAY_SIZE(pattern_figures); f++)
			json_object_set(c, pattern_figures[f], json_object_get(row, pattern_figures[f]));
		/* Ages are kept as the master's own monotonic time of the
		 * figures, so status can age them without the monitor. */
		json_object_set_new(c, "taken_mono",
				    json_integer(now_mono - json_integer_value(json_object_get(row, "age_ms"))));
		json_array_append_new(clean, c);
	}
	json_decref(seen);
	*out = clean;
	return 0;
}

/* Does a pool (or the top level) read stream literally? */
static bool literal_stream(const struct sv_config *cfg, const char *stream)
{
	if (config_strlist_has(&cfg->streams, stream))
		return true;
	for (size_t i = 0; i < cfg->npools; i++)
		if (config_strlist_has(&cfg->pools[i].streams, stream))
			return true;
	return false;
}

int master_monitor_check_dead(const struct sv_config *cfg, const json_t *dead, json_t **out, char *why,
			      size_t whylen)
{
	*out = NULL;
	if (!json_is_object(dead)) {
		snprintf(why, whylen, "beats: dead not an object");
		return -EPROTO;
	}
	json_t *clean = json_object();
	const char *stream;
	json_t *v;
	json_object_foreach((json_t *)dead, stream, v) {
		if (!is_count(v)) {
			snprintf(why, whylen, "beats: dead-letter depth of a stream is not a non-negative integer");
			json_decref(clean);
			return -EPROTO;
		}
		if (literal_stream(cfg, stream))
			json_object_set(clean, stream, v);
	}
	*out = clean;
	return 0;
}

/* The monitor's own report: its shape is the monitor's to get right (a
 * violation otherwise); the heartbeats inside are Redis's and only dropped
 * one by one. */
static int on_beats(struct master *m, json_t *msg, char *why, size_t whylen)
{
	int64_t now = util_mono_ms();
	json_t *ok = json_object_get(msg, "ok");
	if (!json_is_boolean(ok)) {
		snprintf(why, whylen, "beats without ok");
		return -EPROTO;
	}
	m->last_report_mono = now;
	if (!json_is_true(ok)) {
		const char *err = json_string_value(json_object_get(msg, "error"));
		master_monitor_redis_health(m, false, err ? err : "redis error");
		return 0;
	}
	json_t *wall_j = json_object_get(msg, "wall_ms"), *workers = json_object_get(msg, "workers"),
	       *pending = json_object_get(msg, "pending"), *groups = json_object_get(msg, "groups");
	if (!json_is_integer(wall_j) || !json_is_object(workers) || !json_is_object(pending) ||
	    !json_is_array(groups)) {
		snprintf(why, whylen, "beats without wall_ms, workers, pending or groups");
		return -EPROTO;
	}
	json_t *patterns = json_object_get(msg, "patterns"), *rows = NULL;
	if (patterns && master_monitor_check_patterns(m->cfg, patterns, now, &rows, why, whylen) < 0)
		return -EPROTO;
	json_t *dead = json_object_get(msg, "dead"), *depths = NULL;
	if (dead && master_monitor_check_dead(m->cfg, dead, &depths, why, whylen) < 0) {
		json_decref(rows);
		return -EPROTO;
	}
	if (rows) {
		json_decref(m->pattern_rows);
		m->pattern_rows = rows;
	}
	if (depths) {
		json_decref(m->dead_letters);
		m->dead_letters = depths;
	}
	master_monitor_redis_health(m, true, NULL);
	int64_t wall = json_integer_value(wall_j);
	json_t *clean = checked_workers(m, workers);
	json_decref(m->groups);
	m->groups = json_incref(groups);
	FOREACH_SLOT(m, s) {
		slot_take_beat(m, s, json_object_get(clean, s->name), wall, now);
		json_int_t n = json_integer_value(json_object_get(pending, s->name));
		s->pending = n > 0 ? n : 0;
	}
	show_remote(m, clean, wall);
	json_decref(clean);
	return 0;
}

/* ---------- pattern streams (discover.c finds them) ---------- */

/* Is pattern one of the pools' patterns? */
static bool pattern_configured(const struct sv_config *cfg, const char *pattern)
{
	for (size_t i = 0; i < cfg->npools; i++)
		if (config_strlist_has(&cfg->pools[i].patterns, pattern))
			return true;
	return false;
}

/* Bytes of JSON one CHAN_M_STREAMS holds at most (names at their
 * worst-case escaped size), well under CHAN_MON_OP_MAX. */
#define STREAMS_MSG_BUDGET (CHAN_MON_OP_MAX / 2)

/* Send list (names) as "add", "remove" or "wake" in as many messages as
 * needed. */
static void slot_send_names(struct slot *s, const char *key, json_t *names)
{
	size_t i = 0, n = json_array_size(names);
	while (i < n) {
		json_t *part = json_array();
		size_t used = 32;
		for (; i < n; i++) {
			size_t cost = 6 * json_string_length(json_array_get(names, i)) + 3;
			if (json_array_size(part) > 0 && used + cost > STREAMS_MSG_BUDGET)
				break;
			json_array_append(part, json_array_get(names, i));
			used += cost;
		}
		json_t *msg = json_pack("{s:[], s:[]}", "add", "remove");
		json_object_set_new(msg, key, part);
		char *txt = json_dumps(msg, JSON_COMPACT);
		json_decref(msg);
		if (txt)
			master_slot_send(s, CHAN_M_STREAMS, txt, strlen(txt));
		free(txt);
	}
}

/* A worker that just registered reads every known stream of its pool's
 * patterns. */
void master_streams_send_all(struct master *m, struct slot *s)
{
	if (!s->pool || !s->pool->cfg || !m->pattern_streams)
		return;
	json_t *all = json_array();
	const struct pool_config *pc = s->pool->cfg;
	for (size_t j = 0; j < pc->patterns.n; j++) {
		const char *name;
		json_t *v;
		json_object_foreach(json_object_get(m->pattern_streams, pc->patterns.v[j]), name, v)
			json_array_append_new(all, json_string(name));
	}
	if (json_array_size(all) > 0) {
		slot_send_names(s, "add", all);
		log_debug("%s: told it the %zu known pattern streams", s->name, json_array_size(all));
	}
	json_decref(all);
}

void master_streams_prune(struct master *m)
{
	const char *pattern;
	json_t *v, *tmp;
	json_object_foreach_safe(m->pattern_streams, tmp, pattern, v) {
		if (!pattern_configured(m->cfg, pattern))
			json_object_del(m->pattern_streams, pattern);
	}
}

/* The names of list that may be applied: strings matching pattern, not
 * our own keys; the rest is dropped (logged once: the names come from
 * Redis, which anyone can write). */
static json_t *checked_names(struct master *m, const char *pattern, const json_t *list)
{
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach((json_t *)list, i, v) {
		const char *name = json_string_value(v);
		if (name && strlen(name) == json_string_length(v) && !config_own_key(m->cfg, name) &&
		    config_pattern_match(pattern, name)) {
			json_array_append(out, v);
		} else if (!m->warned_streams) {
			m->warned_streams = true;
			log_warn("%s: a stream name for pattern %s that is not a string matching it, or is "
				 "streamvisor's own; dropped (logged once)", __func__, pattern);
		}
	}
	return out;
}

/* Discovery's changes: apply them to the known set, relay what changed to
 * the live workers of the pools having the pattern (removals first), then
 * have the monitor wake those workers out of a blocked read. */
static int on_streams(struct master *m, json_t *msg, char *why, size_t whylen)
{
	const char *pattern = json_string_value(json_object_get(msg, "pattern"));
	json_t *add = json_object_get(msg, "add"), *remove = json_object_get(msg, "remove");
	json_t *wake = json_object_get(msg, "wake");
	if (!pattern || !json_is_array(add) || !json_is_array(remove) || (wake && !json_is_array(wake))) {
		snprintf(why, whylen, "mon_streams without pattern, add or remove, or a wake that is no list");
		return -EPROTO;
	}
	if (!pattern_configured(m->cfg, pattern)) {
		/* The monitor may still run the configuration before a reload. */
		if (!m->warned_streams)
			log_warn("%s: pattern %s is not configured (now); dropped (logged once)", __func__,
				 pattern);
		m->warned_streams = true;
		return 0;
	}
	if (!m->pattern_streams)
		m->pattern_streams = json_object();
	json_t *known = json_object_get(m->pattern_streams, pattern);
	if (!known) {
		known = json_object();
		json_object_set_new(m->pattern_streams, pattern, known);
	}
	json_t *rem = checked_names(m, pattern, remove), *ad = checked_names(m, pattern, add);
	json_t *gone = json_array(), *came = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(rem, i, v) {
		if (json_object_del(known, json_string_value(v)) == 0)
			json_array_append(gone, v);
	}
	json_array_foreach(ad, i, v) {
		if (!json_object_get(known, json_string_value(v))) {
			json_object_set_new(known, json_string_value(v), json_true());
			json_array_append(came, v);
		}
	}
	json_decref(rem);
	json_decref(ad);
	/* Woken: known streams with a new entry after a quiet spell. */
	json_t *woken = json_array();
	if (wake) {
		json_t *wk = checked_names(m, pattern, wake);
		json_array_foreach(wk, i, v) {
			if (json_object_get(known, json_string_value(v)))
				json_array_append(woken, v);
		}
		json_decref(wk);
	}
	if (json_array_size(gone) + json_array_size(came) + json_array_size(woken) > 0) {
		log_debug("discovered %zu streams for pattern %s (+%zu -%zu, %zu woken); relaying",
			  json_object_size(known), pattern, json_array_size(came), json_array_size(gone),
			  json_array_size(woken));
		json_t *ids = json_array();
		for (size_t p = 0; p < m->npools; p++) {
			struct pool *pl = m->pools[p];
			if (!pl->cfg || pl->removed || !config_strlist_has(&pl->cfg->patterns, pattern))
				continue;
			for (size_t k = 0; k < pl->nslots; k++) {
				struct slot *s = pl->slots[k];
				if (!s->child || !s->registered)
					continue;
				slot_send_names(s, "remove", gone);
				slot_send_names(s, "add", came);
				slot_send_names(s, "wake", woken);
				json_int_t id = json_integer_value(json_object_get(s->hb, "client_id"));
				if (id > 0)
					json_array_append_new(ids, json_integer(id));
			}
		}
		if (json_array_size(ids) > 0)
			master_monitor_send(m, json_pack("{s:s, s:o}", "op", "unblock", "ids", ids));
		else
			json_decref(ids);
	}
	json_decref(gone);
	json_decref(came);
	json_decref(woken);
	return 0;
}

/* Answer one forwarded call (id 0: all of them, the monitor is gone). */
void master_monitor_calls_answer(struct master *m, json_int_t id, json_t *reply)
{
	struct monitor_call **pp = &m->calls;
	while (*pp) {
		struct monitor_call *call = *pp;
		if (id && call->id != id) {
			pp = &call->next;
			continue;
		}
		*pp = call->next;
		if (reply)
			control_reply(call->client, id ? json_incref(reply) : json_deep_copy(reply));
		else
			control_reply_error(call->client, "the monitor exited before answering; try again");
		control_client_unref(call->client);
		free(call);
		if (id)
			break;
	}
	json_decref(reply);
}

static int monitor_message(void *owner, const struct chan_msg *msg, char *why, size_t whylen)
{
	struct master *m = owner;
	json_error_t err;
	json_t *j = json_loadb((const char *)msg->data, msg->len, 0, &err);
	if (!json_is_object(j)) {
		snprintf(why, whylen, "%s: not a JSON object: %s", chan_type_name(msg->type), err.text);
		json_decref(j);
		return -EPROTO;
	}
	int r = 0;
	if (msg->type == CHAN_MON_BEATS) {
		r = on_beats(m, j, why, whylen);
	} else if (msg->type == CHAN_MON_STREAMS) {
		r = on_streams(m, j, why, whylen);
	} else if (msg->type == CHAN_MON_REPLY) {
		json_t *id = json_object_get(j, "id"), *reply = json_object_get(j, "reply");
		if (!json_is_integer(id) || json_integer_value(id) <= 0 || !json_is_object(reply)) {
			snprintf(why, whylen, "reply without id or reply object");
			r = -EPROTO;
		} else {
			master_monitor_calls_answer(m, json_integer_value(id), json_incref(reply));
		}
	} else {
		snprintf(why, whylen, "%s is not for the master", chan_type_name(msg->type));
		r = -EPROTO;
	}
	json_decref(j);
	return r;
}
