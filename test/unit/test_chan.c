/* Unit tests for src/chan.c (the typed channel), the master's check of
 * heartbeats relayed from Redis (master_monitor_check_beat) and of the
 * monitor's per pattern summary rows (master_monitor_check_patterns). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chan.h"
#include "master_int.h"

static void feed_msg(struct chan_reader *r, uint16_t type, const void *p, size_t len)
{
	uint8_t *buf;
	size_t n;
	assert_int_equal(chan_encode(type, p, len, &buf, &n), 0);
	assert_int_equal(chan_reader_feed(r, buf, n), 0);
	free(buf);
}

static void feed_hdr(struct chan_reader *r, uint16_t type, uint16_t flags, uint32_t len)
{
	struct chan_hdr h = {.type = type, .flags = flags, .len = len};
	assert_int_equal(chan_reader_feed(r, &h, sizeof(h)), 0);
}

static void test_fixed_messages(void **state)
{
	(void)state;
	struct chan_reader r;
	chan_reader_init(&r, CHAN_FROM_WORKER);
	int64_t inc = 42;
	int32_t pid = 1234;
	feed_msg(&r, CHAN_W_REGISTERED, &inc, sizeof(inc));
	feed_msg(&r, CHAN_W_PROGRESS, NULL, 0);
	feed_msg(&r, CHAN_W_TOOL, &pid, sizeof(pid));
	struct chan_msg m;
	assert_int_equal(chan_next(&r, &m), 1);
	assert_int_equal(m.type, CHAN_W_REGISTERED);
	assert_int_equal(chan_get_i64(&m), 42);
	assert_int_equal(chan_next(&r, &m), 1);
	assert_int_equal(m.type, CHAN_W_PROGRESS);
	assert_int_equal(m.len, 0);
	assert_int_equal(chan_next(&r, &m), 1);
	assert_int_equal(chan_get_i32(&m), 1234);
	assert_int_equal(chan_next(&r, &m), 0);
	chan_reader_free(&r);
}

/* A message byte by byte: nothing until it is whole. */
static void test_partial_frames(void **state)
{
	(void)state;
	struct chan_reader r;
	chan_reader_init(&r, CHAN_FROM_WORKER);
	int64_t inc = 7;
	uint8_t *buf;
	size_t n;
	assert_int_equal(chan_encode(CHAN_W_REGISTERED, &inc, sizeof(inc), &buf, &n), 0);
	struct chan_msg m;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(chan_next(&r, &m), 0);
		assert_int_equal(chan_reader_feed(&r, buf + i, 1), 0);
	}
	assert_int_equal(chan_next(&r, &m), 1);
	assert_int_equal(chan_get_i64(&m), 7);
	free(buf);
	chan_reader_free(&r);
}

/* A 1 MiB JSON payload crosses in 64 KiB frames and arrives whole. */
static void test_multi_frame(void **state)
{
	(void)state;
	size_t len = (1u << 20) + 17;
	char *p = malloc(len);
	memset(p, 'x', len);
	p[0] = '{';
	p[len - 1] = '}';
	uint8_t *buf;
	size_t n;
	assert_int_equal(chan_encode(CHAN_MON_BEATS, p, len, &buf, &n), 0);
	assert_int_equal(n, len + 17 * sizeof(struct chan_hdr));
	struct chan_reader r;
	chan_reader_init(&r, CHAN_FROM_MONITOR);
	assert_int_equal(chan_reader_feed(&r, buf, n), 0);
	struct chan_msg m;
	assert_int_equal(chan_next(&r, &m), 1);
	assert_int_equal(m.type, CHAN_MON_BEATS);
	assert_int_equal(m.len, len);
	assert_memory_equal(m.data, p, len);
	assert_int_equal(chan_next(&r, &m), 0);
	free(buf);
	free(p);
	chan_reader_free(&r);
}

static void expect_violation(enum chan_peer from, void (*feed)(struct chan_reader *), const char *why)
{
	struct chan_reader r;
	chan_reader_init(&r, from);
	feed(&r);
	struct chan_msg m;
	int got;
	while ((got = chan_next(&r, &m)) > 0)
		;
	assert_int_equal(got, -EPROTO);
	assert_non_null(strstr(r.why, why));
	/* Unusable from then on. */
	assert_int_equal(chan_next(&r, &m), -EPROTO);
	chan_reader_free(&r);
}

