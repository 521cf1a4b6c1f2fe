#!/usr/bin/env bash
# Issue 11: `streams` patterns in the configuration.
#  (a) `streamvisord -t` lists each pool's patterns (`pattern codex:run:*:events`).
#  (b) An escaped glob (`a\*b`, written "a\\*b" in libconfig) is a literal
#      name: -t does not call it a pattern, the daemon reads the stream named
#      `a*b` and never a stream it would match as a glob (`axb`).
#  (c) A pool with only patterns (its own and the global list) passes -t.
#  (d) streamvisor's own keys are never pattern streams, even with
#      `streams = [ "*" ]`: no group of a pool appears on NS:supervisor, on
#      other streams under the namespace, or on `*:dead` streams, while an
#      ordinary stream is discovered and persisted (positive control).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

# groups_on KEY: names of the consumer groups on stream KEY (space-separated).
groups_on() {
	rcli --json XINFO GROUPS "$1" 2>/dev/null | pyjson '" ".join(sorted((g["name"] if isinstance(g, dict) else dict(zip(g[0::2], g[1::2]))["name"]) for g in d))' 2>/dev/null || true
}

start_redis

check "(a) -t lists the patterns of each pool"
pat_config
cat "$TMPD/t.out"
grep -q '^configuration OK$' "$TMPD/t.out" || fail "no 'configuration OK': $(cat "$TMPD/t.out")"
grep -F "pattern $PAT" "$TMPD/t.out" | grep -q persist || fail "no 'pattern $PAT' line for pool persist"
grep -F "pattern $PAT" "$TMPD/t.out" | grep -q tools || fail "no 'pattern $PAT' line for pool tools"
ok "-t: pattern $PAT listed for both pools"

check "(b) an escaped glob is a literal name"
pat_config pat='codex:run:*:events' pat='a\\*b'
grep -F 'streams = [ "codex:run:*:events", "a\\*b" ];' "$CONF" || fail "could not write the escaped entry: $(grep '^streams' "$CONF")"
"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "-t rejects an escaped glob: $(cat "$TMPD/t.out")"
cat "$TMPD/t.out"
grep -E 'pattern .*a\\?\*b' "$TMPD/t.out" && fail "-t lists the escaped entry a\\*b as a pattern"
grep -F "pattern $PAT" "$TMPD/t.out" >/dev/null || fail "-t lost the real pattern next to the escaped one"
rcli XADD axb '*' run X1 type response.created seq 1 data '{}' >/dev/null
rcli XADD codex:run:c1:events '*' run C1 type response.created seq 1 data '{}' >/dev/null
rcli XADD codex:run:c1:events '*' run C1 type response.completed seq 2 data '{}' >/dev/null
start_daemon
wait_for 30 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"
wait_for 30 '[ "$(groups_on "a*b")" = "$GROUP $TGROUP" ]' || fail "groups on the literal stream a*b: '$(groups_on 'a*b')'"
wait_for 30 '[ "$(groups_on codex:run:c1:events)" = "$GROUP $TGROUP" ]' \
	|| fail "the pattern stream was not discovered: groups '$(groups_on codex:run:c1:events)'"
wait_for 30 '[ "$(ctl snapshot C1 2>/dev/null | pyjson "d[\"event_count\"]" 2>/dev/null)" = 2 ]' \
	|| fail "run C1 of the pattern stream not persisted: $(ctl snapshot C1 2>&1)"
sleep $(scaled 3)
[ -z "$(groups_on axb)" ] || fail "stream axb (matched by the glob a*b, not by the literal a\\*b) got groups: $(groups_on axb)"
[ "$(sq "SELECT count(*) FROM snapshots WHERE run = 'X1'")" = 0 ] || fail "run X1 of stream axb was persisted"
stop_daemon
ok "a\\*b read as the literal stream 'a*b'; axb untouched"

check "(c) pools with only patterns pass -t"
pat_config pat='x:*:events'
sed -i 's/kind = "persistence"; /&streams = [ "codex:run:*:events", "q?" ]; /' "$CONF"
"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "-t rejects pattern-only pools: $(cat "$TMPD/t.out")"
cat "$TMPD/t.out"
grep -F "pattern $PAT" "$TMPD/t.out" | grep -q persist || fail "pool persist's own pattern not listed"
grep -F "pattern q?" "$TMPD/t.out" | grep -q persist || fail "pool persist's pattern q? not listed"
grep -F "pattern x:*:events" "$TMPD/t.out" | grep -q tools || fail "pool tools' (global) pattern not listed"
ok "pattern-only pools accepted, each pool's own list listed"

check "(d) streams = [ \"*\" ]: streamvisor's own keys are never read"
rcli XADD events:dead '*' origin_id 1-1 origin_stream events reason test run D1 type response.created data '{}' >/dev/null
rcli XADD foo:dead '*' origin_id 1-1 origin_stream foo reason test run D2 type response.created data '{}' >/dev/null
rcli XADD "$SV_NS:extra" '*' run S1 type response.created seq 1 data '{}' >/dev/null
rcli XADD plain1 '*' run P1 type response.created seq 1 data '{}' >/dev/null
rcli XADD plain1 '*' run P1 type response.completed seq 2 data '{}' >/dev/null
pat_config pat='*' discover_ms=500
start_daemon
wait_for 30 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"
wait_for 30 '[ "$(ctl snapshot P1 2>/dev/null | pyjson "d[\"event_count\"]" 2>/dev/null)" = 2 ]' \
	|| fail "run P1 of stream plain1 not persisted under streams = [\"*\"]: $(ctl snapshot P1 2>&1)"
[ "$(groups_on plain1)" = "$GROUP $TGROUP" ] || fail "groups on plain1: '$(groups_on plain1)'"
# More than a few discovery rounds (discover_ms = 500) with the daemon
# writing NS:supervisor and the heartbeats all along.
rcli XADD events:dead '*' origin_id 1-2 origin_stream events reason test run D1 type response.completed data '{}' >/dev/null
rcli XADD codex:run:n:dead '*' origin_id 1-2 origin_stream codex:run:n reason test >/dev/null
sleep $(scaled 5)
own=$( {
	echo "$SV_NS:supervisor"
	for k in $(rcli --scan --pattern "$SV_NS:*"); do [ "$(rcli TYPE "$k")" = stream ] && echo "$k"; done
	pat_dead_keys
} | sort -u)
info "own keys checked: $(tr '\n' ' ' <<<"$own")"
grep -qx "$SV_NS:supervisor" <<<"$own" || fail "no $SV_NS:supervisor"
[ "$(rcli EXISTS "$SV_NS:supervisor")" = 1 ] || fail "$SV_NS:supervisor does not exist"
while read -r k; do
	[ -n "$k" ] || continue
	g=$(groups_on "$k")
	info "$k: groups '$g'"
	[ -z "$g" ] || fail "own key $k is read as a pattern stream: groups $g"
done <<<"$own"
for r in D1 D2 S1; do
	[ "$(sq "SELECT count(*) FROM snapshots WHERE run = '$r'")" = 0 ] || fail "run $r of an own key was persisted"
done
[ -z "$(rcli --scan --pattern '*:dead:dead')" ] || fail "dead letters of dead-letter streams: $(rcli --scan --pattern '*:dead:dead')"
assert_no_fatal
ok "no group on NS:supervisor, NS:* streams or *:dead streams; plain1 read"
pass
