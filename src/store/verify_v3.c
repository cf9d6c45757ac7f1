/* tallyctl verify, chain format 3 (docs/record.md): each format 3 checkpoint's batches
 * against their own counts, reasons and table ballots, its sheets against their rows, tables
 * and predecessors, its corrections against the sheets they replace, its delta and table
 * deltas against all of these, and its Merkle root, body hash and hash recomputed. Called
 * from verify.c's checkpoint walk; what it checks against is loaded up front by
 * verify_v3_load.c; the state is struct vf (verify_internal.h). */
#include "store/verify_internal.h"

#include "store/counts.h"
#include "store/cursor.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Adds x to want[k] (a per-checkpoint accumulator), remembering k for the reset. */
void vf3_want(int64_t *want, bool *is, size_t *touched, size_t *n, size_t k, int64_t x)
{
    if (!is[k]) {
        is[k] = true;
        touched[(*n)++] = k;
    }
    want[k] += x;
}

/* ---- a batch row's version-7 columns --------------------------------------------------- */

struct vf3_tables_arg {
    struct vf *v;
    size_t first;
};

static int vf3_table_id(void *arg, size_t k, const char *s, size_t len)
{
    struct vf3_tables_arg *a = arg;
    struct vf *v = a->v;
    if (memchr(s, '\0', len))
        return -1;
    v->btables = xgrow(v->btables, &v->cap_btables, a->first + k + 1, sizeof(*v->btables));
    v->btables[a->first + k].id_off = vf3_pool_put(&v->pool, &v->n_pool, &v->cap_pool, s, len);
    v->btables[a->first + k].ballots = -1;
    v->n_btables = a->first + k + 1;
    return 0;
}

int vf3_add_batch(struct vf *v, const PGresult *r, int row, struct vf_batch *b, const char *who)
{
    /* who lives in v->pool, which the table ids below may move: keep a copy. */
    char name[80];
    snprintf(name, sizeof(name), "%s", who);
    size_t klen;
    const uint8_t *kind = store_val_bytes(r, row, 9, &klen);
    if (kind && klen == 7 && memcmp(kind, "ballots", 7) == 0)
        b->kind = 0;
    else if (kind && klen == 6 && memcmp(kind, "sheets", 6) == 0)
        b->kind = 1;
    else
        return vf_bad(v, "batch %s/%" PRIu64 " has a kind that is neither ballots nor sheets", name,
                      b->seq);
    int64_t *a = NULL;
    size_t cap = 0, n = 0;
    int rc = VF_OK;
    if (store_val_int8_array(r, row, 10, &a, &cap, &n) < 0) {
        free(a);
        return vf_bad(v, "batch %s/%" PRIu64 " has a rejected_by_reason that is not an array", name,
                      b->seq);
    }
    v->reasons = xgrow(v->reasons, &v->cap_reasons, v->n_reasons + n, sizeof(*v->reasons));
    b->reasons_off = v->n_reasons;
    b->n_reasons = n;
    uint64_t sum = 0;
    for (size_t i = 0; i < n && rc == VF_OK; i++) {
        if (a[i] < 0 || a[i] > UINT32_MAX)
            rc = vf_bad(v, "batch %s/%" PRIu64 " counts %" PRId64 " rejections of reason %zu", name,
                        b->seq, a[i], i + 1);
        v->reasons[v->n_reasons++] = (uint32_t)a[i];
        sum += (uint64_t)a[i];
    }
    if (rc == VF_OK && b->kind == 0)
        v->rejected3 += sum;
    if (rc == VF_OK && (vf_field_u32(r, row, 11, &b->sheets) < 0 ||
                        vf_field_u32(r, row, 12, &b->sheets_accepted) < 0 ||
                        vf_field_u32(r, row, 13, &b->sheets_duplicate) < 0))
        rc = vf_bad(v, "batch %s/%" PRIu64 " has a sheet figure that is NULL or out of range", name,
                    b->seq);
    size_t clen;
    const uint8_t *counts = store_val_bytes(r, row, 14, &clen);
    if (rc == VF_OK && counts) {
        v->bytes = xgrow(v->bytes, &v->cap_bytes, v->n_bytes + clen + 1, 1);
        memcpy(v->bytes + v->n_bytes, counts, clen);
        b->has_counts = true;
        b->counts_off = v->n_bytes;
        b->counts_len = clen;
        v->n_bytes += clen;
    }
    b->tables_off = v->n_btables;
    struct vf3_tables_arg ta = {v, v->n_btables};
    if (rc == VF_OK &&
        (store_val_text_array(r, row, 15, vf3_table_id, &ta) < 0 ||
         store_val_int8_array(r, row, 16, &a, &cap, &n) < 0 || n != v->n_btables - b->tables_off))
        rc = vf_bad(v,
                    "batch %s/%" PRIu64 " has table_ids and table_ballots that are not two arrays"
                    " of one length",
                    name, b->seq);
    if (rc == VF_OK) {
        b->n_tables = n;
        for (size_t i = 0; i < n; i++)
            v->btables[b->tables_off + i].ballots = a[i];
    }
    free(a);
    return rc;
}

