#!/usr/bin/env bash
# Persistent handlers, done-when 1: with concurrency 50, a handler that
# sleeps 200 ms per call answers 500 calls in well under the 100 s a
# serial handler needs (bound: 30 s), one tool.output each, nothing
# pending afterwards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

HANDLER_ENV='"LANG=C", "HANDLER_SLEEP_MS=200"'
start_redis
write_config persist_count=1 tools_count=1 extra="$(tools_block "$(handler_entry slow 50 60000 "$PY" "$EXAMPLES/handler.py")")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"

check "500 calls of 200 ms, concurrency 50, one tool worker"
t0=$(now_ms)
xadd_calls R 0 500 slow '{"k": 1}'
wait_for 60 '[ "$(outputs_count R)" -ge 500 ]' || fail "$(outputs_count R) outputs of 500 after 60 s"
dt=$(($(now_ms) - t0))
info "500 calls in $dt ms (serial: 100000 ms)"
[ "$dt" -lt "$(scaled 30000)" ] || fail "500 calls took $dt ms"
ok "500 calls in $dt ms"

check "the heartbeat showed calls in flight"
grep -q '"running": true' "$TMPD/hb_seen" 2>/dev/null || true
sleep 1.5
one_each R 500 || fail "not one output per call"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
state_is t1/tools/0 RUNNING || fail "tools/0 not RUNNING"
ok "one output per call, nothing pending"
pass
