/* Unit tests for src/event.c: decoding, every dead-letter reason, the
 * 1 MiB limit, JSON with NUL, entry ids as integers, order and re-drive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

#define F(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}

static int decode(const struct sv_field *f, size_t n, struct sv_event *ev, const char **reason)
{
	struct sv_entry e = {.stream = "events", .id = "1700000000000-5", .id_ms = 1700000000000ull,
			     .id_seq = 5, .fields = f, .nfields = n};
	return event_decode(&e, ev, reason);
}

static void expect_reason(const struct sv_field *f, size_t n, const char *want)
{
	struct sv_event ev;
	const char *reason = NULL;
	assert_int_equal(decode(f, n, &ev, &reason), -EINVAL);
	assert_non_null(reason);
	assert_string_equal(reason, want);
	assert_null(ev.data);
	assert_null(ev.buf);
}

static void test_decode_full(void **state)
{
	(void)state;
	const struct sv_field f[] = {
		F("run", "r1"), F("type", "tool.output"), F("seq", "7"), F("parent_seq", "3"),
		F("call_id", "c1"), F("ts", "-12"), F("data", "{\"a\":1}"), F("extra", "ignored"),
	};
	struct sv_event ev;
	const char *reason = "x";
	assert_int_equal(decode(f, 8, &ev, &reason), 0);
	assert_null(reason);
	assert_string_equal(ev.run, "r1");
	assert_string_equal(ev.type, "tool.output");
	assert_string_equal(ev.call_id, "c1");
	assert_string_equal(ev.stream, "events");
	assert_string_equal(ev.origin_stream, "events");
	assert_string_equal(ev.id, "1700000000000-5");
	assert_int_equal(ev.seq, 7);
	assert_int_equal(ev.parent_seq, 3);
	assert_true(ev.has_ts);
	assert_int_equal(ev.ts, -12);
	assert_int_equal(event_time_ms(&ev), -12);
	assert_int_equal(json_integer_value(json_object_get(ev.data, "a")), 1);
	assert_int_equal(ev.data_len, 7);
	assert_memory_equal(ev.data_raw, "{\"a\":1}", 7);
	assert_false(ev.redriven);
	assert_int_equal(ev.origin_ms, 1700000000000ull);
	assert_int_equal(ev.origin_seq, 5);
	event_clear(&ev);
}

static void test_decode_minimal(void **state)
{
	(void)state;
	const struct sv_field f[] = {F("type", "x"), F("run", "r"), F("run", "r2")};
	struct sv_event ev;
	const char *reason;
	assert_int_equal(decode(f, 3, &ev, &reason), 0);
	assert_string_equal(ev.run, "r2"); /* the last occurrence wins */
	assert_null(ev.data);
	assert_null(ev.data_raw);
	assert_null(ev.call_id);
	assert_int_equal(ev.seq, 0);
	assert_false(ev.has_ts);
	assert_int_equal(event_time_ms(&ev), 1700000000000ll);
	event_clear(&ev);
}

