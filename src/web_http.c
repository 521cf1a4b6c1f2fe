/* web_http: the web child's HTTP side on libmicrohttpd (web_int.h): the
 * daemons, the checks every request goes through (web-spec.md "Checks", in
 * that order), routing and responses. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <jansson.h>
#include <microhttpd.h>

#include "event.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "web_assets.h"
#include "web_int.h"
#include "web_parse.h"

struct web_server {
	struct web *w;
	struct MHD_Daemon *d;
	bool metrics_only;  /* fd 5: GET /metrics alone, any Host */
};

#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
	    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
#define CT_JSON "application/json"
#define COOKIE "sv_session"

enum route {
	R_INDEX, R_STATIC, R_METRICS, R_LOGIN, R_LOGOUT, R_SESSION, R_STATUS, R_POOLS, R_STREAMS,
	R_EVENTS, R_DEAD, R_DEAD_ID, R_RUN, R_CTL,
};
enum auth { A_NONE, A_VIEW, A_METRICS, A_TOKEN, A_SESSION };

/* ---- responses ---------------------------------------------------------- */

static void set_resp(struct web_req *r, unsigned status, const char *ctype, struct MHD_Response *resp)
{
	if (!resp)
		return; /* out of memory: the connection closes without an answer */
	MHD_add_response_header(resp, "Content-Security-Policy", CSP);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	bool asset = r->route == R_INDEX || r->route == R_STATIC;
	MHD_add_response_header(resp, "Cache-Control", asset && status == 200 ? "no-cache" : "no-store");
	if (ctype)
		MHD_add_response_header(resp, "Content-Type", ctype);
	if (r->resp)
		MHD_destroy_response(r->resp);
	r->resp = resp;
	r->status = status;
}

void web_reply(struct web_req *r, unsigned status, const char *ctype, const char *body, size_t len)
{
	set_resp(r, status, ctype,
		 MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY));
}

void web_reply_take(struct web_req *r, unsigned status, const char *ctype, char *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		free(body);
	set_resp(r, status, ctype, resp);
}

void web_reply_json(struct web_req *r, unsigned status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s) {
		web_reply(r, 500, CT_JSON, "{\"error\":\"out of memory\"}", 25);
		return;
	}
	web_reply_take(r, status, CT_JSON, s, strlen(s));
}

void web_reply_error(struct web_req *r, unsigned status, const char *msg)
{
	json_t *j = json_pack("{s:s}", "error", msg);
	/* msg not UTF-8 (a name cut short, a daemon's text): the status stands */
	web_reply_json(r, status, j ? j : json_pack("{s:s}", "error", "(unprintable message)"));
}

void web_reply_header(struct web_req *r, const char *name, const char *value)
{
	if (r->resp)
		MHD_add_response_header(r->resp, name, value);
}

void web_resume(struct web_req *r)
{
	if (r->suspended) {
		r->suspended = false;
		MHD_resume_connection(r->conn);
	}
}

/* ---- routes ------------------------------------------------------------ */

static const struct route_def {
	enum route id;
	const char *path;
	bool prefix;
	const char *method;
	enum auth auth;
} routes[] = {
	{R_INDEX, "/", false, "GET", A_NONE},
	{R_STATIC, "/static/", true, "GET", A_NONE},
	{R_METRICS, "/metrics", false, "GET", A_METRICS},
	{R_LOGIN, "/api/v1/login", false, "POST", A_NONE},
	{R_LOGOUT, "/api/v1/logout", false, "POST", A_SESSION},
	{R_SESSION, "/api/v1/session", false, "GET", A_NONE},
	{R_STATUS, "/api/v1/status", false, "GET", A_VIEW},
	{R_POOLS, "/api/v1/pools", false, "GET", A_VIEW},
	{R_STREAMS, "/api/v1/streams", false, "GET", A_VIEW},
	{R_EVENTS, "/api/v1/events", false, "GET", A_VIEW},
	{R_DEAD, "/api/v1/dead", false, "GET", A_TOKEN},
	{R_DEAD_ID, "/api/v1/dead/", true, "GET", A_TOKEN},
	{R_RUN, "/api/v1/runs/", true, "GET", A_TOKEN},
	{R_CTL, "/api/v1/ctl", false, "POST", A_TOKEN},
};

