/* `tally-gen votes`: collector input files (voter,project_id) for a registry, and the
 * exact expected results. Owns the ground-truth rule; knows nothing of tokens or the wire.
 *
 * Ground truth: each collector's lines are processed in file order; a vote for a project
 * not in the registry is rejected and does not use up the voter's ballot; otherwise, if
 * the voter already had an accepted vote (from any collector) it is a duplicate; else it
 * counts. The data is built so that the result does not depend on how the collectors'
 * streams interleave at the server: a voter who appears in several collectors votes for
 * the same project in all of them (their "canonical" project, fixed by their first valid
 * vote, in the collector that cast it - the owner). Only the owner may later repeat the
 * voter with a different project, and those lines come after the canonical one in the
 * owner's file, so they are duplicates whichever order the server sees. The truth is
 * computed by replaying the files one collector after another, and cross-checked against
 * the canonical projects (any other interleaving gives the same answer). */
#include "gen/gen.h"

#include "core/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Popularity: circuits weigh by a log-normal "turnout", projects within a circuit by a
 * Zipf law (s = 1.1) over a random ranking. Returns a cumulative array over projects. */
static double *popularity(struct gen_rng *r, const struct gen_reg *reg)
{
    double *cw = xcalloc(reg->n_circuits, sizeof *cw);
    uint32_t *seen = xcalloc(reg->n_circuits, sizeof *seen);
    uint32_t *size = xcalloc(reg->n_circuits, sizeof *size);
    double *norm = xcalloc(reg->n_circuits, sizeof *norm);
    double *cum = xcalloc(reg->n, sizeof *cum);
    uint32_t *rank = xcalloc(reg->n, sizeof *rank);
    for (size_t c = 0; c < reg->n_circuits; c++)
        cw[c] = exp(0.6 * gen_rng_normal(r));
    for (size_t p = 0; p < reg->n; p++)
        size[reg->circuit[p]]++;
    /* Rank projects within their circuit in a random order: rank = a random position
     * of a shuffled 0..size-1, drawn by handing out positions as projects are met. */
    uint32_t **perm = xcalloc(reg->n_circuits, sizeof *perm);
    for (size_t p = 0; p < reg->n; p++) {
        uint32_t c = reg->circuit[p];
        if (!perm[c]) {
            perm[c] = xcalloc(size[c], sizeof **perm);
            for (uint32_t i = 0; i < size[c]; i++)
                perm[c][i] = i;
            for (uint32_t i = size[c]; i > 1; i--) {
                uint32_t j = (uint32_t)gen_rng_below(r, i);
                uint32_t t = perm[c][i - 1];
                perm[c][i - 1] = perm[c][j];
                perm[c][j] = t;
            }
        }
        rank[p] = perm[c][seen[c]++];
        norm[c] += pow(rank[p] + 1.0, -1.1);
    }
    double total = 0;
    for (size_t p = 0; p < reg->n; p++) {
        uint32_t c = reg->circuit[p];
        total += cw[c] * pow(rank[p] + 1.0, -1.1) / norm[c];
        cum[p] = total;
    }
    for (size_t c = 0; c < reg->n_circuits; c++)
        free(perm[c]);
    free(perm);
    free(rank);
    free(norm);
    free(size);
    free(seen);
    free(cw);
    return cum;
}

static uint32_t sample_project(struct gen_rng *r, const double *cum, size_t n)
{
    double u = gen_rng_unit(r) * cum[n - 1];
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint32_t)lo;
}

static uint64_t voter_number(const struct gen_voter_ids *v, uint64_t x)
{
    x = (x * 0x9e3779b1u) & v->mask;
    x ^= x >> (v->bits / 2);
    x = (x * 0x85ebca6bu) & v->mask;
    x ^= v->salt;
    return 1000000u + x;
}

void gen_voter_ids_init(struct gen_voter_ids *v, uint64_t n_voters, struct gen_rng *r)
{
    v->bits = 24;
    while (v->bits < 40 && (1ull << v->bits) < n_voters)
        v->bits++;
    v->mask = (1ull << v->bits) - 1;
    v->salt = gen_rng_next(r) & v->mask;
}

