#!/usr/bin/env bash
# Control socket hardening: SO_PEERCRED refusal of an unauthorized peer, a
# 1 MiB garbage line, a stalled half-line client; streamvisorctl exit 7
# naming the socket when the daemon is not running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Make the socket reachable for everyone, so a refusal can only come from
# the daemon's SO_PEERCRED check.
chmod 0755 "$TMPD"
start_redis
write_config persist_count=2 tools_count=2 sock_mode=0666
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
before=$(snapshot_pids)
wait_for 5 '[ -S "$SOCK" ]' || fail "no socket at $SOCK"
info "socket: $(stat -c '%A %U:%G' "$SOCK")"

# raw_request LINE_PY_EXPR [TIMEOUT_S]: send bytes, print the first reply
# line or "<EOF>" / "<TIMEOUT>".
raw_request() {
	"$PY" - "$SOCK" "$1" "${2:-10}" <<'PY'
import socket, sys, time
path, expr, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
payload = eval(expr)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(timeout)
s.connect(path)
try:
    s.sendall(payload)
except (BrokenPipeError, ConnectionResetError) as e:
    sys.stderr.write("send stopped: %r\n" % (e,))
buf = b""
try:
    while b"\n" not in buf:
        c = s.recv(65536)
        if not c:
            break
        buf += c
except socket.timeout:
    print("<TIMEOUT>")
    sys.exit(0)
except ConnectionResetError:
    pass
print(buf.split(b"\n")[0].decode("utf-8", "replace") if buf else "<EOF>")
PY
}

status_ok() { local rc=0; timeout "${1:-10}" "$STREAMVISORCTL" -s "$SOCK" status >/dev/null 2>&1 || rc=$?; [ "$rc" -eq 0 ]; }

# ------------------------------------------------------------ unauthorized peer
check "a peer that is not root / the daemon's uid / control.group is refused"
if [ "$(id -u)" -ne 0 ]; then
	info "SKIPPED unauthorized-peer check: not running as root (uid $(id -u)), cannot switch to nobody"
elif ! setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
	info "SKIPPED unauthorized-peer check: setpriv to nobody does not work here"
else
	cp "$STREAMVISORCTL" "$TMPD/ctl-copy" && chmod 0755 "$TMPD/ctl-copy"
	asnobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
	# 1. the socket is reachable for nobody at the filesystem level
	py=/usr/bin/python3; [ -x "$py" ] || py=$(command -v python3)
	raw=$(asnobody "$py" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-FAILED %r" % (e,)); sys.exit(0)
try:
    s.sendall(b"{\"cmd\":\"status\",\"args\":[]}\n")
except OSError as e:
    sys.stderr.write("send: %r\n" % (e,))
try:
    b = s.recv(65536)
    print(b.decode("utf-8", "replace").strip() or "<EOF>")
except Exception as e:
    print("<%r>" % (e,))
' "$SOCK") || true
	echo "nobody raw request -> $raw"
	case $raw in CONNECT-FAILED*) fail "nobody cannot even connect (filesystem refusal, test setup problem): $raw" ;; esac
	grep -q 't1/persist' <<<"$raw" && fail "nobody got worker data: $raw"
	if [ "$raw" != "<EOF>" ] && ! [[ $raw == \<* ]]; then
		[ "$(pyjson 'd["ok"]' <<<"$raw" 2>/dev/null)" = false ] || fail "reply to nobody is neither a close nor ok=false: $raw"
	fi
	ok "raw request as nobody refused by the daemon: $raw"
	# 2. streamvisorctl as nobody
	rc=0; out=$(asnobody "$TMPD/ctl-copy" -s "$SOCK" --json status 2>&1) || rc=$?
	echo "streamvisorctl as nobody -> exit $rc: $out"
	[ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] || fail "streamvisorctl as nobody exit $rc (allowed)"
	grep -q 't1/persist' <<<"$out" && fail "streamvisorctl as nobody got worker data"
	ok "streamvisorctl as nobody refused (exit $rc)"
	rc=0; out=$(asnobody "$TMPD/ctl-copy" -s "$SOCK" shutdown 2>&1) || rc=$?
	[ "$rc" -ne 0 ] || fail "nobody could run shutdown: $out"
	pid_alive "$DAEMON_PID" || fail "daemon died after nobody's shutdown"
	ok "shutdown as nobody refused (exit $rc), daemon alive"
fi
status_ok || fail "status as root fails after the refusal"
ok "status as root still works"

