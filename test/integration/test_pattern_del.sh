#!/usr/bin/env bash
# Issue 11, done-when 2: a harness reset under load.  Both pools read
# `codex:run:*:events`.  While the persistence workers still work through
# a burst of runs in per-run streams, every run stream is DELeted (the
# groups with them).  Then new runs in new streams are processed without an
# operator (no ctl command, no reload); the deleted streams stay deleted
# (no self-heal re-created them with MKSTREAM, nothing left them in a read
# set that keeps failing); no worker goes FATAL or crashes; the NOGROUP
# errors at Redis stop growing and the daemon log has a bounded number of
# lost-group lines (no endless loop).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

start_redis
pat_config persist_count=2 tools_count=2 block_ms=1000 hb_interval=1000 hb_timeout=3000 claim_idle=3000
start_daemon
wait_for 30 'all_running 4' || fail "expected 4 RUNNING workers: $(worker_table 2>&1)"
NWORKERS=4

check "warm-up: 200 runs in their own streams, every 5th with a tool.call"
EV_W=$TMPD/ev-w.jsonl
$PT gen --sock "$RSOCK" --out "$EV_W" --runs 200 --items 1 --deltas 1 --tool-every 5 \
	--stream-fmt "$PFMT" --prefix w- --seed 1
wait_persisted $(scaled 90) "$EV_W" || fail "warm-up not persisted"
$PT outputs --sock "$RSOCK" --events "$EV_W" --stream-fmt "$PFMT" --timeout $(scaled 90) --append \
	|| fail "warm-up tool outputs"
wait_persisted $(scaled 60) "$EV_W" || fail "warm-up tool outputs not persisted"
ok "warm-up done: both pools have groups on 200 run streams"
pids_before=$(snapshot_pids | awk '{print $1, $3}')

check "a burst of 1,000 runs (no tool calls), then DEL of every run stream while it is being consumed"
EV_A=$TMPD/ev-a.jsonl
$PT gen --sock "$RSOCK" --out "$EV_A" --runs 1000 --items 2 --deltas 3 --window 100 \
	--stream-fmt "$PFMT" --prefix a- --seed 2
