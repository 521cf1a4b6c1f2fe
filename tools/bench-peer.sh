#!/bin/bash
# bench-peer.sh: run svbench against the Node.js peer (../shared/peer-node),
# the baseline of SPEC §10.
#
#   tools/bench-peer.sh [--rate R] [--runs N] [--procs N] [--keep] [-- SVBENCH ARGS...]
#
# Installs the peer into $PEER_DIR (default /tmp/peer-node) once, starts a
# private redis-server on a free 127.0.0.1 TCP port (ioredis takes a
# redis:// URL), starts `node peer.js redis://127.0.0.1:PORT events persist
# c1 DB` (one process: its correct configuration; --procs N starts N, which
# the peer's README says is wrong), runs svbench --sqlite DB --pids PEERPIDS
# (the peer's CPU: worker_cpu_s, events_per_worker_cpu_s; it has no
# heartbeat, so no time split) and prints
# "peer procs=1 sync=normal redis=tcp {json}".
#
# Like for like: the peer writes the same snapshots(run, status, event_count)
# columns, handles tool.call, and runs synchronous=NORMAL over TCP, so compare
# it with `tools/bench.sh --sync normal --tcp`.  svbench's criterion (status
# 'completed' and event_count = 58 for every run) is the same for both.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
rate=0 runs=4000 procs=1 keep=0
PEER_DIR=${PEER_DIR:-/tmp/peer-node}
PEER_SRC=${PEER_SRC:-$here/../../shared/peer-node}
[ -d "$PEER_SRC" ] || PEER_SRC=/work/shared/peer-node
while [ $# -gt 0 ]; do
	case $1 in
	--rate) rate=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--procs) procs=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,19p' "$0"; exit 0 ;;
	*) echo "bench-peer.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

if [ -z "${BUILD:-}" ]; then
	for d in "$here/../build-bench" "$here/../build"; do
		[ -x "$d/tools/svbench" ] && { BUILD=$d; break; }
	done
fi
svbench=${BUILD:?no build dir: set BUILD}/tools/svbench
if [ ! -f "$PEER_DIR/node_modules/better-sqlite3/build/Release/better_sqlite3.node" ] ||
   [ ! -d "$PEER_DIR/node_modules/ioredis" ]; then
	"$PEER_SRC/setup.sh" "$PEER_DIR" >&2
fi
cp "$PEER_SRC/peer.js" "$PEER_DIR/peer.js"

# NICE=-10 runs redis, the daemon/peer and svbench at that nice level (on a
# machine shared with other work: the same for both sides of a comparison)
nice_cmd=()
[ -n "${NICE:-}" ] && nice_cmd=(nice -n "$NICE")
dir=$(mktemp -d /tmp/svbench-peer.XXXXXX)
redis_pid= peer_pids=()
cleanup() {
	set +e
	for p in "${peer_pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
	if [ "$keep" = 1 ]; then echo "bench-peer.sh: kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${nice_cmd[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--logfile "$dir/redis.log" &
redis_pid=$!
url="redis://127.0.0.1:$port"
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

for i in $(seq "$procs"); do
	"${nice_cmd[@]}" node "$PEER_DIR/peer.js" "$url" events persist "c$i" "$dir/peer.db" 2>>"$dir/peer.log" &
	peer_pids+=($!)
done
# ready: the consumer group exists (the peer creates it at 0 with MKSTREAM)
for _ in $(seq 200); do
	redis-cli -p "$port" xinfo groups events 2>/dev/null | grep -q persist && break
	sleep 0.05
done
redis-cli -p "$port" xinfo groups events 2>/dev/null | grep -q persist ||
	{ echo "bench-peer.sh: the peer did not start:" >&2; cat "$dir/peer.log" >&2; exit 1; }

setup="peer procs=$procs sync=normal redis=tcp"
[ "$rate" != 0 ] && setup="$setup rate=$rate"
cpu_of() {
	local t=0 p f
	for p in "$@"; do
		f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
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
w0=$(cpu_of "${peer_pids[@]}") r0=$(cpu_of "$redis_pid") q0=$(wait_of "${peer_pids[@]}")
pids_csv=$(IFS=,; echo "${peer_pids[*]}")
out=$("${nice_cmd[@]}" "$svbench" --redis "$url/0" --sqlite "$dir/peer.db" --runs "$runs" --rate "$rate" \
	--pids "$pids_csv" "$@")
w1=$(cpu_of "${peer_pids[@]}") r1=$(cpu_of "$redis_pid") q1=$(wait_of "${peer_pids[@]}")
out="$out $(python3 -c 'import sys,json; w,r,hz=(float(x) for x in sys.argv[1:4]); ev=json.loads(sys.argv[4])["events"]; q=float(sys.argv[5])/1000; print("cpu: workers=%.2fs redis=%.2fs events_per_worker_cpu_s=%.0f workers_runq_wait=%.2fs" % (w/hz, r/hz, ev/(w/hz) if w else 0, q))' $((w1 - w0)) $((r1 - r0)) "$hz" "$out" $((q1 - q0)))"
echo "$setup $out"
