/* Connections: frame, decode, reply, close. Owns every struct net_conn and its
 * bufferevent; frees them only from the reap event, never inside their own callbacks
 * (the pattern of Redis' freeClientAsync). The meaning of frames is the caller's; the
 * deadlines and the buffer budget are limits.c's, the TLS layer tls_conn.c's. */
#include "net/internal.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/crashpoint.h"
#include "core/log.h"
#include "core/loopwatch.h"
#include "core/xalloc.h"
#include "wire/wire.h"

const char *net_conn_peer(const struct net_conn *c)
{
    return c->peer;
}

void net_conn_set_name(struct net_conn *c, const char *name)
{
    net_printable(c->name, sizeof(c->name), name ? name : "");
}

void net_conn_set_user(struct net_conn *c, void *user)
{
    c->user = user;
}

void *net_conn_user(const struct net_conn *c)
{
    return c->user;
}

bool net_conn_log_allowed(struct net_conn *c)
{
    if (!c->authenticated)
        return net_ratelim_allow(c->srv, NET_LOG_PRE_AUTH_REFUSED);
    return net_name_log_allow(c->srv, c->name);
}

/* Out of the queue of connections that may be evicted: authenticated, closing or dead. */
static void conn_leave_pre_auth(struct net_conn *c)
{
    if (!c->in_pre_auth)
        return;
    TAILQ_REMOVE(&c->srv->pre_auth, c, pre_link);
    c->srv->n_pre_auth--;
    c->in_pre_auth = false;
}

bool net_conn_is_authenticated(const struct net_conn *c)
{
    return c->authenticated;
}

bool net_conn_is_tls(const struct net_conn *c)
{
    return c->ssl != NULL;
}

void net_conn_set_authenticated(struct net_conn *c)
{
    if (c->authenticated || c->closing)
        return;
    struct net_server *s = c->srv;
    conn_leave_pre_auth(c);
    /* From now on its input counts against the budget. */
    s->pre_auth_buffered -= c->accounted;
    s->buffered += c->accounted;
    c->authenticated = true;
    c->last_rx_ns = net_mono_ns();
    if (net_conn_log_allowed(c))
        log_conn(LOG_INFO, c->peer, c->name, "session open (%s)", c->ssl ? "TLS" : "plain TCP");
    net_conn_account(c);
    net_conn_set_read_limits(c);
    net_conn_check_input(c);
    net_conn_update_read(c); /* the input budget may be paused */
    net_conn_arm(c);
}

void net_conn_release(struct net_conn *c)
{
    struct net_server *s = c->srv;
    if (s->resume_from == c)
        s->resume_from = TAILQ_NEXT(c, link);
    conn_leave_pre_auth(c);
    TAILQ_REMOVE(&s->conns, c, link);
    s->n_conns--;
    if (c->dead)
        s->n_dead--;
    if (c->authenticated)
        s->buffered -= c->accounted;
    else
        s->pre_auth_buffered -= c->accounted;
    event_free(c->timer);
    bufferevent_free(c->bev);
    arena_cleanup(&c->arena);
    free(c);
}

/* The one place a connection ends: tell the owner once, then free it from the reap
 * event. Safe to call from the connection's own callbacks. */
void net_conn_kill(struct net_conn *c)
{
    if (c->dead)
        return;
    if (!c->closing && c->srv->cfg.on_close)
        c->srv->cfg.on_close(c->srv->cfg.arg, c);
    conn_leave_pre_auth(c);
    c->closing = true;
    c->dead = true;
    c->srv->n_dead++;
    c->reading = false;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    evtimer_del(c->timer);
    c->timer_at = 0;
    c->next_dead = c->srv->dead;
    c->srv->dead = c;
    event_active(c->srv->reap_ev, 0, 0);
}

void net_conn_evict_oldest_pre_auth(struct net_server *s)
{
    struct net_conn *c = TAILQ_FIRST(&s->pre_auth);
    if (!c)
        return;
    s->limits.pre_auth_evicted++;
    if (net_ratelim_allow(s, NET_LOG_PRE_AUTH_EVICTED))
        log_conn(LOG_WARN, c->peer, NULL,
                 "no Hello after %lld ms; closed to make room for a new connection (%zu before "
                 "Hello, %zu open)",
                 (long long)((net_mono_ns() - c->accepted_ns) / 1000000), s->n_pre_auth,
                 s->n_conns - s->n_dead);
    /* At once, without a goodbye: the slot (and its descriptor) is what we need. */
    net_conn_kill(c);
}

