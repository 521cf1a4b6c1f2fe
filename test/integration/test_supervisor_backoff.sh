#!/usr/bin/env bash
# Crash loop at start: BACKOFF with growing delays, then FATAL after
# max_retries; status exits 3; `start NAME` revives a FATAL worker once the
# fault is gone.  Exit code 78 goes FATAL at once, with no BACKOFF.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams

MAX_RETRIES=5 BINIT=100 BMAX=1000
start_redis
write_config persist_count=2 tools_count=2 max_retries=$MAX_RETRIES start_ms=300 backoff_initial=$BINIT backoff_max=$BMAX
BINIT=$(scaled $BINIT) BMAX=$(scaled $BMAX)   # as write_config wrote them
echo 1 >"$FAULT_DIR/exit.tools"
start_daemon

check "tools workers exit 1 at start: BACKOFF ... FATAL; persist workers RUNNING"
wait_for 20 'all_running 2 persist' || fail "persist workers not RUNNING: $(worker_table 2>&1)"
wait_for 40 'state_is t1/tools/0 FATAL && state_is t1/tools/1 FATAL' || fail "tools workers not FATAL: $(worker_table 2>&1)"
snapshot_pids
ok "t1/tools/0 and t1/tools/1 FATAL"

for w in t1/tools/0 t1/tools/1; do
	echo "# NS:supervisor entries of $w:"
	sup_select 0-0 "e.get('worker') == '$w'"
	nb=$(sup_select 0-0 "e.get('worker') == '$w' and e.get('to') == 'BACKOFF'" | wc -l)
	nf=$(sup_select 0-0 "e.get('worker') == '$w' and e.get('to') == 'FATAL'" | wc -l)
	nexit=$(sup_select 0-0 "e.get('worker') == '$w' and e.get('exit') == '1'" | wc -l)
	[ "$nb" -ge 2 ] || fail "$w: $nb BACKOFF transitions in NS:supervisor, want several"
	[ "$nf" -eq 1 ] || fail "$w: $nf FATAL transitions, want 1"
	# max_retries is supervisord's startretries: the first start plus
	# max_retries retries (spec wording "after max_retries consecutive failed
	# starts" also allows exactly max_retries).
	[ "$nexit" -eq "$MAX_RETRIES" ] || [ "$nexit" -eq $((MAX_RETRIES + 1)) ] \
		|| fail "$w: $nexit failed starts (exit 1) recorded before FATAL, want max_retries=$MAX_RETRIES (+1 for the first start)"
	ok "$w: $nb x BACKOFF, $nexit failed starts, then FATAL"
done

check "the backoff delays grow (log lines 'backoff ... delay_ms=N' or NS:supervisor reasons)"
delays=$(sup_select 0-0 "e.get('worker') == 't1/tools/0'" | "$PY" -c '
import json, re, sys
for l in sys.stdin:
    e = json.loads(l)
    if "delay_ms" in e:
        print(e["delay_ms"])
    else:
        for m in re.findall(r"delay_ms=([0-9]+)", e.get("reason", "")):
            print(m)
' | tr '\n' ' ')
src="NS:supervisor entries"
if [ "$(wc -w <<<"$delays")" -lt 2 ]; then
	delays=$(grep -E 'backoff' "$DLOG" | grep -E '(^|[ "=])(t1/)?tools/0([ "]|$)' | grep -oE 'delay_ms=[0-9]+' | cut -d= -f2 | tr '\n' ' ')
	src="daemon log"
fi
info "t1/tools/0 delays from $src: $delays"
"$PY" - "$BINIT" "$BMAX" $delays <<'PY' || fail "backoff delays do not grow as specified: $delays"
import sys
init, mx = int(sys.argv[1]), int(sys.argv[2])
d = [int(x) for x in sys.argv[3:]]
assert len(d) >= 2, "fewer than 2 delays found"
assert d[0] <= init, "first delay %d > backoff_initial_ms %d" % (d[0], init)
assert all(0 < x <= mx for x in d), "delay outside (0, backoff_max_ms]"
assert all(b >= a for a, b in zip(d, d[1:])), "a delay shrank"
assert d[-1] > d[0], "delays did not grow"
PY
ok "delays grow: $delays"

check "status exits 3 and shows FATAL"
rc=0; out=$(ctl status 2>&1) || rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 3 ] || fail "status exit $rc, want 3"
grep -q FATAL <<<"$out" || fail "table shows no FATAL"
ok "status exit 3"

