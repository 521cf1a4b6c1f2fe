#!/usr/bin/env bash
# streamvisorctl reads only what it needs.  The daemon runs with a Redis
# password in a root-only password_file; a throwaway user in control.group
# (and nowhere else) cannot read that file, and as that user:
#   - `streamvisorctl -c CONF status` exits 0 (streamvisord -t still needs
#     the file: the daemon's own load is unchanged);
#   - `snapshot RUN` finds a run stored through a pool whose own
#     sqlite_path is not the global sqlite.path, also with --wait and with
#     -s SOCKET (the daemon names its pools' files);
#   - a run held by two pools' files is a usage error (exit 2) naming both
#     pools and the reducer each file records; --pool picks one.
# Needs root and useradd/groupadd/setpriv; skipped (77) otherwise.
set -euo pipefail

# Checked before lib.sh installs its cleanup trap (77 = skipped for meson).
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: ctl_unprivileged needs root to create a user (running as uid $(id -u))"
	exit 77
fi
for tool in useradd userdel groupadd groupdel setpriv; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
UGRP=svctl$$
UUSER=svctlu$$
drop_user() {
	userdel "$UUSER" >/dev/null 2>&1 || true
	groupdel "$UGRP" >/dev/null 2>&1 || true
}
trap drop_user EXIT
groupadd "$UGRP" >/dev/null 2>&1 || { echo "SKIP: cannot create group $UGRP"; exit 77; }
# Primary group nogroup: the user is in control.group as a member only, as
# an operator added to it would be.
PRIMARY=nogroup
getent group "$PRIMARY" >/dev/null || PRIMARY=$UGRP
useradd -M -N -g "$PRIMARY" -G "$UGRP" -d /nonexistent -s /usr/sbin/nologin "$UUSER" >/dev/null 2>&1 ||
	{ echo "SKIP: cannot create user $UUSER"; exit 77; }
setpriv --reuid="$UUSER" --regid="$PRIMARY" --init-groups true 2>/dev/null ||
	{ echo "SKIP: setpriv to $UUSER does not work here"; exit 77; }

. "$(dirname "$0")/lib.sh"
# lib.sh's trap replaced ours: drop the user first, then lib.sh's cleanup,
# which reads the exit status from $? (set +e: the failing "(exit $rc)"
# must not end the trap before the daemon and redis are gone).
trap 'rc=$?; set +e; drop_user; (exit $rc); _sv_cleanup' EXIT

PW=Unpr1vTestPassw0rd
export REDISCLI_AUTH=$PW
OUT=$TMPD/out
mkdir -p "$OUT"
chmod 0755 "$OUT"
# The user may traverse the temp dir and read the config, nothing else of
# ours: the password file is root's alone.
chmod 0711 "$TMPD"
printf '%s\n' "$PW" >"$TMPD/redis.pw"
chmod 0600 "$TMPD/redis.pw"

# asuser CMD...: run as the throwaway user, with its groups from NSS (as
# the daemon checks them).
asuser() { setpriv --reuid="$UUSER" --regid="$PRIMARY" --init-groups "$@"; }
# uctl NAME ARGS...: streamvisorctl as the user; output in $OUT/NAME,
# exit status in $OUT/NAME.rc.
uctl() {
	local name=$1 rc=0
	shift
	asuser "$STREAMVISORCTL" "$@" >"$OUT/$name" 2>"$OUT/$name.err" || rc=$?
	echo "$rc" >"$OUT/$name.rc"
}
urc() { cat "$OUT/$1.rc"; }
show() { sed 's/^/#   /' "$OUT/$1" "$OUT/$1.err"; }

HB=$(scaled 200)
HBT=$(scaled 1000)
P="block_ms = $HB; claim_idle_ms = $HBT;"
# persist: the global file, stream events.  own: its own file, streams
# events2 and events3.  mirror: a third file, stream events3, the merge
# reducer.  So a run on events2 is in own.db alone, one on events3 in
# own.db and mirror.db.
cat >"$CONF" <<EOF
node = "$SV_NODE";
namespace = "$SV_NS";
redis = { url = "unix://$RSOCK"; password_file = "$TMPD/redis.pw"; command_timeout_ms = $(scaled 3000); };
sqlite = { path = "$TMPD/global/snap.db"; };
control = { socket = "$SOCK"; mode = "0660"; group = "$UGRP"; };
heartbeat = { interval_ms = $HB; timeout_ms = $HBT; };
restart = { start_ms = $(scaled 300); max_retries = 5; };
streams = [ "events", "events2", "events3" ];
pools = ( { name = "persist"; kind = "persistence"; streams = [ "events" ]; $P },
          { name = "own"; kind = "persistence"; group = "own@{node}"; streams = [ "events2", "events3" ];
            sqlite_path = "$TMPD/own/snap.db"; $P },
          { name = "mirror"; kind = "persistence"; group = "mirror@{node}"; streams = [ "events3" ];
            sqlite_path = "$TMPD/mirror/snap.db"; reducer = "merge"; $P } );
log = { level = "debug"; };
EOF
chmod 0644 "$CONF"

start_redis --requirepass "$PW"
"$STREAMVISORD" -t -c "$CONF" >"$OUT/t-root" 2>&1 || fail "config rejected: $(cat "$OUT/t-root")"
start_daemon
wait_for 30 'all_running 3' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null