/* ---- a checkpoint's format ------------------------------------------------------------- */

static int vf3_count_tables(void *arg, size_t k, const char *s, size_t len)
{
    (void)k, (void)s, (void)len;
    ++*(size_t *)arg;
    return 0;
}

int vf3_format(struct vf *v, const PGresult *r, int row, uint64_t id, int *format)
{
    int64_t f = 0;
    *format = store_val_int8(r, row, 13, &f) == 0 ? (int)(f == 3 ? 3 : -1) : 0;
    if (*format < 0)
        return vf_bad(v, "checkpoint %" PRIu64 " has format %" PRId64 ", not 3 or NULL", id, f);
    if (*format == 3) {
        v->seen_v3 = true;
        return VF_OK;
    }
    if (v->seen_v3)
        return vf_bad(v, "checkpoint %" PRIu64 " has no format, after a checkpoint of format 3",
                      id);
    size_t n_t = 0, len;
    if (store_val_text_array(r, row, 14, vf3_count_tables, &n_t) < 0 || n_t > 0 ||
        store_val_bytes(r, row, 16, &len) || store_val_bytes(r, row, 17, &len))
        return vf_bad(v,
                      "checkpoint %" PRIu64 " has no format but table deltas, a merkle_root or a"
                      " body_hash, which only format 3 records",
                      id);
    for (size_t i = 0; i < v->n_batches; i++) {
        const struct vf_batch *b = &v->batches[i];
        if (b->kind || b->n_reasons || b->sheets || b->sheets_accepted || b->sheets_duplicate ||
            b->has_counts || b->n_tables)
            return vf_bad(v,
                          "checkpoint %" PRIu64 " has no format but its batch %s/%" PRIu64
                          " holds a kind, reasons, sheet figures, counts or table ballots,"
                          " which only format 3 records",
                          id, v->pool + b->id_off, b->seq);
    }
    if (v->next_sheet < v->n_sheets && v->sheets[v->next_sheet].checkpoint <= id)
        return vf_bad(v, "checkpoint %" PRIu64 " has no format but holds sheet %s version %" PRId64,
                      v->sheets[v->next_sheet].checkpoint,
                      v->tables[v->sheets[v->next_sheet].table].id,
                      v->sheets[v->next_sheet].version);
    if (v->next_corr < v->n_corrs && v->corrs[v->next_corr].checkpoint <= id)
        return vf_bad(v, "checkpoint %" PRIu64 " has no format but holds correction %" PRIu64,
                      v->corrs[v->next_corr].checkpoint, v->corrs[v->next_corr].id);
    return VF_OK;
}

/* ---- a format 3 checkpoint ------------------------------------------------------------- */

struct vf3_counts_arg {
    struct vf *v;
    uint64_t sum;
    uint32_t unknown;
};

static int vf3_count_pair(void *arg, uint32_t id, uint32_t votes)
{
    struct vf3_counts_arg *a = arg;
    ptrdiff_t k = vf_project_index(a->v, id);
    if (k < 0) {
        a->unknown = id;
        return 1;
    }
    vf3_want(a->v->want, a->v->is_touched, a->v->touched, &a->v->n_touched, (size_t)k, votes);
    a->sum += votes;
    return 0;
}

static int cmp_u32p(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return a < b ? -1 : a > b;
}