static void test_dead_letter_reasons(void **state)
{
	(void)state;
	{ const struct sv_field f[] = {F("type", "x")}; expect_reason(f, 1, "missing run"); }
	{ const struct sv_field f[] = {F("run", "r")}; expect_reason(f, 1, "missing type"); }
	{ const struct sv_field f[] = {F("run", ""), F("type", "x")}; expect_reason(f, 2, "invalid run"); }
	{ const struct sv_field f[] = {F("run", "a\0b"), F("type", "x")}; expect_reason(f, 2, "invalid run"); }
	{ const struct sv_field f[] = {F("run", "\xff\xfe"), F("type", "x")}; expect_reason(f, 2, "invalid run"); }
	{ const struct sv_field f[] = {F("run", "r"), F("type", "")}; expect_reason(f, 2, "invalid type"); }
	{ const struct sv_field f[] = {F("run", "r"), F("type", "\xc0\x80")}; expect_reason(f, 2, "invalid type"); }
	{ const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("call_id", "")}; expect_reason(f, 3, "invalid call_id"); }
	static const char *const bad_seq[] = {"0", "-1", "abc", "1.5", "", " 1", "1 ", "+1",
					      "9223372036854775808", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad_seq) / sizeof(bad_seq[0]); i++) {
		struct sv_field f[] = {F("run", "r"), F("type", "x"), {"seq", 3, bad_seq[i], strlen(bad_seq[i])}};
		expect_reason(f, 3, "invalid seq");
		f[2].name = "parent_seq";
		f[2].name_len = 10;
		expect_reason(f, 3, "invalid parent_seq");
	}
	{ const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("ts", "12a")}; expect_reason(f, 3, "invalid ts"); }
	{ const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("ts", "")}; expect_reason(f, 3, "invalid ts"); }
	static const char *const bad_data[] = {"[1,2]", "\"s\"", "42", "null", "{\"a\":", "", "{} x",
					       "{\"a\":\"\xff\"}"};
	for (size_t i = 0; i < sizeof(bad_data) / sizeof(bad_data[0]); i++) {
		const struct sv_field f[] = {F("run", "r"), F("type", "x"),
					     {"data", 4, bad_data[i], strlen(bad_data[i])}};
		expect_reason(f, 3, "data is not a JSON object");
	}
	{ const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("origin_id", "12")}; expect_reason(f, 3, "invalid origin_id"); }
	{ const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("origin_stream", "")}; expect_reason(f, 3, "invalid origin_stream"); }
	/* ts may be any integer, seq ok at the top of the range */
	const struct sv_field ok[] = {F("run", "r"), F("type", "x"), F("seq", "9223372036854775807"), F("ts", "0")};
	struct sv_event ev;
	const char *reason;
	assert_int_equal(decode(ok, 4, &ev, &reason), 0);
	assert_int_equal(ev.seq, INT64_MAX);
	event_clear(&ev);
}

static void test_size_limit(void **state)
{
	(void)state;
	/* fields: run=r (4 bytes), type=x (5), data (4 + value) */
	size_t fixed = 4 + 5 + 4;
	size_t vlen = EVENT_MAX_BYTES - fixed;
	char *v = malloc(vlen + 1);
	memset(v, 'a', vlen);
	memcpy(v, "{\"k\":\"", 6);
	memcpy(v + vlen - 2, "\"}", 2);
	struct sv_field f[] = {F("run", "r"), F("type", "x"), {"data", 4, v, vlen}};
	struct sv_event ev;
	const char *reason;
	assert_int_equal(decode(f, 3, &ev, &reason), 0); /* exactly 1 MiB */
	assert_int_equal(json_string_length(json_object_get(ev.data, "k")), vlen - 8);
	event_clear(&ev);
	f[2].value_len = vlen + 1; /* one byte more ('a' past the end is still read) */
	v[vlen] = ' ';
	expect_reason(f, 3, "entry too large");
	/* The caller's own byte count counts too. */
	struct sv_entry e = {.stream = "s", .id = "1-1", .id_ms = 1, .id_seq = 1, .fields = f,
			     .nfields = 2, .bytes = EVENT_MAX_BYTES + 1};
	assert_int_equal(event_decode(&e, &ev, &reason), -EINVAL);
	assert_string_equal(reason, "entry too large");
	free(v);
}

static void test_json_nul(void **state)
{
	(void)state;
	const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("data", "{\"t\":\"a\\u0000b\"}")};
	struct sv_event ev;
	const char *reason;
	assert_int_equal(decode(f, 3, &ev, &reason), 0);
	json_t *t = json_object_get(ev.data, "t");
	assert_int_equal(json_string_length(t), 3);
	assert_memory_equal(json_string_value(t), "a\0b", 3);
	event_clear(&ev);
	/* A raw NUL byte inside the JSON text is not JSON. */
	const struct sv_field g[] = {F("run", "r"), F("type", "x"), F("data", "{\"t\":\"a\0b\"}")};
	expect_reason(g, 3, "data is not a JSON object");
}

