/* The handler process manager (src/handler.c) on its own, driving real
 * handlers: examples/handler.py (and handler.js when node exists) at
 * concurrency 1 and 50, and the misbehaving ones of test/handler/.  A
 * small owner here plays the tool worker: it sends calls while there are
 * free slots, re-dispatches suspect calls one at a time and gives up on
 * one after MAX_DELIVERIES (a dead letter).  Every case asserts that each
 * call got exactly one final event (answer, failed or dead), and that no
 * process group it started is left.  SV_TEST_SRC names the source tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handler.h"
#include "log.h"
#include "util.h"

#define MAX_CALLS 600
#define MAX_DELIVERIES 3
#define MAX_PIDS 256

struct rec {
	int answers, failed, suspects, dead;
	bool is_error, sent;
	char why[256];
	char output[256];
	unsigned flags;   /* HANDLER_CALL_SUSPECT when it must be re-sent */
	bool queued;      /* waiting to be (re-)sent */
	char args[128];
};

struct owner {
	struct rec recs[MAX_CALLS];
	size_t n;
	pid_t pids[MAX_PIDS];
	size_t npids;
	enum handler_state state;
	const char *last_error;
	uint64_t restarts;
	struct handler *h;
};

static char src[4096];
static struct sv_config cfg;

static void ev_answer(void *ctx, void *o, const json_t *output, const char *error)
{
	(void)ctx;
	struct rec *r = o;
	r->answers++;
	r->is_error = error != NULL;
	if (error) {
		snprintf(r->output, sizeof(r->output), "%s", error);
	} else {
		char *s = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(r->output, sizeof(r->output), "%s", s ? s : "");
		free(s);
	}
}

static void ev_failed(void *ctx, void *o, const char *why)
{
	(void)ctx;
	struct rec *r = o;
	r->failed++;
	snprintf(r->why, sizeof(r->why), "%s", why);
}

/* The owner's part: bump the delivery count; a dead letter after
 * MAX_DELIVERIES, else re-sent alone. */
static void ev_suspect(void *ctx, void *o)
{
	(void)ctx;
	struct rec *r = o;
	r->suspects++;
	if (r->suspects + 1 > MAX_DELIVERIES) {
		r->dead++;
		return;
	}
	r->flags = HANDLER_CALL_SUSPECT;
	r->queued = true;
}

static void ev_state(void *ctx, const struct handler_status *st)
{
	struct owner *ow = ctx;
	ow->state = st->state;
	ow->restarts = st->restarts;
	if (st->pid > 0 && (ow->npids == 0 || ow->pids[ow->npids - 1] != st->pid) && ow->npids < MAX_PIDS)
		ow->pids[ow->npids++] = st->pid;
}

static const struct handler_events events = {ev_answer, ev_failed, ev_suspect, ev_state};

static struct tool_config *tool_new(const char *name, int concurrency, const char *const *argv, const char *env)
{
	struct tool_config *t = calloc(1, sizeof(*t));
	t->name = (char *)name;
	size_t n = 0;
	while (argv[n])
		n++;
	t->command.v = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		t->command.v[i] = util_xstrdup(argv[i]);
	t->command.n = n;
	t->env.v = calloc(2, sizeof(char *));
	if (env)
		t->env.v[t->env.n++] = util_xstrdup(env);
	t->cwd = "/";
	t->timeout_ms = 10000;
	t->max_output = 65536;
	t->mode = TOOL_PERSISTENT;
	t->concurrency = concurrency;
	t->start_timeout_ms = 5000;
	return t;
}

static void tool_free(struct tool_config *t)
{
	for (size_t i = 0; i < t->command.n; i++)
		free(t->command.v[i]);
	free(t->command.v);
	for (size_t i = 0; i < t->env.n; i++)
		free(t->env.v[i]);
	free(t->env.v);
	free(t);
}

static void owner_add(struct owner *ow, const char *args)
{
	struct rec *r = &ow->recs[ow->n++];
	snprintf(r->args, sizeof(r->args), "%s", args);
	r->queued = true;
}

static bool final(const struct rec *r)
{
	return r->answers + r->failed + r->dead > 0;
}

