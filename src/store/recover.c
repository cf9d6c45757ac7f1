/* Start-up recovery and the collectors list: reads the durable state (consultation,
 * projects with their durable votes, collectors, the head of the chain) in one read-only
 * snapshot and streams every stored token page and batch digest to callbacks row by row;
 * the collector rows (pins, circuits, disabled) for recovery, the refresh and tallyctl.
 * Writes nothing. */
#include "store/cursor.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rec_consultation(struct store *s, struct store_recovery *out)
{
    PGresult *res = store_query_rows(
        s, "SELECT id FROM consultation ORDER BY created_at, id LIMIT 1", "reading consultation");
    if (!res)
        return -1;
    int rc = -1;
    if (PQntuples(res) != 1) {
        store_set_error(s, "no consultation row (run migrations)");
        goto done;
    }
    snprintf(out->consultation_id, sizeof(out->consultation_id), "%s", PQgetvalue(res, 0, 0));
    rc = 0;
done:
    PQclear(res);
    return rc;
}

static int rec_projects(struct store *s, struct store_recovery *out)
{
    PGresult *res = store_query_rows(s,
                                     "SELECT p.id, a.code, v.votes"
                                     " FROM projects p JOIN areas a ON a.id = p.circuit_area_id"
                                     " JOIN project_votes v ON v.project_id = p.id ORDER BY p.id",
                                     "reading projects");
    if (!res)
        return -1;
    int rc = -1;
    size_t n = (size_t)PQntuples(res);
    out->projects = calloc(n ? n : 1, sizeof(*out->projects));
    if (!out->projects)
        abort();
    for (size_t i = 0; i < n; i++) {
        uint64_t id, circuit, votes;
        if (store_parse_u64(PQgetvalue(res, (int)i, 0), UINT32_MAX, &id) < 0 ||
            store_parse_u64(PQgetvalue(res, (int)i, 1), UINT32_MAX, &circuit) < 0 ||
            store_parse_u64(PQgetvalue(res, (int)i, 2), UINT64_MAX, &votes) < 0) {
            store_set_error(s, "project row %zu has a value out of range", i);
            goto done;
        }
        out->projects[i].id = (uint32_t)id;
        out->projects[i].circuit_id = (uint32_t)circuit;
        out->projects[i].votes = votes;
    }
    out->n_projects = n;
    rc = 0;
done:
    PQclear(res);
    return rc;
}

/* The collector columns store_collector_parse reads, in its order; the select list for
 * a schema before migration 6 (no pins, no disabled) reads the same shape. */
/* The last column, the not_allowed share of rejected, is 0 in these lists: the collectors
 * refresh runs every second under load and must not read the batches; recovery reads the
 * sums apart, once (rec_not_allowed). */
static const char rec_collector_cols_v7[] =
    "id, durable_seq, batches, votes, accepted, duplicate, rejected,"
    " coalesce(encode(cert_pin, 'hex'), ''), disabled_at IS NOT NULL, circuits IS NOT NULL,"
    " coalesce(array_to_string(circuits, ','), ''), 0, sheets, sheets_accepted,"
    " sheets_duplicate, sheets_rejected";
static const char rec_collector_cols_v6[] =
    "id, durable_seq, batches, votes, accepted, duplicate, rejected,"
    " coalesce(encode(cert_pin, 'hex'), ''), disabled_at IS NOT NULL, circuits IS NOT NULL,"
    " coalesce(array_to_string(circuits, ','), ''), 0, 0, 0, 0, 0";
static const char rec_collector_cols_v5[] =
    "id, durable_seq, batches, votes, accepted, duplicate, rejected, '', false,"
    " circuits IS NOT NULL, coalesce(array_to_string(circuits, ','), ''), 0, 0, 0, 0, 0";

