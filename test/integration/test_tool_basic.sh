#!/usr/bin/env bash
# One tool.call -> exactly one tool.output (run, call_id, parent_seq, ts,
# data with output, exit_code, duration_ms, truncated), published with its
# done key and acked; the persistence pool folds it into the run snapshot:
# a tool_output item, and the tool_call "completed".  A JSON string
# argument reaches the tool as its raw text.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

start_redis
write_config persist_count=1 tools_count=2 \
	extra="$(tools_block "$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh" pfx)" \
		"$(tool_entry argv1 5000 65536 "$TOOLS_DIR/argv.sh")" \
		"$(tool_entry argv3 5000 65536 "$TOOLS_DIR/argv.sh" 'a b' '$HOME')" \
		"$(tool_entry argv5 5000 65536 "$TOOLS_DIR/argv.sh" one 'two  spaces' '*' ';')")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "a run with one tool.call (seq 2)"
rcli XADD events '*' run R1 type response.created seq 1 data '{"model":"m"}' >/dev/null
call_id_entry=$(xadd_call R1 2 c1 echo '{"x":"hello","n":[1,2]}')
info "tool.call entry $call_id_entry"
wait_output 30 R1 c1 || fail "no tool.output for R1/c1 within 30 s"

out=$(tool_outputs R1 c1)
echo "$out"
[ "$(wc -l <<<"$out")" -eq 1 ] || fail "want exactly 1 tool.output, got: $out"
pyjson 'd["run"] == "R1" and d["type"] == "tool.output" and d["call_id"] == "c1"' <<<"$out" | grep -qx true \
	|| fail "bad run/type/call_id: $out"
[ "$(pyjson 'd["parent_seq"]' <<<"$out")" = 2 ] || fail "parent_seq != 2: $out"
pyjson 'd["ts"].isdigit() and abs(int(d["ts"]) - '"$(now_ms)"') < 600000' <<<"$out" | grep -qx true \
	|| fail "ts missing or not wall-clock ms: $out"
d=$(pyjson 'd["data"]' <<<"$out")
[ "$(pyjson 'd["output"]' <<<"$d")" = 'pfx:{"x":"hello","n":[1,2]}' ] || fail "output: $(pyjson 'd["output"]' <<<"$d")"
pyjson 'd["call_id"] == "c1" and d["name"] == "echo" and d["is_error"] is False and d["exit_code"] == 0 and d["truncated"] is False' <<<"$d" \
	| grep -qx true || fail "data fields wrong: $d"
pyjson 'isinstance(d["duration_ms"], int) and 0 <= d["duration_ms"] < 5000' <<<"$d" | grep -qx true \
	|| fail "duration_ms missing or absurd: $d"
ok "one tool.output with output, exit_code 0, duration_ms, truncated false"

check "done hash and ack"
out_id=$(tool_outputs R1 c1 | pyjson 'd["id"]')
[ "$(rcli HGET "$SV_NS:tooldone:R1" c1)" = "$out_id" ] || fail "done hash $SV_NS:tooldone:R1 c1: $(rcli HGETALL "$SV_NS:tooldone:R1"), want $out_id"
ttl=$(rcli TTL "$SV_NS:tooldone:R1")
[ "$ttl" -gt 86000 ] && [ "$ttl" -le 86400 ] || fail "done hash TTL $ttl, want ~86400"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools still has $(tools_pending) pending"
ok "done hash names the output $out_id, TTL $ttl; nothing pending in group tools"

check "a JSON string argument goes to stdin as its raw text"
xadd_call R1 3 c2 echo '"plain text, not JSON"' >/dev/null
wait_output 30 R1 c2 || fail "no tool.output for R1/c2"
[ "$(out_field R1 c2 'd["output"]')" = 'pfx:plain text, not JSON' ] || fail "output for a string argument: $(out_field R1 c2 'd["output"]')"
ok "string argument passed raw"