static bool all_final(const struct owner *ow)
{
	for (size_t i = 0; i < ow->n; i++)
		if (!final(&ow->recs[i]))
			return false;
	return true;
}

static bool any_suspect_queued(const struct owner *ow)
{
	for (size_t i = 0; i < ow->n; i++)
		if (ow->recs[i].queued && ow->recs[i].flags)
			return true;
	return false;
}

/* Send what the handler takes: suspect calls first, alone. */
static void owner_send(struct owner *ow, const struct tool_config *t)
{
	bool suspects = any_suspect_queued(ow);
	for (size_t i = 0; i < ow->n && handler_free_slots(ow->h) > 0; i++) {
		struct rec *r = &ow->recs[i];
		if (!r->queued || (suspects && !r->flags))
			continue;
		if (r->flags && handler_inflight(ow->h) > 0)
			break;
		char cid[32];
		snprintf(cid, sizeof(cid), "c%zu", i);
		struct handler_call c = {.id = i + 1000, .call_id = cid, .run = "r1", .name = t->name,
					 .arguments = r->args, .deadline_ms = util_mono_ms() + t->timeout_ms,
					 .timeout_ms = t->timeout_ms, .owner = r, .flags = r->flags};
		if (handler_send(ow->h, &c) == 0) {
			r->queued = false;
			r->flags = 0;
			r->sent = true;
		}
		if (suspects)
			break; /* one at a time */
	}
}

/* One owner loop until cond(ow) or timeout_ms. */
static bool drive(struct owner *ow, const struct tool_config *t, bool (*cond)(const struct owner *),
		  int64_t timeout_ms)
{
	int64_t end = util_mono_ms() + timeout_ms;
	while (util_mono_ms() < end) {
		if (cond(ow))
			return true;
		owner_send(ow, t);
		struct pollfd fds[HANDLER_POLL_MAX];
		int64_t now = util_mono_ms();
		int64_t deadline = now + 200;
		size_t n = handler_poll_fds(ow->h, fds, HANDLER_POLL_MAX, &deadline);
		int wait = deadline > now ? (int)(deadline - now) : 0;
		poll(fds, n, wait);
		handler_service(ow->h, fds, n, util_mono_ms());
	}
	return cond(ow);
}

static bool is_stopped(const struct owner *ow)
{
	return handler_stopped(ow->h);
}

static bool is_failed(const struct owner *ow)
{
	return ow->state == HANDLER_FAILED;
}

/* Every call exactly one final event. */
static void assert_once(const struct owner *ow)
{
	for (size_t i = 0; i < ow->n; i++) {
		const struct rec *r = &ow->recs[i];
		if (r->answers + r->failed + r->dead != 1)
			fail_msg("call %zu: %d answers, %d failed, %d dead, %d suspects", i, r->answers, r->failed,
				 r->dead, r->suspects);
	}
}

/* Stop, free, and check that no process group we started is left. */
static void finish(struct owner *ow)
{
	handler_stop(ow->h, util_mono_ms());
	drive(ow, NULL, is_stopped, 10000);
	assert_true(handler_stopped(ow->h));
	handler_free(ow->h);
	ow->h = NULL;
	for (size_t i = 0; i < ow->npids; i++) {
		int64_t end = util_mono_ms() + 3000;
		while (kill(-ow->pids[i], 0) == 0 && util_mono_ms() < end)
			usleep(10000);
		if (kill(-ow->pids[i], 0) == 0 || errno != ESRCH)
			fail_msg("process group %d is still there", (int)ow->pids[i]);
	}
}

static struct owner *owner_new(const struct tool_config *t)
{
	struct owner *ow = calloc(1, sizeof(*ow));
	ow->h = handler_new(t, &cfg, &events, ow);
	assert_non_null(ow->h);
	return ow;
}

static char *path_of(const char *rel)
{
	return util_xasprintf("%s/%s", src, rel);
}

/* ---------- the examples ---------- */

