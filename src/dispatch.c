/* dispatch: one epoll instance, one object per file descriptor. */
#include "dispatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Events taken from the kernel per wait.  Not a limit on the number of
 * descriptors: with level-triggered epoll what does not fit is reported
 * by the next wait. */
#define DISPATCH_BATCH 256

struct dispatch {
	int epfd;
	unsigned nfiles;
	struct dispatch_file *ready_head, *ready_tail;
};

int dispatch_new(struct dispatch **out)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0) {
		int e = errno;
		log_error("%s: epoll_create1: %s", __func__, strerror(e));
		free(d);
		return -e;
	}
	*out = d;
	return 0;
}

void dispatch_free(struct dispatch *d)
{
	if (!d)
		return;
	close(d->epfd);
	free(d);
}

unsigned dispatch_count(const struct dispatch *d)
{
	return d ? d->nfiles : 0;
}

bool dispatch_file_registered(const struct dispatch_file *f)
{
	return f->d != NULL;
}

int dispatch_file_init(struct dispatch_file *f, struct dispatch *d, int fd, uint32_t mask,
		       dispatch_fn fn, void *data)
{
	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->fn = fn;
	f->data = data;
	f->mask = mask;
	struct epoll_event ev = {.events = mask, .data.ptr = f};
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		log_error("%s: epoll_ctl ADD fd %d: %s", __func__, fd, strerror(e));
		return -e;
	}
	f->d = d;
	d->nfiles++;
	return 0;
}

int dispatch_file_select(struct dispatch_file *f, uint32_t mask)
{
	if (!f->d || f->mask == mask)
		return 0;
	struct epoll_event ev = {.events = mask, .data.ptr = f};
	if (epoll_ctl(f->d->epfd, EPOLL_CTL_MOD, f->fd, &ev) < 0) {
		int e = errno;
		log_error("%s: epoll_ctl MOD fd %d: %s", __func__, f->fd, strerror(e));
		return -e;
	}
	f->mask = mask;
	return 0;
}

static void ready_unlink(struct dispatch *d, struct dispatch_file *f)
{
	if (!f->ready)
		return;
	if (f->ready_prev)
		f->ready_prev->ready_next = f->ready_next;
	else
		d->ready_head = f->ready_next;
	if (f->ready_next)
		f->ready_next->ready_prev = f->ready_prev;
	else
		d->ready_tail = f->ready_prev;
	f->ready_next = f->ready_prev = NULL;
	f->ready = false;
}

static void ready_link(struct dispatch *d, struct dispatch_file *f)
{
	if (f->ready)
		return;
	f->ready = true;
	f->ready_next = NULL;
	f->ready_prev = d->ready_tail;
	if (d->ready_tail)
		d->ready_tail->ready_next = f;
	else
		d->ready_head = f;
	d->ready_tail = f;
}

void dispatch_file_deinit(struct dispatch_file *f)
{
	struct dispatch *d = f->d;
	if (!d)
		return;
	ready_unlink(d, f);
	/* Callers deinit before they close: epoll forgets a descriptor only
	 * when every dup of it is closed (a forked child may hold one), so a
	 * registration left behind could report events for freed memory. */
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, f->fd, NULL);
	d->nfiles--;
	f->d = NULL;
}

int dispatch_run(struct dispatch *d, int timeout_ms)
{
	struct epoll_event ev[DISPATCH_BATCH];
	int n = epoll_wait(d->epfd, ev, DISPATCH_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		struct dispatch_file *f = ev[i].data.ptr;
		f->events = ev[i].events;
		ready_link(d, f);
	}
	int ran = 0;
	while (d->ready_head) {
		struct dispatch_file *f = d->ready_head;
		ready_unlink(d, f);
		f->fn(f, f->events);
		ran++;
	}
	return ran;
}
