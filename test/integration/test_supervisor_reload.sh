#!/usr/bin/env bash
# Reload: SIGHUP and `reload` grow a pool without touching other workers;
# `scale` retires workers gracefully; a broken file changes nothing and
# `reload` reports FILE:LINE.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_redis
write_config persist_count=2 tools_count=2
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
t0=$(snapshot_pids)

# same_pids BEFORE AFTER [EXCLUDED_NAME...]: the workers of BEFORE keep
# their pid and state in AFTER.
same_pids() {
	local b=$1 a=$2 line name
	shift 2
	while read -r line; do
		name=${line%% *}
		for x in "$@"; do [ "$name" = "$x" ] && continue 2; done
		grep -qxF -- "$line" <<<"$a" || { echo "changed: '$line' -> '$(grep -- "^$name " <<<"$a")'"; return 1; }
	done <<<"$b"
}

check "SIGHUP with persist count 2 -> 3 adds t1/persist/2 only"
write_config persist_count=3 tools_count=2
kill -HUP "$DAEMON_PID"
wait_for 20 'all_running 5' || fail "expected 5 RUNNING workers after SIGHUP: $(worker_table)"
t1=$(snapshot_pids)
grep -q '^t1/persist/2 RUNNING ' <<<"$t1" || fail "no t1/persist/2"
same_pids "$t0" "$t1" || fail "SIGHUP reload touched other workers"
wait_for 10 'beat_fresh t1/persist/2 600' || fail "t1/persist/2 does not heartbeat"
ok "t1/persist/2 added, the 4 other pids unchanged"

check "streamvisorctl reload with tools count 2 -> 3 adds t1/tools/2 only"
write_config persist_count=3 tools_count=3
rc=0; out=$(ctl reload 2>&1) || rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "reload exit $rc: $out"
wait_for 20 'all_running 6' || fail "expected 6 RUNNING workers after reload: $(worker_table)"
t2=$(snapshot_pids)
grep -q '^t1/tools/2 RUNNING ' <<<"$t2" || fail "no t1/tools/2"
same_pids "$t1" "$t2" || fail "ctl reload touched other workers"
ok "t1/tools/2 added, the 5 other pids unchanged"

check "a reload of an unchanged file changes nothing"
rc=0; ctl reload >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "reload of unchanged file exit $rc"
wait_for 10 'all_running 6' || fail "not 6 RUNNING: $(worker_table)"
same_pids "$t2" "$(worker_table)" || fail "no-op reload touched workers"
ok "no-op reload: same pids"

check "scale persist 1 retires t1/persist/1 and t1/persist/2 gracefully"
last=$(sup_last_id)
p1=$(wfield t1/persist/1 pid); p2=$(wfield t1/persist/2 pid)
rc=0; out=$(ctl scale persist 1 2>&1) || rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "scale persist 1 exit $rc"
wait_for 20 '! pid_alive "$p1" && ! pid_alive "$p2"' || fail "retired workers $p1 $p2 still alive"
wait_for 10 '[ "$(rcli HEXISTS "$SV_NS:workers" t1/persist/1)" = 0 ] && [ "$(rcli HEXISTS "$SV_NS:workers" t1/persist/2)" = 0 ]' \
	|| fail "retired fields still in $SV_NS:workers: $(rcli HKEYS "$SV_NS:workers" | tr '\n' ' ')"
wait_for 10 'all_running 1 persist' || fail "persist pool is not exactly 1 RUNNING worker: $(worker_table)"
wait_for 10 'all_running 4' || fail "expected 4 RUNNING workers after scale: $(worker_table)"
t3=$(worker_table)
same_pids "$t2" "$t3" t1/persist/1 t1/persist/2 || fail "scale touched the remaining workers"
echo "# NS:supervisor entries of the retired workers:"
sup_select "$last" "e.get('worker') in ('t1/persist/1', 't1/persist/2')"
killed=$(sup_select "$last" "e.get('worker') in ('t1/persist/1', 't1/persist/2') and (e.get('signal') == '9' or e.get('to') in ('BACKOFF','FATAL','EXITED'))")
[ -z "$killed" ] || fail "retirement was not graceful: $killed"
for w in t1/persist/1 t1/persist/2; do
	[ -n "$(sup_select "$last" "e.get('worker') == '$w' and e.get('to') == 'STOPPED'")" ] || fail "no to=STOPPED entry for retired $w"
done
ok "scaled to 1 persist worker; retired fields removed; others unchanged"

check "a broken file (syntax error): reload exits 1 with FILE:LINE, nothing changes"
good=$(cat "$CONF")
{ head -n 5 <<<"$good"; echo 'this is = = not libconfig'; tail -n +6 <<<"$good"; } >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
rc=0; out=$(ctl reload 2>&1) || rc=$?
echo "reload -> exit $rc:"; echo "$out"
[ "$rc" -eq 1 ] || fail "reload of a broken file exit $rc, want 1"
grep -qE -- "$CONF:6(:|$)" <<<"$out" || grep -qE -- "$CONF:[0-9]+:" <<<"$out" || fail "reload output has no '$CONF:LINE:' error"
grep -qE -- "$CONF:6:" <<<"$out" || info "note: error not reported on line 6 (the broken line)"
ok "reload exit 1, reports FILE:LINE"

check "a broken file (semantic error: block_ms > interval_ms) reports its line"
write_config persist_count=3 tools_count=3 block_ms=500 claim_idle=1000
line=$(grep -n 'name = "persist"' "$CONF" | cut -d: -f1)
rc=0; out=$(ctl reload 2>&1) || rc=$?
echo "reload -> exit $rc:"; echo "$out"
[ "$rc" -eq 1 ] || fail "reload of a semantically bad file exit $rc, want 1"
grep -qE -- "$CONF:[0-9]+: .*block_ms" <<<"$out" || fail "no '$CONF:LINE: ...block_ms...' error in the reload output"
ok "semantic error reported as FILE:LINE"

check "SIGHUP with a broken file keeps everything running"
{ head -n 5 <<<"$good"; echo 'this is = = not libconfig'; tail -n +6 <<<"$good"; } >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
kill -HUP "$DAEMON_PID"
wait_for 10 'grep -qE -- "$CONF:[0-9]+" "$DLOG"' || info "note: the daemon log does not name $CONF:LINE after SIGHUP"
# give the daemon a moment to (wrongly) act on it, then check nothing moved
sleep 1
pid_alive "$DAEMON_PID" || fail "daemon died on SIGHUP with a broken file"
wait_for 10 'all_running 4' || fail "not 4 RUNNING after broken reloads: $(worker_table)"
[ "$(worker_table)" = "$t3" ] || fail "workers changed after broken reloads: $(worker_table) vs $t3"
rc=0; ctl status >/dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "status exit $rc"
ok "still 4 RUNNING with the same pids (scale kept)"

check "the fixed file reloads again and undoes scale"
printf '%s\n' "$good" >"$CONF"
rc=0; ctl reload || rc=$?
[ "$rc" -eq 0 ] || fail "reload of the fixed file exit $rc"
wait_for 20 'all_running 6' || fail "reload did not restore the config's sizes (6 workers): $(worker_table)"
same_pids "$t3" "$(snapshot_pids)" || fail "reload touched the remaining workers"
ok "6 RUNNING again, the 4 kept pids unchanged"
pass
