#!/usr/bin/env bash
# Done marks of long ids (worker_tool_done_hash: one hash per run, a field
# per call id; worker_tool_done_key of earlier versions): two calls whose run/call_id
# pairs share a 512-byte prefix (a long run with two call ids, and a short
# run with two long call ids) each run once and get exactly one
# tool.output; the tool sees the whole ids; a replay of a long call is
# acked without a second run.  Earlier versions cut the key to 511 bytes:
# the second call of each pair was taken for done and never ran.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
LONG_RUN=R$(printf 'x%.0s' $(seq 1 600))
LONG_CID=c$(printf 'y%.0s' $(seq 1 600))
start_redis
write_config persist_count=0 tools_count=1 extra="$(tools_block \
	"$(tool_entry count 10000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 1' || fail "expected 1 RUNNING worker, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "a 601-byte run with call ids c1, c2; run S with two 601+1-byte call ids"
xadd_call "$LONG_RUN" 1 c1 count '{"sleep":0}' >/dev/null
xadd_call "$LONG_RUN" 2 c2 count '{"sleep":0}' >/dev/null
xadd_call S 1 "${LONG_CID}A" count '{"sleep":0}' >/dev/null
xadd_call S 2 "${LONG_CID}B" count '{"sleep":0}' >/dev/null
for pair in "$LONG_RUN c1" "$LONG_RUN c2" "S ${LONG_CID}A" "S ${LONG_CID}B"; do
	read -r run cid <<<"$pair"
	expect_output "$run" "$cid" 'd["is_error"] is False and d["output"] == "slept 0\n"' >/dev/null
	[ "$(count_outputs "$run" "$cid")" = 1 ] || fail "${cid:0:8}...: want 1 output, got $(count_outputs "$run" "$cid")"
done
[ "$(wc -l <"$COUNTER")" = 4 ] || fail "want 4 executions: $(cut -c1-80 "$COUNTER")"
grep -qF " $LONG_RUN c2" "$COUNTER" || fail "the tool did not see the whole run id"
grep -qF " S ${LONG_CID}B" "$COUNTER" || fail "the tool did not see the whole call id"
ok "4 calls, 4 runs, one output each, whole ids in the environment"

check "the done marks are whole and distinct"
[ "$(rcli --scan --pattern "$SV_NS:tooldone:*" | wc -l)" = 2 ] || fail "done hashes: $(rcli --scan --pattern "$SV_NS:tooldone:*" | cut -c1-40)"
[ "$(rcli HLEN "$SV_NS:tooldone:$LONG_RUN")" = 2 ] || fail "done hash of the long run: $(rcli HKEYS "$SV_NS:tooldone:$LONG_RUN")"
[ "$(rcli HEXISTS "$SV_NS:tooldone:S" "${LONG_CID}B")" = 1 ] || fail "no whole done mark for ${LONG_CID:0:8}...B"
[ "$(rcli HLEN "$SV_NS:tooldone:S")" = 2 ] || fail "done hash of S: $(rcli HKEYS "$SV_NS:tooldone:S" | cut -c1-40)"
ok "2 done hashes of 2 calls each"

check "a replay of a long call is acked without a second run or output"
xadd_call "$LONG_RUN" 2 c2 count '{"sleep":0}' >/dev/null
wait_for 15 '[ "$(tools_pending)" = 0 ] && [ "$(group_info tools lag)" = 0 ]' || fail "the replay was not acked"
sleep 0.5
[ "$(count_outputs "$LONG_RUN" c2)" = 1 ] || fail "the replay published again"
[ "$(wc -l <"$COUNTER")" = 4 ] || fail "the replay ran the tool again"
ok "replay acked"
pass
