/* web: the web child's main, loop, configuration and requests to the
 * master (web.h, web_int.h). */
#include "web.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "chan.h"
#include "fault.h"
#include "log.h"
#include "util.h"
#include "web_int.h"

/* ---- lists ----------------------------------------------------------- */

void web_list_add(struct web_list *l, struct web_req *r)
{
	r->prev = NULL;
	r->next = l->head;
	if (l->head)
		l->head->prev = r;
	l->head = r;
	l->n++;
}

void web_list_del(struct web_list *l, struct web_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
	l->n--;
}

void web_req_unwait(struct web_req *r)
{
	struct web *w = r->w;
	switch (r->wait) {
	case WEB_WAIT_STATE:
		web_list_del(&w->state_waiters, r);
		break;
	case WEB_WAIT_CALL:
		web_list_del(&w->calls, r);
		break;
	case WEB_WAIT_RUN:
		web_list_del(&w->run_waiters, r);
		break;
	case WEB_WAIT_NONE:
		break;
	}
	r->wait = WEB_WAIT_NONE;
}

/* ---- the configuration message ---------------------------------------- */

static void conf_free(struct web_conf *c)
{
	free(c->hosts);
	json_decref(c->root);
	memset(c, 0, sizeof(*c));
}

static const char *opt_string(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Check and take the message (root stolen).  Returns 0 or -EINVAL (logged). */
static int conf_parse(struct web_conf *c, json_t *root)
{
	memset(c, 0, sizeof(*c));
	c->root = root;
	const char *why = NULL;
	if (!json_is_object(root)) {
		why = "not a JSON object";
		goto bad;
	}
	c->node = opt_string(root, "node");
	if (!c->node)
		c->node = "";
	c->level = LOG_INFO;
	const char *lvl = opt_string(root, "log_level");
	if (lvl && log_level_parse(lvl, &c->level) < 0) {
		why = "log_level";
		goto bad;
	}
	c->loopback = json_is_true(json_object_get(root, "loopback"));
	c->tls = json_is_true(json_object_get(root, "tls"));
	c->metrics_token = json_is_true(json_object_get(root, "metrics_token"));
	c->tls_cert = opt_string(root, "tls_cert");
	c->tls_key = opt_string(root, "tls_key");
	if (c->tls && (!c->tls_cert || !c->tls_key)) {
		why = "tls without tls_cert and tls_key";
		goto bad;
	}
	json_t *hosts = json_object_get(root, "hosts");
	if (hosts && !json_is_array(hosts)) {
		why = "hosts is not an array";
		goto bad;
	}
	c->hosts = calloc(json_array_size(hosts) + 1, sizeof(*c->hosts));
	if (!c->hosts) {
		why = "out of memory";
		goto bad;
	}
	size_t i;
	json_t *v;
	json_array_foreach(hosts, i, v) {
		if (!json_is_string(v)) {
			why = "hosts holds a non-string";
			goto bad;
		}
		c->hosts[c->nhosts++] = json_string_value(v);
	}
	json_t *sha = json_object_get(root, "token_sha256");
	if (web_token_parse(&c->token, opt_string(root, "token_salt"), json_is_string(sha) ? json_string_value(sha) : NULL) < 0 ||
	    (sha && !json_is_null(sha) && !json_is_string(sha))) {
		why = "token_salt / token_sha256";
		goto bad;
	}
	c->actions = json_object_get(root, "actions");
	if (!json_is_array(c->actions)) {
		c->actions = json_array();
		json_object_set_new(root, "actions", c->actions);
	}
	json_t *iv = json_object_get(root, "status_interval_ms");
	c->status_interval_ms = json_is_integer(iv) ? json_integer_value(iv) : 1000;
	if (c->status_interval_ms < 0 || c->status_interval_ms > 3600000) {
		why = "status_interval_ms";
		goto bad;
	}
	json_t *mc = json_object_get(root, "max_connections");
	json_t *mw = json_object_get(root, "max_waits");
	c->max_connections = json_is_integer(mc) && json_integer_value(mc) > 0 && json_integer_value(mc) <= 65536
				     ? (unsigned)json_integer_value(mc) : 256;
	c->max_waits = json_is_integer(mw) && json_integer_value(mw) >= 0 && json_integer_value(mw) <= 65536
			       ? (unsigned)json_integer_value(mw) : 64;
	return 0;
bad:
	log_error("%s: the configuration message is unusable: %s", __func__, why);
	conf_free(c);
	return -EINVAL;
}

static void handle_config(struct web *w, const struct chan_msg *m)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)m->data, m->len, 0, &jerr);
	struct web_conf c;
	if (!root) {
		log_error("%s: the configuration message is not JSON: %s", __func__, jerr.text);
	} else if (conf_parse(&c, root) == 0) {
		bool first = !w->configured;
		bool tls_changed = !first && (c.tls != w->conf.tls ||
					       (c.tls && (strcmp(c.tls_cert, w->conf.tls_cert) ||
							  strcmp(c.tls_key, w->conf.tls_key))));
		bool token_changed = !first && (c.token.set != w->conf.token.set ||
						 !web_ct_equal(c.token.sha, w->conf.token.sha, sizeof(c.token.sha)));
		if (!first && tls_changed) {
			/* The daemons hold the key; a new one needs a fresh child. */
			log_warn("%s: TLS settings changed: restarting the web child to take them", __func__);
			conf_free(&c);
			w->stop = true;
			w->exit_code = SV_EX_TRANSIENT;
			return;
		}
		if (!first)
			conf_free(&w->conf);
		w->conf = c;
		log_set_level(c.level);
		if (token_changed)
			web_sessions_clear(&w->sessions); /* their tokens are stale */
		web_runs_config(w);
		if (first) {
			w->configured = true;
			if (web_http_start(w) < 0) {
				w->stop = true;
				w->exit_code = SV_EX_CONFIG;
			}
		} else {
			log_info("configuration reloaded");
		}
		return;
	}
	if (!w->configured) {
		w->stop = true;
		w->exit_code = SV_EX_CONFIG;
	}
}

