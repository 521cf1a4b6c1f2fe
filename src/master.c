/* master: the supervisor process and its single event loop. */
#include "config.h"
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "heartbeat.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "proc.h"
#include "sdnotify.h"
#include "util.h"
#include "worker.h"

#define MAX_POLLFDS 1024
#define CHILD_LINE_MAX 8192

struct pool;

/* Counters of processes gone, so totals never go backwards. */
struct counters {
	uint64_t processed, failed, dead_lettered, lost;
	uint64_t batch_hist[HB_HIST_N];
	uint64_t batch_sum_us;
};

/* One worker slot: NODE/POOL/SLOT, whichever process currently runs it. */
struct slot {
	struct pool *pool;
	int index;
	char name[256];       /* NODE/POOL/SLOT: the consumer name */
	char proc_name[256];  /* POOL/SLOT: the log's proc= */
	struct proc proc;
	enum proc_state announced;
	pid_t pid;
	int chan_fd, err_fd;
	struct linebuf chan_lb, err_lb;
	struct outq chan_q;
	bool registered;
	bool fence_wait;      /* another live process holds our consumer name */
	bool paused;
	bool unclean_prev;
	pid_t prev_pid;
	int64_t restarts;     /* restarts after a crash or hang */
	uint64_t spawns;
	int64_t started_mono, started_wall;
	int64_t beat_ms, beat_change_mono;
	json_t *hb;           /* the last heartbeat seen from this pid */
	struct counters carry;
	int64_t pending;
	pid_t tool_pgid;      /* the tool process group the worker runs now */
	int last_code;        /* last exit: status, or -signal */
	bool have_exit;
	char last_exit[64];
};

struct pool {
	const struct pool_config *cfg;
	char name[128];
	enum pool_kind kind;
	struct slot **slots;
	size_t nslots;
	int64_t want;         /* desired size: config count, or `scale` */
	bool removed;         /* gone from the config: retire, then free */
	struct counters carry; /* of slots retired */
};

/* A control request waiting for workers to settle (start/stop/restart). */
struct pending_op {
	struct pending_op *next;
	struct control_client *client;
	enum { OP_START, OP_STOP } want;
	json_t *names;
	int64_t deadline;
};

/* A control request forwarded to the monitor (pending, dead, drain). */
struct monitor_call {
	struct monitor_call *next;
	struct control_client *client;
	json_int_t id;
};

struct master {
	struct sv_config *cfg;
	char *config_path;
	struct proc_policy policy;
	struct pool **pools;
	size_t npools;
	int sigfd;
	struct control *ctl;
	pid_t self;

	pid_t monitor_pid;
	int monitor_fd, monitor_err_fd;
	struct linebuf monitor_lb, monitor_err_lb;
	struct outq monitor_q;
	int64_t monitor_respawn_at;
	bool monitor_stop_sent;
	int64_t monitor_kill_at;

	bool redis_ok;
	int64_t redis_back_mono;
	int64_t last_report_mono;
	json_t *remote;

	bool shutting_down;
	bool ready_sent;
	int64_t ready_deadline;
	int64_t next_watchdog;
	int64_t next_status_notify;
	struct pending_op *ops;
	struct monitor_call *calls;
	json_int_t next_call_id;
	json_t *groups;       /* stream/group figures from the monitor */
	struct metrics_http *http;
};

static struct master *the_master; /* for the children: keep memory reachable */

/* ---------- small helpers ---------- */

