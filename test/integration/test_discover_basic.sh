#!/usr/bin/env bash
# Issue 11: streams matching a pool's pattern are discovered by the monitor
# (paced SCAN passes; keyspace notifications when the server has them on),
# relayed by the master to the pool's workers, which are woken with CLIENT
# UNBLOCK; heartbeats carry the connection's client_id.
#
# The persistence check needs the dynamic consumer (consumer_streams_update,
# engineer P).  It runs when include/consumer.h declares it and is skipped
# (said so in the output) otherwise: at merge it is enforced by itself.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

PAT='run:*:events'
consumer_ready=false
grep -q consumer_streams_update "$SV_SRC_DIR/include/consumer.h" && consumer_ready=true

start_redis
pconfig persist_count=2 log_level=debug
# The pool reads the literal "events" and the pattern, discovery every 300 ms.
sed -i "s/kind = \"persistence\"; /&streams = [ \"events\", \"$PAT\" ]; discover_ms = 300; /" "$CONF"
"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
start_daemon
wait_for 20 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"

check "heartbeats carry the connection's client_id"
for n in "$SV_NODE/persist/0" "$SV_NODE/persist/1"; do
	wait_for 10 '[ "$(hbfield "$n" client_id 2>/dev/null || echo 0)" -gt 0 ]' ||
		fail "$n heartbeat without a client_id: $(hb "$n")"
done
ok "client_id in NS:workers: $(hbfield "$SV_NODE/persist/0" client_id), $(hbfield "$SV_NODE/persist/1" client_id)"

check "a stream created after the start is discovered and relayed"
wait_for 10 'grep -qF "discovered 0 streams for pattern $PAT" "$DLOG"' || fail "no first discovery pass logged"
gen --stream run:1:events --runs 5 --items 2 --deltas 2
rcli SET run:9:events not-a-stream >/dev/null
t0=$(now_ms)
wait_for 10 'grep -qF "discovered 1 streams for pattern $PAT" "$DLOG"' || fail "run:1:events not discovered: $(log_tail 20)"
info "discovered $(($(now_ms) - t0)) ms after the XADD"
wait_for 5 'grep -q "relaying" "$DLOG"' || fail "the master relayed nothing"
wait_for 5 'grep -q "CLIENT UNBLOCK" "$DLOG"' || fail "the monitor woke no worker"
grep -q "run:9:events" "$DLOG" && fail "a string key was taken for a stream"
ok "run:1:events discovered, relayed, workers woken"

if $consumer_ready; then
	check "the discovered stream is persisted"
	wait_persisted 30 || fail "run:1:events not persisted"
	check_snapshots --exact || fail "snapshots differ from the reference"
	ok "run:1:events persisted, snapshots equal the reference"
else
	info "SKIP persistence of run:1:events: the dynamic consumer (consumer_streams_update) is not in this tree yet"
fi

check "a deleted stream leaves the set (SCAN pass + EXISTS)"
rcli XADD run:2:events '*' k v >/dev/null
wait_for 10 'grep -qF "discovered 2 streams for pattern $PAT" "$DLOG"' || fail "run:2:events not discovered"
rcli DEL run:2:events >/dev/null
wait_for 10 'grep -qF "pattern $PAT (+0 -1," "$DLOG"' || fail "run:2:events not removed: $(log_tail 20)"
ok "run:2:events removed after its DEL"

check "keyspace notifications, when the server has them on, are used (never set by us)"
stop_daemon
rcli CONFIG SET notify-keyspace-events Kgt >/dev/null
: >"$DLOG"
start_daemon
wait_for 20 'all_running 2' || fail "workers not RUNNING after the restart"
wait_for 10 'grep -q "keyspace notifications for streams are on" "$DLOG"' || fail "notifications not seen as on"
wait_for 10 'grep -q "subscribed to keyspace events" "$DLOG"' || fail "no PSUBSCRIBE"
rcli XADD run:3:events '*' k v >/dev/null
wait_for 10 'grep -qF "pattern $PAT (+1 -0," "$DLOG" && grep -qF "discovered 2 streams for pattern $PAT" "$DLOG"' ||
	fail "run:3:events not discovered: $(log_tail 20)"
[ "$(rcli CONFIG GET notify-keyspace-events | tail -n 1)" = "gtK" ] ||
	[ "$(rcli CONFIG GET notify-keyspace-events | tail -n 1)" = "Kgt" ] || fail "the server's setting changed"
ok "run:3:events discovered with notifications on"
assert_no_fatal
pass
