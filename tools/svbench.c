/* svbench: the benchmark of SPEC §10.
 *
 *   svbench [--redis URL] [--stream NAME] [--runs N] [--events N]
 *           [--interleave N] [--rate EV/S] --sqlite PATH [--timeout S]
 *           [--prefix STR] [--no-tool-call] [--batch N] [--sample N] [--poll-us N]
 *           [--streams-per-run [--stream-fmt FMT]]
 *       Produces the standard workload (4000 runs x 58 events, 200 runs
 *       interleaved round-robin, pipelined XADD) and waits until every run's
 *       row in snapshots(run, status, event_count) is status 'completed' with
 *       the run's event count.  Prints one JSON line:
 *         events_per_s            events / (first XADD -> every run complete);
 *         latency_ms              XADD -> the event's row in `events` (every
 *                                 --sample'th run, polled read-only: SELECT seq
 *                                 FROM events WHERE run = ? AND seq >= ?), so
 *                                 COMMIT and fsync are included; snapshot rows
 *                                 are checkpoints and say nothing of it;
 *         terminal_latency_ms     a sampled run's last (terminal) XADD -> its
 *                                 snapshot row 'completed' with every event;
 *         worker_cpu_s, events_per_worker_cpu_s
 *                                 CPU (utime+stime, /proc/PID/stat) of the
 *                                 persistence workers over the workload: the
 *                                 pids of NS:workers' heartbeats of kind
 *                                 "persistence" (--namespace, default sv), or
 *                                 the processes of --pids (the peer);
 *         split, split_ms         the workers' time split over the workload:
 *                                 deltas of the heartbeats' "split" counters
 *                                 (redis, decode, reduce, insert, commit,
 *                                 ack) between the last beat before the start
 *                                 and the first after the end (svbench waits
 *                                 up to --beat-wait-ms for it), as shares of
 *                                 their sum (split), of the workload's wall
 *                                 time summed over the workers (split_wall)
 *                                 and in ms; null without heartbeats
 *                                 carrying "split" (the peer) or when every
 *                                 counter stayed 0;
 *                                 split_window_s the beats' span, hb_cpu_s the
 *                                 heartbeats' cpu_us delta over that span.
 *       --streams-per-run: the same workload, but each run's events go to the
 *       run's own stream, FMT with "{run}" replaced by the run id (default
 *       "bench:run:{run}:events"; a pool reads them through a pattern such as
 *       "bench:run:*:events").  --stream is then ignored.
 *
 *   svbench --new-streams N --sqlite PATH [--redis URL] [--stream-fmt FMT]
 *           [--interval-ms 200] [--timeout S] [--prefix STR] [--poll-us N]
 *       Discovery latency (issue 11): N times, one at a time, XADDs the first
 *       event (response.created, seq 1) of a new run into a stream of its
 *       own that did not exist (FMT, default "bench:run:{run}:events"; the
 *       daemon reads it through a pattern) and polls the SQLite file
 *       read-only until the event's row is in `events`: the time from just
 *       before the XADD to the event seen stored.  interval-ms apart (after the
 *       previous one was seen), so that each is a discovery of its own.
 *       --timeout S is the wait for each (default 10).  Prints one JSON line
 *       with p50/p99/max; exit 1 when one was not seen in time.
 *
 *   svbench respawn --socket CTLSOCK [--redis URL] [--namespace sv] [--count 20]
 *           [--pool NAME]
 *       SIGKILLs a RUNNING worker, measures fork latency (kill -> a new child
 *       of the master) and heartbeat latency (kill -> NS:workers holds the
 *       worker's field with the new pid), waits for RUNNING, repeats.
 *
 *   svbench rss --socket CTLSOCK [--pid MASTERPID]
 *       VmRSS/RssAnon of the master and of each worker.
 *
 *   svbench tools [--redis URL] [--stream events] [--calls 1000] [--tool echo]
 *           [--rate CALLS/S] [--window N] [--runs 10] [--args JSON]
 *           [--batch 256] [--timeout 120] [--prefix STR]
 *       Tool calls (issue 13): XADDs N tool.call events for tool NAME to the
 *       stream (literal name), spread round-robin over R runs (PREFIX-rK),
 *       call ids c0..cN-1 (unique), arguments JSON (default {"q":1}); as
 *       fast as possible (pipelined, --batch per write), paced at --rate
 *       calls/s, or closed-loop with at most --window calls without output.
 *       Meanwhile an XREAD reader on the same stream, from its last entry
 *       before the start, matches each tool.output by run + call_id.
 *       calls_per_s = outputs / (first XADD -> last output read); latency =
 *       XADD -> output read, per call.  Prints one JSON line; exit 1 when an
 *       output is missing after --timeout S, duplicated, or is_error.
 *
 *   svbench wait --url http://HOST:PORT --token-file F [--redis URL]
 *           [--stream events] [--count 50] [--interval-ms 100]
 *           [--settle-ms 20] [--wait 5] [--events 6] [--prefix STR]
 *           [--timeout 10]
 *       The long-poll of the HTTP API (issue 15, done-when 3): terminal
 *       XADD -> HTTP 200 of GET /api/v1/runs/ID?wait=W.  COUNT times, one
 *       run at a time: XADDs every event of a run of --events but the
 *       terminal one (response.completed), polls GET /api/v1/runs/ID (no
 *       wait) until it is found (200), opens GET /api/v1/runs/ID?wait=W
 *       (Authorization: Bearer, the first line of F), waits --settle-ms
 *       (the web child suspends the request), then XADDs the terminal
 *       event; the latency runs from just before that XADD to the whole
 *       200 answer read (X-Streamvisor-Complete: true).  interval-ms
 *       between runs.  Prints one JSON line, "wait_latency_ms" with
 *       p50/p99/max/min/samples; exit 1 when an answer was not a complete
 *       200.  Against a daemon with http.listen and http.token_file set
 *       and a persistence pool reading --stream.  The README's figure: the
 *       developer configuration (console on 127.0.0.1:8470, token in
 *       var/http.token, Redis on 127.0.0.1:6379, sync full), nothing else
 *       running (no workload, no peer to alternate with):
 *         ./scripts/run-dev.sh &
 *         build/tools/svbench wait --url http://127.0.0.1:8470 \
 *             --token-file var/http.token --count 200 --interval-ms 50
 *       (2-core machine, 2026-12-06, unix socket Redis: p50 1.4-1.7 ms,
 *       p99 4.7-6.5 ms over 3 x 200 runs).  test_web_wait.sh runs it on 20
 *       runs as a smoke test.
 *
 * Two threads in the workload mode: the producer (formats RESP itself into
 * one buffer per pipeline batch: no allocation per event besides hiredis's
 * reply objects) and the watcher (main thread: polls the SQLite file
 * read-only, a few point lookups per poll).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <sqlite3.h>

#include "redis_url.h"
#include "util.h"

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("svbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long parse_long(const char *opt, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("%s: bad value '%s' (%ld..%ld)", opt, s, min, max);
	return v;
}

/* ---------------------------------------------------------------- Redis */

static redisContext *redis_open(const char *url)
{
	struct redis_url u;
	char err[256];
	if (redis_url_parse(url, &u, err, sizeof(err)) < 0)
		die("--redis: %s", err);
	redisContext *c = u.type == REDIS_URL_UNIX ? redisConnectUnix(u.path) : redisConnect(u.host, u.port);
	if (!c || c->err)
		die("cannot connect to Redis: %s", c ? c->errstr : "out of memory");
	redisReply *r = NULL;
	if (u.password) {
		r = u.user ? redisCommand(c, "AUTH %s %s", u.user, u.password)
			   : redisCommand(c, "AUTH %s", u.password);
		if (!r || r->type == REDIS_REPLY_ERROR)
			die("AUTH failed: %s", r ? r->str : c->errstr);
		freeReplyObject(r);
	}
	if (u.db) {
		r = redisCommand(c, "SELECT %d", u.db);
		if (!r || r->type == REDIS_REPLY_ERROR)
			die("SELECT failed: %s", r ? r->str : c->errstr);
		freeReplyObject(r);
	}
	redis_url_free(&u);
	return c;
}

/* --------------------------------------------------------- percentiles */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in ms with µs precision. */
static double pct_ms(const int64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1000.0;
}

/* ------------------------------------------------------------- workload */

enum ev_kind {
	EV_CREATED, EV_R_START, EV_R_DELTA, EV_R_DONE, EV_TOOL, EV_M_START, EV_M_DELTA,
	EV_M_DONE, EV_USAGE, EV_COMPLETED
};

struct bench {
	/* options */
	const char *redis_url, *stream, *sqlite_path;
	char prefix[64];
	long runs, events, interleave, batch, sample, poll_us, timeout_s;
	double rate;
	bool tool_call;
	const char *stream_fmt;           /* --streams-per-run: "{run}" -> run id; else NULL */

	/* layout of one run: kind of event seq (1-based) */
	enum ev_kind *layout;

	/* shared between the threads */
	int64_t t_first_xadd_us;          /* atomic: 0 until the first flush */
	long runs_started;                /* atomic: runs whose first event was sent */
	int64_t *ts_us;                   /* atomic: sampled runs' events: send time (µs) */
	long produced;                    /* atomic: events sent (replies read) */
	int64_t t_last_xadd_us;           /* when the producer finished */
	int producer_failed;              /* atomic */
	char producer_err[256];
};

static void build_layout(struct bench *b)
{
	long n = b->events;
	b->layout = xmalloc(sizeof(*b->layout) * (size_t)(n + 1));
	long rem = n - 5; /* created, message start/complete, usage, completed */
	bool tool = b->tool_call && rem >= 2;
	if (tool)
		rem--;
	bool reasoning = rem >= 4;
	if (reasoning)
		rem -= 2;
	long rd = reasoning ? rem / 5 : 0;
	if (reasoning && rd < 1)
		rd = 1;
	long md = rem - rd;
	long s = 1;
	b->layout[s++] = EV_CREATED;
	if (reasoning) {
		b->layout[s++] = EV_R_START;
		for (long i = 0; i < rd; i++)
			b->layout[s++] = EV_R_DELTA;
		b->layout[s++] = EV_R_DONE;
	}
	if (tool)
		b->layout[s++] = EV_TOOL;
	b->layout[s++] = EV_M_START;
	for (long i = 0; i < md; i++)
		b->layout[s++] = EV_M_DELTA;
	b->layout[s++] = EV_M_DONE;
	b->layout[s++] = EV_USAGE;
	b->layout[s++] = EV_COMPLETED;
	if (s != n + 1)
		die("internal: layout %ld != %ld", s - 1, n);
}

static const char *const words[] = {
	"lorem ", "ipsum ", "dolor ", "sit ", "amet, ", "consectetur ", "adipiscing ", "elit ",
	"sed ", "do ", "eiusmod ", "tempor ", "incididunt ", "ut ", "labore ", "magna ",
};

/* The type and data of event seq of run idx into the given buffers. */
static size_t event_data(const struct bench *b, long idx, long seq, const char **type, char *data, size_t cap)
{
	int n = 0;
	*type = "unknown";
	uint32_t h = (uint32_t)(idx * 2654435761u) ^ (uint32_t)(seq * 40503u);
	switch (b->layout[seq]) {
	case EV_CREATED:
		*type = "response.created";
		n = snprintf(data, cap, "{\"model\":\"bench-model\",\"metadata\":{\"run\":%ld}}", idx);
		break;
	case EV_R_START:
		*type = "item.started";
		n = snprintf(data, cap, "{\"item_id\":\"rs_%06ld\",\"kind\":\"reasoning\"}", idx % 1000000);
		break;
	case EV_R_DELTA:
	case EV_M_DELTA: {
		*type = "item.delta";
		bool r = b->layout[seq] == EV_R_DELTA;
		n = snprintf(data, cap, "{\"item_id\":\"%s_%06ld\",\"text\":\"%s%s%s\"}", r ? "rs" : "msg",
			     idx % 1000000, words[h & 15], words[(h >> 4) & 15], words[(h >> 8) & 15]);
		break;
	}
	case EV_R_DONE:
		*type = "item.completed";
		n = snprintf(data, cap, "{\"item_id\":\"rs_%06ld\"}", idx % 1000000);
		break;
	case EV_TOOL:
		*type = "tool.call";
		n = snprintf(data, cap, "{\"call_id\":\"call_%ld\",\"name\":\"echo\",\"arguments\":\"{\\\"q\\\":%u}\"}",
			     idx, h & 1023);
		break;
	case EV_M_START:
		*type = "item.started";
		n = snprintf(data, cap, "{\"item_id\":\"msg_%06ld\",\"kind\":\"message\",\"role\":\"assistant\"}",
			     idx % 1000000);
		break;
	case EV_M_DONE:
		*type = "item.completed";
		n = snprintf(data, cap, "{\"item_id\":\"msg_%06ld\"}", idx % 1000000);
		break;
	case EV_USAGE:
		*type = "usage";
		n = snprintf(data, cap, "{\"input_tokens\":%u,\"output_tokens\":%u,\"reasoning_tokens\":%u}",
			     100 + (h & 511), 40 + ((h >> 9) & 255), 10 + ((h >> 17) & 127));
		break;
	case EV_COMPLETED:
		*type = "response.completed";
		n = snprintf(data, cap, "{\"stop_reason\":\"end_turn\"}");
		break;
	}
	return n > 0 ? (size_t)n : 0;
}

