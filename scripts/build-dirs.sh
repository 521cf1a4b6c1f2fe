# shellcheck shell=sh
# The build directories of the test suite, sourced by scripts/test.sh and
# test/integration/test_ops_build_order.sh from the repository root.
#
# The suite never reuses build/: that one belongs to scripts/run-dev.sh and
# to whoever runs `meson setup build` by hand, with whatever options they
# chose.  The suite has directories of its own and sets the options it
# needs on every run, because `meson setup --reconfigure DIR` alone keeps a
# directory's old options (a build-test/ set up by an older test.sh, or
# edited with `meson configure`, would otherwise silently lose the seams).

SV_TEST_BUILD=${SV_TEST_BUILD:-build-test}
SV_TEST_ASAN_BUILD=${SV_TEST_ASAN_BUILD:-build-test-asan}
# Fault seams on: without them the tests that need them only skip.
SV_TEST_OPTIONS="-Dfault_injection=true -Dtests=true"

# sv_configure DIR [OPTION...]: set DIR up, or set the options again on an
# existing DIR (`meson configure` regenerates it at the next compile).  A
# DIR that meson can no longer read (another meson version, a half-written
# setup) is wiped and set up afresh.
sv_configure() {
	_dir=$1
	shift
	# shellcheck disable=SC2086 # SV_TEST_OPTIONS is a list of words
	if [ -f "$_dir/meson-private/coredata.dat" ]; then
		meson configure "$_dir" $SV_TEST_OPTIONS "$@" >/dev/null && return 0
		echo "$0: $_dir: meson configure failed; wiping it" >&2
		meson setup --wipe "$_dir" $SV_TEST_OPTIONS "$@" >/dev/null
	else
		meson setup "$_dir" $SV_TEST_OPTIONS "$@" >/dev/null
	fi
}

# sv_build DIR [OPTION...]: configure and compile; on failure compile again
# with the output shown, so the log says why.
sv_build() {
	sv_configure "$@" || return 1
	meson compile -C "$1" >/dev/null || meson compile -C "$1"
}
