/* The content digest of a batch: BLAKE2b-256 over a canonical encoding of its seq, nonce,
 * ballots and projects (docs/record.md). tallyd keys retransmissions by it; collectors can
 * compute it from what they spooled. Pure. */
#ifndef WIRE_DIGEST_H
#define WIRE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_DIGEST_BYTES 32
#define WIRE_NONCE_MAX 32 /* longest Batch.nonce accepted */

/* out = BLAKE2b-256("tallyd-batch-v1" || LE64(seq) || LE32(nonce_len) || nonce
 *                   || LE64(n) || n x LE64(ballots[i]) || n x LE32(projects[i])).
 * nonce may be NULL when nonce_len is 0. */
void wire_batch_digest(uint64_t seq, const uint8_t *nonce, size_t nonce_len,
                       const uint64_t *ballots, const uint32_t *projects, size_t n,
                       uint8_t out[WIRE_DIGEST_BYTES]);

/* Lower-case hex of a digest into out (2 * WIRE_DIGEST_BYTES + 1 bytes). Returns out. */
char *wire_digest_hex(const uint8_t d[WIRE_DIGEST_BYTES], char out[2 * WIRE_DIGEST_BYTES + 1]);

#endif
