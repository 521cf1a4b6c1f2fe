#!/bin/bash
# bench-table.sh: the README's performance table (issue 14), regenerated.
#
#   tools/bench-table.sh [--pairs 5] [--runs 4000] [--rate 10000]
#                        [--only throughput|latency|crash] [--crash-cmd CMD]
#                        [--configs TAG,...] [--log FILE] [--from-log FILE]
#
# Runs tools/bench.sh and tools/bench-peer.sh alternately on this machine
# and prints markdown rows with the command beside each figure:
#   throughput: each configuration below, each run followed at once by a
#     peer run (its pair): streamvisor 1 and 2 workers at batch 256 with
#     the default configuration (sync full: the gates), the same at sync
#     normal, 1 worker at batch 64 and 1024; events/s and events per
#     worker-CPU-second are medians over the pairs (range in brackets),
#     "x peer" the median of the paired ratios;
#   latency at --rate events/s offered: streamvisor sync full, the peer,
#     streamvisor sync normal, in turn; p50/p99/max of XADD -> event stored
#     and of terminal XADD -> terminal row committed, medians over the runs;
#   crash recovery (done-when 6): --crash-cmd, default "tools/bench.sh
#     --workers 1 --batch 1024 --tcp --crash 7" (svbench crash: SIGKILL of
#     a worker holding entries under load -> every held entry acked again),
#     once a round; medians over the runs of its p50/p99/max.
# --configs limits the throughput configurations to those tags (t1w, t2w,
# t1wn, t2wn, t1w64, t1w1024), e.g. 5 pairs of the gates and 3 of the rest
# in two runs (--log FILE --from-log FILE renders each).
# --pairs N rounds (default 5; --pairs 1 --runs 200 is a quick check of the
# plumbing, not a figure).  Every raw output line goes to the log (default
# a file under /tmp, named on stderr); --from-log FILE prints the table of
# an earlier log without running anything.  BUILD, NICE, PEER_DIR are
# passed to both scripts (a release build: `meson setup /tmp/rel
# --buildtype=release -Dtests=false`, then BUILD=/tmp/rel).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pairs=5 runs=4000 rate=10000 only= log= from_log= configs=
crash_cmd="tools/bench.sh --workers 1 --batch 1024 --tcp --crash 7"
while [ $# -gt 0 ]; do
	case $1 in
	--pairs) pairs=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--from-log) from_log=$2; shift 2 ;;
	--configs) configs=",$2,"; shift 2 ;;
	--crash-cmd) crash_cmd=$2; shift 2 ;;
	-h|--help) sed -n '2,32p' "$0"; exit 0 ;;
	*) echo "bench-table.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $only in ''|throughput|latency|crash) ;; *) echo "bench-table.sh: --only throughput|latency|crash" >&2; exit 2 ;; esac
[[ $pairs =~ ^[1-9][0-9]*$ ]] || { echo "bench-table.sh: --pairs N (>= 1)" >&2; exit 2; }

# TAG|label|script and arguments (as shown in the table, from the repo root)
throughput=(
	"t1w|streamvisor, 1 worker, batch 256, default configuration (sync full)|tools/bench.sh --workers 1 --tcp"
	"t2w|streamvisor, 2 workers, batch 256, default configuration (sync full)|tools/bench.sh --workers 2 --tcp"
	"t1wn|streamvisor, 1 worker, batch 256, sync normal|tools/bench.sh --workers 1 --sync normal --tcp"
	"t2wn|streamvisor, 2 workers, batch 256, sync normal|tools/bench.sh --workers 2 --sync normal --tcp"
	"t1w64|streamvisor, 1 worker, batch 64, sync full|tools/bench.sh --workers 1 --batch 64 --tcp"
	"t1w1024|streamvisor, 1 worker, batch 1024, sync full|tools/bench.sh --workers 1 --batch 1024 --tcp"
)
peer_cmd="tools/bench-peer.sh"
latency=(
	"lfull|streamvisor, sync full (default)|tools/bench.sh --workers 1 --tcp --rate $rate"
	"lpeer|Node.js peer|tools/bench-peer.sh --rate $rate"
	"lnormal|streamvisor, sync normal|tools/bench.sh --workers 1 --sync normal --tcp --rate $rate"
)
# both scripts run from the repository root: an absolute build dir
if [ -n "${BUILD:-}" ]; then BUILD=$(cd "$BUILD" && pwd); export BUILD; fi
crash=("rcrash|crash recovery: SIGKILL of a worker holding entries under load -> held entries stored and acked again|$crash_cmd")
runs_arg=()
[ "$runs" != 4000 ] && runs_arg=(--runs "$runs")

