#!/usr/bin/env bash
# While a slow tool runs, `streamvisorctl status --json` shows the worker
# running it with status "busy" and "current" = the tool.call's entry id
# (and the heartbeat carries its tool_pgid); the other worker stays idle.
# Afterwards the worker is "idle" again with current null.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block \
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
[ "$(pyjson 'd["status"]' <<<"$other")" = idle ] && [ "$(pyjson 'd.get("current") is None' <<<"$other")" = true ] \
	|| fail "the other tool worker is not idle: $other"
ok "$name busy, current $id; the other idle"

check "the heartbeat says busy, current and tool_pgid, and keeps beating while the tool runs"
h=$(hb "$name")
echo "$h"
pyjson 'd["status"] == "busy" and d["current"] == "'"$id"'" and isinstance(d.get("tool_pgid"), int) and d["tool_pgid"] > 1' <<<"$h" \
	| grep -qx true || fail "heartbeat of $name: $h"
b1=$(pyjson 'd["beat_ms"]' <<<"$h")
wait_for 5 '[ "$(hbfield "$name" beat_ms)" != "$b1" ]' || fail "beat_ms did not advance while the tool ran"
[ "$(hbfield "$name" status)" = busy ] || fail "no longer busy while the tool runs: $(hb "$name")"
st=$(ctl status 2>/dev/null || true)
grep -E "^$name +RUNNING .* busy " <<<"$st" >/dev/null || fail "human status does not show $name busy: $st"
ok "heartbeat busy with tool_pgid; beats advance; table shows busy"

check "after the output the worker is idle again"
wait_output 30 B b1 || fail "no tool.output"
wait_for 10 '[ "$(wfield "$name" status)" = idle ] && [ "$(wfield "$name" current)" = "" ]' \
	|| fail "$name not idle with current null after the call: $(worker_json "$name")"
wait_for 5 '[ "$(hbfield "$name" status)" = idle ] && [ "$(hb "$name" | pyjson "d.get(\"tool_pgid\") in (None, 0)")" = true ]' \
	|| fail "heartbeat of $name after the call: $(hb "$name")"
[ "$(count_outputs B b1)" = 1 ] || fail "want exactly one tool.output: $(tool_outputs B b1)"
ok "$name idle, current null, tool_pgid cleared"
pass
