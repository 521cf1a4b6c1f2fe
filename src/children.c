/* children: forking, channels, reaping and orphan killing (children.h). */
#include "children.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define CHILD_ERR_LINE_MAX 8192
/* stderr reads per wake-up: a child flooding its stderr cannot keep the
 * master from its other children. */
#define CHILD_ERR_READS 16

struct child {
	struct children *ch;
	struct child *next, *prev;
	pid_t pid;
	char *name, *log_proc;
	const struct child_ops *ops;
	void *owner;
	int chan_fd, err_fd;
	struct dispatch_file chan_file, err_file;
	struct chan_reader rd;
	struct linebuf err_lb;
	struct outq q;
	bool violated;
	bool reaped;           /* waited for: its pid may belong to anyone now */
};

struct children {
	struct dispatch *d;
	struct child *head;
	size_t n;
	struct rlimit nofile;
	children_setup_fn setup;
	void *setup_ctx;
	pid_t self;
};

int children_new(struct children **out, struct dispatch *d, const struct rlimit *child_nofile,
		 children_setup_fn setup, void *setup_ctx)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		int e = errno;
		log_error("%s: PR_SET_CHILD_SUBREAPER: %s", __func__, strerror(e));
		return -e;
	}
	struct children *ch = util_xcalloc(1, sizeof(*ch));
	ch->d = d;
	ch->nofile = *child_nofile;
	ch->setup = setup;
	ch->setup_ctx = setup_ctx;
	ch->self = getpid();
	*out = ch;
	return 0;
}

size_t children_count(const struct children *ch)
{
	return ch ? ch->n : 0;
}

pid_t child_pid(const struct child *c)
{
	return c ? c->pid : 0;
}

/* ---------- reading ---------- */

/* Relay one line; an error record's message goes to the owner too (the
 * cause a FATAL worker's status shows). */
static void relay_line(struct child *c, const char *line)
{
	char msg[CHILD_ERROR_MAX];
	msg[0] = '\0';
	if (log_relay(line, c->log_proc, (int)c->pid, msg, sizeof(msg)) == LOG_ERROR && c->ops->error_line)
		c->ops->error_line(c->owner, msg);
}

static void relay_stderr(struct child *c, bool final)
{
	if (c->err_fd < 0)
		return;
	for (int i = 0; i < CHILD_ERR_READS || final; i++) {
		ssize_t n = linebuf_fill(&c->err_lb, c->err_fd);
		char *line;
		int r;
		while ((r = linebuf_next(&c->err_lb, &line)) != 0)
			if (r > 0 && line[0])
				relay_line(c, line);
		if (n > 0)
			continue;
		if ((n == 0 || final) && c->err_lb.len > c->err_lb.off) {
			/* A partial last line still deserves the log. */
			c->err_lb.buf[c->err_lb.len] = '\0';
			relay_line(c, c->err_lb.buf + c->err_lb.off);
			c->err_lb.off = c->err_lb.len;
		}
		if (n == 0 || (n < 0 && n != -EAGAIN)) {
			dispatch_file_deinit(&c->err_file);
			close(c->err_fd);
			c->err_fd = -1;
		}
		return;
	}
}

static void close_chan(struct child *c)
{
	if (c->chan_fd < 0)
		return;
	dispatch_file_deinit(&c->chan_file);
	close(c->chan_fd);
	c->chan_fd = -1;
}

