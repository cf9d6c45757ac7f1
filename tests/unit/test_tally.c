/* tally: ballot set, batch dedup, apply rules, and checkpoint deltas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tally/tally.h"

static void test_set_basic_and_growth(void **state)
{
    (void)state;
    struct tally_set s;
    tally_set_init(&s, 10);
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
    tally_set_init(&s, 1000);
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
    tally_set_init(&s, 50000);
    size_t cap0 = tally_set_bytes(&s);
    for (uint64_t i = 1; i <= 50000; i++)
        tally_set_insert(&s, i);
    assert_int_equal(tally_set_bytes(&s), cap0);
    tally_set_cleanup(&s);
}

static const struct tally_project registry[] = {
    {4000000000u, 1}, {7, 1}, {123456, 2}, {0, 2}, {99, 3},
};
#define N_REG (sizeof(registry) / sizeof(registry[0]))

static struct tally *make(void)
{
    struct tally *t = tally_new(registry, N_REG, 100);
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
    assert_null(tally_new(dup, 2, 10));
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
    struct tally *t = tally_new(registry, N_REG, 10);
    struct tally_totals dur = {3, 30, 20, 5, 5};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_basic_and_growth),
        cmocka_unit_test(test_set_incremental_growth),
        cmocka_unit_test(test_set_sized_up_front_does_not_grow),
        cmocka_unit_test(test_registry_lookup),
        cmocka_unit_test(test_apply_counts_dedups_rejects),
        cmocka_unit_test(test_batch_dedup_by_seq),
        cmocka_unit_test(test_checkpoint_seal_commit),
        cmocka_unit_test(test_seq_conflict),
        cmocka_unit_test(test_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
