#!/usr/bin/env bash
# Issue 11, done-when 3: the idle cost of many pattern streams.
#
# A private redis-server holds 1,000,000 unrelated keys (DEBUG POPULATE,
# hence --enable-debug-command local).  The TEST sets
# notify-keyspace-events to Kt (the operator's choice: the daemon never
# changes the server's configuration).  The daemon runs a persistence and
# a tool pool on the pattern codex:run:*:events with a small idle_ms and a
# small retention.keep_ms, heartbeat and block_ms at their defaults; once
# it runs, 10,000 streams codex:run:N:events get one valid first event
# each.
#
# Once every stream is persisted, both groups are at lag 0 with nothing
# pending on every stream and every worker's heartbeat says "active": 0,
# the CPU time (utime+stime, plus that of reaped children) of the daemon's
# processes together (the master and all its descendants, found through
# /proc/PID/task/*/children) and of redis-server is read from
# /proc/PID/stat at the start and the end of a window of at least two
# retention periods: each must be <= 1% of one core.  The figures, per
# process, and Redis's INFO commandstats over the window (top commands) are
# printed.  A window over the budget is measured once more and the second
# one judged: on a shared VM one window can be disturbed by the machine
# (one CI run saw 1.12% where runs give 0.67-0.83%); a regression fails
# both.
#
# Then 50 new streams, one at a time, 200 ms apart, through
# `svbench --new-streams`: each first event must be persisted (bound 10 s
# each, generous: the contract, discover_ms + 100 ms as p99, is measured by
# svbench and reported in the README, not asserted here); p50/p99 printed.
#
# Knobs (for a by-hand run): SV_IDLE_STREAMS (10000), SV_IDLE_KEYS
# (1000000), SV_IDLE_WINDOW_S (window, default 24 s), SV_IDLE_BUDGET_PCT (1).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"
: "${SVBENCH:=$SV_SRC_DIR/build-test/tools/svbench}"

NSTREAMS=${SV_IDLE_STREAMS:-10000}
NKEYS=${SV_IDLE_KEYS:-1000000}
IDLE_MS=1000
KEEP_MS=10000                         # retention period: keep_ms / 2 = 5 s (src/retention.c)
PERIOD_MS=$((KEEP_MS / 2))
WINDOW_S=${SV_IDLE_WINDOW_S:-24}
[ "$((WINDOW_S * 1000))" -ge $((2 * PERIOD_MS)) ] || fail "window ${WINDOW_S}s shorter than two retention periods"
BUDGET_PCT=${SV_IDLE_BUDGET_PCT:-1}
NEW=50
HZ=$(getconf CLK_TCK)

[ -x "$SVBENCH" ] || fail "svbench not found at $SVBENCH (set SVBENCH)"

start_redis --enable-debug-command local

check "$NKEYS unrelated keys; notify-keyspace-events Kt set by the test"
t0=$(now_ms)
rcli DEBUG POPULATE "$NKEYS" unrelated >/dev/null || fail "DEBUG POPULATE failed"
[ "$(rcli DBSIZE)" = "$NKEYS" ] || fail "DBSIZE $(rcli DBSIZE), want $NKEYS"
rcli CONFIG SET notify-keyspace-events Kt >/dev/null
info "keys written in $(($(now_ms) - t0)) ms; notify-keyspace-events $(rcli CONFIG GET notify-keyspace-events | tail -n 1)"

# Heartbeat, block and claim at their defaults (2 s, 2 s, 30 s): the idle
# cost of a production configuration, not of the tests' fast heartbeats.
pat_config persist_count=2 tools_count=2 hb_interval=2000 hb_timeout=10000 block_ms=2000 \
	claim_idle=30000 command_timeout=5000
sed -i -E "s/kind = \"(persistence|tool)\"; /&idle_ms = $(scaled $IDLE_MS); /" "$CONF"
echo "retention = { keep_ms = $KEEP_MS; };" >>"$CONF"
"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "config rejected: $(cat "$TMPD/t.out")"

start_daemon
wait_for 30 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"
snapshot_pids >/dev/null
wait_for 10 'grep -q "keyspace notifications for streams are on" "$DLOG"' ||
	fail "the monitor did not see the server's notifications on"
wait_for 10 '[ "$(rcli PUBSUB NUMPAT)" -ge 1 ]' || fail "the monitor did not subscribe (PUBSUB NUMPAT $(rcli PUBSUB NUMPAT))"

# The run streams are written while the daemon runs, as a producer does
# (streams that exist before the start are found by the SCAN safety net
# only, slow on purpose while notifications are on: ~250 s for 1,000,000
# keys at 4 SCAN calls of COUNT 1000 a second).
check "$NSTREAMS matched streams with one first event each, written in one script"
t0=$(now_ms)
rcli EVAL "
local fmt, n, ts = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for i = 1, n do
  local run = string.format('idle-%06d', i)
  redis.call('XADD', (string.gsub(fmt, '{run}', run)), '*', 'run', run, 'type', 'response.created',
    'seq', '1', 'ts', ts, 'data', '{\"model\":\"m-1\",\"metadata\":{\"run\":\"' .. run .. '\"}}')
