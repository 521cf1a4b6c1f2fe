#!/usr/bin/env bash
# ~50,000 events while a random persistence worker is SIGKILLed every
# ~200 ms: afterwards exactly one events row per produced event, every
# snapshot equals the in-order reference, and nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

# burst is raised to its maximum (63; the crash history holds 64) and its
# window shortened so that the kill storm (a test artefact) does not put the
# pool into BACKOFF; the killer only picks workers up for > start_ms, so no
# start counts as failed.  Every kill redelivers the entries in the victim's
# hands (and claims redeliver whole batches), so max_deliveries is raised
# (< max_retries): a healthy entry must not be taken for a poison one.  A
# 3 s heartbeat timeout keeps slow (sanitizer) builds from being killed as
# HUNG on top of the storm.
start_redis
pconfig persist_count=4 batch=64 burst=63 burst_window=5000 max_retries=20 max_deliveries=15 hb_timeout=3000 claim_idle=3000
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"

STOP=$TMPD/stop-killer
"$PY" "$PT_DIR/killer.py" "$STREAMVISORCTL" "$SOCK" "$DAEMON_PID" "$STOP" 0.2 400 "$TMPD/kills.log" >"$TMPD/kills" &
KILLER=$!

check "produce 1000 runs x 50 events in slices while workers are being killed"
t0=$(now_ms)
gen --runs 1000 --items 3 --deltas 14 --window 200 --chunk 500 --chunk-sleep 0.05 --seed 3
n=$(wc -l <"$EVENTS")
# Keep killing while the backlog is worked off: until half is persisted and
# 8 s have passed, 15 s at most.
wait_for 15 '[ "$(events_rows)" -ge $((n / 2)) ] && [ $(($(now_ms) - t0)) -ge 8000 ]' || true
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
if [ "$(dead_len)" != 0 ]; then
	rcli --json XRANGE events:dead - + | pyjson '"; ".join(sorted(set(dict(zip(e[1][0::2], e[1][1::2]))["reason"] for e in d)))' >"$TMPD/reasons" || true
	fail "$(dead_len) good events dead-lettered; reasons: $(cat "$TMPD/reasons")"
fi
check_snapshots --exact || fail "snapshots differ from the in-order reference"
wait_for 20 'all_running 4' || fail "workers not all RUNNING after the storm: $(worker_table 2>&1)"
assert_no_fatal
lost=$(grep -c 'acked as lost' "$DLOG" || true)
[ "$lost" = 0 ] || fail "$lost entries acked as lost"
ok "$kills kills: $rows rows == $n produced, all snapshots equal the reference, 0 pending"
pass
