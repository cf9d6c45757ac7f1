/* sd_notify for tallyd: readiness after recovery (not after exec), a STATUS line that says
 * what start-up waits for, STOPPING/RELOADING, and the watchdog kept alive by the loop itself
 * (a stuck loop stops pinging). Owns one timer; reads ingest only through its accessors. */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include <event2/event.h>

#include "core/loopwatch.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "ingest/ingest.h"

#define NOTIFY_TICK_MS 1000

struct notify {
    struct ingest *in;
    struct event *tick;
    bool enabled; /* NOTIFY_SOCKET was set */
    bool ready_sent;
    uint64_t watchdog_usec; /* 0: no watchdog */
    char status[300];
};

static void notify_tick(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct notify *n = arg;
    char reason[300] = "";
    bool ready = ingest_is_ready(n->in, reason, sizeof(reason));
    const char *status = ready ? "ready: counting votes" : reason;
    if (!n->ready_sent && ready) {
        sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        n->ready_sent = true;
        snprintf(n->status, sizeof(n->status), "%s", status);
    } else if (strcmp(status, n->status) != 0) {
        sd_notifyf(0, "STATUS=%s", status);
        snprintf(n->status, sizeof(n->status), "%s", status);
    }
    if (n->watchdog_usec)
        sd_notify(0, "WATCHDOG=1");
}

struct notify *notify_new(struct event_base *base, struct ingest *in)
{
    struct notify *n = xcalloc(1, sizeof(*n));
    n->in = in;
    n->enabled = getenv("NOTIFY_SOCKET") != NULL;
    if (!n->enabled)
        return n;
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        n->watchdog_usec = usec;
    /* Ping at least twice per watchdog period, and look at readiness every second. */
    long ms = NOTIFY_TICK_MS;
    if (n->watchdog_usec && (long)(n->watchdog_usec / 2000) < ms)
        ms = (long)(n->watchdog_usec / 2000) > 10 ? (long)(n->watchdog_usec / 2000) : 10;
    n->tick = event_new(base, -1, EV_PERSIST, notify_tick, n);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(n->tick, &tv);
    sd_notify(0, "STATUS=starting");
    log_debug("systemd notification socket in use%s", n->watchdog_usec ? ", watchdog enabled" : "");
    return n;
}

void notify_stopping(struct notify *n)
{
    if (n && n->enabled)
        sd_notify(0, "STOPPING=1\nSTATUS=stopping: writing the final checkpoint");
}

void notify_reloading(struct notify *n, bool done)
{
    if (n && n->enabled)
        sd_notify(0, done ? "READY=1" : "RELOADING=1");
}

void notify_free(struct notify *n)
{
    if (!n)
        return;
    if (n->tick)
        event_free(n->tick);
    free(n);
}
