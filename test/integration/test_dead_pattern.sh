#!/usr/bin/env bash
# Issue 12: dead letters of pattern streams (issue 11).  A bad entry in a
# run stream read by both pools is one dead letter in RUN_STREAM:dead
# (its groups listed); `dead list` without STREAM covers it (the monitor
# knows the pattern streams), `dead list RUN_STREAM` and `dead show` find
# it, and `dead retry all` re-drives it once into its run stream.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

start_redis
pat_config persist_count=1 tools_count=1
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

S=codex:run:r1:events
check "a bad entry in $S: one dead letter in $S:dead"
rcli XADD "$S" '*' run r1 type response.created seq 1 data '{}' >/dev/null
ORIG=$(rcli XADD "$S" '*' run r1 seq 2 data '{}')
wait_for 30 '[ "$(rcli XLEN "$S:dead")" -ge 1 ] && [ "$(rcli --json XINFO GROUPS "$S" | pyjson "len(d) == 2 and all(x[\"pending\"] == 0 and x[\"lag\"] == 0 for x in d)")" = true ]' ||
	fail "not dead-lettered: $(rcli XLEN "$S:dead") letters; groups $(rcli --json XINFO GROUPS "$S")"
sleep 1
[ "$(rcli XLEN "$S:dead")" = 1 ] || fail "$(rcli XLEN "$S:dead") dead letters, want 1"
ok "one dead letter"

check "dead list without STREAM covers it; with the run stream too"
ctl -t 20 --json dead list >"$TMPD/dl.json" || fail "dead list: $(cat "$TMPD/dl.json")"
[ "$(pyjson '[e["stream"] for e in d["entries"]]' <"$TMPD/dl.json")" = "[\"$S\"]" ] || fail "dead list: $(cat "$TMPD/dl.json")"
# (The tool group acks an event that is not a tool.call: only the
# persistence group refuses it.)
[ "$(pyjson 'd["entries"][0]["groups"]' <"$TMPD/dl.json")" = "[\"$GROUP\"]" ] || fail "groups: $(cat "$TMPD/dl.json")"
[ "$(pyjson 'd["entries"][0]["origin_id"]' <"$TMPD/dl.json")" = "$ORIG" ] || fail "origin: $(cat "$TMPD/dl.json")"
DID=$(pyjson 'd["entries"][0]["id"]' <"$TMPD/dl.json")
for s in "$S" "$S:dead"; do
	[ "$(ctl -t 20 --json dead list "$s" 5 | pyjson 'len(d["entries"])')" = 1 ] || fail "dead list $s"
done
out=$(ctl -t 20 dead list codex:nothing 5 2>&1) && fail "dead list of a stream no pool reads: $out"
ctl -t 20 dead show "$DID" >"$TMPD/show.txt" || fail "dead show: $(cat "$TMPD/show.txt")"
grep -q "missing type" "$TMPD/show.txt" || fail "dead show: $(cat "$TMPD/show.txt")"
ok "listed, shown"

check "dead retry all: one copy into $S, dead again as one letter"
out=$(ctl -t 20 dead retry all) || fail "dead retry all: $out"
grep -qF "into $S" <<<"$out" || fail "dead retry: $out"
[ "$(rcli XLEN "$S")" = 3 ] || fail "$S holds $(rcli XLEN "$S") entries, want 3"
wait_for 30 '[ "$(rcli XLEN "$S:dead")" = 1 ] && [ "$(rcli XRANGE "$S:dead" - + | head -n 1)" != "$DID" ]' || fail "not dead again"
sleep 1
[ "$(rcli XLEN "$S:dead")" = 1 ] || fail "$(rcli XLEN "$S:dead") dead letters"
[ "$(ctl -t 20 --json dead list | pyjson 'd["entries"][0]["origin_id"]')" = "$ORIG" ] || fail "origin changed"
ok "one copy, one dead letter, origin $ORIG"

check "dead purge empties it and its index"
ctl -t 20 dead purge >/dev/null || fail "dead purge"
[ "$(rcli XLEN "$S:dead")" = 0 ] || fail "$(rcli XLEN "$S:dead") left"
[ "$(rcli EXISTS "$SV_NS:deadidx:$S")" = 0 ] || fail "index left: $(rcli HGETALL "$SV_NS:deadidx:$S")"
ok "purged"
pass
