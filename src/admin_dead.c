/* admin_dead: dead list / show / retry / purge on behalf of
 * streamvisorctl (see admin_dead.h for the replies and their bounds). */
#include "admin_dead.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "event.h"
#include "log.h"
#include "util.h"

#define DEAD_ID_MAX 48
#define DEAD_STR2(x) #x
#define DEAD_STR(x) DEAD_STR2(x)
/* Letters one XRANGE reads while walking a dead-letter stream: each may
 * be large, so the monitor holds a few at a time. */
#define DEAD_WALK_COUNT 8
/* EXISTS checks pipelined at once while finding dead-letter streams. */
#define DEAD_EXISTS_BATCH 256
/* Overhead a shown field or part is charged against a page's budget. */
#define DEAD_FIELD_COST 64
#define DEAD_PARTS_MAX 4096

static json_t *dead_error(const char *fmt, const char *detail)
{
	json_t *r = json_pack("{s:b}", "ok", 0);
	json_object_set_new(r, "error", json_sprintf(fmt, detail ? detail : ""));
	return r;
}

static json_t *dead_gone(struct rconn *rc)
{
	return dead_error("redis unavailable: %s", rc->err[0] ? rc->err : "not connected");
}

/* ---------- bytes as JSON ---------- */

/* Text as a JSON string; other bytes (not UTF-8, or with NUL) declared:
 * {"b64": "..."}. */
static json_t *dead_bytes(const char *p, size_t n)
{
	if (event_valid_text(p, n))
		return json_stringn(p, n);
	char *s = b64_encode(p, n, NULL);
	json_t *o = json_pack("{s:s}", "b64", s);
	free(s);
	return o;
}

/* At most max bytes of p, cut back to a character boundary when it is
 * text, so a cut text stays text. */
static size_t dead_cut_len(const char *p, size_t n, size_t max)
{
	if (n <= max)
		return n;
	size_t k = max;
	for (int back = 0; back < 3 && k > 0 && ((unsigned char)p[k] & 0xc0) == 0x80; back++)
		k--;
	return event_valid_text(p, k) ? k : max;
}

static bool dead_str_is(const redisReply *r, const char *s)
{
	size_t n = strlen(s);
	return r && r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, s, n) == 0;
}

/* ---------- one letter ---------- */

enum { DM_ORIGIN_ID, DM_ORIGIN_STREAM, DM_GROUP, DM_CONSUMER, DM_REASON, DM_DELIVERIES, DM_N };
static const char *const dead_meta_names[DM_N] = {"origin_id", "origin_stream", "group",
						  "consumer",  "reason",        "deliveries"};

/* A letter as Redis gave it: [id, [name, value, ...]], checked. */
struct dead_letter {
	const char *id;
	redisReply *f;                 /* the field array */
	const redisReply *meta[DM_N];  /* metadata values, NULL when absent */
	size_t first;                  /* index in f of the first original field name */
	char origin[DEAD_ID_MAX];      /* the origin id ("" when unknown) */
	size_t size;                   /* bytes of the original fields */
};

/* Parse en into l.  The metadata are the leading fields with a metadata
 * name, each once (the consumer writes all six first); the rest are the
 * original fields.  A letter written before issue 12 for a re-driven copy
 * holds the original id as its first original field origin_id: that id is
 * the origin, and that field not an original one.  Returns 0 or -EINVAL
 * (not an entry). */
static int dead_parse(redisReply *en, struct dead_letter *l)
{
	memset(l, 0, sizeof(*l));
	if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING ||
	    en->element[1]->type != REDIS_REPLY_ARRAY || en->element[1]->elements % 2)
		return -EINVAL;
	l->id = en->element[0]->str;
	l->f = en->element[1];
	for (size_t i = 0; i < l->f->elements; i++)
		if (l->f->element[i]->type != REDIS_REPLY_STRING)
			return -EINVAL;
	size_t i = 0, seen = 0;
	for (; i < l->f->elements && seen < DM_N; i += 2) {
		int k = 0;
		while (k < DM_N && !(dead_str_is(l->f->element[i], dead_meta_names[k]) && !l->meta[k]))
			k++;
		if (k == DM_N)
			break;
		l->meta[k] = l->f->element[i + 1];
		seen++;
	}
	l->first = i;
	uint64_t ms, seq;
	const redisReply *o = l->meta[DM_ORIGIN_ID];
	if (l->first < l->f->elements && dead_str_is(l->f->element[l->first], "origin_id"))
		o = l->f->element[l->first + 1], l->first += 2;
	if (o && o->len < sizeof(l->origin) && memchr(o->str, '\0', o->len) == NULL) {
		memcpy(l->origin, o->str, o->len);
		l->origin[o->len] = '\0';
		if (event_parse_id(l->origin, &ms, &seq) < 0)
			l->origin[0] = '\0';
	}
	for (size_t k = l->first; k < l->f->elements; k++)
		l->size += l->f->element[k]->len;
	return 0;
}

