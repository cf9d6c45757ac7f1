/* tally: ballot set, batch dedup, apply rules, and checkpoint deltas. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tally/tally.h"

/* Fixed keys, so that every run places tokens alike; tallyd draws its key at random. */
static const uint8_t key1[TALLY_HASH_KEY_BYTES] = {
    0x5b, 0x1e, 0x93, 0x0c, 0x7a, 0xd2, 0x44, 0xe8, 0x21, 0x6f, 0xb9, 0x03, 0xc5, 0x8d, 0x17, 0x7e,
    0xa0, 0x39, 0x62, 0xf4, 0x0b, 0xde, 0x85, 0x4c, 0x11, 0xe7, 0x58, 0x9a, 0x2d, 0xc3, 0x76, 0xbf,
};
static const uint8_t key2[TALLY_HASH_KEY_BYTES] = {
    0xe2, 0x07, 0x4d, 0x98, 0x31, 0xac, 0x6b, 0xf0, 0x5e, 0x13, 0xc8, 0x72, 0x9f, 0x24, 0xdb, 0x86,
    0x3a, 0xf5, 0x10, 0x67, 0xbc, 0x49, 0xe1, 0x2c, 0x95, 0x70, 0x0e, 0xd8, 0x43, 0xaa, 0x1f, 0x64,
};

