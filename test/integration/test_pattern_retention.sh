#!/usr/bin/env bash
# Issue 11, done-when 5: retention deletes an idle, fully acked pattern
# stream, and never one that a registered group of another node has not
# read.  One persistence pool (group persist@t1) reads the literal
# "events" and "codex:run:fixed:events" (which the pattern matches too) and
# the pattern `codex:run:*:events`; retention.keep_ms = 2000 (a pass every
# second), delete_idle_streams = true.  The test plays a second node whose
# group persist@othernode is in the registry NS:patterns:PATTERN:groups.
#  (a) The monitor registers its own group.
#  (b) Two runs r00000, r00001 in their own streams, persisted locally; the
#      other node reads and acks r00000 only: r00000 is deleted within a
#      few periods, r00001 is kept (checked over several periods).
#  (c) Kept whatever the other node does: an entry pending in the local
#      group; a last entry newer than keep_ms; a literal stream.
#  (d) The other node reads and acks r00001: it is deleted (the script
#      cache flushed first: EVALSHA's NOSCRIPT falls back to EVAL).
#  (e) With delete_idle_streams = false (a reload restarts the monitor)
#      nothing is deleted, and the registry is written again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

KEEP_MS=2000
PERIOD_S=1 # retention_period_ms: keep_ms / 2, at least 1 s
REG="$SV_NS:patterns:$PAT:groups"
OTHER=persist@othernode
FIXED='codex:run:fixed:events'
run_stream() { echo "codex:run:$1:events"; }
R0=$(run_stream r00000)
R1=$(run_stream r00001)
PEND=$(run_stream pend)
FRESH=$(run_stream fresh)

# other_node_reads STREAM...: the other node's group reads every entry of
# each stream (created at 0 when missing) and acks it.
other_node_reads() {
	"$PY" - "$SV_TEST_DIR" "$RSOCK" "$OTHER" "$@" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from resp import Redis, RespError
r = Redis(sys.argv[2])
group = sys.argv[3]
for s in sys.argv[4:]:
    rep = r.cmd("XGROUP", "CREATE", s, group, "0")
    if isinstance(rep, RespError) and not str(rep).startswith("BUSYGROUP"):
        sys.exit("XGROUP CREATE %s: %s" % (s, rep))
    while True:
        rep = r.cmd("XREADGROUP", "GROUP", group, "othernode/0", "COUNT", "1000", "STREAMS", s, ">")
        if not rep:
            break
        ids = [e[0] for e in rep[0][1]]
        if not ids:
            break
        r.cmd("XACK", s, group, *ids)
PYEOF
}

# group_done STREAM GROUP: the group has read and acked the whole stream.
group_done() {
	rcli --json XINFO GROUPS "$1" 2>/dev/null |
		pyjson '[g for g in d if g["name"] == "'"$2"'" and g["pending"] == 0 and g["lag"] == 0] != []' |
		grep -qx true
}
exists() { [ "$(rcli EXISTS "$1")" = 1 ]; }

# kept_over SECONDS STREAM...: every stream still exists at each check,
# one a half period, for SECONDS.
kept_over() {
	local t=$1 s i
	shift
	for ((i = 0; i < t * 2; i++)); do
		for s in "$@"; do exists "$s" || fail "$s was deleted (after $((i / 2)) s of $t s)"; done
		sleep 0.5
	done
}

start_redis
pconfig persist_count=1 claim_idle=600000 log_level=debug \
	extra="retention = { keep_ms = $KEEP_MS; trim_acked = true; delete_idle_streams = true; };"
pat_set_streams events "$FIXED" "$PAT"
"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "config rejected: $(cat "$TMPD/t.out")"
start_daemon
wait_for 30 'all_running 1' || fail "the persistence worker is not RUNNING: $(worker_table 2>&1)"

check "(a) the monitor registers its group for the pattern"
wait_for 10 '[ "$(rcli SISMEMBER "$REG" "$GROUP")" = 1 ]' ||
	fail "$GROUP not in $REG: $(rcli SMEMBERS "$REG" | tr '\n' ' ')"
rcli SADD "$REG" "$OTHER" >/dev/null
ok "$REG: $(rcli SMEMBERS "$REG" | sort | tr '\n' ' ')"

