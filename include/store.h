/* store: the SQLite store of a persistence worker.  Stores each run's
 * events (deduplicated) and keeps its snapshot equal to the reducer applied
 * to all of them in order (SPEC §5), whatever the number of workers (up to
 * a few processes share one file), crashes, redeliveries and commit order.
 *
 * Use, per batch:
 *   store_begin        BEGIN IMMEDIATE
 *   store_apply        once per decoded entry, in stream order
 *   store_commit       write each touched snapshot once, COMMIT
 *   (or store_rollback on any negative return)
 * then XACK (and dead-letter the entries store_apply refused).
 *
 * Schema (version 3, PRAGMA user_version; migrations only go forward; a
 * read-only open takes any older version as it is):
 *   events(run, seq, parent_seq, call_id, stream, entry_ms, entry_seq,
 *          ord_major, ord_minor, type, data, produced_ms, persisted_ms)
 *     rowid table.  stream and entry_ms/entry_seq are the logical stream and
 *     id (origin_stream/origin_id for a re-driven dead letter), see event.h;
 *     (ord_major, ord_minor, entry_ms, entry_seq) is the order key; data is
 *     the field as written; produced_ms is ts.  Partial indexes:
 *       UNIQUE (run, seq)             WHERE seq IS NOT NULL: dedupe key of
 *                                     events with seq, and their order
 *       (run, ord_major, ord_minor, entry_ms, entry_seq)
 *                                     WHERE seq IS NULL: order of the others
 *       UNIQUE (run, call_id)         WHERE seq IS NULL AND type = 'tool.output'
 *                                       AND call_id IS NOT NULL
 *       UNIQUE (stream, entry_ms, entry_seq) for every other event
 *     so an event with seq costs two b-tree inserts (table + one index).
 *   snapshots(run PRIMARY KEY, status, complete, body, event_count, last_seq,
 *             updated_ms, ord_major, ord_minor, ord_ms, ord_seq, archived)
 *     body is the snapshot JSON; ord_* is the order key of the last applied
 *     event; updated_ms is the wall clock of the commit that wrote it.
 *   meta(key PRIMARY KEY, value)  (version 2) STORE_META_* below.
 *   (version 3) snapshots.quarantined: a conflicting duplicate was seen
 *     (STORE_CONFLICT); forgotten(run PRIMARY KEY, pos_ms, pos_seq,
 *     forgotten_ms): each forgotten run's forget position (store_forget).
 *   (version 4) lease(id = 1, holder, expires_ms): the writer lease
 *     (store_lease_take).
 *
 * Checkpoints (issue 14): a run's snapshots row is a checkpoint, not the
 * run's current state: the reducer applied to the run's stored events up to
 * the row's position (ord_*), event_count of them.  Rewriting ~200 growing
 * snapshots a batch cost more than the events themselves (192 MB of JSON
 * for 13.9 MB of events), so an in-progress run's row is written at most
 * every snapshot_interval_ms (store_opts; 0 = at every batch that touches
 * the run) and at least that often while its events arrive, and rows still
 * behind are written by store_flush (the worker's idle hook, and before it
 * exits) or when their cache entry is about to be evicted.  Written in the
 * batch's own transaction, whatever the interval:
 *   - a run that is terminal (completed, failed, cancelled) after the
 *     batch or was before it: a terminal row covers every stored event;
 *   - a run that got an event sorting at or before the row's position (a
 *     late delivery, a re-driven dead letter): the row is rebuilt from the
 *     stored events, so a row is always a valid prefix of them;
 *   - a run quarantined before it had a row.
 * So invariant: row = reducer(stored events of the run with key <= row's
 * position), event_count = their number.  The events after it are the
 * run's "tail".  Whoever uses a row catches up on the tail first:
 *   - store_snapshot_get (every exact read: streamvisorctl snapshot,
 *     --wait) reads the row and reduces the tail with the workers' reducer,
 *     in one read transaction, so what it returns always equals the reducer
 *     over every stored event;
 *   - a writer that loads a row (cache miss, crash, another connection
 *     committed since its entry was checked) replays the tail before it
 *     applies anything new, and knows it is behind from the events table
 *     (the run's event count; the tail query), not from the row alone.
 * Readers of the raw row (sqlite3, a dashboard) see a state up to
 * snapshot_interval_ms + one batch old for in-progress runs (abandoned
 * ones included, when the worker flushes); terminal rows are exact.
 *
 * Applying an event: insert it (a duplicate changes nothing); if it sorts
 * after the run's last applied event, the reducer applies it in place (fast
 * path), otherwise (a late event) the run is rebuilt from its stored events
 * at commit, once per batch, starting from the newest state known to be a
 * valid prefix of the stored events: a stale cached state whose position
 * still holds exactly the events it has seen (events are only ever added,
 * so equal counts prove it), else the row's body when no event of the batch
 * sorts before the row's position, else the beginning.
 *
 * Snapshot cache: an LRU of snapshots (json + last applied order key +
 * event_count + row id + the row's position) kept across batches; an entry
 * holds the run's current state, its row may lag behind.  An entry checked
 * or written by this connection while no other connection has committed
 * since (PRAGMA data_version unchanged) is used as it is.  Otherwise, the
 * first time a transaction touches the run, the entry is checked against
 * the events table: the run's stored event count equal to the entry's
 * proves it current (events are only ever added; forget and prune drop
 * the entry); else the newest valid prefix (the entry, checked with the
 * count of stored events up to its position, or the row, checked the same
 * way, preferred when more than CATCHUP_MAX events ahead) catches up on
 * the events after it.  A touched entry is taken out of the cache for the
 * transaction (changes are made on it alone): the commit puts it back, a
 * rollback frees it, so the cache never holds uncommitted state (a row a
 * rolled-back entry had not written yet is caught up by its next user).
 *
 * Reducer errors: reducer_check() decides them from the event alone before
 * the insert, so a refused entry leaves nothing behind and the batch goes
 * on: the effect of rolling back a per-entry SAVEPOINT, without paying for
 * SAVEPOINT/RELEASE on every entry (about 2 us each, measured).  Should the
 * reducer still refuse an inserted event, that row is deleted again.
 *
 * Files: the database directory is created 0750 (setgid when a group is
 * given), the database 0640 (SQLite gives -wal/-shm the same mode), all
 * chowned to opts->group when given.  WAL mode (auto-checkpoint every 8192
 * pages, so hot pages are copied back less often), synchronous FULL or
 * NORMAL, secure_delete FAST, a busy handler of its own sleeping 1, 2, 4, 8,
 * then 10 ms up to busy_timeout_ms.
 *
 * Fault seam (fault-injection builds): while fault_active("commit") holds,
 * the VFS fails every write of the COMMIT with SQLITE_FULL, as a full disk
 * does; store_commit then rolls back and returns -ENOSPC.
 *
 * Return values: 0 or a positive STORE_* code, or a negative errno
 * (-EBUSY busy/locked past the timeout, -ENOSPC disk full, -EROFS read-only,
 * -EIO other I/O, -ENOMEM, -EPROTO schema newer than this build, -EINVAL
 * misuse, -ESTALE the writer lease was lost); store_errmsg() tells more.  Errors are logged where they start. */