static void feed_unknown(struct chan_reader *r) { feed_hdr(r, 999, 0, 0); }
static void feed_text(struct chan_reader *r) { chan_reader_feed(r, "tool_pgid 1\n", 12); }
static void feed_oversize_frame(struct chan_reader *r) { feed_hdr(r, CHAN_W_REGISTERED, 0, CHAN_FRAME_MAX + 1); }
static void feed_wrong_size(struct chan_reader *r)
{
	int32_t v = 1;
	feed_hdr(r, CHAN_W_REGISTERED, 0, sizeof(v));
	chan_reader_feed(r, &v, sizeof(v));
}
static void feed_wrong_peer(struct chan_reader *r) { feed_hdr(r, CHAN_M_PAUSE, 0, 0); }
static void feed_bad_flags(struct chan_reader *r) { feed_hdr(r, CHAN_W_PROGRESS, 0x80, 0); }
static void feed_interleaved(struct chan_reader *r)
{
	char part[16] = "{";
	feed_hdr(r, CHAN_MON_BEATS, CHAN_F_MORE, sizeof(part));
	chan_reader_feed(r, part, sizeof(part));
	feed_hdr(r, CHAN_MON_REPLY, 0, 2);
	chan_reader_feed(r, "{}", 2);
}
/* A fixed-size message cannot be stretched over frames. */
static void feed_split_fixed(struct chan_reader *r)
{
	feed_hdr(r, CHAN_W_TOOL, CHAN_F_MORE, 4);
	chan_reader_feed(r, "abcd", 4);
	feed_hdr(r, CHAN_W_TOOL, 0, 4);
}
/* Frames that add up past the type's maximum are refused before the
 * reader buffers them. */
static void feed_endless(struct chan_reader *r)
{
	static char chunk[CHAN_FRAME_MAX];
	for (uint32_t sent = 0; sent <= CHAN_MON_MSG_MAX; sent += CHAN_FRAME_MAX) {
		feed_hdr(r, CHAN_MON_REPLY, CHAN_F_MORE, CHAN_FRAME_MAX);
		chan_reader_feed(r, chunk, sizeof(chunk));
		struct chan_msg m;
		if (chan_next(r, &m) < 0)
			return;
	}
}

static void test_violations(void **state)
{
	(void)state;
	expect_violation(CHAN_FROM_WORKER, feed_unknown, "unknown message type");
	expect_violation(CHAN_FROM_WORKER, feed_text, "unknown message type");
	expect_violation(CHAN_FROM_WORKER, feed_oversize_frame, "larger");
	expect_violation(CHAN_FROM_WORKER, feed_wrong_size, "shorter");
	expect_violation(CHAN_FROM_WORKER, feed_wrong_peer, "not allowed from this peer");
	expect_violation(CHAN_FROM_WORKER, feed_bad_flags, "flags");
	expect_violation(CHAN_FROM_MONITOR, feed_interleaved, "another type");
	expect_violation(CHAN_FROM_WORKER, feed_split_fixed, "larger");
	expect_violation(CHAN_FROM_MONITOR, feed_endless, "larger");
}

static void test_encode_refuses(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t n;
	int32_t v = 0;
	assert_int_equal(chan_encode(999, NULL, 0, &buf, &n), -EINVAL);
	assert_int_equal(chan_encode(CHAN_W_REGISTERED, &v, sizeof(v), &buf, &n), -EINVAL);
	assert_int_equal(chan_encode(CHAN_MON_OP, "{}", CHAN_MON_OP_MAX + 1, &buf, &n), -EINVAL);
}

/* Beats are checked against a configuration of two tools, "t" and "u". */
static struct tool_config check_tools[2] = {{.name = "t"}, {.name = "u"}};
static struct sv_config check_cfg = {.tools = check_tools, .ntools = 2};

static json_t *check(const char *text)
{
	json_t *hb = json_loads(text, 0, NULL);
	char why[160];
	json_t *out = master_monitor_check_beat(&check_cfg, hb, why, sizeof(why));
	json_decref(hb);
	return out;
}

