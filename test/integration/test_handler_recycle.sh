#!/usr/bin/env bash
# Persistent handlers, done-when 5: max_calls recycles the handler by
# draining under constant load without losing a call; a stop with calls
# in flight loses none (answered during the drain, or left pending for
# the next start).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

HANDLER_MAX_CALLS=20
start_redis
write_config persist_count=1 tools_count=1 stop_timeout=5000 \
	extra="$(tools_block "$(handler_entry rc 5 60000 "$PY" "$EXAMPLES/handler.py")")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"

check "300 calls of 20 ms under constant load, max_calls 20"
for k in 0 1 2 3 4 5; do
	xadd_calls RL $((k * 50)) 50 rc '{"sleep_ms": 20}'
	sleep 0.3
done
wait_for 90 '[ "$(outputs_count RL)" -ge 300 ]' || fail "$(outputs_count RL) outputs of 300"
sleep 1
one_each RL 300 || fail "not one output per call"
pids=$(tool_outputs RL | "$PY" -c 'import json,sys; print(len({json.loads(l)["data"]["output"]["pid"] for l in sys.stdin}))')
info "answered by $pids handler processes"
[ "$pids" -ge 10 ] || fail "want >= 10 handler processes with max_calls 20, got $pids"
ok "300 calls answered once each by $pids handlers in turn"

check "stop with 10 calls in flight"
xadd_calls RS 0 10 rc '{"sleep_ms": 1500}'
wait_for 10 '[ "$(rcli XPENDING events tools | head -n 1)" -ge 5 ]' || fail "calls not taken"
sleep 0.3
stop_daemon 30
during=$(outputs_count RS)
info "answered during the stop: $during; pending: $(tools_pending)"
[ "$during" -ge 5 ] || fail "the calls in flight were not answered during the drain ($during)"
start_daemon
wait_for 30 'all_running 2' || fail "not RUNNING again"
wait_for 40 '[ "$(outputs_count RS)" -ge 10 ]' || fail "$(outputs_count RS) outputs of 10"
sleep 2
one_each RS 10 || fail "RS: not one output per call"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
ok "no call lost across the stop, nothing pending"
pass
