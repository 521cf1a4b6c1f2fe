/* admin: pending / dead / drain / forget on behalf of streamvisorctl (dead
 * letters: admin_dead.c). */
#include "admin.h"
#include "admin_dead.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "event.h"
#include "log.h"
#include "patsum.h"
#include "util.h"

static json_t *error_reply(const char *fmt, const char *detail)
{
	json_t *r = json_pack("{s:b}", "ok", 0);
	json_object_set_new(r, "error", json_sprintf(fmt, detail ? detail : ""));
	return r;
}

static json_t *redis_gone(struct rconn *rc)
{
	return error_reply("redis unavailable: %s", rc->err[0] ? rc->err : "not connected");
}

/* Every stream any pool reads, each once. */
static json_t *configured_streams(const struct sv_config *cfg)
{
	json_t *set = json_object();
	for (size_t i = 0; i < cfg->streams.n; i++)
		json_object_set_new(set, cfg->streams.v[i], json_array());
	for (size_t p = 0; p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].streams.n; i++) {
			json_t *groups = json_object_get(set, cfg->pools[p].streams.v[i]);
			if (!groups) {
				groups = json_array();
				json_object_set_new(set, cfg->pools[p].streams.v[i], groups);
			}
			json_array_append_new(groups, json_string(cfg->pools[p].group));
		}
	return set;
}

static json_t *reply_to_map(redisReply *r)
{
	json_t *o = json_object();
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING)
			continue;
		if (v->type == REDIS_REPLY_INTEGER)
			json_object_set_new(o, k->str, json_integer(v->integer));
		else if (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)
			json_object_set_new(o, k->str, json_string(v->str));
		else
			json_object_set_new(o, k->str, json_null());
	}
	return o;
}

static void group_details(struct rconn *rc, const char *stream, json_t *g)
{
	const char *name = json_string_value(json_object_get(g, "name"));
	redisReply *r = rconn_command(rc, "XPENDING %s %s", stream, name);
	json_t *consumers = json_object();
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 && r->element[3]->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->element[3]->elements; i++) {
			redisReply *c = r->element[3]->element[i];
			if (c->type == REDIS_REPLY_ARRAY && c->elements == 2)
				json_object_set_new(consumers, c->element[0]->str, json_integer(atoll(c->element[1]->str)));
		}
	}
	if (r)
		freeReplyObject(r);
	json_object_set_new(g, "consumers", consumers);
	r = rconn_command(rc, "XPENDING %s %s IDLE 0 - + 1", stream, name);
	json_int_t idle = 0;
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements >= 3)
		idle = r->element[0]->element[2]->integer;
	if (r)
		freeReplyObject(r);
	json_object_set_new(g, "oldest_pending_idle_ms", json_integer(idle));
}

/* Today's rows for one stream: each of its groups (wanted: the
 * configured group names, a JSON array) plus a "missing" row per wanted
 * group it lacks.  Returns 0, or -ENOTCONN when the connection dropped. */
