# shellcheck shell=bash
# Helpers of the persistent-handler tests (test_handler_*.sh, issue 13).
# Source after lib.sh and test/tools/toolit.sh.

EXAMPLES=$SV_SRC_DIR/examples
MISBEHAVE=$SV_SRC_DIR/test/handler/misbehave.py
NODE=$(command -v node || true)

# handler_entry NAME CONCURRENCY TIMEOUT_MS CMD [ARG...]: a persistent
# tool.  HANDLER_ENV (libconfig list items), HANDLER_MAX_CALLS (0),
# HANDLER_MAX_OUTPUT (65536), HANDLER_START_TIMEOUT (10000) and
# HANDLER_MAX_RSS (max_rss_mb, 0) override.
handler_entry() {
	local name=$1 conc=$2 timeout=$3 a cmd=""
	shift 3
	for a in "$@"; do cmd+="${cmd:+, }\"$a\""; done
	printf '{ name = "%s"; mode = "persistent"; concurrency = %s; start_timeout_ms = %s; max_calls = %s; max_rss_mb = %s; command = [ %s ]; timeout_ms = %s; max_output = %s; env = [ %s ]; cwd = "/"; }' \
		"$name" "$conc" "${HANDLER_START_TIMEOUT:-10000}" "${HANDLER_MAX_CALLS:-0}" "${HANDLER_MAX_RSS:-0}" "$cmd" "$timeout" "${HANDLER_MAX_OUTPUT:-65536}" \
		"${HANDLER_ENV:-\"LANG=C\"}"
}

# xadd_calls RUN FIRST COUNT NAME ARGS_JSON: XADD calls c$FIRST ..
# c$((FIRST+COUNT-1)) of RUN in one pipeline.
xadd_calls() {
	"$PY" - "$@" <<'PYEOF' | rcli --pipe >/dev/null
import json, sys
run, first, count, name, args = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        b = x.encode()
        out += "$%d\r\n%s\r\n" % (len(b), x)
    return out
for i in range(first, first + count):
    data = json.dumps({"call_id": "c%d" % i, "name": name, "arguments": json.loads(args)})
    sys.stdout.write(cmd("XADD", "events", "*", "run", run, "type", "tool.call", "seq", str(i + 1), "data", data))
PYEOF
}

# outputs_per_call RUN: "CALL_ID COUNT" lines of the run's tool.outputs.
outputs_per_call() {
	tool_outputs "$1" | "$PY" -c '
import json, sys, collections
c = collections.Counter(json.loads(l)["call_id"] for l in sys.stdin if l.strip())
for k, v in sorted(c.items()):
    print(k, v)'
}

# one_each RUN N [EXCEPT...]: every call c0..c(N-1) but EXCEPT has exactly
# one tool.output; prints what is wrong, returns 1.
one_each() {
	local run=$1 n=$2
	shift 2
	outputs_per_call "$run" | "$PY" -c '
import sys
n = int(sys.argv[1]); skip = set(sys.argv[2:])
got = dict(l.split() for l in sys.stdin if l.strip())
bad = []
for i in range(n):
    k = "c%d" % i
    want = 0 if k in skip else 1
    if int(got.get(k, 0)) != want:
        bad.append("%s:%s" % (k, got.get(k, 0)))
extra = [k for k in got if k.startswith("c") and k[1:].isdigit() and int(k[1:]) >= n]
if bad or extra:
    print("wrong:", " ".join(bad[:20]), "extra:", " ".join(extra[:20]))
    sys.exit(1)' "$n" "$@"
}

# outputs_count RUN: how many tool.outputs the run has.
outputs_count() { tool_outputs "$1" | wc -l; }

# handler_pids PATTERN PARENT: pids of the handler processes whose command
# line matches PATTERN, children of the tool worker PARENT.
handler_pids() { pgrep -P "$2" -f -- "$1" || true; }

# worker_sound [WORKER]: nothing pending in group tools, WORKER (t1/tools/0)
# RUNNING and never restarted; fails the test otherwise.
worker_sound() {
	local w=${1:-t1/tools/0}
	wait_for 20 '[ "$(tools_pending)" = 0 ]' || fail "group tools has $(tools_pending) pending: $(rcli XPENDING events tools - + 10 | tr '\n' ' ')"
	state_is "$w" RUNNING || fail "$w not RUNNING: $(worker_json "$w")"
	[ "$(wfield "$w" restarts)" = 0 ] || fail "$w restarted: $(worker_json "$w")"
}

# outputs_where RUN 'PYTHON CONDITION on d': call ids (sorted) of the run's
# outputs whose data satisfies the condition.
outputs_where() {
	tool_outputs "$1" | "$PY" -c '
import json, sys
ids = []
for l in sys.stdin:
    if l.strip():
        d = json.loads(l)["data"]
        if eval(sys.argv[1], {"d": d}):
            ids.append(d["call_id"])
print(" ".join(sorted(ids, key=lambda k: (len(k), k))))' "$2"
}