/* The checkpoint's batch (collector, seq): the batches are in (collector bytes, seq) order. */
static struct vf_batch *vf3_find_batch(struct vf *v, const char *collector, uint64_t seq)
{
    size_t lo = 0, hi = v->n_batches;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct vf_batch *b = &v->batches[mid];
        int c = strcmp(v->pool + b->id_off, collector);
        if (c == 0)
            c = b->seq < seq ? -1 : b->seq > seq;
        if (c == 0)
            return b;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int vf3_check_batch(struct vf *v, uint64_t id, const struct vf_batch *b)
{
    const char *who = v->pool + b->id_off;
    const uint32_t *reasons = v->reasons + b->reasons_off;
    uint64_t rsum = 0;
    for (size_t i = 0; i < b->n_reasons; i++)
        rsum += reasons[i];
    if (b->kind == 1) {
        if (b->has_counts || b->votes || b->accepted || b->duplicate || b->rejected ||
            b->not_allowed || b->n_tables)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": sheet batch %s/%" PRIu64 " has counts, votes"
                          " or table ballots",
                          id, who, b->seq);
        if ((uint64_t)b->sheets != (uint64_t)b->sheets_accepted + b->sheets_duplicate + rsum)
            return vf_bad(
                v,
                "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " has %" PRIu32 " sheets, but %" PRIu32
                " accepted + %" PRIu32 " duplicate + %" PRIu64 " rejected",
                id, who, b->seq, b->sheets, b->sheets_accepted, b->sheets_duplicate, rsum);
        return VF_OK;
    }
    uint32_t r1 = b->n_reasons > 0 ? reasons[0] : 0, r2 = b->n_reasons > 1 ? reasons[1] : 0;
    if (b->sheets || b->sheets_accepted || b->sheets_duplicate)
        return vf_bad(v, "checkpoint %" PRIu64 ": ballot batch %s/%" PRIu64 " has sheet figures",
                      id, who, b->seq);
    if (b->rejected != r1 || b->not_allowed != r2)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": batch %s/%" PRIu64 ": rejected_unknown %" PRIu32
                      " and rejected_not_allowed %" PRIu32 " are not its reasons 1 and 2 (%" PRIu32
                      ", %" PRIu32 ")",
                      id, who, b->seq, b->rejected, b->not_allowed, r1, r2);
    if ((uint64_t)b->votes != (uint64_t)b->accepted + b->duplicate + rsum)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " has %" PRIu32
                      " votes, but %" PRIu32 " accepted + %" PRIu32 " duplicate + %" PRIu64
                      " rejected",
                      id, who, b->seq, b->votes, b->accepted, b->duplicate, rsum);
    if (!b->has_counts)
        return vf_bad(v, "checkpoint %" PRIu64 ": ballot batch %s/%" PRIu64 " has no counts", id,
                      who, b->seq);
    struct vf3_counts_arg ca = {v, 0, 0};
    int rc = store_counts_decode(v->bytes + b->counts_off, b->counts_len, vf3_count_pair, &ca);
    if (rc < 0)
        return vf_bad(v, "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " has malformed counts", id,
                      who, b->seq);
    if (rc > 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": batch %s/%" PRIu64
                      " counts votes for project %" PRIu32 ", which is not in projects",
                      id, who, b->seq, ca.unknown);
    if (ca.sum != b->accepted)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": batch %s/%" PRIu64 ": its counts sum to %" PRIu64
                      " votes, its accepted is %" PRIu32,
                      id, who, b->seq, ca.sum, b->accepted);
    /* Its ballots per table: known tables, each once, no more than it accepted. */
    v->cids = xgrow(v->cids, &v->cap_cids, b->n_tables + 1, sizeof(*v->cids));
    int64_t ballots = 0;
    for (size_t i = 0; i < b->n_tables; i++) {
        const struct vf_btable *t = &v->btables[b->tables_off + i];
        ptrdiff_t k = vf3_table_index(v, v->pool + t->id_off);
        if (k < 0 || t->ballots < 0 || t->ballots > VF3_INT31)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " gives %" PRId64
                          " ballots to table %s%s",
                          id, who, b->seq, t->ballots, v->pool + t->id_off,
                          k < 0 ? ", which is not in voting_tables" : "");
        v->cids[i] = (uint32_t)k;
        ballots += t->ballots;
        vf3_want(v->twant, v->is_ttouched, v->ttouched, &v->n_ttouched, (size_t)k, t->ballots);
    }
    qsort(v->cids, b->n_tables, sizeof(*v->cids), cmp_u32p);
    for (size_t i = 1; i < b->n_tables; i++)
        if (v->cids[i] == v->cids[i - 1])
            return vf_bad(v, "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " names table %s twice",
                          id, who, b->seq, v->tables[v->cids[i]].id);
    if (ballots > b->accepted)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " gives %" PRId64
                      " ballots to tables, more than the %" PRIu32 " votes it accepted",
                      id, who, b->seq, ballots, b->accepted);
    return VF_OK;
}

/* A sheet's rows, sum, electors, digest, batch and place after its predecessor; adds its
 * rows minus its predecessor's to the checkpoint's wanted delta. */
