/* libFuzzer harness: event_decode, both reducers, and the SQLite store
 * checked against the correctness rule of SPEC section 5 ("a snapshot
 * always equals the reducer applied to all persisted events of the run, in
 * order").
 *
 * Input framing (text, one item per line, lines end at '\n'):
 *   NAME=VALUE     a field of the current entry (split at the first '=';
 *                  no '=' gives an empty value).  Values are raw bytes (NUL
 *                  bytes allowed), so a JSON data value must fit on a line.
 *   %%             ends the current entry (alone: an entry without fields)
 *   %commit        ends the entry and the store batch (store_commit)
 *   %prune         commit, then store_prune() every terminal run
 *   %conn          commit, then switch to the other of two store
 *                  connections on one file (another "process": exercises
 *                  the cache checks and checkpoint rebuilds); the second
 *                  one writes in-progress rows only as checkpoints
 *                  (snapshot_interval_ms of an hour: terminal, late,
 *                  evicted), so the first catches up from lagging rows
 *   %stream NAME   stream of the following entries (default "events")
 *   %id MS-SEQ     entry id of the next entry (default: previous ms + 1)
 *   %bytes N       sv_entry.bytes of the next entry
 *   %merge         the store uses the merge reducer (default: response)
 *   %cache N       store cache size (before the first entry; default 4)
 *   blank lines are ignored; at most 256 entries and 64 fields an entry.
 *
 * Per input:
 *   1. every entry is decoded; decoded events are checked (valid text,
 *      order key) and applied in arrival order to one snapshot per run for
 *      each reducer kind (the reducers must take any order without harm);
 *   2. the entries go through the store in batches (a database file on
 *      /dev/shm, emptied after each input; see "Long-lived stores"), and
 *      every store_apply result is compared with a model of the dedupe
 *      keys and archived runs;
 *   3. at every %prune and at the end, every run's stored snapshot must
 *      equal reducer_new + reducer_apply over the run's accepted events
 *      sorted by order key (runs whose order is ambiguous -- two events
 *      with the same key -- only have their counters checked), and the
 *      row's status/complete/event_count/last_seq columns must match the
 *      body.
 * A mismatch prints "FINDING: ..." and aborts. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "config.h"
#include "event.h"
#include "fuzz_tmp.h"
#include "log.h"
#include "reducer.h"
#include "store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENTRIES 256
#define MAX_FIELDS 64

enum op_kind { OP_ENTRY, OP_COMMIT, OP_PRUNE, OP_CONN };

struct entry {
	char stream[64];
	char id[48];
	uint64_t ms, seq;
	struct sv_field fields[MAX_FIELDS];
	size_t nfields;
	size_t bytes;
};

struct op {
	enum op_kind kind;
	int entry;
};

struct input {
	struct entry e[MAX_ENTRIES];
	size_t n;
	struct op ops[MAX_ENTRIES * 4]; /* entries + at most 3 x MAX_ENTRIES others */
	size_t nops;
	bool merge, conn;
	size_t cache;
};

static char tmpdir[64];

/* Long-lived stores (opening one costs milliseconds under ASan): one
 * database file per (reducer, cache size class), two connections each.
 * Every input gets a fresh prefix "gN/" on its run, stream and
 * origin_stream values, so inputs never see each other's rows; the cache
 * entries of earlier inputs only sit at the LRU tail and are evicted before
 * any of the current input's (so eviction happens as in a fresh store).
 * Everything is closed and the files removed every REOPEN_EVERY inputs. */
#define NCLASS 4
#define REOPEN_EVERY 2000
static const size_t cache_class[NCLASS] = {1, 2, 4, 64};
static struct store *pool[2][NCLASS][2];
static sqlite3 *raw[2][NCLASS]; /* empties the file after each input */
static unsigned long generation;

static void db_path(char *buf, size_t len, int kind, int cls)
{
	snprintf(buf, len, "%s/fuzz-%d-%d.db", tmpdir, kind, cls);
}

static void rm_dbs(void)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	for (int k = 0; k < 2; k++)
		for (int c = 0; c < NCLASS; c++)
			for (size_t i = 0; i < 4; i++) {
				char p[160], q[176];
				db_path(p, sizeof(p), k, c);
				snprintf(q, sizeof(q), "%s%s", p, sfx[i]);
				unlink(q);
			}
}

