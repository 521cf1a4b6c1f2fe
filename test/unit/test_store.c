/* Unit tests for src/store.c against real SQLite files in a temporary
 * directory: files and modes, schema version, dedupe (seq, call_id,
 * re-driven dead letters), golden runs and generated runs applied shuffled
 * across many transactions, two connections with a stale cache, reducer
 * errors, commit failure through the fault seam, busy, pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "golden.h"
#include "reducer.h"
#include "store.h"
#include "util.h"

#include <sqlite3.h>

static char tmpdir[] = "/tmp/sv_test_store.XXXXXX";
static int dbno;

static void db_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/db%d/sub/snap.db", tmpdir, ++dbno);
}

static struct store *open_store(const char *path, enum reducer_kind kind)
{
	struct store_opts o = {.synchronous = SV_SYNC_NORMAL, .busy_timeout_ms = 2000,
			       .reducer = kind};
	struct store *s;
	assert_int_equal(store_open(&s, path, &o), 0);
	return s;
}

/* Decode one entry written as a JSON object (see golden.h). */
static void mkev(struct sv_event *ev, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	json_t *j = json_loads(line, 0, NULL);
	const char *reason = NULL;
	assert_non_null(j);
	if (golden_entry_decode(j, ev, &reason) < 0)
		fail_msg("cannot decode %s: %s", line, reason ? reason : "?");
	json_decref(j);
}

static int apply1(struct store *s, const struct sv_event *ev)
{
	char err[256];
	return store_apply(s, ev, err, sizeof(err));
}

/* The committed snapshot of run, parsed (NULL when none). */
static json_t *snapshot(struct store *s, const char *run, struct store_snapshot *meta)
{
	struct store_snapshot snap;
	if (store_snapshot_get(s, run, &snap) < 0)
		return NULL;
	json_t *j = json_loads(snap.body, JSON_ALLOW_NUL, NULL);
	if (meta)
		*meta = snap;
	else
		store_snapshot_clear(&snap);
	return j;
}

static int64_t count_events(const char *path, const char *run)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t n = -1;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM events WHERE run = ?", -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static void shuffle(struct sv_event *evs, long n)
{
	for (long i = n - 1; i > 0; i--) {
		long j = (long)(rnd() % (uint32_t)(i + 1));
		struct sv_event t = evs[i];
		evs[i] = evs[j];
		evs[j] = t;
	}
}

/* ---- files, schema ---- */

static void test_open_files_and_modes(void **state)
{
	(void)state;
	char path[512], p[600];
	db_path(path, sizeof(path));
	struct group *gr = getgrgid(getegid());
	assert_non_null(gr);
	mode_t old = umask(077);
	struct store_opts o = {.synchronous = SV_SYNC_FULL, .group = gr->gr_name};
	struct store *s;
	assert_int_equal(store_open(&s, path, &o), 0);
	umask(old);
	struct stat st;
	snprintf(p, sizeof(p), "%s", path);
	*strrchr(p, '/') = '\0';
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 02750);
	assert_int_equal(st.st_gid, gr->gr_gid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(st.st_gid, gr->gr_gid);
	/* WAL mode: the sidecar files exist with the same mode. */
	snprintf(p, sizeof(p), "%s-wal", path);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	snprintf(p, sizeof(p), "%s-shm", path);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	store_close(s);

	/* Reopen: schema version 1 kept. */
	s = open_store(path, REDUCER_RESPONSE);
	store_close(s);
	sqlite3 *db;
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), STORE_SCHEMA_VERSION);
	sqlite3_finalize(q);
	/* A newer schema is refused. */
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	struct store_opts o2 = {.synchronous = SV_SYNC_NORMAL};
	assert_int_equal(store_open(&s, path, &o2), -EPROTO);
	assert_null(s);
	/* Unknown group */
	db_path(path, sizeof(path));
	o2.group = "no-such-group-sv";
	assert_int_equal(store_open(&s, path, &o2), -ENOENT);
}

static void test_readonly_and_missing(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store_opts ro = {.readonly = true};
	struct store *s;
	assert_true(store_open(&s, path, &ro) < 0); /* never created read-only */
	s = open_store(path, REDUCER_RESPONSE);
	struct sv_event ev;
	mkev(&ev, "{\"id\":\"1-1\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1}");
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_begin(s), -EINVAL);
	assert_int_equal(apply1(s, &ev), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(apply1(s, &ev), -EINVAL); /* outside a transaction */
	event_clear(&ev);
	struct store *r;
	assert_int_equal(store_open(&r, path, &ro), 0);
	struct store_snapshot snap;
	assert_int_equal(store_snapshot_get(r, "r", &snap), 0);
	assert_string_equal(snap.status, "in_progress");
	assert_int_equal(snap.event_count, 1);
	assert_int_equal(snap.last_seq, 1);
	assert_false(snap.complete);
	assert_true(snap.updated_ms > 0);
	store_snapshot_clear(&snap);
	assert_int_equal(store_snapshot_get(r, "nope", &snap), -ENOENT);
	assert_int_equal(store_begin(r), -EINVAL);
	store_close(r);
	store_close(s);
}

/* meta[key] read straight from the file, "" when absent. */
static void meta_of(const char *path, const char *key, char *val, size_t len)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &q, NULL), SQLITE_OK);
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	snprintf(val, len, "%s", rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : "");
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static void expect_reducer_recorded(const char *path, enum reducer_kind kind)
{
	char val[64], want[16];
	meta_of(path, STORE_META_REDUCER, val, sizeof(val));
	assert_string_equal(val, reducer_kind_name(kind));
	meta_of(path, STORE_META_REDUCER_VERSION, val, sizeof(val));
	snprintf(want, sizeof(want), "%d", reducer_version(kind));
	assert_string_equal(val, want);
}

/* Each file records the reducer of its writer; a file of schema 1 (no meta
 * table) is still read, and a writer moves it on and records itself. */
static void test_reducer_recorded(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	store_close(open_store(path, REDUCER_MERGE));
	expect_reducer_recorded(path, REDUCER_MERGE);
	store_close(open_store(path, REDUCER_RESPONSE));
	expect_reducer_recorded(path, REDUCER_RESPONSE);

	/* Back to schema 1, as a file written before the meta table. */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "DROP TABLE meta; DROP TABLE forgotten; DROP TABLE lease;"
				      " ALTER TABLE snapshots DROP COLUMN quarantined; PRAGMA user_version = 1",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	struct store_opts ro = {.readonly = true};
	struct store *r;
	assert_int_equal(store_open(&r, path, &ro), 0);
	store_close(r);
	store_close(open_store(path, REDUCER_MERGE));
	expect_reducer_recorded(path, REDUCER_MERGE);
}

/* ---- dedupe ---- */

