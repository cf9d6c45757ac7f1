/* Batch and tally sheet content digests (BLAKE2b-256 from libsodium). Owns the canonical
 * encodings (digest.h); knows nothing of where digests are kept or compared. */
#include "wire/digest.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/endian.h"
#include "core/xalloc.h"

#define DIGEST_CHUNK 512 /* values encoded per update: bounded stack, few calls */

void wire_batch_digest(uint64_t seq, const uint8_t *nonce, size_t nonce_len,
                       const uint64_t *ballots, const uint32_t *projects, size_t n,
                       uint8_t out[WIRE_DIGEST_BYTES])
{
    static const char tag[] = "tallyd-batch-v1";
    crypto_generichash_state st;
    uint8_t buf[DIGEST_CHUNK * 8];
    crypto_generichash_init(&st, NULL, 0, WIRE_DIGEST_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof(tag) - 1);
    le64_put(buf, seq);
    le32_put(buf + 8, (uint32_t)nonce_len);
    crypto_generichash_update(&st, buf, 12);
    if (nonce_len)
        crypto_generichash_update(&st, nonce, nonce_len);
    le64_put(buf, (uint64_t)n);
    crypto_generichash_update(&st, buf, 8);
    /* The wire arrays are little-endian on the machines we build for, but encode
     * explicitly so the digest never depends on the host. */
    for (size_t i = 0; i < n; i += DIGEST_CHUNK) {
        size_t k = n - i < DIGEST_CHUNK ? n - i : DIGEST_CHUNK;
        for (size_t j = 0; j < k; j++)
            le64_put(buf + 8 * j, ballots[i + j]);
        crypto_generichash_update(&st, buf, 8 * k);
    }
    for (size_t i = 0; i < n; i += DIGEST_CHUNK) {
        size_t k = n - i < DIGEST_CHUNK ? n - i : DIGEST_CHUNK;
        for (size_t j = 0; j < k; j++)
            le32_put(buf + 4 * j, projects[i + j]);
        crypto_generichash_update(&st, buf, 4 * k);
    }
    crypto_generichash_final(&st, out, WIRE_DIGEST_BYTES);
}

static void put_u32(crypto_generichash_state *st, uint32_t v)
{
    uint8_t b[4];
    le32_put(b, v);
    crypto_generichash_update(st, b, 4);
}

static void put_u64(crypto_generichash_state *st, uint64_t v)
{
    uint8_t b[8];
    le64_put(b, v);
    crypto_generichash_update(st, b, 8);
}

static void put_str(crypto_generichash_state *st, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u32(st, (uint32_t)n);
    if (n)
        crypto_generichash_update(st, (const uint8_t *)s, n);
}

/* LE64(n) || n x LE32(v[i]), chunked like wire_batch_digest. */
static void put_u32s(crypto_generichash_state *st, const uint32_t *v, size_t n)
{
    uint8_t buf[DIGEST_CHUNK * 4];
    put_u64(st, (uint64_t)n);
    for (size_t i = 0; i < n; i += DIGEST_CHUNK) {
        size_t k = n - i < DIGEST_CHUNK ? n - i : DIGEST_CHUNK;
        for (size_t j = 0; j < k; j++)
            le32_put(buf + 4 * j, v[i + j]);
        crypto_generichash_update(st, buf, 4 * k);
    }
}

