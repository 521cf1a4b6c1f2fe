#!/usr/bin/env bash
# The done mark is per run and call id (NS:tooldone:RUN, field CALL_ID): two runs using
# the same call_id each get their own tool.output (and snapshot item),
# while a replayed call of the same run (a producer's retried XADD) is
# acked without running the tool or publishing a second output.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block \
	"$(tool_entry count 10000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "runs RA and RB both call call_id 'same'"
for r in RA RB; do
	rcli XADD events '*' run "$r" type response.created seq 1 data '{}' >/dev/null
	xadd_call "$r" 2 same count '{"sleep":0}' >/dev/null
done
wait_output 30 RA same || fail "no tool.output for RA/same"
wait_output 30 RB same || fail "no tool.output for RB/same"
for r in RA RB; do
	[ "$(count_outputs "$r" same)" = 1 ] || fail "$r: want 1 output: $(tool_outputs "$r" same)"
	[ "$(out_field "$r" same 'o["run"] == "'"$r"'" and d["call_id"] == "same" and d["is_error"] is False and d["output"] == "slept 0\n"')" = true ] \
		|| fail "$r: $(tool_outputs "$r" same)"
	[ "$(rcli HEXISTS "$SV_NS:tooldone:$r" same)" = 1 ] || fail "done mark $SV_NS:tooldone:$r same missing"
done
grep -q " RA same$" "$COUNTER" && grep -q " RB same$" "$COUNTER" || fail "the tool did not run once per run: $(cat "$COUNTER")"
[ "$(wc -l <"$COUNTER")" = 2 ] || fail "executions: $(cat "$COUNTER")"
ok "one output per run; the tool ran for each run (STREAMVISOR_RUN RA, RB)"

check "each run's snapshot has its own completed call and output"
for r in RA RB; do
	rcli XADD events '*' run "$r" type response.completed seq 3 data '{}' >/dev/null
done
for r in RA RB; do
	wait_for 30 '[ "$(ctl snapshot "$r" 2>/dev/null | pyjson "d[\"complete\"] and d[\"event_count\"] == 4" 2>/dev/null)" = true ]' \
		|| fail "snapshot $r not complete with 4 events: $(ctl snapshot "$r" 2>&1)"
	ctl snapshot "$r" | pyjson '(lambda its: [i["type"] for i in its] == ["tool_call", "tool_output"] and all(i.get("call_id") == "same" for i in its) and its[0].get("status") == "completed")(d["output"])' \
		| grep -qx true || fail "snapshot $r: $(ctl snapshot "$r")"
done
ok "RA and RB: tool_call completed + tool_output"

check "a replayed call of the same run is acked without a second run or output, logged with both entry ids"
out_id=$(tool_outputs RA same | pyjson 'd["id"]')
[ "$(rcli HGET "$SV_NS:tooldone:RA" same)" = "$out_id" ] || fail "done hash holds $(rcli HGET "$SV_NS:tooldone:RA" same), not the output $out_id"
replay=$(xadd_call RA 2 same count '{"sleep":0}')
wait_for 15 '[ "$(tools_pending)" = 0 ] && [ "$(group_info tools lag)" = 0 ]' || fail "the replayed call was not acked"
sleep 1
[ "$(count_outputs RA same)" = 1 ] || fail "a replayed call published again: $(tool_outputs RA same)"
[ "$(wc -l <"$COUNTER")" = 2 ] || fail "the replayed call ran the tool again: $(cat "$COUNTER")"
want="tool.call entry $replay of events: call already done, output entry $out_id: acked, not run again"
wait_for 5 'grep -F -- "$want" "$DLOG" | grep -q "run=RA call_id=same"' || fail "no skip line: $(grep -F 'already done' "$DLOG")"
[ "$(grep -cF -- "$want" "$DLOG")" = 1 ] || fail "skip logged $(grep -cF -- "$want" "$DLOG") times"
ok "replay $replay acked and logged (output $out_id); still one output, two executions"
pass
