#!/usr/bin/env python3
"""Helpers of the ops_* and sec_* integration tests (stdlib only).

  ops.py prom FILE [--get SAMPLE]...
      Strict check of a Prometheus text exposition (0.0.4): every line is
      "# HELP name text", "# TYPE name counter|gauge|histogram|summary|untyped"
      or "name{label="v",...} value"; names valid, label values properly
      escaped, values floats; every sample's family has a TYPE (declared
      before its samples, once); histogram buckets cumulative, ending with
      le="+Inf" equal to _count, with _sum.  Prints the families (one a
      line, "family type"); --get prints the value of one sample.  Exit 1
      with every problem on stderr.
  ops.py notify PATH OUT [--rsock S --ns NS --password P]
      Bind an AF_UNIX datagram socket at PATH (a fake $NOTIFY_SOCKET) and
      append one JSON line per datagram to OUT: {"mono","wall","msg"}.  On
      the first datagram with READY=1 the NS:workers hash is read at once
      and added as "workers".  Runs until killed.
  ops.py gen --sock S --runs-file F [--rate EV_PER_S] [--duration S]
             [--runs N] [--prefix P] [--deltas D] [--ids-file F] [--data-bytes N]
             [--xlen-file F]
             [--password P]
      Produce complete LLM runs (response.created, item.started, D deltas,
      item.completed, usage, response.completed; seq and ts set) at about
      RATE events/s for DURATION s (or N runs).  Appends "RUN EVENT_COUNT"
      lines to the runs file and every entry id to the ids file; every
      0.5 s "SECONDS PRODUCED XLEN" to the xlen file.
  ops.py checkdb --db DB --runs-file F [--exact]
      Every run of F has a snapshot: status completed, complete=1, the
      expected event_count, and exactly that many events rows; --exact: the
      events table holds nothing else.
  ops.py http HOST PORT METHOD PATH      print "STATUS" then the body.
  ops.py slow SOCK OUT [--n N] [--hold S] [--kinds half,silent,drip]
      Open slow/silent control clients (half a line; nothing; 1 byte per
      second) and record when the daemon closes each: one JSON line per
      client in OUT {"kind","closed_after"}; N of each kind.
  ops.py probe SOCK --count N --interval S
      Send {"cmd":"status"} on fresh connections N times; print the max
      latency and exit 1 if any took more than 1.5 s or failed.
  ops.py redis --sock S [--password P] CMD ARG...    one command, reply as JSON.
"""
import argparse
import json
import math
import os
import re
import socket
import sqlite3
import sys
import time


# ---------------------------------------------------------------- RESP client

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from resp import Redis, RespError  # noqa: E402  (shared RESP client)


# ---------------------------------------------------------------- prometheus

NAME_RE = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_RE = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_float(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", s):
        raise ValueError("bad float %r" % s)
    return float(s)


def parse_labels(s, errs, ln):
    """s is the text inside {...}; returns a list of (name, value)."""
    out = []
    i = 0
    while i < len(s):
        m = re.match(LABEL_RE, s[i:])
        if not m:
            errs.append("line %d: bad label name at %r" % (ln, s[i:]))
            return None
        name = m.group(0)
        i += len(name)
        if s[i:i + 2] != '="':
            errs.append("line %d: expected =\" after label %s" % (ln, name))
            return None
        i += 2
        val = []
        while True:
            if i >= len(s):
                errs.append("line %d: unterminated label value" % ln)
                return None
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    errs.append("line %d: bad escape in label value" % ln)
                    return None
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
                continue
            if c == '"':
                i += 1
                break
            if c == "\n":
                errs.append("line %d: newline in label value" % ln)
                return None
            val.append(c)
            i += 1
        if any(n == name for n, _ in out):
            errs.append("line %d: duplicate label %s" % (ln, name))
        out.append((name, "".join(val)))
        if i < len(s):
            if s[i] != ",":
                errs.append("line %d: expected , between labels at %r" % (ln, s[i:]))
                return None
            i += 1
    return out


def family_of(name, types):
    if name in types:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[: -len(suf)]) in ("histogram", "summary"):
            return name[: -len(suf)]
    return None


