/* Unit tests for src/reducer_response.c and the common bookkeeping of
 * src/reducer.c: golden runs (completed, failed, cancelled, anomalies),
 * gaps, runs without seq, the fault seam, NUL bytes in text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "golden.h"
#include "reducer.h"

static void check_golden(const char *name, const char *run)
{
	struct sv_event *evs;
	long n = golden_load(name, &evs);
	assert_true(n > 0);
	json_t *want = golden_expected(name);
	assert_non_null(want);
	json_t *got = golden_reduce(REDUCER_RESPONSE, run, evs, n);
	assert_true(golden_equal(got, want));

	/* The serialized snapshot reads back equal (what the store keeps). */
	char *text = json_dumps(got, JSON_COMPACT);
	json_t *back = json_loads(text, JSON_ALLOW_NUL, NULL);
	assert_true(golden_equal(back, want));
	free(text);
	json_decref(back);
	json_decref(got);
	json_decref(want);
	golden_free(evs, n);
}

static void test_golden_completed(void **state)
{
	(void)state;
	check_golden("response_completed", "run-1");
}

static void test_golden_failed(void **state)
{
	(void)state;
	check_golden("response_failed", "run-f");
}

static void test_golden_cancelled(void **state)
{
	(void)state;
	check_golden("response_cancelled", "run-c");
}

static void test_golden_anomalies(void **state)
{
	(void)state;
	check_golden("response_anomalies", "run-a");
}

/* Build an event by hand (borrowed strings). */
static struct sv_event mk(const char *type, int64_t seq, uint64_t ms, const char *data)
{
	struct sv_event ev = {
		.run = "r", .type = type, .stream = "events", .id = "x", .seq = seq,
		.id_ms = ms, .origin_ms = ms, .origin_stream = "events",
	};
	if (data) {
		ev.data = json_loads(data, JSON_ALLOW_NUL, NULL);
		assert_non_null(ev.data);
	}
	return ev;
}

static void apply_ok(json_t *snap, struct sv_event ev)
{
	char err[128];
	assert_int_equal(reducer_apply(REDUCER_RESPONSE, snap, &ev, err, sizeof(err)), 0);
	json_decref(ev.data);
}

static void test_new_snapshot(void **state)
{
	(void)state;
	json_t *snap = reducer_new(REDUCER_RESPONSE, "r1");
	json_t *want = json_loads(
		"{\"id\":\"r1\",\"status\":\"queued\",\"created_ms\":null,\"completed_ms\":null,"
		"\"model\":null,\"metadata\":null,\"output\":[],\"usage\":{\"input_tokens\":0,"
		"\"output_tokens\":0,\"reasoning_tokens\":0},\"error\":null,\"event_count\":0,"
		"\"last_seq\":0,\"gapless\":true,\"complete\":false,\"ignored_events\":0,"
		"\"anomalies\":[]}", 0, NULL);
	assert_true(golden_equal(snap, want));
	assert_false(reducer_terminal(snap));
	assert_string_equal(reducer_status(snap), "queued");
	json_decref(snap);
	json_decref(want);
}

static void test_gap_not_complete(void **state)
{
	(void)state;
	json_t *snap = reducer_new(REDUCER_RESPONSE, "r");
	apply_ok(snap, mk("response.created", 1, 10, "{}"));
	apply_ok(snap, mk("response.completed", 3, 12, "{}"));
	assert_true(reducer_terminal(snap));
	assert_false(reducer_complete(snap));
	assert_true(json_is_false(json_object_get(snap, "gapless")));
	assert_int_equal(reducer_last_seq(snap), 3);
	assert_int_equal(reducer_event_count(snap), 2);
	assert_int_equal(json_integer_value(json_object_get(snap, "completed_ms")), 12);
	json_decref(snap);
}

