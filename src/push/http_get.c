/* One blocking HTTP/1.1 GET with bounded waits, for tally-push --verify-receipts: the
 * connection (non-blocking socket, poll), TLS with OpenSSL when a CA file is given, the
 * status line, Content-Length, chunked and read-to-close bodies, a size cap. Knows nothing
 * of receipts (receipts_run.c) and keeps no connection between requests. */
#include "push/http_get.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/xalloc.h"

#define HEADERS_MAX (64u * 1024u)

struct conn {
    int fd;
    SSL *ssl;
    int64_t deadline; /* the whole request, ms on the monotonic clock */
    int io_timeout_ms;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "TLS failure";
}

int push_http_init(struct push_http *h, const char *host, uint16_t port, const char *ca_file,
                   char *err, size_t err_len)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->host, sizeof(h->host), "%s", host);
    h->port = port;
    h->io_timeout_ms = 30000;
    h->total_timeout_ms = 300000;
    if (!ca_file)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, err_len, "TLS: %s", ssl_reason());
        return -1;
    }
    h->tls = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* tallyd's evhttp may close without close_notify; the body's own framing says whether
     * it is whole. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        snprintf(err, err_len, "--http-tls-ca %s: %s", ca_file, ssl_reason());
        return -1;
    }
    return 0;
}

void push_http_cleanup(struct push_http *h)
{
    SSL_CTX_free(h->tls);
    h->tls = NULL;
}

/* Waits until fd is ready for events. Returns 0, or -1 with errno ETIMEDOUT or EINTR. */
static int wait_fd(struct conn *c, short events)
{
    for (;;) {
        int64_t left = c->deadline - mono_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        int t = left < c->io_timeout_ms ? (int)left : c->io_timeout_ms;
        struct pollfd p = {.fd = c->fd, .events = events};
        /* EINTR included: tally-push catches only the signals that stop it. */
        int r = poll(&p, 1, t);
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        return 0;
    }
}

static int dial(const struct push_http *h, struct conn *c, char *err, size_t len)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)h->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(h->host, port, &hints, &ai);
    if (g != 0) {
        snprintf(err, len, "%s: %s", h->host, gai_strerror(g));
        return -1;
    }
    int e = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        c->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(c, POLLOUT) == 0)) {
            socklen_t sl = sizeof(e);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
                break;
        } else {
            e = errno;
        }
        close(fd);
        c->fd = -1;
    }
    freeaddrinfo(ai);
    if (c->fd < 0) {
        snprintf(err, len, "cannot connect to %s:%u: %s", h->host, (unsigned)h->port,
                 strerror(e ? e : ECONNREFUSED));
        return -1;
    }
    return 0;
}

/* One SSL call's outcome: 1 go on (retry after a wait), 0 done, -1 failed. */
static int ssl_wait(struct conn *c, int r, const char *what, char *err, size_t len)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT) == 0)
            return 1;
        snprintf(err, len, "TLS %s: %s", what, strerror(errno));
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK)
        snprintf(err, len, "TLS %s: tallyd's certificate: %s", what,
                 X509_verify_cert_error_string(v));
    else if (e == SSL_ERROR_SYSCALL && errno)
        snprintf(err, len, "TLS %s: %s", what, strerror(errno));
    else
        snprintf(err, len, "TLS %s: %s", what, ssl_reason());
    return -1;
}

static int tls_start(const struct push_http *h, struct conn *c, char *err, size_t len)
{
    c->ssl = SSL_new(h->tls);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        snprintf(err, len, "TLS: %s", ssl_reason());
        return -1;
    }
    uint8_t ip[16];
    bool is_ip = inet_pton(AF_INET, h->host, ip) == 1 || inet_pton(AF_INET6, h->host, ip) == 1;
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), h->host)
                   : SSL_set1_host(c->ssl, h->host) == 1 &&
                         SSL_set_tlsext_host_name(c->ssl, h->host) == 1;
    if (ok != 1) {
        snprintf(err, len, "TLS: cannot check the name %s: %s", h->host, ssl_reason());
        return -1;
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        if (ssl_wait(c, r, "handshake", err, len) != 1) {
            if (!*err)
                snprintf(err, len, "TLS handshake: the connection closed");
            return -1;
        }
    }
}

