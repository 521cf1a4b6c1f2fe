#!/usr/bin/env bash
# Incident 6: a re-created tool worker must have exactly the tools of the
# current config.  After a reload that adds a tool, after `restart tools`,
# after a SIGKILL of a tool worker, after `scale tools 3`, and after a
# reload that removes a tool, every tool worker (each one in turn, the
# others paused) runs exactly the configured tools.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

HOLD=$TMPD/hold
mkdir -p "$HOLD"
ALPHA=$(TOOL_ENV='"PREFIX=alpha"' tool_entry alpha 40000 65536 "$TOOLS_DIR/whoami.sh" "$HOLD")
BETA=$(TOOL_ENV='"PREFIX=beta"' tool_entry beta 40000 65536 "$TOOLS_DIR/whoami.sh" "$HOLD")
start_redis
write_config persist_count=1 tools_count=2 extra="$(tools_block "$ALPHA")"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

N=0
tool_workers() { status_json | pyjson '"\n".join(sorted(w["name"] for w in d["workers"] if w["pool"] == "tools" and w["state"] == "RUNNING"))'; }
tool_pids() { status_json | pyjson '"\n".join(sorted(str(w["pid"]) for w in d["workers"] if w["pool"] == "tools" and w["state"] == "RUNNING"))'; }

# call TOOL: one call, waited for; prints its output.
call() {
	N=$((N + 1))
	xadd_call "reg$N" 1 "c$N" "$1" '{}' >/dev/null
	wait_output 20 "reg$N" "c$N" || fail "no output for call $N of $1"
	out_field "reg$N" "c$N" 'd["output"]'
}

# cover TOOL: one call per RUNNING tool worker, each sent once the previous
# one's tool has started (so it must go to a worker not yet busy), all
# released together: every worker must run TOOL, and print TOOL:its pid.
# (streamvisorctl pause would pin calls too, but see the report: pause
# does not reach a worker blocked in XREADGROUP.)
cover() {
	local tool=$1 pids n k seen="" out
	pids=$(tool_pids)
	n=$(grep -c . <<<"$pids")
	rm -f "$HOLD/release"
	N=$((N + 1))
	for k in $(seq 1 "$n"); do
		xadd_call "reg$N" "$k" "c$N-$k" "$tool" '{}' >/dev/null
		wait_for 20 '[ -e "$HOLD/started.c$N-$k" ] || [ "$(count_outputs "reg$N" "c$N-$k")" != 0 ]' \
			|| fail "call $k of $tool not started by any of the $n workers ($(echo $pids)): $(tool_heartbeats)"
		[ -e "$HOLD/started.c$N-$k" ] || fail "call $k of $tool -> $(out_field "reg$N" "c$N-$k" 'd["output"]')"
	done
	: >"$HOLD/release"
	for k in $(seq 1 "$n"); do
		wait_output 20 "reg$N" "c$N-$k" || fail "no output for call $k of $tool"
		out=$(out_field "reg$N" "c$N-$k" 'd["output"]')
		[[ $out =~ ^$tool:([0-9]+)$ ]] || fail "call of $tool -> '$out', want '$tool:WORKER_PID'"
		seen+="${BASH_REMATCH[1]}"$'\n'
	done
	[ "$(sort -u <<<"$seen" | grep -c .)" = "$n" ] && [ "$(sort -u <<<"$seen" | grep .)" = "$pids" ] \
		|| fail "$tool ran on pids $(echo $seen), want each of $(echo $pids) once"
	info "$tool ran on every tool worker: $(echo $pids)"
}

# unknown TOOL: a few calls at once, all "unknown tool: TOOL".
unknown() {
	local out k
	N=$((N + 1))
	for k in 1 2 3 4; do xadd_call "reg$N" "$k" "u$k" "$1" '{}' >/dev/null; done
	for k in 1 2 3 4; do
		wait_output 20 "reg$N" "u$k" || fail "no output for call $k of $1"
		out=$(out_field "reg$N" "u$k" 'd["output"]')
		[ "$out" = "unknown tool: $1" ] || fail "call of removed/unconfigured tool $1 -> '$out'"
	done
}

# every N EXPECT_ALPHA EXPECT_BETA: N tool workers RUNNING; each runs the
# tools expected "ok", and the others are unknown.
every() {
	local n=$1
	wait_for 30 'all_running '"$n"' tools' || fail "want $n RUNNING tool workers: $(worker_table)"
	snapshot_pids >/dev/null
	if [ "$2" = ok ]; then cover alpha; else unknown alpha; fi
	if [ "$3" = ok ]; then cover beta; else unknown beta; fi
}

check "initial config: alpha only"
every 2 ok unknown
ok "every worker: alpha ok, beta unknown"

check "reload adding beta"
write_config persist_count=1 tools_count=2 extra="$(tools_block "$ALPHA" "$BETA")"
ctl reload || fail "reload failed"
every 2 ok ok
ok "every worker knows beta after the reload"

check "restart tools"
before=$(tool_pids)
ctl restart tools >/dev/null || fail "restart tools failed"
wait_for 20 '[ -z "$(comm -12 <(echo "$before") <(tool_pids))" ] && all_running 2 tools' \
	|| fail "restart did not replace the tool workers: $(echo $before) -> $(echo $(tool_pids))"
every 2 ok ok
ok "every worker knows alpha and beta after restart"

check "SIGKILL of a tool worker"
victim=t1/tools/1
vpid=$(wfield "$victim" pid)
kill -KILL "$vpid"
wait_for 20 '[ "$(wfield "$victim" pid)" != "$vpid" ] && state_is "$victim" RUNNING' || fail "$victim not replaced: $(worker_json "$victim")"
every 2 ok ok
ok "the replacement knows alpha and beta"

check "scale tools 3"
ctl scale tools 3 >/dev/null || fail "scale tools 3 failed"
every 3 ok ok
ok "the new worker t1/tools/2 knows alpha and beta"

check "reload removing alpha (pool size back to the config: 2)"
write_config persist_count=1 tools_count=2 extra="$(tools_block "$BETA")"
ctl reload || fail "reload failed"
wait_for 30 '[ "$(tool_workers | wc -l)" = 2 ]' || fail "pool size not back to 2: $(worker_table)"
every 2 unknown ok
ok "no worker still runs the removed tool"
pass
