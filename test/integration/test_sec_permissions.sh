#!/usr/bin/env bash
# File permissions: the SQLite database, its -wal/-shm and the directory the
# daemon creates for it give nothing to others (dir 750 or stricter, files
# 640 or stricter, whatever the umask), their group is control.group; an
# existing database readable by others is tightened; the control socket has
# control.mode and control.group.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"
DBDIR=$TMPD/state/sub
DB=$DBDIR/snap.db
GRP=daemon
getent group "$GRP" >/dev/null || GRP=nogroup
getent group "$GRP" >/dev/null || fail "neither group daemon nor nogroup exists"
GID=$(getent group "$GRP" | cut -d: -f3)

# mode_ok PATH MAXMODE(octal): no permission bit outside MAXMODE.
mode_ok() { [ $((0$(stat -c %a "$1") & ~0$2 & 0777)) = 0 ]; }
describe() { stat -c '%n %a %U:%G' "$@" | sed "s|$TMPD/||; s/^/#   /"; }

# conf SOCK_MODE: persistence-only config, SQLite in a directory that does
# not exist yet, control.group set.
conf() {
	write_config persist_count=1 tools_count=0 log_level=info sock_mode="$1"
	sed -i "s|path = \"$TMPD/snap.db\"|path = \"$DB\"|; s|control = { |control = { group = \"$GRP\"; |" "$CONF"
	grep -q "path = \"$DB\"" "$CONF" && grep -q "group = \"$GRP\"" "$CONF" || fail "config edit failed"
	"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
}

start_redis
conf 0660
# A permissive umask must not matter.
old_umask=$(umask)
umask 000
start_daemon
umask "$old_umask"
wait_for 20 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
$OPS gen --sock "$RSOCK" --runs-file "$TMPD/runs.txt" --runs 50 >/dev/null
wait_for 30 '[ -f "$DB" ] && $OPS checkdb --db "$DB" --runs-file "$TMPD/runs.txt" >/dev/null 2>&1' ||
	fail "load not persisted: $($OPS checkdb --db "$DB" --runs-file "$TMPD/runs.txt" 2>&1 | tail -n 3)"

check "the database directory: created 750 or stricter, group $GRP"
describe "$TMPD/state" "$DBDIR"
mode_ok "$DBDIR" 2750 || fail "$DBDIR mode $(stat -c %a "$DBDIR"), want 750 or stricter"
[ "$(stat -c %g "$DBDIR")" = "$GID" ] || fail "$DBDIR group $(stat -c %G "$DBDIR"), want $GRP"
mode_ok "$TMPD/state" 2750 || fail "intermediate dir $TMPD/state mode $(stat -c %a "$TMPD/state"), want 750 or stricter"
ok "dir $(stat -c %a "$DBDIR") $(stat -c %G "$DBDIR")"

check "the database and its -wal/-shm: 640 or stricter, group $GRP"
for f in "$DB" "$DB-wal" "$DB-shm"; do
	[ -e "$f" ] || { info "$f does not exist (yet)"; continue; }
	describe "$f"
	mode_ok "$f" 640 || fail "$f mode $(stat -c %a "$f"), want 640 or stricter"
	[ "$(stat -c %g "$f")" = "$GID" ] || fail "$f group $(stat -c %G "$f"), want $GRP (control.group)"
done
[ -e "$DB-wal" ] || fail "no -wal file: is the database in WAL mode?"
ok "db files private"

check "the control socket: control.mode 0660, group $GRP"
describe "$SOCK"
[ "$(stat -c %a "$SOCK")" = 660 ] || fail "socket mode $(stat -c %a "$SOCK"), want 660"
[ "$(stat -c %g "$SOCK")" = "$GID" ] || fail "socket group $(stat -c %G "$SOCK"), want $GRP"
ok "socket 660 $GRP"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"

check "an existing database readable by others is tightened; another control.mode"
rm -f "$DB-wal" "$DB-shm"
chmod 0755 "$DBDIR"
chmod 0666 "$DB"
conf 0600
old_umask=$(umask)
umask 000
start_daemon
umask "$old_umask"
wait_for 20 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
$OPS gen --sock "$RSOCK" --runs-file "$TMPD/runs.txt" --runs 10 --prefix s >/dev/null
wait_for 30 '$OPS checkdb --db "$DB" --runs-file "$TMPD/runs.txt" >/dev/null 2>&1' || fail "second load not persisted"
describe "$DBDIR" "$DB" "$DB-wal" "$DB-shm" "$SOCK"
for f in "$DB" "$DB-wal" "$DB-shm"; do
	[ -e "$f" ] || continue
	mode_ok "$f" 660 || fail "$f mode $(stat -c %a "$f") after start: others keep access"
	mode_ok "$f" 640 || info "$f mode $(stat -c %a "$f"): group write kept from the existing file"
done
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode $(stat -c %a "$SOCK"), want 600"
if ! mode_ok "$DBDIR" 2750; then
	info "NOTE: an existing directory with mode $(stat -c %a "$DBDIR") is left as it is"
fi
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
ok "existing db tightened; socket 600"

pass
