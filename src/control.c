/* control: the master's UNIX control socket (server side, driven by the
 * master's epoll loop, dispatch.h) and the client side used by
 * streamvisorctl.
 *
 * Server model.  Every client has a line buffer (at most 64 KiB a line)
 * and an output queue.  Nothing blocks: reads and writes are non-blocking,
 * replies are queued and flushed on EPOLLOUT, a client whose queue passes
 * CONTROL_MAX_OUTPUT is dropped.  Requests of one client are handled in
 * order; while a request of a client waits for its (deferred) reply, the
 * client's further requests are held and the socket is not read.
 *
 * Lifetime.  The client list holds one reference; the master takes more
 * with control_client_ref() for deferred replies.  Dropping a client only
 * marks it (alive = false); its fd is unregistered from the loop and
 * closed by the next sweep (control_tick), outside any callback. */
#include "control.h"
#include "dispatch.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define CONTROL_MAX_CLIENTS 64
#define CONTROL_MAX_OUTPUT (4 * 1024 * 1024)
#define CONTROL_BACKLOG 64
/* Reads per client per dispatch, so one client cannot starve the loop. */
#define CONTROL_READS_PER_DISPATCH 8
/* After EMFILE/ENFILE on accept, stop polling the listener this long. */
#define CONTROL_ACCEPT_PAUSE_MS 100
/* A client's reply line, client side (status of many workers, metrics). */
#define CONTROL_MAX_REPLY (64 * 1024 * 1024)

struct control_client {
	struct control *ctl;     /* NULL once the server is closed */
	struct control_client *next;
	int fd;
	struct dispatch_file file;
	int refs;
	bool alive;              /* connected and usable */
	bool awaiting;           /* a request is being answered (maybe later) */
	bool eof;                /* the peer closed its sending side */
	bool closing;            /* close once the output is flushed */
	bool answered;           /* set by control_reply during the handler */
	struct linebuf lb;
	char *out;
	size_t out_len, out_off, out_cap;
	int64_t partial_since;   /* monotonic ms an unfinished line started, 0 = none */
	int64_t closing_since;
	pid_t peer_pid;
	uid_t peer_uid;
	control_deliver deliver;  /* a relayed request: its one reply goes here */
	void *deliver_ctx;
};

struct control {
	int lfd;
	struct dispatch *d;      /* the master's loop, once attached */
	struct dispatch_file lfile;
	char *path;
	dev_t dev;
	ino_t ino;
	control_handler handler;
	void *ctx;
	uid_t euid;
	uid_t denied_uid;        /* the web child's user: never a client ((uid_t)-1: none) */
	bool have_gid;
	gid_t gid;
	uid_t *members;          /* sorted uids of control.group's listed members */
	size_t nmembers;
	struct control_client *clients;
	size_t nclients;
	int64_t accept_paused_until;
	int64_t now_ms;          /* the time of the current dispatch */
};

static const char *const err_denied = "{\"ok\":false,\"error\":\"permission denied\"}\n";

/* ---- helpers -------------------------------------------------------- */

/* Keep only valid UTF-8 (invalid bytes become '?'), so the text can be put
 * in a JSON string.  Returns a malloc'd copy or NULL. */
static char *clean_utf8(const char *s)
{
	size_t len = strlen(s);
	char *d = malloc(len + 1);
	if (!d)
		return NULL;
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t k = 0;
		unsigned char c = u[i];
		if (c < 0x80)
			k = 1;
		else if (c >= 0xc2 && c <= 0xdf)
			k = 2;
		else if (c >= 0xe0 && c <= 0xef)
			k = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 4;
		bool ok = k > 0 && i + k <= len;
		for (size_t j = 1; ok && j < k; j++)
			ok = (u[i + j] & 0xc0) == 0x80;
		if (ok && k == 3) {
			unsigned cp = ((c & 0x0fu) << 12) | ((u[i + 1] & 0x3fu) << 6);
			ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
		} else if (ok && k == 4) {
			unsigned cp = ((c & 0x07u) << 18) | ((u[i + 1] & 0x3fu) << 12);
			ok = cp >= 0x10000 && cp <= 0x10ffff;
		}
		if (ok) {
			memcpy(d + o, u + i, k);
			o += k;
			i += k;
		} else {
			d[o++] = '?';
			i++;
		}
	}
	d[o] = '\0';
	return d;
}

