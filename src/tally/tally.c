/* Applying batches: registry lookup, batch and ballot dedup, counting, and sealing what
 * was applied into checkpoint deltas. Owns all in-memory tally state; never does I/O. */
#include "tally/tally.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"
#include "tally/delta.h"

/* Prefetch distance in votes: far enough to hide a DRAM miss behind the work on the
 * votes in between. */
#define PREFETCH_AHEAD 16

struct tally {
    size_t n_projects;
    struct tally_project *projects; /* by dense index */
    uint64_t *counts;               /* by dense index, everything applied */
    uint64_t *durable;              /* by dense index, committed only */
    uint32_t *map_keys;             /* registry map: external id -> dense index */
    int32_t *map_vals;              /* -1 marks an empty slot */
    size_t map_mask;

    struct tally_set ballots;

    struct tally_collector *collectors;
    size_t n_collectors, cap_collectors;

    struct tally_delta deltas[2];
    struct tally_delta *pending, *inflight; /* inflight is NULL when no checkpoint runs */

    uint32_t *batch_counts;  /* [n_projects] scratch for one batch, zero between batches */
    uint32_t *batch_touched; /* [n_projects] */
    uint64_t *sort_tmp;      /* radix sort scratch, sort_cap entries */
    size_t sort_cap;
    size_t (*sort_hist)[1u << 11]; /* radix sort histograms, RADIX_PASSES of them */

    struct tally_totals applied;
    struct tally_totals durable_total;
};

static void totals_add(struct tally_totals *to, const struct tally_totals *add)
{
    to->batches += add->batches;
    to->votes += add->votes;
    to->accepted += add->accepted;
    to->duplicate += add->duplicate;
    to->rejected += add->rejected;
}

static size_t map_home(uint32_t id, size_t mask)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}

struct tally *tally_new(const struct tally_project *projects, size_t n, size_t expected_ballots)
{
    struct tally *t = xcalloc(1, sizeof(*t));
    t->n_projects = n;
    t->projects = xcalloc(n, sizeof(*projects));
    if (n)
        memcpy(t->projects, projects, n * sizeof(*projects));
    t->counts = xcalloc(n, sizeof(uint64_t));
    t->durable = xcalloc(n, sizeof(uint64_t));

    size_t cap = 64;
    while (cap < n * 2)
        cap *= 2;
    t->map_mask = cap - 1;
    t->map_keys = xcalloc(cap, sizeof(uint32_t));
    t->map_vals = xcalloc(cap, sizeof(int32_t));
    memset(t->map_vals, 0xff, cap * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        size_t s = map_home(projects[i].id, t->map_mask);
        while (t->map_vals[s] >= 0) {
            if (t->map_keys[s] == projects[i].id)
                goto fail;
            s = (s + 1) & t->map_mask;
        }
        t->map_keys[s] = projects[i].id;
        t->map_vals[s] = (int32_t)i;
    }

    tally_set_init(&t->ballots, expected_ballots);
    tally_delta_init(&t->deltas[0], n);
    tally_delta_init(&t->deltas[1], n);
    t->pending = &t->deltas[0];
    t->inflight = NULL;
    t->batch_counts = xcalloc(n, sizeof(uint32_t));
    t->batch_touched = xcalloc(n, sizeof(uint32_t));
    return t;
fail:
    tally_free(t);
    return NULL;
}

void tally_free(struct tally *t)
{
    if (!t)
        return;
    free(t->projects);
    free(t->counts);
    free(t->durable);
    free(t->map_keys);
    free(t->map_vals);
    if (t->ballots.slots)
        tally_set_cleanup(&t->ballots);
    free(t->collectors);
    if (t->deltas[0].proj_delta) {
        tally_delta_cleanup(&t->deltas[0]);
        tally_delta_cleanup(&t->deltas[1]);
    }
    free(t->batch_counts);
    free(t->batch_touched);
    free(t->sort_tmp);
    free(t->sort_hist);
    free(t);
}

size_t tally_project_count(const struct tally *t)
{
    return t->n_projects;
}

int32_t tally_project_index(const struct tally *t, uint32_t id)
{
    size_t s = map_home(id, t->map_mask);
    for (;;) {
        int32_t v = t->map_vals[s];
        if (v < 0 || t->map_keys[s] == id)
            return v;
        s = (s + 1) & t->map_mask;
    }
}

const struct tally_project *tally_project_at(const struct tally *t, size_t index)
{
    assert(index < t->n_projects);
    return &t->projects[index];
}

uint64_t tally_votes_at(const struct tally *t, size_t index)
{
    assert(index < t->n_projects);
    return t->counts[index];
}

void tally_restore_votes(struct tally *t, uint32_t project_id, uint64_t votes)
{
    int32_t i = tally_project_index(t, project_id);
    if (i >= 0)
        t->counts[i] = t->durable[i] = votes;
}

