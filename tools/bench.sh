#!/bin/bash
# bench.sh: run svbench (SPEC §10) against a private streamvisord + redis-server.
#
#   tools/bench.sh [--workers N] [--batch B] [--sync full|normal] [--rate R]
#                  [--runs N] [--tcp] [--tools] [--respawn [COUNT]] [--crash [COUNT]] [--rss]
#                  [--perf FILE] [--keep] [--cmdstats]
#                  [--streams-per-run [--stream-fmt FMT] [--read-keys N] [--discover-ms N] [--notify]]
#                  [--new-streams N [--idle-streams N] [--populate N] [--notify]]
#                  [-- SVBENCH ARGS...]
#
# Creates a temp dir, starts redis-server (unix socket, no persistence; TCP
# on a free 127.0.0.1 port with --tcp), writes a configuration with one
# persistence pool (count N, batch B, block_ms 2000, sqlite.synchronous),
# starts streamvisord, waits for `streamvisorctl status` to exit 0, runs
#   svbench (the workload)          by default,
#   svbench respawn --count COUNT   with --respawn,
#   svbench crash --count COUNT     with --crash (default 7): the standard
#                                   workload runs in the background (--runs,
#                                   --rate; default 12000 runs) while
#                                   svbench crash SIGKILLs a
#                                   worker holding entries, COUNT times, and
#                                   times kill -> every held entry acked again,
#   svbench rss                     with --rss (idle: before any load),
#   svbench --new-streams N         with --new-streams (discovery latency),
# prints "workers=N batch=B sync=S {json}" and stops everything.
# --streams-per-run: svbench writes each run to its own stream (FMT, default
# bench:run:{run}:events) and the pool's streams are the pattern FMT with
# {run} -> * (bench:run:*:events) instead of "events"; --read-keys and
# --discover-ms set the pool's read_keys/discover_ms (else the defaults);
# with --notify (below) new streams are found at their first entry instead
# of at the next SCAN pass.
# --new-streams N: the pool reads the pattern as with --streams-per-run and
# svbench creates N new run streams one at a time, 200 ms apart, timing
# XADD -> snapshot of each.  --idle-streams N first writes N matched
# streams with one first event each (once the daemon runs) and waits until
# they are read and idle; before the start, --populate N adds N unrelated
# string keys (DEBUG POPULATE: redis-server
# then runs with --enable-debug-command local), and --notify sets the
# server's notify-keyspace-events to Kt (the operator's choice; the daemon
# never sets it).  --tools adds a tool pool on the same pattern.
# LOG_LEVEL=debug (environment) sets the daemon's log level (default warn;
# with --keep, the log stays in the kept dir).
# --cmdstats prints, after the workload, the server's INFO commandstats of
# the commands the workers and the monitor send (XREADGROUP, XACK, ...) to
# stderr.  --perf FILE records `perf record -g` of the persistence workers
# during the workload.  The build dir is $BUILD, or ../build-bench, ../build next to
# this script.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
workers=1 batch=256 sync=full rate=0 runs=4000 runs_set=0 tcp=0 tools=0 mode=bench count=20 perf_out= keep=0
per_run=0 stream_fmt='bench:run:{run}:events' read_keys= discover_ms=
new_streams=0 idle_streams=0 populate=0 notify=0 cmdstats=0
while [ $# -gt 0 ]; do
	case $1 in
	--workers) workers=$2; shift 2 ;;
	--batch) batch=$2; shift 2 ;;
	--sync) sync=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--runs) runs=$2 runs_set=1; shift 2 ;;
	--tcp) tcp=1; shift ;;
	--tools) tools=1; shift ;;
	--respawn) mode=respawn; if [[ ${2:-} =~ ^[0-9]+$ ]]; then count=$2; shift; fi; shift ;;
	--crash) mode=crash count=7; if [[ ${2:-} =~ ^[0-9]+$ ]]; then count=$2; shift; fi; shift ;;
	--rss) mode=rss; shift ;;
	--perf) perf_out=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--streams-per-run) per_run=1; shift ;;
	--stream-fmt) stream_fmt=$2; shift 2 ;;
	--read-keys) read_keys=$2; shift 2 ;;
	--discover-ms) discover_ms=$2; shift 2 ;;
	--new-streams) mode=newstreams per_run=1 new_streams=$2; shift 2 ;;
	--idle-streams) idle_streams=$2; shift 2 ;;
	--populate) populate=$2; shift 2 ;;
	--notify) notify=1; shift ;;
	--cmdstats) cmdstats=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,47p' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $sync in full|normal) ;; *) echo "bench.sh: --sync full|normal" >&2; exit 2 ;; esac
case $stream_fmt in *'{run}'*) ;; *) echo "bench.sh: --stream-fmt must contain {run}" >&2; exit 2 ;; esac

if [ -z "${BUILD:-}" ]; then
	for d in "$here/../build-bench" "$here/../build"; do
		[ -x "$d/src/streamvisord" ] && { BUILD=$d; break; }
	done
fi
BENCH=bench.sh
. "$(dirname "$0")/bench-lib.sh"
bench_setup svbench

# --- redis
redis_extra=()
[ "$populate" != 0 ] && redis_extra=(--enable-debug-command local)
bench_start_redis "${redis_extra[@]}"
if [ "$populate" != 0 ]; then
	"${rcli[@]}" DEBUG POPULATE "$populate" unrelated >/dev/null
fi
[ "$notify" = 1 ] && "${rcli[@]}" CONFIG SET notify-keyspace-events Kt >/dev/null

# --- streamvisord
tool_pool= tool_def=
if [ "$tools" = 1 ]; then
	tool_streams=
	[ "$per_run" = 1 ] && tool_streams=" streams = [ \"${stream_fmt//\{run\}/*}\" ];${discover_ms:+ discover_ms = $discover_ms;}"
	tool_pool=", { name = \"tools\"; kind = \"tool\"; count = 1;$tool_streams }"
	tool_def='tools = ( { name = "echo"; command = [ "/bin/cat" ]; env = [ "LANG=C" ]; } );'
fi
# the persistence pool's own streams/read_keys/discover_ms (empty: the global "events")
pool_extra=
if [ "$per_run" = 1 ]; then
	pool_extra=" streams = [ \"${stream_fmt//\{run\}/*}\" ];"
	[ -n "$read_keys" ] && pool_extra="$pool_extra read_keys = $read_keys;"
	[ -n "$discover_ms" ] && pool_extra="$pool_extra discover_ms = $discover_ms;"
fi
cat >"$dir/sv.conf" <<EOF
node = "bench";
namespace = "sv";
redis = { url = "$redis_url"; };
sqlite = { path = "$dir/snapshots.db"; synchronous = "$sync"; };
control = { socket = "$dir/ctl.sock"; };
heartbeat = { interval_ms = 2000; timeout_ms = 10000; };
restart = { burst = 63; };
streams = [ "events" ];
pools = (
  { name = "persist"; kind = "persistence"; count = $workers; batch = $batch; block_ms = 2000;$pool_extra }$tool_pool
);
$tool_def
log = { level = "${LOG_LEVEL:-warn}"; };
EOF
bench_start_daemon

# CPU seconds (utime+stime) of a list of pids, from /proc/PID/stat
cpu_of() {
	local t=0 p f
	for p in "$@"; do
		f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}
worker_pids() {
	"$ctl" -s "$dir/ctl.sock" --json status persist |
		python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"] if w.get("pid")))'
}
hz=$(getconf CLK_TCK)
# ms spent runnable but waiting for a CPU (/proc/PID/schedstat): how much
# the rest of the machine took from these processes
wait_of() {
	local t=0 p a b c
	for p in "$@"; do
		read -r a b c <"/proc/$p/schedstat" 2>/dev/null || continue
		t=$((t + b / 1000000))
	done
	echo "$t"
}

setup="workers=$workers batch=$batch sync=$sync"
[ "$tcp" = 1 ] && setup="$setup redis=tcp"
[ "$per_run" = 1 ] && setup="$setup streams=per-run${read_keys:+ read_keys=$read_keys}${discover_ms:+ discover_ms=$discover_ms}"
svbench_extra=()
[ "$per_run" = 1 ] && svbench_extra=(--streams-per-run --stream-fmt "$stream_fmt")
case $mode in
bench)
	[ "$rate" != 0 ] && setup="$setup rate=$rate"
	[ "$notify" = 1 ] && setup="$setup notify=Kt"
	if [ -n "$perf_out" ]; then
		pids=$(worker_pids | tr ' ' ,)
		perf record --call-graph dwarf,16384 -F 499 -o "$perf_out" -p "$pids" >/dev/null 2>"$dir/perf.log" &
		perf_pid=$!
		sleep 0.5
	fi
	wp=$(worker_pids)
	w0=$(cpu_of $wp) r0=$(cpu_of "$redis_pid") q0=$(wait_of $wp)
	out=$("${nice_cmd[@]}" "$svbench" --redis "$redis_url" --sqlite "$dir/snapshots.db" --runs "$runs" --rate "$rate" "${svbench_extra[@]}" "$@")
	w1=$(cpu_of $wp) r1=$(cpu_of "$redis_pid") q1=$(wait_of $wp)
	[ "$(worker_pids)" = "$wp" ] || echo "bench.sh: a worker restarted during the run" >&2
	out="$out $(python3 -c 'import sys,json; w,r,hz=(float(x) for x in sys.argv[1:4]); ev=json.loads(sys.argv[4])["events"]; q=float(sys.argv[5])/1000; print("cpu: workers=%.2fs redis=%.2fs events_per_worker_cpu_s=%.0f workers_runq_wait=%.2fs" % (w/hz, r/hz, ev/(w/hz) if w else 0, q))' $((w1 - w0)) $((r1 - r0)) "$hz" "$out" $((q1 - q0)))"
	;;
