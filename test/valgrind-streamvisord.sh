#!/bin/sh
# Run streamvisord under valgrind memcheck (forked workers and the monitor
# are followed automatically: they are forks, not execs).  Errors make
# valgrind print "ERROR SUMMARY: N errors" with N > 0 in the daemon log,
# which test/integration/lib.sh treats as a failure; the master's own exit
# status is --error-exitcode.  SV_NO_TUNE_MALLOC: no re-exec (valgrind has
# its own allocator anyway).
SV_NO_TUNE_MALLOC=1 exec valgrind --quiet --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--child-silent-after-fork=no "${STREAMVISORD_REAL:?}" "$@"