static void test_set_basic_and_growth(void **state)
{
    (void)state;
    struct tally_set s;
    tally_set_init(&s, 10, key1);
    size_t cap0 = tally_set_bytes(&s);
    for (uint64_t i = 0; i < 100000; i++)
        assert_true(tally_set_insert(&s, i * 0x9e3779b97f4a7c15ULL));
    assert_true(tally_set_bytes(&s) > cap0);
    for (uint64_t i = 0; i < 100000; i++) {
        assert_false(tally_set_insert(&s, i * 0x9e3779b97f4a7c15ULL));
        assert_true(tally_set_contains(&s, i * 0x9e3779b97f4a7c15ULL));
    }
    assert_false(tally_set_contains(&s, 12345));
    assert_int_equal(s.count, 100000);
    /* Token 0 (i = 0 above) is a member like any other. */
    assert_true(tally_set_contains(&s, 0));
    /* At most 3/4 full, and never more than 2x past that: <= 24 bytes a token, and the
     * old table on top while it is being moved. */
    assert_true(tally_set_bytes(&s) <= 100000 * (tally_set_growing(&s) ? 36 : 24));
    tally_set_cleanup(&s);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* While the old table is being moved, every token is found exactly once whichever table
 * holds it: repeats of tokens inserted before, during and after a growth are all refused,
 * tokens never inserted are not found, and a growth ends long before the next one. */
static void test_set_incremental_growth(void **state)
{
    (void)state;
    enum { N = 300000 };
    uint64_t *tok = malloc(N * sizeof(*tok));
    assert_non_null(tok);
    uint64_t x = 42;
    for (size_t i = 0; i < N; i++)
        tok[i] = splitmix(&x) | 1;
    struct tally_set s;
    tally_set_init(&s, 1000, key1);
    size_t growths = 0, growing_inserts = 0;
    bool was_growing = false;
    uint64_t y = 7;
    for (size_t i = 0; i < N; i++) {
        assert_true(tally_set_insert(&s, tok[i]));
        bool g = tally_set_growing(&s);
        growths += g && !was_growing;
        growing_inserts += g;
        was_growing = g;
        /* A repeat of a random earlier token, and a token nobody inserted. */
        size_t j = (size_t)(splitmix(&y) % (i + 1));
        assert_false(tally_set_insert(&s, tok[j]));
        assert_true(tally_set_contains(&s, tok[j]));
        assert_false(tally_set_contains(&s, splitmix(&y) & ~1ULL));
    }
    assert_int_equal(s.count, N);
    assert_true(growths >= 6);
    /* Each growth moves cap / 8 inserts' worth; the table doubles between growths, so all
     * of them together take fewer inserts than the last table holds. */
    assert_true(growing_inserts < N);
    for (size_t i = 0; i < N; i++)
        assert_false(tally_set_insert(&s, tok[i]));
    assert_int_equal(s.count, N);
    tally_set_cleanup(&s);
    free(tok);
}

static void test_set_sized_up_front_does_not_grow(void **state)
{
    (void)state;
    struct tally_set s;
    tally_set_init(&s, 50000, key1);
    size_t cap0 = tally_set_bytes(&s);
    for (uint64_t i = 1; i <= 50000; i++)
        tally_set_insert(&s, i);
    assert_int_equal(tally_set_bytes(&s), cap0);
    tally_set_cleanup(&s);
}

/* The hash the ballot set used before it was keyed (the murmur3 finaliser), and its inverse:
 * with it anyone could compute tokens for any home slot. */
static uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t inverse_odd(uint64_t c)
{
    uint64_t x = c; /* Newton's iteration: each step doubles the correct low bits */
    for (int i = 0; i < 6; i++)
        x *= 2 - c * x;
    return x;
}

static uint64_t unfmix64(uint64_t h)
{
    h ^= h >> 33; /* a shift of 33 >= 32: xor-shifting again undoes it */
    h *= inverse_odd(0xc4ceb9fe1a85ec53ULL);
    h ^= h >> 33;
    h *= inverse_odd(0xff51afd7ed558ccdULL);
    h ^= h >> 33;
    return h;
}

/* Inserts n tokens into a fresh set sized for 2 n; returns the sum and the largest of how
 * far each landed past its home slot. */
static void probe_stats_of(const uint64_t *tok, size_t n, const uint8_t *key, uint64_t *total,
                           size_t *max)
{
    struct tally_set s;
    tally_set_init(&s, 2 * n, key);
    for (size_t i = 0; i < n; i++)
        assert_true(tally_set_insert(&s, tok[i]));
    assert_false(tally_set_growing(&s));
    tally_set_probe_stats(&s, total, max);
    tally_set_cleanup(&s);
}

/* 40,000 tokens chosen so that the old unkeyed hash sent every one to slot 0 (so it took
 * n^2 / 2 probes to insert them) probe no more than as many random tokens do. */
static void test_set_chosen_tokens_do_not_collide(void **state)
{
    (void)state;
    enum { N = 40000 };
    uint64_t *chosen = malloc(N * sizeof(*chosen));
    uint64_t *random = malloc(N * sizeof(*random));
    assert_non_null(chosen);
    assert_non_null(random);
    uint64_t x = 3;
    size_t cap = (2 * N) / 3 * 4 + 4; /* tally_set_init's capacity for 2 N */
    for (size_t i = 0; i < N; i++) {
        chosen[i] = unfmix64(i + 1);
        assert_int_equal(fmix64(chosen[i]), i + 1);
        assert_int_equal(tally_set_slot(fmix64(chosen[i]), cap), 0); /* one slot, before */
        random[i] = splitmix(&x) | 1;
    }
    uint64_t chosen_total, random_total;
    size_t chosen_max, random_max;
    probe_stats_of(chosen, N, key1, &chosen_total, &chosen_max);
    probe_stats_of(random, N, key1, &random_total, &random_max);
    /* Half full, linear probing: ~N / 2 probes past home in all, runs of a few dozen. The
     * old hash gave N (N - 1) / 2 = 8e8 and a longest run of N. */
    assert_true(random_total < N);
    assert_true(chosen_total < 2 * random_total + N / 10);
    assert_true(chosen_max < 2 * random_max + 16);
    free(chosen);
    free(random);
}

/* Arithmetic progressions of tokens, which a multiply-shift hash alone lays out on a
 * lattice that some keys turn into long runs, probe like random tokens. */
static void test_set_progressions_probe_short(void **state)
{
    (void)state;
    enum { N = 40000 };
    static const uint64_t steps[] = {
        1, 2, 4096, (1ULL << 32) + 1, 1ULL << 40, 0x9e3779b97f4a7c15ULL};
    uint64_t *tok = malloc(N * sizeof(*tok));
    assert_non_null(tok);
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        for (size_t i = 0; i < N; i++)
            tok[i] = (i + 1) * steps[k];
        uint64_t total;
        size_t max;
        probe_stats_of(tok, N, key2, &total, &max);
        assert_true(total < N);
        assert_true(max < 100);
    }
    free(tok);
}