const char *store_collector_columns(struct store *s)
{
    /* tallyctl status and add-collector also run against databases not yet migrated. */
    PGresult *res = PQexec(s->conn, "SELECT count(*) FILTER (WHERE attname = 'cert_pin'),"
                                    " count(*) FILTER (WHERE attname = 'sheets_rejected')"
                                    " FROM pg_attribute"
                                    " WHERE attrelid = to_regclass('collectors')"
                                    " AND attname IN ('cert_pin', 'sheets_rejected')"
                                    " AND NOT attisdropped");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    bool v6 = ok && PQgetvalue(res, 0, 0)[0] == '1';
    bool v7 = ok && PQgetvalue(res, 0, 1)[0] == '1';
    PQclear(res);
    return v7 ? rec_collector_cols_v7 : v6 ? rec_collector_cols_v6 : rec_collector_cols_v5;
}

static int rec_hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "5,7,9" (ascending, as stored by store_collector_add; sorted and made distinct here
 * anyway, since the database is not trusted to keep it so). */
static int rec_parse_circuits(const char *text, struct store_collector *c)
{
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    c->circuits = xcalloc(n, sizeof(*c->circuits));
    c->n_circuits = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || v > UINT32_MAX || (*end && *end != ','))
            return -1;
        c->circuits[c->n_circuits++] = (uint32_t)v;
        p = *end ? end + 1 : end;
    }
    qsort(c->circuits, c->n_circuits, sizeof(*c->circuits), store_cmp_u32);
    size_t o = 0;
    for (size_t i = 0; i < c->n_circuits; i++)
        if (o == 0 || c->circuits[o - 1] != c->circuits[i])
            c->circuits[o++] = c->circuits[i];
    c->n_circuits = o;
    return 0;
}

int store_collector_parse(struct store *s, const PGresult *res, int row, struct store_collector *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(res, row, 0));
    uint64_t *f[6] = {&c->durable_seq, &c->batches,   &c->votes,
                      &c->accepted,    &c->duplicate, &c->rejected};
    for (int k = 0; k < 6; k++) {
        if (store_parse_u64(PQgetvalue(res, row, k + 1), INT64_MAX, f[k]) < 0) {
            store_set_error(s, "collector %s has a negative counter", c->id);
            return -1;
        }
    }
    const char *hex = PQgetvalue(res, row, 7);
    if (hex[0]) {
        if (strlen(hex) != 2 * STORE_PIN_BYTES)
            goto bad_pin;
        for (size_t i = 0; i < STORE_PIN_BYTES; i++) {
            int hi = rec_hex_nibble(hex[2 * i]), lo = rec_hex_nibble(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                goto bad_pin;
            c->pin[i] = (uint8_t)(hi << 4 | lo);
        }
        c->has_pin = true;
    }
    if (store_parse_u64(PQgetvalue(res, row, 11), INT64_MAX, &c->rejected_not_allowed) < 0) {
        store_set_error(s, "collector %s has a negative counter", c->id);
        return -1;
    }
    uint64_t *sh[4] = {&c->sheets, &c->sheets_accepted, &c->sheets_duplicate, &c->sheets_rejected};
    for (int k = 0; k < 4; k++) {
        if (store_parse_u64(PQgetvalue(res, row, 12 + k), INT64_MAX, sh[k]) < 0) {
            store_set_error(s, "collector %s has a negative counter", c->id);
            return -1;
        }
    }
    c->disabled = PQgetvalue(res, row, 8)[0] == 't';
    c->restricted = PQgetvalue(res, row, 9)[0] == 't';
    if (c->restricted && rec_parse_circuits(PQgetvalue(res, row, 10), c) < 0) {
        store_set_error(s, "collector %s has a circuit id outside 0..2^32-1", c->id);
        store_collectors_free_one(c);
        return -1;
    }
    return 0;
bad_pin:
    store_set_error(s, "collector %s has a certificate pin of the wrong length", c->id);
    return -1;
}

/* A sheet's rows from its two int8[] columns of one length (ids in 0..2^32-1, votes in
 * 1..2^31-1). Returns 0 or -1. */
