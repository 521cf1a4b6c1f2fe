#!/usr/bin/env bash
# sd_notify protocol against a fake $NOTIFY_SOCKET: READY=1 only once every
# worker has registered (NS:workers complete at that moment), WATCHDOG=1
# every WATCHDOG_USEC/2, STATUS= lines, RELOADING=1 then READY=1 around a
# reload, STOPPING=1 on SIGTERM; and READY=1 after restart.start_ms anyway
# (STATUS says what is missing) when Redis is not there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"
NSOCK=$TMPD/notify.sock
NLOG=$TMPD/notify.jsonl
: >"$NLOG"

# msgs [PYTHON CONDITION on m (the datagram text)]: matching records, one
# JSON line each, in arrival order.
msgs() {
	"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    m = r["msg"]
    if eval(sys.argv[2], {"m": m, "r": r}):
        print(line.rstrip())
' "$NLOG" "${1:-True}"
}
count_msgs() { msgs "$1" | wc -l; }
has_line() { printf '"%s" in m.split("\\n")' "$1"; }

start_notify() {
	$OPS notify "$NSOCK" "$NLOG" --rsock "$RSOCK" --ns "$SV_NS" &
	remember_pid $!
	wait_for 10 '[ -S "$NSOCK" ]' || fail "fake notify socket not created"
}

start_daemon_notified() {
	export NOTIFY_SOCKET=$NSOCK WATCHDOG_USEC=1000000
	start_daemon
	unset NOTIFY_SOCKET WATCHDOG_USEC
}

start_redis
start_notify
write_config persist_count=2 tools_count=2 start_ms=5000 log_level=debug
start_daemon_notified

check "READY=1 arrives once, after every worker registered"
wait_for 30 "[ \$(count_msgs '$(has_line READY=1)') -ge 1 ]" || fail "no READY=1 within 30 s: $(cat "$NLOG")"
wait_for 20 'all_running 4' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
ready=$(msgs "$(has_line READY=1)" | head -n 1)
info "READY datagram: $(pyjson 'd["msg"]' <<<"$ready" | tr '\n' '|')"
[ "$(count_msgs "$(has_line READY=1)")" = 1 ] || fail "more than one READY=1 before any reload: $(cat "$NLOG")"
pyjson 'd["msg"]' <<<"$ready" | grep -q '^STATUS=4/4 workers registered' ||
	fail "READY STATUS does not say 4/4 registered: $(pyjson 'd["msg"]' <<<"$ready")"