/* The letter's metadata as JSON (texts cut at DEAD_META_BYTES; deliveries
 * a number, or null when it is not one). */
static json_t *dead_meta_json(const char *dead_key, const char *stream, const struct dead_letter *l)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", dead_bytes(l->id, strlen(l->id)));
	json_object_set_new(o, "dead_stream", dead_bytes(dead_key, strlen(dead_key)));
	json_object_set_new(o, "stream", dead_bytes(stream, strlen(stream)));
	for (int k = 0; k < DM_N; k++) {
		const redisReply *v = l->meta[k];
		json_t *j = json_null();
		if (k == DM_DELIVERIES && v) {
			char buf[24], *end;
			long long n = -1;
			if (v->len > 0 && v->len < sizeof(buf)) {
				memcpy(buf, v->str, v->len);
				buf[v->len] = '\0';
				n = strtoll(buf, &end, 10);
				if (*end || n < 0)
					n = -1;
			}
			j = n >= 0 ? json_integer(n) : json_null();
		} else if (k == DM_ORIGIN_ID && l->origin[0]) {
			j = json_string(l->origin);
		} else if (v) {
			j = dead_bytes(v->str, dead_cut_len(v->str, v->len, DEAD_META_BYTES));
		}
		json_object_set_new(o, dead_meta_names[k], j);
	}
	json_t *groups = json_array();
	if (json_is_string(json_object_get(o, "group")))
		json_array_append(groups, json_object_get(o, "group"));
	json_object_set_new(o, "groups", groups);
	json_object_set_new(o, "size", json_integer((json_int_t)l->size));
	json_object_set_new(o, "nfields", json_integer((json_int_t)(l->f->elements - l->first) / 2));
	return o;
}

/* The letter as a row of `dead list`: metadata and its fields cut.  Adds
 * what it shows to *cost. */
static json_t *dead_row_json(const char *dead_key, const char *stream, const struct dead_letter *l, size_t *cost)
{
	json_t *o = dead_meta_json(dead_key, stream, l);
	json_t *fields = json_array();
	size_t shown = 0;
	*cost += 512;
	for (size_t i = l->first; i + 1 < l->f->elements && shown < DEAD_SHOW_FIELDS; i += 2, shown++) {
		const redisReply *n = l->f->element[i], *v = l->f->element[i + 1];
		size_t nl = dead_cut_len(n->str, n->len, DEAD_SHOW_BYTES);
		size_t vl = dead_cut_len(v->str, v->len, DEAD_SHOW_BYTES);
		json_t *f = json_pack("{s:o, s:o, s:I, s:b}", "name", dead_bytes(n->str, nl), "value",
				      dead_bytes(v->str, vl), "size", (json_int_t)v->len, "cut", nl < n->len || vl < v->len);
		if (nl < n->len)
			json_object_set_new(f, "name_size", json_integer((json_int_t)n->len));
		json_array_append_new(fields, f);
		*cost += nl + vl + DEAD_FIELD_COST;
	}
	json_object_set_new(o, "fields", fields);
	json_object_set_new(o, "fields_cut", json_boolean(l->first + 2 * shown < l->f->elements));
	return o;
}

/* ---------- which streams ---------- */

struct dead_scope {
	char **v;        /* origin streams; the dead-letter stream is V:dead */
	size_t n, cap;
	bool truncated;  /* more pattern streams than DEAD_STREAMS_MAX */
};

static void scope_add(struct dead_scope *s, json_t *seen, const char *name)
{
	if (json_object_get(seen, name))
		return;
	json_object_set_new_nocheck(seen, name, json_true());
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			abort();
	}
	s->v[s->n++] = util_xstrdup(name);
}

static void scope_free(struct dead_scope *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static bool dead_literal(const struct sv_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->streams.n; i++)
		if (strcmp(cfg->streams.v[i], name) == 0)
			return true;
	for (size_t p = 0; p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].streams.n; i++)
			if (strcmp(cfg->pools[p].streams.v[i], name) == 0)
				return true;
	return false;
}

static bool dead_readable(const struct sv_config *cfg, const char *name)
{
	if (dead_literal(cfg, name))
		return true;
	if (config_own_key(cfg, name))
		return false;
	for (size_t p = 0; p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].patterns.n; i++)
			if (config_pattern_match(cfg->pools[p].patterns.v[i], name))
				return true;
	return false;
}

/* Keep the pattern streams from..n whose dead-letter stream exists
 * (pipelined EXISTS).  Returns 0 or -ENOTCONN. */