static void test_check_beat(void **state)
{
	(void)state;
	json_t *ok = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"status\":\"idle\",\"processed\":3,"
			   "\"current\":null,\"batch_hist\":[1,2],\"extra\":\"dropped\",\"client_id\":42}");
	assert_non_null(ok);
	assert_int_equal(json_integer_value(json_object_get(ok, "processed")), 3);
	assert_null(json_object_get(ok, "extra"));
	assert_int_equal(json_integer_value(json_object_get(ok, "client_id")), 42);
	assert_true(json_is_null(json_object_get(ok, "current")));
	json_decref(ok);
	/* A persistence worker's time split and CPU (issue 14, for svbench),
	 * well-formed or not: the beat is kept, those keys are not relayed. */
	ok = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"processed\":3,\"cpu_us\":123456,"
		   "\"split\":{\"redis_us\":1,\"decode_us\":2,\"reduce_us\":3,\"insert_us\":4,\"commit_us\":5,\"ack_us\":6}}");
	assert_non_null(ok);
	assert_int_equal(json_integer_value(json_object_get(ok, "processed")), 3);
	assert_null(json_object_get(ok, "split"));
	assert_null(json_object_get(ok, "cpu_us"));
	json_decref(ok);
	ok = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"cpu_us\":\"x\",\"split\":[1,{\"a\":[]}]}");
	assert_non_null(ok);
	json_decref(ok);
	/* The fields a judgement rests on must be right, or the whole field goes. */
	assert_null(check("{\"pid\":\"x\",\"beat_ms\":[1],\"node\":7}"));
	assert_null(check("{\"pid\":0,\"beat_ms\":1,\"node\":\"n\"}"));
	assert_null(check("{\"pid\":1,\"beat_ms\":-1,\"node\":\"n\"}"));
	assert_null(check("[1,2]"));
	/* A bad optional field is dropped alone. */
	json_t *part = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"processed\":-4,\"status\":{},"
			     "\"batch_hist\":[1,2,3,4,5,6,7,8,9,10,11,12,13],\"client_id\":\"7\"}");
	assert_non_null(part);
	assert_null(json_object_get(part, "processed"));
	assert_null(json_object_get(part, "status"));
	assert_null(json_object_get(part, "batch_hist"));
	assert_null(json_object_get(part, "client_id"));
	json_decref(part);
	/* A worker's set sizes: non-negative integers, bounded. */
	json_t *sets = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"streams\":2000,\"active\":3}");
	assert_int_equal(json_integer_value(json_object_get(sets, "streams")), 2000);
	assert_int_equal(json_integer_value(json_object_get(sets, "active")), 3);
	json_decref(sets);
	sets = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"streams\":-1,\"active\":1e3}");
	assert_null(json_object_get(sets, "streams"));
	assert_null(json_object_get(sets, "active"));
	json_decref(sets);
	sets = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"streams\":1000000000000,\"active\":\"3\"}");
	assert_null(json_object_get(sets, "streams"));
	assert_null(json_object_get(sets, "active"));
	json_decref(sets);
}

/* A tool worker's calls in hand: a clean copy of a well-formed list only
 * (known keys, texts bounded, at most HB_CALLS_MAX), else left out. */
static void test_check_beat_calls(void **state)
{
	(void)state;
#define CALL(ST) "{\"run\":\"r\",\"call_id\":\"c\",\"tool\":\"t\",\"entry\":\"1-0\",\"state\":\"" ST "\",\"x\":1}"
	json_t *ok = check("{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"calls\":[" CALL("running") "," CALL("waiting")
			   "],\"calls_more\":4}");
	json_t *calls = json_object_get(ok, "calls");
	assert_int_equal(json_array_size(calls), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 0), "tool")), "t");
	assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 1), "state")), "waiting");
	assert_null(json_object_get(json_array_get(calls, 0), "x"));
	assert_int_equal(json_integer_value(json_object_get(ok, "calls_more")), 4);
	json_decref(ok);
	static const char *const bad[] = {
		"{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"calls\":[" CALL("sleeping") "]}",
		"{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"calls\":[{\"run\":\"r\",\"state\":\"running\"}]}",
		"{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"calls\":{}}",
		"{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"calls\":[" CALL("running") "," CALL("running") ","
		CALL("running") "," CALL("running") "," CALL("running") "," CALL("running") "," CALL("running") ","
		CALL("running") "," CALL("running") "]}",
	};
#undef CALL
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *b = check(bad[i]);
		assert_non_null(b);
		assert_null(json_object_get(b, "calls"));
		json_decref(b);
	}
	/* A text over the bound. */
	char big[400];
	char id[HB_CALL_TEXT_MAX + 2];
	memset(id, 'a', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	snprintf(big, sizeof(big),
		 "{\"pid\":10,\"beat_ms\":5,\"node\":\"n\",\"calls\":[{\"run\":\"%s\",\"call_id\":\"c\",\"tool\":\"t\","
		 "\"entry\":\"1-0\",\"state\":\"running\"}]}", id);
	json_t *b = check(big);
	assert_null(json_object_get(b, "calls"));
	json_decref(b);
}

