#!/usr/bin/env bash
# Checkpointed snapshots (issue 14, done-when 2 and 3), with the default
# pools[].snapshot_interval_ms (250) and two persistence workers (a writer
# and a standby):
#  - under load, `streamvisorctl snapshot` of in-progress runs read at
#    random moments equals the reference over the events stored at that
#    moment (0 mismatches), and every raw row read meanwhile is a valid
#    prefix of its run's stored events (ckpt.py reads);
#  - the raw row of an abandoned in-progress run is written within
#    snapshot_interval_ms + one batch of its last event being stored, with
#    the pool idle and with the pool busy on other runs;
#  - an event sorting before a run's checkpoint rewrites the row in its own
#    transaction;
#  - persistence workers SIGKILLed between checkpoints under load, some
#    runs abandoned in progress: afterwards every read through
#    streamvisorctl equals the reference, and every raw row too (the rows a
#    killed writer left behind are written by the next writer).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

CK="$PY $PT_DIR/ckpt.py"
INTERVAL=250
# One batch, generously (sanitizer builds, a shared machine): what the
# "+ one batch" of the bound may take here.
BATCH_MS=$(scaled 400)

start_redis
pconfig persist_count=2 batch=64 burst=63 burst_window=5000 max_retries=20 max_deliveries=15 hb_timeout=3000 claim_idle=3000
grep -q snapshot_interval_ms "$CONF" && fail "the test config sets snapshot_interval_ms: the default is under test"
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

check "exact reads of in-progress runs at random moments under load"
gen --runs 400 --items 3 --deltas 14 --window 150 --tools --chunk 200 --chunk-sleep 0.04 --seed 11 >"$TMPD/gen1" &
GEN=$!
$CK reads --db "$DB" --ctl "$STREAMVISORCTL" --sock "$SOCK" --seconds 6 --min 30 --seed 5 >"$TMPD/reads" ||
	fail "reads: $(cat "$TMPD/reads")"
wait "$GEN" || fail "gen failed: $(cat "$TMPD/gen1")"
info "$(cat "$TMPD/reads")"
wait_persisted 60 || fail "not every run was persisted"
check_snapshots || fail "terminal rows differ from the reference"
ok "$(tail -n 1 "$TMPD/reads")"

check "an abandoned run's raw row is written within snapshot_interval_ms + one batch (idle pool)"
for i in 1 2 3; do
	x() { rcli XADD events '*' run "ab-idle-$i" type "$@" >/dev/null; }
	x response.created seq 1 data '{}'
	x item.started seq 2 data '{"item_id":"m","kind":"message"}'
	x item.delta seq 3 data '{"item_id":"m","text":"a"}'
	ms=$($CK flushwait --db "$DB" --run "ab-idle-$i" --n 3) || fail "ab-idle-$i: $ms"
	info "ab-idle-$i: row written $ms ms after its last event was stored"
	[ "$ms" -le $((INTERVAL + BATCH_MS)) ] || fail "ab-idle-$i: row written after $ms ms > $INTERVAL + $BATCH_MS"
	sleep 0.$((RANDOM % 5))
done
ok "idle: rows of abandoned runs written within $INTERVAL + $BATCH_MS ms"

check "... and while the pool is busy with other runs"
gen --runs 300 --items 3 --deltas 14 --window 150 --chunk 100 --chunk-sleep 0.03 --seed 12 --prefix busy- \
	--out "$TMPD/ev2.jsonl" >"$TMPD/gen2" &
GEN=$!
sleep 0.5
for i in 1 2 3; do
	x() { rcli XADD events '*' run "ab-busy-$i" type "$@" >/dev/null; }
	x response.created seq 1 data '{}'
	x item.started seq 2 data '{"item_id":"m","kind":"message"}'
	ms=$($CK flushwait --db "$DB" --run "ab-busy-$i" --n 2) || fail "ab-busy-$i: $ms"
	info "ab-busy-$i: row written $ms ms after its last event was stored"
	[ "$ms" -le $((INTERVAL + BATCH_MS)) ] || fail "ab-busy-$i: row written after $ms ms > $INTERVAL + $BATCH_MS"
