/* The deterministic simulation of tallyd's exactly-once machinery: the world one seed
 * builds (collectors with spools, a network of connections, one tallyd over the real
 * src/tally and src/wire, a modelled PostgreSQL record) and the checker that owns the
 * truth. Shared by sim_world.c (events), sim_node.c (collector, tallyd, store) and
 * sim_check.c (invariants, reference replay, trace). */
#ifndef TESTS_SIM_SIM_H
#define TESTS_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/tally.h"

#define SIM_MAX_COLL 5     /* collectors */
#define SIM_MAX_BATCHES 12 /* batches each collector generates */
#define SIM_MAX_VOTES 6    /* votes per batch */
#define SIM_MAX_PROJECTS 8 /* registry size (unknown ids come on top) */
#define SIM_MAX_CONNS 24   /* connection slots, open or draining */
#define SIM_QUEUE 48       /* messages in one direction of a connection */
#define SIM_NONCE 16       /* bytes, as libtally sends */
#define SIM_MAX_TOKENS (SIM_MAX_COLL * SIM_MAX_BATCHES * SIM_MAX_VOTES)
#define SIM_MAX_TRACE 4096 /* trace lines kept when tracing */
#define SIM_HEAL_STEPS 20000

/* Faults planted in the model on purpose, to show the checker catches them. */
enum sim_bug {
    SIM_BUG_NONE = 0,
    SIM_BUG_ACK_AT_SEAL,         /* tallyd sends durable acks when it seals, not at COMMIT */
    SIM_BUG_SKIP_TOKENS,         /* recovery forgets the stored tokens */
    SIM_BUG_RELEASE_ON_APPLY,    /* a collector deletes a batch on its provisional ack */
    SIM_BUG_FORGET_WATERMARK,    /* recovery restores collectors with durable_seq 0 */
    SIM_BUG_RELEASE_UNCONFIRMED, /* a collector releases up to durable_seq, acked or not */
};

struct sim_rng {
    uint64_t s[4];
};

/* One generated batch: the truth, fixed before the run starts. */
struct sim_batch {
    uint32_t n;
    uint64_t ballots[SIM_MAX_VOTES];
    uint32_t projects[SIM_MAX_VOTES];
    uint8_t nonce[SIM_NONCE];
    uint8_t digest[TALLY_DIGEST_BYTES]; /* what the collector spooled */
};

enum sim_msg_kind { M_HELLO, M_BATCH, M_WELCOME, M_ACK, M_ERROR };

struct sim_msg {
    uint8_t kind;
    bool retransmit;
    uint8_t code; /* M_ERROR: TALLY__ERROR_CODE__* */
    uint64_t seq, durable_seq, epoch, expected;
};

struct sim_queue {
    struct sim_msg m[SIM_QUEUE];
    int n;
};

/* A TCP connection: in-order byte streams; each side closes on its own, and what one side
 * wrote before it closed may still reach the other. */
struct sim_conn {
    bool used;
    int coll;         /* the collector that dialled */
    uint32_t id;      /* for the trace */
    bool client_open; /* the collector still reads it */
    bool server_open; /* tallyd still reads it */
    int server_coll;  /* tallyd's view: collector index after Hello (sim index), or -1 */
    /* A frame was lost: TCP loses nothing in the middle of a stream, so from that frame on
     * nothing written in that direction arrives (a blackhole). */
    bool c2s_dead, s2c_dead;
    struct sim_queue c2s, s2c;
};

/* CS_FATAL: libtally stopped for good (a conflict or a foreign durable seq: another source
 * uses its id), its spool kept as it is. */
enum sim_cstate { CS_FATAL, CS_DOWN, CS_IDLE, CS_HELLO, CS_READY };

/* A collector as libtally runs it: the spool (on disk, survives a crash) and the session
 * (in memory). */
struct sim_collector {
    char id[8];
    char name[12]; /* for the trace: the id, with a ' for a second process on it */
    /* -1, or the collector whose id this process uses too, with a copy of its spool taken
     * at the start (the same first batches) and batches of its own after them. */
    int twin_of;
    /* The truth: every batch it will ever spool. */
    struct sim_batch gen[SIM_MAX_BATCHES];
    int n_gen;
    bool restricted;
    uint32_t circuits_mask; /* bit i: circuit i allowed, when restricted */
    /* Spool, durable. */
    uint64_t next_seq, durable_seq;
    /* Session, lost in a crash. */
    enum sim_cstate state;
    int conn; /* slot, or -1 */
    bool confirmed[SIM_MAX_BATCHES + 2];
    uint64_t confirm_epoch, server_durable, send_seq, acked_seq;
    uint32_t window;
};

struct sim_totals {
    uint64_t batches, votes, accepted, duplicate, rejected, not_allowed;
};

/* A batch as the record holds it (table batches). */
struct sim_stored_batch {
    bool have;
    uint8_t digest[TALLY_DIGEST_BYTES];
    uint32_t votes, accepted, duplicate, rejected_unknown, not_allowed;
};

/* The modelled PostgreSQL record: what committed checkpoints hold. */
struct sim_store {
    uint64_t epoch; /* writer epoch: one more at every take-over */
    uint64_t n_checkpoints;
    uint64_t durable_seq[SIM_MAX_COLL];
    struct sim_totals totals[SIM_MAX_COLL];
    struct sim_stored_batch batches[SIM_MAX_COLL][SIM_MAX_BATCHES + 1];
    uint64_t proj_votes[SIM_MAX_PROJECTS];
    uint64_t tokens[SIM_MAX_TOKENS];
    size_t n_tokens;
    /* Durable history: (collector, seq) in the order tallyd applied them. */
    uint16_t hist[SIM_MAX_COLL * SIM_MAX_BATCHES];
    size_t n_hist;
};

