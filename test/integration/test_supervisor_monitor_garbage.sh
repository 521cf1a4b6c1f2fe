#!/usr/bin/env bash
# Issue 10, done-when 2 (last sentence): any Redis client can write the
# NS:workers hash, so the monitor validates it field by field.  Garbage
# there (a value that is not JSON, JSON of the wrong types, a forged pid
# under this node's names, non-UTF-8 bytes, a 5 MB value) never restarts
# the monitor, never shows up as a worker of this node, never makes the
# master signal the forged pid, and hang judgement of the real workers
# goes on: a SIGSTOPped worker is still declared HUNG and replaced.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

H=$SV_NS:workers
start_redis
write_config persist_count=1 tools_count=2
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null
wait_for 10 'monitor_pid >/dev/null' || fail "no monitor among the daemon's children: $(daemon_children | paste -sd' ')"
mon=$(monitor_pid)
info "monitor pid $mon"
real=$(worker_table)
# The forged pid is a process of ours in a session of its own: if the
# master acted on it (signal, judge), it would die.
start_foreign_session

# put_garbage: (re)write every garbage field.
put_garbage() {
	local now
	now=$(now_ms)
	rcli HSET "$H" junk 'this is not JSON {' >/dev/null
	rcli HSET "$H" t1/tools/7 '{"pid":"x","beat_ms":[1],"node":7}' >/dev/null
	rcli HSET "$H" t1/tools/8 '{"pid":'"$FOREIGN_PID"',"pool":"tools","kind":"tool","slot":8,"node":"t1","incarnation":1,"started_ms":1,"beat_ms":1,"status":"idle"}' >/dev/null
	rcli HSET "$H" t1/nopool/0 '{"pid":'"$FOREIGN_PID"',"pool":"nopool","kind":"tool","slot":0,"node":"t1","incarnation":1,"beat_ms":'"$now"',"status":"busy","tool_pgid":'"$FOREIGN_PID"'}' >/dev/null
	printf '{"pid":\xff\xfe,"node":"t1\xc3"}' | rcli -x HSET "$H" "$(printf 't1/tools/\xff\xfe')" >/dev/null
	printf '\xff\xfe\xfd' | rcli -x HSET "$H" "$(printf '\xc3\x28')" >/dev/null
	"$PY" -c 'import sys; sys.stdout.write("{\"pid\":1,\"node\":\"t1\",\"pool\":\"tools\",\"slot\":9,\"pad\":\"" + "x" * (5 << 20) + "\"}")' \
		| rcli -x HSET "$H" t1/tools/9 >/dev/null
}

check "garbage in $H: the monitor keeps running"
put_garbage
# A forged pid under the name of a real worker, once (the worker's next
# beat overwrites it).
rcli HSET "$H" t1/tools/1 '{"pid":'"$FOREIGN_PID"',"pool":"tools","kind":"tool","slot":1,"node":"t1","incarnation":99,"beat_ms":1,"status":"idle"}' >/dev/null
info "$H now has $(rcli HLEN "$H") fields"
# Several monitor rounds.
sleep "$(scaled 3)"
pid_alive "$DAEMON_PID" || fail "the daemon died"
pid_alive "$mon" || fail "the monitor $mon died (log: $(grep -i monitor "$DLOG" | tail -n 5))"
[ "$(monitor_pid)" = "$mon" ] || fail "the monitor was replaced: $mon -> $(monitor_pid)"
ok "monitor $mon still running"

check "status shows exactly the real workers of this node"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
names=$(status_json | pyjson '"\n".join(sorted(w["name"] for w in d["workers"] if w["name"].startswith("t1/") or "pool" in w and w["pool"] in ("tools", "persist", "nopool")))')
[ "$names" = "$(awk '{print $1}' <<<"$real")" ] || fail "rows of this node: $names; want: $(awk '{print $1}' <<<"$real" | paste -sd' ')"
# Remote rows are other nodes' workers: none named for this node, none
# whose node is not a string (a field with wrong types is dropped).
bad=$(status_json | pyjson '[r for r in d.get("remote") or [] if not isinstance(r.get("node"), str) or r["node"] == "t1" or str(r.get("name", "")).startswith("t1/")]')
[ "$bad" = "[]" ] || fail "garbage fields shown as remote workers: $bad"
extra=$(ctl status | grep -avE '^(NAME|t1/persist/0|t1/tools/0|t1/tools/1) ' | grep -a 't1/' || true)
[ -z "$extra" ] || fail "human status shows garbage rows: $extra"
wait_for 10 'all_running 3' || fail "not 3 RUNNING: $(worker_table)"
[ "$(worker_table)" = "$real" ] || fail "workers changed: $(worker_table) vs $real"
pid_alive "$FOREIGN_PID" || fail "the forged pid $FOREIGN_PID was killed"
ok "3 real rows, same pids, forged pid alive"

check "hang judgement goes on: SIGSTOP t1/tools/0 -> HUNG, replaced"
put_garbage
victim=t1/tools/0
wait_for 10 "beat_fresh $victim 1500" || fail "$victim has no fresh beat"
old=$(wfield "$victim" pid)
last=$(sup_last_id)
kill -STOP "$old"
wait_for 30 '[ -n "$(sup_select "$last" "e.get(\"worker\") == \"$victim\" and e.get(\"to\") == \"HUNG\"")" ]' \
	|| { kill -CONT "$old"; fail "no to=HUNG entry for the stopped $victim"; }
wait_for 20 '! pid_alive "$old"' || fail "hung pid $old still alive"
wait_for 20 'replaced "$victim" "$old"' || fail "$victim not replaced: $(worker_json "$victim" 2>&1)"
remember_pid "$(wfield "$victim" pid)"
wait_for 10 '[ "$(hbfield "$victim" pid 2>/dev/null)" = "$(wfield "$victim" pid)" ] && beat_fresh "$victim" 1500' \
	|| fail "the replacement does not heartbeat: $(hb "$victim")"
ok "$victim: $old HUNG -> $(wfield "$victim" pid) RUNNING"

check "no other worker was judged, the monitor is the same, the daemon answers"
others=$(sup_select 0-0 "e.get('to') == 'HUNG' and e.get('worker') != '$victim'")
[ -z "$others" ] || fail "other workers declared HUNG: $others"
[ "$(monitor_pid)" = "$mon" ] || fail "the monitor was replaced: $mon -> $(monitor_pid)"
pid_alive "$FOREIGN_PID" || fail "the forged pid $FOREIGN_PID was killed"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
ok "monitor $mon unchanged; daemon answers"
pass