static int64_t min_deadline(int64_t a, int64_t b)
{
	if (a <= 0)
		return b;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

static void counters_add_hb(struct counters *c, const json_t *hb)
{
	if (!hb)
		return;
	c->processed += (uint64_t)json_integer_value(json_object_get(hb, "processed"));
	c->failed += (uint64_t)json_integer_value(json_object_get(hb, "failed"));
	c->dead_lettered += (uint64_t)json_integer_value(json_object_get(hb, "dead_lettered"));
	c->lost += (uint64_t)json_integer_value(json_object_get(hb, "lost"));
	json_t *hist = json_object_get(hb, "batch_hist");
	for (size_t i = 0; i < HB_HIST_N; i++)
		c->batch_hist[i] += (uint64_t)json_integer_value(json_array_get(hist, i));
	c->batch_sum_us += (uint64_t)json_integer_value(json_object_get(hb, "batch_sum_us"));
}

static void counters_add(struct counters *c, const struct counters *o)
{
	c->processed += o->processed;
	c->failed += o->failed;
	c->dead_lettered += o->dead_lettered;
	c->lost += o->lost;
	for (size_t i = 0; i < HB_HIST_N; i++)
		c->batch_hist[i] += o->batch_hist[i];
	c->batch_sum_us += o->batch_sum_us;
}

static void policy_from_config(struct proc_policy *p, const struct sv_config *cfg)
{
	p->start_ms = cfg->restart.start_ms;
	p->max_retries = cfg->restart.max_retries;
	p->burst = cfg->restart.burst;
	p->burst_window_ms = cfg->restart.burst_window_ms;
	p->backoff_initial_ms = cfg->restart.backoff_initial_ms;
	p->backoff_max_ms = cfg->restart.backoff_max_ms;
	p->stop_timeout_ms = cfg->restart.stop_timeout_ms;
	/* A hung worker had its chance already: a short grace, bounded by
	 * the operator's stop timeout. */
	p->hung_kill_ms = cfg->heartbeat.interval_ms < cfg->restart.stop_timeout_ms
				  ? cfg->heartbeat.interval_ms
				  : cfg->restart.stop_timeout_ms;
}

static void monitor_send(struct master *m, json_t *op)
{
	if (m->monitor_fd < 0 || m->monitor_stop_sent) {
		json_decref(op);
		return;
	}
	char *s = json_dumps(op, JSON_COMPACT);
	json_decref(op);
	if (!s)
		return;
	size_t len = strlen(s);
	s[len] = '\n';
	int r = outq_write(&m->monitor_q, m->monitor_fd, s, len + 1);
	if (r < 0)
		log_warn("monitor channel: %s", strerror(-r));
	free(s);
}

static void monitor_hdel(struct master *m, const char *name)
{
	monitor_send(m, json_pack("{s:s, s:[s]}", "op", "hdel", "names", name));
}

/* ---------- announcing state changes ---------- */

static void slot_announce(struct master *m, struct slot *s)
{
	enum proc_state from = s->announced, to = s->proc.state;
	if (from == to)
		return;
	s->announced = to;
	char pid[16], delay[24];
	/* An exit is reported with the pid that exited. */
	snprintf(pid, sizeof(pid), "%d", (int)(s->pid ? s->pid : s->have_exit ? s->prev_pid : 0));
	snprintf(delay, sizeof(delay), "%lld", (long long)s->proc.last_delay_ms);
	const char *kv_backoff[] = {"worker", s->name, "from", proc_state_name(from), "to",
				    proc_state_name(to), "worker_pid", pid, "delay_ms", delay, NULL};
	const char *kv[] = {"worker", s->name, "from", proc_state_name(from), "to",
			    proc_state_name(to), "worker_pid", pid, NULL};
	enum log_level lvl = (to == PROC_FATAL || to == PROC_HUNG || to == PROC_BACKOFF ||
			      (to == PROC_EXITED))
				     ? LOG_WARN
				     : LOG_INFO;
	if (to == PROC_BACKOFF)
		log_write(lvl, NULL, kv_backoff, "worker %s %s -> %s (%s), backoff delay_ms=%lld",
			  s->name, proc_state_name(from), proc_state_name(to), s->proc.reason,
			  (long long)s->proc.last_delay_ms);
	else
		log_write(lvl, NULL, kv, "worker %s %s -> %s (%s)", s->name, proc_state_name(from),
			  proc_state_name(to), s->proc.reason);

	json_t *fields = json_pack("{s:s, s:s, s:s, s:s, s:s}", "worker", s->name, "from",
				   proc_state_name(from), "to", proc_state_name(to), "reason",
				   s->proc.reason, "pid", pid);
	if (s->have_exit && (from == PROC_STARTING || from == PROC_RUNNING || from == PROC_STOPPING ||
			     from == PROC_HUNG)) {
		char code[16];
		snprintf(code, sizeof(code), "%d", s->last_code < 0 ? -s->last_code : s->last_code);
		json_object_set_new(fields, s->last_code < 0 ? "signal" : "exit", json_string(code));
	}
	if (to == PROC_BACKOFF)
		json_object_set_new(fields, "delay_ms", json_string(delay));
	monitor_send(m, json_pack("{s:s, s:o}", "op", "event", "fields", fields));
}

/* ---------- pools and slots ---------- */

static struct slot *slot_new(struct master *m, struct pool *p, int index)
{
	struct slot *s = util_xcalloc(1, sizeof(*s));
	s->pool = p;
	s->index = index;
	snprintf(s->name, sizeof(s->name), "%s/%s/%d", m->cfg->node, p->name, index);
	snprintf(s->proc_name, sizeof(s->proc_name), "%s/%d", p->name, index);
	proc_init(&s->proc, &m->policy);
	s->announced = PROC_STOPPED;
	s->chan_fd = s->err_fd = -1;
	return s;
}

static void slot_close_fds(struct slot *s)
{
	if (s->chan_fd >= 0)
		close(s->chan_fd);
	if (s->err_fd >= 0)
		close(s->err_fd);
	s->chan_fd = s->err_fd = -1;
	linebuf_free(&s->chan_lb);
	linebuf_free(&s->err_lb);
	outq_free(&s->chan_q);
}

static void slot_free(struct slot *s)
{
	slot_close_fds(s);
	json_decref(s->hb);
	free(s);
}

static struct pool *pool_new(const struct pool_config *pc)
{
	struct pool *p = util_xcalloc(1, sizeof(*p));
	p->cfg = pc;
	snprintf(p->name, sizeof(p->name), "%s", pc->name);
	p->kind = pc->kind;
	p->want = pc->count;
	return p;
}

static void pool_free(struct pool *p)
{
	for (size_t i = 0; i < p->nslots; i++)
		slot_free(p->slots[i]);
	free(p->slots);
	free(p);
}

static struct pool *find_pool(struct master *m, const char *name)
{
	for (size_t i = 0; i < m->npools; i++)
		if (!m->pools[i]->removed && strcmp(m->pools[i]->name, name) == 0)
			return m->pools[i];
	return NULL;
}

#define FOREACH_SLOT(m, s)                                                        \
	for (size_t _pi = 0; _pi < (m)->npools; _pi++)                            \
		for (size_t _si = 0; _si < (m)->pools[_pi]->nslots; _si++)        \
			for (struct slot *s = (m)->pools[_pi]->slots[_si]; s; s = NULL)

static struct slot *find_slot_by_pid(struct master *m, pid_t pid)
{
	FOREACH_SLOT(m, s)
	if (s->pid == pid)
		return s;
	return NULL;
}

/* ---------- forking ---------- */

static int drop_privileges(const struct sv_config *cfg)
{
	if (geteuid() != 0 || !cfg->run_as.user[0])
		return 0;
	struct passwd *pw = getpwnam(cfg->run_as.user);
	if (!pw) {
		log_error("run_as.user %s: no such user", cfg->run_as.user);
		return -ENOENT;
	}
	gid_t gid = pw->pw_gid;
	if (cfg->run_as.group[0]) {
		struct group *gr = getgrnam(cfg->run_as.group);
		if (!gr) {
			log_error("run_as.group %s: no such group", cfg->run_as.group);
			return -ENOENT;
		}
		gid = gr->gr_gid;
	}
	if (initgroups(pw->pw_name, gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error("cannot switch to user %s: %s", pw->pw_name, strerror(errno));
		return -errno;
	}
	/* Refuse to run with root left behind. */
	if (setuid(0) == 0 || geteuid() != pw->pw_uid || getegid() != gid) {
		log_error("privilege drop to %s did not hold", pw->pw_name);
		return -EPERM;
	}
	return 0;
}

/* Fork a child with a channel (socketpair) and a stderr pipe.  In the
 * child, run body(arg, chan) and exit with its status. */
static pid_t fork_child(struct master *m, int *chan_out, int *err_out,
			int (*body)(void *arg, int chan), void *arg)
{
	int sv[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (pipe2(ep, O_CLOEXEC) < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]), close(sv[1]), close(ep[0]), close(ep[1]);
		return -e;
	}
	if (pid == 0) {
		dup2(ep[1], 2);
		dup2(ep[1], 1);
		util_devnull(0);
		int keep[] = {sv[1]};
		util_close_fds_from(3, keep, 1);
		if (drop_privileges(m->cfg) < 0)
			_exit(SV_EX_CONFIG);
		exit(body(arg, sv[1]));
	}
	close(sv[1]);
	close(ep[1]);
	util_set_nonblock(sv[0]);
	util_set_nonblock(ep[0]);
	*chan_out = sv[0];
	*err_out = ep[0];
	return pid;
}

static int slot_body(void *arg, int chan)
{
	struct slot *s = arg;
	struct master *m = the_master;
	struct worker_args a = {
		.cfg = m->cfg,
		.pool = s->pool->cfg,
		.slot = s->index,
		.chan_fd = chan,
		.unclean = s->unclean_prev,
		.prev_pid = s->prev_pid,
		.restarts = s->restarts,
		.paused = s->paused,
		.master_pid = m->self,
	};
	return worker_main(&a);
}

static void slot_exited(struct master *m, struct slot *s, int code);

static void slot_spawn(struct master *m, struct slot *s)
{
	int chan, err;
	pid_t pid = fork_child(m, &chan, &err, slot_body, s);
	if (pid < 0) {
		log_error("fork for %s: %s", s->name, strerror((int)-pid));
		proc_spawned(&s->proc, &m->policy, util_mono_ms());
		slot_exited(m, s, SV_EX_TRANSIENT);
		return;
	}
	s->pid = pid;
	s->chan_fd = chan;
	s->err_fd = err;
	linebuf_init(&s->chan_lb, 4096);
	linebuf_init(&s->err_lb, CHILD_LINE_MAX);
	s->registered = false;
	s->fence_wait = false;
	s->spawns++;
	s->started_mono = util_mono_ms();
	s->started_wall = util_wall_ms();
	s->beat_ms = 0;
	s->beat_change_mono = 0;
	json_decref(s->hb);
	s->hb = NULL;
	s->have_exit = false;
	proc_spawned(&s->proc, &m->policy, s->started_mono);
	slot_announce(m, s);
}

static void slot_signal(struct slot *s, int sig)
{
	if (s->pid > 0 && kill(s->pid, sig) < 0 && errno != ESRCH)
		log_warn("kill %d %s: %s", (int)s->pid, strsignal(sig), strerror(errno));
}

/* Carry out what the state machine asked for. */
static void slot_act(struct master *m, struct slot *s, enum proc_action act)
{
	switch (act) {
	case PROC_ACT_NONE:
		break;
	case PROC_ACT_SPAWN:
		if (!m->shutting_down)
			slot_spawn(m, s);
		break;
	case PROC_ACT_TERM:
	case PROC_ACT_CONT_TERM:
		/* SIGCONT first: a stopped process cannot act on SIGTERM. */
		slot_signal(s, SIGCONT);
		slot_signal(s, SIGTERM);
		break;
	case PROC_ACT_KILL:
		log_warn("worker %s (pid %d) did not stop in time: SIGKILL", s->name, (int)s->pid);
		slot_signal(s, SIGKILL);
		break;
	}
	slot_announce(m, s);
}

/* ---------- child output ---------- */

static void slot_read_stderr(struct slot *s, bool final)
{
	if (s->err_fd < 0)
		return;
	for (;;) {
		ssize_t n = linebuf_fill(&s->err_lb, s->err_fd);
		char *line;
		int r;
		while ((r = linebuf_next(&s->err_lb, &line)) != 0)
			if (r > 0 && line[0])
				log_relay(line, s->proc_name, (int)s->pid);
		if (n <= 0) {
			if (n == 0 || final) {
				/* A partial last line still deserves the log. */
				if (s->err_lb.len > s->err_lb.off) {
					s->err_lb.buf[s->err_lb.len] = '\0';
					log_relay(s->err_lb.buf + s->err_lb.off, s->proc_name, (int)s->pid);
					s->err_lb.off = s->err_lb.len;
				}
			}
			if (n == 0) {
				close(s->err_fd);
				s->err_fd = -1;
			}
			return;
		}
	}
}

static void slot_read_chan(struct master *m, struct slot *s)
{
	if (s->chan_fd < 0)
		return;
	for (;;) {
		ssize_t n = linebuf_fill(&s->chan_lb, s->chan_fd);
		if (n == 0) {
			close(s->chan_fd);
			s->chan_fd = -1;
			break;
		}
		if (n < 0)
			break;
	}
	char *line;
	int r;
	while ((r = linebuf_next(&s->chan_lb, &line)) > 0 || r == -E2BIG) {
		long long inc;
		int pgid;
		if (r > 0 && sscanf(line, "tool_pgid %d", &pgid) == 1) {
			s->tool_pgid = pgid;
		} else if (r > 0 && strcmp(line, "fence_wait") == 0) {
			s->fence_wait = true;
		} else if (r > 0 && sscanf(line, "registered %lld", &inc) == 1) {
			s->registered = true;
			s->fence_wait = false;
			log_debug("%s registered incarnation %lld (%lld ms after fork)", s->name, inc,
				  (long long)(util_mono_ms() - s->started_mono));
		}
	}
	(void)m;
}

static void slot_send(struct slot *s, const char *msg)
{
	int r = s->chan_fd >= 0 ? outq_write(&s->chan_q, s->chan_fd, msg, strlen(msg)) : 0;
	if (r < 0)
		log_debug("channel to %s: %s", s->name, strerror(-r));
}

/* ---------- exits ---------- */

static void pool_reap_retired(struct master *m, struct pool *p);
static void calls_answer(struct master *m, json_int_t id, json_t *reply);

static void slot_exited(struct master *m, struct slot *s, int code)
{
	slot_read_chan(m, s);
	slot_read_stderr(s, true);
	slot_close_fds(s);
	if (s->tool_pgid > 0) {
		/* The worker died with a tool running: no orphan survives it. */
		if (kill(-s->tool_pgid, SIGKILL) == 0)
			log_warn("killed the tool process group %d left by %s", (int)s->tool_pgid, s->name);
		s->tool_pgid = 0;
	}
	counters_add_hb(&s->carry, s->hb);
	json_decref(s->hb);
	s->hb = NULL;
	s->prev_pid = s->pid;
	s->unclean_prev = code != 0;
	s->pid = 0;
	s->registered = false;
	s->last_code = code;
	s->have_exit = true;
	if (code < 0)
		snprintf(s->last_exit, sizeof(s->last_exit), "signal %d (%s)", -code, strsignal(-code));
	else
		snprintf(s->last_exit, sizeof(s->last_exit), "exit %d", code);

	enum proc_state from = s->proc.state;
	enum proc_action act = proc_exited(&s->proc, &m->policy, util_mono_ms(), code, util_rand32());
	if (act == PROC_ACT_SPAWN && (from == PROC_RUNNING || from == PROC_HUNG))
		s->restarts++;
	/* Show the EXITED step of RUNNING -> EXITED -> STARTING. */
	if (act == PROC_ACT_SPAWN && s->proc.state == PROC_EXITED)
		slot_announce(m, s);
	slot_act(m, s, act);
	s->have_exit = false;
	pool_reap_retired(m, s->pool);
}

static void monitor_read_stderr(struct master *m)
{
	if (m->monitor_err_fd < 0)
		return;
	ssize_t n;
	do {
		n = linebuf_fill(&m->monitor_err_lb, m->monitor_err_fd);
		char *line;
		int r;
		while ((r = linebuf_next(&m->monitor_err_lb, &line)) != 0)
			if (r > 0 && line[0])
				log_relay(line, "monitor", (int)m->monitor_pid);
	} while (n > 0);
	if (n == 0) {
		close(m->monitor_err_fd);
		m->monitor_err_fd = -1;
	}
}

static void monitor_closed(struct master *m)
{
	monitor_read_stderr(m);
	if (m->monitor_fd >= 0)
		close(m->monitor_fd);
	if (m->monitor_err_fd >= 0)
		close(m->monitor_err_fd);
	m->monitor_fd = m->monitor_err_fd = -1;
	linebuf_free(&m->monitor_lb);
	linebuf_free(&m->monitor_err_lb);
	outq_free(&m->monitor_q);
}

static void reap_children(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
		if (pid == m->monitor_pid) {
			m->monitor_pid = 0;
			monitor_closed(m);
			calls_answer(m, 0, NULL);
			m->redis_ok = false;
			if (!m->shutting_down) {
				if (!m->monitor_stop_sent)
					log_warn("monitor exited (%d); restarting it", code);
				m->monitor_respawn_at = util_mono_ms() + (m->monitor_stop_sent ? 0 : 1000);
			}
			m->monitor_stop_sent = false;
			continue;
		}
		struct slot *s = find_slot_by_pid(m, pid);
		if (s)
			slot_exited(m, s, code);
	}
}

