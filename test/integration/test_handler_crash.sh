#!/usr/bin/env bash
# Persistent handlers, done-when 3 (crashes): SIGKILL of a handler with
# calls in flight, and one call that always crashes its handler among 49
# good ones.  Every call gets exactly one output (the crashing one a dead
# letter after max_deliveries, its delivery count made durable with
# XCLAIM RETRYCOUNT), the worker stays RUNNING, nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
write_config persist_count=1 tools_count=1 max_deliveries=3 \
	extra="$(tools_block "$(handler_entry mb 50 60000 "$PY" "$MISBEHAVE" crash)")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
wait_for 10 '[ -n "$(handler_pids "misbehave.py crash" "$(wfield t1/tools/0 pid)")" ]' || fail "no handler process"

check "SIGKILL the handler with 20 calls in flight"
xadd_calls RK 0 20 mb '{"sleep_ms": 2000}'
wait_for 10 '[ "$(rcli XPENDING events tools | head -n 1)" = 20 ]' || fail "calls not taken"
sleep 0.5
hp=$(handler_pids "misbehave.py crash" "$(wfield t1/tools/0 pid)")
info "handler pid $hp"
kill -KILL $hp
wait_for 20 '[ -n "$(handler_pids "misbehave.py crash" "$(wfield t1/tools/0 pid)")" ] && [ "$(handler_pids "misbehave.py crash" "$(wfield t1/tools/0 pid)")" != "$hp" ]' \
	|| fail "handler not restarted"
ok "handler restarted as $(handler_pids "misbehave.py crash" "$(wfield t1/tools/0 pid)")"
# Re-dispatched one at a time: 20 x 2 s.
wait_for 90 '[ "$(outputs_count RK)" -ge 20 ]' || fail "$(outputs_count RK) outputs of 20"
one_each RK 20 || fail "RK: not one output per call"
d=$(out_field RK c5 'd')
pyjson 'd["is_error"] is False and d["output"] == {"sleep_ms": 2000}' <<<"$d" | grep -qx true || fail "RK output: $d"
grep -q "re-dispatching a call its handler died with" "$DLOG" || fail "no re-dispatch logged"
ok "20 calls answered once each after the kill"

check "one call that always crashes the handler among 49 good ones"
xadd_calls RP 0 49 mb '{"sleep_ms": 300}'
xadd_call RP 50 poison mb '{"crash": true, "sleep_ms": 100}' >/dev/null
wait_for 120 '[ "$(outputs_count RP)" -ge 49 ] && [ "$(rcli XLEN events:dead)" -ge 1 ]' \
	|| fail "RP: $(outputs_count RP) outputs of 49, $(rcli XLEN events:dead) dead letters"
sleep 2
one_each RP 49 || fail "RP: not one output per call"
[ "$(count_outputs RP poison)" = 0 ] || fail "the poison call has an output: $(tool_outputs RP poison)"
[ "$(rcli XLEN events:dead)" = 1 ] || fail "want 1 dead letter, got $(rcli XLEN events:dead)"
dead=$(rcli XRANGE events:dead - + | tr '\n' ' ')
info "dead letter: $dead"
grep -q "handler died 3 times on this call" <<<"$dead" || fail "dead letter reason: $dead"
ok "the poison call is a dead letter, the 49 others answered once"

wait_for 20 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending: $(rcli XPENDING events tools - + 10)"
state_is t1/tools/0 RUNNING || fail "tools/0 not RUNNING: $(worker_json t1/tools/0)"
[ "$(wfield t1/tools/0 restarts)" = 0 ] || fail "the tool worker restarted: $(worker_json t1/tools/0)"
ok "nothing pending, worker RUNNING, never restarted"
pass
