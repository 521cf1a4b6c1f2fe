#!/usr/bin/env bash
# While a slow tool runs, `streamvisorctl status --json` shows the worker
# running it with status "busy", "current" = the tool.call's entry id and
# "calls" = [{run, call_id, tool, entry, state: running}] (the heartbeat
# carries them and its tool_pgid; the table lists them under "tool
# calls:"); the other worker stays idle.  When the output is published the
# worker says idle at once (heartbeat), and status follows within one
# registry read (interval 2000 ms: it used to stay busy ~3 s).  Calls of a
# batch waiting behind the running one are listed as "waiting".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=1 tools_count=2 hb_interval=2000 hb_timeout=10000 block_ms=2000 claim_idle=20000 extra="$(tools_block \
	"$(tool_entry slow 30000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "idle before any call"
wait_for 10 '[ "$(status_json | pyjson "sorted(set(w[\"status\"] for w in d[\"workers\"] if w[\"pool\"] == \"tools\"))")" = "[\"idle\"]" ]' \
	|| fail "tool workers not idle: $(status_json)"
ok "tool workers idle"

check "a slow call: its worker is busy with current = the entry id"
id=$(xadd_call B 1 b1 slow '{"sleep":5}')
info "entry $id"
busy_worker() { status_json | pyjson '[w["name"] for w in d["workers"] if w.get("status") == "busy" and w.get("current") == "'"$id"'"]'; }
wait_for 20 '[ "$(busy_worker)" != "[]" ] && [ -n "$(busy_worker)" ]' || fail "no worker busy with current=$id: $(status_json)"
name=$(busy_worker | pyjson 'd[0]')
[ "$(busy_worker | pyjson 'len(d)')" = 1 ] || fail "more than one worker busy with $id: $(busy_worker)"
w=$(worker_json "$name")
echo "$w"
[ "$(pyjson 'd["state"]' <<<"$w")" = RUNNING ] || fail "busy worker not RUNNING: $w"
other=$(status_json | pyjson '[w for w in d["workers"] if w["pool"] == "tools" and w["name"] != "'"$name"'"][0]')
other_name=$(pyjson 'd["name"]' <<<"$other")
[ "$(pyjson 'd["status"]' <<<"$other")" = idle ] && [ "$(pyjson 'd.get("current") is None' <<<"$other")" = true ] \
	|| fail "the other tool worker is not idle: $other"
calls=$(pyjson 'd["calls"]' <<<"$w")
[ "$(pyjson 'd == [{"run": "B", "call_id": "b1", "tool": "slow", "entry": "'"$id"'", "state": "running"}]' <<<"$calls")" = true ] ||
	fail "calls of $name: $calls"
[ "$(pyjson 'd["calls"] == [] and d["calls_more"] == 0' <<<"$other")" = true ] || fail "the other worker has calls: $other"
ok "$name busy, current $id, calls $calls; the other idle"

check "the heartbeat says busy, current and tool_pgid, and keeps beating while the tool runs"
h=$(hb "$name")
echo "$h"
pyjson 'd["status"] == "busy" and d["current"] == "'"$id"'" and isinstance(d.get("tool_pgid"), int) and d["tool_pgid"] > 1 and d["calls"] == [{"run": "B", "call_id": "b1", "tool": "slow", "entry": "'"$id"'", "state": "running"}]' <<<"$h" \
	| grep -qx true || fail "heartbeat of $name: $h"
b1=$(pyjson 'd["beat_ms"]' <<<"$h")
wait_for 5 '[ "$(hbfield "$name" beat_ms)" != "$b1" ]' || fail "beat_ms did not advance while the tool ran"
[ "$(hbfield "$name" status)" = busy ] || fail "no longer busy while the tool runs: $(hb "$name")"
st=$(ctl status 2>/dev/null || true)
grep -E "^$name +RUNNING .* busy " <<<"$st" >/dev/null || fail "human status does not show $name busy: $st"
grep -A1 '^tool calls:' <<<"$st" | grep -qE '^ +WORKER +CALL +TOOL +RUN +CALL_ID +ENTRY' || fail "no tool calls table: $st"
grep -E "^ +$name +running +slow +B +b1 +$id\$" <<<"$st" >/dev/null || fail "no row for the call: $st"
ok "heartbeat busy with tool_pgid; beats advance; table shows busy"

check "once the output is published the worker is idle: heartbeat at once, status within one registry read"
wait_for 30 '[ "$(count_outputs B b1)" -ge 1 ]' || fail "no tool.output"
t_out=$(now_ms)
idle_hb() { hb "$name" | pyjson 'd["status"] == "idle" and d["current"] is None and d["calls"] == [] and d.get("tool_pgid") in (None, 0)' | grep -qx true; }
wait_for 5 'idle_hb' || fail "heartbeat of $name after the call: $(hb "$name")"
hb_ms=$(($(now_ms) - t_out))
wait_for 10 '[ "$(wfield "$name" status)" = idle ] && [ "$(wfield "$name" current)" = "" ] && [ "$(worker_json "$name" | pyjson "d[\"calls\"]")" = "[]" ]' \
	|| fail "$name not idle with current null after the call: $(worker_json "$name")"
st_ms=$(($(now_ms) - t_out))
info "heartbeat idle $hb_ms ms, status idle $st_ms ms after the output appeared"
[ "$hb_ms" -le 1000 ] || fail "heartbeat still busy $hb_ms ms after the publish"
[ "$st_ms" -le $(($(scaled 2000) + 1000)) ] || fail "status still busy $st_ms ms after the publish"
[ "$(count_outputs B b1)" = 1 ] || fail "want exactly one tool.output: $(tool_outputs B b1)"
ok "$name idle, current null, calls [], tool_pgid cleared ($hb_ms ms / $st_ms ms)"

check "three calls in one batch: one running, the others listed as waiting"
ctl stop "$other_name" >/dev/null || fail "stop $other_name refused"
rcli EVAL "for i = 1, 3 do redis.call('XADD', KEYS[1], '*', 'run', 'W', 'type', 'tool.call', 'data', ARGV[i]) end return 3" 1 events \
	'{"call_id":"w1","name":"slow","arguments":{"sleep":3}}' '{"call_id":"w2","name":"slow","arguments":{"sleep":3}}' \
	'{"call_id":"w3","name":"slow","arguments":{"sleep":1}}' >/dev/null
calls_are() { [ "$(worker_json "$name" | pyjson '[(c["call_id"], c["state"], c["tool"], c["run"]) for c in d["calls"]]')" = "$1" ]; }
wait_for 10 'calls_are "[[\"w1\", \"running\", \"slow\", \"W\"], [\"w2\", \"waiting\", \"slow\", \"W\"], [\"w3\", \"waiting\", \"slow\", \"W\"]]"' ||
	fail "calls while w1 runs: $(worker_json "$name")"
st=$(ctl status 2>/dev/null || true)
[ "$(grep -cE "^ +$name +waiting +slow +W +w[23] " <<<"$st")" = 2 ] || fail "waiting rows: $st"
wait_for 10 'calls_are "[[\"w2\", \"running\", \"slow\", \"W\"], [\"w3\", \"waiting\", \"slow\", \"W\"]]"' ||
	fail "calls while w2 runs: $(worker_json "$name")"
wait_for 15 '[ "$(count_outputs W w3)" = 1 ] && calls_are "[]" && [ "$(wfield "$name" status)" = idle ]' ||
	fail "not idle after the batch: $(worker_json "$name")"
ok "w1 running with w2, w3 waiting; then w2 with w3; then none"
pass
