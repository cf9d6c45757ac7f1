/* The PostgreSQL-direct peers, on the same server as tallyd's store. One connection per
 * collector; a transaction COPYs (binary) the rows of its batches into a temporary staging
 * table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING into a table keyed by ballot
 * (project id alongside); COMMIT makes them durable. postgres commits the batches a
 * collector has in flight together (up to --pg-group, by default --window: group commit);
 * postgres_per_batch commits each batch alone. The counts are one GROUP BY at the end,
 * inside the timed run. Owns its own database for the run. */
#include "bench.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAX_RETRIES 20

struct pg_run;

struct pg_worker {
    struct pg_run *run;
    size_t index;
    pthread_t thread;
    bool started;
    bool ok;
    char err[300];
    struct lat commit;
    uint64_t accepted, retries, transactions;
    _Atomic uint64_t votes_done;
    _Atomic int finished;
};

struct pg_run {
    struct bench_ctx *c;
    const char *conninfo;
    size_t n_workers;
    struct pg_worker *workers;
    /* Binary COPY rows of each batch, by collector. */
    uint8_t ***copy;
    size_t **copy_len;
    size_t group; /* sends per transaction, at most */
    size_t *pos;  /* by collector: sends committed (only its worker writes it) */
    double deadline;
    double budget_end; /* no new transaction after this (--peer-seconds); set before go */
    _Atomic int ready, go;
};

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* COPY ... (FORMAT binary): a header (signature, flags, header extension), then per row a
 * field count and length-prefixed int8 values, then -1. The rows of each batch are encoded
 * once; a transaction sends the header, the rows of its batches, the trailer. */
static const uint8_t copy_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
static const uint8_t copy_trailer[2] = {0xff, 0xff};

static uint8_t *copy_rows(const struct wl_batch *b, size_t *len)
{
    size_t n = (size_t)b->n * 26;
    uint8_t *p = malloc(n ? n : 1), *q = p;
    if (!p)
        abort();
    for (uint32_t i = 0; i < b->n; i++) {
        put_be16(q, 2);
        put_be32(q + 2, 8);
        put_be64(q + 6, b->ballots[i]); /* the token's bits as a signed bigint */
        put_be32(q + 14, 8);
        put_be64(q + 18, b->projects[i]);
        q += 26;
    }
    *len = n;
    return p;
}

static bool sqlstate_is_retryable(const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return st && (strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0);
}

/* One transaction over sends [first, first + n) of collector k: their rows COPYed into the
 * staging table, one INSERT ... ON CONFLICT DO NOTHING, COMMIT. Returns 1 done, 0 retry
 * (deadlock), -1 failure. */
