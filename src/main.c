/* tallyd: wiring only. Options -> recovery from PostgreSQL -> ingest + HTTP on one
 * event loop -> orderly stop on SIGTERM/SIGINT. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "core/log.h"
#include "ingest/ingest.h"
#include "publish.h"
#include "store/store.h"
#include "tally/tally.h"

/* The one mutable global: set by signals that arrive before the loop runs. */
static volatile sig_atomic_t early_stop;

static void on_early_signal(int sig)
{
    (void)sig;
    early_stop = 1;
}

struct recovery_ctx {
    const struct tallyd_config *cfg;
    struct store_recovery *rec;
    struct tally *tally;
    uint64_t dup_tokens;
};

static struct tally *tally_from_recovery(const struct tallyd_config *cfg,
                                         const struct store_recovery *rec)
{
    struct tally_project *p = calloc(rec->n_projects ? rec->n_projects : 1, sizeof(*p));
    if (!p)
        abort();
    for (size_t i = 0; i < rec->n_projects; i++) {
        p[i].id = rec->projects[i].id;
        p[i].circuit_id = rec->projects[i].circuit_id;
    }
    uint64_t accepted = 0;
    for (size_t i = 0; i < rec->n_collectors; i++)
        accepted += rec->collectors[i].accepted;
    size_t expected = (size_t)(accepted > cfg->expected_ballots ? accepted + accepted / 4
                                                                : cfg->expected_ballots);
    struct tally *t = tally_new(p, rec->n_projects, expected);
    free(p);
    if (!t)
        return NULL;
    for (size_t i = 0; i < rec->n_projects; i++)
        tally_restore_votes(t, rec->projects[i].id, rec->projects[i].votes);
    for (size_t i = 0; i < rec->n_collectors; i++) {
        const struct store_collector *c = &rec->collectors[i];
        struct tally_totals tt = {c->batches, c->votes, c->accepted, c->duplicate, c->rejected};
        tally_collector_add(t, c->id, c->durable_seq, &tt);
    }
    return t;
}

/* Tokens stream in after projects and collectors are loaded: build the tally on the
 * first call so the tokens go straight into the ballot set. */
static void on_tokens(void *arg, const uint64_t *tokens, size_t n)
{
    struct recovery_ctx *ctx = arg;
    if (!ctx->tally) {
        ctx->tally = tally_from_recovery(ctx->cfg, ctx->rec);
        if (!ctx->tally)
            return;
    }
    ctx->dup_tokens += tally_restore_tokens(ctx->tally, tokens, n);
}

/* Blocking on purpose: nothing is served until the durable state is back. Retries
 * while PostgreSQL is away, until a signal says stop. */
static struct tally *recover(const struct tallyd_config *cfg, char *consultation, size_t clen,
                             uint64_t *last_checkpoint, struct store_catalog *catalog)
{
    int delay_ms = 200;
    bool warned = false;
    while (!early_stop) {
        char err[512];
        struct store *s = store_open(cfg->db, err, sizeof(err));
        if (!s) {
            if (!warned)
                log_warn("PostgreSQL unreachable (%s); retrying until it is", err);
            warned = true;
            struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            delay_ms = delay_ms < 5000 ? delay_ms * 2 : 5000;
            continue;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        struct store_recovery rec;
        memset(&rec, 0, sizeof(rec));
        struct recovery_ctx ctx = {cfg, &rec, NULL, 0};
        if (store_migrate(s) != 0 || store_recover(s, &rec, on_tokens, &ctx) != 0 ||
            store_catalog_read(s, catalog) != 0) {
            log_error("recovery failed: %s", store_last_error(s));
            store_close(s);
            tally_free(ctx.tally);
            return NULL;
        }
        store_close(s);
        if (!ctx.tally)
            ctx.tally = tally_from_recovery(cfg, &rec);
        if (!ctx.tally) {
            log_error("recovery failed: the registry has duplicate project ids");
            store_recovery_cleanup(&rec);
            return NULL;
        }
        if (ctx.dup_tokens)
            log_warn("%llu stored tokens appear in more than one batch record",
                     (unsigned long long)ctx.dup_tokens);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        log_info("recovered consultation '%s' in %.2f s: %zu projects, %zu collectors, "
                 "%zu ballots, checkpoint %llu",
                 rec.consultation_id, secs, tally_project_count(ctx.tally),
                 tally_collector_count(ctx.tally), tally_ballot_count(ctx.tally),
                 (unsigned long long)rec.last_checkpoint_id);
        if (tally_project_count(ctx.tally) == 0)
            log_warn("the registry is empty: every vote will be rejected "
                     "(load it with tallyctl load-registry, then restart tallyd)");
        snprintf(consultation, clen, "%s", rec.consultation_id);
        *last_checkpoint = rec.last_checkpoint_id;
        store_recovery_cleanup(&rec);
        return ctx.tally;
    }
    log_info("stopped before recovery finished");
    return NULL;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ingest_shutdown(arg);
}

int main(int argc, char **argv)
{
    struct tallyd_config cfg;
    int rc = tallyd_config_parse(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_set_level((enum log_level)cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_early_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int status = 1;
    char consultation[64] = "";
    uint64_t last_cp = 0;
    struct event_base *base = NULL;
    struct ingest *in = NULL;
    struct publish *pub = NULL;
    struct store_catalog catalog = {0};
    struct event *sigterm = NULL, *sigint = NULL;

    struct tally *t = recover(&cfg, consultation, sizeof(consultation), &last_cp, &catalog);
    if (!t)
        goto out;

    /* The store thread wakes the loop with event_active(): libevent must lock. */
    evthread_use_pthreads();
    base = event_base_new();
    if (!base)
        goto out;
    struct ingest_config icfg = {
        .conninfo = cfg.db,
        .listen_host = cfg.listen_host,
        .listen_port = cfg.listen_port,
        .consultation_id = consultation,
        .checkpoint_ms = cfg.checkpoint_ms,
        .backlog_votes = cfg.backlog_votes,
        .max_batch_votes = cfg.max_batch_votes,
        .max_frame_bytes = cfg.max_frame_bytes,
        .shutdown_grace_ms = cfg.shutdown_grace_ms,
    };
    in = ingest_new(base, &icfg, t, last_cp);
    if (!in) {
        tally_free(t);
        goto out;
    }
    pub = publish_new(base, cfg.http_host, cfg.http_port, &catalog, in);
    if (!pub)
        goto out;
    log_info("HTTP on %s:%u: dashboard at /, API under /v1/, /metrics, /healthz, /readyz",
             cfg.http_host, cfg.http_port);

    sigterm = evsignal_new(base, SIGTERM, on_signal, in);
    sigint = evsignal_new(base, SIGINT, on_signal, in);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    if (early_stop)
        ingest_shutdown(in);

    event_base_dispatch(base);
    status = ingest_exit_status(in);
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    publish_free(pub);
    ingest_free(in);
    store_catalog_cleanup(&catalog);
    if (base)
        event_base_free(base);
    log_info("exit %d", status);
    return status;
}
