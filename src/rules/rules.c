/* The winner rules of one circuit (rules.h): ordering, seats by blocks of equal votes,
 * min_votes, ties, the lot and the decided flag. Pure and allocation-free: the caller
 * passes the scratch; the sort is an in-place heapsort (qsort may allocate). Knows
 * nothing of the tally, the catalog or any output format. */
#include "rules/rules.h"

#include <string.h>

#include <sodium.h>

void rules_lot_key(const struct rules_lot *lot, uint32_t id, uint8_t key[32])
{
    crypto_generichash_state st;
    uint8_t le[4] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16), (uint8_t)(id >> 24)};
    crypto_generichash_init(&st, NULL, 0, 32);
    if (lot->seed && lot->len)
        crypto_generichash_update(&st, lot->seed, lot->len);
    crypto_generichash_update(&st, le, sizeof(le));
    crypto_generichash_final(&st, key, 32);
}

typedef int (*cmp_fn)(uint32_t a, uint32_t b, const void *ctx);

static void sift_down(uint32_t *a, size_t root, size_t n, cmp_fn cmp, const void *ctx)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && cmp(a[child], a[child + 1], ctx) < 0)
            child++;
        if (cmp(a[root], a[child], ctx) >= 0)
            return;
        uint32_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* Ascending by cmp; in place, no allocation, O(n log n). */
static void heap_sort(uint32_t *a, size_t n, cmp_fn cmp, const void *ctx)
{
    if (n < 2)
        return;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n, cmp, ctx);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end, cmp, ctx);
    }
}

/* Listing order: votes descending, then id ascending. */
static int cmp_rank(uint32_t a, uint32_t b, const void *ctx)
{
    const struct rules_project *p = ctx;
    if (p[a].votes != p[b].votes)
        return p[a].votes > p[b].votes ? -1 : 1;
    return p[a].id < p[b].id ? -1 : p[a].id > p[b].id;
}

struct lot_ctx {
    const struct rules_project *p;
    const struct rules_outcome *out;
    const struct rules_lot *lot;
};

/* Inside a tied block: eligible first, by lot key; then the rest by id. Keys are computed
 * at each comparison: ties are rare and short, and this keeps the call allocation-free. */
static int cmp_lot(uint32_t a, uint32_t b, const void *ctx)
{
    const struct lot_ctx *c = ctx;
    if (c->out[a].eligible != c->out[b].eligible)
        return c->out[a].eligible ? -1 : 1;
    if (c->out[a].eligible) {
        uint8_t ka[32], kb[32];
        rules_lot_key(c->lot, c->p[a].id, ka);
        rules_lot_key(c->lot, c->p[b].id, kb);
        int r = memcmp(ka, kb, 32);
        if (r)
            return r;
    }
    return c->p[a].id < c->p[b].id ? -1 : c->p[a].id > c->p[b].id;
}

/* v + r >= thr without overflow. */
static bool reaches(uint64_t v, uint64_t r, uint64_t thr)
{
    return v >= thr || r >= thr - v;
}

static bool is_decided(const struct rules_project *p, size_t n, uint32_t seats, uint64_t remaining,
                       const struct rules_outcome *out, const struct rules_circuit *res,
                       bool positive_tie)
{
    if (remaining == RULES_REMAINING_UNKNOWN || positive_tie)
        return false;
    if (seats == 0)
        return true;
    bool full = res->winners >= seats;
    uint64_t weakest = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (out[i].winner && p[i].votes < weakest)
            weakest = p[i].votes;
    for (size_t j = 0; j < n; j++) {
        if (out[j].winner)
            continue;
        uint64_t thr = p[j].min_votes > 1 ? p[j].min_votes : 1;
        if (full && weakest > thr)
            thr = weakest;
        if (reaches(p[j].votes, remaining, thr))
            return false;
    }
    return true;
}

void rules_circuit_rank(const struct rules_project *p, size_t n, uint32_t seats, uint64_t remaining,
                        const struct rules_lot *lot, uint32_t *order, struct rules_outcome *out,
                        struct rules_circuit *res)
{
    memset(res, 0, sizeof(*res));
    for (size_t i = 0; i < n; i++) {
        order[i] = (uint32_t)i;
        out[i] = (struct rules_outcome){.eligible = p[i].votes >= p[i].min_votes};
    }
    heap_sort(order, n, cmp_rank, p);

    bool use_lot = lot && lot->seed;
    bool positive_tie = false;
    size_t filled = 0; /* seats taken, or all of them once a tie closed the count */
    for (size_t b = 0; b < n;) {
        uint64_t v = p[order[b]].votes;
        size_t e = b + 1, eligible = 0;
        while (e < n && p[order[e]].votes == v)
            e++;
        for (size_t k = b; k < e; k++) {
            out[order[k]].rank = (uint32_t)b + 1;
            eligible += out[order[k]].eligible;
        }
        if (eligible > 0 && filled < seats) {
            if (filled + eligible <= seats) {
                for (size_t k = b; k < e && v > 0; k++)
                    out[order[k]].winner = out[order[k]].eligible;
                res->winners += v > 0 ? (uint32_t)eligible : 0;
                filled += eligible;
            } else {
                res->tie = true;
                positive_tie |= v > 0;
                for (size_t k = b; k < e; k++)
                    out[order[k]].tie = out[order[k]].eligible;
                if (use_lot && v > 0) {
                    struct lot_ctx c = {p, out, lot};
                    heap_sort(order + b, e - b, cmp_lot, &c);
                    for (size_t k = b; k < b + (seats - filled); k++) {
                        out[order[k]].winner = true;
                        out[order[k]].by_lot = true;
                    }
                    res->winners += (uint32_t)(seats - filled);
                }
                filled = seats;
            }
        }
        b = e;
    }

    if (seats > 0) {
        size_t seen = 0;
        uint64_t last = 0;
        for (size_t k = 0; k < n; k++) {
            if (!out[order[k]].eligible)
                continue;
            if (++seen == seats) {
                last = p[order[k]].votes;
            } else if (seen == (size_t)seats + 1) {
                res->has_margin = true;
                res->margin = last - p[order[k]].votes;
                break;
            }
        }
    }
    res->decided = is_decided(p, n, seats, remaining, out, res, positive_tie);
}
