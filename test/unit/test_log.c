/* Unit tests for log.c: logfmt quoting and escaping, the JSON line shape,
 * level filtering, truncation, child lines and their relay, reopen. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

static char tmpdir[64];
static char logpath[128];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sv-test-log.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(logpath, sizeof(logpath), "%s/test.log", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_close();
	char p[160];
	unlink(logpath);
	snprintf(p, sizeof(p), "%s.1", logpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s/child.log", tmpdir);
	unlink(p);
	rmdir(tmpdir);
	return 0;
}

/* The whole file; the caller frees. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return strdup("");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	return buf;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Start a fresh log file in the given format at the given level. */
static void open_fresh(enum log_level lvl, enum log_format fmt)
{
	log_close();
	unlink(logpath);
	assert_int_equal(log_open("persist/1", lvl, fmt, logpath), 0);
}

/* "ts=YYYY-MM-DDTHH:MM:SS.mmmZ " */
static void assert_ts(const char *ts)
{
	assert_int_equal(strlen(ts) >= 24, 1);
	for (int i = 0; i < 24; i++) {
		char c = ts[i];
		switch (i) {
		case 4: case 7: assert_int_equal(c, '-'); break;
		case 10: assert_int_equal(c, 'T'); break;
		case 13: case 16: assert_int_equal(c, ':'); break;
		case 19: assert_int_equal(c, '.'); break;
		case 23: assert_int_equal(c, 'Z'); break;
		default: assert_true(c >= '0' && c <= '9');
		}
	}
}

static void test_logfmt_line(void **state)
{
	(void)state;
	open_fresh(LOG_DEBUG, LOG_FMT_LOGFMT);
	log_kv(LOG_INFO, KV("plain", "v1", "space", "a b", "eq", "k=v", "quote", "say \"hi\"",
			    "nl", "x\ny", "bs", "c:\\dir", "bsq", "a \\ b", "empty", "",
			    "ctl", "a\tb\x01"),
	       "hello %s", "world");
	char *s = slurp(logpath);
	assert_int_equal(count_lines(s), 1);
	assert_memory_equal(s, "ts=", 3);
	assert_ts(s + 3);
	char pidbuf[64];
	snprintf(pidbuf, sizeof(pidbuf), " level=info proc=persist/1 pid=%d msg=\"hello world\" ",
		 (int)getpid());
	assert_non_null(strstr(s, pidbuf));
	const char *tail = strstr(s, "msg=\"hello world\" ") + strlen("msg=\"hello world\" ");
	assert_string_equal(tail, "plain=v1 space=\"a b\" eq=\"k=v\" quote=\"say \\\"hi\\\"\" "
				  "nl=\"x\\ny\" bs=c:\\dir bsq=\"a \\\\ b\" empty=\"\" "
				  "ctl=\"a\\tb\\u0001\"\n");
	/* At info there is no func=. */
	assert_null(strstr(s, "func="));
	free(s);
}

static void test_logfmt_func_and_levels(void **state)
{
	(void)state;
	open_fresh(LOG_DEBUG, LOG_FMT_LOGFMT);
	log_debug("d");
	log_info("i");
	log_warn("w");
	log_error("e");
	log_write(LOG_WARN, NULL, NULL, "nofunc");
	char *s = slurp(logpath);
	assert_int_equal(count_lines(s), 5);
	assert_non_null(strstr(s, "level=debug proc=persist/1"));
	assert_non_null(strstr(s, "msg=d func=test_logfmt_func_and_levels\n"));
	assert_non_null(strstr(s, "msg=i\n"));
	assert_non_null(strstr(s, "level=warn "));
	assert_non_null(strstr(s, "msg=w func=test_logfmt_func_and_levels\n"));
	assert_non_null(strstr(s, "msg=e func=test_logfmt_func_and_levels\n"));
	assert_non_null(strstr(s, "msg=nofunc\n"));
	free(s);

	/* Filtering. */
	open_fresh(LOG_WARN, LOG_FMT_LOGFMT);
	assert_int_equal(log_get_level(), LOG_WARN);
	log_debug("no");
	log_info("no");
	log_warn("yes");
	s = slurp(logpath);
	assert_int_equal(count_lines(s), 1);
	assert_non_null(strstr(s, "msg=yes"));
	free(s);
}

