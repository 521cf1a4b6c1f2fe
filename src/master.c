/* master: the supervisor process and its single event loop. */
#include "config.h"
#include "master.h"
#include "master_int.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <jansson.h>

#include "chan.h"
#include "children.h"
#include "control.h"
#include "dispatch.h"
#include "heartbeat.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "sdnotify.h"
#include "util.h"
#include "worker.h"

/* How often the master looks for orphans nobody signalled it about (a
 * process re-parented to it while its old parent lives on: a tool's own
 * background process). */
#define ORPHAN_SCAN_MS 1000

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
	c->forgotten += (uint64_t)json_integer_value(json_object_get(hb, "forgotten"));
	c->conflicts += (uint64_t)json_integer_value(json_object_get(hb, "conflicts"));
	c->reruns += (uint64_t)json_integer_value(json_object_get(hb, "reruns"));
	json_t *hist = json_object_get(hb, "batch_hist");
	for (size_t i = 0; i < HB_HIST_N; i++)
		c->batch_hist[i] += (uint64_t)json_integer_value(json_array_get(hist, i));
	c->batch_sum_us += (uint64_t)json_integer_value(json_object_get(hb, "batch_sum_us"));
}

void master_tools_add_hb(json_t *acc, const json_t *hb)
{
	static const char *const counts[] = {"calls", "errors", "timeouts", "redispatches", "sum_us"};
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(hb, "tools"), i, t) {
		const char *name = json_string_value(json_object_get(t, "tool"));
		if (!name)
			continue;
		json_t *a = json_object_get(acc, name);
		if (!a) {
			a = json_object();
			json_t *hist = json_array();
			for (size_t b = 0; b < HB_TOOL_HIST_N; b++)
				json_array_append_new(hist, json_integer(0));
			json_object_set_new(a, "hist", hist);
			for (size_t k = 0; k < ARRAY_SIZE(counts); k++)
				json_object_set_new(a, counts[k], json_integer(0));
			json_object_set_new(acc, name, a);
		}
		for (size_t k = 0; k < ARRAY_SIZE(counts); k++)
			json_object_set_new(a, counts[k],
					    json_integer(json_integer_value(json_object_get(a, counts[k])) +
							 json_integer_value(json_object_get(t, counts[k]))));
		json_t *hist = json_object_get(a, "hist"), *h = json_object_get(t, "hist");
		for (size_t b = 0; b < HB_TOOL_HIST_N; b++)
			json_array_set_new(hist, b,
					   json_integer(json_integer_value(json_array_get(hist, b)) +
							json_integer_value(json_array_get(h, b))));
	}
}

void master_counters_add(struct counters *c, const struct counters *o)
{
	c->processed += o->processed;
	c->failed += o->failed;
	c->dead_lettered += o->dead_lettered;
	c->lost += o->lost;
	c->forgotten += o->forgotten;
	c->conflicts += o->conflicts;
	c->reruns += o->reruns;
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
	s->kind = p->kind;
	proc_init(&s->proc, &m->policy);
	s->announced = PROC_STOPPED;
	return s;
}

