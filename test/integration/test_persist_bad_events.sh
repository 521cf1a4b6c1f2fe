#!/usr/bin/env bash
# SPEC §9: bad input is dead-lettered with a reason, never crashes the pool
# and never blocks the good events around it.  Entries without run, without
# type, with data that is not a JSON object, larger than 1 MiB, and a poison
# entry that crashes the worker (found alone, dead-lettered after
# max_deliveries, before the pool reaches FATAL).  Then `dead retry` of a
# dead letter re-drives it, it is persisted and leaves events:dead.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
require_fault_seams

start_redis
pconfig persist_count=2
# The sv.test.crash seam raises SIGSEGV on purpose: in sanitizer builds let
# it kill the worker like in production instead of producing a report.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0"
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"
LAST_SUP=$(sup_last_id)

check "good runs around six bad entries, in one burst (one batch)"
pause_rc=0; ctl pause persist >/dev/null || pause_rc=$?
[ "$pause_rc" = 0 ] || info "(pause persist: exit $pause_rc; continuing unpaused)"
gen --runs 20 --prefix before- --seed 1 >/dev/null
declare -A WANT
id=$(rcli XADD events '*' type response.created seq 1 data '{}'); WANT[$id]="missing run"
id=$(rcli XADD events '*' run bad-2 seq 1 data '{}'); WANT[$id]="missing type"
id=$(rcli XADD events '*' run bad-3 type response.created seq 1 data 'not json'); WANT[$id]="data is not a JSON object"
id=$(rcli XADD events '*' run bad-4 type response.created seq 1 data '[1,2,3]'); WANT[$id]="data is not a JSON object"
$PY -c 'import json; print(json.dumps({"blob": "x" * (1100 * 1024)}), end="")' >"$TMPD/big.json"
id=$($PT xadd --sock "$RSOCK" events run bad-5 type response.created seq 1 data "@$TMPD/big.json"); WANT[$id]="entry too large"
id=$(rcli XADD events '*' run bad-6 type sv.test.crash seq 1 data '{}'); WANT[$id]="delivered"
POISON=$id
EVENTS_AFTER=$TMPD/after.jsonl
$PT gen --sock "$RSOCK" --out "$EVENTS_AFTER" --runs 20 --prefix after- --seed 2 >/dev/null
cat "$EVENTS_AFTER" >>"$EVENTS"
[ "$pause_rc" = 0 ] && ctl resume persist >/dev/null
t0=$(now_ms)

check "the good events are persisted; the bad ones dead-lettered with reasons"
wait_persisted 60 || fail "good events not persisted (rows $(events_rows), dead $(dead_len))"
wait_for 60 '[ "$(dead_len)" -ge 6 ]' || fail "only $(dead_len) dead letters after 60 s: $(ctl dead list 2>&1 | head -20)"
info "good events persisted and 6 dead letters within $(($(now_ms) - t0)) ms"
check_snapshots --exact || fail "good snapshots differ from the reference (or bad events were stored)"
rcli --json XRANGE events:dead - + >"$TMPD/dead.json"
[ "$(pyjson 'len(d)' <"$TMPD/dead.json")" = 6 ] || fail "want exactly 6 dead letters: $(cat "$TMPD/dead.json" | cut -c1-2000)"
for oid in "${!WANT[@]}"; do
	reason=$(pyjson '[dict(zip(e[1][0::2], e[1][1::2])) for e in d if dict(zip(e[1][0::2], e[1][1::2])).get("origin_id") == "'"$oid"'"][0]["reason"]' <"$TMPD/dead.json") ||
		fail "no dead letter with origin_id $oid (${WANT[$oid]})"
	case $reason in
	"${WANT[$oid]}"*) ok "$oid dead-lettered: $reason" ;;
	*) fail "$oid: reason '$reason', want '${WANT[$oid]}'" ;;
	esac
done
# The dead letters carry the metadata and the original fields.
pyjson 'all(all(k in dict(zip(e[1][0::2], e[1][1::2])) for k in ("origin_id", "origin_stream", "group", "consumer", "reason", "deliveries")) for e in d)' <"$TMPD/dead.json" | grep -qx true ||
	fail "dead letters lack metadata fields"