static void test_dedupe(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event e[10];
	mkev(&e[0], "{\"id\":\"100-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1}");
	/* same seq, another entry id (a producer's retried XADD) */
	mkev(&e[1], "{\"id\":\"101-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1}");
	mkev(&e[2], "{\"id\":\"102-0\",\"run\":\"r\",\"type\":\"tool.call\",\"seq\":2,"
		    "\"data\":{\"call_id\":\"c1\",\"name\":\"t\"}}");
	mkev(&e[3], "{\"id\":\"103-0\",\"run\":\"r\",\"type\":\"tool.output\",\"parent_seq\":2,"
		    "\"call_id\":\"c1\",\"data\":{\"call_id\":\"c1\",\"output\":\"a\"}}");
	/* the same call's output published again (another entry): a re-run */
	mkev(&e[4], "{\"id\":\"104-0\",\"run\":\"r\",\"type\":\"tool.output\",\"parent_seq\":2,"
		    "\"call_id\":\"c1\",\"data\":{\"call_id\":\"c1\",\"output\":\"b\"}}");
	/* events without seq: deduped on (stream, entry id) */
	mkev(&e[5], "{\"id\":\"105-0\",\"run\":\"r\",\"type\":\"note\"}");
	mkev(&e[6], "{\"id\":\"105-0\",\"run\":\"r\",\"type\":\"note\"}");
	mkev(&e[7], "{\"id\":\"105-0\",\"stream\":\"other\",\"run\":\"r\",\"type\":\"note\"}");
	/* a re-driven dead letter of 105-0: a duplicate */
	mkev(&e[8], "{\"id\":\"300-0\",\"run\":\"r\",\"type\":\"note\",\"origin_id\":\"105-0\"}");
	/* a re-driven dead letter never stored before: sorts at its origin id */
	mkev(&e[9], "{\"id\":\"301-0\",\"run\":\"r\",\"type\":\"note\",\"origin_id\":\"99-0\"}");
	static const int want[] = {STORE_OK, STORE_DUPLICATE, STORE_OK, STORE_OK, STORE_RERUN,
				   STORE_OK, STORE_DUPLICATE, STORE_OK, STORE_DUPLICATE, STORE_OK};
	for (int i = 0; i < 10; i++) {
		/* one transaction for the first half, then one per entry */
		if (i == 0 || i >= 5)
			assert_int_equal(store_begin(s), 0);
		if (apply1(s, &e[i]) != want[i])
			fail_msg("entry %d: want %d", i, want[i]);
		if (i >= 4)
			assert_int_equal(store_commit(s), 0);
	}
	assert_int_equal(count_events(path, "r"), 6);
	struct store_snapshot meta;
	json_t *snap = snapshot(s, "r", &meta);
	assert_int_equal(meta.event_count, 6);
	store_snapshot_clear(&meta);
	assert_int_equal(json_integer_value(json_object_get(snap, "ignored_events")), 3);
	json_t *out = json_object_get(json_array_get(json_object_get(snap, "output"), 1), "output");
	assert_string_equal(json_string_value(out), "a");
	/* the reference: the stored events in order */
	struct sv_event ref[6] = {e[0], e[2], e[3], e[5], e[7], e[9]};
	json_t *want_snap = golden_reduce(REDUCER_RESPONSE, "r", ref, 6);
	assert_true(golden_equal(snap, want_snap));
	json_decref(want_snap);
	json_decref(snap);
	struct store_stats st;
	store_stats(s, &st);
	assert_int_equal(st.duplicates, 3);
	assert_int_equal(st.reruns, 1);
	assert_true(st.rebuilds >= 1); /* 99-0 arrived late */
	for (int i = 0; i < 10; i++)
		event_clear(&e[i]);
	store_close(s);
}

/* ---- run lifecycle: conflicts, forget ---- */

static int64_t count_sql(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t n = -1;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Apply each event in a transaction of its own; returns the results. */
static void apply_each(struct store *s, struct sv_event *e, int n, int *got)
{
	for (int i = 0; i < n; i++) {
		assert_int_equal(store_begin(s), 0);
		got[i] = apply1(s, &e[i]);
		assert_int_equal(store_commit(s), 0);
	}
}

/* A producer event with the (run, seq) of a stored one: identical (data
 * compared as JSON) is silent; different quarantines the run, and every
 * later event of it is refused until it is forgotten; a tool.output is
 * exempt (a re-run). */
static void test_conflict_quarantine(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event e[9];
	mkev(&e[0], "{\"id\":\"100-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1,"
		    "\"data\":{\"model\":\"m\",\"metadata\":{\"a\":1,\"b\":2}}}");
	/* the same event, keys in another order: identical */
	mkev(&e[1], "{\"id\":\"101-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1,"
		    "\"data\":{\"metadata\":{\"b\":2,\"a\":1},\"model\":\"m\"}}");
	mkev(&e[2], "{\"id\":\"102-0\",\"run\":\"r\",\"type\":\"tool.call\",\"seq\":2,"
		    "\"data\":{\"call_id\":\"c1\",\"name\":\"t\"}}");
	mkev(&e[3], "{\"id\":\"103-0\",\"run\":\"r\",\"type\":\"tool.output\",\"parent_seq\":2,"
		    "\"call_id\":\"c1\",\"data\":{\"call_id\":\"c1\",\"output\":\"a\"}}");
	/* the same seq, other data: a conflict */
	mkev(&e[4], "{\"id\":\"200-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1,"
		    "\"data\":{\"model\":\"new\"}}");
	/* a new seq of the quarantined run: refused too */
	mkev(&e[5], "{\"id\":\"201-0\",\"run\":\"r\",\"type\":\"response.completed\",\"seq\":3}");
	/* a stored event delivered again: still silent */
	mkev(&e[6], "{\"id\":\"102-0\",\"run\":\"r\",\"type\":\"tool.call\",\"seq\":2,"
		    "\"data\":{\"call_id\":\"c1\",\"name\":\"t\"}}");
	/* same seq, other type, in another run: that run only */
	mkev(&e[7], "{\"id\":\"300-0\",\"run\":\"q\",\"type\":\"response.created\",\"seq\":1}");
	mkev(&e[8], "{\"id\":\"301-0\",\"run\":\"q\",\"type\":\"usage\",\"seq\":1}");
	static const int want[] = {STORE_OK, STORE_DUPLICATE, STORE_OK, STORE_OK, STORE_CONFLICT,
				   STORE_CONFLICT, STORE_DUPLICATE, STORE_OK, STORE_CONFLICT};
	int got[9];
	apply_each(s, e, 9, got);
	for (int i = 0; i < 9; i++)
		if (got[i] != want[i])
			fail_msg("entry %d: got %d, want %d", i, got[i], want[i]);
	struct store_snapshot meta;
	json_t *snap = snapshot(s, "r", &meta);
	assert_int_equal(meta.event_count, 3);
	assert_string_equal(json_string_value(json_object_get(snap, "model")), "m");
	store_snapshot_clear(&meta);
	json_decref(snap);
	assert_int_equal(count_sql(path, "SELECT count(*) FROM snapshots WHERE quarantined = 1"), 2);

	/* The quarantine holds across connections (the row's flag). */
	store_close(s);
	s = open_store(path, REDUCER_RESPONSE);
	assert_int_equal(store_begin(s), 0);
	char err[256];
	assert_int_equal(store_apply(s, &e[5], err, sizeof(err)), STORE_CONFLICT);
	assert_string_equal(err, STORE_CONFLICT_REASON);
	assert_int_equal(store_commit(s), 0);

	/* A conflict in the batch that stores the run's first event. */
	struct sv_event f[2];
	mkev(&f[0], "{\"id\":\"400-0\",\"run\":\"n\",\"type\":\"response.created\",\"seq\":1}");
	mkev(&f[1], "{\"id\":\"401-0\",\"run\":\"n\",\"type\":\"response.failed\",\"seq\":1}");
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &f[0]), STORE_OK);
	assert_int_equal(apply1(s, &f[1]), STORE_CONFLICT);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(count_sql(path, "SELECT quarantined FROM snapshots WHERE run = 'n'"), 1);

	/* forget lifts the quarantine */
	const char *runs[] = {"r"};
	assert_int_equal(store_forget(s, "5-0", 1000, 0, runs, 1), 1);
	assert_int_equal(count_events(path, "r"), 0);
	assert_int_equal(count_sql(path, "SELECT count(*) FROM snapshots WHERE run = 'r'"), 0);
	struct sv_event g;
	mkev(&g, "{\"id\":\"1001-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1,"
		 "\"data\":{\"model\":\"new\"}}");
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &g), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	snap = snapshot(s, "r", NULL);
	assert_string_equal(json_string_value(json_object_get(snap, "model")), "new");
	json_decref(snap);
	struct store_stats st;
	store_stats(s, &st);
	assert_int_equal(st.conflicts, 2);
	event_clear(&g);
	for (int i = 0; i < 2; i++)
		event_clear(&f[i]);
	for (int i = 0; i < 9; i++)
		event_clear(&e[i]);
	store_close(s);
}

