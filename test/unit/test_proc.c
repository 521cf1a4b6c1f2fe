/* Unit tests for src/proc.c: the per-worker supervision state machine
 * (SPEC §3 "Worker states").  Pure logic: we play the master, feeding
 * events with explicit monotonic times and random values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proc.h"
#include "util.h"

static const struct proc_policy POL = {
	.start_ms = 1000,
	.max_retries = 5,
	.burst = 3,
	.burst_window_ms = 60000,
	.backoff_initial_ms = 100,
	.backoff_max_ms = 1000,
	.stop_timeout_ms = 2000,
	.hung_kill_ms = 3000,
};

/* The master's part: carry out SPAWN by "forking" (proc_spawned). */
static void spawn(struct proc *p, int64_t now)
{
	proc_spawned(p, &POL, now);
	assert_int_equal(p->state, PROC_STARTING);
}

/* STOPPED -> start -> SPAWN -> STARTING -> (start_ms) -> RUNNING.  Returns
 * the time at which it became RUNNING. */
static int64_t bring_up(struct proc *p, int64_t now)
{
	assert_int_equal(proc_start(p, &POL, now), PROC_ACT_SPAWN);
	spawn(p, now);
	now += POL.start_ms;
	assert_int_equal(proc_timer(p, &POL, now), PROC_ACT_NONE);
	assert_int_equal(p->state, PROC_RUNNING);
	return now;
}

/* n failed starts in a row (exit_code before start_ms), each followed by
 * its backoff and a respawn; returns the time of the last spawn. */
static int64_t failed_starts(struct proc *p, int64_t now, int n, int exit_code)
{
	for (int i = 0; i < n; i++) {
		now += 10;
		assert_int_equal(proc_exited(p, &POL, now, exit_code, 0), PROC_ACT_NONE);
		assert_int_equal(p->state, PROC_BACKOFF);
		now = p->deadline_ms;
		assert_int_equal(proc_timer(p, &POL, now), PROC_ACT_SPAWN);
		spawn(p, now);
	}
	return now;
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(proc_state_name(PROC_STOPPED), "STOPPED");
	assert_string_equal(proc_state_name(PROC_STARTING), "STARTING");
	assert_string_equal(proc_state_name(PROC_RUNNING), "RUNNING");
	assert_string_equal(proc_state_name(PROC_BACKOFF), "BACKOFF");
	assert_string_equal(proc_state_name(PROC_STOPPING), "STOPPING");
	assert_string_equal(proc_state_name(PROC_EXITED), "EXITED");
	assert_string_equal(proc_state_name(PROC_FATAL), "FATAL");
	assert_string_equal(proc_state_name(PROC_HUNG), "HUNG");
	assert_string_equal(proc_state_name((enum proc_state)99), "UNKNOWN");
	assert_true(proc_state_is_running(PROC_RUNNING));
	assert_false(proc_state_is_running(PROC_STARTING));
	assert_false(proc_state_is_running(PROC_HUNG));
	assert_true(proc_state_has_pid(PROC_STARTING));
	assert_true(proc_state_has_pid(PROC_RUNNING));
	assert_true(proc_state_has_pid(PROC_STOPPING));
	assert_true(proc_state_has_pid(PROC_HUNG));
	assert_false(proc_state_has_pid(PROC_STOPPED));
	assert_false(proc_state_has_pid(PROC_BACKOFF));
	assert_false(proc_state_has_pid(PROC_FATAL));
	assert_false(proc_state_has_pid(PROC_EXITED));
}

