/* The checker: it owns the truth (the batches each collector generated, fixed from the
 * seed) and judges the record and the live tally against it with code of its own, never
 * with src/tally's: a replay of the durable history from nothing, the accepted set of
 * ballots computed without any order, conservation of every vote, and agreement of the live
 * tally with the record. Also the trace. */
#include "sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sim_log(struct sim *s, const char *fmt, ...)
{
    if (!s->lines)
        return;
    char *line = s->lines[s->n_lines % SIM_MAX_TRACE];
    int o = snprintf(line, sizeof(s->lines[0]), "%5ld %s", s->step, "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + o, sizeof(s->lines[0]) - (size_t)o, fmt, ap);
    va_end(ap);
    s->n_lines++;
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->violation[0])
        return; /* the first one says most */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->violation, sizeof(s->violation), fmt, ap);
    va_end(ap);
    SIM_EV(s, "VIOLATION: %s", s->violation);
}

int sim_project_slot(const struct sim *s, uint32_t id)
{
    for (int i = 0; i < s->cfg.n_projects; i++)
        if (s->cfg.project_ids[i] == id)
            return i;
    return -1;
}

int sim_owner(const struct sim *s, int c)
{
    return s->coll[c].twin_of >= 0 ? s->coll[c].twin_of : c;
}

bool sim_has_twin(const struct sim *s, int owner)
{
    for (int c = 0; c < s->cfg.n_coll; c++)
        if (s->coll[c].twin_of == owner)
            return true;
    return false;
}

const struct sim_batch *sim_content(const struct sim *s, int owner, uint64_t seq,
                                    const uint8_t *digest)
{
    for (int c = 0; c < s->cfg.n_coll; c++) {
        const struct sim_collector *col = &s->coll[c];
        if (sim_owner(s, c) == owner && seq >= 1 && seq <= (uint64_t)col->n_gen &&
            memcmp(col->gen[seq - 1].digest, digest, TALLY_DIGEST_BYTES) == 0)
            return &col->gen[seq - 1];
    }
    return NULL;
}

bool sim_allowed(const struct sim *s, int c, int slot)
{
    const struct sim_collector *col = &s->coll[sim_owner(s, c)]; /* tallyd's, by id */
    return !col->restricted || (col->circuits_mask >> s->cfg.circuit_of[slot] & 1);
}

static bool totals_equal(const struct tally_totals *t, const struct sim_totals *x)
{
    return t->batches == x->batches && t->votes == x->votes && t->accepted == x->accepted &&
           t->duplicate == x->duplicate && t->rejected == x->rejected;
}

void sim_check_server(struct sim *s)
{
    const struct sim_server *sv = &s->srv;
    const struct sim_store *st = &s->store;
    if (!sv->up || s->violation[0] || s->lean)
        return;
    for (int c = 0; c < s->cfg.n_coll; c++) {
        if (s->coll[c].twin_of >= 0)
            continue;
        const struct tally_collector *col = tally_collector_at(sv->t, (uint32_t)sv->tidx[c]);
        if (col->durable_seq != st->durable_seq[c] || !totals_equal(&col->durable, &st->totals[c]))
            sim_fail(s,
                     "tally and record disagree on %s: durable_seq %llu vs %llu, batches %llu "
                     "vs %llu",
                     s->coll[c].id, (unsigned long long)col->durable_seq,
                     (unsigned long long)st->durable_seq[c],
                     (unsigned long long)col->durable.batches,
                     (unsigned long long)st->totals[c].batches);
        if (col->applied_seq < col->durable_seq)
            sim_fail(s, "%s: applied_seq %llu below durable_seq %llu", s->coll[c].id,
                     (unsigned long long)col->applied_seq, (unsigned long long)col->durable_seq);
    }
    const uint64_t *dv = tally_durable_votes(sv->t);
    for (size_t i = 0; i < tally_project_count(sv->t); i++) {
        int slot = sim_project_slot(s, tally_project_at(sv->t, i)->id);
        if (slot < 0 || dv[i] != st->proj_votes[slot])
            sim_fail(s, "project %u: durable votes %llu in the tally, %llu in the record",
                     tally_project_at(sv->t, i)->id, (unsigned long long)dv[i],
                     (unsigned long long)(slot < 0 ? 0 : st->proj_votes[slot]));
    }
    if (tally_ballot_count(sv->t) < st->n_tokens)
        sim_fail(s, "the ballot set holds %zu tokens, the record %zu", tally_ballot_count(sv->t),
                 st->n_tokens);
}

