/* tallyctl verify, what part B adds to format-3 checkpoints (docs/consultation.md): the
 * chain events — every close and tie-rule request a checkpoint applied, read back from
 * `requests` and hashed as the writer hashed them (the seed's BLAKE2b-256 recomputed from
 * the stored seed) — and every retraction held against the batch it retracted. verify_v3.c
 * calls in per checkpoint. */
#include "store/verify_internal.h"

#include "store/cursor.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Every retraction's batch (a few): counts decoded, tables and ballots read. */
static int vf_retracted_load(struct vf *v)
{
    PGresult *res = store_query_rows_binary(
        v->s,
        "SELECT c.id, b.counts, b.table_ids, b.table_ballots::int8[]"
        " FROM corrections c JOIN batches b ON b.collector_id = c.collector_id AND b.seq = c.seq"
        " WHERE c.kind = 'retract' ORDER BY c.id",
        "reading retracted batches");
    if (!res)
        return VF_ERR;
    size_t n = (size_t)PQntuples(res);
    v->retracted = xcalloc(n ? n : 1, sizeof(*v->retracted));
    int rc = VF_OK;
    for (size_t i = 0; i < n && rc == VF_OK; i++) {
        struct vf_retracted *x = &v->retracted[i];
        int r = (int)i;
        v->n_retracted = i + 1;
        if (store_val_u64(res, r, 0, INT64_MAX, &x->correction_id) < 0) {
            rc = vf_bad(v, "a retraction has a bad id");
            break;
        }
        if (PQgetisnull(res, r, 1)) {
            rc = vf_bad(v, "correction %" PRIu64 " retracts a batch without counts",
                        x->correction_id);
            break;
        }
        if (store_val_counts(res, r, 1, &x->counts, &x->n_counts) < 0)
            rc = vf_bad(v, "correction %" PRIu64 ": the retracted batch's counts do not decode",
                        x->correction_id);
        size_t cap = 0, m = 0;
        if (store_val_strings(res, r, 2, &x->table_ids, &x->n_tables) < 0 ||
            store_val_int8_array(res, r, 3, &x->table_ballots, &cap, &m) < 0 || m != x->n_tables) {
            if (rc == VF_OK)
                rc = vf_bad(v,
                            "correction %" PRIu64 ": the retracted batch's table_ids and"
                            " table_ballots are not two arrays of one length",
                            x->correction_id);
        }
    }
    PQclear(res);
    return rc;
}

int vf3_check_retract(struct vf *v, uint64_t id, const struct vf_corr *c)
{
    const struct vf_retracted *x = NULL;
    for (size_t i = 0; i < v->n_retracted && !x; i++)
        if (v->retracted[i].correction_id == c->id)
            x = &v->retracted[i];
    if (!x)
        return vf_bad(v, "checkpoint %" PRIu64 ": correction %" PRIu64 " retracts no stored batch",
                      id, c->id);
    int64_t total = 0;
    bool same = x->n_counts == c->n_deltas;
    for (size_t k = 0; k < x->n_counts; k++) {
        total += x->counts[2 * k + 1];
        same = same && v->corr_ids[c->deltas_off + k] == x->counts[2 * k] &&
               v->corr_deltas[c->deltas_off + k] == -(int64_t)x->counts[2 * k + 1];
    }
    if (!same || c->ballots_delta != -total || c->blank_delta || c->null_delta)
        return vf_bad(v,
                      "checkpoint %" PRIu64 ": correction %" PRIu64
                      " does not take back exactly the counts of the batch it retracts",
                      id, c->id);
    for (size_t k = 0; k < x->n_tables; k++) {
        ptrdiff_t t = vf3_table_index(v, x->table_ids[k]);
        if (t < 0)
            return vf_bad(v,
                          "checkpoint %" PRIu64 ": correction %" PRIu64
                          " retracts ballots of table %s, not in voting_tables",
                          id, c->id, x->table_ids[k]);
        vf3_want(v->twant, v->is_ttouched, v->ttouched, &v->n_ttouched, (size_t)t,
                 -x->table_ballots[k]);
    }
    return VF_OK;
}