static void test_start_to_running(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	assert_int_equal(p.state, PROC_STOPPED);
	assert_int_equal(proc_start(&p, &POL, 10000), PROC_ACT_SPAWN);
	assert_true(p.want_up);
	spawn(&p, 10000);
	assert_int_equal(p.spawned_ms, 10000);
	assert_int_equal(p.deadline_ms, 10000 + POL.start_ms);
	/* Not yet: still STARTING just before start_ms. */
	assert_int_equal(proc_timer(&p, &POL, 10000 + POL.start_ms - 1), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STARTING);
	/* A start while STARTING does nothing. */
	assert_int_equal(proc_start(&p, &POL, 10500), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STARTING);
	assert_int_equal(proc_timer(&p, &POL, 10000 + POL.start_ms), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_RUNNING);
	assert_int_equal(p.retries, 0);
	/* A start while RUNNING does nothing; a timer without deadline neither. */
	assert_int_equal(proc_start(&p, &POL, 12000), PROC_ACT_NONE);
	assert_int_equal(proc_timer(&p, &POL, 99999), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_RUNNING);
}

/* Exit before start_ms: BACKOFF with non-decreasing delays capped at
 * backoff_max_ms, BACKOFF -> SPAWN on the timer, and FATAL after
 * max_retries failed starts (supervisord startretries: the first start plus
 * max_retries retries; exactly max_retries is also accepted). */
static void run_failing_starts(uint32_t (*rnd)(int), int exit_code)
{
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = 1000;
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_SPAWN);
	spawn(&p, now);
	int64_t prev = 0;
	int failed = 0;
	for (;;) {
		now += 50; /* dies well before start_ms */
		enum proc_action a = proc_exited(&p, &POL, now, exit_code, rnd(failed));
		failed++;
		assert_int_equal(a, PROC_ACT_NONE);
		if (p.state == PROC_FATAL)
			break;
		assert_int_equal(p.state, PROC_BACKOFF);
		int64_t d = p.deadline_ms - now;
		assert_int_equal(d, p.last_delay_ms);
		assert_true(d >= 1);
		assert_true(d >= prev);
		assert_true(d <= POL.backoff_max_ms);
		if (failed == 1) {
			assert_true(d >= POL.backoff_initial_ms / 2);
			assert_true(d <= POL.backoff_initial_ms);
		}
		prev = d;
		/* Not before the deadline. */
		assert_int_equal(proc_timer(&p, &POL, p.deadline_ms - 1), PROC_ACT_NONE);
		assert_int_equal(p.state, PROC_BACKOFF);
		now = p.deadline_ms;
		assert_int_equal(proc_timer(&p, &POL, now), PROC_ACT_SPAWN);
		spawn(&p, now);
		assert_true(failed <= POL.max_retries + 1);
	}
	assert_true(failed == POL.max_retries || failed == POL.max_retries + 1);
	/* FATAL stays: timers do nothing. */
	assert_int_equal(proc_timer(&p, &POL, now + 1000000), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_FATAL);
	/* An operator start resets the retries and spawns at once. */
	assert_int_equal(proc_start(&p, &POL, now + 10), PROC_ACT_SPAWN);
	assert_int_equal(p.retries, 0);
	spawn(&p, now + 10);
	/* A failure after the reset is back to the first, short delay. */
	assert_int_equal(proc_exited(&p, &POL, now + 20, exit_code, 0xffffffffu), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_BACKOFF);
	assert_true(p.last_delay_ms <= POL.backoff_initial_ms);
}

static uint32_t rnd_zero(int i) { (void)i; return 0; }
static uint32_t rnd_max(int i) { (void)i; return 0xffffffffu; }
static uint32_t rnd_mixed(int i)
{
	static const uint32_t v[] = {0xffffffffu, 0, 12345, 0x80000000u, 7, 0xdeadbeefu, 1, 99};
	return v[i % 8];
}

static void test_backoff_then_fatal(void **state)
{
	(void)state;
	run_failing_starts(rnd_zero, 1);
	run_failing_starts(rnd_max, 1);
	run_failing_starts(rnd_mixed, 1);
	/* Killed by a signal before start_ms counts as a failed start too. */
	run_failing_starts(rnd_mixed, -9);
}

