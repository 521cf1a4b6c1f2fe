#!/usr/bin/env python3
"""HTTP clients of the web_* integration tests (issue 15; stdlib only).

Every subcommand talks to 127.0.0.1:PORT and prints one JSON object on
stdout; the shell scripts judge it (lib.sh's pyjson).  A token is never
given on the command line (it would show in `ps`): --token-file F reads
its first line, as the daemon does.

  webc.py req PORT METHOD PATH [--host H | --no-host] [--origin O]
          [--sec-fetch-site S] [--bearer-file F] [--cookie C] [--json BODY]
          [--body-file F] [--ctype CT] [--timeout S]
      One request (HTTP/1.1, Connection: close).  Prints {"status",
      "reason", "headers": {lowercased name: value}, "set_cookie": [...],
      "body", "ms"}; status 0 and "error" when the connection failed or
      was closed without an answer.
  webc.py login PORT --token-file F [--host H]
      POST /api/v1/login {"token": ...}: prints what `req` prints plus
      "cookie" (NAME=VALUE of sv_session, or null).
  webc.py bigheaders PORT --bytes N [--bearer-file F]
      A GET / whose headers total N bytes (X-Pad-K lines of 8 KiB) sent
      as fast as the server takes them.  Prints {"outcome": "status" |
      "closed" | "timeout", "status", "sent", "ms"}.
  webc.py slowloris PORT OUT --n N --secs S
      N connections, each sending a request line and then one header byte
      a second for S seconds (never finishing the headers).  Writes one JSON
      line per connection {"closed_after": s or null, "sent", "got"} to OUT.
  webc.py crowd PORT --n N --hold S
      N concurrent connections: even ones send a complete keep-alive
      GET /api/v1/session, odd ones nothing; held S seconds.  Prints
      {"connected", "refused", "answered", "statuses", "closed_by_server"}.
  webc.py probe PORT --secs S --interval I --limit L [--path P]
      GET PATH (default /api/v1/session) every I seconds for S seconds;
      prints {"n", "ok", "worst_ms", "bad": [...]}; exit 1 when an answer
      was not 200 or took more than L seconds.
  webc.py waits PORT RUN --n N --wait W --bearer-file F
      N concurrent GET /api/v1/runs/RUN?wait=W; prints {"statuses": {code:
      count}, "ms": {code: [min, max]}}.
  webc.py waitxadd PORT RUN --wait W --bearer-file F --rsock S --after S
          --stream STREAM --event JSON
      GET /api/v1/runs/RUN?wait=W, then XADD the event (fields of the JSON
      object; a JSON array: several events, pipelined) AFTER seconds later; prints what `req` prints plus
      "xadd_to_answer_ms" (from just before the XADD to the whole answer
      read) and "total_ms".
"""
import argparse
import http.client
import json
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def first_line(path):
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def request(port, method, path, host=None, no_host=False, headers=None, body=None, timeout=10.0):
    """One request on a fresh connection; returns the result dict."""
    t0 = time.monotonic()
    res = {"status": 0, "reason": "", "headers": {}, "set_cookie": [], "body": ""}
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not no_host:
            c.putheader("Host", host if host is not None else "127.0.0.1:%d" % port)
        hdrs = dict(headers or {})
        if body is not None:
            if isinstance(body, str):
                body = body.encode()
            hdrs.setdefault("Content-Length", str(len(body)))
        elif method in ("POST", "PUT"):
            hdrs.setdefault("Content-Length", "0")
        hdrs.setdefault("Connection", "close")
        for k, v in hdrs.items():
            c.putheader(k, v)
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        res["status"] = r.status
        res["reason"] = r.reason
        for k, v in r.getheaders():
            lk = k.lower()
            if lk == "set-cookie":
                res["set_cookie"].append(v)
            elif lk in res["headers"]:
                res["headers"][lk] += ", " + v
            else:
                res["headers"][lk] = v
        res["body"] = data.decode("utf-8", "replace")
        c.close()
    except (OSError, http.client.HTTPException) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    res["ms"] = round((time.monotonic() - t0) * 1000.0, 2)
    return res


def req_headers(o):
    h = {}
    if getattr(o, "origin", None):
        h["Origin"] = o.origin
    if getattr(o, "sec_fetch_site", None):
        h["Sec-Fetch-Site"] = o.sec_fetch_site
    if getattr(o, "bearer_file", None):
        h["Authorization"] = "Bearer " + first_line(o.bearer_file)
    if getattr(o, "cookie", None):
        h["Cookie"] = o.cookie
    return h


def cmd_req(o):
    h = req_headers(o)
    body = None
    if o.json is not None:
        body = o.json
    elif o.body_file:
        with open(o.body_file, "rb") as f:
            body = f.read()
    if body is not None:
        h["Content-Type"] = o.ctype or "application/json"
    elif o.ctype:
        h["Content-Type"] = o.ctype
    r = request(o.port, o.method, o.path, host=o.host, no_host=o.no_host, headers=h, body=body,
                timeout=o.timeout)
    print(json.dumps(r))
    return 0


