#!/usr/bin/env python3
"""Checkpointed snapshots (issue 14): helpers of test_persist_checkpoints.sh.

A run's snapshots row is a checkpoint (the reducer over the run's stored
events up to the row's position, event_count of them); `streamvisorctl
snapshot` reduces the events after it on read and must always equal the
reference reducer (pt.py reduce_run) over every stored event.

  ckpt.py reads   --db DB --ctl CTL --sock SOCK --seconds S [--min N] [--seed X]
      At random moments (while the load runs), pick a random stored run:
      in ONE read transaction read its raw row and its stored events (in
      the store's order); check the row is a valid prefix (its body is the
      reference over its first event_count events).  Then read it through
      `streamvisorctl snapshot RUN`, then read the events again; the read
      is compared with the reference over the first read's events when
      its event_count equals their number, else over the second read's
      (events are only ever added: equal counts are equal sets), else it
      is skipped (counted).  Exit 1 on any mismatch or fewer than N
      compared reads of in-progress runs.
  ckpt.py exact   --db DB --ctl CTL --sock SOCK [--raw]
      Quiescent: every stored run read through streamvisorctl equals the
      reference over its stored events; --raw: every raw row too.
  ckpt.py partial --sock S --out EVENTS.jsonl --runs N [--prefix P] [--seed X]
      XADD the first 30-70% of N runs' events (runs that stay in
      progress: abandoned) and append them to EVENTS.jsonl.
  ckpt.py flushwait --db DB --run RUN --n N [--timeout T]
      Wait until RUN has N stored events, then until its raw row covers
      them; print the milliseconds between the two (polled every 5 ms).
  ckpt.py samerow --db DB --run RUN --n N [--timeout T]
      Poll: in one read transaction, once RUN has N stored events its row
      must cover all N (a late event rewrites the row in its own
      transaction).  Exit 1 otherwise.
"""
import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pt import gen_run, reduce_run, xadd_args, Redis  # noqa: E402


def open_db(path):
    # isolation_level=None: transactions are ours (BEGIN ... COMMIT)
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10, isolation_level=None)


def stored_events(db, run):
    evs = []
    for (typ, seq, pseq, cid, ems, eseq, data, ts) in db.execute(
            "SELECT type, seq, parent_seq, call_id, entry_ms, entry_seq, data, produced_ms FROM events"
            " WHERE run = ? ORDER BY ord_major, ord_minor, entry_ms, entry_seq", (run,)):
        e = {"run": run, "type": typ, "id": "%d-%d" % (ems, eseq),
             "data": json.loads(data) if data is not None else None}
        if seq is not None:
            e["seq"] = seq
        if pseq is not None:
            e["parent_seq"] = pseq
        if cid is not None:
            e["call_id"] = cid
        if ts is not None:
            e["ts"] = ts
        evs.append(e)
    return evs


def row_and_events(db, run):
    """(body or None, event_count, events) in one read transaction."""
    db.execute("BEGIN")
    try:
        r = db.execute("SELECT body, event_count FROM snapshots WHERE run = ?", (run,)).fetchone()
        evs = stored_events(db, run)
    finally:
        db.execute("COMMIT")
    return (json.loads(r[0]), r[1], evs) if r else (None, 0, evs)