static void test_json_line(void **state)
{
	(void)state;
	open_fresh(LOG_INFO, LOG_FMT_JSON);
	log_kv(LOG_WARN, KV("stream", "events", "note", "a \"q\"\n", "msg", "clash"), "bad \xff byte %d",
	       42);
	char *s = slurp(logpath);
	assert_int_equal(count_lines(s), 1);
	json_error_t err;
	json_t *j = json_loads(s, 0, &err);
	assert_non_null(j);
	assert_true(json_is_object(j));
	/* Key order: ts, level, proc, pid, msg, then the rest. */
	static const char *const order[] = {"ts", "level", "proc", "pid", "msg", "func", "stream",
					    "note", "_msg"};
	size_t i = 0;
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) {
		assert_true(i < sizeof(order) / sizeof(order[0]));
		assert_string_equal(k, order[i]);
		i++;
	}
	assert_int_equal(i, 9);
	assert_ts(json_string_value(json_object_get(j, "ts")));
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "proc")), "persist/1");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "bad \xef\xbf\xbd byte 42");
	assert_string_equal(json_string_value(json_object_get(j, "func")), "test_json_line");
	assert_string_equal(json_string_value(json_object_get(j, "note")), "a \"q\"\n");
	assert_string_equal(json_string_value(json_object_get(j, "_msg")), "clash");
	json_decref(j);
	free(s);
}

static void test_truncation(void **state)
{
	(void)state;
	size_t big = 20000;
	char *m = malloc(big + 1);
	assert_non_null(m);
	memset(m, 'x', big);
	m[big] = '\0';
	/* A multi-byte character across the cut must not be split. */
	memcpy(m + 3998, "\xc3\xa9\xc3\xa9", 4);
	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	log_info("%s", m);
	char *s = slurp(logpath);
	assert_int_equal(count_lines(s), 1);
	assert_true(strlen(s) < 4200);
	assert_null(strstr(s, "\xef\xbf\xbd"));
	free(s);

	open_fresh(LOG_INFO, LOG_FMT_JSON);
	log_kv(LOG_INFO, KV("big", m), "%s", m);
	s = slurp(logpath);
	assert_int_equal(count_lines(s), 1);
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_true(json_string_length(json_object_get(j, "msg")) <= 4000);
	assert_true(json_string_length(json_object_get(j, "big")) <= 4000);
	json_decref(j);
	free(s);
	free(m);
}

static void test_relay_json_to_logfmt(void **state)
{
	(void)state;
	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	log_relay("{\"ts\":\"2026-01-10T12:00:00.123Z\",\"level\":\"warn\",\"proc\":\"persist/1\","
		  "\"pid\":4242,\"msg\":\"hi there\",\"stream\":\"events\",\"n\":3,"
		  "\"obj\":{\"a\":1}}",
		  "persist/1", 4242, NULL, 0);
	/* Below the master's level: dropped. */
	log_relay("{\"level\":\"debug\",\"msg\":\"quiet\"}", "persist/1", 4242, NULL, 0);
	char *s = slurp(logpath);
	assert_string_equal(s, "ts=2026-01-10T12:00:00.123Z level=warn proc=persist/1 pid=4242 "
			       "msg=\"hi there\" stream=events n=3 obj=\"{\\\"a\\\":1}\"\n");
	free(s);
}

/* The level comes back, and an error record's message, bounded, cut at a
 * character and with control characters replaced: what the master keeps
 * as a slot's last error. */
static void test_relay_error_message(void **state)
{
	(void)state;
	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	char msg[16] = "untouched";
	assert_int_equal(log_relay("{\"level\":\"info\",\"msg\":\"fine\"}", "p", 1, msg, sizeof(msg)), LOG_INFO);
	assert_string_equal(msg, "untouched");
	assert_int_equal(log_relay("plain text", "p", 1, msg, sizeof(msg)), LOG_WARN);
	assert_string_equal(msg, "untouched");
	assert_int_equal(log_relay("  ", "p", 1, msg, sizeof(msg)), -1);
	assert_int_equal(log_relay("{\"level\":\"error\",\"msg\":\"a\\nb\\u001bc\"}", "p", 1, msg, sizeof(msg)),
			 LOG_ERROR);
	assert_string_equal(msg, "a?b?c");
	/* 14 bytes then a 2-byte character: it does not fit in 15, so it goes. */
	assert_int_equal(log_relay("{\"level\":\"error\",\"msg\":\"cannot create \u00e9 and more\"}", "p", 1, msg,
				   sizeof(msg)),
			 LOG_ERROR);
	assert_string_equal(msg, "cannot create ");
}

static void test_relay_json_to_json(void **state)
{
	(void)state;
	open_fresh(LOG_INFO, LOG_FMT_JSON);
	log_relay("{\"ts\":\"2026-01-10T12:00:00.123Z\",\"level\":\"info\",\"proc\":\"tools/0\","
		  "\"pid\":99,\"msg\":\"ran\",\"n\":3,\"ok\":true}",
		  "tools/0", 99, NULL, 0);
	char *s = slurp(logpath);
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "ts")),
			    "2026-01-10T12:00:00.123Z");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(j, "proc")), "tools/0");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), 99);
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "ran");
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 3);
	assert_true(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	free(s);
}