static json_t *error_reply(const char *msg)
{
	char *m = clean_utf8(msg);
	json_t *r = NULL;
	if (m)
		r = json_pack("{s:b,s:s}", "ok", 0, "error", m);
	free(m);
	return r;
}

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, len + 1);
	return 0;
}

/* ---- client lifetime ------------------------------------------------ */

static void client_free(struct control_client *c)
{
	if (c->deliver) {
		free(c);
		return;
	}
	dispatch_file_deinit(&c->file);
	if (c->fd >= 0)
		close(c->fd);
	linebuf_free(&c->lb);
	free(c->out);
	free(c);
}

/* Mark a client gone; the sweep closes its fd and unlinks it. */
static void client_drop(struct control_client *c, const char *why)
{
	if (!c->alive)
		return;
	c->alive = false;
	c->awaiting = false;
	if (why)
		log_kv(LOG_DEBUG, KV("why", why), "control client dropped (pid %ld uid %ld)",
		       (long)c->peer_pid, (long)c->peer_uid);
}

struct control_client *control_client_ref(struct control_client *c)
{
	if (c)
		c->refs++;
	return c;
}

void control_client_unref(struct control_client *c)
{
	if (!c)
		return;
	if (--c->refs > 0)
		return;
	client_free(c);
}

bool control_client_alive(const struct control_client *c)
{
	return c && c->alive && (c->ctl || c->deliver);
}

struct control_client *control_client_relay(control_deliver deliver, void *ctx)
{
	struct control_client *c = util_xcalloc(1, sizeof(*c));
	c->fd = -1;
	c->refs = 1;
	c->alive = true;
	c->awaiting = true;
	c->deliver = deliver;
	c->deliver_ctx = ctx;
	return c;
}

void control_client_relay_cancel(struct control_client *c)
{
	if (!c)
		return;
	c->alive = false;
	control_client_unref(c);
}

/* Close and release the clients that were dropped. */
static void sweep(struct control *ctl)
{
	struct control_client **pp = &ctl->clients;
	while (*pp) {
		struct control_client *c = *pp;
		if (c->alive) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		ctl->nclients--;
		dispatch_file_deinit(&c->file);
		if (c->fd >= 0) {
			close(c->fd);
			c->fd = -1;
		}
		linebuf_free(&c->lb);
		free(c->out);
		c->out = NULL;
		c->out_len = c->out_off = c->out_cap = 0;
		c->ctl = NULL;
		control_client_unref(c);
	}
}

/* ---- output --------------------------------------------------------- */

static bool has_output(const struct control_client *c) { return c->out_off < c->out_len; }

/* Write what the socket takes now.  Returns false if the client died. */
static bool flush_out(struct control_client *c)
{
	while (c->alive && has_output(c)) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			client_drop(c, strerror(errno));
			return false;
		}
		c->out_off += (size_t)n;
	}
	if (c->alive && !has_output(c)) {
		c->out_off = c->out_len = 0;
		/* Give back a large buffer once it is drained. */
		if (c->out_cap > 65536) {
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
	}
	return c->alive;
}

