/* Unit tests for worker_tool_done_key(): short keys keep the format of
 * earlier versions (NS:tool:RUN:CALL_ID), and long run/call_id pairs,
 * which a 512-byte buffer used to cut into one shared key, stay whole and
 * distinct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "worker_tool.h"

/* n copies of c followed by tail (malloc'd). */
static char *repeat(char c, size_t n, const char *tail)
{
	char *s = malloc(n + strlen(tail) + 1);
	assert_non_null(s);
	memset(s, c, n);
	strcpy(s + n, tail);
	return s;
}

static void expect_key(const char *run, const char *call_id, const char *want)
{
	char *k = worker_tool_done_key("sv", run, call_id);
	assert_string_equal(k, want);
	free(k);
}

static void test_short_keys_unchanged(void **state)
{
	(void)state;
	expect_key("R1", "c1", "sv:tool:R1:c1");
	/* The longest short key: exactly 511 bytes. */
	char *run = repeat('r', 511 - strlen("sv:tool::c"), "");
	char *k = worker_tool_done_key("sv", run, "c");
	assert_int_equal(strlen(k), 511);
	assert_int_equal(strncmp(k, "sv:tool:rrr", 11), 0);
	free(k);
	free(run);
}

static void test_long_pairs_distinct(void **state)
{
	(void)state;
	/* Same 600-byte run, different call ids: the old key was the same
	 * 511-byte prefix for both. */
	char *run = repeat('x', 600, "");
	char *a = worker_tool_done_key("sv", run, "c1");
	char *b = worker_tool_done_key("sv", run, "c2");
	assert_string_not_equal(a, b);
	assert_true(strlen(a) > 600);
	assert_non_null(strstr(a, run));
	assert_int_equal(strncmp(a, "sv:tool:600:", 12), 0);
	assert_string_equal(a + strlen(a) - 3, ":c1");
	free(a);
	free(b);
	/* Long call ids sharing a 600-byte prefix. */
	char *ca = repeat('y', 600, "A"), *cb = repeat('y', 600, "B");
	a = worker_tool_done_key("sv", "R", ca);
	b = worker_tool_done_key("sv", "R", cb);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	free(ca);
	free(cb);
	free(run);
}

static void test_long_split_unambiguous(void **state)
{
	(void)state;
	/* The same bytes split differently between run and call id. */
	char *run1 = repeat('z', 600, ":q"), *run2 = repeat('z', 600, "");
	char *a = worker_tool_done_key("sv", run1, "c");
	char *b = worker_tool_done_key("sv", run2, "q:c");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	free(run1);
	free(run2);
}

/* The run's done hash: one key per run, whole however long, never one of
 * the done keys above (another prefix). */
static void test_done_hash(void **state)
{
	(void)state;
	char *h = worker_tool_done_hash("sv", "r:1");
	assert_string_equal(h, "sv:tooldone:r:1");
	free(h);
	char *run = repeat('x', 1000, "");
	h = worker_tool_done_hash("sv", run);
	assert_int_equal(strlen(h), strlen("sv:tooldone:") + 1000);
	free(h);
	free(run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_short_keys_unchanged),
		cmocka_unit_test(test_long_pairs_distinct),
		cmocka_unit_test(test_long_split_unambiguous),
		cmocka_unit_test(test_done_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
