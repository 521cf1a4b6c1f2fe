#!/usr/bin/env python3
"""A persistent handler that misbehaves on purpose (test_handler.c).
argv[1] is the mode; calls whose arguments ask for it trigger it:
  crash    {"crash": true}: the whole process exits at once (status 9)
  hang     {"hang": true}: never answered, cancel ignored
  garbage  {"garbage": true}: a line that is not JSON on fd 3
  neverid  {"neverid": true}: an answer for an id never sent
  stdout   every call prints 200 lines on stdout, then answers
  grow     every call keeps grow_kb (1024) KiB more memory, and answers
           {"pid": its pid, "args": the arguments} (max_rss_mb recycling)
Other calls are answered with their arguments after sleep_ms (50)."""
import json, os, sys, threading, time

mode = sys.argv[1]
hoard = []
out = os.fdopen(3, "w", buffering=1)
lock = threading.Lock()

def send(msg):
    with lock:
        out.write(json.dumps(msg) + "\n")

def work(call):
    a = call.get("arguments")
    a = a if isinstance(a, dict) else {}
    time.sleep(a.get("sleep_ms", 50) / 1000)
    if mode == "crash" and a.get("crash"):
        os._exit(9)
    if mode == "hang" and a.get("hang"):
        return
    if mode == "garbage" and a.get("garbage"):
        with lock:
            out.write("this is not json\n")
        return
    if mode == "neverid" and a.get("neverid"):
        send({"id": "987654321", "output": "who?"})
        return
    if mode == "stdout":
        for i in range(200):
            print("noise %d from call %s" % (i, call["id"]), flush=True)
    if mode == "grow":
        with lock:
            hoard.append(bytearray(os.urandom(a.get("grow_kb", 1024) * 1024)))
        send({"id": call["id"], "output": {"pid": os.getpid(), "args": a}})
        return
    send({"id": call["id"], "output": a})

send({"ready": True})
for line in sys.stdin:
    msg = json.loads(line)
    if "cancel" in msg:
        continue
    threading.Thread(target=work, args=(msg,), daemon=True).start()
for t in threading.enumerate():
    if t is not threading.current_thread() and mode != "hang":
        t.join()
