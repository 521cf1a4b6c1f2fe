#!/usr/bin/env bash
# A tool running 3.5x longer than claim_idle_ms, with 4 tool workers
# sweeping XAUTOCLAIM: the running worker keeps renewing its claim, so no
# other worker steals the entry: the tool runs once and one tool.output
# is published.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=1 tools_count=4 claim_idle=1000 hb_timeout=1000 extra="$(tools_block \
	"$(tool_entry slow 20000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 5' || fail "expected 5 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "a 3.5 s call with claim_idle_ms=1000 and 4 tool workers"
id=$(xadd_call L 1 long slow '{"sleep":3.5}')
info "entry $id"
wait_for 15 '[ -s "$COUNTER" ]' || fail "the tool did not start"
t0=$(now_ms)
owner0=
samples=0
# Sample the PEL while the tool runs: one owner, one delivery.  Up to the
# call's id only: the tool.output it publishes is read (and acked at
# once) by the tools group too, and may be caught pending in between.
while [ "$(count_outputs L long)" = 0 ] && [ $(($(now_ms) - t0)) -lt 30000 ]; do
	pel=$(rcli XPENDING events tools - "$id" 10 | paste -sd' ' || true)
	if [ -n "$pel" ]; then
		read -r pid_ owner _idle deliv <<<"$pel"
		[ "$pid_" = "$id" ] || fail "unexpected pending entry: $pel"
		[ -n "$owner0" ] || owner0=$owner
		[ "$owner" = "$owner0" ] || fail "entry moved from $owner0 to $owner while the tool ran: $pel"
		[ "$deliv" = 1 ] || fail "entry delivered $deliv times while the tool ran (stolen by XAUTOCLAIM): $pel"
		samples=$((samples + 1))
	fi
	sleep 0.2
done
wait_output 30 L long || fail "no tool.output within 30 s"
info "$samples PEL samples, owner $owner0"
[ "$samples" -gt 0 ] || fail "never saw the entry pending"

check "executed once, published once"
sleep 3 # more than 2 claim periods: a thief would run it again by now
n=$(wc -l <"$COUNTER")
[ "$n" = 1 ] || fail "the tool ran $n times: $(cat "$COUNTER")"
[ "$(count_outputs L long)" = 1 ] || fail "want 1 tool.output: $(tool_outputs L long)"
d=$(out_field L long 'd')
pyjson 'd["output"] == "slept 3.5\n" and d["is_error"] is False and d["exit_code"] == 0 and d["duration_ms"] >= 3500' <<<"$d" \
	| grep -qx true || fail "output: $d"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
! grep -q "claimed by another consumer" "$DLOG" || fail "a worker saw its call stolen: $(grep 'claimed by another' "$DLOG")"
ok "counter has 1 line, one tool.output (owner $owner0 throughout)"
pass
