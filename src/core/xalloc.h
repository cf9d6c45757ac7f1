/* Allocation that aborts on failure (STYLE: allocation failure aborts), with overflow-
 * checked array sizes. A zero count still returns a unique non-NULL pointer. */
#ifndef CORE_XALLOC_H
#define CORE_XALLOC_H

#include <stddef.h>

void *xcalloc(size_t n, size_t size);
/* malloc(size), uninitialised. */
void *xmalloc(size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
/* A copy of the string s (not NULL). */
char *xstrdup(const char *s);
/* Makes room for need elements of size bytes in p, whose capacity is *cap: doubles the
 * capacity (from 16) until it fits, updates *cap, returns the (maybe moved) array. */
void *xgrow(void *p, size_t *cap, size_t need, size_t size);

#ifdef TALLY_FAULT_INJECTION
/* Test builds only (tests/faults/; no library is built with it): the nth allocation from
 * this arming (1: the next; xstrdup and a growing xgrow count one each) fails, and aborts
 * as a real failure does. 0 disarms. Not thread-safe: one test thread. */
void xalloc_fault_arm(unsigned long nth);
/* Allocations counted since the last arming. */
unsigned long xalloc_fault_calls(void);
#endif

#endif
