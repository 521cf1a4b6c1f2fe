/* sdnotify: the systemd notify protocol, by hand. */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static int64_t watchdog_ms;

int sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC");
	const char *wdpid = getenv("WATCHDOG_PID");

	if (wd && (!wdpid || atoll(wdpid) == (long long)getpid()))
		watchdog_ms = atoll(wd) / 1000 / 2;
	if (path && (path[0] == '/' || path[0] == '@') && strlen(path) < sizeof(notify_addr.sun_path)) {
		memset(&notify_addr, 0, sizeof(notify_addr));
		notify_addr.sun_family = AF_UNIX;
		memcpy(notify_addr.sun_path, path, strlen(path));
		if (path[0] == '@')
			notify_addr.sun_path[0] = '\0'; /* abstract namespace */
		notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
		notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return 0;
}

int sdnotify_send(const char *fmt, ...)
{
	if (notify_fd < 0)
		return 0;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (sendto(notify_fd, buf, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&notify_addr, notify_len) < 0) {
		log_debug("sendto NOTIFY_SOCKET: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int64_t sdnotify_watchdog_ms(void) { return watchdog_ms; }

void sdnotify_close(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}
