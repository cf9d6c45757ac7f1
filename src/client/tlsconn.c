/* libtally's TLS on OpenSSL: the client context (certificate, key and CA from the config,
 * TLS 1.3 minimum, the server verified against the CA and the name dialled) and each
 * connection's handshake, reads and writes on the session's non-blocking socket. Nothing here
 * knows of frames, servers lists or retries; conn.c calls this where it would call
 * send/recv, and logs what this says. OpenSSL's thread-local error queue is cleared before
 * each call and drained after, so the application's own OpenSSL use sees none of ours. */
#include "client/tlsconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "core/xalloc.h"

struct client_tls {
    SSL_CTX *ctx;
    char *cert, *key, *ca; /* as configured: for messages */
    char *server_name;     /* NULL: the host dialled */
};

/* The reason of the oldest error queued by OpenSSL, then an empty queue. */
static const char *err_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (e && !r) {
        ERR_error_string_n(e, buf, len);
        r = buf;
    }
    if (!e)
        r = "unknown error";
    if (r != buf)
        snprintf(buf, len, "%s", r);
    ERR_clear_error();
    return buf;
}

static bool given(const char *s)
{
    return s && *s;
}

/* Never prompts: an encrypted key cannot be used unattended. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int file_check(const char *flag, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "tls: %s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* Loads and checks the certificate and key into ctx. */
static int ctx_load(struct client_tls *t, char *err, size_t err_len)
{
    char r[256];
    int rc = -1;
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    if (file_check("--tls-cert", t->cert, err, err_len) < 0 ||
        file_check("--tls-key", t->key, err, err_len) < 0 ||
        file_check("--tls-ca", t->ca, err, err_len) < 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(t->ctx, t->cert) != 1) {
        snprintf(err, err_len, "tls: --tls-cert %s: no PEM certificate in it (%s)", t->cert,
                 err_reason(r, sizeof(r)));
        goto fail;
    }
    cert = SSL_CTX_get0_certificate(t->ctx);
    bio = BIO_new_file(t->key, "r");
    pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    if (!pkey) {
        snprintf(err, err_len, "tls: --tls-key %s: no unencrypted PEM private key in it (%s)",
                 t->key, err_reason(r, sizeof(r)));
        goto fail;
    }
    /* Checked here, before OpenSSL pairs them, for a message that names both files. */
    if (!cert || X509_check_private_key(cert, pkey) != 1) {
        ERR_clear_error();
        snprintf(err, err_len, "tls: --tls-key %s does not match --tls-cert %s", t->key, t->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(t->ctx, pkey) != 1) {
        snprintf(err, err_len, "tls: --tls-key %s: %s", t->key, err_reason(r, sizeof(r)));
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(t->ctx, t->ca, NULL) != 1) {
        snprintf(err, err_len, "tls: --tls-ca %s: no PEM certificate in it (%s)", t->ca,
                 err_reason(r, sizeof(r)));
        goto fail;
    }
    rc = 0;
fail:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

int client_tls_new(const struct tally_client_config *cfg, struct client_tls **out, char *err,
                   size_t err_len)
{
    char scratch[8];
    if (!err_len) {
        err = scratch;
        err_len = sizeof(scratch);
    }
    *out = NULL;
    int n = given(cfg->tls_cert) + given(cfg->tls_key) + given(cfg->tls_ca);
    if (n == 0 && cfg->tls_server_name) {
        snprintf(err, err_len, "tls: --tls-server-name needs --tls-cert, --tls-key and --tls-ca");
        return -1;
    }
    if (n == 0)
        return 0;
    if (n < 3) {
        snprintf(err, err_len, "tls: give --tls-cert, --tls-key and --tls-ca together (%s%s%s%s)",
                 "missing", given(cfg->tls_cert) ? "" : " --tls-cert",
                 given(cfg->tls_key) ? "" : " --tls-key", given(cfg->tls_ca) ? "" : " --tls-ca");
        return -1;
    }
    if (cfg->tls_server_name && !*cfg->tls_server_name) {
        snprintf(err, err_len, "tls: --tls-server-name must not be empty");
        return -1;
    }
    struct client_tls *t = xcalloc(1, sizeof(*t));
    t->cert = xstrdup(cfg->tls_cert);
    t->key = xstrdup(cfg->tls_key);
    t->ca = xstrdup(cfg->tls_ca);
    t->server_name = cfg->tls_server_name ? xstrdup(cfg->tls_server_name) : NULL;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx) {
        char r[256];
        snprintf(err, err_len, "tls: cannot make a context: %s", err_reason(r, sizeof(r)));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    /* Frames carry their own lengths, so a truncated stream cannot pass for a whole one: an
     * EOF without close_notify is just the server closing. */
    SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
    SSL_CTX_set_app_data(t->ctx, t); /* file names for messages */
    if (ctx_load(t, err, err_len) < 0)
        goto fail;
    *out = t;
    return 0;
fail:
    client_tls_free(t);
    return -1;
}

void client_tls_free(struct client_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert);
    free(t->key);
    free(t->ca);
    free(t->server_name);
    free(t);
}

int client_tls_conn_start(struct client_tls *t, struct client_tls_conn *tc, int fd,
                          const char *host, const char *peer, char *why, size_t why_len)
{
    char r[256];
    memset(tc, 0, sizeof(*tc));
    snprintf(tc->peer, sizeof(tc->peer), "%s", peer);
    const char *name = t->server_name ? t->server_name : host;
    snprintf(tc->name, sizeof(tc->name), "%s", name);
    ERR_clear_error();
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto fail;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (is_ip) {
        /* An address is checked against the certificate's IP subjectAltNames; SNI is for
         * host names only (RFC 6066). */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1)
            goto fail;
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl, name) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1)
            goto fail;
    }
    SSL_set_connect_state(ssl);
    tc->ssl = ssl;
    return 0;
