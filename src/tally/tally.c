/* Applying batches: registry lookup, batch and ballot dedup, counting, and sealing what
 * was applied into checkpoint deltas. Owns all in-memory tally state; never does I/O. */
#include "tally/tally.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"
#include "tally/internal.h"
#include "tally/protocol.h"

/* Prefetch distance in votes: far enough to hide a DRAM miss behind the work on the
 * votes in between. A power of two: the hashes of the tokens between are kept in a ring
 * of this many, so each token is hashed once, for its prefetch and its insert. */
#define PREFETCH_AHEAD 16
#define RING(i) ((i) & (PREFETCH_AHEAD - 1))

void tally_totals_add(struct tally_totals *to, const struct tally_totals *add)
{
    to->batches += add->batches;
    to->votes += add->votes;
    to->accepted += add->accepted;
    to->duplicate += add->duplicate;
    to->rejected += add->rejected;
    to->rejected_not_allowed += add->rejected_not_allowed;
    to->sheets += add->sheets;
    to->sheets_accepted += add->sheets_accepted;
    to->sheets_duplicate += add->sheets_duplicate;
    to->sheets_rejected += add->sheets_rejected;
    for (unsigned k = 0; k < TALLY_REASONS; k++) {
        to->reasons[k] += add->reasons[k];
        to->sheet_reasons[k] += add->sheet_reasons[k];
    }
}

static const char *const reason_names[TALLY_REASONS] = {TALLY_REASON_NAMES};
_Static_assert(TALLY_REASONS == TALLY_REASON_COUNT, "one list of reasons");

const char *tally_reason_name(unsigned reason)
{
    return reason > 0 && reason < TALLY_REASONS ? reason_names[reason] : "?";
}

static size_t map_home(uint32_t id, size_t mask)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}

struct tally *tally_new(const struct tally_project *projects, size_t n, size_t expected_ballots,
                        const uint8_t key[TALLY_HASH_KEY_BYTES])
{
    struct tally *t = xcalloc(1, sizeof(*t));
    t->n_projects = n;
    t->projects = xcalloc(n, sizeof(*projects));
    if (n)
        memcpy(t->projects, projects, n * sizeof(*projects));
    t->counts = xcalloc(n, sizeof(uint64_t));
    t->durable = xcalloc(n, sizeof(uint64_t));

    size_t cap = 64;
    while (cap < n * 2)
        cap *= 2;
    t->map_mask = cap - 1;
    t->map_keys = xcalloc(cap, sizeof(uint32_t));
    t->map_vals = xcalloc(cap, sizeof(int32_t));
    memset(t->map_vals, 0xff, cap * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        size_t s = map_home(projects[i].id, t->map_mask);
        while (t->map_vals[s] >= 0) {
            if (t->map_keys[s] == projects[i].id)
                goto fail;
            s = (s + 1) & t->map_mask;
        }
        t->map_keys[s] = projects[i].id;
        t->map_vals[s] = (int32_t)i;
    }

    t->hist = xcalloc(n, sizeof(uint32_t));
    t->hist_touched = xcalloc(n, sizeof(uint32_t));
    t->thist = xcalloc(0, sizeof(uint32_t));
    t->thist_touched = xcalloc(0, sizeof(uint32_t));

    tally_set_init(&t->ballots, expected_ballots, key);
    tally_delta_init(&t->deltas[0], n);
    tally_delta_init(&t->deltas[1], n);
    t->pending = &t->deltas[0];
    t->inflight = NULL;
    return t;
fail:
    tally_free(t);
    return NULL;
}

void tally_free(struct tally *t)
{
    if (!t)
        return;
    free(t->projects);
    free(t->counts);
    free(t->durable);
    free(t->map_keys);
    free(t->map_vals);
    free(t->hist);
    free(t->hist_touched);
    free(t->thist);
    free(t->thist_touched);
    free(t->scratch);
    tally_tables_free(t);
    if (t->ballots.slots)
        tally_set_cleanup(&t->ballots);
    for (size_t i = 0; i < t->n_collectors; i++) {
        free(t->collectors[i].digests);
        free(t->allowed[i]);
        free(t->circuits[i]);
    }
    free(t->collectors);
    free(t->allowed);
    free(t->circuits);
    free(t->n_circuits);
    if (t->deltas[0].proj_delta) {
        tally_delta_cleanup(&t->deltas[0]);
        tally_delta_cleanup(&t->deltas[1]);
    }
    free(t);
}