end
return n" 0 "$PFMT" "$NSTREAMS" "$(now_ms)" >/dev/null || fail "creating the streams failed"
[ "$(rcli DBSIZE)" -ge $((NKEYS + NSTREAMS)) ] || fail "DBSIZE $(rcli DBSIZE), want at least $((NKEYS + NSTREAMS))"

check "every stream persisted, both groups at lag 0, workers idle"
persisted() { [ -f "$DB" ] && [ "$(sq 'SELECT count(*) FROM snapshots')" = "$NSTREAMS" ]; }
wait_for 300 persisted || { pat_diag; fail "$(sq 'SELECT count(*) FROM snapshots' || echo 0) of $NSTREAMS streams persisted"; }
info "$NSTREAMS snapshots $(($(now_ms) - t0)) ms after the first XADD"
pat_keys >"$TMPD/streams.txt"
[ "$(wc -l <"$TMPD/streams.txt")" = "$NSTREAMS" ] || fail "$(wc -l <"$TMPD/streams.txt") run streams, want $NSTREAMS"
wait_for 120 'pat_groups_ok "$TMPD/streams.txt" >"$TMPD/groups.out"' ||
	{ pat_diag; fail "groups on the run streams: $(cat "$TMPD/groups.out")"; }
cat "$TMPD/groups.out"

# hb_counts: "NAME streams=S active=A" per worker heartbeat.
hb_counts() {
	rcli HGETALL "$SV_NS:workers" | "$PY" -c '
import json, sys
l = sys.stdin.read().split("\n")
for i in range(0, len(l) - 1, 2):
    try:
        d = json.loads(l[i + 1])
    except ValueError:
        continue
    if d.get("status") == "standby":
        print("%s standby" % l[i])
    else:
        print("%s streams=%s active=%s" % (l[i], d.get("streams"), d.get("active")))'
}
# Every reading worker of both pools (the persistence pool's writer and the
# tool workers; the persistence standby reads nothing) reads every stream
# ("streams") and has none in its active read set ("active": 0).
all_inactive() {
	local out
	out=$(hb_counts)
	[ "$(grep -c " streams=$NSTREAMS active=0\$" <<<"$out")" = 3 ] && [ "$(grep -c " standby\$" <<<"$out")" = 1 ]
}
wait_for 60 all_inactive || fail "workers still have active streams: $(hb_counts)"
sleep $(((IDLE_MS + 2000) / 1000 + 1)) # idle_ms passed, one more heartbeat written
all_inactive || fail "workers active again: $(hb_counts)"
info "heartbeats: $(hb_counts | tr '\n' ';')"
ok "$NSTREAMS streams persisted and idle"

# --- the window ------------------------------------------------------------

# Descendants of a pid (recursively, every thread's children file).
descendants() {
	local p=$1 k
	for k in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
		echo "$k"
		descendants "$k"
	done
}
# ticks PID: utime+stime+cutime+cstime of PID (clock ticks); empty if gone.
ticks() {
	local f
	f=$(cut -d')' -f2- "/proc/$1/stat" 2>/dev/null) || return 0
	# shellcheck disable=SC2086 # split the fields
	set -- $f
	echo $((${12} + ${13} + ${14} + ${15}))
}
# what PID: master, the worker's name (status --json) or "monitor" (any
# other child of the master), then its command name.
what() {
	local role
	if [ "$1" = "$DAEMON_PID" ]; then
		role=master
	else
		role=$(grep -m1 "^$1 " "$TMPD/roles.txt" | cut -d' ' -f2)
		[ -n "$role" ] || { [ "$(ps -o ppid= -p "$1" | tr -d ' ')" = "$DAEMON_PID" ] && role=monitor || role=other; }
	fi
	echo "$role ($(cat "/proc/$1/comm" 2>/dev/null))"
}
cmdstats() {
	rcli INFO commandstats | tr -d '\r' | sed -nE 's/^cmdstat_([^:]*):calls=([0-9]+),usec=([0-9]+),.*/\1 \2 \3/p'
}