/* The key decides where tokens land: another key puts most of them elsewhere. */
static void test_set_hash_depends_on_key(void **state)
{
    (void)state;
    struct tally_set a, b;
    tally_set_init(&a, 1000, key1);
    tally_set_init(&b, 1000, key2);
    size_t same = 0;
    for (uint64_t i = 1; i <= 1000; i++)
        same += tally_set_slot(tally_set_hash(&a, i), a.cap) ==
                tally_set_slot(tally_set_hash(&b, i), b.cap);
    assert_true(same < 20);
    /* All-zero bytes still make a working key (the multiplier is forced odd). */
    static const uint8_t zero[TALLY_HASH_KEY_BYTES];
    struct tally_set z;
    tally_set_init(&z, 1000, zero);
    for (uint64_t i = 1; i <= 1000; i++)
        assert_true(tally_set_insert(&z, i));
    for (uint64_t i = 1; i <= 1000; i++)
        assert_true(tally_set_contains(&z, i));
    tally_set_cleanup(&a);
    tally_set_cleanup(&b);
    tally_set_cleanup(&z);
}

static const struct tally_project registry[] = {
    {4000000000u, 1}, {7, 1}, {123456, 2}, {0, 2}, {99, 3},
};
#define N_REG (sizeof(registry) / sizeof(registry[0]))

static struct tally *make(void)
{
    struct tally *t = tally_new(registry, N_REG, 100, key1);
    assert_non_null(t);
    assert_int_equal(tally_collector_add(t, "north", 0, NULL), 0);
    assert_int_equal(tally_collector_add(t, "south", 0, NULL), 1);
    assert_int_equal(tally_collector_add(t, "north", 0, NULL), 0);
    return t;
}

static uint64_t votes_of(struct tally *t, uint32_t id)
{
    int32_t i = tally_project_index(t, id);
    assert_true(i >= 0);
    return tally_votes_at(t, (size_t)i);
}

static void test_registry_lookup(void **state)
{
    (void)state;
    struct tally *t = make();
    for (size_t i = 0; i < N_REG; i++)
        assert_int_equal(tally_project_index(t, registry[i].id), (int32_t)i);
    assert_int_equal(tally_project_index(t, 8), -1);
    assert_int_equal(tally_project_index(t, 4000000001u), -1);
    tally_free(t);

    const struct tally_project dup[] = {{5, 1}, {5, 2}};
    assert_null(tally_new(dup, 2, 10, key1));
}

/* A stand-in for wire_batch_digest (this test links only the tally library): any
 * function of the content will do, as the tally only compares digests. */
static void fake_digest(uint64_t seq, const uint64_t *b, const uint32_t *p, size_t n,
                        uint8_t out[TALLY_DIGEST_BYTES])
{
    uint64_t h = 1469598103934665603ULL ^ seq;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i] ^ ((uint64_t)p[i] << 32)) * 1099511628211ULL;
    for (size_t i = 0; i < TALLY_DIGEST_BYTES; i++)
        out[i] = (uint8_t)(h >> (8 * (i % 8))) ^ (uint8_t)i;
}

static enum tally_apply_status apply(struct tally *t, uint32_t c, uint64_t seq, const uint64_t *b,
                                     const uint32_t *p, size_t n, struct tally_batch_result *r,
                                     uint64_t *expected)
{
    uint8_t d[TALLY_DIGEST_BYTES];
    const uint8_t *stored = NULL;
    fake_digest(seq, b, p, n, d);
    return tally_apply_batch(t, c, seq, d, b, p, n, r, expected, &stored);
}

