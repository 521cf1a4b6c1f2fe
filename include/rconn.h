/* rconn: one blocking hiredis connection owned by one process, with
 * connect/command timeouts, AUTH, SELECT and PING, reconnection with
 * backoff and jitter, and helpers to classify replies.  After any I/O error
 * or timeout the context is dead: rconn drops it and the next call
 * reconnects. */
#ifndef SV_RCONN_H
#define SV_RCONN_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "backoff.h"
#include "sv_config.h"

/* Spare bytes a connection's reply buffer keeps between replies (hiredis'
 * reader maxbuf; its default, 16 KB, freed it after every batch). */
#define RCONN_READER_KEEP (4u << 20)

struct rconn {
	redisContext *c;          /* NULL while disconnected */
	const struct sv_config *cfg;
	struct backoff backoff;   /* 100 ms doubling to the cap */
	int64_t next_try_ms;      /* monotonic: no attempt before this */
	unsigned failures;        /* consecutive failed attempts */
	char err[256];            /* last error, never containing a password */
	int64_t client_id;        /* CLIENT ID of the current connection, 0 unknown */
	uint64_t connects;        /* successful connects so far: a change means
				   * a new connection (state kept in Redis per
				   * connection, e.g. a registry, is redone) */
};

/* cap_ms bounds the reconnect delay (the spec's 5 s, lowered by callers
 * that must heartbeat more often). */
void rconn_init(struct rconn *rc, const struct sv_config *cfg, int64_t cap_ms);
void rconn_close(struct rconn *rc);
/* One attempt now: connect, AUTH, SELECT, PING, CLIENT ID.  Returns 0, or (err set,
 * logged once per outage; the recovery is logged too) -ENOTCONN (cannot
 * connect, or the connection failed during set-up), -EACCES (AUTH
 * refused), -EPROTO (SELECT or PING refused) or -ENOMEM. */
int rconn_connect(struct rconn *rc);
/* Connected, or it is time to try again and the attempt succeeds. */
bool rconn_ready(struct rconn *rc, int64_t now_ms);
/* Milliseconds until the next attempt may be made (0 = now). */
int64_t rconn_wait_ms(const struct rconn *rc, int64_t now_ms);
/* The context failed (I/O error, timeout, protocol error): free it and
 * schedule a reconnect. */
void rconn_drop(struct rconn *rc, const char *why);

/* redisCommand wrapper: returns the reply, or NULL after dropping the
 * connection on an I/O error.  Error replies are returned as replies. */
redisReply *rconn_command(struct rconn *rc, const char *fmt, ...);
redisReply *rconn_commandv(struct rconn *rc, int argc, const char **argv, const size_t *argvlen);
/* Write buf (whole RESP commands the caller formatted itself) to the
 * connection now, after whatever hiredis had buffered: their replies come
 * in order with the pipeline's (rconn_get_reply).  Returns 0, or
 * -ENOTCONN after dropping the connection (a write error or the send
 * timeout). */
int rconn_write_raw(struct rconn *rc, const char *buf, size_t len);
/* Read one pipelined reply (after redisAppendCommand*); NULL = dropped. */
redisReply *rconn_get_reply(struct rconn *rc);

/* MULTI; the argv command; the printf-formatted second command; EXEC,
 * pipelined in one round trip: an atomic "write and acknowledge" (dead
 * letters: XADD + XACK; re-drives: XADD + XDEL).  Returns the EXEC reply
 * (an array of both results when the transaction ran), or NULL after
 * dropping the connection. */
redisReply *rconn_pair_atomic(struct rconn *rc, int argc, const char **argv, const size_t *lens,
			      const char *second_fmt, ...);

/* Error reply whose message starts with prefix ("NOGROUP", "BUSYGROUP"). */
bool rconn_is_error(const redisReply *r, const char *prefix);

#endif
