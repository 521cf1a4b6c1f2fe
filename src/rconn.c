/* rconn: a worker's (or the monitor's) own Redis connection. */
#include "rconn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void rconn_init(struct rconn *rc, const struct sv_config *cfg, int64_t cap_ms)
{
	memset(rc, 0, sizeof(*rc));
	rc->cfg = cfg;
	backoff_init(&rc->backoff, 100, cap_ms < 100 ? 100 : cap_ms);
}

void rconn_close(struct rconn *rc)
{
	if (rc->c)
		redisFree(rc->c);
	rc->c = NULL;
}

static struct timeval tv_ms(int64_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

/* Run one set-up command; 0, -ENOTCONN (I/O) or -EPROTO (error reply),
 * with rc->err set. */
static int setup_command(struct rconn *rc, const char *what, int argc, const char **argv)
{
	redisReply *r = redisCommandArgv(rc->c, argc, argv, NULL);
	if (!r) {
		snprintf(rc->err, sizeof(rc->err), "%s: %s", what, rc->c->errstr);
		return -ENOTCONN;
	}
	int ret = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		/* The error text of AUTH never contains the password. */
		snprintf(rc->err, sizeof(rc->err), "%s: %s", what, r->str);
		ret = -EPROTO;
	}
	freeReplyObject(r);
	return ret;
}

/* CLIENT ID of this connection (heartbeats carry it so the monitor can
 * CLIENT UNBLOCK a worker's blocked read).  A server that refuses it
 * leaves the id 0 (unknown); only a dropped connection is an error. */
static int take_client_id(struct rconn *rc)
{
	rc->client_id = 0;
	redisReply *r = redisCommand(rc->c, "CLIENT ID");
	if (!r) {
		snprintf(rc->err, sizeof(rc->err), "CLIENT ID: %s", rc->c->errstr);
		return -ENOTCONN;
	}
	if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
		rc->client_id = r->integer;
	freeReplyObject(r);
	return 0;
}

static int connect_once(struct rconn *rc)
{
	const struct sv_config *cfg = rc->cfg;
	const struct redis_url *u = &cfg->redis.parsed;
	struct timeval ctv = tv_ms(cfg->redis.connect_timeout_ms);

	if (u->type == REDIS_URL_UNIX)
		rc->c = redisConnectUnixWithTimeout(u->path, ctv);
	else
		rc->c = redisConnectWithTimeout(u->host, u->port, ctv);
	if (!rc->c) {
		snprintf(rc->err, sizeof(rc->err), "connect: out of memory");
		return -ENOMEM;
	}
	if (rc->c->err) {
		snprintf(rc->err, sizeof(rc->err), "connect to %s: %s",
			 cfg->redis.url_redacted, rc->c->errstr);
		return -ENOTCONN;
	}
	redisSetTimeout(rc->c, tv_ms(cfg->redis.command_timeout_ms));
	/* hiredis frees its reader's buffer whenever it is empty with more
	 * than 16 KB spare, so a worker reading batches regrew it from empty
	 * at every round trip: a large malloc right after a batch's worth of
	 * reply objects was freed, i.e. a malloc_consolidate each time (issue
	 * 14).  Keep up to RCONN_READER_KEEP spare (a larger one, after a
	 * huge reply, is still given back). */
	rc->c->reader->maxbuf = RCONN_READER_KEEP;
	if (u->type == REDIS_URL_TCP)
		redisEnableKeepAlive(rc->c);
	int err;
	if (cfg->redis.password) {
		const char *argv[3] = {"AUTH", u->user, cfg->redis.password};
		err = u->user ? setup_command(rc, "AUTH", 3, argv)
			      : setup_command(rc, "AUTH", 2, (const char *[]){"AUTH", cfg->redis.password});
		if (err < 0)
			return err == -EPROTO ? -EACCES : err;
	}
	if (u->db) {
		char db[16];
		snprintf(db, sizeof(db), "%d", u->db);
		if ((err = setup_command(rc, "SELECT", 2, (const char *[]){"SELECT", db})) < 0)
			return err;
	}
	if ((err = setup_command(rc, "PING", 1, (const char *[]){"PING"})) < 0)
		return err;
	return take_client_id(rc);
}

