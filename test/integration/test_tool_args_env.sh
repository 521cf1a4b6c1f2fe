#!/usr/bin/env bash
# Arguments and environment of a tool (SPEC §6 step 2):
# - hostile arguments (shell metacharacters, quotes, newlines, non-ASCII)
#   reach the tool's stdin intact, as JSON (jansson's compact encoding) or,
#   for a JSON string, as its raw text byte for byte; nothing is run by a
#   shell;
# - the tool's environment is exactly its configured env plus PATH,
#   STREAMVISOR_RUN and STREAMVISOR_CALL_ID: nothing of the daemon's
#   environment, and never the Redis password (which appears in no log
#   line and no status either); cwd is the configured one;
# - binary / invalid UTF-8 stdout becomes valid JSON with U+FFFD.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"

PASS="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')-secret"
# redis-cli authenticates through REDISCLI_AUTH, never on its command line.
rcli() { REDISCLI_AUTH=$PASS "$REDIS_CLI" -s "$RSOCK" "$@"; }
DUMP=$TMPD/dump
mkdir -p "$DUMP" "$TMPD/cwd"
PWNED=$TMPD/pwned
[ -e /tmp/pwned ] && pwned_before=1 || pwned_before=0

start_redis --requirepass "$PASS"
[ "$("$REDIS_CLI" -s "$RSOCK" PING 2>&1)" != PONG ] || fail "redis accepts commands without the password"
write_config persist_count=1 tools_count=2 extra="$(tools_block \
	"$(TOOL_ENV='"LANG=C", "FOO=bar baz", "EMPTY="' TOOL_CWD=$TMPD/cwd tool_entry dump 10000 65536 "$TOOLS_DIR/dump.py" "$DUMP")" \
	"$(TOOL_ENV='"PATH=/usr/bin:/bin", "ONLY=1"' tool_entry dump2 10000 65536 "$TOOLS_DIR/dump.py" "$DUMP")" \
	"$(tool_entry binary 5000 65536 "$TOOLS_DIR/binary.sh")")"
sed -i "s|url = \"unix://$RSOCK\"|url = \"unix://:$PASS@$RSOCK\"|" "$CONF"
grep -qF "unix://:$PASS@$RSOCK" "$CONF" || fail "could not put the password into the config url"
export SV_SECRET_MARKER=xyz-marker-$$
export REDISCLI_AUTH=$PASS # in the daemon's environment too: must not reach tools
start_daemon
unset REDISCLI_AUTH
wait_for 30 'all_running 3' || fail "expected 3 RUNNING workers, got: $(worker_table 2>&1)"
snapshot_pids >/dev/null

check "hostile arguments as a JSON object reach stdin intact"
"$PY" - "$TMPD/args.json" "$PWNED" <<'PYEOF'
import json, sys
args = {
    "cmd": "'; rm -rf / #",
    "sub": "$(touch %s)" % sys.argv[2],
    "tick": "`touch %s`" % sys.argv[2],
    "quotes": "he said \"hi\" and 'bye' \\ back\\slash",
    "nl": "line1\nline2\r\n\ttab\u0001ctl",
    "uni": "caf\u00e9 \u65e5\u672c \U0001F600",
    "glob": "* ? [a-z] ~ && || ; | > < &",
    "nested": {"list": [1, 2.5, True, None, "x"], "empty": {}},
}
json.dump(args, open(sys.argv[1], "w"), ensure_ascii=False)
PYEOF
xadd_call Renv 1 obj dump "$(cat "$TMPD/args.json")" >/dev/null
wait_output 30 Renv obj || fail "no tool.output for the dump tool"
[ "$(out_field Renv obj 'd["output"]')" = dumped ] || fail "dump tool failed: $(out_field Renv obj 'd')"
"$PY" - "$TMPD/args.json" "$DUMP/stdin.obj" <<'PYEOF' || fail "stdin differs from the arguments (see above)"
import json, sys
want = json.load(open(sys.argv[1], encoding="utf-8"))
raw = open(sys.argv[2], "rb").read()
text = raw.decode("utf-8")  # strict: valid UTF-8
got = json.loads(text)
if got != want:
    print("parsed stdin != arguments\n got: %r\nwant: %r" % (got, want)); sys.exit(1)
