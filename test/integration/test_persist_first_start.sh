#!/usr/bin/env bash
# Incident 3: events written before the daemon has ever started (fresh
# stream, no group) are all persisted: the group is created at 0, not $.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"

start_redis
pconfig persist_count=2

check "XADD 200 runs (1,800+ events) before the first start"
gen --runs 200 --items 2 --deltas 2 --tools --window 50
n=$(wc -l <"$EVENTS")
[ "$(rcli XLEN events)" = "$n" ] || fail "XLEN events = $(rcli XLEN events), want $n"
[ -z "$(rcli XINFO GROUPS events)" ] || fail "a group exists before the daemon started"
[ ! -e "$DB" ] || fail "snapshot db exists before the first start"

start_daemon
t0=$(now_ms)
wait_persisted 60 || fail "not every event was persisted"
info "all $n events persisted $(($(now_ms) - t0)) ms after the start"
check_snapshots --exact || fail "snapshots differ from the reference"
rows=$(events_rows)
[ "$rows" = "$n" ] || fail "events rows = $rows, want $n"
ok "every pre-start event persisted ($rows rows), snapshots equal the reference"

check "XINFO GROUPS events: $GROUP delivered everything (created at 0)"
wait_pending_zero 30 || fail "pending stays $(pending_count)"
info=$(rcli --json XINFO GROUPS events)
printf '%s\n' "$info"
grp=$(pyjson '[g for g in d if g["name"] == "'"$GROUP"'"]' <<<"$info")
[ "$(pyjson 'len(d)' <<<"$grp")" = 1 ] || fail "group $GROUP missing: $info"
last=$(rcli --json XINFO STREAM events | pyjson 'd["last-generated-id"]')
[ "$(pyjson 'd[0]["last-delivered-id"]' <<<"$grp")" = "$last" ] || fail "last-delivered-id != stream's last id $last: $grp"
[ "$(pyjson 'd[0]["entries-read"]' <<<"$grp")" = "$n" ] || fail "entries-read != $n (group not created at 0?): $grp"
[ "$(pyjson 'd[0]["lag"]' <<<"$grp")" = 0 ] || fail "lag != 0: $grp"
[ "$(pyjson 'd[0]["pending"]' <<<"$grp")" = 0 ] || fail "pending != 0: $grp"
[ "$(dead_len)" = 0 ] || fail "dead letters: $(rcli XRANGE events:dead - + COUNT 3)"
assert_no_fatal
ok "group $GROUP read all $n entries from 0, lag 0, pending 0, no dead letters"
pass
