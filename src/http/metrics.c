/* /metrics: the live figures and the last snapshot's in Prometheus text exposition 0.0.4
 * (names, HELP and TYPE lines, histograms). Pure: no sockets, no routing. Under embargo the
 * series that are counts (blank, null, circuits decided) are left out. */
#include "http/internal.h"

#include "core/loopwatch.h"
#include "tally/protocol.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* ---- /metrics ------------------------------------------------------------------------------- */

static void metric_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_u64(struct evbuffer *out, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    metric_head(out, name, type, help);
    evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* The shortest text that reads back as v, as the Prometheus clients write floats (Go's
 * FormatFloat(v, 'g', -1, 64)): a fixed "%.9g" printed a start time of 1796125874.33 as
 * 1.79612587e+09, up to five seconds off. */
static void metric_value_f64(struct evbuffer *out, double v)
{
    char s[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    evbuffer_add(out, s, strlen(s));
}

static void metric_f64(struct evbuffer *out, const char *name, const char *type, const char *help,
                       double v)
{
    metric_head(out, name, type, help);
    evbuffer_add_printf(out, "%s ", name);
    metric_value_f64(out, v);
    evbuffer_add(out, "\n", 1);
}

/* How long single callbacks held the event loop since tallyd got ready (core/loopwatch). */
static void render_loop_metrics(struct evbuffer *out)
{
    struct loopwatch_stats ls;
    loopwatch_read(&ls);
    const char *h = "tally_loop_iteration_seconds";
    metric_head(out, h, "histogram",
                "Time the event loop spent in one callback (a collector's frames, a checkpoint "
                "hand-off, an HTTP request, a timer) without polling, since tallyd got ready.");
    uint64_t cum = 0;
    for (size_t b = 0; b < LOOPWATCH_BUCKETS; b++) {
        cum += ls.counts[b];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", h, loopwatch_bounds[b], cum);
    }
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum ", h, ls.samples, h);
    metric_value_f64(out, ls.sum_s);
    evbuffer_add_printf(out, "\n%s_count %" PRIu64 "\n", h, ls.samples);
    metric_f64(out, "tally_loop_iteration_max_seconds", "gauge",
               "Longest single event-loop callback since tallyd got ready.", ls.max_s);
}

void http_render_metrics(const struct http_metrics *m, const struct http_metrics_extra *x,
                         struct evbuffer *out)
{
    metric_head(out, "tally_build_info", "gauge", "This tallyd's version and source commit.");
    evbuffer_add_printf(out, "tally_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                        m->version ? m->version : "unknown", m->commit ? m->commit : "unknown");
    metric_f64(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.",
               m->process_cpu_seconds);
    metric_u64(out, "process_resident_memory_bytes", "gauge", "Resident memory size.",
               m->process_resident_bytes);
    metric_u64(out, "process_open_fds", "gauge", "Open file descriptors.", m->process_open_fds);
    metric_u64(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
               m->process_max_fds);
    metric_f64(out, "process_start_time_seconds", "gauge",
               "Start time of the process since the epoch, in seconds.", m->process_start_time);
    metric_u64(out, "tally_votes_accepted_total", "counter",
               "Votes counted, durable in PostgreSQL.", m->votes_accepted);
    metric_u64(out, "tally_votes_duplicate_total", "counter",
               "Votes whose ballot was already counted, durable.", m->votes_duplicate);
    metric_head(out, "tally_votes_rejected_total", "counter",
                "Votes rejected, by reason, durable.");
    static const char *const reasons[TALLY_REASON_COUNT] = {TALLY_REASON_NAMES};
    evbuffer_add_printf(out, "tally_votes_rejected_total{reason=\"unknown_project\"} %" PRIu64 "\n",
                        m->votes_rejected_unknown_project);
    evbuffer_add_printf(out, "tally_votes_rejected_total{reason=\"not_allowed\"} %" PRIu64 "\n",
                        m->votes_rejected_not_allowed);
    for (unsigned k = 3; k <= TALLY_REASON_VOTE_LAST; k++)
        evbuffer_add_printf(out, "tally_votes_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
                            reasons[k], m->votes_rejected[k]);
    metric_head(out, "tally_sheets_total", "counter",
                "Tally sheets received, by outcome, durable.");
    evbuffer_add_printf(out,
                        "tally_sheets_total{outcome=\"accepted\"} %" PRIu64 "\n"
                        "tally_sheets_total{outcome=\"duplicate\"} %" PRIu64 "\n"
                        "tally_sheets_total{outcome=\"rejected\"} %" PRIu64 "\n",
                        m->sheets_accepted, m->sheets_duplicate, m->sheets_rejected);
    metric_head(out, "tally_sheets_rejected_total", "counter",
                "Tally sheets rejected, by reason, durable.");
    for (unsigned k = 1; k < TALLY_REASON_COUNT; k++)
        evbuffer_add_printf(out, "tally_sheets_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
                            reasons[k], m->sheets_rejected_by[k]);
    metric_u64(out, "tally_batches_total", "counter", "Batches applied in memory.", m->batches);
    metric_u64(out, "tally_seq_conflicts_total", "counter",
               "Batches refused because their seq was applied before with other content "
               "(ERROR_SEQ_CONFLICT).",
               m->seq_conflicts);
    metric_u64(out, "tally_bytes_received_total", "counter", "Bytes read from collectors.",
               m->bytes_received);
    /* Not "tally_connections": that family name is the counter's below (OpenMetrics). */
    metric_u64(out, "tally_connections_open", "gauge", "Collector connections open.",
               m->connections_open);
    metric_u64(out, "tally_connections_total", "counter", "Collector connections accepted.",
               m->connections_total);
    metric_u64(out, "tally_checkpoints_total", "counter", "Checkpoints committed since start.",
               m->checkpoints);

    const char *h = "tally_checkpoint_duration_seconds";
    metric_head(out, h, "histogram", "Time from handing a checkpoint to the store to its COMMIT.");
    for (size_t b = 0; b < HTTP_CHECKPOINT_BUCKETS; b++)
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", h,
                            http_checkpoint_bucket_le[b], m->checkpoint_bucket[b]);
    uint64_t count = m->checkpoint_bucket[HTTP_CHECKPOINT_BUCKETS];
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", h, count);
    evbuffer_add_printf(out, "%s_sum ", h);
    metric_value_f64(out, m->checkpoint_seconds_sum);
    evbuffer_add_printf(out, "\n%s_count %" PRIu64 "\n", h, count);

    metric_f64(out, "tally_checkpoint_lag_seconds", "gauge",
               "Age of the oldest batch applied in memory and not yet durable (0 when everything "
               "applied is durable).",
               m->checkpoint_lag_seconds);
    metric_u64(out, "tally_postgres_up", "gauge",
               "1 when the store's last attempt reached PostgreSQL.", m->postgres_up ? 1 : 0);
    metric_u64(out, "tally_pg_errors_total", "counter", "Failed PostgreSQL attempts.",
               m->pg_errors);
    metric_u64(out, "tally_backlog_votes", "gauge", "Votes applied in memory, not yet durable.",
               m->backlog_votes);
    metric_u64(out, "tally_ballots", "gauge", "Distinct ballots held.", m->ballots);
    metric_u64(out, "tally_ballot_set_bytes", "gauge",
               "Memory of the ballot set (both tables while it grows).", m->ballot_set_bytes);
    render_loop_metrics(out);
    metric_u64(out, "tally_ingest_paused", "gauge",
               "1 while reading from collectors is paused by back-pressure.", m->paused ? 1 : 0);
    metric_u64(out, "tally_writer_epoch", "gauge",
               "Writer epoch this tallyd holds (bumped by each tallyd that takes the writer "
               "lock); 0 while it is not the writer.",
               m->writer_epoch);
    static const struct {
        const char *name, *help;
        size_t off;
    } limits[] = {
        {"tally_net_hello_timeouts_total", "Connections closed without Hello at the deadline.",
         offsetof(struct http_metrics, hello_timeouts)},
        {"tally_net_frame_timeouts_total", "Connections closed for a frame not finished in time.",
         offsetof(struct http_metrics, frame_timeouts)},
        {"tally_net_idle_timeouts_total", "Sessions closed after the idle timeout.",
         offsetof(struct http_metrics, idle_timeouts)},
        {"tally_net_conn_limit_refused_total",
         "Connections closed at accept: --max-connections reached.",
         offsetof(struct http_metrics, conn_limit_refused)},
        {"tally_net_pre_auth_too_large_total",
         "Frames before Hello over the pre-authentication limit (refused, never decoded).",
         offsetof(struct http_metrics, pre_auth_too_large)},
        {"tally_net_buffer_pauses_total",
         "Times reading stopped: --max-buffered-bytes buffered across connections.",
         offsetof(struct http_metrics, buffer_pauses)},
        {"tally_net_accept_pauses_total",
         "Times accepting paused for lack of file descriptors (EMFILE, ENFILE).",
         offsetof(struct http_metrics, accept_pauses)},
        {"tally_net_tls_handshake_failures_total",
         "TLS handshakes that failed (plain TCP, untrusted or no certificate).",
         offsetof(struct http_metrics, tls_handshake_failures)},
        {"tally_net_pre_auth_evicted_total",
         "Connections without Hello closed to make room for a new one (the oldest first).",
         offsetof(struct http_metrics, pre_auth_evicted)},
        {"tally_net_tcp_probes_total",
         "Connections closed by the peer before sending a byte (port checks, probes).",
         offsetof(struct http_metrics, tcp_probes)},
        {"tally_auth_refused_total",
         "Hellos refused with ERROR_AUTH: the certificate is not pinned to that collector.",
         offsetof(struct http_metrics, auth_refused)},
        {"tally_collector_disabled_refused_total",
         "Hellos refused and sessions dropped because the collector is disabled.",
         offsetof(struct http_metrics, disabled_refused)},
    };
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
        metric_u64(out, limits[i].name, "counter", limits[i].help,
                   *(const uint64_t *)((const char *)m + limits[i].off));
    metric_u64(out, "tally_net_buffered_bytes", "gauge",
               "Input bytes buffered across collector connections.", m->buffered_bytes);
    metric_u64(out, "tally_net_decode_arena_bytes", "gauge",
               "Decode memory held by collector connections.", m->arena_bytes);
    metric_u64(out, "tally_collector_tls", "gauge",
               "1 when the collector port speaks mutual TLS, 0 for plain TCP.", m->tls ? 1 : 0);
    metric_u64(out, "tally_db_role_privileged", "gauge",
               "1 when tallyd's database role is a superuser or owns the schema (it needs only "
               "tally_writer).",
               m->db_role_privileged ? 1 : 0);

    const struct http_snapshot *s = x->snap;
    metric_u64(out, "tally_collectors_registered", "gauge",
               "Collectors registered, at the last checkpoint.", s ? s->n_collectors : 0);
    metric_u64(out, "tally_collectors_connected", "gauge",
               "Collectors connected, at the last checkpoint.", s ? s->collectors_connected : 0);
    metric_u64(out, "tally_last_checkpoint_id", "gauge", "Id of the last published checkpoint.",
               s ? s->checkpoint : 0);
    /* Reporting progress, national, at the last checkpoint (docs/api.md). */
    static const struct http_progress none;
    const struct http_progress *pg = s ? &s->progress : &none;
    metric_u64(out, "tally_tables_expected", "gauge", "Voting tables loaded.", pg->tables);
    metric_u64(out, "tally_tables_reported", "gauge",
               "Voting tables reported (a tally sheet or at least one per-ballot vote), durable.",
               pg->tables_reported);
    metric_u64(out, "tally_electors", "gauge", "Electors of every voting table.", pg->electors);
    metric_u64(out, "tally_electors_reported", "gauge", "Electors of the reported voting tables.",
               pg->electors_reported);
    metric_u64(out, "tally_ballots_reported", "gauge",
               "Ballots of the reported voting tables (per-ballot votes, or blank + null + rows "
               "of their sheet), durable.",
               pg->ballots);
    metric_u64(out, "tally_embargo", "gauge",
               "1 while the results are under embargo (progress only: the count series below "
               "are left out).",
               s && !http_snapshot_has_counts(s) ? 1 : 0);
    metric_u64(out, "tally_official", "gauge",
               "1 once the results are certified (official), 0 while provisional.",
               s && s->status.certified ? 1 : 0);
    if (!s || http_snapshot_has_counts(s)) {
        metric_u64(out, "tally_blank_ballots", "gauge", "Blank ballots of tally sheets, durable.",
                   pg->blank);
        metric_u64(out, "tally_null_ballots", "gauge", "Null ballots of tally sheets, durable.",
                   pg->null_ballots);
        metric_u64(out, "tally_circuits_decided", "gauge",
                   "Circuits whose winners the votes still possible cannot change.",
                   s ? s->circuits_decided : 0);
    }
    /* Per collector (ids are [A-Za-z0-9._-], safe as label values). */
    static const char *const fam[4][2] = {
        {"tally_collector_connected", "1 while the collector is connected."},
        {"tally_collector_durable_seq", "Last batch seq of the collector durable in PostgreSQL."},
        {"tally_collector_applied_seq", "Last batch seq of the collector applied in memory."},
        {"tally_collector_last_seen_timestamp_seconds",
         "When the collector last sent a frame (unix seconds; 0: not since start)."},
    };
    for (int k = 0; k < 4 && s; k++) {
        metric_head(out, fam[k][0], "gauge", fam[k][1]);
        for (size_t i = 0; i < s->n_collectors; i++) {
            const struct http_snap_collector *c = &s->collectors[i];
            if (k == 3)
                evbuffer_add_printf(out, "%s{collector=\"%s\"} %.3f\n", fam[k][0], c->id,
                                    (double)c->last_seen_ms / 1000.0);
            else
                evbuffer_add_printf(out, "%s{collector=\"%s\"} %" PRIu64 "\n", fam[k][0], c->id,
                                    k == 0   ? (uint64_t)c->connected
                                    : k == 1 ? c->durable_seq
                                             : c->applied_seq);
        }
    }
    metric_u64(out, "tally_http_requests_total", "counter", "HTTP requests answered.",
               x->http_requests);
    metric_u64(out, "tally_http_sse_subscribers", "gauge", "Open /v1/events streams.",
               x->sse_subscribers);
    metric_u64(out, "tally_http_sse_dropped_total", "counter",
               "Event streams dropped for falling too far behind.", x->sse_dropped);
    metric_u64(out, "tally_http_gzip_jobs_total", "counter",
               "Big cached renderings compressed (once per snapshot each, in slices).",
               x->gzip_jobs);
    metric_f64(out, "tally_http_gzip_slice_max_seconds", "gauge",
               "Longest event-loop callback of those slices since start.", x->gzip_slice_max_s);
}
