/* tallyctl verify: recomputes the record (docs/record.md) in one read-only snapshot with
 * SELECT alone — each collector against its batch rows, each checkpoint against its batch
 * rows and the hash chain, each token page against the digest its latest checkpoint lists,
 * tallies and the results views against the deltas — and names the first disagreement.
 * Writes nothing and trusts no constraint: a tampered database may have dropped them.
 * The token-page checks are in verify_pages.c, those of chain format 3 (sheets,
 * corrections, per-batch counts, Merkle root) in verify_v3.c; the state they share,
 * verify_internal.h. */
#include "store/verify_internal.h"

#include "store/chain.h"
#include "store/cursor.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VF_MIN_VERSION 5    /* 005_record_views: from here on the chain is mandatory */
#define VF_PROGRESS_MS 2000 /* a progress line at most this often */
#define VF_CP_FETCH 256     /* checkpoint rows per FETCH (each holds a delta vector) */
#define VF_BATCH_FETCH 4096 /* batch rows per FETCH (small rows) */

static int64_t vf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records the first disagreement; returns VF_BAD for the caller to pass up. */
int vf_bad(struct vf *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->out->problem, sizeof(v->out->problem), fmt, ap);
    va_end(ap);
    return VF_BAD;
}

void vf_tick(struct vf *v, const char *fmt, ...)
{
    if (!v->progress)
        return;
    int64_t now = vf_now_ms();
    if (now < v->next_progress_ms)
        return;
    v->next_progress_ms = now + VF_PROGRESS_MS;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    v->progress(v->arg, line);
}

const char *vf_hex(const uint8_t *d, char out[2 * STORE_HASH_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < STORE_HASH_BYTES; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * STORE_HASH_BYTES] = '\0';
    return out;
}

/* A decimal column of a text-format result; NULL reads as 0 (sums over no rows). */
static int64_t vf_text_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

ptrdiff_t vf_project_index(const struct vf *v, int64_t id)
{
    size_t lo = 0, hi = v->n_projects;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int64_t)v->projects[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->n_projects && (int64_t)v->projects[lo] == id ? (ptrdiff_t)lo : -1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- set-up: schema, compaction mark, writer epoch, projects --------------------------- */

static int vf_setup(struct vf *v)
{
    struct store *s = v->s;
    int rc = VF_ERR;
    PGresult *res = store_query_rows(s, "SELECT to_regclass('schema_migrations') IS NOT NULL",
                                     "reading schema version");
    if (!res)
        return VF_ERR;
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        store_set_error(s, "no tallyd schema in this database (tallyctl migrate creates it)");
        goto done;
    }
    PQclear(res);
    res = store_query_rows(s, "SELECT coalesce(max(version), 0) FROM schema_migrations",
                           "reading schema version");
    if (!res)
        return VF_ERR;
    int version = atoi(PQgetvalue(res, 0, 0));
    v->version = version;
    if (version < VF_MIN_VERSION) {
        store_set_error(s,
                        "schema version %d predates the verifiable record (version %d): "
                        "run tallyctl migrate first",
                        version, VF_MIN_VERSION);
        goto done;
    }
    if (version > store_schema_latest()) {
        store_set_error(s, "schema version %d is newer than this build knows (%d)", version,
                        store_schema_latest());
        goto done;
    }
    PQclear(res);
    res = store_query_rows(s,
                           "SELECT (SELECT count(*) FROM tally_compaction),"
                           " (SELECT max(through) FROM tally_compaction),"
                           " (SELECT count(*) FROM writer), (SELECT max(epoch) FROM writer),"
                           " (SELECT count(*) FROM checkpoints)",
                           "reading the compaction mark and the writer epoch");
    if (!res)
        return VF_ERR;
    if (vf_text_i64(res, 0, 0) != 1 || vf_text_i64(res, 0, 2) != 1) {
        rc = vf_bad(v,
                    "tally_compaction holds %" PRId64 " rows and writer %" PRId64 ", not one each",
                    vf_text_i64(res, 0, 0), vf_text_i64(res, 0, 2));
        goto done;
    }
    v->through = (uint64_t)vf_text_i64(res, 0, 1);
    v->writer_epoch = (uint64_t)vf_text_i64(res, 0, 3);
    v->n_checkpoints_seen = (uint64_t)vf_text_i64(res, 0, 4);
    PQclear(res);
    res = store_query_rows(s, "SELECT id FROM projects ORDER BY id", "reading projects");
    if (!res)
        return VF_ERR;
    v->n_projects = (size_t)PQntuples(res);
    v->projects = xcalloc(v->n_projects, sizeof(*v->projects));
    v->sum_through = xcalloc(v->n_projects, sizeof(*v->sum_through));
    v->sum_all = xcalloc(v->n_projects, sizeof(*v->sum_all));
    for (size_t i = 0; i < v->n_projects; i++)
        v->projects[i] = (uint32_t)vf_text_i64(res, (int)i, 0); /* CHECK: 0..2^32-1 */
    v->out->projects = v->n_projects;
    v->v7 = version >= 7;
    rc = VF_OK;
done:
    PQclear(res);
    return rc;
}

