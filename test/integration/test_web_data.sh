#!/usr/bin/env bash
# Issue 15 and the project rule "test every operator view with non-UTF-8
# bytes and multi-megabyte values": the HTTP API over odd data.
#   - a dead letter whose metadata and fields hold non-UTF-8 bytes (\xff\xfe,
#     a NUL, an invalid continuation, a surrogate) and one whose data is
#     4 MB: GET /api/v1/dead lists both (200, strict UTF-8 JSON, binary
#     declared {"b64"}, the 4 MB field cut with its size); GET
#     /api/v1/dead/ID, following "next" (?from=ITEM:OFFSET, 1 MiB chunks),
#     gives both byte-exact: the same netstrings as `streamvisorctl dead
#     show ID --raw FILE`; `dead retry` of the binary one through POST
#     /api/v1/ctl re-drives it byte-exact (and it is persisted);
#   - a run with a 3 MB message (its last delta an entry of exactly 1 MiB,
#     the daemon's most) and a run whose texts hold every C0
#     control, DEL, U+2028/9 and astral-plane characters: GET
#     /api/v1/runs/ID is 200 and byte-equal to `streamvisorctl --json
#     snapshot ID` (the latter's id "wd-odd/<U+1F600> ?#%&+", percent-encoded
#     in the path);
#   - /api/v1/status and /metrics keep answering (probed every 0.3 s)
#     while those are served;
#   - a NS:supervisor entry with binary field names and values and bogus
#     NS:workers fields (binary name, binary and non-JSON values, 4 MB
#     heartbeats of another node) written
#     straight to Redis: /api/v1/events, /api/v1/status and /metrics stay
#     200 (strict UTF-8 JSON; the exposition valid);
#   - ids and query values that are not UTF-8 or hold a NUL: a run id that
#     is not text 404 (no such run can exist), the rest 400 with a JSON
#     error (before: 503 "not readable" for the run, and a stream or cursor
#     silently cut at the NUL or dropped).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/web/common.sh"
WD="$PY $SV_TEST_DIR/web/webdata.py"
DI="$PY $SV_TEST_DIR/dead/deadit.py"

start_redis
web_config persist_count=1 tools_count=0 log_level=info
require_http
start_daemon
wait_for 30 'all_running 1' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null
api_ready 20 || fail "the API does not answer on 127.0.0.1:$PORT: $($WEBC req "$PORT" GET /api/v1/session)"
[ "$(id -u)" != 0 ] || chmod a+r "$TMPD"/snap.db* 2>/dev/null || true
WEB_PID=$(web_child_pid) || fail "no single web child"

# wget_ PATH OUT [--bearer-file F]: GET; W holds webdata.py's summary.
W=
wget_() { W=$($WD get "$PORT" "$@") || fail "webdata.py get $1 failed"; }
wst() { pyjson 'd["status"]' <<<"$W"; }
want_ok_json() {
	[ "$(pyjson 'd["status"] == 200 and d["json_ok"]' <<<"$W")" = true ] || fail "$1: $W"
}

# Probes of the status views, all along the heavy requests.
$WEBC probe "$PORT" --secs 14 --interval 0.3 --limit 3 --path /api/v1/status >"$TMPD/probe-status.out" 2>&1 &
PROBE1=$!
remember_pid "$PROBE1"
$WEBC probe "$PORT" --secs 14 --interval 0.3 --limit 3 --path /metrics >"$TMPD/probe-metrics.out" 2>&1 &
PROBE2=$!
remember_pid "$PROBE2"

check "a binary dead letter, a 4 MB one, one with 1 MiB of random bytes"
D=$($WD deadletters "$RSOCK" events --run-prefix wd) || fail "webdata.py deadletters: $D"
BIN=$(pyjson 'd["bin"]' <<<"$D")
BIG=$(pyjson 'd["big"]' <<<"$D")
BIGSZ=$(pyjson 'd["big_size"]' <<<"$D")
RND=$(pyjson 'd["rnd"]' <<<"$D")
ok "binary $BIN, big $BIG ($BIGSZ bytes of data), random bytes $RND"

