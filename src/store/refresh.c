/* What a running tallyd reads with its collectors refresh, at most every second: the
 * consultation's state, and the requests tallyctl left (docs/consultation.md, part B) —
 * those that cannot apply are refused here, in SQL, and marked done at once; the rest go to
 * the loop with what applying them needs (a retracted batch's counts). Also the one write a
 * refresh makes: which embargo tallyd's outputs apply. */
#include "store/cursor.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFRESH_MAX_REQUESTS 32 /* per refresh: the rest wait for the next one */

/* True when the schema has the consultation's state (migration 8). */
static bool refresh_have_state(struct store *s)
{
    PGresult *res = PQexec(s->conn, "SELECT to_regclass('consultation_state') IS NOT NULL");
    bool have = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return have;
}

/* A 32-byte bytea column into out. Returns 0 or -1. */
static int refresh_hash(const PGresult *res, int col, uint8_t out[32])
{
    size_t len;
    const uint8_t *p = store_val_bytes(res, 0, col, &len);
    if (!p || len != 32)
        return -1;
    memcpy(out, p, 32);
    return 0;
}

int store_state_read(struct store *s, struct store_state *out)
{
    memset(out, 0, sizeof(*out));
    if (!refresh_have_state(s))
        return 0;
    PGresult *res =
        store_query_rows_binary(s,
                                "SELECT embargo, closed_at IS NOT NULL,"
                                " coalesce(closed_checkpoint_id, 0),"
                                " coalesce((extract(epoch FROM closed_at) * 1000000)::int8, 0),"
                                " tie_rule IS NOT NULL, tie_seed_hash,"
                                " certified_at IS NOT NULL, certified_hash,"
                                " coalesce(certified_checkpoint_id, 0),"
                                " coalesce((extract(epoch FROM certified_at) * 1000000)::int8, 0)"
                                " FROM consultation_state",
                                "reading the consultation's state");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) != 1) {
        store_set_error(s, "the consultation_state row is missing");
        rc = -1;
        goto done;
    }
    out->embargo = store_val_bool(res, 0, 0);
    out->closed = store_val_bool(res, 0, 1);
    out->tie_rule = store_val_bool(res, 0, 4);
    out->certified = store_val_bool(res, 0, 6);
    uint64_t closed_at, certified_at;
    if (store_val_u64(res, 0, 2, INT64_MAX, &out->closed_checkpoint_id) < 0 ||
        store_val_u64(res, 0, 3, INT64_MAX, &closed_at) < 0 ||
        store_val_u64(res, 0, 8, INT64_MAX, &out->certified_checkpoint_id) < 0 ||
        store_val_u64(res, 0, 9, INT64_MAX, &certified_at) < 0 ||
        (out->tie_rule && refresh_hash(res, 5, out->tie_seed_hash) < 0) ||
        (out->certified && refresh_hash(res, 7, out->certified_hash) < 0)) {
        store_set_error(s, "the consultation_state row has a value out of range");
        rc = -1;
        goto done;
    }
    out->closed_at_us = (int64_t)closed_at;
    out->certified_at_us = (int64_t)certified_at;
    out->known = true;
done:
    PQclear(res);
    return rc;
}

int store_embargo_applied_write(struct store *s, int applied, bool set_embargo)
{
    if (applied == STORE_EMBARGO_LEAVE || !refresh_have_state(s))
        return 0;
    const char *sql = set_embargo
                          ? "UPDATE consultation_state SET embargo = true, embargo_applied = true,"
                            " embargo_changed_at = now(), embargo_actor = 'tallyd --embargo'"
                            " WHERE NOT embargo OR embargo_applied IS DISTINCT FROM true"
                          : (applied == STORE_EMBARGO_ON
                                 ? "UPDATE consultation_state SET embargo_applied = true"
                                   " WHERE embargo AND embargo_applied IS DISTINCT FROM true"
                                 : "UPDATE consultation_state SET embargo_applied = false"
                                   " WHERE NOT embargo AND embargo_applied IS DISTINCT FROM false");
    return store_exec_cmd(s, sql) == STORE_OK ? 0 : -1;
}

/* What one request owns; the struct is left zeroed. */
static void request_clear(struct store_request *x)
{
    free(x->actor);
    free(x->reason);
    free(x->seed);
    free(x->counts);
    for (size_t k = 0; k < x->n_tables; k++)
        free(x->table_ids[k]);
    free(x->table_ids);
    free(x->table_ballots);
    memset(x, 0, sizeof(*x));
}

void store_requests_free(struct store_request *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        request_clear(&a[i]);
    free(a);
}

/* A retracted batch's tables and ballots (0..2^31-1) from its text[] and int8[] columns
 * of one length; the arrays are r's even on failure (store_requests_free). 0 or -1. */
static int refresh_tables(const PGresult *res, int row, struct store_request *r)
{
    int64_t *ballots = NULL;
    size_t cap = 0, n = 0;
    int rc = store_val_strings(res, row, 9, &r->table_ids, &r->n_tables) == 0 &&
                     store_val_int8_array(res, row, 10, &ballots, &cap, &n) == 0 && n == r->n_tables
                 ? 0
                 : -1;
    r->table_ballots = xcalloc(r->n_tables ? r->n_tables : 1, sizeof(*r->table_ballots));
    for (size_t i = 0; i < r->n_tables && rc == 0; i++) {
        if (ballots[i] < 0 || ballots[i] > INT32_MAX)
            rc = -1;
        r->table_ballots[i] = (uint32_t)ballots[i];
    }
    free(ballots);
    return rc;
}

