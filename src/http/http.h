/* The HTTP side of tallyd (libevent's evhttp on the same loop as ingest): the read-only
 * results API, the live event stream, Prometheus metrics, health, and the dashboard.
 * Everything it serves comes from immutable snapshots handed over by
 * http_server_publish() after each checkpoint COMMIT, so readers only ever see durable
 * numbers and never touch ingest state.
 *
 * The order of calls, all on the loop thread:
 *   http_server_new(base, host, port, NULL, hooks)   bind first, before PostgreSQL, the
 *                                                    writer lock and recovery
 *   http_server_use_tls(h, ctx)                      optional: HTTPS on that port
 *   ... "starting": /healthz 200, /readyz 503 with the hook's reason, /metrics from the
 *       hook, every /v1 route and the dashboard page 503 with Retry-After: 1 ...
 *   http_server_set_catalog(h, catalog)              once the registry is loaded
 *   http_server_publish(h, recovered)                at once: the API starts answering
 *   http_server_publish(h, cp)                       after each checkpoint COMMIT
 *   http_server_free(h)
 * Giving the catalog to http_server_new() instead is the same as calling
 * http_server_set_catalog() right after it. */
#ifndef HTTP_HTTP_H
#define HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct http_server;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* ---- the registry, fixed for the life of the process -------------------------------- */

struct http_catalog_project {
    uint32_t id; /* external project id */
    const char *name;
    uint32_t circuit; /* index into circuits[] */
};

struct http_catalog_circuit {
    uint32_t id; /* external circuit id */
    const char *name;
    const char *state;
    uint32_t seats;
};

/* Projects are in tallyd's dense order: votes[i] in a checkpoint is projects[i]'s. */
struct http_catalog {
    const char *consultation_id;
    const char *consultation_name;
    const struct http_catalog_project *projects;
    size_t n_projects;
    const struct http_catalog_circuit *circuits;
    size_t n_circuits;
    /* Votes each project needs at least to win, parallel to projects[] (NULL: none does). */
    const uint32_t *min_votes;
};

/* ---- what each checkpoint publishes ------------------------------------------------- */

/* Rejected votes by reason: a project the registry does not have, and a project outside the
 * circuits its collector may report (tallyctl add-collector --circuits). Rendered as
 * "rejected":{"unknown_project":N,"not_allowed":M} in totals. New fields go at the end:
 * callers initialise this positionally. */
struct http_totals {
    uint64_t batches, votes, accepted, duplicate, rejected_unknown_project;
    uint64_t rejected_not_allowed;
    /* Every reason (TALLY_REASON_NAMES, [0] unused): rejected votes, rejected sheets. */
    uint64_t rejected[10];
    uint64_t sheets, sheets_accepted, sheets_duplicate, sheets_rejected;
    uint64_t sheets_rejected_by[10];
};

struct http_collector_status {
    const char *id;
    bool connected;
    int64_t last_seen_ms; /* unix ms of its last frame; 0 = never since start */
    uint64_t durable_seq;
    uint64_t applied_seq;
    struct http_totals durable;
};

/* A voting table as the checkpoint holds it (docs/consultation.md). */
struct http_table {
    uint32_t circuit_id; /* external circuit id; a table of an unknown circuit is ignored */
    uint32_t electors;
    bool reported;    /* a sheet, or at least one accepted per-ballot vote */
    bool sheet;       /* reported by tally sheet (its electors can bring no more votes) */
    uint64_t ballots; /* accepted per-ballot votes, or the sheet's blank + null + rows */
    uint32_t blank, null_ballots;
};

/* A durable correction of the count: a replaced tally sheet or a retracted batch. */
struct http_correction {
    uint64_t id;
    uint64_t checkpoint; /* the checkpoint that made it durable */
    bool retract;        /* false: a sheet replacement */
    const char *actor, *reason;
    int64_t at_ms;             /* unix ms */
    const char *table_id;      /* NULL: none */
    bool has_table_circuit;    /* table_circuit_id is the table's circuit */
    uint32_t table_circuit_id; /* external circuit id */
    const char *collector_id;  /* the batch retracted or bringing the sheet; NULL: none */
    uint64_t seq;
    uint32_t from_version, to_version; /* sheet */
    const uint32_t *project_ids;       /* n_deltas, external ids */
    const int64_t *deltas;
    size_t n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
};

/* The consultation's status as tallyd applies it (docs/consultation.md, part B). All
 * false (zeroed): provisional, no embargo. */
struct http_status {
    /* The one embargo gate: while set, every output (JSON, CSV, the event stream, the
     * corrections, /metrics) shows progress and no count: no project's votes, rank,
     * winner, tie, margin, blank, null or decided. The snapshot is then built without the
     * counts at all, so no renderer can show them. */
    bool embargo;
    bool closed;    /* the final checkpoint is written: no new batch is taken */
    bool certified; /* tallyctl certify ran: "status":"official" with certified_hash */
    uint8_t certified_hash[32];
    bool tie_rule; /* a tie rule by lot is set: tie_seed_hash is its seed's BLAKE2b-256 */
    uint8_t tie_seed_hash[32];
};

