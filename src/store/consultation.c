/* The consultation's state for tallyctl's organiser commands: consultation_state read and
 * written (embargo, certification), requests inserted and polled, the retract correction
 * looked up, and the progress views read. Every parameter is bound, never interpolated.
 * What tallyd does with a request (and writing closed_at, the tie seed, embargo_applied)
 * is not here: tallyd applies requests in its checkpoints. */
#include "store/consultation.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs a text-parameter statement; NULL with the error set unless it returned want. */
static PGresult *cs_exec(struct store *s, const char *sql, int n, const char *const *params,
                         ExecStatusType want, const char *what)
{
    PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == want)
        return res;
    store_classify(s, res, what);
    PQclear(res);
    return NULL;
}

/* Whether migration 8's table exists: 1, 0, or -1. */
static int cs_has_schema(struct store *s)
{
    PGresult *res = store_query_rows(s, "SELECT to_regclass('consultation_state') IS NOT NULL",
                                     "looking for consultation_state");
    if (!res)
        return -1;
    int has = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!has)
        store_set_error(s, "the consultation's state needs schema version 8 (run tallyctl "
                           "migrate first)");
    return has;
}

static int cs_hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Hex text (encode(x, 'hex')) into at most cap bytes; the byte count, or -1. */
static long cs_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = cs_hex_nibble(hex[2 * i]), lo = cs_hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

/* "\x<hex>": a bytea literal as a text parameter (malloc'd). */
static char *cs_bytea_param(const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *out = xmalloc(2 * n + 3);
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        out[2 + 2 * i] = digits[b[i] >> 4];
        out[3 + 2 * i] = digits[b[i] & 15];
    }
    out[2 + 2 * n] = '\0';
    return out;
}

static int cs_i64(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end)
        return -1;
    *out = v;
    return 0;
}

/* Column c of row 0 as µs (selected as such), 0 when NULL. */
static int cs_time(const PGresult *res, int c, int64_t *out)
{
    *out = 0;
    return PQgetisnull(res, 0, c) ? 0 : cs_i64(PQgetvalue(res, 0, c), out);
}

static const char cs_state_sql[] =
    "SELECT embargo, embargo_applied, (extract(epoch FROM embargo_changed_at) * 1000000)::int8,"
    " coalesce(embargo_actor, ''),"
    " (extract(epoch FROM closed_at) * 1000000)::int8, coalesce(closed_checkpoint_id, 0),"
    " tie_rule IS NOT NULL, coalesce(encode(tie_seed, 'hex'), ''),"
    " coalesce(encode(tie_seed_hash, 'hex'), ''),"
    " (extract(epoch FROM certified_at) * 1000000)::int8, coalesce(certified_checkpoint_id, 0),"
    " coalesce(encode(certified_hash, 'hex'), ''), coalesce(certified_by, ''),"
    " encode(report_sha256, 'hex')"
    " FROM consultation_state";

