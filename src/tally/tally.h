/* The in-memory tally: registry of projects (external id -> dense index), counts, the
 * ballot set, per-collector batch watermarks, and the delta of what is applied but not
 * yet durable. Pure: no I/O, no clock, no threads; the caller owns the schedule. */
#ifndef TALLY_TALLY_H
#define TALLY_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/ballot_set.h"

#define TALLY_DIGEST_BYTES 32

struct tally_project {
    uint32_t id; /* external id from the registry */
    uint32_t circuit_id;
};

/* Why a vote or a sheet was not counted; the numbers are the wire's RejectReason and the
 * index into batches.rejected_by_reason (docs/consultation.md). */
enum tally_reason {
    TALLY_REASON_UNKNOWN_PROJECT = 1,
    TALLY_REASON_NOT_ALLOWED = 2,
    TALLY_REASON_UNKNOWN_TABLE = 3,
    TALLY_REASON_OUTSIDE_TABLE_CIRCUIT = 4,
    TALLY_REASON_OVER_ELECTORS = 5,
    TALLY_REASON_TABLE_MODE_CONFLICT = 6,
    TALLY_REASON_SHEET_CONFLICT = 7,
    TALLY_REASON_SUPERSEDED = 8,
    TALLY_REASON_BAD_SHEET = 9,
};
#define TALLY_REASONS 10 /* arrays indexed by reason; [0] unused, always 0 */
/* "unknown_project", ... as in docs/consultation.md; "?" for any other number. */
const char *tally_reason_name(unsigned reason);

struct tally_totals {
    uint64_t batches, votes, accepted, duplicate, rejected; /* rejected: every reason */
    uint64_t rejected_not_allowed; /* of rejected: outside the collector's circuits */
    /* Sheets of sheet batches (a sheet batch adds 1 to batches, nothing to the votes). */
    uint64_t sheets, sheets_accepted, sheets_duplicate, sheets_rejected;
    /* By reason (TALLY_REASONS, [0] unused): rejected votes of ballot batches, rejected
     * sheets of sheet batches. */
    uint64_t reasons[TALLY_REASONS], sheet_reasons[TALLY_REASONS];
};

struct tally_collector {
    char id[64];
    uint64_t applied_seq;        /* last batch applied in memory */
    uint64_t durable_seq;        /* last batch committed to PostgreSQL */
    struct tally_totals durable; /* cumulative over durable batches */
    struct tally_totals pending; /* applied since the last checkpoint was sealed */
    /* Content digest of every applied batch, digests[seq - 1] for seq 1..applied_seq;
     * all zeros where it is unknown (batches recorded before digests existed). */
    uint8_t (*digests)[TALLY_DIGEST_BYTES];
    size_t cap_digests;
};

struct tally_batch_result {
    uint32_t accepted, duplicate, rejected_unknown;
    uint32_t rejected_not_allowed; /* a known project outside the collector's circuits */
    /* By enum tally_reason: votes of a ballot batch ([1], [2] equal rejected_unknown and
     * rejected_not_allowed), sheets of a sheet batch (then the vote figures are 0). */
    uint32_t reasons[TALLY_REASONS];
    uint32_t sheets_accepted, sheets_duplicate;
};

enum tally_apply_status {
    TALLY_APPLIED = 0,    /* counted; its effect joins the pending delta */
    TALLY_RETRANSMIT = 1, /* seq was applied before with the same digest: nothing counted */
    TALLY_GAP = -1,       /* seq skips ahead: expected is applied_seq + 1 */
    TALLY_CONFLICT = -2,  /* seq was applied before with another digest: nothing counted */
};

/* One applied batch inside a delta. */
struct tally_delta_batch {
    uint32_t collector;
    uint64_t seq;
    uint8_t digest[TALLY_DIGEST_BYTES];
    uint32_t votes, accepted, duplicate, rejected_unknown; /* votes: 0 for a sheet batch */
    uint32_t rejected_not_allowed;
    uint8_t kind;                    /* 0 ballots, 1 sheets */
    uint32_t reasons[TALLY_REASONS]; /* votes (ballot batch) or sheets (sheet batch) */
    uint32_t sheets, sheets_accepted, sheets_duplicate;
    size_t counts_off, n_counts; /* in tally_delta.batch_counts (ballot batch; else 0, 0) */
    size_t tables_off, n_tables; /* in tally_delta.batch_tables (ballot batch; else 0, 0) */
};

