/* Whether a process of this host is still the one that was: for telling a dead lock
 * holder from a live one. Linux /proc; no side effects. */
#ifndef CORE_PROC_H
#define CORE_PROC_H

#include <stdbool.h>
#include <stdint.h>

/* True when process pid of this host is gone: it does not exist, it is a zombie (killed,
 * not yet reaped by its parent), or the pid now belongs to a process that started after
 * unix time started_by (+ a few seconds of slack; 0 skips that check). False when it may
 * still be the same process, or when that cannot be told. */
bool proc_is_gone(int pid, int64_t started_by);

#endif
