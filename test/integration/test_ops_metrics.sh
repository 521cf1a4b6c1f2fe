#!/usr/bin/env bash
# `streamvisorctl metrics` and GET /metrics: a strictly valid Prometheus
# text exposition, counters that move under load, the same families over
# HTTP (200) and 404 for anything else; promtool when available.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OPS="$PY $SV_TEST_DIR/ops/ops.py"

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

start_redis
write_config persist_count=1 tools_count=1 log_level=info \
	extra="metrics = { listen = \"127.0.0.1:$PORT\"; };"
"$STREAMVISORD" -t -c "$CONF" >/dev/null 2>&1 || fail "config rejected: $("$STREAMVISORD" -t -c "$CONF" 2>&1)"
start_daemon
wait_for 20 'all_running 2' || fail "workers not RUNNING: $(worker_table 2>&1)"
snapshot_pids >/dev/null

# metrics_valid FILE: strict line check; prints the families.
metrics_valid() {
	$OPS prom "$1" || { echo "----- $1 -----"; cat "$1"; fail "invalid exposition in $1 (see above)"; }
}

check "ctl metrics before any load: valid exposition"
ctl metrics >"$TMPD/m0.txt" || fail "metrics exit $?"
[ -s "$TMPD/m0.txt" ] || fail "metrics printed nothing"
fams0=$(metrics_valid "$TMPD/m0.txt")
printf '%s\n' "$fams0" | sed 's/^/#   /'
for f in streamvisor_processed_total streamvisor_workers streamvisor_batch_duration_seconds; do
	grep -q "^$f " <<<"$fams0" || fail "family $f missing"
done
p0=$($OPS prom "$TMPD/m0.txt" --get 'streamvisor_processed_total{pool="persist"}') ||
	fail "no streamvisor_processed_total{pool=\"persist\"}"
ok "valid; processed{persist} = $p0"

check "counters move after a load"
$OPS gen --sock "$RSOCK" --runs-file "$TMPD/runs.txt" --runs 100 --deltas 5 >/dev/null
N=$(awk '{s+=$2} END {print s}' "$TMPD/runs.txt")
wait_for 60 '[ "$(rcli XPENDING events persist@t1 | head -n1)" = 0 ] && [ "$(rcli XINFO GROUPS events | grep -A1 -x lag | tail -n1)" = 0 ]' ||
	fail "load not consumed: $(rcli XINFO GROUPS events | tr '\n' ' ')"
# The master's view follows the heartbeats: poll.
got=""
moved() {
	ctl metrics >"$TMPD/m1.txt" 2>/dev/null || return 1
	got=$($OPS prom "$TMPD/m1.txt" --get 'streamvisor_processed_total{pool="persist"}' 2>/dev/null) || return 1
	"$PY" -c "import sys; sys.exit(0 if float('$got') - float('$p0') >= $N else 1)"
}
wait_for 20 moved || fail "processed{persist} $p0 -> $got after $N events"
metrics_valid "$TMPD/m1.txt" >/dev/null
cnt=$($OPS prom "$TMPD/m1.txt" --get 'streamvisor_batch_duration_seconds_count{pool="persist"}')
"$PY" -c "import sys; sys.exit(0 if float('$cnt') >= 1 else 1)" || fail "batch histogram count $cnt after a load"
ok "processed{persist} $p0 -> $got ($N events), batch histogram count $cnt"

check "GET /metrics over HTTP: 200, the same families"
$OPS http 127.0.0.1 "$PORT" GET /metrics >"$TMPD/h.out" || fail "HTTP request failed"
st=$(head -n1 "$TMPD/h.out")
[ "$st" = 200 ] || fail "GET /metrics status '$st'"
tail -n +2 "$TMPD/h.out" >"$TMPD/h.txt"
fams_http=$(metrics_valid "$TMPD/h.txt")
fams_ctl=$(metrics_valid "$TMPD/m1.txt")
[ "$fams_http" = "$fams_ctl" ] || fail "families differ: http [$fams_http] ctl [$fams_ctl]"
hp=$($OPS prom "$TMPD/h.txt" --get 'streamvisor_processed_total{pool="persist"}')
[ "$hp" = "$got" ] || info "(http processed $hp vs ctl $got: taken at different moments)"
ok "HTTP 200 with the same $(wc -l <<<"$fams_http") families"

check "anything else: 404"
for req in "GET /" "GET /metricsx" "GET /metrics/../x" "GET /favicon.ico"; do
	set -- $req
	$OPS http 127.0.0.1 "$PORT" "$1" "$2" >"$TMPD/h404.out" || fail "$req: HTTP request failed"
	st=$(head -n1 "$TMPD/h404.out")
	[ "$st" = 404 ] || fail "$req: status '$st', want 404"
done
$OPS http 127.0.0.1 "$PORT" POST /metrics >"$TMPD/h404.out" || fail "POST: HTTP request failed"
st=$(head -n1 "$TMPD/h404.out")
case $st in 404 | 405) ;; *) fail "POST /metrics: status '$st', want 404 (or 405)" ;; esac
ok "404 for other paths (POST /metrics: $st)"
pid_alive "$DAEMON_PID" || fail "daemon died"

check "promtool check metrics"
PROMTOOL=$(command -v promtool 2>/dev/null || true)
if [ -z "$PROMTOOL" ] && [ "${SV_INSTALL_OPTIONAL:-0}" = 1 ]; then
	# The Debian package (~19 MB download) is only unpacked into the temp
	# dir: no service is installed or started.
	info "fetching promtool from the Debian prometheus package (SV_INSTALL_OPTIONAL=1)"
	if (cd "$TMPD" && timeout 240 apt-get download prometheus >"$TMPD/apt.log" 2>&1) &&
		dpkg-deb -x "$TMPD"/prometheus_*.deb "$TMPD/prom" >>"$TMPD/apt.log" 2>&1; then
		PROMTOOL=$TMPD/prom/usr/bin/promtool
	else
		info "could not fetch prometheus: $(tail -n 2 "$TMPD/apt.log")"
	fi
fi
if [ -n "$PROMTOOL" ] && [ -x "$PROMTOOL" ]; then
	for f in m1 h; do
		out=$("$PROMTOOL" check metrics <"$TMPD/$f.txt" 2>&1) || fail "promtool check metrics ($f): $out"
		[ -z "$out" ] || info "promtool ($f): $out"
	done
	ok "promtool accepts both expositions"
else
	info "SKIP sub-check: promtool not installed (Debian package prometheus, ~96 MB installed; SV_INSTALL_OPTIONAL=1 fetches it into the temp dir)"
fi

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
pass
