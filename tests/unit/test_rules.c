/* src/rules: the winner rules of one circuit. Every rule on hand-made cases, the decided
 * flag against a brute force over every way to add up to R votes on small circuits, the
 * lot ordering against a golden vector (Python's hashlib.blake2b), and no allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules.h"

#define MAXN 8

struct run {
    struct rules_outcome out[MAXN];
    uint32_t order[MAXN];
    struct rules_circuit res;
};

static void rank(const struct rules_project *p, size_t n, uint32_t seats, uint64_t remaining,
                 const struct rules_lot *lot, struct run *r)
{
    memset(r, 0xa5, sizeof(*r));
    rules_circuit_rank(p, n, seats, remaining, lot, r->order, r->out, &r->res);
}

/* ---- hand-made cases ------------------------------------------------------------------ */

static void test_blocks_and_ties(void **state)
{
    (void)state;
    struct run r;
    /* The HTTP test registry's circuits: one winner and a 3-way tie for the 2nd seat. */
    struct rules_project a[] = {{1004, 30, 0}, {1001, 50, 0}, {1002, 30, 0}, {1003, 30, 0}};
    rank(a, 4, 2, RULES_REMAINING_UNKNOWN, NULL, &r);
    assert_int_equal(r.order[0], 1);
    assert_int_equal(r.order[1], 2); /* equal votes by id: 1002, 1003, 1004 */
    assert_int_equal(r.order[2], 3);
    assert_int_equal(r.order[3], 0);
    assert_true(r.out[1].winner && !r.out[1].tie && r.out[1].rank == 1);
    for (int i = 0; i < 4; i++)
        if (i != 1)
            assert_true(!r.out[i].winner && r.out[i].tie && r.out[i].rank == 2 &&
                        r.out[i].eligible && !r.out[i].by_lot);
    assert_int_equal(r.res.winners, 1);
    assert_true(r.res.tie && r.res.has_margin && !r.res.decided);
    assert_int_equal(r.res.margin, 0);

    /* A tie that fits the seats: both win. */
    struct rules_project b[] = {{5003, 1, 0}, {5001, 9, 0}, {5002, 9, 0}};
    rank(b, 3, 2, 0, NULL, &r);
    assert_true(r.out[1].winner && r.out[2].winner && !r.out[0].winner);
    assert_true(!r.res.tie && r.res.winners == 2 && r.res.margin == 8);
    assert_int_equal(r.out[0].rank, 3);
    assert_true(r.res.decided); /* 1 + 0 < 9 */

    /* Nobody voted: no winner, both flagged as a tie. */
    struct rules_project c[] = {{4001, 0, 0}, {4002, 0, 0}};
    rank(c, 2, 1, RULES_REMAINING_UNKNOWN, NULL, &r);
    assert_true(!r.out[0].winner && r.out[0].tie && r.out[1].tie && r.res.tie);
    assert_int_equal(r.res.winners, 0);
    assert_false(r.res.decided);
    rank(c, 2, 1, 0, NULL, &r);
    assert_true(r.res.decided); /* no votes at all and none to come */
    rank(c, 2, 1, 1, NULL, &r);
    assert_false(r.res.decided);

    /* Zero votes never win even when they fit. */
    struct rules_project d[] = {{1, 3, 0}, {2, 0, 0}};
    rank(d, 2, 2, 0, NULL, &r);
    assert_true(r.out[0].winner && !r.out[1].winner && !r.out[1].tie && r.res.winners == 1);
    assert_false(r.res.has_margin);

    /* No seats: nobody wins, nothing can change. */
    rank(d, 2, 0, 100, NULL, &r);
    assert_true(!r.out[0].winner && !r.res.tie && r.res.decided && !r.res.has_margin);

    /* No projects. */
    rank(NULL, 0, 1, 0, NULL, &r);
    assert_true(r.res.winners == 0 && !r.res.tie && r.res.decided);
}

