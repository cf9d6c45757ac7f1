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

/* This process as Prometheus' process_* metrics describe it; fields stay 0 when unknown. */
struct proc_self {
    double cpu_seconds;      /* user + system */
    uint64_t resident_bytes; /* RSS */
    uint64_t open_fds;
    uint64_t max_fds;  /* RLIMIT_NOFILE soft limit */
    double start_time; /* unix seconds */
};
void proc_self_read(struct proc_self *out);

#endif
