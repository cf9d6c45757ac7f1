/* Internal to the tally module: struct tally itself, a voting table's state, and the
 * helpers tally.c (ballot batches), tables.c (tables, seal and commit of their state) and
 * sheets.c (sheet batches) share. Nothing outside src/tally includes it. */
#ifndef TALLY_INTERNAL_H
#define TALLY_INTERNAL_H

#include "tally/delta.h"
#include "tally/tally.h"

/* A voting table. The fields a per-ballot vote reads come first (one cache line). */
struct tally_table {
    uint32_t circuit_id, electors;
    uint32_t version;     /* applied current sheet (0: none): SHEET mode when > 0 */
    uint32_t rank;        /* position of id in strcmp order over all tables */
    uint64_t ballots;     /* applied per-ballot ballots: BALLOTS mode when > 0 */
    uint64_t sheet_total; /* applied sheet's blank + null + rows */
    uint32_t blank, null_ballots;
    struct tally_count *rows; /* applied sheet's rows: external id ascending, n > 0 */
    size_t n_rows;
    uint8_t digest[TALLY_DIGEST_BYTES];
    /* What the last committed checkpoint holds. */
    uint64_t durable_ballots, durable_sheet_total;
    uint32_t durable_version, durable_blank, durable_null;
    char id[64];
};

struct tally {
    size_t n_projects;
    struct tally_project *projects; /* by dense index */
    uint64_t *counts;               /* by dense index, everything applied */
    uint64_t *durable;              /* by dense index, committed only */
    uint32_t *map_keys;             /* registry map: external id -> dense index */
    int32_t *map_vals;              /* -1 marks an empty slot */
    size_t map_mask;

    struct tally_set ballots;

    struct tally_collector *collectors;
    size_t n_collectors, cap_collectors;
    /* By collector: NULL when it may vote for every project, else a bitmap over dense
     * project indices of those it may (tally_collector_restrict), and its circuits sorted
     * (for sheets, whose tables name a circuit). */
    uint64_t **allowed;
    uint32_t **circuits;
    size_t *n_circuits;

    struct tally_delta deltas[2];
    struct tally_delta *pending, *inflight; /* inflight is NULL when no checkpoint runs */

    struct tally_totals applied;
    struct tally_totals durable_total;
    uint64_t vote_reasons[TALLY_REASONS], sheet_reasons[TALLY_REASONS]; /* since tally_new */

    /* One batch's accepted votes by dense project and ballots by dense table, with the
     * indices touched: zero again after each batch. */
    uint32_t *hist, *hist_touched;
    uint32_t *thist, *thist_touched;

    bool tables_set;
    size_t n_tables;
    struct tally_table *tables; /* by dense index */
    int32_t *tmap;              /* table id hash -> dense index, -1 empty */
    size_t tmap_mask;
    uint64_t blank, null_ballots, durable_blank, durable_null; /* national, from sheets */

    struct tally_count *scratch; /* one sheet's rows while it is judged */
    size_t cap_scratch;
};

void tally_totals_add(struct tally_totals *to, const struct tally_totals *add);

/* The seq/digest dedup every batch kind goes through: TALLY_APPLIED means seq is
 * applied_seq + 1 and the batch may be applied; then tally_seq_advance records it. */
enum tally_apply_status tally_seq_check(struct tally *t, uint32_t c, uint64_t seq,
                                        const uint8_t *digest, uint64_t *expected,
                                        const uint8_t **stored);
void tally_seq_advance(struct tally *t, uint32_t c, uint64_t seq, const uint8_t *digest);

/* Adds v (either sign) to project p's applied count and to delta d. */
void tally_project_add(struct tally *t, struct tally_delta *d, uint32_t p, int64_t v);

/* Is collector c allowed tables of circuit? (restricted by tally_collector_restrict) */
bool tally_collector_has_circuit(const struct tally *t, uint32_t c, uint32_t circuit);

/* tables.c: at seal, the per-ballot table deltas into out_tables; at commit, the delta's
 * table state and blank/null into the durable state; at tally_free, the tables. */
void tally_tables_seal(struct tally *t, struct tally_delta *d);
void tally_tables_commit(struct tally *t, const struct tally_delta *d);
void tally_tables_free(struct tally *t);

#endif