static void test_min_votes(void **state)
{
    (void)state;
    struct run r;
    /* The leader is below its min_votes: the seats go to the next eligible ones. */
    struct rules_project a[] = {{1, 50, 60}, {2, 30, 0}, {3, 20, 20}, {4, 10, 0}};
    rank(a, 4, 2, RULES_REMAINING_UNKNOWN, NULL, &r);
    assert_true(!r.out[0].eligible && !r.out[0].winner && !r.out[0].tie);
    assert_int_equal(r.out[0].rank, 1); /* rank is by votes over every project */
    assert_true(r.out[1].winner && r.out[2].winner && !r.out[3].winner);
    assert_true(r.out[2].eligible);
    assert_int_equal(r.res.winners, 2);
    assert_int_equal(r.res.margin, 10); /* 20 (2nd eligible) - 10 (3rd eligible) */

    /* A seat stays empty. */
    struct rules_project b[] = {{1, 10, 0}, {2, 5, 6}};
    rank(b, 2, 2, 0, NULL, &r);
    assert_true(r.out[0].winner && !r.out[1].winner && !r.out[1].eligible);
    assert_true(r.res.winners == 1 && !r.res.tie && !r.res.has_margin && r.res.decided);
    rank(b, 2, 2, 1, NULL, &r);
    assert_false(r.res.decided); /* 5 + 1 reaches 6: it would take the empty seat */

    /* An ineligible project in a tied block is no part of the tie. */
    struct rules_project c[] = {{1, 10, 0}, {2, 7, 0}, {3, 7, 8}};
    rank(c, 3, 2, 0, NULL, &r);
    assert_true(r.out[0].winner && r.out[1].winner && !r.out[2].winner && !r.out[2].tie);
    assert_false(r.res.tie);
    assert_true(r.res.decided);

    /* min_votes out of reach keeps a circuit decided however many votes remain. */
    struct rules_project d[] = {{1, 10, 0}, {2, 0, 100}};
    rank(d, 2, 1, 50, NULL, &r);
    assert_true(r.res.decided);
    rank(d, 2, 1, 100, NULL, &r);
    assert_false(r.res.decided);
}

static void test_decided(void **state)
{
    (void)state;
    struct run r;
    struct rules_project a[] = {{1, 10, 0}, {2, 5, 0}};
    rank(a, 2, 1, 4, NULL, &r);
    assert_true(r.res.decided);
    rank(a, 2, 1, 5, NULL, &r); /* 5 + 5 ties the winner: it would lose the seat */
    assert_false(r.res.decided);
    rank(a, 2, 1, RULES_REMAINING_UNKNOWN, NULL, &r);
    assert_false(r.res.decided);
    rank(a, 2, 1, UINT64_MAX - 1, NULL, &r); /* no overflow */
    assert_false(r.res.decided);
    /* A tie on the last seat is never decided, R = 0 included. */
    struct rules_project b[] = {{1, 7, 0}, {2, 7, 0}};
    rank(b, 2, 1, 0, NULL, &r);
    assert_false(r.res.decided);
    uint8_t seed[1] = {1};
    struct rules_lot lot = {seed, 1};
    rank(b, 2, 1, 0, &lot, &r);
    assert_false(r.res.decided);
}

