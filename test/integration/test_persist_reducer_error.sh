#!/usr/bin/env bash
# SPEC §5: a reducer error on one entry rolls back that entry alone and
# dead-letters it; the rest of its batch is persisted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
require_fault_seams

start_redis
pconfig persist_count=1 batch=256
start_daemon
wait_for 20 'all_running 1' || fail "expected 1 RUNNING worker: $(worker_table 2>&1)"

check "one batch: good runs, an sv.test.reducer_error entry in the middle of a run, more good runs"
ctl pause persist >/dev/null || fail "pause failed"
wait_for 10 '[ "$(hbfield t1/persist/0 status)" = paused ]' || fail "worker not paused: $(hb t1/persist/0)"
gen --runs 5 --prefix a- --seed 1 >/dev/null
rcli XADD events '*' run mixed type response.created seq 1 data '{}' >/dev/null
BAD=$(rcli XADD events '*' run mixed type sv.test.reducer_error seq 2 data '{"x":1}')
rcli XADD events '*' run mixed type response.completed seq 3 data '{}' >/dev/null
$PT gen --sock "$RSOCK" --out "$TMPD/b.jsonl" --runs 5 --prefix b- --seed 2 >/dev/null
cat "$TMPD/b.jsonl" >>"$EVENTS"
n=$(rcli XLEN events)
info "$n entries; batch 256 (all in one batch)"
ctl resume persist >/dev/null || fail "resume failed"

wait_persisted 30 || fail "good events not persisted"
wait_for 30 '[ "$(dead_len)" -ge 1 ]' || fail "nothing dead-lettered"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
check_snapshots || fail "good snapshots differ from the reference"
dead=$(rcli --json XRANGE events:dead - +)
[ "$(pyjson 'len(d)' <<<"$dead")" = 1 ] || fail "want exactly 1 dead letter: $dead"
f=$(pyjson 'dict(zip(d[0][1][0::2], d[0][1][1::2]))' <<<"$dead")
info "dead letter: $f"
[ "$(pyjson 'd["origin_id"]' <<<"$f")" = "$BAD" ] || fail "the wrong entry was dead-lettered: $f"
pyjson 'd["reason"]' <<<"$f" | grep -qi reducer || fail "reason does not mention the reducer: $f"
[ "$(pyjson 'd["type"]' <<<"$f")" = sv.test.reducer_error ] || fail "original fields missing: $f"
[ "$(sq "SELECT count(*) FROM events WHERE run = 'mixed'")" = 2 ] || fail "run mixed: $(sq "SELECT seq, type FROM events WHERE run = 'mixed'")"
[ "$(sq "SELECT event_count, last_seq, status, complete FROM snapshots WHERE run = 'mixed'")" = "2|3|completed|0" ] ||
	fail "run mixed row: $(sq "SELECT event_count, last_seq, status, complete FROM snapshots WHERE run = 'mixed'")"
rows=$(events_rows)
[ "$rows" = $((n - 1)) ] || fail "events rows $rows, want $((n - 1))"
assert_no_fatal
ok "only $BAD dead-lettered ($(pyjson 'd["reason"]' <<<"$f")); the other $rows entries of the batch persisted"
pass
