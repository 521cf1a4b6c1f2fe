#!/bin/sh
# Test tool: tell which tool worker ran the call.  Touches DIR/started.CALL_ID,
# waits until DIR/release exists (at most 30 s), then prints
# "$PREFIX:PPID" (PPID = the worker's pid; PREFIX from the configured env).
# Holding each call until released lets a test pin calls to distinct
# workers: a worker running a tool reads nothing else.
# Usage: whoami.sh DIR
cat >/dev/null
: >"$1/started.${STREAMVISOR_CALL_ID:-none}"
i=0
while [ ! -e "$1/release" ] && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
printf '%s:%s' "${PREFIX:-}" "$PPID"
