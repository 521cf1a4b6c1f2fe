/* worker: process set-up and the main loop of a worker.  The worker is
 * the top of the worker process: it owns the connection, the heartbeat
 * and the channel to the master, and lends them to the kind and the
 * consumer loop through a struct consumer_host (worker_host_*); they never
 * call back into this file by name. */
#include "worker.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "chan.h"
#include "consumer.h"
#include "fault.h"
#include "heartbeat.h"
#include "log.h"
#include "rconn.h"
#include "util.h"
#include "worker_persist.h"
#include "worker_tool.h"

struct worker {
	const struct worker_args *args;
	const struct sv_config *cfg;
	const struct pool_config *pool;
	struct rconn rc;
	struct heartbeat hb;
	struct chan_reader chan;
	bool paused;
	bool master_gone;
	bool fence_reported;
	struct consumer *consumer;   /* NULL for a kind without stream work */
	struct consumer_kind kind;
};

/* Set by SIGTERM/SIGINT (and PDEATHSIG), by a lost master, and by the
 * consumer through the host's stop(): finish the entry in hand, exit. */
static volatile sig_atomic_t worker_stop;

static void on_stop_signal(int sig)
{
	(void)sig;
	worker_stop = 1;
}

static void worker_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocked poll() returns so the loop sees the flag. */
	sa.sa_handler = on_stop_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

/* Longest stream name taken from CHAN_M_STREAMS. */
#define STREAM_NAME_MAX 4096

/* Keep the names of arr that this pool may read: strings, not empty, at
 * most STREAM_NAME_MAX bytes, no NUL, not streamvisor's own keys, and (to
 * add) matching one of the pool's patterns.  Returns how many were left
 * out. */
static size_t stream_names(const struct worker *w, const json_t *arr, bool add, const char **out, size_t *n)
{
	size_t bad = 0, i;
	const json_t *v;
	*n = 0;
	json_array_foreach(arr, i, v) {
		const char *name = json_string_value(v);
		size_t len = name ? json_string_length(v) : 0;
		bool ok = name && len > 0 && len <= STREAM_NAME_MAX && strlen(name) == len &&
			  !config_own_key(w->cfg, name);
		if (ok && add)
			ok = config_match_any(&w->pool->patterns, name);
		if (ok)
			out[(*n)++] = name;
		else
			bad++;
	}
	return bad;
}

/* CHAN_M_STREAMS {"add": [names], "remove": [names], "wake": [names]}
 * (each optional): the master's word,
 * trusted but checked; unknown fields are ignored.  Handed to the
 * consumer, which applies it at the start of its next round. */
static void apply_streams(struct worker *w, const struct chan_msg *m)
{
	if (!w->consumer)
		return;
	json_error_t err;
	json_t *o = json_loadb((const char *)m->data, m->len, JSON_REJECT_DUPLICATES, &err);
	if (!json_is_object(o)) {
		log_warn("%s: the master's stream list is not a JSON object (%s): ignored", __func__,
			 o ? "wrong type" : err.text);
		json_decref(o);
		return;
	}
	const json_t *add = json_object_get(o, "add"), *remove = json_object_get(o, "remove");
	const json_t *wake = json_object_get(o, "wake");
	size_t nadd = json_is_array(add) ? json_array_size(add) : 0;
	size_t nremove = json_is_array(remove) ? json_array_size(remove) : 0;
	size_t nwake = json_is_array(wake) ? json_array_size(wake) : 0;
	const char **a = util_xcalloc(nadd + 1, sizeof(*a));
	const char **r = util_xcalloc(nremove + 1, sizeof(*r));
	const char **wk = util_xcalloc(nwake + 1, sizeof(*wk));
	size_t na = 0, nr = 0, nw = 0, bad = 0;
	if (nadd)
		bad += stream_names(w, add, true, a, &na);
	if (nremove)
		bad += stream_names(w, remove, false, r, &nr);
	if (nwake)
		bad += stream_names(w, wake, false, wk, &nw);
	if (bad)
		log_warn("%s: %zu stream names from the master left out (not matching a pattern of pool %s, "
			 "own keys, empty or too long)", __func__, bad, w->pool->name);
	log_debug("streams: %zu added, %zu removed, %zu woken", na, nr, nw);
	consumer_streams_update(w->consumer, a, na, r, nr);
	consumer_streams_wake(w->consumer, wk, nw);
	free(a);
	free(r);
	free(wk);
	json_decref(o);
}

static void apply_master_message(struct worker *w, const struct chan_msg *m)
{
	switch (m->type) {
	case CHAN_M_PAUSE:
		if (!w->paused)
			log_info("paused");
		w->paused = true;
		break;
	case CHAN_M_RESUME:
		if (w->paused)
			log_info("resumed");
		w->paused = false;
		break;
	case CHAN_M_LEVEL: {
		int32_t lvl = chan_get_i32(m);
		if (lvl >= LOG_DEBUG && lvl <= LOG_ERROR)
			log_set_level((enum log_level)lvl);
		break;
	}
	case CHAN_M_STREAMS:
		apply_streams(w, m);
		break;
	}
}