/* Closing: kill once everything queued has left (the flush deadline is limits.c's). */
void net_conn_try_finish(struct net_conn *c)
{
    if (c->dead || !c->closing)
        return;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return;
    if (c->ssl && !net_tls_flushed(c))
        return;
    net_conn_kill(c);
}

/* Frames of a closing connection are never read: give their memory back now. */
static void conn_drop_input(struct net_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    net_conn_account(c);
}

void net_conn_close(struct net_conn *c, const char *reason)
{
    if (c->closing)
        return;
    char why[128];
    net_printable(why, sizeof(why), reason ? reason : "");
    if (!c->authenticated)
        log_conn(LOG_DEBUG, c->peer, c->name, "closing: %s", why);
    else if (net_conn_log_allowed(c))
        log_conn(LOG_INFO, c->peer, c->name, "closing: %s", why);
    if (c->srv->cfg.on_close)
        c->srv->cfg.on_close(c->srv->cfg.arg, c);
    conn_leave_pre_auth(c);
    c->closing = true;
    c->close_ns = net_mono_ns();
    c->frame_start_ns = 0;
    net_conn_update_read(c);
    /* The caller's frame may still point into the input: conn_process drops it after. */
    if (!c->in_process)
        conn_drop_input(c);
    /* write_cb finishes it once flushed, the timer if that takes too long. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    net_conn_try_finish(c);
    if (!c->dead)
        net_conn_arm(c);
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
        net_conn_kill(c);
        return;
    }
    iov.iov_len = wire_frame_encode(f, iov.iov_base);
    evbuffer_commit_space(out, &iov, 1);
    if (!c->dead && !c->output_full && evbuffer_get_length(out) > c->srv->cfg.max_output_bytes) {
        /* The peer is not reading its acks: stop reading its batches until it does. */
        c->output_full = true;
        net_conn_update_read(c);
        if (net_conn_log_allowed(c))
            log_conn(LOG_WARN, c->peer, c->name, "peer is not reading replies; pausing its input");
    }
}

void net_conn_error_close(struct net_conn *c, Tally__ErrorCode code, const char *msg)
{
    if (c->closing)
        return;
    /* Before the TLS handshake is done nothing can be sent: just close. */
    if (!c->ssl || net_tls_handshake_done(c)) {
        char text[256];
        net_printable(text, sizeof(text), msg);
        Tally__Error err = TALLY__ERROR__INIT;
        err.code = code;
        err.message = text;
        Tally__Frame f = TALLY__FRAME__INIT;
        f.msg_case = TALLY__FRAME__MSG_ERROR;
        f.error = &err;
        net_conn_send(c, &f);
    }
    net_conn_close(c, wire_error_name(code));
}

void net_conn_fail(struct net_conn *c, Tally__ErrorCode code, uint64_t expected_seq,
                   const char *fmt, ...)
{
    if (c->closing)
        return;
    char raw[256], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    net_printable(msg, sizeof(msg), raw);
    /* Before Hello, a flood of bad peers must not flood the log; after, nor must one
     * certificate holder reconnecting in a loop. */
    if (net_conn_log_allowed(c))
        log_conn(LOG_WARN, c->peer, c->name, "%s: %s", wire_error_name(code), msg);

    Tally__Error err = TALLY__ERROR__INIT;
    err.code = code;
    err.message = msg;
    err.expected_seq = expected_seq;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_ERROR;
    f.error = &err;
    if (!c->ssl || net_tls_handshake_done(c))
        net_conn_send(c, &f);
    net_conn_close(c, wire_error_name(code));
}

void net_conn_update_read(struct net_conn *c)
{
    struct net_server *s = c->srv;
    if (c->dead)
        return;
    /* Before Hello a connection holds at most input_cap (a few KiB) and is not counted:
     * the budget does not stop it, and a collector reconnecting during a pause can still
     * say Hello. A frame half read is read to its end, so the pause holds only whole
     * frames (which get processed) and never waits on a peer we stopped reading from. */
    bool budget = s->buf_paused && c->authenticated && !net_conn_head_partial(c);
    bool want = !c->closing && !c->output_full && !c->input_full && !budget;
    if (want == c->reading)
        return;
    c->reading = want;
    int64_t now = net_mono_ns();
    if (want) {
        /* Neither clock ran while we were not reading: not the peer's fault. The frame
         * clock goes on from where it stopped (restarts, for a frame that began at the
         * head meanwhile), the idle clock starts again. */
        if (c->frame_start_ns)
            c->frame_start_ns +=
                now - (c->read_off_ns > c->frame_start_ns ? c->read_off_ns : c->frame_start_ns);
        c->read_off_ns = 0;
        c->last_rx_ns = now;
        bufferevent_enable(c->bev, EV_READ);
    } else {
        c->read_off_ns = now;
        bufferevent_disable(c->bev, EV_READ);
    }
    net_conn_arm(c);
}