/* Only for slots without a process (retired and reaped, or at exit). */
static void slot_free(struct slot *s)
{
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

/* ---------- forking ---------- */

/* In every child, before its body: drop to run_as. */
static int drop_privileges(void *ctx)
{
	const struct sv_config *cfg = ((struct master *)ctx)->cfg;
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
		int e = errno;
		log_error("cannot switch to user %s: %s", pw->pw_name, strerror(e));
		return -e;
	}
	/* Refuse to run with root left behind. */
	if (setuid(0) == 0 || geteuid() != pw->pw_uid || getegid() != gid) {
		log_error("privilege drop to %s did not hold", pw->pw_name);
		return -EPERM;
	}
	return 0;
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

static void slot_exited(struct master *m, struct slot *s, int code, bool violated);

/* What a worker may tell the master, checked against what the master
 * knows; anything else makes it a violator. */
static int slot_message(void *owner, const struct chan_msg *msg, char *why, size_t whylen)
{
	struct slot *s = owner;
	struct master *m = master_instance;
	switch (msg->type) {
	case CHAN_W_REGISTERED: {
		int64_t inc = chan_get_i64(msg);
		if (inc <= 0) {
			snprintf(why, whylen, "registered with incarnation %lld", (long long)inc);
			return -EPROTO;
		}
		s->registered = true;
		s->fence_wait = false;
		log_debug("%s registered incarnation %lld (%lld ms after fork)", s->name, (long long)inc,
			  (long long)(util_mono_ms() - s->started_mono));
		master_streams_send_all(m, s);
		return 0;
	}
	case CHAN_W_FENCE_WAIT:
		s->fence_wait = true;
		return 0;
	case CHAN_W_PROGRESS:
		master_slot_act(m, s, proc_progress(&s->proc, &m->policy, util_mono_ms()));
		return 0;
	case CHAN_W_TOOL: {
		pid_t pid = chan_get_i32(msg);
		int r = pid == 0 ? 0 : child_owns_process(s->child, pid);
		if (r == -EPERM) {
			log_error("worker %s: refused tool claim: pid %d is not a child of pid %d leading its own "
				  "process group", s->name, (int)pid, (int)s->pid);
			snprintf(why, whylen, "refused tool claim for pid %d", (int)pid);
			return -EPROTO;
		}
		/* A tool that is gone already cannot be checked; it is only shown. */
		s->tool_pid = r == 0 ? pid : 0;
		return 0;
	}
	}
	snprintf(why, whylen, "%s is not for the master", chan_type_name(msg->type));
	return -EPROTO;
}

static void slot_child_exited(void *owner, int code, bool violated)
{
	slot_exited(master_instance, owner, code, violated);
}

/* The last error line of the process: the cause a BACKOFF or FATAL
 * status shows (master_cmd.c), bounded and cleaned by the relay. */
static void slot_child_error(void *owner, const char *msg)
{
	struct slot *s = owner;
	snprintf(s->error_line, sizeof(s->error_line), "%s", msg);
}

static const struct child_ops slot_ops = {
	.message = slot_message,
	.exited = slot_child_exited,
	.error_line = slot_child_error,
};

static void slot_spawn(struct master *m, struct slot *s)
{
	if (!s->pool->cfg)
		return; /* removed: its configuration is gone (never re-armed) */
	char name[300];
	snprintf(name, sizeof(name), "worker %s", s->name);
	struct child_spec spec = {
		.name = name,
		.log_proc = s->proc_name,
		.peer = CHAN_FROM_WORKER,
		.outq_max = WORKER_OUTQ_MAX,
		.body = slot_body,
		.arg = s,
		.ops = &slot_ops,
		.owner = s,
	};
	struct child *c;
	pid_t pid = child_spawn(m->children, &spec, &c);
	if (pid < 0) {
		proc_spawned(&s->proc, &m->policy, util_mono_ms());
		slot_exited(m, s, SV_EX_TRANSIENT, false);
		return;
	}
	s->pid = pid;
	s->child = c;
	s->registered = false;
	s->fence_wait = false;
	s->tool_pid = 0;
	s->spawns++;
	s->started_mono = util_mono_ms();
	s->started_wall = util_wall_ms();
	s->beat_ms = 0;
	s->beat_change_mono = 0;
	json_decref(s->hb);
	s->hb = NULL;
	s->have_exit = false;
	s->error_line[0] = '\0'; /* a new process: the last one's errors are history */
	proc_spawned(&s->proc, &m->policy, s->started_mono);
	slot_announce(m, s);
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
		child_signal(s->child, SIGCONT);
		child_signal(s->child, SIGTERM);
		break;
	case PROC_ACT_KILL:
		log_warn("worker %s (pid %d) did not stop in time: SIGKILL", s->name, (int)s->pid);
		child_signal(s->child, SIGKILL);
		break;
	}
	slot_announce(m, s);
}

void master_slot_send(struct slot *s, enum chan_type type, const void *payload, size_t len)
{
	if (s->child)
		child_send(s->child, type, payload, len);
}

/* ---------- exits ---------- */

static void pool_reap_retired(struct master *m, struct pool *p);

/* The worker's process is gone (its tools, now orphans, are the
 * children module's to kill). */
