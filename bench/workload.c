/* The benchmark workload, built in memory before any clock starts: a registry of circuits
 * and projects with sparse ids, votes with a skewed popularity, repeated voters, collectors,
 * batches, retransmissions, and the ground truth every system is checked against.
 * Deterministic in --seed. Owns no I/O but writing the registry CSV. A streamed workload
 * shares the registry and the shape; its votes are stream.c's.
 *
 * Popularity: circuits differ in size (Pareto, alpha 1.5) and inside a circuit projects
 * follow a Zipf law (exponent --zipf), which is what a consultation looks like: a few
 * projects take most of their circuit's votes, and some circuits vote far more than others.
 * Repeated voters: a share of votes (--dup-rate) reuse the token of an earlier vote, sent by
 * any collector, with the same choice; so the ground truth does not depend on which copy
 * arrives first, and every system must count exactly one of them. */
#include "bench.h"

#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const wl_state_names[24] = {
    "Amazonas", "Anzoátegui", "Apure",         "Aragua",        "Barinas",    "Bolívar",
    "Carabobo", "Cojedes",    "Delta Amacuro", "Falcón",        "Guárico",    "Lara",
    "Mérida",   "Miranda",    "Monagas",       "Nueva Esparta", "Portuguesa", "Sucre",
    "Táchira",  "Trujillo",   "La Guaira",     "Yaracuy",       "Zulia",      "Distrito Capital",
};

/* ---- random numbers: xoshiro256** seeded through splitmix64 ------------------------- */

struct rng {
    uint64_t s[4];
};

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    xoshiro256ss_seed(r->s, seed * 0x2545f4914f6cdd1dULL + stream);
}

