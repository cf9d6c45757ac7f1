/* Leveled log lines on stderr: "2026-11-23T13:40:01.123Z INFO  [peer collector] message".
 * Thread-safe (one fprintf per line). */
#ifndef CORE_LOG_H
#define CORE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped. Any thread, any time (a reload changes it). */
void log_set_level(enum log_level level);
/* When stderr is systemd's journal stream (JOURNAL_STREAM), lines carry sd-daemon priority
 * prefixes ("<3>...") and no timestamp. Call once at start-up, before threads; returns
 * whether it is. */
bool log_detect_journal(void);
/* Parses "debug", "info", "warn", "error"; returns -1 on anything else. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line about one connection: peer is "host:port", collector may be NULL. */
void log_conn(enum log_level level, const char *peer, const char *collector, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