static void test_parse_id(void **state)
{
	(void)state;
	uint64_t ms, seq;
	assert_int_equal(event_parse_id("1700000000000-5", &ms, &seq), 0);
	assert_int_equal(ms, 1700000000000ull);
	assert_int_equal(seq, 5);
	assert_int_equal(event_parse_id("999-10", &ms, &seq), 0);
	assert_int_equal(ms, 999);
	assert_int_equal(seq, 10);
	static const char *const bad[] = {"", "1", "-1", "1-", "a-b", "1-2-3", "1--2", " 1-2",
					  "18446744073709551616-0", "9223372036854775808-0", "1-x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(event_parse_id(bad[i], &ms, &seq), -EINVAL);
	assert_int_equal(event_parse_id(NULL, &ms, &seq), -EINVAL);
}

static struct event_key key_of(const char *id, int64_t seq, int64_t parent, const char *type)
{
	struct sv_event ev = {.run = "r", .type = type, .seq = seq, .parent_seq = parent};
	struct event_key k;
	assert_int_equal(event_parse_id(id, &ev.origin_ms, &ev.origin_seq), 0);
	event_order_key(&ev, &k);
	return k;
}

static void test_order_keys(void **state)
{
	(void)state;
	/* ids compare as integers: 999-10 < 1700000000000-5 although "999" > "17" as text */
	struct event_key a = key_of("999-10", 0, 0, "x"), b = key_of("1700000000000-5", 0, 0, "x");
	assert_true(event_key_cmp(&a, &b) < 0);
	assert_true(event_key_cmp(&b, &a) > 0);
	assert_int_equal(event_key_cmp(&a, &a), 0);
	a = key_of("1-9", 0, 0, "x");
	b = key_of("1-10", 0, 0, "x");
	assert_true(event_key_cmp(&a, &b) < 0);
	/* seq first; a tool.output right after its call, before the next seq */
	struct event_key call = key_of("5-0", 3, 0, "tool.call");
	struct event_key out = key_of("1-0", 0, 3, "tool.output");
	struct event_key next = key_of("2-0", 4, 0, "x");
	struct event_key noseq = key_of("9-0", 0, 0, "x");
	struct event_key other_parent = key_of("1-0", 0, 3, "x"); /* parent_seq only counts on tool.output */
	assert_true(event_key_cmp(&call, &out) < 0);
	assert_true(event_key_cmp(&out, &next) < 0);
	assert_true(event_key_cmp(&noseq, &call) < 0);
	assert_int_equal(other_parent.major, 0);
	assert_int_equal(out.major, 3);
	assert_int_equal(out.minor, 1);
}

static void test_redriven(void **state)
{
	(void)state;
	const struct sv_field f[] = {F("run", "r"), F("type", "x"), F("origin_id", "999-10"),
				     F("origin_stream", "events2"), F("reason", "whatever")};
	struct sv_event ev;
	const char *reason;
	assert_int_equal(decode(f, 5, &ev, &reason), 0);
	assert_true(ev.redriven);
	assert_int_equal(ev.origin_ms, 999);
	assert_int_equal(ev.origin_seq, 10);
	assert_int_equal(ev.id_ms, 1700000000000ull);
	assert_string_equal(ev.origin_stream, "events2");
	assert_string_equal(ev.stream, "events");
	struct event_key k;
	event_order_key(&ev, &k);
	assert_int_equal(k.ms, 999);
	assert_int_equal(k.seq, 10);
	assert_int_equal(event_time_ms(&ev), 999);
	event_clear(&ev);
}

static void test_valid_text(void **state)
{
	(void)state;
	assert_true(event_valid_text("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
	assert_false(event_valid_text("\xed\xa0\x80", 3));  /* surrogate */
	assert_false(event_valid_text("\xe2\x82", 2));      /* truncated */
	assert_false(event_valid_text("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(event_valid_text("\xe0\x80\xaf", 3));  /* overlong */
	assert_true(event_valid_text("", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_full),
		cmocka_unit_test(test_decode_minimal),
		cmocka_unit_test(test_dead_letter_reasons),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_json_nul),
		cmocka_unit_test(test_parse_id),
		cmocka_unit_test(test_order_keys),
		cmocka_unit_test(test_redriven),
		cmocka_unit_test(test_valid_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