/* ---------- the monitor ---------- */

static int monitor_body(void *arg, int chan)
{
	(void)arg;
	struct master *m = the_master;
	struct monitor_args a = {.cfg = m->cfg, .fd = chan, .master_pid = m->self};
	return monitor_main(&a);
}

static void monitor_prune(struct master *m)
{
	json_t *keep = json_array();
	FOREACH_SLOT(m, s)
	json_array_append_new(keep, json_string(s->name));
	monitor_send(m, json_pack("{s:s, s:o}", "op", "prune", "keep", keep));
}

static void monitor_spawn(struct master *m)
{
	int chan, err;
	pid_t pid = fork_child(m, &chan, &err, monitor_body, NULL);
	m->monitor_respawn_at = 0;
	if (pid < 0) {
		log_error("fork monitor: %s", strerror((int)-pid));
		m->monitor_respawn_at = util_mono_ms() + 1000;
		return;
	}
	m->monitor_pid = pid;
	m->monitor_fd = chan;
	m->monitor_err_fd = err;
	m->monitor_stop_sent = false;
	linebuf_init(&m->monitor_lb, 64 << 20);
	linebuf_init(&m->monitor_err_lb, CHILD_LINE_MAX);
	m->last_report_mono = util_mono_ms();
	monitor_prune(m);
}

/* Ask the monitor to finish its queue and exit; it is re-forked (with
 * the current configuration) unless we are shutting down. */
static void monitor_restart(struct master *m)
{
	if (m->monitor_pid <= 0 || m->monitor_stop_sent)
		return;
	monitor_send(m, json_pack("{s:s}", "op", "stop"));
	m->monitor_stop_sent = true;
	m->monitor_kill_at = util_mono_ms() + m->cfg->redis.connect_timeout_ms +
			     m->cfg->redis.command_timeout_ms + 1000;
}

