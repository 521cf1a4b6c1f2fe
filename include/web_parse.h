/* web_parse: the web child's small parsers of what a client sends (pure,
 * no libmicrohttpd; unit tested in test/unit/test_web_auth.c): numbers in
 * query strings, run and dead-letter ids in paths, the allowlist name of a
 * control command. */
#ifndef SV_WEB_PARSE_H
#define SV_WEB_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define WEB_ID_MAX 1024 /* bytes of a run id in a path */

/* A decimal integer in [min, max] (no sign, no spaces): 0 and *out, or
 * -EINVAL (not a number) or -ERANGE (out of range). */
int web_parse_uint(const char *s, long long min, long long max, long long *out);
/* Percent-decode path bytes raw[0..len) into out (NUL-terminated,
 * cap >= WEB_ID_MAX + 1): 0, -EINVAL (a bad escape, or a NUL byte),
 * -ENAMETOOLONG (more than WEB_ID_MAX bytes decoded) or -ENODATA (empty). */
int web_path_decode(const char *raw, size_t len, char *out, size_t cap);
/* The raw target's path: its length up to '?' or '#'. */
size_t web_path_len(const char *target);
/* The allowlist name of a control command: "dead retry" / "dead purge"
 * for cmd "dead" with that args[0], else cmd.  Into buf. */
const char *web_action_name(const char *cmd, const json_t *args, char *buf, size_t len);
/* Is name in the JSON array of strings actions? */
bool web_action_allowed(const json_t *actions, const char *name);

#endif
