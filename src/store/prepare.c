/* Fixing a checkpoint before its first write attempt: count deltas in stored order, each
 * batch's counts encoded, table deltas ordered, and its place in the chain (format 3:
 * Merkle root, body hash, hash). Runs on the store thread; every retry then writes the very
 * same bytes. Does not write (checkpoint.c) nor plan token pages (pages.c). */
#include "store/counts.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <stdlib.h>
#include <string.h>

void store_prep_init(struct store_prep *sp)
{
    memset(sp, 0, sizeof(*sp));
    store_bin_init(&sp->counts);
}

void store_prep_cleanup(struct store_prep *sp)
{
    free(sp->pairs);
    free(sp->delta_ids);
    free(sp->delta_votes);
    store_bin_cleanup(&sp->counts);
    free(sp->counts_off);
    free(sp->counts_len);
    free(sp->has_counts);
    free(sp->table_idx);
    free(sp->table_deltas);
    free(sp->chain_batches);
    free(sp->chain_tables);
    free(sp->chain_pages);
    free(sp->chain_sheets);
    free(sp->chain_corrections);
    free(sp->chain_events);
    memset(sp, 0, sizeof(*sp));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The count deltas by ascending project id: the order they are stored and hashed in, so an
 * auditor reads them as they are. */
static void prep_sort_deltas(struct store_prep *sp, const struct store_checkpoint *cp)
{
    size_t n = cp->n_deltas;
    sp->pairs = xgrow(sp->pairs, &sp->cap_pairs, n, sizeof(*sp->pairs));
    size_t cap = sp->cap_deltas;
    sp->delta_ids = xgrow(sp->delta_ids, &cap, n, sizeof(*sp->delta_ids));
    cap = sp->cap_deltas;
    sp->delta_votes = xgrow(sp->delta_votes, &cap, n, sizeof(*sp->delta_votes));
    sp->cap_deltas = cap;
    for (size_t i = 0; i < n; i++)
        sp->pairs[i] = (uint64_t)cp->project_ids[i] << 32 | (uint32_t)i;
    if (n)
        qsort(sp->pairs, n, sizeof(*sp->pairs), cmp_u64);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)sp->pairs[i];
        sp->delta_ids[i] = cp->project_ids[k];
        sp->delta_votes[i] = cp->deltas[k];
    }
}

/* qsort has no context argument: table names are compared through this pair. */
struct prep_name {
    const char *name;
    uint32_t idx;
    int64_t delta;
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct prep_name *)a)->name, ((const struct prep_name *)b)->name);
}

static void prep_sort_tables(struct store_prep *sp, const struct store_checkpoint *cp)
{
    size_t n = cp->n_table_deltas;
    size_t cap = sp->cap_tables;
    sp->table_idx = xgrow(sp->table_idx, &cap, n, sizeof(*sp->table_idx));
    cap = sp->cap_tables;
    sp->table_deltas = xgrow(sp->table_deltas, &cap, n, sizeof(*sp->table_deltas));
    sp->cap_tables = cap;
    /* Per checkpoint, tables touched number in the thousands at most. */
    struct prep_name *names = xcalloc(n ? n : 1, sizeof(*names));
    for (size_t i = 0; i < n; i++)
        names[i] = (struct prep_name){cp->table_names[cp->table_idx[i]], cp->table_idx[i],
                                      cp->table_deltas[i]};
    if (n)
        qsort(names, n, sizeof(*names), cmp_name);
    for (size_t i = 0; i < n; i++) {
        sp->table_idx[i] = names[i].idx;
        sp->table_deltas[i] = names[i].delta;
    }
    free(names);
}

