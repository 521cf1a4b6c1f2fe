#!/usr/bin/env bash
# Incident 4: an idle daemon does not poll.  4 persistence workers with
# block_ms 2000: over 10 s Redis sees at most 4 x (10/2 + 1) XREADGROUP calls
# (in fact one worker's: one writer per SQLite file, 3 standbys that read
# nothing, issue 14).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

N=4 BLOCK=2000 WINDOW_S=10
start_redis
pconfig persist_count=$N block_ms=$BLOCK hb_interval=2000 hb_timeout=6000 claim_idle=6000 command_timeout=5000
start_daemon
wait_for 30 "all_running $N" || fail "expected $N RUNNING workers: $(worker_table 2>&1)"
# Let start-up (takeover, first reads) settle.
gen --runs 5 --seed 1 >/dev/null
wait_persisted 30 >/dev/null || fail "warm-up not persisted"
sleep 3

check "idle for ${WINDOW_S} s: count XREADGROUP calls"
rcli CONFIG RESETSTAT >/dev/null
sleep "$WINDOW_S"
stats=$(rcli INFO commandstats | tr -d '\r')
calls() { sed -n "s/^cmdstat_$1:calls=\([0-9]*\),.*/\1/p" <<<"$stats" | grep . || echo 0; }
xr=$(calls xreadgroup)
max=$((N * (WINDOW_S * 1000 / BLOCK + 1)))
info "in ${WINDOW_S} s idle: xreadgroup=$xr (max $max) xautoclaim=$(calls xautoclaim) hset=$(calls hset) evalsha=$(calls evalsha) eval=$(calls eval) xpending=$(calls xpending) xinfo=$(calls 'xinfo|groups') hgetall=$(calls hgetall)"
info "all commands: $(grep -c '^cmdstat_' <<<"$stats") kinds, $(awk -F'[=,]' '/^cmdstat_/ {s += $2} END {print s}' <<<"$stats") calls"
[ "$xr" -le "$max" ] || fail "$xr XREADGROUP calls in ${WINDOW_S} s idle, want <= $max"
[ "$xr" -ge $((WINDOW_S * 1000 / BLOCK - 1)) ] || fail "only $xr XREADGROUP calls: is the writer reading at all?"
assert_no_fatal
ok "$xr XREADGROUP calls in ${WINDOW_S} s for $N idle workers (<= $max)"
pass