int rconn_connect(struct rconn *rc)
{
	rconn_close(rc);
	int err = connect_once(rc);
	if (err == 0) {
		if (rc->failures)
			log_info("redis connection restored after %u attempts", rc->failures);
		rc->failures = 0;
		rc->connects++;
		backoff_reset(&rc->backoff);
		rc->next_try_ms = 0;
		return 0;
	}
	rconn_close(rc);
	if (rc->failures++ == 0)
		log_warn("redis unavailable: %s; retrying with backoff", rc->err);
	else
		log_debug("redis still unavailable (attempt %u): %s", rc->failures, rc->err);
	rc->next_try_ms = util_mono_ms() + backoff_next(&rc->backoff, util_rand32());
	return err;
}

bool rconn_ready(struct rconn *rc, int64_t now_ms)
{
	if (rc->c)
		return true;
	if (now_ms < rc->next_try_ms)
		return false;
	return rconn_connect(rc) == 0;
}

int64_t rconn_wait_ms(const struct rconn *rc, int64_t now_ms)
{
	if (rc->c || rc->next_try_ms <= now_ms)
		return 0;
	return rc->next_try_ms - now_ms;
}

void rconn_drop(struct rconn *rc, const char *why)
{
	if (!rc->c)
		return;
	snprintf(rc->err, sizeof(rc->err), "%s", why ? why : rc->c->errstr);
	log_warn("redis connection lost: %s; reconnecting", rc->err);
	rconn_close(rc);
	rc->failures = 1;
	/* The first reconnect is immediate: most losses are a restart. */
	rc->next_try_ms = 0;
}

static redisReply *checked(struct rconn *rc, void *reply)
{
	if (!reply) {
		rconn_drop(rc, rc->c ? rc->c->errstr : "no connection");
		return NULL;
	}
	return reply;
}

redisReply *rconn_command(struct rconn *rc, const char *fmt, ...)
{
	if (!rc->c)
		return NULL;
	va_list ap;
	va_start(ap, fmt);
	void *r = redisvCommand(rc->c, fmt, ap);
	va_end(ap);
	return checked(rc, r);
}

redisReply *rconn_commandv(struct rconn *rc, int argc, const char **argv, const size_t *argvlen)
{
	if (!rc->c)
		return NULL;
	return checked(rc, redisCommandArgv(rc->c, argc, argv, argvlen));
}

int rconn_write_raw(struct rconn *rc, const char *buf, size_t len)
{
	if (!rc->c)
		return -ENOTCONN;
	int done = 0;
	while (!done)
		if (redisBufferWrite(rc->c, &done) != REDIS_OK) {
			rconn_drop(rc, rc->c->errstr[0] ? rc->c->errstr : "write failed");
			return -ENOTCONN;
		}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(rc->c->fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* EAGAIN: the socket's send timeout (command_timeout_ms). */
			char why[128];
			snprintf(why, sizeof(why), "write: %s", w < 0 ? strerror(errno) : "nothing written");
			rconn_drop(rc, why);
			return -ENOTCONN;
		}
		off += (size_t)w;
	}
	return 0;
}

redisReply *rconn_get_reply(struct rconn *rc)
{
	if (!rc->c)
		return NULL;
	void *r = NULL;
	if (redisGetReply(rc->c, &r) != REDIS_OK)
		r = NULL;
	return checked(rc, r);
}

bool rconn_is_error(const redisReply *r, const char *prefix)
{
	return r && r->type == REDIS_REPLY_ERROR && r->str &&
	       strncmp(r->str, prefix, strlen(prefix)) == 0;
}

redisReply *rconn_pair_atomic(struct rconn *rc, int argc, const char **argv, const size_t *lens,
			      const char *second_fmt, ...)
{
	if (!rc->c)
		return NULL;
	redisAppendCommand(rc->c, "MULTI");
	redisAppendCommandArgv(rc->c, argc, argv, lens);
	va_list ap;
	va_start(ap, second_fmt);
	redisvAppendCommand(rc->c, second_fmt, ap);
	va_end(ap);
	redisAppendCommand(rc->c, "EXEC");
	/* MULTI, and the two QUEUED replies, say nothing EXEC does not. */
	for (int i = 0; i < 3; i++) {
		redisReply *r = rconn_get_reply(rc);
		if (!r)
			return NULL;
		freeReplyObject(r);
	}
	return rconn_get_reply(rc);
}