static void redis_health(struct master *m, bool ok, const char *why)
{
	if (ok && !m->redis_ok) {
		m->redis_back_mono = util_mono_ms();
		log_info("heartbeat health known again: redis reachable; hang judgement resumes in %lld ms",
			 (long long)m->cfg->heartbeat.timeout_ms);
	} else if (!ok && m->redis_ok) {
		log_warn("heartbeat health unknown: %s; supervising from process state alone", why);
	}
	m->redis_ok = ok;
}

static void slot_take_beat(struct master *m, struct slot *s, json_t *hb, int64_t wall, int64_t now)
{
	if (!hb || json_integer_value(json_object_get(hb, "pid")) != s->pid)
		return;
	int64_t beat = json_integer_value(json_object_get(hb, "beat_ms"));
	if (beat != s->beat_ms) {
		/* When did it change?  At most one poll interval ago; the wall
		 * clock narrows it, the clamp keeps clock steps harmless. */
		int64_t age = wall - beat;
		if (age < 0)
			age = 0;
		if (age > m->cfg->heartbeat.interval_ms)
			age = m->cfg->heartbeat.interval_ms;
		s->beat_ms = beat;
		s->beat_change_mono = now - age;
	}
	json_decref(s->hb);
	s->hb = json_incref(hb);
}

static void on_beats(struct master *m, json_t *msg)
{
	int64_t now = util_mono_ms();
	m->last_report_mono = now;
	if (!json_is_true(json_object_get(msg, "ok"))) {
		redis_health(m, false, json_string_value(json_object_get(msg, "error")));
		return;
	}
	redis_health(m, true, NULL);
	int64_t wall = json_integer_value(json_object_get(msg, "wall_ms"));
	json_t *workers = json_object_get(msg, "workers");
	json_t *pending = json_object_get(msg, "pending");
	json_decref(m->groups);
	m->groups = json_incref(json_object_get(msg, "groups"));
	FOREACH_SLOT(m, s) {
		slot_take_beat(m, s, json_object_get(workers, s->name), wall, now);
		s->pending = json_integer_value(json_object_get(pending, s->name));
	}
	json_t *remote = json_array();
	const char *name;
	json_t *hb;
	json_object_foreach(workers, name, hb) {
		const char *node = json_string_value(json_object_get(hb, "node"));
		if (node && strcmp(node, m->cfg->node) == 0)
			continue;
		int64_t age = wall - json_integer_value(json_object_get(hb, "beat_ms"));
		/* Another node's worker: judged by its own master; only
		 * shown, and marked stale after 3 x timeout. */
		json_array_append_new(remote, json_pack("{s:s, s:O?, s:O?, s:O?, s:I, s:b}", "name", name,
							"node", json_object_get(hb, "node"), "pool",
							json_object_get(hb, "pool"), "status",
							json_object_get(hb, "status"), "beat_age_ms",
							(json_int_t)age, "stale",
							age > 3 * m->cfg->heartbeat.timeout_ms));
	}
	json_decref(m->remote);
	m->remote = remote;
}

/* Answer one forwarded call (id 0: all of them, the monitor is gone). */
static void calls_answer(struct master *m, json_int_t id, json_t *reply)
{
	struct monitor_call **pp = &m->calls;
	while (*pp) {
		struct monitor_call *call = *pp;
		if (id && call->id != id) {
			pp = &call->next;
			continue;
		}
		*pp = call->next;
		if (reply)
			control_reply(call->client, id ? json_incref(reply) : json_deep_copy(reply));
		else
			control_reply_error(call->client, "the monitor exited before answering; try again");
		control_client_unref(call->client);
		free(call);
		if (id)
			break;
	}
	json_decref(reply);
}

static void monitor_read(struct master *m)
{
	if (m->monitor_fd < 0)
		return;
	for (;;) {
		ssize_t n = linebuf_fill(&m->monitor_lb, m->monitor_fd);
		if (n <= 0)
			break;
	}
	char *line;
	int r;
	while ((r = linebuf_next(&m->monitor_lb, &line)) != 0) {
		if (r < 0)
			continue;
		json_t *msg = json_loads(line, 0, NULL);
		const char *op = json_string_value(json_object_get(msg, "op"));
		if (op && strcmp(op, "beats") == 0)
			on_beats(m, msg);
		else if (op && strcmp(op, "reply") == 0)
			calls_answer(m, json_integer_value(json_object_get(msg, "id")),
				     json_incref(json_object_get(msg, "reply")));
		json_decref(msg);
	}
}

/* ---------- hang judgement ---------- */

/* Returns the next time a hang could be declared (or 0). */
static int64_t judge_hangs(struct master *m, int64_t now)
{
	int64_t interval = m->cfg->heartbeat.interval_ms;
	int64_t timeout = m->cfg->heartbeat.timeout_ms;
	if (m->redis_ok && m->monitor_pid > 0 && now - m->last_report_mono > 3 * interval)
		redis_health(m, false, "the monitor stopped reporting");
	if (!m->redis_ok)
		return 0;
	int64_t next = 0;
	FOREACH_SLOT(m, s) {
		if (s->proc.state != PROC_RUNNING && s->proc.state != PROC_STARTING)
			continue;
		/* Waiting for another live holder of its name is not a hang
		 * (duplicate node names, a previous master's worker finishing). */
		if (s->fence_wait && !s->registered)
			continue;
		int64_t base = s->beat_change_mono;
		if (s->started_mono > base)
			base = s->started_mono;
		if (m->redis_back_mono > base)
			base = m->redis_back_mono;
		if (now - base >= timeout) {
			log_warn("worker %s (pid %d): beat_ms unchanged for %lld ms: hung", s->name,
				 (int)s->pid, (long long)(now - base));
			slot_act(m, s, proc_hung(&s->proc, &m->policy, now));
		} else {
			next = min_deadline(next, base + timeout);
		}
	}
	return next;
}

/* ---------- pool sizing ---------- */

static void pool_resize(struct master *m, struct pool *p)
{
	int64_t want = p->removed || m->shutting_down ? 0 : p->want;
	int64_t now = util_mono_ms();
	/* Slots being retired that are wanted again come back. */
	for (size_t i = 0; i < p->nslots && (int64_t)i < want; i++)
		if (p->slots[i]->proc.retire)
			slot_act(m, p->slots[i], proc_start(&p->slots[i]->proc, &m->policy, now));
	/* Grow: new slots start at once. */
	while ((int64_t)p->nslots < want) {
		struct slot *s = slot_new(m, p, (int)p->nslots);
		p->slots = realloc(p->slots, (p->nslots + 1) * sizeof(*p->slots));
		if (!p->slots)
			abort();
		p->slots[p->nslots++] = s;
		slot_act(m, s, proc_start(&s->proc, &m->policy, now));
	}
	/* Shrink: retire the highest slots gracefully. */
	for (size_t i = (size_t)(want < 0 ? 0 : want); i < p->nslots; i++) {
		struct slot *s = p->slots[i];
		if (!s->proc.retire || s->proc.want_up)
			slot_act(m, s, proc_stop(&s->proc, &m->policy, now, true));
	}
	pool_reap_retired(m, p);
}

/* Free retired slots at the top of the pool once their process is gone. */
static void pool_reap_retired(struct master *m, struct pool *p)
{
	while (p->nslots > 0) {
		struct slot *s = p->slots[p->nslots - 1];
		if (!s->proc.retire || s->pid > 0 || (int64_t)p->nslots <= (p->removed ? 0 : p->want))
			break;
		if (m->shutting_down)
			break; /* the shutdown removes every field at once */
		monitor_hdel(m, s->name);
		counters_add(&p->carry, &s->carry);
		log_info("worker %s retired", s->name);
		slot_free(s);
		p->nslots--;
	}
}

static void remove_dead_pools(struct master *m)
{
	size_t kept = 0;
	for (size_t i = 0; i < m->npools; i++) {
		struct pool *p = m->pools[i];
		if (p->removed && p->nslots == 0)
			pool_free(p);
		else
			m->pools[kept++] = p;
	}
	m->npools = kept;
}

