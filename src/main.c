/* tallyd: wiring only. Options -> HTTP bound first (health while starting) -> ingest,
 * whose store thread takes the writer lock and recovers -> the API gets its catalog ->
 * one event loop -> orderly stop on SIGTERM/SIGINT. */
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "core/log.h"
#include "ingest/ingest.h"
#include "publish.h"
#include "store/store.h"

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ingest_shutdown(arg);
}

/* SIGHUP is an operator's "reload": without a configuration file there is nothing to
 * reload, but it must not kill tallyd (its default action) and lose the checkpoint. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    log_info("received SIGHUP: nothing to reload (every setting comes from the command line; "
             "changing one needs a restart); going on");
}

struct tallyd {
    struct publish *pub;
    bool failed; /* start-up could not finish: exit 1 whatever ingest says */
};

/* Start-up finished: the API gets its catalog and the recovered state. */
static void on_started(void *arg, struct ingest *in, struct store_catalog *catalog)
{
    struct tallyd *t = arg;
    if (publish_attach(t->pub, catalog) != 0) {
        t->failed = true;
        ingest_shutdown(in);
    }
}

int main(int argc, char **argv)
{
    struct tallyd_config cfg;
    int rc = tallyd_config_parse(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_set_level((enum log_level)cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        log_error("libsodium cannot start");
        return 1;
    }

    int status = 1;
    struct event_base *base = NULL;
    struct ingest *in = NULL;
    struct publish *pub = NULL;
    struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;

    /* The store thread wakes the loop with event_active(): libevent must lock. */
    evthread_use_pthreads();
    base = event_base_new();
    if (!base)
        goto out;
    /* Bound before PostgreSQL is even tried: a port clash shows at once, and /healthz
     * answers while tallyd waits for the database or the writer lock. */
    pub = publish_new(base, cfg.http_host, cfg.http_port);
    if (!pub) {
        char holder[300];
        store_writer_holder(cfg.db, holder, sizeof(holder));
        if (holder[0])
            log_error("%s: is this a second tallyd? (--standby waits for it)", holder);
        goto out;
    }
    log_info("HTTP on %s:%u: dashboard at /, API under /v1/, /metrics, /healthz, /readyz",
             cfg.http_host, cfg.http_port);
    struct ingest_config icfg = {
        .conninfo = cfg.db,
        .listen_host = cfg.listen_host,
        .listen_port = cfg.listen_port,
        .checkpoint_ms = cfg.checkpoint_ms,
        .backlog_votes = cfg.backlog_votes,
        .max_batch_votes = cfg.max_batch_votes,
        .max_frame_bytes = cfg.max_frame_bytes,
        .shutdown_grace_ms = cfg.shutdown_grace_ms,
        .standby = cfg.standby != 0,
        .min_anonymity = cfg.min_anonymity,
        .expected_ballots = cfg.expected_ballots,
    };
    struct tallyd t = {pub, false};
    in = ingest_new(base, &icfg, on_started, &t);
    if (!in)
        goto out;
    publish_follow(pub, in);

    sigterm = evsignal_new(base, SIGTERM, on_signal, in);
    sigint = evsignal_new(base, SIGINT, on_signal, in);
    sighup = evsignal_new(base, SIGHUP, on_hup, NULL);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);

    event_base_dispatch(base);
    status = t.failed ? 1 : ingest_exit_status(in);
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (sighup)
        event_free(sighup);
    /* ingest first: its store thread may still call back into what publish holds. */
    ingest_free(in);
    publish_free(pub);
    if (base)
        event_base_free(base);
    log_info("exit %d", status);
    return status;
}
