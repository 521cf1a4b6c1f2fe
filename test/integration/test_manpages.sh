#!/usr/bin/env bash
# manpages: the three manual pages pass `mandoc -Tlint -Wwarning`, and
# streamvisor.conf(5) documents every configuration key of SPEC §2 (plus
# the pools[].sqlite_path extension) with an entry of its own
# (".It Va KEY").  streamvisord(8) documents every option.
#
# The only mandoc messages tolerated are the ones about our own pages not
# being installed yet ("referenced manual not found" for an .Xr to
# streamvisord(8), streamvisorctl(1) or streamvisor.conf(5), and mandoc's
# "outdated mandoc.db lacks ... entry" for the same pages).  -Wwarning
# normally hides those STYLE messages; the filter is for mandoc versions
# that report them anyway.
set -euo pipefail

src=${SV_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
man=$src/man
pages=("$man/streamvisord.8" "$man/streamvisorctl.1" "$man/streamvisor.conf.5")

if ! command -v mandoc >/dev/null 2>&1; then
	echo "mandoc not installed (apt-get install -y mandoc)" >&2
	exit 77 # meson: skipped
fi

fail=0
pass=0
ok() { printf 'ok   %s\n' "$1"; pass=$((pass + 1)); }
ko() { printf 'FAIL %s: %s\n' "$1" "$2"; fail=$((fail + 1)); }

# Our own pages, as .Xr NAME SECTION and as NAME(SECTION).
own_xr='Xr (streamvisord 8|streamvisorctl 1|streamvisor\.conf 5)'
own_db='(streamvisord\(8\)|streamvisorctl\(1\)|streamvisor\.conf\(5\))'
allowed="^mandoc: .*: STYLE: referenced manual not found: ${own_xr}( \([0-9]+ times\))?\$"
allowed_db="^mandoc: outdated mandoc\.db lacks ${own_db} entry, run makewhatis .*\$"

for page in "${pages[@]}"; do
	name=${page#"$src"/}
	if [[ ! -f $page ]]; then
		ko "$name" "missing"
		continue
	fi
	rc=0
	out=$(mandoc -Tlint -Wwarning "$page" 2>&1) || rc=$?
	left=$(printf '%s\n' "$out" | grep -Ev "$allowed|$allowed_db" | grep -v '^$' || true)
	# mandoc exit status: 0 clean, 1/2 style/warning messages (all of
	# which must have been filtered above), >= 3 errors or failure.
	if [[ -n $left ]]; then
		ko "$name" "mandoc -Tlint -Wwarning:"$'\n'"$left"
	elif [[ $rc -ge 3 ]]; then
		ko "$name" "mandoc exited $rc: $out"
	else
		ok "$name lints clean"
	fi
	# A page that is still the placeholder is not a page.
	if grep -q '^\.TH PLACEHOLDER' "$page"; then
		ko "$name" "still the placeholder"
	fi
done

# Every key of SPEC §2, written as its full path.
keys=(
	node namespace
	redis.url redis.password_file redis.connect_timeout_ms redis.command_timeout_ms
	sqlite.path sqlite.synchronous sqlite.busy_timeout_ms
	control.socket control.mode control.group
	run_as.user run_as.group
	heartbeat.interval_ms heartbeat.timeout_ms
	restart.backoff_initial_ms restart.backoff_max_ms restart.start_ms
	restart.max_retries restart.burst restart.burst_window_ms restart.stop_timeout_ms
	streams
	pools
	'pools[].name' 'pools[].kind' 'pools[].count' 'pools[].group' 'pools[].streams'
	'pools[].batch' 'pools[].block_ms' 'pools[].claim_idle_ms' 'pools[].max_deliveries'
	'pools[].reducer' 'pools[].max_rss_mb' 'pools[].sqlite_path'
	tools
	'tools[].name' 'tools[].command' 'tools[].timeout_ms' 'tools[].max_output'
	'tools[].env' 'tools[].cwd'
	'tools[].rlimits.cpu_s' 'tools[].rlimits.as_mb' 'tools[].rlimits.nofile'
	retention.trim_acked retention.keep_ms retention.dead_keep_ms retention.events_keep_ms
	metrics.listen
	log.level log.format log.file
)
conf5=$man/streamvisor.conf.5
missing=()
for k in "${keys[@]}"; do
	# An entry of its own: ".It Va KEY" (possibly followed by more words).
	if ! grep -qxF -e ".It Va $k" "$conf5" && ! grep -qF -e ".It Va $k " "$conf5"; then
		missing+=("$k")
	fi
done
if ((${#missing[@]})); then
	ko "streamvisor.conf.5 keys" "no '.It Va KEY' entry for: ${missing[*]}"
else
	ok "streamvisor.conf.5 documents all ${#keys[@]} keys"
fi

# Every option of streamvisord.
d8=$man/streamvisord.8
missing=()
for o in c t d p V h; do
	grep -qE "^\.It Fl $o( |\$)" "$d8" || missing+=("-$o")
done
if ((${#missing[@]})); then
	ko "streamvisord.8 options" "no '.It Fl X' entry for: ${missing[*]}"
else
	ok "streamvisord.8 documents every option"
fi

printf '%d passed, %d failed\n' "$pass" "$fail"
[[ $fail -eq 0 ]]