/* ---- (b) collectors: seqs 1..durable_seq, totals equal to their batch rows -------------- */

/* Names the batch that breaks collector id's run of seqs 1..durable. */
static int vf_collector_seqs(struct vf *v, const char *id, int64_t durable, int64_t n, int64_t lo,
                             int64_t hi)
{
    char d[24];
    snprintf(d, sizeof(d), "%" PRId64, durable);
    const char *params[2] = {id, d};
    const char *sql;
    if (lo < 1)
        return vf_bad(v, "collector %s holds batch seq %" PRId64 ", below 1", id, lo);
    if (hi > durable)
        sql = "SELECT min(seq) FROM batches WHERE collector_id = $1 AND seq > $2::bigint";
    else
        sql = "SELECT min(s) FROM generate_series(1, $2::bigint) s WHERE NOT EXISTS"
              " (SELECT 1 FROM batches b WHERE b.collector_id = $1 AND b.seq = s)";
    PGresult *res = PQexecParams(v->s->conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(v->s, res, "reading a collector's batch seqs");
        PQclear(res);
        return VF_ERR;
    }
    int64_t seq = vf_text_i64(res, 0, 0);
    int rc;
    if (hi > durable)
        rc = vf_bad(v, "collector %s holds batch seq %" PRId64 ", past its durable_seq %" PRId64,
                    id, seq, durable);
    else if (seq > 0)
        rc = vf_bad(v,
                    "collector %s: batch seq %" PRId64 " is missing (its batch rows must be seqs"
                    " 1..durable_seq %" PRId64 "; there are %" PRId64 ")",
                    id, seq, durable, n);
    else
        rc = vf_bad(v, "collector %s has %" PRId64 " batch rows for seqs 1..%" PRId64, id, n,
                    durable);
    PQclear(res);
    return rc;
}

/* A batch row's votes rejected for a project outside its collector's circuits, as an SQL
 * expression over batches alias b (the column exists from migration 6 on). */
static const char *vf_not_allowed(const struct vf *v)
{
    return v->version >= 6 ? "b.rejected_not_allowed" : "0";
}

/* Schema 7 on: a batch row's rejected votes (a ballot batch's every reason; the two old
 * columns where it records no reasons, as before migration 7; none for a sheet batch) and
 * rejected sheets (a sheet batch's every reason). */
#define VF_REASONS_SUM "(SELECT coalesce(sum(x), 0) FROM unnest(b.rejected_by_reason) x)"
#define VF_REJECTED_V7                                                                             \
    "CASE WHEN b.kind = 'sheets' THEN 0 WHEN cardinality(b.rejected_by_reason) > 0"                \
    " THEN " VF_REASONS_SUM " ELSE b.rejected_unknown::int8 + b.rejected_not_allowed END"

