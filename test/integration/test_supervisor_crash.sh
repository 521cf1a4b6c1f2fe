#!/usr/bin/env bash
# A SIGKILLed RUNNING worker is replaced at once: new pid, incarnation+1,
# same name, RUNNING; NS:supervisor records the exit with signal 9.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_redis
write_config persist_count=2 tools_count=2
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids

for victim in t1/persist/1 t1/tools/0; do
	check "SIGKILL $victim"
	before=$(worker_table)
	old_pid=$(wfield "$victim" pid)
	old_inc=$(wfield "$victim" incarnation)
	old_restarts=$(wfield "$victim" restarts)
	last=$(sup_last_id)
	kill -KILL "$old_pid"
	t0=$(now_ms)
	wait_for 20 'replaced "$victim" "$old_pid"' \
		|| fail "$victim not replaced by a RUNNING worker (old pid $old_pid): $(worker_json "$victim" 2>&1)"
	info "replacement RUNNING after ~$(($(now_ms) - t0)) ms (includes start_ms)"
	new_pid=$(wfield "$victim" pid); remember_pid "$new_pid"
	new_inc=$(wfield "$victim" incarnation)
	! pid_alive "$old_pid" || fail "old pid $old_pid still alive"
	[ "$new_inc" -eq $((old_inc + 1)) ] || fail "incarnation $old_inc -> $new_inc, want +1"
	ok "$victim: pid $old_pid -> $new_pid, incarnation $old_inc -> $new_inc, RUNNING"

	new_restarts=$(wfield "$victim" restarts)
	[ "$new_restarts" -gt "$old_restarts" ] || fail "restarts counter did not grow: $old_restarts -> $new_restarts"
	ok "restarts $old_restarts -> $new_restarts"

	check "the heartbeat of $victim comes from the new pid with the new incarnation"
	wait_for 10 '[ "$(hbfield "$victim" pid 2>/dev/null)" = "$new_pid" ] && [ "$(hbfield "$victim" incarnation)" = "$new_inc" ] && beat_fresh "$victim" 600' \
		|| fail "NS:workers $victim = $(hb "$victim"), want pid $new_pid incarnation $new_inc, fresh beat"
	wait_for 5 '[ "$(rcli GET "$SV_NS:consumer:$victim")" = "$new_pid:$new_inc" ]' \
		|| fail "fencing key $SV_NS:consumer:$victim = $(rcli GET "$SV_NS:consumer:$victim"), want $new_pid:$new_inc"
	ok "NS:workers and fencing key follow the replacement"

	check "NS:supervisor records the exit of $victim with signal 9"
	wait_for 10 '[ -n "$(sup_select "$last" "e.get(\"worker\") == \"$victim\" and e.get(\"signal\") == \"9\"")" ]' \
		|| { sup_entries "$last"; fail "no NS:supervisor entry worker=$victim signal=9"; }
	sup_select "$last" "e.get('worker') == '$victim'"
	ok "exit with signal 9 recorded"
	exit_entry=$(sup_select "$last" "e.get('worker') == '$victim' and e.get('signal') == '9'" | head -n 1)
	[ "$(pyjson 'd.get("pid")' <<<"$exit_entry")" = "$old_pid" ] \
		|| fail "the exit entry names pid '$(pyjson 'd.get("pid")' <<<"$exit_entry")', want the pid that died ($old_pid): $exit_entry"
	bad=$(sup_select "$last" "e.get('worker') == '$victim' and e.get('to') in ('BACKOFF', 'FATAL')")
	[ -z "$bad" ] || fail "a crash after a good start must restart at once, not: $bad"
	ok "NS:supervisor: exit of pid $old_pid with signal 9, no BACKOFF"

	check "the other workers are untouched"
	after=$(worker_table)
	diff <(grep -v -- "^$victim " <<<"$before") <(grep -v -- "^$victim " <<<"$after") \
		|| fail "other workers changed"
	ok "other pids unchanged"
done

rc=0; ctl status >/dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "status exit $rc after the replacements"
ok "status exit 0"
pass
