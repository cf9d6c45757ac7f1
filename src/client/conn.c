/* The collector's connection to tallyd: the connect (dial.c picks the server), the TLS
 * handshake, Hello, then the bytes in and out of the non-blocking socket (plain, or through
 * tlsconn.c), the keep-alive Ping, the connect, Welcome and stall deadlines, and the one way
 * a session or an attempt ends. Owns the socket and the connection state machine; what the
 * frames from tallyd mean is session.c's, when to give up and back off is dial.c's. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/internal.h"
#include "core/xalloc.h"
#include "wire/wire.h"

/* A session that lived this long was healthy: the next failure starts backoff over. */
#define SESSION_HEALTHY_MS 5000
#define READ_CHUNK 65536u

void client_conn_close(struct tally_client *c)
{
    client_tls_conn_close(&c->tc);
    c->wbuf_len = 0;
    c->rd_want = c->wr_want = 0;
    c->ping_len = c->ping_off = 0;
    c->ping_owed = false;
    c->idle_timeout_ms = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CONN_IDLE;
    c->in_len = 0;
    c->send_off = 0;
    c->hello_off = 0;
    free(c->tail);
    c->tail = NULL;
    c->tail_len = c->tail_off = 0;
    arena_reset(&c->arena);
}

/* Rounds over every server of certificate failures before giving up (TALLY_CLIENT_ERR_AUTH). */
#define CLIENT_CERT_ROUNDS 3

/* The one way a session or an attempt ends for a transient reason: log, close, and let the
 * reconnect policy say which server comes next, and when. move_on: the server is away or
 * stopping; false: the reason is this collector's session, the server is fine. */
static void conn_end(struct tally_client *c, bool move_on, const char *fmt, va_list ap)
{
    char why[384];
    vsnprintf(why, sizeof(why), fmt, ap);
    int64_t now = client_now_ms();
    bool was_up = c->state == CONN_READY;
    if (was_up && now - c->session_start >= SESSION_HEALTHY_MS)
        client_dial_progress(&c->dial);
    bool first = c->dial.failures == 0;
    /* Only an unbroken run of certificate failures means the TLS settings are wrong. */
    c->verify_streak = c->tc.verify_failed ? c->verify_streak + 1 : 0;
    c->cert_streak = c->tc.verify_failed || c->tc.refused_cert ? c->cert_streak + 1 : 0;
    client_conn_close(c);
    int delay = client_dial_failed(&c->dial, move_on);
    c->retry_at = now + delay;
    client_str_copy(c->last_error, sizeof(c->last_error), why);
    enum tally_client_log_level level =
        first || was_up ? TALLY_CLIENT_LOG_WARN : TALLY_CLIENT_LOG_DEBUG;
    const struct client_dial *d = &c->dial;
    if (d->n == 1)
        client_log(c, level, "%s; retrying in %d ms", why, delay);
    else if (delay == 0)
        client_log(c, level, "%s; trying server %zu of %zu (%s) now", why, d->cur + 1, d->n,
                   client_dial_name(d));
    else
        client_log(c, level, "%s; %s server %zu of %zu (%s) in %d ms", why,
                   move_on ? "no server answered: trying" : "retrying", d->cur + 1, d->n,
                   client_dial_name(d), delay);
    if (c->verify_streak >= d->n) {
        char all[512];
        snprintf(all, sizeof(all),
                 "tls: the certificate of %s failed verification on every attempt (check "
                 "--tls-ca and --tls-server-name); last: %s",
                 d->n == 1 ? "the server" : "every server", why);
        client_str_copy(c->last_error, sizeof(c->last_error), all);
        if (c->verify_streak == d->n)
            client_log(c, TALLY_CLIENT_LOG_WARN, "%s", all);
    }
    /* Three whole rounds of certificate failures (ours refused, or the server's not
     * trusted) will not mend by waiting: the TLS settings of one side are wrong. Stop, as for
     * ERROR_AUTH, with the spool kept. */
    if (c->cert_streak >= CLIENT_CERT_ROUNDS * d->n)
        (void)client_fatal(c, TALLY_CLIENT_ERR_AUTH,
                           "tls: %u attempts in a row failed on a certificate (%s); giving up: "
                           "fix the certificates or --tls-ca, the spool is kept",
                           c->cert_streak, why);
}

void client_conn_fail(struct tally_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_end(c, true, fmt, ap);
    va_end(ap);
}

/* Like client_conn_fail, for a reason that concerns this collector's session and not the server's
 * health: the same server is tried again after the back-off. */
