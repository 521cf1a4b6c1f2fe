/* Unit tests for worker_tool_sanitize() (SPEC §6 step 2): stdout is cut at
 * max bytes on a UTF-8 character boundary, invalid bytes and NUL become
 * U+FFFD, `truncated` is set when cut; the result is always valid UTF-8 of
 * at most max bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "worker_tool.h"

#define FFFD "\xEF\xBF\xBD"

/* Strict UTF-8 validation (RFC 3629): no overlongs, no surrogates, no
 * code points above U+10FFFF, no NUL. */
static int valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp;
		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			len = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			len = 4, cp = c & 0x07;
		else
			return 0;
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
			return 0;
		if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))
			return 0;
		i += len;
	}
	return 1;
}

/* Run the sanitizer, check the invariants, compare with want. */
static void expect(const char *in, size_t len, size_t max, const char *want, int want_trunc)
{
	int trunc = -1;
	char *out = worker_tool_sanitize(in, len, max, &trunc);
	assert_non_null(out);
	size_t olen = strlen(out);
	assert_true(olen <= max);
	assert_true(valid_utf8((const unsigned char *)out, olen));
	assert_string_equal(out, want);
	assert_int_equal(!!trunc, want_trunc);
	free(out);
}

static void test_ascii_passthrough(void **state)
{
	(void)state;
	expect("hello world\n", 12, 65536, "hello world\n", 0);
	expect("", 0, 65536, "", 0);
	expect("", 0, 0, "", 0);
	expect("abc", 3, 3, "abc", 0); /* exactly max: not cut */
	expect("\t\r\n\x7f", 4, 10, "\t\r\n\x7f", 0);
}

static void test_valid_multibyte(void **state)
{
	(void)state;
	const char *s = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80"; /* café 日本 😀 */
	expect(s, strlen(s), 1000, s, 0);
	expect(s, strlen(s), strlen(s), s, 0);
	/* Edge code points. */
	const char *e = "\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF";
	expect(e, strlen(e), 100, e, 0);
}

static void test_cut_ascii(void **state)
{
	(void)state;
	expect("abcdef", 6, 4, "abcd", 1);
	expect("abcdef", 6, 5, "abcde", 1);
	expect("abcdef", 6, 0, "", 1);
	expect("ab", 2, 1, "a", 1);
}

/* Cutting never splits a character. */
static void test_cut_on_boundary(void **state)
{
	(void)state;
	const char *s = "a\xC3\xA9"   /* a é  (1 + 2) */
			"\xE6\x97\xA5" /* 日 (3) */
			"\xF0\x9F\x98\x80"; /* 😀 (4) */
	size_t n = strlen(s); /* 10 */
	expect(s, n, 10, s, 0);
	expect(s, n, 9, "a\xC3\xA9\xE6\x97\xA5", 1);
	expect(s, n, 8, "a\xC3\xA9\xE6\x97\xA5", 1);
	expect(s, n, 7, "a\xC3\xA9\xE6\x97\xA5", 1);
	expect(s, n, 6, "a\xC3\xA9\xE6\x97\xA5", 1);
	expect(s, n, 5, "a\xC3\xA9", 1);
	expect(s, n, 4, "a\xC3\xA9", 1);
	expect(s, n, 3, "a\xC3\xA9", 1);
	expect(s, n, 2, "a", 1);
	expect(s, n, 1, "a", 1);
	expect(s, n, 0, "", 1);
	/* The capture keeps max+1 bytes, which may end in the middle of a
	 * character: still cut cleanly and marked truncated. */
	expect("xy\xE6\x97", 4, 3, "xy", 1);
}

/* Only U+FFFD characters (one or more): for ill-formed sequences, where one
 * replacement per byte and one per maximal subpart are both acceptable. */
static void expect_fffd_only(const char *in, size_t len)
{
	int trunc = -1;
	char *out = worker_tool_sanitize(in, len, 100, &trunc);
	assert_non_null(out);
	size_t olen = strlen(out);
	assert_true(olen >= 3);
	assert_int_equal(olen % 3, 0);
	assert_true(olen <= 3 * len);
	for (size_t i = 0; i < olen; i += 3)
		assert_memory_equal(out + i, FFFD, 3);
	assert_int_equal(trunc, 0);
	free(out);
}