def strings(o, path=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from strings(v, path + "/" + k)
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from strings(v, "%s[%d]" % (path, i))
    elif isinstance(o, str):
        yield path, o
ws, gs = dict(strings(want)), dict(strings(got))
for p, v in ws.items():
    if gs.get(p) != v or gs[p].encode("utf-8") != v.encode("utf-8"):
        print("string %s: got %r want %r" % (p, gs.get(p), v)); sys.exit(1)
# jansson compact: no whitespace between tokens, key order kept.
compact = json.dumps(want, ensure_ascii=False, separators=(",", ":"))
print("# stdin (%d bytes): %s" % (len(raw), text))
print("# byte-identical to the compact encoding: %s" % (text == compact))
if list(got.keys()) != list(want.keys()):
    print("key order changed: %r" % list(got.keys())); sys.exit(1)
PYEOF
ok "parsed stdin == arguments; every string value identical"

check "a JSON string argument reaches stdin byte for byte"
"$PY" - "$TMPD/args.str" "$PWNED" <<'PYEOF'
import json, sys
s = "'; rm -rf / # $(touch %s) `touch %s` \"q\" 'q'\nline2\r\n\u00e9 \u65e5\u672c \\ end" % (sys.argv[2], sys.argv[2])
json.dump(s, open(sys.argv[1], "w"), ensure_ascii=False)
PYEOF
xadd_call Renv 2 str dump "$(cat "$TMPD/args.str")" >/dev/null
wait_output 30 Renv str || fail "no tool.output for the string call"
"$PY" - "$TMPD/args.str" "$DUMP/stdin.str" <<'PYEOF' || fail "string argument not passed byte for byte"
import json, sys
want = json.load(open(sys.argv[1], encoding="utf-8")).encode("utf-8")
got = open(sys.argv[2], "rb").read()
if got != want:
    print("got  %r\nwant %r" % (got, want)); sys.exit(1)
PYEOF
[ ! -e "$PWNED" ] || fail "a shell ran the arguments: $PWNED exists"
if [ "$pwned_before" = 0 ] && [ -e /tmp/pwned ]; then fail "/tmp/pwned was created"; fi
ok "raw text identical; nothing executed"

check "the tool's environment is exactly env + PATH + STREAMVISOR_RUN + STREAMVISOR_CALL_ID"
cat "$DUMP/env.obj"; echo
"$PY" - "$DUMP/env.obj" <<'PYEOF' || fail "wrong tool environment (see above)"
import json, sys
env = json.load(open(sys.argv[1]))
want = {"LANG": "C", "FOO": "bar baz", "EMPTY": "", "PATH": "/usr/local/bin:/usr/bin:/bin",
        "STREAMVISOR_RUN": "Renv", "STREAMVISOR_CALL_ID": "obj"}
if env != want:
    print("got  %r\nwant %r" % (env, want)); sys.exit(1)
PYEOF
[ "$(cat "$DUMP/cwd.obj")" = "$TMPD/cwd" ] || fail "cwd $(cat "$DUMP/cwd.obj"), want $TMPD/cwd"
xadd_call Renv2 1 p2 dump2 '{}' >/dev/null
wait_output 30 Renv2 p2 || fail "no tool.output for dump2"
"$PY" - "$DUMP/env.p2" <<'PYEOF' || fail "wrong environment with a configured PATH (see above)"
import json, sys
env = json.load(open(sys.argv[1]))
want = {"PATH": "/usr/bin:/bin", "ONLY": "1", "STREAMVISOR_RUN": "Renv2", "STREAMVISOR_CALL_ID": "p2"}
if env != want:
    print("got  %r\nwant %r" % (env, want)); sys.exit(1)
PYEOF
[ "$(cat "$DUMP/cwd.p2")" = / ] || fail "cwd of dump2: $(cat "$DUMP/cwd.p2")"
! grep -qF "SV_SECRET_MARKER" "$DUMP"/env.* || fail "the daemon's SV_SECRET_MARKER leaked into a tool"
! grep -qF "$PASS" "$DUMP"/env.* || fail "the Redis password appears in a tool environment"
ok "exact environment (configured PATH replaces the default); cwd as configured; no marker, no password"

check "the password appears in no log line and no status"
st=$(ctl --json status 2>&1 || true)
! grep -qF "$PASS" <<<"$st" || fail "password in status --json"
st=$(ctl status 2>&1 || true)
! grep -qF "$PASS" <<<"$st" || fail "password in status"
! grep -qF "$PASS" "$DLOG" || fail "password in the daemon log: $(grep -F "$PASS" "$DLOG" | head -n 3)"
ok "password absent from log and status"

check "binary / invalid UTF-8 stdout -> valid JSON with U+FFFD"
xadd_call Renv 3 bin binary '{}' >/dev/null
wait_output 30 Renv bin || fail "no tool.output for the binary tool"
eid=$(out_field Renv bin 'o["id"]')
rcli --raw XRANGE events "$eid" "$eid" | tail -n 1 >"$TMPD/bin.raw"
"$PY" - "$TMPD/bin.raw" <<'PYEOF' || fail "binary output not sanitized (see above)"
import json, sys
raw = open(sys.argv[1], "rb").read().rstrip(b"\n")
d = json.loads(raw.decode("utf-8"))  # strict UTF-8, strict JSON
want = "start \ufffd\ufffd mid \ufffd( nul\ufffdbyte \ufffd end"
print("# output: %r" % d["output"])
if d["output"] != want or d["is_error"] or d["exit_code"] != 0 or d["truncated"]:
    print("got %r\nwant output %r" % (d, want)); sys.exit(1)
PYEOF
ok "U+FFFD in a valid JSON output"
pass
