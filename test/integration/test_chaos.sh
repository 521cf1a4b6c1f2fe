#!/usr/bin/env bash
# Chaos: tools/chaos drives 60 s of load while it SIGKILLs and SIGSTOPs
# workers, restarts Redis, deletes the stream, fails SQLite commits and
# injects poison entries, then checks every invariant (exactly-once
# persistence, snapshots equal to the reference reducer, one tool.output
# per call, nothing pending, dead letters only for the poison, no orphan
# processes).  Passes iff it exits 0.  Uses the binaries of this build.
set -euo pipefail
: "${SV_SRC_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${STREAMVISORD:=$SV_SRC_DIR/build-test/src/streamvisord}"
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
exec "$PY" "$SV_SRC_DIR/tools/chaos" --seconds 60 --build "$(dirname "$STREAMVISORD")"
