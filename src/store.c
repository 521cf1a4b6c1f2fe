/* store: the SQLite store of a persistence worker (see store.h). */
#include "config.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "event.h"
#include "fault.h"
#include "jsonenc.h"
#include "log.h"
#include "reducer.h"
#include "util.h"

#define DEFAULT_CACHE 1024
#define DEFAULT_BUSY_MS 5000
#define PRUNE_CHUNK 256
/* A stale entry this few events behind its row catches up by replaying
 * them rather than parsing the row's body. */
#define CATCHUP_MAX 8

/* One run's snapshot, in the cache or in the open transaction. */
struct entry {
	char *run;
	uint64_t hash;
	struct entry *hnext;        /* hash chain */
	struct entry *prev, *next;  /* LRU list, while cached */
	json_t *body;               /* NULL: not loaded yet (use the row's) */
	struct event_key last;      /* last applied event */
	int64_t count;              /* event_count */
	sqlite3_int64 rowid;        /* snapshots row, 0 = none yet */
	/* transaction state */
	bool in_txn, dirty, need_rebuild, archived;
	bool late;                  /* an event of this txn sorts before row_last */
	/* Run lifecycle (schema 3): the row's quarantine flag (a conflicting
	 * duplicate was seen), and the run's forget position, if any: entries
	 * whose logical id sorts before it belong to the forgotten run. */
	bool quarantined, has_tomb;
	uint64_t tomb_ms, tomb_seq;
	uint64_t epoch;             /* when it was last checked or written */
	/* The row (the checkpoint): its position and count (KEY_NONE, 0 when
	 * there is none), and when it was written (CLOCK_MONOTONIC ms). */
	struct event_key row_last;
	int64_t row_count;
	int64_t written_ms;
	bool must_write;            /* write the row in this txn (flush, quarantine) */
	bool was_terminal;          /* terminal when the txn first touched it */
	json_t *base;               /* stale cached state: a rebuild checkpoint */
	struct event_key base_last;
	int64_t base_count;
	/* The state right after the last tool.call applied in place: a rebuild
	 * checkpoint for its tool.output, which sorts right after the call but
	 * usually arrives after later events. */
	json_t *ckpt;
	struct event_key ckpt_last;
	int64_t ckpt_count;
};

enum stmt_id {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_DATA_VERSION,
	ST_INSERT, ST_UNDO_INSERT,
	ST_SNAP_META, ST_SNAP_BODY, ST_SNAP_INSERT, ST_SNAP_UPDATE,
	ST_COUNT_UPTO, ST_COUNT_RUN, ST_REPLAY_SEQ, ST_REPLAY_NOSEQ, ST_GET, ST_BEGIN_READ,
	ST_PRUNE_LIST, ST_PRUNE_EVENTS, ST_PRUNE_EVENTS_NOSEQ, ST_PRUNE_MARK,
	ST_TOMB_ANY, ST_TOMB_GET, ST_TOMB_SET, ST_FORGET_SNAP,
	ST_DUP_SEQ, ST_DUP_CALL, ST_DUP_ORIGIN, ST_QUARANTINE,
	ST_LEASE_RENEW, ST_LEASE_GET, ST_LEASE_SET,
	ST_N
};

static const char *const stmt_sql[ST_N] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	/* changes when another connection commits to the file */
	[ST_DATA_VERSION] = "PRAGMA data_version",
	[ST_INSERT] =
		"INSERT INTO events(run, seq, parent_seq, call_id, stream, entry_ms, entry_seq,"
		" ord_major, ord_minor, type, data, produced_ms, persisted_ms)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
		" ON CONFLICT DO NOTHING",
	[ST_UNDO_INSERT] = "DELETE FROM events WHERE rowid = ?1",
	[ST_SNAP_META] =
		"SELECT rowid, event_count, ord_major, ord_minor, ord_ms, ord_seq, archived,"
		" quarantined, updated_ms FROM snapshots WHERE run = ?1",
	[ST_SNAP_BODY] = "SELECT body FROM snapshots WHERE rowid = ?1",
	[ST_SNAP_INSERT] =
		"INSERT INTO snapshots(status, complete, body, event_count, last_seq, updated_ms,"
		" ord_major, ord_minor, ord_ms, ord_seq, run, quarantined)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_SNAP_UPDATE] =
		"UPDATE snapshots SET status = ?1, complete = ?2, body = ?3, event_count = ?4,"
		" last_seq = ?5, updated_ms = ?6, ord_major = ?7, ord_minor = ?8, ord_ms = ?9,"
		" ord_seq = ?10 WHERE rowid = ?11",
	/* Each query on a run's events has one half per partial index (rows
	 * with seq, rows without).  For rows with seq the order key is
	 * (seq, 0, id) and seq is unique, so "key <= K" is "seq <= K.major" and
	 * "key > K" is "seq > K.major" for any K that is an event's key. */
	[ST_COUNT_UPTO] =
		"SELECT (SELECT count(*) FROM events WHERE run = ?1 AND seq IS NOT NULL AND seq <= ?2)"
		" + (SELECT count(*) FROM events WHERE run = ?1 AND seq IS NULL"
		"  AND (ord_major, ord_minor, entry_ms, entry_seq) <= (?2, ?3, ?4, ?5))",
	/* every stored event of the run: equal to a cached count, the cached
	 * state is current (events are only ever added) */
	[ST_COUNT_RUN] =
		"SELECT (SELECT count(*) FROM events WHERE run = ?1 AND seq IS NOT NULL)"
		" + (SELECT count(*) FROM events WHERE run = ?1 AND seq IS NULL)",
	[ST_REPLAY_SEQ] =
		"SELECT type, seq, parent_seq, call_id, stream, entry_ms, entry_seq, ord_major,"
		" ord_minor, data, produced_ms FROM events WHERE run = ?1 AND seq IS NOT NULL"
		" AND seq > ?2 ORDER BY seq",
	[ST_REPLAY_NOSEQ] =
		"SELECT type, seq, parent_seq, call_id, stream, entry_ms, entry_seq, ord_major,"
		" ord_minor, data, produced_ms FROM events WHERE run = ?1 AND seq IS NULL"
		" AND (ord_major, ord_minor, entry_ms, entry_seq) > (?2, ?3, ?4, ?5)"
		" ORDER BY ord_major, ord_minor, entry_ms, entry_seq",
	[ST_GET] =
		"SELECT body, status, complete, archived, event_count, last_seq, updated_ms,"
		" ord_major, ord_minor, ord_ms, ord_seq FROM snapshots WHERE run = ?1",
	/* a read transaction: one snapshot of the file for a row and its tail */
	[ST_BEGIN_READ] = "BEGIN",
	[ST_PRUNE_LIST] =
		"SELECT rowid, run FROM snapshots WHERE archived = 0"
		" AND status IN ('completed', 'failed', 'cancelled') AND updated_ms < ?1 LIMIT ?2",
	[ST_PRUNE_EVENTS] = "DELETE FROM events WHERE run = ?1 AND seq IS NOT NULL",
	[ST_PRUNE_EVENTS_NOSEQ] = "DELETE FROM events WHERE run = ?1 AND seq IS NULL",
	[ST_PRUNE_MARK] = "UPDATE snapshots SET archived = 1 WHERE rowid = ?1",
	/* Run lifecycle (schema 3). */
	[ST_TOMB_ANY] = "SELECT EXISTS (SELECT 1 FROM forgotten)",
	[ST_TOMB_GET] = "SELECT pos_ms, pos_seq FROM forgotten WHERE run = ?1",
	/* A later forget of the same run moves its position on, never back. */
	[ST_TOMB_SET] =
		"INSERT INTO forgotten(run, pos_ms, pos_seq, forgotten_ms) VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT(run) DO UPDATE SET pos_ms = excluded.pos_ms, pos_seq = excluded.pos_seq,"
		" forgotten_ms = excluded.forgotten_ms"
		" WHERE (excluded.pos_ms, excluded.pos_seq) > (pos_ms, pos_seq)",
	[ST_FORGET_SNAP] = "DELETE FROM snapshots WHERE run = ?1",
	/* The stored event a duplicate collided with, per dedupe key. */
	[ST_DUP_SEQ] = "SELECT type, data FROM events WHERE run = ?1 AND seq = ?2",
	[ST_DUP_CALL] =
		"SELECT stream, entry_ms, entry_seq FROM events WHERE run = ?1 AND call_id = ?2"
		" AND seq IS NULL AND type = 'tool.output'",
	[ST_DUP_ORIGIN] =
		"SELECT 1 FROM events WHERE stream = ?1 AND entry_ms = ?2 AND entry_seq = ?3"
		" AND seq IS NULL AND (type <> 'tool.output' OR call_id IS NULL)",
	[ST_QUARANTINE] = "UPDATE snapshots SET quarantined = 1 WHERE run = ?1",
	/* The writer lease (schema 4, see store_lease_take). */
	[ST_LEASE_RENEW] = "UPDATE lease SET expires_ms = ?2 WHERE id = 1 AND holder = ?1",
	[ST_LEASE_GET] = "SELECT holder, expires_ms FROM lease WHERE id = 1",
	[ST_LEASE_SET] =
		"INSERT INTO lease(id, holder, expires_ms) VALUES (1, ?1, ?2)"
		" ON CONFLICT(id) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
};

/* Schema migrations: migrations[v] takes user_version v to v + 1. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
	"CREATE TABLE events("
	"  run TEXT NOT NULL, seq INTEGER, parent_seq INTEGER, call_id TEXT,"
	"  stream TEXT NOT NULL, entry_ms INTEGER NOT NULL, entry_seq INTEGER NOT NULL,"
	"  ord_major INTEGER NOT NULL, ord_minor INTEGER NOT NULL,"
	"  type TEXT NOT NULL, data TEXT, produced_ms INTEGER, persisted_ms INTEGER NOT NULL);"
	/* (run, seq): the dedupe key of events with seq, and their order */
	"CREATE UNIQUE INDEX events_seq ON events(run, seq) WHERE seq IS NOT NULL;"
	/* the order of the other events of a run */
	"CREATE INDEX events_noseq ON events(run, ord_major, ord_minor, entry_ms, entry_seq)"
	"  WHERE seq IS NULL;"
	"CREATE UNIQUE INDEX events_dedupe_call ON events(run, call_id)"
	"  WHERE seq IS NULL AND type = 'tool.output' AND call_id IS NOT NULL;"
	"CREATE UNIQUE INDEX events_dedupe_origin ON events(stream, entry_ms, entry_seq)"
	"  WHERE seq IS NULL AND (type <> 'tool.output' OR call_id IS NULL);"
	"CREATE TABLE snapshots("
	"  run TEXT PRIMARY KEY NOT NULL, status TEXT, complete INTEGER NOT NULL DEFAULT 0,"
	"  body TEXT NOT NULL, event_count INTEGER NOT NULL, last_seq INTEGER NOT NULL,"
	"  updated_ms INTEGER NOT NULL, ord_major INTEGER NOT NULL, ord_minor INTEGER NOT NULL,"
	"  ord_ms INTEGER NOT NULL, ord_seq INTEGER NOT NULL,"
	"  archived INTEGER NOT NULL DEFAULT 0);",
	/* 2: which reducer writes the file (STORE_META_*), so a reader can
	 * reduce stored events the way the writer did. */
	"CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;",
	/* 3: the run lifecycle.  A run with a conflicting duplicate is
	 * quarantined until it is forgotten; forgotten holds each forgotten
	 * run's forget position (an entry id), so entries of the old run still
	 * in a stream are never stored again. */
	"ALTER TABLE snapshots ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE forgotten(run TEXT PRIMARY KEY NOT NULL, pos_ms INTEGER NOT NULL,"
	"  pos_seq INTEGER NOT NULL, forgotten_ms INTEGER NOT NULL) WITHOUT ROWID;",
	/* 4: the writer lease (issue 14): one row naming the connection that
	 * may commit batches, until expires_ms (CLOCK_MONOTONIC: WAL needs
	 * every connection on one host, so they share the clock).  An instant
	 * migration: no table is rewritten. */
	"CREATE TABLE lease(id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL,"
	"  expires_ms INTEGER NOT NULL);",
};

