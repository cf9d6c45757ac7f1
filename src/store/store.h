/* PostgreSQL storage for tallyd and tallyctl: versioned migrations, checkpoint writes,
 * start-up recovery, and a worker thread that writes checkpoints off the event loop.
 * This header is the whole contract; nothing here includes libevent, and callers never
 * see a PGconn except through struct store. */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rejection reasons as stored (batches.rejected_by_reason[k] is reason k, 1-based):
 * docs/consultation.md. Same numbers as tally's and the wire's. */
#define STORE_REASONS 10 /* arrays indexed 0..9; [0] unused */

struct store; /* one libpq connection */

/* ---- connection ------------------------------------------------------------------ */

/* Connects (blocking). conninfo may be NULL or "" to use the PG* environment.
 * Returns NULL and writes a one-line reason into err on failure.
 * The synchronous calls below never log their failures: they return -1 (or a
 * store_result) and store_last_error() says why, for the caller to report. */
struct store *store_open(const char *conninfo, char *err, size_t err_len);
/* True when a store_open failure message says waiting will not help: the conninfo does not
 * parse, the database or role does not exist, authentication failed. A refused or timed-out
 * connection, a server starting up or shutting down, too many clients: false. */
bool store_connect_error_is_permanent(const char *err);
void store_close(struct store *s); /* NULL is a no-op */
/* Last error message of this connection, never NULL. */
const char *store_last_error(const struct store *s);

/* ---- schema ---------------------------------------------------------------------- */

/* Applies every migration newer than the database's version, each in its own
 * transaction, serialised by an advisory lock. Returns 0 or -1. */
int store_migrate(struct store *s) __attribute__((warn_unused_result));

/* Applies migrations up to version target only (store_migrate is target = latest); for
 * tests that build a database as an older tallyd left it. Returns 0 or -1. */
int store_migrate_to(struct store *s, int target) __attribute__((warn_unused_result));

/* The database's applied schema version (0 when never migrated). Returns 0 or -1. */
int store_schema_version(struct store *s, int *version) __attribute__((warn_unused_result));
/* The newest schema version this build carries. */
int store_schema_latest(void);

/* ---- recovery (tallyd start-up) -------------------------------------------------- */

struct store_project {
    uint32_t id; /* external project id from the registry */
    uint32_t circuit_id;
    uint64_t votes; /* durable tally */
};

#define STORE_PIN_BYTES 32 /* SHA-256 of a certificate's SubjectPublicKeyInfo (TLS_PIN_BYTES) */

struct store_collector {
    char id[64];
    uint64_t durable_seq;                                   /* last batch seq committed */
    uint64_t batches, votes, accepted, duplicate, rejected; /* cumulative, durable; rejected
                                                             * counts every reason */
    uint64_t rejected_not_allowed; /* of rejected: outside the collector's circuits */
    uint64_t sheets, sheets_accepted, sheets_duplicate, sheets_rejected; /* durable */
    /* Durable rejections by reason ([k], docs/consultation.md): votes of its ballot batches,
     * sheets of its sheet batches. Read at recovery only (0 in the collectors list). */
    uint64_t reasons[STORE_REASONS], sheet_reasons[STORE_REASONS];
    bool has_pin;                 /* a certificate is pinned to this id */
    uint8_t pin[STORE_PIN_BYTES]; /* its pin, when has_pin */
    bool disabled;                /* tallyctl disable-collector: refuse it */
    bool restricted;              /* false: every circuit (circuits NULL, n_circuits 0) */
    uint32_t *circuits;           /* when restricted: the registry circuit ids it may take
                                   * votes for, ascending, distinct; malloc'd, owned by the
                                   * array (store_collectors_free) */
    size_t n_circuits;
};

/* Frees an array of n collectors as the store hands them out (recovery, the collectors
 * list, done()): each one's circuits, then the array. NULL is a no-op. */
void store_collectors_free(struct store_collector *a, size_t n);

/* The consultation's state as tallyd applies it (consultation_state, docs/consultation.md
 * part B). */