/* One point of the consultation's progress over time (national, cumulative). */
struct http_history_point {
    uint64_t checkpoint;
    int64_t committed_ms;                   /* unix ms */
    uint64_t accepted, duplicate, rejected; /* rejected: every reason together */
    uint64_t tables_reported;
};

struct http_checkpoint {
    uint64_t id;             /* checkpoint id (0: none committed yet, the empty state) */
    int64_t committed_ms;    /* unix ms */
    const uint64_t *votes;   /* durable votes, n_projects entries, dense order */
    const uint32_t *changed; /* dense indices whose votes changed in this checkpoint */
    size_t n_changed;
    struct http_totals totals; /* national, durable */
    const struct http_collector_status *collectors;
    size_t n_collectors;
    /* The head of the hash chain: checkpoint id's BLAKE2b-256 hash (store/chain.h), which
     * tallyctl verify recomputes. Published as 64 lower-case hex digits; ignored (shown as
     * null) when id is 0. */
    uint8_t head_hash[32];
    uint64_t epoch; /* writer epoch of the tallyd that holds the writer lock */
    /* Voting tables, durable (reporting progress, decided); none: every circuit's decided
     * is false. */
    const struct http_table *tables;
    size_t n_tables;
    /* Every durable correction so far, oldest first (ids ascending). Only appended to
     * between publishes: the server keeps copies of the ones it has not seen, and streams
     * each new one as an `event: correction` after the checkpoint's own event. */
    const struct http_correction *corrections;
    size_t n_corrections;
    /* The status every output of this snapshot follows. Publishing a status that differs
     * from the current snapshot's (say, the same checkpoint id with the embargo flipped)
     * applies it to every route before http_server_publish() returns, changes every ETag,
     * forgets the event history (it may hold counts) and sends each /v1/events subscriber
     * an `event: reset` of the new state. */
    struct http_status status;
    /* The record's history before this checkpoint, oldest first (ids ascending, each below
     * id), read at recovery and given with the first publish only (NULL/0 otherwise, and
     * ignored after the first publish). The server keeps its own bounded copy. When there
     * were many, they are every history_stride-th checkpoint from the first (and the last
     * one); 0 or 1: every one. */
    const struct http_history_point *history;
    size_t n_history;
    uint64_t history_stride;
};

/* ---- live figures for /metrics, read at request time --------------------------------- */

#define HTTP_CHECKPOINT_BUCKETS 12
/* Upper bounds in seconds of the checkpoint-duration histogram buckets (+Inf is last). */
extern const double http_checkpoint_bucket_le[HTTP_CHECKPOINT_BUCKETS];

struct http_metrics {
    uint64_t votes_accepted, votes_duplicate, votes_rejected_unknown_project; /* durable */
    uint64_t votes_rejected_not_allowed; /* durable: outside the collector's circuits */
    uint64_t votes_rejected[10];         /* durable, by every reason (TALLY_REASON_NAMES) */
    uint64_t sheets_accepted, sheets_duplicate, sheets_rejected; /* durable */
    uint64_t sheets_rejected_by[10];
    uint64_t batches, bytes_received; /* applied in memory / read from collectors */
    uint64_t seq_conflicts;           /* batches refused with ERROR_SEQ_CONFLICT since start */
    uint64_t connections_open, connections_total;
    uint64_t checkpoints;                                    /* committed since start */
    uint64_t checkpoint_bucket[HTTP_CHECKPOINT_BUCKETS + 1]; /* cumulative; last is +Inf */
    double checkpoint_seconds_sum;
    double checkpoint_lag_seconds; /* age of the oldest batch not yet durable; 0: none */
    uint64_t pg_errors;            /* failed PostgreSQL attempts */
    uint64_t backlog_votes;        /* applied, not yet durable */
    uint64_t ballots;              /* distinct ballots held */
    uint64_t ballot_set_bytes;     /* memory of the ballot set */
    bool paused;                   /* back-pressure on */
    bool postgres_up;              /* the store's last attempt reached PostgreSQL */
    const char *version, *commit;  /* tally_build_info labels (NULL: "unknown") */
    double process_cpu_seconds;    /* process_* (core/proc) */
    uint64_t process_resident_bytes, process_open_fds, process_max_fds;
    double process_start_time;
    uint64_t writer_epoch; /* the writer epoch held; 0 while not the writer */
    /* What peers made tallyd refuse or spend (net limits, since start). */
    uint64_t hello_timeouts, frame_timeouts, idle_timeouts, conn_limit_refused;
    uint64_t pre_auth_too_large, buffer_pauses, accept_pauses, tls_handshake_failures;
    uint64_t pre_auth_evicted, tcp_probes;
    uint64_t auth_refused, disabled_refused; /* Hellos refused: certificate, disabled */
    uint64_t buffered_bytes, arena_bytes;    /* input buffered / decode memory, all peers */
    bool tls;                                /* the collector port speaks mutual TLS */
    bool db_role_privileged; /* tallyd's database role is a superuser or owns the schema */
};

