/* Unit tests for b64 (dead letters' bytes in JSON, issue 12). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"

/* RFC 4648 section 10 vectors, both ways. */
static void rfc_vectors(void **state)
{
	(void)state;
	static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		size_t len;
		char *e = b64_encode(in[i], strlen(in[i]), &len);
		assert_string_equal(e, out[i]);
		assert_int_equal(len, strlen(out[i]));
		unsigned char *d = b64_decode(e, len, &len);
		assert_non_null(d);
		assert_int_equal(len, strlen(in[i]));
		assert_memory_equal(d, in[i], len);
		free(e);
		free(d);
	}
}

/* Every byte value, at every length modulo 3. */
static void all_bytes(void **state)
{
	(void)state;
	unsigned char buf[258];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(255 - i % 256);
	for (size_t n = 255; n <= sizeof(buf); n++) {
		size_t len, back;
		char *e = b64_encode(buf, n, &len);
		unsigned char *d = b64_decode(e, len, &back);
		assert_non_null(d);
		assert_int_equal(back, n);
		assert_memory_equal(d, buf, n);
		free(e);
		free(d);
	}
}

static void invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {"Zg=", "Z===", "=Zg=", "Zg==Zg==", "Zm9*", "Zm 9", "Zg=a"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len;
		assert_null(b64_decode(bad[i], strlen(bad[i]), &len));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc_vectors),
		cmocka_unit_test(all_bytes),
		cmocka_unit_test(invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
