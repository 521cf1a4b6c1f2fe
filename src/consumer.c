/* consumer: the Redis Streams consumer loop of both worker kinds, run on
 * the services its host lends it (consumer.h). */
#include "consumer.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "util.h"

/* Renew only what is still ours: a bare XCLAIM would steal an entry back
 * from a peer that claimed it meanwhile.  Returns [position, delivery
 * count, ...] of the ids still owned.  The XCLAIM also makes the count durable: Redis
 * does not write the increment of an XREADGROUP history read (id 0) to
 * the AOF or to replicas, so after a Redis restart a poison entry would
 * get max_deliveries fresh crashes; XCLAIM is propagated with the count
 * as RETRYCOUNT.  Each id is named by its position (1-based) among the
 * ids: the caller marks it in O(1).  ARGV: group, consumer, the smallest
 * and the largest id, then the ids.  One XPENDING over the consumer's
 * own entries from the smallest to the largest id (O(log N + m), m the
 * consumer's entries in that range) finds the owned ones with their
 * counts, and one XCLAIM per 1000 of them renews them: a batch of 1024
 * costs ~1 ms in Redis, where an XPENDING and an XCLAIM per id cost ~5.5
 * (issue 14: the take-over after a crash).  When every id is owned with
 * the same count (a batch read again), the reply is {0, count}. */
static const char claim_own_script[] =
	"local want = {} "
	"for i = 5, #ARGV do want[ARGV[i]] = i - 4 end "
	"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[4], 2147483647, ARGV[2]) "
	"local owned, k, ids, m = {}, 0, {}, 0 "
	"for _, e in ipairs(p) do "
	"  local pos = want[e[1]] "
	"  if pos then "
	"    want[e[1]] = nil "
	"    owned[k + 1] = pos "
	"    owned[k + 2] = e[4] "
	"    k = k + 2 "
	"    m = m + 1 "
	"    ids[m] = e[1] "
	"  end "
	"end "
	"for i = 1, m, 1000 do "
	"  local a = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0} "
	"  for j = i, math.min(i + 999, m) do a[#a + 1] = ids[j] end "
	"  a[#a + 1] = 'JUSTID' "
	"  redis.call(unpack(a)) "
	"end "
	"if m > 0 and m == #ARGV - 4 then "
	"  local same = true "
	"  for j = 4, k, 2 do if owned[j] ~= owned[2] then same = false break end end "
	"  if same then return {0, owned[2]} end "
	"end "
	"return owned";

/* The owner check of a history read, sent right behind it in the same
 * pipeline: the first ARGV[4] entries of the consumer's own pending list
 * after the read's cursor (ARGV[3]: "-" or "(CURSOR") are the ones the
 * read just returned (only this process adds to its own list, and no peer
 * can claim them meanwhile: the read made them fresh).  They are renewed
 * (XCLAIM ... JUSTID: the delivery count made durable, as in
 * claim_own_script) and the reply says how many there were, their lowest
 * and highest delivery count and the last id: {n, lo, hi, last}.  When
 * that matches the read (same number, same last id) and lo == hi, every
 * entry of it has that count; else claim_reread runs the per-id check.
 * ARGV: group, consumer, start, count. */
static const char claim_range_script[] =
	"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], '+', ARGV[4], ARGV[2]) "
	"if #p == 0 then return {0, 0, 0, ''} end "
	"local lo, hi, ids = p[1][4], p[1][4], {} "
	"for i, e in ipairs(p) do "
	"  ids[i] = e[1] "
	"  if e[4] < lo then lo = e[4] end "
	"  if e[4] > hi then hi = e[4] end "
	"end "
	"for i = 1, #ids, 1000 do "
	"  local a = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0} "
	"  for j = i, math.min(i + 999, #ids) do a[#a + 1] = ids[j] end "
	"  a[#a + 1] = 'JUSTID' "
	"  redis.call(unpack(a)) "
	"end "
	"return {#p, lo, hi, ids[#ids]}";

/* Entry ids kept inline: no allocation per id on the hot path.  The
 * longest id is two 20-digit numbers and a dash. */
#define ID_MAX 48

/* Idle pattern streams are re-checked this often (recheck_idle). */
#define RECHECK_TICK_MS 250
/* Idle streams a claim sweep covers at most (besides the active ones). */
#define SWEEP_IDLE_MAX 256
/* The reads' reply objects (arena_alloc, below). */
struct achunk {
	struct achunk *next;
	size_t cap, used;
	max_align_t data[];
};

struct arena {
	struct achunk *head;
	size_t total;            /* bytes of every chunk */
};

struct idlist {
	char (*v)[ID_MAX];
	size_t n, cap;
};

/* One stream of the set: the pool's literal streams (fixed, self-healed
 * with MKSTREAM) and the pattern streams the master hands over (added and
 * removed at run time; never re-created once their key is gone). */
struct cstream {
	char *name;
	char *dead_key;          /* STREAM:dead */
	bool pattern;            /* added by consumer_streams_update */
	bool need_group;         /* XGROUP CREATE before the next read */
	bool fresh;              /* added since the last XGROUP CREATE round */
	bool gone;               /* a pattern stream whose key is gone: parked, not
				  * read, until it exists again or is removed */
	bool active;             /* in the active read set (literal streams always) */
	int64_t last_entry_ms;   /* monotonic: last read with entries, or added/woken */
	struct idlist acks;      /* queued XACKs */
	size_t sent;             /* acks of the pipeline in flight */
	long long shortfall;     /* acks Redis did not count */
	char *history_cursor;    /* NULL once this stream's own pending are read */
	bool history_ends;       /* the history read in flight takes the rest (takeover_count) */
	char *claim_cursor;      /* XAUTOCLAIM cursor */
	bool short_read;         /* its last read of the rotation gave less than COUNT */
	size_t got;              /* its entries in the round trip being processed */
};

/* A verdict of consumer_settle, applied at the start of the next
 * consumer_step (apply_settled). */
struct settled {
	char *stream;
	char id[ID_MAX];
	enum consumer_verdict verdict;
	char reason[160];
};

/* A change asked by consumer_streams_update, applied at the start of the
 * next consumer_step (never in the middle of a round trip). */
enum stream_op_kind { OP_ADD, OP_REMOVE, OP_WAKE };
struct stream_op {
	char *name;
	enum stream_op_kind kind;
};

struct consumer {
	struct consumer_host host;  /* borrowed services of the running process */
	const struct pool_config *pool;
	struct consumer_kind kind;
	struct cstream *st;      /* the stream set, in order; grows */
	size_t nstreams, st_cap;
	size_t rotate;           /* next stream of the rotation (read_keys) */
	size_t empty_keys;       /* keys read in a row that returned nothing */
	size_t read_width;       /* keys per read of the rotation, 1..read_keys (fill_observe) */
	long long yield_x256[2]; /* rotation reads, smoothed: of keys whose last read was full,
				  * entries per COUNT [0]; of short ones, entries per key [1];
				  * x256, -1 unknown */
	size_t idle_rotate;      /* next stream of the idle re-check rotation */
	size_t claim_rotate;     /* next idle stream of the claim sweeps */
	int64_t next_recheck_ms; /* the next re-check of idle pattern streams */
	int64_t next_demote_ms;  /* the next look for streams gone idle */
	size_t nactive;          /* active streams at the start of this round: counted
				  * once, not at every read plan of the round */
	struct stream_op *ops;   /* queued consumer_streams_update changes */
	size_t nops, ops_cap;
	bool groups_ready;
	bool started;
	bool takeover_done;
	uint64_t connects;       /* rconn.connects when last looked at */
	bool progress_sent;      /* "progress" told to the master */
	bool one_at_a_time;      /* predecessor exited uncleanly: takeover_count */
	int64_t next_claim_ms;
	/* consumer_claim_now: sweep with min-idle 0 until every stream's
	 * cursor is back at 0-0 (a standby that took the writer lease). */
	bool claim_all;
	size_t claim_all_sweeps; /* wrapped sweeps still to go (idle streams rotate) */
	bool idle;               /* the last read found nothing: the next one blocks */
	bool flow;               /* the last read of new entries brought some */
	int64_t rt_us;           /* the last round trip's wait for replies, acks' excluded
				  * (round_trip_reads; split_redis) */
	unsigned heal_streak;
	struct backoff heal_backoff;
	bool warned_redis;
	char *ackbuf;            /* the XACKs of a round trip, RESP, reused (append_acks) */
	struct arena arena;      /* the reads' reply objects (arena_begin .. reads_done) */
	redisContext *arena_ctx; /* the context whose reader has the arena's functions */
	redisReplyObjectFunctions *saved_fn;
	void *saved_privdata;
	size_t ackbuf_cap;
	struct consumer_entry *entries; /* reused per batch */
	size_t entries_cap;
	struct sv_field *fields;
	size_t fields_cap;
	size_t fields_used;       /* of fields, by the batch being built */
	struct settled *settle;   /* consumer_settle's queue */
	size_t nsettle, settle_cap;
	size_t budget;            /* entries the round trip being planned may bring
				   * (kind_capacity); SIZE_MAX: unbounded */
	size_t sweep_rotate;      /* claim sweeps with a budget: first stream next time */
};

/* ---------- small helpers ---------- */

/* v (capacity *cap, elem bytes each) with room for need elements:
 * doubles, from at least 16; aborts when out of memory, like
 * util_xcalloc.  Use: a = grown(a, &cap, n, sizeof(*a)). */
static void *grown(void *v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return v;
	size_t ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	void *nv = realloc(v, ncap * elem);
	if (!nv)
		abort();
	*cap = ncap;
	return nv;
}

/* ---------- reply objects of the reads, from an arena ----------
 *
 * hiredis makes one redisReply (and one string) per field of a reply: a
 * batch of 1024 entries of 5 fields is ~13,000 mallocs, freed again once
 * the batch is handled, and glibc then consolidates its fast bins at the
 * next large allocation (issue 14: ~12-15% of a worker's time).  The
 * replies of the reads (XREADGROUP, new and history, and the owner check
 * behind a history read) are instead built in an arena of a few chunks
 * that is reset, not freed object by object, once the round trip's
 * batch is handled (reads_done).  They are ordinary redisReply objects
 * to every reader of them; they must never reach freeReplyObject.  The
 * other replies on the connection (acks, heartbeat, the kind's own
 * commands) keep hiredis' functions: the arena's are set on the reader
 * only while the reads' replies are parsed (arena_begin/arena_end). */
#define ARENA_CHUNK (256u << 10)
#define ARENA_KEEP (16u << 20) /* a reset keeps at most this much */

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		struct achunk *ch = malloc(sizeof(*ch) + cap);
		if (!ch)
			return NULL; /* hiredis: out of memory, the connection is dropped */
		ch->next = a->head;
		ch->cap = cap;
		ch->used = 0;
		a->head = ch;
		a->total += cap;
	}
	void *p = (char *)a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

/* Everything allocated is gone.  Several chunks become one as large as
 * they were together (up to ARENA_KEEP): the next round trip of the same
 * size allocates nothing. */
static void arena_reset(struct arena *a)
{
	if (a->head && !a->head->next) {
		a->head->used = 0;
		return;
	}
	size_t total = a->total;
	while (a->head) {
		struct achunk *next = a->head->next;
		free(a->head);
		a->head = next;
	}
	a->total = 0;
	if (total > ARENA_CHUNK && total <= ARENA_KEEP) {
		struct achunk *ch = malloc(sizeof(*ch) + total);
		if (ch) {
			ch->next = NULL;
			ch->cap = total;
			ch->used = 0;
			a->head = ch;
			a->total = total;
		}
	}
}

static void arena_free(struct arena *a)
{
	arena_reset(a);
	free(a->head);
	a->head = NULL;
	a->total = 0;
}

static redisReply *ar_reply(const redisReadTask *task, int type)
{
	redisReply *r = arena_alloc(task->privdata, sizeof(*r));
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->type = type;
	if (task->parent) {
		redisReply *parent = task->parent->obj;
		parent->element[task->idx] = r;
	}
	return r;
}

static void *ar_string(const redisReadTask *task, char *str, size_t len)
{
	char *buf = arena_alloc(task->privdata, len + 1);
	if (!buf)
		return NULL;
	memcpy(buf, str, len);
	buf[len] = '\0';
	redisReply *r = ar_reply(task, task->type);
	if (!r)
		return NULL;
	r->str = buf;
	r->len = len;
	return r;
}

static void *ar_array_n(const redisReadTask *task, size_t n)
{
	redisReply **el = NULL;
	if (n > 0) {
		el = arena_alloc(task->privdata, n * sizeof(*el));
		if (!el)
			return NULL;
		memset(el, 0, n * sizeof(*el));
	}
	redisReply *r = ar_reply(task, task->type);
	if (!r)
		return NULL;
	r->element = el;
	r->elements = n;
	return r;
}

static void *ar_integer(const redisReadTask *task, long long v)
{
	redisReply *r = ar_reply(task, REDIS_REPLY_INTEGER);
	if (r)
		r->integer = v;
	return r;
}

static void *ar_nil(const redisReadTask *task)
{
	return ar_reply(task, REDIS_REPLY_NIL);
}

static void ar_free(void *obj)
{
	(void)obj; /* the arena's: reset with it */
}

#if HIREDIS_MAJOR >= 1
static void *ar_array(const redisReadTask *task, size_t n)
{
	return ar_array_n(task, n);
}

static void *ar_double(const redisReadTask *task, double v, char *str, size_t len)
{
	redisReply *r = ar_string(task, str, len);
	if (r) {
		r->type = REDIS_REPLY_DOUBLE;
		r->dval = v;
	}
	return r;
}

static void *ar_bool(const redisReadTask *task, int v)
{
	redisReply *r = ar_reply(task, REDIS_REPLY_BOOL);
	if (r)
		r->integer = v != 0;
	return r;
}