static void prep_encode_counts(struct store_prep *sp, const struct store_checkpoint *cp)
{
    size_t n = cp->n_batches;
    size_t cap = sp->cap_batches;
    sp->counts_off = xgrow(sp->counts_off, &cap, n, sizeof(*sp->counts_off));
    cap = sp->cap_batches;
    sp->counts_len = xgrow(sp->counts_len, &cap, n, sizeof(*sp->counts_len));
    cap = sp->cap_batches;
    sp->has_counts = xgrow(sp->has_counts, &cap, n, sizeof(*sp->has_counts));
    sp->cap_batches = cap;
    store_bin_reset(&sp->counts);
    for (size_t i = 0; i < n; i++) {
        const struct store_batch *b = &cp->batches[i];
        sp->counts_off[i] = sp->counts.len;
        sp->has_counts[i] = b->kind == STORE_BATCH_BALLOTS;
        if (sp->has_counts[i])
            store_counts_encode(b->counts, b->n_counts, &sp->counts);
        sp->counts_len[i] = sp->counts.len - sp->counts_off[i];
    }
}

/* The chain's view of the batches, their tables and the checkpoint's table deltas. */
static void prep_chain_batches(struct store_prep *sp, const struct store_checkpoint *cp)
{
    size_t n = cp->n_batches, n_tables = cp->n_table_deltas;
    for (size_t i = 0; i < n; i++)
        n_tables += cp->batches[i].n_tables;
    sp->chain_batches =
        xgrow(sp->chain_batches, &sp->cap_chain_batches, n, sizeof(*sp->chain_batches));
    sp->chain_tables =
        xgrow(sp->chain_tables, &sp->cap_chain_tables, n_tables, sizeof(*sp->chain_tables));
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        const struct store_batch *b = &cp->batches[i];
        struct store_chain_table *tables = sp->chain_tables + t;
        for (size_t k = 0; k < b->n_tables; k++)
            sp->chain_tables[t++] = (struct store_chain_table){
                .id = cp->table_names[b->tables[2 * k]],
                .ballots = (int64_t)b->tables[2 * k + 1],
            };
        sp->chain_batches[i] = (struct store_chain_batch3){
            .collector_id = b->collector_id,
            .seq = b->seq,
            .digest = b->digest,
            .kind = (uint32_t)b->kind,
            .votes = b->votes,
            .accepted = b->accepted,
            .duplicate = b->duplicate,
            .sheets = b->sheets,
            .sheets_accepted = b->sheets_accepted,
            .sheets_duplicate = b->sheets_duplicate,
            .reasons = &b->reasons[1],
            .n_reasons = STORE_REASONS - 1,
            .counts = sp->counts.data ? sp->counts.data + sp->counts_off[i] : NULL,
            .counts_len = sp->counts_len[i],
            .has_counts = sp->has_counts[i],
            .tables = b->n_tables ? tables : NULL,
            .n_tables = b->n_tables,
        };
    }
    for (size_t i = 0; i < cp->n_table_deltas; i++)
        sp->chain_tables[t + i] = (struct store_chain_table){
            .id = cp->table_names[sp->table_idx[i]],
            .ballots = sp->table_deltas[i],
        };
}