struct store {
	sqlite3 *db;
	char *path;
	enum reducer_kind kind;
	bool readonly;
	bool no_schema;             /* read-only open of a file without tables yet */
	int64_t interval_ms;        /* snapshot_interval_ms */
	/* Rows a dead writer left behind (take_recent): pending since this
	 * connection became the writer (store_open without a lease, or the
	 * lease taken); anchored at the first transaction after that (the
	 * events before recover_rowid are the previous writer's), done by a
	 * store_flush, or by a batch commit from recover_at_ms on. */
	bool recover, had_lease, recover_taken;
	/* Runs whose row was behind when a rollback dropped their state: the
	 * next transaction catches them up and writes their rows (at most
	 * ORPHANS_MAX; beyond, their next user or a recovery does). */
	char **orphans;
	size_t norphans;
	sqlite3_int64 recover_rowid; /* 0: not anchored yet */
	int64_t recover_at_ms;
	int64_t busy_timeout_ms, busy_start_ms;
	sqlite3_stmt *st[ST_N];

	/* cache: hash table of every entry, LRU list of those not in the txn */
	struct entry **buckets;
	size_t nbuckets, nentries, ncached, cache_cap;
	struct entry *lru_head, *lru_tail;

	/* the open transaction */
	bool in_txn;
	int64_t txn_ms;
	/* PRAGMA data_version when the last transaction began.  A new epoch
	 * starts whenever it changed (another connection committed) or is
	 * unknown (after a rollback); an entry validated or written in the
	 * current epoch needs no new check against its row. */
	int64_t data_version;
	bool dv_known;
	/* The forgotten table has rows (checked once per epoch): without any,
	 * no run needs a tombstone lookup. */
	bool have_tombs;
	uint64_t epoch;
	struct entry **touched;
	size_t ntouched, touched_cap;

	/* The writer lease, while held (store_lease_take): every batch
	 * commit checks and extends it inside its transaction. */
	char *lease_holder;
	int64_t lease_ttl_ms;

	struct jsonenc enc; /* serialization buffer */
	struct store_stats stats;
	char errmsg[256];
};

static const struct event_key KEY_NONE = {.major = -1};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- errors ---- */

static int errno_of(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EILSEQ;
	default:
		return -EIO;
	}
}

static void set_err(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
}

/* Record and log an SQLite failure; returns the negative errno. */
static int sql_fail(struct store *s, int rc, const char *what)
{
	set_err(s, "sqlite %s: %s", what, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
	log_kv(LOG_ERROR, KV("path", s->path), "%s", s->errmsg);
	int e = errno_of(rc);
	return e ? e : -EIO;
}

const char *store_errmsg(const struct store *s)
{
	return s->errmsg;
}

void store_stats(const struct store *s, struct store_stats *out)
{
	*out = s->stats;
}

/* Run a cached statement that returns no rows. */
static int exec_st(struct store *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->st[id];
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_fail(s, rc, stmt_sql[id]);
	return 0;
}

static int exec_sql(struct store *s, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		set_err(s, "sqlite %.60s: %s", sql, msg ? msg : sqlite3_errstr(rc));
		log_kv(LOG_ERROR, KV("path", s->path), "%s", s->errmsg);
		sqlite3_free(msg);
		int e = errno_of(rc);
		return e ? e : -EIO;
	}
	return 0;
}

/* One wait of a busy loop: 1, 2, 4, 8 ms, then 10 ms each. */
static void busy_sleep(int n)
{
	util_sleep_ms(n < 4 ? 1 << n : 10, NULL);
}

/* exec_sql for idempotent statements that may meet SQLITE_BUSY without
 * SQLite calling the busy handler: two workers opening a new file at
 * once both switch it to WAL, and the loser is refused at once.  Retried
 * quietly for up to busy_timeout_ms. */
static int exec_sql_retry(struct store *s, const char *sql)
{
	int64_t until = util_mono_ms() + s->busy_timeout_ms;
	for (int n = 0;; n++) {
		int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			return 0;
		if (errno_of(rc) != -EBUSY || util_mono_ms() >= until)
			return exec_sql(s, sql); /* once more, reporting the error */
		busy_sleep(n);
	}
}

/* ---- fault seam: a VFS whose writes fail while armed ---- */

#if SV_FAULT_INJECTION
#define FAULT_VFS "sv-fault"
static bool fault_armed;

struct fault_file {
	sqlite3_file base;
	sqlite3_file *real;  /* follows this struct in the same allocation */
};

#define REAL(f) (((struct fault_file *)(f))->real)
static int ff_close(sqlite3_file *f)
{
	int rc = REAL(f)->pMethods->xClose(REAL(f));
	return rc;
}
static int ff_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int ff_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	if (fault_armed)
		return SQLITE_FULL;
	return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int ff_sync(sqlite3_file *f, int flags)
{
	if (fault_armed)
		return SQLITE_IOERR_FSYNC;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int ff_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int ff_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int ff_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int ff_check(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int ff_fcntl(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int ff_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int ff_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int ff_shmmap(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int ff_shmlock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void ff_shmbarrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int ff_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int ff_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int ff_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}
#undef REAL

static const sqlite3_io_methods fault_io = {
	.iVersion = 3,
	.xClose = ff_close, .xRead = ff_read, .xWrite = ff_write, .xTruncate = ff_truncate,
	.xSync = ff_sync, .xFileSize = ff_size, .xLock = ff_lock, .xUnlock = ff_unlock,
	.xCheckReservedLock = ff_check, .xFileControl = ff_fcntl, .xSectorSize = ff_sector,
	.xDeviceCharacteristics = ff_devchar, .xShmMap = ff_shmmap, .xShmLock = ff_shmlock,
	.xShmBarrier = ff_shmbarrier, .xShmUnmap = ff_shmunmap, .xFetch = ff_fetch,
	.xUnfetch = ff_unfetch,
};

static sqlite3_vfs fault_vfs;

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	sqlite3_vfs *real = vfs->pAppData;
	struct fault_file *ff = (struct fault_file *)f;
	ff->real = (sqlite3_file *)(ff + 1);
	int rc = real->xOpen(real, name, ff->real, flags, out);
	/* Only a file the real VFS opened gets methods (SQLite closes it then). */
	ff->base.pMethods = ff->real->pMethods ? &fault_io : NULL;
	return rc;
}
#define RV(v) ((sqlite3_vfs *)(v)->pAppData)
static int fv_delete(sqlite3_vfs *v, const char *n, int sync) { return RV(v)->xDelete(RV(v), n, sync); }
static int fv_access(sqlite3_vfs *v, const char *n, int fl, int *out) { return RV(v)->xAccess(RV(v), n, fl, out); }
static int fv_full(sqlite3_vfs *v, const char *n, int len, char *out) { return RV(v)->xFullPathname(RV(v), n, len, out); }
static void *fv_dlopen(sqlite3_vfs *v, const char *n) { return RV(v)->xDlOpen(RV(v), n); }
static void fv_dlerror(sqlite3_vfs *v, int n, char *m) { RV(v)->xDlError(RV(v), n, m); }
static void (*fv_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) { return RV(v)->xDlSym(RV(v), h, sym); }
static void fv_dlclose(sqlite3_vfs *v, void *h) { RV(v)->xDlClose(RV(v), h); }
static int fv_random(sqlite3_vfs *v, int n, char *out) { return RV(v)->xRandomness(RV(v), n, out); }
static int fv_sleep(sqlite3_vfs *v, int us) { return RV(v)->xSleep(RV(v), us); }
static int fv_time(sqlite3_vfs *v, double *t) { return RV(v)->xCurrentTime(RV(v), t); }
static int fv_lasterr(sqlite3_vfs *v, int n, char *m) { return RV(v)->xGetLastError(RV(v), n, m); }
static int fv_time64(sqlite3_vfs *v, sqlite3_int64 *t) { return RV(v)->xCurrentTimeInt64(RV(v), t); }
#undef RV

static const char *fault_vfs_name(void)
{
	if (!fault_vfs.zName) {
		sqlite3_vfs *real = sqlite3_vfs_find(NULL);
		if (!real || real->iVersion < 2)
			return NULL;
		fault_vfs = (sqlite3_vfs){
			.iVersion = 2,
			.szOsFile = (int)sizeof(struct fault_file) + real->szOsFile,
			.mxPathname = real->mxPathname,
			.zName = FAULT_VFS,
			.pAppData = real,
			.xOpen = fv_open, .xDelete = fv_delete, .xAccess = fv_access,
			.xFullPathname = fv_full, .xDlOpen = fv_dlopen, .xDlError = fv_dlerror,
			.xDlSym = fv_dlsym, .xDlClose = fv_dlclose, .xRandomness = fv_random,
			.xSleep = fv_sleep, .xCurrentTime = fv_time, .xGetLastError = fv_lasterr,
			.xCurrentTimeInt64 = fv_time64,
		};
		if (sqlite3_vfs_register(&fault_vfs, 0) != SQLITE_OK) {
			fault_vfs.zName = NULL;
			return NULL;
		}
	}
	return FAULT_VFS;
}
#endif

/* ---- cache ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct entry *cache_find(struct store *s, const char *run, uint64_t h)
{
	for (struct entry *e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && strcmp(e->run, run) == 0)
			return e;
	return NULL;
}

static int cache_grow(struct store *s)
{
	size_t n = s->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i], *next;
		for (; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
	return 0;
}

static struct entry *cache_add(struct store *s, const char *run, uint64_t h)
{
	if (s->nentries >= s->nbuckets && cache_grow(s) < 0)
		return NULL;
	struct entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->run = strdup(run))) {
		free(e);
		return NULL;
	}
	e->hash = h;
	e->last = KEY_NONE;
	e->hnext = s->buckets[h & (s->nbuckets - 1)];
	s->buckets[h & (s->nbuckets - 1)] = e;
	s->nentries++;
	return e;
}

static void lru_unlink(struct store *s, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->lru_tail = e->prev;
	e->prev = e->next = NULL;
	s->ncached--;
}

static void lru_push(struct store *s, struct entry *e)
{
	e->prev = NULL;
	e->next = s->lru_head;
	if (s->lru_head)
		s->lru_head->prev = e;
	else
		s->lru_tail = e;
	s->lru_head = e;
	s->ncached++;
}

/* Remove e from the hash table (and the LRU when cached) and free it. */
static void cache_drop(struct store *s, struct entry *e)
{
	struct entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	s->nentries--;
	if (!e->in_txn)
		lru_unlink(s, e);
	json_decref(e->body);
	json_decref(e->base);
	json_decref(e->ckpt);
	free(e->run);
	free(e);
}

/* ---- files ---- */

static int mkdir_p(char *dir, mode_t mode)
{
	if (mkdir(dir, mode) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -errno;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return -ENOENT;
	*slash = '\0';
	int rc = mkdir_p(dir, mode);
	*slash = '/';
	if (rc < 0)
		return rc;
	return mkdir(dir, mode) == 0 || errno == EEXIST ? 0 : -errno;
}

static int lookup_group(struct store *s, const char *group, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[4096];
	int rc = getgrnam_r(group, &gr, buf, sizeof(buf), &res);
	if (!res) {
		set_err(s, "unknown group %s", group);
		log_error("%s", s->errmsg);
		return rc ? -rc : -ENOENT;
	}
	*gid = gr.gr_gid;
	return 0;
}

/* Create the directory and the database file with no permissions for
 * others, owned by group when given. */
static int prepare_files(struct store *s, const char *path, const char *group)
{
	gid_t gid = (gid_t)-1;
	int rc;
	if (group && *group && (rc = lookup_group(s, group, &gid)) < 0)
		return rc;

	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	char *dir = dirname(copy);
	struct stat st;
	if (stat(dir, &st) < 0) {
		rc = errno == ENOENT ? mkdir_p(dir, 0750) : -errno;
		if (rc < 0) {
			set_err(s, "cannot create %s: %s", dir, strerror(-rc));
			log_error("%s", s->errmsg);
			free(copy);
			return rc;
		}
		/* New directory: exact mode whatever the umask; setgid keeps the
		 * group on the -wal and -shm files SQLite creates later. */
		if ((gid != (gid_t)-1 && chown(dir, (uid_t)-1, gid) < 0) ||
		    chmod(dir, gid != (gid_t)-1 ? 02750 : 0750) < 0) {
			rc = -errno;
			set_err(s, "cannot set owner or mode of %s: %s", dir, strerror(errno));
			log_error("%s", s->errmsg);
			free(copy);
			return rc;
		}
	}
	free(copy);

	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd >= 0) {
		rc = (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) < 0) || fchmod(fd, 0640) < 0
			? -errno : 0;
		close(fd);
	} else if (errno == EEXIST) {
		rc = 0;
		if (stat(path, &st) == 0) {
			if ((st.st_mode & 07) && chmod(path, st.st_mode & 07770) < 0)
				rc = -errno;
			if (rc == 0 && gid != (gid_t)-1 && st.st_gid != gid &&
			    chown(path, (uid_t)-1, gid) < 0)
				rc = -errno;
		}
	} else {
		rc = -errno;
	}
	if (rc < 0) {
		set_err(s, "cannot create %s: %s", path, strerror(-rc));
		log_error("%s", s->errmsg);
	}
	return rc;
}

/* The -wal and -shm files exist once the database was written: give them
 * the group too (the database's mode they already have from SQLite). */
static void chown_sidecars(const char *path, const char *group, struct store *s)
{
	gid_t gid = 0; /* set by lookup_group on success */
	if (!group || !*group || lookup_group(s, group, &gid) < 0)
		return;
	static const char *const suffix[] = {"-wal", "-shm"};
	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		if (chown(p, (uid_t)-1, gid) < 0 && errno != ENOENT)
			log_warn("cannot chown %s to group %s: %s", p, group, strerror(errno));
	}
}

