/* Writing one checkpoint: the writer-epoch check, the checkpoint row (count deltas, pages,
 * chain hash), collector watermarks with fencing, batch records (COPY BINARY) and token
 * pages, in one transaction, recognised by hash when its COMMIT's answer was lost; and
 * compacting count deltas into tallies. Owns the SQL that writes; does not own retrying
 * (worker.c does) or what goes into a page (pages.c). */
#include "store/bin.h"
#include "store/copy.h"
#include "store/internal.h"

#include "core/crashpoint.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* COPY data goes out in chunks of about this size, so a large checkpoint never needs
 * all its encoded batches in memory at once. */
#define CP_COPY_CHUNK (1u << 20)

/* A statement's parameters: text values or binary values built in per-parameter buffers. */
#define CP_MAX_PARAMS 18
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
        /* A NULL value pointer is SQL NULL to libpq: an empty value needs a real one. */
        p->values[i] = p->bin[i].data ? (const char *)p->bin[i].data : "";
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
static int cp_validate(struct store *s, const struct store_prepared *pp)
{
    const struct store_checkpoint *cp = pp->cp;
    if (pp->id == 0 || pp->id > INT64_MAX) {
        store_set_error(s, "checkpoint id %" PRIu64 " out of range", pp->id);
        return -1;
    }
    for (size_t i = 0; i < cp->n_batches; i++) {
        const struct store_batch *b = &cp->batches[i];
        if (b->seq == 0 || b->seq > INT64_MAX || b->votes > INT32_MAX || b->accepted > INT32_MAX ||
            b->duplicate > INT32_MAX || b->rejected_unknown > INT32_MAX ||
            b->rejected_not_allowed > INT32_MAX) {
            store_set_error(s, "batch %s/%" PRIu64 ": a field is out of range", b->collector_id,
                            b->seq);
            return -1;
        }
    }
    for (size_t i = 0; i < cp->n_batches; i++) {
        const struct store_batch *b = &cp->batches[i];
        bool bad = b->sheets > INT32_MAX || b->sheets_accepted > INT32_MAX ||
                   b->sheets_duplicate > INT32_MAX;
        for (size_t k = 0; k < STORE_REASONS; k++)
            bad |= b->reasons[k] > INT32_MAX;
        for (size_t k = 0; k < b->n_tables; k++)
            bad |= b->tables[2 * k] >= cp->n_table_names || b->tables[2 * k + 1] > INT32_MAX;
        if (bad) {
            store_set_error(s,
                            "batch %s/%" PRIu64 ": a sheet, reason or table field is out of "
                            "range",
                            b->collector_id, b->seq);
            return -1;
        }
    }
    for (size_t i = 0; i < cp->n_table_deltas; i++) {
        if (cp->table_idx[i] >= cp->n_table_names) {
            store_set_error(s, "table delta %zu names no table", i);
            return -1;
        }
    }
    for (size_t i = 0; i < cp->n_sheets; i++) {
        const struct store_sheet *x = &cp->sheets[i];
        if (x->table >= cp->n_table_names || x->version == 0 || x->version > INT32_MAX ||
            x->blank > INT32_MAX || x->null_ballots > INT32_MAX || x->seq > INT64_MAX) {
            store_set_error(s, "sheet %zu of checkpoint %" PRIu64 ": a field is out of range", i,
                            pp->id);
            return -1;
        }
    }
    for (size_t i = 0; i < cp->n_corrections; i++) {
        const struct store_correction *x = &cp->corrections[i];
        if (x->table >= (int64_t)cp->n_table_names || x->from_version > INT32_MAX ||
            x->to_version > INT32_MAX || x->seq > INT64_MAX) {
            store_set_error(s, "correction %zu of checkpoint %" PRIu64 ": a field is out of range",
                            i, pp->id);
            return -1;
        }
    }
    for (size_t i = 0; i < cp->n_marks; i++) {
        const struct store_watermark *m = &cp->marks[i];
        if (m->prev_seq > INT64_MAX || m->durable_seq > INT64_MAX || m->batches > INT64_MAX ||
            m->votes > INT64_MAX || m->accepted > INT64_MAX || m->duplicate > INT64_MAX ||
            m->rejected > INT64_MAX || m->sheets > INT64_MAX || m->sheets_accepted > INT64_MAX ||
            m->sheets_duplicate > INT64_MAX || m->sheets_rejected > INT64_MAX) {
            store_set_error(s, "watermark for collector %s out of range", m->collector_id);
            return -1;
        }
    }
    return 0;
}

