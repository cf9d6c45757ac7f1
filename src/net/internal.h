/* What the files of net/ share and nobody else sees: the connection and server structs,
 * the limit bookkeeping (limits.c) and the TLS wrapping (tls_conn.c). Callers use net.h. */
#ifndef NET_INTERNAL_H
#define NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/util.h>

#include "core/arena.h"
#include "net/net.h"

struct bufferevent;
struct evconnlistener;
struct event;
struct evbuffer;
typedef struct ssl_st SSL;

/* A plain connection's max_single_read, and the slack above one whole frame it may buffer.
 * (libevent 2.1.12's evbuffer_read still takes at most 4 KiB per call: EVBUFFER_MAX_READ.) */
#define NET_READ_CHUNK (256 * 1024)
/* The read high-watermark before Hello: enough for a Hello, nothing like a batch. */
#define NET_PRE_AUTH_READ_MIN 4096
/* Decode memory a connection keeps after a frame: a few times the ~1.2 MB a batch of
 * TALLY_DEFAULT_MAX_BATCH_VOTES decodes to. Beyond it the arena is freed (arena_trim). */
#define NET_ARENA_KEEP (4u << 20)
#define NET_ARENA_FIRST (64 * 1024)
/* How long one connection's frames may hold the loop in one callback, and all of them in
 * one resume_cb: what is left waits for the next turn (resume_cb again, round robin).
 * Frames buffered during back-pressure (up to ~8 MiB a connection) released at once held
 * the loop for 30-150 ms; a batch costs 1-2 ms to apply against 100 M ballots. */
#define NET_TURN_NS 3000000
#define NET_RESUME_NS 6000000
/* A closing connection gets this long to flush its last frames. */
#define NET_CLOSE_FLUSH_NS (5 * 1000000000LL)
/* Rate limit of the log lines about limit hits: the first NET_LOG_BURST of a kind in a
 * window of NET_LOG_WINDOW_NS, then one summary line for the rest. */
#define NET_LOG_BURST 5
#define NET_LOG_WINDOW_NS (10 * 1000000000LL)
/* Accept paused on EMFILE/ENFILE: first delay, doubling while accept keeps failing. */
#define NET_ACCEPT_PAUSE_MIN_MS 100
#define NET_ACCEPT_PAUSE_MAX_MS 1000
/* A frame this small at the head of an authenticated connection's input is looked at
 * while the server is paused: a Ping (17 bytes at most) is answered, anything else waits.
 * Idle collectors must not stall out while PostgreSQL is away. */
#define NET_PING_MAX_PAYLOAD 32
/* Session lines (open, close, errors) of one collector name: the first
 * NET_NAME_LOG_BURST in a window of NET_NAME_LOG_WINDOW_NS, then one summary line. The
 * table holds NET_NAME_LOG_SLOTS names; a new name takes the slot of the oldest window. */
#define NET_NAME_LOG_BURST 20
#define NET_NAME_LOG_WINDOW_NS (60 * 1000000000LL)
#define NET_NAME_LOG_SLOTS 64

enum net_log_kind {
    NET_LOG_HELLO_TIMEOUT,
    NET_LOG_FRAME_TIMEOUT,
    NET_LOG_IDLE_TIMEOUT,
    NET_LOG_CONN_LIMIT,
    NET_LOG_PRE_AUTH_TOO_LARGE,
    NET_LOG_BUFFER_PAUSE,
    NET_LOG_ACCEPT_PAUSE,
    NET_LOG_TLS_HANDSHAKE,
    NET_LOG_PRE_AUTH_REFUSED, /* net_conn_fail before Hello was accepted */
    NET_LOG_PRE_AUTH_EVICTED,
    NET_LOG_KINDS
};

struct net_ratelim {
    int64_t window_start; /* 0: no window open */
    uint32_t logged;
    uint64_t suppressed;
};

/* One collector name's window of session lines (name[0] == '\0': a free slot). */
struct net_name_log {
    char name[64];
    int64_t window_start;
    uint32_t logged;
    uint64_t suppressed;
};

struct net_conn {
    struct net_server *srv;
    struct bufferevent *bev;        /* socket, or openssl over the socket (TLS) */
    SSL *ssl;                       /* NULL: plain TCP; owned by bev */
    TAILQ_ENTRY(net_conn) link;     /* all live connections */
    TAILQ_ENTRY(net_conn) pre_link; /* srv->pre_auth, while in_pre_auth */
    struct net_conn *next_dead;     /* reap list */
    struct arena arena;             /* one decoded frame at a time */
    struct event *timer;            /* the earliest deadline below */
    int64_t timer_at;               /* when timer fires (0: not armed) */
    int64_t accepted_ns;
    int64_t last_rx_ns;     /* last bytes in, for the idle timeout */
    int64_t frame_start_ns; /* the frame at the head of the input is incomplete since */
    int64_t close_ns;       /* closing since (flush deadline) */
    int64_t read_off_ns;    /* reading off on our side since (the frame clock stops) */
    size_t accounted;       /* input bytes counted in srv->buffered (or pre_auth_buffered) */
    size_t input_cap;       /* stop reading at this much input (watermark, or by hand: TLS) */
    char peer[64];
    char name[64];
    void *user;
    bool authenticated;
    bool in_pre_auth; /* in srv->pre_auth: not authenticated, not closing */
    bool got_bytes;   /* plain TCP: some byte came in (a port check sends none) */
    bool closing;
    bool dead;
    bool output_full; /* reading paused until our replies drain */
    bool input_full;  /* TLS: input_cap reached, reading paused until frames are consumed */
    bool reading;     /* EV_READ enabled on bev */
    bool in_process;  /* conn_process is on the stack (libevent may call back into it) */
    bool tls_up;      /* TLS handshake done (BEV_EVENT_CONNECTED, or data) */
    bool tls_shutdown_sent;
};