/* forget deletes the run's events and snapshot; entries from before the
 * forget position are refused (STORE_FORGOTTEN) on this and on another
 * connection to the file, later ones start the run anew; each NS:forget
 * entry is applied once per file; a second forget moves the position. */
static void test_forget(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *a = open_store(path, REDUCER_RESPONSE);
	struct store *b = open_store(path, REDUCER_RESPONSE);
	struct sv_event old[3], neu[3], other;
	for (int i = 0; i < 3; i++) {
		mkev(&old[i], "{\"id\":\"%d-0\",\"run\":\"r\",\"type\":\"%s\",\"seq\":%d,\"data\":{\"model\":\"old\"}}",
		     100 + i, i == 0 ? "response.created" : i == 1 ? "usage" : "response.completed", i + 1);
		mkev(&neu[i], "{\"id\":\"%d-0\",\"run\":\"r\",\"type\":\"%s\",\"seq\":%d,\"data\":{\"model\":\"new\"}}",
		     2000 + i, i == 0 ? "response.created" : i == 1 ? "item.started" : "response.failed", i + 1);
	}
	mkev(&other, "{\"id\":\"150-0\",\"run\":\"keep\",\"type\":\"response.created\",\"seq\":1}");
	int got[3];
	apply_each(a, old, 2, got);
	apply_each(b, &other, 1, got);
	/* b has r cached from here on */
	assert_int_equal(store_begin(b), 0);
	assert_int_equal(apply1(b, &old[0]), STORE_DUPLICATE);
	assert_int_equal(store_commit(b), 0);

	const char *runs[] = {"r", "never-seen"};
	char last[64];
	assert_int_equal(store_forget_last(a, last, sizeof(last)), 0);
	assert_string_equal(last, "0-0");
	assert_int_equal(store_forget(a, "7-1", 1000, 0, runs, 2), 1);
	assert_int_equal(store_forget_last(b, last, sizeof(last)), 0);
	assert_string_equal(last, "7-1");
	/* b applies the same entry: recorded already, nothing to do */
	assert_int_equal(store_forget(b, "7-1", 1000, 0, runs, 2), 0);
	assert_int_equal(count_events(path, "r"), 0);
	assert_int_equal(count_events(path, "keep"), 1);

	/* the old run's unread entry, on either connection: refused */
	assert_int_equal(store_begin(b), 0);
	assert_int_equal(apply1(b, &old[2]), STORE_FORGOTTEN);
	assert_int_equal(store_commit(b), 0);
	assert_int_equal(store_begin(a), 0);
	assert_int_equal(apply1(a, &old[1]), STORE_FORGOTTEN);
	/* the new run, no conflict with the old one */
	assert_int_equal(apply1(a, &neu[0]), STORE_OK);
	assert_int_equal(store_commit(a), 0);
	apply_each(b, &neu[1], 2, got);
	assert_int_equal(got[0], STORE_OK);
	assert_int_equal(got[1], STORE_OK);
	struct store_snapshot meta;
	json_t *snap = snapshot(a, "r", &meta);
	assert_int_equal(meta.event_count, 3);
	assert_string_equal(meta.status, "failed");
	assert_string_equal(json_string_value(json_object_get(snap, "model")), "new");
	store_snapshot_clear(&meta);
	json_decref(snap);

	/* forgotten again, later: the new run's entries are old now */
	assert_int_equal(store_forget(b, "8-0", 5000, 0, runs, 1), 1);
	assert_int_equal(store_forget(a, "7-5", 6000, 0, runs, 1), 0); /* an older entry: ignored */
	assert_int_equal(count_sql(path, "SELECT pos_ms FROM forgotten WHERE run = 'r'"), 5000);
	assert_int_equal(store_begin(a), 0);
	assert_int_equal(apply1(a, &neu[0]), STORE_FORGOTTEN);
	assert_int_equal(store_commit(a), 0);
	assert_int_equal(count_events(path, "r"), 0);
	struct store_stats st;
	store_stats(a, &st);
	assert_int_equal(st.forgotten, 2);
	for (int i = 0; i < 3; i++) {
		event_clear(&old[i]);
		event_clear(&neu[i]);
	}
	event_clear(&other);
	store_close(a);
	store_close(b);
}

/* A file of schema 2 with runs in it moves to schema 3 and keeps them. */
static void test_migrate_v2(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_MERGE);
	struct sv_event e;
	mkev(&e, "{\"id\":\"100-0\",\"run\":\"r\",\"type\":\"x\",\"seq\":1,\"data\":{\"k\":1}}");
	int got;
	apply_each(s, &e, 1, &got);
	store_close(s);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "DROP TABLE forgotten; DROP TABLE lease; ALTER TABLE snapshots DROP COLUMN quarantined;"
				      " PRAGMA user_version = 2",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	s = open_store(path, REDUCER_MERGE);
	assert_int_equal(count_sql(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(count_sql(path, "SELECT quarantined FROM snapshots WHERE run = 'r'"), 0);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &e), STORE_DUPLICATE);
	assert_int_equal(store_commit(s), 0);
	struct store_snapshot meta;
	json_t *snap = snapshot(s, "r", &meta);
	assert_int_equal(meta.event_count, 1);
	store_snapshot_clear(&meta);
	json_decref(snap);
	event_clear(&e);
	store_close(s);
}

/* ---- order ---- */

/* Apply evs in batches of random size (1..maxbatch), every event once, plus
 * replays of random earlier ones (duplicates). */
static void apply_batches(struct store *s, struct sv_event *evs, long n, int maxbatch)
{
	long i = 0;
	while (i < n) {
		long b = 1 + (long)(rnd() % (uint32_t)maxbatch);
		assert_int_equal(store_begin(s), 0);
		for (long k = 0; k < b && i < n; k++, i++) {
			int rc = apply1(s, &evs[i]);
			assert_true(rc == STORE_OK || rc == STORE_DUPLICATE);
			if (rnd() % 8 == 0)
				assert_int_equal(apply1(s, &evs[rnd() % (uint32_t)(i + 1)]), STORE_DUPLICATE);
		}
		assert_int_equal(store_commit(s), 0);
	}
}

static void check_golden_shuffled(const char *name, const char *run, enum reducer_kind kind)
{
	char path[512];
	struct sv_event *evs;
	long n = golden_load(name, &evs);
	assert_true(n > 0);
	json_t *want = golden_expected(name);
	for (int round = 0; round < 5; round++) {
		db_path(path, sizeof(path));
		struct store *s = open_store(path, kind);
		shuffle(evs, n);
		apply_batches(s, evs, n, 4);
		struct store_snapshot meta;
		json_t *got = snapshot(s, run, &meta);
		if (!golden_equal(got, want))
			fail_msg("%s round %d", name, round);
		assert_int_equal(meta.event_count, n);
		assert_true(meta.complete);
		store_snapshot_clear(&meta);
		json_decref(got);
		store_close(s);
	}
	json_decref(want);
	golden_free(evs, n);
}

static void test_golden_through_store(void **state)
{
	(void)state;
	check_golden_shuffled("response_completed", "run-1", REDUCER_RESPONSE);
	check_golden_shuffled("response_failed", "run-f", REDUCER_RESPONSE);
	check_golden_shuffled("response_cancelled", "run-c", REDUCER_RESPONSE);
	check_golden_shuffled("response_anomalies", "run-a", REDUCER_RESPONSE);
	check_golden_shuffled("merge", "ent-1", REDUCER_MERGE);
}

