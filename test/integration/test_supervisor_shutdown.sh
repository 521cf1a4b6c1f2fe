#!/usr/bin/env bash
# SIGTERM: every worker exits, the master exits 0, no process is left and
# the node's NS:workers fields are removed.  Then the -d -p PIDFILE mode:
# pidfile written, a second -d instance refused, `streamvisorctl shutdown`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# no_process_left PIDS...: none of PIDS alive, and no process mentions our
# config (workers are forked from the master, so they carry its cmdline).
no_process_left() {
	local p
	for p in "$@"; do pid_alive "$p" && return 1; done
	[ -z "$(test_pids)" ]
}

start_redis
write_config persist_count=2 tools_count=2
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
pids="$DAEMON_PID $(snapshot_pids | awk '{print $3}' | tr '\n' ' ')"
[ "$(rcli HLEN "$SV_NS:workers")" = 4 ] || fail "NS:workers does not hold 4 fields"
# a field of another node must survive our shutdown
rcli HSET "$SV_NS:workers" other/persist/0 '{"pid":1,"node":"other","beat_ms":0}' >/dev/null

check "SIGTERM: master exits 0 within the deadline"
master=$DAEMON_PID
kill -TERM "$master"
t0=$(now_ms)
wait_daemon_exit 30 || fail "master $master still running 30 s after SIGTERM"
info "master exited $DAEMON_RC after $(($(now_ms) - t0)) ms"
[ "$DAEMON_RC" -eq 0 ] || fail "master exit status $DAEMON_RC, want 0"
ok "master exit 0"

check "no process left (pids: $pids)"
wait_for 10 "no_process_left $pids" || fail "processes left: $(for p in $pids $(test_pids); do pid_alive $p && ps -o pid=,ppid=,stat=,args= -p $p; done)"
ok "no process left"

check "the node's NS:workers fields are removed, other nodes' kept"
keys=$(rcli HKEYS "$SV_NS:workers" | tr '\n' ' ')
[ "$keys" = "other/persist/0 " ] || fail "NS:workers fields after shutdown: '$keys', want only other/persist/0"
ok "NS:workers: only other/persist/0 left"
killed=$(sup_select 0-0 "e.get('signal') == '9'")
[ -z "$killed" ] || fail "a worker needed SIGKILL at shutdown: $killed"
ok "no worker needed SIGKILL"
[ ! -e "$SOCK" ] || info "note: control socket $SOCK left behind after exit"

check "-d -p PIDFILE: daemonizes, writes the pidfile"
PIDF=$TMPD/streamvisord.pid
write_config persist_count=2 tools_count=2 log_file="$TMPD/daemon-d.log"
DLOG=$TMPD/daemon-d.log
rc=0
SV_FAULT_DIR="$FAULT_DIR" timeout 30 "$STREAMVISORD" -d -p "$PIDF" -c "$CONF" </dev/null >"$TMPD/d-start.out" 2>&1 || rc=$?
cat "$TMPD/d-start.out"
[ "$rc" -eq 0 ] || fail "streamvisord -d exit $rc"
wait_for 10 '[ -s "$PIDF" ]' || fail "pidfile $PIDF not written"
dpid=$(tr -d ' \n' <"$PIDF")
remember_pid "$dpid"
[[ $dpid =~ ^[0-9]+$ ]] && pid_alive "$dpid" || fail "pidfile holds '$dpid', not a live pid"
tr '\0' ' ' <"/proc/$dpid/cmdline" | grep -q streamvisord || fail "pid $dpid is not streamvisord: $(tr '\0' ' ' <"/proc/$dpid/cmdline")"
wait_for 20 'all_running 4' || fail "daemonized: expected 4 RUNNING workers: $(worker_table 2>&1)"
wpids=$(snapshot_pids | awk '{print $3}' | tr '\n' ' ')
for p in $wpids; do
	[ "$(awk '/^PPid:/{print $2}' "/proc/$p/status")" = "$dpid" ] || fail "worker $p is not a child of the pidfile's pid $dpid"
done
[ "$(ps -o sid= -p "$dpid" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')" ] || fail "daemon did not leave the test's session"
ok "daemon pid $dpid (own session), workers $wpids"

check "a second -d instance with the same pidfile refuses"
procs_before=$(test_pids | sort | tr '\n' ' ')
rc=0
SV_FAULT_DIR="$FAULT_DIR" timeout 20 "$STREAMVISORD" -d -p "$PIDF" -c "$CONF" </dev/null >"$TMPD/d-second.out" 2>&1 || rc=$?
sleep 0.5
echo "second -d: exit $rc: $(tail -n 3 "$TMPD/d-second.out")"
[ "$(tr -d ' \n' <"$PIDF")" = "$dpid" ] || fail "pidfile rewritten by the second instance: $(cat "$PIDF")"
wait_for 10 'all_running 4' || fail "first daemon disturbed: $(worker_table)"
[ "$(worker_table | awk '{print $3}' | tr '\n' ' ')" = "$wpids" ] || fail "worker pids changed after the second -d instance"
[ "$(test_pids | sort | tr '\n' ' ')" = "$procs_before" ] \
	|| fail "processes changed after the second -d instance: $(test_pids | sort | tr '\n' ' ') (before: $procs_before)"
[ "$rc" -ne 0 ] || fail "second -d instance exited 0"
if [ -s "$TMPD/d-second.out" ]; then
	msg_where="on stderr"
elif grep -q "pid $dpid\|another" "$DLOG"; then
	msg_where="only in log.file (stderr silent): $(grep "another" "$DLOG" | tail -n 1)"
else
	fail "second -d instance gave no message (stderr or log.file)"
fi
ok "second -d instance did not start (exit $rc, message $msg_where), first untouched"

check "streamvisorctl shutdown stops it"
rc=0; out=$(ctl shutdown 2>&1) || rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "shutdown exit $rc"
wait_for 30 "no_process_left $procs_before" || fail "processes left after shutdown: $(for p in $dpid $wpids $(test_pids); do pid_alive $p && ps -o pid=,stat=,args= -p $p; done)"
wait_for 10 '[ -z "$(rcli HKEYS "$SV_NS:workers" | grep "^t1/")" ]' || fail "t1 fields left in NS:workers: $(rcli HKEYS "$SV_NS:workers" | tr '\n' ' ')"
[ ! -e "$PIDF" ] || info "note: pidfile left behind"
rc=0; ctl status >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 7 ] || fail "status against the stopped daemon exit $rc, want 7"
ok "stopped by ctl shutdown; no process left; status exit 7"
pass
