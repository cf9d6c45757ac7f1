/* What the tallyd peer reads back from tallyd's database after a round: the counts and the
 * collectors' totals, checked against the ground truth, and the checkpoint figures; and
 * gauges from tallyd's /metrics. Owns no connection: the caller's. */
#include "peer_tallyd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool td_check_counts(struct bench_ctx *c, PGconn *db, struct peer_result *r)
{
    PGresult *res = PQexec(db, "SELECT project_id, votes FROM project_votes");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(r->note, sizeof(r->note), "reading tallies: %s", PQerrorMessage(db));
        PQclear(res);
        return false;
    }
    char why[300];
    bool ok = pg_check_counts(c->w, c->w->truth, res, why, sizeof(why));
    PQclear(res);
    if (!ok)
        snprintf(r->note, sizeof(r->note), "PostgreSQL tallies: %s", why);
    return ok;
}

bool td_check_collectors(struct bench_ctx *c, PGconn *db, struct peer_result *r)
{
    const struct workload *w = c->w;
    PGresult *res = PQexec(db, "SELECT coalesce(sum(batches),0), coalesce(sum(votes),0),"
                               " coalesce(sum(accepted),0), coalesce(sum(duplicate),0),"
                               " coalesce(sum(rejected),0) FROM collectors");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        uint64_t v[5];
        for (int i = 0; i < 5; i++)
            v[i] = strtoull(PQgetvalue(res, 0, i), NULL, 10);
        ok = v[0] == w->n_batches && v[1] == w->n_votes && v[2] == w->n_distinct &&
             v[3] == w->n_duplicate && v[4] == 0;
        if (!ok)
            snprintf(r->note, sizeof(r->note),
                     "collector totals: batches %llu votes %llu accepted %llu duplicate %llu "
                     "rejected %llu; expected %llu %llu %llu %llu 0",
                     (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
                     (unsigned long long)v[3], (unsigned long long)v[4],
                     (unsigned long long)w->n_batches, (unsigned long long)w->n_votes,
                     (unsigned long long)w->n_distinct, (unsigned long long)w->n_duplicate);
    } else {
        snprintf(r->note, sizeof(r->note), "reading collectors: %s", PQerrorMessage(db));
    }
    PQclear(res);
    return ok;
}

/* Checkpoint figures from the database: commit cadence and size from the checkpoints table;
 * duration = from the checkpoint transaction's start (committed_at is now(), the start of
 * the transaction) to the first durable ack that names one of its batches. */
void td_checkpoint_figures(struct bench_ctx *c, PGconn *db, struct td_col *cols, struct sbuf *js,
                           double *dur_p99)
{
    *dur_p99 = 0;
    PGresult *cp = PQexec(db, "SELECT id, extract(epoch FROM committed_at)::float8, batches, votes"
                              " FROM checkpoints ORDER BY id");
    PGresult *bt = PQexec(db, "SELECT collector_id, seq, checkpoint_id FROM batches");
    if (PQresultStatus(cp) != PGRES_TUPLES_OK || PQresultStatus(bt) != PGRES_TUPLES_OK) {
        sb_printf(js, ", \"checkpoint\": null");
        PQclear(cp);
        PQclear(bt);
        return;
    }
    size_t n = (size_t)PQntuples(cp);
    uint64_t max_id = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = strtoull(PQgetvalue(cp, (int)i, 0), NULL, 10);
        if (id > max_id)
            max_id = id;
    }
    double *begin = calloc(max_id + 1, sizeof(double));
    double *first_ack = calloc(max_id + 1, sizeof(double));
    if (!begin || !first_ack)
        abort();
    struct lat interval = {0}, votes = {0}, batches = {0}, duration = {0};
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = strtoull(PQgetvalue(cp, (int)i, 0), NULL, 10);
        double at = strtod(PQgetvalue(cp, (int)i, 1), NULL);
        begin[id] = at;
        if (i > 0)
            lat_add(&interval, (at - prev) * 1e3);
        prev = at;
        lat_add(&batches, strtod(PQgetvalue(cp, (int)i, 2), NULL));
        lat_add(&votes, strtod(PQgetvalue(cp, (int)i, 3), NULL));
    }
    /* (collector, seq) -> checkpoint id, for every durable mark a collector saw. */
    const struct workload *w = c->w;
    uint64_t **cp_of = calloc(w->n_collectors, sizeof(*cp_of));
    if (!cp_of)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        cp_of[k] = calloc(w->collectors[k].n_batches + 1, sizeof(uint64_t));
        if (!cp_of[k])
            abort();
    }
    for (int i = 0; i < PQntuples(bt); i++) {
        const char *cid = PQgetvalue(bt, i, 0);
        uint64_t seq = strtoull(PQgetvalue(bt, i, 1), NULL, 10);
        uint64_t id = strtoull(PQgetvalue(bt, i, 2), NULL, 10);
        for (size_t k = 0; k < w->n_collectors; k++)
            if (strcmp(cid, w->collectors[k].id) == 0 && seq <= w->collectors[k].n_batches)
                cp_of[k][seq] = id;
    }
    for (size_t k = 0; k < w->n_collectors; k++) {
        for (size_t m = 0; m < cols[k].n_marks; m++) {
            uint64_t id = cp_of[k][cols[k].marks[m].seq];
            if (id == 0 || id > max_id)
                continue;
            if (first_ack[id] == 0 || cols[k].marks[m].wall < first_ack[id])
                first_ack[id] = cols[k].marks[m].wall;
        }
        free(cp_of[k]);
    }
    free(cp_of);
    for (uint64_t id = 1; id <= max_id; id++)
        if (begin[id] > 0 && first_ack[id] > 0)
            lat_add(&duration, (first_ack[id] - begin[id]) * 1e3);
    double vsum = 0, bsum = 0;
    for (size_t i = 0; i < votes.n; i++) {
        vsum += votes.v[i];
        bsum += batches.v[i];
    }
    *dur_p99 = lat_pct(&duration, 0.99);
    sb_printf(js, ", \"checkpoint\": {\"interval_setting_ms\": %u, \"count\": %zu",
              c->o->checkpoint_ms, n);
    sb_lat(js, "commit_interval_ms", &interval);
    sb_lat(js, "duration_ms", &duration);
    sb_printf(js,
              ", \"duration_note\": \"from the checkpoint transaction's start (committed_at) to "
              "the first durable ack naming one of its batches\", \"votes_per_checkpoint_mean\": "
              "%.0f, \"votes_per_checkpoint_max\": %.0f, \"batches_per_checkpoint_mean\": %.1f}",
              n ? vsum / (double)n : 0, lat_max(&votes), n ? bsum / (double)n : 0);
    lat_free(&interval);
    lat_free(&votes);
    lat_free(&batches);
    lat_free(&duration);
    free(begin);
    free(first_ack);
    PQclear(cp);
    PQclear(bt);
}

double td_metrics_gauge(int http_port, const char *name_)
{
    char name[128];
    snprintf(name, sizeof(name), "%s", name_);
    size_t name_len = strlen(name);
    char *body = http_get(http_port, "/metrics", 10000);
    double v = NAN;
    for (const char *p = body; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, name, name_len) == 0) {
            const char *q = p + name_len;
            if (*q == '{')
                q = strchr(q, '}') ? strchr(q, '}') + 1 : q;
            char *end;
            double x = strtod(q, &end);
            if (end != q && (*q == ' ' || *q == '\t'))
                v = x;
        }
        p = eol ? eol + 1 : NULL;
    }
    free(body);
    return v;
}
