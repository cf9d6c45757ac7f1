/* Reading the corrections of the count back from the record (recovery, and the tallyctl
 * commands that list or certify them). Writes nothing: a correction is written with the
 * checkpoint that applies it (checkpoint.c). */
#include "store/internal.h"

#include "core/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static char *corr_text(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : xstrdup(PQgetvalue(res, r, c));
}

static int corr_i64(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end)
        return -1;
    *out = v;
    return 0;
}

/* The deltas as two comma-separated lists of equal length. */
static int corr_deltas(const char *ids, const char *deltas, struct store_correction_row *x)
{
    size_t n = *ids ? 1 : 0;
    for (const char *p = ids; *p; p++)
        n += *p == ',';
    x->project_ids = xcalloc(n ? n : 1, sizeof(*x->project_ids));
    x->deltas = xcalloc(n ? n : 1, sizeof(*x->deltas));
    for (size_t i = 0; i < n; i++) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(ids, &end, 10);
        if (errno || end == ids || id > UINT32_MAX || (*end && *end != ','))
            return -1;
        ids = *end ? end + 1 : end;
        errno = 0;
        long long d = strtoll(deltas, &end, 10);
        if (errno || end == deltas || (*end && *end != ','))
            return -1;
        deltas = *end ? end + 1 : end;
        x->project_ids[i] = (uint32_t)id;
        x->deltas[i] = d;
    }
    x->n_deltas = n;
    return *deltas ? -1 : 0;
}

int store_corrections_read(struct store *s, struct store_correction_row **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    PGresult *res = store_query_rows(
        s,
        "SELECT id, checkpoint_id, kind, actor, reason,"
        " (extract(epoch FROM at) * 1000000)::int8, table_id, collector_id, coalesce(seq, 0),"
        " coalesce(from_version, 0), coalesce(to_version, 0),"
        " array_to_string(project_ids, ','), array_to_string(deltas, ','),"
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
        if (store_parse_u64(PQgetvalue(res, r, 0), INT64_MAX, &x->id) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 1), INT64_MAX, &x->checkpoint_id) < 0 ||
            corr_i64(PQgetvalue(res, r, 5), &x->at_us) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 8), INT64_MAX, &x->seq) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 9), INT32_MAX, &from) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 10), INT32_MAX, &to) < 0 ||
            corr_deltas(PQgetvalue(res, r, 11), PQgetvalue(res, r, 12), x) < 0 ||
            corr_i64(PQgetvalue(res, r, 13), &x->blank_delta) < 0 ||
            corr_i64(PQgetvalue(res, r, 14), &x->null_delta) < 0 ||
            corr_i64(PQgetvalue(res, r, 15), &x->ballots_delta) < 0) {
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
