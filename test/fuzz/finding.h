/* finding.h: how a libFuzzer harness reports a broken invariant: one line
 * "FINDING: ..." on stderr, then abort() so libFuzzer saves the input. */
#ifndef SV_FUZZ_FINDING_H
#define SV_FUZZ_FINDING_H

#include <stdio.h>
#include <stdlib.h>

#define FINDING(...)                                      \
	do {                                              \
		fprintf(stderr, "FINDING: " __VA_ARGS__); \
		fputc('\n', stderr);                      \
		abort();                                  \
	} while (0)

#endif
