/* The in-memory tally: registry of projects (external id -> dense index), counts, the
 * ballot set, per-collector batch watermarks, and the delta of what is applied but not
 * yet durable. Pure: no I/O, no clock, no threads; the caller owns the schedule. */
#ifndef TALLY_TALLY_H
#define TALLY_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/ballot_set.h"

#define TALLY_DIGEST_BYTES 32

struct tally_project {
    uint32_t id; /* external id from the registry */
    uint32_t circuit_id;
};

struct tally_totals {
    uint64_t batches, votes, accepted, duplicate, rejected; /* rejected: every reason */
    uint64_t rejected_not_allowed; /* of rejected: outside the collector's circuits */
};

struct tally_collector {
    char id[64];
    uint64_t applied_seq;        /* last batch applied in memory */
    uint64_t durable_seq;        /* last batch committed to PostgreSQL */
    struct tally_totals durable; /* cumulative over durable batches */
    struct tally_totals pending; /* applied since the last checkpoint was sealed */
    /* Content digest of every applied batch, digests[seq - 1] for seq 1..applied_seq;
     * all zeros where it is unknown (batches recorded before digests existed). */
    uint8_t (*digests)[TALLY_DIGEST_BYTES];
    size_t cap_digests;
};

struct tally_batch_result {
    uint32_t accepted, duplicate, rejected_unknown;
    uint32_t rejected_not_allowed; /* a known project outside the collector's circuits */
};

enum tally_apply_status {
    TALLY_APPLIED = 0,    /* counted; its effect joins the pending delta */
    TALLY_RETRANSMIT = 1, /* seq was applied before with the same digest: nothing counted */
    TALLY_GAP = -1,       /* seq skips ahead: expected is applied_seq + 1 */
    TALLY_CONFLICT = -2,  /* seq was applied before with another digest: nothing counted */
};

/* One applied batch inside a delta. */
struct tally_delta_batch {
    uint32_t collector;
    uint64_t seq;
    uint8_t digest[TALLY_DIGEST_BYTES];
    uint32_t votes, accepted, duplicate, rejected_unknown;
    uint32_t rejected_not_allowed;
};

/* A collector's watermark move in a delta. */
struct tally_delta_mark {
    uint32_t collector;
    uint64_t prev_seq, durable_seq;
    struct tally_totals add;
};

/* What a checkpoint must write. Buffers are kept and reused from one checkpoint to the
 * next, so steady-state ingest does not allocate. The accepted tokens of all its batches
 * are pooled in arrival order: nothing in a delta says which batch brought which token,
 * and the store sorts them into token pages. */
struct tally_delta {
    struct tally_delta_batch *batches;
    size_t n_batches, cap_batches;
    uint64_t *tokens;
    size_t n_tokens, cap_tokens;
    uint64_t *proj_delta; /* [n_projects] by dense index, zero outside touched */
    uint32_t *touched;    /* dense indices with a non-zero proj_delta */
    size_t n_touched;
    uint32_t *out_ids;    /* filled when sealed: external ids of touched, ... */
    uint64_t *out_deltas; /* ... and their increments */
    struct tally_delta_mark *marks;
    size_t n_marks, cap_marks;
    uint64_t votes; /* votes in the batches of this delta */
};

struct tally;

/* Builds a tally over a registry of n projects (copied; ids must be unique; order free).
 * expected_ballots sizes the ballot set. key (copied) keys the ballot set's hash: random,
 * secret and drawn afresh by each process (getrandom); nothing stored depends on it.
 * Returns NULL on duplicate ids. */
struct tally *tally_new(const struct tally_project *projects, size_t n, size_t expected_ballots,
                        const uint8_t key[TALLY_HASH_KEY_BYTES]);
void tally_free(struct tally *t); /* NULL is a no-op */

size_t tally_project_count(const struct tally *t);
/* Dense index of an external project id, or -1 when the registry does not have it. */
int32_t tally_project_index(const struct tally *t, uint32_t id);
const struct tally_project *tally_project_at(const struct tally *t, size_t index);
uint64_t tally_votes_at(const struct tally *t, size_t index);

