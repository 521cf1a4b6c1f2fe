#!/bin/sh
# A handler that never says {"ready": true}; its sleep is in its group.
echo "warming up for ever" >&2
sleep 60