static int vf_collectors(struct vf *v)
{
    /* A collector's rejected counts every reason. */
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "SELECT c.id, c.durable_seq, c.batches, c.votes, c.accepted, c.duplicate, c.rejected,"
             " count(b.seq), min(b.seq), max(b.seq), sum(b.votes), sum(b.accepted),"
             " sum(b.duplicate), sum(%s)%s"
             " FROM collectors c LEFT JOIN batches b ON b.collector_id = c.id"
             " GROUP BY c.id ORDER BY c.id COLLATE \"C\"",
             v->v7             ? VF_REJECTED_V7
             : v->version >= 6 ? "b.rejected_unknown::int8 + b.rejected_not_allowed"
                               : "b.rejected_unknown::int8",
             v->v7 ? ", c.sheets, c.sheets_accepted, c.sheets_duplicate, c.sheets_rejected,"
                     " sum(b.sheets), sum(b.sheets_accepted), sum(b.sheets_duplicate),"
                     " sum(CASE WHEN b.kind = 'sheets' THEN " VF_REASONS_SUM " ELSE 0 END)"
                   : "");
    PGresult *res = store_query_rows(v->s, sql, "reading collectors and their batches");
    if (!res)
        return VF_ERR;
    const char *const what[5] = {"batches", "votes", "accepted", "duplicate",
                                 v->v7 ? "rejected (every reason of its ballot batches)"
                                       : "rejected (rejected_unknown + rejected_not_allowed)"};
    int rc = VF_OK;
    int rows = PQntuples(res);
    for (int r = 0; r < rows && rc == VF_OK; r++) {
        const char *id = PQgetvalue(res, r, 0);
        int64_t durable = vf_text_i64(res, r, 1);
        int64_t n = vf_text_i64(res, r, 7), lo = vf_text_i64(res, r, 8);
        int64_t hi = vf_text_i64(res, r, 9);
        /* Primary key (collector_id, seq): n distinct seqs in 1..durable are all of them. */
        if (n != durable || (n > 0 && (lo != 1 || hi != durable))) {
            rc = vf_collector_seqs(v, id, durable, n, n ? lo : 1, n ? hi : 0);
            break;
        }
        for (int k = 0; k < 5; k++) {
            int64_t total = vf_text_i64(res, r, 2 + k);
            int64_t rows_sum = k == 0 ? n : vf_text_i64(res, r, 9 + k);
            if (total != rows_sum) {
                rc = vf_bad(v, "collector %s totals %" PRId64 " %s, its batch rows %s %" PRId64, id,
                            total, what[k], k == 0 ? "number" : "sum to", rows_sum);
                break;
            }
        }
        static const char *const swhat[4] = {"sheets", "sheets_accepted", "sheets_duplicate",
                                             "sheets_rejected"};
        for (int k = 0; v->v7 && rc == VF_OK && k < 4; k++) {
            int64_t total = vf_text_i64(res, r, 14 + k), rows_sum = vf_text_i64(res, r, 18 + k);
            if (total != rows_sum)
                rc = vf_bad(v, "collector %s totals %" PRId64 " %s, its batch rows sum to %" PRId64,
                            id, total, swhat[k], rows_sum);
        }
    }
    v->out->collectors = (uint64_t)rows;
    PQclear(res);
    if (rc != VF_OK)
        return rc;
    res = store_query_rows(v->s,
                           "SELECT b.collector_id, min(b.seq) FROM batches b WHERE NOT EXISTS"
                           " (SELECT 1 FROM collectors c WHERE c.id = b.collector_id)"
                           " GROUP BY 1 ORDER BY b.collector_id COLLATE \"C\" LIMIT 1",
                           "reading batches of unknown collectors");
    if (!res)
        return VF_ERR;
    if (PQntuples(res) > 0)
        rc = vf_bad(v, "batch %s/%s belongs to collector %s, which is not in collectors",
                    PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* ---- (a) checkpoints: figures, deltas, chain ------------------------------------------- */

int vf_field_u32(const PGresult *r, int row, int col, uint32_t *out)
{
    int64_t x;
    if (store_val_int8(r, row, col, &x) < 0 || x < 0 || x > UINT32_MAX)
        return -1;
    *out = (uint32_t)x;
    return 0;
}

/* Adds the batch cursor's current row to the checkpoint being checked. */
static int vf_add_batch(struct vf *v, const PGresult *r, int row)
{
    size_t id_len;
    const uint8_t *id = store_val_bytes(r, row, 1, &id_len);
    int64_t seq = 0;
    if (!id || store_val_int8(r, row, 2, &seq) < 0)
        return vf_bad(v, "a batch row has no collector id or seq");
    if (v->n_batches == v->cap_batches) {
        v->cap_batches = v->cap_batches ? 2 * v->cap_batches : 256;
        v->batches = xreallocarray(v->batches, v->cap_batches, sizeof(*v->batches));
    }
    struct vf_batch *b = &v->batches[v->n_batches];
    memset(b, 0, sizeof(*b));
    b->seq = (uint64_t)seq;
    if (v->n_pool + id_len + 1 > v->cap_pool) {
        v->cap_pool = 2 * (v->n_pool + id_len + 1);
        v->pool = xreallocarray(v->pool, v->cap_pool, 1);
    }
    b->id_off = v->n_pool;
    memcpy(v->pool + v->n_pool, id, id_len);
    v->pool[v->n_pool + id_len] = '\0';
    v->n_pool += id_len + 1;
    const char *who = v->pool + b->id_off;

    if (seq < 1)
        return vf_bad(v, "batch %s/%" PRId64 " has a seq below 1", who, seq);
    if (vf_field_u32(r, row, 3, &b->votes) < 0 || vf_field_u32(r, row, 4, &b->accepted) < 0 ||
        vf_field_u32(r, row, 5, &b->duplicate) < 0 || vf_field_u32(r, row, 6, &b->rejected) < 0 ||
        vf_field_u32(r, row, 8, &b->not_allowed) < 0)
        return vf_bad(v, "batch %s/%" PRId64 " has a figure that is NULL or outside 0..2^32-1", who,
                      seq);
    size_t dlen;
    const uint8_t *d = store_val_bytes(r, row, 7, &dlen);
    if (d && dlen != STORE_HASH_BYTES)
        return vf_bad(v, "batch %s/%" PRId64 " has a digest of %zu bytes, not 32", who, seq, dlen);
    if (d) {
        b->has_digest = true;
        memcpy(b->digest, d, STORE_HASH_BYTES);
    }
    v->votes += b->votes;
    v->accepted += b->accepted;
    v->duplicate += b->duplicate;
    v->rejected += (uint64_t)b->rejected + b->not_allowed;
    v->n_batches++;
    if (v->v7)
        return vf3_add_batch(v, r, row, b, who);
    return VF_OK;
}

/* Decodes the delta and page columns of checkpoint id and checks their shape: deltas
 * strictly ascending by project, each project registered, no negative count (format 3:
 * any count, a replaced sheet subtracts); pages
 * distinct, each with its 32-byte digest. Fills v->d_ids/d_votes and v->pages. */
static int vf_decode_lists(struct vf *v, const PGresult *r, int row, uint64_t id, int format,
                           size_t *n_d, size_t *n_p, int64_t *delta_sum)
{
    size_t n_votes, n_pages_ids;
    if (store_val_int8_array(r, row, 7, &v->a_ids, &v->cap_a_ids, n_d) < 0 ||
        store_val_int8_array(r, row, 8, &v->a_votes, &v->cap_a_votes, &n_votes) < 0 ||
        store_val_int8_array(r, row, 9, &v->a_pages, &v->cap_a_pages, &n_pages_ids) < 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 " has a delta or page list that is NULL or not a "
                      "one-dimensional array without NULLs",
                      id);
    if (*n_d != n_votes)
        return vf_bad(v, "checkpoint %" PRIu64 " has %zu delta ids but %zu delta votes", id, *n_d,
                      n_votes);
    if (*n_d > v->cap_d) {
        v->cap_d = *n_d;
        v->d_ids = xreallocarray(v->d_ids, v->cap_d, sizeof(*v->d_ids));
        v->d_votes = xreallocarray(v->d_votes, v->cap_d, sizeof(*v->d_votes));
    }
    *delta_sum = 0;
    for (size_t i = 0; i < *n_d; i++) {
        int64_t p = v->a_ids[i], n = v->a_votes[i];
        if (i > 0 && p <= v->a_ids[i - 1])
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": delta project ids are not strictly ascending"
                          " (%" PRId64 " after %" PRId64 ")",
                          id, p, v->a_ids[i - 1]);
        if (vf_project_index(v, p) < 0)
            return vf_bad(v,
                          "checkpoint %" PRIu64 " counts votes for project %" PRId64
                          ", which is not in projects",
                          id, p);
        if (n < 0 && format != 3)
            return vf_bad(v, "checkpoint %" PRIu64 " counts %" PRId64 " votes for project %" PRId64,
                          id, n, p);
        if (n < -(INT64_C(1) << 53) || n > (INT64_C(1) << 53))
            return vf_bad(v, "checkpoint %" PRIu64 " counts %" PRId64 " votes for project %" PRId64,
                          id, n, p);
        v->d_ids[i] = (uint32_t)p;
        v->d_votes[i] = n;
        *delta_sum += n;
    }

    size_t dlen;
    const uint8_t *dg = store_val_bytes(r, row, 10, &dlen);
    if (!dg || dlen != STORE_HASH_BYTES * n_pages_ids)
        return vf_bad(v,
                      "checkpoint %" PRIu64 " lists %zu token pages but %zu bytes of page digests",
                      id, n_pages_ids, dg ? dlen : 0);
    if (n_pages_ids > v->cap_pages) {
        v->cap_pages = n_pages_ids;
        v->pages = xreallocarray(v->pages, v->cap_pages, sizeof(*v->pages));
    }
    for (size_t i = 0; i < n_pages_ids; i++) {
        if (v->a_pages[i] < 1)
            return vf_bad(v, "checkpoint %" PRIu64 " lists token page %" PRId64, id, v->a_pages[i]);
        v->pages[i].id = (uint64_t)v->a_pages[i];
        memcpy(v->pages[i].digest, dg + STORE_HASH_BYTES * i, STORE_HASH_BYTES);
    }
    /* Distinct ids: sorted in place, as the page list is no longer needed in its order. */
    if (n_pages_ids > 1)
        qsort(v->a_pages, n_pages_ids, sizeof(*v->a_pages), cmp_i64);
    for (size_t i = 1; i < n_pages_ids; i++)
        if (v->a_pages[i] == v->a_pages[i - 1])
            return vf_bad(v, "checkpoint %" PRIu64 " lists token page %" PRId64 " twice", id,
                          v->a_pages[i]);
    *n_p = n_pages_ids;
    return VF_OK;
}

