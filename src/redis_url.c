/* redis_url: parse redis:// and unix:// URLs, and print them with the
 * password redacted.
 *
 * Accepted forms (the scheme is case-insensitive):
 *   redis://[user[:password]@]host[:port][/db]
 *   redis://[:password@]host...                 password only
 *   redis://[user[:password]@][v6addr][:port][/db]
 *   unix:///path.sock[?db=N]
 *   unix://[user[:password]@]/path.sock[?db=N]
 *
 * - For redis:// the user information ends at the LAST '@', so an
 *   unescaped '@' inside a password still works; for unix:// it ends at
 *   the first "@/" (the socket path may contain '@').
 * - user and password are percent-decoded (%40 = '@'); an escape that is
 *   not two hex digits, or that decodes to NUL, is an error.  An empty user
 *   or password counts as absent.
 * - port: 1..65535, default 6379.  db: any non-negative int (Redis's
 *   "databases" setting may exceed 16; SELECT checks it at connect time),
 *   default 0.  "redis://host/" means db 0.
 * - Anything else (other schemes such as rediss://, query strings on
 *   redis://, unknown ?params on unix://, trailing text) is rejected.
 *
 * Error texts never quote the URL, so they can never leak a password. */
#include "redis_url.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define DEFAULT_PORT 6379

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Percent-decode s[0..n) into a new string.  Returns 0, -EINVAL (bad
 * escape) or -ENOMEM.  An empty result gives *out = NULL. */
static int pct_decode(const char *s, size_t n, char **out)
{
	*out = NULL;
	if (n == 0)
		return 0;
	char *d = malloc(n + 1);
	if (!d)
		return -ENOMEM;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int a = i + 2 < n ? util_hexval((unsigned char)s[i + 1]) : -EINVAL;
			int b = i + 2 < n ? util_hexval((unsigned char)s[i + 2]) : -EINVAL;
			if (a < 0 || b < 0 || (a == 0 && b == 0)) {
				d[j] = '\0';
				wipe_free(d);
				return -EINVAL;
			}
			d[j++] = (char)(a * 16 + b);
			i += 2;
		} else {
			d[j++] = s[i];
		}
	}
	d[j] = '\0';
	if (j == 0) {
		free(d);
		return 0;
	}
	*out = d;
	return 0;
}

/* Parse user[:password] from s[0..n). */
static int parse_userinfo(const char *s, size_t n, struct redis_url *u, char *err, size_t errlen)
{
	const char *colon = memchr(s, ':', n);
	size_t ulen = colon ? (size_t)(colon - s) : n;
	int r = pct_decode(s, ulen, &u->user);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return fail(err, errlen, "bad percent-escape in the user name");
	if (colon) {
		r = pct_decode(colon + 1, n - ulen - 1, &u->password);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return fail(err, errlen, "bad percent-escape in the password");
	}
	return 0;
}

/* Non-negative decimal int of s[0..n) (no sign, no spaces); -EINVAL if
 * bad, -ERANGE above max. */
static long parse_uint(const char *s, size_t n, long max)
{
	if (n == 0 || n > 10)
		return -EINVAL;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	return v > max ? -ERANGE : v;
}

static bool host_char(int c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static bool v6_char(int c)
{
	return isxdigit(c) || c == ':' || c == '.' || c == '%' || isalnum(c);
}

static int parse_tcp(const char *rest, struct redis_url *u, char *err, size_t errlen)
{
	const char *at = strrchr(rest, '@');
	const char *h = rest;
	int r;
	if (at) {
		r = parse_userinfo(rest, (size_t)(at - rest), u, err, errlen);
		if (r < 0)
			return r;
		h = at + 1;
	}
	const char *p;
	size_t hlen;
	if (*h == '[') {
		const char *close = strchr(h, ']');
		if (!close)
			return fail(err, errlen, "unterminated IPv6 address (missing ']')");
		hlen = (size_t)(close - h - 1);
		if (hlen == 0)
			return fail(err, errlen, "empty host");
		bool has_colon = false;
		for (const char *c = h + 1; c < close; c++) {
			if (!v6_char((unsigned char)*c))
				return fail(err, errlen, "bad character in IPv6 address");
			if (*c == ':')
				has_colon = true;
		}
		if (!has_colon)
			return fail(err, errlen, "bad IPv6 address");
		u->host = strndup(h + 1, hlen);
		p = close + 1;
	} else {
		p = h;
		while (*p && *p != ':' && *p != '/') {
			if (!host_char((unsigned char)*p))
				return fail(err, errlen, "bad character in host name");
			p++;
		}
		hlen = (size_t)(p - h);
		if (hlen == 0)
			return fail(err, errlen, "empty host");
		u->host = strndup(h, hlen);
	}
	if (!u->host)
		return -ENOMEM;
	u->port = DEFAULT_PORT;
	if (*p == ':') {
		const char *ps = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		long port = parse_uint(ps, (size_t)(p - ps), 65535);
		if (port < 1)
			return fail(err, errlen, "bad port (expected 1..65535)");
		u->port = (int)port;
	}
	if (*p == '/') {
		const char *ds = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p > ds) {
			long db = parse_uint(ds, (size_t)(p - ds), INT_MAX);
			if (db < 0)
				return fail(err, errlen, "bad database number");
			u->db = (int)db;
		}
	}
	if (*p)
		return fail(err, errlen, "unexpected text after the host, port or database");
	return 0;
}

