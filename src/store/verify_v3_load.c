/* tallyctl verify, chain format 3: what vf3_setup reads and decodes before the checkpoint
 * walk — the projects' circuits, voting tables, every sheet and every correction (small
 * tables, held whole in struct vf), with their row readers and the string pool they share.
 * The per-checkpoint checks and hashing are verify_v3.c's. */
#include "store/verify_internal.h"

#include "store/cursor.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define VF3_FETCH 2048

/* ---- small decoders -------------------------------------------------------------------- */

size_t vf3_pool_put(char **pool, size_t *n, size_t *cap, const void *s, size_t len)
{
    *pool = xgrow(*pool, cap, *n + len + 1, 1);
    size_t off = *n;
    memcpy(*pool + off, s, len);
    (*pool)[off + len] = '\0';
    *n += len + 1;
    return off;
}

static size_t vf3_spool_put(struct vf *v, const void *s, size_t len)
{
    return vf3_pool_put(&v->spool, &v->n_spool, &v->cap_spool, s, len);
}

/* A text column (NULL: has false, ""), into the string pool. Rejects an embedded NUL. */
static int vf3_text(struct vf *v, const PGresult *r, int row, int col, size_t *off, bool *has)
{
    size_t len;
    const uint8_t *p = store_val_bytes(r, row, col, &len);
    if (has)
        *has = p != NULL;
    if (!p && !has)
        return -1;
    if (p && memchr(p, '\0', len))
        return -1;
    *off = vf3_spool_put(v, p ? (const char *)p : "", p ? len : 0);
    return 0;
}

ptrdiff_t vf3_table_index(const struct vf *v, const char *id)
{
    size_t lo = 0, hi = v->n_tables;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->tables[mid].id, id);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- set-up: tables, circuits, sheets, corrections ------------------------------------- */

static int cmp_sheet_key(const void *pa, const void *pb, void *arg)
{
    const struct vf_sheet *s = arg;
    const struct vf_sheet *a = &s[*(const size_t *)pa], *b = &s[*(const size_t *)pb];
    if (a->table != b->table)
        return a->table < b->table ? -1 : 1;
    return a->version < b->version ? -1 : a->version > b->version;
}

static int vf3_load_tables(struct vf *v)
{
    PGresult *res = store_query_rows(v->s, "SELECT id, circuit_area_id FROM projects ORDER BY id",
                                     "reading the projects' circuits");
    if (!res)
        return VF_ERR;
    int rc = VF_OK;
    if ((size_t)PQntuples(res) != v->n_projects) {
        PQclear(res);
        store_set_error(v->s, "the projects changed while being read");
        return VF_ERR;
    }
    v->proj_circuit = xcalloc(v->n_projects ? v->n_projects : 1, sizeof(*v->proj_circuit));
    for (size_t i = 0; i < v->n_projects; i++)
        v->proj_circuit[i] = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
    PQclear(res);
    res = store_query_rows(v->s,
                           "SELECT id, circuit_area_id, electors FROM voting_tables"
                           " ORDER BY id COLLATE \"C\"",
                           "reading voting tables");
    if (!res)
        return VF_ERR;
    v->n_tables = (size_t)PQntuples(res);
    v->tables = xcalloc(v->n_tables ? v->n_tables : 1, sizeof(*v->tables));
    for (size_t i = 0; i < v->n_tables; i++) {
        struct vf_table *t = &v->tables[i];
        t->id = xstrdup(PQgetvalue(res, (int)i, 0));
        t->circuit = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
        t->electors = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
        if (i > 0 && strcmp(v->tables[i - 1].id, t->id) >= 0)
            rc = vf_bad(v, "voting table %s is listed twice", t->id);
        else if (t->electors < 0 || t->electors > VF3_INT31)
            rc = vf_bad(v, "voting table %s has %" PRId64 " electors", t->id, t->electors);
        if (rc != VF_OK)
            break;
    }
    PQclear(res);
    v->out->tables = v->n_tables;
    return rc;
}