/* Checks the checkpoint row (cursor row r/row) against the batch rows gathered for it,
 * then its place in the chain; prev holds the previous hash and becomes this one. */
static int vf_check_checkpoint(struct vf *v, const PGresult *r, int row, uint64_t id,
                               uint8_t prev[STORE_HASH_BYTES], int64_t *prev_epoch)
{
    char h1[2 * STORE_HASH_BYTES + 1], h2[2 * STORE_HASH_BYTES + 1];
    int64_t f[6]; /* batches, votes, accepted, epoch, duplicate, rejected */
    for (int k = 0; k < 6; k++)
        if (store_val_int8(r, row, 1 + k, &f[k]) < 0)
            return vf_bad(v, "checkpoint %" PRIu64 " has a NULL figure", id);
    int format = 0, rc;
    if (v->v7 && (rc = vf3_format(v, r, row, id, &format)) != VF_OK)
        return rc;
    /* Its figures against its batch rows first: a specific message beats "bad hash". */
    if (f[0] < 0 || (uint64_t)f[0] != v->n_batches)
        return vf_bad(
            v, "checkpoint %" PRIu64 " lists %" PRId64 " batches, the batches table holds %zu", id,
            f[0], v->n_batches);
    static const char *const what[6] = {
        "", "votes", "accepted", "", "duplicate", "rejected (rejected_unknown + not_allowed)"};
    const uint64_t sums[6] = {0, v->votes,     v->accepted,
                              0, v->duplicate, format == 3 ? v->rejected3 : v->rejected};
    for (int k = 1; k < 6; k++) {
        if (k == 3)
            continue;
        if (f[k] < 0 || (uint64_t)f[k] != sums[k])
            return vf_bad(
                v, "checkpoint %" PRIu64 " counts %" PRId64 " %s, its batches sum to %" PRIu64, id,
                f[k],
                format == 3 && k == 5 ? "rejected (every reason of its ballot batches)" : what[k],
                sums[k]);
    }
    size_t n_d = 0, n_p = 0;
    int64_t delta_sum = 0;
    if ((rc = vf_decode_lists(v, r, row, id, format, &n_d, &n_p, &delta_sum)) != VF_OK)
        return rc;
    /* Format 3: a sheet replaces and a retraction subtracts; the delta is checked against
     * the batches', sheets' and corrections' own figures instead (verify_v3.c). */
    if (format != 3 && delta_sum != f[2])
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": its count deltas sum to %" PRId64
                      " votes, its accepted is %" PRId64,
                      id, delta_sum, f[2]);
    /* A writer's epoch only grows (a new writer bumps it), and none is above the current. */
    if (f[3] < *prev_epoch)
        return vf_bad(v,
                      "checkpoint %" PRIu64 " has writer epoch %" PRId64
                      ", below the previous checkpoint's %" PRId64,
                      id, f[3], *prev_epoch);
    if ((uint64_t)f[3] > v->writer_epoch)
        return vf_bad(v,
                      "checkpoint %" PRIu64 " has writer epoch %" PRId64
                      ", above the writer table's %" PRIu64,
                      id, f[3], v->writer_epoch);

    size_t len;
    const uint8_t *stored_prev = store_val_bytes(r, row, 11, &len);
    if (!stored_prev || len != STORE_HASH_BYTES)
        return vf_bad(v, "checkpoint %" PRIu64 " has a prev_hash of %zu bytes, not 32", id, len);
    if (memcmp(stored_prev, prev, STORE_HASH_BYTES) != 0) {
        if (id == 1)
            return vf_bad(v, "checkpoint 1: prev_hash %s is not 32 zero bytes",
                          vf_hex(stored_prev, h1));
        return vf_bad(
            v, "checkpoint %" PRIu64 ": prev_hash %s is not checkpoint %" PRIu64 "'s hash %s", id,
            vf_hex(stored_prev, h1), id - 1, vf_hex(prev, h2));
    }
    const uint8_t *stored = store_val_bytes(r, row, 12, &len);
    if (!stored || len != STORE_HASH_BYTES)
        return vf_bad(v, "checkpoint %" PRIu64 " has a hash of %zu bytes, not 32", id, len);

    uint8_t hash[STORE_HASH_BYTES];
    if (format == 3) {
        if ((rc = vf3_check_checkpoint(v, r, row, id, f[3], prev, n_d, n_p, hash)) != VF_OK)
            return rc;
        goto agreed;
    }
    if (v->n_batches > v->cap_chain) {
        v->cap_chain = v->n_batches;
        v->chain = xreallocarray(v->chain, v->cap_chain, sizeof(*v->chain));
    }
    for (size_t i = 0; i < v->n_batches; i++) {
        const struct vf_batch *b = &v->batches[i];
        v->chain[i] = (struct store_chain_batch){
            .collector_id = v->pool + b->id_off,
            .seq = b->seq,
            .digest = b->has_digest ? b->digest : NULL,
            .votes = b->votes,
            .accepted = b->accepted,
            .duplicate = b->duplicate,
            .rejected_unknown = b->rejected,
            .rejected_not_allowed = b->not_allowed,
        };
    }
    struct store_chain_input in = {
        .prev_hash = prev,
        .id = id,
        .epoch = (uint64_t)f[3],
        .batches = v->chain,
        .n_batches = v->n_batches,
        .project_ids = v->d_ids,
        .votes = (const uint64_t *)v->d_votes, /* none negative, checked above */
        .n_deltas = n_d,
        .pages = v->pages,
        .n_pages = n_p,
    };
    store_chain_hash(&in, hash);
