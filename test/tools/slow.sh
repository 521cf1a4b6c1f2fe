#!/bin/sh
# Test tool: append one line per execution to the counter file $1, then
# sleep for the "sleep" seconds of the arguments ({"sleep": 3.5}; default 2)
# and print "slept N".  Usage: slow.sh COUNTER
args=$(cat)
secs=$(printf '%s' "$args" | sed -n 's/.*"sleep"[^0-9]*\([0-9.]*\).*/\1/p')
[ -n "$secs" ] || secs=2
echo "$$ ${STREAMVISOR_RUN:-} ${STREAMVISOR_CALL_ID:-}" >>"$1"
sleep "$secs"
echo "slept $secs"