static void run_example(const char *interp, const char *script, int concurrency, int ncalls, int sleep_ms)
{
	char *p = path_of(script);
	const char *argv[] = {interp, p, NULL};
	char env[64];
	snprintf(env, sizeof(env), "HANDLER_SLEEP_MS=%d", sleep_ms);
	struct tool_config *t = tool_new("echo", concurrency, argv, env);
	struct owner *ow = owner_new(t);
	for (int i = 0; i < ncalls; i++) {
		char a[64];
		snprintf(a, sizeof(a), "{\"i\":%d}", i);
		owner_add(ow, a);
	}
	int64_t t0 = util_mono_ms();
	assert_true(drive(ow, t, all_final, 60000));
	int64_t took = util_mono_ms() - t0;
	print_message("%s concurrency %d: %d calls of %d ms in %lld ms\n", script, concurrency, ncalls, sleep_ms,
		      (long long)took);
	assert_once(ow);
	for (int i = 0; i < ncalls; i++) {
		char want[64];
		snprintf(want, sizeof(want), "\"echo\":{\"i\":%d}", i);
		if (ow->recs[i].answers != 1 || !strstr(ow->recs[i].output, want))
			fail_msg("call %d: %s", i, ow->recs[i].output);
	}
	if (concurrency == 50)
		assert_true(took < 20000); /* serially: 100 s */
	finish(ow);
	tool_free(t);
	free(ow);
	free(p);
}

static void test_py_c1(void **state)
{
	(void)state;
	run_example("/usr/bin/python3", "examples/handler.py", 1, 20, 0);
}

static void test_py_c50(void **state)
{
	(void)state;
	run_example("/usr/bin/python3", "examples/handler.py", 50, 500, 200);
}

static const char *node_path(void)
{
	static const char *const cands[] = {"/usr/bin/node", "/usr/local/bin/node"};
	for (size_t i = 0; i < ARRAY_SIZE(cands); i++)
		if (access(cands[i], X_OK) == 0)
			return cands[i];
	return NULL;
}

static void test_js_c1(void **state)
{
	(void)state;
	if (!node_path())
		skip();
	run_example(node_path(), "examples/handler.js", 1, 20, 0);
}

static void test_js_c50(void **state)
{
	(void)state;
	if (!node_path())
		skip();
	run_example(node_path(), "examples/handler.js", 50, 500, 200);
}

/* ---------- misbehaving handlers ---------- */

static struct tool_config *bad_tool(const char *mode, int concurrency)
{
	char *p = path_of("test/handler/misbehave.py");
	const char *argv[] = {"/usr/bin/python3", p, mode, NULL};
	struct tool_config *t = tool_new(mode, concurrency, argv, NULL);
	free(p);
	return t;
}

static void start_fails(const char *script, const char *cause)
{
	char *p = path_of(script);
	const char *argv[] = {p, NULL};
	struct tool_config *t = tool_new("bad", 1, argv, NULL);
	t->start_timeout_ms = 300;
	struct owner *ow = owner_new(t);
	assert_true(drive(ow, t, is_failed, 10000));
	struct handler_status st;
	handler_status(ow->h, &st);
	assert_non_null(strstr(st.last_error, cause));
	for (int i = 0; i < 3; i++)
		owner_add(ow, "{}");
	assert_true(drive(ow, t, all_final, 5000));
	assert_once(ow);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ow->recs[i].failed, 1);
		assert_non_null(strstr(ow->recs[i].why, "failed to start 3 times"));
		assert_non_null(strstr(ow->recs[i].why, cause));
	}
	assert_true(ow->npids >= 3 || strstr(script, "exit")); /* pids of short-lived ones may be missed */
	finish(ow);
	tool_free(t);
	free(ow);
	free(p);
}

static void test_exit_at_start(void **state)
{
	(void)state;
	start_fails("test/handler/exit_at_start.sh", "cannot load model: no such file");
}

static void test_never_ready(void **state)
{
	(void)state;
	start_fails("test/handler/never_ready.sh", "warming up for ever");
}

