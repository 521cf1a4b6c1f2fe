#!/usr/bin/env bash
# pools[].max_rss_mb: a persistence worker whose RSS grows past the limit
# under a load of large events finishes its batch and is recycled (exit 0,
# "recycling" logged, replaced at once under a new pid); no event is lost or
# duplicated (events rows == produced, snapshots complete with the right
# event_count, 0 pending, no dead letters) and the pool never goes FATAL.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"
DB=$TMPD/snap.db
RUNS=$TMPD/runs.txt

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
pending() { rcli XPENDING events persist@t1 | head -n 1; }

# conf MAX_RSS_MB
conf() {
	write_config persist_count=1 tools_count=0 log_level=info start_ms=300 max_retries=8
	sed -i "s/kind = \"persistence\"; /&max_rss_mb = $1; batch = 64; /" "$CONF"
	grep -q "max_rss_mb = $1;" "$CONF" || fail "config edit failed"
	"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
}

start_redis
conf 0
start_daemon
wait_for 20 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "baseline RSS of a warmed-up worker"
$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --runs 20 --prefix w >/dev/null
wait_for 30 '[ "$(pending)" = 0 ] && $OPS checkdb --db "$DB" --runs-file "$RUNS" >/dev/null 2>&1' || fail "warm-up load not persisted"
p0=$(wfield t1/persist/0 pid)
base=$(rss_kb "$p0")
LIMIT=$(((base + 1023) / 1024 + 4))
ok "worker $p0 VmRSS $base kB: max_rss_mb = $LIMIT"

check "reload with max_rss_mb = $LIMIT"
conf "$LIMIT"
ctl reload >/dev/null || fail "reload failed"
wait_for 20 'replaced t1/persist/0 '"$p0" || fail "persist worker not restarted with the new setting: $(worker_table)"
p1=$(wfield t1/persist/0 pid)
remember_pid "$p1"
info "worker $p1 VmRSS $(rss_kb "$p1") kB after the reload"
ok "worker $p1 running with max_rss_mb = $LIMIT"

check "a load of large events grows the worker past the limit: recycled"
mark=$(wc -l <"$DLOG")
sup0=$(sup_last_id)
# 60 runs x 12 deltas of ~24 KiB: batches of 64 entries ~1.5 MiB of replies,
# snapshots of ~290 KiB each.
$OPS gen --sock "$RSOCK" --runs-file "$RUNS" --runs 60 --deltas 12 --data-bytes 24000 --prefix big >/dev/null
wait_for 60 "tail -n +$((mark + 1)) \"\$DLOG\" | grep -q recycling" ||
	fail "no 'recycling' log line; worker $(wfield t1/persist/0 pid) VmRSS $(rss_kb "$(wfield t1/persist/0 pid)" 2>/dev/null) kB, limit $LIMIT MiB"
tail -n +$((mark + 1)) "$DLOG" | grep recycling | head -n 3 | sed 's/^/#   /'
wait_for 60 '[ "$(pending)" = 0 ] && [ "$(rcli XINFO GROUPS events | grep -A1 -x lag | tail -n 1)" = 0 ]' ||
	fail "load not consumed: pending $(pending), $(rcli XINFO GROUPS events | tr '\n' ' ')"
wait_for 20 'all_running 1' || fail "worker not RUNNING after the load: $(worker_table)"
snapshot_pids >/dev/null
p2=$(wfield t1/persist/0 pid)
[ "$p2" != "$p1" ] || fail "worker pid unchanged ($p1) after recycling"
nrec=$(tail -n +$((mark + 1)) "$DLOG" | grep -c recycling || true)
ok "recycled $nrec time(s): pid $p1 -> $p2"

check "the recycling was a clean exit and replaced; never FATAL"
sup_select "$sup0" 'e.get("worker") == "t1/persist/0"' >"$TMPD/sup.txt"
head -n 9 "$TMPD/sup.txt" | sed 's/^/#   /'
info "... $(wc -l <"$TMPD/sup.txt") supervisor events in all"
[ -z "$(sup_select "$sup0" 'e.get("to") == "FATAL"')" ] || fail "persist worker went FATAL"
# A worker recycled before restart.start_ms counts as a failed start
# (SPEC §3: any exit before start_ms -> BACKOFF), so a few BACKOFFs are
# possible under this load; max_retries = 8 keeps it clear of FATAL.
nback=$(grep -c '"to": "BACKOFF"' "$TMPD/sup.txt" || true)
[ "$nback" = 0 ] || info "NOTE: $nback recycling exits came before start_ms and were counted as failed starts (BACKOFF)"
grep -q '"to": "EXITED", "reason": "exit status 0"' "$TMPD/sup.txt" || [ "$nback" != 0 ] ||
	fail "no clean-exit transition recorded"
[ "$(wfield t1/persist/0 state)" = RUNNING ] || fail "state $(wfield t1/persist/0 state)"
ok "exit 0 -> replaced; no FATAL ($nback BACKOFF)"

check "no event lost or duplicated"
produced=$(awk '{s+=$2} END {print s}' "$RUNS")
rows=$(sqlite3 -readonly "$DB" 'SELECT count(*) FROM events')
[ "$rows" = "$produced" ] || fail "events rows $rows, produced $produced"
$OPS checkdb --db "$DB" --runs-file "$RUNS" --exact || fail "snapshots wrong"
[ "$(rcli XLEN events:dead)" = 0 ] || fail "dead letters: $(rcli XLEN events:dead)"
[ "$(pending)" = 0 ] || fail "pending $(pending)"
ok "$rows events rows == produced; snapshots exact; 0 pending; no dead letters"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
