/* Unit tests for src/reducer_merge.c: the golden run, the RFC 7386
 * examples (appendix A), reserved keys, terminal status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "reducer.h"

static void test_golden_merge(void **state)
{
	(void)state;
	struct sv_event *evs;
	long n = golden_load("merge", &evs);
	assert_int_equal(n, 5);
	json_t *want = golden_expected("merge");
	json_t *got = golden_reduce(REDUCER_MERGE, "ent-1", evs, n);
	assert_true(golden_equal(got, want));
	json_decref(got);
	json_decref(want);
	golden_free(evs, n);
}

/* RFC 7386 appendix A, each case under key "k": the snapshot holds
 * {"k": target} (absent for null), the event's data is {"k": patch}. */
static void test_rfc7386_examples(void **state)
{
	(void)state;
	static const char *const cases[][3] = {
		{"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
		{"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
		{"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
		{"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
		{"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
		{"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
		{"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
		{"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
		{"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
		{"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
		{"{\"a\":\"foo\"}", "null", "null"},
		{"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
		{"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
		{"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
		{"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *target = json_loads(cases[i][0], JSON_DECODE_ANY, NULL);
		json_t *patch = json_loads(cases[i][1], JSON_DECODE_ANY, NULL);
		json_t *want = json_loads(cases[i][2], JSON_DECODE_ANY, NULL);
		json_t *snap = reducer_new(REDUCER_MERGE, "r");
		json_object_set_new(snap, "k", target);
		struct sv_event ev = {.run = "r", .type = "patch", .stream = "s", .id = "1-1",
				      .origin_stream = "s", .data = json_object()};
		json_object_set_new(ev.data, "k", patch);
		char err[128];
		assert_int_equal(reducer_apply(REDUCER_MERGE, snap, &ev, err, sizeof(err)), 0);
		json_t *got = json_object_get(snap, "k");
		if (!got)
			got = json_null();
		if (!golden_equal(got, want))
			fail_msg("RFC 7386 case %zu", i);
		json_decref(ev.data);
		json_decref(want);
		json_decref(snap);
	}
}

static void test_reserved_and_terminal(void **state)
{
	(void)state;
	json_t *snap = reducer_new(REDUCER_MERGE, "r");
	struct sv_event ev = {.run = "r", .type = "t", .stream = "s", .id = "1-1", .origin_stream = "s",
			      .seq = 2};
	char err[128];
	ev.data = json_loads("{\"id\":\"x\",\"gapless\":true,\"complete\":true,\"last_seq\":1,"
			     "\"status\":\"failed\"}", 0, NULL);
	assert_int_equal(reducer_apply(REDUCER_MERGE, snap, &ev, err, sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(snap, "id")), "r");
	assert_int_equal(reducer_last_seq(snap), 2);
	assert_true(json_is_false(json_object_get(snap, "gapless")));
	assert_true(reducer_terminal(snap));
	assert_false(reducer_complete(snap)); /* seq 1 missing */
	json_decref(ev.data);

	/* status is data like any other: a later patch can change it. */
	ev.seq = 0;
	ev.data = json_loads("{\"status\":\"in_progress\"}", 0, NULL);
	assert_int_equal(reducer_apply(REDUCER_MERGE, snap, &ev, err, sizeof(err)), 0);
	assert_false(reducer_terminal(snap));
	assert_int_equal(reducer_event_count(snap), 2);
	json_decref(ev.data);
	json_decref(snap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_merge),
		cmocka_unit_test(test_rfc7386_examples),
		cmocka_unit_test(test_reserved_and_terminal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
