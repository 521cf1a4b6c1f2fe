#!/usr/bin/env bash
# Issue 12, done-when 3: a tool re-run after a worker crash.  SIGKILL the
# tool worker while its tool runs: the call runs a second time (execution is
# at least once), yet the stream holds one tool.output, no dead letter is
# published, the run's snapshot shows one output for the call, and the
# re-run is counted (heartbeat "reruns", status --json, metrics) and logged.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=1 tools_count=2 log_level=info extra="$(tools_block \
	"$(tool_entry slow 30000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "run K: a slow call; SIGKILL the tool worker that runs it"
rcli XADD events '*' run K type response.created seq 1 data '{"model":"m"}' >/dev/null
id=$(xadd_call K 2 k1 slow '{"sleep":3}')
busy_hb() { tool_heartbeats | grep -F "\"current\": \"$id\"" | grep -F '"status": "busy"' | head -n 1; }
wait_for 20 '[ -n "$(busy_hb)" ] && [ -s "$COUNTER" ]' || fail "no busy worker with current=$id: $(tool_heartbeats)"
hbj=$(busy_hb)
name=$(pyjson 'd["name"]' <<<"$hbj")
wpid=$(pyjson 'd["pid"]' <<<"$hbj")
kill -KILL "$wpid"
ok "killed $name (pid $wpid) while the tool ran"

check "the call runs again and is published once"
wait_output 60 K k1 || fail "no tool.output for K/k1 after the crash"
n=$(wc -l <"$COUNTER")
[ "$n" -ge 2 ] || fail "the call ran $n time(s): want a re-run after the crash"
rcli XADD events '*' run K type response.completed seq 3 data '{}' >/dev/null
wait_for 30 '[ "$(ctl snapshot K 2>/dev/null | pyjson "d[\"complete\"] and d[\"event_count\"] == 4" 2>/dev/null)" = true ]' \
	|| fail "snapshot of K not complete with 4 events: $(ctl snapshot K 2>&1 | head -c 600)"
sleep "$(scaled 2)" # past claim_idle_ms: no late second output
[ "$(count_outputs K k1)" = 1 ] || fail "want exactly 1 tool.output: $(tool_outputs K k1)"
ok "the tool ran $n times; one tool.output"

check "no dead letter; the snapshot has one output for the call"
[ "$(rcli XLEN events:dead)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + | head -n 40)"
snap=$(ctl snapshot K)
[ "$(pyjson 'len([o for o in d["output"] if o["type"] == "tool_output" and o["call_id"] == "k1"])' <<<"$snap")" = 1 ] \
	|| fail "snapshot outputs: $snap"
[ "$(pyjson '[o["status"] for o in d["output"] if o["type"] == "tool_call"] == ["completed"] and d["anomalies"] == []' <<<"$snap")" = true ] \
	|| fail "snapshot: $snap"
ok "one tool_output item, call completed, no anomalies"

check "the re-run is counted and logged"
reruns() { tool_heartbeats | "$PY" -c 'import json, sys; print(sum(json.loads(l).get("reruns", 0) for l in sys.stdin))'; }
wait_for 10 '[ "$(reruns)" -ge 1 ]' || fail "no reruns in the tool heartbeats: $(tool_heartbeats)"
st=$(status_json | pyjson 'sum(w.get("reruns", 0) for w in d["workers"] if w["pool"] == "tools")')
[ "$st" -ge 1 ] || fail "status --json reruns: $st"
wait_for 10 'ctl metrics | grep -E "^streamvisor_tool_reruns_total\{pool=\"tools\"\} [1-9]" >/dev/null' \
	|| fail "metrics: $(ctl metrics | grep reruns)"
grep -q 'running it again (a re-run)' "$DLOG" || fail "no log line for the re-run"
grep -q 'level=info.*running it again' "$DLOG" || fail "the re-run is not logged at info"
ok "reruns: heartbeats $(reruns), status $st; $(ctl metrics | grep '^streamvisor_tool_reruns_total{pool="tools"}')"
pass