/* One sheets row of the cursor into v->sheets. */
static int vf3_read_sheet(struct vf *v, const PGresult *r, int row)
{
    v->sheets = xgrow(v->sheets, &v->cap_sheets, v->n_sheets + 1, sizeof(*v->sheets));
    struct vf_sheet *s = &v->sheets[v->n_sheets];
    memset(s, 0, sizeof(*s));
    int64_t cp = 0, seq = 0;
    size_t tlen, dlen, n_ids, n_votes, table_off;
    const uint8_t *t = store_val_bytes(r, row, 1, &tlen);
    if (store_val_int8(r, row, 0, &cp) < 0 || !t || store_val_int8(r, row, 2, &s->version) < 0)
        return vf_bad(v, "a sheets row has no checkpoint, table or version");
    table_off = vf3_spool_put(v, t, tlen);
    const char *table = v->spool + table_off;
    s->checkpoint = cp < 0 ? 0 : (uint64_t)cp;
    const uint8_t *d = store_val_bytes(r, row, 5, &dlen);
    if (cp < 1 || vf3_text(v, r, row, 3, &s->collector_off, NULL) < 0 ||
        store_val_int8(r, row, 4, &seq) < 0 || seq < 1 || !d || dlen != STORE_HASH_BYTES ||
        store_val_int8(r, row, 8, &s->blank) < 0 || store_val_int8(r, row, 9, &s->null_ballots) < 0)
        return vf_bad(v,
                      "sheet %s version %" PRId64 " has a checkpoint, collector, seq, digest,"
                      " blank or null that is NULL or out of range",
                      table, s->version);
    s->seq = (uint64_t)seq;
    memcpy(s->digest, d, STORE_HASH_BYTES);
    ptrdiff_t ti = vf3_table_index(v, v->spool + table_off);
    if (ti < 0)
        return vf_bad(v,
                      "checkpoint %" PRId64 ": sheet %s version %" PRId64
                      " is of a table not in voting_tables",
                      cp, v->spool + table_off, s->version);
    s->table = (size_t)ti;
    s->rows_off = v->n_sheet_rows;
    int64_t *ids = NULL, *votes = NULL;
    size_t cap_i = 0, cap_v = 0;
    int rc = VF_OK;
    if (store_val_int8_array(r, row, 6, &ids, &cap_i, &n_ids) < 0 ||
        store_val_int8_array(r, row, 7, &votes, &cap_v, &n_votes) < 0 || n_ids != n_votes) {
        rc = vf_bad(v,
                    "checkpoint %" PRId64 ": sheet %s version %" PRId64
                    " has project_ids and votes that are not two arrays of one length",
                    cp, v->tables[ti].id, s->version);
    } else {
        size_t need = v->n_sheet_rows + n_ids;
        size_t cap = v->cap_sheet_rows;
        v->sheet_ids = xgrow(v->sheet_ids, &cap, need, sizeof(*v->sheet_ids));
        v->sheet_votes = xgrow(v->sheet_votes, &v->cap_sheet_rows, need, sizeof(*v->sheet_votes));
        if (n_ids) {
            memcpy(v->sheet_ids + v->n_sheet_rows, ids, n_ids * sizeof(*ids));
            memcpy(v->sheet_votes + v->n_sheet_rows, votes, n_ids * sizeof(*votes));
        }
        v->n_sheet_rows = need;
        s->n_rows = n_ids;
        v->n_sheets++;
    }
    free(ids);
    free(votes);
    return rc;
}

static int vf3_read_corr(struct vf *v, const PGresult *r, int row)
{
    v->corrs = xgrow(v->corrs, &v->cap_corrs, v->n_corrs + 1, sizeof(*v->corrs));
    struct vf_corr *c = &v->corrs[v->n_corrs];
    memset(c, 0, sizeof(*c));
    int64_t id = 0, cp = 0, x;
    if (store_val_int8(r, row, 0, &id) < 0 || id < 1)
        return vf_bad(v, "a corrections row has an id that is NULL or below 1");
    c->id = (uint64_t)id;
    size_t klen;
    const uint8_t *kind = store_val_bytes(r, row, 2, &klen);
    if (kind && klen == 5 && memcmp(kind, "sheet", 5) == 0)
        c->kind = 0;
    else if (kind && klen == 7 && memcmp(kind, "retract", 7) == 0)
        c->kind = 1;
    else
        return vf_bad(v, "correction %" PRId64 " has a kind that is neither sheet nor retract", id);
    if (store_val_int8(r, row, 1, &cp) < 0 || cp < 1 ||
        vf3_text(v, r, row, 3, &c->actor_off, NULL) < 0 ||
        vf3_text(v, r, row, 4, &c->reason_off, NULL) < 0 ||
        store_val_int8(r, row, 5, &c->at_us) < 0 ||
        vf3_text(v, r, row, 6, &c->table_off, &c->has_table) < 0 ||
        vf3_text(v, r, row, 7, &c->collector_off, &c->has_collector) < 0 ||
        store_val_int8(r, row, 13, &c->blank_delta) < 0 ||
        store_val_int8(r, row, 14, &c->null_delta) < 0 ||
        store_val_int8(r, row, 15, &c->ballots_delta) < 0)
        return vf_bad(v,
                      "correction %" PRId64 " has a checkpoint, actor, reason, time or delta"
                      " that is NULL or out of range",
                      id);
    c->checkpoint = (uint64_t)cp;
    c->has_seq = store_val_int8(r, row, 8, &x) == 0;
    if (c->has_seq && x < 1)
        return vf_bad(v, "correction %" PRId64 " names seq %" PRId64, id, x);
    c->seq = c->has_seq ? (uint64_t)x : 0;
    c->has_versions = store_val_int8(r, row, 9, &c->from_version) == 0 &&
                      store_val_int8(r, row, 10, &c->to_version) == 0;
    int64_t *ids = NULL, *deltas = NULL;
    size_t cap_i = 0, cap_d = 0, n_ids, n_d;
    int rc = VF_OK;
    if (store_val_int8_array(r, row, 11, &ids, &cap_i, &n_ids) < 0 ||
        store_val_int8_array(r, row, 12, &deltas, &cap_d, &n_d) < 0 || n_ids != n_d) {
        rc = vf_bad(v,
                    "checkpoint %" PRId64 ": correction %" PRId64
                    " has project_ids and deltas that are not two arrays of one length",
                    cp, id);
    } else {
        size_t need = v->n_corr_rows + n_ids, cap = v->cap_corr_rows;
        v->corr_ids = xgrow(v->corr_ids, &cap, need, sizeof(*v->corr_ids));
        v->corr_deltas = xgrow(v->corr_deltas, &v->cap_corr_rows, need, sizeof(*v->corr_deltas));
        if (n_ids) {
            memcpy(v->corr_ids + v->n_corr_rows, ids, n_ids * sizeof(*ids));
            memcpy(v->corr_deltas + v->n_corr_rows, deltas, n_ids * sizeof(*deltas));
        }
        c->deltas_off = v->n_corr_rows;
        c->n_deltas = n_ids;
        v->n_corr_rows = need;
        v->n_corrs++;
    }
    free(ids);
    free(deltas);
    return rc;
}