/* Printable excerpt of what a violator sent, for the one log line. */
static void excerpt(const struct chan_reader *rd, char *buf, size_t len)
{
	size_t o = 0, avail = rd->len - rd->off;
	for (size_t i = 0; i < avail && i < 32 && o + 5 < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%02x", rd->buf[rd->off + i]);
	buf[o] = '\0';
}

void child_violation(struct child *c, const char *why)
{
	if (c->violated)
		return;
	c->violated = true;
	char bytes[80];
	excerpt(&c->rd, bytes, sizeof(bytes));
	log_error("%s (pid %d): bad channel message: %s%s%s; restarting it", c->name, (int)c->pid, why,
		  bytes[0] ? "; bytes " : "", bytes);
	close_chan(c);
	if (c->pid > 0 && !c->reaped)
		kill(c->pid, SIGKILL);
}

static void read_messages(struct child *c)
{
	struct chan_msg m;
	int r;
	while (!c->violated && (r = chan_next(&c->rd, &m)) != 0) {
		if (r < 0) {
			child_violation(c, r == -EPROTO ? c->rd.why : strerror(-r));
			return;
		}
		char why[160] = "";
		if (c->ops->message(c->owner, &m, why, sizeof(why)) < 0) {
			child_violation(c, why[0] ? why : "impossible message");
			return;
		}
	}
}

/* Read and handle what the channel holds now; returns true while more
 * may be waiting (a fill stops at a bounded amount). */
static bool drain_chan(struct child *c)
{
	if (c->chan_fd < 0)
		return false;
	ssize_t n = chan_reader_fill(&c->rd, c->chan_fd);
	read_messages(c);
	if (c->violated)
		return false;
	if (n == 0 || (n < 0 && n != -EAGAIN)) {
		close_chan(c);
		return false;
	}
	return n > 0;
}

static void flush_queue(struct child *c)
{
	if (c->chan_fd < 0)
		return;
	int r = outq_flush(&c->q, c->chan_fd);
	if (r < 0)
		log_debug("%s: channel write: %s", c->name, strerror(-r));
	dispatch_file_select(&c->chan_file, EPOLLIN | (outq_pending(&c->q) ? EPOLLOUT : 0));
}

static void on_chan(struct dispatch_file *f, uint32_t events)
{
	struct child *c = f->data;
	if (events & EPOLLOUT)
		flush_queue(c);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		drain_chan(c);
}

static void on_err(struct dispatch_file *f, uint32_t events)
{
	(void)events;
	relay_stderr(f->data, false);
}

/* ---------- sending ---------- */

int child_send(struct child *c, uint16_t type, const void *payload, size_t len)
{
	if (c->chan_fd < 0 || c->violated)
		return -EPIPE;
	uint8_t *buf;
	size_t n;
	int r = chan_encode(type, payload, len, &buf, &n);
	if (r < 0) {
		log_error("%s: cannot encode a %s message of %zu bytes: %s", __func__, chan_type_name(type), len,
			  strerror(-r));
		return r;
	}
	r = outq_write(&c->q, c->chan_fd, buf, n);
	free(buf);
	if (r == -ENOBUFS)
		child_violation(c, "it does not read its channel (output queue full)");
	else if (r < 0)
		log_debug("%s: channel write: %s", c->name, strerror(-r));
	dispatch_file_select(&c->chan_file, EPOLLIN | (outq_pending(&c->q) ? EPOLLOUT : 0));
	return r;
}

int child_signal(struct child *c, int sig)
{
	if (!c || c->pid <= 0 || c->reaped)
		return -ESRCH;
	if (kill(c->pid, sig) < 0) {
		int e = errno;
		if (e != ESRCH)
			log_warn("kill %d %s: %s", (int)c->pid, strsignal(sig), strerror(e));
		return -e;
	}
	return 0;
}

/* ---------- forking ---------- */

#define CHILD_KEEP_MAX 4

static void child_body(struct children *ch, const struct child_spec *spec, int chan, int err)
{
	dup2(err, 2);
	dup2(err, 1);
	util_devnull(0);
	int keep[1 + CHILD_KEEP_MAX] = {chan};
	size_t nkeep = 1;
	for (size_t i = 0; i < spec->nkeep && i < CHILD_KEEP_MAX; i++)
		if (spec->keep_fds[i] >= 0)
			keep[nkeep++] = spec->keep_fds[i];
	util_close_fds_from(3, keep, nkeep);
	/* The master's own limit is raised for its many fds; a child's
	 * programs (tools using select()) expect the usual one. */
	setrlimit(RLIMIT_NOFILE, &ch->nofile);
	children_setup_fn setup = spec->setup ? spec->setup : ch->setup;
	void *ctx = spec->setup ? spec->setup_ctx : ch->setup_ctx;
	if (setup && setup(ctx) < 0)
		_exit(SV_EX_CONFIG);
	exit(spec->body(spec->arg, chan));
}

static void child_free(struct child *c)
{
	close_chan(c);
	if (c->err_fd >= 0) {
		dispatch_file_deinit(&c->err_file);
		close(c->err_fd);
	}
	chan_reader_free(&c->rd);
	linebuf_free(&c->err_lb);
	outq_free(&c->q);
	free(c->name);
	free(c->log_proc);
	free(c);
}

static void link_child(struct children *ch, struct child *c)
{
	c->next = ch->head;
	if (ch->head)
		ch->head->prev = c;
	ch->head = c;
	ch->n++;
}

static void unlink_child(struct children *ch, struct child *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		ch->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ch->n--;
}

pid_t child_spawn(struct children *ch, const struct child_spec *spec, struct child **out)
{
	int sv[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		int e = errno;
		log_error("%s: socketpair for %s: %s", __func__, spec->name, strerror(e));
		return -e;
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		int e = errno;
		log_error("%s: pipe for %s: %s", __func__, spec->name, strerror(e));
		close(sv[0]), close(sv[1]);
		return -e;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		log_error("%s: fork for %s: %s", __func__, spec->name, strerror(e));
		close(sv[0]), close(sv[1]), close(ep[0]), close(ep[1]);
		return -e;
	}
	if (pid == 0) {
		close(sv[0]);
		close(ep[0]);
		child_body(ch, spec, sv[1], ep[1]);
	}
	close(sv[1]);
	close(ep[1]);
	util_set_nonblock(sv[0]);
	util_set_nonblock(ep[0]);
	struct child *c = util_xcalloc(1, sizeof(*c));
	c->ch = ch;
	c->pid = pid;
	c->name = util_xstrdup(spec->name);
	c->log_proc = util_xstrdup(spec->log_proc);
	c->ops = spec->ops;
	c->owner = spec->owner;
	c->chan_fd = sv[0];
	c->err_fd = ep[0];
	c->q.max = spec->outq_max;
	chan_reader_init(&c->rd, spec->peer);
	linebuf_init(&c->err_lb, CHILD_ERR_LINE_MAX);
	/* A failed registration leaves a child we cannot hear: kill it, and
	 * its exit is reported like any other. */
	if (dispatch_file_init(&c->chan_file, ch->d, c->chan_fd, EPOLLIN, on_chan, c) < 0 ||
	    dispatch_file_init(&c->err_file, ch->d, c->err_fd, EPOLLIN, on_err, c) < 0)
		kill(pid, SIGKILL);
	link_child(ch, c);
	*out = c;
	return pid;
}

/* ---------- /proc ---------- */

struct proc_stat {
	char state;
	pid_t ppid, pgrp;
};

/* Parse /proc/PID/stat: "pid (comm) S ppid pgrp ..."; comm may hold any
 * byte, so the fields start after the last ')'. */
static int read_proc_stat(pid_t pid, struct proc_stat *st)
{
	char buf[512];
	const char *p = util_proc_stat(pid, buf, sizeof(buf));
	int ppid, pgrp;
	if (!p)
		return -ENOENT;
	if (sscanf(p, "%c %d %d", &st->state, &ppid, &pgrp) != 3)
		return -EINVAL;
	st->ppid = ppid;
	st->pgrp = pgrp;
	return 0;
}

int child_owns_process(const struct child *c, pid_t pid)
{
	struct proc_stat st;
	if (pid <= 1)
		return -EPERM;
	int r = read_proc_stat(pid, &st);
	if (r == -ENOENT)
		return -ENOENT;
	if (r < 0 || st.ppid != c->pid || st.pgrp != pid)
		return -EPERM;
	return 0;
}

static struct child *find_child(struct children *ch, pid_t pid)
{
	for (struct child *c = ch->head; c; c = c->next)
		if (c->pid == pid)
			return c;
	return NULL;
}

/* One process re-parented to us that we did not start as a child: kill
 * it, and its group when it leads one.  Safe against pid reuse: it is our
 * child, and only we can reap it. */
static int kill_orphan(struct children *ch, pid_t pid)
{
	struct proc_stat st;
	if (find_child(ch, pid) || read_proc_stat(pid, &st) < 0)
		return 0;
	if (st.ppid != ch->self || st.state == 'Z' || st.state == 'X')
		return 0;
	if (st.pgrp == pid)
		kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	log_warn("killed orphaned process %d%s: its parent exited (no process outlives its worker)", (int)pid,
		 st.pgrp == pid ? " and its process group" : "");
	return 1;
}

/* Our children from the kernel's own list (CONFIG_PROC_CHILDREN); -errno
 * when that file is missing. */
static int kill_orphans_from_children_file(struct children *ch, int *killed)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)ch->self, (int)ch->self);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	int pid;
	while (fscanf(f, "%d", &pid) == 1)
		*killed += kill_orphan(ch, pid);
	fclose(f);
	return 0;
}