static size_t conn_frame_limit(const struct net_conn *c)
{
    const struct net_server_config *cfg = &c->srv->cfg;
    if (!c->authenticated && cfg->pre_auth_max_frame_bytes &&
        cfg->pre_auth_max_frame_bytes < cfg->max_frame_bytes)
        return cfg->pre_auth_max_frame_bytes;
    return cfg->max_frame_bytes;
}

static void conn_too_large(struct net_conn *c, const uint8_t hdr[4], size_t limit)
{
    struct net_server *s = c->srv;
    uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    char msg[128];
    snprintf(msg, sizeof(msg), "frame length exceeds the limit of %zu bytes", limit);
    if (c->authenticated || !s->cfg.pre_auth_max_frame_bytes) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 0, "%s", msg);
        return;
    }
    s->limits.pre_auth_too_large++;
    if (net_ratelim_allow(s, NET_LOG_PRE_AUTH_TOO_LARGE))
        log_conn(LOG_WARN, c->peer, NULL, "a %u-byte frame before Hello (limit %zu); closing", n,
                 limit);
    net_conn_error_close(c, TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, msg);
}

/* Decodes and dispatches the whole frames in the input buffer for up to NET_TURN_NS (one
 * frame at least); when bytes are left, asks for another turn (resume_cb). Headers are
 * judged even while paused, so an oversized frame is refused before it is buffered. */
void net_conn_process(struct net_conn *c)
{
    struct net_server *s = c->srv;
    if (c->in_process || c->dead)
        return;
    c->in_process = true;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int64_t until = 0;
    while (!c->closing) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hdr[4];
        if (avail < sizeof(hdr))
            break;
        evbuffer_copyout(in, hdr, sizeof(hdr));
        size_t limit = conn_frame_limit(c);
        size_t len = 0;
        enum wire_status st = wire_frame_peek(hdr, avail, limit, &len);
        if (st == WIRE_NEED_MORE)
            break;
        if (st == WIRE_ERR_TOO_LARGE) {
            conn_too_large(c, hdr, limit);
            break;
        }
        if (st != WIRE_OK) {
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_FRAME, 0, "empty frame");
            break;
        }
        if (c->output_full)
            break;
        /* Paused: authenticated peers' batches wait, their Pings (small, at the head) do
         * not; before Hello nothing waits (Hello does not touch the tally), unless we are
         * shutting down (no new sessions once accepting has stopped). */
        bool ping_only = s->paused && (c->authenticated || s->accept_stopped);
        if (ping_only && len > NET_PING_MAX_PAYLOAD)
            break;
        int64_t now = net_mono_ns();
        if (!until) {
            until = now + NET_TURN_NS;
        } else if (now >= until) {
            event_active(s->resume_ev, 0, 0);
            break;
        }
        const uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(4 + len));
        const Tally__Frame *f = NULL;
        if (wire_frame_decode(frame + 4, len, &c->arena, (Tally__Frame **)&f) != WIRE_OK) {
            arena_trim(&c->arena, NET_ARENA_KEEP);
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_FRAME, 0,
                          "undecodable frame of %zu bytes", len);
            break;
        }
        if (ping_only && f->msg_case != TALLY__FRAME__MSG_PING) {
            arena_trim(&c->arena, NET_ARENA_KEEP);
            break; /* stays buffered until net_server_resume */
        }
        s->bytes_received += 4 + len;
        int rc = s->cfg.on_frame(s->cfg.arg, c, f);
        /* A large frame's decode memory goes back now, not when the peer leaves. */
        arena_trim(&c->arena, NET_ARENA_KEEP);
        evbuffer_drain(in, 4 + len);
        /* Consuming counts as activity: a peer we did not read from was not idle. */
        c->last_rx_ns = now;
        if (rc < 0)
            break;
    }
    c->in_process = false;
    if (c->closing) {
        conn_drop_input(c);
        return;
    }
    net_conn_account(c);
    net_conn_check_input(c);
    net_conn_track_frame(c);
    net_conn_update_read(c); /* a frame half read under the budget pause may be whole now */
    net_conn_arm(c);
}

