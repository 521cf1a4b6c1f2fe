# shellcheck shell=bash
# Helpers shared by the tool-worker integration tests (test_tool_*.sh).
# Source after test/integration/lib.sh.

TOOLS_DIR=$SV_SRC_DIR/test/tools

# tool_entry NAME TIMEOUT_MS MAX_OUTPUT CMD [ARG...]: one libconfig entry
# of `tools`.  TOOL_ENV (libconfig list items, default "LANG=C"), TOOL_CWD
# (default /) and TOOL_RLIMITS (default none: "cpu_s = 0; as_mb = 0;
# nofile = 0;") override env, cwd and rlimits.
tool_entry() {
	local name=$1 timeout=$2 maxout=$3 a cmd=""
	shift 3
	for a in "$@"; do cmd+="${cmd:+, }\"$a\""; done
	printf '{ name = "%s"; command = [ %s ]; timeout_ms = %s; max_output = %s; env = [ %s ]; cwd = "%s"; rlimits = { %s }; }' \
		"$name" "$cmd" "$timeout" "$maxout" "${TOOL_ENV:-\"LANG=C\"}" "${TOOL_CWD:-/}" \
		"${TOOL_RLIMITS:-cpu_s = 0; as_mb = 0; nofile = 0;}"
}

# tools_block ENTRY...: the `tools = ( ... );` setting.
tools_block() {
	local e out=""
	for e in "$@"; do out+="${out:+,
  }$e"; done
	printf 'tools = (\n  %s\n);\n' "$out"
}

# xadd_call RUN SEQ CALL_ID NAME ARGS_JSON: XADD a tool.call (SEQ may be
# empty: no seq field); prints the entry id.
xadd_call() {
	local run=$1 seq=$2 cid=$3 name=$4 args=$5 data
	data=$("$PY" -c 'import json,sys; print(json.dumps({"call_id": sys.argv[1], "name": sys.argv[2], "arguments": json.loads(sys.argv[3])}, ensure_ascii=False))' "$cid" "$name" "$args")
	if [ -n "$seq" ]; then
		rcli XADD events '*' run "$run" type tool.call seq "$seq" data "$data"
	else
		rcli XADD events '*' run "$run" type tool.call data "$data"
	fi
}

# tool_outputs [RUN [CALL_ID]]: the tool.output entries of the events
# stream (optionally of one run / call id), one JSON object per line: the
# entry's fields, "id", and "data" parsed ("data_raw" holds the text).
tool_outputs() {
	rcli --json XRANGE events - + 2>/dev/null | "$PY" -c '
import json, sys
run = sys.argv[1] if len(sys.argv) > 1 else ""
cid = sys.argv[2] if len(sys.argv) > 2 else ""
src = sys.stdin.read().strip()
for e in (json.loads(src) if src else []):
    f = e[1]
    o = dict(zip(f[0::2], f[1::2]))
    if o.get("type") != "tool.output":
        continue
    if run and o.get("run") != run:
        continue
    if cid and o.get("call_id") != cid:
        continue
    o["id"] = e[0]
    o["data_raw"] = o.get("data")
    try:
        o["data"] = json.loads(o["data"])
    except Exception:
        o["data"] = None
    print(json.dumps(o))
' "$@"
}

# count_outputs RUN CALL_ID
count_outputs() { tool_outputs "$1" "$2" | wc -l; }

# wait_output TIMEOUT_S RUN CALL_ID: until at least one tool.output exists.
_WO_RUN='' _WO_CID=''
wait_output() {
	_WO_RUN=$2 _WO_CID=$3
	wait_for "$1" '[ "$(count_outputs "$_WO_RUN" "$_WO_CID")" -ge 1 ]'
}

# out_field RUN CALL_ID EXPR: evaluate EXPR (python, o = the one output
# entry, d = its data) on the output of the call.
out_field() {
	tool_outputs "$1" "$2" | head -n 1 | pyjson '(lambda o, d: '"$3"')(d, d["data"])'
}

# The tool workers' JSON heartbeats, one per line: {"name":..., fields...}.
tool_heartbeats() {
	rcli --json HGETALL "$SV_NS:workers" 2>/dev/null | "$PY" -c '
import json, sys
src = sys.stdin.read().strip()
d = json.loads(src) if src else {}
if isinstance(d, list):
    d = dict(zip(d[0::2], d[1::2]))
for k, v in sorted(d.items()):
    try:
        o = json.loads(v)
    except Exception:
        continue
    if o.get("kind") == "tool" or "/tools/" in k:
        o["name"] = k
        print(json.dumps(o))
'
}

# Pending count of group "tools" on the events stream.
tools_pending() { rcli XPENDING events tools | head -n 1; }

# group_info GROUP FIELD: a field of XINFO GROUPS events for GROUP.
group_info() {
	rcli --json XINFO GROUPS events 2>/dev/null | "$PY" -c '
import json, sys
src = sys.stdin.read().strip()
for g in (json.loads(src) if src else []):
    if isinstance(g, list):
        g = dict(zip(g[0::2], g[1::2]))
    if g.get("name") == sys.argv[1]:
        print(g.get(sys.argv[2]))
' "$1" "$2"
}

# expect_output RUN CALL_ID 'PYTHON CONDITION on d': wait for the call's
# tool.output, print its data and fail unless the condition holds; the
# data stays in OUT_DATA.
OUT_DATA=''
expect_output() {
	wait_output 30 "$1" "$2" || fail "no tool.output for $1/$2"
	OUT_DATA=$(out_field "$1" "$2" 'd')
	echo "$OUT_DATA"
	pyjson "$3" <<<"$OUT_DATA" | grep -qx true || fail "$2 output: $OUT_DATA"
}
