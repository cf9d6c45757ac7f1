/* store: the canonical encodings of the record (store/chain.h) — the checkpoint hash (v1
 * and v2) and the token-page digest — against vectors computed independently, and the
 * properties tallyctl verify relies on: order independence, every field counted, NULL =
 * zeros. With TALLY_TEST_PG, against PostgreSQL: collectors with pins and circuits, the
 * tally_writer and tally_auditor roles, a schema behind this build. */
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
    struct store_batch b1 = {"c2", 1, digest, 5, 3, 0, 1, 1};
    struct store_watermark m1 = {"c2", 0, 1, 1, 5, 3, 0, 2};
    uint32_t ids[2] = {2, 1};
    uint64_t deltas[2] = {1, 2};
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
    struct store_batch b2 = {"c1", 1, digest, 1, 1, 0, 0, 0};
    struct store_watermark m2 = {"c1", 0, 1, 1, 1, 1, 0, 0};
    uint32_t id3 = 3;
    uint64_t d3 = 1, t3 = 40;
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
    struct store_batch b3 = {"c3", 1, digest, 2, 0, 1, 0, 1};
    struct store_watermark m3 = {"c3", 0, 1, 1, 2, 0, 1, 1};
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
    store_close(s);
    assert_string_equal(pg_try(pg.auditor_ci, "UPDATE writer SET epoch = 0"), "42501");

    /* A not-allowed vote that is not counted in rejected: verify names the collector. */
    pg_exec(pg.super_ci, "UPDATE batches SET rejected_not_allowed = 0 WHERE collector_id = 'c3'");
    s = pg_open(pg.auditor_ci);
    assert_int_equal(store_verify(s, &rep, NULL, NULL), 1);
    assert_non_null(strstr(rep.problem, "collector c3 totals 1 rejected"));
    store_close(s);
    /* The reason moved (the sums agree): the hash does not. */
    pg_exec(pg.super_ci, "UPDATE batches SET rejected_unknown = 1 WHERE collector_id = 'c3'");
    s = pg_open(pg.auditor_ci);
    assert_int_equal(store_verify(s, &rep, NULL, NULL), 1);
    assert_non_null(strstr(rep.problem, "checkpoint 3: stored hash"));
    store_close(s);
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
    if (!strstr(k.why, "schema is at version 5, this build needs 6: run `tallyctl migrate` as "
                       "the schema owner"))
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
    };
    /* In this order: the writer test uses the collectors the first one made. */
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_pg_collectors),
        cmocka_unit_test(test_pg_writer_role),
        cmocka_unit_test(test_pg_schema_behind),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests(pg_tests, pg_setup, pg_teardown);
}
