/* handler: the process manager of one persistent tool's handler (see
 * include/handler.h; lifecycle in doc/handlers.md 2.1). */
#include "handler.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff.h"
#include "log.h"
#include "spawn.h"
#include "util.h"

/* A handler that crashes again this soon after its last crash restarts
 * after a backoff, not at once: a crash loop must not spin. */
#define HANDLER_CRASH_WINDOW_MS 10000
#define HANDLER_RSS_EVERY_MS 1000
#define HANDLER_ERRLINE_MAX 4096
/* cur + 2 draining, 5 fds each: within HANDLER_POLL_MAX. */
#define HANDLER_DRAINING_MAX 2

struct hcall {
	uint64_t id;
	void *owner;
	int64_t deadline_ms, timeout_ms;
	int64_t kill_at;   /* cancelled: killed if still unsettled then */
	bool cancelled;    /* timed out, cancel sent: its answer is dropped */
	bool suspect;      /* a suspect re-dispatch: runs alone */
};

/* Why a process ended. */
enum hend {
	END_EXIT,       /* exited or was killed by someone else */
	END_NOT_READY,  /* failed start: garbage before ready, start timeout */
	END_VIOLATION,  /* protocol violation: calls in flight fail */
	END_TIMEOUT,    /* concurrency 1: killed for its timed-out call */
	END_KILL,       /* grace, drain or stop timeout: calls are suspect */
};

struct hproc {
	struct spawn_proc sp;
	char pidstr[16];
	bool ready, draining, gone;
	int64_t ready_deadline, kill_at, next_rss_ms;
	uint64_t sent;              /* calls sent to this process (max_calls) */
	int64_t over_rss;           /* its RSS in MiB once over max_rss_mb */
	struct outq inq;
	struct linebuf anslb, outlb, errlb;
	struct spawn_rate rate;
	char last_err[160];         /* its last stderr line */
	struct hcall *calls;
	size_t n, cap;
	uint64_t *recent;           /* ring of ids sent here and settled */
	size_t nrecent, recent_pos;
	struct hproc *next;         /* in h->draining or h->dead */
};

struct handler {
	const struct tool_config *t;
	const struct sv_config *cfg;
	struct handler_events ev;
	void *ctx;
	struct hproc *cur;          /* starting or ready; NULL when down */
	struct hproc *draining;     /* old processes finishing their calls */
	struct hproc *dead;         /* ended in this service pass: freed at its end */
	enum handler_state down;    /* state while cur is NULL */
	struct backoff bo;
	int64_t next_start_ms, last_crash_ms;
	int64_t failed_starts;
	uint64_t served, starts;
	char last_error[400];
	bool stopping;
	int64_t stop_deadline;
	void **failing;             /* owners of calls taken while FAILED */
	size_t nfailing, capfailing;
	/* What the state event last said. */
	enum handler_state told_state;
	pid_t told_pid;
	bool told_draining;
};

/* ---------- small pieces ---------- */

const char *handler_state_name(enum handler_state s)
{
	static const char *const names[] = {"down", "starting", "ready", "backoff", "failed", "stopping", "stopped"};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

static enum handler_state state_of(const struct handler *h)
{
	if (h->stopping)
		return h->cur || h->draining ? HANDLER_STOPPING : HANDLER_STOPPED;
	if (h->cur)
		return h->cur->ready ? HANDLER_READY : HANDLER_STARTING;
	return h->down;
}

static size_t procs_inflight(const struct hproc *p)
{
	size_t n = 0;
	for (; p; p = p->next)
		n += p->n;
	return n;
}

void handler_status(const struct handler *h, struct handler_status *st)
{
	st->pid = h->cur ? h->cur->sp.pid : 0;
	st->state = state_of(h);
	st->draining = h->draining != NULL;
	st->inflight = (h->cur ? h->cur->n : 0) + procs_inflight(h->draining);
	st->served = h->served;
	st->restarts = h->starts > 1 ? h->starts - 1 : 0;
	st->last_error = h->last_error;
}

/* Tell the owner when the state, pid or draining changed. */
static void notify(struct handler *h)
{
	struct handler_status st;
	handler_status(h, &st);
	if (st.state == h->told_state && st.pid == h->told_pid && st.draining == h->told_draining)
		return;
	h->told_state = st.state;
	h->told_pid = st.pid;
	h->told_draining = st.draining;
	if (h->ev.state)
		h->ev.state(h->ctx, &st);
}

static void set_last_error(struct handler *h, const char *why)
{
	snprintf(h->last_error, sizeof(h->last_error), "%s", why);
}

static void recent_push(struct hproc *p, uint64_t id)
{
	p->recent[p->recent_pos] = id;
	p->recent_pos = (p->recent_pos + 1) % HANDLER_RECENT_IDS;
	if (p->nrecent < HANDLER_RECENT_IDS)
		p->nrecent++;
}

static bool recent_has(const struct hproc *p, uint64_t id)
{
	for (size_t i = 0; i < p->nrecent; i++)
		if (p->recent[i] == id)
			return true;
	return false;
}

static ssize_t call_find(const struct hproc *p, uint64_t id)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->calls[i].id == id)
			return (ssize_t)i;
	return -1;
}

