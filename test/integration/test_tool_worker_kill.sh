#!/usr/bin/env bash
# SIGKILL a tool worker while its tool runs: the master kills the dead
# worker's tool process group (nothing of that run survives), the
# restarted worker runs the call again (at-least-once execution), and the
# stream holds exactly one tool.output for the call (exactly-once output).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block \
	"$(tool_entry slow 30000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "a slow call is picked up; find the busy worker in $SV_NS:workers"
id=$(xadd_call K 1 k1 slow '{"sleep":4}')
info "entry $id"
busy_hb() { tool_heartbeats | grep -F "\"current\": \"$id\"" | grep -F '"status": "busy"' | head -n 1; }
wait_for 20 '[ -n "$(busy_hb)" ] && [ -s "$COUNTER" ]' || fail "no busy worker with current=$id: $(tool_heartbeats)"
hbj=$(busy_hb)
echo "$hbj"
name=$(pyjson 'd["name"]' <<<"$hbj")
wpid=$(pyjson 'd["pid"]' <<<"$hbj")
pgid=$(pyjson 'd["tool_pgid"]' <<<"$hbj")
[[ $pgid =~ ^[0-9]+$ ]] && [ "$pgid" -gt 1 ] || fail "heartbeat has no tool_pgid: $hbj"
tool_pid=$(awk 'NR == 1 {print $1}' "$COUNTER")
[ "$tool_pid" = "$pgid" ] || fail "tool pid $tool_pid is not the tool_pgid $pgid (own process group)"
grp=$(pgrep -g "$pgid" | paste -sd' ' || true)
info "worker $name pid $wpid runs the tool in process group $pgid: $grp"
[ -n "$grp" ] || fail "no process in the tool's process group $pgid"
for p in $grp; do remember_pid "$p"; done
[ "$(wfield "$name" pid)" = "$wpid" ] || fail "status and heartbeat disagree on the pid of $name"

check "SIGKILL $name (pid $wpid)"
kill -KILL "$wpid"
wait_for 10 '[ -z "$(pgrep -g "$pgid" || true)" ]' \
	|| fail "processes of the killed worker's tool survive: $(ps -o pid,pgid,stat,args -g "$pgid" 2>&1)"
for p in $grp; do ! pid_alive "$p" || fail "tool process $p survived"; done
wait_for 5 'grep -q "killed the tool process group $pgid" "$DLOG"' || info "(no log line about killing group $pgid)"
ok "the tool process group $pgid is gone"
wait_for 20 '[ "$(wfield "$name" pid)" != "$wpid" ] && state_is "$name" RUNNING' \
	|| fail "$name not restarted: $(worker_json "$name" 2>&1)"
remember_pid "$(wfield "$name" pid)"
ok "$name restarted as pid $(wfield "$name" pid)"

check "the call runs again and is published exactly once"
wait_output 40 K k1 || fail "no tool.output for K/k1 after the restart"
n=$(wc -l <"$COUNTER")
info "executions: $n"
[ "$n" -ge 2 ] || fail "the call ran $n time(s): want a re-run after the crash"
sleep 3 # past claim_idle_ms: no late duplicate
[ "$(count_outputs K k1)" = 1 ] || fail "want exactly 1 tool.output: $(tool_outputs K k1)"
d=$(out_field K k1 'd')
pyjson 'd["output"] == "slept 4\n" and d["is_error"] is False and d["exit_code"] == 0' <<<"$d" | grep -qx true \
	|| fail "output: $d"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
[ -z "$(pgrep -g "$pgid" || true)" ] || fail "the first run's group $pgid has processes again"
ok "$n executions, one tool.output, nothing pending"

check "afterwards no worker is busy and no tool_pgid is left"
idle_all() { [ -z "$(tool_heartbeats | "$PY" -c 'import json,sys; [print(l.strip()) for l in sys.stdin if (lambda o: o.get("status") != "idle" or o.get("current") or o.get("tool_pgid"))(json.loads(l))]')" ]; }
wait_for 10 idle_all || fail "a worker still busy or with a tool_pgid: $(tool_heartbeats)"
ok "all tool workers idle, current null, tool_pgid 0"
pass
