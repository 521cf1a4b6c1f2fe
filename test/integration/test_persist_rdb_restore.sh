#!/usr/bin/env bash
# Issue 12, done-when 4: after a reconnect to a Redis restored from an
# older RDB, a worker's own pending entries are processed at once (within
# one block_ms of reconnecting), not left for a claim_idle_ms sweep.
#
# The RDB is saved while entries are delivered to the worker's consumer
# name and not acked (the worker paused; the test delivers them with
# XREADGROUP under the worker's name, as a read just before a crash of
# the machine would), then acked by hand, as if processed.  Redis is
# restarted on that RDB: its PEL holds them, owned by the worker, again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

INTERVAL=2000 BLOCK=2000 CLAIM=60000
start_redis
pconfig persist_count=1 hb_interval=$INTERVAL hb_timeout=10000 block_ms=$BLOCK claim_idle=$CLAIM \
	max_retries=100
start_daemon
wait_for 30 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
NAME=$SV_NODE/persist/0

check "entries delivered to $NAME and unacked when the RDB is saved"
ctl pause persist >/dev/null || fail "pause refused"
wait_for 10 '[ "$(wfield "$NAME" status)" = paused ]' || fail "not paused: $(worker_json "$NAME")"
gen --runs 20 --seed 12 >/dev/null
n=$(rcli XLEN events)
rcli XREADGROUP GROUP "$GROUP" "$NAME" COUNT 100000 STREAMS events '>' >/dev/null
[ "$(pending_count)" = "$n" ] || fail "want $n pending to $NAME, XPENDING says $(pending_count)"
[ "$(rcli SAVE)" = OK ] || fail "SAVE failed"
info "$n entries pending to $NAME in the RDB"
mapfile -t ids < <(rcli XRANGE events - + | grep -E '^[0-9]+-[0-9]+$')
rcli XACK events "$GROUP" "${ids[@]}" >/dev/null
[ "$(pending_count)" = 0 ] || fail "acks by hand left $(pending_count) pending"
ctl resume persist >/dev/null || fail "resume refused"
sleep 1
[ "$(events_rows)" = 0 ] || fail "events stored before the restore: $(events_rows)"
ok "RDB with $n entries pending to $NAME; live Redis has none pending"

check "restart Redis on the RDB: the worker processes them within one block_ms of reconnecting"
stop_redis TERM
start_redis --dbfilename dump.rdb
t_up=$(now_ms)
# (The worker may already be done: pending is $n or fewer here.)
info "pending right after the restart: $(pending_count)"
wait_for 20 '[ "$(pending_count)" = 0 ]' || fail "still $(pending_count) pending $(($(now_ms) - t_up)) ms after the restore"
took=$(($(now_ms) - t_up))
wait_persisted 20 >/dev/null || fail "events not persisted after the restore"
grep -q 'new redis connection: reading own pending entries first' "$DLOG" ||
	fail "no reconnect line in the log"
# Reconnect backoff is capped at the heartbeat interval; then one read of
# the history, at most one block_ms behind a read that was blocked.
limit=$((INTERVAL + BLOCK + 1000))
info "processed $took ms after Redis came back (limit $limit ms, claim_idle_ms $CLAIM)"
[ "$took" -le "$limit" ] || fail "took $took ms, over $limit ms"
check_snapshots --exact || fail "snapshots differ from the reference"
! grep -q 'claimed [0-9]* idle entries' "$DLOG" || fail "entries were claimed, not read as history: $(grep -m1 claimed "$DLOG")"
ok "pending entries of the restored RDB processed $took ms after the restart"
pass