/* RESP output buffer for one pipeline batch. */
struct obuf {
	char *p;
	size_t len, cap;
};

static void ob_reserve(struct obuf *o, size_t more)
{
	if (o->len + more <= o->cap)
		return;
	size_t cap = o->cap ? o->cap : 65536;
	while (cap < o->len + more)
		cap *= 2;
	char *p = realloc(o->p, cap);
	if (!p)
		die("out of memory");
	o->p = p;
	o->cap = cap;
}

static char *u64_str(char *end, uint64_t v)
{
	do
		*--end = (char)('0' + v % 10);
	while (v /= 10);
	return end;
}

static void ob_bulk(struct obuf *o, const char *s, size_t n)
{
	char tmp[24];
	char *e = tmp + sizeof(tmp);
	char *d = u64_str(e, n);
	ob_reserve(o, 1 + (size_t)(e - d) + 2 + n + 2);
	char *w = o->p + o->len;
	*w++ = '$';
	memcpy(w, d, (size_t)(e - d));
	w += e - d;
	*w++ = '\r';
	*w++ = '\n';
	memcpy(w, s, n);
	w += n;
	*w++ = '\r';
	*w++ = '\n';
	o->len = (size_t)(w - o->p);
}

static void ob_bulk_u64(struct obuf *o, uint64_t v)
{
	char tmp[24];
	char *e = tmp + sizeof(tmp);
	char *d = u64_str(e, v);
	ob_bulk(o, d, (size_t)(e - d));
}

