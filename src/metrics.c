/* metrics: Prometheus text exposition and a tiny HTTP/1.0 server. */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heartbeat.h"
#include "log.h"
#include "util.h"

struct out {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	if (o->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t ncap = (o->cap + (size_t)n) * 2;
		char *nb = realloc(o->buf, ncap);
		if (!nb) {
			o->failed = true;
			return;
		}
		o->buf = nb;
		o->cap = ncap;
	}
}

/* One histogram's series: cumulative buckets of hist (n counts, the
 * last one +Inf; bounds in ms), then _sum (sum_us) and _count.  lval is
 * already escaped. */
static void put_histogram(struct out *o, const char *name, const char *lkey, const char *lval,
			  const json_t *hist, const int64_t *bounds, size_t n, long long sum_us)
{
	long long cum = 0;
	for (size_t b = 0; b < n; b++) {
		cum += (long long)json_integer_value(json_array_get(hist, b));
		if (b < n - 1)
			put(o, "%s_bucket{%s=\"%s\",le=\"%g\"} %lld\n", name, lkey, lval, (double)bounds[b] / 1000.0, cum);
		else
			put(o, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %lld\n", name, lkey, lval, cum);
	}
	put(o, "%s_sum{%s=\"%s\"} %.6f\n", name, lkey, lval, (double)sum_us / 1e6);
	put(o, "%s_count{%s=\"%s\"} %lld\n", name, lkey, lval, cum);
}

/* Label values escape backslash, double quote and newline. */
static const char *label(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (; s && *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"')
			buf[o++] = '\\', buf[o++] = *s;
		else if (*s == '\n')
			buf[o++] = '\\', buf[o++] = 'n';
		else
			buf[o++] = *s;
	}
	buf[o] = '\0';
	return buf;
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void header(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void workers_by_state(struct out *o, const json_t *workers)
{
	static const char *const states[] = {"STOPPED", "STARTING", "RUNNING", "BACKOFF",
					     "STOPPING", "EXITED", "FATAL", "HUNG"};
	header(o, "streamvisor_workers", "gauge", "Workers by pool and state.");
	json_t *pools = json_object();
	size_t i;
	json_t *w;
	json_array_foreach(workers, i, w) json_object_set_new(pools, jstr(w, "pool"), json_true());
	const char *pool;
	json_t *v;
	char lp[256];
	json_object_foreach(pools, pool, v) {
		for (size_t s = 0; s < ARRAY_SIZE(states); s++) {
			long long n = 0;
			json_array_foreach(workers, i, w) n += !strcmp(jstr(w, "pool"), pool) && !strcmp(jstr(w, "state"), states[s]);
			put(o, "streamvisor_workers{pool=\"%s\",state=\"%s\"} %lld\n", label(pool, lp, sizeof(lp)), states[s], n);
		}
	}
	json_decref(pools);
	char lw[512];
	header(o, "streamvisor_worker_restarts_total", "counter", "Restarts of each worker slot after a crash or hang.");
	json_array_foreach(workers, i, w)
		put(o, "streamvisor_worker_restarts_total{pool=\"%s\",worker=\"%s\"} %lld\n", label(jstr(w, "pool"), lp, sizeof(lp)),
		    label(jstr(w, "name"), lw, sizeof(lw)), jint(w, "restarts"));
	header(o, "streamvisor_worker_heartbeat_age_seconds", "gauge", "Age of each running worker's last heartbeat.");
	json_array_foreach(workers, i, w) {
		json_t *age = json_object_get(w, "beat_age_ms");
		if (json_is_integer(age))
			put(o, "streamvisor_worker_heartbeat_age_seconds{worker=\"%s\"} %.3f\n", label(jstr(w, "name"), lw, sizeof(lw)),
			    (double)json_integer_value(age) / 1000.0);
	}
	header(o, "streamvisor_worker_late", "gauge",
	       "1 when a running worker's heartbeat is late (older than 1.75 heartbeat intervals at the last registry read).");
	json_array_foreach(workers, i, w) {
		json_t *late = json_object_get(w, "late");
		if (json_is_boolean(late) && json_is_integer(json_object_get(w, "pid")))
			put(o, "streamvisor_worker_late{worker=\"%s\"} %d\n", label(jstr(w, "name"), lw, sizeof(lw)),
			    json_is_true(late));
	}
}

static void pool_counters(struct out *o, const json_t *pools)
{
	static const char *const names[][3] = {
		{"processed", "streamvisor_processed_total", "Entries processed and acknowledged, per pool."},
		{"failed", "streamvisor_failed_total", "Failures (tool errors, durable-write retries), per pool."},
		{"dead_lettered", "streamvisor_dead_lettered_total", "Entries moved to a dead-letter stream, per pool."},
		{"lost", "streamvisor_lost_total", "Pending entries found deleted from their stream, per pool."},
		{"forgotten", "streamvisor_forgotten_entries_total",
		 "Entries of forgotten runs written before their forget: acknowledged, never stored, per pool."},
		{"conflicts", "streamvisor_conflicts_total",
		 "Events dead-lettered as conflicting with a stored event (or of a quarantined run), per pool."},
		{"reruns", "streamvisor_tool_reruns_total",
		 "Tool calls run again (at least once execution) and later outputs of a stored call, per pool."},
	};
	char lp[256];
	size_t i;
	json_t *p;
	for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
		header(o, names[k][1], "counter", names[k][2]);
		json_array_foreach(pools, i, p)
			put(o, "%s{pool=\"%s\"} %lld\n", names[k][1], label(jstr(p, "name"), lp, sizeof(lp)), jint(p, names[k][0]));
	}
	static const int64_t bounds[] = HB_HIST_BOUNDS;
	header(o, "streamvisor_batch_duration_seconds", "histogram", "Time to process one batch (durable write included).");
	json_array_foreach(pools, i, p) {
		label(jstr(p, "name"), lp, sizeof(lp));
		put_histogram(o, "streamvisor_batch_duration_seconds", "pool", lp, json_object_get(p, "batch_hist"),
			      bounds, HB_HIST_N, jint(p, "batch_sum_us"));
	}
}

static void group_gauges(struct out *o, const json_t *groups)
{
	char ls[256], lg[256];
	size_t i;
	json_t *g;
	header(o, "streamvisor_stream_length", "gauge", "Entries in each stream (XLEN).");
	json_t *seen = json_object();
	json_array_foreach(groups, i, g) {
		if (json_object_get(seen, jstr(g, "stream")))
			continue;
		json_object_set_new(seen, jstr(g, "stream"), json_true());
		put(o, "streamvisor_stream_length{stream=\"%s\"} %lld\n", label(jstr(g, "stream"), ls, sizeof(ls)), jint(g, "length"));
	}
	json_decref(seen);
	static const char *const gauges[][3] = {
		{"lag", "streamvisor_group_lag", "Entries not yet delivered to the group."},
		{"pending", "streamvisor_group_pending", "Entries delivered to the group and not acknowledged."},
	};
	for (size_t k = 0; k < ARRAY_SIZE(gauges); k++) {
		header(o, gauges[k][1], "gauge", gauges[k][2]);
		json_array_foreach(groups, i, g) {
			if (json_is_true(json_object_get(g, "missing")))
				continue;
			put(o, "%s{stream=\"%s\",group=\"%s\"} %lld\n", gauges[k][1], label(jstr(g, "stream"), ls, sizeof(ls)),
			    label(jstr(g, "group"), lg, sizeof(lg)), jint(g, gauges[k][0]));
		}
	}
	header(o, "streamvisor_group_oldest_pending_idle_seconds", "gauge", "Idle time of the group's oldest pending entry.");
	json_array_foreach(groups, i, g) {
		if (json_is_true(json_object_get(g, "missing")))
			continue;
		put(o, "streamvisor_group_oldest_pending_idle_seconds{stream=\"%s\",group=\"%s\"} %.3f\n",
		    label(jstr(g, "stream"), ls, sizeof(ls)), label(jstr(g, "group"), lg, sizeof(lg)),
		    (double)jint(g, "oldest_pending_idle_ms") / 1000.0);
	}
	header(o, "streamvisor_group_pinned", "gauge", "1 when a group that is not configured holds the stream's trim point.");
	json_array_foreach(groups, i, g)
		put(o, "streamvisor_group_pinned{stream=\"%s\",group=\"%s\"} %d\n", label(jstr(g, "stream"), ls, sizeof(ls)),
		    label(jstr(g, "group"), lg, sizeof(lg)), json_is_true(json_object_get(g, "pinned")));
	header(o, "streamvisor_group_missing", "gauge", "1 when a configured group does not exist (workers re-create it).");
	json_array_foreach(groups, i, g)
		put(o, "streamvisor_group_missing{stream=\"%s\",group=\"%s\"} %d\n", label(jstr(g, "stream"), ls, sizeof(ls)),
		    label(jstr(g, "group"), lg, sizeof(lg)), json_is_true(json_object_get(g, "missing")));
}

/* Label values of any length, escaped (patterns and groups come from the
 * configuration and have no bound of their own). */
static char *label_dup(const char *s)
{
	size_t len = 2 * strlen(s ? s : "") + 4; /* each byte escaped at worst, as label() counts */
	char *buf = util_xcalloc(len, 1);
	label(s, buf, len);
	return buf;
}

/* One summary per pattern and group (patsum.c); a row without figures yet
 * (before the monitor's first walk ended) is left out. */
static void pattern_gauges(struct out *o, const json_t *rows)
{
	static const struct {
		const char *key, *name, *help;
		bool ms; /* milliseconds, shown as seconds */
	} gauges[] = {
		{"matched", "streamvisor_pattern_streams", "Streams the pattern matches (as discovery knows them).", false},
		{"active", "streamvisor_pattern_active_streams", "Matched streams where the group has lag or pending entries.", false},
		{"lag", "streamvisor_pattern_lag", "Entries not yet delivered to the group, over the pattern's streams.", false},
		{"pending", "streamvisor_pattern_pending", "Entries delivered to the group and not acknowledged, over the pattern's streams.", false},
		{"oldest_pending_idle_ms", "streamvisor_pattern_oldest_pending_idle_seconds", "Largest idle time of a stream's oldest pending entry, over the pattern's streams.", true},
		{"missing", "streamvisor_pattern_missing_group_streams", "Matched streams that do not have the group (yet).", false},
		{"age_ms", "streamvisor_pattern_summary_age_seconds", "Age of the pattern's figures (the monitor walks the streams at a bounded rate).", true},
	};
	size_t i;
	json_t *r;
	for (size_t k = 0; k < ARRAY_SIZE(gauges); k++) {
		header(o, gauges[k].name, "gauge", gauges[k].help);
		json_array_foreach(rows, i, r) {
			json_t *v = json_object_get(r, gauges[k].key);
			if (!json_is_integer(v))
				continue;
			char *lp = label_dup(jstr(r, "pattern")), *lg = label_dup(jstr(r, "group"));
			if (gauges[k].ms)
				put(o, "%s{pattern=\"%s\",group=\"%s\"} %.3f\n", gauges[k].name, lp, lg,
				    (double)json_integer_value(v) / 1000.0);
			else
				put(o, "%s{pattern=\"%s\",group=\"%s\"} %lld\n", gauges[k].name, lp, lg,
				    (long long)json_integer_value(v));
			free(lp);
			free(lg);
		}
	}
}

/* Each worker's stream set and active read set, when its heartbeat says. */
static void worker_sets(struct out *o, const json_t *workers)
{
	static const char *const gauges[][3] = {
		{"streams", "streamvisor_worker_streams", "Streams in each worker's set (literal and matched by a pattern)."},
		{"active", "streamvisor_worker_active_streams", "Streams each worker reads now (its active set)."},
	};
	char lw[512];
	size_t i;
	json_t *w;
	for (size_t k = 0; k < ARRAY_SIZE(gauges); k++) {
		header(o, gauges[k][1], "gauge", gauges[k][2]);
		json_array_foreach(workers, i, w) {
			json_t *v = json_object_get(w, gauges[k][0]);
			if (json_is_integer(v))
				put(o, "%s{worker=\"%s\"} %lld\n", gauges[k][1], label(jstr(w, "name"), lw, sizeof(lw)),
				    (long long)json_integer_value(v));
		}
	}
}

/* Per tool counters and call durations, both modes (the master sums the
 * tool workers' heartbeats). */
static void tool_metrics(struct out *o, const json_t *tools)
{
	static const char *const counters[][3] = {
		{"calls", "streamvisor_tool_calls_total", "Tool calls finished (an output or an error output), per tool."},
		{"errors", "streamvisor_tool_errors_total", "Tool calls finished with an error output (timeouts included), per tool."},
		{"timeouts", "streamvisor_tool_timeouts_total", "Tool calls past their timeout_ms, per tool."},
		{"redispatches", "streamvisor_tool_redispatches_total",
		 "Calls re-sent alone to a persistent tool's handler after it died with them in flight, per tool."},
	};
	size_t i;
	json_t *t;
	for (size_t k = 0; k < ARRAY_SIZE(counters); k++) {
		header(o, counters[k][1], "counter", counters[k][2]);
		json_array_foreach(tools, i, t) {
			char *lt = label_dup(jstr(t, "tool"));
			put(o, "%s{tool=\"%s\"} %lld\n", counters[k][1], lt, jint(t, counters[k][0]));
			free(lt);
		}
	}
	static const int64_t bounds[] = HB_TOOL_HIST_BOUNDS;
	header(o, "streamvisor_tool_call_duration_seconds", "histogram",
	       "Time from taking a tool call to its output, per tool.");
	json_array_foreach(tools, i, t) {
		char *lt = label_dup(jstr(t, "tool"));
		put_histogram(o, "streamvisor_tool_call_duration_seconds", "tool", lt, json_object_get(t, "hist"),
			      bounds, HB_TOOL_HIST_N, jint(t, "sum_us"));
		free(lt);
	}
}

/* Entries in each literal stream's dead-letter stream (XLEN STREAM:dead). */
static void dead_gauges(struct out *o, const json_t *dead)
{
	header(o, "streamvisor_dead_letters", "gauge", "Dead letters waiting in each stream's STREAM:dead (XLEN).");
	const char *stream;
	json_t *v;
	json_object_foreach((json_t *)dead, stream, v) {
		char *ls = label_dup(stream);
		put(o, "streamvisor_dead_letters{stream=\"%s\"} %lld\n", ls, (long long)json_integer_value(v));
		free(ls);
	}
}

char *metrics_render(const json_t *state)
{
	struct out o = {0};
	header(&o, "streamvisor_redis_up", "gauge", "1 when the master's monitor reaches Redis.");
	put(&o, "streamvisor_redis_up %d\n", json_is_true(json_object_get(state, "redis_up")));
	workers_by_state(&o, json_object_get(state, "workers"));
	pool_counters(&o, json_object_get(state, "pools"));
	group_gauges(&o, json_object_get(state, "groups"));
	worker_sets(&o, json_object_get(state, "workers"));
	pattern_gauges(&o, json_object_get(state, "patterns"));
	tool_metrics(&o, json_object_get(state, "tools"));
	dead_gauges(&o, json_object_get(state, "dead"));
	if (o.failed) {
		free(o.buf);
		return NULL;
	}
	return o.buf ? o.buf : util_xstrdup("");
}
