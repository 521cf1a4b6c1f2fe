#!/usr/bin/env bash
# Issue 11, done-when 1: per-run streams matched by a pattern.  Both pools
# (persistence and tool, echo tool) read only `codex:run:*:events`; the
# daemon starts before any run stream exists.  2,000 runs are then written,
# each into its own stream codex:run:<id>:events, every 10th with a
# tool.call:
#  - every snapshot equals the in-order reference reduction (pt.py), with
#    the daemon's own tool.outputs folded in; one events row per event;
#  - exactly one tool.output per call, in the run's own stream, none
#    elsewhere; both groups on every run stream, nothing pending, no lag;
#  - nothing is created literally as `codex:run:*:events`, no dead letters.
# Then, with the daemon idle for longer than block_ms (workers sitting in a
# 20 s blocking XREADGROUP), a brand-new stream's first run is persisted
# without a reload well within the remaining block time (the discoverer
# must wake the blocked readers); the measured delay is logged.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

RUNS=${SV_PAT_RUNS:-2000}
BLOCK_MS=20000                      # long blocking reads: see the idle check below
DEADLINE_S=$(scaled 8)              # discover_ms (1 s) + 100 ms is the contract; 8 s is generous
start_redis
# block_ms <= heartbeat.interval_ms, timeout >= 3 x interval, claim_idle >=
# timeout, block_ms < command_timeout_ms.
pat_config persist_count=2 tools_count=2 block_ms=$BLOCK_MS hb_interval=$BLOCK_MS \
	hb_timeout=$((3 * BLOCK_MS)) claim_idle=$((3 * BLOCK_MS)) command_timeout=$((BLOCK_MS + 10000))
# Streams never go idle here (idle_ms: an hour): the workers' blocking reads
# name every run stream and are not cut short by idle re-checks, so the
# new stream below must be found while they sit in a 20 s XREADGROUP
# (test_pattern_idle covers the active read set).
sed -i -E "s/kind = \"(persistence|tool)\"; /&idle_ms = 3600000; /" "$CONF"
"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "config rejected: $(cat "$TMPD/t.out")"
grep -F "pattern $PAT" "$TMPD/t.out" || fail "-t does not list the pattern: $(cat "$TMPD/t.out")"

[ -z "$(pat_keys 'codex:*')" ] || fail "run streams exist before the start: $(pat_keys 'codex:*' | head -3)"
start_daemon
wait_for 30 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"
snapshot_pids >/dev/null
sleep 1
[ -z "$(pat_keys 'codex:*')" ] || fail "the daemon created keys matching the pattern by itself: $(pat_keys 'codex:*' | head -3)"
ok "daemon up on a pattern with no matching stream; no key created"

check "$RUNS runs, each in its own stream $PFMT, every 10th with a tool.call, written while the daemon runs"
$PT gen --sock "$RSOCK" --out "$EVENTS" --runs "$RUNS" --items 1 --deltas 1 --window 50 \
	--tool-every 10 --stream-fmt "$PFMT" --seed 11 --prefix r-
n=$(wc -l <"$EVENTS")
nstreams=$(pat_keys | wc -l)
[ "$nstreams" = "$RUNS" ] || fail "$nstreams run streams after the producer, want $RUNS"
t0=$(now_ms)
wait_persisted $(scaled 240) || { pat_diag; fail "not every run was persisted"; }
info "$n events in $RUNS streams persisted within $(($(now_ms) - t0)) ms of the last XADD"

check "one tool.output per tool.call, in the run's own stream"
$PT outputs --sock "$RSOCK" --events "$EVENTS" --stream-fmt "$PFMT" --timeout $(scaled 180) --append \
	|| { pat_diag; fail "tool outputs wrong (see above)"; }
wait_persisted $(scaled 120) || fail "the tool.outputs were not all persisted"
ok "every call answered once, in its own stream"

