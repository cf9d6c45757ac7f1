/* Connections: accept, frame, decode, reply, close. Owns every struct net_conn and its
 * bufferevent; frees them only from the reap event, never inside their own callbacks
 * (the pattern of Redis' freeClientAsync). The meaning of frames is the caller's. */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core/loopwatch.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "wire/wire.h"

/* libevent 2.1 reads 16 KiB per call by default; batches are hundreds of KiB. */
#define NET_READ_CHUNK (256 * 1024)
/* How long one connection's frames may hold the loop in one callback, and all of them in
 * one resume_cb: what is left waits for the next turn (resume_cb again, round robin).
 * Frames buffered during back-pressure (up to ~8 MiB a connection) released at once held
 * the loop for 30-150 ms; a batch costs 1-2 ms to apply against 100 M ballots. */
#define NET_TURN_NS 3000000
#define NET_RESUME_NS 6000000
/* A closing connection gets this long to flush its last frames. */
#define NET_CLOSE_FLUSH_SEC 5

struct net_conn {
    struct net_server *srv;
    struct bufferevent *bev;
    struct net_conn *prev, *next; /* all live connections */
    struct net_conn *next_dead;   /* reap list */
    struct arena arena;           /* one decoded frame at a time */
    char peer[64];
    char name[64];
    void *user;
    bool closing;
    bool dead;
    bool output_full; /* reading paused until our replies drain */
};

struct net_server {
    struct event_base *base;
    struct net_server_config cfg;
    struct evconnlistener *listener;
    evutil_socket_t reserved; /* bound, not listening yet (reserve_only); -1 otherwise */
    char text[300];           /* the address, for messages */
    struct net_conn *conns;
    size_t n_conns;
    struct net_conn *dead;
    struct event *reap_ev;
    struct event *resume_ev;
    struct net_conn *resume_from; /* where the next resume_cb starts (NULL: the first) */
    bool paused;
    uint64_t bytes_received;
    uint64_t accepted;
};

static void conn_process(struct net_conn *c);

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

const char *net_conn_peer(const struct net_conn *c)
{
    return c->peer;
}

void net_conn_set_name(struct net_conn *c, const char *name)
{
    snprintf(c->name, sizeof(c->name), "%s", name ? name : "");
}

void net_conn_set_user(struct net_conn *c, void *user)
{
    c->user = user;
}

void *net_conn_user(const struct net_conn *c)
{
    return c->user;
}

static void conn_release(struct net_conn *c)
{
    struct net_server *s = c->srv;
    if (s->resume_from == c)
        s->resume_from = c->next;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    bufferevent_free(c->bev);
    arena_cleanup(&c->arena);
    free(c);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_server *s = arg;
    while (s->dead) {
        struct net_conn *c = s->dead;
        s->dead = c->next_dead;
        conn_release(c);
    }
}

/* The one place a connection ends: tell the owner once, then free it from the reap
 * event. Safe to call from the connection's own callbacks. */
static void conn_kill(struct net_conn *c)
{
    if (c->dead)
        return;
    if (!c->closing && c->srv->cfg.on_close)
        c->srv->cfg.on_close(c->srv->cfg.arg, c);
    c->closing = true;
    c->dead = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->next_dead = c->srv->dead;
    c->srv->dead = c;
    event_active(c->srv->reap_ev, 0, 0);
}

void net_conn_close(struct net_conn *c, const char *reason)
{
    if (c->closing)
        return;
    log_conn(LOG_INFO, c->peer, c->name, "closing: %s", reason);
    if (c->srv->cfg.on_close)
        c->srv->cfg.on_close(c->srv->cfg.arg, c);
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_kill(c);
        return;
    }
    /* The write callback kills it once the output is flushed, or the timeout does. */
    struct timeval tv = {NET_CLOSE_FLUSH_SEC, 0};
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