static void ob_raw(struct obuf *o, const char *s)
{
	size_t n = strlen(s);
	ob_reserve(o, n);
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* The run id of run idx into buf; returns its length. */
static size_t run_id(const struct bench *b, long idx, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s-%06ld", b->prefix, idx);
	return n > 0 ? (size_t)n : 0;
}

/* --streams-per-run: the stream of a run, stream_fmt with every "{run}"
 * replaced by its id, into buf; returns its length. */
static size_t run_stream(const struct bench *b, const char *rid, size_t rlen, char *buf, size_t cap)
{
	size_t n = 0;
	for (const char *f = b->stream_fmt; *f;) {
		if (strncmp(f, "{run}", 5) == 0) {
			if (n + rlen >= cap)
				die("--stream-fmt: stream name too long");
			memcpy(buf + n, rid, rlen);
			n += rlen;
			f += 5;
		} else {
			if (n + 1 >= cap)
				die("--stream-fmt: stream name too long");
			buf[n++] = *f++;
		}
	}
	buf[n] = 0;
	return n;
}

static bool sampled(const struct bench *b, long idx)
{
	return idx % b->sample == 0;
}

struct pending_batch {
	long n; /* replies to read */
};

static int read_replies(struct bench *b, redisContext *c, long n)
{
	for (long i = 0; i < n; i++) {
		void *rep = NULL;
		if (redisGetReply(c, &rep) != REDIS_OK) {
			snprintf(b->producer_err, sizeof(b->producer_err), "Redis: %s", c->errstr);
			return -1;
		}
		redisReply *r = rep;
		if (r->type == REDIS_REPLY_ERROR) {
			snprintf(b->producer_err, sizeof(b->producer_err), "XADD: %s", r->str);
			freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	__atomic_add_fetch(&b->produced, n, __ATOMIC_RELEASE);
	return 0;
}

static int flush_out(struct bench *b, redisContext *c, struct obuf *o)
{
	if (!o->len)
		return 0;
	if (redisAppendFormattedCommand(c, o->p, o->len) != REDIS_OK) {
		if (b)
			snprintf(b->producer_err, sizeof(b->producer_err), "Redis: %s", c->errstr);
		return -1;
	}
	int done = 0;
	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK) {
			if (b)
				snprintf(b->producer_err, sizeof(b->producer_err), "Redis: %s", c->errstr);
			return -1;
		}
	o->len = 0;
	return 0;
}

static void *producer_main(void *arg)
{
	struct bench *b = arg;
	redisContext *c = redis_open(b->redis_url);
	struct obuf o = { 0 };
	char data[256], rid[96], sname[512];
	const size_t stream_len = strlen(b->stream);
	long inflight = 0;        /* replies of the previous flush still to read */
	long in_buf = 0;          /* commands in o */
	const long total = b->runs * b->events;
	long sent = 0;
	int64_t t0 = 0;

	for (long w0 = 0; w0 < b->runs; w0 += b->interleave) {
		long w1 = w0 + b->interleave < b->runs ? w0 + b->interleave : b->runs;
		for (long seq = 1; seq <= b->events; seq++) {
			for (long idx = w0; idx < w1; idx++) {
				if (b->rate > 0) {
					/* paced: wait until this event is due, flushing what is buffered */
					if (!t0)
						t0 = util_mono_us();
					int64_t due = t0 + (int64_t)((double)sent * 1e6 / b->rate);
					int64_t now = util_mono_us();
					if (due > now) {
						if (in_buf) {
							if (flush_out(b, c, &o) < 0 || read_replies(b, c, inflight) < 0)
								goto fail;
							inflight = in_buf;
							in_buf = 0;
						}
						if (inflight) {
							if (read_replies(b, c, inflight) < 0)
								goto fail;
							inflight = 0;
						}
						/* sleep at least 1 ms: ~rate/1000 events go out together
						 * instead of one write, read and nanosleep per event */
						now = util_mono_us();
						if (due > now)
							sleep_us(due - now > 1000 ? due - now : 1000);
					}
				}
				const char *type;
				size_t dlen = event_data(b, idx, seq, &type, data, sizeof(data));
				size_t rlen = run_id(b, idx, rid, sizeof(rid));
				int64_t tus = wall_us();
				if (!__atomic_load_n(&b->t_first_xadd_us, __ATOMIC_RELAXED))
					__atomic_store_n(&b->t_first_xadd_us, tus, __ATOMIC_RELEASE);
				if (sampled(b, idx))
					__atomic_store_n(&b->ts_us[(idx / b->sample) * b->events + (seq - 1)], tus,
							 __ATOMIC_RELEASE);
				ob_raw(&o, "*13\r\n$4\r\nXADD\r\n");
				if (b->stream_fmt) {
					size_t slen = run_stream(b, rid, rlen, sname, sizeof(sname));
					ob_bulk(&o, sname, slen);
				} else {
					ob_bulk(&o, b->stream, stream_len);
				}
				ob_raw(&o, "$1\r\n*\r\n$3\r\nrun\r\n");
				ob_bulk(&o, rid, rlen);
				ob_raw(&o, "$4\r\ntype\r\n");
				ob_bulk(&o, type, strlen(type));
				ob_raw(&o, "$3\r\nseq\r\n");
				ob_bulk_u64(&o, (uint64_t)seq);
				ob_raw(&o, "$2\r\nts\r\n");
				ob_bulk_u64(&o, (uint64_t)(tus / 1000));
				ob_raw(&o, "$4\r\ndata\r\n");
				ob_bulk(&o, data, dlen);
				in_buf++;
				sent++;
				if (seq == 1)
					__atomic_store_n(&b->runs_started, idx + 1, __ATOMIC_RELEASE);
				if (in_buf >= b->batch) {
					/* keep two batches in flight: send this one, then read the last one's replies */
					if (flush_out(b, c, &o) < 0 || read_replies(b, c, inflight) < 0)
						goto fail;
					inflight = in_buf;
					in_buf = 0;
				}
			}
		}
	}
	if (flush_out(b, c, &o) < 0 || read_replies(b, c, inflight + in_buf) < 0)
		goto fail;
	(void)total;
	__atomic_store_n(&b->t_last_xadd_us, wall_us(), __ATOMIC_RELEASE);
	free(o.p);
	redisFree(c);
	return NULL;
fail:
	__atomic_store_n(&b->producer_failed, 1, __ATOMIC_RELEASE);
	free(o.p);
	redisFree(c);
	return NULL;
}

/* ---------------------------------------------------------------- watcher */

struct watcher {
	sqlite3 *db;
	sqlite3_stmt *get;   /* SELECT status, event_count FROM snapshots WHERE run = ? */
	sqlite3_stmt *ev;    /* SELECT seq FROM events WHERE run = ? AND seq >= ? */
	sqlite3_stmt *begin, *commit;
};

static bool watcher_open(struct watcher *w, const char *path)
{
	if (!w->db) {
		if (access(path, F_OK) != 0)
			return false;
		if (sqlite3_open_v2(path, &w->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
			sqlite3_close(w->db);
			w->db = NULL;
			return false;
		}
		sqlite3_busy_timeout(w->db, 50);
	}
	if (!w->get) {
		/* Both tables: streamvisor's events(run, seq, ...) with its unique
		 * (run, seq) index, and the peer's events(run, seq, ...) PRIMARY
		 * KEY(run, seq); the same snapshots(run, status, event_count). */
		if (sqlite3_prepare_v2(w->db, "SELECT status, event_count FROM snapshots WHERE run = ?", -1,
				       &w->get, NULL) != SQLITE_OK ||
		    sqlite3_prepare_v2(w->db, "SELECT seq FROM events WHERE run = ?1 AND seq >= ?2", -1, &w->ev,
				       NULL) != SQLITE_OK) {
			/* no table yet: reopen later so the schema is read afresh */
			sqlite3_finalize(w->get);
			sqlite3_finalize(w->ev);
			w->get = w->ev = NULL;
			sqlite3_close(w->db);
			w->db = NULL;
			return false;
		}
		if (sqlite3_prepare_v2(w->db, "BEGIN", -1, &w->begin, NULL) != SQLITE_OK ||
		    sqlite3_prepare_v2(w->db, "COMMIT", -1, &w->commit, NULL) != SQLITE_OK)
			die("sqlite: %s", sqlite3_errmsg(w->db));
	}
	return true;
}

static void watcher_close(struct watcher *w)
{
	sqlite3_finalize(w->get);
	sqlite3_finalize(w->ev);
	sqlite3_finalize(w->begin);
	sqlite3_finalize(w->commit);
	sqlite3_close(w->db);
	memset(w, 0, sizeof(*w));
}

/* Looks up a run: returns its event_count (0 if absent) and whether it is
 * 'completed'.  -1 on a busy/locked read (try again next poll). */
static long watcher_get(struct watcher *w, const char *run, size_t len, bool *completed)
{
	*completed = false;
	sqlite3_reset(w->get);
	sqlite3_bind_text(w->get, 1, run, (int)len, SQLITE_STATIC);
	int rc = sqlite3_step(w->get);
	if (rc == SQLITE_ROW) {
		const unsigned char *st = sqlite3_column_text(w->get, 0);
		long n = (long)sqlite3_column_int64(w->get, 1);
		*completed = st && strcmp((const char *)st, "completed") == 0;
		sqlite3_reset(w->get);
		return n;
	}
	sqlite3_reset(w->get);
	if (rc == SQLITE_DONE)
		return 0;
	return -1;
}

/* A sampled run's stored events (the events table, not the snapshot row,
 * which is a checkpoint that may lag): the seqs >= from not seen before
 * are marked in seen[1..nev] and their XADD -> stored latency appended to
 * lat (send times in ts[0..nev-1], µs, 0 = not sent).  Returns how many
 * were new, or -1 on a busy/locked read. */
static long watcher_events(struct watcher *w, const char *run, size_t len, long from, bool *seen, long nev,
			   const int64_t *ts, int64_t now, int64_t *lat, size_t *nlat)
{
	sqlite3_reset(w->ev);
	sqlite3_bind_text(w->ev, 1, run, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(w->ev, 2, from);
	long fresh = 0;
	int rc;
	while ((rc = sqlite3_step(w->ev)) == SQLITE_ROW) {
		long seq = (long)sqlite3_column_int64(w->ev, 0);
		if (seq < 1 || seq > nev || seen[seq])
			continue;
		seen[seq] = true;
		fresh++;
		int64_t t = __atomic_load_n(&ts[seq - 1], __ATOMIC_ACQUIRE);
		if (t)
			lat[(*nlat)++] = now - t;
	}
	sqlite3_reset(w->ev);
	return rc == SQLITE_DONE ? fresh : -1;
}

/* ------------------------------------------- the workers' side (CPU, split) */

/* What svbench reads of each persistence worker: its heartbeat in
 * NS:workers (pid, beat_ms, the "split" counters and cpu_us the workers
 * publish) and its CPU from /proc/PID/stat.  With --pids (the peer, which
 * has no heartbeat) only the CPU of those processes. */
static const char *const split_keys[] = { "redis", "decode", "reduce", "insert", "commit", "ack" };
#define SPLIT_N 6

struct wside {
	char name[256];
	pid_t pid;
	int64_t beat_ms;
	bool has_split;
	uint64_t split_us[SPLIT_N];
	int64_t cpu_us;            /* from the heartbeat; -1: absent */
};

/* utime + stime of pid in clock ticks, or -1. */
static long long proc_cpu_ticks(pid_t pid)
{
	char buf[1024];
	const char *p = util_proc_stat(pid, buf, sizeof(buf));
	if (!p)
		return -1;
	unsigned long long ut, st;
	/* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
	if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

static double pids_cpu_s(const pid_t *pids, size_t n)
{
	long long t = 0;
	for (size_t i = 0; i < n; i++) {
		long long v = proc_cpu_ticks(pids[i]);
		if (v > 0)
			t += v;
	}
	return (double)t / (double)sysconf(_SC_CLK_TCK);
}

/* The persistence workers' heartbeats in key (HGETALL), at most max;
 * returns the count, -1 when Redis failed (a heartbeat that is not JSON,
 * of another kind or of a dead pid is left out). */
static int wside_read(redisContext *c, const char *key, struct wside *out, int max)
{
	redisReply *r = redisCommand(c, "HGETALL %s", key);
	if (!r)
		return -1;
	int n = 0;
	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i + 1 < r->elements && n < max; i += 2) {
			if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i + 1]->type != REDIS_REPLY_STRING)
				continue;
			json_t *j = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0, NULL);
			const char *kind = json_string_value(json_object_get(j, "kind"));
			json_int_t pid = json_integer_value(json_object_get(j, "pid"));
			if (!kind || strcmp(kind, "persistence") != 0 || pid <= 0 || pid > INT_MAX ||
			    (kill((pid_t)pid, 0) < 0 && errno == ESRCH)) {
				json_decref(j);
				continue;
			}
			struct wside *w = &out[n++];
			memset(w, 0, sizeof(*w));
			snprintf(w->name, sizeof(w->name), "%s", r->element[i]->str);
			w->pid = (pid_t)pid;
			w->beat_ms = (int64_t)json_integer_value(json_object_get(j, "beat_ms"));
			json_t *sp = json_object_get(j, "split");
			w->has_split = json_is_object(sp);
			for (int k = 0; w->has_split && k < SPLIT_N; k++) {
				char kn[32];
				snprintf(kn, sizeof(kn), "%s_us", split_keys[k]);
				json_t *v = json_object_get(sp, kn);
				w->split_us[k] = json_is_integer(v) && json_integer_value(v) > 0
							 ? (uint64_t)json_integer_value(v) : 0;
			}
			json_t *cu = json_object_get(j, "cpu_us");
			w->cpu_us = json_is_integer(cu) ? (int64_t)json_integer_value(cu) : -1;
			json_decref(j);
		}
	freeReplyObject(r);
	return n;
}

static const struct wside *wside_find(const struct wside *v, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

#define WSIDE_MAX 256

/* The workers' side over the workload: CPU from /proc, and the deltas of
 * the heartbeats' split and cpu_us between the last beat before the start
 * and the first beat after the end (the counters are only published at
 * beats, so svbench waits up to beat_wait_ms for a beat of every worker
 * newer than the end). */
struct wmeasure {
	const char *ns;
	redisContext *c;           /* NULL: no heartbeats read (--pids given) */
	char key[160];
	pid_t pids[WSIDE_MAX];
	size_t npids;
	bool pids_given;
	struct wside before[WSIDE_MAX];
	int nbefore;
	double cpu0, cpu1;
	long beat_wait_ms;
};

static void wmeasure_start(struct wmeasure *m, const char *url)
{
	if (!m->pids_given) {
		m->c = redis_open(url);
		snprintf(m->key, sizeof(m->key), "%s:workers", m->ns);
		m->nbefore = wside_read(m->c, m->key, m->before, WSIDE_MAX);
		if (m->nbefore < 0)
			die("HGETALL %s: %s", m->key, m->c->errstr);
		for (int i = 0; i < m->nbefore; i++)
			m->pids[m->npids++] = m->before[i].pid;
	}
	m->cpu0 = pids_cpu_s(m->pids, m->npids);
}

/* At the end of the workload: the CPU (at once), then the beats. */
static void wmeasure_end(struct wmeasure *m, long events, int64_t t_end_us, double secs)
{
	m->cpu1 = pids_cpu_s(m->pids, m->npids);
	double wcpu = m->cpu1 - m->cpu0;
	printf(",\"workers_measured\":%zu", m->npids);
	if (m->npids)
		printf(",\"worker_cpu_s\":%.3f,\"events_per_worker_cpu_s\":%.0f,\"cpu_source\":\"%s\"", wcpu,
		       wcpu > 0 ? (double)events / wcpu : 0.0, m->pids_given ? "pids" : "heartbeat_pids");
	else
		printf(",\"worker_cpu_s\":null,\"events_per_worker_cpu_s\":null,\"cpu_source\":null");
	bool any_split = false;
	for (int i = 0; i < m->nbefore; i++)
		any_split = any_split || m->before[i].has_split;
	if (!m->c || !any_split) {
		printf(",\"split\":null,\"split_wall\":null,\"split_ms\":null");
		return;
	}
	/* wait for a beat after the end from every worker of the start */
	struct wside after[WSIDE_MAX];
	int nafter = 0;
	int64_t end_ms = t_end_us / 1000, deadline = util_mono_us() + m->beat_wait_ms * 1000;
	bool fresh = false, restarted = false;
	for (;;) {
		nafter = wside_read(m->c, m->key, after, WSIDE_MAX);
		fresh = nafter >= 0;
		for (int i = 0; fresh && i < m->nbefore; i++) {
			const struct wside *a = wside_find(after, nafter, m->before[i].name);
			fresh = a && (a->beat_ms > end_ms || a->pid != m->before[i].pid);
		}
		if (fresh || util_mono_us() > deadline)
			break;
		sleep_us(20000);
	}
	uint64_t tot[SPLIT_N] = { 0 }, sum = 0;
	int64_t hb_cpu = 0, window_ms = 0;
	for (int i = 0; nafter > 0 && i < m->nbefore; i++) {
		const struct wside *b = &m->before[i], *a = wside_find(after, nafter, b->name);
		if (!a || a->pid != b->pid) {
			restarted = true;
			continue;
		}
		for (int k = 0; k < SPLIT_N; k++)
			if (a->split_us[k] >= b->split_us[k])
				tot[k] += a->split_us[k] - b->split_us[k];
		if (a->cpu_us >= 0 && b->cpu_us >= 0 && a->cpu_us >= b->cpu_us)
			hb_cpu += a->cpu_us - b->cpu_us;
		window_ms += a->beat_ms - b->beat_ms;
	}
	for (int k = 0; k < SPLIT_N; k++)
		sum += tot[k];
	/* shares of their sum, and of the workload's wall time (summed over
	 * the workers: a standby adds nothing, two active workers can pass 1) */
	if (sum) {
		printf(",\"split\":{");
		for (int k = 0; k < SPLIT_N; k++)
			printf("%s\"%s\":%.3f", k ? "," : "", split_keys[k], (double)tot[k] / (double)sum);
		printf("},\"split_wall\":{");
		for (int k = 0; k < SPLIT_N; k++)
			printf("%s\"%s\":%.3f", k ? "," : "", split_keys[k],
			       secs > 0 ? (double)tot[k] / (secs * 1e6) : 0.0);
		printf("}");
	} else {
		printf(",\"split\":null,\"split_wall\":null");
	}
	printf(",\"split_ms\":{");
	for (int k = 0; k < SPLIT_N; k++)
		printf("%s\"%s\":%.1f", k ? "," : "", split_keys[k], (double)tot[k] / 1000.0);
	printf("},\"split_beats_fresh\":%s,\"split_window_s\":%.3f,\"hb_cpu_s\":%.3f,\"worker_restarted\":%s",
	       fresh ? "true" : "false", (double)window_ms / 1000.0, (double)hb_cpu / 1e6, restarted ? "true" : "false");
}

static void wmeasure_free(struct wmeasure *m)
{
	if (m->c)
		redisFree(m->c);
	m->c = NULL;
}

/* --pids 12,34: the processes whose CPU is the workers' (the peer). */
static void parse_pids(struct wmeasure *m, const char *s)
{
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		die("out of memory");
	for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (m->npids == WSIDE_MAX)
			die("--pids: at most %d", WSIDE_MAX);
		m->pids[m->npids++] = (pid_t)parse_long("--pids", t, 1, INT_MAX);
	}
	free(copy);
	m->pids_given = true;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The workload: produce, watch sampled runs' events and terminal rows,
 * wait until every run's row is 'completed' with all its events. */
static int run_workload(struct bench *b, struct wmeasure *m)
{
	build_layout(b);
	const long nev = b->events;
	long nsampled = (b->runs + b->sample - 1) / b->sample;
	b->ts_us = xmalloc(sizeof(int64_t) * (size_t)(nsampled * nev));
	long *nseen = xmalloc(sizeof(long) * (size_t)nsampled);       /* stored events per sampled run */
	long *from = xmalloc(sizeof(long) * (size_t)nsampled);        /* lowest seq not seen stored */
	bool *evseen = xmalloc(sizeof(bool) * (size_t)(nsampled * (nev + 1)));
	bool *term = xmalloc(sizeof(bool) * (size_t)nsampled);        /* terminal row seen */
	bool *done = xmalloc(sizeof(bool) * (size_t)b->runs);
	int64_t *lat = xmalloc(sizeof(int64_t) * (size_t)(nsampled * nev));
	int64_t *tlat = xmalloc(sizeof(int64_t) * (size_t)nsampled);
	size_t nlat = 0, ntlat = 0;
	for (long s = 0; s < nsampled; s++)
		from[s] = 1;

	struct watcher w = { 0 };
	wmeasure_start(m, b->redis_url);
	pthread_t th;
	int64_t start_mono = util_mono_us();
	if (pthread_create(&th, NULL, producer_main, b) != 0)
		die("pthread_create failed");

	long lo = 0;          /* every run below lo is complete */
	long lo_s = 0;        /* every sampled run below lo_s is stored and terminal */
	int64_t t_done_us = 0;
	char rid[96];
	bool timed_out = false;
	int64_t deadline = start_mono + (int64_t)b->timeout_s * 1000000;

	for (;;) {
		if (__atomic_load_n(&b->producer_failed, __ATOMIC_ACQUIRE))
			die("producer failed: %s", b->producer_err);
		if (util_mono_us() > deadline) {
			timed_out = true;
			break;
		}
		long started = __atomic_load_n(&b->runs_started, __ATOMIC_ACQUIRE);
		if (started && watcher_open(&w, b->sqlite_path)) {
			if (sqlite3_step(w.begin) != SQLITE_DONE) {
				sqlite3_reset(w.begin);
				goto next;
			}
			sqlite3_reset(w.begin);
			/* latency: sampled runs in flight.  XADD -> stored from the
			 * events table; terminal XADD -> terminal row from snapshots */
			for (long s = lo_s; s < nsampled && s * b->sample < started; s++) {
				long idx = s * b->sample;
				size_t len = run_id(b, idx, rid, sizeof(rid));
				const int64_t *ts = &b->ts_us[s * nev];
				if (nseen[s] < nev) {
					long n = watcher_events(&w, rid, len, from[s], &evseen[s * (nev + 1)], nev, ts,
								wall_us(), lat, &nlat);
					if (n < 0)
						break;
					nseen[s] += n;
					while (from[s] <= nev && evseen[s * (nev + 1) + from[s]])
						from[s]++;
				}
				int64_t tlast = __atomic_load_n(&ts[nev - 1], __ATOMIC_ACQUIRE);
				if (!term[s] && tlast) {
					bool comp;
					long n = watcher_get(&w, rid, len, &comp);
					if (n < 0)
						break;
					if (comp && n == nev) {
						tlat[ntlat++] = wall_us() - tlast;
						term[s] = true;
						done[idx] = true;
					}
				}
			}
			while (lo_s < nsampled && nseen[lo_s] >= nev && term[lo_s])
				lo_s++;
			/* completion: walk up from the lowest incomplete run */
			while (lo < b->runs && lo < started) {
				if (!done[lo]) {
					size_t len = run_id(b, lo, rid, sizeof(rid));
					bool comp;
					long n = watcher_get(&w, rid, len, &comp);
					if (n < 0 || !comp || n != nev)
						break;
					done[lo] = true;
				}
				lo++;
			}
			sqlite3_step(w.commit);
			sqlite3_reset(w.commit);
			if (lo == b->runs) {
				t_done_us = wall_us();
				break;
			}
		}
next:
		sleep_us(b->poll_us);
	}

	if (timed_out) {
		long incomplete = b->runs - lo;
		if (w.get) {
			incomplete = 0;
			for (long i = lo; i < b->runs; i++) {
				if (done[i])
					continue;
				size_t len = run_id(b, i, rid, sizeof(rid));
				bool comp;
				long n = watcher_get(&w, rid, len, &comp);
				if (!comp || n != nev)
					incomplete++;
			}
		}
		fprintf(stderr, "svbench: timeout after %lds: %ld of %ld runs incomplete (%ld of %ld events sent)\n",
			b->timeout_s, incomplete, b->runs, __atomic_load_n(&b->produced, __ATOMIC_ACQUIRE),
			b->runs * nev);
		return 1;
	}
	pthread_join(th, NULL);
	if (b->producer_failed)
		die("producer failed: %s", b->producer_err);

	qsort(lat, nlat, sizeof(*lat), cmp_i64);
	qsort(tlat, ntlat, sizeof(*tlat), cmp_i64);
	long events = b->runs * nev;
	double secs = (double)(t_done_us - b->t_first_xadd_us) / 1e6;
	double prod_secs = (double)(b->t_last_xadd_us - b->t_first_xadd_us) / 1e6;
	/* latency_ms: XADD -> the event's row in events (read-only polls of
	 * sampled runs); terminal_latency_ms: the run's last XADD -> its
	 * terminal snapshot row with every event */
	printf("{\"events\":%ld,\"runs\":%ld,\"interleave\":%ld,\"seconds\":%.3f,\"events_per_s\":%.0f,"
	       "\"latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"samples\":%zu},"
	       "\"terminal_latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"samples\":%zu},"
	       "\"offered_rate\":%.0f,\"produced_per_s\":%.0f",
	       events, b->runs, b->interleave, secs, secs > 0 ? (double)events / secs : 0.0,
	       pct_ms(lat, nlat, 50), pct_ms(lat, nlat, 99), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0, nlat,
	       pct_ms(tlat, ntlat, 50), pct_ms(tlat, ntlat, 99), ntlat ? (double)tlat[ntlat - 1] / 1000.0 : 0.0,
	       ntlat, b->rate, prod_secs > 0 ? (double)events / prod_secs : 0.0);
	wmeasure_end(m, events, t_done_us, secs);
	printf(",\"svbench_cpu_s\":%.2f}\n", cpu_s());
	fflush(stdout);

	watcher_close(&w);
	wmeasure_free(m);
	free(b->ts_us);
	free(nseen);
	free(from);
	free(evseen);
	free(term);
	free(done);
	free(lat);
	free(tlat);
	free(b->layout);
	return 0;
}

/* ------------------------------------------------------- new streams */

/* --new-streams: N new streams, one at a time; XADD -> snapshot seen. */
static int run_new_streams(struct bench *b, long n, long interval_ms)
{
	build_layout(b);
	redisContext *c = redis_open(b->redis_url);
	struct watcher w = { 0 };
	int64_t *lat = xmalloc(sizeof(int64_t) * (size_t)n);
	size_t nlat = 0;
	long failed = 0;
	char rid[96], sname[512], data[256], seqs[24], tss[24];

	for (long i = 0; i < n; i++) {
		size_t rlen = run_id(b, i, rid, sizeof(rid));
		size_t slen = run_stream(b, rid, rlen, sname, sizeof(sname));
		const char *type;
		size_t dlen = event_data(b, i, 1, &type, data, sizeof(data));
		redisReply *r = redisCommand(c, "EXISTS %b", sname, slen);
		if (!r || r->type != REDIS_REPLY_INTEGER)
			die("EXISTS %s: %s", sname, r ? r->str : c->errstr);
		if (r->integer)
			die("%s exists already: not a new stream (use another --prefix)", sname);
		freeReplyObject(r);
		int64_t tus = wall_us();
		snprintf(seqs, sizeof(seqs), "1");
		snprintf(tss, sizeof(tss), "%" PRId64, tus / 1000);
		int64_t t0 = util_mono_us();
		r = redisCommand(c, "XADD %b * run %b type %s seq %s ts %s data %b", sname, slen, rid, rlen, type, seqs,
				 tss, data, dlen);
		if (!r || r->type == REDIS_REPLY_ERROR)
			die("XADD %s: %s", sname, r ? r->str : c->errstr);
		freeReplyObject(r);
		int64_t deadline = t0 + b->timeout_s * 1000000;
		bool seen = false;
		while (!seen) {
			if (watcher_open(&w, b->sqlite_path)) {
				/* the event's row (the snapshot row is a checkpoint
				 * that may be written later) */
				bool ev[2] = { false, false };
				int64_t ts0 = 0, l0;
				size_t n0 = 0;
				long got = watcher_events(&w, rid, rlen, 1, ev, 1, &ts0, 0, &l0, &n0);
				if (got >= 1) {
					lat[nlat++] = util_mono_us() - t0;
					seen = true;
					break;
				}
			}
			if (util_mono_us() > deadline)
				break;
			sleep_us(b->poll_us);
		}
		if (!seen) {
			failed++;
			fprintf(stderr, "svbench: %s: run %s not persisted within %lds\n", sname, rid, b->timeout_s);
		} else if (getenv("SVBENCH_VERBOSE")) {
			fprintf(stderr, "svbench: %s persisted after %.2f ms\n", sname, (double)lat[nlat - 1] / 1000.0);
		}
		if (i + 1 < n)
			sleep_us(interval_ms * 1000);
	}
	qsort(lat, nlat, sizeof(*lat), cmp_i64);
	printf("{\"new_streams\":%ld,\"interval_ms\":%ld,\"persisted\":%zu,\"failed\":%ld,"
	       "\"first_event_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"min\":%.2f}}\n",
	       n, interval_ms, nlat, failed, pct_ms(lat, nlat, 50), pct_ms(lat, nlat, 99),
	       nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0, nlat ? (double)lat[0] / 1000.0 : 0.0);
	fflush(stdout);
	watcher_close(&w);
	redisFree(c);
	free(lat);
	free(b->layout);
	return failed ? 1 : 0;
}

/* ------------------------------------------------------- control socket */

static json_t *ctl_status(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		die("--socket: path too long");
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect %s: %s", path, strerror(errno));
	static const char req[] = "{\"cmd\":\"status\"}\n";
	if (util_write_all(fd, req, sizeof(req) - 1) < 0)
		die("write %s: %s", path, strerror(errno));
	size_t cap = 65536, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			char *p = realloc(buf, cap);
			if (!p)
				die("out of memory");
			buf = p;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 5000) <= 0)
			die("control socket: no reply");
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("control socket: %s", n < 0 ? strerror(errno) : "closed before a reply");
		len += (size_t)n;
		buf[len] = 0;
		if (memchr(buf, '\n', len))
			break;
	}
	close(fd);
	json_error_t je;
	json_t *r = json_loadb(buf, strcspn(buf, "\n"), 0, &je);
	free(buf);
	if (!r || !json_is_true(json_object_get(r, "ok")))
		die("status: bad reply (%s)", r ? "ok=false" : je.text);
	return r;
}