static int stream_rows(struct rconn *rc, const char *stream, json_t *wanted, json_t *rows)
{
	redisReply *len = rconn_command(rc, "XLEN %s", stream);
	if (!len)
		return -ENOTCONN;
	json_int_t length = len->type == REDIS_REPLY_INTEGER ? len->integer : 0;
	freeReplyObject(len);
	redisReply *gr = rconn_command(rc, "XINFO GROUPS %s", stream);
	json_t *seen = json_object();
	for (size_t i = 0; gr && gr->type == REDIS_REPLY_ARRAY && i < gr->elements; i++) {
		json_t *g = reply_to_map(gr->element[i]);
		const char *name = json_string_value(json_object_get(g, "name"));
		if (!name) {
			json_decref(g);
			continue;
		}
		bool configured = false;
		size_t k;
		json_t *w;
		json_array_foreach(wanted, k, w) configured |= strcmp(json_string_value(w), name) == 0;
		json_object_set_new(seen, name, json_true());
		group_details(rc, stream, g);
		json_t *row = json_pack("{s:s, s:s, s:I, s:O, s:O, s:O, s:O, s:O, s:b}", "stream", stream,
					"group", name, "length", length, "lag", json_object_get(g, "lag"),
					"pending", json_object_get(g, "pending"),
					"oldest_pending_idle_ms", json_object_get(g, "oldest_pending_idle_ms"),
					"consumers", json_object_get(g, "consumers"),
					"last_delivered_id", json_object_get(g, "last-delivered-id"),
					"configured", configured);
		/* An unknown group with entries pending or unread pins the
		 * stream: retention never trims past it. */
		json_int_t pend = json_integer_value(json_object_get(g, "pending"));
		json_int_t lag = json_integer_value(json_object_get(g, "lag"));
		json_object_set_new(row, "pinned", json_boolean(!configured && (pend > 0 || lag > 0)));
		json_array_append_new(rows, row);
		json_decref(g);
	}
	if (gr)
		freeReplyObject(gr);
	size_t k;
	json_t *w;
	json_array_foreach(wanted, k, w) {
		if (json_object_get(seen, json_string_value(w)))
			continue;
		json_array_append_new(rows, json_pack("{s:s, s:O, s:I, s:b, s:b}", "stream", stream, "group", w,
						      "length", length, "configured", 1, "missing", 1));
	}
	json_decref(seen);
	return rc->c ? 0 : -ENOTCONN;
}

json_t *admin_dead_depths(struct rconn *rc, const struct sv_config *cfg)
{
	json_t *streams = configured_streams(cfg), *out = json_object();
	if (!rc->c) {
		json_decref(streams);
		json_decref(out);
		return NULL;
	}
	const char *stream;
	json_t *v;
	json_object_foreach(streams, stream, v)
		redisAppendCommand(rc->c, "XLEN %s:dead", stream);
	json_object_foreach(streams, stream, v) {
		redisReply *r = rconn_get_reply(rc);
		if (!r) {
			json_decref(streams);
			json_decref(out);
			return NULL; /* rconn_drop logged it */
		}
		if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
			json_object_set_new(out, stream, json_integer(r->integer));
		freeReplyObject(r);
	}
	json_decref(streams);
	return out;
}

json_t *admin_groups(struct rconn *rc, const struct sv_config *cfg)
{
	json_t *streams = configured_streams(cfg);
	json_t *rows = json_array();
	const char *stream;
	json_t *wanted;
	json_object_foreach(streams, stream, wanted) {
		if (stream_rows(rc, stream, wanted, rows) < 0) {
			json_decref(streams);
			json_decref(rows);
			return redis_gone(rc);
		}
	}
	json_decref(streams);
	return json_pack("{s:b, s:o}", "ok", 1, "groups", rows);
}

/* ---------- pattern streams: one summary row per pattern and group ---------- */

/* The summary rows of one pattern (patsum.h), from the streams discovery
 * knows (at most ADMIN_PATTERN_MAX of them, then "truncated"). */
static int pattern_rows(struct rconn *rc, const char *pattern, const json_t *groups, const struct disc_known *k,
			json_t *rows)
{
	size_t ng = json_array_size(groups);
	size_t n = k ? k->n : 0, upto = n < ADMIN_PATTERN_MAX ? n : ADMIN_PATTERN_MAX;
	struct patsum_fig *sums = util_xcalloc(ng ? ng : 1, sizeof(*sums));
	for (size_t from = 0; from < upto; from += ADMIN_PATTERN_BATCH) {
		size_t to = from + ADMIN_PATTERN_BATCH < upto ? from + ADMIN_PATTERN_BATCH : upto;
		if (patsum_batch(rc, k, from, to, groups, sums) < 0) {
			free(sums);
			return -ENOTCONN;
		}
	}
	for (size_t g = 0; g < ng; g++) {
		json_t *row = patsum_row(pattern, json_string_value(json_array_get(groups, g)), n, &sums[g]);
		json_object_set_new(row, "truncated", json_boolean(upto < n));
		json_array_append_new(rows, row);
	}
	free(sums);
	return 0;
}