void net_conn_send(struct net_conn *c, const Tally__Frame *f)
{
    if (c->dead)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = wire_frame_size(f);
    struct evbuffer_iovec iov;
    /* Pack straight into libevent's buffer: no intermediate copy, no malloc. */
    if (evbuffer_reserve_space(out, (ev_ssize_t)n, &iov, 1) < 1 || iov.iov_len < n) {
        log_conn(LOG_ERROR, c->peer, c->name, "cannot queue a %zu-byte frame", n);
        conn_kill(c);
        return;
    }
    iov.iov_len = wire_frame_encode(f, iov.iov_base);
    evbuffer_commit_space(out, &iov, 1);
    if (!c->output_full && evbuffer_get_length(out) > c->srv->cfg.max_output_bytes) {
        /* The peer is not reading its acks: stop reading its batches until it does. */
        c->output_full = true;
        bufferevent_disable(c->bev, EV_READ);
        log_conn(LOG_WARN, c->peer, c->name, "peer is not reading replies; pausing its input");
    }
}

void net_conn_fail(struct net_conn *c, Tally__ErrorCode code, uint64_t expected_seq,
                   const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_conn(LOG_WARN, c->peer, c->name, "%s: %s", wire_error_name(code), msg);

    Tally__Error err = TALLY__ERROR__INIT;
    err.code = code;
    err.message = msg;
    err.expected_seq = expected_seq;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_ERROR;
    f.error = &err;
    net_conn_send(c, &f);
    net_conn_close(c, wire_error_name(code));
}

/* Decodes and dispatches the whole frames in the input buffer for up to NET_TURN_NS (one
 * frame at least); when bytes are left, asks for another turn (resume_cb). */
static void conn_process(struct net_conn *c)
{
    struct net_server *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int64_t until = mono_ns() + NET_TURN_NS;
    bool first = true;
    while (!c->closing && !s->paused && !c->output_full) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hdr[4];
        if (avail < sizeof(hdr))
            break;
        if (!first && mono_ns() >= until) {
            event_active(s->resume_ev, 0, 0);
            break;
        }
        first = false;
        evbuffer_copyout(in, hdr, sizeof(hdr));
        size_t len = 0;
        enum wire_status st = wire_frame_peek(hdr, avail, s->cfg.max_frame_bytes, &len);
        if (st == WIRE_NEED_MORE)
            break;
        if (st == WIRE_ERR_TOO_LARGE) {
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 0,
                          "frame length exceeds the limit of %zu bytes", s->cfg.max_frame_bytes);
            break;
        }
        if (st != WIRE_OK) {
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_FRAME, 0, "empty frame");
            break;
        }
        const uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(4 + len));
        const Tally__Frame *f = NULL;
        if (wire_frame_decode(frame + 4, len, &c->arena, (Tally__Frame **)&f) != WIRE_OK) {
            arena_reset(&c->arena);
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_FRAME, 0,
                          "undecodable frame of %zu bytes", len);
            break;
        }
        s->bytes_received += 4 + len;
        int rc = s->cfg.on_frame(s->cfg.arg, c, f);
        arena_reset(&c->arena);
        evbuffer_drain(in, 4 + len);
        if (rc < 0)
            break;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)bev;
    conn_process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    LOOPWATCH_SCOPE();
    struct net_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (c->closing) {
        if (evbuffer_get_length(out) == 0)
            conn_kill(c);
        return;
    }
    if (c->output_full && evbuffer_get_length(out) <= c->srv->cfg.max_output_bytes / 2) {
        c->output_full = false;
        bufferevent_enable(bev, EV_READ);
        conn_process(c); /* frames may already be buffered */
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)bev;
    struct net_conn *c = arg;
    if (what & BEV_EVENT_EOF) {
        if (!c->closing)
            log_conn(LOG_INFO, c->peer, c->name, "peer closed the connection");
    } else if (what & BEV_EVENT_TIMEOUT) {
        log_conn(LOG_WARN, c->peer, c->name, "timed out flushing the last replies");
    } else if (what & BEV_EVENT_ERROR) {
        log_conn(LOG_WARN, c->peer, c->name, "connection error: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    conn_kill(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)l;
    (void)socklen;
    struct net_server *s = arg;
    struct net_conn *c = xcalloc(1, sizeof(*c));
    c->srv = s;
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));

    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    arena_init(&c->arena, 64 * 1024);
    bufferevent_set_max_single_read(c->bev, NET_READ_CHUNK);
    /* Stop reading once a whole maximal frame (plus slack) is buffered. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, s->cfg.max_frame_bytes + 4 + NET_READ_CHUNK);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);

    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    s->accepted++;
    log_conn(LOG_INFO, c->peer, NULL, "connected");
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)l;
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and the like: log and keep serving the connections we have. */
    log_error("accept failed: %s", evutil_socket_error_to_string(err));
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_server *s = arg;
    int64_t until = mono_ns() + NET_RESUME_NS;
    struct net_conn *start = s->resume_from ? s->resume_from : s->conns;
    struct net_conn *c = start;
    for (size_t n = s->n_conns; c && n && !s->paused; n--) {
        struct net_conn *next = c->next ? c->next : s->conns;
        if (!c->closing && !c->output_full)
            conn_process(c); /* may release c: next is taken first */
        c = next;
        if (mono_ns() >= until) {
            event_active(s->resume_ev, 0, 0);
            break;
        }
    }
    s->resume_from = c;
}