static int rec_sheet_pairs(const PGresult *res, int r, struct store_recovered_sheet *x)
{
    int64_t *ids, *votes;
    size_t n;
    if (store_val_int8_pairs(res, r, 3, 4, &ids, &votes, &n) < 0)
        return -1;
    x->project_ids = xcalloc(n ? n : 1, sizeof(*x->project_ids));
    x->votes = xcalloc(n ? n : 1, sizeof(*x->votes));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ids[i] < 0 || ids[i] > UINT32_MAX || votes[i] <= 0 || votes[i] > INT32_MAX)
            rc = -1;
        x->project_ids[i] = (uint32_t)ids[i];
        x->votes[i] = (uint64_t)votes[i];
    }
    if (rc == 0)
        x->n = n;
    free(ids);
    free(votes);
    return rc;
}

/* Fills a malloc'd collector array, ordered by id. Never NULL on success, even when
 * empty. */
/* Recovery only: each collector's durable votes rejected as not_allowed, summed over its
 * batch rows (one pass over batches; schemas before 6 have none). Returns 0 or -1. */
static int rec_not_allowed(struct store *s, struct store_collector *c, size_t n)
{
    if (!strstr(store_collector_columns(s), "cert_pin"))
        return 0;
    PGresult *res = store_query_rows(s,
                                     "SELECT collector_id, sum(rejected_not_allowed) FROM batches"
                                     " WHERE rejected_not_allowed > 0 GROUP BY collector_id",
                                     "reading rejections by reason");
    if (!res)
        return -1;
    int rc = 0;
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        const char *id = PQgetvalue(res, r, 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(c[i].id, id) != 0)
                continue;
            if (store_parse_u64(PQgetvalue(res, r, 1), c[i].rejected, &c[i].rejected_not_allowed) <
                0) {
                store_set_error(s,
                                "collector %s: more votes rejected as not allowed than "
                                "rejected at all",
                                id);
                rc = -1;
            }
            break;
        }
    }
    PQclear(res);
    return rc;
}

/* Recovery only, schema 7 on: each collector's durable rejections by reason, summed over its
 * batch rows (one pass over batches, as rec_not_allowed). Returns 0 or -1. */
static int rec_reasons(struct store *s, struct store_collector *c, size_t n)
{
    if (!strstr(store_collector_columns(s), "sheets_rejected"))
        return 0;
    PGresult *res = store_query_rows(
        s,
        "SELECT collector_id, sheets, k, sum(n) FROM ("
        " SELECT b.collector_id, b.kind = 'sheets' AS sheets, u.k, u.n FROM batches b"
        "  CROSS JOIN LATERAL unnest(b.rejected_by_reason) WITH ORDINALITY AS u(n, k)"
        /* batches recorded before the column: their two reasons had columns of their own */
        " UNION ALL SELECT collector_id, false, 1, rejected_unknown FROM batches"
        "  WHERE cardinality(rejected_by_reason) = 0"
        " UNION ALL SELECT collector_id, false, 2, rejected_not_allowed FROM batches"
        "  WHERE cardinality(rejected_by_reason) = 0"
        ") x WHERE n > 0 GROUP BY 1, 2, 3",
        "reading rejections by reason");
    if (!res)
        return -1;
    int rc = 0;
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        const char *id = PQgetvalue(res, r, 0);
        bool sheets = PQgetvalue(res, r, 1)[0] == 't';
        uint64_t k, v;
        if (store_parse_u64(PQgetvalue(res, r, 2), STORE_REASONS - 1, &k) < 0 ||
            store_parse_u64(PQgetvalue(res, r, 3), INT64_MAX, &v) < 0) {
            store_set_error(s, "collector %s: a rejection count out of range", id);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(c[i].id, id) == 0)
                (sheets ? c[i].sheet_reasons : c[i].reasons)[k] += v;
    }
    PQclear(res);
    return rc;
}

static int rec_collectors(struct store *s, struct store_collector **out, size_t *n_out)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT %s FROM collectors ORDER BY id", store_collector_columns(s));
    PGresult *res = store_query_rows(s, sql, "reading collectors");
    if (!res)
        return -1;
    int rc = -1;
    size_t n = (size_t)PQntuples(res);
    struct store_collector *c = xcalloc(n ? n : 1, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        if (store_collector_parse(s, res, (int)i, &c[i]) < 0) {
            store_collectors_free(c, i);
            goto done;
        }
    }
    *out = c;
    *n_out = n;
    rc = 0;
