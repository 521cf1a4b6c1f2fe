/* Unit tests for src/config.c: defaults, every range and cross-check,
 * relative paths, @include, libconfig 1.5's integer wrap, secrets, and the
 * reload comparison helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sv_config.h"
#include "util.h"

static char tmpdir[] = "/tmp/sv_test_config.XXXXXX";

static void write_file(const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	char *slash = strrchr(path, '/');
	if (slash && slash > path + strlen(tmpdir)) {
		*slash = '\0';
		mkdir(path, 0700);
		*slash = '/';
	}
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The loader every helper below uses: the daemon's, or the client's for
 * the tests of config_load_client. */
static int (*loader)(const char *, struct sv_config **, struct config_errors *) = config_load;

/* Load text as tmpdir/NAME; returns the loader's result. */
static int load_named(const char *name, const char *text, struct sv_config **cfg, struct config_errors *errs)
{
	char path[512];
	write_file(name, text);
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	memset(errs, 0, sizeof(*errs));
	return loader(path, cfg, errs);
}

static int load_text(const char *text, struct sv_config **cfg, struct config_errors *errs)
{
	return load_named("t.conf", text, cfg, errs);
}

static void dump_errs(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		print_message("  %s\n", errs->v[i]);
}

/* The file must be rejected with exactly n errors, and error i must be at
 * "t.conf:LINE:" and contain sub. */
static void expect_errors(const char *text, size_t n, ...)
{
	struct sv_config *cfg = NULL;
	struct config_errors errs;
	int r = load_text(text, &cfg, &errs);
	if (errs.n != n)
		dump_errs(&errs);
	assert_int_equal(r, -EINVAL);
	assert_null(cfg);
	assert_int_equal(errs.n, n);
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++) {
		int line = va_arg(ap, int);
		const char *sub = va_arg(ap, const char *);
		char want[64];
		snprintf(want, sizeof(want), "/t.conf:%d: ", line);
		if (!strstr(errs.v[i], want) || !strstr(errs.v[i], sub)) {
			print_message("error %zu: got \"%s\", want \"%s\" and \"%s\"\n", i, errs.v[i], want, sub);
			fail();
		}
	}
	va_end(ap);
	config_errors_free(&errs);
}