struct store_state {
    bool known; /* read (false: the read failed or the schema has none; keep what you had) */
    bool embargo;
    bool closed;
    uint64_t closed_checkpoint_id;
    int64_t closed_at_us;
    bool tie_rule; /* lot, with the seed's hash */
    uint8_t tie_seed_hash[32];
    bool certified;
    uint8_t certified_hash[32];
    uint64_t certified_checkpoint_id;
    int64_t certified_at_us;
};

/* A voting table's current (highest-version) accepted sheet. */
struct store_recovered_sheet {
    uint32_t table; /* index into store_recovery.tables */
    uint32_t version;
    uint8_t digest[32];
    uint32_t *project_ids; /* n, ascending; malloc'd (store_recovery_cleanup) */
    uint64_t *votes;
    size_t n;
    uint32_t blank, null_ballots;
};

/* A stored correction (the corrections table), every string and array malloc'd. */
struct store_correction_row {
    uint64_t id, checkpoint_id;
    int kind; /* enum store_correction_kind */
    char *actor, *reason;
    int64_t at_us;      /* µs since 1970 UTC */
    char *table_id;     /* NULL: none */
    char *collector_id; /* NULL: none */
    uint64_t seq;
    uint32_t from_version, to_version;
    uint32_t *project_ids;
    int64_t *deltas;
    size_t n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
};

/* Every correction, by id: a malloc'd array of *n (never NULL on success). 0 or -1. */
int store_corrections_read(struct store *s, struct store_correction_row **out, size_t *n)
    __attribute__((warn_unused_result));
void store_corrections_free(struct store_correction_row *a, size_t n); /* NULL: no-op */

/* One point of the consultation's progress over time: national figures so far, at a
 * checkpoint (store_history_read). */
struct store_history_point {
    uint64_t checkpoint;
    int64_t committed_ms;                   /* unix ms */
    uint64_t accepted, duplicate, rejected; /* rejected: every reason together */
    uint64_t tables_reported;
};
/* Points store_history_read returns, at most (plus the last): half of what the HTTP side
 * keeps, so that it goes on from them at their stride without thinning them again. */
#define STORE_HISTORY_MAX 1024

/* Every checkpoint's point, oldest first, thinned to every *stride-th one from the first
 * (a power of two; and the last) when there are more than STORE_HISTORY_MAX: a malloc'd
 * array of *n (never NULL on success). 0 or -1. */
int store_history_read(struct store *s, struct store_history_point **out, size_t *n,
                       uint64_t *stride) __attribute__((warn_unused_result));

struct store_recovery {
    char consultation_id[64];
    struct store_correction_row *corrections; /* every correction, by id */
    size_t n_corrections;
    struct store_history_point *history; /* store_history_read's points */
    size_t n_history;
    uint64_t history_stride;
    struct store_state state;   /* the consultation's state */
    struct store_table *tables; /* n_tables voting tables, by id (store_tables_read) */
    size_t n_tables;
    uint64_t *table_ballots;              /* by table: per-ballot ballots (sum of table deltas) */
    struct store_recovered_sheet *sheets; /* every table's current sheet */
    size_t n_sheets;
    uint64_t last_correction_id;    /* 0 when none */
    struct store_project *projects; /* n_projects entries, malloc'd, ordered by id */
    size_t n_projects;
    struct store_collector *collectors; /* malloc'd, by id; freed by store_recovery_cleanup */
    size_t n_collectors;
    uint64_t last_checkpoint_id; /* 0 when none yet */
    uint8_t head_hash[32];       /* hash of that checkpoint (zeros when none) */
    uint64_t compacted_through;  /* tallies hold the deltas of checkpoints 1..this */
    uint64_t n_tokens;           /* tokens handed to the callback */
    uint64_t n_digests;          /* batch digests handed to the callback */
};

/* Called with each stored token page's tokens (borrowed until it returns). */
typedef void (*store_tokens_cb)(void *arg, const uint64_t *tokens, size_t n);

