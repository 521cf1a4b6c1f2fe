/* retention: XTRIM MINID behind every group's oldest unprocessed entry, and
 * deleting idle, fully read pattern streams. */
#include "retention.h"
#include "admin_dead.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "discover.h"
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
	long long min_ms = util_wall_ms() - cfg->retention.dead_keep_ms;
	redisReply *r = rconn_command(rc, "XTRIM %s:dead MINID ~ %lld-0", stream, min_ms);
	if (!r)
		return -ENOTCONN;
	long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	/* The one-letter-per-origin index keeps no entry of a trimmed letter. */
	if (n > 0 && admin_dead_index_prune(rc, cfg, stream, min_ms) < 0)
		return -ENOTCONN;
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

/* ---- deleting idle pattern streams (retention.h) ---- */

/* KEYS[1] stream, KEYS[2..] registries (NS:patterns:PATTERN:groups of
 * every local pattern the name matches).  ARGV[1] cutoff: the ms part a
 * last-generated-id must be below; ARGV[2..] this node's groups of those
 * patterns (expected even if someone SREMed them).  IDs are compared as
 * decimal strings: a sequence number may pass 2^53.  Returns 1 deleted,
 * or why not: 0 not a stream (gone), -1 registry empty, -2 a registered
 * group is not on the stream (has not read it yet), -3 a group has
 * entries pending or not delivered, -4 newer than keep_ms. */
static const char idle_script[] =
	"local function num_less(a, b) if #a ~= #b then return #a < #b end return a < b end "
	"local function id_less(x, y) "
	"  local a1, b1 = string.match(x, '^(%d+)-(%d+)$') "
	"  local a2, b2 = string.match(y, '^(%d+)-(%d+)$') "
	"  if a1 ~= a2 then return num_less(a1, a2) end "
	"  return num_less(b1, b2) end "
	"if redis.call('TYPE', KEYS[1]).ok ~= 'stream' then return 0 end "
	"local s = redis.call('XINFO', 'STREAM', KEYS[1]) "
	"local last "
	"for i = 1, #s, 2 do if s[i] == 'last-generated-id' then last = s[i + 1] end end "
	"if not num_less(string.match(last, '^(%d+)-'), ARGV[1]) then return -4 end "
	"local want, n = {}, 0 "
	"for k = 2, #KEYS do "
	"  for _, g in ipairs(redis.call('SMEMBERS', KEYS[k])) do "
	"    if not want[g] then want[g] = true n = n + 1 end end "
	"end "
	"if n == 0 then return -1 end "
	"for i = 2, #ARGV do if not want[ARGV[i]] then want[ARGV[i]] = true n = n + 1 end end "
	"for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do "
	"  local f = {} "
	"  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end "
	"  if want[f['name']] then "
	"    if f['pending'] > 0 or id_less(f['last-delivered-id'], last) then return -3 end "
	"    n = n - 1 "
	"  end "
	"end "
	"if n > 0 then return -2 end "
	"redis.call('DEL', KEYS[1]) "
	"return 1";

/* The script's "kept" codes 0, -1 .. -4 as indexes of ri->kept. */
enum { KEPT_GONE, KEPT_NO_REGISTRY, KEPT_GROUP_MISSING, KEPT_UNREAD, KEPT_FRESH, KEPT_N };
_Static_assert(KEPT_N == sizeof(((struct retention_idle *)0)->kept) / sizeof(long long), "kept[] size");

static char *idle_key(const char *ns, const char *pattern)
{
	size_t len = strlen(ns) + strlen(pattern) + sizeof(":patterns::groups");
	char *k = malloc(len);
	if (k)
		snprintf(k, len, "%s:patterns:%s:groups", ns, pattern);
	return k;
}

static struct retention_pat *idle_find(struct retention_idle *ri, const char *pattern)
{
	for (size_t i = 0; i < ri->np; i++)
		if (strcmp(ri->p[i].pattern, pattern) == 0)
			return &ri->p[i];
	return NULL;
}