check "CPU over ${WINDOW_S}s of idleness (>= two retention periods of ${PERIOD_MS} ms): <= ${BUDGET_PCT}% each"
# measure_window: the CPU of the daemon's processes and of redis-server
# over one window of WINDOW_S; sets report, dpct, rpct, wall_ms and over
# (the figures above the budget, empty when none).  (Not indented: the
# heredoc's end marker must start its line.)
measure_window() {
status_json | pyjson '"\n".join("%s %s" % (w["pid"], w["name"]) for w in d["workers"] if w.get("pid"))' >"$TMPD/roles.txt"
dpids0=$(echo "$DAEMON_PID"; descendants "$DAEMON_PID")
for p in $dpids0; do echo "$p $(ticks "$p") $(what "$p")"; done >"$TMPD/cpu0.txt"
r0=$(ticks "$REDIS_PID")
cmdstats >"$TMPD/cmd0.txt"
w0=$(now_ms)
sleep "$WINDOW_S"
w1=$(now_ms)
r1=$(ticks "$REDIS_PID")
cmdstats >"$TMPD/cmd1.txt"
dpids1=$(echo "$DAEMON_PID"; descendants "$DAEMON_PID")
for p in $dpids1; do echo "$p $(ticks "$p") $(what "$p")"; done >"$TMPD/cpu1.txt"
wall_ms=$((w1 - w0))

[ "$(sort <<<"$dpids0")" = "$(sort <<<"$dpids1")" ] ||
	fail "the daemon's processes changed during the window: before [$(echo $dpids0)] after [$(echo $dpids1)]"
report=$("$PY" - "$TMPD/cpu0.txt" "$TMPD/cpu1.txt" "$r0" "$r1" "$HZ" "$wall_ms" "$BUDGET_PCT" \
	"$TMPD/cmd0.txt" "$TMPD/cmd1.txt" <<'PYEOF'
import sys
def load(p):
    out = {}
    for line in open(p):
        f = line.split(None, 2)
        if len(f) >= 2:
            out[f[0]] = (int(f[1]), f[2].strip() if len(f) > 2 else "")
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
r0, r1, hz, wall, budget = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
def pct(ticks):
    return 100.0 * ticks / hz * 1000.0 / wall
dt = 0
for pid in sorted(b, key=int):
    d = b[pid][0] - a.get(pid, (b[pid][0],))[0]
    dt += d
    print("#   pid %-7s %5.2f%% (%3d ticks) %s" % (pid, pct(d), d, b[pid][1]))
rt = r1 - r0
print("#   daemon total %.2f%% (%d ticks), redis-server %.2f%% (%d ticks) over %.1f s, %d ticks/s"
      % (pct(dt), dt, pct(rt), rt, wall / 1000.0, hz))
def cmds(p):
    out = {}
    for line in open(p):
        n, c, u = line.split()
        out[n] = (int(c), int(u))
    return out
c0, c1 = cmds(sys.argv[8]), cmds(sys.argv[9])
rows = []
for n, (c, u) in c1.items():
    pc, pu = c0.get(n, (0, 0))
    if c - pc:
        rows.append((u - pu, c - pc, n))
rows.sort(reverse=True)
print("#   Redis commands over the window (usec, calls):")
for u, c, n in rows[:12]:
    print("#     %-28s %8d usec %7d calls  %.1f calls/s" % (n, u, c, c * 1000.0 / wall))
print("RESULT daemon_pct=%.3f redis_pct=%.3f" % (pct(dt), pct(rt)))
PYEOF
)
echo "$report"
dpct=$(sed -nE 's/^RESULT daemon_pct=([0-9.]+) .*/\1/p' <<<"$report")
rpct=$(sed -nE 's/^RESULT .*redis_pct=([0-9.]+).*/\1/p' <<<"$report")
over=""
awk -v v="$dpct" -v b="$BUDGET_PCT" 'BEGIN { exit !(v <= b) }' || over+=" daemon ${dpct}%"
awk -v v="$rpct" -v b="$BUDGET_PCT" 'BEGIN { exit !(v <= b) }' || over+=" redis-server ${rpct}%"
}
measure_window
if [ -n "$over" ]; then
	# A VM's CPU accounting moves with its neighbours (steal, frequency):
	# one disturbed window is measured again; a real regression fails both.
	info "first window over ${BUDGET_PCT}%:$over; measuring a second window"
	measure_window
fi
[ -z "$over" ] || fail "idle CPU over ${BUDGET_PCT}% of one core:$over (figures above)"
ok "idle CPU: daemon ${dpct}%, redis-server ${rpct}% of one core over ${wall_ms} ms (budget ${BUDGET_PCT}%)"

# --- new streams -----------------------------------------------------------

check "$NEW new streams, one at a time: first event persisted (each within 10 s; p99 reported)"
rc=0
out=$("$SVBENCH" --redis "unix://$RSOCK" --sqlite "$DB" --new-streams "$NEW" --stream-fmt "$PFMT" \
	--prefix new --interval-ms 200 --timeout $(scaled 10)) || rc=$?
echo "# svbench: $out"
[ "$rc" = 0 ] || fail "svbench --new-streams: exit $rc: $out"
[ "$(pyjson 'd["persisted"]' <<<"$out")" = "$NEW" ] || fail "not every new stream persisted: $out"
[ "$(sq "SELECT count(*) FROM snapshots WHERE run LIKE 'new-%'")" = "$NEW" ] || fail "snapshots of the new runs missing"
info "new stream first event persisted: p50 $(pyjson 'd["first_event_ms"]["p50"]' <<<"$out") ms," \
	"p99 $(pyjson 'd["first_event_ms"]["p99"]' <<<"$out") ms, max $(pyjson 'd["first_event_ms"]["max"]' <<<"$out") ms" \
	"(contract: discover_ms 1000 + 100 ms)"
assert_no_fatal
ok "$NEW new streams persisted among $NSTREAMS idle ones and $NKEYS unrelated keys"
pass
