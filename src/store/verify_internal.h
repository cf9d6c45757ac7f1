/* Internal to tallyctl verify (verify.c, verify_pages.c): the state one run carries from
 * check to check, and the helpers both files use. Nothing outside src/store includes
 * this. */
#ifndef STORE_VERIFY_INTERNAL_H
#define STORE_VERIFY_INTERNAL_H

#include "store/chain.h"
#include "store/internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { VF_OK = 0, VF_BAD = 1, VF_ERR = -1 };

/* One batch row of the checkpoint being checked. */
struct vf_batch {
    size_t id_off; /* collector id in vf.pool */
    uint64_t seq;
    bool has_digest;
    uint8_t digest[STORE_HASH_BYTES];
    uint32_t votes, accepted, duplicate, rejected; /* rejected: rejected_unknown */
    uint32_t not_allowed;                          /* rejected_not_allowed */
};

/* A token page as one checkpoint lists it. */
struct vf_listing {
    uint64_t page, checkpoint;
    uint8_t digest[STORE_HASH_BYTES];
};

/* One run of store_verify, on its stack: zeroed, filled check by check, freed at its end. */
struct vf {
    struct store *s;
    struct store_verify_report *out;
    store_progress_cb progress;
    void *arg;
    int64_t next_progress_ms;

    uint64_t n_checkpoints_seen; /* count(*), for progress lines */
    int version;                 /* schema version */
    uint64_t through, writer_epoch;
    uint32_t *projects;              /* ascending */
    uint64_t *sum_through, *sum_all; /* deltas per project: checkpoints 1..through, all */
    size_t n_projects;
    struct vf_listing *listings;
    size_t n_listings, cap_listings;
    uint64_t accepted_total; /* over all batch rows */

    /* The checkpoint being checked: its batch rows and decoding buffers. */
    struct vf_batch *batches;
    size_t n_batches, cap_batches;
    char *pool;
    size_t n_pool, cap_pool;
    uint64_t votes, accepted, duplicate, rejected; /* rejected: both reasons */
    struct store_chain_batch *chain;
    size_t cap_chain;
    int64_t *a_ids, *a_votes, *a_pages;
    size_t cap_a_ids, cap_a_votes, cap_a_pages;
    uint32_t *d_ids;
    uint64_t *d_votes;
    size_t cap_d;
    struct store_chain_page *pages;
    size_t cap_pages;
};

/* Records the first disagreement (formatted) as v->out->problem; returns VF_BAD for the
 * caller to pass up. */
int vf_bad(struct vf *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands a formatted progress line to v->progress, at most every two seconds
 * (VF_PROGRESS_MS, verify.c); does nothing without a progress callback. The line is
 * borrowed for the call. */
void vf_tick(struct vf *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes digest d as lower-case hex into out (the caller's) and returns out. */
const char *vf_hex(const uint8_t *d, char out[2 * STORE_HASH_BYTES + 1]);

/* (c) token pages (verify_pages.c): after the chain check has gathered v->listings and
 * v->accepted_total, checks each token page against the digest its latest checkpoint
 * lists, that every listed page exists and every page is listed, that the tokens are
 * ascending within a page, distinct across pages and as many as the accepted votes.
 * Sorts v->listings in place. Returns VF_OK, VF_BAD (v->out->problem says why) or
 * VF_ERR (error recorded on v->s). */
int vf_pages(struct vf *v);

#endif
