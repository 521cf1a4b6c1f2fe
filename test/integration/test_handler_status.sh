#!/usr/bin/env bash
# Visibility of issue 13: `status` shows each persistent handler under its
# tool worker (text and --json: its pid is a live child of the worker,
# state ready, served grows); `metrics` counts calls, errors and call
# durations per tool for a persistent and an exec tool; the dead-letter
# gauge counts a dead letter.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"
start_redis
write_config persist_count=1 tools_count=1 \
	extra="$(tools_block "$(handler_entry hpy 4 30000 "$PY" "$EXAMPLES/handler.py")" \
		"$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh" pre)")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
W=$SV_NODE/tools/0

# hfield FIELD: a field of the worker's hpy handler in status --json.
hfield() {
	worker_json "$W" | pyjson '[h for h in d["handlers"] if h["tool"] == "hpy"][0]["'"$1"'"]'
}

check "status --json: the handler, ready, a live child of the tool worker"
wait_for 30 '[ "$(hfield state 2>/dev/null)" = ready ]' || fail "handler not ready: $(worker_json "$W")"
wpid=$(wfield "$W" pid)
hpid=$(hfield pid)
[ "$hpid" -gt 0 ] 2>/dev/null || fail "handler pid '$hpid'"
pid_alive "$hpid" || fail "handler pid $hpid not alive"
ppid=$(ps -o ppid= -p "$hpid" | tr -d ' ')
[ "$ppid" = "$wpid" ] || fail "handler $hpid's parent is $ppid, not the tool worker $wpid"
grep -q "handler.py" "/proc/$hpid/cmdline" || fail "pid $hpid is not handler.py: $(tr '\0' ' ' <"/proc/$hpid/cmdline")"
worker_json "$W" | pyjson 'len(d["handlers"]) == 1 and set(d["handlers"][0]) == {"tool", "pid", "state", "draining", "inflight", "served", "restarts", "last_error"} and d["handlers"][0]["draining"] is False and d["handlers"][0]["restarts"] == 0' \
	| grep -qx true || fail "handlers: $(worker_json "$W")"
ok "handler hpy pid $hpid (parent $wpid), ready"

check "status text: one line for the handler under its worker"
ctl status >"$TMPD/st.txt" || true
cat "$TMPD/st.txt"
"$PY" - "$TMPD/st.txt" "$W" "$hpid" <<'PYEOF' || fail "status text has no handler line under $W"
import sys
lines = open(sys.argv[1]).read().splitlines()
w, pid = sys.argv[2], sys.argv[3]
i = next(i for i, l in enumerate(lines) if l.split() and l.split()[0] == w)
f = lines[i + 1].split()
assert f[:5] == ["handler", "hpy", "ready", pid, "-"], f
PYEOF
ok "handler line under $W"

check "served grows with calls; metrics count them"
s0=$(hfield served)
xadd_calls R1 0 12 hpy '{"x": 1}'
xadd_call R1 13 cerr hpy '{"fail": "nope"}' >/dev/null
for i in 0 1 2; do xadd_call R2 $((i + 1)) "e$i" echo '{"y": 2}' >/dev/null; done
xadd_call R2 4 eunk no_such_tool '{}' >/dev/null
wait_for 30 '[ "$(outputs_count R1)" -ge 13 ] && [ "$(outputs_count R2)" -ge 4 ]' ||
	fail "outputs R1 $(outputs_count R1)/13, R2 $(outputs_count R2)/4"
wait_for 10 '[ "$(hfield served)" -ge $((s0 + 13)) ]' || fail "served $s0 -> $(hfield served)"
ok "served $s0 -> $(hfield served)"