static int scope_existing(struct rconn *rc, struct dead_scope *s, size_t from)
{
	size_t out = from;
	for (size_t at = from; at < s->n; at += DEAD_EXISTS_BATCH) {
		size_t to = at + DEAD_EXISTS_BATCH < s->n ? at + DEAD_EXISTS_BATCH : s->n;
		if (!rc->c)
			return -ENOTCONN;
		for (size_t i = at; i < to; i++)
			redisAppendCommand(rc->c, "EXISTS %s:dead", s->v[i]);
		for (size_t i = at; i < to; i++) {
			redisReply *r = rconn_get_reply(rc);
			if (!r)
				return -ENOTCONN;
			bool keep = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
			freeReplyObject(r);
			if (keep)
				s->v[out++] = s->v[i];
			else
				free(s->v[i]);
		}
	}
	s->n = out;
	return 0;
}

/* The streams a call covers: `only` (a stream some pool reads, or its
 * dead-letter stream), else every literal stream and the pattern streams
 * discovery knows whose dead-letter stream exists.  Returns NULL on
 * success, else the error reply. */
static json_t *dead_scope(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			  const char *only, struct dead_scope *s)
{
	memset(s, 0, sizeof(*s));
	json_t *seen = json_object();
	if (only) {
		size_t n = strlen(only);
		char *base = util_xstrdup(only);
		if (n > 5 && strcmp(only + n - 5, ":dead") == 0 && !dead_readable(cfg, only))
			base[n - 5] = '\0';
		bool ok = dead_readable(cfg, base);
		if (ok)
			scope_add(s, seen, base);
		free(base);
		json_decref(seen);
		return ok ? NULL : dead_error("no pool reads stream %s (not configured, matches no pattern)", only);
	}
	for (size_t i = 0; i < cfg->streams.n; i++)
		scope_add(s, seen, cfg->streams.v[i]);
	for (size_t p = 0; p < cfg->npools; p++)
		for (size_t i = 0; i < cfg->pools[p].streams.n; i++)
			scope_add(s, seen, cfg->pools[p].streams.v[i]);
	size_t literal = s->n;
	for (size_t p = 0; p < cfg->npools && disc; p++) {
		for (size_t i = 0; i < cfg->pools[p].patterns.n; i++) {
			const struct disc_known *k = discover_known(disc, cfg->pools[p].patterns.v[i]);
			for (size_t j = 0; k && j < k->n; j++) {
				if (s->n - literal >= DEAD_STREAMS_MAX) {
					s->truncated = true;
					break;
				}
				scope_add(s, seen, k->v[j].name);
			}
		}
	}
	json_decref(seen);
	if (scope_existing(rc, s, literal) < 0) {
		scope_free(s);
		return dead_gone(rc);
	}
	return NULL;
}

static char *dead_key_of(const char *stream)
{
	size_t len = strlen(stream) + sizeof(":dead");
	char *k = util_xcalloc(1, len);
	snprintf(k, len, "%s:dead", stream);
	return k;
}

static char *dead_index_key(const struct sv_config *cfg, const char *stream)
{
	size_t len = strlen(cfg->namespace) + strlen(":deadidx:") + strlen(stream) + 1;
	char *k = util_xcalloc(1, len);
	snprintf(k, len, "%s:deadidx:%s", cfg->namespace, stream);
	return k;
}

/* ---------- list ---------- */

struct dead_row {
	uint64_t ms, seq;
	size_t stream;          /* index in the scope */
	char origin[DEAD_ID_MAX];
	json_t *json;
	size_t cost;
};

struct dead_rows {
	struct dead_row *v;
	size_t n, cap;
};

static int row_cmp_desc(const void *a, const void *b)
{
	const struct dead_row *x = a, *y = b;
	if (x->ms != y->ms)
		return x->ms < y->ms ? 1 : -1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? 1 : -1;
	return 0;
}

/* Keep the newest n rows (and any row tied with the n-th); returns true
 * when rows were dropped. */
static bool rows_trim(struct dead_rows *rs, size_t n)
{
	if (rs->n > 1)
		qsort(rs->v, rs->n, sizeof(*rs->v), row_cmp_desc);
	if (rs->n <= n)
		return false;
	size_t keep = n;
	while (keep < rs->n && rs->v[keep].ms == rs->v[n - 1].ms && rs->v[keep].seq == rs->v[n - 1].seq)
		keep++;
	for (size_t i = keep; i < rs->n; i++)
		json_decref(rs->v[i].json);
	bool dropped = keep < rs->n;
	rs->n = keep;
	return dropped;
}

/* Walk one dead-letter stream newest first from before `after` (NULL:
 * the newest), at most n letters, and none older than the n-th row so far
 * (rows sorted by rows_trim).  Sets *more when letters were left.
 * Returns 0 or -ENOTCONN. */
