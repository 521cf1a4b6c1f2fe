/* master_web: the master's link to the web child (issue 15): the console,
 * the JSON API and GET /metrics, served by libmicrohttpd in a process of
 * its own (src/web.c).
 *
 * The master binds the listening sockets (a privileged port works, an
 * address in use is an error at start), forks through the proc layer
 * with those sockets kept, drops the child to http.user and execs
 * /proc/self/exe --web-child with an empty environment: the child starts
 * from a fresh image, holding none of the master's memory (no Redis
 * password) and no fd but its channel (3), its listeners (4, 5) and
 * stdin/stdout/stderr.
 *
 * The child never learns the token: it gets a random salt and
 * SHA-256(salt || token) to check what a user presents, and forwards the
 * presented token with every action.  The master checks every request
 * itself: the command is one the web may send, the token matches
 * (constant-time, on the digests) where one is needed, and an action is
 * in http.actions.  So a compromised child can look, but not act, until
 * someone logs in with the token.  Requests go through the very handler of
 * the control socket (master_cmd_on_request) with a relayed client
 * (control_client_relay): one reply per request, sent back as
 * CHAN_M_WEB_REPLY. */
#include "master_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "log.h"
#include "reducer.h"
#include "util.h"
#include "web_auth.h"

#define WEB_OUTQ_MAX (128u << 20)     /* replies (dead letters) may be large */
#define WEB_REQUESTS_MAX 64           /* outstanding requests of the child */
#define WEB_RESPAWN_MIN_MS 1000
#define WEB_RESPAWN_MAX_MS 30000
#define WEB_STABLE_MS 10000           /* up this long: the next crash restarts at once */
#define WEB_STOP_KILL_MS 5000
#define WEB_SALT_LEN 16
#define WEB_DIGEST_LEN 32
#define WEB_MAX_CONNECTIONS 256
#define WEB_MAX_WAITS 64
/* A state built this recently is sent again as it is: the child asks at
 * most once per status interval, so only a child gone wrong asks more, and
 * each build walks every worker, stream and pool on the master's loop. */
#define WEB_STATE_REUSE_MS 50

struct web_req {
	struct web_req *next;
	struct master_web *w;
	json_int_t id;
	struct control_client *client;
};

struct master_web {
	struct master *m;
	int http_fd, metrics_fd;
	struct child *child;
	pid_t pid;
	int64_t started_ms;
	int64_t respawn_at;
	int64_t respawn_delay;
	int64_t kill_at;            /* SIGKILL if still there (stop or shutdown) */
	bool stopping;              /* we sent SIGTERM: its exit is expected */
	uint64_t restarts;
	uint8_t salt[WEB_SALT_LEN];
	uint8_t digest[WEB_DIGEST_LEN];
	bool have_token;
	struct web_req *reqs;
	size_t nreqs;
	int64_t refusal_log_at;     /* refusals are logged at most once a second */
	uint64_t refusals_unlogged;
	json_t *state;              /* the last `state` reply, reused briefly */
	int64_t state_at;
};

static bool web_wanted(const struct sv_config *cfg)
{
	return cfg->http.listen[0] || cfg->metrics.listen[0];
}

/* ---------- listeners ---------- */

static int listen_tcp(const char *what, const char *addr)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	size_t hl = colon ? (size_t)(colon - addr) : 0;
	if (!colon || hl >= sizeof(host)) {
		log_error("%s: %s %s: expected HOST:PORT", __func__, what, addr);
		return -EINVAL;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	int r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
	if (r != 0) {
		log_error("%s: %s %s: %s", __func__, what, addr, gai_strerror(r));
		return -EINVAL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		log_error("%s: %s %s: %s", __func__, what, addr, strerror(e));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -e;
	}
	freeaddrinfo(ai);
	return fd;
}

static void close_listeners(struct master_web *w)
{
	if (w->http_fd >= 0)
		close(w->http_fd);
	if (w->metrics_fd >= 0)
		close(w->metrics_fd);
	w->http_fd = w->metrics_fd = -1;
}

