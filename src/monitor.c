/* monitor: heartbeat reader and Redis writer on behalf of the master. */
#include "monitor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>

#include "admin.h"
#include "chan.h"
#include "discover.h"
#include "log.h"
#include "patsum.h"
#include "rconn.h"
#include "retention.h"
#include "util.h"

#define MONITOR_QUEUE_MAX 10000
/* A heartbeat is well under 2 KiB; a larger field is not one. */
#define HB_FIELD_MAX (64u * 1024)

struct monitor {
	const struct monitor_args *a;
	const struct sv_config *cfg;
	struct rconn rc;
	struct chan_reader in;
	json_t *queue;          /* array of pending write ops */
	bool stopping;
	bool master_gone;
	int64_t next_report_ms;
	int64_t next_retention_ms;
	char workers_key[128];
	char supervisor_key[128];
	unsigned dropped;
	unsigned bad_fields;
	struct discover disc;   /* pattern streams (discover.h) */
	struct retention_idle idle; /* their group registry and deletion (retention.h) */
	struct patsum views;    /* their per pattern summaries (patsum.h) */
};

static void send_to_master(struct monitor *m, enum chan_type type, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!s)
		return;
	int r = chan_send(m->a->fd, type, s, strlen(s));
	if (r == -EINVAL)
		log_error("%s: a %s message of %zu bytes is over the channel's limit; not sent", __func__,
			  chan_type_name(type), strlen(s));
	else if (r < 0)
		m->master_gone = true;
	free(s);
}

static void emit_streams(void *ctx, json_t *msg)
{
	send_to_master(ctx, CHAN_MON_STREAMS, msg);
}

/* "unblock": wake the workers whose stream set changed out of a blocked
 * XREADGROUP (it returns as on a timeout). */
static void unblock_clients(struct monitor *m, json_t *op)
{
	size_t i, woken = 0;
	json_t *v;
	json_array_foreach(json_object_get(op, "ids"), i, v) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0 || !m->rc.c)
			continue;
		redisReply *r = rconn_command(&m->rc, "CLIENT UNBLOCK %lld", (long long)json_integer_value(v));
		if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
			woken++;
		if (r)
			freeReplyObject(r);
	}
	log_debug("CLIENT UNBLOCK: %zu of %zu workers were blocked", woken,
		  json_array_size(json_object_get(op, "ids")));
}

static void queue_op(struct monitor *m, json_t *op)
{
	if (json_array_size(m->queue) >= MONITOR_QUEUE_MAX) {
		json_array_remove(m->queue, 0);
		if (m->dropped++ == 0)
			log_warn("redis away too long: dropping the oldest queued supervisor events");
	}
	json_array_append(m->queue, op);
}

/* Build argv for one queued op; returns argc, or 0 to skip the op. */
static int op_argv(struct monitor *m, json_t *op, const char **argv, size_t max)
{
	const char *kind = json_string_value(json_object_get(op, "op"));
	int argc = 0;
	if (!kind)
		return 0;
	if (strcmp(kind, "event") == 0) {
		json_t *fields = json_object_get(op, "fields");
		const char *k;
		json_t *v;
		argv[argc++] = "XADD";
		argv[argc++] = m->supervisor_key;
		argv[argc++] = "MAXLEN";
		argv[argc++] = "~";
		argv[argc++] = "10000";
		argv[argc++] = "*";
		json_object_foreach(fields, k, v) {
			if (!json_is_string(v) || (size_t)argc + 2 > max)
				continue;
			argv[argc++] = k;
			argv[argc++] = json_string_value(v);
		}
		return argc > 6 ? argc : 0;
	}
	if (strcmp(kind, "hdel") == 0) {
		size_t i;
		json_t *v;
		argv[argc++] = "HDEL";
		argv[argc++] = m->workers_key;
		json_array_foreach(json_object_get(op, "names"), i, v) {
			if (json_is_string(v) && (size_t)argc < max)
				argv[argc++] = json_string_value(v);
		}
		return argc > 2 ? argc : 0;
	}
	return 0;
}

/* This node's heartbeat fields that no current worker owns. */
static void prune_fields(struct monitor *m, json_t *op)
{
	json_t *keep = json_object_get(op, "keep");
	redisReply *r = rconn_command(&m->rc, "HKEYS %s", m->workers_key);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		if (r)
			freeReplyObject(r);
		return;
	}
	char prefix[256];
	snprintf(prefix, sizeof(prefix), "%s/", m->cfg->node);
	for (size_t i = 0; i < r->elements; i++) {
		const char *name = r->element[i]->str;
		if (!name || strncmp(name, prefix, strlen(prefix)) != 0)
			continue;
		bool kept = false;
		size_t j;
		json_t *v;
		json_array_foreach(keep, j, v) kept |= json_is_string(v) && strcmp(json_string_value(v), name) == 0;
		if (kept)
			continue;
		redisReply *d = rconn_command(&m->rc, "HDEL %s %s", m->workers_key, name);
		if (d)
			freeReplyObject(d);
	}
	freeReplyObject(r);
}