/* Checks the writer epoch (locking the writer row against a take-over until COMMIT) and
 * whether this checkpoint id is taken. Returns 1 when it holds this very checkpoint (the
 * answer to its COMMIT was lost), 0 when the id is free, or a store_result. */
static int cp_check(struct store *s, const struct store_prepared *pp)
{
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, pp->id);
    PGresult *res = PQexecParams(s->conn,
                                 "SELECT w.epoch, c.hash FROM writer w"
                                 " LEFT JOIN checkpoints c ON c.id = $1::int8 FOR SHARE OF w",
                                 p.n, p.types, p.values, p.lengths, p.formats, 1);
    int rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_classify(s, res, "checking the writer epoch");
        goto done;
    }
    if (PQntuples(res) != 1 || PQgetlength(res, 0, 0) != 8) {
        store_set_error(s, "the writer row is missing (run migrations)");
        rc = STORE_FATAL;
        goto done;
    }
    const unsigned char *e = (const unsigned char *)PQgetvalue(res, 0, 0);
    uint64_t epoch = 0;
    for (int i = 0; i < 8; i++)
        epoch = epoch << 8 | e[i];
    if (epoch != pp->epoch) {
        store_set_error(s,
                        "another tallyd took over as the writer: the database's writer epoch is "
                        "%" PRIu64 ", this tallyd's %" PRIu64,
                        epoch, pp->epoch);
        rc = STORE_FATAL;
        goto done;
    }
    if (PQgetisnull(res, 0, 1)) {
        rc = 0;
        goto done;
    }
    if (PQgetlength(res, 0, 1) == 32 && memcmp(PQgetvalue(res, 0, 1), pp->hash, 32) == 0) {
        rc = 1;
        goto done;
    }
    store_set_error(s,
                    "checkpoint %" PRIu64 " in the database is not the one this tallyd wrote "
                    "(its hash differs): another writer has written this record",
                    pp->id);
    rc = STORE_FATAL;
done:
    PQclear(res);
    cp_params_cleanup(&p);
    return rc;
}

/* Table names through an index array, for the text[] encoders. */
struct cp_names {
    const char *const *names;
    const uint32_t *idx; /* NULL: names in order */
};

static const char *cp_name_at(const void *arg, size_t i)
{
    const struct cp_names *n = arg;
    return n->names[n->idx ? n->idx[i] : i];
}

/* A batch's tables: the names of its (table index, ballots) pairs. */
struct cp_batch_tables {
    const char *const *names;
    const uint32_t *pairs;
};

static const char *cp_batch_table_at(const void *arg, size_t i)
{
    const struct cp_batch_tables *t = arg;
    return t->names[t->pairs[2 * i]];
}

