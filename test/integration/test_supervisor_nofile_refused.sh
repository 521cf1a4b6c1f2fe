#!/usr/bin/env bash
# Issue 10, done-when 2 (limits): under a hard RLIMIT_NOFILE of 256 the
# daemon refuses, loudly, a configuration whose workers cannot fit (2 fds
# per worker and a reserve): at start (exit 78, the message names
# RLIMIT_NOFILE), and at reload and scale (refused, nothing changed).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_redis
# The daemon (not this shell) runs under soft = hard = 256.
LOW=$TMPD/nofile256.sh
printf '#!/bin/sh\nulimit -n 256 || exit 99\nexec "%s" "$@"\n' "$STREAMVISORD" >"$LOW"
chmod +x "$LOW"

check "count = 200 under a hard limit of 256: refused at start with exit 78"
write_config persist_count=1 tools_count=200
STREAMVISORD=$LOW start_daemon
wait_daemon_exit 30 || fail "the daemon started 200 workers under a hard limit of 256: $(ctl status 2>&1 | tail -n 3)"
info "exit $DAEMON_RC: $(grep -F RLIMIT_NOFILE "$DLOG" | head -n 3)"
[ "$DAEMON_RC" = 78 ] || fail "exit $DAEMON_RC, want 78"
grep -qF RLIMIT_NOFILE "$DLOG" || fail "no message naming RLIMIT_NOFILE"
[ -z "$(test_pids)" ] || fail "processes left behind: $(test_pids | paste -sd' ')"
ok "exit 78, RLIMIT_NOFILE named"

check "count = 10 fits and starts; scale and reload to 100 are refused, nothing changes"
write_config persist_count=1 tools_count=10
STREAMVISORD=$LOW start_daemon
wait_for 30 'all_running 11' || fail "expected 11 RUNNING workers, got: $(worker_table 2>&1)"
before=$(snapshot_pids)
rc=0; out=$(ctl scale tools 100 2>&1) || rc=$?
info "scale tools 100 -> exit $rc: $out"
[ "$rc" -eq 1 ] || fail "scale tools 100 exit $rc, want 1 (refused)"
grep -qF RLIMIT_NOFILE <<<"$out" || fail "the refusal of scale does not name RLIMIT_NOFILE: $out"
write_config persist_count=1 tools_count=100
rc=0; out=$(ctl reload 2>&1) || rc=$?
info "reload with count 100 -> exit $rc: $out"
[ "$rc" -eq 1 ] || fail "reload exit $rc, want 1 (refused)"
grep -qF RLIMIT_NOFILE <<<"$out" || fail "the refusal of reload does not name RLIMIT_NOFILE: $out"
sleep "$(scaled 1)"
[ "$(worker_table)" = "$before" ] || fail "workers changed: $(worker_table)"
pid_alive "$DAEMON_PID" || fail "the daemon died"
ok "both refused, the same 11 workers"
pass