agreed:
    if (memcmp(hash, stored, STORE_HASH_BYTES) != 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": stored hash %s, but its row and batches hash to %s",
                      id, vf_hex(stored, h1), vf_hex(hash, h2));

    /* Agreed: fold it into the totals the later checks compare against; no project's
     * total is ever below zero (a sheet replaced subtracts only what its earlier version
     * added). */
    for (size_t i = 0; i < n_d; i++) {
        size_t k = (size_t)vf_project_index(v, v->d_ids[i]);
        v->sum_all[k] += v->d_votes[i];
        if (id <= v->through)
            v->sum_through[k] += v->d_votes[i];
        if (v->sum_all[k] < 0)
            return vf_bad(
                v, "checkpoint %" PRIu64 " takes project %" PRIu32 "'s total to %" PRId64 " votes",
                id, v->d_ids[i], v->sum_all[k]);
    }
    if (v->n_listings + n_p > v->cap_listings) {
        v->cap_listings = 2 * (v->n_listings + n_p);
        v->listings = xreallocarray(v->listings, v->cap_listings, sizeof(*v->listings));
    }
    for (size_t i = 0; i < n_p; i++) {
        struct vf_listing *l = &v->listings[v->n_listings++];
        l->page = v->pages[i].id;
        l->checkpoint = id;
        memcpy(l->digest, v->pages[i].digest, STORE_HASH_BYTES);
    }
    v->accepted_total += v->accepted;
    v->out->batches += v->n_batches;
    v->out->votes += (uint64_t)delta_sum;
    v->out->checkpoints_v3 += format == 3;
    *prev_epoch = f[3];
    memcpy(prev, hash, STORE_HASH_BYTES);
    return VF_OK;
}