/* Take call i out of flight (order is not kept: answers come in any
 * order anyway); its id goes to the ring for late answers. */
static struct hcall call_take(struct hproc *p, size_t i)
{
	struct hcall c = p->calls[i];
	p->calls[i] = p->calls[--p->n];
	recent_push(p, c.id);
	return c;
}

/* ---------- processes ---------- */

static void proc_free(struct hproc *p)
{
	spawn_proc_close(&p->sp);
	outq_free(&p->inq);
	linebuf_free(&p->anslb);
	linebuf_free(&p->outlb);
	linebuf_free(&p->errlb);
	free(p->calls);
	free(p->recent);
	free(p);
}

static void list_remove(struct hproc **list, struct hproc *p)
{
	for (; *list; list = &(*list)->next)
		if (*list == p) {
			*list = p->next;
			p->next = NULL;
			return;
		}
}

/* One line of the handler's stdout or stderr into the log. */
static void log_output_line(struct handler *h, struct hproc *p, const char *which, const char *line)
{
	unsigned suppressed;
	bool take = spawn_rate_take(&p->rate, util_mono_ms(), &suppressed);
	if (suppressed)
		log_kv(LOG_WARN, KV("tool", h->t->name, "handler_pid", p->pidstr), "%u handler output lines suppressed",
		       suppressed);
	if (take)
		log_kv(LOG_INFO, KV("tool", h->t->name, "handler_pid", p->pidstr), "handler %s: %.1000s", which, line);
}

/* Read what is there on stdout or stderr; closes it at EOF. */
static void read_log_fd(struct handler *h, struct hproc *p, int *fd, struct linebuf *lb, bool is_err)
{
	ssize_t n;
	do {
		n = linebuf_fill(lb, *fd);
		char *line;
		int r;
		while ((r = linebuf_next(lb, &line)) != 0) {
			if (r < 0)
				continue;
			log_output_line(h, p, is_err ? "stderr" : "stdout", line);
			if (is_err && *line)
				snprintf(p->last_err, sizeof(p->last_err), "%s", line);
		}
	} while (n > 0);
	if (n == 0 || (n < 0 && n != -EAGAIN)) {
		close(*fd);
		*fd = -1;
	}
}

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "ended");
}

/* Kill the group (before reaping, so its pgid cannot have been reused:
 * the leader's pid stays ours until waitpid), reap, and read the last of
 * its stderr.  *status gets the exit status. */
static void proc_reap(struct handler *h, struct hproc *p, int *status)
{
	*status = 0;
	if (p->sp.pid <= 0)
		return;
	spawn_kill_group(p->sp.pid, SIGKILL);
	while (waitpid(p->sp.pid, status, 0) < 0 && errno == EINTR)
		;
	p->sp.pid = -p->sp.pid; /* reaped: never signal it again */
	if (p->sp.err >= 0)
		read_log_fd(h, p, &p->sp.err, &p->errlb, true);
	if (p->sp.out >= 0)
		read_log_fd(h, p, &p->sp.out, &p->outlb, false);
}

/* When the next start of a ready handler that died happens. */
static void schedule_restart(struct handler *h, enum hend why, int64_t now)
{
	h->down = HANDLER_DOWN;
	h->next_start_ms = now;
	if (why == END_EXIT) {
		if (h->last_crash_ms && now - h->last_crash_ms < HANDLER_CRASH_WINDOW_MS)
			h->next_start_ms = now + backoff_next(&h->bo, util_rand32());
		h->last_crash_ms = now;
	}
}