/* ---------- deferred control replies ---------- */

static struct slot *find_slot_by_name(struct master *m, const char *name)
{
	FOREACH_SLOT(m, s)
	if (strcmp(s->name, name) == 0 || strcmp(s->proc_name, name) == 0)
		return s;
	return NULL;
}

static bool slot_settled(const struct slot *s, int want)
{
	enum proc_state st = s->proc.state;
	if (want == OP_STOP)
		return st == PROC_STOPPED || st == PROC_FATAL || st == PROC_BACKOFF || st == PROC_EXITED;
	return st == PROC_RUNNING || st == PROC_FATAL || st == PROC_BACKOFF || st == PROC_STOPPED;
}

static json_t *op_results(struct master *m, struct pending_op *op, bool *all_ok)
{
	json_t *res = json_array();
	size_t i;
	json_t *v;
	*all_ok = true;
	json_array_foreach(op->names, i, v) {
		struct slot *s = find_slot_by_name(m, json_string_value(v));
		enum proc_state st = s ? s->proc.state : PROC_STOPPED;
		bool ok = op->want == OP_STOP ? st == PROC_STOPPED : st == PROC_RUNNING;
		*all_ok &= ok;
		json_t *r = json_pack("{s:o, s:s}", "name", json_incref(v), "state", proc_state_name(st));
		if (s && s->pid > 0)
			json_object_set_new(r, "pid", json_integer(s->pid));
		if (!ok)
			json_object_set_new(r, "error", json_string(s ? s->proc.reason : "retired"));
		json_array_append_new(res, r);
	}
	return res;
}

static void ops_check(struct master *m, int64_t now)
{
	struct pending_op **pp = &m->ops;
	while (*pp) {
		struct pending_op *op = *pp;
		bool settled = true;
		size_t i;
		json_t *v;
		json_array_foreach(op->names, i, v) {
			struct slot *s = find_slot_by_name(m, json_string_value(v));
			if (s && !slot_settled(s, (int)op->want))
				settled = false;
		}
		bool expired = now >= op->deadline;
		if (!settled && !expired && control_client_alive(op->client)) {
			pp = &op->next;
			continue;
		}
		bool ok;
		json_t *res = op_results(m, op, &ok);
		json_t *reply = json_pack("{s:b, s:o}", "ok", ok, "results", res);
		if (!ok)
			json_object_set_new(reply, "error", json_string(expired && !settled
										? "timed out waiting for the workers"
										: "not every worker reached the wanted state"));
		control_reply(op->client, reply);
		control_client_unref(op->client);
		*pp = op->next;
		json_decref(op->names);
		free(op);
	}
}

static int64_t ops_deadline(struct master *m)
{
	int64_t d = 0;
	for (struct pending_op *op = m->ops; op; op = op->next)
		d = min_deadline(d, op->deadline);
	return d;
}

/* ---------- status ---------- */

static const char *slot_health(struct master *m, const struct slot *s, int64_t now)
{
	if (!proc_state_has_pid(s->proc.state))
		return "-";
	if (s->proc.state == PROC_HUNG)
		return "hung";
	if (!m->redis_ok)
		return "unknown";
	if (!s->hb)
		return s->proc.state == PROC_STARTING ? "starting" : "unknown";
	int64_t base = s->beat_change_mono > s->started_mono ? s->beat_change_mono : s->started_mono;
	return now - base > 2 * m->cfg->heartbeat.interval_ms ? "stale" : "ok";
}

static json_t *slot_status(struct master *m, const struct slot *s, int64_t now, int64_t wall)
{
	bool alive = s->pid > 0;
	json_t *hb = alive ? s->hb : NULL;
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "name", s->name, "pool", s->pool->name,
			      "slot", s->index, "kind", config_pool_kind_name(s->pool->cfg->kind),
			      "state", proc_state_name(s->proc.state));
	json_object_set_new(o, "pid", alive ? json_integer(s->pid) : json_null());
	json_t *inc = hb ? json_object_get(hb, "incarnation") : NULL;
	json_object_set_new(o, "incarnation", inc ? json_incref(inc) : json_null());
	json_object_set_new(o, "uptime_ms", alive ? json_integer(now - s->started_mono) : json_null());
	json_object_set_new(o, "beat_age_ms", hb && s->beat_ms ? json_integer(wall - s->beat_ms) : json_null());
	json_t *st = hb ? json_object_get(hb, "status") : NULL;
	json_object_set_new(o, "status", st ? json_incref(st) : json_null());
	json_object_set_new(o, "health", json_string(slot_health(m, s, now)));
	json_object_set_new(o, "processed", json_integer(json_integer_value(json_object_get(hb, "processed"))));
	json_object_set_new(o, "failed", json_integer(json_integer_value(json_object_get(hb, "failed"))));
	json_object_set_new(o, "dead_lettered",
			    json_integer(json_integer_value(json_object_get(hb, "dead_lettered"))));
	json_object_set_new(o, "restarts", json_integer(s->restarts));
	json_object_set_new(o, "pending", json_integer(s->pending));
	json_object_set_new(o, "paused", json_boolean(s->paused));
	json_t *cur = hb ? json_object_get(hb, "current") : NULL;
	json_object_set_new(o, "current", cur ? json_incref(cur) : json_null());
	json_object_set_new(o, "last_exit", s->last_exit[0] ? json_string(s->last_exit) : json_null());
	json_t *le = hb ? json_object_get(hb, "last_error") : NULL;
	if (!json_is_string(le) && (s->proc.state == PROC_FATAL || s->proc.state == PROC_BACKOFF))
		json_object_set_new(o, "last_error", json_string(s->proc.reason));
	else
		json_object_set_new(o, "last_error", le ? json_incref(le) : json_null());
	return o;
}

/* Resolve NAME | POOL | "all" into slot names; NULL if nothing matched. */
static json_t *resolve_targets(struct master *m, const char *target)
{
	json_t *names = json_array();
	bool all = !target || strcmp(target, "all") == 0;
	FOREACH_SLOT(m, s) {
		if (all || strcmp(s->pool->name, target) == 0 || strcmp(s->name, target) == 0 ||
		    strcmp(s->proc_name, target) == 0)
			json_array_append_new(names, json_string(s->name));
	}
	if (!all && json_array_size(names) == 0) {
		json_decref(names);
		return NULL;
	}
	return names;
}

static void cmd_status(struct master *m, struct control_client *c, const char *target)
{
	json_t *names = resolve_targets(m, target);
	if (!names) {
		control_reply_error(c, "no such worker or pool: %s", target);
		return;
	}
	int64_t now = util_mono_ms(), wall = util_wall_ms();
	json_t *workers = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v)
		json_array_append_new(workers, slot_status(m, find_slot_by_name(m, json_string_value(v)), now, wall));
	json_decref(names);
	json_t *reply = json_pack("{s:b, s:s, s:o, s:s}", "ok", 1, "node", m->cfg->node, "workers", workers,
				  "redis", m->redis_ok ? "ok" : "unknown");
	json_object_set_new(reply, "remote", m->remote ? json_incref(m->remote) : json_array());
	control_reply(c, reply);
}

static void defer_reply(struct master *m, struct control_client *c, json_t *names, int want)
{
	struct pending_op *op = util_xcalloc(1, sizeof(*op));
	op->client = control_client_ref(c);
	op->names = names;
	op->want = want;
	op->deadline = util_mono_ms() + m->cfg->restart.stop_timeout_ms + m->cfg->restart.start_ms +
		       m->cfg->restart.backoff_max_ms + 5000;
	op->next = m->ops;
	m->ops = op;
	ops_check(m, util_mono_ms());
}