def prom_check(text):
    errs = []
    types = {}
    helps = {}
    samples = []  # (family, name, labels(dict), value, line)
    seen_sample_fams = set()
    if text and not text.endswith("\n"):
        errs.append("exposition does not end with a newline")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for ln, line in enumerate(lines, 1):
        if line == "":
            errs.append("line %d: empty line" % ln)
            continue
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (%s) (.*)" % NAME_RE, line)
            if m is None:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    errs.append("line %d: malformed %r" % (ln, line))
                # other comments are allowed
                continue
            kind, name, rest = m.groups()
            if kind == "TYPE":
                if rest not in TYPES:
                    errs.append("line %d: unknown type %r" % (ln, rest))
                if name in types:
                    errs.append("line %d: second TYPE for %s" % (ln, name))
                if name in seen_sample_fams:
                    errs.append("line %d: TYPE for %s after its samples" % (ln, name))
                types[name] = rest
            else:
                if name in helps:
                    errs.append("line %d: second HELP for %s" % (ln, name))
                if re.search(r"\\[^\\n]", rest) or rest.endswith("\\") and not rest.endswith("\\\\"):
                    errs.append("line %d: bad escape in HELP" % ln)
                helps[name] = rest
            continue
        m = re.fullmatch(r"(%s)(\{(.*)\})? ([^ ]+)( -?\d+)?" % NAME_RE, line)
        if m is None:
            errs.append("line %d: not a sample line: %r" % (ln, line))
            continue
        name, _, lab, val, _ts = m.groups()
        labels = parse_labels(lab, errs, ln) if lab else []
        if labels is None:
            continue
        try:
            v = parse_float(val)
        except ValueError as e:
            errs.append("line %d: %s" % (ln, e))
            continue
        fam = family_of(name, types)
        if fam is None:
            errs.append("line %d: sample %s has no TYPE (declared before it)" % (ln, name))
            continue
        seen_sample_fams.add(fam)
        samples.append((fam, name, dict(labels), v, ln))
    # every sample of one family is contiguous
    last = None
    done = set()
    for fam, _, _, _, ln in samples:
        if fam != last:
            if fam in done:
                errs.append("line %d: samples of %s are not grouped together" % (ln, fam))
            if last:
                done.add(last)
            last = fam
    # duplicates
    keys = set()
    for fam, name, labels, v, ln in samples:
        k = (name, tuple(sorted(labels.items())))
        if k in keys:
            errs.append("line %d: duplicate sample %s%s" % (ln, name, labels))
        keys.add(k)
        if types.get(fam) == "counter" and not (v >= 0):
            errs.append("line %d: counter %s is negative or NaN: %r" % (ln, name, v))
    # histograms
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for f, name, labels, v, ln in samples:
            if f != fam:
                continue
            base = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                if "le" not in labels:
                    errs.append("line %d: bucket without le" % ln)
                    continue
                try:
                    s["buckets"].append((parse_float(labels["le"]), v, ln))
                except ValueError:
                    errs.append("line %d: bad le %r" % (ln, labels["le"]))
            elif name == fam + "_sum":
                s["sum"] = v
            elif name == fam + "_count":
                s["count"] = v
            else:
                errs.append("line %d: histogram %s has a plain sample %s" % (ln, fam, name))
        for base, s in series.items():
            b = s["buckets"]
            what = "%s%s" % (fam, dict(base))
            if not b:
                errs.append("%s: no buckets" % what)
                continue
            les = [x[0] for x in b]
            if les != sorted(les) or len(set(les)) != len(les):
                errs.append("%s: le values not strictly increasing: %s" % (what, les))
            vals = [x[1] for x in b]
            if any(vals[i] > vals[i + 1] for i in range(len(vals) - 1)):
                errs.append("%s: buckets not cumulative: %s" % (what, vals))
            if les[-1] != math.inf:
                errs.append("%s: last bucket is not le=\"+Inf\"" % what)
            if s["count"] is None:
                errs.append("%s: no _count" % what)
            elif vals[-1] != s["count"]:
                errs.append("%s: +Inf bucket %r != _count %r" % (what, vals[-1], s["count"]))
            if s["sum"] is None:
                errs.append("%s: no _sum" % what)
    for name in helps:
        if name not in types:
            errs.append("HELP for %s without TYPE" % name)
    return errs, types, samples


def fmt_sample(name, labels):
    if not labels:
        return name
    return "%s{%s}" % (name, ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)))


def cmd_prom(o):
    with open(o.file, encoding="utf-8") as f:
        text = f.read()
    errs, types, samples = prom_check(text)
    if o.get:
        want = {}
        for g in o.get:
            m = re.fullmatch(r"(%s)(\{(.*)\})?" % NAME_RE, g)
            labs = dict(parse_labels(m.group(3), [], 0) or []) if m.group(3) else {}
            want[(m.group(1), tuple(sorted(labs.items())))] = g
        for _, name, labels, v, _ in samples:
            k = (name, tuple(sorted(labels.items())))
            if k in want:
                g = want.pop(k)
                print("%s %r" % (g, v) if len(o.get) > 1 else repr(v))
        for g in want.values():
            errs.append("sample %s not found" % g)
    else:
        for n in sorted(types):
            print(n, types[n])
    for e in errs:
        sys.stderr.write("prom: %s\n" % e)
    return 1 if errs else 0


# ---------------------------------------------------------------- notify