static redisReplyObjectFunctions arena_fns = {
	.createString = ar_string, .createArray = ar_array, .createInteger = ar_integer,
	.createDouble = ar_double, .createNil = ar_nil, .createBool = ar_bool, .freeObject = ar_free,
};
#else
static void *ar_array(const redisReadTask *task, int n)
{
	return ar_array_n(task, n > 0 ? (size_t)n : 0);
}

static redisReplyObjectFunctions arena_fns = {
	.createString = ar_string, .createArray = ar_array, .createInteger = ar_integer,
	.createNil = ar_nil, .freeObject = ar_free,
};
#endif

static void idlist_push(struct idlist *l, const char *id)
{
	l->v = grown(l->v, &l->cap, l->n + 1, sizeof(*l->v));
	snprintf(l->v[l->n++], ID_MAX, "%s", id);
}

static struct rconn *conn(struct consumer *c) { return c->host.rc; }
static struct heartbeat *hb(struct consumer *c) { return c->host.hb; }

/* The heartbeat's time split (issue 14).  HB_SPLIT_REDIS: waiting for the
 * replies of round trips that brought entries (reads of new entries, the
 * history, claim sweeps, idle re-checks, owner checks, the take-over's
 * look at delivery counts); a blocking read counts only when it brought
 * entries and the one before it did too (else it waited for entries,
 * not for Redis).  HB_SPLIT_ACK: formatting the XACKs and waiting for
 * their replies (they come first in the pipeline, so the round trip's
 * latency is theirs when they ride with a read), acks sent on their own,
 * and dead-letter transactions. */
static void split_add(struct consumer *c, enum hb_split k, int64_t since_us)
{
	int64_t d = util_mono_us() - since_us;
	if (d > 0)
		hb(c)->split_us[k] += (uint64_t)d;
}

/* The host's answers and the loop's reports (struct consumer_host). */
static void host_wait(struct consumer *c, int64_t ms) { c->host.wait(c->host.ctx, ms); }
static bool stopping(struct consumer *c) { return c->host.stopping(c->host.ctx); }
static void ask_stop(struct consumer *c) { c->host.stop(c->host.ctx); }

const struct consumer_host *consumer_host(const struct consumer *c) { return &c->host; }
const char *consumer_group(const struct consumer *c) { return c->pool->group; }
const char *consumer_name(const struct consumer *c) { return c->host.hb->name; }

static void set_error(struct consumer *c, const char *fmt, const char *detail)
{
	snprintf(hb(c)->last_error, sizeof(hb(c)->last_error), fmt, detail ? detail : "");
}

static struct cstream *stream_add(struct consumer *c, const char *name, bool pattern)
{
	c->st = grown(c->st, &c->st_cap, c->nstreams + 1, sizeof(*c->st));
	struct cstream *s = &c->st[c->nstreams++];
	memset(s, 0, sizeof(*s));
	s->name = util_xstrdup(name);
	size_t len = strlen(name) + 6;
	s->dead_key = malloc(len);
	if (!s->dead_key)
		abort();
	snprintf(s->dead_key, len, "%s:dead", name);
	s->pattern = pattern;
	s->active = true;
	s->last_entry_ms = util_mono_ms();
	s->need_group = true;
	s->fresh = true;
	s->history_cursor = util_xstrdup("0");
	s->claim_cursor = util_xstrdup("0-0");
	return s;
}

static void cstream_free(struct cstream *s)
{
	free(s->name);
	free(s->dead_key);
	free(s->acks.v);
	free(s->history_cursor);
	free(s->claim_cursor);
}

/* Drop stream i from the set, keeping the order of the others (rotation). */
static void stream_remove(struct consumer *c, size_t i)
{
	cstream_free(&c->st[i]);
	memmove(&c->st[i], &c->st[i + 1], (c->nstreams - i - 1) * sizeof(*c->st));
	c->nstreams--;
	if (c->rotate > i)
		c->rotate--;
	if (c->rotate >= c->nstreams)
		c->rotate = 0;
}

struct consumer *consumer_new(const struct consumer_host *host, const struct consumer_kind *kind)
{
	const struct pool_config *pool = host->pool;
	struct consumer *c = util_xcalloc(1, sizeof(*c));
	c->host = *host;
	c->pool = pool;
	c->kind = *kind;
	for (size_t i = 0; i < pool->streams.n; i++)
		stream_add(c, pool->streams.v[i], false);
	c->one_at_a_time = host->unclean;
	c->connects = host->rc->connects;
	c->read_width = (size_t)pool->read_keys;
	c->yield_x256[0] = c->yield_x256[1] = -1;
	c->next_claim_ms = util_mono_ms() + pool->claim_idle_ms / 2;
	c->budget = SIZE_MAX;
	backoff_init(&c->heal_backoff, 100, 5000);
	return c;
}

void consumer_free(struct consumer *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nstreams; i++)
		cstream_free(&c->st[i]);
	free(c->st);
	for (size_t i = 0; i < c->nops; i++)
		free(c->ops[i].name);
	free(c->ops);
	for (size_t i = 0; i < c->nsettle; i++)
		free(c->settle[i].stream);
	free(c->settle);
	free(c->ackbuf);
	arena_free(&c->arena);
	free(c->entries);
	free(c->fields);
	free(c);
}

/* SIZE_MAX when stream is not in the set. */
static size_t stream_index(struct consumer *c, const char *stream)
{
	for (size_t i = 0; i < c->nstreams; i++)
		if (strcmp(c->st[i].name, stream) == 0)
			return i;
	return SIZE_MAX;
}

/* ---------- the dynamic stream set ---------- */

int consumer_streams_update(struct consumer *c, const char *const *add, size_t nadd,
			    const char *const *remove, size_t nremove)
{
	c->ops = grown(c->ops, &c->ops_cap, c->nops + nadd + nremove, sizeof(*c->ops));
	for (size_t i = 0; i < nremove; i++)
		c->ops[c->nops++] = (struct stream_op){util_xstrdup(remove[i]), OP_REMOVE};
	for (size_t i = 0; i < nadd; i++)
		c->ops[c->nops++] = (struct stream_op){util_xstrdup(add[i]), OP_ADD};
	return 0;
}

int consumer_streams_wake(struct consumer *c, const char *const *names, size_t n)
{
	c->ops = grown(c->ops, &c->ops_cap, c->nops + n, sizeof(*c->ops));
	for (size_t i = 0; i < n; i++)
		c->ops[c->nops++] = (struct stream_op){util_xstrdup(names[i]), OP_WAKE};
	return 0;
}

size_t consumer_stream_count(const struct consumer *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nstreams; i++)
		n += !c->st[i].gone;
	return n;
}

void consumer_claim_now(struct consumer *c)
{
	c->claim_all = true;
	c->claim_all_sweeps = 1 + c->nstreams / SWEEP_IDLE_MAX;
	c->next_claim_ms = 0;
	for (size_t i = 0; i < c->nstreams; i++) {
		free(c->st[i].claim_cursor);
		c->st[i].claim_cursor = util_xstrdup("0-0");
	}
}

size_t consumer_active_count(const struct consumer *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nstreams; i++)
		n += c->st[i].active;
	return n;
}

/* A parked stream exists again: its group is made (at 0, no MKSTREAM)
 * before the next read, and it is active. */
static void unpark(struct consumer *c, struct cstream *s)
{
	s->gone = false;
	s->need_group = true;
	s->active = true;
	s->last_entry_ms = util_mono_ms();
	c->groups_ready = false;
}

/* The stream gave entries or was woken: (back) in the active set. */
static void stream_touch(struct cstream *s, int64_t now)
{
	if (!s->active)
		log_debug("stream %s is active again", s->name);
	s->active = true;
	s->last_entry_ms = now;
}

/* Pattern streams that gave nothing for idle_ms leave the active set
 * (looked at a few times a second, not at every read: the set may hold
 * thousands).  A stream with acks still queued stays until they are sent. */
static void demote_idle(struct consumer *c, int64_t now)
{
	if (now < c->next_demote_ms)
		return;
	int64_t idle_ms = c->pool->idle_ms;
	c->next_demote_ms = now + (idle_ms / 4 < 100 ? idle_ms / 4 : 100);
	for (size_t i = 0; i < c->nstreams; i++) {
		struct cstream *s = &c->st[i];
		if (s->pattern && s->active && !s->acks.n && now - s->last_entry_ms >= idle_ms) {
			s->active = false;
			log_debug("stream %s is idle: left the active read set", s->name);
		}
	}
}

static int flush_acks(struct consumer *c);

/* Apply the queued changes, in order.  A literal stream is the
 * configuration's: it is neither added twice nor removed.  A removed
 * stream's queued acks are sent first when the connection is up. */
static void apply_stream_ops(struct consumer *c)
{
	if (!c->nops)
		return;
	/* Detached: a flush below may wait on the host, which may queue
	 * more changes (applied next round). */
	struct stream_op *ops = c->ops;
	size_t nops = c->nops;
	c->ops = NULL;
	c->nops = c->ops_cap = 0;
	bool flushed = false;
	for (size_t k = 0; k < nops; k++) {
		struct stream_op *op = &ops[k];
		size_t i = stream_index(c, op->name);
		if (op->kind == OP_WAKE) {
			if (i != SIZE_MAX && c->st[i].gone)
				unpark(c, &c->st[i]); /* an xadd: it exists again */
			else if (i != SIZE_MAX)
				stream_touch(&c->st[i], util_mono_ms());
		} else if (op->kind == OP_ADD && i != SIZE_MAX && c->st[i].gone) {
			unpark(c, &c->st[i]); /* deleted and created again */
		} else if (op->kind == OP_ADD && i == SIZE_MAX) {
			stream_add(c, op->name, true);
			c->groups_ready = false;
			c->takeover_done = false; /* own pending entries of an earlier incarnation */
			log_debug("stream %s added to the read set", op->name);
		} else if (op->kind == OP_REMOVE && i != SIZE_MAX && c->st[i].pattern) {
			if (!flushed && conn(c)->c && c->st[i].acks.n) {
				flush_acks(c);
				flushed = true;
				i = stream_index(c, op->name);
				if (i == SIZE_MAX)
					continue;
			}
			stream_remove(c, i);
			log_debug("stream %s removed from the read set", op->name);
		}
	}
	for (size_t k = 0; k < nops; k++)
		free(ops[k].name);
	free(ops);
}

/* ---------- groups ---------- */

/* XGROUP CREATE at 0 (never $: entries written before the first start
 * must be delivered) on every stream that needs it; BUSYGROUP is success.
 * A literal stream is created with MKSTREAM; a pattern stream never is: when
 * its key is gone, it is dropped from the set (its producer deleted it). */
static int ensure_groups(struct consumer *c)
{
	struct rconn *rc = conn(c);
	if (!rc->c)
		return -ENOTCONN;
	size_t sent = 0;
	for (size_t i = 0; i < c->nstreams; i++) {
		if (!c->st[i].need_group)
			continue;
		redisAppendCommand(rc->c, c->st[i].pattern ? "XGROUP CREATE %s %s 0" : "XGROUP CREATE %s %s 0 MKSTREAM",
				   c->st[i].name, c->pool->group);
		sent++;
	}
	int ret = 0;
	for (size_t i = 0; i < c->nstreams && sent; i++) {
		struct cstream *s = &c->st[i];
		if (!s->need_group)
			continue;
		sent--;
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return -ENOTCONN;
		if (r->type == REDIS_REPLY_ERROR && s->pattern && !rconn_is_error(r, "BUSYGROUP")) {
			/* The key is gone ("requires the key to exist") or is no
			 * longer a stream (WRONGTYPE): never fail the others. */
			if (!strstr(r->str, "requires the key to exist"))
				log_warn("XGROUP CREATE %s %s: %s", s->name, c->pool->group, r->str);
			s->need_group = false;
			if (!s->gone)
				log_info("pattern stream %s is gone: parked (not read) until it exists again "
					 "or discovery drops it", s->name);
			s->gone = true;
			s->active = false;
			s->acks.n = 0; /* its entries went with the key */
		} else if (r->type == REDIS_REPLY_ERROR && !rconn_is_error(r, "BUSYGROUP")) {
			log_error("XGROUP CREATE %s %s: %s", s->name, c->pool->group, r->str);
			set_error(c, "XGROUP CREATE: %s", r->str);
			ret = -EPROTO;
		} else {
			if (r->type != REDIS_REPLY_ERROR && c->started && !s->fresh)
				log_warn("consumer group %s on %s was missing: re-created at 0", c->pool->group,
					 s->name);
			s->need_group = false;
			s->fresh = false;
		}
		freeReplyObject(r);
	}
	if (ret == 0)
		c->groups_ready = true;
	return ret;
}

/* NOGROUP/UNBLOCKED: the group or the stream is gone (Redis restart,
 * FLUSHALL, DEL).  Re-create it; the first retry is immediate, later
 * consecutive ones back off. */
static void group_lost(struct consumer *c, const char *why)
{
	c->groups_ready = false;
	for (size_t i = 0; i < c->nstreams; i++)
		c->st[i].need_group = !c->st[i].gone;
	if (c->heal_streak++ == 0) {
		log_warn("group %s lost (%s): re-creating it", c->pool->group, why);
		backoff_reset(&c->heal_backoff);
		return;
	}
	int64_t delay = backoff_next(&c->heal_backoff, util_rand32());
	log_debug("group %s lost again (%s): retry in %lld ms", c->pool->group, why, (long long)delay);
	host_wait(c, delay);
}

static bool has_patterns(const struct consumer *c)
{
	for (size_t i = 0; i < c->nstreams; i++)
		if (c->st[i].pattern)
			return true;
	return false;
}

/* ---------- warnings at start ---------- */

