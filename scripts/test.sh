#!/bin/sh
# Set up and run the whole test suite: unit and integration tests in a
# normal build, then again under AddressSanitizer + UBSan.  Ends with one
# line "N passed, N failed" summed over both builds.
set -u
cd "$(dirname "$0")/.."
./scripts/deps.sh || exit 1
status=0
setup() { # dir, extra options
	dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dfault_injection=true -Dtests=true "$@" >/dev/null || return 1
	fi
	meson compile -C "$dir" >/dev/null || meson compile -C "$dir"
}
run_suite() { # dir
	meson test -C "$1" --num-processes 2 --print-errorlogs || status=1
}
setup build && run_suite build || status=1
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export SV_SANITIZED=1
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false && run_suite build-asan || status=1
python3 scripts/count-tests.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
exit $status
