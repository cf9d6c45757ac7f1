/* Internal to tallyctl verify (verify.c, verify_pages.c, verify_v3*.c): the state one run
 * carries from check to check, and the helpers the files share. Nothing outside src/store
 * includes this. */
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
    /* Schema version 7 on (verify_v3.c): the columns format 3 hashes. Offsets into the
     * checkpoint's pools (vf.reasons, vf.bytes, vf.btables), which may move. */
    uint32_t kind; /* 0 ballots, 1 sheets */
    uint32_t sheets, sheets_accepted, sheets_duplicate;
    size_t reasons_off, n_reasons;
    size_t counts_off, counts_len;
    bool has_counts;
    size_t tables_off, n_tables;
    uint32_t sheet_rows; /* rows of sheets naming this batch */
};

/* A table id (offset into vf.pool) and its ballots, of a batch row. */
struct vf_btable {
    size_t id_off;
    int64_t ballots;
};

/* A voting table (verify_v3.c), with what the record has put in it so far. */
struct vf_table {
    char *id;
    int64_t circuit; /* areas.id */
    int64_t electors;
    int64_t ballots;      /* per-ballot votes accepted over all checkpoints checked */
    uint64_t first_sheet; /* checkpoint of its first sheet, 0: none */
};

/* An accepted sheet (a sheets row). Rows at vf.sheet_ids/sheet_votes[rows_off..]. */
struct vf_sheet {
    uint64_t checkpoint, seq;
    size_t table;         /* index into vf.tables */
    size_t collector_off; /* into vf.spool */
    size_t rows_off, n_rows;
    int64_t version, blank, null_ballots, total; /* total: blank + null + rows */
    ptrdiff_t prev; /* the table's next lower version (index into vf.sheets), -1 */
    bool matched;   /* a replacement: its correction has been found */
    uint8_t digest[STORE_HASH_BYTES];
};

/* A correction (a corrections row). Deltas at vf.corr_ids/corr_deltas[deltas_off..]. */
struct vf_corr {
    uint64_t id, checkpoint, seq;
    uint32_t kind;                                          /* 0 sheet, 1 retract */
    size_t actor_off, reason_off, table_off, collector_off; /* into vf.spool */
    bool has_table, has_collector, has_seq, has_versions;
    int64_t at_us, from_version, to_version;
    size_t deltas_off, n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
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
    uint32_t *projects;             /* ascending */
    int64_t *sum_through, *sum_all; /* deltas per project: checkpoints 1..through, all */
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
    int64_t *d_votes;
    size_t cap_d;
    struct store_chain_page *pages;
    size_t cap_pages;

