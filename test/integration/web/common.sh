# shellcheck shell=bash
# Shared setup of the web_* integration tests (issue 15): source it after
# lib.sh.  It makes a token file, picks free loopback ports, writes the
# http block (http.user = nobody when the tests run as root, with the temp
# dir made traversable for it and control.group its group), skips (77) when this streamvisord has no
# HTTP server, and wraps webc.py (the HTTP client) for the scripts.

WEBC="$PY $SV_TEST_DIR/web/webc.py"
OPS="$PY $SV_TEST_DIR/ops/ops.py"

# free_port: a loopback TCP port nobody listens on right now.
free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
ORIGIN="http://127.0.0.1:$PORT"

# The token: random, never on a command line (webc.py reads the file).
TOKEN=$("$PY" -c 'import secrets; print("svtok-" + secrets.token_hex(20))')
TOKF=$TMPD/http.token
printf '%s\n' "$TOKEN" >"$TOKF"
chmod 600 "$TOKF"
# A wrong token of the same shape: it must not be logged either.
WRONG=$("$PY" -c 'import secrets; print("svbad-" + secrets.token_hex(20))')
WRONGF=$TMPD/wrong.token
printf '%s\n' "$WRONG" >"$WRONGF"

HTTP_USER=
if [ "$(id -u)" = 0 ]; then
	getent passwd nobody >/dev/null || skip "running as root and there is no user nobody for http.user"
	HTTP_USER=nobody
	# nobody reads the SQLite files (read-only) through the temp dir.
	chmod 0711 "$TMPD"
fi

# http_block [KEY = VALUE; ...]: the http group for write_config's extra.
http_block() {
	local user=""
	[ -n "$HTTP_USER" ] && user="user = \"$HTTP_USER\"; "
	echo "http = { listen = \"127.0.0.1:$PORT\"; ${user}token_file = \"$TOKF\"; $* };"
}

# require_http: the config written is accepted by -t; a streamvisord built
# without the HTTP server (no libmicrohttpd) makes the test skip.
require_http() {
	local bin=${STREAMVISORD_REAL:-$STREAMVISORD} out rc=0 v
	out=$("$bin" -t -c "$CONF" 2>&1) || rc=$?
	[ "$rc" = 0 ] && return 0
	v=$("$bin" -V 2>&1 || true)
	if grep -qF 'unknown key "http"' <<<"$out" || grep -qiE 'http: off' <<<"$v"; then
		skip "this streamvisord has no HTTP server (-V: $(tr '\n' ' ' <<<"$v"); -t: $out)"
	fi
	fail "config rejected: $out"
}

# web_config [write_config args...]: the test config with the http block
# added to extra; as root, control.group is http.user's group, as a
# deployment does it: the daemon gives the SQLite files that group (read
# only), which is how the web child reads them.
web_config() {
	local a args=() extra=""
	for a in "$@"; do
		case $a in
		extra=*) extra=${a#extra=} ;;
		*) args+=("$a") ;;
		esac
	done
	write_config "${args[@]}" extra="$(http_block)
$extra"
	if [ -n "$HTTP_USER" ]; then
		local g
		g=$(id -gn "$HTTP_USER")
		sed -i "s|^control = { socket = \"$SOCK\";|control = { socket = \"$SOCK\"; group = \"$g\";|" "$CONF"
		grep -q "group = \"$g\"" "$CONF" || fail "control.group not set: $(grep control "$CONF")"
	fi
}

# web_child_pid: the master's child whose cmdline is `streamvisord
# --web-child` (fails unless there is exactly one).
web_child_pid() {
	local c found=""
	for c in $(ps --ppid "$DAEMON_PID" -o pid= 2>/dev/null); do
		[ "$(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null)" = "streamvisord --web-child " ] || continue
		[ -z "$found" ] || return 1
		found=$c
	done
	[ -n "$found" ] && echo "$found"
}

# R: the last answer of api/api_as as JSON; hs/hb/hh read it.
R=
# api METHOD PATH [webc.py req options]: one request; R holds the answer.
api() {
	local m=$1 p=$2
	shift 2
	R=$($WEBC req "$PORT" "$m" "$p" "$@") || fail "webc.py req $m $p failed"
}
hs() { pyjson 'd["status"]' <<<"$R"; }                          # status code
hbody() { pyjson 'd["body"]' <<<"$R"; }                         # body text (+ a newline)
hbody_to() { "$PY" -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["body"])' <<<"$R" >"$1"; } # exact body into FILE
hh() { pyjson 'd["headers"].get("'"$1"'")' <<<"$R"; }            # one header (lowercase name)
hjson() { pyjson 'd["body"]' <<<"$R" | pyjson "$1"; }           # EXPR on the JSON body
short() { head -c "${1:-600}" <<<"$R"; }

# want_status CODE WHAT: the last answer had status CODE (one of "A|B").
want_status() {
	local got
	got=$(hs)
	[[ "|$1|" == *"|$got|"* ]] || fail "$2: status $got, want $1: $(short)"
}

# api_ready [TIMEOUT_S]: GET /api/v1/session answers 200.
api_ready() {
	wait_for "${1:-20}" '[ "$($WEBC req "$PORT" GET /api/v1/session 2>/dev/null | pyjson "d[\"status\"]" 2>/dev/null)" = 200 ]'
}
