/* dispatch: the master's event loop, after dbus-broker's dispatch.c.  One
 * epoll instance; every file descriptor the master watches is one
 * dispatch_file embedded in the object that owns it (a child's channel, a
 * control client, the signalfd), carrying its own callback.  There is no
 * table of descriptors, so nothing limits how many the loop can watch but
 * RLIMIT_NOFILE.
 *
 * Epoll is level-triggered: a callback reads what it wants and is called
 * again on the next round if more is waiting.  Ready files are queued on
 * an intrusive list before any callback runs, and dispatch_file_deinit
 * unlinks a file from that list, so a callback may tear down any other
 * object (a child that exited, a dropped client) without leaving a
 * dangling event behind. */
#ifndef SV_DISPATCH_H
#define SV_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct dispatch;
struct dispatch_file;

typedef void (*dispatch_fn)(struct dispatch_file *f, uint32_t events);

struct dispatch_file {
	struct dispatch *d;          /* NULL when not registered */
	int fd;
	uint32_t mask;               /* EPOLLIN/EPOLLOUT asked for */
	uint32_t events;             /* what the last wait reported */
	struct dispatch_file *ready_next, *ready_prev;
	bool ready;
	dispatch_fn fn;
	void *data;                  /* the owner */
};

/* Returns 0 or -errno. */
int dispatch_new(struct dispatch **out);
void dispatch_free(struct dispatch *d);
/* Watch fd for mask (EPOLLIN, EPOLLOUT; errors and hang-ups are always
 * reported).  The file must stay at this address until deinit.  Returns 0
 * or -errno (logged). */
int dispatch_file_init(struct dispatch_file *f, struct dispatch *d, int fd, uint32_t mask,
		       dispatch_fn fn, void *data);
/* Change what is watched; a no-op when unchanged.  Returns 0 or -errno. */
int dispatch_file_select(struct dispatch_file *f, uint32_t mask);
/* Stop watching (before the fd is closed); safe on a file never
 * registered or already deinitialised. */
void dispatch_file_deinit(struct dispatch_file *f);
bool dispatch_file_registered(const struct dispatch_file *f);
/* Wait up to timeout_ms (-1: forever) and run the callback of every ready
 * file once.  Returns the number of callbacks run, or -errno. */
int dispatch_run(struct dispatch *d, int timeout_ms);
/* How many files are registered. */
unsigned dispatch_count(const struct dispatch *d);

#endif
