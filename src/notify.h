/* tallyd and its service manager: sd_notify(3) READY/STATUS/STOPPING/RELOADING and the
 * watchdog, through libsystemd. Without NOTIFY_SOCKET (not run by systemd) every call is a
 * no-op. tallyd-only glue, on the loop. */
#ifndef TALLYD_NOTIFY_H
#define TALLYD_NOTIFY_H

#include <stdbool.h>

struct event_base;
struct ingest;
struct notify;

/* Starts a once-a-second timer that sends STATUS= when ingest's readiness reason changes,
 * READY=1 the first time ingest is ready, and WATCHDOG=1 when systemd asked for it. in is
 * borrowed for notify's life. */
struct notify *notify_new(struct event_base *base, struct ingest *in);
void notify_free(struct notify *n); /* NULL is a no-op */

/* STOPPING=1 (SIGTERM), RELOADING=1 then READY=1 around a reload. */
void notify_stopping(struct notify *n);
void notify_reloading(struct notify *n, bool done);

#endif