/* A (key, count) pair: a project's votes by external id, or a table's ballots by dense
 * index, as each use says. */
struct tally_count {
    uint32_t id;
    uint32_t n;
};

struct tally_signed_count {
    uint32_t id; /* external project id */
    int64_t delta;
};

/* An accepted tally sheet inside a delta. */
struct tally_delta_sheet {
    uint32_t table; /* dense table index */
    uint32_t version;
    uint32_t collector;
    uint64_t seq;
    uint8_t digest[TALLY_DIGEST_BYTES];
    uint32_t blank, null_ballots;
    size_t rows_off, n_rows; /* in tally_delta.sheet_rows: external id ascending, n > 0 */
};

/* A correction inside a delta: for now an accepted sheet that replaced an older version. */
#define TALLY_NO_TABLE UINT32_MAX

struct tally_delta_correction {
    uint32_t kind;  /* 0 sheet replacement, 1 retraction (tally_retract_batch) */
    uint32_t table; /* dense index; TALLY_NO_TABLE for a retraction */
    uint64_t tag;   /* the caller's (tally_retract_batch), 0 for a sheet */
    uint32_t collector;
    uint64_t seq;
    uint32_t from_version, to_version;
    size_t deltas_off, n_deltas; /* in tally_delta.correction_deltas: ids ascending, != 0 */
    int64_t blank_delta, null_delta, ballots_delta; /* new minus old */
};

/* A collector's watermark move in a delta. */
struct tally_delta_mark {
    uint32_t collector;
    uint64_t prev_seq, durable_seq;
    struct tally_totals add;
};

/* What a checkpoint must write. Buffers are kept and reused from one checkpoint to the
 * next, so steady-state ingest does not allocate. The accepted tokens of all its batches
 * are pooled in arrival order: nothing in a delta says which batch brought which token,
 * and the store sorts them into token pages. */
struct tally_delta {
    struct tally_delta_batch *batches;
    size_t n_batches, cap_batches;
    uint64_t *tokens;
    size_t n_tokens, cap_tokens;
    int64_t *proj_delta; /* [n_projects] by dense index, zero outside touched */
    /* Dense indices of projects touched; once sealed, exactly those with a non-zero
     * proj_delta (one touched and netted to 0 by a replaced sheet is dropped at seal). */
    uint32_t *touched;
    size_t n_touched;
    uint32_t *out_ids;   /* filled when sealed: external ids of touched, ... */
    int64_t *out_deltas; /* ... and their deltas (negative: a replaced sheet) */
    uint8_t *in_touched; /* [n_projects]: 1 when listed in touched (internal) */
    struct tally_delta_mark *marks;
    size_t n_marks, cap_marks;
    uint64_t votes; /* votes in the batches of this delta */

    /* Per ballot batch (tally_delta_batch.counts_off/tables_off): accepted votes per
     * external project id, and accepted ballots per dense table index, in no order. */
    struct tally_count *batch_counts;
    size_t n_batch_counts, cap_batch_counts;
    struct tally_count *batch_tables;
    size_t n_batch_tables, cap_batch_tables;

    /* Per-ballot table deltas: [n_tables] by dense index, zero outside tables_touched. */
    int64_t *table_delta;
    uint32_t *tables_touched;
    size_t n_tables_touched;
    uint8_t *table_listed; /* [n_tables]: in tables_touched */
    /* Sealed even without batches or corrections (tally_force_checkpoint): a checkpoint
     * that carries only what the caller adds to its job (a close, a tie rule). */
    bool forced;
    /* Filled when sealed: dense indices ascending by table id (strcmp), and their deltas. */
    uint32_t *out_tables;
    int64_t *out_table_deltas;
    size_t n_out_tables;