check "every snapshot equals the reference reduction; events rows exact"
check_snapshots --exact || fail "snapshots differ from the in-order reference"
pat_keys >"$TMPD/streams.txt"
[ "$(wc -l <"$TMPD/streams.txt")" = "$RUNS" ] || fail "$(wc -l <"$TMPD/streams.txt") run streams, want $RUNS"
wait_for $(scaled 60) 'pat_groups_ok "$TMPD/streams.txt" >"$TMPD/groups.out"' \
	|| fail "groups on the run streams: $(cat "$TMPD/groups.out")"
cat "$TMPD/groups.out"
[ "$(rcli EXISTS "$PAT")" = 0 ] || fail "a stream literally named $PAT exists"
[ -z "$(pat_dead_keys)" ] || fail "dead letters: $(pat_dead_keys | head -3)"
bad=$(sq "SELECT count(*) FROM snapshots WHERE status <> 'completed' OR complete <> 1")
[ "$bad" = 0 ] || fail "$bad snapshots not completed/complete"
per=$(rcli HGETALL "$SV_NS:workers" | $PY -c '
import json, sys
l = sys.stdin.read().split("\n")
print(" ".join("%s=%s" % (l[i], json.loads(l[i+1]).get("processed")) for i in range(0, len(l) - 1, 2)))')
info "processed per worker: $per"
assert_no_fatal
ok "$RUNS runs / $n events in per-run streams: snapshots equal the reference, both groups at lag 0, no dead letters"

check "idle > block_ms, workers blocked in XREADGROUP: a brand-new stream is read without a reload"
reloads0=$(log_count 'reload')
sleep $(($(scaled $BLOCK_MS) / 1000 + 2))
ids() {
	local pool=$1 w out=""
	for w in $(status_json | pyjson '" ".join(w["name"] for w in d["workers"] if w["pool"] == "'"$pool"'")'); do
		# a persistence standby reads nothing (the file's writer does)
		[ "$(hbfield "$w" status)" = standby ] && continue
		out+="${out:+,}$(hbfield "$w" client_id)"
	done
	echo "$out"
}
pids=$(ids persist) tids=$(ids tools)
info "CLIENT IDs from the heartbeats: persist $pids, tools $tids"
[[ $pids =~ ^[0-9]+$ ]] || fail "expected one persistence writer with a client_id: $(rcli HGETALL "$SV_NS:workers")"
unb0=$(unblock_calls)
rc=0
late=$($PY "$SV_TEST_DIR/persist/pat_late.py" --sock "$RSOCK" --db "$DB" --events "$EVENTS" --run late-00001 \
	--fmt "$PFMT" --block-s $(($(scaled $BLOCK_MS) / 1000)) --deadline-s "$DEADLINE_S" \
	--persist-ids "$pids" --tool-ids "$tids") || rc=$?
echo "$late"
info "new stream while blocked: first event persisted after $(pyjson 'd.get("first_ms")' <<<"$late") ms," \
	"whole run after $(pyjson 'd.get("all_ms")' <<<"$late") ms, tool.output after $(pyjson 'd.get("tool_output_ms")' <<<"$late") ms" \
	"(CLIENT UNBLOCK calls at Redis: $unb0 -> $(unblock_calls))"
case $rc in
0) ;;
3) fail "the persistence workers were never blocked in XREADGROUP with enough block time left: $late" ;;
*) fail "a new stream was not persisted within ${DEADLINE_S}s while the workers were blocked (their blocks had >= $((DEADLINE_S + 1)) s left): $late" ;;
esac
[ "$(log_count 'reload')" = "$reloads0" ] || fail "something reloaded: $(grep reload "$DLOG" | tail -3)"
$PT outputs --sock "$RSOCK" --events "$EVENTS" --stream-fmt "$PFMT" --timeout $(scaled 60) --append \
	>"$TMPD/late-out.txt" || fail "tool output for the new stream: $(cat "$TMPD/late-out.txt")"
# outputs --append adds only the outputs not in EVENTS yet.
wait_persisted $(scaled 60) || fail "the new run's tool.output was not persisted"
check_snapshots --exact || fail "snapshots differ from the reference after the new stream"
assert_no_fatal
ok "new stream persisted $(pyjson 'd["all_ms"]' <<<"$late") ms after its XADD with every worker blocked, no reload"
pass