#ifndef SV_STORE_H
#define SV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "sv_config.h"

#define STORE_SCHEMA_VERSION 4

/* Rows of the meta table (schema 2): every writer's store_open records
 * its reducer's name (reducer_kind_name) and version (reducer_version), so
 * a reader knows how the file's snapshots were made.  A file written
 * before schema 2, or not yet opened by a writer, has no such rows: the
 * reducer is unknown. */
#define STORE_META_REDUCER "reducer"
#define STORE_META_REDUCER_VERSION "reducer_version"
/* (schema 3) The id of the last NS:forget entry applied to the file. */
#define STORE_META_FORGET_LAST "forget_last"

/* The dead-letter reason of STORE_CONFLICT. */
#define STORE_CONFLICT_REASON "conflicts with stored event"

enum {
	STORE_OK = 0,
	STORE_DUPLICATE = 1,     /* dedupe key already stored: ack, nothing changed */
	STORE_REDUCER_ERROR = 2, /* the reducer refuses the event: dead-letter it (err) */
	STORE_ARCHIVED = 3,      /* the run's events were pruned: dead-letter "run archived" */
	STORE_FORGOTTEN = 4,     /* written before its run's forget position: ack, never store */
	STORE_CONFLICT = 5,      /* conflicting duplicate, or an event of a quarantined run:
				  * dead-letter with STORE_CONFLICT_REASON (err) */
	STORE_RERUN = 6,         /* a tool.output for a call whose output is stored, from
				  * another entry (the tool ran again): ack, the first stays */
};

