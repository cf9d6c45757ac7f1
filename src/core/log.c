/* Log line formatting. Owns the process-wide level; does not own where stderr goes. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void log_set_level(enum log_level level)
{
    min_level = level;
}

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

static void log_vline(enum log_level level, const char *ctx, const char *fmt, va_list ap)
{
    if (level < min_level)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);

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