static void warn_redis_config(struct consumer *c)
{
	if (c->warned_redis || !c->host.warn_redis_config)
		return;
	c->warned_redis = true;
	redisReply *r = rconn_command(conn(c), "INFO");
	if (r && fault_active("redis_drop.info", NULL, 0))
		rconn_drop(conn(c), "fault injection: dropped after INFO");
	if (!r || r->type != REDIS_REPLY_STRING) {
		if (r)
			freeReplyObject(r);
		return;
	}
	const char *p = strstr(r->str, "maxmemory_policy:");
	if (p && strncmp(p + 17, "noeviction", 10) != 0)
		log_warn("redis maxmemory-policy %.*s can evict keys: streams and groups may vanish",
			 (int)strcspn(p + 17, "\r\n"), p + 17);
	const char *aof = strstr(r->str, "aof_enabled:");
	if (aof && aof[12] == '0') {
		redisReply *cfg = rconn_command(conn(c), "CONFIG GET save");
		bool no_rdb = cfg && cfg->type == REDIS_REPLY_ARRAY && cfg->elements == 2 &&
			      cfg->element[1]->str && cfg->element[1]->str[0] == '\0';
		if (no_rdb)
			log_warn("redis runs with neither AOF nor RDB persistence: a restart loses every stream");
		if (cfg)
			freeReplyObject(cfg);
	}
	freeReplyObject(r);
}

/* ---------- acks and dead letters ---------- */

/* RESP of one bulk string at *at in c->ackbuf (room made by the caller). */
static size_t resp_bulk(char *at, const char *s, size_t len)
{
	int h = sprintf(at, "$%zu\r\n", len);
	memcpy(at + h, s, len);
	memcpy(at + h + len, "\r\n", 2);
	return (size_t)h + len + 2;
}

/* Send the queued XACKs, one per stream, ahead of the round trip's other
 * commands; returns how many replies to read (read_ack_replies), or
 * -ENOTCONN (dropped: they stay queued).  They are formatted into a buffer
 * kept from round to round and written at once (rconn_write_raw), not
 * through hiredis' output buffer: a batch of 1024 acks is ~30 KB, which
 * hiredis formats into a fresh allocation and copies into an output
 * buffer it grows from empty at every round trip (issue 14: ~7% of a
 * worker's time, in malloc_consolidate).  Called first in every pipeline
 * (nothing of hiredis' is buffered before it). */
static int append_acks(struct consumer *c)
{
	int n = 0;
	size_t len = 0;
	for (size_t i = 0; i < c->nstreams; i++) {
		struct idlist *l = &c->st[i].acks;
		c->st[i].sent = l->n;
		if (!l->n)
			continue;
		size_t slen = strlen(c->st[i].name), glen = strlen(c->pool->group);
		/* "*N\r\n" and "$LEN\r\n...\r\n" per argument: 24 + 5 bytes
		 * of framing each at most. */
		size_t need = len + 32 + (l->n + 3) * 32 + slen + glen;
		for (size_t j = 0; j < l->n; j++)
			need += strlen(l->v[j]);
		c->ackbuf = grown(c->ackbuf, &c->ackbuf_cap, need, 1);
		char *at = c->ackbuf + len;
		at += sprintf(at, "*%zu\r\n", l->n + 3);
		at += resp_bulk(at, "XACK", 4);
		at += resp_bulk(at, c->st[i].name, slen);
		at += resp_bulk(at, c->pool->group, glen);
		for (size_t j = 0; j < l->n; j++)
			at += resp_bulk(at, l->v[j], strlen(l->v[j]));
		len = (size_t)(at - c->ackbuf);
		n++;
	}
	if (n && rconn_write_raw(conn(c), c->ackbuf, len) < 0) {
		for (size_t i = 0; i < c->nstreams; i++)
			c->st[i].sent = 0;
		return -ENOTCONN;
	}
	return n;
}

/* Read the XACK replies of a pipeline.  Shortfalls are only noted here:
 * checking them takes commands of their own, which must wait until every
 * reply of the pipeline has been read (check_shortfalls). */
static int read_ack_replies(struct consumer *c)
{
	for (size_t i = 0; i < c->nstreams; i++) {
		size_t sent = c->st[i].sent;
		if (!sent)
			continue;
		c->st[i].sent = 0;
		redisReply *r = rconn_get_reply(conn(c));
		if (!r)
			return -ENOTCONN; /* the acks stay queued and are sent again */
		long long acked = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
		bool nogroup = rconn_is_error(r, "NOGROUP");
		freeReplyObject(r);
		if (nogroup)
			group_lost(c, "NOGROUP on XACK");
		else if (acked >= 0 && (size_t)acked < sent)
			c->st[i].shortfall = (long long)sent - acked;
		/* Only what was sent leaves the queue. */
		struct idlist *l = &c->st[i].acks;
		memmove(l->v, l->v + sent, (l->n - sent) * sizeof(*l->v));
		l->n -= sent;
	}
	return 0;
}

/* XACK acknowledged fewer than sent: another consumer took an entry, or
 * the group is gone; XPENDING tells which.  Runs with no reply pending. */
static void check_shortfalls(struct consumer *c)
{
	for (size_t i = 0; i < c->nstreams; i++) {
		if (!c->st[i].shortfall)
			continue;
		long long missing = c->st[i].shortfall;
		c->st[i].shortfall = 0;
		if (!conn(c)->c)
			continue;
		redisReply *r = rconn_command(conn(c), "XPENDING %s %s", c->st[i].name, c->pool->group);
		if (r && rconn_is_error(r, "NOGROUP"))
			group_lost(c, "XACK shortfall and XPENDING says NOGROUP");
		else if (r)
			log_debug("XACK %s: %lld entries were no longer ours (taken over by another consumer)",
				  c->st[i].name, missing);
		if (r)
			freeReplyObject(r);
	}
}

static int flush_acks(struct consumer *c)
{
	if (!conn(c)->c)
		return -ENOTCONN;
	int64_t t0 = util_mono_us();
	int nacks = append_acks(c);
	if (nacks <= 0)
		return nacks;
	int r = read_ack_replies(c);
	split_add(c, HB_SPLIT_ACK, t0);
	check_shortfalls(c);
	return r;
}

static void apply_settled(struct consumer *c);

void consumer_finish(struct consumer *c)
{
	if (c && conn(c)->c) {
		apply_settled(c);
		flush_acks(c);
	}
}

/* One dead letter per stream entry, whatever the number of groups that
 * refuse it (issue 12): the dead letter is XADDed, then this script, in the
 * same MULTI, looks the origin up in the stream's index (KEYS[2], origin id
 * -> JSON ["DEAD_ID", group...]).  When a live dead letter of that origin
 * exists, the new one is deleted again and the group added to the index;
 * else the new one is indexed.  The XACK is the script's last step, so an
 * XADD that failed (the key is not a stream) acks nothing.  Index writes
 * use pcall: a foreign value there costs a duplicate, never the letter.
 * KEYS: dead stream, index, stream; ARGV: origin id, group, entry id. */
static const char dead_join_script[] =
	"local new = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1] "
	"local keep = new "
	"local cur = redis.pcall('HGET', KEYS[2], ARGV[1]) "
	"if type(cur) == 'string' then "
	"  local ok, v = pcall(cjson.decode, cur) "
	"  if ok and type(v) == 'table' and type(v[1]) == 'string' and v[1] ~= new then "
	"    local e = redis.pcall('XRANGE', KEYS[1], v[1], v[1]) "
	"    if type(e) == 'table' and #e == 1 then "
	"      local have = false "
	"      for i = 2, #v do if v[i] == ARGV[2] then have = true end end "
	"      if not have then v[#v + 1] = ARGV[2] end "
	"      local w = redis.pcall('HSET', KEYS[2], ARGV[1], cjson.encode(v)) "
	"      if type(w) == 'number' then "
	"        redis.call('XDEL', KEYS[1], new) "
	"        keep = v[1] "
	"      end "
	"    end "
	"  end "
	"end "
	"if keep == new then redis.pcall('HSET', KEYS[2], ARGV[1], cjson.encode({new, ARGV[2]})) end "
	"redis.call('XACK', KEYS[3], ARGV[2], ARGV[3]) "
	"return keep";

/* The dead-letter index of a stream, NS:deadidx:STREAM (HACKING.md).  The
 * consumer sees the namespace only in its heartbeat's NS:workers key. */
static char *dead_index_key(struct consumer *c, const char *stream)
{
	const char *wk = hb(c)->workers_key;
	size_t ns = strlen(wk) - strlen(":workers");
	size_t len = ns + strlen(":deadidx:") + strlen(stream) + 1;
	char *key = util_xcalloc(1, len);
	snprintf(key, len, "%.*s:deadidx:%s", (int)ns, wk, stream);
	return key;
}

/* The entry's origin: a copy re-driven by `dead retry` starts with
 * origin_id (the original id), which names it and is not one of its
 * original fields.  Returns the index of the first original field. */
static size_t dead_origin(const struct sv_entry *e, char *origin, size_t len)
{
	snprintf(origin, len, "%s", e->id);
	if (e->nfields == 0 || e->fields[0].name_len != 9 || memcmp(e->fields[0].name, "origin_id", 9) != 0 ||
	    e->fields[0].value_len >= len)
		return 0;
	char id[ID_MAX];
	uint64_t ms, seq;
	memcpy(id, e->fields[0].value, e->fields[0].value_len);
	id[e->fields[0].value_len] = '\0';
	if (event_parse_id(id, &ms, &seq) < 0)
		return 0;
	snprintf(origin, len, "%s", id);
	return 1;
}

/* Move one entry to STREAM:dead together with its XACK, in one MULTI:
 * XADD, then dead_join_script (one letter per origin; the XACK). */
static int dead_letter_tx(struct consumer *c, size_t si, struct consumer_entry *ce);

static int dead_letter(struct consumer *c, size_t si, struct consumer_entry *ce)
{
	int64_t t0 = util_mono_us();
	int r = dead_letter_tx(c, si, ce);
	split_add(c, HB_SPLIT_ACK, t0);
	return r;
}

static int dead_letter_tx(struct consumer *c, size_t si, struct consumer_entry *ce)
{
	const struct sv_entry *e = &ce->e;
	char origin[ID_MAX];
	size_t first = dead_origin(e, origin, sizeof(origin));
	size_t argc = 3 + 12 + 2 * e->nfields;
	const char **argv = malloc(argc * sizeof(*argv));
	size_t *lens = malloc(argc * sizeof(*lens));
	if (!argv || !lens)
		abort();
	char deliveries[24];
	snprintf(deliveries, sizeof(deliveries), "%lld", (long long)ce->deliveries);
	const char *head[] = {"XADD", c->st[si].dead_key, "*", "origin_id", origin, "origin_stream",
			      e->stream, "group", c->pool->group, "consumer", consumer_name(c),
			      "reason", ce->reason ? ce->reason : "unknown", "deliveries", deliveries};
	size_t n = 0;
	for (; n < ARRAY_SIZE(head); n++) {
		argv[n] = head[n];
		lens[n] = strlen(head[n]);
	}
	for (size_t f = first; f < e->nfields; f++) {
		argv[n] = e->fields[f].name;
		lens[n++] = e->fields[f].name_len;
		argv[n] = e->fields[f].value;
		lens[n++] = e->fields[f].value_len;
	}
	char *idx = dead_index_key(c, e->stream);
	redisContext *rx = conn(c)->c;
	if (!rx) {
		free(argv);
		free(lens);
		free(idx);
		return -ENOTCONN;
	}
	redisAppendCommand(rx, "MULTI");
	redisAppendCommandArgv(rx, (int)n, argv, lens);
	redisAppendCommand(rx, "EVAL %s 3 %s %s %s %s %s %s", dead_join_script, c->st[si].dead_key, idx, e->stream,
			   origin, c->pool->group, e->id);
	redisAppendCommand(rx, "EXEC");
	free(argv);
	free(lens);
	free(idx);
	/* MULTI and the QUEUED replies say nothing EXEC does not. */
	for (int i = 0; i < 3; i++) {
		redisReply *q = rconn_get_reply(conn(c));
		if (!q)
			return -ENOTCONN;
		freeReplyObject(q);
	}
	redisReply *r = rconn_get_reply(conn(c));
	if (!r)
		return -ENOTCONN;
	int ret = 0;
	const char *why = r->type == REDIS_REPLY_ERROR ? r->str : "transaction aborted";
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_ERROR)
		why = r->element[1]->str;
	else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
		why = NULL;
	if (why) {
		log_error("dead-lettering %s %s failed: %s", e->stream, e->id, why);
		ret = -EPROTO;
	} else {
		hb(c)->dead_lettered++;
		log_kv(LOG_WARN, KV("stream", e->stream, "id", e->id, "reason", ce->reason ? ce->reason : ""),
		       "entry dead-lettered to %s as %s (origin %s)", c->st[si].dead_key,
		       r->element[1]->str, origin);
	}
	freeReplyObject(r);
	return ret;
}

/* ---------- reading ---------- */

/* Room for a batch of nentries entries holding nfields fields.  The
 * buffers are reused batch after batch (one batch is in hand at a time):
 * no allocation per entry on the hot path. */
static void batch_reserve(struct consumer *c, struct consumer_batch *b, size_t nentries, size_t nfields)
{
	if (nentries > c->entries_cap) {
		c->entries_cap = nentries * 2;
		free(c->entries);
		c->entries = util_xcalloc(c->entries_cap, sizeof(*c->entries));
	}
	b->v = c->entries;
	b->n = 0;
	memset(b->v, 0, nentries * sizeof(*b->v));
	if (nfields > c->fields_cap) {
		c->fields_cap = nfields * 2;
		free(c->fields);
		c->fields = util_xcalloc(c->fields_cap, sizeof(*c->fields));
	}
	c->fields_used = 0;
}

static size_t count_fields(const redisReply *entries)
{
	size_t total = 0;
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *en = entries->element[i];
		if (en->type == REDIS_REPLY_ARRAY && en->elements == 2 && en->element[1]->type == REDIS_REPLY_ARRAY)
			total += en->element[1]->elements / 2;
	}
	return total;
}

/* Append one stream's entries of a reply to a batch (batch_reserve made
 * the room).  Deleted entries ([id, nil]) are acked and counted as lost
 * right here. */
