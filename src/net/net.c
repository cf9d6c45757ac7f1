/* The server: binds and listens, accepts (making room by closing the oldest connection
 * without Hello, or refusing when every slot is authenticated), runs the
 * round-robin turns that resume buffered frames, reaps dead connections and reports the
 * counters. Connections themselves are conn.c's, limits limits.c's, TLS tls_conn.c's. */
#include "net/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/log.h"
#include "core/loopwatch.h"
#include "core/xalloc.h"

void net_printable(char *dst, size_t n, const char *src)
{
    if (!n)
        return;
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch >= 0x20 && ch <= 0x7e ? (char)ch : '?';
    }
    dst[i] = '\0';
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
        net_conn_release(c);
    }
}

static void peer_text(const struct sockaddr *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, n, "%s:%u", host, port);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)l;
    (void)socklen;
    struct net_server *s = arg;
    s->accept_ok_since_pause = true;
    char peer[64];
    peer_text(sa, peer, sizeof(peer));
    /* Dead connections wait for the reap event but hold no slot any more. */
    size_t n_open = s->n_conns - s->n_dead;
    bool pre_full = s->cfg.max_pre_auth_conns && s->n_pre_auth >= s->cfg.max_pre_auth_conns;
    bool all_full = s->cfg.max_conns && n_open >= s->cfg.max_conns;
    if ((pre_full || all_full) && s->n_pre_auth > 0) {
        /* The oldest peer that has not said Hello makes room: ~400 bare connects a second
         * no longer hold every slot, and a collector still gets in (it needs a slot for
         * a round trip or two, not for the pre-auth queue's whole length). */
        net_conn_evict_oldest_pre_auth(s);
    } else if (all_full) {
        s->limits.conn_limit_refused++;
        if (net_ratelim_allow(s, NET_LOG_CONN_LIMIT))
            log_conn(LOG_WARN, peer, NULL,
                     "refused: %zu connections open (limit %u), all of them "
                     "authenticated or closing",
                     n_open, s->cfg.max_conns);
        evutil_closesocket(fd);
        return;
    }
    net_conn_accept(s, fd, peer);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)l;
    /* libevent retries EAGAIN, EINTR and ECONNABORTED itself; what reaches us (EMFILE,
     * ENFILE, ENOBUFS, ENOMEM...) would fail again at once. */
    net_accept_error(arg, EVUTIL_SOCKET_ERROR());
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_server *s = arg;
    int64_t until = net_mono_ns() + NET_RESUME_NS;
    struct net_conn *c = s->resume_from ? s->resume_from : TAILQ_FIRST(&s->conns);
    /* Paused, this still runs: Hello and Pings go on (net_conn_process holds the rest). */
    for (size_t n = s->n_conns; c && n; n--) {
        struct net_conn *next = TAILQ_NEXT(c, link) ? TAILQ_NEXT(c, link) : TAILQ_FIRST(&s->conns);
        if (!c->closing && !c->output_full)
            net_conn_process(c); /* never frees c (the reap event does) */
        c = next;
        if (net_mono_ns() >= until) {
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
    TAILQ_INIT(&s->conns);
    TAILQ_INIT(&s->pre_auth);

    char text[300];
    snprintf(text, sizeof(text), strchr(cfg->host, ':') ? "[%s]:%u" : "%s:%u", cfg->host,
             cfg->port);
    snprintf(s->text, sizeof(s->text), "%s", text);
    /* libevent refuses an explicit port 0; without a port it means "any" (tests). */
    char bare[300];
    snprintf(bare, sizeof(bare), strchr(cfg->host, ':') ? "[%s]" : "%s", cfg->host);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (evutil_parse_sockaddr_port(cfg->port ? text : bare, (struct sockaddr *)&ss, &sslen) < 0) {
        log_error("--listen %s: not a numeric address (use e.g. 127.0.0.1:7400)", text);
        goto fail;
    }
    s->reserved = net_bind((struct sockaddr *)&ss, sslen, text);
    if (s->reserved < 0)
        goto fail;
    s->reap_ev = event_new(base, -1, 0, reap_cb, s);
    s->resume_ev = event_new(base, -1, 0, resume_cb, s);
    s->buf_resume_ev = event_new(base, -1, 0, net_buf_resume_cb, s);
    s->accept_ev = evtimer_new(base, net_accept_resume_cb, s);
    s->ratelim_ev = evtimer_new(base, net_ratelim_cb, s);
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
    if (s->accept_stopped)
        evconnlistener_disable(s->listener);
    return 0;
}

void net_server_free(struct net_server *s)
{
    if (!s)
        return;
    reap_cb(-1, 0, s);
    while (!TAILQ_EMPTY(&s->conns))
        net_conn_release(TAILQ_FIRST(&s->conns));
    net_ratelim_flush(s);
    if (s->listener)
        evconnlistener_free(s->listener);
    if (s->reserved >= 0)
        evutil_closesocket(s->reserved);
    event_free(s->reap_ev);
    event_free(s->resume_ev);
    event_free(s->buf_resume_ev);
    event_free(s->accept_ev);
    event_free(s->ratelim_ev);
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
    s->accept_stopped = true;
    evtimer_del(s->accept_ev);
    if (s->listener)
        evconnlistener_disable(s->listener);
}

void net_server_counters(const struct net_server *s, uint64_t *bytes, uint64_t *accepted)
{
    *bytes = s->bytes_received;
    *accepted = s->accepted;
}

void net_server_limit_counters(const struct net_server *s, struct net_limit_counters *out)
{
    *out = s->limits;
}

void net_server_memory(const struct net_server *s, uint64_t *buffered_bytes,
                       uint64_t *arena_bytes_out)
{
    uint64_t in = 0, ar = 0;
    const struct net_conn *c;
    for (c = TAILQ_FIRST(&s->conns); c; c = TAILQ_NEXT(c, link)) {
        in += evbuffer_get_length(bufferevent_get_input(c->bev));
        ar += arena_bytes(&c->arena);
    }
    *buffered_bytes = in;
    *arena_bytes_out = ar;
}

void net_server_close_all(struct net_server *s, const char *reason)
{
    struct net_conn *c;
    for (c = TAILQ_FIRST(&s->conns); c; c = TAILQ_NEXT(c, link)) {
        net_conn_close(c, reason);
    }
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
