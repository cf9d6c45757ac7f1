/* http_history: the bounded progress history of GET /v1/history. One point per checkpoint
 * until HTTP_HISTORY_MAX; then the first point stays, every other one goes and the stride
 * doubles, a new checkpoint is kept only on the stride, and the newest is always last. Also
 * a republished id, ids with gaps, a record that went back, and a recovered history that
 * came thinned at a stride of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "http/internal.h"

static struct http_history_point pt(uint64_t id)
{
    return (struct http_history_point){id, (int64_t)id * 1000, id * 10, id, id / 2, id / 3};
}

/* Ascending ids; the first point is first_id; all but the last on the stride; the last is
 * newest. */
static void check(const struct http_history *h, uint64_t first_id, uint64_t newest)
{
    assert_true(h->n >= 1 && h->n <= HTTP_HISTORY_MAX);
    assert_int_equal(h->points[0].checkpoint, first_id);
    assert_int_equal(h->points[h->n - 1].checkpoint, newest);
    assert_true(h->stride >= 1 && (h->stride & (h->stride - 1)) == 0);
    for (size_t i = 1; i < h->n; i++) {
        assert_true(h->points[i].checkpoint > h->points[i - 1].checkpoint);
        if (i + 1 < h->n)
            assert_int_equal((h->points[i].checkpoint - first_id) % h->stride, 0);
        /* The point's figures are its own checkpoint's. */
        struct http_history_point want = pt(h->points[i].checkpoint);
        assert_memory_equal(&h->points[i], &want, sizeof(want));
    }
}

static void test_every_checkpoint_until_full(void **state)
{
    (void)state;
    struct http_history h;
    http_history_init(&h);
    for (uint64_t id = 1; id <= HTTP_HISTORY_MAX; id++) {
        struct http_history_point p = pt(id);
        http_history_add(&h, &p);
    }
    assert_int_equal(h.n, HTTP_HISTORY_MAX);
    assert_int_equal(h.stride, 1);
    check(&h, 1, HTTP_HISTORY_MAX);
    /* One more: full, so every other point goes and the stride is 2. */
    struct http_history_point p = pt(HTTP_HISTORY_MAX + 1);
    http_history_add(&h, &p);
    assert_int_equal(h.stride, 2);
    assert_int_equal(h.n, HTTP_HISTORY_MAX / 2 + 1);
    check(&h, 1, HTTP_HISTORY_MAX + 1);
    /* 2050 is off the stride: it is shown while newest, then replaced by 2051. */
    p = pt(HTTP_HISTORY_MAX + 2);
    http_history_add(&h, &p);
    assert_int_equal(h.n, HTTP_HISTORY_MAX / 2 + 2);
    assert_int_equal(h.points[h.n - 1].checkpoint, HTTP_HISTORY_MAX + 2);
    p = pt(HTTP_HISTORY_MAX + 3);
    http_history_add(&h, &p);
    assert_int_equal(h.n, HTTP_HISTORY_MAX / 2 + 2);
    assert_int_equal(h.points[h.n - 2].checkpoint, HTTP_HISTORY_MAX + 1);
    assert_int_equal(h.points[h.n - 1].checkpoint, HTTP_HISTORY_MAX + 3);
    check(&h, 1, HTTP_HISTORY_MAX + 3);
    http_history_cleanup(&h);
}

/* A long night: a million checkpoints keep about HTTP_HISTORY_MAX / 2 .. MAX points. */
static void test_long_run(void **state)
{
    (void)state;
    struct http_history h;
    http_history_init(&h);
    const uint64_t first = 7, last = 1000000;
    for (uint64_t id = first; id <= last; id++) {
        struct http_history_point p = pt(id);
        http_history_add(&h, &p);
        if (id % 99991 == 0)
            check(&h, first, id);
    }
    check(&h, first, last);
    assert_true(h.n > HTTP_HISTORY_MAX / 2);
    /* Consecutive ids: the kept ones are exactly first + k * stride. */
    uint64_t kept = (last - first) / h.stride + 1;
    bool last_on = (last - first) % h.stride == 0;
    assert_int_equal(h.n, kept + (last_on ? 0 : 1));
    assert_int_equal(h.stride, 512);
    http_history_cleanup(&h);
}

static void test_republish_gaps_and_going_back(void **state)
{
    (void)state;
    struct http_history h;
    http_history_init(&h);
    struct http_history_point p = pt(5);
    http_history_add(&h, &p);
    p.accepted = 99; /* the same checkpoint again: replaced, one point */
    http_history_add(&h, &p);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.points[0].accepted, 99);
    /* Ids with gaps (every third one published), past the limit: still bounded, the
     * first kept, the newest last. */
    http_history_cleanup(&h);
    http_history_init(&h);
    for (uint64_t id = 1; id < 3 * 5000; id += 3) {
        p = pt(id);
        http_history_add(&h, &p);
    }
    check(&h, 1, 3 * 4999 + 1);
    assert_true(h.n > HTTP_HISTORY_MAX / 4);
    /* Even ids only from 2: after the first doubling none of them is dropped by parity of
     * the offset alone; the list still shrinks. */
    http_history_cleanup(&h);
    http_history_init(&h);
    for (uint64_t id = 2; id <= 2 * 5000; id += 2) {
        p = pt(id);
        http_history_add(&h, &p);
    }
    check(&h, 2, 10000);
    /* The record went back to 5000: the points after it go, 5000 is the newest. */
    p = pt(5000);
    http_history_add(&h, &p);
    check(&h, 2, 5000);
    p = pt(1); /* before the first point: it is the only one */
    http_history_add(&h, &p);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.stride, 1);
    assert_int_equal(h.points[0].checkpoint, 1);
    http_history_cleanup(&h);
}

/* The record's history thinned at stride 4 (1, 5, ..., 4093, then the last, 4094): the
 * server goes on at that stride, the newest always last, and fills up without thinning the
 * recovered points unevenly. */
static void test_recovered_stride(void **state)
{
    (void)state;
    struct http_history h;
    http_history_init(&h);
    for (uint64_t id = 1; id <= 4093; id += 4) {
        struct http_history_point p = pt(id);
        http_history_add(&h, &p);
    }
    struct http_history_point p = pt(4094);
    http_history_add(&h, &p);
    http_history_set_stride(&h, 4);
    assert_int_equal(h.stride, 4);
    assert_int_equal(h.n, 1025);
    check(&h, 1, 4094);
    for (uint64_t id = 4095; id <= 4200; id++) {
        p = pt(id);
        http_history_add(&h, &p);
        check(&h, 1, id);
    }
    /* 4094 (off the stride) gave way; 4097, 4101, ... stayed. */
    assert_int_equal(h.points[1024].checkpoint, 4097);
    for (uint64_t id = 4201; id <= 4 * 4096; id++) {
        p = pt(id);
        http_history_add(&h, &p);
    }
    check(&h, 1, 4 * 4096);
    assert_true(h.stride >= 8); /* 4 * 4096 checkpoints in at most 2048 points */
    http_history_cleanup(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_checkpoint_until_full),
        cmocka_unit_test(test_long_run),
        cmocka_unit_test(test_republish_gaps_and_going_back),
        cmocka_unit_test(test_recovered_stride),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