static int open_listeners(struct master_web *w, const struct sv_config *cfg)
{
	if (cfg->http.listen[0]) {
		w->http_fd = listen_tcp("http.listen", cfg->http.listen);
		if (w->http_fd < 0)
			return w->http_fd;
		log_info("web console and API on %s://%s/", cfg->http.tls_cert[0] ? "https" : "http",
			 cfg->http.listen);
	}
	if (cfg->metrics.listen[0]) {
		w->metrics_fd = listen_tcp("metrics.listen", cfg->metrics.listen);
		if (w->metrics_fd < 0) {
			int r = w->metrics_fd;
			close_listeners(w);
			return r;
		}
		log_info("serving metrics on http://%s/metrics", cfg->metrics.listen);
	}
	return 0;
}

/* At reload: keep the socket when the address is the same, else bind
 * the new one (or none). */
static int reopen_listener(int *fd, const char *what, const char *old_addr, const char *addr)
{
	if (*fd >= 0 && strcmp(old_addr, addr) == 0)
		return 0;
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (!addr[0])
		return 0;
	*fd = listen_tcp(what, addr);
	if (*fd < 0)
		return *fd;
	log_info("%s: now on %s", what, addr);
	return 0;
}

/* ---------- the token ---------- */

/* Read http.token_file (its first line) and keep only the digest.  A
 * token that cannot be read leaves the console without login and
 * actions, logged: the daemon keeps running (the file was checked at
 * start and reload, so this is a race with an operator). */
