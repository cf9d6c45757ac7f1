/* tallyd: wiring only. Options -> HTTP bound first (health while starting) -> ingest,
 * whose store thread takes the writer lock and recovers -> the API gets its catalog ->
 * one event loop -> orderly stop on SIGTERM/SIGINT. */
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "core/loopwatch.h"
#include "core/log.h"
#include "ingest/ingest.h"
#include "notify.h"
#include "publish.h"
#include "receipts/receipts.h"
#include "store/store.h"
#include "tls/tls.h"

struct tallyd {
    struct tallyd_config cfg;
    struct publish *pub;
    struct ingest *in;
    struct notify *notify;
    struct receipts *receipts; /* GET /v1/receipts: its own thread and connection */
    SSL_CTX *tls;              /* collector port; NULL: plain TCP */
    SSL_CTX *http_tls;         /* HTTP port; NULL: plain HTTP */
    bool failed;               /* start-up could not finish: exit 1 whatever ingest says */
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)what;
    struct tallyd *t = arg;
    log_info("received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    notify_stopping(t->notify);
    ingest_shutdown(t->in);
}

static struct ingest_config ingest_config_of(const struct tallyd_config *c, SSL_CTX *tls)
{
    struct ingest_config icfg = {
        .conninfo = c->db,
        .listen_host = c->listen_host,
        .listen_port = c->listen_port,
        .checkpoint_ms = c->checkpoint_ms,
        .refresh_ms = c->refresh_ms,
        .backlog_votes = c->backlog_votes,
        .max_batch_votes = c->max_batch_votes,
        .max_frame_bytes = c->max_frame_bytes,
        .shutdown_grace_ms = c->shutdown_grace_ms,
        .standby = c->standby != 0,
        .embargo = c->embargo != 0,
        .min_anonymity = c->min_anonymity,
        .expected_ballots = c->expected_ballots,
        .tls = tls,
        .hello_timeout_ms = c->hello_timeout_ms,
        .frame_timeout_ms = c->frame_timeout_ms,
        .idle_timeout_ms = c->idle_timeout_ms,
        .max_connections = c->max_connections,
        .max_buffered_bytes = c->max_buffered_bytes,
    };
    return icfg;
}

static void say_changed(void *arg, const char *name, int live)
{
    (void)arg;
    if (live)
        log_info("reload: --%s changed: applied", name);
    else
        log_warn("reload: --%s changed: takes effect only after a restart", name);
}

/* SIGHUP: the configuration file again. What can change live is applied, the rest is named
 * in the log; a file that does not parse changes nothing. Collectors added with tallyctl
 * are seen within a second without any signal. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)sig;
    (void)what;
    struct tallyd *t = arg;
    if (!t->cfg.config_path[0]) {
        log_info("received SIGHUP: no --config file to read again; going on");
        return;
    }
    struct tallyd_config next;
    char err[1400];
    if (tallyd_config_reload(&t->cfg, &next, err, sizeof(err)) != 0) {
        log_error("received SIGHUP: %s; keeping the running configuration", err);
        return;
    }
    notify_reloading(t->notify, false);
    log_info("received SIGHUP: read %s again", t->cfg.config_path);
    tallyd_config_diff(&t->cfg, &next, say_changed, NULL);
    log_set_level((enum log_level)next.log_level);
    struct ingest_config icfg = ingest_config_of(&next, t->tls);
    ingest_reconfigure(t->in, &icfg);
    /* Only what was applied becomes the running configuration. */
    t->cfg.checkpoint_ms = next.checkpoint_ms;
    t->cfg.backlog_votes = next.backlog_votes;
    t->cfg.max_batch_votes = next.max_batch_votes;
    t->cfg.shutdown_grace_ms = next.shutdown_grace_ms;
    t->cfg.log_level = next.log_level;
    notify_reloading(t->notify, true);
}

/* Start-up finished: the API gets its catalog and the recovered state. */
static void on_started(void *arg, struct ingest *in, struct store_catalog *catalog)
{
    struct tallyd *t = arg;
    if (publish_attach(t->pub, catalog) != 0) {
        t->failed = true;
        ingest_shutdown(in);
    }
    /* tally_loop_iteration_seconds is about serving: recovery and the first snapshot are
     * done by now and do not count. */
    loopwatch_reset();
}