/* BLAKE2b-256(seed || LE32 id), seed = 00 01 .. 0f, from Python's hashlib. */
static void test_lot_golden(void **state)
{
    (void)state;
    uint8_t seed[16];
    for (int i = 0; i < 16; i++)
        seed[i] = (uint8_t)i;
    struct rules_lot lot = {seed, sizeof(seed)};
    uint8_t key[32];
    rules_lot_key(&lot, 42, key);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    assert_string_equal(hex, "f78c4d820e654374c3ae42e956518d72f973e1ca479840f27748bcd34fb23bd0");

    /* hashlib order of 7, 11, 13, 42, 1001: 13, 1001, 7, 11, 42. */
    struct rules_project p[] = {{7, 10, 0},    {11, 10, 0}, {13, 10, 0}, {42, 10, 0},
                                {1001, 10, 0}, {5, 20, 0},  {9, 10, 11}};
    struct run r;
    rank(p, 7, 3, 0, &lot, &r);
    static const uint32_t want[] = {5, 13, 1001, 7, 11, 42, 9};
    for (int k = 0; k < 7; k++)
        assert_int_equal(p[r.order[k]].id, want[k]);
    assert_true(r.out[5].winner && !r.out[5].by_lot && !r.out[5].tie);
    assert_true(r.out[2].winner && r.out[2].by_lot && r.out[2].tie);      /* 13 */
    assert_true(r.out[4].winner && r.out[4].by_lot && r.out[4].tie);      /* 1001 */
    assert_true(!r.out[0].winner && !r.out[0].by_lot && r.out[0].tie);    /* 7 */
    assert_true(!r.out[6].winner && !r.out[6].tie && !r.out[6].eligible); /* 9: min 11 */
    assert_int_equal(r.res.winners, 3);
    assert_true(r.res.tie && !r.res.decided);

    /* Without a seed the same circuit keeps its tie and its empty seats. */
    rank(p, 7, 3, 0, NULL, &r);
    assert_int_equal(r.res.winners, 1);
    assert_true(!r.out[2].winner && r.out[2].tie && !r.out[2].by_lot);

    /* A zero-vote tie is never decided by lot: zero votes never win. */
    struct rules_project z[] = {{1, 0, 0}, {2, 0, 0}};
    rank(z, 2, 1, 0, &lot, &r);
    assert_true(!r.out[0].winner && !r.out[1].winner && r.out[0].tie && r.res.winners == 0);
}

/* ---- brute force ---------------------------------------------------------------------- */

/* Winners by an independent characterisation: an eligible project with votes > 0 wins iff
 * the eligible projects with more votes plus those with as many (itself included) fit in
 * the seats; it ties iff those with more leave a seat and those with as many do not fit. */
static void naive(const struct rules_project *p, size_t n, uint32_t seats, bool *win, bool *tie)
{
    for (size_t i = 0; i < n; i++) {
        win[i] = tie[i] = false;
        if (p[i].votes < p[i].min_votes)
            continue;
        size_t above = 0, eq = 0;
        for (size_t j = 0; j < n; j++) {
            if (p[j].votes < p[j].min_votes)
                continue;
            above += p[j].votes > p[i].votes;
            eq += p[j].votes == p[i].votes;
        }
        win[i] = p[i].votes > 0 && above + eq <= seats;
        tie[i] = above < seats && above + eq > seats;
    }
}

struct brute {
    const struct rules_project *p;
    size_t n;
    uint32_t seats;
    bool base[MAXN];
    bool changed;
};

static void enumerate(struct brute *b, struct rules_project *q, size_t k, uint64_t left)
{
    if (b->changed)
        return;
    if (k == b->n) {
        bool win[MAXN], tie[MAXN];
        naive(q, b->n, b->seats, win, tie);
        for (size_t i = 0; i < b->n; i++)
            if (win[i] != b->base[i])
                b->changed = true;
        return;
    }
    for (uint64_t a = 0; a <= left; a++) {
        q[k].votes = b->p[k].votes + a;
        enumerate(b, q, k + 1, left - a);
    }
    q[k].votes = b->p[k].votes;
}

/* The truth: no tie among voted projects now, and no addition of up to R votes changes the
 * winner set. */
static bool brute_decided(const struct rules_project *p, size_t n, uint32_t seats, uint64_t R)
{
    struct brute b = {.p = p, .n = n, .seats = seats};
    bool tie[MAXN];
    naive(p, n, seats, b.base, tie);
    for (size_t i = 0; i < n; i++)
        if (tie[i] && p[i].votes > 0)
            return false;
    struct rules_project q[MAXN];
    memcpy(q, p, n * sizeof(*p));
    enumerate(&b, q, 0, R);
    return !b.changed;
}