/* What start-up recovery streams, in this order, on the calling thread. */
struct store_recover_hooks {
    /* Projects, collectors and the head are read (rec is borrowed for the call); tokens
     * and digests follow. Returns 0, or -1 to give up (recovery then fails). */
    int (*begin)(void *arg, const struct store_recovery *rec);
    store_tokens_cb tokens;
    /* Every stored batch, by collector then seq; digest NULL when it was recorded before
     * digests existed. */
    void (*digest)(void *arg, const char *collector_id, uint64_t seq, const uint8_t *digest);
    void *arg;
};

/* Loads the durable state in one snapshot: projects with their durable votes, collectors
 * with watermarks, the head of the chain, then (when hooks is not NULL) every accepted
 * token and every batch digest, streamed through hooks and not kept. Returns 0, or -1
 * with out left empty. */
int store_recover_all(struct store *s, struct store_recovery *out,
                      const struct store_recover_hooks *hooks) __attribute__((warn_unused_result));

/* The same with only a tokens callback (NULL: the totals only, for tallyctl). */
int store_recover(struct store *s, struct store_recovery *out, store_tokens_cb on_tokens, void *arg)
    __attribute__((warn_unused_result));
void store_recovery_cleanup(struct store_recovery *r);

/* ---- catalog: names and seats, for the results API ---------------------------------- */

struct store_catalog_project {
    uint32_t id;
    uint32_t circuit_id;
    char *name;
    uint32_t min_votes; /* votes it needs at least to win (0: none) */
};

struct store_catalog_circuit {
    uint32_t id;
    uint32_t seats;
    char *name;
    char *state;
};

struct store_catalog {
    char *consultation_name;
    struct store_catalog_project *projects; /* ordered by id, as in store_recovery */
    size_t n_projects;
    struct store_catalog_circuit *circuits; /* ordered by id */
    size_t n_circuits;
};

/* Reads project and circuit names, states and seats. Returns 0, or -1 with out empty. */
int store_catalog_read(struct store *s, struct store_catalog *out)
    __attribute__((warn_unused_result));
void store_catalog_cleanup(struct store_catalog *c);

/* ---- checkpoints ----------------------------------------------------------------- */

enum store_batch_kind { STORE_BATCH_BALLOTS = 0, STORE_BATCH_SHEETS = 1 };

/* One applied batch, as it is recorded: its figures, content digest and counts, never its
 * tokens. */
struct store_batch {
    const char *collector_id;
    uint64_t seq;
    const uint8_t *digest; /* 32 bytes (wire_batch_digest_msg) */
    uint32_t votes, accepted, duplicate, rejected_unknown;
    uint32_t rejected_not_allowed; /* votes for a project outside the collector's circuits;
                                    * votes = accepted + duplicate + every rejected reason */
    enum store_batch_kind kind;
    uint32_t reasons[STORE_REASONS]; /* rejected votes (ballots) or sheets (sheets) by reason */
    uint32_t sheets, sheets_accepted, sheets_duplicate;
    /* A ballot batch's accepted votes per project: n_counts interleaved (external project
     * id, votes) uint32 pairs, any order (the store sorts and encodes them). */
    const uint32_t *counts;
    size_t n_counts;
    /* Its accepted ballots per voting table: n_tables interleaved (index into
     * store_checkpoint.table_names, ballots) pairs. */
    const uint32_t *tables;
    size_t n_tables;
};

/* A collector's new watermark and what its batches in this checkpoint add (rejected: every
 * reason of its ballot batches). */
struct store_watermark {
    const char *collector_id;
    uint64_t prev_seq; /* durable_seq before this checkpoint (fencing) */
    uint64_t durable_seq;
    uint64_t batches, votes, accepted, duplicate, rejected;
    uint64_t sheets, sheets_accepted, sheets_duplicate, sheets_rejected;
};

/* An accepted tally sheet. */
struct store_sheet {
    uint32_t table; /* index into store_checkpoint.table_names */
    uint32_t version;
    const char *collector_id;
    uint64_t seq;
    const uint8_t *digest; /* 32: the canonical sheet digest */
    const uint32_t *rows;  /* n_rows interleaved (project id, votes) pairs, ascending id */
    size_t n_rows;
    uint32_t blank, null_ballots;
};

enum store_correction_kind { STORE_CORRECTION_SHEET = 0, STORE_CORRECTION_RETRACT = 1 };