/* ---- requests to the master ------------------------------------------- */

static int send_request(struct web *w, uint64_t id, const char *cmd, json_t *args, const char *token)
{
	json_t *req = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)id, "cmd", cmd, "args",
				args ? args : json_array());
	if (!req)
		return -ENOMEM;
	if (token)
		json_object_set_new(req, "token", json_string(token));
	char *s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s)
		return -ENOMEM;
	int r = chan_send(w->chan_fd, CHAN_W_WEB_REQUEST, s, strlen(s));
	explicit_bzero(s, strlen(s)); /* it may hold a token */
	free(s);
	if (r == -EINVAL)
		return -EMSGSIZE;
	if (r < 0) {
		log_error("%s: cannot write to the master: %s", __func__, strerror(-r));
		w->stop = true;
		return -EPIPE;
	}
	return 0;
}

static size_t outstanding(const struct web *w)
{
	return w->calls.n + (w->state_id ? 1 : 0);
}

int web_call(struct web *w, struct web_req *r, const char *cmd, json_t *args, const char *token,
	     web_reply_fn on_reply)
{
	if (outstanding(w) >= WEB_CALLS_MAX) {
		json_decref(args);
		return -EBUSY;
	}
	uint64_t id = ++w->next_id;
	int e = send_request(w, id, cmd, args, token);
	if (e < 0)
		return e;
	r->call_id = id;
	r->on_reply = on_reply;
	r->deadline_ms = util_mono_ms() + WEB_CALL_TIMEOUT_MS;
	r->wait = WEB_WAIT_CALL;
	web_list_add(&w->calls, r);
	return 0;
}

int web_state(struct web *w, struct web_req *r, web_reply_fn on_reply)
{
	int64_t now = util_mono_ms();
	if (w->state && now - w->state_ms < w->conf.status_interval_ms) {
		on_reply(r, w->state);
		return 1;
	}
	if (w->state_id && now - w->state_sent_ms > WEB_CALL_TIMEOUT_MS)
		w->state_id = 0; /* never answered: ask again */
	if (!w->state_id) {
		if (outstanding(w) >= WEB_CALLS_MAX)
			return -EBUSY;
		uint64_t id = ++w->next_id;
		int e = send_request(w, id, "state", NULL, NULL);
		if (e < 0)
			return e;
		w->state_id = id;
		w->state_sent_ms = now;
	}
	r->on_reply = on_reply;
	r->deadline_ms = now + WEB_CALL_TIMEOUT_MS;
	r->wait = WEB_WAIT_STATE;
	web_list_add(&w->state_waiters, r);
	return 0;
}

