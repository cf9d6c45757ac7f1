/* The record's public hashes (docs/record.md, "Chain format v3"): the RFC 6962 Merkle
 * tree over a checkpoint's batches, with BLAKE2b-256 in place of SHA-256, its audit paths,
 * and the v3 chain link. Pure (libsodium only, no store types): tallyd's writer,
 * tallyctl verify and, for receipts, tally-push all compute them here. */
#ifndef RECORD_RECORD_H
#define RECORD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECORD_HASH_BYTES 32

/* leaf = BLAKE2b-256(0x00 || LE32 len || collector_id || LE64 seq || digest(32)).
 * collector_id is NUL-terminated (its bytes without the NUL are hashed); digest NULL is
 * hashed as 32 zero bytes. */
void record_merkle_leaf(const char *collector_id, uint64_t seq, const uint8_t digest[32],
                        uint8_t out[32]);

/* RFC 6962 Merkle tree hash over n leaf hashes (already record_merkle_leaf'd), in the
 * order given: node = BLAKE2b-256(0x01 || left || right), split at the largest power of
 * two below n; one leaf is its own root; n == 0 gives BLAKE2b-256 of the empty string.
 * O(n) hashes, no allocation (a stack of at most 64 subtree roots). */
void record_merkle_root(const uint8_t (*leaves)[32], size_t n, uint8_t out[32]);

/* The most entries an audit path in a tree of n leaves holds: ceil(log2 n) (0 for n <= 1). */
size_t record_merkle_path_len(size_t n);

/* Writes the audit path of leaf index (RFC 6962 2.1.1: the sibling nearest the leaf
 * first) into path, which must hold record_merkle_path_len(n) entries; returns how many
 * it wrote. index >= n writes nothing and returns 0. O(n) hashes. */
size_t record_merkle_path(const uint8_t (*leaves)[32], size_t n, size_t index, uint8_t (*path)[32]);

/* True when path (n_path entries) proves leaf at index of a tree of n leaves with root
 * root (RFC 9162 2.1.3.2). False for index >= n, a path of the wrong length or any other
 * hash. */
bool record_merkle_verify(const uint8_t leaf[32], size_t index, size_t n, const uint8_t (*path)[32],
                          size_t n_path, const uint8_t root[32]);

/* hash = BLAKE2b-256("tallyd-checkpoint-v3" || prev(32) || LE64 id || LE64 epoch
 *                    || root(32) || body(32)); prev NULL is 32 zero bytes. */
void record_chain_link(const uint8_t *prev, uint64_t id, uint64_t epoch, const uint8_t root[32],
                       const uint8_t body[32], uint8_t out[32]);

#endif
