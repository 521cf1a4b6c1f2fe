#!/bin/sh
# Test tool: never finishes.  Starts a child (this script again, in "child"
# mode) that also never finishes; both carry MARK in their command line so
# `pgrep -f MARK` finds them, and both write their pid to MARK.pids.
# Usage: hang.sh MARK [child]
mark=$1
echo $$ >>"$mark.pids"
if [ "${2:-}" = child ]; then
	while :; do sleep 1; done
fi
"$0" "$mark" child &
cat >/dev/null
while :; do sleep 1; done
