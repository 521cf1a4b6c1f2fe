#!/usr/bin/env bash
# ~50,000 events while a random persistence worker is SIGKILLed every
# ~200 ms: afterwards exactly one events row per produced event, every
# snapshot equals the in-order reference, and nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

# burst is raised so that the kill storm (a test artefact) does not put the
# pool into BACKOFF; the killer only picks workers up for > start_ms, so no
# start counts as failed.  max_deliveries 5 (< max_retries 8): an entry in a
# killed worker's hands is redelivered, and must not look like a poison one.
start_redis
pconfig persist_count=4 batch=64 burst=100000 max_retries=5 max_deliveries=3
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"

STOP=$TMPD/stop-killer
"$PY" "$PT_DIR/killer.py" "$STREAMVISORCTL" "$SOCK" "$DAEMON_PID" "$STOP" 0.2 400 "$TMPD/kills.log" >"$TMPD/kills" &
KILLER=$!

check "produce 1000 runs x 50 events in slices while workers are being killed"
t0=$(now_ms)
gen --runs 1000 --items 3 --deltas 14 --window 200 --chunk 500 --chunk-sleep 0.05 --seed 3
n=$(wc -l <"$EVENTS")
# Keep killing while the backlog is worked off (at least 5 s more).
wait_for 60 '[ "$(events_rows)" -ge $((n / 2)) ] && [ $(($(now_ms) - t0)) -ge 8000 ]' || true
touch "$STOP"
wait "$KILLER" || true
kills=$(cat "$TMPD/kills")
info "killer: $kills SIGKILLs over $(($(now_ms) - t0)) ms; events rows then: $(events_rows)/$n"
[ "$kills" -ge 10 ] || fail "only $kills kills happened: the test proves little"

check "everything persisted exactly once"
wait_persisted 60 || fail "not every run was persisted; rows $(events_rows)/$n, pending $(pending_count), dead $(dead_len)"
info "all persisted $(($(now_ms) - t0)) ms after the load started"
wait_pending_zero 40 || fail "XPENDING events $GROUP stays $(pending_count)"
rows=$(events_rows)
[ "$rows" = "$n" ] || fail "events rows = $rows, want $n"
[ "$(dead_len)" = 0 ] || fail "$(dead_len) dead letters (good events dead-lettered?): $(rcli XRANGE events:dead - + COUNT 2)"
check_snapshots --exact || fail "snapshots differ from the in-order reference"
wait_for 20 'all_running 4' || fail "workers not all RUNNING after the storm: $(worker_table 2>&1)"
assert_no_fatal
lost=$(grep -c 'acked as lost' "$DLOG" || true)
[ "$lost" = 0 ] || fail "$lost entries acked as lost"
ok "$kills kills: $rows rows == $n produced, all snapshots equal the reference, 0 pending"
pass
