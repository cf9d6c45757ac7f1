/* How long the event loop is held: every callback tallyd gives libevent opens a scope
 * (LOOPWATCH_SCOPE() as its first line); the time from the outermost scope's start to its
 * end is one sample, kept in a histogram and a maximum. A sample is the time the loop
 * could not poll, serve /healthz or read another collector because of one callback, which
 * is what a stall is. Loop thread only: no locking (one loop per process). */
#ifndef CORE_LOOPWATCH_H
#define CORE_LOOPWATCH_H

#include <stdint.h>

/* Upper bounds of the histogram buckets, in seconds; a last bucket takes the rest. */
#define LOOPWATCH_BUCKETS 12
extern const double loopwatch_bounds[LOOPWATCH_BUCKETS];

struct loopwatch_stats {
    uint64_t counts[LOOPWATCH_BUCKETS + 1]; /* per bucket (not cumulative); last is +Inf */
    uint64_t samples;
    double sum_s, max_s;
    const char *max_where; /* the callback of the longest sample (its function name) */
};

/* Opens a scope named where (a static string); the value is for loopwatch_leave only. */
int loopwatch_enter(const char *where);
/* Closes it (the cleanup of LOOPWATCH_SCOPE). */
void loopwatch_leave(int *scope);

/* The first line of a callback: the scope closes when the callback returns, whichever way. */
#define LOOPWATCH_SCOPE()                                                                          \
    int loopwatch_scope_ __attribute__((cleanup(loopwatch_leave), unused)) =                       \
        loopwatch_enter(__func__)

/* A copy of the figures so far. */
void loopwatch_read(struct loopwatch_stats *out);
/* Forgets them (tests; tallyd resets once it is ready, so start-up does not count). */
void loopwatch_reset(void);

#endif
