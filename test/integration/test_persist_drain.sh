#!/usr/bin/env bash
# Incident 5: `drain --yes` destroys the groups and deletes the streams;
# the running workers re-create their group (XREADGROUP and XAUTOCLAIM heal
# from NOGROUP) and the events written afterwards are persisted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

CLAIM=1000
start_redis
pconfig persist_count=2 claim_idle=$CLAIM
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"
pids0=$(worker_table | awk '{print $1, $3}')

loop_errs() {
	rcli INFO commandstats | tr -d '\r' |
		awk -F'[:,=]' '/^cmdstat_(xreadgroup|xautoclaim|xack|xgroup\|create):/ {
			for (i = 2; i < NF; i++) if ($i == "failed_calls") s += $(i + 1) } END { print s + 0 }'
}

check "before: 100 runs persisted"
gen --runs 100 --prefix a- --seed 1 >/dev/null
wait_persisted 30 >/dev/null || fail "first batch not persisted"

for round in 1 2; do
	check "round $round: drain --yes, then new events at once"
	out=$(ctl drain --yes 2>&1) || fail "drain failed: $out"
	info "drain: $(tr '\n' ' ' <<<"$out")"
	t0=$(now_ms)
	gen --append --runs 100 --prefix "d$round-" --seed $((round + 1)) >/dev/null
	wait_persisted 60 >/dev/null || fail "round $round: events after drain not persisted"
	info "round $round: events written right after drain persisted in $(($(now_ms) - t0)) ms"
	rcli XINFO GROUPS events | grep -qx "$GROUP" || fail "group $GROUP not re-created"
	wait_pending_zero 30 || fail "pending stays $(pending_count)"
	# Two claim sweeps later, nothing is failing in a loop.
	a=$(loop_errs)
	sleep $((2 * CLAIM / 1000 + 1))
	b=$(loop_errs)
	info "round $round: failed XREADGROUP/XAUTOCLAIM/XACK calls $a -> $b over $((2 * CLAIM / 1000 + 1)) s"
	[ "$a" = "$b" ] || fail "round $round: worker commands keep failing after drain ($a -> $b)"
done

check "snapshots of every batch equal the reference; same workers, no FATAL"
check_snapshots --exact || fail "snapshots differ from the reference"
[ "$(worker_table | awk '{print $1, $3}')" = "$pids0" ] || fail "workers restarted across drain: $(worker_table)"
lines=$(nogroup_lines)
info "lost-group/NOGROUP log lines: $lines"
[ "$lines" -le 20 ] || fail "$lines NOGROUP/lost-group log lines"
assert_no_fatal
ok "drain twice: workers re-created $GROUP and persisted everything after it"
pass
