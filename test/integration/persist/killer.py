#!/usr/bin/env python3
"""killer.py CTL SOCK DAEMON_PID STOPFILE INTERVAL_S MIN_UPTIME_MS LOG
SIGKILL a random RUNNING persistence worker (a child of DAEMON_PID that has
been up MIN_UPTIME_MS) every INTERVAL_S until STOPFILE exists.  Appends one
line per kill to LOG and prints the number of kills at the end."""
import json, os, random, signal, subprocess, sys, time

ctl, sock, daemon, stop, interval, min_up, log = sys.argv[1:8]
daemon, interval, min_up = int(daemon), float(interval), int(min_up)
kills = 0
rng = random.Random(42)


def ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


with open(log, "a") as lf:
    while not os.path.exists(stop):
        time.sleep(interval)
        try:
            out = subprocess.run([ctl, "-s", sock, "--json", "status"], capture_output=True,
                                 timeout=5).stdout
            ws = json.loads(out)["workers"]
        except Exception:
            continue
        cands = [w for w in ws if w.get("pool") == "persist" and w.get("state") == "RUNNING"
                 and (w.get("pid") or 0) > 0 and (w.get("uptime_ms") or 0) >= min_up]
        if not cands:
            continue
        w = rng.choice(cands)
        if ppid(w["pid"]) != daemon:
            continue
        try:
            os.kill(w["pid"], signal.SIGKILL)
            kills += 1
            lf.write("%d kill %s pid %d\n" % (int(time.time() * 1000), w["name"], w["pid"]))
            lf.flush()
        except OSError:
            pass
print(kills)