static int conn_write(struct conn *c, const char *buf, size_t n, char *err, size_t len)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            size_t done = 0;
            int r = SSL_write_ex(c->ssl, buf, n, &done);
            if (r != 1) {
                if (ssl_wait(c, r, "write", err, len) == 1)
                    continue;
                return -1;
            }
            w = (ssize_t)done;
        } else {
            w = send(c->fd, buf, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EAGAIN && wait_fd(c, POLLOUT) == 0)
                continue;
            if (w < 0) {
                snprintf(err, len, "sending the request: %s", strerror(errno));
                return -1;
            }
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads some bytes: > 0, 0 at the end of the connection, -1 on error (err set). */
static ssize_t conn_read(struct conn *c, char *buf, size_t n, char *err, size_t len)
{
    for (;;) {
        if (c->ssl) {
            size_t got = 0;
            int r = SSL_read_ex(c->ssl, buf, n, &got);
            if (r == 1)
                return (ssize_t)got;
            int s = ssl_wait(c, r, "read", err, len);
            if (s == 1)
                continue;
            return s == 0 ? 0 : -1;
        }
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r >= 0)
            return r;
        if (errno == EAGAIN && wait_fd(c, POLLIN) == 0)
            continue;
        snprintf(err, len, "reading the response: %s",
                 errno == ETIMEDOUT ? "timed out" : strerror(errno));
        return -1;
    }
}

/* The value of header name in the header block hdr (lines after the status line), copied
 * into out; returns 0, or -1 when absent. */
static int header_get(const char *hdr, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(hdr, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) != 0 || line[nl] != ':')
            continue;
        const char *v = line + nl + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        const char *end = strstr(v, "\r\n");
        size_t vl = end ? (size_t)(end - v) : strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        snprintf(out, len, "%.*s", (int)vl, v);
        return 0;
    }
    return -1;
}

/* Decodes a chunked body in place (b[0..*n)). Returns 0, or -1 when malformed or cut. */
static int unchunk(char *b, size_t *n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *line_end = memmem(b + in, *n - in, "\r\n", 2);
        if (!line_end)
            return -1;
        size_t size = 0, digits = 0;
        for (char *p = b + in; p < line_end && *p != ';'; p++, digits++) {
            char ch = *p;
            int v = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (v < 0 || size > (SIZE_MAX >> 4))
                return -1;
            size = size << 4 | (size_t)v;
        }
        if (digits == 0)
            return -1;
        in = (size_t)(line_end - b) + 2;
        if (size == 0)
            break; /* trailers, if any, are not needed */
        if (size > *n - in || *n - in - size < 2 || memcmp(b + in + size, "\r\n", 2) != 0)
            return -1;
        memmove(b + out, b + in, size);
        out += size;
        in += size + 2;
    }
    *n = out;
    return 0;
}

