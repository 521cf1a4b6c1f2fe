#!/usr/bin/env bash
# pools[].tools: two tool pools read the same stream through their own
# groups, each serving its own tool (a persistent handler, an exec tool).
# Each acks the other's calls without an output and without touching
# their done marks, so every call is answered exactly once, by the pool
# that serves it, and nothing stays pending in either group.  `-t`
# refuses the same two pools once both serve one tool.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

start_redis
EXPOOL=", { name = \"ex\"; kind = \"tool\"; count = 1; group = \"ex\"; tools = [ \"ex\" ]; block_ms = $(scaled 200); claim_idle_ms = $(scaled 1000); }"
write_config persist_count=1 tools_count=1 claim_idle=1000 pools_extra="$EXPOOL" \
	extra="$(tools_block "$(handler_entry hp 4 30000 "$PY" "$EXAMPLES/handler.py")" \
		"$(tool_entry ex 10000 65536 "$TOOLS_DIR/echo.sh")")"
sed -i 's/kind = "tool"; count = 1; block_ms/kind = "tool"; tools = [ "hp" ]; count = 1; block_ms/' "$CONF"
"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "config rejected: $(cat "$TMPD/t.out")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers: $(worker_table 2>&1)"

check "calls of both tools, each answered once by the pool that serves it"
xadd_calls RP 0 20 hp '{"sleep_ms": 20}'
for i in $(seq 0 9); do xadd_call RP $((100 + i)) "e$i" ex '{"n": 1}' >/dev/null; done
wait_for 30 '[ "$(outputs_count RP)" -ge 30 ]' || fail "$(outputs_count RP) outputs of 30"
wait_for 20 '[ "$(tools_pending)" = 0 ] && [ "$(rcli XPENDING events ex | head -n 1)" = 0 ]' ||
	fail "pending: tools $(tools_pending), ex $(rcli XPENDING events ex | head -n 1)"
sleep "$(scaled 1)"
[ "$(outputs_count RP)" = 30 ] || fail "$(outputs_count RP) outputs, want 30: $(outputs_per_call RP | awk '$2 != 1')"
[ -z "$(outputs_per_call RP | awk '$2 != 1')" ] || fail "calls answered more than once: $(outputs_per_call RP | awk '$2 != 1')"
ok "30 calls, one output each; both groups have nothing pending"

check "each call's done mark is set once, by the pool that ran it"
[ "$(rcli HLEN "$SV_NS:tooldone:RP")" = 30 ] || fail "done marks: $(rcli HLEN "$SV_NS:tooldone:RP"), want 30"
ok "30 done marks"

check "-t refuses the two pools once both serve the handler's tool"
sed -i 's/tools = \[ "ex" \]/tools = [ "ex", "hp" ]/' "$CONF"
rc=0; "$STREAMVISORD" -t -c "$CONF" >"$TMPD/t2.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "-t accepted two groups answering hp on events"
grep -q "$(basename "$CONF"):[0-9]*:" "$TMPD/t2.out" || fail "no FILE:LINE in: $(cat "$TMPD/t2.out")"
ok "-t: $(head -n 1 "$TMPD/t2.out")"
worker_sound
pass
