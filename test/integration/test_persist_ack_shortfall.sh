#!/usr/bin/env bash
# SPEC §4 step 4: "A plain XACK shortfall with the group present means
# another consumer took the entry: log it at debug level and carry on."
# Deterministic set-up of what happens after a Redis restart under load: a
# worker has made a batch durable while Redis was away, so its XACKs are
# still queued; meanwhile the batch was finished (acked) elsewhere and other
# consumers hold pending entries.  When the worker comes back its pipelined
# XACK acknowledges 0 of N: it must carry on (same pid, no crash) and keep
# persisting.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
require_fault_seams

REDIS_ARGS=(--appendonly yes --appendfsync always)
W=t1/persist/0
start_redis "${REDIS_ARGS[@]}"
pconfig persist_count=1 batch=64 hb_interval=1000 hb_timeout=5000 claim_idle=5000 block_ms=500 log_level=debug
start_daemon
wait_for 20 'all_running 1' || fail "expected 1 RUNNING worker: $(worker_table 2>&1)"
WARM=$TMPD/warm.jsonl
$PT gen --sock "$RSOCK" --out "$WARM" --runs 2 --prefix warm- >/dev/null
wait_persisted 30 "$WARM" >/dev/null || fail "warm-up not persisted"
rows0=$(events_rows)
WPID=$(hbfield "$W" pid)
remember_pid "$WPID"

check "the worker holds a batch it cannot commit (fault), then Redis dies"
ctl pause persist >/dev/null
wait_for 10 '[ "$(hbfield "$W" status)" = paused ]' || fail "not paused: $(hb "$W")"
gen --runs 20 --seed 4 >/dev/null
touch "$FAULT_DIR/commit"
ctl resume persist >/dev/null
wait_for 20 '[ "$(hbfield "$W" status)" = degraded ]' || fail "worker not degraded: $(hb "$W")"
held=$(rcli --json XPENDING events "$GROUP" - + 1000 "$W" | pyjson '[e[0] for e in d]')
info "worker holds $(pyjson 'len(d)' <<<"$held") entries"
stop_redis KILL

check "the batch becomes durable while Redis is away; the worker is stopped with its XACKs queued"
rm -f "$FAULT_DIR/commit"
want=$((rows0 + $(pyjson 'len(d)' <<<"$held")))
wait_for 30 '[ "$(events_rows)" -ge "$want" ]' || fail "batch not committed while Redis was down ($(events_rows) rows, want $want)"
sleep 0.3
kill -STOP "$WPID"
start_redis "${REDIS_ARGS[@]}"
# Someone else finished those entries; another consumer holds one.
for id in $(pyjson '" ".join(d)' <<<"$held"); do echo "XACK events $GROUP $id"; done | rcli >/dev/null
rcli XADD events '*' run other-1 type response.created seq 1 data '{}' >/dev/null
rcli XREADGROUP GROUP "$GROUP" t1/persist/8 COUNT 1 STREAMS events '>' >/dev/null
info "XPENDING summary now: $(rcli XPENDING events "$GROUP" | tr '\n' ' ')"
LOG_OFF=$(stat -c %s "$DLOG")
kill -CONT "$WPID"
t0=$(now_ms)

check "the worker comes back, sees XACK 0 of N, and carries on"
wait_for 15 'grep -q "acknowledged (taken over" "$DLOG" || ! pid_alive "$WPID"' || info "(no shortfall line logged)"
sleep 2
grep 'acknowledged (taken over' "$DLOG" | tail -n 1 | cut -c1-200 || true
crash=$(grep -E "worker $W .*(killed by signal|exit status [1-9])" "$DLOG" | tail -n 1 || true)
if [ -n "$crash" ] || ! pid_alive "$WPID"; then
	grep -E 'runtime error|AddressSanitizer|signal' "$DLOG" | head -n 5 | cut -c1-250
	fail "the worker died after an XACK shortfall instead of carrying on: ${crash:-pid $WPID gone}"
fi
[ "$(hbfield "$W" pid)" = "$WPID" ] || fail "heartbeat from another pid: $(hb "$W")"
cat "$WARM" >>"$EVENTS"
gen --append --runs 10 --prefix after- --seed 5 >/dev/null
wait_persisted 40 || fail "events after the shortfall not persisted"
# other-1 is held by t1/persist/8 and claimed after claim_idle_ms.
wait_for 40 '[ "$(sq "SELECT count(*) FROM snapshots WHERE run = '"'other-1'"'")" = 1 ]' || fail "the entry of t1/persist/8 was never claimed and persisted"
# The only entry this worker may need to claim is t1/persist/8's: anything
# more is an entry it read itself and never processed (a lost reply).
claimed=$(tail -c +$((LOG_OFF + 1)) "$DLOG" | sed -n 's/.*msg="claimed \([0-9]*\) idle entries.*/\1/p' | awk '{s += $1} END {print s + 0}')
info "entries claimed by the worker after it resumed: $claimed (1 expected: t1/persist/8's)"
[ "$claimed" -le 1 ] || fail "the worker had to XAUTOCLAIM $claimed entries after the shortfall: entries it had read were never processed (its reply stream got out of step)"
check_snapshots || fail "snapshots differ from the reference"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
assert_no_fatal
ok "XACK shortfall after a Redis restart: same pid $WPID carried on; all persisted in $(($(now_ms) - t0)) ms"
pass