/* ---- open / close ---- */

static int busy_handler(void *arg, int n)
{
	struct store *s = arg;
	int64_t now = util_mono_ms();
	if (n == 0)
		s->busy_start_ms = now;
	if (now - s->busy_start_ms >= s->busy_timeout_ms)
		return 0;
	busy_sleep(n);
	return 1;
}

static int query_int(struct store *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return sql_fail(s, rc, sql);
	return 0;
}

struct migrate_tick {
	void (*tick)(void *arg);
	void *arg;
	int64_t next_ms;
};

/* sqlite3_progress_handler: every few thousand VM steps of a migration. */
static int migrate_progress(void *arg)
{
	struct migrate_tick *t = arg;
	int64_t now = util_mono_ms();
	if (now >= t->next_ms) {
		t->next_ms = now + 100;
		t->tick(t->arg);
	}
	return 0; /* go on */
}

static int migrate_steps(struct store *s, int64_t v);

static int migrate(struct store *s, const struct store_opts *opts)
{
	struct migrate_tick t = {.tick = opts->tick, .arg = opts->tick_arg};
	if (opts->tick)
		sqlite3_progress_handler(s->db, 10000, migrate_progress, &t);
	int rc = migrate_steps(s, 0);
	sqlite3_progress_handler(s->db, 0, NULL, NULL);
	return rc;
}

static int migrate_steps(struct store *s, int64_t v)
{
	int rc = query_int(s, "PRAGMA user_version", &v);
	if (rc < 0 || v == STORE_SCHEMA_VERSION)
		return rc;
	/* A reader takes an older schema as it is: every version has the
	 * snapshots table, and a missing meta table means "unknown". */
	if (s->readonly && v >= 1 && v < STORE_SCHEMA_VERSION)
		return 0;
	/* A writer creates the tables in one transaction: none yet, nothing
	 * stored yet. */
	if (s->readonly && v == 0) {
		s->no_schema = true;
		return 0;
	}
	if (v > STORE_SCHEMA_VERSION || v < 0 || s->readonly) {
		set_err(s, "%s: schema version %lld, this build knows %d", s->path, (long long)v,
			STORE_SCHEMA_VERSION);
		log_error("%s", s->errmsg);
		return -EPROTO;
	}
	if ((rc = exec_sql(s, "BEGIN IMMEDIATE")) < 0)
		return rc;
	if ((rc = query_int(s, "PRAGMA user_version", &v)) < 0)
		goto fail;
	for (; v < STORE_SCHEMA_VERSION; v++) {
		if ((rc = exec_sql(s, migrations[v])) < 0)
			goto fail;
		log_info("%s: migrated schema to version %lld", s->path, (long long)v + 1);
	}
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	if ((rc = exec_sql(s, sql)) < 0 || (rc = exec_sql(s, "COMMIT")) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* meta[key], or "" when there is no such row. */
static int meta_get(struct store *s, const char *key, char *val, size_t len)
{
	sqlite3_stmt *st;
	const char *sql = "SELECT value FROM meta WHERE key = ?1";
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, sql);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	const unsigned char *t = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
	snprintf(val, len, "%s", t ? (const char *)t : "");
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(s, rc, sql);
	return 0;
}

static int meta_set(struct store *s, const char *key, const char *val)
{
	sqlite3_stmt *st;
	const char *sql = "INSERT INTO meta(key, value) VALUES (?1, ?2)"
			  " ON CONFLICT(key) DO UPDATE SET value = excluded.value";
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, sql);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, val, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_fail(s, rc, sql);
}

/* Record this writer's reducer in the file (STORE_META_*).  Read first:
 * every worker opens the file, and only a change needs the write lock. */