size_t tally_restore_tokens(struct tally *t, const uint64_t *tokens, size_t n)
{
    size_t dup = 0;
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
        tally_set_prefetch(&t->ballots, tokens[i]);
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            tally_set_prefetch(&t->ballots, tokens[i + PREFETCH_AHEAD]);
        dup += !tally_set_insert(&t->ballots, tokens[i]);
    }
    return dup;
}

bool tally_restore_token(struct tally *t, uint64_t token)
{
    return tally_set_insert(&t->ballots, token);
}

uint32_t tally_collector_add(struct tally *t, const char *id, uint64_t durable_seq,
                             const struct tally_totals *durable)
{
    int32_t found = tally_collector_find(t, id);
    if (found >= 0)
        return (uint32_t)found;
    if (t->n_collectors == t->cap_collectors) {
        t->cap_collectors = t->cap_collectors ? t->cap_collectors * 2 : 16;
        t->collectors = xreallocarray(t->collectors, t->cap_collectors, sizeof(*t->collectors));
    }
    struct tally_collector *c = &t->collectors[t->n_collectors];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->applied_seq = c->durable_seq = durable_seq;
    if (durable) {
        c->durable = *durable;
        totals_add(&t->durable_total, durable);
        totals_add(&t->applied, durable);
    }
    return (uint32_t)t->n_collectors++;
}

int32_t tally_collector_find(const struct tally *t, const char *id)
{
    /* Collectors number in the hundreds and are looked up once per connection. */
    for (size_t i = 0; i < t->n_collectors; i++)
        if (strcmp(t->collectors[i].id, id) == 0)
            return (int32_t)i;
    return -1;
}

size_t tally_collector_count(const struct tally *t)
{
    return t->n_collectors;
}

const struct tally_collector *tally_collector_at(const struct tally *t, uint32_t index)
{
    assert(index < t->n_collectors);
    return &t->collectors[index];
}

/* LSD radix sort, 6 passes of 11 bits, histograms built in one read. Stable; a few ns a
 * key where qsort's indirect compares cost ~70 ns a key on 10,000-key batches. */
