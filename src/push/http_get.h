/* A small blocking HTTP/1.1 GET for tally-push --verify-receipts (http_get.c): one request
 * a connection (Connection: close), plain or over TLS (OpenSSL, the server's certificate
 * checked against a CA file and the host name), every wait bounded. */
#ifndef PUSH_HTTP_GET_H
#define PUSH_HTTP_GET_H

#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st;

struct push_http {
    char host[256];
    uint16_t port;
    struct ssl_ctx_st *tls; /* NULL: plain HTTP */
    int io_timeout_ms;      /* connect, and each wait for a byte to read or room to write */
    int total_timeout_ms;   /* one whole request */
};

struct push_http_response {
    int status;      /* 100 .. 999 */
    char reason[64]; /* the status line's reason phrase, printable bytes only */
    char *body;      /* malloc'd, NUL-terminated (the NUL not counted in len) */
    size_t len;
};

/* Sets up requests to host:port; ca_file non-NULL: HTTPS, the server's certificate must
 * chain to a certificate in ca_file and name host (a DNS name, also sent as SNI, or an IP
 * address). Returns 0, or -1 with the reason in err (the CA file unreadable). Clean with
 * push_http_cleanup either way. */
int push_http_init(struct push_http *h, const char *host, uint16_t port, const char *ca_file,
                   char *err, size_t err_len) __attribute__((warn_unused_result));
void push_http_cleanup(struct push_http *h);

/* GET path (starting with '/') over a new connection; a body longer than max_body is an
 * error. Reads a Content-Length body, a chunked one, or one that ends with the connection.
 * Returns 0 with *res filled for any status (free res->body), or -1 with the reason in err
 * and res->body NULL: not reachable, TLS refused, timed out, a malformed response, or a
 * body shorter than its Content-Length (truncated) or over max_body. */
int push_http_get(const struct push_http *h, const char *path, size_t max_body,
                  struct push_http_response *res, char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif
