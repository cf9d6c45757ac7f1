/* The collector session logic that ties net, tally and store together on the event
 * loop: Hello/Welcome, batch apply and provisional Ack, the checkpoint schedule, durable
 * Acks after COMMIT, back-pressure, and the final checkpoint at shutdown. */
#ifndef INGEST_INGEST_H
#define INGEST_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_history_point;

struct event_base;
struct tally;
struct ingest;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

struct ingest_config {
    const char *conninfo; /* for the store worker's own connection */
    const char *listen_host;
    uint16_t listen_port;
    const char *consultation_id;
    uint32_t checkpoint_ms;
    uint32_t refresh_ms;    /* collectors, state and requests read this often (0: 1000) */
    uint64_t backlog_votes; /* stop reading when this many votes are not yet durable */
    uint32_t max_batch_votes;
    uint32_t max_frame_bytes;
    uint32_t shutdown_grace_ms; /* how long the final checkpoint may wait for PostgreSQL */
    bool standby;               /* wait for another writer to stop instead of failing */
    uint32_t min_anonymity;     /* tokens per token page, at least */
    uint64_t expected_ballots;  /* size the ballot set for this many up front */
    /* Mutual TLS on the collector port (borrowed; NULL: plain TCP). With it, a collector's
     * identity is its certificate: Hello must name the collector it is pinned to. */
    struct ssl_ctx_st *tls;
    /* Limits (0: none); see tallyd --help. */
    uint32_t hello_timeout_ms, frame_timeout_ms, idle_timeout_ms, max_connections;
    uint64_t max_buffered_bytes;
    bool embargo; /* start under embargo (tallyd --embargo): written to the database */
};

struct store_catalog;

/* Called on the loop once start-up has finished and collectors are listened for; the
 * callee takes ownership of catalog (names and seats, ordered like the tally). */
typedef void (*ingest_started_cb)(void *arg, struct ingest *in, struct store_catalog *catalog);

/* Binds the collector port (refusing connections for now), then starts the store thread,
 * which connects, takes the writer lock (waiting for it when cfg->standby), recovers the
 * tally; then, on the loop, ingest listens for collectors and calls started. A start-up
 * that cannot succeed (another live writer, a newer schema, a database or role that does
 * not exist) ends the loop with exit status 1. Returns NULL (logged) when the port cannot
 * be bound or the thread cannot start. */
struct ingest *ingest_new(struct event_base *base, const struct ingest_config *cfg,
                          ingest_started_cb started, void *arg);

/* Start-up has finished: the tally exists and collectors are listened for. */
bool ingest_is_started(const struct ingest *in);

/* A reload: takes the settings that can change while running (checkpoint_ms,
 * backlog_votes, max_batch_votes, shutdown_grace_ms) from cfg; the rest is ignored. */
void ingest_reconfigure(struct ingest *in, const struct ingest_config *cfg);

/* Begins an orderly stop: no new batches, a final checkpoint, then event_base_loopexit.
 * Safe to call more than once. */
void ingest_shutdown(struct ingest *in);

/* Recovered and the store's last attempt reached PostgreSQL. When not, writes a one-line
 * reason (start-up step, the writer lock's holder, PostgreSQL unreachable, stopping). */
bool ingest_is_ready(const struct ingest *in, char *reason, size_t len);

/* Called on the loop after each checkpoint COMMIT (once the durable acks are queued):
 * changed lists the dense project indices whose durable votes moved (borrowed for the
 * call); seconds is how long the checkpoint took from hand-off to COMMIT. The new head of
 * the chain is ingest_head_hash(). */
typedef void (*ingest_durable_cb)(void *arg, uint64_t checkpoint_id, double seconds,
                                  const uint32_t *changed, size_t n_changed);

/* Called on the loop when a registered collector connects or leaves, for views that show
 * who is connected (they need not wait for the next checkpoint). */
typedef void (*ingest_presence_cb)(void *arg);
void ingest_set_presence_cb(struct ingest *in, ingest_presence_cb cb, void *arg);

/* Hash of the last committed checkpoint (32 bytes; zeros when there is none). */
const uint8_t *ingest_head_hash(const struct ingest *in);
void ingest_set_durable_cb(struct ingest *in, ingest_durable_cb cb, void *arg);

/* The consultation id this tallyd counts (from the database). */
const char *ingest_consultation(const struct ingest *in);

/* The tally, read-only, for publishing (durable votes and totals, the registry); NULL
 * before start-up finished. */
const struct tally *ingest_tally(const struct ingest *in);

/* A correction of the count (docs/consultation.md): a replaced tally sheet or a retracted
 * batch, durable. */