static int pg_txn(struct pg_worker *wk, PGconn *db, size_t k, size_t first, size_t n,
                  uint64_t *inserted)
{
    const struct pg_run *run = wk->run;
    const struct wl_collector *wc = &run->c->w->collectors[k];
    int rc = -1;
    PGresult *res = PQexec(db, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(res);
    res = PQexec(db, "COPY staging FROM STDIN (FORMAT binary)");
    if (PQresultStatus(res) != PGRES_COPY_IN)
        goto fail;
    PQclear(res);
    bool sent = PQputCopyData(db, (const char *)copy_header, sizeof(copy_header)) == 1;
    for (size_t i = first; sent && i < first + n; i++) {
        uint32_t b = wc->ops[i].batch;
        sent = PQputCopyData(db, (const char *)run->copy[k][b], (int)run->copy_len[k][b]) == 1;
    }
    sent = sent && PQputCopyData(db, (const char *)copy_trailer, sizeof(copy_trailer)) == 1;
    if (!sent || PQputCopyEnd(db, NULL) != 1) {
        snprintf(wk->err, sizeof(wk->err), "COPY: %s", PQerrorMessage(db));
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    bool copy_ok = true;
    while ((res = PQgetResult(db)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            copy_ok = false;
        PQclear(res);
    }
    if (!copy_ok) {
        snprintf(wk->err, sizeof(wk->err), "COPY: %s", PQerrorMessage(db));
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    /* One statement, sorted by ballot: concurrent transactions take their row locks in one
     * order, so collectors that share repeated voters wait for each other instead of
     * deadlocking. DO NOTHING also takes a ballot twice in one statement (a batch resent
     * within the same group, a voter who voted twice in it). */
    res = PQexec(db, "INSERT INTO votes (ballot, project_id)"
                     " SELECT ballot, project_id FROM staging ORDER BY ballot"
                     " ON CONFLICT (ballot) DO NOTHING");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        goto fail;
    *inserted = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    res = PQexec(db, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(res);
    return 1;
fail:
    rc = sqlstate_is_retryable(res) ? 0 : -1;
    if (rc < 0)
        snprintf(wk->err, sizeof(wk->err), "%s", PQresultErrorMessage(res));
    PQclear(res);
    PQclear(PQexec(db, "ROLLBACK"));
    return rc;
}

static void *pg_worker_main(void *arg)
{
    struct pg_worker *wk = arg;
    struct pg_run *run = wk->run;
    const struct workload *w = run->c->w;
    const size_t *limit = run->c->ops_limit;
    bool counted = false;
    PGconn *db = PQconnectdb(run->conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        snprintf(wk->err, sizeof(wk->err), "connect: %s", PQerrorMessage(db));
        goto out;
    }
    PGresult *res = PQexec(db, "CREATE TEMP TABLE staging (ballot bigint, project_id bigint)"
                               " ON COMMIT DELETE ROWS");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(wk->err, sizeof(wk->err), "staging table: %s", PQerrorMessage(db));
        PQclear(res);
        goto out;
    }
    PQclear(res);
    atomic_fetch_add(&run->ready, 1);
    counted = true;
    while (!atomic_load(&run->go) && !bench_stop)
        sleep_ms(1);

    /* This worker's collectors in turn, a group of up to run->group sends of each: the
     * batches a collector has in flight, committed together. After the budget no new
     * transaction starts. */
    wk->ok = true;
    while (wk->ok && now_s() <= run->budget_end) {
        bool any = false;
        for (size_t k = wk->index; k < w->n_collectors && wk->ok; k += run->n_workers) {
            const struct wl_collector *wc = &w->collectors[k];
            size_t first = run->pos[k];
            if (first >= limit[k])
                continue;
            any = true;
            if (bench_stop || now_s() > run->deadline) {
                snprintf(wk->err, sizeof(wk->err), "%s", bench_stop ? "stopped" : "timed out");
                wk->ok = false;
                break;
            }
            size_t n = limit[k] - first < run->group ? limit[k] - first : run->group;
            uint64_t inserted = 0;
            double t0 = now_s();
            int rc = 0;
            for (int attempt = 0; rc == 0 && attempt < PG_MAX_RETRIES; attempt++) {
                rc = pg_txn(wk, db, k, first, n, &inserted);
                if (rc == 0)
                    wk->retries++;
            }
            if (rc != 1) {
                if (rc == 0)
                    snprintf(wk->err, sizeof(wk->err), "still deadlocking after %d attempts",
                             PG_MAX_RETRIES);
                wk->ok = false;
                break;
            }
            lat_add(&wk->commit, (now_s() - t0) * 1e3);
            wk->accepted += inserted;
            wk->transactions++;
            run->pos[k] = first + n;
            for (size_t i = first; i < first + n; i++)
                if (!wc->ops[i].retransmit)
                    atomic_fetch_add(&wk->votes_done, wc->batches[wc->ops[i].batch].n);
        }
        if (!any)
            break;
    }
out:
    if (!counted)
        atomic_fetch_add(&run->ready, 1);
    PQfinish(db);
    atomic_store(&wk->finished, 1);
    return NULL;
}

static int db_exec(PGconn *db, const char *sql, struct peer_result *r)
{
    PGresult *res = PQexec(db, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        peer_fail(r, "%s: %s", sql, PQerrorMessage(db));
    PQclear(res);
    return ok ? 0 : -1;
}

void peer_postgres_run(struct bench_ctx *c, struct peer_result *r, bool per_batch)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    char conninfo[2048];
    struct pg_run run = {0};
    PGconn *db = NULL;
    struct lat commit = {0};
    struct wl_part part = {0};
    const char *db_name = per_batch ? "tallybench_pgbatch" : "tallybench_pgdirect";
    if (pg_db_create(c->pg, db_name, conninfo, sizeof(conninfo)) != 0) {
        peer_fail(r, "cannot create database %s", db_name);
        return;
    }
    db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        peer_fail(r, "connect: %s", PQerrorMessage(db));
        goto done;
    }
    if (db_exec(db, "CREATE TABLE votes (ballot bigint PRIMARY KEY, project_id bigint NOT NULL)",
                r) != 0)
        goto done;

    run.c = c;
    run.conninfo = conninfo;
    run.n_workers = o->pg_conns ? o->pg_conns : w->n_collectors;
    if (run.n_workers > w->n_collectors)
        run.n_workers = w->n_collectors;
    run.group = per_batch ? 1 : o->pg_group ? o->pg_group : o->window;
    run.copy = calloc(w->n_collectors, sizeof(*run.copy));
    run.copy_len = calloc(w->n_collectors, sizeof(*run.copy_len));
    run.pos = calloc(w->n_collectors, sizeof(*run.pos));
    run.workers = calloc(run.n_workers, sizeof(*run.workers));
    if (!run.copy || !run.copy_len || !run.pos || !run.workers)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        const struct wl_collector *wc = &w->collectors[k];
        run.copy[k] = calloc(wc->n_batches + 1, sizeof(uint8_t *));
        run.copy_len[k] = calloc(wc->n_batches + 1, sizeof(size_t));
        if (!run.copy[k] || !run.copy_len[k])
            abort();
        for (size_t b = 0; b < c->batches_limit[k]; b++)
            run.copy[k][b] = copy_rows(&wc->batches[b], &run.copy_len[k][b]);
    }
    progress(r->name,
             "database %s: %zu connections, COPY + INSERT ON CONFLICT DO NOTHING of up to %zu "
             "batches per transaction, GROUP BY at the end; for at most %g s",
             db_name, run.n_workers, run.group, o->peer_seconds);
    run.deadline = now_s() + o->timeout_s;
    for (size_t i = 0; i < run.n_workers; i++) {
        struct pg_worker *wk = &run.workers[i];
        wk->run = &run;
        wk->index = i;
        if (pthread_create(&wk->thread, NULL, pg_worker_main, wk) == 0) {
            wk->started = true;
        } else {
            atomic_fetch_add(&run.ready, 1);
            atomic_store(&wk->finished, 1);
            snprintf(wk->err, sizeof(wk->err), "pthread_create failed");
        }
    }
    while (atomic_load(&run.ready) < (int)run.n_workers && !bench_stop)
        sleep_ms(1);
    double t0 = now_s(), last = t0;
    run.budget_end = t0 + o->peer_seconds;
    atomic_store(&run.go, 1);
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < run.n_workers; i++)
            if (!atomic_load(&run.workers[i].finished))
                all = false;
        if (all)
            break;
        sleep_ms(20);
        double now = now_s();
        if (now - last >= 1.0) {
            uint64_t d = 0;
            for (size_t i = 0; i < run.n_workers; i++)
                d += atomic_load(&run.workers[i].votes_done);
            progress(r->name, "%5.1f s: %llu votes committed (%.0f votes/s)", now - t0,
                     (unsigned long long)d, (double)d / (now - t0));
            last = now;
        }
    }
    uint64_t accepted = 0, retries = 0, transactions = 0;
    for (size_t i = 0; i < run.n_workers; i++) {
        struct pg_worker *wk = &run.workers[i];
        if (wk->started)
            pthread_join(wk->thread, NULL);
        if (!wk->ok && !r->failed)
            peer_fail(r, "connection %zu: %s", i, wk->err);
        lat_merge(&commit, &wk->commit);
        accepted += wk->accepted;
        retries += wk->retries;
        transactions += wk->transactions;
    }
    double t_ingest = now_s();
    if (r->failed)
        goto done;

    PGresult *res = PQexec(db, "SELECT project_id, count(*) FROM votes GROUP BY project_id");
    double t_end = now_s();
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        peer_fail(r, "GROUP BY: %s", PQerrorMessage(db));
        PQclear(res);
        goto done;
    }
    peer_part_done(c, r, run.pos, t0, t_end, &part);
    char why[300];
    r->ran = true;
    r->exact = pg_check_counts(w, part.truth, res, why, sizeof(why));
    PQclear(res);
    if (r->exact && accepted != part.n_distinct) {
        snprintf(why, sizeof(why), "inserted %llu ballots, expected %llu",
                 (unsigned long long)accepted, (unsigned long long)part.n_distinct);
        r->exact = false;
    }
    if (!r->exact) {
        snprintf(r->note, sizeof(r->note), "%s", why);
        progress(r->name, "NOT EXACT: %s", why);
    }
    double ingest_vps = (double)part.n_votes / (t_ingest - t0);
    size_t sends = 0;
    for (size_t k = 0; k < w->n_collectors; k++)
        sends += run.pos[k];
    double per_txn = transactions ? (double)sends / (double)transactions : 0;
    sb_printf(
        &r->json,
        ", \"what\": \"%zu connections, a collector's sends on one; per transaction (up to %zu "
        "batches%s): COPY binary into a temp staging table, one INSERT ... ORDER BY ballot "
        "ON CONFLICT DO NOTHING into votes(ballot PRIMARY KEY, project_id), COMMIT "
        "(synchronous_commit on); then SELECT project_id, count(*) ... GROUP BY (inside the "
        "timed run)\", \"connections\": %zu, \"batches_per_transaction_max\": %zu, "
        "\"batches_per_transaction_mean\": %.2f, \"transactions\": %llu, "
        "\"ingest_votes_per_s\": %.0f, \"group_by_ms\": %.1f, \"deadlock_retries\": %llu",
        run.n_workers, run.group,
        per_batch ? "" : ": the batches a collector has in flight, committed together",
        run.n_workers, run.group, per_txn, (unsigned long long)transactions, ingest_vps,
        (t_end - t_ingest) * 1e3, (unsigned long long)retries);
    sb_lat(&r->json, "commit_ms", &commit);
    sb_part(&r->json, c, &part, run.pos);
    snprintf(r->table, sizeof(r->table),
             "%s%zu conns, %.1f batches/txn; ingest %.0f votes/s + GROUP BY %.0f ms; txn p50/p99 "
             "%.0f/%.0f ms",
             r->part ? "part of the workload; " : "", run.n_workers, per_txn, ingest_vps,
             (t_end - t_ingest) * 1e3, lat_pct(&commit, 0.5), lat_pct(&commit, 0.99));
    progress(r->name,
             "%.0f votes/s over %llu votes in %.1f s (ingest %.0f votes/s, GROUP BY %.0f "
             "ms), %s",
             r->votes_per_s, (unsigned long long)r->votes, r->wall_s, ingest_vps,
             (t_end - t_ingest) * 1e3, r->exact ? "exact" : "NOT EXACT");

done:
    lat_free(&commit);
    wl_part_free(&part);
    if (run.workers) {
        for (size_t i = 0; i < run.n_workers; i++)
            lat_free(&run.workers[i].commit);
        free(run.workers);
    }
    if (run.copy) {
        for (size_t k = 0; k < w->n_collectors; k++) {
            for (size_t b = 0; run.copy[k] && b < c->batches_limit[k]; b++)
                free(run.copy[k][b]);
            free(run.copy[k]);
            free(run.copy_len[k]);
        }
        free(run.copy);
        free(run.copy_len);
    }
    free(run.pos);
    PQfinish(db);
    if (!o->keep)
        pg_db_drop(c->pg, db_name);
}
