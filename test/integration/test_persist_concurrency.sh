#!/usr/bin/env bash
# 4 persistence workers on one SQLite file, 2000 runs interleaved in one
# stream (every run's events spread over many batches, tool outputs
# arriving after later seqs).  One worker writes at a time (the file's
# lease, issue 14); the writer is SIGKILLed twice under load, so the runs
# move between writers mid-way: every snapshot equals a single-process,
# in-order reference reduction (SPEC §5 correctness rule).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

start_redis
pconfig persist_count=4 batch=64
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"

# The pid of the one worker that is not a standby (the writer).
writer_pid() {
	rcli HGETALL "$SV_NS:workers" | $PY -c '
import json, sys
l = sys.stdin.read().split("\n")
w = [json.loads(l[i+1]) for i in range(0, len(l) - 1, 2) if "/persist/" in l[i]]
w = [d["pid"] for d in w if d.get("status") not in ("standby", "starting", "stopping")]
print(w[0] if len(w) == 1 else "")'
}

check "one writer, 3 standbys"
wait_for 20 '[ -n "$(writer_pid)" ]' || fail "not exactly one writer: $(worker_table 2>&1)"
standbys=$(ctl status | grep -c ' standby ' || true)
[ "$standbys" = 3 ] || fail "expected 3 standbys: $(worker_table 2>&1)"

check "2000 runs interleaved round-robin, pipelined XADD, while the writer is SIGKILLed twice"
gen --runs 2000 --items 2 --deltas 3 --tools --seed 7 &
gen_pid=$!
n_total=$((2000 * 14))
for frac in 3 2; do
	wait_for 60 '[ "$(events_rows)" -ge $((n_total / frac)) ]' || fail "no progress: $(events_rows) rows"
	w=$(writer_pid)
	[ -n "$w" ] || fail "no single writer under load: $(worker_table 2>&1)"
	kill -KILL "$w"
	killed="${killed:-}$w "
	info "SIGKILLed writer $w at $(events_rows) event rows"
	wait_for 20 '[ -n "$(writer_pid)" ] && [ "$(writer_pid)" != '"$w"' ]' || fail "no new writer after the kill"
done
wait "$gen_pid"
n=$(wc -l <"$EVENTS")
t0=$(now_ms)
wait_persisted 75 || fail "not every run was persisted"
info "$n events persisted within $(($(now_ms) - t0)) ms of the last XADD"

check "snapshots equal the reference reducer; events rows exact"
check_snapshots --exact || fail "snapshots differ from the in-order reference"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + COUNT 3)"
bad=$(sq "SELECT count(*) FROM snapshots WHERE status <> 'completed' OR complete <> 1")
[ "$bad" = 0 ] || fail "$bad snapshots not completed/complete"
# The runs moved between writers mid-way (the counters of a killed
# writer's replacement start again at 0, so the kills are the evidence).
info "writers SIGKILLed under load: $killed; writer now $(writer_pid)"
assert_no_fatal
ok "2000 runs / $n events: every snapshot equals the reference, 0 pending, no dead letters"
pass
