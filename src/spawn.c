/* spawn: fork and exec a configured tool (see include/spawn.h). */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static void child_limits(const struct tool_config *t)
{
	struct rlimit rl;
	if (t->rlimit_cpu_s > 0) {
		/* SIGXCPU at the limit (a tool may catch it and stop
		 * cleanly), SIGKILL one second later. */
		rl.rlim_cur = (rlim_t)t->rlimit_cpu_s;
		rl.rlim_max = rl.rlim_cur + 1;
		setrlimit(RLIMIT_CPU, &rl);
	}
	if (t->rlimit_as_mb > 0) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)t->rlimit_as_mb << 20;
		setrlimit(RLIMIT_AS, &rl);
	}
	if (t->rlimit_nofile > 0) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)t->rlimit_nofile;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* In the child: descriptors first (0, 1, 2, and 3 for a handler's
 * answers), then signals, limits, environment, cwd, exec.  Any failure
 * of chdir or exec is written as an errno on report (close-on-exec, so
 * the parent reads EOF after a successful exec). */
static void child_exec(const struct tool_config *t, char *const *extra_env, size_t nextra, int in, int out,
		       int err, int answers, int report)
{
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (answers >= 0) {
		/* Out of the way of 0..3 before the dup2s below can
		 * overwrite either of them. */
		answers = fcntl(answers, F_DUPFD, 10);
		report = fcntl(report, F_DUPFD_CLOEXEC, 10);
	}
	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	int keep[] = {report};
	if (answers >= 0) {
		dup2(answers, 3);
		util_close_fds_from(4, keep, 1);
	} else {
		util_close_fds_from(3, keep, 1);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	child_limits(t);
	/* Exactly the configured environment, plus PATH and extra_env. */
	size_t n = t->env.n;
	char **envp = calloc(n + nextra + 2, sizeof(char *));
	bool have_path = false;
	for (size_t i = 0; envp && i < n; i++) {
		envp[i] = t->env.v[i];
		have_path |= strncmp(t->env.v[i], "PATH=", 5) == 0;
	}
	if (envp) {
		if (!have_path)
			envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
		for (size_t i = 0; i < nextra; i++)
			envp[n++] = extra_env[i];
	}
	if (chdir(t->cwd && *t->cwd ? t->cwd : "/") < 0) {
		int e = errno;
		(void)!write(report, &e, sizeof(e));
		_exit(127);
	}
	execve(t->command.v[0], t->command.v, envp);
	int e = errno;
	(void)!write(report, &e, sizeof(e));
	_exit(127);
}

/* The tool's pipes, read (R) and write (W) ends: its stdin, stdout,
 * stderr, the exec report (errno of a failed chdir/exec; EOF at a
 * successful exec thanks to O_CLOEXEC), and a handler's answers (fd 3). */
enum { P_IN_R, P_IN_W, P_OUT_R, P_OUT_W, P_ERR_R, P_ERR_W, P_REP_R, P_REP_W, P_ANS_R, P_ANS_W, P_N };

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* All pipes or none: on failure every end opened so far is closed. */
static int open_pipes(int fd[P_N], bool answers)
{
	for (int i = 0; i < P_N; i++)
		fd[i] = -1;
	for (int i = 0; i < (answers ? P_N : P_ANS_R); i += 2)
		if (pipe2(fd + i, O_CLOEXEC) < 0) {
			int e = -errno;
			close_fds(fd, P_N);
			return e;
		}
	return 0;
}

/* The child's errno when it could not chdir or exec, or 0 (EOF: exec'd). */
static int exec_report(int fd)
{
	int e = 0;
	ssize_t n;
	do
		n = read(fd, &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(e) ? e : 0;
}

int spawn_tool_start(const struct tool_config *t, char *const *extra_env, size_t nextra, bool answers_fd,
		     struct spawn_proc *p)
{
	int fd[P_N];
	int r = open_pipes(fd, answers_fd);
	if (r < 0)
		return r;
	pid_t pid = fork();
	if (pid < 0) {
		r = -errno;
		close_fds(fd, P_N);
		return r;
	}
	if (pid == 0)
		child_exec(t, extra_env, nextra, fd[P_IN_R], fd[P_OUT_W], fd[P_ERR_W], fd[P_ANS_W], fd[P_REP_W]);
	setpgid(pid, pid); /* also in the parent, against the race */
	int child_ends[] = {fd[P_IN_R], fd[P_OUT_W], fd[P_ERR_W], fd[P_REP_W], fd[P_ANS_W]};
	close_fds(child_ends, ARRAY_SIZE(child_ends));
	int e = exec_report(fd[P_REP_R]);
	close(fd[P_REP_R]);
	if (e) {
		int ours[] = {fd[P_IN_W], fd[P_OUT_R], fd[P_ERR_R], fd[P_ANS_R]};
		close_fds(ours, ARRAY_SIZE(ours));
		waitpid(pid, NULL, 0);
		return -e;
	}
	p->pid = pid;
#ifdef SYS_pidfd_open
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd >= 0)
		util_set_cloexec(p->pidfd);
#else
	p->pidfd = -1;
#endif
	p->in = fd[P_IN_W];
	p->out = fd[P_OUT_R];
	p->err = fd[P_ERR_R];
	p->answers = fd[P_ANS_R];
	util_set_nonblock(p->in);
	util_set_nonblock(p->out);
	util_set_nonblock(p->err);
	if (p->answers >= 0)
		util_set_nonblock(p->answers);
	return 0;
}

void spawn_proc_close(struct spawn_proc *p)
{
	int fds[] = {p->pidfd, p->in, p->out, p->err, p->answers};
	close_fds(fds, ARRAY_SIZE(fds));
	p->pidfd = p->in = p->out = p->err = p->answers = -1;
	p->pid = 0;
}

void spawn_kill_group(pid_t pgid, int sig)
{
	if (pgid > 0)
		kill(-pgid, sig);
}

bool spawn_rate_take(struct spawn_rate *r, int64_t now_ms, unsigned *suppressed)
{
	*suppressed = 0;
	if (now_ms - r->window_ms >= 1000) {
		*suppressed = r->dropped;
		r->window_ms = now_ms;
		r->lines = 0;
		r->dropped = 0;
	}
	if (r->lines++ >= SPAWN_LINES_PER_S) {
		r->dropped++;
		return false;
	}
	return true;
}
