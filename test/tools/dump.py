#!/usr/bin/env python3
# Test tool: save stdin (raw bytes) and the environment (JSON) under the
# directory $1, named by the call id; print "dumped".
import json, os, sys
d = sys.argv[1]
cid = os.environ.get("STREAMVISOR_CALL_ID", "nocall")
data = sys.stdin.buffer.read()
with open(os.path.join(d, "stdin." + cid), "wb") as f:
    f.write(data)
with open(os.path.join(d, "env." + cid), "w") as f:
    json.dump(dict(os.environ), f)
with open(os.path.join(d, "cwd." + cid), "w") as f:
    f.write(os.getcwd())
print("dumped")