static int vf_chain(struct vf *v)
{
    struct store *s = v->s;
    struct store_cursor cps, bat;
    int rc = VF_ERR;
    memset(&bat, 0, sizeof(bat));
    char cp_sql[1024];
    snprintf(cp_sql, sizeof(cp_sql),
             "SELECT id, batches::int8, votes::int8, accepted::int8, epoch::int8,"
             " duplicate::int8, rejected::int8, delta_ids::int8[],"
             " delta_votes::int8[], page_ids::int8[], page_digests, prev_hash, hash%s"
             " FROM checkpoints ORDER BY id",
             v->v7 ? ", format::int8, table_ids, table_ballots::int8[], merkle_root, body_hash"
                   : "");
    if (store_cursor_open(s, &cps, "verify_checkpoints", cp_sql, VF_CP_FETCH,
                          "reading checkpoints") < 0)
        return VF_ERR;
    char bat_sql[1024];
    snprintf(bat_sql, sizeof(bat_sql),
             "SELECT checkpoint_id::int8, collector_id, seq::int8, votes::int8,"
             " accepted::int8, duplicate::int8, rejected_unknown::int8, digest, %s::int8%s"
             " FROM batches b ORDER BY checkpoint_id, collector_id COLLATE \"C\", seq",
             vf_not_allowed(v),
             v->v7 ? ", kind, rejected_by_reason::int8[], sheets::int8, sheets_accepted::int8,"
                     " sheets_duplicate::int8, counts, table_ids, table_ballots::int8[]"
                   : "");
    if (store_cursor_open(s, &bat, "verify_batches", bat_sql, VF_BATCH_FETCH, "reading batches") <
        0)
        goto done;

    uint8_t prev[STORE_HASH_BYTES] = {0};
    int64_t prev_epoch = 0;
    uint64_t n = 0;
    int gb = store_cursor_next(s, &bat, "reading batches");
    for (;;) {
        int gc = store_cursor_next(s, &cps, "reading checkpoints");
        if (gc < 0)
            goto done;
        if (gc == 0)
            break;
        int64_t id = 0;
        if (store_val_int8(cps.res, cps.row, 0, &id) < 0 || id != (int64_t)n + 1) {
            rc = n == 0 ? vf_bad(v, "the first checkpoint is %" PRId64 ", not 1", id)
                        : vf_bad(v, "checkpoint ids jump from %" PRIu64 " to %" PRId64, n, id);
            goto done;
        }
        v->n_batches = v->n_pool = v->n_reasons = v->n_bytes = v->n_btables = 0;
        v->votes = v->accepted = v->duplicate = v->rejected = v->rejected3 = 0;
        for (; gb == 1; gb = store_cursor_next(s, &bat, "reading batches")) {
            int64_t cp = 0;
            if (store_val_int8(bat.res, bat.row, 0, &cp) < 0 || cp < id) {
                /* Ascending order and consecutive ids: it names no checkpoint. */
                rc = vf_add_batch(v, bat.res, bat.row);
                if (rc == VF_OK)
                    rc = vf_bad(v,
                                "batch %s/%" PRIu64 " belongs to checkpoint %" PRId64
                                ", which is not in checkpoints",
                                v->pool + v->batches[v->n_batches - 1].id_off,
                                v->batches[v->n_batches - 1].seq, cp);
                goto done;
            }
            if (cp > id)
                break;
            if ((rc = vf_add_batch(v, bat.res, bat.row)) != VF_OK)
                goto done;
        }
        if (gb < 0) {
            rc = VF_ERR;
            goto done;
        }
        if ((rc = vf_check_checkpoint(v, cps.res, cps.row, (uint64_t)id, prev, &prev_epoch)) !=
            VF_OK)
            goto done;
        n = (uint64_t)id;
        vf_tick(v, "checkpoint %" PRIu64 " of %" PRIu64 " (%" PRIu64 " batches) agrees", n,
                v->n_checkpoints_seen, v->out->batches);
    }
    rc = gb < 0 ? VF_ERR : VF_OK;
    if (rc == VF_OK && gb == 0 && v->v7)
        rc = vf3_finish(v, n);
    if (gb == 1) {
        v->n_batches = v->n_pool = 0;
        int64_t cp = 0;
        store_val_int8(bat.res, bat.row, 0, &cp);
        rc = vf_add_batch(v, bat.res, bat.row);
        if (rc == VF_OK)
            rc = vf_bad(v,
                        "batch %s/%" PRIu64 " belongs to checkpoint %" PRId64
                        ", past the last checkpoint %" PRIu64,
                        v->pool, v->batches[0].seq, cp, n);
    }
    v->out->checkpoints = n;
    memcpy(v->out->head_hash, prev, STORE_HASH_BYTES);
done:
    store_cursor_close(s, &bat);
    store_cursor_close(s, &cps);
    return rc;
}

