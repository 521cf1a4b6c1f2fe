/* web_auth: host, origin, token, session and login-rate checks of the web
 * child (web_auth.h). */
#include "web_auth.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

bool web_host_allowed(const char *const *hosts, size_t n, const char *host)
{
	if (!host || !*host)
		return false;
	for (size_t i = 0; i < n; i++)
		if (hosts[i] && strcasecmp(hosts[i], host) == 0)
			return true;
	return false;
}

bool web_origin_allowed(const char *const *hosts, size_t n, const char *origin)
{
	if (!origin)
		return false;
	const char *h = NULL;
	if (strncasecmp(origin, "http://", 7) == 0)
		h = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		h = origin + 8;
	return h && web_host_allowed(hosts, n, h);
}

bool web_fetch_site_ok(const char *v)
{
	return !v || strcasecmp(v, "same-origin") == 0 || strcasecmp(v, "none") == 0;
}

bool web_content_type_json(const char *ct)
{
	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strlen("application/json");
	if (strncasecmp(ct, "application/json", n) != 0)
		return false;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

const char *web_bearer(const char *authorization)
{
	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	const char *t = authorization + 7;
	while (*t == ' ')
		t++;
	return *t ? t : NULL;
}

bool web_ct_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

int web_hex_decode(const char *hex, uint8_t *out, size_t max)
{
	size_t len = strlen(hex);
	if (len % 2 || len / 2 > max)
		return -EINVAL;
	for (size_t i = 0; i < len / 2; i++) {
		int h = util_hexval(hex[2 * i]), l = util_hexval(hex[2 * i + 1]);
		if (h < 0 || l < 0)
			return -EINVAL;
		out[i] = (uint8_t)(h << 4 | l);
	}
	return (int)(len / 2);
}

int web_token_parse(struct web_token *t, const char *salt_hex, const char *sha_hex)
{
	memset(t, 0, sizeof(*t));
	if (!sha_hex)
		return 0;
	if (!salt_hex)
		return -EINVAL;
	int n = web_hex_decode(salt_hex, t->salt, sizeof(t->salt));
	if (n < 0)
		return -EINVAL;
	t->salt_len = (size_t)n;
	if (strlen(sha_hex) != 2 * sizeof(t->sha) || web_hex_decode(sha_hex, t->sha, sizeof(t->sha)) < 0)
		return -EINVAL;
	t->set = true;
	return 0;
}

int web_token_digest(const uint8_t *salt, size_t salt_len, const char *tok, size_t len, uint8_t out[32])
{
	if (salt_len > WEB_TOKEN_SALT_MAX || len > 4096)
		return -EINVAL;
	uint8_t buf[WEB_TOKEN_SALT_MAX + 4096];
	memcpy(buf, salt, salt_len);
	memcpy(buf + salt_len, tok, len);
	int r = gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, salt_len + len, out);
	explicit_bzero(buf, sizeof(buf));
	return r < 0 ? -EIO : 0;
}

bool web_token_check(const struct web_token *t, const char *tok, size_t len)
{
	uint8_t d[32];
	if (!t->set || !tok || web_token_digest(t->salt, t->salt_len, tok, len, d) < 0)
		return false;
	return web_ct_equal(d, t->sha, sizeof(d));
}

void web_hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static void session_free(struct web_session *s)
{
	if (s->token) {
		explicit_bzero(s->token, strlen(s->token));
		free(s->token);
	}
	memset(s, 0, sizeof(*s));
}

int web_session_new(struct web_sessions *t, const char *token, int64_t now_ms, char idhex[2 * WEB_SESSION_ID_LEN + 1])
{
	struct web_session *slot = NULL;
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *s = &t->v[i];
		if (s->used && now_ms - s->last_ms > WEB_SESSION_IDLE_MS)
			session_free(s);
		if (!s->used) {
			if (!slot || slot->used)
				slot = s;
		} else if (!slot || (slot->used && s->last_ms < slot->last_ms)) {
			slot = s;
		}
	}
	char *copy = strdup(token);
	if (!copy)
		return -ENOMEM;
	uint8_t id[WEB_SESSION_ID_LEN];
	if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
		free(copy);
		return -EIO;
	}
	session_free(slot);
	slot->used = true;
	memcpy(slot->id, id, sizeof(id));
	slot->token = copy;
	slot->last_ms = now_ms;
	web_hex_encode(id, sizeof(id), idhex);
	return 0;
}

struct web_session *web_session_find(struct web_sessions *t, const char *cookie, int64_t now_ms)
{
	uint8_t id[WEB_SESSION_ID_LEN];
	if (!cookie || strlen(cookie) != 2 * WEB_SESSION_ID_LEN ||
	    web_hex_decode(cookie, id, sizeof(id)) != (int)sizeof(id))
		return NULL;
	struct web_session *hit = NULL;
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *s = &t->v[i];
		if (!s->used)
			continue;
		if (now_ms - s->last_ms > WEB_SESSION_IDLE_MS) {
			session_free(s);
			continue;
		}
		if (web_ct_equal(s->id, id, sizeof(id)))
			hit = s;
	}
	if (hit)
		hit->last_ms = now_ms;
	return hit;
}

void web_session_drop(struct web_session *s)
{
	if (s)
		session_free(s);
}

void web_sessions_clear(struct web_sessions *t)
{
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++)
		session_free(&t->v[i]);
}

size_t web_sessions_count(const struct web_sessions *t)
{
	size_t n = 0;
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++)
		n += t->v[i].used;
	return n;
}

bool web_ratelimit_blocked(const struct web_ratelimit *r, int64_t now_ms)
{
	if (r->n < WEB_LOGIN_FAILS_MAX)
		return false;
	/* The oldest of the last WEB_LOGIN_FAILS_MAX failures is next to go. */
	return now_ms - r->at[r->next] < WEB_LOGIN_WINDOW_MS;
}

void web_ratelimit_fail(struct web_ratelimit *r, int64_t now_ms)
{
	r->at[r->next] = now_ms;
	r->next = (r->next + 1) % WEB_LOGIN_FAILS_MAX;
	if (r->n < WEB_LOGIN_FAILS_MAX)
		r->n++;
}