int main(int argc, char **argv)
{
    struct tallyd t;
    memset(&t, 0, sizeof(t));
    int rc = tallyd_config_parse(&t.cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_set_level((enum log_level)t.cfg.log_level);
    log_detect_journal();
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        log_error("libsodium cannot start");
        return 1;
    }

    int status = 1;
    struct event_base *base = NULL;
    char err[1400];
    if (t.cfg.tls_cert[0]) {
        t.tls = tls_server_ctx_new(t.cfg.tls_cert, t.cfg.tls_key, t.cfg.tls_ca, err, sizeof(err));
        if (!t.tls) {
            log_error("%s", err);
            return 2;
        }
    } else if (!tallyd_host_is_loopback(t.cfg.listen_host)) {
        log_warn("--insecure-plaintext: collectors on %s speak plain TCP: anyone who reaches "
                 "the port can send votes as any registered collector, and read them",
                 t.cfg.listen_host);
    }
    if (t.cfg.http_tls_cert[0]) {
        t.http_tls =
            tls_server_ctx_new(t.cfg.http_tls_cert, t.cfg.http_tls_key, NULL, err, sizeof(err));
        if (!t.http_tls) {
            log_error("%s", err);
            tls_ctx_free(t.tls);
            return 2;
        }
    }
    struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
    const struct tallyd_config *cfg = &t.cfg;

    /* The store thread wakes the loop with event_active(): libevent must lock. */
    evthread_use_pthreads();
    base = event_base_new();
    if (!base)
        goto out;
    /* Bound before PostgreSQL is even tried: a port clash shows at once, and /healthz
     * answers while tallyd waits for the database or the writer lock. */
    t.pub = publish_new(base, cfg->http_host, cfg->http_port);
    if (!t.pub) {
        char holder[300];
        store_writer_holder(cfg->db, holder, sizeof(holder));
        if (holder[0])
            log_error("%s: is this a second tallyd? (--standby waits for it)", holder);
        goto out;
    }
    if (t.http_tls && publish_use_tls(t.pub, t.http_tls) != 0)
        goto out;
    log_info("HTTP%s on %s:%u: dashboard at /, API under /v1/, /metrics, /healthz, /readyz",
             t.http_tls ? "S" : "", cfg->http_host, cfg->http_port);
    struct ingest_config icfg = ingest_config_of(cfg, t.tls);
    t.in = ingest_new(base, &icfg, on_started, &t);
    if (!t.in)
        goto out;
    publish_follow(t.pub, t.in);
    /* Receipts read the record on their own connection (--db), never on the loop. */
    t.receipts = receipts_new(base, cfg->db, 0);
    if (!t.receipts)
        goto out;
    publish_serve_receipts(t.pub, t.receipts);
    t.notify = notify_new(base, t.in);

    sigterm = evsignal_new(base, SIGTERM, on_signal, &t);
    sigint = evsignal_new(base, SIGINT, on_signal, &t);
    sighup = evsignal_new(base, SIGHUP, on_hup, &t);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);

    event_base_dispatch(base);
    status = t.failed ? 1 : ingest_exit_status(t.in);
    struct loopwatch_stats ls;
    loopwatch_read(&ls);
    if (ls.samples)
        log_info("event loop: %" PRIu64 " callbacks since ready, the longest %.1f ms (%s)",
                 ls.samples, ls.max_s * 1e3, ls.max_where ? ls.max_where : "?");
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (sighup)
        event_free(sighup);
    notify_free(t.notify);
    /* Before the HTTP server: it answers the receipt requests still waiting. */
    receipts_free(t.receipts);
    /* ingest first: its store thread may still call back into what publish holds. */
    ingest_free(t.in);
    publish_free(t.pub);
    if (base)
        event_base_free(base);
    tls_ctx_free(t.tls);
    tls_ctx_free(t.http_tls);
    log_info("exit %d", status);
    return status;
}