/* A start that failed: back off, or FAILED after max_retries in a row. */
static void start_failed(struct handler *h, const char *why, int64_t now)
{
	h->failed_starts++;
	set_last_error(h, why);
	int64_t max = h->cfg->restart.max_retries > 0 ? h->cfg->restart.max_retries : 1;
	if (h->failed_starts >= max) {
		if (h->down != HANDLER_FAILED)
			log_kv(LOG_ERROR, KV("tool", h->t->name), "%s: handler failed to start %lld times: %s", __func__,
			       (long long)h->failed_starts, why);
		h->down = HANDLER_FAILED;
		h->next_start_ms = now + h->cfg->restart.backoff_max_ms;
	} else {
		h->down = HANDLER_BACKOFF;
		h->next_start_ms = now + backoff_next(&h->bo, util_rand32());
	}
}

/* End process p: kill its group, reap it, and settle its calls in flight
 * (failed with msg after a violation, suspect otherwise; cancelled ones
 * already had their event).  Events are sent last, when the handler's
 * state is consistent again, since an owner may send from them. */
static void proc_end(struct handler *h, struct hproc *p, enum hend why, const char *msg, int64_t now)
{
	if (p->gone)
		return;
	p->gone = true;
	int status;
	proc_reap(h, p, &status);
	/* msg NULL: it ended on its own; its exit status tells how.  The
	 * last stderr line goes with it: usually the reason. */
	char what[320], st[96];
	if (!msg)
		describe_status(status, st, sizeof(st));
	snprintf(what, sizeof(what), "%s%s%s", msg ? msg : st, p->last_err[0] ? ": " : "", p->last_err);
	bool was_cur = p == h->cur;
	if (was_cur)
		h->cur = NULL;
	else
		list_remove(&h->draining, p);
	p->next = h->dead;
	h->dead = p;

	struct hcall *calls = p->calls;
	size_t n = p->n;
	p->calls = NULL;
	p->n = p->cap = 0;

	if (n || why != END_EXIT || !p->draining)
		log_kv(why == END_EXIT && !n ? LOG_INFO : LOG_WARN,
		       KV("tool", h->t->name, "handler_pid", p->pidstr), "handler ended%s: %s; %zu calls in flight",
		       p->ready ? "" : " before ready", what, n);
	if (was_cur && !h->stopping) {
		if (!p->ready) {
			start_failed(h, what, now);
		} else {
			set_last_error(h, what);
			schedule_restart(h, why, now);
		}
	}
	char fail_msg[360];
	snprintf(fail_msg, sizeof(fail_msg), "handler protocol violation: %s", what);
	for (size_t i = 0; i < n; i++) {
		if (calls[i].cancelled)
			continue;
		if (why == END_VIOLATION)
			h->ev.failed(h->ctx, calls[i].owner, fail_msg);
		else
			h->ev.suspect(h->ctx, calls[i].owner);
	}
	free(calls);
	notify(h);
}