static uint64_t rng_next(struct rng *r)
{
    return xoshiro256ss_next(r->s);
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

static double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Bijections on 32 bits with f(0) = 0: distinct nonzero inputs give distinct nonzero,
 * scattered ids. */
static uint32_t perm32(uint32_t x, uint32_t m1, uint32_t m2)
{
    x *= m1;
    x ^= x >> 16;
    x *= m2;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "tally-bench: out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

/* ---- registry -------------------------------------------------------------------------- */

static size_t map_home(uint32_t id, size_t mask)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}

int32_t wl_project_index(const struct workload *w, uint32_t id)
{
    size_t s = map_home(id, w->map_mask);
    for (;;) {
        int32_t v = w->map_vals[s];
        if (v < 0 || w->map_keys[s] == id)
            return v;
        s = (s + 1) & w->map_mask;
    }
}

static void registry_make(struct workload *w, const struct bench_opts *o, struct rng *r,
                          double *weight)
{
    size_t n = o->projects;
    w->projects = xcalloc(n, sizeof(*w->projects));
    w->n_projects = n;
    size_t i = 0, c = 0;
    while (i < n) {
        /* About 7 projects a circuit, as in the 2024 consultations. */
        size_t k = 3 + (size_t)rng_below(r, 9);
        if (k > n - i)
            k = n - i;
        uint32_t cid = perm32((uint32_t)(c + 1), 0x85ebca6bu, 0x27d4eb2fu);
        uint8_t state = (uint8_t)rng_below(r, 24);
        uint8_t seats = (uint8_t)(1 + (rng_below(r, 4) == 0));
        double size = pow(1.0 - rng_unit(r), -1.0 / 1.5); /* Pareto, alpha 1.5, min 1 */
        double zsum = 0;
        for (size_t j = 0; j < k; j++)
            zsum += 1.0 / pow((double)(j + 1), o->zipf);
        for (size_t j = 0; j < k; j++, i++) {
            struct wl_project *p = &w->projects[i];
            p->id = perm32((uint32_t)(i + 1), 0x9e3779b1u, 0x85ebca77u);
            p->circuit_id = cid;
            p->state = state;
            p->seats = seats;
            weight[i] = size / pow((double)(j + 1), o->zipf) / zsum;
        }
        c++;
    }
    w->n_circuits = c;

    size_t cap = 64;
    while (cap < n * 2)
        cap *= 2;
    w->map_mask = cap - 1;
    w->map_keys = xcalloc(cap, sizeof(uint32_t));
    w->map_vals = xcalloc(cap, sizeof(int32_t));
    memset(w->map_vals, 0xff, cap * sizeof(int32_t));
    for (i = 0; i < n; i++) {
        size_t s = map_home(w->projects[i].id, w->map_mask);
        while (w->map_vals[s] >= 0)
            s = (s + 1) & w->map_mask;
        w->map_keys[s] = w->projects[i].id;
        w->map_vals[s] = (int32_t)i;
    }
}

int wl_write_registry(const struct workload *w, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "project_id,project_name,circuit_id,circuit_name,state,seats\n");
    for (size_t i = 0; i < w->n_projects; i++) {
        const struct wl_project *p = &w->projects[i];
        fprintf(f, "%u,Proyecto %u,%u,Circuito %u,%s,%u\n", p->id, p->id, p->circuit_id,
                p->circuit_id, wl_state_names[p->state], p->seats);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- votes ------------------------------------------------------------------------------- */

static size_t cdf_sample(const double *cdf, size_t n, double u)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int wl_generate(struct workload *w, const struct bench_opts *o)
{
    memset(w, 0, sizeof(*w));
    struct rng r;
    rng_seed(&r, o->seed, 1);
    double *cdf = xcalloc(o->projects, sizeof(double));
    registry_make(w, o, &r, cdf);
    if (o->streamed) {
        int rc = wl_stream_setup(w, o, cdf); /* weights, before they become a CDF */
        free(cdf);
        return rc;
    }
    double total = 0;
    for (size_t i = 0; i < w->n_projects; i++) {
        total += cdf[i];
        cdf[i] = total;
    }
    for (size_t i = 0; i < w->n_projects; i++)
        cdf[i] /= total;
    cdf[w->n_projects - 1] = 1.0;

    size_t n = o->votes, k = o->collectors;
    uint64_t *tok = xcalloc(n, sizeof(uint64_t));
    uint32_t *proj = xcalloc(n, sizeof(uint32_t)); /* index */
    uint8_t *col = xcalloc(n, 1);
    w->truth = xcalloc(w->n_projects, sizeof(uint64_t));
    uint64_t tok_state = o->seed * 0x9e3779b97f4a7c15ULL + 12345;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && rng_unit(&r) < o->dup_rate) {
            /* A voter who already voted, at any voting point, with the same choice. */
            size_t j = (size_t)rng_below(&r, i);
            tok[i] = tok[j];
            proj[i] = proj[j];
            col[i] = (uint8_t)rng_below(&r, k);
            w->n_duplicate++;
            continue;
        }
        /* Tokens are keyed hashes of voter ids: uniform, opaque, distinct (splitmix64 is a
         * bijection of its counter). */
        tok[i] = splitmix64_next(&tok_state);
        proj[i] = (uint32_t)cdf_sample(cdf, w->n_projects, rng_unit(&r));
        col[i] = (uint8_t)(w->projects[proj[i]].state % k); /* regional collectors */
        w->truth[proj[i]]++;
        w->n_distinct++;
    }
    w->n_votes = n;
    free(cdf);

    w->n_collectors = k;
    w->collectors = xcalloc(k, sizeof(*w->collectors));
    for (size_t i = 0; i < n; i++)
        w->collectors[col[i]].n_votes++;
    for (size_t c = 0; c < k; c++) {
        struct wl_collector *wc = &w->collectors[c];
        snprintf(wc->id, sizeof(wc->id), "bench-c%zu", c + 1);
        wc->ballots = xcalloc(wc->n_votes, sizeof(uint64_t));
        wc->projects = xcalloc(wc->n_votes, sizeof(uint32_t));
        wc->n_votes = 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct wl_collector *wc = &w->collectors[col[i]];
        wc->ballots[wc->n_votes] = tok[i];
        wc->projects[wc->n_votes] = w->projects[proj[i]].id;
        wc->n_votes++;
    }
    free(tok);
    free(proj);
    free(col);

    struct rng rr;
    rng_seed(&rr, o->seed, 2);
    for (size_t c = 0; c < k; c++) {
        struct wl_collector *wc = &w->collectors[c];
        wc->n_batches = (wc->n_votes + o->batch - 1) / o->batch;
        wc->batches = xcalloc(wc->n_batches, sizeof(*wc->batches));
        for (size_t b = 0; b < wc->n_batches; b++) {
            size_t off = b * o->batch;
            size_t len = wc->n_votes - off < o->batch ? wc->n_votes - off : o->batch;
            wc->batches[b] =
                (struct wl_batch){b + 1, wc->ballots + off, wc->projects + off, (uint32_t)len};
        }
        /* Each batch once in order; after some, a recent one again (a collector that lost
         * an ack, or resent after a reconnect): a seq the receiver has already seen. */
        wc->ops = xcalloc(wc->n_batches * 2 + 1, sizeof(*wc->ops));
        for (size_t b = 0; b < wc->n_batches; b++) {
            wc->ops[wc->n_ops++] = (struct wl_op){(uint32_t)b, false};
            if (b > 0 && rng_unit(&rr) < o->retransmit_rate) {
                size_t back = 1 + (size_t)rng_below(&rr, b < WL_RESEND_BACK ? b : WL_RESEND_BACK);
                wc->ops[wc->n_ops++] = (struct wl_op){(uint32_t)(b - back), true};
                w->n_retransmits++;
            }
        }
        w->n_batches += wc->n_batches;
    }
    return 0;
}

void wl_free(struct workload *w)
{
    for (size_t c = 0; c < w->n_collectors; c++) {
        free(w->collectors[c].ballots);
        free(w->collectors[c].projects);
        free(w->collectors[c].batches);
        free(w->collectors[c].ops);
    }
    free(w->collectors);
    free(w->projects);
    free(w->truth);
    free(w->map_keys);
    free(w->map_vals);
    wl_stream_free(w->stream);
    memset(w, 0, sizeof(*w));
}

