#!/bin/sh
# A handler that fails at once, like one whose module does not load.
echo "loading model" >&2
echo "cannot load model: no such file" >&2
exit 3
