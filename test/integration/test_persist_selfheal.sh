#!/usr/bin/env bash
# Incident 1: the stream or its group vanishes under running workers and they
# heal by themselves: (a) DEL events, (b) Redis killed -9 mid-load and
# restarted from its AOF on the same socket, (c) FLUSHALL.  Each time the new
# events are persisted, no worker goes FATAL, and there is no endless NOGROUP
# loop (Redis' NOGROUP error count stops growing; few log lines).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

REDIS_ARGS=(--appendonly yes --appendfsync always)
start_redis "${REDIS_ARGS[@]}"
pconfig persist_count=2 log_level=debug
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

# Failed worker-loop commands at Redis (NOGROUP/UNBLOCKED land here; the
# monitor's own XPENDING/XINFO polls are not counted).
loop_errs() {
	rcli INFO commandstats | tr -d '\r' |
		awk -F'[:,=]' '/^cmdstat_(xreadgroup|xautoclaim|xack|xclaim|xgroup\|create):/ {
			for (i = 2; i < NF; i++) if ($i == "failed_calls") s += $(i + 1) } END { print s + 0 }'
}

# no_loop PHASE: the NOGROUP error count at Redis stops growing, and the
# log has few lost-group lines since LOG_OFF.
no_loop() {
	local a b lines
	a=$(loop_errs)
	sleep 3
	b=$(loop_errs)
	lines=$(tail -c +$((LOG_OFF + 1)) "$DLOG" | grep -ciE 'NOGROUP|group .* lost|UNBLOCKED' || true)
	info "$1: failed XREADGROUP/XAUTOCLAIM/XACK/XGROUP calls at Redis $a -> $b over 3 s idle; lost-group log lines: $lines"
	if [ "$a" != "$b" ]; then
		rcli MONITOR >"$TMPD/monitor" 2>&1 &
		local mon=$!
		sleep 1
		kill "$mon" 2>/dev/null || true
		echo "# commands with failures:"; rcli INFO commandstats | grep 'failed_calls=[1-9]' || true
		echo "# 1 s of MONITOR (first 30 lines):"; head -n 30 "$TMPD/monitor"
		fail "$1: worker commands keep failing ($a -> $b): endless NOGROUP loop?"
	fi
	[ "$lines" -le 20 ] || fail "$1: $lines lost-group/NOGROUP log lines"
	assert_no_fatal
}

check "warm-up: 100 runs persisted"
gen --runs 100 --prefix w- --seed 1
wait_persisted 30 || fail "warm-up not persisted"

check "(a) DEL events under running workers, XADD at once"
LOG_OFF=$(stat -c %s "$DLOG")
rcli DEL events >/dev/null
t0=$(now_ms)
gen --append --runs 100 --prefix a- --seed 2
wait_persisted 60 || fail "(a) events after DEL not persisted"
info "(a) healed: events written right after DEL persisted in $(($(now_ms) - t0)) ms"
no_loop "(a)"
ok "(a) DEL events: healed"

check "(b) kill -9 Redis mid-load, restart it from its AOF on the same socket"
LOG_OFF=$(stat -c %s "$DLOG")
gen --append --runs 600 --prefix b- --seed 3 --chunk 200 --chunk-sleep 0.05 --retry >"$TMPD/gen-b.out" 2>&1 &
GEN=$!
wait_for 20 '[ "$(events_rows)" -gt "$(($(wc -l <"$EVENTS") - 6000))" ]' || true
sleep 0.5
stop_redis KILL
t_down=$(now_ms)
sleep 1
start_redis "${REDIS_ARGS[@]}"
t_up=$(now_ms)
info "(b) Redis down $((t_up - t_down)) ms"
wait "$GEN" || fail "(b) producer failed: $(cat "$TMPD/gen-b.out")"
cat "$TMPD/gen-b.out"
wait_persisted 60 || fail "(b) not everything persisted after the Redis restart"
info "(b) healed: everything persisted $(($(now_ms) - t_up)) ms after Redis came back"
wait_pending_zero 30 || fail "(b) pending stays $(pending_count)"
no_loop "(b)"
ok "(b) Redis restart: healed"

check "(c) FLUSHALL, then new events"
LOG_OFF=$(stat -c %s "$DLOG")
rcli FLUSHALL >/dev/null
sleep 0.5
t0=$(now_ms)
gen --append --runs 100 --prefix c- --seed 4
wait_persisted 60 || fail "(c) events after FLUSHALL not persisted"
info "(c) healed: events after FLUSHALL persisted in $(($(now_ms) - t0)) ms"
no_loop "(c)"
ok "(c) FLUSHALL: healed"

check "all batches: snapshots equal the reference, exactly one row per event"
check_snapshots --exact || fail "snapshots differ from the reference"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + COUNT 3)"
wait_for 20 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
info "workers (name state pid incarnation): $(worker_table | tr '\n' ';')"
# Self-healing means no worker crashes on the way (SPEC §4: never exit for
# a Redis outage).
crashes=$(grep -E 'worker t1/persist/[0-9]+ .*(killed by signal|exit status [1-9])' "$DLOG" || true)
[ -z "$crashes" ] || fail "workers crashed while healing: $(cut -c1-200 <<<"$crashes" | head -n 3)"
pass