/* The standard svbench run shape (58 events) plus a tool.output; events
 * of nruns runs, seq set.  Returns the count. */
static long gen_runs(struct sv_event **out, int nruns, int first_run, bool with_seq)
{
	long cap = (long)nruns * 60, n = 0;
	struct sv_event *evs = calloc((size_t)cap, sizeof(*evs));
	for (int r = 0; r < nruns; r++) {
		char run[32];
		snprintf(run, sizeof(run), "run-%d", first_run + r);
		int seq = 0;
#define EV(type, data) do { \
		seq++; \
		if (with_seq) \
			mkev(&evs[n++], "{\"id\":\"%d-%d\",\"run\":\"%s\",\"type\":\"%s\",\"seq\":%d," \
			     "\"ts\":%d,\"data\":%s}", 1000 + seq, first_run + r, run, type, seq, \
			     1000 + seq, data); \
		else \
			mkev(&evs[n++], "{\"id\":\"%d-%d\",\"run\":\"%s\",\"type\":\"%s\",\"data\":%s}", \
			     1000 + seq, first_run + r, run, type, data); \
	} while (0)
		EV("response.created", "{\"model\":\"m\"}");
		EV("item.started", "{\"item_id\":\"rs\",\"kind\":\"reasoning\"}");
		for (int i = 0; i < 10; i++)
			EV("item.delta", "{\"item_id\":\"rs\",\"text\":\"think \"}");
		EV("item.completed", "{\"item_id\":\"rs\"}");
		EV("tool.call", "{\"call_id\":\"c\",\"name\":\"echo\",\"arguments\":{}}");
		int call_seq = seq;
		EV("item.started", "{\"item_id\":\"m\",\"kind\":\"message\",\"role\":\"assistant\"}");
		for (int i = 0; i < 40; i++) {
			char d[64];
			snprintf(d, sizeof(d), "{\"item_id\":\"m\",\"text\":\"w%d \"}", i);
			EV("item.delta", d);
		}
		EV("item.completed", "{\"item_id\":\"m\"}");
		EV("usage", "{\"input_tokens\":5,\"output_tokens\":50}");
		EV("response.completed", "{}");
#undef EV
		if (with_seq)
			mkev(&evs[n++], "{\"id\":\"5000-%d\",\"run\":\"%s\",\"type\":\"tool.output\","
			     "\"parent_seq\":%d,\"call_id\":\"c\",\"data\":{\"call_id\":\"c\","
			     "\"output\":\"x\",\"is_error\":false}}", first_run + r, run, call_seq);
	}
	*out = evs;
	return n;
}

static void check_runs(struct store *s, struct sv_event *evs, long n, int nruns, int first_run)
{
	for (int r = 0; r < nruns; r++) {
		char run[32];
		snprintf(run, sizeof(run), "run-%d", first_run + r);
		json_t *want = golden_reduce(REDUCER_RESPONSE, run, evs, n);
		json_t *got = snapshot(s, run, NULL);
		if (!golden_equal(got, want))
			fail_msg("run %s differs", run);
		assert_true(reducer_complete(got));
		json_decref(got);
		json_decref(want);
	}
}

static void test_out_of_order(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event *evs;
	long n = gen_runs(&evs, 20, 0, true);
	shuffle(evs, n);
	apply_batches(s, evs, n, 40);
	check_runs(s, evs, n, 20, 0);
	struct store_stats st;
	store_stats(s, &st);
	assert_int_equal(st.applied, (uint64_t)n);
	assert_true(st.late > 0);
	golden_free(evs, n);

	/* Runs without seq: ordered by entry id as integers. */
	n = gen_runs(&evs, 5, 100, false);
	shuffle(evs, n);
	apply_batches(s, evs, n, 10);
	check_runs(s, evs, n, 5, 100);
	golden_free(evs, n);
	store_close(s);
}

/* A tool.output sorts right after its call but arrives after later
 * events: the run is rebuilt from the state kept at the call, not from its
 * first event, and comes out right. */
static void test_tool_output_checkpoint(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event *evs;
	long n = gen_runs(&evs, 1, 0, true); /* 58 events, then the output of seq 14 */
	for (long i = 0; i < n - 1; i += 10) {
		assert_int_equal(store_begin(s), 0);
		for (long k = i; k < i + 10 && k < n - 1; k++)
			assert_int_equal(apply1(s, &evs[k]), STORE_OK);
		assert_int_equal(store_commit(s), 0);
	}
	struct store_stats before, after;
	store_stats(s, &before);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &evs[n - 1]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	store_stats(s, &after);
	assert_int_equal(after.late - before.late, 1);
	assert_int_equal(after.rebuilds - before.rebuilds, 1);
	/* replayed: seq 15..58 and the output, not seq 1..14 */
	assert_int_equal(after.rebuild_events - before.rebuild_events, 58 - 14 + 1);
	check_runs(s, evs, n, 1, 0);
	golden_free(evs, n);
	store_close(s);
}

/* Two connections on one file: a stale cache must never win. */
static void test_two_connections(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *a = open_store(path, REDUCER_RESPONSE);
	struct store *b = open_store(path, REDUCER_RESPONSE);
	struct sv_event *evs;
	long n = gen_runs(&evs, 3, 0, true); /* in order: 59 events per run */
	golden_sort(evs, n);
	/* Interleave: A and B take turns with chunks of each run's events,
	 * sometimes B runs ahead so A's next events are late. */
	static const int chunks[][3] = {
		{0, 5, 'a'}, {5, 9, 'b'}, {9, 10, 'a'},   /* A cached, B moved on, A applies more */
		{14, 20, 'b'}, {10, 14, 'a'},             /* A's events are late: rebuild */
		{20, 21, 'a'}, {21, 22, 'b'}, {22, 23, 'a'}, {23, 40, 'b'}, {40, 59, 'a'},
	};
	for (int r = 0; r < 3; r++) {
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			struct store *s = chunks[c][2] == 'a' ? a : b;
			assert_int_equal(store_begin(s), 0);
			for (int i = chunks[c][0]; i < chunks[c][1]; i++) {
				/* evs is sorted by order key, runs interleave: pick run r's i-th */
				long seen = -1;
				for (long k = 0; k < n; k++)
					if (strcmp(evs[k].run, r == 0 ? "run-0" : r == 1 ? "run-1" : "run-2") == 0 &&
					    ++seen == i) {
						assert_int_equal(apply1(s, &evs[k]), STORE_OK);
						break;
					}
			}
			assert_int_equal(store_commit(s), 0);
			/* Every commit, whoever made it, leaves a correct snapshot. */
		}
	}
	check_runs(a, evs, n, 3, 0);
	check_runs(b, evs, n, 3, 0);
	struct store_stats st;
	store_stats(a, &st);
	assert_true(st.cache_stale > 0);
	assert_true(st.rebuilds > 0);
	golden_free(evs, n);
	store_close(a);
	store_close(b);
}


/* Regression: B changes run-1 while A's cache holds it; A's next
 * transaction touches only run-0; the one after must still notice that
 * run-1 changed (a per-connection "nobody else committed" flag is not
 * enough, each cached entry must have been checked since). */
