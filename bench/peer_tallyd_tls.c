/* The tallyd_tls peer's TLS: the private CA, tallyd's server certificate and one client
 * certificate per collector made with src/tls in the run's scratch directory, the check
 * that each is pinned to its collector's id in tallyd's database, and the collectors' side
 * of mutual TLS 1.3 (OpenSSL client). Also the connection the collector threads read and
 * write through, plain TCP or TLS alike (struct td_conn). Owns the client SSL_CTX and
 * each connection's SSL. */
#include "peer_tallyd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "tls/tls.h"

/* The newest OpenSSL error of this thread as text ("" when none), and the queue cleared. */
static void ssl_reason(char *out, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, out, len);
    else
        snprintf(out, len, "no OpenSSL error queued");
    ERR_clear_error();
}

int td_tls_setup(struct td_tls *tls, const struct bench_ctx *c, char *err, size_t err_len)
{
    const struct workload *w = c->w;
    memset(tls, 0, sizeof(*tls));
    snprintf(tls->dir, sizeof(tls->dir), "%s/tls", c->workdir);
    snprintf(tls->cert, sizeof(tls->cert), "%s/server.crt", tls->dir);
    snprintf(tls->key, sizeof(tls->key), "%s/server.key", tls->dir);
    snprintf(tls->ca, sizeof(tls->ca), "%s/ca.crt", tls->dir);
    char why[512];
    if (tls_ca_init(tls->dir, NULL, 0, why, sizeof(why)) != 0) {
        snprintf(err, err_len, "tls_ca_init %s: %s", tls->dir, why);
        return -1;
    }
    tls->pin = calloc(w->n_collectors, sizeof(*tls->pin));
    if (!tls->pin)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        if (tls_ca_issue(tls->dir, w->collectors[k].id, tls->pin[k], why, sizeof(why)) != 0) {
            snprintf(err, err_len, "tls_ca_issue %s: %s", w->collectors[k].id, why);
            goto fail;
        }
    }
    tls->ctx = SSL_CTX_new(TLS_client_method());
    if (!tls->ctx || !SSL_CTX_set_min_proto_version(tls->ctx, TLS1_3_VERSION) ||
        SSL_CTX_load_verify_locations(tls->ctx, tls->ca, NULL) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, err_len, "client context (CA %s): %s", tls->ca, why);
        goto fail;
    }
    SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_PEER, NULL);
    /* Big writes: a whole frame per SSL_write, which may take part of it and be called again
     * with the rest (from another address: the remainder of the same frame). */
    SSL_CTX_set_mode(tls->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(tls->ctx, SSL_SESS_CACHE_OFF);
    return 0;
fail:
    td_tls_free(tls);
    return -1;
}

void td_tls_free(struct td_tls *tls)
{
    SSL_CTX_free(tls->ctx);
    free(tls->pin);
    tls->ctx = NULL;
    tls->pin = NULL;
}

