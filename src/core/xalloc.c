/* Aborting allocators. Owns nothing; says what failed on stderr before aborting. A test
 * build (TALLY_FAULT_INJECTION, tests/faults/) can make any one allocation fail. */
#include "core/xalloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TALLY_FAULT_INJECTION
static unsigned long fault_at;    /* the allocation that fails, counted from the arming */
static unsigned long fault_calls; /* allocations since the arming */

void xalloc_fault_arm(unsigned long nth)
{
    fault_at = nth;
    fault_calls = 0;
}

unsigned long xalloc_fault_calls(void)
{
    return fault_calls;
}

static bool fault_hit(void)
{
    return ++fault_calls == fault_at;
}
#define FAULT_HIT() fault_hit()
#else
/* A normal build: the test folds away, nothing is counted. */
#define FAULT_HIT() false
#endif

static void out_of_memory(size_t n, size_t size)
{
    fprintf(stderr, "out of memory (%zu x %zu bytes)\n", n, size);
    abort();
}

void *xcalloc(size_t n, size_t size)
{
    void *p = FAULT_HIT() ? NULL : calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory(n, size);
    return p;
}

void *xmalloc(size_t size)
{
    void *p = FAULT_HIT() ? NULL : malloc(size ? size : 1);
    if (!p)
        out_of_memory(1, size);
    return p;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *xreallocarray(void *p, size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        out_of_memory(n, size);
    size_t bytes = n * size;
    void *q = FAULT_HIT() ? NULL : realloc(p, bytes ? bytes : 1);
    if (!q)
        out_of_memory(n, size);
    return q;
}

void *xgrow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    *cap = c;
    return xreallocarray(p, c, size);
}