static void test_stale_untouched_entry(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *a = open_store(path, REDUCER_RESPONSE);
	struct store *b = open_store(path, REDUCER_RESPONSE);
	struct sv_event *evs;
	long n = gen_runs(&evs, 2, 0, true); /* run-0: evs[0..58], run-1: evs[59..117] */
	/* A: 3 events of each run */
	assert_int_equal(store_begin(a), 0);
	for (long i = 0; i < 3; i++) {
		assert_int_equal(apply1(a, &evs[i]), STORE_OK);
		assert_int_equal(apply1(a, &evs[59 + i]), STORE_OK);
	}
	assert_int_equal(store_commit(a), 0);
	/* B: run-1 events 3..9 */
	assert_int_equal(store_begin(b), 0);
	for (long i = 3; i < 10; i++)
		assert_int_equal(apply1(b, &evs[59 + i]), STORE_OK);
	assert_int_equal(store_commit(b), 0);
	/* A: run-0 only, twice */
	for (long i = 3; i < 5; i++) {
		assert_int_equal(store_begin(a), 0);
		assert_int_equal(apply1(a, &evs[i]), STORE_OK);
		assert_int_equal(store_commit(a), 0);
	}
	/* A: the rest of both runs */
	assert_int_equal(store_begin(a), 0);
	for (long i = 5; i < 59; i++)
		assert_int_equal(apply1(a, &evs[i]), STORE_OK);
	for (long i = 10; i < 59; i++)
		assert_int_equal(apply1(a, &evs[59 + i]), STORE_OK);
	assert_int_equal(store_commit(a), 0);
	check_runs(a, evs, n, 2, 0);
	golden_free(evs, n);
	store_close(a);
	store_close(b);
}

/* Three connections (one with a tiny cache) take random batches of
 * shuffled events; some batches are rolled back and retried later.  Every
 * run ends equal to the reducer applied in order. */
static void test_many_connections_random(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *st[3];
	st[0] = open_store(path, REDUCER_RESPONSE);
	st[1] = open_store(path, REDUCER_RESPONSE);
	struct store_opts o = {.synchronous = SV_SYNC_NORMAL, .reducer = REDUCER_RESPONSE,
			       .cache_entries = 2};
	assert_int_equal(store_open(&st[2], path, &o), 0);
	struct sv_event *evs;
	long n = gen_runs(&evs, 12, 200, true);
	shuffle(evs, n);
	long i = 0, retry_from = -1;
	while (i < n) {
		struct store *s = st[rnd() % 3];
		long b = 1 + (long)(rnd() % 30);
		bool fail = rnd() % 6 == 0;
		long start = retry_from >= 0 ? retry_from : i;
		assert_int_equal(store_begin(s), 0);
		long k;
		for (k = start; k < start + b && k < n; k++) {
			int rc = apply1(s, &evs[k]);
			assert_true(rc == STORE_OK || rc == STORE_DUPLICATE);
		}
		if (fail) {
			store_rollback(s);
			retry_from = start;
			continue;
		}
		assert_int_equal(store_commit(s), 0);
		retry_from = -1;
		if (k > i)
			i = k;
	}
	check_runs(st[0], evs, n, 12, 200);
	uint64_t stale = 0, rebuilds = 0;
	for (int c = 0; c < 3; c++) {
		struct store_stats ss;
		store_stats(st[c], &ss);
		stale += ss.cache_stale;
		rebuilds += ss.rebuilds;
		store_close(st[c]);
	}
	assert_true(stale > 0);
	assert_true(rebuilds > 0);
	golden_free(evs, n);
}

/* ---- checkpoints (issue 14) ---- */

static struct store *open_store_iv(const char *path, int64_t interval_ms, size_t cache)
{
	struct store_opts o = {.synchronous = SV_SYNC_NORMAL, .busy_timeout_ms = 2000,
			       .reducer = REDUCER_RESPONSE, .snapshot_interval_ms = interval_ms,
			       .cache_entries = cache};
	struct store *s;
	assert_int_equal(store_open(&s, path, &o), 0);
	return s;
}

/* The reference over the events of run marked in done[]. */
static json_t *reduce_done(const char *run, const struct sv_event *evs, const bool *done, long n)
{
	struct sv_event *sub = calloc((size_t)n + 1, sizeof(*sub));
	long m = 0;
	for (long i = 0; i < n; i++)
		if (done[i] && strcmp(evs[i].run, run) == 0)
			sub[m++] = evs[i];
	json_t *j = golden_reduce(REDUCER_RESPONSE, run, sub, m);
	free(sub);
	return j;
}

/* The raw row of run, as a reader of the table sees it: NULL when none. */
static json_t *raw_row(const char *path, const char *run, int64_t *count)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	json_t *j = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT body, event_count FROM snapshots WHERE run = ?", -1,
					    &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		j = json_loads((const char *)sqlite3_column_text(st, 0), JSON_ALLOW_NUL, NULL);
		*count = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return j;
}

/* The row is a checkpoint: the reference over the first event_count
 * stored events of the run, in order. */
static void check_row_prefix(const char *path, const char *run, const struct sv_event *evs, const bool *done,
			     long n)
{
	int64_t count = 0;
	json_t *row = raw_row(path, run, &count);
	if (!row)
		return;
	struct sv_event *sub = calloc((size_t)n + 1, sizeof(*sub));
	long m = 0;
	for (long i = 0; i < n; i++)
		if (done[i] && strcmp(evs[i].run, run) == 0)
			sub[m++] = evs[i];
	golden_sort(sub, m);
	assert_true(count <= m);
	json_t *want = golden_reduce(REDUCER_RESPONSE, run, sub, count);
	if (!golden_equal(row, want))
		fail_msg("row of %s is not the reference over its first %lld events", run, (long long)count);
	json_decref(want);
	json_decref(row);
	free(sub);
}

/* In-progress rows wait for the interval; every exact read (writer or
 * reader store) equals the reference over the events committed so far;
 * a terminal row is exact; store_flush writes what is due. */