/* Reads every row of sql through a cursor with each(v, res, row). */
static int vf3_read_all(struct vf *v, const char *name, const char *sql, const char *what,
                        int (*each)(struct vf *v, const PGresult *r, int row))
{
    struct store_cursor c;
    if (store_cursor_open(v->s, &c, name, sql, VF3_FETCH, what) < 0) {
        store_cursor_close(v->s, &c);
        return VF_ERR;
    }
    int rc = VF_OK, g;
    while (rc == VF_OK && (g = store_cursor_next(v->s, &c, what)) == 1)
        rc = each(v, c.res, c.row);
    if (rc == VF_OK && g < 0)
        rc = VF_ERR;
    store_cursor_close(v->s, &c);
    return rc;
}

int vf3_setup(struct vf *v)
{
    int rc = vf3_load_tables(v);
    if (rc != VF_OK)
        return rc;
    rc = vf3_read_all(v, "verify_sheets",
                      "SELECT checkpoint_id::int8, table_id, version::int8, collector_id,"
                      " seq::int8, digest, project_ids::int8[], votes::int8[], blank::int8,"
                      " null_ballots::int8 FROM sheets"
                      " ORDER BY checkpoint_id, table_id COLLATE \"C\", version",
                      "reading sheets", vf3_read_sheet);
    if (rc != VF_OK)
        return rc;
    rc = vf3_read_all(v, "verify_corrections",
                      "SELECT id::int8, checkpoint_id::int8, kind, actor, reason,"
                      " (extract(epoch FROM at) * 1000000)::int8, table_id, collector_id,"
                      " seq::int8, from_version::int8, to_version::int8, project_ids::int8[],"
                      " deltas::int8[], blank_delta::int8, null_delta::int8,"
                      " ballots_delta::int8 FROM corrections ORDER BY checkpoint_id, id",
                      "reading corrections", vf3_read_corr);
    if (rc != VF_OK)
        return rc;
    if ((rc = vf3_events_load(v)) != VF_OK)
        return rc;
    v->out->sheets = v->n_sheets;
    v->out->corrections = v->n_corrs;

    /* Each sheet's predecessor: the same table's next lower version. */
    size_t *order = xcalloc(v->n_sheets ? v->n_sheets : 1, sizeof(*order));
    for (size_t i = 0; i < v->n_sheets; i++) {
        order[i] = i;
        v->sheets[i].prev = -1;
    }
    if (v->n_sheets > 1)
        qsort_r(order, v->n_sheets, sizeof(*order), cmp_sheet_key, v->sheets);
    for (size_t i = 1; i < v->n_sheets && rc == VF_OK; i++) {
        const struct vf_sheet *a = &v->sheets[order[i - 1]];
        struct vf_sheet *b = &v->sheets[order[i]];
        if (a->table != b->table)
            continue;
        if (a->version == b->version)
            rc = vf_bad(v, "sheet %s version %" PRId64 " is recorded twice", v->tables[b->table].id,
                        b->version);
        b->prev = (ptrdiff_t)order[i - 1];
    }
    free(order);
    if (rc != VF_OK)
        return rc;
    v->want = xcalloc(v->n_projects + 1, sizeof(*v->want));
    v->is_touched = xcalloc(v->n_projects + 1, sizeof(*v->is_touched));
    v->touched = xcalloc(v->n_projects + 1, sizeof(*v->touched));
    v->twant = xcalloc(v->n_tables + 1, sizeof(*v->twant));
    v->is_ttouched = xcalloc(v->n_tables + 1, sizeof(*v->is_ttouched));
    v->ttouched = xcalloc(v->n_tables + 1, sizeof(*v->ttouched));
    return VF_OK;
}
