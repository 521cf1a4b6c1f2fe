#!/usr/bin/env bash
# Issue 10, done-when 3: a reload that removes a pool whose worker is busy
# with a slow tool.  The worker finishes its call (SIGTERM, stop_timeout_ms
# is long enough) while `status`, `status --json` and `metrics` answer every
# time (>= 50 rounds), the master never dies, the slot shows STOPPING, ends
# STOPPED and disappears once reaped.  Then the pool is removed while busy
# and added back by a second reload before the old process is reaped: on
# every poll `status --json` has one row per name and at most one live
# process per slot; once the old one exits, one new process runs the slot
# and the heartbeat field's pid is the row's.  Each call gets exactly one
# tool.output.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

COUNTER=$TMPD/counter
W=t1/slowpool/0
# The only tool pool (the stock "tools" pool has no worker), group "tools".
slowpool() {
	printf ', { name = "slowpool"; kind = "tool"; count = 1; batch = %s; block_ms = %s; claim_idle_ms = %s; max_deliveries = 3; }' \
		"$1" "$(scaled 200)" "$(scaled 2000)"
}
conf() { write_config persist_count=1 tools_count=0 stop_timeout=30000 claim_idle=2000 \
	extra="$(tools_block "$(tool_entry slow 60000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")" "$@"; }
reload() {
	local rc=0 out
	out=$(ctl reload 2>&1) || rc=$?
	[ "$rc" -eq 0 ] || fail "reload exit $rc: $out"
}
row() { pyjson '([w for w in d["workers"] if w["name"] == "'"$W"'"] + [None])[0]' <<<"$CTL_JSON"; }
# busy_with ID: the slot's heartbeat says busy with the call ID.
busy_with() { hb "$W" | pyjson 'd["status"] == "busy" and d["current"] == "'"$1"'"' 2>/dev/null | grep -qx true; }

start_redis
conf pools_extra="$(slowpool 16)"
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "1: a slow call keeps $W busy; a reload removes its pool"
id=$(xadd_call R 1 c1 slow '{"sleep":6}')
wait_for 20 "busy_with $id" || fail "$W not busy with $id: $(hb "$W")"
pa=$(wfield "$W" pid)
info "$W (pid $pa) busy with $id"
conf
reload
# An operator's "start all" meanwhile must not re-arm the removed slot
# (its configuration is gone): it only finishes and goes.
timeout 30 "$STREAMVISORCTL" -s "$SOCK" start all >/dev/null 2>&1 || true
states="" i=0 deadline=$(($(now_ms) + $(scaled 90) * 1000))
while :; do
	i=$((i + 1))
	ctl_answers || fail "round $i after the reload: $CTL_ERR"
	pid_alive "$DAEMON_PID" || fail "the daemon died in round $i"
	st=$(row | pyjson 'd["state"]' 2>/dev/null || echo gone)
	[ "${states##* }" = "$st" ] || states+=" $st"
	[ "$i" -ge 50 ] && [ "$st" = gone ] && break
	[ "$(now_ms)" -lt "$deadline" ] || fail "after $i rounds $W still shows $st (states seen:$states)"
done
info "$i rounds of status, status --json and metrics; $W states seen:$states"
grep -qw STOPPING <<<"$states" || fail "$W never showed STOPPING (states seen:$states)"
! pid_alive "$pa" || fail "the removed worker $pa is still alive"
ok "all $i rounds answered; $W went$states"

check "1: the call finished with one tool.output; the slot ended STOPPED; its field is gone"
wait_output 20 R c1 || fail "no tool.output for c1"
[ "$(wc -l <"$COUNTER")" = 1 ] || fail "the call ran $(wc -l <"$COUNTER") times"
[ -n "$(sup_select 0-0 "e.get('worker') == '$W' and e.get('to') == 'STOPPED'")" ] \
	|| fail "no to=STOPPED entry for $W: $(sup_select 0-0 "e.get('worker') == '$W'")"
[ -z "$(sup_select 0-0 "e.get('worker') == '$W' and e.get('signal') == '9'")" ] || fail "$W was SIGKILLed"
wait_for 10 '[ "$(rcli HEXISTS "$SV_NS:workers" "$W")" = 0 ]' || fail "$SV_NS:workers still has $W: $(hb "$W")"
ok "one output, STOPPED, field removed"

check "2: the pool is back; a new slow call; removed and added back while busy"
conf pools_extra="$(slowpool 16)"
reload
wait_for 30 'all_running 2' || fail "slowpool not back: $(worker_table)"
pb=$(wfield "$W" pid); remember_pid "$pb"
id2=$(xadd_call R 2 c2 slow '{"sleep":6}')
wait_for 20 "busy_with $id2" || fail "$W not busy with $id2: $(hb "$W")"
conf
reload
conf pools_extra="$(slowpool 8)" # new settings
reload
info "second generation asked for while $pb is busy"

check "2: one row per name and one live process per slot on every poll"
i=0 deadline=$(($(now_ms) + $(scaled 90) * 1000))
while :; do
	i=$((i + 1))
	h=$(hb "$W")
	ctl_answers || fail "poll $i: $CTL_ERR"
	pid_alive "$DAEMON_PID" || fail "the daemon died at poll $i"
	dup=$(pyjson '[n for n in set(w["name"] for w in d["workers"]) if [w["name"] for w in d["workers"]].count(n) > 1]' <<<"$CTL_JSON")
	[ "$dup" = "[]" ] || fail "poll $i: two rows with one name: $dup in $CTL_JSON"
	live=$(for p in $(started_pids slowpool/0); do if pid_alive "$p"; then echo "$p"; fi; done | paste -sd" ")
	[ "$(wc -w <<<"$live")" -le 1 ] || fail "poll $i: live processes of $W: $live"
	rpid=$(row | pyjson 'd.get("pid")' 2>/dev/null || true)
	hpid=$(pyjson 'd["pid"]' <<<"$h" 2>/dev/null || true)
	if [ -n "$hpid" ] && pid_alive "$hpid" && [ "$hpid" != "$rpid" ]; then
		fail "poll $i: the heartbeat field of $W is live pid $hpid, the row says ${rpid:-none}"
	fi
	rst=$(row | pyjson 'd["state"]' 2>/dev/null || true)
	if ! pid_alive "$pb" && [ "$rst" = RUNNING ] && [ -n "$rpid" ] && [ "$rpid" != "$pb" ] && [ "$hpid" = "$rpid" ]; then
		break
	fi
	[ "$(now_ms)" -lt "$deadline" ] || fail "after $i polls: $W row $(row) heartbeat $h; old $pb alive: $(pid_alive "$pb" && echo yes || echo no)"
done
remember_pid "$rpid"
info "$i polls; $W: $pb -> $rpid"
wait_for 10 'beat_fresh "$W" 1500 && [ "$(hbfield "$W" pid)" = "$(wfield "$W" pid)" ]' || fail "$W heartbeat: $(hb "$W") row: $(worker_json "$W")"
[ "$(status_json | pyjson '[w["name"] for w in d["workers"]].count("'"$W"'")')" = 1 ] || fail "not one row of $W"
ok "one row, one live process ($rpid) whose pid is in its heartbeat field"

check "each call has exactly one tool.output"
wait_output 20 R c2 || fail "no tool.output for c2"
sleep "$(scaled 2)" # past claim_idle_ms: no late duplicate
[ "$(count_outputs R c1)" = 1 ] && [ "$(count_outputs R c2)" = 1 ] || fail "outputs: $(tool_outputs R)"
wait_for 10 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending"
ok "c1 and c2: one output each, nothing pending"
pass
