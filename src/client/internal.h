/* Internal to libtally: struct tally_client, which client.c (the public API), conn.c (the
 * connection: socket, TLS, bytes in and out, keep-alive, deadlines) and session.c (the
 * protocol: frames from tallyd, durability, releasing batches) share, and the calls between
 * them. Nothing declared here is exported by libtally.so (libtally.map keeps tally_client_*). */
#ifndef CLIENT_INTERNAL_H
#define CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/dial.h"
#include "client/spool.h"
#include "client/tlsconn.h"
#include "core/arena.h"
#include "tally/client.h"

/* TLS: bytes handed to one SSL_write, at most one TLS record. */
#define TLS_WBUF_BYTES 16384u

enum conn_state {
    CONN_IDLE,       /* no socket; next attempt at retry_at */
    CONN_CONNECTING, /* non-blocking connect in progress until deadline */
    CONN_TLS,        /* TLS handshake in progress until deadline */
    CONN_HELLO,      /* Hello queued or sent; Welcome expected before deadline */
    CONN_READY,      /* session established: batches flow */
};

struct tally_client {
    char collector_id[TALLY_COLLECTOR_ID_MAX + 1];
    char *consultation_id;
    char *spool_dir; /* for messages */
    uint32_t window;
    uint32_t max_spooled;
    int connect_timeout_ms;
    int stall_timeout_ms;
    tally_client_log_cb log_cb;
    void *log_arg;

    struct client_spool spool;
    int status; /* sticky fatal status, or 0 */
    char last_error[512];

    struct client_dial dial;   /* the servers, the one in use, when to try the next */
    struct client_tls *tls;    /* NULL: plain TCP */
    struct client_tls_conn tc; /* the connection's TLS, when tls */
    /* TLS: bytes taken from the stream and handed to SSL_write, which must be offered the
     * same bytes again after a WANT (the frame they came from may be released meanwhile). */
    uint8_t *wbuf;
    size_t wbuf_len;
    short rd_want, wr_want; /* TLS: what the last blocked read / write waits for; 0: none */
    unsigned verify_streak; /* attempts in a row whose server certificate failed to verify */
    unsigned cert_streak;   /* attempts in a row that failed on a certificate, either side */
    enum conn_state state;
    int fd;
    int64_t deadline; /* CONNECTING: connect; TLS: handshake; HELLO: Welcome */
    int64_t retry_at;
    int64_t session_start;
    int64_t last_rx;          /* last byte from tallyd, or when we began to wait for an answer */
    int64_t last_tx;          /* last byte to tallyd */
    uint32_t idle_timeout_ms; /* from Welcome: tallyd closes sessions idle this long; 0: never */
    uint8_t ping[32];         /* a Ping frame being written */
    size_t ping_len, ping_off;
    uint64_t ping_nonce;
    bool ping_owed; /* a Ping went out, its answer has not come */

    uint8_t *hello;
    size_t hello_len, hello_off;
    uint64_t send_seq; /* next seq to write; its frame is partly written if send_off > 0 */
    size_t send_off;
    /* The rest of a frame that became durable (and was released) while partly written: the
     * stream must stay framed, so it is finished from this copy before anything else. */
    uint8_t *tail;
    size_t tail_len, tail_off;
    uint64_t acked_seq; /* highest seq acked in this session, or released as durable */
    /* tallyd's durable seq (>= spool.durable_seq): the batches between the two are durable
     * there but not yet acked to this process, so not known to be ours (see release_confirmed) */
    uint64_t server_durable;
    uint64_t confirm_epoch; /* writer epoch the spool's confirmations came from (Welcome) */
    size_t confirm_server;  /* and the server (dial.cur) that said it */

    uint8_t *in;
    size_t in_len, in_cap;
    struct arena arena;

    uint32_t max_batch_votes, max_frame_bytes;
    struct tally_client_totals totals;
    bool server_known;
    uint64_t sessions;
    uint64_t rejected_not_allowed, rejected_acked; /* summed over first acks */
    uint64_t sheets_accepted, sheets_duplicate, sheets_rejected, sheets_replaced; /* the same */
    uint64_t rejected_by_reason[TALLY_CLIENT_REASONS];
    uint64_t sheets_rejected_by_reason[TALLY_CLIENT_REASONS];
};

/* ---- client.c: helpers for all three files ---- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t client_now_ms(void);
/* Copies src into dst, truncating to fit. */
void client_str_copy(char *dst, size_t size, const char *src);
/* Formats a message and hands it to the configured log callback, if any. */
void client_log(struct tally_client *c, enum tally_client_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A permanent failure: stop talking to the server; every later call returns code. Returns
 * code. */
int client_fatal(struct tally_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- conn.c: the connection ---- */

/* Closes the socket and its TLS, drops what was partly written or read: back to CONN_IDLE.
 * Keeps the spool and the session's bookkeeping. */
void client_conn_close(struct tally_client *c);
/* Ends the session or attempt for a transient reason (logged) and moves on to the next server
 * after the back-off the reconnect policy gives. */
void client_conn_fail(struct tally_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Like client_conn_fail, for a reason that concerns this collector's session and not the
 * server's health: the same server is tried again after the back-off. */
void client_conn_retry(struct tally_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One round of everything that can be done without waiting. Returns 1 if anything happened,
 * 0 if nothing could, or a fatal status. */
int client_step(struct tally_client *c);
/* When the current state times out, or INT64_MAX. */
int64_t client_conn_deadline(const struct tally_client *c);
/* Something waits to be written. */
bool client_conn_wants_write(const struct tally_client *c);

/* ---- session.c: the protocol ---- */

/* Decodes and handles every whole frame in c->in and drops them from it. Returns 0 (the
 * session may have ended through client_conn_fail) or a fatal status. */
int client_session_process(struct tally_client *c);

#endif