/* A correction of the count, recorded and chained with the checkpoint that applies it. */
struct store_correction {
    enum store_correction_kind kind;
    const char *actor, *reason;
    int64_t at_us;            /* when, µs since 1970 UTC (chosen by tallyd: it is hashed) */
    int64_t table;            /* index into store_checkpoint.table_names, -1: none */
    const char *collector_id; /* the batch retracted or bringing the sheet; NULL: none */
    uint64_t seq;
    uint32_t from_version, to_version; /* sheet */
    const uint32_t *project_ids;       /* n_deltas, ascending, deltas non-zero */
    const int64_t *deltas;
    size_t n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
};

enum store_request_kind {
    STORE_REQUEST_RETRACT = 1,
    STORE_REQUEST_CLOSE = 2,
    STORE_REQUEST_TIE_RULE = 3,
};

/* A pending request the store found applicable (what it could refuse itself it marked done
 * already). Everything malloc'd (store_requests_free). */
struct store_request {
    uint64_t id;
    enum store_request_kind kind;
    char *actor, *reason;
    char collector_id[64]; /* retract */
    uint64_t seq;
    uint8_t *seed; /* tie_rule */
    size_t seed_len;
    uint32_t *counts; /* retract: the batch's counts, n_counts (project id, votes) pairs, */
    size_t n_counts;  /* ascending */
    char **table_ids; /* retract: its ballots per table */
    uint32_t *table_ballots;
    size_t n_tables;
};
void store_requests_free(struct store_request *a, size_t n); /* NULL is a no-op */

/* A request completed by a checkpoint: applied (its effect is in the checkpoint) or refused
 * by tallyd; done_at is hashed into the chain for events. */
struct store_request_done {
    uint64_t id;
    int64_t at_us;
    const char *outcome; /* "applied" or "refused: ..." */
};

enum store_event_kind { STORE_EVENT_CLOSE = 1, STORE_EVENT_TIE_RULE = 2 };

/* A change of the consultation's state that enters the chain (docs/consultation.md). */
struct store_event {
    uint64_t request_id;
    enum store_event_kind kind;
    const char *actor;
    int64_t at_us;
    const uint8_t *seed; /* tie rule: the seed (stored) ... */
    size_t seed_len;
    uint8_t seed_hash[32]; /* ... and its BLAKE2b-256 (hashed, published) */
};

enum { STORE_EMBARGO_LEAVE = 0, STORE_EMBARGO_OFF = 1, STORE_EMBARGO_ON = 2 };

struct store_checkpoint {
    const struct store_batch *batches;
    size_t n_batches;
    const uint32_t *project_ids; /* count deltas, external ids, distinct */
    const int64_t *deltas;       /* negative where a replaced sheet subtracts */
    size_t n_deltas;
    const struct store_watermark *marks;
    size_t n_marks;
    uint64_t *tokens; /* every accepted token of these batches; the store sorts them */
    size_t n_tokens;
    /* Voting table ids, by the indices the fields below use (borrowed). */
    const char *const *table_names;
    size_t n_table_names;
    /* Per-ballot ballots per table: n_table_deltas (table index, delta), any order. */
    const uint32_t *table_idx;
    const int64_t *table_deltas;
    size_t n_table_deltas;
    const struct store_sheet *sheets;
    size_t n_sheets;
    const struct store_correction *corrections;
    size_t n_corrections;
    const struct store_request_done *done; /* requests this checkpoint completes */
    size_t n_done;
    const struct store_event *events;
    size_t n_events;
    /* Write consultation_state.embargo_applied (STORE_EMBARGO_*; 0 leaves it), and with
     * set_embargo also embargo itself (tallyd --embargo): with any job, refresh-only too. */
    int embargo_applied;
    bool set_embargo;
    /* Read the collectors list after the job and hand it to done() (a refresh-only job
     * always does): how a busy tallyd learns of collectors added, disabled or re-pinned.
     * The consultation's state and pending requests are read with it (below). */
    bool refresh_collectors;
    /* Filled by the worker with the collectors list: the state (state.known false when
     * not read) and the applicable pending requests, oldest first (the callee owns them:
     * store_requests_free). */
    struct store_state state;
    struct store_request *requests;
    size_t n_requests;
    /* Filled by the worker before done(): where this checkpoint sits in the chain. */
    uint64_t id;
    uint8_t hash[32];
};