static void test_invalid_bytes(void **state)
{
	(void)state;
	expect("a\xFF" "b", 3, 100, "a" FFFD "b", 0);
	expect("\x80", 1, 100, FFFD, 0);                 /* lone continuation */
	expect("\xC3", 1, 100, FFFD, 0);                 /* truncated sequence at end */
	expect_fffd_only("\xE6\x97", 2);                 /* truncated 3-byte at end */
	expect("\xC3(", 2, 100, FFFD "(", 0);            /* bad continuation */
	expect_fffd_only("\xC0\xAF", 2);        /* overlong '/' */
	expect_fffd_only("\xE0\x80\xAF", 3); /* overlong 3-byte */
	expect_fffd_only("\xED\xA0\x80", 3); /* surrogate U+D800 */
	expect_fffd_only("\xF4\x90\x80\x80", 4); /* > U+10FFFF */
	expect_fffd_only("\xF8\x88\x80\x80\x80", 5);
	expect("\xFE\xFF", 2, 100, FFFD FFFD, 0);
	/* NUL is replaced too: the output is a C string and JSON-safe. */
	expect("a\0b", 3, 100, "a" FFFD "b", 0);
	expect("\0\0", 2, 100, FFFD FFFD, 0);
}

/* Replacement grows the text: the max is on the output, and a U+FFFD that
 * does not fit is not split. */
static void test_replacement_respects_max(void **state)
{
	(void)state;
	expect("\xFF\xFF\xFF", 3, 6, FFFD FFFD, 1);
	expect("\xFF\xFF\xFF", 3, 5, FFFD, 1);
	expect("\xFF", 1, 2, "", 1);
	expect("ab\xFF", 3, 4, "ab", 1);
	expect("ab\xFF", 3, 5, "ab" FFFD, 0);
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

/* Random binary input of every size against several limits: the
 * invariants always hold, and a result not marked truncated keeps every
 * valid byte of the input. */
static void test_random_binary(void **state)
{
	(void)state;
	uint32_t seed = 7;
	unsigned char buf[512];
	const size_t maxes[] = {0, 1, 2, 3, 4, 5, 7, 16, 100, 300, 1024};
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = lcg(&seed) % sizeof(buf);
		int mode = iter % 3;
		for (size_t i = 0; i < len; i++) {
			uint32_t r = lcg(&seed);
			if (mode == 0)
				buf[i] = (unsigned char)r; /* pure binary */
			else if (mode == 1)
				buf[i] = (unsigned char)(0x20 + r % 0x5f); /* ASCII */
			else
				buf[i] = (unsigned char)"a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80\x80\xFF\0"[r % 13];
		}
		for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
			size_t max = maxes[m];
			int trunc = -1;
			char *out = worker_tool_sanitize((const char *)buf, len, max, &trunc);
			assert_non_null(out);
			size_t olen = strlen(out);
			assert_true(olen <= max);
			assert_true(valid_utf8((const unsigned char *)out, olen));
			assert_true(trunc == 0 || trunc == 1);
			if (len > max)
				assert_int_equal(trunc, 1);
			if (mode == 1) {
				/* ASCII: an exact prefix. */
				size_t want = len < max ? len : max;
				assert_int_equal(olen, want);
				assert_memory_equal(out, buf, want);
				assert_int_equal(trunc, len > max);
			}
			if (!trunc && valid_utf8(buf, len)) {
				assert_int_equal(olen, len);
				assert_memory_equal(out, buf, len);
			}
			free(out);
		}
	}
}

/* A large output (the default max_output) is handled in one piece. */
static void test_large(void **state)
{
	(void)state;
	size_t n = 200000;
	char *big = malloc(n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i += 3)
		memcpy(big + i, "\xE6\x97\xA5", 3 <= n - i ? 3 : n - i);
	int trunc = 0;
	char *out = worker_tool_sanitize(big, n, 65536, &trunc);
	assert_non_null(out);
	assert_int_equal(trunc, 1);
	assert_int_equal(strlen(out), 65535); /* 21845 whole characters */
	assert_true(valid_utf8((const unsigned char *)out, strlen(out)));
	free(out);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii_passthrough),
		cmocka_unit_test(test_valid_multibyte),
		cmocka_unit_test(test_cut_ascii),
		cmocka_unit_test(test_cut_on_boundary),
		cmocka_unit_test(test_invalid_bytes),
		cmocka_unit_test(test_replacement_respects_max),
		cmocka_unit_test(test_random_binary),
		cmocka_unit_test(test_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
