/* The tally rebuilt from the durable record at start-up: registry and votes, collectors
 * with their watermarks, every stored token into the ballot set, every batch digest.
 * Runs on the store thread through store_recover_hooks; owns nothing after hand-off. */
#include "ingest/startup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/xalloc.h"
#include "tally/tally.h"

/* Voting tables, their per-ballot ballots and current sheets (project totals are restored
 * already: these move no count). */
static int rebuild_tables(struct ingest_rebuild *r, const struct store_recovery *rec)
{
    struct tally_table_def *defs = xcalloc(rec->n_tables ? rec->n_tables : 1, sizeof(*defs));
    for (size_t i = 0; i < rec->n_tables; i++)
        defs[i] = (struct tally_table_def){rec->tables[i].id, rec->tables[i].circuit_id,
                                           rec->tables[i].electors};
    int rc = tally_tables_set(r->tally, defs, rec->n_tables);
    free(defs);
    if (rc < 0) {
        snprintf(r->failure, sizeof(r->failure), "the voting tables have a duplicate id");
        return -1;
    }
    for (size_t i = 0; i < rec->n_tables; i++) {
        int32_t t = tally_table_find(r->tally, rec->tables[i].id);
        if (t < 0 ||
            (rec->table_ballots[i] &&
             tally_restore_table_ballots(r->tally, (uint32_t)t, rec->table_ballots[i]) < 0))
            goto bad;
    }
    for (size_t i = 0; i < rec->n_sheets; i++) {
        const struct store_recovered_sheet *x = &rec->sheets[i];
        int32_t t = tally_table_find(r->tally, rec->tables[x->table].id);
        if (t < 0 ||
            tally_restore_sheet(r->tally, (uint32_t)t, x->version, x->digest, x->project_ids,
                                x->votes, x->n, x->blank, x->null_ballots) < 0)
            goto bad;
    }
    return 0;
bad:
    snprintf(r->failure, sizeof(r->failure), "a stored table state does not fit its table");
    return -1;
}

static int rebuild_begin(void *arg, const struct store_recovery *rec)
{
    struct ingest_rebuild *r = arg;
    tally_free(r->tally);
    r->tally = NULL;
    r->dup_tokens = r->orphan_digests = 0;
    r->failure[0] = '\0';

    struct tally_project *p = xcalloc(rec->n_projects ? rec->n_projects : 1, sizeof(*p));
    for (size_t i = 0; i < rec->n_projects; i++) {
        p[i].id = rec->projects[i].id;
        p[i].circuit_id = rec->projects[i].circuit_id;
    }
    uint64_t accepted = 0;
    for (size_t i = 0; i < rec->n_collectors; i++)
        accepted += rec->collectors[i].accepted;
    size_t expected =
        (size_t)(accepted > r->expected_ballots ? accepted + accepted / 4 : r->expected_ballots);
    /* A key of our own: tokens chosen to collide in the ballot set cannot be made without it. */
    uint8_t key[TALLY_HASH_KEY_BYTES];
    randombytes_buf(key, sizeof(key));
    r->tally = tally_new(p, rec->n_projects, expected, key);
    sodium_memzero(key, sizeof(key));
    free(p);
    if (!r->tally) {
        snprintf(r->failure, sizeof(r->failure), "the registry has duplicate project ids");
        return -1;
    }
    for (size_t i = 0; i < rec->n_projects; i++)
        tally_restore_votes(r->tally, rec->projects[i].id, rec->projects[i].votes);
    for (size_t i = 0; i < rec->n_collectors; i++) {
        const struct store_collector *c = &rec->collectors[i];
        struct tally_totals tt = {
            .batches = c->batches,
            .votes = c->votes,
            .accepted = c->accepted,
            .duplicate = c->duplicate,
            .rejected = c->rejected,
            .rejected_not_allowed = c->rejected_not_allowed,
            .sheets = c->sheets,
            .sheets_accepted = c->sheets_accepted,
            .sheets_duplicate = c->sheets_duplicate,
            .sheets_rejected = c->sheets_rejected,
        };
        for (size_t k = 1; k < TALLY_REASONS && k < STORE_REASONS; k++) {
            tt.reasons[k] = c->reasons[k];
            tt.sheet_reasons[k] = c->sheet_reasons[k];
        }

        tally_collector_add(r->tally, c->id, c->durable_seq, &tt);
    }
    return rebuild_tables(r, rec);
}

static void rebuild_tokens(void *arg, const uint64_t *tokens, size_t n)
{
    struct ingest_rebuild *r = arg;
    r->dup_tokens += tally_restore_tokens(r->tally, tokens, n);
}

static void rebuild_digest(void *arg, const char *collector_id, uint64_t seq, const uint8_t *digest)
{
    struct ingest_rebuild *r = arg;
    int32_t c = tally_collector_find(r->tally, collector_id);
    if (c < 0 || !tally_restore_digest(r->tally, (uint32_t)c, seq, digest))
        r->orphan_digests++;
}

struct store_recover_hooks ingest_rebuild_hooks(struct ingest_rebuild *r)
{
    struct store_recover_hooks h = {
        .begin = rebuild_begin,
        .tokens = rebuild_tokens,
        .digest = rebuild_digest,
        .arg = r,
    };
    return h;
}