size_t tally_project_count(const struct tally *t)
{
    return t->n_projects;
}

int32_t tally_project_index(const struct tally *t, uint32_t id)
{
    size_t s = map_home(id, t->map_mask);
    for (;;) {
        int32_t v = t->map_vals[s];
        if (v < 0 || t->map_keys[s] == id)
            return v;
        s = (s + 1) & t->map_mask;
    }
}

const struct tally_project *tally_project_at(const struct tally *t, size_t index)
{
    assert(index < t->n_projects);
    return &t->projects[index];
}

uint64_t tally_votes_at(const struct tally *t, size_t index)
{
    assert(index < t->n_projects);
    return t->counts[index];
}

void tally_restore_votes(struct tally *t, uint32_t project_id, uint64_t votes)
{
    int32_t i = tally_project_index(t, project_id);
    if (i >= 0)
        t->counts[i] = t->durable[i] = votes;
}

size_t tally_restore_tokens(struct tally *t, const uint64_t *tokens, size_t n)
{
    size_t dup = 0;
    uint64_t ring[PREFETCH_AHEAD];
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++) {
        ring[i] = tally_set_hash(&t->ballots, tokens[i]);
        tally_set_prefetch_hash(&t->ballots, ring[i]);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t h = ring[RING(i)];
        if (i + PREFETCH_AHEAD < n) {
            ring[RING(i)] = tally_set_hash(&t->ballots, tokens[i + PREFETCH_AHEAD]);
            tally_set_prefetch_hash(&t->ballots, ring[RING(i)]);
        }
        dup += !tally_set_insert_hashed(&t->ballots, tokens[i], h);
    }
    return dup;
}

bool tally_restore_token(struct tally *t, uint64_t token)
{
    return tally_set_insert(&t->ballots, token);
}

