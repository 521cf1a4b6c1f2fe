/* snapdb: read-only lookups of a run's exact snapshot in the persistence
 * pools' SQLite files, shared by `streamvisorctl snapshot` (src/ctl.c) and
 * the web child's GET /api/v1/runs/ID (src/web_runs.c).
 *
 * One struct snapdb per file a run may be in: a persistence pool's own
 * (its sqlite_path, by default sqlite.path), or sqlite.path when no pool is
 * known.  Opened lazily: the file may not exist yet (a wait for a run that
 * was never persisted).  Read through a read-only store (store.h): the
 * run's row is a checkpoint, and store_snapshot_get reduces the stored
 * events after it with the workers' reducer (the one the file records), so
 * what comes out is exact.  Every read is one short read transaction: a
 * reader never pins the WAL.
 *
 * A waiter learns that a file changed with snapdb_changed (PRAGMA
 * data_version on a connection of its own, which only opens the file:
 * cheap enough to ask every 2 ms). */
#ifndef SV_SNAPDB_H
#define SV_SNAPDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sv_config.h"

struct store;
struct sqlite3;
struct sqlite3_stmt;

struct snapdb {
	char *pool; /* NULL: sqlite.path, no pool */
	char *path;
	int busy_ms;
	enum reducer_kind reducer; /* the pool's, when the file does not say */
	struct store *store;
	char *body; /* the run's exact snapshot, after snapdb_read found it */
	bool complete;
	struct sqlite3 *dv;   /* snapdb_changed's connection, or NULL */
	struct sqlite3_stmt *dv_st; /* its PRAGMA data_version */
	int64_t dv_last;      /* its last PRAGMA data_version */
};

struct snapdbs {
	struct snapdb *v;
	size_t n;
};

/* Append a file.  Returns 0 or -ENOMEM. */
int snapdb_add(struct snapdbs *l, const char *pool, const char *path, int busy_ms, enum reducer_kind reducer);
void snapdb_close(struct snapdb *s);
void snapdbs_free(struct snapdbs *l);
/* The pool's name, "sqlite.path" for the file of no pool. */
const char *snapdb_name(const struct snapdb *s);
/* Keep pool's file alone.  Returns 0, -ENOENT (no such pool; the list is
 * unchanged) or -ENOMEM. */
int snapdb_select_pool(struct snapdbs *l, const char *pool);

/* Look run up in one file: 1 found (s->body, s->complete: the exact
 * snapshot, row and later events), 0 nothing (yet), -EBUSY busy past the
 * timeout (transient), -EIO or -ENOMEM (err says why). */
int snapdb_read(struct snapdb *s, const char *run, char *err, size_t errlen);
/* Look run up in every file: returns how many hold it (*hit: the first of
 * them), or a negative errno other than -EBUSY.  *unsure: some file was
 * busy, so the count may be short. */
int snapdb_find(struct snapdbs *l, const char *run, struct snapdb **hit, bool *unsure, char *err,
		size_t errlen);
/* "reducer NAME version V" as the file records it (store.h STORE_META_*),
 * "reducer unknown" for a file written before the record existed. */
void snapdb_reducer(const struct snapdb *s, char *buf, size_t len);

/* Did another connection commit to the file since the last call?  1 yes
 * (also on the first call once the file exists, and when it appeared), 0
 * no (or the file does not exist yet), -EIO when it cannot be asked
 * (retried next call). */
int snapdb_changed(struct snapdb *s);
/* Close snapdb_changed's connection (nobody waits any more). */
void snapdb_unwatch(struct snapdb *s);

#endif
