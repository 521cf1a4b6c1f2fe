#!/usr/bin/env bash
# Delivery counts survive a Redis restart.  Redis does not write the
# delivery-count increment of an XREADGROUP history read (id 0) to the AOF,
# so a worker that re-reads its own pending poison entry after a crash
# would, across a Redis restart, see the count fall back and crash
# max_deliveries more times.  The workers renew what they re-read with an
# XCLAIM (propagated with its count), so the poison entry crashes at most
# max_deliveries times in all and ends dead-lettered.
#
# One persistence worker; start_ms is long so every crash is a failed
# start and the worker waits backoff_initial_ms (long) before its next
# try: Redis is restarted (appendonly, SIGTERM: nothing unwritten) in that
# window after the second crash.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams

MAXD=3
start_redis --appendonly yes --appendfsync always
write_config persist_count=1 tools_count=0 log_level=info start_ms=10000 max_deliveries=$MAXD \
	max_retries=10 backoff_initial=3000 backoff_max=3000 claim_idle=60000
start_daemon
wait_for 20 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null

crashes() { grep -c 'killed by signal 11' "$DLOG" || true; }
deliveries() { rcli XPENDING events persist@t1 - + 1 | sed -n 4p; }

check "a poison entry crashes the worker twice"
poison=$(rcli XADD events '*' run poison-r type sv.test.crash seq 1 data '{"x":1}')
wait_for 30 '[ "$(crashes)" -ge 2 ]' || fail "the poison did not crash the worker twice ($(crashes) crashes; fault injection build?)"
state_is t1/persist/0 BACKOFF || fail "worker not in BACKOFF after its second crash: $(worker_json t1/persist/0)"
before=$(deliveries)
info "after 2 crashes: delivery count $before"
[ "$before" = 2 ] || fail "delivery count $before after 2 crashes, want 2"
ok "2 crashes, delivery count 2"

check "restart Redis (AOF) while the worker waits in BACKOFF"
stop_redis TERM
start_redis --appendonly yes --appendfsync always
after=$(deliveries)
info "after the restart: delivery count $after"
[ "$after" = 2 ] || fail "delivery count $after after the Redis restart, want 2 (the history read's increment was lost)"
ok "delivery count still 2"

check "the poison ends dead-lettered after $MAXD crashes in all"
wait_for 60 '[ "$(rcli XLEN events:dead)" = 1 ]' || fail "poison not dead-lettered: $(rcli XLEN events:dead) dead letters, $(crashes) crashes, pending $(rcli XPENDING events persist@t1 | head -n 1)"
[ "$(rcli XRANGE events:dead - + | grep -c "$poison")" = 1 ] || fail "the dead letter is not the poison entry $poison"
n=$(crashes)
[ "$n" -le "$MAXD" ] || fail "$n crashes for one poison entry, at most max_deliveries=$MAXD"
wait_for 30 'all_running 1' || fail "worker not RUNNING after the poison: $(worker_table 2>&1)"
[ "$(rcli XPENDING events persist@t1 | head -n 1)" = 0 ] || fail "entries still pending"
ok "dead-lettered after $n crashes; nothing pending"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