/* pending --stream NAME: today's rows for one stream, literal or matched
 * by a pattern (the groups of the pools that read it). */
static json_t *pending_one(struct rconn *rc, const struct sv_config *cfg, const char *stream)
{
	json_t *wanted = json_array();
	for (size_t p = 0; p < cfg->npools; p++) {
		const struct pool_config *pc = &cfg->pools[p];
		bool reads = false;
		for (size_t i = 0; i < pc->streams.n && !reads; i++)
			reads = strcmp(pc->streams.v[i], stream) == 0;
		for (size_t i = 0; i < pc->patterns.n && !reads; i++)
			reads = !config_own_key(cfg, stream) && config_pattern_match(pc->patterns.v[i], stream);
		bool have = false;
		size_t k;
		json_t *g;
		json_array_foreach(wanted, k, g) have |= strcmp(json_string_value(g), pc->group) == 0;
		if (reads && !have)
			json_array_append_new(wanted, json_string(pc->group));
	}
	if (json_array_size(wanted) == 0) {
		json_decref(wanted);
		return error_reply("no pool reads stream %s (not configured, matches no pattern)", stream);
	}
	json_t *rows = json_array();
	int r = stream_rows(rc, stream, wanted, rows);
	json_decref(wanted);
	if (r < 0) {
		json_decref(rows);
		return redis_gone(rc);
	}
	return json_pack("{s:b, s:o}", "ok", 1, "groups", rows);
}

static json_t *admin_pending(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			     json_t *args)
{
	const char *a0 = json_string_value(json_array_get(args, 0));
	const char *a1 = json_string_value(json_array_get(args, 1));
	if (a0 && strcmp(a0, "--stream") == 0 && a1 && json_array_size(args) == 2)
		return pending_one(rc, cfg, a1);
	if (json_array_size(args) > 0)
		return error_reply("usage: pending [--stream NAME]%s", NULL);
	json_t *reply = admin_groups(rc, cfg);
	json_t *pats = patsum_configured(cfg);
	if (!json_is_true(json_object_get(reply, "ok")) || json_object_size(pats) == 0) {
		json_decref(pats);
		return reply;
	}
	json_t *rows = json_array();
	const char *pat;
	json_t *groups;
	json_object_foreach(pats, pat, groups) {
		if (pattern_rows(rc, pat, groups, discover_known(disc, pat), rows) < 0) {
			json_decref(rows);
			json_decref(pats);
			json_decref(reply);
			return redis_gone(rc);
		}
	}
	json_decref(pats);
	json_object_set_new(reply, "patterns", rows);
	return reply;
}

/* Clean slate: destroy every group of every configured stream and delete
 * the streams.  Dead-letter streams are kept (`dead purge` removes them).
 * Running workers re-create their groups (consumer loop self-heal). */
static json_t *admin_drain(struct rconn *rc, const struct sv_config *cfg)
{
	json_t *streams = configured_streams(cfg);
	json_t *done = json_array();
	const char *stream;
	json_t *v;
	json_object_foreach(streams, stream, v) {
		redisReply *gr = rconn_command(rc, "XINFO GROUPS %s", stream);
		if (!gr) {
			json_decref(streams);
			json_decref(done);
			return redis_gone(rc);
		}
		for (size_t i = 0; gr->type == REDIS_REPLY_ARRAY && i < gr->elements; i++) {
			json_t *g = reply_to_map(gr->element[i]);
			const char *name = json_string_value(json_object_get(g, "name"));
			if (name) {
				redisReply *d = rconn_command(rc, "XGROUP DESTROY %s %s", stream, name);
				if (d)
					freeReplyObject(d);
			}
			json_decref(g);
		}
		freeReplyObject(gr);
		redisReply *d = rconn_command(rc, "DEL %s", stream);
		if (d)
			freeReplyObject(d);
		json_array_append_new(done, json_string(stream));
	}
	json_decref(streams);
	log_warn("drain: consumer groups destroyed and streams deleted (%zu streams)", json_array_size(done));
	return json_pack("{s:b, s:o}", "ok", 1, "drained", done);
}

