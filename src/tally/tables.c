/* Voting tables: the set loaded at start (id -> dense index map, id order), their applied
 * and durable state as views, recovery of per-ballot ballots and current sheets, and what
 * a checkpoint's seal and commit do with table state. Applying votes and sheets to tables
 * is tally.c's and sheets.c's. */
#include "tally/internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

static uint64_t id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: ids are short and loaded by operators */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static bool id_is_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return false;
    for (; id[n]; n++) {
        char ch = id[n];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok || n >= 63)
            return false;
    }
    return n > 0;
}

static int cmp_table_ptr(const void *a, const void *b)
{
    const struct tally_table *x = *(const struct tally_table *const *)a;
    const struct tally_table *y = *(const struct tally_table *const *)b;
    return strcmp(x->id, y->id);
}

int tally_tables_set(struct tally *t, const struct tally_table_def *defs, size_t n)
{
    if (t->tables_set || t->pending->n_batches || t->inflight || n > INT32_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!id_is_valid(defs[i].id))
            return -EINVAL;
    struct tally_table *tables = xcalloc(n, sizeof(*tables));
    size_t cap = 64;
    while (cap < n * 2)
        cap *= 2;
    int32_t *map = xcalloc(cap, sizeof(*map));
    memset(map, 0xff, cap * sizeof(*map));
    struct tally_table **order = xcalloc(n, sizeof(*order));
    for (size_t i = 0; i < n; i++) {
        struct tally_table *tb = &tables[i];
        strcpy(tb->id, defs[i].id); /* fits: checked above */
        tb->circuit_id = defs[i].circuit_id;
        tb->electors = defs[i].electors;
        size_t s = id_hash(tb->id) & (cap - 1);
        while (map[s] >= 0) {
            if (strcmp(tables[map[s]].id, tb->id) == 0)
                goto fail;
            s = (s + 1) & (cap - 1);
        }
        map[s] = (int32_t)i;
        order[i] = tb;
    }
    /* The rank orders seal's table deltas by id without a comparator over the tally. */
    qsort(order, n, sizeof(*order), cmp_table_ptr);
    for (size_t r = 0; r < n; r++)
        order[r]->rank = (uint32_t)r;
    free(order);

    t->tables = tables;
    t->n_tables = n;
    t->tmap = map;
    t->tmap_mask = cap - 1;
    free(t->thist);
    free(t->thist_touched);
    t->thist = xcalloc(n, sizeof(uint32_t));
    t->thist_touched = xcalloc(n, sizeof(uint32_t));
    tally_delta_init_tables(&t->deltas[0], n);
    tally_delta_init_tables(&t->deltas[1], n);
    t->tables_set = true;
    return 0;
fail:
    free(order);
    free(map);
    free(tables);
    return -EINVAL;
}

size_t tally_table_count(const struct tally *t)
{
    return t->n_tables;
}

int32_t tally_table_find(const struct tally *t, const char *id)
{
    if (!t->tmap || !id)
        return -1;
    size_t s = id_hash(id) & t->tmap_mask;
    for (;;) {
        int32_t v = t->tmap[s];
        if (v < 0 || strcmp(t->tables[v].id, id) == 0)
            return v;
        s = (s + 1) & t->tmap_mask;
    }
}

void tally_table_get(const struct tally *t, size_t i, bool durable, struct tally_table_view *out)
{
    assert(i < t->n_tables);
    const struct tally_table *tb = &t->tables[i];
    memset(out, 0, sizeof(*out));
    out->id = tb->id;
    out->circuit_id = tb->circuit_id;
    out->electors = tb->electors;
    uint32_t version = durable ? tb->durable_version : tb->version;
    uint64_t ballots = durable ? tb->durable_ballots : tb->ballots;
    if (version) {
        out->mode = TALLY_TABLE_SHEET;
        out->version = version;
        out->ballots = durable ? tb->durable_sheet_total : tb->sheet_total;
        out->blank = durable ? tb->durable_blank : tb->blank;
        out->null_ballots = durable ? tb->durable_null : tb->null_ballots;
    } else {
        out->mode = ballots ? TALLY_TABLE_BALLOTS : TALLY_TABLE_NONE;
        out->ballots = ballots;
    }
}

