/* Collector sessions, start-up and the module's lifecycle. Owns the tally, the store
 * worker and the collector server; runs only on the event loop thread, except
 * store_started(), which runs on the store thread and only posts to the loop. The
 * checkpoint schedule is checkpoint.c's. */
#include "ingest/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "core/crashpoint.h"
#include "core/loopwatch.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "ingest/startup.h"
#include "net/net.h"
#include "store/store.h"
#include "tally/tally.h"
#include "tally.pb-c.h"
#include "tally/protocol.h"
#include "tls/tls.h"
#include "wire/digest.h"
#include "wire/wire.h"

uint64_t ingest_monotonic_ms(struct ingest *in)
{
    (void)in;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Unix time in ms as of this loop iteration (no system call per frame). */
int64_t ingest_wall_ms(struct ingest *in)
{
    struct timeval tv;
    event_base_gettimeofday_cached(in->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- collectors ------------------------------------------------------------------- */

uint32_t ingest_collector_add(struct ingest *in, const char *id, uint64_t durable_seq,
                              const struct tally_totals *durable)
{
    uint32_t idx = tally_collector_add(in->tally, id, durable_seq, durable);
    if (idx >= in->cap_collectors) {
        size_t cap = in->cap_collectors ? in->cap_collectors * 2 : 64;
        while (cap <= idx)
            cap *= 2;
        in->names = xreallocarray(in->names, cap, sizeof(*in->names));
        in->conn_of = xreallocarray(in->conn_of, cap, sizeof(*in->conn_of));
        in->last_seen_ms = xreallocarray(in->last_seen_ms, cap, sizeof(*in->last_seen_ms));
        memset(in->last_seen_ms + in->cap_collectors, 0,
               (cap - in->cap_collectors) * sizeof(*in->last_seen_ms));
        memset(in->names + in->cap_collectors, 0, (cap - in->cap_collectors) * sizeof(char *));
        memset(in->conn_of + in->cap_collectors, 0,
               (cap - in->cap_collectors) * sizeof(*in->conn_of));
        in->auth = xreallocarray(in->auth, cap, sizeof(*in->auth));
        memset(in->auth + in->cap_collectors, 0, (cap - in->cap_collectors) * sizeof(*in->auth));
        in->cap_collectors = cap;
    }
    if (!in->names[idx])
        in->names[idx] = xstrdup(id);
    return idx;
}

void ingest_totals_to_pb(const struct tally_totals *t, Tally__CollectorTotals *pb)
{
    pb->batches = t->batches;
    pb->votes = t->votes;
    pb->accepted = t->accepted;
    pb->duplicate = t->duplicate;
    pb->rejected = t->rejected;
    pb->sheets = t->sheets;
    pb->sheets_accepted = t->sheets_accepted;
    pb->sheets_duplicate = t->sheets_duplicate;
    pb->sheets_rejected = t->sheets_rejected;
}

static bool same_circuits(const struct ingest_auth *a, const struct store_collector *sc)
{
    if (a->restricted != sc->restricted)
        return false;
    if (!a->restricted)
        return true;
    return a->n_circuits == sc->n_circuits &&
           (!sc->n_circuits ||
            memcmp(a->circuits, sc->circuits, sc->n_circuits * sizeof(*sc->circuits)) == 0);
}

void ingest_collector_update(struct ingest *in, uint32_t idx, const struct store_collector *sc)
{
    struct ingest_auth *a = &in->auth[idx];
    bool repinned = a->has_pin != sc->has_pin || (sc->has_pin && memcmp(a->pin, sc->pin, 32));
    bool now_disabled = sc->disabled && !a->disabled;
    a->has_pin = sc->has_pin;
    memcpy(a->pin, sc->pin, sizeof(a->pin));
    a->disabled = sc->disabled;
    if (!same_circuits(a, sc)) {
        static const uint32_t none[1];
        free(a->circuits);
        a->circuits = NULL;
        a->n_circuits = 0;
        a->restricted = sc->restricted;
        if (sc->restricted && sc->n_circuits) {
            a->circuits = xmalloc(sc->n_circuits * sizeof(*a->circuits));
            memcpy(a->circuits, sc->circuits, sc->n_circuits * sizeof(*a->circuits));
            a->n_circuits = sc->n_circuits;
        }
        (void)tally_collector_restrict(in->tally, idx,
                                       a->restricted ? (a->circuits ? a->circuits : none) : NULL,
                                       a->n_circuits);
        if (in->started)
            log_info("collector '%s' may now vote for %s", in->names[idx],
                     a->restricted ? "the projects of its circuits only" : "every project");
    }
    struct net_conn *c = in->conn_of[idx];
    if (!c)
        return;
    if (now_disabled) {
        in->disabled_refused++;
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_COLLECTOR_DISABLED, 0,
                      "collector '%s' was disabled (tallyctl enable-collector undoes it)",
                      in->names[idx]);
    } else if (in->cfg.tls && repinned) {
        in->auth_refused++;
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_AUTH, 0,
                      "collector '%s' has been pinned to another certificate", in->names[idx]);
    }
}

/* Connections carry their collector index + 1 as user data; 0 means no Hello yet. */
static int64_t conn_collector(struct net_conn *c)
{
    return (int64_t)(uintptr_t)net_conn_user(c) - 1;
}

/* ---- frames ----------------------------------------------------------------------- */

/* The collector pinned to a certificate, or -1. A handful to a few thousand collectors:
 * a scan per Hello costs less than keeping an index in step with refreshes. */
static int64_t collector_of_pin(const struct ingest *in, const uint8_t pin[32])
{
    size_t n = in->tally ? tally_collector_count(in->tally) : 0;
    for (size_t i = 0; i < n; i++)
        if (in->auth[i].has_pin && memcmp(in->auth[i].pin, pin, 32) == 0)
            return (int64_t)i;
    return -1;
}

/* TLS: the certificate presented must be the one pinned to the collector Hello names. */
static int check_identity(struct ingest *in, struct net_conn *c, uint32_t idx, const char *id)
{
    uint8_t pin[32];
    if (!net_conn_peer_pin(c, pin)) {
        in->auth_refused++;
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_AUTH, 0,
                      "no client certificate: Hello names collector '%s'", id);
        return -1;
    }
    char hex[TLS_PIN_HEX];
    tls_pin_hex(pin, hex);
    int64_t owner = collector_of_pin(in, pin);
    if (owner == (int64_t)idx)
        return 0;
    in->auth_refused++;
    if (owner < 0)
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_AUTH, 0,
                      "the certificate (pin %.16s...) is pinned to no collector; Hello names "
                      "collector '%s' (tallyctl add-collector %s --cert FILE pins it)",
                      hex, id, id);
    else
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_AUTH, 0,
                      "the certificate (pin %.16s...) belongs to collector '%s'; Hello "
                      "names collector '%s'",
                      hex, in->names[owner], id);
    return -1;
}

