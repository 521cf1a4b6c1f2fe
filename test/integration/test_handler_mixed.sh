#!/usr/bin/env bash
# A pool serving an exec tool and a persistent tool: while an exec call
# runs, the handler goes on (its answers are published, its entries
# renewed, waiting calls sent), calls of both kinds interleaved are each
# answered once, nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
write_config persist_count=1 tools_count=1 claim_idle=1000 \
	extra="$(tools_block "$(handler_entry hp 4 30000 "$PY" "$EXAMPLES/handler.py")" \
		"$(tool_entry slow 20000 65536 /bin/sh -c 'sleep 3; echo slow done')")"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
wpid=$(wfield t1/tools/0 pid)
wait_for 10 '[ -n "$(handler_pids "$EXAMPLES/handler.py" "$wpid")" ]' || fail "no handler process"

check "persistent calls in hand while an exec call runs 3 s"
xadd_calls RM 0 4 hp '{"sleep_ms": 1000}'
wait_for 10 '[ "$(tools_pending)" = 4 ]' || fail "calls not taken: $(tools_pending) pending"
xadd_call RM 100 e0 slow '{}' >/dev/null
xadd_calls RM 4 6 hp '{"sleep_ms": 100}'
wait_output 20 RM e0 || fail "no output for e0"
e0=$(out_field RM e0 'o["id"]')
before=$(tool_outputs RM | "$PY" -c '
import json, sys
e0 = tuple(map(int, sys.argv[1].split("-")))
n = 0
for l in sys.stdin:
    o = json.loads(l)
    if o["data"]["call_id"] in ("c0", "c1", "c2", "c3") and tuple(map(int, o["id"].split("-"))) < e0:
        n += 1
print(n)' "$e0")
info "persistent outputs published while e0 ran: $before of 4"
[ "$before" = 4 ] || fail "the handler's answers waited for the exec call ($before of 4 before it)"
ok "the 4 calls in hand were answered while e0 ran"

check "interleaved calls of both kinds, each answered once"
for k in 1 2 3; do
	xadd_call RM $((100 + k)) e$k slow '{}' >/dev/null
	xadd_calls RM $((10 * k)) 10 hp '{"sleep_ms": 200}'
done
wait_for 40 '[ "$(outputs_count RM)" -ge 44 ]' || fail "RM: $(outputs_count RM) outputs of 44"
sleep 1
one_each RM 40 e0 e1 e2 e3 || fail "RM: not one output per persistent call"
for k in 0 1 2 3; do
	[ "$(count_outputs RM e$k)" = 1 ] || fail "e$k: $(count_outputs RM e$k) outputs"
done
out_field RM e1 'd["output"] == "slow done\n" and d["exit_code"] == 0' | grep -qx true || fail "e1: $(out_field RM e1 d)"
[ -z "$(outputs_where RM 'd["is_error"]')" ] || fail "errors: $(outputs_where RM 'd["is_error"]')"
grep -q 'entry claimed by another consumer' "$DLOG" && fail "an entry was lost while an exec call ran"
ok "44 calls answered once each"

worker_sound
ok "nothing pending, worker RUNNING, never restarted"
pass