/* A set of tokens for the checker (no keyed hash: it does not need one). */
struct ref_set {
    uint64_t slot[2 * SIM_MAX_TOKENS + 1];
    bool used[2 * SIM_MAX_TOKENS + 1];
    size_t count;
};

/* The slot of tok, or of the empty slot where it would go. */
static size_t ref_find(const struct ref_set *r, uint64_t tok)
{
    size_t cap = sizeof(r->slot) / sizeof(r->slot[0]);
    size_t i = (size_t)((tok * 0x9e3779b97f4a7c15ULL) >> 40) % cap;
    while (r->used[i] && r->slot[i] != tok)
        i = (i + 1) % cap;
    return i;
}

static bool ref_insert(struct ref_set *r, uint64_t tok)
{
    size_t i = ref_find(r, tok);
    if (r->used[i])
        return false;
    r->used[i] = true;
    r->slot[i] = tok;
    r->count++;
    return true;
}

static bool ref_contains(const struct ref_set *r, uint64_t tok)
{
    return r->used[ref_find(r, tok)];
}

/* Everything durable, replayed from nothing in the order tallyd applied it: each batch's
 * figures, the per-project sums and the token pages must come out as stored. */
static void check_replay(struct sim *s)
{
    const struct sim_store *st = &s->store;
    static struct ref_set seen; /* single-threaded; large for the stack under ASan */
    memset(&seen, 0, sizeof(seen));
    uint64_t votes[SIM_MAX_PROJECTS] = {0};
    for (size_t h = 0; h < st->n_hist && !s->violation[0]; h++) {
        int c = st->hist[h] >> 8;
        uint64_t seq = st->hist[h] & 0xff;
        const struct sim_batch *b = sim_content(s, c, seq, st->batches[c][seq].digest);
        uint32_t acc = 0, dup = 0, unk = 0, na = 0;
        for (uint32_t v = 0; v < b->n; v++) {
            int p = sim_project_slot(s, b->projects[v]);
            if (p < 0)
                unk++;
            else if (!sim_allowed(s, c, p))
                na++;
            else if (!ref_insert(&seen, b->ballots[v]))
                dup++;
            else {
                acc++;
                votes[p]++;
            }
        }
        const struct sim_stored_batch *sb = &st->batches[c][seq];
        if (sb->votes != b->n || sb->accepted != acc || sb->duplicate != dup ||
            sb->rejected_unknown != unk || sb->not_allowed != na)
            sim_fail(s,
                     "replay: batch %s/%llu stored as %u/%u/%u/%u/%u (votes/accepted/dup/"
                     "unknown/not allowed), replay says %u/%u/%u/%u/%u",
                     s->coll[c].id, (unsigned long long)seq, sb->votes, sb->accepted, sb->duplicate,
                     sb->rejected_unknown, sb->not_allowed, b->n, acc, dup, unk, na);
    }
    for (int p = 0; p < s->cfg.n_projects && !s->violation[0]; p++)
        if (votes[p] != st->proj_votes[p])
            sim_fail(s, "replay: project %u has %llu votes in the record, %llu replayed",
                     s->cfg.project_ids[p], (unsigned long long)st->proj_votes[p],
                     (unsigned long long)votes[p]);
    if (!s->violation[0] && seen.count != st->n_tokens)
        sim_fail(s, "replay: %zu accepted ballots, %zu stored tokens", seen.count, st->n_tokens);
    for (size_t i = 0; i < st->n_tokens && !s->violation[0]; i++)
        if (!ref_contains(&seen, st->tokens[i]))
            sim_fail(s, "replay: stored token %016llx was never accepted",
                     (unsigned long long)st->tokens[i]);
}