/* SVFUZZ_STATS=1: print the stores' counters at exit (does the corpus
 * reach late events, rebuilds, stale cache entries?). */
static struct store_stats stats_total;

static void close_pool(void)
{
	for (int k = 0; k < 2; k++)
		for (int c = 0; c < NCLASS; c++) {
			for (int i = 0; i < 2; i++) {
				if (pool[k][c][i]) {
					struct store_stats st;
					store_stats(pool[k][c][i], &st);
					stats_total.applied += st.applied;
					stats_total.duplicates += st.duplicates;
					stats_total.refused += st.refused;
					stats_total.late += st.late;
					stats_total.rebuilds += st.rebuilds;
					stats_total.rebuild_events += st.rebuild_events;
					stats_total.cache_hits += st.cache_hits;
					stats_total.cache_stale += st.cache_stale;
					stats_total.cache_misses += st.cache_misses;
					stats_total.commits += st.commits;
					stats_total.catchups += st.catchups;
				}
				store_close(pool[k][c][i]);
				pool[k][c][i] = NULL;
			}
			sqlite3_close(raw[k][c]);
			raw[k][c] = NULL;
		}
	rm_dbs();
}

static void cleanup(void)
{
	if (!tmpdir[0])
		return;
	close_pool();
	rmdir(tmpdir);
	if (getenv("SVFUZZ_STATS"))
		fprintf(stderr,
			"store stats: applied %llu duplicates %llu refused %llu late %llu rebuilds %llu "
			"rebuild_events %llu cache hits %llu stale %llu misses %llu commits %llu catchups %llu\n",
			(unsigned long long)stats_total.applied, (unsigned long long)stats_total.duplicates,
			(unsigned long long)stats_total.refused, (unsigned long long)stats_total.late,
			(unsigned long long)stats_total.rebuilds, (unsigned long long)stats_total.rebuild_events,
			(unsigned long long)stats_total.cache_hits, (unsigned long long)stats_total.cache_stale,
			(unsigned long long)stats_total.cache_misses, (unsigned long long)stats_total.commits,
			(unsigned long long)stats_total.catchups);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmp_dir(tmpdir, sizeof(tmpdir), "event", true);
	atexit(cleanup);
	log_set_level(LOG_ERROR);
	return 0;
}

#include "finding.h"

/* ---- input parsing ---- */

static uint64_t parse_u64_sat(const char *s, size_t n, size_t *used)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(s[i] - '0');
	*used = i;
	return v;
}

static bool is_dir(const char *l, size_t n, const char *d, const char **arg, size_t *alen)
{
	size_t dl = strlen(d);
	if (n < dl || memcmp(l, d, dl) != 0)
		return false;
	if (n == dl) {
		*arg = l + n;
		*alen = 0;
		return true;
	}
	if (l[dl] != ' ')
		return false;
	*arg = l + dl + 1;
	*alen = n - dl - 1;
	return true;
}

struct pstate {
	struct input *in;
	char stream[64];
	uint64_t next_ms;
	bool have_id, open;
	char id[48];
	uint64_t id_ms, id_seq;
	size_t bytes;
	struct entry *cur;
};

static void push_op(struct input *in, enum op_kind k)
{
	if (in->nops < MAX_ENTRIES * 3)
		in->ops[in->nops++] = (struct op){k, -1};
}

static void close_entry(struct pstate *ps)
{
	if (ps->open) {
		ps->in->ops[ps->in->nops++] = (struct op){OP_ENTRY, (int)(ps->cur - ps->in->e)};
		ps->in->n++;
		ps->open = false;
	}
}

/* Start a new entry; false when there is no room. */
static bool open_entry(struct pstate *ps)
{
	if (ps->in->n >= MAX_ENTRIES)
		return false;
	struct entry *cur = ps->cur = &ps->in->e[ps->in->n];
	memset(cur, 0, sizeof(*cur));
	memcpy(cur->stream, ps->stream, sizeof(ps->stream));
	if (ps->have_id) {
		memcpy(cur->id, ps->id, sizeof(ps->id));
		cur->ms = ps->id_ms;
		cur->seq = ps->id_seq;
		ps->next_ms = ps->id_ms < UINT64_MAX ? ps->id_ms + 1 : ps->id_ms;
		ps->have_id = false;
	} else {
		snprintf(cur->id, sizeof(cur->id), "%llu-0", (unsigned long long)ps->next_ms);
		cur->ms = ps->next_ms++;
		cur->seq = 0;
	}
	cur->bytes = ps->bytes;
	ps->bytes = 0;
	ps->open = true;
	return true;
}

