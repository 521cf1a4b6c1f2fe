#!/usr/bin/env bash
# A tool call whose per-run stream is deleted while the tool runs (a
# harness reset): the call's output is not written, so the deleted stream
# is not created again by it; the entry is acked and the done mark set, so
# the call never runs twice.  Streams named literally keep getting their
# outputs as always.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

start_redis
COUNTER=$TMPD/slow.count
: >"$COUNTER"
write_config log_level=info persist_count=1 tools_count=1 \
	extra="$(tools_block "$(tool_entry slow 20000 65536 "$TOOLS_DIR/slow.sh" "$COUNTER")")"
pat_set_streams "events" "$PAT"
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"

S=codex:run:late1:events
check "a slow call in $S; the stream is deleted while the tool runs"
data='{"call_id":"c1","name":"slow","arguments":{"sleep":3}}'
rcli XADD "$S" '*' run late1 type tool.call seq 1 data "$data" >/dev/null
wait_for 20 '[ -s "$COUNTER" ]' || fail "the tool never started: $(worker_table 2>&1)"
rcli DEL "$S" >/dev/null
wait_for 20 '[ "$(rcli HEXISTS "$SV_NS:tooldone:late1" c1)" = 1 ]' || fail "the call never finished (no done mark)"
sleep "$(scaled 1)"
[ "$(rcli EXISTS "$S")" = 0 ] || fail "the late tool.output created $S again: $(rcli XRANGE "$S" - + | head -n 20)"
ok "$S stays deleted; the done mark is set"

check "a literal stream still gets its output"
: >"$COUNTER"
xadd_call L 1 c2 slow '{"sleep":0}' >/dev/null
wait_output 20 L c2 || fail "no tool.output for c2 in events"
ok "events got the output of c2"
[ "$(wc -l <"$COUNTER")" = 1 ] || fail "c2 ran $(wc -l <"$COUNTER") times"
pass