static void check_case(const struct rules_project *p, size_t n, uint32_t seats, uint64_t R)
{
    struct run r;
    rank(p, n, seats, R, NULL, &r);
    bool win[MAXN], tie[MAXN];
    naive(p, n, seats, win, tie);
    uint32_t winners = 0;
    bool any_tie = false;
    for (size_t i = 0; i < n; i++) {
        if (r.out[i].winner != win[i] || r.out[i].tie != tie[i] ||
            r.out[i].eligible != (p[i].votes >= p[i].min_votes))
            fail_msg("project %zu of %zu (seats %u): winner %d/%d tie %d/%d", i, n, seats,
                     r.out[i].winner, win[i], r.out[i].tie, tie[i]);
        winners += win[i];
        any_tie |= tie[i];
        uint32_t above = 0;
        for (size_t j = 0; j < n; j++)
            above += p[j].votes > p[i].votes;
        assert_int_equal(r.out[i].rank, above + 1);
    }
    assert_int_equal(r.res.winners, winners);
    assert_int_equal(r.res.tie, any_tie);
    bool truth = brute_decided(p, n, seats, R);
    if (r.res.decided != truth) {
        char s[256];
        int off = 0;
        for (size_t i = 0; i < n; i++)
            off += snprintf(s + off, sizeof(s) - (size_t)off, " (%u: %llu min %u)", p[i].id,
                            (unsigned long long)p[i].votes, p[i].min_votes);
        fail_msg("decided %d, brute force %d: seats %u R %llu%s", r.res.decided, truth, seats,
                 (unsigned long long)R, s);
    }
}

/* Every circuit of up to 3 projects with votes 0..3, min_votes 0..4, seats 0..3, R 0..3. */
static void test_brute_exhaustive(void **state)
{
    (void)state;
    struct rules_project p[3];
    size_t cases = 0;
    for (size_t n = 1; n <= 3; n++) {
        size_t combos = 1;
        for (size_t i = 0; i < n; i++)
            combos *= 4 * 5;
        for (size_t c = 0; c < combos; c++) {
            size_t x = c;
            for (size_t i = 0; i < n; i++) {
                p[i].id = (uint32_t)(10 - i); /* id order against input order */
                p[i].votes = x % 4;
                x /= 4;
                p[i].min_votes = (uint32_t)(x % 5);
                x /= 5;
            }
            for (uint32_t seats = 0; seats <= 3; seats++)
                for (uint64_t R = 0; R <= 3; R++, cases++)
                    check_case(p, n, seats, R);
        }
    }
    assert_true(cases > 100000);
}

/* Random circuits of 4 to 5 projects (larger votes, fewer of them). */
static void test_brute_random(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    struct rules_project p[5];
    for (int it = 0; it < 3000; it++) {
        size_t n = 4 + (size_t)(it % 2);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[i].id = (uint32_t)(i * 7 % 5 + 1);
            p[i].votes = x % 7;
            p[i].min_votes = (uint32_t)((x >> 8) % 4 == 0 ? (x >> 16) % 8 : 0);
        }
        check_case(p, n, (uint32_t)((x >> 24) % 4), (x >> 32) % 4);
    }
}

/* The snapshot ranks thousands of circuits per checkpoint: nothing may be allocated. */
static void test_no_allocation(void **state)
{
    (void)state;
    struct rules_project p[MAXN];
    for (uint32_t i = 0; i < MAXN; i++)
        p[i] = (struct rules_project){100 + i, i % 3, i == 5 ? 9 : 0};
    uint8_t seed[32] = {7};
    struct rules_lot lot = {seed, sizeof(seed)};
    struct run r;
    rank(p, MAXN, 3, 5, &lot, &r); /* warm up libsodium's CPU detection */
#if !defined(__SANITIZE_ADDRESS__)
    struct mallinfo2 before = mallinfo2();
#endif
    for (int it = 0; it < 1000; it++)
        rank(p, MAXN, (uint32_t)(it % 4), (uint64_t)it, it % 2 ? &lot : NULL, &r);
#if !defined(__SANITIZE_ADDRESS__)
    struct mallinfo2 after = mallinfo2();
    assert_int_equal(before.uordblks, after.uordblks);
    assert_int_equal(before.hblkhd, after.hblkhd);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_and_ties),  cmocka_unit_test(test_min_votes),
        cmocka_unit_test(test_decided),          cmocka_unit_test(test_lot_golden),
        cmocka_unit_test(test_brute_exhaustive), cmocka_unit_test(test_brute_random),
        cmocka_unit_test(test_no_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