/* Reads and frames the response into res. Returns 0, or -1 with err. */
static int response_read(struct conn *c, size_t max_body, struct push_http_response *res, char *err,
                         size_t len)
{
    size_t cap = 16384, n = 0, hdr_len = 0, want = SIZE_MAX;
    char *b = xmalloc(cap + 1);
    bool chunked = false;
    for (;;) {
        if (hdr_len && !chunked && want != SIZE_MAX && n - hdr_len >= want)
            break;
        if (n == cap) {
            size_t limit =
                (hdr_len ? hdr_len : HEADERS_MAX) + max_body + (chunked ? max_body / 8 + 4096 : 0);
            if (cap >= limit) {
                snprintf(err, len, "the response body is larger than %zu bytes", max_body);
                goto fail;
            }
            cap = cap * 2 > limit ? limit : cap * 2;
            b = xreallocarray(b, cap + 1, 1);
        }
        ssize_t r = conn_read(c, b + n, cap - n, err, len);
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
        if (!hdr_len) {
            b[n] = '\0';
            char *end = memmem(b, n, "\r\n\r\n", 4);
            if (!end && n >= HEADERS_MAX) {
                snprintf(err, len, "the response headers are longer than %u bytes", HEADERS_MAX);
                goto fail;
            }
            if (!end)
                continue;
            hdr_len = (size_t)(end - b) + 4;
            char save = b[hdr_len - 2];
            b[hdr_len - 2] = '\0'; /* the header block ends with one "\r\n" */
            int status = 0, off = 0;
            if (sscanf(b, "HTTP/1.%*[01] %3d%n", &status, &off) != 1 || status < 100 ||
                (b[off] != ' ' && b[off] != '\r')) {
                snprintf(err, len, "the answer is not an HTTP/1.x response");
                goto fail;
            }
            res->status = status;
            size_t k = 0;
            for (const char *p = b + off + (b[off] == ' ');
                 *p && *p != '\r' && k + 1 < sizeof(res->reason); p++)
                res->reason[k++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
            res->reason[k] = '\0';
            char v[64];
            if (header_get(b, "Transfer-Encoding", v, sizeof(v)) == 0 &&
                strcasecmp(v, "identity") != 0) {
                if (strcasecmp(v, "chunked") != 0) {
                    snprintf(err, len, "the response's Transfer-Encoding %s is not supported", v);
                    goto fail;
                }
                chunked = true;
            } else if (header_get(b, "Content-Length", v, sizeof(v)) == 0) {
                char *e;
                errno = 0;
                unsigned long long cl = strtoull(v, &e, 10);
                if (!*v || *e || errno || v[0] == '-') {
                    snprintf(err, len, "the response's Content-Length '%s' is not a number", v);
                    goto fail;
                }
                if (cl > max_body) {
                    snprintf(err, len, "the response body of %llu bytes is larger than %zu", cl,
                             max_body);
                    goto fail;
                }
                want = (size_t)cl;
            }
            b[hdr_len - 2] = save;
        }
    }
    if (!hdr_len) {
        snprintf(err, len, "the connection closed before a whole response came (%zu bytes)", n);
        goto fail;
    }
    size_t body = n - hdr_len;
    if (want != SIZE_MAX && body < want) {
        snprintf(err, len, "truncated response: the body ends after %zu of its %zu bytes", body,
                 want);
        goto fail;
    }
    if (want != SIZE_MAX)
        body = want; /* with Connection: close, anything after is not ours */
    memmove(b, b + hdr_len, body);
    if (chunked && unchunk(b, &body) < 0) {
        snprintf(err, len, "truncated or malformed chunked response body");
        goto fail;
    }
    if (body > max_body) {
        snprintf(err, len, "the response body is larger than %zu bytes", max_body);
        goto fail;
    }
    b[body] = '\0';
    res->body = b;
    res->len = body;
    return 0;
fail:
    free(b);
    return -1;
}

int push_http_get(const struct push_http *h, const char *path, size_t max_body,
                  struct push_http_response *res, char *err, size_t err_len)
{
    memset(res, 0, sizeof(*res));
    struct conn c = {
        .fd = -1, .deadline = mono_ms() + h->total_timeout_ms, .io_timeout_ms = h->io_timeout_ms};
    int rc = -1;
    char *req = NULL;
    err[0] = '\0';
    if (dial(h, &c, err, err_len) < 0)
        goto out;
    if (h->tls && tls_start(h, &c, err, err_len) < 0)
        goto out;
    bool v6 = strchr(h->host, ':') != NULL;
    size_t cap = strlen(path) + strlen(h->host) + 128;
    req = xmalloc(cap);
    int n = snprintf(req, cap,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nAccept: application/json\r\n"
                     "User-Agent: tally-push\r\nConnection: close\r\n\r\n",
                     path, v6 ? "[" : "", h->host, v6 ? "]" : "", (unsigned)h->port);
    if (conn_write(&c, req, (size_t)n, err, err_len) < 0)
        goto out;
    rc = response_read(&c, max_body, res, err, err_len);
out:
    free(req);
    if (c.ssl)
        SSL_free(c.ssl);
    if (c.fd >= 0)
        close(c.fd);
    ERR_clear_error();
    return rc;
}