static void proc_violation(struct handler *h, struct hproc *p, int64_t now, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void proc_violation(struct handler *h, struct hproc *p, int64_t now, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_kv(LOG_WARN, KV("tool", h->t->name, "handler_pid", p->pidstr), "%s: handler protocol violation: %s",
	       __func__, why);
	proc_end(h, p, p->ready ? END_VIOLATION : END_NOT_READY, why, now);
}

static int proc_start(struct handler *h, int64_t now)
{
	struct hproc *p = calloc(1, sizeof(*p));
	uint64_t *recent = calloc(HANDLER_RECENT_IDS, sizeof(*recent));
	if (!p || !recent) {
		free(p);
		free(recent);
		log_error("%s: out of memory", __func__);
		return -ENOMEM;
	}
	p->recent = recent;
	p->sp = (struct spawn_proc){.pidfd = -1, .in = -1, .out = -1, .err = -1, .answers = -1};
	linebuf_init(&p->anslb, (size_t)h->t->max_output + 4096);
	linebuf_init(&p->outlb, HANDLER_ERRLINE_MAX);
	linebuf_init(&p->errlb, HANDLER_ERRLINE_MAX);
	h->starts++;
	int r = spawn_tool_start(h->t, NULL, 0, true, &p->sp);
	if (r < 0) {
		char why[256];
		snprintf(why, sizeof(why), "cannot start %s: %s", h->t->command.v[0], strerror(-r));
		log_kv(LOG_ERROR, KV("tool", h->t->name), "%s: %s", __func__, why);
		proc_free(p);
		start_failed(h, why, now);
		return r;
	}
	snprintf(p->pidstr, sizeof(p->pidstr), "%d", (int)p->sp.pid);
	p->ready_deadline = now + h->t->start_timeout_ms;
	p->next_rss_ms = now + HANDLER_RSS_EVERY_MS;
	h->cur = p;
	log_kv(LOG_INFO, KV("tool", h->t->name, "handler_pid", p->pidstr), "handler started");
	return 0;
}

/* Stop giving p calls; EOF once its input is written and nothing is in
 * flight; killed at kill_at. */
static void proc_drain(struct handler *h, struct hproc *p, int64_t kill_at, const char *why)
{
	if (p == h->cur)
		h->cur = NULL;
	p->draining = true;
	p->kill_at = kill_at;
	p->next = h->draining;
	h->draining = p;
	log_kv(LOG_INFO, KV("tool", h->t->name, "handler_pid", p->pidstr), "handler draining: %s", why);
}

/* Recycle the current process when it reached max_calls or went over
 * max_rss_mb: it drains, and a replacement starts at once (at the next
 * service pass), so capacity stays under constant load.  At most
 * HANDLER_DRAINING_MAX drain at a time (fds and processes stay bounded);
 * past that it keeps serving until one of them is gone. */
static void maybe_recycle(struct handler *h, struct hproc *p, int64_t now)
{
	bool calls = h->t->max_calls > 0 && p->sent >= (uint64_t)h->t->max_calls;
	if (h->stopping || !p->ready || (!calls && !p->over_rss))
		return;
	size_t ndraining = 0;
	for (const struct hproc *d = h->draining; d; d = d->next)
		ndraining++;
	if (ndraining >= HANDLER_DRAINING_MAX)
		return;
	char why[64];
	if (calls)
		snprintf(why, sizeof(why), "max_calls %lld reached", (long long)h->t->max_calls);
	else
		snprintf(why, sizeof(why), "RSS %lld MiB over max_rss_mb", (long long)p->over_rss);
	proc_drain(h, p, now + h->cfg->restart.stop_timeout_ms, why);
	h->down = HANDLER_DOWN;
	h->next_start_ms = now;
	notify(h);
}

/* A draining process with nothing left gets EOF on stdin. */
static void proc_maybe_eof(struct hproc *p)
{
	if (p->draining && p->sp.in >= 0 && p->n == 0 && !outq_pending(&p->inq)) {
		close(p->sp.in);
		p->sp.in = -1;
	}
}

/* ---------- answers ---------- */

static bool parse_id(const json_t *v, uint64_t *id)
{
	const char *s = json_string_value(v);
	if (!s || *s < '0' || *s > '9' || strlen(s) > 20)
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*id = x;
	return true;
}

static void answer_ready(struct handler *h, struct hproc *p, json_t *v, int64_t now)
{
	if (!json_is_true(json_object_get(v, "ready"))) {
		proc_violation(h, p, now, "first line on fd 3 is not {\"ready\": true}");
		return;
	}
	p->ready = true;
	h->failed_starts = 0;
	/* A crash loop keeps its growing backoff; anything else starts over. */
	if (!h->last_crash_ms || now - h->last_crash_ms >= HANDLER_CRASH_WINDOW_MS)
		backoff_reset(&h->bo);
	log_kv(LOG_INFO, KV("tool", h->t->name, "handler_pid", p->pidstr), "handler ready");
	notify(h);
}

/* One line read on fd 3. */
static void answer_line(struct handler *h, struct hproc *p, const char *line, size_t len, int64_t now)
{
	json_error_t je;
	json_t *v = json_loadb(line, len, 0, &je);
	if (!v || !json_is_object(v)) {
		json_decref(v);
		proc_violation(h, p, now, "not a JSON object: %.80s", line);
		return;
	}
	if (!p->ready) {
		answer_ready(h, p, v, now);
		json_decref(v);
		return;
	}
	uint64_t id;
	if (json_object_get(v, "ready")) {
		json_decref(v); /* said twice: harmless */
		return;
	}
	if (!parse_id(json_object_get(v, "id"), &id)) {
		json_decref(v);
		proc_violation(h, p, now, "answer without a decimal string id: %.80s", line);
		return;
	}
	ssize_t i = call_find(p, id);
	if (i < 0 || p->calls[i].cancelled) {
		if (i < 0 && !recent_has(p, id)) {
			json_decref(v);
			proc_violation(h, p, now, "answer for id %" PRIu64 " never sent", id);
			return;
		}
		if (i >= 0)
			call_take(p, (size_t)i);
		log_kv(LOG_INFO, KV("tool", h->t->name, "handler_pid", p->pidstr),
		       "late answer for id %" PRIu64 " (cancelled or settled) dropped", id);
		json_decref(v);
		proc_maybe_eof(p);
		return;
	}
	const json_t *output = json_object_get(v, "output");
	const json_t *err = json_object_get(v, "error");
	if (!output && !json_is_object(err)) {
		json_decref(v);
		proc_violation(h, p, now, "answer for id %" PRIu64 " has neither output nor error", id);
		return;
	}
	struct hcall c = call_take(p, (size_t)i);
	h->served++;
	proc_maybe_eof(p);
	if (output) {
		h->ev.answer(h->ctx, c.owner, output, NULL);
	} else {
		const char *msg = json_string_value(json_object_get(err, "message"));
		h->ev.answer(h->ctx, c.owner, NULL, msg ? msg : "handler error without a message");
	}
	json_decref(v);
}

/* Read fd 3 until nothing is left; false when p ended meanwhile. */
static bool read_answers(struct handler *h, struct hproc *p, int64_t now)
{
	ssize_t n;
	do {
		n = linebuf_fill(&p->anslb, p->sp.answers);
		char *line;
		int r;
		while ((r = linebuf_next(&p->anslb, &line)) != 0) {
			if (r < 0) {
				proc_violation(h, p, now, "line on fd 3 over %lld bytes",
					       (long long)h->t->max_output + 4096);
				return false;
			}
			answer_line(h, p, line, strlen(line), now);
			if (p->gone)
				return false;
		}
	} while (n > 0);
	if (n == 0 || (n < 0 && n != -EAGAIN)) {
		/* fd 3 closed: it can answer nothing more, whether it is
		 * exiting or not. */
		close(p->sp.answers);
		p->sp.answers = -1;
		proc_end(h, p, p->ready ? END_EXIT : END_NOT_READY, NULL, now);
		return false;
	}
	return true;
}

/* ---------- writing calls ---------- */

static int proc_write(struct hproc *p, const char *line)
{
	if (p->sp.in < 0)
		return -EPIPE;
	int r = outq_write(&p->inq, p->sp.in, line, strlen(line));
	/* EPIPE: it is dying; the pidfd tells, and its calls become suspect. */
	return r == -EPIPE ? 0 : r;
}

static char *call_line(const struct handler_call *c)
{
	json_t *args = json_loads(c->arguments ? c->arguments : "null", JSON_DECODE_ANY, NULL);
	if (!args)
		args = json_string(c->arguments); /* not JSON: sent as the text it is */
	char id[24];
	snprintf(id, sizeof(id), "%" PRIu64, c->id);
	int64_t wall = util_wall_ms() + (c->deadline_ms - util_mono_ms());
	json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:o?, s:I}", "id", id, "call_id", c->call_id, "run", c->run,
			      "name", c->name, "arguments", args, "deadline_ms", (json_int_t)wall);
	if (!o)
		return NULL;
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return NULL;
	/* Compact JSON has no raw newline: the line ends here. */
	size_t len = strlen(s);
	char *line = realloc(s, len + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[len] = '\n';
	line[len + 1] = '\0';
	return line;
}

