/* libFuzzer harness: what the web child parses from an HTTP client before
 * anything else looks at it (src/web_parse.c, src/web_auth.c): the run or
 * dead-letter id percent-decoded from a path, decimal query values, the
 * Host, Origin, Sec-Fetch-Site, Content-Type and Authorization headers,
 * hex, and the token check.
 *
 * Input: byte 0 picks the function, the rest is the client's bytes (as a
 * C string where a header is one).
 *
 * Checks (abort = finding):
 *   - web_path_decode agrees with a model: every "%XY" with two hex digits
 *     is that byte, a '%' without them is -EINVAL, a decoded NUL is
 *     -EINVAL, more than WEB_ID_MAX bytes -ENAMETOOLONG, nothing -ENODATA;
 *     the output is NUL-terminated within its buffer;
 *   - web_path_len stops at the first '?' or '#';
 *   - web_parse_uint accepts exactly the digit strings whose value is in
 *     range (a model with overflow detection);
 *   - a Host is allowed only when it equals a listed host ignoring case,
 *     an Origin only as "http://" or "https://" followed by an allowed
 *     Host; web_bearer returns a pointer into its argument;
 *   - web_token_check never accepts anything but the token. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "web_auth.h"
#include "web_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "finding.h"

static void check_path(const char *raw, size_t len)
{
	char out[WEB_ID_MAX + 1], model[WEB_ID_MAX + 2];
	size_t n = 0;
	int want = 0;
	for (size_t i = 0; i < len && want == 0; i++) {
		int c = (unsigned char)raw[i];
		if (c == '%') {
			int h = i + 2 < len ? util_hexval(raw[i + 1]) : -1;
			int l = i + 2 < len ? util_hexval(raw[i + 2]) : -1;
			if (h < 0 || l < 0) {
				want = -EINVAL;
				break;
			}
			c = h << 4 | l;
			i += 2;
		}
		if (c == 0)
			want = -EINVAL;
		else if (n >= WEB_ID_MAX)
			want = -ENAMETOOLONG;
		else
			model[n++] = (char)c;
	}
	if (want == 0 && n == 0)
		want = -ENODATA;
	int r = web_path_decode(raw, len, out, sizeof(out));
	if (r != want)
		FINDING("web_path_decode returned %d, the model %d", r, want);
	if (r == 0 && (strlen(out) != n || memcmp(out, model, n) != 0))
		FINDING("web_path_decode decoded %zu bytes, the model %zu", strlen(out), n);
	size_t pl = web_path_len(raw);
	size_t stop = strcspn(raw, "?#");
	if (pl != stop)
		FINDING("web_path_len %zu, the first ? or # at %zu", pl, stop);
}

static void check_uint(const char *s)
{
	long long v = -1;
	int r = web_parse_uint(s, 0, 1000000, &v);
	bool digits = *s && strspn(s, "0123456789") == strlen(s);
	bool in_range = false;
	if (digits) {
		long long m = 0;
		in_range = true;
		for (const char *p = s; *p && in_range; p++) {
			m = m * 10 + (*p - '0');
			in_range = m <= 1000000;
		}
		if (in_range && r == 0 && v != m)
			FINDING("web_parse_uint(%s) = %lld, the model %lld", s, v, m);
	}
	if ((r == 0) != (digits && in_range))
		FINDING("web_parse_uint(%s) returned %d", s, r);
}

static void check_headers(const char *s)
{
	static const char *const hosts[] = {"127.0.0.1:8470", "localhost:8470", "console.example"};
	bool host = web_host_allowed(hosts, 3, s);
	bool listed = false;
	for (size_t i = 0; i < 3; i++)
		listed |= strcasecmp(s, hosts[i]) == 0;
	if (host != listed)
		FINDING("web_host_allowed(%s) = %d", s, host);
	bool origin = web_origin_allowed(hosts, 3, s);
	const char *rest = !strncasecmp(s, "http://", 7) ? s + 7 : !strncasecmp(s, "https://", 8) ? s + 8 : NULL;
	if (origin && (!rest || !web_host_allowed(hosts, 3, rest)))
		FINDING("web_origin_allowed(%s) without an allowed host", s);
	(void)web_fetch_site_ok(s);
	(void)web_content_type_json(s);
	const char *b = web_bearer(s);
	if (b && (b < s || b > s + strlen(s)))
		FINDING("web_bearer returned a pointer outside its argument");
	uint8_t bytes[64];
	int n = web_hex_decode(s, bytes, sizeof(bytes));
	if (n > (int)sizeof(bytes))
		FINDING("web_hex_decode wrote %d bytes into %zu", n, sizeof(bytes));
}

static void check_token(const char *s, size_t len)
{
	/* salt "00" x 16, token "correct-horse-battery" */
	static struct web_token t;
	static bool ready;
	if (!ready) {
		if (web_token_parse(&t, "00000000000000000000000000000000",
				    "24a3cba8bb93a4d3c3a4e6b1b27e8bc4a7c7b64c4b0ab8a0e5e0a8e6ac8e8f01") < 0)
			FINDING("web_token_parse refused a well-formed salt and digest");
		ready = true;
	}
	/* The digest above is not the token's: nothing may pass. */
	if (web_token_check(&t, s, len))
		FINDING("web_token_check accepted %zu bytes that are not the token", len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 8192)
		return 0;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	size_t len = strlen(s);
	switch (data[0] % 4) {
	case 0: check_path(s, len); break;
	case 1: check_uint(s); break;
	case 2: check_headers(s); break;
	default: check_token(s, size - 1); break;
	}
	free(s);
	return 0;
}
