#!/bin/sh
# Test tool: print $1 bytes of 'x' on stdout.
head -c "${1:-100000}" /dev/zero | tr '\0' x
