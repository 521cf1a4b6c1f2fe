#!/usr/bin/env bash
# SPEC §5 order and dedupe: a producer's retried XADD (same run+seq, new
# entry id, after later seqs) and a `dead retry` (origin_id) land where they
# belong: the snapshot equals in-order application, and a duplicate never
# doubles text.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

start_redis
pconfig persist_count=2
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

# jq-like: snapq RUN PATH -> json_extract(body, PATH)
snapq() { sq "SELECT json_extract(body, '$2') FROM snapshots WHERE run = '$1'"; }
x() { rcli XADD events "$@" >/dev/null; }
count_of() { sq "SELECT event_count FROM snapshots WHERE run = '$1'"; }
wait_count() { wait_for 30 "[ \"\$(count_of $1)\" = $2 ]" || fail "$1: event_count $(count_of "$1"), want $2"; }

check "seq 3 arrives after seq 4 and 5; seq 4 is retried (new entry id)"
x '*' run ro-1 type response.created seq 1 ts 1000 data '{}'
x '*' run ro-1 type item.started seq 2 ts 1001 data '{"item_id":"m","kind":"message","role":"assistant"}'
x '*' run ro-1 type item.delta seq 4 ts 1003 data '{"item_id":"m","text":"C"}'
x '*' run ro-1 type item.delta seq 5 ts 1004 data '{"item_id":"m","text":"D"}'
wait_count ro-1 4
[ "$(snapq ro-1 '$.output[0].content')" = CD ] || fail "ro-1 before seq 3: content $(snapq ro-1 '$.output[0].content')"
[ "$(snapq ro-1 '$.gapless')" = 0 ] || fail "ro-1 with a gap is gapless"
x '*' run ro-1 type item.delta seq 3 ts 1002 data '{"item_id":"m","text":"B"}'
wait_count ro-1 5
x '*' run ro-1 type item.delta seq 4 ts 1003 data '{"item_id":"m","text":"C"}'
x '*' run ro-1 type item.completed seq 6 ts 1005 data '{"item_id":"m"}'
x '*' run ro-1 type response.completed seq 7 ts 1006 data '{}'
wait_count ro-1 7
sleep 0.5
[ "$(snapq ro-1 '$.output[0].content')" = BCD ] || fail "ro-1: content '$(snapq ro-1 '$.output[0].content')', want BCD"
[ "$(sq "SELECT event_count, last_seq, complete, status FROM snapshots WHERE run = 'ro-1'")" = "7|7|1|completed" ] ||
	fail "ro-1 row: $(sq "SELECT event_count, last_seq, complete, status FROM snapshots WHERE run = 'ro-1'")"
[ "$(sq "SELECT count(*) FROM events WHERE run = 'ro-1'")" = 7 ] || fail "ro-1: duplicate stored"
ok "ro-1: late seq 3 placed before 4, duplicate seq 4 ignored: content BCD, 7 events, complete"

check "a run without seq: dead retry of its 3rd event sorts by origin_id"
# Explicit ids so that the dead letter's origin id lies between them.
base=$(( $(rcli TIME | head -n 1) * 1000 + 5000 ))
x "$base-0" run ro-2 type response.created data '{}'
x "$base-1" run ro-2 type item.started data '{"item_id":"m","kind":"message"}'
x "$base-3" run ro-2 type item.delta data '{"item_id":"m","text":"y"}'
x "$base-4" run ro-2 type item.completed data '{"item_id":"m"}'
x "$base-5" run ro-2 type response.completed data '{}'
wait_count ro-2 5
[ "$(snapq ro-2 '$.output[0].content')" = y ] || fail "ro-2 before the retry: $(snapq ro-2 '$.output[0].content')"
DID=$(rcli XADD events:dead '*' origin_id "$base-2" origin_stream events group "$GROUP" consumer t1/persist/0 \
	reason "test" deliveries 4 run ro-2 type item.delta data '{"item_id":"m","text":"x"}')
out=$(ctl dead retry "$DID" 2>&1) || fail "dead retry: $out"
wait_count ro-2 6
[ "$(snapq ro-2 '$.output[0].content')" = xy ] || fail "ro-2: content '$(snapq ro-2 '$.output[0].content')', want xy (re-driven delta in its origin place)"
[ -z "$(rcli XRANGE events:dead "$DID" "$DID")" ] || fail "dead letter still there"
ok "ro-2: re-driven delta placed by origin_id: content xy"

check "re-driving the same origin again is a duplicate"
DID2=$(rcli XADD events:dead '*' origin_id "$base-2" origin_stream events group "$GROUP" consumer t1/persist/0 \
	reason "test" deliveries 4 run ro-2 type item.delta data '{"item_id":"m","text":"x"}')
ctl dead retry "$DID2" >/dev/null 2>&1 || fail "dead retry $DID2 failed"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
wait_for 10 '[ "$(rcli --json XINFO GROUPS events | pyjson "[g[\"lag\"] for g in d if g[\"name\"] == \"$GROUP\"][0]")" = 0 ]' || fail "group lag not 0"
sleep 1
[ "$(snapq ro-2 '$.output[0].content')" = xy ] || fail "ro-2 after a duplicate re-drive: '$(snapq ro-2 '$.output[0].content')'"
[ "$(sq "SELECT event_count FROM snapshots WHERE run = 'ro-2'")" = 6 ] || fail "ro-2 event_count changed on a duplicate"
[ "$(sq "SELECT status, complete FROM snapshots WHERE run = 'ro-2'")" = "completed|1" ] || fail "ro-2 not complete"

check "a dead retry of a seq'd event fills the gap"
x '*' run ro-3 type response.created seq 1 ts 2000 data '{}'
x '*' run ro-3 type item.started seq 2 ts 2001 data '{"item_id":"r","kind":"reasoning"}'
x '*' run ro-3 type item.delta seq 4 ts 2003 data '{"item_id":"r","text":"2"}'
x '*' run ro-3 type response.completed seq 5 ts 2004 data '{}'
wait_count ro-3 4
[ "$(sq "SELECT complete FROM snapshots WHERE run = 'ro-3'")" = 0 ] || fail "ro-3 with a gap is complete"
DID3=$(rcli XADD events:dead '*' origin_id 1-1 origin_stream events group "$GROUP" consumer t1/persist/0 \
	reason "test" deliveries 4 run ro-3 type item.delta seq 3 ts 2002 data '{"item_id":"r","text":"1"}')
ctl dead retry "$DID3" >/dev/null 2>&1 || fail "dead retry $DID3 failed"
wait_count ro-3 5
[ "$(snapq ro-3 '$.output[0].content')" = 12 ] || fail "ro-3: content '$(snapq ro-3 '$.output[0].content')', want 12"
[ "$(sq "SELECT complete, last_seq FROM snapshots WHERE run = 'ro-3'")" = "1|5" ] || fail "ro-3 not complete after the gap was filled"
ok "ro-3: re-driven seq 3 filled the gap: content 12, complete"
assert_no_fatal
pass