void client_conn_retry(struct tally_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_end(c, false, fmt, ap);
    va_end(ap);
}

/* ---- connecting ---- */

static void hello_build(struct tally_client *c)
{
    Tally__Hello h = TALLY__HELLO__INIT;
    h.collector_id = c->collector_id;
    h.consultation_id = c->consultation_id;
    h.protocol_version = TALLY_PROTOCOL_VERSION;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_HELLO;
    f.hello = &h;
    free(c->hello);
    c->hello = xmalloc(wire_frame_size(&f));
    c->hello_len = wire_frame_encode(&f, c->hello);
    c->hello_off = 0;
}

/* The connection is ready for the protocol (TLS done, if any): say Hello. */
static void conn_hello(struct tally_client *c)
{
    hello_build(c);
    c->state = CONN_HELLO;
    c->deadline = client_now_ms() + c->connect_timeout_ms;
}

static void conn_established(struct tally_client *c)
{
    int one = 1;
    /* Acks are small and latency-bound; Nagle would hold them behind batches. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* While waiting for a checkpoint nothing flows: let the kernel notice a dead peer. */
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_KEEPIDLE
    int idle = 30, intvl = 10, cnt = 3;
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
#endif
    c->in_len = 0;
    c->deadline = client_now_ms() + c->connect_timeout_ms;
    c->last_rx = c->last_tx = client_now_ms();
    if (c->tls) {
        char why[384];
        const char *host = c->dial.servers[c->dial.cur].host;
        if (client_tls_conn_start(c->tls, &c->tc, c->fd, host, c->dial.peer, why, sizeof(why)) <
            0) {
            client_conn_fail(c, "%s", why);
            return;
        }
        c->state = CONN_TLS;
        return;
    }
    conn_hello(c);
}

/* Where dial.c left things: a socket connected, connecting, or nothing and a reason. */
static void conn_dialled(struct tally_client *c, enum client_dial_status st, int fd,
                         const char *why)
{
    c->fd = fd;
    switch (st) {
    case CLIENT_DIAL_CONNECTED:
        conn_established(c);
        return;
    case CLIENT_DIAL_PENDING:
        c->state = CONN_CONNECTING;
        c->deadline = client_now_ms() + c->connect_timeout_ms;
        return;
    case CLIENT_DIAL_FAILED:
        c->state = CONN_IDLE;
        client_conn_fail(c, "%s", why);
        return;
    }
}

/* Starts a connect to the current server. */
static void conn_start(struct tally_client *c)
{
    char why[320];
    int fd;
    enum client_dial_status st = client_dial_start(&c->dial, &fd, why, sizeof(why));
    conn_dialled(c, st, fd, why);
}

/* The pending connect finished (err == 0) or failed: go on, or try the next address. */
static void conn_connect_done(struct tally_client *c, int err, const char *what)
{
    char why[320];
    int fd = c->fd;
    c->fd = -1;
    c->state = CONN_IDLE;
    enum client_dial_status st = client_dial_finish(&c->dial, err, what, &fd, why, sizeof(why));
    conn_dialled(c, st, fd, why);
}

/* Reads up to len bytes: the count, 0 if none is there yet, or -1 once the connection ended
 * (client_conn_fail has run). */
static ssize_t conn_recv(struct tally_client *c, void *buf, size_t len)
{
    if (c->tls) {
        char why[384];
        size_t n;
        switch (client_tls_read(&c->tc, buf, len, &n, why, sizeof(why))) {
        case CLIENT_TLS_DONE:
            c->rd_want = 0;
            return (ssize_t)n;
        case CLIENT_TLS_WANT:
            c->rd_want = c->tc.want;
            return 0;
        case CLIENT_TLS_CLOSED:
        case CLIENT_TLS_ERROR:
            client_conn_fail(c, "%s", why);
            return -1;
        }
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            client_conn_fail(c, "connection to %s %s", c->dial.peer,
                             n == 0 ? "closed by the server" : strerror(errno));
            return -1;
        }
        return n;
    }
}

/* Writes up to len bytes of p: the count taken, 0 if the socket takes nothing now, or -1 once
 * the connection ended (client_conn_fail has run). With TLS the bytes are copied to wbuf and taken
 * at once; conn_flush writes them. */
static ssize_t conn_send(struct tally_client *c, const uint8_t *p, size_t len)
{
    if (c->tls) {
        if (len > TLS_WBUF_BYTES)
            len = TLS_WBUF_BYTES;
        memcpy(c->wbuf, p, len);
        c->wbuf_len = len;
        return (ssize_t)len;
    }
    for (;;) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            client_conn_fail(c, "connection to %s: %s", c->dial.peer, strerror(errno));
            return -1;
        }
        c->last_tx = client_now_ms();
        return n;
    }
}

