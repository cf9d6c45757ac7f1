/* The checkpoint schedule: sealing the pending delta for the store thread, the durable acks
 * after each COMMIT, group commit, the collectors refresh, the progress line and the final
 * checkpoint at shutdown. Runs on the loop, except ingest_store_done(), which runs on the
 * store thread and only posts to the loop. */
#include "ingest/internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crashpoint.h"
#include "core/loopwatch.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "net/net.h"
#include "wire/wire.h"

/* ---- checkpoints ------------------------------------------------------------------ */

/* The delta's (id, n) pairs handed to the store as interleaved uint32s. */
_Static_assert(sizeof(struct tally_count) == 2 * sizeof(uint32_t) &&
                   offsetof(struct tally_count, n) == sizeof(uint32_t),
               "struct tally_count must be two packed uint32s");

static const uint32_t *pairs_of(const struct tally_count *c)
{
    return c ? &c->id : NULL;
}

void ingest_job_cleanup(struct ingest *in)
{
    free(in->job_sheets);
    free(in->job_corrections);
    free(in->job_reasons);
    free(in->job_corr_ids);
    free(in->job_corr_deltas);
}

/* The sheets and corrections of d as the store takes them; corrections get their time
 * (now: the checkpoint that records them is sealed now) and their reason text. */
static void job_sheets_corrections(struct ingest *in, const struct tally_delta *d)
{
    in->job_sheets =
        xgrow(in->job_sheets, &in->cap_job_sheets, d->n_sheets, sizeof(*in->job_sheets));
    for (size_t i = 0; i < d->n_sheets; i++) {
        const struct tally_delta_sheet *x = &d->sheets[i];
        in->job_sheets[i] = (struct store_sheet){
            .table = x->table,
            .version = x->version,
            .collector_id = in->names[x->collector],
            .seq = x->seq,
            .digest = x->digest,
            .rows = x->n_rows ? pairs_of(&d->sheet_rows[x->rows_off]) : NULL,
            .n_rows = x->n_rows,
            .blank = x->blank,
            .null_ballots = x->null_ballots,
        };
    }
    size_t n = d->n_corrections, n_deltas = 0;
    for (size_t i = 0; i < n; i++)
        n_deltas += d->corrections[i].n_deltas;
    in->job_corrections =
        xgrow(in->job_corrections, &in->cap_job_corrections, n, sizeof(*in->job_corrections));
    in->job_reasons = xgrow(in->job_reasons, &in->cap_job_reasons, n, sizeof(*in->job_reasons));
    size_t cap = in->cap_job_corr;
    in->job_corr_ids = xgrow(in->job_corr_ids, &cap, n_deltas, sizeof(*in->job_corr_ids));
    cap = in->cap_job_corr;
    in->job_corr_deltas = xgrow(in->job_corr_deltas, &cap, n_deltas, sizeof(*in->job_corr_deltas));
    in->cap_job_corr = cap;
    int64_t at_us = ingest_wall_ms(in) * 1000;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tally_delta_correction *x = &d->corrections[i];
        const char *actor = in->names[x->collector], *reason = in->job_reasons[i];
        if (x->kind == 1) {
            /* The request stays in flight until this job commits: its strings, whole. */
            const struct store_request *r = ingest_request_of(in, x->tag);
            actor = r ? r->actor : "tallyctl";
            reason = r ? r->reason : "";
        } else {
            snprintf(in->job_reasons[i], sizeof(in->job_reasons[i]),
                     "sheet version %u replaces version %u", x->to_version, x->from_version);
        }
        for (size_t j = 0; j < x->n_deltas; j++) {
            in->job_corr_ids[k + j] = d->correction_deltas[x->deltas_off + j].id;
            in->job_corr_deltas[k + j] = d->correction_deltas[x->deltas_off + j].delta;
        }
        in->job_corrections[i] = (struct store_correction){
            .kind = x->kind == 1 ? STORE_CORRECTION_RETRACT : STORE_CORRECTION_SHEET,
            .actor = actor,
            .reason = reason,
            .at_us = at_us,
            .table = x->table == TALLY_NO_TABLE ? -1 : (int64_t)x->table,
            .collector_id = in->names[x->collector],
            .seq = x->seq,
            .from_version = x->from_version,
            .to_version = x->to_version,
            .project_ids = x->n_deltas ? in->job_corr_ids + k : NULL,
            .deltas = x->n_deltas ? in->job_corr_deltas + k : NULL,
            .n_deltas = x->n_deltas,
            .blank_delta = x->blank_delta,
            .null_delta = x->null_delta,
            .ballots_delta = x->ballots_delta,
        };
        k += x->n_deltas;
    }
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void ingest_correction_keep(struct ingest *in, const struct ingest_correction *c)
{
    in->corrections = xgrow(in->corrections, &in->cap_corrections, in->n_corrections + 1,
                            sizeof(*in->corrections));
    struct ingest_correction *x = &in->corrections[in->n_corrections++];
    *x = *c;
    x->actor = xstrdup(c->actor ? c->actor : "");
    x->reason = xstrdup(c->reason ? c->reason : "");
    x->table_id = dup_or_null(c->table_id);
    x->collector_id = dup_or_null(c->collector_id);
    uint32_t *ids = xcalloc(c->n_deltas ? c->n_deltas : 1, sizeof(*ids));
    int64_t *deltas = xcalloc(c->n_deltas ? c->n_deltas : 1, sizeof(*deltas));
    if (c->n_deltas) {
        memcpy(ids, c->project_ids, c->n_deltas * sizeof(*ids));
        memcpy(deltas, c->deltas, c->n_deltas * sizeof(*deltas));
    }
    x->project_ids = ids;
    x->deltas = deltas;
}

