/* Checkpoint deltas: buffers that grow geometrically and are reused. Owns the memory of
 * a delta; the rules of what goes in it are tally.c's, tables.c's and sheets.c's. */
#include "tally/delta.h"

#include "core/xalloc.h"

#include <stdlib.h>
#include <string.h>

static size_t grow_to(size_t cap, size_t need)
{
    if (cap == 0)
        cap = 64;
    while (cap < need)
        cap *= 2;
    return cap;
}

void tally_delta_init(struct tally_delta *d, size_t n_projects)
{
    memset(d, 0, sizeof(*d));
    d->proj_delta = xcalloc(n_projects, sizeof(*d->proj_delta));
    d->touched = xcalloc(n_projects, sizeof(uint32_t));
    d->out_ids = xcalloc(n_projects, sizeof(uint32_t));
    d->out_deltas = xcalloc(n_projects, sizeof(*d->out_deltas));
    d->in_touched = xcalloc(n_projects, sizeof(uint8_t));
    tally_delta_init_tables(d, 0);
}

void tally_delta_init_tables(struct tally_delta *d, size_t n_tables)
{
    free(d->table_delta);
    free(d->tables_touched);
    free(d->table_listed);
    free(d->out_tables);
    free(d->out_table_deltas);
    d->table_delta = xcalloc(n_tables, sizeof(*d->table_delta));
    d->tables_touched = xcalloc(n_tables, sizeof(uint32_t));
    d->table_listed = xcalloc(n_tables ? n_tables : 1, sizeof(uint8_t));
    d->out_tables = xcalloc(n_tables, sizeof(uint32_t));
    d->out_table_deltas = xcalloc(n_tables, sizeof(*d->out_table_deltas));
    d->n_tables_touched = d->n_out_tables = 0;
}

void tally_delta_cleanup(struct tally_delta *d)
{
    free(d->batches);
    free(d->tokens);
    free(d->proj_delta);
    free(d->touched);
    free(d->out_ids);
    free(d->out_deltas);
    free(d->in_touched);
    free(d->marks);
    free(d->batch_counts);
    free(d->batch_tables);
    free(d->table_delta);
    free(d->tables_touched);
    free(d->table_listed);
    free(d->out_tables);
    free(d->out_table_deltas);
    free(d->sheets);
    free(d->sheet_rows);
    free(d->corrections);
    free(d->correction_deltas);
    memset(d, 0, sizeof(*d));
}

void tally_delta_reset(struct tally_delta *d)
{
    for (size_t i = 0; i < d->n_touched; i++) {
        d->proj_delta[d->touched[i]] = 0;
        d->in_touched[d->touched[i]] = 0;
    }
    for (size_t i = 0; i < d->n_tables_touched; i++) {
        d->table_delta[d->tables_touched[i]] = 0;
        d->table_listed[d->tables_touched[i]] = 0;
    }
    d->n_touched = 0;
    d->n_batches = 0;
    d->n_tokens = 0;
    d->n_marks = 0;
    d->votes = 0;
    d->n_batch_counts = d->n_batch_tables = 0;
    d->n_tables_touched = d->n_out_tables = 0;
    d->n_sheets = d->n_sheet_rows = 0;
    d->n_corrections = d->n_correction_deltas = 0;
    d->blank_delta = d->null_delta = 0;
    d->forced = false;
}

void tally_delta_reserve(struct tally_delta *d, size_t n)
{
    if (d->n_batches + 1 > d->cap_batches) {
        d->cap_batches = grow_to(d->cap_batches, d->n_batches + 1);
        d->batches = xreallocarray(d->batches, d->cap_batches, sizeof(*d->batches));
    }
    if (d->n_tokens + n > d->cap_tokens) {
        d->cap_tokens = grow_to(d->cap_tokens, d->n_tokens + n);
        d->tokens = xreallocarray(d->tokens, d->cap_tokens, sizeof(*d->tokens));
    }
}

void tally_delta_reserve_counts(struct tally_delta *d, size_t n_counts, size_t n_tables)
{
    if (d->n_batch_counts + n_counts > d->cap_batch_counts) {
        d->cap_batch_counts = grow_to(d->cap_batch_counts, d->n_batch_counts + n_counts);
        d->batch_counts =
            xreallocarray(d->batch_counts, d->cap_batch_counts, sizeof(*d->batch_counts));
    }
    if (d->n_batch_tables + n_tables > d->cap_batch_tables) {
        d->cap_batch_tables = grow_to(d->cap_batch_tables, d->n_batch_tables + n_tables);
        d->batch_tables =
            xreallocarray(d->batch_tables, d->cap_batch_tables, sizeof(*d->batch_tables));
    }
}

struct tally_delta_mark *tally_delta_add_mark(struct tally_delta *d)
{
    if (d->n_marks + 1 > d->cap_marks) {
        d->cap_marks = grow_to(d->cap_marks, d->n_marks + 1);
        d->marks = xreallocarray(d->marks, d->cap_marks, sizeof(*d->marks));
    }
    struct tally_delta_mark *m = &d->marks[d->n_marks++];
    memset(m, 0, sizeof(*m));
    return m;
}

struct tally_delta_sheet *tally_delta_add_sheet(struct tally_delta *d, size_t n_rows)
{
    if (d->n_sheets + 1 > d->cap_sheets) {
        d->cap_sheets = grow_to(d->cap_sheets, d->n_sheets + 1);
        d->sheets = xreallocarray(d->sheets, d->cap_sheets, sizeof(*d->sheets));
    }
    if (d->n_sheet_rows + n_rows > d->cap_sheet_rows) {
        d->cap_sheet_rows = grow_to(d->cap_sheet_rows, d->n_sheet_rows + n_rows);
        d->sheet_rows = xreallocarray(d->sheet_rows, d->cap_sheet_rows, sizeof(*d->sheet_rows));
    }
    struct tally_delta_sheet *s = &d->sheets[d->n_sheets++];
    memset(s, 0, sizeof(*s));
    s->rows_off = d->n_sheet_rows;
    return s;
}

struct tally_delta_correction *tally_delta_add_correction(struct tally_delta *d, size_t n_deltas)
{
    if (d->n_corrections + 1 > d->cap_corrections) {
        d->cap_corrections = grow_to(d->cap_corrections, d->n_corrections + 1);
        d->corrections = xreallocarray(d->corrections, d->cap_corrections, sizeof(*d->corrections));
    }
    if (d->n_correction_deltas + n_deltas > d->cap_correction_deltas) {
        d->cap_correction_deltas =
            grow_to(d->cap_correction_deltas, d->n_correction_deltas + n_deltas);
        d->correction_deltas = xreallocarray(d->correction_deltas, d->cap_correction_deltas,
                                             sizeof(*d->correction_deltas));
    }
    struct tally_delta_correction *c = &d->corrections[d->n_corrections++];
    memset(c, 0, sizeof(*c));
    c->deltas_off = d->n_correction_deltas;
    return c;
}

void tally_delta_table_add(struct tally_delta *d, uint32_t k, int64_t v)
{
    if (!d->table_listed[k]) {
        d->table_listed[k] = 1;
        d->tables_touched[d->n_tables_touched++] = k;
    }
    d->table_delta[k] += v;
}
