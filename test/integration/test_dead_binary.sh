#!/usr/bin/env bash
# Issue 12, done-when 1: dead letters of entries with non-UTF-8 field names
# and values.  `dead list` answers (escaped in the table, a declared
# encoding in --json, numbers as numbers), `dead show --raw` gives the
# original bytes, and `dead retry` re-drives them byte-exact, with
# ORIGIN_ID the original id however often the entry dies again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
DI="$PY $SV_TEST_DIR/dead/deadit.py"

start_redis
pconfig persist_count=1
start_daemon
wait_for 20 'all_running 1' || fail "expected 1 RUNNING worker: $(worker_table 2>&1)"

hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
# run "\xffrun" (not UTF-8: "invalid run"), a field named "\xc3(bin" with
# the value "\0\x80\xfe", and a field whose value is "a\\b\x01".
FIELDS=("$(hex run)" ff72756e "$(hex type)" "$(hex response.created)" c32862696e 0080fe \
	"$(hex note)" 615c6201 "$(hex data)" "$(hex '{}')")
check "an entry with non-UTF-8 field names and values is dead-lettered"
ORIG=$($DI xadd "$RSOCK" events "${FIELDS[@]}")
want=$($PY -c 'import json,sys; a=sys.argv[1:]; print(json.dumps([a[i:i+2] for i in range(0,len(a),2)]))' "${FIELDS[@]}")
wait_for 30 '[ "$(dead_len)" = 1 ]' || fail "not dead-lettered: $(dead_len) dead letters"
DID=$(rcli XRANGE events:dead - + | head -n 1)
ok "dead letter $DID of $ORIG"

check "dead list STREAM N answers, escaped in the table"
for n in 1 5 20; do
	out=$(ctl -t 10 dead list events "$n" 2>&1) || fail "dead list events $n: $out"
done
info "$out"
grep -qF '\xffrun' <<<"$out" || fail "the table does not show run as \\xffrun: $out"
grep -qF '\xc3(bin' <<<"$out" || fail "the table does not show the field name escaped: $out"
grep -qF "$ORIG" <<<"$out" || fail "the table lacks ORIGIN_ID $ORIG: $out"
! grep -q $'\xff' <<<"$out" || fail "raw bytes in the table"
ok "dead list answers and escapes"

check "--json: a declared encoding, byte-exact; deliveries a number"
ctl -t 10 --json dead list events 5 >"$TMPD/dl.json" || fail "dead list --json: $(cat "$TMPD/dl.json")"
# raw_fields: the first entry's fields of a dead list --json, hex.
raw_fields() {
	"$PY" -c '
import base64, json, sys
raw = lambda v: base64.b64decode(v["b64"]).hex() if isinstance(v, dict) else v.encode().hex()
e = json.load(sys.stdin)["entries"][0]
print(json.dumps([[raw(f["name"]), raw(f["value"])] for f in e["fields"]]))'
}
got=$(raw_fields <"$TMPD/dl.json") || fail "unexpected JSON: $(cat "$TMPD/dl.json")"
[ "$got" = "$want" ] || fail "fields in --json: $got, want $want"
pyjson 'isinstance(d["entries"][0]["deliveries"], int) and not isinstance(d["entries"][0]["deliveries"], bool)' <"$TMPD/dl.json" | grep -qx true ||
	fail "deliveries is not a number: $(cat "$TMPD/dl.json")"
[ "$(pyjson 'd["entries"][0]["origin_id"]' <"$TMPD/dl.json")" = "$ORIG" ] || fail "origin_id: $(cat "$TMPD/dl.json")"
ok "fields byte-exact through --json, deliveries a number"