static enum store_result cp_insert_row(struct store *s, const struct store_prepared *pp)
{
    const struct store_checkpoint *cp = pp->cp;
    uint64_t votes = 0, accepted = 0, duplicate = 0, rejected = 0;
    for (size_t i = 0; i < cp->n_batches; i++) {
        votes += cp->batches[i].votes;
        accepted += cp->batches[i].accepted;
        duplicate += cp->batches[i].duplicate;
        for (size_t k = 1; k < STORE_REASONS && cp->batches[i].kind == STORE_BATCH_BALLOTS; k++)
            rejected += cp->batches[i].reasons[k];
    }
    const struct store_page_plan *plan = pp->plan;
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, pp->id);
    cp_params_u64(&p, pp->epoch);
    cp_params_u64(&p, cp->n_batches);
    cp_params_u64(&p, votes);
    cp_params_u64(&p, accepted);
    cp_params_u64(&p, duplicate);
    cp_params_u64(&p, rejected);
    store_bin_array_int8_u32(cp_params_bin(&p, STORE_OID_INT8_ARRAY), pp->project_ids,
                             cp->n_deltas);
    store_bin_array_int8(cp_params_bin(&p, STORE_OID_INT8_ARRAY), pp->deltas, cp->n_deltas);
    struct store_bin *ids = cp_params_bin(&p, STORE_OID_INT8_ARRAY);
    int64_t *page_ids = xcalloc(plan->n_pages ? plan->n_pages : 1, sizeof(*page_ids));
    for (size_t i = 0; i < plan->n_pages; i++)
        page_ids[i] = (int64_t)plan->pages[i].id;
    store_bin_array_int8(ids, page_ids, plan->n_pages);
    free(page_ids);
    struct store_bin *dig = cp_params_bin(&p, STORE_OID_BYTEA);
    for (size_t i = 0; i < plan->n_pages; i++)
        store_bin_put(dig, plan->pages[i].digest, 32);
    store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), pp->prev_hash, 32);
    store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), pp->hash, 32);
    struct cp_names names = {cp->table_names, pp->table_idx};
    store_bin_array_text(cp_params_bin(&p, STORE_OID_TEXT_ARRAY), pp->n_table_deltas, cp_name_at,
                         &names);
    store_bin_array_int8(cp_params_bin(&p, STORE_OID_INT8_ARRAY), pp->table_deltas,
                         pp->n_table_deltas);
    store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), pp->merkle_root, 32);
    store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), pp->body_hash, 32);
    enum store_result rc = STORE_OK;
    PGresult *res = cp_exec(s,
                            "INSERT INTO checkpoints (id, epoch, batches, votes, accepted,"
                            " duplicate, rejected, delta_ids, delta_votes, page_ids, page_digests,"
                            " prev_hash, hash, table_ids, table_ballots, merkle_root, body_hash,"
                            " format)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                            " $14, $15, $16, $17, 3)",
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
static enum store_result cp_update_marks(struct store *s, const struct store_prepared *pp)
{
    const struct store_checkpoint *cp = pp->cp;
    static const char sql[] =
        "UPDATE collectors c SET durable_seq = m.new_seq,"
        " batches = c.batches + m.batches, votes = c.votes + m.votes,"
        " accepted = c.accepted + m.accepted, duplicate = c.duplicate + m.duplicate,"
        " rejected = c.rejected + m.rejected, last_checkpoint_id = $1,"
        " sheets = c.sheets + m.sheets, sheets_accepted = c.sheets_accepted + m.sheets_accepted,"
        " sheets_duplicate = c.sheets_duplicate + m.sheets_duplicate,"
        " sheets_rejected = c.sheets_rejected + m.sheets_rejected"
        " FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],"
        "             $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[])"
        "      AS m(id, prev_seq, new_seq, batches, votes, accepted, duplicate, rejected,"
        "           sheets, sheets_accepted, sheets_duplicate, sheets_rejected)"
        " WHERE c.id = m.id AND c.durable_seq = m.prev_seq"
        " RETURNING c.id";
    size_t n = cp->n_marks;
    int64_t *col = malloc((n ? n : 1) * sizeof(*col));
    if (!col)
        abort();
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, pp->id);
    store_bin_array_text(cp_params_bin(&p, STORE_OID_TEXT_ARRAY), n, cp_mark_id, cp->marks);
    for (int f = 0; f < 11; f++) {
        for (size_t i = 0; i < n; i++) {
            const struct store_watermark *m = &cp->marks[i];
            const uint64_t v[11] = {
                m->prev_seq,        m->durable_seq,      m->batches,        m->votes,
                m->accepted,        m->duplicate,        m->rejected,       m->sheets,
                m->sheets_accepted, m->sheets_duplicate, m->sheets_rejected};
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
                            pp->id);
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
static enum store_result cp_copy_end(struct store *s, const char *abort_msg, const char *what)
{
    enum store_result rc = STORE_OK;
    if (PQputCopyEnd(s->conn, abort_msg) != 1) {
        store_set_error(s, "ending COPY: %s", PQerrorMessage(s->conn));
        rc = STORE_RETRY;
    }
    PGresult *res;
    while ((res = PQgetResult(s->conn)) != NULL) {
        if (rc == STORE_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = store_classify(s, res, what);
        PQclear(res);
    }
    return rc;
}

/* Appends row i of a COPY to b. */
typedef void (*cp_row_fn)(struct store_bin *b, const struct store_prepared *pp, size_t i);

/* n rows of the prepared checkpoint, row(b, pp, i) each, as store_copy_in takes them. */
struct cp_rows {
    const struct store_prepared *pp;
    size_t i, n;
    cp_row_fn row;
};

static int cp_rows_next(void *arg, struct store_bin *b, const char **abort_msg)
{
    (void)abort_msg;
    struct cp_rows *r = arg;
    if (r->i == r->n)
        return 0;
    r->row(b, r->pp, r->i++);
    return 1;
}

static enum store_result cp_copy_rows(struct store *s, const struct store_prepared *pp,
                                      const char *sql, const char *what, size_t n, cp_row_fn row)
{
    struct cp_rows r = {pp, 0, n, row};
    return store_copy_in(s, sql, what, cp_rows_next, &r);
}

static void cp_batch_row(struct store_bin *b, const struct store_prepared *pp, size_t i)
{
    const struct store_checkpoint *cp = pp->cp;
    const struct store_batch *x = &cp->batches[i];
    store_bin_copy_tuple(b, 17);
    store_bin_field_text(b, x->collector_id);
    store_bin_field_int8(b, (int64_t)x->seq);
    store_bin_field_int8(b, (int64_t)pp->id);
    store_bin_field_int4(b, (int32_t)x->votes);
    store_bin_field_int4(b, (int32_t)x->accepted);
    store_bin_field_int4(b, (int32_t)x->duplicate);
    store_bin_field_int4(b, (int32_t)x->rejected_unknown);
    store_bin_field_bytes(b, x->digest, 32);
    store_bin_field_int4(b, (int32_t)x->rejected_not_allowed);
    store_bin_field_text(b, x->kind == STORE_BATCH_SHEETS ? "sheets" : "ballots");
    store_bin_field_int4_array_u32(b, &x->reasons[1], STORE_REASONS - 1);
    store_bin_field_int4(b, (int32_t)x->sheets);
    store_bin_field_int4(b, (int32_t)x->sheets_accepted);
    store_bin_field_int4(b, (int32_t)x->sheets_duplicate);
    if (pp->has_counts[i])
        store_bin_field_bytes(b, pp->counts ? pp->counts + pp->counts_off[i] : NULL,
                              pp->counts_len[i]);
    else
        store_bin_field_null(b);
    struct cp_batch_tables bt = {cp->table_names, x->tables};
    store_bin_field_text_array(b, x->n_tables, cp_batch_table_at, &bt);
    store_bin_field_int4_array_strided(b, x->tables ? x->tables + 1 : NULL, x->n_tables, 2);
    TALLY_CRASH_POINT_IF("mid_checkpoint", i == cp->n_batches / 2);
}

static enum store_result cp_copy_batches(struct store *s, const struct store_prepared *pp)
{
    return cp_copy_rows(s, pp,
                        "COPY batches (collector_id, seq, checkpoint_id, votes, accepted,"
                        " duplicate, rejected_unknown, digest, rejected_not_allowed, kind,"
                        " rejected_by_reason, sheets, sheets_accepted, sheets_duplicate, counts,"
                        " table_ids, table_ballots) FROM STDIN (FORMAT binary)",
                        "writing batch rows", pp->cp->n_batches, cp_batch_row);
}

static void cp_sheet_row(struct store_bin *b, const struct store_prepared *pp, size_t i)
{
    const struct store_checkpoint *cp = pp->cp;
    const struct store_sheet *x = &cp->sheets[i];
    store_bin_copy_tuple(b, 10);
    store_bin_field_text(b, cp->table_names[x->table]);
    store_bin_field_int4(b, (int32_t)x->version);
    store_bin_field_int8(b, (int64_t)pp->id);
    store_bin_field_text(b, x->collector_id);
    store_bin_field_int8(b, (int64_t)x->seq);
    store_bin_field_bytes(b, x->digest, 32);
    store_bin_field_int8_array_strided(b, x->rows, x->n_rows, 2);
    store_bin_field_int8_array_strided(b, x->rows ? x->rows + 1 : NULL, x->n_rows, 2);
    store_bin_field_int4(b, (int32_t)x->blank);
    store_bin_field_int4(b, (int32_t)x->null_ballots);
}

static enum store_result cp_copy_sheets(struct store *s, const struct store_prepared *pp)
{
    return cp_copy_rows(s, pp,
                        "COPY sheets (table_id, version, checkpoint_id, collector_id, seq,"
                        " digest, project_ids, votes, blank, null_ballots)"
                        " FROM STDIN (FORMAT binary)",
                        "writing tally sheets", pp->cp->n_sheets, cp_sheet_row);
}

/* PostgreSQL's timestamptz counts microseconds from 2000-01-01 UTC. */
#define CP_PG_EPOCH_US 946684800000000LL

static void cp_correction_row(struct store_bin *b, const struct store_prepared *pp, size_t i)
{
    const struct store_checkpoint *cp = pp->cp;
    const struct store_correction *x = &cp->corrections[i];
    store_bin_copy_tuple(b, 16);
    store_bin_field_int8(b, (int64_t)(pp->first_correction_id + i));
    store_bin_field_int8(b, (int64_t)pp->id);
    store_bin_field_text(b, x->kind == STORE_CORRECTION_RETRACT ? "retract" : "sheet");
    store_bin_field_text(b, x->actor);
    store_bin_field_text(b, x->reason);
    store_bin_field_int8(b, x->at_us - CP_PG_EPOCH_US);
    if (x->table >= 0)
        store_bin_field_text(b, cp->table_names[x->table]);
    else
        store_bin_field_null(b);
    if (x->collector_id) {
        store_bin_field_text(b, x->collector_id);
        store_bin_field_int8(b, (int64_t)x->seq);
    } else {
        store_bin_field_null(b);
        store_bin_field_null(b);
    }
    if (x->kind == STORE_CORRECTION_SHEET) {
        store_bin_field_int4(b, (int32_t)x->from_version);
        store_bin_field_int4(b, (int32_t)x->to_version);
    } else {
        store_bin_field_null(b);
        store_bin_field_null(b);
    }
    store_bin_field_int8_array_u32(b, x->project_ids, x->n_deltas);
    store_bin_field_int8_array(b, x->deltas, x->n_deltas);
    store_bin_field_int8(b, x->blank_delta);
    store_bin_field_int8(b, x->null_delta);
    store_bin_field_int8(b, x->ballots_delta);
}

static enum store_result cp_copy_corrections(struct store *s, const struct store_prepared *pp)
{
    return cp_copy_rows(s, pp,
                        "COPY corrections (id, checkpoint_id, kind, actor, reason, at, table_id,"
                        " collector_id, seq, from_version, to_version, project_ids, deltas,"
                        " blank_delta, null_delta, ballots_delta) FROM STDIN (FORMAT binary)",
                        "writing corrections", pp->cp->n_corrections, cp_correction_row);
}

static const char *cp_done_outcome(const void *arg, size_t i)
{
    return ((const struct store_request_done *)arg)[i].outcome;
}

/* Completes the requests this checkpoint carries (applied ones name it), and the state the
 * events change. Only rows not completed before: a request completed twice means another
 * writer, as a watermark that did not move does. */
static enum store_result cp_write_requests(struct store *s, const struct store_prepared *pp)
{
    const struct store_checkpoint *cp = pp->cp;
    enum store_result rc = STORE_OK;
    if (cp->n_done) {
        struct cp_params p;
        cp_params_init(&p);
        cp_params_u64(&p, pp->id);
        int64_t *col = xcalloc(cp->n_done, sizeof(*col));
        for (size_t i = 0; i < cp->n_done; i++)
            col[i] = (int64_t)cp->done[i].id;
        store_bin_array_int8(cp_params_bin(&p, STORE_OID_INT8_ARRAY), col, cp->n_done);
        for (size_t i = 0; i < cp->n_done; i++)
            col[i] = cp->done[i].at_us;
        store_bin_array_int8(cp_params_bin(&p, STORE_OID_INT8_ARRAY), col, cp->n_done);
        free(col);
        store_bin_array_text(cp_params_bin(&p, STORE_OID_TEXT_ARRAY), cp->n_done, cp_done_outcome,
                             cp->done);
        PGresult *res = cp_exec(
            s,
            "UPDATE requests r SET done_at = timestamptz 'epoch' + d.at * interval '1 microsecond',"
            " checkpoint_id = CASE WHEN d.outcome = 'applied' THEN $1::int8 END,"
            " outcome = d.outcome"
            " FROM unnest($2::int8[], $3::int8[], $4::text[]) AS d(id, at, outcome)"
            " WHERE r.id = d.id AND r.done_at IS NULL",
            &p);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = store_classify(s, res, "completing requests");
        else if (strtoull(PQcmdTuples(res), NULL, 10) != cp->n_done) {
            store_set_error(s,
                            "a request checkpoint %" PRIu64 " completes was completed already: "
                            "another writer has written this record",
                            pp->id);
            rc = STORE_FATAL;
        }
        PQclear(res);
        cp_params_cleanup(&p);
    }
    for (size_t i = 0; i < cp->n_events && rc == STORE_OK; i++) {
        const struct store_event *e = &cp->events[i];
        struct cp_params p;
        cp_params_init(&p);
        cp_params_u64(&p, pp->id);
        PGresult *res;
        if (e->kind == STORE_EVENT_CLOSE) {
            cp_params_u64(&p, (uint64_t)e->at_us);
            res = cp_exec(s,
                          "UPDATE consultation_state SET closed_checkpoint_id = $1,"
                          " closed_at = timestamptz 'epoch' + $2::int8 * interval '1 microsecond'"
                          " WHERE closed_at IS NULL",
                          &p);
        } else {
            store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), e->seed, e->seed_len);
            store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), e->seed_hash, sizeof(e->seed_hash));
            res = cp_exec(s,
                          "UPDATE consultation_state SET tie_rule = 'lot', tie_seed = $2,"
                          " tie_seed_hash = $3 WHERE tie_rule IS NULL AND $1::int8 > 0",
                          &p);
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = store_classify(s, res, "writing the consultation's state");
        else if (strcmp(PQcmdTuples(res), "1") != 0) {
            store_set_error(s, "the consultation is closed or has a tie rule already: another "
                               "writer has written this record");
            rc = STORE_FATAL;
        }
        PQclear(res);
        cp_params_cleanup(&p);
    }
    return rc;
}