done:
    PQclear(res);
    return rc;
}

void store_collectors_free_one(struct store_collector *c)
{
    free(c->circuits);
    c->circuits = NULL;
    c->n_circuits = 0;
}

void store_collectors_free(struct store_collector *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        free(a[i].circuits);
    free(a);
}

static int rec_last_checkpoint(struct store *s, struct store_recovery *out)
{
    PGresult *res = store_query_rows(
        s,
        "SELECT (SELECT through FROM tally_compaction), id, encode(hash, 'hex')"
        " FROM (SELECT 0) z LEFT JOIN (SELECT id, hash FROM checkpoints ORDER BY id DESC LIMIT 1)"
        " c ON true",
        "reading last checkpoint");
    if (!res)
        return -1;
    int rc = store_parse_u64(PQgetvalue(res, 0, 0), INT64_MAX, &out->compacted_through);
    if (rc == 0 && !PQgetisnull(res, 0, 1)) {
        const char *hex = PQgetvalue(res, 0, 2);
        rc = store_parse_u64(PQgetvalue(res, 0, 1), INT64_MAX, &out->last_checkpoint_id);
        for (size_t i = 0; rc == 0 && i < 32; i++) {
            unsigned v;
            if (strlen(hex) != 64 || sscanf(hex + 2 * i, "%2x", &v) != 1)
                rc = -1;
            else
                out->head_hash[i] = (uint8_t)v;
        }
    }
    if (rc < 0)
        store_set_error(s, "bad checkpoint row");
    PQclear(res);
    return rc;
}

/* Runs sql (binary results) in single-row mode and hands each row to on_row; stops
 * handing rows on the first failure but always drains, so the connection stays usable.
 * on_row returns 0 or -1 (with the error set). */