static void test_apply_counts_dedups_rejects(void **state)
{
    (void)state;
    struct tally *t = make();
    /* ballot 11 twice (second is a duplicate), unknown project 8, ballot 0 is valid. */
    const uint64_t b[] = {11, 12, 11, 13, 0, 14};
    const uint32_t p[] = {7, 4000000000u, 99, 8, 0, 7};
    struct tally_batch_result r;
    uint64_t expected;
    assert_int_equal(apply(t, 0, 1, b, p, 6, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 4);
    assert_int_equal(r.duplicate, 1);
    assert_int_equal(r.rejected_unknown, 1);
    assert_int_equal(votes_of(t, 7), 2);
    assert_int_equal(votes_of(t, 4000000000u), 1);
    assert_int_equal(votes_of(t, 0), 1);
    assert_int_equal(votes_of(t, 99), 0);

    /* A rejected vote did not use up ballot 13: it counts from another collector. */
    const uint64_t b2[] = {13, 12};
    const uint32_t p2[] = {99, 99};
    assert_int_equal(apply(t, 1, 1, b2, p2, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.duplicate, 1);
    assert_int_equal(votes_of(t, 99), 1);
    const struct tally_totals *tot = tally_applied_totals(t);
    assert_int_equal(tot->votes, 8);
    assert_int_equal(tot->accepted, 5);
    assert_int_equal(tot->duplicate, 2);
    assert_int_equal(tot->rejected, 1);
    tally_free(t);
}

static void test_batch_dedup_by_seq(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {7, 7};
    struct tally_batch_result r;
    uint64_t expected = 0;
    assert_int_equal(apply(t, 0, 1, b, p, 2, &r, &expected), TALLY_APPLIED);
    /* Retransmission: nothing counted again. */
    assert_int_equal(apply(t, 0, 1, b, p, 2, &r, &expected), TALLY_RETRANSMIT);
    assert_int_equal(votes_of(t, 7), 2);
    /* Gap: names the expected seq, applies nothing. */
    const uint64_t b3[] = {3};
    assert_int_equal(apply(t, 0, 3, b3, p, 1, &r, &expected), TALLY_GAP);
    assert_int_equal(expected, 2);
    assert_int_equal(votes_of(t, 7), 2);
    /* Each collector has its own sequence. */
    assert_int_equal(apply(t, 1, 1, b3, p, 1, &r, &expected), TALLY_APPLIED);
    assert_int_equal(tally_collector_at(t, 0)->applied_seq, 1);
    assert_int_equal(tally_collector_at(t, 1)->applied_seq, 1);
    tally_free(t);
}

static void test_checkpoint_seal_commit(void **state)
{
    (void)state;
    struct tally *t = make();
    struct tally_batch_result r;
    uint64_t expected;
    const uint64_t b1[] = {30, 10, 20, 10};
    const uint32_t p1[] = {7, 7, 99, 7};
    const uint64_t b2[] = {40};
    const uint32_t p2[] = {0};
    assert_null(tally_checkpoint_seal(t)); /* nothing pending */
    apply(t, 0, 1, b1, p1, 4, &r, &expected);
    apply(t, 1, 1, b2, p2, 1, &r, &expected);
    assert_int_equal(tally_backlog_votes(t), 5);

    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_non_null(d);
    assert_int_equal(d->n_batches, 2);
    /* Accepted tokens are pooled for the whole checkpoint, apart from the counts. */
    const struct tally_delta_batch *db = &d->batches[0];
    assert_int_equal(db->accepted, 3);
    assert_int_equal(d->n_tokens, 4);
    assert_int_equal(d->tokens[0] + d->tokens[1] + d->tokens[2] + d->tokens[3], 100);
    assert_int_equal(db->duplicate, 1);
    uint64_t sum = 0;
    for (size_t i = 0; i < d->n_touched; i++)
        sum += d->out_deltas[i];
    assert_int_equal(sum, 4);
    assert_int_equal(d->n_marks, 2);
    assert_int_equal(d->marks[0].prev_seq, 0);
    assert_int_equal(d->marks[0].durable_seq, 1);

    /* Only one checkpoint in flight; new batches go to the next one. */
    assert_null(tally_checkpoint_seal(t));
    const uint64_t b3[] = {50};
    apply(t, 0, 2, b3, p2, 1, &r, &expected);
    assert_int_equal(tally_backlog_votes(t), 6);
    assert_int_equal(tally_collector_at(t, 0)->durable_seq, 0);

    tally_checkpoint_commit(t);
    assert_int_equal(tally_collector_at(t, 0)->durable_seq, 1);
    assert_int_equal(tally_collector_at(t, 0)->durable.accepted, 3);
    assert_int_equal(tally_collector_at(t, 1)->durable_seq, 1);
    assert_int_equal(tally_backlog_votes(t), 1);

    d = tally_checkpoint_seal(t);
    assert_non_null(d);
    assert_int_equal(d->n_batches, 1);
    assert_int_equal(d->n_marks, 1);
    assert_int_equal(d->marks[0].prev_seq, 1);
    assert_int_equal(d->marks[0].durable_seq, 2);
    tally_checkpoint_commit(t);
    assert_false(tally_has_pending(t));
    tally_free(t);
}

/* A seq applied before is compared by content: the same content is a retransmission,
 * other content is a conflict that counts nothing and keeps the first digest. */
static void test_seq_conflict(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {7, 7};
    const uint64_t other[] = {1, 3};
    struct tally_batch_result r;
    uint64_t expected = 0;
    uint8_t d1[TALLY_DIGEST_BYTES], d2[TALLY_DIGEST_BYTES];
    fake_digest(1, b, p, 2, d1);
    fake_digest(1, other, p, 2, d2);
    const uint8_t *stored = NULL;
    assert_int_equal(tally_apply_batch(t, 0, 1, d1, b, p, 2, &r, &expected, &stored),
                     TALLY_APPLIED);
    assert_int_equal(tally_apply_batch(t, 0, 1, d1, b, p, 2, &r, &expected, &stored),
                     TALLY_RETRANSMIT);
    assert_int_equal(tally_apply_batch(t, 0, 1, d2, other, p, 2, &r, &expected, &stored),
                     TALLY_CONFLICT);
    assert_non_null(stored);
    assert_memory_equal(stored, d1, TALLY_DIGEST_BYTES);
    assert_int_equal(votes_of(t, 7), 2);
    assert_int_equal(tally_applied_totals(t)->batches, 1);
    /* The conflict left the sequence alone: the next seq still applies. */
    assert_int_equal(apply(t, 0, 2, other, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    tally_free(t);
}

static void test_restore(void **state)
{
    (void)state;
    struct tally *t = tally_new(registry, N_REG, 10, key1);
    struct tally_totals dur = {
        .batches = 3, .votes = 30, .accepted = 20, .duplicate = 5, .rejected = 5};
    uint32_t c = tally_collector_add(t, "east", 3, &dur);
    tally_restore_votes(t, 7, 20);
    assert_true(tally_restore_token(t, 77));
    assert_false(tally_restore_token(t, 77));
    struct tally_batch_result r;
    uint64_t expected;
    const uint64_t b[] = {77, 78};
    const uint32_t p[] = {7, 7};
    /* Seqs up to the durable watermark are compared with their recovered digests; one
     * recorded before digests existed (NULL) is taken as a retransmission. */
    uint8_t d2[TALLY_DIGEST_BYTES], d3[TALLY_DIGEST_BYTES];
    fake_digest(2, b, p, 2, d2);
    fake_digest(3, b, p, 2, d3);
    assert_true(tally_restore_digest(t, c, 1, NULL));
    assert_true(tally_restore_digest(t, c, 2, d2));
    assert_true(tally_restore_digest(t, c, 3, d3));
    assert_false(tally_restore_digest(t, c, 4, d3)); /* past the watermark */
    assert_int_equal(apply(t, c, 3, b, p, 2, &r, &expected), TALLY_RETRANSMIT);
    assert_int_equal(apply(t, c, 2, b, p, 2, &r, &expected), TALLY_RETRANSMIT);
    const uint64_t odd[] = {5};
    assert_int_equal(apply(t, c, 2, odd, p, 1, &r, &expected), TALLY_CONFLICT);
    assert_int_equal(apply(t, c, 1, odd, p, 1, &r, &expected), TALLY_RETRANSMIT);
    assert_int_equal(apply(t, c, 4, b, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.duplicate, 1);
    assert_int_equal(votes_of(t, 7), 21);
    tally_free(t);
}

/* Collector 0 limited to circuit 2 (and an id no project has): its votes for circuit 2
 * count, for a known project elsewhere are rejected as not allowed without using up the
 * ballot, for an unknown project are rejected as unknown (checked first); collector 1 is
 * not limited. */
static void test_restrict_rejects_outside_circuits(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t circuits[] = {777, 2};
    assert_int_equal(tally_collector_restrict(t, 0, circuits, 2), 0);
    /* 123456 and 0 are circuit 2; 7 and 4000000000 circuit 1; 99 circuit 3; 8 unknown. */
    const uint64_t b[] = {1, 2, 3, 4, 5, 6};
    const uint32_t p[] = {123456, 7, 0, 8, 4000000000u, 99};
    struct tally_batch_result r;
    uint64_t expected;
    assert_int_equal(apply(t, 0, 1, b, p, 6, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 2);
    assert_int_equal(r.duplicate, 0);
    assert_int_equal(r.rejected_unknown, 1);
    assert_int_equal(r.rejected_not_allowed, 3);
    assert_int_equal(votes_of(t, 123456), 1);
    assert_int_equal(votes_of(t, 0), 1);
    assert_int_equal(votes_of(t, 7), 0);
    /* The rejected ballots 2, 5, 6 are unused: collector 1 (unrestricted) counts them. */
    const uint64_t b2[] = {2, 5, 6, 1};
    const uint32_t p2[] = {7, 4000000000u, 99, 7};
    assert_int_equal(apply(t, 1, 1, b2, p2, 4, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 3);
    assert_int_equal(r.duplicate, 1);
    assert_int_equal(r.rejected_not_allowed, 0);
    assert_int_equal(votes_of(t, 7), 1);

    const struct tally_totals *tot = tally_applied_totals(t);
    assert_int_equal(tot->votes, 10);
    assert_int_equal(tot->accepted, 5);
    assert_int_equal(tot->duplicate, 1);
    assert_int_equal(tot->rejected, 4); /* both reasons */
    uint64_t unknown = 0, not_allowed = 0;
    tally_rejected_by_reason(t, &unknown, &not_allowed);
    assert_int_equal(unknown, 1);
    assert_int_equal(not_allowed, 3);
    tally_rejected_by_reason(t, NULL, NULL);

    /* The delta carries the reason per batch; the collector's mark counts both. */
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_non_null(d);
    assert_int_equal(d->n_batches, 2);
    assert_int_equal(d->batches[0].rejected_unknown, 1);
    assert_int_equal(d->batches[0].rejected_not_allowed, 3);
    assert_int_equal(d->batches[1].rejected_unknown, 0);
    assert_int_equal(d->batches[1].rejected_not_allowed, 0);
    assert_int_equal(d->n_tokens, 5);
    assert_int_equal(d->marks[0].collector, 0);
    assert_int_equal(d->marks[0].add.rejected, 4);
    tally_checkpoint_commit(t);
    assert_int_equal(tally_collector_at(t, 0)->durable.rejected, 4);
    assert_int_equal(tally_durable_totals(t)->rejected, 4);

    assert_int_equal(tally_collector_restrict(t, 2, circuits, 2), -EINVAL);
    tally_free(t);
}

/* A restriction can be changed, emptied and lifted at any time; it applies from the next
 * batch, and a batch applied before is still a retransmission (or a conflict), counting
 * nothing, whatever the restriction now says. */
static void test_restrict_change_and_lift(void **state)
{
    (void)state;
    struct tally *t = make();
    struct tally_batch_result r;
    uint64_t expected;
    const uint32_t c1[] = {1}, c3[] = {3};
    const uint32_t p[] = {7, 99};
    const uint64_t b1[] = {10, 11};
    assert_int_equal(tally_collector_restrict(t, 0, c1, 1), 0);
    assert_int_equal(apply(t, 0, 1, b1, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.rejected_not_allowed, 1);

    /* Re-restricted to circuit 3: now 99 counts and 7 does not. */
    assert_int_equal(tally_collector_restrict(t, 0, c3, 1), 0);
    assert_int_equal(apply(t, 0, 1, b1, p, 2, &r, &expected), TALLY_RETRANSMIT);
    const uint64_t other[] = {10, 12};
    assert_int_equal(apply(t, 0, 1, other, p, 2, &r, &expected), TALLY_CONFLICT);
    assert_int_equal(votes_of(t, 7), 1);
    assert_int_equal(votes_of(t, 99), 0);
    const uint64_t b2[] = {20, 11};
    assert_int_equal(apply(t, 0, 2, b2, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.rejected_not_allowed, 1);
    assert_int_equal(votes_of(t, 99), 1);

    /* An empty list (not NULL) allows nothing. */
    assert_int_equal(tally_collector_restrict(t, 0, c3, 0), 0);
    const uint64_t b3[] = {30, 31};
    assert_int_equal(apply(t, 0, 3, b3, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 0);
    assert_int_equal(r.rejected_not_allowed, 2);

    /* Lifted: every project again. */
    assert_int_equal(tally_collector_restrict(t, 0, NULL, 0), 0);
    assert_int_equal(apply(t, 0, 4, b3, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 2);
    assert_int_equal(r.rejected_not_allowed, 0);
    assert_int_equal(votes_of(t, 7), 2);
    assert_int_equal(votes_of(t, 99), 2);
    uint64_t unknown = 9, not_allowed = 0;
    tally_rejected_by_reason(t, &unknown, &not_allowed);
    assert_int_equal(unknown, 0);
    assert_int_equal(not_allowed, 4);
    assert_int_equal(tally_applied_totals(t)->rejected, 4);
    tally_free(t);
}

/* Restrictions stay with their collector while more collectors are registered (the
 * collector arrays are reallocated); new collectors are not restricted. */
static void test_restrict_survives_new_collectors(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t c2[] = {2};
    assert_int_equal(tally_collector_restrict(t, 1, c2, 1), 0);
    char id[16];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        tally_collector_add(t, id, 0, NULL);
    }
    struct tally_batch_result r;
    uint64_t expected;
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {7, 0};
    assert_int_equal(apply(t, 1, 1, b, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.rejected_not_allowed, 1);
    const uint64_t b2[] = {3, 4};
    assert_int_equal(apply(t, 41, 1, b2, p, 2, &r, &expected), TALLY_APPLIED);
    assert_int_equal(r.accepted, 2);
    assert_int_equal(r.rejected_not_allowed, 0);
    tally_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_basic_and_growth),
        cmocka_unit_test(test_set_incremental_growth),
        cmocka_unit_test(test_set_sized_up_front_does_not_grow),
        cmocka_unit_test(test_set_chosen_tokens_do_not_collide),
        cmocka_unit_test(test_set_progressions_probe_short),
        cmocka_unit_test(test_set_hash_depends_on_key),
        cmocka_unit_test(test_registry_lookup),
        cmocka_unit_test(test_apply_counts_dedups_rejects),
        cmocka_unit_test(test_batch_dedup_by_seq),
        cmocka_unit_test(test_checkpoint_seal_commit),
        cmocka_unit_test(test_seq_conflict),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_restrict_rejects_outside_circuits),
        cmocka_unit_test(test_restrict_change_and_lift),
        cmocka_unit_test(test_restrict_survives_new_collectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
