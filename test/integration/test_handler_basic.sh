#!/usr/bin/env bash
# Persistent handlers, done-when 1: the Python and Node examples answer
# calls with one tool.output each, in the run's stream; outputs that are
# JSON objects are stored as given; an error answer is is_error with
# exit_code null; the snapshot has them; nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$(dirname "$0")/handlerit.sh"

entries=("$(handler_entry hpy 1 30000 "$PY" "$EXAMPLES/handler.py")")
[ -n "$NODE" ] && entries+=("$(handler_entry hjs 1 30000 "$NODE" "$EXAMPLES/handler.js")")
start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block "${entries[@]}")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"

for tool in hpy ${NODE:+hjs}; do
	check "$tool: 20 calls, one output each"
	run=R_$tool
	xadd_calls "$run" 0 20 "$tool" '{"x": "hello", "n": [1, 2]}'
	wait_for 30 '[ "$(outputs_count "$run")" -ge 20 ]' || fail "$tool: $(outputs_count "$run") outputs of 20"
	d=$(out_field "$run" c3 'd')
	echo "$d"
	pyjson 'd["output"]["echo"] == {"x": "hello", "n": [1, 2]} and d["is_error"] is False and d["exit_code"] is None and d["name"] == "'"$tool"'"' <<<"$d" \
		| grep -qx true || fail "$tool output: $d"
	xadd_call "$run" 21 cerr "$tool" '{"fail": "no such thing"}' >/dev/null
	expect_output "$run" cerr 'd["output"] == "no such thing" and d["is_error"] is True and d["exit_code"] is None'
	sleep 1.5
	one_each "$run" 20 || fail "$tool: not one output per call"
	[ "$(count_outputs "$run" cerr)" = 1 ] || fail "$tool: cerr has $(count_outputs "$run" cerr) outputs"
	ok "$tool: one output per call, objects stored as given"
done

check "the snapshot shows the outputs"
wait_for 30 '[ "$(ctl snapshot R_hpy 2>/dev/null | pyjson "len([i for i in d[\"output\"] if i.get(\"type\") == \"tool_output\"])" 2>/dev/null)" = 21 ]' \
	|| fail "snapshot R_hpy: $(ctl snapshot R_hpy 2>&1 | head -c 2000)"
snap=$(ctl snapshot R_hpy)
pyjson '[i["output"]["echo"]["x"] for i in d["output"] if i.get("type") == "tool_output" and i.get("call_id") == "c0"] == ["hello"]' <<<"$snap" \
	| grep -qx true || fail "snapshot: $(head -c 2000 <<<"$snap")"
ok "snapshot has 21 tool_output items"

wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
for n in $(status_json | pyjson '" ".join(w["name"] for w in d["workers"] if "/tools/" in w["name"])'); do
	state_is "$n" RUNNING || fail "$n not RUNNING: $(worker_json "$n")"
done
ok "nothing pending, tool workers RUNNING"
pass