void tally_blank_null(const struct tally *t, bool durable, uint64_t *blank, uint64_t *null_ballots)
{
    if (blank)
        *blank = durable ? t->durable_blank : t->blank;
    if (null_ballots)
        *null_ballots = durable ? t->durable_null : t->null_ballots;
}

int tally_restore_table_ballots(struct tally *t, uint32_t table, uint64_t ballots)
{
    if (table >= t->n_tables)
        return -EINVAL;
    t->tables[table].ballots = t->tables[table].durable_ballots = ballots;
    return 0;
}

int tally_restore_sheet(struct tally *t, uint32_t table, uint32_t version,
                        const uint8_t digest[TALLY_DIGEST_BYTES], const uint32_t *project_ids,
                        const uint64_t *votes, size_t n, uint32_t blank, uint32_t null_ballots)
{
    if (table >= t->n_tables || version == 0)
        return -EINVAL;
    size_t m = 0;
    uint64_t total = (uint64_t)blank + null_ballots;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && project_ids[i] <= project_ids[i - 1])
            return -EINVAL;
        if (votes[i] > UINT32_MAX)
            return -EINVAL;
        m += votes[i] > 0;
        total += votes[i];
    }
    struct tally_table *tb = &t->tables[table];
    struct tally_count *rows = xcalloc(m, sizeof(*rows));
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (votes[i])
            rows[m++] = (struct tally_count){project_ids[i], (uint32_t)votes[i]};
    /* A table restored twice: its earlier sheet leaves the national figures. */
    if (tb->version) {
        t->blank -= tb->blank;
        t->null_ballots -= tb->null_ballots;
        t->durable_blank -= tb->durable_blank;
        t->durable_null -= tb->durable_null;
    }
    free(tb->rows);
    tb->rows = rows;
    tb->n_rows = m;
    tb->version = tb->durable_version = version;
    tb->blank = tb->durable_blank = blank;
    tb->null_ballots = tb->durable_null = null_ballots;
    tb->sheet_total = tb->durable_sheet_total = total;
    if (digest)
        memcpy(tb->digest, digest, TALLY_DIGEST_BYTES);
    else
        memset(tb->digest, 0, TALLY_DIGEST_BYTES);
    t->blank += blank;
    t->null_ballots += null_ballots;
    t->durable_blank += blank;
    t->durable_null += null_ballots;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void tally_tables_seal(struct tally *t, struct tally_delta *d)
{
    /* Sort keys (rank, index) packed in out_table_deltas, which has room for every table:
     * no allocation at seal. */
    size_t m = 0;
    for (size_t i = 0; i < d->n_tables_touched; i++) {
        uint32_t k = d->tables_touched[i];
        if (d->table_delta[k] != 0)
            d->out_table_deltas[m++] = (int64_t)((uint64_t)t->tables[k].rank << 32 | k);
    }
    qsort(d->out_table_deltas, m, sizeof(*d->out_table_deltas), cmp_i64);
    for (size_t i = 0; i < m; i++) {
        uint32_t k = (uint32_t)((uint64_t)d->out_table_deltas[i] & 0xffffffffu);
        d->out_tables[i] = k;
        d->out_table_deltas[i] = d->table_delta[k];
    }
    d->n_out_tables = m;
}

void tally_tables_commit(struct tally *t, const struct tally_delta *d)
{
    for (size_t i = 0; i < d->n_out_tables; i++)
        t->tables[d->out_tables[i]].durable_ballots += (uint64_t)d->out_table_deltas[i];
    /* In the order applied: a table's last sheet in the delta is its highest version. */
    for (size_t i = 0; i < d->n_sheets; i++) {
        const struct tally_delta_sheet *s = &d->sheets[i];
        struct tally_table *tb = &t->tables[s->table];
        uint64_t total = (uint64_t)s->blank + s->null_ballots;
        for (size_t r = 0; r < s->n_rows; r++)
            total += d->sheet_rows[s->rows_off + r].n;
        tb->durable_version = s->version;
        tb->durable_blank = s->blank;
        tb->durable_null = s->null_ballots;
        tb->durable_sheet_total = total;
    }
    t->durable_blank += (uint64_t)d->blank_delta;
    t->durable_null += (uint64_t)d->null_delta;
}

void tally_tables_free(struct tally *t)
{
    for (size_t i = 0; i < t->n_tables; i++)
        free(t->tables[i].rows);
    free(t->tables);
    free(t->tmap);
}
