/* web_runs: GET /api/v1/runs/ID[?pool=P][&wait=S] in the web child
 * (web_int.h): the run's exact snapshot from the pools' SQLite files
 * (snapdb.h: read-only, one short read transaction per lookup), and the
 * long-poll waiters.  While any request waits, every WEB_RUNS_TICK_MS the
 * files' PRAGMA data_version is asked (snapdb_changed); when one moved,
 * every waiter looks its run up again.  At most conf.max_waits wait at
 * once (503 beyond).  The data_version connections are closed again when
 * the last waiter leaves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "log.h"
#include "util.h"
#include "web_int.h"

void web_runs_config(struct web *w)
{
	snapdbs_free(&w->dbs);
	json_t *root = w->conf.root;
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(root, "pools"), i, p) {
		const char *name = json_string_value(json_object_get(p, "name"));
		const char *path = json_string_value(json_object_get(p, "sqlite_path"));
		const char *red = json_string_value(json_object_get(p, "reducer"));
		json_t *bt = json_object_get(p, "busy_timeout_ms");
		int busy = json_is_integer(bt) && json_integer_value(bt) > 0 && json_integer_value(bt) < 5000
				   ? (int)json_integer_value(bt) : 5000;
		if (!name || !path || !*path)
			continue;
		enum reducer_kind k = red && !strcmp(red, "merge") ? REDUCER_MERGE : REDUCER_RESPONSE;
		if (snapdb_add(&w->dbs, name, path, busy, k) < 0)
			log_error("%s: out of memory", __func__);
	}
	const char *global = json_string_value(json_object_get(root, "sqlite_path"));
	if (w->dbs.n == 0 && global && *global && snapdb_add(&w->dbs, NULL, global, 5000, REDUCER_RESPONSE) < 0)
		log_error("%s: out of memory", __func__);
}

void web_runs_free(struct web *w)
{
	snapdbs_free(&w->dbs);
}

/* Look r->run up.  Answers (and returns true) when done: found and
 * complete (or found and not waiting), several pools, an error; at the
 * deadline (late) found (202) or not (404). */
static bool lookup(struct web *w, struct web_req *r, bool waiting, bool late)
{
	struct snapdbs one = w->dbs, *l = &w->dbs;
	if (r->pool) {
		size_t i;
		for (i = 0; i < w->dbs.n; i++)
			if (w->dbs.v[i].pool && !strcmp(w->dbs.v[i].pool, r->pool))
				break;
		if (i == w->dbs.n) {
			web_reply_error(r, 404, "no such persistence pool");
			return true;
		}
		one = (struct snapdbs){.v = &w->dbs.v[i], .n = 1};
		l = &one;
	}
	if (l->n == 0) {
		web_reply_error(r, 404, "no such run");
		return true;
	}
	struct snapdb *hit;
	bool unsure;
	char err[512] = "";
	int n = snapdb_find(l, r->run, &hit, &unsure, err, sizeof(err));
	if (n < 0 || (unsure && !waiting)) {
		log_warn("%s: %s", __func__, err);
		web_reply_error(r, 503, "the snapshot database is not readable now");
		return true;
	}
	if (n > 1) {
		json_t *pools = json_array();
		for (size_t i = 0; i < l->n; i++)
			if (l->v[i].body)
				json_array_append_new(pools, json_string(snapdb_name(&l->v[i])));
		web_reply_json(r, 409, json_pack("{s:s, s:o}", "error",
						 "the run is stored by several pools; choose one with ?pool=",
						 "pools", pools));
		return true;
	}
	if (n == 1 && (!waiting || hit->complete || late) && (!unsure || late)) {
		char *body = hit->body;
		hit->body = NULL;
		web_reply_take(r, hit->complete || !waiting ? 200 : 202, "application/json", body, strlen(body));
		web_reply_header(r, "X-Streamvisor-Pool", snapdb_name(hit));
		web_reply_header(r, "X-Streamvisor-Complete", hit->complete ? "true" : "false");
		return true;
	}
	if (!waiting || late) {
		web_reply_error(r, 404, "no such run");
		return true;
	}
	return false;
}

void web_runs_get(struct web *w, struct web_req *r, const char *run, const char *pool, long long wait_s)
{
	free(r->run);
	free(r->pool);
	r->run = strdup(run);
	r->pool = pool && *pool ? strdup(pool) : NULL;
	if (!r->run || (pool && *pool && !r->pool)) {
		web_reply_error(r, 500, "out of memory");
		return;
	}
	/* A run id that is not text can never be stored (the consumer
	 * dead-letters such an event: "invalid run"), and the store cannot
	 * even make an empty snapshot of it (json_string fails, which
	 * store_snapshot_get reports as ENOMEM: a 503 here).  No such run,
	 * at once: waiting would change nothing. */
	if (!event_valid_text(run, strlen(run))) {
		web_reply_error(r, 404, "no such run");
		return;
	}
	if (wait_s == 0) {
		lookup(w, r, false, false);
		return;
	}
	if (w->run_waiters.n >= w->conf.max_waits) {
		web_reply_error(r, 503, "too many waits");
		return;
	}
	/* The files' versions now, so that only a later commit wakes. */
	for (size_t i = 0; i < w->dbs.n; i++)
		if (!w->run_waiters.n)
			snapdb_changed(&w->dbs.v[i]);
	if (lookup(w, r, true, false))
		return;
	r->deadline_ms = util_mono_ms() + wait_s * 1000;
	r->wait = WEB_WAIT_RUN;
	web_list_add(&w->run_waiters, r);
}

void web_runs_tick(struct web *w, int64_t now_ms)
{
	if (!w->run_waiters.n) {
		/* Nobody waits: one connection per file again. */
		for (size_t i = 0; i < w->dbs.n; i++)
			if (w->dbs.v[i].dv)
				snapdb_unwatch(&w->dbs.v[i]);
		return;
	}
	bool changed = false;
	for (size_t i = 0; i < w->dbs.n; i++)
		if (snapdb_changed(&w->dbs.v[i]) > 0)
			changed = true;
	struct web_req *r = w->run_waiters.head;
	while (r) {
		struct web_req *next = r->next;
		bool late = now_ms >= r->deadline_ms;
		if ((changed || late) && lookup(w, r, true, late)) {
			web_req_unwait(r);
			web_resume(r);
		}
		r = next;
	}
}

int64_t web_runs_timeout_ms(struct web *w, int64_t now_ms)
{
	return w->run_waiters.n ? WEB_RUNS_TICK_MS : -1;
}
