#!/usr/bin/env python3
# Test tool: save stdin (raw bytes) and the environment (JSON) under the
# directory $1, named by the call id; print "dumped".
import json, os, sys
d = sys.argv[1]
cid = os.environ.get("STREAMVISOR_CALL_ID", "nocall")
data = sys.stdin.buffer.read()
with open(os.path.join(d, "stdin." + cid), "wb") as f:
    f.write(data)
# The environment as execve gave it (os.environ may hold additions of
# Python's own, such as PEP 538's LC_CTYPE coercion).
with open("/proc/self/environ", "rb") as f:
    raw = f.read()
env = {}
for item in raw.split(b"\0"):
    if item:
        k, _, v = item.partition(b"=")
        env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
with open(os.path.join(d, "env." + cid), "w") as f:
    json.dump(env, f)
with open(os.path.join(d, "cwd." + cid), "w") as f:
    f.write(os.getcwd())
print("dumped")