static int record_reducer(struct store *s)
{
	char name[64], version[32], want_version[32];
	const char *want = reducer_kind_name(s->kind);
	snprintf(want_version, sizeof(want_version), "%d", reducer_version(s->kind));
	int rc = meta_get(s, STORE_META_REDUCER, name, sizeof(name));
	if (rc == 0)
		rc = meta_get(s, STORE_META_REDUCER_VERSION, version, sizeof(version));
	if (rc < 0 || (strcmp(name, want) == 0 && strcmp(version, want_version) == 0))
		return rc;
	if ((rc = exec_sql(s, "BEGIN IMMEDIATE")) < 0)
		return rc;
	if ((rc = meta_set(s, STORE_META_REDUCER, want)) < 0 ||
	    (rc = meta_set(s, STORE_META_REDUCER_VERSION, want_version)) < 0 ||
	    (rc = exec_sql(s, "COMMIT")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	/* Snapshots already stored keep the shape the old reducer gave them. */
	if (name[0])
		log_warn("%s: was written by reducer %s version %s, now by %s version %s", s->path, name,
			 version[0] ? version : "?", want, want_version);
	return 0;
}

/* A reader reduces tails with the reducer that wrote the file, when the
 * file says (schema 2), else with opts->reducer. */
static int reader_kind(struct store *s)
{
	int64_t has_meta;
	char name[64];
	int rc = query_int(s, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
			   &has_meta);
	if (rc < 0 || !has_meta || (rc = meta_get(s, STORE_META_REDUCER, name, sizeof(name))) < 0)
		return rc;
	static const enum reducer_kind kinds[] = {REDUCER_RESPONSE, REDUCER_MERGE};
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (strcmp(name, reducer_kind_name(kinds[i])) == 0)
			s->kind = kinds[i];
	return 0;
}

/* Prepare the statements (a reader's: it reads rows and reduces their
 * tails, nothing else). */
static int prepare_all(struct store *s)
{
	int rc;
	if (s->readonly && (rc = reader_kind(s)) < 0)
		return rc;
	for (int i = 0; i < ST_N; i++) {
		if (s->readonly && i != ST_GET && i != ST_BEGIN_READ && i != ST_COMMIT && i != ST_ROLLBACK &&
		    i != ST_REPLAY_SEQ && i != ST_REPLAY_NOSEQ)
			continue;
		if (s->st[i])
			continue; /* a retry after a failure */
		rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
		if (rc != SQLITE_OK)
			return sql_fail(s, rc, stmt_sql[i]);
	}
	return 0;
}

int store_open(struct store **out, const char *path, const struct store_opts *opts)
{
	struct store *s = calloc(1, sizeof(*s));
	int rc;
	*out = NULL;
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return -ENOMEM;
	}
	s->kind = opts->reducer;
	s->readonly = opts->readonly;
	s->interval_ms = opts->snapshot_interval_ms > 0 ? opts->snapshot_interval_ms : 0;
	s->recover = !s->readonly;
	s->busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : DEFAULT_BUSY_MS;
	s->cache_cap = opts->cache_entries ? opts->cache_entries : DEFAULT_CACHE;
	s->nbuckets = 64;
	while (s->nbuckets < s->cache_cap)
		s->nbuckets *= 2;
	if (!(s->buckets = calloc(s->nbuckets, sizeof(*s->buckets)))) {
		rc = -ENOMEM;
		goto fail;
	}

	bool in_memory = strcmp(path, ":memory:") == 0 || *path == '\0';
	if (!s->readonly && !in_memory && (rc = prepare_files(s, path, opts->group)) < 0)
		goto fail;

	const char *vfs = NULL;
#if SV_FAULT_INJECTION
	vfs = fault_vfs_name();
#endif
	int flags = (s->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
		    SQLITE_OPEN_NOMUTEX;
	rc = sqlite3_open_v2(path, &s->db, flags, vfs);
	if (rc != SQLITE_OK) {
		rc = sql_fail(s, rc, "open");
		goto fail;
	}
	sqlite3_busy_handler(s->db, busy_handler, s);

	/* 8 KiB pages (new files only: WAL fixes the page size): half the
	 * WAL frames, so half the pwrite calls, per commit of ~200 touched
	 * snapshots; +10% events/s.  A checkpoint every 1024 pages (8 MiB)
	 * keeps the one that lands inside a batch short (p99 at 10k/s with
	 * synchronous NORMAL 57 -> 25 ms).  tools/bench.sh measures both. */
	char pragmas[320];
	snprintf(pragmas, sizeof(pragmas),
		 "PRAGMA page_size = 8192; %s PRAGMA synchronous = %s; PRAGMA foreign_keys = OFF;"
		 " PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;"
		 " PRAGMA wal_autocheckpoint = 1024; PRAGMA secure_delete = FAST;",
		 s->readonly ? "" : "PRAGMA journal_mode = WAL;",
		 opts->synchronous == SV_SYNC_NORMAL ? "NORMAL" : "FULL");
	if ((rc = exec_sql_retry(s, pragmas)) < 0 || (rc = migrate(s, opts)) < 0)
		goto fail;
	if (!s->readonly && (rc = record_reducer(s)) < 0)
		goto fail;
	if (!s->readonly && !in_memory)
		chown_sidecars(path, opts->group, s);

	if (!s->no_schema && (rc = prepare_all(s)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->in_txn)
		store_rollback(s);
	for (size_t i = 0; i < s->nbuckets && s->buckets; i++) {
		struct entry *e = s->buckets[i], *next;
		for (; e; e = next) {
			next = e->hnext;
			json_decref(e->body);
			json_decref(e->base);
			json_decref(e->ckpt);
			free(e->run);
			free(e);
		}
	}
	for (int i = 0; i < ST_N; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s->buckets);
	free(s->touched);
	for (size_t i = 0; i < s->norphans; i++)
		free(s->orphans[i]);
	free(s->orphans);
	jsonenc_free(&s->enc);
	free(s->lease_holder);
	free(s->path);
	free(s);
}

/* ---- transactions ---- */

/* Refresh s->have_tombs. */
static int tombs_any(struct store *s)
{
	sqlite3_stmt *st = s->st[ST_TOMB_ANY];
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		s->have_tombs = sqlite3_column_int(st, 0) != 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sql_fail(s, rc, stmt_sql[ST_TOMB_ANY]);
}

/* The run's forget position, into e->has_tomb/tomb_*. */
static int load_tomb(struct store *s, struct entry *e)
{
	e->has_tomb = false;
	if (!s->have_tombs)
		return 0;
	sqlite3_stmt *st = s->st[ST_TOMB_GET];
	sqlite3_bind_text(st, 1, e->run, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		e->has_tomb = true;
		e->tomb_ms = (uint64_t)sqlite3_column_int64(st, 0);
		e->tomb_seq = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, rc, stmt_sql[ST_TOMB_GET]);
}

/* A writer that died (SIGKILL) or was stopped past its lease left the
 * rows of its runs behind, with the state that would catch them up gone
 * with it (take_recent).  Pending from the moment this connection became
 * the writer; anchored at its first transaction: the events before it are
 * the previous writer's.  Done RECOVER_DELAY_MS later (store_flush, or a
 * batch commit under load), so the entries a takeover claims are stored
 * first. */
#define RECOVER_DELAY_MS 100
static int recover_anchor(struct store *s)
{
	bool held = s->lease_holder != NULL;
	if (held && !s->had_lease) {
		s->recover = true;
		s->recover_rowid = 0;
	}
	s->had_lease = held;
	if (!s->recover || s->recover_rowid)
		return 0;
	int64_t top;
	int rc = query_int(s, "SELECT coalesce(max(rowid), 0) FROM events", &top);
	if (rc < 0)
		return rc;
	s->recover_rowid = top + 1;
	s->recover_at_ms = util_mono_ms() + RECOVER_DELAY_MS;
	if (!top)
		s->recover = false; /* nothing stored: nothing left behind */
	return 0;
}

int store_begin(struct store *s)
{
	if (s->in_txn || s->readonly) {
		set_err(s, "store_begin: %s", s->readonly ? "read-only" : "transaction already open");
		return -EINVAL;
	}
	int rc = exec_st(s, ST_BEGIN);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = s->st[ST_DATA_VERSION];
	rc = sqlite3_step(st);
	int64_t dv = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW) {
		rc = sql_fail(s, rc, stmt_sql[ST_DATA_VERSION]);
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	if (!s->dv_known || dv != s->data_version) {
		s->epoch++;
		/* Another connection may have applied a forget. */
		if ((rc = tombs_any(s)) < 0) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
	}
	s->data_version = dv;
	s->dv_known = true;
	if ((rc = recover_anchor(s)) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	s->in_txn = true;
	s->txn_ms = util_wall_ms();
	s->ntouched = 0;
	return 0;
}

/* End of a transaction for every touched entry: back into the cache
 * (commit) or freed (rollback, or nothing worth caching). */
#define ORPHANS_MAX 4096
static bool behind(const struct entry *e);

static void orphan_add(struct store *s, const char *run)
{
	if (s->norphans == ORPHANS_MAX)
		return;
	if (!s->orphans && !(s->orphans = calloc(ORPHANS_MAX, sizeof(*s->orphans))))
		return;
	if ((s->orphans[s->norphans] = strdup(run)))
		s->norphans++;
}

static void txn_finish(struct store *s, bool committed)
{
	for (size_t i = 0; i < s->ntouched; i++) {
		struct entry *e = s->touched[i];
		json_decref(e->base);
		e->base = NULL;
		if (!committed || e->archived || !e->body || e->need_rebuild) {
			/* A row behind loses the state that would catch it up. */
			if (!committed && (behind(e) || e->dirty) && !e->archived)
				orphan_add(s, e->run);
			cache_drop(s, e);
			continue;
		}
		e->in_txn = e->dirty = false;
		e->epoch = s->epoch;
		lru_push(s, e);
	}
	s->ntouched = 0;
	s->in_txn = false;
	while (s->ncached > s->cache_cap && s->lru_tail)
		cache_drop(s, s->lru_tail);
}

void store_rollback(struct store *s)
{
	if (s->db && !sqlite3_get_autocommit(s->db)) {
		/* After some errors SQLite has rolled back already; harmless. */
		sqlite3_stmt *st = s->st[ST_ROLLBACK];
		if (st) {
			sqlite3_step(st);
			sqlite3_reset(st);
		} else {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	s->dv_known = false;
	s->recover_taken = false;
	if (s->in_txn)
		txn_finish(s, false);
}

static void key_of_row(sqlite3_stmt *st, int col, struct event_key *k)
{
	k->major = sqlite3_column_int64(st, col);
	k->minor = sqlite3_column_int64(st, col + 1);
	k->ms = (uint64_t)sqlite3_column_int64(st, col + 2);
	k->seq = (uint64_t)sqlite3_column_int64(st, col + 3);
}

static void bind_key(sqlite3_stmt *st, int col, const struct event_key *k)
{
	sqlite3_bind_int64(st, col, k->major);
	sqlite3_bind_int64(st, col + 1, k->minor);
	sqlite3_bind_int64(st, col + 2, (sqlite3_int64)k->ms);
	sqlite3_bind_int64(st, col + 3, (sqlite3_int64)k->seq);
}

static json_t *parse_body(const void *text, size_t len)
{
	json_t *j = text ? json_loadb(text, len, JSON_ALLOW_NUL, NULL) : NULL;
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static int rebuild(struct store *s, struct entry *e);
static int count_run(struct store *s, const char *run, int64_t *n);

/* The run is behind: its row does not hold its current state. */
static bool behind(const struct entry *e)
{
	if (e->archived || !e->body)
		return false;
	if (!e->rowid)
		return e->count > 0 || e->quarantined;
	return e->count != e->row_count || event_key_cmp(&e->last, &e->row_last) != 0;
}

/* An entry not checked in this epoch (or new): make e->body the reducer
 * over every stored event of the run.  The cached state, when the run's
 * stored event count equals its count, is current; else catch up from the
 * newest valid prefix (rebuild: the cached state or the row, each checked
 * against the count of stored events up to its position) on the events
 * after it. */
static int catch_up(struct store *s, struct entry *e)
{
	int64_t n;
	int rc;
	if (e->body) {
		if ((rc = count_run(s, e->run, &n)) < 0)
			return rc;
		if (n == e->count) {
			s->stats.cache_hits++;
			return 0;
		}
		/* Another connection added events: the cached state may still
		 * serve as the starting point. */
		s->stats.cache_stale++;
		json_decref(e->base);
		e->base = e->body;
		e->base_last = e->last;
		e->base_count = e->count;
		e->body = NULL;
	}
	uint64_t before = s->stats.rebuild_events;
	e->late = false;
	if ((rc = rebuild(s, e)) < 0)
		return rc;
	s->stats.rebuilds--; /* counted as a catch-up */
	if (s->stats.rebuild_events > before) {
		s->stats.catchups++;
		s->stats.catchup_events += s->stats.rebuild_events - before;
	}
	return 0;
}

/* The entry of run for this transaction: the first time, make sure it
 * holds the run's current state (catch_up), unless this connection checked
 * or wrote it in the current epoch. */
static int txn_entry(struct store *s, const char *run, struct entry **out)
{
	uint64_t h = hash_str(run);
	struct entry *e = cache_find(s, run, h);
	if (e && e->in_txn) {
		*out = e;
		return 0;
	}
	if (s->ntouched == s->touched_cap) {
		size_t n = s->touched_cap ? s->touched_cap * 2 : 256;
		struct entry **t = realloc(s->touched, n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		s->touched = t;
		s->touched_cap = n;
	}
	if (!e) {
		if (!(e = cache_add(s, run, h)))
			return -ENOMEM;
		s->stats.cache_misses++;
	} else {
		lru_unlink(s, e);
		if (e->epoch == s->epoch) {
			/* Checked or written in this epoch, and no other
			 * connection has committed since: current. */
			s->stats.cache_hits++;
			e->in_txn = true;
			e->late = e->must_write = false;
			e->was_terminal = e->body && reducer_terminal(e->body);
			s->touched[s->ntouched++] = e;
			*out = e;
			return 0;
		}
	}
	e->in_txn = true;
	e->must_write = false;
	s->touched[s->ntouched++] = e;

	sqlite3_stmt *st = s->st[ST_SNAP_META];
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		e->rowid = sqlite3_column_int64(st, 0);
		e->row_count = sqlite3_column_int64(st, 1);
		key_of_row(st, 2, &e->row_last);
		e->quarantined = sqlite3_column_int(st, 7) != 0;
		int64_t age = util_wall_ms() - sqlite3_column_int64(st, 8);
		e->written_ms = util_mono_ms() - (age > 0 ? age : 0);
		if (sqlite3_column_int64(st, 6)) {
			e->archived = true;
			json_decref(e->body);
			e->body = NULL;
		}
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		/* No row: a new run, one whose first events were committed
		 * without a row yet, or one forgotten since: no state of an old
		 * run may serve, only the stored events (a young run's few). */
		json_decref(e->body);
		json_decref(e->ckpt);
		e->body = e->ckpt = NULL;
		e->count = 0;
		e->last = KEY_NONE;
		e->quarantined = false;
		e->rowid = 0;
		e->row_last = KEY_NONE;
		e->row_count = 0;
		e->written_ms = util_mono_ms();
		rc = SQLITE_OK;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, stmt_sql[ST_SNAP_META]);
	if (!e->archived && (rc = catch_up(s, e)) < 0)
		return rc;
	if ((rc = load_tomb(s, e)) < 0)
		return rc;
	e->late = false;
	e->was_terminal = e->body && reducer_terminal(e->body);
	*out = e;
	return 0;
}

/* Make sure e->body holds the row's snapshot; an unreadable body means a
 * rebuild. */
static int load_body(struct store *s, struct entry *e)
{
	if (e->body)
		return 0;
	sqlite3_stmt *st = s->st[ST_SNAP_BODY];
	sqlite3_bind_int64(st, 1, e->rowid);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		e->body = parse_body(sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return sql_fail(s, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, stmt_sql[ST_SNAP_BODY]);
	if (!e->body) {
		log_kv(LOG_WARN, KV("run", e->run), "unreadable snapshot body: rebuilding");
		e->need_rebuild = true;
	}
	return 0;
}

static void bind_text_or_null(sqlite3_stmt *st, int col, const char *s, size_t len)
{
	if (s)
		sqlite3_bind_text(st, col, s, (int)len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, col);
}

/* Insert ev; returns 1 inserted, 0 duplicate, or a negative errno. */
static int insert_event(struct store *s, const struct sv_event *ev, const struct event_key *k)
{
	sqlite3_stmt *st = s->st[ST_INSERT];
	sqlite3_bind_text(st, 1, ev->run, -1, SQLITE_STATIC);
	if (ev->seq > 0)
		sqlite3_bind_int64(st, 2, ev->seq);
	else
		sqlite3_bind_null(st, 2);
	if (ev->parent_seq > 0)
		sqlite3_bind_int64(st, 3, ev->parent_seq);
	else
		sqlite3_bind_null(st, 3);
	bind_text_or_null(st, 4, ev->call_id, ev->call_id ? strlen(ev->call_id) : 0);
	sqlite3_bind_text(st, 5, ev->origin_stream ? ev->origin_stream : ev->stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)ev->origin_ms);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)ev->origin_seq);
	sqlite3_bind_int64(st, 8, k->major);
	sqlite3_bind_int64(st, 9, k->minor);
	sqlite3_bind_text(st, 10, ev->type, -1, SQLITE_STATIC);
	bind_text_or_null(st, 11, ev->data_raw, ev->data_len);
	if (ev->has_ts)
		sqlite3_bind_int64(st, 12, ev->ts);
	else
		sqlite3_bind_null(st, 12);
	sqlite3_bind_int64(st, 13, s->txn_ms);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_fail(s, rc, "insert event");
	return sqlite3_changes(s->db) > 0;
}

/* ---- duplicates, conflicts, forgotten runs ---- */

enum twin { TWIN_NONE, TWIN_SAME, TWIN_DIFFERENT };

static bool is_tool_output(const struct sv_event *ev)
{
	return strcmp(ev->type, "tool.output") == 0;
}

/* Two data fields, compared as JSON values (key order and spacing do not
 * matter); text that does not parse is compared byte for byte. */
static bool same_data(const char *stored, size_t slen, const struct sv_event *ev)
{
	if (!stored || !ev->data_raw)
		return !stored && !ev->data_raw;
	json_t *a = json_loadb(stored, slen, JSON_ALLOW_NUL, NULL);
	json_t *b = ev->data ? json_incref(ev->data) : json_loadb(ev->data_raw, ev->data_len, JSON_ALLOW_NUL, NULL);
	bool eq = a && b ? json_equal(a, b) : slen == ev->data_len && memcmp(stored, ev->data_raw, slen) == 0;
	json_decref(a);
	json_decref(b);
	return eq;
}

/* The stored event holding ev's dedupe key, compared with ev: a producer
 * event by type and data, a tool.output by the entry that carried it (the
 * same entry delivered again, or another run of the tool), any other
 * event by its logical id (the key is the whole identity). */
static int stored_twin(struct store *s, const struct sv_event *ev, enum twin *out)
{
	const char *stream = ev->origin_stream ? ev->origin_stream : ev->stream;
	enum stmt_id id = ev->seq > 0 ? ST_DUP_SEQ : is_tool_output(ev) && ev->call_id ? ST_DUP_CALL : ST_DUP_ORIGIN;
	sqlite3_stmt *st = s->st[id];
	if (id == ST_DUP_SEQ) {
		sqlite3_bind_text(st, 1, ev->run, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, ev->seq);
	} else if (id == ST_DUP_CALL) {
		sqlite3_bind_text(st, 1, ev->run, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ev->call_id, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)ev->origin_ms);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)ev->origin_seq);
	}
	*out = TWIN_NONE;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && id == ST_DUP_SEQ) {
		const char *type = (const char *)sqlite3_column_text(st, 0);
		const char *data = (const char *)sqlite3_column_text(st, 1);
		bool same = type && strcmp(type, ev->type) == 0 &&
			    same_data(data, (size_t)sqlite3_column_bytes(st, 1), ev);
		*out = same ? TWIN_SAME : TWIN_DIFFERENT;
	} else if (rc == SQLITE_ROW && id == ST_DUP_CALL) {
		const char *sstream = (const char *)sqlite3_column_text(st, 0);
		bool same = sstream && strcmp(sstream, stream) == 0 &&
			    (uint64_t)sqlite3_column_int64(st, 1) == ev->origin_ms &&
			    (uint64_t)sqlite3_column_int64(st, 2) == ev->origin_seq;
		*out = same ? TWIN_SAME : TWIN_DIFFERENT;
	} else if (rc == SQLITE_ROW) {
		*out = TWIN_SAME;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, rc, stmt_sql[id]);
}

/* Refuse ev as a conflict; the first one quarantines the run (its row
 * flag, or the row the commit inserts), so a reused run id can never mix
 * into the old run. */
static int conflict(struct store *s, struct entry *e, const struct sv_event *ev, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", STORE_CONFLICT_REASON);
	s->stats.conflicts++;
	if (e->quarantined)
		return STORE_CONFLICT;
	sqlite3_bind_text(s->st[ST_QUARANTINE], 1, e->run, -1, SQLITE_STATIC);
	int rc = exec_st(s, ST_QUARANTINE);
	if (rc < 0)
		return rc;
	e->quarantined = true;
	if (!e->rowid)
		e->must_write = true; /* the flag needs its row */
	log_kv(LOG_WARN, KV("run", ev->run, "entry", ev->id, "type", ev->type),
	       "%s: run quarantined: seq %lld conflicts with a stored event (same run and seq, other type or "
	       "data); its later events are dead-lettered too until `streamvisorctl forget`",
	       __func__, (long long)ev->seq);
	return STORE_CONFLICT;
}

/* ev's dedupe key is taken: a redelivery or a producer's retry (silent), a
 * re-run of a tool (counted; the first stored output stays), or a
 * conflicting producer event. */
static int on_duplicate(struct store *s, struct entry *e, const struct sv_event *ev, char *err, size_t errlen)
{
	enum twin t;
	int rc = stored_twin(s, ev, &t);
	if (rc < 0)
		return rc;
	if (t != TWIN_DIFFERENT) {
		s->stats.duplicates++;
		return STORE_DUPLICATE;
	}
	if (is_tool_output(ev)) {
		/* Tool execution is at least once: a re-run may say otherwise. */
		s->stats.reruns++;
		log_kv(LOG_INFO, KV("run", ev->run, "call_id", ev->call_id ? ev->call_id : "", "entry", ev->id),
		       "tool.output of a re-run: the first stored output stays");
		return STORE_RERUN;
	}
	return conflict(s, e, ev, err, errlen);
}

/* The entry was written before its run's forget position. */
static bool before_forget(const struct entry *e, const struct sv_event *ev)
{
	return e->has_tomb &&
	       (ev->origin_ms < e->tomb_ms || (ev->origin_ms == e->tomb_ms && ev->origin_seq < e->tomb_seq));
}

int store_apply(struct store *s, const struct sv_event *ev, char *err, size_t errlen)
{
	struct entry *e = NULL;
	struct event_key k;
	int rc;

	if (errlen)
		err[0] = '\0';
	if (!s->in_txn) {
		set_err(s, "store_apply outside a transaction");
		return -EINVAL;
	}
	if ((rc = txn_entry(s, ev->run, &e)) < 0)
		return rc;
	if (before_forget(e, ev)) {
		s->stats.forgotten++;
		return STORE_FORGOTTEN;
	}
	if (e->quarantined) {
		/* Only the very events already stored pass (silently). */
		enum twin t;
		if ((rc = stored_twin(s, ev, &t)) < 0)
			return rc;
		if (t == TWIN_SAME) {
			s->stats.duplicates++;
			return STORE_DUPLICATE;
		}
		return conflict(s, e, ev, err, errlen);
	}
	if (e->archived) {
		snprintf(err, errlen, "run archived");
		s->stats.refused++;
		return STORE_ARCHIVED;
	}
	/* Refused events leave nothing behind: decide before the insert. */
	if (reducer_check(s->kind, ev, err, errlen) < 0) {
		s->stats.refused++;
		return STORE_REDUCER_ERROR;
	}
	event_order_key(ev, &k);
	uint64_t t0 = mono_us();
	rc = insert_event(s, ev, &k);
	bool inserted = rc == 1;
	if (rc == 0)
		rc = on_duplicate(s, e, ev, err, errlen); /* a STORE_* code, or < 0 */
	s->stats.insert_us += mono_us() - t0;
	if (!inserted)
		return rc;
	s->stats.applied++;
	e->dirty = true;
	/* Sorts at or before the row's position: the row is no longer a
	 * prefix of the stored events, so it is rewritten in this txn. */
	if (e->rowid && event_key_cmp(&k, &e->row_last) <= 0)
		e->late = true;
	if (!e->body)
		e->need_rebuild = true;
	if (e->need_rebuild || event_key_cmp(&k, &e->last) <= 0) {
		/* Rebuild from the stored events at commit, once. */
		if (!e->need_rebuild)
			s->stats.late++;
		e->need_rebuild = true;
		return STORE_OK;
	}
	t0 = mono_us();
	rc = reducer_apply(s->kind, e->body, ev, err, errlen);
	s->stats.reduce_us += mono_us() - t0;
	if (rc == -EINVAL) {
		/* Cannot happen (reducer_check passed); stay consistent anyway:
		 * the snapshot is unchanged, take the event out again. */
		sqlite3_stmt *st = s->st[ST_UNDO_INSERT];
		sqlite3_bind_int64(st, 1, sqlite3_last_insert_rowid(s->db));
		if ((rc = exec_st(s, ST_UNDO_INSERT)) < 0)
			return rc;
		s->stats.applied--;
		s->stats.refused++;
		return STORE_REDUCER_ERROR;
	}
	if (rc < 0) {
		set_err(s, "%s", err);
		return rc;
	}
	e->last = k;
	e->count++;
	if (ev->seq > 0 && strcmp(ev->type, "tool.call") == 0) {
		json_decref(e->ckpt);
		e->ckpt = json_deep_copy(e->body); /* none on ENOMEM: still correct */
		e->ckpt_last = k;
		e->ckpt_count = e->count;
	}
	return STORE_OK;
}

/* Count the run's stored events up to key. */
static int count_upto(struct store *s, const char *run, const struct event_key *key, int64_t *n)
{
	sqlite3_stmt *st = s->st[ST_COUNT_UPTO];
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	bind_key(st, 2, key);
	int rc = sqlite3_step(st);
	*n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sql_fail(s, rc, stmt_sql[ST_COUNT_UPTO]);
}

/* Count every stored event of the run. */
static int count_run(struct store *s, const char *run, int64_t *n)
{
	sqlite3_stmt *st = s->st[ST_COUNT_RUN];
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	*n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sql_fail(s, rc, stmt_sql[ST_COUNT_RUN]);
}

/* Apply the stored event in st's current row to snap.  Returns 0, 1 when
 * the event was skipped (unreadable data or refused: cannot happen for
 * events this build stored), or a negative errno. */
static int replay_row(struct store *s, const char *run, sqlite3_stmt *st, json_t *snap)
{
	struct sv_event ev = {
		.run = run,
		.type = (const char *)sqlite3_column_text(st, 0),
		.seq = sqlite3_column_int64(st, 1),
		.parent_seq = sqlite3_column_int64(st, 2),
		.call_id = (const char *)sqlite3_column_text(st, 3),
		.stream = (const char *)sqlite3_column_text(st, 4),
		.origin_ms = (uint64_t)sqlite3_column_int64(st, 5),
		.origin_seq = (uint64_t)sqlite3_column_int64(st, 6),
		.has_ts = sqlite3_column_type(st, 10) != SQLITE_NULL,
		.ts = sqlite3_column_int64(st, 10),
	};
	char err[256];
	int rc;
	if (!ev.type || !ev.stream)
		return -ENOMEM;
	ev.origin_stream = ev.stream;
	ev.id_ms = ev.origin_ms;
	ev.id_seq = ev.origin_seq;
	if (sqlite3_column_type(st, 9) != SQLITE_NULL) {
		const void *d = sqlite3_column_text(st, 9);
		ev.data = parse_body(d, (size_t)sqlite3_column_bytes(st, 9));
		if (!ev.data) {
			log_kv(LOG_ERROR, KV("run", run), "stored event has unreadable data: skipped");
			return 1;
		}
	}
	uint64_t t0 = mono_us();
	rc = reducer_apply(s->kind, snap, &ev, err, sizeof(err));
	s->stats.reduce_us += mono_us() - t0;
	json_decref(ev.data);
	if (rc == -EINVAL) {
		log_kv(LOG_ERROR, KV("run", run), "stored event refused by the reducer: %s", err);
		return 1;
	}
	if (rc == 0)
		s->stats.rebuild_events++;
	return rc;
}

/* Apply to snap every stored event of run after *from, in order, moving
 * *from and *count on (*tail: events applied).  Returns 0 or a negative
 * errno (snap is then to be discarded). */
static int replay_tail(struct store *s, const char *run, json_t *snap, struct event_key *from, int64_t *count,
		       int64_t *tail)
{
	/* Merge the two ordered halves: events with seq (ordered by seq, which
	 * for them is the order key) and the others. */
	sqlite3_stmt *q[2] = {s->st[ST_REPLAY_SEQ], s->st[ST_REPLAY_NOSEQ]};
	int qrc[2];
	int rc = 0;
	*tail = 0;
	sqlite3_bind_text(q[0], 1, run, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q[0], 2, from->major);
	sqlite3_bind_text(q[1], 1, run, -1, SQLITE_STATIC);
	bind_key(q[1], 2, from);
	qrc[0] = sqlite3_step(q[0]);
	qrc[1] = sqlite3_step(q[1]);
	while (qrc[0] == SQLITE_ROW || qrc[1] == SQLITE_ROW) {
		struct event_key k[2];
		for (int i = 0; i < 2; i++) {
			if (qrc[i] != SQLITE_ROW)
				continue;
			k[i] = (struct event_key){
				.major = sqlite3_column_int64(q[i], 7),
				.minor = sqlite3_column_int64(q[i], 8),
				.ms = (uint64_t)sqlite3_column_int64(q[i], 5),
				.seq = (uint64_t)sqlite3_column_int64(q[i], 6),
			};
		}
		int w = qrc[0] != SQLITE_ROW ? 1 : qrc[1] != SQLITE_ROW ? 0
			: event_key_cmp(&k[0], &k[1]) <= 0 ? 0 : 1;
		if ((rc = replay_row(s, run, q[w], snap)) < 0)
			break;
		if (rc == 0) {
			*from = k[w];
			(*count)++;
			(*tail)++;
		}
		qrc[w] = sqlite3_step(q[w]);
	}
	sqlite3_reset(q[0]);
	sqlite3_reset(q[1]);
	sqlite3_clear_bindings(q[0]);
	sqlite3_clear_bindings(q[1]);
	if (rc < 0) {
		set_err(s, "replay of %s: %s", run, strerror(-rc));
		return rc;
	}
	if (qrc[0] != SQLITE_DONE || qrc[1] != SQLITE_DONE)
		return sql_fail(s, qrc[0] != SQLITE_DONE ? qrc[0] : qrc[1], "replay events");
	return 0;
}

/* Rebuild e's snapshot: the reducer over the run's stored events, in
 * order, starting from the newest state known to be a valid prefix, i.e.
 * one for which the stored events up to its position are exactly those it
 * has seen (same count: events are only ever added):
 *   - the stale cached state (base);
 *   - the state kept at the last tool.call applied in place (ckpt);
 *   - the row (the checkpoint), preferred over a base at most CATCHUP_MAX
 *     events behind it only when more than that ahead (parsing a body
 *     costs more than replaying a few events);
 *   - else nothing (a full replay). */
static int rebuild(struct store *s, struct entry *e)
{
	json_t *snap = NULL;
	struct event_key from = KEY_NONE;
	int64_t count = 0, n, tail;
	int rc;

	s->stats.rebuilds++;
	struct cand { json_t **j; struct event_key last; int64_t count, rank; } cand[3], t;
	int nc = 0;
	if (e->base)
		cand[nc++] = (struct cand){&e->base, e->base_last, e->base_count, e->base_count};
	if (e->ckpt)
		cand[nc++] = (struct cand){&e->ckpt, e->ckpt_last, e->ckpt_count, e->ckpt_count};
	if (e->rowid && !e->late)
		cand[nc++] = (struct cand){NULL, e->row_last, e->row_count, e->row_count - CATCHUP_MAX};
	for (int i = 1; i < nc; i++)
		for (int j = i; j > 0 && cand[j].rank > cand[j - 1].rank; j--)
			t = cand[j], cand[j] = cand[j - 1], cand[j - 1] = t;
	for (int i = 0; i < nc && !snap; i++) {
		if ((rc = count_upto(s, e->run, &cand[i].last, &n)) < 0)
			return rc;
		if (n != cand[i].count)
			continue;
		if (!cand[i].j) {
			/* the row */
			json_decref(e->body);
			e->body = NULL;
			if ((rc = load_body(s, e)) < 0)
				return rc;
			snap = e->body;
			e->body = NULL;
			if (!snap)
				continue; /* unreadable body */
		} else if (cand[i].j == &e->base) {
			/* The base is used up; the tool.call checkpoint stays valid. */
			snap = e->base;
			e->base = NULL;
		} else if (!(snap = json_deep_copy(*cand[i].j))) {
			return -ENOMEM;
		}
		from = cand[i].last;
		count = cand[i].count;
	}
	if (!snap && !(snap = reducer_new(s->kind, e->run)))
		return -ENOMEM;
	if ((rc = replay_tail(s, e->run, snap, &from, &count, &tail)) < 0) {
		json_decref(snap);
		return rc;
	}
	json_decref(e->body);
	e->body = snap;
	e->last = from;
	e->count = count;
	e->need_rebuild = false;
	return 0;
}

/* Serialize e->body once and write its row. */
static int write_snapshot(struct store *s, struct entry *e, int64_t now, int64_t mono)
{
	if (jsonenc_encode(&s->enc, e->body) < 0)
		return -ENOMEM;
	size_t n = s->enc.len;
	const char *status = reducer_status(e->body);
	sqlite3_stmt *st = s->st[e->rowid ? ST_SNAP_UPDATE : ST_SNAP_INSERT];
	bind_text_or_null(st, 1, status, status ? strlen(status) : 0);
	sqlite3_bind_int(st, 2, reducer_complete(e->body));
	sqlite3_bind_text(st, 3, s->enc.buf, (int)n, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, e->count);
	sqlite3_bind_int64(st, 5, reducer_last_seq(e->body));
	sqlite3_bind_int64(st, 6, now);
	bind_key(st, 7, &e->last);
	if (e->rowid) {
		sqlite3_bind_int64(st, 11, e->rowid);
	} else {
		sqlite3_bind_text(st, 11, e->run, -1, SQLITE_STATIC);
		/* A conflict within the batch that wrote the run's first events. */
		sqlite3_bind_int(st, 12, e->quarantined);
	}
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_fail(s, rc, "write snapshot");
	if (!e->rowid)
		e->rowid = sqlite3_last_insert_rowid(s->db);
	e->row_last = e->last;
	e->row_count = e->count;
	e->written_ms = mono;
	s->stats.snapshot_writes++;
	return 0;
}

/* Whether e's row is written in this transaction (see store.h,
 * Checkpoints). */
static bool row_due(const struct store *s, const struct entry *e, int64_t mono)
{
	if (!behind(e))
		return false;
	return s->interval_ms == 0 || e->must_write || e->late || e->was_terminal || reducer_terminal(e->body) ||
	       mono - e->written_ms >= s->interval_ms;
}

/* Take into the transaction, to have their rows written, the cached runs
 * (not touched yet) that are behind and due (all: every one behind), or
 * that are behind and would be evicted when the transaction ends: a row
 * must not stay behind for lack of the state that would catch it up. */
static int take_behind(struct store *s, bool all)
{
	int64_t mono = util_mono_ms();
	/* runs a rollback dropped while behind: caught up from the table;
	 * they are orphans again should this transaction roll back too */
	for (; s->norphans; s->norphans--) {
		char *run = s->orphans[s->norphans - 1];
		struct entry *x;
		int rc = txn_entry(s, run, &x);
		free(run);
		if (rc < 0) {
			s->norphans--;
			return rc;
		}
		x->must_write = true;
	}
	/* the entries evicted at the end: the LRU tail beyond the capacity,
	 * once the touched ones are back at its head */
	int64_t evict = (int64_t)(s->ncached + s->ntouched) - (int64_t)s->cache_cap;
	struct entry *prev;
	for (struct entry *e = s->lru_tail; e; e = prev) {
		prev = e->prev;
		bool due = behind(e) && (all || evict > 0 || s->interval_ms == 0 ||
					 mono - e->written_ms >= s->interval_ms);
		if (!due) {
			evict--;
			continue;
		}
		struct entry *x;
		int rc = txn_entry(s, e->run, &x);
		if (rc < 0)
			return rc;
		x->must_write = true;
	}
	return 0;
}

/* ---- the writer lease ---- */

/* Inside a writing transaction, before its COMMIT: extend the lease if it
 * is still ours.  A holder that was stopped (SIGSTOP, a long stall) past
 * its expiry and replaced finds another holder here, and commits nothing.
 * Returns 0 (no lease in use, or still ours) or -ESTALE. */
static int lease_check(struct store *s)
{
	if (!s->lease_holder)
		return 0;
	sqlite3_stmt *st = s->st[ST_LEASE_RENEW];
	sqlite3_bind_text(st, 1, s->lease_holder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_mono_ms() + s->lease_ttl_ms);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_fail(s, rc, stmt_sql[ST_LEASE_RENEW]);
	if (sqlite3_changes(s->db) == 1)
		return 0;
	set_err(s, "writer lease lost: another worker writes %s now", s->path);
	log_kv(LOG_WARN, KV("path", s->path), "%s: %s", __func__, s->errmsg);
	free(s->lease_holder);
	s->lease_holder = NULL;
	return -ESTALE;
}

/* The lease row: holder (into buf) and expiry; buf "" when there is none. */
static int lease_read(struct store *s, char *buf, size_t len, int64_t *expires)
{
	sqlite3_stmt *st = s->st[ST_LEASE_GET];
	int rc = sqlite3_step(st);
	buf[0] = '\0';
	*expires = 0;
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(buf, len, "%s", t ? (const char *)t : "");
		*expires = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, rc, stmt_sql[ST_LEASE_GET]);
}

