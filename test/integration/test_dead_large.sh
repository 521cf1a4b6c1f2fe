#!/usr/bin/env bash
# Issue 12, done-when 1: dead letters of any size.  A 2 MB entry read by a
# persistence and a tool group is one dead letter listing both groups;
# `dead retry all`, run twice, re-drives it once each time and never
# multiplies it; `dead list` over ten 2 MB dead letters answers, paged,
# with the large fields cut and their size shown; `dead show --raw` gives
# one whole.  N at its maximum (1000) answers too.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
DI="$PY $SV_TEST_DIR/dead/deadit.py"
BIG=2097152

start_redis
write_config persist_count=1 tools_count=1 log_level=info \
	extra="$(tools_block "$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh")")"
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

# settled: both groups have read everything and hold nothing.
settled() {
	[ "$(rcli --json XINFO GROUPS events | pyjson 'len(d) == 2 and all(x["pending"] == 0 and x["lag"] == 0 for x in d)')" = true ]
}
# same_raw FILE STREAM ID SKIP: a `dead show --raw` file holds the fields
# of entry ID after its first SKIP, byte-exact.
same_raw() {
	local a b
	a=$($DI netstrings "$1") && b=$($DI fields "$RSOCK" "$2" "$3" | pyjson "json.dumps(d[$4:])") || return 1
	[ -n "$a" ] && [ "$a" != "[]" ] && [ "$a" = "$b" ]
}
dl_json() { ctl -t 20 --json dead list events "${1:-20}"; }

check "a 2 MB entry read by two groups: exactly one dead letter, listing both"
ORIG=$($DI xadd-big "$RSOCK" events big-0 "$BIG")
wait_for 30 'settled && [ "$(dead_len)" -ge 1 ]' || fail "not settled: dead $(dead_len), pending $(rcli XPENDING events "$GROUP" | head -n 1)/$(rcli XPENDING events tools | head -n 1)"
sleep 1
[ "$(dead_len)" = 1 ] || fail "$(dead_len) dead letters of one entry, want 1"
dl_json >"$TMPD/dl.json" || fail "dead list: $(head -c 300 "$TMPD/dl.json")"
[ "$(pyjson 'sorted(d["entries"][0]["groups"])' <"$TMPD/dl.json")" = "[\"$GROUP\", \"tools\"]" ] ||
	fail "groups: $(pyjson 'd["entries"][0]["groups"]' <"$TMPD/dl.json")"
DID=$(pyjson 'd["entries"][0]["id"]' <"$TMPD/dl.json")
ok "one dead letter $DID, groups $(pyjson 'd["entries"][0]["groups"]' <"$TMPD/dl.json")"

check "the list cuts the 2 MB field and shows its size"
pyjson '[f for f in d["entries"][0]["fields"] if f["name"] == "data"][0]' <"$TMPD/dl.json" >"$TMPD/f.json"
[ "$(pyjson 'd["size"]' <"$TMPD/f.json")" = "$BIG" ] || fail "data size: $(head -c 300 "$TMPD/f.json")"
[ "$(pyjson 'd["cut"]' <"$TMPD/f.json")" = true ] || fail "data not cut: $(head -c 300 "$TMPD/f.json")"
[ "$(wc -c <"$TMPD/dl.json")" -lt 65536 ] || fail "a list of one dead letter is $(wc -c <"$TMPD/dl.json") bytes"
out=$(ctl -t 20 dead list events 5) || fail "dead list: $out"
grep -q "$BIG bytes" <<<"$out" || fail "the table does not show the size: $(head -c 500 <<<"$out")"
ok "cut, size $BIG shown"

check "dead show --raw gives it whole"
ctl -t 20 dead show "$DID" --raw "$TMPD/raw" >/dev/null || fail "dead show --raw failed"
[ "$($DI netstrings "$TMPD/raw" | pyjson '[[a, len(b) // 2] for a, b in d]')" = \
  "$($DI fields "$RSOCK" events "$ORIG" | pyjson '[[a, len(b) // 2] for a, b in d]')" ] || fail "--raw differs in shape"
same_raw "$TMPD/raw" events "$ORIG" 0 || fail "--raw differs from the original"
ctl -t 20 --json dead show "$DID" >"$TMPD/show.json" || fail "dead show --json failed"
[ "$(pyjson '[len(f["value"]) for f in d["fields"] if f["name"] == "data"][0]' <"$TMPD/show.json")" = "$BIG" ] ||
	fail "dead show --json lacks the whole data"
[ "$(pyjson 'sorted(d["groups"])' <"$TMPD/show.json")" = "[\"$GROUP\", \"tools\"]" ] ||
	fail "dead show groups: $(pyjson 'd["groups"]' <"$TMPD/show.json")"
ok "whole, listing both groups"

copies() { $DI digest "$RSOCK" events | pyjson 'len([e for e in d if e[1][0][0] == "6f726967696e5f6964"])'; }
check "dead retry all, twice: one re-drive each, one dead letter, ORIGIN_ID the original"
for round in 1 2; do
	out=$(ctl -t 20 dead retry all 2>&1) || fail "round $round: dead retry all: $out"
	[ "$(copies)" = "$round" ] || fail "round $round: $(copies) re-driven copies in events, want $round"
	wait_for 30 'settled && [ "$(dead_len)" = 1 ]' || fail "round $round: dead $(dead_len)"
	sleep 1
	[ "$(dead_len)" = 1 ] || fail "round $round: $(dead_len) dead letters, want 1"
	dl_json >"$TMPD/dl.json"
	[ "$(pyjson 'd["entries"][0]["origin_id"]' <"$TMPD/dl.json")" = "$ORIG" ] || fail "round $round: origin $(pyjson 'd["entries"][0]["origin_id"]' <"$TMPD/dl.json")"
	[ "$(pyjson 'len(d["entries"][0]["groups"])' <"$TMPD/dl.json")" = 2 ] || fail "round $round: groups $(pyjson 'd["entries"][0]["groups"]' <"$TMPD/dl.json")"
	ok "round $round: one copy more, one dead letter of $ORIG"
