/* The consultation's state and tallyctl's requests on the loop (docs/consultation.md part
 * B): what each collectors refresh brings (the state row, applicable requests) is applied —
 * a retraction to the tally, a close and a tie rule to this tallyd's state — and rides on
 * the next checkpoint, which completes the requests and carries their events; the embargo is
 * applied to every output (the state callback) before the database hears that it is. */
#include "ingest/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/log.h"
#include "core/xalloc.h"

static void reqs_clear(struct ingest_reqs *q)
{
    store_requests_free(q->reqs, q->n);
    q->reqs = NULL;
    free(q->outcomes);
    q->outcomes = NULL;
    q->n = q->cap = 0;
}

void ingest_requests_cleanup(struct ingest *in)
{
    reqs_clear(&in->reqs[0]);
    reqs_clear(&in->reqs[1]);
    free(in->job_done);
    free(in->job_events);
    free(in->retracted);
}

/* Takes ownership of r (its fields; the struct is copied) with its outcome. */
static void reqs_add(struct ingest_reqs *q, struct store_request *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reqs_add(struct ingest_reqs *q, struct store_request *r, const char *fmt, ...)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 8;
        q->reqs = xreallocarray(q->reqs, q->cap, sizeof(*q->reqs));
        q->outcomes = xreallocarray(q->outcomes, q->cap, sizeof(*q->outcomes));
    }
    q->reqs[q->n] = *r;
    memset(r, 0, sizeof(*r));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->outcomes[q->n], sizeof(q->outcomes[q->n]), fmt, ap);
    va_end(ap);
    q->n++;
}

static bool is_retracted(const struct ingest *in, uint32_t c, uint64_t seq)
{
    for (size_t i = 0; i < in->n_retracted; i++)
        if (in->retracted[i].collector == c && in->retracted[i].seq == seq)
            return true;
    return false;
}

void ingest_retracted_add(struct ingest *in, uint32_t c, uint64_t seq)
{
    in->retracted =
        xgrow(in->retracted, &in->cap_retracted, in->n_retracted + 1, sizeof(*in->retracted));
    in->retracted[in->n_retracted].collector = c;
    in->retracted[in->n_retracted].seq = seq;
    in->n_retracted++;
}

static void apply_retract(struct ingest *in, struct store_request *r)
{
    struct ingest_reqs *q = in->pending_reqs;
    int32_t c = tally_collector_find(in->tally, r->collector_id);
    if (c < 0) {
        reqs_add(q, r, "refused: no collector %s", r->collector_id);
        return;
    }
    if (is_retracted(in, (uint32_t)c, r->seq)) {
        reqs_add(q, r, "refused: batch %s/%llu was retracted already", r->collector_id,
                 (unsigned long long)r->seq);
        return;
    }
    uint32_t *tables = xcalloc(2 * (r->n_tables ? r->n_tables : 1), sizeof(*tables));
    bool ok = true;
    for (size_t i = 0; i < r->n_tables && ok; i++) {
        int32_t k = tally_table_find(in->tally, r->table_ids[i]);
        ok = k >= 0;
        tables[2 * i] = (uint32_t)k;
        tables[2 * i + 1] = r->table_ballots[i];
    }
    int rc = ok ? tally_retract_batch(in->tally, (uint32_t)c, r->seq, r->id, r->counts, r->n_counts,
                                      tables, r->n_tables)
                : -1;
    free(tables);
    if (rc < 0) {
        log_error("retraction of batch %s/%llu refused: its stored counts do not fit what "
                  "this tallyd counts (run tallyctl verify)",
                  r->collector_id, (unsigned long long)r->seq);
        reqs_add(q, r, "refused: the batch's stored counts do not fit the tally (run verify)");
        return;
    }
    ingest_retracted_add(in, (uint32_t)c, r->seq);
    log_info("batch %s/%llu retracted by %s (request %llu): %s", r->collector_id,
             (unsigned long long)r->seq, r->actor, (unsigned long long)r->id, r->reason);
    reqs_add(q, r, "applied");
}

