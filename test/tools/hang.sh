#!/bin/sh
# Test tool: never finishes and ignores SIGTERM, so only the SIGKILL to its
# process group ends it.  Starts a child (this script again, in "child"
# mode) that also never finishes; both carry MARK in their command line so
# `pgrep -f MARK` finds them, and both append their pid to MARK.pids.
# Usage: hang.sh MARK [child]
trap '' TERM
mark=$1
echo $$ >>"$mark.pids"
if [ "${2:-}" = child ]; then
	while :; do sleep 1; done
fi
"$0" "$mark" child &
cat >/dev/null
echo "hanging"
while :; do sleep 1; done
