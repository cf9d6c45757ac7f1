/* The tallyd peer's parts, shared by its files: the collector threads that speak the wire
 * protocol to tallyd (peer_tallyd_col.c), what is read back from tallyd's database
 * (peer_tallyd_db.c), and the run with its rounds (peer_tallyd.c). Internal to bench/. */
#ifndef BENCH_PEER_TALLYD_H
#define BENCH_PEER_TALLYD_H

#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

#include <libpq-fe.h>
#include <openssl/ssl.h>

#include "tls/tls.h"

struct td_run;

/* The tallyd_tls peer's certificates (peer_tallyd_tls.c), made once per run in
 * WORKDIR/tls: ca.crt, server.crt and server.key (tallyd's --tls-*), and ID.crt / ID.key
 * for each collector, whose pins (SHA-256 of the SubjectPublicKeyInfo) are in pin[]. */
struct td_tls {
    char dir[1100], cert[1200], key[1200], ca[1200];
    char (*pin)[TLS_PIN_HEX]; /* by collector */
    SSL_CTX *ctx;             /* the collectors' client context: TLS 1.3, verifies ca.crt */
};

/* Makes the CA and the certificates with tls_ca_init / tls_ca_issue and the client
 * context. Returns 0, or -1 with the reason in err (tls is then empty). */
int td_tls_setup(struct td_tls *tls, const struct bench_ctx *c, char *err, size_t err_len);
void td_tls_free(struct td_tls *tls);
/* Checks that each collector's pin in the database at conninfo (collectors.cert_pin, which
 * tallyctl add-collector ID --cert FILE set) is its certificate's. 0, or -1 with err. */
int td_tls_check_pins(const struct td_tls *tls, const struct workload *w, const char *conninfo,
                      char *err, size_t err_len);

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
    char transport[96]; /* "tcp", or the TLS version and cipher that were negotiated */
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
    const struct td_tls *tls; /* the tallyd_tls peer; NULL: plain TCP */
    int port;
    double deadline;
    _Atomic int ready;
    _Atomic int go;
    _Atomic int abort;
    struct td_col *cols;
};

/* A collector's connection to tallyd: the socket (non-blocking once open), and its TLS
 * session when run->tls. */
struct td_conn {
    int fd;
    SSL *ssl;   /* NULL: plain TCP */
    bool fatal; /* a fatal TLS error happened: no close_notify */
};

/* Connects collector k to tallyd (127.0.0.1:run->port) and, with run->tls, does the TLS
 * handshake with its own certificate, verifying tallyd's against ca.crt and the address
 * 127.0.0.1, within run->deadline. Returns 0, or -1 with the reason in err; td_conn_close
 * is needed either way. */
int td_conn_open(struct td_conn *cn, const struct td_run *run, size_t k, char *err, size_t err_len);
/* Writes up to n bytes of buf (TLS: a partial write is a whole number of records). Returns
 * the bytes written, 0 when it would block, or -1 with err. */
ssize_t td_conn_send(struct td_conn *cn, const void *buf, size_t n, char *err, size_t err_len);
/* Reads up to n bytes. Returns the bytes read, 0 when nothing is there yet, or -1 (tallyd
 * closed the connection, or an error) with err. */
ssize_t td_conn_recv(struct td_conn *cn, void *buf, size_t n, char *err, size_t err_len);
/* Decrypted bytes already buffered in the TLS session, which poll() cannot see. */
bool td_conn_pending(const struct td_conn *cn);
/* "tcp", or "TLSv1.3 TLS_AES_256_GCM_SHA384" (the negotiated version and cipher). */
void td_conn_describe(const struct td_conn *cn, char *out, size_t len);
/* Sends close_notify (TLS, unless after a fatal error), frees the session, closes fd. */
void td_conn_close(struct td_conn *cn);

/* A collector thread: connects (TLS when run->tls), Hello/Welcome, waits for run->go, then sends
 * its batches within the window and times the acks until its last batch is durable (or it fails,
 * with the reason in t->err). A streamed workload's batches it makes and encodes as it goes,
 * keeping the last TD_RING frames for resends. arg is its struct td_col. */
void *td_col_main(void *arg);

/* The counts in tallyd's database (project_votes) against the ground truth. */
bool td_check_counts(struct bench_ctx *c, PGconn *db, struct peer_result *r);
/* The collectors' totals in tallyd's database against the workload's. */
bool td_check_collectors(struct bench_ctx *c, PGconn *db, struct peer_result *r);
/* An unlabelled gauge from tallyd's /metrics on http_port; NAN when the page or the gauge
 * is not there. */
double td_metrics_gauge(int http_port, const char *name);
/* Checkpoint cadence, size and duration (", \"checkpoint\": {...}" into js); the duration
 * p99 into *dur_p99. */
void td_checkpoint_figures(struct bench_ctx *c, PGconn *db, struct td_col *cols, struct sbuf *js,
                           double *dur_p99);

#endif