static int list_stream(struct rconn *rc, const struct dead_scope *s, size_t si, const char *after, size_t n,
		       struct dead_rows *rs, bool *more)
{
	bool full = rs->n >= n;
	uint64_t floor_ms = full ? rs->v[n - 1].ms : 0, floor_seq = full ? rs->v[n - 1].seq : 0;
	char *key = dead_key_of(s->v[si]);
	char start[DEAD_ID_MAX + 2];
	snprintf(start, sizeof(start), "%s%s", after ? "(" : "+", after ? after : "");
	size_t taken = 0;
	int ret = 0;
	for (;;) {
		size_t want = n + 1 - taken < DEAD_WALK_COUNT ? n + 1 - taken : DEAD_WALK_COUNT;
		redisReply *r = rconn_command(rc, "XREVRANGE %s %s - COUNT %d", key, start, (int)want);
		if (!r) {
			ret = -ENOTCONN;
			break;
		}
		size_t got = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
		bool stop = got < want;
		for (size_t j = 0; j < got; j++) {
			struct dead_letter l;
			uint64_t ms, seq;
			if (dead_parse(r->element[j], &l) < 0 || event_parse_id(l.id, &ms, &seq) < 0)
				continue;
			snprintf(start, sizeof(start), "(%s", l.id);
			if (taken == n || (full && (ms < floor_ms || (ms == floor_ms && seq < floor_seq)))) {
				*more = true;
				stop = true;
				break;
			}
			if (rs->n == rs->cap) {
				rs->cap = rs->cap ? 2 * rs->cap : 64;
				rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
				if (!rs->v)
					abort();
			}
			struct dead_row *row = &rs->v[rs->n++];
			memset(row, 0, sizeof(*row));
			row->ms = ms;
			row->seq = seq;
			row->stream = si;
			snprintf(row->origin, sizeof(row->origin), "%s", l.origin);
			row->json = dead_row_json(key, s->v[si], &l, &row->cost);
			taken++;
		}
		freeReplyObject(r);
		if (stop)
			break;
	}
	free(key);
	return ret;
}

/* "groups" of row from r, its origin's HGET of the stream's index, when
 * the index names this very letter. */
static void index_groups(json_t *row, const redisReply *r)
{
	json_t *v = r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
	if (json_is_array(v) && json_equal(json_array_get(v, 0), json_object_get(row, "id"))) {
		json_t *groups = json_array();
		for (size_t k = 1; k < json_array_size(v); k++)
			if (json_is_string(json_array_get(v, k)))
				json_array_append(groups, json_array_get(v, k));
		json_object_set_new(row, "groups", groups);
	}
	json_decref(v);
}

/* "groups" of each row from the stream's index (pipelined HGETs).
 * Returns 0 or -ENOTCONN. */
static int rows_groups(struct rconn *rc, const struct sv_config *cfg, const struct dead_scope *s,
		       struct dead_rows *rs)
{
	if (!rc->c)
		return -ENOTCONN;
	for (size_t i = 0; i < rs->n; i++) {
		char *idx = dead_index_key(cfg, s->v[rs->v[i].stream]);
		redisAppendCommand(rc->c, "HGET %s %s", idx, rs->v[i].origin[0] ? rs->v[i].origin : "-");
		free(idx);
	}
	for (size_t i = 0; i < rs->n; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return -ENOTCONN;
		index_groups(rs->v[i].json, r);
		freeReplyObject(r);
	}
	return 0;
}

static json_t *dead_list(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			 const char *stream, size_t n, const char *after)
{
	struct dead_scope s;
	json_t *err = dead_scope(rc, cfg, disc, stream, &s);
	if (err)
		return err;
	struct dead_rows rs = {0};
	bool more = false;
	for (size_t i = 0; i < s.n; i++) {
		/* Sorted and at most n (and ties) rows between streams. */
		if (rows_trim(&rs, n))
			more = true;
		if (list_stream(rc, &s, i, after, n, &rs, &more) < 0) {
			for (size_t k = 0; k < rs.n; k++)
				json_decref(rs.v[k].json);
			free(rs.v);
			scope_free(&s);
			return dead_gone(rc);
		}
	}
	if (rows_trim(&rs, n))
		more = true;
	/* The page's budget: a page of large letters ends early (never
	 * between letters of one id: the next page starts after that id). */
	size_t cost = 0, keep = 0;
	while (keep < rs.n && (keep == 0 || cost + rs.v[keep].cost <= DEAD_PAGE_BUDGET ||
			       (rs.v[keep].ms == rs.v[keep - 1].ms && rs.v[keep].seq == rs.v[keep - 1].seq)))
		cost += rs.v[keep++].cost;
	if (keep < rs.n) {
		more = true;
		for (size_t k = keep; k < rs.n; k++)
			json_decref(rs.v[k].json);
		rs.n = keep;
	}
	json_t *reply = NULL;
	if (rows_groups(rc, cfg, &s, &rs) < 0)
		reply = dead_gone(rc);
	json_t *entries = json_array();
	for (size_t k = 0; k < rs.n; k++)
		json_array_append_new(entries, rs.v[k].json);
	if (!reply) {
		reply = json_pack("{s:b, s:O, s:b}", "ok", 1, "entries", entries, "truncated", s.truncated);
		if (more && rs.n)
			json_object_set_new(reply, "next", json_object_get(rs.v[rs.n - 1].json, "id") ?
				json_incref(json_object_get(rs.v[rs.n - 1].json, "id")) : json_null());
	}
	json_decref(entries);
	free(rs.v);
	scope_free(&s);
	return reply;
}

