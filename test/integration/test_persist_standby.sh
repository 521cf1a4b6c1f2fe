#!/usr/bin/env bash
# Issue 14 done-when 4: a pool of 2 persistence workers on one SQLite file
# has one writer (the file's lease) and one hot standby.
# - SIGKILL of the writer under load: the standby takes over and the
#   entries the writer held are stored and acked within
#   heartbeat.timeout_ms + one batch.
# - SIGSTOP of the writer until the standby has taken over (its lease
#   expired), then SIGCONT: the resumed worker commits nothing (its batch
#   fails the lease check inside the transaction) and stands by.
# Nothing lost or doubled: every snapshot equals the reference, events rows
# exact, nothing pending, no dead letters.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

HB_TIMEOUT=4000
start_redis
pconfig persist_count=2 hb_interval=400 hb_timeout=$HB_TIMEOUT claim_idle=8000 block_ms=400 batch=64
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

# "PID NAME" of the one persistence worker that is not a standby.
writer() {
	rcli HGETALL "$SV_NS:workers" | $PY -c '
import json, sys
l = sys.stdin.read().split("\n")
w = [(json.loads(l[i+1]), l[i]) for i in range(0, len(l) - 1, 2) if "/persist/" in l[i]]
w = [(d["pid"], n) for d, n in w if d.get("status") not in ("standby", "starting", "stopping")]
print("%s %s" % w[0] if len(w) == 1 else "")'
}
# "PID NAME" of a persistence worker other than pid $1 that writes (a
# stopped writer's heartbeat still says what it said when stopped).
other_writer() {
	rcli HGETALL "$SV_NS:workers" | $PY -c '
import json, sys
l = sys.stdin.read().split("\n")
w = [(json.loads(l[i+1]), l[i]) for i in range(0, len(l) - 1, 2) if "/persist/" in l[i]]
w = [(d["pid"], n) for d, n in w if str(d["pid"]) != sys.argv[1] and d.get("status") not in ("standby", "starting", "stopping")]
print("%s %s" % w[0] if len(w) == 1 else "")' "$1"
}
# Entries pending to consumer NAME.
pending_of() { rcli XPENDING events "$GROUP" - + 100000 "$1" | grep -c . || true; }

wait_for 20 '[ -n "$(writer)" ]' || fail "no single writer: $(worker_table 2>&1)"
wait_for 10 '[ "$(ctl status | grep -c " standby ")" = 1 ]' || fail "expected one standby: $(worker_table 2>&1)"

check "SIGKILL of the writer under load: its entries are processed by the other within heartbeat.timeout_ms + one batch"
EV1=$TMPD/ev1.jsonl
gen --out "$EV1" --runs 600 --prefix k- --seed 3 --chunk 200 --chunk-sleep 0.02 &
gen_pid=$!
wait_for 30 '[ "$(events_rows)" -ge 600 ]' || fail "no progress: $(events_rows) rows"
# Kill it while it holds entries (a batch in hand).
held=0
for _ in $(seq 200); do
	read -r wpid wname <<<"$(writer)"
	[ -n "${wname:-}" ] || continue
	held=$(pending_of "$wname")
	[ "$held" -gt 0 ] && break
done
[ "$held" -gt 0 ] || fail "never saw the writer holding entries"
t0=$(now_ms)
kill -KILL "$wpid"
wait_for 20 '[ "$(pending_of "$wname")" = 0 ]' || fail "entries of $wname still pending"
took=$(($(now_ms) - t0))
info "writer $wname (pid $wpid) SIGKILLed holding $held entries: processed again (writer now: $(writer)) within $took ms"
[ "$took" -le $((HB_TIMEOUT * SV_TIME_SCALE + 1000)) ] ||
	fail "held entries processed after $took ms (> heartbeat.timeout_ms + one batch)"
wait "$gen_pid"
wait_persisted 60 "$EV1" || fail "not every run persisted after the kill"
ok "SIGKILL: $held held entries processed again after $took ms"

check "SIGSTOP of the writer until the standby took over, then SIGCONT: the resumed one commits nothing"
# Stopped while idle (blocked in XREADGROUP): a writer stopped inside its
# transaction keeps SQLite's write lock, so no standby can write until the
# master's hang detection kills it (heartbeat.timeout_ms); that race is
# retried.  Entries written while it is stopped may be delivered to its
# pending blocking read: it holds them, the new writer claims them.
EV2=$TMPD/ev2.jsonl
taken=0
for attempt in 1 2 3; do
	wait_for 20 'all_running 2 && [ -n "$(writer)" ] && [ "$(pending_count)" = 0 ]' ||
		fail "no idle writer/standby pair: $(worker_table 2>&1)"
	read -r spid sname <<<"$(writer)"
	sleep 1 # nothing is produced: two beats later its heartbeat counters are current
	processed0=$(hbfield "$sname" processed)
	kill -STOP "$spid"
	t0=$(now_ms)
	gen --out "$EV2.$attempt" --runs 100 --prefix "s$attempt-" --seed $((4 + attempt)) --chunk 10 --chunk-sleep 0.05 &
	gen_pid=$!
	# delivered to its blocking read while stopped (the producer may take a
	# moment to start on a loaded machine; the lease runs 2 s)
	wait_for 1 '[ "$(pending_of "$sname")" -gt 0 ]' || true
	held=$(pending_of "$sname")
	if wait_for $((HB_TIMEOUT * SV_TIME_SCALE / 1000)) '[ -n "$(other_writer "$spid")" ]' && pid_alive "$spid" &&
		[ "$held" -gt 0 ]; then
		taken=$(($(now_ms) - t0))
		kill -CONT "$spid"
		wait "$gen_pid"
		break
	fi
	kill -CONT "$spid" 2>/dev/null || true
	wait "$gen_pid"
	info "attempt $attempt: the stopped writer held $held entries, or was not replaced before hang detection; again"
done
[ "$taken" -gt 0 ] || fail "no takeover while the writer was stopped in 3 attempts: $(worker_table 2>&1)"
info "standby $(other_writer "$spid") took over $taken ms after SIGSTOP of $sname (pid $spid), which held $held entries (delivered to its blocking read while stopped)"
wait_for 10 '[ "$(hbfield "$sname" status)" = standby ]' || fail "the resumed worker is not a standby: $(hb "$sname")"
cat "$EV2".* >"$EV2"
wait_persisted 60 "$EV2" || fail "not every run persisted after the stop"
sleep 1
processed1=$(hbfield "$sname" processed)
[ "$processed1" = "$processed0" ] || fail "the resumed worker processed entries: $processed0 -> $processed1"
[ "$(hbfield "$sname" pid)" = "$spid" ] || fail "the resumed worker was replaced"
nc=$(grep "pid=$spid " "$DLOG" | grep -c 'not committed: the writer lease was lost' || true)
lost=$(grep "pid=$spid " "$DLOG" | grep -c 'writer lease lost' || true)
[ $((nc + lost)) -gt 0 ] || fail "the resumed worker never found its lease lost"
ok "SIGSTOP: taken over after $taken ms; the resumed worker committed nothing ($nc batch(es) refused) and stands by"

check "nothing lost or doubled"
cat "$EV1" "$EV2" >"$EVENTS"
check_snapshots --exact || fail "snapshots differ from the reference"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + COUNT 3)"
assert_no_fatal
ok "every snapshot equals the reference; 0 pending; no dead letters"
pass