void ingest_corrections_cleanup(struct ingest *in)
{
    for (size_t i = 0; i < in->n_corrections; i++) {
        struct ingest_correction *x = &in->corrections[i];
        free((char *)x->actor);
        free((char *)x->reason);
        free((char *)x->table_id);
        free((char *)x->collector_id);
        free((uint32_t *)x->project_ids);
        free((int64_t *)x->deltas);
    }
    free(in->corrections);
}

/* The job's corrections committed as checkpoint id: kept for the API, numbered as the
 * store numbered them (one after the other from the last recovered). */
static void keep_job_corrections(struct ingest *in, uint64_t checkpoint_id)
{
    for (size_t i = 0; i < in->job.n_corrections; i++) {
        const struct store_correction *x = &in->job.corrections[i];
        struct ingest_correction c = {
            .id = in->n_corrections ? in->corrections[in->n_corrections - 1].id + 1 : 1,
            .checkpoint_id = checkpoint_id,
            .kind = (int)x->kind,
            .actor = x->actor,
            .reason = x->reason,
            .at_ms = x->at_us / 1000,
            .table_id = x->table >= 0 ? in->table_names[x->table] : NULL,
            .collector_id = x->collector_id,
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
        ingest_correction_keep(in, &c);
    }
}

/* Points the store job at the sealed delta: no copies of tokens, digests or counts. */
static void job_from_delta(struct ingest *in, struct tally_delta *d)
{
    in->job_batches =
        xgrow(in->job_batches, &in->cap_job_batches, d->n_batches, sizeof(*in->job_batches));
    in->job_marks = xgrow(in->job_marks, &in->cap_job_marks, d->n_marks, sizeof(*in->job_marks));
    for (size_t i = 0; i < d->n_batches; i++) {
        const struct tally_delta_batch *b = &d->batches[i];
        struct store_batch *sb = &in->job_batches[i];
        memset(sb, 0, sizeof(*sb));
        sb->collector_id = in->names[b->collector];
        sb->seq = b->seq;
        sb->digest = b->digest;
        sb->votes = b->votes;
        sb->accepted = b->accepted;
        sb->duplicate = b->duplicate;
        sb->rejected_unknown = b->rejected_unknown;
        sb->rejected_not_allowed = b->rejected_not_allowed;
        sb->kind = b->kind ? STORE_BATCH_SHEETS : STORE_BATCH_BALLOTS;
        memcpy(sb->reasons, b->reasons, sizeof(sb->reasons));
        sb->sheets = b->sheets;
        sb->sheets_accepted = b->sheets_accepted;
        sb->sheets_duplicate = b->sheets_duplicate;
        sb->counts = b->n_counts ? pairs_of(&d->batch_counts[b->counts_off]) : NULL;
        sb->n_counts = b->n_counts;
        sb->tables = b->n_tables ? pairs_of(&d->batch_tables[b->tables_off]) : NULL;
        sb->n_tables = b->n_tables;
    }
    for (size_t i = 0; i < d->n_marks; i++) {
        const struct tally_delta_mark *m = &d->marks[i];
        struct store_watermark *w = &in->job_marks[i];
        w->collector_id = in->names[m->collector];
        w->prev_seq = m->prev_seq;
        w->durable_seq = m->durable_seq;
        w->batches = m->add.batches;
        w->votes = m->add.votes;
        w->accepted = m->add.accepted;
        w->duplicate = m->add.duplicate;
        w->rejected = m->add.rejected;
        w->sheets = m->add.sheets;
        w->sheets_accepted = m->add.sheets_accepted;
        w->sheets_duplicate = m->add.sheets_duplicate;
        w->sheets_rejected = m->add.sheets_rejected;
    }
    memset(&in->job, 0, sizeof(in->job));
    int64_t at_us = ingest_wall_ms(in) * 1000;
    ingest_requests_seal(in, at_us);
    job_sheets_corrections(in, d);
    in->job.batches = in->job_batches;
    in->job.n_batches = d->n_batches;
    in->job.project_ids = d->out_ids;
    in->job.deltas = d->out_deltas;
    in->job.n_deltas = d->n_touched;
    in->job.marks = in->job_marks;
    in->job.n_marks = d->n_marks;
    in->job.tokens = d->tokens;
    in->job.n_tokens = d->n_tokens;
    in->job.table_names = in->table_names;
    in->job.n_table_names = in->n_table_names;
    in->job.table_idx = d->out_tables;
    in->job.table_deltas = d->out_table_deltas;
    in->job.n_table_deltas = d->n_out_tables;
    in->job.sheets = in->job_sheets;
    in->job.n_sheets = d->n_sheets;
    in->job.corrections = in->job_corrections;
    in->job.n_corrections = d->n_corrections;
}

void ingest_checkpoint_maybe_start(struct ingest *in)
{
    if (in->job_inflight || !in->started)
        return;
    struct tally_delta *d = tally_checkpoint_seal(in->tally);
    if (d) {
        job_from_delta(in, d);
        in->job_is_checkpoint = true;
        in->inflight_since_ms = in->pending_since_ms;
        in->pending_since_ms = 0;
    } else if (!in->shutting_down && in->now_ms - in->last_refresh_ms >= ingest_refresh_ms(in)) {
        memset(&in->job, 0, sizeof(in->job));
        in->job_is_checkpoint = false;
    } else {
        return;
    }
    /* A busy tallyd seals a checkpoint at every tick: the collectors list (new ones, a
     * disable-collector, a new pin) rides along at most every --refresh-ms. */
    if (!in->shutting_down && in->now_ms - in->last_refresh_ms >= ingest_refresh_ms(in)) {
        in->job.refresh_collectors = true;
        in->last_refresh_ms = in->now_ms;
        /* The embargo every output applies, and tallyd --embargo's, ride on refreshes. */
        in->job.embargo_applied = in->embargo_to_write;
        in->job.set_embargo = in->set_embargo;
    }
    clock_gettime(CLOCK_MONOTONIC, &in->job_started);
    if (store_worker_submit(in->worker, &in->job) != 0) {
        log_error("store worker refused a job while idle (bug)");
        abort();
    }
    in->job_inflight = true;
}

void ingest_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct ingest *in = arg;
    in->now_ms = ingest_monotonic_ms(in);
    ingest_checkpoint_maybe_start(in);
}

