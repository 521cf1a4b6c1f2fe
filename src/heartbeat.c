/* heartbeat: registration, heartbeats and the fencing key of one worker. */
#include "heartbeat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "util.h"

/* Take or renew the name: free, already ours, or held by the predecessor
 * the master saw die (ARGV[3] = "pid:" prefix). */
static const char fence_script[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if (not v) or v == ARGV[1] or (ARGV[3] ~= '' and string.sub(v, 1, #ARGV[3]) == ARGV[3]) then "
	"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
	"return 0";
static const char release_script[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

static const char *const status_names[] = {
	[HB_STARTING] = "starting", [HB_IDLE] = "idle",         [HB_BUSY] = "busy",
	[HB_PAUSED] = "paused",     [HB_STOPPING] = "stopping", [HB_DEGRADED] = "degraded",
	[HB_STANDBY] = "standby",
};

const char *heartbeat_status_name(enum hb_status s)
{
	return (unsigned)s < ARRAY_SIZE(status_names) ? status_names[s] : "unknown";
}

void heartbeat_init(struct heartbeat *hb, const struct sv_config *cfg, const char *pool,
		    const char *kind, int slot, int64_t restarts, pid_t prev_pid)
{
	memset(hb, 0, sizeof(*hb));
	snprintf(hb->name, sizeof(hb->name), "%s/%s/%d", cfg->node, pool, slot);
	snprintf(hb->workers_key, sizeof(hb->workers_key), "%s:workers", cfg->namespace);
	snprintf(hb->incarn_key, sizeof(hb->incarn_key), "%s:incarnations", cfg->namespace);
	snprintf(hb->fence_key, sizeof(hb->fence_key), "%s:consumer:%s", cfg->namespace, hb->name);
	if (prev_pid > 0)
		snprintf(hb->takeover, sizeof(hb->takeover), "%d:", (int)prev_pid);
	hb->pool = pool;
	hb->kind = kind;
	hb->node = cfg->node;
	hb->slot = slot;
	hb->pid = getpid();
	hb->restarts = restarts;
	hb->started_ms = util_wall_ms();
	hb->interval_ms = cfg->heartbeat.interval_ms;
	hb->timeout_ms = cfg->heartbeat.timeout_ms;
	hb->status = HB_STARTING;
}

static json_t *calls_json(const struct heartbeat *hb)
{
	json_t *a = json_array();
	for (size_t i = 0; i < hb->ncalls && i < HB_CALLS_MAX; i++) {
		const struct hb_call *k = &hb->calls[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "run", k->run, "call_id", k->call_id, "tool",
				      k->tool, "entry", k->entry, "state", k->running ? "running" : "waiting");
		if (o) /* NULL only for text that is not UTF-8: left out */
			json_array_append_new(a, o);
	}
	return a;
}

static json_t *handlers_json(const struct heartbeat *hb)
{
	json_t *a = json_array();
	for (size_t i = 0; i < hb->nhandlers && i < HB_HANDLERS_MAX; i++) {
		const struct hb_handler *k = &hb->handlers[i];
		json_t *o = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I}", "tool", k->tool, "state", k->state,
				      "draining", k->draining, "inflight", (json_int_t)k->inflight, "served",
				      (json_int_t)k->served, "restarts", (json_int_t)k->restarts);
		if (!o) /* text that is not UTF-8: left out */
			continue;
		json_object_set_new(o, "pid", k->pid > 0 ? json_integer(k->pid) : json_null());
		json_object_set_new(o, "last_error", k->last_error[0] ? json_string(k->last_error) : json_null());
		json_array_append_new(a, o);
	}
	return a;
}

/* Tools that counted something, while their text fits HB_TOOLS_BUDGET
 * (a configuration of many tools must never push the beat over the size
 * the monitor relays). */
static json_t *tools_json(const struct heartbeat *hb)
{
	json_t *a = json_array();
	size_t used = 0;
	for (size_t i = 0; i < hb->ntools; i++) {
		const struct hb_tool *t = &hb->tools[i];
		if (!t->calls && !t->redispatches)
			continue;
		/* keys and 21 numbers of at most 20 digits, the name escaped */
		used += 6 * strlen(t->name) + 600;
		if (used > HB_TOOLS_BUDGET)
			break;
		json_t *hist = json_array();
		for (int b = 0; b < HB_TOOL_HIST_N; b++)
			json_array_append_new(hist, json_integer((json_int_t)t->hist[b]));
		json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "tool", t->name, "calls",
				      (json_int_t)t->calls, "errors", (json_int_t)t->errors, "timeouts",
				      (json_int_t)t->timeouts, "redispatches", (json_int_t)t->redispatches, "hist",
				      hist, "sum_us", (json_int_t)t->sum_us);
		if (o)
			json_array_append_new(a, o);
	}
	return a;
}

void heartbeat_tools_init(struct heartbeat *hb, const struct sv_config *cfg, const struct pool_config *pool)
{
	free(hb->tools);
	hb->tools = NULL;
	hb->ntools = 0;
	size_t k = 0;
	for (size_t i = 0; i < cfg->ntools; i++)
		k += config_pool_serves(pool, cfg->tools[i].name);
	if (!k)
		return;
	hb->tools = util_xcalloc(k, sizeof(*hb->tools));
	for (size_t i = 0; i < cfg->ntools; i++)
		if (config_pool_serves(pool, cfg->tools[i].name))
			hb->tools[hb->ntools++].name = cfg->tools[i].name;
}

static struct hb_tool *tool_of(struct heartbeat *hb, const char *name)
{
	for (size_t i = 0; name && i < hb->ntools; i++)
		if (strcmp(hb->tools[i].name, name) == 0)
			return &hb->tools[i];
	return NULL;
}

void heartbeat_tool_call(struct heartbeat *hb, const char *name, enum hb_tool_result res, int64_t us)
{
	static const int64_t bounds[] = HB_TOOL_HIST_BOUNDS;
	struct hb_tool *t = tool_of(hb, name);
	if (!t)
		return;
	if (us < 0)
		us = 0;
	t->calls++;
	t->errors += res != HB_TOOL_OK;
	t->timeouts += res == HB_TOOL_TIMEOUT;
	int i = 0;
	while (i < HB_TOOL_HIST_N - 1 && us > bounds[i] * 1000)
		i++;
	t->hist[i]++;
	t->sum_us += (uint64_t)us;
}

void heartbeat_tool_redispatch(struct heartbeat *hb, const char *name)
{
	struct hb_tool *t = tool_of(hb, name);
	if (t)
		t->redispatches++;
}

void heartbeat_free(struct heartbeat *hb)
{
	free(hb->tools);
	hb->tools = NULL;
	hb->ntools = 0;
}

static char *heartbeat_json(const struct heartbeat *hb)
{
	json_t *o = json_pack("{s:i, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I}",
			      "pid", (int)hb->pid, "pool", hb->pool, "kind", hb->kind,
			      "slot", hb->slot, "node", hb->node,
			      "incarnation", (json_int_t)hb->incarnation,
			      "started_ms", (json_int_t)hb->started_ms,
			      "beat_ms", (json_int_t)util_wall_ms(),
			      "status", heartbeat_status_name(hb->status),
			      "processed", (json_int_t)hb->processed,
			      "failed", (json_int_t)hb->failed,
			      "dead_lettered", (json_int_t)hb->dead_lettered,
			      "restarts", (json_int_t)hb->restarts,
			      "redis_rtt_us", (json_int_t)hb->redis_rtt_us);
	if (!o)
		return NULL;
	json_object_set_new(o, "lost", json_integer((json_int_t)hb->lost));
	json_object_set_new(o, "forgotten", json_integer((json_int_t)hb->forgotten));
	json_object_set_new(o, "conflicts", json_integer((json_int_t)hb->conflicts));
	json_object_set_new(o, "reruns", json_integer((json_int_t)hb->reruns));
	json_object_set_new(o, "current", hb->current[0] ? json_string(hb->current) : json_null());
	json_object_set_new(o, "calls", calls_json(hb));
	json_object_set_new(o, "calls_more", json_integer((json_int_t)hb->calls_more));
	if (hb->nhandlers)
		json_object_set_new(o, "handlers", handlers_json(hb));
	if (hb->ntools)
		json_object_set_new(o, "tools", tools_json(hb));
	json_object_set_new(o, "last_error",
			    hb->last_error[0] ? json_string(hb->last_error) : json_null());
	json_object_set_new(o, "tool_pgid", hb->tool_pgid ? json_integer(hb->tool_pgid) : json_null());
	json_t *hist = json_array();
	for (int i = 0; i < HB_HIST_N; i++)
		json_array_append_new(hist, json_integer((json_int_t)hb->batch_hist[i]));
	json_object_set_new(o, "batch_hist", hist);
	json_object_set_new(o, "batch_sum_us", json_integer((json_int_t)hb->batch_sum_us));
	json_object_set_new(o, "client_id", json_integer((json_int_t)hb->client_id));
	json_object_set_new(o, "streams", json_integer((json_int_t)hb->streams));
	json_object_set_new(o, "active", json_integer((json_int_t)hb->active));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

void heartbeat_observe_batch(struct heartbeat *hb, int64_t us)
{
	static const int64_t bounds[] = HB_HIST_BOUNDS;
	int i = 0;
	while (i < HB_HIST_N - 1 && us > bounds[i] * 1000)
		i++;
	hb->batch_hist[i]++;
	hb->batch_sum_us += (uint64_t)(us > 0 ? us : 0);
}

static int take_incarnation(struct heartbeat *hb, struct rconn *rc)
{
	if (hb->incarnation)
		return 0;
	redisReply *r = rconn_command(rc, "HINCRBY %s %s 1", hb->incarn_key, hb->name);
	if (!r)
		return -ENOTCONN; /* rconn_drop logged it */
	int ret = 0;
	if (r->type == REDIS_REPLY_INTEGER)
		hb->incarnation = r->integer;
	else
		ret = -EPROTO, log_error("HINCRBY %s: %s", hb->incarn_key, r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
	freeReplyObject(r);
	snprintf(hb->fence_val, sizeof(hb->fence_val), "%d:%lld", (int)hb->pid, (long long)hb->incarnation);
	return ret;
}

static void append_fence(struct heartbeat *hb, struct rconn *rc)
{
	char ttl[32];
	snprintf(ttl, sizeof(ttl), "%lld", (long long)hb->timeout_ms);
	redisAppendCommand(rc->c, "EVAL %s 1 %s %s %s %s", fence_script, hb->fence_key,
			   hb->fence_val, ttl, hb->takeover);
}

static void append_hset(struct heartbeat *hb, struct rconn *rc)
{
	hb->client_id = rc->client_id;
	char *js = heartbeat_json(hb);
	if (!js)
		js = util_xstrdup("{}");
	redisAppendCommand(rc->c, "HSET %s %s %s", hb->workers_key, hb->name, js);
	free(js);
}

int heartbeat_register(struct heartbeat *hb, struct rconn *rc)
{
	if (!rc->c)
		return -ENOTCONN;
	int err = take_incarnation(hb, rc);
	if (err < 0)
		return err;
	append_fence(hb, rc);
	redisReply *r = rconn_get_reply(rc);
	if (!r)
		return -ENOTCONN;
	bool mine = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	if (r->type == REDIS_REPLY_ERROR)
		log_error("fencing script: %s", r->str);
	freeReplyObject(r);
	if (!mine) {
		log_warn("consumer name %s is held by another live process; waiting", hb->name);
		return 0;
	}
	/* The predecessor's hold is ours now; never take another one over. */
	hb->takeover[0] = '\0';
	hb->registered = true;
	err = heartbeat_beat(hb, rc);
	if (err < 0)
		return err;
	log_info("registered as %s incarnation %lld", hb->name, (long long)hb->incarnation);
	return 1;
}

bool heartbeat_due(const struct heartbeat *hb, int64_t now_mono)
{
	return hb->registered && now_mono - hb->last_beat_mono >= hb->interval_ms;
}

int64_t heartbeat_next_ms(const struct heartbeat *hb, int64_t now_mono)
{
	int64_t d = hb->last_beat_mono + hb->interval_ms - now_mono;
	return d < 0 ? 0 : d;
}

int heartbeat_append(struct heartbeat *hb, struct rconn *rc)
{
	if (!hb->registered || !rc->c)
		return 0;
	append_hset(hb, rc);
	append_fence(hb, rc);
	hb->last_beat_mono = util_mono_ms();
	return 2;
}

int heartbeat_replies(struct heartbeat *hb, struct rconn *rc, int n)
{
	int ret = 0;
	for (int i = 0; i < n; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return -ENOTCONN; /* rconn_drop logged it */
		if (i == 1 && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
			log_error("fencing key %s was taken by another process; giving up the name",
				  hb->fence_key);
			ret = -EPERM;
		} else if (r->type == REDIS_REPLY_ERROR) {
			log_warn("heartbeat: %s", r->str);
		}
		freeReplyObject(r);
	}
	return ret;
}

int heartbeat_beat(struct heartbeat *hb, struct rconn *rc)
{
	int64_t t0 = util_mono_us();
	int n = heartbeat_append(hb, rc);
	if (n == 0)
		return rc->c ? 0 : -ENOTCONN;
	int ret = heartbeat_replies(hb, rc, n);
	hb->redis_rtt_us = util_mono_us() - t0;
	return ret;
}

int heartbeat_beat_if_due(struct heartbeat *hb, struct rconn *rc)
{
	if (!rc->c || !heartbeat_due(hb, util_mono_ms()))
		return 0;
	return heartbeat_beat(hb, rc);
}

void heartbeat_release(struct heartbeat *hb, struct rconn *rc)
{
	if (!hb->registered || !rc->c)
		return;
	hb->status = HB_STOPPING;
	hb->current[0] = '\0';
	hb->ncalls = 0;
	hb->calls_more = 0;
	hb->nhandlers = 0;
	append_hset(hb, rc);
	redisAppendCommand(rc->c, "EVAL %s 1 %s %s", release_script, hb->fence_key, hb->fence_val);
	for (int i = 0; i < 2; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return;
		freeReplyObject(r);
	}
	hb->registered = false;
}