static int vf3_check_sheet(struct vf *v, uint64_t id, struct vf_sheet *s)
{
    struct vf_table *t = &v->tables[s->table];
    const int64_t *ids = v->sheet_ids + s->rows_off, *votes = v->sheet_votes + s->rows_off;
    if (s->version < 1 || s->version > VF3_INT31 || s->blank < 0 || s->blank > VF3_INT31 ||
        s->null_ballots < 0 || s->null_ballots > VF3_INT31)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": sheet %s version %" PRId64 " has blank %" PRId64
                      " and null %" PRId64 " (a version or figure out of range)",
                      id, t->id, s->version, s->blank, s->null_ballots);
    v->cids = xgrow(v->cids, &v->cap_cids, 2 * s->n_rows + 1, sizeof(*v->cids));
    s->total = s->blank + s->null_ballots;
    for (size_t i = 0; i < s->n_rows; i++) {
        ptrdiff_t k = vf_project_index(v, ids[i]);
        if ((i > 0 && ids[i] <= ids[i - 1]) || votes[i] < 1 || votes[i] > VF3_INT31 || k < 0)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": sheet %s version %" PRId64 ": row %zu (project"
                          " %" PRId64 ", %" PRId64 " votes) is out of order, not positive or of"
                          " no registered project",
                          id, t->id, s->version, i + 1, ids[i], votes[i]);
        if (v->proj_circuit[k] != t->circuit)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": sheet %s version %" PRId64
                          " counts project %" PRId64 ", which is not of the table's circuit",
                          id, t->id, s->version, ids[i]);
        s->total += votes[i];
        v->cids[2 * i] = (uint32_t)ids[i];
        v->cids[2 * i + 1] = (uint32_t)votes[i];
    }
    if (s->total > t->electors)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": sheet %s version %" PRId64 " holds %" PRId64
                      " ballots, more than the table's %" PRId64 " electors",
                      id, t->id, s->version, s->total, t->electors);
    uint8_t d[STORE_HASH_BYTES];
    char h1[2 * STORE_HASH_BYTES + 1], h2[2 * STORE_HASH_BYTES + 1];
    store_sheet_digest(t->id, (uint32_t)s->version, (uint32_t)s->blank, (uint32_t)s->null_ballots,
                       v->cids, s->n_rows, d);
    if (memcmp(d, s->digest, STORE_HASH_BYTES) != 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": sheet %s version %" PRId64 ": stored digest %s, its"
                      " rows digest to %s",
                      id, t->id, s->version, vf_hex(s->digest, h1), vf_hex(d, h2));
    const char *collector = v->spool + s->collector_off;
    struct vf_batch *b = vf3_find_batch(v, collector, s->seq);
    if (!b || b->kind != 1)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": sheet %s version %" PRId64
                      " came in batch %s/%" PRIu64
                      ", which is not a sheet batch of this checkpoint",
                      id, t->id, s->version, collector, s->seq);
    b->sheet_rows++;
    if (t->ballots > 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": sheet %s version %" PRId64 " is of a table with"
                      " %" PRId64 " per-ballot votes",
                      id, t->id, s->version, t->ballots);
    if (!t->first_sheet)
        t->first_sheet = id;
    for (size_t i = 0; i < s->n_rows; i++)
        vf3_want(v->want, v->is_touched, v->touched, &v->n_touched,
                 (size_t)vf_project_index(v, ids[i]), votes[i]);
    if (s->prev < 0)
        return VF_OK;
    const struct vf_sheet *p = &v->sheets[s->prev];
    if (p->checkpoint > id)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": sheet %s version %" PRId64
                      " is accepted before version %" PRId64 " (checkpoint %" PRIu64 ")",
                      id, t->id, s->version, p->version, p->checkpoint);
    for (size_t i = 0; i < p->n_rows; i++)
        vf3_want(v->want, v->is_touched, v->touched, &v->n_touched,
                 (size_t)vf_project_index(v, v->sheet_ids[p->rows_off + i]),
                 -v->sheet_votes[p->rows_off + i]);
    return VF_OK;
}

/* A correction's deltas: ascending registered projects, none zero. */
static int vf3_corr_shape(struct vf *v, uint64_t id, const struct vf_corr *c)
{
    const int64_t *ids = v->corr_ids + c->deltas_off, *d = v->corr_deltas + c->deltas_off;
    for (size_t i = 0; i < c->n_deltas; i++)
        if ((i > 0 && ids[i] <= ids[i - 1]) || vf_project_index(v, ids[i]) < 0 || d[i] == 0 ||
            d[i] < -VF3_INT31 * 4 || d[i] > VF3_INT31 * 4)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": correction %" PRIu64
                          ": delta %zu (project %" PRId64 ", %" PRId64
                          ") is out of order, zero or of no registered project",
                          id, c->id, i + 1, ids[i], d[i]);
    return VF_OK;
}

/* A sheet correction against the replacement it claims: to_version a sheet of this
 * checkpoint whose predecessor is from_version, brought by the batch it names, and its
 * deltas exactly the rows, blank, null and ballots of one minus the other. */
