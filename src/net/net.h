/* The collector-facing TCP server on libevent: accepts connections (plain TCP or TLS),
 * cuts the byte stream into frames, decodes them into a per-connection arena and hands
 * each to a callback; queues replies; enforces the limits an unauthenticated or hostile
 * peer meets (deadlines, connection cap, frame size before Hello, buffered bytes, accept
 * pauses on EMFILE); closes connections safely (never inside their own callbacks).
 * Knows nothing of tallies, collectors' identities or PostgreSQL. */
#ifndef NET_NET_H
#define NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.pb-c.h"

struct event_base;
struct net_server;
struct net_conn;
typedef struct ssl_ctx_st SSL_CTX;

/* A decoded frame, valid until the callback returns. Return 0 to go on reading, or -1
 * after having called net_conn_fail/net_conn_close. */
typedef int (*net_frame_cb)(void *arg, struct net_conn *c, const Tally__Frame *f);
/* The connection is closing: forget it. Called once, on the loop. */
typedef void (*net_close_cb)(void *arg, struct net_conn *c);

struct net_server_config {
    const char *host;
    uint16_t port;
    size_t max_frame_bytes;  /* payload limit; larger frames get ERROR_FRAME_TOO_LARGE */
    size_t max_output_bytes; /* stop reading from a peer whose replies pile up past this */
    net_frame_cb on_frame;
    net_close_cb on_close;
    void *arg;
    bool reserve_only; /* bind now (the port is ours, connections are refused), listen later */
    /* TLS on every accepted connection (handshake as server; whether client certificates
     * are required is the context's business). NULL: plain TCP. Borrowed: the caller
     * frees it after net_server_free. */
    SSL_CTX *tls;
    /* Limits; 0 means no limit for each. Each hit is counted (net_server_limit_counters)
     * and logged at WARN, at most 5 lines per kind per 10 s plus one summary line. */
    uint32_t hello_timeout_ms; /* accept (TLS handshake included) until
                                  net_conn_set_authenticated: ERROR_TIMEOUT, close */
    uint32_t frame_timeout_ms; /* first byte of a frame until its last: ERROR_TIMEOUT, close */
    uint32_t idle_timeout_ms;  /* authenticated, no byte in: ERROR_TIMEOUT, close */
    /* Connections open at once. At the limit a new socket takes the slot of the oldest
     * connection that has not said Hello (pre_auth_evicted); it is closed at accept only
     * when every slot is authenticated (or closing). */
    uint32_t max_conns;
    /* Connections not yet authenticated at once (0: only max_conns bounds them). At the
     * limit a new socket takes the slot of the oldest of them, so a flood of bare
     * connects cannot hold the slots good collectors need. */
    uint32_t max_pre_auth_conns;
    uint32_t pre_auth_max_frame_bytes; /* before authentication: ERROR_FRAME_TOO_LARGE, never
                                          buffered whole nor decoded */
    /* Input buffered across authenticated connections (bytes before Hello are bounded by
     * pre_auth_max_frame_bytes and not counted): past it no authenticated connection
     * starts reading a new frame until it falls below half. A connection in the middle of
     * a frame reads until that frame is whole, so the pause only ever holds whole frames
     * (processed as usual) and cannot deadlock. */
    uint64_t max_buffered_bytes;
};

/* What the limits did since start (for /metrics). pre_auth_evicted: connections without
 * Hello closed to make room (max_pre_auth_conns, max_conns); tcp_probes: connections
 * closed by their peer before sending a single byte (load balancers' and port checks;
 * not handshake failures). */
struct net_limit_counters {
    uint64_t hello_timeouts, frame_timeouts, idle_timeouts, conn_limit_refused, pre_auth_too_large,
        buffer_pauses, accept_pauses, tls_handshake_failures, pre_auth_evicted, tcp_probes;
};

/* Binds and, unless cfg->reserve_only, listens. Returns NULL (and logs why, with the
 * errno text) when the address cannot be bound. */
