/* jsonenc: compact JSON encoding of jansson values (see jsonenc.h). */
#include "jsonenc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct jsonenc *e, size_t more)
{
	if (e->cap - e->len >= more)
		return 0;
	size_t cap = e->cap ? e->cap : 4096;
	while (cap - e->len < more) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	char *b = realloc(e->buf, cap);
	if (!b)
		return -ENOMEM;
	e->buf = b;
	e->cap = cap;
	return 0;
}

static int put(struct jsonenc *e, const char *s, size_t n)
{
	if (reserve(e, n) < 0)
		return -ENOMEM;
	memcpy(e->buf + e->len, s, n);
	e->len += n;
	return 0;
}

/* Which bytes jansson escapes without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH: '"', '\\' and the C0 controls; everything else,
 * UTF-8 included, is copied.  The caller reserved room for 6 bytes. */
static void escape_byte(struct jsonenc *e, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";
	char *p = e->buf + e->len;
	p[0] = '\\';
	switch (c) {
	case '"': p[1] = '"'; break;
	case '\\': p[1] = '\\'; break;
	case '\b': p[1] = 'b'; break;
	case '\f': p[1] = 'f'; break;
	case '\n': p[1] = 'n'; break;
	case '\r': p[1] = 'r'; break;
	case '\t': p[1] = 't'; break;
	default:
		memcpy(p + 1, "u00", 3);
		p[4] = hex[c >> 4];
		p[5] = hex[c & 15];
		e->len += 6;
		return;
	}
	e->len += 2;
}

static int put_string(struct jsonenc *e, const char *s, size_t n)
{
	/* Worst case every byte becomes \u00XX: reserve once. */
	if (n > (SIZE_MAX - 2) / 6 || reserve(e, 6 * n + 2) < 0)
		return -ENOMEM;
	e->buf[e->len++] = '"';
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		memcpy(e->buf + e->len, s + run, i - run);
		e->len += i - run;
		escape_byte(e, c);
		run = i + 1;
	}
	memcpy(e->buf + e->len, s + run, n - run);
	e->len += n - run;
	e->buf[e->len++] = '"';
	return 0;
}

static int put_integer(struct jsonenc *e, json_int_t v)
{
	char tmp[24];
	char *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return put(e, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Reals: jansson's own formatting (precision, ".0", locale). */
static int put_real(struct jsonenc *e, const json_t *v)
{
	char tmp[64];
	size_t n = json_dumpb(v, tmp, sizeof(tmp), JSON_ENCODE_ANY | JSON_COMPACT);
	if (n == 0 || n > sizeof(tmp))
		return -ENOMEM;
	return put(e, tmp, n);
}

static int encode(struct jsonenc *e, const json_t *v, int depth);

static int put_object(struct jsonenc *e, const json_t *v, int depth)
{
	if (put(e, "{", 1) < 0)
		return -ENOMEM;
	bool first = true;
	for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
		if ((!first && put(e, ",", 1) < 0) ||
		    put_string(e, json_object_iter_key(it), json_object_iter_key_len(it)) < 0 ||
		    put(e, ":", 1) < 0 || encode(e, json_object_iter_value(it), depth + 1) < 0)
			return -ENOMEM;
		first = false;
	}
	return put(e, "}", 1);
}

static int put_array(struct jsonenc *e, const json_t *v, int depth)
{
	if (put(e, "[", 1) < 0)
		return -ENOMEM;
	size_t n = json_array_size(v);
	for (size_t i = 0; i < n; i++)
		if ((i && put(e, ",", 1) < 0) || encode(e, json_array_get(v, i), depth + 1) < 0)
			return -ENOMEM;
	return put(e, "]", 1);
}

static int encode(struct jsonenc *e, const json_t *v, int depth)
{
	if (!v || depth > 2048) /* jansson's JSON_PARSER_MAX_DEPTH is 2048 */
		return -EINVAL;
	switch (json_typeof(v)) {
	case JSON_OBJECT: return put_object(e, v, depth);
	case JSON_ARRAY: return put_array(e, v, depth);
	case JSON_STRING: return put_string(e, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: return put_integer(e, json_integer_value(v));
	case JSON_REAL: return put_real(e, v);
	case JSON_TRUE: return put(e, "true", 4);
	case JSON_FALSE: return put(e, "false", 5);
	case JSON_NULL: return put(e, "null", 4);
	}
	return -EINVAL;
}

int jsonenc_encode(struct jsonenc *e, const json_t *v)
{
	e->len = 0;
	return encode(e, v, 0);
}

void jsonenc_free(struct jsonenc *e)
{
	free(e->buf);
	e->buf = NULL;
	e->len = e->cap = 0;
}
