#!/usr/bin/env python3
"""Sum meson testlog.json files into one line: 'N passed, N failed', with
', N skipped' after it when meson skipped tests (exit 77, e.g. the fault
tests of a build without -Dfault_injection=true); a skip is no failure."""
import json
import sys

passed = failed = skipped = 0
args = sys.argv[1:]
if args[:1] == ["--extra"]:
    # Results of steps outside meson (the fuzzers): passed, failed.
    passed += int(args[1])
    failed += int(args[2])
    args = args[3:]
for path in args:
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r.get("result") in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif r.get("result") == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    except FileNotFoundError:
        print(f"{path}: missing (that build or its tests did not run)", file=sys.stderr)
        failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
