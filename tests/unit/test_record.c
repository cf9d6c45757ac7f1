/* record: the RFC 6962 Merkle tree over a checkpoint's batches (BLAKE2b-256) and the v3
 * chain link (record/record.h). The tree is checked against a direct transcription of
 * RFC 6962's recursive definition on 0..17 leaves, every audit path against
 * record_merkle_verify (and every single-bit change, wrong index or size against it);
 * roots, leaves and links against known answers computed with Python's hashlib alone
 * (docs/record.md has the same definitions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "record/record.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define MAX_LEAVES 17

static void hex(const uint8_t *d, char out[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void assert_hex(const uint8_t *d, const char *want)
{
    char h[65];
    hex(d, h);
    assert_string_equal(h, want);
}

/* leaf i: collector "c<i>", seq i + 1, digest 32 bytes of value i. */
static void make_leaves(uint8_t leaves[MAX_LEAVES][32])
{
    for (int i = 0; i < MAX_LEAVES; i++) {
        char id[8];
        uint8_t d[32];
        snprintf(id, sizeof(id), "c%d", i);
        memset(d, i, sizeof(d));
        record_merkle_leaf(id, (uint64_t)i + 1, d, leaves[i]);
    }
}

/* RFC 6962 2.1, word for word: MTH({}) = H(), MTH({d0}) = leaf, else split at the largest
 * power of two k < n: H(0x01 || MTH(D[0:k]) || MTH(D[k:n])). */
static void ref_mth(uint8_t (*l)[32], size_t n, uint8_t out[32])
{
    if (n == 0) {
        crypto_generichash(out, 32, NULL, 0, NULL, 0);
        return;
    }
    if (n == 1) {
        memcpy(out, l[0], 32);
        return;
    }
    size_t k = 1;
    while (2 * k < n)
        k *= 2;
    uint8_t m[65];
    m[0] = 1;
    ref_mth(l, k, m + 1);
    ref_mth(l + k, n - k, m + 33);
    crypto_generichash(out, 32, m, sizeof(m), NULL, 0);
}

static void test_root_matches_rfc_definition(void **state)
{
    (void)state;
    uint8_t leaves[MAX_LEAVES][32], a[32], b[32];
    make_leaves(leaves);
    for (size_t n = 0; n <= MAX_LEAVES; n++) {
        record_merkle_root((const uint8_t(*)[32])leaves, n, a);
        ref_mth(leaves, n, b);
        assert_memory_equal(a, b, 32);
    }
}