uint32_t tally_collector_add(struct tally *t, const char *id, uint64_t durable_seq,
                             const struct tally_totals *durable)
{
    int32_t found = tally_collector_find(t, id);
    if (found >= 0)
        return (uint32_t)found;
    if (t->n_collectors == t->cap_collectors) {
        t->cap_collectors = t->cap_collectors ? t->cap_collectors * 2 : 16;
        t->collectors = xreallocarray(t->collectors, t->cap_collectors, sizeof(*t->collectors));
        t->allowed = xreallocarray(t->allowed, t->cap_collectors, sizeof(*t->allowed));
        t->circuits = xreallocarray(t->circuits, t->cap_collectors, sizeof(*t->circuits));
        t->n_circuits = xreallocarray(t->n_circuits, t->cap_collectors, sizeof(*t->n_circuits));
    }
    t->allowed[t->n_collectors] = NULL;
    t->circuits[t->n_collectors] = NULL;
    t->n_circuits[t->n_collectors] = 0;
    struct tally_collector *c = &t->collectors[t->n_collectors];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->applied_seq = c->durable_seq = durable_seq;
    if (durable) {
        c->durable = *durable;
        tally_totals_add(&t->durable_total, durable);
        tally_totals_add(&t->applied, durable);
    }
    return (uint32_t)t->n_collectors++;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int tally_collector_restrict(struct tally *t, uint32_t c, const uint32_t *circuit_ids, size_t n)
{
    if (c >= t->n_collectors)
        return -EINVAL;
    if (!circuit_ids) {
        free(t->allowed[c]);
        free(t->circuits[c]);
        t->allowed[c] = NULL;
        t->circuits[c] = NULL;
        t->n_circuits[c] = 0;
        return 0;
    }
    /* Called when the registered collectors are refreshed, not per batch: a sorted copy
     * and a binary search per project are plenty. */
    uint32_t *ids = xcalloc(n ? n : 1, sizeof(*ids));
    if (n)
        memcpy(ids, circuit_ids, n * sizeof(*ids));
    qsort(ids, n, sizeof(*ids), cmp_u32);
    size_t words = (t->n_projects + 63) / 64;
    uint64_t *bits = t->allowed[c] ? t->allowed[c] : xcalloc(words ? words : 1, sizeof(*bits));
    memset(bits, 0, (words ? words : 1) * sizeof(*bits));
    for (size_t p = 0; p < t->n_projects; p++)
        if (n && bsearch(&t->projects[p].circuit_id, ids, n, sizeof(*ids), cmp_u32))
            bits[p / 64] |= 1ULL << (p % 64);
    free(t->circuits[c]);
    t->circuits[c] = ids;
    t->n_circuits[c] = n;
    t->allowed[c] = bits;
    return 0;
}

bool tally_collector_has_circuit(const struct tally *t, uint32_t c, uint32_t circuit)
{
    assert(c < t->n_collectors);
    if (!t->allowed[c])
        return true;
    return t->n_circuits[c] &&
           bsearch(&circuit, t->circuits[c], t->n_circuits[c], sizeof(uint32_t), cmp_u32);
}

int32_t tally_collector_find(const struct tally *t, const char *id)
{
    /* Collectors number in the hundreds and are looked up once per connection. */
    for (size_t i = 0; i < t->n_collectors; i++)
        if (strcmp(t->collectors[i].id, id) == 0)
            return (int32_t)i;
    return -1;
}

size_t tally_collector_count(const struct tally *t)
{
    return t->n_collectors;
}

const struct tally_collector *tally_collector_at(const struct tally *t, uint32_t index)
{
    assert(index < t->n_collectors);
    return &t->collectors[index];
}

/* Keeps the digest of collector c's batch seq (= applied_seq + 1 or a recovered one). */
static void digest_store(struct tally_collector *col, uint64_t seq, const uint8_t *digest)
{
    if (seq > col->cap_digests) {
        size_t cap = col->cap_digests ? col->cap_digests : 64;
        while (cap < seq)
            cap *= 2;
        col->digests = xreallocarray(col->digests, cap, sizeof(*col->digests));
        memset(col->digests + col->cap_digests, 0,
               (cap - col->cap_digests) * sizeof(*col->digests));
        col->cap_digests = cap;
    }
    if (digest)
        memcpy(col->digests[seq - 1], digest, TALLY_DIGEST_BYTES);
    else
        memset(col->digests[seq - 1], 0, TALLY_DIGEST_BYTES);
}

static bool digest_is_known(const uint8_t *d)
{
    uint8_t any = 0;
    for (size_t i = 0; i < TALLY_DIGEST_BYTES; i++)
        any |= d[i];
    return any != 0;
}

bool tally_restore_digest(struct tally *t, uint32_t c, uint64_t seq, const uint8_t *digest)
{
    assert(c < t->n_collectors);
    struct tally_collector *col = &t->collectors[c];
    if (seq == 0 || seq > col->durable_seq)
        return false;
    digest_store(col, seq, digest);
    return true;
}

enum tally_apply_status tally_seq_check(struct tally *t, uint32_t c, uint64_t seq,
                                        const uint8_t *digest, uint64_t *expected,
                                        const uint8_t **stored)
{
    assert(c < t->n_collectors);
    struct tally_collector *col = &t->collectors[c];
    if (seq <= col->applied_seq) {
        /* A seq recorded before digests existed cannot be compared: take it for the
         * retransmission it almost certainly is, as the older tallyd did. */
        const uint8_t *had = seq <= col->cap_digests ? col->digests[seq - 1] : NULL;
        if (had && digest_is_known(had) && memcmp(had, digest, TALLY_DIGEST_BYTES) != 0) {
            *stored = had;
            return TALLY_CONFLICT;
        }
        return TALLY_RETRANSMIT;
    }
    if (seq != col->applied_seq + 1) {
        *expected = col->applied_seq + 1;
        return TALLY_GAP;
    }
    return TALLY_APPLIED;
}

void tally_seq_advance(struct tally *t, uint32_t c, uint64_t seq, const uint8_t *digest)
{
    struct tally_collector *col = &t->collectors[c];
    digest_store(col, seq, digest);
    col->applied_seq = seq;
}

void tally_project_add(struct tally *t, struct tally_delta *d, uint32_t p, int64_t v)
{
    t->counts[p] += (uint64_t)v; /* two's complement: a negative v subtracts */
    if (!d->in_touched[p]) {
        d->in_touched[p] = 1;
        d->touched[d->n_touched++] = p;
    }
    d->proj_delta[p] += v;
}

enum tally_apply_status tally_apply_batch(struct tally *t, uint32_t c, uint64_t seq,
                                          const uint8_t digest[TALLY_DIGEST_BYTES],
                                          const uint64_t *ballots, const uint32_t *projects,
                                          size_t n, struct tally_batch_result *res,
                                          uint64_t *expected, const uint8_t **stored)
{
    return tally_apply_batch_tables(t, c, seq, digest, ballots, projects, n, NULL, 0, NULL, res,
                                    expected, stored);
}

/* Folds one batch's histograms into the counts and the delta, and emits them as the
 * batch's per-project and per-table counts: once per distinct project or table of the
 * batch, not per vote, so that the vote loop touches one counter. */
static void batch_fold(struct tally *t, struct tally_delta *d, struct tally_delta_batch *b,
                       size_t n_hist, size_t n_thist)
{
    b->counts_off = d->n_batch_counts;
    b->n_counts = n_hist;
    struct tally_count *out = d->batch_counts ? d->batch_counts + d->n_batch_counts : NULL;
    for (size_t j = 0; j < n_hist; j++) {
        uint32_t p = t->hist_touched[j];
        uint32_t v = t->hist[p];
        t->hist[p] = 0;
        t->counts[p] += v;
        /* tally_project_add, with the flag read only when the delta was 0 (a sheet may
         * have netted a listed project back to 0). */
        int64_t had = d->proj_delta[p];
        d->proj_delta[p] = had + v;
        if (had == 0 && !d->in_touched[p]) {
            d->in_touched[p] = 1;
            d->touched[d->n_touched++] = p;
        }
        out[j] = (struct tally_count){t->projects[p].id, v};
    }
    d->n_batch_counts += n_hist;

    b->tables_off = d->n_batch_tables;
    b->n_tables = n_thist;
    out = d->batch_tables ? d->batch_tables + d->n_batch_tables : NULL;
    for (size_t j = 0; j < n_thist; j++) {
        uint32_t k = t->thist_touched[j];
        uint32_t v = t->thist[k];
        t->thist[k] = 0;
        tally_delta_table_add(d, k, v);
        out[j] = (struct tally_count){k, v};
    }
    d->n_batch_tables += n_thist;
}

enum tally_apply_status tally_apply_batch_tables(struct tally *t, uint32_t c, uint64_t seq,
                                                 const uint8_t digest[TALLY_DIGEST_BYTES],
                                                 const uint64_t *ballots, const uint32_t *projects,
                                                 size_t n, const int32_t *dict, size_t n_dict,
                                                 const uint32_t *vote_tables,
                                                 struct tally_batch_result *res, uint64_t *expected,
                                                 const uint8_t **stored)
{
    enum tally_apply_status st = tally_seq_check(t, c, seq, digest, expected, stored);
    if (st != TALLY_APPLIED)
        return st;
    struct tally_collector *col = &t->collectors[c];

    struct tally_delta *d = t->pending;
    tally_delta_reserve(d, n);
    tally_delta_reserve_counts(d, n < t->n_projects ? n : t->n_projects,
                               vote_tables ? (n < t->n_tables ? n : t->n_tables) : 0);
    /* An empty batch may leave tokens NULL: no pointer arithmetic on it (NULL + 0 is UB). */
    uint64_t *tok = d->tokens ? d->tokens + d->n_tokens : NULL;
    size_t n_tok = 0, n_hist = 0, n_thist = 0;
    uint32_t why[TALLY_REASONS] = {0};
    uint32_t duplicate = 0;
    const uint64_t *allowed = t->allowed[c];
    uint32_t *hist = t->hist, *hist_touched = t->hist_touched;
    (void)n_dict;

    uint64_t ring[PREFETCH_AHEAD];
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++) {
        ring[i] = tally_set_hash(&t->ballots, ballots[i]);
        tally_set_prefetch_hash(&t->ballots, ring[i]);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t h = ring[RING(i)];
        if (i + PREFETCH_AHEAD < n) {
            ring[RING(i)] = tally_set_hash(&t->ballots, ballots[i + PREFETCH_AHEAD]);
            tally_set_prefetch_hash(&t->ballots, ring[RING(i)]);
        }
        int32_t p = tally_project_index(t, projects[i]);
        if (p < 0) {
            why[TALLY_REASON_UNKNOWN_PROJECT]++;
            continue;
        }
        if (allowed && !(allowed[(uint32_t)p / 64] >> ((uint32_t)p % 64) & 1)) {
            why[TALLY_REASON_NOT_ALLOWED]++;
            continue;
        }
        struct tally_table *tb = NULL;
        uint32_t vt = vote_tables ? vote_tables[i] : 0;
        if (vt) {
            assert(vt <= n_dict);
            int32_t k = dict[vt - 1];
            if (k < 0) {
                why[TALLY_REASON_UNKNOWN_TABLE]++;
                continue;
            }
            assert((size_t)k < t->n_tables);
            tb = &t->tables[k];
            if (t->projects[p].circuit_id != tb->circuit_id) {
                why[TALLY_REASON_OUTSIDE_TABLE_CIRCUIT]++;
                continue;
            }
            if (tb->version) {
                why[TALLY_REASON_TABLE_MODE_CONFLICT]++;
                continue;
            }
            if (tb->ballots >= tb->electors) {
                why[TALLY_REASON_OVER_ELECTORS]++;
                continue;
            }
        }
        if (!tally_set_insert_hashed(&t->ballots, ballots[i], h)) {
            duplicate++;
            continue;
        }
        if (hist[p]++ == 0)
            hist_touched[n_hist++] = (uint32_t)p;
        if (tb) {
            uint32_t k = (uint32_t)(tb - t->tables);
            tb->ballots++;
            if (t->thist[k]++ == 0)
                t->thist_touched[n_thist++] = k;
        }
        tok[n_tok++] = ballots[i];
    }

    struct tally_delta_batch *b = &d->batches[d->n_batches++];
    memset(b, 0, sizeof(*b));
    b->collector = c;
    b->seq = seq;
    memcpy(b->digest, digest, TALLY_DIGEST_BYTES);
    b->votes = (uint32_t)n;
    b->accepted = (uint32_t)n_tok;
    b->duplicate = duplicate;
    b->rejected_unknown = why[TALLY_REASON_UNKNOWN_PROJECT];
    b->rejected_not_allowed = why[TALLY_REASON_NOT_ALLOWED];
    memcpy(b->reasons, why, sizeof(why));
    batch_fold(t, d, b, n_hist, n_thist);
    d->n_tokens += n_tok;
    d->votes += n;

    uint32_t rejected = 0;
    for (unsigned k = 1; k < TALLY_REASONS; k++) {
        rejected += why[k];
        t->vote_reasons[k] += why[k];
    }
    struct tally_totals add = {.batches = 1,
                               .votes = n,
                               .accepted = n_tok,
                               .duplicate = duplicate,
                               .rejected = rejected,
                               .rejected_not_allowed = why[TALLY_REASON_NOT_ALLOWED]};
    for (unsigned k = 1; k < TALLY_REASONS; k++)
        add.reasons[k] = why[k];
    tally_seq_advance(t, c, seq, digest);
    tally_totals_add(&col->pending, &add);
    tally_totals_add(&t->applied, &add);

    memset(res, 0, sizeof(*res));
    res->accepted = (uint32_t)n_tok;
    res->duplicate = duplicate;
    res->rejected_unknown = why[TALLY_REASON_UNKNOWN_PROJECT];
    res->rejected_not_allowed = why[TALLY_REASON_NOT_ALLOWED];
    memcpy(res->reasons, why, sizeof(why));
    return TALLY_APPLIED;
}