static void build_batch(struct consumer *c, redisReply *entries, size_t si, struct consumer_batch *b)
{
	const char *stream = c->st[si].name;
	b->stream = b->n == 0 && (!b->stream || strcmp(b->stream, stream) == 0) ? stream : NULL;
	struct sv_field *fb = c->fields + c->fields_used;
	for (size_t i = 0; i < entries->elements; i++) {
		redisReply *en = entries->element[i];
		if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING)
			continue;
		const char *id = en->element[0]->str;
		redisReply *fields = en->element[1];
		if (fields->type != REDIS_REPLY_ARRAY) {
			/* Deleted from the stream while pending. */
			log_kv(LOG_WARN, KV("stream", stream, "id", id), "pending entry was deleted: acked as lost");
			hb(c)->lost++;
			idlist_push(&c->st[si].acks, id);
			continue;
		}
		struct consumer_entry *ce = &b->v[b->n++];
		ce->si = si;
		ce->e.stream = stream;
		ce->e.id = id;
		event_parse_id(id, &ce->e.id_ms, &ce->e.id_seq);
		ce->e.fields = fb;
		size_t bytes = 0;
		for (size_t f = 0; f + 1 < fields->elements; f += 2) {
			fb->name = fields->element[f]->str;
			fb->name_len = fields->element[f]->len;
			fb->value = fields->element[f + 1]->str;
			fb->value_len = fields->element[f + 1]->len;
			bytes += fb->name_len + fb->value_len;
			fb++;
			ce->e.nfields++;
		}
		ce->e.bytes = bytes;
		ce->deliveries = 1;
	}
	c->fields_used = (size_t)(fb - c->fields);
}

static int claim_own(struct consumer *c, struct rconn *rc, const char *stream, const char *const *ids,
		     size_t n, bool *owned, long long *deliveries);

/* A history read's claim_range_script reply, when it vouches for the
 * whole batch (entries: the read's part of the stream, all of them,
 * deleted ones too): every entry gets its delivery count.  Returns true
 * then; false: the per-id owner check is needed. */
static bool range_claimed(struct consumer_batch *b, const redisReply *entries, const redisReply *cr)
{
	if (!cr || cr->type != REDIS_REPLY_ARRAY || cr->elements != 4 || entries->elements == 0)
		return false;
	const redisReply *n = cr->element[0], *lo = cr->element[1], *hi = cr->element[2], *last = cr->element[3];
	const redisReply *tail = entries->element[entries->elements - 1];
	if (n->type != REDIS_REPLY_INTEGER || lo->type != REDIS_REPLY_INTEGER || hi->type != REDIS_REPLY_INTEGER ||
	    last->type != REDIS_REPLY_STRING || n->integer != (long long)entries->elements ||
	    lo->integer != hi->integer || tail->type != REDIS_REPLY_ARRAY || tail->elements != 2 ||
	    tail->element[0]->type != REDIS_REPLY_STRING || strcmp(tail->element[0]->str, last->str) != 0)
		return false;
	for (size_t i = 0; i < b->n; i++)
		b->v[i].deliveries = hi->integer;
	b->counted = true;
	return true;
}

/* Entries read again (history) or claimed: renew them through the Lua
 * script, which gives their delivery counts and makes those durable.
 * Entries no longer ours (a peer claimed them since) are dropped.  A
 * history batch the range claim vouched for (range_claimed) has all that
 * already. */
static int claim_reread(struct consumer *c, struct consumer_batch *b)
{
	if (b->n == 0 || b->counted)
		return 0;
	const char **ids = util_xcalloc(b->n, sizeof(*ids));
	bool *owned = util_xcalloc(b->n, sizeof(*owned));
	long long *deliveries = util_xcalloc(b->n, sizeof(*deliveries));
	for (size_t i = 0; i < b->n; i++)
		ids[i] = b->v[i].e.id;
	int64_t t0 = util_mono_ms(), t0_us = util_mono_us();
	int r = claim_own(c, conn(c), b->stream, ids, b->n, owned, deliveries);
	split_add(c, HB_SPLIT_REDIS, t0_us);
	log_debug("owner check of %zu entries read again: %d still ours, %lld ms", b->n, r,
		  (long long)(util_mono_ms() - t0));
	for (size_t i = 0; r >= 0 && i < b->n; i++) {
		if (owned[i]) {
			b->v[i].deliveries = deliveries[i];
		} else if (b->v[i].verdict == CE_UNDECIDED) {
			b->v[i].verdict = CE_DROP;
			log_kv(LOG_WARN, KV("stream", b->v[i].e.stream, "id", b->v[i].e.id),
			       "entry read again was claimed by another consumer: dropped");
		}
	}
	free(ids);
	free(owned);
	free(deliveries);
	return r < 0 ? r : 0;
}

/* Verdicts the consumer can give before the kind sees the entry. */
static void prejudge(struct consumer *c, struct consumer_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct consumer_entry *ce = &b->v[i];
		if (ce->verdict != CE_UNDECIDED)
			continue;
		if (ce->deliveries > c->pool->max_deliveries) {
			ce->verdict = CE_DEAD;
			snprintf(ce->reason_buf, sizeof(ce->reason_buf),
				 "delivered %lld times (max_deliveries %lld)", (long long)ce->deliveries,
				 (long long)c->pool->max_deliveries);
			ce->reason = ce->reason_buf;
			log_kv(LOG_WARN, KV("stream", ce->e.stream, "id", ce->e.id), "poison entry: %s", ce->reason);
		} else if (ce->e.bytes > EVENT_MAX_BYTES) {
			ce->verdict = CE_DEAD;
			ce->reason = "entry too large";
		}
	}
}

/* Renew the undecided entries from..to (one stream's run of the batch).
 * Deferred ones (CE_DEFER) are the kind's: it renews them itself. */
/* Still ours to renew while its batch is retried: nothing of the batch is
 * acked yet, so an entry the kind judged (ack, dead) before its commit
 * failed is in hand as much as an undecided one; left alone, it would go
 * idle, be claimed by a peer and count a delivery per degraded retry. */
static bool in_hand(enum consumer_verdict v)
{
	return v == CE_UNDECIDED || v == CE_ACK || v == CE_DEAD;
}

static void renew_run(struct consumer *c, struct consumer_batch *b, size_t from, size_t to,
		      const char **ids, bool *owned)
{
	size_t n = 0;
	const char *stream = b->v[from].e.stream;
	for (size_t i = from; i < to; i++)
		if (in_hand(b->v[i].verdict))
			ids[n++] = b->v[i].e.id;
	if (!n || consumer_renew(c, stream, ids, n, owned) < 0)
		return;
	size_t k = 0;
	for (size_t i = from; i < to; i++) {
		if (!in_hand(b->v[i].verdict))
			continue;
		if (!owned[k++]) {
			b->v[i].verdict = CE_DROP;
			log_kv(LOG_WARN, KV("stream", stream, "id", b->v[i].e.id),
			       "entry in hand was claimed by another consumer: dropped");
		}
	}
}

/* A batch holds its streams' entries one stream after the other. */
static void renew_batch(struct consumer *c, struct consumer_batch *b)
{
	const char **ids = malloc((b->n ? b->n : 1) * sizeof(*ids));
	bool *owned = calloc(b->n ? b->n : 1, sizeof(*owned));
	if (!ids || !owned)
		abort();
	for (size_t from = 0, to; from < b->n; from = to) {
		for (to = from + 1; to < b->n && b->v[to].si == b->v[from].si; to++)
			;
		renew_run(c, b, from, to, ids, owned);
	}
	free(ids);
	free(owned);
}

/* The kind could not make the batch durable: degraded.  Retry with
 * backoff, keep heartbeating, renew the entries in hand.  Returns 0 when
 * the batch went through, 1 when the worker must stop first. */
static int retry_degraded(struct consumer *c, struct consumer_batch *b)
{
	struct backoff bo;
	backoff_init(&bo, 100, 5000);
	int64_t renew_every = c->pool->claim_idle_ms / 3;
	int64_t next_renew = util_mono_ms() + renew_every;
	hb(c)->status = HB_DEGRADED;
	log_warn("cannot make batch durable (%s): degraded, retrying", hb(c)->last_error);
	heartbeat_beat(hb(c), conn(c));
	while (!stopping(c)) {
		int64_t until = util_mono_ms() + backoff_next(&bo, util_rand32());
		while (!stopping(c) && util_mono_ms() < until) {
			int64_t left = until - util_mono_ms();
			int64_t beat = heartbeat_next_ms(hb(c), util_mono_ms());
			host_wait(c, left < beat ? left : beat);
			/* The kind's own deadlines (a persistence writer renews
			 * its lease here: a degraded writer keeps it, rather
			 * than hand its entries to a standby that would fail on
			 * the same file, a delivery each time). */
			if (c->kind.poll_ready)
				c->kind.poll_ready(c->kind.ctx, c, NULL, 0);
			if (!rconn_ready(conn(c), util_mono_ms()))
				continue;
			heartbeat_beat_if_due(hb(c), conn(c));
			if (util_mono_ms() >= next_renew) {
				renew_batch(c, b);
				next_renew = util_mono_ms() + renew_every;
			}
		}
		if (stopping(c))
			break;
		int r = c->kind.batch(c->kind.ctx, c, b);
		if (r == 0) {
			log_info("batch durable again: leaving degraded state");
			hb(c)->status = HB_BUSY;
			hb(c)->last_error[0] = '\0';
			return 0;
		}
		if (r != -EAGAIN)
			return 1;
	}
	/* Stopping with the batch not durable: nothing is acked, the entries
	 * stay pending and the next incarnation takes them over. */
	return 1;
}

/* uWSGI's reload-on-rss: past max_rss_mb, finish this batch and exit 0;
 * the master replaces the worker at once. */
static void check_rss(struct consumer *c)
{
	if (c->pool->max_rss_mb <= 0 || stopping(c))
		return;
	FILE *f = fopen("/proc/self/statm", "re");
	long pages = 0, rss = 0;
	if (!f)
		return;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	long long mb = (long long)rss * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
	if (mb > c->pool->max_rss_mb) {
		log_info("RSS %lld MiB is over max_rss_mb %lld: recycling after this batch", mb,
			 (long long)c->pool->max_rss_mb);
		ask_stop(c);
	}
}

/* The first batch handled tells the master this incarnation works (see
 * proc_progress): once per process. */
static void report_progress(struct consumer *c)
{
	if (c->progress_sent)
		return;
	c->progress_sent = true;
	c->host.progress(c->host.ctx);
}

/* Hand a batch to the kind, then dead-letter and queue acks. */
static int process_batch(struct consumer *c, struct consumer_batch *b)
{
	int err;
	if (b->history && (err = claim_reread(c, b)) < 0)
		return err;
	prejudge(c, b);
	hb(c)->status = HB_BUSY;
	snprintf(hb(c)->current, sizeof(hb(c)->current), "%s", b->n ? b->v[0].e.id : "");
	int64_t t0 = util_mono_us();
	int r = c->kind.batch(c->kind.ctx, c, b);
	if (r == 0)
		heartbeat_observe_batch(hb(c), util_mono_us() - t0);
	if (r == -EAGAIN && retry_degraded(c, b) != 0) {
		/* Nothing of the batch is acked.  Asked to stop: a clean exit
		 * (status 0) leaves it pending for the next incarnation. */
		return stopping(c) ? 0 : 1;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct consumer_entry *ce = &b->v[i];
		switch (ce->verdict) {
		case CE_DEAD:
			if ((err = dead_letter(c, ce->si, ce)) < 0)
				return err; /* not acked: it will be delivered again */
			break;
		case CE_UNDECIDED:
		case CE_ACK:
			idlist_push(&c->st[ce->si].acks, ce->e.id);
			hb(c)->processed++;
			break;
		case CE_DONE:
			hb(c)->processed++;
			break;
		case CE_DROP:
		case CE_DEFER: /* the kind's now: it acks or settles it */
			break;
		}
	}
	hb(c)->current[0] = '\0';
	hb(c)->status = HB_IDLE;
	report_progress(c);
	check_rss(c);
	return 0;
}

/* The keys of one XREADGROUP (plan_read). */
struct read_plan {
	size_t *idx;
	size_t n;
	bool block;
	int64_t block_ms;   /* with block */
	size_t nactive;     /* active streams when planned (new entries) */
	long long limit;    /* COUNT per key at most (the kind's capacity); 0: no cap */
	long long takeover; /* history after an unclean exit: COUNT per key
			     * (takeover_count), 0: 1 */
};

/* One stream's part of an XREADGROUP reply: [stream, [entries...]], or
 * NULL (malformed, or not a key of this read).  Redis answers in the
 * order of the keys, so the plan is searched from where the previous
 * part was found: a reply costs O(keys), not O(keys x streams). */
static redisReply *reply_part(struct consumer *c, redisReply *sr, const struct read_plan *rp, size_t *from,
			      size_t *si)
{
	if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 || sr->element[1]->type != REDIS_REPLY_ARRAY ||
	    sr->element[0]->type != REDIS_REPLY_STRING)
		return NULL;
	const char *name = sr->element[0]->str;
	for (size_t k = 0; k < rp->n; k++) {
		size_t j = (*from + k) % rp->n;
		if (strcmp(c->st[rp->idx[j]].name, name) == 0) {
			*from = j + 1;
			*si = rp->idx[j];
			return sr->element[1];
		}
	}
	return NULL;
}

static long long history_count(const struct consumer *c, const struct read_plan *rp);

/* History: a batch per stream (the owner check and its cursor are per
 * stream). */