def ctl_snapshot(o, run):
    p = subprocess.run([o.ctl, "-s", o.sock, "--json", "snapshot", run], capture_output=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("snapshot %s: exit %d: %s" % (run, p.returncode, p.stderr.decode(errors="replace")))
    return json.loads(p.stdout)


def diff(got, want):
    keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return "%s: got %s want %s" % (keys, json.dumps({k: got.get(k) for k in keys})[:400],
                                   json.dumps({k: want.get(k) for k in keys})[:400])


def check_row(run, body, count, evs, bad):
    if body is None:
        return
    if count > len(evs):
        bad.append("%s: row covers %d events, %d stored" % (run, count, len(evs)))
        return
    want = reduce_run(run, evs[:count])
    if body != want:
        bad.append("%s: raw row (event_count %d) is not the reference over its first %d events: %s"
                   % (run, count, count, diff(body, want)))


def cmd_reads(o):
    rng = random.Random(o.seed)
    db = None
    end = time.monotonic() + o.seconds
    compared = in_progress = skipped = rows_behind = rows_checked = 0
    bad = []
    while time.monotonic() < end:
        time.sleep(rng.uniform(0, 0.03))
        if db is None:
            if not os.path.exists(o.db):
                continue
            try:
                db = open_db(o.db)
                db.execute("SELECT 1 FROM events LIMIT 1").fetchall()
            except sqlite3.Error:
                db = None
                continue
        runs = [r for (r,) in db.execute("SELECT DISTINCT run FROM events ORDER BY rowid DESC LIMIT 400")]
        if not runs:
            continue
        run = rng.choice(runs)
        body, count, e1 = row_and_events(db, run)
        check_row(run, body, count, e1, bad)
        rows_checked += body is not None
        rows_behind += body is not None and count < len(e1)
        got = ctl_snapshot(o, run)
        _, _, e2 = row_and_events(db, run)
        n = got.get("event_count")
        if n == len(e1):
            evs = e1
        elif n == len(e2):
            evs = e2
        else:
            skipped += 1
            continue
        want = reduce_run(run, evs)
        compared += 1
        in_progress += want["status"] not in ("completed", "failed", "cancelled")
        if got != want:
            bad.append("%s: streamvisorctl snapshot (%d events) differs from the reference: %s"
                       % (run, n, diff(got, want)))
    for b in bad[:10]:
        print("MISMATCH " + b)
    print("%d exact reads compared (%d of in-progress runs), %d skipped (moving), %d mismatches; "
          "%d raw rows checked as prefixes, %d of them behind their events"
          % (compared, in_progress, skipped, len(bad), rows_checked, rows_behind))
    return 1 if bad or in_progress < o.min else 0


def cmd_exact(o):
    db = open_db(o.db)
    runs = [r for (r,) in db.execute("SELECT DISTINCT run FROM events")]
    bad = []
    for run in runs:
        body, count, evs = row_and_events(db, run)
        want = reduce_run(run, evs)
        got = ctl_snapshot(o, run)
        if got != want:
            bad.append("%s: streamvisorctl snapshot differs from the reference: %s" % (run, diff(got, want)))
        if o.raw and body != want:
            bad.append("%s: raw row (event_count %d of %d) differs from the reference: %s"
                       % (run, count, len(evs), diff(body or {}, want)))
    for b in bad[:10]:
        print("MISMATCH " + b)
    print("%d runs read through streamvisorctl%s: %d mismatches" % (len(runs), " and raw" if o.raw else "",
                                                                     len(bad)))
    return 1 if bad else 0


def cmd_partial(o):
    rng = random.Random(o.seed)
    ts0 = int(time.time() * 1000)
    evs = []
    for i in range(o.runs):
        full = gen_run(rng, "%s%05d" % (o.prefix, i), 2, 6, False, ts0 + i)
        evs += full[:max(2, int(len(full) * rng.uniform(0.3, 0.7)))]
    rng.shuffle(evs)
    evs.sort(key=lambda e: (e["run"], e["seq"]))
    with open(o.out, "a") as f:
        for e in evs:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    r = Redis(o.sock)
    r.pipeline([xadd_args("events", e) for e in evs])
    r.close()
    print("produced %d events of %d runs left in progress" % (len(evs), o.runs))
    return 0


def counts(db, run):
    db.execute("BEGIN")
    try:
        n = db.execute("SELECT count(*) FROM events WHERE run = ?", (run,)).fetchone()[0]
        r = db.execute("SELECT event_count FROM snapshots WHERE run = ?", (run,)).fetchone()
    finally:
        db.execute("COMMIT")
    return n, (r[0] if r else 0)


def cmd_flushwait(o):
    db = open_db(o.db)
    end = time.monotonic() + o.timeout
    t_stored = None
    while time.monotonic() < end:
        n, c = counts(db, o.run)
        now = time.monotonic()
        if t_stored is None and n >= o.n:
            t_stored = now
        if t_stored is not None and c >= o.n:
            print("%d" % round((now - t_stored) * 1000))
            return 0
        time.sleep(0.005)
    print("timeout: %s has %d stored events, its row covers %d" % (o.run, *counts(db, o.run)))
    return 1


def cmd_samerow(o):
    db = open_db(o.db)
    end = time.monotonic() + o.timeout
    while time.monotonic() < end:
        n, c = counts(db, o.run)
        if n >= o.n:
            if c != n:
                print("%s: %d stored events, the row covers %d in the same transaction" % (o.run, n, c))
                return 1
            print("%s: the row covers all %d events as soon as they are stored" % (o.run, n))
            return 0
        time.sleep(0.002)
    print("timeout: %s has %d stored events" % (o.run, counts(db, o.run)[0]))
    return 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reads")
    for a in ("--db", "--ctl", "--sock"):
        r.add_argument(a, required=True)
    r.add_argument("--seconds", type=float, default=5)
    r.add_argument("--min", type=int, default=20)
    r.add_argument("--seed", type=int, default=1)
    x = sub.add_parser("exact")
    for a in ("--db", "--ctl", "--sock"):
        x.add_argument(a, required=True)
    x.add_argument("--raw", action="store_true")
    q = sub.add_parser("partial")
    q.add_argument("--sock", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--runs", type=int, default=20)
    q.add_argument("--prefix", default="ab-")
    q.add_argument("--seed", type=int, default=7)
    for name in ("flushwait", "samerow"):
        f = sub.add_parser(name)
        f.add_argument("--db", required=True)
        f.add_argument("--run", required=True)
        f.add_argument("--n", type=int, required=True)
        f.add_argument("--timeout", type=float, default=20)
    o = p.parse_args()
    return {"reads": cmd_reads, "exact": cmd_exact, "partial": cmd_partial, "flushwait": cmd_flushwait,
            "samerow": cmd_samerow}[o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