/* ---- (c) token pages: vf_pages, in verify_pages.c -------------------------------------- */

/* ---- (d) tallies and the views --------------------------------------------------------- */

static int vf_tallies(struct vf *v)
{
    if (v->through > v->out->checkpoints)
        return vf_bad(v,
                      "tally_compaction.through is %" PRIu64 ", past the last checkpoint %" PRIu64,
                      v->through, v->out->checkpoints);
    PGresult *res = store_query_rows(v->s, "SELECT project_id, votes FROM tallies ORDER BY 1",
                                     "reading tallies");
    if (!res)
        return VF_ERR;
    int rc = VF_OK, rows = PQntuples(res), r = 0;
    for (size_t i = 0; i <= v->n_projects && rc == VF_OK; i++) {
        int64_t id = r < rows ? vf_text_i64(res, r, 0) : -1, votes = 0;
        if (r < rows && (i == v->n_projects || id < (int64_t)v->projects[i])) {
            rc = vf_bad(v, "tallies has a row for project %" PRId64 ", which is not in projects",
                        id);
            break;
        }
        if (i == v->n_projects)
            break;
        if (r < rows && id == (int64_t)v->projects[i])
            votes = vf_text_i64(res, r++, 1);
        if (votes != v->sum_through[i])
            rc = vf_bad(v,
                        "project %" PRIu32 ": tallies holds %" PRId64 " votes, the deltas of"
                        " checkpoints 1..%" PRIu64 " sum to %" PRId64,
                        v->projects[i], votes, v->through, v->sum_through[i]);
    }
    PQclear(res);
    if (rc != VF_OK)
        return rc;

    /* What dashboards and tallyctl read: the views must say what the deltas say. */
    res = store_query_rows(v->s,
                           "SELECT v.project_id, v.votes, r.votes FROM project_votes v"
                           " LEFT JOIN results r ON r.project_id = v.project_id ORDER BY 1",
                           "reading the project_votes and results views");
    if (!res)
        return VF_ERR;
    rows = PQntuples(res);
    r = 0;
    for (size_t i = 0; i < v->n_projects && rc == VF_OK; i++) {
        int64_t id = r < rows ? vf_text_i64(res, r, 0) : -1;
        if (id != (int64_t)v->projects[i]) {
            rc = vf_bad(v, "project %" PRIu32 " is missing from the project_votes view",
                        v->projects[i]);
            break;
        }
        int64_t pv = vf_text_i64(res, r, 1);
        if (pv != v->sum_all[i])
            rc = vf_bad(v,
                        "project %" PRIu32 ": the project_votes view says %" PRId64
                        " votes, the deltas of all checkpoints sum to %" PRId64,
                        v->projects[i], pv, v->sum_all[i]);
        else if (PQgetisnull(res, r, 2))
            rc = vf_bad(v, "project %" PRIu32 " is missing from the results view", v->projects[i]);
        else if (vf_text_i64(res, r, 2) != pv)
            rc = vf_bad(v,
                        "project %" PRIu32 ": the results view says %" PRId64
                        " votes, project_votes %" PRId64,
                        v->projects[i], vf_text_i64(res, r, 2), pv);
        r++;
    }
    if (rc == VF_OK && r < rows)
        rc = vf_bad(v, "the project_votes view has a row for project %s, which is not in projects",
                    PQgetvalue(res, r, 0));
    PQclear(res);
    return rc;
}

