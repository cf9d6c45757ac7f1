/* The collector-facing TCP server on libevent: accepts connections, cuts the byte
 * stream into frames, decodes them into a per-connection arena and hands each to a
 * callback; queues replies; closes connections safely (never inside their own
 * callbacks). Knows nothing of tallies or PostgreSQL. */
#ifndef NET_NET_H
#define NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.pb-c.h"

struct event_base;
struct net_server;
struct net_conn;

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
};

/* Binds and, unless cfg->reserve_only, listens. Returns NULL (and logs why, with the
 * errno text) when the address cannot be bound. */
struct net_server *net_server_new(struct event_base *base, const struct net_server_config *cfg);
/* Starts listening on a server made with reserve_only. Returns 0 or -1 (logged). */
int net_server_listen(struct net_server *s) __attribute__((warn_unused_result));
/* Closes every connection (without callbacks) and the listener. NULL is a no-op. */
void net_server_free(struct net_server *s);

/* Back-pressure: stop (and restart) handing frames to the callback for all connections.
 * Bytes stay in the kernel's and libevent's buffers, so collectors slow down. */
void net_server_pause(struct net_server *s);
void net_server_resume(struct net_server *s);
/* Stop accepting new connections (shutdown). */
void net_server_stop_accepting(struct net_server *s);
size_t net_server_conn_count(const struct net_server *s);
/* Bytes of frames read and connections accepted since start. */
void net_server_counters(const struct net_server *s, uint64_t *bytes, uint64_t *accepted);
/* Closes every connection after flushing what is queued to it. */
void net_server_close_all(struct net_server *s, const char *reason);
/* The port actually bound (useful with port 0). */
uint16_t net_server_port(const struct net_server *s);

/* Queues one frame to the peer. No allocation beyond the output buffer's growth. */
void net_conn_send(struct net_conn *c, const Tally__Frame *f);
/* Sends Error{code, message} (printf-style), logs it with the peer, and closes. */
void net_conn_fail(struct net_conn *c, Tally__ErrorCode code, uint64_t expected_seq,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Closes after flushing queued output (bounded by a timeout). Logs reason at INFO. */
void net_conn_close(struct net_conn *c, const char *reason);

const char *net_conn_peer(const struct net_conn *c);
/* Name shown in this connection's log lines (the collector id once known). */
void net_conn_set_name(struct net_conn *c, const char *name);
void net_conn_set_user(struct net_conn *c, void *user);
void *net_conn_user(const struct net_conn *c);

#endif