static void parse_input(struct input *in, const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct pstate ps = {.in = in, .stream = "events", .next_ms = 1700000000000ULL};

	memset(in, 0, sizeof(*in));
	in->cache = 4;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *l = p;
		p += n + (nl ? 1 : 0);
		if (n == 0)
			continue;
		const char *arg;
		size_t alen, u;
		if (l[0] == '%' && n >= 2 && l[1] != '=') {
			if (n == 2 && l[1] == '%') {
				if (!ps.open)
					open_entry(&ps);
				close_entry(&ps);
			} else if (is_dir(l, n, "%commit", &arg, &alen)) {
				close_entry(&ps);
				push_op(in, OP_COMMIT);
			} else if (is_dir(l, n, "%prune", &arg, &alen)) {
				close_entry(&ps);
				push_op(in, OP_PRUNE);
			} else if (is_dir(l, n, "%conn", &arg, &alen)) {
				close_entry(&ps);
				push_op(in, OP_CONN);
				in->conn = true;
			} else if (is_dir(l, n, "%stream", &arg, &alen)) {
				close_entry(&ps);
				size_t k = alen < sizeof(ps.stream) - 1 ? alen : sizeof(ps.stream) - 1;
				memcpy(ps.stream, arg, k);
				ps.stream[k] = '\0';
			} else if (is_dir(l, n, "%id", &arg, &alen)) {
				close_entry(&ps);
				size_t k = alen < sizeof(ps.id) - 1 ? alen : sizeof(ps.id) - 1;
				memcpy(ps.id, arg, k);
				ps.id[k] = '\0';
				size_t u2;
				ps.id_ms = parse_u64_sat(arg, alen, &u);
				ps.id_seq = u < alen && arg[u] == '-' ? parse_u64_sat(arg + u + 1, alen - u - 1, &u2) : 0;
				ps.have_id = true;
			} else if (is_dir(l, n, "%bytes", &arg, &alen)) {
				close_entry(&ps);
				uint64_t b = parse_u64_sat(arg, alen, &u);
				ps.bytes = b > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)b;
			} else if (is_dir(l, n, "%merge", &arg, &alen)) {
				if (in->n == 0 && !ps.open)
					in->merge = true;
			} else if (is_dir(l, n, "%cache", &arg, &alen)) {
				uint64_t c = parse_u64_sat(arg, alen, &u);
				if (in->n == 0 && !ps.open)
					in->cache = c > 64 ? 64 : (size_t)c;
			}
			/* unknown directives are ignored */
			continue;
		}
		/* A field line. */
		if (!ps.open && !open_entry(&ps))
			continue;
		struct entry *cur = ps.cur;
		if (cur->nfields >= MAX_FIELDS)
			continue;
		const char *eq = memchr(l, '=', n);
		struct sv_field *f = &cur->fields[cur->nfields++];
		f->name = l;
		f->name_len = eq ? (size_t)(eq - l) : n;
		f->value = eq ? eq + 1 : l + n;
		f->value_len = eq ? n - f->name_len - 1 : 0;
	}
	close_entry(&ps);
}

static int decode(const struct entry *e, struct sv_event *ev, const char **reason)
{
	struct sv_entry se = {
		.stream = e->stream,
		.id = e->id,
		.id_ms = e->ms,
		.id_seq = e->seq,
		.fields = e->fields,
		.nfields = e->nfields,
		.bytes = e->bytes,
	};
	return event_decode(&se, ev, reason);
}

static bool skip_type(const char *type)
{
#if SV_FAULT_INJECTION
	/* Test seam of fault-injection builds: raises SIGSEGV on purpose. */
	return strcmp(type, "sv.test.crash") == 0;
#else
	(void)type;
	return false;
#endif
}

/* ---- 1. decode + reducers in arrival order ---- */

struct live {
	char *run;
	json_t *snap[2];
	int64_t applied[2];
};

