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
#include <unistd.h>

#include <sqlite3.h>

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
	uint64_t epoch;             /* when it last matched its row */
	struct event_key row_last;  /* the row's position when the txn began */
	int64_t row_count;
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
	ST_COUNT_UPTO, ST_REPLAY_SEQ, ST_REPLAY_NOSEQ, ST_GET,
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
		"SELECT rowid, event_count, ord_major, ord_minor, ord_ms, ord_seq, archived, body,"
		" quarantined FROM snapshots WHERE run = ?1",
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
		"SELECT body, status, complete, archived, event_count, last_seq, updated_ms"
		" FROM snapshots WHERE run = ?1",
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

static int migrate(struct store *s)
{
	int64_t v;
	int rc = query_int(s, "PRAGMA user_version", &v);
	if (rc < 0 || v == STORE_SCHEMA_VERSION)
		return rc;
	/* A reader takes an older schema as it is: every version has the
	 * snapshots table, and a missing meta table means "unknown". */
	if (s->readonly && v >= 1 && v < STORE_SCHEMA_VERSION)
		return 0;
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
	if ((rc = exec_sql_retry(s, pragmas)) < 0 || (rc = migrate(s)) < 0)
		goto fail;
	if (!s->readonly && (rc = record_reducer(s)) < 0)
		goto fail;
	if (!s->readonly && !in_memory)
		chown_sidecars(path, opts->group, s);

	for (int i = 0; i < ST_N; i++) {
		if (s->readonly && i != ST_GET)
			continue;
		rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
		if (rc != SQLITE_OK) {
			rc = sql_fail(s, rc, stmt_sql[i]);
			goto fail;
		}
	}
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
	s->in_txn = true;
	s->txn_ms = util_wall_ms();
	s->ntouched = 0;
	return 0;
}

/* End of a transaction for every touched entry: back into the cache
 * (commit) or freed (rollback, or nothing worth caching). */
static void txn_finish(struct store *s, bool committed)
{
	for (size_t i = 0; i < s->ntouched; i++) {
		struct entry *e = s->touched[i];
		json_decref(e->base);
		e->base = NULL;
		if (!committed || e->archived || !e->body || e->need_rebuild) {
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

/* The entry of run for this transaction: the first time, validate the
 * cached state against the row. */
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
			/* Validated or written in this epoch, and no other
			 * connection has committed since: the row is exactly what
			 * this entry holds. */
			s->stats.cache_hits++;
			e->in_txn = true;
			e->late = false;
			e->row_last = e->last;
			e->row_count = e->count;
			s->touched[s->ntouched++] = e;
			*out = e;
			return 0;
		}
	}
	e->in_txn = true;
	s->touched[s->ntouched++] = e;

	sqlite3_stmt *st = s->st[ST_SNAP_META];
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		struct event_key rk;
		int64_t rcount = sqlite3_column_int64(st, 1);
		key_of_row(st, 2, &rk);
		e->rowid = sqlite3_column_int64(st, 0);
		e->quarantined = sqlite3_column_int(st, 8) != 0;
		if (sqlite3_column_int64(st, 6)) {
			e->archived = true;
			json_decref(e->body);
			e->body = NULL;
		} else if (e->body && e->count == rcount && event_key_cmp(&e->last, &rk) == 0) {
			s->stats.cache_hits++;
		} else {
			if (e->body) {
				/* Another process moved the run on: the row wins, and the
				 * old state may serve as a checkpoint for a rebuild. */
				s->stats.cache_stale++;
				if (e->count < rcount) {
					e->base = e->body;
					e->base_last = e->last;
					e->base_count = e->count;
				} else {
					json_decref(e->body);
				}
				e->body = NULL;
			}
			e->count = rcount;
			e->last = rk;
			if (!e->base)
				e->body = parse_body(sqlite3_column_text(st, 7),
						     (size_t)sqlite3_column_bytes(st, 7));
			/* else loaded when needed (load_body) */
		}
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		/* A new run (a row would exist for any stored event), or one
		 * forgotten since: no checkpoint of an old state applies. */
		json_decref(e->body);
		json_decref(e->base);
		json_decref(e->ckpt);
		e->base = e->ckpt = NULL;
		e->quarantined = false;
		e->body = reducer_new(s->kind, run);
		e->count = 0;
		e->last = KEY_NONE;
		e->rowid = 0;
		rc = e->body ? SQLITE_OK : SQLITE_NOMEM;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_OK)
		return rc == SQLITE_NOMEM ? -ENOMEM : sql_fail(s, rc, stmt_sql[ST_SNAP_META]);
	if ((rc = load_tomb(s, e)) < 0)
		return rc;
	e->late = false;
	e->row_last = e->last;
	e->row_count = e->count;
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
	if ((rc = insert_event(s, ev, &k)) <= 0)
		return rc < 0 ? rc : on_duplicate(s, e, ev, err, errlen);
	s->stats.applied++;
	e->dirty = true;
	if (event_key_cmp(&k, &e->row_last) <= 0)
		e->late = true;
	if (!e->need_rebuild && event_key_cmp(&k, &e->last) > 0 && !e->body) {
		/* Stale entry, event in order: replay the few events another
		 * process added since our state, or take the row's body. */
		if (e->base && e->row_count - e->base_count <= CATCHUP_MAX)
			e->need_rebuild = true;
		else if ((rc = load_body(s, e)) < 0)
			return rc;
	}
	if (e->need_rebuild || event_key_cmp(&k, &e->last) <= 0) {
		/* Rebuild from the stored events at commit, once. */
		if (!e->need_rebuild)
			s->stats.late++;
		e->need_rebuild = true;
		return STORE_OK;
	}
	rc = reducer_apply(s->kind, e->body, ev, err, errlen);
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
	rc = reducer_apply(s->kind, snap, &ev, err, sizeof(err));
	json_decref(ev.data);
	if (rc == -EINVAL) {
		log_kv(LOG_ERROR, KV("run", run), "stored event refused by the reducer: %s", err);
		return 1;
	}
	if (rc == 0)
		s->stats.rebuild_events++;
	return rc;
}