struct net_server *net_server_new(struct event_base *base, const struct net_server_config *cfg);
/* Starts listening on a server made with reserve_only. Returns 0 or -1 (logged). */
int net_server_listen(struct net_server *s) __attribute__((warn_unused_result));
/* Closes every connection (without callbacks) and the listener. NULL is a no-op. */
void net_server_free(struct net_server *s);

/* Back-pressure: stop (and restart) handing frames of authenticated connections to the
 * callback. Bytes stay in the kernel's and libevent's buffers, so collectors slow down.
 * While paused, a Ping at the head of a connection's input is still handed over (so idle
 * collectors are answered), and connections before authentication are not affected at
 * all (Hello goes on; its deadline stays fair) unless net_server_stop_accepting was
 * called (shutdown: no new sessions). */
void net_server_pause(struct net_server *s);
void net_server_resume(struct net_server *s);
/* Stop accepting new connections (shutdown). */
void net_server_stop_accepting(struct net_server *s);
size_t net_server_conn_count(const struct net_server *s);
/* Bytes of frames read and connections accepted since start. */
void net_server_counters(const struct net_server *s, uint64_t *bytes, uint64_t *accepted);
void net_server_limit_counters(const struct net_server *s, struct net_limit_counters *out);
/* Memory held for connections now: input bytes buffered (plaintext, not yet framed) and
 * decode arenas. Walks the connections. */
void net_server_memory(const struct net_server *s, uint64_t *buffered_bytes, uint64_t *arena_bytes);
/* Closes every connection after flushing what is queued to it. */
void net_server_close_all(struct net_server *s, const char *reason);
/* The port actually bound (useful with port 0). */
uint16_t net_server_port(const struct net_server *s);

/* Queues one frame to the peer. No allocation beyond the output buffer's growth. */
void net_conn_send(struct net_conn *c, const Tally__Frame *f);
/* Sends Error{code, message} (printf-style), logs it with the peer, and closes. The message
 * (in the frame and the log) keeps printable ASCII only, others become '?'. The log line
 * is rate-limited (net_conn_log_allowed). */
void net_conn_fail(struct net_conn *c, Tally__ErrorCode code, uint64_t expected_seq,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Closes after flushing queued output (bounded by a timeout). Logs reason at INFO once the
 * connection is authenticated (within net_conn_log_allowed's budget), at DEBUG before. */
void net_conn_close(struct net_conn *c, const char *reason);

/* The caller accepted this connection's Hello (call net_conn_set_name first): the Hello
 * deadline ends, the idle timeout starts, frames up to max_frame_bytes are read, the
 * input counts against max_buffered_bytes. Logs the session at INFO (rate-limited). */
void net_conn_set_authenticated(struct net_conn *c);
bool net_conn_is_authenticated(const struct net_conn *c);
bool net_conn_is_tls(const struct net_conn *c);
/* True when c is TLS and its peer presented a certificate that verified; out gets the
 * SHA-256 of the certificate's DER SubjectPublicKeyInfo (the pin tls_pin_of_cert makes). */
bool net_conn_peer_pin(const struct net_conn *c, uint8_t out[32]);

const char *net_conn_peer(const struct net_conn *c);
/* Name shown in this connection's log lines (the collector id once known); bytes outside
 * printable ASCII are replaced by '?'. */
void net_conn_set_name(struct net_conn *c, const char *name);
/* Whether a line about this connection may be logged now; each true counts as one line.
 * Authenticated: at most 20 lines per collector name (net_conn_set_name) per 60 s, shared
 * with net's own session lines, then one summary line per window ("collector X: N more
 * session lines in the last 60 s"). Before authentication: the shared budget of lines
 * about peers refused before Hello (5 per 10 s). For the caller's own per-session lines. */
bool net_conn_log_allowed(struct net_conn *c);
void net_conn_set_user(struct net_conn *c, void *user);
void *net_conn_user(const struct net_conn *c);

#endif