const char *web_state_text(struct web *w)
{
	if (!w->state_text && w->state)
		w->state_text = json_dumps(w->state, JSON_COMPACT);
	return w->state_text;
}

static void state_arrived(struct web *w, json_t *reply)
{
	w->state_id = 0;
	if (json_is_true(json_object_get(reply, "ok"))) {
		json_decref(w->state);
		free(w->state_text);
		w->state_text = NULL;
		w->state = json_incref(reply);
		w->state_ms = util_mono_ms();
	}
	while (w->state_waiters.head) {
		struct web_req *r = w->state_waiters.head;
		web_list_del(&w->state_waiters, r);
		r->wait = WEB_WAIT_NONE;
		if (json_is_true(json_object_get(reply, "ok"))) {
			r->on_reply(r, reply);
		} else {
			const char *e = json_string_value(json_object_get(reply, "error"));
			web_reply_error(r, 503, e ? e : "the daemon gave no state");
		}
		web_resume(r);
	}
}

static void handle_reply(struct web *w, const struct chan_msg *m)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)m->data, m->len, 0, &jerr);
	json_t *id = json_object_get(root, "id");
	json_t *reply = json_object_get(root, "reply");
	if (!json_is_integer(id) || !json_is_object(reply)) {
		log_error("%s: a malformed reply from the master; ignored", __func__);
		json_decref(root);
		return;
	}
	uint64_t n = (uint64_t)json_integer_value(id);
	if (n && n == w->state_id) {
		state_arrived(w, reply);
		json_decref(root);
		return;
	}
	for (struct web_req *r = w->calls.head; r; r = r->next) {
		if (r->call_id != n)
			continue;
		web_list_del(&w->calls, r);
		r->wait = WEB_WAIT_NONE;
		r->on_reply(r, reply);
		web_resume(r);
		json_decref(root);
		return;
	}
	log_debug("%s: reply %llu has no waiting request (forge, or its client left)", __func__,
		  (unsigned long long)n);
	json_decref(root);
}

/* Requests the master did not answer in time (it answers every one; this
 * only bounds a connection's wait should it not). */
static void calls_expire(struct web *w, int64_t now)
{
	struct web_list *lists[] = {&w->calls, &w->state_waiters};
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		struct web_req *r = lists[i]->head;
		while (r) {
			struct web_req *next = r->next;
			if (now >= r->deadline_ms) {
				web_req_unwait(r);
				web_reply_error(r, 504, "the daemon did not answer");
				web_resume(r);
			}
			r = next;
		}
	}
	/* A state fetch whose waiters all gave up stays outstanding: its
	 * late reply still refreshes the cache. */
}

static int64_t calls_timeout_ms(struct web *w, int64_t now)
{
	int64_t t = -1;
	struct web_list *lists[] = {&w->calls, &w->state_waiters};
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
		for (struct web_req *r = lists[i]->head; r; r = r->next) {
			int64_t d = r->deadline_ms - now;
			if (d < 0)
				d = 0;
			if (t < 0 || d < t)
				t = d;
		}
	return t;
}

static void read_master(struct web *w)
{
	ssize_t n = chan_reader_fill(w->in, w->chan_fd);
	if (n == -EAGAIN)
		return;
	struct chan_msg m;
	int r;
	while (!w->stop && (r = chan_next(w->in, &m)) > 0) {
		if (m.type == CHAN_M_WEB_CONFIG)
			handle_config(w, &m);
		else if (!w->configured)
			log_warn("%s: a %s message before the configuration; ignored", __func__, chan_type_name(m.type));
		else
			handle_reply(w, &m);
	}
	if (r < 0 && !w->stop) {
		log_error("%s: bad message from the master: %s", __func__, w->in->why);
		w->stop = true;
		w->exit_code = SV_EX_TRANSIENT;
		return;
	}
	if (n == 0 || (n < 0 && n != -EAGAIN)) {
		log_info("the master's channel closed; stopping");
		w->stop = true;
	}
}