static int rec_stream(struct store *s, const char *sql, const char *what,
                      int (*on_row)(struct store *s, const PGresult *res, void *arg), void *arg)
{
    int rc = -1;
    bool failed = false;
    if (!PQsendQueryParams(s->conn, sql, 0, NULL, NULL, NULL, NULL, 1) ||
        !PQsetSingleRowMode(s->conn)) {
        store_set_error(s, "%s: %s", what, PQerrorMessage(s->conn));
        failed = true;
    }
    PGresult *res;
    while ((res = PQgetResult(s->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (failed) {
            /* drain */
        } else if (st == PGRES_SINGLE_TUPLE) {
            failed = on_row(s, res, arg) < 0;
        } else if (st == PGRES_TUPLES_OK) {
            rc = 0; /* end of rows; PQgetResult still returns NULL next */
        } else {
            store_classify(s, res, what);
            failed = true;
        }
        PQclear(res);
    }
    return failed ? -1 : rc;
}

struct rec_tokens_ctx {
    struct store_recovery *out;
    const struct store_recover_hooks *hooks;
    uint64_t *buf;
    size_t cap;
};

/* One token page: decode its little-endian tokens into a reused buffer, so memory stays
 * at one page whatever the number of stored tokens. */
static int rec_token_row(struct store *s, const PGresult *res, void *arg)
{
    struct rec_tokens_ctx *c = arg;
    int len = PQgetlength(res, 0, 0);
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, 0, 0);
    if (len % 8 != 0) {
        store_set_error(s, "a token page has %d bytes, not a multiple of 8", len);
        return -1;
    }
    size_t n = (size_t)len / 8;
    if (n > c->cap) {
        c->cap = n > 2 * c->cap ? n : 2 * c->cap;
        free(c->buf);
        c->buf = malloc(c->cap * sizeof(*c->buf));
        if (!c->buf)
            abort();
    }
    for (size_t i = 0; i < n; i++)
        c->buf[i] = le64_get(p + 8 * i);
    if (n)
        c->hooks->tokens(c->hooks->arg, c->buf, n);
    c->out->n_tokens += n;
    return 0;
}

static int rec_digest_row(struct store *s, const PGresult *res, void *arg)
{
    struct rec_tokens_ctx *c = arg;
    const unsigned char *q = (const unsigned char *)PQgetvalue(res, 0, 1);
    uint64_t seq = 0;
    if (PQgetlength(res, 0, 1) != 8) {
        store_set_error(s, "a batch row has a bad seq");
        return -1;
    }
    for (int i = 0; i < 8; i++)
        seq = seq << 8 | q[i];
    const uint8_t *digest = NULL;
    if (!PQgetisnull(res, 0, 2)) {
        if (PQgetlength(res, 0, 2) != 32) {
            store_set_error(s, "batch %s/%" PRIu64 " has a digest of %d bytes",
                            PQgetvalue(res, 0, 0), seq, PQgetlength(res, 0, 2));
            return -1;
        }
        digest = (const uint8_t *)PQgetvalue(res, 0, 2);
    }
    c->hooks->digest(c->hooks->arg, PQgetvalue(res, 0, 0), seq, digest);
    c->out->n_digests++;
    return 0;
}

static int rec_cmp_table(const void *a, const void *b)
{
    return strcmp(((const struct store_table *)a)->id, ((const struct store_table *)b)->id);
}

/* Index of table id in out->tables (sorted by rec_cmp_table), or -1. */
static int64_t rec_table_index(const struct store_recovery *out, const char *id)
{
    if (out->n_tables == 0)
        return -1;
    struct store_table key = {.id = id};
    const struct store_table *t =
        bsearch(&key, out->tables, out->n_tables, sizeof(key), rec_cmp_table);
    return t ? t - out->tables : -1;
}

/* Schema 7 on: voting tables, their per-ballot ballots, every table's current sheet, the
 * corrections and the history of checkpoints (/v1/history). Older schemas (tallyctl status before a
 * migration) have none. */
static int rec_tables(struct store *s, struct store_recovery *out)
{
    PGresult *res = store_query_rows(s, "SELECT to_regclass('voting_tables') IS NOT NULL",
                                     "looking for voting tables");
    if (!res)
        return -1;
    bool have = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!have)
        return 0;
    if (store_tables_read(s, &out->tables, &out->n_tables) < 0)
        return -1;
    /* strcmp order whatever the database's collation, for rec_table_index. */
    if (out->n_tables)
        qsort(out->tables, out->n_tables, sizeof(*out->tables), rec_cmp_table);
    out->table_ballots = xcalloc(out->n_tables ? out->n_tables : 1, sizeof(*out->table_ballots));
    res = store_query_rows(s,
                           "SELECT u.id, sum(u.n) FROM checkpoints c"
                           " CROSS JOIN LATERAL unnest(c.table_ids, c.table_ballots) AS u(id, n)"
                           " GROUP BY u.id ORDER BY u.id",
                           "reading table ballots");
    if (!res)
        return -1;
    int rc = 0;
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        const char *id = PQgetvalue(res, r, 0);
        int64_t k = rec_table_index(out, id);
        if (k < 0 ||
            store_parse_u64(PQgetvalue(res, r, 1), INT64_MAX, &out->table_ballots[k]) < 0) {
            store_set_error(s, "table deltas name table '%s', unknown or summing below 0", id);
            rc = -1;
        }
    }
    PQclear(res);
    if (rc < 0)
        return -1;

    res = store_query_rows_binary(s,
                                  "SELECT DISTINCT ON (table_id) table_id, version::int8, digest,"
                                  " project_ids, votes, blank::int8, null_ballots::int8"
                                  " FROM sheets ORDER BY table_id, version DESC",
                                  "reading tally sheets");
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    out->sheets = xcalloc(n ? n : 1, sizeof(*out->sheets));
    for (size_t r = 0; r < n && rc == 0; r++) {
        struct store_recovered_sheet *x = &out->sheets[r];
        const char *id = PQgetvalue(res, (int)r, 0);
        int64_t k = rec_table_index(out, id);
        uint64_t v, blank, nul;
        size_t len;
        const uint8_t *digest = store_val_bytes(res, (int)r, 2, &len);
        rc = k >= 0 && digest && len == 32 && store_val_u64(res, (int)r, 1, INT32_MAX, &v) == 0 &&
                     store_val_u64(res, (int)r, 5, INT32_MAX, &blank) == 0 &&
                     store_val_u64(res, (int)r, 6, INT32_MAX, &nul) == 0
                 ? 0
                 : -1;
        if (rc == 0) {
            memcpy(x->digest, digest, 32);
            x->table = (uint32_t)k;
            x->version = (uint32_t)v;
            x->blank = (uint32_t)blank;
            x->null_ballots = (uint32_t)nul;
            rc = rec_sheet_pairs(res, (int)r, x);
        }
        out->n_sheets = r + 1;
        if (rc < 0)
            store_set_error(s, "tally sheet of table '%s' has a value out of range", id);
    }
    PQclear(res);
    if (rc < 0)
        return -1;

    if (store_corrections_read(s, &out->corrections, &out->n_corrections) < 0)
        return -1;
    out->last_correction_id = out->n_corrections ? out->corrections[out->n_corrections - 1].id : 0;
    return store_history_read(s, &out->history, &out->n_history, &out->history_stride);
}