static void test_relay_raw(void **state)
{
	(void)state;
	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	log_relay("Segmentation fault (core dumped)\n", "tool/echo", 77, NULL, 0);
	log_relay("{not json", "tool/echo", 77, NULL, 0);
	log_relay("{\"msg\":\"no level\"}", "tool/echo", 77, NULL, 0);
	log_relay("   ", "tool/echo", 77, NULL, 0); /* blank: nothing */
	char *s = slurp(logpath);
	assert_int_equal(count_lines(s), 3);
	assert_non_null(strstr(s, " level=warn proc=tool/echo pid=77 "
				  "msg=\"Segmentation fault (core dumped)\"\n"));
	assert_non_null(strstr(s, " level=warn proc=tool/echo pid=77 msg=\"{not json\"\n"));
	assert_non_null(strstr(s, " level=warn proc=tool/echo pid=77 "
				  "msg=\"{\\\"msg\\\":\\\"no level\\\"}\"\n"));
	free(s);

	/* Raw text in JSON format, with bytes that are not UTF-8. */
	open_fresh(LOG_INFO, LOG_FMT_JSON);
	log_relay("bin \xfe\xff out", "tool/echo", 78, NULL, 0);
	s = slurp(logpath);
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "proc")), "tool/echo");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), 78);
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
			    "bin \xef\xbf\xbd\xef\xbf\xbd out");
	json_decref(j);
	free(s);
}

static void test_child_roundtrip(void **state)
{
	(void)state;
	char cpath[160];
	snprintf(cpath, sizeof(cpath), "%s/child.log", tmpdir);
	int fd = open(cpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	int saved = dup(2);
	assert_true(saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	close(fd);
	log_open_child("persist/3", LOG_INFO);
	log_kv(LOG_INFO, KV("stream", "events"), "child says %d", 7);
	log_debug("filtered");
	log_close();
	dup2(saved, 2);
	close(saved);

	char *s = slurp(cpath);
	assert_int_equal(count_lines(s), 1);
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "proc")), "persist/3");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "child says 7");
	assert_string_equal(json_string_value(json_object_get(j, "stream")), "events");
	json_decref(j);

	/* The master relays it in logfmt, keeping the child's identity. */
	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	char *nl = strchr(s, '\n');
	*nl = '\0';
	log_relay(s, "persist/3", 1234, NULL, 0);
	char *m = slurp(logpath);
	char want[128];
	snprintf(want, sizeof(want), " level=info proc=persist/3 pid=%d msg=\"child says 7\" "
		 "stream=events\n", (int)getpid());
	assert_non_null(strstr(m, want));
	free(m);
	free(s);
}

static void test_reopen(void **state)
{
	(void)state;
	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	log_info("before");
	char rotated[160];
	snprintf(rotated, sizeof(rotated), "%s.1", logpath);
	assert_int_equal(rename(logpath, rotated), 0);
	log_info("still old");
	assert_int_equal(log_reopen(), 0);
	log_info("after");
	char *a = slurp(rotated), *b = slurp(logpath);
	assert_non_null(strstr(a, "msg=before"));
	assert_non_null(strstr(a, "msg=\"still old\""));
	assert_null(strstr(a, "msg=after"));
	assert_int_equal(count_lines(b), 1);
	assert_non_null(strstr(b, "msg=after"));
	struct stat st;
	assert_int_equal(stat(logpath, &st), 0);
	assert_int_equal(st.st_mode & 0077 & ~0040, 0);
	free(a);
	free(b);
	unlink(rotated);

	/* A file that cannot be opened is an error; stderr stays in use. */
	log_close();
	assert_int_equal(log_open("x", LOG_INFO, LOG_FMT_LOGFMT, "/nonexistent-dir/x.log"),
			 -ENOENT);
	assert_int_equal(log_reopen(), 0);
}

static void test_parse_and_errno(void **state)
{
	(void)state;
	enum log_level l;
	enum log_format f;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("error", &l), 0);
	assert_int_equal(l, LOG_ERROR);
	assert_int_equal(log_level_parse("loud", &l), -EINVAL);
	assert_int_equal(log_format_parse("json", &f), 0);
	assert_int_equal(f, LOG_FMT_JSON);
	assert_int_equal(log_format_parse("xml", &f), -EINVAL);
	assert_string_equal(log_level_name(LOG_WARN), "warn");

	open_fresh(LOG_INFO, LOG_FMT_LOGFMT);
	errno = EPIPE;
	log_info("keeps errno");
	log_relay("raw", "p", 1, NULL, 0);
	assert_int_equal(errno, EPIPE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logfmt_line),
		cmocka_unit_test(test_logfmt_func_and_levels),
		cmocka_unit_test(test_json_line),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_relay_json_to_logfmt),
		cmocka_unit_test(test_relay_json_to_json),
		cmocka_unit_test(test_relay_error_message),
		cmocka_unit_test(test_relay_raw),
		cmocka_unit_test(test_child_roundtrip),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_parse_and_errno),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