/* One distinct pattern, or the group added to it (once). */
static int idle_add(struct retention_idle *ri, const char *pattern, const char *group)
{
	struct retention_pat *p = idle_find(ri, pattern);
	if (!p) {
		p = &ri->p[ri->np];
		p->pattern = strdup(pattern);
		p->key = idle_key(ri->cfg->namespace, pattern);
		p->groups = calloc(ri->cfg->npools, sizeof(*p->groups));
		if (!p->pattern || !p->key || !p->groups)
			return -ENOMEM;
		ri->np++;
	}
	if (!config_strlist_has(&(struct strlist){(char **)p->groups, p->ngroups}, group))
		p->groups[p->ngroups++] = group;
	return 0;
}

int retention_idle_init(struct retention_idle *ri, const struct sv_config *cfg, const struct discover *disc)
{
	memset(ri, 0, sizeof(*ri));
	ri->cfg = cfg;
	ri->disc = disc;
	ri->next_pass_ms = util_mono_ms() + retention_period_ms(cfg);
	size_t total = 0;
	for (size_t i = 0; i < cfg->npools; i++)
		total += cfg->pools[i].patterns.n;
	if (total == 0)
		return 0;
	if (!(ri->p = calloc(total, sizeof(*ri->p))))
		return -ENOMEM;
	/* A pool of count 0 reads nothing: expecting its group would keep
	 * every stream forever. */
	for (size_t i = 0; i < cfg->npools; i++)
		for (size_t j = 0; j < cfg->pools[i].patterns.n && cfg->pools[i].count > 0; j++)
			if (idle_add(ri, cfg->pools[i].patterns.v[j], cfg->pools[i].group) < 0) {
				retention_idle_free(ri);
				return -ENOMEM;
			}
	/* EVALSHA SHA NKEYS STREAM REGISTRY... CUTOFF GROUP... */
	ri->argv = calloc(5 + ri->np + total, sizeof(*ri->argv));
	if (!ri->argv) {
		retention_idle_free(ri);
		return -ENOMEM;
	}
	return 0;
}

void retention_idle_free(struct retention_idle *ri)
{
	for (size_t i = 0; i < ri->np; i++) {
		free(ri->p[i].pattern);
		free(ri->p[i].key);
		free(ri->p[i].groups);
	}
	free(ri->p);
	free(ri->argv);
	free(ri->after);
	memset(ri, 0, sizeof(*ri));
}

/* SADD every pattern's local groups into its registry, pipelined.  Other
 * nodes' deletions depend on it, so it runs whatever delete_idle_streams
 * says; repeated every period, since a Redis restart without persistence
 * (or an operator's DEL) loses it. */
static int idle_register(struct retention_idle *ri, struct rconn *rc)
{
	if (!rc->c)
		return -ENOTCONN;
	for (size_t i = 0; i < ri->np; i++) {
		const struct retention_pat *p = &ri->p[i];
		ri->argv[0] = "SADD";
		ri->argv[1] = p->key;
		for (size_t g = 0; g < p->ngroups; g++)
			ri->argv[2 + g] = p->groups[g];
		redisAppendCommandArgv(rc->c, (int)(2 + p->ngroups), ri->argv, NULL);
	}
	int err = 0;
	for (size_t i = 0; i < ri->np; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return -ENOTCONN;
		if (r->type == REDIS_REPLY_ERROR) {
			if (!ri->reg_logged)
				log_warn("%s: SADD %s: %s (logged once)", __func__, ri->p[i].key, r->str);
			ri->reg_logged = true;
			err = -EPROTO;
		}
		freeReplyObject(r);
	}
	ri->registered_conn = rc->connects;
	return err;
}

static bool idle_literal(const struct sv_config *cfg, const char *name)
{
	if (config_strlist_has(&cfg->streams, name))
		return true;
	for (size_t i = 0; i < cfg->npools; i++)
		if (config_strlist_has(&cfg->pools[i].streams, name))
			return true;
	return false;
}

