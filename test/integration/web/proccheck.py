#!/usr/bin/env python3
"""What a process holds, read from /proc (test_web_child.sh; stdlib only).

  proccheck.py fds PID --sqlite PATH... --port P... [--allow-conn]
      Classifies every open fd of PID (readlink /proc/PID/fd/N, with the
      socket inodes looked up in /proc/net/{unix,tcp,tcp6,udp,udp6}):
        devnull      /dev/null (fd 0-2 only)
        pipe         pipe:[...] (fd 0-2 only: the stderr pipe to the master)
        unix         an AF_UNIX socket without a path of its own (the
                     channel: exactly one allowed)
        listen       a TCP socket in LISTEN on one of --port
        conn         a TCP connection to one of --port (a client of ours;
                     only with --allow-conn)
        sqlite       a regular file that is one of --sqlite or its
                     -wal/-shm, with its open mode
        anon         anon_inode:[eventpoll|timerfd|signalfd|eventfd] (the
                     event loop's kernel objects: no access to anything)
      Anything else is "bad" (a Redis or control socket, a password or
      config file, a directory, another pipe...).  Prints {"fds": [...],
      "bad": [...], "unix": n}; exit 1 when bad is not empty or there is
      not exactly one unix socket.
  proccheck.py mem PID --secret-file F...
      Reads every readable mapping of PID (/proc/PID/maps, /proc/PID/mem;
      needs root or ptrace rights; mappings over --max-region bytes, 1 GiB,
      are skipped: a sanitizer's shadow) and says whether the first line of
      each file occurs in it.  Prints {"found": [file...], "bytes": N,
      "regions": N, "unreadable": N}; exit 1 when something was found, 2
      when nothing could be read.
"""
import argparse
import json
import os
import re
import sys


def net_inodes():
    """inode -> description of every socket in /proc/net (this netns)."""
    out = {}
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                p = line.split()
                # Num RefCount Protocol Flags Type St Inode [Path]
                out[p[6]] = {"fam": "unix", "type": p[4], "state": p[5], "path": p[7] if len(p) > 7 else None}
    except OSError:
        pass
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open("/proc/net/" + name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    out[p[9]] = {"fam": name, "lport": lport, "rport": rport, "state": p[3]}
        except OSError:
            pass
    return out


def open_mode(pid, fd):
    try:
        with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
            for line in f:
                if line.startswith("flags:"):
                    fl = int(line.split()[1], 8)
                    return {0: "r", 1: "w", 2: "rw"}.get(fl & 3, "?")
    except OSError:
        pass
    return "?"


def cmd_fds(o):
    pid = o.pid
    socks = net_inodes()
    sqlite = set()
    for p in o.sqlite or []:
        rp = os.path.realpath(p)
        sqlite |= {rp, rp + "-wal", rp + "-shm", rp + "-journal"}
    ports = set(o.port or [])
    fds, bad = [], []
    nunix = 0
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue  # closed meanwhile
        e = {"fd": int(fd), "target": t}
        m = re.fullmatch(r"socket:\[(\d+)\]", t)
        if t == "/dev/null":
            e["kind"] = "devnull" if int(fd) <= 2 else "bad"
        elif t.startswith("pipe:"):
            e["kind"] = "pipe" if int(fd) <= 2 else "bad"
        elif t.startswith("anon_inode:"):
            e["kind"] = "anon" if re.search(r"eventpoll|timerfd|signalfd|eventfd|inotify", t) else "bad"
        elif m:
            s = socks.get(m.group(1))
            e["sock"] = s
            if s is None:
                e["kind"] = "bad"  # another netns or protocol: nothing of ours
            elif s["fam"] == "unix":
                nunix += 1
                e["kind"] = "unix" if not s.get("path") else "bad"
            elif s["fam"].startswith("tcp") and s["state"] == "0A" and s["lport"] in ports:
                e["kind"] = "listen"
            elif s["fam"].startswith("tcp") and s["lport"] in ports and o.allow_conn:
                e["kind"] = "conn"
            else:
                e["kind"] = "bad"
        elif t in sqlite:
            e["kind"] = "sqlite"
            e["mode"] = open_mode(pid, fd)
        else:
            e["kind"] = "bad"
        fds.append(e)
        if e["kind"] == "bad":
            bad.append(e)
    print(json.dumps({"fds": fds, "bad": bad, "unix": nunix}))
    return 1 if bad or nunix != 1 else 0


def cmd_mem(o):
    secrets = []
    for p in o.secret_file:
        with open(p, "rb") as f:
            s = f.readline().rstrip(b"\r\n")
        if len(s) < 8:
            sys.stderr.write("proccheck: %s: secret too short to search\n" % p)
            return 2
        secrets.append((p, s))
    found = set()
    total = regions = unreadable = skipped = 0
    keep = max(len(s) for _, s in secrets)
    with open("/proc/%d/maps" % o.pid) as maps, open("/proc/%d/mem" % o.pid, "rb", 0) as mem:
        for line in maps:
            p = line.split()
            lo, hi = (int(x, 16) for x in p[0].split("-"))
            if "r" not in p[1] or (len(p) > 5 and p[5] in ("[vvar]", "[vsyscall]")):
                continue
            if hi - lo > o.max_region:
                # A sanitizer's shadow memory (terabytes reserved): not
                # where a process keeps strings it read.
                skipped += 1
                continue
            regions += 1
            tail = b""
            try:
                mem.seek(lo)
                left = hi - lo
                while left > 0:
                    chunk = mem.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
                    total += len(chunk)
                    buf = tail + chunk
                    for name, s in secrets:
                        if s in buf:
                            found.add(name)
                    tail = buf[-keep:]
            except OSError:
                unreadable += 1
    print(json.dumps({"found": sorted(found), "bytes": total, "regions": regions, "unreadable": unreadable,
                      "skipped_large": skipped}))
    if not total:
        return 2
    return 1 if found else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fds")
    p.add_argument("pid", type=int)
    p.add_argument("--sqlite", action="append")
    p.add_argument("--port", type=int, action="append")
    p.add_argument("--allow-conn", action="store_true")
    p = sub.add_parser("mem")
    p.add_argument("pid", type=int)
    p.add_argument("--secret-file", action="append", required=True)
    p.add_argument("--max-region", type=int, default=1 << 30)
    o = ap.parse_args()
    return globals()["cmd_" + o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
