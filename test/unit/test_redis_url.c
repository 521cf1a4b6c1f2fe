/* Unit tests for src/redis_url.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"
#include "util.h"

static void parse_ok(const char *s, struct redis_url *u)
{
	char err[128] = "";
	int r = redis_url_parse(s, u, err, sizeof(err));
	if (r != 0)
		print_message("%s: %s\n", s, err);
	assert_int_equal(r, 0);
}

static void test_tcp(void **state)
{
	(void)state;
	struct redis_url u;
	parse_ok("redis://127.0.0.1:6379/0", &u);
	assert_int_equal(u.type, REDIS_URL_TCP);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_null(u.user);
	assert_null(u.password);
	assert_null(u.path);
	redis_url_free(&u);

	parse_ok("redis://localhost", &u);
	assert_string_equal(u.host, "localhost");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	redis_url_free(&u);

	parse_ok("REDIS://redis-1.example.com:7000/15", &u);
	assert_string_equal(u.host, "redis-1.example.com");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 15);
	redis_url_free(&u);

	parse_ok("redis://h/", &u);
	assert_int_equal(u.db, 0);
	redis_url_free(&u);

	parse_ok("redis://h:1/100", &u); /* any non-negative db */
	assert_int_equal(u.port, 1);
	assert_int_equal(u.db, 100);
	redis_url_free(&u);

	parse_ok("redis://h:65535", &u);
	assert_int_equal(u.port, 65535);
	redis_url_free(&u);
}

static void test_auth(void **state)
{
	(void)state;
	struct redis_url u;
	parse_ok("redis://app:secret@h:6380/2", &u);
	assert_string_equal(u.user, "app");
	assert_string_equal(u.password, "secret");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	redis_url_free(&u);

	/* password only */
	parse_ok("redis://:secret@h", &u);
	assert_null(u.user);
	assert_string_equal(u.password, "secret");
	redis_url_free(&u);

	/* user only */
	parse_ok("redis://app@h", &u);
	assert_string_equal(u.user, "app");
	assert_null(u.password);
	redis_url_free(&u);

	/* empty user and password are absent */
	parse_ok("redis://:@h", &u);
	assert_null(u.user);
	assert_null(u.password);
	redis_url_free(&u);

	/* percent-escapes; an unescaped '@' or ':' in the password works too */
	parse_ok("redis://a%40b:p%3A%2F%25w@h", &u);
	assert_string_equal(u.user, "a@b");
	assert_string_equal(u.password, "p:/%w");
	redis_url_free(&u);
	parse_ok("redis://u:p@ss:w@h:1/1", &u);
	assert_string_equal(u.user, "u");
	assert_string_equal(u.password, "p@ss:w");
	assert_string_equal(u.host, "h");
	redis_url_free(&u);
}

static void test_ipv6(void **state)
{
	(void)state;
	struct redis_url u;
	parse_ok("redis://[::1]:6380/1", &u);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 1);
	redis_url_free(&u);
	parse_ok("redis://:pw@[fe80::1%25eth0]", &u);
	assert_string_equal(u.host, "fe80::1%25eth0");
	assert_int_equal(u.port, 6379);
	redis_url_free(&u);
}

static void test_unix(void **state)
{
	(void)state;
	struct redis_url u;
	parse_ok("unix:///run/redis/redis.sock", &u);
	assert_int_equal(u.type, REDIS_URL_UNIX);
	assert_string_equal(u.path, "/run/redis/redis.sock");
	assert_int_equal(u.db, 0);
	assert_null(u.host);
	redis_url_free(&u);
	parse_ok("unix:///tmp/r.sock?db=3", &u);
	assert_string_equal(u.path, "/tmp/r.sock");
	assert_int_equal(u.db, 3);
	redis_url_free(&u);
	parse_ok("unix://app:s%40cret@/tmp/r.sock?db=1", &u);
	assert_string_equal(u.user, "app");
	assert_string_equal(u.password, "s@cret");
	assert_string_equal(u.path, "/tmp/r.sock");
	assert_int_equal(u.db, 1);
	redis_url_free(&u);
	parse_ok("unix://:pw@/tmp/r.sock", &u);
	assert_null(u.user);
	assert_string_equal(u.password, "pw");
	redis_url_free(&u);
}