struct store;

struct store_opts {
	enum sqlite_sync synchronous;
	int64_t busy_timeout_ms;   /* <= 0: 5000 */
	const char *group;         /* NULL or "": leave the group alone */
	enum reducer_kind reducer;
	size_t cache_entries;      /* 0: 1024 */
	bool readonly;             /* existing database, read only (streamvisorctl); the
				    * reducer of reads is the file's (STORE_META_REDUCER),
				    * else this one */
	int64_t snapshot_interval_ms; /* in-progress rows at most this often; 0: every batch */
	/* Called about every 100 ms while a schema migration runs (NULL:
	 * none): a migration of a multi-GB file takes minutes, and the
	 * worker must go on heartbeating meanwhile (or be killed as hung,
	 * and roll the migration back, forever). */
	void (*tick)(void *arg);
	void *tick_arg;
};

/* Open (creating the file, its directory and the schema when needed;
 * ":memory:" is a private in-memory database, for tests).  Returns 0 and
 * *out, or a negative errno (logged). */
int store_open(struct store **out, const char *path, const struct store_opts *opts);
/* Rolls back an open transaction. */
void store_close(struct store *s);

int store_begin(struct store *s);
/* Apply one event inside the transaction.  Returns STORE_OK,
 * STORE_DUPLICATE, STORE_FORGOTTEN, STORE_RERUN, STORE_REDUCER_ERROR,
 * STORE_ARCHIVED or STORE_CONFLICT (with a message in err), or a negative
 * errno after which the caller must store_rollback the whole batch. */
int store_apply(struct store *s, const struct sv_event *ev, char *err, size_t errlen);
/* Rebuild what needs it, write each touched snapshot once (updated_ms =
 * now), COMMIT.  On failure the transaction is rolled back (touched cache
 * entries evicted) and a negative errno returned. */
int store_commit(struct store *s);
/* ROLLBACK (if a transaction is open) and evict the touched cache entries. */
void store_rollback(struct store *s);

/* One run's committed snapshot.  Strings are malloc'd (store_snapshot_clear). */
struct store_snapshot {
	char *body;    /* the JSON */
	char *status;  /* or NULL */
	bool complete, archived;
	int64_t event_count, last_seq;
	int64_t updated_ms;   /* when the row (the checkpoint) was written; 0: no row yet */
	int64_t tail_events;  /* stored events after the row, reduced by this read */
};
/* The exact snapshot of run: its row (checkpoint) and the stored events
 * after it reduced with the same reducer code as the workers, in one read
 * transaction (or inside the open one), so it always equals the reducer
 * over every stored event of the run.  Works on a read-only store.
 * Returns 0, -ENOENT when nothing of the run is stored, or a negative
 * errno. */
int store_snapshot_get(struct store *s, const char *run, struct store_snapshot *out);
void store_snapshot_clear(struct store_snapshot *snap);

/* Delete the events of runs whose status is terminal (completed, failed,
 * cancelled) and whose snapshot was last written before older_than_ms
 * (wall clock), and mark their snapshots archived; a later event for such a
 * run gets STORE_ARCHIVED.  Works in transactions of its own (never inside
 * a batch).  Returns the number of runs archived, or a negative errno. */
int64_t store_prune(struct store *s, int64_t older_than_ms);