static int process_history_reply(struct consumer *c, redisReply *r, const struct read_plan *rp,
				 redisReply *const *claims, size_t *got)
{
	int ret = 0;
	size_t from = 0;
	for (size_t s = 0; s < r->elements && ret == 0; s++) {
		size_t si;
		redisReply *entries = reply_part(c, r->element[s], rp, &from, &si);
		if (!entries)
			continue;
		const redisReply *cr = claims ? claims[from - 1] : NULL; /* from: past its key */
		struct cstream *cs = &c->st[si];
		bool ends = cs->history_ends;
		cs->history_ends = false;
		free(cs->history_cursor);
		cs->history_cursor = NULL;
		if (entries->elements == 0)
			continue;
		/* Fewer than COUNT: nothing of ours is pending after them (only
		 * this process adds to its own pending list, and it reads nothing
		 * else until the take-over is done): no empty read to end it. */
		redisReply *last = entries->element[entries->elements - 1];
		if (!ends && (long long)entries->elements >= history_count(c, rp) &&
		    last->type == REDIS_REPLY_ARRAY &&
		    last->elements == 2 && last->element[0]->type == REDIS_REPLY_STRING)
			cs->history_cursor = util_xstrdup(last->element[0]->str);
		stream_touch(cs, util_mono_ms());
		*got += entries->elements;
		struct consumer_batch b = {.history = true};
		batch_reserve(c, &b, entries->elements, count_fields(entries));
		build_batch(c, entries, si, &b);
		range_claimed(&b, entries, cr);
		if (b.n)
			ret = process_batch(c, &b);
	}
	return ret;
}

/* New entries: every stream's part of the replies of one round trip
 * (rp[k] the plan of r[k]; a reply that is not an array is skipped) in
 * one batch, so reads over many per-run streams are still one
 * transaction of the kind. */
static int process_new_replies(struct consumer *c, redisReply *const *r, const struct read_plan *rp, size_t n,
			       size_t *got)
{
	size_t nentries = 0, nfields = 0, si, from;
	for (size_t k = 0; k < n; k++) {
		if (r[k]->type != REDIS_REPLY_ARRAY)
			continue;
		from = 0;
		for (size_t s = 0; s < r[k]->elements; s++) {
			redisReply *entries = reply_part(c, r[k]->element[s], &rp[k], &from, &si);
			if (entries) {
				c->st[si].got = entries->elements;
				nentries += entries->elements;
				nfields += count_fields(entries);
			}
		}
	}
	*got = nentries;
	if (nentries == 0)
		return 0;
	struct consumer_batch b = {.history = false};
	batch_reserve(c, &b, nentries, nfields);
	int64_t now = util_mono_ms();
	for (size_t k = 0; k < n; k++) {
		if (r[k]->type != REDIS_REPLY_ARRAY)
			continue;
		from = 0;
		for (size_t s = 0; s < r[k]->elements; s++) {
			redisReply *entries = reply_part(c, r[k]->element[s], &rp[k], &from, &si);
			if (entries && entries->elements) {
				stream_touch(&c->st[si], now);
				build_batch(c, entries, si, &b);
			}
		}
	}
	return b.n ? process_batch(c, &b) : 0;
}

/* Walk an XREADGROUP reply: [[stream, [entries...]]...]. */
static int process_read_reply(struct consumer *c, redisReply *r, const struct read_plan *rp, bool history,
			      size_t *got)
{
	*got = 0;
	if (r->type != REDIS_REPLY_ARRAY)
		return 0;
	return history ? process_history_reply(c, r, rp, NULL, got) : process_new_replies(c, &r, rp, 1, got);
}

/* COUNT per key of a read of n keys that may bring budget entries in
 * all (0: no cap). */
static long long budget_limit(size_t budget, size_t n)
{
	if (budget == SIZE_MAX)
		return 0;
	return n && budget >= n ? (long long)(budget / n) : 1;
}

/* The keys of one XREADGROUP.  New entries (">"): of the active streams
 * only (idle pattern streams are re-checked apart: recheck_idle); while
 * entries come, the next read_keys of them in rotation, so no stream
 * starves; once a whole turn found nothing, one blocking read on every
 * active key.  History (own pending, cursor per stream): the first
 * read_keys streams not done yet, active or not.  budget (the kind's
 * capacity, SIZE_MAX: none, else >= 1) caps the keys and COUNT so that
 * the read brings at most budget entries; with more active streams than
 * budget, they are read in rotation even when few (consumer.h:
 * capacity). */
static void plan_read(struct consumer *c, bool history, struct read_plan *rp, size_t budget)
{
	size_t max = (size_t)c->pool->read_keys;
	rp->n = 0;
	rp->block = false;
	rp->block_ms = c->pool->block_ms;
	rp->limit = 0;
	rp->takeover = 0;
	if (history) {
		if (max > budget)
			max = budget;
		rp->idx = util_xcalloc(max ? max : 1, sizeof(*rp->idx));
		for (size_t i = 0; i < c->nstreams && rp->n < max; i++)
			if (c->st[i].history_cursor && !c->st[i].gone)
				rp->idx[rp->n++] = i;
		rp->limit = budget_limit(budget, rp->n);
		return;
	}
	size_t nact = c->nactive;
	rp->nactive = nact;
	/* A whole turn of the rotation found nothing: block, on every active
	 * key, so that an entry on any of them ends the wait (a blocked read
	 * on some keys would hold up entries waiting on the others for
	 * block_ms per slice).  COUNT per key keeps the reply bounded.  Idle
	 * streams wait for their re-check: the block ends by then. */
	if ((nact <= max && nact <= budget) || c->empty_keys >= nact) {
		rp->idx = util_xcalloc(nact ? nact : 1, sizeof(*rp->idx));
		for (size_t i = 0; i < c->nstreams; i++)
			if (c->st[i].active)
				rp->idx[rp->n++] = i;
		rp->block = true;
		rp->limit = budget_limit(budget, rp->n);
		if (nact < c->nstreams) {
			int64_t until = c->next_recheck_ms - util_mono_ms();
			if (until < rp->block_ms)
				rp->block_ms = until < 1 ? 1 : until;
		}
		return;
	}
	/* Entries are coming: the next read_keys active keys of the rotation
	 * (fewer while they have more behind: read_width), without blocking,
	 * so no stream starves. */
	if (c->read_width && c->read_width < max)
		max = c->read_width;
	if (max > budget)
		max = budget;
	rp->idx = util_xcalloc(max ? max : 1, sizeof(*rp->idx));
	size_t j = c->rotate < c->nstreams ? c->rotate : 0;
	for (size_t seen = 0; seen < c->nstreams && rp->n < max; seen++) {
		if (c->st[j].active)
			rp->idx[rp->n++] = j;
		j = (j + 1) % c->nstreams;
	}
	c->rotate = j;
	rp->limit = budget_limit(budget, rp->n);
}

/* COUNT of a read: batch shared among its keys, at least 1 each, at most
 * the plan's limit. */
static long long read_count(const struct consumer *c, const struct read_plan *rp)
{
	long long per_key = c->pool->batch / (long long)(rp->n ? rp->n : 1);
	if (per_key < 1)
		per_key = 1;
	return rp->limit && per_key > rp->limit ? rp->limit : per_key;
}

/* COUNT per key of a history read: read_count, or after an unclean exit
 * the take-over's (takeover_count; 1 when not set). */
static long long history_count(const struct consumer *c, const struct read_plan *rp)
{
	long long per_key = read_count(c, rp);
	if (!c->one_at_a_time)
		return per_key;
	return rp->takeover < 1 ? 1 : rp->takeover < per_key ? rp->takeover : per_key;
}

static void append_read(struct consumer *c, bool history, const struct read_plan *rp)
{
	const struct pool_config *p = c->pool;
	size_t max = 10 + 2 * rp->n;
	const char **argv = malloc(max * sizeof(*argv));
	if (!argv)
		abort();
	char count[24], block[24];
	snprintf(count, sizeof(count), "%lld", history ? history_count(c, rp) : read_count(c, rp));
	snprintf(block, sizeof(block), "%lld", (long long)rp->block_ms);
	size_t n = 0;
	argv[n++] = "XREADGROUP";
	argv[n++] = "GROUP";
	argv[n++] = p->group;
	argv[n++] = consumer_name(c);
	argv[n++] = "COUNT";
	argv[n++] = count;
	if (!history && rp->block) {
		argv[n++] = "BLOCK";
		argv[n++] = block;
	}
	argv[n++] = "STREAMS";
	for (size_t j = 0; j < rp->n; j++)
		argv[n++] = c->st[rp->idx[j]].name;
	for (size_t j = 0; j < rp->n; j++)
		argv[n++] = history ? c->st[rp->idx[j]].history_cursor : ">";
	redisAppendCommandArgv(conn(c)->c, (int)n, argv, NULL);
	free(argv);
}

static bool history_left(struct consumer *c)
{
	for (size_t i = 0; i < c->nstreams; i++)
		if (c->st[i].history_cursor && !c->st[i].gone)
			return true;
	return false;
}

/* Beat in this round trip?  When due, or when the read is about to block
 * for long enough to make the next beat late: idle, at once; after a
 * read with entries (the flow may have just stopped), from half an
 * interval on.  So beats are never more than 1.5 intervals apart, which
 * the master's late flag counts on (master_late_ms). */
static bool beat_now(struct consumer *c, bool blocking)
{
	const struct heartbeat *h = hb(c);
	if (!h->registered)
		return false;
	int64_t elapsed = util_mono_ms() - h->last_beat_mono;
	if (elapsed >= h->interval_ms)
		return true;
	if (!blocking || elapsed + c->pool->block_ms <= h->interval_ms)
		return false;
	return c->idle || 2 * elapsed >= h->interval_ms;
}

/* The kind's free slots (SIZE_MAX without a capacity hook). */
static size_t kind_capacity(struct consumer *c)
{
	return c->kind.capacity ? c->kind.capacity(c->kind.ctx) : SIZE_MAX;
}

/* Wait in poll() on the kind's fds (poll_fds), the host's wake fd and,
 * when rfd >= 0, the Redis fd, calling poll_ready as the kind's fire (or
 * its deadline passes) and applying the host's news as it comes.  Returns
 * true when rfd is readable; false when `until` passed or, without rfd
 * (capacity 0), as soon as there is something else to do: room in the
 * kind, a verdict settled, a stop, a pause. */
static bool kind_poll(struct consumer *c, int rfd, int64_t until)
{
	struct pollfd fds[2 + CONSUMER_POLL_MAX];
	for (;;) {
		int64_t now = util_mono_ms();
		if (now >= until)
			return false;
		nfds_t n = 0;
		int ri = -1, wake = -1;
		if (rfd >= 0)
			ri = (int)n, fds[n++] = (struct pollfd){.fd = rfd, .events = POLLIN};
		if (c->host.wake_fd >= 0)
			wake = (int)n, fds[n++] = (struct pollfd){.fd = c->host.wake_fd, .events = POLLIN};
		nfds_t k0 = n;
		size_t nk = 0;
		int64_t deadline = INT64_MAX;
		if (c->kind.poll_fds) {
			nk = c->kind.poll_fds(c->kind.ctx, fds + k0, CONSUMER_POLL_MAX, &deadline);
			if (nk > CONSUMER_POLL_MAX)
				nk = CONSUMER_POLL_MAX;
		}
		for (size_t i = 0; i < k0 + nk; i++)
			fds[i].revents = 0;
		int64_t wait = until - now;
		if (deadline - now < wait)
			wait = deadline > now ? deadline - now : 0;
		if (poll(fds, k0 + nk, (int)wait) < 0 && errno != EINTR) {
			log_error("%s: poll: %s", __func__, strerror(errno));
			return false;
		}
		bool fired = util_mono_ms() >= deadline;
		for (size_t i = k0; i < k0 + nk && !fired; i++)
			fired = fds[i].revents != 0;
		if (fired && c->kind.poll_ready)
			c->kind.poll_ready(c->kind.ctx, c, fds + k0, nk);
		if (wake >= 0 && fds[wake].revents)
			host_wait(c, 0);
		if (ri >= 0 && fds[ri].revents)
			return true;
		if (rfd < 0 && (c->nsettle || stopping(c) || c->host.paused(c->host.ctx) || kind_capacity(c) > 0))
			return false;
	}
}

/* The replies parsed from here to arena_end are the arena's (no reply may
 * be half parsed: called between replies). */
static void arena_begin(struct consumer *c)
{
	redisContext *rx = conn(c)->c;
	if (!rx || c->arena_ctx)
		return;
	c->saved_fn = rx->reader->fn;
	c->saved_privdata = rx->reader->privdata;
	rx->reader->fn = &arena_fns;
	rx->reader->privdata = &c->arena;
	c->arena_ctx = rx;
}

static void arena_end(struct consumer *c)
{
	redisContext *rx = conn(c)->c;
	if (rx && rx == c->arena_ctx) {
		rx->reader->fn = c->saved_fn;
		rx->reader->privdata = c->saved_privdata;
	}
	c->arena_ctx = NULL; /* or dropped: its reader went with it */
}

/* The reads' replies of the round trip (out[], claims[]) are no longer
 * used: instead of freeReplyObject. */
static void reads_done(struct consumer *c)
{
	arena_reset(&c->arena);
}

/* Send what hiredis has buffered (a blocking context: a write waits at
 * most command_timeout_ms).  Returns 0, or -ENOTCONN (dropped). */
static int flush_out(struct consumer *c)
{
	struct rconn *rc = conn(c);
	int done = 0;
	while (rc->c && !done)
		if (redisBufferWrite(rc->c, &done) != REDIS_OK)
			rconn_drop(rc, rc->c->errstr);
	return rc->c ? 0 : -ENOTCONN;
}

/* The reply of a blocking read sent at sent_ms, while the kind's fds are
 * serviced (kind_poll): read only when the Redis fd is readable, or
 * already buffered by an earlier reply of the pipeline.  Past
 * command_timeout_ms the connection is dropped, as a blocking read's
 * socket timeout would.  NULL: dropped. */
static redisReply *poll_reply(struct consumer *c, int64_t sent_ms)
{
	struct rconn *rc = conn(c);
	int64_t until = sent_ms + rc->cfg->redis.command_timeout_ms;
	for (;;) {
		void *r = NULL;
		if (!rc->c)
			return NULL;
		if (redisReaderGetReply(rc->c->reader, &r) != REDIS_OK) {
			rconn_drop(rc, rc->c->reader->errstr[0] ? rc->c->reader->errstr : "protocol error");
			return NULL;
		}
		if (r)
			return r;
		if (!kind_poll(c, rc->c->fd, until)) {
			if (util_mono_ms() >= until) {
				rconn_drop(rc, "XREADGROUP reply timed out");
				return NULL;
			}
			continue; /* poll failed: try again (until bounds it) */
		}
		if (redisBufferRead(rc->c) != REDIS_OK) {
			rconn_drop(rc, rc->c->errstr);
			return NULL;
		}
	}
}