static int lease_write(struct store *s, const char *holder, int64_t expires)
{
	sqlite3_stmt *st = s->st[ST_LEASE_SET];
	sqlite3_bind_text(st, 1, holder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, expires);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sql_fail(s, rc, stmt_sql[ST_LEASE_SET]);
}

int store_lease_take(struct store *s, const char *holder, int64_t ttl_ms, enum store_lease_mode mode,
		     char *other, size_t otherlen)
{
	char cur[256];
	int64_t expires;
	if (s->in_txn || s->readonly || !holder || !*holder || ttl_ms <= 0) {
		set_err(s, "store_lease_take: misuse");
		return -EINVAL;
	}
	int rc = exec_st(s, ST_BEGIN);
	if (rc < 0)
		return rc;
	if ((rc = lease_read(s, cur, sizeof(cur), &expires)) < 0)
		goto fail;
	int64_t now = util_mono_ms();
	bool ours = strcmp(cur, holder) == 0;
	bool force = mode == STORE_LEASE_FORCE;
	bool free_now = cur[0] ? expires <= now : mode == STORE_LEASE_FREE;
	if (!force && !ours && !free_now) {
		if (other)
			snprintf(other, otherlen, "%s", cur);
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return 0;
	}
	if ((rc = lease_write(s, holder, now + ttl_ms)) < 0 || (rc = exec_st(s, ST_COMMIT)) < 0)
		goto fail;
	if (!s->lease_holder || strcmp(s->lease_holder, holder) != 0) {
		free(s->lease_holder);
		s->lease_holder = util_xstrdup(holder);
		if (cur[0] && !ours)
			log_kv(LOG_INFO, KV("path", s->path), "writer lease taken over from %s (%s)", cur,
			       force ? "its holder is gone" : "expired");
	}
	s->lease_ttl_ms = ttl_ms;
	return 1;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

bool store_lease_held(const struct store *s)
{
	return s->lease_holder != NULL;
}

void store_lease_release(struct store *s)
{
	if (!s->lease_holder || s->in_txn)
		return;
	/* Expire it now, if still ours, so a standby need not wait. */
	if (exec_st(s, ST_BEGIN) == 0) {
		char cur[256];
		int64_t expires;
		if (lease_read(s, cur, sizeof(cur), &expires) == 0 && strcmp(cur, s->lease_holder) == 0 &&
		    lease_write(s, cur, 0) == 0 && exec_st(s, ST_COMMIT) == 0)
			log_kv(LOG_INFO, KV("path", s->path), "writer lease released");
		else
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
	free(s->lease_holder);
	s->lease_holder = NULL;
}

static int take_recent(struct store *s);
static void recover_done(struct store *s, uint64_t flushed_before);

int store_commit(struct store *s)
{
	int rc = 0;
	if (!s->in_txn) {
		set_err(s, "store_commit outside a transaction");
		return -EINVAL;
	}
	uint64_t t0 = mono_us(), reduce0 = s->stats.reduce_us, flushed0 = s->stats.flush_writes;
	if (s->recover && s->recover_rowid > 0 && !s->recover_taken && util_mono_ms() >= s->recover_at_ms)
		rc = take_recent(s);
	if (rc == 0)
		rc = take_behind(s, false);
	/* More runs than the cache holds: txn_finish evicts from the LRU tail,
	 * where touched entries may land (behind ones taken above go back
	 * after them), so every touched run's row is written now rather than
	 * dropped behind with the state that would catch it up. */
	if (s->ncached + s->ntouched > s->cache_cap)
		for (size_t i = 0; i < s->ntouched; i++)
			s->touched[i]->must_write = s->touched[i]->must_write || behind(s->touched[i]);
	int64_t now = util_wall_ms(), mono = util_mono_ms();
	for (size_t i = 0; i < s->ntouched && rc == 0; i++) {
		struct entry *e = s->touched[i];
		if (e->archived || (!e->dirty && !e->must_write))
			continue;
		if (e->need_rebuild && (rc = rebuild(s, e)) < 0)
			break;
		if (!row_due(s, e, mono)) {
			s->stats.writes_deferred += e->dirty;
			continue;
		}
		rc = write_snapshot(s, e, now, mono);
		s->stats.flush_writes += !e->dirty;
	}
	if (rc == 0)
		rc = lease_check(s);
	if (rc == 0) {
#if SV_FAULT_INJECTION
		fault_armed = fault_active("commit", NULL, 0);
#endif
		rc = exec_st(s, ST_COMMIT);
#if SV_FAULT_INJECTION
		fault_armed = false;
#endif
	}
	if (rc < 0) {
		store_rollback(s);
		return rc;
	}
	s->stats.commits++;
	s->stats.commit_us += mono_us() - t0 - (s->stats.reduce_us - reduce0);
	txn_finish(s, true);
	recover_done(s, flushed0);
	return 0;
}

/* The recovery of a previous writer's rows is pending: not anchored yet
 * (a transaction anchors it) or due. */
static bool recover_due(struct store *s)
{
	if (s->lease_holder && !s->had_lease)
		return true; /* just became the writer */
	return s->recover && (s->recover_rowid == 0 || util_mono_ms() >= s->recover_at_ms);
}

/* Some cached run is behind and due (all: behind at all). */
static bool any_behind(const struct store *s, bool all, int64_t *due_ms)
{
	int64_t mono = util_mono_ms(), best = -1;
	for (const struct entry *e = s->lru_head; e; e = e->next) {
		if (!behind(e))
			continue;
		int64_t left = all || s->interval_ms == 0 ? 0 : e->written_ms + s->interval_ms - mono;
		if (left < 0)
			left = 0;
		if (best < 0 || left < best)
			best = left;
	}
	if (s->norphans)
		best = 0;
	if (due_ms)
		*due_ms = best;
	return best == 0;
}

/* The rows a previous writer left behind (see recover_anchor): its runs
 * all got events within interval + one batch before its last commit
 * (older ones were written when due, or before their eviction), so take
 * every run with an event stored before the anchor and less than interval
 * + RECOVER_SLACK_MS before the newest of those (by rowid, newest first:
 * no scan of the table), at most RECOVER_ROWS events back. */
#define RECOVER_SLACK_MS 5000
#define RECOVER_ROWS 200000
static int take_recent(struct store *s)
{
	sqlite3_stmt *st;
	const char *sql = "SELECT run, persisted_ms FROM events WHERE rowid < ?1 ORDER BY rowid DESC";
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, sql);
	sqlite3_bind_int64(st, 1, s->recover_rowid);
	int64_t newest = -1, n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n++ < RECOVER_ROWS) {
		int64_t pm = sqlite3_column_int64(st, 1);
		if (newest < 0)
			newest = pm;
		if (pm < newest - s->interval_ms - RECOVER_SLACK_MS)
			break;
		const char *run = (const char *)sqlite3_column_text(st, 0);
		struct entry *e = run ? cache_find(s, run, hash_str(run)) : NULL;
		if (!run || (e && e->in_txn))
			continue;
		if ((rc = txn_entry(s, run, &e)) < 0)
			break;
		e->must_write = true;
		rc = SQLITE_ROW;
	}
	sqlite3_finalize(st);
	if (rc < 0)
		return rc;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(s, rc, sql);
	s->recover_taken = true; /* done once this transaction commits */
	return 0;
}