static void load_token(struct master_web *w, const struct sv_config *cfg)
{
	bool had = w->have_token;
	w->have_token = false;
	if (!cfg->http.token_file[0])
		return;
	char buf[CONFIG_TOKEN_MAX + 2];
	int fd = open(cfg->http.token_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (n < 0) {
		log_error("%s: http.token_file %s: %s: no login or actions on the console", __func__,
			  cfg->http.token_file, strerror(e));
		return;
	}
	buf[n] = '\0';
	size_t len = strcspn(buf, "\r\n");
	uint8_t d[WEB_DIGEST_LEN];
	/* The same token again (a reload): the same salt and digest, so the
	 * child keeps its sessions (it drops them when the digest changes). */
	if (had && len >= CONFIG_TOKEN_MIN && len <= CONFIG_TOKEN_MAX && web_token_digest(w->salt, WEB_SALT_LEN, buf, len, d) == 0 &&
	    memcmp(d, w->digest, sizeof(d)) == 0) {
		w->have_token = true;
		explicit_bzero(buf, sizeof(buf));
		return;
	}
	if (len >= CONFIG_TOKEN_MIN && len <= CONFIG_TOKEN_MAX && getrandom(w->salt, sizeof(w->salt), 0) ==
	    (ssize_t)sizeof(w->salt) && web_token_digest(w->salt, WEB_SALT_LEN, buf, len, w->digest) == 0)
		w->have_token = true;
	else
		log_error("%s: http.token_file %s: no usable token (%d to %d bytes on the first line): no "
			  "login or actions on the console", __func__, cfg->http.token_file, CONFIG_TOKEN_MIN,
			  CONFIG_TOKEN_MAX);
	explicit_bzero(buf, sizeof(buf));
}

static bool token_ok(const struct master_web *w, const char *token)
{
	if (!w->have_token || !token)
		return false;
	size_t len = strlen(token);
	if (len < CONFIG_TOKEN_MIN || len > CONFIG_TOKEN_MAX)
		return false;
	uint8_t d[WEB_DIGEST_LEN];
	return web_token_digest(w->salt, WEB_SALT_LEN, token, len, d) == 0 && web_ct_equal(d, w->digest, sizeof(d));
}

/* ---------- the configuration message ---------- */

static char *read_pem(const char *path)
{
	if (!path[0])
		return NULL;
	FILE *f = fopen(path, "re");
	if (!f) {
		log_error("%s: %s: %s", __func__, path, strerror(errno));
		return NULL;
	}
	char *buf = util_xcalloc(1, 256 * 1024);
	size_t n = fread(buf, 1, 256 * 1024 - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void add_host(json_t *hosts, const char *h)
{
	size_t i;
	json_t *v;
	json_array_foreach(hosts, i, v) if (strcasecmp(json_string_value(v), h) == 0) return;
	json_array_append_new(hosts, json_string(h));
}

/* The Host header values accepted: the listen address, the loopback
 * names when listening on loopback, and http.hosts (with and without the
 * port).  Anything else is a DNS rebinding attempt or a typo. */
static json_t *allowed_hosts(const struct sv_config *cfg)
{
	json_t *hosts = json_array();
	const char *l = cfg->http.listen;
	if (!l[0])
		return hosts;
	const char *port = strrchr(l, ':') + 1;
	bool tls = cfg->http.tls_cert[0];
	char buf[600];
	add_host(hosts, l);
	if (strcmp(port, tls ? "443" : "80") == 0) {
		snprintf(buf, sizeof(buf), "%.*s", (int)(port - 1 - l), l);
		add_host(hosts, buf);
	}
	if (cfg->http.loopback) {
		static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
		for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
			snprintf(buf, sizeof(buf), "%s:%s", names[i], port);
			add_host(hosts, buf);
		}
	}
	for (size_t i = 0; i < cfg->http.hosts.n; i++) {
		const char *h = cfg->http.hosts.v[i];
		add_host(hosts, h);
		const char *c = strrchr(h, ':');
		if (!c || (h[0] == '[' && c < strrchr(h, ']'))) {
			snprintf(buf, sizeof(buf), "%s:%s", h, port);
			add_host(hosts, buf);
		}
	}
	return hosts;
}

static json_t *web_pools(const struct sv_config *cfg)
{
	json_t *pools = json_array();
	int64_t busy = cfg->sqlite.busy_timeout_ms > 0 && cfg->sqlite.busy_timeout_ms < 5000
			       ? cfg->sqlite.busy_timeout_ms
			       : 5000;
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_config *p = &cfg->pools[i];
		if (p->kind == POOL_PERSISTENCE && p->sqlite_path)
			json_array_append_new(pools, json_pack("{s:s, s:s, s:s, s:I}", "name", p->name, "sqlite_path",
							       p->sqlite_path, "reducer", reducer_kind_name(p->reducer),
							       "busy_timeout_ms", (json_int_t)busy));
	}
	return pools;
}

static json_t *web_config(const struct master_web *w, const struct sv_config *cfg)
{
	char salt[2 * WEB_SALT_LEN + 1], digest[2 * WEB_DIGEST_LEN + 1];
	web_hex_encode(w->salt, WEB_SALT_LEN, salt);
	web_hex_encode(w->digest, WEB_DIGEST_LEN, digest);
	json_t *actions = json_array();
	for (size_t i = 0; i < cfg->http.actions.n; i++)
		json_array_append_new(actions, json_string(cfg->http.actions.v[i]));
	json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:o, s:s, s:o?, s:o, s:b, s:I, s:I, s:I, s:o, s:s}",
			      "node", cfg->node, "namespace", cfg->namespace, "log_level",
			      log_level_name(cfg->log.level), "listen", cfg->http.listen, "loopback",
			      cfg->http.loopback, "tls", cfg->http.tls_cert[0] != '\0', "hosts", allowed_hosts(cfg),
			      "token_salt", salt, "token_sha256", w->have_token ? json_string(digest) : json_null(),
			      "actions", actions, "metrics_token", cfg->http.metrics_token, "status_interval_ms",
			      (json_int_t)cfg->heartbeat.interval_ms, "max_connections",
			      (json_int_t)WEB_MAX_CONNECTIONS, "max_waits", (json_int_t)WEB_MAX_WAITS, "pools",
			      web_pools(cfg), "sqlite_path", cfg->sqlite.path);
	char *cert = read_pem(cfg->http.tls_cert), *key = read_pem(cfg->http.tls_key);
	json_object_set_new(c, "tls_cert", cert ? json_string(cert) : json_null());
	json_object_set_new(c, "tls_key", key ? json_string(key) : json_null());
	free(cert);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return c;
}