static int vf3_check_sheet_corr(struct vf *v, uint64_t id, const struct vf_corr *c, size_t lo,
                                size_t hi)
{
    const char *table = v->spool + c->table_off;
    struct vf_sheet *s = NULL;
    for (size_t i = lo; i < hi && !s; i++)
        if (strcmp(v->tables[v->sheets[i].table].id, table) == 0 &&
            v->sheets[i].version == c->to_version)
            s = &v->sheets[i];
    const struct vf_sheet *p = s && s->prev >= 0 ? &v->sheets[s->prev] : NULL;
    if (!c->has_table || !c->has_versions || !p || p->version != c->from_version || s->matched)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": correction %" PRIu64
                      " claims sheet %s version %" PRId64 " replaces version %" PRId64
                      ", which is no replacement of this checkpoint%s",
                      id, c->id, table, c->to_version, c->from_version,
                      s && s->matched ? " left to correct" : "");
    s->matched = true;
    if (!c->has_collector || !c->has_seq ||
        strcmp(v->spool + c->collector_off, v->spool + s->collector_off) != 0 || c->seq != s->seq)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": correction %" PRIu64 " names batch %s/%" PRIu64
                      ", sheet %s version %" PRId64 " came in %s/%" PRIu64,
                      id, c->id, v->spool + c->collector_off, c->seq, table, s->version,
                      v->spool + s->collector_off, s->seq);
    /* Merge the two sorted row lists into their non-zero difference. */
    const int64_t *si = v->sheet_ids + s->rows_off, *sv = v->sheet_votes + s->rows_off;
    const int64_t *pi = v->sheet_ids + p->rows_off, *pv = v->sheet_votes + p->rows_off;
    const int64_t *ci = v->corr_ids + c->deltas_off, *cd = v->corr_deltas + c->deltas_off;
    size_t a = 0, b = 0, k = 0;
    while (a < s->n_rows || b < p->n_rows) {
        int64_t pid, d;
        if (b == p->n_rows || (a < s->n_rows && si[a] < pi[b])) {
            pid = si[a];
            d = sv[a++];
        } else if (a == s->n_rows || pi[b] < si[a]) {
            pid = pi[b];
            d = -pv[b++];
        } else {
            pid = si[a];
            d = sv[a++] - pv[b++];
        }
        if (d == 0)
            continue;
        if (k == c->n_deltas || ci[k] != pid || cd[k] != d)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": correction %" PRIu64 " gives project %" PRId64
                          " %" PRId64 " votes, sheet %s versions %" PRId64 " to %" PRId64
                          " change it by %" PRId64,
                          id, c->id, k < c->n_deltas ? ci[k] : pid,
                          k < c->n_deltas && ci[k] == pid ? cd[k] : 0, table, p->version,
                          s->version, k < c->n_deltas && ci[k] != pid ? 0 : d);
        k++;
    }
    if (k != c->n_deltas)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": correction %" PRIu64 " gives project %" PRId64
                      " %" PRId64 " votes, sheet %s versions %" PRId64 " to %" PRId64
                      " change it by 0",
                      id, c->id, ci[k], cd[k], table, p->version, s->version);
    const int64_t want[3] = {s->blank - p->blank, s->null_ballots - p->null_ballots,
                             s->total - p->total};
    const int64_t got[3] = {c->blank_delta, c->null_delta, c->ballots_delta};
    static const char *const what[3] = {"blank_delta", "null_delta", "ballots_delta"};
    for (int i = 0; i < 3; i++)
        if (got[i] != want[i])
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": correction %" PRIu64 " has %s %" PRId64
                          ", sheet %s versions %" PRId64 " to %" PRId64 " change it by %" PRId64,
                          id, c->id, what[i], got[i], table, p->version, s->version, want[i]);
    return VF_OK;
}

struct vf3_cp_tables {
    struct vf *v;
    size_t first;
};

static int vf3_cp_table_id(void *arg, size_t k, const char *s, size_t len)
{
    struct vf3_cp_tables *a = arg;
    (void)k;
    if (memchr(s, '\0', len))
        return -1;
    struct vf *v = a->v;
    v->btables = xgrow(v->btables, &v->cap_btables, v->n_btables + 1, sizeof(*v->btables));
    v->btables[v->n_btables++].id_off = vf3_pool_put(&v->pool, &v->n_pool, &v->cap_pool, s, len);
    return 0;
}

/* The checkpoint's table deltas (columns 14, 15) against its batches' table ballots, then
 * into the tables' totals: no table both per ballot and by sheet, none over its electors. */
