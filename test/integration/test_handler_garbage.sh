#!/usr/bin/env bash
# Persistent handlers, done-when 3 (garbage on fd 3, and an answer for an
# id never sent): protocol violations.  The calls in flight in the handler
# then get an error output, the handler is restarted, later calls are
# answered normally; each call one output, worker RUNNING, nothing pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
write_config persist_count=1 tools_count=1 \
	extra="$(tools_block "$(handler_entry mg 4 20000 "$PY" "$MISBEHAVE" garbage)")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
wpid=$(wfield t1/tools/0 pid)
wait_for 10 '[ -n "$(handler_pids "misbehave.py garbage" "$wpid")" ]' || fail "no handler process"
hp=$(handler_pids "misbehave.py garbage" "$wpid")

check "garbage on fd 3 among 20 calls"
xadd_calls RG 0 10 mg '{"sleep_ms": 300}'
xadd_call RG 100 bad mg '{"garbage": true, "sleep_ms": 100}' >/dev/null
xadd_calls RG 10 10 mg '{"sleep_ms": 300}'
wait_for 40 '[ "$(outputs_count RG)" -ge 21 ]' || fail "RG: $(outputs_count RG) outputs of 21"
sleep 1
one_each RG 20 || fail "RG: not one output per call"
[ "$(count_outputs RG bad)" = 1 ] || fail "bad: $(count_outputs RG bad) outputs"
out_field RG bad 'd["is_error"] and d["output"].startswith("handler protocol violation: not a JSON object")' \
	| grep -qx true || fail "bad output: $(out_field RG bad d)"
errs=$(outputs_where RG 'd["is_error"]')
info "error outputs: $errs"
good=$(outputs_where RG 'not d["is_error"] and d["output"] == {"sleep_ms": 300}' | wc -w)
[ $((good + $(wc -w <<<"$errs"))) = 21 ] || fail "RG: $good good + errors '$errs' != 21"
grep -q "handler protocol violation: not a JSON object: this is not json" "$DLOG" || fail "violation not logged"
wait_for 10 '[ -n "$(handler_pids "misbehave.py garbage" "$wpid")" ] && [ "$(handler_pids "misbehave.py garbage" "$wpid")" != "$hp" ]' \
	|| fail "handler not restarted"
ok "the garbage call and those in flight with it failed ($good answered), handler restarted"

check "later calls are answered normally"
xadd_calls RL 0 20 mg '{"sleep_ms": 20}'
wait_for 30 '[ "$(outputs_count RL)" -ge 20 ]' || fail "RL: $(outputs_count RL) outputs of 20"
sleep 1
one_each RL 20 || fail "RL: not one output per call"
[ -z "$(outputs_where RL 'd["is_error"]')" ] || fail "RL errors: $(outputs_where RL 'd["is_error"]')"
ok "20 calls answered after the restart"

worker_sound
ok "nothing pending, worker RUNNING, never restarted"
pass
