#!/usr/bin/env bash
# Issue 12, done-when 2 (forget): a reused run id after `forget RUN --yes`
# gives the new run's snapshot (its tool call runs again: the done marks
# went with the run); forget racing entries of the run nobody read yet
# (workers paused) and a tool call in flight: the old run never comes
# back.  Two persistence workers share the file: both apply every forget,
# once.  Counted in heartbeats, status --json and metrics; logged.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=2 tools_count=1 log_level=info extra="$(tools_block \
	"$(tool_entry echo 10000 65536 "$TOOLS_DIR/echo.sh")" \
	"$(tool_entry slow 30000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

# ev RUN SEQ TYPE DATA
ev() { rcli XADD events '*' run "$1" type "$3" seq "$2" data "$4" >/dev/null; }
# snap_is RUN 'python condition on d': the snapshot holds it
snap_is() { [ "$(ctl snapshot "$1" 2>/dev/null | pyjson "$2" 2>/dev/null)" = true ]; }
sum_hb() { rcli --json HGETALL "$SV_NS:workers" | "$PY" -c '
import json, sys
d = json.loads(sys.stdin.read() or "{}")
if isinstance(d, list):
    d = dict(zip(d[0::2], d[1::2]))
print(sum(json.loads(v).get(sys.argv[1], 0) for k, v in d.items() if "/" + sys.argv[2] + "/" in k))' "$1" "$2"; }

check "run R: old content with a tool call, persisted"
ev R 1 response.created '{"model":"old"}'
xadd_call R 2 c1 echo '{"x":"old"}' >/dev/null
wait_output 20 R c1 || fail "no output for the old call"
ev R 3 response.completed '{}'
wait_for 20 'snap_is R "d[\"complete\"] and d[\"model\"] == \"old\" and d[\"event_count\"] == 4"' \
	|| fail "old R not persisted: $(ctl snapshot R 2>&1 | head -c 400)"
[ "$(rcli HEXISTS "$SV_NS:tooldone:R" c1)" = 1 ] || fail "no done mark for R/c1"
ok "old R complete"

check "drain, forget R, write R again with other content"
ctl drain --yes >/dev/null
out=$(ctl forget R --yes) || fail "forget failed: $out"
info "$out"
grep -q '^forgot 1 run at position [0-9]*-0$' <<<"$out" || fail "forget said: $out"
[ "$(rcli HEXISTS "$SV_NS:forgotten" R)" = 1 ] || fail "no tombstone for R"
[ "$(rcli EXISTS "$SV_NS:tooldone:R")" = 0 ] || fail "the done marks of R survived forget"
[ "$(rcli XLEN "$SV_NS:forget")" = 1 ] || fail "$SV_NS:forget: $(rcli XRANGE "$SV_NS:forget" - +)"
# forget returns once this node's file applied it: the old run is gone now
rc=0; ctl snapshot R >/dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "snapshot R right after forget: exit $rc, want 4 (nothing persisted)"
[ "$(sq "SELECT count(*) FROM events WHERE run = 'R'")" = 0 ] || fail "events of R left"
[ "$(sq "SELECT count(*) FROM forgotten WHERE run = 'R'")" = 1 ] || fail "no forget position in SQLite"
ev R 1 response.created '{"model":"new"}'
ev R 2 item.started '{"item_id":"m1","kind":"message","role":"assistant"}'
xadd_call R 3 c1 echo '{"x":"new"}' >/dev/null
wait_output 20 R c1 || fail "the new run's call c1 did not run (taken for done?)"
ev R 4 response.completed '{}'
wait_for 20 'snap_is R "d[\"complete\"] and d[\"model\"] == \"new\" and d[\"event_count\"] == 5"' \
	|| fail "new R: $(ctl snapshot R 2>&1 | head -c 600)"
snap=$(ctl snapshot R --wait 5)
[ "$(pyjson '[o["output"] for o in d["output"] if o["type"] == "tool_output"] == ["{\"x\": \"new\"}"] or [o["output"] for o in d["output"] if o["type"] == "tool_output"] == ["{\"x\":\"new\"}"]' <<<"$snap")" = true ] \
	|| fail "the new run's tool output: $snap"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + | head -n 30)"
grep -q 'forget: 1 run(s)' "$DLOG" || fail "the forget is not logged"
[ "$(grep -c 'forgot 1 run(s) before position' "$DLOG")" -ge 1 ] || fail "the writer should apply it (standbys apply forgets once they write)"
ok "R's new snapshot: model new, 5 events, its own tool output; no dead letter"

check "forget racing unread entries: workers paused, old P written, forget, new P written"
ctl pause persist >/dev/null
wait_for 10 '[ "$(status_json | pyjson "all(w[\"status\"] == \"paused\" for w in d[\"workers\"] if w[\"pool\"] == \"persist\")")" = true ]' \
	|| fail "persistence workers not paused: $(worker_table)"
ev P 1 response.created '{"model":"old"}'
ev P 2 usage '{"input_tokens":1}'
ev P 3 response.completed '{}'
out=$(ctl forget P --yes --no-wait) || fail "forget P: $out"
ev P 1 response.created '{"model":"new"}'
ev P 2 response.failed '{"error":{"code":"x","message":"y"}}'
ctl resume persist >/dev/null
wait_for 20 'snap_is P "d[\"status\"] == \"failed\" and d[\"model\"] == \"new\" and d[\"event_count\"] == 2"' \
	|| fail "P: $(ctl snapshot P 2>&1 | head -c 600)"
sleep "$(scaled 1)"
snap_is P 'd["model"] == "new" and d["event_count"] == 2 and d["usage"]["input_tokens"] == 0' \
	|| fail "the old P came back: $(ctl snapshot P 2>&1 | head -c 600)"
[ "$(sq "SELECT count(*) FROM events WHERE run = 'P'")" = 2 ] || fail "events of P: $(sq "SELECT seq, type FROM events WHERE run = 'P'")"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + | head -n 30)"
wait_for 10 '[ "$(sum_hb forgotten persist)" -ge 3 ]' || fail "forgotten entries counted: $(sum_hb forgotten persist)"
grep -q 'acked [0-9]* entries of forgotten runs' "$DLOG" || fail "no log line for the forgotten entries"
ok "P: only the new run; $(sum_hb forgotten persist) entries of the old run acked unstored"

check "forget racing a tool call in flight"
ev T 1 response.created '{"model":"old"}'
xadd_call T 2 t1 slow '{"sleep":3}' >/dev/null
wait_for 20 '[ -s "$COUNTER" ]' || fail "the slow tool never started"
wait_for 20 'snap_is T "d[\"event_count\"] == 2"' || fail "old T not persisted"
ctl forget T --yes >/dev/null
rc=0; ctl snapshot T >/dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "snapshot T after forget: exit $rc"
wait_for 20 'grep -q "finished after its run was forgotten" "$DLOG"' || fail "the call in flight was not dropped"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "the call stays pending"
sleep "$(scaled 1)"
[ "$(count_outputs T t1)" = 0 ] || fail "the forgotten call published: $(tool_outputs T t1)"
[ "$(rcli HEXISTS "$SV_NS:tooldone:T" t1)" = 0 ] || fail "the forgotten call left a done mark"
rc=0; ctl snapshot T >/dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "the old T came back: $(ctl snapshot T 2>&1 | head -c 400)"
[ "$(sum_hb forgotten tools)" -ge 1 ] || fail "the dropped output is not counted"
ok "no output for the forgotten call, no snapshot of T"

check "T again with the same call id: runs and completes"
ev T 1 response.created '{"model":"new"}'
xadd_call T 2 t1 slow '{"sleep":0}' >/dev/null
wait_output 20 T t1 || fail "the new T's call did not run"
ev T 3 response.completed '{}'
wait_for 20 'snap_is T "d[\"complete\"] and d[\"model\"] == \"new\" and d[\"event_count\"] == 4"' \
	|| fail "new T: $(ctl snapshot T 2>&1 | head -c 600)"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + | head -n 30)"