static int vf3_check_table_deltas(struct vf *v, const PGresult *r, int row, uint64_t id,
                                  size_t *first, size_t *n)
{
    *first = v->n_btables;
    struct vf3_cp_tables ta = {v, *first};
    int64_t *a = NULL;
    size_t cap = 0, na = 0;
    int rc = VF_OK;
    if (store_val_text_array(r, row, 14, vf3_cp_table_id, &ta) < 0 ||
        store_val_int8_array(r, row, 15, &a, &cap, &na) < 0 || na != v->n_btables - *first)
        rc = vf_bad(v,
                    "checkpoint %" PRIu64 " has table_ids and table_ballots that are not two"
                    " arrays of one length",
                    id);
    *n = na;
    for (size_t i = 0; rc == VF_OK && i < na; i++) {
        struct vf_btable *t = &v->btables[*first + i];
        t->ballots = a[i];
        ptrdiff_t k = vf3_table_index(v, v->pool + t->id_off);
        if (k < 0 || (i > 0 && strcmp(v->pool + t[-1].id_off, v->pool + t->id_off) >= 0))
            rc = vf_bad(v, "checkpoint %" PRIu64 ": table delta %s is %s", id, v->pool + t->id_off,
                        k < 0 ? "not in voting_tables" : "out of order");
        else /* twant becomes the batches' ballots minus the stored delta */
            vf3_want(v->twant, v->is_ttouched, v->ttouched, &v->n_ttouched, (size_t)k, -a[i]);
    }
    free(a);
    for (size_t i = 0; rc == VF_OK && i < v->n_ttouched; i++) {
        size_t k = v->ttouched[i];
        if (v->twant[k] == 0)
            continue;
        int64_t stored = 0;
        for (size_t j = 0; j < na; j++)
            if (strcmp(v->pool + v->btables[*first + j].id_off, v->tables[k].id) == 0)
                stored = v->btables[*first + j].ballots;
        rc = vf_bad(v,
                    "checkpoint %" PRIu64 ": its table delta gives table %s %" PRId64
                    " ballots, its batches %" PRId64,
                    id, v->tables[k].id, stored, stored + v->twant[k]);
    }
    for (size_t i = 0; rc == VF_OK && i < na; i++) {
        const struct vf_btable *b = &v->btables[*first + i];
        struct vf_table *t = &v->tables[vf3_table_index(v, v->pool + b->id_off)];
        t->ballots += b->ballots;
        if (b->ballots && t->first_sheet)
            rc = vf_bad(v,
                        "checkpoint %" PRIu64 ": table %s takes per-ballot votes, but reports by"
                        " sheet (from checkpoint %" PRIu64 ")",
                        id, t->id, t->first_sheet);
        else if (t->ballots > t->electors)
            rc = vf_bad(v,
                        "checkpoint %" PRIu64 ": table %s holds %" PRId64
                        " per-ballot votes, more than its %" PRId64 " electors",
                        id, t->id, t->ballots, t->electors);
    }
    for (size_t i = 0; i < v->n_ttouched; i++) {
        v->twant[v->ttouched[i]] = 0;
        v->is_ttouched[v->ttouched[i]] = false;
    }
    v->n_ttouched = 0;
    return rc;
}

/* The stored delta (v->d_ids/d_votes, n_d) against the wanted one. */
static int vf3_check_delta(struct vf *v, uint64_t id, size_t n_d)
{
    int rc = VF_OK;
    for (size_t i = 0; i < n_d; i++)
        vf3_want(v->want, v->is_touched, v->touched, &v->n_touched,
                 (size_t)vf_project_index(v, v->d_ids[i]), -v->d_votes[i]);
    for (size_t i = 0; rc == VF_OK && i < v->n_touched; i++) {
        size_t k = v->touched[i];
        if (v->want[k] == 0)
            continue;
        int64_t stored = 0;
        for (size_t j = 0; j < n_d; j++)
            if (v->d_ids[j] == v->projects[k])
                stored = v->d_votes[j];
        rc = vf_bad(v,
                    "checkpoint %" PRIu64 ": its delta gives project %" PRIu32 " %" PRId64
                    " votes, its batches, sheets and corrections %" PRId64,
                    id, v->projects[k], stored, stored + v->want[k]);
    }
    for (size_t i = 0; i < v->n_touched; i++) {
        v->want[v->touched[i]] = 0;
        v->is_touched[v->touched[i]] = false;
    }
    v->n_touched = 0;
    return rc;
}

