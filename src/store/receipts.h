/* Reading one batch's receipt from the record (docs/consultation.md, part C): its leaf and
 * audit path in its checkpoint's Merkle tree and every chain link from that checkpoint to
 * the head. Read-only, one snapshot; implemented in src/store/receipts.c. Kept out of
 * store.h so that only the receipts worker (src/receipts) and tests include it. */
#ifndef STORE_RECEIPTS_H
#define STORE_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* One chain link as stored (a format-3 checkpoint). */
struct store_receipt_link {
    uint64_t id, epoch;
    uint8_t prev_hash[32], merkle_root[32], body_hash[32], hash[32];
};

struct store_receipt {
    uint8_t digest[32];  /* the batch's content digest */
    uint64_t checkpoint; /* the checkpoint that made it durable */
    size_t leaf_index;   /* its place among the checkpoint's batches, by (collector bytes, seq) */
    size_t tree_size;    /* the checkpoint's batches */
    uint8_t (*path)[32]; /* n_path: RFC 6962 audit path, sibling nearest the leaf first */
    size_t n_path;
    struct store_receipt_link *chain; /* n_chain: checkpoint .. the head, ascending id */
    size_t n_chain;
};

/* Reads the receipt of batch (collector, seq) in one REPEATABLE READ READ ONLY
 * transaction: the batch's checkpoint and digest; every batch of that checkpoint ordered
 * by (collector_id COLLATE "C", seq), from which the leaves (record_merkle_leaf) and the
 * path (record_merkle_path) are computed; every checkpoint from it to the last. out is
 * filled (malloc'd arrays: store_receipt_cleanup) only when 0 is returned. Returns 0 found,
 * 1 no such durable batch, 2 its checkpoint is older than format 3 (no Merkle root), -1 on
 * failure (store_last_error says why). Blocking. */
int store_receipt_read(struct store *s, const char *collector, uint64_t seq,
                       struct store_receipt *out) __attribute__((warn_unused_result));

/* Frees what store_receipt_read filled in; a zeroed struct is fine. */
void store_receipt_cleanup(struct store_receipt *r);

#endif
