#!/usr/bin/env bash
# control.group is resolved when the socket opens (and at reload), and the
# per-connection check only compares ids: a peer whose gid is the group's,
# or whose supplementary groups (/proc/PID/status) hold it, is allowed;
# nobody else but root and the daemon's uid.  (The check used to call
# getpwuid_r/getgrouplist for every connection, in the master's loop.)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
	echo "SKIP: needs root and setpriv to switch to nobody"
	exit 77
fi
GROUP=daemon # nobody is not a member; any group other than nogroup works
getent group "$GROUP" >/dev/null || { echo "SKIP: no group $GROUP"; exit 77; }
chmod 0755 "$TMPD"
start_redis
write_config persist_count=1 tools_count=0 sock_mode=0666
sed -i "s|^control = { socket = \"$SOCK\";|control = { socket = \"$SOCK\"; group = \"$GROUP\";|" "$CONF"
grep -q "group = \"$GROUP\"" "$CONF" || fail "control.group not set: $(grep control "$CONF")"
start_daemon
wait_for 20 'all_running 1' || fail "expected 1 RUNNING worker, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null
cp "$STREAMVISORCTL" "$TMPD/ctl-copy" && chmod 0755 "$TMPD/ctl-copy"

# as_nobody SETPRIV_GROUP_ARGS...: streamvisorctl status as nobody; prints
# its exit code.
as_nobody() {
	local rc=0
	setpriv --reuid=nobody "$@" "$TMPD/ctl-copy" -s "$SOCK" --json status >"$TMPD/out" 2>&1 || rc=$?
	echo "$rc"
}

check "nobody outside $GROUP is refused"
rc=$(as_nobody --regid=nogroup --clear-groups)
[ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] || fail "allowed (exit $rc): $(cat "$TMPD/out")"
! grep -q 't1/persist' "$TMPD/out" || fail "got worker data"
grep -q "refused a client: uid 65534" "$DLOG" || fail "the refusal was not logged"
ok "refused (exit $rc)"

check "nobody with gid $GROUP is allowed"
rc=$(as_nobody --regid="$GROUP" --clear-groups)
[ "$rc" = 0 ] && grep -q 't1/persist' "$TMPD/out" || fail "refused (exit $rc): $(cat "$TMPD/out")"
ok "allowed by gid"

check "nobody with $GROUP as a supplementary group is allowed"
rc=$(as_nobody --regid=nogroup --groups="$GROUP")
[ "$rc" = 0 ] && grep -q 't1/persist' "$TMPD/out" || fail "refused (exit $rc): $(cat "$TMPD/out")"
ok "allowed by supplementary group"

check "after a reload the same rules hold"
rc=0; ctl reload >/dev/null || rc=$?
[ "$rc" = 0 ] || fail "reload exit $rc"
rc=$(as_nobody --regid=nogroup --groups="$GROUP")
[ "$rc" = 0 ] || fail "refused after reload (exit $rc): $(cat "$TMPD/out")"
rc=$(as_nobody --regid=nogroup --clear-groups)
[ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] || fail "allowed after reload (exit $rc)"
ok "reload keeps the check"
pass
