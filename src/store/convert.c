/* Conversion of a version-3 record, whose batch rows each held their accepted tokens
 * beside their per-project counts, into the current one: a count delta per checkpoint,
 * token pages apart from every count, and the hash chain (docs/record.md). Runs inside
 * migration 4's transaction, called by migrate.c; owns no schema (004 and 005 do). An
 * old record that disagrees with itself is refused, never converted into a chain that
 * would vouch for it. */
#include "store/convert.h"

#include "store/bin.h"
#include "store/chain.h"
#include "store/cursor.h"
#include "store/internal.h"

#include "core/log.h"
#include "core/xalloc.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CV_PAGE_MAX STORE_PAGE_MAX_TOKENS /* tokens per converted page, at most, as written */
#define CV_FETCH 256   /* batch rows per FETCH: each carries up to tens of KiB of tokens */
#define CV_LOG_MS 5000 /* progress lines in the log, at most this often */

struct cv_checkpoint {
    uint64_t id;
    int64_t batches, votes, accepted;
};

struct cv_pair {
    uint32_t project;
    uint64_t n;
};

struct cv_batch {
    size_t id_off; /* collector id in cv.pool */
    uint64_t seq;
    uint32_t votes, accepted, duplicate, rejected;
};

struct cv {
    struct store *s;
    struct cv_checkpoint *cps;
    size_t n_cps;
    uint32_t *projects; /* ascending */
    uint64_t *sums;     /* converted votes per project, same order */
    size_t n_projects;
    uint64_t *tokens; /* every old token; sorted once all are read */
    size_t n_tokens, cap_tokens;

    /* The checkpoint being gathered. */
    struct cv_batch *batches;
    size_t n_batches, cap_batches;
    char *pool;
    size_t n_pool, cap_pool;
    struct cv_pair *pairs;
    size_t n_pairs, cap_pairs;
    uint64_t votes, accepted, duplicate, rejected;

    int64_t *ids, *counts; /* decoding buffers */
    size_t cap_ids, cap_counts;
    uint8_t prev[STORE_HASH_BYTES];
    int64_t next_log_ms;
};

static int64_t cv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct cv_pair *x = a, *y = b;
    return x->project < y->project ? -1 : x->project > y->project;
}

