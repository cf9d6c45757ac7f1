/* Tally sheets: judging each sheet of a sheet batch whole (docs/consultation.md, "Tally
 * sheets", steps 1-8), applying an accepted one as the table's current sheet, and recording
 * it, and the correction when it replaces an older version, in the pending delta. The
 * digest of a sheet is the wire's; batch dedup is tally.c's. */
#include "tally/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

static int cmp_count_id(const void *a, const void *b)
{
    uint32_t x = ((const struct tally_count *)a)->id, y = ((const struct tally_count *)b)->id;
    return (x > y) - (x < y);
}

/* Steps 1-7 for sheet s sent by collector c. Leaves its rows in t->scratch, sorted by
 * project id, and their sum with blank and null in *total. Returns 0 (accept), a reason,
 * or -1 for a duplicate of the current sheet. */
static int sheet_judge(struct tally *t, uint32_t c, const struct tally_sheet_in *s, uint64_t *total)
{
    if (s->table < 0)
        return TALLY_REASON_UNKNOWN_TABLE;
    assert((size_t)s->table < t->n_tables);
    const struct tally_table *tb = &t->tables[s->table];
    if (!tally_collector_has_circuit(t, c, tb->circuit_id))
        return TALLY_REASON_NOT_ALLOWED;

    if (s->version == 0 || s->n_projects != s->n_votes || s->blank > INT32_MAX ||
        s->null_ballots > INT32_MAX)
        return TALLY_REASON_BAD_SHEET;
    size_t n = s->n_projects;
    t->scratch = xgrow(t->scratch, &t->cap_scratch, n, sizeof(*t->scratch));
    for (size_t i = 0; i < n; i++) {
        if (s->votes[i] > INT32_MAX)
            return TALLY_REASON_BAD_SHEET;
        t->scratch[i] = (struct tally_count){s->projects[i], s->votes[i]};
    }
    qsort(t->scratch, n, sizeof(*t->scratch), cmp_count_id);
    for (size_t i = 1; i < n; i++)
        if (t->scratch[i].id == t->scratch[i - 1].id)
            return TALLY_REASON_BAD_SHEET;

    if (s->version < tb->version)
        return TALLY_REASON_SUPERSEDED;
    if (s->version == tb->version)
        return memcmp(s->digest, tb->digest, TALLY_DIGEST_BYTES) == 0 ? -1
                                                                      : TALLY_REASON_SHEET_CONFLICT;

    /* Every row, zero ones included: a sheet naming a project it cannot have is wrong. */
    bool outside = false;
    uint64_t sum = (uint64_t)s->blank + s->null_ballots;
    for (size_t i = 0; i < n; i++) {
        int32_t p = tally_project_index(t, t->scratch[i].id);
        if (p < 0)
            return TALLY_REASON_UNKNOWN_PROJECT;
        outside |= t->projects[p].circuit_id != tb->circuit_id;
        sum += t->scratch[i].n;
    }
    if (outside)
        return TALLY_REASON_OUTSIDE_TABLE_CIRCUIT;
    if (sum > tb->electors)
        return TALLY_REASON_OVER_ELECTORS;
    if (tb->ballots > 0)
        return TALLY_REASON_TABLE_MODE_CONFLICT;
    *total = sum;
    return 0;
}

static void count_row(struct tally *t, struct tally_delta *d, uint32_t project, int64_t v)
{
    int32_t p = tally_project_index(t, project);
    /* A restored sheet may name a project the registry no longer has: nothing to count. */
    if (p >= 0)
        tally_project_add(t, d, (uint32_t)p, v);
}

