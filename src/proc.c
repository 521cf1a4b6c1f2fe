/* proc: the per-worker supervision state machine (see proc.h). */
#include "proc.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const state_names[] = {
	[PROC_STOPPED] = "STOPPED", [PROC_STARTING] = "STARTING",
	[PROC_RUNNING] = "RUNNING", [PROC_BACKOFF] = "BACKOFF",
	[PROC_STOPPING] = "STOPPING", [PROC_EXITED] = "EXITED",
	[PROC_FATAL] = "FATAL",     [PROC_HUNG] = "HUNG",
};

const char *proc_state_name(enum proc_state s)
{
	return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "UNKNOWN";
}

bool proc_state_is_running(enum proc_state s) { return s == PROC_RUNNING; }

bool proc_state_has_pid(enum proc_state s)
{
	return s == PROC_STARTING || s == PROC_RUNNING || s == PROC_STOPPING || s == PROC_HUNG;
}

void proc_init(struct proc *p, const struct proc_policy *pol)
{
	memset(p, 0, sizeof(*p));
	p->state = PROC_STOPPED;
	backoff_init(&p->backoff, pol->backoff_initial_ms, pol->backoff_max_ms);
}

static void set_reason(struct proc *p, const char *fmt, int a)
{
	snprintf(p->reason, sizeof(p->reason), fmt, a);
}

/* Crashes from RUNNING still inside the burst window, after pruning. */
static unsigned recent_crashes(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	unsigned kept = 0;
	for (unsigned i = 0; i < p->ncrashes; i++)
		if (now - p->crashes[i] < pol->burst_window_ms)
			p->crashes[kept++] = p->crashes[i];
	p->ncrashes = kept;
	return kept;
}

static void record_crash(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	recent_crashes(p, pol, now);
	if (p->ncrashes == PROC_BURST_MAX) {
		memmove(p->crashes, p->crashes + 1, (PROC_BURST_MAX - 1) * sizeof(p->crashes[0]));
		p->ncrashes--;
	}
	p->crashes[p->ncrashes++] = now;
}

static enum proc_action enter_backoff(struct proc *p, int64_t now, uint32_t rnd)
{
	p->last_delay_ms = backoff_next(&p->backoff, rnd);
	p->deadline_ms = now + p->last_delay_ms;
	p->state = PROC_BACKOFF;
	return PROC_ACT_NONE;
}

enum proc_action proc_start(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	p->want_up = true;
	p->retire = false;
	switch (p->state) {
	case PROC_STOPPED:
	case PROC_EXITED:
	case PROC_FATAL:
	case PROC_BACKOFF:
		p->retries = 0;
		backoff_reset(&p->backoff);
		p->ncrashes = 0;
		p->deadline_ms = 0;
		return PROC_ACT_SPAWN;
	case PROC_STOPPING:
	case PROC_HUNG:
		p->restart_after_stop = true;
		return PROC_ACT_NONE;
	case PROC_STARTING:
	case PROC_RUNNING:
		break;
	}
	(void)pol;
	(void)now;
	return PROC_ACT_NONE;
}

void proc_spawned(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	p->state = PROC_STARTING;
	p->spawned_ms = now;
	p->deadline_ms = now + pol->start_ms;
	p->restart_after_stop = false;
	snprintf(p->reason, sizeof(p->reason), "%s", p->spawned_count++ ? "restarted" : "spawned");
}

enum proc_action proc_stop(struct proc *p, const struct proc_policy *pol, int64_t now, bool retire)
{
	p->want_up = false;
	p->retire = retire;
	p->restart_after_stop = false;
	switch (p->state) {
	case PROC_STARTING:
	case PROC_RUNNING:
		p->state = PROC_STOPPING;
		p->deadline_ms = now + pol->stop_timeout_ms;
		snprintf(p->reason, sizeof(p->reason), "%s", retire ? "retired" : "stop requested");
		return PROC_ACT_TERM;
	case PROC_STOPPING:
	case PROC_HUNG:
		return PROC_ACT_NONE; /* already on its way down */
	case PROC_BACKOFF:
	case PROC_EXITED:
	case PROC_FATAL:
	case PROC_STOPPED:
		p->state = PROC_STOPPED;
		p->deadline_ms = 0;
		snprintf(p->reason, sizeof(p->reason), "stop requested");
		return PROC_ACT_NONE;
	}
	return PROC_ACT_NONE;
}