# run STREAM RUN: a complete run of two events.
add_run() {
	rcli XADD "$1" '*' run "$2" type response.created seq 1 data "{\"note\":\"$2\"}" >/dev/null
	rcli XADD "$1" '*' run "$2" type response.completed seq 2 data '{"status":"completed"}' >/dev/null
}
add_run events RG
add_run events2 RA
add_run events3 RB
wait_for 30 'ctl snapshot RG >/dev/null 2>&1 && ctl snapshot RA >/dev/null 2>&1 &&
	ctl snapshot RB --pool own >/dev/null 2>&1 && ctl snapshot RB --pool mirror >/dev/null 2>&1' ||
	fail "runs not persisted in every pool's file"

check "the user is in control.group and cannot read the password file"
asuser id | sed 's/^/#   /'
asuser id -Gn | tr ' ' '\n' | grep -qx "$UGRP" || fail "$UUSER is not in $UGRP"
if asuser cat "$TMPD/redis.pw" >/dev/null 2>&1; then fail "$UUSER can read the password file"; fi
rc=0
asuser "$STREAMVISORD" -t -c "$CONF" >"$OUT/t-user" 2>&1 || rc=$?
[ "$rc" = 78 ] && grep -q 'password_file' "$OUT/t-user" ||
	fail "streamvisord -t as $UUSER: exit $rc, want 78 naming password_file: $(cat "$OUT/t-user")"
ok "password file root-only; the daemon's load still needs it (-t exit 78)"

check "status as the user"
uctl status -c "$CONF" status
show status
[ "$(urc status)" = 0 ] || fail "status as $UUSER: exit $(urc status)"
grep -q "$SV_NODE/own/0" "$OUT/status" || fail "status lists no own worker"
ok "status exit 0"

check "snapshot of a run stored through a pool's own sqlite_path"
uctl snapA -c "$CONF" snapshot RA
[ "$(urc snapA)" = 0 ] || { show snapA; fail "snapshot RA: exit $(urc snapA)"; }
pyjson 'd["id"] == "RA" and d["status"] == "completed" and "output" in d' <"$OUT/snapA" | grep -qx true ||
	fail "snapshot RA is not the response reducer's completed run: $(cat "$OUT/snapA")"
uctl snapAw -c "$CONF" snapshot RA --wait 5
[ "$(urc snapAw)" = 0 ] || { show snapAw; fail "snapshot RA --wait 5: exit $(urc snapAw)"; }
uctl snapG -c "$CONF" snapshot RG
[ "$(urc snapG)" = 0 ] || { show snapG; fail "snapshot RG (global file): exit $(urc snapG)"; }
uctl snapAs -s "$SOCK" snapshot RA
[ "$(urc snapAs)" = 0 ] || { show snapAs; fail "snapshot RA with -s: exit $(urc snapAs)"; }
uctl none -c "$CONF" snapshot NO-SUCH-RUN
[ "$(urc none)" = 4 ] || { show none; fail "snapshot of an unknown run: exit $(urc none), want 4"; }
ok "RA from own's file, RG from the global one, also with --wait and -s; unknown run exit 4"

check "a run in two pools' files: exit 2 naming both, --pool picks one"
uctl snapB -c "$CONF" snapshot RB
show snapB
[ "$(urc snapB)" = 2 ] || fail "snapshot RB (two files): exit $(urc snapB), want 2"
grep -q 'own.*reducer response version' "$OUT/snapB.err" && grep -q 'mirror.*reducer merge version' "$OUT/snapB.err" ||
	fail "the error does not name both pools and their reducers"
[ -s "$OUT/snapB" ] && fail "a snapshot was printed although the run is ambiguous"
uctl snapBo -c "$CONF" snapshot RB --pool own
[ "$(urc snapBo)" = 0 ] || { show snapBo; fail "snapshot RB --pool own: exit $(urc snapBo)"; }
pyjson '"output" in d and d["id"] == "RB"' <"$OUT/snapBo" | grep -qx true ||
	fail "--pool own did not print own's (response) snapshot: $(cat "$OUT/snapBo")"
uctl snapBm -c "$CONF" snapshot --pool=mirror RB --wait 5
[ "$(urc snapBm)" = 0 ] || { show snapBm; fail "snapshot RB --pool=mirror: exit $(urc snapBm)"; }
pyjson '"output" not in d and d["note"] == "RB" and d["complete"]' <"$OUT/snapBm" | grep -qx true ||
	fail "--pool mirror did not print mirror's (merge) snapshot: $(cat "$OUT/snapBm")"
uctl snapBs -s "$SOCK" snapshot RB --pool mirror
[ "$(urc snapBs)" = 0 ] || { show snapBs; fail "snapshot RB --pool mirror with -s: exit $(urc snapBs)"; }
uctl nopool -c "$CONF" snapshot RB --pool nosuch
show nopool
[ "$(urc nopool)" = 2 ] || fail "--pool nosuch: exit $(urc nopool), want 2"
ok "ambiguity refused; --pool own / mirror print each file's snapshot"

check "each file records the reducer that writes it"
for f in global own mirror; do
	"$PY" - "$TMPD/$f/snap.db" <<'EOF' | sed "s/^/#   $f: /"
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(dict(db.execute("SELECT key, value FROM meta")))
EOF
done
"$PY" - "$TMPD" <<'EOF' || fail "meta rows wrong"
import sqlite3, sys
want = {"global": "response", "own": "response", "mirror": "merge"}
for f, red in want.items():
    db = sqlite3.connect("file:%s/%s/snap.db?mode=ro" % (sys.argv[1], f), uri=True)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta.get("reducer") == red and meta.get("reducer_version", "").isdigit(), (f, meta)
EOF
ok "meta: global/own response, mirror merge"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