static void queue_out(struct control_client *c, const char *s, size_t len)
{
	if (!c->alive)
		return;
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	size_t pending = c->out_len - c->out_off;
	if (pending + len > CONTROL_MAX_OUTPUT) {
		log_kv(LOG_WARN, NULL, "control client (pid %ld) does not read its replies; dropped",
		       (long)c->peer_pid);
		client_drop(c, NULL);
		return;
	}
	if (c->out_cap - c->out_len < len) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, pending);
			c->out_len = pending;
			c->out_off = 0;
		}
		if (c->out_cap - c->out_len < len) {
			size_t ncap = c->out_cap ? c->out_cap : 4096;
			while (ncap - c->out_len < len)
				ncap *= 2;
			char *nb = realloc(c->out, ncap);
			if (!nb) {
				client_drop(c, "out of memory");
				return;
			}
			c->out = nb;
			c->out_cap = ncap;
		}
	}
	memcpy(c->out + c->out_len, s, len);
	c->out_len += len;
}

void control_reply(struct control_client *c, json_t *reply)
{
	if (!c) {
		json_decref(reply);
		return;
	}
	c->awaiting = false;
	c->answered = true;
	if (!control_client_alive(c)) {
		json_decref(reply);
		return;
	}
	if (c->deliver) {
		/* One reply per relayed request; c may be freed by deliver. */
		c->alive = false;
		c->deliver(c->deliver_ctx, reply);
		return;
	}
	char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (!s) {
		json_t *e = error_reply("internal error: cannot encode the reply");
		s = e ? json_dumps(e, JSON_COMPACT) : NULL;
		json_decref(e);
		if (!s) {
			client_drop(c, "out of memory");
			return;
		}
	}
	size_t len = strlen(s);
	if (len + 1 > CONTROL_MAX_OUTPUT) {
		/* A reply the queue cannot hold is an answer too: say so rather
		 * than drop the client (a reset tells the operator nothing).
		 * Commands whose data can be large page or chunk it instead. */
		log_kv(LOG_WARN, NULL, "a reply of %zu bytes to pid %ld is over %u bytes; refused", len,
		       (long)c->peer_pid, (unsigned)CONTROL_MAX_OUTPUT);
		free(s);
		json_t *e = json_pack("{s:b}", "ok", 0);
		json_object_set_new(e, "error", json_sprintf("the reply is too large (%zu bytes, at most %u)", len,
							     (unsigned)CONTROL_MAX_OUTPUT));
		s = json_dumps(e, JSON_COMPACT);
		json_decref(e);
		if (!s) {
			client_drop(c, "out of memory");
			return;
		}
		len = strlen(s);
	}
	s[len] = '\n'; /* replaces the NUL; the length is known */
	queue_out(c, s, len + 1);
	free(s);
	/* Flushed by control_dispatch on POLLOUT, which also resumes the
	 * client's held requests.  A held unfinished line starts its 5 s now. */
	if (c->partial_since && c->ctl && c->ctl->now_ms > c->partial_since)
		c->partial_since = c->ctl->now_ms;
}

void control_reply_error(struct control_client *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *r = error_reply(msg);
	if (!r && c) {
		/* Keep the protocol (one reply per request) even without memory. */
		c->awaiting = false;
		c->answered = true;
		client_drop(c, "out of memory");
		return;
	}
	control_reply(c, r);
}

/* ---- requests ------------------------------------------------------- */

static const char *check_request(json_t *req)
{
	if (!json_is_object(req))
		return "not a JSON object";
	json_t *cmd = json_object_get(req, "cmd");
	if (!json_is_string(cmd))
		return "\"cmd\" must be a string";
	json_t *args = json_object_get(req, "args");
	if (args && !json_is_null(args)) {
		if (!json_is_array(args))
			return "\"args\" must be an array of strings";
		size_t i;
		json_t *a;
		json_array_foreach(args, i, a) {
			if (!json_is_string(a))
				return "\"args\" must be an array of strings";
		}
	}
	return NULL;
}

