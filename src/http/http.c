/* evhttp routes. Owns the HTTP listener; answers from callbacks, never blocks. */
#include "http/http.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/log.h"

struct http_server {
    struct evhttp *http;
    http_ready_cb ready;
    void *arg;
};

static void reply_json(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add_printf(buf, "%s\n", body);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
}

static void route(struct evhttp_request *req, void *arg)
{
    struct http_server *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path)
        path = "/";
    bool known = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0;
    if (!known) {
        reply_json(req, 404, "Not Found", "{\"error\":\"not found\"}");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_json(req, 405, "Method Not Allowed", "{\"error\":\"method not allowed\"}");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        reply_json(req, 200, "OK", "{\"status\":\"alive\"}");
        return;
    }
    if (h->ready(h->arg))
        reply_json(req, 200, "OK", "{\"status\":\"ready\"}");
    else
        reply_json(req, 503, "Service Unavailable", "{\"status\":\"not ready\"}");
}

struct http_server *http_server_new(struct event_base *base, const char *host, uint16_t port,
                                    http_ready_cb ready, void *arg)
{
    struct http_server *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    h->ready = ready;
    h->arg = arg;
    h->http = evhttp_new(base);
    if (!h->http || !evhttp_bind_socket_with_handle(h->http, host, port)) {
        log_error("cannot serve HTTP on %s:%u", host, port);
        http_server_free(h);
        return NULL;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(h->http, route, h);
    evhttp_set_timeout(h->http, 30);
    return h;
}

void http_server_free(struct http_server *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http);
    free(h);
}