static void check_snapshot(enum reducer_kind k, json_t *snap, int64_t applied)
{
	if (reducer_event_count(snap) != applied)
		FINDING("%s: event_count %lld after %lld events", reducer_kind_name(k),
			(long long)reducer_event_count(snap), (long long)applied);
	bool gapless = json_is_true(json_object_get(snap, "gapless"));
	if (reducer_complete(snap) != (gapless && reducer_terminal(snap)))
		FINDING("%s: complete != gapless && terminal", reducer_kind_name(k));
	if (k == REDUCER_RESPONSE) {
		const char *st = reducer_status(snap);
		if (!st || (strcmp(st, "queued") && strcmp(st, "in_progress") && strcmp(st, "completed") &&
			    strcmp(st, "failed") && strcmp(st, "cancelled")))
			FINDING("response: bad status");
	}
	char *s = json_dumps(snap, JSON_COMPACT);
	if (!s)
		FINDING("%s: snapshot cannot be serialized", reducer_kind_name(k));
	json_t *back = json_loads(s, JSON_ALLOW_NUL, NULL);
	if (!back || !json_equal(back, snap))
		FINDING("%s: snapshot does not survive a JSON round trip: %s", reducer_kind_name(k), s);
	json_decref(back);
	free(s);
}

static void check_event(const struct sv_event *ev, const struct entry *e)
{
	if (!ev->run || !ev->run[0] || !event_valid_text(ev->run, strlen(ev->run)))
		FINDING("decoded run invalid");
	if (!ev->type || !ev->type[0] || !event_valid_text(ev->type, strlen(ev->type)))
		FINDING("decoded type invalid");
	if (ev->call_id && (!ev->call_id[0] || !event_valid_text(ev->call_id, strlen(ev->call_id))))
		FINDING("decoded call_id invalid");
	if (ev->seq < 0 || ev->parent_seq < 0)
		FINDING("negative seq");
	if (ev->data && !json_is_object(ev->data))
		FINDING("data not an object");
	if (!!ev->data != !!ev->data_raw)
		FINDING("data and data_raw disagree");
	if (ev->origin_ms > (uint64_t)INT64_MAX || ev->origin_seq > (uint64_t)INT64_MAX)
		FINDING("origin id beyond 2^63");
	if (strcmp(ev->stream, e->stream) != 0 || strcmp(ev->id, e->id) != 0)
		FINDING("stream or id not copied");
	struct event_key k;
	event_order_key(ev, &k);
	if (event_key_cmp(&k, &k) != 0)
		FINDING("key not equal to itself");
	size_t total = e->bytes;
	size_t sum = 0;
	for (size_t i = 0; i < e->nfields; i++)
		sum += e->fields[i].name_len + e->fields[i].value_len;
	if ((sum > total ? sum : total) > EVENT_MAX_BYTES)
		FINDING("entry over EVENT_MAX_BYTES decoded");
}

static void run_reducers(const struct input *in)
{
	struct live lv[MAX_ENTRIES];
	size_t nlv = 0;
	for (size_t i = 0; i < in->n; i++) {
		struct sv_event ev;
		const char *reason = "unset";
		int rc = decode(&in->e[i], &ev, &reason);
		if (rc != 0) {
			if (rc != -EINVAL || !reason || !*reason)
				FINDING("event_decode failed (%d) without a reason", rc);
			continue;
		}
		if (reason)
			FINDING("event_decode succeeded with a reason");
		check_event(&ev, &in->e[i]);
		if (skip_type(ev.type)) {
			event_clear(&ev);
			continue;
		}
		size_t j;
		for (j = 0; j < nlv && strcmp(lv[j].run, ev.run) != 0; j++)
			;
		if (j == nlv) {
			lv[j].run = strdup(ev.run);
			for (int k = 0; k < 2; k++) {
				lv[j].snap[k] = reducer_new((enum reducer_kind)k, ev.run);
				lv[j].applied[k] = 0;
				if (!lv[j].snap[k])
					abort();
			}
			nlv++;
		}
		for (int k = 0; k < 2; k++) {
			char err[256] = "";
			int chk = reducer_check((enum reducer_kind)k, &ev, err, sizeof(err));
			rc = reducer_apply((enum reducer_kind)k, lv[j].snap[k], &ev, err, sizeof(err));
			if (rc != chk)
				FINDING("reducer_apply %d but reducer_check %d", rc, chk);
			if (rc == 0)
				lv[j].applied[k]++;
			else if (rc != -EINVAL)
				FINDING("reducer_apply: %d (%s)", rc, err);
			check_snapshot((enum reducer_kind)k, lv[j].snap[k], lv[j].applied[k]);
		}
		event_clear(&ev);
	}
	for (size_t j = 0; j < nlv; j++) {
		json_decref(lv[j].snap[0]);
		json_decref(lv[j].snap[1]);
		free(lv[j].run);
	}
}

