#!/usr/bin/env bash
# Two poison entries back to back, one persistence worker, every crash a
# failed start (start_ms 5 s).  The first read delivers both (crash 1);
# the next incarnations re-read them one at a time: a crashes twice more
# and is dead-lettered, then b crashes twice more and is dead-lettered.
# That is 5 crashes in a row = max_retries: counted as one streak of
# failed starts the worker would go FATAL with b still pending.  The
# incarnation that dead-letters a has made progress, which ends the
# streak (proc_progress): no FATAL, both dead-lettered, the rest stored.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_fault_seams

OPS="$PY $SV_TEST_DIR/ops/ops.py"
DB=$TMPD/snap.db
RUNS=$TMPD/runs.txt

start_redis
write_config persist_count=1 tools_count=0 log_level=info start_ms=5000 max_deliveries=3 max_retries=5 \
	backoff_initial=100 backoff_max=200 claim_idle=60000
start_daemon
wait_for 20 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
SUP0=$(sup_last_id)

no_fatal() {
	[ "$(wfield t1/persist/0 state)" != FATAL ] || fail "the worker went FATAL: $(worker_json t1/persist/0)"
	[ -z "$(sup_select "$SUP0" 'e.get("to") == "FATAL"')" ] || fail "NS:supervisor shows FATAL"
}

check "two poison entries between good events"
$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --runs 20 --prefix "a-" >/dev/null
pa=$(rcli XADD events '*' run poison-a type sv.test.crash seq 1 data '{"x":1}')
pb=$(rcli XADD events '*' run poison-b type sv.test.crash seq 1 data '{"x":1}')
$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --runs 20 --prefix "b-" >/dev/null
deadline=$(($(now_ms) + $(scaled 60000)))
while :; do
	no_fatal
	[ "$(rcli XLEN events:dead)" -ge 2 ] && [ "$(rcli XPENDING events persist@t1 | head -n 1)" = 0 ] && break
	[ "$(now_ms)" -lt "$deadline" ] || fail "not both dead-lettered in time (dead $(rcli XLEN events:dead)): $(worker_table)"
	sleep 0.2
done
crashes=$(grep -c 'killed by signal 11' "$DLOG" || true)
origins=$(rcli --json XRANGE events:dead - + | pyjson '" ".join(sorted(dict(zip(e[1][0::2], e[1][1::2]))["origin_id"] for e in d))')
[ "$origins" = "$(printf '%s\n' "$pa" "$pb" | sort | tr '\n' ' ' | sed 's/ $//')" ] || fail "dead letters $origins, want $pa $pb"
[ "$crashes" -le 6 ] || fail "$crashes crashes for 2 poison entries, at most 6"
grep -q 'started: made progress' "$DLOG" || fail "no start ended by progress"
wait_for 20 'all_running 1' || fail "worker not RUNNING after the poison pair: $(worker_table 2>&1)"
no_fatal
$OPS checkdb --db "$DB" --runs-file "$RUNS" --exact || fail "good events not persisted exactly"
ok "both dead-lettered after $crashes crashes; no FATAL; 40 good runs stored"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