preason=$(pyjson '[dict(zip(e[1][0::2], e[1][1::2])) for e in d if dict(zip(e[1][0::2], e[1][1::2]))["origin_id"] == "'"$POISON"'"][0]' <"$TMPD/dead.json")
info "poison dead letter: $(pyjson '{k: v for k, v in d.items() if k != "data"}' <<<"$preason")"
[ "$(pyjson 'd["type"]' <<<"$preason")" = sv.test.crash ] || fail "poison dead letter lacks the original fields: $preason"
[ "$(pyjson 'int(d["deliveries"]) > 3' <<<"$preason")" = true ] || fail "poison deliveries: $preason"
crashes=$(grep -c 'killed by signal 11' "$DLOG" || true)
info "worker crashes on the poison entry: $crashes"
[ "$crashes" -ge 1 ] || fail "the poison entry never crashed a worker (fault injection off?)"
# Nothing else was dead-lettered (checked above: exactly 6), and the pool lives.
wait_pending_zero 30 || fail "pending stays $(pending_count)"
wait_for 20 'all_running 2' || fail "workers not RUNNING after the poison: $(worker_table 2>&1)"
assert_no_fatal
fatal=$(sup_select "$LAST_SUP" "e.get('to') == 'FATAL'")
[ -z "$fatal" ] || fail "NS:supervisor shows FATAL: $fatal"
[ "$(sq "SELECT count(*) FROM events WHERE run LIKE 'bad-%'")" = 0 ] || fail "bad events were stored"
ok "6 bad entries dead-lettered with their reasons, the poison found alone after $crashes crashes, no FATAL"

check "dead list shows them"
# (A failure here is reported at the end, after the dead retry checks.)
LATE_FAIL=""
if ! ctl dead list >"$TMPD/dl.txt" 2>&1; then
	LATE_FAIL="dead list (6 letters, one > 1 MiB) failed: $(head -c 300 "$TMPD/dl.txt")"
	echo "# FAIL (deferred): $LATE_FAIL"
	grep -E 'monitor (exited|died)' "$DLOG" | tail -n 2 || true
	wait_for 20 'ctl dead list events 1 >/dev/null 2>&1' || fail "the monitor did not come back"
elif ! grep -q 'entry too large' "$TMPD/dl.txt"; then
	LATE_FAIL="dead list lacks reasons: $(head -c 300 "$TMPD/dl.txt")"
else
	ok "dead list shows the 6 letters and their reasons"
fi

check "dead retry ID of a dead letter that is valid now"
DID=$(rcli XADD events:dead '*' origin_id 1-1 origin_stream events group "$GROUP" consumer x reason test deliveries 4 \
	run redriven type response.created seq 1 ts 1700000000000 data '{"model":"r"}')
before=$(dead_len)
out=$(ctl dead retry "$DID" 2>&1) || fail "dead retry $DID failed: $out"
info "dead retry: $out"
wait_for 30 '[ "$(sq "SELECT event_count FROM snapshots WHERE run = '"'"'redriven'"'"'")" = 1 ]' ||
	fail "re-driven event not persisted"
[ "$(dead_len)" = $((before - 1)) ] || fail "events:dead length $(dead_len), want $((before - 1))"
[ -z "$(rcli XRANGE events:dead "$DID" "$DID")" ] || fail "dead letter $DID still in events:dead"
[ "$(sq "SELECT json_extract(body, '$.model') FROM snapshots WHERE run = 'redriven'")" = r ] || fail "re-driven snapshot: $(sq "SELECT body FROM snapshots WHERE run = 'redriven'")"
redriven=$(rcli --json XREVRANGE events + - COUNT 1)
[ "$(pyjson 'dict(zip(d[0][1][0::2], d[0][1][1::2])).get("origin_id")' <<<"$redriven")" = 1-1 ] || fail "re-driven entry lacks origin_id 1-1: $redriven"
ok "dead retry re-drove $DID with origin_id, persisted, removed from events:dead"
[ -z "$LATE_FAIL" ] || fail "$LATE_FAIL"
pass