fail:
    snprintf(why, why_len, "tls: cannot start TLS with %s as %s: %s", peer, name,
             err_reason(r, sizeof(r)));
    SSL_free(ssl);
    return -1;
}

void client_tls_conn_close(struct client_tls_conn *tc)
{
    SSL_free(tc->ssl);
    tc->ssl = NULL;
    tc->want = 0;
    /* What this attempt learned ends with it: a next attempt that fails before TLS (refused,
     * timed out) must not count as a certificate failure. */
    tc->verify_failed = false;
    tc->refused_cert = false;
}

bool client_tls_has_pending(const struct client_tls_conn *tc)
{
    return tc->ssl && SSL_pending(tc->ssl) > 0;
}

static bool verify_error_is_issuer(long v)
{
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        return true;
    default:
        return false;
    }
}

/* The server answered our certificate with one of these alerts: it does not take it. */
static bool reason_is_refused_cert(int reason)
{
    switch (reason) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* Turns the outcome of an SSL call that returned rc into a status, with why on failure.
 * what: "handshake with" or "connection to", for messages. */
static enum client_tls_io io_result(struct client_tls_conn *tc, int rc, const char *what, char *why,
                                    size_t why_len)
{
    char r[256];
    int saved = errno;
    int e = SSL_get_error(tc->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        tc->want = POLLIN;
        return CLIENT_TLS_WANT;
    case SSL_ERROR_WANT_WRITE:
        tc->want = POLLOUT;
        return CLIENT_TLS_WANT;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        snprintf(why, why_len, "tls: %s %s: closed by the server", what, tc->peer);
        return CLIENT_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            if (saved == 0) {
                snprintf(why, why_len, "tls: %s %s: closed by the server", what, tc->peer);
                return CLIENT_TLS_CLOSED;
            }
            snprintf(why, why_len, "tls: %s %s: %s", what, tc->peer, strerror(saved));
            return CLIENT_TLS_ERROR;
        }
        break;
    default:
        break;
    }
    unsigned long err = ERR_peek_error();
    int reason = ERR_GET_REASON(err);
    long v = SSL_get_verify_result(tc->ssl);
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK) {
        ERR_clear_error();
        tc->verify_failed = true;
        const char *vs = X509_verify_cert_error_string(v);
        const struct client_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(tc->ssl));
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            snprintf(why, why_len, "tls: server certificate for %s does not name %s%s: %s",
                     tc->peer, tc->name, t && t->server_name ? " (--tls-server-name)" : "", vs);
        } else if (verify_error_is_issuer(v)) {
            snprintf(why, why_len, "tls: server certificate for %s not signed by --tls-ca %s: %s",
                     tc->peer, t ? t->ca : "", vs);
        } else {
            snprintf(why, why_len, "tls: server certificate for %s rejected: %s", tc->peer, vs);
        }
        return CLIENT_TLS_ERROR;
    }
    if (ERR_GET_LIB(err) == ERR_LIB_SSL && reason_is_refused_cert(reason)) {
        tc->refused_cert = true;
        const struct client_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(tc->ssl));
        snprintf(why, why_len, "tls: server %s refused our certificate --tls-cert %s: %s", tc->peer,
                 t ? t->cert : "", err_reason(r, sizeof(r)));
        return CLIENT_TLS_ERROR;
    }
    bool plain = ERR_GET_LIB(err) == ERR_LIB_SSL && reason == SSL_R_WRONG_VERSION_NUMBER;
    snprintf(why, why_len, "tls: %s %s failed: %s%s", what, tc->peer, err_reason(r, sizeof(r)),
             plain ? " (does the server speak TLS?)" : "");
    return CLIENT_TLS_ERROR;
}

enum client_tls_io client_tls_handshake(struct client_tls_conn *tc, char *why, size_t why_len)
{
    ERR_clear_error();
    tc->want = 0;
    int rc = SSL_do_handshake(tc->ssl);
    if (rc == 1)
        return CLIENT_TLS_DONE;
    return io_result(tc, rc, "handshake with", why, why_len);
}

enum client_tls_io client_tls_read(struct client_tls_conn *tc, void *buf, size_t len, size_t *n,
                                   char *why, size_t why_len)
{
    ERR_clear_error();
    tc->want = 0;
    *n = 0;
    if (SSL_read_ex(tc->ssl, buf, len, n) == 1)
        return CLIENT_TLS_DONE;
    return io_result(tc, 0, "connection to", why, why_len);
}

enum client_tls_io client_tls_write(struct client_tls_conn *tc, const void *buf, size_t len,
                                    size_t *n, char *why, size_t why_len)
{
    ERR_clear_error();
    tc->want = 0;
    *n = 0;
    if (SSL_write_ex(tc->ssl, buf, len, n) == 1)
        return CLIENT_TLS_DONE;
    return io_result(tc, 0, "connection to", why, why_len);
}
