/* Unit tests for the web child's pure checks (issue 15): web_auth (Host,
 * Origin, Sec-Fetch-Site, Content-Type, bearer, token, sessions, login
 * rate) and web_parse (numbers, path ids, the allowlist). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>

#include "web_auth.h"
#include "web_parse.h"

static const char *const hosts[] = {"127.0.0.1:8080", "localhost:8080", "Console.Example.org"};
#define NH (sizeof(hosts) / sizeof(hosts[0]))

static void host_checks(void **state)
{
	(void)state;
	assert_true(web_host_allowed(hosts, NH, "127.0.0.1:8080"));
	assert_true(web_host_allowed(hosts, NH, "LOCALHOST:8080"));
	assert_true(web_host_allowed(hosts, NH, "console.example.org"));
	assert_false(web_host_allowed(hosts, NH, "127.0.0.1"));
	assert_false(web_host_allowed(hosts, NH, "127.0.0.1:80800"));
	assert_false(web_host_allowed(hosts, NH, "evil.com"));
	assert_false(web_host_allowed(hosts, NH, ""));
	assert_false(web_host_allowed(hosts, NH, NULL));
	assert_false(web_host_allowed(hosts, 0, "127.0.0.1:8080"));
}

static void origin_checks(void **state)
{
	(void)state;
	assert_true(web_origin_allowed(hosts, NH, "http://127.0.0.1:8080"));
	assert_true(web_origin_allowed(hosts, NH, "https://console.example.org"));
	assert_false(web_origin_allowed(hosts, NH, "http://evil.com"));
	assert_false(web_origin_allowed(hosts, NH, "http://127.0.0.1:8080.evil.com"));
	assert_false(web_origin_allowed(hosts, NH, "null"));
	assert_false(web_origin_allowed(hosts, NH, "ftp://127.0.0.1:8080"));
	assert_false(web_origin_allowed(hosts, NH, "127.0.0.1:8080"));
	assert_true(web_fetch_site_ok(NULL));
	assert_true(web_fetch_site_ok("same-origin"));
	assert_true(web_fetch_site_ok("none"));
	assert_false(web_fetch_site_ok("same-site"));
	assert_false(web_fetch_site_ok("cross-site"));
	assert_true(web_content_type_json("application/json"));
	assert_true(web_content_type_json("Application/JSON; charset=utf-8"));
	assert_false(web_content_type_json("application/jsonp"));
	assert_false(web_content_type_json("text/plain"));
	assert_false(web_content_type_json(NULL));
	assert_string_equal(web_bearer("Bearer abc"), "abc");
	assert_string_equal(web_bearer("bearer  abc"), "abc");
	assert_null(web_bearer("Basic abc"));
	assert_null(web_bearer("Bearer "));
	assert_null(web_bearer(NULL));
}

static void hexs(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void token_checks(void **state)
{
	(void)state;
	const char *salt = "00112233445566778899aabbccddeeff";
	const char *tok = "s3cret-token-0123456789";
	uint8_t buf[128], d[32];
	int n = web_hex_decode(salt, buf, sizeof(buf));
	assert_int_equal(n, 16);
	memcpy(buf + n, tok, strlen(tok));
	assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, (size_t)n + strlen(tok), d), 0);
	char sha[65];
	hexs(d, 32, sha);
	struct web_token t;
	assert_int_equal(web_token_parse(&t, salt, sha), 0);
	assert_true(t.set);
	assert_true(web_token_check(&t, tok, strlen(tok)));
	assert_false(web_token_check(&t, tok, strlen(tok) - 1));
	assert_false(web_token_check(&t, "s3cret-token-0123456788", strlen(tok)));
	assert_false(web_token_check(&t, "", 0));
	/* no token configured: nothing checks out */
	assert_int_equal(web_token_parse(&t, salt, NULL), 0);
	assert_false(t.set);
	assert_false(web_token_check(&t, tok, strlen(tok)));
	/* malformed */
	assert_int_equal(web_token_parse(&t, "zz", sha), -EINVAL);
	assert_int_equal(web_token_parse(&t, salt, "abcd"), -EINVAL);
	assert_int_equal(web_token_parse(&t, NULL, sha), -EINVAL);
	assert_true(web_ct_equal("abc", "abc", 3));
	assert_false(web_ct_equal("abc", "abd", 3));
}

