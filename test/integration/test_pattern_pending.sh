#!/usr/bin/env bash
# Issue 11: operator views summarise per pattern.  Both pools read
# `codex:run:*:events`; 50 run streams exist.
#  (a) `streamvisorctl pending` gives one summary row per pattern and
#      group (50 matched, nothing active), no per-stream rows; --json has
#      the same figures as numbers.
#  (b) With the workers paused and new entries in 3 streams: active 3 and
#      lag = the entries written, for each group.
#  (c) `pending --stream NAME` shows that stream's groups as rows; a
#      stream no pool reads is refused.
#  (d) Resumed: the summary goes back to nothing active.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SV_TEST_DIR/persist/common.sh"
. "$SV_SRC_DIR/test/tools/toolit.sh"
. "$SV_TEST_DIR/persist/pattern.sh"

# prow GROUP FIELD: FIELD of the summary row of $PAT and GROUP (--json).
prow() {
	ctl --json pending 2>/dev/null |
		pyjson '[r for r in d["patterns"] if r["pattern"] == "'"$PAT"'" and r["group"] == "'"$1"'"][0]["'"$2"'"]'
}
# summary_is MATCHED ACTIVE LAG PENDING: both groups' rows say so.
summary_is() {
	local g
	for g in "$GROUP" "$TGROUP"; do
		[ "$(prow "$g" matched)" = "$1" ] && [ "$(prow "$g" active)" = "$2" ] &&
			[ "$(prow "$g" lag)" = "$3" ] && [ "$(prow "$g" pending)" = "$4" ] || return 1
	done
}

start_redis
pat_config persist_count=1 tools_count=1 hb_interval=500 hb_timeout=3000 claim_idle=3000 block_ms=500
start_daemon
wait_for 30 'all_running 2' || fail "expected 2 RUNNING workers: $(worker_table 2>&1)"

check "(a) 50 run streams: one summary row per pattern and group"
EV=$TMPD/ev.jsonl
$PT gen --sock "$RSOCK" --out "$EV" --runs 50 --items 1 --deltas 1 --stream-fmt "$PFMT" --prefix p- --seed 1
wait_persisted $(scaled 60) "$EV" || fail "runs not persisted"
pat_keys >"$TMPD/streams.txt"
[ "$(wc -l <"$TMPD/streams.txt")" = 50 ] || fail "$(wc -l <"$TMPD/streams.txt") run streams, want 50"
wait_for $(scaled 30) 'summary_is 50 0 0 0' ||
	{ pat_diag; fail "summary not 50 matched and idle: $(ctl --json pending 2>&1)"; }
ctl pending >"$TMPD/pending.out" || fail "pending failed: $(cat "$TMPD/pending.out")"
cat "$TMPD/pending.out"
grep -F "$PAT" "$TMPD/pending.out" | grep -F "$GROUP" | grep -qw 50 || fail "no summary row for $PAT and $GROUP"
grep -F "$PAT" "$TMPD/pending.out" | grep -F "$TGROUP" | grep -qw 50 || fail "no summary row for $PAT and $TGROUP"
grep -q 'codex:run:p-' "$TMPD/pending.out" && fail "per-stream rows printed by default"
[ "$(wc -l <"$TMPD/pending.out")" -le 10 ] || fail "pending printed $(wc -l <"$TMPD/pending.out") lines"
ctl --json pending | pyjson 'd["patterns"]' >"$TMPD/rows.json"
pyjson 'all(isinstance(r[k], int) and not isinstance(r[k], bool) for r in d for k in
	("matched", "active", "lag", "pending", "oldest_pending_idle_ms", "missing"))' <"$TMPD/rows.json" |
	grep -qx true || fail "--json figures are not numbers: $(cat "$TMPD/rows.json")"
[ "$(pyjson 'len(d)' <"$TMPD/rows.json")" = 2 ] || fail "want 2 summary rows: $(cat "$TMPD/rows.json")"
ctl --json pending | grep -q 'codex:run:p-' && fail "--json has per-stream rows by default"
ok "pending: 2 summary rows (50 matched, nothing active), no per-stream rows"

check "(b) paused, 2+3+4 new entries in 3 streams: active 3, lag 9 per group"
ctl pause all >/dev/null || fail "pause all"
for w in "$SV_NODE/persist/0" "$SV_NODE/tools/0"; do
	wait_for $(scaled 10) '[ "$(hbfield "$w" status)" = paused ]' || fail "$w not paused: $(hb "$w")"
done
n=0
for s in $(sed -n '1p;20p;50p' "$TMPD/streams.txt"); do
	n=$((n + 1))
	for i in $(seq 1 $((n + 1))); do
		rcli XADD "$s" '*' run "late-$n" type response.created seq "$i" data '{}' >/dev/null
	done
done
wait_for $(scaled 10) 'summary_is 50 3 9 0' || fail "want 50 matched, 3 active, lag 9: $(ctl --json pending 2>&1)"
ctl pending
ok "paused: active 3, lag 9 for both groups"

check "(c) pending --stream NAME: that stream's groups"
one=$(sed -n '50p' "$TMPD/streams.txt")
ctl --json pending --stream "$one" >"$TMPD/one.json" || fail "pending --stream: $(cat "$TMPD/one.json")"
ctl pending --stream "$one"
pyjson 'sorted((r["group"], r["lag"], r["configured"]) for r in d["groups"])' <"$TMPD/one.json" >"$TMPD/one.rows"
want=$("$PY" -c 'import json,sys; print(json.dumps(sorted([[sys.argv[1], 4, True], [sys.argv[2], 4, True]])))' "$GROUP" "$TGROUP")
[ "$(cat "$TMPD/one.rows")" = "$want" ] || fail "pending --stream rows $(cat "$TMPD/one.rows"), want $want"
[ "$(pyjson 'd["groups"][0]["stream"]' <"$TMPD/one.json")" = "$one" ] || fail "rows of another stream"
ctl pending --stream="$one" | grep -qF "$one" || fail "--stream=NAME not taken"
rc=0; ctl pending --stream nothing:here >"$TMPD/no.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "pending --stream of a stream no pool reads: exit $rc, want 1 ($(cat "$TMPD/no.out"))"
rc=0; ctl pending --bogus >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "pending --bogus: exit $rc, want 2"
ok "pending --stream: both groups of $one with lag 4; unknown stream refused"

check "(d) resumed: nothing active"
ctl resume all >/dev/null || fail "resume all"
wait_for $(scaled 30) 'summary_is 50 0 0 0' || { pat_diag; fail "still active after resume: $(ctl --json pending 2>&1)"; }
ok "resumed: the summary is back to 50 matched, nothing active"
pass