static int on_hello(struct ingest *in, struct net_conn *c, const Tally__Hello *h)
{
    if (h->protocol_version != TALLY_PROTOCOL_VERSION) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_VERSION, 0,
                      "protocol version %u not supported (this tallyd speaks %u)",
                      h->protocol_version, TALLY_PROTOCOL_VERSION);
        return -1;
    }
    if (h->consultation_id && h->consultation_id[0] &&
        strcmp(h->consultation_id, in->cfg.consultation_id) != 0) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_WRONG_CONSULTATION, 0,
                      "consultation '%s' is not the one this tallyd counts ('%s')",
                      h->consultation_id, in->cfg.consultation_id);
        return -1;
    }
    const char *id = h->collector_id ? h->collector_id : "";
    if (!wire_collector_id_is_valid(id)) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR, 0,
                      "the collector id in Hello is not valid: it must match "
                      "[A-Za-z0-9._-]{1,63}");
        return -1;
    }
    int32_t idx = tally_collector_find(in->tally, id);
    if (idx < 0) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR, 0,
                      "collector '%s' is not registered (tallyctl add-collector)", id);
        return -1;
    }
    if (in->cfg.tls && check_identity(in, c, (uint32_t)idx, id) != 0)
        return -1;
    if (in->auth[idx].disabled) {
        in->disabled_refused++;
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_COLLECTOR_DISABLED, 0,
                      "collector '%s' is disabled (tallyctl enable-collector %s)", id, id);
        return -1;
    }
    net_conn_set_name(c, id);
    net_conn_set_authenticated(c);
    struct net_conn *old = in->conn_of[idx];
    if (old) {
        /* The newest connection wins: the old one is usually a half-dead socket. */
        net_conn_fail(old, TALLY__ERROR_CODE__ERROR_REPLACED, 0,
                      "collector connected again from %s", net_conn_peer(c));
    }
    in->conn_of[idx] = c;
    in->last_seen_ms[idx] = ingest_wall_ms(in);
    net_conn_set_user(c, (void *)(uintptr_t)(idx + 1));
    if (in->on_presence)
        in->on_presence(in->on_presence_arg);

    const struct tally_collector *col = tally_collector_at(in->tally, (uint32_t)idx);
    Tally__CollectorTotals totals = TALLY__COLLECTOR_TOTALS__INIT;
    ingest_totals_to_pb(&col->durable, &totals);
    Tally__Welcome w = TALLY__WELCOME__INIT;
    w.durable_seq = col->durable_seq;
    w.protocol_version = TALLY_PROTOCOL_VERSION;
    w.max_batch_votes = in->cfg.max_batch_votes;
    w.max_frame_bytes = in->cfg.max_frame_bytes;
    w.consultation_id = (char *)in->cfg.consultation_id;
    w.totals = &totals;
    w.writer_epoch = store_worker_epoch(in->worker);
    w.idle_timeout_ms = in->cfg.idle_timeout_ms;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_WELCOME;
    f.welcome = &w;
    net_conn_send(c, &f);
    if (net_conn_log_allowed(c))
        log_conn(LOG_INFO, net_conn_peer(c), id, "hello: durable_seq %llu, applied_seq %llu",
                 (unsigned long long)col->durable_seq, (unsigned long long)col->applied_seq);
    return 0;
}

