#!/bin/sh
# Test tool: print a prefix argument (if any), then stdin as read.
[ $# -gt 0 ] && printf '%s:' "$1"
cat
