#!/usr/bin/env bash
# Issue 12, done-when 2 (conflicts): a reused run id without `forget`.
# The run's conflicting events (same run and seq, other type or data,
# data compared as JSON) are dead-lettered with reason "conflicts with
# stored event", the run is quarantined so a longer second run's extra
# events are dead-lettered too, and the old snapshot stays as it was;
# identical duplicates (a producer's retried XADD, keys in another order)
# stay silent; a second tool.output for a stored call is a counted re-run,
# not a conflict; `forget` lifts the quarantine.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

start_redis
pconfig persist_count=2
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"

ev() { rcli XADD events '*' run "$1" type "$3" seq "$2" data "$4" >/dev/null; }
snap_is() { [ "$(ctl snapshot "$1" 2>/dev/null | pyjson "$2" 2>/dev/null)" = true ]; }
conflict_letters() {
	rcli --json XRANGE events:dead - + | "$PY" -c '
import json, sys
n = 0
for e in json.loads(sys.stdin.read() or "[]"):
    f = dict(zip(e[1][0::2], e[1][1::2]))
    if f.get("reason") == "conflicts with stored event" and f.get("run") == sys.argv[1]:
        n += 1
print(n)' "$1"
}
conflicts() { status_json | pyjson 'sum(w.get("conflicts", 0) for w in d["workers"])'; }

check "run R persisted; identical duplicates are silent"
ev R 1 response.created '{"model":"old","metadata":{"a":1,"b":2}}'
ev R 2 usage '{"input_tokens":3}'
ev R 3 response.completed '{}'
wait_for 20 'snap_is R "d[\"complete\"] and d[\"event_count\"] == 3"' || fail "R: $(ctl snapshot R 2>&1 | head -c 400)"
before=$(sq "SELECT body FROM snapshots WHERE run = 'R'")
ev R 1 response.created '{ "metadata": {"b": 2, "a": 1}, "model": "old" }'
ev R 2 usage '{"input_tokens":3}'
sleep "$(scaled 1)"
wait_pending_zero 10 || fail "pending: $(pending_count)"
[ "$(dead_len)" = 0 ] || fail "an identical duplicate was dead-lettered: $(rcli XRANGE events:dead - + | head -n 30)"
[ "$(sq "SELECT quarantined FROM snapshots WHERE run = 'R'")" = 0 ] || fail "quarantined by an identical duplicate"
ok "identical duplicates: no dead letter, no quarantine"

check "drain, then R again, longer, with other content (no forget)"
ctl drain --yes >/dev/null
ev R 1 response.created '{"model":"new"}'
ev R 2 usage '{"input_tokens":3}'
ev R 3 item.started '{"item_id":"m1","kind":"message"}'
ev R 4 item.delta '{"item_id":"m1","text":"hi"}'
ev R 5 response.completed '{}'
wait_for 20 '[ "$(conflict_letters R)" = 4 ]' \
	|| fail "want 4 conflict dead letters (seq 1, 3, 4, 5), got $(conflict_letters R): $(rcli XRANGE events:dead - + | head -n 60)"
wait_pending_zero 10 || fail "pending: $(pending_count)"
[ "$(dead_len)" = 4 ] || fail "dead letters: $(rcli XRANGE events:dead - + | head -n 60)"
seqs=$(rcli --json XRANGE events:dead - + | pyjson 'sorted(int(dict(zip(e[1][0::2], e[1][1::2]))["seq"]) for e in d)')
[ "$seqs" = "[1, 3, 4, 5]" ] || fail "dead-lettered seqs: $seqs"
[ "$(sq "SELECT body FROM snapshots WHERE run = 'R'")" = "$before" ] || fail "the old snapshot changed"
snap_is R 'd["model"] == "old" and d["event_count"] == 3 and d["complete"]' || fail "R: $(ctl snapshot R)"
[ "$(sq "SELECT quarantined FROM snapshots WHERE run = 'R'")" = 1 ] || fail "R is not quarantined"
[ "$(sq "SELECT count(*) FROM events WHERE run = 'R'")" = 3 ] || fail "events of R: $(sq "SELECT seq, type FROM events WHERE run = 'R'")"
grep -q 'run quarantined' "$DLOG" || fail "the quarantine is not logged"
wait_for 10 '[ "$(conflicts)" = 4 ]' || fail "status --json conflicts: $(conflicts)"
wait_for 10 'ctl metrics | grep -E "^streamvisor_conflicts_total\{pool=\"persist\"\} 4$" >/dev/null' || fail "metrics: $(ctl metrics | grep conflicts)"
ok "seq 1, 3, 4, 5 dead-lettered (seq 2 identical: silent); the old snapshot unchanged; R quarantined"

check "tool.output is exempt: a second output for a stored call is a re-run"
ev Q 1 response.created '{}'
ev Q 2 tool.call '{"call_id":"q1","name":"t","arguments":{}}'
rcli XADD events '*' run Q type tool.output call_id q1 parent_seq 2 data '{"call_id":"q1","name":"t","output":"first","is_error":false}' >/dev/null
wait_for 20 'snap_is Q "d[\"event_count\"] == 3"' || fail "Q: $(ctl snapshot Q 2>&1 | head -c 400)"
rcli XADD events '*' run Q type tool.output call_id q1 parent_seq 2 data '{"call_id":"q1","name":"t","output":"second","is_error":false}' >/dev/null
rerun() { status_json | pyjson 'sum(w.get("reruns", 0) for w in d["workers"])'; }
wait_for 20 '[ "$(rerun)" = 1 ]' || fail "reruns: $(rerun)"
wait_pending_zero 10 || fail "pending: $(pending_count)"
[ "$(conflict_letters Q)" = 0 ] && [ "$(dead_len)" = 4 ] || fail "the re-run was dead-lettered: $(rcli XRANGE events:dead - + | tail -n 20)"
snap_is Q '[o["output"] for o in d["output"] if o["type"] == "tool_output"] == ["first"]' || fail "Q: $(ctl snapshot Q)"
grep -q 'level=info.*tool.output of a re-run' "$DLOG" || fail "the re-run is not logged at info"
ok "first output kept, re-run counted, no dead letter"

check "forget lifts the quarantine: R anew"
ctl forget R --yes >/dev/null
ev R 1 response.created '{"model":"newest"}'
ev R 2 response.completed '{}'
wait_for 20 'snap_is R "d[\"complete\"] and d[\"model\"] == \"newest\" and d[\"event_count\"] == 2"' \
	|| fail "R after forget: $(ctl snapshot R 2>&1 | head -c 400)"
[ "$(sq "SELECT quarantined FROM snapshots WHERE run = 'R'")" = 0 ] || fail "still quarantined"
[ "$(dead_len)" = 4 ] || fail "dead letters after forget: $(rcli XRANGE events:dead - + | tail -n 20)"
assert_no_fatal
ok "R persisted anew after forget"
pass