check "dead show ID --raw FILE: the original fields, byte-exact"
ctl -t 10 dead show "$DID" --raw "$TMPD/raw" >"$TMPD/show.txt" 2>&1 || fail "dead show: $(cat "$TMPD/show.txt")"
[ "$($DI netstrings "$TMPD/raw")" = "$want" ] || fail "--raw: $($DI netstrings "$TMPD/raw"), want $want"
grep -qF '\xc3(bin' "$TMPD/show.txt" || fail "dead show does not print the field escaped: $(cat "$TMPD/show.txt")"
ok "dead show --raw"

check "dead retry re-drives byte-exact; the copy dies again with ORIGIN_ID the original"
for round in 1 2; do
	before=$(rcli XLEN events)
	out=$(ctl -t 10 dead retry "$DID" 2>&1) || fail "dead retry $DID: $out"
	[ "$(rcli XLEN events)" = $((before + 1)) ] || fail "round $round: events grew by $(($(rcli XLEN events) - before)), want 1"
	COPY=$(rcli XREVRANGE events + - COUNT 1 | head -n 1)
	got=$($DI fields "$RSOCK" events "$COPY")
	wantc=$($PY -c 'import json,sys; w=json.loads(sys.argv[1]); print(json.dumps([["6f726967696e5f6964", sys.argv[2].encode().hex()]] + w))' "$want" "$ORIG")
	[ "$got" = "$wantc" ] || fail "round $round: the copy $COPY holds $got, want $wantc"
	wait_for 30 '[ "$(dead_len)" = 1 ] && [ "$(rcli XRANGE events:dead - + | head -n 1)" != "$DID" ]' ||
		fail "round $round: the copy was not dead-lettered once ($(dead_len) dead letters)"
	DID=$(rcli XRANGE events:dead - + | head -n 1)
	[ "$($DI fields "$RSOCK" events:dead "$DID" | pyjson 'json.dumps(d[6:])')" = "$want" ] ||
		fail "round $round: the dead letter's fields are not the original: $($DI fields "$RSOCK" events:dead "$DID")"
	ctl -t 10 --json dead list events 5 >"$TMPD/dl.json"
	[ "$(pyjson 'd["entries"][0]["origin_id"]' <"$TMPD/dl.json")" = "$ORIG" ] ||
		fail "round $round: ORIGIN_ID $(pyjson 'd["entries"][0]["origin_id"]' <"$TMPD/dl.json"), want $ORIG"
	ok "round $round: copy $COPY byte-exact, dead again as $DID with origin $ORIG"
done
out=$(ctl -t 10 dead retry 1-1 2>&1) && fail "dead retry of an unknown id succeeded: $out"

check "a dead letter with binary fields that is valid now is persisted byte-exact"
RID=$($DI xadd "$RSOCK" events:dead "$(hex origin_id)" "$(hex 5-1)" "$(hex origin_stream)" "$(hex events)" \
	"$(hex group)" "$(hex "$GROUP")" "$(hex consumer)" "$(hex x)" "$(hex reason)" "$(hex test)" \
	"$(hex deliveries)" "$(hex 4)" "$(hex run)" "$(hex okrun)" "$(hex type)" "$(hex response.created)" \
	"$(hex seq)" "$(hex 1)" ff00 80 "$(hex data)" "$(hex '{"model":"m"}')")
out=$(ctl -t 10 dead retry "$RID" 2>&1) || fail "dead retry $RID: $out"
COPY=$(rcli XREVRANGE events + - COUNT 1 | head -n 1)
[ "$($DI fields "$RSOCK" events "$COPY" | pyjson 'json.dumps(d[0] + d[4])')" = '["6f726967696e5f6964", "352d31", "ff00", "80"]' ] ||
	fail "copy fields: $($DI fields "$RSOCK" events "$COPY")"
wait_for 30 '[ "$(sq "SELECT count(*) FROM snapshots WHERE run = '"'"'okrun'"'"'")" = 1 ]' || fail "re-driven event not persisted"
[ "$(dead_len)" = 1 ] || fail "dead letters: $(dead_len), want 1"
ok "persisted; the copy carries the binary field byte-exact"
pass