    /* Every accepted sheet, in the order applied, and its rows. */
    struct tally_delta_sheet *sheets;
    size_t n_sheets, cap_sheets;
    struct tally_count *sheet_rows;
    size_t n_sheet_rows, cap_sheet_rows;
    /* One per accepted sheet that replaced an older version, and their deltas. */
    struct tally_delta_correction *corrections;
    size_t n_corrections, cap_corrections;
    struct tally_signed_count *correction_deltas;
    size_t n_correction_deltas, cap_correction_deltas;
    int64_t blank_delta, null_delta; /* national blank and null ballots, from sheets */
};

struct tally;

/* Builds a tally over a registry of n projects (copied; ids must be unique; order free).
 * expected_ballots sizes the ballot set. key (copied) keys the ballot set's hash: random,
 * secret and drawn afresh by each process (getrandom); nothing stored depends on it.
 * Returns NULL on duplicate ids. */
struct tally *tally_new(const struct tally_project *projects, size_t n, size_t expected_ballots,
                        const uint8_t key[TALLY_HASH_KEY_BYTES]);
void tally_free(struct tally *t); /* NULL is a no-op */

size_t tally_project_count(const struct tally *t);
/* Dense index of an external project id, or -1 when the registry does not have it. */
int32_t tally_project_index(const struct tally *t, uint32_t id);
const struct tally_project *tally_project_at(const struct tally *t, size_t index);
uint64_t tally_votes_at(const struct tally *t, size_t index);

/* Recovery: set a durable count, add a durable token (never a duplicate in a sound
 * database; returns false if it was). */
void tally_restore_votes(struct tally *t, uint32_t project_id, uint64_t votes);
bool tally_restore_token(struct tally *t, uint64_t token);
/* The same for n tokens, prefetching ahead (recovery is DRAM-bound); returns how many were
 * already there. */
size_t tally_restore_tokens(struct tally *t, const uint64_t *tokens, size_t n);

/* Registers a collector (or finds it: an existing id is left as it is). Returns its
 * index, stable for the tally's life. */
uint32_t tally_collector_add(struct tally *t, const char *id, uint64_t durable_seq,
                             const struct tally_totals *durable);
/* Recovery: the stored digest of collector c's batch seq (NULL: unknown). Batches come in
 * seq order; a seq past durable_seq is ignored and returns false. */
bool tally_restore_digest(struct tally *t, uint32_t c, uint64_t seq, const uint8_t *digest);
/* Limits collector c to the projects of some circuits: circuit_ids (n of them, copied;
 * ids no project has are ignored; n may be 0: nothing allowed), or, with circuit_ids NULL,
 * lifts the limit (every project, the default). Applies from the next batch on and may be
 * called again at any time. Returns 0, or -EINVAL when c is not a collector's index. */
int tally_collector_restrict(struct tally *t, uint32_t c, const uint32_t *circuit_ids, size_t n);
/* Index of a collector id, or -1. */
int32_t tally_collector_find(const struct tally *t, const char *id);
size_t tally_collector_count(const struct tally *t);
const struct tally_collector *tally_collector_at(const struct tally *t, uint32_t index);

/* Applies batch seq of collector c, whose content digest is digest (wire_batch_digest): n
 * votes, ballots[i] for projects[i]. A seq applied before is compared by digest: the same
 * is a retransmission, another is a conflict (and *stored points at the digest applied,
 * valid until the next apply). Then validation (unknown project: rejected_unknown; a
 * known project outside the collector's circuits: rejected_not_allowed; either way the
 * ballot stays unused), ballot dedup across all collectors, counting. Fills res for
 * TALLY_APPLIED; *expected for TALLY_GAP. */
enum tally_apply_status tally_apply_batch(struct tally *t, uint32_t c, uint64_t seq,
                                          const uint8_t digest[TALLY_DIGEST_BYTES],
                                          const uint64_t *ballots, const uint32_t *projects,
                                          size_t n, struct tally_batch_result *res,
                                          uint64_t *expected, const uint8_t **stored);

/* ---- voting tables (docs/consultation.md) ---------------------------------------- */