/* After a commit: the recovery taken into it is done. */
static void recover_done(struct store *s, uint64_t flushed_before)
{
	if (!s->recover_taken)
		return;
	s->recover = s->recover_taken = false;
	if (s->stats.flush_writes > flushed_before)
		log_kv(LOG_INFO, KV("path", s->path), "%s: %llu rows behind written (a previous writer's runs)",
		       __func__, (unsigned long long)(s->stats.flush_writes - flushed_before));
}

int store_flush(struct store *s, bool all)
{
	if (s->in_txn || s->readonly) {
		set_err(s, "store_flush: %s", s->readonly ? "read-only" : "inside a transaction");
		return -EINVAL;
	}
	if (!recover_due(s) && !any_behind(s, all, NULL))
		return 0;
	uint64_t before = s->stats.snapshot_writes;
	int rc = store_begin(s);
	if (rc < 0)
		return rc;
	if ((rc = take_behind(s, all)) < 0) {
		store_rollback(s);
		return rc;
	}
	if ((rc = store_commit(s)) < 0)
		return rc; /* the recovery, if due, was in it (store_commit) */
	return (int)(s->stats.snapshot_writes - before);
}

int64_t store_flush_due_ms(struct store *s)
{
	int64_t due;
	if (s->lease_holder && !s->had_lease)
		return 0; /* just became the writer: anchor the recovery */
	any_behind(s, false, &due);
	if (s->recover) {
		/* not anchored yet (0: a store_flush anchors it), or when due */
		int64_t r = s->recover_rowid > 0 ? s->recover_at_ms - util_mono_ms() : 0;
		if (r < 0)
			r = 0;
		if (due < 0 || r < due)
			due = r;
	}
	return due;
}