/* Runs on the store thread: hand the outcome to the loop and return. */
void ingest_store_done(void *arg, struct store_checkpoint *cp, int rc,
                       struct store_collector *collectors, size_t n_collectors)
{
    (void)cp;
    struct ingest *in = arg;
    pthread_mutex_lock(&in->mbox_lock);
    in->mbox_full = true;
    in->mbox_rc = rc;
    in->mbox_collectors = collectors;
    in->mbox_n_collectors = n_collectors;
    pthread_mutex_unlock(&in->mbox_lock);
    event_active(in->done_ev, 0, 0);
}

static void send_durable_acks(struct ingest *in, const uint32_t *collectors, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t idx = collectors[i];
        struct net_conn *c = in->conn_of[idx];
        if (!c)
            continue;
        const struct tally_collector *col = tally_collector_at(in->tally, idx);
        Tally__CollectorTotals totals = TALLY__COLLECTOR_TOTALS__INIT;
        ingest_totals_to_pb(&col->durable, &totals);
        Tally__Ack ack = TALLY__ACK__INIT;
        ack.durable_seq = col->durable_seq;
        ack.durable_totals = &totals;
        Tally__Frame f = TALLY__FRAME__INIT;
        f.msg_case = TALLY__FRAME__MSG_ACK;
        f.ack = &ack;
        net_conn_send(c, &f);
        TALLY_CRASH_POINT("mid_ack");
    }
}