/* ---------- show ---------- */

/* Find letter id in the scope: its reply (free it) and the stream's index
 * in *si, NULL when none has it; *gone on a dropped connection. */
static redisReply *dead_find(struct rconn *rc, const struct dead_scope *s, const char *id, size_t *si, bool *gone)
{
	*gone = false;
	for (size_t i = 0; i < s->n; i++) {
		char *key = dead_key_of(s->v[i]);
		redisReply *r = rconn_command(rc, "XRANGE %s %s %s", key, id, id);
		free(key);
		if (!r) {
			*gone = true;
			return NULL;
		}
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
			*si = i;
			return r;
		}
		freeReplyObject(r);
	}
	return NULL;
}

static bool dead_valid_id(const char *id)
{
	uint64_t ms, seq;
	return id && strlen(id) < DEAD_ID_MAX && strchr(id, '-') && event_parse_id(id, &ms, &seq) == 0;
}

static json_t *dead_show(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			 const char *id, const char *stream, const char *from)
{
	size_t item = 0, off = 0;
	if (from) {
		char *end;
		unsigned long long a = strtoull(from, &end, 10), b = 0;
		if (*end == ':')
			b = strtoull(end + 1, &end, 10);
		if (*end || !strchr(from, ':'))
			return dead_error("--from needs ITEM:OFFSET, not %s", from);
		item = (size_t)a;
		off = (size_t)b;
	}
	struct dead_scope s;
	json_t *err = dead_scope(rc, cfg, disc, stream, &s);
	if (err)
		return err;
	size_t si = 0;
	bool gone;
	redisReply *r = dead_find(rc, &s, id, &si, &gone);
	if (!r) {
		scope_free(&s);
		return gone ? dead_gone(rc) : dead_error("no dead letter %s", id);
	}
	struct dead_letter l;
	json_t *reply;
	if (dead_parse(r->element[0], &l) < 0) {
		reply = dead_error("dead letter %s is not a stream entry", id);
	} else {
		char *key = dead_key_of(s.v[si]);
		reply = dead_meta_json(key, s.v[si], &l);
		free(key);
		char *idx = dead_index_key(cfg, s.v[si]);
		redisReply *g = rconn_command(rc, "HGET %s %s", idx, l.origin[0] ? l.origin : "-");
		free(idx);
		if (g) {
			index_groups(reply, g); /* every group that refused it */
			freeReplyObject(g);
		}
		size_t items = l.f->elements - l.first, budget = DEAD_CHUNK;
		json_t *parts = json_array();
		while (item < items && json_array_size(parts) < DEAD_PARTS_MAX) {
			const redisReply *v = l.f->element[l.first + item];
			if (off > v->len)
				break;
			size_t take = v->len - off < budget ? v->len - off : budget;
			char *b = b64_encode(v->str + off, take, NULL);
			json_array_append_new(parts, json_pack("{s:I, s:I, s:I, s:s}", "item", (json_int_t)item, "size",
							       (json_int_t)v->len, "offset", (json_int_t)off, "b64", b));
			free(b);
			budget -= take;
			off += take;
			if (off == v->len)
				item++, off = 0;
			if (budget == 0)
				break;
		}
		json_object_set_new(reply, "ok", json_true());
		json_object_set_new(reply, "items", json_integer((json_int_t)items));
		json_object_set_new(reply, "parts", parts);
		if (item < items)
			json_object_set_new(reply, "next", json_sprintf("%zu:%zu", item, off));
	}
	freeReplyObject(r);
	scope_free(&s);
	return reply;
}

/* ---------- retry ---------- */

/* Runs after the XADD of the copy, in the same MULTI: removes the letter
 * and its index entry, unless the letter is gone already (another retry
 * or a purge came first): then the copy is taken back.  A copy that was
 * not written (XADD failed) keeps the letter.  KEYS: dead stream, index,
 * stream; ARGV: letter id, origin id, "1" when a copy was added. */