void net_conn_check_input(struct net_conn *c)
{
    if (!c->ssl || c->closing)
        return;
    /* Called after each record is decrypted (read_cb), so OpenSSL holds nothing back. */
    bool full = evbuffer_get_length(bufferevent_get_input(c->bev)) >= c->input_cap;
    if (full != c->input_full) {
        c->input_full = full;
        net_conn_update_read(c);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)bev;
    struct net_conn *c = arg;
    c->last_rx_ns = net_mono_ns();
    c->got_bytes = true;
    if (c->ssl)
        c->tls_up = true; /* plaintext only comes out of a finished handshake */
    TALLY_CRASH_POINT("after_read");
    net_conn_process(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    LOOPWATCH_SCOPE();
    struct net_conn *c = arg;
    if (c->dead)
        return;
    if (c->closing) {
        net_conn_try_finish(c);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(bev);
    if (c->output_full && evbuffer_get_length(out) <= c->srv->cfg.max_output_bytes / 2) {
        c->output_full = false;
        net_conn_update_read(c);
        net_conn_process(c); /* frames may already be buffered */
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)bev;
    struct net_conn *c = arg;
    struct net_server *s = c->srv;
    if (c->dead)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        net_tls_connected(c);
        return;
    }
    char why[200];
    /* Connect and close without a byte: a load balancer's probe or a port check, not an
     * attack on the handshake nor worth a warning. */
    if (!c->authenticated && !c->closing && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) &&
        (c->ssl ? !net_tls_handshake_done(c) && net_tls_bytes_in(c) == 0 : !c->got_bytes)) {
        s->limits.tcp_probes++;
        log_conn(LOG_DEBUG, c->peer, NULL, "closed by the peer before sending anything");
        net_conn_kill(c);
        return;
    }
    if (c->ssl && !net_tls_handshake_done(c)) {
        s->limits.tls_handshake_failures++;
        net_tls_error_text(c, what, why, sizeof(why));
        if (net_ratelim_allow(s, NET_LOG_TLS_HANDSHAKE))
            log_conn(LOG_WARN, c->peer, NULL, "TLS handshake failed: %s", why);
        net_conn_kill(c);
        return;
    }
    enum log_level level = c->authenticated ? LOG_INFO : LOG_DEBUG;
    const char *line = NULL;
    why[0] = '\0';
    if (what & BEV_EVENT_EOF) {
        if (!c->closing)
            line = "peer closed the connection";
    } else if (what & BEV_EVENT_TIMEOUT) {
        line = "timed out";
    } else if (what & BEV_EVENT_ERROR) {
        if (c->ssl)
            net_tls_error_text(c, what, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        line = "connection error: ";
        if (c->authenticated)
            level = LOG_WARN;
    }
    /* Lines before Hello are DEBUG; after, within the collector's budget. */
    if (line && (!c->authenticated || net_conn_log_allowed(c)))
        log_conn(level, c->peer, c->name, "%s%s", line, why);
    net_conn_kill(c);
}

void net_conn_accept(struct net_server *s, evutil_socket_t fd, const char *peer)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    SSL *ssl = NULL;
    struct bufferevent *bev = net_tls_bev_new(s, fd, &ssl);
    if (!bev) {
        log_conn(LOG_ERROR, peer, NULL, "cannot set up the connection");
        return;
    }
    struct net_conn *c = xcalloc(1, sizeof(*c));
    c->srv = s;
    c->bev = bev;
    c->ssl = ssl;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->timer = evtimer_new(s->base, net_conn_timer_cb, c);
    arena_init(&c->arena, NET_ARENA_FIRST);
    c->accepted_ns = c->last_rx_ns = net_mono_ns();
    TAILQ_INSERT_TAIL(&s->conns, c, link);
    s->n_conns++;
    TAILQ_INSERT_TAIL(&s->pre_auth, c, pre_link);
    s->n_pre_auth++;
    c->in_pre_auth = true;
    s->accepted++;

    net_conn_set_read_limits(c);
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
    c->reading = true;
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    net_conn_update_read(c); /* not if the input budget is paused */
    /* Who connects is worth INFO only once it says Hello (net_conn_set_authenticated). */
    log_conn(LOG_DEBUG, c->peer, NULL, "connected%s", ssl ? " (TLS)" : "");
    if (!c->dead)
        net_conn_arm(c);
}