/* Rebuild e's snapshot: the reducer over the run's stored events, in
 * order, starting from the newest state known to be a valid prefix:
 *   - the stale cached state (base), if the stored events up to its
 *     position are exactly those it has seen (same count: events are only
 *     ever added);
 *   - else the row's body, unless an event of this transaction sorts
 *     before the row's position;
 *   - else nothing (a full replay). */
static int rebuild(struct store *s, struct entry *e)
{
	json_t *snap = NULL;
	struct event_key from = KEY_NONE;
	int64_t count = 0, n;
	int rc;

	s->stats.rebuilds++;
	/* Checkpoints, newest first; one is valid when the stored events up
	 * to its position are exactly the ones it has seen. */
	struct cand { json_t **j; struct event_key *last; int64_t count; } cand[2];
	int nc = 0;
	if (e->base && (e->late || e->row_count - e->base_count <= CATCHUP_MAX))
		cand[nc++] = (struct cand){&e->base, &e->base_last, e->base_count};
	if (e->ckpt)
		cand[nc++] = (struct cand){&e->ckpt, &e->ckpt_last, e->ckpt_count};
	if (nc == 2 && event_key_cmp(cand[0].last, cand[1].last) < 0) {
		struct cand t = cand[0];
		cand[0] = cand[1];
		cand[1] = t;
	}
	for (int i = 0; i < nc && !snap; i++) {
		if ((rc = count_upto(s, e->run, cand[i].last, &n)) < 0)
			return rc;
		if (n != cand[i].count)
			continue;
		/* The base is used up; the tool.call checkpoint stays valid. */
		snap = cand[i].j == &e->base ? e->base : json_deep_copy(*cand[i].j);
		if (cand[i].j == &e->base)
			e->base = NULL;
		if (!snap)
			return -ENOMEM;
		from = *cand[i].last;
		count = cand[i].count;
	}
	if (!snap && !e->late && e->rowid) {
		json_decref(e->body);
		e->body = NULL;
		if ((rc = load_body(s, e)) < 0)
			return rc;
		if (e->body) {
			snap = e->body;
			e->body = NULL;
			from = e->row_last;
			count = e->row_count;
		}
	}
	if (!snap && !(snap = reducer_new(s->kind, e->run)))
		return -ENOMEM;

	/* Merge the two ordered halves: events with seq (ordered by seq, which
	 * for them is the order key) and the others. */
	sqlite3_stmt *q[2] = {s->st[ST_REPLAY_SEQ], s->st[ST_REPLAY_NOSEQ]};
	int qrc[2];
	sqlite3_bind_text(q[0], 1, e->run, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q[0], 2, from.major);
	sqlite3_bind_text(q[1], 1, e->run, -1, SQLITE_STATIC);
	bind_key(q[1], 2, &from);
	qrc[0] = sqlite3_step(q[0]);
	qrc[1] = sqlite3_step(q[1]);
	rc = 0;
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
		if ((rc = replay_row(s, e->run, q[w], snap)) < 0)
			break;
		if (rc == 0) {
			from = k[w];
			count++;
		}
		qrc[w] = sqlite3_step(q[w]);
	}
	sqlite3_reset(q[0]);
	sqlite3_reset(q[1]);
	if (rc < 0) {
		json_decref(snap);
		set_err(s, "rebuild of %s: %s", e->run, strerror(-rc));
		return rc;
	}
	if (qrc[0] != SQLITE_DONE || qrc[1] != SQLITE_DONE) {
		json_decref(snap);
		return sql_fail(s, qrc[0] != SQLITE_DONE ? qrc[0] : qrc[1], "replay events");
	}
	json_decref(e->body);
	e->body = snap;
	e->last = from;
	e->count = count;
	e->need_rebuild = false;
	return 0;
}

/* Serialize e->body once and write its row. */
static int write_snapshot(struct store *s, struct entry *e, int64_t now)
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
	s->stats.snapshot_writes++;
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

int store_lease_take(struct store *s, const char *holder, int64_t ttl_ms, bool force, char *other,
		     size_t otherlen)
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
	if (!force && !ours && cur[0] && expires > now) {
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

int store_commit(struct store *s)
{
	int rc = 0;
	if (!s->in_txn) {
		set_err(s, "store_commit outside a transaction");
		return -EINVAL;
	}
	int64_t now = util_wall_ms();
	for (size_t i = 0; i < s->ntouched && rc == 0; i++) {
		struct entry *e = s->touched[i];
		if (e->archived || !e->dirty)
			continue;
		if (e->need_rebuild && (rc = rebuild(s, e)) < 0)
			break;
		rc = write_snapshot(s, e, now);
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
	txn_finish(s, true);
	return 0;
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
	sqlite3_stmt *st = s->st[ST_GET];
	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->body = col_strdup(st, 0);
		out->status = col_strdup(st, 1);
		out->complete = sqlite3_column_int(st, 2) != 0;
		out->archived = sqlite3_column_int(st, 3) != 0;
		out->event_count = sqlite3_column_int64(st, 4);
		out->last_seq = sqlite3_column_int64(st, 5);
		out->updated_ms = sqlite3_column_int64(st, 6);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return sql_fail(s, rc, stmt_sql[ST_GET]);
	if (!out->body) {
		store_snapshot_clear(out);
		return -ENOMEM;
	}
	return 0;
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
