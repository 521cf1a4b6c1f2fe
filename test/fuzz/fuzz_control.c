/* libFuzzer harness: the control socket server (src/control.c) driven for
 * real: request line parsing (linebuf, json_loads, check_request,
 * clean_utf8 on error texts), held requests behind deferred replies, EOF
 * handling, reply queueing and client teardown.
 *
 * Once per process: control_open() a socket in a private temporary
 * directory, with a handler that answers {"ok":true} -- except for
 * {"cmd":"defer"}, which it keeps (control_client_ref) and answers a few
 * dispatch rounds later, as the master does for start/stop/restart.
 *
 * Per input: control_connect(), write the input (plus a newline, unless the
 * input ends with byte 0x04, which is then dropped: the last line stays
 * unterminated), shut down the sending side, then run bounded rounds of
 * control_tick / dispatch_run(0) while reading the replies
 * (non-blocking); finally close the client and dispatch until the server
 * has released it.
 *
 * Checks (abort = finding):
 *   - every reply line is a JSON object with a boolean "ok", and "error"
 *     (a string) when ok is false;
 *   - one reply per request: the number of replies equals the number of
 *     non-blank request lines (a line is what the server sees: cut at its
 *     first NUL byte; blank = only spaces, tabs, CRs), when no line is over
 *     the 64 KiB limit; with an overlong line, the last reply must be the
 *     "request too large" error;
 *   - the server holds no client after teardown (no fd or memory leak). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "dispatch.h"
#include "fuzz_tmp.h"
#include "log.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "finding.h"

static char dir[64];
static char sock[128];
static struct control *ctl;
static struct dispatch *loop;

#define MAX_DEFERRED 64
static struct control_client *deferred[MAX_DEFERRED];
static int deferred_age[MAX_DEFERRED];
static size_t ndeferred;
static size_t handled;

static void handler(void *ctx, struct control_client *c, json_t *req)
{
	(void)ctx;
	handled++;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	if (cmd && strcmp(cmd, "defer") == 0 && ndeferred < MAX_DEFERRED) {
		deferred_age[ndeferred] = 0;
		deferred[ndeferred++] = control_client_ref(c);
		return;
	}
	if (cmd && strcmp(cmd, "error") == 0) {
		/* An error text built from the request: clean_utf8 must make any
		 * bytes a valid JSON string. */
		json_t *a = json_array_get(json_object_get(req, "args"), 0);
		control_reply_error(c, "bad: %s", json_string_value(a) ? json_string_value(a) : "?");
		return;
	}
	control_reply(c, json_pack("{s:b}", "ok", 1));
}

/* Answer deferred requests that waited long enough (or all). */
static void answer_deferred(bool all)
{
	size_t j = 0;
	for (size_t i = 0; i < ndeferred; i++) {
		if (all || ++deferred_age[i] >= 2) {
			if (control_client_alive(deferred[i]))
				control_reply(deferred[i], json_pack("{s:b,s:s}", "ok", 1, "deferred", "yes"));
			else
				control_reply(deferred[i], json_pack("{s:b}", "ok", 1)); /* a no-op */
			control_client_unref(deferred[i]);
		} else {
			deferred[j] = deferred[i];
			deferred_age[j] = deferred_age[i];
			j++;
		}
	}
	ndeferred = j;
}