check "(b) r00000 read by both nodes is deleted; r00001, not read by the other node, is kept"
$PT gen --sock "$RSOCK" --out "$EVENTS" --runs 2 --items 1 --deltas 2 --stream-fmt "$PFMT" --prefix r --seed 1
$PT gen --sock "$RSOCK" --out "$TMPD/fixed.jsonl" --runs 1 --items 1 --deltas 2 --stream "$FIXED" --prefix f --seed 2
wait_persisted $(scaled 30) "$EVENTS" || fail "runs not persisted"
wait_persisted $(scaled 30) "$TMPD/fixed.jsonl" || fail "the fixed stream's run not persisted"
wait_for 10 'group_done "$R0" "$GROUP" && group_done "$R1" "$GROUP" && group_done "$FIXED" "$GROUP"' ||
	fail "the local group has not acked everything: $(rcli XINFO GROUPS "$R0" | tr '\n' ' ')"
other_node_reads "$R0" "$FIXED" || fail "the other node's reads failed"
t0=$(now_ms)
wait_for $(scaled 15) '! exists "$R0"' || fail "$R0, idle and acked by both registered groups, still exists"
info "$R0 deleted $(($(now_ms) - t0)) ms after the other node acked it"
exists "$R1" || fail "$R1 was deleted: the other node never read it"
kept_over 5 "$R1" "$FIXED"
grep -q 'idle pattern streams deleted' "$DLOG" || fail "no info line counting the deletions"
ok "$R0 deleted; $R1 (not read by $OTHER) and the literal $FIXED kept over 5 retention periods"

check "(c) kept: an entry pending in the local group; a last entry newer than keep_ms"
# Old explicit IDs, so only what is checked keeps the stream.  The
# pending entry is read in the same transaction that creates the stream, so
# the daemon's worker never sees it as new (and claim_idle_ms is long).
rcli <<EOF >/dev/null
MULTI
XADD $PEND 1-1 run pend type response.created seq 1 ts 1 data {}
XGROUP CREATE $PEND $GROUP 0
XREADGROUP GROUP $GROUP tester COUNT 1 STREAMS $PEND >
EXEC
XADD $FRESH $(($(now_ms) + 600000))-0 run fresh type response.created seq 1 ts 1 data {}
EOF
[ "$(rcli XPENDING "$PEND" "$GROUP" | head -n 1)" = 1 ] || fail "no pending entry in $PEND"
wait_for $(scaled 15) 'group_done "$FRESH" "$GROUP"' || fail "$FRESH not acked by the local group"
other_node_reads "$PEND" "$FRESH" || fail "the other node's reads failed"
kept_over 5 "$PEND" "$FRESH" "$R1" "$FIXED"
ok "$PEND (1 pending) and $FRESH (last ID in the future) kept over 5 periods"

check "(d) the other node reads and acks r00001: deleted (after SCRIPT FLUSH: EVALSHA falls back)"
rcli SCRIPT FLUSH >/dev/null
other_node_reads "$R1" || fail "the other node's reads failed"
wait_for $(scaled 15) '! exists "$R1"' || fail "$R1, now acked by both groups, still exists"
evalsha=$(rcli INFO commandstats | grep '^cmdstat_evalsha:' || true)
info "$evalsha"
grep -qE 'failed_calls=[1-9]' <<<"$evalsha" || fail "no EVALSHA met NOSCRIPT after SCRIPT FLUSH: $evalsha"
rcli XACK "$PEND" "$GROUP" 1-1 >/dev/null
wait_for $(scaled 15) '! exists "$PEND"' || fail "$PEND, now acked, still exists"
exists "$FRESH" || fail "$FRESH deleted"
exists "$FIXED" || fail "the literal $FIXED deleted"
ok "$R1 and $PEND deleted once read and acked by every registered group"

check "(e) delete_idle_streams = false: nothing is deleted; the registry is written again"
sed -i 's/delete_idle_streams = true;/delete_idle_streams = false;/' "$CONF"
rcli DEL "$REG" >/dev/null
ctl reload >/dev/null || fail "reload failed"
wait_for 10 '[ "$(rcli SISMEMBER "$REG" "$GROUP")" = 1 ]' || fail "$GROUP not registered again after the reload"
rcli SADD "$REG" "$OTHER" >/dev/null
$PT gen --sock "$RSOCK" --out "$TMPD/off.jsonl" --runs 1 --items 1 --deltas 2 --stream-fmt "$PFMT" --prefix off --seed 3
OFF=$(run_stream off00000)
wait_persisted $(scaled 30) "$TMPD/off.jsonl" || fail "run not persisted"
other_node_reads "$OFF" || fail "the other node's reads failed"
wait_for 10 'group_done "$OFF" "$GROUP"' || fail "$OFF not acked by the local group"
kept_over 5 "$OFF" "$FIXED"
ok "$OFF (idle, acked by both groups) kept with delete_idle_streams = false"

assert_no_fatal
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