static pid_t proc_ppid(pid_t pid)
{
	char buf[512];
	const char *p = util_proc_stat(pid, buf, sizeof(buf));
	if (!p)
		return -1;
	char st;
	int ppid;
	if (sscanf(p, "%c %d", &st, &ppid) != 2)
		return -1;
	return ppid;
}

/* kB value of a "Key:" line of /proc/PID/status, or -1. */
static long proc_status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t kl = strlen(key);
	long v = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Children of pid (all its threads), into out; returns the count. */
static size_t proc_children(pid_t pid, pid_t *out, size_t max)
{
	char path[320], buf[4096];
	size_t n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)pid, de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		char *p = buf, *end;
		for (;;) {
			long v = strtol(p, &end, 10);
			if (end == p)
				break;
			if (n < max)
				out[n++] = (pid_t)v;
			p = end;
		}
	}
	closedir(d);
	return n;
}

static bool pid_in(pid_t p, const pid_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == p)
			return true;
	return false;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static json_t *find_worker(json_t *st, const char *name)
{
	size_t i;
	json_t *wk;
	json_array_foreach(json_object_get(st, "workers"), i, wk)
		if (strcmp(jstr(wk, "name"), name) == 0)
			return wk;
	return NULL;
}

static bool is_running(json_t *wk)
{
	const char *s = json_string_value(json_object_get(wk, "state"));
	return s && strcmp(s, "RUNNING") == 0 && json_integer_value(json_object_get(wk, "pid")) > 0;
}

static pid_t master_pid_of(json_t *st)
{
	size_t i;
	json_t *wk;
	json_array_foreach(json_object_get(st, "workers"), i, wk) {
		pid_t p = (pid_t)json_integer_value(json_object_get(wk, "pid"));
		if (p > 0) {
			pid_t pp = proc_ppid(p);
			if (pp > 1)
				return pp;
		}
	}
	return -1;
}

/* The NS:workers field whose heartbeat carries pid, or NULL (malloc'd). */
static char *hb_field_for_pid(redisContext *c, const char *key, pid_t pid)
{
	redisReply *r = redisCommand(c, "HGETALL %s", key);
	if (!r)
		die("Redis: %s", c->errstr);
	char *name = NULL;
	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i + 1 < r->elements && !name; i += 2) {
			json_t *j = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0, NULL);
			if (j && json_integer_value(json_object_get(j, "pid")) == pid)
				name = strdup(r->element[i]->str);
			json_decref(j);
		}
	freeReplyObject(r);
	return name;
}

static pid_t hb_pid(redisContext *c, const char *key, const char *field)
{
	redisReply *r = redisCommand(c, "HGET %s %s", key, field);
	if (!r)
		die("Redis: %s", c->errstr);
	pid_t p = 0;
	if (r->type == REDIS_REPLY_STRING) {
		json_t *j = json_loadb(r->str, r->len, 0, NULL);
		p = (pid_t)json_integer_value(json_object_get(j, "pid"));
		json_decref(j);
	}
	freeReplyObject(r);
	return p;
}

static void print_stats(const char *name, int64_t *v, size_t n, bool comma)
{
	qsort(v, n, sizeof(*v), cmp_i64);
	printf("\"%s\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"n\":%zu}%s", name, pct_ms(v, n, 50), pct_ms(v, n, 99),
	       n ? (double)v[n - 1] / 1000.0 : 0.0, n, comma ? "," : "");
}

