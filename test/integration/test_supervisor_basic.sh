#!/usr/bin/env bash
# 2 pools x 2 workers: status, the heartbeat registry, the fencing keys, the
# stable --json field names, and a refused second instance.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_redis
write_config persist_count=2 tools_count=2
start_daemon

check "4 workers reach RUNNING"
wait_for 20 'all_running 4' || fail "expected 4 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids
ok "4 workers RUNNING"

check "worker names are NODE/POOL/SLOT"
names=$(status_json | pyjson '" ".join(sorted(w["name"] for w in d["workers"]))')
[ "$names" = "t1/persist/0 t1/persist/1 t1/tools/0 t1/tools/1" ] || fail "names: '$names'"
ok "names: $names"

check "status (table) exits 0 when all workers are RUNNING"
rc=0; out=$(ctl status 2>&1) || rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 0 ] || fail "status exit $rc, want 0"
for n in t1/persist/0 t1/persist/1 t1/tools/0 t1/tools/1; do
	grep -q -- "$n" <<<"$out" || fail "table lacks $n"
done
[ "$(grep -c RUNNING <<<"$out")" -ge 4 ] || fail "table does not show 4 RUNNING"
ok "status table, exit 0"

check "status --json: ok=true and the stable field names"
js=$(ctl --json status) || fail "status --json exit $?"
[ "$(pyjson 'd["ok"]' <<<"$js")" = true ] || fail "ok is not true: $js"
missing=$(pyjson '" ".join(sorted({k for w in d["workers"] for k in ["name","pool","slot","kind","state","pid","incarnation","uptime_ms","beat_age_ms","status","health","processed","failed","restarts","pending","last_exit","last_error"] if k not in w}))' <<<"$js")
[ -z "$missing" ] || fail "status --json workers lack fields: $missing ($js)"
bad=$(pyjson '" ".join(w["name"] for w in d["workers"] if w["pool"] != w["name"].split("/")[1] or str(w["slot"]) != w["name"].split("/")[2] or w["kind"] != {"persist":"persistence","tools":"tool"}[w["pool"]])' <<<"$js")
[ -z "$bad" ] || fail "pool/slot/kind inconsistent for: $bad"
ok "status --json fields present and consistent"

check "NS:workers holds the 4 fields with fresh beats"
keys=$(rcli HKEYS "$SV_NS:workers" | sort | tr '\n' ' ')
[ "$keys" = "t1/persist/0 t1/persist/1 t1/tools/0 t1/tools/1 " ] || fail "NS:workers fields: '$keys'"
for n in t1/persist/0 t1/persist/1 t1/tools/0 t1/tools/1; do
	v=$(hb "$n")
	miss=$(pyjson '" ".join(k for k in ["pid","pool","kind","slot","node","incarnation","started_ms","beat_ms","status","processed","failed","dead_lettered","restarts","current","last_error","redis_rtt_us","tool_pgid"] if k not in d)' <<<"$v") \
		|| fail "NS:workers $n is not JSON: $v"
	[ -z "$miss" ] || fail "NS:workers $n lacks: $miss ($v)"
	[ "$(pyjson 'd["pid"]' <<<"$v")" = "$(wfield "$n" pid)" ] || fail "NS:workers $n pid differs from status: $v"
	[ "$(pyjson 'd["node"]' <<<"$v")" = t1 ] || fail "NS:workers $n node: $v"
	[ "$(pyjson 'd["pool"]' <<<"$v")" = "$(cut -d/ -f2 <<<"$n")" ] || fail "NS:workers $n pool: $v"
	[ "$(pyjson 'd["slot"]' <<<"$v")" = "$(cut -d/ -f3 <<<"$n")" ] || fail "NS:workers $n slot: $v"
	# fresh = within 3 x interval (600 ms) of now; polled, the CI box is noisy
	wait_for 10 "beat_fresh '$n' 600" || fail "beat_ms of $n never within 600 ms of now: $(hb "$n"), now $(now_ms)"
done
ok "NS:workers: 4 fields, all keys, fresh beat_ms"

check "beat_ms is refreshed"
b0=$(hbfield t1/persist/0 beat_ms)
wait_for 10 '[ "$(hbfield t1/persist/0 beat_ms)" -gt "$b0" ]' || fail "beat_ms of t1/persist/0 stuck at $b0"
ok "beat_ms advances ($b0 -> $(hbfield t1/persist/0 beat_ms))"

check "persistence heartbeats carry the time split and cpu_us (svbench), tool ones do not"
for n in t1/persist/0 t1/persist/1; do
	v=$(hb "$n")
	r=$(pyjson '"ok" if sorted(d["split"]) == sorted(k + "_us" for k in ["redis","decode","reduce","insert","commit","ack"]) and all(isinstance(x, int) and x >= 0 for x in d["split"].values()) and isinstance(d["cpu_us"], int) and d["cpu_us"] > 0 else "bad"' <<<"$v") || r=bad
	[ "$r" = ok ] || fail "NS:workers $n: split/cpu_us missing or malformed: $v"
done
for n in t1/tools/0 t1/tools/1; do
	[ "$(pyjson '"split" in d or "cpu_us" in d' <<<"$(hb "$n")")" = false ] || fail "tool heartbeat $n has split/cpu_us"
done
ok "split {redis,decode,reduce,insert,commit,ack}_us and cpu_us in persistence beats"

check "fencing key NS:consumer:NAME = pid:incarnation with a TTL"
for n in t1/persist/0 t1/tools/1; do
	want="$(wfield "$n" pid):$(wfield "$n" incarnation)"
	wait_for 5 '[ "$(rcli GET "$SV_NS:consumer:$n")" = "$want" ]' || fail "$SV_NS:consumer:$n = '$(rcli GET "$SV_NS:consumer:$n")', want '$want'"
	ttl=$(rcli PTTL "$SV_NS:consumer:$n")
	[ "$ttl" -gt 0 ] || fail "$SV_NS:consumer:$n has no TTL (PTTL $ttl)"
	ok "$SV_NS:consumer:$n = $want, PTTL $ttl"
done

check "a second instance on the same config refuses to start"
before=$(worker_table)
sock_ino=$(stat -c %i "$SOCK")
rc=0
SV_FAULT_DIR="$FAULT_DIR" timeout 20 "$STREAMVISORD" -c "$CONF" >"$TMPD/second.log" 2>&1 || rc=$?
echo "second instance exit $rc; output:"; tail -n 5 "$TMPD/second.log"
[ "$rc" -ne 124 ] || fail "second instance still running after 20 s (it did not refuse)"
[ "$rc" -ne 0 ] || fail "second instance exited 0"
[ -s "$TMPD/second.log" ] || fail "second instance printed no message"
pid_alive "$DAEMON_PID" || fail "first daemon died"
[ -S "$SOCK" ] && [ "$(stat -c %i "$SOCK")" = "$sock_ino" ] || fail "control socket was replaced/removed by the second instance"
wait_for 10 'all_running 4' || fail "first instance no longer has 4 RUNNING workers: $(worker_table)"
after=$(worker_table)
[ "$before" = "$after" ] || fail "workers changed after the second instance: before=[$before] after=[$after]"
for p in $(awk '{print $3}' <<<"$after"); do
	[ "$(hbfield "$(awk -v p="$p" '$3==p{print $1}' <<<"$after")" pid)" = "$p" ] || fail "NS:workers pid changed for $p"
done
ok "second instance refused (exit $rc); first keeps its pids and socket"

pass
