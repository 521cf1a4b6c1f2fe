#!/usr/bin/env bash
# config_check: `streamvisord -t -c FILE` accepts the shipped configs and
# rejects every test/conf/bad/*.conf with the expected FILE:LINE: messages.
#
# Each bad file starts with comment lines:
#   # expect: LINE: substring          error in this file at LINE
#   # expect: PATH:LINE: substring     error in another (included) file
#   # expect-count: N                  exactly N error lines
#   # forbid: text                     text must not appear in the output
set -euo pipefail

: "${STREAMVISORD:?STREAMVISORD must point at the daemon}"
src=${SV_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bad_dir=$src/test/conf/bad
out=$(mktemp)
trap 'rm -f "$out"' EXIT

fail=0
pass=0

ok() { printf 'ok   %s\n' "$1"; pass=$((pass + 1)); }
ko() { printf 'FAIL %s: %s\n' "$1" "$2"; fail=$((fail + 1)); }

for good in "$src/etc/streamvisor.conf" "$src/etc/streamvisor.conf.sample"; do
	name=${good#"$src"/}
	rc=0
	"$STREAMVISORD" -t -c "$good" >"$out" 2>&1 || rc=$?
	if [[ $rc -ne 0 ]]; then
		ko "$name" "exit $rc, expected 0: $(tr '\n' '|' <"$out")"
	elif ! grep -q '^configuration OK$' "$out"; then
		ko "$name" "no 'configuration OK': $(tr '\n' '|' <"$out")"
	else
		ok "$name"
	fi
done

# Does $out hold a line "FILE:LINE: ...SUBSTRING..." where FILE is $1 or
# ends in /$1?
has_error() {
	local file=$1 line=$2 sub=$3 l
	while IFS= read -r l; do
		if [[ $l == "$file:$line: "* || $l == */"$file:$line: "* ]] &&
		   [[ $l == *"$sub"* ]]; then
			return 0
		fi
	done <"$out"
	return 1
}

shopt -s nullglob
files=("$bad_dir"/*.conf)
if [[ ${#files[@]} -lt 14 ]]; then
	ko "bad configs" "only ${#files[@]} files in $bad_dir"
fi
for f in "${files[@]}"; do
	base=$(basename "$f")
	name=bad/$base
	rc=0
	# Run from the file's directory with a relative name half of the time,
	# so both forms of FILE are exercised.
	if [[ $base < m ]]; then
		(cd "$bad_dir" && "$STREAMVISORD" -t -c "$base") >"$out" 2>&1 || rc=$?
	else
		"$STREAMVISORD" -t -c "$f" >"$out" 2>&1 || rc=$?
	fi
	why=""
	if [[ $rc -ne 78 ]]; then
		why="exit $rc, expected 78"
	fi
	nexp=0
	count=""
	while IFS= read -r c; do
		case $c in
		'# expect-count: '*)
			count=${c#'# expect-count: '}
			;;
		'# expect: '*)
			e=${c#'# expect: '}
			nexp=$((nexp + 1))
			if [[ $e =~ ^([0-9]+):\ (.*)$ ]]; then
				efile=$base eline=${BASH_REMATCH[1]} esub=${BASH_REMATCH[2]}
			elif [[ $e =~ ^([^:]+):([0-9]+):\ (.*)$ ]]; then
				efile=${BASH_REMATCH[1]} eline=${BASH_REMATCH[2]} esub=${BASH_REMATCH[3]}
			else
				why="$why; malformed expect line '$c'"
				continue
			fi
			if ! has_error "$efile" "$eline" "$esub"; then
				why="$why; missing '$efile:$eline: $esub'"
			fi
			;;
		'# forbid: '*)
			fb=${c#'# forbid: '}
			if grep -qF -- "$fb" "$out"; then
				why="$why; output contains forbidden '$fb'"
			fi
			;;
		esac
	done < <(grep -E '^# (expect|expect-count|forbid): ' "$f")
	if [[ $nexp -eq 0 ]]; then
		why="$why; no '# expect:' line"
	fi
	if [[ -n $count ]]; then
		n=$(grep -c ':[0-9]*: ' "$out" || true)
		if [[ $n -ne $count ]]; then
			why="$why; $n error lines, expected $count"
		fi
	fi
	if grep -q '^configuration OK$' "$out"; then
		why="$why; printed 'configuration OK'"
	fi
	if [[ -n $why ]]; then
		ko "$name" "${why#; }: $(tr '\n' '|' <"$out")"
	else
		ok "$name"
	fi
done

# A file that does not exist: FILE: cannot read: ...
rc=0
"$STREAMVISORD" -t -c "$bad_dir/does-not-exist.conf" >"$out" 2>&1 || rc=$?
if [[ $rc -eq 78 ]] && grep -q "does-not-exist.conf: cannot read: " "$out"; then
	ok "unreadable file"
else
	ko "unreadable file" "exit $rc: $(tr '\n' '|' <"$out")"
fi

printf '%d passed, %d failed\n' "$pass" "$fail"
[[ $fail -eq 0 ]]
