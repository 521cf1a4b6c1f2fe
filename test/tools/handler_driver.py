#!/usr/bin/env python3
"""Drive a persistent handler (examples/handler.py, examples/handler.js)
through the protocol of streamvisor-handlers(7), standalone: ready on fd 3,
calls as JSON lines on stdin, answers on fd 3 in any order, error answers,
cancel, stdout not mistaken for answers, EOF = finish in flight and exit 0.
Usage: handler_driver.py COMMAND... ; exits 0 when every check passes."""
import fcntl, json, os, subprocess, sys, time

def fail(msg):
    print("FAIL", msg)
    sys.exit(1)

def main():
    cmd = sys.argv[1:]
    r, w = os.pipe()
    # fd 3 of the child is the write end of our pipe: move both ends out
    # of the way, then put the write end on 3 and pass it on.
    r2, w2 = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(r), os.close(w)
    r = r2
    os.dup2(w2, 3)
    os.close(w2)
    w = 3
    env = dict(os.environ, HANDLER_SLEEP_MS="200")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, pass_fds=(3,))
    os.close(w)
    rep = os.fdopen(r, "r")
    first = json.loads(rep.readline() or "null")
    if first != {"ready": True}:
        fail("first line on fd 3 is %r, not {\"ready\": true}" % (first,))
    calls = {}
    n = 50
    for i in range(n):
        args = {"i": i, "text": "caf\u00e9 \"quoted\"\nline"}
        if i == 7:
            args["fail"] = "no such thing"
        if i == 9:
            args["sleep_ms"] = 5000  # cancelled below: settled by an error "cancelled"
        if i == 3:
            args["sleep_ms"] = 600   # answered after later calls
        cid = "x%d" % i
        calls[cid] = args
        msg = {"id": cid, "call_id": "c%d" % (i % 5), "run": "r", "name": "echo", "arguments": args,
               "deadline_ms": int(time.time() * 1000) + 10000}
        p.stdin.write((json.dumps(msg) + "\n").encode())
    p.stdin.write((json.dumps({"cancel": "x9"}) + "\n").encode())
    p.stdin.flush()
    t0 = time.monotonic()
    p.stdin.close()  # EOF: finish what is in flight, then exit
    answers, order = {}, []
    for line in rep:
        a = json.loads(line)
        if not isinstance(a, dict) or a.get("id") not in calls:
            fail("answer with an id never sent: %r" % (a,))
        if a["id"] in answers:
            fail("two answers for %s" % a["id"])
        answers[a["id"]] = a
        order.append(a["id"])
    elapsed = time.monotonic() - t0
    rc = p.wait(timeout=10)
    if rc != 0:
        fail("exit status %d after EOF; stderr %r" % (rc, p.stderr.read()))
    want = set(calls)
    if set(answers) != want:
        fail("answered %s, expected %s" % (sorted(answers), sorted(want)))
    for cid, a in answers.items():
        if cid == "x9":
            if a.get("error", {}).get("message") != "cancelled":
                fail("x9 (cancelled): %r" % (a,))
        elif cid == "x7":
            if a.get("error", {}).get("message") != "no such thing":
                fail("x7: %r" % (a,))
        elif a.get("output", {}).get("echo") != calls[cid]:
            fail("%s: echo %r != %r" % (cid, a.get("output"), calls[cid]))
    if order.index("x3") < order.index("x4"):
        fail("answers came in call order: x3 (600 ms) before x4 (200 ms)")
    # 49 calls of 200 ms each, concurrently: far less than 49 x 0.2 s.
    if elapsed > 5:
        fail("50 calls of 200 ms took %.1f s: not concurrent" % elapsed)
    p.stdout.read()
    print("ok %s: %d answers, cancel honoured, out of order, %.2f s" % (cmd[-1], len(answers), elapsed))

if __name__ == "__main__":
    main()