static int cmd_respawn(int argc, char **argv)
{
	const char *sock = NULL, *url = "redis://127.0.0.1:6379/0", *ns = "sv", *pool = NULL;
	long count = 20, wait_s = 30;
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' }, { "redis", required_argument, NULL, 'r' },
		{ "namespace", required_argument, NULL, 'n' }, { "count", required_argument, NULL, 'c' },
		{ "pool", required_argument, NULL, 'p' }, { "timeout", required_argument, NULL, 't' },
		{ 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'r': url = optarg; break;
		case 'n': ns = optarg; break;
		case 'c': count = parse_long("--count", optarg, 1, 100000); break;
		case 'p': pool = optarg; break;
		case 't': wait_s = parse_long("--timeout", optarg, 1, 86400); break;
		default: die("usage: svbench respawn --socket CTLSOCK [--redis URL] [--namespace sv] [--count 20] [--pool P]");
		}
	}
	if (!sock)
		die("respawn: --socket is required");
	redisContext *c = redis_open(url);
	char key[256];
	snprintf(key, sizeof(key), "%s:workers", ns);
	int64_t *fork_us = xmalloc(sizeof(int64_t) * (size_t)count);
	int64_t *hb_us = xmalloc(sizeof(int64_t) * (size_t)count);
	size_t nfork = 0, nhb = 0;
	pid_t kids[4096];
	long turn = 0;

	for (long round = 0; round < count; round++) {
		/* pick the next RUNNING worker (round robin over names) */
		json_t *st = ctl_status(sock);
		json_t *workers = json_object_get(st, "workers");
		size_t nw = json_array_size(workers), pick = nw;
		for (size_t k = 0; k < nw; k++) {
			json_t *wk = json_array_get(workers, (size_t)(turn + (long)k) % nw);
			const char *p = json_string_value(json_object_get(wk, "pool"));
			if (is_running(wk) && (!pool || (p && strcmp(p, pool) == 0))) {
				pick = (size_t)(turn + (long)k) % nw;
				break;
			}
		}
		turn = (long)pick + 1;
		if (pick == nw)
			die("respawn: no RUNNING worker%s%s", pool ? " in pool " : "", pool ? pool : "");
		json_t *wk = json_array_get(workers, pick);
		char *name = strdup(json_string_value(json_object_get(wk, "name")));
		pid_t victim = (pid_t)json_integer_value(json_object_get(wk, "pid"));
		pid_t master = proc_ppid(victim);
		json_decref(st);
		if (master <= 1)
			die("respawn: cannot find the master of pid %d", (int)victim);
		/* the victim's heartbeat field (it may not have registered yet) */
		char *field = NULL;
		for (int tries = 0; !(field = hb_field_for_pid(c, key, victim)); tries++) {
			if (tries == 500)
				die("respawn: no field of %s holds pid %d", key, (int)victim);
			sleep_us(10000);
		}
		size_t nkids = proc_children(master, kids, ARRAY_SIZE(kids));

		int64_t t0 = util_mono_us();
		if (kill(victim, SIGKILL) < 0)
			die("kill %d: %s", (int)victim, strerror(errno));
		/* (a) fork: a child of the master that was not there before */
		pid_t newpid = 0;
		pid_t now_kids[4096];
		while (!newpid) {
			size_t n = proc_children(master, now_kids, ARRAY_SIZE(now_kids));
			for (size_t i = 0; i < n && !newpid; i++)
				if (now_kids[i] != victim && !pid_in(now_kids[i], kids, nkids))
					newpid = now_kids[i];
			if (!newpid) {
				if (util_mono_us() - t0 > wait_s * 1000000)
					die("respawn: no new child of %d after %lds", (int)master, wait_s);
				sleep_us(20);
			}
		}
		fork_us[nfork++] = util_mono_us() - t0;
		/* (b) heartbeat with the new pid */
		for (;;) {
			if (hb_pid(c, key, field) == newpid) {
				hb_us[nhb++] = util_mono_us() - t0;
				break;
			}
			if (util_mono_us() - t0 > wait_s * 1000000)
				die("respawn: %s never heartbeat with pid %d", field, (int)newpid);
			sleep_us(200);
		}
		/* wait for RUNNING with the new pid before the next round */
		for (;;) {
			json_t *s2 = ctl_status(sock);
			json_t *w2 = find_worker(s2, name);
			bool ok = w2 && is_running(w2) && json_integer_value(json_object_get(w2, "pid")) == newpid;
			json_decref(s2);
			if (ok)
				break;
			if (util_mono_us() - t0 > wait_s * 1000000)
				die("respawn: %s not RUNNING again after %lds", name, wait_s);
			sleep_us(20000);
		}
		fprintf(stderr, "svbench respawn: %s pid %d -> %d fork %.2f ms heartbeat %.2f ms\n", name, (int)victim,
			(int)newpid, (double)fork_us[nfork - 1] / 1000, (double)hb_us[nhb - 1] / 1000);
		free(name);
		free(field);
	}
	printf("{\"rounds\":%ld,", count);
	print_stats("fork_ms", fork_us, nfork, true);
	print_stats("heartbeat_ms", hb_us, nhb, false);
	printf("}\n");
	free(fork_us);
	free(hb_us);
	redisFree(c);
	return 0;
}

static int cmd_rss(int argc, char **argv)
{
	const char *sock = NULL;
	pid_t master = 0;
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' }, { "pid", required_argument, NULL, 'p' },
		{ 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'p': master = (pid_t)parse_long("--pid", optarg, 1, INT_MAX); break;
		default: die("usage: svbench rss --socket CTLSOCK [--pid MASTERPID]");
		}
	}
	if (!sock)
		die("rss: --socket is required");
	json_t *st = ctl_status(sock);
	if (!master)
		master = master_pid_of(st);
	if (master <= 0)
		die("rss: cannot find the master pid (no running worker); use --pid");
	printf("{\"master\":{\"pid\":%d,\"vmrss_kb\":%ld,\"rssanon_kb\":%ld},\"workers\":[", (int)master,
	       proc_status_kb(master, "VmRSS"), proc_status_kb(master, "RssAnon"));
	size_t i;
	json_t *wk;
	long maxanon = 0, maxrss = 0;
	bool first = true;
	json_array_foreach(json_object_get(st, "workers"), i, wk) {
		pid_t p = (pid_t)json_integer_value(json_object_get(wk, "pid"));
		if (p <= 0)
			continue;
		long rss = proc_status_kb(p, "VmRSS"), anon = proc_status_kb(p, "RssAnon");
		if (anon > maxanon)
			maxanon = anon;
		if (rss > maxrss)
			maxrss = rss;
		printf("%s{\"name\":\"%s\",\"pid\":%d,\"state\":\"%s\",\"vmrss_kb\":%ld,\"rssanon_kb\":%ld}", first ? "" : ",",
		       jstr(wk, "name"), (int)p, jstr(wk, "state"), rss, anon);
		first = false;
	}
	/* the monitor and any other children of the master that are not workers */
	pid_t kids[1024];
	size_t nk = proc_children(master, kids, ARRAY_SIZE(kids));
	printf("],\"other_children\":[");
	first = true;
	for (size_t k = 0; k < nk; k++) {
		bool isw = false;
		json_array_foreach(json_object_get(st, "workers"), i, wk)
			if (json_integer_value(json_object_get(wk, "pid")) == kids[k])
				isw = true;
		if (isw)
			continue;
		printf("%s{\"pid\":%d,\"vmrss_kb\":%ld,\"rssanon_kb\":%ld}", first ? "" : ",", (int)kids[k],
		       proc_status_kb(kids[k], "VmRSS"), proc_status_kb(kids[k], "RssAnon"));
		first = false;
	}
	printf("],\"worker_rssanon_kb_max\":%ld,\"worker_vmrss_kb_max\":%ld}\n", maxanon, maxrss);
	json_decref(st);
	return 0;
}

/* ------------------------------------------------------- svbench tools */

/* The tools benchmark (issue 13): N tool.call events for one tool, each
 * call's output found by an XREAD reader on the same stream. */
struct tbench {
	const char *redis_url, *stream, *tool, *args;
	char prefix[64];
	long calls, runs, batch, window, timeout_s;
	double rate;
	int64_t *sent_us;        /* atomic: wall µs just before each call's XADD (0: not yet) */
	int64_t *got_us;         /* reader only: when its output was read */
	long produced;           /* atomic: calls sent (XADD replied) */
	long received;           /* atomic: distinct outputs read */
	int64_t t_first_us, t_last_xadd_us;
	int producer_failed;     /* atomic */
	char producer_err[256];
	int stop;                /* atomic: the reader gave up */
};

static void tb_call(const struct tbench *b, long i, char *run, size_t rcap, char *cid, size_t ccap)
{
	snprintf(run, rcap, "%s-r%ld", b->prefix, i % b->runs);
	snprintf(cid, ccap, "c%ld", i);
}

static void *tools_producer(void *arg)
{
	struct tbench *b = arg;
	redisContext *c = redis_open(b->redis_url);
	struct obuf o = { 0 };
	char data[1024], run[96], cid[32];
	long in_buf = 0, inflight = 0;
	int64_t t0 = 0;
	for (long i = 0; i < b->calls; i++) {
		bool must_flush = false;
		if (b->rate > 0) {
			if (!t0)
				t0 = util_mono_us();
			int64_t due = t0 + (int64_t)((double)i * 1e6 / b->rate);
			if (due > util_mono_us())
				must_flush = true;
		}
		if (b->window > 0 && i - __atomic_load_n(&b->received, __ATOMIC_ACQUIRE) >= b->window)
			must_flush = true;
		if (must_flush) {
			if (in_buf) {
				if (flush_out(NULL, c, &o) < 0)
					goto fail;
				inflight += in_buf;
				in_buf = 0;
			}
			for (; inflight; inflight--) {
				redisReply *r;
				if (redisGetReply(c, (void **)&r) != REDIS_OK)
					goto fail;
				if (r->type == REDIS_REPLY_ERROR) {
					snprintf(b->producer_err, sizeof(b->producer_err), "XADD: %s", r->str);
					freeReplyObject(r);
					goto fail_msg;
				}
				freeReplyObject(r);
				__atomic_add_fetch(&b->produced, 1, __ATOMIC_RELEASE);
			}
			if (b->rate > 0) {
				int64_t due = t0 + (int64_t)((double)i * 1e6 / b->rate), now = util_mono_us();
				if (due > now)
					sleep_us(due - now);
			}
			while (b->window > 0 && i - __atomic_load_n(&b->received, __ATOMIC_ACQUIRE) >= b->window) {
				if (__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE))
					goto out;
				sleep_us(20);
			}
		}
		tb_call(b, i, run, sizeof(run), cid, sizeof(cid));
		int dn = snprintf(data, sizeof(data), "{\"call_id\":\"%s\",\"name\":\"%s\",\"arguments\":%s}", cid,
				  b->tool, b->args);
		if (dn < 0 || (size_t)dn >= sizeof(data)) {
			snprintf(b->producer_err, sizeof(b->producer_err), "--args too long");
			goto fail_msg;
		}
		int64_t tus = wall_us();
		if (!b->t_first_us)
			__atomic_store_n(&b->t_first_us, tus, __ATOMIC_RELEASE);
		__atomic_store_n(&b->sent_us[i], tus, __ATOMIC_RELEASE);
		ob_raw(&o, "*13\r\n$4\r\nXADD\r\n");
		ob_bulk(&o, b->stream, strlen(b->stream));
		ob_raw(&o, "$1\r\n*\r\n$3\r\nrun\r\n");
		ob_bulk(&o, run, strlen(run));
		ob_raw(&o, "$4\r\ntype\r\n$9\r\ntool.call\r\n$3\r\nseq\r\n");
		ob_bulk_u64(&o, (uint64_t)(i / b->runs + 1));
		ob_raw(&o, "$2\r\nts\r\n");
		ob_bulk_u64(&o, (uint64_t)(tus / 1000));
		ob_raw(&o, "$4\r\ndata\r\n");
		ob_bulk(&o, data, (size_t)dn);
		in_buf++;
		if (in_buf >= b->batch || b->rate > 0 || b->window > 0) {
			if (flush_out(NULL, c, &o) < 0)
				goto fail;
			inflight += in_buf;
			in_buf = 0;
			/* keep at most one batch of replies outstanding */
			while (inflight > (b->rate > 0 || b->window > 0 ? 0 : b->batch)) {
				redisReply *r;
				if (redisGetReply(c, (void **)&r) != REDIS_OK)
					goto fail;
				bool err = r->type == REDIS_REPLY_ERROR;
				if (err)
					snprintf(b->producer_err, sizeof(b->producer_err), "XADD: %s", r->str);
				freeReplyObject(r);
				if (err)
					goto fail_msg;
				inflight--;
				__atomic_add_fetch(&b->produced, 1, __ATOMIC_RELEASE);
			}
		}
	}
	if (in_buf && flush_out(NULL, c, &o) < 0)
		goto fail;
	inflight += in_buf;
	for (; inflight; inflight--) {
		redisReply *r;
		if (redisGetReply(c, (void **)&r) != REDIS_OK)
			goto fail;
		freeReplyObject(r);
		__atomic_add_fetch(&b->produced, 1, __ATOMIC_RELEASE);
	}
