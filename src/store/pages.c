/* Token pages: where accepted tokens are kept apart from every count. Plans how each
 * checkpoint's new tokens join the pages so that no page ever holds fewer than
 * --min-anonymity tokens (unless all of them do), and loads the newest page at start-up.
 * The rule, from the database alone: only the newest page can take tokens; a checkpoint's
 * tokens are merged into it when it is small (< 2N) or when they are too few (< N) to
 * make a page of their own; whatever is merged is cut into pages of at most
 * STORE_PAGE_MAX_TOKENS, the newest holding N tokens so the next merge stays cheap. */
#include "store/chain.h"
#include "store/internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

void store_pages_init(struct store_pages *p, uint32_t min)
{
    memset(p, 0, sizeof(*p));
    p->min = min ? min : 1;
}

void store_pages_cleanup(struct store_pages *p)
{
    free(p->last);
    memset(p, 0, sizeof(*p));
}

void store_page_plan_cleanup(struct store_page_plan *plan)
{
    free(plan->merged);
    free(plan->le_buf);
    free(plan->scratch);
    free(plan->pages);
    memset(plan, 0, sizeof(*plan));
}

static void pages_set_last(struct store_pages *p, uint64_t id, const uint64_t *tokens, size_t n)
{
    p->last = xgrow(p->last, &p->cap_last, n, sizeof(*p->last));
    if (n)
        memcpy(p->last, tokens, n * sizeof(*tokens));
    p->n_last = n;
    p->last_id = id;
}

int store_pages_load(struct store *s, struct store_pages *p)
{
    PGresult *res = store_query_rows(
        s, "SELECT coalesce(sum(length(tokens)) / 8, 0) FROM token_pages", "counting tokens");
    if (!res)
        return -1;
    int rc = store_parse_u64(PQgetvalue(res, 0, 0), INT64_MAX, &p->total);
    PQclear(res);
    if (rc < 0) {
        store_set_error(s, "bad token count");
        return -1;
    }
    res = PQexecParams(s->conn, "SELECT id, tokens FROM token_pages ORDER BY id DESC LIMIT 1", 0,
                       NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(s, res, "reading the newest token page");
        PQclear(res);
        return -1;
    }
    p->last_id = 0;
    p->n_last = 0;
    if (PQntuples(res) == 1) {
        const unsigned char *id = (const unsigned char *)PQgetvalue(res, 0, 0);
        int len = PQgetlength(res, 0, 1);
        const unsigned char *tok = (const unsigned char *)PQgetvalue(res, 0, 1);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | id[i]; /* binary int8 is big-endian */
        size_t n = (size_t)len / 8;
        p->last = xgrow(p->last, &p->cap_last, n, sizeof(*p->last));
        for (size_t i = 0; i < n; i++)
            p->last[i] = le64_get(tok + 8 * i);
        p->n_last = n;
        p->last_id = v;
    }
    PQclear(res);
    return 0;
}

/* Radix sort of a checkpoint's tokens. One pass on the top MSD_BITS scatters them into
 * 2^MSD_BITS buckets (of ~1,200 tokens at 2.5 M); each bucket, small enough for the cache,
 * is then sorted by its low bits with LSD passes of 8 bits. Six LSD passes of 11 bits over
 * the whole array, as before, missed the cache on every scatter (15 % of tallyd's CPU). */
#define MSD_BITS 11
#define MSD_SIZE (1u << MSD_BITS)
#define LSD_PASSES 7 /* 7 x 8 bits cover the 64 - MSD_BITS low bits */

