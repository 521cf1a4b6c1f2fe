#!/usr/bin/env bash
# Chaos with persistent handlers (issue 13, done-when 7, short form):
# tools/chaos --handlers drives 60 s of load with a persistent tool
# (examples/handler.py) among the script tools, SIGKILLs handlers as well
# as workers among its usual faults, then checks every invariant (one
# tool.output per call, nothing lost or pending, no orphan handler).  The
# 600 s run of the issue: tools/chaos --seconds 600 --handlers.
set -euo pipefail
: "${SV_SRC_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${STREAMVISORD:=$SV_SRC_DIR/build-test/src/streamvisord}"
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
exec "$PY" "$SV_SRC_DIR/tools/chaos" --seconds 60 --handlers --build "$(dirname "$STREAMVISORD")"
