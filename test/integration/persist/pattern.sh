# shellcheck shell=bash
# Helpers of the pattern_* integration tests (issue 11: per-run streams
# matched by a `streams` pattern); source after lib.sh, persist/common.sh
# and test/tools/toolit.sh.

PAT='codex:run:*:events'
PFMT='codex:run:{run}:events'
TGROUP=tools

# pat_config [write_config overrides] [discover_ms=N] [pat=P ...]: both
# pools (persistence and tool, with the echo tool) read the global list of
# every P given (default $PAT alone; written between double quotes as is);
# config checked with -t, its output in $TMPD/t.out.
pat_config() {
	local discover=1000 pats=() args=() kv
	for kv in "$@"; do
		case $kv in
		discover_ms=*) discover=${kv#discover_ms=} ;;
		pat=*) pats+=("${kv#pat=}") ;;
		*) args+=("$kv") ;;
		esac
	done
	write_config log_level=info \
		extra="$(tools_block "$(tool_entry echo 10000 65536 "$TOOLS_DIR/echo.sh")")" "${args[@]}"
	[ "${#pats[@]}" -gt 0 ] || pats=("$PAT")
	pat_set_streams "${pats[@]}"
	sed -i -E "s/kind = \"(persistence|tool)\"; /&discover_ms = $(scaled "$discover"); /" "$CONF"
	"$STREAMVISORD" -t -c "$CONF" >"$TMPD/t.out" 2>&1 || fail "config rejected: $(cat "$TMPD/t.out")"
}

# pat_set_streams ENTRY...: replace the global `streams` list of $CONF.
# ENTRY is written between double quotes as is (libconfig escapes apply).
pat_set_streams() {
	local e list=""
	for e in "$@"; do list+="${list:+, }\"$e\""; done
	"$PY" -c '
import sys
p, lst = sys.argv[1], sys.argv[2]
s = open(p).read()
old = "streams = [ \"events\" ];"
assert old in s, "no global streams line in " + p
open(p, "w").write(s.replace(old, "streams = [ " + lst + " ];", 1))
' "$CONF" "$list"
}

# pat_keys [GLOB]: the keys matching GLOB (default $PAT), sorted.
pat_keys() { rcli --scan --pattern "${1:-$PAT}" 2>/dev/null | sort; }

# pat_groups_ok STREAMS_FILE: every stream listed (one a line) has the
# persistence and tool groups with pending 0 and lag 0.  Prints what is
# wrong (first 10) and fails when something is.
pat_groups_ok() {
	"$PY" - "$SV_TEST_DIR" "$RSOCK" "$1" "$GROUP" "$TGROUP" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from resp import Redis, RespError
sock, path, groups = sys.argv[2], sys.argv[3], sys.argv[4:]
names = [l.strip() for l in open(path) if l.strip()]
r = Redis(sock)
bad = []
for c in range(0, len(names), 200):
    chunk = names[c:c + 200]
    for name, rep in zip(chunk, r.pipeline([["XINFO", "GROUPS", n] for n in chunk])):
        if isinstance(rep, RespError):
            bad.append("%s: %s" % (name, rep))
            continue
        gs = {}
        for g in rep:
            g = dict(zip(g[0::2], g[1::2]))
            gs[g["name"]] = g
        for want in groups:
            g = gs.get(want)
            if g is None:
                bad.append("%s: no group %s (groups: %s)" % (name, want, sorted(gs)))
            elif g["pending"] != 0 or g.get("lag") not in (0, None):
                bad.append("%s: group %s pending %s lag %s" % (name, want, g["pending"], g.get("lag")))
for b in bad[:10]:
    print("BAD " + b)
print("%d streams checked, %d problems" % (len(names), len(bad)))
sys.exit(1 if bad else 0)
PYEOF
}

# pat_dead_keys: every `*:dead` key (dead-letter streams), one a line.
pat_dead_keys() { rcli --scan --pattern '*:dead' 2>/dev/null | sort; }

# Failed worker-loop commands at Redis (NOGROUP and friends), as in
# test_persist_selfheal.sh.
loop_errs() {
	rcli INFO commandstats | tr -d '\r' |
		awk -F'[:,=]' '/^cmdstat_(xreadgroup|xautoclaim|xack|xclaim|xgroup\|create):/ {
			for (i = 2; i < NF; i++) if ($i == "failed_calls") s += $(i + 1) } END { print s + 0 }'
}

# Calls of CLIENT UNBLOCK seen by Redis (0 when none).
unblock_calls() {
	rcli INFO commandstats | tr -d '\r' | awk -F'[:,=]' '/^cmdstat_client\|unblock:/ { print $3; f = 1 } END { if (!f) print 0 }'
}

# pat_diag: on a failure, what the run streams' groups say (streams with
# lag or pending per group, the first few in full) and where the worker
# connections are (CLIENT LIST: blocked in XREADGROUP and for how long).
pat_diag() {
	echo "----- pattern streams with unread or pending entries -----"
	"$PY" - "$SV_TEST_DIR" "$RSOCK" "$PAT" <<'PYEOF' || true
import sys
sys.path.insert(0, sys.argv[1])
from resp import Redis, RespError
r = Redis(sys.argv[2])
names, cur = [], "0"
while True:
    cur, keys = r.cmd("SCAN", cur, "MATCH", sys.argv[3], "COUNT", 1000)
    names += keys
    if cur == "0":
        break
lagging = {}
for c in range(0, len(names), 200):
    chunk = names[c:c + 200]
    for n, rep in zip(chunk, r.pipeline([["XINFO", "GROUPS", k] for k in chunk])):
        if isinstance(rep, RespError):
            continue
        for g in rep:
            g = dict(zip(g[0::2], g[1::2]))
            if g.get("lag") or g.get("pending"):
                lagging.setdefault(g["name"], []).append((n, g))
for grp, lst in sorted(lagging.items()):
    print("group %s: %d of %d streams with lag or pending" % (grp, len(lst), len(names)))
    for n, g in lst[:3]:
        print("  %s %s" % (n, g))
PYEOF
	echo "----- worker connections (CLIENT LIST) -----"
	rcli CLIENT LIST 2>/dev/null | sed -E 's/ (addr|laddr|fd|db|sub|psub|ssub|multi|qbuf|qbuf-free|argv-mem|multi-mem|rbs|rbp|obl|oll|omem|tot-mem|events|user|redir|resp)=[^ ]*//g' || true
	rcli HGETALL "$SV_NS:workers" 2>/dev/null | grep -o '"client_id":[0-9]*\|^t1/.*' | paste - - || true
}