/* ---- 2./3. the store against a model ---- */

struct accepted {
	int entry;             /* index into in->e */
	char *run;
	struct event_key key;
	/* dedupe key */
	int dkind;             /* 0 (run,seq)  1 (run,call_id)  2 (stream,ms,seq) */
	int64_t dseq;
	char *dstr;            /* call_id or stream */
	uint64_t dms, dmseq;
	bool gone;             /* pruned */
};

struct mrun {
	char *run;
	bool archived;
	bool quarantined;      /* a conflicting duplicate came (issue 12) */
	char *frozen;          /* body at archive time */
};

struct model {
	struct accepted acc[MAX_ENTRIES];
	size_t nacc;
	struct mrun runs[MAX_ENTRIES];
	size_t nruns;
};

static struct mrun *model_run(struct model *m, const char *run, bool add)
{
	for (size_t i = 0; i < m->nruns; i++)
		if (strcmp(m->runs[i].run, run) == 0)
			return &m->runs[i];
	if (!add)
		return NULL;
	struct mrun *r = &m->runs[m->nruns++];
	r->run = strdup(run);
	r->archived = false;
	r->frozen = NULL;
	return r;
}

static void dedupe_of(const struct sv_event *ev, struct accepted *a)
{
	if (ev->seq > 0) {
		a->dkind = 0;
		a->dseq = ev->seq;
		a->dstr = NULL;
	} else if (strcmp(ev->type, "tool.output") == 0 && ev->call_id) {
		a->dkind = 1;
		a->dstr = strdup(ev->call_id);
	} else {
		a->dkind = 2;
		a->dstr = strdup(ev->origin_stream);
		a->dms = ev->origin_ms;
		a->dmseq = ev->origin_seq;
	}
}

static bool same_dedupe(const struct accepted *a, const struct accepted *b)
{
	if (a->dkind != b->dkind)
		return false;
	switch (a->dkind) {
	case 0:
		return a->dseq == b->dseq && strcmp(a->run, b->run) == 0;
	case 1:
		return strcmp(a->dstr, b->dstr) == 0 && strcmp(a->run, b->run) == 0;
	default:
		return strcmp(a->dstr, b->dstr) == 0 && a->dms == b->dms && a->dmseq == b->dmseq;
	}
}

static const struct entry *cur_entries; /* the prefixed entries */

static int cmp_acc(const void *x, const void *y)
{
	const struct accepted *a = *(const struct accepted *const *)x, *b = *(const struct accepted *const *)y;
	int c = event_key_cmp(&a->key, &b->key);
	return c ? c : (a->entry > b->entry) - (a->entry < b->entry);
}

/* Expected snapshot of run; *ambiguous when two events share an order key.
 * Returns NULL when the run has no accepted event. */
static json_t *expected(const struct model *m, enum reducer_kind kind, const char *run, bool *ambiguous,
			int64_t *count, int64_t *last_seq)
{
	const struct accepted *v[MAX_ENTRIES];
	size_t n = 0;
	*ambiguous = false;
	*count = 0;
	*last_seq = 0;
	for (size_t i = 0; i < m->nacc; i++)
		if (!m->acc[i].gone && strcmp(m->acc[i].run, run) == 0)
			v[n++] = &m->acc[i];
	if (n == 0)
		return NULL;
	qsort(v, n, sizeof(v[0]), cmp_acc);
	json_t *snap = reducer_new(kind, run);
	if (!snap)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && event_key_cmp(&v[i - 1]->key, &v[i]->key) == 0)
			*ambiguous = true;
		struct sv_event ev;
		const char *reason;
		if (decode(&cur_entries[v[i]->entry], &ev, &reason) != 0)
			FINDING("accepted entry no longer decodes");
		char err[256];
		if (reducer_apply(kind, snap, &ev, err, sizeof(err)) != 0)
			FINDING("expected: reducer_apply failed: %s", err);
		if (ev.seq > *last_seq)
			*last_seq = ev.seq;
		(*count)++;
		event_clear(&ev);
	}
	return snap;
}

