/* TLS on the collector port with libevent's bufferevent_openssl: the bufferevent of an
 * accepted socket, its read limits, the handshake's outcome and the peer's certificate
 * pin, and a close that flushes the ciphertext and close_notify. The SSL_CTX (protocol,
 * CA, whether client certificates are required) is the caller's (tls/). */
#include "net/internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "core/log.h"
#include "tls/tls.h"

/* The socket-based openssl bufferevent, and how libevent 2.1.12 reads with it: each
 * readable event decrypts one TLS record (16 KiB), whatever max_single_read says
 * (consider_reading stops once SSL_pending is 0), which is still four times the 4 KiB a
 * plain socket bufferevent reads per call (EVBUFFER_MAX_READ). A read high-watermark is
 * not safe on it: when the watermark stops it in the middle of a record, the rest stays
 * inside OpenSSL and, re-enabled, libevent only waits for the socket to become readable
 * again (libevent issue #854), which a collector waiting for its acks never makes it. So
 * TLS connections have no read watermark: conn.c stops reading between records, once
 * input_cap bytes are buffered (net_conn_check_input). A filter over a socket
 * bufferevent would not stall, but takes four 4 KiB reads per record and copies once
 * more. */
struct bufferevent *net_tls_bev_new(struct net_server *s, evutil_socket_t fd, SSL **sslp)
{
    *sslp = NULL;
    if (!s->cfg.tls) {
        struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev)
            evutil_closesocket(fd);
        return bev;
    }
    SSL *ssl = SSL_new(s->cfg.tls);
    if (!ssl) {
        evutil_closesocket(fd);
        return NULL;
    }
    /* OpenSSL 3 makes a TCP close without close_notify a fatal protocol error, which
     * libevent 2.1 (written for 1.1's SSL_ERROR_SYSCALL) reports as BEV_EVENT_ERROR. As
     * zero-return it becomes a dirty shutdown, and an EOF with allow_dirty_shutdown. */
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* 2,000 idle connections need not hold 2 x 17 KiB of record buffers each. */
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    /* Owns ssl (freed on failure too) and, on success, fd. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return NULL;
    }
    /* Frames carry their length: a peer that drops TCP without close_notify cannot make
     * us take a truncated frame, so report it as the EOF it is rather than an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    *sslp = ssl;
    return bev;
}

void net_conn_set_read_limits(struct net_conn *c)
{
    const struct net_server_config *cfg = &c->srv->cfg;
    /* Stop reading once a whole maximal frame (plus slack) is buffered. */
    size_t cap = cfg->max_frame_bytes + 4 + NET_READ_CHUNK;
    if (!c->authenticated && cfg->pre_auth_max_frame_bytes) {
        /* Before Hello a peer gets a few KiB, whatever it sends: the 8 MiB frame of unknown
         * fields that cost 300 MiB to decode is refused from its header. */
        size_t pre = (size_t)cfg->pre_auth_max_frame_bytes + 4;
        if (pre < NET_PRE_AUTH_READ_MIN)
            pre = NET_PRE_AUTH_READ_MIN;
        if (pre < cap)
            cap = pre;
    }
    c->input_cap = cap;
    if (c->ssl)
        return; /* no watermark (see above); at most one record beyond cap */
    bufferevent_set_max_single_read(c->bev, NET_READ_CHUNK);
    bufferevent_setwatermark(c->bev, EV_READ, 0, cap);
}

/* A flag, not SSL_is_init_finished: OpenSSL puts a connection back "in init" after a
 * fatal error, which would make a broken session look like a failed handshake. */
bool net_tls_handshake_done(const struct net_conn *c)
{
    return c->ssl && c->tls_up;
}

uint64_t net_tls_bytes_in(const struct net_conn *c)
{
    /* libevent gives the SSL a socket BIO for the fd; OpenSSL counts what it reads. */
    BIO *rbio = c->ssl ? SSL_get_rbio(c->ssl) : NULL;
    return rbio ? BIO_number_read(rbio) : 0;
}

void net_tls_connected(struct net_conn *c)
{
    c->tls_up = true;
    log_conn(LOG_DEBUG, c->peer, NULL, "TLS handshake done: %s, %s", SSL_get_version(c->ssl),
             SSL_get_cipher_name(c->ssl));
}

void net_tls_error_text(struct net_conn *c, short what, char *out, size_t n)
{
    /* libevent keeps the SSL_get_error code and then the error queue; the oldest entry
     * with a reason string says what went wrong first. */
    const char *reason = NULL;
    unsigned long e;
    while ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r)
            reason = r;
    }
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (v != X509_V_OK)
        snprintf(out, n, "%s (%s)", reason ? reason : "certificate verify failed",
                 X509_verify_cert_error_string(v));
    else if (reason)
        snprintf(out, n, "%s", reason);
    else if (what & BEV_EVENT_EOF)
        snprintf(out, n, "peer closed the connection");
    else
        snprintf(out, n, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

bool net_tls_flushed(struct net_conn *c)
{
    /* The socket bufferevent writes through SSL straight to the socket: our output empty
     * means the kernel has it. Add close_notify (best effort: if the peer's window is
     * full it is skipped). */
    if (c->tls_up && !c->tls_shutdown_sent) {
        c->tls_shutdown_sent = true;
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    return true;
}

bool net_conn_peer_pin(const struct net_conn *c, uint8_t out[32])
{
    if (!c->ssl || !c->tls_up)
        return false;
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    /* X509_V_OK is also what no certificate at all leaves: look at both. */
    if (!cert || SSL_get_verify_result(c->ssl) != X509_V_OK)
        return false;
    return tls_pin_of_cert(cert, out) == 0;
}
