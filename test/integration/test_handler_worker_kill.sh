#!/usr/bin/env bash
# Persistent handlers, done-when 4: SIGKILL of the tool worker with calls
# in flight in its handler.  The handler does not survive it, the
# replacement worker starts a new handler, and every call is answered
# exactly once; nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
write_config persist_count=1 tools_count=1 \
	extra="$(tools_block "$(handler_entry wk 10 60000 "$PY" "$EXAMPLES/handler.py")")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
wpid=$(wfield t1/tools/0 pid)
wait_for 10 '[ -n "$(handler_pids "$EXAMPLES/handler.py" "$wpid")" ]' || fail "no handler process"
hp=$(handler_pids "$EXAMPLES/handler.py" "$wpid")
info "worker $wpid, handler $hp"
for p in $hp; do remember_pid "$p"; done

check "10 calls in flight in the handler"
xadd_calls RW 0 10 wk '{"sleep_ms": 3000}'
wait_for 10 '[ "$(rcli XPENDING events tools | head -n 1)" = 10 ]' || fail "calls not taken"
busy() { hb t1/tools/0 | pyjson 'len([c for c in d["calls"] if c["state"] == "running"]) >= 8 and d["status"] == "busy"' | grep -qx true; }
wait_for 3 busy || fail "heartbeat does not show the calls in flight: $(hb t1/tools/0)"
hb t1/tools/0
ok "heartbeat shows the calls in flight"

check "SIGKILL the tool worker $wpid"
kill -KILL "$wpid"
wait_for 10 '! pid_alive "$hp"' || fail "handler $hp survived its worker: $(ps -o pid,ppid,args -p "$hp")"
ok "handler $hp is gone"
wait_for 20 '[ "$(wfield t1/tools/0 pid)" != "$wpid" ] && state_is t1/tools/0 RUNNING' \
	|| fail "tools/0 not restarted: $(worker_json t1/tools/0 2>&1)"
remember_pid "$(wfield t1/tools/0 pid)"
ok "worker restarted as $(wfield t1/tools/0 pid)"

check "every call answered once by the replacement"
wait_for 40 '[ "$(outputs_count RW)" -ge 10 ]' || fail "$(outputs_count RW) outputs of 10"
sleep 2
one_each RW 10 || fail "not one output per call"
newhp=$(handler_pids "$EXAMPLES/handler.py" "$(wfield t1/tools/0 pid)")
[ "$(out_field RW c0 'd["output"]["pid"]')" = "$newhp" ] || fail "c0 answered by $(out_field RW c0 'd["output"]["pid"]'), handler is $newhp"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
ok "one output each, by the new handler $newhp; nothing pending"
pass
