#!/usr/bin/env bash
# Issue 10, done-when 1: a worker that claims a tool process group it did
# not start (fault seam chan.tools: "tool PID") is refused and replaced, and
# neither the refusal nor a later SIGKILL of a worker harms that group: a
# `sleep` in a Unix session of its own that streamvisor never started
# survives everything.  Needs -Dfault_injection=true.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams

start_foreign_session
info "foreign session: pid $FOREIGN_PID (sid = pgid = pid)"
foreign_ok() { pid_alive "$FOREIGN_PID" && kill -0 -- "-$FOREIGN_PID" 2>/dev/null; }

start_redis
write_config persist_count=1 tools_count=1
echo "tool $FOREIGN_PID" >"$FAULT_DIR/chan.tools"
start_daemon

check "t1/tools/0 claims the foreign group $FOREIGN_PID: the master refuses it"
wait_for 30 'grep -q "refused tool claim" "$DLOG"' || fail "no 'refused tool claim' in the log"
rm -f "$FAULT_DIR/chan.tools" # the replacement runs normally
grep -F 'refused tool claim' "$DLOG" | head -n 3
first=$(started_pids tools/0 | head -n 1)
[ -n "$first" ] || fail "no 'worker started' line of tools/0"
remember_pid "$first"
foreign_ok || fail "the foreign session $FOREIGN_PID died after the forged claim"
ok "refused; the foreign session is alive"

check "the claiming worker (pid $first) is replaced as a failed child"
wait_for 30 'replaced t1/tools/0 "$first"' || fail "t1/tools/0 not replaced: $(worker_json t1/tools/0 2>&1)"
wait_for 10 '! pid_alive "$first"' || fail "the claiming worker $first is still alive"
p1=$(wfield t1/tools/0 pid); remember_pid "$p1"
# A claim right after registering comes during STARTING: a failed start
# (BACKOFF), which `restarts` (crashes from RUNNING) does not count.
wait_for 10 'failed_exit t1/tools/0 "$first"' || fail "no failed exit of $first in $SV_NS:supervisor: $(sup_select 0-0 "e.get('worker') == 't1/tools/0'")"
wait_for 20 'all_running 2' || fail "not all RUNNING: $(worker_table)"
foreign_ok || fail "the foreign session $FOREIGN_PID died when the claiming worker was replaced"
ok "t1/tools/0: $first (failed) -> $p1; foreign session alive"

check "SIGKILL the replacement $p1: it is replaced, the foreign session lives on"
kill -KILL "$p1"
wait_for 30 'replaced t1/tools/0 "$p1"' || fail "t1/tools/0 not replaced after SIGKILL: $(worker_json t1/tools/0 2>&1)"
remember_pid "$(wfield t1/tools/0 pid)"
wait_for 20 'all_running 2' || fail "not all RUNNING: $(worker_table)"
[ "$(wfield t1/tools/0 restarts)" -ge 1 ] || fail "the SIGKILL from RUNNING is not counted in restarts: $(worker_json t1/tools/0)"
sleep "$(scaled 1)" # a late (wrong) kill would land by now
foreign_ok || fail "the foreign session $FOREIGN_PID was killed"
pid_alive "$DAEMON_PID" || fail "the daemon died"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
ok "t1/tools/0 RUNNING as $(wfield t1/tools/0 pid); foreign session $FOREIGN_PID alive; daemon answers"
pass
