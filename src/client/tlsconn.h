/* libtally's TLS: the client context made from the config's PEM files (TLS 1.3 only, the
 * server verified against tls_ca and the name dialled), and one session's handshake, reads
 * and writes over the session's non-blocking socket, OpenSSL's WANT_READ / WANT_WRITE turned
 * into poll events. Internal to libtally: conn.c decides when to call what; the one-line
 * messages ("tls: ...") are made here, where the files and the verification result are known. */
#ifndef CLIENT_TLSCONN_H
#define CLIENT_TLSCONN_H

#include <stdbool.h>
#include <stddef.h>

#include "tally/client.h"

struct client_tls; /* the context: SSL_CTX, file names, the configured server name */
struct ssl_st;     /* OpenSSL's SSL, kept out of conn.c */

/* One connection's TLS state, embedded in the client (ssl NULL: none). */
struct client_tls_conn {
    struct ssl_st *ssl;
    short want;         /* POLLIN or POLLOUT: what the last blocked call waits for; 0 if none */
    bool verify_failed; /* the handshake failed verifying the server's certificate */
    bool refused_cert;  /* the server refused our certificate (an alert: unknown CA, ...) */
    char peer[320];     /* "127.0.0.1:7400": for messages */
    char name[256];     /* the name the certificate must hold */
};

enum client_tls_io {
    CLIENT_TLS_DONE,   /* handshake finished; read or write moved *n > 0 bytes */
    CLIENT_TLS_WANT,   /* would block: poll for conn->want and call again with the same bytes */
    CLIENT_TLS_CLOSED, /* the server closed the connection (close_notify or EOF) */
    CLIENT_TLS_ERROR,  /* failed: why says why; the connection is unusable */
};

/* Builds the context of cfg's tls_cert, tls_key, tls_ca (all three, or none: *out = NULL) and
 * tls_server_name, checking that the files load and that the key matches the certificate.
 * Returns 0, or -1 with a one-line reason in err (err_len bytes, may be 0). */
int client_tls_new(const struct tally_client_config *cfg, struct client_tls **out, char *err,
                   size_t err_len) __attribute__((warn_unused_result));

void client_tls_free(struct client_tls *t); /* NULL is a no-op */

/* Starts TLS on the connected socket fd to host (the configured name: what the certificate
 * must name, unless tls_server_name says otherwise), peer being the address for messages.
 * The fd stays the caller's. Returns 0, or -1 with why. */
int client_tls_conn_start(struct client_tls *t, struct client_tls_conn *tc, int fd,
                          const char *host, const char *peer, char *why, size_t why_len)
    __attribute__((warn_unused_result));

/* Frees the connection's TLS state (no close_notify: the socket is closed anyway). */
void client_tls_conn_close(struct client_tls_conn *tc);

/* Drives the handshake: DONE, WANT, or CLOSED / ERROR with why. */
enum client_tls_io client_tls_handshake(struct client_tls_conn *tc, char *why, size_t why_len);

/* Reads up to len bytes into buf: DONE with *n, WANT, CLOSED, or ERROR with why. */
enum client_tls_io client_tls_read(struct client_tls_conn *tc, void *buf, size_t len, size_t *n,
                                   char *why, size_t why_len);

/* Writes len > 0 bytes (all of them on DONE, *n = len). After WANT the next call must pass
 * the same bytes (they may sit in another buffer). DONE, WANT, CLOSED or ERROR with why. */
enum client_tls_io client_tls_write(struct client_tls_conn *tc, const void *buf, size_t len,
                                    size_t *n, char *why, size_t why_len);

/* True when decrypted bytes wait inside OpenSSL: reading them needs no poll. */
bool client_tls_has_pending(const struct client_tls_conn *tc);

#endif