static void sessions(void **state)
{
	(void)state;
	static struct web_sessions t;
	char id[65], first[65];
	int64_t now = 1000;
	assert_int_equal(web_session_new(&t, "tok", now, first), 0);
	assert_int_equal(strlen(first), 64);
	struct web_session *s = web_session_find(&t, first, now + 1);
	assert_non_null(s);
	assert_string_equal(s->token, "tok");
	assert_null(web_session_find(&t, "00", now));
	assert_null(web_session_find(&t, NULL, now));
	char wrong[65];
	strcpy(wrong, first);
	wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
	assert_null(web_session_find(&t, wrong, now));
	/* at most WEB_SESSIONS_MAX: the least recently used goes */
	for (int i = 1; i < WEB_SESSIONS_MAX; i++)
		assert_int_equal(web_session_new(&t, "tok", now + 10 + i, id), 0);
	assert_int_equal(web_sessions_count(&t), WEB_SESSIONS_MAX);
	assert_non_null(web_session_find(&t, first, now + 100)); /* touched: now the newest */
	assert_int_equal(web_session_new(&t, "tok", now + 200, id), 0);
	assert_int_equal(web_sessions_count(&t), WEB_SESSIONS_MAX);
	assert_non_null(web_session_find(&t, first, now + 201));
	/* idle expiry */
	assert_null(web_session_find(&t, first, now + 201 + WEB_SESSION_IDLE_MS + 1));
	assert_int_equal(web_sessions_count(&t), 0);
	assert_int_equal(web_session_new(&t, "tok", now, id), 0);
	web_session_drop(web_session_find(&t, id, now));
	assert_null(web_session_find(&t, id, now));
	web_sessions_clear(&t);
}

static void login_rate(void **state)
{
	(void)state;
	struct web_ratelimit r = {0};
	int64_t now = 100000;
	for (int i = 0; i < WEB_LOGIN_FAILS_MAX; i++) {
		assert_false(web_ratelimit_blocked(&r, now + i));
		web_ratelimit_fail(&r, now + i);
	}
	assert_true(web_ratelimit_blocked(&r, now + 10));
	assert_true(web_ratelimit_blocked(&r, now + WEB_LOGIN_WINDOW_MS - 1));
	assert_false(web_ratelimit_blocked(&r, now + WEB_LOGIN_WINDOW_MS));
	web_ratelimit_fail(&r, now + WEB_LOGIN_WINDOW_MS);
	assert_true(web_ratelimit_blocked(&r, now + WEB_LOGIN_WINDOW_MS));
	assert_false(web_ratelimit_blocked(&r, now + WEB_LOGIN_WINDOW_MS + 1));
}

static void parse(void **state)
{
	(void)state;
	long long v;
	assert_int_equal(web_parse_uint("5", 0, 60, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(web_parse_uint("60", 0, 60, &v), 0);
	assert_int_equal(web_parse_uint("61", 0, 60, &v), -ERANGE);
	assert_int_equal(web_parse_uint("99999999999999999999999", 0, 60, &v), -ERANGE);
	assert_int_equal(web_parse_uint("-1", 0, 60, &v), -EINVAL);
	assert_int_equal(web_parse_uint("", 0, 60, &v), -EINVAL);
	assert_int_equal(web_parse_uint("1x", 0, 60, &v), -EINVAL);
	assert_int_equal(web_parse_uint("0", 1, 60, &v), -ERANGE);
	char out[WEB_ID_MAX + 1];
	assert_int_equal(web_path_decode("a%2Fb%20c", 9, out, sizeof(out)), 0);
	assert_string_equal(out, "a/b c");
	assert_int_equal(web_path_decode("a%00b", 5, out, sizeof(out)), -EINVAL);
	assert_int_equal(web_path_decode("a%0", 3, out, sizeof(out)), -EINVAL);
	assert_int_equal(web_path_decode("a%zz", 4, out, sizeof(out)), -EINVAL);
	assert_int_equal(web_path_decode("", 0, out, sizeof(out)), -ENODATA);
	char big[3 * WEB_ID_MAX + 4];
	memset(big, 'x', sizeof(big));
	assert_int_equal(web_path_decode(big, WEB_ID_MAX, out, sizeof(out)), 0);
	assert_int_equal(web_path_decode(big, WEB_ID_MAX + 1, out, sizeof(out)), -ENAMETOOLONG);
	assert_int_equal(web_path_len("/api/v1/runs/x?wait=1"), strlen("/api/v1/runs/x"));
	assert_int_equal(web_path_len("/a"), 2);
	json_t *args = json_pack("[s, s]", "retry", "1-1");
	json_t *acts = json_pack("[s, s]", "restart", "dead retry");
	char buf[64];
	assert_string_equal(web_action_name("dead", args, buf, sizeof(buf)), "dead retry");
	assert_true(web_action_allowed(acts, buf));
	assert_string_equal(web_action_name("restart", NULL, buf, sizeof(buf)), "restart");
	assert_true(web_action_allowed(acts, buf));
	json_array_set_new(args, 0, json_string("purge"));
	assert_false(web_action_allowed(acts, web_action_name("dead", args, buf, sizeof(buf))));
	assert_false(web_action_allowed(acts, web_action_name("shutdown", NULL, buf, sizeof(buf))));
	json_array_set_new(args, 0, json_string("list"));
	assert_string_equal(web_action_name("dead", args, buf, sizeof(buf)), "dead");
	json_decref(args);
	json_decref(acts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(host_checks), cmocka_unit_test(origin_checks), cmocka_unit_test(token_checks),
		cmocka_unit_test(sessions),    cmocka_unit_test(login_rate),    cmocka_unit_test(parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
