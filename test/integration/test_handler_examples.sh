#!/usr/bin/env bash
# handler_examples (issue 13): examples/handler.py and examples/handler.js
# speak the protocol of streamvisor-handlers(7) on their own, driven by
# test/tools/handler_driver.py (ready on fd 3, 50 calls answered out of
# order and concurrently, an error answer, a cancel, EOF = finish and
# exit 0).  Neither needs the daemon nor Redis.  Node.js missing: its
# example is skipped (apt-get install -y nodejs); both missing: exit 77.
set -euo pipefail

src=${SV_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
driver=$src/test/tools/handler_driver.py
ran=0
fail=0
if command -v python3 >/dev/null 2>&1; then
	python3 "$driver" python3 "$src/examples/handler.py" || fail=1
	ran=$((ran + 1))
else
	echo "skip examples/handler.py: no python3"
fi
if command -v node >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
	python3 "$driver" node "$src/examples/handler.js" || fail=1
	ran=$((ran + 1))
else
	echo "skip examples/handler.js: no node (apt-get install -y nodejs)"
fi
for f in "$src/examples/handler.py" "$src/examples/handler.js"; do
	n=$(wc -l <"$f")
	if ((n >= 60)); then
		echo "FAIL $f: $n lines, the issue allows under 60"
		fail=1
	fi
done
((ran > 0)) || exit 77
exit $fail