/* An unasked clean exit 0 before start_ms (max_rss_mb recycling, a lost
 * consumer name) restarts at once like a crash, not as a failed start;
 * the burst limit still turns a loop of them into BACKOFF. */
static void test_clean_exit_while_starting(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = 1000;
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_SPAWN);
	spawn(&p, now);
	for (int i = 0; i < POL.burst; i++) {
		now += 50;
		assert_int_equal(proc_exited(&p, &POL, now, 0, 0), PROC_ACT_SPAWN);
		assert_int_equal(p.state, PROC_EXITED);
		assert_int_equal(p.retries, 0);
		spawn(&p, now);
	}
	now += 50;
	assert_int_equal(proc_exited(&p, &POL, now, 0, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_BACKOFF);
}

/* Delays keep doubling and reach the cap with long enough retries. */
static void test_backoff_cap(void **state)
{
	(void)state;
	struct proc_policy pol = POL;
	pol.max_retries = 20;
	struct proc p;
	proc_init(&p, &pol);
	int64_t now = 0;
	assert_int_equal(proc_start(&p, &pol, now), PROC_ACT_SPAWN);
	proc_spawned(&p, &pol, now);
	int64_t prev = 0, last = 0;
	for (int i = 0; i < 15; i++) {
		now += 10;
		assert_int_equal(proc_exited(&p, &pol, now, 1, 0xffffffffu), PROC_ACT_NONE);
		assert_int_equal(p.state, PROC_BACKOFF);
		last = p.last_delay_ms;
		assert_true(last >= prev);
		assert_true(last <= pol.backoff_max_ms);
		prev = last;
		now = p.deadline_ms;
		assert_int_equal(proc_timer(&p, &pol, now), PROC_ACT_SPAWN);
		proc_spawned(&p, &pol, now);
	}
	/* Capped: drawn from [max/2, max] (equal jitter), never above. */
	assert_true(last >= pol.backoff_max_ms / 2);
	assert_true(last <= pol.backoff_max_ms);
	assert_int_equal(p.backoff.cur_ms, pol.backoff_max_ms);
}