static struct sv_config *expect_ok(const char *text)
{
	struct sv_config *cfg = NULL;
	struct config_errors errs;
	int r = load_text(text, &cfg, &errs);
	if (r != 0)
		dump_errs(&errs);
	assert_int_equal(r, 0);
	assert_int_equal(errs.n, 0);
	assert_non_null(cfg);
	config_errors_free(&errs);
	return cfg;
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- defaults -------------------------------------------------------- */

static void test_defaults(void **state)
{
	(void)state;
	struct sv_config *cfg = expect_ok("streams = [\"events\"];\n");
	char host[256];
	util_hostname(host, sizeof(host));
	assert_string_equal(cfg->node, host);
	assert_string_equal(cfg->namespace, "sv");
	assert_string_equal(cfg->redis.url, "redis://127.0.0.1:6379/0");
	assert_int_equal(cfg->redis.parsed.type, REDIS_URL_TCP);
	assert_string_equal(cfg->redis.parsed.host, "127.0.0.1");
	assert_int_equal(cfg->redis.parsed.port, 6379);
	assert_int_equal(cfg->redis.parsed.db, 0);
	assert_null(cfg->redis.password);
	assert_string_equal(cfg->redis.password_file, "");
	assert_string_equal(cfg->redis.url_redacted, "redis://127.0.0.1:6379/0");
	assert_int_equal(cfg->redis.connect_timeout_ms, 2000);
	assert_int_equal(cfg->redis.command_timeout_ms, 10000);
	assert_string_equal(cfg->sqlite.path, "/var/lib/streamvisor/snapshots.db");
	assert_int_equal(cfg->sqlite.synchronous, SV_SYNC_FULL);
	assert_int_equal(cfg->sqlite.busy_timeout_ms, 5000);
	assert_string_equal(cfg->control.socket, "/run/streamvisor/streamvisord.sock");
	assert_int_equal(cfg->control.mode, 0660);
	assert_string_equal(cfg->control.group, "");
	assert_string_equal(cfg->run_as.user, "");
	assert_string_equal(cfg->run_as.group, "");
	assert_int_equal(cfg->heartbeat.interval_ms, 2000);
	assert_int_equal(cfg->heartbeat.timeout_ms, 10000);
	assert_int_equal(cfg->restart.backoff_initial_ms, 100);
	assert_int_equal(cfg->restart.backoff_max_ms, 30000);
	assert_int_equal(cfg->restart.start_ms, 1000);
	assert_int_equal(cfg->restart.max_retries, 5);
	assert_int_equal(cfg->restart.burst, 10);
	assert_int_equal(cfg->restart.burst_window_ms, 60000);
	assert_int_equal(cfg->restart.stop_timeout_ms, 10000);
	assert_int_equal(cfg->streams.n, 1);
	assert_string_equal(cfg->streams.v[0], "events");
	assert_int_equal(cfg->npools, 0);
	assert_int_equal(cfg->ntools, 0);
	assert_true(cfg->retention.trim_acked);
	assert_int_equal(cfg->retention.keep_ms, 3600000);
	assert_int_equal(cfg->retention.dead_keep_ms, 604800000);
	assert_int_equal(cfg->retention.events_keep_ms, 0);
	assert_string_equal(cfg->metrics.listen, "");
	assert_int_equal(cfg->log.level, LOG_INFO);
	assert_int_equal(cfg->log.format, LOG_FMT_LOGFMT);
	assert_string_equal(cfg->log.file, "");
	assert_string_equal(cfg->dir, tmpdir);
	config_free(cfg);
}

static void test_pool_defaults(void **state)
{
	(void)state;
	struct sv_config *cfg = expect_ok(
		"node = \"n1\";\n"
		"streams = [\"a\", \"b\"];\n"
		"pools = ( { name = \"persist\"; kind = \"persistence\"; },\n"
		"          { name = \"tools\"; kind = \"tool\"; streams = [\"calls\"]; },\n"
		"          { name = \"idle\"; kind = \"tool\"; count = 0; group = \"g-{node}-{node}\"; streams = []; } );\n"
		"tools = ( { name = \"echo\"; command = [\"/bin/cat\", \"-u\"]; } );\n");
	assert_int_equal(cfg->npools, 3);
	const struct pool_config *p = config_find_pool(cfg, "persist");
	assert_non_null(p);
	assert_int_equal(p->kind, POOL_PERSISTENCE);
	assert_string_equal(config_pool_kind_name(p->kind), "persistence");
	assert_int_equal(p->count, 1);
	assert_string_equal(p->group, "persist@n1");
	assert_int_equal(p->streams.n, 2);
	assert_string_equal(p->streams.v[1], "b");
	assert_int_equal(p->batch, 256);
	assert_int_equal(p->block_ms, 2000);
	assert_int_equal(p->claim_idle_ms, 30000);
	assert_int_equal(p->max_deliveries, 3);
	assert_int_equal(p->reducer, REDUCER_RESPONSE);
	assert_int_equal(p->max_rss_mb, 0);
	assert_int_equal(p->snapshot_interval_ms, 250);
	assert_string_equal(p->sqlite_path, cfg->sqlite.path);
	assert_int_equal(p->line, 3);

	p = config_find_pool(cfg, "tools");
	assert_non_null(p);
	assert_int_equal(p->kind, POOL_TOOL);
	assert_string_equal(config_pool_kind_name(p->kind), "tool");
	assert_string_equal(p->group, "tools");
	assert_int_equal(p->batch, 16);
	assert_int_equal(p->streams.n, 1);
	assert_string_equal(p->streams.v[0], "calls");
	assert_null(p->sqlite_path);

	p = config_find_pool(cfg, "idle");
	assert_non_null(p);
	assert_int_equal(p->count, 0);
	assert_string_equal(p->group, "g-n1-n1");
	assert_int_equal(p->streams.n, 2); /* [] = the global list */
	assert_null(config_find_pool(cfg, "nope"));

	const struct tool_config *t = config_find_tool(cfg, "echo");
	assert_non_null(t);
	assert_int_equal(t->command.n, 2);
	assert_string_equal(t->command.v[0], "/bin/cat");
	assert_int_equal(t->timeout_ms, 5000);
	assert_int_equal(t->max_output, 65536);
	assert_int_equal(t->env.n, 0);
	assert_string_equal(t->cwd, "/");
	assert_int_equal(t->rlimit_cpu_s, 0);
	assert_int_equal(t->rlimit_as_mb, 0);
	assert_int_equal(t->rlimit_nofile, 0);
	assert_null(config_find_tool(cfg, "nope"));
	config_free(cfg);
}

static void test_shipped_configs(void **state)
{
	(void)state;
	const char *data = getenv("SV_TEST_DATA");
	if (!data)
		skip();
	const char *files[] = {"../etc/streamvisor.conf", "../etc/streamvisor.conf.sample",
			       "conf/good/include_main.conf"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", data, files[i]);
		struct sv_config *cfg = NULL;
		struct config_errors errs = {0};
		int r = config_load(path, &cfg, &errs);
		if (r)
			dump_errs(&errs);
		assert_int_equal(r, 0);
		assert_non_null(cfg);
		assert_true(cfg->npools >= 2);
		assert_true(cfg->ntools >= 1);
		config_free(cfg);
		config_errors_free(&errs);
	}
}

static void test_bad_files_fail(void **state)
{
	(void)state;
	const char *data = getenv("SV_TEST_DATA");
	if (!data)
		skip();
	const char *names[] = {"syntax", "three_errors", "include_error", "int_above_2_31", "bad_url"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/conf/bad/%s.conf", data, names[i]);
		struct sv_config *cfg = NULL;
		struct config_errors errs = {0};
		assert_int_equal(config_load(path, &cfg, &errs), -EINVAL);
		assert_null(cfg);
		assert_true(errs.n > 0);
		if (strcmp(names[i], "three_errors") == 0)
			assert_int_equal(errs.n, 3);
		if (strcmp(names[i], "include_error") == 0)
			assert_non_null(strstr(errs.v[0], "/conf/bad/inc/bad_pools.conf:4: "));
		if (strcmp(names[i], "bad_url") == 0)
			assert_null(strstr(errs.v[0], "s3cr3t"));
		config_errors_free(&errs);
	}
}

/* ---- files, syntax, paths, include ----------------------------------- */

static void test_unreadable(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	struct sv_config *cfg = NULL;
	struct config_errors errs = {0};
	assert_int_equal(config_load(path, &cfg, &errs), -ENOENT);
	assert_null(cfg);
	assert_int_equal(errs.n, 1);
	char want[600];
	snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
	assert_string_equal(errs.v[0], want);
	config_errors_free(&errs);

	/* A directory. */
	assert_int_equal(config_load(tmpdir, &cfg, &errs), -EISDIR);
	assert_int_equal(errs.n, 1);
	config_errors_free(&errs);
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_errors("streams = [\"events\"];\n\npools = ( { name = ; } );\n", 1, 3, "syntax error");
	/* Duplicate settings are libconfig parse errors too. */
	expect_errors("streams = [\"a\"];\nstreams = [\"b\"];\n", 1, 2, "duplicate setting name");
}

static void test_relative_paths(void **state)
{
	(void)state;
	write_file("pw.txt", "from-file\n");
	struct sv_config *cfg = expect_ok(
		"streams = [\"e\"];\n"
		"redis = { password_file = \"pw.txt\"; };\n"
		"sqlite = { path = \"../var/./x/../snap.db\"; };\n"
		"control = { socket = \"run/sv.sock\"; };\n"
		"log = { file = \"/abs//log/../sv.log\"; };\n"
		"pools = ( { name = \"p\"; kind = \"persistence\"; },\n"
		"          { name = \"q\"; kind = \"persistence\"; group = \"q\"; sqlite_path = \"q.db\"; } );\n");
	char want[600];
	char *parent = strdup(tmpdir);
	*strrchr(parent, '/') = '\0';
	snprintf(want, sizeof(want), "%s/var/snap.db", parent);
	assert_string_equal(cfg->sqlite.path, want);
	snprintf(want, sizeof(want), "%s/run/sv.sock", tmpdir);
	assert_string_equal(cfg->control.socket, want);
	snprintf(want, sizeof(want), "%s/pw.txt", tmpdir);
	assert_string_equal(cfg->redis.password_file, want);
	assert_string_equal(cfg->log.file, "/abs/sv.log");
	assert_string_equal(config_find_pool(cfg, "p")->sqlite_path, cfg->sqlite.path);
	snprintf(want, sizeof(want), "%s/q.db", tmpdir);
	assert_string_equal(config_find_pool(cfg, "q")->sqlite_path, want);
	free(parent);
	config_free(cfg);

	/* Relative to the file's directory, not to the working directory. */
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	write_file("sub/rel.conf", "streams = [\"e\"]; sqlite = { path = \"db\"; };\n");
	char rel[600];
	snprintf(rel, sizeof(rel), "%s/sub/rel.conf", tmpdir + 1); /* relative to / */
	struct config_errors errs = {0};
	assert_int_equal(config_load(rel, &cfg, &errs), 0);
	snprintf(want, sizeof(want), "%s/sub/db", tmpdir);
	assert_string_equal(cfg->sqlite.path, want);
	snprintf(want, sizeof(want), "%s/sub", tmpdir);
	assert_string_equal(cfg->dir, want);
	assert_string_equal(cfg->path, rel);
	config_free(cfg);
	assert_int_equal(chdir(cwd), 0);
}

static void test_include(void **state)
{
	(void)state;
	write_file("inc/pools.conf", "pools = ( { name = \"p\"; kind = \"persistence\"; } );\n");
	write_file("inc/bad.conf", "# comment\nheartbeat = { interval_ms = \"x\"; };\n");
	struct sv_config *cfg = expect_ok("streams = [\"e\"];\n@include \"inc/pools.conf\"\n");
	assert_int_equal(cfg->npools, 1);
	config_free(cfg);

	struct config_errors errs;
	assert_int_equal(load_text("streams = [\"e\"];\n@include \"inc/bad.conf\"\nbogus = 1;\n", &cfg, &errs),
			 -EINVAL);
	assert_int_equal(errs.n, 2);
	/* Errors name the file that holds the setting. */
	char want[600];
	snprintf(want, sizeof(want), "%s/inc/bad.conf:2: heartbeat.interval_ms must be an integer", tmpdir);
	assert_non_null(strstr(errs.v[0], want));
	assert_non_null(strstr(errs.v[1], "/t.conf:3: unknown key \"bogus\""));
	config_errors_free(&errs);

	/* A missing include file is libconfig's error, at the @include. */
	expect_errors("streams = [\"e\"];\n@include \"inc/nope.conf\"\n", 1, 2, "include");
}

/* ---- integers: libconfig 1.5 wraps plain literals above 2^31-1 ------- */

static void test_int64_wrap(void **state)
{
	(void)state;
	/* 2592000000 (30 days) wraps to a negative int in libconfig 1.5; it is
	 * read from the source with its real value, as is the L form. */
	struct sv_config *cfg = expect_ok(
		"streams = [\"e\"];\n"
		"retention = { dead_keep_ms = 2592000000; events_keep_ms = 2592000001L;\n"
		"  /* keep_ms = 99999999999; */ keep_ms = 0x10; };\n"
		"restart = { backoff_max_ms = 2147483648; # backoff_max_ms = 1\n"
		"  stop_timeout_ms\n  =\n  2500000000\n  ; };\n"
		"tools = ( { name = \"x#y\"; command = [\"/bin/cat\", \"count = 5\"]; max_output = 3000; } );\n");
	assert_int_equal(cfg->retention.dead_keep_ms, INT64_C(2592000000));
	assert_int_equal(cfg->retention.events_keep_ms, INT64_C(2592000001));
	assert_int_equal(cfg->retention.keep_ms, 16);
	assert_int_equal(cfg->restart.backoff_max_ms, INT64_C(2147483648));
	assert_int_equal(cfg->restart.stop_timeout_ms, INT64_C(2500000000));
	config_free(cfg);
}

static void test_int_wrap_errors(void **state)
{
	(void)state;
	/* 4294967297 reads as 1 in libconfig 1.5: must not be accepted. */
	expect_errors("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"tool\"; count = 4294967297; } );\n", 1,
		      2, "pools[0].count must be between 0 and 1000 (got 4294967297)");
	/* Wraps to a negative value: reported with the real one. */
	expect_errors("streams = [\"e\"];\nheartbeat = { timeout_ms = 2147483648000; };\n", 1, 2,
		      "heartbeat.timeout_ms must be between 1 and 2592000000 (got 2147483648000)");
	/* -2147483649 wraps to +2147483647. */
	expect_errors("streams = [\"e\"];\nrestart = { start_ms = -2147483649; };\n", 1, 2,
		      "restart.start_ms must not be negative (got -2147483649)");
	/* 0xFFFFFFFF wraps to -1. */
	expect_errors("streams = [\"e\"];\nretention = { keep_ms = 0xFFFFFFFF; };\n", 1, 2,
		      "(got 4294967295)");
	/* Beyond 64 bits, with or without L. */
	expect_errors("streams = [\"e\"];\nretention = { keep_ms = 99999999999999999999;\n"
		      "dead_keep_ms = 99999999999999999999L; };\n",
		      2, 2, "value of retention.keep_ms is too large", 3, "value of retention.dead_keep_ms is too large");
	/* Same key twice on one line, in two groups: each gets its own literal. */
	expect_errors("streams = [\"e\"];\n"
		      "pools = ( { name = \"a\"; kind = \"tool\"; count = 1; }, { name = \"b\"; kind = \"tool\"; count = 4294967297; } );\n",
		      1, 2, "pools[1].count must be between 0 and 1000 (got 4294967297)");
	expect_errors("streams = [\"e\"];\n"
		      "pools = ( { name = \"a\"; kind = \"tool\"; count = \"1\"; }, { name = \"b\"; kind = \"tool\"; count = 4294967297; } );\n",
		      2, 2, "pools[0].count must be an integer", 2, "pools[1].count must be between 0 and 1000 (got 4294967297)");
	expect_errors("streams = [\"e\"];\n"
		      "pools = ( { name = \"a\"; kind = \"tool\"; count = { }; }, { name = \"b\"; kind = \"tool\"; count : 4294967297; } );\n",
		      2, 2, "pools[0].count must be an integer", 2, "pools[1].count must be between 0 and 1000 (got 4294967297)");
}

/* ---- types, unknown keys, ranges -------------------------------------- */

static void test_types_and_unknown_keys(void **state)
{
	(void)state;
	expect_errors("streams = [\"e\"];\n"
		      "node = 5;\n"
		      "redis = { url = [\"x\"]; colour = 1; };\n"
		      "sqlite = \"x\";\n"
		      "heartbeat = { interval_ms = 2.5; };\n"
		      "retention = { trim_acked = \"yes\"; };\n"
		      "pools = ( { name = \"p\"; kind = \"tool\"; count = \"2\"; foo = 1; } );\n"
		      "tools = ( { name = \"t\"; command = \"/bin/cat\"; rlimits = { cpu = 1; }; } );\n"
		      "streams2 = 1;\n",
		      11, 2, "node must be a string, not an integer", 3, "unknown key \"colour\" in redis", 3,
		      "redis.url must be a string, not an array", 4, "sqlite must be a group", 5,
		      "heartbeat.interval_ms must be an integer, not a float", 6,
		      "retention.trim_acked must be true or false, not a string", 7,
		      "unknown key \"foo\" in pools[0]", 7, "pools[0].count must be an integer, not a string", 8,
		      "tools[0].command must be an array of strings", 8, "unknown key \"cpu\" in tools[0].rlimits", 9,
		      "unknown key \"streams2\"");
}

static void test_types_and_unknown_keys_tools(void **state)
{
	(void)state;
	expect_errors("streams = [\"e\"];\n"
		      "tools = ( { name = \"t\"; command = \"/bin/cat\"; } );\n",
		      1, 2, "tools[0].command must be an array of strings");
	expect_errors("streams = (\"e\", 1);\n", 1, 1, "streams[1] must be a string, not an integer");
	/* A list of strings is as good as an array. */
	struct sv_config *cfg = expect_ok("streams = (\"e\", \"f\");\n");
	assert_int_equal(cfg->streams.n, 2);
	config_free(cfg);
}

/* pools[].snapshot_interval_ms (issue 14): persistence only, 0 .. 1 h. */
static void test_snapshot_interval(void **state)
{
	(void)state;
	expect_errors("streams = [\"e\"];\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; snapshot_interval_ms = -1; },\n"
		      "  { name = \"q\"; kind = \"persistence\"; sqlite_path = \"/tmp/q.db\"; snapshot_interval_ms = 3600001; },\n"
		      "  { name = \"t\"; kind = \"tool\"; snapshot_interval_ms = 100; } );\n",
		      3, 2, "snapshot_interval_ms must not be negative", 3,
		      "snapshot_interval_ms must be between 0 and 3600000", 4,
		      "snapshot_interval_ms applies to persistence pools only");
	struct sv_config *cfg = expect_ok("streams = [\"e\"];\n"
					  "pools = ( { name = \"p\"; kind = \"persistence\"; snapshot_interval_ms = 0; } );\n");
	assert_int_equal(config_find_pool(cfg, "p")->snapshot_interval_ms, 0);
	config_free(cfg);
}

static void test_ranges(void **state)
{
	(void)state;
	expect_errors("streams = [\"e\"];\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; count = -1; batch = 100001; block_ms = 0;\n"
		      "  max_deliveries = 0; max_rss_mb = -1; } );\n"
		      "retention = { keep_ms = 86400000; };\n"
		      "control = { mode = \"01777\"; };\n"
		      "tools = ( { name = \"t\"; command = [\"/bin/cat\"]; timeout_ms = 0; max_output = 0; env = [\"NOEQ\", \"=x\"]; cwd = \"tmp\"; } );\n",
		      12, 2, "count must not be negative", 2, "batch must be between 1 and 100000", 2,
		      "block_ms must be between 1 and", 3, "max_deliveries must be between 1 and", 3,
		      "max_rss_mb must not be negative", 4, "retention.keep_ms must be between 0 and 86399999", 5,
		      "control.mode must be an octal string", 6, "tools[0].timeout_ms must be between", 6,
		      "tools[0].max_output must be between", 6, "tools[0].env[0] must be \"NAME=VALUE\"", 6,
		      "tools[0].env[1] must be", 6, "tools[0].cwd must be an absolute path");
	/* The boundaries themselves are fine. */
	struct sv_config *cfg = expect_ok(
		"streams = [\"e\"];\n"
		"control = { mode = \"0777\"; };\n"
		"retention = { keep_ms = 86399999; dead_keep_ms = 31536000000; };\n"
		"pools = ( { name = \"p\"; kind = \"persistence\"; batch = 100000; count = 1000; } );\n");
	assert_int_equal(cfg->control.mode, 0777);
	assert_int_equal(cfg->retention.keep_ms, 86399999);
	assert_int_equal(cfg->pools[0].batch, 100000);
	config_free(cfg);
	/* The crash history holds PROC_BURST_MAX crashes: a larger burst
	 * could never trip, so it is refused; the largest that trips is fine. */
	expect_errors("streams = [\"e\"];\nrestart = { burst = 64; };\n", 1, 2,
		      "restart.burst must be between 0 and 63 (got 64)");
	expect_errors("streams = [\"e\"];\nrestart = { burst = 1000000; };\n", 1, 2,
		      "restart.burst must be between 0 and 63");
	cfg = expect_ok("streams = [\"e\"];\nrestart = { burst = 63; };\n");
	assert_int_equal(cfg->restart.burst, 63);
	config_free(cfg);
	expect_errors("streams = [];\n", 1, 1, "at least one stream");
	expect_errors("streams = [\"a\", \"a\"];\n", 1, 1, "duplicate stream \"a\"");
	expect_errors("streams = [\"e\"];\ncontrol = { mode = 660; };\n", 1, 2, "must be an octal string");
	expect_errors("streams = [\"e\"];\nnamespace = \"\";\n", 1, 2, "namespace must not be empty");
	expect_errors("streams = [\"e\"];\nnode = \"a b\";\n", 1, 2, "must not contain spaces");
	expect_errors("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"pers\"; } );\n", 1, 2,
		      "kind must be \"persistence\" or \"tool\"");
	expect_errors("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"tool\"; reducer = \"merge\";\n"
		      "sqlite_path = \"x\"; } );\n",
		      2, 2, "reducer applies to persistence pools only", 3, "sqlite_path applies to persistence");
	expect_errors("streams = [\"e\"];\nmetrics = { listen = \"127.0.0.1:0\"; };\n", 1, 2, "metrics.listen");
	cfg = expect_ok("streams = [\"e\"];\nmetrics = { listen = \"[::1]:9464\"; };\nlog = { level = \"debug\"; format = \"json\"; };\nsqlite = { synchronous = \"normal\"; };\n");
	assert_string_equal(cfg->metrics.listen, "[::1]:9464");
	assert_int_equal(cfg->log.level, LOG_DEBUG);
	assert_int_equal(cfg->log.format, LOG_FMT_JSON);
	assert_int_equal(cfg->sqlite.synchronous, SV_SYNC_NORMAL);
	config_free(cfg);
}

/* ---- cross-checks ------------------------------------------------------ */

static void test_cross_checks(void **state)
{
	(void)state;
	/* block_ms > heartbeat.interval_ms: at block_ms, or at the entry when
	 * block_ms is the default. */
	expect_errors("streams = [\"e\"];\nheartbeat = { interval_ms = 1000; timeout_ms = 3000; };\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; claim_idle_ms = 3000;\n"
		      "  block_ms = 1001; },\n"
		      "  { name = \"q\"; kind = \"tool\"; claim_idle_ms = 3000; } );\n",
		      2, 4, "pool p: block_ms (1001) must not exceed heartbeat.interval_ms (1000)", 5,
		      "pool q: block_ms (2000) must not exceed");
	/* block_ms == interval is fine. */
	struct sv_config *cfg = expect_ok("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"tool\"; block_ms = 2000; } );\n");
	config_free(cfg);
	/* block_ms >= redis.command_timeout_ms */
	expect_errors("streams = [\"e\"];\nredis = { command_timeout_ms = 1500; };\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; block_ms = 1500; } );\n",
		      1, 3, "block_ms (1500) must be less than redis.command_timeout_ms (1500)");
	/* heartbeat.timeout_ms < 3 x interval_ms */
	expect_errors("streams = [\"e\"];\nheartbeat = {\n  interval_ms = 2000;\n  timeout_ms = 5999; };\n", 1, 4,
		      "heartbeat.timeout_ms (5999) must be at least 3 x heartbeat.interval_ms (2000)");
	expect_errors("streams = [\"e\"];\nheartbeat = {\n  interval_ms = 4000; };\n", 1, 3,
		      "heartbeat.timeout_ms (10000) must be at least 3 x");
	/* claim_idle_ms < heartbeat.timeout_ms */
	expect_errors("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"persistence\";\n claim_idle_ms = 9999; } );\n",
		      1, 3, "claim_idle_ms (9999) must be at least heartbeat.timeout_ms (10000)");
	/* max_deliveries >= restart.max_retries, at the pool entry when
	 * max_deliveries is the default. */
	expect_errors("streams = [\"e\"];\nrestart = { max_retries = 3; };\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; } );\n",
		      1, 3, "pool p: max_deliveries (3) must be less than restart.max_retries (3)");
	/* two persistence pools, one SQLite path */
	expect_errors("streams = [\"e\"];\nsqlite = { path = \"a.db\"; };\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; },\n"
		      "  { name = \"q\"; kind = \"persistence\"; group = \"q\";\n   sqlite_path = \"./a.db\"; } );\n",
		      1, 5, "persistence pools p and q use the same SQLite file");
	cfg = expect_ok("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"persistence\"; },\n"
			"  { name = \"q\"; kind = \"persistence\"; group = \"q\"; sqlite_path = \"other.db\"; },\n"
			"  { name = \"t\"; kind = \"tool\"; } );\n");
	config_free(cfg);
	/* duplicate pool and tool names */
	expect_errors("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"tool\"; },\n"
		      "  { name = \"p\"; kind = \"tool\"; } );\n"
		      "tools = ( { name = \"t\"; command = [\"/bin/cat\"]; },\n { name = \"t\"; command = [\"/bin/cat\"]; } );\n",
		      2, 3, "duplicate pool name \"p\" (first defined at line 2)", 5,
		      "duplicate tool name \"t\" (first defined at line 4)");
	/* unknown reducer */
	expect_errors("streams = [\"e\"];\npools = ( { name = \"p\"; kind = \"persistence\"; reducer = \"sum\"; } );\n", 1,
		      2, "unknown reducer \"sum\"");
	/* tool command not an absolute executable */
	expect_errors("streams = [\"e\"];\ntools = ( { name = \"a\"; command = [\"cat\"]; },\n"
		      "  { name = \"b\"; command = [\"/nonexistent/x\"]; },\n"
		      "  { name = \"c\"; command = [\"/etc\"]; },\n"
		      "  { name = \"d\"; command = []; } );\n",
		      4, 2, "\"cat\" is not an absolute path", 3, "/nonexistent/x: No such file", 4,
		      "/etc is not an executable file", 5, "tools[3].command must not be empty");
	/* backoff_initial_ms > backoff_max_ms */
	expect_errors("streams = [\"e\"];\nrestart = { backoff_initial_ms = 200; backoff_max_ms = 100; };\n", 1, 2,
		      "restart.backoff_initial_ms (200) must not exceed restart.backoff_max_ms (100)");
	/* non-existent users and groups */
	expect_errors("streams = [\"e\"];\ncontrol = { group = \"no-such-group-sv\"; };\n"
		      "run_as = { user = \"no-such-user-sv\";\n group = \"no-such-group-sv\"; };\n",
		      3, 2, "control.group: no such group", 3, "run_as.user: no such user", 4,
		      "run_as.group: no such group");
	cfg = expect_ok("streams = [\"e\"];\ncontrol = { group = \"root\"; };\nrun_as = { user = \"root\"; group = \"root\"; };\n");
	config_free(cfg);
	/* everything is reported, not just the first problem */
	expect_errors("streams = [\"e\"];\n"
		      "heartbeat = { timeout_ms = 5000; };\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; block_ms = 3000; claim_idle_ms = 100; max_deliveries = 9; } );\n",
		      4, 2, "heartbeat.timeout_ms (5000) must be at least 3 x", 3, "block_ms (3000) must not exceed", 3,
		      "claim_idle_ms (100) must be at least", 3, "max_deliveries (9) must be less than");
}

/* ---- redis, passwords -------------------------------------------------- */

static void test_redis_url_and_password(void **state)
{
	(void)state;
	struct sv_config *cfg = expect_ok("streams = [\"e\"];\nredis = { url = \"redis://app:p%40ss@h:7000/3\"; };\n");
	assert_string_equal(cfg->redis.password, "p@ss");
	assert_string_equal(cfg->redis.parsed.user, "app");
	assert_int_equal(cfg->redis.parsed.port, 7000);
	assert_int_equal(cfg->redis.parsed.db, 3);
	assert_string_equal(cfg->redis.url_redacted, "redis://app:***@h:7000/3");
	config_free(cfg);

	/* The file wins over the url; only its first line counts. */
	write_file("secret", "file-pw\r\nsecond line\n");
	cfg = expect_ok("streams = [\"e\"];\nredis = { url = \"redis://:url-pw@h\"; password_file = \"secret\"; };\n");
	assert_string_equal(cfg->redis.password, "file-pw");
	assert_string_equal(cfg->redis.parsed.password, "file-pw");
	assert_null(strstr(cfg->redis.url_redacted, "pw"));
	assert_string_equal(cfg->redis.url_redacted, "redis://:***@h:6379/0");
	config_free(cfg);

	/* No password in the url: the file's is used (and shown as ***). */
	cfg = expect_ok("streams = [\"e\"];\nredis = { url = \"unix:///run/redis.sock?db=2\"; password_file = \"secret\"; };\n");
	assert_string_equal(cfg->redis.password, "file-pw");
	assert_string_equal(cfg->redis.url_redacted, "unix://:***@/run/redis.sock?db=2");
	config_free(cfg);

	write_file("empty", "");
	expect_errors("streams = [\"e\"];\nredis = { password_file = \"empty\"; };\n", 1, 2, "is empty");
	expect_errors("streams = [\"e\"];\nredis = { password_file = \"nope\"; };\n", 1, 2,
		      "redis.password_file: cannot read");

	/* An unparsable URL never appears in the error. */
	const char *bad[] = {"redis://u:topsecret@h:0", "http://:topsecret@h", "redis://:topsecret@", "redis://:topsecret@h/x",
			     "redis://:top%zzsecret@h"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char text[256];
		snprintf(text, sizeof(text), "streams = [\"e\"];\nredis = { url = \"%s\"; };\n", bad[i]);
		struct config_errors errs;
		assert_int_equal(load_text(text, &cfg, &errs), -EINVAL);
		assert_int_equal(errs.n, 1);
		assert_non_null(strstr(errs.v[0], "t.conf:2: redis.url: cannot parse the URL"));
		assert_null(strstr(errs.v[0], "topsecret"));
		assert_null(strstr(errs.v[0], "secret"));
		config_errors_free(&errs);
	}
}

/* ---- the client's load (streamvisorctl) ------------------------------- */

/* What the client needs from a file whose secrets and machine checks would
 * all fail the daemon's load. */
static const char client_conf[] =
	"streams = [\"e\"];\n"
	"redis = { password_file = \"%s\"; };\n"
	"control = { socket = \"ctl.sock\"; group = \"no-such-group-sv\"; };\n"
	"sqlite = { path = \"global.db\"; };\n"
	"run_as = { user = \"no-such-user-sv\"; };\n"
	"tools = ( { name = \"x\"; command = [\"/no/such/tool\"]; } );\n"
	"pools = ( { name = \"a\"; kind = \"persistence\"; },\n"
	"          { name = \"b\"; kind = \"persistence\"; sqlite_path = \"b/own.db\"; },\n"
	"          { name = \"t\"; kind = \"tool\"; } );\n";

static struct sv_config *expect_client_ok(const char *pwfile)
{
	char text[sizeof(client_conf) + 256];
	snprintf(text, sizeof(text), client_conf, pwfile);
	struct sv_config *cfg = NULL;
	struct config_errors errs;
	/* The daemon's load refuses it (group, user, tool; the missing
	 * password file) ... */
	loader = config_load;
	assert_int_equal(load_text(text, &cfg, &errs), -EINVAL);
	assert_true(errs.n >= 3);
	config_errors_free(&errs);
	/* ... the client's takes it. */
	loader = config_load_client;
	cfg = expect_ok(text);
	loader = config_load;
	return cfg;
}

static void test_client_never_reads_secrets(void **state)
{
	(void)state;
	char want[600];
	/* A password file that does not exist, and one that does: neither is
	 * opened, so the password stays unknown. */
	write_file("client-secret", "topsecret\n");
	const char *pwfiles[] = {"no-such-secret", "client-secret"};
	for (size_t i = 0; i < ARRAY_SIZE(pwfiles); i++) {
		struct sv_config *cfg = expect_client_ok(pwfiles[i]);
		assert_null(cfg->redis.password);
		assert_null(cfg->redis.parsed.password);
		snprintf(want, sizeof(want), "%s/%s", cfg->dir, pwfiles[i]);
		assert_string_equal(cfg->redis.password_file, want);
		/* What the client needs is all there, resolved. */
		snprintf(want, sizeof(want), "%s/ctl.sock", cfg->dir);
		assert_string_equal(cfg->control.socket, want);
		snprintf(want, sizeof(want), "%s/global.db", cfg->dir);
		assert_string_equal(cfg->sqlite.path, want);
		assert_string_equal(config_find_pool(cfg, "a")->sqlite_path, want);
		snprintf(want, sizeof(want), "%s/b/own.db", cfg->dir);
		assert_string_equal(config_find_pool(cfg, "b")->sqlite_path, want);
		assert_null(config_find_pool(cfg, "t")->sqlite_path);
		config_free(cfg);
	}
}

static void test_client_reports_errors(void **state)
{
	(void)state;
	loader = config_load_client;
	/* The same syntax errors, with FILE:LINE ... */
	expect_errors("streams = [\"events\"];\n\npools = ( { name = ; } );\n", 1, 3, "syntax error");
	/* ... and the same semantic ones, each at its line. */
	expect_errors("streams = [\"e\"];\nredis = { password_file = 7; };\nbogus = 1;\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\"; count = -1; } );\n",
		      3, 2, "redis.password_file must be a string", 3, "unknown key \"bogus\"", 4,
		      "count must not be negative");
	/* A file it cannot read, as the daemon's load. */
	char path[512];
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	struct sv_config *cfg = NULL;
	struct config_errors errs = {0};
	assert_int_equal(config_load_client(path, &cfg, &errs), -ENOENT);
	assert_int_equal(errs.n, 1);
	config_errors_free(&errs);
	loader = config_load;
}

/* ---- reload helpers ---------------------------------------------------- */

static const char base_conf[] =
	"node = \"n\";\nstreams = [\"e\"];\n"
	"pools = ( { name = \"p\"; kind = \"persistence\"; count = 2; },\n"
	"          { name = \"t\"; kind = \"tool\"; } );\n"
	"tools = ( { name = \"echo\"; command = [\"/bin/cat\"]; }, { name = \"x\"; command = [\"/bin/cat\"]; } );\n";

static struct sv_config *load_with(const char *extra)
{
	char *text = NULL;
	if (asprintf(&text, "%s%s", base_conf, extra) < 0)
		abort();
	struct sv_config *cfg = expect_ok(text);
	free(text);
	return cfg;
}

static void test_restart_key_changed(void **state)
{
	(void)state;
	struct sv_config *a = load_with("");
	struct sv_config *b = load_with("# only a comment\nrestart = { burst = 3; };\nlog = { level = \"debug\"; format = \"json\"; };\n"
					"retention = { keep_ms = 5; };\nheartbeat = { interval_ms = 2000; timeout_ms = 12000; };\n");
	assert_null(config_restart_key_changed(a, b));
	config_free(b);
	struct {
		const char *extra, *key;
	} cases[] = {
		{"namespace = \"other\";\n", "namespace"},
		{"redis = { url = \"redis://127.0.0.1:6380/0\"; };\n", "redis"},
		{"redis = { url = \"redis://:pw@127.0.0.1:6379/0\"; };\n", "redis"},
		{"redis = { command_timeout_ms = 20000; };\n", "redis"},
		{"redis = { connect_timeout_ms = 20000; };\n", "redis"},
		{"sqlite = { path = \"/tmp/x.db\"; };\n", "sqlite"},
		{"sqlite = { synchronous = \"normal\"; };\n", "sqlite"},
		{"control = { socket = \"/tmp/x.sock\"; };\n", "control"},
		{"control = { mode = \"0600\"; };\n", "control"},
		{"run_as = { user = \"root\"; };\n", "run_as"},
		{"log = { file = \"/tmp/sv.log\"; };\n", "log.file"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		b = load_with(cases[i].extra);
		const char *k = config_restart_key_changed(a, b);
		assert_non_null(k);
		assert_string_equal(k, cases[i].key);
		config_free(b);
	}
	/* The web child's listeners reload live: they restart it alone. */
	static const struct {
		const char *extra, *key;
	} web[] = {
		{"metrics = { listen = \"127.0.0.1:9464\"; };\n", "metrics.listen"},
		{"http = { listen = \"127.0.0.1:8470\"; };\n", "http.listen"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(web); i++) {
		b = load_with(web[i].extra);
		assert_null(config_restart_key_changed(a, b));
		const char *k = config_web_restart_key(a, b);
		assert_non_null(k);
		assert_string_equal(k, web[i].key);
		config_free(b);
	}
	/* node is in the base text: change it by hand. */
	b = load_with("");
	free(b->node);
	b->node = util_xstrdup("other");
	assert_string_equal(config_restart_key_changed(a, b), "node");
	config_free(b);
	config_free(a);
}


/* Stream patterns (issue 11): classification, escapes, matching, own keys,
 * the split of `streams`, defaults and ranges. */
static void test_patterns_classify(void **state)
{
	(void)state;
	assert_false(config_is_pattern("events"));
	assert_false(config_is_pattern("codex:run:1:events"));
	assert_true(config_is_pattern("codex:run:*:events"));
	assert_true(config_is_pattern("run?"));
	assert_true(config_is_pattern("run[0-9]"));
	assert_false(config_is_pattern("a\\*b"));     /* escaped */
	assert_false(config_is_pattern("a\\?b\\[c"));
	assert_true(config_is_pattern("a\\\\*"));     /* the backslash is escaped, not the star */
	assert_false(config_is_pattern("trailing\\"));
	assert_false(config_is_pattern("a]b"));

	assert_true(config_pattern_match("codex:run:*:events", "codex:run:42:events"));
	assert_false(config_pattern_match("codex:run:*:events", "codex:run:42:events:x"));
	assert_true(config_pattern_match("run?", "run7"));
	assert_false(config_pattern_match("run?", "run77"));
	assert_true(config_pattern_match("run[0-9]", "run3"));
	assert_false(config_pattern_match("run[0-9]", "runx"));
	assert_true(config_pattern_match("a\\*b*", "a*bc"));
	assert_false(config_pattern_match("a\\*b*", "axbc"));
}

/* Pool p has nstreams literal streams, the one pattern given, and these
 * discovery settings. */
static void assert_pool_patterns(const struct pool_config *p, size_t nstreams, const char *pattern,
				 int64_t discover_ms, int64_t read_keys)
{
	assert_non_null(p);
	assert_int_equal(p->streams.n, nstreams);
	assert_int_equal(p->patterns.n, 1);
	assert_string_equal(p->patterns.v[0], pattern);
	assert_int_equal(p->discover_ms, discover_ms);
	assert_int_equal(p->read_keys, read_keys);
}

static void test_patterns_config(void **state)
{
	(void)state;
	struct sv_config *cfg = expect_ok("streams = [\"e\", \"codex:run:*:events\", \"lit\\\\*x\"];\n"
					  "pools = ( { name = \"p\"; kind = \"persistence\"; },\n"
					  "  { name = \"q\"; kind = \"tool\"; streams = [\"r:?\"]; discover_ms = 100; read_keys = 1000; } );\n");
	/* Global: literal names (escapes removed) and patterns apart. */
	assert_int_equal(cfg->streams.n, 2);
	assert_string_equal(cfg->streams.v[0], "e");
	assert_string_equal(cfg->streams.v[1], "lit*x");
	assert_int_equal(cfg->patterns.n, 1);
	assert_string_equal(cfg->patterns.v[0], "codex:run:*:events");
	assert_pool_patterns(config_find_pool(cfg, "p"), 2, "codex:run:*:events", 1000, 16);
	/* A pool of patterns only is valid. */
	assert_pool_patterns(config_find_pool(cfg, "q"), 0, "r:?", 100, 1000);

	/* Own keys: the namespace and dead-letter streams. */
	static const struct {
		const char *key;
		bool own;
	} keys[] = {{"sv:workers", true}, {"sv:tool:r:c", true}, {"codex:run:1:events:dead", true},
		    {"codex:run:1:events", false}, {"svx:a", false}, {"sv", false}};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (config_own_key(cfg, keys[i].key) != keys[i].own)
			fail_msg("config_own_key(\"%s\") is not %d", keys[i].key, keys[i].own);
	config_free(cfg);

	cfg = expect_ok("streams = [\"codex:run:*:events\"];\nnamespace = \"ns\";\n"
			"pools = ( { name = \"p\"; kind = \"persistence\"; } );\n");
	assert_int_equal(cfg->pools[0].streams.n, 0);
	assert_int_equal(cfg->pools[0].patterns.n, 1);
	assert_true(config_own_key(cfg, "ns:x"));
	assert_false(config_own_key(cfg, "sv:x"));
	config_free(cfg);

	/* Ranges and bad patterns, each at its line. */
	expect_errors("streams = [\"e\"];\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\";\n"
		      "  discover_ms = 99; read_keys = 0; },\n"
		      "  { name = \"q\"; kind = \"tool\"; discover_ms = 600001; read_keys = 1001; } );\n",
		      4, 3, "discover_ms must be between 100 and 600000", 3, "read_keys must be between 1 and 1000", 4,
		      "discover_ms must be between 100 and 600000", 4, "read_keys must be between 1 and 1000");
	expect_errors("streams = [\"e\",\n  \"r:[ab\"];\n"
		      "pools = ( { name = \"p\"; kind = \"persistence\";\n"
		      "  streams = [\"sv:*\"]; } );\n",
		      2, 1, "has a '[' without its ']'", 4, "lies under the namespace");
}

static void test_pool_changed(void **state)
{
	(void)state;
	struct sv_config *a = load_with("");
	struct sv_config *b = load_with("restart = { burst = 3; };\nlog = { level = \"debug\"; };\n");
	for (size_t i = 0; i < a->npools; i++)
		assert_false(config_pool_changed(a, &a->pools[i], b, config_find_pool(b, a->pools[i].name)));
	assert_true(config_tools_equal(a, b));
	assert_true(config_heartbeat_equal(a, b));
	config_free(b);

	/* Reordered tools are the same tools. */
	char *text = strdup(base_conf);
	char *t = strstr(text, "tools =");
	*t = '\0';
	char *re = NULL;
	if (asprintf(&re, "%stools = ( { name = \"x\"; command = [\"/bin/cat\"]; }, { name = \"echo\"; command = [\"/bin/cat\"]; } );\n", text) < 0)
		abort();
	b = expect_ok(re);
	assert_true(config_tools_equal(a, b));
	config_free(b);
	free(re);
	free(text);

	/* The pool count is not a reason to restart a running worker (a
	 * reload resizes the pool); any other setting is. */
	const char *pool_variants[][2] = {
		/* persistence pool p */
		{"{ name = \"p\"; kind = \"persistence\"; count = 5; }", ""},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; batch = 64; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; block_ms = 1000; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; claim_idle_ms = 40000; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; max_deliveries = 2; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; reducer = \"merge\"; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; max_rss_mb = 100; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; group = \"g\"; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; streams = [\"e\", \"f\"]; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; sqlite_path = \"/tmp/o.db\"; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; streams = [\"e\", \"r:*\"]; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; discover_ms = 500; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; read_keys = 4; }", "x"},
		{"{ name = \"p\"; kind = \"persistence\"; count = 2; snapshot_interval_ms = 0; }", "x"},
		{"{ name = \"p\"; kind = \"tool\"; count = 2; }", "x"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(pool_variants); i++) {
		char *txt = NULL;
		if (asprintf(&txt, "node = \"n\";\nstreams = [\"e\"];\npools = ( %s,\n { name = \"t\"; kind = \"tool\"; } );\n"
				   "tools = ( { name = \"echo\"; command = [\"/bin/cat\"]; }, { name = \"x\"; command = [\"/bin/cat\"]; } );\n",
			     pool_variants[i][0]) < 0)
			abort();
		b = expect_ok(txt);
		free(txt);
		bool want = pool_variants[i][1][0] != '\0';
		if (config_pool_changed(a, config_find_pool(a, "p"), b, config_find_pool(b, "p")) != want) {
			print_message("variant %zu: %s\n", i, pool_variants[i][0]);
			fail();
		}
		assert_false(config_pool_changed(a, config_find_pool(a, "t"), b, config_find_pool(b, "t")));
		config_free(b);
	}

	/* Heartbeat changes restart every pool; tool changes only tool pools. */
	b = load_with("heartbeat = { interval_ms = 2000; timeout_ms = 20000; };\n");
	assert_false(config_heartbeat_equal(a, b));
	assert_true(config_pool_changed(a, config_find_pool(a, "p"), b, config_find_pool(b, "p")));
	assert_true(config_pool_changed(a, config_find_pool(a, "t"), b, config_find_pool(b, "t")));
	config_free(b);

	const char *tool_variants[] = {
		"{ name = \"echo\"; command = [\"/bin/cat\", \"-u\"]; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; timeout_ms = 1; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; max_output = 1; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; env = [\"A=B\"]; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; cwd = \"/tmp\"; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; rlimits = { cpu_s = 1; }; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; rlimits = { as_mb = 1; }; }",
		"{ name = \"echo\"; command = [\"/bin/cat\"]; rlimits = { nofile = 1; }; }",
		"{ name = \"echo2\"; command = [\"/bin/cat\"]; }",
	};
	for (size_t i = 0; i < ARRAY_SIZE(tool_variants); i++) {
		char *txt = NULL;
		if (asprintf(&txt, "node = \"n\";\nstreams = [\"e\"];\n"
				   "pools = ( { name = \"p\"; kind = \"persistence\"; count = 2; },\n { name = \"t\"; kind = \"tool\"; } );\n"
				   "tools = ( %s, { name = \"x\"; command = [\"/bin/cat\"]; } );\n",
			     tool_variants[i]) < 0)
			abort();
		b = expect_ok(txt);
		free(txt);
		assert_false(config_tools_equal(a, b));
		assert_false(config_pool_changed(a, config_find_pool(a, "p"), b, config_find_pool(b, "p")));
		assert_true(config_pool_changed(a, config_find_pool(a, "t"), b, config_find_pool(b, "t")));
		config_free(b);
	}
	/* One tool fewer. */
	b = expect_ok("node = \"n\";\nstreams = [\"e\"];\npools = ( { name = \"t\"; kind = \"tool\"; } );\n"
		      "tools = ( { name = \"echo\"; command = [\"/bin/cat\"]; } );\n");
	assert_false(config_tools_equal(a, b));
	config_free(b);
	config_free(a);
}

/* Issue 13: tools[].mode and the handler's settings, pools[].tools, and
 * the refusal of two tool pools that would both answer one call. */
static void test_tool_modes(void **state)
{
	(void)state;
	/* Defaults: exec, and the persistent settings at their defaults. */
	struct sv_config *cfg = expect_ok("streams = [\"e\"];\n"
					  "tools = ( { name = \"t\"; command = [\"/bin/cat\"]; } );\n");
	assert_int_equal(cfg->tools[0].mode, TOOL_EXEC);
	assert_int_equal(cfg->tools[0].concurrency, 1);
	assert_int_equal(cfg->tools[0].start_timeout_ms, 10000);
	assert_int_equal(cfg->tools[0].max_calls, 0);
	assert_int_equal(cfg->tools[0].max_rss_mb, 0);
	assert_string_equal(config_tool_mode_name(cfg->tools[0].mode), "exec");
	config_free(cfg);
	cfg = expect_ok("streams = [\"e\"];\n"
			"tools = ( { name = \"h\"; command = [\"/bin/cat\"]; mode = \"persistent\"; concurrency = 1000;\n"
			"  start_timeout_ms = 500; max_calls = 100; max_rss_mb = 256; } );\n");
	assert_int_equal(cfg->tools[0].mode, TOOL_PERSISTENT);
	assert_int_equal(cfg->tools[0].concurrency, 1000);
	assert_int_equal(cfg->tools[0].start_timeout_ms, 500);
	assert_int_equal(cfg->tools[0].max_calls, 100);
	assert_int_equal(cfg->tools[0].max_rss_mb, 256);
	assert_string_equal(config_tool_mode_name(cfg->tools[0].mode), "persistent");
	config_free(cfg);
	expect_errors("streams = [\"e\"];\n"
		      "tools = ( { name = \"h\"; command = [\"/bin/cat\"]; mode = \"daemon\"; },\n"
		      "  { name = \"p\"; command = [\"/bin/cat\"]; mode = \"persistent\"; concurrency = 0;\n"
		      "    max_calls = -1; max_rss_mb = 1048577; start_timeout_ms = 0; },\n"
		      "  { name = \"q\"; command = [\"/bin/cat\"]; mode = \"persistent\"; concurrency = 1001; } );\n",
		      6, 2, "tools[0].mode must be \"exec\" or \"persistent\", not \"daemon\"", 3,
		      "tools[1].concurrency must be between 1 and 1000 (got 0)", 4,
		      "tools[1].start_timeout_ms must be between 1 and", 4, "tools[1].max_calls must not be negative", 4,
		      "tools[1].max_rss_mb must be between 0 and 1048576", 5, "tools[2].concurrency must be between");
	/* The handler's settings on an exec tool are refused, not ignored. */
	expect_errors("streams = [\"e\"];\n"
		      "tools = ( { name = \"t\"; command = [\"/bin/cat\"];\n"
		      "  concurrency = 4; max_calls = 10; } );\n",
		      2, 3, "tools[0].concurrency applies to persistent tools only", 3,
		      "tools[0].max_calls applies to persistent tools only");
}

static void test_pool_tools(void **state)
{
	(void)state;
	static const char tools[] = "tools = ( { name = \"a\"; command = [\"/bin/cat\"]; },\n"
				    "  { name = \"b\"; command = [\"/bin/cat\"]; } );\n";
	char text[2048];
	/* Disjoint tools through different groups on one stream: fine. */
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; group = \"ga\"; tools = [\"a\"]; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\"; tools = [\"b\"]; } );\n",
		 tools);
	struct sv_config *cfg = expect_ok(text);
	assert_true(cfg->pools[0].tools_given);
	assert_true(config_pool_serves(&cfg->pools[0], "a"));
	assert_false(config_pool_serves(&cfg->pools[0], "b"));
	config_free(cfg);
	/* Without tools a pool serves every tool; two such pools in one
	 * group share the work (fine). */
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"p1\"; kind = \"tool\"; }, { name = \"p2\"; kind = \"tool\"; } );\n", tools);
	cfg = expect_ok(text);
	assert_false(cfg->pools[0].tools_given);
	assert_true(config_pool_serves(&cfg->pools[0], "b"));
	config_free(cfg);
	/* Different groups, overlapping tools, one stream: refused at the
	 * second pool's tools. */
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; group = \"ga\"; tools = [\"a\", \"b\"]; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\";\n"
		 "    tools = [\"b\"]; } );\n",
		 tools);
	expect_errors(text, 1, 6, "tool pools pa and pb would both answer tool \"b\" on e through different groups");
	/* One serves every tool: it overlaps anything on its streams. */
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; group = \"ga\"; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\"; tools = [\"b\"]; } );\n",
		 tools);
	expect_errors(text, 1, 5, "would both answer tool \"b\"");
	/* Disjoint literal streams: fine; a literal matched by the other's
	 * pattern: refused; patterns with disjoint prefixes: fine; patterns
	 * that could meet: refused. */
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; group = \"ga\"; streams = [\"x\"]; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\"; streams = [\"y\", \"run:*\"]; },\n"
		 "  { name = \"pc\"; kind = \"tool\"; group = \"gc\"; streams = [\"job:*\"]; } );\n",
		 tools);
	cfg = expect_ok(text);
	config_free(cfg);
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; group = \"ga\"; streams = [\"run:1\"]; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\"; streams = [\"run:*\"]; } );\n",
		 tools);
	expect_errors(text, 1, 5, "on run:1 through different groups");
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; group = \"ga\"; streams = [\"r*\"]; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\"; streams = [\"run:?\"]; } );\n",
		 tools);
	expect_errors(text, 1, 5, "on r* / run:? through different groups");
	/* tools: known names, no duplicates, not empty, tool pools only. */
	snprintf(text, sizeof(text),
		 "streams = [\"e\"];\n%s"
		 "pools = ( { name = \"pa\"; kind = \"tool\"; tools = [\"a\", \"zz\", \"a\"]; },\n"
		 "  { name = \"pb\"; kind = \"tool\"; group = \"gb\"; streams = [\"x\"]; tools = []; },\n"
		 "  { name = \"pp\"; kind = \"persistence\"; tools = [\"a\"]; } );\n",
		 tools);
	expect_errors(text, 4, 4, "pools[0].tools: no tool named \"zz\" in tools", 4,
		      "pools[0].tools: duplicate tool \"a\"", 5, "pools[1].tools must name at least one tool", 6,
		      "pools[2]: tools applies to tool pools only");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_pool_defaults),
		cmocka_unit_test(test_shipped_configs),
		cmocka_unit_test(test_bad_files_fail),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_int64_wrap),
		cmocka_unit_test(test_int_wrap_errors),
		cmocka_unit_test(test_types_and_unknown_keys),
		cmocka_unit_test(test_types_and_unknown_keys_tools),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_snapshot_interval),
		cmocka_unit_test(test_cross_checks),
		cmocka_unit_test(test_redis_url_and_password),
		cmocka_unit_test(test_client_never_reads_secrets),
		cmocka_unit_test(test_client_reports_errors),
		cmocka_unit_test(test_restart_key_changed),
		cmocka_unit_test(test_pool_changed),
		cmocka_unit_test(test_patterns_classify),
		cmocka_unit_test(test_patterns_config),
		cmocka_unit_test(test_tool_modes),
		cmocka_unit_test(test_pool_tools),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
