#!/usr/bin/env bash
# Redis down for 5 s (killed, restarted empty on the same socket) with a
# 1000 ms heartbeat timeout: no worker goes HUNG or FATAL, the pids stay,
# and the heartbeats resume once Redis is back.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

INTERVAL=200 TIMEOUT=1000 OUTAGE_S=5
start_redis
write_config persist_count=2 tools_count=2 hb_interval=$INTERVAL hb_timeout=$TIMEOUT
INTERVAL=$(scaled $INTERVAL) TIMEOUT=$(scaled $TIMEOUT)
# The outage must outlast the (stretched) heartbeat timeout.
[ "$OUTAGE_S" -gt $((TIMEOUT / 1000)) ] || OUTAGE_S=$((2 * TIMEOUT / 1000))
start_daemon
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
before=$(snapshot_pids)
for n in t1/persist/0 t1/persist/1 t1/tools/0 t1/tools/1; do
	wait_for 10 "beat_fresh $n 600" || fail "$n has no fresh beat before the outage"
done

# sample: record every status row that differs from the one before the
# outage (another state, pid or incarnation).
BAD=$TMPD/bad-states
: >"$BAD"
sample() {
	local t
	t=$(worker_table 2>/dev/null) || true
	[ -n "$t" ] || { echo "status unavailable at $(now_ms)" >>"$BAD.ctl"; return 0; }
	local at=$(($(now_ms) - t_down))
	grep -vxF -f <(printf '%s\n' "$before") <<<"$t" | sed "s/\$/ (at +$at ms)/" >>"$BAD" || true
	printf '%s\n' "$t" | awk '{print $2}' | sort | uniq -c | tr '\n' ' ' >"$TMPD/last-sample"
}

check "kill Redis for ${OUTAGE_S} s"
log_off=$(stat -c %s "$DLOG")
stop_redis KILL
t_down=$(now_ms)
health_unknown=no
while [ $(($(now_ms) - t_down)) -lt $((OUTAGE_S * 1000)) ]; do
	sample
	if [ "$health_unknown" = no ] && [ "$(status_json | pyjson 'all(w.get("health") == "unknown" for w in d["workers"])' 2>/dev/null)" = true ]; then
		health_unknown="yes, $(($(now_ms) - t_down)) ms into the outage"
	fi
	sleep 0.1
done
pid_alive "$DAEMON_PID" || fail "master died during the Redis outage"
[ ! -s "$BAD" ] || fail "workers changed during the outage (before: $(tr '\n' ';' <<<"$before")): $(awk -F' [(]at ' '!seen[$1]++' "$BAD" | tr '\n' ';')"
[ "$(worker_table)" = "$before" ] || fail "workers changed during the outage: before=[$before] now=[$(worker_table)]"
[ ! -s "$BAD.ctl" ] || fail "status unavailable during the outage ($(wc -l <"$BAD.ctl") times): the master blocked on Redis?"
ok "same 4 pids RUNNING throughout the outage (last sample: $(cat "$TMPD/last-sample"))"
info "health=unknown during the outage: $health_unknown"

check "restart Redis on the same socket (empty)"
start_redis
t_up=$(now_ms)
info "Redis back after $((t_up - t_down)) ms"

check "heartbeats resume: every worker's beat_ms fresh again"
for n in t1/persist/0 t1/persist/1 t1/tools/0 t1/tools/1; do
	wait_for 30 "beat_fresh $n 600" || fail "$n: no fresh beat after Redis returned: $(hb "$n")"
	pid=$(awk -v n="$n" '$1==n{print $3}' <<<"$before")
	[ "$(hbfield "$n" pid)" = "$pid" ] || fail "$n heartbeats from pid $(hbfield "$n" pid), want $pid"
done
info "all beats fresh $(($(now_ms) - t_up)) ms after Redis returned"
ok "heartbeats resumed from the same pids"

check "no HUNG/FATAL after Redis returned (watch timeout_ms + slack)"
end=$(($(now_ms) + TIMEOUT + $(scaled 3000)))
while [ "$(now_ms)" -lt "$end" ]; do sample; sleep 0.1; done
[ ! -s "$BAD" ] || fail "workers changed after the outage (before: $(tr '\n' ';' <<<"$before")): $(awk -F' [(]at ' '!seen[$1]++' "$BAD" | tr '\n' ';')"
after=$(worker_table)
[ "$before" = "$after" ] || fail "workers changed across the outage: before=[$before] after=[$after]"
sup_entries 0-0
bad=$(sup_select 0-0 "e.get('to') in ('HUNG', 'FATAL', 'BACKOFF', 'EXITED')")
[ -z "$bad" ] || fail "NS:supervisor after the outage shows: $bad"
tail -c +$((log_off + 1)) "$DLOG" | grep -wE 'HUNG|FATAL' | head -n 5 >"$TMPD/hung-log" || true
[ ! -s "$TMPD/hung-log" ] || fail "daemon log mentions HUNG/FATAL: $(cat "$TMPD/hung-log")"
rc=0; ctl status >/dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "status exit $rc after the outage"
ok "same 4 pids RUNNING, no HUNG/FATAL in status, NS:supervisor or log"
pass