/* Index of project id in the ascending list, or -1. */
static ptrdiff_t cv_project_index(const struct cv *cv, uint32_t id)
{
    size_t lo = 0, hi = cv->n_projects;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cv->projects[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < cv->n_projects && cv->projects[lo] == id ? (ptrdiff_t)lo : -1;
}

static int cv_read_checkpoints(struct cv *cv)
{
    PGresult *res = store_query_rows(cv->s,
                                     "SELECT id, batches, votes, accepted FROM checkpoints"
                                     " ORDER BY id",
                                     "converting: reading checkpoints");
    if (!res)
        return -1;
    int rc = -1;
    cv->n_cps = (size_t)PQntuples(res);
    cv->cps = xcalloc(cv->n_cps, sizeof(*cv->cps));
    for (size_t i = 0; i < cv->n_cps; i++) {
        struct cv_checkpoint *c = &cv->cps[i];
        uint64_t v[4];
        for (int k = 0; k < 4; k++) {
            if (store_parse_u64(PQgetvalue(res, (int)i, k), INT64_MAX, &v[k]) < 0) {
                store_set_error(cv->s, "converting: checkpoint row %zu has a negative field", i);
                goto done;
            }
        }
        c->id = v[0];
        c->batches = (int64_t)v[1];
        c->votes = (int64_t)v[2];
        c->accepted = (int64_t)v[3];
        /* The hash chain makes ids chain positions: the old writer numbered them so. */
        if (c->id != i + 1) {
            store_set_error(cv->s,
                            "converting: checkpoint ids must run 1, 2, 3...; found %" PRIu64
                            " where %zu belongs",
                            c->id, i + 1);
            goto done;
        }
    }
    rc = 0;
done:
    PQclear(res);
    return rc;
}

static int cv_read_projects(struct cv *cv)
{
    PGresult *res = store_query_rows(cv->s, "SELECT id FROM projects ORDER BY id",
                                     "converting: reading projects");
    if (!res)
        return -1;
    cv->n_projects = (size_t)PQntuples(res);
    cv->projects = xcalloc(cv->n_projects, sizeof(*cv->projects));
    cv->sums = xcalloc(cv->n_projects, sizeof(*cv->sums));
    for (size_t i = 0; i < cv->n_projects; i++) {
        uint64_t id = 0;
        /* projects.id has CHECK (id BETWEEN 0 AND 4294967295). */
        store_parse_u64(PQgetvalue(res, (int)i, 0), UINT32_MAX, &id);
        cv->projects[i] = (uint32_t)id;
    }
    PQclear(res);
    return 0;
}

/* A field of an old int column (the old schema's votes/accepted/... are int4). */
static int cv_u32(const PGresult *r, int row, int col, uint32_t *out)
{
    int64_t v;
    if (store_val_int8(r, row, col, &v) < 0 || v < 0 || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Adds one old batch row (the cursor's current row) to the checkpoint being gathered. */
static int cv_add_batch(struct cv *cv, const PGresult *r, int row)
{
    size_t id_len;
    const uint8_t *id = store_val_bytes(r, row, 1, &id_len);
    int64_t seq = 0;
    if (!id || store_val_int8(r, row, 2, &seq) < 0) {
        store_set_error(cv->s, "converting: a batch row has no collector or seq");
        return -1;
    }
    char who[96];
    snprintf(who, sizeof(who), "%.*s/%" PRId64, (int)(id_len < 64 ? id_len : 64), (const char *)id,
             seq);

    if (cv->n_batches == cv->cap_batches) {
        cv->cap_batches = cv->cap_batches ? 2 * cv->cap_batches : 64;
        cv->batches = xreallocarray(cv->batches, cv->cap_batches, sizeof(*cv->batches));
    }
    struct cv_batch *b = &cv->batches[cv->n_batches];
    b->seq = (uint64_t)seq;
    if (cv_u32(r, row, 3, &b->votes) < 0 || cv_u32(r, row, 4, &b->accepted) < 0 ||
        cv_u32(r, row, 5, &b->duplicate) < 0 || cv_u32(r, row, 6, &b->rejected) < 0) {
        store_set_error(cv->s, "converting: batch %s has a negative figure", who);
        return -1;
    }
    if (cv->n_pool + id_len + 1 > cv->cap_pool) {
        cv->cap_pool = 2 * (cv->n_pool + id_len + 1);
        cv->pool = xreallocarray(cv->pool, cv->cap_pool, 1);
    }
    b->id_off = cv->n_pool;
    memcpy(cv->pool + cv->n_pool, id, id_len);
    cv->pool[cv->n_pool + id_len] = '\0';
    cv->n_pool += id_len + 1;

    size_t tok_len;
    const uint8_t *tok = store_val_bytes(r, row, 7, &tok_len);
    size_t n_ids, n_counts;
    if (!tok || tok_len % 8 != 0 ||
        store_val_int8_array(r, row, 8, &cv->ids, &cv->cap_ids, &n_ids) < 0 ||
        store_val_int8_array(r, row, 9, &cv->counts, &cv->cap_counts, &n_counts) < 0 ||
        n_ids != n_counts) {
        store_set_error(cv->s, "converting: batch %s has malformed tokens or counts", who);
        return -1;
    }
    size_t n_tok = tok_len / 8;
    /* Each accepted vote left one token and one count: anything else is a record that
     * disagrees with itself, and the pages would not add up to the deltas. */
    if (n_tok != b->accepted) {
        store_set_error(cv->s,
                        "converting: batch %s accepted %" PRIu32 " votes but holds %zu tokens", who,
                        b->accepted, n_tok);
        return -1;
    }
    uint64_t counted = 0;
    if (cv->n_pairs + n_ids > cv->cap_pairs) {
        cv->cap_pairs = 2 * (cv->n_pairs + n_ids);
        cv->pairs = xreallocarray(cv->pairs, cv->cap_pairs, sizeof(*cv->pairs));
    }
    for (size_t i = 0; i < n_ids; i++) {
        if (cv->ids[i] < 0 || cv->ids[i] > UINT32_MAX || cv->counts[i] < 0) {
            store_set_error(cv->s, "converting: batch %s has a project id or count out of range",
                            who);
            return -1;
        }
        if (cv_project_index(cv, (uint32_t)cv->ids[i]) < 0) {
            store_set_error(cv->s,
                            "converting: batch %s counts votes for project %" PRId64
                            ", which is not in projects",
                            who, cv->ids[i]);
            return -1;
        }
        cv->pairs[cv->n_pairs].project = (uint32_t)cv->ids[i];
        cv->pairs[cv->n_pairs].n = (uint64_t)cv->counts[i];
        cv->n_pairs++;
        counted += (uint64_t)cv->counts[i];
    }
    if (counted != b->accepted) {
        store_set_error(
            cv->s, "converting: batch %s accepted %" PRIu32 " votes but its counts sum to %" PRIu64,
            who, b->accepted, counted);
        return -1;
    }

    if (cv->n_tokens + n_tok > cv->cap_tokens) {
        size_t cap = cv->cap_tokens ? cv->cap_tokens : 1024;
        while (cap < cv->n_tokens + n_tok)
            cap *= 2;
        cv->tokens = xreallocarray(cv->tokens, cap, sizeof(*cv->tokens));
        cv->cap_tokens = cap;
    }
    for (size_t i = 0; i < n_tok; i++)
        cv->tokens[cv->n_tokens + i] = le64_get(tok + 8 * i);
    cv->n_tokens += n_tok;

    cv->votes += b->votes;
    cv->accepted += b->accepted;
    cv->duplicate += b->duplicate;
    cv->rejected += b->rejected;
    cv->n_batches++;
    return 0;
}

/* Writes checkpoint c's converted columns: its deltas (from the gathered pairs), its
 * duplicate and rejected sums, the pages it lists, and its place in the chain. */
static int cv_finish_checkpoint(struct cv *cv, const struct cv_checkpoint *c,
                                const struct store_chain_page *pages, size_t n_pages)
{
    struct store *s = cv->s;
    int rc = -1;
    struct store_chain_batch *cb = NULL;
    uint32_t *d_ids = NULL;
    uint64_t *d_votes = NULL;
    int64_t *d_ids64 = NULL, *p_ids64 = NULL;
    uint8_t *p_digests = NULL;
    struct store_bin b_ids, b_votes, b_pages;
    store_bin_init(&b_ids);
    store_bin_init(&b_votes);
    store_bin_init(&b_pages);

    if ((uint64_t)c->batches != cv->n_batches || (uint64_t)c->votes != cv->votes ||
        (uint64_t)c->accepted != cv->accepted) {
        store_set_error(
            s,
            "converting: checkpoint %" PRIu64 " lists %" PRId64 " batches, %" PRId64
            " votes and %" PRId64 " accepted; its batch rows hold %zu, %" PRIu64 " and %" PRIu64,
            c->id, c->batches, c->votes, c->accepted, cv->n_batches, cv->votes, cv->accepted);
        goto done;
    }

    /* The checkpoint's delta: its batches' counts summed per project, ascending. */
    if (cv->n_pairs > 1)
        qsort(cv->pairs, cv->n_pairs, sizeof(*cv->pairs), cmp_pair);
    d_ids = xcalloc(cv->n_pairs, sizeof(*d_ids));
    d_votes = xcalloc(cv->n_pairs, sizeof(*d_votes));
    d_ids64 = xcalloc(cv->n_pairs, sizeof(*d_ids64));
    size_t n_d = 0;
    for (size_t i = 0; i < cv->n_pairs;) {
        uint32_t p = cv->pairs[i].project;
        uint64_t n = 0;
        for (; i < cv->n_pairs && cv->pairs[i].project == p; i++)
            n += cv->pairs[i].n;
        if (n == 0)
            continue;
        d_ids[n_d] = p;
        d_votes[n_d] = n;
        d_ids64[n_d] = p;
        n_d++;
        cv->sums[cv_project_index(cv, p)] += n;
    }

    cb = xcalloc(cv->n_batches, sizeof(*cb));
    for (size_t i = 0; i < cv->n_batches; i++) {
        const struct cv_batch *x = &cv->batches[i];
        /* Before migration 6 no vote was rejected as not allowed: v1, as written then. */
        cb[i] = (struct store_chain_batch){.collector_id = cv->pool + x->id_off,
                                           .seq = x->seq,
                                           .votes = x->votes,
                                           .accepted = x->accepted,
                                           .duplicate = x->duplicate,
                                           .rejected_unknown = x->rejected};
    }
    struct store_chain_input in = {
        .prev_hash = cv->prev,
        .id = c->id,
        .epoch = 0,
        .batches = cb,
        .n_batches = cv->n_batches,
        .project_ids = d_ids,
        .votes = d_votes,
        .n_deltas = n_d,
        .pages = pages,
        .n_pages = n_pages,
    };
    uint8_t hash[STORE_HASH_BYTES];
    store_chain_hash(&in, hash);

    p_ids64 = xcalloc(n_pages, sizeof(*p_ids64));
    p_digests = xcalloc(n_pages, STORE_HASH_BYTES);
    for (size_t i = 0; i < n_pages; i++) {
        p_ids64[i] = (int64_t)pages[i].id;
        memcpy(p_digests + STORE_HASH_BYTES * i, pages[i].digest, STORE_HASH_BYTES);
    }
    /* Sums of uint32 counts over at most 2^31 batches fit int64. */
    store_bin_array_int8(&b_ids, d_ids64, n_d);
    store_bin_array_int8(&b_votes, (const int64_t *)d_votes, n_d);
    store_bin_array_int8(&b_pages, p_ids64, n_pages);

    char t_id[24], t_dup[24], t_rej[24];
    snprintf(t_id, sizeof(t_id), "%" PRIu64, c->id);
    snprintf(t_dup, sizeof(t_dup), "%" PRIu64, cv->duplicate);
    snprintf(t_rej, sizeof(t_rej), "%" PRIu64, cv->rejected);
    const Oid types[9] = {STORE_OID_INT8,       STORE_OID_INT8,       STORE_OID_INT8,
                          STORE_OID_INT8_ARRAY, STORE_OID_INT8_ARRAY, STORE_OID_INT8_ARRAY,
                          STORE_OID_BYTEA,      STORE_OID_BYTEA,      STORE_OID_BYTEA};
    const char *values[9] = {t_id,
                             t_dup,
                             t_rej,
                             (const char *)b_ids.data,
                             (const char *)b_votes.data,
                             (const char *)b_pages.data,
                             (const char *)p_digests,
                             (const char *)cv->prev,
                             (const char *)hash};
    const int lengths[9] = {0,
                            0,
                            0,
                            (int)b_ids.len,
                            (int)b_votes.len,
                            (int)b_pages.len,
                            (int)(STORE_HASH_BYTES * n_pages),
                            STORE_HASH_BYTES,
                            STORE_HASH_BYTES};
    const int formats[9] = {0, 0, 0, 1, 1, 1, 1, 1, 1};
    PGresult *res = PQexecParams(s->conn,
                                 "UPDATE checkpoints SET epoch = 0, duplicate = $2, rejected = $3,"
                                 " delta_ids = $4, delta_votes = $5, page_ids = $6,"
                                 " page_digests = $7, prev_hash = $8, hash = $9 WHERE id = $1",
                                 9, types, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        store_classify(s, res, "converting: writing a checkpoint's chain");
        PQclear(res);
        goto done;
    }
    PQclear(res);
    memcpy(cv->prev, hash, STORE_HASH_BYTES);

    cv->n_batches = cv->n_pool = cv->n_pairs = 0;
    cv->votes = cv->accepted = cv->duplicate = cv->rejected = 0;
    rc = 0;
done:
    store_bin_cleanup(&b_pages);
    store_bin_cleanup(&b_votes);
    store_bin_cleanup(&b_ids);
    free(p_digests);
    free(p_ids64);
    free(cb);
    free(d_ids64);
    free(d_votes);
    free(d_ids);
    return rc;
}

/* Streams the old batch rows in checkpoint order, converting every checkpoint but the
 * last, which must wait for the token pages it will list. */
static int cv_stream_batches(struct cv *cv)
{
    struct store_cursor cur;
    if (store_cursor_open(cv->s, &cur, "convert_batches",
                          "SELECT checkpoint_id, collector_id, seq, votes::int8, accepted::int8,"
                          " duplicate::int8, rejected_unknown::int8, tokens, project_ids::int8[],"
                          " counts::int8[] FROM batches"
                          " ORDER BY checkpoint_id, collector_id COLLATE \"C\", seq",
                          CV_FETCH, "converting: reading batches") < 0)
        return -1;
    int rc = -1;
    int got = store_cursor_next(cv->s, &cur, "converting: reading batches");
    for (size_t i = 0; i < cv->n_cps; i++) {
        const struct cv_checkpoint *c = &cv->cps[i];
        for (; got == 1; got = store_cursor_next(cv->s, &cur, "converting: reading batches")) {
            int64_t cp;
            if (store_val_int8(cur.res, cur.row, 0, &cp) < 0 || cp < (int64_t)c->id)
                break;
            if (cp > (int64_t)c->id)
                break;
            if (cv_add_batch(cv, cur.res, cur.row) < 0)
                goto done;
        }
        if (got < 0)
            goto done;
        if (got == 1) {
            int64_t cp = -1;
            store_val_int8(cur.res, cur.row, 0, &cp);
            if (cp < (int64_t)c->id) {
                /* Rows come in checkpoint order and the foreign key holds: unreachable
                 * unless the database lies. */
                store_set_error(cv->s, "converting: a batch row names checkpoint %" PRId64, cp);
                goto done;
            }
        }
        if (i + 1 < cv->n_cps && cv_finish_checkpoint(cv, c, NULL, 0) < 0)
            goto done;
        int64_t now = cv_now_ms();
        if (now >= cv->next_log_ms) {
            log_info("store: converting the record: checkpoint %" PRIu64 " of %zu, %zu tokens",
                     c->id, cv->n_cps, cv->n_tokens);
            cv->next_log_ms = now + CV_LOG_MS;
        }
    }
    if (got == 1) {
        store_set_error(cv->s, "converting: batch rows name checkpoints past the last one");
        goto done;
    }
    rc = got < 0 ? -1 : 0;
done:
    store_cursor_close(cv->s, &cur);
    return rc;
}

/* Sorts every old token, cuts them into pages of near-equal size (at most CV_PAGE_MAX;
 * none below 100 unless there are fewer tokens than that, since one page is made when
 * they fit), and inserts the pages with fresh salts. Fills pages/n_pages. */
static int cv_write_pages(struct cv *cv, struct store_chain_page **pages_out, size_t *n_out)
{
    struct store *s = cv->s;
    size_t n = cv->n_tokens;
    *pages_out = NULL;
    *n_out = 0;
    if (n > 1)
        qsort(cv->tokens, n, sizeof(*cv->tokens), cmp_u64);
    size_t distinct = n ? 1 : 0;
    for (size_t i = 1; i < n; i++)
        distinct += cv->tokens[i] != cv->tokens[i - 1];
    if (distinct != n) {
        store_set_error(s,
                        "converting: the old batches hold %zu accepted tokens but only %zu "
                        "distinct ones; a sound record holds each token once",
                        n, distinct);
        return -1;
    }
    if (n == 0)
        return 0;

    size_t n_pages = (n + CV_PAGE_MAX - 1) / CV_PAGE_MAX;
    size_t base = n / n_pages, extra = n % n_pages;
    struct store_chain_page *pages = xcalloc(n_pages, sizeof(*pages));
    uint8_t *le = xcalloc(base + 1, 8);
    int rc = -1;
    size_t off = 0;
    for (size_t p = 0; p < n_pages; p++) {
        size_t k = base + (p < extra ? 1 : 0);
        for (size_t i = 0; i < k; i++)
            le64_put(le + 8 * i, cv->tokens[off + i]);
        uint8_t salt[STORE_SALT_BYTES];
        randombytes_buf(salt, sizeof(salt));
        pages[p].id = p + 1;
        store_page_digest(salt, le, k, pages[p].digest);

        char t_id[24];
        snprintf(t_id, sizeof(t_id), "%zu", p + 1);
        const Oid types[3] = {STORE_OID_INT8, STORE_OID_BYTEA, STORE_OID_BYTEA};
        const char *values[3] = {t_id, (const char *)salt, (const char *)le};
        const int lengths[3] = {0, STORE_SALT_BYTES, (int)(8 * k)};
        const int formats[3] = {0, 1, 1};
        PGresult *res =
            PQexecParams(s->conn, "INSERT INTO token_pages (id, salt, tokens) VALUES ($1, $2, $3)",
                         3, types, values, lengths, formats, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            store_classify(s, res, "converting: writing a token page");
            PQclear(res);
            goto done;
        }
        PQclear(res);
        off += k;
    }
    *pages_out = pages;
    *n_out = n_pages;
    pages = NULL;
    rc = 0;
done:
    free(le);
    free(pages);
    return rc;
}

/* tallies must equal the converted deltas' sums, project by project: the old writer
 * incremented both from the same batches, so a difference is damage to report. Both
 * lists are ascending; a project without a tallies row has 0. */
static int cv_check_tallies(struct cv *cv)
{
    PGresult *res =
        store_query_rows(cv->s, "SELECT project_id, votes FROM tallies ORDER BY project_id",
                         "converting: reading tallies");
    if (!res)
        return -1;
    int rc = -1;
    int rows = PQntuples(res), r = 0;
    for (size_t i = 0; i <= cv->n_projects; i++) {
        uint64_t id = 0, votes = 0;
        if (r < rows && store_parse_u64(PQgetvalue(res, r, 0), UINT32_MAX, &id) < 0) {
            store_set_error(cv->s, "converting: tallies has a project id out of range");
            goto done;
        }
        /* Unreachable while tallies.project_id references projects. */
        if (r < rows && (i == cv->n_projects || id < cv->projects[i])) {
            store_set_error(cv->s,
                            "converting: tallies has a row for project %" PRIu64
                            ", which is not in projects",
                            id);
            goto done;
        }
        if (i == cv->n_projects)
            break;
        if (r < rows && id == cv->projects[i]) {
            if (store_parse_u64(PQgetvalue(res, r, 1), INT64_MAX, &votes) < 0) {
                store_set_error(cv->s,
                                "converting: tallies holds a negative count for project %" PRIu32,
                                cv->projects[i]);
                goto done;
            }
            r++;
        }
        if (votes != cv->sums[i]) {
            store_set_error(cv->s,
                            "converting: tallies holds %" PRIu64 " votes for project %" PRIu32
                            ", the old batches count %" PRIu64,
                            votes, cv->projects[i], cv->sums[i]);
            goto done;
        }
    }
    rc = 0;
done:
    PQclear(res);
    return rc;
}

/* One allocation for every old token, sized from the stored bytes (length() of an
 * uncompressed out-of-line value needs no detoasting): a doubling array would peak at
 * twice the tokens' size. */
static int cv_presize_tokens(struct cv *cv)
{
    PGresult *res = store_query_rows(cv->s, "SELECT coalesce(sum(length(tokens)), 0) FROM batches",
                                     "converting: sizing the tokens");
    if (!res)
        return -1;
    uint64_t bytes = 0;
    store_parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &bytes);
    PQclear(res);
    if (bytes / 8 > 0 && bytes / 8 <= SIZE_MAX / sizeof(*cv->tokens)) {
        cv->cap_tokens = (size_t)(bytes / 8);
        cv->tokens = xreallocarray(NULL, cv->cap_tokens, sizeof(*cv->tokens));
    }
    return 0;
}

int store_convert_v4(struct store *s)
{
    struct cv cv;
    memset(&cv, 0, sizeof(cv));
    cv.s = s;
    struct store_chain_page *pages = NULL;
    size_t n_pages = 0;
    int rc = -1;
    int64_t t0 = cv_now_ms();
    cv.next_log_ms = t0 + CV_LOG_MS;

    if (sodium_init() < 0) {
        store_set_error(s, "converting: libsodium cannot initialise (no randomness for salts)");
        goto done;
    }
    if (cv_read_checkpoints(&cv) < 0 || cv_read_projects(&cv) < 0)
        goto done;
    if (cv.n_cps > 0) {
        if (cv_presize_tokens(&cv) < 0)
            goto done;
        if (cv_stream_batches(&cv) < 0 || cv_write_pages(&cv, &pages, &n_pages) < 0)
            goto done;
        /* All pages go to the last checkpoint: the old record cannot say which checkpoint
         * wrote which token without linking tokens to batches again. */
        if (cv_finish_checkpoint(&cv, &cv.cps[cv.n_cps - 1], pages, n_pages) < 0)
            goto done;
        char sql[80];
        snprintf(sql, sizeof(sql), "UPDATE tally_compaction SET through = %zu", cv.n_cps);
        if (store_exec_cmd(s, sql) != STORE_OK)
            goto done;
    }
    if (cv_check_tallies(&cv) < 0)
        goto done;
    if (cv.n_cps > 0)
        log_info("store: converted the record: %zu checkpoints, %zu tokens in %zu pages (%.1f s)",
                 cv.n_cps, cv.n_tokens, n_pages, (double)(cv_now_ms() - t0) / 1000.0);
    rc = 0;
done:
    free(pages);
    free(cv.counts);
    free(cv.ids);
    free(cv.pairs);
    free(cv.pool);
    free(cv.batches);
    free(cv.tokens);
    free(cv.sums);
    free(cv.projects);
    free(cv.cps);
    return rc;
}
