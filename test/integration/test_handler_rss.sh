#!/usr/bin/env bash
# Persistent handlers, done-when 5 (max_rss_mb): a handler that keeps
# memory on every call goes over max_rss_mb under constant load and is
# recycled by draining (its calls in flight finish, a new one starts at
# once); no call is lost or answered twice, nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

HANDLER_MAX_RSS=40
start_redis
write_config persist_count=1 tools_count=1 stop_timeout=5000 \
	extra="$(tools_block "$(handler_entry gr 4 30000 "$PY" "$MISBEHAVE" grow)")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"

check "400 calls keeping 512 KiB each, max_rss_mb 40, under constant load"
for k in 0 1 2 3 4 5 6 7; do
	xadd_calls RR $((k * 50)) 50 gr '{"sleep_ms": 40, "grow_kb": 512}'
	sleep 0.5
done
wait_for 60 '[ "$(outputs_count RR)" -ge 400 ]' || fail "$(outputs_count RR) outputs of 400"
sleep 1
one_each RR 400 || fail "not one output per call"
[ -z "$(outputs_where RR 'd["is_error"]')" ] || fail "errors: $(outputs_where RR 'd["is_error"]')"
pids=$(tool_outputs RR | "$PY" -c 'import json,sys; print(len({json.loads(l)["data"]["output"]["pid"] for l in sys.stdin}))')
n=$(grep -c 'handler draining: RSS .* MiB over max_rss_mb' "$DLOG" || true)
info "answered by $pids handler processes; $n recycled for RSS"
[ "$n" -ge 2 ] || fail "want >= 2 RSS recycles, got $n"
[ "$pids" -ge 3 ] || fail "want >= 3 handler processes, got $pids"
grep -q 'handler ended.*calls in flight' "$DLOG" && grep 'handler ended' "$DLOG" | grep -v ' 0 calls in flight' | grep -q . \
	&& fail "a handler ended with calls in flight: $(grep 'handler ended' "$DLOG" | grep -v ' 0 calls in flight' | head -n 2)"
ok "400 calls answered once each by $pids handlers, $n RSS recycles"

worker_sound
ok "nothing pending, worker RUNNING, never restarted"
pass
