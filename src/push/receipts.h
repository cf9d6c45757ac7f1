/* tally-push --verify-receipts, its pure half: a receipt from tallyd's
 * GET /v1/receipts/{collector}/{seq} (docs/consultation.md, "Part C") parsed from its JSON
 * (json-c: the input is untrusted) and checked against what the collector knows itself,
 * its collector id, the seq and the digest its spool kept, and a head hash published
 * elsewhere. No sockets, no files, no clock. */
#ifndef PUSH_RECEIPTS_H
#define PUSH_RECEIPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/protocol.h"

#define PUSH_RECEIPT_HASH 32u
/* An audit path holds ceil(log2 tree_size) hashes: 64 covers any tree. */
#define PUSH_RECEIPT_PATH_MAX 64u
/* The largest receipt body taken (a chain of every checkpoint to the head: ~300 bytes
 * each, so some 200,000 checkpoints). */
#define PUSH_RECEIPT_BODY_MAX (64u << 20)

/* One checkpoint of a receipt's chain, as tallyd sent it. */
struct push_receipt_link {
    uint64_t id, epoch;
    uint8_t prev_hash[PUSH_RECEIPT_HASH];
    uint8_t merkle_root[PUSH_RECEIPT_HASH];
    uint8_t body_hash[PUSH_RECEIPT_HASH];
    uint8_t hash[PUSH_RECEIPT_HASH]; /* tallyd's word only: used to say which link differs */
    bool has_hash;
};

/* A parsed receipt. Every field is what tallyd said, nothing is checked yet. */
struct push_receipt {
    char collector[TALLY_COLLECTOR_ID_MAX + 1];
    uint64_t seq;
    uint8_t digest[PUSH_RECEIPT_HASH];
    uint64_t checkpoint;
    uint64_t leaf_index, tree_size;
    uint8_t (*path)[PUSH_RECEIPT_HASH]; /* n_path entries, owned */
    size_t n_path;
    struct push_receipt_link *chain; /* n_chain >= 1 entries, owned */
    size_t n_chain;
    uint8_t head[PUSH_RECEIPT_HASH]; /* tallyd's head: for messages only */
    bool has_head;
};

/* 64 hex digits (either case) into 32 bytes. Returns 0, or -1 (out untouched). */
int push_hex32_parse(const char *text, size_t len, uint8_t out[PUSH_RECEIPT_HASH]);
/* 32 bytes as 64 lower-case hex digits and a NUL. */
void push_hex32_format(const uint8_t in[PUSH_RECEIPT_HASH], char out[2 * PUSH_RECEIPT_HASH + 1]);

/* Parses the receipt JSON of len bytes (any bytes; need not be NUL-terminated) into *r,
 * which must be cleaned with push_receipt_cleanup whatever this returns. Strict: one JSON
 * object, nothing after it but white space, every field of the contract present with its
 * type (integers >= 0, hashes of 64 hex digits, at most PUSH_RECEIPT_PATH_MAX path entries,
 * at least one chain entry); "hash" of a chain entry and "head" may be missing; unknown
 * fields are ignored. Returns 0, or -1 with a one-line reason in err. */
int push_receipt_parse(const char *json, size_t len, struct push_receipt *r, char *err,
                       size_t err_len) __attribute__((warn_unused_result));
void push_receipt_cleanup(struct push_receipt *r);

/* Checks receipt r for the batch (collector, seq, digest) the spool kept, trusting nothing
 * tallyd said: the leaf is hashed from collector, seq and digest (never the receipt's), its
 * audit path must lead to chain[0].merkle_root at leaf_index of tree_size, chain[0].id must
 * be r->checkpoint, ids must go up by one, each entry's prev_hash must be the link recomputed
 * for the entry before (record_chain_link), and head must be one of the recomputed links
 * (the last one, unless head was published before tallyd wrote the later checkpoints).
 * The receipt's "hash" fields are only read to say which link tallyd got wrong. Returns 0,
 * or -1 with a one-line reason in why (no batch name: the caller prefixes it). */
int push_receipt_verify(const struct push_receipt *r, const char *collector, uint64_t seq,
                        const uint8_t digest[PUSH_RECEIPT_HASH],
                        const uint8_t head[PUSH_RECEIPT_HASH], char *why, size_t why_len)
    __attribute__((warn_unused_result));

#endif