out:
	b->t_last_xadd_us = wall_us();
	free(o.p);
	redisFree(c);
	return NULL;
fail:
	snprintf(b->producer_err, sizeof(b->producer_err), "producer: %s", c->errstr[0] ? c->errstr : "I/O error");
fail_msg:
	__atomic_store_n(&b->producer_failed, 1, __ATOMIC_RELEASE);
	free(o.p);
	redisFree(c);
	return NULL;
}

static const char *reply_field(const redisReply *fv, const char *k, size_t *len)
{
	for (size_t j = 0; j + 1 < fv->elements; j += 2)
		if (fv->element[j]->type == REDIS_REPLY_STRING && strcmp(fv->element[j]->str, k) == 0) {
			if (len)
				*len = fv->element[j + 1]->len;
			return fv->element[j + 1]->str;
		}
	return NULL;
}

static int cmd_tools(int argc, char **argv)
{
	struct tbench b = {
		.redis_url = "redis://127.0.0.1:6379/0", .stream = "events", .tool = "echo", .args = "{\"q\":1}",
		.calls = 1000, .runs = 10, .batch = 256, .timeout_s = 120,
	};
	static const struct option lo[] = {
		{ "redis", required_argument, NULL, 'r' }, { "stream", required_argument, NULL, 's' },
		{ "calls", required_argument, NULL, 'n' }, { "tool", required_argument, NULL, 'T' },
		{ "rate", required_argument, NULL, 'R' }, { "timeout", required_argument, NULL, 't' },
		{ "runs", required_argument, NULL, 'u' }, { "window", required_argument, NULL, 'w' },
		{ "batch", required_argument, NULL, 'b' }, { "args", required_argument, NULL, 'a' },
		{ "prefix", required_argument, NULL, 'p' }, { 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'r': b.redis_url = optarg; break;
		case 's': b.stream = optarg; break;
		case 'n': b.calls = parse_long("--calls", optarg, 1, 100000000); break;
		case 'T': b.tool = optarg; break;
		case 'R': {
			char *end;
			b.rate = strtod(optarg, &end);
			if (end == optarg || *end || b.rate < 0)
				die("--rate: bad value '%s'", optarg);
			break;
		}
		case 't': b.timeout_s = parse_long("--timeout", optarg, 1, 86400 * 7); break;
		case 'u': b.runs = parse_long("--runs", optarg, 1, 100000000); break;
		case 'w': b.window = parse_long("--window", optarg, 0, 100000000); break;
		case 'b': b.batch = parse_long("--batch", optarg, 1, 1000000); break;
		case 'a': {
			json_error_t je;
			json_t *j = json_loads(optarg, JSON_DECODE_ANY, &je);
			if (!j)
				die("--args: not JSON: %s", je.text);
			json_decref(j);
			b.args = optarg;
			break;
		}
		case 'p':
			if (strlen(optarg) >= sizeof(b.prefix) - 8)
				die("--prefix: too long");
			snprintf(b.prefix, sizeof(b.prefix), "%s", optarg);
			break;
		default:
			die("usage: svbench tools [--redis URL] [--stream events] [--calls 1000] [--tool echo] [--rate CALLS/S]\n"
			    "               [--window N] [--runs 10] [--args JSON] [--batch 256] [--timeout 120] [--prefix STR]");
		}
	}
	if (optind != argc)
		die("tools: unexpected argument '%s'", argv[optind]);
	if (strchr(b.tool, '"') || strchr(b.tool, '\\'))
		die("--tool: no quotes or backslashes");
	if (!b.prefix[0])
		snprintf(b.prefix, sizeof(b.prefix), "t%08" PRIx32, util_rand32());
	if (b.runs > b.calls)
		b.runs = b.calls;
	b.sent_us = xmalloc(sizeof(int64_t) * (size_t)b.calls);
	b.got_us = xmalloc(sizeof(int64_t) * (size_t)b.calls);
	unsigned char *nout = xmalloc((size_t)b.calls);

	redisContext *c = redis_open(b.redis_url);
	/* read from the stream's current last entry on: nothing older matches */
	char last[64] = "0-0";
	redisReply *r = redisCommand(c, "XREVRANGE %s + - COUNT 1", b.stream);
	if (!r)
		die("XREVRANGE: %s", c->errstr);
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
		snprintf(last, sizeof(last), "%s", r->element[0]->element[0]->str);
	freeReplyObject(r);

	pthread_t th;
	if (pthread_create(&th, NULL, tools_producer, &b))
		die("pthread_create failed");
	const size_t plen = strlen(b.prefix);
	long received = 0, errors = 0, dups = 0, foreign = 0;
	int64_t t_start = util_mono_us(), t_last_out = 0;
	int64_t deadline = t_start + b.timeout_s * 1000000;
	bool timed_out = false;
	while (received < b.calls) {
		if (__atomic_load_n(&b.producer_failed, __ATOMIC_ACQUIRE))
			die("%s", b.producer_err);
		if (util_mono_us() > deadline) {
			timed_out = true;
			break;
		}
		r = redisCommand(c, "XREAD COUNT 1000 BLOCK 500 STREAMS %s %s", b.stream, last);
		if (!r)
			die("XREAD: %s", c->errstr);
		int64_t now = wall_us();
		if (r->type == REDIS_REPLY_ERROR)
			die("XREAD: %s", r->str);
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
			redisReply *ents = r->element[0]->element[1];
			for (size_t k = 0; k < ents->elements; k++) {
				redisReply *e = ents->element[k], *fv = e->element[1];
				snprintf(last, sizeof(last), "%s", e->element[0]->str);
				const char *type = reply_field(fv, "type", NULL);
				if (!type || strcmp(type, "tool.output") != 0)
					continue;
				const char *run = reply_field(fv, "run", NULL), *cid = reply_field(fv, "call_id", NULL);
				if (!run || !cid || strncmp(run, b.prefix, plen) != 0 || run[plen] != '-' || cid[0] != 'c')
					continue;
				char *end;
				long i = strtol(cid + 1, &end, 10);
				char want[96], wcid[32];
				if (*end || i < 0 || i >= b.calls)
					continue;
				tb_call(&b, i, want, sizeof(want), wcid, sizeof(wcid));
				if (strcmp(want, run) != 0) {
					foreign++;
					continue;
				}
				if (nout[i]++) {
					dups++;
					continue;
				}
				b.got_us[i] = now;
				t_last_out = now;
				received++;
				__atomic_store_n(&b.received, received, __ATOMIC_RELEASE);
				size_t dl;
				const char *d = reply_field(fv, "data", &dl);
				json_t *dj = d ? json_loadb(d, dl, 0, NULL) : NULL;
				if (!dj || json_is_true(json_object_get(dj, "is_error")))
					errors++;
				json_decref(dj);
			}
		}
		freeReplyObject(r);
	}
	__atomic_store_n(&b.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	if (b.producer_failed)
		die("%s", b.producer_err);
	/* every call answered: one more short look for a late duplicate */
	r = timed_out ? NULL : redisCommand(c, "XREAD COUNT 10000 BLOCK 200 STREAMS %s %s", b.stream, last);
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
		redisReply *ents = r->element[0]->element[1];
		for (size_t k = 0; k < ents->elements; k++) {
			redisReply *fv = ents->element[k]->element[1];
			const char *type = reply_field(fv, "type", NULL), *run = reply_field(fv, "run", NULL);
			if (type && run && strcmp(type, "tool.output") == 0 && strncmp(run, b.prefix, plen) == 0)
				dups++;
		}
	}
	if (r)
		freeReplyObject(r);

	int64_t *lat = xmalloc(sizeof(int64_t) * (size_t)b.calls);
	size_t nl = 0;
	for (long i = 0; i < b.calls; i++)
		if (nout[i] && b.sent_us[i])
			lat[nl++] = b.got_us[i] - b.sent_us[i];
	double el = t_last_out > b.t_first_us && received ? (double)(t_last_out - b.t_first_us) / 1e6 : 0;
	printf("{\"tool\":\"%s\",\"calls\":%ld,\"runs\":%ld,\"rate\":%.0f,\"window\":%ld,\"outputs\":%ld,"
	       "\"missing\":%ld,\"duplicates\":%ld,\"errors\":%ld,\"foreign\":%ld,\"elapsed_s\":%.3f,"
	       "\"calls_per_s\":%.1f,",
	       b.tool, b.calls, b.runs, b.rate, b.window, received, b.calls - received, dups, errors, foreign, el,
	       el > 0 ? (double)received / el : 0.0);
	print_stats("latency_ms", lat, nl, false);
	printf("}\n");
	free(lat);
	free(nout);
	free(b.sent_us);
	free(b.got_us);
	redisFree(c);
	if (timed_out)
		fprintf(stderr, "svbench tools: %ld of %ld outputs after %lds\n", received, b.calls, b.timeout_s);
	return timed_out || dups || errors ? 1 : 0;
}

/* ------------------------------------------------------------------ crash
 *
 *   svbench crash --socket CTLSOCK [--redis URL] [--namespace sv] [--stream events]
 *           [--pool persist] [--count 7] [--min-held 256] [--gap-ms 300] [--timeout 30]
 *       Crash recovery (issue 14, done-when 6), under a load that someone
 *       else produces (tools/bench.sh --crash runs the standard workload
 *       beside it).  Each round picks a RUNNING worker of the pool, SIGSTOPs
 *       it, reads its pending entries of the stream (XPENDING ... consumer:
 *       the entries it holds, read and not acked yet), and SIGKILLs it when
 *       it holds at least --min-held (else SIGCONT and try again a
 *       millisecond later).  From the SIGKILL it times the fork of the
 *       replacement (a new child of the master) and the moment nothing is
 *       pending in the group between the first and the last held id (the
 *       pool's one writer read them all: ids read anew are later, and a
 *       standby that claims them keeps them pending until it acks them):
 *       every held entry was stored and acked again (acks follow the
 *       commit).  With several workers the victim is the one holding the
 *       most (never a standby).  Then it waits --gap-ms; the next
 *       round's victim is again a RUNNING worker holding entries.  Prints one JSON line with p50/p99/max of
 *       fork_ms and recovered_ms, and the entries held. */
