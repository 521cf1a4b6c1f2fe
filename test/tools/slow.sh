#!/bin/sh
# Test tool: append one line per execution to the counter file $1, sleep $2
# seconds, print "slept $2".  Usage: slow.sh COUNTER SECONDS
echo "$$ ${STREAMVISOR_RUN:-} ${STREAMVISOR_CALL_ID:-}" >>"$1"
sleep "$2"
echo "slept $2"
