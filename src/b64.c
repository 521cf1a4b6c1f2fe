/* b64: standard base64 with padding (RFC 4648 section 4). */
#include "b64.h"

#include <stdlib.h>

#include "util.h"

static const char b64_abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const void *p, size_t n, size_t *outlen)
{
	const unsigned char *s = p;
	size_t len = (n + 2) / 3 * 4;
	char *out = util_xcalloc(1, len + 1), *o = out;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		*o++ = b64_abc[(v >> 18) & 63];
		*o++ = b64_abc[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64_abc[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? b64_abc[v & 63] : '=';
	}
	if (outlen)
		*outlen = len;
	return out;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

unsigned char *b64_decode(const char *s, size_t len, size_t *outlen)
{
	if (len % 4)
		return NULL;
	unsigned char *out = util_xcalloc(1, len / 4 * 3 + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		for (int k = 0; k < 4; k++) {
			v[k] = b64_value(s[i + k]);
			/* '=' only at the end: "xx==" or "xxx=". */
			if (v[k] < 0 && !(last && s[i + k] == '=' && k >= 2 && (k == 3 || s[i + 3] == '='))) {
				free(out);
				return NULL;
			}
		}
		unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)(v[2] < 0 ? 0 : v[2]) << 6 |
			     (unsigned)(v[3] < 0 ? 0 : v[3]);
		out[o++] = (unsigned char)(w >> 16);
		if (v[2] >= 0)
			out[o++] = (unsigned char)(w >> 8);
		if (v[3] >= 0)
			out[o++] = (unsigned char)w;
	}
	*outlen = o;
	return out;
}