static void handle_line(struct control_client *c, const char *line)
{
	struct control *ctl = c->ctl;
	size_t sp = strspn(line, " \t\r");
	if (!line[sp])
		return; /* blank line: nothing asked */
	json_error_t err;
	json_t *req = json_loads(line, JSON_REJECT_DUPLICATES, &err);
	const char *bad = req ? check_request(req) : NULL;
	if (!req || bad) {
		char msg[300];
		if (!req)
			snprintf(msg, sizeof(msg), "invalid JSON: %s", err.text);
		else
			snprintf(msg, sizeof(msg), "%s", bad);
		json_decref(req);
		control_reply_error(c, "bad request: %s", msg);
		return;
	}
	c->awaiting = true;
	c->answered = false;
	control_client_ref(c);
	int refs_before = c->refs;
	ctl->handler(ctl->ctx, c, req);
	/* Neither answered nor kept for later: answer for the handler, or the
	 * client would wait forever. */
	if (!c->answered && c->refs <= refs_before && c->alive) {
		const char *cmd = json_string_value(json_object_get(req, "cmd"));
		log_kv(LOG_WARN, KV("cmd", cmd), "control request left without a reply");
		control_reply_error(c, "internal error: no reply");
	}
	json_decref(req);
	control_client_unref(c);
}

/* Handle buffered complete lines while the client may be served. */
static void process_lines(struct control_client *c)
{
	while (c->alive && !c->awaiting && !c->closing) {
		char *line;
		int r = linebuf_next(&c->lb, &line);
		if (r == 0)
			break;
		if (r < 0) {
			control_reply_error(c, "request too large");
			c->closing = true;
			c->closing_since = c->ctl && c->ctl->now_ms ? c->ctl->now_ms : 1;
			break;
		}
		handle_line(c, line);
	}
	/* At EOF an unterminated last line is still a request. */
	if (c->alive && c->eof && !c->awaiting && !c->closing && !c->lb.discarding &&
	    c->lb.len > c->lb.off) {
		size_t n = c->lb.len - c->lb.off;
		if (n > CONTROL_MAX_REQUEST) {
			control_reply_error(c, "request too large");
		} else {
			char *line = c->lb.buf + c->lb.off;
			line[n] = '\0'; /* linebuf always keeps one spare byte */
			c->lb.off = c->lb.len;
			handle_line(c, line);
		}
	}
}

/* Track how long the client's unfinished line has been waiting. */
static void note_partial(struct control_client *c, const char *chunk, size_t n, int64_t now)
{
	size_t avail = c->lb.len - c->lb.off;
	const char *start = c->lb.buf + c->lb.off;
	bool partial;
	if (c->lb.discarding)
		partial = true;
	else if (avail == 0)
		partial = false;
	else
		partial = start[avail - 1] != '\n';
	if (!partial)
		c->partial_since = 0;
	else if (!c->partial_since || (chunk && memchr(chunk, '\n', n)))
		c->partial_since = now;
}

static void read_client(struct control_client *c, int64_t now)
{
	for (int i = 0; i < CONTROL_READS_PER_DISPATCH; i++) {
		if (!c->alive || c->awaiting || c->closing || c->eof)
			return;
		ssize_t n = linebuf_fill(&c->lb, c->fd);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			client_drop(c, strerror((int)-n));
			return;
		}
		if (n == 0) {
			c->eof = true;
			c->partial_since = 0;
			process_lines(c);
			return;
		}
		/* linebuf_fill may have moved the data; the new bytes end the buffer. */
		const char *chunk = c->lb.buf + (c->lb.len - (size_t)n);
		note_partial(c, chunk, (size_t)n, now);
		process_lines(c);
		if (c->alive)
			note_partial(c, NULL, 0, now);
	}
}

/* Close a client whose work is done (EOF seen or closing) once flushed. */
static void maybe_finish(struct control_client *c)
{
	if (!c->alive || c->awaiting || has_output(c))
		return;
	if (c->closing || (c->eof && c->lb.len == c->lb.off))
		client_drop(c, NULL);
}

/* ---- accepting ------------------------------------------------------ */

