/* master_monitor: the master's link to its monitor child: forking it,
 * the channel both ways, its stderr, heartbeat reports and the answers to
 * forwarded control calls. */
#include "master_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "log.h"
#include "monitor.h"
#include "util.h"

/* ---------- the monitor ---------- */

void master_monitor_send(struct master *m, json_t *op)
{
	if (m->monitor_fd < 0 || m->monitor_stop_sent) {
		json_decref(op);
		return;
	}
	char *s = json_dumps(op, JSON_COMPACT);
	json_decref(op);
	if (!s)
		return;
	size_t len = strlen(s);
	s[len] = '\n';
	int r = outq_write(&m->monitor_q, m->monitor_fd, s, len + 1);
	if (r < 0)
		log_warn("monitor channel: %s", strerror(-r));
	free(s);
}

void master_monitor_hdel(struct master *m, const char *name)
{
	master_monitor_send(m, json_pack("{s:s, s:[s]}", "op", "hdel", "names", name));
}

void master_monitor_read_stderr(struct master *m)
{
	if (m->monitor_err_fd < 0)
		return;
	ssize_t n;
	do {
		n = linebuf_fill(&m->monitor_err_lb, m->monitor_err_fd);
		char *line;
		int r;
		while ((r = linebuf_next(&m->monitor_err_lb, &line)) != 0)
			if (r > 0 && line[0])
				log_relay(line, "monitor", (int)m->monitor_pid);
	} while (n > 0);
	if (n == 0) {
		close(m->monitor_err_fd);
		m->monitor_err_fd = -1;
	}
}

void master_monitor_closed(struct master *m)
{
	master_monitor_read_stderr(m);
	if (m->monitor_fd >= 0)
		close(m->monitor_fd);
	if (m->monitor_err_fd >= 0)
		close(m->monitor_err_fd);
	m->monitor_fd = m->monitor_err_fd = -1;
	linebuf_free(&m->monitor_lb);
	linebuf_free(&m->monitor_err_lb);
	outq_free(&m->monitor_q);
}

static int monitor_body(void *arg, int chan)
{
	(void)arg;
	struct master *m = master_instance;
	struct monitor_args a = {.cfg = m->cfg, .fd = chan, .master_pid = m->self};
	return monitor_main(&a);
}

static void monitor_prune(struct master *m)
{
	json_t *keep = json_array();
	FOREACH_SLOT(m, s)
	json_array_append_new(keep, json_string(s->name));
	master_monitor_send(m, json_pack("{s:s, s:o}", "op", "prune", "keep", keep));
}

void master_monitor_spawn(struct master *m)
{
	int chan, err;
	pid_t pid = master_fork_child(m, &chan, &err, monitor_body, NULL);
	m->monitor_respawn_at = 0;
	if (pid < 0) {
		log_error("fork monitor: %s", strerror((int)-pid));
		m->monitor_respawn_at = util_mono_ms() + 1000;
		return;
	}
	m->monitor_pid = pid;
	m->monitor_fd = chan;
	m->monitor_err_fd = err;
	m->monitor_stop_sent = false;
	linebuf_init(&m->monitor_lb, 64 << 20);
	linebuf_init(&m->monitor_err_lb, CHILD_LINE_MAX);
	m->last_report_mono = util_mono_ms();
	monitor_prune(m);
}

/* Ask the monitor to finish its queue and exit; it is re-forked (with
 * the current configuration) unless we are shutting down. */
void master_monitor_restart(struct master *m)
{
	if (m->monitor_pid <= 0 || m->monitor_stop_sent)
		return;
	master_monitor_send(m, json_pack("{s:s}", "op", "stop"));
	m->monitor_stop_sent = true;
	m->monitor_kill_at = util_mono_ms() + m->cfg->redis.connect_timeout_ms +
			     m->cfg->redis.command_timeout_ms + 1000;
}

void master_monitor_redis_health(struct master *m, bool ok, const char *why)
{
	if (ok && !m->redis_ok) {
		m->redis_back_mono = util_mono_ms();
		log_info("heartbeat health known again: redis reachable; hang judgement resumes in %lld ms",
			 (long long)m->cfg->heartbeat.timeout_ms);
	} else if (!ok && m->redis_ok) {
		log_warn("heartbeat health unknown: %s; supervising from process state alone", why);
	}
	m->redis_ok = ok;
}