static enum proc_action crashed_after_good_start(struct proc *p, const struct proc_policy *pol,
						 int64_t now, uint32_t rnd)
{
	record_crash(p, pol, now);
	if ((int64_t)p->ncrashes > pol->burst) {
		enter_backoff(p, now, rnd);
		snprintf(p->reason + strlen(p->reason), sizeof(p->reason) - strlen(p->reason),
			 ", %u crashes in window", p->ncrashes);
		return PROC_ACT_NONE;
	}
	p->state = PROC_EXITED;
	return PROC_ACT_SPAWN;
}

enum proc_action proc_exited(struct proc *p, const struct proc_policy *pol, int64_t now,
			     int exit_code, uint32_t rnd)
{
	enum proc_state from = p->state;

	p->deadline_ms = 0;
	if (exit_code < 0)
		set_reason(p, "killed by signal %d", -exit_code);
	else
		set_reason(p, "exit status %d", exit_code);

	if (from == PROC_STOPPING) {
		if (p->restart_after_stop && !p->retire) {
			p->restart_after_stop = false;
			p->want_up = true;
			p->retries = 0;
			p->state = PROC_STOPPED;
			return PROC_ACT_SPAWN;
		}
		p->state = PROC_STOPPED;
		return PROC_ACT_NONE;
	}
	if (!p->want_up) {
		p->state = PROC_STOPPED;
		return PROC_ACT_NONE;
	}
	if (exit_code == SV_EX_CONFIG) {
		p->state = PROC_FATAL;
		set_reason(p, "configuration error (exit status %d)", exit_code);
		return PROC_ACT_NONE;
	}
	if (from == PROC_HUNG)
		return crashed_after_good_start(p, pol, now, rnd);
	if (from == PROC_STARTING && exit_code == 0) {
		/* Exit 0 unasked is a recycle (max_rss_mb) or a lost name, not
		 * a failed start; the burst limit still stops a loop of them. */
		return crashed_after_good_start(p, pol, now, rnd);
	}
	if (from == PROC_STARTING) {
		p->retries++;
		if (p->retries >= pol->max_retries) {
			p->state = PROC_FATAL;
			snprintf(p->reason + strlen(p->reason), sizeof(p->reason) - strlen(p->reason),
				 ", %lld failed starts", (long long)p->retries);
			return PROC_ACT_NONE;
		}
		return enter_backoff(p, now, rnd);
	}
	if (from == PROC_RUNNING) {
		if (exit_code == 0) {
			/* A clean exit we did not ask for (recycling, lost
			 * fence): replace it at once, not a crash. */
			p->state = PROC_EXITED;
			return PROC_ACT_SPAWN;
		}
		return crashed_after_good_start(p, pol, now, rnd);
	}
	p->state = PROC_EXITED;
	return PROC_ACT_NONE;
}

enum proc_action proc_hung(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	if (p->state != PROC_RUNNING && p->state != PROC_STARTING)
		return PROC_ACT_NONE;
	p->state = PROC_HUNG;
	p->deadline_ms = now + pol->hung_kill_ms;
	snprintf(p->reason, sizeof(p->reason), "heartbeat stale");
	return PROC_ACT_CONT_TERM;
}

/* A good start: the failed-start streak ends. */
static void enter_running(struct proc *p, const struct proc_policy *pol, int64_t now, const char *why)
{
	p->state = PROC_RUNNING;
	p->deadline_ms = 0;
	p->retries = 0;
	if (recent_crashes(p, pol, now) == 0)
		backoff_reset(&p->backoff);
	snprintf(p->reason, sizeof(p->reason), "%s", why);
}

enum proc_action proc_progress(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	if (p->state == PROC_STARTING)
		enter_running(p, pol, now, "started: made progress");
	return PROC_ACT_NONE;
}

enum proc_action proc_timer(struct proc *p, const struct proc_policy *pol, int64_t now)
{
	if (!p->deadline_ms || now < p->deadline_ms)
		return PROC_ACT_NONE;
	switch (p->state) {
	case PROC_STARTING:
		enter_running(p, pol, now, "started");
		return PROC_ACT_NONE;
	case PROC_BACKOFF:
		p->deadline_ms = 0;
		return PROC_ACT_SPAWN;
	case PROC_STOPPING:
	case PROC_HUNG:
		/* Keep a deadline so a process that ignores even SIGKILL
		 * (uninterruptible sleep) is hit again rather than forgotten. */
		p->deadline_ms = now + pol->stop_timeout_ms;
		return PROC_ACT_KILL;
	default:
		p->deadline_ms = 0;
		return PROC_ACT_NONE;
	}
}