/* One pipelined round trip: queued acks, the heartbeat when due, and
 * nreads reads (rp[0..nreads-1]).  Their replies go to out[]; returns how
 * many came (fewer than nreads: the connection dropped on the way).  A
 * kind with fds of its own (poll_fds) is serviced while a blocking read
 * waits: the pipeline is sent, the acks' and heartbeat's replies read
 * (Redis answers them before it blocks), then the read's reply waited for
 * in poll() (poll_reply). */
/* The replies of the kind's commands of the round trip (rt_append). */
static void kind_rt_replies(struct consumer *c, size_t n)
{
	redisReply *x[CONSUMER_RT_MAX];
	size_t got = 0;
	while (got < n && (x[got] = rconn_get_reply(conn(c))))
		got++;
	if (got == n)
		c->kind.rt_replies(c->kind.ctx, x, n);
	for (size_t i = 0; i < got; i++)
		freeReplyObject(x[i]);
}

static size_t round_trip_reads(struct consumer *c, bool history, const struct read_plan *rp, size_t nreads,
			       redisReply **out, redisReply **claims)
{
	c->rt_us = 0;
	if (!conn(c)->c)
		return 0; /* dropped by an earlier command of this round */
	bool polled = c->kind.poll_fds && !history && nreads == 1 && rp[0].block;
	int64_t t0 = util_mono_us();
	int nacks = append_acks(c);
	if (nacks < 0)
		return 0;
	int64_t acks_us = util_mono_us() - t0; /* formatting and sending them (HB_SPLIT_ACK) */
	int nbeat = beat_now(c, !history && rp->block) ? heartbeat_append(hb(c), conn(c)) : 0;
	for (size_t k = 0; k < nreads; k++)
		append_read(c, history, &rp[k]);
	size_t nclaims = history && claims && nreads == 1 ? rp[0].n : 0;
	if (nclaims) {
		char count[24], start[ID_MAX + 1];
		snprintf(count, sizeof(count), "%lld", history_count(c, &rp[0]));
		for (size_t j = 0; j < nclaims; j++) {
			const struct cstream *cs = &c->st[rp[0].idx[j]];
			snprintf(start, sizeof(start), strcmp(cs->history_cursor, "0") == 0 ? "-" : "(%s",
				 cs->history_cursor);
			const char *argv[] = {"EVAL", claim_range_script, "1", cs->name, c->pool->group,
					      consumer_name(c), start, count};
			redisAppendCommandArgv(conn(c)->c, (int)ARRAY_SIZE(argv), argv, NULL);
		}
	}
	int nextra = !history && c->kind.rt_append ? c->kind.rt_append(c->kind.ctx, conn(c)->c) : 0;
	if (nextra > CONSUMER_RT_MAX)
		nextra = CONSUMER_RT_MAX; /* the kind's bug; its replies are read anyway */
	int64_t sent_ms = util_mono_ms();
	if (polled && flush_out(c) < 0)
		return 0;
	int64_t t1 = util_mono_us();
	if (nacks && read_ack_replies(c) < 0)
		return 0;
	if (nacks)
		hb(c)->split_us[HB_SPLIT_ACK] += (uint64_t)(acks_us + (util_mono_us() - t1));
	int64_t t2 = util_mono_us();
	if (nbeat) {
		int r = heartbeat_replies(hb(c), conn(c), nbeat);
		if (r == -EPERM)
			ask_stop(c); /* someone else owns our name: stop cleanly */
		else if (r < 0)
			return 0; /* -ENOTCONN: dropped and logged; the next round reconnects */
		hb(c)->redis_rtt_us = util_mono_us() - t0;
	}
	size_t got = 0;
	arena_begin(c); /* the reads' replies: reads_done once handled */
	if (polled)
		got = (out[0] = poll_reply(c, sent_ms)) != NULL;
	else
		while (got < nreads && (out[got] = rconn_get_reply(conn(c))))
			got++;
	for (size_t j = 0; got == nreads && j < nclaims; j++) {
		if (!(claims[j] = rconn_get_reply(conn(c)))) {
			got = 0;
			reads_done(c);
		}
	}
	arena_end(c);
	if (nextra && got == nreads)
		kind_rt_replies(c, (size_t)nextra);
	/* Appending the reads, the beat's replies and the reads': split_redis
	 * decides once the entries are counted. */
	c->rt_us = (t1 - t0 - acks_us) + (util_mono_us() - t2);
	if (got == nreads)
		check_shortfalls(c);
	return got;
}

/* The kind has no room (capacity 0): read nothing, but send the queued
 * acks, beat, and service the kind's fds until there is room, something
 * settled, news, the next beat or block_ms.  History, claim sweeps and
 * idle re-checks wait for room too (they would bring entries). */
static int service_wait(struct consumer *c)
{
	flush_acks(c);
	heartbeat_beat_if_due(hb(c), conn(c));
	int64_t now = util_mono_ms(), wait = c->pool->block_ms;
	int64_t next = heartbeat_next_ms(hb(c), now);
	if (next < wait)
		wait = next;
	kind_poll(c, -1, now + (wait > 0 ? wait : 0));
	heartbeat_beat_if_due(hb(c), conn(c));
	return 0;
}

/* round_trip_reads of one read: its reply, or NULL (connection dropped). */
static redisReply *round_trip(struct consumer *c, bool history, const struct read_plan *rp, redisReply **claims)
{
	redisReply *r = NULL;
	return round_trip_reads(c, history, rp, 1, &r, claims) ? r : NULL;
}

/* No active stream to read (a pool of patterns only, none discovered yet,
 * or all idle): send what is queued, beat, and wait for news (a new or
 * woken stream) or the next re-check of the idle ones. */
static int wait_for_streams(struct consumer *c)
{
	flush_acks(c);
	int64_t now = util_mono_ms(), wait = c->pool->block_ms;
	int64_t next = heartbeat_next_ms(hb(c), now);
	if (next < wait)
		wait = next;
	if (c->nstreams && c->next_recheck_ms - now < wait)
		wait = c->next_recheck_ms - now;
	host_wait(c, wait < 0 ? 0 : wait);
	heartbeat_beat_if_due(hb(c), conn(c));
	c->idle = true;
	if (c->kind.idle)
		c->kind.idle(c->kind.ctx, c);
	return 0;
}

/* Replies of a pipelined XREADGROUP series; NOGROUP or UNBLOCKED
 * re-creates the groups (a pattern key gone is dropped there). */
static bool read_error(struct consumer *c, redisReply *r, const char *what)
{
	if (r->type != REDIS_REPLY_ERROR)
		return false;
	if (rconn_is_error(r, "NOGROUP") || rconn_is_error(r, "UNBLOCKED") ||
	    (rconn_is_error(r, "WRONGTYPE") && has_patterns(c)))
		group_lost(c, r->str);
	else
		log_error("XREADGROUP (%s): %s", what, r->str);
	return true;
}

/* After an unclean exit (consumer.h, "Crash recovery"): how many own
 * pending entries the next history read takes, per stream.  ARGV: group,
 * start ("-" or "(CURSOR"), count, consumer.  Returns {k, n}: of the n
 * (<= count) own entries pending after the cursor, the first k are on
 * their first redelivery (delivered once: the predecessor read them with
 * ">" and died). */
static const char takeover_script[] =
	"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], '+', ARGV[3], ARGV[4]) "
	"local k = 0 "
	"for _, e in ipairs(p) do "
	"  if e[4] > 1 then break end "
	"  k = k + 1 "
	"end "
	"return {k, #p}";

/* The COUNT of the next history read after an unclean exit: a full batch
 * while the entries after each cursor are on their first redelivery (this
 * read is their second delivery); one at a time from the first entry
 * delivered more than once (a predecessor crashed while it held it after
 * taking it over: a poison entry among them is found alone now), and
 * always one at a time when max_deliveries < 3 (a poison's batch-mates
 * could not afford the batch's delivery and then one alone).  The counts
 * are looked at without delivering anything (takeover_script, pipelined
 * over the plan's keys); COUNT is per key, so the smallest of the keys
 * with entries wins.  A key whose whole rest is taken by this read has
 * its history ended by it (history_ends: no empty read after it).
 * Returns the COUNT (>= 1), or -ENOTCONN. */
static long long takeover_count(struct consumer *c, const struct read_plan *rp)
{
	long long per_key = read_count(c, rp), best = per_key;
	for (size_t j = 0; j < rp->n; j++)
		c->st[rp->idx[j]].history_ends = false;
	if (c->pool->max_deliveries < 3 || per_key <= 1)
		return 1;
	struct rconn *rc = conn(c);
	if (!rc->c)
		return -ENOTCONN;
	int64_t t0 = util_mono_us();
	char start[ID_MAX + 1], count[24];
	snprintf(count, sizeof(count), "%lld", per_key + 1);
	for (size_t j = 0; j < rp->n; j++) {
		const struct cstream *cs = &c->st[rp->idx[j]];
		snprintf(start, sizeof(start), strcmp(cs->history_cursor, "0") == 0 ? "-" : "(%s", cs->history_cursor);
		const char *argv[] = {"EVAL", takeover_script, "1", cs->name, c->pool->group, start, count,
				      consumer_name(c)};
		redisAppendCommandArgv(rc->c, (int)ARRAY_SIZE(argv), argv, NULL);
	}
	long long *k = util_xcalloc(rp->n, sizeof(*k)), *n = util_xcalloc(rp->n, sizeof(*n));
	bool any = false;
	for (size_t j = 0; j < rp->n; j++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r) {
			free(k);
			free(n);
			return -ENOTCONN;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
		    r->element[1]->type != REDIS_REPLY_INTEGER) {
			if (r->type == REDIS_REPLY_ERROR)
				log_debug("take-over count of %s: %s", c->st[rp->idx[j]].name, r->str);
			k[j] = 0; /* unknown (NOGROUP, scripting off): the careful way */
			n[j] = -1;
		} else {
			k[j] = r->element[0]->integer;
			n[j] = r->element[1]->integer;
		}
		log_debug("take-over of %s after %s: %lld of %lld own pending entries on their first redelivery",
			  c->st[rp->idx[j]].name, c->st[rp->idx[j]].history_cursor, k[j], n[j]);
		if (n[j] != 0 && k[j] < best)
			best = k[j];
		any |= n[j] != 0;
		freeReplyObject(r);
	}
	split_add(c, HB_SPLIT_REDIS, t0);
	if (!any)
		best = per_key; /* nothing pending after the cursors: the read ends the history */
	if (best < 1)
		best = 1;
	for (size_t j = 0; j < rp->n; j++)
		c->st[rp->idx[j]].history_ends = n[j] >= 0 && n[j] <= best;
	free(k);
	free(n);
	return best;
}

static int read_history(struct consumer *c)
{
	struct read_plan rp;
	plan_read(c, true, &rp, c->budget);
	if (rp.n == 0) {
		free(rp.idx);
		c->takeover_done = true;
		return 0;
	}
	if (c->one_at_a_time) {
		long long n = takeover_count(c, &rp);
		if (n < 0) {
			free(rp.idx);
			return 0;
		}
		rp.takeover = n;
		log_debug("taking over own pending entries after an unclean exit: %lld per key", n);
	}
	/* Each key's owner check (claim_range_script) rides behind the read. */
	redisReply **claims = util_xcalloc(rp.n, sizeof(*claims));
	redisReply *r = round_trip(c, true, &rp, claims);
	hb(c)->split_us[HB_SPLIT_REDIS] += (uint64_t)c->rt_us;
	int ret = 0;
	size_t got = 0;
	if (r && !read_error(c, r, "pending") && r->type == REDIS_REPLY_ARRAY)
		ret = process_history_reply(c, r, &rp, claims, &got);
	reads_done(c);
	free(claims);
	free(rp.idx);
	if (!history_left(c)) {
		c->takeover_done = true;
		log_debug("own pending entries taken over");
	}
	return ret < 0 ? 0 : ret;
}

/* Reads of new entries pipelined in one round trip at most (plan_fill). */
#define FILL_READS_MAX 8

/* Entries expected (x256) of one key in a read of the rotation (COUNT
 * count): by what keys like it gave lately, a key whose last read was
 * full (COUNT entries: likely more behind; a new stream too) or short
 * (drained by then). */
static long long key_yield(const struct consumer *c, const struct cstream *s, long long count)
{
	long long y = c->yield_x256[s->short_read];
	if (s->short_read)
		return y < 0 ? 0 : y;
	return y < 0 ? count * 256 : y * count;
}

/* The reads after rp[0], a non-blocking read of the rotation, in the same
 * round trip: the next keys of the rotation, read_width each, until the
 * keys' expected entries make two thirds of a batch.  Streams drained to
 * a few entries each, or mostly empty, give a read far fewer than batch
 * entries, and every round trip is a Redis round trip and a transaction
 * of the kind of its own.  At most FILL_READS_MAX reads (so at most that
 * many times batch entries), no key twice.  Returns the reads, rp[0]
 * included. */
static size_t plan_fill(struct consumer *c, struct read_plan *rp)
{
	size_t cap = FILL_READS_MAX, n = 0;
	if (cap > rp[0].nactive / rp[0].n)
		cap = rp[0].nactive / rp[0].n;
	long long expected = 0, enough = c->pool->batch * 256 * 2 / 3;
	size_t budget = c->budget;
	for (;;) {
		long long count = read_count(c, &rp[n]);
		for (size_t j = 0; j < rp[n].n; j++)
			expected += key_yield(c, &c->st[rp[n].idx[j]], count);
		if (budget != SIZE_MAX) {
			size_t most = (size_t)count * rp[n].n;
			budget = budget > most ? budget - most : 0;
		}
		if (++n >= cap || expected >= enough || budget == 0)
			break;
		plan_read(c, false, &rp[n], budget);
		if (rp[n].block || rp[n].n == 0) {
			free(rp[n].idx);
			break;
		}
	}
	return n;
}