/* ---- reads and pruning ---- */

static char *col_strdup(sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return NULL;
	const char *t = (const char *)sqlite3_column_text(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	char *r = t ? malloc(n + 1) : NULL;
	if (r) {
		memcpy(r, t, n);
		r[n] = '\0';
	}
	return r;
}

int store_snapshot_get(struct store *s, const char *run, struct store_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	/* Stored runs are text (event_valid_text on every entry's run). */
	if (!event_valid_text(run, strlen(run)))
		return -ENOENT;
	int rc;
	if (s->no_schema) {
		/* opened before a writer created the schema: is it there now? */
		int64_t v;
		if ((rc = query_int(s, "PRAGMA user_version", &v)) < 0)
			return rc;
		if (v == 0)
			return -ENOENT;
		if ((rc = prepare_all(s)) < 0)
			return rc;
		s->no_schema = false;
	}
	/* One read transaction: the row and its tail from one state of the
	 * file (inside an open transaction: that transaction's state). */
	bool own = sqlite3_get_autocommit(s->db) != 0;
	if (own && (rc = exec_st(s, ST_BEGIN_READ)) < 0)
		return rc;
	sqlite3_stmt *st = s->st[ST_GET];
	json_t *snap = NULL;
	struct event_key from = KEY_NONE;
	int64_t count = 0, tail = 0;
	bool row = false;
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row = true;
		out->body = col_strdup(st, 0);
		out->status = col_strdup(st, 1);
		out->complete = sqlite3_column_int(st, 2) != 0;
		out->archived = sqlite3_column_int(st, 3) != 0;
		out->event_count = sqlite3_column_int64(st, 4);
		out->last_seq = sqlite3_column_int64(st, 5);
		out->updated_ms = sqlite3_column_int64(st, 6);
		key_of_row(st, 7, &from);
		count = out->event_count;
		rc = out->body ? SQLITE_OK : SQLITE_NOMEM;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_OK) {
		rc = rc == SQLITE_NOMEM ? -ENOMEM : sql_fail(s, rc, stmt_sql[ST_GET]);
		goto out;
	}
	/* An archived run's events are gone: its row is the whole run. */
	if (row && out->archived)
		goto out;
	if (row && !(snap = parse_body(out->body, strlen(out->body)))) {
		log_kv(LOG_WARN, KV("run", run), "%s: unreadable snapshot body: reducing every stored event",
		       __func__);
		from = KEY_NONE;
		count = 0;
	}
	if (!snap && !(snap = reducer_new(s->kind, run))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = replay_tail(s, run, snap, &from, &count, &tail)) < 0)
		goto out;
	if (!row && tail == 0) {
		rc = -ENOENT;
		goto out;
	}
	out->tail_events = tail;
	if (tail || !row || count != out->event_count) {
		const char *status = reducer_status(snap);
		free(out->body);
		free(out->status);
		out->body = NULL;
		out->status = status ? strdup(status) : NULL;
		if (jsonenc_encode(&s->enc, snap) < 0 || !(out->body = malloc(s->enc.len + 1)) ||
		    (status && !out->status)) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(out->body, s->enc.buf, s->enc.len);
		out->body[s->enc.len] = '\0';
		out->complete = reducer_complete(snap);
		out->event_count = count;
		out->last_seq = reducer_last_seq(snap);
	}