/* Fault seam web_forge: one restart request without a token, once. */
static void forge(struct web *w)
{
	char name[256] = "";
	if (!fault_active("web_forge", name, sizeof(name)))
		return;
	name[strcspn(name, "\r\n")] = '\0';
	uint64_t id = ++w->next_id;
	if (send_request(w, id, "restart", json_pack("[s]", name), NULL) == 0)
		log_info("web_forge: sent");
}

/* ---- main ------------------------------------------------------------- */

/* fd open?  A closed listener (no such listener) is -1. */
static int fd_listener(int fd)
{
	if (fcntl(fd, F_GETFD) < 0)
		return -1;
	int acc = 0;
	socklen_t len = sizeof(acc);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc) {
		log_error("%s: fd %d is not a listening socket; not serving it", __func__, fd);
		return -1;
	}
	util_set_cloexec(fd);
	util_set_nonblock(fd);
	return fd;
}

static int epoll_add(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		log_error("%s: epoll_ctl(%d): %s", __func__, fd, strerror(e));
		return -e;
	}
	return 0;
}

enum { TAG_CHAN = 1, TAG_SIG = 2, TAG_HTTP = 3 };

int web_main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_SETMASK, &stop, NULL);
	log_open_child("web", LOG_INFO);

	static struct web w; /* large (sessions); one per process */
	struct chan_reader in;
	memset(&w, 0, sizeof(w));
	w.chan_fd = WEB_FD_CHAN;
	w.in = &in;
	w.epfd = -1;
	chan_reader_init(&in, CHAN_FROM_MASTER_TO_WEB);
	if (fcntl(WEB_FD_CHAN, F_GETFD) < 0) {
		log_error("%s: no channel on fd 3 (run by the master only)", __func__);
		return SV_EX_CONFIG;
	}
	util_set_cloexec(WEB_FD_CHAN);
	util_set_nonblock(WEB_FD_CHAN);
	w.listen_http = fd_listener(WEB_FD_HTTP);
	w.listen_metrics = fd_listener(WEB_FD_METRICS);
	int sfd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
	w.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || w.epfd < 0 || epoll_add(w.epfd, WEB_FD_CHAN, TAG_CHAN) < 0 ||
	    epoll_add(w.epfd, sfd, TAG_SIG) < 0) {
		log_error("%s: signalfd/epoll: %s", __func__, strerror(errno));
		return SV_EX_TRANSIENT;
	}
	bool forged = false;
	while (!w.stop) {
		int64_t now = util_mono_ms();
		int64_t t = -1, x;
		if (w.configured) {
			if ((x = web_http_timeout_ms(&w)) >= 0 && (t < 0 || x < t))
				t = x;
			if ((x = web_runs_timeout_ms(&w, now)) >= 0 && (t < 0 || x < t))
				t = x;
			if ((x = calls_timeout_ms(&w, now)) >= 0 && (t < 0 || x < t))
				t = x;
		}
		struct epoll_event ev[8];
		int n = epoll_wait(w.epfd, ev, 8, t > 60000 ? 60000 : (int)t);
		if (n < 0 && errno != EINTR) {
			log_error("%s: epoll_wait: %s", __func__, strerror(errno));
			w.exit_code = SV_EX_TRANSIENT;
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == TAG_CHAN) {
				read_master(&w);
			} else if (ev[i].data.u64 == TAG_SIG) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					w.stop = true;
				log_info("stopping on a signal");
			}
		}
		if (!w.configured || w.stop)
			continue;
		if (!forged) {
			forged = true;
			forge(&w);
		}
		now = util_mono_ms();
		web_runs_tick(&w, now);
		calls_expire(&w, now);
		web_http_run(&w);
	}
	web_http_stop(&w);
	web_runs_free(&w);
	web_sessions_clear(&w.sessions);
	json_decref(w.state);
	free(w.state_text);
	conf_free(&w.conf);
	chan_reader_free(&in);
	close(sfd);
	close(w.epfd);
	return w.exit_code;
}