static void insertion_sort_u64(uint64_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        size_t j = i;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* Sorts src[0, n) by bits [0, 56) into dst (src is scratch): LSD_PASSES is odd, so the
 * last pass writes dst. */
static void bucket_sort_u64(uint64_t *src, uint64_t *dst, size_t n)
{
    if (n <= 32) {
        insertion_sort_u64(src, n);
        memcpy(dst, src, n * sizeof(*src));
        return;
    }
    uint32_t hist[LSD_PASSES][256];
    memset(hist, 0, sizeof(hist));
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < LSD_PASSES; p++)
            hist[p][(src[i] >> (8 * p)) & 255]++;
    uint64_t *from = src, *to = dst;
    for (int p = 0; p < LSD_PASSES; p++) {
        if (p % 2 == 0) {
            from = src;
            to = dst;
        } else {
            from = dst;
            to = src;
        }
        uint32_t sum = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t c = hist[p][b];
            hist[p][b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            to[hist[p][(from[i] >> (8 * p)) & 255]++] = from[i];
    }
}

static void radix_sort_u64(uint64_t *a, size_t n, uint64_t *tmp)
{
    static _Thread_local size_t start[MSD_SIZE + 1];
    memset(start, 0, sizeof(start));
    for (size_t i = 0; i < n; i++)
        start[(a[i] >> (64 - MSD_BITS)) + 1]++;
    for (size_t b = 0; b < MSD_SIZE; b++)
        start[b + 1] += start[b];
    static _Thread_local size_t fill[MSD_SIZE];
    memcpy(fill, start, sizeof(fill));
    for (size_t i = 0; i < n; i++)
        tmp[fill[a[i] >> (64 - MSD_BITS)]++] = a[i];
    for (size_t b = 0; b < MSD_SIZE; b++)
        bucket_sort_u64(tmp + start[b], a + start[b], start[b + 1] - start[b]);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void plan_add_page(struct store_page_plan *plan, uint64_t id, size_t off, size_t n)
{
    plan->pages = xgrow(plan->pages, &plan->cap_pages, plan->n_pages + 1, sizeof(*plan->pages));
    struct store_page_out *o = &plan->pages[plan->n_pages++];
    o->id = id;
    o->off = off;
    o->n = n;
    randombytes_buf(o->salt, sizeof(o->salt));
    store_page_digest(o->salt, plan->le + 8 * off, n, o->digest);
}

void store_pages_plan(const struct store_pages *p, uint64_t *tokens, size_t n,
                      struct store_page_plan *plan)
{
    plan->n_pages = 0;
    plan->n_merged = 0;
    if (n == 0)
        return;
    if (n < 4096) {
        qsort(tokens, n, sizeof(*tokens), cmp_u64);
    } else {
        plan->scratch = xgrow(plan->scratch, &plan->cap_scratch, n, sizeof(*plan->scratch));
        radix_sort_u64(tokens, n, plan->scratch);
    }
    size_t min = p->min;
    bool merge = p->last_id && (p->n_last < 2 * min || n < min);
    size_t total = n + (merge ? p->n_last : 0);
    plan->merged = xgrow(plan->merged, &plan->cap_merged, total, sizeof(*plan->merged));
    if (merge) {
        size_t i = 0, j = 0, k = 0;
        while (i < p->n_last && j < n)
            plan->merged[k++] = p->last[i] < tokens[j] ? p->last[i++] : tokens[j++];
        while (i < p->n_last)
            plan->merged[k++] = p->last[i++];
        while (j < n)
            plan->merged[k++] = tokens[j++];
    } else {
        memcpy(plan->merged, tokens, n * sizeof(*tokens));
    }
    plan->n_merged = total;
    plan->rewrites_first = merge;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    plan->le = (const uint8_t *)plan->merged; /* already the stored form: no copy */
#else
    plan->le_buf = xgrow(plan->le_buf, &plan->cap_le, total * 8, 1);
    for (size_t i = 0; i < total; i++)
        le64_put(plan->le_buf + 8 * i, plan->merged[i]);
    plan->le = plan->le_buf;
#endif

    uint64_t id = merge ? p->last_id : p->last_id + 1;
    if (total < 2 * min) {
        plan_add_page(plan, id, 0, total);
        return;
    }
    /* The newest page keeps the N largest tokens (by value, so it says nothing of when
     * they came); the rest is cut into near-equal pages of at most the maximum, each of
     * which then holds at least STORE_PAGE_MAX_TOKENS / 2 >= N tokens. */
    size_t rest = total - min;
    size_t k = (rest + STORE_PAGE_MAX_TOKENS - 1) / STORE_PAGE_MAX_TOKENS;
    size_t base = rest / k, extra = rest % k, off = 0;
    for (size_t i = 0; i < k; i++) {
        size_t len = base + (i < extra);
        plan_add_page(plan, id++, off, len);
        off += len;
    }
    plan_add_page(plan, id, off, min);
}

void store_pages_commit(struct store_pages *p, const struct store_page_plan *plan)
{
    if (plan->n_pages == 0)
        return;
    const struct store_page_out *last = &plan->pages[plan->n_pages - 1];
    bool rewrote = plan->pages[0].id == p->last_id;
    p->total += plan->n_merged - (rewrote ? p->n_last : 0);
    pages_set_last(p, last->id, plan->merged + last->off, last->n);
}