static void test_exit78_fatal_at_once(void **state)
{
	(void)state;
	struct proc p;
	/* From STARTING. */
	proc_init(&p, &POL);
	assert_int_equal(proc_start(&p, &POL, 0), PROC_ACT_SPAWN);
	spawn(&p, 0);
	assert_int_equal(proc_exited(&p, &POL, 10, SV_EX_CONFIG, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_FATAL);
	assert_int_equal(p.deadline_ms, 0);
	/* From RUNNING. */
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_exited(&p, &POL, now + 5000, 78, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_FATAL);
	assert_int_equal(proc_timer(&p, &POL, now + 1000000), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_FATAL);
	/* Operator start revives it. */
	assert_int_equal(proc_start(&p, &POL, now + 6000), PROC_ACT_SPAWN);
	spawn(&p, now + 6000);
}

/* A crash after a good start: EXITED and an immediate SPAWN; more than
 * `burst` crashes in the window -> BACKOFF. */
static void test_crash_burst(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	for (int i = 1; i <= POL.burst; i++) {
		now += 100;
		enum proc_action a = proc_exited(&p, &POL, now, i % 2 ? 1 : -9, 0);
		assert_int_equal(a, PROC_ACT_SPAWN);
		assert_int_equal(p.state, PROC_EXITED);
		assert_int_equal(p.deadline_ms, 0);
		spawn(&p, now);
		now += POL.start_ms;
		assert_int_equal(proc_timer(&p, &POL, now), PROC_ACT_NONE);
		assert_int_equal(p.state, PROC_RUNNING);
	}
	/* burst + 1 crashes inside the window. */
	now += 100;
	assert_int_equal(proc_exited(&p, &POL, now, 1, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_BACKOFF);
	assert_true(p.deadline_ms > now);
	assert_true(p.deadline_ms - now <= POL.backoff_max_ms);
	now = p.deadline_ms;
	assert_int_equal(proc_timer(&p, &POL, now), PROC_ACT_SPAWN);
	spawn(&p, now);
	/* Not FATAL: burst BACKOFF is not a failed start. */
	now += POL.start_ms;
	proc_timer(&p, &POL, now);
	assert_int_equal(p.state, PROC_RUNNING);
}

static void test_crashes_spaced_beyond_window(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	for (int i = 0; i < 4 * POL.burst + 4; i++) {
		now += POL.burst_window_ms / POL.burst + 1000; /* at most burst in any window */
		assert_int_equal(proc_exited(&p, &POL, now, 1, 0), PROC_ACT_SPAWN);
		assert_int_equal(p.state, PROC_EXITED);
		spawn(&p, now);
		now += POL.start_ms;
		proc_timer(&p, &POL, now);
		assert_int_equal(p.state, PROC_RUNNING);
	}
	/* Far apart: never BACKOFF. */
	for (int i = 0; i < 10; i++) {
		now += POL.burst_window_ms + 1;
		assert_int_equal(proc_exited(&p, &POL, now, -11, 0), PROC_ACT_SPAWN);
		spawn(&p, now);
		now += POL.start_ms;
		proc_timer(&p, &POL, now);
		assert_int_equal(p.state, PROC_RUNNING);
	}
}

static void test_clean_exit_from_running(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	/* Many clean exits in a short time: never a crash, never BACKOFF. */
	for (int i = 0; i < 3 * POL.burst; i++) {
		now += 10;
		assert_int_equal(proc_exited(&p, &POL, now, 0, 0), PROC_ACT_SPAWN);
		assert_int_equal(p.state, PROC_EXITED);
		spawn(&p, now);
		now += POL.start_ms;
		proc_timer(&p, &POL, now);
		assert_int_equal(p.state, PROC_RUNNING);
	}
	assert_int_equal(p.ncrashes, 0);
	/* ... and a real crash afterwards is still an immediate restart. */
	assert_int_equal(proc_exited(&p, &POL, now + 1, 1, 0), PROC_ACT_SPAWN);
}

static void test_hung(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	now += 5000;
	assert_int_equal(proc_hung(&p, &POL, now), PROC_ACT_CONT_TERM);
	assert_int_equal(p.state, PROC_HUNG);
	assert_true(proc_state_has_pid(p.state));
	/* Judged hung again: nothing new. */
	assert_int_equal(proc_hung(&p, &POL, now + 1), PROC_ACT_NONE);
	assert_int_equal(proc_timer(&p, &POL, now + POL.hung_kill_ms - 1), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_HUNG);
	assert_int_equal(proc_timer(&p, &POL, now + POL.hung_kill_ms), PROC_ACT_KILL);
	assert_int_equal(p.state, PROC_HUNG);
	/* It ignores SIGKILL for a while (D state): it is hit again later. */
	assert_true(p.deadline_ms > now + POL.hung_kill_ms);
	assert_int_equal(proc_timer(&p, &POL, p.deadline_ms), PROC_ACT_KILL);
	/* The exit (killed by signal 9) restarts it at once. */
	now += POL.hung_kill_ms + 5000;
	assert_int_equal(proc_exited(&p, &POL, now, -9, 0), PROC_ACT_SPAWN);
	spawn(&p, now);
	proc_timer(&p, &POL, now + POL.start_ms);
	assert_int_equal(p.state, PROC_RUNNING);
	/* HUNG from states without a process: nothing. */
	struct proc q;
	proc_init(&q, &POL);
	assert_int_equal(proc_hung(&q, &POL, 0), PROC_ACT_NONE);
	assert_int_equal(q.state, PROC_STOPPED);
}

/* A HUNG worker that exits on the SIGTERM (before the kill). */
static void test_hung_exits_on_term(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_hung(&p, &POL, now + 100), PROC_ACT_CONT_TERM);
	assert_int_equal(proc_exited(&p, &POL, now + 200, -15, 0), PROC_ACT_SPAWN);
	assert_int_equal(p.deadline_ms, 0);
	spawn(&p, now + 200);
}

static void test_stop(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_stop(&p, &POL, now, false), PROC_ACT_TERM);
	assert_int_equal(p.state, PROC_STOPPING);
	assert_false(p.want_up);
	assert_false(p.retire);
	/* A second stop: already on its way. */
	assert_int_equal(proc_stop(&p, &POL, now + 1, false), PROC_ACT_NONE);
	assert_int_equal(proc_timer(&p, &POL, now + POL.stop_timeout_ms - 1), PROC_ACT_NONE);
	assert_int_equal(proc_timer(&p, &POL, now + POL.stop_timeout_ms), PROC_ACT_KILL);
	assert_int_equal(p.state, PROC_STOPPING);
	assert_int_equal(proc_exited(&p, &POL, now + POL.stop_timeout_ms + 5, -9, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	assert_int_equal(p.deadline_ms, 0);
	assert_int_equal(proc_timer(&p, &POL, now + 1000000), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	/* Stop of a stopped worker: stays STOPPED. */
	assert_int_equal(proc_stop(&p, &POL, now + 1000001, false), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	/* And it can be started again. */
	bring_up(&p, now + 2000000);
}

static void test_stop_clean_exit(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_stop(&p, &POL, now, false), PROC_ACT_TERM);
	assert_int_equal(proc_exited(&p, &POL, now + 10, 0, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	/* Stop while STARTING also TERMs. */
	assert_int_equal(proc_start(&p, &POL, now + 20), PROC_ACT_SPAWN);
	spawn(&p, now + 20);
	assert_int_equal(proc_stop(&p, &POL, now + 30, false), PROC_ACT_TERM);
	assert_int_equal(p.state, PROC_STOPPING);
	assert_int_equal(proc_exited(&p, &POL, now + 40, 0, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	assert_int_equal(p.retries, 0);
}

static void test_stop_retire(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_stop(&p, &POL, now, true), PROC_ACT_TERM);
	assert_int_equal(p.state, PROC_STOPPING);
	assert_true(p.retire);
	assert_false(p.want_up);
	assert_int_equal(proc_exited(&p, &POL, now + 10, 0, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	assert_true(p.retire);
	/* A retired worker that crashes on the way down is not restarted. */
	proc_init(&p, &POL);
	now = bring_up(&p, 0);
	assert_int_equal(proc_stop(&p, &POL, now, true), PROC_ACT_TERM);
	assert_int_equal(proc_exited(&p, &POL, now + 10, -11, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	/* Retiring a BACKOFF worker: STOPPED, no timer left. */
	proc_init(&p, &POL);
	assert_int_equal(proc_start(&p, &POL, 0), PROC_ACT_SPAWN);
	spawn(&p, 0);
	proc_exited(&p, &POL, 10, 1, 0);
	assert_int_equal(p.state, PROC_BACKOFF);
	assert_int_equal(proc_stop(&p, &POL, 20, true), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
	assert_int_equal(proc_timer(&p, &POL, 1000000), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
}

/* restart: stop then start while STOPPING -> the exit returns SPAWN. */
static void test_start_during_stopping(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_stop(&p, &POL, now, false), PROC_ACT_TERM);
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_NONE);
	assert_true(p.restart_after_stop);
	assert_int_equal(p.state, PROC_STOPPING);
	/* Whatever the exit status, it restarts once stopped. */
	assert_int_equal(proc_exited(&p, &POL, now + 50, 0, 0), PROC_ACT_SPAWN);
	assert_true(p.want_up);
	spawn(&p, now + 50);
	assert_false(p.restart_after_stop);
	proc_timer(&p, &POL, now + 50 + POL.start_ms);
	assert_int_equal(p.state, PROC_RUNNING);

	/* Same with a KILL after the stop timeout. */
	now += 10000;
	assert_int_equal(proc_stop(&p, &POL, now, false), PROC_ACT_TERM);
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_NONE);
	assert_int_equal(proc_timer(&p, &POL, now + POL.stop_timeout_ms), PROC_ACT_KILL);
	assert_int_equal(proc_exited(&p, &POL, now + POL.stop_timeout_ms + 1, -9, 0), PROC_ACT_SPAWN);
	spawn(&p, now + POL.stop_timeout_ms + 1);

	/* Retire, then start (scale back up) while STOPPING: start wins. */
	now += 20000;
	proc_timer(&p, &POL, now);
	assert_int_equal(p.state, PROC_RUNNING);
	assert_int_equal(proc_stop(&p, &POL, now, true), PROC_ACT_TERM);
	assert_int_equal(proc_start(&p, &POL, now + 1), PROC_ACT_NONE);
	assert_false(p.retire);
	assert_int_equal(proc_exited(&p, &POL, now + 2, 0, 0), PROC_ACT_SPAWN);

	/* A start while HUNG also restarts after the exit. */
	proc_init(&p, &POL);
	now = bring_up(&p, 0);
	assert_int_equal(proc_hung(&p, &POL, now), PROC_ACT_CONT_TERM);
	assert_int_equal(proc_start(&p, &POL, now + 1), PROC_ACT_NONE);
	assert_int_equal(proc_exited(&p, &POL, now + 2, -15, 0), PROC_ACT_SPAWN);
}

/* Stop then start then stop again while STOPPING: the last word wins. */
static void test_stop_start_stop(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	assert_int_equal(proc_stop(&p, &POL, now, false), PROC_ACT_TERM);
	assert_int_equal(proc_start(&p, &POL, now + 1), PROC_ACT_NONE);
	assert_int_equal(proc_stop(&p, &POL, now + 2, false), PROC_ACT_NONE);
	assert_false(p.restart_after_stop);
	assert_int_equal(proc_exited(&p, &POL, now + 3, 0, 0), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_STOPPED);
}

static void test_start_from_fatal_resets(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = 0;
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_SPAWN);
	spawn(&p, now);
	while (p.state != PROC_FATAL) {
		now += 10;
		proc_exited(&p, &POL, now, 1, 0xffffffffu);
		if (p.state == PROC_BACKOFF) {
			now = p.deadline_ms;
			assert_int_equal(proc_timer(&p, &POL, now), PROC_ACT_SPAWN);
			spawn(&p, now);
		}
	}
	assert_true(p.retries >= POL.max_retries);
	assert_int_equal(proc_start(&p, &POL, now + 1), PROC_ACT_SPAWN);
	assert_int_equal(p.retries, 0);
	assert_int_equal(p.deadline_ms, 0);
	spawn(&p, now + 1);
	/* A full set of retries is available again. */
	int failed = 0;
	for (;;) {
		now += 10;
		proc_exited(&p, &POL, now, 1, 0);
		failed++;
		if (p.state == PROC_FATAL)
			break;
		now = p.deadline_ms;
		assert_int_equal(proc_timer(&p, &POL, now), PROC_ACT_SPAWN);
		spawn(&p, now);
	}
	assert_true(failed >= POL.max_retries);

	/* A start during BACKOFF spawns at once and resets. */
	proc_init(&p, &POL);
	assert_int_equal(proc_start(&p, &POL, 0), PROC_ACT_SPAWN);
	spawn(&p, 0);
	proc_exited(&p, &POL, 10, 1, 0);
	assert_int_equal(p.state, PROC_BACKOFF);
	assert_int_equal(proc_start(&p, &POL, 20), PROC_ACT_SPAWN);
	assert_int_equal(p.retries, 0);
	assert_int_equal(p.deadline_ms, 0);
}

/* A good start resets the consecutive failed-start counter. */
static void test_good_start_resets_retries(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = 0;
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_SPAWN);
	spawn(&p, now);
	for (int round = 0; round < 5; round++) {
		now = failed_starts(&p, now, (int)POL.max_retries - 1, 1);
		now += POL.start_ms;
		proc_timer(&p, &POL, now);
		assert_int_equal(p.state, PROC_RUNNING);
		assert_int_equal(p.retries, 0);
		/* Then it stops cleanly at our request and starts again. */
		assert_int_equal(proc_stop(&p, &POL, now, false), PROC_ACT_TERM);
		proc_exited(&p, &POL, now + 1, 0, 0);
		assert_int_equal(proc_start(&p, &POL, now + 2), PROC_ACT_SPAWN);
		spawn(&p, now + 2);
	}
}

/* The reason says why the last transition happened. */
static void test_reasons(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = bring_up(&p, 0);
	proc_exited(&p, &POL, now, -9, 0);
	assert_non_null(strstr(p.reason, "signal 9"));
	spawn(&p, now);
	proc_exited(&p, &POL, now + 1, 78, 0);
	assert_int_equal(p.state, PROC_FATAL);
	assert_non_null(strstr(p.reason, "78"));
}

/* Two poison entries back to back: each crashes up to 3 fresh starts, but
 * the worker that dead-letters the first reports progress, which ends the
 * failed-start streak: 3 + 3 crashes never reach max_retries (5). */
static void test_progress_ends_failed_starts(void **state)
{
	(void)state;
	struct proc p;
	proc_init(&p, &POL);
	int64_t now = 1000;
	assert_int_equal(proc_start(&p, &POL, now), PROC_ACT_SPAWN);
	spawn(&p, now);
	for (int poison = 0; poison < 2; poison++) {
		now = failed_starts(&p, now, 3, -11);
		assert_int_equal(p.retries, 3);
		/* dead-letters the poison entry: progress, before start_ms */
		assert_int_equal(proc_progress(&p, &POL, now + 10), PROC_ACT_NONE);
		assert_int_equal(p.state, PROC_RUNNING);
		assert_int_equal(p.retries, 0);
		assert_int_equal(p.deadline_ms, 0);
		assert_string_equal(p.reason, "started: made progress");
		/* the next poison entry crashes it from RUNNING: an immediate
		 * restart, not a failed start */
		now += 20;
		assert_int_equal(proc_exited(&p, &POL, now, -11, 0), PROC_ACT_SPAWN);
		spawn(&p, now);
	}
	assert_int_not_equal(p.state, PROC_FATAL);
	/* progress outside STARTING changes nothing */
	assert_int_equal(proc_timer(&p, &POL, now + POL.start_ms), PROC_ACT_NONE);
	assert_int_equal(p.state, PROC_RUNNING);
	assert_int_equal(proc_progress(&p, &POL, now + POL.start_ms + 1), PROC_ACT_NONE);
	assert_string_equal(p.reason, "started");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_start_to_running),
		cmocka_unit_test(test_backoff_then_fatal),
		cmocka_unit_test(test_clean_exit_while_starting),
		cmocka_unit_test(test_backoff_cap),
		cmocka_unit_test(test_exit78_fatal_at_once),
		cmocka_unit_test(test_crash_burst),
		cmocka_unit_test(test_crashes_spaced_beyond_window),
		cmocka_unit_test(test_clean_exit_from_running),
		cmocka_unit_test(test_hung),
		cmocka_unit_test(test_hung_exits_on_term),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_stop_clean_exit),
		cmocka_unit_test(test_stop_retire),
		cmocka_unit_test(test_start_during_stopping),
		cmocka_unit_test(test_stop_start_stop),
		cmocka_unit_test(test_start_from_fatal_resets),
		cmocka_unit_test(test_good_start_resets_retries),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_progress_ends_failed_starts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