void store_prepare(struct store_prep *sp, const struct store_checkpoint *cp, uint64_t id,
                   uint64_t epoch, const uint8_t prev[32], uint64_t first_correction_id,
                   const struct store_page_plan *plan, struct store_prepared *pp)
{
    memset(pp, 0, sizeof(*pp));
    pp->cp = cp;
    pp->id = id;
    pp->epoch = epoch;
    memcpy(pp->prev_hash, prev, sizeof(pp->prev_hash));
    pp->plan = plan;
    pp->first_correction_id = first_correction_id;

    prep_sort_deltas(sp, cp);
    pp->project_ids = sp->delta_ids;
    pp->deltas = sp->delta_votes;
    prep_sort_tables(sp, cp);
    pp->table_idx = sp->table_idx;
    pp->table_deltas = sp->table_deltas;
    pp->n_table_deltas = cp->n_table_deltas;
    prep_encode_counts(sp, cp);
    pp->counts = sp->counts.data;
    pp->counts_off = sp->counts_off;
    pp->counts_len = sp->counts_len;
    pp->has_counts = sp->has_counts;
    prep_chain_batches(sp, cp);

    sp->chain_pages =
        xgrow(sp->chain_pages, &sp->cap_chain_pages, plan->n_pages, sizeof(*sp->chain_pages));
    for (size_t i = 0; i < plan->n_pages; i++) {
        sp->chain_pages[i].id = plan->pages[i].id;
        memcpy(sp->chain_pages[i].digest, plan->pages[i].digest, STORE_HASH_BYTES);
    }
    sp->chain_sheets =
        xgrow(sp->chain_sheets, &sp->cap_chain_sheets, cp->n_sheets, sizeof(*sp->chain_sheets));
    for (size_t i = 0; i < cp->n_sheets; i++) {
        const struct store_sheet *x = &cp->sheets[i];
        sp->chain_sheets[i] = (struct store_chain_sheet){
            .table_id = cp->table_names[x->table],
            .version = x->version,
            .collector_id = x->collector_id,
            .seq = x->seq,
            .digest = x->digest,
        };
    }
    sp->chain_corrections = xgrow(sp->chain_corrections, &sp->cap_chain_corrections,
                                  cp->n_corrections, sizeof(*sp->chain_corrections));
    for (size_t i = 0; i < cp->n_corrections; i++) {
        const struct store_correction *x = &cp->corrections[i];
        sp->chain_corrections[i] = (struct store_chain_correction){
            .id = first_correction_id + i,
            .kind = (uint32_t)x->kind,
            .actor = x->actor,
            .reason = x->reason,
            .at_us = x->at_us,
            .table_id = x->table >= 0 ? cp->table_names[x->table] : "",
            .collector_id = x->collector_id ? x->collector_id : "",
            .seq = x->seq,
            .from_version = x->from_version,
            .to_version = x->to_version,
            .project_ids = x->project_ids,
            .deltas = x->deltas,
            .n_deltas = x->n_deltas,
            .blank_delta = x->blank_delta,
            .null_delta = x->null_delta,
            .ballots_delta = x->ballots_delta,
        };
    }
    sp->chain_events =
        xgrow(sp->chain_events, &sp->cap_chain_events, cp->n_events, sizeof(*sp->chain_events));
    for (size_t i = 0; i < cp->n_events; i++) {
        const struct store_event *e = &cp->events[i];
        sp->chain_events[i] = (struct store_chain_event){
            .request_id = e->request_id,
            .kind = (uint32_t)e->kind,
            .actor = e->actor,
            .at_us = e->at_us,
            .payload = e->kind == STORE_EVENT_TIE_RULE ? e->seed_hash : NULL,
            .payload_len = e->kind == STORE_EVENT_TIE_RULE ? sizeof(e->seed_hash) : 0,
        };
    }
    struct store_chain_input3 in = {
        .prev_hash = pp->prev_hash,
        .id = id,
        .epoch = epoch,
        .batches = sp->chain_batches,
        .n_batches = cp->n_batches,
        .project_ids = pp->project_ids,
        .votes = pp->deltas,
        .n_deltas = cp->n_deltas,
        .pages = sp->chain_pages,
        .n_pages = plan->n_pages,
        .n_table_deltas = cp->n_table_deltas,
        .sheets = sp->chain_sheets,
        .n_sheets = cp->n_sheets,
        .corrections = sp->chain_corrections,
        .n_corrections = cp->n_corrections,
        .events = sp->chain_events,
        .n_events = cp->n_events,
    };
    /* The table deltas follow every batch's tables in chain_tables. */
    size_t t = 0;
    for (size_t i = 0; i < cp->n_batches; i++)
        t += cp->batches[i].n_tables;
    in.table_deltas = sp->chain_tables + t;
    store_chain_hash_v3(&in, pp->merkle_root, pp->body_hash, pp->hash);
}