static void test_garbage(void **state)
{
	(void)state;
	struct tool_config *t = bad_tool("garbage", 4);
	struct owner *ow = owner_new(t);
	for (int i = 0; i < 20; i++)
		owner_add(ow, i == 5 ? "{\"garbage\":true,\"sleep_ms\":200}" : "{}");
	assert_true(drive(ow, t, all_final, 20000));
	assert_once(ow);
	assert_int_equal(ow->recs[5].failed, 1);
	assert_non_null(strstr(ow->recs[5].why, "handler protocol violation: not a JSON object"));
	int answered = 0;
	for (int i = 0; i < 20; i++) {
		answered += ow->recs[i].answers;
		assert_int_equal(ow->recs[i].suspects, 0); /* violations are not the calls' fault */
	}
	assert_true(answered >= 16); /* at most the 3 others in flight with it failed */
	assert_true(ow->restarts >= 1);
	finish(ow);
	tool_free(t);
	free(ow);
}

static void test_neverid(void **state)
{
	(void)state;
	struct tool_config *t = bad_tool("neverid", 1);
	struct owner *ow = owner_new(t);
	owner_add(ow, "{\"neverid\":true}");
	owner_add(ow, "{}");
	assert_true(drive(ow, t, all_final, 20000));
	assert_once(ow);
	assert_int_equal(ow->recs[0].failed, 1);
	assert_non_null(strstr(ow->recs[0].why, "never sent"));
	assert_int_equal(ow->recs[1].answers, 1);
	finish(ow);
	tool_free(t);
	free(ow);
}

static void test_stdout(void **state)
{
	(void)state;
	struct tool_config *t = bad_tool("stdout", 4);
	struct owner *ow = owner_new(t);
	for (int i = 0; i < 20; i++)
		owner_add(ow, "{\"x\":1}");
	assert_true(drive(ow, t, all_final, 20000));
	assert_once(ow);
	for (int i = 0; i < 20; i++)
		assert_int_equal(ow->recs[i].answers, 1);
	assert_int_equal(ow->restarts, 0);
	finish(ow);
	tool_free(t);
	free(ow);
}

static bool restarted(const struct owner *ow)
{
	return ow->restarts >= 1 && ow->state == HANDLER_READY;
}

static void hang(int concurrency)
{
	struct tool_config *t = bad_tool("hang", concurrency);
	t->timeout_ms = 700;
	struct owner *ow = owner_new(t);
	for (int i = 0; i < 8; i++)
		owner_add(ow, i == 2 ? "{\"hang\":true}" : "{\"sleep_ms\":100}");
	assert_true(drive(ow, t, all_final, 20000));
	assert_once(ow);
	assert_int_equal(ow->recs[2].failed, 1);
	assert_string_equal(ow->recs[2].why, "timed out after 700 ms");
	for (int i = 0; i < 8; i++)
		if (i != 2)
			assert_int_equal(ow->recs[i].answers, 1);
	/* c=1: killed at once; else after the grace (the call has failed already). */
	assert_true(drive(ow, t, restarted, 5000));
	finish(ow);
	tool_free(t);
	free(ow);
}

static void test_hang_c1(void **state)
{
	(void)state;
	hang(1);
}

static void test_hang_c8(void **state)
{
	(void)state;
	hang(8);
}

static void test_crash(void **state)
{
	(void)state;
	struct tool_config *t = bad_tool("crash", 10);
	struct owner *ow = owner_new(t);
	for (int i = 0; i < 50; i++)
		owner_add(ow, i == 17 ? "{\"crash\":true,\"sleep_ms\":100}" : "{\"sleep_ms\":100}");
	assert_true(drive(ow, t, all_final, 30000));
	assert_once(ow);
	assert_int_equal(ow->recs[17].dead, 1);
	assert_int_equal(ow->recs[17].suspects, MAX_DELIVERIES);
	for (int i = 0; i < 50; i++)
		if (i != 17) {
			assert_int_equal(ow->recs[i].answers, 1);
			assert_true(ow->recs[i].suspects <= 1);
		}
	finish(ow);
	tool_free(t);
	free(ow);
}