int td_tls_check_pins(const struct td_tls *tls, const struct workload *w, const char *conninfo,
                      char *err, size_t err_len)
{
    PGconn *db = PQconnectdb(conninfo);
    PGresult *res = NULL;
    int rc = -1;
    if (PQstatus(db) != CONNECTION_OK) {
        snprintf(err, err_len, "connecting: %s", PQerrorMessage(db));
        goto out;
    }
    for (size_t k = 0; k < w->n_collectors; k++) {
        const char *params[1] = {w->collectors[k].id};
        PQclear(res);
        res = PQexecParams(db,
                           "SELECT coalesce(encode(cert_pin, 'hex'), '') FROM collectors"
                           " WHERE id = $1",
                           1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            snprintf(err, err_len, "reading %s's pin (collectors.cert_pin, migration 6): %s",
                     w->collectors[k].id,
                     PQresultStatus(res) == PGRES_TUPLES_OK ? "no such collector"
                                                            : PQresultErrorMessage(res));
            goto out;
        }
        if (strcmp(PQgetvalue(res, 0, 0), tls->pin[k]) != 0) {
            snprintf(err, err_len,
                     "collector %s: pinned '%s' after tallyctl add-collector --cert, its "
                     "certificate's pin is %s",
                     w->collectors[k].id, PQgetvalue(res, 0, 0), tls->pin[k]);
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(res);
    PQfinish(db);
    return rc;
}

/* Waits for fd to be readable (want_read) or writable, up to the deadline; 0 or -1. */
static int wait_fd(int fd, bool want_read, double deadline)
{
    while (!bench_stop && now_s() < deadline) {
        struct pollfd p = {fd, want_read ? POLLIN : POLLOUT, 0};
        int pr = poll(&p, 1, 100);
        if (pr > 0)
            return 0;
        if (pr < 0 && errno != EINTR)
            return -1;
    }
    return -1;
}

int td_conn_open(struct td_conn *cn, const struct td_run *run, size_t k, char *err, size_t err_len)
{
    cn->ssl = NULL;
    cn->fatal = false;
    cn->fd = tcp_connect(run->port);
    if (cn->fd < 0) {
        snprintf(err, err_len, "cannot connect to tallyd on port %d: %s", run->port,
                 strerror(errno));
        return -1;
    }
    fcntl(cn->fd, F_SETFL, fcntl(cn->fd, F_GETFL) | O_NONBLOCK);
    if (!run->tls)
        return 0;

    const struct td_tls *tls = run->tls;
    const char *id = run->c->w->collectors[k].id;
    char crt[1200], key[1200], why[256];
    snprintf(crt, sizeof(crt), "%s/%s.crt", tls->dir, id);
    snprintf(key, sizeof(key), "%s/%s.key", tls->dir, id);
    cn->ssl = SSL_new(tls->ctx);
    /* The collector's own certificate and key; tallyd is verified against ca.crt and must
     * be 127.0.0.1 (an IP subjectAltName of server.crt). */
    if (!cn->ssl || SSL_use_certificate_chain_file(cn->ssl, crt) != 1 ||
        SSL_use_PrivateKey_file(cn->ssl, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_check_private_key(cn->ssl) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(cn->ssl), "127.0.0.1") != 1 ||
        SSL_set_fd(cn->ssl, cn->fd) != 1) {
        cn->fatal = true;
        ssl_reason(why, sizeof(why));
        snprintf(err, err_len, "TLS client for %s (%s): %s", id, crt, why);
        return -1;
    }
    for (;;) {
        int rc = SSL_connect(cn->ssl);
        if (rc == 1)
            break;
        int e = SSL_get_error(cn->ssl, rc);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
            wait_fd(cn->fd, e == SSL_ERROR_WANT_READ, run->deadline) == 0)
            continue;
        cn->fatal = true;
        long v = SSL_get_verify_result(cn->ssl);
        if (v != X509_V_OK)
            snprintf(why, sizeof(why), "tallyd's certificate: %s",
                     X509_verify_cert_error_string(v));
        else if (e == SSL_ERROR_SSL)
            ssl_reason(why, sizeof(why));
        else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            snprintf(why, sizeof(why), "timed out");
        else
            snprintf(why, sizeof(why), "%s", errno ? strerror(errno) : "connection closed");
        snprintf(err, err_len, "TLS handshake with tallyd: %s", why);
        return -1;
    }
    return 0;
}

void td_conn_describe(const struct td_conn *cn, char *out, size_t len)
{
    if (!cn->ssl)
        snprintf(out, len, "tcp");
    else
        snprintf(out, len, "%s %s", SSL_get_version(cn->ssl), SSL_get_cipher_name(cn->ssl));
}

/* After SSL_read/SSL_write returned rc <= 0: 0 when it would block, else -1 with err. */
static ssize_t ssl_io_error(struct td_conn *cn, int rc, const char *what, char *err, size_t len)
{
    int e = SSL_get_error(cn->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    cn->fatal = true;
    char why[256];
    if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(why, sizeof(why), "tallyd closed the connection (close_notify)");
    else if (e == SSL_ERROR_SYSCALL)
        snprintf(why, sizeof(why), "%s", errno ? strerror(errno) : "tallyd closed the connection");
    else
        ssl_reason(why, sizeof(why));
    snprintf(err, len, "%s: %s", what, why);
    return -1;
}

ssize_t td_conn_send(struct td_conn *cn, const void *buf, size_t n, char *err, size_t err_len)
{
    if (n == 0)
        return 0;
    if (cn->ssl) {
        ERR_clear_error();
        int rc = SSL_write(cn->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
        return rc > 0 ? rc : ssl_io_error(cn, rc, "SSL_write", err, err_len);
    }
    for (;;) {
        ssize_t w = send(cn->fd, buf, n, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        snprintf(err, err_len, "send: %s", strerror(errno));
        return -1;
    }
}

ssize_t td_conn_recv(struct td_conn *cn, void *buf, size_t n, char *err, size_t err_len)
{
    if (cn->ssl) {
        ERR_clear_error();
        int rc = SSL_read(cn->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
        return rc > 0 ? rc : ssl_io_error(cn, rc, "SSL_read", err, err_len);
    }
    for (;;) {
        ssize_t r = recv(cn->fd, buf, n, 0);
        if (r > 0)
            return r;
        if (r == 0) {
            snprintf(err, err_len, "tallyd closed the connection");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        snprintf(err, err_len, "recv: %s", strerror(errno));
        return -1;
    }
}

bool td_conn_pending(const struct td_conn *cn)
{
    return cn->ssl && SSL_pending(cn->ssl) > 0;
}

void td_conn_close(struct td_conn *cn)
{
    if (cn->ssl) {
        if (!cn->fatal) /* close_notify, best effort: non-blocking, its answer not awaited */
            SSL_shutdown(cn->ssl);
        SSL_free(cn->ssl);
        cn->ssl = NULL;
    }
    if (cn->fd >= 0)
        close(cn->fd);
    cn->fd = -1;
}
