#!/usr/bin/env bash
# Issue 11: status and metrics summarise pattern streams per pattern and
# group, from the monitor's paced walk; never one row per stream.  Both
# pools read `codex:run:*:events`.
#  (a) 50 run streams: `status --json` has one row per pattern and group
#      (50 matched, nothing active, with an age); every worker has the
#      "streams" and "active" of its heartbeat; the text has a "patterns:" section of 2 rows,
#      STREAMS/ACTIVE columns, no stream names; metrics has the
#      streamvisor_pattern_* families, valid.
#  (b) Paused, 2+3+4 new entries in 3 streams and one entry read by an
#      outside consumer: active 3, lag 8 + pending 1 for the persistence
#      group, lag 9 for the tool group, in status and metrics.
#  (c) Resumed: back to nothing active.
#  (d) A matching key whose name is not UTF-8: status and metrics still
#      answer, the monitor is not restarted, matched stays 50.
#  (e) 2,000 run streams: status prints one row per pattern and group,
#      metrics one sample per family and row.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"

# srow GROUP FIELD: FIELD of status's summary row of $PAT and GROUP.
srow() {
	status_json | pyjson '[r for r in d["patterns"] if r["pattern"] == "'"$PAT"'" and r["group"] == "'"$1"'"][0]["'"$2"'"]'
}
# row_is GROUP MATCHED ACTIVE LAG PENDING
row_is() {
	[ "$(srow "$1" matched)" = "$2" ] && [ "$(srow "$1" active)" = "$3" ] &&
		[ "$(srow "$1" lag)" = "$4" ] && [ "$(srow "$1" pending)" = "$5" ]
}
# both_are MATCHED ACTIVE LAG PENDING: both groups' rows say so.
both_are() { row_is "$GROUP" "$@" && row_is "$TGROUP" "$@"; }
# metric FILE SAMPLE: the value of one sample of a saved exposition.
metric() { $OPS prom "$1" --get "$2"; }
# pmetric FILE NAME GROUP: one streamvisor_pattern_* sample of $PAT.
pmetric() { metric "$1" "$2{pattern=\"$PAT\",group=\"$3\"}"; }
save_metrics() {
	ctl metrics >"$1" || fail "metrics exit $?"
	$OPS prom "$1" >/dev/null || { cat "$1"; fail "invalid exposition in $1"; }
}
monitor_restarts() { log_count "monitor exited"; }

start_redis
pat_config persist_count=1 tools_count=1 hb_interval=500 hb_timeout=3000 claim_idle=3000 block_ms=500
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

check "(a) 50 run streams: one summary row per pattern and group"
EV=$TMPD/ev.jsonl
$PT gen --sock "$RSOCK" --out "$EV" --runs 50 --items 1 --deltas 1 --stream-fmt "$PFMT" --prefix p- --seed 1
wait_persisted $(scaled 60) "$EV" || fail "runs not persisted"
pat_keys >"$TMPD/streams.txt"
[ "$(wc -l <"$TMPD/streams.txt")" = 50 ] || fail "$(wc -l <"$TMPD/streams.txt") run streams, want 50"
wait_for $(scaled 30) 'both_are 50 0 0 0' || { pat_diag; fail "status rows not 50 matched and idle: $(status_json)"; }
status_json >"$TMPD/st.json"
[ "$(pyjson 'len(d["patterns"])' <"$TMPD/st.json")" = 2 ] || fail "want 2 pattern rows: $(cat "$TMPD/st.json")"
pyjson 'all(isinstance(r[k], int) and not isinstance(r[k], bool) and r[k] >= 0 for r in d["patterns"] for k in
	("matched", "active", "lag", "pending", "oldest_pending_idle_ms", "missing", "age_ms"))' <"$TMPD/st.json" |
	grep -qx true || fail "pattern figures are not numbers: $(cat "$TMPD/st.json")"
pyjson 'max(r["age_ms"] for r in d["patterns"]) < 30000' <"$TMPD/st.json" | grep -qx true ||
	fail "pattern figures older than 30 s: $(cat "$TMPD/st.json")"
pyjson 'sorted(p for r in d["patterns"] for p in r["pools"])' <"$TMPD/st.json" | grep -qx '\["persist", "tools"\]' ||
	fail "rows do not name their pools: $(cat "$TMPD/st.json")"
