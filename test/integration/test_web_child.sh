#!/usr/bin/env bash
# Issue 15, done-when 4: the web child's privileges, checked from /proc.
# The web child is the master's child whose cmdline is `streamvisord
# --web-child` (exec'd fresh).  Redis has a password (redis.password_file).
#   - it runs as http.user (nobody when the test runs as root: every uid
#     and gid nobody's, no supplementary group 0), never root; its
#     environment is empty but SV_FAULT_DIR;
#   - freshly started, its memory holds neither the Redis password nor the
#     HTTP token (as root: /proc/PID/mem);
#   - its fds: 0-2 (/dev/null, the stderr pipe), one unix socket (the
#     channel), its listening socket, the SQLite files (and -wal/-shm,
#     the database opened read-only) and event-loop kernel objects
#     (epoll, timerfd, signalfd, eventfd); no Redis socket, no control
#     socket, no password or config file;
#   - with its uid and gids the password file cannot be read, nor the
#     control socket used although that user is in control.group (root only);
#   - SIGSTOP: streamvisorctl keeps answering (the master never waits for
#     it); SIGCONT: the API answers again;
#   - SIGKILL: the master starts a new one (new pid, the API answers again),
#     no worker is restarted, the master is the same;
#   - SIGKILL while a restart it relayed waits for its worker to count as
#     started: the master lives on and the restart completes.
# Parts that need root (the user, the memory, the password file) are
# skipped, not failed, as another user.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/web/common.sh"

PCHK="$PY $SV_TEST_DIR/web/proccheck.py"
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1

PW=$("$PY" -c 'import secrets; print("redispw-" + secrets.token_hex(16))')
PWF=$TMPD/redis.pw
printf '%s\n' "$PW" >"$PWF"
chmod 600 "$PWF"
export REDISCLI_AUTH=$PW
start_redis --requirepass "$PW"
web_config persist_count=1 tools_count=1 log_level=info start_ms=2000
sed -i "s|^redis = { |redis = { password_file = \"$PWF\"; |" "$CONF"
grep -q password_file "$CONF" || fail "could not add password_file"
# The socket open to control.group (nobody's group as root): the daemon,
# not the file mode, must keep the web child's user out.
sed -i 's|mode = "0600"|mode = "0660"|' "$CONF"
require_http
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
wait_for 20 'web_child_pid >/dev/null' || fail "no web child (streamvisord --web-child) among the master's children: $(ps --ppid "$DAEMON_PID" -o pid=,args= | tr '\n' ';')"
WEB=$(web_child_pid)
info "web child: pid $WEB ($(tr '\0' ' ' <"/proc/$WEB/cmdline")), exe $(readlink "/proc/$WEB/exe")"

check "its memory holds neither the Redis password nor the token (freshly started, before any request)"
if [ "$ROOT" = 1 ]; then
	# No request has reached it yet (api_ready comes after): a token in
	# its memory could only have come from the master.
	sleep 0.5
	rc=0
	out=$($PCHK mem "$WEB" --secret-file "$PWF" --secret-file "$TOKF") || rc=$?
	info "$out"
	case $rc in
	0) ok "neither secret in $(pyjson 'd["bytes"]' <<<"$out") bytes of its memory" ;;
	2) info "SKIP sub-check: could not read /proc/$WEB/mem" ;;
	*) fail "a secret is in the web child's memory: $(pyjson 'd["found"]' <<<"$out" | sed "s|$TMPD/||g")" ;;
	esac
else
	info "SKIP sub-check: reading another process's memory needs root"
fi
api_ready 20 || fail "the API does not answer on 127.0.0.1:$PORT: $($WEBC req "$PORT" GET /api/v1/session)"

