/* snapdb: read-only snapshot lookups over the pools' SQLite files (snapdb.h). */
#include "snapdb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

int snapdb_add(struct snapdbs *l, const char *pool, const char *path, int busy_ms, enum reducer_kind reducer)
{
	struct snapdb *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	char *p = pool ? strdup(pool) : NULL;
	char *f = strdup(path);
	if ((pool && !p) || !f) {
		free(p);
		free(f);
		return -ENOMEM;
	}
	l->v[l->n++] = (struct snapdb){.pool = p, .path = f, .busy_ms = busy_ms, .reducer = reducer};
	return 0;
}

void snapdb_unwatch(struct snapdb *s)
{
	sqlite3_finalize(s->dv_st);
	sqlite3_close(s->dv);
	s->dv_st = NULL;
	s->dv = NULL;
}

void snapdb_close(struct snapdb *s)
{
	store_close(s->store);
	snapdb_unwatch(s);
	free(s->body);
	free(s->pool);
	free(s->path);
	memset(s, 0, sizeof(*s));
}

void snapdbs_free(struct snapdbs *l)
{
	for (size_t i = 0; i < l->n; i++)
		snapdb_close(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

const char *snapdb_name(const struct snapdb *s) { return s->pool ? s->pool : "sqlite.path"; }

int snapdb_select_pool(struct snapdbs *l, const char *pool)
{
	size_t keep = l->n;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].pool && !strcmp(l->v[i].pool, pool))
			keep = i;
	if (keep == l->n)
		return -ENOENT;
	struct snapdb *one = malloc(sizeof(*one));
	if (!one)
		return -ENOMEM;
	*one = l->v[keep];
	l->v[keep] = (struct snapdb){0};
	snapdbs_free(l);
	l->v = one;
	l->n = 1;
	return 0;
}

static int snapdb_open(struct snapdb *s, char *err, size_t errlen)
{
	struct store_opts o = {.readonly = true, .busy_timeout_ms = s->busy_ms, .reducer = s->reducer};
	int rc = store_open(&s->store, s->path, &o);
	if (rc < 0) {
		snprintf(err, errlen, "cannot open %s: %s", s->path, strerror(-rc));
		return rc == -EBUSY ? -EBUSY : -EIO;
	}
	return 0;
}

int snapdb_read(struct snapdb *s, const char *run, char *err, size_t errlen)
{
	free(s->body);
	s->body = NULL;
	s->complete = false;
	if (!s->store) {
		if (access(s->path, F_OK) < 0 && errno == ENOENT)
			return 0; /* no database yet: nothing persisted */
		int r = snapdb_open(s, err, errlen);
		if (r < 0)
			return r;
	}
	struct store_snapshot snap;
	int rc = store_snapshot_get(s->store, run, &snap);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", s->path, store_errmsg(s->store)[0] ? store_errmsg(s->store)
									       : strerror(-rc));
		return rc == -EBUSY || rc == -ENOMEM ? rc : -EIO;
	}
	s->body = snap.body;
	s->complete = snap.complete;
	snap.body = NULL;
	store_snapshot_clear(&snap);
	return 1;
}

int snapdb_find(struct snapdbs *l, const char *run, struct snapdb **hit, bool *unsure, char *err, size_t errlen)
{
	int found = 0;
	*hit = NULL;
	*unsure = false;
	for (size_t i = 0; i < l->n; i++) {
		int r = snapdb_read(&l->v[i], run, err, errlen);
		if (r == -EBUSY)
			*unsure = true;
		else if (r < 0)
			return r;
		else if (r == 1 && found++ == 0)
			*hit = &l->v[i];
	}
	return found;
}

void snapdb_reducer(const struct snapdb *s, char *buf, size_t len)
{
	char name[64] = "", version[32] = "";
	sqlite3_stmt *st = NULL;
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT key, value FROM meta WHERE key IN (?1, ?2)", -1, &st,
					NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, STORE_META_REDUCER, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, STORE_META_REDUCER_VERSION, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *k = (const char *)sqlite3_column_text(st, 0);
			const char *v = (const char *)sqlite3_column_text(st, 1);
			if (!k || !v)
				continue;
			if (!strcmp(k, STORE_META_REDUCER))
				snprintf(name, sizeof(name), "%s", v);
			else
				snprintf(version, sizeof(version), "%s", v);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (name[0])
		snprintf(buf, len, "reducer %s version %s", name, version[0] ? version : "?");
	else
		snprintf(buf, len, "reducer unknown");
}

int snapdb_changed(struct snapdb *s)
{
	bool fresh = false;
	if (!s->dv) {
		if (access(s->path, F_OK) < 0)
			return 0;
		if (sqlite3_open_v2(s->path, &s->dv, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
		    sqlite3_prepare_v2(s->dv, "PRAGMA data_version", -1, &s->dv_st, NULL) != SQLITE_OK) {
			snapdb_unwatch(s);
			return -EIO;
		}
		sqlite3_busy_timeout(s->dv, 50);
		fresh = true;
	}
	int64_t v = -1;
	if (sqlite3_step(s->dv_st) == SQLITE_ROW)
		v = sqlite3_column_int64(s->dv_st, 0);
	sqlite3_reset(s->dv_st); /* no read transaction stays open */
	if (v < 0) {
		snapdb_unwatch(s);
		return -EIO;
	}
	bool changed = fresh || v != s->dv_last;
	s->dv_last = v;
	return changed ? 1 : 0;
}
