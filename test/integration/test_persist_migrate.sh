#!/usr/bin/env bash
# Issue 14 done-when 7: a SQLite file of the previous release (schema 3,
# before the writer lease) of more than 1 GB migrates in place on the first
# start: its snapshots read the same before and after (streamvisorctl
# snapshot, and the raw rows), the worker stays RUNNING (no hang, no
# restart) while it migrates, and it goes on persisting.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

start_redis
pconfig persist_count=1
start_daemon
wait_for 20 'all_running 1' || fail "not RUNNING: $(worker_table 2>&1)"

check "a file written by the previous release: 60 runs, then schema 3 and 1 GiB of stored events"
gen --runs 60 --seed 11 --tools
wait_persisted 60 || fail "not persisted"
stop_daemon
# Back to the previous release's schema (3): no lease table.
sqlite3 "$DB" "DROP TABLE lease; PRAGMA user_version = 3;" || fail "downgrade"
# An old completed run of 16384 events of 64 KiB (> 1 GiB), its row
# covering them all, as a file that ran for long holds.
old_ms=$(($(now_ms) - 86400000))
sqlite3 "$DB" "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 16384)
	INSERT INTO events(run, seq, stream, entry_ms, entry_seq, ord_major, ord_minor, type, data, persisted_ms)
	SELECT 'bulk', i, 'events', $old_ms, i, i, 0, 'x.bulk', '{\"x\":\"' || printf('%.*c', 65536, 'x') || '\"}', $old_ms FROM c;
	INSERT INTO snapshots(run, status, complete, body, event_count, last_seq, updated_ms, ord_major, ord_minor, ord_ms, ord_seq)
	VALUES ('bulk', 'completed', 1, '{\"id\":\"bulk\",\"status\":\"completed\"}', 16384, 16384, $old_ms, 16384, 0, $old_ms, 16384);" ||
	fail "bulk insert"
size=$(stat -c %s "$DB")
[ "$size" -ge $((1024 * 1024 * 1024)) ] || fail "file is only $size bytes"
info "file: $size bytes, schema $(sqlite3 "$DB" 'PRAGMA user_version')"
runs=$(sq "SELECT run FROM snapshots WHERE run <> 'bulk' ORDER BY run")
before=$TMPD/before
mkdir -p "$before"
for r in $runs; do
	"$STREAMVISORCTL" -c "$CONF" snapshot "$r" >"$before/$r.json" || fail "snapshot $r before"
done
sq "SELECT run, status, complete, body, event_count, last_seq FROM snapshots ORDER BY run" >"$before/rows"

check "first start of this release: migrated in place, the worker RUNNING throughout"
start_daemon
wait_for 60 'grep -q "migrated schema to version" "$DLOG"' || fail "no migration logged"
t0=$(now_ms)
wait_for 30 'all_running 1' || fail "not RUNNING after the migration: $(worker_table 2>&1)"
info "RUNNING $(($(now_ms) - t0)) ms after the migration was logged"
[ "$(sqlite3 "$DB" 'PRAGMA user_version')" -ge 4 ] || fail "schema not migrated"
sleep 2
grep -q 'HUNG' "$DLOG" && fail "a worker was judged hung: $(grep -m 2 HUNG "$DLOG")"
[ "$(wfield t1/persist/0 restarts)" = 0 ] || fail "the worker restarted: $(worker_table 2>&1)"

check "snapshots read the same"
for r in $runs; do
	"$STREAMVISORCTL" -c "$CONF" snapshot "$r" >"$TMPD/after.json" || fail "snapshot $r after"
	cmp -s "$before/$r.json" "$TMPD/after.json" || fail "snapshot of $r differs after the migration"
done
sq "SELECT run, status, complete, body, event_count, last_seq FROM snapshots ORDER BY run" >"$TMPD/rows.after"
cmp -s "$before/rows" "$TMPD/rows.after" || fail "raw rows differ after the migration"

check "and it goes on persisting"
EV2=$TMPD/ev2.jsonl
gen --out "$EV2" --runs 20 --prefix more- --seed 12
wait_persisted 60 "$EV2" || fail "new runs not persisted after the migration"
check_snapshots "$EVENTS" || fail "old snapshots differ from the reference"
assert_no_fatal
ok "$((size / 1048576)) MiB file migrated in place; $(wc -w <<<"$runs") snapshots read the same; worker RUNNING, 0 restarts"
pass