enum store_result {
    STORE_OK = 0,
    STORE_RETRY = -1, /* connection or transient failure: reconnect and write the same again */
    STORE_FATAL = -2, /* the database disagrees (fencing failed, schema missing): stop */
};

/* Registered collectors with their pins, circuits and disabled flags, by id, for a running
 * tallyd to learn of collectors added or changed later. Fills a malloc'd array of n
 * entries (never NULL on success, even when n is 0; free with store_collectors_free);
 * returns 0 or -1. */
int store_collectors_list(struct store *s, struct store_collector **out, size_t *n)
    __attribute__((warn_unused_result));

/* ---- audit (tallyctl verify) ------------------------------------------------------- */

struct store_verify_report {
    uint64_t checkpoints, batches, collectors, pages, tokens, projects, votes;
    uint64_t tables, sheets, corrections; /* voting tables; accepted sheets; corrections */
    uint64_t checkpoints_v3;              /* of checkpoints: format 3 (Merkle root, body hash) */
    uint8_t head_hash[32]; /* hash of the last checkpoint (zeros when there is none) */
    char problem[512];     /* the first disagreement found, "" when everything agrees */
};

/* Called now and then during a long verify with a one-line progress message. */
typedef void (*store_progress_cb)(void *arg, const char *line);

/* Recomputes, with SELECT alone and in one snapshot, every total from the stored
 * per-checkpoint deltas, every batch's figures against its checkpoint and collector, every
 * token page against its digest, and the whole hash chain (docs/record.md). Returns 0 when
 * all agree, 1 when something does not (out->problem names the first checkpoint, batch,
 * page or project that does not), -1 when the database could not be read
 * (store_last_error). progress may be NULL. */
int store_verify(struct store *s, struct store_verify_report *out, store_progress_cb progress,
                 void *arg) __attribute__((warn_unused_result));

/* ---- administration (tallyctl) --------------------------------------------------- */

/* What tallyctl add-collector asks for. Settings left out (pin NULL; neither circuits,
 * state nor every_circuit) keep what an existing collector has; a new one gets none (no
 * pin, every circuit). */
struct store_collector_spec {
    const char *id;           /* [A-Za-z0-9._-]{1,63} */
    const uint8_t *pin;       /* STORE_PIN_BYTES, or NULL: none (an existing pin stays) */
    bool restrict_circuits;   /* limit it to circuits[0 .. n_circuits) */
    const uint32_t *circuits; /* registry circuit ids; any order, repeats ignored */
    size_t n_circuits;
    const char *state;  /* NULL or: limit it to every circuit this state has now */
    bool every_circuit; /* lift a restriction: every circuit */
};

/* Registers a collector with zero watermark, or changes an existing one's pin and circuits
 * as spec says, in one transaction; the same settings again change nothing. *created is
 * true when the collector is new. Fails (-1, store_last_error says which) on: an invalid
 * id; a pin already pinned to another collector (naming it); an unknown circuit id (naming
 * them); a state without circuits; more than one of circuits, state, every_circuit. */
int store_collector_add(struct store *s, const struct store_collector_spec *spec, bool *created)
    __attribute__((warn_unused_result));

/* Reads one collector into out (its circuits malloc'd: store_collectors_free(out, 1)).
 * Returns 1 when found, 0 when there is no such collector, -1 on failure. */
int store_collector_get(struct store *s, const char *id, struct store_collector *out)
    __attribute__((warn_unused_result));

/* Disables (refused from its next Hello on; a running tallyd learns of it at its next
 * collectors refresh) or enables a collector. Returns 0 when it changed, 1 when it already
 * was so, -1 for an unknown id (store_last_error names it) or a failure. */
int store_collector_set_disabled(struct store *s, const char *id, bool disabled)
    __attribute__((warn_unused_result));

