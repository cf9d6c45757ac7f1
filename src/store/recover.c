/* Start-up recovery and the collectors list: reads the durable state (consultation,
 * projects with tallies, collectors, last checkpoint) in one read-only snapshot and
 * streams every stored token to a callback row by row. Writes nothing. */
#include "store/internal.h"

#include <inttypes.h>
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
                                     "SELECT p.id, a.code, coalesce(t.votes, 0)"
                                     " FROM projects p JOIN areas a ON a.id = p.circuit_area_id"
                                     " LEFT JOIN tallies t ON t.project_id = p.id ORDER BY p.id",
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

/* Fills a malloc'd collector array from rows (id, durable_seq, batches, votes, accepted,
 * duplicate, rejected). Never NULL on success, even when empty. */
static int rec_collectors(struct store *s, struct store_collector **out, size_t *n_out)
{
    PGresult *res = store_query_rows(s,
                                     "SELECT id, durable_seq, batches, votes, accepted, duplicate,"
                                     " rejected FROM collectors ORDER BY id",
                                     "reading collectors");
    if (!res)
        return -1;
    int rc = -1;
    size_t n = (size_t)PQntuples(res);
    struct store_collector *c = calloc(n ? n : 1, sizeof(*c));
    if (!c)
        abort();
    for (size_t i = 0; i < n; i++) {
        snprintf(c[i].id, sizeof(c[i].id), "%s", PQgetvalue(res, (int)i, 0));
        uint64_t *f[6] = {&c[i].durable_seq, &c[i].batches,   &c[i].votes,
                          &c[i].accepted,    &c[i].duplicate, &c[i].rejected};
        for (int k = 0; k < 6; k++) {
            if (store_parse_u64(PQgetvalue(res, (int)i, k + 1), INT64_MAX, f[k]) < 0) {
                store_set_error(s, "collector %s has a negative counter", c[i].id);
                free(c);
                goto done;
            }
        }
    }
    *out = c;
    *n_out = n;
    rc = 0;
done:
    PQclear(res);
    return rc;
}

static int rec_last_checkpoint(struct store *s, struct store_recovery *out)
{
    PGresult *res = store_query_rows(s, "SELECT coalesce(max(id), 0) FROM checkpoints",
                                     "reading last checkpoint");
    if (!res)
        return -1;
    int rc = store_parse_u64(PQgetvalue(res, 0, 0), INT64_MAX, &out->last_checkpoint_id);
    if (rc < 0)
        store_set_error(s, "bad checkpoint id");
    PQclear(res);
    return rc;
}

/* Streams tokens one batch row at a time (single-row mode, binary bytea), decoding each
 * little-endian token into a reused buffer. Memory stays at one batch whatever the
 * number of stored tokens. */
static int rec_tokens(struct store *s, struct store_recovery *out, store_tokens_cb on_tokens,
                      void *arg)
{
    uint64_t *buf = NULL;
    size_t cap = 0;
    int rc = -1;
    bool draining = false;

    if (!PQsendQueryParams(s->conn, "SELECT tokens FROM batches", 0, NULL, NULL, NULL, NULL, 1) ||
        !PQsetSingleRowMode(s->conn)) {
        store_set_error(s, "reading tokens: %s", PQerrorMessage(s->conn));
        draining = true;
    }
    PGresult *res;
    /* PQgetResult must be called until NULL, whatever happens, to leave the connection
     * usable. */
    while ((res = PQgetResult(s->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (draining) {
            PQclear(res);
            continue;
        }
        if (st == PGRES_SINGLE_TUPLE) {
            int len = PQgetlength(res, 0, 0);
            const unsigned char *p = (const unsigned char *)PQgetvalue(res, 0, 0);
            if (len % 8 != 0) {
                store_set_error(s, "a stored batch has %d token bytes, not a multiple of 8", len);
                draining = true;
            } else {
                size_t n = (size_t)len / 8;
                if (n > cap) {
                    cap = n > 2 * cap ? n : 2 * cap;
                    free(buf);
                    buf = malloc(cap * sizeof(*buf));
                    if (!buf)
                        abort();
                }
                for (size_t i = 0; i < n; i++)
                    buf[i] = le64_get(p + 8 * i);
                if (n)
                    on_tokens(arg, buf, n);
                out->n_tokens += n;
            }
        } else if (st == PGRES_TUPLES_OK) {
            rc = 0; /* end of rows; PQgetResult still returns NULL next */
        } else {
            store_classify(s, res, "reading tokens");
            draining = true;
        }
        PQclear(res);
    }
    if (draining)
        rc = -1;
    free(buf);
    return rc;
}

int store_recover(struct store *s, struct store_recovery *out, store_tokens_cb on_tokens, void *arg)
{
    memset(out, 0, sizeof(*out));
    /* One snapshot: tallies, watermarks and tokens agree even if a writer is busy. */
    if (store_exec_cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != STORE_OK)
        goto fail;
    if (rec_consultation(s, out) < 0 || rec_projects(s, out) < 0 ||
        rec_collectors(s, &out->collectors, &out->n_collectors) < 0 ||
        rec_last_checkpoint(s, out) < 0)
        goto fail;
    if (on_tokens && rec_tokens(s, out, on_tokens, arg) < 0)
        goto fail;
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        goto fail;
    return 0;

fail:
    store_rollback(s);
    store_recovery_cleanup(out);
    return -1;
}

void store_recovery_cleanup(struct store_recovery *r)
{
    if (!r)
        return;
    free(r->projects);
    free(r->collectors);
    memset(r, 0, sizeof(*r));
}

int store_collectors_list(struct store *s, struct store_collector **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    return rec_collectors(s, out, n);
}