static void cmd_startstop(struct master *m, struct control_client *c, const char *cmd, const char *target)
{
	if (m->shutting_down) {
		control_reply_error(c, "shutting down");
		return;
	}
	json_t *names = target ? resolve_targets(m, target) : NULL;
	if (!names) {
		control_reply_error(c, target ? "no such worker or pool: %s" : "%s needs NAME, POOL or all",
				    target ? target : cmd);
		return;
	}
	int64_t now = util_mono_ms();
	bool stop = strcmp(cmd, "stop") == 0, restart = strcmp(cmd, "restart") == 0;
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v) {
		struct slot *s = find_slot_by_name(m, json_string_value(v));
		if (stop) {
			slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
		} else if (restart && proc_state_has_pid(s->proc.state)) {
			slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
			slot_act(m, s, proc_start(&s->proc, &m->policy, now));
		} else {
			slot_act(m, s, proc_start(&s->proc, &m->policy, now));
		}
	}
	defer_reply(m, c, names, stop ? OP_STOP : OP_START);
}

static void cmd_pause(struct master *m, struct control_client *c, bool pause, const char *target)
{
	json_t *names = target ? resolve_targets(m, target) : NULL;
	if (!names) {
		control_reply_error(c, target ? "no such worker or pool: %s" : "needs NAME, POOL or all",
				    target);
		return;
	}
	json_t *res = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v) {
		struct slot *s = find_slot_by_name(m, json_string_value(v));
		s->paused = pause;
		slot_send(s, pause ? "pause\n" : "resume\n");
		json_array_append_new(res, json_pack("{s:O, s:b}", "name", v, "paused", pause));
	}
	json_decref(names);
	control_reply(c, json_pack("{s:b, s:o}", "ok", 1, "results", res));
}

static void cmd_scale(struct master *m, struct control_client *c, const char *pool, const char *count)
{
	struct pool *p = pool ? find_pool(m, pool) : NULL;
	char *end = NULL;
	long long n = count ? strtoll(count, &end, 10) : -1;
	if (!p) {
		control_reply_error(c, "no such pool: %s", pool ? pool : "(none)");
		return;
	}
	if (!count || *end || n < 0 || n > 1000) {
		control_reply_error(c, "scale needs a count from 0 to 1000");
		return;
	}
	log_info("scale %s from %lld to %lld workers", p->name, (long long)p->want, n);
	p->want = n;
	pool_resize(m, p);
	control_reply(c, json_pack("{s:b, s:s, s:I}", "ok", 1, "pool", p->name, "count", (json_int_t)n));
}

static void cmd_config(struct master *m, struct control_client *c)
{
	json_t *streams = json_array();
	for (size_t i = 0; i < m->cfg->streams.n; i++)
		json_array_append_new(streams, json_string(m->cfg->streams.v[i]));
	control_reply(c, json_pack("{s:b, s:s, s:s, s:s, s:o, s:s, s:s}", "ok", 1, "sqlite_path",
				   m->cfg->sqlite.path, "namespace", m->cfg->namespace, "node", m->cfg->node,
				   "streams", streams, "redis", m->cfg->redis.url_redacted, "socket",
				   m->cfg->control.socket));
}

/* ---------- metrics ---------- */

static json_t *counters_json(const char *pool, const struct counters *c)
{
	json_t *hist = json_array();
	for (size_t i = 0; i < HB_HIST_N; i++)
		json_array_append_new(hist, json_integer((json_int_t)c->batch_hist[i]));
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "name", pool, "processed", (json_int_t)c->processed,
			 "failed", (json_int_t)c->failed, "dead_lettered", (json_int_t)c->dead_lettered, "lost",
			 (json_int_t)c->lost, "batch_hist", hist, "batch_sum_us", (json_int_t)c->batch_sum_us);
}

static json_t *metrics_state(struct master *m)
{
	int64_t now = util_mono_ms(), wall = util_wall_ms();
	json_t *workers = json_array(), *pools = json_array();
	for (size_t i = 0; i < m->npools; i++) {
		struct pool *p = m->pools[i];
		struct counters total = p->carry;
		for (size_t j = 0; j < p->nslots; j++) {
			struct slot *s = p->slots[j];
			counters_add(&total, &s->carry);
			counters_add_hb(&total, s->pid > 0 ? s->hb : NULL);
			json_array_append_new(workers, slot_status(m, s, now, wall));
		}
		json_array_append_new(pools, counters_json(p->name, &total));
	}
	return json_pack("{s:s, s:b, s:o, s:o, s:O}", "node", m->cfg->node, "redis_up", m->redis_ok, "workers",
			 workers, "pools", pools, "groups", m->groups ? m->groups : json_null());
}

static char *render_metrics(void *ctx)
{
	json_t *state = metrics_state(ctx);
	char *text = metrics_render(state);
	json_decref(state);
	return text;
}

static void cmd_metrics(struct master *m, struct control_client *c)
{
	char *text = render_metrics(m);
	if (!text) {
		control_reply_error(c, "out of memory");
		return;
	}
	control_reply(c, json_pack("{s:b, s:s}", "ok", 1, "text", text));
	free(text);
}

/* ---------- reload ---------- */

static void errors_to_json(const struct config_errors *errs, json_t *out)
{
	for (size_t i = 0; i < errs->n; i++)
		json_array_append_new(out, json_string(errs->v[i]));
}

/* Apply the pools of ncfg (already the current configuration). */
static void reload_pools(struct master *m, const struct sv_config *old, json_t *changes)
{
	int64_t now = util_mono_ms();
	for (size_t i = 0; i < m->npools; i++) {
		struct pool *p = m->pools[i];
		if (p->removed)
			continue;
		const struct pool_config *npc = config_find_pool(m->cfg, p->name);
		if (!npc) {
			p->removed = true;
			p->cfg = NULL;
			json_array_append_new(changes, json_sprintf("removed pool %s", p->name));
			continue;
		}
		bool changed = npc->kind != p->kind || config_pool_changed(old, p->cfg, m->cfg, npc);
		p->cfg = npc;
		p->kind = npc->kind;
		if (p->want != npc->count)
			json_array_append_new(changes, json_sprintf("pool %s: %lld -> %lld workers", p->name,
								    (long long)p->want, (long long)npc->count));
		p->want = npc->count; /* a reload undoes `scale` */
		for (size_t j = 0; j < p->nslots; j++) {
			struct slot *s = p->slots[j];
			s->proc.backoff.initial_ms = m->policy.backoff_initial_ms;
			s->proc.backoff.max_ms = m->policy.backoff_max_ms;
			if (!changed)
				continue;
			if (proc_state_has_pid(s->proc.state) && !s->proc.retire) {
				slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
				slot_act(m, s, proc_start(&s->proc, &m->policy, now));
			} else if (s->proc.state == PROC_FATAL || s->proc.state == PROC_BACKOFF) {
				slot_act(m, s, proc_start(&s->proc, &m->policy, now));
			}
		}
		if (changed)
			json_array_append_new(changes, json_sprintf("pool %s: settings changed, restarting its workers", p->name));
	}
	for (size_t i = 0; i < m->cfg->npools; i++) {
		const struct pool_config *pc = &m->cfg->pools[i];
		if (find_pool(m, pc->name))
			continue;
		m->pools = realloc(m->pools, (m->npools + 1) * sizeof(*m->pools));
		if (!m->pools)
			abort();
		m->pools[m->npools++] = pool_new(pc);
		json_array_append_new(changes, json_sprintf("added pool %s", pc->name));
	}
	for (size_t i = 0; i < m->npools; i++)
		pool_resize(m, m->pools[i]);
}

static void broadcast_level(struct master *m)
{
	char msg[32];
	snprintf(msg, sizeof(msg), "level %s\n", log_level_name(m->cfg->log.level));
	FOREACH_SLOT(m, s)
	slot_send(s, msg);
}