static void apply_request(struct ingest *in, struct store_request *r)
{
    struct ingest_reqs *q = in->pending_reqs;
    if (in->closed) {
        reqs_add(q, r, "refused: the consultation is closed");
        return;
    }
    switch (r->kind) {
    case STORE_REQUEST_RETRACT:
        apply_retract(in, r);
        break;
    case STORE_REQUEST_CLOSE:
        /* From now on no new batch: what is applied goes into this last checkpoint. */
        in->closed = true;
        log_info("consultation closed by %s (request %llu): no new batches; the next "
                 "checkpoint is the final one",
                 r->actor, (unsigned long long)r->id);
        reqs_add(q, r, "applied");
        break;
    case STORE_REQUEST_TIE_RULE:
        if (in->state.tie_rule || in->tie_rule_pending) {
            reqs_add(q, r, "refused: a tie rule is set already");
            break;
        }
        in->tie_rule_pending = true;
        log_info("tie rule 'lot' set by %s (request %llu)", r->actor, (unsigned long long)r->id);
        reqs_add(q, r, "applied");
        break;
    }
}

static void state_from_store(struct ingest_consultation_state *st, const struct store_state *s)
{
    st->embargo = s->embargo;
    st->closed = s->closed;
    st->closed_checkpoint_id = s->closed_checkpoint_id;
    st->closed_at_ms = s->closed_at_us / 1000;
    st->tie_rule = s->tie_rule;
    memcpy(st->tie_seed_hash, s->tie_seed_hash, sizeof(st->tie_seed_hash));
    st->certified = s->certified;
    memcpy(st->certified_hash, s->certified_hash, sizeof(st->certified_hash));
    st->certified_checkpoint_id = s->certified_checkpoint_id;
    st->certified_at_ms = s->certified_at_us / 1000;
}

static void state_changed(struct ingest *in)
{
    if (in->on_state)
        in->on_state(in->on_state_arg);
}

void ingest_state_start(struct ingest *in, const struct store_state *s)
{
    if (s->known) {
        state_from_store(&in->state, s);
        in->closed = s->closed;
    }
    if (in->cfg.embargo && !in->state.embargo) {
        in->state.embargo = true;
        in->set_embargo = true;
    }
    in->embargo_to_write = in->state.embargo ? STORE_EMBARGO_ON : STORE_EMBARGO_OFF;
    if (in->closed)
        log_info("the consultation is closed (checkpoint %llu): batches with a new seq are "
                 "refused",
                 (unsigned long long)in->state.closed_checkpoint_id);
    if (in->state.embargo)
        log_info("embargo on: every output shows progress but no counts");
}

void ingest_requests_take(struct ingest *in, struct store_checkpoint *cp)
{
    if (cp->state.known) {
        struct ingest_consultation_state was = in->state;
        /* The database's embargo wins, except over tallyd --embargo not yet written. */
        bool embargo = in->set_embargo ? true : cp->state.embargo;
        struct ingest_consultation_state now = was;
        state_from_store(&now, &cp->state);
        now.embargo = embargo;
        /* What only this tallyd's checkpoints write is ahead of the row until they commit. */
        if (was.closed && !now.closed) {
            now.closed = true;
            now.closed_checkpoint_id = was.closed_checkpoint_id;
            now.closed_at_ms = was.closed_at_ms;
        }
        if (was.tie_rule && !now.tie_rule) {
            now.tie_rule = true;
            memcpy(now.tie_seed_hash, was.tie_seed_hash, sizeof(now.tie_seed_hash));
        }
        bool changed = memcmp(&was, &now, sizeof(now)) != 0;
        in->state = now;
        if (changed) {
            if (was.embargo != now.embargo)
                log_info("embargo %s", now.embargo ? "on: every output shows progress but no "
                                                     "counts"
                                                   : "off: results are shown");
            if (!was.certified && now.certified)
                log_info("results certified (checkpoint %llu): the status is official",
                         (unsigned long long)now.certified_checkpoint_id);
            state_changed(in);
        }
        /* Every output follows the state now: say so (a no-op when the row says it). */
        in->embargo_to_write = in->state.embargo ? STORE_EMBARGO_ON : STORE_EMBARGO_OFF;
    }
    bool any = false;
    for (size_t i = 0; i < cp->n_requests; i++) {
        apply_request(in, &cp->requests[i]);
        any = true;
    }
    store_requests_free(cp->requests, cp->n_requests);
    cp->requests = NULL;
    cp->n_requests = 0;
    if (any)
        tally_force_checkpoint(in->tally);
}