done
kill -0 "$GEN" 2>/dev/null || info "(the load ended before the last check)"
wait "$GEN" || fail "gen failed: $(cat "$TMPD/gen2")"
ok "busy: rows of abandoned runs written within $INTERVAL + $BATCH_MS ms"

check "an event sorting before a checkpoint rewrites the row in its own transaction"
x() { rcli XADD events '*' run late-1 type "$@" >/dev/null; }
x response.created seq 1 data '{}'
x item.started seq 2 data '{"item_id":"m","kind":"message"}'
x item.delta seq 3 data '{"item_id":"m","text":"a"}'
x item.delta seq 5 data '{"item_id":"m","text":"c"}'
x item.delta seq 6 data '{"item_id":"m","text":"d"}'
$CK flushwait --db "$DB" --run late-1 --n 5 >/dev/null || fail "late-1: no checkpoint of its 5 events"
x item.delta seq 4 data '{"item_id":"m","text":"b"}'
out=$($CK samerow --db "$DB" --run late-1 --n 6) || fail "$out"
[ "$(sq "SELECT json_extract(body, '\$.output[0].content') FROM snapshots WHERE run = 'late-1'")" = abcd ] ||
	fail "late-1 row content: $(sq "SELECT body FROM snapshots WHERE run = 'late-1'")"
ok "$out"

check "persistence workers SIGKILLed between checkpoints under load, runs abandoned in progress"
STOP=$TMPD/stop-killer
"$PY" "$PT_DIR/killer.py" "$STREAMVISORCTL" "$SOCK" "$DAEMON_PID" "$STOP" 0.3 400 "$TMPD/kills.log" >"$TMPD/kills" &
KILLER=$!
t0=$(now_ms)
$CK partial --sock "$RSOCK" --out "$TMPD/ev3.jsonl" --runs 40 --prefix kab- >/dev/null
gen --runs 400 --items 3 --deltas 14 --window 200 --tools --chunk 200 --chunk-sleep 0.05 --seed 13 --prefix kill- \
	--out "$TMPD/ev3.jsonl" --append >"$TMPD/gen3"
$CK partial --sock "$RSOCK" --out "$TMPD/ev3.jsonl" --runs 40 --prefix kab2- --seed 8 >/dev/null
wait_for 15 '[ $(($(now_ms) - t0)) -ge 6000 ]' || true
touch "$STOP"
wait "$KILLER" || true
kills=$(cat "$TMPD/kills")
info "killer: $kills SIGKILLs"
[ "$kills" -ge 5 ] || fail "only $kills kills happened: the test proves little"
# every produced event: the three loads, 9 + 6 abandoned, 6 late-1
want=$(($(wc -l <"$EVENTS") + $(wc -l <"$TMPD/ev2.jsonl") + $(wc -l <"$TMPD/ev3.jsonl") + 15 + 6))
wait_for 60 '[ "$(events_rows)" -ge $want ]' || fail "not every event was stored: $(events_rows) rows, want $want"
[ "$(events_rows)" = "$want" ] || fail "events rows $(events_rows), want $want"
wait_pending_zero 40 || fail "XPENDING events $GROUP stays $(pending_count)"
out=$($CK exact --db "$DB" --ctl "$STREAMVISORCTL" --sock "$SOCK") || fail "$out"
info "$out"
# The rows left behind by killed writers are written by the next one,
# those of its own runs when due: give it the interval and a batch.
sleep 1
out=$($CK exact --db "$DB" --ctl "$STREAMVISORCTL" --sock "$SOCK" --raw) || fail "$out"
wait_for 20 'all_running 2' || fail "workers not all RUNNING after the storm: $(worker_table 2>&1)"
assert_no_fatal
ok "$kills kills: $out"
pass