static void master_went_away(struct worker *w, const char *why)
{
	if (!w->master_gone)
		log_warn("master went away (%s); finishing up", why);
	w->master_gone = true;
	worker_stop = 1;
}

/* Read and apply what the master sent (non-blocking). */
static void worker_poll_master(struct worker *w)
{
	ssize_t n;
	while ((n = chan_reader_fill(&w->chan, w->args->chan_fd)) > 0)
		;
	struct chan_msg m;
	int r;
	while ((r = chan_next(&w->chan, &m)) > 0)
		apply_master_message(w, &m);
	if (r < 0)
		master_went_away(w, w->chan.why);
	else if (n == 0)
		/* EOF: the master is gone (PDEATHSIG may lag behind). */
		master_went_away(w, "channel closed");
}

/* Wait up to ms for the master's channel or a signal; applies messages. */
static void worker_wait(struct worker *w, int64_t ms)
{
	if (worker_stop)
		return;
	struct pollfd pfd = {.fd = w->args->chan_fd, .events = POLLIN};
	int r = poll(&pfd, 1, ms > INT32_MAX ? INT32_MAX : (int)ms);
	if (r > 0)
		worker_poll_master(w);
}

/* Send one message to the master over the channel (chan.h). */
static void worker_tell_master(struct worker *w, enum chan_type type, const void *payload, size_t len)
{
	if (chan_send(w->args->chan_fd, type, payload, len) < 0)
		w->master_gone = true;
}

#if SV_FAULT_INJECTION
/* Test seam chan.POOL: send the master one bad message after
 * registering (see fault.h). */
static void send_fault_message(struct worker *w)
{
	char name[300], what[64];
	snprintf(name, sizeof(name), "chan.%s", w->pool->name);
	if (!fault_active(name, what, sizeof(what)))
		return;
	log_warn("fault injection: sending the master a bad channel message (%s)", what);
	int fd = w->args->chan_fd;
	if (strncmp(what, "tool ", 5) == 0) {
		int32_t pid = (int32_t)atoi(what + 5);
		chan_send(fd, CHAN_W_TOOL, &pid, sizeof(pid));
	} else if (strcmp(what, "garbage") == 0) {
		util_write_all(fd, "tool_pgid 1\n", 12);
	} else if (strcmp(what, "oversize") == 0) {
		struct chan_hdr h = {.type = CHAN_W_REGISTERED, .len = CHAN_FRAME_MAX + 1};
		util_write_all(fd, &h, sizeof(h));
	} else if (strcmp(what, "unknown") == 0) {
		struct chan_hdr h = {.type = 999, .len = 0};
		util_write_all(fd, &h, sizeof(h));
	}
}
#else
static void send_fault_message(struct worker *w)
{
	(void)w;
}
#endif

static void update_status(struct worker *w)
{
	if (w->hb.status == HB_BUSY || w->hb.status == HB_DEGRADED)
		return;
	w->hb.status = w->paused ? HB_PAUSED : HB_IDLE;
}

/* One round of the loop: connect, register, work, beat.  Returns 0 to go
 * on or an exit status. */
static int worker_round(struct worker *w)
{
	int64_t now = util_mono_ms();
	if (!rconn_ready(&w->rc, now)) {
		worker_wait(w, rconn_wait_ms(&w->rc, now));
		return 0;
	}
	if (!w->hb.registered) {
		int r = heartbeat_register(&w->hb, &w->rc);
		if (r == 0) {
			if (!w->fence_reported)
				worker_tell_master(w, CHAN_W_FENCE_WAIT, NULL, 0);
			w->fence_reported = true;
			worker_wait(w, w->cfg->heartbeat.interval_ms / 2);
		}
		if (r == 1) {
			int64_t inc = w->hb.incarnation;
			worker_tell_master(w, CHAN_W_REGISTERED, &inc, sizeof(inc));
			send_fault_message(w);
		}
		return 0;
	}
	if (w->consumer)
		return consumer_step(w->consumer);
	update_status(w);
	/* A kind without stream work: stay idle and keep the heartbeat. */
	worker_wait(w, heartbeat_next_ms(&w->hb, util_mono_ms()));
	/* -EPERM: the fence is lost (logged): give the name up.  -ENOTCONN:
	 * dropped (logged): the next round reconnects. */
	if (heartbeat_beat_if_due(&w->hb, &w->rc) == -EPERM)
		return SV_EX_TRANSIENT;
	return 0;
}

/* ---------- the consumer's host (consumer.h) ---------- */

static void worker_host_wait(void *ctx, int64_t ms)
{
	struct worker *w = ctx;
	/* 0: apply what already arrived, even while stopping (as the loop
	 * always did before each read). */
	if (ms <= 0)
		worker_poll_master(w);
	else
		worker_wait(w, ms);
}