def cmd_notify(o):
    try:
        os.unlink(o.path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(o.path)
    os.chmod(o.path, 0o777)
    ready_seen = False
    with open(o.out, "a", buffering=1) as f:
        while True:
            data = s.recv(4096)
            mono = time.monotonic()
            wall = time.time()
            rec = {"mono": mono, "wall": wall, "msg": data.decode("utf-8", "replace")}
            if not ready_seen and "READY=1" in rec["msg"].split("\n") and o.rsock:
                ready_seen = True
                try:
                    r = Redis(o.rsock, timeout=5, password=o.password)
                    h = r.cmd("HGETALL", o.ns + ":workers") or []
                    rec["workers"] = dict(zip(h[0::2], h[1::2]))
                    rec["workers_wall"] = time.time()
                    r.close()
                except Exception as e:  # recorded, judged by the test
                    rec["workers_error"] = repr(e)
            f.write(json.dumps(rec) + "\n")


# ---------------------------------------------------------------- workload

def run_events(run, deltas, pad):
    evs = [("response.created", {"model": "m1"})]
    evs.append(("item.started", {"item_id": "m0", "kind": "message", "role": "assistant"}))
    for i in range(deltas):
        d = {"item_id": "m0", "text": "t%d " % i}
        if pad:
            d["text"] += "x" * pad
        evs.append(("item.delta", d))
    evs.append(("item.completed", {"item_id": "m0"}))
    evs.append(("usage", {"input_tokens": 3, "output_tokens": deltas}))
    evs.append(("response.completed", {}))
    return evs


def cmd_gen(o):
    r = Redis(o.sock, password=o.password)
    per_run = o.deltas + 5
    chunk_runs = max(1, int(o.rate * 0.1 / per_run)) if o.rate else 20
    t0 = time.monotonic()
    produced = 0
    n = 0
    runs_f = open(o.runs_file, "a")
    ids_f = open(o.ids_file, "a") if o.ids_file else None
    xlen_f = open(o.xlen_file, "a") if o.xlen_file else None
    next_xlen = 0.0
    while True:
        if o.runs and n >= o.runs:
            break
        if not o.runs and time.monotonic() - t0 >= o.duration:
            break
        k = chunk_runs if not o.runs else min(chunk_runs, o.runs - n)
        batch = []
        names = []
        now = int(time.time() * 1000)
        for j in range(k):
            run = "%s%06d" % (o.prefix, n + j)
            names.append(run)
            for seq, (t, d) in enumerate(run_events(run, o.deltas, o.data_bytes), 1):
                batch.append(["XADD", o.stream, "*", "run", run, "type", t, "seq", str(seq),
                              "ts", str(now), "data", json.dumps(d, separators=(",", ":"))])
        replies = r.pipeline(batch)
        bad = [x for x in replies if isinstance(x, RespError)]
        if bad:
            sys.stderr.write("XADD error: %s\n" % bad[0])
            return 1
        for run in names:
            runs_f.write("%s %d\n" % (run, per_run))
        runs_f.flush()
        if ids_f:
            ids_f.write("".join(x + "\n" for x in replies))
            ids_f.flush()
        n += k
        produced += len(batch)
        if xlen_f and time.monotonic() >= next_xlen:
            next_xlen = time.monotonic() + 0.5
            xlen_f.write("%.3f %d %d\n" % (time.monotonic() - t0, produced, r.cmd("XLEN", o.stream)))
            xlen_f.flush()
        if o.rate:
            due = t0 + produced / o.rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
    print("produced %d events of %d runs in %.2f s" % (produced, n, time.monotonic() - t0))
    return 0


def cmd_checkdb(o):
    want = {}
    with open(o.runs_file) as f:
        for line in f:
            if line.strip():
                run, cnt = line.split()
                want[run] = int(cnt)
    db = sqlite3.connect("file:%s?mode=ro" % o.db, uri=True, timeout=10)
    snaps = {r[0]: r[1:] for r in db.execute("SELECT run, status, complete, event_count FROM snapshots")}
    evc = dict(db.execute("SELECT run, count(*) FROM events GROUP BY run"))
    errs = []
    for run, cnt in want.items():
        s = snaps.get(run)
        if s is None:
            errs.append("%s: no snapshot" % run)
            continue
        if s != ("completed", 1, cnt):
            errs.append("%s: snapshot (status, complete, event_count) = %r, want ('completed', 1, %d)" % (run, s, cnt))
        if evc.get(run, 0) != cnt:
            errs.append("%s: %d events rows, want %d" % (run, evc.get(run, 0), cnt))
    total = sum(evc.values())
    if o.exact:
        extra = set(evc) - set(want)
        if extra:
            errs.append("events of unexpected runs: %s" % sorted(extra)[:10])
    for e in errs[:20]:
        sys.stderr.write("checkdb: %s\n" % e)
    if len(errs) > 20:
        sys.stderr.write("checkdb: ... %d problems in all\n" % len(errs))
    print("checked %d runs, %d events rows in all, %d problems" % (len(want), total, len(errs)))
    return 1 if errs else 0


# ---------------------------------------------------------------- http

def cmd_http(o):
    s = socket.create_connection((o.host, int(o.port)), timeout=10)
    s.sendall(("%s %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (o.method, o.path, o.host)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].decode()
    m = re.match(r"HTTP/1\.[01] (\d{3})", status)
    print(m.group(1) if m else "BAD:" + status)
    sys.stdout.write(body.decode("utf-8", "replace"))
    return 0


# ---------------------------------------------------------------- control socket clients

def ctl_request(sock, req, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall((json.dumps(req) + "\n").encode())
    buf = b""
    while b"\n" not in buf:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    return json.loads(buf.split(b"\n")[0])


def cmd_probe(o):
    worst = 0.0
    fails = 0
    for i in range(o.count):
        t = time.monotonic()
        try:
            r = ctl_request(o.sock, {"cmd": "status"}, 5)
            ok = r.get("ok") is True
        except Exception as e:
            ok = False
            sys.stderr.write("probe %d: %r\n" % (i, e))
        dt = time.monotonic() - t
        worst = max(worst, dt)
        if not ok or dt > o.limit:
            fails += 1
            sys.stderr.write("probe %d: ok=%s in %.3f s\n" % (i, ok, dt))
        time.sleep(o.interval)
    print("%d probes, worst %.3f s, %d bad" % (o.count, worst, fails))
    return 1 if fails else 0


def cmd_slow(o):
    import select
    clients = []
    t0 = time.monotonic()
    for i in range(o.n):
        for kind in o.kinds.split(","):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(o.sock)
            s.setblocking(False)
            if kind == "half":
                s.send(b'{"cmd":"sta')
            clients.append({"kind": kind, "s": s, "t0": time.monotonic(), "closed": None,
                            "sent": 0, "next": time.monotonic() + 1.0})
    drip = b'{"cmd":"status"}' + b" " * 64
    while time.monotonic() - t0 < o.hold:
        open_ = [c for c in clients if c["closed"] is None]
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
                    c["closed"] = now - c["t0"]
                else:
                    c.setdefault("got", b"")
                    c["got"] += b
            if c["closed"] is None and c["kind"] == "drip" and now >= c["next"]:
                c["next"] = now + 1.0
                try:
                    c["s"].send(drip[c["sent"] % len(drip):c["sent"] % len(drip) + 1])
                    c["sent"] += 1
                except (BrokenPipeError, ConnectionResetError):
                    c["closed"] = now - c["t0"]
    with open(o.out, "w") as f:
        for c in clients:
            f.write(json.dumps({"kind": c["kind"], "closed_after": c["closed"], "sent": c["sent"],
                                "got": c.get("got", b"").decode("utf-8", "replace")}) + "\n")
            c["s"].close()
    return 0


def cmd_redis(o):
    r = Redis(o.sock, password=o.password)
    print(json.dumps(r.cmd(*o.args)))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prom")
    p.add_argument("file")
    p.add_argument("--get", action="append")
    p = sub.add_parser("notify")
    p.add_argument("path")
    p.add_argument("out")
    p.add_argument("--rsock")
    p.add_argument("--ns", default="sv")
    p.add_argument("--password")
    p = sub.add_parser("gen")
    p.add_argument("--sock", required=True)
    p.add_argument("--password")
    p.add_argument("--stream", default="events")
    p.add_argument("--runs-file", required=True)
    p.add_argument("--ids-file")
    p.add_argument("--xlen-file")
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--runs", type=int, default=0)
    p.add_argument("--prefix", default="r")
    p.add_argument("--deltas", type=int, default=5)
    p.add_argument("--data-bytes", type=int, default=0)
    p = sub.add_parser("checkdb")
    p.add_argument("--db", required=True)
    p.add_argument("--runs-file", required=True)
    p.add_argument("--exact", action="store_true")
    p = sub.add_parser("http")
    p.add_argument("host")
    p.add_argument("port")
    p.add_argument("method")
    p.add_argument("path")
    p = sub.add_parser("slow")
    p.add_argument("sock")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--hold", type=float, default=12)
    p.add_argument("--kinds", default="half,silent,drip")
    p = sub.add_parser("probe")
    p.add_argument("sock")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--limit", type=float, default=1.5)
    p = sub.add_parser("redis")
    p.add_argument("--sock", required=True)
    p.add_argument("--password")
    p.add_argument("args", nargs="+")
    o = ap.parse_args()
    return {"prom": cmd_prom, "notify": cmd_notify, "gen": cmd_gen, "checkdb": cmd_checkdb,
            "http": cmd_http, "slow": cmd_slow, "probe": cmd_probe, "redis": cmd_redis}[o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