/* Send queued writes; stops at the first connection failure. */
static void flush_queue(struct monitor *m)
{
	while (json_array_size(m->queue) > 0 && m->rc.c) {
		json_t *op = json_array_get(m->queue, 0);
		const char *kind = json_string_value(json_object_get(op, "op"));
		if (kind && strcmp(kind, "prune") == 0) {
			prune_fields(m, op);
		} else if (kind && strcmp(kind, "unblock") == 0) {
			unblock_clients(m, op);
		} else {
			const char *argv[256];
			int argc = op_argv(m, op, argv, ARRAY_SIZE(argv));
			if (argc > 0) {
				redisReply *r = rconn_commandv(&m->rc, argc, argv, NULL);
				if (!r)
					return; /* connection dropped: keep the op */
				if (r->type == REDIS_REPLY_ERROR)
					log_warn("%s: %s", argv[0], r->str);
				freeReplyObject(r);
			}
		}
		json_array_remove(m->queue, 0);
	}
}

/* Stream and group figures (admin_groups: the literal streams only) for
 * status and metrics; per-consumer pending counts are summed over
 * streams.  Pattern streams are left out: thousands of XINFO calls every
 * heartbeat interval would not be bounded; the paced walker (patsum.h)
 * summarises them per pattern instead. */
static json_t *collect_groups(struct monitor *m, json_t *pending)
{
	json_t *reply = admin_groups(&m->rc, m->cfg);
	json_t *groups = json_incref(json_object_get(reply, "groups"));
	json_decref(reply);
	size_t i;
	json_t *g;
	json_array_foreach(groups, i, g) {
		const char *name;
		json_t *n;
		json_object_foreach(json_object_get(g, "consumers"), name, n) {
			json_int_t old = json_integer_value(json_object_get(pending, name));
			json_object_set_new(pending, name, json_integer(old + json_integer_value(n)));
		}
	}
	return groups ? groups : json_array();
}

/* Any Redis client can write NS:workers.  Fields too large for a
 * heartbeat, with a NUL in the name (it would alias another name once
 * cut), or not a JSON object are left out here; the master checks the
 * fields of the rest one by one. */
static void relay_field(struct monitor *m, json_t *workers, const redisReply *k, const redisReply *v)
{
	if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || !k->str || !v->str)
		return;
	if (strlen(k->str) != (size_t)k->len || v->len > HB_FIELD_MAX) {
		if (m->bad_fields++ == 0)
			log_warn("%s: a field over %u bytes or with a NUL in its name; left out (logged once)",
				 m->workers_key, HB_FIELD_MAX);
		return;
	}
	json_t *hb = json_loadb(v->str, (size_t)v->len, 0, NULL);
	if (json_is_object(hb))
		json_object_set_new(workers, k->str, hb); /* refuses a non-UTF-8 name */
	else
		json_decref(hb);
}

static void report_beats(struct monitor *m)
{
	json_t *msg = json_object();
	json_object_set_new(msg, "op", json_string("beats"));
	if (!rconn_ready(&m->rc, util_mono_ms())) {
		json_object_set_new(msg, "ok", json_false());
		json_object_set_new(msg, "error", json_string(m->rc.err));
		send_to_master(m, CHAN_MON_BEATS, msg);
		return;
	}
	flush_queue(m);
	redisReply *r = rconn_command(&m->rc, "HGETALL %s", m->workers_key);
	json_t *workers = json_object();
	json_t *pending = json_object();
	bool ok = r && r->type == REDIS_REPLY_ARRAY;
	for (size_t i = 0; ok && i + 1 < r->elements; i += 2)
		relay_field(m, workers, r->element[i], r->element[i + 1]);
	if (r)
		freeReplyObject(r);
	json_t *groups = ok ? collect_groups(m, pending) : NULL;
	json_t *dead = ok && m->rc.c ? admin_dead_depths(&m->rc, m->cfg) : NULL;
	ok = ok && m->rc.c && dead;
	json_object_set_new(msg, "ok", json_boolean(ok));
	if (ok) {
		json_object_set_new(msg, "wall_ms", json_integer(util_wall_ms()));
		json_object_set_new(msg, "workers", workers);
		json_object_set_new(msg, "pending", pending);
		json_object_set_new(msg, "groups", groups);
		json_object_set_new(msg, "dead", dead);
		json_object_set_new(msg, "patterns", patsum_rows(&m->views, util_mono_ms()));
	} else {
		json_decref(workers);
		json_decref(pending);
		json_decref(groups);
		json_decref(dead);
		json_object_set_new(msg, "error", json_string(m->rc.err[0] ? m->rc.err : "bad reply"));
	}
	send_to_master(m, CHAN_MON_BEATS, msg);
}

static void handle_op(struct monitor *m, const struct chan_msg *msg)
{
	json_t *op = json_loadb((const char *)msg->data, msg->len, 0, NULL);
	const char *kind = json_string_value(json_object_get(op, "op"));
	if (!kind) {
		log_warn("bad request from master");
	} else if (strcmp(kind, "stop") == 0) {
		m->stopping = true;
	} else if (strcmp(kind, "call") == 0) {
		/* streamvisorctl pending/dead/drain: answer now. */
		json_t *reply = admin_call(&m->rc, m->cfg, &m->disc, json_string_value(json_object_get(op, "cmd")),
					   json_object_get(op, "args"));
		send_to_master(m, CHAN_MON_REPLY,
			       json_pack("{s:O, s:o}", "id", json_object_get(op, "id"), "reply", reply));
	} else {
		queue_op(m, op);
	}
	json_decref(op);
}

