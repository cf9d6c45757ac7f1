/* GET /v1/receipts/{collector}/{seq}: parses and checks the path, then hands the request
 * to whoever serves receipts (tallyd's receipts worker, through publish.c) and keeps it
 * pending until it answers, minding a client that goes away meanwhile. Reads no record
 * itself and never blocks the loop. */
#include "http/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/xalloc.h"

struct http_pending {
    struct evhttp_request *req; /* NULL once the client went away */
    struct evhttp_connection *evcon;
};

/* [A-Za-z0-9._-]{1,63}, as collector ids are everywhere. */
static bool valid_collector(const char *s, size_t n)
{
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* 1 .. 2^63-1 in decimal (a seq is a positive bigint), no sign, no leading zero. */
static bool parse_seq(const char *s, uint64_t *out)
{
    if (!*s || *s == '0' || strlen(s) > 19)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

/* The client went away (or the connection timed out, or the server is being freed) before
 * the answer. A request evhttp detached from the dying connection is ours to free; one
 * still attached goes with the connection. The pending stays until its answer comes. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct http_pending *p = arg;
    (void)evcon;
    if (!p->req)
        return;
    if (!evhttp_request_get_connection(p->req))
        evhttp_request_free(p->req);
    p->req = NULL;
    p->evcon = NULL;
}

static void free_body(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

void http_pending_reply(struct http_pending *p, int status, char *body, size_t len)
{
    if (!p->req) {
        free(body);
        free(p);
        return;
    }
    struct evhttp_request *req = p->req;
    evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    if (body && evbuffer_add_reference(b, body, len, free_body, NULL) != 0)
        abort();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    if (status == 503)
        evhttp_add_header(h, "Retry-After", "1");
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 409 ? "Conflict"
                         : status == 503 ? "Service Unavailable"
                                         : "Internal Server Error";
    http_send_reply(req, status, reason, b);
    evbuffer_free(b);
    free(p);
}

void http_receipts_route(struct evhttp_request *req, const char *rest, http_receipt_cb cb,
                         void *arg)
{
    const char *slash = strchr(rest, '/');
    if (!slash || !valid_collector(rest, (size_t)(slash - rest))) {
        http_reply_error(req, 400, "Bad Request",
                         "use /v1/receipts/{collector}/{seq}: collector must match "
                         "[A-Za-z0-9._-]{1,63}");
        return;
    }
    uint64_t seq;
    if (!parse_seq(slash + 1, &seq)) {
        http_reply_error(req, 400, "Bad Request", "seq must be a positive integer");
        return;
    }
    char collector[64];
    memcpy(collector, rest, (size_t)(slash - rest));
    collector[slash - rest] = '\0';
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!cb || !evcon) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_reply_error(req, 503, "Service Unavailable", "receipts are not served yet");
        return;
    }
    struct http_pending *p = xcalloc(1, sizeof(*p));
    p->req = req;
    p->evcon = evcon;
    /* evhttp serves one request of a connection at a time, so its close callback is ours
     * until the answer. */
    evhttp_connection_set_closecb(evcon, on_close, p);
    if (cb(arg, collector, seq, p) != 0) {
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        free(p);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_reply_error(req, 503, "Service Unavailable",
                         "too many receipt requests waiting: try again");
    }
}