static int send_json(struct master_web *w, uint16_t type, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s || !w->child) {
		free(s);
		return s ? -EPIPE : -ENOMEM;
	}
	int r = child_send(w->child, type, s, strlen(s));
	if (r == -EINVAL && type == CHAN_M_WEB_REPLY)
		log_warn("%s: a reply of %zu bytes does not fit the channel", __func__, strlen(s));
	explicit_bzero(s, strlen(s)); /* the config holds the TLS key */
	free(s);
	return r;
}

static void send_config(struct master_web *w)
{
	send_json(w, CHAN_M_WEB_CONFIG, web_config(w, w->m->cfg));
}

/* ---------- requests ---------- */

static void req_free(struct master_web *w, struct web_req *q)
{
	for (struct web_req **pp = &w->reqs; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			w->nreqs--;
			break;
		}
	free(q);
}

static void reply_to(struct master_web *w, json_int_t id, json_t *reply)
{
	/* Exactly one reply per id: one too large for the channel becomes an
	 * error, or the child's client would wait for it until its timeout. */
	if (send_json(w, CHAN_M_WEB_REPLY, json_pack("{s:I, s:o}", "id", id, "reply", reply)) == -EINVAL)
		send_json(w, CHAN_M_WEB_REPLY,
			  json_pack("{s:I, s:{s:b, s:s}}", "id", id, "reply", "ok", 0, "error",
				    "the reply is too large for the web; use streamvisorctl"));
}

static void deliver(void *ctx, json_t *reply)
{
	struct web_req *q = ctx;
	struct master_web *w = q->w;
	struct control_client *c = q->client;
	json_int_t id = q->id;
	req_free(w, q);
	reply_to(w, id, reply);
	control_client_unref(c);
}

static void refuse(struct master_web *w, json_int_t id, int code, const char *cmd, const char *why)
{
	int64_t now = util_mono_ms();
	if (now >= w->refusal_log_at) {
		log_warn("web: refused %s from the web child: %s%s", cmd, why,
			 w->refusals_unlogged ? " (and earlier refusals not logged)" : "");
		w->refusal_log_at = now + 1000;
		w->refusals_unlogged = 0;
	} else {
		w->refusals_unlogged++;
	}
	char msg[200];
	snprintf(msg, sizeof(msg), code == 403 ? "not allowed from the web: %s" : "%s", code == 403 ? cmd : why);
	reply_to(w, id, json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg, "code", code));
}

enum web_need { WEB_NEED_NONE, WEB_NEED_TOKEN, WEB_NEED_ACTION };

/* What a command needs: its name in http.actions ("dead retry"), or -1
 * when the web child may never send it (a protocol violation). */
static int classify(const char *cmd, const char *sub, char *name, size_t len)
{
	static const char *const open_views[] = {"state", "pending", "events", NULL};
	static const char *const actions[] = {"start",  "stop",  "restart", "pause",  "resume",
					      "scale",  "reload", "drain",  "forget", "shutdown", NULL};
	snprintf(name, len, "%s", cmd);
	for (size_t i = 0; open_views[i]; i++)
		if (!strcmp(cmd, open_views[i]))
			return WEB_NEED_NONE;
	for (size_t i = 0; actions[i]; i++)
		if (!strcmp(cmd, actions[i]))
			return WEB_NEED_ACTION;
	if (strcmp(cmd, "dead") == 0) {
		if (!sub || !strcmp(sub, "list") || !strcmp(sub, "show"))
			return WEB_NEED_TOKEN;
		if (!strcmp(sub, "retry") || !strcmp(sub, "purge")) {
			snprintf(name, len, "dead %s", sub);
			return WEB_NEED_ACTION;
		}
	}
	return -1;
}

static bool args_valid(const json_t *args)
{
	if (!args)
		return true;
	if (!json_is_array(args) || json_array_size(args) > 1024)
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(args, i, v) if (!json_is_string(v)) return false;
	return true;
}

