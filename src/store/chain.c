/* The canonical encodings hashed into the record (store/chain.h, docs/record.md): the
 * checkpoint hash and the token-page digest, BLAKE2b-256 from libsodium. Pure: sorts
 * copies of its inputs and hashes them; knows no table and no connection. */
#include "store/chain.h"

#include "core/endian.h"
#include "core/xalloc.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t chain_zeros[STORE_HASH_BYTES];

/* Encoded values are staged here and handed to BLAKE2b in blocks: a checkpoint of many
 * small batches or deltas would otherwise cost one update call per 4-byte field. */
struct chain_sink {
    crypto_generichash_state st;
    uint8_t buf[4096];
    size_t n;
};

static void sink_flush(struct chain_sink *k)
{
    if (k->n)
        crypto_generichash_update(&k->st, k->buf, k->n);
    k->n = 0;
}

static void sink_put(struct chain_sink *k, const void *p, size_t n)
{
    if (n > sizeof(k->buf) - k->n) {
        sink_flush(k);
        if (n > sizeof(k->buf)) {
            crypto_generichash_update(&k->st, p, n);
            return;
        }
    }
    memcpy(k->buf + k->n, p, n);
    k->n += n;
}

static void sink_le32(struct chain_sink *k, uint32_t v)
{
    uint8_t b[4];
    le32_put(b, v);
    sink_put(k, b, sizeof(b));
}

static void sink_le64(struct chain_sink *k, uint64_t v)
{
    uint8_t b[8];
    le64_put(b, v);
    sink_put(k, b, sizeof(b));
}

static const uint8_t *chain_digest_or_zeros(const uint8_t *d)
{
    return d ? d : chain_zeros;
}

static int cmp_u32(uint32_t a, uint32_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

/* By collector id as unsigned bytes (strcmp compares unsigned char), then seq. Equal keys
 * never come from the database (a primary key), but ties are broken on every field anyway
 * so that the hash is a function of the set of batches, never of the order given. */
static int cmp_batch(const void *pa, const void *pb)
{
    const struct store_chain_batch *a = *(const struct store_chain_batch *const *)pa;
    const struct store_chain_batch *b = *(const struct store_chain_batch *const *)pb;
    int c = strcmp(a->collector_id, b->collector_id);
    if (c)
        return c;
    if ((c = cmp_u64(a->seq, b->seq)) != 0)
        return c;
    c = memcmp(chain_digest_or_zeros(a->digest), chain_digest_or_zeros(b->digest),
               STORE_HASH_BYTES);
    if (c)
        return c;
    if ((c = cmp_u32(a->votes, b->votes)) != 0 || (c = cmp_u32(a->accepted, b->accepted)) != 0 ||
        (c = cmp_u32(a->duplicate, b->duplicate)) != 0 ||
        (c = cmp_u32(a->rejected_unknown, b->rejected_unknown)) != 0)
        return c;
    return cmp_u32(a->rejected_not_allowed, b->rejected_not_allowed);
}

struct chain_delta {
    uint32_t id;
    uint64_t votes;
};

static int cmp_delta(const void *pa, const void *pb)
{
    const struct chain_delta *a = pa, *b = pb;
    int c = cmp_u32(a->id, b->id);
    return c ? c : cmp_u64(a->votes, b->votes);
}

static int cmp_page(const void *pa, const void *pb)
{
    const struct store_chain_page *a = pa, *b = pb;
    int c = cmp_u64(a->id, b->id);
    return c ? c : memcmp(a->digest, b->digest, STORE_HASH_BYTES);
}

void store_chain_hash(const struct store_chain_input *in, uint8_t out[STORE_HASH_BYTES])
{
    static const char tag_v1[] = "tallyd-checkpoint-v1";
    static const char tag_v2[] = "tallyd-checkpoint-v2";
    /* v2 only where the new field is used: every record written before it verifies as it
     * always did. */
    bool v2 = false;
    for (size_t i = 0; i < in->n_batches && !v2; i++)
        v2 = in->batches[i].rejected_not_allowed != 0;
    const struct store_chain_batch **batches = xcalloc(in->n_batches, sizeof(*batches));
    struct chain_delta *deltas = xcalloc(in->n_deltas, sizeof(*deltas));
    struct store_chain_page *pages = xcalloc(in->n_pages, sizeof(*pages));
    for (size_t i = 0; i < in->n_batches; i++)
        batches[i] = &in->batches[i];
    for (size_t i = 0; i < in->n_deltas; i++) {
        deltas[i].id = in->project_ids[i];
        deltas[i].votes = in->votes[i];
    }
    if (in->n_pages)
        memcpy(pages, in->pages, in->n_pages * sizeof(*pages));
    if (in->n_batches > 1)
        qsort(batches, in->n_batches, sizeof(*batches), cmp_batch);
    if (in->n_deltas > 1)
        qsort(deltas, in->n_deltas, sizeof(*deltas), cmp_delta);
    if (in->n_pages > 1)
        qsort(pages, in->n_pages, sizeof(*pages), cmp_page);

    struct chain_sink k;
    k.n = 0;
    crypto_generichash_init(&k.st, NULL, 0, STORE_HASH_BYTES);
    if (v2)
        sink_put(&k, tag_v2, sizeof(tag_v2) - 1);
    else
        sink_put(&k, tag_v1, sizeof(tag_v1) - 1);
    sink_put(&k, chain_digest_or_zeros(in->prev_hash), STORE_HASH_BYTES);
    sink_le64(&k, in->id);
    sink_le64(&k, in->epoch);
    sink_le64(&k, (uint64_t)in->n_batches);
    for (size_t i = 0; i < in->n_batches; i++) {
        const struct store_chain_batch *b = batches[i];
        size_t len = strlen(b->collector_id);
        sink_le32(&k, (uint32_t)len);
        sink_put(&k, b->collector_id, len);
        sink_le64(&k, b->seq);
        sink_put(&k, chain_digest_or_zeros(b->digest), STORE_HASH_BYTES);
        sink_le32(&k, b->votes);
        sink_le32(&k, b->accepted);
        sink_le32(&k, b->duplicate);
        sink_le32(&k, b->rejected_unknown);
        if (v2)
            sink_le32(&k, b->rejected_not_allowed);
    }
    sink_le64(&k, (uint64_t)in->n_deltas);
    for (size_t i = 0; i < in->n_deltas; i++) {
        sink_le32(&k, deltas[i].id);
        sink_le64(&k, deltas[i].votes);
    }
    sink_le64(&k, (uint64_t)in->n_pages);
    for (size_t i = 0; i < in->n_pages; i++) {
        sink_le64(&k, pages[i].id);
        sink_put(&k, pages[i].digest, STORE_HASH_BYTES);
    }
    sink_flush(&k);
    crypto_generichash_final(&k.st, out, STORE_HASH_BYTES);
    free(pages);
    free(deltas);
    free(batches);
}

void store_page_digest(const uint8_t salt[STORE_SALT_BYTES], const uint8_t *tokens_le,
                       size_t n_tokens, uint8_t out[STORE_HASH_BYTES])
{
    static const char tag[] = "tallyd-page-v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, STORE_HASH_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof(tag) - 1);
    crypto_generichash_update(&st, salt, STORE_SALT_BYTES);
    if (n_tokens)
        crypto_generichash_update(&st, tokens_le, 8 * (unsigned long long)n_tokens);
    crypto_generichash_final(&st, out, STORE_HASH_BYTES);
}