/* Step 8: sheet s (judged, rows in t->scratch) becomes its table's current sheet. */
static uint32_t sheet_accept(struct tally *t, struct tally_delta *d, uint32_t c, uint64_t seq,
                             const struct tally_sheet_in *s, uint64_t total)
{
    struct tally_table *tb = &t->tables[s->table];
    size_t m = 0;
    for (size_t i = 0; i < s->n_projects; i++)
        if (t->scratch[i].n)
            t->scratch[m++] = t->scratch[i];
    const struct tally_count *rows = t->scratch;

    struct tally_delta_sheet *ds = tally_delta_add_sheet(d, m);
    ds->table = (uint32_t)s->table;
    ds->version = s->version;
    ds->collector = c;
    ds->seq = seq;
    memcpy(ds->digest, s->digest, TALLY_DIGEST_BYTES);
    ds->blank = s->blank;
    ds->null_ballots = s->null_ballots;
    ds->n_rows = m;
    if (m)
        memcpy(d->sheet_rows + ds->rows_off, rows, m * sizeof(*rows));
    d->n_sheet_rows += m;

    /* New rows minus the current sheet's, merged by project id (both ascending). */
    uint32_t from = tb->version;
    struct tally_delta_correction *corr = NULL;
    struct tally_signed_count *cd = NULL;
    if (from) {
        corr = tally_delta_add_correction(d, m + tb->n_rows);
        cd = d->correction_deltas + corr->deltas_off;
        corr->kind = 0;
        corr->table = (uint32_t)s->table;
        corr->collector = c;
        corr->seq = seq;
        corr->from_version = from;
        corr->to_version = s->version;
    }
    size_t i = 0, j = 0, n_cd = 0;
    while (i < m || j < tb->n_rows) {
        uint32_t id;
        int64_t v;
        if (j == tb->n_rows || (i < m && rows[i].id < tb->rows[j].id)) {
            id = rows[i].id;
            v = rows[i++].n;
        } else if (i == m || tb->rows[j].id < rows[i].id) {
            id = tb->rows[j].id;
            v = -(int64_t)tb->rows[j++].n;
        } else {
            id = rows[i].id;
            v = (int64_t)rows[i++].n - tb->rows[j++].n;
        }
        if (v == 0)
            continue;
        count_row(t, d, id, v);
        if (cd)
            cd[n_cd++] = (struct tally_signed_count){id, v};
    }
    int64_t blank_delta = (int64_t)s->blank - tb->blank;
    int64_t null_delta = (int64_t)s->null_ballots - tb->null_ballots;
    if (corr) {
        corr->n_deltas = n_cd;
        d->n_correction_deltas += n_cd;
        corr->blank_delta = blank_delta;
        corr->null_delta = null_delta;
        corr->ballots_delta = (int64_t)total - (int64_t)tb->sheet_total;
    }
    t->blank += (uint64_t)blank_delta;
    t->null_ballots += (uint64_t)null_delta;
    d->blank_delta += blank_delta;
    d->null_delta += null_delta;

    /* Sheets are rare (thousands, not per vote): each keeps its own rows. */
    struct tally_count *keep = xcalloc(m, sizeof(*keep));
    if (m)
        memcpy(keep, rows, m * sizeof(*keep));
    free(tb->rows);
    tb->rows = keep;
    tb->n_rows = m;
    tb->version = s->version;
    tb->blank = s->blank;
    tb->null_ballots = s->null_ballots;
    tb->sheet_total = total;
    memcpy(tb->digest, s->digest, TALLY_DIGEST_BYTES);
    return from;
}

enum tally_apply_status tally_apply_sheets(struct tally *t, uint32_t c, uint64_t seq,
                                           const uint8_t digest[TALLY_DIGEST_BYTES],
                                           const struct tally_sheet_in *sheets, size_t n,
                                           struct tally_sheet_out *out,
                                           struct tally_batch_result *res, uint64_t *expected,
                                           const uint8_t **stored)
{
    enum tally_apply_status st = tally_seq_check(t, c, seq, digest, expected, stored);
    if (st != TALLY_APPLIED)
        return st;
    struct tally_delta *d = t->pending;
    tally_delta_reserve(d, 0);
    uint32_t why[TALLY_REASONS] = {0};
    uint32_t accepted = 0, duplicate = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tally_sheet_in *s = &sheets[i];
        assert(s->digest);
        uint64_t total = 0;
        int r = sheet_judge(t, c, s, &total);
        out[i] = (struct tally_sheet_out){0};
        if (r < 0) {
            out[i].status = TALLY_SHEET_DUPLICATE;
            duplicate++;
        } else if (r > 0) {
            out[i].status = TALLY_SHEET_REJECTED;
            out[i].reason = (unsigned)r;
            why[r]++;
        } else {
            out[i].status = TALLY_SHEET_ACCEPTED;
            out[i].replaced_version = sheet_accept(t, d, c, seq, s, total);
            accepted++;
        }
    }

    struct tally_delta_batch *b = &d->batches[d->n_batches++];
    memset(b, 0, sizeof(*b));
    b->collector = c;
    b->seq = seq;
    memcpy(b->digest, digest, TALLY_DIGEST_BYTES);
    b->kind = 1;
    memcpy(b->reasons, why, sizeof(why));
    b->sheets = (uint32_t)n;
    b->sheets_accepted = accepted;
    b->sheets_duplicate = duplicate;

    for (unsigned k = 1; k < TALLY_REASONS; k++)
        t->sheet_reasons[k] += why[k];
    struct tally_totals add = {.batches = 1,
                               .sheets = n,
                               .sheets_accepted = accepted,
                               .sheets_duplicate = duplicate,
                               .sheets_rejected = n - accepted - duplicate};
    for (unsigned k = 1; k < TALLY_REASONS; k++)
        add.sheet_reasons[k] = why[k];
    tally_seq_advance(t, c, seq, digest);
    tally_totals_add(&t->collectors[c].pending, &add);
    tally_totals_add(&t->applied, &add);

    memset(res, 0, sizeof(*res));
    memcpy(res->reasons, why, sizeof(why));
    res->sheets_accepted = accepted;
    res->sheets_duplicate = duplicate;
    return TALLY_APPLIED;
}
