#!/usr/bin/env bash
# The Redis password never leaks: not into the daemon log (also through a
# Redis outage, reloads good and bad, a refused reload that changes the
# URL), not into any streamvisorctl output, not into Redis (NS:workers,
# NS:supervisor), not into a tool's environment, not into -t errors.  A
# wrong password is reported as an AUTH error without the password.
# password_file works.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PW=S3cretPassw0rd
PW2=N3wPassw0rdX
WRONG=Wr0ngPassw0rdZ
OUT=$TMPD/ctl-outputs
mkdir -p "$OUT"
# redis-cli (rcli) authenticates from the environment; the daemon inherits
# it too, so the tool check below also proves the environment does not leak.
export REDISCLI_AUTH=$PW

TOOLS='tools = ( { name = "env"; command = [ "/usr/bin/env" ]; timeout_ms = 5000; env = [ "LANG=C" ]; } );'

# url_config URL [extra]: the standard test config with this Redis URL.
url_config() {
	write_config persist_count=1 tools_count=1 log_level=debug extra="$TOOLS
${2:-}"
	"$PY" - "$CONF" "$1" <<'EOF'
import sys
p, url = sys.argv[1], sys.argv[2]
s = open(p).read()
import re
s, n = re.subn(r'url = "unix://[^"]*"', 'url = "%s"' % url, s)
assert n == 1
open(p, "w").write(s)
EOF
}

# c NAME ARGS...: run streamvisorctl, keep its output (stdout+stderr).
c() {
	local name=$1 rc=0
	shift
	ctl "$@" >"$OUT/$name" 2>&1 || rc=$?
	echo "$rc" >"$OUT/$name.rc"
	return 0
}
crc() { cat "$OUT/$1.rc"; }

# no_secret WHAT FILE...: none of the passwords in these files.
no_secret() {
	local what=$1 hits
	shift
	hits=$(grep -n -F -e "$PW" -e "$PW2" -e "$WRONG" "$@" 2>/dev/null | head -n 5 || true)
	[ -z "$hits" ] || fail "password found in $what: $hits"
}

tool_output() {
	rcli --json XRANGE events - + | "$PY" -c '
import json, sys
for id_, f in json.load(sys.stdin):
    d = dict(zip(f[0::2], f[1::2]))
    if d.get("type") == "tool.output" and d.get("call_id") == sys.argv[1]:
        print(d["data"])
' "$1"
}

start_redis --requirepass "$PW"
[ "$(rcli PING)" = PONG ] || fail "rcli cannot authenticate"
url_config "unix://:$PW@$RSOCK"
rc=0
"$STREAMVISORD" -t -c "$CONF" >"$OUT/t-ok" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "config with a password URL rejected: $(cat "$OUT/t-ok")"
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING with the password URL: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "a tool's environment holds no password"
rcli XADD events '*' run R1 type response.created seq 1 data '{}' >/dev/null
rcli XADD events '*' run R1 type tool.call seq 2 data '{"call_id":"c1","name":"env","arguments":{}}' >/dev/null
rcli XADD events '*' run R1 type response.completed seq 3 data '{}' >/dev/null
wait_for 30 '[ -n "$(tool_output c1)" ]' || fail "no tool.output for c1"
tool_output c1 >"$OUT/tool-env"
pyjson 'd["output"]' <"$OUT/tool-env" | sed 's/^/#   /'
pyjson 'd["is_error"]' <"$OUT/tool-env" | grep -qx false || fail "env tool failed: $(cat "$OUT/tool-env")"
no_secret "the tool's environment" "$OUT/tool-env"
grep -q REDISCLI_AUTH "$OUT/tool-env" && fail "the daemon's environment leaked into the tool: $(cat "$OUT/tool-env")"
ok "tool environment clean"

check "a Redis outage: connection errors are logged, without the password"
stop_redis
sleep 4
start_redis --requirepass "$PW"
wait_for 30 'all_running 2 && beat_fresh t1/persist/0 2000 && beat_fresh t1/tools/0 2000' ||
	fail "workers not back after the outage: $(worker_table 2>&1)"
nerr=$(grep -ciE 'redis|connect' "$DLOG" | tr -d ' ')
grep -iE 'level=(warn|error)' "$DLOG" | grep -iE 'redis|connect|refused|No such file' | head -n 3 | sed 's/^/#   /'
grep -iE 'level=(warn|error)' "$DLOG" | grep -qiE 'redis|connect|refused|No such file' ||
	fail "no connection error logged during the outage"
ok "outage logged ($nerr lines mention redis/connect)"

