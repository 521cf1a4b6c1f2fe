#!/usr/bin/env bash
# A Redis connection lost during a worker's start-up checks (fault seam
# redis_drop.info: slot 0 drops it right after INFO) must not crash the
# worker: nothing is appended to the dropped (NULL) context, the worker
# reconnects and works, under the same pid.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

require_fault_seams
start_redis
touch "$FAULT_DIR/redis_drop.info"
write_config persist_count=1 tools_count=1 \
	extra="$(tools_block "$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh" pfx)")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
before=$(snapshot_pids)

check "both slot-0 workers dropped their connection after INFO"
wait_for 15 '[ "$(grep -c "dropped after INFO" "$DLOG")" -ge 2 ]' \
	|| fail "the fault seam did not fire twice: $(grep -c "dropped after INFO" "$DLOG")"
ok "seam fired"

check "the tool worker still runs a call, and no worker was replaced"
rcli XADD events '*' run R1 type response.created seq 1 data '{}' >/dev/null
xadd_call R1 2 c1 echo '{"x":1}' >/dev/null
expect_output R1 c1 'd["is_error"] is False and d["output"] == "pfx:{\"x\":1}"' >/dev/null
[ "$(worker_table)" = "$before" ] || fail "workers changed: before=[$before] now=[$(worker_table)]"
! grep -qE 'signal 11|SIGSEGV|Segmentation' "$DLOG" || fail "a worker crashed: $(grep -E 'signal 11|SIGSEGV|Segmentation' "$DLOG")"
[ -z "$(sup_select 0-0 "e.get('to') in ('EXITED', 'BACKOFF', 'FATAL')")" ] || fail "a worker exited: $(sup_select 0-0 "e.get('to') in ('EXITED', 'BACKOFF', 'FATAL')")"
ok "same pids, one output"
pass
