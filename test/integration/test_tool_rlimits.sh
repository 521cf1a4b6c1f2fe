#!/usr/bin/env bash
# Per-tool rlimits (SPEC: tools[].rlimits): a tool runs with the configured
# CPU seconds, address space and open files, and hitting one is an error
# output, published once and acked, while the tool worker itself (no
# limits) carries on.
#   limits  prints its own limits: ulimit -t / -v / -n
#   spin    busy loop, cpu_s = 1: SIGXCPU long before its 30 s timeout
#   hog     allocates 300 MiB with as_mb = 100: MemoryError, exit 1
#   fds     opens 100 files with nofile = 16: EMFILE, exit 1
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

start_redis
write_config persist_count=1 tools_count=1 extra="$(tools_block \
	"$(TOOL_RLIMITS='cpu_s = 7; as_mb = 100; nofile = 16;' tool_entry limits 10000 4096 /bin/sh -c 'ulimit -t; ulimit -Ht; ulimit -v; ulimit -n')" \
	"$(TOOL_RLIMITS='cpu_s = 1; as_mb = 0; nofile = 0;' tool_entry spin 30000 4096 /bin/sh -c 'while :; do :; done')" \
	"$(TOOL_RLIMITS='cpu_s = 0; as_mb = 100; nofile = 0;' tool_entry hog 30000 4096 "$PY" -c 'b = bytearray(300 << 20); print(len(b))')" \
	"$(TOOL_RLIMITS='cpu_s = 0; as_mb = 0; nofile = 16;' tool_entry fds 30000 4096 "$PY" -c 'import os; fs = [os.open(os.devnull, os.O_RDONLY) for _ in range(100)]; print(len(fs))')")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null
tool_pid=$(wfield t1/tools/0 pid)

rcli XADD events '*' run L type response.created seq 1 data '{}' >/dev/null
for c in limits spin hog fds; do xadd_call L "" "$c" "$c" '{}' >/dev/null; done

check "the limits reach the tool: ulimit -t 7 (hard 8), -v 102400 KiB, -n 16"
expect_output L limits 'd["output"] == "7\n8\n102400\n16\n" and d["is_error"] is False and d["exit_code"] == 0'
ok "rlimits applied"

check "cpu_s: a busy loop is killed by SIGXCPU well before its timeout"
expect_output L spin 'd["is_error"] is True and d["exit_code"] is None and "signal 24" in d["output"] and d["duration_ms"] < 25000'
grep -q 'tool killed by signal 24' "$DLOG" || fail "no log line for the SIGXCPU death"
ok "SIGXCPU -> $(pyjson 'd["output"]' <<<"$OUT_DATA")"

# The tool's stderr (in the daemon log) says why it failed.
stderr_logged() { grep -q "$1" "$DLOG" || fail "'$1' (the tool's stderr) did not reach the log"; }

check "as_mb: a 300 MiB allocation fails under a 100 MiB address space"
expect_output L hog 'd["is_error"] is True and d["exit_code"] == 1 and d["output"] == ""'
stderr_logged MemoryError
ok "MemoryError, exit 1"

check "nofile: opening 100 files fails with 16 descriptors"
expect_output L fds 'd["is_error"] is True and d["exit_code"] == 1'
stderr_logged 'Too many open files'
ok "EMFILE, exit 1"

check "one output per call, all acked, no dead letter, the tool worker unharmed"
for c in limits spin hog fds; do
	[ "$(count_outputs L "$c")" = 1 ] || fail "$(count_outputs L "$c") outputs for $c"
done
wait_for 10 '[ "$(rcli XPENDING events tools | head -n 1)" = 0 ]' || fail "tool.call entries still pending"
[ "$(rcli XLEN events:dead)" = 0 ] || fail "dead letters: $(rcli XLEN events:dead)"
[ "$(wfield t1/tools/0 pid)" = "$tool_pid" ] || fail "the tool worker was replaced: $(worker_json t1/tools/0)"
state_is t1/tools/0 RUNNING || fail "tool worker not RUNNING: $(worker_json t1/tools/0)"
ok "4 outputs, 0 pending, 0 dead, same tool worker pid $tool_pid"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