static void cleanup(void)
{
	answer_deferred(true);
	control_close(ctl);
	ctl = NULL;
	dispatch_free(loop);
	loop = NULL;
	unlink(sock);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmp_dir(dir, sizeof(dir), "control", false);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	log_set_level(LOG_ERROR);
	if (dispatch_new(&loop) != 0 || control_open(&ctl, sock, 0600, NULL, handler, NULL) != 0 ||
	    control_attach(ctl, loop) != 0) {
		fprintf(stderr, "control_open failed\n");
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

/* One dispatch round; returns the number of fds with events. */
static int round_once(int64_t now)
{
	control_tick(ctl, now);
	int r = dispatch_run(loop, 0);
	if (r < 0)
		abort();
	control_timeouts(ctl, now);
	return r;
}

struct replies {
	char *buf;
	size_t len, cap;
	bool eof;
};

static void read_replies(int fd, struct replies *rp)
{
	for (;;) {
		if (rp->cap - rp->len < 4096) {
			size_t nc = rp->cap ? rp->cap * 2 : 8192;
			char *b = realloc(rp->buf, nc);
			if (!b)
				abort();
			rp->buf = b;
			rp->cap = nc;
		}
		ssize_t n = recv(fd, rp->buf + rp->len, rp->cap - rp->len - 1, MSG_DONTWAIT);
		if (n > 0) {
			rp->len += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			rp->eof = true;
		return;
	}
}

/* What the server should answer: non-blank lines (as C strings) and
 * whether a line is over the limit. */
static void expect(const uint8_t *d, size_t n, bool terminated, size_t *requests, bool *overlong)
{
	*requests = 0;
	*overlong = false;
	size_t i = 0;
	while (i < n) {
		const uint8_t *nl = memchr(d + i, '\n', n - i);
		size_t len = nl ? (size_t)(nl - (d + i)) : n - i;
		if (!nl && !terminated && len == 0)
			break;
		if (len > CONTROL_MAX_REQUEST) {
			*overlong = true;
			return;
		}
		const uint8_t *z = memchr(d + i, '\0', len);
		size_t cl = z ? (size_t)(z - (d + i)) : len;
		bool blank = true;
		for (size_t k = 0; k < cl && blank; k++)
			blank = d[i + k] == ' ' || d[i + k] == '\t' || d[i + k] == '\r';
		if (!blank)
			(*requests)++;
		i += len + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool terminated = !(size > 0 && data[size - 1] == 0x04);
	size_t plen = terminated ? size : size - 1;
	uint8_t *msg = malloc(plen + 1);
	if (!msg)
		abort();
	memcpy(msg, data, plen);
	size_t mlen = plen;
	if (terminated)
		msg[mlen++] = '\n';

	int fd = control_connect(sock);
	if (fd < 0)
		FINDING("control_connect: %s", strerror(-fd));
	if (util_set_nonblock(fd) < 0)
		abort();
	size_t before = handled;
	struct replies rp = {0};
	int64_t now = util_mono_ms();
	size_t off = 0;
	int idle = 0;
	bool shut = false;
	size_t want;
	bool overlong;
	expect(msg, mlen, terminated, &want, &overlong);
	/* A held ("defer") request takes a few rounds before the next line
	 * is read: the bound grows with the requests, or a long pipeline of
	 * them would be cut short and counted as missing replies. */
	size_t max_rounds = 400 + 4 * want;
	for (size_t round = 0; round < max_rounds && idle < 6; round++) {
		bool progress = false;
		if (off < mlen) {
			ssize_t w = send(fd, msg + off, mlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0) {
				off += (size_t)w;
				progress = true;
			} else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				off = mlen; /* the server closed: stop writing */
			}
		}
		if (off == mlen && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (round_once(now) > 0)
			progress = true;
		answer_deferred(false);
		size_t had = rp.len;
		read_replies(fd, &rp);
		if (rp.len != had)
			progress = true;
		if (rp.eof && off == mlen)
			break;
		idle = progress || ndeferred ? 0 : idle + 1;
	}
	answer_deferred(true);
	for (int i = 0; i < 4; i++) {
		round_once(now);
		read_replies(fd, &rp);
	}

	/* Check the replies. */
	size_t nreplies = 0;
	const char *last = NULL;
	for (size_t i = 0; i < rp.len;) {
		char *nl = memchr(rp.buf + i, '\n', rp.len - i);
		if (!nl)
			FINDING("reply without a newline");
		*nl = '\0';
		json_error_t je;
		json_t *r = json_loads(rp.buf + i, 0, &je);
		json_t *ok = json_object_get(r, "ok");
		if (!json_is_object(r) || !json_is_boolean(ok) ||
		    (json_is_false(ok) && !json_is_string(json_object_get(r, "error"))))
			FINDING("bad reply line: %s", rp.buf + i);
		last = rp.buf + i;
		json_decref(r);
		nreplies++;
		i = (size_t)(nl - rp.buf) + 1;
	}
	if (overlong) {
		if (!last || !strstr(last, "request too large"))
			FINDING("overlong request not answered with \"request too large\" (last reply: %s)",
				last ? last : "none");
	} else if (nreplies != want) {
		FINDING("%zu replies to %zu requests (handler called %zu times)", nreplies, want, handled - before);
	}

	/* Teardown: the server must drop the client. */
	close(fd);
	for (int i = 0; i < 8; i++)
		round_once(now);
	control_tick(ctl, now);
	size_t n = control_client_count(ctl);
	if (n != 0)
		FINDING("%zu clients still held after the peer closed", n);
	free(rp.buf);
	free(msg);
	return 0;
}
