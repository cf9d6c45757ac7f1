/* Reading the corrections of the count back from the record (recovery, and the tallyctl
 * commands that list or certify them). Writes nothing: a correction is written with the
 * checkpoint that applies it (checkpoint.c). */
#include "store/cursor.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static char *corr_text(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : xstrdup(PQgetvalue(res, r, c));
}

/* The deltas from the row's two int8[] columns of one length (ids in 0..2^32-1); the
 * arrays are x's even on failure (store_corrections_free). Returns 0 or -1. */
static int corr_deltas(const PGresult *res, int r, struct store_correction_row *x)
{
    int64_t *ids;
    size_t n;
    if (store_val_int8_pairs(res, r, 11, 12, &ids, &x->deltas, &n) < 0)
        return -1;
    x->project_ids = xcalloc(n ? n : 1, sizeof(*x->project_ids));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ids[i] < 0 || ids[i] > UINT32_MAX)
            rc = -1;
        x->project_ids[i] = (uint32_t)ids[i];
    }
    if (rc == 0)
        x->n_deltas = n;
    free(ids);
    return rc;
}

int store_corrections_read(struct store *s, struct store_correction_row **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    PGresult *res = store_query_rows_binary(
        s,
        "SELECT id, checkpoint_id, kind, actor, reason,"
        " (extract(epoch FROM at) * 1000000)::int8, table_id, collector_id, coalesce(seq, 0),"
        " coalesce(from_version, 0)::int8, coalesce(to_version, 0)::int8, project_ids, deltas,"
        " blank_delta, null_delta, ballots_delta FROM corrections ORDER BY id",
        "reading corrections");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct store_correction_row *a = xcalloc(n ? n : 1, sizeof(*a));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct store_correction_row *x = &a[i];
        int r = (int)i;
        uint64_t from, to;
        x->kind = strcmp(PQgetvalue(res, r, 2), "retract") == 0 ? STORE_CORRECTION_RETRACT
                                                                : STORE_CORRECTION_SHEET;
        x->actor = corr_text(res, r, 3);
        x->reason = corr_text(res, r, 4);
        x->table_id = corr_text(res, r, 6);
        x->collector_id = corr_text(res, r, 7);
        if (store_val_u64(res, r, 0, INT64_MAX, &x->id) < 0 ||
            store_val_u64(res, r, 1, INT64_MAX, &x->checkpoint_id) < 0 ||
            store_val_int8(res, r, 5, &x->at_us) < 0 ||
            store_val_u64(res, r, 8, INT64_MAX, &x->seq) < 0 ||
            store_val_u64(res, r, 9, INT32_MAX, &from) < 0 ||
            store_val_u64(res, r, 10, INT32_MAX, &to) < 0 || corr_deltas(res, r, x) < 0 ||
            store_val_int8(res, r, 13, &x->blank_delta) < 0 ||
            store_val_int8(res, r, 14, &x->null_delta) < 0 ||
            store_val_int8(res, r, 15, &x->ballots_delta) < 0) {
            store_set_error(s, "correction row %zu has a value out of range", i);
            rc = -1;
        }
        x->from_version = (uint32_t)from;
        x->to_version = (uint32_t)to;
    }
    PQclear(res);
    if (rc < 0) {
        store_corrections_free(a, n);
        return -1;
    }
    *out = a;
    *n_out = n;
    return 0;
}

void store_corrections_free(struct store_correction_row *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++) {
        free(a[i].actor);
        free(a[i].reason);
        free(a[i].table_id);
        free(a[i].collector_id);
        free(a[i].project_ids);
        free(a[i].deltas);
    }
    free(a);
}
