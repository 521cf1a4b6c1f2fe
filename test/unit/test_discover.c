/* discover: the known set of one pattern and its pass logic (no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "discover.h"

static void test_seen_sorted_unique(void **state)
{
	(void)state;
	struct disc_known k = {0};
	assert_int_equal(disc_known_seen(&k, "run:2:events"), 1);
	assert_int_equal(disc_known_seen(&k, "run:1:events"), 1);
	assert_int_equal(disc_known_seen(&k, "run:3:events"), 1);
	assert_int_equal(disc_known_seen(&k, "run:1:events"), 0);
	assert_int_equal(k.n, 3);
	assert_string_equal(k.v[0].name, "run:1:events");
	assert_string_equal(k.v[2].name, "run:3:events");
	assert_int_equal(disc_known_find(&k, "run:2:events"), 1);
	assert_int_equal(disc_known_find(&k, "run:4:events"), -1);
	assert_int_equal(disc_known_remove(&k, "run:2:events"), 1);
	assert_int_equal(disc_known_remove(&k, "run:2:events"), 0);
	assert_int_equal(k.n, 2);
	disc_known_free(&k);
}

static void test_pass_unseen(void **state)
{
	(void)state;
	struct disc_known k = {0};
	char name[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "run:%d:events", i);
		disc_known_seen(&k, name);
	}
	/* A pass that sees only the even ones: the odd ones are candidates. */
	disc_known_pass_begin(&k);
	for (int i = 0; i < 1000; i += 2) {
		snprintf(name, sizeof(name), "run:%d:events", i);
		assert_int_equal(disc_known_seen(&k, name), 0);
	}
	/* A name that arrives during the pass counts as seen. */
	assert_int_equal(disc_known_seen(&k, "run:new:events"), 1);
	json_t *unseen = disc_known_unseen(&k);
	assert_int_equal(json_array_size(unseen), 500);
	size_t i;
	json_t *v;
	json_array_foreach(unseen, i, v) {
		int n = -1;
		sscanf(json_string_value(v), "run:%d:events", &n);
		assert_int_equal(n % 2, 1);
	}
	json_decref(unseen);
	/* The next pass starts with nothing seen. */
	disc_known_pass_begin(&k);
	unseen = disc_known_unseen(&k);
	assert_int_equal(json_array_size(unseen), k.n);
	json_decref(unseen);
	disc_known_free(&k);
}

static void test_json_cost_bounds_escaping(void **state)
{
	(void)state;
	json_t *s = json_stringn("\x01\x02\"\\", 4);
	char *txt = json_dumps(s, JSON_ENCODE_ANY);
	assert_true(strlen(txt) + 1 <= disc_json_cost(4));
	free(txt);
	json_decref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seen_sorted_unique),
		cmocka_unit_test(test_pass_unseen),
		cmocka_unit_test(test_json_cost_bounds_escaping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
