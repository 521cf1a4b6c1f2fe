#!/bin/sh
# Build the libFuzzer harnesses of test/fuzz with clang (libFuzzer + ASan +
# UBSan), replay the saved regression inputs (test/fuzz/regress/NAME/*),
# then fuzz each harness for SECONDS (default 30) on a scratch copy of its
# seed corpus (test/fuzz/corpus/NAME).  Prints one line per harness:
#   fuzz_NAME: N execs, R exec/s, findings: K
# and exits non-zero when any harness crashed, leaked, hung or ran out of
# memory (libFuzzer's artifacts are kept in build-fuzz/fuzz/artifacts/NAME).
#
#   scripts/fuzz.sh [SECONDS] [NAME...]      NAME: config redis_url event control linebuf chan web
#
# Environment: CC (default clang), FUZZ_JOBS (parallel compiles, default 2),
# FUZZ_NO_REGRESS=1 (skip the regress replay, e.g. while a reported bug is
# not fixed yet),
# FUZZ_KEEP_CORPUS=1 (fuzz the committed corpus in place instead of a copy,
# to grow it; minimize before committing).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-30}
[ $# -gt 0 ] && shift
HARNESSES=${*:-"config redis_url event control linebuf chan web"}
CC=${CC:-clang}
B=$ROOT/build-fuzz
OUT=$B/fuzz
JOBS=${FUZZ_JOBS:-2}

case $SECS in *[!0-9]*|'') echo "usage: $0 [SECONDS] [NAME...]" >&2; exit 2 ;; esac
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found" >&2; exit 2; }
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
	"$CC" -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
	echo "fuzz.sh: $CC cannot link -fsanitize=fuzzer (apt-get install libclang-rt-14-dev)" >&2
	exit 2
fi

# config.h comes from meson (release seams: no fault injection).
if [ ! -f "$B/config.h" ]; then
	meson setup "$B" -Dfault_injection=false -Dtests=false >/dev/null
fi

# pointer-overflow is recoverable only so test/fuzz/ubsan.supp can silence
# known findings while fuzzing; halt_on_error=1 still stops on all others.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fsanitize-recover=pointer-overflow -fno-omit-frame-pointer"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wno-unused-parameter $SAN -I$ROOT/include -I$B"
DEPS=$(pkg-config --cflags --libs hiredis libconfig sqlite3 jansson gnutls libmicrohttpd)