done
check "dead retry all twice in a row, then settle: still one"
ctl -t 20 dead retry all >/dev/null 2>&1 || true
ctl -t 20 dead retry all >/dev/null 2>&1 || true
wait_for 30 'settled && [ "$(dead_len)" = 1 ]' || fail "dead $(dead_len)"
sleep 1
[ "$(dead_len)" = 1 ] || fail "$(dead_len) dead letters"
c=$(copies)
{ [ "$c" -ge 3 ] && [ "$c" -le 4 ]; } || fail "$c copies after 3 or 4 re-drives"
ok "one dead letter, $c copies"

check "dead list over ten 2 MB dead letters answers, paged"
for i in $(seq 1 10); do $DI xadd-big "$RSOCK" events "big-$i" "$BIG" >/dev/null; done
wait_for 60 'settled && [ "$(dead_len)" = 11 ]' || fail "dead $(dead_len), want 11"
t0=$(now_ms)
out=$(ctl -t 20 dead list 2>&1) || fail "dead list: $(head -c 300 <<<"$out")"
info "dead list of 11 in $(($(now_ms) - t0)) ms"
[ "$(grep -c 'entry too large' <<<"$out")" = 11 ] || fail "dead list shows $(grep -c 'entry too large' <<<"$out") of 11"
after=""; seen=""; pages=0
while :; do
	ctl -t 20 --json dead list 4 ${after:+--after "$after"} >"$TMPD/page.json" || fail "page $pages: $(head -c 300 "$TMPD/page.json")"
	seen+=$(pyjson '" ".join(e["id"] for e in d["entries"])' <"$TMPD/page.json")" "
	pages=$((pages + 1))
	after=$(pyjson 'd.get("next")' <"$TMPD/page.json")
	[ -n "$after" ] || break
	[ "$pages" -lt 10 ] || fail "more than 10 pages"
done
[ "$pages" = 3 ] || fail "$pages pages of 4 for 11"
[ "$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort -u | wc -l)" = 11 ] || fail "pages gave $seen"
ok "11 dead letters in $pages pages of 4"
out=$(ctl -t 20 --json dead list 1000) || fail "dead list 1000 (the most): $(head -c 300 <<<"$out")"
[ "$(pyjson 'len(d["entries"])' <<<"$out")" = 11 ] || fail "dead list 1000 lists $(pyjson 'len(d["entries"])' <<<"$out")"
out=$(ctl -t 20 dead list 1001 2>&1) && fail "dead list 1001 accepted: $out"
ok "N = 1000 answers; 1001 is refused"

check "limits at their edges: $((256)) / 257 bytes shown, 32 / 33 fields, 1 MiB chunks"
META=(origin_id=1-1 origin_stream=events "group=$GROUP" consumer=x reason=edge deliveries=1)
E1=$($DI xadd-sized "$RSOCK" events:dead "${META[@]}" a:256 b:257 c:1048576 d:1048577 e:0)
many=(); for i in $(seq 1 32); do many+=("f$i:1"); done
E2=$($DI xadd-sized "$RSOCK" events:dead "${META[@]}" "${many[@]}")
E3=$($DI xadd-sized "$RSOCK" events:dead "${META[@]}" "${many[@]}" f33:1)
ctl -t 20 --json dead list events 3 >"$TMPD/edge.json" || fail "dead list: $(head -c 300 "$TMPD/edge.json")"
[ "$(pyjson '[[f["name"], f["cut"], len(f["value"]), f["size"]] for f in d["entries"][2]["fields"]]' <"$TMPD/edge.json")" = \
  '[["a", false, 256, 256], ["b", true, 256, 257], ["c", true, 256, 1048576], ["d", true, 256, 1048577], ["e", false, 0, 0]]' ] ||
	fail "cuts: $(pyjson 'd["entries"][2]["fields"]' <"$TMPD/edge.json" | head -c 600)"
[ "$(pyjson '[(e["nfields"], len(e["fields"]), e["fields_cut"]) for e in d["entries"][:2]]' <"$TMPD/edge.json")" = '[[33, 32, true], [32, 32, false]]' ] ||
	fail "field counts: $(pyjson '[(e["nfields"], len(e["fields"]), e["fields_cut"]) for e in d["entries"]]' <"$TMPD/edge.json")"
ctl -t 20 dead show "$E1" --raw "$TMPD/e1.raw" >/dev/null || fail "dead show $E1"
same_raw "$TMPD/e1.raw" events:dead "$E1" 6 || fail "dead show --raw across chunk edges differs"
for e in "$E2" "$E3"; do
	ctl -t 20 dead show "$e" --raw "$TMPD/e.raw" >/dev/null || fail "dead show $e"
	same_raw "$TMPD/e.raw" events:dead "$e" 6 || fail "dead show $e --raw differs"
done
ok "edges hold"
pass