const struct store_request *ingest_request_of(const struct ingest *in, uint64_t id)
{
    const struct ingest_reqs *q = in->inflight_reqs;
    for (size_t i = 0; i < q->n; i++)
        if (q->reqs[i].id == id)
            return &q->reqs[i];
    return NULL;
}

void ingest_requests_seal(struct ingest *in, int64_t at_us)
{
    struct ingest_reqs *q = in->pending_reqs;
    in->pending_reqs = in->inflight_reqs;
    in->inflight_reqs = q;
    in->job_done = xgrow(in->job_done, &in->cap_job_done, q->n, sizeof(*in->job_done));
    in->job_events = xgrow(in->job_events, &in->cap_job_events, q->n, sizeof(*in->job_events));
    size_t n_events = 0;
    for (size_t i = 0; i < q->n; i++) {
        const struct store_request *r = &q->reqs[i];
        bool applied = strcmp(q->outcomes[i], "applied") == 0;
        in->job_done[i] = (struct store_request_done){r->id, at_us, q->outcomes[i]};
        if (!applied || r->kind == STORE_REQUEST_RETRACT)
            continue;
        struct store_event *e = &in->job_events[n_events++];
        memset(e, 0, sizeof(*e));
        e->request_id = r->id;
        e->kind = r->kind == STORE_REQUEST_CLOSE ? STORE_EVENT_CLOSE : STORE_EVENT_TIE_RULE;
        e->actor = r->actor;
        e->at_us = at_us;
        if (e->kind == STORE_EVENT_TIE_RULE) {
            e->seed = r->seed;
            e->seed_len = r->seed_len;
            crypto_generichash(e->seed_hash, sizeof(e->seed_hash), r->seed, r->seed_len, NULL, 0);
        }
    }
    in->job.done = in->job_done;
    in->job.n_done = q->n;
    in->job.events = in->job_events;
    in->job.n_events = n_events;
}

void ingest_requests_committed(struct ingest *in, uint64_t checkpoint_id)
{
    struct ingest_reqs *q = in->inflight_reqs;
    bool changed = false;
    for (size_t i = 0; i < in->job.n_events; i++) {
        const struct store_event *e = &in->job.events[i];
        if (e->kind == STORE_EVENT_CLOSE) {
            in->state.closed = true;
            in->state.closed_checkpoint_id = checkpoint_id;
            in->state.closed_at_ms = e->at_us / 1000;
            log_info("final checkpoint %llu committed: the consultation is closed",
                     (unsigned long long)checkpoint_id);
        } else {
            in->state.tie_rule = true;
            memcpy(in->state.tie_seed_hash, e->seed_hash, sizeof(e->seed_hash));
            in->tie_rule_pending = false;
        }
        changed = true;
    }
    reqs_clear(q);
    if (changed)
        state_changed(in);
}

void ingest_consultation_state(const struct ingest *in, struct ingest_consultation_state *out)
{
    *out = in->state;
}

void ingest_set_state_cb(struct ingest *in, ingest_state_cb cb, void *arg)
{
    in->on_state = cb;
    in->on_state_arg = arg;
}