/* Writes the planned pages: the newest existing page rewritten in place when the plan
 * merged into it, new ones streamed by COPY (a bytea[] parameter of a large checkpoint's
 * tokens made the backend allocate, and the kernel zero, tens of MiB each time). */
static enum store_result cp_write_pages(struct store *s, const struct store_page_plan *plan)
{
    enum store_result rc = STORE_OK;
    size_t first = 0;
    if (plan->rewrites_first) {
        const struct store_page_out *o = &plan->pages[0];
        struct cp_params p;
        cp_params_init(&p);
        cp_params_u64(&p, o->id);
        store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), o->salt, sizeof(o->salt));
        store_bin_put(cp_params_bin(&p, STORE_OID_BYTEA), plan->le + 8 * o->off, 8 * o->n);
        PGresult *res =
            cp_exec(s, "UPDATE token_pages SET salt = $2, tokens = $3 WHERE id = $1", &p);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = store_classify(s, res, "rewriting the newest token page");
        else if (strcmp(PQcmdTuples(res), "1") != 0) {
            store_set_error(s, "token page %" PRIu64 " is missing from the database", o->id);
            rc = STORE_FATAL;
        }
        PQclear(res);
        cp_params_cleanup(&p);
        TALLY_CRASH_POINT_IF("token_page_open", rc == STORE_OK);
        first = 1;
    }
    if (rc != STORE_OK || first == plan->n_pages)
        return rc;

    PGresult *res =
        PQexec(s->conn, "COPY token_pages (id, salt, tokens) FROM STDIN (FORMAT binary)");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rc = store_classify(s, res, "starting COPY token_pages");
        PQclear(res);
        return rc;
    }
    PQclear(res);
    struct store_bin b;
    store_bin_init(&b);
    store_bin_copy_header(&b);
    for (size_t i = first; i < plan->n_pages && rc == STORE_OK; i++) {
        const struct store_page_out *o = &plan->pages[i];
        store_bin_copy_tuple(&b, 3);
        store_bin_field_int8(&b, (int64_t)o->id);
        store_bin_field_bytes(&b, o->salt, sizeof(o->salt));
        /* Large pages go straight from the plan, not through the buffer. */
        store_bin_be32(&b, (uint32_t)(8 * o->n));
        rc = cp_copy_flush(s, &b);
        if (rc == STORE_OK &&
            PQputCopyData(s->conn, (const char *)plan->le + 8 * o->off, (int)(8 * o->n)) != 1) {
            store_set_error(s, "sending token pages: %s", PQerrorMessage(s->conn));
            rc = STORE_RETRY;
        }
    }
    if (rc == STORE_OK) {
        store_bin_copy_trailer(&b);
        rc = cp_copy_flush(s, &b);
    }
    enum store_result end =
        cp_copy_end(s, rc == STORE_OK ? NULL : "aborted by tallyd", "writing token pages");
    if (rc == STORE_OK)
        rc = end;
    store_bin_cleanup(&b);
    return rc;
}