static void test_checkpoint_interval(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store_iv(path, 200, 0);
	assert_int_equal(store_flush(s, false), 0); /* the recovery pass: nothing */
	struct store *ro;
	struct store_opts roo = {.readonly = true, .reducer = REDUCER_MERGE /* the file says response */};
	struct sv_event *evs;
	long n = gen_runs(&evs, 1, 0, true); /* 58 events + the output of seq 14 */
	golden_sort(evs, n);                  /* the output right after its call */
	bool *done = calloc((size_t)n, sizeof(*done));
	int64_t count;
	/* first batch: a new run, no row yet; the exact read reduces it all */
	assert_int_equal(store_begin(s), 0);
	for (long i = 0; i < 5; i++) {
		assert_int_equal(apply1(s, &evs[i]), STORE_OK);
		done[i] = true;
	}
	assert_int_equal(store_commit(s), 0);
	assert_null(raw_row(path, "run-0", &count));
	assert_int_equal(store_open(&ro, path, &roo), 0);
	struct store_snapshot meta;
	json_t *got = snapshot(ro, "run-0", &meta), *want = reduce_done("run-0", evs, done, n);
	assert_true(golden_equal(got, want));
	assert_int_equal(meta.tail_events, 5);
	assert_int_equal(meta.event_count, 5);
	assert_int_equal(meta.updated_ms, 0);
	store_snapshot_clear(&meta);
	json_decref(got);
	json_decref(want);
	int64_t due = store_flush_due_ms(s);
	assert_true(due > 0 && due <= 200);
	assert_int_equal(store_flush(s, false), 0); /* not due yet */
	/* flushed once due */
	util_sleep_ms(due + 5, NULL);
	assert_int_equal(store_flush_due_ms(s), 0);
	assert_int_equal(store_flush(s, false), 1);
	assert_int_equal(store_flush_due_ms(s), -1);
	got = raw_row(path, "run-0", &count);
	assert_int_equal(count, 5);
	json_decref(got);
	/* more batches in quick succession: the row stays behind, reads exact */
	for (long i = 5; i < 40; i += 5) {
		assert_int_equal(store_begin(s), 0);
		for (long k = i; k < i + 5; k++) {
			assert_int_equal(apply1(s, &evs[k]), STORE_OK);
			done[k] = true;
		}
		assert_int_equal(store_commit(s), 0);
		got = snapshot(ro, "run-0", NULL);
		want = reduce_done("run-0", evs, done, n);
		assert_true(golden_equal(got, want));
		json_decref(got);
		json_decref(want);
		got = snapshot(s, "run-0", NULL);
		want = reduce_done("run-0", evs, done, n);
		assert_true(golden_equal(got, want));
		json_decref(got);
		json_decref(want);
		check_row_prefix(path, "run-0", evs, done, n);
	}
	json_decref(raw_row(path, "run-0", &count));
	assert_true(count < 40);
	/* a second connection (cache miss) catches up from the row */
	struct store *b = open_store_iv(path, 200, 0);
	struct store_stats st;
	assert_int_equal(store_begin(b), 0);
	assert_int_equal(apply1(b, &evs[40]), STORE_OK);
	done[40] = true;
	assert_int_equal(store_commit(b), 0);
	store_stats(b, &st);
	assert_int_equal(st.catchups, 1);
	got = snapshot(ro, "run-0", NULL);
	want = reduce_done("run-0", evs, done, n);
	assert_true(golden_equal(got, want));
	json_decref(got);
	json_decref(want);
	/* back to the first: its cached state is stale (data_version moved) */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &evs[41]), STORE_OK);
	done[41] = true;
	assert_int_equal(store_commit(s), 0);
	store_stats(s, &st);
	assert_true(st.cache_stale >= 1);
	/* the rest, terminal: the row is written at once and exact */
	assert_int_equal(store_begin(s), 0);
	for (long k = 42; k < n; k++) {
		assert_int_equal(apply1(s, &evs[k]), STORE_OK);
		done[k] = true;
	}
	assert_int_equal(store_commit(s), 0);
	got = raw_row(path, "run-0", &count);
	want = reduce_done("run-0", evs, done, n);
	assert_int_equal(count, n);
	assert_true(golden_equal(got, want));
	assert_true(reducer_complete(got));
	json_decref(got);
	json_decref(want);
	assert_int_equal(store_flush_due_ms(s), -1);
	store_stats(s, &st);
	assert_true(st.writes_deferred > 0);
	golden_free(evs, n);
	free(done);
	store_close(ro);
	store_close(b);
	store_close(s);
}

/* The raw rows of run-0..run-(nruns-1) equal the reduction of the events
 * marked done. */
static void assert_rows_reduced(const char *path, int nruns, const struct sv_event *evs, const bool *done, long n)
{
	for (int r = 0; r < nruns; r++) {
		char run[16];
		int64_t count = 0;
		snprintf(run, sizeof(run), "run-%d", r);
		json_t *got = raw_row(path, run, &count), *want = reduce_done(run, evs, done, n);
		assert_true(golden_equal(got, want));
		json_decref(got);
		json_decref(want);
	}
}

/* A writer killed between checkpoints: its runs' rows are behind, the
 * state that would catch them up is gone.  The next writer's first
 * store_flush writes them (the runs with recent events). */
static void test_checkpoint_recover(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *a = open_store_iv(path, 3600000, 0);
	struct sv_event *evs;
	long n = gen_runs(&evs, 3, 0, true);
	golden_sort(evs, n);
	bool *done = calloc((size_t)n, sizeof(*done));
	for (long i = 0; i < n; i += 7) {
		assert_int_equal(store_begin(a), 0);
		for (long k = i; k < i + 7 && k < n; k++) {
			/* the last 3 events of each run never arrive: in progress */
			if (strcmp(evs[k].type, "response.completed") == 0 ||
			    strcmp(evs[k].type, "usage") == 0 || strcmp(evs[k].type, "tool.output") == 0)
				continue;
			assert_int_equal(apply1(a, &evs[k]), STORE_OK);
			done[k] = true;
		}
		assert_int_equal(store_commit(a), 0);
		if (i == 14)
			assert_int_equal(store_flush(a, true), 3); /* run-0..2 rows at some point */
	}
	store_close(a); /* as if killed: no flush */
	for (int r = 0; r < 3; r++) {
		char run[16];
		int64_t count = 0;
		snprintf(run, sizeof(run), "run-%d", r);
		json_decref(raw_row(path, run, &count));
		assert_true(count < 55);
		check_row_prefix(path, run, evs, done, n);
	}
	struct store *b = open_store_iv(path, 3600000, 0);
	assert_int_equal(store_flush_due_ms(b), 0);
	/* the first transaction anchors the recovery, done a little later
	 * (a takeover stores the entries it claims first) */
	assert_int_equal(store_flush(b, false), 0);
	int64_t due = store_flush_due_ms(b);
	assert_true(due > 0 && due <= 100);
	util_sleep_ms(due + 2, NULL);
	assert_int_equal(store_flush(b, false), 3);
	assert_int_equal(store_flush(b, false), 0);
	assert_int_equal(store_flush_due_ms(b), -1);
	assert_rows_reduced(path, 3, evs, done, n);
	golden_free(evs, n);
	free(done);
	store_close(b);
}

/* More runs in progress than the cache holds (an hour's interval, a
 * cache of 8, batches of 10 new runs): none is evicted with its row
 * behind, so every run has its row (pattern_idle_cost: 10,000 one-event
 * runs left 1,808 without one). */
static void test_checkpoint_cache_overflow(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store_iv(path, 3600000, 8);
	struct sv_event *evs;
	long n = gen_runs(&evs, 100, 0, true), batch = 0;
	for (long k = 0; k < n; k++) {
		if (strcmp(evs[k].type, "response.created") != 0)
			continue;
		if (batch == 0)
			assert_int_equal(store_begin(s), 0);
		assert_int_equal(apply1(s, &evs[k]), STORE_OK);
		if (++batch == 10) {
			assert_int_equal(store_commit(s), 0);
			batch = 0;
		}
	}
	assert_int_equal(batch, 0);
	assert_true(store_flush(s, true) >= 0);
	assert_int_equal(count_sql(path, "SELECT count(*) FROM snapshots"), 100);
	golden_free(evs, n);
	store_close(s);
}

/* The same through the writer lease: a standby opened long before takes
 * the lease of a writer killed between checkpoints, and writes the rows
 * it left behind (only after the takeover: not at its own open). */
static void test_checkpoint_recover_lease(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *a = open_store_iv(path, 3600000, 0);
	struct store *b = open_store_iv(path, 3600000, 0);
	assert_int_equal(store_lease_take(a, "a pid 1", 60000, STORE_LEASE_FREE, NULL, 0), 1);
	assert_int_equal(store_lease_take(b, "b pid 2", 60000, STORE_LEASE_FREE, NULL, 0), 0);
	assert_int_equal(store_flush(b, false), 0); /* standby's own open: nothing */
	struct sv_event *evs;
	long n = gen_runs(&evs, 2, 0, true);
	golden_sort(evs, n);
	bool *done = calloc((size_t)n, sizeof(*done));
	assert_int_equal(store_begin(a), 0);
	for (long k = 0; k < n; k++) {
		if (strcmp(evs[k].type, "response.completed") == 0)
			continue;
		assert_int_equal(apply1(a, &evs[k]), STORE_OK);
		done[k] = true;
	}
	assert_int_equal(store_commit(a), 0);
	store_close(a); /* killed: no flush, lease not released */
	int64_t count = -1;
	assert_null(raw_row(path, "run-0", &count));
	assert_int_equal(store_lease_take(b, "b pid 2", 60000, STORE_LEASE_FORCE, NULL, 0), 1);
	assert_int_equal(store_flush_due_ms(b), 0);
	assert_int_equal(store_flush(b, false), 0); /* anchors */
	util_sleep_ms(store_flush_due_ms(b) + 2, NULL);
	assert_int_equal(store_flush(b, false), 2);
	assert_rows_reduced(path, 2, evs, done, n);
	golden_free(evs, n);
	free(done);
	store_close(b);
}