static void verify(struct model *m, struct store *st, enum reducer_kind kind, const char *when)
{
	for (size_t i = 0; i < m->nruns; i++) {
		struct mrun *r = &m->runs[i];
		struct store_snapshot ss;
		int rc = store_snapshot_get(st, r->run, &ss);
		if (r->archived) {
			if (rc != 0 || !ss.archived || strcmp(ss.body, r->frozen) != 0)
				FINDING("%s: archived run %s changed (rc %d archived %d)", when, r->run, rc,
					rc == 0 && ss.archived);
			store_snapshot_clear(&ss);
			continue;
		}
		bool amb;
		int64_t count, last_seq;
		json_t *want = expected(m, kind, r->run, &amb, &count, &last_seq);
		if (!want) {
			if (rc != -ENOENT)
				FINDING("%s: run %s has a snapshot (rc %d) but no accepted event", when, r->run, rc);
			continue;
		}
		if (rc != 0)
			FINDING("%s: run %s: store_snapshot_get %d", when, r->run, rc);
		json_t *got = json_loads(ss.body, JSON_ALLOW_NUL, NULL);
		if (!got)
			FINDING("%s: run %s: stored body is not JSON", when, r->run);
		if (ss.archived)
			FINDING("%s: run %s archived unexpectedly", when, r->run);
		/* The row's columns describe its body. */
		const char *bst = reducer_status(got);
		if (!!bst != !!ss.status || (bst && strcmp(bst, ss.status) != 0) ||
		    ss.complete != reducer_complete(got) || ss.event_count != reducer_event_count(got) ||
		    ss.last_seq != reducer_last_seq(got))
			FINDING("%s: run %s: row columns disagree with the body", when, r->run);
		if (reducer_event_count(got) != count || reducer_last_seq(got) != last_seq)
			FINDING("%s: run %s: event_count %lld (want %lld), last_seq %lld (want %lld)", when,
				r->run, (long long)reducer_event_count(got), (long long)count,
				(long long)reducer_last_seq(got), (long long)last_seq);
		if (!amb && !json_equal(got, want)) {
			char *a = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
			char *b = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
			fprintf(stderr, "stored:   %s\nexpected: %s\n", a, b);
			FINDING("%s: run %s: stored snapshot != reducer over its events in order", when, r->run);
		}
		json_decref(got);
		json_decref(want);
		store_snapshot_clear(&ss);
	}
}

static struct store *get_store(enum reducer_kind kind, int cls, int i)
{
	struct store **sp = &pool[kind][cls][i];
	if (*sp)
		return *sp;
	struct store_opts o = {
		.synchronous = SV_SYNC_NORMAL,
		.busy_timeout_ms = 1000,
		.reducer = kind,
		.cache_entries = cache_class[cls],
		/* the second connection keeps checkpoints (issue 14): its rows
		 * lag, its reads and catch-ups must not */
		.snapshot_interval_ms = i == 1 ? 3600000 : 0,
	};
	char path[160];
	db_path(path, sizeof(path), kind, cls);
	int rc = store_open(sp, path, &o);
	if (rc != 0)
		FINDING("store_open: %d", rc);
	return *sp;
}

/* The input's entries with "gN/" before every run, origin_stream and
 * stream value. */
struct prefixed {
	struct entry e[MAX_ENTRIES];
	char *bufs[MAX_ENTRIES * MAX_FIELDS];
	size_t nbufs;
};

static const char *with_prefix(struct prefixed *px, const char *pfx, const char *v, size_t n, size_t *outn)
{
	size_t pl = strlen(pfx);
	char *b = malloc(pl + n + 1);
	if (!b)
		abort();
	memcpy(b, pfx, pl);
	memcpy(b + pl, v, n);
	b[pl + n] = '\0';
	px->bufs[px->nbufs++] = b;
	*outn = pl + n;
	return b;
}

static void make_prefixed(struct prefixed *px, const struct input *in, const char *pfx)
{
	px->nbufs = 0;
	for (size_t i = 0; i < in->n; i++) {
		const struct entry *e = &in->e[i];
		struct entry *d = &px->e[i];
		*d = *e;
		snprintf(d->stream, sizeof(d->stream), "%s%s", pfx, e->stream);
		for (size_t f = 0; f < e->nfields; f++) {
			const struct sv_field *fl = &e->fields[f];
			if ((fl->name_len == 3 && memcmp(fl->name, "run", 3) == 0) ||
			    (fl->name_len == 13 && memcmp(fl->name, "origin_stream", 13) == 0))
				d->fields[f].value = with_prefix(px, pfx, fl->value, fl->value_len,
								 &d->fields[f].value_len);
		}
	}
}

