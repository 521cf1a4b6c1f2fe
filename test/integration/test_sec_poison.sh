#!/usr/bin/env bash
# A poison entry (sv.test.crash: the fault-injection build's reducer raises
# SIGSEGV) among good events, twice: it is found alone and ends in
# events:dead with a reason about its deliveries, it is the only dead
# letter, the persist pool never reaches FATAL (status --json and
# NS:supervisor), and every other event is persisted exactly.  Two workers,
# so a peer may claim the poison too; start_ms = 1000 so that the crashes of
# restarted workers count as failed starts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams

OPS="$PY $SV_TEST_DIR/ops/ops.py"
DB=$TMPD/snap.db
RUNS=$TMPD/runs.txt

start_redis
write_config persist_count=2 tools_count=0 log_level=info start_ms=1000 max_deliveries=3 max_retries=5 \
	claim_idle=1000
start_daemon
wait_for 20 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
SUP0=$(sup_last_id)

pending() { rcli XPENDING events persist@t1 | head -n 1; }
lag() { rcli --json XINFO GROUPS events | pyjson '[g for g in d if g["name"] == "persist@t1"][0]["lag"]'; }
dead_json() { rcli --json XRANGE events:dead - +; }
no_fatal() {
	local f
	f=$(status_json | pyjson '[w["name"] for w in d["workers"] if w["state"] == "FATAL"]') || fail "status --json unavailable"
	[ "$f" = "[]" ] || fail "workers FATAL: $f"
	f=$(sup_select "$SUP0" 'e.get("to") == "FATAL"')
	[ -z "$f" ] || fail "NS:supervisor shows FATAL: $f"
}

# round N: good runs, the poison, more good runs in one burst; then check.
round() {
	local n=$1 poison crashes0 crashes
	crashes0=$(grep -c 'killed by signal 11' "$DLOG" || true)
	check "round $n: a poison entry between good events"
	$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --runs 40 --prefix "p${n}a-" >/dev/null
	poison=$(rcli XADD events '*' run "poison-$n" type sv.test.crash seq 1 data '{"x":1}')
	$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --runs 40 --prefix "p${n}b-" >/dev/null
	info "poison entry $poison"
	# Poll status while it is handled: the pool never shows FATAL.
	local deadline=$(($(now_ms) + 60000))
	while :; do
		no_fatal
		[ "$(dead_json | pyjson 'len(d)')" -ge "$n" ] && [ "$(pending)" = 0 ] && [ "$(lag)" = 0 ] && break
		[ "$(now_ms)" -lt "$deadline" ] || fail "round $n: poison not dead-lettered / load not drained in 60 s (dead $(rcli XLEN events:dead), pending $(pending), lag $(lag))"
		sleep 0.3
	done
	crashes=$(($(grep -c 'killed by signal 11' "$DLOG" || true) - crashes0))
	dead_json >"$TMPD/dead.json"
	[ "$(pyjson 'len(d)' <"$TMPD/dead.json")" = "$n" ] ||
		fail "round $n: $(pyjson 'len(d)' <"$TMPD/dead.json") dead letters, want $n: $(pyjson '[dict(zip(e[1][0::2], e[1][1::2])).get("origin_id") for e in d]' <"$TMPD/dead.json")"
	local dl
	dl=$(pyjson '[dict(zip(e[1][0::2], e[1][1::2])) for e in d][-1]' <"$TMPD/dead.json")
	info "dead letter: $dl"
	[ "$(pyjson 'd["origin_id"]' <<<"$dl")" = "$poison" ] || fail "round $n: the dead letter is not the poison entry: $dl"
	[ "$(pyjson 'd["type"]' <<<"$dl")" = sv.test.crash ] || fail "round $n: dead letter lacks the original type: $dl"
	[ "$(pyjson 'd["run"]' <<<"$dl")" = "poison-$n" ] || fail "round $n: dead letter lacks the original run: $dl"
	pyjson 'd["reason"]' <<<"$dl" | grep -qi deliver || fail "round $n: reason does not mention deliveries: $(pyjson 'd["reason"]' <<<"$dl")"
	[ "$(pyjson 'int(d["deliveries"]) > 3' <<<"$dl")" = true ] || fail "round $n: deliveries $(pyjson 'd["deliveries"]' <<<"$dl"), want > max_deliveries 3"
	[ "$crashes" -ge 1 ] || fail "round $n: the poison never crashed a worker (fault injection build?)"
	[ "$crashes" -le 3 ] || fail "round $n: $crashes crashes for one poison entry, at most max_deliveries 3"
	wait_for 20 'all_running 2' || fail "round $n: workers not RUNNING after the poison: $(worker_table 2>&1)"
	snapshot_pids >/dev/null
	no_fatal
	$OPS checkdb --db "$DB" --runs-file "$RUNS" --exact || fail "round $n: good events not persisted exactly"
	[ "$(sqlite3 -readonly "$DB" "SELECT count(*) FROM events WHERE run LIKE 'poison-%'")" = 0 ] || fail "the poison event was stored"
	ok "round $n: poison dead-lettered alone ($(pyjson 'd["reason"]' <<<"$dl"), deliveries $(pyjson 'd["deliveries"]' <<<"$dl")) after $crashes worker crash(es); no FATAL; 80 good runs persisted"
}

round 1
round 2

check "dead list names the poison"
ctl dead list >"$TMPD/dl.txt" 2>&1 || fail "dead list failed: $(cat "$TMPD/dl.txt")"
grep -q 'poison-2\|sv.test.crash' "$TMPD/dl.txt" || info "dead list does not show run/type: $(head -n 3 "$TMPD/dl.txt")"
no_fatal
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
