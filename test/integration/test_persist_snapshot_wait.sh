#!/usr/bin/env bash
# Incident 5: `streamvisorctl snapshot RUN [--wait S]` tells "never arrived"
# (exit 4) from "not yet complete" (exit 5), and returns promptly once the
# run completes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

start_redis
pconfig persist_count=2
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"
# A first run so that the database exists.
gen --runs 1 --prefix seed- >/dev/null
wait_persisted 30 >/dev/null || fail "seed run not persisted"

snap() { local rc=0; ctl "$@" >"$TMPD/snap.out" 2>"$TMPD/snap.err" || rc=$?; echo "$rc"; }

check "unknown run: exit 4"
rc=$(snap snapshot no-such-run)
[ "$rc" = 4 ] || fail "snapshot no-such-run: exit $rc, want 4 ($(cat "$TMPD/snap.err"))"
ok "unknown run -> 4: $(cat "$TMPD/snap.err")"

check "unknown run, --wait 1: exit 4 after about 1 s"
t0=$(now_ms)
rc=$(snap snapshot no-such-run --wait 1)
dt=$(($(now_ms) - t0))
[ "$rc" = 4 ] || fail "snapshot no-such-run --wait 1: exit $rc, want 4 ($(cat "$TMPD/snap.err"))"
[ "$dt" -ge 900 ] || fail "--wait 1 returned after $dt ms, want >= ~1 s"
[ "$dt" -le 10000 ] || fail "--wait 1 returned after $dt ms"
ok "unknown run --wait 1 -> 4 after $dt ms: $(cat "$TMPD/snap.err")"

check "run with response.created only, --wait 1: exit 5"
rcli XADD events '*' run r-open type response.created seq 1 data '{"model":"m"}' >/dev/null
wait_for 30 '[ "$(snap snapshot r-open)" = 0 ]' || fail "r-open never persisted"
grep -q '"in_progress"' "$TMPD/snap.out" || fail "r-open snapshot: $(cat "$TMPD/snap.out")"
t0=$(now_ms)
rc=$(snap snapshot r-open --wait 1)
dt=$(($(now_ms) - t0))
[ "$rc" = 5 ] || fail "snapshot r-open --wait 1: exit $rc, want 5 ($(cat "$TMPD/snap.err"))"
[ "$dt" -ge 900 ] || fail "--wait 1 returned after $dt ms"
ok "in-progress run --wait 1 -> 5 after $dt ms: $(cat "$TMPD/snap.err")"

check "snapshot --wait 10 returns 0 promptly when response.completed arrives"
(sleep 1; rcli XADD events '*' run r-open type response.completed seq 2 data '{}' >/dev/null) &
BG=$!
t0=$(now_ms)
rc=$(snap snapshot r-open --wait 10)
dt=$(($(now_ms) - t0))
wait "$BG" || true
[ "$rc" = 0 ] || fail "snapshot r-open --wait 10: exit $rc, want 0 ($(cat "$TMPD/snap.err"))"
pyjson 'd["status"] == "completed" and d["complete"] is True and d["event_count"] == 2' <"$TMPD/snap.out" | grep -qx true ||
	fail "snapshot after --wait: $(cat "$TMPD/snap.out")"
[ "$dt" -lt 8000 ] || fail "--wait 10 returned after $dt ms: not prompt"
ok "--wait 10 -> 0 after $dt ms (completed event XADDed at ~1000 ms)"

check "--json prints one compact JSON line"
rc=$(snap --json snapshot r-open)
[ "$rc" = 0 ] && [ "$(wc -l <"$TMPD/snap.out")" = 1 ] && pyjson 'd["id"]' <"$TMPD/snap.out" | grep -qx r-open ||
	fail "--json snapshot: exit $rc: $(cat "$TMPD/snap.out")"
ok "--json snapshot"
pass