int store_consultation_read(struct store *s, struct store_consultation_state *out)
{
    memset(out, 0, sizeof(*out));
    if (cs_has_schema(s) <= 0)
        return -1;
    PGresult *res = store_query_rows(s, cs_state_sql, "reading consultation_state");
    if (!res)
        return -1;
    int rc = -1;
    if (PQntuples(res) != 1) {
        store_set_error(s, "consultation_state has %d rows, not 1", PQntuples(res));
        goto done;
    }
    out->embargo = PQgetvalue(res, 0, 0)[0] == 't';
    out->embargo_applied_known = !PQgetisnull(res, 0, 1);
    out->embargo_applied = PQgetvalue(res, 0, 1)[0] == 't';
    snprintf(out->embargo_actor, sizeof(out->embargo_actor), "%s", PQgetvalue(res, 0, 3));
    out->closed = !PQgetisnull(res, 0, 4);
    out->has_tie_rule = PQgetvalue(res, 0, 6)[0] == 't';
    out->certified = !PQgetisnull(res, 0, 9);
    snprintf(out->certified_by, sizeof(out->certified_by), "%s", PQgetvalue(res, 0, 12));
    out->has_report_sha256 = !PQgetisnull(res, 0, 13);
    long seed_len = cs_unhex(PQgetvalue(res, 0, 7), out->tie_seed, sizeof(out->tie_seed));
    if (cs_time(res, 2, &out->embargo_changed_us) < 0 || cs_time(res, 4, &out->closed_us) < 0 ||
        cs_time(res, 9, &out->certified_us) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 5), INT64_MAX, &out->closed_checkpoint_id) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 10), INT64_MAX, &out->certified_checkpoint_id) < 0 ||
        seed_len < 0 ||
        (out->has_tie_rule && cs_unhex(PQgetvalue(res, 0, 8), out->tie_seed_hash, 32) != 32) ||
        (out->certified && cs_unhex(PQgetvalue(res, 0, 11), out->certified_hash, 32) != 32) ||
        (out->has_report_sha256 &&
         cs_unhex(PQgetvalue(res, 0, 13), out->report_sha256, 32) != 32)) {
        store_set_error(s, "consultation_state holds a value out of range");
        goto done;
    }
    out->tie_seed_len = (size_t)seed_len;
    rc = 0;
done:
    PQclear(res);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- requests ------------------------------------------------------------------------- */

int store_request_insert(struct store *s, const struct store_request_spec *rq, uint64_t *id)
{
    static const char *const kinds[] = {"retract", "close", "tie_rule"};
    *id = 0;
    if (!rq->actor || !rq->actor[0] || strlen(rq->actor) > STORE_ACTOR_MAX) {
        store_set_error(s, "the actor must be 1 to %d characters", STORE_ACTOR_MAX);
        return -1;
    }
    if (rq->reason && strlen(rq->reason) > STORE_REASON_MAX) {
        store_set_error(s, "the reason must be at most %d characters", STORE_REASON_MAX);
        return -1;
    }
    if (rq->kind == STORE_SPEC_TIE_RULE &&
        (!rq->seed || rq->seed_len < STORE_SEED_MIN || rq->seed_len > STORE_SEED_MAX)) {
        store_set_error(s, "the seed must be %d to %d bytes", STORE_SEED_MIN, STORE_SEED_MAX);
        return -1;
    }
    if (rq->kind == STORE_SPEC_RETRACT && (!rq->collector_id || rq->seq > INT64_MAX)) {
        store_set_error(s, "a retraction names a collector and a seq");
        return -1;
    }
    if (cs_has_schema(s) <= 0)
        return -1;
    char seq[24] = "";
    char *seed = NULL;
    bool retract = rq->kind == STORE_SPEC_RETRACT;
    if (retract)
        snprintf(seq, sizeof(seq), "%" PRIu64, rq->seq);
    if (rq->kind == STORE_SPEC_TIE_RULE)
        seed = cs_bytea_param(rq->seed, rq->seed_len);
    const char *params[6] = {kinds[rq->kind],
                             rq->actor,
                             rq->reason ? rq->reason : "",
                             retract ? rq->collector_id : NULL,
                             retract ? seq : NULL,
                             seed};
    PGresult *res = cs_exec(s,
                            "INSERT INTO requests (kind, actor, reason, collector_id, seq, seed)"
                            " VALUES ($1, $2, $3, $4, $5::int8, $6::bytea) RETURNING id",
                            6, params, PGRES_TUPLES_OK, "inserting the request");
    free(seed);
    if (!res)
        return -1;
    int rc = store_parse_u64(PQgetvalue(res, 0, 0), INT64_MAX, id);
    if (rc < 0)
        store_set_error(s, "bad request id");
    PQclear(res);
    return rc;
}

