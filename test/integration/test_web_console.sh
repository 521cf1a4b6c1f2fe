#!/usr/bin/env bash
# Issue 15, done-when 1: the web console driven in headless Chromium
# (web/console.py, selenium with Debian chromium + chromium-driver).
# The daemon serves the console on 127.0.0.1 with a token; the test makes
# a run with a message, a tool call and its output, usage and an anomaly,
# a run whose output holds </script><script>... and <img onerror=...>,
# dead letters, and a stopped worker.  In the browser: log in, one row per
# worker with the states and pids of `streamvisorctl status --json`, the
# run's snapshot rendered and its raw JSON, the markup run shown as text
# with no script run, pause the persist pool, the dead letters page by
# page, re-drive one, purge the others, restart a worker, scale a pool, a
# refused action's 409 message shown; a run with a 3 MB message rendered
# (#run-raw holds its tail), a dead letter with non-UTF-8 bytes shown
# escaped and re-driven, a 4 MB one and one of 1 MiB of random bytes shown
# and purged, the page responsive; a supervisor event with non-UTF-8
# values shown escaped.  Then through streamvisorctl: the
# worker's pid changed, the re-driven dead letter is gone (its copy back
# in the stream) and so are the purged ones.  Screenshots (desktop and
# phone width) go to the test's log
# directory: $SV_LOG_DIR/web_console/ (meson-logs/ under meson), else
# $TMPD/shots (kept with SV_KEEP_TMP=1).
# Skips (77) without chromium, chromedriver or python3-selenium.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver || true)}
[ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ] || skip "no chromium (apt-get install chromium)"
[ -n "$CHROMEDRIVER" ] && [ -x "$CHROMEDRIVER" ] || skip "no chromedriver (apt-get install chromium-driver)"
"$PY" -c 'import selenium' 2>/dev/null || skip "no python3-selenium for $PY"
export CHROMIUM CHROMEDRIVER

SHOTS=$TMPD/shots
if [ -n "${SV_LOG_DIR:-}" ]; then
	SHOTS=$SV_LOG_DIR/web_console
fi
mkdir -p "$SHOTS"

# A free loopback port (bound, then released for the daemon).
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
TOKEN=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')
printf '%s\n' "$TOKEN" >"$TMPD/token"
chmod 600 "$TMPD/token"
USER_LINE=""
if [ "$(id -u)" = 0 ]; then
	# The web child never runs as root: it reads the SQLite file as nobody.
	USER_LINE='user = "nobody";'
	chmod 755 "$TMPD"
fi