int vf3_events_load(struct vf *v)
{
    int rrc = vf_retracted_load(v);
    if (rrc != VF_OK)
        return rrc;
    PGresult *res = store_query_rows(v->s, "SELECT to_regclass('requests') IS NOT NULL",
                                     "looking for requests");
    if (!res)
        return VF_ERR;
    bool have = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!have)
        return VF_OK;
    res = store_query_rows_binary(v->s,
                                  "SELECT checkpoint_id, id, kind, actor,"
                                  " (extract(epoch FROM done_at) * 1000000)::int8, seed"
                                  " FROM requests WHERE checkpoint_id IS NOT NULL"
                                  " AND kind IN ('close', 'tie_rule') ORDER BY checkpoint_id, id",
                                  "reading applied requests");
    if (!res)
        return VF_ERR;
    size_t n = (size_t)PQntuples(res);
    v->events = xcalloc(n ? n : 1, sizeof(*v->events));
    int rc = VF_OK;
    for (size_t i = 0; i < n && rc == VF_OK; i++) {
        struct vf_event *e = &v->events[i];
        int r = (int)i;
        uint64_t at;
        e->kind = strcmp(PQgetvalue(res, r, 2), "close") == 0 ? 1 : 2;
        e->actor = xstrdup(PQgetvalue(res, r, 3));
        v->n_events = i + 1;
        if (store_val_u64(res, r, 0, INT64_MAX, &e->checkpoint_id) < 0 ||
            store_val_u64(res, r, 1, INT64_MAX, &e->request_id) < 0 ||
            store_val_u64(res, r, 4, INT64_MAX, &at) < 0) {
            int64_t id = 0;
            (void)store_val_int8(res, r, 1, &id); /* the primary key: never NULL */
            rc = vf_bad(v, "request %" PRId64 " has a value out of range", id);
            break;
        }
        e->at_us = (int64_t)at;
        if (e->kind == 2) {
            size_t len;
            const uint8_t *seed = store_val_bytes(res, r, 5, &len);
            crypto_generichash(e->payload, sizeof(e->payload), seed ? seed : (const uint8_t *)"",
                               len, NULL, 0);
            e->payload_len = sizeof(e->payload);
        }
    }
    PQclear(res);
    return rc;
}

size_t vf3_events_for(struct vf *v, uint64_t id)
{
    while (v->next_event < v->n_events && v->events[v->next_event].checkpoint_id < id)
        v->next_event++;
    size_t lo = v->next_event, hi = lo;
    while (hi < v->n_events && v->events[hi].checkpoint_id == id)
        hi++;
    v->cevents = xgrow(v->cevents, &v->cap_cevents, hi - lo + 1, sizeof(*v->cevents));
    for (size_t i = lo; i < hi; i++) {
        const struct vf_event *e = &v->events[i];
        v->cevents[i - lo] = (struct store_chain_event){
            .request_id = e->request_id,
            .kind = e->kind,
            .actor = e->actor,
            .at_us = e->at_us,
            .payload = e->payload_len ? e->payload : NULL,
            .payload_len = e->payload_len,
        };
    }
    v->next_event = hi;
    return hi - lo;
}

void vf3_events_cleanup(struct vf *v)
{
    for (size_t i = 0; i < v->n_retracted; i++) {
        free(v->retracted[i].counts);
        for (size_t k = 0; k < v->retracted[i].n_tables; k++)
            free(v->retracted[i].table_ids[k]);
        free(v->retracted[i].table_ids);
        free(v->retracted[i].table_ballots);
    }
    free(v->retracted);
    for (size_t i = 0; i < v->n_events; i++)
        free(v->events[i].actor);
    free(v->events);
    free(v->cevents);
}
