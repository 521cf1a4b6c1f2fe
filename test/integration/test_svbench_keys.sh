#!/usr/bin/env bash
# svbench_keys (issue 14, smoke): tools/bench.sh's workload with a few runs,
# 1 and 2 persistence workers: svbench's JSON carries the keys scripts and
# tools/bench-table.sh read (events/s, XADD -> stored and terminal
# latencies from the events and snapshots tables, the workers' CPU from
# their heartbeats' pids, the time split from their heartbeats), with sane
# values.  No figure is judged.
set -euo pipefail
: "${SV_SRC_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${STREAMVISORD:=$SV_SRC_DIR/build-test/src/streamvisord}"
BUILD=$(cd "$(dirname "$STREAMVISORD")/.." && pwd)
export BUILD
[ -x "$BUILD/tools/svbench" ] || { echo "skip: no $BUILD/tools/svbench"; exit 77; }
for w in 1 2; do
	out=$("$SV_SRC_DIR/tools/bench.sh" --workers "$w" --runs 400 --tcp)
	echo "$out"
	python3 - "$out" "$w" <<'PY'
import json, sys
line, workers = sys.argv[1], int(sys.argv[2])
j, _ = json.JSONDecoder().raw_decode(line[line.index('{'):])
bad = []
def want(cond, what):
    if not cond:
        bad.append(what)
want(j["events"] == 400 * 58, "events")
want(j['events_per_s'] > 0, 'events_per_s')
for k in ('latency_ms', 'terminal_latency_ms'):
    d = j.get(k, {})
    want(all(x in d for x in ('p50', 'p99', 'max', 'samples')), k + ' keys')
    want(d.get('samples', 0) > 0 and 0 < d['p50'] <= d['p99'] <= d['max'], k + ' values')
want(j['latency_ms']['samples'] == 40 * 58, 'one stored-latency sample per event of the sampled runs')
want(j['terminal_latency_ms']['samples'] == 40, 'one terminal sample per sampled run')
want(j.get('workers_measured') == workers, 'workers_measured')
want(j.get('cpu_source') == 'heartbeat_pids', 'cpu_source')
want(j.get('worker_cpu_s', 0) > 0 and j.get('events_per_worker_cpu_s', 0) > 0, 'worker cpu')
keys = ['redis', 'decode', 'reduce', 'insert', 'commit', 'ack']
for k in ('split', 'split_wall', 'split_ms'):
    want(k in j and (j[k] is None or sorted(j[k]) == sorted(keys)), k)
if j.get('split_ms') is not None:
    want(j.get('split_beats_fresh') is True, 'a beat after the end from every worker')
    want(j.get('hb_cpu_s', 0) > 0, 'hb_cpu_s')
want(' cpu: workers=' in line, 'bench.sh cpu suffix')
if bad:
    print('FAIL: ' + ', '.join(bad))
    sys.exit(1)
print('ok: %d worker(s)' % workers)
PY
done