check "a call without seq: no parent_seq"
xadd_call R2 '' c1 echo '{}' >/dev/null
wait_output 30 R2 c1 || fail "no tool.output for R2/c1"
[ "$(out_field R2 c1 '"parent_seq" in o')" = false ] || fail "parent_seq set without seq: $(tool_outputs R2 c1)"
[ "$(out_field R2 c1 'd["output"]')" = 'pfx:{}' ] || fail "output: $(tool_outputs R2 c1)"
ok "no parent_seq without seq"

check "non-tool.call events are acked without work"
rcli XADD events '*' run R1 type item.started seq 4 data '{"item_id":"m1","kind":"message","role":"assistant"}' >/dev/null
rcli XADD events '*' run R1 type response.completed seq 5 data '{}' >/dev/null
wait_for 10 '[ "$(tools_pending)" = 0 ] && [ "$(group_info tools lag)" = 0 ]' \
	|| fail "group tools did not ack the other events: $(rcli XINFO GROUPS events | paste -sd' ')"
[ "$(count_outputs R1 '')" = 2 ] || fail "outputs for non-tool.call events: $(tool_outputs R1)"
ok "acked, no output"

check "the snapshot has the tool_output item and the tool_call completed"
wait_for 30 '[ "$(ctl snapshot R1 2>/dev/null | pyjson "d[\"event_count\"]" 2>/dev/null)" = 7 ]' \
	|| fail "snapshot R1 not at 7 events: $(ctl snapshot R1 2>&1)"
snap=$(ctl snapshot R1)
echo "$snap"
pyjson '[ (i.get("type"), i.get("call_id"), i.get("status")) for i in d["output"] if i.get("type") == "tool_call"] == [("tool_call", "c1", "completed"), ("tool_call", "c2", "completed")]' <<<"$snap" \
	| grep -qx true || fail "tool_calls not completed: $snap"
pyjson 'len([i for i in d["output"] if i.get("type") == "tool_output" and i.get("call_id") == "c1" and i.get("output") == "pfx:{\"x\":\"hello\",\"n\":[1,2]}" and i.get("is_error") is False]) == 1' <<<"$snap" \
	| grep -qx true || fail "no tool_output item for c1: $snap"
pyjson '[i.get("call_id") for i in d["output"] if i.get("type") in ("tool_call", "tool_output")] == ["c1", "c1", "c2", "c2"]' <<<"$snap" \
	| grep -qx true || fail "tool_output does not sort right after its call: $snap"
pyjson 'd["anomalies"] in ([], None) and d["complete"] is True' <<<"$snap" | grep -qx true \
	|| fail "snapshot has anomalies or is not complete: $snap"
ok "snapshot: tool_output items, tool_calls completed, complete, no anomalies"

check "still exactly one output per call after a claim period"
sleep 2
[ "$(count_outputs R1 c1)" = 1 ] && [ "$(count_outputs R1 c2)" = 1 ] && [ "$(count_outputs R2 c1)" = 1 ] \
	|| fail "duplicate outputs: $(tool_outputs)"
ok "exactly one tool.output per call"

check "the command's arguments reach the tool verbatim (argv of 1, 3 and 5 elements, no shell)"
xadd_call R3 1 a1 argv1 '{}' >/dev/null
xadd_call R3 2 a3 argv3 '{}' >/dev/null
xadd_call R3 3 a5 argv5 '{}' >/dev/null
for c in a1 a3 a5; do wait_output 30 R3 $c || fail "no tool.output for R3/$c"; done
for c in a1 a3 a5; do info "$c: $(out_field R3 $c 'd')"; done
[ "$(out_field R3 a1 'd["output"]')" = "" ] && [ "$(out_field R3 a1 'd["exit_code"]')" = 0 ] \
	|| fail "argv.sh without arguments: $(out_field R3 a1 'd')"
[ "$(out_field R3 a3 'd["output"]')" = $'[a b]\n[$HOME]' ] \
	|| fail "command [argv.sh, 'a b', '\$HOME'] (3 elements): $(out_field R3 a3 'd')"
[ "$(out_field R3 a5 'd["output"]')" = $'[one]\n[two  spaces]\n[*]\n[;]' ] \
	|| fail "command [argv.sh, one, 'two  spaces', '*', ';'] (5 elements): $(out_field R3 a5 'd')"
ok "argv passed verbatim"
pass