def cmd_login(o):
    body = json.dumps({"token": first_line(o.token_file)})
    r = request(o.port, "POST", "/api/v1/login", host=o.host,
                headers={"Content-Type": "application/json", "Origin": "http://127.0.0.1:%d" % o.port},
                body=body)
    r["cookie"] = None
    for sc in r["set_cookie"]:
        nv = sc.split(";", 1)[0].strip()
        if nv.startswith("sv_session="):
            r["cookie"] = nv
    print(json.dumps(r))
    return 0


def read_status(s, timeout):
    """The status code of whatever the server answered on s (0 if none)."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n" not in buf:
            b = s.recv(4096)
            if not b:
                break
            buf += b
    except OSError:
        pass
    line = buf.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return 0


def cmd_bigheaders(o):
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", o.port), timeout=10)
    head = "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % o.port
    if o.bearer_file:
        head += "Authorization: Bearer %s\r\n" % first_line(o.bearer_file)
    data = bytearray(head.encode())
    k = 0
    while len(data) < o.bytes:
        data += b"X-Pad-%d: %s\r\n" % (k, b"p" * 8192)
        k += 1
    data += b"\r\n"
    sent = 0
    outcome = None
    s.setblocking(False)
    deadline = time.monotonic() + 20
    while sent < len(data) and time.monotonic() < deadline:
        r, w, _ = select.select([s], [s], [], 1.0)
        if r:
            outcome = "answered"  # the server spoke (or closed) before we finished
            break
        if w:
            try:
                sent += s.send(data[sent:sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                outcome = "closed"
                break
            except BlockingIOError:
                pass
    status = 0
    if outcome != "closed":
        status = read_status(s, 10)
        outcome = "status" if status else "closed"
    s.close()
    print(json.dumps({"outcome": outcome, "status": status, "sent": sent, "total": len(data),
                      "ms": round((time.monotonic() - t0) * 1000.0, 1)}))
    return 0


def cmd_slowloris(o):
    conns = []
    t0 = time.monotonic()
    drip = b"X-Slow: " + b"a" * 4096
    for _ in range(o.n):
        s = socket.create_connection(("127.0.0.1", o.port), timeout=5)
        s.sendall(b"GET /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % o.port)
        s.setblocking(False)
        conns.append({"s": s, "t0": time.monotonic(), "closed": None, "sent": 0, "got": b"",
                      "next": time.monotonic() + 1.0})
    while time.monotonic() - t0 < o.secs:
        open_ = [c for c in conns if c["closed"] is None]
        if not open_:
            break
        rl, _, _ = select.select([c["s"] for c in open_], [], [], 0.1)
        now = time.monotonic()
        for c in open_:
            if c["s"] in rl:
                try:
                    b = c["s"].recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    b = b""
                if not b:
                    c["closed"] = round(now - c["t0"], 2)
                else:
                    c["got"] += b
            if c["closed"] is None and now >= c["next"]:
                c["next"] = now + 1.0
                try:
                    c["s"].send(drip[c["sent"] % len(drip):c["sent"] % len(drip) + 1])
                    c["sent"] += 1
                except (BrokenPipeError, ConnectionResetError):
                    c["closed"] = round(now - c["t0"], 2)
    with open(o.out, "w") as f:
        for c in conns:
            f.write(json.dumps({"closed_after": c["closed"], "sent": c["sent"],
                                "got": c["got"][:200].decode("latin-1")}) + "\n")
            c["s"].close()
    return 0


def cmd_crowd(o):
    import errno
    socks = []
    refused = 0
    pending = {}
    for i in range(o.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        e = s.connect_ex(("127.0.0.1", o.port))
        if e in (0, errno.EINPROGRESS):
            pending[s.fileno()] = {"s": s, "i": i, "buf": b"", "closed": False}
        else:
            refused += 1
            s.close()
    # Non-blocking connects: a full accept queue must not stall the crowd.
    t_conn = time.monotonic() + 3.0
    while pending and time.monotonic() < t_conn:
        pl = select.poll()
        for fd in pending:
            pl.register(fd, select.POLLOUT)
        for fd, _ in pl.poll(200):
            c = pending.pop(fd)
            if c["s"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                refused += 1
                c["s"].close()
                continue
            if c["i"] % 2 == 0:
                try:
                    c["s"].send(b"GET /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % o.port)
                except OSError:
                    c["closed"] = True
            socks.append(c)
    not_connected = len(pending)
    for c in pending.values():
        c["s"].close()
    t_end = time.monotonic() + o.hold
    while time.monotonic() < t_end:
        open_ = {c["s"].fileno(): c for c in socks if not c["closed"]}
        if not open_:
            break
        pl = select.poll()  # more fds than select()'s FD_SETSIZE
        for fd in open_:
            pl.register(fd, select.POLLIN)
        for fd, _ in pl.poll(200):
            c = open_[fd]
            try:
                b = c["s"].recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                b = b""
            if not b:
                c["closed"] = True
            else:
                c["buf"] += b
    statuses = {}
    answered = 0
    for c in socks:
        if c["buf"].startswith(b"HTTP/"):
            answered += 1
            code = c["buf"].split(b" ", 2)[1].decode()
            statuses[code] = statuses.get(code, 0) + 1
        c["s"].close()
    print(json.dumps({"connected": len(socks), "refused": refused, "not_connected_in_3s": not_connected,
                      "answered": answered,
                      "statuses": statuses, "closed_by_server": sum(1 for c in socks if c["closed"])}))
    return 0


def cmd_probe(o):
    t_end = time.monotonic() + o.secs
    n = ok = 0
    worst = 0.0
    bad = []
    while time.monotonic() < t_end:
        r = request(o.port, "GET", o.path, timeout=o.limit + 5)
        n += 1
        worst = max(worst, r["ms"])
        if r["status"] == 200 and r["ms"] <= o.limit * 1000:
            ok += 1
        else:
            bad.append({"status": r["status"], "ms": r["ms"], "error": r.get("error")})
        time.sleep(o.interval)
    print(json.dumps({"n": n, "ok": ok, "worst_ms": worst, "bad": bad[:10]}))
    return 0 if not bad else 1


def cmd_waits(o):
    h = {"Authorization": "Bearer " + first_line(o.bearer_file)}
    results = [None] * o.n
    path = "/api/v1/runs/%s?wait=%d" % (o.run, o.wait)

    def one(k):
        results[k] = request(o.port, "GET", path, headers=h, timeout=o.wait + 20)

    ts = [threading.Thread(target=one, args=(k,)) for k in range(o.n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    st, ms = {}, {}
    for r in results:
        code = str(r["status"])
        st[code] = st.get(code, 0) + 1
        lo, hi = ms.get(code, [r["ms"], r["ms"]])
        ms[code] = [min(lo, r["ms"]), max(hi, r["ms"])]
    errs = [r.get("error") for r in results if r.get("error")][:5]
    print(json.dumps({"statuses": st, "ms": ms, "errors": errs}))
    return 0


def cmd_waitxadd(o):
    from resp import Redis
    h = {"Authorization": "Bearer " + first_line(o.bearer_file)}
    path = "/api/v1/runs/%s?wait=%d" % (o.run, o.wait)
    out = {}
    t_start = time.monotonic()

    def one():
        out["r"] = request(o.port, "GET", path, headers=h, timeout=o.wait + 20)
        out["t_done"] = time.monotonic()

    t = threading.Thread(target=one)
    t.start()
    time.sleep(o.after)
    evs = json.loads(o.event)
    if isinstance(evs, dict):
        evs = [evs]
    cmds = []
    for ev in evs:
        args = ["XADD", o.stream, "*"]
        for k, v in ev.items():
            args += [k, v if isinstance(v, str) else json.dumps(v)]
        cmds.append(args)
    rc = Redis(o.rsock, timeout=10)
    t_x = time.monotonic()
    rc.pipeline(cmds)
    t.join()
    rc.close()
    r = out["r"]
    r["xadd_to_answer_ms"] = round((out["t_done"] - t_x) * 1000.0, 2)
    r["answered_before_xadd"] = out["t_done"] < t_x
    r["total_ms"] = round((out["t_done"] - t_start) * 1000.0, 2)
    print(json.dumps(r))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("req")
    p.add_argument("port", type=int)
    p.add_argument("method")
    p.add_argument("path")
    p.add_argument("--host")
    p.add_argument("--no-host", action="store_true")
    p.add_argument("--origin")
    p.add_argument("--sec-fetch-site")
    p.add_argument("--bearer-file")
    p.add_argument("--cookie")
    p.add_argument("--json")
    p.add_argument("--body-file")
    p.add_argument("--ctype")
    p.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("login")
    p.add_argument("port", type=int)
    p.add_argument("--token-file", required=True)
    p.add_argument("--host")
    p = sub.add_parser("bigheaders")
    p.add_argument("port", type=int)
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--bearer-file")
    p = sub.add_parser("slowloris")
    p.add_argument("port", type=int)
    p.add_argument("out")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--secs", type=float, default=15)
    p = sub.add_parser("crowd")
    p.add_argument("port", type=int)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--hold", type=float, default=5)
    p = sub.add_parser("probe")
    p.add_argument("port", type=int)
    p.add_argument("--secs", type=float, default=5)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--limit", type=float, default=2.0)
    p.add_argument("--path", default="/api/v1/session")
    p = sub.add_parser("waits")
    p.add_argument("port", type=int)
    p.add_argument("run")
    p.add_argument("--n", type=int, default=70)
    p.add_argument("--wait", type=int, default=3)
    p.add_argument("--bearer-file", required=True)
    p = sub.add_parser("waitxadd")
    p.add_argument("port", type=int)
    p.add_argument("run")
    p.add_argument("--wait", type=int, default=5)
    p.add_argument("--bearer-file", required=True)
    p.add_argument("--rsock", required=True)
    p.add_argument("--after", type=float, default=0.5)
    p.add_argument("--stream", default="events")
    p.add_argument("--event", required=True)
    o = ap.parse_args()
    return globals()["cmd_" + o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
