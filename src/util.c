/* util: small helpers shared by every module. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
int64_t util_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

int64_t util_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int util_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int util_set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

int util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	int stalls = 0;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* A non-blocking peer that is slow to read: wait for room
			 * (bounded), never leave half a line behind. */
			if (errno == EAGAIN && stalls++ < 30) {
				struct pollfd pfd = {.fd = fd, .events = POLLOUT};
				poll(&pfd, 1, 1000);
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

char *util_xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort();
	return d;
}

char *util_xvasprintf(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	return s;
}

char *util_xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = util_xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

void *util_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		abort();
	return p;
}

/* xorshift128+, seeded from getrandom; good enough for jitter. */
static uint64_t rng_s[2];

void util_rand_reseed(void)
{
	if (getrandom(rng_s, sizeof(rng_s), 0) != sizeof(rng_s)) {
		rng_s[0] = (uint64_t)util_mono_us() ^ ((uint64_t)getpid() << 32);
		rng_s[1] = (uint64_t)util_wall_ms() * 2654435761u;
	}
	if (!rng_s[0] && !rng_s[1])
		rng_s[1] = 1;
}

uint32_t util_rand32(void)
{
	if (!rng_s[0] && !rng_s[1])
		util_rand_reseed();
	uint64_t s1 = rng_s[0];
	const uint64_t s0 = rng_s[1];
	rng_s[0] = s0;
	s1 ^= s1 << 23;
	rng_s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return (uint32_t)((rng_s[1] + s0) >> 32);
}

void util_sleep_ms(int64_t ms, volatile int *stop)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
		if (stop && *stop)
			return;
	}
}

void util_hostname(char *buf, size_t len)
{
	if (gethostname(buf, len) < 0 || !buf[0])
		snprintf(buf, len, "localhost");
	buf[len - 1] = '\0';
}

void util_devnull(int fd)
{
	int n = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (n < 0)
		return;
	if (n != fd) {
		dup2(n, fd);
		close(n);
	} else {
		util_set_cloexec(fd);
		fcntl(fd, F_SETFD, 0);
	}
}

/* Close fds a..b (b may be INT_MAX).  close_range(2) does it in one call
 * whatever their number; without it (kernels before 5.9) every number up
 * to the open-files limit is closed one by one. */
static void close_gap(int a, int b)
{
	if (a > b)
		return;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)a, (unsigned)b, 0u) == 0)
		return;
#endif
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > INT_MAX)
		max = INT_MAX;
	for (int fd = a; fd <= b && fd < max; fd++)
		close(fd);
}

static int int_cmp(const void *x, const void *y)
{
	int a = *(const int *)x, b = *(const int *)y;
	return a < b ? -1 : a > b;
}

/* No cap on how many fds are closed: a forked child (never exec'd) must
 * not keep any of the master's, however many it holds. */
void util_close_fds_from(int lowfd, const int *keep, size_t nkeep)
{
	int kept[16];
	size_t n = 0;
	for (size_t i = 0; i < nkeep && n < ARRAY_SIZE(kept); i++)
		if (keep[i] >= lowfd)
			kept[n++] = keep[i];
	qsort(kept, n, sizeof(kept[0]), int_cmp);
	int from = lowfd;
	for (size_t i = 0; i < n; i++) {
		close_gap(from, kept[i] - 1);
		if (kept[i] + 1 > from)
			from = kept[i] + 1;
	}
	close_gap(from, INT_MAX);
}

void linebuf_init(struct linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
}

void linebuf_free(struct linebuf *lb)
{
	free(lb->buf);
	memset(lb, 0, sizeof(*lb));
}

ssize_t linebuf_fill(struct linebuf *lb, int fd)
{
	/* Drop what the caller has consumed before reading more. */
	if (lb->off > 0) {
		memmove(lb->buf, lb->buf + lb->off, lb->len - lb->off);
		lb->len -= lb->off;
		lb->off = 0;
	}
	if (lb->cap - lb->len < 4096) {
		size_t ncap = lb->cap ? lb->cap * 2 : 8192;
		if (ncap > lb->max + 8192)
			ncap = lb->max + 8192;
		if (ncap > lb->cap) {
			char *nb = realloc(lb->buf, ncap);
			if (!nb)
				return -ENOMEM;
			lb->buf = nb;
			lb->cap = ncap;
		}
	}
	if (lb->cap - lb->len < 2) {
		/* Full without a newline: an overlong line; discard it. */
		lb->discarding = true;
		lb->len = 0;
	}
	ssize_t n = read(fd, lb->buf + lb->len, lb->cap - lb->len - 1);
	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	lb->len += (size_t)n;
	return n;
}

int linebuf_next(struct linebuf *lb, char **line)
{
	if (!lb->buf)
		return 0; /* nothing read yet (and no NULL + 0 arithmetic) */
	for (;;) {
		char *start = lb->buf + lb->off;
		size_t avail = lb->len - lb->off;
		char *nl = avail ? memchr(start, '\n', avail) : NULL;
		if (!nl) {
			if (avail > lb->max) {
				lb->len = lb->off = 0;
				if (!lb->discarding) {
					lb->discarding = true;
					return -E2BIG;
				}
			}
			return 0;
		}
		*nl = '\0';
		lb->off += (size_t)(nl - start) + 1;
		if (lb->discarding) {
			lb->discarding = false;
			continue;
		}
		if ((size_t)(nl - start) > lb->max) {
			return -E2BIG;
		}
		if (nl > start && nl[-1] == '\r')
			nl[-1] = '\0';
		*line = start;
		return 1;
	}
}

#define OUTQ_MAX (16u << 20)

int outq_flush(struct outq *q, int fd)
{
	while (q->off < q->len) {
		ssize_t n = write(fd, q->buf + q->off, q->len - q->off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		q->off += (size_t)n;
	}
	q->off = q->len = 0;
	return 0;
}

int outq_write(struct outq *q, int fd, const void *data, size_t len)
{
	/* Refuse before writing anything: a message is never cut in half. */
	size_t max = q->max ? q->max : OUTQ_MAX;
	if (q->len - q->off + len > max)
		return -ENOBUFS;
	int r = outq_flush(q, fd);
	if (r < 0)
		return r;
	const char *p = data;
	if (q->len == 0) {
		while (len > 0) {
			ssize_t n = write(fd, p, len);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					return -errno;
				break;
			}
			p += n;
			len -= (size_t)n;
		}
		if (len == 0)
			return 0;
	}
	if (q->off > 0) {
		memmove(q->buf, q->buf + q->off, q->len - q->off);
		q->len -= q->off;
		q->off = 0;
	}
	char *nb = realloc(q->buf, q->len + len);
	if (!nb)
		return -ENOMEM;
	q->buf = nb;
	memcpy(q->buf + q->len, p, len);
	q->len += len;
	return 0;
}

bool outq_pending(const struct outq *q) { return q->off < q->len; }

void outq_free(struct outq *q)
{
	size_t max = q->max;
	free(q->buf);
	memset(q, 0, sizeof(*q));
	q->max = max;
}

const char *util_proc_stat(pid_t pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "re");
	if (!f || len < 2) {
		if (f)
			fclose(f);
		return NULL;
	}
	size_t n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p + 2 : NULL;
}

int util_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -EINVAL;
}
