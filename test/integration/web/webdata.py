#!/usr/bin/env python3
"""Odd data for the web tests (issue 15; stdlib only): binary and large
dead letters, runs with multi-megabyte or escaped text, and the HTTP
checks of them, byte-exact.  Every subcommand prints one JSON object.

  webdata.py deadletters RSOCK STREAM
      XADD to STREAM:dead a letter whose metadata and fields hold non-UTF-8
      bytes (\\xff\\xfe, a NUL, an invalid continuation) and that is a valid
      event once re-driven (run RUN-bin), a letter whose data is 4 MB, and
      one with a 1 MiB field of random bytes.  Prints {"bin": ID, "big":
      ID, "big_size": N, "rnd": ID, "rnd_size": N}.
  webdata.py bigrun RSOCK STREAM RUN MB
      A complete run whose one message is MB megabytes of text (deltas of
      at most 800 kB) and then one delta whose entry is exactly the 1 MiB
      event limit, ending in "TAIL-OF-RUN"; prints {"bytes": N, "tail":
      TAIL}.
  webdata.py oddrun RSOCK STREAM RUN
      A complete run whose texts hold every C0 control, DEL, quotes,
      backslash, slash, U+2028/9 and astral-plane characters.
  webdata.py supevent RSOCK NS
      XADD NS:supervisor an event whose worker, to and reason are not
      UTF-8 (or hold a NUL); prints its id and the escaped texts the
      console shows.
  webdata.py get PORT PATH OUT [--bearer-file F]
      GET PATH; the exact body into OUT; prints status, headers, bytes, ms,
      and whether the body is strict UTF-8 JSON ("json_ok").
  webdata.py deadshow PORT ID STREAM RAWFILE --bearer-file F
      GET /api/v1/dead/ID?stream=S, then ?from=NEXT while "next" is given;
      the parts joined into netstrings, compared with RAWFILE (what
      `streamvisorctl dead show ID --raw RAWFILE` wrote).  Prints
      {"requests", "same", "items", "sizes", "statuses", "max_body"}.
"""
import argparse
import base64
import http.client
import json
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from resp import Redis  # noqa: E402

BIN_FIELDS = [  # the original fields of the binary letter
    (b"run", b"RUN-bin"), (b"type", b"response.created"), (b"seq", b"1"),
    (b"\xc3(bin", b"\xff\xfe\x00a\xe2\x28\xa1\x80"),
    (b"note", b"nul\x00inside \xf0\x9f\x98\x80 and \xed\xa0\x80 (a surrogate)"),
    (b"data", b'{"model":"m-bin"}'),
]


def meta(origin, stream, reason, group=b"persist@t1", consumer=b"c\xff1"):
    return [(b"origin_id", origin), (b"origin_stream", stream), (b"group", group),
            (b"consumer", consumer), (b"reason", reason), (b"deliveries", b"3")]


def flat(pairs):
    out = []
    for a, b in pairs:
        out += [a, b]
    return out


def cmd_deadletters(o):
    r = Redis(o.rsock, raw=True, timeout=60)
    s = o.stream.encode()
    run = o.run_prefix.encode()
    binf = [(k, v.replace(b"RUN", run)) for k, v in BIN_FIELDS]
    bid = r.cmd("XADD", s + b":dead", "*", *flat(meta(b"5-1", s, b"bad \xff\xfe reason") + binf)).decode()
    size = 4 * 1024 * 1024
    blob = b'{"blob":"' + b"y" * (size - len(b'{"blob":"END"}')) + b'END"}'
    bigf = [(b"run", run + b"-big"), (b"type", b"response.created"), (b"seq", b"1"), (b"data", blob)]
    gid = r.cmd("XADD", s + b":dead", "*", *flat(meta(b"6-1", s, b"entry too large", consumer=b"c1") + bigf)).decode()
    rnd = random.Random(15).randbytes(1024 * 1024)  # bytes of every value, mostly not UTF-8
    rf = [(b"run", run + b"-rnd"), (b"type", b"response.created"), (b"seq", b"1"), (b"data", b"{}"), (b"blob\xff", rnd)]
    rid = r.cmd("XADD", s + b":dead", "*", *flat(meta(b"7-1", s, b"reducer said no") + rf)).decode()
    print(json.dumps({"bin": bid, "big": gid, "big_size": len(blob), "rnd": rid, "rnd_size": len(rnd)}))
    return 0