/* One registry row; strings are borrowed until the next call of the iterator. */
struct store_registry_row {
    uint64_t line; /* input line the row starts on, for error messages */
    uint32_t project_id;
    const char *project_name;
    uint32_t circuit_id;
    const char *circuit_name;
    const char *state;
    uint32_t seats;     /* >= 1 */
    uint32_t min_votes; /* votes a project needs at least to win; 0 .. INT32_MAX */
};

/* Fills row; returns 1 for a row, 0 at the end, -1 on an input error (the iterator
 * keeps its own message; the load is then rolled back). */
typedef int (*store_registry_next_cb)(void *arg, struct store_registry_row *row);

struct store_registry_summary {
    uint64_t projects, circuits, states;             /* distinct in the input */
    uint64_t new_projects, new_circuits, new_states; /* of those, not in the database before */
    uint64_t conflict_line; /* on failure: the input line of the conflicting row, else 0 */
};

/* Loads states, circuits, projects (with zero tallies) in one transaction; rows already
 * present identically are left alone. A row that contradicts an earlier row or the
 * database fails the whole load: store_last_error() says how (e.g. "project 77 already
 * in circuit 5, not 6") and sum->conflict_line where. Returns 0 or -1. */
int store_registry_load(struct store *s, store_registry_next_cb next, void *arg,
                        struct store_registry_summary *sum) __attribute__((warn_unused_result));

/* ---- voting tables (tallyctl load-tables; tallyd reads them at start) ------------ */

/* One voting table; strings borrowed until the next call of the iterator (load) or owned
 * by the array (store_tables_read, freed with store_tables_free). */
struct store_table {
    uint64_t line;       /* load: input line of the row, for error messages; read: 0 */
    const char *id;      /* [A-Za-z0-9._-]{1,63} */
    uint32_t circuit_id; /* registry circuit id (circuits.circuit_id) */
    uint32_t electors;   /* 0 .. INT32_MAX */
};

/* Fills row; returns 1 for a row, 0 at the end, -1 on an input error (the load is then
 * rolled back). */
typedef int (*store_tables_next_cb)(void *arg, struct store_table *row);

struct store_tables_summary {
    uint64_t tables, circuits, electors; /* distinct tables in the input, their circuits
                                          * and the sum of their electors */
    uint64_t new_tables;                 /* of those, not in the database before */
    uint64_t conflict_line;              /* on failure: input line of the conflict, or 0 */
};

/* Loads voting tables in one transaction; tables already present identically are left
 * alone. A row naming an unknown circuit, a table id twice with different values, or a
 * table the database holds with another circuit or electors fails the whole load:
 * store_last_error() says how ("table T is in circuit 5, not 6") and sum->conflict_line
 * where. Returns 0 or -1. */
int store_tables_load(struct store *s, store_tables_next_cb next, void *arg,
                      struct store_tables_summary *sum) __attribute__((warn_unused_result));

/* Every voting table, ordered by id: a malloc'd array of *n (never NULL on success, even
 * for 0; store_tables_free). Returns 0 or -1. */
int store_tables_read(struct store *s, struct store_table **out, size_t *n)
    __attribute__((warn_unused_result));
void store_tables_free(struct store_table *a, size_t n); /* NULL is a no-op */

/* Who holds the writer lock of the database conninfo names, as one line for a message
 * when start-up fails before the store thread runs (a port clash may be a second tallyd);
 * "" when nobody does or it cannot be told. Blocking (a short connection). */
void store_writer_holder(const char *conninfo, char *buf, size_t len);

/* ---- worker thread: the single writer ------------------------------------------- */

struct store_worker;

/* What start-up found, handed to the loop by started(); the callee takes ownership of
 * rec's and catalog's memory (store_recovery_cleanup, store_catalog_cleanup). */
struct store_started {
    struct store_recovery rec;
    struct store_catalog catalog;
    uint64_t epoch;   /* this writer's epoch */
    double recover_s; /* reading the record and rebuilding from it (the recover hooks) */
    char role[64];    /* the PostgreSQL role tallyd writes as (current_user) */
    bool role_is_superuser;
    bool role_owns_schema; /* a member of the role owning tallyd's tables or their schema
                            * (true for a superuser too): it could change the record's
                            * schema; run as a tally_writer login instead */
};