js=$(status_json)
# NS:workers read by the listener the moment READY arrived: every worker
# with the pid the daemon runs it under.
bad=$("$PY" -c '
import json, sys
ready = json.loads(sys.argv[1]); st = json.loads(sys.argv[2])
if "workers" not in ready:
    print("listener could not read NS:workers: %s" % ready.get("workers_error")); sys.exit()
hw = {k: json.loads(v) for k, v in ready["workers"].items()}
for w in st["workers"]:
    if w["restarts"] != 0 or w["incarnation"] != 1:
        print("%s restarted since (restarts %s incarnation %s)" % (w["name"], w["restarts"], w["incarnation"])); continue
    h = hw.get(w["name"])
    if h is None:
        print("%s not in NS:workers at READY" % w["name"])
    elif h.get("pid") != w["pid"]:
        print("%s: NS:workers pid %s at READY, daemon pid %s" % (w["name"], h.get("pid"), w["pid"]))
' "$ready" "$js")
[ -z "$bad" ] || fail "at READY: $bad (all 4 had registered: the field was there and was removed again; see the monitor's start-up prune)"
# The master's "registered incarnation" log lines all precede READY.
ready_wall=$(pyjson 'd["wall"]' <<<"$ready")
regs=$(grep 'proc=master' "$DLOG" | grep -c 'registered incarnation' || true)
[ "$regs" -ge 4 ] || fail "expected 4 'registered incarnation' debug lines, got $regs"
late=$(grep 'proc=master' "$DLOG" | grep 'registered incarnation' | "$PY" -c '
import sys, re, datetime
ready = float(sys.argv[1])
for line in sys.stdin:
    m = re.search(r"ts=(\S+)Z", line)
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
    if t > ready + 0.005:
        print("registered %.3f s after READY: %s" % (t - ready, line.strip()))
' "$ready_wall")
[ -z "$late" ] || fail "$late"
ok "READY=1 once; NS:workers complete with the daemon's pids at that moment; $regs registrations logged before it"

check "WATCHDOG=1 about every 500 ms (WATCHDOG_USEC=1000000)"
w0=$(count_msgs "$(has_line WATCHDOG=1)")
sleep 5
stats=$(msgs "$(has_line WATCHDOG=1)" | "$PY" -c '
import json, sys, statistics
t = [json.loads(l)["mono"] for l in sys.stdin]
d = [b - a for a, b in zip(t, t[1:])]
print("%d %.0f %.0f %.0f" % (len(t), statistics.median(d) * 1000 if d else -1, min(d) * 1000 if d else -1, max(d) * 1000 if d else -1))
')
read -r nwd med mn mx <<<"$stats"
info "WATCHDOG=1: $nwd datagrams, interval median ${med} ms (min $mn, max $mx)"
[ "$nwd" -ge 6 ] || fail "only $nwd WATCHDOG=1 datagrams (had $w0 before a 5 s wait)"
[ "$med" -ge 300 ] && [ "$med" -le 800 ] || fail "median WATCHDOG interval $med ms, want 300..800"
ok "watchdog median ${med} ms"

check "STATUS= lines"
wait_for 15 "[ \$(count_msgs '\"workers running\" in m and m.startswith(\"STATUS=\")') -ge 1 ]" ||
	fail "no periodic STATUS= line: $(msgs 'm.startswith("STATUS=")' | head -n 3)"
st=$(msgs 'm.startswith("STATUS=")' | tail -n 1 | pyjson 'd["msg"]')
[[ $st == STATUS=4/4\ workers\ running* ]] || fail "STATUS line: '$st'"
ok "$st"

check "reload: RELOADING=1 then READY=1"
n0=$(wc -l <"$NLOG")
ctl reload >/dev/null || fail "reload exit $?"
wait_for 15 "[ \$(tail -n +$((n0 + 1)) \"\$NLOG\" | grep -c 'READY=1') -ge 1 ]" ||
	fail "no READY=1 after reload: $(tail -n +$((n0 + 1)) "$NLOG")"
seq_after=$(tail -n +$((n0 + 1)) "$NLOG" | "$PY" -c '
import json, sys
out = []
for l in sys.stdin:
    for x in json.loads(l)["msg"].split("\n"):
        if x in ("RELOADING=1", "READY=1", "STOPPING=1"):
            out.append(x)
print(" ".join(out))')
[ "$seq_after" = "RELOADING=1 READY=1" ] || fail "after reload: '$seq_after', want 'RELOADING=1 READY=1'"
ok "reload: $seq_after"

check "SIGTERM: STOPPING=1"
n0=$(wc -l <"$NLOG")
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
sleep 0.2
tail -n +$((n0 + 1)) "$NLOG" | grep -q 'STOPPING=1' || fail "no STOPPING=1 after SIGTERM: $(tail -n +$((n0 + 1)) "$NLOG")"
wd_after=$(tail -n +$((n0 + 1)) "$NLOG" | "$PY" -c '
import json, sys
seen = False; n = 0
for l in sys.stdin:
    m = json.loads(l)["msg"].split("\n")
    if "STOPPING=1" in m: seen = True
    elif seen and "READY=1" in m: n += 1
print(n)')
[ "$wd_after" = 0 ] || fail "READY=1 after STOPPING=1"
ok "STOPPING=1 on SIGTERM, exit 0"

check "Redis absent: READY=1 after restart.start_ms anyway, STATUS names what is missing"
stop_redis
: >"$NLOG"
write_config persist_count=1 tools_count=1 start_ms=2000 log_level=info
t0=$(now_ms)
start_daemon_notified
wait_for 20 "[ \$(count_msgs '$(has_line READY=1)') -ge 1 ]" || fail "no READY=1 within 20 s without Redis: $(cat "$NLOG")"
t1=$(now_ms)
ready=$(msgs "$(has_line READY=1)" | head -n 1 | pyjson 'd["msg"]')
info "READY after $((t1 - t0)) ms: $(tr '\n' '|' <<<"$ready")"
[ $((t1 - t0)) -ge 1800 ] || fail "READY=1 only $((t1 - t0)) ms after start, before start_ms=2000 with no worker registered"
grep -q '^STATUS=0 of 2 workers registered' <<<"$ready" || fail "READY STATUS does not say what is missing: $ready"
start_redis
wait_for 30 'all_running 2' || fail "workers not RUNNING after Redis came: $(worker_table 2>&1)"
snapshot_pids >/dev/null
[ "$(count_msgs "$(has_line READY=1)")" = 1 ] || fail "READY=1 sent twice: $(cat "$NLOG")"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
ok "READY=1 after start_ms with the missing workers named, once"

pass
