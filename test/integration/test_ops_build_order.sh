#!/usr/bin/env bash
# The test suite owns its build (issue 10): README command 1
# (scripts/run-dev.sh, a plain `meson setup build`) followed by command 2
# (scripts/test.sh) must test a build with the fault seams.  In a
# throw-away copy of the tree, build/ is set up the way run-dev.sh does it
# (no seams), then the build-dir logic test.sh sources
# (scripts/build-dirs.sh) runs twice: on a fresh build-test/, and on a
# build-test/ whose seams someone switched off.  Both times build-test/
# must end with fault_injection=true and tests=true, and build/ must keep
# its own options.  Only the daemon is compiled (to ask it -V), not the
# whole tree.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MESON=$(command -v meson) || skip "meson not on PATH"
SRC=$TMPD/src

# copy_tree: the sources without var/, .git or any build dir (whatever
# its name: a dir holding build.ninja).
copy_tree() {
	mkdir -p "$SRC"
	tar -C "$SV_SRC_DIR" --exclude-tag-all=build.ninja --exclude=./var --exclude=./.git -cf - . |
		tar -C "$SRC" -xf - || fail "cannot copy $SV_SRC_DIR to $SRC"
}

# in_copy CMD...: run CMD in the copy, its output kept in $TMPD/cmd.log.
in_copy() {
	(cd "$SRC" && "$@") >"$TMPD/cmd.log" 2>&1 ||
		{ tail -n 30 "$TMPD/cmd.log"; fail "in the copy, '$*' failed"; }
}

# test_build_dirs: what test.sh does before it compiles.
test_build_dirs() { . ./scripts/build-dirs.sh && sv_configure "$SV_TEST_BUILD"; }

# option DIR NAME: the value of meson option NAME in the copy's DIR.
option() {
	"$MESON" introspect --buildoptions "$SRC/$1" |
		"$PY" -c 'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]][0])' "$2"
}

# expect DIR NAME VALUE
expect() {
	local v
	v=$(option "$1" "$2") || fail "$1: cannot read option $2"
	[ "$v" = "$3" ] || fail "$1: $2 = $v, want $3"
}

check "test.sh takes its build dirs from scripts/build-dirs.sh"
grep -q '^\. \./scripts/build-dirs\.sh' "$SV_SRC_DIR/scripts/test.sh" ||
	fail "scripts/test.sh:1: does not source scripts/build-dirs.sh"
ok "sourced"

check "README command 1 leaves build/ without fault seams"
copy_tree
in_copy "$MESON" setup build
expect build fault_injection False
ok "build/: fault_injection=false"

check "test.sh's build dir, set up fresh, has the seams"
in_copy bash -c "$(declare -f test_build_dirs); test_build_dirs"
expect build-test fault_injection True
expect build-test tests True
expect build fault_injection False
ok "build-test/: fault_injection=true tests=true; build/ untouched"

check "a build-test/ whose seams were switched off gets them back"
in_copy "$MESON" configure build-test -Dfault_injection=false -Dtests=false
expect build-test fault_injection False
in_copy bash -c "$(declare -f test_build_dirs); test_build_dirs"
expect build-test fault_injection True
expect build-test tests True
ok "options set again on an existing dir"

check "the daemon compiled there says so itself"
in_copy nice -n 5 "$MESON" compile -C build-test streamvisord
v=$("$SRC/build-test/src/streamvisord" -V) || fail "streamvisord -V failed: $v"
grep -qx 'fault injection: on' <<<"$v" || fail "build-test/src/streamvisord -V: $v"
ok "streamvisord -V: fault injection: on"

pass
