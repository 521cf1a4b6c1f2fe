#!/usr/bin/env bash
# Persistent handlers, done-when 2: two runs using the same call_id each
# get their own output, and a call delivered twice (its entry XCLAIMed to
# another consumer while the handler holds it, then handed back) is
# answered exactly once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block "$(handler_entry h 4 30000 "$PY" "$EXAMPLES/handler.py")")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"

check "two runs, the same call_id"
xadd_call RA 1 same h '{"run": "A"}' >/dev/null
xadd_call RB 1 same h '{"run": "B"}' >/dev/null
wait_output 30 RA same || fail "no output for RA/same"
wait_output 30 RB same || fail "no output for RB/same"
[ "$(out_field RA same 'd["output"]["echo"]["run"]')" = A ] || fail "RA: $(tool_outputs RA same)"
[ "$(out_field RB same 'd["output"]["echo"]["run"]')" = B ] || fail "RB: $(tool_outputs RB same)"
ok "each run has its own output"

check "a call delivered twice while in hand: one output"
id=$(xadd_call RC 1 twice h '{"sleep_ms": 3000}')
sleep 1
owner=$(rcli XPENDING events tools - + 10 | sed -n 2p)
info "entry $id held by $owner"
# A second delivery: the entry is taken by another consumer of the group
# and comes back through the claim sweep after claim_idle_ms.
rcli XCLAIM events tools intruder 0 "$id" >/dev/null
wait_output 30 RC twice || fail "no output for RC/twice"
sleep 3
[ "$(count_outputs RC twice)" = 1 ] || fail "want 1 output: $(tool_outputs RC twice)"
ok "one output for the call delivered twice"

check "the same call written twice (two entries, one call_id): one output"
xadd_call RD 1 dup h '{"sleep_ms": 500}' >/dev/null
xadd_call RD 2 dup h '{"sleep_ms": 500}' >/dev/null
wait_output 30 RD dup || fail "no output for RD/dup"
sleep 2
[ "$(count_outputs RD dup)" = 1 ] || fail "want 1 output: $(tool_outputs RD dup)"
ok "one output"
wait_for 20 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending: $(rcli XPENDING events tools - + 10)"
ok "nothing pending"
pass