struct tally_table_def {
    const char *id; /* [A-Za-z0-9._-]{1,63} */
    uint32_t circuit_id;
    uint32_t electors;
};
/* Sets the voting tables (copied), once, after tally_new and before anything is applied or
 * restored. Returns 0, or -EINVAL on a duplicate or invalid id, or when called again or
 * after a batch was applied. */
int tally_tables_set(struct tally *t, const struct tally_table_def *tables, size_t n);
size_t tally_table_count(const struct tally *t);
/* Dense index of a table id, or -1 (a hash map, O(1)). */
int32_t tally_table_find(const struct tally *t, const char *id);

enum tally_table_mode { TALLY_TABLE_NONE = 0, TALLY_TABLE_BALLOTS = 1, TALLY_TABLE_SHEET = 2 };
struct tally_table_view {
    const char *id; /* valid for the tally's life */
    uint32_t circuit_id, electors;
    enum tally_table_mode mode; /* BALLOTS once a per-ballot vote was accepted; SHEET once a
                                   sheet was */
    uint64_t ballots;           /* accepted per-ballot votes, or the sheet's blank + null + rows */
    uint32_t version;           /* current sheet's version (0: none) */
    uint32_t blank, null_ballots;
};
/* Table i as applied in memory (durable false) or as the last committed checkpoint holds
 * it. */
void tally_table_get(const struct tally *t, size_t i, bool durable, struct tally_table_view *out);
/* National blank and null ballots (from sheets), applied or durable. Either may be NULL. */
void tally_blank_null(const struct tally *t, bool durable, uint64_t *blank, uint64_t *null_ballots);

/* Recovery, after tally_tables_set: per-ballot ballots of table i (sum of stored table
 * deltas), and the current sheet of a table (its rows: external project ids strictly
 * ascending; rows with votes 0 are skipped; digest copied, NULL: zeros). Project totals are
 * restored separately (tally_restore_votes), so these change no project count; national
 * blank and null follow the sheet (restoring a table's sheet again replaces it). Both set
 * the applied and the durable state. Return 0 or -EINVAL (bad index, version 0, rows not
 * ascending). */
int tally_restore_table_ballots(struct tally *t, uint32_t table, uint64_t ballots);
int tally_restore_sheet(struct tally *t, uint32_t table, uint32_t version,
                        const uint8_t digest[TALLY_DIGEST_BYTES], const uint32_t *project_ids,
                        const uint64_t *votes, size_t n, uint32_t blank, uint32_t null_ballots);

/* tally_apply_batch with tables: dict[k] is the dense table index of the batch's k-th table
 * id (tally_table_find, -1 when unknown), n_dict entries; vote_tables NULL (no vote names a
 * table) or n entries, 0 = none, k (1..n_dict) = dict[k-1] (the caller has checked the
 * range). Checks per vote, in order: unknown project, not_allowed, then for a vote naming a
 * table: unknown_table, outside_table_circuit, table_mode_conflict (table in SHEET mode),
 * over_electors (table's ballots == electors); then ballot dedup. A rejected vote leaves its
 * ballot unused. res->reasons counts the rejected votes by reason. tally_apply_batch(...)
 * is this with (NULL, 0, NULL). */
enum tally_apply_status tally_apply_batch_tables(struct tally *t, uint32_t c, uint64_t seq,
                                                 const uint8_t digest[TALLY_DIGEST_BYTES],
                                                 const uint64_t *ballots, const uint32_t *projects,
                                                 size_t n, const int32_t *dict, size_t n_dict,
                                                 const uint32_t *vote_tables,
                                                 struct tally_batch_result *res, uint64_t *expected,
                                                 const uint8_t **stored);