respawn)
	# idle: restart.start_ms (1000) passes before each worker is RUNNING again
	out=$("${nice_cmd[@]}" "$svbench" respawn --socket "$dir/ctl.sock" --redis "$redis_url" --namespace sv --count "$count" "$@")
	;;
newstreams)
	setup="$setup new_streams=$new_streams"
	[ "$idle_streams" != 0 ] && setup="$setup idle_streams=$idle_streams"
	[ "$populate" != 0 ] && setup="$setup unrelated_keys=$populate"
	[ "$notify" = 1 ] && setup="$setup notify=Kt"
	[ "$tools" = 1 ] && setup="$setup tools=1"
	if [ "$idle_streams" != 0 ]; then
		# written while the daemon runs, as producers do (with --notify, streams
		# that exist before the start wait for the slow SCAN safety net)
		if [ "$notify" = 1 ]; then
			for _ in $(seq 100); do [ "$("${rcli[@]}" PUBSUB NUMPAT)" -ge 1 ] && break; sleep 0.1; done
		fi
		# one valid first event (response.created, seq 1) per stream, in one script
		t_idle0=$(date +%s%N)
		"${rcli[@]}" EVAL "
	local fmt, n, ts = ARGV[1], tonumber(ARGV[2]), ARGV[3]
	for i = 1, n do
	  local run = string.format('idle-%07d', i)
	  redis.call('XADD', (string.gsub(fmt, '{run}', run)), '*', 'run', run, 'type', 'response.created',
	    'seq', '1', 'ts', ts, 'data', '{\"model\":\"bench-model\"}')
	end
	return n" 0 "$stream_fmt" "$idle_streams" "$(($(date +%s%N) / 1000000))" >/dev/null
	fi
	# every idle stream read (its snapshot there) before the first new one
	if [ "$idle_streams" != 0 ]; then
		for _ in $(seq 600); do
			# their events stored (snapshot rows are checkpoints, written later)
			n=$(sqlite3 -readonly "$dir/snapshots.db" 'SELECT count(DISTINCT run) FROM events' 2>/dev/null || echo 0)
			[ "${n:-0}" -ge "$idle_streams" ] && break
			sleep 0.5
		done
		[ "${n:-0}" -ge "$idle_streams" ] || { echo "bench.sh: only $n of $idle_streams idle streams persisted" >&2; exit 1; }
		t_idle1=$(date +%s%N) idle=0
		# and idle: every worker's heartbeat says "active": 0 (after idle_ms)
		for _ in $(seq 120); do
			if "${rcli[@]}" --json HGETALL sv:workers | python3 -c 'import json,sys; d=json.load(sys.stdin); v=list(d.values()) if isinstance(d,dict) else d[1::2]; sys.exit(0 if v and all(json.loads(x).get("active")==0 for x in v) else 1)'; then
				idle=1
				break
			fi
			sleep 0.5
		done
		[ "$idle" = 1 ] || { echo "bench.sh: the workers' heartbeats never said \"active\": 0" >&2; exit 1; }
		echo "bench.sh: $idle_streams idle streams persisted after $(((t_idle1 - t_idle0) / 1000000)) ms, idle after $((($(date +%s%N) - t_idle0) / 1000000)) ms" >&2
	fi
	out=$("${nice_cmd[@]}" "$svbench" --redis "$redis_url" --sqlite "$dir/snapshots.db" --new-streams "$new_streams" \
		--stream-fmt "$stream_fmt" "$@")
	;;
crash)
	# the load: the standard workload in the background, left unfinished;
	# 12000 runs (~700k events) unless --runs: it must outlast the kills
	[ "$runs_set" = 1 ] || runs=12000
	"${nice_cmd[@]}" "$svbench" --redis "$redis_url" --sqlite "$dir/snapshots.db" --runs "$runs" --rate "$rate" \
		"${svbench_extra[@]}" >"$dir/load.json" 2>"$dir/load.log" &
	load_pid=$!
	out=$("${nice_cmd[@]}" "$svbench" crash --socket "$dir/ctl.sock" --redis "$redis_url" --namespace sv \
		--pool persist --count "$count" "$@") || { kill "$load_pid" 2>/dev/null; exit 1; }
	kill "$load_pid" 2>/dev/null; wait "$load_pid" 2>/dev/null || true
	;;
rss)
	sleep 1 # settle: every worker registered and idle in XREADGROUP
	out=$("${nice_cmd[@]}" "$svbench" rss --socket "$dir/ctl.sock" "$@")
	;;
esac
echo "$setup $out"
if [ "$cmdstats" = 1 ]; then
	"${rcli[@]}" INFO commandstats | tr -d '\r' |
		grep -E '^cmdstat_(xreadgroup|xack|xautoclaim|xgroup|scan|eval|evalsha|client)' >&2 || true
fi
