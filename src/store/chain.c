/* The canonical encodings hashed into the record (store/chain.h, docs/record.md): the
 * checkpoint hash (v1/v2, and v3: Merkle root over the batches and body hash, linked by
 * record_chain_link) and the token-page digest, BLAKE2b-256 from libsodium. Pure: sorts
 * copies of its inputs and hashes them; knows no table and no connection. */
#include "store/chain.h"

#include "record/record.h"

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

/* ---- chain format v3 ------------------------------------------------------------------- */

static void sink_str(struct chain_sink *k, const char *s)
{
    size_t len = strlen(s);
    sink_le32(k, (uint32_t)len);
    sink_put(k, s, len);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_batch3(const void *pa, const void *pb)
{
    const struct store_chain_batch3 *a = *(const struct store_chain_batch3 *const *)pa;
    const struct store_chain_batch3 *b = *(const struct store_chain_batch3 *const *)pb;
    int c = strcmp(a->collector_id, b->collector_id);
    if (c || (c = cmp_u64(a->seq, b->seq)) != 0)
        return c;
    c = memcmp(chain_digest_or_zeros(a->digest), chain_digest_or_zeros(b->digest),
               STORE_HASH_BYTES);
    if (c || (c = cmp_u32(a->kind, b->kind)) != 0 || (c = cmp_u32(a->votes, b->votes)) != 0)
        return c;
    return cmp_u32(a->accepted, b->accepted);
}

static int cmp_table(const void *pa, const void *pb)
{
    const struct store_chain_table *a = *(const struct store_chain_table *const *)pa;
    const struct store_chain_table *b = *(const struct store_chain_table *const *)pb;
    int c = strcmp(a->id, b->id);
    return c ? c : cmp_i64(a->ballots, b->ballots);
}

static int cmp_sheet(const void *pa, const void *pb)
{
    const struct store_chain_sheet *a = *(const struct store_chain_sheet *const *)pa;
    const struct store_chain_sheet *b = *(const struct store_chain_sheet *const *)pb;
    int c = strcmp(a->table_id, b->table_id);
    if (c || (c = cmp_u32(a->version, b->version)) != 0 ||
        (c = strcmp(a->collector_id, b->collector_id)) != 0 || (c = cmp_u64(a->seq, b->seq)) != 0)
        return c;
    return memcmp(a->digest, b->digest, STORE_HASH_BYTES);
}

static int cmp_event(const void *pa, const void *pb)
{
    const struct store_chain_event *a = *(const struct store_chain_event *const *)pa;
    const struct store_chain_event *b = *(const struct store_chain_event *const *)pb;
    int c = cmp_u64(a->request_id, b->request_id);
    return c ? c : cmp_u32(a->kind, b->kind);
}

static int cmp_correction(const void *pa, const void *pb)
{
    const struct store_chain_correction *a = *(const struct store_chain_correction *const *)pa;
    const struct store_chain_correction *b = *(const struct store_chain_correction *const *)pb;
    int c = cmp_u64(a->id, b->id);
    if (c || (c = cmp_u32(a->kind, b->kind)) != 0 || (c = cmp_i64(a->at_us, b->at_us)) != 0)
        return c;
    return strcmp(a->reason, b->reason);
}

struct chain_delta3 {
    uint32_t id;
    int64_t votes;
};

static int cmp_delta3(const void *pa, const void *pb)
{
    const struct chain_delta3 *a = pa, *b = pb;
    int c = cmp_u32(a->id, b->id);
    return c ? c : cmp_i64(a->votes, b->votes);
}

/* Copies n (id, value) pairs and sorts them by id; the caller frees the result. */
static struct chain_delta3 *chain_deltas_sorted(const uint32_t *ids, const int64_t *v, size_t n)
{
    struct chain_delta3 *d = xcalloc(n ? n : 1, sizeof(*d));
    for (size_t i = 0; i < n; i++)
        d[i] = (struct chain_delta3){ids[i], v[i]};
    if (n > 1)
        qsort(d, n, sizeof(*d), cmp_delta3);
    return d;
}

/* A table list by id bytes: "LE64 n || per table: LE32 len || id || LE64 ballots". scratch
 * holds at least n pointers. */
static void sink_tables(struct chain_sink *k, const struct store_chain_table *t, size_t n,
                        const struct store_chain_table **scratch)
{
    for (size_t i = 0; i < n; i++)
        scratch[i] = &t[i];
    if (n > 1)
        qsort(scratch, n, sizeof(*scratch), cmp_table);
    sink_le64(k, (uint64_t)n);
    for (size_t i = 0; i < n; i++) {
        sink_str(k, scratch[i]->id);
        sink_le64(k, (uint64_t)scratch[i]->ballots);
    }
}

static void sink_batch3(struct chain_sink *k, const struct store_chain_batch3 *b,
                        const struct store_chain_table **scratch)
{
    sink_str(k, b->collector_id);
    sink_le64(k, b->seq);
    sink_put(k, chain_digest_or_zeros(b->digest), STORE_HASH_BYTES);
    sink_le32(k, b->kind);
    sink_le32(k, b->votes);
    sink_le32(k, b->accepted);
    sink_le32(k, b->duplicate);
    sink_le32(k, b->sheets);
    sink_le32(k, b->sheets_accepted);
    sink_le32(k, b->sheets_duplicate);
    sink_le32(k, (uint32_t)b->n_reasons);
    for (size_t r = 0; r < b->n_reasons; r++)
        sink_le32(k, b->reasons[r]);
    uint8_t counts_hash[STORE_HASH_BYTES];
    if (b->has_counts)
        crypto_generichash(counts_hash, sizeof(counts_hash), b->counts, b->counts_len, NULL, 0);
    else
        memset(counts_hash, 0, sizeof(counts_hash));
    sink_put(k, counts_hash, sizeof(counts_hash));
    sink_tables(k, b->tables, b->n_tables, scratch);
}

static void sink_correction(struct chain_sink *k, const struct store_chain_correction *c)
{
    sink_le64(k, c->id);
    sink_le32(k, c->kind);
    sink_str(k, c->actor);
    sink_str(k, c->reason);
    sink_le64(k, (uint64_t)c->at_us);
    sink_str(k, c->table_id);
    sink_str(k, c->collector_id);
    sink_le64(k, c->seq);
    sink_le32(k, c->from_version);
    sink_le32(k, c->to_version);
    struct chain_delta3 *d = chain_deltas_sorted(c->project_ids, c->deltas, c->n_deltas);
    sink_le64(k, (uint64_t)c->n_deltas);
    for (size_t i = 0; i < c->n_deltas; i++) {
        sink_le32(k, d[i].id);
        sink_le64(k, (uint64_t)d[i].votes);
    }
    free(d);
    sink_le64(k, (uint64_t)c->blank_delta);
    sink_le64(k, (uint64_t)c->null_delta);
    sink_le64(k, (uint64_t)c->ballots_delta);
}

void store_chain_hash_v3(const struct store_chain_input3 *in, uint8_t root[STORE_HASH_BYTES],
                         uint8_t body[STORE_HASH_BYTES], uint8_t hash[STORE_HASH_BYTES])
{
    static const char tag[] = "tallyd-body-v3";
    size_t n_b = in->n_batches, max_tables = in->n_table_deltas;
    for (size_t i = 0; i < n_b; i++)
        if (in->batches[i].n_tables > max_tables)
            max_tables = in->batches[i].n_tables;
    const struct store_chain_batch3 **batches = xcalloc(n_b ? n_b : 1, sizeof(*batches));
    const struct store_chain_table **tables = xcalloc(max_tables ? max_tables : 1, sizeof(*tables));
    const struct store_chain_sheet **sheets =
        xcalloc(in->n_sheets ? in->n_sheets : 1, sizeof(*sheets));
    const struct store_chain_correction **corr =
        xcalloc(in->n_corrections ? in->n_corrections : 1, sizeof(*corr));
    struct store_chain_page *pages = xcalloc(in->n_pages ? in->n_pages : 1, sizeof(*pages));
    const struct store_chain_event **events =
        xcalloc(in->n_events ? in->n_events : 1, sizeof(*events));
    for (size_t i = 0; i < in->n_events; i++)
        events[i] = &in->events[i];
    if (in->n_events > 1)
        qsort(events, in->n_events, sizeof(*events), cmp_event);
    uint8_t(*leaves)[STORE_HASH_BYTES] = xcalloc(n_b ? n_b : 1, sizeof(*leaves));
    for (size_t i = 0; i < n_b; i++)
        batches[i] = &in->batches[i];
    for (size_t i = 0; i < in->n_sheets; i++)
        sheets[i] = &in->sheets[i];
    for (size_t i = 0; i < in->n_corrections; i++)
        corr[i] = &in->corrections[i];
    if (in->n_pages)
        memcpy(pages, in->pages, in->n_pages * sizeof(*pages));
    if (n_b > 1)
        qsort(batches, n_b, sizeof(*batches), cmp_batch3);
    if (in->n_sheets > 1)
        qsort(sheets, in->n_sheets, sizeof(*sheets), cmp_sheet);
    if (in->n_corrections > 1)
        qsort(corr, in->n_corrections, sizeof(*corr), cmp_correction);
    if (in->n_pages > 1)
        qsort(pages, in->n_pages, sizeof(*pages), cmp_page);
    struct chain_delta3 *deltas = chain_deltas_sorted(in->project_ids, in->votes, in->n_deltas);

    for (size_t i = 0; i < n_b; i++)
        record_merkle_leaf(batches[i]->collector_id, batches[i]->seq, batches[i]->digest,
                           leaves[i]);
    record_merkle_root((const uint8_t(*)[STORE_HASH_BYTES])leaves, n_b, root);

    struct chain_sink k;
    k.n = 0;
    crypto_generichash_init(&k.st, NULL, 0, STORE_HASH_BYTES);
    sink_put(&k, tag, sizeof(tag) - 1);
    sink_le64(&k, (uint64_t)n_b);
    for (size_t i = 0; i < n_b; i++)
        sink_batch3(&k, batches[i], tables);
    sink_le64(&k, (uint64_t)in->n_deltas);
    for (size_t i = 0; i < in->n_deltas; i++) {
        sink_le32(&k, deltas[i].id);
        sink_le64(&k, (uint64_t)deltas[i].votes);
    }
    sink_le64(&k, (uint64_t)in->n_pages);
    for (size_t i = 0; i < in->n_pages; i++) {
        sink_le64(&k, pages[i].id);
        sink_put(&k, pages[i].digest, STORE_HASH_BYTES);
    }
    sink_tables(&k, in->table_deltas, in->n_table_deltas, tables);
    sink_le64(&k, (uint64_t)in->n_sheets);
    for (size_t i = 0; i < in->n_sheets; i++) {
        const struct store_chain_sheet *s = sheets[i];
        sink_str(&k, s->table_id);
        sink_le32(&k, s->version);
        sink_str(&k, s->collector_id);
        sink_le64(&k, s->seq);
        sink_put(&k, chain_digest_or_zeros(s->digest), STORE_HASH_BYTES);
    }
    sink_le64(&k, (uint64_t)in->n_corrections);
    for (size_t i = 0; i < in->n_corrections; i++)
        sink_correction(&k, corr[i]);
    sink_le64(&k, (uint64_t)in->n_events);
    for (size_t i = 0; i < in->n_events; i++) {
        const struct store_chain_event *e = events[i];
        sink_le64(&k, e->request_id);
        sink_le32(&k, e->kind);
        sink_str(&k, e->actor ? e->actor : "");
        sink_le64(&k, (uint64_t)e->at_us);
        sink_le32(&k, (uint32_t)e->payload_len);
        if (e->payload_len)
            sink_put(&k, e->payload, e->payload_len);
    }
    sink_flush(&k);
    crypto_generichash_final(&k.st, body, STORE_HASH_BYTES);
    record_chain_link(in->prev_hash, in->id, in->epoch, root, body, hash);

    free(events);
    free(deltas);
    free(leaves);
    free(pages);
    free(corr);
    free(sheets);
    free(tables);
    free(batches);
}

void store_sheet_digest(const char *table_id, uint32_t version, uint32_t blank,
                        uint32_t null_ballots, const uint32_t *rows, size_t n,
                        uint8_t out[STORE_HASH_BYTES])
{
    static const char tag[] = "tallyd-sheet-v1";
    struct chain_sink k;
    k.n = 0;
    crypto_generichash_init(&k.st, NULL, 0, STORE_HASH_BYTES);
    sink_put(&k, tag, sizeof(tag) - 1);
    sink_str(&k, table_id);
    sink_le32(&k, version);
    sink_le32(&k, blank);
    sink_le32(&k, null_ballots);
    sink_le32(&k, (uint32_t)n);
    for (size_t i = 0; i < 2 * n; i++)
        sink_le32(&k, rows[i]);
    sink_flush(&k);
    crypto_generichash_final(&k.st, out, STORE_HASH_BYTES);
}