/* A bound, not yet listening socket: the port is reserved and connections to it are
 * refused until net_server_listen. */
static evutil_socket_t net_bind(const struct sockaddr *sa, int len, const char *text)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("cannot listen on %s: %s", text, strerror(errno));
        return -1;
    }
    if (evutil_make_listen_socket_reuseable(fd) < 0 || bind(fd, sa, (socklen_t)len) < 0) {
        log_error("cannot listen on %s: %s", text, strerror(errno));
        evutil_closesocket(fd);
        return -1;
    }
    return fd;
}

struct net_server *net_server_new(struct event_base *base, const struct net_server_config *cfg)
{
    struct net_server *s = xcalloc(1, sizeof(*s));
    s->base = base;
    s->cfg = *cfg;
    s->reserved = -1;

    char text[300];
    snprintf(text, sizeof(text), strchr(cfg->host, ':') ? "[%s]:%u" : "%s:%u", cfg->host,
             cfg->port);
    snprintf(s->text, sizeof(s->text), "%s", text);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (evutil_parse_sockaddr_port(text, (struct sockaddr *)&ss, &sslen) < 0) {
        log_error("--listen %s: not a numeric address (use e.g. 127.0.0.1:7400)", text);
        goto fail;
    }
    s->reserved = net_bind((struct sockaddr *)&ss, sslen, text);
    if (s->reserved < 0)
        goto fail;
    s->reap_ev = event_new(base, -1, 0, reap_cb, s);
    s->resume_ev = event_new(base, -1, 0, resume_cb, s);
    if (!cfg->reserve_only && net_server_listen(s) < 0) {
        net_server_free(s);
        return NULL;
    }
    return s;
fail:
    free(s);
    return NULL;
}

int net_server_listen(struct net_server *s)
{
    if (s->listener)
        return 0;
    s->listener = evconnlistener_new(
        s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 512, s->reserved);
    if (!s->listener) {
        log_error("cannot listen on %s: %s", s->text, strerror(errno));
        return -1;
    }
    s->reserved = -1; /* the listener owns it now */
    evconnlistener_set_error_cb(s->listener, accept_error_cb);
    return 0;
}

void net_server_free(struct net_server *s)
{
    if (!s)
        return;
    reap_cb(-1, 0, s);
    while (s->conns)
        conn_release(s->conns);
    if (s->listener)
        evconnlistener_free(s->listener);
    if (s->reserved >= 0)
        evutil_closesocket(s->reserved);
    event_free(s->reap_ev);
    event_free(s->resume_ev);
    free(s);
}

void net_server_pause(struct net_server *s)
{
    s->paused = true;
}

void net_server_resume(struct net_server *s)
{
    if (!s->paused)
        return;
    s->paused = false;
    /* Frames already buffered would wait for more bytes that may never come. */
    event_active(s->resume_ev, 0, 0);
}

void net_server_stop_accepting(struct net_server *s)
{
    if (s->listener)
        evconnlistener_disable(s->listener);
}

void net_server_counters(const struct net_server *s, uint64_t *bytes, uint64_t *accepted)
{
    *bytes = s->bytes_received;
    *accepted = s->accepted;
}

void net_server_close_all(struct net_server *s, const char *reason)
{
    for (struct net_conn *c = s->conns; c; c = c->next)
        net_conn_close(c, reason);
}

size_t net_server_conn_count(const struct net_server *s)
{
    return s->n_conns;
}

uint16_t net_server_port(const struct net_server *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = s->listener ? evconnlistener_get_fd(s->listener) : s->reserved;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