/* A tool worker's handlers: a clean copy of a well-formed list only
 * (known keys, known states, texts bounded, at most HB_HANDLERS_MAX),
 * else left out alone. */
#define HD(TOOL, PID, ST) "{\"tool\":\"" TOOL "\",\"pid\":" PID ",\"state\":\"" ST "\",\"draining\":false," \
	"\"inflight\":2,\"served\":7,\"restarts\":1,\"last_error\":null,\"x\":1}"
#define BEAT(F) "{\"pid\":10,\"beat_ms\":5,\"node\":\"n\"," F "}"
static void test_check_beat_handlers(void **state)
{
	(void)state;
	json_t *ok = check(BEAT("\"handlers\":[" HD("t", "42", "ready") "," HD("u", "null", "backoff") "]"));
	json_t *hs = json_object_get(ok, "handlers");
	assert_int_equal(json_array_size(hs), 2);
	json_t *h0 = json_array_get(hs, 0);
	assert_string_equal(json_string_value(json_object_get(h0, "tool")), "t");
	assert_int_equal(json_integer_value(json_object_get(h0, "pid")), 42);
	assert_string_equal(json_string_value(json_object_get(h0, "state")), "ready");
	assert_int_equal(json_integer_value(json_object_get(h0, "served")), 7);
	assert_int_equal(json_integer_value(json_object_get(h0, "inflight")), 2);
	assert_true(json_is_false(json_object_get(h0, "draining")));
	assert_null(json_object_get(h0, "x"));
	assert_true(json_is_null(json_object_get(json_array_get(hs, 1), "pid")));
	json_decref(ok);
	ok = check(BEAT("\"handlers\":[{\"tool\":\"t\",\"pid\":9,\"state\":\"failed\",\"draining\":true,"
			"\"inflight\":0,\"served\":0,\"restarts\":5,\"last_error\":\"exited with status 1\"}]"));
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(ok, "handlers"), 0),
							      "last_error")), "exited with status 1");
	json_decref(ok);
	static const char *const bad[] = {
		BEAT("\"handlers\":{}"),
		BEAT("\"handlers\":[1]"),
		BEAT("\"handlers\":[" HD("t", "42", "dancing") "]"),
		BEAT("\"handlers\":[" HD("t", "0", "ready") "]"),
		BEAT("\"handlers\":[" HD("t", "-3", "ready") "]"),
		BEAT("\"handlers\":[" HD("t", "4294967297", "ready") "]"),
		BEAT("\"handlers\":[" HD("t", "\"42\"", "ready") "]"),
		BEAT("\"handlers\":[{\"tool\":\"t\",\"pid\":1,\"state\":\"ready\",\"draining\":0,\"inflight\":0,"
		     "\"served\":0,\"restarts\":0,\"last_error\":null}]"),
		BEAT("\"handlers\":[{\"tool\":\"t\",\"pid\":1,\"state\":\"ready\",\"draining\":false,\"inflight\":-1,"
		     "\"served\":0,\"restarts\":0,\"last_error\":null}]"),
		BEAT("\"handlers\":[{\"tool\":\"t\",\"pid\":1,\"state\":\"ready\",\"draining\":false,\"inflight\":0,"
		     "\"served\":0,\"restarts\":0}]"),
		BEAT("\"handlers\":[{\"tool\":7,\"pid\":1,\"state\":\"ready\",\"draining\":false,\"inflight\":0,"
		     "\"served\":0,\"restarts\":0,\"last_error\":null}]"),
		BEAT("\"handlers\":[" HD("t", "1", "ready") "," HD("t", "1", "ready") "," HD("t", "1", "ready") ","
		     HD("t", "1", "ready") "," HD("t", "1", "ready") "," HD("t", "1", "ready") "," HD("t", "1", "ready")
		     "," HD("t", "1", "ready") "," HD("t", "1", "ready") "]"),
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *b = check(bad[i]);
		assert_non_null(b); /* the beat stays, its handlers go */
		assert_null(json_object_get(b, "handlers"));
		json_decref(b);
	}
	/* A last error over the bound. */
	char big[600], err[HB_HANDLER_ERROR_MAX + 2];
	memset(err, 'e', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	snprintf(big, sizeof(big),
		 BEAT("\"handlers\":[{\"tool\":\"t\",\"pid\":1,\"state\":\"ready\",\"draining\":false,\"inflight\":0,"
		      "\"served\":0,\"restarts\":0,\"last_error\":\"%s\"}]"), err);
	json_t *b = check(big);
	assert_null(json_object_get(b, "handlers"));
	json_decref(b);
}
#undef HD