static void on_client(struct dispatch_file *f, uint32_t events);

static int uid_cmp(const void *a, const void *b)
{
	uid_t x = *(const uid_t *)a, y = *(const uid_t *)b;
	return x < y ? -1 : x > y;
}

void control_deny_uid(struct control *ctl, uid_t uid)
{
	if (ctl)
		ctl->denied_uid = uid;
}

int control_refresh_ids(struct control *ctl, const char *group)
{
	free(ctl->members);
	ctl->members = NULL;
	ctl->nmembers = 0;
	ctl->have_gid = false;
	if (!group || !*group)
		return 0;
	struct group *gr = getgrnam(group);
	if (!gr) {
		log_error("control.group \"%s\": no such group", group);
		return -ENOENT;
	}
	ctl->gid = gr->gr_gid;
	ctl->have_gid = true;
	size_t n = 0;
	while (gr->gr_mem[n])
		n++;
	ctl->members = util_xcalloc(n ? n : 1, sizeof(*ctl->members));
	/* getgrnam's buffer survives getpwnam (a buffer of its own). */
	for (size_t i = 0; i < n; i++) {
		struct passwd *pw = getpwnam(gr->gr_mem[i]);
		if (pw)
			ctl->members[ctl->nmembers++] = pw->pw_uid;
	}
	qsort(ctl->members, ctl->nmembers, sizeof(*ctl->members), uid_cmp);
	return 0;
}

/* Was gid among the peer's supplementary groups when it connected?  The
 * kernel recorded them with the socket (SO_PEERGROUPS, Linux 4.13): no
 * NSS, and no race with the peer's pid being reused. */
static bool peer_has_group(int fd, gid_t gid)
{
	gid_t small[64];
	gid_t *groups = small;
	socklen_t len = sizeof(small);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		if (errno != ERANGE || len > 65536 * sizeof(gid_t))
			return false;
		groups = malloc(len);
		if (!groups || getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
			free(groups);
			return false;
		}
	}
	bool found = false;
	for (size_t i = 0; i < len / sizeof(gid_t) && !found; i++)
		found = groups[i] == gid;
	if (groups != small)
		free(groups);
	return found;
}

/* Root, the daemon's uid, and control.group: the peer's gid or
 * supplementary groups at connect, or a member listed in the group.  Only compares
 * ids resolved by control_refresh_ids: accepting never waits on NSS. */
static bool peer_allowed(const struct control *ctl, int fd, const struct ucred *cr)
{
	if (cr->uid == 0 || cr->uid == ctl->euid)
		return true;
	if (cr->uid == ctl->denied_uid)
		return false;
	if (!ctl->have_gid)
		return false;
	if (cr->gid == ctl->gid)
		return true;
	if (bsearch(&cr->uid, ctl->members, ctl->nmembers, sizeof(*ctl->members), uid_cmp))
		return true;
	return peer_has_group(fd, ctl->gid);
}

static void refuse(int fd, const char *line)
{
	ssize_t n = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)n;
	close(fd);
}

static void accept_clients(struct control *ctl, int64_t now)
{
	for (int i = 0; i < 16; i++) {
		int fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				log_warn("control: cannot accept a client: %s", strerror(errno));
				ctl->accept_paused_until = now + CONTROL_ACCEPT_PAUSE_MS;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_warn("control: accept: %s", strerror(errno));
			}
			return;
		}
		struct ucred cr;
		socklen_t crlen = sizeof(cr);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0) {
			log_warn("control: SO_PEERCRED: %s", strerror(errno));
			refuse(fd, err_denied);
			continue;
		}
		if (!peer_allowed(ctl, fd, &cr)) {
			log_warn("control: refused a client: uid %ld (pid %ld) is not allowed",
				 (long)cr.uid, (long)cr.pid);
			refuse(fd, err_denied);
			continue;
		}
		if (ctl->nclients >= CONTROL_MAX_CLIENTS) {
			log_warn("control: too many clients (%d); refused pid %ld",
				 CONTROL_MAX_CLIENTS, (long)cr.pid);
			refuse(fd, "{\"ok\":false,\"error\":\"too many clients\"}\n");
			continue;
		}
		struct control_client *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->refs = 1;
		c->alive = true;
		c->peer_pid = cr.pid;
		c->peer_uid = cr.uid;
		/* A silent client is an unfinished request too: its 5 s start
		 * now, so 64 idle connections cannot lock operators out. */
		c->partial_since = now;
		linebuf_init(&c->lb, CONTROL_MAX_REQUEST);
		c->next = ctl->clients;
		ctl->clients = c;
		ctl->nclients++;
		if (ctl->d && dispatch_file_init(&c->file, ctl->d, fd, EPOLLIN, on_client, c) < 0)
			client_drop(c, "cannot watch it");
	}
}

