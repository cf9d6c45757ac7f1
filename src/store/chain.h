/* Internal to the store module: the canonical encodings hashed into the record
 * (docs/record.md): token-page digests and the checkpoint hash chain. Pure; shared by
 * the writer (checkpoint.c), the converter of old databases (convert.c) and
 * tallyctl verify (verify.c), so the three can never disagree. */
#ifndef STORE_CHAIN_H
#define STORE_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_HASH_BYTES 32
#define STORE_SALT_BYTES 16

/* One batch as the chain sees it. digest NULL: recorded before digests existed
 * (converted from an older schema); hashed as 32 zero bytes. rejected_not_allowed last, so
 * positional initialisers written before it existed leave it 0. */
struct store_chain_batch {
    const char *collector_id;
    uint64_t seq;
    const uint8_t *digest;
    uint32_t votes, accepted, duplicate, rejected_unknown;
    uint32_t rejected_not_allowed;
};

/* One token page written (or rewritten) by a checkpoint, with its digest. */
struct store_chain_page {
    uint64_t id;
    uint8_t digest[STORE_HASH_BYTES];
};

struct store_chain_input {
    const uint8_t *prev_hash; /* STORE_HASH_BYTES; NULL for the first checkpoint (zeros) */
    uint64_t id, epoch;
    const struct store_chain_batch *batches; /* any order: hashed by (collector_id, seq) */
    size_t n_batches;
    const uint32_t *project_ids; /* count deltas, any order: hashed by ascending id */
    const uint64_t *votes;
    size_t n_deltas;
    const struct store_chain_page *pages; /* any order: hashed by ascending id */
    size_t n_pages;
};

/* hash = BLAKE2b-256(tag || prev_hash || LE64(id) || LE64(epoch)
 *   || LE64(n_batches) || per batch, sorted by (collector_id bytes, seq):
 *        LE32(len(collector_id)) || collector_id || LE64(seq) || digest(32)
 *        || LE32(votes) || LE32(accepted) || LE32(duplicate) || LE32(rejected_unknown)
 *        [|| LE32(rejected_not_allowed), v2 only]
 *   || LE64(n_deltas) || per delta, ascending project id: LE32(project_id) || LE64(votes)
 *   || LE64(n_pages) || per page, ascending id: LE64(id) || digest(32)).
 * tag is "tallyd-checkpoint-v1" when every batch has rejected_not_allowed == 0 (so every
 * checkpoint written before the field existed hashes as it did), else
 * "tallyd-checkpoint-v2" and every batch carries the field.
 * The inputs are not modified (sorting happens on copies). */
void store_chain_hash(const struct store_chain_input *in, uint8_t out[STORE_HASH_BYTES]);

/* digest = BLAKE2b-256("tallyd-page-v1" || salt(16) || tokens), tokens as stored: sorted
 * ascending, 8 bytes each, little-endian (n_tokens * 8 bytes at tokens_le). */
void store_page_digest(const uint8_t salt[STORE_SALT_BYTES], const uint8_t *tokens_le,
                       size_t n_tokens, uint8_t out[STORE_HASH_BYTES]);

/* ---- chain format v3 (docs/consultation.md "Chain format v3", docs/record.md) ---------- */

/* A table's accepted ballots (a batch's table_ids/table_ballots, or a checkpoint's). */
struct store_chain_table {
    const char *id;
    int64_t ballots;
};

/* One batch row as v3 hashes it. digest NULL hashes as 32 zero bytes (never the case for
 * a batch written in v3); reasons[k-1] is the count of reason k (docs/consultation.md),
 * n_reasons as stored (the array's cardinality, 0 allowed). counts: the stored bytes of
 * batches.counts (has_counts false: SQL NULL, hashed as 32 zero bytes in place of their
 * BLAKE2b-256). tables: any order, hashed by id bytes. */
