#!/usr/bin/env bash
# manpages: every manual page (the six of man/, streamvisor-events(7)
# included, and any page added there later) passes `mandoc -Tlint -Wwarning`, and
# streamvisor.conf(5) documents every configuration key of SPEC §2 (plus
# the pools[].sqlite_path extension) with an entry of its own
# (".It Va KEY").  streamvisord(8) documents every option.
#
# The only mandoc messages tolerated are the ones about our own pages not
# being installed yet ("referenced manual not found" for an .Xr to
# streamvisord(8), streamvisorctl(1), streamvisor.conf(5) or
# streamvisor-events(7), streamvisor-handlers(7) or streamvisor-http(7), and mandoc's
# "outdated mandoc.db lacks ... entry" for the same pages).  -Wwarning
# normally hides those STYLE messages; the filter is for mandoc versions
# that report them anyway.
set -euo pipefail

src=${SV_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
man=$src/man
pages=("$man/streamvisord.8" "$man/streamvisorctl.1" "$man/streamvisor.conf.5"
	"$man/streamvisor-events.7" "$man/streamvisor-handlers.7" "$man/streamvisor-http.7")
# Any other page in man/ is linted too.
for p in "$man"/*.[1-9]; do
	case " ${pages[*]} " in *" $p "*) ;; *) pages+=("$p") ;; esac
done

if ! command -v mandoc >/dev/null 2>&1; then
	echo "mandoc not installed (apt-get install -y mandoc)" >&2
	exit 77 # meson: skipped
fi

fail=0
pass=0
ok() { printf 'ok   %s\n' "$1"; pass=$((pass + 1)); }
ko() { printf 'FAIL %s: %s\n' "$1" "$2"; fail=$((fail + 1)); }

# Our own pages, as .Xr NAME SECTION and as NAME(SECTION).
own_xr='Xr (streamvisord 8|streamvisorctl 1|streamvisor\.conf 5|streamvisor-events 7|streamvisor-handlers 7|streamvisor-http 7)'
own_db='(streamvisord\(8\)|streamvisorctl\(1\)|streamvisor\.conf\(5\)|streamvisor-events\(7\)|streamvisor-handlers\(7\)|streamvisor-http\(7\))'
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
	'pools[].reducer' 'pools[].max_rss_mb' 'pools[].sqlite_path' 'pools[].tools'
	tools
	'tools[].name' 'tools[].command' 'tools[].timeout_ms' 'tools[].max_output'
	'tools[].env' 'tools[].cwd'
	'tools[].rlimits.cpu_s' 'tools[].rlimits.as_mb' 'tools[].rlimits.nofile'
	'tools[].mode' 'tools[].concurrency' 'tools[].start_timeout_ms' 'tools[].max_calls'
	'tools[].max_rss_mb'
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

# streamvisor-events(7) documents every event type the response reducer
# acts on (src/reducer_response.c), each with an entry of its own
# (".Ql TYPE :" inside ".It Xo"), and the merge reducer.
ev7=$man/streamvisor-events.7
missing=()
for t in response.created item.started item.delta item.completed tool.call tool.output \
	usage response.completed response.failed response.cancelled; do
	grep -qxF -e ".Ql $t :" "$ev7" || missing+=("$t")
done
for s in 'THE MERGE REDUCER' 'DEAD LETTERS' 'FORGETTING A RUN' 'Conflicting duplicates'; do
	grep -qE "^\.S[hs] $s\$" "$ev7" || missing+=("section '$s'")
done
if ((${#missing[@]})); then
	ko "streamvisor-events.7 event types" "missing: ${missing[*]}"
else
	ok "streamvisor-events.7 documents every event type of both reducers"
fi

# streamvisor-handlers(7) documents every message of the protocol.
h7=$man/streamvisor-handlers.7
missing=()
for w in '"ready": true' '"cancel":' '"deadline_ms":' '"error": {"message":' '"output":'; do
	grep -qF -e "$w" "$h7" || missing+=("$w")
done
for s in 'FROM STREAMVISOR (STANDARD INPUT)' 'TO STREAMVISOR (FILE DESCRIPTOR 3)' 'End of input'; do
	grep -qE "^\.S[hs] ${s//[()]/.}\$" "$h7" || missing+=("section '$s'")
done
if ((${#missing[@]})); then
	ko "streamvisor-handlers.7 protocol" "missing: ${missing[*]}"
else
	ok "streamvisor-handlers.7 documents every message of the protocol"
fi

# streamvisor-http(7) documents every route, every status code, the long
# poll and the security model (issue 15).
x7=$man/streamvisor-http.7
missing=()
for r in 'GET /' 'GET /static/' 'GET /metrics' 'POST /api/v1/login' 'POST /api/v1/logout' \
	'GET /api/v1/session' 'GET /api/v1/status' 'GET /api/v1/pools' 'GET /api/v1/streams' \
	'GET /api/v1/events?limit=' 'GET /api/v1/dead?stream=' 'GET /api/v1/dead/' 'GET /api/v1/runs/' \
	'POST /api/v1/ctl'; do
	grep -qE "^\.It Li ${r//[?]/\\?}( |\$)" "$x7" || missing+=("route '$r'")
done
for c in 200 202 204 400 401 403 404 405 409 413 415 421 429 503; do
	grep -qxF ".It Sy $c" "$x7" || missing+=("status $c")
done
for s in 'CHECKS' 'AUTHENTICATION' 'ROUTES' 'RUNNING COMMANDS' 'LONG POLL' 'LIMITS' 'SECURITY MODEL'; do
	grep -qE "^\.Sh $s\$" "$x7" || missing+=("section '$s'")
done
for w in HttpOnly SameSite=Strict 'Authorization: Bearer' http.user http.actions data_version; do
	grep -qF -e "$w" "$x7" || missing+=("'$w'")
done
if ((${#missing[@]})); then
	ko "streamvisor-http.7 API" "missing: ${missing[*]}"
else
	ok "streamvisor-http.7 documents every route, status code and the security model"
fi

# Every page is installed and every other page points to the event protocol.
for page in "${pages[@]}"; do
	name=${page#"$man"/}
	grep -qF "'man/$name'" "$src/meson.build" || ko "$name" "not installed by meson.build (install_man)"
	[[ $name == streamvisor-events.7 ]] && continue
	grep -qxF '.Xr streamvisor-events 7 ,' "$page" || grep -qxF '.Xr streamvisor-events 7' "$page" ||
		ko "$name" "SEE ALSO lacks .Xr streamvisor-events 7"
done

printf '%d passed, %d failed\n' "$pass" "$fail"
[[ $fail -eq 0 ]]