void ingest_backpressure_check(struct ingest *in)
{
    uint64_t backlog = tally_backlog_votes(in->tally);
    if (!in->paused && backlog >= in->cfg.backlog_votes) {
        in->paused = true;
        net_server_pause(in->net);
        log_warn("%llu votes are not yet durable (limit %llu): pausing input until "
                 "PostgreSQL catches up",
                 (unsigned long long)backlog, (unsigned long long)in->cfg.backlog_votes);
    } else if (in->paused && !in->shutting_down && backlog < in->cfg.backlog_votes / 2) {
        in->paused = false;
        net_server_resume(in->net);
        log_info("backlog down to %llu votes: resuming input", (unsigned long long)backlog);
    }
}

static int on_frame(void *arg, struct net_conn *c, const Tally__Frame *f)
{
    struct ingest *in = arg;
    int64_t idx = conn_collector(c);
    if (idx >= 0)
        in->last_seen_ms[idx] = ingest_wall_ms(in);
    if (idx < 0) {
        if (f->msg_case != TALLY__FRAME__MSG_HELLO) {
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_NOT_HELLO, 0,
                          "the first frame must be Hello");
            return -1;
        }
        return on_hello(in, c, f->hello);
    }
    if (f->msg_case == TALLY__FRAME__MSG_PING) {
        Tally__Ping pong = TALLY__PING__INIT;
        pong.nonce = f->ping->nonce;
        Tally__Frame r = TALLY__FRAME__INIT;
        r.msg_case = TALLY__FRAME__MSG_PING;
        r.ping = &pong;
        net_conn_send(c, &r);
        return 0;
    }
    if (f->msg_case != TALLY__FRAME__MSG_BATCH) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_FRAME, 0,
                      "unexpected message (field %d) after Hello", (int)f->msg_case);
        return -1;
    }
    return ingest_on_batch(in, c, (uint32_t)idx, f->batch);
}

static void on_close(void *arg, struct net_conn *c)
{
    struct ingest *in = arg;
    int64_t idx = conn_collector(c);
    if (idx >= 0 && in->conn_of[idx] == c) {
        in->conn_of[idx] = NULL;
        if (in->on_presence)
            in->on_presence(in->on_presence_arg);
    }
    net_conn_set_user(c, NULL);
}

/* ---- lifecycle -------------------------------------------------------------------- */