static void test_no_seq_run(void **state)
{
	(void)state;
	json_t *snap = reducer_new(REDUCER_RESPONSE, "r");
	apply_ok(snap, mk("response.created", 0, 100, NULL));
	apply_ok(snap, mk("item.started", 0, 101, "{\"item_id\":\"a\",\"kind\":\"message\"}"));
	apply_ok(snap, mk("item.delta", 0, 102, "{\"item_id\":\"a\",\"text\":\"x\\u0000y\"}"));
	apply_ok(snap, mk("response.cancelled", 0, 103, NULL));
	assert_true(reducer_complete(snap));
	assert_int_equal(reducer_last_seq(snap), 0);
	assert_int_equal(json_integer_value(json_object_get(snap, "created_ms")), 100);
	json_t *content = json_object_get(json_array_get(json_object_get(snap, "output"), 0), "content");
	assert_int_equal(json_string_length(content), 3);
	assert_memory_equal(json_string_value(content), "x\0y", 3);
	json_decref(snap);
}

static void test_odd_items(void **state)
{
	(void)state;
	json_t *snap = reducer_new(REDUCER_RESPONSE, "r");
	apply_ok(snap, mk("item.started", 1, 1, "{\"item_id\":\"a\",\"kind\":\"image\"}"));
	apply_ok(snap, mk("item.started", 2, 1, "{\"kind\":\"message\"}"));
	apply_ok(snap, mk("item.started", 3, 1, "{\"item_id\":\"b\",\"kind\":\"message\"}"));
	apply_ok(snap, mk("item.started", 4, 1, "{\"item_id\":\"b\",\"kind\":\"message\"}"));
	apply_ok(snap, mk("item.delta", 5, 1, "{\"item_id\":\"b\",\"text\":5}"));
	apply_ok(snap, mk("item.completed", 6, 1, "{\"item_id\":\"zz\"}"));
	apply_ok(snap, mk("tool.call", 7, 1, "{\"name\":\"t\"}"));
	apply_ok(snap, mk("tool.call", 8, 1, "{\"call_id\":\"c\",\"name\":\"t\"}"));
	apply_ok(snap, mk("tool.call", 9, 1, "{\"call_id\":\"c\",\"name\":\"t\"}"));
	apply_ok(snap, mk("usage", 10, 1, "{\"input_tokens\":9223372036854775807}"));
	apply_ok(snap, mk("usage", 11, 1, "{\"input_tokens\":1,\"output_tokens\":2}"));
	assert_int_equal(json_array_size(json_object_get(snap, "output")), 3);
	assert_int_equal(json_array_size(json_object_get(snap, "anomalies")), 8);
	json_t *usage = json_object_get(snap, "usage");
	assert_int_equal(json_integer_value(json_object_get(usage, "input_tokens")), INT64_MAX);
	assert_int_equal(json_integer_value(json_object_get(usage, "output_tokens")), 2);
	assert_string_equal(reducer_status(snap), "in_progress");
	assert_int_equal(reducer_event_count(snap), 11);
	json_decref(snap);
}

static void test_fault_seam(void **state)
{
	(void)state;
#if SV_FAULT_INJECTION
	json_t *snap = reducer_new(REDUCER_RESPONSE, "r");
	apply_ok(snap, mk("response.created", 1, 1, "{}"));
	json_t *before = json_deep_copy(snap);
	struct sv_event ev = mk("sv.test.reducer_error", 2, 2, "{}");
	char err[128];
	assert_int_equal(reducer_check(REDUCER_RESPONSE, &ev, err, sizeof(err)), -EINVAL);
	assert_int_equal(reducer_apply(REDUCER_RESPONSE, snap, &ev, err, sizeof(err)), -EINVAL);
	assert_true(strlen(err) > 0);
	assert_true(json_equal(snap, before));
	json_decref(ev.data);
	json_decref(before);
	json_decref(snap);
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_completed),
		cmocka_unit_test(test_golden_failed),
		cmocka_unit_test(test_golden_cancelled),
		cmocka_unit_test(test_golden_anomalies),
		cmocka_unit_test(test_new_snapshot),
		cmocka_unit_test(test_gap_not_complete),
		cmocka_unit_test(test_no_seq_run),
		cmocka_unit_test(test_odd_items),
		cmocka_unit_test(test_fault_seam),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
