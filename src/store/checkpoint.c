/* Writing one checkpoint: batch records (COPY BINARY), tally increments, collector
 * watermarks with fencing, and the checkpoint row, in one transaction, idempotent by
 * checkpoint id. Owns the SQL that writes; does not own retrying (worker.c does). */
#include "store/bin.h"
#include "store/internal.h"

#include "core/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* COPY data goes out in chunks of about this size, so a large checkpoint never needs
 * all its encoded batches in memory at once. */
#define CP_COPY_CHUNK (1u << 20)

/* A statement's parameters: text values or binary values built in per-parameter buffers. */
#define CP_MAX_PARAMS 9
struct cp_params {
    int n;
    Oid types[CP_MAX_PARAMS];
    const char *values[CP_MAX_PARAMS];
    int lengths[CP_MAX_PARAMS];
    int formats[CP_MAX_PARAMS];
    char text[CP_MAX_PARAMS][24];
    struct store_bin bin[CP_MAX_PARAMS];
};

static void cp_params_init(struct cp_params *p)
{
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < CP_MAX_PARAMS; i++)
        store_bin_init(&p->bin[i]);
}

static void cp_params_cleanup(struct cp_params *p)
{
    for (int i = 0; i < CP_MAX_PARAMS; i++)
        store_bin_cleanup(&p->bin[i]);
}

