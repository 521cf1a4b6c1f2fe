/* web_int: what the web child's files share (src/web.c, src/web_http.c,
 * src/web_runs.c); not for the rest of the daemon, which knows web_main()
 * alone (web.h).
 *
 *   web.c       web_main: fds, signals, the config message, the epoll loop;
 *               requests to the master (ids, replies, the shared and cached
 *               `state`).
 *   web_http.c  libmicrohttpd: the daemons (one per listening socket), the
 *               checks of every request, routing, responses and headers.
 *   web_runs.c  GET /api/v1/runs/ID: snapshot lookups (snapdb.h) and the
 *               long-poll waiters, re-read when a file's PRAGMA data_version
 *               moves (checked every WEB_RUNS_TICK_MS while any waits).
 *
 * A request that waits (for the master, the state, a run) is suspended
 * (MHD_suspend_connection) with its struct web_req on one list; its answer
 * is prepared with web_reply*() and the connection resumed, and the next
 * call of the access handler queues it. */
#ifndef SV_WEB_INT_H
#define SV_WEB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "log.h"
#include "snapdb.h"
#include "web_auth.h"

#define WEB_FD_CHAN 3
#define WEB_FD_HTTP 4
#define WEB_FD_METRICS 5

#define WEB_BODY_MAX (64u * 1024)
#define WEB_CALLS_MAX 64             /* requests outstanding at the master */
#define WEB_CALL_TIMEOUT_MS 30000    /* the master answers every id; a bound anyway */
#define WEB_RUNS_TICK_MS 2
#define WEB_WAIT_MAX_S 60

struct MHD_Connection;
struct MHD_Response;
struct web;
struct web_req;

/* The configuration message (web-spec.md "CHAN_M_WEB_CONFIG"), checked. */
struct web_conf {
	json_t *root;               /* the message; the strings below point into it */
	const char *node;
	enum log_level level;
	bool loopback, tls, metrics_token;
	const char *tls_cert, *tls_key;
	const char **hosts;
	size_t nhosts;
	struct web_token token;
	json_t *actions;            /* array of strings */
	int64_t status_interval_ms;
	unsigned max_connections, max_waits;
};

/* A list of requests (doubly linked through web_req.next/prev). */
struct web_list {
	struct web_req *head;
	size_t n;
};

enum web_wait_kind { WEB_WAIT_NONE = 0, WEB_WAIT_STATE, WEB_WAIT_CALL, WEB_WAIT_RUN };

/* What a request does with its master reply or the state. */
typedef void (*web_reply_fn)(struct web_req *r, json_t *reply);

struct web_req {
	struct web *w;
	struct web_server *srv;
	struct MHD_Connection *conn;
	char *target;               /* the raw request target (path and query) */
	bool started, suspended, dispatched;
	int route;
	char *body;
	size_t body_len;
	bool body_too_big;
	/* auth: the token to forward with a master request (the session's
	 * copy or the bearer token), malloc'd; never logged */
	char *token;
	bool authed;
	/* waiting */
	enum web_wait_kind wait;
	struct web_req *next, *prev;
	uint64_t call_id;
	int64_t deadline_ms;        /* monotonic */
	web_reply_fn on_reply;
	char *run, *pool;           /* WEB_WAIT_RUN */
	/* the answer, queued at the next access handler call */
	struct MHD_Response *resp;
	unsigned status;
};

struct web_server;

struct web {
	struct web_conf conf;
	bool configured;
	bool stop;
	int exit_code;
	int chan_fd;
	struct chan_reader *in;
	struct web_server *http, *metrics;
	int listen_http, listen_metrics; /* fds, -1 none */
	int epfd;
	uint64_t next_id;
	struct web_list calls;      /* WEB_WAIT_CALL, by call_id */
	struct web_list state_waiters;
	uint64_t state_id;          /* the state fetch outstanding, 0 none */
	int64_t state_sent_ms;      /* when it was sent */
	int64_t state_ms;           /* monotonic time of the cached state */
	json_t *state;              /* the cached state reply, or NULL */
	char *state_text;           /* its compact JSON, made on first use */
	struct web_sessions sessions;
	struct web_ratelimit logins;
	struct snapdbs dbs;         /* the pools' files (web_runs.c) */
	struct web_list run_waiters;
};

/* web.c */
void web_list_add(struct web_list *l, struct web_req *r);
void web_list_del(struct web_list *l, struct web_req *r);
/* Send cmd/args (stolen) with token (NULL: none) to the master; on_reply
 * gets the "reply" object.  Suspends r.  Returns 0, or -EBUSY (too many
 * outstanding: answer 503), or -EPIPE / -ENOMEM (answer 502). */
int web_call(struct web *w, struct web_req *r, const char *cmd, json_t *args, const char *token,
	     web_reply_fn on_reply);
/* r needs the state: on_reply(r, state) now when the cached one is fresh
 * (returns 1), else after the shared fetch (returns 0; r waits), or
 * -errno (answer 502). */
int web_state(struct web *w, struct web_req *r, web_reply_fn on_reply);
/* The cached state's compact JSON (NULL: out of memory). */
const char *web_state_text(struct web *w);
/* Drop r from whatever it waits on (connection gone, shutdown). */
void web_req_unwait(struct web_req *r);

/* web_http.c */
int web_http_start(struct web *w);   /* the daemons, after the first config */
void web_http_stop(struct web *w);
void web_http_run(struct web *w);    /* MHD_run on each daemon */
int64_t web_http_timeout_ms(struct web *w); /* -1: none */
/* Answers: status and body (copied); JSON (stolen); {"error": msg}.  The
 * headers every response carries are added here. */
void web_reply(struct web_req *r, unsigned status, const char *ctype, const char *body, size_t len);
void web_reply_take(struct web_req *r, unsigned status, const char *ctype, char *body, size_t len);
void web_reply_json(struct web_req *r, unsigned status, json_t *j);
void web_reply_error(struct web_req *r, unsigned status, const char *msg);
void web_reply_header(struct web_req *r, const char *name, const char *value);
/* Resume a suspended request whose answer is ready. */
void web_resume(struct web_req *r);

/* web_runs.c */
void web_runs_config(struct web *w);  /* (re)build w->dbs from the config */
/* GET /api/v1/runs/ID: answers or waits.  wait_s 0: no wait. */
void web_runs_get(struct web *w, struct web_req *r, const char *run, const char *pool, long long wait_s);
void web_runs_tick(struct web *w, int64_t now_ms);
int64_t web_runs_timeout_ms(struct web *w, int64_t now_ms); /* -1: none */
void web_runs_free(struct web *w);

#endif
