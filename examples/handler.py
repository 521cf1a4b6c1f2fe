#!/usr/bin/env python3
"""A persistent tool handler for streamvisor, no dependencies (see
streamvisor-handlers(7)).  Calls are JSON lines on stdin; answers go to
fd 3 as they finish, in any order.  It echoes the arguments back; an
argument "sleep_ms" delays the answer, "fail" answers an error with that
message.  HANDLER_SLEEP_MS sets a default delay.  EOF on stdin: finish
the calls in flight, then exit."""
import json, os, sys, threading

out = os.fdopen(3, "w", buffering=1)
lock = threading.Lock()
cancel = {}  # id -> Event of a call in flight, set to cancel it
default_sleep = int(os.environ.get("HANDLER_SLEEP_MS", "0"))

def send(msg):
    with lock:
        out.write(json.dumps(msg, separators=(",", ":")) + "\n")

def work(call):
    args = call.get("arguments")
    opts = args if isinstance(args, dict) else {}
    cancelled = cancel[call["id"]].wait(opts.get("sleep_ms", default_sleep) / 1000)
    with lock:
        del cancel[call["id"]]
    if cancelled:  # settle it: any answer, dropped by streamvisor
        send({"id": call["id"], "error": {"message": "cancelled"}})
        return
    if "fail" in opts:
        send({"id": call["id"], "error": {"message": str(opts["fail"])}})
    else:
        send({"id": call["id"], "output": {"echo": args, "pid": os.getpid()}})

def main():
    print("handler.py %d starting" % os.getpid(), file=sys.stderr, flush=True)
    send({"ready": True})
    threads = []
    for line in sys.stdin:
        msg = json.loads(line)
        if "cancel" in msg:
            with lock:
                if msg["cancel"] in cancel:
                    cancel[msg["cancel"]].set()
            continue
        with lock:
            cancel[msg["id"]] = threading.Event()
        t = threading.Thread(target=work, args=(msg,))
        t.start()
        threads.append(t)
        threads = [t for t in threads if t.is_alive()]
    for t in threads:  # EOF: finish what is in flight
        t.join()

if __name__ == "__main__":
    main()