/* Forget runs (streamvisorctl forget), in a transaction of its own (never
 * inside a batch): delete their events and snapshots (quarantine with
 * them), record pos (the forget position, an entry id) as each run's
 * tombstone, so that store_apply answers STORE_FORGOTTEN for an entry
 * whose logical id sorts before it, and record entry_id (the NS:forget
 * entry) as applied.  An entry_id not after the recorded one was applied
 * already (by another worker of the file): nothing is written.  Cached
 * state of the runs is dropped either way.  Returns the number of runs
 * that had a snapshot here, or a negative errno. */
int store_forget(struct store *s, const char *entry_id, uint64_t pos_ms, uint64_t pos_seq,
		 const char *const *runs, size_t n);
/* The id of the last NS:forget entry applied ("0-0" when none). */
int store_forget_last(struct store *s, char *id, size_t len);

/* The writer lease (issue 14).  One connection at a time commits batches
 * to a file: two writers on one file spent half their time waiting for
 * each other's lock and replaying each other's runs, so a pool of N
 * persistence workers has one writer and N - 1 hot standbys.
 *
 * store_lease_take takes (or renews) the lease for holder (unique per
 * process) for ttl_ms (CLOCK_MONOTONIC), in a transaction of its own,
 * when it is holder's already or, by mode: STORE_LEASE_EXPIRED, another
 * holder's lease expired; STORE_LEASE_FREE, also when no lease was ever
 * taken; STORE_LEASE_FORCE, always (the caller knows the holder is gone:
 * it got the holder's lock file, see worker_persist.c).  Returns 1 (held), 0 (another holder's lease is live: its name
 * in other when given) or a negative errno.  While held, store_commit
 * checks and extends it inside the batch's transaction, right before
 * COMMIT; a lease found lost (another connection took it after its
 * expiry) makes store_commit roll back and return -ESTALE, and the lease
 * is no longer held.  store_lease_release expires it, if still ours (clean
 * stop), so a standby takes over at once. */
enum store_lease_mode { STORE_LEASE_EXPIRED, STORE_LEASE_FREE, STORE_LEASE_FORCE };
int store_lease_take(struct store *s, const char *holder, int64_t ttl_ms, enum store_lease_mode mode,
		     char *other, size_t otherlen);
bool store_lease_held(const struct store *s);
void store_lease_release(struct store *s);

/* Write the rows of cached runs that are behind their state (in-progress
 * runs whose last row write is older than snapshot_interval_ms; all=true:
 * every run behind, e.g. before the worker exits), in a transaction of its
 * own (never inside a batch; the writer lease is checked before its
 * COMMIT, -ESTALE when lost).  Cheap when nothing is due (no transaction).
 * Returns the number of rows written, or a negative errno. */
int store_flush(struct store *s, bool all);
/* Milliseconds until the next row of a cached run falls due (0: due now;
 * -1: no run is behind): the longest a worker with nothing to read may
 * wait before calling store_flush(s, false). */
int64_t store_flush_due_ms(struct store *s);

/* Counters since store_open. */
struct store_stats {
	uint64_t applied, duplicates, refused, late, rebuilds, rebuild_events;
	uint64_t forgotten, conflicts, reruns, runs_forgotten;
	uint64_t cache_hits, cache_stale, cache_misses, snapshot_writes, commits;
	/* checkpoints: runs caught up on stored events after their row or
	 * cached state (and how many events that replayed), rows written by
	 * store_flush or ahead of an eviction, rows an interval kept unwritten */
	uint64_t catchups, catchup_events, flush_writes, writes_deferred;
	/* cumulative microseconds (CLOCK_MONOTONIC): reducer calls (applies,
	 * rebuilds, catch-ups), event INSERTs (and duplicate checks),
	 * snapshot writes + lease check + COMMIT */
	uint64_t reduce_us, insert_us, commit_us;
};
void store_stats(const struct store *s, struct store_stats *out);

/* The last error's text ("" when none). */
const char *store_errmsg(const struct store *s);

#endif
