/* Internal to the store module: the canonical encodings hashed into the record
 * (docs/record.md): token-page digests and the checkpoint hash chain. Pure; shared by
 * the writer (checkpoint.c), the converter of old databases (convert.c) and
 * tallyctl verify (verify.c), so the three can never disagree. */
#ifndef STORE_CHAIN_H
#define STORE_CHAIN_H

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

#endif
