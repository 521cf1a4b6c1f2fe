/* web_parse: query, path and command parsing of the web child (web_parse.h). */
#include "web_parse.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int web_parse_uint(const char *s, long long min, long long max, long long *out)
{
	if (!s || !*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	long long v = 0;
	for (; *s; s++) {
		if (v > (max - (*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int web_path_decode(const char *raw, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	if (len == 0)
		return -ENODATA;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)raw[i];
		if (c == '%') {
			if (i + 2 >= len)
				return -EINVAL;
			int h = util_hexval(raw[i + 1]), l = util_hexval(raw[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = h << 4 | l;
			i += 2;
		}
		if (c == 0)
			return -EINVAL;
		if (o >= WEB_ID_MAX || o + 1 >= cap)
			return -ENAMETOOLONG;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

size_t web_path_len(const char *target)
{
	return strcspn(target, "?#");
}

const char *web_action_name(const char *cmd, const json_t *args, char *buf, size_t len)
{
	const char *a0 = json_string_value(json_array_get(args, 0));
	if (cmd && !strcmp(cmd, "dead") && a0 && (!strcmp(a0, "retry") || !strcmp(a0, "purge"))) {
		snprintf(buf, len, "dead %s", a0);
		return buf;
	}
	snprintf(buf, len, "%s", cmd ? cmd : "");
	return buf;
}

bool web_action_allowed(const json_t *actions, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(actions, i, v) {
		if (json_is_string(v) && !strcmp(json_string_value(v), name))
			return true;
	}
	return false;
}