persisted_a=$($PY -c '
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
print(db.execute("SELECT count(*) FROM snapshots WHERE run LIKE ?", ("a-%",)).fetchone()[0])' "$DB")
pat_keys >"$TMPD/deleted.txt"
ndel=$(wc -l <"$TMPD/deleted.txt")
LOG_OFF=$(stat -c %s "$DLOG")
errs0=$(loop_errs)
$PY - "$SV_TEST_DIR" "$RSOCK" "$TMPD/deleted.txt" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from resp import Redis
r = Redis(sys.argv[2])
names = [l.strip() for l in open(sys.argv[3]) if l.strip()]
n = 0
for c in range(0, len(names), 500):
    n += sum(r.pipeline([["DEL", k] for k in names[c:c + 500]]))
print("# DEL: %d of %d run streams deleted" % (n, len(names)))
PYEOF
t_del=$(now_ms)
info "$ndel run streams deleted; $persisted_a of 1000 burst runs had a snapshot at the DEL (under load when < 1000)"
[ "$ndel" -eq 1200 ] || fail "$ndel run streams before the DEL, want 1200"
[ -z "$(pat_keys)" ] || fail "run streams left after the DEL: $(pat_keys | head -3)"

check "new runs in new streams are processed without an operator"
EV_B=$TMPD/ev-b.jsonl
$PT gen --sock "$RSOCK" --out "$EV_B" --runs 300 --items 1 --deltas 2 --tool-every 3 \
	--stream-fmt "$PFMT" --prefix b- --seed 3
wait_persisted $(scaled 120) "$EV_B" || { pat_diag; fail "runs written after the DEL were not persisted"; }
info "runs after the reset persisted $(($(now_ms) - t_del)) ms after the DEL"
$PT outputs --sock "$RSOCK" --events "$EV_B" --stream-fmt "$PFMT" --timeout $(scaled 120) --append \
	|| fail "tool outputs after the reset"
wait_persisted $(scaled 60) "$EV_B" || fail "tool outputs after the reset not persisted"
check_snapshots "$EV_B" || fail "snapshots of the new runs differ from the reference"
check_snapshots "$EV_W" || fail "snapshots of the warm-up runs changed"
pat_keys 'codex:run:b-*' >"$TMPD/new.txt"
[ "$(wc -l <"$TMPD/new.txt")" = 300 ] || fail "$(wc -l <"$TMPD/new.txt") new run streams, want 300"
wait_for $(scaled 60) 'pat_groups_ok "$TMPD/new.txt" >"$TMPD/groups.out"' \
	|| fail "groups on the new streams: $(cat "$TMPD/groups.out")"
ok "300 new runs persisted and answered, both groups at lag 0 on every new stream"

check "the deleted streams stay deleted"
sleep $(scaled 5)
left=$($PY - "$SV_TEST_DIR" "$RSOCK" "$TMPD/deleted.txt" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from resp import Redis
r = Redis(sys.argv[2])
names = [l.strip() for l in open(sys.argv[3]) if l.strip()]
back = [k for k, e in zip(names, r.pipeline([["EXISTS", k] for k in names])) if e]
print(" ".join(back[:5]) + (" (%d in all)" % len(back) if back else ""))
PYEOF
)
[ -z "$left" ] || fail "deleted run streams were re-created: $left"
[ -z "$(pat_dead_keys)" ] || fail "dead letters: $(pat_dead_keys | head -3)"
ok "all $ndel deleted streams still absent after $(scaled 5) s"

check "no endless NOGROUP loop, no FATAL, no crash"
a=$(loop_errs)
sleep $(scaled 3)
b=$(loop_errs)
lines=$(tail -c +$((LOG_OFF + 1)) "$DLOG" | grep -ciE 'NOGROUP|group .* lost|UNBLOCKED|no such key|dropp' || true)
sleep $(scaled 3)
lines2=$(tail -c +$((LOG_OFF + 1)) "$DLOG" | grep -ciE 'NOGROUP|group .* lost|UNBLOCKED|no such key|dropp' || true)
info "failed XREADGROUP/XAUTOCLAIM/XACK/XGROUP calls at Redis: $errs0 before the DEL, $a -> $b over 3 s idle; lost-group/dropped log lines since the DEL: $lines, 3 s later $lines2"
if [ "$a" != "$b" ]; then
	rcli INFO commandstats | grep 'failed_calls=[1-9]' || true
	fail "worker commands keep failing ($a -> $b): endless NOGROUP loop?"
fi
[ "$lines" = "$lines2" ] || fail "lost-group log lines keep coming ($lines -> $lines2)"
# At most a few lines per deleted stream and worker, however they are worded.
max=$((2 * ndel * NWORKERS + 50))
[ "$lines" -le "$max" ] || fail "$lines lost-group/NOGROUP log lines (bound $max)"
assert_no_fatal
crashes=$(grep -E 'worker t1/(persist|tools)/[0-9]+ .*(killed by signal|exit status [1-9])' "$DLOG" || true)
[ -z "$crashes" ] || fail "workers crashed on the reset: $(cut -c1-200 <<<"$crashes" | head -n 3)"
wait_for 20 'all_running 4' || fail "workers not RUNNING: $(worker_table 2>&1)"
pids_after=$(snapshot_pids | awk '{print $1, $3}')
info "workers (name pid) before the DEL: $(tr '\n' ';' <<<"$pids_before") after: $(tr '\n' ';' <<<"$pids_after")"
[ "$pids_before" = "$pids_after" ] || fail "workers were restarted by the reset"
ok "reset absorbed: errors stopped, $lines log lines, no worker restarted"
pass