check "FATAL stays until an operator acts"
last=$(sup_last_id)
rm -f "$FAULT_DIR/exit.tools"
# nothing must revive it by itself: watch for 2 s (> several backoff steps)
end=$(($(now_ms) + $(scaled 2000)))
while [ "$(now_ms)" -lt "$end" ]; do
	state_is t1/tools/0 FATAL || fail "t1/tools/0 left FATAL without an operator: $(worker_json t1/tools/0)"
	sleep 0.1
done
ok "still FATAL"

check "fault removed: start t1/tools/0 -> RUNNING"
rc=0; out=$(ctl start t1/tools/0 2>&1) || rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "start t1/tools/0 exit $rc"
wait_for 10 'state_is t1/tools/0 RUNNING' || fail "t1/tools/0 not RUNNING after start: $(worker_json t1/tools/0)"
remember_pid "$(wfield t1/tools/0 pid)"
wait_for 10 'beat_fresh t1/tools/0 600' || fail "t1/tools/0 does not heartbeat: $(hb t1/tools/0)"
state_is t1/tools/1 FATAL || fail "t1/tools/1 should still be FATAL: $(worker_json t1/tools/1)"
rc=0; ctl status >/dev/null || rc=$?
[ "$rc" -eq 3 ] || fail "status exit $rc with t1/tools/1 FATAL, want 3"
ok "t1/tools/0 RUNNING, t1/tools/1 still FATAL, status exit 3"

rc=0; ctl start t1/tools/1 || rc=$?
[ "$rc" -eq 0 ] || fail "start t1/tools/1 exit $rc"
wait_for 10 'all_running 4' || fail "not all RUNNING: $(worker_table)"
snapshot_pids
rc=0; ctl status >/dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "status exit $rc with all RUNNING"
ok "all 4 RUNNING, status exit 0"

check "exit 78 (configuration error): FATAL at once, no BACKOFF"
echo 78 >"$FAULT_DIR/exit.tools"
keep_pid=$(wfield t1/tools/0 pid)
last=$(sup_last_id)
rc=0; out=$(ctl restart t1/tools/1 2>&1) || rc=$?
echo "restart t1/tools/1 -> exit $rc: $out"
[ "$rc" -ne 0 ] || fail "restart of a worker that exits 78 reported success"
wait_for 15 'state_is t1/tools/1 FATAL' || fail "t1/tools/1 not FATAL after exit 78: $(worker_json t1/tools/1)"
sup_select "$last" "e.get('worker') == 't1/tools/1'"
n78=$(sup_select "$last" "e.get('worker') == 't1/tools/1' and e.get('exit') == '78'" | wc -l)
nb=$(sup_select "$last" "e.get('worker') == 't1/tools/1' and e.get('to') == 'BACKOFF'" | wc -l)
nf=$(sup_select "$last" "e.get('worker') == 't1/tools/1' and e.get('to') == 'FATAL'" | wc -l)
[ "$nb" -eq 0 ] || fail "exit 78 went through BACKOFF ($nb times)"
[ "$n78" -eq 1 ] || fail "$n78 starts exited 78, want exactly 1 (no retry)"
[ "$nf" -eq 1 ] || fail "$nf FATAL transitions, want 1"
[ "$(wfield t1/tools/0 pid)" = "$keep_pid" ] && state_is t1/tools/0 RUNNING || fail "t1/tools/0 was disturbed"
ok "exit 78 -> FATAL at once (1 start, no BACKOFF); t1/tools/0 untouched"

check "FATAL after 78 also revives with start once fixed"
rm -f "$FAULT_DIR/exit.tools"
rc=0; ctl start t1/tools/1 || rc=$?
[ "$rc" -eq 0 ] || fail "start t1/tools/1 exit $rc"
wait_for 10 'all_running 4' || fail "not all RUNNING: $(worker_table)"
snapshot_pids
ok "t1/tools/1 RUNNING again"
pass
