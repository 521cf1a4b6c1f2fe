#!/usr/bin/env bash
# run_as = { user = "nobody"; group = "nogroup"; } when started as root:
# workers, the monitor and the tools they run have nobody's uid and
# nogroup's gid (real, effective, saved, fs; no supplementary root group);
# the master stays root; persistence works in a directory nobody owns.
set -euo pipefail

# Checked before lib.sh installs its cleanup trap (77 = skipped for meson).
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: sec_run_as needs root (running as uid $(id -u))"
	exit 77
fi
getent passwd nobody >/dev/null || { echo "SKIP: no user nobody"; exit 77; }
. "$(dirname "$0")/lib.sh"
RGROUP=nogroup
getent group "$RGROUP" >/dev/null || RGROUP=$(id -gn nobody)
NUID=$(id -u nobody)
NGID=$(getent group "$RGROUP" | cut -d: -f3)

# nobody must reach the Redis socket, the tool and the database directory.
chmod 0711 "$TMPD"
DBDIR=$TMPD/nbdb
DB=$DBDIR/snap.db
mkdir -p "$DBDIR" "$TMPD/bin"
chown nobody:"$RGROUP" "$DBDIR"
chmod 0750 "$DBDIR"
cat >"$TMPD/bin/ids.sh" <<'EOF'
#!/bin/sh
cat >/dev/null
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ',')"
EOF
chmod 0755 "$TMPD/bin" "$TMPD/bin/ids.sh"

start_redis --unixsocketperm 777
write_config persist_count=1 tools_count=1 log_level=info extra="run_as = { user = \"nobody\"; group = \"$RGROUP\"; };
tools = ( { name = \"ids\"; command = [ \"$TMPD/bin/ids.sh\" ]; timeout_ms = 5000; } );"
sed -i "s|path = \"$TMPD/snap.db\"|path = \"$DB\"|" "$CONF"
grep -q "path = \"$DB\"" "$CONF" || fail "config edit failed"
"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING under run_as: $(worker_table 2>&1)"
snapshot_pids >/dev/null

# ids PID: "UIDS|GIDS|GROUPS" from /proc/PID/status
ids() { awk '/^Uid:/ {u=$2" "$3" "$4" "$5} /^Gid:/ {g=$2" "$3" "$4" "$5} /^Groups:/ {$1=""; s=$0} END {print u"|"g"|"s}' "/proc/$1/status"; }

check "the master stays root"
m=$(ids "$DAEMON_PID")
info "master $DAEMON_PID: $m"
[[ $m == "0 0 0 0|"* ]] || fail "master uids: $m"
ok "master uid 0"

check "workers and the monitor run as nobody:$RGROUP"
want_u="$NUID $NUID $NUID $NUID"
want_g="$NGID $NGID $NGID $NGID"
check_pid() {
	local what=$1 pid=$2 v
	v=$(ids "$pid") || fail "$what $pid vanished"
	info "$what $pid: $v"
	[ "${v%%|*}" = "$want_u" ] || fail "$what uids '${v%%|*}', want '$want_u'"
	v=${v#*|}
	[ "${v%%|*}" = "$want_g" ] || fail "$what gids '${v%%|*}', want '$want_g'"
	v=$(sed 's/^ *//; s/ *$//' <<<"${v#*|}")
	for g in $v; do
		[ "$g" != 0 ] || fail "$what keeps supplementary group 0 (root): '$v'"
	done
}
for n in t1/persist/0 t1/tools/0; do
	check_pid "$n" "$(wfield "$n" pid)"
done
# The monitor: the master's child that is not a worker.
wpids=" $(wfield t1/persist/0 pid) $(wfield t1/tools/0 pid) "
mon=
for p in $(pgrep -P "$DAEMON_PID" || true); do
	[[ $wpids == *" $p "* ]] || mon=$p
done
[ -n "$mon" ] || fail "no monitor child of the master found (children: $(pgrep -P "$DAEMON_PID" | tr '\n' ' '))"
check_pid monitor "$mon"
# Every child of the master is nobody's.
for p in $(pgrep -P "$DAEMON_PID"); do
	u=$(awk '/^Uid:/ {print $3}' "/proc/$p/status" 2>/dev/null) || continue
	[ "$u" = "$NUID" ] || fail "child $p of the master ($(tr '\0' ' ' <"/proc/$p/cmdline")) has euid $u"
done
ok "workers and monitor are nobody:$RGROUP"

check "a tool runs as nobody:$RGROUP"
rcli XADD events '*' run R1 type response.created seq 1 data '{}' >/dev/null
rcli XADD events '*' run R1 type tool.call seq 2 data '{"call_id":"c1","name":"ids","arguments":{}}' >/dev/null
rcli XADD events '*' run R1 type response.completed seq 3 data '{}' >/dev/null
tool_output() {
	rcli --json XRANGE events - + | "$PY" -c '
import json, sys
for id_, f in json.load(sys.stdin):
    d = dict(zip(f[0::2], f[1::2]))
    if d.get("type") == "tool.output" and d.get("call_id") == "c1":
        print(d["data"])'
}
wait_for 30 '[ -n "$(tool_output)" ]' || fail "no tool.output"
out=$(tool_output | pyjson 'd["output"]')
info "tool says: $out"
[[ $out == "uid=$NUID gid=$NGID groups="* ]] || fail "tool ran as '$out', want uid=$NUID gid=$NGID"
grep -qE 'groups=(0,|.*,0,|.*,0$|0$)' <<<"$out" && fail "tool has supplementary group 0: $out"
ok "tool: $out"

check "persistence works as nobody"
wait_for 30 '[ "$(ctl snapshot R1 2>/dev/null | pyjson "d[\"complete\"]" 2>/dev/null)" = true ]' ||
	fail "R1 not persisted complete: $(ctl snapshot R1 2>&1 | head -c 400)"
[ "$(stat -c %U "$DB")" = nobody ] || fail "database owned by $(stat -c %U "$DB"), want nobody"
[ "$(sqlite3 -readonly "$DB" "SELECT event_count FROM snapshots WHERE run = 'R1'")" = 4 ] ||
	fail "R1 event_count $(sqlite3 -readonly "$DB" "SELECT event_count FROM snapshots WHERE run = 'R1'"), want 4 (3 + tool.output)"
ok "R1 persisted by nobody ($(stat -c '%U:%G %a' "$DB"))"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
