# shellcheck shell=bash
# Shared helpers for the integration tests.  Source it from a test script:
#
#   #!/usr/bin/env bash
#   set -euo pipefail
#   . "$(dirname "$0")/lib.sh"
#
# Every test gets a private temp dir ($TMPD) holding its redis-server
# (unix socket, no TCP), the config, the control socket, the daemon log and
# the fault directory.  An EXIT/INT/TERM trap kills everything the test
# started (daemon, its process group, any worker left behind, redis) and
# removes the dir (kept when SV_KEEP_TMP=1).
#
# Environment (set by meson): STREAMVISORD STREAMVISORCTL REDIS_SERVER
# REDIS_CLI SV_TEST_DIR SV_SRC_DIR.  Fallbacks point at build-test/ (the
# build of scripts/test.sh) so a test can be run by hand from the repo root.

: "${SV_SRC_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${SV_TEST_DIR:=$SV_SRC_DIR/test/integration}"
: "${STREAMVISORD:=$SV_SRC_DIR/build-test/src/streamvisord}"
: "${STREAMVISORCTL:=$SV_SRC_DIR/build-test/src/streamvisorctl}"
: "${REDIS_SERVER:=$(command -v redis-server)}"
: "${REDIS_CLI:=$(command -v redis-cli)}"

# SV_VALGRIND=1 runs the daemon (and its forked monitor and workers) under
# valgrind memcheck through test/valgrind-streamvisord.sh.  Everything then
# runs ~20x slower, so SV_TIME_SCALE (default 5 under valgrind, else 1)
# multiplies every interval and timeout the tests configure or wait for:
# the behaviour under test is the same, only the clock is slower.
if [ "${SV_VALGRIND:-0}" = 1 ]; then
	export STREAMVISORD_REAL=$STREAMVISORD
	STREAMVISORD=$SV_SRC_DIR/test/valgrind-streamvisord.sh
	: "${SV_TIME_SCALE:=5}"
fi
: "${SV_TIME_SCALE:=1}"

# scaled N: N (ms or s) stretched by SV_TIME_SCALE.
scaled() { echo $(($1 * SV_TIME_SCALE)); }

# The system python starts fast; a pyenv shim costs ~1 s per call.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi

TEST_NAME=$(basename "$0" .sh)
TEST_NAME=${TEST_NAME#test_}

SV_NODE=t1
SV_NS=sv

TMPD=$(mktemp -d /tmp/svit.XXXXXX)
RSOCK=$TMPD/redis.sock
SOCK=$TMPD/ctl.sock
CONF=$TMPD/streamvisor.conf
DLOG=$TMPD/daemon.log
FAULT_DIR=$TMPD/fault
PIDS_SEEN=$TMPD/pids.seen
mkdir -p "$FAULT_DIR"
: >"$PIDS_SEEN"

REDIS_PID=
DAEMON_PID=
_SV_FAILED=0
_SV_SKIPPED=0
_SV_T0=$(date +%s%N)

# ---------------------------------------------------------------- output

log_tail() {
	local f=${1:-$DLOG}
	if [ -s "$f" ]; then
		echo "----- last 60 lines of $f -----"
		tail -n 60 "$f"
		echo "----- end of log -----"
	else
		echo "(log $f is empty or missing)"
	fi
}

check() { echo "# check: $*"; }
ok() { echo "ok - $*"; }
info() { echo "# $*"; }

fail() {
	_SV_FAILED=1
	echo "FAIL [$TEST_NAME]: $*" >&2
	if [ -n "$DAEMON_PID" ] || [ -s "$DLOG" ]; then
		echo "----- status at failure -----" >&2
		ctl status >&2 2>&1 || true
		log_tail >&2
	fi
	exit 1
}

# skip REASON: meson counts exit 77 as SKIP.  The reason goes to stdout,
# which meson keeps in the test log.
skip() {
	_SV_SKIPPED=1
	echo "SKIP [$TEST_NAME]: $*"
	exit 77
}

# require_fault_seams: call at the top of a test that drives the fault
# seams of include/fault.h (FAULT_DIR files, sv.test.* event types).  A
# build without them (a plain `meson setup`) skips the test instead of
# failing it.  The binary itself says whether it has them (`-V`), so the
# answer cannot go stale the way a look at some build dir's config.h could.
require_fault_seams() {
	local bin=${STREAMVISORD_REAL:-$STREAMVISORD} v
	v=$("$bin" -V 2>&1) || fail "$bin -V failed: $v"
	case $v in
	*"fault injection: on"*) return 0 ;;
	*"fault injection: off"*)
		skip "-Dfault_injection=true is off in this build ($bin); this test needs the fault seams" ;;
	*) fail "$bin -V does not say whether fault injection is built in: $v" ;;
	esac
}

