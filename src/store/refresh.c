/* What a running tallyd reads with its collectors refresh, at most every second: the
 * consultation's state, and the requests tallyctl left (docs/consultation.md, part B) —
 * those that cannot apply are refused here, in SQL, and marked done at once; the rest go to
 * the loop with what applying them needs (a retracted batch's counts). Also the one write a
 * refresh makes: which embargo tallyd's outputs apply. */
#include "store/counts.h"
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

static int refresh_hex32(const char *hex, uint8_t out[32])
{
    if (strlen(hex) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

int store_state_read(struct store *s, struct store_state *out)
{
    memset(out, 0, sizeof(*out));
    if (!refresh_have_state(s))
        return 0;
    PGresult *res =
        store_query_rows(s,
                         "SELECT embargo, closed_at IS NOT NULL, coalesce(closed_checkpoint_id, 0),"
                         " coalesce((extract(epoch FROM closed_at) * 1000000)::int8, 0),"
                         " tie_rule IS NOT NULL, coalesce(encode(tie_seed_hash, 'hex'), ''),"
                         " certified_at IS NOT NULL, coalesce(encode(certified_hash, 'hex'), ''),"
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
    out->embargo = PQgetvalue(res, 0, 0)[0] == 't';
    out->closed = PQgetvalue(res, 0, 1)[0] == 't';
    out->tie_rule = PQgetvalue(res, 0, 4)[0] == 't';
    out->certified = PQgetvalue(res, 0, 6)[0] == 't';
    uint64_t closed_at, certified_at;
    if (store_parse_u64(PQgetvalue(res, 0, 2), INT64_MAX, &out->closed_checkpoint_id) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 3), INT64_MAX, &closed_at) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 8), INT64_MAX, &out->certified_checkpoint_id) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 9), INT64_MAX, &certified_at) < 0 ||
        (out->tie_rule && refresh_hex32(PQgetvalue(res, 0, 5), out->tie_seed_hash) < 0) ||
        (out->certified && refresh_hex32(PQgetvalue(res, 0, 7), out->certified_hash) < 0)) {
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

void store_requests_free(struct store_request *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++) {
        free(a[i].actor);
        free(a[i].reason);
        free(a[i].seed);
        free(a[i].counts);
        for (size_t k = 0; k < a[i].n_tables; k++)
            free(a[i].table_ids[k]);
        free(a[i].table_ids);
        free(a[i].table_ballots);
    }
    free(a);
}

struct refresh_pairs {
    uint32_t *pairs;
    size_t n, cap;
};

static int refresh_pair(void *arg, uint32_t id, uint32_t votes)
{
    struct refresh_pairs *p = arg;
    p->pairs = xgrow(p->pairs, &p->cap, 2 * (p->n + 1), sizeof(*p->pairs));
    p->pairs[2 * p->n] = id;
    p->pairs[2 * p->n + 1] = votes;
    p->n++;
    return 0;
}

/* A retracted batch's tables and ballots from two comma-separated lists. */
static int refresh_tables(const char *ids, const char *ballots, struct store_request *r)
{
    size_t n = *ids ? 1 : 0;
    for (const char *p = ids; *p; p++)
        n += *p == ',';
    r->table_ids = xcalloc(n ? n : 1, sizeof(*r->table_ids));
    r->table_ballots = xcalloc(n ? n : 1, sizeof(*r->table_ballots));
    for (size_t i = 0; i < n; i++) {
        /* Table ids are [A-Za-z0-9._-]: no comma, no quoting in array_to_string. */
        const char *end = strchr(ids, ',');
        size_t len = end ? (size_t)(end - ids) : strlen(ids);
        r->table_ids[i] = xcalloc(len + 1, 1);
        memcpy(r->table_ids[i], ids, len);
        ids += len + (end ? 1 : 0);
        char *stop;
        unsigned long v = strtoul(ballots, &stop, 10);
        if (stop == ballots || v > INT32_MAX || (*stop && *stop != ',')) {
            r->n_tables = i + 1;
            return -1;
        }
        ballots = *stop ? stop + 1 : stop;
        r->table_ballots[i] = (uint32_t)v;
        r->n_tables = i + 1;
    }
    return 0;
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
             " coalesce(r.seq, 0), coalesce(encode(r.seed, 'hex'), ''),"
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
             " b.counts, array_to_string(b.table_ids, ','), array_to_string(b.table_ballots, ',')"
             " FROM requests r CROSS JOIN consultation_state st"
             " LEFT JOIN batches b ON r.kind = 'retract' AND b.collector_id = r.collector_id"
             "  AND b.seq = r.seq"
             " LEFT JOIN corrections c ON r.kind = 'retract' AND c.kind = 'retract'"
             "  AND c.collector_id = r.collector_id AND c.seq = r.seq"
             " WHERE r.done_at IS NULL AND r.id > %" PRIu64 " ORDER BY r.id LIMIT %d",
             after_id, REFRESH_MAX_REQUESTS);
    PGresult *res = store_query_rows(s, sql, "reading requests");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct store_request *a = xcalloc(n ? n : 1, sizeof(*a));
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int r = (int)i;
        if (!PQgetisnull(res, r, 7)) {
            rc = refresh_refuse(s, PQgetvalue(res, r, 0), PQgetvalue(res, r, 7));
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
        if (store_parse_u64(PQgetvalue(res, r, 0), INT64_MAX, &x->id) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 5), INT64_MAX, &x->seq) < 0) {
            store_set_error(s, "request row %zu has a value out of range", i);
            rc = -1;
            break;
        }
        const char *seed = PQgetvalue(res, r, 6);
        if (*seed) {
            size_t len = strlen(seed) / 2;
            x->seed = xcalloc(len ? len : 1, 1);
            for (size_t k = 0; k < len; k++) {
                unsigned v;
                sscanf(seed + 2 * k, "%2x", &v);
                x->seed[k] = (uint8_t)v;
            }
            x->seed_len = len;
        }
        if (x->kind != STORE_REQUEST_RETRACT)
            continue;
        /* bytea in text form: "\x" then hex. */
        const char *hex = PQgetvalue(res, r, 8);
        size_t len = strlen(hex) >= 2 ? (strlen(hex) - 2) / 2 : 0;
        uint8_t *bytes = xcalloc(len ? len : 1, 1);
        for (size_t k = 0; k < len; k++) {
            unsigned v;
            sscanf(hex + 2 + 2 * k, "%2x", &v);
            bytes[k] = (uint8_t)v;
        }
        struct refresh_pairs pairs = {0};
        if (store_counts_decode(bytes, len, refresh_pair, &pairs) < 0 ||
            refresh_tables(PQgetvalue(res, r, 9), PQgetvalue(res, r, 10), x) < 0) {
            store_set_error(s, "batch %s/%" PRIu64 ": its stored counts do not decode",
                            x->collector_id, x->seq);
            rc = -1;
        }
        free(bytes);
        x->counts = pairs.pairs;
        x->n_counts = pairs.n;
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