/* Per tool counters: kept only for distinct configured tools, well-typed,
 * with a histogram of exactly HB_TOOL_HIST_N buckets. */
#define H16 "[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2]"
#define TL(TOOL, CALLS, HIST) "{\"tool\":\"" TOOL "\",\"calls\":" CALLS ",\"errors\":1,\"timeouts\":0," \
	"\"redispatches\":0,\"sum_us\":1500,\"hist\":" HIST "}"
static void test_check_beat_tools(void **state)
{
	(void)state;
	json_t *ok = check(BEAT("\"tools\":[" TL("t", "3", H16) "," TL("u", "0", H16) "]"));
	json_t *ts = json_object_get(ok, "tools");
	assert_int_equal(json_array_size(ts), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ts, 0), "calls")), 3);
	assert_int_equal(json_array_size(json_object_get(json_array_get(ts, 0), "hist")), HB_TOOL_HIST_N);
	/* Summed by the master, tool by tool. */
	json_t *acc = json_object();
	master_tools_add_hb(acc, ok);
	master_tools_add_hb(acc, ok);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(acc, "t"), "calls")), 6);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(acc, "t"), "hist"), 15)), 4);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(acc, "u"), "sum_us")), 3000);
	json_decref(acc);
	json_decref(ok);
	static const char *const bad[] = {
		BEAT("\"tools\":{}"),
		BEAT("\"tools\":[" TL("nope", "1", H16) "]"),          /* not configured */
		BEAT("\"tools\":[" TL("t", "1", H16) "," TL("t", "1", H16) "]"), /* twice */
		BEAT("\"tools\":[" TL("t", "1", H16) "," TL("u", "1", H16) "," TL("t", "1", H16) "]"), /* > ntools */
		BEAT("\"tools\":[" TL("t", "-1", H16) "]"),
		BEAT("\"tools\":[" TL("t", "1", "[1,2]") "]"),
		BEAT("\"tools\":[" TL("t", "1", "[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,-2]") "]"),
		BEAT("\"tools\":[" TL("t", "1", "{}") "]"),
		BEAT("\"tools\":[{\"tool\":\"t\",\"calls\":1}]"),
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *b = check(bad[i]);
		assert_non_null(b);
		assert_null(json_object_get(b, "tools"));
		json_decref(b);
	}
	/* Without a configuration, never. */
	json_t *hb = json_loads(BEAT("\"tools\":[" TL("t", "3", H16) "]"), 0, NULL);
	char why[160];
	json_t *b = master_monitor_check_beat(NULL, hb, why, sizeof(why));
	assert_null(json_object_get(b, "tools"));
	json_decref(b);
	json_decref(hb);
}
#undef TL
#undef H16
#undef BEAT

/* The monitor's dead-letter depths: an object of counts, streams not read
 * literally dropped. */
static void test_check_dead(void **state)
{
	(void)state;
	char *lit[] = {"calls"}, *top[] = {"events"};
	struct pool_config pool;
	memset(&pool, 0, sizeof(pool));
	pool.streams = (struct strlist){lit, 1};
	struct sv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.pools = &pool;
	cfg.npools = 1;
	cfg.streams = (struct strlist){top, 1};
	char why[160];
	json_t *out = NULL, *in = json_loads("{\"calls\":3,\"events\":0,\"other\":9}", 0, NULL);
	assert_int_equal(master_monitor_check_dead(&cfg, in, &out, why, sizeof(why)), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "calls")), 3);
	assert_non_null(json_object_get(out, "events"));
	assert_null(json_object_get(out, "other"));
	json_decref(out);
	json_decref(in);
	static const char *const bad[] = {"[1]", "{\"calls\":-1}", "{\"calls\":\"3\"}", "{\"calls\":1.5}"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		in = json_loads(bad[i], JSON_DECODE_ANY, NULL);
		assert_int_equal(master_monitor_check_dead(&cfg, in, &out, why, sizeof(why)), -EPROTO);
		assert_null(out);
		json_decref(in);
	}
}

/* check_patterns against a configuration of two pools reading "run:*"
 * (groups g1 and g2) and one reading "other:*" (group g1). */
