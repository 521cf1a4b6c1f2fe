#!/usr/bin/env bash
# Error outputs (SPEC §6): an unknown tool, a non-zero exit, a timeout (the
# tool and its child are killed with the process group: SIGTERM ignored,
# SIGKILL after the grace), and output beyond max_output (truncated).
# Each is published once as a tool.output and acked; none is a dead letter.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

MARK=$TMPD/hangmark
start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block \
	"$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh")" \
	"$(tool_entry fail 5000 65536 "$TOOLS_DIR/fail.sh" 3)" \
	"$(tool_entry hang 1500 65536 "$TOOLS_DIR/hang.sh" "$MARK")" \
	"$(tool_entry big 5000 1000 "$TOOLS_DIR/bigout.sh" 100000)" \
	"$(tool_entry exact 5000 1000 "$TOOLS_DIR/bigout.sh" 1000)")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

rcli XADD events '*' run E type response.created seq 1 data '{}' >/dev/null
xadd_call E 2 unk nosuch '{"a":1}' >/dev/null
xadd_call E 3 bad fail '{}' >/dev/null
xadd_call E 4 slow hang '{}' >/dev/null
xadd_call E 5 big big '{}' >/dev/null
xadd_call E 6 exact exact '{}' >/dev/null

check "unknown tool: an error output, not a dead letter"
wait_output 30 E unk || fail "no tool.output for the unknown tool"
d=$(out_field E unk 'd')
echo "$d"
pyjson 'd["output"] == "unknown tool: nosuch" and d["is_error"] is True and d["name"] == "nosuch" and d["call_id"] == "unk"' <<<"$d" \
	| grep -qx true || fail "unknown tool output: $d"
ok "unknown tool -> \"unknown tool: nosuch\", is_error true"

check "non-zero exit: is_error true, exit_code 3, stdout kept, stderr logged"
wait_output 30 E bad || fail "no tool.output for the failing tool"
d=$(out_field E bad 'd')
echo "$d"
pyjson 'd["is_error"] is True and d["exit_code"] == 3 and d["output"] == "failing on purpose\n" and d["truncated"] is False' <<<"$d" \
	| grep -qx true || fail "failing tool output: $d"
wait_for 10 'grep -q "tool stderr line" "$DLOG"' || fail "the tool's stderr did not reach the log"
ok "exit 3 -> is_error, exit_code 3; stderr in the log"

check "output beyond max_output is cut and marked truncated"
wait_output 30 E big || fail "no tool.output for the big tool"
d=$(out_field E big 'd')
pyjson 'len(d["output"]) == 1000 and set(d["output"]) == {"x"} and d["truncated"] is True and d["is_error"] is False and d["exit_code"] == 0' <<<"$d" \
	| grep -qx true || fail "big output: $(pyjson '{k: v for k, v in d.items() if k != "output"}' <<<"$d"), output length $(pyjson 'len(d["output"])' <<<"$d")"
wait_output 30 E exact || fail "no tool.output for the exact tool"
d=$(out_field E exact 'd')
pyjson 'len(d["output"]) == 1000 and d["truncated"] is False' <<<"$d" | grep -qx true \
	|| fail "exactly max_output bytes must not be truncated: $(pyjson '{k: v for k, v in d.items() if k != "output"}' <<<"$d")"
ok "100000 bytes -> 1000 bytes, truncated true; exactly 1000 -> truncated false"

check "timeout: the tool and its child are killed, output \"timed out after 1500 ms\""
wait_for 15 '[ "$(wc -l <"$MARK.pids" 2>/dev/null || echo 0)" -ge 2 ]' || fail "the hang tool and its child did not start"
pids=$(cat "$MARK.pids")
info "hang tool pids: $(echo $pids)"
for p in $pids; do remember_pid "$p"; done
wait_output 30 E slow || fail "no tool.output for the hanging tool"
d=$(out_field E slow 'd')
echo "$d"
pyjson 'd["output"] == "timed out after 1500 ms" and d["is_error"] is True and d["exit_code"] != 0 and d["duration_ms"] >= 1500' <<<"$d" \
	| grep -qx true || fail "timeout output: $d"
left=$(pgrep -f -- "$MARK" || true)
[ -z "$left" ] || fail "tool processes survived the timeout: $(ps -o pid,pgid,stat,args -p "$(echo $left | tr ' ' ,)")"
for p in $pids; do
	! pid_alive "$p" || fail "tool pid $p still alive"
done
grep -q "timed out" "$DLOG" || fail "no log line about the timeout"
ok "timed out; no process of the tool or its child left"

check "each call has exactly one output, nothing pending, no dead letters"
sleep 2
for c in unk bad slow big exact; do
	[ "$(count_outputs E "$c")" = 1 ] || fail "call $c: $(count_outputs E "$c") outputs, want 1"
done
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
[ "$(rcli XLEN events:dead)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - +)"
ok "one output per call; nothing pending; events:dead empty"

check "the workers survived: still RUNNING, no restarts"
all_running 3 || fail "workers: $(worker_table)"
for w in t1/tools/0 t1/tools/1; do
	[ "$(wfield "$w" restarts)" = 0 ] || fail "$w restarted: $(worker_json "$w")"
done
ok "workers RUNNING, 0 restarts"
pass