static const struct route_def *route_find(const char *url)
{
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		const struct route_def *d = &routes[i];
		size_t n = strlen(d->path);
		if (d->prefix ? strncmp(url, d->path, n) == 0 && url[n] : strcmp(url, d->path) == 0)
			return d;
	}
	return NULL;
}

static const char *header(struct web_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static const char *query(struct web_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* A query value passed on to the daemon as a JSON string (a stream, a
 * cursor): *out the value or NULL when absent; -EINVAL when it holds a NUL
 * (MHD's C string would cut it short) or is not UTF-8 (it cannot be a
 * JSON string, and a stream name is text). */
static int text_query(struct web_req *r, const char *name, const char **out)
{
	const char *v = NULL;
	size_t n = 0;
	*out = NULL;
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &n) != MHD_YES ||
	    !v)
		return 0;
	if (strlen(v) != n || !event_valid_text(v, n))
		return -EINVAL;
	*out = v;
	return 0;
}

/* The session of the request's cookie, or NULL. */
static struct web_session *session_of(struct web_req *r)
{
	const char *c = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, COOKIE);
	return c ? web_session_find(&r->w->sessions, c, util_mono_ms()) : NULL;
}

/* Step 4: a session, or a bearer token that checks out.  r->token gets
 * the token to forward.  0 authenticated, 401 or 429. */
static unsigned authenticate(struct web_req *r, bool session_only)
{
	struct web *w = r->w;
	struct web_session *s = session_of(r);
	const char *tok = NULL;
	if (s) {
		tok = s->token;
	} else if (!session_only && (tok = web_bearer(header(r, "Authorization")))) {
		int64_t now = util_mono_ms();
		if (web_ratelimit_blocked(&w->logins, now))
			return 429;
		if (!web_token_check(&w->conf.token, tok, strlen(tok))) {
			web_ratelimit_fail(&w->logins, now);
			return 401;
		}
	}
	if (!tok)
		return 401;
	free(r->token);
	r->token = strdup(tok);
	if (!r->token)
		return 401;
	r->authed = true;
	return 0;
}

/* The id after a prefix route's path, from the raw target (MHD's url is
 * decoded, so "a%2Fb" would be lost in "a/b"; a NUL is refused).  The
 * decoded id into out, 0 or an HTTP status (400). */
static unsigned path_id(struct web_req *r, const char *prefix, char *out, size_t cap)
{
	size_t n = strlen(prefix);
	const char *t = r->target ? r->target : "";
	size_t plen = web_path_len(t);
	if (plen <= n || strncmp(t, prefix, n) != 0)
		return 400;
	return web_path_decode(t + n, plen - n, out, cap) < 0 ? 400 : 0;
}

/* A master reply to the HTTP answer (web-spec.md, POST /api/v1/ctl). */
static void forward_reply(struct web_req *r, json_t *reply)
{
	if (json_is_true(json_object_get(reply, "ok"))) {
		web_reply_json(r, 200, json_incref(reply));
		return;
	}
	json_t *code = json_object_get(reply, "code");
	json_int_t c = json_is_integer(code) ? json_integer_value(code) : 0;
	unsigned status = c == 401 || c == 403 || c == 503 ? (unsigned)c : 409;
	const char *e = json_string_value(json_object_get(reply, "error"));
	web_reply_json(r, status, json_pack("{s:s, s:O}", "error", e ? e : "refused", "reply", reply));
}

static void call(struct web_req *r, const char *cmd, json_t *args, const char *token)
{
	int e = web_call(r->w, r, cmd, args, token, forward_reply);
	if (e == -EBUSY)
		web_reply_error(r, 503, "busy");
	else if (e == -EMSGSIZE)
		web_reply_error(r, 413, "request too large for the daemon");
	else if (e < 0)
		web_reply_error(r, 502, "the daemon is unreachable");
}

static void need_state(struct web_req *r, web_reply_fn fn)
{
	int e = web_state(r->w, r, fn);
	if (e == -EBUSY)
		web_reply_error(r, 503, "busy");
	else if (e < 0)
		web_reply_error(r, 502, "the daemon is unreachable");
}

static void on_status(struct web_req *r, json_t *state)
{
	const char *s = web_state_text(r->w);
	if (s)
		web_reply(r, 200, CT_JSON, s, strlen(s));
	else
		web_reply_error(r, 500, "out of memory");
}

