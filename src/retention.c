/* retention: XTRIM MINID behind every group's oldest unprocessed entry. */
#include "retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* KEYS[1] stream.  ARGV[1] age cutoff "ms-0"; ARGV[2..] configured groups.
 * Returns {trimmed, safe-id} or {-1, missing group}. */
static const char trim_script[] =
	"local function parse(id) local a, b = string.match(id, '^(%d+)-(%d+)$') "
	"  return tonumber(a), tonumber(b) end "
	"local function less(x, y) local a1, b1 = parse(x) local a2, b2 = parse(y) "
	"  return a1 < a2 or (a1 == a2 and b1 < b2) end "
	"if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end "
	"local groups = redis.call('XINFO', 'GROUPS', KEYS[1]) "
	"local present = {} "
	"local safe = ARGV[1] "
	"for _, g in ipairs(groups) do "
	"  local info = {} "
	"  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end "
	"  present[info['name']] = true "
	"  local p = redis.call('XPENDING', KEYS[1], info['name']) "
	"  local first "
	"  if p[1] > 0 then first = p[2] else "
	"    local ms, seq = parse(info['last-delivered-id']) "
	"    first = string.format('%d-%d', ms, seq + 1) end "
	"  if less(first, safe) then safe = first end "
	"end "
	"for i = 2, #ARGV do if not present[ARGV[i]] then return {-1, ARGV[i]} end end "
	"return {redis.call('XTRIM', KEYS[1], 'MINID', '~', safe), safe}";

int64_t retention_period_ms(const struct sv_config *cfg)
{
	int64_t p = cfg->retention.keep_ms / 2;
	if (p < 1000)
		p = 1000;
	if (p > 60000)
		p = 60000;
	return p;
}

static long long trim_stream(struct rconn *rc, const struct sv_config *cfg, const char *stream)
{
	const char *argv[64];
	int n = 0;
	char cutoff[32];
	snprintf(cutoff, sizeof(cutoff), "%lld-0", (long long)(util_wall_ms() - cfg->retention.keep_ms));
	argv[n++] = "EVAL";
	argv[n++] = trim_script;
	argv[n++] = "1";
	argv[n++] = stream;
	argv[n++] = cutoff;
	for (size_t p = 0; p < cfg->npools && n < 64; p++)
		for (size_t s = 0; s < cfg->pools[p].streams.n && n < 64; s++)
			if (strcmp(cfg->pools[p].streams.v[s], stream) == 0)
				argv[n++] = cfg->pools[p].group;
	redisReply *r = rconn_commandv(rc, n, argv, NULL);
	if (!r)
		return -ENOTCONN;
	long long trimmed = 0;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER) {
		trimmed = r->element[0]->integer;
		if (trimmed < 0) {
			log_debug("retention: %s skipped: group %s missing", stream, r->element[1]->str);
			trimmed = 0;
		} else if (trimmed > 0) {
			log_debug("retention: %s trimmed %lld entries before %s", stream, trimmed, r->element[1]->str);
		}
	} else if (r->type == REDIS_REPLY_ERROR) {
		log_warn("retention on %s: %s", stream, r->str);
	}
	freeReplyObject(r);
	return trimmed;
}

static long long trim_dead(struct rconn *rc, const struct sv_config *cfg, const char *stream)
{
	redisReply *r = rconn_command(rc, "XTRIM %s:dead MINID ~ %lld-0", stream,
				      (long long)(util_wall_ms() - cfg->retention.dead_keep_ms));
	if (!r)
		return -ENOTCONN;
	long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	return n;
}

/* Each stream once: the global list plus every pool's own streams. */
static bool seen_before(const struct sv_config *cfg, size_t pool, size_t idx, const char *s)
{
	for (size_t i = 0; i < cfg->streams.n; i++)
		if (strcmp(cfg->streams.v[i], s) == 0)
			return pool != (size_t)-1 || i < idx;
	for (size_t p = 0; p <= pool && p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].streams.n; i++) {
			if (p == pool && i >= idx)
				break;
			if (strcmp(cfg->pools[p].streams.v[i], s) == 0)
				return true;
		}
	return false;
}

static long long one_stream(struct rconn *rc, const struct sv_config *cfg, const char *s)
{
	long long total = 0, n;
	if (cfg->retention.trim_acked) {
		if ((n = trim_stream(rc, cfg, s)) < 0)
			return n;
		total += n;
	}
	if ((n = trim_dead(rc, cfg, s)) < 0)
		return n;
	return total + n;
}

long long retention_run(struct rconn *rc, const struct sv_config *cfg)
{
	long long total = 0, n;
	for (size_t i = 0; i < cfg->streams.n; i++) {
		if (seen_before(cfg, (size_t)-1, i, cfg->streams.v[i]))
			continue;
		if ((n = one_stream(rc, cfg, cfg->streams.v[i])) < 0)
			return n;
		total += n;
	}
	for (size_t p = 0; p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].streams.n; i++) {
			if (seen_before(cfg, p, i, cfg->pools[p].streams.v[i]))
				continue;
			if ((n = one_stream(rc, cfg, cfg->pools[p].streams.v[i])) < 0)
				return n;
			total += n;
		}
	return total;
}