static int on_request(struct master_web *w, json_t *j, char *why, size_t whylen)
{
	json_t *jid = json_object_get(j, "id"), *args = json_object_get(j, "args");
	const char *cmd = json_string_value(json_object_get(j, "cmd"));
	json_t *jtok = json_object_get(j, "token");
	if (!json_is_integer(jid) || json_integer_value(jid) <= 0 || json_integer_value(jid) > (1LL << 53) || !cmd ||
	    !args_valid(args) || (jtok && !json_is_string(jtok))) {
		snprintf(why, whylen, "web request without a positive id, a cmd, string args or a string token");
		return -EPROTO;
	}
	json_int_t id = json_integer_value(jid);
	for (struct web_req *q = w->reqs; q; q = q->next)
		if (q->id == id) {
			snprintf(why, whylen, "web request id %lld already in flight", (long long)id);
			return -EPROTO;
		}
	char name[64];
	int need = classify(cmd, json_string_value(json_array_get(args, 0)), name, sizeof(name));
	if (need < 0) {
		snprintf(why, whylen, "web request for a command it may not send: %.60s", cmd);
		return -EPROTO;
	}
	const struct sv_config *cfg = w->m->cfg;
	if (need != WEB_NEED_NONE && !token_ok(w, json_string_value(jtok))) {
		refuse(w, id, 401, name, "unauthorized");
		return 0;
	}
	if (need == WEB_NEED_ACTION && !config_strlist_has(&cfg->http.actions, name)) {
		refuse(w, id, 403, name, "not in http.actions");
		return 0;
	}
	if (w->nreqs >= WEB_REQUESTS_MAX) {
		reply_to(w, id, json_pack("{s:b, s:s, s:i}", "ok", 0, "error", "busy", "code", 503));
		return 0;
	}
	if (strcmp(cmd, "state") == 0) {
		int64_t now = util_mono_ms();
		if (!w->state || now - w->state_at >= WEB_STATE_REUSE_MS) {
			json_decref(w->state);
			w->state = master_cmd_state(w->m);
			w->state_at = now;
		}
		reply_to(w, id, json_incref(w->state));
		return 0;
	}
	if (need == WEB_NEED_ACTION)
		log_info("web: %s (token checked)", name);
	struct web_req *q = util_xcalloc(1, sizeof(*q));
	q->w = w;
	q->id = id;
	q->client = control_client_relay(deliver, q);
	q->next = w->reqs;
	w->reqs = q;
	w->nreqs++;
	/* The request as the control socket would carry it: no token. */
	json_t *req = json_pack("{s:s, s:O?}", "cmd", cmd, "args", args);
	master_cmd_on_request(w->m, q->client, req);
	json_decref(req);
	return 0;
}

static void cancel_requests(struct master_web *w)
{
	while (w->reqs) {
		struct web_req *q = w->reqs;
		struct control_client *c = q->client;
		req_free(w, q);
		control_client_relay_cancel(c);
	}
}

static int web_message(void *owner, const struct chan_msg *msg, char *why, size_t whylen)
{
	struct master_web *w = owner;
	json_error_t err;
	json_t *j = json_loadb((const char *)msg->data, msg->len, 0, &err);
	int r;
	if (msg->type != CHAN_W_WEB_REQUEST) {
		snprintf(why, whylen, "%s is not for the master", chan_type_name(msg->type));
		r = -EPROTO;
	} else if (!json_is_object(j)) {
		snprintf(why, whylen, "web request: not a JSON object: %s", err.text);
		r = -EPROTO;
	} else {
		r = on_request(w, j, why, whylen);
	}
	/* The request may carry a token: leave no copy in freed memory. */
	const char *tok = json_string_value(json_object_get(j, "token"));
	if (tok)
		explicit_bzero((char *)tok, strlen(tok));
	json_decref(j);
	return r;
}

/* ---------- the child ---------- */

/* The user the web child runs as when the daemon is root: http.user, or
 * nobody.  NULL when not root (it keeps the daemon's uid). */
static const char *web_user_name(const struct sv_config *cfg)
{
	if (geteuid() != 0)
		return NULL;
	return cfg->http.user[0] ? cfg->http.user : "nobody";
}

