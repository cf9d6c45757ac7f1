/* store: the canonical encodings of the record (store/chain.h) — the checkpoint hash (v1,
 * v2 and v3 with its Merkle root and body), the token-page and sheet digests, the per-batch
 * counts encoding (store/counts.h) — against vectors computed independently, and the
 * properties tallyctl verify relies on: order independence, every field counted, NULL =
 * zeros. With TALLY_TEST_PG, against PostgreSQL: collectors with pins and circuits, the
 * tally_writer and tally_auditor roles, a schema behind this build, and store_verify over a
 * format 3 record built by SQL from these encodings, intact and tampered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/bin.h"
#include "store/chain.h"
#include "store/counts.h"
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
    e->batches[0] = (struct store_chain_batch){"c1", 3, e->digest_a, 10, 8, 1, 1, 0};
    e->batches[1] = (struct store_chain_batch){"c0", 9, NULL, 1, 1, 0, 0, 0};
    e->batches[2] = (struct store_chain_batch){"c0", 2, e->digest_c, 5, 5, 0, 0, 0};
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

/* The same example with 2 of c1/3's votes rejected as outside its circuits: the v2 tag, and
 * the field after rejected_unknown in every batch (0 for the other two). Same interpreter:
 *
 *   batches[0] += (2,); batches[1] += (0,); batches[2] += (0,)
 *   m = b'tallyd-checkpoint-v2' + prev + le64(7) + le64(2) + le64(len(batches))
 *   for c, seq, d, v, a, du, r, na in sorted(batches, key=lambda b: (b[0], b[1])):
 *       m += le32(len(c)) + c + le64(seq) + d + le32(v) + le32(a) + le32(du) + le32(r)
 *       m += le32(na)
 *   ... deltas and pages as above
 */
static void test_checkpoint_v2_known_answer(void **state)
{
    (void)state;
    struct example e;
    example_init(&e);
    e.batches[0].rejected_not_allowed = 2;
    char h[2 * STORE_HASH_BYTES + 1];
    hash_hex(&e.in, h);
    assert_string_equal(h, "2fee745fdb721d0b8e0f0575d026e3ba3de6c97f48a7e92e4122d8e8b0137834");

    /* Every batch at 0 again: v1, byte for byte the record written before the field. */
    e.batches[0].rejected_not_allowed = 0;
    hash_hex(&e.in, h);
    assert_string_equal(h, "b8bb6bf71ab21a0de4cebfe916537686f5a60dc811d4bd8e5c00a7549610a654");

    /* The field of any batch switches the tag, not only the first one's. */
    e.batches[2].rejected_not_allowed = 1;
    hash_hex(&e.in, h);
    assert_string_not_equal(h, "b8bb6bf71ab21a0de4cebfe916537686f5a60dc811d4bd8e5c00a7549610a654");
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
                                                   (uint32_t)rng_next(&r),
                                                   i % 4 ? 0 : (uint32_t)rng_next(&r)};
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
    enum { N_CHANGES = 27 };
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
        case 26: /* a rejection's reason: unknown project becomes not allowed */
            b->rejected_unknown--;
            b->rejected_not_allowed++;
            break;
        case 27:
            e.batches[1].rejected_not_allowed++;
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

/* ---- chain format v3 -------------------------------------------------------------------
 * The example below and its known answers were computed with Debian's /usr/bin/python3,
 * hashlib only, from docs/record.md's text (RFC 6962 tree, body layout, LEB128 counts). */

struct example3 {
    uint8_t da[32], db[32], dc[32], prev[32];
    uint8_t counts1[16];
    size_t counts1_len;
    uint32_t reasons1[9], reasons2[9];
    struct store_chain_table t1[2], td[2];
    struct store_chain_batch3 batches[3];
    uint32_t ids[4];
    int64_t votes[4];
    struct store_chain_page pages[2];
    struct store_chain_sheet sheets[2];
    uint32_t c_ids[2];
    int64_t c_deltas[2];
    struct store_chain_correction corr[1];
    struct store_chain_input3 in;
};

static void example3_init(struct example3 *e)
{
    memset(e, 0, sizeof(*e));
    memset(e->da, 0xa1, 32);
    memset(e->db, 0xb2, 32);
    memset(e->dc, 0xc3, 32);
    memset(e->prev, 0x11, 32);
    static const uint8_t counts1[] = {0x02, 0x05, 0x05, 0x03, 0xa5, 0x02, 0x01};
    memcpy(e->counts1, counts1, sizeof(counts1));
    e->counts1_len = sizeof(counts1);
    e->reasons1[0] = 1;
    e->reasons1[1] = 1;
    e->reasons2[7] = 1; /* superseded */
    e->t1[0] = (struct store_chain_table){"T2", 4};
    e->t1[1] = (struct store_chain_table){"T1", 2};
    e->td[0] = (struct store_chain_table){"T2", 4};
    e->td[1] = (struct store_chain_table){"T1", 2};
    e->batches[0] = (struct store_chain_batch3){.collector_id = "c1",
                                                .seq = 4,
                                                .digest = e->da,
                                                .kind = 0,
                                                .votes = 12,
                                                .accepted = 9,
                                                .duplicate = 1,
                                                .reasons = e->reasons1,
                                                .n_reasons = 9,
                                                .counts = e->counts1,
                                                .counts_len = e->counts1_len,
                                                .has_counts = true,
                                                .tables = e->t1,
                                                .n_tables = 2};
    e->batches[1] = (struct store_chain_batch3){.collector_id = "c0",
                                                .seq = 2,
                                                .digest = e->db,
                                                .kind = 1,
                                                .sheets = 3,
                                                .sheets_accepted = 2,
                                                .reasons = e->reasons2,
                                                .n_reasons = 9};
    /* An empty ballot batch of a converted kind: no digest, no reasons, empty counts. */
    e->batches[2] = (struct store_chain_batch3){
        .collector_id = "c0", .seq = 1, .counts = (const uint8_t *)"", .has_counts = true};
    static const uint32_t ids[4] = {300, 2, 7, 9};
    static const int64_t votes[4] = {1, 5, -2, 40};
    memcpy(e->ids, ids, sizeof(ids));
    memcpy(e->votes, votes, sizeof(votes));
    e->pages[0].id = 5;
    memset(e->pages[0].digest, 5, 32);
    e->pages[1].id = 3;
    memset(e->pages[1].digest, 3, 32);
    e->sheets[0] = (struct store_chain_sheet){"T9", 2, "c0", 2, e->dc};
    e->sheets[1] = (struct store_chain_sheet){"T8", 1, "c0", 2, e->da};
    e->c_ids[0] = 9;
    e->c_ids[1] = 7;
    e->c_deltas[0] = 40;
    e->c_deltas[1] = -5;
    e->corr[0] = (struct store_chain_correction){.id = 11,
                                                 .kind = 0,
                                                 .actor = "c0",
                                                 .reason = "sheet version 2 replaces version 1",
                                                 .at_us = 1764600000123456,
                                                 .table_id = "T9",
                                                 .collector_id = "c0",
                                                 .seq = 2,
                                                 .from_version = 1,
                                                 .to_version = 2,
                                                 .project_ids = e->c_ids,
                                                 .deltas = e->c_deltas,
                                                 .n_deltas = 2,
                                                 .blank_delta = -1,
                                                 .null_delta = 2,
                                                 .ballots_delta = 36};
    e->in = (struct store_chain_input3){.prev_hash = e->prev,
                                        .id = 42,
                                        .epoch = 6,
                                        .batches = e->batches,
                                        .n_batches = 3,
                                        .project_ids = e->ids,
                                        .votes = e->votes,
                                        .n_deltas = 4,
                                        .pages = e->pages,
                                        .n_pages = 2,
                                        .table_deltas = e->td,
                                        .n_table_deltas = 2,
                                        .sheets = e->sheets,
                                        .n_sheets = 2,
                                        .corrections = e->corr,
                                        .n_corrections = 1};
}

static void hash3_hex(const struct store_chain_input3 *in, char root[65], char body[65],
                      char hash[65])
{
    uint8_t r[32], b[32], h[32];
    store_chain_hash_v3(in, r, b, h);
    hex(r, root);
    hex(b, body);
    hex(h, hash);
}

