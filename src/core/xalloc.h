/* Allocation that aborts on failure (STYLE: allocation failure aborts), with overflow-
 * checked array sizes. A zero count still returns a unique non-NULL pointer. */
#ifndef CORE_XALLOC_H
#define CORE_XALLOC_H

#include <stddef.h>

void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);

#endif