grep -q 'codex:run:p-' "$TMPD/st.json" && fail "status --json names run streams"
# Every worker's heartbeat set sizes (--json shows them always): its 50
# streams, as its heartbeat in Redis says.
sets_relayed() {
	local w
	for w in "$SV_NODE/persist/0" "$SV_NODE/tools/0"; do
		[ "$(wfield "$w" streams)" = 50 ] &&
		[ "$(wfield "$w" streams)" = "$(hbfield "$w" streams)" ] &&
			[ "$(wfield "$w" active)" = "$(hbfield "$w" active)" ] &&
			[[ "$(wfield "$w" streams)" =~ ^[0-9]+$ ]] || return 1
	done
}
wait_for $(scaled 10) sets_relayed || fail "workers' streams/active not relayed: $(status_json)"
rc=0; ctl status >"$TMPD/st.out" || rc=$?
[ "$rc" = 0 ] || fail "status exit $rc: $(cat "$TMPD/st.out")"
cat "$TMPD/st.out"
grep -q '^patterns:' "$TMPD/st.out" || fail "no patterns section in status"
head -n 1 "$TMPD/st.out" | grep -q 'PENDING  STREAMS  ACTIVE  HEALTH' || fail "no STREAMS/ACTIVE columns"
[ "$(grep -cF "$PAT" "$TMPD/st.out")" = 2 ] || fail "want 2 rows of $PAT in status"
grep -F "$PAT" "$TMPD/st.out" | grep -F "$GROUP" | grep -qw 50 || fail "no row for $GROUP with 50 streams"
grep -q 'codex:run:p-' "$TMPD/st.out" && fail "status prints run streams"
save_metrics "$TMPD/m1.txt"
for g in "$GROUP" "$TGROUP"; do
	[ "$(pmetric "$TMPD/m1.txt" streamvisor_pattern_streams "$g")" = 50.0 ] || fail "streamvisor_pattern_streams of $g not 50"
	[ "$(pmetric "$TMPD/m1.txt" streamvisor_pattern_active_streams "$g")" = 0.0 ] || fail "active streams of $g not 0"
	pmetric "$TMPD/m1.txt" streamvisor_pattern_summary_age_seconds "$g" >/dev/null || fail "no age of $g's figures"
done
metric "$TMPD/m1.txt" "streamvisor_worker_streams{worker=\"$SV_NODE/persist/0\"}" | grep -qE '^[0-9]+\.0$' ||
	fail "no streamvisor_worker_streams of $SV_NODE/persist/0"
grep -q 'codex:run:p-' "$TMPD/m1.txt" && fail "metrics name run streams"
ok "status and metrics: 2 summary rows (50 matched, idle), worker set sizes, no per-stream rows"

check "(b) paused, 2+3+4 new entries in 3 streams, 1 read by an outsider"
ctl pause all >/dev/null || fail "pause all"
for w in "$SV_NODE/persist/0" "$SV_NODE/tools/0"; do
	wait_for $(scaled 10) '[ "$(hbfield "$w" status)" = paused ]' || fail "$w not paused: $(hb "$w")"
done
n=0
for s in $(sed -n '1p;20p;50p' "$TMPD/streams.txt"); do
	n=$((n + 1))
	for i in $(seq 1 $((n + 1))); do
		rcli XADD "$s" '*' run "late-$n" type response.created seq "$i" data '{}' >/dev/null
	done
done
first=$(sed -n 1p "$TMPD/streams.txt")
rcli XREADGROUP GROUP "$GROUP" outsider COUNT 1 STREAMS "$first" '>' >/dev/null
wait_for $(scaled 20) 'row_is "$GROUP" 50 3 8 1 && row_is "$TGROUP" 50 3 9 0' ||
	fail "want active 3 (lag 8 pending 1; lag 9 pending 0): $(status_json | pyjson 'd["patterns"]')"
