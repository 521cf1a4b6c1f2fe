#!/usr/bin/env bash
# A SIGSTOPped worker is declared HUNG within heartbeat.timeout_ms + one
# interval, gets killed and is replaced by a new pid that heartbeats.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

INTERVAL=200 TIMEOUT=1000
SLACK=4000   # generous: 2-core noisy CI

start_redis
write_config persist_count=2 tools_count=2 hb_interval=$INTERVAL hb_timeout=$TIMEOUT
# write_config stretched the times by SV_TIME_SCALE; judge against those.
INTERVAL=$(scaled $INTERVAL) TIMEOUT=$(scaled $TIMEOUT) SLACK=$(scaled $SLACK)
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids
victim=t1/persist/0
# Let the worker settle past its start (beats flowing) before stopping it.
wait_for 10 "beat_fresh $victim 600" || fail "$victim has no fresh beat"
before=$(worker_table)
old_pid=$(wfield "$victim" pid)
old_inc=$(wfield "$victim" incarnation)
last=$(sup_last_id)

check "SIGSTOP $victim (pid $old_pid): HUNG within timeout_ms + interval"
seen_state=""
b_before=$(hbfield "$victim" beat_ms)
t_stop=$(now_ms)
kill -STOP "$old_pid"
# HUNG may be short-lived (SIGCONT+SIGTERM follow at once), so watch both the
# status and the NS:supervisor stream (whose entry id carries the time).
hung_entry=""
deadline=$((t_stop + TIMEOUT + INTERVAL + SLACK + 10000))
while [ "$(now_ms)" -lt "$deadline" ]; do
	st=$(wfield "$victim" state 2>/dev/null || true)
	if [ "$st" = HUNG ] && [ -z "$seen_state" ]; then seen_state=$(now_ms); fi
	hung_entry=$(sup_select "$last" "e.get('worker') == '$victim' and e.get('to') == 'HUNG'" | head -n 1)
	[ -n "$hung_entry" ] && break
	sleep 0.05
done
[ -n "$hung_entry" ] || { sup_entries "$last"; fail "no NS:supervisor to=HUNG entry for $victim within $((deadline - t_stop)) ms"; }
echo "$hung_entry"
hung_ms=$(pyjson 'd["id"].split("-")[0]' <<<"$hung_entry")
took=$((hung_ms - t_stop))
seen="not sampled"; [ -z "$seen_state" ] || seen="at $((seen_state - t_stop)) ms"
info "declared HUNG ${took} ms after SIGSTOP (timeout_ms=$TIMEOUT interval_ms=$INTERVAL; HUNG in status: $seen)"
[ "$(pyjson 'd.get("pid")' <<<"$hung_entry")" = "$old_pid" ] || fail "HUNG entry names another pid: $hung_entry"
# Not before it could have gone stale: its last beat is at or after
# b_before (read just before the stop), and the master waits timeout_ms
# from the moment it saw that beat.  (Measured from the beat, not from the
# stop: under valgrind beats run late.)
[ $((hung_ms - b_before)) -ge $((TIMEOUT - 100)) ] || fail "declared HUNG too early: $((hung_ms - b_before)) ms after the last beat seen < timeout_ms"
[ "$took" -le $((TIMEOUT + INTERVAL + SLACK)) ] || fail "declared HUNG too late: ${took} ms > timeout+interval+slack ($((TIMEOUT + INTERVAL + SLACK)))"
ok "HUNG after ${took} ms (bound $((TIMEOUT + INTERVAL)) ms + ${SLACK} ms test slack)"

check "the hung process is killed and replaced by a new pid that heartbeats"
wait_for 20 '! pid_alive "$old_pid"' || fail "hung pid $old_pid still alive (state $(cat /proc/$old_pid/stat 2>/dev/null | cut -d" " -f3))"
ok "old pid $old_pid gone"
wait_for 20 'replaced "$victim" "$old_pid"' \
	|| fail "$victim not replaced: $(worker_json "$victim" 2>&1)"
new_pid=$(wfield "$victim" pid); remember_pid "$new_pid"
new_inc=$(wfield "$victim" incarnation)
[ "$new_inc" -eq $((old_inc + 1)) ] || fail "incarnation $old_inc -> $new_inc, want +1"
wait_for 10 '[ "$(hbfield "$victim" pid 2>/dev/null)" = "$new_pid" ] && beat_fresh "$victim" 600' \
	|| fail "replacement $new_pid does not heartbeat: $(hb "$victim")"
b0=$(hbfield "$victim" beat_ms)
wait_for 10 '[ "$(hbfield "$victim" beat_ms)" -gt "$b0" ]' || fail "replacement beat_ms stuck at $b0"
ok "$victim: pid $old_pid -> $new_pid (incarnation $new_inc), RUNNING, heartbeating"

check "the transitions recorded for $victim"
sup_select "$last" "e.get('worker') == '$victim'"
fatal=$(sup_select "$last" "e.get('to') == 'FATAL'")
[ -z "$fatal" ] || fail "FATAL after a hang: $fatal"
ok "no FATAL"

check "the other workers were untouched and never HUNG"
after=$(worker_table)
diff <(grep -v -- "^$victim " <<<"$before") <(grep -v -- "^$victim " <<<"$after") || fail "other workers changed"
others=$(sup_select "$last" "e.get('to') == 'HUNG' and e.get('worker') != '$victim'")
[ -z "$others" ] || fail "other workers declared HUNG: $others"
ok "other pids unchanged"
pass
