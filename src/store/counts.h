/* Internal to the store module: a batch's own counts (batches.counts, docs/record.md):
 * LEB128 varint pairs (project id minus the previous pair's id, first from 0; votes),
 * ascending id. Pure; the writer encodes, tallyctl verify decodes. */
#ifndef STORE_COUNTS_H
#define STORE_COUNTS_H

#include "store/bin.h"

#include <stddef.h>
#include <stdint.h>

/* The most bytes one encoded pair takes (two 5-byte varints). */
#define STORE_COUNTS_PAIR_MAX 10

/* pairs: n interleaved (project id, votes) uint32 pairs, any order, ids distinct, votes > 0
 * (the caller's promise; not checked). Sorts a copy by id (LSD radix sort, 8-bit digits,
 * passes whose digit is the same in every id skipped; nothing at all when the ids already
 * ascend) in scratch space at the end of out itself, and appends
 * LEB128(id - previous id, first from 0) || LEB128(votes) per pair to out. pairs is not
 * modified. Aborts when memory runs out (store_bin). */
void store_counts_encode(const uint32_t *pairs, size_t n, struct store_bin *out);

/* Decodes buf (len bytes); calls cb(arg, id, votes) per pair, ids ascending, stopping at
 * the first non-zero return of cb (which is then returned). Returns 0, or -1 on malformed
 * bytes: a truncated varint, one over 32 bits or not in its shortest form, an id past
 * 2^32 - 1, a zero step after the first pair, zero votes. len 0 is no pairs. */
int store_counts_decode(const uint8_t *buf, size_t len,
                        int (*cb)(void *arg, uint32_t id, uint32_t votes), void *arg);

#endif
