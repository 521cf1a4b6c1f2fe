#!/usr/bin/env python3
"""Helpers of the persist_* integration tests (stdlib only).

  pt.py gen    --sock S --out EVENTS.jsonl [--runs N] [--items K] [--deltas D]
               [--window W] [--prefix P] [--seed X] [--tools] [--retry]
               [--chunk N] [--chunk-sleep S] [--append]
      Generate a workload of LLM runs (SPEC §5 event types, seq and ts set),
      XADD it to the stream with pipelining, and write every event (one JSON
      object a line) to EVENTS.jsonl for the checker.  Runs are interleaved
      round-robin W at a time.  --retry: on a Redis error, reconnect and
      resend the whole chunk (a producer's retried XADD; dedupe makes it
      harmless).
  pt.py gen ... --stream-fmt 'codex:run:{run}:events' [--tool-every N]
      One stream per run; every Nth run gets a tool.call for a real echo
      tool (its tool.output comes from the daemon; see `outputs`).
  pt.py outputs --sock S --events EVENTS.jsonl --stream-fmt F [--timeout T] [--append]
      Wait for one tool.output per tool.call in the run's own stream, check
      exactly one each and none elsewhere; --append adds them to EVENTS.
  pt.py xadd   --sock S STREAM FIELD VALUE ...   (VALUE "@FILE" reads FILE)
  pt.py wait   --db DB --events EVENTS.jsonl [--timeout T]
      Wait until every run of EVENTS has a snapshot with the expected
      event_count and status; prints the time taken.  Exit 1 on timeout.
  pt.py check  --db DB --events EVENTS.jsonl [--exact]
      Compare every run's snapshot with the reference reducer below (a
      single-process, in-order application of SPEC §5), and every run's
      events rows with the number of distinct events.  --exact: the events
      table holds nothing else.
  pt.py reduce --events EVENTS.jsonl RUN      print the reference snapshot.
"""
import argparse
import json
import os
import random
import socket
import sqlite3
import sys
import time


# ---------------------------------------------------------------- RESP client

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from resp import Redis, RespError  # noqa: E402  (shared RESP client)