/* ---- forget RUN... --yes ---- */

/* Runs one forget may name (the control request's 64 KiB bound them too). */
#define ADMIN_FORGET_MAX 1000

/* One call, atomically: the Redis clock in ms gives the forget position
 * "MS-0" (an entry id: entries before it belong to the old runs); each
 * run's tombstone in NS:forgotten, its tool done hash deleted, and one
 * NS:forget entry that every persistence worker applies to its own SQLite
 * file.  KEYS: NS:forgotten, NS:forget, then NS:tooldone:RUN per run;
 * ARGV: the runs as a JSON array, then the runs.  Returns {position,
 * entry id, done hashes deleted}. */
static const char forget_script[] =
	"local t = redis.call('TIME') "
	"local pos = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. '-0' "
	"local done = 0 "
	"for i = 2, #ARGV do "
	"  redis.call('HSET', KEYS[1], ARGV[i], pos) "
	"  done = done + redis.call('DEL', KEYS[i + 1]) "
	"end "
	"local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', 'runs', ARGV[1], 'position', pos) "
	"return {pos, id, done}";

/* The runs of `forget RUN... --yes` (the master checked --yes); NULL with
 * *why when there is none or one is not a usable run id. */
static json_t *forget_runs(json_t *args, const char **why)
{
	json_t *runs = json_array();
	size_t i;
	json_t *v;
	*why = NULL;
	json_array_foreach(args, i, v) {
		const char *r = json_string_value(v);
		if (r && strcmp(r, "--yes") == 0)
			continue;
		if (!r || !*r || strlen(r) != json_string_length(v)) {
			*why = "a run id must be a non-empty string without NUL";
			break;
		}
		json_array_append(runs, v);
	}
	if (!*why && json_array_size(runs) == 0)
		*why = "forget: name at least one run";
	if (!*why && json_array_size(runs) > ADMIN_FORGET_MAX)
		*why = "forget: too many runs in one call (at most 1000)";
	if (*why) {
		json_decref(runs);
		return NULL;
	}
	return runs;
}