/* ---- server API ----------------------------------------------------- */

static int mkdir_parents(const char *path, gid_t gid, bool have_gid)
{
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	struct stat st;
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	/* Create each missing component. */
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char save = *p;
		*p = '\0';
		if (mkdir(dir, 0750) == 0) {
			chmod(dir, 0750); /* whatever the umask */
			if (have_gid && chown(dir, (uid_t)-1, gid) < 0)
				log_warn("control: cannot give %s to the control group: %s", dir,
					 strerror(errno));
		} else if (errno != EEXIST) {
			int err = errno;
			*p = save;
			return -err;
		}
		*p = save;
		if (!save)
			break;
	}
	return 0;
}

/* Is a live daemon answering on path?  1 yes, 0 no (stale), -errno. */
static int probe_socket(const char *path)
{
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = r < 0 ? errno : 0;
	close(fd);
	if (r == 0 || err == EAGAIN || err == EINPROGRESS)
		return 1; /* accepted, or its backlog is full: alive */
	if (err == ECONNREFUSED || err == ENOENT)
		return 0;
	return -err;
}

int control_open(struct control **out, const char *path, mode_t mode, const char *group,
		 control_handler handler, void *ctx)
{
	*out = NULL;
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path ? path : "");
	if (r < 0) {
		log_error("control socket path \"%s\": %s", path ? path : "", strerror(-r));
		return r;
	}
	bool have_gid = false;
	gid_t gid = 0;
	if (group && *group) {
		struct group *gr = getgrnam(group);
		if (!gr) {
			log_error("control.group \"%s\": no such group", group);
			return -ENOENT;
		}
		gid = gr->gr_gid;
		have_gid = true;
	}
	r = mkdir_parents(path, gid, have_gid);
	if (r < 0) {
		log_error("cannot create the directory of %s: %s", path, strerror(-r));
		return r;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("%s exists and is not a socket; not replacing it", path);
			return -EEXIST;
		}
		r = probe_socket(path);
		if (r > 0) {
			log_error("another streamvisord is running on %s", path);
			return -EADDRINUSE;
		}
		if (r < 0) {
			log_error("cannot check the existing socket %s: %s", path, strerror(-r));
			return r;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			r = -errno;
			log_error("cannot remove the stale socket %s: %s", path, strerror(-r));
			return r;
		}
		log_info("removed the stale control socket %s", path);
	}

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		log_error("control socket: %s", strerror(-r));
		return r;
	}
	/* No window in which the socket is more open than asked. */
	mode_t old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = errno;
	umask(old);
	if (r < 0) {
		close(fd);
		if (err == EADDRINUSE)
			log_error("another streamvisord is running on %s", path);
		else
			log_error("cannot bind the control socket %s: %s", path, strerror(err));
		return -err;
	}
	const char *step = "listen";
	bool ok = listen(fd, CONTROL_BACKLOG) == 0;
	if (ok) {
		step = "chmod";
		ok = chmod(path, mode & 07777) == 0;
	}
	if (ok && have_gid) {
		step = "chown";
		ok = chown(path, (uid_t)-1, gid) == 0;
	}
	if (ok) {
		step = "stat";
		ok = lstat(path, &st) == 0;
	}
	if (!ok) {
		err = errno;
		log_error("control socket %s: %s: %s", path, step, strerror(err));
		close(fd);
		unlink(path);
		return -err;
	}
	struct control *ctl = calloc(1, sizeof(*ctl));
	char *p = strdup(path);
	if (!ctl || !p) {
		free(ctl);
		free(p);
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	ctl->lfd = fd;
	ctl->path = p;
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	ctl->handler = handler;
	ctl->ctx = ctx;
	ctl->euid = geteuid();
	ctl->denied_uid = (uid_t)-1;
	/* The peer check's ids, resolved now rather than per connection. */
	control_refresh_ids(ctl, group);
	*out = ctl;
	return 0;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	for (struct control_client *c = ctl->clients; c; c = c->next) {
		if (c->alive)
			flush_out(c); /* best effort: e.g. the reply to "shutdown" */
		c->alive = false;
	}
	sweep(ctl);
	dispatch_file_deinit(&ctl->lfile);
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	/* Remove the socket only if it is still the one we made. */
	struct stat st;
	if (ctl->path && lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
	    st.st_ino == ctl->ino)
		unlink(ctl->path);
	free(ctl->path);
	free(ctl->members);
	free(ctl);
}