check "ctl commands: status, pending, metrics, dead list, snapshot, reload"
c status-json --json status
c status status
c status-worker status t1/persist/0
c pending pending
c pending-json --json pending
c metrics metrics
c dead dead list
wait_for 20 "ctl snapshot R1 >/dev/null 2>&1" || true
c snapshot snapshot R1
c reload reload
[ "$(crc reload)" = 0 ] || fail "reload of the unchanged file failed: $(cat "$OUT/reload")"
for f in status-json pending metrics; do [ "$(crc $f)" = 0 ] || fail "$f exit $(crc $f): $(cat "$OUT/$f")"; done
grep -q 'redis' "$OUT/status-json" && info "status --json mentions redis: $(grep -o '"redis":"[^"]*"' "$OUT/status-json")"
ok "ctl outputs captured"

check "a bad reload (syntax error, unknown key) and a refused reload (new password in the URL)"
cp "$CONF" "$TMPD/good.conf"
printf 'bogus_key = "%s";\nredis = { url = "unix://:%s@/nonexistent"; };\n' "$PW" "$PW" >>"$CONF"
c reload-bad reload
[ "$(crc reload-bad)" = 1 ] || fail "bad reload exit $(crc reload-bad), want 1: $(cat "$OUT/reload-bad")"
sed 's/^/#   /' "$OUT/reload-bad"
# the error output names the key but the offending line holds the password
cp "$TMPD/good.conf" "$CONF"
url_config "unix://:$PW2@$RSOCK"
c reload-url reload
[ "$(crc reload-url)" = 1 ] || fail "reload with a changed URL exit $(crc reload-url), want 1: $(cat "$OUT/reload-url")"
sed 's/^/#   /' "$OUT/reload-url"
grep -q redis "$OUT/reload-url" || fail "refused reload does not name the redis key: $(cat "$OUT/reload-url")"
url_config "unix://:$PW@$RSOCK"
printf 'this is { not libconfig %s\n' "$PW" >>"$CONF"
c reload-syntax reload
[ "$(crc reload-syntax)" = 1 ] || fail "syntax-error reload exit $(crc reload-syntax): $(cat "$OUT/reload-syntax")"
cp "$TMPD/good.conf" "$CONF"
c reload-again reload
[ "$(crc reload-again)" = 0 ] || fail "reload after restoring the file failed: $(cat "$OUT/reload-again")"
ok "bad reloads refused (exit 1)"

check "-t with an unparsable URL holding a password"
url_config "unix://:$PW@relative/path.sock"
rc=0
"$STREAMVISORD" -t -c "$CONF" >"$OUT/t-badurl" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "-t on an unparsable URL exit $rc: $(cat "$OUT/t-badurl")"
sed 's/^/#   /' "$OUT/t-badurl"
url_config "redis://:$PW@host:notaport/0"
"$STREAMVISORD" -t -c "$CONF" >"$OUT/t-badurl2" 2>&1 || true
sed 's/^/#   /' "$OUT/t-badurl2"
cp "$TMPD/good.conf" "$CONF"
ok "-t errors captured"

check "the password is nowhere: daemon log, ctl outputs, NS:workers, NS:supervisor"
rcli HGETALL "$SV_NS:workers" >"$OUT/redis-workers"
rcli --json XRANGE "$SV_NS:supervisor" - + >"$OUT/redis-supervisor"
rcli --json XRANGE events:dead - + >"$OUT/redis-dead" 2>/dev/null || true
no_secret "streamvisorctl output" "$OUT"/*
no_secret "the daemon log" "$DLOG"
nout=0
for f in "$OUT"/*; do [[ $f == *.rc ]] || nout=$((nout + 1)); done
ok "no password in $nout outputs or the $(wc -l <"$DLOG")-line log"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"

check "a wrong password: the AUTH error is logged without the password"
url_config "unix://:$WRONG@$RSOCK"
mark=$(wc -l <"$DLOG")
start_daemon
wait_for 20 "tail -n +$((mark + 1)) \"\$DLOG\" | grep -qiE 'WRONGPASS|invalid.*password|AUTH'" ||
	fail "no AUTH error logged with a wrong password"
sleep 1
# One process, no pipe: an early reader exit would be SIGPIPE under pipefail.
awk -v m="$mark" 'NR > m && tolower($0) ~ /wrongpass|invalid.*password|auth/ && n++ < 3 { print "#   " $0 }' "$DLOG"
c status-wrong --json status
no_secret "the daemon log (wrong password)" "$DLOG"
no_secret "status (wrong password)" "$OUT/status-wrong"
pid_alive "$DAEMON_PID" || fail "daemon died with a wrong password"
stop_daemon
ok "AUTH error logged, password not"

check "password_file: the file's password is used and not logged"
printf '%s\n' "$PW" >"$TMPD/redis.pw"
chmod 600 "$TMPD/redis.pw"
url_config "unix://$RSOCK"
sed -i "s|^redis = { |redis = { password_file = \"$TMPD/redis.pw\"; |" "$CONF"
grep -q password_file "$CONF" || fail "could not add password_file"
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING with password_file: $(worker_table 2>&1)"
snapshot_pids >/dev/null
rcli XADD events '*' run R2 type response.created seq 1 data '{}' >/dev/null
rcli XADD events '*' run R2 type response.completed seq 2 data '{}' >/dev/null
wait_for 20 'ctl snapshot R2 >/dev/null 2>&1' || fail "R2 not persisted with password_file"
c status-pwfile --json status
c reload-pwfile reload
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
no_secret "streamvisorctl output" "$OUT"/*
no_secret "the daemon log" "$DLOG"
ok "password_file works; nothing leaked"

pass