    /* ---- schema version 7 on (verify_v3.c) ---- */
    bool v7;
    bool seen_v3;            /* a format 3 checkpoint has been checked */
    uint64_t rejected3;      /* of the checkpoint's ballot batches: every reason */
    int64_t *proj_circuit;   /* parallel to projects: areas.id of its circuit */
    struct vf_table *tables; /* by id bytes */
    size_t n_tables;
    char *spool; /* strings of sheets and corrections */
    size_t n_spool, cap_spool;
    struct vf_sheet *sheets; /* by (checkpoint, table id bytes, version) */
    size_t n_sheets, cap_sheets, next_sheet;
    int64_t *sheet_ids, *sheet_votes;
    size_t n_sheet_rows, cap_sheet_rows;
    struct vf_retracted *retracted; /* every retraction's batch, by correction id */
    size_t n_retracted;
    struct vf_event *events; /* applied close / tie-rule requests, by (checkpoint, id) */
    size_t n_events, next_event;
    struct store_chain_event *cevents;
    size_t cap_cevents;
    struct vf_corr *corrs; /* by (checkpoint, id) */
    size_t n_corrs, cap_corrs, next_corr;
    int64_t *corr_ids, *corr_deltas;
    size_t n_corr_rows, cap_corr_rows;
    /* The checkpoint's batch pools (vf_batch offsets). */
    uint32_t *reasons;
    size_t n_reasons, cap_reasons;
    uint8_t *bytes;
    size_t n_bytes, cap_bytes;
    struct vf_btable *btables;
    size_t n_btables, cap_btables;
    /* What the checkpoint's delta and table deltas must be, per project / table index. */
    int64_t *want, *twant;
    size_t *touched, *ttouched;
    size_t n_touched, n_ttouched;
    bool *is_touched, *is_ttouched;
    /* Hash inputs, rebuilt per checkpoint. */
    struct store_chain_batch3 *chain3;
    size_t cap_chain3;
    struct store_chain_table *ctables;
    size_t cap_ctables;
    struct store_chain_sheet *csheets;
    size_t cap_csheets;
    struct store_chain_correction *ccorrs;
    size_t cap_ccorrs;
    uint32_t *cids;
    size_t cap_cids;
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

/* A binary int8 column as a uint32 (verify.c); -1 when NULL or outside 0..2^32-1. */
int vf_field_u32(const PGresult *r, int row, int col, uint32_t *out);

/* Index of project id in v->projects, or -1 (verify.c). */
ptrdiff_t vf_project_index(const struct vf *v, int64_t id);

/* ---- format 3 (verify_v3*.c); each returns VF_OK, VF_BAD or VF_ERR as above ---- */

/* The largest count, version or ballots a format 3 record holds (an int4 column's). */
#define VF3_INT31 INT64_C(2147483647)

/* Schema version 7 on (verify_v3_load.c): reads voting tables, the projects' circuits,
 * every sheet and every correction (small tables: held whole), and sets the report's
 * tables, sheets and corrections. */
int vf3_setup(struct vf *v);

/* Reads the batch cursor row's version-7 columns (9 on: kind, rejected_by_reason,
 * sheets, sheets_accepted, sheets_duplicate, counts, table_ids, table_ballots) into b,
 * the checkpoint's newest batch, named who/seq in messages. */
int vf3_add_batch(struct vf *v, const PGresult *r, int row, struct vf_batch *b, const char *who);

/* Of checkpoint id (the checkpoint cursor's row, version-7 columns at 13 on): its format,
 * 0 (NULL) or 3; VF_BAD for anything else, a format-NULL checkpoint after a format 3 one,
 * or one whose version-7 columns or batches hold what only format 3 records. */
int vf3_format(struct vf *v, const PGresult *r, int row, uint64_t id, int *format);

/* The checks of a format 3 checkpoint, after its figures, epoch and prev_hash agreed: its
 * batches, sheets and corrections, its delta and table deltas against them, its Merkle
 * root, body hash and hash (written to hash). n_d / n_p: its decoded deltas and pages. */
int vf3_check_checkpoint(struct vf *v, const PGresult *r, int row, uint64_t id, int64_t epoch,
                         const uint8_t prev[STORE_HASH_BYTES], size_t n_d, size_t n_p,
                         uint8_t hash[STORE_HASH_BYTES]);

/* After the last checkpoint (n of them): no sheet or correction names a checkpoint past
 * it. */
int vf3_finish(struct vf *v, uint64_t n);

/* Adds x to want[k], listing k in touched once (is[k]). */
void vf3_want(int64_t *want, bool *is, size_t *touched, size_t *n, size_t k, int64_t x);
/* Index of a voting table in v->tables, or -1 (verify_v3_load.c). */
ptrdiff_t vf3_table_index(const struct vf *v, const char *id);
/* Appends len bytes and a NUL to a string pool (*pool, grown as needed); returns their
 * offset (verify_v3_load.c). */
size_t vf3_pool_put(char **pool, size_t *n, size_t *cap, const void *s, size_t len);

/* Frees what vf3_* allocated. */
void vf3_cleanup(struct vf *v);

/* ---- chain events (verify_events.c) ---- */

/* A request a checkpoint applied that enters its chain entry (close, tie rule). */
struct vf_event {
    uint64_t checkpoint_id, request_id;
    uint32_t kind; /* 1 close, 2 tie rule */
    char *actor;
    int64_t at_us;
    uint8_t payload[STORE_HASH_BYTES]; /* tie rule: BLAKE2b-256 of the stored seed */
    size_t payload_len;
};

/* What a retraction took back: the retracted batch's stored counts and table ballots. */
struct vf_retracted {
    uint64_t correction_id;
    uint32_t *counts; /* n_counts (project, votes) pairs, ascending */
    size_t n_counts;
    char **table_ids;
    int64_t *table_ballots;
    size_t n_tables;
};

/* Schema 8 on: reads every applied close and tie-rule request (few), and every retracted
 * batch's counts and table ballots. */
int vf3_events_load(struct vf *v);
/* Correction c (kind retract, in checkpoint id) against its batch: its deltas must be minus
 * the batch's counts, its ballots_delta minus their sum; adds minus the batch's table
 * ballots to what the checkpoint's table deltas must be (v->twant). */
int vf3_check_retract(struct vf *v, uint64_t id, const struct vf_corr *c);
/* The events of checkpoint id (ids ascend from call to call), as the chain hashes them,
 * into v->cevents; returns how many. */
size_t vf3_events_for(struct vf *v, uint64_t id);
void vf3_events_cleanup(struct vf *v);

#endif