bool wl_check(const struct workload *w, const uint64_t *truth, const uint32_t *ids,
              const uint64_t *votes, size_t n, char *why, size_t why_len)
{
    uint64_t *got = xcalloc(w->n_projects, sizeof(uint64_t));
    size_t bad = 0;
    why[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t p = wl_project_index(w, ids[i]);
        if (p < 0) {
            if (votes[i] == 0)
                continue;
            if (!bad++)
                snprintf(why, why_len, "project %u is not in the registry but has %llu votes",
                         ids[i], (unsigned long long)votes[i]);
            continue;
        }
        got[p] += votes[i];
    }
    for (size_t p = 0; p < w->n_projects; p++) {
        if (got[p] == truth[p])
            continue;
        if (!bad++)
            snprintf(why, why_len, "project %u: %llu votes, the truth is %llu", w->projects[p].id,
                     (unsigned long long)got[p], (unsigned long long)truth[p]);
    }
    free(got);
    if (bad) {
        size_t len = strlen(why);
        snprintf(why + len, why_len - len, " (%zu projects differ)", bad);
    }
    return bad == 0;
}

/* ---- a part of the workload ------------------------------------------------------------- */

void wl_prefix(const struct workload *w, uint64_t max_votes, size_t *ops_limit,
               size_t *batches_limit)
{
    for (size_t k = 0; k < w->n_collectors; k++) {
        const struct wl_collector *wc = &w->collectors[k];
        ops_limit[k] = wc->n_ops;
        batches_limit[k] = wc->n_batches;
        if (max_votes >= w->n_votes)
            continue;
        /* This collector's share of max_votes, rounded up to whole batches. */
        double share = (double)max_votes * (double)wc->n_votes / (double)w->n_votes;
        uint64_t sent = 0;
        size_t i = 0, batches = 0;
        while (i < wc->n_ops && (double)sent < share) {
            const struct wl_op *op = &wc->ops[i++];
            if (!op->retransmit) {
                sent += wc->batches[op->batch].n;
                batches = op->batch + 1;
            }
        }
        ops_limit[k] = i;
        batches_limit[k] = batches;
    }
}

/* Ballots seen in a part: open addressing on the token (random bits already), 0 apart. */
struct tokset {
    uint64_t *slots;
    size_t mask;
    bool has_zero;
};

static bool tokset_add(struct tokset *s, uint64_t t)
{
    if (t == 0) {
        bool had = s->has_zero;
        s->has_zero = true;
        return !had;
    }
    size_t i = (size_t)((t * 0x9e3779b97f4a7c15ULL) >> 17) & s->mask;
    while (s->slots[i]) {
        if (s->slots[i] == t)
            return false;
        i = (i + 1) & s->mask;
    }
    s->slots[i] = t;
    return true;
}

void wl_part_make(const struct workload *w, const size_t *ops_done, struct wl_part *p)
{
    memset(p, 0, sizeof(*p));
    p->whole = true;
    for (size_t k = 0; k < w->n_collectors; k++)
        if (ops_done[k] < w->collectors[k].n_ops)
            p->whole = false;
    if (p->whole) {
        p->truth = w->truth;
        p->n_votes = w->n_votes;
        p->n_distinct = w->n_distinct;
        p->n_duplicate = w->n_duplicate;
        p->n_retransmits = w->n_retransmits;
        p->n_batches = w->n_batches;
        return;
    }
    uint64_t votes = 0;
    for (size_t k = 0; k < w->n_collectors; k++)
        for (size_t i = 0; i < ops_done[k]; i++)
            if (!w->collectors[k].ops[i].retransmit)
                votes += w->collectors[k].batches[w->collectors[k].ops[i].batch].n;
    size_t cap = 1024;
    while (cap < votes * 2)
        cap *= 2;
    struct tokset set = {xcalloc(cap, sizeof(uint64_t)), cap - 1, false};
    p->own = xcalloc(w->n_projects, sizeof(uint64_t));
    p->truth = p->own;
    for (size_t k = 0; k < w->n_collectors; k++) {
        const struct wl_collector *wc = &w->collectors[k];
        for (size_t i = 0; i < ops_done[k]; i++) {
            const struct wl_op *op = &wc->ops[i];
            if (op->retransmit) {
                p->n_retransmits++;
                continue;
            }
            const struct wl_batch *b = &wc->batches[op->batch];
            p->n_batches++;
            p->n_votes += b->n;
            for (uint32_t v = 0; v < b->n; v++) {
                if (!tokset_add(&set, b->ballots[v])) {
                    p->n_duplicate++;
                    continue;
                }
                /* A repeated vote carries the same choice, so which copy came first does not
                 * matter. */
                p->own[wl_project_index(w, b->projects[v])]++;
                p->n_distinct++;
            }
        }
    }
    free(set.slots);
}

void wl_part_free(struct wl_part *p)
{
    free(p->own);
    memset(p, 0, sizeof(*p));
}