static void test_v3_known_answer(void **state)
{
    (void)state;
    struct example3 e;
    example3_init(&e);
    char root[65], body[65], hash[65];
    hash3_hex(&e.in, root, body, hash);
    assert_string_equal(root, "26556e7448cb903c907f00b76e165b99c3ecf21ecb3ea1724d876209ce83a36f");
    assert_string_equal(body, "19506e40d18893bfb872d956ae6658203ac14f00c660fe7c771b11e2df47f5e3");
    assert_string_equal(hash, "504f18f264fbdf09b5b3f1227c57e25e260e9a42b6f03152604c461fb4cdd625");
    /* The counts bytes of batch 0 are the encoder's for its pairs, in any order. */
    static const uint32_t pairs[] = {7, 3, 300, 1, 2, 5};
    struct store_bin b;
    store_bin_init(&b);
    store_counts_encode(pairs, 3, &b);
    assert_int_equal(b.len, e.counts1_len);
    assert_memory_equal(b.data, e.counts1, b.len);
    store_bin_cleanup(&b);
    /* The canonical sheet digest (zero rows dropped, rows sorted: the caller's job here). */
    static const uint32_t rows[] = {2, 5, 9, 40};
    uint8_t d[32];
    char dh[65];
    store_sheet_digest("T9", 2, 3, 1, rows, 2, d);
    hex(d, dh);
    assert_string_equal(dh, "550efd210cebd4408e26cb64e7d70f07efcb30f11d4365c3f2e08564551dd55a");
}

static void test_v3_order_independence(void **state)
{
    (void)state;
    struct example3 e, f;
    example3_init(&e);
    char r0[65], b0[65], h0[65], r1[65], b1[65], h1[65];
    hash3_hex(&e.in, r0, b0, h0);
    example3_init(&f);
    /* Every list reversed. */
    struct store_chain_batch3 bt = f.batches[0];
    f.batches[0] = f.batches[2];
    f.batches[2] = bt;
    struct store_chain_table tt = f.t1[0];
    f.t1[0] = f.t1[1];
    f.t1[1] = tt;
    tt = f.td[0];
    f.td[0] = f.td[1];
    f.td[1] = tt;
    for (int i = 0; i < 2; i++) {
        uint32_t id = f.ids[i];
        int64_t vv = f.votes[i];
        f.ids[i] = f.ids[3 - i];
        f.votes[i] = f.votes[3 - i];
        f.ids[3 - i] = id;
        f.votes[3 - i] = vv;
    }
    struct store_chain_page pt = f.pages[0];
    f.pages[0] = f.pages[1];
    f.pages[1] = pt;
    struct store_chain_sheet st = f.sheets[0];
    f.sheets[0] = f.sheets[1];
    f.sheets[1] = st;
    uint32_t ci = f.c_ids[0];
    int64_t cd = f.c_deltas[0];
    f.c_ids[0] = f.c_ids[1];
    f.c_deltas[0] = f.c_deltas[1];
    f.c_ids[1] = ci;
    f.c_deltas[1] = cd;
    hash3_hex(&f.in, r1, b1, h1);
    assert_string_equal(r0, r1);
    assert_string_equal(b0, b1);
    assert_string_equal(h0, h1);
    /* ... and the inputs were not touched. */
    struct example3 g;
    example3_init(&g);
    hash3_hex(&g.in, r1, b1, h1);
    assert_memory_equal(g.ids, e.ids, sizeof(g.ids));
    assert_string_equal(g.batches[0].collector_id, "c1");
    /* The Merkle root covers the batches' (collector, seq, digest) and nothing else. */
    e.batches[0].votes++;
    hash3_hex(&e.in, r1, b1, h1);
    assert_string_equal(r0, r1);
    assert_string_not_equal(b0, b1);
}

/* Every field of the hashed layout changes the hash (and the body or the root). */
static void test_v3_every_field_counts(void **state)
{
    (void)state;
    enum { CHANGES = 44 };
    char seen[CHANGES + 1][65], root[65], body[65];
    struct example3 e;
    example3_init(&e);
    hash3_hex(&e.in, root, body, seen[0]);
    uint8_t other[32];
    memset(other, 0x77, 32);
    uint8_t other_counts[] = {0x02, 0x05, 0x05, 0x03, 0xa5, 0x02, 0x02};
    uint32_t more_reasons[10] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int change = 1; change <= CHANGES; change++) {
        example3_init(&e);
        struct store_chain_batch3 *b = &e.batches[0];
        struct store_chain_correction *c = &e.corr[0];
        switch (change) {
        case 1:
            e.in.prev_hash = NULL;
            break;
        case 2:
            e.in.id++;
            break;
        case 3:
            e.in.epoch++;
            break;
        case 4:
            b->collector_id = "c2";
            break;
        case 5:
            b->seq++;
            break;
        case 6:
            b->digest = other;
            break;
        case 7:
            b->kind = 1;
            break;
        case 8:
            b->votes++;
            break;
        case 9:
            b->accepted++;
            break;
        case 10:
            b->duplicate++;
            break;
        case 11:
            b->sheets++;
            break;
        case 12:
            b->sheets_accepted++;
            break;
        case 13:
            b->sheets_duplicate++;
            break;
        case 14:
            e.reasons1[3] = 1;
            break;
        case 15:
            b->reasons = more_reasons, b->n_reasons = 10;
            break;
        case 16:
            b->counts = other_counts;
            break;
        case 17:
            b->has_counts = false;
            break;
        case 18:
            e.t1[0].ballots++;
            break;
        case 19:
            e.t1[0].id = "T3";
            break;
        case 20:
            b->n_tables = 1;
            break;
        case 21:
            e.in.n_batches = 2;
            break;
        case 22:
            e.votes[2] = -3;
            break;
        case 23:
            e.ids[0] = 301;
            break;
        case 24:
            e.in.n_deltas = 3;
            break;
        case 25:
            e.pages[0].digest[0] ^= 1;
            break;
        case 26:
            e.pages[0].id = 6;
            break;
        case 27:
            e.td[1].ballots = 3;
            break;
        case 28:
            e.in.n_table_deltas = 1;
            break;
        case 29:
            e.sheets[0].version = 3;
            break;
        case 30:
            e.sheets[0].collector_id = "c1";
            break;
        case 31:
            e.sheets[0].seq = 3;
            break;
        case 32:
            e.sheets[0].digest = other;
            break;
        case 33:
            e.in.n_sheets = 1;
            break;
        case 34:
            c->id = 12;
            break;
        case 35:
            c->kind = 1;
            break;
        case 36:
            c->actor = "c1";
            break;
        case 37:
            c->reason = "sheet version 2 replaces version 0";
            break;
        case 38:
            c->at_us++;
            break;
        case 39:
            c->from_version = 0;
            break;
        case 40:
            e.c_deltas[1] = -4;
            break;
        case 41:
            c->blank_delta = 0;
            break;
        case 42:
            c->null_delta = 0;
            break;
        case 43:
            c->ballots_delta = 0;
            break;
        case 44:
            e.in.n_corrections = 0;
            break;
        }
        hash3_hex(&e.in, root, body, seen[change]);
        for (int k = 0; k < change; k++)
            if (strcmp(seen[k], seen[change]) == 0)
                fail_msg("change %d hashes like change %d", change, k);
    }
    /* The rest of the correction and the second sheet's table: reached through the same
     * sink as the fields above; spot-checked. */
    example3_init(&e);
    e.corr[0].table_id = "T8";
    hash3_hex(&e.in, root, body, seen[1]);
    assert_string_not_equal(seen[0], seen[1]);
    example3_init(&e);
    e.corr[0].to_version = 3;
    hash3_hex(&e.in, root, body, seen[1]);
    assert_string_not_equal(seen[0], seen[1]);
    example3_init(&e);
    e.corr[0].collector_id = "";
    hash3_hex(&e.in, root, body, seen[1]);
    assert_string_not_equal(seen[0], seen[1]);
    example3_init(&e);
    e.corr[0].seq = 0;
    hash3_hex(&e.in, root, body, seen[1]);
    assert_string_not_equal(seen[0], seen[1]);
}

static int cmp_tok32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct decoded {
    uint32_t pairs[64];
    size_t n;
};

static int collect(void *arg, uint32_t id, uint32_t votes)
{
    struct decoded *d = arg;
    if (d->n == 32)
        return 7;
    d->pairs[2 * d->n] = id;
    d->pairs[2 * d->n + 1] = votes;
    d->n++;
    return 0;
}