/* Nothing lost: a process that did not stop has every batch it spooled in the record with
 * its content and its spool empty; one that stopped (another process on its id) has what it
 * released in the record and keeps the rest. */
static void check_nothing_lost(struct sim *s)
{
    const struct sim_store *st = &s->store;
    for (int c = 0; c < s->cfg.n_coll && !s->violation[0]; c++) {
        const struct sim_collector *col = &s->coll[c];
        int o = sim_owner(s, c);
        bool done = col->state != CS_FATAL;
        if (done && (col->durable_seq != (uint64_t)col->n_gen ||
                     col->next_seq != (uint64_t)col->n_gen + 1 ||
                     st->durable_seq[o] < (uint64_t)col->n_gen ||
                     (!sim_has_twin(s, o) && col->twin_of < 0 &&
                      st->durable_seq[o] != (uint64_t)col->n_gen)))
            sim_fail(s, "%s: generated %d batches; spool durable %llu, record %llu", col->id,
                     col->n_gen, (unsigned long long)col->durable_seq,
                     (unsigned long long)st->durable_seq[o]);
        uint64_t upto = done ? (uint64_t)col->n_gen : col->durable_seq;
        for (uint64_t q = 1; q <= upto && !s->violation[0]; q++) {
            const struct sim_stored_batch *sb = &st->batches[o][q];
            if (!sb->have || memcmp(sb->digest, col->gen[q - 1].digest, TALLY_DIGEST_BYTES) != 0)
                sim_fail(s, "lost: batch %s/%llu (process %d) is not in the record", col->id,
                         (unsigned long long)q, c);
        }
    }
}

/* The truth without any order, over what the record holds (with one process per id, that
 * is every batch generated): which ballots count at all, how many votes of each kind. */