# one run: TAG PAIR COMMAND...; appends "TAG<TAB>PAIR<TAB>COMMAND<TAB>OUTPUT" to the log
run_one() {
	local tag=$1 pair=$2; shift 2
	local out rc=0
	echo "bench-table.sh: [$tag $pair/$pairs] $*" >&2
	out=$(cd "$here/.." && "$@" "${runs_arg[@]}" 2>>"$log.stderr" | tail -n 1) || rc=$?
	[ "$rc" = 0 ] || out="FAILED exit $rc: $out"
	printf '%s\t%s\t%s\t%s\n' "$tag" "$pair" "$*${runs_arg[*]:+ ${runs_arg[*]}}" "$out" >>"$log"
}

if [ -z "$from_log" ]; then
	[ -n "$log" ] || log=$(mktemp /tmp/bench-table.XXXXXX.log)
	: >"$log"
	echo "bench-table.sh: raw results in $log (stderr of the runs in $log.stderr)" >&2
	for p in $(seq "$pairs"); do
		if [ -z "$only" ] || [ "$only" = throughput ]; then
			for c in "${throughput[@]}"; do
				IFS='|' read -r tag _ cmd <<<"$c"
				[ -z "$configs" ] || [[ $configs == *",$tag,"* ]] || continue
				# shellcheck disable=SC2086 # the command's words
				run_one "$tag" "$p" $cmd
				# shellcheck disable=SC2086
				run_one "peer:$tag" "$p" $peer_cmd
			done
		fi
		if [ -z "$only" ] || [ "$only" = crash ]; then
			IFS='|' read -r tag _ cmd <<<"${crash[0]}"
			# shellcheck disable=SC2086
			run_one "$tag" "$p" $cmd
		fi
		if [ -z "$only" ] || [ "$only" = latency ]; then
			for c in "${latency[@]}"; do
				IFS='|' read -r tag _ cmd <<<"$c"
				# shellcheck disable=SC2086
				run_one "$tag" "$p" $cmd
			done
		fi
	done
	from_log=$log
fi

# The table, from the log.
labels=$(for c in "${throughput[@]}" "${latency[@]}" "${crash[@]}"; do echo "$c"; done)
python3 - "$from_log" "$labels" "$peer_cmd" <<'EOF'
import json, statistics, sys

log, labels, peer_cmd = sys.argv[1], sys.argv[2], sys.argv[3]
label, order = {}, []
for l in labels.splitlines():
    tag, lab, cmd = l.split('|', 2)
    label[tag] = lab
    order.append(tag)

runs = {}   # tag -> list of (pair, command, result dict)
failed = []
for line in open(log):
    line = line.rstrip('\n')
    if not line:
        continue
    tag, pair, cmd, out = line.split('\t', 3)
    i = out.find('{')
    if out.startswith('FAILED') or i < 0:
        failed.append((tag, pair, cmd, out))
        continue
    try:
        j, _ = json.JSONDecoder().raw_decode(out[i:])
    except ValueError:
        failed.append((tag, pair, cmd, out))
        continue
    runs.setdefault(tag, []).append((pair, cmd, j))

def med(v):
    return statistics.median(v) if v else None

def k(x):
    return '%.1fk' % (x / 1000) if x is not None else 'n/a'

def rng(v, f):
    v = [x for x in v if x is not None]
    if not v:
        return 'n/a'
    s = '**%s**' % f(med(v))
    if len(v) > 1:
        s += ' (%s–%s)' % (f(min(v)), f(max(v)))
    return s

def ms(x):
    return 'n/a' if x is None else ('%.2f ms' % x if x < 10 else '%.1f ms' % x)

def ratio(x):
    return '%.2f×' % x if x is not None else 'n/a'

def cmd_of(tag):
    r = runs.get(tag)
    return r[0][1] if r else '?'

def split_of(rs):
    sp = [j.get('split_wall') for _, _, j in rs if j.get('split_wall')]
    if not sp:
        return 'n/a'
    keys = ['redis', 'decode', 'reduce', 'insert', 'commit', 'ack']
    return ' / '.join('%.0f%%' % (100 * med([s.get(x, 0) for s in sp])) for x in keys)

def cpu_eff(rs):
    return [j.get('events_per_worker_cpu_s') for _, _, j in rs]

