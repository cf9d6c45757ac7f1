/* The verdict slot and the failure report, linked into every harness, in libFuzzer builds
 * and replay builds alike. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>

enum fuzz_verdict fuzz_verdict;

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}