static void test_known_answers(void **state)
{
    (void)state;
    uint8_t leaves[MAX_LEAVES][32], r[32], out[32], body[32];
    make_leaves(leaves);
    static const struct {
        size_t n;
        const char *root;
    } want[] = {
        {0, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"}, /* H("") */
        {1, "0ec38ce71076f22904880bc16bbd451b6486db5516c49874d34c4e7fae8fff73"},
        {2, "db3cbf50ee97313dc1f62abe7f34ecd14e5cf671c949aa179f999ec9e16e3e3c"},
        {3, "aad1458db9a331b8fee41e781450023da30afab1ac7038e416760ead64df0593"},
        {5, "51f363d2e095301564ba4150025581db4579315293cc6e2dd7275fe0f9721f87"},
        {17, "707a2a4bfcc746d1c325c6086cf6c3a5548c021b48739a1673455dc0311408da"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        record_merkle_root((const uint8_t(*)[32])leaves, want[i].n, r);
        assert_hex(r, want[i].root);
    }
    /* A NULL digest is 32 zero bytes. */
    record_merkle_leaf("c1", 9, NULL, out);
    assert_hex(out, "b77a74f229fc06c54a796d1f588c5df671785a3a34fb90466f3d66784a0bc925");
    /* The chain link over the 5-leaf root and body = H("body"). */
    record_merkle_root((const uint8_t(*)[32])leaves, 5, r);
    crypto_generichash(body, 32, (const uint8_t *)"body", 4, NULL, 0);
    record_chain_link(NULL, 1, 2, r, body, out);
    assert_hex(out, "e4bd68ebd044ac60b8784fde872d8d8a6a0e19a596c2f766652dbd744becfea4");
    uint8_t prev[32];
    memset(prev, 0xaa, sizeof(prev));
    record_chain_link(prev, 7, 3, r, body, out);
    assert_hex(out, "c7743f519fc4c2aa8989348839c9e702fe15b8159f781b5c0cd58a0ed10624a9");
    /* NULL prev is zeros. */
    uint8_t zeros[32] = {0}, again[32];
    record_chain_link(NULL, 7, 3, r, body, out);
    record_chain_link(zeros, 7, 3, r, body, again);
    assert_memory_equal(out, again, 32);
}

static void test_path_len(void **state)
{
    (void)state;
    static const size_t want[] = {0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5};
    for (size_t n = 0; n <= MAX_LEAVES; n++)
        assert_int_equal(record_merkle_path_len(n), want[n]);
}

static void test_paths_verify(void **state)
{
    (void)state;
    uint8_t leaves[MAX_LEAVES][32], root[32], path[8][32];
    make_leaves(leaves);
    const uint8_t(*cl)[32] = (const uint8_t(*)[32])leaves;
    const uint8_t(*cp)[32] = (const uint8_t(*)[32])path;
    for (size_t n = 1; n <= MAX_LEAVES; n++) {
        record_merkle_root(cl, n, root);
        for (size_t i = 0; i < n; i++) {
            size_t len = record_merkle_path(cl, n, i, path);
            assert_true(len <= record_merkle_path_len(n));
            assert_true(record_merkle_verify(leaves[i], i, n, cp, len, root));
            /* The wrong index or another leaf: no proof. (The size is not bound by a path
             * alone: n = 3 accepts leaf 0's path of n = 4 against that tree's root; a
             * receipt takes n from the checkpoint it chains.) */
            for (size_t j = 0; j < n; j++)
                if (j != i) {
                    assert_false(record_merkle_verify(leaves[i], j, n, cp, len, root));
                    assert_false(record_merkle_verify(leaves[j], i, n, cp, len, root));
                }
            assert_false(record_merkle_verify(leaves[i], n, n, cp, len, root)); /* index past */
            /* A path one entry short or long. */
            if (len > 0)
                assert_false(record_merkle_verify(leaves[i], i, n, cp, len - 1, root));
            memset(path[len], 0, 32);
            assert_false(record_merkle_verify(leaves[i], i, n, cp, len + 1, root));
            /* Every single flipped bit of the path, the leaf and the root. */
            for (size_t k = 0; k < len; k++)
                for (int bit = 0; bit < 256; bit += 37) {
                    path[k][bit / 8] ^= (uint8_t)(1u << (bit % 8));
                    assert_false(record_merkle_verify(leaves[i], i, n, cp, len, root));
                    path[k][bit / 8] ^= (uint8_t)(1u << (bit % 8));
                }
            for (int bit = 0; bit < 256; bit++) {
                uint8_t leaf[32], r2[32];
                memcpy(leaf, leaves[i], 32);
                memcpy(r2, root, 32);
                leaf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                r2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                assert_false(record_merkle_verify(leaf, i, n, cp, len, root));
                assert_false(record_merkle_verify(leaves[i], i, n, cp, len, r2));
            }
        }
    }
}

static void test_path_structure(void **state)
{
    (void)state;
    /* RFC 6962 2.1.3's example tree of 7 leaves a..g: PATH(0) = [b, h(c,d), h(e,f,g)],
     * PATH(3) = [c, h(a,b), h(e,f,g)], PATH(4) = [f, g, h(a,b,c,d)], PATH(6) = [h(e,f), h(a..d)].
     */
    uint8_t l[MAX_LEAVES][32], path[8][32], x[32];
    make_leaves(l);
    const uint8_t(*cl)[32] = (const uint8_t(*)[32])l;
    assert_int_equal(record_merkle_path(cl, 7, 0, path), 3);
    assert_memory_equal(path[0], l[1], 32);
    record_merkle_root(cl + 2, 2, x);
    assert_memory_equal(path[1], x, 32);
    record_merkle_root(cl + 4, 3, x);
    assert_memory_equal(path[2], x, 32);
    assert_int_equal(record_merkle_path(cl, 7, 3, path), 3);
    assert_memory_equal(path[0], l[2], 32);
    record_merkle_root(cl, 2, x);
    assert_memory_equal(path[1], x, 32);
    assert_int_equal(record_merkle_path(cl, 7, 4, path), 3);
    assert_memory_equal(path[0], l[5], 32);
    assert_memory_equal(path[1], l[6], 32);
    record_merkle_root(cl, 4, x);
    assert_memory_equal(path[2], x, 32);
    assert_int_equal(record_merkle_path(cl, 7, 6, path), 2);
    record_merkle_root(cl + 4, 2, x);
    assert_memory_equal(path[0], x, 32);
    record_merkle_root(cl, 4, x);
    assert_memory_equal(path[1], x, 32);
    /* One leaf: an empty path proves it against itself; an empty tree proves nothing. */
    assert_int_equal(record_merkle_path(cl, 1, 0, path), 0);
    assert_true(record_merkle_verify(l[0], 0, 1, (const uint8_t(*)[32])path, 0, l[0]));
    assert_int_equal(record_merkle_path(cl, 0, 0, path), 0);
    record_merkle_root(cl, 0, x);
    assert_false(record_merkle_verify(x, 0, 0, (const uint8_t(*)[32])path, 0, x));
    assert_int_equal(record_merkle_path(cl, 5, 5, path), 0); /* index past the end */
}

/* A checkpoint of 10,000 batches: the stack fold holds, and agrees with the reference. */
static void test_big_tree(void **state)
{
    (void)state;
    enum { N = 10000 };
    static uint8_t leaves[N][32];
    for (size_t i = 0; i < N; i++) {
        uint8_t d[32] = {0};
        memcpy(d, &i, sizeof(i));
        record_merkle_leaf("collector", i, d, leaves[i]);
    }
    uint8_t a[32], b[32], path[16][32];
    record_merkle_root((const uint8_t(*)[32])leaves, N, a);
    ref_mth(leaves, N, b);
    assert_memory_equal(a, b, 32);
    for (size_t i = 0; i < N; i += 997) {
        size_t len = record_merkle_path((const uint8_t(*)[32])leaves, N, i, path);
        assert_true(len <= record_merkle_path_len(N) && (i > 0 || len == 14));
        assert_true(record_merkle_verify(leaves[i], i, N, (const uint8_t(*)[32])path, len, a));
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_matches_rfc_definition),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_path_len),
        cmocka_unit_test(test_paths_verify),
        cmocka_unit_test(test_path_structure),
        cmocka_unit_test(test_big_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
