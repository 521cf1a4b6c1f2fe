/* redis_url: parse redis:// and unix:// URLs, and print them with the
 * password redacted. */
#ifndef SV_REDIS_URL_H
#define SV_REDIS_URL_H

#include <stddef.h>

enum redis_url_type { REDIS_URL_TCP, REDIS_URL_UNIX };

struct redis_url {
	enum redis_url_type type;
	char *host;     /* TCP: host name or address ("[::1]" brackets removed) */
	int port;       /* TCP: default 6379 */
	char *path;     /* UNIX: socket path */
	char *user;     /* NULL when absent (AUTH with one argument) */
	char *password; /* NULL when absent */
	int db;         /* default 0 */
};

/* Parse s.  Grammar:
 *   redis://[user[:password]@]host[:port][/db]
 *   redis://[:password@]host...        (password only)
 *   unix:///path.sock[?db=N]  or  unix://[user[:password]@]/path.sock[?db=N]
 * Percent-escapes (%40 ...) are decoded in user and password.
 * Returns 0, or -EINVAL with a one-line reason in err (never containing the
 * password). */
int redis_url_parse(const char *s, struct redis_url *out, char *err, size_t errlen);
void redis_url_free(struct redis_url *u);
/* Deep copy; returns 0 or -ENOMEM. */
int redis_url_copy(struct redis_url *dst, const struct redis_url *src);
/* "redis://user:***@host:port/db" or "unix:///p.sock?db=N": malloc'd. */
char *redis_url_redact(const struct redis_url *u);

#endif