const uint64_t *tally_durable_votes(const struct tally *t)
{
    return t->durable;
}

const struct tally_totals *tally_durable_totals(const struct tally *t)
{
    return &t->durable_total;
}

const struct tally_totals *tally_applied_totals(const struct tally *t)
{
    return &t->applied;
}

void tally_rejected_by_reason(const struct tally *t, uint64_t *unknown_project,
                              uint64_t *not_allowed)
{
    if (unknown_project)
        *unknown_project = t->vote_reasons[TALLY_REASON_UNKNOWN_PROJECT];
    if (not_allowed)
        *not_allowed = t->vote_reasons[TALLY_REASON_NOT_ALLOWED];
}

void tally_reason_counts(const struct tally *t, bool sheets, uint64_t out[TALLY_REASONS])
{
    memcpy(out, sheets ? t->sheet_reasons : t->vote_reasons, TALLY_REASONS * sizeof(*out));
}

size_t tally_ballot_count(const struct tally *t)
{
    return t->ballots.count;
}

size_t tally_ballot_bytes(const struct tally *t)
{
    return tally_set_bytes(&t->ballots);
}

/* Sheets weigh in by their rows, so a flood of sheet batches is held back too. */
static uint64_t delta_weight(const struct tally_delta *d)
{
    return d->votes + d->n_sheets + d->n_sheet_rows;
}