/* Kill the handler from outside with calls in flight. */
static void test_sigkill(void **state)
{
	(void)state;
	char *p = path_of("examples/handler.py");
	const char *argv[] = {"/usr/bin/python3", p, NULL};
	struct tool_config *t = tool_new("echo", 10, argv, "HANDLER_SLEEP_MS=500");
	struct owner *ow = owner_new(t);
	for (int i = 0; i < 30; i++)
		owner_add(ow, "{}");
	/* Until 10 are in flight. */
	int64_t end = util_mono_ms() + 10000;
	while (handler_inflight(ow->h) < 10 && util_mono_ms() < end)
		drive(ow, t, all_final, 50);
	assert_int_equal(handler_inflight(ow->h), 10);
	struct handler_status st;
	handler_status(ow->h, &st);
	kill(st.pid, SIGKILL);
	assert_true(drive(ow, t, all_final, 30000));
	assert_once(ow);
	int suspects = 0;
	for (int i = 0; i < 30; i++) {
		assert_int_equal(ow->recs[i].answers, 1);
		suspects += ow->recs[i].suspects;
	}
	assert_int_equal(suspects, 10);
	finish(ow);
	tool_free(t);
	free(ow);
	free(p);
}

static void recycle(int64_t max_calls, int64_t max_rss_mb, int n, int sleep_ms, uint64_t min_restarts)
{
	char *p = path_of("examples/handler.py");
	const char *argv[] = {"/usr/bin/python3", p, NULL};
	char env[64];
	snprintf(env, sizeof(env), "HANDLER_SLEEP_MS=%d", sleep_ms);
	struct tool_config *t = tool_new("echo", 5, argv, env);
	t->max_calls = max_calls;
	t->max_rss_mb = max_rss_mb;
	struct owner *ow = owner_new(t);
	for (int i = 0; i < n; i++)
		owner_add(ow, "{}");
	assert_true(drive(ow, t, all_final, 60000));
	assert_once(ow);
	for (int i = 0; i < n; i++)
		assert_int_equal(ow->recs[i].answers, 1);
	print_message("recycled: %llu restarts\n", (unsigned long long)ow->restarts);
	assert_true(ow->restarts >= min_restarts);
	finish(ow);
	tool_free(t);
	free(ow);
	free(p);
}

static void test_max_calls(void **state)
{
	(void)state;
	recycle(20, 0, 100, 20, 4);
}

static void test_max_rss(void **state)
{
	(void)state;
	recycle(0, 1, 300, 40, 2); /* python is over 1 MiB: recycled every second */
}

static bool inflight5(const struct owner *ow)
{
	return handler_inflight(ow->h) == 5;
}

/* Stop with calls in flight: EOF, the handler finishes them, none lost. */
static void test_stop(void **state)
{
	(void)state;
	char *p = path_of("examples/handler.py");
	const char *argv[] = {"/usr/bin/python3", p, NULL};
	struct tool_config *t = tool_new("echo", 5, argv, "HANDLER_SLEEP_MS=300");
	struct owner *ow = owner_new(t);
	for (int i = 0; i < 5; i++)
		owner_add(ow, "{}");
	assert_true(drive(ow, t, inflight5, 10000));
	finish(ow); /* stop, drive to stopped, free, no group left */
	assert_once(ow);
	for (int i = 0; i < 5; i++)
		assert_int_equal(ow->recs[i].answers, 1);
	tool_free(t);
	free(ow);
	free(p);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const char *s = getenv("SV_TEST_SRC");
	snprintf(src, sizeof(src), "%s", s ? s : ".");
	log_open("test", LOG_WARN, LOG_FMT_LOGFMT, NULL);
	cfg.restart.backoff_initial_ms = 50;
	cfg.restart.backoff_max_ms = 400;
	cfg.restart.max_retries = 3;
	cfg.restart.stop_timeout_ms = 3000;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_py_c1),       cmocka_unit_test(test_py_c50),
		cmocka_unit_test(test_js_c1),       cmocka_unit_test(test_js_c50),
		cmocka_unit_test(test_exit_at_start), cmocka_unit_test(test_never_ready),
		cmocka_unit_test(test_garbage),     cmocka_unit_test(test_neverid),
		cmocka_unit_test(test_stdout),      cmocka_unit_test(test_hang_c1),
		cmocka_unit_test(test_hang_c8),     cmocka_unit_test(test_crash),
		cmocka_unit_test(test_sigkill),     cmocka_unit_test(test_max_calls),
		cmocka_unit_test(test_max_rss),     cmocka_unit_test(test_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
