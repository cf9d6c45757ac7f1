/* Internal to the ingest module: the state ingest.c (sessions, start-up, lifecycle) and
 * checkpoint.c (the checkpoint schedule, durable acks) share. Nothing outside src/ingest
 * includes this. */
#ifndef INGEST_INTERNAL_H
#define INGEST_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

#include "ingest/ingest.h"
#include "ingest/startup.h"
#include "store/store.h"
#include "tally.pb-c.h"
#include "tally/tally.h"

struct net_server;
struct net_conn;

#define REFRESH_MS 1000 /* default of --refresh-ms: collectors, state, requests */
#define PROGRESS_SEC 10 /* period of the progress log line */

/* What the record says of a collector beyond its watermarks (store_collector). */
struct ingest_auth {
    bool has_pin;
    uint8_t pin[32];
    bool disabled;
    bool restricted;    /* votes only for projects of circuits[] */
    uint32_t *circuits; /* malloc'd copy, to tell a change at refresh */
    size_t n_circuits;
};

/* Requests taken from a refresh, with their outcome, until the checkpoint that completes
 * them commits (requests.c). */
struct ingest_reqs {
    struct store_request *reqs;
    char (*outcomes)[256]; /* "applied" or "refused: ..." */
    size_t n, cap;
};

struct ingest_retracted {
    uint32_t collector;
    uint64_t seq;
};

struct ingest {
    struct event_base *base;
    struct ingest_config cfg;
    char consultation[64]; /* from the database; cfg.consultation_id points here */
    struct tally *tally;
    struct net_server *net;
    struct store_worker *worker;

    char **names;              /* by collector index; strings never move once made */
    int64_t *last_seen_ms;     /* by collector index: unix ms of the last frame */
    struct net_conn **conn_of; /* by collector index; NULL when not connected */
    struct ingest_auth *auth;  /* by collector index: identity, restriction, disabled */
    size_t cap_collectors;

    ingest_started_cb on_started;
    void *on_started_arg;
    struct ingest_rebuild rebuild; /* the store thread's until start-up is handed over */
    bool started;

    uint64_t last_checkpoint_id;
    uint8_t head_hash[32];
    uint64_t seq_conflicts;
    uint64_t auth_refused, disabled_refused;
    char db_role[64];
    bool db_role_is_superuser, db_role_owns_schema;
    bool job_inflight; /* a checkpoint or refresh job is with the worker */
    bool job_is_checkpoint;
    struct store_checkpoint job;
    struct store_batch *job_batches;
    size_t cap_job_batches;
    struct store_watermark *job_marks;
    size_t cap_job_marks;
    /* The checkpoint job's sheets and corrections (checkpoint.c), reused. */
    struct store_sheet *job_sheets;
    size_t cap_job_sheets;
    struct store_correction *job_corrections;
    size_t cap_job_corrections;
    char (*job_reasons)[96]; /* by correction */
    size_t cap_job_reasons;
    uint32_t *job_corr_ids;   /* every correction's project ids, then ... */
    int64_t *job_corr_deltas; /* ... deltas */
    size_t cap_job_corr;
    /* The consultation's state and requests (requests.c). */
    struct ingest_consultation_state state;
    bool closed;           /* no new batch: a close applied (durable or not yet) */
    bool tie_rule_pending; /* a tie rule applied, not yet durable */
    bool set_embargo;      /* tallyd --embargo: write embargo = true with the next refresh */
    int embargo_to_write;  /* STORE_EMBARGO_*: what every output applies now */
    struct ingest_reqs reqs[2];
    struct ingest_reqs *pending_reqs, *inflight_reqs;
    struct store_request_done *job_done;
    size_t cap_job_done;
    struct store_event *job_events;
    size_t cap_job_events;
    struct ingest_retracted *retracted; /* batches retracted (a few) */
    size_t n_retracted, cap_retracted;
    ingest_state_cb on_state;
    void *on_state_arg;
    struct ingest_correction *corrections; /* every durable one (ingest_corrections) */
    size_t n_corrections, cap_corrections;
    struct store_history_point *history; /* recovered, until taken (ingest_history_take) */
    size_t n_history;
    uint64_t history_stride;
    const char **table_names; /* by dense table index (borrowed from the tally) */
    size_t n_table_names;
    /* One batch's scratch (batch.c), sized for the wire's limits once. */
    int32_t *dict;                    /* WIRE_MAX_BATCH_TABLES */
    struct tally_sheet_in *sheets_in; /* WIRE_MAX_BATCH_SHEETS, and so on */
    uint8_t (*sheet_digests)[32];
    struct tally_sheet_out *sheets_out;
    Tally__SheetResult *sheet_results;
    Tally__SheetResult **sheet_result_ptrs;
    uint32_t *acked; /* collectors to tell of a new durable_seq */
    size_t cap_acked;
    uint32_t *changed; /* projects whose durable votes moved in the last commit */
    size_t cap_changed;
    ingest_durable_cb on_durable;
    void *on_durable_arg;
    ingest_presence_cb on_presence;
    void *on_presence_arg;
    int64_t pending_since_ms;  /* unix ms of the first batch in the pending delta, 0: none */
    int64_t inflight_since_ms; /* the same for the checkpoint in flight */
    struct timespec job_started;
    uint64_t checkpoints;
    int64_t last_commit_ms;
    uint64_t last_refresh_ms;
    uint64_t now_ms;