static int check_rows(const char *text, int64_t now, json_t **out, char *why, size_t whylen)
{
	char *p1[] = {"run:*"}, *p2[] = {"other:*"};
	struct pool_config pools[3];
	memset(pools, 0, sizeof(pools));
	pools[0].group = "g1";
	pools[0].patterns = (struct strlist){p1, 1};
	pools[1].group = "g2";
	pools[1].patterns = (struct strlist){p1, 1};
	pools[2].group = "g1";
	pools[2].patterns = (struct strlist){p2, 1};
	struct sv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.pools = pools;
	cfg.npools = 3;
	json_t *rows = json_loads(text, 0, NULL);
	assert_non_null(rows);
	int r = master_monitor_check_patterns(&cfg, rows, now, out, why, whylen);
	json_decref(rows);
	return r;
}

#define ROW(P, G, AGE) \
	"{\"pattern\":\"" P "\",\"group\":\"" G "\",\"matched\":50,\"active\":3,\"lag\":9,\"pending\":1," \
	"\"oldest_pending_idle_ms\":20,\"missing\":0,\"age_ms\":" AGE "}"

static void test_check_patterns(void **state)
{
	(void)state;
	char why[160];
	json_t *out;
	/* Configured pairs kept, with the master's time of the figures;
	 * pairs not configured (now) dropped without blame. */
	assert_int_equal(check_rows("[" ROW("run:*", "g1", "300") "," ROW("run:*", "g2", "0") "," ROW("run:*", "g3", "0")
				    "," ROW("gone:*", "g1", "0") "," ROW("other:*", "g2", "0") "]",
				    1000, &out, why, sizeof(why)),
			 0);
	assert_int_equal(json_array_size(out), 2);
	json_t *r0 = json_array_get(out, 0);
	assert_string_equal(json_string_value(json_object_get(r0, "group")), "g1");
	assert_int_equal(json_integer_value(json_object_get(r0, "lag")), 9);
	assert_int_equal(json_integer_value(json_object_get(r0, "taken_mono")), 700);
	assert_null(json_object_get(r0, "age_ms"));
	json_decref(out);
	assert_int_equal(check_rows("[]", 1000, &out, why, sizeof(why)), 0);
	assert_int_equal(json_array_size(out), 0);
	json_decref(out);
	/* The monitor's own mistakes are violations. */
	static const char *const bad[] = {
		"{}",
		"[1]",
		"[{\"pattern\":\"run:*\",\"group\":\"g1\"}]",
		"[" ROW("run:*", "g1", "-1") "]",
		"[" ROW("run:*", "g1", "1001") "]",
		"[" ROW("run:*", "g1", "\"5\"") "]",
		"[" ROW("run:*", "g1", "5") "," ROW("run:*", "g1", "6") "]",
		"[{\"pattern\":7,\"group\":\"g1\",\"matched\":50,\"active\":3,\"lag\":9,\"pending\":1,"
		"\"oldest_pending_idle_ms\":20,\"missing\":0,\"age_ms\":0}]",
		"[{\"pattern\":\"run:*\",\"group\":\"g1\",\"matched\":-50,\"active\":3,\"lag\":9,\"pending\":1,"
		"\"oldest_pending_idle_ms\":20,\"missing\":0,\"age_ms\":0}]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = (json_t *)1;
		assert_int_equal(check_rows(bad[i], 1000, &out, why, sizeof(why)), -EPROTO);
		assert_null(out);
	}
	/* Bounded: one row more than MASTER_PATTERN_ROWS_MAX is refused. */
	json_t *many = json_array();
	for (unsigned i = 0; i <= MASTER_PATTERN_ROWS_MAX; i++)
		json_array_append_new(many, json_loads(ROW("run:*", "g1", "0"), 0, NULL));
	char *text = json_dumps(many, JSON_COMPACT);
	json_decref(many);
	assert_int_equal(check_rows(text, 1000, &out, why, sizeof(why)), -EPROTO);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_messages), cmocka_unit_test(test_partial_frames),
		cmocka_unit_test(test_multi_frame),    cmocka_unit_test(test_violations),
		cmocka_unit_test(test_encode_refuses), cmocka_unit_test(test_check_beat),
		cmocka_unit_test(test_check_beat_calls), cmocka_unit_test(test_check_beat_handlers),
		cmocka_unit_test(test_check_beat_tools), cmocka_unit_test(test_check_dead),
		cmocka_unit_test(test_check_patterns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
