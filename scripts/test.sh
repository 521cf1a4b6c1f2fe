#!/bin/sh
# Set up and run the whole test suite:
#   1. unit + integration tests in build/ (fault-injection seams on);
#   2. the same suite under AddressSanitizer + UBSan (leaks included) in
#      build-asan/;
#   3. every libFuzzer harness for FUZZ_SECONDS (default 30) each, and
#      beside it the supervisor tests again with the daemon under valgrind
#      memcheck (meson test setup "valgrind", times stretched by
#      SV_TIME_SCALE).
# Ends with one line "N passed, N failed" summed over all four.
set -u
cd "$(dirname "$0")/.."
./scripts/deps.sh || exit 1
status=0
extra_pass=0
extra_fail=0
setup() { # dir, extra options
	dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dfault_injection=true -Dtests=true "$@" >/dev/null || return 1
	else
		meson setup --reconfigure "$dir" >/dev/null || return 1
	fi
	meson compile -C "$dir" >/dev/null || meson compile -C "$dir"
}
echo "== normal build"
if setup build; then
	meson test -C build --num-processes 2 --print-errorlogs || status=1
else
	status=1
fi
echo "== AddressSanitizer + UBSan build"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
	meson test -C build-asan --num-processes 2 --print-errorlogs --no-suite nosan || status=1
else
	status=1
fi
unset ASAN_OPTIONS UBSAN_OPTIONS
# The fuzzers run one at a time on one core: the valgrind step (one test
# at a time, its clock stretched by SV_TIME_SCALE) shares the machine with
# them instead of waiting, which keeps CI well under its 20 minutes.
echo "== fuzzing (${FUZZ_SECONDS:-30} s per harness) beside valgrind memcheck (supervisor tests)"
./scripts/fuzz.sh "${FUZZ_SECONDS:-30}" > build/fuzz.log 2>&1 &
fuzz_pid=$!
meson test -C build --setup valgrind --suite supervisor --num-processes 1 \
	--print-errorlogs || status=1
if wait "$fuzz_pid"; then
	extra_pass=$(grep -c '^fuzz_.*findings: 0' build/fuzz.log)
else
	status=1
	extra_fail=1
fi
grep '^fuzz_' build/fuzz.log || tail -20 build/fuzz.log
python3 scripts/count-tests.py --extra "$extra_pass" "$extra_fail" \
	build/meson-logs/testlog.json build/meson-logs/testlog-valgrind.json \
	build-asan/meson-logs/testlog.json
exit $status
