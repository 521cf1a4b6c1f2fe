/* sdnotify: systemd's notify protocol written by hand (no libsystemd):
 * datagrams to $NOTIFY_SOCKET, and the watchdog period from
 * $WATCHDOG_USEC. */
#ifndef SV_SDNOTIFY_H
#define SV_SDNOTIFY_H

#include <stdint.h>

/* Read $NOTIFY_SOCKET / $WATCHDOG_USEC (and $WATCHDOG_PID) and unset them
 * so children do not inherit them.  Returns 0. */
int sdnotify_init(void);
/* Send "READY=1\nSTATUS=..." etc.; a no-op without $NOTIFY_SOCKET.
 * Returns 0 or -errno. */
int sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Watchdog interval in ms (WATCHDOG_USEC/2), or 0 when not requested. */
int64_t sdnotify_watchdog_ms(void);
void sdnotify_close(void);

#endif