def cmd_supevent(o):
    r = Redis(o.rsock, raw=True, timeout=60)
    eid = r.cmd("XADD", o.ns.encode() + b":supervisor", "*", b"worker", b"t1/\xff\xfe/0", b"from", b"RUNNING",
                b"to", b"\xc3(", b"reason", b"a\x00b \xf0\x9f\x98\x80")
    print(json.dumps({"id": eid.decode(), "worker": "t1/\\xff\\xfe/0", "to": "\\xc3(", "reason": "a\\x00b \U0001F600"}))
    return 0


def xadd_events(r, stream, run, evs):
    cmds = []
    for seq, (typ, data) in enumerate(evs, 1):
        cmds.append(["XADD", stream, "*", "run", run, "seq", str(seq), "type", typ,
                     "ts", str(int(time.time() * 1000)), "data", data])
    for x in r.pipeline(cmds):
        if not isinstance(x, bytes):
            raise SystemExit("XADD: %r" % (x,))


def cmd_bigrun(o):
    r = Redis(o.rsock, raw=True, timeout=60)
    total = int(o.mb * 1024 * 1024)
    chunk = 800000
    tail = "TAIL-OF-" + o.run
    evs = [("response.created", json.dumps({"model": "big"})),
           ("item.started", json.dumps({"item_id": "m0", "kind": "message", "role": "assistant"}))]
    done = 0
    k = 0
    while done < total:
        n = min(chunk, total - done)
        line = ("chunk %06d " % k) + "z" * 100 + "\n"
        text = (line * (n // len(line) + 1))[:n]
        done += n
        if done >= total:
            text = text[:-len(tail)] + tail
        evs.append(("item.delta", json.dumps({"item_id": "m0", "text": text})))
        k += 1
    # one more delta whose entry is exactly EVENT_MAX_BYTES (1 MiB: the sum
    # of its field names and values), the largest entry the daemon takes
    seq = len(evs) + 1
    fixed = sum(len(x) for x in ("run", o.run.encode(), "seq", str(seq), "type", "item.delta", "ts",
                                  str(int(time.time() * 1000)), "data"))
    empty = len(json.dumps({"item_id": "m0", "text": ""}))
    text = "w" * (1024 * 1024 - fixed - empty - len(tail)) + tail
    evs.append(("item.delta", json.dumps({"item_id": "m0", "text": text})))
    last = fixed + len(evs[-1][1])
    total += len(text)
    evs += [("item.completed", json.dumps({"item_id": "m0"})), ("response.completed", "{}")]
    xadd_events(r, o.stream, o.run, evs)
    print(json.dumps({"bytes": total, "tail": tail, "events": len(evs), "last_entry": last}))
    return 0


ODD = ("ctl:" + "".join(chr(c) for c in range(0, 32)) + "\x7f" + ' "q" \\b/s/ \u2028\u2029 '
       "astral: \U0001F600 \U0001D11E \U00010348 \U0010FFFD; bmp: \u00e9\u4e2d\ufeff\uffff end")


def cmd_oddrun(o):
    r = Redis(o.rsock, raw=True, timeout=60)
    evs = [("response.created", json.dumps({"model": "odd\U0001F600\u0001", "metadata": {"odd": ODD, "k\u0001\U0001F600\u2028": [ODD, ODD[1:]]}})),
           ("item.started", json.dumps({"item_id": "m\U0001F600", "kind": "message", "role": "assistant"})),
           ("item.delta", json.dumps({"item_id": "m\U0001F600", "text": ODD})),
           # the same text with raw (unescaped) UTF-8 in the event
           ("item.delta", json.dumps({"item_id": "m\U0001F600", "text": ODD}, ensure_ascii=False)),
           ("item.completed", json.dumps({"item_id": "m\U0001F600"})),
           ("response.completed", "{}")]
    xadd_events(r, o.stream, o.run, evs)
    print(json.dumps({"events": len(evs)}))
    return 0


def get(port, path, bearer=None, timeout=60.0):
    h = {"Host": "127.0.0.1:%d" % port, "Connection": "close"}
    if bearer:
        h["Authorization"] = "Bearer " + bearer
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    hd = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hd, body, round((time.monotonic() - t0) * 1000.0, 1)


def strict_json(body):
    try:
        return json.loads(body.decode("utf-8", "strict")), None
    except (UnicodeDecodeError, ValueError) as e:
        return None, "%s: %s" % (type(e).__name__, str(e)[:200])


def bearer_of(o):
    if not getattr(o, "bearer_file", None):
        return None
    with open(o.bearer_file, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def cmd_get(o):
    st, hd, body, ms = get(o.port, o.path, bearer_of(o))
    with open(o.out, "wb") as f:
        f.write(body)
    _, err = strict_json(body)
    print(json.dumps({"status": st, "ctype": hd.get("content-type"), "bytes": len(body), "ms": ms,
                      "json_ok": err is None, "json_error": err}))
    return 0


def netstrings(items):
    return b"".join(b"%d:%s," % (len(x), x) for x in items)


def cmd_deadshow(o):
    tok = bearer_of(o)
    base = "/api/v1/dead/%s?stream=%s" % (urllib.parse.quote(o.id, safe=""), urllib.parse.quote(o.stream, safe=""))
    items = {}
    sizes = {}
    statuses = []
    nxt = None
    n = 0
    max_body = 0
    while True:
        st, hd, body, ms = get(o.port, base + ("&from=" + urllib.parse.quote(nxt, safe="") if nxt else ""), tok)
        n += 1
        statuses.append(st)
        max_body = max(max_body, len(body))
        d, err = strict_json(body)
        if st != 200 or d is None:
            print(json.dumps({"requests": n, "same": False, "statuses": statuses,
                              "error": err or body[:300].decode("utf-8", "replace")}))
            return 1
        for p in d.get("parts", []):
            it, off = p["item"], p["offset"]
            b = base64.b64decode(p["b64"])
            cur = items.setdefault(it, bytearray())
            if len(cur) != off:
                print(json.dumps({"requests": n, "same": False, "error": "item %d: part at %d, have %d" % (it, off, len(cur))}))
                return 1
            cur += b
            sizes[it] = p["size"]
        nxt = d.get("next")
        if not nxt or n > 64:
            break
    got = netstrings([bytes(items.get(i, b"")) for i in range(d.get("items", 0))])
    with open(o.raw, "rb") as f:
        want = f.read()
    print(json.dumps({"requests": n, "same": got == want, "items": d.get("items"), "got_bytes": len(got),
                      "raw_bytes": len(want), "statuses": statuses, "max_body": max_body,
                      "sizes": [sizes.get(i) for i in range(d.get("items", 0))]}))
    return 0 if got == want else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("deadletters")
    p.add_argument("rsock")
    p.add_argument("stream")
    p.add_argument("--run-prefix", default="web-data")
    p = sub.add_parser("bigrun")
    p.add_argument("rsock")
    p.add_argument("stream")
    p.add_argument("run")
    p.add_argument("mb", type=float)
    p = sub.add_parser("oddrun")
    p.add_argument("rsock")
    p.add_argument("stream")
    p.add_argument("run")
    p = sub.add_parser("supevent")
    p.add_argument("rsock")
    p.add_argument("ns")
    p = sub.add_parser("get")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("out")
    p.add_argument("--bearer-file")
    p = sub.add_parser("deadshow")
    p.add_argument("port", type=int)
    p.add_argument("id")
    p.add_argument("stream")
    p.add_argument("raw")
    p.add_argument("--bearer-file")
    o = ap.parse_args()
    return globals()["cmd_" + o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