static double cp_ms_since(struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - t->tv_sec) * 1e3 + (double)(now.tv_nsec - t->tv_nsec) / 1e6;
    *t = now;
    return ms;
}

enum store_result store_checkpoint_write(struct store *s, const struct store_prepared *pp)
{
    const struct store_checkpoint *cp = pp->cp;
    enum store_result rc;
    struct timespec t;
    double ms[5];
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (cp_validate(s, pp) < 0) {
        rc = STORE_FATAL;
        goto fail;
    }
    if ((rc = store_exec_cmd(s, "BEGIN")) != STORE_OK)
        goto fail;
    int done = cp_check(s, pp);
    if (done < 0) {
        rc = (enum store_result)done;
        goto fail;
    }
    if (done == 1) {
        store_rollback(s);
        log_info("store: checkpoint %" PRIu64 " was already committed with the same hash (the "
                 "answer to its COMMIT was lost); not written again",
                 pp->id);
        return STORE_OK;
    }
    ms[0] = cp_ms_since(&t);
    if ((rc = cp_insert_row(s, pp)) != STORE_OK)
        goto fail;
    ms[1] = cp_ms_since(&t);
    /* Watermarks before batch rows: a second writer then fails on the fence, with a
     * message that says so, rather than on a duplicate batch key. */
    if (cp->n_marks && (rc = cp_update_marks(s, pp)) != STORE_OK)
        goto fail;
    if (cp->n_batches && (rc = cp_copy_batches(s, pp)) != STORE_OK)
        goto fail;
    if (cp->n_sheets && (rc = cp_copy_sheets(s, pp)) != STORE_OK)
        goto fail;
    if (cp->n_corrections && (rc = cp_copy_corrections(s, pp)) != STORE_OK)
        goto fail;
    if ((cp->n_done || cp->n_events) && (rc = cp_write_requests(s, pp)) != STORE_OK)
        goto fail;
    ms[2] = cp_ms_since(&t);
    if (pp->plan->n_pages && (rc = cp_write_pages(s, pp->plan)) != STORE_OK)
        goto fail;
    ms[3] = cp_ms_since(&t);
    TALLY_CRASH_POINT("before_commit");
    if ((rc = store_exec_cmd(s, "COMMIT")) != STORE_OK)
        goto fail;
    ms[4] = cp_ms_since(&t);
    log_debug("store: checkpoint %" PRIu64 ": %zu batches, %zu tokens in %zu pages, %zu deltas;"
              " ms: check %.1f row %.1f batches %.1f pages %.1f commit %.1f",
              pp->id, cp->n_batches, cp->n_tokens, pp->plan->n_pages, cp->n_deltas, ms[0], ms[1],
              ms[2], ms[3], ms[4]);
    return STORE_OK;

fail:
    store_rollback(s);
    return rc;
}