static void on_pools(struct web_req *r, json_t *state)
{
	json_t *pools = json_object_get(state, "pools");
	json_t *cfg = json_object_get(json_object_get(state, "config"), "pools");
	web_reply_json(r, 200, json_pack("{s:O, s:O}", "pools", pools ? pools : json_null(), "config",
					 cfg ? cfg : json_null()));
}

static void on_streams(struct web_req *r, json_t *state)
{
	json_t *g = json_object_get(state, "groups");
	json_t *p = json_object_get(state, "patterns");
	web_reply_json(r, 200, json_pack("{s:O, s:O}", "groups", g ? g : json_null(), "patterns",
					 p ? p : json_null()));
}

static void on_metrics(struct web_req *r, json_t *state)
{
	char *text = metrics_render(state);
	if (!text) {
		web_reply_error(r, 500, "out of memory");
		return;
	}
	web_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

static void do_session(struct web_req *r)
{
	struct web *w = r->w;
	bool authed = session_of(r) != NULL;
	const char *tok = authed ? NULL : web_bearer(header(r, "Authorization"));
	int64_t now = util_mono_ms();
	/* A wrong Bearer here counts as a failed login: this route is open,
	 * and would otherwise answer token guesses without a limit. */
	if (tok && !web_ratelimit_blocked(&w->logins, now)) {
		authed = web_token_check(&w->conf.token, tok, strlen(tok));
		if (!authed && w->conf.token.set)
			web_ratelimit_fail(&w->logins, now);
	}
	web_reply_json(r, 200, json_pack("{s:b, s:b, s:O, s:s}", "authenticated", authed, "token_configured",
					 w->conf.token.set, "actions", w->conf.actions, "node", w->conf.node));
}

static json_t *body_json(struct web_req *r)
{
	return r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

static void do_login(struct web_req *r)
{
	struct web *w = r->w;
	if (!w->conf.token.set) {
		web_reply_error(r, 403, "no token configured (http.token_file)");
		return;
	}
	int64_t now = util_mono_ms();
	if (web_ratelimit_blocked(&w->logins, now)) {
		web_reply_error(r, 429, "too many failed logins; try again in a minute");
		return;
	}
	json_t *j = body_json(r);
	const char *tok = json_string_value(json_object_get(j, "token"));
	if (!json_is_object(j) || !tok) {
		json_decref(j);
		web_reply_error(r, 400, "the body must be {\"token\": \"...\"}");
		return;
	}
	size_t tlen = json_string_length(json_object_get(j, "token"));
	if (!web_token_check(&w->conf.token, tok, tlen) || strlen(tok) != tlen) {
		json_decref(j);
		web_ratelimit_fail(&w->logins, now);
		log_warn("a failed login from the web");
		web_reply_error(r, 401, "unauthorized");
		return;
	}
	char id[2 * WEB_SESSION_ID_LEN + 1];
	int e = web_session_new(&w->sessions, tok, now, id);
	json_decref(j);
	if (e < 0) {
		web_reply_error(r, 500, "cannot make a session");
		return;
	}
	char cookie[160];
	snprintf(cookie, sizeof(cookie), COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s", id,
		 w->conf.tls ? "; Secure" : "");
	web_reply(r, 204, NULL, "", 0);
	web_reply_header(r, "Set-Cookie", cookie);
	explicit_bzero(cookie, sizeof(cookie));
	log_info("a login from the web (%zu sessions)", web_sessions_count(&w->sessions));
}

static void do_logout(struct web_req *r)
{
	web_session_drop(session_of(r));
	web_reply(r, 204, NULL, "", 0);
	web_reply_header(r, "Set-Cookie", r->w->conf.tls ? COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
							 : COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
}

static void do_events(struct web_req *r)
{
	long long n = 100;
	const char *q = query(r, "limit");
	if (q && web_parse_uint(q, 1, 500, &n) < 0) {
		web_reply_error(r, 400, "limit must be 1..500");
		return;
	}
	char buf[24];
	snprintf(buf, sizeof(buf), "%lld", n);
	call(r, "events", json_pack("[s]", buf), NULL);
}

static void do_dead(struct web_req *r)
{
	const char *stream, *after, *limit = query(r, "limit");
	if (text_query(r, "stream", &stream) < 0 || text_query(r, "after", &after) < 0) {
		web_reply_error(r, 400, "stream and after must be text without NUL");
		return;
	}
	json_t *args = json_pack("[s]", "list");
	long long n;
	if (limit && web_parse_uint(limit, 1, 1000000, &n) < 0) {
		json_decref(args);
		web_reply_error(r, 400, "limit must be a positive integer");
		return;
	}
	if (stream && *stream) {
		json_array_append_new(args, json_string("--stream"));
		json_array_append_new(args, json_string(stream));
	}
	if (limit)
		json_array_append_new(args, json_string(limit));
	if (after && *after) {
		json_array_append_new(args, json_string("--after"));
		json_array_append_new(args, json_string(after));
	}
	call(r, "dead", args, r->token);
}

static void do_dead_id(struct web_req *r)
{
	char id[WEB_ID_MAX + 1];
	if (path_id(r, "/api/v1/dead/", id, sizeof(id))) {
		web_reply_error(r, 400, "bad dead letter id");
		return;
	}
	const char *stream, *from;
	if (text_query(r, "stream", &stream) < 0 || text_query(r, "from", &from) < 0) {
		web_reply_error(r, 400, "stream and from must be text without NUL");
		return;
	}
	json_t *args = json_pack("[s, s]", "show", id);
	if (!args) {
		web_reply_error(r, 400, "bad dead letter id");
		return;
	}
	if (stream && *stream) {
		json_array_append_new(args, json_string("--stream"));
		json_array_append_new(args, json_string(stream));
	}
	if (from && *from) {
		json_array_append_new(args, json_string("--from"));
		json_array_append_new(args, json_string(from));
	}
	call(r, "dead", args, r->token);
}

static void do_run(struct web_req *r)
{
	char id[WEB_ID_MAX + 1];
	if (path_id(r, "/api/v1/runs/", id, sizeof(id))) {
		web_reply_error(r, 400, "bad run id (1..1024 bytes, no NUL)");
		return;
	}
	long long wait = 0;
	const char *q = query(r, "wait");
	if (q && web_parse_uint(q, 0, WEB_WAIT_MAX_S, &wait) < 0) {
		web_reply_error(r, 400, "wait must be 0..60 seconds");
		return;
	}
	web_runs_get(r->w, r, id, query(r, "pool"), wait);
}

static void do_ctl(struct web_req *r)
{
	json_t *j = body_json(r);
	const char *cmd = json_string_value(json_object_get(j, "command"));
	json_t *args = json_object_get(j, "args");
	bool ok = json_is_object(j) && cmd && (!args || json_is_array(args));
	size_t i;
	json_t *v;
	json_array_foreach(args, i, v) ok &= json_is_string(v);
	if (!ok) {
		json_decref(j);
		web_reply_error(r, 400, "the body must be {\"command\": \"...\", \"args\": [\"...\"]}");
		return;
	}
	char name[64];
	web_action_name(cmd, args, name, sizeof(name));
	if (!web_action_allowed(r->w->conf.actions, name)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "not allowed from the web: %.64s", name);
		json_decref(j);
		web_reply_error(r, 403, msg);
		return;
	}
	log_info("web action: %s", name);
	call(r, cmd, args ? json_incref(args) : json_array(), r->token);
	json_decref(j);
}

static void do_asset(struct web_req *r, const char *url)
{
	const struct web_asset *a = web_asset_find(url);
	if (!a) {
		web_reply_error(r, 404, "not found");
		return;
	}
	set_resp(r, 200, a->content_type,
		 MHD_create_response_from_buffer(a->len, (void *)(uintptr_t)a->data, MHD_RESPMEM_PERSISTENT));
}

static void dispatch(struct web_req *r, const char *url)
{
	switch ((enum route)r->route) {
	case R_INDEX:
	case R_STATIC: do_asset(r, url); break;
	case R_METRICS: need_state(r, on_metrics); break;
	case R_LOGIN: do_login(r); break;
	case R_LOGOUT: do_logout(r); break;
	case R_SESSION: do_session(r); break;
	case R_STATUS: need_state(r, on_status); break;
	case R_POOLS: need_state(r, on_pools); break;
	case R_STREAMS: need_state(r, on_streams); break;
	case R_EVENTS: do_events(r); break;
	case R_DEAD: do_dead(r); break;
	case R_DEAD_ID: do_dead_id(r); break;
	case R_RUN: do_run(r); break;
	case R_CTL: do_ctl(r); break;
	}
}

/* Steps 1-4 of web-spec.md "Checks" on the headers: 0 pass, or the
 * answer is set. */
static int check(struct web_req *r, const char *url, const char *method, const struct route_def **out)
{
	struct web *w = r->w;
	if (!r->srv->metrics_only && !web_host_allowed(w->conf.hosts, w->conf.nhosts, header(r, "Host"))) {
		web_reply_error(r, 421, "unknown Host");
		return -1;
	}
	const struct route_def *d = route_find(url);
	if (!d || (r->srv->metrics_only && d->id != R_METRICS)) {
		web_reply_error(r, 404, "not found");
		return -1;
	}
	r->route = (int)d->id;
	if (strcmp(method, d->method) != 0) {
		web_reply_error(r, 405, "method not allowed");
		web_reply_header(r, "Allow", d->method);
		return -1;
	}
	if (!strcmp(method, "POST")) {
		const char *origin = header(r, "Origin");
		if ((origin && !web_origin_allowed(w->conf.hosts, w->conf.nhosts, origin)) ||
		    !web_fetch_site_ok(header(r, "Sec-Fetch-Site"))) {
			web_reply_error(r, 403, "cross-site request refused");
			return -1;
		}
		if ((d->id == R_LOGIN || d->id == R_CTL) && !web_content_type_json(header(r, "Content-Type"))) {
			web_reply_error(r, 415, "Content-Type must be application/json");
			return -1;
		}
		const char *cl = header(r, "Content-Length");
		long long n;
		if (cl && web_parse_uint(cl, 0, WEB_BODY_MAX, &n) == -ERANGE) {
			web_reply_error(r, 413, "request body too large");
			return -1;
		}
	}
	bool need = d->auth == A_TOKEN || d->auth == A_SESSION || (d->auth == A_VIEW && !w->conf.loopback) ||
		    (d->auth == A_METRICS && w->conf.metrics_token);
	if (need) {
		unsigned st = authenticate(r, d->auth == A_SESSION);
		if (st) {
			web_reply_error(r, st, st == 429 ? "too many failed logins" : "unauthorized");
			return -1;
		}
	}
	*out = d;
	return 0;
}

static enum MHD_Result queue(struct web_req *r)
{
	enum MHD_Result ok = MHD_queue_response(r->conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	return ok;
}

static struct web_req *req_new(struct web_server *srv, struct MHD_Connection *conn, const char *uri)
{
	struct web_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->w = srv->w;
	r->srv = srv;
	r->conn = conn;
	r->route = -1;
	r->target = uri ? strdup(uri) : NULL;
	return r;
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	return req_new(cls, conn, uri);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			       const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
	struct web_server *srv = cls;
	struct web_req *r = *req_cls;
	if (!r && !(r = *req_cls = req_new(srv, conn, NULL)))
		return MHD_NO;
	r->conn = conn;
	if (r->resp)
		return queue(r);
	if (!r->started) {
		r->started = true;
		const struct route_def *d;
		if (check(r, url, method, &d) < 0)
			return r->resp ? queue(r) : MHD_NO;
		/* Answer at the last call, after the body (if any) was read:
		 * an answer queued earlier costs the keep-alive connection. */
		return MHD_YES;
	} else if (*upload_size) {
		if (r->body_too_big || r->body_len + *upload_size > WEB_BODY_MAX) {
			r->body_too_big = true;
		} else {
			char *b = realloc(r->body, r->body_len + *upload_size + 1);
			if (!b)
				return MHD_NO;
			memcpy(b + r->body_len, upload, *upload_size);
			r->body = b;
			r->body_len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->body_too_big) {
		web_reply_error(r, 413, "request body too large");
		return queue(r);
	}
	if (r->wait != WEB_WAIT_NONE || r->suspended)
		return MHD_YES; /* woken without an answer: still waiting */
	if (r->dispatched)
		return MHD_NO; /* its answer could not be made (out of memory) */
	r->dispatched = true;
	dispatch(r, url);
	if (r->resp)
		return queue(r);
	if (r->wait == WEB_WAIT_NONE)
		return MHD_NO; /* no answer and nothing to wait for (out of memory) */
	r->suspended = true;
	MHD_suspend_connection(conn);
	return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	struct web_req *r = *req_cls;
	if (!r)
		return;
	web_req_unwait(r);
	if (r->resp)
		MHD_destroy_response(r->resp);
	if (r->token) {
		explicit_bzero(r->token, strlen(r->token));
		free(r->token);
	}
	if (r->body) {
		explicit_bzero(r->body, r->body_len); /* a login body holds the token */
		free(r->body);
	}
	free(r->target);
	free(r->run);
	free(r->pool);
	free(r);
	*req_cls = NULL;
}

/* libmicrohttpd's messages, into our log.  They name no header value.
 * Warnings while a daemon starts (a bad certificate); afterwards they are
 * about clients (a bad handshake, a timeout), which anyone can cause, so
 * debug. */
static bool mhd_starting;

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\r\n")] = '\0';
	log_write(mhd_starting ? LOG_WARN : LOG_DEBUG, "libmicrohttpd", NULL, "%s", buf);
}

/* ---- daemons ------------------------------------------------------------ */

static struct web_server *server_start(struct web *w, int fd, bool metrics_only)
{
	struct web_server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->w = w;
	s->metrics_only = metrics_only;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	bool tls = w->conf.tls && !metrics_only;
	if (tls)
		flags |= MHD_USE_TLS;
	struct MHD_OptionItem opts[] = {
		{MHD_OPTION_LISTEN_SOCKET, fd, NULL},
		{MHD_OPTION_CONNECTION_LIMIT, (intptr_t)w->conf.max_connections, NULL},
		{MHD_OPTION_CONNECTION_TIMEOUT, 10, NULL},
		{MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL},
		{MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, s},
		{MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_log, s},
		{MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, NULL},
		{tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)(uintptr_t)w->conf.tls_cert},
		{tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)(uintptr_t)w->conf.tls_key},
		/* GnuTLS's defaults, without the protocol versions browsers
		 * dropped: TLS 1.2 and 1.3 only. */
		{tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0,
		 (void *)(uintptr_t)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
		{MHD_OPTION_END, 0, NULL},
	};
	/* The logger first, so that no message goes to MHD's own stderr one. */
	mhd_starting = true;
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	mhd_starting = false;
	if (!s->d) {
		log_error("%s: libmicrohttpd would not start on fd %d%s", __func__, fd,
			  tls ? " (check http.tls_cert and http.tls_key)" : "");
		free(s);
		return NULL;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 3};
	if (!info || epoll_ctl(w->epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev) < 0) {
		log_error("%s: cannot watch libmicrohttpd's epoll fd", __func__);
		MHD_stop_daemon(s->d);
		free(s);
		return NULL;
	}
	return s;
}

int web_http_start(struct web *w)
{
	if (w->listen_http >= 0 && !(w->http = server_start(w, w->listen_http, false)))
		return -EINVAL;
	if (w->listen_metrics >= 0 && !(w->metrics = server_start(w, w->listen_metrics, true)))
		return -EINVAL;
	log_info("serving%s%s", w->http ? " the console and API" : "", w->metrics ? " /metrics" : "");
	return 0;
}

static void resume_all(struct web_list *l)
{
	while (l->head) {
		struct web_req *r = l->head;
		web_req_unwait(r);
		web_reply_error(r, 503, "stopping");
		web_resume(r);
	}
}

void web_http_stop(struct web *w)
{
	resume_all(&w->calls);
	resume_all(&w->state_waiters);
	resume_all(&w->run_waiters);
	web_http_run(w);
	struct web_server *v[] = {w->http, w->metrics};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		if (!v[i])
			continue;
		MHD_stop_daemon(v[i]->d);
		free(v[i]);
	}
	w->http = w->metrics = NULL;
}

void web_http_run(struct web *w)
{
	if (w->http)
		MHD_run(w->http->d);
	if (w->metrics)
		MHD_run(w->metrics->d);
}

int64_t web_http_timeout_ms(struct web *w)
{
	int64_t t = -1;
	struct web_server *v[] = {w->http, w->metrics};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		MHD_UNSIGNED_LONG_LONG ms;
		if (v[i] && MHD_get_timeout(v[i]->d, &ms) == MHD_YES) {
			int64_t x = ms > INT32_MAX ? INT32_MAX : (int64_t)ms;
			if (t < 0 || x < t)
				t = x;
		}
	}
	return t;
}