TAILQ_HEAD(net_conn_list, net_conn);

struct net_server {
    struct event_base *base;
    struct net_server_config cfg;
    struct evconnlistener *listener;
    evutil_socket_t reserved; /* bound, not listening yet (reserve_only); -1 otherwise */
    char text[300];           /* the address, for messages */
    struct net_conn_list conns;
    size_t n_conns;
    size_t n_dead; /* of n_conns, killed and waiting for the reap event */
    /* Connections neither authenticated nor closing, oldest first: the ones evicted when
     * a new connection needs a slot (max_pre_auth_conns, max_conns). */
    struct net_conn_list pre_auth;
    size_t n_pre_auth;
    struct net_conn *dead;
    struct event *reap_ev;
    struct event *resume_ev;
    struct net_conn *resume_from; /* where the next resume_cb starts (NULL: the first) */
    bool paused;
    uint64_t bytes_received;
    uint64_t accepted;
    /* Limits. */
    uint64_t buffered;          /* authenticated connections' accounted input bytes */
    uint64_t pre_auth_buffered; /* the others': never counted against max_buffered_bytes */
    bool buf_paused; /* over max_buffered_bytes: no authenticated connection starts a frame */
    struct event *buf_resume_ev;
    bool accept_paused;
    bool accept_stopped; /* net_server_stop_accepting: never re-enabled */
    bool accept_ok_since_pause;
    uint32_t accept_delay_ms;
    struct event *accept_ev;
    struct net_limit_counters limits;
    struct net_ratelim ratelim[NET_LOG_KINDS];
    struct net_name_log names[NET_NAME_LOG_SLOTS];
    struct event *ratelim_ev;
    int64_t ratelim_at; /* when ratelim_ev fires (0: not pending) */
};

int64_t net_mono_ns(void);
/* Copies src into dst (n bytes, NUL-terminated), each byte outside 0x20-0x7e as '?'. */
void net_printable(char *dst, size_t n, const char *src);

/* conn.c */
/* Takes fd (closed on failure); peer is "host:port". */
void net_conn_accept(struct net_server *s, evutil_socket_t fd, const char *peer);
void net_conn_release(struct net_conn *c);
void net_conn_process(struct net_conn *c);
/* Enables or disables reading as closing, output_full, input_full and buf_paused say (the
 * budget never stops a connection in the middle of its head frame); stops the frame clock
 * while reading is off, restarts the idle clock and re-arms the timer when it is back on. */
void net_conn_update_read(struct net_conn *c);
void net_conn_kill(struct net_conn *c);
/* Closes the oldest connection that has not said Hello, to make room for a new one. */
void net_conn_evict_oldest_pre_auth(struct net_server *s);
/* TLS: pauses reading at input_cap, resumes below it. */
void net_conn_check_input(struct net_conn *c);
/* Closing and everything flushed: kill. */
void net_conn_try_finish(struct net_conn *c);
/* Sends Error{code, msg} when it can (not before a TLS handshake ends) and closes; logs
 * nothing but the close line (the caller logged, rate-limited). */
void net_conn_error_close(struct net_conn *c, Tally__ErrorCode code, const char *msg);

/* limits.c */
/* True when a line of this kind may be logged now; otherwise counts it for the summary. */
bool net_ratelim_allow(struct net_server *s, enum net_log_kind kind);
void net_ratelim_cb(evutil_socket_t fd, short what, void *arg);
/* Writes the pending summary lines now (at net_server_free). */
void net_ratelim_flush(struct net_server *s);
/* True when a session line of collector name may be logged now (the per-name budget);
 * otherwise counts it for that name's summary line. */
bool net_name_log_allow(struct net_server *s, const char *name);
void net_conn_arm(struct net_conn *c);
void net_conn_timer_cb(evutil_socket_t fd, short what, void *arg);
/* Looks at the head of c's input: starts or clears the frame deadline. */
void net_conn_track_frame(struct net_conn *c);
/* The frame at the head of c's input has started and is not complete. */
bool net_conn_head_partial(struct net_conn *c);
/* Brings srv->buffered up to date with c's input; pauses or schedules the resume. */
void net_conn_account(struct net_conn *c);
void net_buf_resume_cb(evutil_socket_t fd, short what, void *arg);
void net_accept_error(struct net_server *s, int err);
void net_accept_resume_cb(evutil_socket_t fd, short what, void *arg);

/* tls_conn.c */
/* A bufferevent for accepted socket fd: TLS (server side, handshake pending) over it
 * when s->cfg.tls is set, else plain. *ssl gets the SSL (or NULL). NULL on failure; fd
 * is closed either way on failure. */
struct bufferevent *net_tls_bev_new(struct net_server *s, evutil_socket_t fd, SSL **ssl);
/* Sets c's read limit for its state (unauthenticated or not): input_cap, and the read
 * watermark of a plain connection. */
void net_conn_set_read_limits(struct net_conn *c);
bool net_tls_handshake_done(const struct net_conn *c);
/* Ciphertext bytes read from c's socket so far (0: the peer sent nothing at all). */
uint64_t net_tls_bytes_in(const struct net_conn *c);
/* BEV_EVENT_CONNECTED: the handshake is done. */
void net_tls_connected(struct net_conn *c);
/* Why the TLS layer failed (what: the bufferevent event), from libevent's saved OpenSSL
 * errors and the certificate verification result. */
void net_tls_error_text(struct net_conn *c, short what, char *out, size_t n);
/* Closing, with our output empty: sends close_notify (once, best effort); true when
 * nothing more needs flushing. */
bool net_tls_flushed(struct net_conn *c);

#endif
