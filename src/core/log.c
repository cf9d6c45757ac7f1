/* Log line formatting. Owns the process-wide level; does not own where stderr goes. */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static atomic_int min_level = LOG_INFO;
/* Set once at start-up, before any thread: stderr is systemd's journal stream. */
static bool to_journal;
static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

bool log_detect_journal(void)
{
    /* systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connects stderr to; a stderr
     * redirected elsewhere by the unit or a wrapper no longer matches. */
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    to_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
                 (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    return to_journal;
}

static void log_vline(enum log_level level, const char *ctx, const char *fmt, va_list ap)
{
    if ((int)level < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (to_journal) {
        /* sd-daemon(3) priority prefixes; the journal keeps its own timestamps. */
        static const int prio[] = {7, 6, 4, 3};
        fprintf(stderr, "<%d>%s%s\n", prio[level], ctx, msg);
        return;
    }

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One call per line so lines from the store thread and the loop never interleave. */
    fprintf(stderr, "%s.%03ldZ %s %s%s\n", ts, (long)(tv.tv_usec / 1000), level_names[level], ctx,
            msg);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vline(level, "", fmt, ap);
    va_end(ap);
}

void log_conn(enum log_level level, const char *peer, const char *collector, const char *fmt, ...)
{
    char ctx[160];
    snprintf(ctx, sizeof(ctx), "[%s %s] ", peer ? peer : "-",
             collector && collector[0] ? collector : "-");
    va_list ap;
    va_start(ap, fmt);
    log_vline(level, ctx, fmt, ap);
    va_end(ap);
}