/* Runs on the store thread: hand start-up's outcome to the loop and return. */
static void store_started(void *arg, int rc, struct store_started *st, const char *why)
{
    struct ingest *in = arg;
    pthread_mutex_lock(&in->mbox_lock);
    in->mbox_started = true;
    in->mbox_start_rc = rc;
    if (st)
        in->mbox_start = *st; /* moved: the store thread keeps nothing of it */
    snprintf(in->mbox_start_why, sizeof(in->mbox_start_why), "%s", why ? why : "");
    pthread_mutex_unlock(&in->mbox_lock);
    event_active(in->start_ev, 0, 0);
}

static void start_fail(struct ingest *in, const char *why)
{
    log_error("start-up failed: %s", why);
    in->exit_status = 1;
    event_base_loopexit(in->base, NULL);
}

/* On the loop: start-up finished; take the tally over and listen for collectors. */
static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct ingest *in = arg;
    pthread_mutex_lock(&in->mbox_lock);
    bool done = in->mbox_started;
    int rc = in->mbox_start_rc;
    struct store_started st = in->mbox_start;
    memset(&in->mbox_start, 0, sizeof(in->mbox_start));
    char why[sizeof(in->mbox_start_why)];
    snprintf(why, sizeof(why), "%s", in->mbox_start_why);
    pthread_mutex_unlock(&in->mbox_lock);
    if (!done)
        return;
    if (in->shutting_down) {
        /* Stopped while starting: the worker is gone, there is nothing to take over. */
        store_recovery_cleanup(&st.rec);
        store_catalog_cleanup(&st.catalog);
        return;
    }
    struct ingest_rebuild *r = &in->rebuild;
    if (rc != 0) {
        start_fail(in, r->failure[0] ? r->failure : why);
        return;
    }
    in->tally = r->tally;
    r->tally = NULL;
    in->last_checkpoint_id = st.rec.last_checkpoint_id;
    memcpy(in->head_hash, st.rec.head_hash, sizeof(in->head_hash));
    if (r->dup_tokens)
        log_warn("%llu stored tokens appear in more than one token page",
                 (unsigned long long)r->dup_tokens);
    if (r->orphan_digests)
        log_warn("%llu stored batches lie past their collector's durable seq",
                 (unsigned long long)r->orphan_digests);
    log_info("recovered consultation '%s' in %.2f s: %zu projects, %zu collectors, %zu "
             "ballots, %llu batch digests, checkpoint %llu, writer epoch %llu",
             st.rec.consultation_id, st.recover_s, tally_project_count(in->tally),
             tally_collector_count(in->tally), tally_ballot_count(in->tally),
             (unsigned long long)st.rec.n_digests, (unsigned long long)st.rec.last_checkpoint_id,
             (unsigned long long)st.epoch);
    if (tally_project_count(in->tally) == 0)
        log_warn("the registry is empty: every vote will be rejected "
                 "(load it with tallyctl load-registry, then restart tallyd)");
    snprintf(in->consultation, sizeof(in->consultation), "%s", st.rec.consultation_id);
    in->cfg.consultation_id = in->consultation;
    ingest_state_start(in, &st.rec.state);
    for (size_t i = 0; i < st.rec.n_corrections; i++) {
        const struct store_correction_row *x = &st.rec.corrections[i];
        if (x->kind == STORE_CORRECTION_RETRACT && x->collector_id) {
            int32_t c = tally_collector_find(in->tally, x->collector_id);
            if (c >= 0)
                ingest_retracted_add(in, (uint32_t)c, x->seq);
        }
        struct ingest_correction c = {
            .id = x->id,
            .checkpoint_id = x->checkpoint_id,
            .kind = x->kind,
            .actor = x->actor,
            .reason = x->reason,
            .at_ms = x->at_us / 1000,
            .table_id = x->table_id,
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
    in->n_table_names = tally_table_count(in->tally);
    in->table_names = xcalloc(in->n_table_names ? in->n_table_names : 1, sizeof(char *));
    for (size_t i = 0; i < in->n_table_names; i++) {
        struct tally_table_view tv;
        tally_table_get(in->tally, i, true, &tv);
        in->table_names[i] = tv.id;
    }
    if (in->n_table_names)
        log_info("%zu voting tables loaded", in->n_table_names);
    for (size_t i = 0; i < tally_collector_count(in->tally); i++)
        ingest_collector_add(in, tally_collector_at(in->tally, (uint32_t)i)->id, 0, NULL);
    size_t n_pinned = 0, n_disabled = 0, n_restricted = 0;
    for (size_t i = 0; i < st.rec.n_collectors; i++) {
        const struct store_collector *sc = &st.rec.collectors[i];
        int32_t idx = tally_collector_find(in->tally, sc->id);
        if (idx < 0)
            continue;
        ingest_collector_update(in, (uint32_t)idx, sc);
        n_pinned += sc->has_pin;
        n_disabled += sc->disabled;
        n_restricted += sc->restricted;
    }
    in->history = st.rec.history; /* ingest_history_take */
    in->n_history = st.rec.n_history;
    in->history_stride = st.rec.history_stride;
    st.rec.history = NULL;
    st.rec.n_history = 0;
    store_recovery_cleanup(&st.rec);
    if (in->cfg.tls)
        log_info("mutual TLS on the collector port: %zu of %zu collectors have a pinned "
                 "certificate, %zu disabled, %zu limited to their circuits",
                 n_pinned, tally_collector_count(in->tally), n_disabled, n_restricted);
    snprintf(in->db_role, sizeof(in->db_role), "%s", st.role);
    in->db_role_is_superuser = st.role_is_superuser;
    in->db_role_owns_schema = st.role_owns_schema;
    if (st.role_is_superuser || st.role_owns_schema)
        log_warn("tallyd writes as database role '%s', which %s: it needs only what role "
                 "tally_writer grants (README: \"Least privilege\")",
                 st.role,
                 st.role_is_superuser ? "is a superuser" : "owns the schema and can change it");

    if (net_server_listen(in->net) < 0) {
        store_catalog_cleanup(&st.catalog);
        start_fail(in, "cannot listen for collectors");
        return;
    }
    in->started = true;
    struct timeval tick = {in->cfg.checkpoint_ms / 1000, (in->cfg.checkpoint_ms % 1000) * 1000};
    struct timeval prog = {PROGRESS_SEC, 0};
    event_add(in->tick_ev, &tick);
    event_add(in->progress_ev, &prog);
    in->progress_votes = tally_applied_totals(in->tally)->votes;
    in->last_commit_ms = ingest_wall_ms(in);
    log_info("listening for collectors on %s:%u (%s)", in->cfg.listen_host,
             net_server_port(in->net), in->cfg.tls ? "mutual TLS 1.3" : "plain TCP");
    if (in->on_started)
        in->on_started(in->on_started_arg, in, &st.catalog);
    store_catalog_cleanup(&st.catalog); /* NULL-safe when the callee took it */
}

struct ingest *ingest_new(struct event_base *base, const struct ingest_config *cfg,
                          ingest_started_cb started, void *arg)
{
    struct ingest *in = xcalloc(1, sizeof(*in));
    in->base = base;
    in->cfg = *cfg;
    in->on_started = started;
    in->on_started_arg = arg;
    in->rebuild.expected_ballots = cfg->expected_ballots;
    ingest_batch_scratch_init(in);
    in->pending_reqs = &in->reqs[0];
    in->inflight_reqs = &in->reqs[1];
    pthread_mutex_init(&in->mbox_lock, NULL);
    in->done_ev = event_new(base, -1, 0, ingest_done_cb, in);
    in->start_ev = event_new(base, -1, 0, start_cb, in);
    in->tick_ev = event_new(base, -1, EV_PERSIST, ingest_tick_cb, in);
    in->progress_ev = event_new(base, -1, EV_PERSIST, ingest_progress_cb, in);
    in->grace_ev = event_new(base, -1, 0, ingest_grace_cb, in);
    in->last_commit_ms = ingest_wall_ms(in);

    /* The collector port is bound at once, so a clash is reported before anything else
     * (and a standby holds its port), but connections are refused until start-up ends. */
    struct net_server_config ncfg = {
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .max_frame_bytes = cfg->max_frame_bytes,
        .max_output_bytes = 4u << 20,
        .on_frame = on_frame,
        .on_close = on_close,
        .arg = in,
        .reserve_only = true,
        .tls = cfg->tls,
        .hello_timeout_ms = cfg->hello_timeout_ms,
        .frame_timeout_ms = cfg->frame_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .max_conns = cfg->max_connections,
        /* Peers without a Hello yet: the oldest is evicted for a new one past this, so a
         * flood of bare connects cannot hold the slots collectors need. */
        .max_pre_auth_conns = cfg->max_connections < 1024 ? cfg->max_connections : 1024,
        /* Hello is a few hundred bytes: nothing bigger is buffered or decoded before it. */
        .pre_auth_max_frame_bytes = 4096,
        .max_buffered_bytes = cfg->max_buffered_bytes,
    };
    in->net = net_server_new(base, &ncfg);
    if (!in->net)
        goto fail;

    struct store_worker_config wcfg = {
        .conninfo = cfg->conninfo,
        .standby = cfg->standby,
        .min_anonymity = cfg->min_anonymity,
        .hooks = ingest_rebuild_hooks(&in->rebuild),
        .started = store_started,
        .done = ingest_store_done,
        .arg = in,
    };
    in->worker = store_worker_new(&wcfg);
    if (!in->worker)
        goto fail;
    return in;
fail:
    ingest_free(in);
    return NULL;
}

void ingest_reconfigure(struct ingest *in, const struct ingest_config *cfg)
{
    in->cfg.backlog_votes = cfg->backlog_votes;
    in->cfg.max_batch_votes = cfg->max_batch_votes; /* announced to the next Hellos */
    in->cfg.shutdown_grace_ms = cfg->shutdown_grace_ms;
    if (in->cfg.checkpoint_ms != cfg->checkpoint_ms) {
        in->cfg.checkpoint_ms = cfg->checkpoint_ms;
        if (in->started) {
            struct timeval tick = {cfg->checkpoint_ms / 1000, (cfg->checkpoint_ms % 1000) * 1000};
            event_add(in->tick_ev, &tick); /* re-adding a pending event reschedules it */
        }
    }
    if (in->started)
        ingest_backpressure_check(in);
}

void ingest_shutdown(struct ingest *in)
{
    if (in->shutting_down)
        return;
    in->shutting_down = true;
    if (!in->started) {
        /* Nothing was taken from collectors: stop waiting for PostgreSQL or the lock. */
        log_info("stopping before start-up finished");
        store_worker_free(in->worker, 0);
        in->worker = NULL;
        event_base_loopexit(in->base, NULL);
        return;
    }
    net_server_stop_accepting(in->net);
    net_server_pause(in->net);
    log_info("stopping: no new batches; writing the final checkpoint (%llu votes pending)",
             (unsigned long long)tally_backlog_votes(in->tally));
    struct timeval grace = {in->cfg.shutdown_grace_ms / 1000,
                            (in->cfg.shutdown_grace_ms % 1000) * 1000};
    event_add(in->grace_ev, &grace);
    in->now_ms = ingest_monotonic_ms(in);
    ingest_checkpoint_maybe_start(in);
    ingest_finish_shutdown_if_done(in);
}

void ingest_set_presence_cb(struct ingest *in, ingest_presence_cb cb, void *arg)
{
    in->on_presence = cb;
    in->on_presence_arg = arg;
}

void ingest_set_durable_cb(struct ingest *in, ingest_durable_cb cb, void *arg)
{
    in->on_durable = cb;
    in->on_durable_arg = arg;
}

const char *ingest_consultation(const struct ingest *in)
{
    return in->cfg.consultation_id;
}

const struct ingest_correction *ingest_corrections(const struct ingest *in, size_t *n)
{
    *n = in->n_corrections;
    return in->corrections;
}

struct store_history_point *ingest_history_take(struct ingest *in, size_t *n, uint64_t *stride)
{
    struct store_history_point *h = in->history;
    *n = in->n_history;
    *stride = in->history_stride ? in->history_stride : 1;
    in->history = NULL;
    in->n_history = 0;
    return h;
}

const struct tally *ingest_tally(const struct ingest *in)
{
    return in->started ? in->tally : NULL;
}

bool ingest_is_started(const struct ingest *in)
{
    return in->started;
}

const uint8_t *ingest_head_hash(const struct ingest *in)
{
    return in->head_hash;
}

void ingest_stats(const struct ingest *in, struct ingest_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->pg_errors = in->worker ? store_worker_failures(in->worker) : 0;
    out->writer_epoch = in->worker ? store_worker_epoch(in->worker) : 0;
    out->seq_conflicts = in->seq_conflicts;
    out->last_commit_ms = in->last_commit_ms;
    out->postgres_up = in->worker && store_worker_is_connected(in->worker);
    out->auth_refused = in->auth_refused;
    out->disabled_refused = in->disabled_refused;
    snprintf(out->db_role, sizeof(out->db_role), "%s", in->db_role);
    out->db_role_is_superuser = in->db_role_is_superuser;
    out->db_role_owns_schema = in->db_role_owns_schema;
    out->tls = in->cfg.tls != NULL;
    if (in->net) {
        struct net_limit_counters lc;
        net_server_limit_counters(in->net, &lc);
        out->hello_timeouts = lc.hello_timeouts;
        out->frame_timeouts = lc.frame_timeouts;
        out->idle_timeouts = lc.idle_timeouts;
        out->conn_limit_refused = lc.conn_limit_refused;
        out->pre_auth_too_large = lc.pre_auth_too_large;
        out->buffer_pauses = lc.buffer_pauses;
        out->accept_pauses = lc.accept_pauses;
        out->tls_handshake_failures = lc.tls_handshake_failures;
        out->pre_auth_evicted = lc.pre_auth_evicted;
        out->tcp_probes = lc.tcp_probes;
        net_server_memory(in->net, &out->buffered_bytes, &out->arena_bytes);
    }
    out->oldest_undurable_ms = in->inflight_since_ms ? in->inflight_since_ms : in->pending_since_ms;
    if (!in->started)
        return;
    out->batches_applied = tally_applied_totals(in->tally)->batches;
    net_server_counters(in->net, &out->bytes_received, &out->connections_total);
    out->connections_open = net_server_conn_count(in->net);
    out->checkpoints = in->checkpoints;
    out->last_checkpoint_id = in->last_checkpoint_id;
    out->backlog_votes = tally_backlog_votes(in->tally);
    out->ballots = tally_ballot_count(in->tally);
    out->ballot_set_bytes = tally_ballot_bytes(in->tally);
    for (size_t i = 0; i < tally_collector_count(in->tally); i++)
        out->collectors_connected += in->conn_of[i] != NULL;
    out->paused = in->paused;
    tally_rejected_by_reason(in->tally, &out->rejected_unknown_project, &out->rejected_not_allowed);
}

void ingest_collector_view(const struct ingest *in, uint32_t i, struct ingest_collector_view *out)
{
    out->id = in->names[i];
    out->connected = in->conn_of[i] != NULL;
    out->last_seen_ms = in->last_seen_ms[i];
}

bool ingest_is_ready(const struct ingest *in, char *reason, size_t len)
{
    if (in->shutting_down) {
        snprintf(reason, len, "stopping");
        return false;
    }
    if (!in->started) {
        if (in->worker)
            store_worker_status(in->worker, reason, len);
        if (!reason[0])
            snprintf(reason, len, "starting");
        return false;
    }
    if (!store_worker_is_connected(in->worker)) {
        snprintf(reason, len, "PostgreSQL unreachable: checkpoints are waiting");
        return false;
    }
    return true;
}

int ingest_exit_status(const struct ingest *in)
{
    return in->exit_status;
}

void ingest_free(struct ingest *in)
{
    if (!in)
        return;
    /* The worker may still point into the tally's delta: stop it first. */
    store_worker_free(in->worker, 0);
    net_server_free(in->net);
    struct event *evs[] = {in->done_ev, in->start_ev, in->tick_ev, in->progress_ev, in->grace_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    store_collectors_free(in->mbox_collectors, in->mbox_n_collectors);
    store_recovery_cleanup(&in->mbox_start.rec);
    store_catalog_cleanup(&in->mbox_start.catalog);
    tally_free(in->rebuild.tally);
    for (size_t i = 0; i < in->cap_collectors; i++) {
        free(in->names[i]);
        if (in->auth)
            free(in->auth[i].circuits);
    }
    free(in->auth);
    free(in->names);
    free(in->conn_of);
    ingest_batch_scratch_cleanup(in);
    ingest_corrections_cleanup(in);
    free(in->history);
    ingest_requests_cleanup(in);
    ingest_job_cleanup(in);
    free(in->job_batches);
    free(in->job_marks);
    free(in->acked);
    free(in->changed);
    free(in->table_names);
    free(in->last_seen_ms);
    tally_free(in->tally);
    pthread_mutex_destroy(&in->mbox_lock);
    free(in);
}
