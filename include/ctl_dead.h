/* ctl_dead: streamvisorctl's `dead` command (list, show, retry, purge),
 * the client side of admin_dead.h.  Shows dead letters safely whatever
 * their bytes (escaped in tables; a declared encoding in --json), and
 * assembles `dead show` from the daemon's bounded chunks. */
#ifndef SV_CTL_DEAD_H
#define SV_CTL_DEAD_H

#include <stdbool.h>

#include <jansson.h>

struct ctl_dead_io {
	const char *prog;  /* for messages */
	bool json;         /* --json */
	/* Send one request (stolen) and return the reply; exits the process
	 * itself when the daemon cannot be reached. */
	json_t *(*call)(void *ctx, json_t *req);
	void *ctx;
};

/* argv: the words after "dead".  Returns the exit status: 0 ok, 1 the
 * daemon said no (or a local failure), 2 usage. */
int ctl_dead(const struct ctl_dead_io *io, int argc, char **argv);

#endif
