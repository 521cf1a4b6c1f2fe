/* jsonenc: byte-for-byte json_dumpb(v, JSON_COMPACT) on snapshot-shaped
 * values, every escape, random trees, and buffer reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonenc.h"

static void assert_same(struct jsonenc *e, const json_t *v)
{
	char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(want);
	assert_int_equal(jsonenc_encode(e, v), 0);
	if (e->len != strlen(want) || memcmp(e->buf, want, e->len) != 0)
		fail_msg("jsonenc: %.*s\njansson: %s", (int)e->len, e->buf, want);
	free(want);
}

static void test_scalars(void **state)
{
	(void)state;
	struct jsonenc e = {0};
	json_t *v[] = {json_null(), json_true(), json_false(), json_integer(0), json_integer(-1),
		       json_integer(INT64_MAX), json_integer(INT64_MIN), json_real(0.1), json_real(-2.0),
		       json_real(1e300), json_string(""), json_object(), json_array()};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_same(&e, v[i]);
		json_decref(v[i]);
	}
	jsonenc_free(&e);
}

static void test_escapes(void **state)
{
	(void)state;
	struct jsonenc e = {0};
	char all[128];
	for (int i = 1; i < 128; i++)
		all[i - 1] = (char)i;
	all[127] = '\0';
	json_t *s = json_string(all);
	assert_same(&e, s);
	json_decref(s);
	const char nul[] = "a\0b\"c\\";
	s = json_stringn(nul, sizeof(nul) - 1);
	assert_same(&e, s);
	json_decref(s);
	s = json_string("h\xc3\xa9llo \xe2\x80\xa8 \xf0\x9f\x98\x80 / </script>");
	assert_same(&e, s);
	json_decref(s);
	json_t *o = json_object();
	json_object_set_new(o, "k\"\n\x01", json_string("v"));
	json_object_setn_new(o, "nul\0key", 7, json_integer(1));
	assert_same(&e, o);
	json_decref(o);
	jsonenc_free(&e);
}

static json_t *random_tree(unsigned *seed, int depth)
{
	int kind = rand_r(seed) % (depth > 4 ? 6 : 8);
	switch (kind) {
	case 0: return json_null();
	case 1: return json_boolean(rand_r(seed) & 1);
	case 2: return json_integer((json_int_t)rand_r(seed) - RAND_MAX / 2);
	case 3: return json_real((double)rand_r(seed) / 7.0);
	case 4:
	case 5: {
		char buf[64];
		size_t n = (size_t)(rand_r(seed) % 63);
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)(rand_r(seed) % 127 + 1); /* ASCII, controls included */
		return json_stringn(buf, n);
	}
	case 6: {
		json_t *a = json_array();
		for (int i = rand_r(seed) % 5; i > 0; i--)
			json_array_append_new(a, random_tree(seed, depth + 1));
		return a;
	}
	default: {
		json_t *o = json_object();
		for (int i = rand_r(seed) % 5; i > 0; i--) {
			char key[16];
			snprintf(key, sizeof(key), "k%d\t%d", i, rand_r(seed) % 100);
			json_object_set_new(o, key, random_tree(seed, depth + 1));
		}
		return o;
	}
	}
}

static void test_random_trees(void **state)
{
	(void)state;
	struct jsonenc e = {0};
	unsigned seed = 12345;
	for (int i = 0; i < 2000; i++) {
		json_t *t = random_tree(&seed, 0);
		assert_same(&e, t); /* the buffer is reused and grows */
		json_decref(t);
	}
	jsonenc_free(&e);
}

static void test_snapshot_shape(void **state)
{
	(void)state;
	struct jsonenc e = {0};
	json_error_t err;
	json_t *snap = json_loads(
		"{\"id\":\"r1\",\"status\":\"completed\",\"created_ms\":1,\"completed_ms\":null,\"model\":\"m\","
		"\"metadata\":{\"a\":[1,2.5,\"x\"]},\"output\":[{\"id\":\"i1\",\"type\":\"message\",\"role\":\"assistant\","
		"\"status\":\"completed\",\"content\":\"line\\nline\\t\\\"q\\\"\"},{\"type\":\"tool_call\",\"status\":"
		"\"completed\",\"call_id\":\"c1\",\"name\":\"echo\",\"arguments\":{\"q\":1}}],\"usage\":{\"input_tokens\":3},"
		"\"error\":null,\"event_count\":9,\"anomalies\":[]}",
		0, &err);
	assert_non_null(snap);
	assert_same(&e, snap);
	/* a long string: the run-copy path across a buffer growth */
	size_t n = 100000;
	char *big = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		big[i] = i % 97 == 0 ? '\n' : 'x';
	big[n] = '\0';
	json_object_set_new(snap, "big", json_string(big));
	assert_same(&e, snap);
	free(big);
	json_decref(snap);
	jsonenc_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_random_trees),
		cmocka_unit_test(test_snapshot_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