check "GET /api/v1/dead lists both: 200, strict JSON, bytes declared {\"b64\"}, the 4 MB field cut"
wget_ "/api/v1/dead?stream=events&limit=10" "$TMPD/list.json" --bearer-file "$TOKF"
want_ok_json "GET /api/v1/dead"
info "dead list: $(pyjson '"%d bytes in %s ms" % (d["bytes"], d["ms"])' <<<"$W")"
"$PY" - "$TMPD/list.json" "$BIN" "$BIG" "$BIGSZ" "$RND" <<'EOF' || fail "the list is not as expected (see above)"
import base64, json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
bid, gid, bigsz = sys.argv[2], sys.argv[3], int(sys.argv[4])
es = {e["id"]: e for e in d["entries"]}
assert set(es) == {bid, gid, sys.argv[5]}, "ids %s" % list(es)
raw = lambda v: base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode()
b = es[bid]
assert b["reason"] == {"b64": base64.b64encode(b"bad \xff\xfe reason").decode()}, "reason %r" % b["reason"]
assert raw(b["consumer"]) == b"c\xff1", "consumer %r" % b["consumer"]
f = [(raw(x["name"]), raw(x["value"])) for x in b["fields"]]
want = [(b"run", b"wd-bin"), (b"type", b"response.created"), (b"seq", b"1"),
        (b"\xc3(bin", b"\xff\xfe\x00a\xe2\x28\xa1\x80"),
        (b"note", b"nul\x00inside \xf0\x9f\x98\x80 and \xed\xa0\x80 (a surrogate)"), (b"data", b'{"model":"m-bin"}')]
assert f == want, "fields %r" % f
for x in b["fields"]:
    for k in ("name", "value"):
        v = x[k]
        assert isinstance(v, str) or (isinstance(v, dict) and list(v) == ["b64"]), "not declared: %r" % v
g = es[gid]
data = [x for x in g["fields"] if x["name"] == "data"][0]
assert data["size"] == bigsz and data["cut"] is True and len(raw(data["value"])) <= 256, "data %r" % data
print("# list: binary fields declared and exact; data of %d bytes cut to %d" % (bigsz, len(raw(data["value"]))))
EOF
wget_ "/api/v1/dead?limit=1000" "$TMPD/list1000.json" --bearer-file "$TOKF"
want_ok_json "GET /api/v1/dead?limit=1000 (the most)"
ok "both listed; limit=1000 answers too"

check "GET /api/v1/dead/ID gives each whole (chunks followed), byte-exact as streamvisorctl dead show --raw"
for id in "$BIN" "$BIG" "$RND"; do
	ctl -t 30 dead show "$id" --raw "$TMPD/raw.$id" >/dev/null || fail "streamvisorctl dead show $id --raw failed"
	S=$($WD deadshow "$PORT" "$id" events "$TMPD/raw.$id" --bearer-file "$TOKF") || fail "GET /api/v1/dead/$id differs from dead show --raw: $S"
	info "$id: $S"
done
# and the Redis entry itself, for the 4 MB one (its fields after the 6 metadata)
[ "$($DI netstrings "$TMPD/raw.$BIG" | pyjson '[[a, len(b) // 2] for a, b in d]')" = \
  "$($DI fields "$RSOCK" events:dead "$BIG" | pyjson 'json.dumps([[a, len(b) // 2] for a, b in d[6:]])')" ] ||
	fail "dead show --raw of $BIG is not the entry"
[ "$(pyjson 'd["requests"] > 1' <<<"$S")" = true ] ||
	info "(the 4 MB letter came in one answer)"
ok "all three byte-exact through the API"

