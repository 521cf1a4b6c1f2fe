/* libFuzzer harness: redis_url_parse + redis_url_redact + redis_url_copy.
 *
 * Input: the URL text (cut at the first NUL byte).
 *
 * Checks (abort = finding):
 *   - the redacted text never contains the password: it must be exactly
 *     scheme + encoded user + ":***@" + host/path part, all built from
 *     redactions of the URL without its password.  (A plain substring test
 *     is not usable: a password such as "6379", "//s:" or "***@h" occurs
 *     in a correct redaction by coincidence -- the fuzzer found both.)
 *   - a parse error is one of the fixed reasons (never quotes the input);
 *   - the redacted URL parses again to the same host/port/db/path/user, with
 *     a password exactly when the original had one ("***");
 *   - redis_url_copy gives an equal deep copy. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int streq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void finding(const char *what, const char *in, const char *red)
{
	fprintf(stderr, "FINDING: %s\n  input:    %s\n  redacted: %s\n", what, in, red ? red : "(null)");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = strndup((const char *)data, size);
	if (!s)
		return 0;
	struct redis_url u;
	char err[160];
	memset(err, 'X', sizeof(err));
	if (redis_url_parse(s, &u, err, sizeof(err)) != 0) {
		/* The reason must be a terminated string that never quotes the
		 * input (a password could be in it). */
		if (!memchr(err, '\0', sizeof(err)))
			finding("error text not terminated", s, NULL);
		/* Every reason is one of the fixed texts of redis_url.c. */
		static const char *const known[] = {
			"empty URL", "URL contains spaces or control characters",
			"unsupported scheme (expected redis:// or unix://)", "out of memory",
			"bad percent-escape in the user name", "bad percent-escape in the password",
			"unterminated IPv6 address (missing ']')", "empty host",
			"bad character in IPv6 address", "bad IPv6 address",
			"bad character in host name", "bad port (expected 1..65535)",
			"bad database number", "unexpected text after the host, port or database",
			"unix:// needs an absolute socket path (unix:///path.sock)", "empty socket path",
			"unknown parameter (only ?db=N is accepted)",
		};
		int ok = strncmp(err, "socket path too long (max ", 26) == 0;
		for (size_t i = 0; !ok && i < sizeof(known) / sizeof(known[0]); i++)
			ok = strcmp(err, known[i]) == 0;
		if (!ok)
			finding("unexpected parse error text (may quote the input)", s, err);
		free(s);
		return 0;
	}

	char *red = redis_url_redact(&u);
	if (!red)
		abort();

	/* Built only from the parts that are not secret: the same URL without
	 * its password (plain) and without user and password (tail).  The
	 * redacted text must be exactly scheme + user + ":***@" + rest, so it
	 * can never hold the password (a plain substring search would flag
	 * passwords like "***@h" that overlap the marker and the host). */
	struct redis_url nopw = u, nouser = u;
	nopw.password = NULL;
	nouser.password = nouser.user = NULL;
	char *plain = redis_url_redact(&nopw);
	char *tail = redis_url_redact(&nouser);
	if (!plain || !tail)
		abort();
	if (u.password) {
		size_t sl = u.type == REDIS_URL_UNIX ? 7 : 8; /* "unix://" | "redis://" */
		size_t rest = strlen(tail) - sl;
		size_t ul = u.user ? strlen(plain) - sl - rest - 1 : 0;
		char *want = malloc(strlen(plain) + 8);
		if (!want)
			abort();
		memcpy(want, plain, sl + ul);
		strcpy(want + sl + ul, ":***@");
		strcat(want, tail + sl);
		if (strcmp(red, want) != 0) {
			fprintf(stderr, "expected: %s\n", want);
			finding("redacted URL is not scheme+user+\":***@\"+host (password may leak)", s, red);
		}
		free(want);
	} else if (strcmp(red, plain) != 0) {
		finding("redacted URL without a password differs from the plain form", s, red);
	}
	free(tail);

	/* The redacted form re-parses to the same target. */
	struct redis_url v;
	char err2[160];
	if (redis_url_parse(red, &v, err2, sizeof(err2)) != 0) {
		fprintf(stderr, "reparse error: %s\n", err2);
		finding("redacted URL does not parse again", s, red);
	}
	if (v.type != u.type || !streq(v.host, u.host) || v.port != u.port || v.db != u.db ||
	    !streq(v.path, u.path) || !streq(v.user, u.user) || !v.password != !u.password ||
	    (v.password && strcmp(v.password, "***") != 0))
		finding("redacted URL parses to another target", s, red);
	redis_url_free(&v);

	struct redis_url c;
	if (redis_url_copy(&c, &u) != 0)
		abort();
	if (c.type != u.type || !streq(c.host, u.host) || c.port != u.port || c.db != u.db ||
	    !streq(c.path, u.path) || !streq(c.user, u.user) || !streq(c.password, u.password))
		finding("redis_url_copy differs", s, red);
	redis_url_free(&c);

	free(plain);
	free(red);
	redis_url_free(&u);
	free(s);
	return 0;
}