/* A rollback drops the state of runs whose rows were behind: the next
 * flush catches them up from the table and writes their rows. */
static void test_checkpoint_rollback(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store_iv(path, 3600000, 0);
	struct sv_event *evs;
	long n = gen_runs(&evs, 1, 0, true);
	golden_sort(evs, n);
	bool *done = calloc((size_t)n, sizeof(*done));
	int64_t count = -1;
	assert_int_equal(store_begin(s), 0);
	for (long k = 0; k < 20; k++) {
		assert_int_equal(apply1(s, &evs[k]), STORE_OK);
		done[k] = true;
	}
	assert_int_equal(store_commit(s), 0);
	assert_true(store_flush_due_ms(s) > 1000); /* behind, not due for an hour */
	assert_null(raw_row(path, "run-0", &count));
	assert_int_equal(store_begin(s), 0);
	for (long k = 20; k < 30; k++)
		assert_int_equal(apply1(s, &evs[k]), STORE_OK);
	store_rollback(s);
	assert_int_equal(store_flush_due_ms(s), 0);
	assert_int_equal(store_flush(s, false), 1);
	json_t *got = raw_row(path, "run-0", &count), *want = reduce_done("run-0", evs, done, n);
	assert_int_equal(count, 20);
	assert_true(golden_equal(got, want));
	json_decref(got);
	json_decref(want);
	assert_int_equal(store_flush_due_ms(s), -1);
	golden_free(evs, n);
	free(done);
	store_close(s);
}

/* A late event sorting before the row's position rewrites the row from the
 * stored events in its own transaction. */
static void test_checkpoint_late(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store_iv(path, 3600000, 0);
	struct sv_event *evs;
	long n = gen_runs(&evs, 1, 0, true);
	golden_sort(evs, n);
	bool *done = calloc((size_t)n, sizeof(*done));
	int64_t count;
	/* 0..29 except 10, row flushed at 29 events */
	assert_int_equal(store_begin(s), 0);
	for (long k = 0; k < 30; k++) {
		if (k == 10)
			continue;
		assert_int_equal(apply1(s, &evs[k]), STORE_OK);
		done[k] = true;
	}
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(store_flush(s, true), 1);
	json_decref(raw_row(path, "run-0", &count));
	assert_int_equal(count, 29);
	/* more in-progress events: not written (interval of an hour) */
	assert_int_equal(store_begin(s), 0);
	for (long k = 30; k < 35; k++) {
		assert_int_equal(apply1(s, &evs[k]), STORE_OK);
		done[k] = true;
	}
	assert_int_equal(store_commit(s), 0);
	json_decref(raw_row(path, "run-0", &count));
	assert_int_equal(count, 29);
	/* the late one: row rewritten, covering everything */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &evs[10]), STORE_OK);
	done[10] = true;
	assert_int_equal(store_commit(s), 0);
	json_t *got = raw_row(path, "run-0", &count), *want = reduce_done("run-0", evs, done, n);
	assert_int_equal(count, 35);
	assert_true(golden_equal(got, want));
	json_decref(got);
	json_decref(want);
	golden_free(evs, n);
	free(done);
	store_close(s);
}

/* Three connections (one with a tiny cache: evictions) with intervals of
 * 0, 5 ms and an hour take random batches of shuffled events, some rolled
 * back.  After every commit: the exact read of a random run equals the
 * reference over the committed events, and its row is a valid prefix. */
static void test_checkpoint_random(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *st[3];
	st[0] = open_store_iv(path, 3600000, 0);
	st[1] = open_store_iv(path, 5, 0);
	st[2] = open_store_iv(path, 3600000, 2);
	struct store *ro;
	struct store_opts roo = {.readonly = true};
	assert_int_equal(store_open(&ro, path, &roo), 0);
	struct sv_event *evs;
	long n = gen_runs(&evs, 8, 300, true);
	shuffle(evs, n);
	bool *done = calloc((size_t)n, sizeof(*done));
	long i = 0, retry_from = -1;
	while (i < n) {
		struct store *s = st[rnd() % 3];
		long b = 1 + (long)(rnd() % 25);
		bool fail = rnd() % 7 == 0;
		long start = retry_from >= 0 ? retry_from : i;
		assert_int_equal(store_begin(s), 0);
		long k;
		for (k = start; k < start + b && k < n; k++) {
			int rc = apply1(s, &evs[k]);
			assert_true(rc == STORE_OK || rc == STORE_DUPLICATE);
		}
		if (fail) {
			store_rollback(s);
			retry_from = start;
			continue;
		}
		assert_int_equal(store_commit(s), 0);
		for (long j = start; j < k; j++)
			done[j] = true;
		retry_from = -1;
		if (k > i)
			i = k;
		if (rnd() % 4 == 0)
			assert_true(store_flush(st[rnd() % 3], rnd() % 2) >= 0);
		char run[32];
		snprintf(run, sizeof(run), "run-%u", 300 + rnd() % 8);
		json_t *want = reduce_done(run, evs, done, n);
		json_t *got = snapshot(rnd() % 2 ? ro : st[rnd() % 3], run, NULL);
		if (json_integer_value(json_object_get(want, "event_count")) == 0) {
			assert_null(got);
		} else if (!golden_equal(got, want)) {
			fail_msg("exact read of %s differs after %ld events", run, i);
		}
		json_decref(got);
		json_decref(want);
		check_row_prefix(path, run, evs, done, n);
	}
	check_runs(ro, evs, n, 8, 300);
	/* every run ended terminal: its row is exact without a flush */
	for (int r = 0; r < 8; r++) {
		char run[32];
		int64_t count;
		snprintf(run, sizeof(run), "run-%d", 300 + r);
		json_t *got = raw_row(path, run, &count), *want = reduce_done(run, evs, done, n);
		assert_true(golden_equal(got, want));
		json_decref(got);
		json_decref(want);
	}
	for (int c = 0; c < 3; c++)
		store_close(st[c]);
	store_close(ro);
	golden_free(evs, n);
	free(done);
}

/* ---- failures ---- */

static void test_reducer_error(void **state)
{
	(void)state;
#if SV_FAULT_INJECTION
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event e[4];
	mkev(&e[0], "{\"id\":\"1-0\",\"run\":\"r\",\"type\":\"response.created\",\"seq\":1}");
	mkev(&e[1], "{\"id\":\"2-0\",\"run\":\"r\",\"type\":\"sv.test.reducer_error\",\"seq\":2}");
	mkev(&e[2], "{\"id\":\"3-0\",\"run\":\"r\",\"type\":\"usage\",\"seq\":3,"
		    "\"data\":{\"input_tokens\":4}}");
	mkev(&e[3], "{\"id\":\"4-0\",\"run\":\"r\",\"type\":\"response.completed\",\"seq\":2}");
	char err[128];
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &e[0]), STORE_OK);
	assert_int_equal(store_apply(s, &e[1], err, sizeof(err)), STORE_REDUCER_ERROR);
	assert_string_equal(err, "injected reducer error");
	assert_int_equal(apply1(s, &e[2]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(count_events(path, "r"), 2);
	struct store_snapshot meta;
	json_t *snap = snapshot(s, "r", &meta);
	assert_int_equal(meta.event_count, 2);
	assert_false(meta.complete); /* seq 2 missing */
	store_snapshot_clear(&meta);
	json_decref(snap);
	/* seq 2 was never stored: a real seq 2 is not a duplicate */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &e[3]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	snap = snapshot(s, "r", &meta);
	assert_true(meta.complete);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(snap, "usage"),
							    "input_tokens")), 4);
	store_snapshot_clear(&meta);
	json_decref(snap);
	for (int i = 0; i < 4; i++)
		event_clear(&e[i]);
	store_close(s);
