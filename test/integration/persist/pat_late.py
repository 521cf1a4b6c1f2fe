#!/usr/bin/env python3
"""A brand-new per-run stream written while the workers sit in a blocking
XREADGROUP (issue 11, done-when 1, second half).

  pat_late.py --sock S --db DB --events EVENTS.jsonl --run RUN --fmt F
              --block-s B --deadline-s D --persist-ids I,J --tool-ids K,L

1. Wait (up to 3 x B) until every persistence worker's connection (CLIENT
   ID from its heartbeat) is blocked in XREADGROUP with at least D + 1 s of
   its BLOCK left (CLIENT LIST idle <= B - D - 1), so that a worker that
   only saw the new stream when its block timed out could not make the
   deadline.  Exit 3 if that moment never comes.
2. XADD one small run (with a tool.call for the echo tool) into the new
   stream F(RUN) and append its events to EVENTS.
3. Measure when its first event, and then the whole run, is in the
   snapshot db, and when the tool.output is in the run's stream.  Print one
   JSON line; exit 1 if the whole run is not persisted within D seconds.
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from resp import Redis, RespError  # noqa: E402
import pt  # noqa: E402


def client_list(r):
    out = {}
    for line in r.cmd("CLIENT", "LIST").splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "id" in f:
            out[f["id"]] = f
    return out


def blocked_left(cl, cid, block_s):
    """Seconds of BLOCK left for client CID (None if it is not blocked in
    XREADGROUP)."""
    f = cl.get(str(cid))
    if not f or "b" not in f.get("flags", "") or f.get("cmd") != "xreadgroup":
        return None
    return block_s - int(f.get("idle", "0"))


def snap_count(db_path, run):
    try:
        db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=5)
        try:
            row = db.execute("SELECT event_count FROM snapshots WHERE run = ?", (run,)).fetchone()
        finally:
            db.close()
        return row[0] if row else 0
    except sqlite3.Error:
        return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sock", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--fmt", required=True)
    p.add_argument("--block-s", type=float, required=True)
    p.add_argument("--deadline-s", type=float, required=True)
    p.add_argument("--persist-ids", required=True)
    p.add_argument("--tool-ids", default="")
    o = p.parse_args()
    pids = [x for x in o.persist_ids.split(",") if x]
    tids = [x for x in o.tool_ids.split(",") if x]
    r = Redis(o.sock)
    stream = o.fmt.replace("{run}", o.run)
    if r.cmd("EXISTS", stream) != 0:
        print("stream %s exists already" % stream)
        return 2

    need = o.deadline_s + 1
    t_end = time.monotonic() + 3 * o.block_s
    while True:
        cl = client_list(r)
        left = {c: blocked_left(cl, c, o.block_s) for c in pids}
        if all(v is not None and v >= need for v in left.values()):
            break
        if time.monotonic() > t_end:
            print(json.dumps({"error": "persistence workers never all blocked with >= %.1f s left" % need,
                              "left": left, "clients": {c: cl.get(str(c)) for c in pids}}))
            return 3
        time.sleep(0.2)
    tleft = {c: blocked_left(cl, c, o.block_s) for c in tids}

    rng = random.Random(11)
    evs = pt.gen_run(rng, o.run, 1, 1, False, int(time.time() * 1000), real_tool=True)
    with open(o.events, "a") as f:
        for e in evs:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    cmds = [pt.xadd_args(stream, e) for e in evs]
    t0 = time.monotonic()
    reps = r.pipeline(cmds)
    errs = [x for x in reps if isinstance(x, RespError)]
    if errs:
        print("XADD failed: %s" % errs[0])
        return 2

    res = {"run": o.run, "stream": stream, "events": len(evs),
           "persist_block_left_s": left, "tool_block_left_s": tleft,
           "first_ms": None, "all_ms": None, "tool_output_ms": None}
    t_end = t0 + max(3 * o.deadline_s, o.block_s + 5)
    while time.monotonic() < t_end:
        now = time.monotonic()
        n = snap_count(o.db, o.run)
        if n >= 1 and res["first_ms"] is None:
            res["first_ms"] = int((now - t0) * 1000)
        if n >= len(evs) and res["all_ms"] is None:
            res["all_ms"] = int((now - t0) * 1000)
        if res["tool_output_ms"] is None:
            for _eid, fl in r.cmd("XRANGE", stream, "-", "+"):
                if dict(zip(fl[0::2], fl[1::2])).get("type") == "tool.output":
                    res["tool_output_ms"] = int((now - t0) * 1000)
        if res["all_ms"] is not None and res["tool_output_ms"] is not None:
            break
        time.sleep(0.02)
    print(json.dumps(res))
    ok = res["all_ms"] is not None and res["all_ms"] <= o.deadline_s * 1000
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
