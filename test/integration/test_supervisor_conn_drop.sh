#!/usr/bin/env bash
# A dropped Redis connection is a connection error, never a lost fence.
# heartbeat_replies used to return -1 for a drop and -EPERM (also -1) for a
# lost fence, so a drop while reading the heartbeat's replies made the
# worker give up its name and exit 0 (respawned, the cause masked).
#
# 1. CLIENT PAUSE WRITE holds every worker's pipelined HSET (the first reply
#    it waits for) past command_timeout_ms: the connection times out and is
#    dropped while the heartbeat replies are read.
# 2. CLIENT KILL TYPE normal drops every connection at once.
# Each time: "redis connection lost" is logged, no "fencing key ... taken",
# no worker exits, and the same pids heartbeat again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The heartbeat timeout outlasts the pause (a stale beat is not HUNG);
# claim_idle_ms may not be shorter than it.
start_redis
write_config persist_count=1 tools_count=1 command_timeout=1000 hb_timeout=6000 claim_idle=6000
start_daemon
wait_for 20 'all_running 2' || fail "expected 2 RUNNING workers, got: $(worker_table 2>&1)"
before=$(snapshot_pids)
NAMES="t1/persist/0 t1/tools/0"

# no_fence_loss_since OFFSET: the log after OFFSET shows connection errors
# and nothing of a lost fence or a worker exit.
no_fence_loss_since() {
	local tail_log
	tail_log=$(tail -c +$(($1 + 1)) "$DLOG")
	grep -q "redis connection lost" <<<"$tail_log" || fail "no connection error logged: $(tail -n 20 <<<"$tail_log")"
	! grep -qE "fencing key .* was taken|giving up the name" <<<"$tail_log" \
		|| fail "a drop was taken for a lost fence: $(grep -E 'fencing key|giving up' <<<"$tail_log" | head -3)"
	! grep -qE "worker exiting|RUNNING -> EXITED|-> STOPPED" <<<"$tail_log" \
		|| fail "a worker exited: $(grep -E 'worker exiting|EXITED|STOPPED' <<<"$tail_log" | head -3)"
}

beats_resume() {
	local n
	for n in $NAMES; do
		wait_for 20 "beat_fresh $n 1000" || fail "$n: no fresh beat after the drop: $(hb "$n")"
	done
	[ "$(worker_table)" = "$before" ] || fail "workers changed: before=[$before] now=[$(worker_table)]"
}

check "CLIENT PAUSE WRITE 2500 ms: every worker times out on its heartbeat replies"
off=$(stat -c %s "$DLOG")
rcli CLIENT PAUSE 2500 WRITE >/dev/null
sleep 3
wait_for 10 '[ "$(grep -c "redis connection lost" <(tail -c +$((off + 1)) "$DLOG"))" -ge 2 ]' \
	|| fail "not both workers lost their connection: $(tail -c +$((off + 1)) "$DLOG" | tail -n 20)"
beats_resume
no_fence_loss_since "$off"
ok "connection errors logged, no lost fence, same pids beating"

check "CLIENT KILL TYPE normal: every connection dropped at once"
off=$(stat -c %s "$DLOG")
rcli CLIENT KILL TYPE normal >/dev/null
wait_for 10 '[ "$(grep -c "redis connection lost" <(tail -c +$((off + 1)) "$DLOG"))" -ge 2 ]' \
	|| fail "the drop was not logged: $(tail -c +$((off + 1)) "$DLOG" | tail -n 20)"
beats_resume
no_fence_loss_since "$off"
ok "reconnected under the same pids"

check "the workers still work"
rcli XADD events '*' run R1 type response.created seq 1 data '{}' >/dev/null
rcli XADD events '*' run R1 type response.completed seq 2 data '{}' >/dev/null
wait_for 20 '[ "$(ctl snapshot R1 2>/dev/null | pyjson "d[\"complete\"]" 2>/dev/null)" = true ]' \
	|| fail "run R1 not persisted: $(ctl snapshot R1 2>&1)"
ok "R1 persisted"
pass