#else
	skip();
#endif
}

#if SV_FAULT_INJECTION
static void set_fault(const char *name, bool on)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/faults/%s", tmpdir, name);
	if (on) {
		FILE *f = fopen(p, "w");
		assert_non_null(f);
		fclose(f);
	} else {
		unlink(p);
	}
}
#endif

static void test_commit_failure(void **state)
{
	(void)state;
#if SV_FAULT_INJECTION
	char path[512], fdir[600];
	db_path(path, sizeof(path));
	snprintf(fdir, sizeof(fdir), "%s/faults", tmpdir);
	mkdir(fdir, 0700);
	setenv("SV_FAULT_DIR", fdir, 1);
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event *evs;
	long n = gen_runs(&evs, 2, 0, true); /* run by run */
	/* batch 1 commits: run-0's first events (cached) */
	assert_int_equal(store_begin(s), 0);
	for (long i = 0; i < 10; i++)
		assert_int_equal(apply1(s, &evs[i]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	/* batch 2 fails at COMMIT like a full disk */
	set_fault("commit", true);
	assert_int_equal(store_begin(s), 0);
	for (long i = 10; i < n; i++)
		assert_int_equal(apply1(s, &evs[i]), STORE_OK);
	assert_int_equal(store_commit(s), -ENOSPC);
	assert_true(strlen(store_errmsg(s)) > 0);
	/* nothing of batch 2 is there */
	assert_int_equal(count_events(path, "run-0"), 10);
	assert_int_equal(count_events(path, "run-1"), 0);
	struct store_snapshot meta;
	assert_int_equal(store_snapshot_get(s, "run-1", &meta), -ENOENT);
	json_t *snap = snapshot(s, "run-0", &meta);
	assert_int_equal(meta.event_count, 10);
	store_snapshot_clear(&meta);
	json_decref(snap);
	/* still failing while the fault is on */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(apply1(s, &evs[10]), STORE_OK);
	assert_true(store_commit(s) < 0);
	/* the fault is gone: the same batch goes through, correctly */
	set_fault("commit", false);
	assert_int_equal(store_begin(s), 0);
	for (long i = 10; i < n; i++)
		assert_int_equal(apply1(s, &evs[i]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	check_runs(s, evs, n, 2, 0);
	golden_free(evs, n);
	store_close(s);
	unsetenv("SV_FAULT_DIR");
#else
	skip();
#endif
}

static void test_busy(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store_opts o = {.synchronous = SV_SYNC_NORMAL, .busy_timeout_ms = 60};
	struct store *s;
	assert_int_equal(store_open(&s, path, &o), 0);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	int64_t t0 = util_mono_ms();
	assert_int_equal(store_begin(s), -EBUSY);
	assert_true(util_mono_ms() - t0 >= 50);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_commit(s), 0);
	sqlite3_close(db);
	store_close(s);
}

static void test_prune(void **state)
{
	(void)state;
	char path[512];
	db_path(path, sizeof(path));
	struct store *s = open_store(path, REDUCER_RESPONSE);
	struct sv_event e[5];
	mkev(&e[0], "{\"id\":\"1-0\",\"run\":\"done\",\"type\":\"response.created\",\"seq\":1}");
	mkev(&e[1], "{\"id\":\"2-0\",\"run\":\"done\",\"type\":\"response.completed\",\"seq\":3}");
	mkev(&e[2], "{\"id\":\"3-0\",\"run\":\"open\",\"type\":\"response.created\",\"seq\":1}");
	mkev(&e[3], "{\"id\":\"4-0\",\"run\":\"done\",\"type\":\"usage\",\"seq\":2}");
	mkev(&e[4], "{\"id\":\"5-0\",\"run\":\"open\",\"type\":\"usage\",\"seq\":2}");
	assert_int_equal(store_begin(s), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(apply1(s, &e[i]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(store_prune(s, 1), 0); /* nothing that old */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_prune(s, util_wall_ms() + 1000), -EINVAL); /* not inside a batch */
	store_rollback(s);
	assert_int_equal(store_prune(s, util_wall_ms() + 1000), 1);
	assert_int_equal(count_events(path, "done"), 0);
	assert_int_equal(count_events(path, "open"), 1);
	struct store_snapshot meta;
	json_t *snap = snapshot(s, "done", &meta);
	assert_true(meta.archived);
	assert_string_equal(meta.status, "completed");
	assert_int_equal(meta.event_count, 2);
	store_snapshot_clear(&meta);
	json_decref(snap);
	/* a late event for the archived run is refused; others go on */
	char err[64];
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_apply(s, &e[3], err, sizeof(err)), STORE_ARCHIVED);
	assert_string_equal(err, "run archived");
	assert_int_equal(apply1(s, &e[4]), STORE_OK);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(count_events(path, "done"), 0);
	assert_int_equal(store_prune(s, util_wall_ms() + 1000), 0); /* "open" is not terminal */
	for (int i = 0; i < 5; i++)
		event_clear(&e[i]);
	store_close(s);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	const char *seed = getenv("SV_TEST_SEED"); /* to explore other shuffles */
	if (seed && atoi(seed) > 0)
		rng = (uint32_t)atoi(seed);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Workers of a pool open a new file at the same moment: every one must
 * succeed (switching to WAL could refuse the loser at once, without the
 * busy handler).  Children wait on a pipe so they open together. */
static void test_concurrent_first_open(void **state)
{
	(void)state;
	for (int round = 0; round < 30; round++) {
		char path[512];
		db_path(path, sizeof(path));
		int gate[2];
		assert_int_equal(pipe(gate), 0);
		pid_t kids[8];
		for (int k = 0; k < 8; k++) {
			kids[k] = fork();
			assert_true(kids[k] >= 0);
			if (kids[k] == 0) {
				char c;
				close(gate[1]);
				if (read(gate[0], &c, 1) != 0)
					_exit(3);
				struct store_opts o = {.synchronous = SV_SYNC_NORMAL, .busy_timeout_ms = 5000,
						       .reducer = REDUCER_RESPONSE};
				struct store *st;
				int rc = store_open(&st, path, &o);
				if (rc == 0)
					store_close(st);
				_exit(rc == 0 ? 0 : 1);
			}
		}
		close(gate[0]);
		close(gate[1]); /* EOF: all go */
		for (int k = 0; k < 8; k++) {
			int status;
			assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				fail_msg("round %d: child %d could not open the new file (status %d)", round, k, status);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_files_and_modes),
		cmocka_unit_test(test_readonly_and_missing),
		cmocka_unit_test(test_reducer_recorded),
		cmocka_unit_test(test_dedupe),
		cmocka_unit_test(test_conflict_quarantine),
		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_migrate_v2),
		cmocka_unit_test(test_golden_through_store),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_tool_output_checkpoint),
		cmocka_unit_test(test_two_connections),
		cmocka_unit_test(test_stale_untouched_entry),
		cmocka_unit_test(test_many_connections_random),
		cmocka_unit_test(test_checkpoint_interval),
		cmocka_unit_test(test_checkpoint_late),
		cmocka_unit_test(test_checkpoint_recover),
		cmocka_unit_test(test_checkpoint_cache_overflow),
		cmocka_unit_test(test_checkpoint_recover_lease),
		cmocka_unit_test(test_checkpoint_rollback),
		cmocka_unit_test(test_checkpoint_random),
		cmocka_unit_test(test_reducer_error),
		cmocka_unit_test(test_commit_failure),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_concurrent_first_open),
		cmocka_unit_test(test_prune),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
