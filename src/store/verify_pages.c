/* tallyctl verify, (c) token pages: each page against the digest the latest checkpoint
 * listing it records, every listed page present and every page listed, tokens ascending
 * within a page and distinct across all of them (a k-way merge, no second copy). The rest
 * of the run, and the state it shares, are verify.c's and verify_internal.h's. */
#include "store/verify_internal.h"

#include "store/chain.h"
#include "store/cursor.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define VF_PAGE_FETCH 16 /* token pages per FETCH (up to 512 KiB each) */

static int cmp_listing(const void *a, const void *b)
{
    const struct vf_listing *x = a, *y = b;
    if (x->page != y->page)
        return x->page < y->page ? -1 : 1;
    return x->checkpoint < y->checkpoint ? -1 : x->checkpoint > y->checkpoint;
}

struct vf_run {
    size_t pos, end; /* into the token array */
    uint64_t page;
};

/* Min-heap of runs by their current token: a k-way merge over the pages' sorted runs finds
 * a token in two pages in O(n log k), without a second copy of the tokens. */
static void vf_sift_down(struct vf_run *runs, size_t *heap, size_t n, size_t i, const uint64_t *tok)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && tok[runs[heap[l]].pos] < tok[runs[heap[m]].pos])
            m = l;
        if (l + 1 < n && tok[runs[heap[l + 1]].pos] < tok[runs[heap[m]].pos])
            m = l + 1;
        if (m == i)
            return;
        size_t t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
}

static int vf_distinct(struct vf *v, const uint64_t *tok, size_t n_tok, struct vf_run *runs,
                       size_t n_runs)
{
    size_t *heap = xcalloc(n_runs, sizeof(*heap));
    size_t n = 0;
    for (size_t i = 0; i < n_runs; i++)
        if (runs[i].pos < runs[i].end)
            heap[n++] = i;
    for (size_t i = n / 2; i-- > 0;)
        vf_sift_down(runs, heap, n, i, tok);
    int rc = VF_OK;
    bool have_last = false;
    uint64_t last = 0, last_page = 0, done = 0;
    while (n > 0) {
        struct vf_run *r = &runs[heap[0]];
        uint64_t t = tok[r->pos];
        if (have_last && t == last) {
            rc = vf_bad(
                v, "token %016" PRIx64 " is in token page %" PRIu64 " and in token page %" PRIu64,
                t, last_page < r->page ? last_page : r->page,
                last_page < r->page ? r->page : last_page);
            break;
        }
        have_last = true;
        last = t;
        last_page = r->page;
        if (++r->pos == r->end)
            heap[0] = heap[--n];
        vf_sift_down(runs, heap, n, 0, tok);
        if ((++done & 0xfffff) == 0)
            vf_tick(v, "token %" PRIu64 " of %zu is distinct", done, n_tok);
    }
    free(heap);
    return rc;
}

int vf_pages(struct vf *v)
{
    struct store *s = v->s;
    char h1[2 * STORE_HASH_BYTES + 1], h2[2 * STORE_HASH_BYTES + 1];
    /* The digest that counts is the one in the latest checkpoint listing the page. */
    if (v->n_listings > 1)
        qsort(v->listings, v->n_listings, sizeof(*v->listings), cmp_listing);
    size_t n_exp = 0;
    for (size_t i = 0; i < v->n_listings; i++) {
        if (n_exp > 0 && v->listings[n_exp - 1].page == v->listings[i].page)
            n_exp--;
        v->listings[n_exp++] = v->listings[i];
    }

    size_t cap = v->accepted_total ? (size_t)v->accepted_total : 1, n_tok = 0;
    uint64_t *tok = xcalloc(cap, sizeof(*tok));
    struct vf_run *runs = xcalloc(n_exp, sizeof(*runs));
    size_t n_runs = 0, e = 0;
    struct store_cursor cur;
    int rc = VF_ERR;
    if (store_cursor_open(s, &cur, "verify_pages",
                          "SELECT id, salt, tokens FROM token_pages ORDER BY id", VF_PAGE_FETCH,
                          "reading token pages") < 0)
        goto done;
    int got;
    while ((got = store_cursor_next(s, &cur, "reading token pages")) == 1) {
        int64_t id = 0;
        size_t salt_len, len;
        if (store_val_int8(cur.res, cur.row, 0, &id) < 0) {
            rc = vf_bad(v, "a token page has no id");
            goto done;
        }
        if (e < n_exp && (int64_t)v->listings[e].page < id) {
            rc = vf_bad(v,
                        "checkpoint %" PRIu64 " lists token page %" PRIu64
                        ", which is not in token_pages",
                        v->listings[e].checkpoint, v->listings[e].page);
            goto done;
        }
        if (e == n_exp || (int64_t)v->listings[e].page > id) {
            rc = vf_bad(v, "token page %" PRId64 " is listed by no checkpoint", id);
            goto done;
        }
        const struct vf_listing *l = &v->listings[e++];
        const uint8_t *salt = store_val_bytes(cur.res, cur.row, 1, &salt_len);
        const uint8_t *le = store_val_bytes(cur.res, cur.row, 2, &len);
        if (!salt || salt_len != STORE_SALT_BYTES || !le || len % 8 != 0) {
            rc = vf_bad(v,
                        "token page %" PRId64 " has a salt of %zu bytes (not 16) or %zu token"
                        " bytes (not a multiple of 8)",
                        id, salt_len, len);
            goto done;
        }
        uint8_t d[STORE_HASH_BYTES];
        store_page_digest(salt, le, len / 8, d);
        if (memcmp(d, l->digest, STORE_HASH_BYTES) != 0) {
            rc = vf_bad(v,
                        "token page %" PRId64 ": its digest is %s, checkpoint %" PRIu64 " lists %s",
                        id, vf_hex(d, h1), l->checkpoint, vf_hex(l->digest, h2));
            goto done;
        }
        size_t k = len / 8;
        if (n_tok + k > cap) {
            while (cap < n_tok + k)
                cap *= 2;
            tok = xreallocarray(tok, cap, sizeof(*tok));
        }
        for (size_t i = 0; i < k; i++) {
            tok[n_tok + i] = le64_get(le + 8 * i);
            if (i > 0 && tok[n_tok + i] <= tok[n_tok + i - 1]) {
                rc = vf_bad(v,
                            "token page %" PRId64 ": token %zu (%016" PRIx64
                            ") does not follow token %zu (%016" PRIx64 ") in ascending order",
                            id, i, tok[n_tok + i], i - 1, tok[n_tok + i - 1]);
                goto done;
            }
        }
        runs[n_runs++] = (struct vf_run){n_tok, n_tok + k, (uint64_t)id};
        n_tok += k;
        v->out->pages++;
        vf_tick(v, "token page %" PRId64 " of %zu agrees (%zu tokens so far)", id, n_exp, n_tok);
    }
    if (got < 0)
        goto done;
    if (e < n_exp) {
        rc = vf_bad(
            v, "checkpoint %" PRIu64 " lists token page %" PRIu64 ", which is not in token_pages",
            v->listings[e].checkpoint, v->listings[e].page);
        goto done;
    }
    v->out->tokens = n_tok;
    if (n_tok != v->accepted_total) {
        rc = vf_bad(v, "the token pages hold %zu tokens, the batches accepted %" PRIu64 " votes",
                    n_tok, v->accepted_total);
        goto done;
    }
    rc = vf_distinct(v, tok, n_tok, runs, n_runs);
done:
    store_cursor_close(s, &cur);
    free(runs);
    free(tok);
    return rc;
}
