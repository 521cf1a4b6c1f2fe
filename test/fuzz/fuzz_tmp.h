/* fuzz_tmp.h: a private scratch directory per harness process.
 *
 * BASE/svfuzz-NAME.PID (BASE: /dev/shm when writable, else /tmp).  A
 * crashing harness never runs its atexit cleanup (libFuzzer _Exit()s), so
 * each start first removes the directories of NAME whose process is gone.
 * The directories only ever hold plain files and sockets. */
#ifndef SV_FUZZ_TMP_H
#define SV_FUZZ_TMP_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fuzz_tmp_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char p[512];
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

/* Create the directory into buf (len >= 64); exits on failure. */
static void fuzz_tmp_dir(char *buf, size_t len, const char *name, bool prefer_shm)
{
	const char *base = prefer_shm && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "svfuzz-%s.", name);
	DIR *d = opendir(base);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
				continue;
			char *end;
			long pid = strtol(de->d_name + strlen(prefix), &end, 10);
			if (*end || pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH)) {
				char p[512];
				snprintf(p, sizeof(p), "%s/%s", base, de->d_name);
				fuzz_tmp_rmdir(p);
			}
		}
		closedir(d);
	}
	snprintf(buf, len, "%s/%s%ld", base, prefix, (long)getpid());
	fuzz_tmp_rmdir(buf);
	if (mkdir(buf, 0700) < 0) {
		perror(buf);
		exit(1);
	}
}

#endif
