/* A batch's receipt read from the record: its checkpoint's batches in Merkle order (the
 * leaves, the batch's index and its audit path) and the chain links from that checkpoint
 * to the head, all in one read-only snapshot. Computes no chain hash itself (the links are
 * stored ones: whoever checks a receipt recomputes them); writes nothing. */
#include "store/receipts.h"

#include "core/xalloc.h"
#include "record/record.h"
#include "store/cursor.h"
#include "store/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_receipt_cleanup(struct store_receipt *r)
{
    free(r->path);
    free(r->chain);
    memset(r, 0, sizeof(*r));
}

/* Runs sql with text parameters and binary results; NULL on failure (error recorded). */
static PGresult *query_bin(struct store *s, const char *sql, int n, const char *const *values,
                           const char *what)
{
    PGresult *res = PQexecParams(s->conn, sql, n, NULL, values, NULL, NULL, 1);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(s, res, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int hash_col(struct store *s, const PGresult *r, int row, int col, uint8_t out[32],
                    const char *name)
{
    size_t len;
    const uint8_t *p = store_val_bytes(r, row, col, &len);
    if (!p || len != 32) {
        store_set_error(s, "receipt: %s of row %d is not 32 bytes", name, row);
        return -1;
    }
    memcpy(out, p, 32);
    return 0;
}

/* The leaves of checkpoint cp in Merkle order, and where (collector, seq) is among them. */
static int read_leaves(struct store *s, uint64_t cp, const char *collector, uint64_t seq,
                       struct store_receipt *out)
{
    char cp_text[24];
    snprintf(cp_text, sizeof(cp_text), "%" PRIu64, cp);
    const char *v[1] = {cp_text};
    PGresult *res = query_bin(s,
                              "SELECT collector_id, seq::int8, digest FROM batches"
                              " WHERE checkpoint_id = $1::bigint"
                              " ORDER BY collector_id COLLATE \"C\", seq",
                              1, v, "reading the checkpoint's batches");
    if (!res)
        return -1;
    int rc = -1;
    size_t n = (size_t)PQntuples(res);
    uint8_t(*leaves)[32] = xcalloc(n ? n : 1, 32);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        int64_t bseq;
        uint8_t digest[32];
        size_t idlen;
        const uint8_t *id = store_val_bytes(res, row, 0, &idlen);
        if (!id || idlen > 63 || store_val_int8(res, row, 1, &bseq) < 0 ||
            hash_col(s, res, row, 2, digest, "a batch digest") < 0) {
            if (!s->err[0]) /* hash_col says what it found */
                store_set_error(s, "receipt: batch row %zu of checkpoint %" PRIu64 " is malformed",
                                i, cp);
            goto done;
        }
        char cid[64];
        memcpy(cid, id, idlen);
        cid[idlen] = '\0';
        record_merkle_leaf(cid, (uint64_t)bseq, digest, leaves[i]);
        if ((uint64_t)bseq == seq && strcmp(cid, collector) == 0) {
            out->leaf_index = i;
            found = true;
        }
    }
    if (!found) {
        store_set_error(s, "receipt: batch %s/%" PRIu64 " missing from its checkpoint", collector,
                        seq);
        goto done;
    }
    out->tree_size = n;
    size_t max = record_merkle_path_len(n);
    out->path = xcalloc(max ? max : 1, 32);
    out->n_path = record_merkle_path((const uint8_t(*)[32])leaves, n, out->leaf_index, out->path);
    rc = 0;
done:
    free(leaves);
    PQclear(res);
    return rc;
}

static int read_chain(struct store *s, uint64_t cp, struct store_receipt *out)
{
    char cp_text[24];
    snprintf(cp_text, sizeof(cp_text), "%" PRIu64, cp);
    const char *v[1] = {cp_text};
    PGresult *res =
        query_bin(s,
                  "SELECT id::int8, epoch::int8, prev_hash, merkle_root, body_hash, hash"
                  " FROM checkpoints WHERE id >= $1::bigint ORDER BY id",
                  1, v, "reading the chain");
    if (!res)
        return -1;
    int rc = -1;
    size_t n = (size_t)PQntuples(res);
    out->chain = xcalloc(n ? n : 1, sizeof(*out->chain));
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        struct store_receipt_link *l = &out->chain[i];
        int64_t id, epoch;
        if (store_val_int8(res, row, 0, &id) < 0 || store_val_int8(res, row, 1, &epoch) < 0) {
            store_set_error(s, "receipt: checkpoint row %zu is malformed", i);
            goto done;
        }
        l->id = (uint64_t)id;
        l->epoch = (uint64_t)epoch;
        /* A later checkpoint without a root cannot be: format 3 holds from migration 7 on. */
        if (hash_col(s, res, row, 2, l->prev_hash, "prev_hash") < 0 ||
            hash_col(s, res, row, 3, l->merkle_root, "merkle_root") < 0 ||
            hash_col(s, res, row, 4, l->body_hash, "body_hash") < 0 ||
            hash_col(s, res, row, 5, l->hash, "hash") < 0)
            goto done;
    }
    if (n == 0 || out->chain[0].id != cp) {
        store_set_error(s, "receipt: checkpoint %" PRIu64 " is missing", cp);
        goto done;
    }
    out->n_chain = n;
    rc = 0;
done:
    PQclear(res);
    return rc;
}

int store_receipt_read(struct store *s, const char *collector, uint64_t seq,
                       struct store_receipt *out)
{
    memset(out, 0, sizeof(*out));
    s->err[0] = '\0';
    if (store_exec_cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != STORE_OK)
        return -1;
    char seq_text[24];
    snprintf(seq_text, sizeof(seq_text), "%" PRIu64, seq);
    const char *v[2] = {collector, seq_text};
    int rc = -1;
    PGresult *res = NULL;
    /* seq is bigint: a value past its range names no batch (and must not fail the cast). */
    if (seq > INT64_MAX) {
        rc = 1;
        goto done;
    }
    res = query_bin(s,
                    "SELECT b.checkpoint_id::int8, b.digest, c.format::int8"
                    " FROM batches b JOIN checkpoints c ON c.id = b.checkpoint_id"
                    " WHERE b.collector_id = $1 AND b.seq = $2::bigint",
                    2, v, "reading the batch");
    if (!res)
        goto done;
    if (PQntuples(res) == 0) {
        rc = 1;
        goto done;
    }
    int64_t cp;
    if (store_val_int8(res, 0, 0, &cp) < 0) {
        store_set_error(s, "receipt: the batch has no checkpoint");
        goto done;
    }
    out->checkpoint = (uint64_t)cp;
    size_t dlen;
    const uint8_t *digest = store_val_bytes(res, 0, 1, &dlen);
    if (PQgetisnull(res, 0, 2) || !digest || dlen != 32) {
        rc = 2; /* v1/v2 checkpoint (or a batch recorded before digests): no Merkle root */
        goto done;
    }
    memcpy(out->digest, digest, 32);
    if (read_leaves(s, out->checkpoint, collector, seq, out) < 0 ||
        read_chain(s, out->checkpoint, out) < 0)
        goto done;
    rc = 0;
done:
    PQclear(res);
    if (store_exec_cmd(s, "COMMIT") != STORE_OK && rc == 0)
        rc = -1;
    if (rc != 0) {
        store_rollback(s);
        uint64_t keep = out->checkpoint;
        store_receipt_cleanup(out);
        out->checkpoint = keep;
    }
    return rc;
}