/* Returns a reply object. */
static json_t *master_reload(struct master *m)
{
	struct sv_config *ncfg = NULL;
	struct config_errors errs = {0};
	if (config_load(m->config_path, &ncfg, &errs) < 0) {
		json_t *list = json_array();
		errors_to_json(&errs, list);
		for (size_t i = 0; i < errs.n; i++)
			log_error("reload: %s", errs.v[i]);
		log_error("reload refused: %s is invalid; the running configuration is kept", m->config_path);
		config_errors_free(&errs);
		return json_pack("{s:b, s:s, s:o}", "ok", 0, "error", "configuration invalid; nothing changed",
				 "errors", list);
	}
	config_errors_free(&errs);
	const char *key = config_restart_key_changed(m->cfg, ncfg);
	if (key) {
		log_error("reload refused: %s changed, which needs a restart of streamvisord", key);
		config_free(ncfg);
		json_t *r = json_pack("{s:b, s:[]}", "ok", 0, "errors");
		json_object_set_new(r, "error", json_sprintf("%s changed: needs a restart of streamvisord; nothing changed", key));
		return r;
	}
	sdnotify_send("RELOADING=1");
	struct sv_config *old = m->cfg;
	m->cfg = ncfg;
	policy_from_config(&m->policy, ncfg);
	json_t *changes = json_array();
	reload_pools(m, old, changes);
	if (old->log.level != ncfg->log.level) {
		log_set_level(ncfg->log.level);
		broadcast_level(m);
		json_array_append_new(changes, json_sprintf("log.level %s", log_level_name(ncfg->log.level)));
	}
	log_set_format(ncfg->log.format);
	config_free(old);
	/* The monitor reads pools and retention settings: give it the new ones. */
	monitor_restart(m);
	remove_dead_pools(m);
	log_info("configuration reloaded from %s (%zu changes)", m->config_path, json_array_size(changes));
	sdnotify_send("READY=1");
	return json_pack("{s:b, s:o}", "ok", 1, "changes", changes);
}

/* ---------- shutdown ---------- */

static void begin_shutdown(struct master *m, const char *why)
{
	if (m->shutting_down)
		return;
	log_info("shutting down (%s)", why);
	sdnotify_send("STOPPING=1");
	m->shutting_down = true;
	int64_t now = util_mono_ms();
	FOREACH_SLOT(m, s)
	slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
}

/* Once every worker is gone: clear their heartbeat fields through the
 * monitor and let it exit.  Returns true when the master may exit. */
static bool shutdown_progress(struct master *m, int64_t now)
{
	FOREACH_SLOT(m, s)
	if (s->pid > 0)
		return false;
	if (m->monitor_pid > 0 && !m->monitor_stop_sent) {
		json_t *names = json_array();
		FOREACH_SLOT(m, s)
		json_array_append_new(names, json_string(s->name));
		if (json_array_size(names))
			monitor_send(m, json_pack("{s:s, s:o}", "op", "hdel", "names", names));
		else
			json_decref(names);
		monitor_restart(m);
	}
	if (m->monitor_pid > 0 && m->monitor_kill_at && now >= m->monitor_kill_at) {
		log_warn("monitor did not finish in time: SIGKILL");
		kill(m->monitor_pid, SIGKILL);
		m->monitor_kill_at = 0;
	}
	return m->monitor_pid <= 0;
}

/* ---------- control requests ---------- */

/* pending, dead ..., drain: the monitor owns the Redis connection. */
static void cmd_forward(struct master *m, struct control_client *c, const char *cmd, json_t *req)
{
	if (m->monitor_pid <= 0 || m->monitor_fd < 0 || m->monitor_stop_sent) {
		control_reply_error(c, "monitor not running (restarting); try again");
		return;
	}
	json_t *args = json_object_get(req, "args");
	if (strcmp(cmd, "drain") == 0) {
		bool yes = false;
		size_t i;
		json_t *v;
		json_array_foreach(args, i, v) yes |= json_is_string(v) && strcmp(json_string_value(v), "--yes") == 0;
		if (!yes) {
			control_reply_error(c, "drain destroys every consumer group and stream: confirm with --yes");
			return;
		}
	}
	struct monitor_call *call = util_xcalloc(1, sizeof(*call));
	call->client = control_client_ref(c);
	call->id = ++m->next_call_id;
	call->next = m->calls;
	m->calls = call;
	monitor_send(m, json_pack("{s:s, s:I, s:s, s:O?}", "op", "call", "id", call->id, "cmd", cmd, "args", args));
}

static const char *req_arg(json_t *req, size_t i)
{
	return json_string_value(json_array_get(json_object_get(req, "args"), i));
}

static void on_request(void *ctx, struct control_client *c, json_t *req)
{
	struct master *m = ctx;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	const char *a0 = req_arg(req, 0), *a1 = req_arg(req, 1);
	if (!cmd) {
		control_reply_error(c, "bad request: no cmd");
	} else if (strcmp(cmd, "status") == 0) {
		cmd_status(m, c, a0);
	} else if (!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart")) {
		cmd_startstop(m, c, cmd, a0);
	} else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		cmd_pause(m, c, !strcmp(cmd, "pause"), a0);
	} else if (strcmp(cmd, "scale") == 0) {
		cmd_scale(m, c, a0, a1);
	} else if (strcmp(cmd, "reload") == 0) {
		if (m->shutting_down)
			control_reply_error(c, "shutting down");
		else
			control_reply(c, master_reload(m));
	} else if (strcmp(cmd, "config") == 0) {
		cmd_config(m, c);
	} else if (strcmp(cmd, "metrics") == 0) {
		cmd_metrics(m, c);
	} else if (!strcmp(cmd, "pending") || !strcmp(cmd, "dead") || !strcmp(cmd, "drain")) {
		cmd_forward(m, c, cmd, req);
	} else if (strcmp(cmd, "shutdown") == 0) {
		control_reply(c, json_pack("{s:b}", "ok", 1));
		begin_shutdown(m, "streamvisorctl shutdown");
	} else {
		control_reply_error(c, "unknown command: %s", cmd);
	}
}

/* ---------- signals ---------- */

static int signals_setup(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void signals_handle(struct master *m)
{
	struct signalfd_siginfo si;
	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			begin_shutdown(m, strsignal((int)si.ssi_signo));
			break;
		case SIGHUP:
			if (!m->shutting_down) {
				log_info("SIGHUP: reloading %s", m->config_path);
				json_decref(master_reload(m));
			}
			break;
		case SIGUSR1:
			if (log_reopen() == 0)
				log_info("log reopened");
			break;
		case SIGCHLD:
			break;
		}
	}
	/* SIGCHLDs coalesce: always reap everything that has exited. */
	reap_children(m);
}

/* ---------- systemd readiness ---------- */

static void notify_progress(struct master *m, int64_t now)
{
	size_t total = 0, running = 0, registered = 0;
	FOREACH_SLOT(m, s) {
		if (!s->proc.want_up)
			continue;
		total++;
		running += s->proc.state == PROC_RUNNING;
		registered += s->registered || s->hb != NULL;
	}
	if (!m->ready_sent && (registered == total || now >= m->ready_deadline)) {
		m->ready_sent = true;
		if (registered == total)
			sdnotify_send("READY=1\nSTATUS=%zu/%zu workers registered", registered, total);
		else
			sdnotify_send("READY=1\nSTATUS=%zu of %zu workers registered; waiting for the rest (redis %s)",
				      registered, total, m->redis_ok ? "reachable" : "unreachable");
	}
	if (m->ready_sent && now >= m->next_status_notify) {
		json_int_t lag = 0, pending = 0;
		size_t i;
		json_t *g;
		json_array_foreach(m->groups, i, g) {
			lag += json_integer_value(json_object_get(g, "lag"));
			pending += json_integer_value(json_object_get(g, "pending"));
		}
		sdnotify_send("STATUS=%zu/%zu workers running, lag %lld, pending %lld%s", running, total,
			      (long long)lag, (long long)pending, m->redis_ok ? "" : ", redis unreachable");
		m->next_status_notify = now + 5000;
	}
	int64_t wd = sdnotify_watchdog_ms();
	if (wd > 0 && now >= m->next_watchdog) {
		sdnotify_send("WATCHDOG=1");
		m->next_watchdog = now + wd;
	}
}