struct store_chain_batch3 {
    const char *collector_id;
    uint64_t seq;
    const uint8_t *digest; /* 32 */
    uint32_t kind;         /* 0 ballots, 1 sheets */
    uint32_t votes, accepted, duplicate, sheets, sheets_accepted, sheets_duplicate;
    const uint32_t *reasons;
    size_t n_reasons;
    const uint8_t *counts;
    size_t counts_len;
    bool has_counts;
    const struct store_chain_table *tables;
    size_t n_tables;
};

/* One accepted sheet (a sheets row) of the checkpoint. digest: 32 bytes. */
struct store_chain_sheet {
    const char *table_id;
    uint32_t version;
    const char *collector_id;
    uint64_t seq;
    const uint8_t *digest;
};

/* One correction of the checkpoint. Strings never NULL ("" for a NULL column; seq and the
 * versions 0 then). Deltas any order: hashed by ascending project id. */
struct store_chain_correction {
    uint64_t id;
    uint32_t kind; /* 0 sheet, 1 retract */
    const char *actor, *reason;
    int64_t at_us; /* microseconds since 1970-01-01 UTC */
    const char *table_id, *collector_id;
    uint64_t seq;
    uint32_t from_version, to_version;
    const uint32_t *project_ids;
    const int64_t *deltas;
    size_t n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
};

/* A change of the consultation's state (docs/consultation.md part B): kind 1 close, 2 tie
 * rule (payload: the seed's BLAKE2b-256). */
struct store_chain_event {
    uint64_t request_id;
    uint32_t kind;
    const char *actor;
    int64_t at_us;
    const uint8_t *payload;
    size_t payload_len;
};

struct store_chain_input3 {
    const uint8_t *prev_hash; /* NULL: 32 zero bytes (checkpoint 1) */
    uint64_t id, epoch;
    const struct store_chain_batch3 *batches; /* any order: by (collector_id bytes, seq) */
    size_t n_batches;
    const uint32_t *project_ids; /* count deltas, any order: by ascending id */
    const int64_t *votes;        /* may be negative (a replaced sheet) */
    size_t n_deltas;
    const struct store_chain_page *pages; /* any order: by ascending id */
    size_t n_pages;
    const struct store_chain_table *table_deltas; /* any order: by id bytes */
    size_t n_table_deltas;
    const struct store_chain_sheet *sheets; /* any order: by (table_id bytes, version) */
    size_t n_sheets;
    const struct store_chain_correction *corrections; /* any order: by id */
    size_t n_corrections;
    const struct store_chain_event *events; /* any order: by request id */
    size_t n_events;
};

/* Fills root (record_merkle_root over record_merkle_leaf of the batches sorted by
 * (collector_id bytes, seq)), body (body_hash: the byte layout of docs/record.md) and
 * hash (record_chain_link(prev_hash, id, epoch, root, body)). Inputs are not modified
 * (sorting happens on copies); the keys (batch (collector, seq), table id within a list,
 * sheet (table, version), correction id, delta project id) are unique in a well-formed
 * record, and ties are broken on further fields so the result never depends on the order
 * given. */
void store_chain_hash_v3(const struct store_chain_input3 *in, uint8_t root[STORE_HASH_BYTES],
                         uint8_t body[STORE_HASH_BYTES], uint8_t hash[STORE_HASH_BYTES]);

/* The canonical sheet digest (docs/consultation.md "Content"; the same bytes as
 * wire_sheet_digest_rows, which the store does not link):
 *   BLAKE2b-256("tallyd-sheet-v1" || LE32 len || table_id || LE32 version || LE32 blank
 *               || LE32 null_ballots || LE32 n || n x (LE32 project || LE32 votes))
 * rows: n interleaved (project, votes) pairs exactly as hashed, i.e. as stored in sheets:
 * votes > 0, strictly ascending project (the caller's to check). */
void store_sheet_digest(const char *table_id, uint32_t version, uint32_t blank,
                        uint32_t null_ballots, const uint32_t *rows, size_t n,
                        uint8_t out[STORE_HASH_BYTES]);

#endif
