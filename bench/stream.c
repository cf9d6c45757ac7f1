/* The streamed workload: for runs too large to hold in memory (--stream, or more than
 * WL_STREAM_AUTO_VOTES votes), every vote is a pure function of (seed, collector, position),
 * so a collector thread makes each batch when it needs it and keeps none. Owns the recipe
 * and the count pass that works out the ground truth from it; holds no vote (but the prefix
 * it materialises for the slow peers). The registry and the shape are workload.c's.
 *
 * The recipe. Position i of collector k has the id (k << 40) | i. It is a first occurrence
 * ("fresh") or a repeat by a keyed hash of its id, with the share of repeats the in-memory
 * workload gives that collector. A fresh vote's token is a keyed bijective mix of its id, so
 * two fresh votes never share a token, and its project is drawn (alias method) from the
 * collector's own states' projects by another hash of its id. A repeat copies the token and
 * project of a vote at a strictly smaller point of progress (position / the collector's
 * votes) of a collector that has fresh votes, chosen by a third hash; if that one is a
 * repeat too, its source is followed in turn. Progress falls at each step and position 0 of
 * such a collector is always fresh, so every chain ends at a fresh vote that is in the
 * workload: a repeat is never a first occurrence, and the truth is the fresh votes. */
#include "bench.h"

#include "core/rng.h"
#include "core/xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN 0x9e3779b97f4a7c15ULL

/* One entry of a collector's alias table: the project index j itself with probability
 * prob / 2^32, else alias. */
struct st_alias {
    uint32_t prob, self, alias;
};

struct st_col {
    uint64_t n;         /* votes of this collector */
    uint64_t dup_below; /* a position i > 0 is a repeat when its hash is below this */
    bool has_fresh;     /* its states have projects */
    struct st_alias *table;
    uint32_t n_table;
};

struct wl_stream {
    uint32_t batch;
    uint64_t key_kind, key_token, key_project, key_source, key_resend;
    size_t n_cols;
    struct st_col cols[64];
    /* Where repeats come from: the collectors with fresh votes, by cumulative votes. */
    size_t n_src;
    uint8_t src_col[64];
    uint64_t src_cum[64];
    uint32_t *ids; /* project index -> external id */
};

/* splitmix64's finaliser: a bijection of 64 bits. */
static inline uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A keyed hash of a vote id; for a fixed key a bijection (an odd multiply, an add, a mix). */
static inline uint64_t hash_of(uint64_t key, uint64_t id)
{
    return mix64(key + id * GOLDEN);
}

static inline uint64_t vote_id(size_t k, uint64_t i)
{
    return ((uint64_t)k << 40) | i;
}