static bool worker_host_paused(void *ctx)
{
	const struct worker *w = ctx;
	return w->paused;
}

static bool worker_host_stopping(void *ctx)
{
	(void)ctx;
	return worker_stop;
}

/* A tool is left running only while someone can still judge it. */
static bool worker_host_abandon(void *ctx)
{
	const struct worker *w = ctx;
	return worker_stop && w->master_gone;
}

static void worker_host_stop(void *ctx)
{
	(void)ctx;
	worker_stop = 1;
}

static void worker_host_progress(void *ctx)
{
	worker_tell_master(ctx, CHAN_W_PROGRESS, NULL, 0);
}

/* For status only: the master checks the claim against /proc and never
 * signals anything because of it (orphans are found by the kernel's
 * word, children.h). */
static void worker_host_work_group(void *ctx, pid_t pgid)
{
	int32_t pid = (int32_t)pgid;
	worker_tell_master(ctx, CHAN_W_TOOL, &pid, sizeof(pid));
}

static void worker_host_init(struct worker *w, struct consumer_host *h)
{
	*h = (struct consumer_host){
		.rc = &w->rc,
		.hb = &w->hb,
		.pool = w->pool,
		.unclean = w->args->unclean,
		/* One warning per pool, not one per worker. */
		.warn_redis_config = w->args->slot == 0,
		.wake_fd = w->args->chan_fd,
		.ctx = w,
		.wait = worker_host_wait,
		.paused = worker_host_paused,
		.stopping = worker_host_stopping,
		.abandon = worker_host_abandon,
		.stop = worker_host_stop,
		.progress = worker_host_progress,
		.work_group = worker_host_work_group,
	};
}

static void worker_kind_init(struct worker *w)
{
	if (w->pool->kind == POOL_PERSISTENCE)
		worker_persist_init(w->cfg, w->pool, w->args->slot, &w->kind);
	else if (w->pool->kind == POOL_TOOL)
		worker_tool_init(w->cfg, w->pool, &w->kind), heartbeat_tools_init(&w->hb, w->cfg, w->pool);
	else
		return;
	struct consumer_host host;
	worker_host_init(w, &host);
	w->consumer = consumer_new(&host, &w->kind);
}

static void worker_kind_free(struct worker *w)
{
	if (w->consumer) {
		if (w->pool->kind == POOL_TOOL)
			worker_tool_finish(&w->kind, w->consumer);
		consumer_finish(w->consumer);
		consumer_free(w->consumer);
		w->consumer = NULL;
	}
	if (w->pool->kind == POOL_PERSISTENCE)
		worker_persist_free(&w->kind);
	else if (w->pool->kind == POOL_TOOL)
		worker_tool_free(&w->kind);
}

static int worker_setup(struct worker *w, const struct worker_args *a)
{
	memset(w, 0, sizeof(*w));
	w->args = a;
	w->cfg = a->cfg;
	w->pool = a->pool;
	w->paused = a->paused;
	chan_reader_init(&w->chan, CHAN_FROM_MASTER_TO_WORKER);
	util_set_nonblock(a->chan_fd);
	rconn_init(&w->rc, a->cfg, a->cfg->heartbeat.interval_ms < 5000 ? a->cfg->heartbeat.interval_ms : 5000);
	heartbeat_init(&w->hb, a->cfg, a->pool->name, config_pool_kind_name(a->pool->kind),
		       a->slot, a->restarts, a->prev_pid);
	return 0;
}

int worker_main(const struct worker_args *a)
{
	worker_signals();
	/* Finish the entry in hand and exit if the master dies. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != a->master_pid)
		return SV_EX_OK;
	util_rand_reseed();

	char proc[256];
	snprintf(proc, sizeof(proc), "%s/%d", a->pool->name, a->slot);
	log_open_child(proc, a->cfg->log.level);

	char code[32];
	char fault[300];
	snprintf(fault, sizeof(fault), "exit.%s", a->pool->name);
	if (fault_active(fault, code, sizeof(code))) {
		int c = code[0] ? atoi(code) : 1;
		log_error("fault injection: exiting with status %d", c);
		/* At once, as a crash at start would: no exit handlers (a
		 * sanitizer's leak scan would stretch the start past start_ms). */
		_exit(c);
	}

	struct worker w;
	worker_setup(&w, a);
	log_info("worker started%s", a->unclean ? " (predecessor exited uncleanly)" : "");
	int status = 0;
	worker_kind_init(&w);
	while (!worker_stop && status == 0)
		status = worker_round(&w);
	worker_kind_free(&w);
	heartbeat_release(&w.hb, &w.rc);
	heartbeat_free(&w.hb);
	rconn_close(&w.rc);
	chan_reader_free(&w.chan);
	log_info("worker exiting with status %d", status);
	return status;
}
