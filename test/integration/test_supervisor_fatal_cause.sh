#!/usr/bin/env bash
# Issue 12, done-when 4: "FATAL shows the cause".
#   - `streamvisord -t` refuses a sqlite.path under a regular file with a
#     FILE:LINE message;
#   - a worker whose SQLite directory became a regular file after the
#     check (so the daemon started) goes BACKOFF, then FATAL, and status
#     (table and --json) shows the error line it logged before exiting:
#     "cannot create .../x.db: Not a directory".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DBDIR=$TMPD/file
start_redis
write_config persist_count=1 tools_count=0 max_retries=3 max_deliveries=2 start_ms=500 \
	backoff_initial=1000 backoff_max=1500 log_level=info
sed -i "s|^sqlite = .*|sqlite = { path = \"$DBDIR/x.db\"; };|" "$CONF"
line=$(grep -n '^sqlite = ' "$CONF" | cut -d: -f1)

check "-t: a SQLite directory that is a regular file"
: >"$DBDIR"
rc=0
out=$("$STREAMVISORD" -t -c "$CONF" 2>&1) || rc=$?
echo "$out"
[ "$rc" = 78 ] || fail "-t exited $rc, want 78"
grep -qxF "$CONF:$line: sqlite.path: cannot create $DBDIR/x.db: $DBDIR is not a directory" <<<"$out" ||
	fail "no FILE:LINE message for the directory"
ok "-t refuses it at $CONF:$line"

check "-t accepts a directory that can be created"
rm -f "$DBDIR"
"$STREAMVISORD" -t -c "$CONF" >/dev/null || fail "-t refused a creatable directory"
ok "-t OK once $DBDIR can be created"

check "the directory turns into a file after the start: BACKOFF, FATAL, with the cause"
start_daemon
NAME=$SV_NODE/persist/0
wait_for 30 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
ctl stop "$NAME" >/dev/null || fail "stop refused"
rm -rf "$DBDIR"
: >"$DBDIR"
ctl start "$NAME" >/dev/null 2>&1 || true
cause="cannot create $DBDIR/x.db: Not a directory"
has_cause() { [ "$(wfield "$NAME" state)" = "$1" ] && wfield "$NAME" last_error | grep -qF -- "$cause"; }
wait_for 20 'has_cause BACKOFF' || fail "no BACKOFF with the cause: $(worker_json "$NAME")"
info "BACKOFF: $(wfield "$NAME" last_error)"
wait_for 30 'has_cause FATAL' || fail "no FATAL with the cause: $(worker_json "$NAME")"
w=$(worker_json "$NAME")
info "FATAL: $w"
pyjson 'd["last_error"].startswith("exit status 1, ") and d["last_exit"] == "exit 1"' <<<"$w" | grep -qx true ||
	fail "last_error/last_exit: $w"
st=$(ctl status 2>/dev/null || true)
echo "$st"
grep -E "^$NAME +FATAL .*exit 1: exit status 1, .*: $cause\$" <<<"$st" >/dev/null ||
	fail "the table's LAST EXIT/ERROR lacks the cause"
ok "FATAL shows: $(wfield "$NAME" last_error)"

check "started again once the directory is fixed: the old cause is gone"
rm -f "$DBDIR"
ctl start "$NAME" >/dev/null || fail "start refused: $(worker_json "$NAME")"
wait_for 20 'state_is "$NAME" RUNNING' || fail "not RUNNING: $(worker_json "$NAME")"
! wfield "$NAME" last_error | grep -qF -- "$cause" || fail "cause still shown: $(worker_json "$NAME")"
ok "RUNNING, no stale cause"
pass
