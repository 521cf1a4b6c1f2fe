#!/usr/bin/env bash
# Persistent handlers, done-when 3 (a handler that never says ready, and
# one that exits at start): after max_retries failed starts the waiting
# calls get an error output naming the cause (the last stderr line)
# instead of waiting for ever; the log says why; the worker stays
# RUNNING and nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

HANDLER_START_TIMEOUT=800
start_redis
write_config persist_count=1 tools_count=1 max_retries=3 max_deliveries=2 backoff_max=1000 \
	extra="$(tools_block "$(handler_entry nr 2 20000 "$SV_SRC_DIR/test/handler/never_ready.sh")" \
		"$(handler_entry ex 2 20000 "$SV_SRC_DIR/test/handler/exit_at_start.sh")")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"

check "calls for handlers that never start get an error output"
xadd_calls RN 0 5 nr '{"x": 1}'
xadd_calls RE 0 5 ex '{"x": 1}'
wait_for 40 '[ "$(outputs_count RN)" -ge 5 ] && [ "$(outputs_count RE)" -ge 5 ]' \
	|| fail "RN: $(outputs_count RN) of 5, RE: $(outputs_count RE) of 5"
sleep 1
one_each RN 5 || fail "RN: not one output per call"
one_each RE 5 || fail "RE: not one output per call"
out_field RN c0 'd["is_error"] and d["output"].startswith("handler for nr failed to start ") and "times: not ready within 800 ms" in d["output"] and "warming up for ever" in d["output"]' \
	| grep -qx true || fail "RN output: $(out_field RN c0 d)"
out_field RE c0 'd["is_error"] and d["output"].startswith("handler for ex failed to start ") and "times: exited with status 3" in d["output"] and "cannot load model: no such file" in d["output"]' \
	| grep -qx true || fail "RE output: $(out_field RE c0 d)"
[ "$(outputs_where RN 'd["is_error"]' | wc -w)" = 5 ] || fail "RN: not all errors"
[ "$(outputs_where RE 'd["is_error"]' | wc -w)" = 5 ] || fail "RE: not all errors"
ok "error outputs: $(out_field RN c0 'd["output"]') / $(out_field RE c0 'd["output"]')"

check "the cause is logged"
grep -q 'handler failed to start 3 times: not ready within 800 ms: warming up for ever.*tool=nr' "$DLOG" || fail "nr cause not logged"
grep -q 'handler failed to start 3 times: exited with status 3: cannot load model: no such file.*tool=ex' "$DLOG" || fail "ex cause not logged"
ok "both causes logged"

check "later calls are answered too (still failing), not left waiting"
xadd_calls RN2 0 3 nr '{}'
wait_for 30 '[ "$(outputs_count RN2)" -ge 3 ]' || fail "RN2: $(outputs_count RN2) of 3"
ok "3 more error outputs"

worker_sound
ok "nothing pending, worker RUNNING, never restarted"
pass
