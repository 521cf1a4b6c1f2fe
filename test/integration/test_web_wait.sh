#!/usr/bin/env bash
# Issue 15, done-when 3: GET /api/v1/runs/ID[?wait=SECONDS], the long-poll
# for a persisted run.
#   - an unknown run: 404 {"error":"no such run"}, after the wait (wait=1);
#   - a run that exists but is not complete: without wait 200 (complete
#     false); with wait=2, 202 at the deadline with the snapshot so far;
#   - the terminal event arriving during a wait=5: 200 with the snapshot,
#     well before the deadline, the body equal to `streamvisorctl snapshot
#     ID`, headers X-Streamvisor-Pool and X-Streamvisor-Complete: true;
#   - the token is needed (401); wait outside 0..60 -> 400;
#   - 70 concurrent waits: at most 64 (max_waits) wait, the rest 503 at
#     once; afterwards a wait works again.
# No timing is judged but "well before the deadline" (< 2.5 s of 5);
# tools/svbench's `wait` mode measures the latency (run here on 20 runs
# as a smoke test of that mode).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/web/common.sh"

start_redis
web_config persist_count=1 tools_count=1 log_level=info
require_http
start_daemon
wait_for 30 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
api_ready 20 || fail "the API does not answer on 127.0.0.1:$PORT: $($WEBC req "$PORT" GET /api/v1/session)"

# xadd RUN SEQ TYPE DATA
xadd() { rcli XADD events '*' run "$1" seq "$2" type "$3" ts "$(now_ms)" data "$4" >/dev/null; }
# begin RUN: a run's first events (not complete).
begin() {
	xadd "$1" 1 response.created '{"model":"m1"}'
	xadd "$1" 2 item.started '{"item_id":"m0","kind":"message","role":"assistant"}'
	xadd "$1" 3 item.delta '{"item_id":"m0","text":"hello "}'
}
# persisted RUN: streamvisorctl snapshot finds it.
persisted() { ctl snapshot "$1" >/dev/null 2>&1; }
# same_as_ctl RUN: the last answer's body is `streamvisorctl snapshot RUN`
# (as JSON values; byte equality with --json is reported).
same_as_ctl() {
	local want
	want=$(ctl --json snapshot "$1") || fail "streamvisorctl snapshot $1 failed"
	hbody_to "$TMPD/body.http"
	printf '%s\n' "$want" >"$TMPD/body.ctl"
	"$PY" -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
sys.exit(0 if a == b else 1)' "$TMPD/body.http" "$TMPD/body.ctl" ||
		fail "the body of run $1 is not streamvisorctl snapshot's: http $(head -c 400 "$TMPD/body.http") ctl $(head -c 400 "$TMPD/body.ctl")"
	if [ "$(hbody)" = "$want" ]; then
		info "body byte-equal to streamvisorctl --json snapshot $1"
	else
		info "body equal as JSON to streamvisorctl snapshot $1 (bytes differ from --json)"
	fi
}

check "the token is needed; wait outside 0..60 -> 400"
api GET "/api/v1/runs/NOPE?wait=1"
want_status 401 "no token"
api GET "/api/v1/runs/NOPE?wait=1" --bearer-file "$WRONGF"
want_status 401 "a wrong token"
for w in 61 -1 abc 1e9; do
	api GET "/api/v1/runs/NOPE?wait=$w" --bearer-file "$TOKF"
	want_status 400 "wait=$w"
done
ok "401 without the token, 400 for wait=61/-1/abc/1e9"