static const char dead_retry_script[] =
	"if ARGV[3] == '1' then "
	"  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1] "
	"  if not last or last[2][1] ~= 'origin_id' or last[2][2] ~= ARGV[2] then "
	"    return redis.error_reply('the copy was not written') "
	"  end "
	"  if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then "
	"    redis.call('XDEL', KEYS[3], last[1]) "
	"    return 0 "
	"  end "
	"end "
	"local n = redis.call('XDEL', KEYS[1], ARGV[1]) "
	"local cur = redis.pcall('HGET', KEYS[2], ARGV[2]) "
	"if type(cur) == 'string' then "
	"  local ok, v = pcall(cjson.decode, cur) "
	"  if ok and type(v) == 'table' and v[1] == ARGV[1] then redis.pcall('HDEL', KEYS[2], ARGV[2]) end "
	"end "
	"return n";

/* Re-drive letter l of stream (or, with copy false, only remove it).
 * Returns 1 done, 0 the letter was gone meanwhile, -EINVAL not a letter
 * of stream, -EPROTO refused by Redis, -ENOTCONN. */
static int dead_redrive(struct rconn *rc, const struct sv_config *cfg, const char *stream, const struct dead_letter *l,
			bool copy, json_t *results)
{
	const redisReply *os = l->meta[DM_ORIGIN_STREAM];
	/* A letter re-drives only into the stream whose dead-letter stream
	 * holds it: what it claims elsewhere is not trusted. */
	if (!l->origin[0] || !os || os->len != strlen(stream) || memcmp(os->str, stream, os->len) != 0) {
		log_warn("dead retry: %s:dead %s is not a dead letter of %s (origin_id or origin_stream); left", stream,
			 l->id, stream);
		return -EINVAL;
	}
	if (!rc->c)
		return -ENOTCONN;
	char *key = dead_key_of(stream), *idx = dead_index_key(cfg, stream);
	redisAppendCommand(rc->c, "MULTI");
	if (copy) {
		size_t argc = 5 + (l->f->elements - l->first);
		const char **argv = util_xcalloc(argc, sizeof(*argv));
		size_t *lens = util_xcalloc(argc, sizeof(*lens));
		size_t n = 0;
		argv[n] = "XADD", lens[n++] = 4;
		argv[n] = stream, lens[n++] = strlen(stream);
		argv[n] = "*", lens[n++] = 1;
		argv[n] = "origin_id", lens[n++] = 9;
		argv[n] = l->origin, lens[n++] = strlen(l->origin);
		for (size_t i = l->first; i < l->f->elements; i++)
			argv[n] = l->f->element[i]->str, lens[n++] = l->f->element[i]->len;
		redisAppendCommandArgv(rc->c, (int)n, argv, lens);
		free(argv);
		free(lens);
	}
	redisAppendCommand(rc->c, "EVAL %s 3 %s %s %s %s %s %s", dead_retry_script, key, idx, stream, l->id, l->origin,
			   copy ? "1" : "0");
	redisAppendCommand(rc->c, "EXEC");
	free(key);
	free(idx);
	for (int i = 0; i < (copy ? 3 : 2); i++) {
		redisReply *q = rconn_get_reply(rc);
		if (!q)
			return -ENOTCONN;
		freeReplyObject(q);
	}
	redisReply *r = rconn_get_reply(rc);
	if (!r)
		return -ENOTCONN;
	size_t want = copy ? 2 : 1;
	int ret;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != want || r->element[want - 1]->type != REDIS_REPLY_INTEGER) {
		const redisReply *e = r->type == REDIS_REPLY_ARRAY && r->elements == want ? r->element[want - 1] : r;
		log_error("dead retry of %s:dead %s failed: %s", stream, l->id,
			  e->type == REDIS_REPLY_ERROR ? e->str : "transaction aborted");
		ret = -EPROTO;
	} else {
		ret = r->element[want - 1]->integer > 0;
		if (ret && copy)
			json_array_append_new(results, json_pack("{s:s, s:o, s:s, s:s}", "id", l->id, "stream",
								 dead_bytes(stream, strlen(stream)),
								 "new_id", r->element[0]->type == REDIS_REPLY_STRING ?
								 r->element[0]->str : "", "origin_id", l->origin));
	}
	freeReplyObject(r);
	return ret;
}

struct retry_state {
	json_t *results;
	json_t *done;       /* "STREAM\nORIGIN" re-driven by this call */
	long long dropped, failures;
};

/* One letter of a retry: the first of its origin in this call is
 * re-driven, later ones (letters written before issue 12, one per group)
 * only removed.  Returns 0 or -ENOTCONN. */
static int retry_one(struct rconn *rc, const struct sv_config *cfg, const char *stream, redisReply *en,
		     struct retry_state *st)
{
	struct dead_letter l;
	if (dead_parse(en, &l) < 0) {
		st->failures++;
		return 0;
	}
	json_t *k = json_sprintf("%s\n%s", stream, l.origin);
	const char *ks = json_string_value(k);
	bool again = ks && l.origin[0] && json_object_get(st->done, ks);
	int r = dead_redrive(rc, cfg, stream, &l, !again, st->results);
	if (r == 1 && again)
		st->dropped++;
	else if (r == 1 && ks)
		json_object_set_new(st->done, ks, json_true());
	else if (r < 0 && r != -ENOTCONN)
		st->failures++;
	json_decref(k);
	return r == -ENOTCONN ? r : 0;
}

