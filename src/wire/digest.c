/* Batch content digests (BLAKE2b-256 from libsodium). Owns the canonical encoding; knows
 * nothing of where digests are kept or compared. */
#include "wire/digest.h"

#include <sodium.h>
#include <string.h>

#include "core/endian.h"

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

char *wire_digest_hex(const uint8_t d[WIRE_DIGEST_BYTES], char out[2 * WIRE_DIGEST_BYTES + 1])
{
    sodium_bin2hex(out, 2 * WIRE_DIGEST_BYTES + 1, d, WIRE_DIGEST_BYTES);
    return out;
}
