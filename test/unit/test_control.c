/* Unit tests for control.c: the server and the client side in one process.
 * The test drives control_pollfds/control_dispatch with poll() itself, as
 * the master's loop does; control_call (blocking) runs in a forked child. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "control.h"
#include "dispatch.h"
#include "log.h"
#include "util.h"

static char tmpdir[64];
static char sockpath[100];

/* What the handler saw and holds. */
struct hctx {
	int calls;
	char last_cmd[64];
	struct control_client *held;
};

/* "echo": answer at once with the request; "defer": keep the client;
 * "noreply": neither (control.c must answer for us). */
static void handler(void *ctx, struct control_client *c, json_t *req)
{
	struct hctx *h = ctx;
	h->calls++;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	snprintf(h->last_cmd, sizeof(h->last_cmd), "%s", cmd);
	if (!strcmp(cmd, "defer")) {
		h->held = control_client_ref(c);
	} else if (!strcmp(cmd, "noreply")) {
		/* nothing */
	} else if (!strcmp(cmd, "fail")) {
		control_reply_error(c, "no such worker: %s", "x");
	} else {
		json_t *args = json_object_get(req, "args");
		control_reply(c, json_pack("{s:b,s:s,s:O?}", "ok", 1, "cmd", cmd, "args", args));
	}
}

/* The master's loop (each test's server is attached to it). */
static struct dispatch *loop;

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	log_open("test", LOG_ERROR, LOG_FMT_LOGFMT, NULL);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sv-test-ctl.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(sockpath, sizeof(sockpath), "%s/run/sv/ctl.sock", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char p[160];
	unlink(sockpath);
	snprintf(p, sizeof(p), "%s/run/sv", tmpdir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/run", tmpdir);
	rmdir(p);
	rmdir(tmpdir);
	dispatch_free(loop);
	loop = NULL;
	log_close();
	return 0;
}


/* One turn of the master's loop, waiting at most wait_ms. */
static void pump_once(struct control *ctl, int wait_ms)
{
	control_tick(ctl, util_mono_ms());
	int r = dispatch_run(loop, wait_ms);
	assert_true(r >= 0);
	control_timeouts(ctl, util_mono_ms());
}

static void pump(struct control *ctl, int ms)
{
	int64_t end = util_mono_ms() + ms;
	while (util_mono_ms() < end)
		pump_once(ctl, 5);
}

static struct control *open_server(struct hctx *h)
{
	struct control *ctl = NULL;
	memset(h, 0, sizeof(*h));
	assert_int_equal(control_open(&ctl, sockpath, 0660, NULL, handler, h), 0);
	assert_non_null(ctl);
	if (!loop)
		assert_int_equal(dispatch_new(&loop), 0);
	assert_int_equal(control_attach(ctl, loop), 0);
	return ctl;
}

static int connect_client(struct control *ctl)
{
	int fd = control_connect(sockpath);
	assert_true(fd >= 0);
	assert_int_equal(util_set_nonblock(fd), 0);
	pump(ctl, 10);
	return fd;
}

static void send_str(int fd, const char *s)
{
	assert_int_equal(util_write_all(fd, s, strlen(s)), 0);
}

/* Read one reply line while driving the server; NULL at EOF or timeout. */
static json_t *read_reply(struct control *ctl, int fd, int timeout_ms, bool *eof)
{
	static char buf[1 << 16];
	static size_t len;
	static int buf_fd = -1;
	if (buf_fd != fd) {
		buf_fd = fd;
		len = 0;
	}
	if (eof)
		*eof = false;
	int64_t end = util_mono_ms() + timeout_ms;
	for (;;) {
		char *nl = memchr(buf, '\n', len);
		if (nl) {
			*nl = '\0';
			json_t *j = json_loads(buf, 0, NULL);
			size_t used = (size_t)(nl - buf) + 1;
			memmove(buf, buf + used, len - used);
			len -= used;
			assert_non_null(j);
			return j;
		}
		if (util_mono_ms() >= end)
			return NULL;
		pump_once(ctl, 5);
		ssize_t n = recv(fd, buf + len, sizeof(buf) - len, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
			if (eof)
				*eof = true;
			return NULL;
		}
		if (n > 0)
			len += (size_t)n;
	}
}

static bool wait_eof(struct control *ctl, int fd, int timeout_ms)
{
	bool eof = false;
	json_t *j = read_reply(ctl, fd, timeout_ms, &eof);
	json_decref(j);
	return !j && eof;
}

static const char *jstr(json_t *j, const char *k) { return json_string_value(json_object_get(j, k)); }

static void test_good_request(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	struct stat st;
	assert_int_equal(stat(sockpath, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run/sv", tmpdir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);

	int fd = connect_client(ctl);
	send_str(fd, "{\"cmd\":\"status\",\"args\":[\"persist\"]}\n");
	json_t *r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_string_equal(jstr(r, "cmd"), "status");
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "args"), 0)),
			    "persist");
	assert_int_equal(h.calls, 1);
	json_decref(r);

	/* Several requests in one write are answered in order. */
	send_str(fd, "{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}\r\n{\"cmd\":\"fail\"}\n");
	r = read_reply(ctl, fd, 2000, NULL);
	assert_string_equal(jstr(r, "cmd"), "a");
	json_decref(r);
	r = read_reply(ctl, fd, 2000, NULL);
	assert_string_equal(jstr(r, "cmd"), "b");
	json_decref(r);
	r = read_reply(ctl, fd, 2000, NULL);
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_string_equal(jstr(r, "error"), "no such worker: x");
	json_decref(r);
	close(fd);
	pump(ctl, 20);
	control_close(ctl);
	assert_int_equal(access(sockpath, F_OK), -1); /* removed on close */
}