/* Keep the web child's user off the control socket (control_deny_uid):
 * in control.group to read the SQLite files, it must still act only
 * through its channel, where the master checks the token. */
static void deny_control(struct master *m)
{
	const char *user = web_user_name(m->cfg);
	struct passwd *pw = user && web_wanted(m->cfg) ? getpwnam(user) : NULL;
	control_deny_uid(m->ctl, pw ? pw->pw_uid : (uid_t)-1);
}

static int web_user_drop(void *ctx)
{
	const struct sv_config *cfg = ((struct master_web *)ctx)->m->cfg;
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	const char *user = web_user_name(cfg);
	if (!user)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (!pw || pw->pw_uid == 0) {
		log_error("web child: user %s: %s", user, pw ? "is root" : "no such user");
		return -EPERM;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		int e = errno;
		log_error("web child: cannot switch to user %s: %s", user, strerror(e));
		return -e;
	}
	if (setuid(0) == 0 || geteuid() == 0 || getegid() != pw->pw_gid) {
		log_error("web child: privilege drop to %s did not hold", user);
		return -EPERM;
	}
	return 0;
}

/* After fork: the channel on fd 3, the listeners on 4 and 5, then a fresh
 * image with nothing of the master's environment but what the test and
 * sanitizer builds need. */
static int web_body(void *arg, int chan)
{
	struct master_web *w = arg;
	int fds[3] = {chan, w->http_fd, w->metrics_fd};
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0 && dup2(fds[i], 3 + i) < 0)
			return SV_EX_TRANSIENT;
	static const char *const keep_env[] = {"SV_FAULT_DIR", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL};
	char *envp[8];
	size_t n = 0;
	for (size_t i = 0; keep_env[i]; i++) {
		const char *v = getenv(keep_env[i]);
		if (v) {
			envp[n++] = util_xasprintf("%s=%s", keep_env[i], v);
		}
	}
	envp[n] = NULL;
	char *argv[] = {"streamvisord", "--web-child", NULL};
	execve("/proc/self/exe", argv, envp);
	fprintf(stderr, "web child: exec /proc/self/exe: %s\n", strerror(errno));
	return SV_EX_TRANSIENT;
}

static void web_exited(void *owner, int code, bool violated)
{
	struct master_web *w = owner;
	struct master *m = w->m;
	w->child = NULL;
	w->pid = 0;
	w->kill_at = 0;
	cancel_requests(w);
	json_decref(w->state); /* it names the old child's pid */
	w->state = NULL;
	int64_t now = util_mono_ms();
	if (m->shutting_down) {
		w->stopping = false;
		return;
	}
	if (w->stopping && !violated) {
		w->respawn_at = now;
	} else {
		log_warn("web child exited (%s %d)%s; restarting it in %lld ms", code < 0 ? "signal" : "status",
			 code < 0 ? -code : code, violated ? " after a protocol violation" : "",
			 (long long)w->respawn_delay);
		w->respawn_at = now + w->respawn_delay;
		if (now - w->started_ms < WEB_STABLE_MS)
			w->respawn_delay = w->respawn_delay * 2 > WEB_RESPAWN_MAX_MS ? WEB_RESPAWN_MAX_MS
										      : w->respawn_delay * 2;
		else
			w->respawn_delay = WEB_RESPAWN_MIN_MS;
	}
	w->stopping = false;
}

static const struct child_ops web_ops = {
	.message = web_message,
	.exited = web_exited,
};

static void web_spawn(struct master_web *w)
{
	int keep[2] = {w->http_fd, w->metrics_fd};
	struct child_spec spec = {
		.name = "web child",
		.log_proc = "web",
		.peer = CHAN_FROM_WEB,
		.outq_max = WEB_OUTQ_MAX,
		.body = web_body,
		.arg = w,
		.ops = &web_ops,
		.owner = w,
		.keep_fds = keep,
		.nkeep = 2,
		.setup = web_user_drop,
		.setup_ctx = w,
	};
	w->respawn_at = 0;
	struct child *c;
	pid_t pid = child_spawn(w->m->children, &spec, &c);
	if (pid < 0) {
		w->respawn_at = util_mono_ms() + w->respawn_delay;
		return;
	}
	if (w->started_ms)
		w->restarts++;
	w->child = c;
	w->pid = pid;
	w->started_ms = util_mono_ms();
	send_config(w);
}