void ingest_finish_shutdown_if_done(struct ingest *in)
{
    if (!in->shutting_down || in->finished || in->job_inflight || tally_has_pending(in->tally))
        return;
    in->finished = true;
    log_info("final checkpoint %llu committed; %llu votes applied, all durable",
             (unsigned long long)in->last_checkpoint_id,
             (unsigned long long)tally_applied_totals(in->tally)->votes);
    /* Give the last durable acks a moment to leave before the loop ends. */
    net_server_close_all(in->net, "tallyd is stopping");
    struct timeval flush = {0, 300 * 1000};
    event_base_loopexit(in->base, &flush);
}

void ingest_done_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct ingest *in = arg;
    pthread_mutex_lock(&in->mbox_lock);
    bool full = in->mbox_full;
    int rc = in->mbox_rc;
    struct store_collector *list = in->mbox_collectors;
    size_t n_list = in->mbox_n_collectors;
    in->mbox_full = false;
    in->mbox_collectors = NULL;
    pthread_mutex_unlock(&in->mbox_lock);
    if (!full)
        return;
    in->job_inflight = false;

    if (rc != STORE_OK) {
        log_error("checkpoint %llu cannot be written (the database disagrees with this "
                  "tallyd; see above): stopping without acknowledging it",
                  (unsigned long long)in->last_checkpoint_id + 1);
        in->exit_status = 1;
        store_collectors_free(list, n_list);
        event_base_loopexit(in->base, NULL);
        return;
    }
    if (in->job_is_checkpoint) {
        const struct tally_delta *d = tally_checkpoint_inflight(in->tally);
        in->last_checkpoint_id = in->job.id;
        memcpy(in->head_hash, in->job.hash, sizeof(in->head_hash));
        log_debug("checkpoint %llu committed: %zu batches, %llu votes",
                  (unsigned long long)in->job.id, d->n_batches, (unsigned long long)d->votes);
        in->acked = xgrow(in->acked, &in->cap_acked, d->n_marks, sizeof(*in->acked));
        size_t n_acked = d->n_marks;
        for (size_t i = 0; i < n_acked; i++)
            in->acked[i] = d->marks[i].collector;
        in->changed = xgrow(in->changed, &in->cap_changed, d->n_touched, sizeof(*in->changed));
        size_t n_changed = d->n_touched;
        if (n_changed) /* a checkpoint of only duplicates and rejections touches nothing */
            memcpy(in->changed, d->touched, n_changed * sizeof(*in->changed));
        uint64_t cp_id = in->job.id;
        keep_job_corrections(in, cp_id);
        ingest_requests_committed(in, cp_id);
        /* Watermarks move (and the delta is emptied) before the acks are built, so
         * they carry the new values. */
        tally_checkpoint_commit(in->tally);
        in->inflight_since_ms = 0;
        send_durable_acks(in, in->acked, n_acked);
        ingest_backpressure_check(in);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - in->job_started.tv_sec) +
                      (double)(now.tv_nsec - in->job_started.tv_nsec) / 1e9;
        in->checkpoints++;
        in->last_commit_ms = ingest_wall_ms(in);
        if (in->on_durable)
            in->on_durable(in->on_durable_arg, cp_id, secs, in->changed, n_changed);
    }
    for (size_t i = 0; i < n_list; i++) {
        int32_t idx = tally_collector_find(in->tally, list[i].id);
        if (idx < 0) {
            struct tally_totals t = {
                .batches = list[i].batches,
                .votes = list[i].votes,
                .accepted = list[i].accepted,
                .duplicate = list[i].duplicate,
                .rejected = list[i].rejected,
                .rejected_not_allowed = list[i].rejected_not_allowed,
                .sheets = list[i].sheets,
                .sheets_accepted = list[i].sheets_accepted,
                .sheets_duplicate = list[i].sheets_duplicate,
                .sheets_rejected = list[i].sheets_rejected,
            };
            idx = (int32_t)ingest_collector_add(in, list[i].id, list[i].durable_seq, &t);
            log_info("collector '%s' registered", list[i].id);
        }
        ingest_collector_update(in, (uint32_t)idx, &list[i]);
    }
    store_collectors_free(list, n_list);
    if (in->job.set_embargo && in->job.state.known)
        in->set_embargo = false; /* written with this refresh */
    ingest_requests_take(in, &in->job);
    /* Group commit: what piled up while this checkpoint was being written goes at once,
     * instead of waiting for the next tick. */
    if (in->shutting_down || tally_has_pending(in->tally)) {
        in->now_ms = ingest_monotonic_ms(in);
        ingest_checkpoint_maybe_start(in);
    }
    ingest_finish_shutdown_if_done(in);
}

void ingest_progress_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct ingest *in = arg;
    const struct tally_totals *t = tally_applied_totals(in->tally);
    if (t->votes == in->progress_votes)
        return;
    log_info("votes %llu (+%llu/s) accepted %llu duplicate %llu rejected %llu | ballots %zu | "
             "backlog %llu | checkpoint %llu | collectors connected %zu",
             (unsigned long long)t->votes,
             (unsigned long long)((t->votes - in->progress_votes) / PROGRESS_SEC),
             (unsigned long long)t->accepted, (unsigned long long)t->duplicate,
             (unsigned long long)t->rejected, tally_ballot_count(in->tally),
             (unsigned long long)tally_backlog_votes(in->tally),
             (unsigned long long)in->last_checkpoint_id, net_server_conn_count(in->net));
    in->progress_votes = t->votes;
}

void ingest_grace_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct ingest *in = arg;
    log_error("PostgreSQL did not take the final checkpoint within %u ms: exiting with "
              "%llu votes not durable (collectors still hold them and will resend)",
              in->cfg.shutdown_grace_ms, (unsigned long long)tally_backlog_votes(in->tally));
    in->exit_status = 1;
    event_base_loopexit(in->base, NULL);
}