ctl status | sed -n '/^patterns:/,$p'
sleep 1
save_metrics "$TMPD/m2.txt"
[ "$(pmetric "$TMPD/m2.txt" streamvisor_pattern_lag "$TGROUP")" = 9.0 ] || fail "metrics: lag of $TGROUP not 9"
[ "$(pmetric "$TMPD/m2.txt" streamvisor_pattern_pending "$GROUP")" = 1.0 ] || fail "metrics: pending of $GROUP not 1"
[ "$(pmetric "$TMPD/m2.txt" streamvisor_pattern_active_streams "$GROUP")" = 3.0 ] || fail "metrics: active of $GROUP not 3"
idle=$(pmetric "$TMPD/m2.txt" streamvisor_pattern_oldest_pending_idle_seconds "$GROUP")
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$idle" || fail "oldest pending idle $idle, want > 0"
ok "paused: active 3; lag 8 + pending 1 (oldest idle ${idle} s) and lag 9, in status and metrics"

check "(c) resumed: nothing active"
ctl resume all >/dev/null || fail "resume all"
wait_for $(scaled 30) 'both_are 50 0 0 0' || { pat_diag; fail "still active after resume: $(status_json | pyjson 'd["patterns"]')"; }
ok "resumed: 50 matched, nothing active"

check "(d) a matching key named with bytes that are not UTF-8"
restarts0=$(monitor_restarts)
rcli XADD $'codex:run:\xff\xfe:events' '*' run bad type response.created seq 1 data '{}' >/dev/null
rcli XADD $'codex:run:bad\xc3:events' '*' run bad type response.created seq 1 data '{}' >/dev/null
sleep $(scaled 3)
for i in 1 2 3; do
	rc=0; ctl status >"$TMPD/bad.out" 2>&1 || rc=$?
	[ "$rc" = 0 ] || fail "status exit $rc with a non-UTF-8 stream name: $(cat "$TMPD/bad.out")"
	save_metrics "$TMPD/m3.txt"
	sleep 0.5
done
both_are 50 0 0 0 || fail "matched changed with non-UTF-8 names: $(status_json | pyjson 'd["patterns"]')"
[ "$(monitor_restarts)" = "$restarts0" ] || fail "the monitor was restarted: $(grep -F 'monitor exited' "$DLOG" | tail -n 3)"
ok "status and metrics answer; non-UTF-8 names left out, the monitor kept running"

check "(e) 2,000 run streams: still one row per pattern and group"
"$PY" - "$SV_TEST_DIR" "$RSOCK" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from resp import Redis
r = Redis(sys.argv[2])
names = ["codex:run:bulk-%04d:events" % i for i in range(1950)]
for c in range(0, len(names), 500):
    r.pipeline([["XADD", n, "*", "run", n.split(":")[2], "type", "response.created", "seq", "1", "data", "{}"]
                for n in names[c:c + 500]])
PYEOF
[ "$(pat_keys | grep -c '^codex:run:[a-z0-9-]*:events$')" = 2000 ] || fail "want 2000 run streams"
wait_for $(scaled 90) 'both_are 2000 0 0 0' ||
	{ pat_diag; fail "not 2000 matched and idle: $(status_json | pyjson 'd["patterns"]')"; }
ctl status >"$TMPD/big.out" || fail "status: $(cat "$TMPD/big.out")"
cat "$TMPD/big.out"
[ "$(wc -l <"$TMPD/big.out")" -le 8 ] || fail "status printed $(wc -l <"$TMPD/big.out") lines for 2000 streams"
grep -q 'codex:run:bulk-' "$TMPD/big.out" && fail "status prints run streams"
[ "$(status_json | wc -c)" -lt 8192 ] || fail "status --json is $(status_json | wc -c) bytes for 2000 streams"
save_metrics "$TMPD/m4.txt"
[ "$(grep -c '^streamvisor_pattern_' "$TMPD/m4.txt")" = 14 ] ||
	fail "want 7 pattern families x 2 rows: $(grep '^streamvisor_pattern_' "$TMPD/m4.txt")"
[ "$(pmetric "$TMPD/m4.txt" streamvisor_pattern_streams "$GROUP")" = 2000.0 ] || fail "metrics: not 2000 streams"
[ "$(monitor_restarts)" = "$restarts0" ] || fail "the monitor was restarted"
ok "2000 streams: status $(wc -l <"$TMPD/big.out") lines, 14 pattern samples in metrics"
pass