int store_recover_all(struct store *s, struct store_recovery *out,
                      const struct store_recover_hooks *hooks)
{
    memset(out, 0, sizeof(*out));
    struct rec_tokens_ctx ctx = {out, hooks, NULL, 0};
    /* One snapshot: votes, watermarks, digests and tokens agree even if a writer is busy. */
    if (store_exec_cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != STORE_OK)
        goto fail;
    if (rec_consultation(s, out) < 0 || rec_projects(s, out) < 0 ||
        rec_collectors(s, &out->collectors, &out->n_collectors) < 0 ||
        rec_not_allowed(s, out->collectors, out->n_collectors) < 0 ||
        rec_reasons(s, out->collectors, out->n_collectors) < 0 || rec_last_checkpoint(s, out) < 0 ||
        rec_tables(s, out) < 0 || store_state_read(s, &out->state) < 0)
        goto fail;
    if (hooks && hooks->begin && hooks->begin(hooks->arg, out) < 0) {
        store_set_error(s, "recovery was given up by its caller");
        goto fail;
    }
    if (hooks && hooks->tokens &&
        rec_stream(s, "SELECT tokens FROM token_pages", "reading tokens", rec_token_row, &ctx) < 0)
        goto fail;
    if (hooks && hooks->digest &&
        rec_stream(s, "SELECT collector_id, seq, digest FROM batches ORDER BY collector_id, seq",
                   "reading batch digests", rec_digest_row, &ctx) < 0)
        goto fail;
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        goto fail;
    free(ctx.buf);
    return 0;

fail:
    free(ctx.buf);
    store_rollback(s);
    store_recovery_cleanup(out);
    return -1;
}

int store_recover(struct store *s, struct store_recovery *out, store_tokens_cb on_tokens, void *arg)
{
    struct store_recover_hooks hooks = {.tokens = on_tokens, .arg = arg};
    return store_recover_all(s, out, on_tokens ? &hooks : NULL);
}

void store_recovery_cleanup(struct store_recovery *r)
{
    if (!r)
        return;
    free(r->projects);
    store_collectors_free(r->collectors, r->n_collectors);
    store_tables_free(r->tables, r->n_tables);
    store_corrections_free(r->corrections, r->n_corrections);
    free(r->history);
    free(r->table_ballots);
    for (size_t i = 0; r->sheets && i < r->n_sheets; i++) {
        free(r->sheets[i].project_ids);
        free(r->sheets[i].votes);
    }
    free(r->sheets);
    memset(r, 0, sizeof(*r));
}

int store_collectors_list(struct store *s, struct store_collector **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    return rec_collectors(s, out, n);
}
