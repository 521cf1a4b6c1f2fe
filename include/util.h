/* util: small helpers shared by every module: clocks, fds, strings. */
#ifndef SV_UTIL_H
#define SV_UTIL_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SV_EX_OK 0
#define SV_EX_TRANSIENT 1
#define SV_EX_CONFIG 78

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic milliseconds (CLOCK_MONOTONIC); never jumps. */
int64_t util_mono_ms(void);
/* Monotonic microseconds. */
int64_t util_mono_us(void);
/* The fields of /proc/PID/stat after the command name (from its state
 * on: the name may hold spaces and parentheses), into buf; NULL when the
 * process is gone or the file is malformed. */
const char *util_proc_stat(pid_t pid, char *buf, size_t len);
/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME). */
int64_t util_wall_ms(void);

/* fcntl helpers; return 0 or -errno. */
int util_set_nonblock(int fd);
int util_set_cloexec(int fd);

/* Write all of buf, retrying on EINTR and waiting (up to ~30 s) while a
 * non-blocking fd is full; returns 0 or -errno. */
int util_write_all(int fd, const void *buf, size_t len);

/* strdup that aborts on OOM (start-up and config paths only). */
char *util_xstrdup(const char *s);
/* The value of hex digit c (0..15), or -EINVAL. */
int util_hexval(int c);
/* vasprintf that aborts when out of memory, like the other util_x*. */
char *util_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *util_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void *util_xcalloc(size_t n, size_t size);

/* Uniform random 32-bit value (seeded per process from getrandom). */
uint32_t util_rand32(void);
void util_rand_reseed(void);

/* Sleep for ms milliseconds, retrying on EINTR unless *stop becomes set. */
void util_sleep_ms(int64_t ms, volatile int *stop);

/* Host name into buf (never fails; "localhost" as a last resort). */
void util_hostname(char *buf, size_t len);

/* Replace fd 'fd' by /dev/null. */
void util_devnull(int fd);

/* Close every fd >= lowfd except those listed in keep (nkeep entries). */
void util_close_fds_from(int lowfd, const int *keep, size_t nkeep);

/* Line buffer for non-blocking pipes and sockets: bytes come in, complete
 * lines go out.  A line longer than max is reported as overlong once and
 * discarded up to its newline. */
struct linebuf {
	char *buf;
	size_t len, off, cap, max;
	bool discarding;
};
void linebuf_init(struct linebuf *lb, size_t max);
void linebuf_free(struct linebuf *lb);
/* Read what is available from fd: returns bytes read, 0 at EOF, -EAGAIN
 * when nothing was there, or another -errno. */
ssize_t linebuf_fill(struct linebuf *lb, int fd);
/* Next complete line (NUL-terminated, newline stripped) into *line, valid
 * until the next call; returns 1 for a line, 0 for none yet, -E2BIG once for
 * an overlong line that is being discarded. */
int linebuf_next(struct linebuf *lb, char **line);


/* Output queue for a non-blocking descriptor: what write() does not take
 * now waits here for POLLOUT, so a line is never cut in half. */
struct outq {
	char *buf;
	size_t len, off;
	size_t max;           /* bytes that may wait; 0: 16 MiB */
};
/* Write or queue data; returns 0, or -errno when the peer is gone, or
 * -ENOBUFS when the queue would pass its max (then nothing of data is
 * written or queued). */
int outq_write(struct outq *q, int fd, const void *data, size_t len);
/* Write what is queued (on POLLOUT); returns 0 or -errno. */
int outq_flush(struct outq *q, int fd);
bool outq_pending(const struct outq *q);
void outq_free(struct outq *q);

#endif