/* The sealed delta, copied at seal time, as the store thread would write it. */
struct sim_job {
    size_t n_batches, n_marks, n_tokens, n_touched;
    struct tally_delta_batch batches[SIM_MAX_COLL * SIM_MAX_BATCHES];
    struct tally_delta_mark marks[SIM_MAX_COLL];
    uint64_t tokens[SIM_MAX_TOKENS];
    uint32_t ids[SIM_MAX_PROJECTS];
    int64_t deltas[SIM_MAX_PROJECTS];
};

/* tallyd: the real struct tally plus what ingest.c keeps beside it. */
struct sim_server {
    bool up;
    struct tally *t;
    uint64_t epoch;
    int32_t tidx[SIM_MAX_COLL]; /* sim collector -> tally index */
    int sim_of[SIM_MAX_COLL];   /* tally index -> sim collector */
    int conn_of[SIM_MAX_COLL];  /* by sim collector; -1: none */
    bool inflight;
    struct sim_job job;
    /* At-most-once within this process: every (collector, seq) applied. */
    bool applied[SIM_MAX_COLL][SIM_MAX_BATCHES + 1];
    uint8_t applied_digest[SIM_MAX_COLL][SIM_MAX_BATCHES + 1][TALLY_DIGEST_BYTES];
    uint64_t last_durable_sent[SIM_MAX_COLL];
};

struct sim_config {
    int n_coll, n_projects;
    uint32_t project_ids[SIM_MAX_PROJECTS];
    uint32_t circuit_of[SIM_MAX_PROJECTS]; /* 0..2 */
    int fault_steps;
    size_t expected_ballots;
    /* Fault weights, per mille of the enabled actions' draw. */
    unsigned w_crash, w_ccrash, w_cut, w_drop, w_dup, w_reorder, w_stall;
};

struct sim_stats {
    uint64_t steps, applied, retransmits, gaps, checkpoints, server_crashes, late_commits,
        lost_seals, stops, conflicts, fatals, collector_crashes, cuts, drops, dups, reorders,
        stalls, reconnects, votes;
};

struct sim {
    uint64_t seed;
    enum sim_bug bug;
    /* Only the end-of-run verdict (truth, replay) and libtally's own checks: the step-by-step
     * invariants are off, to show the verdict alone catches a planted bug. */
    bool lean;
    struct sim_rng rng;
    struct sim_config cfg;
    struct sim_collector coll[SIM_MAX_COLL];
    struct sim_conn conns[SIM_MAX_CONNS];
    uint32_t next_conn_id;
    struct sim_server srv;
    struct sim_store store;
    bool healing;
    long step;
    struct sim_stats st;
    /* The first broken invariant, or "" */
    char violation[512];
    bool trace;
    char (*lines)[160];
    size_t n_lines;
};

/* sim_world.c */
uint64_t sim_rand(struct sim_rng *r);
uint64_t sim_below(struct sim *s, uint64_t n); /* uniform in [0, n) */
bool sim_chance(struct sim *s, unsigned per_mille);
/* Runs one seed to quiescence with at most fault_steps (< 0: the seed's own) steps of
 * faults. Returns 0, or -1 with s->violation set. s is filled; sim_cleanup releases it. */
int sim_run(struct sim *s, uint64_t seed, long fault_steps, enum sim_bug bug, bool lean,
            bool trace);
void sim_cleanup(struct sim *s);

/* sim_node.c: messages, the collector, tallyd, the store. */
void sim_send(struct sim *s, int conn, bool to_server, const struct sim_msg *m);
void sim_collector_connect(struct sim *s, int c);
void sim_collector_close(struct sim *s, int c, const char *why);
void sim_collector_crash(struct sim *s, int c);
void sim_collector_restart(struct sim *s, int c);
void sim_collector_send(struct sim *s, int c);
void sim_collector_receive(struct sim *s, int conn, const struct sim_msg *m);
bool sim_collector_owes(const struct sim *s, int c); /* an answer is owed to it */
void sim_server_start(struct sim *s);
void sim_server_crash(struct sim *s);
void sim_server_stop(struct sim *s); /* a clean stop (SIGTERM) */
void sim_server_receive(struct sim *s, int conn, const struct sim_msg *m);
void sim_server_close(struct sim *s, int conn); /* tallyd saw EOF */
void sim_server_seal(struct sim *s);
void sim_server_commit(struct sim *s);

/* sim_check.c */
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_log(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define SIM_EV(s, ...)                                                                             \
    do {                                                                                           \
        if ((s)->trace)                                                                            \
            sim_log((s), __VA_ARGS__);                                                             \
    } while (0)
/* The record and the live tally agree (after start-up and after each commit). */
void sim_check_server(struct sim *s);
/* Everything the record holds replays, from nothing, to the same counts; at the end, every
 * generated vote is in it once and the accepted set is the truth. */
void sim_check_final(struct sim *s);
/* Is project id known; may collector c vote for it. */
int sim_project_slot(const struct sim *s, uint32_t id);
bool sim_allowed(const struct sim *s, int c, int slot);
/* The collector id a process speaks for: tallyd and the record know only these. */
int sim_owner(const struct sim *s, int c);
bool sim_has_twin(const struct sim *s, int owner);
/* The batch of owner's seq whose digest is digest, from any process using owner's id, or
 * NULL. */
const struct sim_batch *sim_content(const struct sim *s, int owner, uint64_t seq,
                                    const uint8_t *digest);

#endif