int store_request_get(struct store *s, uint64_t id, struct store_request_status *out)
{
    memset(out, 0, sizeof(*out));
    char idt[24];
    snprintf(idt, sizeof(idt), "%" PRIu64, id);
    const char *params[1] = {idt};
    PGresult *res = cs_exec(s,
                            "SELECT done_at IS NOT NULL, coalesce(checkpoint_id, 0),"
                            " coalesce(outcome, '') FROM requests WHERE id = $1::int8",
                            1, params, PGRES_TUPLES_OK, "reading the request");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1) {
        out->done = PQgetvalue(res, 0, 0)[0] == 't';
        snprintf(out->outcome, sizeof(out->outcome), "%s", PQgetvalue(res, 0, 2));
        out->applied = out->done && strcmp(out->outcome, "applied") == 0;
        rc = 1;
        if (store_parse_u64(PQgetvalue(res, 0, 1), INT64_MAX, &out->checkpoint_id) < 0) {
            store_set_error(s, "request %" PRIu64 ": bad checkpoint id", id);
            rc = -1;
        }
    }
    PQclear(res);
    return rc;
}

int store_request_wait(struct store *s, uint64_t id, int wait_ms, struct store_request_status *out)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int got = store_request_get(s, id, out);
        if (got < 0)
            return -1;
        if (got == 0) {
            store_set_error(s, "request %" PRIu64 " is gone from the requests table", id);
            return -1;
        }
        if (out->done)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms =
            (int64_t)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms >= wait_ms)
            return 0;
        int64_t nap = wait_ms - ms < 100 ? wait_ms - ms : 100;
        struct timespec ts = {0, (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int store_retract_correction_get(struct store *s, const char *collector_id, uint64_t seq,
                                 struct store_correction_row *out)
{
    memset(out, 0, sizeof(*out));
    struct store_correction_row *a;
    size_t n;
    if (store_corrections_read(s, &a, &n) < 0)
        return -1;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_correction_row *x = &a[i];
        if (!found && x->kind == STORE_CORRECTION_RETRACT && x->collector_id &&
            strcmp(x->collector_id, collector_id) == 0 && x->seq == seq) {
            *out = *x;
            memset(x, 0, sizeof(*x)); /* moved into out */
            found = 1;
        }
    }
    store_corrections_free(a, n);
    return found;
}

int store_checkpoint_hash_get(struct store *s, uint64_t id, uint8_t hash[32])
{
    char idt[24];
    snprintf(idt, sizeof(idt), "%" PRIu64, id);
    const char *params[1] = {idt};
    PGresult *res = cs_exec(s, "SELECT encode(hash, 'hex') FROM checkpoints WHERE id = $1::int8", 1,
                            params, PGRES_TUPLES_OK, "reading the checkpoint");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1) {
        rc = 1;
        if (cs_unhex(PQgetvalue(res, 0, 0), hash, 32) != 32) {
            store_set_error(s, "checkpoint %" PRIu64 ": bad hash", id);
            rc = -1;
        }
    }
    PQclear(res);
    return rc;
}

/* ---- embargo -------------------------------------------------------------------------- */

int store_embargo_set(struct store *s, bool on, const char *actor)
{
    if (cs_has_schema(s) <= 0)
        return -1;
    const char *params[2] = {on ? "true" : "false", actor};
    PGresult *res = cs_exec(s,
                            "UPDATE consultation_state SET embargo = $1::boolean,"
                            " embargo_changed_at = now(), embargo_actor = $2,"
                            " embargo_applied = NULL WHERE embargo IS DISTINCT FROM $1::boolean",
                            2, params, PGRES_COMMAND_OK, "setting the embargo");
    if (!res)
        return -1;
    int changed = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return changed;
}

/* ---- certification -------------------------------------------------------------------- */