tput = [t for t in order if t.startswith('t') and t in runs]
meds = {}
if tput:
    print('| setup | command | events/s | × peer (paired) | events/worker-CPU-s | worker time, share of the run wall time: redis / decode / reduce / insert / commit / ack |')
    print('|---|---|---|---|---|---|')
    allpeer = []
    for t in tput:
        rs = runs[t]
        ev = [j['events_per_s'] for _, _, j in rs]
        meds[t] = med(ev)
        peers = {p: j for p, _, j in runs.get('peer:' + t, [])}
        allpeer += runs.get('peer:' + t, [])
        ratios = [j['events_per_s'] / peers[p]['events_per_s'] for p, _, j in rs
                  if p in peers and peers[p]['events_per_s']]
        print('| %s | `%s` | %s | %s | %s | %s |' % (label[t], cmd_of(t), rng(ev, k), rng(ratios, ratio),
                                                    rng(cpu_eff(rs), k), split_of(rs)))
    if allpeer:
        pev = [j['events_per_s'] for _, _, j in allpeer]
        pcmd = allpeer[0][1]
        print('| Node.js peer, 1 process (its correct configuration; its run right after each of the above) | `%s` | %s | — | %s | n/a |'
              % (pcmd, rng(pev, k), rng(cpu_eff(allpeer), k)))
    print()
    n = len(runs.get('t1w', []))
    def gate(name, ok):
        print('- %s: %s' % (name, 'n/a' if ok is None else ('**met**' if ok else '**not met**')))
    def pr(t):
        peers = {p: j for p, _, j in runs.get('peer:' + t, [])}
        v = [j['events_per_s'] / peers[p]['events_per_s'] for p, _, j in runs.get(t, []) if p in peers]
        return med(v)
    print('Gates (medians of %d pairs):' % n)
    for a, b, s in (('t1w', 't2w', 'default configuration, sync full'), ('t1wn', 't2wn', 'sync normal (the peer\'s own setting)')):
        r1, r2 = pr(a), pr(b)
        if r1 is not None:
            gate('1 worker ≥ 2.0× the peer, %s (%s)' % (s, ratio(r1)), r1 >= 2.0)
        if r2 is not None:
            gate('2 workers ≥ 2.0× the peer, %s (%s)' % (s, ratio(r2)), r2 >= 2.0)
    for a, b, s in (('t2w', 't1w', 'sync full'), ('t2wn', 't1wn', 'sync normal')):
        if meds.get(a) and meds.get(b):
            q = meds[a] / meds[b]
            gate('2 workers ≥ 1 worker, %s (%s)' % (s, ratio(q)), q >= 1.0)
    print()

lat = [t for t in order if t.startswith('l') and t in runs]
if lat:
    print('| latency at the offered rate | command | stored p50 | stored p99 | stored max | terminal p50 | terminal p99 | terminal max |')
    print('|---|---|---|---|---|---|---|---|')
    for t in lat:
        rs = runs[t]
        def col(key, p):
            return [j.get(key, {}).get(p) for _, _, j in rs]
        print('| %s | `%s` | %s | %s | %s | %s | %s | %s |' % (
            label[t], cmd_of(t), rng(col('latency_ms', 'p50'), ms), rng(col('latency_ms', 'p99'), ms),
            rng(col('latency_ms', 'max'), ms), rng(col('terminal_latency_ms', 'p50'), ms),
            rng(col('terminal_latency_ms', 'p99'), ms), rng(col('terminal_latency_ms', 'max'), ms)))
    print()
    print('"stored": XADD → the event\'s row committed in `events`; "terminal": the run\'s terminal XADD → its '
          '`snapshots` row terminal with every event (svbench, sampled runs).  Gate: p99 of both ≤ 20 ms in both sync modes:')
    for t in ('lfull', 'lnormal'):
        if t in runs:
            p1 = med([j['latency_ms']['p99'] for _, _, j in runs[t]])
            p2 = med([j.get('terminal_latency_ms', {}).get('p99', 1e9) for _, _, j in runs[t]])
            print('- %s: stored p99 %s, terminal p99 %s: %s' % (label[t], ms(p1), ms(p2),
                  '**met**' if p1 <= 20 and p2 <= 20 else '**not met**'))
    print()
rec = [t for t in order if t.startswith('r') and t in runs]
if rec:
    print('| other targets | command | p50 | p99 | max | fork p50 | entries held (mean) |')
    print('|---|---|---|---|---|---|---|')
    for t in rec:
        rs = runs[t]
        def col(key, p):
            return [j.get(key, {}).get(p) for _, _, j in rs]
        print('| %s | `%s` | %s | %s | %s | %s | %s |' % (
            label[t], cmd_of(t), rng(col('recovered_ms', 'p50'), ms), rng(col('recovered_ms', 'p99'), ms),
            rng(col('recovered_ms', 'max'), ms), rng(col('fork_ms', 'p50'), ms),
            rng([j.get('held_mean') for _, _, j in rs], lambda x: '%.0f' % x)))
    p50 = med([j['recovered_ms']['p50'] for _, _, j in runs[rec[0]] if 'recovered_ms' in j])
    if p50 is not None:
        print()
        print('- crash recovery p50 ≤ 20 ms: %s (%s)' % ('**met**' if p50 <= 20 else '**not met**', ms(p50)))
    print()
if failed:
    print('Failed runs (left out):', file=sys.stderr)
    for f in failed:
        print('  %s pair %s: %s: %s' % f, file=sys.stderr)
    sys.exit(1)
EOF