static int count_only(void *arg, uint32_t id, uint32_t votes)
{
    uint64_t *sum = arg;
    (void)id;
    *sum += votes;
    return 0;
}

static void test_counts_round_trip(void **state)
{
    (void)state;
    struct store_bin b;
    store_bin_init(&b);
    /* Known bytes: steps and votes at the varint boundaries. */
    static const uint32_t edge[] = {UINT32_MAX, UINT32_MAX, 127, 128, 0, 1, 128, 16384};
    store_counts_encode(edge, 4, &b);
    static const uint8_t want[] = {0x00, 0x01, 0x7f, 0x80, 0x01, 0x01, 0x80, 0x80, 0x01, 0xff,
                                   0xfe, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    struct decoded d = {.n = 0};
    assert_int_equal(store_counts_decode(b.data, b.len, collect, &d), 0);
    static const uint32_t sorted[] = {0, 1, 127, 128, 128, 16384, UINT32_MAX, UINT32_MAX};
    assert_int_equal(d.n, 4);
    assert_memory_equal(d.pairs, sorted, sizeof(sorted));
    /* Appends: what was in the buffer stays. */
    store_bin_reset(&b);
    store_bin_put(&b, "xy", 2);
    store_counts_encode(edge, 4, &b);
    assert_int_equal(b.len, 2 + sizeof(want));
    assert_memory_equal(b.data, "xy", 2);
    assert_memory_equal(b.data + 2, want, sizeof(want));
    assert_int_equal(store_counts_decode(NULL, 0, collect, &d), 0); /* no pairs */
    /* A callback's non-zero return stops and is returned. */
    store_bin_reset(&b);
    uint32_t many[80];
    for (uint32_t i = 0; i < 40; i++) {
        many[2 * i] = 1000 - 7 * i;
        many[2 * i + 1] = i + 1;
    }
    store_counts_encode(many, 40, &b);
    d.n = 0;
    assert_int_equal(store_counts_decode(b.data, b.len, collect, &d), 7);
    /* Random permutations of up to 10,000 pairs, ids spread over all 32 bits. */
    static uint32_t pairs[2 * 10000], ids_sorted[10000];
    uint64_t rng = 99;
    for (int round = 0; round < 30; round++) {
        size_t n = round < 20 ? (size_t)round : (size_t)(rng_next(&rng) % 10000) + 1;
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t id;
            bool dup;
            do { /* distinct ids */
                id = round % 3 ? (uint32_t)rng_next(&rng) : (uint32_t)(rng_next(&rng) % 50000);
                dup = false;
                for (size_t j = 0; j < i && n < 200 && !dup; j++)
                    dup = pairs[2 * j] == id;
            } while (dup);
            pairs[2 * i] = id;
            pairs[2 * i + 1] = (uint32_t)(rng_next(&rng) % 1000) + 1;
            sum += pairs[2 * i + 1];
            ids_sorted[i] = id;
        }
        qsort(ids_sorted, n, sizeof(*ids_sorted), cmp_tok32);
        bool distinct = true;
        for (size_t i = 1; i < n; i++)
            distinct = distinct && ids_sorted[i] != ids_sorted[i - 1];
        if (!distinct)
            continue; /* a birthday collision among 10,000 random ids: skip the round */
        store_bin_reset(&b);
        store_counts_encode(pairs, n, &b);
        assert_true(b.len <= STORE_COUNTS_PAIR_MAX * n);
        uint64_t got = 0;
        assert_int_equal(store_counts_decode(b.data, b.len, count_only, &got), 0);
        assert_int_equal(got, sum);
        /* ids ascending exactly as sorted */
        size_t pos = 0, k = 0;
        uint64_t id = 0;
        while (pos < b.len) {
            uint64_t v = 0;
            for (int sh = 0;; sh += 7) {
                uint8_t c = b.data[pos++];
                v |= (uint64_t)(c & 0x7f) << sh;
                if (!(c & 0x80))
                    break;
            }
            id += v;
            assert_int_equal(id, ids_sorted[k]);
            while (b.data[pos++] & 0x80) {
            }
            k++;
        }
        assert_int_equal(k, n);
    }
    store_bin_cleanup(&b);
}

static void test_counts_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[12];
        size_t len;
    } bad[] = {
        {"truncated step", {0x80}, 1},
        {"no votes", {0x05}, 1},
        {"truncated votes", {0x05, 0x81}, 2},
        {"zero votes", {0x05, 0x00}, 2},
        {"zero step after the first", {0x05, 0x01, 0x00, 0x01}, 4},
        {"step over 32 bits", {0x80, 0x80, 0x80, 0x80, 0x10, 0x01}, 6},
        {"votes over 32 bits", {0x01, 0xff, 0xff, 0xff, 0xff, 0x1f}, 6},
        {"six-byte varint", {0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01}, 7},
        {"not the shortest form", {0x85, 0x00, 0x01}, 3},
        {"id past 2^32 - 1", {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x01, 0x01}, 8},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct decoded d = {.n = 0};
        if (store_counts_decode(bad[i].bytes, bad[i].len, collect, &d) != -1)
            fail_msg("%s: decoded", bad[i].what);
    }
    /* A zero first step (project 0) is fine. */
    static const uint8_t zero_first[] = {0x00, 0x02, 0x03, 0x01};
    struct decoded d = {.n = 0};
    assert_int_equal(store_counts_decode(zero_first, sizeof(zero_first), collect, &d), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.pairs[2], 3);
}

/* ---- against PostgreSQL ---------------------------------------------------------------
 * TALLY_TEST_PG names a superuser on a throw-away server (tests/pg.sh start DIR prints
 * its conninfo into DIR/conninfo); without it these tests are skipped. Each run makes its
 * own database and login roles, and drops them. */

#define PG_CI 768

static struct {
    bool on;
    char db[64], behind[64], writer[64], auditor[64];
    char super_ci[PG_CI], writer_ci[PG_CI], auditor_ci[PG_CI];
} pg;

/* base, then overrides: libpq keeps a keyword's last value. */
static void pg_ci(char *out, const char *db, const char *user)
{
    snprintf(out, PG_CI, "%s dbname=%s%s%s", getenv("TALLY_TEST_PG"), db, user ? " user=" : "",
             user ? user : "");
}

/* Runs sql on conninfo ci; returns the SQLSTATE of a failure ("" for success). */
static const char *pg_try(const char *ci, const char *sql)
{
    static char state[8];
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", ci, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(state, sizeof(state), "%s",
             st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? ""
             : code                                          ? code
                                                             : "?");
    PQclear(r);
    PQfinish(c);
    return state;
}

static void pg_exec(const char *ci, const char *sql)
{
    const char *st = pg_try(ci, sql);
    if (st[0])
        fail_msg("%s: SQLSTATE %s", sql, st);
}