int store_certify(struct store *s, const struct store_certification *c)
{
    if (!c->actor || strlen(c->actor) > STORE_ACTOR_MAX) {
        store_set_error(s, "the actor must be at most %d characters", STORE_ACTOR_MAX);
        return -1;
    }
    char cp[24], at[32];
    snprintf(cp, sizeof(cp), "%" PRIu64, c->checkpoint_id);
    snprintf(at, sizeof(at), "%" PRId64, c->at_us);
    char *hash = cs_bytea_param(c->hash, 32);
    char *sha = cs_bytea_param(c->report_sha256, 32);
    const char *params[5] = {at, c->checkpoint_id ? cp : NULL, hash, c->actor, sha};
    PGresult *res = cs_exec(s,
                            "UPDATE consultation_state SET"
                            " certified_at = to_timestamp($1::int8 / 1000000.0),"
                            " certified_checkpoint_id = $2::int8, certified_hash = $3::bytea,"
                            " certified_by = $4, report_sha256 = $5::bytea"
                            " WHERE closed_at IS NOT NULL"
                            " AND (certified_at IS NULL OR certified_hash = $3::bytea)",
                            5, params, PGRES_COMMAND_OK, "recording the certification");
    free(hash);
    free(sha);
    if (!res)
        return -1;
    int rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : 1;
    PQclear(res);
    return rc;
}

/* ---- progress views ------------------------------------------------------------------- */

int store_table_progress_read(struct store *s, struct store_table_progress **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (cs_has_schema(s) <= 0)
        return -1;
    PGresult *res = store_query_rows(s,
                                     "SELECT table_id, circuit_id, electors, mode, reported,"
                                     " ballots, coalesce(sheet_version, 0) FROM table_progress"
                                     " ORDER BY table_id COLLATE \"C\"",
                                     "reading table_progress");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct store_table_progress *a = xcalloc(n ? n : 1, sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        int r = (int)i;
        uint64_t circuit, electors, version;
        const char *mode = PQgetvalue(res, r, 3);
        a[i].table_id = xstrdup(PQgetvalue(res, r, 0));
        a[i].mode = strcmp(mode, "sheet") == 0     ? STORE_TABLE_SHEET
                    : strcmp(mode, "ballots") == 0 ? STORE_TABLE_BALLOTS
                                                   : STORE_TABLE_NONE;
        a[i].reported = PQgetvalue(res, r, 4)[0] == 't';
        if (store_parse_u64(PQgetvalue(res, r, 1), UINT32_MAX, &circuit) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 2), UINT32_MAX, &electors) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 5), INT64_MAX, &a[i].ballots) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 6), UINT32_MAX, &version) < 0) {
            store_set_error(s, "table_progress: table %s has a value out of range", a[i].table_id);
            store_table_progress_free(a, i + 1);
            PQclear(res);
            return -1;
        }
        a[i].circuit_id = (uint32_t)circuit;
        a[i].electors = (uint32_t)electors;
        a[i].sheet_version = (uint32_t)version;
    }
    PQclear(res);
    *out = a;
    *n_out = n;
    return 0;
}

void store_table_progress_free(struct store_table_progress *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        free(a[i].table_id);
    free(a);
}

int store_circuit_progress_read(struct store *s, struct store_circuit_progress **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (cs_has_schema(s) <= 0)
        return -1;
    PGresult *res = store_query_rows(s,
                                     "SELECT circuit_id, tables, tables_reported, electors,"
                                     " electors_reported, ballots, remaining"
                                     " FROM circuit_progress ORDER BY circuit_id",
                                     "reading circuit_progress");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct store_circuit_progress *a = xcalloc(n ? n : 1, sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        int r = (int)i;
        uint64_t circuit;
        uint64_t *f[6] = {&a[i].tables,   &a[i].tables_reported,
                          &a[i].electors, &a[i].electors_reported,
                          &a[i].ballots,  &a[i].remaining};
        int bad = store_parse_u64(PQgetvalue(res, r, 0), UINT32_MAX, &circuit) < 0;
        for (int k = 0; k < 6 && !bad; k++)
            bad = store_parse_u64(PQgetvalue(res, r, k + 1), INT64_MAX, f[k]) < 0;
        if (bad) {
            store_set_error(s, "circuit_progress: row %zu has a value out of range", i);
            free(a);
            PQclear(res);
            return -1;
        }
        a[i].circuit_id = (uint32_t)circuit;
    }
    PQclear(res);
    *out = a;
    *n_out = n;
    return 0;
}
