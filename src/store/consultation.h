/* The consultation's state for tallyctl's organiser commands (docs/consultation.md, part
 * B): reading consultation_state, leaving requests for the running tallyd and polling them,
 * the embargo switch, the certification, and the progress views. Plain blocking libpq
 * calls on struct store, as the rest of store.h; nothing here runs inside tallyd. */
#ifndef STORE_CONSULTATION_H
#define STORE_CONSULTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

#define STORE_ACTOR_MAX 200   /* requests.actor: 1 .. 200 characters */
#define STORE_REASON_MAX 1000 /* requests.reason: at most 1000 characters */
#define STORE_SEED_MIN 16     /* consultation_state.tie_seed: 16 .. 64 bytes */
#define STORE_SEED_MAX 64

/* The one consultation_state row. Times are µs since 1970 UTC, 0 when NULL. */
struct store_consultation_state {
    bool embargo;
    bool embargo_applied_known; /* embargo_applied is not NULL */
    bool embargo_applied;       /* what tallyd's outputs apply now, when known */
    int64_t embargo_changed_us;
    char embargo_actor[256]; /* "" when none */
    bool closed;             /* closed_at is set */
    int64_t closed_us;
    uint64_t closed_checkpoint_id; /* 0 when NULL */
    bool has_tie_rule;             /* tie_rule 'lot' with its seed */
    uint8_t tie_seed[STORE_SEED_MAX];
    size_t tie_seed_len;
    uint8_t tie_seed_hash[32];
    bool certified; /* certified_at is set */
    int64_t certified_us;
    uint64_t certified_checkpoint_id;
    uint8_t certified_hash[32];
    char certified_by[256];
    bool has_report_sha256;
    uint8_t report_sha256[32];
};

/* Reads consultation_state. Returns 0, or -1 (store_last_error; "needs schema version 8"
 * when the table does not exist). */
int store_consultation_read(struct store *s, struct store_consultation_state *out)
    __attribute__((warn_unused_result));

/* ---- requests (retract, close, tie rule), applied by the running tallyd ------------- */

enum store_request_spec_kind {
    STORE_SPEC_RETRACT = 0,
    STORE_SPEC_CLOSE = 1,
    STORE_SPEC_TIE_RULE = 2,
};

/* What tallyctl asks; strings and seed borrowed for the call. */
struct store_request_spec {
    enum store_request_spec_kind kind;
    const char *actor;        /* 1 .. STORE_ACTOR_MAX characters */
    const char *reason;       /* NULL: "" */
    const char *collector_id; /* retract */
    uint64_t seq;             /* retract: 1 .. INT64_MAX */
    const uint8_t *seed;      /* tie rule: STORE_SEED_MIN .. STORE_SEED_MAX bytes */
    size_t seed_len;
};

/* Inserts the request (done_at NULL: pending) and writes its id. Returns 0 or -1. */
int store_request_insert(struct store *s, const struct store_request_spec *rq, uint64_t *id)
    __attribute__((warn_unused_result));

/* A request's progress. */
struct store_request_status {
    bool done;              /* done_at is set */
    bool applied;           /* outcome is "applied" */
    uint64_t checkpoint_id; /* the checkpoint that applied it, 0 when none */
    char outcome[1100];     /* "applied", "refused: <why>", "" while pending */
};

/* Reads request id. Returns 1 when found, 0 when there is no such request, -1 on failure. */
int store_request_get(struct store *s, uint64_t id, struct store_request_status *out)
    __attribute__((warn_unused_result));

/* Polls request id (every 100 ms) until it is done or wait_ms passed. Returns 1 when done
 * (out filled), 0 when still pending after wait_ms, -1 on failure (a vanished request is
 * one). */
int store_request_wait(struct store *s, uint64_t id, int wait_ms, struct store_request_status *out)
    __attribute__((warn_unused_result));

/* The correction of kind retract for (collector_id, seq), into out (its strings and arrays
 * malloc'd: store_corrections_free(out, 1)). Returns 1 found, 0 none, -1 on failure. */
struct store_correction_row;
int store_retract_correction_get(struct store *s, const char *collector_id, uint64_t seq,
                                 struct store_correction_row *out)
    __attribute__((warn_unused_result));

/* The hash of checkpoint id into hash. Returns 1 when found, 0 when there is none, -1 on
 * failure. */
int store_checkpoint_hash_get(struct store *s, uint64_t id, uint8_t hash[32])
    __attribute__((warn_unused_result));

/* ---- embargo ------------------------------------------------------------------------ */

/* Sets consultation_state.embargo to on (with embargo_changed_at = now(), embargo_actor =
 * actor (NULL: none) and embargo_applied = NULL, for tallyd to confirm) unless it is so
 * already, in which case nothing is written. Returns 1 when it changed, 0 when it already
 * was so, -1 on failure. */
int store_embargo_set(struct store *s, bool on, const char *actor)
    __attribute__((warn_unused_result));

/* ---- certification ------------------------------------------------------------------ */

struct store_certification {
    uint64_t checkpoint_id;       /* the head certified */
    const uint8_t *hash;          /* 32: its hash */
    int64_t at_us;                /* certified_at, chosen by the caller (it is in the report) */
    const char *actor;            /* certified_by */
    const uint8_t *report_sha256; /* 32 */
};

/* Sets the certified_* columns, only while the consultation is closed and either not yet
 * certified or certified at this same hash (a certification never moves). Returns 0, 1
 * when the row did not qualify (not closed, or certified at another hash), -1 on failure. */
int store_certify(struct store *s, const struct store_certification *c)
    __attribute__((warn_unused_result));

/* ---- progress views (table_progress, circuit_progress) ---------------------------- */

enum store_table_mode { STORE_TABLE_NONE = 0, STORE_TABLE_BALLOTS = 1, STORE_TABLE_SHEET = 2 };

struct store_table_progress {
    char *table_id; /* malloc'd */
    uint32_t circuit_id;
    uint32_t electors;
    enum store_table_mode mode;
    bool reported;
    uint64_t ballots;
    uint32_t sheet_version; /* 0: none */
};

struct store_circuit_progress {
    uint32_t circuit_id;
    uint64_t tables, tables_reported, electors, electors_reported, ballots;
    uint64_t remaining; /* the view's: electors not yet voted at tables without a sheet */
};

/* Every row of table_progress by table id (byte order), or of circuit_progress by circuit
 * id: malloc'd arrays of *n (never NULL on success). Return 0 or -1. */
int store_table_progress_read(struct store *s, struct store_table_progress **out, size_t *n)
    __attribute__((warn_unused_result));
void store_table_progress_free(struct store_table_progress *a, size_t n); /* NULL: no-op */
int store_circuit_progress_read(struct store *s, struct store_circuit_progress **out, size_t *n)
    __attribute__((warn_unused_result));

#endif
