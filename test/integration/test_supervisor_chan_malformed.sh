#!/usr/bin/env bash
# Issue 10, done-when 1: a worker that sends the master a malformed channel
# message (fault seam chan.tools: "garbage" = bytes that are no frame,
# "oversize" = a header announcing more than the type's maximum, "unknown"
# = a well-formed frame of an unknown type) is logged ("bad channel
# message", naming the worker) and restarted as a failed child (new pid,
# a BACKOFF/EXITED entry for its pid in NS:supervisor); the master keeps running and answering.  Needs
# -Dfault_injection=true.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams

W=t1/tools/0
start_redis
write_config persist_count=1 tools_count=1
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

for mode in garbage oversize unknown; do
	check "$mode: the worker that sends it is restarted, the master answers"
	n0=$(log_count 'bad channel message' tools/0)
	r0=$(wfield "$W" restarts)
	p0=$(wfield "$W" pid)
	before=$(started_pids tools/0)
	echo "$mode" >"$FAULT_DIR/chan.tools"
	kill -KILL "$p0" # its replacement registers and sends the bad message
	wait_for 30 '[ "$(log_count "bad channel message" tools/0)" -gt "$n0" ]' \
		|| fail "$mode: no 'bad channel message' line naming tools/0"
	rm -f "$FAULT_DIR/chan.tools"
	grep -F 'bad channel message' "$DLOG" | grep -F tools/0 | tail -n 1
	wait_for 30 'all_running 2 && [ "$(wfield "$W" pid)" != "$p0" ]' || fail "$mode: $W not RUNNING again: $(worker_table)"
	sleep "$(scaled 1)"
	wait_for 30 'all_running 2' || fail "$mode: $W not RUNNING: $(worker_table)"
	p1=$(wfield "$W" pid); remember_pid "$p1"
	# The senders: the pids started during this case but the one running.
	senders=$(started_pids tools/0 | grep -vxF -f <(printf '%s\n' $before "$p1") || true)
	[ -n "$senders" ] || fail "$mode: no process between $p0 and $p1 sent the message (started: $(started_pids tools/0 | paste -sd' '))"
	for s in $senders; do
		! pid_alive "$s" || fail "$mode: the sender $s is still alive"
		wait_for 10 'failed_exit "$W" "$s"' || fail "$mode: no failed exit of the sender $s: $(sup_select 0-0 "e.get('worker') == '$W'")"
	done
	r1=$(wfield "$W" restarts)
	# The SIGKILL from RUNNING counts; a sender killed during STARTING is
	# a failed start (BACKOFF), not a restart.
	[ "$r1" -ge $((r0 + 1)) ] || fail "$mode: restarts $r0 -> $r1, want the SIGKILL counted"
	pid_alive "$DAEMON_PID" || fail "$mode: the daemon died"
	ctl_answers || fail "$mode: the daemon does not answer: $CTL_ERR"
	ok "$mode: sender(s) $(paste -sd' ' <<<"$senders") gone, $W RUNNING as $p1, restarts $r0 -> $r1"
done

check "after all three, the worker stays up and the master still answers"
wait_for 10 "beat_fresh $W 1500" || fail "$W does not heartbeat: $(hb "$W")"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
ok "$W heartbeats; master answers"
pass