static int crash_pending(redisContext *c, const char *stream, const char *group, const char *consumer,
			 const char *lo, const char *hi, char *first, char *last, size_t idlen)
{
	redisReply *r = consumer ? redisCommand(c, "XPENDING %s %s %s %s 100000 %s", stream, group, lo, hi, consumer)
				 : redisCommand(c, "XPENDING %s %s %s %s 1", stream, group, lo, hi);
	if (!r)
		die("Redis: %s", c->errstr);
	if (r->type != REDIS_REPLY_ARRAY)
		die("XPENDING %s %s: %s", stream, group, r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
	int n = (int)r->elements;
	if (n && first && last) {
		snprintf(first, idlen, "%s", r->element[0]->element[0]->str);
		snprintf(last, idlen, "%s", r->element[n - 1]->element[0]->str);
	}
	freeReplyObject(r);
	return n;
}

/* The group of stream that has a consumer named name (XINFO), malloc'd. */
static char *crash_group_of(redisContext *c, const char *stream, const char *name)
{
	redisReply *g = redisCommand(c, "XINFO GROUPS %s", stream);
	if (!g || g->type != REDIS_REPLY_ARRAY)
		die("XINFO GROUPS %s: %s", stream, g && g->type == REDIS_REPLY_ERROR ? g->str : "failed");
	char *found = NULL;
	for (size_t i = 0; i < g->elements && !found; i++) {
		redisReply *gi = g->element[i];
		const char *gname = NULL;
		for (size_t k = 0; k + 1 < gi->elements; k += 2)
			if (strcmp(gi->element[k]->str, "name") == 0)
				gname = gi->element[k + 1]->str;
		if (!gname)
			continue;
		redisReply *cs = redisCommand(c, "XINFO CONSUMERS %s %s", stream, gname);
		for (size_t j = 0; cs && cs->type == REDIS_REPLY_ARRAY && j < cs->elements && !found; j++)
			for (size_t k = 0; k + 1 < cs->element[j]->elements; k += 2)
				if (strcmp(cs->element[j]->element[k]->str, "name") == 0 &&
				    strcmp(cs->element[j]->element[k + 1]->str, name) == 0)
					found = strdup(gname);
		if (cs)
			freeReplyObject(cs);
	}
	freeReplyObject(g);
	return found;
}

static int cmd_crash(int argc, char **argv)
{
	const char *sock = NULL, *url = "redis://127.0.0.1:6379/0", *ns = "sv", *pool = "persist";
	const char *stream = "events";
	long count = 7, min_held = 256, gap_ms = 300, wait_s = 30;
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' }, { "redis", required_argument, NULL, 'r' },
		{ "namespace", required_argument, NULL, 'n' }, { "count", required_argument, NULL, 'c' },
		{ "pool", required_argument, NULL, 'p' }, { "timeout", required_argument, NULL, 't' },
		{ "stream", required_argument, NULL, 'S' }, { "min-held", required_argument, NULL, 'm' },
		{ "gap-ms", required_argument, NULL, 'g' }, { 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'r': url = optarg; break;
		case 'n': ns = optarg; break;
		case 'c': count = parse_long("--count", optarg, 1, 100000); break;
		case 'p': pool = optarg; break;
		case 't': wait_s = parse_long("--timeout", optarg, 1, 86400); break;
		case 'S': stream = optarg; break;
		case 'm': min_held = parse_long("--min-held", optarg, 1, 10000000); break;
		case 'g': gap_ms = parse_long("--gap-ms", optarg, 0, 3600000); break;
		default:
			die("usage: svbench crash --socket CTLSOCK [--redis URL] [--namespace sv] [--stream events] "
			    "[--pool persist] [--count 7] [--min-held 256] [--gap-ms 300] [--timeout 30]");
		}
	}
	if (!sock)
		die("crash: --socket is required");
	(void)ns; /* accepted as respawn's; the consumer names are the workers' names */
	redisContext *c = redis_open(url);
	int64_t *fork_us = xmalloc(sizeof(int64_t) * (size_t)count);
	int64_t *rec_us = xmalloc(sizeof(int64_t) * (size_t)count);
	int64_t *held = xmalloc(sizeof(int64_t) * (size_t)count);
	size_t nfork = 0, nrec = 0;
	static pid_t kids[4096], now_kids[4096];

	for (long round = 0; round < count; round++) {
		/* The pool's RUNNING workers; the victim is the one whose
		 * consumer (its name) holds the most, at least min_held. */
		char *name = NULL, *consumer = NULL, *group = NULL;
		pid_t victim = 0, master = 0;
		char first[64], last[64];
		int n = 0;
		size_t nkids = 0;
		int64_t tw = util_mono_us();
		for (;;) {
			json_t *st = ctl_status(sock);
			json_t *workers = json_object_get(st, "workers");
			size_t nw = json_array_size(workers);
			long long best = -1;
			for (size_t k = 0; k < nw; k++) {
				json_t *wk = json_array_get(workers, k);
				/* A standby holds nothing of its own (entries a writer
				 * left when it lost the lease are the new writer's to
				 * claim). */
				if (!is_running(wk) || strcmp(jstr(wk, "pool"), pool) != 0 ||
				    strcmp(jstr(wk, "status"), "standby") == 0)
					continue;
				const char *wn = jstr(wk, "name");
				if (!group)
					group = crash_group_of(c, stream, wn);
				if (!group)
					continue;
				redisReply *r = redisCommand(c, "XPENDING %s %s - + 100000 %s", stream, group, wn);
				long long held_now = r && r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : 0;
				if (r)
					freeReplyObject(r);
				if (held_now > best) {
					best = held_now;
					free(name);
					name = strdup(wn);
					victim = (pid_t)json_integer_value(json_object_get(wk, "pid"));
				}
			}
			json_decref(st);
			if (util_mono_us() - tw > wait_s * 1000000)
				die("crash: no worker of pool %s held %ld entries in %lds (is the load running?)", pool,
				    min_held, wait_s);
			if (best < min_held) {
				sleep_us(1000);
				continue;
			}
			/* Stopped, it holds what it holds: read it, then kill. */
			if (kill(victim, SIGSTOP) < 0)
				die("kill %d: %s", (int)victim, strerror(errno));
			n = crash_pending(c, stream, group, name, "-", "+", first, last, sizeof(first));
			if (n >= min_held)
				break;
			kill(victim, SIGCONT);
			sleep_us(1000);
		}
		consumer = strdup(name);
		master = proc_ppid(victim);
		if (master <= 1)
			die("crash: cannot find the master of pid %d", (int)victim);
		nkids = proc_children(master, kids, ARRAY_SIZE(kids));
		int64_t t0 = util_mono_us();
		if (kill(victim, SIGKILL) < 0)
			die("kill %d: %s", (int)victim, strerror(errno));
		held[nrec] = n;
		pid_t newpid = 0;
		for (;;) {
			if (!newpid) {
				size_t nk = proc_children(master, now_kids, ARRAY_SIZE(now_kids));
				for (size_t i = 0; i < nk && !newpid; i++)
					if (now_kids[i] != victim && !pid_in(now_kids[i], kids, nkids))
						newpid = now_kids[i];
				if (newpid)
					fork_us[nfork++] = util_mono_us() - t0;
			}
			if (crash_pending(c, stream, group, NULL, first, last, NULL, NULL, 0) == 0) {
				rec_us[nrec++] = util_mono_us() - t0;
				break;
			}
			if (util_mono_us() - t0 > wait_s * 1000000)
				die("crash: %s still pending after %lds", consumer, wait_s);
			sleep_us(100);
		}
		fprintf(stderr, "svbench crash: %s pid %d held %d (%s..%s) -> pid %d, recovered in %.2f ms\n", name,
			(int)victim, n, first, last, (int)newpid, (double)rec_us[nrec - 1] / 1000);
		/* The next victim is RUNNING and holds entries (the next round
		 * waits for that): a standby taking over does not have to wait
		 * for its replacement's start_ms. */
		sleep_us(gap_ms * 1000);
		free(name);
		free(consumer);
		free(group);
	}
	int64_t held_sum = 0;
	for (size_t i = 0; i < nrec; i++)
		held_sum += held[i];
	printf("{\"rounds\":%ld,\"held_mean\":%.0f,", count, nrec ? (double)held_sum / (double)nrec : 0.0);
	print_stats("fork_ms", fork_us, nfork, true);
	print_stats("recovered_ms", rec_us, nrec, false);
	printf("}\n");
	free(fork_us);
	free(rec_us);
	free(held);
	redisFree(c);
	return 0;
}

/* ------------------------------------------------------ wait (issue 15) */

/* svbench wait: terminal XADD -> HTTP 200 of GET /api/v1/runs/ID?wait=W.
 * A small HTTP/1.1 client of its own (one connection per request,
 * Connection: close, the answer complete at Content-Length or EOF). */

struct hurl {
	char host[256], port[16];
	char hosthdr[300]; /* the Host header: HOST:PORT as given */
};

static void hurl_parse(const char *s, struct hurl *u)
{
	if (strncmp(s, "http://", 7) == 0)
		s += 7;
	else if (strstr(s, "://"))
		die("--url: only http:// is supported ('%s')", s);
	size_t n = strcspn(s, "/");
	if (n == 0 || n >= sizeof(u->hosthdr))
		die("--url: bad address '%s'", s);
	snprintf(u->hosthdr, sizeof(u->hosthdr), "%.*s", (int)n, s);
	const char *colon = memrchr(s, ':', n);
	if (!colon || s[0] == '[')
		die("--url: HOST:PORT needed ('%s')", s);
	snprintf(u->host, sizeof(u->host), "%.*s", (int)(colon - s), s);
	snprintf(u->port, sizeof(u->port), "%.*s", (int)(n - (size_t)(colon - s) - 1), colon + 1);
}

static int http_connect(const struct hurl *u)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rc = getaddrinfo(u->host, u->port, &hints, &ai);
	if (rc)
		die("%s:%s: %s", u->host, u->port, gai_strerror(rc));
	int fd = -1;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		die("cannot connect to %s:%s: %s", u->host, u->port, strerror(errno));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void http_send_get(int fd, const struct hurl *u, const char *path, const char *token)
{
	char req[4096];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", path,
			 u->hosthdr, token);
	if (n < 0 || (size_t)n >= sizeof(req))
		die("request too long");
	for (int off = 0; off < n;) {
		ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("send: %s", strerror(errno));
		off += (int)w;
	}
}

struct hresp {
	int status;         /* 0: none (closed or timed out) */
	bool complete;      /* X-Streamvisor-Complete: true */
	char *buf;
	size_t len, cap;
};

/* Reads one whole answer (until Content-Length bytes of body, or EOF)
 * within timeout_ms.  Returns 0, or -1 when it did not come. */
static int http_read(int fd, struct hresp *r, int timeout_ms)
{
	int64_t deadline = util_mono_us() + (int64_t)timeout_ms * 1000;
	size_t hdr_end = 0;
	long clen = -1;
	r->len = 0;
	r->status = 0;
	r->complete = false;
	for (;;) {
		if (hdr_end && clen >= 0 && r->len >= hdr_end + (size_t)clen)
			break;
		int64_t left = deadline - util_mono_us();
		if (left <= 0)
			return -1;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)((left + 999) / 1000));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
		if (r->cap - r->len < 65536) {
			r->cap = r->cap ? r->cap * 2 : 131072;
			r->buf = realloc(r->buf, r->cap + 1);
			if (!r->buf)
				die("out of memory");
		}
		ssize_t got = recv(fd, r->buf + r->len, r->cap - r->len, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break; /* EOF: the answer ends here */
		r->len += (size_t)got;
		r->buf[r->len] = 0;
		if (!hdr_end) {
			char *e = strstr(r->buf, "\r\n\r\n");
			if (!e)
				continue;
			hdr_end = (size_t)(e - r->buf) + 4;
			if (sscanf(r->buf, "HTTP/1.%*d %d", &r->status) != 1)
				r->status = 0;
			for (char *l = strstr(r->buf, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n")) {
				if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
					clen = strtol(l + 17, NULL, 10);
				else if (strncasecmp(l + 2, "X-Streamvisor-Complete:", 23) == 0)
					r->complete = strncmp(l + 2 + 23 + strspn(l + 2 + 23, " "), "true", 4) == 0;
			}
		}
	}
	return hdr_end ? 0 : -1;
}

/* One request on a fresh connection: its status (0 if none). */
static int http_get_status(const struct hurl *u, const char *path, const char *token, struct hresp *r)
{
	int fd = http_connect(u);
	http_send_get(fd, u, path, token);
	int rc = http_read(fd, r, 10000);
	close(fd);
	return rc < 0 ? 0 : r->status;
}

static char *read_token(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("%s: %s", path, strerror(errno));
	char line[4096];
	if (!fgets(line, sizeof(line), f))
		die("%s: empty", path);
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	char *t = strdup(line);
	if (!t)
		die("out of memory");
	return t;
}

static void xadd_event(redisContext *c, const char *stream, const struct bench *b, long idx, const char *rid,
		       long seq)
{
	char data[256], seqs[24], tss[24];
	const char *type;
	size_t dlen = event_data(b, idx, seq, &type, data, sizeof(data));
	snprintf(seqs, sizeof(seqs), "%ld", seq);
	snprintf(tss, sizeof(tss), "%" PRId64, wall_us() / 1000);
	redisReply *r = redisCommand(c, "XADD %s * run %s type %s seq %s ts %s data %b", stream, rid, type, seqs,
				     tss, data, dlen);
	if (!r || r->type == REDIS_REPLY_ERROR)
		die("XADD %s: %s", stream, r ? r->str : c->errstr);
	freeReplyObject(r);
}

