/* Unit tests for src/backoff.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

static void test_bounds_and_monotonic(void **state)
{
	(void)state;
	const uint32_t fixed[] = {0, 1, 0x7fffffffu, 0xffffffffu};
	for (int mode = 0; mode < 5; mode++) {
		struct backoff b;
		backoff_init(&b, 100, 30000);
		uint32_t seed = 42;
		int64_t prev = 0;
		for (int i = 0; i < 40; i++) {
			int64_t cur = b.cur_ms;
			uint32_t rnd = mode < 4 ? fixed[mode] : lcg(&seed);
			int64_t d = backoff_next(&b, rnd);
			assert_true(d >= cur / 2);
			assert_true(d <= cur);
			assert_true(d >= prev);
			assert_true(d <= 30000);
			assert_true(b.cur_ms <= 30000);
			prev = d;
		}
		assert_int_equal(b.cur_ms, 30000);
	}
}

static void test_doubling_and_cap(void **state)
{
	(void)state;
	struct backoff b;
	backoff_init(&b, 100, 1000);
	/* rnd = 0xffffffff % (span) is not always the top; check cur. */
	const int64_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(b.cur_ms, want[i]);
		int64_t d = backoff_next(&b, 0);
		assert_true(d >= want[i] / 2 && d <= want[i]);
	}
	/* With rnd = 0, the lowest value: cur/2, but never below the last. */
	backoff_reset(&b);
	assert_int_equal(b.cur_ms, 100);
	assert_int_equal(backoff_next(&b, 0), 50);
	assert_int_equal(backoff_next(&b, 0), 100);
	assert_int_equal(backoff_next(&b, 0), 200);
	assert_int_equal(backoff_next(&b, 0), 400);
	assert_int_equal(backoff_next(&b, 0), 500);
	assert_int_equal(backoff_next(&b, 0), 500);
	/* A high delay at the cap is never followed by a lower one. */
	int64_t top = backoff_next(&b, 500); /* 500 + 500 % 501 = 1000 */
	assert_int_equal(top, 1000);
	assert_int_equal(backoff_next(&b, 0), 1000);
}

static void test_odd_inputs(void **state)
{
	(void)state;
	struct backoff b;
	backoff_init(&b, 0, 0); /* clamped to 1 ms */
	assert_int_equal(b.initial_ms, 1);
	assert_int_equal(b.max_ms, 1);
	for (int i = 0; i < 5; i++) {
		int64_t d = backoff_next(&b, 12345);
		assert_true(d >= 0 && d <= 1);
	}
	backoff_init(&b, 500, 100); /* max below initial: max = initial */
	assert_int_equal(b.max_ms, 500);
	/* Huge values do not overflow. */
	backoff_init(&b, INT64_MAX / 4, INT64_MAX);
	for (int i = 0; i < 10; i++) {
		int64_t d = backoff_next(&b, 0xffffffffu);
		assert_true(d > 0);
		assert_true(b.cur_ms > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds_and_monotonic),
		cmocka_unit_test(test_doubling_and_cap),
		cmocka_unit_test(test_odd_inputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