static void check_truth(struct sim *s)
{
    const struct sim_store *st = &s->store;
    static struct ref_set valid;
    memset(&valid, 0, sizeof(valid));
    static uint32_t chose[2 * SIM_MAX_TOKENS + 1]; /* by valid's slot: projects chosen */
    memset(chose, 0, sizeof(chose));
    uint64_t gen_votes = 0, gen_unknown = 0, gen_not_allowed = 0, gen_valid = 0;
    uint64_t sum_votes = 0, sum_acc = 0, sum_dup = 0, sum_unk = 0, sum_na = 0;
    for (int c = 0; c < s->cfg.n_coll && !s->violation[0]; c++) {
        if (s->coll[c].twin_of >= 0)
            continue;
        struct sim_totals x = {0};
        for (uint64_t q = 1; q <= st->durable_seq[c] && !s->violation[0]; q++) {
            const struct sim_stored_batch *sb = &st->batches[c][q];
            const struct sim_batch *b = sb->have ? sim_content(s, c, q, sb->digest) : NULL;
            if (!b) {
                sim_fail(s, "unexpected: batch %s/%llu in the record is nobody's", s->coll[c].id,
                         (unsigned long long)q);
                break;
            }
            for (uint32_t v = 0; v < b->n; v++) {
                int p = sim_project_slot(s, b->projects[v]);
                gen_votes++;
                if (p < 0)
                    gen_unknown++;
                else if (!sim_allowed(s, c, p))
                    gen_not_allowed++;
                else {
                    gen_valid++;
                    ref_insert(&valid, b->ballots[v]);
                    chose[ref_find(&valid, b->ballots[v])] |= 1u << p;
                }
            }
            if (sb->accepted + sb->duplicate + sb->rejected_unknown + sb->not_allowed != sb->votes)
                sim_fail(s, "batch %s/%llu: its figures do not add up to its votes", s->coll[c].id,
                         (unsigned long long)q);
            x.batches++;
            x.votes += sb->votes;
            x.accepted += sb->accepted;
            x.duplicate += sb->duplicate;
            x.rejected += sb->rejected_unknown + sb->not_allowed;
            x.not_allowed += sb->not_allowed;
            sum_votes += sb->votes;
            sum_acc += sb->accepted;
            sum_dup += sb->duplicate;
            sum_unk += sb->rejected_unknown;
            sum_na += sb->not_allowed;
        }
        if (!s->violation[0] && memcmp(&x, &st->totals[c], sizeof(x)) != 0)
            sim_fail(s, "%s: the record's collector totals are not the sum of its batches",
                     s->coll[c].id);
    }
    if (s->violation[0])
        return;
    if (sum_votes != gen_votes || sum_unk != gen_unknown || sum_na != gen_not_allowed ||
        sum_acc != valid.count || sum_dup != gen_valid - valid.count)
        sim_fail(s,
                 "conservation: generated %llu votes (%llu unknown project, %llu not allowed, "
                 "%llu distinct ballots of %llu valid); record %llu (%llu, %llu, %llu accepted, "
                 "%llu duplicate)",
                 (unsigned long long)gen_votes, (unsigned long long)gen_unknown,
                 (unsigned long long)gen_not_allowed, (unsigned long long)valid.count,
                 (unsigned long long)gen_valid, (unsigned long long)sum_votes,
                 (unsigned long long)sum_unk, (unsigned long long)sum_na,
                 (unsigned long long)sum_acc, (unsigned long long)sum_dup);
    for (size_t i = 0; i < st->n_tokens && !s->violation[0]; i++)
        if (!ref_contains(&valid, st->tokens[i]))
            sim_fail(s, "unexpected: stored token %016llx is no valid ballot",
                     (unsigned long long)st->tokens[i]);
    /* Per project, whatever the order: at least the ballots that only ever chose it, at most
     * those that chose it once. */
    uint64_t lo[SIM_MAX_PROJECTS] = {0}, hi[SIM_MAX_PROJECTS] = {0};
    for (size_t i = 0; i < sizeof(chose) / sizeof(chose[0]); i++)
        for (int p = 0; p < s->cfg.n_projects; p++)
            if (chose[i] >> p & 1) {
                hi[p]++;
                lo[p] += chose[i] == 1u << p;
            }
    for (int p = 0; p < s->cfg.n_projects && !s->violation[0]; p++)
        if (st->proj_votes[p] < lo[p] || st->proj_votes[p] > hi[p])
            sim_fail(s, "project %u: %llu votes, the truth allows %llu..%llu",
                     s->cfg.project_ids[p], (unsigned long long)st->proj_votes[p],
                     (unsigned long long)lo[p], (unsigned long long)hi[p]);
}

void sim_check_final(struct sim *s)
{
    check_nothing_lost(s);
    if (!s->violation[0])
        check_truth(s);
    if (!s->violation[0])
        check_replay(s);
    bool lean = s->lean;
    s->lean = false;
    sim_check_server(s);
    s->lean = lean;
    const struct tally *t = s->srv.t;
    if (s->violation[0])
        return;
    /* The live tally, with nothing pending, says what the record says. */
    const struct tally_totals *a = tally_applied_totals(t), *d = tally_durable_totals(t);
    if (memcmp(a, d, sizeof(*a)) != 0 || tally_backlog_votes(t) != 0)
        sim_fail(s, "quiescent tally: applied totals differ from durable ones");
    for (size_t i = 0; i < tally_project_count(t); i++)
        if (tally_votes_at(t, i) != tally_durable_votes(t)[i])
            sim_fail(s, "quiescent tally: project %u counts %llu, durable %llu",
                     tally_project_at(t, i)->id, (unsigned long long)tally_votes_at(t, i),
                     (unsigned long long)tally_durable_votes(t)[i]);
    if (tally_ballot_count(t) != s->store.n_tokens)
        sim_fail(s, "quiescent tally: %zu ballots, the record %zu tokens", tally_ballot_count(t),
                 s->store.n_tokens);
}
