/* web_auth: who may talk to the web child (issue 15, web-spec.md "Checks").
 * Pure code, no libmicrohttpd, so the unit tests (test/unit/test_web_auth.c)
 * exercise it directly:
 *
 *   - Host and Origin against the master's expanded host list (DNS
 *     rebinding, cross-site requests), Sec-Fetch-Site;
 *   - the token: the child never gets it, only salt and SHA-256(salt bytes
 *     || token); a presented token is hashed (gnutls_hash_fast) and the
 *     digests compared in constant time;
 *   - sessions: at most WEB_SESSIONS_MAX, 32 random bytes (getrandom) as
 *     the cookie's 64 hex digits, dropped after WEB_SESSION_IDLE_MS idle;
 *     each keeps the token its user presented, in memory only, so actions
 *     can carry it to the master (which checks it again);
 *   - login failures: more than WEB_LOGIN_FAILS_MAX a minute are refused
 *     (429) without looking at the token.
 *
 * Nothing here logs: a token or a cookie never reaches the log. */
#ifndef SV_WEB_AUTH_H
#define SV_WEB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Host header (case-insensitive, exact) in hosts? NULL never is. */
bool web_host_allowed(const char *const *hosts, size_t n, const char *host);
/* Origin "http://HOST" or "https://HOST" with HOST in hosts? */
bool web_origin_allowed(const char *const *hosts, size_t n, const char *origin);
/* Sec-Fetch-Site absent, "same-origin" or "none"? */
bool web_fetch_site_ok(const char *v);
/* Content-Type application/json (parameters allowed)? */
bool web_content_type_json(const char *ct);
/* "Bearer TOKEN" (scheme case-insensitive): TOKEN, else NULL. */
const char *web_bearer(const char *authorization);

/* Equal, in time that depends on n only. */
bool web_ct_equal(const void *a, const void *b, size_t n);
/* Hex digits (even count, at most 2 * max) into bytes: count or -EINVAL. */
int web_hex_decode(const char *hex, uint8_t *out, size_t max);

#define WEB_TOKEN_SALT_MAX 64
struct web_token {
	bool set;                       /* a token is configured */
	uint8_t salt[WEB_TOKEN_SALT_MAX];
	size_t salt_len;
	uint8_t sha[32];                /* SHA-256(salt || token) */
};
/* From the config message's token_salt and token_sha256 (sha_hex NULL: no
 * token configured).  Returns 0 or -EINVAL. */
int web_token_parse(struct web_token *t, const char *salt_hex, const char *sha_hex);
/* SHA-256(salt || tok): what the master sends the child and what a
 * presented token is compared with (also by the master, master_web.c).
 * 0, -EINVAL (salt over WEB_TOKEN_SALT_MAX or tok over 4096 bytes), -EIO. */
int web_token_digest(const uint8_t *salt, size_t salt_len, const char *tok, size_t len, uint8_t out[32]);
/* n bytes as 2n lowercase hex digits and a NUL into out. */
void web_hex_encode(const uint8_t *p, size_t n, char *out);
/* Is tok (len bytes) the token?  false when none is configured. */
bool web_token_check(const struct web_token *t, const char *tok, size_t len);

#define WEB_SESSIONS_MAX 64
#define WEB_SESSION_IDLE_MS (12 * 3600 * 1000LL)
#define WEB_SESSION_ID_LEN 32
struct web_session {
	bool used;
	uint8_t id[WEB_SESSION_ID_LEN];
	char *token;        /* what the user presented at login */
	int64_t last_ms;    /* monotonic, last use */
};
struct web_sessions {
	struct web_session v[WEB_SESSIONS_MAX];
};
/* A new session for token (copied); when the table is full the least
 * recently used one goes.  idhex gets the cookie value (64 hex digits).
 * Returns 0, -ENOMEM, or -EIO (no randomness). */
int web_session_new(struct web_sessions *t, const char *token, int64_t now_ms, char idhex[2 * WEB_SESSION_ID_LEN + 1]);
/* The live session of cookie value (NULL when none or expired; expired
 * ones are dropped); touches it. */
struct web_session *web_session_find(struct web_sessions *t, const char *cookie, int64_t now_ms);
void web_session_drop(struct web_session *s);
void web_sessions_clear(struct web_sessions *t);
size_t web_sessions_count(const struct web_sessions *t);

#define WEB_LOGIN_FAILS_MAX 10
#define WEB_LOGIN_WINDOW_MS 60000
struct web_ratelimit {
	int64_t at[WEB_LOGIN_FAILS_MAX]; /* the last failures, a ring */
	size_t next, n;
};
/* WEB_LOGIN_FAILS_MAX failures within the last minute already? */
bool web_ratelimit_blocked(const struct web_ratelimit *r, int64_t now_ms);
void web_ratelimit_fail(struct web_ratelimit *r, int64_t now_ms);

#endif