struct voter {
    int32_t canonical; /* registry index of the first valid vote, -1 none yet */
    uint16_t owner;    /* collector that cast it */
};

int gen_write_summary(const char *dir, const struct gen_votes_opts *o, uint64_t accepted,
                      uint64_t duplicate, uint64_t rejected, uint64_t voters,
                      const uint64_t *per_collector, const struct gen_table_summary *ts)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/truth-summary.txt", dir);
    struct gen_out out;
    if (gen_out_open(&out, path))
        return -1;
    const char *names[] = {"votes", "accepted", "duplicate", "rejected", "malformed", "voters"};
    uint64_t values[] = {
        accepted + duplicate + rejected, accepted, duplicate, rejected, o->malformed, voters};
    for (size_t i = 0; i < 6; i++) {
        gen_out_str(&out, names[i]);
        gen_out_char(&out, ' ');
        gen_out_u64(&out, values[i]);
        gen_out_char(&out, '\n');
    }
    gen_out_str(&out, "collectors ");
    gen_out_u64(&out, o->collectors);
    gen_out_char(&out, '\n');
    for (uint32_t c = 0; c < o->collectors; c++) {
        gen_out_str(&out, "collector-");
        gen_out_u64(&out, c);
        gen_out_str(&out, " votes ");
        gen_out_u64(&out, per_collector[c]);
        gen_out_str(&out, " malformed ");
        gen_out_u64(&out, c + 1 == o->collectors ? o->malformed : 0);
        gen_out_char(&out, '\n');
    }
    if (ts) {
        const char *tn[] = {"tables",      "tables_reported",
                            "electors",    "electors_reported",
                            "ballots",     "sheets",
                            "corrections", "sheets_duplicate",
                            "blank",       "null"};
        uint64_t tv[] = {ts->tables,  ts->tables_reported, ts->electors,    ts->electors_reported,
                         ts->ballots, ts->sheets,          ts->corrections, ts->sheets_duplicate,
                         ts->blank,   ts->null_ballots};
        for (size_t i = 0; i < sizeof tn / sizeof tn[0]; i++) {
            gen_out_str(&out, tn[i]);
            gen_out_char(&out, ' ');
            gen_out_u64(&out, tv[i]);
            gen_out_char(&out, '\n');
        }
    }
    return gen_out_close(&out);
}

static const uint32_t *sort_ids;

static int cmp_by_id(const void *a, const void *b)
{
    uint32_t x = sort_ids[*(const uint32_t *)a], y = sort_ids[*(const uint32_t *)b];
    return x < y ? -1 : x > y;
}

int gen_write_truth(const char *dir, const struct gen_reg *reg, const uint64_t *counts)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/truth.csv", dir);
    uint32_t *order = xcalloc(reg->n, sizeof *order);
    for (size_t i = 0; i < reg->n; i++)
        order[i] = (uint32_t)i;
    sort_ids = reg->ids;
    qsort(order, reg->n, sizeof *order, cmp_by_id);
    struct gen_out out;
    int rc = -1;
    if (gen_out_open(&out, path))
        goto done;
    gen_out_str(&out, "project_id,votes\n");
    for (size_t i = 0; i < reg->n; i++) {
        gen_out_u64(&out, reg->ids[order[i]]);
        gen_out_char(&out, ',');
        gen_out_u64(&out, counts[order[i]]);
        gen_out_char(&out, '\n');
    }
    rc = gen_out_close(&out);
done:
    free(order);
    return rc;
}

void gen_out_voter(struct gen_out *o, const struct gen_voter_ids *ids, uint32_t voter)
{
    gen_out_str(o, "V-");
    gen_out_u64(o, voter_number(ids, voter));
}

/* A line tally-push must skip as malformed: no comma, a non-numeric or empty project. */
void gen_out_malformed(struct gen_out *o, struct gen_rng *r, uint64_t k)
{
    switch (gen_rng_below(r, 3)) {
    case 0:
        gen_out_str(o, "linea sin separador ");
        gen_out_u64(o, k);
        break;
    case 1:
        gen_out_str(o, "V-");
        gen_out_u64(o, 100 + k);
        gen_out_str(o, ",proyecto");
        break;
    default:
        gen_out_str(o, "V-");
        gen_out_u64(o, 100 + k);
        gen_out_char(o, ',');
        break;
    }
    gen_out_char(o, '\n');
}