# ------------------------------------------------------------ garbage
check "garbage requests get an error reply"
for req in 'b"not json at all\n"' 'b"[1,2,3]\n"' 'b"{\"cmd\":\"no-such-command\"}\n"'; do
	r=$(raw_request "$req")
	echo "$req -> $r"
	[ "$(pyjson 'd["ok"]' <<<"$r" 2>/dev/null)" = false ] || fail "no ok=false reply to $req: $r"
	[ -n "$(pyjson 'd["error"]' <<<"$r" 2>/dev/null)" ] || fail "ok=false reply without error text: $r"
done
ok "bad JSON / non-object / unknown command -> ok=false with error"

check "a 1 MiB garbage line gets an error reply"
r=$(raw_request 'b"\x01garbage" * (1048576 // 8) + b"\n"' 20)
echo "1 MiB line -> ${r:0:300}"
[ "$r" != "<TIMEOUT>" ] || fail "no reply within 20 s to a 1 MiB line"
[ "$r" != "<EOF>" ] || fail "connection closed without an error reply for a 1 MiB line"
[ "$(pyjson 'd["ok"]' <<<"$r" 2>/dev/null)" = false ] || fail "reply to a 1 MiB line is not ok=false: ${r:0:300}"
pid_alive "$DAEMON_PID" || fail "daemon died"
status_ok || fail "status fails after the 1 MiB line"
ok "1 MiB line -> error reply; status works afterwards"

# ------------------------------------------------------------ slow client
check "clients that send half a line and stall do not block status"
stall_pids=""
for i in 1 2; do
	"$PY" - "$SOCK" "$TMPD/stall.$i" <<'PY' &
import socket, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(b'{"cmd":"sta')
open(out + ".connected", "w").close()
t0 = time.monotonic()
s.settimeout(30)
res = "not dropped within 30 s"
try:
    while True:
        b = s.recv(4096)
        if not b:
            res = "dropped %d" % ((time.monotonic() - t0) * 1000)
            break
except socket.timeout:
    pass
except OSError as e:
    res = "dropped %d (%r)" % ((time.monotonic() - t0) * 1000, e)
open(out, "w").write(res + "\n")
PY
	stall_pids="$stall_pids $!"
done
wait_for 10 '[ -e "$TMPD/stall.1.connected" ] && [ -e "$TMPD/stall.2.connected" ]' || fail "stalling clients could not connect"
for i in 1 2 3; do
	# 4 s < the 5 s client deadline: a blocked loop could not answer in time
	status_ok 4 || fail "status did not answer within 4 s while 2 clients stall (try $i)"
done
ok "status answered 3 times while 2 clients stall"
wait_for 40 '[ -s "$TMPD/stall.1" ] && [ -s "$TMPD/stall.2" ]' || fail "stalling clients did not finish"
for i in 1 2; do
	r=$(cat "$TMPD/stall.$i"); echo "stalled client $i: $r"
	case $r in
	dropped*) ms=$(awk '{print $2}' <<<"$r"); [ "$ms" -le 15000 ] || fail "stalled client dropped only after $ms ms (limit 5 s)" ;;
	*) fail "stalled client $i: $r (spec: dropped after 5 s)" ;;
	esac
done
ok "stalled clients dropped by the daemon"
for p in $stall_pids; do wait "$p" 2>/dev/null || true; done

check "the daemon was unaffected"
wait_for 10 'all_running 4' || fail "not 4 RUNNING: $(worker_table)"
[ "$(worker_table)" = "$before" ] || fail "workers changed: $(worker_table) vs $before"
ok "same 4 pids RUNNING"

# ------------------------------------------------------------ not running
check "streamvisorctl against a stopped daemon exits 7 and names the socket"
stop_daemon 30
[ "$DAEMON_RC" -eq 0 ] || fail "daemon exit $DAEMON_RC on SIGTERM"
rc=0; out=$(ctl status 2>&1) || rc=$?
echo "exit $rc: $out"
[ "$rc" -eq 7 ] || fail "status against a stopped daemon exit $rc, want 7"
grep -qF -- "$SOCK" <<<"$out" || fail "message does not name $SOCK: $out"
grep -qi 'not running' <<<"$out" || fail "message does not say the daemon is not running: $out"
ok "exit 7, names $SOCK"
rc=0; out=$("$STREAMVISORCTL" -s "$TMPD/nowhere.sock" --json status 2>&1) || rc=$?
echo "exit $rc: $out"
[ "$rc" -eq 7 ] || fail "status on a missing socket exit $rc, want 7"
grep -qF -- "$TMPD/nowhere.sock" <<<"$out" || fail "message does not name $TMPD/nowhere.sock: $out"
ok "missing socket: exit 7, names the path"
pass