# mget SAMPLE: its value in $TMPD/m.txt, as an integer.
mget() {
	local v
	v=$($OPS prom "$TMPD/m.txt" --get "$1" 2>/dev/null) || return 1
	printf '%.0f\n' "$v"
}
metrics_ok() {
	ctl metrics >"$TMPD/m.txt" 2>/dev/null || return 1
	[ "$(mget 'streamvisor_tool_calls_total{tool="hpy"}')" = 13 ] &&
		[ "$(mget 'streamvisor_tool_calls_total{tool="echo"}')" = 3 ]
}
wait_for 10 metrics_ok || { cat "$TMPD/m.txt"; fail "tool call counters"; }
$OPS prom "$TMPD/m.txt" >/dev/null || { cat "$TMPD/m.txt"; fail "invalid exposition"; }
grep '^streamvisor_tool_\|^# .* streamvisor_tool_' "$TMPD/m.txt"
[ "$(mget 'streamvisor_tool_errors_total{tool="hpy"}')" = 1 ] || fail "errors{hpy} $(mget 'streamvisor_tool_errors_total{tool="hpy"}')"
[ "$(mget 'streamvisor_tool_errors_total{tool="echo"}')" = 0 ] || fail "errors{echo}"
[ "$(mget 'streamvisor_tool_timeouts_total{tool="hpy"}')" = 0 ] || fail "timeouts{hpy}"
[ "$(mget 'streamvisor_tool_redispatches_total{tool="hpy"}')" = 0 ] || fail "redispatches{hpy}"
for t in hpy echo; do
	n=$(mget "streamvisor_tool_call_duration_seconds_count{tool=\"$t\"}")
	inf=$(mget "streamvisor_tool_call_duration_seconds_bucket{tool=\"$t\",le=\"+Inf\"}")
	calls=$(mget "streamvisor_tool_calls_total{tool=\"$t\"}")
	[ "$n" = "$calls" ] && [ "$inf" = "$calls" ] || fail "$t: duration count $n, +Inf $inf, calls $calls"
	mget "streamvisor_tool_call_duration_seconds_bucket{tool=\"$t\",le=\"60\"}" >/dev/null ||
		fail "$t: no le=60 bucket"
	mget "streamvisor_tool_call_duration_seconds_bucket{tool=\"$t\",le=\"0.001\"}" >/dev/null ||
		fail "$t: no le=0.001 bucket"
done
grep -q 'tool="no_such_tool"' "$TMPD/m.txt" && fail "an unknown tool got a label"
ok "calls, errors and durations per tool, both modes"

check "dead-letter gauge"
g0=$(mget 'streamvisor_dead_letters{stream="events"}') || fail "no dead-letter gauge for events"
[ "$g0" = "$(rcli XLEN events:dead)" ] || fail "gauge $g0, XLEN $(rcli XLEN events:dead)"
rcli XADD events '*' run R3 type tool.call seq 1 data '{"name": "hpy"}' >/dev/null # no call_id
wait_for 20 '[ "$(rcli XLEN events:dead)" -gt "$g0" ]' || fail "no dead letter: XLEN $(rcli XLEN events:dead)"
d1=$(rcli XLEN events:dead)
dead_ok() {
	ctl metrics >"$TMPD/m.txt" 2>/dev/null || return 1
	[ "$(mget 'streamvisor_dead_letters{stream="events"}')" = "$d1" ]
}
wait_for 10 dead_ok || fail "gauge $(mget 'streamvisor_dead_letters{stream="events"}'), XLEN $d1"
ok "streamvisor_dead_letters{stream=\"events\"} $g0 -> $d1"

check "counters survive a worker restart (carried by the master)"
kill -KILL "$wpid"
wait_for 30 '[ "$(wfield "$W" pid 2>/dev/null)" != "$wpid" ] && state_is "$W" RUNNING' || fail "$W not back"
xadd_call R4 1 c0 echo '{}' >/dev/null
wait_for 20 '[ "$(outputs_count R4)" -ge 1 ]' || fail "no output after restart"
carry_ok() {
	ctl metrics >"$TMPD/m.txt" 2>/dev/null || return 1
	[ "$(mget 'streamvisor_tool_calls_total{tool="echo"}')" = 4 ] &&
		[ "$(mget 'streamvisor_tool_calls_total{tool="hpy"}')" = 13 ]
}
wait_for 10 carry_ok || { grep streamvisor_tool_calls_total "$TMPD/m.txt"; fail "counters went backwards or did not move"; }
ok "echo 4, hpy 13 after a SIGKILL of the worker"
pass