int children_kill_orphans(struct children *ch)
{
	int killed = 0;
	if (kill_orphans_from_children_file(ch, &killed) == 0)
		return killed;
	/* Without the children file: every process whose parent is us. */
	DIR *dir = opendir("/proc");
	if (!dir)
		return 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL)
		if (isdigit((unsigned char)de->d_name[0]))
			killed += kill_orphan(ch, (pid_t)atoi(de->d_name));
	closedir(dir);
	return killed;
}

static void child_reaped(struct children *ch, struct child *c, int code)
{
	/* Its last words may still break the protocol: that is logged, but
	 * nothing is signalled any more. */
	c->reaped = true;
	/* Its last words belong before the exit they explain. */
	if (!c->violated)
		while (drain_chan(c))
			;
	relay_stderr(c, true);
	unlink_child(ch, c);
	c->ops->exited(c->owner, code, c->violated);
	child_free(c);
}

void children_reap(struct children *ch)
{
	int status;
	pid_t pid;
	bool orphans = false;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
		struct child *c = find_child(ch, pid);
		if (c) {
			child_reaped(ch, c, code);
			orphans = true;
		} else {
			log_debug("reaped orphan %d (%s %d)", (int)pid, code < 0 ? "signal" : "exit",
				  code < 0 ? -code : code);
			orphans = true;
		}
	}
	/* An exit re-parents the exited process's children to us. */
	if (orphans)
		children_kill_orphans(ch);
}

void children_free(struct children *ch)
{
	if (!ch)
		return;
	while (ch->head) {
		struct child *c = ch->head;
		unlink_child(ch, c);
		child_free(c);
	}
	free(ch);
}
