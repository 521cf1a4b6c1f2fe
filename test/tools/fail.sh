#!/bin/sh
# Test tool: print something on stdout and stderr, exit with status $1.
echo "failing on purpose"
echo "tool stderr line" >&2
exit "${1:-3}"
