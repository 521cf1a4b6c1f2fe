#!/usr/bin/env bash
# Issue 12, done-when 4: the per-worker late flag tells the truth.
#   - idle, healthy workers (a persistence and a tool worker, interval
#     2000 ms, block_ms 2000) are never late over 60 s of status samples
#     taken every ~250 ms (they used to flip at beat ages of 3.8-4.0 s);
#   - a SIGSTOPped worker is flagged late within 3 heartbeat intervals,
#     in status (HEALTH late, "late": true) and in the metrics, and is ok
#     again after SIGCONT.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

INTERVAL=$(scaled 2000)
start_redis
write_config persist_count=1 tools_count=1 hb_interval=2000 hb_timeout=12000 block_ms=2000 \
	claim_idle=20000 log_level=info
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
# Past the first beats and reads.
wait_for 10 '[ "$(status_json | pyjson "all(w[\"health\"] == \"ok\" for w in d[\"workers\"])")" = true ]' ||
	fail "workers not ok: $(status_json)"

# sample SECONDS PERIOD_S: status --json every PERIOD_S; prints
# "samples late_samples max_beat_age_ms" and every late sample on stderr.
sample() {
	"$PY" - "$STREAMVISORCTL" "$SOCK" "$1" "$2" <<'EOF'
import json, subprocess, sys, time
ctl, sock, secs, period = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + secs
n = late = 0
max_age = 0
while time.monotonic() < end:
    t0 = time.monotonic()
    out = subprocess.run([ctl, "-s", sock, "--json", "status"], capture_output=True, text=True).stdout
    d = json.loads(out)
    n += 1
    for w in d["workers"]:
        max_age = max(max_age, w.get("beat_age_ms") or 0)
        if w.get("health") != "ok" or w.get("late") is not False:
            late += 1
            print("late sample: %s health=%s late=%s beat_age_ms=%s status=%s" % (
                w["name"], w.get("health"), w.get("late"), w.get("beat_age_ms"), w.get("status")), file=sys.stderr)
    time.sleep(max(0.0, period - (time.monotonic() - t0)))
print(n, late, max_age)
EOF
}

check "idle workers are never late over 60 s (status every 250 ms)"
read -r n late max_age < <(sample "$((60 * SV_TIME_SCALE))" 0.25)
info "$n samples, $late late, largest beat age $max_age ms"
[ "$n" -ge 150 ] || fail "only $n samples in 60 s"
[ "$late" = 0 ] || fail "$late late samples among $n"
ok "$n samples, none late (largest beat age $max_age ms)"

check "a SIGSTOPped worker is late within 3 intervals"
NAME=$SV_NODE/persist/0
pid=$(wfield "$NAME" pid)
kill -STOP "$pid"
t_stop=$(now_ms)
wait_for 15 '[ "$(wfield "$NAME" late)" = true ]' || { kill -CONT "$pid"; fail "never late: $(worker_json "$NAME")"; }
took=$(($(now_ms) - t_stop))
w=$(worker_json "$NAME")
m=$(ctl metrics 2>/dev/null | grep "^streamvisor_worker_late{worker=\"$NAME\"}" || true)
st=$(ctl status 2>/dev/null || true)
kill -CONT "$pid"
info "late $took ms after SIGSTOP: $w"
[ "$took" -le $((3 * INTERVAL)) ] || fail "flagged after $took ms, over 3 intervals ($((3 * INTERVAL)) ms)"
[ "$(pyjson 'd["health"]' <<<"$w")" = late ] || fail "health is not late: $w"
[ "$m" = "streamvisor_worker_late{worker=\"$NAME\"} 1" ] || fail "metrics: '$m'"
grep -E "^$NAME +RUNNING .* late " <<<"$st" >/dev/null || fail "table does not say late: $st"
ok "late after $took ms (<= $((3 * INTERVAL))); HEALTH late, late:true, streamvisor_worker_late 1"

check "after SIGCONT it is ok again, and was never HUNG"
wait_for 10 '[ "$(wfield "$NAME" late)" = false ] && [ "$(wfield "$NAME" health)" = ok ]' ||
	fail "still late after SIGCONT: $(worker_json "$NAME")"
[ "$(wfield "$NAME" pid)" = "$pid" ] || fail "worker replaced: $(worker_json "$NAME")"
m=$(ctl metrics 2>/dev/null | grep "^streamvisor_worker_late{worker=\"$NAME\"}" || true)
[ "$m" = "streamvisor_worker_late{worker=\"$NAME\"} 0" ] || fail "metrics after SIGCONT: '$m'"
! grep -q 'to=HUNG' "$DLOG" || fail "a worker went HUNG: $(grep -m1 'to=HUNG' "$DLOG")"
ok "ok again, same pid"
pass
