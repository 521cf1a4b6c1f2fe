/* worker_tool_int: what the tool kind's two halves share: exec mode
 * (worker_tool.c) and persistent handlers (worker_tool_persist.c).  Not
 * an interface for anything else. */
#ifndef SV_WORKER_TOOL_INT_H
#define SV_WORKER_TOOL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "consumer.h"
#include "rconn.h"

/* One call in hand.  In exec mode the const strings point into the
 * batch's entry; a persistent call holds copies (pt_take). */
struct call {
	const char *stream, *entry_id;
	const char *logical_id; /* origin_id of a re-driven dead letter, else entry_id */
	const char *run, *call_id, *name;
	int64_t seq;
	char *arguments;       /* JSON text for stdin */
	char *done_key;        /* worker_tool_done_key(): earlier versions' */
	char *done_hash;       /* worker_tool_done_hash() */
	char *forgotten_key;   /* NS:forgotten */
};

void worker_tool_call_free(struct call *call);

/* What running the tool produced. */
struct outcome {
	char *output;
	json_t *json_output;   /* persistent: the handler's output as given (any
				* JSON value; borrowed), used instead of output */
	int is_error;
	int truncated;
	int exit_code;         /* -1: none (signal, timeout, not started, persistent) */
	int64_t duration_ms;
	bool timed_out;        /* the call's timeout_ms passed */
	bool stolen;           /* our claim was lost: publish nothing */
	bool interrupted;      /* the worker is stopping: publish nothing */
};

/* What the scripts answer about a call (check_script's values). */
enum { TOOL_RUN = 0, TOOL_DONE = 1, TOOL_FORGOTTEN = 2 };

/* The publish script (tool.output, done hash, XACK) on connection rc.
 * Returns 0, TOOL_FORGOTTEN, -ENOMEM, -ENOTCONN or -EPROTO (logged). */
int worker_tool_publish(struct rconn *rc, struct consumer *c, const struct call *call, const struct outcome *oc);

#endif