static char *pg_value(const char *ci, const char *sql)
{
    PGconn *c = PQconnectdb(ci);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

static struct store *pg_open(const char *ci)
{
    char err[512];
    struct store *s = store_open(ci, err, sizeof(err));
    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

struct reg_iter {
    size_t i;
};

static int reg_next(void *arg, struct store_registry_row *row)
{
    static const struct {
        uint32_t project, circuit;
        const char *state;
    } rows[] = {{1, 100, "Zulia"}, {2, 100, "Zulia"}, {3, 101, "Zulia"}, {4, 200, "Lara"}};
    struct reg_iter *it = arg;
    if (it->i == sizeof(rows) / sizeof(rows[0]))
        return 0;
    static char pname[32], cname[32];
    snprintf(pname, sizeof(pname), "project %u", rows[it->i].project);
    snprintf(cname, sizeof(cname), "circuit %u", rows[it->i].circuit);
    *row = (struct store_registry_row){.line = it->i + 2,
                                       .project_id = rows[it->i].project,
                                       .project_name = pname,
                                       .circuit_id = rows[it->i].circuit,
                                       .circuit_name = cname,
                                       .state = rows[it->i].state,
                                       .seats = 1};
    it->i++;
    return 1;
}

/* A database migrated to version (0: the latest) with the registry above. */
static void pg_make_db(const char *name, int version)
{
    char admin[PG_CI], sql[200], ci[PG_CI];
    pg_ci(admin, "postgres", NULL);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
    pg_exec(admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    pg_exec(admin, sql);
    pg_ci(ci, name, NULL);
    struct store *s = pg_open(ci);
    if ((version ? store_migrate_to(s, version) : store_migrate(s)) != 0)
        fail_msg("migrate: %s", store_last_error(s));
    struct reg_iter it = {0};
    struct store_registry_summary sum;
    if (store_registry_load(s, reg_next, &it, &sum) != 0)
        fail_msg("registry: %s", store_last_error(s));
    store_close(s);
}

static int pg_setup(void **state)
{
    (void)state;
    if (!getenv("TALLY_TEST_PG") || !getenv("TALLY_TEST_PG")[0])
        return 0;
    pg.on = true;
    log_set_level(LOG_WARN);
    int id = (int)getpid();
    snprintf(pg.db, sizeof(pg.db), "tally_ut_store_%d", id);
    snprintf(pg.behind, sizeof(pg.behind), "tally_ut_store_behind_%d", id);
    snprintf(pg.writer, sizeof(pg.writer), "ut_writer_%d", id);
    snprintf(pg.auditor, sizeof(pg.auditor), "ut_auditor_%d", id);
    pg_make_db(pg.db, 0);
    pg_ci(pg.super_ci, pg.db, NULL);
    pg_ci(pg.writer_ci, pg.db, pg.writer);
    pg_ci(pg.auditor_ci, pg.db, pg.auditor);
    /* A state the registry has no circuit for. */
    pg_exec(pg.super_ci, "INSERT INTO areas (kind, code, name) VALUES ('state', 'Empty', 'Empty')");
    char sql[200];
    snprintf(sql, sizeof(sql), "CREATE ROLE %s LOGIN IN ROLE tally_writer", pg.writer);
    pg_exec(pg.super_ci, sql);
    snprintf(sql, sizeof(sql), "CREATE ROLE %s LOGIN IN ROLE tally_auditor", pg.auditor);
    pg_exec(pg.super_ci, sql);
    return 0;
}

static int pg_teardown(void **state)
{
    (void)state;
    if (!pg.on || getenv("TALLY_TEST_PG_KEEP")) /* keep: to look at what the tests wrote */
        return 0;
    char admin[PG_CI], sql[200];
    pg_ci(admin, "postgres", NULL);
    const char *dbs[2] = {pg.db, pg.behind};
    for (int i = 0; i < 2; i++) {
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", dbs[i]);
        pg_try(admin, sql);
    }
    snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s, %s", pg.writer, pg.auditor);
    pg_try(admin, sql);
    return 0;
}

static void pin_fill(uint8_t pin[STORE_PIN_BYTES], uint8_t v)
{
    for (int i = 0; i < STORE_PIN_BYTES; i++)
        pin[i] = (uint8_t)(v + i);
}

static void test_pg_collectors(void **state)
{
    (void)state;
    if (!pg.on)
        skip();
    struct store *s = pg_open(pg.super_ci);
    bool created;
    struct store_collector_spec spec = {.id = "c1"};
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_true(created);
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_false(created);

    uint8_t p1[STORE_PIN_BYTES], p2[STORE_PIN_BYTES];
    pin_fill(p1, 1);
    pin_fill(p2, 2);
    const uint32_t circuits[3] = {101, 100, 100};
    spec = (struct store_collector_spec){
        .id = "c2", .pin = p1, .restrict_circuits = true, .circuits = circuits, .n_circuits = 3};
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_true(created);
    struct store_collector c;
    assert_int_equal(store_collector_get(s, "c2", &c), 1);
    assert_true(c.has_pin);
    assert_memory_equal(c.pin, p1, STORE_PIN_BYTES);
    assert_true(c.restricted);
    assert_false(c.disabled);
    assert_int_equal(c.n_circuits, 2);
    assert_int_equal(c.circuits[0], 100);
    assert_int_equal(c.circuits[1], 101);
    store_collectors_free_one(&c);

    /* The same settings again: not even a new row version. */
    char *xmin = pg_value(pg.super_ci, "SELECT xmin FROM collectors WHERE id = 'c2'");
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_false(created);
    char *xmin2 = pg_value(pg.super_ci, "SELECT xmin FROM collectors WHERE id = 'c2'");
    assert_string_equal(xmin, xmin2);
    free(xmin);
    free(xmin2);

    /* One certificate, one collector. */
    spec = (struct store_collector_spec){.id = "c3", .pin = p1};
    assert_int_equal(store_collector_add(s, &spec, &created), -1);
    assert_non_null(strstr(store_last_error(s), "already pinned to collector c2"));
    assert_int_equal(store_collector_get(s, "c3", &c), 0);

    const uint32_t unknown[3] = {100, 999, 7};
    spec = (struct store_collector_spec){
        .id = "c3", .restrict_circuits = true, .circuits = unknown, .n_circuits = 3};
    assert_int_equal(store_collector_add(s, &spec, &created), -1);
    assert_non_null(strstr(store_last_error(s), "unknown circuit ids 7, 999"));

    spec = (struct store_collector_spec){.id = "c3", .state = "Empty"};
    assert_int_equal(store_collector_add(s, &spec, &created), -1);
    assert_non_null(strstr(store_last_error(s), "state \"Empty\" has no circuits"));
    spec.state = "Nowhere";
    assert_int_equal(store_collector_add(s, &spec, &created), -1);
    assert_non_null(strstr(store_last_error(s), "no state named \"Nowhere\""));
    spec.state = "Zulia";
    spec.restrict_circuits = true;
    assert_int_equal(store_collector_add(s, &spec, &created), -1);
    spec.restrict_circuits = false;
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_true(created);
    assert_int_equal(store_collector_get(s, "c3", &c), 1);
    assert_int_equal(c.n_circuits, 2);
    assert_int_equal(c.circuits[0], 100);
    assert_int_equal(c.circuits[1], 101);
    assert_false(c.has_pin);
    store_collectors_free_one(&c);

    /* A new certificate replaces the pin; circuits left out stay; then lifted. */
    spec = (struct store_collector_spec){.id = "c2", .pin = p2};
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_false(created);
    assert_int_equal(store_collector_get(s, "c2", &c), 1);
    assert_memory_equal(c.pin, p2, STORE_PIN_BYTES);
    assert_true(c.restricted);
    store_collectors_free_one(&c);
    spec = (struct store_collector_spec){.id = "c2", .every_circuit = true};
    assert_int_equal(store_collector_add(s, &spec, &created), 0);
    assert_int_equal(store_collector_get(s, "c2", &c), 1);
    assert_false(c.restricted);
    assert_null(c.circuits);
    assert_true(c.has_pin);

    spec = (struct store_collector_spec){.id = "bad id"};
    assert_int_equal(store_collector_add(s, &spec, &created), -1);

    assert_int_equal(store_collector_set_disabled(s, "c1", true), 0);
    assert_int_equal(store_collector_set_disabled(s, "c1", true), 1);
    struct store_collector *list;
    size_t n;
    assert_int_equal(store_collectors_list(s, &list, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, "c1");
    assert_true(list[0].disabled);
    assert_false(list[1].disabled);
    assert_true(list[2].restricted);
    store_collectors_free(list, n);
    assert_int_equal(store_collector_set_disabled(s, "c1", false), 0);
    assert_int_equal(store_collector_get(s, "c1", &c), 1);
    assert_false(c.disabled);
    assert_int_equal(store_collector_set_disabled(s, "nope", true), -1);
    assert_non_null(strstr(store_last_error(s), "no collector named 'nope'"));
    store_close(s);
}

/* The worker's callbacks, on its thread, handed to the test's. */
struct wk {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, done;
    int started_rc, done_rc;
    char why[600];
    struct store_started st;
    struct store_collector *list;
    size_t n_list;
};

static void wk_started(void *arg, int rc, struct store_started *st, const char *why)
{
    struct wk *k = arg;
    pthread_mutex_lock(&k->mu);
    k->started = true;
    k->started_rc = rc;
    if (st)
        k->st = *st;
    snprintf(k->why, sizeof(k->why), "%s", why ? why : "");
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

static void wk_done(void *arg, struct store_checkpoint *cp, int rc, struct store_collector *list,
                    size_t n)
{
    (void)cp;
    struct wk *k = arg;
    pthread_mutex_lock(&k->mu);
    k->done = true;
    k->done_rc = rc;
    k->list = list;
    k->n_list = n;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

static void wk_wait(struct wk *k, bool *flag)
{
    pthread_mutex_lock(&k->mu);
    for (int i = 0; i < 300 && !*flag; i++) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += 1;
        pthread_cond_timedwait(&k->cv, &k->mu, &t);
    }
    bool ok = *flag;
    *flag = false;
    pthread_mutex_unlock(&k->mu);
    if (!ok)
        fail_msg("the store worker did not answer");
}

static struct store_worker *wk_start(struct wk *k, const char *ci)
{
    memset(k, 0, sizeof(*k));
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    struct store_worker_config cfg = {
        .conninfo = ci,
        .min_anonymity = STORE_MIN_ANONYMITY_DEFAULT,
        .started = wk_started,
        .done = wk_done,
        .arg = k,
    };
    struct store_worker *w = store_worker_new(&cfg);
    assert_non_null(w);
    wk_wait(k, &k->started);
    return w;
}

static void wk_stop(struct wk *k, struct store_worker *w)
{
    assert_int_equal(store_worker_free(w, 2000), 0);
    if (k->started_rc == 0) {
        store_recovery_cleanup(&k->st.rec);
        store_catalog_cleanup(&k->st.catalog);
    }
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
}

static void wk_job(struct wk *k, struct store_worker *w, struct store_checkpoint *cp)
{
    assert_int_equal(store_worker_submit(w, cp), 0);
    wk_wait(k, &k->done);
    assert_int_equal(k->done_rc, STORE_OK);
}

/* A tally_writer login runs checkpoints (v2 and v1 hashes), a refresh under load, a
 * compaction and recovery through the worker; it can do nothing else; a tally_auditor
 * login verifies the result. */
static void test_pg_writer_role(void **state)
{
    (void)state;
    if (!pg.on)
        skip();
    struct wk k;
    struct store_worker *w = wk_start(&k, pg.writer_ci);
    assert_int_equal(k.started_rc, 0);
    assert_string_equal(k.st.role, pg.writer);
    assert_false(k.st.role_is_superuser);
    assert_false(k.st.role_owns_schema);

    uint8_t digest[32];
    memset(digest, 7, sizeof(digest));
    /* c2 (test_pg_collectors): 5 votes, 3 counted, 1 unknown, 1 outside its circuits. */
    /* Format 3: its reasons mirror the two old figures; its counts are its delta. */
    static const uint32_t counts1[] = {2, 1, 1, 2};
    struct store_batch b1 = {.collector_id = "c2",
                             .seq = 1,
                             .digest = digest,
                             .votes = 5,
                             .accepted = 3,
                             .duplicate = 0,
                             .rejected_unknown = 1,
                             .rejected_not_allowed = 1,
                             .reasons = {0, 1, 1},
                             .counts = counts1,
                             .n_counts = 2};
    struct store_watermark m1 = {.collector_id = "c2",
                                 .prev_seq = 0,
                                 .durable_seq = 1,
                                 .batches = 1,
                                 .votes = 5,
                                 .accepted = 3,
                                 .duplicate = 0,
                                 .rejected = 2};
    uint32_t ids[2] = {2, 1};
    int64_t deltas[2] = {1, 2};
    uint64_t tokens[3] = {30, 10, 20};
    struct store_checkpoint cp = {.batches = &b1,
                                  .n_batches = 1,
                                  .project_ids = ids,
                                  .deltas = deltas,
                                  .n_deltas = 2,
                                  .marks = &m1,
                                  .n_marks = 1,
                                  .tokens = tokens,
                                  .n_tokens = 3,
                                  .refresh_collectors = true};
    wk_job(&k, w, &cp);
    assert_int_equal(cp.id, 1);
    assert_non_null(k.list); /* asked for with the checkpoint */
    assert_int_equal(k.n_list, 3);
    assert_int_equal(k.list[1].durable_seq, 1);
    assert_int_equal(k.list[1].rejected, 2);
    assert_true(k.list[1].has_pin);
    store_collectors_free(k.list, k.n_list);

    /* A checkpoint that does not ask: no list. c1's batch has no not-allowed vote (v1). */
    static const uint32_t counts2[] = {3, 1};
    struct store_batch b2 = {.collector_id = "c1",
                             .seq = 1,
                             .digest = digest,
                             .votes = 1,
                             .accepted = 1,
                             .duplicate = 0,
                             .rejected_unknown = 0,
                             .rejected_not_allowed = 0,
                             .counts = counts2,
                             .n_counts = 1};
    struct store_watermark m2 = {.collector_id = "c1",
                                 .prev_seq = 0,
                                 .durable_seq = 1,
                                 .batches = 1,
                                 .votes = 1,
                                 .accepted = 1,
                                 .duplicate = 0,
                                 .rejected = 0};
    uint32_t id3 = 3;
    int64_t d3 = 1;
    uint64_t t3 = 40;
    struct store_checkpoint cp2 = {.batches = &b2,
                                   .n_batches = 1,
                                   .project_ids = &id3,
                                   .deltas = &d3,
                                   .n_deltas = 1,
                                   .marks = &m2,
                                   .n_marks = 1,
                                   .tokens = &t3,
                                   .n_tokens = 1};
    wk_job(&k, w, &cp2);
    assert_null(k.list);

    /* A refresh-only job reads them as before. */
    struct store_checkpoint refresh;
    memset(&refresh, 0, sizeof(refresh));
    wk_job(&k, w, &refresh);
    assert_non_null(k.list);
    store_collectors_free(k.list, k.n_list);

    /* Past the compaction delay: the next checkpoint folds the deltas into tallies. */
    struct timespec pause = {2, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    struct store_batch b3 = {.collector_id = "c3",
                             .seq = 1,
                             .digest = digest,
                             .votes = 2,
                             .accepted = 0,
                             .duplicate = 1,
                             .rejected_unknown = 0,
                             .rejected_not_allowed = 1,
                             .reasons = {0, 0, 1}};
    struct store_watermark m3 = {.collector_id = "c3",
                                 .prev_seq = 0,
                                 .durable_seq = 1,
                                 .batches = 1,
                                 .votes = 2,
                                 .accepted = 0,
                                 .duplicate = 1,
                                 .rejected = 1};
    struct store_checkpoint cp3 = {.batches = &b3, .n_batches = 1, .marks = &m3, .n_marks = 1};
    wk_job(&k, w, &cp3);
    wk_stop(&k, w);
    char *through = pg_value(pg.super_ci, "SELECT through FROM tally_compaction");
    assert_string_equal(through, "3");
    free(through);
    char *hashes = pg_value(pg.super_ci, "SELECT count(*) FROM checkpoints");
    assert_string_equal(hashes, "3");
    free(hashes);

    /* Recovery as the writer: the durable state. */
    w = wk_start(&k, pg.writer_ci);
    assert_int_equal(k.started_rc, 0);
    assert_int_equal(k.st.rec.last_checkpoint_id, 3);
    assert_int_equal(k.st.rec.n_collectors, 3);
    assert_int_equal(k.st.rec.collectors[1].rejected, 2);
    assert_int_equal(k.st.rec.collectors[2].rejected, 1);
    wk_stop(&k, w);

    /* Nothing else: no DDL, no catalog secrets, no identity changes, no deletes. */
    assert_string_equal(pg_try(pg.writer_ci, "CREATE TABLE ut_x (a int)"), "42501");
    assert_string_equal(pg_try(pg.writer_ci, "SELECT rolpassword FROM pg_authid"), "42501");
    assert_string_equal(pg_try(pg.writer_ci, "UPDATE collectors SET cert_pin = NULL"), "42501");
    assert_string_equal(pg_try(pg.writer_ci, "UPDATE collectors SET disabled_at = NULL"), "42501");
    assert_string_equal(pg_try(pg.writer_ci, "INSERT INTO collectors (id) VALUES ('evil')"),
                        "42501");
    assert_string_equal(pg_try(pg.writer_ci, "DELETE FROM batches"), "42501");
    assert_string_equal(pg_try(pg.writer_ci, "ALTER TABLE batches DROP COLUMN digest"), "42501");
    assert_string_equal(pg_try(pg.writer_ci, "INSERT INTO projects VALUES (9, 'x', 1)"), "42501");

    /* The auditor verifies (v1 and v2 hashes alike), and may not write. */
    struct store *s = pg_open(pg.auditor_ci);
    struct store_verify_report rep;
    int rc = store_verify(s, &rep, NULL, NULL);
    if (rc != 0)
        fail_msg("verify: %d %s %s", rc, rep.problem, store_last_error(s));
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.batches, 3);
    assert_int_equal(rep.checkpoints_v3, 3);
    store_close(s);
    assert_string_equal(pg_try(pg.auditor_ci, "UPDATE writer SET epoch = 0"), "42501");

    /* A not-allowed vote that is not counted in rejected: verify names the collector (the
     * writer records format 3: rejected_by_reason is what counts, the two old columns
     * mirror its reasons 1 and 2). */
    pg_exec(pg.super_ci, "UPDATE batches SET rejected_by_reason[2] = 0 WHERE collector_id = 'c3'");
    s = pg_open(pg.auditor_ci);
    assert_int_equal(store_verify(s, &rep, NULL, NULL), 1);
    assert_non_null(strstr(rep.problem, "collector c3 totals 1 rejected"));
    store_close(s);
    /* The reason moved (the sums agree, the old columns follow): the hash does not. */
    pg_exec(pg.super_ci, "UPDATE batches SET rejected_by_reason[1] = 1, rejected_unknown = 1,"
                         " rejected_not_allowed = 0 WHERE collector_id = 'c3'");
    s = pg_open(pg.auditor_ci);
    assert_int_equal(store_verify(s, &rep, NULL, NULL), 1);
    assert_non_null(strstr(rep.problem, "checkpoint 3: stored body_hash"));
    store_close(s);
    pg_exec(pg.super_ci, "UPDATE batches SET rejected_by_reason[1] = 0, rejected_by_reason[2] = 1,"
                         " rejected_unknown = 0, rejected_not_allowed = 1"
                         " WHERE collector_id = 'c3'");
    pg_exec(pg.super_ci, "UPDATE batches SET rejected_unknown = 0, rejected_not_allowed = 1"
                         " WHERE collector_id = 'c3'");
}

/* A schema behind this build: a writer login fails with the one line; the owner migrates. */
static void test_pg_schema_behind(void **state)
{
    (void)state;
    if (!pg.on)
        skip();
    pg_make_db(pg.behind, 5);
    char ci[PG_CI];
    pg_ci(ci, pg.behind, pg.writer);
    struct wk k;
    struct store_worker *w = wk_start(&k, ci);
    assert_int_equal(k.started_rc, -1);
    char want_why[160];
    snprintf(want_why, sizeof(want_why),
             "schema is at version 5, this build needs %d: run `tallyctl migrate` as the schema"
             " owner",
             store_schema_latest());
    if (!strstr(k.why, want_why))
        fail_msg("why: %s", k.why);
    wk_stop(&k, w);

    pg_ci(ci, pg.behind, NULL);
    w = wk_start(&k, ci);
    assert_int_equal(k.started_rc, 0);
    assert_true(k.st.role_is_superuser);
    assert_true(k.st.role_owns_schema);
    wk_stop(&k, w);
    char *v = pg_value(ci, "SELECT max(version) FROM schema_migrations");
    assert_int_equal(atoi(v), store_schema_latest());
    free(v);
}

/* ---- tallyctl verify over a format 3 record ---------------------------------------------
 * A record built by SQL inserts whose hashes come from this module's own functions: one
 * format-NULL checkpoint (v1), then two of format 3 — per-ballot votes naming a table, a
 * tally sheet, and its replacement with the correction it makes. It verifies; then each
 * copy of it (CREATE DATABASE ... TEMPLATE) gets one change and store_verify must fail
 * naming the checkpoint. */

struct sqlbuf {
    char s[32768];
    size_t n;
};

static void sql_add(struct sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql_add(struct sqlbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
    va_end(ap);
    assert_true(k >= 0 && (size_t)k < sizeof(b->s) - b->n);
    b->n += (size_t)k;
}

/* decode('<hex>', 'hex') for n bytes at p, into out (at least 2n + 24 bytes). */
static const char *sql_bytea(char *out, const void *p, size_t n)
{
    const uint8_t *d = p;
    size_t k = (size_t)sprintf(out, "decode('");
    for (size_t i = 0; i < n; i++)
        k += (size_t)sprintf(out + k, "%02x", d[i]);
    sprintf(out + k, "', 'hex')");
    return out;
}

static void tokens_le(const uint64_t *t, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 8; j++)
            out[8 * i + j] = (uint8_t)(t[i] >> (8 * j));
}

static char v3_db[64];

static void v3_build(const char *ci)
{
    struct sqlbuf b = {.n = 0};
    char h1[200], h2[200], h3[200], h4[200];
    uint8_t d1[32], d2[32], d3[32], d4[32], zeros[32] = {0};
    memset(d1, 0xd1, 32);
    memset(d2, 0xd2, 32);
    memset(d3, 0xd3, 32);
    memset(d4, 0xd4, 32);
    sql_add(&b, "BEGIN;"
                "INSERT INTO voting_tables VALUES"
                " ('T1', (SELECT circuit_area_id FROM projects WHERE id = 1), 10),"
                " ('T2', (SELECT circuit_area_id FROM projects WHERE id = 1), 10);"
                "INSERT INTO collectors (id) VALUES ('c0'), ('c1');");

    /* Checkpoint 1, format NULL: c0/1, 3 votes; token page 1. */
    uint8_t salt1[16], salt2[16], tok1[24], tok2[32], pd1[32], pd2[32], hash1[32];
    memset(salt1, 1, 16);
    memset(salt2, 2, 16);
    static const uint64_t t1[3] = {10, 20, 30}, t2[4] = {40, 50, 60, 70};
    tokens_le(t1, 3, tok1);
    tokens_le(t2, 4, tok2);
    store_page_digest(salt1, tok1, 3, pd1);
    store_page_digest(salt2, tok2, 4, pd2);
    struct store_chain_batch cb1 = {"c0", 1, d1, 3, 3, 0, 0, 0};
    uint32_t ids1[2] = {1, 2};
    uint64_t votes1[2] = {2, 1};
    struct store_chain_page pages1[1] = {{.id = 1}};
    memcpy(pages1[0].digest, pd1, 32);
    struct store_chain_input in1 = {NULL, 1, 0, &cb1, 1, ids1, votes1, 2, pages1, 1};
    store_chain_hash(&in1, hash1);
    sql_add(&b,
            "INSERT INTO checkpoints (id, batches, votes, accepted, epoch, duplicate, rejected,"
            " delta_ids, delta_votes, page_ids, page_digests, prev_hash, hash)"
            " VALUES (1, 1, 3, 3, 0, 0, 0, '{1,2}', '{2,1}', '{1}', %s, %s, %s);",
            sql_bytea(h1, pd1, 32), sql_bytea(h2, zeros, 32), sql_bytea(h3, hash1, 32));
    sql_add(&b,
            "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted, duplicate,"
            " rejected_unknown, digest) VALUES ('c0', 1, 1, 3, 3, 0, 0, %s);",
            sql_bytea(h1, d1, 32));
    sql_add(&b, "INSERT INTO token_pages VALUES (1, %s, %s);", sql_bytea(h1, salt1, 16),
            sql_bytea(h2, tok1, 24));

    /* Checkpoint 2, format 3: c0/2 (ballots: 4 of 6 accepted, 3 at table T1), c1/1 (sheet
     * T2 version 1); token page 2. */
    struct store_bin counts;
    store_bin_init(&counts);
    static const uint32_t pairs2[] = {2, 3, 1, 1};
    store_counts_encode(pairs2, 2, &counts);
    static const uint32_t rows_v1[] = {1, 5, 2, 2}, rows_v2[] = {1, 4, 2, 4};
    uint8_t sd1[32], sd2[32], root[32], body[32], hash2[32], hash3[32];
    store_sheet_digest("T2", 1, 1, 0, rows_v1, 2, sd1);
    store_sheet_digest("T2", 2, 0, 1, rows_v2, 2, sd2);
    uint32_t reasons_b[9] = {1}, reasons_s[9] = {0};
    struct store_chain_table bt[1] = {{"T1", 3}}, td[1] = {{"T1", 3}};
    struct store_chain_batch3 cb2[2] = {
        {.collector_id = "c0",
         .seq = 2,
         .digest = d2,
         .kind = 0,
         .votes = 6,
         .accepted = 4,
         .duplicate = 1,
         .reasons = reasons_b,
         .n_reasons = 9,
         .counts = counts.data,
         .counts_len = counts.len,
         .has_counts = true,
         .tables = bt,
         .n_tables = 1},
        {.collector_id = "c1",
         .seq = 1,
         .digest = d3,
         .kind = 1,
         .sheets = 1,
         .sheets_accepted = 1,
         .reasons = reasons_s,
         .n_reasons = 9},
    };
    uint32_t ids2[2] = {1, 2};
    int64_t votes2[2] = {6, 5};
    struct store_chain_page pages2[1] = {{.id = 2}};
    memcpy(pages2[0].digest, pd2, 32);
    struct store_chain_sheet sh2[1] = {{"T2", 1, "c1", 1, sd1}};
    struct store_chain_input3 in2 = {.prev_hash = hash1,
                                     .id = 2,
                                     .epoch = 0,
                                     .batches = cb2,
                                     .n_batches = 2,
                                     .project_ids = ids2,
                                     .votes = votes2,
                                     .n_deltas = 2,
                                     .pages = pages2,
                                     .n_pages = 1,
                                     .table_deltas = td,
                                     .n_table_deltas = 1,
                                     .sheets = sh2,
                                     .n_sheets = 1};
    store_chain_hash_v3(&in2, root, body, hash2);
    char h5[200], h6[200];
    sql_add(&b,
            "INSERT INTO checkpoints (id, batches, votes, accepted, epoch, duplicate, rejected,"
            " delta_ids, delta_votes, page_ids, page_digests, prev_hash, hash, format,"
            " table_ids, table_ballots, merkle_root, body_hash)"
            " VALUES (2, 2, 6, 4, 0, 1, 1, '{1,2}', '{6,5}', '{2}', %s, %s, %s, 3, '{T1}', '{3}',"
            " %s, %s);",
            sql_bytea(h1, pd2, 32), sql_bytea(h2, hash1, 32), sql_bytea(h3, hash2, 32),
            sql_bytea(h4, root, 32), sql_bytea(h5, body, 32));
    char hc[64];
    sql_add(&b,
            "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted, duplicate,"
            " rejected_unknown, rejected_not_allowed, digest, kind, rejected_by_reason, counts,"
            " table_ids, table_ballots) VALUES ('c0', 2, 2, 6, 4, 1, 1, 0, %s, 'ballots',"
            " '{1,0,0,0,0,0,0,0,0}', %s, '{T1}', '{3}');",
            sql_bytea(h1, d2, 32), sql_bytea(hc, counts.data, counts.len));
    sql_add(&b,
            "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted, duplicate,"
            " rejected_unknown, digest, kind, rejected_by_reason, sheets, sheets_accepted)"
            " VALUES ('c1', 1, 2, 0, 0, 0, 0, %s, 'sheets', '{0,0,0,0,0,0,0,0,0}', 1, 1);",
            sql_bytea(h1, d3, 32));
    sql_add(&b, "INSERT INTO sheets VALUES ('T2', 1, 2, 'c1', 1, %s, '{1,2}', '{5,2}', 1, 0);",
            sql_bytea(h1, sd1, 32));
    sql_add(&b, "INSERT INTO token_pages VALUES (2, %s, %s);", sql_bytea(h1, salt2, 16),
            sql_bytea(h2, tok2, 32));

    /* Checkpoint 3, format 3: c1/2 brings sheet T2 version 2, which replaces version 1. */
    struct store_chain_batch3 cb3[1] = {{.collector_id = "c1",
                                         .seq = 2,
                                         .digest = d4,
                                         .kind = 1,
                                         .sheets = 1,
                                         .sheets_accepted = 1,
                                         .reasons = reasons_s,
                                         .n_reasons = 9}};
    uint32_t ids3[2] = {1, 2};
    int64_t votes3[2] = {-1, 2};
    struct store_chain_sheet sh3[1] = {{"T2", 2, "c1", 2, sd2}};
    struct store_chain_correction co3[1] = {{.id = 1,
                                             .kind = 0,
                                             .actor = "c1",
                                             .reason = "sheet version 2 replaces version 1",
                                             .at_us = INT64_C(1764600000123456),
                                             .table_id = "T2",
                                             .collector_id = "c1",
                                             .seq = 2,
                                             .from_version = 1,
                                             .to_version = 2,
                                             .project_ids = ids3,
                                             .deltas = votes3,
                                             .n_deltas = 2,
                                             .blank_delta = -1,
                                             .null_delta = 1,
                                             .ballots_delta = 1}};
    struct store_chain_input3 in3 = {.prev_hash = hash2,
                                     .id = 3,
                                     .epoch = 0,
                                     .batches = cb3,
                                     .n_batches = 1,
                                     .project_ids = ids3,
                                     .votes = votes3,
                                     .n_deltas = 2,
                                     .sheets = sh3,
                                     .n_sheets = 1,
                                     .corrections = co3,
                                     .n_corrections = 1};
    store_chain_hash_v3(&in3, root, body, hash3);
    sql_add(&b,
            "INSERT INTO checkpoints (id, batches, votes, accepted, epoch, duplicate, rejected,"
            " delta_ids, delta_votes, page_ids, page_digests, prev_hash, hash, format,"
            " merkle_root, body_hash) VALUES (3, 1, 0, 0, 0, 0, 0, '{1,2}', '{-1,2}', '{}',"
            " '', %s, %s, 3, %s, %s);",
            sql_bytea(h1, hash2, 32), sql_bytea(h2, hash3, 32), sql_bytea(h3, root, 32),
            sql_bytea(h4, body, 32));
    sql_add(&b,
            "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted, duplicate,"
            " rejected_unknown, digest, kind, rejected_by_reason, sheets, sheets_accepted)"
            " VALUES ('c1', 2, 3, 0, 0, 0, 0, %s, 'sheets', '{0,0,0,0,0,0,0,0,0}', 1, 1);",
            sql_bytea(h1, d4, 32));
    sql_add(&b, "INSERT INTO sheets VALUES ('T2', 2, 3, 'c1', 2, %s, '{1,2}', '{4,4}', 0, 1);",
            sql_bytea(h1, sd2, 32));
    sql_add(&b, "INSERT INTO corrections VALUES (1, 3, 'sheet', 'c1',"
                " 'sheet version 2 replaces version 1',"
                " 'epoch'::timestamptz + 1764600000123456 * interval '1 microsecond', 'T2', 'c1',"
                " 2, 1, 2, '{1,2}', '{-1,2}', -1, 1, 1);");
    sql_add(&b, "UPDATE collectors SET durable_seq = 2, batches = 2, votes = 9, accepted = 7,"
                " duplicate = 1, rejected = 1, last_checkpoint_id = 2 WHERE id = 'c0';"
                "UPDATE collectors SET durable_seq = 2, batches = 2, sheets = 2,"
                " sheets_accepted = 2, last_checkpoint_id = 3 WHERE id = 'c1';"
                "COMMIT");
    (void)h6;
    pg_exec(ci, b.s);
    store_bin_cleanup(&counts);
}

/* store_verify on database db: its return code, with the problem in problem. */
static int v3_verify(const char *db, struct store_verify_report *rep)
{
    char ci[PG_CI];
    pg_ci(ci, db, NULL);
    struct store *s = pg_open(ci);
    int rc = store_verify(s, rep, NULL, NULL);
    if (rc < 0)
        fail_msg("verify %s: %s", db, store_last_error(s));
    store_close(s);
    return rc;
}

static void v3_expect(const char *what, const char *tamper, const char *want1, const char *want2)
{
    char admin[PG_CI], sql[256], ci[PG_CI], copy[80];
    snprintf(copy, sizeof(copy), "%s_t", v3_db);
    pg_ci(admin, "postgres", NULL);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", copy);
    pg_exec(admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE %s", copy, v3_db);
    pg_exec(admin, sql);
    pg_ci(ci, copy, NULL);
    pg_exec(ci, tamper);
    struct store_verify_report rep;
    int rc = v3_verify(copy, &rep);
    fprintf(stderr, "  %-40s -> %s\n", what, rep.problem);
    if (rc != 1)
        fail_msg("%s: verify returned %d", what, rc);
    if (!strstr(rep.problem, want1) || (want2 && !strstr(rep.problem, want2)))
        fail_msg("%s: '%s' lacks '%s'%s%s", what, rep.problem, want1, want2 ? " or " : "",
                 want2 ? want2 : "");
    snprintf(sql, sizeof(sql), "DROP DATABASE %s", copy);
    pg_exec(admin, sql);
}

static void test_pg_verify_v3(void **state)
{
    (void)state;
    if (!pg.on)
        skip();
    snprintf(v3_db, sizeof(v3_db), "tally_ut_store_v3_%d", (int)getpid());
    pg_make_db(v3_db, 0);
    char ci[PG_CI];
    pg_ci(ci, v3_db, NULL);
    v3_build(ci);
    struct store_verify_report rep;
    if (v3_verify(v3_db, &rep) != 0)
        fail_msg("the valid v3 record: %s", rep.problem);
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.checkpoints_v3, 2);
    assert_int_equal(rep.batches, 4);
    assert_int_equal(rep.collectors, 2);
    assert_int_equal(rep.tables, 2);
    assert_int_equal(rep.sheets, 2);
    assert_int_equal(rep.corrections, 1);
    assert_int_equal(rep.tokens, 7);
    assert_int_equal(rep.votes, 3 + 11 + 1);

    v3_expect("a sheet row changed", "UPDATE sheets SET votes[1] = 6 WHERE version = 1",
              "checkpoint 2: sheet T2 version 1: stored digest", NULL);
    v3_expect("a sheet row changed, digest too",
              "UPDATE sheets SET votes[1] = 6, blank = 0 WHERE version = 1;"
              "UPDATE sheets SET digest = (SELECT digest FROM sheets WHERE version = 2)"
              " WHERE version = 1",
              "checkpoint 2: sheet T2 version 1: stored digest", NULL);
    v3_expect("a batch's counts changed",
              "UPDATE batches SET counts = decode('01020203', 'hex') WHERE seq = 2"
              " AND collector_id = 'c0'",
              "checkpoint 2: batch c0/2: its counts sum to 5 votes, its accepted is 4", NULL);
    v3_expect("a vote moved between a batch's counts",
              "UPDATE batches SET counts = decode('01020102', 'hex') WHERE seq = 2"
              " AND collector_id = 'c0'",
              "checkpoint 2: its delta gives project 1 6 votes, its batches, sheets and"
              " corrections 7",
              NULL);
    v3_expect("... and the delta moved along",
              "UPDATE batches SET counts = decode('01020102', 'hex') WHERE seq = 2"
              " AND collector_id = 'c0'; UPDATE checkpoints SET delta_votes = '{7,4}'"
              " WHERE id = 2",
              "checkpoint 2: stored body_hash", NULL);
    v3_expect("malformed counts",
              "UPDATE batches SET counts = decode('0180', 'hex') WHERE seq = 2"
              " AND collector_id = 'c0'",
              "checkpoint 2: batch c0/2 has malformed counts", NULL);
    v3_expect("a correction delta changed", "UPDATE corrections SET deltas = '{-2,2}'",
              "checkpoint 3: correction 1 gives project 1 -2 votes, sheet T2 versions 1 to 2"
              " change it by -1",
              NULL);
    v3_expect("a correction's ballots_delta changed", "UPDATE corrections SET ballots_delta = 2",
              "checkpoint 3: correction 1 has ballots_delta 2", NULL);
    v3_expect("a correction's time changed",
              "UPDATE corrections SET at = at + interval '1 microsecond'",
              "checkpoint 3: stored body_hash", NULL);
    v3_expect("the correction deleted", "DELETE FROM corrections",
              "checkpoint 3: sheet T2 version 2 replaces version 1 without a correction", NULL);
    v3_expect("a Merkle root changed",
              "UPDATE checkpoints SET merkle_root = decode(repeat('ab', 32), 'hex') WHERE id = 2",
              "checkpoint 2: stored merkle_root abab", NULL);
    v3_expect("a batch digest changed",
              "UPDATE batches SET digest = decode(repeat('ab', 32), 'hex') WHERE seq = 2"
              " AND collector_id = 'c1'",
              "checkpoint 3: stored merkle_root", NULL);
    v3_expect("a body hash changed",
              "UPDATE checkpoints SET body_hash = decode(repeat('ab', 32), 'hex') WHERE id = 3",
              "checkpoint 3: stored body_hash abab", NULL);
    v3_expect("the v2-v3 link broken",
              "UPDATE checkpoints SET prev_hash = decode(repeat('00', 32), 'hex') WHERE id = 2",
              "checkpoint 2: prev_hash", "is not checkpoint 1's hash");
    v3_expect("the v3 hash changed",
              "UPDATE checkpoints SET hash = decode(repeat('cd', 32), 'hex') WHERE id = 3",
              "checkpoint 3: stored hash cdcd", NULL);
    v3_expect("a table delta changed", "UPDATE checkpoints SET table_ballots = '{2}' WHERE id = 2",
              "checkpoint 2: its table delta gives table T1 2 ballots, its batches 3", NULL);
    v3_expect("counts on a format-NULL checkpoint",
              "UPDATE batches SET counts = decode('0103', 'hex') WHERE seq = 1"
              " AND collector_id = 'c0'",
              "checkpoint 1 has no format but its batch c0/1 holds", NULL);
    v3_expect("the format removed",
              "UPDATE checkpoints SET format = NULL, merkle_root = NULL, body_hash = NULL"
              " WHERE id = 3",
              "checkpoint 3 has no format, after a checkpoint of format 3", NULL);
    v3_expect("a sheet over its electors", "UPDATE voting_tables SET electors = 8 WHERE id = 'T2'",
              "checkpoint 3: sheet T2 version 2 holds 9 ballots, more than the table's 8", NULL);
    v3_expect("a sheet of a table with per-ballot votes",
              "UPDATE batches SET table_ids = '{T2}' WHERE seq = 2 AND collector_id = 'c0';"
              "UPDATE checkpoints SET table_ids = '{T2}' WHERE id = 2",
              "checkpoint 2: table T2 takes per-ballot votes, but reports by sheet", NULL);
    v3_expect("a sheet batch's figures",
              "UPDATE batches SET sheets_accepted = 0, sheets_duplicate = 1 WHERE seq = 1"
              " AND collector_id = 'c1';"
              "UPDATE collectors SET sheets_accepted = 1, sheets_duplicate = 1 WHERE id = 'c1'",
              "checkpoint 2: batch c1/1 accepted 0 sheets, the sheets table holds 1", NULL);
    v3_expect("collector sheet totals", "UPDATE collectors SET sheets = 3 WHERE id = 'c1'",
              "collector c1 totals 3 sheets, its batch rows sum to 2", NULL);
    v3_expect("rejected reason not mirrored",
              "UPDATE batches SET rejected_by_reason[1] = 0, rejected_by_reason[2] = 1"
              " WHERE seq = 2 AND collector_id = 'c0'",
              "checkpoint 2: batch c0/2: rejected_unknown 1 and rejected_not_allowed 0 are not"
              " its reasons 1 and 2 (0, 1)",
              NULL);
    v3_expect("a project total below zero",
              "UPDATE checkpoints SET delta_votes = '{-3,2}' WHERE id = 3",
              "checkpoint 3: its delta gives project 1 -3 votes", NULL);

    char admin[PG_CI], sql[160];
    pg_ci(admin, "postgres", NULL);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", v3_db);
    if (!getenv("TALLY_TEST_PG_KEEP"))
        pg_exec(admin, sql);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_known_answer),
        cmocka_unit_test(test_page_known_answer),
        cmocka_unit_test(test_pages_plan_sorts),
        cmocka_unit_test(test_order_independence),
        cmocka_unit_test(test_null_is_zeros),
        cmocka_unit_test(test_every_field_counts),
        cmocka_unit_test(test_page_digest_fields),
        cmocka_unit_test(test_checkpoint_v2_known_answer),
        cmocka_unit_test(test_v3_known_answer),
        cmocka_unit_test(test_v3_order_independence),
        cmocka_unit_test(test_v3_every_field_counts),
        cmocka_unit_test(test_counts_round_trip),
        cmocka_unit_test(test_counts_malformed),
    };
    /* In this order: the writer test uses the collectors the first one made. */
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_pg_collectors),
        cmocka_unit_test(test_pg_writer_role),
        cmocka_unit_test(test_pg_schema_behind),
        cmocka_unit_test(test_pg_verify_v3),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests(pg_tests, pg_setup, pg_teardown);
}
