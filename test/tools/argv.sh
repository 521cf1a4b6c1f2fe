#!/bin/sh
# Test tool: print each argument as [ARG] on its own line.
for a in "$@"; do printf '[%s]\n' "$a"; done