static void test_garbage(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	static const char *const bad[] = {
		"garbage\n", "[1,2]\n", "{\"cmd\":5}\n", "{\"args\":[]}\n",
		"{\"cmd\":\"x\",\"args\":\"no\"}\n", "{\"cmd\":\"x\",\"args\":[1]}\n",
		"{\"cmd\":\"\xff\"}\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		send_str(fd, bad[i]);
		json_t *r = read_reply(ctl, fd, 2000, NULL);
		assert_non_null(r);
		assert_true(json_is_false(json_object_get(r, "ok")));
		assert_memory_equal(jstr(r, "error"), "bad request: ", 13);
		json_decref(r);
	}
	assert_int_equal(h.calls, 0);
	/* Still connected, and a good request works. */
	send_str(fd, "\n{\"cmd\":\"status\"}\n");
	json_t *r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_int_equal(h.calls, 1);
	json_decref(r);
	close(fd);
	control_close(ctl);
}

static void test_too_large(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	size_t big = 1 << 20;
	char *line = malloc(big + 1);
	assert_non_null(line);
	memset(line, 'a', big);
	line[big] = '\n';
	size_t off = 0;
	json_t *r = NULL;
	bool eof = false;
	int64_t end = util_mono_ms() + 5000;
	/* Write as the socket takes it, while the server runs. */
	while (!r && !eof && util_mono_ms() < end) {
		if (off <= big) {
			ssize_t n = send(fd, line + off, big + 1 - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				off = big + 1; /* the server closed: stop writing */
		}
		r = read_reply(ctl, fd, 10, &eof);
	}
	assert_non_null(r);
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_string_equal(jstr(r, "error"), "request too large");
	json_decref(r);
	assert_true(wait_eof(ctl, fd, 2000));
	assert_int_equal(h.calls, 0);
	free(line);
	close(fd);
	control_close(ctl);
}

static void test_deferred(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	/* The second request is held until the first is answered. */
	send_str(fd, "{\"cmd\":\"defer\"}\n{\"cmd\":\"after\"}\n");
	bool eof;
	json_t *r = read_reply(ctl, fd, 100, &eof);
	assert_null(r);
	assert_false(eof);
	assert_int_equal(h.calls, 1);
	assert_non_null(h.held);
	assert_true(control_client_alive(h.held));
	send_str(fd, "{\"cmd\":\"later\"}\n");
	pump(ctl, 50);
	assert_int_equal(h.calls, 1);

	control_reply(h.held, json_pack("{s:b,s:s}", "ok", 1, "cmd", "deferred"));
	control_client_unref(h.held);
	h.held = NULL;
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_string_equal(jstr(r, "cmd"), "deferred");
	json_decref(r);
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_string_equal(jstr(r, "cmd"), "after");
	json_decref(r);
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_string_equal(jstr(r, "cmd"), "later");
	json_decref(r);
	assert_int_equal(h.calls, 3);

	/* A handler that neither answers nor keeps the client: control.c answers. */
	send_str(fd, "{\"cmd\":\"noreply\"}\n");
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_true(json_is_false(json_object_get(r, "ok")));
	json_decref(r);
	close(fd);
	control_close(ctl);
}

static void test_deferred_disconnect(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	send_str(fd, "{\"cmd\":\"defer\"}\n");
	pump(ctl, 30);
	assert_non_null(h.held);
	close(fd);
	pump(ctl, 30);
	assert_false(control_client_alive(h.held));
	control_reply(h.held, json_pack("{s:b}", "ok", 1)); /* just freed */
	control_reply_error(h.held, "too late");
	control_client_unref(h.held);
	h.held = NULL;

	/* Held across control_close: freed by the last unref. */
	fd = connect_client(ctl);
	send_str(fd, "{\"cmd\":\"defer\"}\n");
	pump(ctl, 30);
	assert_non_null(h.held);
	control_close(ctl);
	assert_false(control_client_alive(h.held));
	control_reply(h.held, json_pack("{s:b}", "ok", 1));
	control_client_unref(h.held);
	assert_true(wait_eof(NULL, fd, 500));
	close(fd);
}

static void test_half_close(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	/* An unterminated last line before EOF is still a request. */
	send_str(fd, "{\"cmd\":\"one\"}\n{\"cmd\":\"two\"}");
	shutdown(fd, SHUT_WR);
	json_t *r = read_reply(ctl, fd, 2000, NULL);
	assert_string_equal(jstr(r, "cmd"), "one");
	json_decref(r);
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_string_equal(jstr(r, "cmd"), "two");
	json_decref(r);
	assert_true(wait_eof(ctl, fd, 2000));
	close(fd);

	/* Deferred, then half-closed: the reply still arrives. */
	fd = connect_client(ctl);
	send_str(fd, "{\"cmd\":\"defer\"}\n");
	pump(ctl, 20);
	shutdown(fd, SHUT_WR);
	pump(ctl, 20);
	assert_true(control_client_alive(h.held));
	control_reply(h.held, json_pack("{s:b,s:s}", "ok", 1, "cmd", "done"));
	control_client_unref(h.held);
	h.held = NULL;
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_string_equal(jstr(r, "cmd"), "done");
	json_decref(r);
	assert_true(wait_eof(ctl, fd, 2000));
	close(fd);
	control_close(ctl);
}

static void test_timeout(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	int idle = connect_client(ctl);
	send_str(fd, "{\"cmd\":");
	pump(ctl, 30);
	int64_t dl = control_timeouts(ctl, util_mono_ms());
	assert_true(dl > util_mono_ms());
	assert_true(dl <= util_mono_ms() + CONTROL_CLIENT_TIMEOUT_MS);
	/* Six seconds later: the unfinished request and the client that
	 * never said anything are both dropped. */
	control_timeouts(ctl, util_mono_ms() + CONTROL_CLIENT_TIMEOUT_MS + 1000);
	assert_true(wait_eof(ctl, fd, 1000));
	assert_true(wait_eof(ctl, idle, 1000));
	/* A client idle after a finished request stays. */
	int done = connect_client(ctl);
	send_str(done, "{\"cmd\":\"x\"}\n");
	json_t *r = read_reply(ctl, done, 2000, NULL);
	assert_non_null(r);
	json_decref(r);
	assert_int_equal(control_timeouts(ctl, util_mono_ms()), -1);
	close(fd);
	close(idle);
	close(done);
	control_close(ctl);
}

static void test_max_clients(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	int fds[65];
	for (int i = 0; i < 65; i++) {
		fds[i] = control_connect(sockpath);
		assert_true(fds[i] >= 0);
		util_set_nonblock(fds[i]);
		pump(ctl, 2);
	}
	pump(ctl, 20);
	bool eof;
	json_t *r = read_reply(ctl, fds[64], 1000, &eof);
	assert_non_null(r);
	assert_string_equal(jstr(r, "error"), "too many clients");
	json_decref(r);
	assert_true(wait_eof(ctl, fds[64], 1000));
	/* The others still work. */
	send_str(fds[0], "{\"cmd\":\"x\"}\n");
	r = read_reply(ctl, fds[0], 2000, NULL);
	assert_non_null(r);
	json_decref(r);
	for (int i = 0; i < 65; i++)
		close(fds[i]);
	pump(ctl, 20);
	control_close(ctl);
}

static void test_stale_and_live_socket(void **state)
{
	(void)state;
	/* A stale socket (nobody listening) is replaced. */
	mkdir(tmpdir, 0700);
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	mkdir(dir, 0750);
	snprintf(dir, sizeof(dir), "%s/run/sv", tmpdir);
	mkdir(dir, 0750);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sockpath);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	assert_int_equal(control_connect(sockpath), -ECONNREFUSED);

	struct hctx h;
	struct control *ctl = open_server(&h);
	int fd = connect_client(ctl);
	send_str(fd, "{\"cmd\":\"x\"}\n");
	json_t *r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	json_decref(r);

	/* A live one is not. */
	struct control *second = NULL;
	struct hctx h2 = {0};
	assert_int_equal(control_open(&second, sockpath, 0660, NULL, handler, &h2), -EADDRINUSE);
	assert_null(second);
	/* ... and the first still owns its socket. */
	send_str(fd, "{\"cmd\":\"y\"}\n");
	r = read_reply(ctl, fd, 2000, NULL);
	assert_non_null(r);
	assert_string_equal(jstr(r, "cmd"), "y");
	json_decref(r);
	close(fd);
	control_close(ctl);

	/* Not a socket: never removed. */
	int f = open(sockpath, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(f >= 0);
	close(f);
	assert_int_equal(control_open(&second, sockpath, 0660, NULL, handler, &h2), -EEXIST);
	assert_int_equal(access(sockpath, F_OK), 0);
	unlink(sockpath);

	/* Unknown group. */
	assert_int_equal(control_open(&second, sockpath, 0660, "no-such-group-sv", handler, &h2),
			 -ENOENT);
	assert_int_equal(control_connect("/nonexistent/sv.sock"), -ENOENT);
}

/* control_call in a child, against the server driven by the parent. */
static void test_control_call(void **state)
{
	(void)state;
	struct hctx h;
	struct control *ctl = open_server(&h);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = control_connect(sockpath);
		if (fd < 0)
			_exit(10);
		json_t *req = json_pack("{s:s,s:[s]}", "cmd", "status", "args", "all");
		json_t *reply = NULL;
		int r = control_call(fd, req, &reply, 5000);
		json_decref(req);
		if (r < 0 || !json_is_true(json_object_get(reply, "ok")))
			_exit(11);
		json_decref(reply);
		/* A second call on the same connection. */
		req = json_pack("{s:s}", "cmd", "fail");
		r = control_call(fd, req, &reply, 5000);
		json_decref(req);
		if (r < 0 || !json_is_false(json_object_get(reply, "ok")))
			_exit(12);
		json_decref(reply);
		/* A deferred reply that never comes: the timeout. */
		req = json_pack("{s:s}", "cmd", "defer");
		r = control_call(fd, req, &reply, 200);
		json_decref(req);
		if (r != -ETIMEDOUT || reply)
			_exit(13);
		close(fd);
		_exit(0);
	}
	int status = -1;
	int64_t end = util_mono_ms() + 5000;
	while (util_mono_ms() < end) {
		pump_once(ctl, 5);
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(h.calls, 3);
	pump(ctl, 20);
	assert_false(control_client_alive(h.held));
	control_client_unref(h.held);
	control_close(ctl);
}

/* A peer that is neither root, our uid nor in the group is refused. */
static void test_refused_peer(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct hctx h;
	struct control *ctl = open_server(&h);
	chmod(sockpath, 0666);
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run/sv", tmpdir);
	chmod(tmpdir, 0755);
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	chmod(dir, 0755);
	snprintf(dir, sizeof(dir), "%s/run/sv", tmpdir);
	chmod(dir, 0755);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(20);
		int fd = control_connect(sockpath);
		if (fd < 0)
			_exit(21);
		json_t *req = json_pack("{s:s}", "cmd", "status");
		json_t *reply = NULL;
		int r = control_call(fd, req, &reply, 5000);
		json_decref(req);
		if (r < 0)
			_exit(22);
		const char *e = json_string_value(json_object_get(reply, "error"));
		_exit(e && !strcmp(e, "permission denied") ? 0 : 23);
	}
	int status = -1;
	int64_t end = util_mono_ms() + 5000;
	while (util_mono_ms() < end) {
		pump_once(ctl, 5);
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(h.calls, 0);
	control_close(ctl);
	chmod(tmpdir, 0700);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_request),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_deferred),
		cmocka_unit_test(test_deferred_disconnect),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_max_clients),
		cmocka_unit_test(test_stale_and_live_socket),
		cmocka_unit_test(test_control_call),
		cmocka_unit_test(test_refused_peer),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