/* Recomputes root, body and hash from what the checkpoint holds; compares root and body. */
static int vf3_hash(struct vf *v, const PGresult *r, int row, uint64_t id, int64_t epoch,
                    const uint8_t prev[STORE_HASH_BYTES], size_t n_d, size_t n_p, size_t s_lo,
                    size_t s_hi, size_t c_lo, size_t c_hi, size_t td_first, size_t n_td,
                    uint8_t hash[STORE_HASH_BYTES])
{
    v->chain3 = xgrow(v->chain3, &v->cap_chain3, v->n_batches + 1, sizeof(*v->chain3));
    v->ctables = xgrow(v->ctables, &v->cap_ctables, v->n_btables + 1, sizeof(*v->ctables));
    for (size_t i = 0; i < v->n_btables; i++)
        v->ctables[i] =
            (struct store_chain_table){v->pool + v->btables[i].id_off, v->btables[i].ballots};
    for (size_t i = 0; i < v->n_batches; i++) {
        const struct vf_batch *b = &v->batches[i];
        v->chain3[i] = (struct store_chain_batch3){
            .collector_id = v->pool + b->id_off,
            .seq = b->seq,
            .digest = b->has_digest ? b->digest : NULL,
            .kind = b->kind,
            .votes = b->votes,
            .accepted = b->accepted,
            .duplicate = b->duplicate,
            .sheets = b->sheets,
            .sheets_accepted = b->sheets_accepted,
            .sheets_duplicate = b->sheets_duplicate,
            .reasons = v->reasons + b->reasons_off,
            .n_reasons = b->n_reasons,
            .counts = b->has_counts ? v->bytes + b->counts_off : NULL,
            .counts_len = b->counts_len,
            .has_counts = b->has_counts,
            .tables = v->ctables + b->tables_off,
            .n_tables = b->n_tables,
        };
    }
    v->csheets = xgrow(v->csheets, &v->cap_csheets, s_hi - s_lo + 1, sizeof(*v->csheets));
    for (size_t i = s_lo; i < s_hi; i++) {
        const struct vf_sheet *s = &v->sheets[i];
        v->csheets[i - s_lo] =
            (struct store_chain_sheet){v->tables[s->table].id, (uint32_t)s->version,
                                       v->spool + s->collector_off, s->seq, s->digest};
    }
    size_t n_ids = 0;
    for (size_t i = c_lo; i < c_hi; i++)
        n_ids += v->corrs[i].n_deltas;
    v->cids = xgrow(v->cids, &v->cap_cids, n_ids + 1, sizeof(*v->cids));
    v->ccorrs = xgrow(v->ccorrs, &v->cap_ccorrs, c_hi - c_lo + 1, sizeof(*v->ccorrs));
    n_ids = 0;
    for (size_t i = c_lo; i < c_hi; i++) {
        const struct vf_corr *c = &v->corrs[i];
        for (size_t j = 0; j < c->n_deltas; j++)
            v->cids[n_ids + j] = (uint32_t)v->corr_ids[c->deltas_off + j];
        v->ccorrs[i - c_lo] = (struct store_chain_correction){
            .id = c->id,
            .kind = c->kind,
            .actor = v->spool + c->actor_off,
            .reason = v->spool + c->reason_off,
            .at_us = c->at_us,
            .table_id = v->spool + c->table_off,
            .collector_id = v->spool + c->collector_off,
            .seq = c->seq,
            .from_version = c->has_versions ? (uint32_t)c->from_version : 0,
            .to_version = c->has_versions ? (uint32_t)c->to_version : 0,
            .project_ids = v->cids + n_ids,
            .deltas = v->corr_deltas + c->deltas_off,
            .n_deltas = c->n_deltas,
            .blank_delta = c->blank_delta,
            .null_delta = c->null_delta,
            .ballots_delta = c->ballots_delta,
        };
        n_ids += c->n_deltas;
    }
    struct store_chain_input3 in = {
        .prev_hash = prev,
        .id = id,
        .epoch = (uint64_t)epoch,
        .batches = v->chain3,
        .n_batches = v->n_batches,
        .project_ids = v->d_ids,
        .votes = v->d_votes,
        .n_deltas = n_d,
        .pages = v->pages,
        .n_pages = n_p,
        .table_deltas = v->ctables + td_first,
        .n_table_deltas = n_td,
        .sheets = v->csheets,
        .n_sheets = s_hi - s_lo,
        .corrections = v->ccorrs,
        .n_corrections = c_hi - c_lo,
    };
    in.n_events = vf3_events_for(v, id);
    in.events = v->cevents;
    uint8_t root[STORE_HASH_BYTES], body[STORE_HASH_BYTES];
    store_chain_hash_v3(&in, root, body, hash);
    char h1[2 * STORE_HASH_BYTES + 1], h2[2 * STORE_HASH_BYTES + 1];
    size_t len;
    const uint8_t *stored = store_val_bytes(r, row, 16, &len);
    if (!stored || len != STORE_HASH_BYTES)
        return vf_bad(v, "checkpoint %" PRIu64 " has a merkle_root of %zu bytes, not 32", id, len);
    if (memcmp(stored, root, STORE_HASH_BYTES) != 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": stored merkle_root %s, its batches' Merkle root"
                      " is %s",
                      id, vf_hex(stored, h1), vf_hex(root, h2));
    stored = store_val_bytes(r, row, 17, &len);
    if (!stored || len != STORE_HASH_BYTES)
        return vf_bad(v, "checkpoint %" PRIu64 " has a body_hash of %zu bytes, not 32", id, len);
    if (memcmp(stored, body, STORE_HASH_BYTES) != 0)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": stored body_hash %s, its row, batches, sheets"
                      " and corrections hash to %s",
                      id, vf_hex(stored, h1), vf_hex(body, h2));
    return VF_OK;
}

