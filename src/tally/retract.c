/* Retracting one applied batch (tallyctl retract): its counts and table ballots come back
 * from the record, are checked against what is counted, and are subtracted as a correction
 * of the pending delta. The batch's ballot tokens are not touched: nothing links them to it. */
#include "tally/internal.h"

#include <errno.h>
#include <string.h>

int tally_retract_batch(struct tally *t, uint32_t c, uint64_t seq, uint64_t tag,
                        const uint32_t *counts, size_t n_counts, const uint32_t *tables,
                        size_t n_tables)
{
    if (c >= t->n_collectors || seq == 0 || seq > t->collectors[c].applied_seq)
        return -EINVAL;
    /* Everything is checked before anything moves. */
    uint64_t total = 0;
    for (size_t i = 0; i < n_counts; i++) {
        int32_t p = tally_project_index(t, counts[2 * i]);
        if (p < 0 || t->counts[p] < counts[2 * i + 1] || (i && counts[2 * i] <= counts[2 * i - 2]))
            return -EINVAL;
        total += counts[2 * i + 1];
    }
    for (size_t i = 0; i < n_tables; i++) {
        uint32_t k = tables[2 * i];
        if (k >= t->n_tables || t->tables[k].ballots < tables[2 * i + 1])
            return -EINVAL;
    }

    struct tally_delta *d = t->pending;
    struct tally_delta_correction *corr = tally_delta_add_correction(d, n_counts);
    corr->kind = 1;
    corr->table = TALLY_NO_TABLE;
    corr->tag = tag;
    corr->collector = c;
    corr->seq = seq;
    struct tally_signed_count *cd = d->correction_deltas + corr->deltas_off;
    size_t n_cd = 0;
    for (size_t i = 0; i < n_counts; i++) {
        uint32_t v = counts[2 * i + 1];
        if (v == 0)
            continue;
        tally_project_add(t, d, (uint32_t)tally_project_index(t, counts[2 * i]), -(int64_t)v);
        cd[n_cd++] = (struct tally_signed_count){counts[2 * i], -(int64_t)v};
    }
    corr->n_deltas = n_cd;
    d->n_correction_deltas += n_cd;
    corr->ballots_delta = -(int64_t)total;
    for (size_t i = 0; i < n_tables; i++) {
        uint32_t k = tables[2 * i], v = tables[2 * i + 1];
        t->tables[k].ballots -= v;
        tally_delta_table_add(d, k, -(int64_t)v);
    }
    return 0;
}