# The core library: every src/*.c except the two mains, with coverage
# instrumentation but without libFuzzer's main.
mkdir -p "$OUT/obj"
for f in src/*.c; do
	case $f in src/main.c|src/ctl.c) continue ;; esac
	o=$OUT/obj/$(basename "$f" .c).o
	if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ "$B/config.h" -nt "$o" ] ||
	   [ -n "$(find include -newer "$o" -name '*.h' 2>/dev/null | head -n1)" ]; then
		echo "$f"
	fi
done | xargs -r -P "$JOBS" -I{} sh -c \
	'o="$1/obj/$(basename "$2" .c).o"; '"$CC"' '"$CFLAGS"' -fsanitize=fuzzer-no-link \
	 $(pkg-config --cflags hiredis libconfig sqlite3 jansson) -c "$2" -o "$o" || exit 255' _ "$OUT" {}
OBJS=$(for f in src/*.c; do
	case $f in src/main.c|src/ctl.c) continue ;; esac
	echo "$OUT/obj/$(basename "$f" .c).o"
done)

# An archive, so a harness that compiles a module in itself (fuzz_linebuf
# includes src/control.c) does not also pull that module's object.
rm -f "$OUT/libsvcore.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libsvcore.a" $OBJS

for h in $HARNESSES; do
	[ -f "test/fuzz/fuzz_$h.c" ] || { echo "fuzz.sh: no harness test/fuzz/fuzz_$h.c" >&2; exit 2; }
	# shellcheck disable=SC2086
	$CC $CFLAGS -fsanitize=fuzzer "test/fuzz/fuzz_$h.c" "$OUT/libsvcore.a" $DEPS -lm -o "$OUT/fuzz_$h"
done

status=0
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=0}"
UBSAN_BASE="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export UBSAN_OPTIONS="$UBSAN_BASE:suppressions=$ROOT/test/fuzz/ubsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/test/fuzz/lsan.supp:print_suppressions=0}"

for h in $HARNESSES; do
	bin=$OUT/fuzz_$h
	art=$OUT/artifacts/$h
	log=$OUT/fuzz_$h.log
	mkdir -p "$art"
	rm -f "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* "$art"/slow-unit-*
	opts="-timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
	[ -f "test/fuzz/$h.dict" ] && opts="$opts -dict=$ROOT/test/fuzz/$h.dict"
	case $h in
	control) opts="$opts -max_len=140000" ;;
	linebuf) opts="$opts -max_len=8192" ;;
	config|event) opts="$opts -max_len=16384" ;;
	chan) opts="$opts -max_len=300000" ;;
	esac
	# Per-input leak detection costs a full LSan scan whenever an input
	# ends with more mallocs than frees: for config, libconfig 1.5 leaks on
	# many syntax errors (test/fuzz/lsan.supp); for event, the long-lived
	# stores keep cache entries across inputs.  Both run at a few hundred
	# instead of thousands of exec/s with it, so they fuzz without it:
	# LeakSanitizer still checks at exit (a leak then fails the run without
	# an artifact; find the input with: fuzz_NAME -runs=0 CORPUS_DIR).
	fopts=
	case $h in config|event) fopts="-detect_leaks=0" ;; esac

	# 1. Regression inputs (crashes found earlier) must pass.
	regress=0
	files=$(find "test/fuzz/regress/$h" -type f ! -name '.*' 2>/dev/null | sort)
	if [ -n "$files" ] && [ "${FUZZ_NO_REGRESS:-0}" != 1 ]; then
		# Without the UBSan suppressions: a known finding fails here until fixed.
		# shellcheck disable=SC2086
		if ! UBSAN_OPTIONS=$UBSAN_BASE "$bin" $opts $files >"$OUT/regress_$h.log" 2>&1 </dev/null; then
			regress=1
			echo "fuzz_$h: a regression input fails (log: $OUT/regress_$h.log)"
			grep -m4 -E 'Running:|^==[0-9]+==ERROR|FINDING|runtime error|scanner failed|target exited' "$OUT/regress_$h.log" |
				sed 's/^/    /' || true
		fi
	fi

	# 2. Fuzz a scratch copy of the seed corpus.
	if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
		corpus=$ROOT/test/fuzz/corpus/$h
	else
		corpus=$OUT/corpus/$h
		rm -rf "$corpus"
		mkdir -p "$corpus"
		cp -R "test/fuzz/corpus/$h/." "$corpus/" 2>/dev/null || true
	fi
	rc=0
	# shellcheck disable=SC2086
	SVFUZZ_SKIP_KNOWN=1 "$bin" $opts $fopts -error_exitcode=1 -max_total_time="$SECS" -artifact_prefix="$art/" "$corpus" \
		>"$log" 2>&1 </dev/null || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	execs=${execs:-0}
	rate=$(grep -E '^#[0-9]+' "$log" | sed -n 's/.*exec\/s: *\([0-9]*\).*/\1/p' | tail -n1)
	rate=${rate:-0}
	nfind=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
	if [ "$rc" -ne 0 ] && [ "$nfind" -eq 0 ]; then
		nfind=1 # died without an artifact (e.g. a deadly signal in init)
	fi
	echo "fuzz_$h: $execs execs, $rate exec/s, findings: $nfind"
	if [ "$nfind" -ne 0 ]; then
		status=1
		grep -m5 -E '^==[0-9]+==ERROR|FINDING|runtime error|SUMMARY|Test unit written' "$log" | sed 's/^/    /' || true
		echo "    log: $log"
	fi
	[ "$regress" -eq 0 ] || status=1
done
exit $status
