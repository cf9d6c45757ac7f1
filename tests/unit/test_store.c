/* store: the canonical encodings of the record (store/chain.h) — the checkpoint hash and
 * the token-page digest — against vectors computed independently, and the properties
 * tallyctl verify relies on: order independence, every field counted, NULL = zeros. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/chain.h"
#include "store/internal.h" /* the page plan: a white-box test of its sort */

static void hex(const uint8_t *d, char out[2 * STORE_HASH_BYTES + 1])
{
    for (size_t i = 0; i < STORE_HASH_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The example the known answers below were computed for. */
struct example {
    uint8_t prev[STORE_HASH_BYTES];
    uint8_t digest_a[STORE_HASH_BYTES], digest_c[STORE_HASH_BYTES];
    struct store_chain_batch batches[3];
    uint32_t project_ids[3];
    uint64_t votes[3];
    struct store_chain_page pages[2];
    struct store_chain_input in;
};

static void example_init(struct example *e)
{
    memset(e, 0, sizeof(*e));
    for (int i = 0; i < STORE_HASH_BYTES; i++) {
        e->prev[i] = (uint8_t)i;
        e->digest_a[i] = 0xaa;
        e->digest_c[i] = (uint8_t)(100 + i);
    }
    e->batches[0] = (struct store_chain_batch){"c1", 3, e->digest_a, 10, 8, 1, 1};
    e->batches[1] = (struct store_chain_batch){"c0", 9, NULL, 1, 1, 0, 0};
    e->batches[2] = (struct store_chain_batch){"c0", 2, e->digest_c, 5, 5, 0, 0};
    const uint32_t ids[3] = {5, 2, 4000000000u};
    const uint64_t votes[3] = {300, 7, (uint64_t)1 << 40};
    memcpy(e->project_ids, ids, sizeof(ids));
    memcpy(e->votes, votes, sizeof(votes));
    e->pages[0].id = 4;
    memset(e->pages[0].digest, 0x11, STORE_HASH_BYTES);
    e->pages[1].id = 1;
    memset(e->pages[1].digest, 0x22, STORE_HASH_BYTES);
    e->in = (struct store_chain_input){
        .prev_hash = e->prev,
        .id = 7,
        .epoch = 2,
        .batches = e->batches,
        .n_batches = 3,
        .project_ids = e->project_ids,
        .votes = e->votes,
        .n_deltas = 3,
        .pages = e->pages,
        .n_pages = 2,
    };
}

static void hash_hex(const struct store_chain_input *in, char out[2 * STORE_HASH_BYTES + 1])
{
    uint8_t h[STORE_HASH_BYTES];
    store_chain_hash(in, h);
    hex(h, out);
}

/* Computed with Debian's /usr/bin/python3 (3.11), hashlib only, from chain.h's text:
 *
 *   import hashlib, struct
 *   le32 = lambda v: struct.pack('<I', v); le64 = lambda v: struct.pack('<Q', v)
 *   prev = bytes(range(32))
 *   batches = [(b'c1', 3, bytes([0xaa]) * 32, 10, 8, 1, 1),
 *              (b'c0', 9, bytes(32), 1, 1, 0, 0),  # digest NULL: zeros
 *              (b'c0', 2, bytes(range(100, 132)), 5, 5, 0, 0)]
 *   deltas = [(5, 300), (2, 7), (4000000000, 1 << 40)]
 *   pages = [(4, bytes([0x11]) * 32), (1, bytes([0x22]) * 32)]
 *   m = b'tallyd-checkpoint-v1' + prev + le64(7) + le64(2) + le64(len(batches))
 *   for c, seq, d, v, a, du, r in sorted(batches, key=lambda b: (b[0], b[1])):
 *       m += le32(len(c)) + c + le64(seq) + d + le32(v) + le32(a) + le32(du) + le32(r)
 *   m += le64(len(deltas))
 *   for p, v in sorted(deltas): m += le32(p) + le64(v)
 *   m += le64(len(pages))
 *   for i, d in sorted(pages): m += le64(i) + d
 *   print(hashlib.blake2b(m, digest_size=32).hexdigest())
 *   # the first checkpoint of an empty record: no prev (zeros), id 1, epoch 0, nothing
 *   m0 = b'tallyd-checkpoint-v1' + bytes(32) + le64(1) + le64(0) + le64(0) * 3
 *   print(hashlib.blake2b(m0, digest_size=32).hexdigest())
 */
static void test_checkpoint_known_answer(void **state)
{
    (void)state;
    struct example e;
    example_init(&e);
    char h[2 * STORE_HASH_BYTES + 1];
    hash_hex(&e.in, h);
    assert_string_equal(h, "b8bb6bf71ab21a0de4cebfe916537686f5a60dc811d4bd8e5c00a7549610a654");

    struct store_chain_input empty = {.prev_hash = NULL, .id = 1};
    hash_hex(&empty, h);
    assert_string_equal(h, "eef933edadebbfe283c903e7e2b00c838fc78df6f2ce88f886b54b21a24f29a1");
}

/* Same interpreter:
 *   salt = bytes(range(16))
 *   toks = sorted([1, 0x0102030405060708, (1 << 64) - 1])
 *   print(hashlib.blake2b(b'tallyd-page-v1' + salt + b''.join(le64(t) for t in toks),
 *                         digest_size=32).hexdigest())
 *   print(hashlib.blake2b(b'tallyd-page-v1' + salt, digest_size=32).hexdigest())
 */
static void test_page_known_answer(void **state)
{
    (void)state;
    uint8_t salt[STORE_SALT_BYTES];
    for (int i = 0; i < STORE_SALT_BYTES; i++)
        salt[i] = (uint8_t)i;
    const uint64_t toks[3] = {1, 0x0102030405060708ull, UINT64_MAX};
    uint8_t le[24];
    for (int t = 0; t < 3; t++)
        for (int b = 0; b < 8; b++)
            le[8 * t + b] = (uint8_t)(toks[t] >> (8 * b));
    uint8_t d[STORE_HASH_BYTES];
    char h[2 * STORE_HASH_BYTES + 1];
    store_page_digest(salt, le, 3, d);
    hex(d, h);
    assert_string_equal(h, "2c8b75487b1de24e3bf39e7a36b048ed0c9c08bc76f6cdebd35d457eae267502");
    store_page_digest(salt, NULL, 0, d);
    hex(d, h);
    assert_string_equal(h, "19d1223eea82c8bebb581174f9c857bc3a120ac64a378c5597dde3770c679200");
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define BIG_BATCHES 40
#define BIG_DELTAS 300
#define BIG_PAGES 25

struct big {
    char ids[BIG_BATCHES][16];
    uint8_t digests[BIG_BATCHES][STORE_HASH_BYTES];
    struct store_chain_batch batches[BIG_BATCHES];
    uint32_t project_ids[BIG_DELTAS];
    uint64_t votes[BIG_DELTAS];
    struct store_chain_page pages[BIG_PAGES];
    struct store_chain_input in;
};

/* Batches of several collectors whose ids are prefixes of one another ("c1", "c10") and
 * share seqs, so that the sort key really has two parts. */
static void big_init(struct big *g)
{
    memset(g, 0, sizeof(*g));
    uint64_t r = 99;
    for (int i = 0; i < BIG_BATCHES; i++) {
        snprintf(g->ids[i], sizeof(g->ids[i]), "c%d", (int)(rng_next(&r) % 3) * 9 + 1);
        for (int k = 0; k < STORE_HASH_BYTES; k++)
            g->digests[i][k] = (uint8_t)rng_next(&r);
        g->batches[i] = (struct store_chain_batch){g->ids[i],
                                                   (uint64_t)i / 3 + 1,
                                                   i % 5 ? g->digests[i] : NULL,
                                                   (uint32_t)rng_next(&r),
                                                   (uint32_t)rng_next(&r),
                                                   (uint32_t)rng_next(&r),
                                                   (uint32_t)rng_next(&r)};
    }
    for (int i = 0; i < BIG_DELTAS; i++) {
        g->project_ids[i] = (uint32_t)(i * 7919u % 100003u);
        g->votes[i] = rng_next(&r) >> 20;
    }
    for (int i = 0; i < BIG_PAGES; i++) {
        g->pages[i].id = (uint64_t)(i * 13 % BIG_PAGES) + 1;
        for (int k = 0; k < STORE_HASH_BYTES; k++)
            g->pages[i].digest[k] = (uint8_t)rng_next(&r);
    }
    g->in =
        (struct store_chain_input){NULL,           12,       3,          g->batches, BIG_BATCHES,
                                   g->project_ids, g->votes, BIG_DELTAS, g->pages,   BIG_PAGES};
}

/* Fisher-Yates on the three lists (deltas' two arrays together). */
static void big_shuffle(struct big *g, uint64_t seed)
{
    uint64_t r = seed;
    for (size_t i = BIG_BATCHES - 1; i > 0; i--) {
        size_t j = rng_next(&r) % (i + 1);
        struct store_chain_batch t = g->batches[i];
        g->batches[i] = g->batches[j];
        g->batches[j] = t;
    }
    for (size_t i = BIG_DELTAS - 1; i > 0; i--) {
        size_t j = rng_next(&r) % (i + 1);
        uint32_t p = g->project_ids[i];
        g->project_ids[i] = g->project_ids[j];
        g->project_ids[j] = p;
        uint64_t v = g->votes[i];
        g->votes[i] = g->votes[j];
        g->votes[j] = v;
    }
    for (size_t i = BIG_PAGES - 1; i > 0; i--) {
        size_t j = rng_next(&r) % (i + 1);
        struct store_chain_page t = g->pages[i];
        g->pages[i] = g->pages[j];
        g->pages[j] = t;
    }
}

static void test_order_independence(void **state)
{
    (void)state;
    struct example e;
    example_init(&e);
    char base[2 * STORE_HASH_BYTES + 1], h[2 * STORE_HASH_BYTES + 1];
    hash_hex(&e.in, base);
    /* Every order of the three batches, with the deltas and pages reversed. */
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                    {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int p = 0; p < 6; p++) {
        struct example f;
        example_init(&f);
        for (int i = 0; i < 3; i++) {
            f.batches[i] = e.batches[perms[p][i]];
            f.project_ids[i] = e.project_ids[perms[p][i]];
            f.votes[i] = e.votes[perms[p][i]];
        }
        f.pages[0] = e.pages[p % 2];
        f.pages[1] = e.pages[1 - p % 2];
        hash_hex(&f.in, h);
        assert_string_equal(h, base);
    }

    struct big *g = malloc(sizeof(*g));
    struct big *copy = malloc(sizeof(*copy));
    assert_non_null(g);
    assert_non_null(copy);
    big_init(g);
    hash_hex(&g->in, base);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        big_shuffle(g, seed);
        memcpy(copy, g, sizeof(*g));
        hash_hex(&g->in, h);
        assert_string_equal(h, base);
        /* Sorting happens on copies: the caller's arrays are as they were. */
        assert_memory_equal(g->batches, copy->batches, sizeof(g->batches));
        assert_memory_equal(g->project_ids, copy->project_ids, sizeof(g->project_ids));
        assert_memory_equal(g->votes, copy->votes, sizeof(g->votes));
        assert_memory_equal(g->pages, copy->pages, sizeof(g->pages));
    }
    free(copy);
    free(g);
}

static void test_null_is_zeros(void **state)
{
    (void)state;
    static const uint8_t zeros[STORE_HASH_BYTES];
    struct example e;
    example_init(&e);
    uint8_t a[STORE_HASH_BYTES], b[STORE_HASH_BYTES];

    /* A batch recorded before digests existed hashes as 32 zero bytes. */
    assert_null(e.batches[1].digest);
    store_chain_hash(&e.in, a);
    e.batches[1].digest = zeros;
    store_chain_hash(&e.in, b);
    assert_memory_equal(a, b, STORE_HASH_BYTES);

    /* The first checkpoint's prev_hash: NULL and zeros are the same. */
    e.in.prev_hash = NULL;
    store_chain_hash(&e.in, a);
    e.in.prev_hash = zeros;
    store_chain_hash(&e.in, b);
    assert_memory_equal(a, b, STORE_HASH_BYTES);
}

/* Each change of one field (or one element less) gives a hash unlike the original and
 * unlike every other change. */
static void test_every_field_counts(void **state)
{
    (void)state;
    enum { N_CHANGES = 25 };
    uint8_t seen[N_CHANGES + 1][STORE_HASH_BYTES];
    struct example base;
    example_init(&base);
    store_chain_hash(&base.in, seen[0]);
    uint8_t other[STORE_HASH_BYTES];
    memset(other, 0x5c, sizeof(other));

    for (int change = 1; change <= N_CHANGES; change++) {
        struct example e;
        example_init(&e);
        struct store_chain_batch *b = &e.batches[0];
        switch (change) {
        case 1:
            e.prev[31] ^= 1;
            break;
        case 2:
            e.in.prev_hash = NULL;
            break;
        case 3:
            e.in.id++;
            break;
        case 4:
            e.in.epoch++;
            break;
        case 5:
            b->collector_id = "c2";
            break;
        case 6:
            b->collector_id = "c1x";
            break;
        case 7:
            b->seq++;
            break;
        case 8:
            b->digest = other;
            break;
        case 9:
            e.batches[1].digest = other;
            break; /* NULL becomes a digest */
        case 10:
            b->digest = NULL;
            break; /* a digest becomes NULL */
        case 11:
            b->votes++;
            break;
        case 12:
            b->accepted++;
            break;
        case 13:
            b->duplicate++;
            break;
        case 14:
            b->rejected_unknown++;
            break;
        case 15:
            e.in.n_batches--;
            break;
        case 16:
            e.project_ids[0]++;
            break;
        case 17:
            e.votes[0]++;
            break;
        case 18: /* one vote moved between projects: the total stays */
            e.votes[0]++;
            e.votes[1]--;
            break;
        case 19:
            e.in.n_deltas--;
            break;
        case 20:
            e.pages[0].id++;
            break;
        case 21:
            e.pages[1].digest[0] ^= 0x80;
            break;
        case 22:
            e.in.n_pages--;
            break;
        case 23: /* a seq moved from one batch of c0 to the other */
            e.batches[1].seq = 2;
            e.batches[2].seq = 9;
            break;
        case 24: /* two pages' digests exchanged */
            memset(e.pages[0].digest, 0x22, STORE_HASH_BYTES);
            memset(e.pages[1].digest, 0x11, STORE_HASH_BYTES);
            break;
        case 25: /* deltas of two projects exchanged */
            e.votes[0] = 7;
            e.votes[1] = 300;
            break;
        }
        store_chain_hash(&e.in, seen[change]);
        for (int k = 0; k < change; k++)
            if (memcmp(seen[change], seen[k], STORE_HASH_BYTES) == 0)
                fail_msg("change %d hashes like %s %d", change, k ? "change" : "the original", k);
    }
}

static void test_page_digest_fields(void **state)
{
    (void)state;
    uint8_t salt[STORE_SALT_BYTES] = {0};
    uint8_t le[8 * 200];
    for (size_t i = 0; i < sizeof(le); i++)
        le[i] = (uint8_t)(i * 31 + 7);
    uint8_t base[STORE_HASH_BYTES], d[STORE_HASH_BYTES];
    store_page_digest(salt, le, 200, base);

    salt[15] = 1; /* a fresh salt: another digest for the same tokens */
    store_page_digest(salt, le, 200, d);
    assert_memory_not_equal(base, d, STORE_HASH_BYTES);
    salt[15] = 0;

    le[8 * 123 + 4] ^= 1;
    store_page_digest(salt, le, 200, d);
    assert_memory_not_equal(base, d, STORE_HASH_BYTES);
    le[8 * 123 + 4] ^= 1;

    store_page_digest(salt, le, 199, d);
    assert_memory_not_equal(base, d, STORE_HASH_BYTES);

    store_page_digest(salt, le, 200, d);
    assert_memory_equal(base, d, STORE_HASH_BYTES);
}

/* ---- the page plan's sort ------------------------------------------------------------ */

static int cmp_tok(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The plan's tokens come out sorted, whatever their shape: random, all in one top-bits
 * bucket (a collector choosing tokens), repeated values, small and large checkpoints. */
static void test_pages_plan_sorts(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 31, 33, 4095, 4096, 5000, 300000};
    for (int shape = 0; shape < 3; shape++) {
        for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
            size_t n = sizes[z];
            uint64_t *tok = malloc(n * sizeof(*tok)), *want = malloc(n * sizeof(*tok));
            assert_non_null(tok);
            assert_non_null(want);
            uint64_t x = 0x12345 + n + (uint64_t)shape;
            for (size_t i = 0; i < n; i++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                uint64_t v = x ^ (x >> 29);
                if (shape == 1)
                    v = (0x7ffULL << 53) | (v >> 11); /* one MSD bucket */
                if (shape == 2)
                    v %= 97; /* many equal values */
                tok[i] = want[i] = v;
            }
            qsort(want, n, sizeof(*want), cmp_tok);
            struct store_pages pg;
            store_pages_init(&pg, 1000);
            struct store_page_plan plan;
            memset(&plan, 0, sizeof(plan));
            store_pages_plan(&pg, tok, n, &plan);
            assert_int_equal(plan.n_merged, n);
            assert_memory_equal(plan.merged, want, n * sizeof(*want));
            free(plan.merged);
            free(plan.le_buf);
            free(plan.scratch);
            free(plan.pages);
            store_pages_cleanup(&pg);
            free(tok);
            free(want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_known_answer), cmocka_unit_test(test_page_known_answer),
        cmocka_unit_test(test_pages_plan_sorts),        cmocka_unit_test(test_order_independence),
        cmocka_unit_test(test_null_is_zeros),           cmocka_unit_test(test_every_field_counts),
        cmocka_unit_test(test_page_digest_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