void gen_u32_push(uint32_t **list, size_t *n, size_t *cap, uint32_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *list = xreallocarray(*list, *cap, sizeof **list);
    }
    (*list)[(*n)++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int gen_votes(const struct gen_votes_opts *o)
{
    if (o->tables)
        return gen_votes_tables(o);
    int rc = -1;
    struct gen_reg reg;
    if (o->collectors == 0 || o->collectors > GEN_MAX_COLLECTORS) {
        fprintf(stderr, "tally-gen: --collectors must be 1..%d\n", GEN_MAX_COLLECTORS);
        return -1;
    }
    if (o->votes > UINT32_MAX - 1) {
        fprintf(stderr, "tally-gen: --votes must be below 2^32\n");
        return -1;
    }
    if (gen_reg_load(o->registry, &reg))
        return -1;
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tally-gen: cannot create %s: %s\n", o->out_dir, strerror(errno));
        gen_reg_cleanup(&reg);
        return -1;
    }

    struct gen_rng r;
    gen_rng_seed(&r, o->seed, 2);
    double *cum = popularity(&r, &reg);
    uint32_t K = o->collectors;
    uint64_t N = o->votes;

    struct gen_line *lines = xcalloc(N, sizeof *lines);
    uint16_t *line_collector = xcalloc(N, sizeof *line_collector);
    struct voter *voters = xcalloc(N, sizeof *voters);
    uint32_t **own = xcalloc(K, sizeof *own); /* voters created by each collector */
    size_t *own_n = xcalloc(K, sizeof *own_n), *own_cap = xcalloc(K, sizeof *own_cap);
    uint64_t *per_collector = xcalloc(K, sizeof *per_collector);
    uint64_t *counts = xcalloc(reg.n, sizeof *counts);
    uint64_t *check = xcalloc(reg.n, sizeof *check);
    uint8_t *accepted_voter = xcalloc(N, 1);
    uint64_t *malformed_at = xcalloc(o->malformed, sizeof *malformed_at);
    struct gen_out *outs = xcalloc(K, sizeof *outs);
    uint32_t n_voters = 0;
    bool progress = !o->quiet && N >= 1000000;

    for (uint64_t t = 0; t < N; t++) {
        uint16_t c = (uint16_t)gen_rng_below(&r, K);
        double u = gen_rng_unit(&r);
        struct gen_line *ln = &lines[t];
        uint32_t v;
        line_collector[t] = c;
        per_collector[c]++;
        if (u < o->unknown_rate) {
            /* Rejected: an id not in the registry. Half of them from a voter who may
             * vote validly later (the rejection must not use up the ballot). */
            if (n_voters > 0 && gen_rng_unit(&r) < 0.5) {
                v = (uint32_t)gen_rng_below(&r, n_voters);
            } else {
                v = n_voters++;
                voters[v] = (struct voter){-1, c};
                gen_u32_push(&own[c], &own_n[c], &own_cap[c], v);
            }
            uint32_t id;
            do
                id = (uint32_t)gen_rng_next(&r);
            while (id == 0 || gen_u32set_has(&reg.idset, id));
            *ln = (struct gen_line){v, id, -1};
            continue;
        }
        if (u < o->unknown_rate + o->repeat_rate && n_voters > 0) {
            /* A repeated voter: half the time one first seen at this collector. */
            if (own_n[c] > 0 && gen_rng_unit(&r) < 0.5)
                v = own[c][gen_rng_below(&r, own_n[c])];
            else
                v = (uint32_t)gen_rng_below(&r, n_voters);
            struct voter *vv = &voters[v];
            int32_t p;
            if (vv->canonical < 0) {
                p = (int32_t)sample_project(&r, cum, reg.n);
                vv->canonical = p;
                vv->owner = c;
            } else if (vv->owner == c && gen_rng_unit(&r) < 0.5) {
                p = (int32_t)sample_project(&r, cum, reg.n); /* changed their mind */
            } else {
                p = vv->canonical;
            }
            *ln = (struct gen_line){v, reg.ids[p], p};
        } else {
            v = n_voters++;
            int32_t p = (int32_t)sample_project(&r, cum, reg.n);
            voters[v] = (struct voter){p, c};
            *ln = (struct gen_line){v, reg.ids[p], p};
            gen_u32_push(&own[c], &own_n[c], &own_cap[c], v);
        }
        if (progress && (t + 1) % 1000000 == 0)
            fprintf(stderr, "tally-gen: generated %llu/%llu votes\n", (unsigned long long)t + 1,
                    (unsigned long long)N);
    }

    /* Replay collector after collector, applying the rule literally. */
    uint64_t accepted, duplicate, rejected;
    gen_replay(lines, line_collector, N, K, accepted_voter, counts, NULL, NULL, &accepted,
               &duplicate, &rejected);
    /* Cross-check: the same totals from the canonical projects (any interleaving). */
    uint64_t voters_with_vote = 0;
    for (uint32_t v = 0; v < n_voters; v++) {
        if (voters[v].canonical >= 0) {
            check[voters[v].canonical]++;
            voters_with_vote++;
        }
    }
    if (voters_with_vote != accepted || memcmp(check, counts, reg.n * sizeof *counts) != 0) {
        fprintf(stderr, "tally-gen: internal error: truth depends on interleaving\n");
        goto done;
    }

    /* Write the collector files in one pass. */
    struct gen_voter_ids ids;
    gen_voter_ids_init(&ids, n_voters, &r);

    uint64_t last_lines = per_collector[K - 1];
    for (uint64_t m = 0; m < o->malformed; m++)
        malformed_at[m] = gen_rng_below(&r, last_lines + 1);
    qsort(malformed_at, o->malformed, sizeof *malformed_at, cmp_u64);

    uint32_t opened = 0;
    for (; opened < K; opened++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/collector-%u.csv", o->out_dir, opened);
        if (gen_out_open(&outs[opened], path))
            goto close_files;
        if (opened % 2 == 0)
            gen_out_str(&outs[opened], "voter,project_id\n");
    }
    uint64_t last_pos = 0, next_malformed = 0;
    for (uint64_t t = 0; t < N; t++) {
        uint16_t c = line_collector[t];
        struct gen_out *out = &outs[c];
        if (c == K - 1) {
            while (next_malformed < o->malformed && malformed_at[next_malformed] == last_pos)
                gen_out_malformed(out, &r, next_malformed++);
            last_pos++;
        }
        gen_out_voter(out, &ids, lines[t].voter);
        gen_out_char(out, ',');
        gen_out_u64(out, lines[t].project_id);
        gen_out_char(out, '\n');
    }
    while (next_malformed < o->malformed)
        gen_out_malformed(&outs[K - 1], &r, next_malformed++);

close_files:;
    int failed = opened < K;
    for (uint32_t c = 0; c < opened; c++)
        if (gen_out_close(&outs[c]))
            failed = 1;
    if (failed)
        goto done;
    if (gen_write_truth(o->out_dir, &reg, counts) ||
        gen_write_summary(o->out_dir, o, accepted, duplicate, rejected, n_voters, per_collector,
                          NULL))
        goto done;
    if (!o->quiet)
        fprintf(stderr,
                "tally-gen: %s: %u collectors, %llu votes (accepted %llu, duplicate %llu, "
                "rejected %llu, malformed %llu)\n",
                o->out_dir, K, (unsigned long long)N, (unsigned long long)accepted,
                (unsigned long long)duplicate, (unsigned long long)rejected,
                (unsigned long long)o->malformed);
    rc = 0;
done:
    free(outs);
    free(malformed_at);
    free(accepted_voter);
    free(check);
    free(counts);
    free(per_collector);
    for (uint32_t c = 0; c < K; c++)
        free(own[c]);
    free(own_cap);
    free(own_n);
    free(own);
    free(voters);
    free(line_collector);
    free(lines);
    free(cum);
    gen_reg_cleanup(&reg);
    return rc;
}