struct ingest_correction {
    uint64_t id;
    uint64_t checkpoint_id;
    int kind; /* 0 sheet replacement, 1 retraction */
    const char *actor, *reason;
    int64_t at_ms;            /* unix ms */
    const char *table_id;     /* NULL: none */
    const char *collector_id; /* the batch retracted or bringing the sheet; NULL: none */
    uint64_t seq;
    uint32_t from_version, to_version; /* sheet */
    const uint32_t *project_ids;       /* n_deltas, ascending */
    const int64_t *deltas;
    size_t n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
};

/* Every durable correction, oldest first (recovered ones included): *n of them. Borrowed
 * until control returns to the loop (the array grows at each commit); the strings and
 * arrays each entry points to stay for ingest's life. Only appended to: a caller that
 * remembers how many it saw finds the new ones after each checkpoint (on_durable). */
const struct ingest_correction *ingest_corrections(const struct ingest *in, size_t *n);

/* The consultation's progress over time as recovered from the record (oldest first; every
 * *stride-th checkpoint from the first, and the last): the caller takes the malloc'd array
 * (free it); NULL with *n 0 once taken or when none. */
struct store_history_point *ingest_history_take(struct ingest *in, size_t *n, uint64_t *stride);

/* The consultation's state as this tallyd applies it (docs/consultation.md, part B). */
struct ingest_consultation_state {
    bool embargo; /* every output shows progress but no counts */
    bool closed;  /* no new batch is taken */
    uint64_t closed_checkpoint_id;
    int64_t closed_at_ms;
    bool tie_rule; /* lot: tie_seed_hash is the published hash of its seed */
    uint8_t tie_seed_hash[32];
    bool certified; /* tallyctl certify ran: the results are official */
    uint8_t certified_hash[32];
    uint64_t certified_checkpoint_id;
    int64_t certified_at_ms;
};
void ingest_consultation_state(const struct ingest *in, struct ingest_consultation_state *out);

/* Called on the loop when the state changed (the embargo flipped, closed, a tie rule,
 * certified), before ingest tells the database that tallyd applies it: whoever publishes
 * must apply it to every output within this call. */
typedef void (*ingest_state_cb)(void *arg);
void ingest_set_state_cb(struct ingest *in, ingest_state_cb cb, void *arg);

struct ingest_stats {
    uint64_t batches_applied;
    uint64_t bytes_received;
    uint64_t connections_open, connections_total;
    uint64_t checkpoints; /* committed since start */
    uint64_t last_checkpoint_id;
    int64_t last_commit_ms; /* unix ms of the last COMMIT (start-up time before any) */
    uint64_t pg_errors;
    uint64_t backlog_votes;
    uint64_t ballots;
    uint64_t ballot_set_bytes; /* memory of the ballot set (both tables while it grows) */
    size_t collectors_connected;
    bool paused;
    uint64_t seq_conflicts; /* batches refused with ERROR_SEQ_CONFLICT */
    uint64_t writer_epoch;
    int64_t oldest_undurable_ms; /* unix ms when the oldest batch not yet durable was applied;
                                  * 0 when everything applied is durable */
    bool postgres_up;
    /* What peers made the collector port refuse or spend (net limits, since start). */
    uint64_t hello_timeouts, frame_timeouts, idle_timeouts, conn_limit_refused;
    uint64_t pre_auth_too_large, buffer_pauses, accept_pauses, tls_handshake_failures;
    uint64_t pre_auth_evicted, tcp_probes;
    uint64_t buffered_bytes, arena_bytes;
    bool tls;                  /* mutual TLS on the collector port */
    uint64_t auth_refused;     /* Hellos refused with ERROR_AUTH */
    uint64_t disabled_refused; /* Hellos refused, sessions dropped: collector disabled */
    uint64_t rejected_unknown_project, rejected_not_allowed; /* votes, applied since start */
    /* The database role tallyd writes with, and whether it has more rights than it needs. */
    char db_role[64];
    bool db_role_is_superuser, db_role_owns_schema;
};
void ingest_stats(const struct ingest *in, struct ingest_stats *out);

/* A collector as the API shows it: i < tally_collector_count(ingest_tally(in)). */
struct ingest_collector_view {
    const char *id;
    bool connected;
    int64_t last_seen_ms; /* unix ms of its last frame; 0 = not since start */
};
void ingest_collector_view(const struct ingest *in, uint32_t i, struct ingest_collector_view *out);

/* Exit status for main: 0 when everything applied is durable, 1 otherwise (fatal store
 * error, or the final checkpoint could not be written). */
int ingest_exit_status(const struct ingest *in);

/* Frees everything, the tally included. NULL is a no-op. */
void ingest_free(struct ingest *in);

#endif
