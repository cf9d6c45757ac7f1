/* Event-loop hold times. See loopwatch.h. */
#include "core/loopwatch.h"

#include <string.h>
#include <time.h>

const double loopwatch_bounds[LOOPWATCH_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
};

static struct loopwatch_stats stats;
static int depth;
static struct timespec started;
static const char *outermost;

int loopwatch_enter(const char *where)
{
    if (depth++ == 0) {
        outermost = where;
        clock_gettime(CLOCK_MONOTONIC, &started);
    }
    return depth;
}

void loopwatch_leave(int *scope)
{
    (void)scope;
    if (depth <= 0 || --depth > 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double s =
        (double)(now.tv_sec - started.tv_sec) + (double)(now.tv_nsec - started.tv_nsec) / 1e9;
    size_t b = 0;
    while (b < LOOPWATCH_BUCKETS && s > loopwatch_bounds[b])
        b++;
    stats.counts[b]++;
    stats.samples++;
    stats.sum_s += s;
    if (s > stats.max_s) {
        stats.max_s = s;
        stats.max_where = outermost;
    }
}

void loopwatch_read(struct loopwatch_stats *out)
{
    *out = stats;
}

void loopwatch_reset(void)
{
    memset(&stats, 0, sizeof(stats));
    if (depth > 0) /* the scope open now counts from here */
        clock_gettime(CLOCK_MONOTONIC, &started);
}