static inline uint64_t below(uint64_t h, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

static inline bool is_fresh(const struct wl_stream *s, size_t k, uint64_t i)
{
    const struct st_col *c = &s->cols[k];
    if (!c->has_fresh)
        return false;
    return i == 0 || hash_of(s->key_kind, vote_id(k, i)) >= c->dup_below;
}

/* The vote a repeat at (k, i) copies: at a point of progress at most u / 2^32 of its own
 * (u < 2^32), in a collector with fresh votes, chosen in proportion to their votes. */
static inline void source_of(const struct wl_stream *s, size_t *k, uint64_t *i)
{
    uint64_t h = hash_of(s->key_source, vote_id(*k, *i));
    uint64_t r = below(mix64(h ^ s->key_source), s->src_cum[s->n_src - 1]);
    size_t j = 0;
    while (s->src_cum[j] <= r)
        j++;
    size_t k2 = s->src_col[j];
    uint64_t u = h >> 32;
    unsigned __int128 num = (unsigned __int128)u * *i * s->cols[k2].n;
    *i = (uint64_t)(num / ((unsigned __int128)s->cols[*k].n << 32));
    *k = k2;
}

static inline uint32_t project_of(const struct wl_stream *s, size_t k, uint64_t i)
{
    const struct st_col *c = &s->cols[k];
    uint64_t h = hash_of(s->key_project, vote_id(k, i));
    const struct st_alias *a = &c->table[((h >> 32) * c->n_table) >> 32];
    return (uint32_t)h < a->prob ? a->self : a->alias;
}

static inline uint64_t token_of(const struct wl_stream *s, size_t k, uint64_t i)
{
    return hash_of(s->key_token, vote_id(k, i));
}

void wl_stream_fill(const struct workload *w, size_t k, size_t b, uint64_t *ballots,
                    uint32_t *projects, uint64_t *truth)
{
    const struct wl_stream *s = w->stream;
    uint64_t i0 = (uint64_t)b * s->batch;
    uint32_t n = w->collectors[k].batches[b].n;
    for (uint32_t v = 0; v < n; v++) {
        size_t kk = k;
        uint64_t ii = i0 + v;
        bool fresh = is_fresh(s, kk, ii);
        if (!fresh) {
            do
                source_of(s, &kk, &ii);
            while (!is_fresh(s, kk, ii));
        }
        uint32_t p = project_of(s, kk, ii);
        if (fresh && truth)
            truth[p]++;
        ballots[v] = token_of(s, kk, ii);
        projects[v] = s->ids[p];
    }
}

/* ---- setup ------------------------------------------------------------------------------ */

/* Vose's alias method over the projects idx[0..n) with weights weight[idx[j]]. */
static struct st_alias *alias_make(const uint32_t *idx, size_t n, const double *weight)
{
    struct st_alias *t = xcalloc(n, sizeof(*t));
    double *p = xcalloc(n, sizeof(double)), sum = 0;
    size_t *small = xcalloc(n, sizeof(size_t)), *large = xcalloc(n, sizeof(size_t));
    size_t ns = 0, nl = 0;
    for (size_t j = 0; j < n; j++)
        sum += weight[idx[j]];
    for (size_t j = 0; j < n; j++) {
        p[j] = weight[idx[j]] * (double)n / sum;
        if (p[j] < 1)
            small[ns++] = j;
        else
            large[nl++] = j;
    }
    while (ns && nl) {
        size_t s = small[--ns], l = large[nl - 1];
        t[s] = (struct st_alias){(uint32_t)(p[s] * 4294967296.0), idx[s], idx[l]};
        p[l] -= 1 - p[s];
        if (p[l] < 1) {
            nl--;
            small[ns++] = l;
        }
    }
    /* What is left has probability 1 up to rounding. */
    while (nl--)
        t[large[nl]] = (struct st_alias){UINT32_MAX, idx[large[nl]], idx[large[nl]]};
    while (ns--)
        t[small[ns]] = (struct st_alias){UINT32_MAX, idx[small[ns]], idx[small[ns]]};
    free(p);
    free(small);
    free(large);
    return t;
}

/* Votes and repeats per collector as the in-memory workload has them on average: a fresh
 * vote goes to the collector of its state, a repeat to any collector. */
static void shares_make(struct wl_stream *s, const struct workload *w, const struct bench_opts *o,
                        const double *weight)
{
    size_t k = o->collectors;
    double share[64] = {0}, total = 0, d = o->dup_rate;
    for (size_t p = 0; p < w->n_projects; p++) {
        share[w->projects[p].state % k] += weight[p];
        total += weight[p];
    }
    double cum = 0;
    uint64_t prev = 0, with_fresh = 0;
    size_t largest = 0;
    for (size_t c = 0; c < k; c++) {
        share[c] /= total;
        double frac = (1 - d) * share[c] + d / (double)k;
        cum += frac;
        uint64_t upto = c == k - 1 ? o->votes : (uint64_t)((double)o->votes * cum + 0.5);
        if (upto > o->votes)
            upto = o->votes;
        if (upto < prev)
            upto = prev;
        struct st_col *sc = &s->cols[c];
        sc->n = upto - prev;
        prev = upto;
        sc->has_fresh = share[c] > 0;
        double dk = sc->has_fresh && frac > 0 ? d / (double)k / frac : 1;
        sc->dup_below = dk >= 1 ? UINT64_MAX : (uint64_t)(dk * 18446744073709551616.0);
        if (sc->has_fresh)
            with_fresh += sc->n;
        if (share[c] > share[largest])
            largest = c;
    }
    /* A tiny workload may give no vote to a collector with fresh votes: then it all goes
     * to the largest one, so that every repeat has a source. */
    if (with_fresh == 0) {
        for (size_t c = 0; c < k; c++)
            s->cols[c].n = c == largest ? o->votes : 0;
    }
    for (size_t c = 0; c < k; c++) {
        if (!s->cols[c].has_fresh || !s->cols[c].n)
            continue;
        s->src_col[s->n_src] = (uint8_t)c;
        s->src_cum[s->n_src] = (s->n_src ? s->src_cum[s->n_src - 1] : 0) + s->cols[c].n;
        s->n_src++;
    }
}

/* Each batch once in order; after some, a recent one again: the in-memory workload's rule,
 * drawn from (seed, collector, batch) instead of one sequence. */
static void ops_make(struct wl_stream *s, struct workload *w, size_t k, double rate)
{
    struct wl_collector *wc = &w->collectors[k];
    wc->ops = xcalloc(wc->n_batches * 2 + 1, sizeof(*wc->ops));
    for (size_t b = 0; b < wc->n_batches; b++) {
        wc->ops[wc->n_ops++] = (struct wl_op){(uint32_t)b, false};
        uint64_t h = hash_of(s->key_resend, vote_id(k, b));
        if (b > 0 && (double)(h >> 11) * 0x1.0p-53 < rate) {
            size_t back = 1 + (size_t)below(mix64(h), b < WL_RESEND_BACK ? b : WL_RESEND_BACK);
            wc->ops[wc->n_ops++] = (struct wl_op){(uint32_t)(b - back), true};
            w->n_retransmits++;
        }
    }
}

/* The count pass: chunks of positions over a few threads, each with its own counts. */
struct count_job {
    const struct workload *w;
    _Atomic size_t next;
    size_t n_chunks;
    size_t *chunk_col;
    uint64_t *chunk_from;
};

struct count_part {
    struct count_job *job;
    pthread_t thread;
    uint64_t *truth, distinct;
};

#define COUNT_CHUNK (UINT64_C(1) << 22)

static void *count_main(void *arg)
{
    struct count_part *cp = arg;
    const struct workload *w = cp->job->w;
    const struct wl_stream *s = w->stream;
    for (;;) {
        size_t c = atomic_fetch_add(&cp->job->next, 1);
        if (c >= cp->job->n_chunks)
            break;
        size_t k = cp->job->chunk_col[c];
        uint64_t from = cp->job->chunk_from[c], to = from + COUNT_CHUNK;
        if (to > s->cols[k].n)
            to = s->cols[k].n;
        for (uint64_t i = from; i < to; i++) {
            if (!is_fresh(s, k, i))
                continue;
            cp->truth[project_of(s, k, i)]++;
            cp->distinct++;
        }
    }
    return NULL;
}

static void count_pass(struct workload *w)
{
    const struct wl_stream *s = w->stream;
    struct count_job job = {.w = w};
    for (size_t k = 0; k < s->n_cols; k++)
        job.n_chunks += (size_t)((s->cols[k].n + COUNT_CHUNK - 1) / COUNT_CHUNK);
    job.chunk_col = xcalloc(job.n_chunks, sizeof(size_t));
    job.chunk_from = xcalloc(job.n_chunks, sizeof(uint64_t));
    size_t c = 0;
    for (size_t k = 0; k < s->n_cols; k++)
        for (uint64_t i = 0; i < s->cols[k].n; i += COUNT_CHUNK, c++) {
            job.chunk_col[c] = k;
            job.chunk_from[c] = i;
        }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (size_t)ncpu;
    struct count_part parts[8];
    for (size_t t = 0; t < n; t++) {
        parts[t] = (struct count_part){.job = &job};
        parts[t].truth = xcalloc(w->n_projects, sizeof(uint64_t));
        if (pthread_create(&parts[t].thread, NULL, count_main, &parts[t]) != 0)
            abort();
    }
    for (size_t t = 0; t < n; t++) {
        pthread_join(parts[t].thread, NULL);
        for (size_t p = 0; p < w->n_projects; p++)
            w->truth[p] += parts[t].truth[p];
        w->n_distinct += parts[t].distinct;
        free(parts[t].truth);
    }
    w->n_duplicate = w->n_votes - w->n_distinct;
    free(job.chunk_col);
    free(job.chunk_from);
}

int wl_stream_setup(struct workload *w, const struct bench_opts *o, const double *weight)
{
    struct wl_stream *s = xcalloc(1, sizeof(*s));
    w->stream = s;
    s->batch = o->batch;
    s->n_cols = o->collectors;
    uint64_t x = o->seed * 0x2545f4914f6cdd1dULL + 7;
    s->key_kind = splitmix64_next(&x);
    s->key_token = splitmix64_next(&x);
    s->key_project = splitmix64_next(&x);
    s->key_source = splitmix64_next(&x);
    s->key_resend = splitmix64_next(&x);
    s->ids = xcalloc(w->n_projects, sizeof(uint32_t));
    for (size_t p = 0; p < w->n_projects; p++)
        s->ids[p] = w->projects[p].id;
    shares_make(s, w, o, weight);

    uint32_t *idx = xcalloc(w->n_projects, sizeof(uint32_t));
    for (size_t k = 0; k < s->n_cols; k++) {
        uint32_t n = 0;
        for (size_t p = 0; p < w->n_projects; p++)
            if (w->projects[p].state % s->n_cols == k)
                idx[n++] = (uint32_t)p;
        if (n) {
            s->cols[k].table = alias_make(idx, n, weight);
            s->cols[k].n_table = n;
        }
    }
    free(idx);

    w->n_votes = o->votes;
    w->n_collectors = s->n_cols;
    w->collectors = xcalloc(s->n_cols, sizeof(*w->collectors));
    w->truth = xcalloc(w->n_projects, sizeof(uint64_t));
    for (size_t k = 0; k < s->n_cols; k++) {
        struct wl_collector *wc = &w->collectors[k];
        snprintf(wc->id, sizeof(wc->id), "bench-c%zu", k + 1);
        wc->n_votes = s->cols[k].n;
        wc->n_batches = (wc->n_votes + o->batch - 1) / o->batch;
        wc->batches = xcalloc(wc->n_batches, sizeof(*wc->batches));
        for (size_t b = 0; b < wc->n_batches; b++) {
            uint64_t off = (uint64_t)b * o->batch;
            uint64_t len = wc->n_votes - off < o->batch ? wc->n_votes - off : o->batch;
            wc->batches[b] = (struct wl_batch){b + 1, NULL, NULL, (uint32_t)len};
        }
        ops_make(s, w, k, o->retransmit_rate);
        w->n_batches += wc->n_batches;
    }
    count_pass(w);
    return 0;
}

void wl_stream_materialize(struct workload *w, const size_t *batches_limit)
{
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct wl_collector *wc = &w->collectors[k];
        size_t votes = 0;
        for (size_t b = 0; b < batches_limit[k]; b++)
            votes += wc->batches[b].n;
        free(wc->ballots);
        free(wc->projects);
        wc->ballots = xcalloc(votes, sizeof(uint64_t));
        wc->projects = xcalloc(votes, sizeof(uint32_t));
        size_t off = 0;
        for (size_t b = 0; b < batches_limit[k]; b++) {
            struct wl_batch *wb = &wc->batches[b];
            wl_stream_fill(w, k, b, wc->ballots + off, wc->projects + off, NULL);
            wb->ballots = wc->ballots + off;
            wb->projects = wc->projects + off;
            off += wb->n;
        }
    }
}

void wl_stream_free(struct wl_stream *s)
{
    if (!s)
        return;
    for (size_t k = 0; k < s->n_cols; k++)
        free(s->cols[k].table);
    free(s->ids);
    free(s);
}