check "the console's sources: no HTML sinks, no inline script, style or handler"
sinks=$(grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(["'"'"']' "$SV_SRC_DIR/web/app.js" || true)
[ -z "$sinks" ] || fail "web/app.js uses an HTML sink or eval: $sinks"
inline=$(grep -niE '<script>|<script [^>]*>[^<]|<style|style=|\son[a-z]+=|javascript:' "$SV_SRC_DIR/web/index.html" || true)
[ -z "$inline" ] || fail "web/index.html has inline script, style or handlers: $inline"
ok "app.js builds the page with textContent/createElement only; index.html has nothing inline"

start_redis
write_config persist_count=2 tools_count=1 log_level=info \
	extra="$(tools_block "$(tool_entry echo 5000 65536 "$TOOLS_DIR/echo.sh" out)")
http = { listen = \"127.0.0.1:$PORT\"; token_file = \"$TMPD/token\"; $USER_LINE
         actions = [\"start\", \"stop\", \"restart\", \"pause\", \"resume\", \"scale\", \"dead retry\", \"dead purge\"]; };"
out=$("$STREAMVISORD" -t -c "$CONF" 2>&1) || fail "config with http = { ... } rejected: $out"
start_daemon
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null
[ "$(id -u)" != 0 ] || chmod a+r "$TMPD"/snap.db* 2>/dev/null || true

check "the console answers on $URL"
http_status() {
	"$PY" -c 'import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except Exception as e:
    print(getattr(e, "code", 0))' "$1"
}
wait_for 30 '[ "$(http_status "$URL/api/v1/session")" = 200 ]' || fail "GET $URL/api/v1/session: $(http_status "$URL/api/v1/session")"
ok "GET /api/v1/session answers"

check "a run: message, tool call with its output, usage, an anomaly"
RUN=web-run-1
RUN_TEXT="hello from the console test"
ev() { rcli XADD events '*' run "$1" type "$3" seq "$2" data "$4" >/dev/null; }
ev "$RUN" 1 response.created '{"model":"test-model","metadata":{"case":"web"}}'
ev "$RUN" 2 item.started '{"item_id":"msg_1","kind":"message","role":"assistant"}'
ev "$RUN" 3 item.delta "{\"item_id\":\"msg_1\",\"text\":\"$RUN_TEXT\"}"
ev "$RUN" 4 item.completed '{"item_id":"msg_1"}'
xadd_call "$RUN" 5 call_1 echo '{"q":"ping"}' >/dev/null
ev "$RUN" 6 item.delta '{"item_id":"msg_9","text":"lost"}'
ev "$RUN" 7 usage '{"input_tokens":11,"output_tokens":22,"reasoning_tokens":3}'
ev "$RUN" 8 response.completed '{}'
snap=$(ctl snapshot "$RUN" --wait 30 2>&1) || fail "snapshot $RUN --wait 30: $snap"
pyjson 'd["complete"] and any(i["type"] == "tool_output" for i in d["output"]) and len(d["anomalies"]) == 1' <<<"$snap" | grep -qx true ||
	fail "run $RUN not as expected: $snap"
ok "$RUN complete with its tool output"

check "a run whose output holds markup"
XRUN=web-run-markup
XSS1='</script><script>window.__pwned=1</script>'
XSS2='<img src=x onerror="window.__pwned=1">'
jstr() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
ev "$XRUN" 1 response.created "{\"model\":$(jstr "$XSS2")}"
ev "$XRUN" 2 item.started '{"item_id":"m1","kind":"message","role":"assistant"}'
ev "$XRUN" 3 item.delta "{\"item_id\":\"m1\",\"text\":$(jstr "$XSS1 then $XSS2")}"
ev "$XRUN" 4 item.completed '{"item_id":"m1"}'
xadd_call "$XRUN" 5 "$XSS2" echo "{\"html\":$(jstr "$XSS1")}" >/dev/null
ev "$XRUN" 6 response.completed '{}'
snap=$(ctl snapshot "$XRUN" --wait 30 2>&1) || fail "snapshot $XRUN --wait 30: $snap"
ok "$XRUN complete"

check "a run with a 3 MB message"
BIG=$("$PY" "$SV_TEST_DIR/web/webdata.py" bigrun "$RSOCK" events web-run-big 3) || fail "webdata.py bigrun: $BIG"
BIG_TAIL=$(pyjson 'd["tail"]' <<<"$BIG")
snap=$(ctl snapshot web-run-big --wait 60 2>&1 >/dev/null) || fail "snapshot web-run-big --wait 60: $snap"
ok "web-run-big complete ($(pyjson 'd["bytes"]' <<<"$BIG") bytes of text)"

check "a dead letter (an entry without a type)"
ORIG=$(rcli XADD events '*' run web-bad seq 1 data '{"why":"no type"}')
wait_for 30 '[ "$(rcli XLEN events:dead)" -ge 1 ]' || fail "$ORIG not dead-lettered"
DID=$(rcli --json XRANGE events:dead - + | pyjson '[e[0] for e in d if dict(zip(e[1][0::2], e[1][1::2])).get("origin_id") == "'"$ORIG"'"][0]') ||
	fail "no dead letter of $ORIG: $(rcli --json XRANGE events:dead - +)"
ok "dead letter $DID of $ORIG"
for i in 2 3; do
	rcli XADD events '*' run "web-bad-$i" seq 1 data '{"why":"no type either"}' >/dev/null
done
wait_for 30 '[ "$(rcli XLEN events:dead)" -ge 3 ]' || fail "3 dead letters expected, $(rcli XLEN events:dead)"
ok "two more dead letters, for the pages"

check "a stopped worker, so the table has more than one state to show"
ctl stop "$SV_NODE/persist/1" >/dev/null || fail "stop $SV_NODE/persist/1 failed"
wait_for 20 'state_is "$SV_NODE/persist/1" STOPPED' || fail "$SV_NODE/persist/1 not STOPPED: $(worker_json "$SV_NODE/persist/1" 2>&1)"
ok "$SV_NODE/persist/1 STOPPED"

VICTIM=$SV_NODE/tools/0
check "the browser session (web/console.py)"
rc=0
"$PY" "$SV_TEST_DIR/web/console.py" --url "$URL" --token-file "$TMPD/token" \
	--ctl "$STREAMVISORCTL -s $SOCK -c $CONF" --run "$RUN" --run-text "$RUN_TEXT" \
	--xss-run "$XRUN" --xss-text "$XSS1" --xss-text "$XSS2" \
	--big-run web-run-big --big-tail "$BIG_TAIL" --rsock "$RSOCK" --ns "$SV_NS" \
	--dead-id "$DID" --dead-total 3 --dead-stream events --pause-pool persist --victim "$VICTIM" \
	--out "$SHOTS" --profile "$TMPD/chromium" >"$TMPD/console.out" 2>&1 || rc=$?
cat "$TMPD/console.out"
[ "$rc" != 77 ] || skip "the browser could not start: $(tail -n 3 "$TMPD/console.out")"
[ "$rc" = 0 ] || fail "console.py exit $rc"
OLD_PID=$(sed -n 's/^VICTIM_OLD_PID=//p' "$TMPD/console.out")
[ -n "$OLD_PID" ] || fail "console.py did not report the victim's pid"

check "through streamvisorctl: $VICTIM has a new pid"
wait_for 30 'replaced "$VICTIM" "$OLD_PID"' || fail "$VICTIM not replaced (old pid $OLD_PID): $(worker_json "$VICTIM" 2>&1)"
NEW_PID=$(wfield "$VICTIM" pid)
remember_pid "$NEW_PID"
ok "$VICTIM: pid $OLD_PID -> $NEW_PID"

check "through streamvisorctl: the dead letter is gone, its copy is back in events"
dl=$(ctl --json dead list events 100 2>&1) || fail "dead list: $dl"
[ "$(pyjson '[e["id"] for e in d["entries"] if e["id"] == "'"$DID"'"]' <<<"$dl")" = "[]" ] || fail "dead letter $DID still listed: $dl"
[ "$(pyjson 'len(d["entries"])' <<<"$dl")" = 0 ] || fail "the purge from the browser left dead letters: $dl"
copy=$(rcli --json XRANGE events - + | pyjson '[e[0] for e in d if e[1][:2] == ["origin_id", "'"$ORIG"'"]]')
[ "$copy" != "[]" ] || fail "no copy of $ORIG in events"
ok "dead letter $DID gone (the others purged); copy $copy in events"
ctl resume persist >/dev/null || fail "resume persist failed"

check "screenshots"
for f in "$SHOTS/console.png" "$SHOTS/console-phone.png"; do
	[ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
done
ok "screenshots in $SHOTS"

check "the token is in no log line"
! grep -qF "$TOKEN" "$DLOG" || fail "the token appears in the daemon log"
ok "token not logged"
stop_daemon
pass