/* Every letter of one dead-letter stream, oldest first, a few at a time. */
static int retry_stream(struct rconn *rc, const struct sv_config *cfg, const char *stream, struct retry_state *st)
{
	char *key = dead_key_of(stream);
	char start[DEAD_ID_MAX + 2] = "-";
	int ret = 0;
	for (;;) {
		redisReply *r = rconn_command(rc, "XRANGE %s %s + COUNT %d", key, start, DEAD_WALK_COUNT);
		if (!r) {
			ret = -ENOTCONN;
			break;
		}
		size_t got = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
		for (size_t j = 0; j < got && ret == 0; j++) {
			redisReply *en = r->element[j];
			if (en->type == REDIS_REPLY_ARRAY && en->elements == 2 && en->element[0]->type == REDIS_REPLY_STRING)
				snprintf(start, sizeof(start), "(%s", en->element[0]->str);
			ret = retry_one(rc, cfg, stream, en, st);
		}
		freeReplyObject(r);
		if (ret < 0 || got < DEAD_WALK_COUNT)
			break;
	}
	free(key);
	return ret;
}

static json_t *dead_retry(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			  const char *which, const char *stream)
{
	bool all = strcmp(which, "all") == 0;
	if (!all && !dead_valid_id(which))
		return dead_error("dead retry needs a dead letter id (MS-SEQ) or all, not %s", which);
	struct dead_scope s;
	json_t *err = dead_scope(rc, cfg, disc, stream, &s);
	if (err)
		return err;
	struct retry_state st = {.results = json_array(), .done = json_object()};
	int r = 0;
	if (all) {
		for (size_t i = 0; i < s.n && r == 0; i++)
			r = retry_stream(rc, cfg, s.v[i], &st);
	} else {
		size_t si = 0;
		bool gone;
		redisReply *en = dead_find(rc, &s, which, &si, &gone);
		if (gone)
			r = -ENOTCONN;
		else if (en)
			r = retry_one(rc, cfg, s.v[si], en->element[0], &st);
		if (en)
			freeReplyObject(en);
	}
	scope_free(&s);
	json_decref(st.done);
	if (r < 0) {
		json_decref(st.results);
		return dead_gone(rc);
	}
	size_t n = json_array_size(st.results);
	if (n == 0 && !st.failures && !st.dropped) {
		json_decref(st.results);
		return dead_error("no dead letter %s", which);
	}
	json_t *reply = json_pack("{s:b, s:o, s:I}", "ok", st.failures == 0, "retried", st.results, "dropped",
				  (json_int_t)st.dropped);
	if (st.failures)
		json_object_set_new(reply, "error",
				    json_sprintf("%lld dead letters could not be re-driven (see the log)", st.failures));
	log_info("dead retry %s: %zu re-driven, %lld duplicates removed, %lld failed", which, n, st.dropped,
		 st.failures);
	return reply;
}

/* ---------- purge ---------- */

