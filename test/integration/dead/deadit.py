"""Helpers of the dead_* integration tests: write and read stream entries
byte-exact (resp.py's client in raw mode: bulk strings as bytes).

  deadit.py xadd SOCK STREAM HEX...        XADD with each argument hex-encoded; prints the id
  deadit.py xadd-big SOCK STREAM RUN SIZE  run/type/seq and a JSON data of SIZE bytes; prints the id
  deadit.py xadd-sized SOCK STREAM F...   F is NAME=TEXT, or NAME:N for N bytes "x"; prints the id
  deadit.py fields SOCK STREAM ID          the entry's fields, hex: [["name", "value"], ...]
  deadit.py digest SOCK STREAM [ID]        per entry: id and [hex name, value length,
                                           sha256 of the value] (large values stay small)
  deadit.py netstrings FILE                a `dead show --raw` file as fields, hex
"""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from resp import Redis  # noqa: E402


def entries(r, stream, eid=None):
    return r.cmd("XRANGE", stream, eid or "-", eid or "+")


def main():
    op, sock = sys.argv[1], sys.argv[2]
    if op == "netstrings":
        data = open(sock, "rb").read()
        items, i = [], 0
        while i < len(data):
            colon = data.index(b":", i)
            n = int(data[i:colon])
            items.append(data[colon + 1:colon + 1 + n].hex())
            assert data[colon + 1 + n:colon + 2 + n] == b",", "netstring without ','"
            i = colon + 2 + n
        print(json.dumps([items[k:k + 2] for k in range(0, len(items), 2)]))
        return
    r = Redis(sock, timeout=60, raw=True)
    stream = sys.argv[3]
    if op == "xadd":
        print(r.cmd("XADD", stream, "*", *[bytes.fromhex(a) for a in sys.argv[4:]]).decode())
    elif op == "xadd-big":
        run, size = sys.argv[4], int(sys.argv[5])
        pad = size - len('{"blob":""}')
        data = b'{"blob":"' + b"x" * pad + b'"}'
        print(r.cmd("XADD", stream, "*", "run", run, "type", "response.created", "seq", "1",
                    "data", data).decode())
    elif op == "xadd-sized":
        args = []
        for spec in sys.argv[4:]:
            if "=" in spec:
                name, text = spec.split("=", 1)
                args += [name, text]
            else:
                name, n = spec.rsplit(":", 1)
                args += [name, b"x" * int(n)]
        print(r.cmd("XADD", stream, "*", *args).decode())
    elif op == "fields":
        e = entries(r, stream, sys.argv[4])
        f = e[0][1] if e else []
        print(json.dumps([[f[k].hex(), f[k + 1].hex()] for k in range(0, len(f), 2)]))
    elif op == "digest":
        out = []
        for eid, f in entries(r, stream, sys.argv[4] if len(sys.argv) > 4 else None):
            out.append([eid.decode(), [[f[k].hex(), len(f[k + 1]), hashlib.sha256(f[k + 1]).hexdigest()]
                                       for k in range(0, len(f), 2)]])
        print(json.dumps(out))
    else:
        sys.exit("unknown op " + op)


main()
