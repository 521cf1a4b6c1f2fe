#!/usr/bin/env bash
# Retention (SPEC §4 step 11) under load: with keep_ms = 2000 the stream
# stays bounded while events flow; a paused pool pins what its group has not
# consumed (never trimmed); after resume everything is persisted exactly and
# nothing is pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"
DB=$TMPD/snap.db
RUNS=$TMPD/runs.txt
KEEP_MS=2000

start_redis
write_config persist_count=1 tools_count=1 log_level=info \
	extra="retention = { keep_ms = $KEEP_MS; trim_acked = true; };"
"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
start_daemon
wait_for 20 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null

# lag/pending of a group (XINFO GROUPS)
ginfo() {
	rcli --json XINFO GROUPS events | pyjson '[g for g in d if g["name"] == "'"$1"'"][0]["'"$2"'"]'
}
drained() { [ "$(ginfo "$1" pending)" = 0 ] && [ "$(ginfo "$1" lag)" = 0 ]; }

check "steady load (~500 events/s for 10 s): XLEN stays bounded"
$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --rate 500 --duration 10 --deltas 5 --prefix a \
	--xlen-file "$TMPD/xlen.txt" || fail "producer failed"
total=$(awk '{s+=$2} END {print s}' "$RUNS")
maxlen=$(awk 'BEGIN {m=0} $3 > m {m=$3} END {print m}' "$TMPD/xlen.txt")
late_max=$(awk 'BEGIN {m=0} $1 >= 5 && $3 > m {m=$3} END {print m}' "$TMPD/xlen.txt")
info "produced $total events; XLEN samples (s produced xlen): $(awk '{printf "%s/%s/%s ", int($1), $2, $3}' "$TMPD/xlen.txt")"
[ "$total" -ge 2000 ] || fail "producer managed only $total events"
# Bound: keep_ms of traffic + one retention period + the consumers' lag +
# approximate trimming (whole stream nodes).  At most 60 % of the total.
[ "$late_max" -lt $((total * 6 / 10)) ] || fail "XLEN reached $late_max in the second half of the load ($total produced): not bounded"
wait_for 30 'drained "persist@t1" && drained tools' || fail "groups not drained: $(rcli XINFO GROUPS events | tr '\n' ' ')"
wait_for 15 '[ "$(rcli XLEN events)" -lt 250 ]' || fail "XLEN $(rcli XLEN events) 15 s after the load, all acked (want < 250)"
ok "XLEN max $maxlen (second half $late_max) of $total produced; $(rcli XLEN events) left after the load"

check "pause tools: what the tools group has not consumed is never trimmed"
ctl pause tools >/dev/null || fail "pause tools exit $?"
wait_for 10 '[ "$(hbfield t1/tools/0 status)" = paused ]' || fail "tools/0 not paused: $(hb t1/tools/0)"
last_before=$(ginfo tools last-delivered-id)
$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --rate 500 --duration 3 --deltas 5 --prefix b \
	--ids-file "$TMPD/paused_ids.txt" || fail "producer failed"
npaused=$(wc -l <"$TMPD/paused_ids.txt")
wait_for 30 'drained "persist@t1"' || fail "persist group not drained: $(rcli XINFO GROUPS events | tr '\n' ' ')"
# 2 x keep_ms after the last entry plus two retention periods.
sleep $((2 * KEEP_MS / 1000 + 2))
[ "$(ginfo tools last-delivered-id)" = "$last_before" ] || fail "paused tools group read entries: last-delivered-id $last_before -> $(ginfo tools last-delivered-id)"
rcli --json XRANGE events - + | pyjson '"\n".join(e[0] for e in d)' >"$TMPD/present.txt"
missing=$(sort "$TMPD/paused_ids.txt" | comm -23 - <(sort "$TMPD/present.txt") | wc -l)
[ "$missing" = 0 ] || fail "$missing of $npaused entries the paused tools group never read were trimmed (e.g. $(sort "$TMPD/paused_ids.txt" | comm -23 - <(sort "$TMPD/present.txt") | head -n 3 | tr '\n' ' '))"
lag=$(ginfo tools lag)
[ "$lag" = "$npaused" ] || fail "tools lag $lag, want $npaused"
len=$(rcli XLEN events)
# Entries before the pin (acked by both groups) are still trimmed.
[ "$len" -lt $((npaused + 250)) ] || fail "XLEN $len with $npaused pinned entries: the acked ones before them were not trimmed"
ok "all $npaused unread entries kept (XLEN $len, tools lag $lag) after $((2 * KEEP_MS / 1000 + 2)) s"

check "pending shows the paused group's lag"
out=$(ctl pending 2>&1) || fail "pending exit $?: $out"
printf '%s\n' "$out" | sed 's/^/#   /'
grep -q "$npaused" <<<"$out" || info "(pending output does not show the lag $npaused literally)"

check "resume: the backlog is consumed, then trimmed; everything persisted, 0 pending"
ctl resume tools >/dev/null || fail "resume tools exit $?"
wait_for 30 'drained tools && drained "persist@t1"' || fail "groups not drained after resume: $(rcli XINFO GROUPS events | tr '\n' ' ')"
wait_for 20 '[ "$(rcli XLEN events)" -lt 250 ]' || fail "XLEN $(rcli XLEN events) after resume, all acked (want < 250)"
$OPS checkdb --db "$DB" --runs-file "$RUNS" --exact || fail "snapshots/events wrong"
[ "$(rcli XLEN events:dead)" = 0 ] || fail "dead letters: $(rcli XLEN events:dead)"
[ "$(ginfo tools pending)" = 0 ] && [ "$(ginfo persist@t1 pending)" = 0 ] || fail "pending not 0"
ok "XLEN $(rcli XLEN events); $(wc -l <"$RUNS") runs persisted exactly; 0 pending"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