static bool id_in_flight(const struct handler *h, uint64_t id)
{
	if (h->cur && call_find(h->cur, id) >= 0)
		return true;
	for (const struct hproc *p = h->draining; p; p = p->next)
		if (call_find(p, id) >= 0)
			return true;
	return false;
}

static bool suspect_in_flight(const struct hproc *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->calls[i].suspect)
			return true;
	return false;
}

size_t handler_free_slots(const struct handler *h)
{
	size_t conc = (size_t)h->t->concurrency;
	if (h->stopping)
		return 0;
	if (!h->cur)
		return h->down == HANDLER_FAILED ? conc : 0;
	if (!h->cur->ready || suspect_in_flight(h->cur))
		return 0;
	return h->cur->n < conc ? conc - h->cur->n : 0;
}

size_t handler_inflight(const struct handler *h)
{
	return (h->cur ? h->cur->n : 0) + procs_inflight(h->draining);
}

static int fail_later(struct handler *h, void *owner)
{
	if (h->nfailing == h->capfailing) {
		size_t cap = h->capfailing ? h->capfailing * 2 : 16;
		void **v = realloc(h->failing, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->failing = v;
		h->capfailing = cap;
	}
	h->failing[h->nfailing++] = owner;
	return 0;
}

int handler_send(struct handler *h, const struct handler_call *c)
{
	if (!h->stopping && !h->cur && h->down == HANDLER_FAILED)
		return fail_later(h, c->owner);
	struct hproc *p = h->cur;
	if (handler_free_slots(h) == 0 || !p)
		return -EAGAIN;
	if ((c->flags & HANDLER_CALL_SUSPECT) && p->n > 0)
		return -EAGAIN;
	if (id_in_flight(h, c->id))
		return -EEXIST;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct hcall *v = realloc(p->calls, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->calls = v;
		p->cap = cap;
	}
	char *line = call_line(c);
	if (!line)
		return -ENOMEM;
	int r = proc_write(p, line);
	free(line);
	if (r < 0 && r != -EPIPE) {
		log_kv(LOG_ERROR, KV("tool", h->t->name, "handler_pid", p->pidstr), "%s: cannot queue call: %s",
		       __func__, strerror(-r));
		return r;
	}
	p->calls[p->n++] = (struct hcall){.id = c->id, .owner = c->owner, .deadline_ms = c->deadline_ms,
					  .timeout_ms = c->timeout_ms,
					  .suspect = (c->flags & HANDLER_CALL_SUSPECT) != 0};
	p->sent++;
	maybe_recycle(h, p, util_mono_ms());
	return 0;
}

/* ---------- deadlines ---------- */

/* Calls past their deadline: a timeout output each; concurrency 1 kills
 * the handler, more cancels and kills only after the grace. */
static void check_timeouts(struct handler *h, struct hproc *p, int64_t now)
{
	char msg[64];
	for (size_t i = 0; i < p->n && !p->gone;) {
		struct hcall *c = &p->calls[i];
		if (c->cancelled) {
			if (now >= c->kill_at) {
				proc_end(h, p, END_KILL, "did not settle a cancelled call within the grace", now);
				return;
			}
			i++;
			continue;
		}
		if (now < c->deadline_ms) {
			i++;
			continue;
		}
		snprintf(msg, sizeof(msg), "timed out after %lld ms", (long long)c->timeout_ms);
		void *owner = c->owner;
		if (h->t->concurrency == 1) {
			call_take(p, i);
			/* Killed first: the owner may send its next call from
			 * the event, and it must not go to this process. */
			proc_end(h, p, END_TIMEOUT, msg, now);
			h->ev.failed(h->ctx, owner, msg);
			return;
		}
		char line[64];
		snprintf(line, sizeof(line), "{\"cancel\":\"%" PRIu64 "\"}\n", c->id);
		c->cancelled = true;
		c->kill_at = now + HANDLER_KILL_GRACE_MS;
		(void)proc_write(p, line);
		h->ev.failed(h->ctx, owner, msg);
		i = 0; /* the event may have sent calls: look again */
	}
}

static int64_t proc_rss_mb(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	long long size, resident;
	int n = fscanf(f, "%lld %lld", &size, &resident);
	fclose(f);
	if (n != 2)
		return -1;
	return resident * sysconf(_SC_PAGESIZE) / (1024 * 1024);
}

static bool proc_exited(const struct hproc *p)
{
	if (p->sp.pidfd >= 0) {
		struct pollfd pfd = {.fd = p->sp.pidfd, .events = POLLIN};
		return poll(&pfd, 1, 0) > 0;
	}
	siginfo_t si = {0};
	/* WNOWAIT: the group is killed before the leader is reaped. */
	return waitid(P_PID, (id_t)p->sp.pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == p->sp.pid;
}

static void check_proc(struct handler *h, struct hproc *p, int64_t now)
{
	if (!p->ready && now >= p->ready_deadline) {
		char why[96];
		snprintf(why, sizeof(why), "not ready within %lld ms", (long long)h->t->start_timeout_ms);
		proc_end(h, p, END_NOT_READY, why, now);
		return;
	}
	if (p->draining && now >= p->kill_at) {
		proc_end(h, p, END_KILL, h->stopping ? "still running at the stop timeout" : "still draining at the stop timeout", now);
		return;
	}
	if (p->sp.pidfd < 0 && proc_exited(p)) {
		if (p->sp.answers >= 0 && !read_answers(h, p, now))
			return;
		proc_end(h, p, p->ready ? END_EXIT : END_NOT_READY, NULL, now);
		return;
	}
	check_timeouts(h, p, now);
	if (p->gone)
		return;
	if (p == h->cur && p->ready && h->t->max_rss_mb > 0 && now >= p->next_rss_ms) {
		p->next_rss_ms = now + HANDLER_RSS_EVERY_MS;
		int64_t mb = proc_rss_mb(p->sp.pid);
		if (mb > h->t->max_rss_mb)
			p->over_rss = mb;
	}
	if (p == h->cur)
		maybe_recycle(h, p, now);
	proc_maybe_eof(p);
}

/* ---------- poll interface ---------- */

static void lower(int64_t *deadline, int64_t t)
{
	if (t < *deadline)
		*deadline = t;
}

static size_t proc_fds(struct hproc *p, struct pollfd *fds, size_t max, int64_t *deadline)
{
	size_t n = 0;
	int want[5];
	short ev[5];
	size_t k = 0;
	if (p->sp.pidfd >= 0)
		want[k] = p->sp.pidfd, ev[k++] = POLLIN;
	if (p->sp.answers >= 0)
		want[k] = p->sp.answers, ev[k++] = POLLIN;
	if (p->sp.out >= 0)
		want[k] = p->sp.out, ev[k++] = POLLIN;
	if (p->sp.err >= 0)
		want[k] = p->sp.err, ev[k++] = POLLIN;
	if (p->sp.in >= 0 && outq_pending(&p->inq))
		want[k] = p->sp.in, ev[k++] = POLLOUT;
	for (size_t i = 0; i < k && n < max; i++)
		fds[n++] = (struct pollfd){.fd = want[i], .events = ev[i]};
	if (!p->ready)
		lower(deadline, p->ready_deadline);
	if (p->draining)
		lower(deadline, p->kill_at);
	for (size_t i = 0; i < p->n; i++)
		lower(deadline, p->calls[i].cancelled ? p->calls[i].kill_at : p->calls[i].deadline_ms);
	if (p->sp.pidfd < 0)
		lower(deadline, util_mono_ms() + 50); /* exit noticed by polling */
	return n;
}

size_t handler_poll_fds(struct handler *h, struct pollfd *fds, size_t max, int64_t *deadline_ms)
{
	size_t n = 0;
	if (h->cur) {
		n += proc_fds(h->cur, fds, max, deadline_ms);
		if (h->cur->ready && h->t->max_rss_mb > 0)
			lower(deadline_ms, h->cur->next_rss_ms);
	} else if (!h->stopping) {
		lower(deadline_ms, h->next_start_ms);
	}
	for (struct hproc *p = h->draining; p; p = p->next)
		n += proc_fds(p, fds + n, max - n, deadline_ms);
	if (h->nfailing)
		lower(deadline_ms, 0);
	return n;
}

static short revents_of(const struct pollfd *fds, size_t n, int fd)
{
	if (fd < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (fds[i].fd == fd)
			return fds[i].revents;
	return 0;
}

/* Act on the revents of one process's fds; the pidfd last, so that what
 * it wrote before exiting is read first. */
static void service_proc(struct handler *h, struct hproc *p, const struct pollfd *fds, size_t n, int64_t now)
{
	if (revents_of(fds, n, p->sp.in) & (POLLOUT | POLLERR | POLLHUP)) {
		if (outq_flush(&p->inq, p->sp.in) < 0) {
			close(p->sp.in); /* it does not read: the pidfd or fd 3 tells why */
			p->sp.in = -1;
		}
	}
	if (p->sp.out >= 0 && revents_of(fds, n, p->sp.out))
		read_log_fd(h, p, &p->sp.out, &p->outlb, false);
	if (p->sp.err >= 0 && revents_of(fds, n, p->sp.err))
		read_log_fd(h, p, &p->sp.err, &p->errlb, true);
	if (p->sp.answers >= 0 && revents_of(fds, n, p->sp.answers) && !read_answers(h, p, now))
		return;
	if (p->sp.pidfd >= 0 && revents_of(fds, n, p->sp.pidfd)) {
		if (p->sp.answers >= 0 && !read_answers(h, p, now))
			return;
		proc_end(h, p, p->ready ? END_EXIT : END_NOT_READY, NULL, now);
	}
}

static void fail_waiting(struct handler *h)
{
	if (!h->nfailing)
		return;
	char msg[600];
	snprintf(msg, sizeof(msg), "handler for %s failed to start %lld times: %s", h->t->name,
		 (long long)h->failed_starts, h->last_error);
	void **owners = h->failing;
	size_t n = h->nfailing;
	h->failing = NULL;
	h->nfailing = h->capfailing = 0;
	for (size_t i = 0; i < n; i++)
		h->ev.failed(h->ctx, owners[i], msg);
	free(owners);
}

void handler_service(struct handler *h, const struct pollfd *fds, size_t n, int64_t now)
{
	/* The processes as they are now: one that ends below goes to
	 * h->dead, and a replacement is started only after this, so an fd
	 * number reused by it is never mistaken for the old one's. */
	struct hproc *procs[16];
	size_t np = 0;
	if (h->cur)
		procs[np++] = h->cur;
	for (struct hproc *p = h->draining; p && np < ARRAY_SIZE(procs); p = p->next)
		procs[np++] = p;
	for (size_t i = 0; i < np; i++)
		if (!procs[i]->gone)
			service_proc(h, procs[i], fds, n, now);
	for (size_t i = 0; i < np; i++)
		if (!procs[i]->gone)
			check_proc(h, procs[i], now);
	if (!h->cur && !h->stopping && now >= h->next_start_ms)
		proc_start(h, now);
	fail_waiting(h);
	while (h->dead) {
		struct hproc *p = h->dead;
		h->dead = p->next;
		proc_free(p);
	}
	notify(h);
}

/* ---------- life ---------- */

struct handler *handler_new(const struct tool_config *t, const struct sv_config *cfg,
			    const struct handler_events *ev, void *ctx)
{
	struct handler *h = calloc(1, sizeof(*h));
	if (!h) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
	h->t = t;
	h->cfg = cfg;
	h->ev = *ev;
	h->ctx = ctx;
	h->down = HANDLER_DOWN;
	h->told_state = HANDLER_DOWN;
	backoff_init(&h->bo, cfg->restart.backoff_initial_ms, cfg->restart.backoff_max_ms);
	return h;
}

void handler_stop(struct handler *h, int64_t now)
{
	if (h->stopping)
		return;
	h->stopping = true;
	h->stop_deadline = now + h->cfg->restart.stop_timeout_ms;
	struct hproc *p = h->cur;
	if (p) {
		if (p->ready) {
			proc_drain(h, p, h->stop_deadline, "worker stopping");
		} else {
			proc_end(h, p, END_KILL, "stopped before ready", now);
		}
	}
	for (p = h->draining; p; p = p->next) {
		if (p->kill_at > h->stop_deadline)
			p->kill_at = h->stop_deadline;
		proc_maybe_eof(p);
	}
	/* Calls taken while FAILED still get their error output. */
	fail_waiting(h);
	notify(h);
}

bool handler_stopped(const struct handler *h)
{
	return h->stopping && !h->cur && !h->draining;
}

void handler_free(struct handler *h)
{
	if (!h)
		return;
	struct hproc *lists[] = {h->cur, h->draining, h->dead};
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		struct hproc *p = lists[i];
		if (p == h->cur && p)
			p->next = NULL; /* cur is in no list */
		while (p) {
			struct hproc *next = p->next;
			int status;
			if (!p->gone)
				proc_reap(h, p, &status);
			proc_free(p);
			p = next;
		}
	}
	free(h->failing);
	free(h);
}