/* After a round trip of new entries (got of them; process_new_replies
 * noted each key's): each key read in the rotation is full or short for
 * the next plan, the yield of each kind is smoothed in, and the keys per
 * read adapt.  Streams with a backlog (most keys full, a batch filled)
 * are read by fewer keys at a time with a larger COUNT: each is drained
 * in fewer visits (one XACK and one pass of the kind over it, instead of
 * one every turn of a rotation over thousands of streams); a round trip
 * that did not fill a batch widens them again, up to read_keys.  A
 * blocking read starts over at read_keys. */
static void fill_observe(struct consumer *c, const struct read_plan *rp, size_t n, size_t got_all)
{
	size_t max = (size_t)c->pool->read_keys;
	if (rp[0].block) {
		c->read_width = max;
		c->yield_x256[0] = c->yield_x256[1] = -1;
		return;
	}
	size_t got[2] = {0, 0}, keys[2] = {0, 0}, full = 0, nkeys = 0;
	for (size_t k = 0; k < n; k++) {
		long long count = read_count(c, &rp[k]);
		for (size_t j = 0; j < rp[k].n; j++) {
			struct cstream *s = &c->st[rp[k].idx[j]];
			got[s->short_read] += s->short_read ? s->got : s->got * 256 / (size_t)count;
			keys[s->short_read]++;
			s->short_read = (long long)s->got < count;
			full += !s->short_read;
			nkeys++;
		}
	}
	for (int i = 0; i < 2; i++) {
		if (!keys[i])
			continue;
		long long y = (long long)(got[i] * (i ? 256 : 1) / keys[i]), *avg = &c->yield_x256[i];
		*avg = *avg < 0 ? y : (*avg + y + 1) / 2;
	}
	if (got_all * 3 < (size_t)c->pool->batch * 2)
		c->read_width = c->read_width * 2 < max ? c->read_width * 2 : max;
	else if (full * 4 >= nkeys * 3 && c->read_width > 1)
		c->read_width /= 2;
}

/* New entries: one read (blocking on every active key, or the next
 * read_keys keys of the rotation), or several of the rotation in one
 * round trip (plan_fill); whatever they bring is one batch.  A read that
 * failed (the first error is handled) does not keep the others' entries
 * from being processed. */
static int read_new(struct consumer *c)
{
	struct read_plan rp[FILL_READS_MAX];
	redisReply *r[FILL_READS_MAX];
	plan_read(c, false, &rp[0], c->budget);
	if (rp[0].n == 0) {
		free(rp[0].idx);
		return wait_for_streams(c);
	}
	size_t nreads = rp[0].block ? 1 : plan_fill(c, rp);
	size_t nr = round_trip_reads(c, false, rp, nreads, r, NULL), keys = 0, got = 0;
	bool failed = false;
	for (size_t k = 0; k < nr; k++) {
		keys += rp[k].n;
		for (size_t j = 0; j < rp[k].n; j++)
			c->st[rp[k].idx[j]].got = 0;
		if (!failed && read_error(c, r[k], "new"))
			failed = true;
	}
	int ret = nr ? process_new_replies(c, r, rp, nr, &got) : 0;
	/* A blocking read waited for entries unless the flow was on and it
	 * brought some (split_add). */
	if (nr && (!rp[0].block || (got && c->flow)))
		hb(c)->split_us[HB_SPLIT_REDIS] += (uint64_t)c->rt_us;
	c->flow = got > 0;
	if (nr && !failed) {
		c->heal_streak = 0;
		c->empty_keys = got == 0 ? c->empty_keys + keys : 0;
		fill_observe(c, rp, nr, got);
		/* idle: a whole turn of the rotation found nothing. */
		c->idle = got == 0 && c->empty_keys >= rp[0].nactive;
		if (c->idle && c->kind.idle)
			c->kind.idle(c->kind.ctx, c);
	}
	for (size_t k = 0; k < nreads; k++)
		free(rp[k].idx);
	reads_done(c);
	return ret < 0 ? 0 : ret;
}

/* Idle pattern streams to re-check in one round (recheck_idle): the
 * pool's idle_check_rate a second, shared by its workers. */
static size_t recheck_keys(const struct consumer *c)
{
	int64_t workers = c->pool->count > 0 ? c->pool->count : 1;
	int64_t k = (c->pool->idle_check_rate * RECHECK_TICK_MS / 1000 + workers - 1) / workers;
	return k < 1 ? 1 : (size_t)k;
}

enum pick { PICK_ACTIVE, PICK_IDLE, PICK_IDLE_OR_PARKED };

static bool picked(const struct cstream *s, enum pick what)
{
	switch (what) {
	case PICK_ACTIVE:
		return s->active;
	case PICK_IDLE:
		return !s->active && !s->gone;
	case PICK_IDLE_OR_PARKED:
		return !s->active;
	}
	return false;
}

/* Up to max indices of the streams `what` picks, from *rotate on,
 * wrapping; *rotate moves past the last one looked at. */
static size_t pick_streams(struct consumer *c, size_t *rotate, size_t max, enum pick what, size_t *out)
{
	size_t n = 0, j = *rotate < c->nstreams ? *rotate : 0;
	for (size_t seen = 0; seen < c->nstreams && n < max; seen++) {
		if (picked(&c->st[j], what))
			out[n++] = j;
		j = (j + 1) % c->nstreams;
	}
	*rotate = j;
	return n;
}

/* The parked streams among idx[0..n) (deleted ones: see ensure_groups):
 * a key that exists again (deleted and written anew before discovery
 * noticed) gets the group, without MKSTREAM, and is read again.  Returns
 * how many of idx are left, the idle ones, in order. */
static size_t probe_parked(struct consumer *c, size_t *idx, size_t n)
{
	size_t kept = 0;
	for (size_t k = 0; k < n; k++) {
		struct cstream *s = &c->st[idx[k]];
		if (!s->gone) {
			idx[kept++] = idx[k];
			continue;
		}
		redisReply *r = conn(c)->c ? rconn_command(conn(c), "XGROUP CREATE %s %s 0", s->name, c->pool->group)
					   : NULL;
		if (r && (r->type != REDIS_REPLY_ERROR || rconn_is_error(r, "BUSYGROUP"))) {
			log_info("pattern stream %s exists again: read again", s->name);
			s->gone = false;
			stream_touch(s, util_mono_ms());
		}
		if (r)
			freeReplyObject(r);
	}
	return kept;
}

/* A new entry in an idle stream (a late tool.output, a retried XADD) is
 * read here: every RECHECK_TICK_MS, the next recheck_keys idle streams of
 * a rotation, in non-blocking XREADGROUPs of at most read_keys keys each,
 * pipelined in one round trip.  A stream with entries is active again.
 * So a late entry waits at most about idle / idle_check_rate seconds plus
 * a tick (with keyspace notifications on, the monitor wakes it sooner). */
static int recheck_idle(struct consumer *c)
{
	c->next_recheck_ms = util_mono_ms() + RECHECK_TICK_MS;
	size_t want = recheck_keys(c), max = (size_t)c->pool->read_keys;
	if (want > c->budget)
		want = c->budget; /* the kind's capacity: a key per free slot at most */
	size_t *idx = util_xcalloc(want, sizeof(*idx));
	size_t n = pick_streams(c, &c->idle_rotate, want, PICK_IDLE_OR_PARKED, idx);
	n = probe_parked(c, idx, n);
	long long limit = budget_limit(c->budget, n);
	size_t nreads = (n + max - 1) / max;
	redisReply **replies = util_xcalloc(nreads ? nreads : 1, sizeof(*replies));
	struct read_plan *plans = util_xcalloc(nreads ? nreads : 1, sizeof(*plans));
	for (size_t k = 0; k < nreads && conn(c)->c; k++) {
		plans[k].idx = idx + k * max;
		plans[k].n = n - k * max < max ? n - k * max : max;
		plans[k].limit = limit;
		append_read(c, false, &plans[k]);
	}
	int64_t t0 = util_mono_us();
	size_t got_replies = 0;
	for (; got_replies < nreads && conn(c)->c; got_replies++)
		if (!(replies[got_replies] = rconn_get_reply(conn(c))))
			break;
	split_add(c, HB_SPLIT_REDIS, t0);
	/* Every reply is in hand before any batch runs commands of its own. */
	int ret = 0;
	for (size_t k = 0; k < got_replies && ret == 0 && replies[k]; k++) {
		size_t got;
		if (!read_error(c, replies[k], "idle re-check"))
			ret = process_read_reply(c, replies[k], &plans[k], false, &got);
	}
	for (size_t k = 0; k < nreads; k++)
		if (replies[k])
			freeReplyObject(replies[k]);
	free(replies);
	free(plans);
	free(idx);
	return ret < 0 ? 0 : ret;
}

static bool recheck_due(const struct consumer *c, int64_t now)
{
	return now >= c->next_recheck_ms && c->nactive < c->nstreams;
}

/* XAUTOCLAIM sweep: at most one batch per stream, cursor kept between
 * sweeps; Redis 7's third element lists deleted ids (already removed
 * from the PEL), which are only logged.  Every active stream, and the
 * next SWEEP_IDLE_MAX idle ones of a rotation: a crashed peer's entries
 * in an idle stream wait a few sweeps longer, but a set of 10,000 idle
 * streams costs no burst of 10,000 commands (its own slot's successor
 * takes its pending entries over at once anyway). */
/* Before a takeover claim (consumer_claim_now): has an entry pending on
 * the stream been delivered more than once (it was in hand at a crash
 * already, maybe the poison that caused it)?  Then the takeover goes one
 * entry at a time, each acked before the next is claimed, so the poison
 * is found alone and no innocent entry of its batch collects a delivery
 * per crash (SPEC §4 step 3, as for the own pending entries); otherwise
 * the whole batch at once (issue 14: recovery in milliseconds).  XPENDING
 * reads counts without claiming anything. */
static bool redelivered_pending(struct consumer *c, const struct cstream *cs)
{
	redisReply *r = rconn_command(conn(c), "XPENDING %s %s - + %lld", cs->name, c->pool->group,
				      (long long)c->pool->batch);
	bool again = false;
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && !again; i++) {
		const redisReply *e = r->element[i];
		again = e->type == REDIS_REPLY_ARRAY && e->elements == 4 &&
			e->element[3]->type == REDIS_REPLY_INTEGER && e->element[3]->integer > 1;
	}
	if (r)
		freeReplyObject(r);
	return again;
}