static int cmd_wait(int argc, char **argv)
{
	const char *url = NULL, *token_file = NULL, *redis_url = "redis://127.0.0.1:6379/0", *stream = "events";
	const char *prefix = NULL;
	long count = 50, interval_ms = 100, settle_ms = 20, wait_s = 5, events = 6, timeout_s = 10;
	static const struct option lo[] = {
		{ "url", required_argument, NULL, 'u' }, { "token-file", required_argument, NULL, 'T' },
		{ "redis", required_argument, NULL, 'r' }, { "stream", required_argument, NULL, 'S' },
		{ "count", required_argument, NULL, 'c' }, { "interval-ms", required_argument, NULL, 'i' },
		{ "settle-ms", required_argument, NULL, 's' }, { "wait", required_argument, NULL, 'w' },
		{ "events", required_argument, NULL, 'e' }, { "prefix", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' }, { 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'u': url = optarg; break;
		case 'T': token_file = optarg; break;
		case 'r': redis_url = optarg; break;
		case 'S': stream = optarg; break;
		case 'c': count = parse_long("--count", optarg, 1, 100000); break;
		case 'i': interval_ms = parse_long("--interval-ms", optarg, 0, 3600000); break;
		case 's': settle_ms = parse_long("--settle-ms", optarg, 0, 10000); break;
		case 'w': wait_s = parse_long("--wait", optarg, 1, 60); break;
		case 'e': events = parse_long("--events", optarg, 6, 10000); break;
		case 'p': prefix = optarg; break;
		case 't': timeout_s = parse_long("--timeout", optarg, 1, 3600); break;
		default:
			die("usage: svbench wait --url http://HOST:PORT --token-file F [--redis URL] [--stream events] "
			    "[--count 50] [--interval-ms 100] [--settle-ms 20] [--wait 5] [--events 6] [--prefix STR] "
			    "[--timeout 10]");
		}
	}
	if (optind != argc)
		die("wait: unexpected argument '%s'", argv[optind]);
	if (!url || !token_file)
		die("wait: --url and --token-file are required");
	struct hurl u;
	hurl_parse(url, &u);
	char *token = read_token(token_file);
	struct bench b = { .events = events, .tool_call = false };
	if (prefix) {
		if (strlen(prefix) >= sizeof(b.prefix) - 8)
			die("--prefix: too long");
		snprintf(b.prefix, sizeof(b.prefix), "%s", prefix);
	} else {
		snprintf(b.prefix, sizeof(b.prefix), "w%08" PRIx32, util_rand32());
	}
	build_layout(&b);
	redisContext *c = redis_open(redis_url);
	int64_t *lat = xmalloc(sizeof(int64_t) * (size_t)count);
	size_t nlat = 0;
	long failed = 0;
	struct hresp r = { 0 };
	char rid[96], path[256];

	/* The token is right and the API answers. */
	int st = http_get_status(&u, "/api/v1/session", token, &r);
	if (st != 200)
		die("GET /api/v1/session on %s: status %d", u.hosthdr, st);

	for (long i = 0; i < count; i++) {
		run_id(&b, i, rid, sizeof(rid));
		/* Everything but the terminal event, then wait until the API
		 * finds the run: only the terminal event is left to persist. */
		for (long seq = 1; seq < events; seq++)
			xadd_event(c, stream, &b, i, rid, seq);
		snprintf(path, sizeof(path), "/api/v1/runs/%s", rid);
		int64_t until = util_mono_us() + timeout_s * 1000000;
		while ((st = http_get_status(&u, path, token, &r)) != 200) {
			if (st != 404 || util_mono_us() > until)
				die("%s: status %d while waiting for run %s to be stored", path, st, rid);
			sleep_us(2000);
		}
		/* The long-poll, then the terminal XADD settle_ms later (the
		 * child has suspended the request by then). */
		snprintf(path, sizeof(path), "/api/v1/runs/%s?wait=%ld", rid, wait_s);
		int fd = http_connect(&u);
		http_send_get(fd, &u, path, token);
		sleep_us(settle_ms * 1000);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 0) > 0) {
			http_read(fd, &r, 1000);
			fprintf(stderr, "svbench: %s answered %d before the terminal event\n", rid, r.status);
			failed++;
			close(fd);
			continue;
		}
		int64_t t0 = util_mono_us();
		xadd_event(c, stream, &b, i, rid, events);
		int rc = http_read(fd, &r, (int)(wait_s * 1000 + 5000));
		int64_t t1 = util_mono_us();
		close(fd);
		if (rc < 0 || r.status != 200 || !r.complete) {
			fprintf(stderr, "svbench: %s: status %d complete %d after %.1f ms\n", rid, rc < 0 ? 0 : r.status,
				(int)r.complete, (double)(t1 - t0) / 1000.0);
			failed++;
		} else {
			lat[nlat++] = t1 - t0;
			if (getenv("SVBENCH_VERBOSE"))
				fprintf(stderr, "svbench: %s: 200 %.2f ms after the terminal XADD\n", rid,
					(double)(t1 - t0) / 1000.0);
		}
		if (i + 1 < count)
			sleep_us(interval_ms * 1000);
	}
	qsort(lat, nlat, sizeof(*lat), cmp_i64);
	printf("{\"wait_runs\":%ld,\"events_per_run\":%ld,\"settle_ms\":%ld,\"failed\":%ld,"
	       "\"wait_latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"min\":%.2f,\"samples\":%zu}}\n",
	       count, events, settle_ms, failed, pct_ms(lat, nlat, 50), pct_ms(lat, nlat, 99),
	       nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0, nlat ? (double)lat[0] / 1000.0 : 0.0, nlat);
	fflush(stdout);
	free(r.buf);
	free(lat);
	free(token);
	free(b.layout);
	redisFree(c);
	return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
	fputs("usage: svbench --sqlite PATH [--redis URL] [--stream NAME] [--runs N] [--events N]\n"
	      "               [--interleave N] [--rate EV/S] [--timeout S] [--prefix STR] [--no-tool-call]\n"
	      "               [--batch N] [--sample N] [--poll-us N]\n"
	      "               [--namespace NS (default sv)] [--pids PID,... (default: NS:workers)] [--beat-wait-ms 5000]\n"
	      "               [--streams-per-run [--stream-fmt FMT (default bench:run:{run}:events)]]\n"
	      "       svbench --new-streams N --sqlite PATH [--redis URL] [--stream-fmt FMT] [--interval-ms 200]\n"
	      "               [--timeout S (each, default 10)] [--prefix STR] [--poll-us N (default 1000)]\n"
	      "       svbench respawn --socket CTLSOCK [--redis URL] [--namespace sv] [--count 20] [--pool P]\n"
	      "       svbench rss --socket CTLSOCK [--pid MASTERPID]\n"
	      "       svbench tools [--redis URL] [--stream events] [--calls 1000] [--tool echo] [--rate CALLS/S]\n"
	      "               [--window N] [--runs 10] [--args JSON] [--batch 256] [--timeout 120] [--prefix STR]\n"
	      "       svbench wait --url http://HOST:PORT --token-file F [--redis URL] [--stream events] [--count 50]\n"
	      "               [--interval-ms 100] [--settle-ms 20] [--wait 5] [--events 6] [--prefix STR] [--timeout 10]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && strcmp(argv[1], "respawn") == 0)
		return cmd_respawn(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "rss") == 0)
		return cmd_rss(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "tools") == 0)
		return cmd_tools(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "crash") == 0)
		return cmd_crash(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "wait") == 0)
		return cmd_wait(argc - 1, argv + 1);

	struct bench b = {
		.redis_url = "redis://127.0.0.1:6379/0", .stream = "events",
		.runs = 4000, .events = 58, .interleave = 200, .batch = 512, .sample = 10,
		.poll_us = 2000, .timeout_s = 600, .tool_call = true,
	};
	struct wmeasure wm = { .ns = "sv", .beat_wait_ms = 5000 };
	enum { O_NOTOOL = 1000, O_BATCH, O_SAMPLE, O_POLL, O_PERRUN, O_SFMT, O_NEW, O_INTERVAL, O_NS, O_PIDS, O_BEATW };
	static const struct option lo[] = {
		{ "redis", required_argument, NULL, 'r' }, { "stream", required_argument, NULL, 's' },
		{ "runs", required_argument, NULL, 'n' }, { "events", required_argument, NULL, 'e' },
		{ "interleave", required_argument, NULL, 'i' }, { "rate", required_argument, NULL, 'R' },
		{ "sqlite", required_argument, NULL, 'q' }, { "timeout", required_argument, NULL, 't' },
		{ "prefix", required_argument, NULL, 'p' }, { "no-tool-call", no_argument, NULL, O_NOTOOL },
		{ "batch", required_argument, NULL, O_BATCH }, { "sample", required_argument, NULL, O_SAMPLE },
		{ "poll-us", required_argument, NULL, O_POLL }, { "help", no_argument, NULL, 'h' },
		{ "streams-per-run", no_argument, NULL, O_PERRUN }, { "stream-fmt", required_argument, NULL, O_SFMT },
		{ "new-streams", required_argument, NULL, O_NEW }, { "interval-ms", required_argument, NULL, O_INTERVAL },
		{ "namespace", required_argument, NULL, O_NS }, { "pids", required_argument, NULL, O_PIDS },
		{ "beat-wait-ms", required_argument, NULL, O_BEATW },
		{ 0, 0, 0, 0 },
	};
	int ch;
	bool poll_set = false, per_run = false, timeout_set = false;
	long new_streams = 0, interval_ms = 200;
	const char *stream_fmt = "bench:run:{run}:events";
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'r': b.redis_url = optarg; break;
		case 's': b.stream = optarg; break;
		case 'n': b.runs = parse_long("--runs", optarg, 1, 100000000); break;
		case 'e': b.events = parse_long("--events", optarg, 6, 1000000); break;
		case 'i': b.interleave = parse_long("--interleave", optarg, 1, 100000000); break;
		case 'R': {
			char *end;
			b.rate = strtod(optarg, &end);
			if (end == optarg || *end || b.rate < 0)
				die("--rate: bad value '%s'", optarg);
			break;
		}
		case 'q': b.sqlite_path = optarg; break;
		case 't': b.timeout_s = parse_long("--timeout", optarg, 1, 86400 * 7); timeout_set = true; break;
		case 'p':
			if (strlen(optarg) >= sizeof(b.prefix) - 8)
				die("--prefix: too long");
			snprintf(b.prefix, sizeof(b.prefix), "%s", optarg);
			break;
		case O_NOTOOL: b.tool_call = false; break;
		case O_BATCH: b.batch = parse_long("--batch", optarg, 1, 1000000); break;
		case O_SAMPLE: b.sample = parse_long("--sample", optarg, 1, 1000000); break;
		case O_POLL: b.poll_us = parse_long("--poll-us", optarg, 100, 1000000); poll_set = true; break;
		case O_PERRUN: per_run = true; break;
		case O_SFMT:
			if (!strstr(optarg, "{run}"))
				die("--stream-fmt: must contain {run}");
			stream_fmt = optarg;
			break;
		case O_NEW: new_streams = parse_long("--new-streams", optarg, 1, 1000000); break;
		case O_INTERVAL: interval_ms = parse_long("--interval-ms", optarg, 0, 3600000); break;
		case O_NS: wm.ns = optarg; break;
		case O_PIDS: parse_pids(&wm, optarg); break;
		case O_BEATW: wm.beat_wait_ms = parse_long("--beat-wait-ms", optarg, 0, 600000); break;
		default: usage();
		}
	}
	if (optind != argc || !b.sqlite_path)
		usage();
	if (per_run)
		b.stream_fmt = stream_fmt;
	if (!poll_set && b.rate > 0)
		b.poll_us = 1000;
	if (!b.prefix[0])
		snprintf(b.prefix, sizeof(b.prefix), "b%08" PRIx32, util_rand32());
	if (new_streams) {
		/* one event per run: the first of the standard layout */
		b.stream_fmt = stream_fmt;
		if (!timeout_set)
			b.timeout_s = 10;
		if (!poll_set)
			b.poll_us = 1000;
		return run_new_streams(&b, new_streams, interval_ms);
	}
	return run_workload(&b, &wm);
}