check "dead retry of the binary letter through POST /api/v1/ctl"
before=$(rcli XLEN events)
api POST /api/v1/ctl --json "{\"command\":\"dead\",\"args\":[\"retry\",\"$BIN\",\"--stream\",\"events\"]}" --origin "$ORIGIN" --bearer-file "$TOKF"
want_status 200 "dead retry $BIN"
[ "$(hjson 'len(d["retried"])')" = 1 ] || fail "retry reply: $(short)"
[ "$(rcli XLEN events)" = $((before + 1)) ] || fail "events grew by $(($(rcli XLEN events) - before))"
COPY=$(rcli XREVRANGE events + - COUNT 1 | head -n 1)
got=$($DI fields "$RSOCK" events "$COPY" | pyjson 'json.dumps(d[1:])')
want=$("$PY" -c '
import json
f = [(b"run", b"wd-bin"), (b"type", b"response.created"), (b"seq", b"1"), (b"\xc3(bin", b"\xff\xfe\x00a\xe2\x28\xa1\x80"),
     (b"note", b"nul\x00inside \xf0\x9f\x98\x80 and \xed\xa0\x80 (a surrogate)"), (b"data", b"{\"model\":\"m-bin\"}")]
print(json.dumps([[a.hex(), b.hex()] for a, b in f]))')
[ "$got" = "$want" ] || fail "the copy $COPY holds $got, want $want"
[ -z "$(rcli XRANGE events:dead "$BIN" "$BIN")" ] || fail "$BIN still in events:dead"
wait_for 30 'ctl snapshot wd-bin >/dev/null 2>&1' || fail "the re-driven copy was not persisted"
ok "re-driven byte-exact as $COPY; persisted"

check "a run with a 3 MB message and a run of control and astral-plane characters"
B=$($WD bigrun "$RSOCK" events wd-big 3) || fail "bigrun: $B"
[ "$(pyjson 'd["last_entry"]' <<<"$B")" = 1048576 ] || fail "the last delta's entry is not 1 MiB: $B"
# the odd run's id needs percent-encoding in the path: /, ?, #, %, &, +,
# a space and an astral-plane character
ODDRUN=$'wd-odd/\xf0\x9f\x98\x80 ?#%&+'
$WD oddrun "$RSOCK" events "$ODDRUN" >/dev/null || fail "oddrun failed"
for run in wd-big "$ODDRUN"; do
	s=$(ctl snapshot "$run" --wait 60 2>&1 >/dev/null) || fail "snapshot $run --wait 60: $s"
done
ok "both persisted and complete"

check "GET /api/v1/runs/ID: 200, byte-equal to streamvisorctl --json snapshot ID"
for f in big odd; do
	if [ $f = big ]; then run=wd-big; else run=$ODDRUN; fi
	qrun=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$run")
	wget_ "/api/v1/runs/$qrun" "$TMPD/run.$f.http" --bearer-file "$TOKF"
	want_ok_json "GET /api/v1/runs/$qrun"
	ctl --json snapshot "$run" >"$TMPD/run.$f.ctl" || fail "streamvisorctl --json snapshot $run"
	printf '\n' >>"$TMPD/run.$f.http"
	cmp -s "$TMPD/run.$f.http" "$TMPD/run.$f.ctl" ||
		fail "run $run: the body ($(wc -c <"$TMPD/run.$f.http") B) is not byte-equal to streamvisorctl --json snapshot ($(wc -c <"$TMPD/run.$f.ctl") B): $(cmp "$TMPD/run.$f.http" "$TMPD/run.$f.ctl" 2>&1 | head -n 1)"
	info "$qrun: $(pyjson '"%d bytes in %s ms" % (d["bytes"], d["ms"])' <<<"$W")"
done
tail=$(pyjson 'd["tail"]' <<<"$B")
grep -qF "$tail" "$TMPD/run.big.http" || fail "the 3 MB run lacks its tail $tail"
"$PY" - "$TMPD/run.odd.http" "$SV_TEST_DIR/web" <<'EOF' || fail "the odd run's text is not what was sent"
import json, sys
sys.path.insert(0, sys.argv[2])
d = json.load(open(sys.argv[1], encoding="utf-8"))
from webdata import ODD
m = d["output"][0]
assert m["content"] == ODD + ODD, "content %r" % m["content"][:200]
assert d["id"] == "wd-odd/\U0001F600 ?#%&+", d["id"]
assert d["metadata"]["odd"] == ODD and d["model"] == "odd\U0001F600\u0001", (d["model"], d["metadata"])
EOF
ok "both byte-equal; the 3 MB text whole, the odd text exact"

check "status and /metrics answered throughout"
rc1=0 rc2=0
wait "$PROBE1" || rc1=$?
wait "$PROBE2" || rc2=$?
info "status probe: $(cat "$TMPD/probe-status.out")"
info "metrics probe: $(cat "$TMPD/probe-metrics.out")"
[ "$rc1" = 0 ] || fail "GET /api/v1/status failed or was slow (> 3 s) while the large data was served"
[ "$rc2" = 0 ] || fail "GET /metrics failed or was slow (> 3 s) while the large data was served"
ok "every probe answered 200 within 3 s"

check "binary supervisor events and bogus NS:workers fields written to Redis"
"$PY" - "$RSOCK" "$SV_NS" <<EOF || fail "writing the bogus entries failed"
import sys
sys.path.insert(0, "$SV_TEST_DIR")
from resp import Redis
r = Redis(sys.argv[1], raw=True)
ns = sys.argv[2].encode()
r.cmd("XADD", ns + b":supervisor", "*", b"worker", b"t1/\xff\xfe/0", b"from", b"RUNNING", b"to", b"\xc3(", b"reason", b"a\x00b",
      b"\xffname", b"v")
r.cmd("XADD", ns + b":supervisor", "*", b"worker", b"t1/persist/9", b"from", b"\xed\xa0\x80", b"to", b"\x80" * 70000)
r.cmd("HSET", ns + b":workers", b"t1/\xff\xfebogus/0", b'{"node":"t1","pid":1}', b"t1/tools/7", b"\xff\xfe{not json",
      b"t1/persist/8", b'{"node":"t1\xff","pool":"persist","slot":8,"status":"\xc3(","pid":"x"}',
      b"t2/persist/0", b'{"node":"t2","pool":"persist","slot":0,"status":"' + b"\xff\xfe" * (2 << 20) + b'","pid":7}',
      b"t2/tools/0", b'{"node":"t2","pool":"tools","slot":0,"status":"' + b"s" * (4 << 20) + b'","pid":8}')
EOF
sleep 1.5 # status is fetched at most once per interval
for p in "/api/v1/events?limit=50" "/api/v1/events?limit=500" /api/v1/status /api/v1/pools /api/v1/streams; do
	wget_ "$p" "$TMPD/view.json"
	want_ok_json "GET $p after the bogus entries"
	info "GET $p: $(pyjson '"%d bytes in %s ms" % (d["bytes"], d["ms"])' <<<"$W")"
done
wget_ "/api/v1/events?limit=50" "$TMPD/events.json"
"$PY" - "$TMPD/events.json" <<'EOF' || fail "events: the binary values are not declared"
import base64, json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
evs = d["events"]
w = [e for e in evs if isinstance(e["fields"].get("worker"), dict)]
assert w and base64.b64decode(w[0]["fields"]["worker"]["b64"]) == b"t1/\xff\xfe/0", evs[:2]
big = [e for e in evs if e["fields"].get("worker") == "t1/persist/9"]
assert big and len(base64.b64decode(big[0]["fields"]["to"]["b64"])) == 70000
print("# events: %d, binary values declared" % len(evs))
EOF
wget_ /metrics "$TMPD/metrics.txt"
[ "$(wst)" = 200 ] || fail "GET /metrics after the bogus entries: $W"
$OPS prom "$TMPD/metrics.txt" >/dev/null || fail "invalid exposition after the bogus entries: $(head -c 600 "$TMPD/metrics.txt")"
ctl_answers || fail "the daemon does not answer: $CTL_ERR"
all_running 1 || fail "workers not RUNNING: $(worker_table 2>&1)"
ok "events, status, pools, streams: 200 and strict JSON; /metrics valid"

check "ids and query values that are not UTF-8 or hold a NUL: 404 or 400, never cut short or dropped"
# no run can have a non-UTF-8 id (the consumer dead-letters it): 404; a NUL
# in an id or a query value: 400; a stream or cursor that is not text: 400
for cp in "404 /api/v1/runs/%FF%FE" "404 /api/v1/runs/%FF%FE?wait=1" "400 /api/v1/runs/a%00b" \
	"400 /api/v1/dead/%FF" "400 /api/v1/dead/1-1?stream=%FF" "400 /api/v1/dead?stream=%FF" \
	"400 /api/v1/dead?stream=events&after=%FF" "400 /api/v1/dead?stream=ev%00ents" \
	"400 /api/v1/dead/1-1?stream=events&from=0:%00"; do
	code=${cp%% *} p=${cp#* }
	wget_ "$p" "$TMPD/odd.json" --bearer-file "$TOKF"
	info "GET $p: $(wst) $(head -c 200 "$TMPD/odd.json")"
	[ "$(pyjson 'd["json_ok"]' <<<"$W")" = true ] || fail "GET $p: not JSON: $W"
	[ "$(wst)" = "$code" ] || fail "GET $p: status $(wst), want $code: $(head -c 300 "$TMPD/odd.json")"
done
ok "404 for a run id that is not text, 400 for the rest, each with a JSON error"
rc=0
out=$(ctl snapshot $'\xff\xfe' 2>&1) || rc=$?
[ "$rc" = 4 ] || fail "streamvisorctl snapshot \\xff\\xfe: exit $rc, want 4 (no snapshot): $(head -c 200 <<<"$out")"
ok "streamvisorctl snapshot of a run id that is not text: exit 4 (no snapshot)"

check "the web child and the master are the ones of the start"
pid_alive "$DAEMON_PID" || fail "the master died"
[ "$(web_child_pid)" = "$WEB_PID" ] || fail "the web child was replaced: $WEB_PID -> $(web_child_pid)"
stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
ok "clean stop"
pass