int admin_dead_index_prune(struct rconn *rc, const struct sv_config *cfg, const char *stream, long long min_ms)
{
	char *idx = dead_index_key(cfg, stream);
	char cursor[32] = "0";
	int ret = 0;
	do {
		redisReply *r = rconn_command(rc, "HSCAN %s %s COUNT 500", idx, cursor);
		if (!r) {
			ret = -ENOTCONN;
			break;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			break;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		redisReply *kv = r->element[1];
		for (size_t i = 0; i + 1 < kv->elements; i += 2) {
			json_t *v = json_loadb(kv->element[i + 1]->str, kv->element[i + 1]->len, 0, NULL);
			const char *id = json_string_value(json_array_get(v, 0));
			uint64_t ms = 0, seq;
			if (!id || event_parse_id(id, &ms, &seq) < 0 || (long long)ms < min_ms) {
				const char *argv[] = {"HDEL", idx, kv->element[i]->str};
				size_t lens[] = {4, strlen(idx), kv->element[i]->len};
				redisReply *d = rconn_commandv(rc, 3, argv, lens);
				if (d)
					freeReplyObject(d);
			}
			json_decref(v);
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	free(idx);
	return ret;
}

static json_t *dead_purge(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			  long long older, const char *stream)
{
	struct dead_scope s;
	json_t *err = dead_scope(rc, cfg, disc, stream, &s);
	if (err)
		return err;
	json_int_t removed = 0;
	for (size_t i = 0; i < s.n; i++) {
		redisReply *r;
		long long min_ms = util_wall_ms() - older;
		if (older < 0)
			r = rconn_command(rc, "XTRIM %s:dead MAXLEN 0", s.v[i]);
		else
			r = rconn_command(rc, "XTRIM %s:dead MINID %lld-0", s.v[i], min_ms);
		if (r && r->type == REDIS_REPLY_INTEGER)
			removed += r->integer;
		if (r)
			freeReplyObject(r);
		int p = 0;
		if (r && older < 0) {
			char *idx = dead_index_key(cfg, s.v[i]);
			redisReply *d = rconn_command(rc, "DEL %s", idx);
			free(idx);
			if (d)
				freeReplyObject(d);
			p = d ? 0 : -ENOTCONN;
		} else if (r) {
			p = admin_dead_index_prune(rc, cfg, s.v[i], min_ms);
		}
		if (!r || p < 0) {
			scope_free(&s);
			return dead_gone(rc);
		}
	}
	scope_free(&s);
	log_info("dead purge: %lld dead letters removed", (long long)removed);
	return json_pack("{s:b, s:I}", "ok", 1, "purged", removed);
}

/* ---------- arguments ---------- */

struct dead_args {
	const char *sub, *pos[2], *stream, *after, *from;
	long long older;
	size_t npos;
};

/* Options anywhere after the subcommand; the rest are positional. */
static json_t *dead_parse_args(json_t *args, struct dead_args *a)
{
	memset(a, 0, sizeof(*a));
	a->older = -1;
	a->sub = json_string_value(json_array_get(args, 0));
	for (size_t i = 1; i < json_array_size(args); i++) {
		const char *v = json_string_value(json_array_get(args, i));
		const char *next = json_string_value(json_array_get(args, i + 1));
		if (!v)
			return dead_error("arguments must be strings%s", NULL);
		const char **opt = strcmp(v, "--stream") == 0 ? &a->stream
				   : strcmp(v, "--after") == 0 ? &a->after
				   : strcmp(v, "--from") == 0 ? &a->from : NULL;
		if (opt || strcmp(v, "--older-than") == 0) {
			if (!next)
				return dead_error("%s needs a value", v);
			if (opt) {
				*opt = next;
			} else {
				char *end;
				a->older = strtoll(next, &end, 10);
				if (!*next || *end || a->older < 0)
					return dead_error("--older-than needs milliseconds%s", NULL);
			}
			i++;
		} else if (a->npos < 2) {
			a->pos[a->npos++] = v;
		} else {
			return dead_error("too many arguments: %s", v);
		}
	}
	return NULL;
}

static json_t *dead_list_args(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc,
			      const struct dead_args *a)
{
	/* dead list [STREAM] [N]: a lone number is N. */
	const char *stream = a->stream, *count = NULL;
	for (size_t i = 0; i < a->npos; i++) {
		bool num = *a->pos[i] && strspn(a->pos[i], "0123456789") == strlen(a->pos[i]);
		if (num && !count && (i == a->npos - 1))
			count = a->pos[i];
		else if (!stream)
			stream = a->pos[i];
		else
			return dead_error("usage: dead list [STREAM] [N] [--after ID]%s", NULL);
	}
	long long n = DEAD_LIST_DEFAULT;
	if (count) {
		n = strlen(count) > 6 ? DEAD_LIST_MAX + 1 : atoll(count);
		if (n < 1 || n > DEAD_LIST_MAX)
			return dead_error("dead list: N must be 1.." DEAD_STR(DEAD_LIST_MAX) ", not %s", count);
	}
	if (a->after && !dead_valid_id(a->after))
		return dead_error("--after needs a dead letter id (MS-SEQ), not %s", a->after);
	return dead_list(rc, cfg, disc, stream, (size_t)n, a->after);
}

json_t *admin_dead(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc, json_t *args)
{
	struct dead_args a;
	json_t *err = dead_parse_args(args, &a);
	if (err)
		return err;
	if (!a.sub || strcmp(a.sub, "list") == 0)
		return dead_list_args(rc, cfg, disc, &a);
	if (strcmp(a.sub, "show") == 0) {
		if (a.npos != 1 || !dead_valid_id(a.pos[0]))
			return dead_error("usage: dead show ID [--stream STREAM]%s", NULL);
		return dead_show(rc, cfg, disc, a.pos[0], a.stream, a.from);
	}
	if (strcmp(a.sub, "retry") == 0) {
		if (a.npos != 1)
			return dead_error("dead retry needs an ID or all%s", NULL);
		return dead_retry(rc, cfg, disc, a.pos[0], a.stream);
	}
	if (strcmp(a.sub, "purge") == 0) {
		if (a.npos)
			return dead_error("usage: dead purge [--older-than MS] [--stream STREAM]%s", NULL);
		return dead_purge(rc, cfg, disc, a.older, a.stream);
	}
	return dead_error("unknown dead subcommand: %s", a.sub);
}
