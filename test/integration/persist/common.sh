# shellcheck shell=bash
# Helpers of the persist_* integration tests; source after lib.sh.

PT_DIR=$SV_TEST_DIR/persist
PT="$PY $PT_DIR/pt.py"
DB=$TMPD/snap.db
GROUP=persist@$SV_NODE
EVENTS=$TMPD/events.jsonl

# pconfig [write_config overrides] [batch=N]: a persistence-only config
# (no tool workers), log level info unless overridden.
pconfig() {
	local batch="" args=() kv
	for kv in "$@"; do
		case $kv in
		batch=*) batch=${kv#batch=} ;;
		*) args+=("$kv") ;;
		esac
	done
	write_config tools_count=0 log_level=info "${args[@]}"
	if [ -n "$batch" ]; then
		sed -i "s/kind = \"persistence\"; /&batch = $batch; /" "$CONF"
	fi
	"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
}

# sq SQL: one query against the snapshot db (read-only, waits on locks).
sq() { sqlite3 -readonly -cmd '.timeout 5000' "$DB" "$@" 2>/dev/null; }

events_rows() { [ -f "$DB" ] && sq 'SELECT count(*) FROM events' || echo 0; }

# pending_count [GROUP]: XPENDING summary count ("" if the group is missing).
pending_count() { rcli XPENDING events "${1:-$GROUP}" 2>/dev/null | head -n 1; }

dead_len() { rcli XLEN events:dead; }

# Fail if any worker is FATAL (status --json).
assert_no_fatal() {
	local f
	f=$(status_json | pyjson '[w["name"] for w in d["workers"] if w["state"] == "FATAL"]') ||
		fail "status --json unavailable"
	[ "$f" = "[]" ] || fail "workers FATAL: $f"
	if grep -q 'to=FATAL\|FATAL' "$DLOG"; then
		fail "daemon log mentions FATAL: $(grep -m 3 FATAL "$DLOG")"
	fi
}

# gen ARGS...: produce a workload (see pt.py gen) into $EVENTS.
gen() { $PT gen --sock "$RSOCK" --out "$EVENTS" "$@"; }

# wait_persisted TIMEOUT [EVENTS]: every run of EVENTS fully persisted.
wait_persisted() {
	$PT wait --db "$DB" --events "${2:-$EVENTS}" --timeout "$1"
}

# check_snapshots [--exact] [EVENTS]: snapshots equal the reference reducer.
check_snapshots() {
	local exact=""
	[ "${1:-}" = --exact ] && { exact=--exact; shift; }
	$PT check --db "$DB" --events "${1:-$EVENTS}" $exact
}

# wait_pending_zero TIMEOUT
wait_pending_zero() { wait_for "$1" '[ "$(pending_count)" = 0 ]'; }

# Lines of the daemon log about lost groups / NOGROUP.
nogroup_lines() { grep -ciE 'NOGROUP|group .* lost|UNBLOCKED' "$DLOG" || true; }
