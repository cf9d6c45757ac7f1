/* TLS for tallyd and tallyctl on Debian's OpenSSL: server contexts for the collector port
 * (TLS 1.3, client certificates required and verified against a CA) and the HTTP port,
 * certificate pins (SHA-256 of the SubjectPublicKeyInfo, as HPKP and DANE pin keys), and a
 * small private CA for deployments without a PKI of their own. No sockets, no event loop:
 * net/ and http/ wrap connections with libevent's bufferevent_openssl themselves. */
#ifndef TLS_TLS_H
#define TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#define TLS_PIN_BYTES 32
#define TLS_PIN_HEX (2 * TLS_PIN_BYTES + 1)

/* A server context from PEM files. ca == NULL: no client certificates asked (the HTTP
 * port; TLS 1.2 and 1.3). ca != NULL: TLS 1.3 only, and every client must present a
 * certificate that chains to a certificate in ca (the collector port). Returns NULL with
 * a one-line reason naming the file in err (e.g. "--tls-key k.pem: no such file"). */
SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, const char *ca, char *err,
                            size_t err_len);
void tls_ctx_free(SSL_CTX *ctx); /* NULL is a no-op */

/* SHA-256 of cert's DER-encoded SubjectPublicKeyInfo. Returns 0, or -1. */
int tls_pin_of_cert(X509 *cert, uint8_t out[TLS_PIN_BYTES]);
/* The same for the first certificate of a PEM file. Returns 0, or -1 with err. */
int tls_pin_of_file(const char *pem_path, uint8_t out[TLS_PIN_BYTES], char *err, size_t err_len);
/* Lower-case hex, NUL-terminated. */
void tls_pin_hex(const uint8_t pin[TLS_PIN_BYTES], char out[TLS_PIN_HEX]);

/* The private CA (tallyctl ca). init creates DIR (mode 0700) holding ca.key and ca.crt (an
 * EC P-256 CA, 10 years) and tallyd's own server.key and server.crt, signed by it, with
 * subjectAltNames localhost, 127.0.0.1, ::1 and each of the n_names extra DNS names or IP
 * addresses. It refuses to overwrite an existing ca.key. Returns 0, or -1 with err. */
int tls_ca_init(const char *dir, const char *const *names, size_t n_names, char *err,
                size_t err_len);
/* Issues collector id's client certificate (CN = id, extendedKeyUsage clientAuth, 2 years)
 * as DIR/ID.key (mode 0600) and DIR/ID.crt; refuses to overwrite them. *pin_hex (may be
 * NULL) gets the new certificate's pin. Returns 0, or -1 with err. */
int tls_ca_issue(const char *dir, const char *id, char pin_hex[TLS_PIN_HEX], char *err,
                 size_t err_len);

#endif