static void web_stop(struct master_web *w)
{
	if (w->pid <= 0 || w->stopping)
		return;
	w->stopping = true;
	w->kill_at = util_mono_ms() + WEB_STOP_KILL_MS;
	child_signal(w->child, SIGTERM);
}

/* ---------- the master's side ---------- */

int master_web_open(struct master *m)
{
	struct master_web *w = util_xcalloc(1, sizeof(*w));
	w->m = m;
	w->http_fd = w->metrics_fd = -1;
	w->respawn_delay = WEB_RESPAWN_MIN_MS;
	m->web = w;
	if (!web_wanted(m->cfg))
		return 0;
	int r = open_listeners(w, m->cfg);
	if (r < 0)
		return r;
	deny_control(m);
	if (geteuid() == 0 && !m->cfg->http.user[0])
		log_warn("http.user is empty: the web child runs as nobody; give it a user of its own in "
			 "control.group that can read the SQLite files");
	load_token(w, m->cfg);
	w->respawn_at = util_mono_ms();
	return 0;
}

void master_web_timers(struct master *m, int64_t now)
{
	struct master_web *w = m->web;
	if (!w)
		return;
	if (w->kill_at && now >= w->kill_at && w->pid > 0) {
		log_warn("web child did not stop in time: SIGKILL");
		child_signal(w->child, SIGKILL);
		w->kill_at = 0;
	}
	if (w->respawn_at && now >= w->respawn_at && w->pid <= 0 && !m->shutting_down &&
	    (w->http_fd >= 0 || w->metrics_fd >= 0))
		web_spawn(w);
}

int64_t master_web_deadline(const struct master *m)
{
	const struct master_web *w = m->web;
	if (!w)
		return 0;
	return master_min_deadline(w->pid <= 0 ? w->respawn_at : 0, w->kill_at);
}

void master_web_reload(struct master *m, const struct sv_config *old)
{
	struct master_web *w = m->web;
	const struct sv_config *cfg = m->cfg;
	const char *key = config_web_restart_key(old, cfg);
	load_token(w, cfg);
	deny_control(m);
	if (!key && !cfg->http.tls_cert[0]) {
		if (w->child)
			send_config(w);
		return;
	}
	/* A listener, the user or TLS (a renewed certificate under the same
	 * name) changed: a new child, on new sockets where the address
	 * changed (the old child still listens on the old ones). */
	if (key)
		log_info("reload: %s changed: restarting the web child", key);
	if (reopen_listener(&w->http_fd, "http.listen", old->http.listen, cfg->http.listen) < 0 ||
	    reopen_listener(&w->metrics_fd, "metrics.listen", old->metrics.listen, cfg->metrics.listen) < 0)
		log_error("reload: the web child stays down until a reload fixes its listener");
	web_stop(w);
	if (w->pid <= 0)
		w->respawn_at = util_mono_ms();
}

bool master_web_stopped(struct master *m, int64_t now)
{
	struct master_web *w = m->web;
	if (!w || w->pid <= 0)
		return true;
	web_stop(w);
	master_web_timers(m, now);
	return false;
}

void master_web_free(struct master *m)
{
	struct master_web *w = m->web;
	if (!w)
		return;
	cancel_requests(w);
	close_listeners(w);
	json_decref(w->state);
	explicit_bzero(w->digest, sizeof(w->digest));
	free(w);
	m->web = NULL;
}

json_t *master_web_status(const struct master *m)
{
	const struct master_web *w = m->web;
	const struct sv_config *cfg = m->cfg;
	if (!w || !web_wanted(cfg))
		return json_null();
	return json_pack("{s:s, s:s, s:I, s:I, s:b}", "listen", cfg->http.listen, "metrics_listen",
			 cfg->metrics.listen, "pid", (json_int_t)w->pid, "restarts", (json_int_t)w->restarts,
			 "token", w->have_token);
}
