/* Internal to the store module: the connection struct and helpers shared by its files.
 * Nothing outside src/store includes this. */
#ifndef STORE_INTERNAL_H
#define STORE_INTERNAL_H

#include "core/endian.h"
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store/bin.h"
#include "store/chain.h"
#include "store/store.h"

#define STORE_ERR_LEN 512

/* Advisory lock keys (pg_advisory_xact_lock), one per serialised operation. They share
 * PostgreSQL's single lock space with tallyd's HA lock, so they are spelled out here. */
#define STORE_LOCK_MIGRATE 0x74616c6c7901LL  /* "tally" 01 */
#define STORE_LOCK_REGISTRY 0x74616c6c7902LL /* "tally" 02 */
/* Session-level, held by the single writer for its life (writer.c). */
#define STORE_LOCK_WRITER 0x74616c6c7903LL /* "tally" 03 */

struct store {
    PGconn *conn;
    char err[STORE_ERR_LEN]; /* last error, one line */
};

/* One embedded migration (generated from src/store/migrations/NNN_name.sql). */
struct store_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct store_migration store_migrations[];
extern const size_t store_n_migrations;

/* Records a formatted one-line error as the connection's last error. */
void store_set_error(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Classifies a failed result (res may be NULL) as STORE_RETRY (connection lost, or
 * SQLSTATE class 08, 40, 53, 57) or STORE_FATAL, records the message as the last
 * error prefixed by what, and logs nothing. Does not clear res. */
enum store_result store_classify(struct store *s, const PGresult *res, const char *what);

/* Runs a parameterless command that returns no rows; on failure records the error
 * (classified as above) and returns STORE_RETRY or STORE_FATAL. */
enum store_result store_exec_cmd(struct store *s, const char *sql);

/* Rolls back the open transaction, if the connection still works; errors are ignored
 * because the caller is already failing. */
void store_rollback(struct store *s);

/* Runs a parameterless query expected to return rows; NULL on failure, with the error
 * recorded (what names the step in the message). */
PGresult *store_query_rows(struct store *s, const char *sql, const char *what);

/* Parses an unsigned decimal column value; returns 0 or -1. */
int store_parse_u64(const char *text, uint64_t max, uint64_t *out);

/* qsort comparator for uint32_t. */
int store_cmp_u32(const void *a, const void *b);

/* ---- collector rows (recover.c) -------------------------------------------------------- */

/* The select list of a collector row as store_collector_parse reads it, for this
 * database's schema (before migration 6: no pin, never disabled). One catalog query. */
const char *store_collector_columns(struct store *s);
/* Parses row of res (selected with store_collector_columns) into c; c->circuits is
 * malloc'd. Returns 0, or -1 with the error set and nothing allocated. */
int store_collector_parse(struct store *s, const PGresult *res, int row, struct store_collector *c);
/* Frees c's circuits (not c). */
void store_collectors_free_one(struct store_collector *c);

/* ---- schema and role at tallyd's start (migrate.c) ------------------------------------- */

/* Who this session writes as: current_user, whether a superuser, whether a member of the
 * owner of tallyd's tables (schema_migrations) or of their schema. Returns 0 or -1. */
int store_role_read(struct store *s, char role[64], bool *superuser, bool *owns_schema);

/* tallyd's start: nothing (no DDL at all) when the schema is current; migrations when it
 * is behind and may_migrate; else, or when migrating is refused for lack of privilege,
 * STORE_FATAL with "schema is at version N, this build needs M: run `tallyctl migrate` as
 * the schema owner". A schema newer than this build: STORE_FATAL. */
enum store_result store_migrate_at_start(struct store *s, bool may_migrate)
    __attribute__((warn_unused_result));

/* ---- the writer lock and epoch (writer.c) ------------------------------------------ */

/* Who holds (or last held) the writer role, from the writer row and pg_locks. */
struct store_holder {
    uint64_t epoch;
    char host[256];     /* "" when unknown */
    int pid;            /* the tallyd's pid, 0 when unknown */
    char since[40];     /* UTC, ISO 8601, "" when unknown */
    int64_t since_unix; /* the same in unix seconds, 0 when unknown */
    int backend_pid;    /* PostgreSQL backend holding the lock now, 0 when none or unknown */
};

/* Tries the session-level writer lock. Returns 1 when this session holds it, 0 when
 * another session does (holder filled as far as known), or a store_result on failure. */
int store_writer_try_lock(struct store *s, struct store_holder *holder);
/* With the lock held: epoch + 1, recording host and pid as the holder. */
enum store_result store_writer_take_over(struct store *s, const char *host, int pid,
                                         uint64_t *epoch);
/* Reads the writer row (the epoch and who took it). */
enum store_result store_writer_read(struct store *s, struct store_holder *holder);
/* "tallyd on host H pid P since T (epoch E), PostgreSQL backend B", for messages. */
void store_holder_describe(const struct store_holder *h, char *buf, size_t len);

/* ---- token pages (pages.c) ------------------------------------------------------------ */

#define STORE_PAGE_MAX_TOKENS 65536 /* a closed page holds at most this many */

/* The writer's view of the token pages: only the newest page can still take tokens. */
struct store_pages {
    uint32_t min;     /* --min-anonymity */
    uint64_t last_id; /* highest page id, 0 when there is none */
    uint64_t *last;   /* its tokens, sorted */
    size_t n_last, cap_last;
    uint64_t total; /* tokens in all pages */
};

struct store_page_out {
    uint64_t id;
    uint8_t salt[16];
    size_t off, n; /* tokens [off, off + n) of the plan's merged tokens */
    uint8_t digest[32];
};

/* How one checkpoint's new tokens go into pages; buffers are reused across plans. */
struct store_page_plan {
    uint64_t *merged; /* the newest page's tokens (when rewritten) and the new ones, sorted */
    size_t n_merged, cap_merged;
    const uint8_t *le; /* merged as stored: 8 bytes each, little-endian (merged itself on a
                        * little-endian host, else le_buf) */
    uint8_t *le_buf;
    size_t cap_le;
    uint64_t *scratch; /* radix sort */
    size_t cap_scratch;
    struct store_page_out *pages;
    size_t n_pages, cap_pages;
    bool rewrites_first; /* pages[0] replaces the newest existing page; the rest are new */
};

void store_pages_init(struct store_pages *p, uint32_t min);
void store_pages_cleanup(struct store_pages *p);
/* Reads the newest page and the token count (the writer, at start-up). */
int store_pages_load(struct store *s, struct store_pages *p) __attribute__((warn_unused_result));
/* Sorts tokens (in place) and plans the pages they go into, with fresh salts and their
 * digests. Every planned page holds at least p->min tokens unless all pages together
 * hold fewer. */
void store_pages_plan(const struct store_pages *p, uint64_t *tokens, size_t n,
                      struct store_page_plan *plan);
/* The plan committed: the newest page is now its last. */
void store_pages_commit(struct store_pages *p, const struct store_page_plan *plan);
void store_page_plan_cleanup(struct store_page_plan *plan);

/* ---- writing (checkpoint.c) ----------------------------------------------------------- */

/* One checkpoint, ready to write: content, place in the chain and page plan are fixed
 * before the first attempt, so a retry writes exactly the same and a COMMIT whose answer
 * was lost is recognised by its hash. */
struct store_prepared {
    const struct store_checkpoint *cp;
    const uint32_t *project_ids; /* cp's count deltas, by ascending project id (as stored) */
    const int64_t *deltas;
    uint64_t id, epoch;
    uint8_t prev_hash[32], hash[32];
    uint8_t merkle_root[32], body_hash[32]; /* chain format 3 */
    const struct store_page_plan *plan;
    /* Per batch (cp->batches order): its encoded counts at counts + counts_off[i], of
     * counts_len[i] bytes; has_counts[i] false for a sheet batch (NULL column). */
    const uint8_t *counts;
    const size_t *counts_off, *counts_len;
    const bool *has_counts;
    /* Table deltas by ascending table id: indices into cp->table_names, and deltas. */
    const uint32_t *table_idx;
    const int64_t *table_deltas;
    size_t n_table_deltas;
    uint64_t first_correction_id; /* cp->corrections[i] gets id first_correction_id + i */
};

/* Scratch of the preparation, reused from one checkpoint to the next (prepare.c). */
struct store_prep {
    uint64_t *pairs; /* (id << 32 | index) sort keys */
    size_t cap_pairs;
    uint32_t *delta_ids;
    int64_t *delta_votes;
    size_t cap_deltas;
    struct store_bin counts;
    size_t *counts_off, *counts_len;
    bool *has_counts;
    size_t cap_batches;
    uint32_t *table_idx;
    int64_t *table_deltas;
    size_t cap_tables;
    struct store_chain_batch3 *chain_batches;
    size_t cap_chain_batches;
    struct store_chain_table *chain_tables; /* every batch's tables, then the deltas' */
    size_t cap_chain_tables;
    struct store_chain_page *chain_pages;
    size_t cap_chain_pages;
    struct store_chain_sheet *chain_sheets;
    size_t cap_chain_sheets;
    struct store_chain_correction *chain_corrections;
    size_t cap_chain_corrections;
    struct store_chain_event *chain_events;
    size_t cap_chain_events;
};

/* refresh.c: the consultation's state (out->known false on a schema without it), the
 * pending requests after after_id that can apply (refusing the others in place; *out NULL
 * when there are none), and the embargo tallyd applies (applied: STORE_EMBARGO_*). 0 or
 * -1. */
int store_state_read(struct store *s, struct store_state *out);
int store_requests_take(struct store *s, uint64_t after_id, struct store_request **out,
                        size_t *n_out);
int store_embargo_applied_write(struct store *s, int applied, bool set_embargo);

void store_prep_init(struct store_prep *sp);
void store_prep_cleanup(struct store_prep *sp);
/* Fixes checkpoint cp as checkpoint id after prev (its pages already planned in plan):
 * sorts its deltas, encodes each batch's counts, orders its table deltas, and computes
 * its Merkle root, body hash and chain hash (format 3). pp borrows from sp and cp until
 * the next call. */
void store_prepare(struct store_prep *sp, const struct store_checkpoint *cp, uint64_t id,
                   uint64_t epoch, const uint8_t prev[32], uint64_t first_correction_id,
                   const struct store_page_plan *plan, struct store_prepared *pp);

/* Writes p in one transaction after checking the writer epoch: the checkpoint row,
 * watermarks (fenced), batch rows and token pages. If checkpoint p->id is in the database
 * already with the same hash (a COMMIT whose answer was lost) returns STORE_OK without
 * writing; with another hash, STORE_FATAL. Blocking. */
enum store_result store_checkpoint_write(struct store *s, const struct store_prepared *p)
    __attribute__((warn_unused_result));

/* Folds the count deltas of checkpoints (from, to] into tallies and moves
 * tally_compaction.through from `from` to `to`, checking the epoch. */
enum store_result store_compact(struct store *s, uint64_t epoch, uint64_t from, uint64_t to)
    __attribute__((warn_unused_result));

#endif