/* One client's events, as the loop reported them. */
static void on_client(struct dispatch_file *f, uint32_t events)
{
	struct control_client *c = f->data;
	struct control *ctl = c->ctl;
	if (!c->alive || !ctl)
		return;
	int64_t now_ms = ctl->now_ms ? ctl->now_ms : util_mono_ms();
	control_client_ref(c);
	if (events & EPOLLOUT)
		flush_out(c);
	if (events & EPOLLERR)
		client_drop(c, "socket error");
	/* A reply that was sent lets held requests go on. */
	process_lines(c);
	if (events & (EPOLLIN | EPOLLHUP))
		read_client(c, now_ms);
	if ((events & EPOLLHUP) && c->alive) {
		/* The peer closed both directions: nobody reads replies. */
		if (c->awaiting)
			log_debug("control client (pid %ld) left before its reply", (long)c->peer_pid);
		client_drop(c, "hangup");
	}
	if (c->alive && has_output(c))
		flush_out(c);
	maybe_finish(c);
	control_client_unref(c);
}

static void on_listen(struct dispatch_file *f, uint32_t events)
{
	(void)events;
	struct control *ctl = f->data;
	accept_clients(ctl, ctl->now_ms ? ctl->now_ms : util_mono_ms());
}

size_t control_client_count(const struct control *ctl)
{
	return ctl ? ctl->nclients : 0;
}

int control_attach(struct control *ctl, struct dispatch *d)
{
	ctl->d = d;
	return dispatch_file_init(&ctl->lfile, d, ctl->lfd, EPOLLIN, on_listen, ctl);
}

/* What each client waits for now: requests while it may send one, room
 * for its reply while one is queued (hang-ups are always reported). */
static void watch_client(struct control_client *c)
{
	uint32_t ev = 0;
	if (!c->awaiting && !c->closing && !c->eof)
		ev |= EPOLLIN;
	if (has_output(c))
		ev |= EPOLLOUT;
	dispatch_file_select(&c->file, ev);
}

void control_tick(struct control *ctl, int64_t now_ms)
{
	if (!ctl)
		return;
	ctl->now_ms = now_ms;
	/* Clients that got a reply outside dispatch and have held requests. */
	for (struct control_client *c = ctl->clients; c; c = c->next) {
		if (c->alive && !c->awaiting && !c->closing && c->lb.off < c->lb.len) {
			control_client_ref(c);
			process_lines(c);
			if (c->alive && has_output(c))
				flush_out(c);
			maybe_finish(c);
			control_client_unref(c);
		}
	}
	sweep(ctl);
	for (struct control_client *c = ctl->clients; c; c = c->next)
		watch_client(c);
	bool paused = ctl->accept_paused_until && now_ms < ctl->accept_paused_until;
	if (!paused)
		ctl->accept_paused_until = 0;
	dispatch_file_select(&ctl->lfile, paused ? 0 : EPOLLIN);
}