#define RADIX_BITS 11
#define RADIX_PASSES 6
#define RADIX_SIZE (1u << RADIX_BITS)
static void radix_sort_u64(uint64_t *a, size_t n, uint64_t *tmp,
                           size_t hist[RADIX_PASSES][RADIX_SIZE])
{
    if (n < 64) {
        for (size_t i = 1; i < n; i++) {
            uint64_t v = a[i];
            size_t j = i;
            while (j > 0 && a[j - 1] > v) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
        return;
    }
    memset(hist, 0, sizeof(size_t[RADIX_PASSES][RADIX_SIZE]));
    for (size_t i = 0; i < n; i++) {
        uint64_t v = a[i];
        for (int p = 0; p < RADIX_PASSES; p++)
            hist[p][(v >> (p * RADIX_BITS)) & (RADIX_SIZE - 1)]++;
    }
    uint64_t *src = a, *dst = tmp;
    for (int p = 0; p < RADIX_PASSES; p++) {
        size_t sum = 0;
        for (size_t b = 0; b < RADIX_SIZE; b++) {
            size_t c = hist[p][b];
            hist[p][b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t v = src[i];
            dst[hist[p][(v >> (p * RADIX_BITS)) & (RADIX_SIZE - 1)]++] = v;
        }
        uint64_t *x = src;
        src = dst;
        dst = x;
    }
    /* An even number of passes leaves the result in a. */
}

enum tally_apply_status tally_apply_batch(struct tally *t, uint32_t c, uint64_t seq,
                                          const uint64_t *ballots, const uint32_t *projects,
                                          size_t n, struct tally_batch_result *res,
                                          uint64_t *expected)
{
    assert(c < t->n_collectors);
    struct tally_collector *col = &t->collectors[c];
    if (seq <= col->applied_seq)
        return TALLY_RETRANSMIT;
    if (seq != col->applied_seq + 1) {
        *expected = col->applied_seq + 1;
        return TALLY_GAP;
    }

    struct tally_delta *d = t->pending;
    tally_delta_reserve(d, n);
    uint64_t *tok = d->tokens + d->n_tokens;
    size_t n_tok = 0, n_touched = 0;
    uint32_t rejected = 0, duplicate = 0;

    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
        tally_set_prefetch(&t->ballots, ballots[i]);
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            tally_set_prefetch(&t->ballots, ballots[i + PREFETCH_AHEAD]);
        int32_t p = tally_project_index(t, projects[i]);
        if (p < 0) {
            rejected++;
            continue;
        }
        if (!tally_set_insert(&t->ballots, ballots[i])) {
            duplicate++;
            continue;
        }
        t->counts[p]++;
        if (t->batch_counts[p]++ == 0)
            t->batch_touched[n_touched++] = (uint32_t)p;
        tok[n_tok++] = ballots[i];
    }

    /* Sorted tokens are what is stored: a batch record then says who voted, never how. */
    if (t->sort_cap < n_tok) {
        free(t->sort_tmp);
        t->sort_cap = n_tok * 2;
        t->sort_tmp = xcalloc(t->sort_cap, sizeof(uint64_t));
    }
    if (!t->sort_hist)
        t->sort_hist = xcalloc(RADIX_PASSES, sizeof(*t->sort_hist));
    radix_sort_u64(tok, n_tok, t->sort_tmp, t->sort_hist);

    struct tally_delta_batch *b = &d->batches[d->n_batches++];
    b->collector = c;
    b->seq = seq;
    b->votes = (uint32_t)n;
    b->accepted = (uint32_t)n_tok;
    b->duplicate = duplicate;
    b->rejected_unknown = rejected;
    b->tok_off = d->n_tokens;
    b->n_tok = n_tok;
    b->cnt_off = d->n_cnt;
    b->n_cnt = n_touched;
    d->n_tokens += n_tok;
    for (size_t k = 0; k < n_touched; k++) {
        uint32_t p = t->batch_touched[k];
        d->cnt_ids[d->n_cnt] = t->projects[p].id;
        d->cnt_vals[d->n_cnt] = t->batch_counts[p];
        d->n_cnt++;
        if (d->proj_delta[p] == 0)
            d->touched[d->n_touched++] = p;
        d->proj_delta[p] += t->batch_counts[p];
        t->batch_counts[p] = 0;
    }
    d->votes += n;

    col->applied_seq = seq;
    col->pending.batches++;
    col->pending.votes += n;
    col->pending.accepted += n_tok;
    col->pending.duplicate += duplicate;
    col->pending.rejected += rejected;
    t->applied.batches++;
    t->applied.votes += n;
    t->applied.accepted += n_tok;
    t->applied.duplicate += duplicate;
    t->applied.rejected += rejected;

    res->accepted = (uint32_t)n_tok;
    res->duplicate = duplicate;
    res->rejected_unknown = rejected;
    return TALLY_APPLIED;
}

const uint64_t *tally_durable_votes(const struct tally *t)
{
    return t->durable;
}

const struct tally_totals *tally_durable_totals(const struct tally *t)
{
    return &t->durable_total;
}

const struct tally_totals *tally_applied_totals(const struct tally *t)
{
    return &t->applied;
}

size_t tally_ballot_count(const struct tally *t)
{
    return t->ballots.count;
}

size_t tally_ballot_bytes(const struct tally *t)
{
    return tally_set_bytes(&t->ballots);
}

uint64_t tally_backlog_votes(const struct tally *t)
{
    return t->pending->votes + (t->inflight ? t->inflight->votes : 0);
}

bool tally_has_pending(const struct tally *t)
{
    return t->pending->n_batches > 0;
}

const struct tally_delta *tally_checkpoint_seal(struct tally *t, uint64_t id)
{
    if (t->inflight || t->pending->n_batches == 0)
        return NULL;
    struct tally_delta *d = t->pending;
    d->checkpoint_id = id;
    for (size_t i = 0; i < d->n_touched; i++) {
        d->out_ids[i] = t->projects[d->touched[i]].id;
        d->out_deltas[i] = d->proj_delta[d->touched[i]];
    }
    for (size_t i = 0; i < t->n_collectors; i++) {
        struct tally_collector *col = &t->collectors[i];
        if (col->pending.batches == 0)
            continue;
        struct tally_delta_mark *m = tally_delta_add_mark(d);
        m->collector = (uint32_t)i;
        m->prev_seq = col->durable_seq;
        m->durable_seq = col->applied_seq;
        m->add = col->pending;
        memset(&col->pending, 0, sizeof(col->pending));
    }
    t->inflight = d;
    t->pending = (d == &t->deltas[0]) ? &t->deltas[1] : &t->deltas[0];
    return d;
}

void tally_checkpoint_commit(struct tally *t)
{
    struct tally_delta *d = t->inflight;
    assert(d);
    for (size_t i = 0; i < d->n_marks; i++) {
        struct tally_delta_mark *m = &d->marks[i];
        struct tally_collector *col = &t->collectors[m->collector];
        col->durable_seq = m->durable_seq;
        totals_add(&col->durable, &m->add);
        totals_add(&t->durable_total, &m->add);
    }
    for (size_t i = 0; i < d->n_touched; i++)
        t->durable[d->touched[i]] += d->proj_delta[d->touched[i]];
    tally_delta_reset(d);
    t->inflight = NULL;
}

const struct tally_delta *tally_checkpoint_inflight(const struct tally *t)
{
    return t->inflight;
}
