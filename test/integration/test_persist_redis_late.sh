#!/usr/bin/env bash
# Incident 2: the daemon starts while Redis is down (no socket at all);
# Redis comes up 3 s later.  Workers retry until it is there, create their
# group, and persist every event; no worker goes FATAL.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

pconfig persist_count=2
[ ! -e "$RSOCK" ] || fail "redis socket exists before the test"
check "start the daemon with Redis down"
start_daemon
sleep 3
pid_alive "$DAEMON_PID" || fail "daemon exited while Redis was down"
st=$(worker_table) || true
info "after 3 s without Redis: $(tr '\n' ';' <<<"$st")"
assert_no_fatal

check "start Redis; add events"
start_redis
t_up=$(now_ms)
gen --runs 200 --tools --seed 5
wait_persisted 60 || fail "events not persisted after Redis came up"
info "all events persisted $(($(now_ms) - t_up)) ms after Redis came up"
check_snapshots --exact || fail "snapshots differ from the reference"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
wait_for 20 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
[ -n "$(rcli XINFO GROUPS events | grep -x "$GROUP")" ] || fail "group $GROUP missing"
assert_no_fatal
ok "workers waited for Redis, created $GROUP and persisted everything; no FATAL"
pass
