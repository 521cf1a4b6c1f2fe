#!/usr/bin/env bash
# Persistent handlers, done-when 3 (a handler that hangs): calls it never
# answers get a timeout output, counted from when the worker took them;
# the others are answered.  Concurrency 1: the handler is killed and
# restarted for the hung call.  Concurrency 8: it is sent cancel, and
# killed after the grace when it ignores it (the calls it held then are
# re-dispatched, one at a time); a handler that honours cancel is not
# killed.  Each call one output, worker RUNNING, nothing pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

# Calls of a pool are taken for any of its tools while one tool's
# handler is full (capacity is the sum of free slots), and a call's
# timeout counts from when the worker took it: each phase runs one
# handler so that only the hung calls time out.
# phase CONFIG_ENTRY...: (re)start the daemon serving these tools.
phase() {
	[ -z "${DAEMON_PID:-}" ] || stop_daemon 30
	write_config persist_count=1 tools_count=1 max_deliveries=4 max_retries=8 extra="$(tools_block "$@")"
	start_daemon
	wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
	wpid=$(wfield t1/tools/0 pid)
	remember_pid "$wpid"
}

start_redis
phase "$(handler_entry h1 1 1500 "$PY" "$MISBEHAVE" hang)"
wait_for 10 '[ -n "$(handler_pids "misbehave.py hang" "$wpid")" ]' || fail "no handler process"

check "concurrency 1: 2 hung calls among 10"
xadd_calls R1 0 3 h1 '{"sleep_ms": 20}'
xadd_call R1 104 c3 h1 '{"hang": true}' >/dev/null
xadd_calls R1 4 3 h1 '{"sleep_ms": 20}'
xadd_call R1 108 c7 h1 '{"hang": true}' >/dev/null
xadd_calls R1 8 2 h1 '{"sleep_ms": 20}'
wait_for 40 '[ "$(outputs_count R1)" -ge 10 ]' || fail "R1: $(outputs_count R1) outputs of 10"
sleep 1
one_each R1 10 || fail "R1: not one output per call"
to=$(outputs_where R1 'd["is_error"] and d["output"] == "timed out after 1500 ms"')
[ "$to" = "c3 c7" ] || fail "R1 timeouts: '$to', want 'c3 c7'"
good=$(outputs_where R1 'not d["is_error"] and d["output"] == {"sleep_ms": 20}' | wc -w)
[ "$good" = 8 ] || fail "R1: $good good answers of 8"
[ "$(grep -c 'handler ended: timed out after 1500 ms' "$DLOG")" -ge 2 ] || fail "the h1 handler was not killed twice"
ok "c3 and c7 timed out, 8 answered"

worker_sound

phase "$(handler_entry h8 8 3000 "$PY" "$MISBEHAVE" hang)"
check "concurrency 8, cancel ignored: 3 hung calls among 40, killed after the grace"
xadd_calls R8 0 40 h8 '{"sleep_ms": 100}'
for k in 5 20 35; do
	rcli XADD events '*' run R8 type tool.call seq $((100 + k)) \
		data "{\"call_id\": \"h$k\", \"name\": \"h8\", \"arguments\": {\"hang\": true}}" >/dev/null
	sleep 0.1
done
wait_for 50 '[ "$(outputs_count R8)" -ge 43 ]' || fail "R8: $(outputs_count R8) outputs of 43"
sleep 1.5
one_each R8 40 h5 h20 h35 || fail "R8: not one output per call"
to=$(outputs_where R8 'd["is_error"] and d["output"] == "timed out after 3000 ms"')
[ "$to" = "h5 h20 h35" ] || fail "R8 timeouts: '$to', want 'h5 h20 h35'"
good=$(outputs_where R8 'not d["is_error"] and d["output"] == {"sleep_ms": 100}' | wc -w)
[ "$good" = 40 ] || fail "R8: $good good answers of 40"
grep -q "did not settle a cancelled call within the grace" "$DLOG" || fail "no kill after the grace logged"
[ "$(rcli XLEN events:dead)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + | tr '\n' ' ')"
ok "3 timeouts, 40 answered, the handler killed after the grace"

worker_sound

phase "$(handler_entry hc 8 1500 "$PY" "$EXAMPLES/handler.py")"
wait_for 10 '[ -n "$(handler_pids "$EXAMPLES/handler.py" "$wpid")" ]' || fail "no handler.py process"
# The example drops a cancelled call without answering it, as
# streamvisor-handlers(7) asks; handler.c only counts an answer as settling
# it, so the example is killed after the grace too (open point, see the
# design's Status).  What is asserted: one timeout output, the rest
# answered once.
check "concurrency 8, example handler: a call past its timeout among 20"
hp=$(handler_pids "$EXAMPLES/handler.py" "$wpid")
[ -n "$hp" ] || fail "no handler.py process"
xadd_calls RC 0 10 hc '{"sleep_ms": 100}'
xadd_call RC 100 slow hc '{"sleep_ms": 20000}' >/dev/null
xadd_calls RC 11 10 hc '{"sleep_ms": 100}'
wait_for 30 '[ "$(outputs_count RC)" -ge 21 ]' || fail "RC: $(outputs_count RC) outputs of 21"
sleep 2
[ "$(count_outputs RC slow)" = 1 ] || fail "slow: $(count_outputs RC slow) outputs"
out_field RC slow 'd["is_error"] and d["output"] == "timed out after 1500 ms"' | grep -qx true \
	|| fail "slow output: $(out_field RC slow d)"
outputs_per_call RC | grep -v '^slow ' | "$PY" -c '
import sys
got = dict(l.split() for l in sys.stdin if l.strip())
want = {"c%d" % i: "1" for i in list(range(10)) + list(range(11, 21))}
sys.exit(0 if got == want else 1)' || fail "RC: $(outputs_per_call RC | tr '\n' ' ')"
info "handler.py $hp, now $(handler_pids "$EXAMPLES/handler.py" "$wpid")"
ok "timed out once, the 20 others answered once"

worker_sound
ok "nothing pending, worker RUNNING, never restarted"
pass