/* TLS: writes wbuf. Returns 1 once it is written, 0 if it must wait, -1 once the connection
 * ended. */
static int conn_flush(struct tally_client *c)
{
    char why[384];
    size_t n;
    switch (client_tls_write(&c->tc, c->wbuf, c->wbuf_len, &n, why, sizeof(why))) {
    case CLIENT_TLS_DONE:
        c->wbuf_len = 0;
        c->wr_want = 0;
        c->last_tx = client_now_ms();
        return 1;
    case CLIENT_TLS_WANT:
        c->wr_want = c->tc.want;
        return 0;
    case CLIENT_TLS_CLOSED:
    case CLIENT_TLS_ERROR:
        client_conn_fail(c, "%s", why);
        return -1;
    }
    return -1;
}

/* Reads whatever is available. Returns 1 if anything happened, 0 if not, or a fatal status. */
static int conn_read(struct tally_client *c)
{
    int progress = 0;
    while (c->state >= CONN_HELLO) {
        if (c->in_cap - c->in_len < READ_CHUNK) {
            c->in_cap = c->in_len + READ_CHUNK;
            c->in = xreallocarray(c->in, c->in_cap, 1);
        }
        ssize_t n = conn_recv(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0)
            break;
        progress = 1;
        if (n < 0)
            break;
        c->in_len += (size_t)n;
        c->last_rx = client_now_ms();
        int rc = client_session_process(c);
        if (rc < 0)
            return rc;
    }
    return progress;
}

static bool can_send_next(const struct tally_client *c)
{
    return c->send_seq < c->spool.next_seq && c->send_seq - 1 - c->acked_seq < c->window;
}

static bool acks_owed(const struct tally_client *c)
{
    return c->send_off > 0 || c->tail || c->send_seq - 1 > c->acked_seq;
}

/* An answer is owed by tallyd: an ack, or the answer to a Ping. */
static bool answer_owed(const struct tally_client *c)
{
    return acks_owed(c) || c->ping_owed;
}

/* The stream is between frames: a Ping may go in. */
static bool ping_can_start(const struct tally_client *c)
{
    return c->state == CONN_READY && c->idle_timeout_ms && c->ping_off == c->ping_len &&
           c->send_off == 0 && !c->tail && c->wbuf_len == 0;
}

/* When the next Ping is due (a third of tallyd's idle timeout after the last byte sent). */
static int64_t ping_due(const struct tally_client *c)
{
    uint32_t every = c->idle_timeout_ms / 3;
    return c->last_tx + (every ? every : 1);
}

static void ping_build(struct tally_client *c)
{
    Tally__Ping pg = TALLY__PING__INIT;
    pg.nonce = ++c->ping_nonce;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_PING;
    f.ping = &pg;
    assert(wire_frame_size(&f) <= sizeof(c->ping));
    c->ping_len = wire_frame_encode(&f, c->ping);
    c->ping_off = 0;
}

/* Writes as much as the socket takes. Returns 1 if anything was written, 0 if not. */
static int conn_write(struct tally_client *c)
{
    int progress = 0;
    for (;;) {
        if (c->wbuf_len) {
            int rc = conn_flush(c);
            if (rc <= 0)
                break;
            progress = 1;
            continue;
        }
        const uint8_t *p;
        size_t len;
        bool starts = false; /* p is the start of a frame that asks for an answer */
        if (c->state == CONN_HELLO) {
            if (c->hello_off == c->hello_len)
                break;
            p = c->hello + c->hello_off;
            len = c->hello_len - c->hello_off;
        } else if (c->state == CONN_READY && c->tail) {
            p = c->tail + c->tail_off;
            len = c->tail_len - c->tail_off;
        } else if (c->state == CONN_READY && c->send_off == 0 && c->ping_off < c->ping_len) {
            p = c->ping + c->ping_off;
            len = c->ping_len - c->ping_off;
            starts = c->ping_off == 0;
        } else if (c->state == CONN_READY) {
            if (c->send_off == 0 && !can_send_next(c))
                break;
            const struct client_spool_batch *b = client_spool_get(&c->spool, c->send_seq);
            p = b->frame + c->send_off;
            len = b->frame_len - c->send_off;
            starts = c->send_off == 0;
        } else {
            break;
        }
        /* The stall timer runs from when an answer is first owed, not from the last byte
         * received: after a long quiet spell, the first batch has its full stall timeout. */
        if (starts && !answer_owed(c))
            c->last_rx = client_now_ms();
        ssize_t n = conn_send(c, p, len);
        if (n <= 0)
            break;
        progress = 1;
        if (c->state == CONN_HELLO) {
            c->hello_off += (size_t)n;
        } else if (c->tail) {
            c->tail_off += (size_t)n;
            if (c->tail_off == c->tail_len) {
                free(c->tail);
                c->tail = NULL;
                c->tail_len = c->tail_off = 0;
            }
        } else if (c->ping_off < c->ping_len) {
            c->ping_off += (size_t)n;
            c->ping_owed |= c->ping_off == c->ping_len;
        } else {
            c->send_off += (size_t)n;
            if (c->send_off == client_spool_get(&c->spool, c->send_seq)->frame_len) {
                c->send_seq++;
                c->send_off = 0;
            }
        }
    }
    return progress;
}