static void slot_take_beat(struct master *m, struct slot *s, json_t *hb, int64_t wall, int64_t now)
{
	if (!hb || json_integer_value(json_object_get(hb, "pid")) != s->pid)
		return;
	int64_t beat = json_integer_value(json_object_get(hb, "beat_ms"));
	if (beat != s->beat_ms) {
		/* When did it change?  At most one poll interval ago; the wall
		 * clock narrows it, the clamp keeps clock steps harmless. */
		int64_t age = wall - beat;
		if (age < 0)
			age = 0;
		if (age > m->cfg->heartbeat.interval_ms)
			age = m->cfg->heartbeat.interval_ms;
		s->beat_ms = beat;
		s->beat_change_mono = now - age;
	}
	json_decref(s->hb);
	s->hb = json_incref(hb);
}

static void on_beats(struct master *m, json_t *msg)
{
	int64_t now = util_mono_ms();
	m->last_report_mono = now;
	if (!json_is_true(json_object_get(msg, "ok"))) {
		master_monitor_redis_health(m, false, json_string_value(json_object_get(msg, "error")));
		return;
	}
	master_monitor_redis_health(m, true, NULL);
	int64_t wall = json_integer_value(json_object_get(msg, "wall_ms"));
	json_t *workers = json_object_get(msg, "workers");
	json_t *pending = json_object_get(msg, "pending");
	json_decref(m->groups);
	m->groups = json_incref(json_object_get(msg, "groups"));
	FOREACH_SLOT(m, s) {
		slot_take_beat(m, s, json_object_get(workers, s->name), wall, now);
		s->pending = json_integer_value(json_object_get(pending, s->name));
	}
	json_t *remote = json_array();
	const char *name;
	json_t *hb;
	json_object_foreach(workers, name, hb) {
		const char *node = json_string_value(json_object_get(hb, "node"));
		if (node && strcmp(node, m->cfg->node) == 0)
			continue;
		int64_t age = wall - json_integer_value(json_object_get(hb, "beat_ms"));
		/* Another node's worker: judged by its own master; only
		 * shown, and marked stale after 3 x timeout. */
		json_array_append_new(remote, json_pack("{s:s, s:O?, s:O?, s:O?, s:I, s:b}", "name", name,
							"node", json_object_get(hb, "node"), "pool",
							json_object_get(hb, "pool"), "status",
							json_object_get(hb, "status"), "beat_age_ms",
							(json_int_t)age, "stale",
							age > 3 * m->cfg->heartbeat.timeout_ms));
	}
	json_decref(m->remote);
	m->remote = remote;
}

/* Answer one forwarded call (id 0: all of them, the monitor is gone). */
void master_monitor_calls_answer(struct master *m, json_int_t id, json_t *reply)
{
	struct monitor_call **pp = &m->calls;
	while (*pp) {
		struct monitor_call *call = *pp;
		if (id && call->id != id) {
			pp = &call->next;
			continue;
		}
		*pp = call->next;
		if (reply)
			control_reply(call->client, id ? json_incref(reply) : json_deep_copy(reply));
		else
			control_reply_error(call->client, "the monitor exited before answering; try again");
		control_client_unref(call->client);
		free(call);
		if (id)
			break;
	}
	json_decref(reply);
}

void master_monitor_read(struct master *m)
{
	if (m->monitor_fd < 0)
		return;
	for (;;) {
		ssize_t n = linebuf_fill(&m->monitor_lb, m->monitor_fd);
		if (n <= 0)
			break;
	}
	char *line;
	int r;
	while ((r = linebuf_next(&m->monitor_lb, &line)) != 0) {
		if (r < 0)
			continue;
		json_t *msg = json_loads(line, 0, NULL);
		const char *op = json_string_value(json_object_get(msg, "op"));
		if (op && strcmp(op, "beats") == 0)
			on_beats(m, msg);
		else if (op && strcmp(op, "reply") == 0)
			master_monitor_calls_answer(m, json_integer_value(json_object_get(msg, "id")),
						    json_incref(json_object_get(msg, "reply")));
		json_decref(msg);
	}
}

