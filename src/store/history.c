/* The consultation's progress over time, read back from the record at recovery: per
 * checkpoint the national accepted, duplicate and rejected votes so far and the voting
 * tables reported so far, at most STORE_HISTORY_MAX points (every 2^k-th checkpoint from the
 * first, ids being consecutive, and the last). Writes nothing; the HTTP side keeps the live points
 * from then on (/v1/history). */
#include "store/cursor.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Cumulative sums over the checkpoints in id order. A table counts as reported from the
 * first checkpoint that brought it a ballot or a tally sheet (as table_progress.reported,
 * which a later retraction back to zero ballots would undo: the history does not). Rows are
 * thinned to every $1-th plus the last; $1 is a power of two chosen from the count. */
static const char HISTORY_SQL[] =
    "WITH firsts AS ("
    "  SELECT id, min(k) AS k FROM ("
    "    SELECT u.id, c.id AS k FROM checkpoints c"
    "    CROSS JOIN LATERAL unnest(c.table_ids, c.table_ballots) AS u(id, n) WHERE u.n > 0"
    "    UNION ALL SELECT table_id, checkpoint_id FROM sheets) x"
    "  GROUP BY id),"
    " reported AS (SELECT k, count(*) AS n FROM firsts GROUP BY k),"
    " h AS ("
    "  SELECT c.id, (extract(epoch FROM c.committed_at) * 1000)::int8 AS ms,"
    "         (sum(c.accepted) OVER w)::int8 AS accepted,"
    "         (sum(c.duplicate) OVER w)::int8 AS duplicate,"
    "         (sum(c.rejected) OVER w)::int8 AS rejected,"
    "         (coalesce(sum(r.n) OVER w, 0))::int8 AS tables_reported,"
    "         row_number() OVER w AS rn, count(*) OVER () AS total"
    "  FROM checkpoints c LEFT JOIN reported r ON r.k = c.id"
    "  WINDOW w AS (ORDER BY c.id))"
    " SELECT id, ms, accepted, duplicate, rejected, tables_reported FROM h"
    " WHERE (rn - 1) %% %" PRIu64 " = 0 OR rn = total ORDER BY id";

int store_history_read(struct store *s, struct store_history_point **out, size_t *n_out,
                       uint64_t *stride)
{
    *out = NULL;
    *n_out = 0;
    *stride = 1;
    PGresult *res =
        store_query_rows_binary(s, "SELECT count(*) FROM checkpoints", "counting checkpoints");
    if (!res)
        return -1;
    uint64_t total = 0;
    int rc = PQntuples(res) == 1 ? store_val_u64(res, 0, 0, INT64_MAX, &total) : -1;
    PQclear(res);
    if (rc < 0) {
        store_set_error(s, "counting checkpoints: unexpected answer");
        return -1;
    }
    uint64_t step = 1;
    while (total / step > STORE_HISTORY_MAX)
        step *= 2;
    char sql[sizeof(HISTORY_SQL) + 24];
    snprintf(sql, sizeof(sql), HISTORY_SQL, step);
    res = store_query_rows_binary(s, sql, "reading the history of checkpoints");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct store_history_point *a = xcalloc(n ? n : 1, sizeof(*a));
    for (size_t i = 0; i < n && rc == 0; i++) {
        int r = (int)i;
        int64_t ms;
        struct store_history_point *p = &a[i];
        rc = store_val_u64(res, r, 0, INT64_MAX, &p->checkpoint) == 0 &&
                     store_val_int8(res, r, 1, &ms) == 0 &&
                     store_val_u64(res, r, 2, INT64_MAX, &p->accepted) == 0 &&
                     store_val_u64(res, r, 3, INT64_MAX, &p->duplicate) == 0 &&
                     store_val_u64(res, r, 4, INT64_MAX, &p->rejected) == 0 &&
                     store_val_u64(res, r, 5, INT64_MAX, &p->tables_reported) == 0
                 ? 0
                 : -1;
        p->committed_ms = ms;
    }
    PQclear(res);
    if (rc < 0) {
        free(a);
        store_set_error(s, "the history of checkpoints has a value out of range");
        return -1;
    }
    *out = a;
    *n_out = n;
    *stride = step;
    return 0;
}