pass() {
	local t1
	t1=$(date +%s%N)
	echo "ok - $TEST_NAME passed ($(((t1 - _SV_T0) / 1000000)) ms)"
	exit 0
}

# ---------------------------------------------------------------- cleanup

# Is PID alive (and not a zombie)?
pid_alive() {
	local pid=$1 st
	[ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null || return 1
	[ -r "/proc/$pid/stat" ] || return 1
	st=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Does PID belong to this test (its cmdline mentions our temp dir)?  Guards
# against killing a recycled pid.
_pid_ours() {
	local pid=$1
	pid_alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$TMPD"
}

remember_pid() { [ -n "${1:-}" ] && [ "$1" != null ] && echo "$1" >>"$PIDS_SEEN"; return 0; }

# Pids of processes whose cmdline mentions this test's temp dir (daemon,
# forked workers, helper clients), redis excluded.
test_pids() {
	local p
	for p in $(pgrep -f -- "$TMPD" 2>/dev/null || true); do
		[ "$p" = "$$" ] && continue
		[ -n "$REDIS_PID" ] && [ "$p" = "$REDIS_PID" ] && continue
		grep -q '^redis-server\|redis-server' "/proc/$p/comm" 2>/dev/null && continue
		echo "$p"
	done
}

_sv_cleanup() {
	local rc=$? p pg
	trap - EXIT INT TERM
	set +e
	if [ "$rc" -ne 0 ] && [ "$_SV_FAILED" -eq 0 ] && [ "$_SV_SKIPPED" -eq 0 ]; then
		echo "FAIL [$TEST_NAME]: exited with status $rc (unexpected command failure)" >&2
		log_tail >&2
	fi
	# The daemon: SIGTERM its process group, then SIGKILL.
	if [ -n "$DAEMON_PID" ] && pid_alive "$DAEMON_PID"; then
		pg=$(ps -o pgid= -p "$DAEMON_PID" 2>/dev/null | tr -d ' ')
		kill -TERM "$DAEMON_PID" 2>/dev/null
		for _ in $(seq 1 30); do pid_alive "$DAEMON_PID" || break; sleep 0.1; done
		if [ -n "$pg" ] && [ "$pg" = "$DAEMON_PID" ]; then
			kill -KILL -- "-$pg" 2>/dev/null
		fi
		kill -KILL "$DAEMON_PID" 2>/dev/null
	fi
	# Anything left: processes mentioning our temp dir and the worker pids
	# we saw (checked to still be ours).
	for p in $(test_pids) $(sort -u "$PIDS_SEEN" 2>/dev/null); do
		_pid_ours "$p" && kill -TERM "$p" 2>/dev/null
	done
	sleep 0.2
	for p in $(test_pids) $(sort -u "$PIDS_SEEN" 2>/dev/null); do
		_pid_ours "$p" && kill -KILL "$p" 2>/dev/null
	done
	if [ -n "$REDIS_PID" ]; then
		kill -KILL "$REDIS_PID" 2>/dev/null
	fi
	# Sanitizer builds: any report by the daemon, a worker or a tool
	# (their stderr reaches the daemon log) fails the test.
	if [ -s "$DLOG" ] && grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:|ERROR SUMMARY: [1-9]|==[0-9]+== +at 0x' "$DLOG"; then
		echo "FAIL [$TEST_NAME]: sanitizer report in the daemon log:" >&2
		grep -E -B30 -A12 'ERROR: (Address|Leak)Sanitizer|runtime error:|ERROR SUMMARY: [1-9]|==[0-9]+== +at 0x' "$DLOG" | head -80 >&2
		[ "$rc" -eq 0 ] && rc=1
	fi
	if [ "${SV_KEEP_TMP:-0}" = 1 ]; then
		echo "# kept $TMPD" >&2
	else
		rm -rf "$TMPD"
	fi
	exit "$rc"
}
trap _sv_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- waiting

# wait_for TIMEOUT_S 'shell condition': poll every 100 ms.
wait_for() {
	local timeout=$(($1 * SV_TIME_SCALE)) cond=$2 deadline
	deadline=$(($(date +%s%N) + timeout * 1000000000))
	while :; do
		if eval "$cond"; then return 0; fi
		[ "$(date +%s%N)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------- redis

rcli() { "$REDIS_CLI" -s "$RSOCK" "$@"; }

start_redis() {
	rm -f "$RSOCK"
	"$REDIS_SERVER" --unixsocket "$RSOCK" --unixsocketperm 700 --port 0 \
		--save '' --appendonly no --daemonize no --dir "$TMPD" \
		--logfile "$TMPD/redis.log" "$@" </dev/null &
	REDIS_PID=$!
	disown "$REDIS_PID" 2>/dev/null || true # no "Killed" job notices
	wait_for 15 '[ "$(rcli PING 2>/dev/null)" = PONG ]' || fail "redis-server did not start (see $TMPD/redis.log)"
}

# stop_redis [SIGNAL]: default TERM; KILL simulates a crash.
stop_redis() {
	local sig=${1:-TERM}
	[ -n "$REDIS_PID" ] || return 0
	kill "-$sig" "$REDIS_PID" 2>/dev/null || true
	wait_for 15 '! pid_alive "$REDIS_PID"' || fail "redis-server $REDIS_PID did not stop"
	REDIS_PID=
}

# restart_redis [SIGNAL]: stop, then start again on the same socket path.
restart_redis() { stop_redis "${1:-TERM}"; start_redis; }

# ---------------------------------------------------------------- json

# pyjson 'EXPR' < json: evaluate EXPR with d = the parsed document; strings
# print raw, None prints nothing, other values as JSON.  Fails (status 1) on
# empty or unparsable input, or when EXPR raises.
pyjson() {
	"$PY" -c '
import json, sys
src = sys.stdin.read()
try:
    d = json.loads(src)
except Exception:
    sys.exit(1)
try:
    r = eval(sys.argv[1], {"json": json, "d": d})
except Exception as e:
    sys.stderr.write("pyjson: %r\n" % (e,))
    sys.exit(1)
if r is None:
    pass
elif isinstance(r, str):
    print(r)
elif isinstance(r, bool):
    print("true" if r else "false")
else:
    print(json.dumps(r))
' "$1"
}

# ---------------------------------------------------------------- config

# write_config [key=value ...] [out=PATH]: write the test config.
# Keys: node persist_count tools_count hb_interval hb_timeout block_ms
# claim_idle max_deliveries max_retries start_ms backoff_initial backoff_max
# burst burst_window stop_timeout command_timeout sock_mode log_level
# log_file extra (raw text appended).  Times are multiplied by
# SV_TIME_SCALE.
write_config() {
	local out=$CONF node=$SV_NODE persist_count=2 tools_count=2 hb_interval=200 hb_timeout=1000 \
		block_ms=200 claim_idle=1000 max_deliveries=3 max_retries=5 start_ms=300 \
		backoff_initial=100 backoff_max=1000 burst=10 burst_window=60000 stop_timeout=2000 \
		command_timeout=3000 sock_mode=0600 log_level=debug log_file="" extra="" pools_extra="" kv k
	for kv in "$@"; do
		k=${kv%%=*}
		case $k in
		out | node | persist_count | tools_count | hb_interval | hb_timeout | block_ms | claim_idle | \
			max_deliveries | max_retries | start_ms | backoff_initial | backoff_max | burst | \
			burst_window | stop_timeout | command_timeout | sock_mode | log_level | log_file | extra | pools_extra)
			printf -v "$k" '%s' "${kv#*=}" ;;
		*) fail "write_config: unknown override '$kv'" ;;
		esac
	done
	for k in hb_interval hb_timeout block_ms claim_idle start_ms backoff_initial backoff_max \
		burst_window stop_timeout command_timeout; do
		printf -v "$k" '%s' $((${!k} * SV_TIME_SCALE))
	done
	local logfile_line=""
	[ -n "$log_file" ] && logfile_line="file = \"$log_file\"; "
	cat >"$out.tmp" <<EOF
node = "$node";
namespace = "$SV_NS";
redis = { url = "unix://$RSOCK"; connect_timeout_ms = $((1000 * SV_TIME_SCALE)); command_timeout_ms = $command_timeout; };
sqlite = { path = "$TMPD/snap.db"; };
control = { socket = "$SOCK"; mode = "$sock_mode"; };
heartbeat = { interval_ms = $hb_interval; timeout_ms = $hb_timeout; };
restart = { backoff_initial_ms = $backoff_initial; backoff_max_ms = $backoff_max; start_ms = $start_ms; max_retries = $max_retries; burst = $burst; burst_window_ms = $burst_window; stop_timeout_ms = $stop_timeout; };
streams = [ "events" ];
pools = ( { name = "persist"; kind = "persistence"; count = $persist_count; block_ms = $block_ms; claim_idle_ms = $claim_idle; max_deliveries = $max_deliveries; },
          { name = "tools"; kind = "tool"; count = $tools_count; block_ms = $block_ms; claim_idle_ms = $claim_idle; max_deliveries = $max_deliveries; }$pools_extra );
log = { level = "$log_level"; ${logfile_line}};
$extra
EOF
	mv "$out.tmp" "$out"
}

# ---------------------------------------------------------------- daemon

# start_daemon [extra args]: foreground daemon in the background, in its own
# session/process group, output appended to $DLOG.
start_daemon() {
	[ -f "$CONF" ] || write_config
	echo "=== start_daemon $(date -u +%H:%M:%S.%N) ===" >>"$DLOG"
	SV_FAULT_DIR="$FAULT_DIR" setsid "$STREAMVISORD" -c "$CONF" "$@" </dev/null >>"$DLOG" 2>&1 &
	DAEMON_PID=$!
	remember_pid "$DAEMON_PID"
}

# stop_daemon [TIMEOUT_S]: SIGTERM, wait for exit; sets DAEMON_RC.
DAEMON_RC=
stop_daemon() {
	local t=${1:-20}
	[ -n "$DAEMON_PID" ] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null || true
	wait_daemon_exit "$t" || fail "daemon $DAEMON_PID did not exit within ${t}s of SIGTERM"
}

# wait_daemon_exit TIMEOUT_S: wait for the foreground daemon to exit; sets
# DAEMON_RC and clears DAEMON_PID.
wait_daemon_exit() {
	local t=${1:-20}
	wait_for "$t" '! pid_alive "$DAEMON_PID"' || return 1
	DAEMON_RC=0
	wait "$DAEMON_PID" 2>/dev/null || DAEMON_RC=$?
	DAEMON_PID=
	return 0
}

# ctl ARGS...: streamvisorctl against this test's socket.
ctl() { "$STREAMVISORCTL" -s "$SOCK" "$@"; }

# status_json: the --json status (exit 3 is normal); empty on error.
status_json() {
	local out
	out=$(ctl --json status 2>/dev/null) || true
	printf '%s\n' "$out"
}

# The JSON object of one worker from `status --json` (fails if absent).
worker_json() {
	status_json | pyjson '[w for w in d["workers"] if w["name"] == "'"$1"'"][0]'
}

# wfield NAME FIELD: one field of a worker in `status --json`.
wfield() {
	status_json | pyjson '[w for w in d["workers"] if w["name"] == "'"$1"'"][0]["'"$2"'"]'
}

# Lines "NAME STATE PID INCARNATION" for every worker, sorted by name.
worker_table() {
	status_json | pyjson '"\n".join("%s %s %s %s" % (w["name"], w["state"], w.get("pid"), w.get("incarnation")) for w in sorted(d["workers"], key=lambda w: w["name"]))'
}

# all_running N [POOL]: exactly N workers (of POOL), all RUNNING with a pid
# and registered (incarnation known).
all_running() {
	local n=$1 pool=${2:-}
	status_json | pyjson '(lambda ws: len(ws) == '"$n"' and all(w["state"] == "RUNNING" and (w.get("pid") or 0) > 0 and isinstance(w.get("incarnation"), int) for w in ws))([w for w in d["workers"] if "'"$pool"'" in ("", w["pool"])])' 2>/dev/null | grep -qx true
}

# replaced NAME OLD_PID: NAME is RUNNING and registered under a pid other
# than OLD_PID.
replaced() {
	status_json | pyjson '[w for w in d["workers"] if w["name"] == "'"$1"'"][0]' 2>/dev/null | pyjson 'd["state"] == "RUNNING" and isinstance(d.get("pid"), int) and d["pid"] > 0 and d["pid"] != '"$2"' and isinstance(d.get("incarnation"), int)' 2>/dev/null | grep -qx true
}

# state_is NAME STATE
state_is() { [ "$(wfield "$1" state 2>/dev/null)" = "$2" ]; }

# failed_exit NAME PID: NS:supervisor records PID of NAME ending as a
# failed child (to BACKOFF, EXITED or FATAL): a crash, or a failed start.
failed_exit() {
	[ -n "$(sup_select 0-0 "e.get('worker') == '$1' and str(e.get('pid')) == '$2' and e.get('to') in ('BACKOFF', 'EXITED', 'FATAL')")" ]
}

# Remember every worker pid status shows (for cleanup); prints the table.
snapshot_pids() {
	local tbl
	tbl=$(worker_table)
	awk '{print $3}' <<<"$tbl" | grep -E '^[0-9]+$' >>"$PIDS_SEEN" || true
	printf '%s\n' "$tbl"
}

# ctl_answers: one round of `status`, `status --json` and `metrics`, each
# answered with valid output (status: exit 0, or 3 when some worker is not
# RUNNING; --json: parsable with "ok": true; metrics: exit 0 with the
# workers gauge).  Fails with what went wrong in CTL_ERR; the --json reply
# stays in CTL_JSON.
CTL_JSON= CTL_ERR=
ctl_answers() {
	local rc out
	CTL_ERR=
	rc=0; out=$(ctl status 2>&1) || rc=$?
	{ [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; } && grep -q '^NAME ' <<<"$out" || { CTL_ERR="status exit $rc: $out"; return 1; }
	rc=0; out=$(ctl --json status 2>&1) || rc=$?
	{ [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; } && [ "$(pyjson 'd["ok"] is True and isinstance(d["workers"], list)' <<<"$out" 2>&1)" = true ] \
		|| { CTL_ERR="status --json exit $rc: $out"; return 1; }
	CTL_JSON=$out
	rc=0; out=$(ctl metrics 2>&1) || rc=$?
	[ "$rc" -eq 0 ] && grep -q '^streamvisor_workers{' <<<"$out" || { CTL_ERR="metrics exit $rc: $(head -c 2000 <<<"$out")"; return 1; }
}

# Direct children of the daemon (workers and the monitor), one pid a line.
daemon_children() { ps --ppid "$DAEMON_PID" -o pid= 2>/dev/null | tr -d ' '; }

# monitor_pid: the daemon's child that is no worker in `status --json`
# (fails unless there is exactly one).
monitor_pid() {
	local ws c m=""
	ws=$(status_json | pyjson '" ".join(str(w["pid"]) for w in d["workers"] if w.get("pid"))') || return 1
	for c in $(daemon_children); do
		grep -qw -- "$c" <<<"$ws" && continue
		[ -z "$m" ] || return 1
		m=$c
	done
	[ -n "$m" ] && echo "$m"
}

# started_pids POOL/SLOT: pids that logged "worker started" as that worker.
started_pids() {
	grep -F "proc=$1 pid=" "$DLOG" | grep -F 'msg="worker started' | sed -E 's/.* pid=([0-9]+) .*/\1/' | sort -un
}

# log_count FIXED_STRING [FIXED_STRING2]: daemon log lines holding both.
log_count() { grep -F -- "$1" "$DLOG" | grep -cF -- "${2:-$1}" || true; }

# start_foreign_session: a `sleep` in a Unix session (and process group) of
# its own that streamvisor never started: FOREIGN_PID.  Its argv mentions
# $TMPD, so the exit trap kills it.
FOREIGN_PID=
start_foreign_session() {
	setsid "$BASH" -c 'echo $$ >"$1/foreign.pid"; exec -a "sleep-foreign-$1" sleep 1000' sh "$TMPD" \
		</dev/null >/dev/null 2>&1 &
	disown $! 2>/dev/null || true
	wait_for 10 '[ -s "$TMPD/foreign.pid" ]' || fail "the foreign session did not start"
	FOREIGN_PID=$(cat "$TMPD/foreign.pid")
	wait_for 10 '[ "$(ps -o sid= -p "$FOREIGN_PID" | tr -d " ")" = "$FOREIGN_PID" ] && grep -q sleep "/proc/$FOREIGN_PID/comm"' \
		|| fail "pid $FOREIGN_PID does not lead a session of its own"
}

# ---------------------------------------------------------------- heartbeat hash / supervisor stream

# hb NAME: the raw JSON value of NS:workers NAME (empty if none).
hb() { rcli HGET "$SV_NS:workers" "$1" 2>/dev/null; }

# hbfield NAME FIELD
hbfield() { hb "$1" | pyjson 'd["'"$2"'"]'; }

# beat_fresh NAME MAX_AGE_MS: beat_ms of NAME is within MAX_AGE_MS of now.
beat_fresh() {
	local b t
	t=$(now_ms)
	b=$(hbfield "$1" beat_ms 2>/dev/null) || return 1
	[[ $b =~ ^[0-9]+$ ]] || return 1
	local age=$((t - b)) max=$(($2 * SV_TIME_SCALE))
	[ "$age" -le "$max" ] && [ "$age" -ge -"$max" ]
}

# sup_entries [START_ID]: NS:supervisor entries after START_ID (exclusive),
# one JSON object per line: {"id":..., "worker":..., "from":..., ...}.
sup_entries() {
	local start=${1:-0-0}
	rcli --json XRANGE "$SV_NS:supervisor" "($start" + 2>/dev/null | "$PY" -c '
import json, sys
src = sys.stdin.read().strip()
for e in (json.loads(src) if src else []):
    f = e[1]
    o = {"id": e[0]}
    o.update(dict(zip(f[0::2], f[1::2])))
    print(json.dumps(o))
'
}

# The id of the last NS:supervisor entry ("0-0" if none).
sup_last_id() {
	local id
	id=$(rcli --json XREVRANGE "$SV_NS:supervisor" + - COUNT 1 2>/dev/null | pyjson 'd[0][0] if d else "0-0"' 2>/dev/null) || id=0-0
	echo "${id:-0-0}"
}

# sup_select START_ID 'PYTHON CONDITION on e': matching entries (JSON lines).
sup_select() {
	sup_entries "$1" | "$PY" -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if eval(sys.argv[1], {"e": e}):
        print(line.rstrip())
' "$2"
}