static int sweep_claims(struct consumer *c)
{
	struct rconn *rc = conn(c);
	if (!rc->c)
		return 0;
	char idle[24], count[24];
	snprintf(idle, sizeof(idle), "%lld", c->claim_all ? 0LL : (long long)c->pool->claim_idle_ms);
	snprintf(count, sizeof(count), "%lld", (long long)c->pool->batch);
	c->next_claim_ms = util_mono_ms() + c->pool->claim_idle_ms / 2;
	bool wrapped = true; /* every cursor back at 0-0: a claim_all sweep is over */
	size_t *idx = util_xcalloc(c->nstreams ? c->nstreams : 1, sizeof(*idx)), at = 0;
	size_t n = pick_streams(c, &at, c->nstreams, PICK_ACTIVE, idx);
	n += pick_streams(c, &c->claim_rotate, SWEEP_IDLE_MAX, PICK_IDLE, idx + n);
	if (c->budget != SIZE_MAX) {
		/* The kind's capacity: COUNT shared among the streams, a
		 * stream per free slot at most, from a rotation of the ones
		 * picked so that every stream gets its turn. */
		size_t keep = n < c->budget ? n : c->budget, from = n ? c->sweep_rotate % n : 0;
		size_t *kept = util_xcalloc(keep ? keep : 1, sizeof(*kept));
		for (size_t k = 0; k < keep; k++)
			kept[k] = idx[(from + k) % n];
		c->sweep_rotate = from + keep;
		memcpy(idx, kept, keep * sizeof(*idx));
		free(kept);
		n = keep;
		long long limit = budget_limit(c->budget, n);
		if (limit < c->pool->batch)
			snprintf(count, sizeof(count), "%lld", limit);
	}
	bool *one = util_xcalloc(n ? n : 1, sizeof(*one));
	if (c->claim_all) {
		/* A take-over may go one entry at a time (redelivered_pending):
		 * the last one's ack first, then the look at the counts. */
		flush_acks(c);
		for (size_t k = 0; k < n && rc->c; k++)
			one[k] = redelivered_pending(c, &c->st[idx[k]]);
	}
	/* The queued acks go first, in the same pipeline: an entry handled
	 * and not acked yet (the last of a take-over) is not ours to claim
	 * again, least of all with min-idle 0 (consumer_claim_now), which
	 * would count it delivered once more. */
	int64_t ta = util_mono_us();
	int nacks = rc->c ? append_acks(c) : -1;
	if (nacks < 0) {
		free(one);
		free(idx);
		return 0;
	}
	int64_t acks_us = util_mono_us() - ta;
	for (size_t k = 0; k < n; k++) {
		const struct cstream *cs = &c->st[idx[k]];
		redisAppendCommand(rc->c, "XAUTOCLAIM %s %s %s %s %s COUNT %s", cs->name, c->pool->group,
				   consumer_name(c), idle, cs->claim_cursor, one[k] ? "1" : count);
	}
	free(one);
	if (!rc->c) {
		free(idx);
		return 0;
	}
	redisReply **replies = util_xcalloc(n ? n : 1, sizeof(*replies));
	int ret = 0;
	ta = util_mono_us();
	if (nacks && read_ack_replies(c) < 0)
		ret = -ENOTCONN, n = 0;
	if (nacks)
		hb(c)->split_us[HB_SPLIT_ACK] += (uint64_t)(acks_us + (util_mono_us() - ta));
	int64_t t0 = util_mono_us();
	for (size_t i = 0; i < n; i++) {
		replies[i] = rconn_get_reply(rc);
		if (!replies[i]) {
			ret = -ENOTCONN;
			break;
		}
	}
	split_add(c, HB_SPLIT_REDIS, t0);
	if (ret == 0 && nacks)
		check_shortfalls(c); /* every reply of the pipeline is in hand */
	for (size_t i = 0; ret == 0 && i < n; i++) {
		redisReply *r = replies[i];
		struct cstream *cs = &c->st[idx[i]];
		if (rconn_is_error(r, "NOGROUP")) {
			group_lost(c, r->str);
			continue;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
			continue;
		free(cs->claim_cursor);
		cs->claim_cursor = util_xstrdup(r->element[0]->str ? r->element[0]->str : "0-0");
		wrapped = wrapped && strcmp(cs->claim_cursor, "0-0") == 0;
		if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY && r->element[2]->elements)
			log_warn("XAUTOCLAIM %s: %zu claimed ids no longer exist (deleted)", cs->name,
				 r->element[2]->elements);
		redisReply *entries = r->element[1];
		if (entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
			continue;
		log_info("claimed %zu idle entries of %s", entries->elements, cs->name);
		struct consumer_batch b = {.history = true};
		batch_reserve(c, &b, entries->elements, count_fields(entries));
		stream_touch(cs, util_mono_ms());
		build_batch(c, entries, idx[i], &b);
		if (b.n)
			ret = process_batch(c, &b);
	}
	for (size_t i = 0; i < n; i++)
		if (replies[i])
			freeReplyObject(replies[i]);
	free(replies);
	free(idx);
	if (c->claim_all && ret == 0 && wrapped && c->claim_all_sweeps > 0)
		c->claim_all_sweeps--;
	if (c->claim_all && c->claim_all_sweeps == 0)
		c->claim_all = false;
	else if (c->claim_all)
		c->next_claim_ms = 0; /* the next round goes on with it */
	return ret < 0 ? 0 : ret;
}

/* A new connection may reach a Redis restored from an older RDB, where
 * entries we had acked are pending to us again: read our own history at
 * once, as at start, rather than leave them to a claim_idle_ms sweep. */
static void history_after_reconnect(struct consumer *c)
{
	if (conn(c)->connects == c->connects)
		return;
	bool first = c->connects == 0; /* at start the history is read anyway */
	c->connects = conn(c)->connects;
	if (first)
		return;
	for (size_t i = 0; i < c->nstreams; i++) {
		free(c->st[i].history_cursor);
		c->st[i].history_cursor = util_xstrdup("0");
	}
	c->takeover_done = false;
	log_info("new redis connection: reading own pending entries first");
}

/* ---------- verdicts settled by the kind ---------- */

int consumer_settle(struct consumer *c, const char *stream, const char *id, enum consumer_verdict v,
		    const char *reason)
{
	if (v != CE_ACK && v != CE_DEAD && v != CE_DROP) {
		log_error("%s: verdict %d cannot settle an entry", __func__, (int)v);
		return -EINVAL;
	}
	if (!stream || !id || strlen(id) >= ID_MAX || stream_index(c, stream) == SIZE_MAX) {
		log_error("%s: %s %s is not an entry of this consumer's streams", __func__, stream ? stream : "(null)",
			  id ? id : "(null)");
		return -EINVAL;
	}
	c->settle = grown(c->settle, &c->settle_cap, c->nsettle + 1, sizeof(*c->settle));
	struct settled *st = &c->settle[c->nsettle++];
	st->stream = util_xstrdup(stream);
	snprintf(st->id, sizeof(st->id), "%s", id);
	st->verdict = v;
	snprintf(st->reason, sizeof(st->reason), "%s", reason ? reason : "unknown");
	return 0;
}

size_t consumer_settle_pending(const struct consumer *c)
{
	return c->nsettle;
}

/* A settled dead letter: its fields read back (XRANGE) and its delivery
 * count taken with the owner check (claim_own).  An entry no longer ours
 * is left to its owner; one deleted meanwhile is acked as lost.  Returns
 * 0, -ENOTCONN (stays queued) or dead_letter's -EPROTO (logged; the entry
 * stays pending, and a claim sweep hands it over again later). */
static int settle_dead(struct consumer *c, size_t si, const struct settled *st)
{
	const char *ids[1] = {st->id};
	bool owned = false;
	long long deliveries = 1;
	int r = claim_own(c, conn(c), st->stream, ids, 1, &owned, &deliveries);
	if (r < 0)
		return r;
	if (!owned) {
		log_kv(LOG_WARN, KV("stream", st->stream, "id", st->id),
		       "settled dead letter is no longer ours (claimed by another consumer): left to it");
		return 0;
	}
	redisReply *x = rconn_command(conn(c), "XRANGE %s %s %s", st->stream, st->id, st->id);
	if (!x)
		return -ENOTCONN;
	int ret = 0;
	if (x->type != REDIS_REPLY_ARRAY) {
		log_error("%s: XRANGE %s %s: %s", __func__, st->stream, st->id,
			  x->type == REDIS_REPLY_ERROR ? x->str : "not an array");
		ret = -EPROTO;
	} else if (x->elements == 0) {
		log_kv(LOG_WARN, KV("stream", st->stream, "id", st->id), "pending entry was deleted: acked as lost");
		hb(c)->lost++;
		idlist_push(&c->st[si].acks, st->id);
	} else {
		struct consumer_batch b = {.history = true};
		batch_reserve(c, &b, x->elements, count_fields(x));
		build_batch(c, x, si, &b);
		if (b.n) {
			b.v[0].deliveries = deliveries;
			b.v[0].verdict = CE_DEAD;
			b.v[0].reason = st->reason;
			ret = dead_letter(c, si, &b.v[0]);
		}
	}
	freeReplyObject(x);
	return ret;
}

/* Apply consumer_settle's queue, in order, before anything else of the
 * step (before stream changes: a stream removed meanwhile still gets its
 * acks, sent when it leaves).  Acks join the stream's queue (sent with the
 * next pipeline); dead letters are written now.  A dropped connection
 * stops it: the rest stays queued for the next step. */
static void apply_settled(struct consumer *c)
{
	if (!c->nsettle)
		return;
	size_t k = 0;
	for (; k < c->nsettle && conn(c)->c; k++) {
		struct settled *st = &c->settle[k];
		size_t si = stream_index(c, st->stream);
		if (si == SIZE_MAX) {
			log_kv(LOG_WARN, KV("stream", st->stream, "id", st->id),
			       "settled entry's stream left the set: left pending");
		} else if (st->verdict == CE_ACK) {
			idlist_push(&c->st[si].acks, st->id);
			hb(c)->processed++;
		} else if (st->verdict == CE_DEAD && settle_dead(c, si, st) == -ENOTCONN) {
			break;
		}
		/* CE_DROP: left pending, for a successor. */
	}
	for (size_t i = 0; i < k; i++)
		free(c->settle[i].stream);
	memmove(c->settle, c->settle + k, (c->nsettle - k) * sizeof(*c->settle));
	c->nsettle -= k;
}

int consumer_step(struct consumer *c)
{
	/* pause/resume, log level and stream changes arrive between reads. */
	host_wait(c, 0);
	apply_settled(c);
	apply_stream_ops(c);
	history_after_reconnect(c);
	if (!c->groups_ready) {
		if (ensure_groups(c) < 0) {
			if (conn(c)->c)
				host_wait(c, 1000);
			return 0;
		}
	}
	if (!c->started) {
		/* After a crash the take-over comes first (issue 14): the
		 * warning waits for it (below). */
		if (!c->one_at_a_time)
			warn_redis_config(c);
		/* Its INFO or CONFIG GET may have dropped the connection: the
		 * next round reconnects before anything is appended to it. */
		if (!conn(c)->c)
			return 0;
		if (c->kind.start) {
			int r = c->kind.start(c->kind.ctx, c);
			if (r < 0)
				return r == -EINVAL ? SV_EX_CONFIG : SV_EX_TRANSIENT;
		}
		c->started = true;
	}
	if (c->host.paused(c->host.ctx)) {
		hb(c)->status = HB_PAUSED;
		flush_acks(c);
		host_wait(c, heartbeat_next_ms(hb(c), util_mono_ms()));
		heartbeat_beat_if_due(hb(c), conn(c));
		return 0;
	}
	if (hb(c)->status == HB_PAUSED || hb(c)->status == HB_STARTING)
		hb(c)->status = HB_IDLE;
	/* What this round may bring (the kind's free slots); none: service
	 * the kind only. */
	c->budget = kind_capacity(c);
	if (c->budget == 0)
		return service_wait(c);
	if (!c->takeover_done)
		return read_history(c);
	if (!c->warned_redis && c->host.warn_redis_config) {
		warn_redis_config(c);
		if (!conn(c)->c)
			return 0;
	}
	int64_t now = util_mono_ms();
	demote_idle(c, now);
	hb(c)->streams = (int64_t)c->nstreams;
	c->nactive = consumer_active_count(c);
	hb(c)->active = (int64_t)c->nactive;
	if (now >= c->next_claim_ms)
		return sweep_claims(c);
	if (recheck_due(c, now))
		return recheck_idle(c);
	return read_new(c);
}

/* claim_own_script's reply [position, delivery count, ...] (or {0, count}:
 * all of them): mark owned[] (and deliveries[]) of each position, ignoring
 * anything out of range or repeated.  Returns how many were marked. */
static int mark_owned(const redisReply *r, size_t n, bool *owned, long long *deliveries)
{
	int kept = 0;
	if (r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 0) {
		/* {0, count}: every id, with one count. */
		const redisReply *count = r->element[1];
		for (size_t i = 0; i < n; i++) {
			owned[i] = true;
			if (deliveries)
				deliveries[i] = count->type == REDIS_REPLY_INTEGER ? count->integer : 1;
		}
		return (int)n;
	}
	for (size_t j = 0; j + 1 < r->elements; j += 2) {
		const redisReply *pos = r->element[j], *count = r->element[j + 1];
		if (pos->type != REDIS_REPLY_INTEGER || pos->integer < 1 || (unsigned long long)pos->integer > n)
			continue;
		size_t i = (size_t)pos->integer - 1;
		if (owned[i])
			continue;
		owned[i] = true;
		if (deliveries)
			deliveries[i] = count->type == REDIS_REPLY_INTEGER ? count->integer : 1;
		kept++;
	}
	return kept;
}

/* Run claim_own_script over ids: marks owned[i] and, when deliveries is
 * not NULL, stores the delivery count of each owned id.  Returns how many
 * are still owned, or -ENOTCONN when the connection dropped.  A script error
 * (old Redis, scripting disabled) keeps everything as owned. */
static int claim_own(struct consumer *c, struct rconn *rc, const char *stream, const char *const *ids,
		     size_t n, bool *owned, long long *deliveries)
{
	size_t argc = 8 + n;
	const char **argv = util_xcalloc(argc, sizeof(*argv));
	/* The range of the ids (in any order; "-" / "+" when one is not an
	 * id: the script then looks at all of the consumer's entries). */
	uint64_t lo[2] = {UINT64_MAX, UINT64_MAX}, hi[2] = {0, 0}, ms, seq;
	bool parsed = n > 0;
	for (size_t i = 0; i < n && parsed; i++) {
		if (event_parse_id(ids[i], &ms, &seq) < 0) {
			parsed = false;
		} else {
			if (ms < lo[0] || (ms == lo[0] && seq < lo[1]))
				lo[0] = ms, lo[1] = seq;
			if (ms > hi[0] || (ms == hi[0] && seq > hi[1]))
				hi[0] = ms, hi[1] = seq;
		}
	}
	char from[ID_MAX], to[ID_MAX];
	snprintf(from, sizeof(from), "%s", "-");
	snprintf(to, sizeof(to), "%s", "+");
	if (parsed) {
		snprintf(from, sizeof(from), "%llu-%llu", (unsigned long long)lo[0], (unsigned long long)lo[1]);
		snprintf(to, sizeof(to), "%llu-%llu", (unsigned long long)hi[0], (unsigned long long)hi[1]);
	}
	argv[0] = "EVAL";
	argv[1] = claim_own_script;
	argv[2] = "1";
	argv[3] = stream;
	argv[4] = c->pool->group; /* ARGV[1] = group, ARGV[2] = consumer, ARGV[3..4] = range, ARGV[5..] = ids */
	argv[5] = consumer_name(c);
	argv[6] = from;
	argv[7] = to;
	for (size_t i = 0; i < n; i++)
		argv[8 + i] = ids[i];
	redisReply *r = rconn_commandv(rc, (int)argc, argv, NULL);
	free(argv);
	if (!r)
		return -ENOTCONN;
	int kept = 0;
	for (size_t i = 0; i < n; i++)
		owned[i] = false;
	if (r->type == REDIS_REPLY_ARRAY) {
		kept = mark_owned(r, n, owned, deliveries);
	} else if (r->type == REDIS_REPLY_ERROR) {
		log_warn("renewing entries of %s: %s", stream, r->str);
		for (size_t i = 0; i < n; i++) {
			owned[i] = true; /* unknown: keep them rather than drop */
			if (deliveries)
				deliveries[i] = 1;
		}
		kept = (int)n;
	}
	freeReplyObject(r);
	return kept;
}

int consumer_renew(struct consumer *c, const char *stream, const char *const *ids, size_t n,
		   bool *owned)
{
	return claim_own(c, conn(c), stream, ids, n, owned, NULL);
}

int consumer_renew_on(struct consumer *c, struct rconn *rc, const char *stream, const char *const *ids,
		      size_t n, bool *owned)
{
	return claim_own(c, rc, stream, ids, n, owned, NULL);
}

redisReply *consumer_list(struct consumer *c, const char *stream)
{
	return rconn_command(conn(c), "XINFO CONSUMERS %s %s", stream, c->pool->group);
}