int store_verify(struct store *s, struct store_verify_report *out, store_progress_cb progress,
                 void *arg)
{
    memset(out, 0, sizeof(*out));
    struct vf v;
    memset(&v, 0, sizeof(v));
    v.s = s;
    v.out = out;
    v.progress = progress;
    v.arg = arg;
    v.next_progress_ms = vf_now_ms() + VF_PROGRESS_MS;
    int rc = VF_ERR;
    /* One snapshot: a writer committing meanwhile changes nothing we read. */
    if (store_exec_cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != STORE_OK)
        goto done;
    /* Collectors first: a missing or extra batch row is then named by collector and seq,
     * rather than only by the checkpoint whose figures it spoils. */
    if ((rc = vf_setup(&v)) != VF_OK || (v.v7 && (rc = vf3_setup(&v)) != VF_OK) ||
        (rc = vf_collectors(&v)) != VF_OK || (rc = vf_chain(&v)) != VF_OK ||
        (rc = vf_pages(&v)) != VF_OK || (rc = vf_tallies(&v)) != VF_OK)
        goto done;
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        rc = VF_ERR;
done:
    store_rollback(s);
    vf3_cleanup(&v);
    free(v.pages);
    free(v.d_votes);
    free(v.d_ids);
    free(v.a_pages);
    free(v.a_votes);
    free(v.a_ids);
    free(v.chain);
    free(v.pool);
    free(v.batches);
    free(v.listings);
    free(v.sum_all);
    free(v.sum_through);
    free(v.projects);
    if (rc == VF_BAD)
        return 1;
    if (rc != VF_OK)
        out->problem[0] = '\0';
    return rc == VF_OK ? 0 : -1;
}
