/* Server contexts and certificate pins on OpenSSL 3.0. Owns the choice of protocol versions
 * and client-certificate policy for both ports and the one-line error messages that name the
 * file at fault. It does not own sockets or the private CA (ca.c). */
#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "tls/internal.h"

/* Never prompt on a terminal for a passphrase: an encrypted key is an error. */
int tls_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

void tls_errf(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

const char *tls_ssl_reason(void)
{
    /* The first error queued is the cause ("no start line"); the ones after it are the
     * callers giving up ("PEM lib"). */
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

void tls_lower_strerror(int errnum, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strerror(errnum));
    if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
}

/* A readable file, or errno's reason in err: OpenSSL's own message for a missing file is a
 * "system library" code that says less than strerror does. */
static int check_readable(const char *opt, const char *path, char *err, size_t err_len)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    int e = !f ? errno : fstat(fileno(f), &st) < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (f)
        fclose(f);
    if (e) {
        char why[128];
        tls_lower_strerror(e, why, sizeof why);
        tls_errf(err, err_len, "%s %s: %s", opt, path, why);
        return -1;
    }
    return 0;
}

SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, const char *ca, char *err,
                            size_t err_len)
{
    /* The option names the lead's options table uses for each port. */
    const char *o_cert = ca ? "--tls-cert" : "--http-tls-cert";
    const char *o_key = ca ? "--tls-key" : "--http-tls-key";
    const char *o_ca = "--tls-ca";
    STACK_OF(X509_NAME) *names = NULL;
    SSL_CTX *ctx = NULL;

    ERR_clear_error();
    if (!cert || !key) {
        tls_errf(err, err_len, "%s and %s must be given together", o_cert, o_key);
        goto fail;
    }
    if (check_readable(o_cert, cert, err, err_len) < 0 ||
        check_readable(o_key, key, err, err_len) < 0 ||
        (ca && check_readable(o_ca, ca, err, err_len) < 0))
        goto fail;

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_errf(err, err_len, "SSL_CTX_new: %s", tls_ssl_reason());
        goto fail;
    }
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase_cb);
    /* Collectors speak TLS 1.3 only (they are ours); browsers and scrapers get 1.2 too. */
    if (!SSL_CTX_set_min_proto_version(ctx, ca ? TLS1_3_VERSION : TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, 0)) {
        tls_errf(err, err_len, "TLS versions: %s", tls_ssl_reason());
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* An idle connection then holds no 16 KiB record buffers (thousands of idle peers are
     * part of the threat model); a busy one pays a malloc per record, far below its AEAD. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_errf(err, err_len, "%s %s: cannot read a PEM certificate (%s)", o_cert, cert,
                 tls_ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            tls_errf(err, err_len, "%s %s: does not match the certificate in %s", o_key, key, cert);
        } else {
            tls_errf(err, err_len, "%s %s: cannot read an unencrypted PEM private key (%s)", o_key,
                     key, tls_ssl_reason());
        }
        goto fail;
    }
    /* A key of another type than the certificate's loads into another slot: caught here. */
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        tls_errf(err, err_len, "%s %s: does not match the certificate in %s", o_key, key, cert);
        goto fail;
    }

    if (ca) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            tls_errf(err, err_len, "%s %s: cannot read PEM CA certificates (%s)", o_ca, ca,
                     tls_ssl_reason());
            goto fail;
        }
        names = SSL_load_client_CA_file(ca);
        if (!names) {
            tls_errf(err, err_len, "%s %s: no certificate in it (%s)", o_ca, ca, tls_ssl_reason());
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
        names = NULL;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        /* Resumed sessions keep the verified peer; OpenSSL refuses resumption with client
         * verification unless the context has a session id context. */
        static const unsigned char sid[] = "tallyd-collector";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    }
    return ctx;

fail:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx); /* NULL is a no-op there too */
}

int tls_pin_of_cert(X509 *cert, uint8_t out[TLS_PIN_BYTES])
{
    unsigned char *der = NULL;
    unsigned int n = 0;
    int rc = -1;

    X509_PUBKEY *spki = cert ? X509_get_X509_PUBKEY(cert) : NULL;
    if (!spki)
        goto fail;
    int len = i2d_X509_PUBKEY(spki, &der);
    if (len <= 0)
        goto fail;
    if (EVP_Digest(der, (size_t)len, out, &n, EVP_sha256(), NULL) != 1 || n != TLS_PIN_BYTES)
        goto fail;
    rc = 0;
fail:
    OPENSSL_free(der);
    return rc;
}

int tls_pin_of_file(const char *pem_path, uint8_t out[TLS_PIN_BYTES], char *err, size_t err_len)
{
    int rc = -1;
    X509 *x = NULL;

    ERR_clear_error();
    BIO *bio = BIO_new_file(pem_path, "r");
    if (!bio) {
        char why[128];
        tls_lower_strerror(errno, why, sizeof why);
        tls_errf(err, err_len, "%s: %s", pem_path, why);
        ERR_clear_error();
        goto fail;
    }
    x = PEM_read_bio_X509(bio, NULL, tls_no_passphrase_cb, NULL);
    if (!x) {
        tls_errf(err, err_len, "%s: not a PEM certificate (%s)", pem_path, tls_ssl_reason());
        goto fail;
    }
    if (tls_pin_of_cert(x, out) < 0) {
        tls_errf(err, err_len, "%s: cannot hash its public key (%s)", pem_path, tls_ssl_reason());
        goto fail;
    }
    rc = 0;
fail:
    X509_free(x);
    BIO_free(bio);
    return rc;
}

void tls_pin_hex(const uint8_t pin[TLS_PIN_BYTES], char out[TLS_PIN_HEX])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < TLS_PIN_BYTES; i++) {
        out[2 * i] = hex[pin[i] >> 4];
        out[2 * i + 1] = hex[pin[i] & 15];
    }
    out[2 * TLS_PIN_BYTES] = '\0';
}