/* Recovery: set a durable count, add a durable token (never a duplicate in a sound
 * database; returns false if it was). */
void tally_restore_votes(struct tally *t, uint32_t project_id, uint64_t votes);
bool tally_restore_token(struct tally *t, uint64_t token);
/* The same for n tokens, prefetching ahead (recovery is DRAM-bound); returns how many were
 * already there. */
size_t tally_restore_tokens(struct tally *t, const uint64_t *tokens, size_t n);

/* Registers a collector (or finds it: an existing id is left as it is). Returns its
 * index, stable for the tally's life. */
uint32_t tally_collector_add(struct tally *t, const char *id, uint64_t durable_seq,
                             const struct tally_totals *durable);
/* Recovery: the stored digest of collector c's batch seq (NULL: unknown). Batches come in
 * seq order; a seq past durable_seq is ignored and returns false. */
bool tally_restore_digest(struct tally *t, uint32_t c, uint64_t seq, const uint8_t *digest);
/* Limits collector c to the projects of some circuits: circuit_ids (n of them, copied;
 * ids no project has are ignored; n may be 0: nothing allowed), or, with circuit_ids NULL,
 * lifts the limit (every project, the default). Applies from the next batch on and may be
 * called again at any time. Returns 0, or -EINVAL when c is not a collector's index. */
int tally_collector_restrict(struct tally *t, uint32_t c, const uint32_t *circuit_ids, size_t n);
/* Index of a collector id, or -1. */
int32_t tally_collector_find(const struct tally *t, const char *id);
size_t tally_collector_count(const struct tally *t);
const struct tally_collector *tally_collector_at(const struct tally *t, uint32_t index);

/* Applies batch seq of collector c, whose content digest is digest (wire_batch_digest): n
 * votes, ballots[i] for projects[i]. A seq applied before is compared by digest: the same
 * is a retransmission, another is a conflict (and *stored points at the digest applied,
 * valid until the next apply). Then validation (unknown project: rejected_unknown; a
 * known project outside the collector's circuits: rejected_not_allowed; either way the
 * ballot stays unused), ballot dedup across all collectors, counting. Fills res for
 * TALLY_APPLIED; *expected for TALLY_GAP. */
enum tally_apply_status tally_apply_batch(struct tally *t, uint32_t c, uint64_t seq,
                                          const uint8_t digest[TALLY_DIGEST_BYTES],
                                          const uint64_t *ballots, const uint32_t *projects,
                                          size_t n, struct tally_batch_result *res,
                                          uint64_t *expected, const uint8_t **stored);

/* Durable votes by dense index: what the last committed checkpoint holds. */
const uint64_t *tally_durable_votes(const struct tally *t);
/* National figures over durable batches. */
const struct tally_totals *tally_durable_totals(const struct tally *t);

/* Figures over everything applied in memory (durable or not); rejected counts both
 * reasons. */
const struct tally_totals *tally_applied_totals(const struct tally *t);
/* Rejected votes by reason over the batches applied since tally_new (recovered durable
 * totals carry no reason and are not in them). Either pointer may be NULL. */
void tally_rejected_by_reason(const struct tally *t, uint64_t *unknown_project,
                              uint64_t *not_allowed);
size_t tally_ballot_count(const struct tally *t);
size_t tally_ballot_bytes(const struct tally *t);

/* Votes applied but not yet durable (pending + in flight): the back-pressure measure. */
uint64_t tally_backlog_votes(const struct tally *t);
bool tally_has_pending(const struct tally *t);

/* Seals the pending delta and returns it (borrowed until commit; the caller may reorder
 * its tokens), or NULL when nothing is pending or a checkpoint is already in flight. */
struct tally_delta *tally_checkpoint_seal(struct tally *t);
/* The in-flight checkpoint committed: moves durable watermarks and totals. */
void tally_checkpoint_commit(struct tally *t);
const struct tally_delta *tally_checkpoint_inflight(const struct tally *t);

#endif