void wire_batch_digest_msg(const Tally__Batch *b, uint8_t out[WIRE_DIGEST_BYTES])
{
    if (!b->n_tables && !b->n_vote_tables && !b->n_sheets && b->n_ballots == b->n_projects) {
        wire_batch_digest(b->seq, b->nonce.data, b->nonce.len, b->ballots, b->projects,
                          b->n_ballots, out);
        return;
    }
    static const char tag[] = "tallyd-batch-v2";
    crypto_generichash_state st;
    uint8_t buf[DIGEST_CHUNK * 8];
    crypto_generichash_init(&st, NULL, 0, WIRE_DIGEST_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof(tag) - 1);
    put_u64(&st, b->seq);
    put_u32(&st, (uint32_t)b->nonce.len);
    if (b->nonce.len)
        crypto_generichash_update(&st, b->nonce.data, b->nonce.len);
    put_u64(&st, (uint64_t)b->n_ballots);
    for (size_t i = 0; i < b->n_ballots; i += DIGEST_CHUNK) {
        size_t k = b->n_ballots - i < DIGEST_CHUNK ? b->n_ballots - i : DIGEST_CHUNK;
        for (size_t j = 0; j < k; j++)
            le64_put(buf + 8 * j, b->ballots[i + j]);
        crypto_generichash_update(&st, buf, 8 * k);
    }
    put_u32s(&st, b->projects, b->n_projects);
    put_u64(&st, (uint64_t)b->n_tables);
    for (size_t i = 0; i < b->n_tables; i++)
        put_str(&st, b->tables[i]);
    put_u32s(&st, b->vote_tables, b->n_vote_tables);
    put_u64(&st, (uint64_t)b->n_sheets);
    for (size_t i = 0; i < b->n_sheets; i++) {
        static const Tally__Sheet none = TALLY__SHEET__INIT;
        const Tally__Sheet *s = b->sheets[i] ? b->sheets[i] : &none;
        put_str(&st, s->table_id);
        put_u32(&st, s->version);
        put_u32s(&st, s->projects, s->n_projects);
        put_u32s(&st, s->votes, s->n_votes);
        put_u32(&st, s->blank);
        put_u32(&st, s->null_ballots);
    }
    crypto_generichash_final(&st, out, WIRE_DIGEST_BYTES);
}

struct sheet_row {
    uint32_t project, votes;
};

static int row_cmp(const void *a, const void *b)
{
    const struct sheet_row *x = a, *y = b;
    if (x->project != y->project)
        return x->project < y->project ? -1 : 1;
    return x->votes < y->votes ? -1 : x->votes > y->votes;
}

#define SHEET_ROWS_ON_STACK 64

void wire_sheet_digest_rows(const char *table_id, uint32_t version, uint32_t blank,
                            uint32_t null_ballots, const uint32_t *projects, const uint32_t *votes,
                            size_t n, uint8_t out[WIRE_DIGEST_BYTES])
{
    struct sheet_row small[SHEET_ROWS_ON_STACK];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += votes[i] > 0;
    struct sheet_row *rows = m <= SHEET_ROWS_ON_STACK ? small : xcalloc(m, sizeof(*rows));
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (votes[i] > 0)
            rows[m++] = (struct sheet_row){projects[i], votes[i]};
    if (m > 1)
        qsort(rows, m, sizeof(*rows), row_cmp);

    static const char tag[] = "tallyd-sheet-v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, WIRE_DIGEST_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof(tag) - 1);
    put_str(&st, table_id);
    put_u32(&st, version);
    put_u32(&st, blank);
    put_u32(&st, null_ballots);
    put_u32(&st, (uint32_t)m);
    uint8_t buf[DIGEST_CHUNK * 8];
    for (size_t i = 0; i < m; i += DIGEST_CHUNK) {
        size_t k = m - i < DIGEST_CHUNK ? m - i : DIGEST_CHUNK;
        for (size_t j = 0; j < k; j++) {
            le32_put(buf + 8 * j, rows[i + j].project);
            le32_put(buf + 8 * j + 4, rows[i + j].votes);
        }
        crypto_generichash_update(&st, buf, 8 * k);
    }
    crypto_generichash_final(&st, out, WIRE_DIGEST_BYTES);
    if (rows != small)
        free(rows);
}

void wire_sheet_digest(const Tally__Sheet *s, uint8_t out[WIRE_DIGEST_BYTES])
{
    size_t n = s->n_projects < s->n_votes ? s->n_projects : s->n_votes;
    wire_sheet_digest_rows(s->table_id, s->version, s->blank, s->null_ballots, s->projects,
                           s->votes, n, out);
}

char *wire_digest_hex(const uint8_t d[WIRE_DIGEST_BYTES], char out[2 * WIRE_DIGEST_BYTES + 1])
{
    sodium_bin2hex(out, 2 * WIRE_DIGEST_BYTES + 1, d, WIRE_DIGEST_BYTES);
    return out;
}
