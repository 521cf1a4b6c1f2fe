#!/bin/sh
# Set up and run the whole test suite, in build directories of its own
# (scripts/build-dirs.sh: build/ is left to scripts/run-dev.sh and to you):
#   1. unit + integration tests in build-test/ (fault-injection seams on);
#   2. the same suite under AddressSanitizer + UBSan (leaks included) in
#      build-test-asan/;
#   3. every libFuzzer harness for FUZZ_SECONDS (default 30) each, and
#      beside it the supervisor tests again with the daemon under valgrind
#      memcheck (meson test setup "valgrind", times stretched by
#      SV_TIME_SCALE).
# Ends with one line "N passed, N failed[, N skipped]" summed over all four
# (a skipped test is not a failure).
set -u
cd "$(dirname "$0")/.." || exit 1
./scripts/deps.sh || exit 1
. ./scripts/build-dirs.sh
B=$SV_TEST_BUILD
BA=$SV_TEST_ASAN_BUILD
status=0
extra_pass=0
extra_fail=0
# A log left by an earlier run must not count for a step that fails now
# (count-tests.py reports a missing log as a failure).
rm -f "$B"/meson-logs/testlog*.json "$BA"/meson-logs/testlog*.json
echo "== normal build"
if sv_build "$B"; then
	meson test -C "$B" --num-processes 2 --print-errorlogs || status=1
else
	status=1
fi
echo "== AddressSanitizer + UBSan build"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
if sv_build "$BA" -Db_sanitize=address,undefined -Db_lundef=false; then
	meson test -C "$BA" --num-processes 2 --print-errorlogs --no-suite nosan || status=1
else
	status=1
fi
unset ASAN_OPTIONS UBSAN_OPTIONS
# The fuzzers run one at a time on one core: the valgrind step (one test
# at a time, its clock stretched by SV_TIME_SCALE) shares the machine with
# them instead of waiting, which keeps CI well under its 20 minutes.
echo "== fuzzing (${FUZZ_SECONDS:-30} s per harness) beside valgrind memcheck (supervisor tests)"
mkdir -p "$B"
./scripts/fuzz.sh "${FUZZ_SECONDS:-30}" > "$B/fuzz.log" 2>&1 &
fuzz_pid=$!
meson test -C "$B" --setup valgrind --suite supervisor --num-processes 1 \
	--print-errorlogs || status=1
if wait "$fuzz_pid"; then
	extra_pass=$(grep -c '^fuzz_.*findings: 0' "$B/fuzz.log")
else
	status=1
	extra_fail=1
fi
grep '^fuzz_' "$B/fuzz.log" || tail -20 "$B/fuzz.log"
python3 scripts/count-tests.py --extra "$extra_pass" "$extra_fail" \
	"$B/meson-logs/testlog.json" "$B/meson-logs/testlog-valgrind.json" \
	"$BA/meson-logs/testlog.json"
exit $status
