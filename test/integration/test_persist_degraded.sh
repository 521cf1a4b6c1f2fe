#!/usr/bin/env bash
# SPEC §9 "disk full": while every SQLite COMMIT fails (fault seam), the
# workers are `degraded`, keep their entries (renewed, not claimed by
# others, delivered once), ack nothing, dead-letter nothing, and are not
# killed as hung -- for 3 x claim_idle_ms.  Once the disk "recovers" every
# event is persisted exactly once and nothing stays pending.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
require_fault_seams

CLAIM=1000
start_redis
pconfig persist_count=2 claim_idle=$CLAIM batch=64
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"
WARM=$TMPD/warm.jsonl
$PT gen --sock "$RSOCK" --out "$WARM" --runs 2 --prefix warm- >/dev/null
wait_persisted 30 "$WARM" >/dev/null || fail "warm-up not persisted"
rows0=$(events_rows)
pids0=$(worker_table | awk '{print $1, $3}')
LAST_SUP=$(sup_last_id)

statuses() { rcli HGETALL "$SV_NS:workers" | awk 'NR % 2 == 0' | $PY -c '
import json, sys
print(" ".join(sorted(json.loads(l)["status"] for l in sys.stdin if l.strip())))'; }

check "COMMIT fails (fault file); produce 100 runs"
# Paused while producing, so that the workers take full batches.
ctl pause persist >/dev/null || fail "pause persist failed"
wait_for 10 '[ "$(statuses)" = "paused paused" ]' || fail "workers not paused: $(statuses)"
gen --runs 100 --seed 9 --window 100 >/dev/null
n=$(wc -l <"$EVENTS")
touch "$FAULT_DIR/commit"
ctl resume persist >/dev/null || fail "resume persist failed"
wait_for 20 'statuses | grep -qw degraded' || fail "no worker became degraded: $(statuses)"
info "worker statuses: $(statuses)"

check "for 3 x claim_idle_ms: nothing acked, stored or dead-lettered; entries stay with their worker"
end=$(($(now_ms) + 3 * CLAIM + 500))
samples=0
while [ "$(now_ms)" -lt "$end" ]; do
	p=$(pending_count)
	[ "${p:-0}" -gt 0 ] || fail "XPENDING dropped to '${p}' while COMMIT fails: something was acked"
	[ "$(events_rows)" = "$rows0" ] || fail "events rows changed while COMMIT fails"
	[ "$(dead_len)" = 0 ] || fail "dead letters while degraded: $(rcli XRANGE events:dead - + COUNT 2)"
	statuses | grep -qw degraded || fail "no worker degraded any more: $(statuses)"
	samples=$((samples + 1))
	sleep 0.3
done
maxdel=$(rcli --json XPENDING events "$GROUP" - + 10000 | pyjson 'max(e[3] for e in d)')
info "$samples samples: pending $(pending_count), events rows unchanged ($rows0), max deliveries $maxdel"
[ "$maxdel" = 1 ] || fail "held entries were redelivered/claimed while degraded (max deliveries $maxdel)"
[ "$(worker_table | awk '{print $1, $3}')" = "$pids0" ] || fail "workers were restarted while degraded: $(worker_table)"
hung=$(sup_select "$LAST_SUP" "e.get('to') in ('HUNG', 'EXITED', 'FATAL')")
[ -z "$hung" ] || fail "NS:supervisor while degraded: $hung"
last_err=$(hb t1/persist/0 | pyjson 'd["last_error"]' || true)
info "heartbeat last_error: $last_err"
ok "degraded, nothing acked/stored/dead-lettered, entries held (delivered once), no restarts"

check "remove the fault: everything persisted exactly once"
rm -f "$FAULT_DIR/commit"
t0=$(now_ms)
wait_persisted 60 || fail "not persisted after the fault was removed"
info "recovered in $(($(now_ms) - t0)) ms"
cat "$WARM" >>"$EVENTS"
check_snapshots --exact || fail "snapshots differ / duplicates"
rows=$(events_rows)
[ "$rows" = $((n + rows0)) ] || fail "events rows $rows, want $((n + rows0))"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + COUNT 2)"
wait_for 10 '! statuses | grep -qw degraded' || fail "still degraded: $(statuses)"
assert_no_fatal
ok "$n events persisted exactly once after recovery; 0 pending; statuses $(statuses)"
pass
