/* The content digests of batches and tally sheets: BLAKE2b-256 over canonical encodings
 * (docs/record.md, docs/consultation.md). tallyd keys retransmissions by the batch digest
 * and compares sheets by theirs; collectors compute the batch digest from what they
 * spooled (libtally keeps it of every durable batch, for receipts). Pure. */
#ifndef WIRE_DIGEST_H
#define WIRE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "tally.pb-c.h"

#define WIRE_DIGEST_BYTES 32
#define WIRE_NONCE_MAX 32 /* longest Batch.nonce accepted */

/* out = BLAKE2b-256("tallyd-batch-v1" || LE64(seq) || LE32(nonce_len) || nonce
 *                   || LE64(n) || n x LE64(ballots[i]) || n x LE32(projects[i])).
 * nonce may be NULL when nonce_len is 0. */
void wire_batch_digest(uint64_t seq, const uint8_t *nonce, size_t nonce_len,
                       const uint64_t *ballots, const uint32_t *projects, size_t n,
                       uint8_t out[WIRE_DIGEST_BYTES]);

/* The digest of a decoded Batch, the one tallyd keeps and compares.
 * A batch with no tables, no vote_tables and no sheets, and as many projects as ballots
 * (every batch sent before issue 10): exactly wire_batch_digest(seq, nonce, ballots,
 * projects, n_ballots), so every spool and record keeps its digests. Any other batch (a
 * length mismatch too, although wire_batch_check refuses it first) takes the v2 encoding,
 * every count explicit, in this order:
 *   "tallyd-batch-v2" || LE64(seq) || LE32(nonce_len) || nonce
 *   || LE64(n_ballots) || n_ballots x LE64(ballot)
 *   || LE64(n_projects) || n_projects x LE32(project)
 *   || LE64(n_tables) || n_tables x (LE32(len) || id bytes)
 *   || LE64(n_vote_tables) || n_vote_tables x LE32(index)
 *   || LE64(n_sheets) || per sheet in batch order:
 *        LE32(len) || table_id || LE32(version)
 *        || LE64(n_projects) || n_projects x LE32(project)
 *        || LE64(n_votes) || n_votes x LE32(votes)
 *        || LE32(blank) || LE32(null_ballots)
 * Sheets enter as sent (row order and zero rows included): the batch digest is about
 * these bytes, wire_sheet_digest about a sheet's meaning. A NULL string is taken as "". */
void wire_batch_digest_msg(const Tally__Batch *b, uint8_t out[WIRE_DIGEST_BYTES]);

/* The canonical sheet digest of docs/consultation.md ("Content"), which says whether two
 * sheets of one (table, version) have the same content:
 *   BLAKE2b-256("tallyd-sheet-v1" || LE32(len) || table_id || LE32(version)
 *               || LE32(blank) || LE32(null_ballots) || LE32(n)
 *               || n x (LE32(project) || LE32(votes)))
 * over the n rows with votes > 0, sorted by project id (then votes, so that a project on
 * two rows, which the tally rejects as bad_sheet, still has one digest): row order and rows
 * of 0 votes do not matter. A sheet whose projects and votes differ in length is digested
 * over its first min(n_projects, n_votes) pairs; the tally rejects it as bad_sheet anyway.
 * Allocates a sorted copy of the rows when they are many (core/xalloc: aborts on
 * exhaustion). */
void wire_sheet_digest(const Tally__Sheet *s, uint8_t out[WIRE_DIGEST_BYTES]);

/* The same over plain arrays (n rows of projects[i], votes[i]; the arrays are only read),
 * for callers that hold a sheet as stored rather than decoded. */
void wire_sheet_digest_rows(const char *table_id, uint32_t version, uint32_t blank,
                            uint32_t null_ballots, const uint32_t *projects, const uint32_t *votes,
                            size_t n, uint8_t out[WIRE_DIGEST_BYTES]);

/* Lower-case hex of a digest into out (2 * WIRE_DIGEST_BYTES + 1 bytes). Returns out. */
char *wire_digest_hex(const uint8_t d[WIRE_DIGEST_BYTES], char out[2 * WIRE_DIGEST_BYTES + 1]);

#endif