/* Called on the loop, from http_server_new() on (before any catalog or snapshot), so they
 * must work in every phase of start-up. Either may be NULL: no is_ready means never
 * ready; no metrics means durable totals from the last snapshot and zeros elsewhere. */
struct http_hooks {
    /* True when recovered and PostgreSQL is reachable. When false it writes a one-line
     * reason, NUL-terminated, into reason (len bytes: snprintf), say "waiting for the
     * writer lock held by tallyd on host h pid 123 since ...", "recovering" or
     * "PostgreSQL unreachable", which /readyz's 503 and, until the first publish, every
     * /v1 503 show. Asked at each /readyz and, until the first publish, each /v1
     * request. /readyz answers 200 only once it says true and a snapshot is published. */
    bool (*is_ready)(void *arg, char *reason, size_t len);
    /* Fills out (zeroed before the call) at each /metrics request. */
    void (*metrics)(void *arg, struct http_metrics *out);
    void *arg;
};

/* Binds host:port and serves. catalog may be NULL (start-up: see the top of this file)
 * and is otherwise borrowed for the server's life; hooks is copied. NULL (logged) when
 * the port cannot be bound or the catalog is inconsistent (a project naming a circuit
 * it does not have). */
struct http_server *http_server_new(struct event_base *base, const char *host, uint16_t port,
                                    const struct http_catalog *catalog,
                                    const struct http_hooks *hooks);
void http_server_free(struct http_server *h); /* NULL is a no-op */

/* Serves HTTPS instead of plain HTTP: every connection accepted from now on is wrapped in
 * TLS with ctx (an SSL_CTX, as tls_server_ctx_new(cert, key, NULL, ...) makes for
 * --http-tls-cert/--http-tls-key) through bufferevent_openssl; the whole API, the
 * dashboard and the /v1/events stream then go over TLS, and a client that does not speak
 * TLS is dropped at the handshake. Call it right after http_server_new(), before the loop
 * runs. The server takes its own reference to ctx (the caller may free its own at once)
 * and drops it in http_server_free(). Returns 0, or -1 (logged) when ctx is NULL or TLS
 * was already set. */
int http_server_use_tls(struct http_server *h, struct ssl_ctx_st *ctx)
    __attribute__((warn_unused_result));

/* Gives a server made without one its catalog, borrowed for the server's life; at most
 * once, and never when http_server_new() had one. The first http_server_publish() should
 * follow at once with the recovered state: until then the API still answers 503. An
 * inconsistent catalog is logged and the server stays starting, its /readyz saying why. */
void http_server_set_catalog(struct http_server *h, const struct http_catalog *catalog);

/* The port actually bound (useful when http_server_new() was given port 0), or 0. */
uint16_t http_server_port(const struct http_server *h);

/* A checkpoint committed: copies what it needs from cp (borrowed for the call: votes,
 * changed, collectors, head_hash, epoch, history), builds the next immutable snapshot with
 * each resource's version (the ETags and ?since=, from the comparison with the previous
 * one), adds its point to /v1/history, and pushes one event to /v1/events subscribers.
 * Runs on the loop; costs O(projects + circuits). The first call (the recovered state)
 * ends start-up, takes cp->history and sends no event. Publishing the id of
 * the current snapshot again replaces the snapshot (say, fresher collector states)
 * without an event; an id lower than the current one sends every subscriber an
 * `event: reset`. Needs the catalog: ignored (logged) before it is set. */
void http_server_publish(struct http_server *h, const struct http_checkpoint *cp);

/* ---- answers that come later: GET /v1/receipts/{collector}/{seq} ------------------- */

/* One request waiting for its answer. Owned by the server; whoever took it answers it
 * exactly once with http_pending_reply(), on the loop, even after the client went away
 * (then nothing is sent). */
struct http_pending;

/* Asked on the loop for each receipt request whose collector id ([A-Za-z0-9._-]{1,63})
 * and seq (1 .. 2^63-1) parse; collector is borrowed for the call. Returns 0 when it took
 * p, or -1 when it cannot take more now: the server then answers 503 with Retry-After and
 * p is not the callee's. */
typedef int (*http_receipt_cb)(void *arg, const char *collector, uint64_t seq,
                               struct http_pending *p);

/* Serves /v1/receipts/{collector}/{seq} through cb (none set: those paths answer 503). */
void http_server_set_receipts(struct http_server *h, http_receipt_cb cb, void *arg);

/* Answers p with status and a JSON body of len bytes (body malloc'd: taken, freed here;
 * NULL for none), adds Retry-After: 1 to a 503, and frees p. When the client went away
 * meanwhile, only frees. On the loop. */
void http_pending_reply(struct http_pending *p, int status, char *body, size_t len);

#endif
