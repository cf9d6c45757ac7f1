/* The crash points of crashpoint.h: parses TALLY_CRASH_AT once and kills the process with
 * SIGKILL at the armed point's N-th pass. Compiled to an empty unit unless the build
 * defines TALLY_CRASH_POINTS; owns no point itself (the call sites are in net, ingest and
 * store). */
#include "core/crashpoint.h"

#ifdef TALLY_CRASH_POINTS

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CRASHPOINT_NAME_MAX 64

/* Written once under crash_once, read-only after: pthread_once orders the writes before
 * every reader's return from pthread_once. */
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;
static char crash_name[CRASHPOINT_NAME_MAX];
static uint64_t crash_at; /* 0: nothing armed */
static atomic_uint_fast64_t crash_passes;

static void crash_parse(void)
{
    const char *v = getenv("TALLY_CRASH_AT");
    if (!v || !*v)
        return;
    const char *colon = strchr(v, ':');
    size_t len = colon ? (size_t)(colon - v) : strlen(v);
    uint64_t n = 1;
    if (colon) {
        char *end = NULL;
        unsigned long long x = strtoull(colon + 1, &end, 10);
        if (!*(colon + 1) || *end || x == 0) {
            fprintf(stderr,
                    "crash point: TALLY_CRASH_AT=%s: N must be a positive integer; "
                    "nothing armed\n",
                    v);
            return;
        }
        n = x;
    }
    if (len == 0 || len >= sizeof(crash_name)) {
        fprintf(stderr, "crash point: TALLY_CRASH_AT=%s: bad point name; nothing armed\n", v);
        return;
    }
    memcpy(crash_name, v, len);
    crash_name[len] = '\0';
    crash_at = n;
    fprintf(stderr, "crash point: armed: SIGKILL at pass %llu of '%s'\n", (unsigned long long)n,
            crash_name);
}

void crashpoint_pass(const char *name)
{
    pthread_once(&crash_once, crash_parse);
    if (!crash_at || strcmp(name, crash_name) != 0)
        return;
    uint64_t pass = (uint64_t)atomic_fetch_add(&crash_passes, 1) + 1;
    if (pass != crash_at)
        return;
    /* One write(2), unbuffered: the test reads it from the log to tell this kill from a
     * crash of another kind. */
    char line[160];
    int n = snprintf(line, sizeof(line), "crash point: '%s' reached (pass %llu): SIGKILL\n", name,
                     (unsigned long long)pass);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
        (void)w; /* nothing to do about it: the process ends now */
    }
    raise(SIGKILL);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int crashpoint_unused;

#endif