int64_t control_timeouts(struct control *ctl, int64_t now_ms)
{
	if (!ctl)
		return -1;
	int64_t next = -1;
	for (struct control_client *c = ctl->clients; c; c = c->next) {
		if (!c->alive)
			continue;
		int64_t since = c->closing ? c->closing_since : c->awaiting ? 0 : c->partial_since;
		if (!since)
			continue;
		int64_t dl = since + CONTROL_CLIENT_TIMEOUT_MS;
		if (now_ms >= dl) {
			log_kv(LOG_INFO, NULL, "control client (pid %ld) dropped: %s",
			       (long)c->peer_pid,
			       c->closing ? "it does not read the reply" : "unfinished request after 5 s");
			client_drop(c, NULL);
			continue;
		}
		if (next < 0 || dl < next)
			next = dl;
	}
	if (ctl->accept_paused_until && (next < 0 || ctl->accept_paused_until < next))
		next = ctl->accept_paused_until;
	return next;
}

/* ---- client side ---------------------------------------------------- */

int control_connect(const char *path)
{
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path ? path : "");
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

/* Wait for events on fd until deadline (-1 = forever).  Returns >0 ready,
 * -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int to = -1;
		if (deadline >= 0) {
			int64_t left = deadline - util_mono_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			to = left > INT_MAX ? INT_MAX : (int)left;
		}
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, to);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r > 0)
			return 1;
	}
}

int control_call(int fd, json_t *req, json_t **reply, int timeout_ms)
{
	*reply = NULL;
	if (fd < 0 || !req)
		return -EINVAL;
	int64_t deadline = timeout_ms < 0 ? -1 : util_mono_ms() + timeout_ms;
	char *s = json_dumps(req, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	size_t len = strlen(s);
	s[len++] = '\n';
	size_t off = 0;
	int werr = 0;
	while (off < len) {
		ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0) {
				werr = r;
				break;
			}
			continue;
		}
		werr = -errno;
		break;
	}
	free(s);
	if (werr == -ETIMEDOUT)
		return werr;
	/* Even when the write failed, the daemon may have said why (e.g.
	 * "permission denied") before closing: read it. */
	char *buf = NULL;
	size_t blen = 0, bcap = 0;
	int ret = 0;
	for (;;) {
		if (bcap - blen < 4096) {
			size_t ncap = bcap ? bcap * 2 : 8192;
			if (ncap > CONTROL_MAX_REPLY + 8192) {
				ret = -EMSGSIZE;
				break;
			}
			char *nb = realloc(buf, ncap);
			if (!nb) {
				ret = -ENOMEM;
				break;
			}
			buf = nb;
			bcap = ncap;
		}
		ssize_t n = recv(fd, buf + blen, bcap - blen - 1, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int r = wait_fd(fd, POLLIN, deadline);
				if (r < 0) {
					ret = r;
					break;
				}
				continue;
			}
			ret = werr ? werr : -errno;
			break;
		}
		if (n == 0) {
			ret = werr ? werr : -ECONNRESET;
			break;
		}
		char *nl = memchr(buf + blen, '\n', (size_t)n);
		blen += (size_t)n;
		if (nl) {
			*nl = '\0';
			json_t *j = json_loads(buf, 0, NULL);
			if (!json_is_object(j)) {
				json_decref(j);
				ret = -EBADMSG;
			} else {
				*reply = j;
			}
			break;
		}
	}
	free(buf);
	return ret;
}
