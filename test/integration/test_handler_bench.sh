#!/usr/bin/env bash
# handler_bench (issue 13, done-when 6, smoke): tools/bench-tools.sh
# --tools-mode both with the Node example, small counts: every call of both
# modes gets exactly one output (svbench tools exits 0), and persistent
# mode is at least 10x exec (the README's figure is >= 100x with 200/20,000
# calls on an idle machine; this bound only catches a persistent path that
# degrades to exec speed).  Needs node; the normal build only (a
# sanitizer's cost would be measured).
set -euo pipefail
: "${SV_SRC_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${STREAMVISORD:=$SV_SRC_DIR/build-test/src/streamvisord}"
command -v node >/dev/null 2>&1 || { echo "skip: no node"; exit 77; }
BUILD=$(cd "$(dirname "$STREAMVISORD")/.." && pwd)
export BUILD
[ -x "$BUILD/tools/svbench" ] || { echo "skip: no $BUILD/tools/svbench"; exit 77; }
out=$("$SV_SRC_DIR/tools/bench-tools.sh" --tools-mode exec --calls 40)
echo "$out"
e=$(python3 -c 'import sys,json; l=sys.argv[1]; print(json.loads(l[l.index("{"):l.index("} cpu:")+1])["calls_per_s"])' "$out")
out=$("$SV_SRC_DIR/tools/bench-tools.sh" --tools-mode persistent --calls 4000)
echo "$out"
p=$(python3 -c 'import sys,json; l=sys.argv[1]; print(json.loads(l[l.index("{"):l.index("} cpu:")+1])["calls_per_s"])' "$out")
out=$("$SV_SRC_DIR/tools/bench-tools.sh" --tools-mode persistent --calls 300 -- --window 1)
echo "$out"
p50=$(python3 -c 'import sys,json; l=sys.argv[1]; print(json.loads(l[l.index("{"):l.index("} cpu:")+1])["latency_ms"]["p50"])' "$out")
python3 - "$e" "$p" "$p50" <<'PY'
import sys
e, p, p50 = map(float, sys.argv[1:4])
print("exec %.1f calls/s, persistent %.1f calls/s (%.0fx), persistent p50 one at a time %.2f ms" % (e, p, p / e, p50))
ok = p >= 10 * e and p50 <= 20
if not ok:
    print("FAIL: want persistent >= 10x exec and p50 <= 20 ms")
sys.exit(0 if ok else 1)
PY
