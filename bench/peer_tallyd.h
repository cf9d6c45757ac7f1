/* The tallyd peer's parts, shared by its files: the collector threads that speak the wire
 * protocol to tallyd (peer_tallyd_col.c), what is read back from tallyd's database
 * (peer_tallyd_db.c), and the run with its rounds (peer_tallyd.c). Internal to bench/. */
#ifndef BENCH_PEER_TALLYD_H
#define BENCH_PEER_TALLYD_H

#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

#include <libpq-fe.h>

struct td_run;

/* Streamed: frames kept per collector, the newest made one batch ahead of the sends; a
 * resend goes back at most WL_RESEND_BACK batches. */
#define TD_RING 16
_Static_assert(TD_RING >= WL_RESEND_BACK + 2, "the ring must hold every batch a resend needs");

struct durable_mark {
    uint64_t seq; /* durable_seq announced */
    double wall;  /* CLOCK_REALTIME when it arrived */
};

/* One collector thread. */
struct td_col {
    struct td_run *run;
    size_t k;
    pthread_t thread;
    bool started;
    /* results, read by the main thread after join */
    bool ok;
    char err[256];
    struct lat prov, dur;
    struct durable_mark *marks;
    size_t n_marks, cap_marks;
    uint64_t accepted, duplicate, rejected, retransmit_acks;
    double end_s, prov_end_s;
    /* streamed: making and encoding batches (thread CPU), and the first occurrences made,
     * by project index (the truth worked out again while sending) */
    double gen_cpu_s;
    uint64_t gen_votes, gen_batches;
    uint64_t *truth;
    _Atomic int finished; /* the thread is about to return */
    /* progress, read while running */
    _Atomic uint64_t votes_sent, votes_durable;
};

struct td_run {
    struct bench_ctx *c;
    int port;
    double deadline;
    _Atomic int ready;
    _Atomic int go;
    _Atomic int abort;
    struct td_col *cols;
};

/* A collector thread: connects, Hello/Welcome, waits for run->go, then sends its batches
 * within the window and times the acks until its last batch is durable (or it fails, with
 * the reason in t->err). A streamed workload's batches it makes and encodes as it goes,
 * keeping the last TD_RING frames for resends. arg is its struct td_col. */
void *td_col_main(void *arg);

/* The counts in tallyd's database (project_votes) against the ground truth. */
bool td_check_counts(struct bench_ctx *c, PGconn *db, struct peer_result *r);
/* The collectors' totals in tallyd's database against the workload's. */
bool td_check_collectors(struct bench_ctx *c, PGconn *db, struct peer_result *r);
/* Checkpoint cadence, size and duration (", \"checkpoint\": {...}" into js); the duration
 * p99 into *dur_p99. */
void td_checkpoint_figures(struct bench_ctx *c, PGconn *db, struct td_col *cols, struct sbuf *js,
                           double *dur_p99);

#endif