/* ---------- the loop ---------- */

struct fdref {
	struct slot *slot;
	int kind; /* 0 chan, 1 stderr */
};

static int64_t next_deadline(struct master *m, int64_t now)
{
	int64_t d = 0;
	FOREACH_SLOT(m, s)
	d = min_deadline(d, s->proc.deadline_ms);
	d = min_deadline(d, judge_hangs(m, now));
	d = min_deadline(d, m->monitor_respawn_at);
	d = min_deadline(d, m->monitor_stop_sent ? m->monitor_kill_at : 0);
	d = min_deadline(d, m->ready_sent ? 0 : m->ready_deadline);
	if (sdnotify_watchdog_ms() > 0)
		d = min_deadline(d, m->next_watchdog);
	d = min_deadline(d, ops_deadline(m));
	d = min_deadline(d, control_timeouts(m->ctl, now));
	if (m->redis_ok)
		d = min_deadline(d, m->last_report_mono + 3 * m->cfg->heartbeat.interval_ms + 1);
	return d;
}

static void run_timers(struct master *m, int64_t now)
{
	FOREACH_SLOT(m, s)
	if (s->proc.deadline_ms && now >= s->proc.deadline_ms)
		slot_act(m, s, proc_timer(&s->proc, &m->policy, now));
	if (m->monitor_respawn_at && now >= m->monitor_respawn_at && !m->shutting_down && m->monitor_pid <= 0)
		monitor_spawn(m);
	if (!m->shutting_down && m->monitor_stop_sent && m->monitor_pid > 0 && m->monitor_kill_at &&
	    now >= m->monitor_kill_at) {
		kill(m->monitor_pid, SIGKILL);
		m->monitor_kill_at = 0;
	}
	notify_progress(m, now);
	ops_check(m, now);
}

static void master_loop(struct master *m)
{
	static struct pollfd fds[MAX_POLLFDS];
	static struct fdref refs[MAX_POLLFDS];
	for (;;) {
		int64_t now = util_mono_ms();
		if (m->shutting_down && shutdown_progress(m, now))
			break;
		size_t n = 0;
		fds[n++] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = m->monitor_fd,
					   .events = POLLIN | (outq_pending(&m->monitor_q) ? POLLOUT : 0)};
		fds[n++] = (struct pollfd){.fd = m->monitor_err_fd, .events = POLLIN};
		size_t first_slot = n;
		FOREACH_SLOT(m, s) {
			if (n + 2 >= MAX_POLLFDS - 70)
				break;
			if (s->chan_fd >= 0) {
				refs[n] = (struct fdref){s, 0};
				fds[n++] = (struct pollfd){.fd = s->chan_fd,
							   .events = POLLIN | (outq_pending(&s->chan_q) ? POLLOUT : 0)};
			}
			if (s->err_fd >= 0) {
				refs[n] = (struct fdref){s, 1};
				fds[n++] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
			}
		}
		size_t first_ctl = n;
		n += control_pollfds(m->ctl, fds + n, MAX_POLLFDS - n - 20);
		size_t first_http = n;
		n += metrics_http_pollfds(m->http, fds + n, MAX_POLLFDS - n);

		int64_t d = next_deadline(m, now);
		int timeout = -1;
		if (d > 0)
			timeout = d <= now ? 0 : (int)(d - now > 60000 ? 60000 : d - now);
		if (poll(fds, n, timeout) < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			util_sleep_ms(10, NULL);
			continue;
		}
		/* Children's output first: a crash message belongs before the
		 * exit it explains.  Slots may be freed once exits are handled. */
		for (size_t i = first_slot; i < first_ctl; i++) {
			if (!fds[i].revents)
				continue;
			if (refs[i].kind == 0 && (fds[i].revents & POLLOUT))
				outq_flush(&refs[i].slot->chan_q, fds[i].fd);
			if (refs[i].kind == 0)
				slot_read_chan(m, refs[i].slot);
			else
				slot_read_stderr(refs[i].slot, false);
		}
		if (fds[2].revents)
			monitor_read_stderr(m);
		if (fds[1].revents & POLLOUT)
			outq_flush(&m->monitor_q, m->monitor_fd);
		if (fds[1].revents)
			monitor_read(m);
		if (fds[0].revents)
			signals_handle(m);
		control_dispatch(m->ctl, fds + first_ctl, first_http - first_ctl, util_mono_ms());
		metrics_http_dispatch(m->http, fds + first_http, n - first_http, util_mono_ms(), render_metrics, m);
		run_timers(m, util_mono_ms());
		if (!m->shutting_down)
			remove_dead_pools(m);
	}
}

static void master_free(struct master *m)
{
	while (m->ops) {
		struct pending_op *op = m->ops;
		m->ops = op->next;
		control_client_unref(op->client);
		json_decref(op->names);
		free(op);
	}
	calls_answer(m, 0, NULL);
	for (size_t i = 0; i < m->npools; i++)
		pool_free(m->pools[i]);
	free(m->pools);
	if (m->ctl)
		control_close(m->ctl);
	monitor_closed(m);
	json_decref(m->remote);
	json_decref(m->groups);
	metrics_http_close(m->http);
	if (m->sigfd >= 0)
		close(m->sigfd);
	config_free(m->cfg);
	free(m->config_path);
	free(m);
	the_master = NULL;
}

int master_run(struct sv_config *cfg, const char *config_path)
{
	struct master *m = util_xcalloc(1, sizeof(*m));
	the_master = m;
	m->cfg = cfg;
	m->config_path = util_xstrdup(config_path);
	m->self = getpid();
	m->monitor_fd = m->monitor_err_fd = -1;
	policy_from_config(&m->policy, cfg);
	sdnotify_init();

	m->sigfd = signals_setup();
	if (m->sigfd < 0) {
		log_error("signalfd: %s", strerror(-m->sigfd));
		master_free(m);
		return SV_EX_TRANSIENT;
	}
	int r = control_open(&m->ctl, cfg->control.socket, cfg->control.mode, cfg->control.group,
			     on_request, m);
	if (r < 0) {
		m->ctl = NULL;
		master_free(m);
		return SV_EX_TRANSIENT;
	}
	if (cfg->metrics.listen[0] && metrics_http_open(&m->http, cfg->metrics.listen) < 0) {
		master_free(m);
		return SV_EX_TRANSIENT;
	}
	log_info("streamvisord %s starting: node=%s redis=%s pools=%zu", PACKAGE_VERSION, cfg->node,
		 cfg->redis.url_redacted, cfg->npools);
	for (size_t i = 0; i < cfg->npools; i++) {
		m->pools = realloc(m->pools, (m->npools + 1) * sizeof(*m->pools));
		if (!m->pools)
			abort();
		m->pools[m->npools++] = pool_new(&cfg->pools[i]);
	}
	for (size_t i = 0; i < m->npools; i++)
		pool_resize(m, m->pools[i]);
	/* After the slots exist: its first job removes this node's stale
	 * heartbeat fields, keeping the current slots'. */
	monitor_spawn(m);
	m->ready_deadline = util_mono_ms() + cfg->restart.start_ms;

	master_loop(m);

	log_info("all workers stopped; exiting");
	master_free(m);
	sdnotify_close();
	return SV_EX_OK;
}