/* Something waits to be written. */
bool client_conn_wants_write(const struct tally_client *c)
{
    if (c->wbuf_len)
        return true;
    if (c->state == CONN_HELLO)
        return c->hello_off < c->hello_len;
    return c->state == CONN_READY &&
           (c->tail || c->send_off > 0 || c->ping_off < c->ping_len || can_send_next(c));
}

/* When the current state times out, or INT64_MAX. */
int64_t client_conn_deadline(const struct tally_client *c)
{
    switch (c->state) {
    case CONN_IDLE:
        return c->retry_at;
    case CONN_CONNECTING:
    case CONN_TLS:
    case CONN_HELLO:
        return c->deadline;
    case CONN_READY: {
        int64_t d = answer_owed(c) ? c->last_rx + c->stall_timeout_ms : INT64_MAX;
        if (ping_can_start(c) && ping_due(c) < d)
            d = ping_due(c);
        return d;
    }
    }
    return INT64_MAX;
}

/* The TLS handshake goes on. Returns 1 if it ended (either way), 0 if it waits. */
static int conn_tls_step(struct tally_client *c, int64_t now)
{
    char why[384];
    switch (client_tls_handshake(&c->tc, why, sizeof(why))) {
    case CLIENT_TLS_DONE:
        c->rd_want = c->wr_want = 0;
        conn_hello(c);
        return 1;
    case CLIENT_TLS_WANT:
        if (now < c->deadline)
            return 0;
        client_conn_fail(c, "tls: no handshake with %s within %d ms", c->dial.peer,
                         c->connect_timeout_ms);
        return 1;
    case CLIENT_TLS_CLOSED:
    case CLIENT_TLS_ERROR:
        client_conn_fail(c, "%s", why);
        return 1;
    }
    return 1;
}

/* One round of everything that can be done without waiting. Returns 1 if anything happened,
 * 0 if nothing could, or a fatal status. */
int client_step(struct tally_client *c)
{
    int64_t now = client_now_ms();
    if (c->state == CONN_IDLE) {
        if (now < c->retry_at)
            return 0;
        conn_start(c);
        return 1;
    }
    if (c->state == CONN_CONNECTING) {
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        if (poll(&p, 1, 0) > 0) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
            else if (err == 0 && (p.revents & (POLLERR | POLLHUP)))
                err = ECONNREFUSED;
            conn_connect_done(c, err, NULL);
            return 1;
        }
        if (now >= c->deadline) {
            conn_connect_done(c, ETIMEDOUT, "connect timed out");
            return 1;
        }
        return 0;
    }
    if (c->state == CONN_TLS)
        return conn_tls_step(c, now);
    int progress = conn_read(c);
    if (progress < 0)
        return progress;
    now = client_now_ms();
    if (ping_can_start(c) && now >= ping_due(c))
        ping_build(c);
    if (c->state >= CONN_HELLO)
        progress |= conn_write(c);
    now = client_now_ms();
    if (c->state == CONN_HELLO && now >= c->deadline) {
        client_conn_fail(c, "no Welcome from %s within %d ms", c->dial.peer, c->connect_timeout_ms);
        progress = 1;
    } else if (c->state == CONN_READY && answer_owed(c) &&
               now - c->last_rx >= c->stall_timeout_ms) {
        client_conn_fail(c, "no %s from %s for %d ms", acks_owed(c) ? "ack" : "answer to Ping",
                         c->dial.peer, c->stall_timeout_ms);
        progress = 1;
    }
    return progress;
}