static void read_master(struct monitor *m)
{
	ssize_t n;
	while ((n = chan_reader_fill(&m->in, m->a->fd)) > 0)
		;
	struct chan_msg msg;
	int r;
	while ((r = chan_next(&m->in, &msg)) > 0)
		handle_op(m, &msg);
	if (r < 0) {
		log_error("%s: bad message from the master: %s", __func__, m->in.why);
		m->master_gone = true;
	}
	if (n == 0)
		m->master_gone = true;
}

/* Last words: one connection attempt, then write what is queued. */
static void final_flush(struct monitor *m)
{
	if (json_array_size(m->queue) == 0)
		return;
	if (!m->rc.c)
		rconn_connect(&m->rc);
	flush_queue(m);
	if (json_array_size(m->queue) > 0)
		log_warn("%zu supervisor writes not delivered: redis unavailable",
			 json_array_size(m->queue));
}

int monitor_main(const struct monitor_args *a)
{
	/* The monitor leaves when the master says "stop" (after the
	 * heartbeat fields are removed) or when its channel closes; a
	 * terminal's SIGINT to the whole group must not cut that short. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (getppid() != a->master_pid)
		return 0;
	log_open_child("monitor", a->cfg->log.level);

	struct monitor m;
	memset(&m, 0, sizeof(m));
	m.a = a;
	m.cfg = a->cfg;
	m.queue = json_array();
	snprintf(m.workers_key, sizeof(m.workers_key), "%s:workers", a->cfg->namespace);
	snprintf(m.supervisor_key, sizeof(m.supervisor_key), "%s:supervisor", a->cfg->namespace);
	chan_reader_init(&m.in, CHAN_FROM_MASTER_TO_MONITOR);
	util_set_nonblock(a->fd);
	int64_t interval = a->cfg->heartbeat.interval_ms;
	rconn_init(&m.rc, a->cfg, interval < 5000 ? interval : 5000);
	m.next_retention_ms = util_mono_ms() + retention_period_ms(a->cfg);
	if (discover_init(&m.disc, a->cfg, emit_streams, &m) < 0) {
		log_error("%s: out of memory for discovery", __func__);
		return SV_EX_TRANSIENT;
	}
	if (retention_idle_init(&m.idle, a->cfg, &m.disc) < 0) {
		log_error("%s: out of memory for retention", __func__);
		return SV_EX_TRANSIENT;
	}
	patsum_init(&m.views, a->cfg);

	while (!m.stopping && !m.master_gone) {
		int64_t now = util_mono_ms();
		if (now >= m.next_report_ms) {
			report_beats(&m);
			m.next_report_ms = now + interval;
		} else if (json_array_size(m.queue) > 0 && rconn_ready(&m.rc, now)) {
			flush_queue(&m);
		}
		if (now >= m.next_retention_ms) {
			if (m.rc.c)
				retention_run(&m.rc, m.cfg);
			m.next_retention_ms = util_mono_ms() + retention_period_ms(m.cfg);
		}
		if (m.rc.c)
			discover_step(&m.disc, &m.rc, util_mono_ms());
		if (m.rc.c)
			retention_idle_step(&m.idle, &m.rc, util_mono_ms());
		if (m.rc.c)
			patsum_step(&m.views, &m.rc, &m.disc, util_mono_ms());
		now = util_mono_ms();
		int64_t wait = m.next_report_ms - now;
		int64_t dw = discover_wait_ms(&m.disc, now);
		if (m.rc.c && dw < wait)
			wait = dw;
		if (m.rc.c && retention_idle_wait_ms(&m.idle, now) < wait)
			wait = retention_idle_wait_ms(&m.idle, now);
		int64_t vw = patsum_wait_ms(&m.views, now);
		if (m.rc.c && vw < wait)
			wait = vw;
		if (m.next_retention_ms - now < wait)
			wait = m.next_retention_ms - now;
		if (json_array_size(m.queue) > 0 && !m.rc.c) {
			int64_t w = rconn_wait_ms(&m.rc, now);
			wait = w < wait ? w : wait;
		}
		struct pollfd pfd[2] = {{.fd = a->fd, .events = POLLIN},
					{.fd = discover_fd(&m.disc), .events = POLLIN}};
		if (poll(pfd, pfd[1].fd >= 0 ? 2 : 1, wait < 0 ? 0 : (int)wait) > 0) {
			if (pfd[0].revents)
				read_master(&m);
			if (pfd[1].fd >= 0 && pfd[1].revents)
				discover_read(&m.disc);
		}
	}
	final_flush(&m);
	json_decref(m.queue);
	retention_idle_free(&m.idle);
	patsum_free(&m.views);
	discover_free(&m.disc);
	rconn_close(&m.rc);
	chan_reader_free(&m.in);
	return 0;
}