static json_t *admin_forget(struct rconn *rc, const struct sv_config *cfg, json_t *args)
{
	const char *why;
	json_t *runs = forget_runs(args, &why);
	if (!runs)
		return error_reply("%s", why);
	size_t n = json_array_size(runs);
	char *runs_json = json_dumps(runs, JSON_COMPACT);
	size_t argc = 6 + 2 * n;
	const char **argv = util_xcalloc(argc, sizeof(*argv));
	char **keys = util_xcalloc(n + 2, sizeof(*keys));
	keys[0] = util_xasprintf("%s:forgotten", cfg->namespace);
	keys[1] = util_xasprintf("%s:forget", cfg->namespace);
	size_t k = 0;
	argv[k++] = "EVAL";
	argv[k++] = forget_script;
	char nkeys[24];
	snprintf(nkeys, sizeof(nkeys), "%zu", n + 2);
	argv[k++] = nkeys;
	argv[k++] = keys[0];
	argv[k++] = keys[1];
	for (size_t i = 0; i < n; i++) {
		keys[i + 2] = util_xasprintf("%s:tooldone:%s", cfg->namespace, json_string_value(json_array_get(runs, i)));
		argv[k++] = keys[i + 2];
	}
	argv[k++] = runs_json ? runs_json : "[]";
	for (size_t i = 0; i < n; i++)
		argv[k++] = json_string_value(json_array_get(runs, i));
	redisReply *r = rconn_commandv(rc, (int)k, argv, NULL);
	json_t *reply;
	if (!r) {
		reply = redis_gone(rc);
	} else if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
		   r->element[1]->type != REDIS_REPLY_STRING) {
		log_error("%s: forget script: %s", __func__, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		reply = error_reply("forget failed: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	} else {
		log_kv(LOG_WARN, KV("position", r->element[0]->str, "forget_entry", r->element[1]->str),
		       "forget: %zu run(s) (first %s): tombstones written, %lld tool done hashes deleted; "
		       "persistence workers delete their stored state", n,
		       json_string_value(json_array_get(runs, 0)), (long long)r->element[2]->integer);
		reply = json_pack("{s:b, s:O, s:s, s:s, s:I}", "ok", 1, "forgotten", runs, "position",
				  r->element[0]->str, "entry", r->element[1]->str, "tool_done_deleted",
				  (json_int_t)r->element[2]->integer);
	}
	if (r)
		freeReplyObject(r);
	for (size_t i = 0; i < n + 2; i++)
		free(keys[i]);
	free(keys);
	free(argv);
	free(runs_json);
	json_decref(runs);
	return reply;
}

/* events [N]: the newest N supervisor events (NS:supervisor, written by
 * the monitor for the master), newest first.  Any Redis client can write
 * that stream: values that are not text come back as {"b64": ...}. */
static json_t *admin_events(struct rconn *rc, const struct sv_config *cfg, json_t *args)
{
	const char *n_arg = json_string_value(json_array_get(args, 0));
	long long n = 100;
	if (n_arg) {
		char *end;
		n = strtoll(n_arg, &end, 10);
		if (!*n_arg || *end || n < 1 || n > ADMIN_EVENTS_MAX)
			return error_reply("events: N must be 1..500, not %s", n_arg);
	}
	char key[192], count[24];
	snprintf(key, sizeof(key), "%s:supervisor", cfg->namespace);
	snprintf(count, sizeof(count), "%lld", n);
	redisReply *r = rconn_command(rc, "XREVRANGE %s + - COUNT %s", key, count);
	if (!r)
		return redis_gone(rc);
	if (r->type != REDIS_REPLY_ARRAY) {
		json_t *e = error_reply("events: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		freeReplyObject(r);
		return e;
	}
	json_t *events = json_array();
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		json_t *fields = json_object();
		const redisReply *f = e->element[1];
		for (size_t j = 0; j + 1 < f->elements; j += 2) {
			const redisReply *k = f->element[j], *v = f->element[j + 1];
			if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
			    !event_valid_text(k->str, k->len))
				continue;
			json_t *jv = event_valid_text(v->str, v->len) ? json_stringn(v->str, v->len) : NULL;
			if (!jv) {
				char *b = b64_encode(v->str, v->len, NULL);
				jv = json_pack("{s:s}", "b64", b);
				free(b);
			}
			json_object_setn_new(fields, k->str, k->len, jv);
		}
		json_array_append_new(events, json_pack("{s:s%, s:o}", "id", e->element[0]->str,
							 e->element[0]->len, "fields", fields));
	}
	freeReplyObject(r);
	return json_pack("{s:b, s:o}", "ok", 1, "events", events);
}

json_t *admin_call(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc, const char *cmd,
		   json_t *args)
{
	/* An operator is waiting: try now rather than at the next backoff
	 * step (Redis may have come back a moment ago). */
	if (!rconn_ready(rc, util_mono_ms()) && rconn_connect(rc) < 0)
		return redis_gone(rc);
	if (strcmp(cmd, "pending") == 0)
		return admin_pending(rc, cfg, disc, args);
	if (strcmp(cmd, "dead") == 0)
		return admin_dead(rc, cfg, disc, args);
	if (strcmp(cmd, "drain") == 0)
		return admin_drain(rc, cfg);
	if (strcmp(cmd, "forget") == 0)
		return admin_forget(rc, cfg, args);
	if (strcmp(cmd, "events") == 0)
		return admin_events(rc, cfg, args);
	return error_reply("unknown command: %s", cmd);
}