int vf3_check_checkpoint(struct vf *v, const PGresult *r, int row, uint64_t id, int64_t epoch,
                         const uint8_t prev[STORE_HASH_BYTES], size_t n_d, size_t n_p,
                         uint8_t hash[STORE_HASH_BYTES])
{
    int rc = VF_OK;
    size_t s_lo = v->next_sheet, s_hi = s_lo, c_lo = v->next_corr, c_hi = c_lo;
    while (s_hi < v->n_sheets && v->sheets[s_hi].checkpoint == id)
        s_hi++;
    while (c_hi < v->n_corrs && v->corrs[c_hi].checkpoint == id)
        c_hi++;
    v->next_sheet = s_hi;
    v->next_corr = c_hi;
    for (size_t i = 0; rc == VF_OK && i < v->n_batches; i++)
        rc = vf3_check_batch(v, id, &v->batches[i]);
    for (size_t i = s_lo; rc == VF_OK && i < s_hi; i++)
        rc = vf3_check_sheet(v, id, &v->sheets[i]);
    for (size_t i = 0; rc == VF_OK && i < v->n_batches; i++) {
        const struct vf_batch *b = &v->batches[i];
        if (b->kind == 1 && b->sheet_rows != b->sheets_accepted)
            rc = vf_bad(v,
                        "checkpoint %" PRIu64 ": batch %s/%" PRIu64 " accepted %" PRIu32
                        " sheets, the sheets table holds %" PRIu32 " of it",
                        id, v->pool + b->id_off, b->seq, b->sheets_accepted, b->sheet_rows);
    }
    for (size_t i = c_lo; rc == VF_OK && i < c_hi; i++) {
        const struct vf_corr *c = &v->corrs[i];
        if ((rc = vf3_corr_shape(v, id, c)) != VF_OK)
            break;
        if (c->kind == 0)
            rc = vf3_check_sheet_corr(v, id, c, s_lo, s_hi);
        else {
            for (size_t j = 0; j < c->n_deltas; j++)
                vf3_want(v->want, v->is_touched, v->touched, &v->n_touched,
                         (size_t)vf_project_index(v, v->corr_ids[c->deltas_off + j]),
                         v->corr_deltas[c->deltas_off + j]);
            rc = vf3_check_retract(v, id, c);
        }
    }
    for (size_t i = s_lo; rc == VF_OK && i < s_hi; i++) {
        const struct vf_sheet *s = &v->sheets[i];
        if (s->prev >= 0 && !s->matched)
            rc = vf_bad(v,
                        "checkpoint %" PRIu64 ": sheet %s version %" PRId64
                        " replaces version %" PRId64 " without a correction",
                        id, v->tables[s->table].id, s->version, v->sheets[s->prev].version);
    }
    size_t td_first = 0, n_td = 0;
    if (rc == VF_OK)
        rc = vf3_check_table_deltas(v, r, row, id, &td_first, &n_td);
    if (rc == VF_OK)
        rc = vf3_check_delta(v, id, n_d);
    if (rc == VF_OK)
        rc = vf3_hash(v, r, row, id, epoch, prev, n_d, n_p, s_lo, s_hi, c_lo, c_hi, td_first, n_td,
                      hash);
    /* On failure the accumulators may hold this checkpoint's leftovers: verify stops. */
    return rc;
}

int vf3_finish(struct vf *v, uint64_t n)
{
    if (v->next_sheet < v->n_sheets) {
        const struct vf_sheet *s = &v->sheets[v->next_sheet];
        return vf_bad(v,
                      "sheet %s version %" PRId64 " belongs to checkpoint %" PRIu64
                      ", past the last checkpoint %" PRIu64,
                      v->tables[s->table].id, s->version, s->checkpoint, n);
    }
    if (v->next_corr < v->n_corrs)
        return vf_bad(v,
                      "correction %" PRIu64 " belongs to checkpoint %" PRIu64
                      ", past the last checkpoint %" PRIu64,
                      v->corrs[v->next_corr].id, v->corrs[v->next_corr].checkpoint, n);
    return VF_OK;
}

void vf3_cleanup(struct vf *v)
{
    for (size_t i = 0; i < v->n_tables; i++)
        free(v->tables[i].id);
    free(v->tables);
    free(v->proj_circuit);
    free(v->spool);
    free(v->sheets);
    free(v->sheet_ids);
    free(v->sheet_votes);
    free(v->corrs);
    free(v->corr_ids);
    free(v->corr_deltas);
    free(v->reasons);
    free(v->bytes);
    free(v->btables);
    free(v->want);
    free(v->twant);
    free(v->touched);
    free(v->ttouched);
    free(v->is_touched);
    free(v->is_ttouched);
    free(v->chain3);
    free(v->ctables);
    free(v->csheets);
    free(v->ccorrs);
    free(v->cids);
    vf3_events_cleanup(v);
}
