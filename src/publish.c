/* Publishing durable state to the HTTP API. Owns the catalog the API borrows, the
 * collector-status buffer and the checkpoint-duration histogram; reads ingest only
 * through its read-only accessors, on the loop. Carries the consultation's status
 * (embargo, close, tie rule, certification) into every snapshot, and hands receipt
 * requests from the API to the receipts worker. */
#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "core/loopwatch.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/xalloc.h"
#include "http/http.h"
#include "ingest/ingest.h"
#include "receipts/receipts.h"
#include "tally/tally.h"

struct publish {
    struct store_catalog src; /* owns the strings */
    struct http_catalog catalog;
    struct http_catalog_project *projects;
    struct http_catalog_circuit *circuits;
    struct http_server *http;
    struct ingest *in;
    uint32_t *min_votes; /* per project, dense order */
    struct http_collector_status *cols;
    size_t cap_cols;
    struct http_history_point *history; /* for the first publish only (history_take) */
    size_t n_history;
    uint64_t history_stride;
    /* The checkpoint last published and when it was committed: republishing it (presence,
     * a status change) keeps its time; the recovered one's is read from the record. */
    uint64_t cp_id;
    int64_t cp_ms;
    struct http_table *tables; /* refilled at each publish */
    size_t cap_tables;
    struct http_correction *corr; /* converted once each, in ingest's order */
    size_t n_corr, cap_corr;
    uint64_t buckets[HTTP_CHECKPOINT_BUCKETS + 1]; /* non-cumulative here */
    struct event *presence_ev; /* a coalesced republish after collectors come and go */
    struct receipts *receipts; /* borrowed; NULL: /v1/receipts answers 503 */
    double seconds_sum;
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int circuit_index(const struct store_catalog *c, uint32_t id)
{
    size_t lo = 0, hi = c->n_circuits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->circuits[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_circuits && c->circuits[lo].id == id ? (int)lo : -1;
}

static int catalog_build(struct publish *p, const struct tally *t)
{
    const struct store_catalog *c = &p->src;
    if (c->n_projects != tally_project_count(t)) {
        log_error("the registry changed while tallyd started (%zu projects, then %zu): "
                  "restart tallyd",
                  tally_project_count(t), c->n_projects);
        return -1;
    }
    p->projects = xcalloc(c->n_projects, sizeof(*p->projects));
    p->min_votes = xcalloc(c->n_projects + 1, sizeof(*p->min_votes));
    p->circuits = xcalloc(c->n_circuits, sizeof(*p->circuits));
    for (size_t i = 0; i < c->n_circuits; i++) {
        p->circuits[i].id = c->circuits[i].id;
        p->circuits[i].name = c->circuits[i].name;
        p->circuits[i].state = c->circuits[i].state;
        p->circuits[i].seats = c->circuits[i].seats;
    }
    for (size_t i = 0; i < c->n_projects; i++) {
        int ci = circuit_index(c, c->projects[i].circuit_id);
        if (c->projects[i].id != tally_project_at(t, i)->id || ci < 0) {
            log_error("the registry changed while tallyd started (project %u): restart tallyd",
                      c->projects[i].id);
            return -1;
        }
        p->projects[i].id = c->projects[i].id;
        p->projects[i].name = c->projects[i].name;
        p->projects[i].circuit = (uint32_t)ci;
        p->min_votes[i] = c->projects[i].min_votes;
    }
    p->catalog.consultation_id = NULL; /* set by the caller */
    p->catalog.consultation_name = c->consultation_name;
    p->catalog.projects = p->projects;
    p->catalog.n_projects = c->n_projects;
    p->catalog.circuits = p->circuits;
    p->catalog.n_circuits = c->n_circuits;
    p->catalog.min_votes = p->min_votes;
    return 0;
}

static uint64_t st_epoch(struct publish *p)
{
    struct ingest_stats st;
    ingest_stats(p->in, &st);
    return st.writer_epoch;
}

static struct http_totals totals_of(const struct tally_totals *t)
{
    struct http_totals h = {
        .batches = t->batches,
        .votes = t->votes,
        .accepted = t->accepted,
        .duplicate = t->duplicate,
        .rejected_unknown_project = t->reasons[TALLY_REASON_UNKNOWN_PROJECT],
        .rejected_not_allowed = t->reasons[TALLY_REASON_NOT_ALLOWED],
        .sheets = t->sheets,
        .sheets_accepted = t->sheets_accepted,
        .sheets_duplicate = t->sheets_duplicate,
        .sheets_rejected = t->sheets_rejected,
    };
    for (size_t k = 1; k < TALLY_REASONS; k++) {
        h.rejected[k] = t->reasons[k];
        h.sheets_rejected_by[k] = t->sheet_reasons[k];
    }
    return h;
}

/* The durable state of every voting table, into p->tables; returns how many. */
static size_t tables_fill(struct publish *p, const struct tally *t)
{
    size_t n = tally_table_count(t);
    if (n > p->cap_tables) {
        p->cap_tables = n;
        p->tables = xreallocarray(p->tables, p->cap_tables, sizeof(*p->tables));
    }
    for (size_t i = 0; i < n; i++) {
        struct tally_table_view v;
        tally_table_get(t, i, true, &v);
        p->tables[i] = (struct http_table){
            .circuit_id = v.circuit_id,
            .electors = v.electors,
            .reported = v.mode != TALLY_TABLE_NONE,
            .sheet = v.mode == TALLY_TABLE_SHEET,
            .ballots = v.ballots,
            .blank = v.blank,
            .null_ballots = v.null_ballots,
        };
    }
    return n;
}

/* Converts the corrections ingest made durable since the last call (the strings and arrays
 * they point to stay for ingest's life). */
static void corrections_fill(struct publish *p, const struct tally *t)
{
    size_t n;
    const struct ingest_correction *in = ingest_corrections(p->in, &n);
    if (n > p->cap_corr) {
        p->cap_corr = n * 2;
        p->corr = xreallocarray(p->corr, p->cap_corr, sizeof(*p->corr));
    }
    for (; p->n_corr < n; p->n_corr++) {
        const struct ingest_correction *k = &in[p->n_corr];
        struct http_correction *o = &p->corr[p->n_corr];
        *o = (struct http_correction){
            .id = k->id,
            .checkpoint = k->checkpoint_id,
            .retract = k->kind == 1,
            .actor = k->actor,
            .reason = k->reason,
            .at_ms = k->at_ms,
            .table_id = k->table_id,
            .collector_id = k->collector_id,
            .seq = k->seq,
            .from_version = k->from_version,
            .to_version = k->to_version,
            .project_ids = k->project_ids,
            .deltas = k->deltas,
            .n_deltas = k->n_deltas,
            .blank_delta = k->blank_delta,
            .null_delta = k->null_delta,
            .ballots_delta = k->ballots_delta,
        };
        int32_t ti = k->table_id ? tally_table_find(t, k->table_id) : -1;
        if (ti >= 0) {
            struct tally_table_view v;
            tally_table_get(t, (size_t)ti, true, &v);
            o->has_table_circuit = true;
            o->table_circuit_id = v.circuit_id;
        }
    }
}

static void publish_now(struct publish *p, uint64_t checkpoint_id, const uint32_t *changed,
                        size_t n_changed)
{
    if (checkpoint_id != p->cp_id || !p->cp_ms) {
        p->cp_id = checkpoint_id;
        p->cp_ms = now_ms(); /* published as soon as it is committed */
    }
    const struct tally *t = ingest_tally(p->in);
    size_t n = tally_collector_count(t);
    if (n > p->cap_cols) {
        p->cap_cols = n * 2;
        p->cols = xreallocarray(p->cols, p->cap_cols, sizeof(*p->cols));
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct tally_collector *tc = tally_collector_at(t, i);
        struct ingest_collector_view v;
        ingest_collector_view(p->in, i, &v);
        p->cols[i] = (struct http_collector_status){
            .id = v.id,
            .connected = v.connected,
            .last_seen_ms = v.last_seen_ms,
            .durable_seq = tc->durable_seq,
            .applied_seq = tc->applied_seq,
            .durable = totals_of(&tc->durable),
        };
    }
    struct http_checkpoint cp = {
        .id = checkpoint_id,
        .epoch = st_epoch(p),
        .committed_ms = p->cp_ms,
        .votes = tally_durable_votes(t),
        .changed = changed,
        .n_changed = n_changed,
        .totals = totals_of(tally_durable_totals(t)),
        .collectors = p->cols,
        .n_collectors = n,
    };
    cp.n_tables = tables_fill(p, t);
    cp.tables = p->tables;
    corrections_fill(p, t);
    cp.corrections = p->corr;
    cp.n_corrections = p->n_corr;
    memcpy(cp.head_hash, ingest_head_hash(p->in), sizeof(cp.head_hash));
    cp.history = p->history; /* the first publish only (publish_attach) */
    cp.n_history = p->n_history;
    cp.history_stride = p->history_stride;
    /* Every publish carries the state as ingest applies it now: the embargo can never be
     * missing from a snapshot, whichever path republishes. */
    struct ingest_consultation_state st;
    ingest_consultation_state(p->in, &st);
    cp.status = (struct http_status){
        .embargo = st.embargo,
        .closed = st.closed,
        .certified = st.certified,
        .tie_rule = st.tie_rule,
    };
    memcpy(cp.status.certified_hash, st.certified_hash, sizeof(cp.status.certified_hash));
    memcpy(cp.status.tie_seed_hash, st.tie_seed_hash, sizeof(cp.status.tie_seed_hash));
    http_server_publish(p->http, &cp);
}

/* The state changed (embargo, close, tie rule, certified): every output follows it before
 * this returns, as ingest_set_state_cb asks, by republishing the current checkpoint. */
static void on_state(void *arg)
{
    struct publish *p = arg;
    struct ingest_stats st;
    ingest_stats(p->in, &st);
    publish_now(p, st.last_checkpoint_id, NULL, 0);
}

static void on_durable(void *arg, uint64_t checkpoint_id, double seconds, const uint32_t *changed,
                       size_t n_changed)
{
    struct publish *p = arg;
    size_t b = 0;
    while (b < HTTP_CHECKPOINT_BUCKETS && seconds > http_checkpoint_bucket_le[b])
        b++;
    p->buckets[b]++;
    p->seconds_sum += seconds;
    publish_now(p, checkpoint_id, changed, n_changed);
}

static bool is_ready(void *arg, char *reason, size_t len)
{
    struct publish *p = arg;
    if (!p->in) {
        snprintf(reason, len, "starting");
        return false;
    }
    return ingest_is_ready(p->in, reason, len);
}

static void metrics(void *arg, struct http_metrics *m)
{
    struct publish *p = arg;
    memset(m, 0, sizeof(*m));
    m->version = TALLY_VERSION;
    m->commit = TALLY_COMMIT;
    struct proc_self ps;
    proc_self_read(&ps);
    m->process_cpu_seconds = ps.cpu_seconds;
    m->process_resident_bytes = ps.resident_bytes;
    m->process_open_fds = ps.open_fds;
    m->process_max_fds = ps.max_fds;
    m->process_start_time = ps.start_time;
    if (!p->in)
        return;
    struct ingest_stats st;
    ingest_stats(p->in, &st);
    m->seq_conflicts = st.seq_conflicts;
    m->writer_epoch = st.writer_epoch;
    m->pg_errors = st.pg_errors;
    m->postgres_up = st.postgres_up;
    m->hello_timeouts = st.hello_timeouts;
    m->frame_timeouts = st.frame_timeouts;
    m->idle_timeouts = st.idle_timeouts;
    m->conn_limit_refused = st.conn_limit_refused;
    m->pre_auth_too_large = st.pre_auth_too_large;
    m->buffer_pauses = st.buffer_pauses;
    m->accept_pauses = st.accept_pauses;
    m->tls_handshake_failures = st.tls_handshake_failures;
    m->pre_auth_evicted = st.pre_auth_evicted;
    m->tcp_probes = st.tcp_probes;
    m->auth_refused = st.auth_refused;
    m->disabled_refused = st.disabled_refused;
    m->buffered_bytes = st.buffered_bytes;
    m->arena_bytes = st.arena_bytes;
    m->tls = st.tls;
    m->db_role_privileged = st.db_role_is_superuser || st.db_role_owns_schema;
    const struct tally *t = ingest_tally(p->in);
    if (!t)
        return;
    const struct tally_totals *dur = tally_durable_totals(t);
    m->votes_accepted = dur->accepted;
    m->votes_duplicate = dur->duplicate;
    m->votes_rejected_unknown_project = dur->reasons[TALLY_REASON_UNKNOWN_PROJECT];
    m->votes_rejected_not_allowed = dur->reasons[TALLY_REASON_NOT_ALLOWED];
    for (size_t k = 1; k < TALLY_REASONS; k++) {
        m->votes_rejected[k] = dur->reasons[k];
        m->sheets_rejected_by[k] = dur->sheet_reasons[k];
    }
    m->sheets_accepted = dur->sheets_accepted;
    m->sheets_duplicate = dur->sheets_duplicate;
    m->sheets_rejected = dur->sheets_rejected;
    m->batches = st.batches_applied;
    m->bytes_received = st.bytes_received;
    m->connections_open = st.connections_open;
    m->connections_total = st.connections_total;
    m->checkpoints = st.checkpoints;
    uint64_t cum = 0;
    for (size_t i = 0; i <= HTTP_CHECKPOINT_BUCKETS; i++) {
        cum += p->buckets[i];
        m->checkpoint_bucket[i] = cum;
    }
    m->checkpoint_seconds_sum = p->seconds_sum;
    m->checkpoint_lag_seconds =
        st.oldest_undurable_ms ? (double)(now_ms() - st.oldest_undurable_ms) / 1000.0 : 0;
    m->backlog_votes = st.backlog_votes;
    m->ballots = st.ballots;
    m->ballot_set_bytes = st.ballot_set_bytes;
    m->paused = st.paused;
}

static void presence_cb(evutil_socket_t fd, short what, void *arg);

struct publish *publish_new(struct event_base *base, const char *host, uint16_t port)
{
    struct publish *p = xcalloc(1, sizeof(*p));
    struct http_hooks hooks = {.is_ready = is_ready, .metrics = metrics, .arg = p};
    p->presence_ev = evtimer_new(base, presence_cb, p);
    p->http = http_server_new(base, host, port, NULL, &hooks);
    if (!p->http) {
        event_free(p->presence_ev);
        free(p);
        return NULL;
    }
    return p;
}

int publish_use_tls(struct publish *p, struct ssl_ctx_st *tls)
{
    return http_server_use_tls(p->http, tls);
}

void publish_follow(struct publish *p, struct ingest *in)
{
    p->in = in;
}

/* Who is connected changes between checkpoints: republish the current snapshot (no event),
 * at most every PRESENCE_MS, so /v1/summary, /v1/collectors and /metrics are live. */
#define PRESENCE_MS 200

static void presence_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct publish *p = arg;
    struct ingest_stats st;
    ingest_stats(p->in, &st);
    publish_now(p, st.last_checkpoint_id, NULL, 0);
}

static void on_presence(void *arg)
{
    struct publish *p = arg;
    if (!evtimer_pending(p->presence_ev, NULL)) {
        struct timeval tv = {0, PRESENCE_MS * 1000};
        evtimer_add(p->presence_ev, &tv);
    }
}

/* The recovered history for the first publish: the points before checkpoint id (the
 * server adds the point of the snapshot it is given itself). */
static void history_take(struct publish *p, uint64_t id)
{
    size_t n;
    struct store_history_point *h = ingest_history_take(p->in, &n, &p->history_stride);
    p->history = xcalloc(n ? n : 1, sizeof(*p->history));
    p->n_history = 0;
    for (size_t i = 0; i < n && h[i].checkpoint <= id; i++) {
        if (h[i].checkpoint == id) { /* the server makes this point from the snapshot */
            p->cp_id = id;
            p->cp_ms = h[i].committed_ms;
            break;
        }
        p->history[p->n_history++] = (struct http_history_point){
            .checkpoint = h[i].checkpoint,
            .committed_ms = h[i].committed_ms,
            .accepted = h[i].accepted,
            .duplicate = h[i].duplicate,
            .rejected = h[i].rejected,
            .tables_reported = h[i].tables_reported,
        };
    }
    free(h);
}

int publish_attach(struct publish *p, struct store_catalog *cat)
{
    p->src = *cat;
    memset(cat, 0, sizeof(*cat));
    if (catalog_build(p, ingest_tally(p->in)) != 0)
        return -1;
    p->catalog.consultation_id = ingest_consultation(p->in);
    http_server_set_catalog(p->http, &p->catalog);
    struct ingest_stats st;
    ingest_stats(p->in, &st);
    history_take(p, st.last_checkpoint_id);
    publish_now(p, st.last_checkpoint_id, NULL, 0);
    free(p->history);
    p->history = NULL;
    p->n_history = 0;
    ingest_set_durable_cb(p->in, on_durable, p);
    ingest_set_presence_cb(p->in, on_presence, p);
    ingest_set_state_cb(p->in, on_state, p);
    return 0;
}

/* ---- receipts: the API's pending requests to the worker and back ----------------------- */

static void receipt_done(void *arg, int status, char *body, size_t len)
{
    http_pending_reply(arg, status, body, len);
}

static int receipt_request(void *arg, const char *collector, uint64_t seq,
                           struct http_pending *pending)
{
    struct publish *p = arg;
    return receipts_submit(p->receipts, collector, seq, receipt_done, pending);
}

void publish_serve_receipts(struct publish *p, struct receipts *r)
{
    p->receipts = r;
    http_server_set_receipts(p->http, r ? receipt_request : NULL, p);
}

void publish_free(struct publish *p)
{
    if (!p)
        return;
    http_server_free(p->http);
    if (p->presence_ev)
        event_free(p->presence_ev);
    free(p->cols);
    free(p->tables);
    free(p->history);
    free(p->corr);
    free(p->min_votes);
    free(p->projects);
    free(p->circuits);
    store_catalog_cleanup(&p->src);
    free(p);
}
