/* Integration-test support, part three: a raw TLS client of the collector port (OpenSSL on a
 * non-blocking socket, every wait bounded), for the tests that must send over TLS what
 * tally-push never would: frames built by hand, sessions that stop halfway, a frame one
 * record per byte. Frames are encoded and decoded by consult.c's ts_wire_* helpers. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TLS_WAIT_MS 10000
#define FRAME_MAX (64u * 1024 * 1024)

/* Waits for what OpenSSL asked for (err: SSL_get_error's answer). 1 ready, 0 the session
 * cannot go on (another error), -1 past the deadline. */
static int tls_wait(struct ts_tls *t, int err, int64_t deadline)
{
    short ev;
    if (err == SSL_ERROR_WANT_READ)
        ev = POLLIN;
    else if (err == SSL_ERROR_WANT_WRITE)
        ev = POLLOUT;
    else
        return 0;
    for (;;) {
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pfd = {t->fd, ev, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return 0;
        if (r > 0)
            return 1; /* POLLERR/POLLHUP too: the next call reports it */
    }
}

static void tls_errors(const char *what)
{
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "support: TLS %s: %s\n", what, buf);
    }
}

int ts_tls_open(struct ts_tls *t, uint16_t port, const char *cert, const char *key, const char *ca)
{
    memset(t, 0, sizeof *t);
    t->fd = ts_connect(port, 5000);
    if (t->fd < 0)
        return -1;
    int flags = fcntl(t->fd, F_GETFL);
    fcntl(t->fd, F_SETFL, flags | O_NONBLOCK);
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx)
        goto fail;
    if (cert && (SSL_CTX_use_certificate_file(t->ctx, cert, SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1))
        goto fail;
    if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1)
        goto fail;
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    t->ssl = SSL_new(t->ctx);
    if (!t->ssl)
        goto fail;
    /* A TCP close without close_notify is the end of the session, not an error. */
    SSL_set_options(t->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_fd(t->ssl, t->fd);
    SSL_set1_host(t->ssl, "127.0.0.1");
    int64_t deadline = ts_now_ms() + ts_scale(TLS_WAIT_MS);
    for (;;) {
        int r = SSL_connect(t->ssl);
        if (r == 1)
            return 0;
        int w = tls_wait(t, SSL_get_error(t->ssl, r), deadline);
        if (w == 1)
            continue;
        if (w < 0)
            fprintf(stderr, "support: TLS handshake not done within %d ms\n",
                    ts_scale(TLS_WAIT_MS));
        goto fail;
    }
fail:
    tls_errors("open");
    ts_tls_close(t);
    return -1;
}

long ts_tls_send_some(struct ts_tls *t, const void *buf, size_t len)
{
    ERR_clear_error();
    int n = SSL_write(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

int ts_tls_send_all(struct ts_tls *t, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int64_t deadline = ts_now_ms() + ts_scale(TLS_WAIT_MS);
    while (len) {
        ERR_clear_error();
        int n = SSL_write(t->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        /* Retried with the same bytes, as OpenSSL requires. */
        if (tls_wait(t, SSL_get_error(t->ssl, n), deadline) != 1)
            return -1;
    }
    return 0;
}

int ts_tls_hello(struct ts_tls *t, const char *collector, uint32_t version)
{
    uint8_t *buf;
    size_t n = ts_wire_hello_bytes(&buf, collector, version);
    int rc = ts_tls_send_all(t, buf, n);
    free(buf);
    return rc;
}

int ts_tls_batch(struct ts_tls *t, uint64_t seq, const uint64_t *ballots, const uint32_t *projects,
                 size_t n)
{
    uint8_t *buf;
    size_t len = ts_wire_batch_bytes(&buf, seq, ballots, projects, n);
    int rc = ts_tls_send_all(t, buf, len);
    free(buf);
    return rc;
}

int ts_tls_recv(struct ts_tls *t, struct ts_frame *f, int timeout_ms)
{
    if (!t->ssl)
        return 0;
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        size_t need = 4;
        if (t->in_len >= 4) {
            uint32_t len;
            memcpy(&len, t->in, 4);
            len = ntohl(len);
            if (len > FRAME_MAX) {
                fprintf(stderr, "support: server sent a frame of %u bytes\n", len);
                return -1;
            }
            need = 4 + (size_t)len;
            if (t->in_len >= need) {
                int r = ts_wire_decode(t->in + 4, len, f);
                memmove(t->in, t->in + need, t->in_len - need);
                t->in_len -= need;
                return r;
            }
        }
        if (t->in_cap < need) {
            size_t cap = need < 4096 ? 4096 : need;
            uint8_t *in = realloc(t->in, cap);
            if (!in)
                abort();
            t->in = in;
            t->in_cap = cap;
        }
        /* What OpenSSL has already decrypted first: the socket is waited for only once
         * SSL_read asks for it. */
        ERR_clear_error();
        int n = SSL_read(t->ssl, t->in + t->in_len, (int)(need - t->in_len));
        if (n > 0) {
            t->in_len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        int w = tls_wait(t, e, deadline);
        if (w == 1)
            continue;
        if (w < 0)
            return -1;
        if (e == SSL_ERROR_SSL)
            tls_errors("session ended"); /* e.g. the server's alert on our certificate */
        ERR_clear_error();
        return 0; /* close_notify, EOF, reset */
    }
}

void ts_tls_close(struct ts_tls *t)
{
    if (t->ssl)
        SSL_free(t->ssl);
    if (t->ctx)
        SSL_CTX_free(t->ctx);
    if (t->fd >= 0)
        close(t->fd);
    free(t->in);
    memset(t, 0, sizeof *t);
    t->fd = -1;
}