static void free_prefixed(struct prefixed *px)
{
	for (size_t i = 0; i < px->nbufs; i++)
		free(px->bufs[i]);
	px->nbufs = 0;
}

/* data of two events equal as the store compares it: as JSON values when
 * both parse, else byte for byte. */
static bool model_same_data(const struct sv_event *a, const struct sv_event *b)
{
	json_t *x = a->data ? json_incref(a->data)
		  : a->data_raw ? json_loadb(a->data_raw, a->data_len, JSON_ALLOW_NUL, NULL) : NULL;
	json_t *y = b->data ? json_incref(b->data)
		  : b->data_raw ? json_loadb(b->data_raw, b->data_len, JSON_ALLOW_NUL, NULL) : NULL;
	bool eq = x && y ? json_equal(x, y)
		  : a->data_len == b->data_len && (!a->data_len || memcmp(a->data_raw, b->data_raw, a->data_len) == 0);
	json_decref(x);
	json_decref(y);
	return eq;
}

/* Is ev the very event the accepted entry holds (the store's "twin")?  A
 * producer event (seq) by type and data; a tool.output by the entry that
 * carried it; any other by its whole dedupe key (the caller matched it). */
static bool model_same_twin(const struct accepted *acc, const struct sv_event *ev)
{
	if (acc->dkind == 2)
		return true;
	struct sv_event st;
	const char *reason;
	if (decode(&cur_entries[acc->entry], &st, &reason) != 0)
		return false;
	bool same;
	if (acc->dkind == 0)
		same = strcmp(st.type, ev->type) == 0 && model_same_data(&st, ev);
	else
		same = strcmp(st.origin_stream ? st.origin_stream : st.stream,
			      ev->origin_stream ? ev->origin_stream : ev->stream) == 0 &&
		       st.origin_ms == ev->origin_ms && st.origin_seq == ev->origin_seq;
	event_clear(&st);
	return same;
}

/* The stored twin of ev (same dedupe key), or NULL. */
static const struct accepted *model_twin(const struct model *m, const struct accepted *a)
{
	for (size_t k = 0; k < m->nacc; k++)
		if (!m->acc[k].gone && same_dedupe(&m->acc[k], a))
			return &m->acc[k];
	return NULL;
}