/* Called on the worker thread when start-up ends: rc 0 with st filled, or -1 with why
 * (a permanent failure: another live writer without --standby, a schema newer than this
 * build, a schema older than this build that this role may not migrate, an unreadable
 * registry). Must only hand off to the loop and return. */
typedef void (*store_started_cb)(void *arg, int rc, struct store_started *st, const char *why);

/* Called on the worker thread when a submitted job finished: rc is STORE_OK or
 * STORE_FATAL (STORE_RETRY never surfaces: the worker retries with back-off until the
 * job commits, the worker is freed, or a fatal error). For a refresh-only job
 * (no batches, marks, corrections, events or done requests) nothing but embargo_applied is written.
 * After a refresh-only job, or a checkpoint with cp->refresh_collectors set that committed,
 * collectors/n_collectors carry the registered collectors (the callee takes ownership:
 * store_collectors_free); otherwise, or when they could not be read, NULL/0. The callback must only
 * hand off to the loop (e.g. event_active) and return. */
typedef void (*store_done_cb)(void *arg, struct store_checkpoint *cp, int rc,
                              struct store_collector *collectors, size_t n_collectors);

struct store_worker_config {
    const char *conninfo;   /* NULL or "": the PG* environment */
    bool standby;           /* wait for the writer lock instead of failing when it is held */
    uint32_t min_anonymity; /* tokens per token page, at least (STORE_MIN_ANONYMITY_MAX) */
    struct store_recover_hooks hooks; /* start-up recovery streams here, on the worker */
    store_started_cb started;
    store_done_cb done;
    void *arg; /* for started and done */
};

#define STORE_MIN_ANONYMITY_DEFAULT 100
#define STORE_MIN_ANONYMITY_MAX 32768

/* Starts the writer thread with its own connection. It connects (retrying while
 * PostgreSQL is away), takes the writer lock (a session-level advisory lock held for the
 * worker's life; if another live tallyd holds it: waits when standby, else fails), applies
 * migrations if the schema is behind (none, and no DDL at all, when it is current; a role
 * that may not migrate fails with a line saying to run tallyctl migrate as the owner),
 * bumps the writer epoch, recovers through cfg->hooks and reads the catalog, then calls
 * started(). A session lost later is reopened and the lock taken
 * again before the next write; if another writer took over meanwhile, the job fails
 * fatally. cfg is copied (conninfo too). */
struct store_worker *store_worker_new(const struct store_worker_config *cfg);

/* Hands a checkpoint job to the worker; cp (and all it points to) is borrowed until
 * done() runs for it, and the worker fills cp->id and cp->hash. A job with no batches and
 * no marks only refreshes the collectors list. Returns -1 if a job is already in flight
 * or start-up has not finished. */
int store_worker_submit(struct store_worker *w, struct store_checkpoint *cp)
    __attribute__((warn_unused_result));

/* True when the worker's last attempt reached PostgreSQL. Any thread. */
bool store_worker_is_connected(struct store_worker *w);

/* One line on what the worker is doing while it is not ready to write: connecting,
 * waiting for the writer lock (naming its holder), recovering. "" once it writes. Any
 * thread. */
void store_worker_status(struct store_worker *w, char *buf, size_t len);

/* Attempts that failed to reach PostgreSQL or were cut off (for metrics). Any thread. */
uint64_t store_worker_failures(struct store_worker *w);

/* This writer's epoch (0 before start-up finished). Any thread. */
uint64_t store_worker_epoch(struct store_worker *w);

/* Stops the thread. If a job is in flight, keeps trying it for up to grace_ms first (a
 * libpq call already under way is not interrupted: connect_timeout is 5 s by default);
 * returns 0 if nothing was left unwritten, -1 otherwise, and then that job's done() is
 * never called. Start-up still under way is abandoned (started() is not called). NULL is
 * a no-op returning 0. */
int store_worker_free(struct store_worker *w, int grace_ms);

#endif
