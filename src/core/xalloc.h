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

#endif
