#!/bin/sh
# Test tool: print "PREFIX:PID" where PID is the parent's pid (the tool
# worker that ran us), so a test can tell which worker handled a call.
cat >/dev/null
printf '%s:%s' "${1:-}" "$PPID"