    /* Mailbox from the store thread. */
    pthread_mutex_t mbox_lock;
    bool mbox_started; /* start-up finished (mbox_start_rc says how) */
    int mbox_start_rc;
    char mbox_start_why[512];
    struct store_started mbox_start;
    struct event *start_ev;
    bool mbox_full;
    int mbox_rc;
    struct store_collector *mbox_collectors;
    size_t mbox_n_collectors;
    struct event *done_ev;

    struct event *tick_ev;
    struct event *progress_ev;
    struct event *grace_ev;
    bool paused;
    bool shutting_down;
    bool finished; /* final checkpoint done; the loop is about to end */
    int exit_status;
    uint64_t progress_votes;
};

/* --refresh-ms, or its default. */
static inline uint64_t ingest_refresh_ms(const struct ingest *in)
{
    return in->cfg.refresh_ms ? in->cfg.refresh_ms : REFRESH_MS;
}

/* ingest.c */
uint64_t ingest_monotonic_ms(struct ingest *in);
int64_t ingest_wall_ms(struct ingest *in); /* as of this loop iteration */
uint32_t ingest_collector_add(struct ingest *in, const char *id, uint64_t durable_seq,
                              const struct tally_totals *durable);
void ingest_totals_to_pb(const struct tally_totals *t, Tally__CollectorTotals *pb);
/* Takes what the record says of collector idx (pin, disabled, circuits): a session that no
 * longer may go on (disabled, or re-pinned to another certificate) is dropped. */
void ingest_collector_update(struct ingest *in, uint32_t idx, const struct store_collector *sc);
/* Pauses reading from collectors past the backlog, resumes below half of it. */
void ingest_backpressure_check(struct ingest *in);

/* batch.c */
void ingest_batch_scratch_init(struct ingest *in);
void ingest_batch_scratch_cleanup(struct ingest *in);
/* Checks, applies and acknowledges one batch of collector idx; -1 when the session was
 * failed. */
int ingest_on_batch(struct ingest *in, struct net_conn *c, uint32_t idx, const Tally__Batch *b);

/* requests.c */
/* At start: the recovered state (and tallyd --embargo). */
void ingest_state_start(struct ingest *in, const struct store_state *s);
/* A refresh's state and applicable requests (taking the requests out of cp). */
void ingest_requests_take(struct ingest *in, struct store_checkpoint *cp);
/* The pending requests go with the job being built: its done list and events (at_us: the
 * time hashed). */
void ingest_requests_seal(struct ingest *in, int64_t at_us);
/* The job that carried them committed as checkpoint_id. */
void ingest_requests_committed(struct ingest *in, uint64_t checkpoint_id);
/* An in-flight request by id (a retraction's actor and reason), or NULL. */
const struct store_request *ingest_request_of(const struct ingest *in, uint64_t id);
void ingest_retracted_add(struct ingest *in, uint32_t c, uint64_t seq);
void ingest_requests_cleanup(struct ingest *in);

/* checkpoint.c */
void ingest_job_cleanup(struct ingest *in);
/* Appends a durable correction to in->corrections, copying what it points to. */
void ingest_correction_keep(struct ingest *in, const struct ingest_correction *c);
void ingest_corrections_cleanup(struct ingest *in);
/* Seals the pending delta and hands it to the store, or a refresh of the collectors list
 * when it is due; nothing while a job is with the worker. */
void ingest_checkpoint_maybe_start(struct ingest *in);
/* Ends the loop once a stop was asked and everything applied is durable. */
void ingest_finish_shutdown_if_done(struct ingest *in);
void ingest_tick_cb(evutil_socket_t fd, short what, void *arg);
void ingest_done_cb(evutil_socket_t fd, short what, void *arg);
void ingest_progress_cb(evutil_socket_t fd, short what, void *arg);
void ingest_grace_cb(evutil_socket_t fd, short what, void *arg);
/* The store thread's done(): posts the outcome to the loop. */
void ingest_store_done(void *arg, struct store_checkpoint *cp, int rc,
                       struct store_collector *collectors, size_t n_collectors);

#endif
