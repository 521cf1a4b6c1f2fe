/* main: streamvisord's command line, configuration check, pidfile and
 * daemonizing; everything else happens in master_run(). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "master.h"
#include "sv_config.h"
#include "util.h"
#include "web.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: streamvisord [-t] [-d] [-c CONFIG] [-p PIDFILE]\n"
		   "  -c CONFIG   configuration file (default %s)\n"
		   "  -t          check the configuration and exit (0 ok, 78 invalid)\n"
		   "  -d          daemonize (SysV init); the default is the foreground (systemd)\n"
		   "  -p PIDFILE  write and lock a pidfile\n"
		   "  -V          print the version and whether the test-only fault seams are built in\n"
		   "  -h          this help\n",
		   SV_DEFAULT_CONFIG);
}

/* Open and lock the pidfile before anything is started, so a second
 * instance stops here without touching the first. */
static int pidfile_lock(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		fatal(SV_EX_TRANSIENT, "pidfile %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char buf[32] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fatal(SV_EX_TRANSIENT, "another streamvisord (pid %s) holds %s", buf[0] ? buf : "?", path);
	}
	return fd;
}

static void pidfile_write(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		fatal(SV_EX_TRANSIENT, "cannot write pidfile: %s", strerror(errno));
}

/* Absolute form of path (it must survive chdir("/") in daemon mode). */
static char *absolute(const char *path)
{
	if (path[0] == '/')
		return util_xstrdup(path);
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)))
		fatal(SV_EX_TRANSIENT, "getcwd: %s", strerror(errno));
	size_t len = strlen(cwd) + strlen(path) + 2;
	char *abs = util_xcalloc(1, len);
	snprintf(abs, len, "%s/%s", cwd, path);
	return abs;
}

/* Before forking anything: refuse while a daemon answers on our socket,
 * and say so on the terminal, not only in the log. */
static void refuse_second_instance(const struct sv_config *cfg)
{
	int fd = control_connect(cfg->control.socket);
	if (fd >= 0) {
		close(fd);
		fatal(SV_EX_TRANSIENT, "another streamvisord is running on %s", cfg->control.socket);
	}
}

static void daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		fatal(SV_EX_TRANSIENT, "fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		fatal(SV_EX_TRANSIENT, "fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	umask(027);
	if (chdir("/") < 0)
		fatal(SV_EX_TRANSIENT, "chdir /: %s", strerror(errno));
	util_devnull(0);
	util_devnull(1);
}

/* Workers allocate and free many small objects per event (hiredis
 * replies, jansson values); glibc's default per-thread cache holds only 7
 * chunks per size, and the overflow into fastbins makes every large
 * allocation consolidate them (measured: ~15% of a persistence worker's
 * CPU).  A larger tcache removes that.  Tunables are read at start, so
 * re-exec once with them set, unless the operator set GLIBC_TUNABLES. */
static void tune_malloc(char **argv)
{
	if (getenv("GLIBC_TUNABLES") || getenv("SV_NO_TUNE_MALLOC"))
		return;
	setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=2000", 1);
	setenv("SV_NO_TUNE_MALLOC", "1", 1);
	execv("/proc/self/exe", argv);
	/* Not fatal: run untuned. */
	unsetenv("GLIBC_TUNABLES");
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--web-child"))
		return web_main();
	tune_malloc(argv);
	unsetenv("SV_NO_TUNE_MALLOC");
	const char *conf = SV_DEFAULT_CONFIG, *pidfile = NULL;
	bool check = false, detach = false;
	int c;
	while ((c = getopt(argc, argv, "c:p:tdVh")) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case 'p': pidfile = optarg; break;
		case 't': check = true; break;
		case 'd': detach = true; break;
		case 'V':
			/* The second line lets test/integration/lib.sh skip the
			 * tests that need the seams when this build lacks them. */
			printf("streamvisord %s\nfault injection: %s\n", PACKAGE_VERSION,
			       SV_FAULT_INJECTION ? "on" : "off");
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	struct sv_config *cfg = NULL;
	struct config_errors errs = {0};
	if (config_load(conf, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.v[i]);
		if (!check)
			fprintf(stderr, "streamvisord: %s: configuration invalid, not starting\n", conf);
		config_errors_free(&errs);
		return SV_EX_CONFIG;
	}
	config_errors_free(&errs);
	if (check) {
		for (size_t i = 0; i < cfg->npools; i++)
			for (size_t j = 0; j < cfg->pools[i].patterns.n; j++)
				printf("pool %s: pattern %s\n", cfg->pools[i].name, cfg->pools[i].patterns.v[j]);
		printf("configuration OK\n");
		config_free(cfg);
		return 0;
	}

	if (log_open("master", cfg->log.level, cfg->log.format, cfg->log.file) < 0)
		fatal(SV_EX_CONFIG, "cannot open log file %s", cfg->log.file);
	/* Static: still reachable when a start-up fatal() exits. */
	static char *conf_abs, *pid_abs;
	conf_abs = absolute(conf);
	pid_abs = pidfile ? absolute(pidfile) : NULL;
	int pidfd = pid_abs ? pidfile_lock(pid_abs) : -1;
	refuse_second_instance(cfg);
	if (detach) {
		daemonize();
		/* The lock belongs to the file description, which survives
		 * the forks. */
		if (!cfg->log.file[0])
			util_devnull(2);
	}
	if (pidfd >= 0)
		pidfile_write(pidfd);
	int status = master_run(cfg, conf_abs);
	if (pidfd >= 0) {
		unlink(pid_abs);
		close(pidfd);
	}
	free(conf_abs);
	free(pid_abs);
	log_close();
	return status;
}
