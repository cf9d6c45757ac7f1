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
 * the reason in t->err). arg is its struct td_col. */
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