ok "new T complete"

check "a re-driven copy of a forgotten run's call (origin_id before the forget) is not run"
ctl forget F --yes >/dev/null || fail "forget F"
data='{"call_id":"f1","name":"slow","arguments":{"sleep":0}}'
rcli XADD events '*' origin_id 1-0 run F type tool.call seq 1 data "$data" >/dev/null
wait_for 20 '[ "$(tools_pending)" = 0 ] && [ "$(group_info tools lag)" = 0 ]' || fail "the copy was not acked"
sleep "$(scaled 1)"
[ "$(count_outputs F f1)" = 0 ] || fail "the forgotten run's re-driven call ran: $(tool_outputs F f1)"
xadd_call F 2 f2 slow '{"sleep":0}' >/dev/null
wait_output 20 F f2 || fail "a new call of F after the forget did not run"
ok "the copy acked unrun; a new call of F runs"

check "counted in status --json and metrics"
st=$(status_json | pyjson 'sum(w.get("forgotten", 0) for w in d["workers"])')
[ "$st" -ge 4 ] || fail "status --json forgotten: $st"
ctl metrics | grep -E '^streamvisor_forgotten_entries_total\{pool="persist"\} [1-9]' >/dev/null || fail "metrics: $(ctl metrics | grep forgotten)"
rc=0; ctl forget R 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "forget without --yes: exit $rc, want 2"
assert_no_fatal
ok "forgotten: status $st; $(ctl metrics | grep '^streamvisor_forgotten_entries_total{pool="persist"}')"
pass