/* One sheet of a sheet batch, as decoded (borrowed for the call). */
struct tally_sheet_in {
    int32_t table; /* dense index (tally_table_find), -1 when unknown */
    uint32_t version;
    const uint32_t *projects, *votes;
    size_t n_projects, n_votes; /* unequal: bad_sheet */
    uint32_t blank, null_ballots;
    const uint8_t *digest; /* TALLY_DIGEST_BYTES: the canonical sheet digest (wire computes it) */
};
enum tally_sheet_status {
    TALLY_SHEET_ACCEPTED = 0,
    TALLY_SHEET_DUPLICATE = 1,
    TALLY_SHEET_REJECTED = 2,
};
struct tally_sheet_out {
    enum tally_sheet_status status;
    unsigned reason;           /* enum tally_reason when REJECTED, else 0 */
    uint32_t replaced_version; /* ACCEPTED over an older one, else 0 */
};
/* Applies a sheet batch (seq/digest dedup exactly as tally_apply_batch: RETRANSMIT, GAP,
 * CONFLICT). Each sheet is judged whole, in the order of docs/consultation.md ("Tally
 * sheets", steps 1-8; not_allowed: the table's circuit is outside collector c's circuits
 * as set by tally_collector_restrict; bad_sheet also for votes, blank or null above
 * 2^31-1). Sheets of one batch are applied in order (a later sheet of the same table sees
 * the earlier one). For TALLY_APPLIED fills out[i] for each of the n sheets and res (reasons
 * counts rejected sheets; the vote figures are 0). */
enum tally_apply_status tally_apply_sheets(struct tally *t, uint32_t c, uint64_t seq,
                                           const uint8_t digest[TALLY_DIGEST_BYTES],
                                           const struct tally_sheet_in *sheets, size_t n,
                                           struct tally_sheet_out *out,
                                           struct tally_batch_result *res, uint64_t *expected,
                                           const uint8_t **stored);

/* Rejections by reason since tally_new (recovered totals carry no reason): votes of ballot
 * batches (sheets false) or sheets of sheet batches (sheets true). out[0] is 0. */
void tally_reason_counts(const struct tally *t, bool sheets, uint64_t out[TALLY_REASONS]);

/* Durable votes by dense index: what the last committed checkpoint holds. */
const uint64_t *tally_durable_votes(const struct tally *t);
/* National figures over durable batches. */
const struct tally_totals *tally_durable_totals(const struct tally *t);

/* Figures over everything applied in memory (durable or not); rejected counts both
 * reasons. */
const struct tally_totals *tally_applied_totals(const struct tally *t);
/* Rejected votes by reason over the batches applied since tally_new (recovered durable
 * totals carry no reason and are not in them). Either pointer may be NULL. */
void tally_rejected_by_reason(const struct tally *t, uint64_t *unknown_project,
                              uint64_t *not_allowed);
size_t tally_ballot_count(const struct tally *t);
size_t tally_ballot_bytes(const struct tally *t);

/* Votes applied but not yet durable (pending + in flight): the back-pressure measure. A
 * sheet batch weighs its sheets plus their rows, so sheets are held back too. */
uint64_t tally_backlog_votes(const struct tally *t);
bool tally_has_pending(const struct tally *t);

/* Removes the effect of collector c's applied batch seq (tallyctl retract): counts are its
 * accepted votes per project (n_counts interleaved (external project id, votes) pairs,
 * ascending ids) and tables its accepted ballots per table (n_tables interleaved (dense
 * table index, ballots) pairs), as the record keeps them. Subtracts them and adds a
 * correction of kind 1 (tag = the caller's, e.g. its request id) to the pending delta. Its
 * ballot tokens stay in the ballot set: nothing says which they are (docs/consultation.md).
 * Returns 0; -EINVAL when c or seq is not an applied batch, a project or table is unknown,
 * or a count exceeds what is counted (nothing is changed then). */
int tally_retract_batch(struct tally *t, uint32_t c, uint64_t seq, uint64_t tag,
                        const uint32_t *counts, size_t n_counts, const uint32_t *tables,
                        size_t n_tables);

/* The next tally_checkpoint_seal seals even an empty pending delta. */
void tally_force_checkpoint(struct tally *t);

/* Seals the pending delta and returns it (borrowed until commit; the caller may reorder
 * its tokens), or NULL when nothing is pending or a checkpoint is already in flight. */
struct tally_delta *tally_checkpoint_seal(struct tally *t);
/* The in-flight checkpoint committed: moves durable watermarks and totals. */
void tally_checkpoint_commit(struct tally *t);
const struct tally_delta *tally_checkpoint_inflight(const struct tally *t);

#endif