out:
	json_decref(snap);
	if (own)
		exec_st(s, rc < 0 && rc != -ENOENT ? ST_ROLLBACK : ST_COMMIT);
	if (rc < 0)
		store_snapshot_clear(out);
	return rc;
}

void store_snapshot_clear(struct store_snapshot *snap)
{
	free(snap->body);
	free(snap->status);
	memset(snap, 0, sizeof(*snap));
}

int64_t store_prune(struct store *s, int64_t older_than_ms)
{
	int64_t total = 0;
	if (s->in_txn || s->readonly) {
		set_err(s, "store_prune: %s", s->readonly ? "read-only" : "inside a transaction");
		return -EINVAL;
	}
	for (;;) {
		sqlite3_int64 rowids[PRUNE_CHUNK];
		char *runs[PRUNE_CHUNK];
		size_t n = 0;
		int rc = exec_st(s, ST_BEGIN);
		if (rc < 0)
			return rc;
		sqlite3_stmt *st = s->st[ST_PRUNE_LIST];
		sqlite3_bind_int64(st, 1, older_than_ms);
		sqlite3_bind_int(st, 2, PRUNE_CHUNK);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < PRUNE_CHUNK) {
			rowids[n] = sqlite3_column_int64(st, 0);
			if (!(runs[n] = col_strdup(st, 1)))
				break;
			n++;
		}
		sqlite3_reset(st);
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = 0;
		else
			rc = sql_fail(s, rc, stmt_sql[ST_PRUNE_LIST]);
		for (size_t i = 0; i < n && rc == 0; i++) {
			sqlite3_bind_text(s->st[ST_PRUNE_EVENTS], 1, runs[i], -1, SQLITE_STATIC);
			sqlite3_bind_text(s->st[ST_PRUNE_EVENTS_NOSEQ], 1, runs[i], -1, SQLITE_STATIC);
			sqlite3_bind_int64(s->st[ST_PRUNE_MARK], 1, rowids[i]);
			if ((rc = exec_st(s, ST_PRUNE_EVENTS)) == 0 &&
			    (rc = exec_st(s, ST_PRUNE_EVENTS_NOSEQ)) == 0)
				rc = exec_st(s, ST_PRUNE_MARK);
		}
		if (rc == 0)
			rc = exec_st(s, ST_COMMIT);
		if (rc < 0)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		for (size_t i = 0; i < n; i++) {
			/* Its events are gone: drop the cached snapshot too. */
			struct entry *e = rc == 0 ? cache_find(s, runs[i], hash_str(runs[i])) : NULL;
			if (e)
				cache_drop(s, e);
			free(runs[i]);
		}
		if (rc < 0)
			return rc;
		total += (int64_t)n;
		if (n < PRUNE_CHUNK)
			return total;
	}
}

/* ---- forgetting runs ---- */

static int id_cmp(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq)
{
	if (ams != bms)
		return ams < bms ? -1 : 1;
	return aseq < bseq ? -1 : aseq > bseq;
}

int store_forget_last(struct store *s, char *id, size_t len)
{
	int rc = meta_get(s, STORE_META_FORGET_LAST, id, len);
	if (rc == 0 && !id[0])
		snprintf(id, len, "0-0");
	return rc;
}

/* Delete one run's events and snapshot and record its forget position;
 * returns 1 when it had a snapshot, 0, or a negative errno. */
static int forget_run(struct store *s, const char *run, uint64_t pos_ms, uint64_t pos_seq)
{
	sqlite3_bind_text(s->st[ST_PRUNE_EVENTS], 1, run, -1, SQLITE_STATIC);
	sqlite3_bind_text(s->st[ST_PRUNE_EVENTS_NOSEQ], 1, run, -1, SQLITE_STATIC);
	sqlite3_bind_text(s->st[ST_FORGET_SNAP], 1, run, -1, SQLITE_STATIC);
	int rc;
	if ((rc = exec_st(s, ST_PRUNE_EVENTS)) < 0 || (rc = exec_st(s, ST_PRUNE_EVENTS_NOSEQ)) < 0 ||
	    (rc = exec_st(s, ST_FORGET_SNAP)) < 0)
		return rc;
	int had = sqlite3_changes(s->db) > 0;
	sqlite3_stmt *st = s->st[ST_TOMB_SET];
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)pos_ms);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)pos_seq);
	sqlite3_bind_int64(st, 4, util_wall_ms());
	if ((rc = exec_st(s, ST_TOMB_SET)) < 0)
		return rc;
	return had;
}

int store_forget(struct store *s, const char *entry_id, uint64_t pos_ms, uint64_t pos_seq,
		 const char *const *runs, size_t n)
{
	uint64_t ems, eseq, lms, lseq;
	char last[64];
	if (s->in_txn || s->readonly || event_parse_id(entry_id, &ems, &eseq) < 0) {
		set_err(s, "store_forget: %s", s->readonly ? "read-only" : s->in_txn ? "inside a transaction" : "bad id");
		return -EINVAL;
	}
	int rc = exec_st(s, ST_BEGIN);
	if (rc < 0)
		return rc;
	int64_t deleted = 0;
	/* Every worker of the file applies every forget: the first one does
	 * the work, the others find it recorded. */
	if ((rc = store_forget_last(s, last, sizeof(last))) < 0)
		goto out;
	bool applied = event_parse_id(last, &lms, &lseq) == 0 && id_cmp(lms, lseq, ems, eseq) >= 0;
	for (size_t i = 0; i < n && !applied && rc >= 0; i++)
		if ((rc = forget_run(s, runs[i], pos_ms, pos_seq)) > 0)
			deleted++;
	if (rc >= 0 && !applied)
		rc = meta_set(s, STORE_META_FORGET_LAST, entry_id);
	if (rc >= 0)
		rc = exec_st(s, ST_COMMIT);
out:
	if (rc < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->dv_known = false;
		return rc;
	}
	/* Whoever applied it, no cached state of these runs is valid now. */
	for (size_t i = 0; i < n; i++) {
		struct entry *e = cache_find(s, runs[i], hash_str(runs[i]));
		if (e)
			cache_drop(s, e);
	}
	if (n)
		s->have_tombs = true;
	s->stats.runs_forgotten += (uint64_t)deleted;
	return (int)deleted;
}
