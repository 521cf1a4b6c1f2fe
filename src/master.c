/* master: the supervisor process and its single event loop. */
#include "config.h"
#include "master.h"
#include "master_int.h"

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
#include "proc.h"
#include "sdnotify.h"
#include "util.h"
#include "worker.h"

#define MAX_POLLFDS 1024

struct master *master_instance; /* for the children: keep memory reachable */

/* ---------- small helpers ---------- */

int64_t master_min_deadline(int64_t a, int64_t b)
{
	if (a <= 0)
		return b;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

void master_counters_add_hb(struct counters *c, const json_t *hb)
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

void master_counters_add(struct counters *c, const struct counters *o)
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
	master_monitor_send(m, json_pack("{s:s, s:o}", "op", "event", "fields", fields));
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

struct pool *master_find_pool(struct master *m, const char *name)
{
	for (size_t i = 0; i < m->npools; i++)
		if (!m->pools[i]->removed && strcmp(m->pools[i]->name, name) == 0)
			return m->pools[i];
	return NULL;
}

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
pid_t master_fork_child(struct master *m, int *chan_out, int *err_out,
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
	struct master *m = master_instance;
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
	pid_t pid = master_fork_child(m, &chan, &err, slot_body, s);
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
void master_slot_act(struct master *m, struct slot *s, enum proc_action act)
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
		} else if (r > 0 && strcmp(line, "progress") == 0) {
			master_slot_act(m, s, proc_progress(&s->proc, &m->policy, util_mono_ms()));
		} else if (r > 0 && sscanf(line, "registered %lld", &inc) == 1) {
			s->registered = true;
			s->fence_wait = false;
			log_debug("%s registered incarnation %lld (%lld ms after fork)", s->name, inc,
				  (long long)(util_mono_ms() - s->started_mono));
		}
	}
}

void master_slot_send(struct slot *s, const char *msg)
{
	int r = s->chan_fd >= 0 ? outq_write(&s->chan_q, s->chan_fd, msg, strlen(msg)) : 0;
	if (r < 0)
		log_debug("channel to %s: %s", s->name, strerror(-r));
}

/* ---------- exits ---------- */

static void pool_reap_retired(struct master *m, struct pool *p);

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
	master_counters_add_hb(&s->carry, s->hb);
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
	master_slot_act(m, s, act);
	s->have_exit = false;
	pool_reap_retired(m, s->pool);
}

static void reap_children(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
		if (pid == m->monitor_pid) {
			m->monitor_pid = 0;
			master_monitor_closed(m);
			master_monitor_calls_answer(m, 0, NULL);
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

/* ---------- hang judgement ---------- */

/* Returns the next time a hang could be declared (or 0). */
static int64_t judge_hangs(struct master *m, int64_t now)
{
	int64_t interval = m->cfg->heartbeat.interval_ms;
	int64_t timeout = m->cfg->heartbeat.timeout_ms;
	if (m->redis_ok && m->monitor_pid > 0 && now - m->last_report_mono > 3 * interval)
		master_monitor_redis_health(m, false, "the monitor stopped reporting");
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
			master_slot_act(m, s, proc_hung(&s->proc, &m->policy, now));
		} else {
			next = master_min_deadline(next, base + timeout);
		}
	}
	return next;
}

/* ---------- pool sizing ---------- */

void master_pool_resize(struct master *m, struct pool *p)
{
	int64_t want = p->removed || m->shutting_down ? 0 : p->want;
	int64_t now = util_mono_ms();
	/* Slots being retired that are wanted again come back. */
	for (size_t i = 0; i < p->nslots && (int64_t)i < want; i++)
		if (p->slots[i]->proc.retire)
			master_slot_act(m, p->slots[i], proc_start(&p->slots[i]->proc, &m->policy, now));
	/* Grow: new slots start at once. */
	while ((int64_t)p->nslots < want) {
		struct slot *s = slot_new(m, p, (int)p->nslots);
		p->slots = realloc(p->slots, (p->nslots + 1) * sizeof(*p->slots));
		if (!p->slots)
			abort();
		p->slots[p->nslots++] = s;
		master_slot_act(m, s, proc_start(&s->proc, &m->policy, now));
	}
	/* Shrink: retire the highest slots gracefully. */
	for (size_t i = (size_t)(want < 0 ? 0 : want); i < p->nslots; i++) {
		struct slot *s = p->slots[i];
		if (!s->proc.retire || s->proc.want_up)
			master_slot_act(m, s, proc_stop(&s->proc, &m->policy, now, true));
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
		master_monitor_hdel(m, s->name);
		master_counters_add(&p->carry, &s->carry);
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
				master_slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
				master_slot_act(m, s, proc_start(&s->proc, &m->policy, now));
			} else if (s->proc.state == PROC_FATAL || s->proc.state == PROC_BACKOFF) {
				master_slot_act(m, s, proc_start(&s->proc, &m->policy, now));
			}
		}
		if (changed)
			json_array_append_new(changes, json_sprintf("pool %s: settings changed, restarting its workers", p->name));
	}
	for (size_t i = 0; i < m->cfg->npools; i++) {
		const struct pool_config *pc = &m->cfg->pools[i];
		if (master_find_pool(m, pc->name))
			continue;
		m->pools = realloc(m->pools, (m->npools + 1) * sizeof(*m->pools));
		if (!m->pools)
			abort();
		m->pools[m->npools++] = pool_new(pc);
		json_array_append_new(changes, json_sprintf("added pool %s", pc->name));
	}
	for (size_t i = 0; i < m->npools; i++)
		master_pool_resize(m, m->pools[i]);
}