static void cp_params_u64(struct cp_params *p, uint64_t v)
{
    int i = p->n++;
    if (i >= CP_MAX_PARAMS)
        abort();
    snprintf(p->text[i], sizeof(p->text[i]), "%" PRIu64, v);
    p->types[i] = STORE_OID_INT8;
    p->values[i] = p->text[i];
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

/* Starts a binary parameter of the given type; fill the returned buffer, then call
 * cp_params_seal() once every parameter is built (buffers may move while growing). */
static struct store_bin *cp_params_bin(struct cp_params *p, Oid type)
{
    int i = p->n++;
    if (i >= CP_MAX_PARAMS)
        abort();
    p->types[i] = type;
    p->formats[i] = 1;
    return &p->bin[i];
}

static void cp_params_seal(struct cp_params *p)
{
    for (int i = 0; i < p->n; i++) {
        if (p->formats[i] != 1)
            continue;
        p->values[i] = (const char *)p->bin[i].data;
        p->lengths[i] = (int)p->bin[i].len;
    }
}

static PGresult *cp_exec(struct store *s, const char *sql, struct cp_params *p)
{
    cp_params_seal(p);
    return PQexecParams(s->conn, sql, p->n, p->types, p->values, p->lengths, p->formats, 0);
}

/* Values that do not fit the schema's signed columns: the caller is broken, and writing
 * something else would be worse than stopping. */
static int cp_validate(struct store *s, const struct store_checkpoint *cp)
{
    if (cp->id == 0 || cp->id > INT64_MAX) {
        store_set_error(s, "checkpoint id %" PRIu64 " out of range", cp->id);
        return -1;
    }
    for (size_t i = 0; i < cp->n_batches; i++) {
        const struct store_batch *b = &cp->batches[i];
        if (b->seq == 0 || b->seq > INT64_MAX || b->votes > INT32_MAX || b->accepted > INT32_MAX ||
            b->duplicate > INT32_MAX || b->rejected_unknown > INT32_MAX ||
            b->n_tokens > INT32_MAX / 8) {
            store_set_error(s, "batch %s/%" PRIu64 ": a field is out of range", b->collector_id,
                            b->seq);
            return -1;
        }
        for (size_t j = 0; j < b->n_counts; j++) {
            if (b->counts[j] > INT32_MAX) {
                store_set_error(s, "batch %s/%" PRIu64 ": count out of range", b->collector_id,
                                b->seq);
                return -1;
            }
        }
    }
    for (size_t i = 0; i < cp->n_deltas; i++) {
        if (cp->deltas[i] > INT64_MAX) {
            store_set_error(s, "tally delta for project %" PRIu32 " out of range",
                            cp->project_ids[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < cp->n_marks; i++) {
        const struct store_watermark *m = &cp->marks[i];
        if (m->prev_seq > INT64_MAX || m->durable_seq > INT64_MAX || m->batches > INT64_MAX ||
            m->votes > INT64_MAX || m->accepted > INT64_MAX || m->duplicate > INT64_MAX ||
            m->rejected > INT64_MAX) {
            store_set_error(s, "watermark for collector %s out of range", m->collector_id);
            return -1;
        }
    }
    return 0;
}

/* Returns 1 when checkpoint id is already committed, 0 when not, or a store_result. */
static int cp_already_committed(struct store *s, uint64_t id)
{
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, id);
    PGresult *res = cp_exec(s, "SELECT 1 FROM checkpoints WHERE id = $1", &p);
    int rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = store_classify(s, res, "checking checkpoint id");
    else
        rc = PQntuples(res) > 0 ? 1 : 0;
    PQclear(res);
    cp_params_cleanup(&p);
    return rc;
}

static enum store_result cp_insert_row(struct store *s, const struct store_checkpoint *cp)
{
    uint64_t votes = 0, accepted = 0;
    for (size_t i = 0; i < cp->n_batches; i++) {
        votes += cp->batches[i].votes;
        accepted += cp->batches[i].accepted;
    }
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, cp->id);
    cp_params_u64(&p, cp->n_batches);
    cp_params_u64(&p, votes);
    cp_params_u64(&p, accepted);
    enum store_result rc = STORE_OK;
    PGresult *res = cp_exec(s,
                            "INSERT INTO checkpoints (id, batches, votes, accepted)"
                            " VALUES ($1, $2, $3, $4)",
                            &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = store_classify(s, res, "inserting checkpoint row");
    PQclear(res);
    cp_params_cleanup(&p);
    return rc;
}

static const char *cp_mark_id(const void *arg, size_t i)
{
    return ((const struct store_watermark *)arg)[i].collector_id;
}

/* Explains, for the log, why a watermark did not move. */
static void cp_explain_fence(struct store *s, const struct store_watermark *m)
{
    const char *params[1] = {m->collector_id};
    PGresult *res = PQexecParams(s->conn, "SELECT durable_seq FROM collectors WHERE id = $1", 1,
                                 NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0)
        store_set_error(s, "collector %s is not registered in the database", m->collector_id);
    else if (PQresultStatus(res) == PGRES_TUPLES_OK)
        store_set_error(s,
                        "fencing failed: collector %s has durable_seq %s in the database, "
                        "expected %" PRIu64 ": another writer moved the watermark",
                        m->collector_id, PQgetvalue(res, 0, 0), m->prev_seq);
    else
        store_set_error(s, "fencing failed for collector %s", m->collector_id);
    PQclear(res);
}

/* Moves every watermark from prev_seq to durable_seq and adds the totals, only where
 * durable_seq still equals prev_seq: a second writer makes this match fewer rows. */
static enum store_result cp_update_marks(struct store *s, const struct store_checkpoint *cp)
{
    static const char sql[] =
        "UPDATE collectors c SET durable_seq = m.new_seq,"
        " batches = c.batches + m.batches, votes = c.votes + m.votes,"
        " accepted = c.accepted + m.accepted, duplicate = c.duplicate + m.duplicate,"
        " rejected = c.rejected + m.rejected, last_checkpoint_id = $1"
        " FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],"
        "             $8::int8[], $9::int8[])"
        "      AS m(id, prev_seq, new_seq, batches, votes, accepted, duplicate, rejected)"
        " WHERE c.id = m.id AND c.durable_seq = m.prev_seq"
        " RETURNING c.id";
    size_t n = cp->n_marks;
    int64_t *col = malloc((n ? n : 1) * sizeof(*col));
    if (!col)
        abort();
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, cp->id);
    store_bin_array_text(cp_params_bin(&p, STORE_OID_TEXT_ARRAY), n, cp_mark_id, cp->marks);
    for (int f = 0; f < 7; f++) {
        for (size_t i = 0; i < n; i++) {
            const struct store_watermark *m = &cp->marks[i];
            const uint64_t v[7] = {m->prev_seq, m->durable_seq, m->batches, m->votes,
                                   m->accepted, m->duplicate,   m->rejected};
            col[i] = (int64_t)v[f];
        }
        store_bin_array_int8(cp_params_bin(&p, STORE_OID_INT8_ARRAY), col, n);
    }
    enum store_result rc = STORE_OK;
    PGresult *res = cp_exec(s, sql, &p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_classify(s, res, "updating watermarks");
        goto done;
    }
    if ((size_t)PQntuples(res) != n) {
        /* Find the first mark that did not move, for a log line that names it. */
        const struct store_watermark *bad = NULL;
        for (size_t i = 0; i < n && !bad; i++) {
            bool found = false;
            for (int r = 0; r < PQntuples(res) && !found; r++)
                found = strcmp(PQgetvalue(res, r, 0), cp->marks[i].collector_id) == 0;
            if (!found)
                bad = &cp->marks[i];
        }
        if (bad)
            cp_explain_fence(s, bad);
        else
            store_set_error(s, "fencing failed: a collector appears twice in checkpoint %" PRIu64,
                            cp->id);
        rc = STORE_FATAL;
    }
done:
    PQclear(res);
    cp_params_cleanup(&p);
    free(col);
    return rc;
}

static enum store_result cp_copy_flush(struct store *s, struct store_bin *b)
{
    if (b->len == 0)
        return STORE_OK;
    if (PQputCopyData(s->conn, (const char *)b->data, (int)b->len) != 1) {
        store_set_error(s, "sending batch rows: %s", PQerrorMessage(s->conn));
        return STORE_RETRY;
    }
    store_bin_reset(b);
    return STORE_OK;
}

/* Ends a COPY (with an error message to abort it, or NULL) and collects its result. */
static enum store_result cp_copy_end(struct store *s, const char *abort_msg)
{
    enum store_result rc = STORE_OK;
    if (PQputCopyEnd(s->conn, abort_msg) != 1) {
        store_set_error(s, "ending COPY: %s", PQerrorMessage(s->conn));
        rc = STORE_RETRY;
    }
    PGresult *res;
    while ((res = PQgetResult(s->conn)) != NULL) {
        if (rc == STORE_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = store_classify(s, res, "writing batch rows");
        PQclear(res);
    }
    return rc;
}

static enum store_result cp_copy_batches(struct store *s, const struct store_checkpoint *cp)
{
    PGresult *res = PQexec(s->conn, "COPY batches (collector_id, seq, checkpoint_id, votes,"
                                    " accepted, duplicate, rejected_unknown, tokens, project_ids,"
                                    " counts) FROM STDIN (FORMAT binary)");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        enum store_result rc = store_classify(s, res, "starting COPY batches");
        PQclear(res);
        return rc;
    }
    PQclear(res);

    struct store_bin b;
    store_bin_init(&b);
    enum store_result rc = STORE_OK;
    store_bin_copy_header(&b);
    for (size_t i = 0; i < cp->n_batches && rc == STORE_OK; i++) {
        const struct store_batch *x = &cp->batches[i];
        store_bin_copy_tuple(&b, 10);
        store_bin_field_text(&b, x->collector_id);
        store_bin_field_int8(&b, (int64_t)x->seq);
        store_bin_field_int8(&b, (int64_t)cp->id);
        store_bin_field_int4(&b, (int32_t)x->votes);
        store_bin_field_int4(&b, (int32_t)x->accepted);
        store_bin_field_int4(&b, (int32_t)x->duplicate);
        store_bin_field_int4(&b, (int32_t)x->rejected_unknown);
        store_bin_field_tokens_le(&b, x->tokens, x->n_tokens);
        store_bin_field_int8_array_u32(&b, x->project_ids, x->n_counts);
        store_bin_field_int4_array_u32(&b, x->counts, x->n_counts);
        if (b.len >= CP_COPY_CHUNK)
            rc = cp_copy_flush(s, &b);
    }
    if (rc == STORE_OK) {
        store_bin_copy_trailer(&b);
        rc = cp_copy_flush(s, &b);
    }
    enum store_result end = cp_copy_end(s, rc == STORE_OK ? NULL : "aborted by tallyd");
    if (rc == STORE_OK)
        rc = end;
    store_bin_cleanup(&b);
    return rc;
}

/* Adds the deltas. load-registry creates a tallies row for every project, so a plain
 * UPDATE suffices (an upsert cost 2-3x more per checkpoint); a project without its row
 * would be silently dropped, so the row count is checked and a shortfall is fatal.
 * Project ids in a checkpoint are distinct (the tally aggregates per project). */
static enum store_result cp_add_tallies(struct store *s, const struct store_checkpoint *cp)
{
    static const char sql[] =
        "UPDATE tallies t SET votes = t.votes + d.n"
        " FROM unnest($1::int8[], $2::int8[]) AS d(id, n) WHERE t.project_id = d.id";
    struct cp_params p;
    cp_params_init(&p);
    store_bin_array_int8_u32(cp_params_bin(&p, STORE_OID_INT8_ARRAY), cp->project_ids,
                             cp->n_deltas);
    /* Validated to fit int64; the cast keeps the binary layout. */
    store_bin_array_int8(cp_params_bin(&p, STORE_OID_INT8_ARRAY), (const int64_t *)cp->deltas,
                         cp->n_deltas);
    enum store_result rc = STORE_OK;
    PGresult *res = cp_exec(s, sql, &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = store_classify(s, res, "adding tallies");
    } else if (strtoull(PQcmdTuples(res), NULL, 10) != cp->n_deltas) {
        store_set_error(s, "adding tallies: %s of %zu projects have a tallies row",
                        PQcmdTuples(res), cp->n_deltas);
        rc = STORE_FATAL;
    }
    PQclear(res);
    cp_params_cleanup(&p);
    return rc;
}

enum store_result store_checkpoint_write(struct store *s, const struct store_checkpoint *cp)
{
    enum store_result rc;
    if (cp_validate(s, cp) < 0) {
        rc = STORE_FATAL;
        goto fail;
    }
    if ((rc = store_exec_cmd(s, "BEGIN")) != STORE_OK)
        goto fail;
    int done = cp_already_committed(s, cp->id);
    if (done < 0) {
        rc = (enum store_result)done;
        goto fail;
    }
    if (done == 1) {
        /* The COMMIT went through but its answer was lost: nothing more to write. */
        store_rollback(s);
        log_info("store: checkpoint %" PRIu64 " was already committed; not written again", cp->id);
        return STORE_OK;
    }
    if ((rc = cp_insert_row(s, cp)) != STORE_OK)
        goto fail;
    /* Watermarks before batch rows: a second writer then fails on the fence, with a
     * message that says so, rather than on a duplicate batch key. */
    if (cp->n_marks && (rc = cp_update_marks(s, cp)) != STORE_OK)
        goto fail;
    if (cp->n_batches && (rc = cp_copy_batches(s, cp)) != STORE_OK)
        goto fail;
    if (cp->n_deltas && (rc = cp_add_tallies(s, cp)) != STORE_OK)
        goto fail;
    if ((rc = store_exec_cmd(s, "COMMIT")) != STORE_OK)
        goto fail;
    return STORE_OK;

fail:
    store_rollback(s);
    return rc;
}