check "it runs as http.user, not root; its environment is empty"
# ids PID: "UIDS|GIDS|GROUPS" from /proc/PID/status
ids() { awk '/^Uid:/ {u=$2" "$3" "$4" "$5} /^Gid:/ {g=$2" "$3" "$4" "$5} /^Groups:/ {$1=""; s=$0} END {print u"|"g"|"s}' "/proc/$1/status"; }
check_user() {
	local pid=$1 v nuid ngid
	v=$(ids "$pid") || fail "web child $pid vanished"
	info "web child $pid: uids|gids|groups $v"
	if [ "$ROOT" = 1 ]; then
		nuid=$(id -u nobody)
		ngid=$(id -g nobody)
		[ "${v%%|*}" = "$nuid $nuid $nuid $nuid" ] || fail "web child uids '${v%%|*}', want nobody's ($nuid) everywhere"
		v=${v#*|}
		[ "${v%%|*}" = "$ngid $ngid $ngid $ngid" ] || fail "web child gids '${v%%|*}', want nobody's group ($ngid)"
		for g in ${v#*|}; do
			[ "$g" != 0 ] || fail "web child keeps supplementary group 0: '${v#*|}'"
		done
	else
		info "SKIP sub-check: http.user needs the test to run as root (the child runs as uid $(id -u))"
	fi
}
check_user "$WEB"
# Only the fault seams' directory and the sanitizers' options (an ASan
# build's test run sets them) are passed on.
env=$(tr '\0' '\n' <"/proc/$WEB/environ" | grep -Ev '^(SV_FAULT_DIR|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)=' || true)
[ -z "$env" ] || fail "the web child's environment is not empty: $(cut -d= -f1 <<<"$env" | tr '\n' ' ')"
ok "uid $(awk '/^Uid:/ {print $3}' "/proc/$WEB/status"), environment empty (but SV_FAULT_DIR and sanitizer options)"

check "its fds: stdio, the channel, its listener, the SQLite files; nothing else"
# A snapshot request makes it open the database.
rcli XADD events '*' run R1 seq 1 type response.created data '{}' >/dev/null
rcli XADD events '*' run R1 seq 2 type response.completed data '{}' >/dev/null
wait_for 20 'ctl snapshot R1 >/dev/null 2>&1' || fail "R1 not persisted"
api GET /api/v1/runs/R1 --bearer-file "$TOKF"
want_status 200 "GET /api/v1/runs/R1"
sleep 0.5 # our connection closes on both sides
fdcheck() { $PCHK fds "$WEB" --sqlite "$TMPD/snap.db" --port "$PORT" >"$TMPD/fds.json"; }
wait_for 5 fdcheck || {
	$PCHK fds "$WEB" --sqlite "$TMPD/snap.db" --port "$PORT" --allow-conn | pyjson '"\n".join("#   fd %(fd)s %(target)s: %(kind)s %(sock)s" % dict(sock=e.get("sock", ""), **e) for e in d["fds"])' || true
	fail "the web child holds fds it should not: $(pyjson 'd["bad"]' <"$TMPD/fds.json"); unix sockets: $(pyjson 'd["unix"]' <"$TMPD/fds.json")"
}
pyjson '"\n".join("#   fd %d %s: %s%s" % (e["fd"], e["target"], e["kind"], " (" + e["mode"] + ")" if "mode" in e else "") for e in d["fds"])' <"$TMPD/fds.json"
[ "$(pyjson '[e["fd"] for e in d["fds"] if e["kind"] == "listen"] != []' <"$TMPD/fds.json")" = true ] ||
	fail "no listening socket on port $PORT among its fds"
dbmode=$(pyjson '" ".join(e["mode"] for e in d["fds"] if e["kind"] == "sqlite" and e["target"].endswith(".db"))' <"$TMPD/fds.json")
[ -n "$dbmode" ] || fail "the SQLite file is not open after a snapshot request"
[[ " $dbmode " != *" w"* && " $dbmode " != *" rw "* ]] || fail "the database is open for writing ($dbmode)"
# web-spec.md: fd 0 and 1 /dev/null, 2 the stderr pipe, 3 the channel, 4
# the HTTP listener: where they differ, reported (not judged).
layout=$(pyjson '" ".join("%d=%s" % (e["fd"], e["kind"]) for e in d["fds"] if e["fd"] <= 4)' <"$TMPD/fds.json")
[ "$layout" = "0=devnull 1=devnull 2=pipe 3=unix 4=listen" ] || info "fds 0-4 are $layout (web-spec.md: 0=devnull 1=devnull 2=pipe 3=unix 4=listen)"
ok "$(pyjson '" ".join(sorted(set(e["kind"] for e in d["fds"])))' <"$TMPD/fds.json"); database open $dbmode"

check "with its credentials the password file cannot be read"
if [ "$ROOT" = 1 ]; then
	wuid=$(awk '/^Uid:/ {print $3}' "/proc/$WEB/status")
	wgid=$(awk '/^Gid:/ {print $3}' "/proc/$WEB/status")
	wgroups=$(awk '/^Groups:/ {$1=""; print}' "/proc/$WEB/status" | xargs | tr ' ' ',')
	gopt=--clear-groups
	[ -n "$wgroups" ] && gopt=--groups=$wgroups
	rc=0
	out=$(setpriv --reuid="$wuid" --regid="$wgid" "$gopt" -- cat "$PWF" 2>&1) || rc=$?
	[ "$rc" != 0 ] || fail "uid $wuid gid $wgid can read the password file"
	grep -qF -- "$PW" <<<"$out" && fail "the password was printed"
	info "cat as $wuid:$wgid: exit $rc: $out"
	ok "the password file is unreadable for $wuid:$wgid"
	# Its user is in control.group (to read the SQLite files), yet the
	# control socket refuses it: it may act only through its channel.
	rc=0
	out=$(setpriv --reuid="$wuid" --regid="$wgid" "$gopt" -- "$STREAMVISORCTL" -s "$SOCK" status 2>&1) || rc=$?
	[ "$rc" != 0 ] || fail "uid $wuid (control.group member) used the control socket: $out"
	grep -q "not allowed\|denied" <<<"$out" || fail "control socket did not refuse uid $wuid: $out"
	grep -q "control: refused a client: uid $wuid" "$DLOG" || fail "no refusal logged for uid $wuid (ctl said: $out)"
	ok "the control socket refuses the web child's user although it is in control.group"
else
	info "SKIP sub-check: needs root (the child runs as the test's own user)"
fi

check "SIGSTOP: the master does not wait for it; SIGCONT: the API answers again"
kill -STOP "$WEB"
for _ in 1 2 3; do
	t0=$(now_ms)
	ctl_answers || { kill -CONT "$WEB"; fail "the daemon does not answer while the web child is stopped: $CTL_ERR"; }
	dt=$(($(now_ms) - t0))
	[ "$dt" -lt 3000 ] || { kill -CONT "$WEB"; fail "status took $dt ms while the web child is stopped"; }
	sleep 0.5
done
kill -CONT "$WEB"
api_ready 20 || fail "the API does not answer after SIGCONT"
ok "status, status --json and metrics answered while it was stopped"

check "SIGKILL: a new web child, the API answers, no worker restarted"
before=$(worker_table)
started_before=$(grep -c 'msg="worker started' "$DLOG" || true)
kill -KILL "$WEB"
wait_for 30 'n=$(web_child_pid 2>/dev/null) && [ -n "$n" ] && [ "$n" != "$WEB" ]' ||
	fail "no new web child after SIGKILL of $WEB: $(ps --ppid "$DAEMON_PID" -o pid=,args= | tr '\n' ';')"
NEW=$(web_child_pid)
api_ready 20 || fail "the API does not answer after the web child was restarted"
api GET /api/v1/runs/R1 --bearer-file "$TOKF"
want_status 200 "GET /api/v1/runs/R1 from the new web child"
check_user "$NEW"
sleep 1
after=$(worker_table)
[ "$before" = "$after" ] || fail "workers changed: before [$before] after [$after]"
started_after=$(grep -c 'msg="worker started' "$DLOG" || true)
[ "$started_before" = "$started_after" ] || fail "a worker was started after the web child's death ($started_before -> $started_after 'worker started' lines)"
for w in t1/persist/0 t1/tools/0; do
	[ "$(wfield "$w" restarts)" = 0 ] || fail "$w restarts: $(wfield "$w" restarts)"
done
pid_alive "$DAEMON_PID" || fail "the master died"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
ok "web child $WEB -> $NEW; workers unchanged: $(tr '\n' ';' <<<"$after")"

check "it dies while a restart it relayed waits for the worker: the master lives on, the restart ends"
# start_ms=2000: the restart's deferred reply waits 2 s for the new worker
# to count as started, holding the relayed request, when the child is killed.
WEB=$NEW
T0=$(wfield t1/tools/0 pid)
$WEBC req "$PORT" POST /api/v1/ctl --json '{"command":"restart","args":["t1/tools/0"]}' --origin "$ORIGIN" \
	--bearer-file "$TOKF" >/dev/null 2>&1 &
RPID=$!
wait_for 20 'grep -q "web: restart (token checked)" "$DLOG"' || fail "the master never got the restart"
kill -KILL "$WEB"
wait_for 30 'n=$(web_child_pid 2>/dev/null) && [ -n "$n" ] && [ "$n" != "$WEB" ]' || fail "no new web child"
wait "$RPID" || true
wait_for 30 '[ "$(wfield t1/tools/0 state)" = RUNNING ] && [ "$(wfield t1/tools/0 pid)" != "$T0" ]' ||
	fail "t1/tools/0 was not restarted: $(wfield t1/tools/0 state) pid $(wfield t1/tools/0 pid)"
died=$(grep -n 'msg="web child exited' "$DLOG" | tail -n 1 | cut -d: -f1)
ran=$(grep -n 'msg="worker t1/tools/0 STARTING -> RUNNING' "$DLOG" | tail -n 1 | cut -d: -f1)
[ -n "$died" ] && [ -n "$ran" ] && [ "$died" -lt "$ran" ] ||
	fail "the web child was not killed while the restart was pending (log lines $died, $ran)"
pid_alive "$DAEMON_PID" || fail "the master died"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
api_ready 20 || fail "the API does not answer after the second web child restart"
ok "t1/tools/0 $T0 -> $(wfield t1/tools/0 pid); master $DAEMON_PID alive"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