static void test_bad(void **state)
{
	(void)state;
	const char *bad[] = {
		"",
		"127.0.0.1:6379",
		"http://h",
		"rediss://h",
		"redis://",
		"redis://:pw@",
		"redis://h:",
		"redis://h:0",
		"redis://h:65536",
		"redis://h:99999999999",
		"redis://h:12ab",
		"redis://h/x",
		"redis://h/1/2",
		"redis://h/-1",
		"redis://h/99999999999",
		"redis://h?db=1",
		"redis://h junk",
		"redis://[::1",
		"redis://[]",
		"redis://[::1]x",
		"redis://ho$t",
		"redis://u:p%zz@h",
		"redis://u:p%4@h",
		"redis://u:p%00@h",
		"unix://",
		"unix:///",
		"unix://relative.sock",
		"unix:///tmp/r.sock?db=x",
		"unix:///tmp/r.sock?foo=1",
		"unix:///tmp/r.sock?db=1&x=2",
		"unix:///aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct redis_url u;
		memset(&u, 0x5a, sizeof(u));
		char err[128] = "";
		int r = redis_url_parse(bad[i], &u, err, sizeof(err));
		if (r != -EINVAL)
			print_message("accepted: \"%s\"\n", bad[i]);
		assert_int_equal(r, -EINVAL);
		assert_true(err[0] != '\0');
	}
	/* NULL error buffer is fine. */
	struct redis_url u;
	assert_int_equal(redis_url_parse("nope", &u, NULL, 0), -EINVAL);
}

static void test_error_never_has_password(void **state)
{
	(void)state;
	const char *bad[] = {
		"redis://u:hunter2@h:0",     "redis://:hunter2@",         "redis://:hunter2@h/x",
		"http://u:hunter2@h",        "redis://:hunter2%zz@h",     "redis://u:hunter2@[::1",
		"unix://u:hunter2@rel.sock", "unix://:hunter2@/s?bad=1",  "redis://:hunter2@h junk",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct redis_url u;
		char err[256] = "";
		assert_int_equal(redis_url_parse(bad[i], &u, err, sizeof(err)), -EINVAL);
		assert_null(strstr(err, "hunter2"));
		assert_null(strstr(err, "hunter"));
	}
}

static void test_redact(void **state)
{
	(void)state;
	struct {
		const char *in, *out;
	} cases[] = {
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://h", "redis://h:6379/0"},
		{"redis://app:secret@h:6380/2", "redis://app:***@h:6380/2"},
		{"redis://:secret@h", "redis://:***@h:6379/0"},
		{"redis://app@h", "redis://app@h:6379/0"},
		{"redis://a%40b:p%40ss@h", "redis://a%40b:***@h:6379/0"},
		{"redis://:secret@[::1]:7000/3", "redis://:***@[::1]:7000/3"},
		{"unix:///tmp/r.sock", "unix:///tmp/r.sock?db=0"},
		{"unix://u:secret@/tmp/r.sock?db=4", "unix://u:***@/tmp/r.sock?db=4"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct redis_url u, c;
		parse_ok(cases[i].in, &u);
		char *r = redis_url_redact(&u);
		assert_non_null(r);
		assert_string_equal(r, cases[i].out);
		assert_null(strstr(r, "secret"));
		assert_null(strstr(r, "p@ss"));
		/* The redacted form parses back to the same place. */
		struct redis_url back;
		parse_ok(r, &back);
		assert_int_equal(back.type, u.type);
		assert_int_equal(back.port, u.port);
		assert_int_equal(back.db, u.db);
		if (u.user)
			assert_string_equal(back.user, u.user);
		redis_url_free(&back);
		/* Deep copy. */
		assert_int_equal(redis_url_copy(&c, &u), 0);
		redis_url_free(&u);
		char *r2 = redis_url_redact(&c);
		assert_string_equal(r, r2);
		redis_url_free(&c);
		free(r);
		free(r2);
	}
	redis_url_free(NULL);
	assert_null(redis_url_redact(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_error_never_has_password),
		cmocka_unit_test(test_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