enum store_result store_compact(struct store *s, uint64_t epoch, uint64_t from, uint64_t to)
{
    /* An upsert, not a plain UPDATE: a project without its tallies row still counts. */
    static const char fold[] =
        "INSERT INTO tallies (project_id, votes)"
        " SELECT u.id, sum(u.n) FROM checkpoints c"
        " CROSS JOIN LATERAL unnest(c.delta_ids, c.delta_votes) AS u(id, n)"
        " WHERE c.id > $1 AND c.id <= $2 GROUP BY u.id"
        " ON CONFLICT (project_id) DO UPDATE SET votes = tallies.votes + excluded.votes";
    enum store_result rc;
    struct cp_params p;
    cp_params_init(&p);
    cp_params_u64(&p, from);
    cp_params_u64(&p, to);
    cp_params_u64(&p, epoch);
    PGresult *res = NULL;
    if ((rc = store_exec_cmd(s, "BEGIN")) != STORE_OK)
        goto fail;
    res = cp_exec(s,
                  "UPDATE tally_compaction SET through = $2 WHERE through = $1"
                  " AND (SELECT epoch FROM writer FOR SHARE) = $3",
                  &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = store_classify(s, res, "moving the compaction mark");
        goto fail;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        store_set_error(s, "compaction: the mark moved or the writer changed");
        rc = STORE_FATAL;
        goto fail;
    }
    PQclear(res);
    p.n = 2;
    res = cp_exec(s, fold, &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = store_classify(s, res, "compacting tallies");
        goto fail;
    }
    PQclear(res);
    res = NULL;
    if ((rc = store_exec_cmd(s, "COMMIT")) != STORE_OK)
        goto fail;
    cp_params_cleanup(&p);
    return STORE_OK;
fail:
    PQclear(res);
    store_rollback(s);
    cp_params_cleanup(&p);
    return rc;
}
