#!/usr/bin/env bash
# Issue 10, done-when 2: one tool pool of count = 1000 (the config's
# maximum) under a daemon started with the common soft RLIMIT_NOFILE of
# 1024.  Every worker is RUNNING and heartbeats, each one's start-up line
# reaches the log, SIGKILL of the highest slot is repaired, and the
# workers and their tools get the original soft limit (1024) back while
# the daemon itself runs with its limit raised to the hard one.
#
# Time budget (2-core machine, normal build): ~20-60 s to start and
# register 1000 workers, ~10 s of checks, ~5 s to stop; the meson timeout
# is 300 s and each wait below is generous.  Not for ASan or valgrind
# (suite "nosan", not "supervisor"): 1000 instrumented processes do not
# fit that budget.  Needs a hard RLIMIT_NOFILE >= 4096 (skipped otherwise).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

N=1000 LAST=t1/tools/999
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 4096 ]; then
	echo "SKIP: hard RLIMIT_NOFILE $hard < 4096"
	exit 77
fi

start_redis --maxclients 4000 # before lowering our own soft limit
ulimit -Sn 1024               # the daemon's original soft limit
# Long intervals and generous timeouts: 1000 workers share 2 cores.
write_config persist_count=0 tools_count=$N hb_interval=2000 hb_timeout=30000 block_ms=1000 \
	claim_idle=30000 command_timeout=10000 start_ms=1000 stop_timeout=5000 log_level=info \
	extra="$(tools_block "$(tool_entry nofile 10000 4096 /bin/sh -c 'ulimit -Sn')")"
t0=$(now_ms)
start_daemon

check "all $N workers RUNNING"
wait_for 180 "all_running $N" \
	|| fail "not $N RUNNING after 180 s: $(status_json | pyjson '{s: len([w for w in d["workers"] if w["state"] == s]) for s in set(w["state"] for w in d["workers"])}')"
ok "$N RUNNING after $(($(now_ms) - t0)) ms"

check "$N fresh heartbeat fields whose pids are the rows' pids"
# fresh_beats: prints the fields that are missing, stale or name another pid.
# (The status goes through a file: 1000 rows are too long for argv.)
fresh_beats() {
	status_json >"$TMPD/status.json"
	rcli --json HGETALL "$SV_NS:workers" >"$TMPD/workers.json"
	"$PY" -c '
import json, sys, time
st = json.load(open(sys.argv[1]))
rows = {w["name"]: w.get("pid") for w in st["workers"]}
d = json.loads(open(sys.argv[4]).read() or "{}")
if isinstance(d, list):
    d = dict(zip(d[0::2], d[1::2]))
now = time.time() * 1000
bad = []
for name, pid in sorted(rows.items()):
    try:
        h = json.loads(d[name])
    except Exception:
        bad.append(name + ": no field")
        continue
    if h.get("pid") != pid or abs(now - h.get("beat_ms", 0)) > int(sys.argv[2]):
        bad.append("%s: row pid %s, field %s" % (name, pid, d[name][:120]))
print("\n".join(bad[:10]))
if len(rows) != int(sys.argv[3]) or len(bad):
    print("%d rows, %d bad" % (len(rows), len(bad)))
' "$TMPD/status.json" "$(scaled 10000)" "$N" "$TMPD/workers.json" || echo "cannot check the heartbeats"
}
wait_for 60 '[ "$(rcli HLEN "$SV_NS:workers")" = "$N" ] && [ -z "$(fresh_beats)" ]' \
	|| fail "heartbeats: HLEN $(rcli HLEN "$SV_NS:workers"); $(fresh_beats)"
ok "HLEN $SV_NS:workers = $N, every beat fresh and from the row's pid"

check "each worker's start-up line reached the log"
started() { grep -oE 'proc=tools/[0-9]+ pid=[0-9]+ msg="worker started' "$DLOG" | awk '{print $1}' | sort -u | wc -l; }
wait_for 30 '[ "$(started)" = "$N" ]' || fail "$(started) distinct tools/N start-up lines in the log, want $N"
ok "$N distinct proc=tools/N 'worker started' lines"

# soft_nofile PID: the soft "Max open files" of PID.
soft_nofile() { awk '/^Max open files/ {print $4}' "/proc/$1/limits"; }
hard_nofile() { awk '/^Max open files/ {print $5}' "/proc/$1/limits"; }

check "limits: the daemon raised its own soft limit; $LAST and the monitor got 1024 back"
[ "$(soft_nofile "$DAEMON_PID")" = "$(hard_nofile "$DAEMON_PID")" ] \
	|| fail "daemon soft RLIMIT_NOFILE $(soft_nofile "$DAEMON_PID"), hard $(hard_nofile "$DAEMON_PID"): not raised"
p=$(wfield "$LAST" pid)
[ "$(soft_nofile "$p")" = 1024 ] || fail "$LAST (pid $p) soft RLIMIT_NOFILE $(soft_nofile "$p"), want 1024"
m=$(monitor_pid) || fail "no monitor found"
[ "$(soft_nofile "$m")" = 1024 ] || fail "monitor (pid $m) soft RLIMIT_NOFILE $(soft_nofile "$m"), want 1024"
ok "daemon $(soft_nofile "$DAEMON_PID"); $LAST and monitor 1024"

check "$LAST holds none of the master's fds (a forked worker closes them all, however many)"
# 0-2, its channel, its Redis connection, perhaps the log: a handful.  A
# worker keeping other workers' channel ends would hold ~2000.
nfd=$(ls "/proc/$p/fd" | wc -l)
[ "$nfd" -le 16 ] || fail "$LAST (pid $p) holds $nfd fds: $(ls -l "/proc/$p/fd" | head -n 30)"
ok "$LAST holds $nfd fds"

info "master VmRSS with $N workers: $(awk '/^VmRSS/ {print $2, $3}' "/proc/$DAEMON_PID/status")"

check "a tool sees ulimit -Sn = 1024"
xadd_call L 1 n1 nofile '{}' >/dev/null
expect_output L n1 'd["output"] == "1024\n" and d["exit_code"] == 0'
ok "tool soft limit 1024"

check "SIGKILL $LAST (pid $p): repaired"
kill -KILL "$p"
wait_for 60 'replaced "$LAST" "$p"' || fail "$LAST not replaced: $(worker_json "$LAST" 2>&1)"
p2=$(wfield "$LAST" pid)
wait_for 30 '[ "$(hbfield "$LAST" pid)" = "$p2" ]' || fail "$LAST replacement $p2 does not heartbeat: $(hb "$LAST")"
[ "$(soft_nofile "$p2")" = 1024 ] || fail "replacement $p2 soft RLIMIT_NOFILE $(soft_nofile "$p2"), want 1024"
wait_for 30 "all_running $N" || fail "not $N RUNNING after the repair"
pid_alive "$DAEMON_PID" || fail "the daemon died"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
ok "$LAST: $p -> $p2, RUNNING, heartbeating, soft limit 1024"
pass
