#!/usr/bin/env bash
# Persistent handlers, done-when 3 (a handler that writes freely on
# stdout): 200 lines per call on stdout change no output (fd 3 only is
# read for answers); they are logged, tagged with the tool, rate-limited.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
write_config persist_count=1 tools_count=1 \
	extra="$(tools_block "$(handler_entry ms 8 20000 "$PY" "$MISBEHAVE" stdout)")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
wpid=$(wfield t1/tools/0 pid)
wait_for 10 '[ -n "$(handler_pids "misbehave.py stdout" "$wpid")" ]' || fail "no handler process"
hp=$(handler_pids "misbehave.py stdout" "$wpid")

check "40 calls, 200 stdout lines each"
xadd_calls RS 0 40 ms '{"sleep_ms": 20, "k": "v"}'
wait_for 40 '[ "$(outputs_count RS)" -ge 40 ]' || fail "RS: $(outputs_count RS) outputs of 40"
sleep 1
one_each RS 40 || fail "RS: not one output per call"
good=$(outputs_where RS 'not d["is_error"] and d["output"] == {"sleep_ms": 20, "k": "v"}' | wc -w)
[ "$good" = 40 ] || fail "RS: $good answers as sent of 40: $(tool_outputs RS | head -n 3)"
ok "40 outputs exactly as answered on fd 3"

check "stdout logged with the tool's name, rate-limited, handler kept"
grep -q 'handler stdout: noise .*tool=ms' "$DLOG" || fail "no stdout line logged"
n=$(grep -c 'handler stdout: noise' "$DLOG" || true)
info "$n of 8000 stdout lines logged"
[ "$n" -ge 1 ] && [ "$n" -lt 8000 ] || fail "not rate-limited: $n lines"
[ "$(handler_pids "misbehave.py stdout" "$wpid")" = "$hp" ] || fail "handler replaced"
grep -q 'protocol violation' "$DLOG" && fail "a protocol violation was logged"
ok "stdout logged ($n lines), same handler $hp"

worker_sound
ok "nothing pending, worker RUNNING, never restarted"
pass