def connect_retry(path, deadline):
    while True:
        try:
            return Redis(path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------- workload

WORDS = ["alpha ", "beta ", "gamma ", "δέλτα ", "épsilon ", "zeta\n", "eta\t", "θ ", "✓ ",
         "\"q\" ", "back\\slash ", "nul\u0000byte ", "emoji 🙂 ", "", "x"]


def gen_run(rng, run, items, deltas, tools, ts0, real_tool=False):
    evs = []
    seq = 0
    ts = ts0

    def add(type_, data, **extra):
        nonlocal seq, ts
        ts += rng.randint(0, 3)
        if "parent_seq" in extra:
            e = {"run": run, "type": type_, "ts": ts, "data": data}
        else:
            seq += 1
            e = {"run": run, "type": type_, "seq": seq, "ts": ts, "data": data}
        e.update(extra)
        evs.append(e)

    add("response.created", {"model": "m-%d" % rng.randint(1, 5), "metadata": {"run": run}})
    for i in range(items):
        kind = "reasoning" if i % 2 == 0 else "message"
        iid = "%s_%d" % ("rs" if kind == "reasoning" else "msg", i)
        d = {"item_id": iid, "kind": kind}
        if kind == "message":
            d["role"] = "assistant"
        add("item.started", d)
        for _ in range(deltas):
            add("item.delta", {"item_id": iid, "text": rng.choice(WORDS) + str(rng.randint(0, 99))})
        if rng.random() < 0.15:
            add("item.completed", {"item_id": iid, "content": "replaced %d" % rng.randint(0, 999)})
        else:
            add("item.completed", {"item_id": iid})
        if real_tool and i == 0:
            # A call for a real tool pool (test/tools/echo.sh): its
            # tool.output is written by the daemon, collected by `outputs`.
            call = "call_%s_%d" % (run, i)
            add("tool.call", {"call_id": call, "name": "echo", "arguments": {"run": run, "n": rng.randint(0, 9)}})
        elif tools and i == 0:
            call = "call_%s_%d" % (run, i)
            add("tool.call", {"call_id": call, "name": "echo", "arguments": {"n": rng.randint(0, 9)}})
            pseq = seq
            add("custom.trace", {"span": "s%d" % rng.randint(0, 99)})
            add("tool.output", {"call_id": call, "name": "echo", "output": "out %d\n" % pseq,
                                "is_error": False, "exit_code": 0, "duration_ms": 3},
                parent_seq=pseq, call_id=call)
    add("usage", {"input_tokens": rng.randint(1, 500), "output_tokens": rng.randint(1, 500),
                  "reasoning_tokens": rng.randint(0, 50)})
    if rng.random() < 0.5:
        add("usage", {"output_tokens": rng.randint(1, 50)})
    add("response.completed", {})
    return evs


def interleave(runs_events, window):
    out = []
    for g in range(0, len(runs_events), window):
        group = [list(reversed(r)) for r in runs_events[g:g + window]]
        while any(group):
            for r in group:
                if r:
                    out.append(r.pop())
    return out


def xadd_args(stream, e):
    a = ["XADD", stream, "*", "run", e["run"], "type", e["type"]]
    if "seq" in e:
        a += ["seq", str(e["seq"])]
    if "ts" in e:
        a += ["ts", str(e["ts"])]
    if "parent_seq" in e:
        a += ["parent_seq", str(e["parent_seq"]), "call_id", e["call_id"]]
    a += ["data", json.dumps(e["data"], separators=(",", ":"), ensure_ascii=False)]
    return a


def stream_of(o, run):
    """The stream of RUN: --stream-fmt with {run} replaced, else --stream."""
    fmt = getattr(o, "stream_fmt", None)
    return fmt.replace("{run}", run) if fmt else o.stream


def cmd_gen(o):
    rng = random.Random(o.seed)
    ts0 = int(time.time() * 1000)
    runs = [gen_run(rng, "%s%05d" % (o.prefix, i), o.items, o.deltas, o.tools, ts0 + i,
                    real_tool=bool(o.tool_every) and i % o.tool_every == 0)
            for i in range(o.runs)]
    events = interleave(runs, o.window or o.runs)
    with open(o.out, "a" if o.append else "w") as f:
        for e in events:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    deadline = time.monotonic() + o.retry_s
    r = connect_retry(o.sock, deadline) if o.retry else Redis(o.sock)
    t0 = time.monotonic()
    resent = 0
    for c in range(0, len(events), o.chunk):
        cmds = [xadd_args(stream_of(o, e["run"]), e) for e in events[c:c + o.chunk]]
        while True:
            try:
                replies = r.pipeline(cmds)
                errs = [x for x in replies if isinstance(x, RespError)]
                if errs:
                    raise ConnectionError("XADD error: %s" % errs[0])
                break
            except (OSError, ConnectionError) as ex:
                if not o.retry:
                    raise
                if time.monotonic() > deadline:
                    raise
                resent += 1
                r.close()
                time.sleep(0.05)
                r = connect_retry(o.sock, deadline)
                deadline = time.monotonic() + o.retry_s
        if o.chunk_sleep:
            time.sleep(o.chunk_sleep)
    r.close()
    print("produced %d events of %d runs in %.2f s (chunks resent after errors: %d)" %
          (len(events), o.runs, time.monotonic() - t0, resent))


def cmd_xadd(o):
    args = []
    for a in o.args:
        if a.startswith("@"):
            with open(a[1:], "rb") as f:
                args.append(f.read())
        else:
            args.append(a)
    r = Redis(o.sock)
    print(r.cmd("XADD", o.stream, "*", *args))


def cmd_outputs(o):
    """Tool outputs of per-run streams: for every tool.call of EVENTS, wait
    (up to --timeout) until its run's stream holds a tool.output for it;
    then check there is exactly one per call, each in the run's own stream
    (no tool.output anywhere else, none for an unknown call), and with
    --append add them to EVENTS for the reference reducer."""
    calls = {}
    runs = []
    have = set()
    with open(o.events) as f:
        for line in f:
            e = json.loads(line)
            if e["type"] == "tool.output":
                have.add((e["run"], e.get("call_id")))
            if e["run"] not in calls:
                calls[e["run"]] = set()
                runs.append(e["run"])
            if e["type"] == "tool.call":
                calls[e["run"]].add(e["data"]["call_id"])
    want = sum(len(c) for c in calls.values())
    r = Redis(o.sock)
    deadline = time.monotonic() + o.timeout
    t0 = time.monotonic()
    while True:
        found = {}
        bad = []
        for c in range(0, len(runs), 200):
            chunk = runs[c:c + 200]
            replies = r.pipeline([["XRANGE", stream_of(o, run), "-", "+"] for run in chunk])
            for run, rep in zip(chunk, replies):
                if isinstance(rep, RespError):
                    raise SystemExit("XRANGE %s: %s" % (stream_of(o, run), rep))
                for eid, fl in rep:
                    fd = dict(zip(fl[0::2], fl[1::2]))
                    if fd.get("type") != "tool.output":
                        continue
                    if fd.get("run") != run:
                        bad.append("tool.output of run %s in the stream of run %s" % (fd.get("run"), run))
                        continue
                    found.setdefault((run, fd.get("call_id")), []).append((eid, fd))
        got = sum(1 for (run, cid) in found if cid in calls.get(run, ()))
        if got >= want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for (run, cid), outs in sorted(found.items()):
        if cid not in calls.get(run, ()):
            bad.append("%s: tool.output for unknown call %s" % (run, cid))
        elif len(outs) != 1:
            bad.append("%s: %d tool.outputs for call %s" % (run, len(outs), cid))
    for run in runs:
        for cid in calls[run]:
            if (run, cid) not in found:
                bad.append("%s: no tool.output for call %s in %s" % (run, cid, stream_of(o, run)))
    print("%d tool.calls, %d answered after %.1f s" % (want, got, time.monotonic() - t0))
    for b in bad[:10]:
        print("BAD " + b)
    if bad:
        print("%d problems" % len(bad))
        return 1
    if o.append:
        with open(o.events, "a") as f:
            for (run, cid), outs in sorted(found.items()):
                if (run, cid) in have:
                    continue
                eid, fd = outs[0]
                e = {"run": run, "type": "tool.output", "ts": int(fd.get("ts") or eid.split("-")[0]),
                     "data": json.loads(fd["data"]), "call_id": cid}
                if "parent_seq" in fd:
                    e["parent_seq"] = int(fd["parent_seq"])
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
    return 0


# ---------------------------------------------------------------- reference reducer (SPEC §5)

def load_events(path):
    """Events by run, deduplicated like the daemon ((run,seq), (run,call_id)
    for tool.output, first wins) and sorted in run order."""
    runs = {}
    seen = set()
    with open(path) as f:
        for n, line in enumerate(f):
            e = json.loads(line)
            if "seq" in e:
                k = (e["run"], "s", e["seq"])
            elif e["type"] == "tool.output" and e.get("call_id"):
                k = (e["run"], "c", e["call_id"])
            else:
                k = (e["run"], "n", n)
            if k in seen:
                continue
            seen.add(k)
            e["_n"] = n
            runs.setdefault(e["run"], []).append(e)
    for evs in runs.values():
        if any("seq" in e for e in evs):
            evs.sort(key=lambda e: (e["seq"], 0, 0) if "seq" in e else
                     ((e.get("parent_seq") or 0), 1, e["_n"]))
        else:
            evs.sort(key=lambda e: e["_n"])
    return runs


def reduce_run(run, evs):
    s = {"id": run, "status": "queued", "created_ms": None, "completed_ms": None, "model": None,
         "metadata": None, "output": [], "usage": {"input_tokens": 0, "output_tokens": 0,
                                                   "reasoning_tokens": 0},
         "error": None, "event_count": 0, "last_seq": 0, "gapless": True, "complete": False,
         "ignored_events": 0, "anomalies": []}

    def anomaly(e, msg):
        s["anomalies"].append({"type": e["type"], "seq": e.get("seq"), "message": msg})

    def find_item(iid):
        for it in s["output"]:
            if it.get("id") == iid and it["type"] in ("message", "reasoning"):
                return it
        return None

    def find_call(cid):
        for it in s["output"]:
            if it["type"] == "tool_call" and it.get("call_id") == cid:
                return it
        return None

    def ts_of(e):
        if "ts" in e:
            return e["ts"]
        return int(str(e.get("id", "0-0")).split("-")[0])

    def isint(v):
        return isinstance(v, int) and not isinstance(v, bool)

    for e in evs:
        t, d = e["type"], e.get("data") or {}
        if t == "response.created":
            s["status"] = "in_progress"
            s["created_ms"] = ts_of(e)
            if "model" in d:
                s["model"] = d["model"]
            if "metadata" in d:
                s["metadata"] = d["metadata"]
        elif t == "item.started":
            iid = d.get("item_id")
            if not isinstance(iid, str):
                anomaly(e, "%s without item_id" % t)
            elif d.get("kind") not in ("message", "reasoning"):
                k = d.get("kind")
                anomaly(e, "unknown item kind %s" % (k if isinstance(k, str) else "(none)"))
            elif find_item(iid):
                anomaly(e, "duplicate item %s" % iid)
            else:
                s["output"].append({"id": iid, "type": d["kind"], "role": d.get("role"),
                                    "status": "in_progress", "content": ""})
                if s["status"] == "queued":
                    s["status"] = "in_progress"
        elif t in ("item.delta", "item.completed"):
            iid = d.get("item_id")
            it = find_item(iid) if isinstance(iid, str) else None
            if not isinstance(iid, str):
                anomaly(e, "%s without item_id" % t)
            elif it is None:
                anomaly(e, "unknown item %s" % iid)
            elif t == "item.delta":
                if not isinstance(d.get("text"), str):
                    anomaly(e, "%s without text" % t)
                else:
                    it["content"] = (it["content"] if isinstance(it["content"], str) else "") + d["text"]
            else:
                it["status"] = "completed"
                if "content" in d:
                    if isinstance(d["content"], str):
                        it["content"] = d["content"]
                    else:
                        anomaly(e, "%s with non-string content" % t)
        elif t == "tool.call":
            cid = d.get("call_id", e.get("call_id"))
            if cid is None:
                anomaly(e, "%s without call_id" % t)
            elif find_call(cid):
                anomaly(e, "duplicate call_id %s" % (cid if isinstance(cid, str) else ""))
                cid = False
            if cid is not False:
                s["output"].append({"type": "tool_call", "status": "pending", "call_id": cid,
                                    "name": d.get("name"), "arguments": d.get("arguments")})
        elif t == "tool.output":
            cid = d.get("call_id", e.get("call_id"))
            call = find_call(cid) if cid is not None else None
            if call:
                call["status"] = "completed"
            it = {"type": "tool_output", "status": "completed", "call_id": cid,
                  "name": d["name"] if "name" in d else (call["name"] if call else None),
                  "output": d.get("output"), "is_error": d.get("is_error")}
            for k in ("exit_code", "duration_ms", "truncated"):
                if k in d:
                    it[k] = d[k]
            s["output"].append(it)
            if not call:
                anomaly(e, "tool.output without tool.call %s" % (cid if isinstance(cid, str) else "(no call_id)"))
        elif t == "usage":
            for k in ("input_tokens", "output_tokens", "reasoning_tokens"):
                if k in d:
                    if isint(d[k]):
                        s["usage"][k] += d[k]
                    else:
                        anomaly(e, "usage.%s is not an integer" % k)
        elif t == "response.completed":
            s["status"] = "completed"
            s["completed_ms"] = ts_of(e)
        elif t == "response.failed":
            s["status"] = "failed"
            s["error"] = d.get("error")
        elif t == "response.cancelled":
            s["status"] = "cancelled"
        else:
            s["ignored_events"] += 1
        if "seq" in e:
            if e["seq"] != s["last_seq"] + 1:
                s["gapless"] = False
            s["last_seq"] = max(s["last_seq"], e["seq"])
        s["event_count"] += 1
        s["complete"] = s["gapless"] and s["status"] in ("completed", "failed", "cancelled")
    return s


# ---------------------------------------------------------------- database

def open_db(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    return db


def snapshot_rows(db):
    out = {}
    for run, status, complete, body, count, last_seq in db.execute(
            "SELECT run, status, complete, body, event_count, last_seq FROM snapshots"):
        out[run] = (status, complete, body, count, last_seq)
    return out


def cmd_wait(o):
    runs = load_events(o.events)
    want = {r: len(evs) for r, evs in runs.items()}
    t0 = time.monotonic()
    deadline = t0 + o.timeout
    left = len(want)
    while True:
        try:
            if os.path.exists(o.db):
                db = open_db(o.db)
                try:
                    rows = snapshot_rows(db)
                finally:
                    db.close()
                left = sum(1 for r, n in want.items() if r not in rows or rows[r][3] < n)
                if left == 0:
                    print("all %d runs persisted after %.2f s" % (len(want), time.monotonic() - t0))
                    return 0
        except sqlite3.Error:
            pass
        if time.monotonic() > deadline:
            print("timeout after %.1f s: %d of %d runs not fully persisted" % (o.timeout, left, len(want)))
            return 1
        time.sleep(0.1)


def cmd_check(o):
    runs = load_events(o.events)
    db = open_db(o.db)
    rows = snapshot_rows(db)
    per_run = dict(db.execute("SELECT run, count(*) FROM events GROUP BY run").fetchall())
    total_rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    bad = []
    expected_total = 0
    for run, evs in sorted(runs.items()):
        expected_total += len(evs)
        ref = reduce_run(run, evs)
        if run not in rows:
            bad.append("%s: no snapshot" % run)
            continue
        status, complete, body, count, last_seq = rows[run]
        got = json.loads(body)
        if got != ref:
            diff = sorted(k for k in set(got) | set(ref) if got.get(k) != ref.get(k))
            bad.append("%s: snapshot differs from the reference in %s: got %s want %s" % (
                run, diff, json.dumps({k: got.get(k) for k in diff}, ensure_ascii=False)[:600],
                json.dumps({k: ref.get(k) for k in diff}, ensure_ascii=False)[:600]))
        cols = (status, bool(complete), count, last_seq)
        want = (ref["status"], ref["complete"], ref["event_count"], ref["last_seq"])
        if cols != want:
            bad.append("%s: columns (status, complete, event_count, last_seq) = %s, want %s" % (run, cols, want))
        if per_run.get(run, 0) != len(evs):
            bad.append("%s: %d events rows, want %d" % (run, per_run.get(run, 0), len(evs)))
    if o.exact and total_rows != expected_total:
        bad.append("events table has %d rows, want exactly %d" % (total_rows, expected_total))
    for b in bad[:10]:
        print("MISMATCH " + b)
    if bad:
        print("%d mismatches over %d runs" % (len(bad), len(runs)))
        return 1
    print("all %d runs equal the reference (%d events rows)" % (len(runs), total_rows))
    return 0


def cmd_reduce(o):
    runs = load_events(o.events)
    print(json.dumps(reduce_run(o.run, runs.get(o.run, [])), ensure_ascii=False, sort_keys=True))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--sock", required=True)
    g.add_argument("--stream", default="events")
    g.add_argument("--out", required=True)
    g.add_argument("--runs", type=int, default=100)
    g.add_argument("--items", type=int, default=2)
    g.add_argument("--deltas", type=int, default=3)
    g.add_argument("--window", type=int, default=0)
    g.add_argument("--prefix", default="run-")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--tools", action="store_true")
    g.add_argument("--retry", action="store_true")
    g.add_argument("--retry-s", type=float, default=60.0)
    g.add_argument("--chunk", type=int, default=500)
    g.add_argument("--chunk-sleep", type=float, default=0.0)
    g.add_argument("--append", action="store_true")
    g.add_argument("--stream-fmt", default=None, help="one stream per run: FMT with {run}")
    g.add_argument("--tool-every", type=int, default=0,
                   help="every Nth run gets a tool.call for a real echo tool (no synthetic output)")
    t = sub.add_parser("outputs")
    t.add_argument("--sock", required=True)
    t.add_argument("--events", required=True)
    t.add_argument("--stream", default="events")
    t.add_argument("--stream-fmt", default=None)
    t.add_argument("--timeout", type=float, default=60)
    t.add_argument("--append", action="store_true")
    x = sub.add_parser("xadd")
    x.add_argument("--sock", required=True)
    x.add_argument("stream")
    x.add_argument("args", nargs="+")
    w = sub.add_parser("wait")
    w.add_argument("--db", required=True)
    w.add_argument("--events", required=True)
    w.add_argument("--timeout", type=float, default=60)
    c = sub.add_parser("check")
    c.add_argument("--db", required=True)
    c.add_argument("--events", required=True)
    c.add_argument("--exact", action="store_true")
    r = sub.add_parser("reduce")
    r.add_argument("--events", required=True)
    r.add_argument("run")
    o = p.parse_args()
    return {"gen": cmd_gen, "xadd": cmd_xadd, "outputs": cmd_outputs, "wait": cmd_wait, "check": cmd_check,
            "reduce": cmd_reduce}[o.cmd](o) or 0


if __name__ == "__main__":
    sys.exit(main())
