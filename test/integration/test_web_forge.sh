#!/usr/bin/env bash
# Issue 15, done-when 2 (last item): a compromised web child cannot act on
# its own.  The fault seam web_forge ($SV_FAULT_DIR/web_forge naming a
# worker) makes the web child send one `restart` of that worker with no
# token at its start; the master refuses it (log: "web: refused restart
# from the web child: unauthorized"), the worker keeps its pid and is
# never restarted, the daemon and the API keep answering, and a real
# action with the token still works afterwards.  Needs
# -Dfault_injection=true.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams
. "$SV_TEST_DIR/web/common.sh"

start_redis
web_config persist_count=1 tools_count=1 log_level=info
require_http
echo t1/persist/0 >"$FAULT_DIR/web_forge"
start_daemon

check "the web child sends the forged restart; the master refuses it"
wait_for 30 'grep -qF "web_forge: sent" "$DLOG"' || fail "no 'web_forge: sent' in the log"
rm -f "$FAULT_DIR/web_forge" # a restarted web child would not forge again
wait_for 20 'grep -qF "refused restart from the web child: unauthorized" "$DLOG"' ||
	fail "no 'refused restart from the web child: unauthorized' in the log"
grep -F -e 'web_forge' -e 'refused restart from the web child' "$DLOG" | head -n 4 | sed 's/^/#   /'
ok "refused"

check "t1/persist/0 was never restarted"
wait_for 30 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
P0=$(wfield t1/persist/0 pid)
sleep "$(scaled 1)" # a late (wrong) restart would show by now
n=$(started_pids persist/0 | wc -l)
[ "$n" = 1 ] || fail "t1/persist/0 started $n times: $(started_pids persist/0 | tr '\n' ' ')"
[ "$(wfield t1/persist/0 pid)" = "$P0" ] || fail "t1/persist/0 pid changed: $P0 -> $(wfield t1/persist/0 pid)"
ok "t1/persist/0 pid $P0, started once"

check "the daemon and the API answer; a real action with the token works"
pid_alive "$DAEMON_PID" || fail "the daemon died"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
api_ready 20 || fail "the API does not answer"
api POST /api/v1/ctl --json '{"command":"restart","args":["t1/persist/0"]}' --origin "$ORIGIN" --bearer-file "$TOKF"
want_status 200 "restart with the token"
wait_for 30 'replaced t1/persist/0 "$P0"' || fail "t1/persist/0 not restarted by a real action: $(worker_json t1/persist/0)"
remember_pid "$(wfield t1/persist/0 pid)"
ok "t1/persist/0: $P0 -> $(wfield t1/persist/0 pid) by the real action"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