/* Marks request id done now with a refusal (no checkpoint): nothing of it applies. */
static int refresh_refuse(struct store *s, const char *id, const char *outcome)
{
    const char *params[2] = {id, outcome};
    PGresult *res = PQexecParams(s->conn,
                                 "UPDATE requests SET done_at = now(), outcome = $2"
                                 " WHERE id = $1::int8 AND done_at IS NULL",
                                 2, NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc < 0)
        store_classify(s, res, "refusing a request");
    PQclear(res);
    return rc;
}

int store_requests_take(struct store *s, uint64_t after_id, struct store_request **out,
                        size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!refresh_have_state(s))
        return 0;
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "SELECT r.id, r.kind, r.actor, r.reason, coalesce(r.collector_id, ''),"
             " coalesce(r.seq, 0), r.seed,"
             " CASE"
             "  WHEN st.closed_at IS NOT NULL"
             "   THEN 'refused: the consultation is closed'"
             "  WHEN r.kind = 'retract' AND b.seq IS NULL"
             "   THEN format('refused: no durable batch %%s/%%s', r.collector_id, r.seq)"
             "  WHEN r.kind = 'retract' AND b.kind = 'sheets'"
             "   THEN format('refused: batch %%s/%%s carries tally sheets: a sheet is corrected"
             " by sending a higher version', r.collector_id, r.seq)"
             "  WHEN r.kind = 'retract' AND b.counts IS NULL"
             "   THEN format('refused: batch %%s/%%s was recorded before per-batch counts"
             " existed (schema 7): its effect is not known apart', r.collector_id, r.seq)"
             "  WHEN r.kind = 'retract' AND c.id IS NOT NULL"
             "   THEN format('refused: batch %%s/%%s was retracted already (correction %%s)',"
             " r.collector_id, r.seq, c.id)"
             "  WHEN r.kind = 'tie_rule' AND st.tie_rule IS NOT NULL"
             "   THEN 'refused: a tie rule is set already'"
             " END,"
             " b.counts, b.table_ids, b.table_ballots::int8[]"
             " FROM requests r CROSS JOIN consultation_state st"
             " LEFT JOIN batches b ON r.kind = 'retract' AND b.collector_id = r.collector_id"
             "  AND b.seq = r.seq"
             " LEFT JOIN corrections c ON r.kind = 'retract' AND c.kind = 'retract'"
             "  AND c.collector_id = r.collector_id AND c.seq = r.seq"
             " WHERE r.done_at IS NULL AND r.id > %" PRIu64 " ORDER BY r.id LIMIT %d",
             after_id, REFRESH_MAX_REQUESTS);
    PGresult *res = store_query_rows_binary(s, sql, "reading requests");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct store_request *a = xcalloc(n ? n : 1, sizeof(*a));
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int r = (int)i;
        if (!PQgetisnull(res, r, 7)) {
            int64_t id = 0;
            char text[24];
            (void)store_val_int8(res, r, 0, &id); /* the primary key: never NULL */
            snprintf(text, sizeof(text), "%" PRId64, id);
            rc = refresh_refuse(s, text, PQgetvalue(res, r, 7));
            continue;
        }
        struct store_request *x = &a[m];
        const char *kind = PQgetvalue(res, r, 1);
        x->kind = strcmp(kind, "retract") == 0 ? STORE_REQUEST_RETRACT
                  : strcmp(kind, "close") == 0 ? STORE_REQUEST_CLOSE
                                               : STORE_REQUEST_TIE_RULE;
        x->actor = xstrdup(PQgetvalue(res, r, 2));
        x->reason = xstrdup(PQgetvalue(res, r, 3));
        snprintf(x->collector_id, sizeof(x->collector_id), "%s", PQgetvalue(res, r, 4));
        m++;
        if (store_val_u64(res, r, 0, INT64_MAX, &x->id) < 0 ||
            store_val_u64(res, r, 5, INT64_MAX, &x->seq) < 0) {
            store_set_error(s, "request row %zu has a value out of range", i);
            rc = -1;
            break;
        }
        size_t len;
        const uint8_t *seed = store_val_bytes(res, r, 6, &len);
        if (len) {
            x->seed = xcalloc(len, 1);
            memcpy(x->seed, seed, len);
            x->seed_len = len;
        }
        if (x->kind != STORE_REQUEST_RETRACT)
            continue;
        if (store_val_counts(res, r, 8, &x->counts, &x->n_counts) < 0 ||
            refresh_tables(res, r, x) < 0) {
            /* A damaged batch row: refuse this one request (verify will say more) rather
             * than fail every refresh on it. */
            char id[24];
            snprintf(id, sizeof(id), "%" PRIu64, x->id);
            rc = refresh_refuse(s, id,
                                "refused: the batch's stored counts do not decode (run tallyctl "
                                "verify)");
            request_clear(x);
            m--;
        }
    }
    PQclear(res);
    if (rc < 0) {
        store_requests_free(a, m);
        return -1;
    }
    if (m == 0) {
        free(a); /* nothing to hand over: NULL, so a caller that never frees loses nothing */
        a = NULL;
    }
    *out = a;
    *n_out = m;
    return 0;
}
