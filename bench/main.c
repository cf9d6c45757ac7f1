/* tally-bench: measures tallyd (over TCP, and with mutual TLS) against Redis,
 * PostgreSQL-direct and the in-process limit on one workload, in one run, and checks every system's
 * counts against the ground truth. This file is the wiring: the scratch directory and PostgreSQL,
 * the order of the runs and the exit status; options.c reads the command line, report.c writes the
 * table and the JSON. See bench/README.md. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_signal(int sig)
{
    (void)sig;
    bench_stop = 1;
}

uint64_t bench_expected_ballots(const struct bench_opts *o, const struct workload *w)
{
    if (o->expected_ballots == EXPECTED_ELECTORS) {
        double e = ceil(o->electors_factor * (double)w->n_distinct);
        return e < 1 ? 1 : (uint64_t)e;
    }
    if (o->expected_ballots == EXPECTED_AUTO)
        return w->n_distinct ? w->n_distinct : 1;
    return (uint64_t)o->expected_ballots; /* a number, or 0: none */
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    int prc = bench_parse_args(&o, argc, argv);
    if (prc)
        return prc == 1 ? 0 : 2;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct peer_result res[R_COUNT];
    static const char *const names[R_COUNT] = {"tallyd",         "tallyd_tls", "redis_always",
                                               "redis_everysec", "postgres",   "postgres_per_batch",
                                               "limit"};
    static const unsigned bits[R_COUNT] = {
        PEER_TALLYD,   PEER_TALLYD_TLS,         PEER_REDIS_ALWAYS, PEER_REDIS_EVERYSEC,
        PEER_POSTGRES, PEER_POSTGRES_PER_BATCH, PEER_LIMIT};
    memset(res, 0, sizeof(res));
    for (int i = 0; i < R_COUNT; i++) {
        res[i].name = names[i];
        snprintf(res[i].note, sizeof(res[i].note), "not requested (--peers)");
    }

    /* Redis asked for (by 'all' too) and not there is an error before anything starts: a
     * comparison that silently lost its Redis figures would read as a complete one. */
    char redis_buf[1200];
    if ((o.peers & PEER_REDIS) && !redis_find(&o, redis_buf, sizeof(redis_buf))) {
        fprintf(stderr,
                "tally-bench: redis-server is not installed, and --peers asks for Redis.\n"
                "  Run bench/run.sh (it installs it), or apt-get install redis-server, or give\n"
                "  --redis-server PATH; or leave Redis out: --peers "
                "tallyd,postgres,postgres_per_batch,limit\n");
        return 1;
    }

    struct workload w;
    double g0 = now_s();
    if (o.streamed)
        progress("setup",
                 "streaming %llu votes over %u projects, %u collectors, batches of %u (%s): "
                 "each batch is made as it is sent; counting the ground truth from the recipe",
                 (unsigned long long)o.votes, o.projects, o.collectors, o.batch,
                 o.stream > 0 ? "--stream" : "in memory they would take over 4 GB");
    else
        progress("setup", "generating %llu votes over %u projects, %u collectors, batches of %u",
                 (unsigned long long)o.votes, o.projects, o.collectors, o.batch);
    wl_generate(&w, &o);
    struct bench_ctx ctx = {.o = &o, .w = &w, .setup_s = now_s() - g0};
    progress("setup",
             "%llu votes: %llu distinct ballots, %llu repeated; %zu projects in %zu circuits; "
             "%llu batches, %llu sent twice (%.1f s)",
             (unsigned long long)w.n_votes, (unsigned long long)w.n_distinct,
             (unsigned long long)w.n_duplicate, w.n_projects, w.n_circuits,
             (unsigned long long)w.n_batches, (unsigned long long)w.n_retransmits, ctx.setup_s);

    ctx.ops_limit = calloc(w.n_collectors, sizeof(size_t));
    ctx.batches_limit = calloc(w.n_collectors, sizeof(size_t));
    if (!ctx.ops_limit || !ctx.batches_limit)
        abort();
    wl_prefix(&w, o.peer_votes, ctx.ops_limit, ctx.batches_limit);
    /* The slow peers' prefix of a streamed workload is made in memory (--peer-votes). */
    if (w.stream && (o.peers & (PEER_REDIS | PEER_POSTGRES | PEER_POSTGRES_PER_BATCH)))
        wl_stream_materialize(&w, ctx.batches_limit);
    snprintf(ctx.workdir, sizeof(ctx.workdir), "/tmp/tally-bench.XXXXXX");
    if (!mkdtemp(ctx.workdir)) {
        perror("tally-bench: mkdtemp");
        wl_free(&w);
        return 1;
    }
    /* PostgreSQL (user postgres) must reach the cluster directory inside. */
    chmod(ctx.workdir, 0711);
    struct pg_env pg;
    memset(&pg, 0, sizeof(pg));
    bool pg_up = false;
    if ((o.peers & (PEER_TALLYD | PEER_TALLYD_TLS | PEER_LIMIT)) && !w.stream)
        frames_encode(&ctx);

    if ((o.peers & PEER_LIMIT) && !bench_stop)
        peer_limit_run(&ctx, &res[R_LIMIT]);
    unsigned pg_peers = PEER_TALLYD | PEER_TALLYD_TLS | PEER_POSTGRES | PEER_POSTGRES_PER_BATCH;
    if ((o.peers & pg_peers) && !bench_stop) {
        if (pg_env_start(&pg, &o, ctx.workdir) == 0) {
            pg_up = true;
            ctx.pg = &pg;
        } else {
            for (int i = 0; i < R_COUNT; i++)
                if ((o.peers & bits[i] & pg_peers))
                    peer_fail(&res[i], "no PostgreSQL");
        }
    }
    if ((o.peers & (PEER_TALLYD | PEER_TALLYD_TLS)) && pg_up && !bench_stop)
        peer_tallyd_run(&ctx, (o.peers & PEER_TALLYD) ? &res[R_TALLYD] : NULL,
                        (o.peers & PEER_TALLYD_TLS) ? &res[R_TALLYD_TLS] : NULL);
    frames_free(&ctx);
    if ((o.peers & PEER_POSTGRES) && pg_up && !bench_stop)
        peer_postgres_run(&ctx, &res[R_POSTGRES], false);
    if ((o.peers & PEER_POSTGRES_PER_BATCH) && pg_up && !bench_stop)
        peer_postgres_run(&ctx, &res[R_POSTGRES_PER_BATCH], true);
    if (pg_up)
        pg_env_stop(&pg);
    if ((o.peers & PEER_REDIS_ALWAYS) && !bench_stop)
        peer_redis_run(&ctx, &res[R_REDIS_ALWAYS], true);
    if ((o.peers & PEER_REDIS_EVERYSEC) && !bench_stop)
        peer_redis_run(&ctx, &res[R_REDIS_EVERYSEC], false);

    /* What was not run: not asked for, or interrupted. */
    for (int i = 0; i < R_COUNT; i++) {
        if (!(o.peers & bits[i]))
            res[i].skipped = true;
        else if (!res[i].ran && !res[i].failed)
            peer_fail(&res[i], "%s", bench_stop ? "interrupted" : "did not run");
    }
    int status = 0;
    for (int i = 0; i < R_COUNT; i++)
        if (!res[i].skipped && (!res[i].ran || !res[i].exact))
            status = 1;
    if (bench_stop)
        status = 130;

    report_table(&ctx, res, status);
    if (o.json_path && report_json(&ctx, res, status) != 0 && status == 0)
        status = 1;

    for (int i = 0; i < R_COUNT; i++)
        sb_free(&res[i].json);
    if (o.keep) {
        progress("done", "kept the scratch directory %s", ctx.workdir);
    } else {
        char rootf[1200], alt[1024] = "";
        snprintf(rootf, sizeof(rootf), "%s/pg/root", ctx.workdir);
        FILE *f = fopen(rootf, "r");
        if (f) {
            if (fgets(alt, sizeof(alt), f))
                alt[strcspn(alt, "\n")] = 0;
            fclose(f);
        }
        rm_rf(ctx.workdir);
        if (alt[0] && strncmp(alt, "/var/tmp/tally-pg-", 18) == 0)
            rm_rf(alt);
    }
    free(ctx.ops_limit);
    free(ctx.batches_limit);
    wl_free(&w);
    return status;
}
