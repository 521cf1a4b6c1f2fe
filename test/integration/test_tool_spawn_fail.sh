#!/usr/bin/env bash
# A tool that cannot be started (its cwd does not exist: the child's chdir
# fails before exec) gets an error output "cannot start ...", and the
# worker keeps no fd of the failed start: its pipes and the pidfd are
# closed on that path, so repeated failures do not add up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

start_redis
write_config persist_count=0 tools_count=1 extra="$(tools_block \
	"$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh")" \
	"$(TOOL_CWD=$TMPD/no-such-dir tool_entry nocwd 5000 65536 "$TOOLS_DIR/echo.sh")")"
start_daemon
wait_for 30 'all_running 1' || fail "expected 1 RUNNING worker, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null
pid=$(wfield t1/tools/0 pid)

# Warm up (first call: lazy allocations), then count the worker's fds.
xadd_call W 1 warm echo '{}' >/dev/null
expect_output W warm 'd["is_error"] is False' >/dev/null
fds_before=$(ls "/proc/$pid/fd" | wc -l)

check "ten calls of a tool that cannot start: error outputs"
for i in $(seq 1 10); do xadd_call F "$i" "f$i" nocwd '{}' >/dev/null; done
for i in $(seq 1 10); do
	expect_output F "f$i" 'd["is_error"] is True and d["output"].startswith("cannot start ") and d["exit_code"] is None' >/dev/null
done
ok "10 error outputs"

check "then a good call; the worker holds as many fds as before"
xadd_call W 2 after echo '{}' >/dev/null
expect_output W after 'd["is_error"] is False' >/dev/null
[ "$(wfield t1/tools/0 pid)" = "$pid" ] || fail "the worker was replaced"
fds_after=$(ls "/proc/$pid/fd" | wc -l)
[ "$fds_after" -le "$fds_before" ] || fail "worker fds grew from $fds_before to $fds_after: $(ls -l "/proc/$pid/fd")"
ok "fds $fds_before before, $fds_after after"
pass