static void broadcast_level(struct master *m)
{
	char msg[32];
	snprintf(msg, sizeof(msg), "level %s\n", log_level_name(m->cfg->log.level));
	FOREACH_SLOT(m, s)
	master_slot_send(s, msg);
}

/* Returns a reply object. */
json_t *master_reload(struct master *m)
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
	/* Group membership may have changed: resolve it now, not per client. */
	if (m->ctl)
		control_refresh_ids(m->ctl, ncfg->control.group);
	config_free(old);
	/* The monitor reads pools and retention settings: give it the new ones. */
	master_monitor_restart(m);
	remove_dead_pools(m);
	log_info("configuration reloaded from %s (%zu changes)", m->config_path, json_array_size(changes));
	sdnotify_send("READY=1");
	return json_pack("{s:b, s:o}", "ok", 1, "changes", changes);
}

/* ---------- shutdown ---------- */

void master_begin_shutdown(struct master *m, const char *why)
{
	if (m->shutting_down)
		return;
	log_info("shutting down (%s)", why);
	sdnotify_send("STOPPING=1");
	m->shutting_down = true;
	int64_t now = util_mono_ms();
	FOREACH_SLOT(m, s)
	master_slot_act(m, s, proc_stop(&s->proc, &m->policy, now, false));
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
			master_monitor_send(m, json_pack("{s:s, s:o}", "op", "hdel", "names", names));
		else
			json_decref(names);
		master_monitor_restart(m);
	}
	if (m->monitor_pid > 0 && m->monitor_kill_at && now >= m->monitor_kill_at) {
		log_warn("monitor did not finish in time: SIGKILL");
		kill(m->monitor_pid, SIGKILL);
		m->monitor_kill_at = 0;
	}
	return m->monitor_pid <= 0;
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
			master_begin_shutdown(m, strsignal((int)si.ssi_signo));
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
	d = master_min_deadline(d, s->proc.deadline_ms);
	d = master_min_deadline(d, judge_hangs(m, now));
	d = master_min_deadline(d, m->monitor_respawn_at);
	d = master_min_deadline(d, m->monitor_stop_sent ? m->monitor_kill_at : 0);
	d = master_min_deadline(d, m->ready_sent ? 0 : m->ready_deadline);
	if (sdnotify_watchdog_ms() > 0)
		d = master_min_deadline(d, m->next_watchdog);
	d = master_min_deadline(d, master_cmd_ops_deadline(m));
	d = master_min_deadline(d, control_timeouts(m->ctl, now));
	if (m->redis_ok)
		d = master_min_deadline(d, m->last_report_mono + 3 * m->cfg->heartbeat.interval_ms + 1);
	return d;
}

static void run_timers(struct master *m, int64_t now)
{
	FOREACH_SLOT(m, s)
	if (s->proc.deadline_ms && now >= s->proc.deadline_ms)
		master_slot_act(m, s, proc_timer(&s->proc, &m->policy, now));
	if (m->monitor_respawn_at && now >= m->monitor_respawn_at && !m->shutting_down && m->monitor_pid <= 0)
		master_monitor_spawn(m);
	if (!m->shutting_down && m->monitor_stop_sent && m->monitor_pid > 0 && m->monitor_kill_at &&
	    now >= m->monitor_kill_at) {
		kill(m->monitor_pid, SIGKILL);
		m->monitor_kill_at = 0;
	}
	notify_progress(m, now);
	master_cmd_ops_check(m, now);
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
			master_monitor_read_stderr(m);
		if (fds[1].revents & POLLOUT)
			outq_flush(&m->monitor_q, m->monitor_fd);
		if (fds[1].revents)
			master_monitor_read(m);
		if (fds[0].revents)
			signals_handle(m);
		control_dispatch(m->ctl, fds + first_ctl, first_http - first_ctl, util_mono_ms());
		metrics_http_dispatch(m->http, fds + first_http, n - first_http, util_mono_ms(),
				      master_cmd_render_metrics, m);
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
	master_monitor_calls_answer(m, 0, NULL);
	for (size_t i = 0; i < m->npools; i++)
		pool_free(m->pools[i]);
	free(m->pools);
	if (m->ctl)
		control_close(m->ctl);
	master_monitor_closed(m);
	json_decref(m->remote);
	json_decref(m->groups);
	metrics_http_close(m->http);
	if (m->sigfd >= 0)
		close(m->sigfd);
	config_free(m->cfg);
	free(m->config_path);
	free(m);
	master_instance = NULL;
}

int master_run(struct sv_config *cfg, const char *config_path)
{
	struct master *m = util_xcalloc(1, sizeof(*m));
	master_instance = m;
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
			     master_cmd_on_request, m);
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
		master_pool_resize(m, m->pools[i]);
	/* After the slots exist: its first job removes this node's stale
	 * heartbeat fields, keeping the current slots'. */
	master_monitor_spawn(m);
	m->ready_deadline = util_mono_ms() + cfg->restart.start_ms;

	master_loop(m);

	log_info("all workers stopped; exiting");
	master_free(m);
	sdnotify_close();
	return SV_EX_OK;
}