static void run_store(const struct input *in)
{
	static struct prefixed px;
	char pfx[32];
	enum reducer_kind kind = in->merge ? REDUCER_MERGE : REDUCER_RESPONSE;
	int cls = 0;
	while (cls + 1 < NCLASS && cache_class[cls] < in->cache)
		cls++;
	if (generation > 0 && generation % REOPEN_EVERY == 0)
		close_pool();
	snprintf(pfx, sizeof(pfx), "g%lu/", generation++);
	make_prefixed(&px, in, pfx);

	struct store *conn[2] = {get_store(kind, cls, 0), in->conn ? get_store(kind, cls, 1) : NULL};
	int ci = 0;
	struct model *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	cur_entries = px.e;
	bool txn = false;
	struct store *st = conn[0];

	for (size_t oi = 0; oi < in->nops; oi++) {
		const struct op *op = &in->ops[oi];
		if (op->kind != OP_ENTRY) {
			if (txn) {
				int rc = store_commit(st);
				if (rc != 0)
					FINDING("store_commit: %d %s", rc, store_errmsg(st));
				txn = false;
			}
			if (op->kind == OP_CONN && conn[1]) {
				ci ^= 1;
				st = conn[ci];
			} else if (op->kind == OP_PRUNE) {
				verify(m, st, kind, "before prune");
				/* Which runs the prune takes: terminal rows. */
				int64_t want = 0;
				for (size_t i = 0; i < m->nruns; i++) {
					struct mrun *r = &m->runs[i];
					struct store_snapshot ss;
					if (r->archived || store_snapshot_get(st, r->run, &ss) != 0)
						continue;
					json_t *b = json_loads(ss.body, JSON_ALLOW_NUL, NULL);
					if (b && reducer_terminal(b)) {
						r->archived = true;
						r->frozen = strdup(ss.body);
						want++;
						for (size_t k = 0; k < m->nacc; k++)
							if (strcmp(m->acc[k].run, r->run) == 0)
								m->acc[k].gone = true;
					}
					json_decref(b);
					store_snapshot_clear(&ss);
				}
				int64_t got = store_prune(st, INT64_MAX);
				if (got != want)
					FINDING("store_prune archived %lld runs, want %lld", (long long)got,
						(long long)want);
				verify(m, st, kind, "after prune");
			}
			continue;
		}
		struct sv_event ev;
		const char *reason;
		/* Only entries that decode as given (the prefix could turn an
		 * empty run valid, or push an entry over the size limit). */
		if (decode(&in->e[op->entry], &ev, &reason) != 0)
			continue;
		event_clear(&ev);
		if (decode(&px.e[op->entry], &ev, &reason) != 0)
			continue;
		if (skip_type(ev.type)) {
			event_clear(&ev);
			continue;
		}
		if (!txn) {
			int rc = store_begin(st);
			if (rc != 0)
				FINDING("store_begin: %d %s", rc, store_errmsg(st));
			txn = true;
		}
		/* The model's answer. */
		struct mrun *r = model_run(m, ev.run, true);
		char err[256];
		int want;
		struct accepted a = {.entry = op->entry, .run = r->run};
		if (r->quarantined) {
			/* Only the very events stored pass, silently. */
			dedupe_of(&ev, &a);
			const struct accepted *t = model_twin(m, &a);
			want = t && model_same_twin(t, &ev) ? STORE_DUPLICATE : STORE_CONFLICT;
		} else if (r->archived) {
			want = STORE_ARCHIVED;
		} else if (reducer_check(kind, &ev, err, sizeof(err)) != 0) {
			want = STORE_REDUCER_ERROR;
		} else {
			dedupe_of(&ev, &a);
			const struct accepted *t = model_twin(m, &a);
			want = STORE_OK;
			if (t && model_same_twin(t, &ev))
				want = STORE_DUPLICATE;
			else if (t && strcmp(ev.type, "tool.output") == 0)
				want = STORE_RERUN; /* a re-run of a tool: the first output stays */
			else if (t)
				want = STORE_CONFLICT, r->quarantined = true;
		}
		int rc = store_apply(st, &ev, err, sizeof(err));
		if (rc < 0)
			FINDING("store_apply: %d %s", rc, store_errmsg(st));
		if (rc != want)
			FINDING("store_apply returned %d, the model wants %d (run %s type %s seq %lld)", rc, want,
				ev.run, ev.type, (long long)ev.seq);
		if (want == STORE_OK) {
			event_order_key(&ev, &a.key);
			m->acc[m->nacc++] = a;
		} else {
			free(a.dstr);
		}
		event_clear(&ev);
	}
	if (txn) {
		int rc = store_commit(st);
		if (rc != 0)
			FINDING("store_commit: %d %s", rc, store_errmsg(st));
	}
	verify(m, st, kind, "end");
	if (conn[1])
		verify(m, conn[ci ^ 1], kind, "end (other connection)");

	for (size_t i = 0; i < m->nacc; i++)
		free(m->acc[i].dstr);
	for (size_t i = 0; i < m->nruns; i++) {
		free(m->runs[i].run);
		free(m->runs[i].frozen);
	}
	free(m);
	free_prefixed(&px);
	/* Empty the file for the next input (through a connection of its own,
	 * as another process would): the stores see the change through
	 * PRAGMA data_version, and their cache entries of this input's runs
	 * are never looked up again (the next input has another prefix). */
	sqlite3 **db = &raw[kind][cls];
	if (!*db) {
		char path[160];
		db_path(path, sizeof(path), kind, cls);
		if (sqlite3_open(path, db) != SQLITE_OK)
			FINDING("sqlite3_open: %s", sqlite3_errmsg(*db));
		sqlite3_busy_timeout(*db, 1000);
	}
	if (sqlite3_exec(*db, "DELETE FROM events; DELETE FROM snapshots;", NULL, NULL, NULL) != SQLITE_OK)
		FINDING("emptying the database: %s", sqlite3_errmsg(*db));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct input in;
	parse_input(&in, data, size);
	run_reducers(&in);
	run_store(&in);
	return 0;
}
