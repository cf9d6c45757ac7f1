/* The RFC 6962 Merkle tree over a checkpoint's batches and the v3 chain link
 * (record/record.h, docs/record.md): BLAKE2b-256 from libsodium, nothing else. The root
 * is folded left to right on a stack of complete subtrees, so a checkpoint of 10,000
 * batches costs 2n - 1 hashes and no allocation. */
#include "record/record.h"

#include "core/endian.h"

#include <sodium.h>
#include <string.h>

static const uint8_t record_zeros[RECORD_HASH_BYTES];

static void merkle_node(const uint8_t left[32], const uint8_t right[32], uint8_t out[32])
{
    static const uint8_t one = 0x01;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, RECORD_HASH_BYTES);
    crypto_generichash_update(&st, &one, 1);
    crypto_generichash_update(&st, left, RECORD_HASH_BYTES);
    crypto_generichash_update(&st, right, RECORD_HASH_BYTES);
    crypto_generichash_final(&st, out, RECORD_HASH_BYTES);
}

void record_merkle_leaf(const char *collector_id, uint64_t seq, const uint8_t digest[32],
                        uint8_t out[32])
{
    size_t len = strlen(collector_id);
    uint8_t head[1 + 4], tail[8];
    head[0] = 0x00;
    le32_put(head + 1, (uint32_t)len);
    le64_put(tail, seq);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, RECORD_HASH_BYTES);
    crypto_generichash_update(&st, head, sizeof(head));
    crypto_generichash_update(&st, (const uint8_t *)collector_id, len);
    crypto_generichash_update(&st, tail, sizeof(tail));
    crypto_generichash_update(&st, digest ? digest : record_zeros, RECORD_HASH_BYTES);
    crypto_generichash_final(&st, out, RECORD_HASH_BYTES);
}

void record_merkle_root(const uint8_t (*leaves)[32], size_t n, uint8_t out[32])
{
    if (n == 0) {
        crypto_generichash(out, RECORD_HASH_BYTES, NULL, 0, NULL, 0);
        return;
    }
    /* Complete subtrees of strictly decreasing size (the binary digits of the leaves
     * seen so far): RFC 6962's split at the largest power of two below n is exactly
     * "the biggest complete subtree on the left, the rest on the right". */
    uint8_t stack[8 * sizeof(size_t) + 1][RECORD_HASH_BYTES];
    unsigned level[8 * sizeof(size_t) + 1];
    size_t top = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(stack[top], leaves[i], RECORD_HASH_BYTES);
        level[top++] = 0;
        while (top >= 2 && level[top - 1] == level[top - 2]) {
            merkle_node(stack[top - 2], stack[top - 1], stack[top - 2]);
            level[top - 2]++;
            top--;
        }
    }
    uint8_t r[RECORD_HASH_BYTES];
    memcpy(r, stack[top - 1], RECORD_HASH_BYTES);
    for (size_t k = top - 1; k-- > 0;)
        merkle_node(stack[k], r, r);
    memcpy(out, r, RECORD_HASH_BYTES);
}

/* The largest power of two strictly below n (n >= 2). */
static size_t merkle_split(size_t n)
{
    size_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k;
}

size_t record_merkle_path_len(size_t n)
{
    size_t len = 0;
    for (size_t m = 1; m < n; m <<= 1)
        len++;
    return len;
}

/* PATH(m, D[n]) of RFC 6962 2.1.1, written deepest sibling first at path[0..]. */
static size_t merkle_path_rec(const uint8_t (*leaves)[32], size_t n, size_t m, uint8_t (*path)[32])
{
    if (n <= 1)
        return 0;
    size_t k = merkle_split(n), len;
    if (m < k) {
        len = merkle_path_rec(leaves, k, m, path);
        record_merkle_root(leaves + k, n - k, path[len]);
    } else {
        len = merkle_path_rec(leaves + k, n - k, m - k, path);
        record_merkle_root(leaves, k, path[len]);
    }
    return len + 1;
}

size_t record_merkle_path(const uint8_t (*leaves)[32], size_t n, size_t index, uint8_t (*path)[32])
{
    if (index >= n)
        return 0;
    return merkle_path_rec(leaves, n, index, path);
}

bool record_merkle_verify(const uint8_t leaf[32], size_t index, size_t n, const uint8_t (*path)[32],
                          size_t n_path, const uint8_t root[32])
{
    if (index >= n)
        return false;
    size_t fn = index, sn = n - 1;
    uint8_t r[RECORD_HASH_BYTES];
    memcpy(r, leaf, RECORD_HASH_BYTES);
    for (size_t i = 0; i < n_path; i++) {
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            merkle_node(path[i], r, r);
            if (!(fn & 1))
                while (fn != 0 && !(fn & 1)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            merkle_node(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && sodium_memcmp(r, root, RECORD_HASH_BYTES) == 0;
}

void record_chain_link(const uint8_t *prev, uint64_t id, uint64_t epoch, const uint8_t root[32],
                       const uint8_t body[32], uint8_t out[32])
{
    static const char tag[] = "tallyd-checkpoint-v3";
    uint8_t m[sizeof(tag) - 1 + 32 + 8 + 8 + 32 + 32], *p = m;
    memcpy(p, tag, sizeof(tag) - 1);
    p += sizeof(tag) - 1;
    memcpy(p, prev ? prev : record_zeros, 32);
    p += 32;
    le64_put(p, id);
    p += 8;
    le64_put(p, epoch);
    p += 8;
    memcpy(p, root, 32);
    p += 32;
    memcpy(p, body, 32);
    crypto_generichash(out, RECORD_HASH_BYTES, m, sizeof(m), NULL, 0);
}