static void slot_exited(struct master *m, struct slot *s, int code, bool violated)
{
	s->child = NULL;
	s->tool_pid = 0;
	master_counters_add_hb(&s->carry, s->hb);
	if (s->hb && json_object_get(s->hb, "tools")) {
		if (!m->tool_carry)
			m->tool_carry = json_object();
		master_tools_add_hb(m->tool_carry, s->hb);
	}
	json_decref(s->hb);
	s->hb = NULL;
	s->prev_pid = s->pid;
	s->unclean_prev = code != 0;
	s->pid = 0;
	s->registered = false;
	s->last_code = code;
	s->have_exit = true;
	if (violated)
		snprintf(s->last_exit, sizeof(s->last_exit), "killed: bad channel message");
	else if (code < 0)
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

int64_t master_workers_wanted(const struct master *m, const struct pool *except, int64_t except_count)
{
	int64_t n = 0;
	for (size_t i = 0; i < m->npools; i++) {
		const struct pool *p = m->pools[i];
		if (!p->removed)
			n += p == except ? except_count : p->want;
	}
	return n;
}

int master_fds_check(const struct master *m, int64_t nworkers, char *why, size_t whylen)
{
	/* The monitor counts as one more child. */
	int64_t need = (nworkers + 1) * CHILD_FDS + MASTER_FD_RESERVE;
	if (need <= (int64_t)m->nofile)
		return 0;
	snprintf(why, whylen,
		 "%lld workers need about %lld file descriptors in the master, but its RLIMIT_NOFILE "
		 "hard limit is %llu: raise it (LimitNOFILE= in the unit, ulimit -Hn) or lower the counts",
		 (long long)nworkers, (long long)need, (unsigned long long)m->nofile);
	return -EMFILE;
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

static struct pool *find_removed_pool(struct master *m, const char *name)
{
	for (size_t i = 0; i < m->npools; i++)
		if (m->pools[i]->removed && strcmp(m->pools[i]->name, name) == 0)
			return m->pools[i];
	return NULL;
}

/* A pool added back before the workers of its removal were reaped: the
 * same slots (one consumer name, one heartbeat field each) take the new
 * settings, and each starts again once its old process has exited. */
static void pool_revive(struct pool *p, const struct pool_config *pc)
{
	p->removed = false;
	p->cfg = pc;
	p->kind = pc->kind;
	p->want = pc->count;
	for (size_t j = 0; j < p->nslots; j++)
		p->slots[j]->kind = pc->kind;
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
		struct pool *gone = find_removed_pool(m, pc->name);
		if (gone) {
			pool_revive(gone, pc);
			json_array_append_new(changes, json_sprintf("added pool %s (its previous workers "
								    "finish first)", pc->name));
			continue;
		}
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
	uint32_t level = (uint32_t)m->cfg->log.level;
	FOREACH_SLOT(m, s)
	master_slot_send(s, CHAN_M_LEVEL, &level, sizeof(level));
}

/* Processes of removed pools still finishing: their fds count too. */
static int64_t retiring_processes(const struct master *m)
{
	int64_t n = 0;
	for (size_t i = 0; i < m->npools; i++)
		for (size_t j = 0; m->pools[i]->removed && j < m->pools[i]->nslots; j++)
			n += m->pools[i]->slots[j]->pid > 0;
	return n;
}

static int64_t config_workers(const struct sv_config *cfg)
{
	int64_t n = 0;
	for (size_t i = 0; i < cfg->npools; i++)
		n += cfg->pools[i].count;
	return n;
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
	char why[300];
	if (master_fds_check(m, config_workers(ncfg) + retiring_processes(m), why, sizeof(why)) < 0) {
		log_error("reload refused: %s", why);
		config_free(ncfg);
		json_t *r = json_pack("{s:b, s:[]}", "ok", 0, "errors");
		json_object_set_new(r, "error", json_sprintf("%s; nothing changed", why));
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
	master_web_reload(m, old);
	config_free(old);
	master_streams_prune(m);
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
		child_signal(m->monitor, SIGKILL);
		m->monitor_kill_at = 0;
	}
	bool web_gone = master_web_stopped(m, now);
	return m->monitor_pid <= 0 && web_gone;
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

static void signals_handle(struct dispatch_file *f, uint32_t events)
{
	(void)events;
	struct master *m = f->data;
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
	children_reap(m->children);
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
	d = master_min_deadline(d, m->next_orphan_scan);
	d = master_min_deadline(d, master_web_deadline(m));
	return d;
}

static void run_timers(struct master *m, int64_t now)
{
	FOREACH_SLOT(m, s)
	if (s->proc.deadline_ms && now >= s->proc.deadline_ms)
		master_slot_act(m, s, proc_timer(&s->proc, &m->policy, now));
	if (m->monitor_respawn_at && now >= m->monitor_respawn_at && !m->shutting_down && m->monitor_pid <= 0)
		master_monitor_spawn(m);
	master_web_timers(m, now);
	if (!m->shutting_down && m->monitor_stop_sent && m->monitor_pid > 0 && m->monitor_kill_at &&
	    now >= m->monitor_kill_at) {
		child_signal(m->monitor, SIGKILL);
		m->monitor_kill_at = 0;
	}
	if (now >= m->next_orphan_scan) {
		children_kill_orphans(m->children);
		m->next_orphan_scan = now + ORPHAN_SCAN_MS;
	}
	notify_progress(m, now);
	master_cmd_ops_check(m, now);
}

static void master_loop(struct master *m)
{
	for (;;) {
		int64_t now = util_mono_ms();
		if (m->shutting_down && shutdown_progress(m, now))
			break;
		control_tick(m->ctl, now);
		int64_t d = next_deadline(m, now);
		int timeout = -1;
		if (d > 0)
			timeout = d <= now ? 0 : (int)(d - now > 60000 ? 60000 : d - now);
		int r = dispatch_run(m->d, timeout);
		if (r < 0) {
			log_error("%s: epoll_wait: %s", __func__, strerror(-r));
			util_sleep_ms(10, NULL);
			continue;
		}
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
	children_free(m->children);
	json_decref(m->remote);
	json_decref(m->groups);
	json_decref(m->pattern_rows);
	json_decref(m->dead_letters);
	json_decref(m->tool_carry);
	json_decref(m->warned_fields);
	json_decref(m->pattern_streams);
	master_web_free(m);
	if (m->sigfd >= 0) {
		dispatch_file_deinit(&m->sig_file);
		close(m->sigfd);
	}
	dispatch_free(m->d);
	config_free(m->cfg);
	free(m->config_path);
	free(m);
	master_instance = NULL;
}

/* The master holds two fds per worker: raise its soft RLIMIT_NOFILE to
 * the hard limit, and remember the original for the children. */
static void raise_nofile(struct master *m)
{
	getrlimit(RLIMIT_NOFILE, &m->nofile_orig);
	struct rlimit raised = m->nofile_orig;
	/* An unlimited hard limit is not a valid soft one for files. */
	if (raised.rlim_max == RLIM_INFINITY)
		raised.rlim_max = 1u << 20;
	raised.rlim_cur = raised.rlim_max;
	if (raised.rlim_cur > m->nofile_orig.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) < 0)
		log_warn("%s: cannot raise RLIMIT_NOFILE to %llu: %s", __func__,
			 (unsigned long long)raised.rlim_cur, strerror(errno));
	struct rlimit now;
	getrlimit(RLIMIT_NOFILE, &now);
	m->nofile = now.rlim_cur;
}

/* Start-up before any child: the loop, the proc layer, the limits. */
static int master_setup(struct master *m)
{
	raise_nofile(m);
	char why[300];
	if (master_fds_check(m, config_workers(m->cfg), why, sizeof(why)) < 0) {
		log_error("%s", why);
		return SV_EX_CONFIG;
	}
	if (dispatch_new(&m->d) < 0 ||
	    children_new(&m->children, m->d, &m->nofile_orig, drop_privileges, m) < 0)
		return SV_EX_TRANSIENT;
	m->sigfd = signals_setup();
	if (m->sigfd < 0) {
		log_error("%s: signalfd: %s", __func__, strerror(-m->sigfd));
		return SV_EX_TRANSIENT;
	}
	if (dispatch_file_init(&m->sig_file, m->d, m->sigfd, EPOLLIN, signals_handle, m) < 0)
		return SV_EX_TRANSIENT;
	const struct sv_config *cfg = m->cfg;
	if (control_open(&m->ctl, cfg->control.socket, cfg->control.mode, cfg->control.group,
			 master_cmd_on_request, m) < 0) {
		m->ctl = NULL;
		return SV_EX_TRANSIENT;
	}
	if (control_attach(m->ctl, m->d) < 0)
		return SV_EX_TRANSIENT;
	if (master_web_open(m) < 0)
		return SV_EX_TRANSIENT;
	return SV_EX_OK;
}

int master_run(struct sv_config *cfg, const char *config_path)
{
	struct master *m = util_xcalloc(1, sizeof(*m));
	master_instance = m;
	m->cfg = cfg;
	m->config_path = util_xstrdup(config_path);
	m->self = getpid();
	m->sigfd = -1;
	policy_from_config(&m->policy, cfg);
	sdnotify_init();
	int r = master_setup(m);
	if (r != SV_EX_OK) {
		master_free(m);
		return r;
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