check "an unknown run: 404 after the wait"
api GET "/api/v1/runs/NOPE-$$?wait=1" --bearer-file "$TOKF"
want_status 404 "unknown run, wait=1"
[ "$(hjson 'd["error"]')" = "no such run" ] || fail "404 body: $(short)"
ms=$(pyjson 'd["ms"]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $ms >= 900 else 1)" || fail "404 after $ms ms: not after the 1 s wait"
api GET "/api/v1/runs/NOPE-$$" --bearer-file "$TOKF"
want_status 404 "unknown run, no wait"
ok "404 {\"error\":\"no such run\"} after ${ms} ms (wait=1), at once without wait"

check "a run not complete: 200 without wait, 202 at the deadline of wait=2"
begin R1
wait_for 20 'persisted R1' || fail "R1 not persisted: $(ctl snapshot R1 2>&1 | head -c 300)"
api GET /api/v1/runs/R1 --bearer-file "$TOKF"
want_status 200 "R1 without wait"
[ "$(hh x-streamvisor-complete)" = false ] || fail "X-Streamvisor-Complete: $(hh x-streamvisor-complete)"
[ "$(hh x-streamvisor-pool)" = persist ] || fail "X-Streamvisor-Pool: $(hh x-streamvisor-pool)"
same_as_ctl R1
api GET "/api/v1/runs/R1?wait=2" --bearer-file "$TOKF"
want_status 202 "R1 with wait=2"
ms=$(pyjson 'd["ms"]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $ms >= 1900 else 1)" || fail "202 after $ms ms: before the deadline"
[ "$(hh x-streamvisor-complete)" = false ] || fail "202 with X-Streamvisor-Complete: $(hh x-streamvisor-complete)"
[ "$(hjson 'd["status"]')" != completed ] || fail "202 with a completed snapshot: $(short)"
same_as_ctl R1
ok "200 (complete false) at once; 202 after $ms ms with the snapshot so far"

check "the terminal event during a wait=5: 200 well before the deadline, the body = streamvisorctl snapshot"
ev=$("$PY" -c 'import json, time; print(json.dumps({"run": "R1", "seq": "4", "type": "response.completed", "ts": str(int(time.time()*1000)), "data": "{}"}))')
R=$($WEBC waitxadd "$PORT" R1 --wait 5 --bearer-file "$TOKF" --rsock "$RSOCK" --after 0.7 --event "$ev")
info "$(pyjson '"status %s after %s ms; XADD -> answer %s ms" % (d["status"], d["total_ms"], d["xadd_to_answer_ms"])' <<<"$R")"
want_status 200 "R1 completed during the wait"
[ "$(pyjson 'd["answered_before_xadd"]' <<<"$R")" = false ] || fail "answered before the terminal XADD: $(short)"
lat=$(pyjson 'd["xadd_to_answer_ms"]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $lat < 2500 else 1)" || fail "200 came $lat ms after the terminal XADD (the deadline was 5 s)"
[ "$(hh x-streamvisor-complete)" = true ] || fail "X-Streamvisor-Complete: $(hh x-streamvisor-complete)"
[ "$(hh x-streamvisor-pool)" = persist ] || fail "X-Streamvisor-Pool: $(hh x-streamvisor-pool)"
[ "$(hjson 'd["status"]')" = completed ] || fail "snapshot status: $(short)"
same_as_ctl R1
api GET "/api/v1/runs/R1?wait=5" --bearer-file "$TOKF"
want_status 200 "R1 complete, wait=5"
ms=$(pyjson 'd["ms"]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $ms < 2500 else 1)" || fail "a complete run took $ms ms with wait=5"
ok "200 $lat ms after the terminal XADD; a complete run answers at once ($ms ms)"

check "a run that appears during the wait: 200 when it completes"
ev=$("$PY" -c '
import json, time
ts = str(int(time.time() * 1000))
print(json.dumps([{"run": "R3", "seq": "1", "type": "response.created", "ts": ts, "data": "{}"},
                  {"run": "R3", "seq": "2", "type": "response.completed", "ts": ts, "data": "{}"}]))')
R=$($WEBC waitxadd "$PORT" R3 --wait 5 --bearer-file "$TOKF" --rsock "$RSOCK" --after 0.5 --event "$ev")
want_status 200 "R3 created and completed during the wait"
lat=$(pyjson 'd["xadd_to_answer_ms"]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $lat < 2500 else 1)" || fail "R3: 200 came $lat ms after its XADDs"
same_as_ctl R3
ok "R3: 200 $lat ms after its two events (created, completed)"

check "run ids in paths are percent-decoded; NUL or more than 1024 bytes -> 400"
ODD='R 5/é?x%y'
rcli XADD events '*' run "$ODD" seq 1 type response.created data '{}' >/dev/null
rcli XADD events '*' run "$ODD" seq 2 type response.completed data '{}' >/dev/null
wait_for 20 'persisted "$ODD"' || fail "run '$ODD' not persisted"
q=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$ODD")
api GET "/api/v1/runs/$q" --bearer-file "$TOKF"
want_status 200 "GET /api/v1/runs/$q"
same_as_ctl "$ODD"
api GET "/api/v1/runs/a%00b" --bearer-file "$TOKF"
want_status 400 "a run id with NUL"
api GET "/api/v1/runs/$(printf 'a%.0s' {1..1025})" --bearer-file "$TOKF"
want_status 400 "a run id of 1025 bytes"
api GET "/api/v1/runs/$(printf 'a%.0s' {1..1024})" --bearer-file "$TOKF"
want_status 404 "a run id of 1024 bytes"
ok "'$ODD' as $q: 200; NUL, 1025 bytes: 400; 1024 bytes: 404"

check "70 concurrent waits: at most 64 wait (202 at the deadline), the rest 503 at once"
begin R2
wait_for 20 'persisted R2' || fail "R2 not persisted"
R=$($WEBC waits "$PORT" R2 --n 70 --wait 3 --bearer-file "$TOKF")
info "70 waits: $R"
n202=$(pyjson 'd["statuses"].get("202", 0)' <<<"$R")
n503=$(pyjson 'd["statuses"].get("503", 0)' <<<"$R")
[ $((n202 + n503)) = 70 ] || fail "70 waits: other answers than 202 and 503: $R"
[ "$n503" -ge 6 ] || fail "only $n503 of 70 concurrent waits refused (max_waits 64): $R"
[ "$n202" -ge 1 ] || fail "no wait was served: $R"
slow503=$(pyjson 'd["ms"]["503"][1]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $slow503 < 2000 else 1)" || fail "a 503 took $slow503 ms: not at once"
fast202=$(pyjson 'd["ms"]["202"][0]' <<<"$R")
"$PY" -c "import sys; sys.exit(0 if $fast202 >= 2900 else 1)" || fail "a 202 came after $fast202 ms, before the 3 s deadline"
api GET "/api/v1/runs/R2?wait=1" --bearer-file "$TOKF"
want_status 202 "a wait after the crowd"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
ok "$n202 x 202 (>= ${fast202} ms), $n503 x 503 (<= ${slow503} ms); waits work again"

check "no writer running (the persistence pool stopped): runs still read, read-only"
ctl stop persist >/dev/null || fail "stop persist failed"
api GET "/api/v1/runs/R1?wait=1" --bearer-file "$TOKF"
want_status 200 "R1 with no writer running"
same_as_ctl R1
api GET "/api/v1/runs/NEVER?wait=1" --bearer-file "$TOKF"
want_status 404 "an unknown run with no writer running"
ctl start persist >/dev/null || fail "start persist failed"
wait_for 30 'all_running 2' || fail "persist not RUNNING again: $(worker_table 2>&1)"
ok "200 with the same body, 404 for an unknown run, while no persistence worker runs"

check "svbench wait (smoke): 20 runs, every long-poll a complete 200"
: "${SVBENCH:=$SV_SRC_DIR/build-test/tools/svbench}"
if [ -x "$SVBENCH" ]; then
	rc=0
	out=$("$SVBENCH" wait --url "http://127.0.0.1:$PORT" --token-file "$TOKF" --redis "unix://$RSOCK" \
		--count 20 --interval-ms 20 2>"$TMPD/svbench.err") || rc=$?
	info "$out"
	[ "$rc" = 0 ] || fail "svbench wait exit $rc: $out $(head -c 600 "$TMPD/svbench.err")"
	[ "$(pyjson 'd["failed"] == 0 and d["wait_latency_ms"]["samples"] == 20 and 0 < d["wait_latency_ms"]["p50"] <= d["wait_latency_ms"]["p99"]' <<<"$out")" = true ] ||
		fail "svbench wait: $out"
	ok "svbench wait: p50 $(pyjson 'd["wait_latency_ms"]["p50"]' <<<"$out") ms over 20 runs (not judged)"
else
	info "SKIP sub-check: no $SVBENCH"
fi

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