static int parse_unix(const char *rest, struct redis_url *u, char *err, size_t errlen)
{
	const char *p = rest;
	int r;
	if (*p != '/') {
		const char *at = strstr(p, "@/");
		if (!at)
			return fail(err, errlen, "unix:// needs an absolute socket path (unix:///path.sock)");
		r = parse_userinfo(p, (size_t)(at - p), u, err, errlen);
		if (r < 0)
			return r;
		p = at + 1;
	}
	const char *q = strchr(p, '?');
	size_t plen = q ? (size_t)(q - p) : strlen(p);
	if (plen < 2)
		return fail(err, errlen, "empty socket path");
	if (plen >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return fail(err, errlen, "socket path too long (max %zu bytes)",
			    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	u->path = strndup(p, plen);
	if (!u->path)
		return -ENOMEM;
	if (q) {
		q++;
		if (strncmp(q, "db=", 3) != 0)
			return fail(err, errlen, "unknown parameter (only ?db=N is accepted)");
		long db = parse_uint(q + 3, strlen(q + 3), INT_MAX);
		if (db < 0)
			return fail(err, errlen, "bad database number");
		u->db = (int)db;
	}
	return 0;
}

int redis_url_parse(const char *s, struct redis_url *out, char *err, size_t errlen)
{
	struct redis_url u = {0};
	int r;
	if (err && errlen)
		err[0] = '\0';
	if (!s || !*s)
		return fail(err, errlen, "empty URL");
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return fail(err, errlen, "URL contains spaces or control characters");
	if (strncasecmp(s, "redis://", 8) == 0) {
		u.type = REDIS_URL_TCP;
		r = parse_tcp(s + 8, &u, err, errlen);
	} else if (strncasecmp(s, "unix://", 7) == 0) {
		u.type = REDIS_URL_UNIX;
		r = parse_unix(s + 7, &u, err, errlen);
	} else {
		r = fail(err, errlen, "unsupported scheme (expected redis:// or unix://)");
	}
	if (r < 0) {
		if (r == -ENOMEM)
			fail(err, errlen, "out of memory");
		redis_url_free(&u);
		return r == -ENOMEM ? r : -EINVAL;
	}
	*out = u;
	return 0;
}

void redis_url_free(struct redis_url *u)
{
	if (!u)
		return;
	free(u->host);
	free(u->path);
	free(u->user);
	wipe_free(u->password);
	memset(u, 0, sizeof(*u));
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

int redis_url_copy(struct redis_url *dst, const struct redis_url *src)
{
	struct redis_url u = *src;
	u.host = u.path = u.user = u.password = NULL;
	if (dup_opt(&u.host, src->host) < 0 || dup_opt(&u.path, src->path) < 0 ||
	    dup_opt(&u.user, src->user) < 0 || dup_opt(&u.password, src->password) < 0) {
		redis_url_free(&u);
		return -ENOMEM;
	}
	*dst = u;
	return 0;
}

/* Append s to buf (cap bytes), percent-encoding anything that would not
 * survive a re-parse of the user name. */
static void append_user(char *buf, size_t cap, const char *s)
{
	size_t len = strlen(buf);
	for (; *s && len + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			buf[len++] = (char)c;
		else
			len += (size_t)snprintf(buf + len, cap - len, "%%%02X", c);
	}
	buf[len] = '\0';
}

char *redis_url_redact(const struct redis_url *u)
{
	if (!u)
		return NULL;
	const char *host = u->host ? u->host : "";
	const char *path = u->path ? u->path : "";
	size_t cap = 64 + strlen(host) + strlen(path) + (u->user ? 3 * strlen(u->user) : 0);
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	snprintf(buf, cap, "%s", u->type == REDIS_URL_UNIX ? "unix://" : "redis://");
	if (u->user || u->password) {
		if (u->user)
			append_user(buf, cap, u->user);
		if (u->password)
			strcat(buf, ":***");
		strcat(buf, "@");
	}
	size_t len = strlen(buf);
	if (u->type == REDIS_URL_UNIX)
		snprintf(buf + len, cap - len, "%s?db=%d", path, u->db);
	else if (strchr(host, ':'))
		snprintf(buf + len, cap - len, "[%s]:%d/%d", host, u->port, u->db);
	else
		snprintf(buf + len, cap - len, "%s:%d/%d", host, u->port, u->db);
	return buf;
}