uint64_t tally_backlog_votes(const struct tally *t)
{
    return delta_weight(t->pending) + (t->inflight ? delta_weight(t->inflight) : 0);
}

bool tally_has_pending(const struct tally *t)
{
    return t->pending->n_batches > 0 || t->pending->n_corrections > 0 || t->pending->forced;
}

void tally_force_checkpoint(struct tally *t)
{
    t->pending->forced = true;
}

struct tally_delta *tally_checkpoint_seal(struct tally *t)
{
    if (t->inflight || !tally_has_pending(t))
        return NULL;
    struct tally_delta *d = t->pending;
    /* A replaced sheet may net a project back to 0: it leaves the list. */
    size_t kept = 0;
    for (size_t i = 0; i < d->n_touched; i++) {
        uint32_t p = d->touched[i];
        if (d->proj_delta[p] == 0) {
            d->in_touched[p] = 0;
            continue;
        }
        d->touched[kept] = p;
        d->out_ids[kept] = t->projects[p].id;
        d->out_deltas[kept] = d->proj_delta[p];
        kept++;
    }
    d->n_touched = kept;
    tally_tables_seal(t, d);
    for (size_t i = 0; i < t->n_collectors; i++) {
        struct tally_collector *col = &t->collectors[i];
        if (col->pending.batches == 0)
            continue;
        struct tally_delta_mark *m = tally_delta_add_mark(d);
        m->collector = (uint32_t)i;
        m->prev_seq = col->durable_seq;
        m->durable_seq = col->applied_seq;
        m->add = col->pending;
        memset(&col->pending, 0, sizeof(col->pending));
    }
    t->inflight = d;
    t->pending = (d == &t->deltas[0]) ? &t->deltas[1] : &t->deltas[0];
    return d;
}

void tally_checkpoint_commit(struct tally *t)
{
    struct tally_delta *d = t->inflight;
    assert(d);
    for (size_t i = 0; i < d->n_marks; i++) {
        struct tally_delta_mark *m = &d->marks[i];
        struct tally_collector *col = &t->collectors[m->collector];
        col->durable_seq = m->durable_seq;
        tally_totals_add(&col->durable, &m->add);
        tally_totals_add(&t->durable_total, &m->add);
    }
    /* Two's complement: adding a negative delta wraps to the smaller total. */
    for (size_t i = 0; i < d->n_touched; i++)
        t->durable[d->touched[i]] += (uint64_t)d->proj_delta[d->touched[i]];
    tally_tables_commit(t, d);
    tally_delta_reset(d);
    t->inflight = NULL;
}

const struct tally_delta *tally_checkpoint_inflight(const struct tally *t)
{
    return t->inflight;
}