/* argv of the script for name: the registries and local groups of every
 * local pattern it matches (a name two patterns match waits for both). */
static int idle_argv(struct retention_idle *ri, const char *name, const char *cutoff, bool sha)
{
	const char **argv = ri->argv;
	int n = 0, nkeys = 1;
	argv[n++] = sha ? "EVALSHA" : "EVAL";
	argv[n++] = sha ? ri->sha : idle_script;
	argv[n++] = NULL; /* NKEYS, below */
	argv[n++] = name;
	for (size_t i = 0; i < ri->np; i++)
		if (config_pattern_match(ri->p[i].pattern, name)) {
			argv[n++] = ri->p[i].key;
			nkeys++;
		}
	argv[n++] = cutoff;
	for (size_t i = 0; i < ri->np; i++)
		if (config_pattern_match(ri->p[i].pattern, name))
			for (size_t g = 0; g < ri->p[i].ngroups; g++)
				argv[n++] = ri->p[i].groups[g];
	snprintf(ri->nkeys, sizeof(ri->nkeys), "%d", nkeys);
	argv[2] = ri->nkeys;
	return n;
}

/* One script reply: counted, and logged at debug (a deletion) or warn (an
 * error reply, once a pass).  Returns false for NOSCRIPT. */
static bool idle_reply(struct retention_idle *ri, const char *name, const redisReply *r)
{
	if (rconn_is_error(r, "NOSCRIPT"))
		return false;
	if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
		ri->deleted++;
		log_debug("retention: idle pattern stream %s deleted", name);
	} else if (r->type == REDIS_REPLY_INTEGER && r->integer <= 0 && r->integer > -KEPT_N) {
		ri->kept[-r->integer]++;
	} else if (ri->errors++ == 0) {
		log_warn("%s: %s: %s", __func__, name, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
	return true;
}

/* The script over names, pipelined: EVALSHA, then EVAL for any the
 * server no longer has cached (a restart, SCRIPT FLUSH). */
static int idle_run(struct retention_idle *ri, struct rconn *rc, const char **names, size_t n)
{
	char cutoff[32];
	int64_t c = util_wall_ms() - ri->cfg->retention.keep_ms;
	snprintf(cutoff, sizeof(cutoff), "%lld", (long long)(c > 0 ? c : 0));
	if (!ri->sha[0]) {
		redisReply *r = rconn_command(rc, "SCRIPT LOAD %s", idle_script);
		if (!r)
			return -ENOTCONN;
		if (r->type == REDIS_REPLY_STRING && r->len < (int)sizeof(ri->sha))
			memcpy(ri->sha, r->str, (size_t)r->len + 1);
		freeReplyObject(r);
	}
	bool sha = ri->sha[0] != 0;
	for (size_t i = 0; i < n; i++)
		redisAppendCommandArgv(rc->c, idle_argv(ri, names[i], cutoff, sha), ri->argv, NULL);
	size_t again = 0;
	for (size_t i = 0; i < n; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return -ENOTCONN;
		if (!idle_reply(ri, names[i], r))
			names[again++] = names[i];
		freeReplyObject(r);
	}
	if (again)
		ri->sha[0] = 0;
	for (size_t i = 0; i < again; i++) {
		redisReply *r = rconn_commandv(rc, idle_argv(ri, names[i], cutoff, false), ri->argv, NULL);
		if (!r)
			return -ENOTCONN;
		idle_reply(ri, names[i], r);
		freeReplyObject(r);
	}
	return 0;
}

/* Up to RETENTION_IDLE_BATCH names from where the pass stands (patterns
 * in order, each one's known names in sorted order after ri->after, so
 * names discovery adds or drops meanwhile do not upset the walk).
 * Returns how many; 0 when the pass is through. */
static size_t idle_collect(struct retention_idle *ri, const char **names)
{
	size_t n = 0;
	while (ri->pat < ri->np && n < RETENTION_IDLE_BATCH) {
		const struct disc_known *k = discover_known(ri->disc, ri->p[ri->pat].pattern);
		size_t i = k ? disc_known_after(k, ri->after) : 0;
		for (; k && i < k->n && n < RETENTION_IDLE_BATCH; i++)
			if (!idle_literal(ri->cfg, k->v[i].name))
				names[n++] = k->v[i].name;
		if (k && i < k->n) {
			free(ri->after);
			ri->after = util_xstrdup(k->v[i - 1].name);
			break;
		}
		ri->pat++;
		free(ri->after);
		ri->after = NULL;
	}
	return n;
}

static void idle_pass_begin(struct retention_idle *ri, int64_t now_ms)
{
	int64_t period = retention_period_ms(ri->cfg);
	size_t total = 0;
	for (size_t i = 0; i < ri->np; i++) {
		const struct disc_known *k = discover_known(ri->disc, ri->p[i].pattern);
		total += k ? k->n : 0;
	}
	size_t batches = (total + RETENTION_IDLE_BATCH - 1) / RETENTION_IDLE_BATCH;
	ri->gap_ms = batches > 1 ? period / 2 / (int64_t)batches : 0;
	if (ri->gap_ms < RETENTION_IDLE_GAP_MIN_MS)
		ri->gap_ms = RETENTION_IDLE_GAP_MIN_MS;
	ri->in_pass = true;
	ri->pat = 0;
	free(ri->after);
	ri->after = NULL;
	ri->deleted = 0;
	ri->errors = 0;
	memset(ri->kept, 0, sizeof(ri->kept));
	ri->next_batch_ms = now_ms;
}

static void idle_pass_end(struct retention_idle *ri)
{
	ri->in_pass = false;
	if (ri->deleted > 0)
		log_info("retention: %lld idle pattern streams deleted", ri->deleted);
	log_debug("retention pass over pattern streams: %lld deleted; kept: %lld not read by every registered "
		  "group yet, %lld with entries pending or unread, %lld newer than keep_ms, %lld with no "
		  "registered group, %lld gone",
		  ri->deleted, ri->kept[KEPT_GROUP_MISSING], ri->kept[KEPT_UNREAD], ri->kept[KEPT_FRESH],
		  ri->kept[KEPT_NO_REGISTRY], ri->kept[KEPT_GONE]);
}

int retention_idle_step(struct retention_idle *ri, struct rconn *rc, int64_t now_ms)
{
	int err = 0;
	if (!rc->c || ri->np == 0)
		return rc->c ? 0 : -ENOTCONN;
	if (ri->registered_conn != rc->connects && (err = idle_register(ri, rc)) == -ENOTCONN)
		return err;
	if (!ri->in_pass && now_ms >= ri->next_pass_ms) {
		ri->next_pass_ms = now_ms + retention_period_ms(ri->cfg);
		if ((err = idle_register(ri, rc)) == -ENOTCONN)
			return err;
		if (ri->cfg->retention.delete_idle_streams)
			idle_pass_begin(ri, now_ms);
	}
	if (!ri->in_pass || now_ms < ri->next_batch_ms)
		return err;
	const char *names[RETENTION_IDLE_BATCH];
	size_t n = idle_collect(ri, names);
	if (n > 0 && (err = idle_run(ri, rc, names, n)) < 0)
		return err;
	if (ri->pat >= ri->np)
		idle_pass_end(ri);
	ri->next_batch_ms = util_mono_ms() + ri->gap_ms;
	return 0;
}

int64_t retention_idle_wait_ms(const struct retention_idle *ri, int64_t now_ms)
{
	int64_t at = ri->in_pass ? ri->next_batch_ms : ri->next_pass_ms;
	return at > now_ms ? at - now_ms : 0;
}
