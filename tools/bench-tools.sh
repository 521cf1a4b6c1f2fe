#!/bin/bash
# bench-tools.sh: `svbench tools` (issue 13) against a private streamvisord +
# redis-server: tool calls -> tool.output, exec vs persistent mode of the
# SAME handler program.
#
#   tools/bench-tools.sh --tools-mode exec|persistent|both [--handler FILE]
#                        [--workers 2] [--concurrency C] [--calls N] [--tcp]
#                        [--keep] [-- SVBENCH TOOLS ARGS...]
#
# Starts redis-server (unix socket, no persistence; --tcp: 127.0.0.1), a
# daemon whose only pool is a tool pool of --workers (default 2) workers
# reading "events", serving one tool "echo" whose program is --handler
# (default examples/handler.js; .js runs under node, .py under python3;
# exec mode passes "--once", which examples/handler.js understands):
#   exec:        command = [ node, FILE, "--once" ]: one process per call,
#                the arguments on stdin, the output on stdout;
#   persistent:  mode = "persistent", command = [ node, FILE ], concurrency
#                C (default 50) calls in flight per handler.
# Then runs `svbench tools --tool echo --calls N` (default 200 for exec,
# 20000 for persistent) and prints "mode=M workers=W ... {json}" with the
# CPU seconds of the workers + their handlers and of redis-server.
# --tools-mode both: exec then persistent, each in its own daemon, the same
# handler program, SVBENCH ARGS passed to both; then one line
# "ratio persistent/exec calls_per_s=R" (issue 13 asks for >= 100).
# The build dir is $BUILD, or ../build-rel, ../build-bench, ../build next to
# this script.  NICE=-10 as for bench.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tmode= handler=$here/../examples/handler.js workers=2 conc=50 calls= tcp=0 keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--tools-mode) tmode=$2; shift 2 ;;
	--handler) handler=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--concurrency) conc=$2; shift 2 ;;
	--calls) calls=$2; shift 2 ;;
	--tcp) tcp=1; shift ;;
	--keep) keep=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,26p' "$0"; exit 0 ;;
	*) echo "bench-tools.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $tmode in exec|persistent|both) ;; *) echo "bench-tools.sh: --tools-mode exec|persistent|both" >&2; exit 2 ;; esac
if [ "$tmode" = both ]; then
	pass=(--handler "$handler" --workers "$workers" --concurrency "$conc")
	[ "$tcp" = 1 ] && pass+=(--tcp)
	[ "$keep" = 1 ] && pass+=(--keep)
	[ -n "$calls" ] && pass+=(--calls "$calls")
	e=$("$0" --tools-mode exec "${pass[@]}" -- "$@") || { echo "$e"; exit 1; }
	echo "$e"
	p=$("$0" --tools-mode persistent "${pass[@]}" -- "$@") || { echo "$p"; exit 1; }
	echo "$p"
	python3 -c 'import sys,json
def cps(l): return json.loads(l[l.index("{"):l.index("} cpu:")+1])["calls_per_s"]
e,p=cps(sys.argv[1]),cps(sys.argv[2])
print("ratio persistent/exec calls_per_s=%.0f (%.1f / %.1f)" % (p/e if e else 0, p, e))' "$e" "$p"
	exit 0
fi
handler=$(cd "$(dirname "$handler")" && pwd)/$(basename "$handler")
[ -r "$handler" ] || { echo "bench-tools.sh: $handler not readable" >&2; exit 2; }
case $handler in
*.js) interp=$(command -v node) || { echo "bench-tools.sh: no node" >&2; exit 2; } ;;
*.py) interp=$(command -v python3) ;;
*) interp= ;;
esac
[ -n "$calls" ] || { [ "$tmode" = exec ] && calls=200 || calls=20000; }

if [ -z "${BUILD:-}" ]; then
	for d in "$here/../build-rel" "$here/../build-bench" "$here/../build"; do
		[ -x "$d/src/streamvisord" ] && { BUILD=$d; break; }
	done
fi
BENCH=bench-tools.sh
. "$(dirname "$0")/bench-lib.sh"
bench_setup svbench-tools

bench_start_redis

cmd="[ ${interp:+\"$interp\", }\"$handler\""
if [ "$tmode" = exec ]; then
	tool="{ name = \"echo\"; command = $cmd, \"--once\" ]; env = [ \"LANG=C\" ]; timeout_ms = 30000; }"
else
	tool="{ name = \"echo\"; mode = \"persistent\"; concurrency = $conc; command = $cmd ]; env = [ \"LANG=C\" ]; timeout_ms = 30000; }"
fi
cat >"$dir/sv.conf" <<EOC
node = "bench";
namespace = "sv";
redis = { url = "$redis_url"; };
sqlite = { path = "$dir/snapshots.db"; };
control = { socket = "$dir/ctl.sock"; };
heartbeat = { interval_ms = 2000; timeout_ms = 10000; };
restart = { burst = 63; };
streams = [ "events" ];
pools = ( { name = "tools"; kind = "tool"; count = $workers; } );
tools = ( $tool );
log = { level = "warn"; };
EOC
"$svd" -t -c "$dir/sv.conf" >/dev/null || { echo "bench-tools.sh: config rejected" >&2; exit 1; }
bench_start_daemon
# persistent: give the handlers time to say ready (node starts in ~50-100 ms)
sleep 1

# CPU (utime+stime, and of reaped children: cutime+cstime) of a list of pids
cpu_of() {
	local t=0 p f
	for p in "$@"; do
		f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${12} + ${13} + ${14} + ${15}))
	done
	echo "$t"
}
worker_pids() {
	"$ctl" -s "$dir/ctl.sock" --json status tools |
		python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"] if w.get("pid")))'
}
# the workers and every process below them (persistent handlers)
tree_of() {
	local p
	for p in "$@"; do echo "$p"; tree_of $(cat /proc/"$p"/task/*/children 2>/dev/null); done
}
hz=$(getconf CLK_TCK)
wp=$(worker_pids)
tp=$(tree_of $wp | tr '\n' ' ')
w0=$(cpu_of $tp) r0=$(cpu_of "$redis_pid")
rc=0
out=$("${nice_cmd[@]}" "$svbench" tools --redis "$redis_url" --stream events --tool echo --calls "$calls" "$@") || rc=$?
tp2=$(tree_of $wp | tr '\n' ' ')
w1=$(cpu_of $tp2) r1=$(cpu_of "$redis_pid")
[ "$(worker_pids)" = "$wp" ] || echo "bench-tools.sh: a worker restarted during the run" >&2
[ "$tp" = "$tp2" ] || echo "bench-tools.sh: handler processes changed during the run ($tp -> $tp2)" >&2
setup="mode=$tmode handler=$(basename "$handler") workers=$workers"
[ "$tmode" = persistent ] && setup="$setup concurrency=$conc"
[ "$tcp" = 1 ] && setup="$setup redis=tcp"
echo "$setup $out cpu: workers+handlers=$(python3 -c "print('%.2fs' % ($((w1 - w0))/$hz))") redis=$(python3 -c "print('%.2fs' % ($((r1 - r0))/$hz))")"
if [ "$rc" != 0 ]; then
	echo "bench-tools.sh: svbench tools exited $rc; daemon log tail:" >&2
	tail -20 "$dir/streamvisord.log" >&2
fi
exit $rc
