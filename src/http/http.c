/* The evhttp server: binds the port, routes each request, applies ETag/If-None-Match and
 * the JSON error convention, serves the embedded dashboard, answers for tallyd while it
 * starts (no catalog or no snapshot yet), and swaps in the snapshot each checkpoint
 * publishes. Rendering lives in render.c, ranking in snapshot.c, the event stream in
 * events.c. Answers from callbacks on the loop; never blocks. Optionally speaks TLS
 * (bufferevent_openssl under evhttp); the SSL_CTX comes from the caller (src/tls).
 *
 * Error bodies. Every answer this file writes is the JSON {"error": "..."} of
 * http_reply_error(): 404 for unknown paths (a generic callback, no per-path ones, so
 * evhttp's HTML 404 never runs), 405 with Allow for the methods libevent knows, and 501 for
 * the ones it does not (allowed through the internal EVHTTP_REQ_UNKNOWN_ bit, see
 * HTTP_REQ_UNKNOWN). libevent 2.1.12 writes the rest itself, as HTML
 * (<HTML><HEAD><TITLE>400 Bad Request</TITLE>..., Content-Type: text/html, Connection:
 * close), and gives us no hook: evhttp_connection_incoming_fail() frees the request's URI and
 * evhttp_handle_request() then calls evhttp_send_error() before any callback of ours, and
 * evhttp_set_errorcb() (custom error pages) and evhttp_set_newreqcb() arrived only in 2.2.
 * Those answers are:
 *   400  a malformed request line (method token, URI, HTTP version), malformed headers,
 *        headers or request line over evhttp_set_max_headers_size (16 KiB: 400, not 431),
 *        a bad Content-Length, a malformed chunked body or trailer;
 *   413  a body over evhttp_set_max_body_size (64 KiB), also after Expect: 100-continue;
 *   417  an Expect other than 100-continue on a request with a body.
 * Rewriting them would mean parsing evhttp's output under it (a filter bufferevent), which
 * is not worth the risk for answers to malformed requests; each closes the connection. */
#include "http/http.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <openssl/ssl.h>

#include "core/loopwatch.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "http/internal.h"
#ifdef HTTP_HAVE_ASSETS
#include "http/assets/assets.h"
#endif

const double http_checkpoint_bucket_le[HTTP_CHECKPOINT_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

struct http_server {
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    const struct http_catalog *cat; /* NULL until set */
    bool has_layout;                /* the catalog was set and is consistent */
    struct http_hooks hooks;
    struct http_layout layout;
    struct http_snapshot *snap; /* current; NULL until the first publish: "starting" */
    struct http_events events;
    struct http_corrections corrections; /* set with the layout */
    http_receipt_cb receipt_cb;          /* NULL: /v1/receipts answers 503 */
    void *receipt_arg;
    /* Part of every ETag (not the writer epoch): changes at start and when a checkpoint id
     * is published again. */
    uint32_t etag_epoch;
    uint32_t status_gen; /* status changes published (snapshot status_gen) */
    uint64_t requests;
    char (*asset_etags)[24];
    SSL_CTX *tls; /* our reference; NULL: plain HTTP */
    /* Out of descriptors, accept fails at once and the listening socket stays readable:
     * evhttp 2.1 sets no error callback, so libevent would call accept in a busy loop. We
     * pause the listener instead, 100 ms doubling to 1 s while it keeps failing. */
    struct event *accept_retry;
    int accept_backoff_ms;
    time_t accept_last_pause;
    uint64_t accept_pauses;
};

/* libevent 2.1 marks a method it does not know with this bit (http-internal.h:
 * EVHTTP_REQ_UNKNOWN_) and answers it with its own HTML 501 unless the bit is among the
 * allowed methods; allowed, such requests reach on_request, which answers 501 in JSON. */
#if LIBEVENT_VERSION_NUMBER < 0x02020000
#define HTTP_REQ_UNKNOWN (1 << 15)
#else
#define HTTP_REQ_UNKNOWN 0
#endif
#define KNOWN_METHODS                                                                              \
    (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |     \
     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

#define JSON_TYPE "application/json; charset=utf-8"
#define REASON_MAX 256

/* evhttp_send_reply(), but a HEAD answer carries only the length of the body it would
 * have had: libevent 2.1 writes the body of a HEAD reply. */
void http_send_reply(struct evhttp_request *req, int code, const char *reason,
                     struct evbuffer *body)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD && body) {
        char len[24];
        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, code, reason, body);
}

void http_reply_error(struct evhttp_request *req, int code, const char *reason, const char *message)
{
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        abort();
    evbuffer_add(buf, "{\"error\":", 9);
    http_json_string(buf, message);
    evbuffer_add(buf, "}\n", 2);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", JSON_TYPE);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    http_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
}

static void reply(struct evhttp_request *req, const char *type, const char *etag,
                  struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    if (etag)
        evhttp_add_header(h, "ETag", etag);
    http_send_reply(req, 200, "OK", body);
}

/* True when If-None-Match names etag (or is "*"): the caller answers 304. Weak
 * comparison, as RFC 9110 asks for If-None-Match, so W/"x" matches "x". */
static bool not_modified(struct evhttp_request *req, const char *etag)
{
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
    if (!inm)
        return false;
    if (inm[strspn(inm, " ")] == '*')
        return true;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return true;
    }
    return false;
}

static void reply_not_modified(struct evhttp_request *req, const char *etag)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "ETag", etag);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    http_send_reply(req, 304, "Not Modified", NULL);
}

/* "cp-<checkpoint>-<variant>-<epoch>[-e]": a checkpoint id names the same votes in every
 * run, but not the same registry or collector states, so a restart (or publishing the same
 * checkpoint again) changes every ETag once. "-e" marks a body without counts (embargo),
 * so a cached body with counts never matches one without, whatever the epoch. */
static void snap_etag(const struct http_server *h, const char *variant, char *out, size_t len)
{
    snprintf(out, len, "\"cp-%" PRIu64 "-%s-%08" PRIx32 "%s\"", h->snap->checkpoint, variant,
             h->etag_epoch, http_snapshot_has_counts(h->snap) ? "" : "-e");
}

/* ---- readiness and start-up --------------------------------------------------------------- */

/* True when tallyd says it is ready and there is a snapshot to serve; otherwise writes why
 * (one line, NUL-terminated) into reason. A broken catalog comes first: it never heals,
 * whatever the hook says. */
static bool server_is_ready(const struct http_server *h, char *reason, size_t len)
{
    reason[0] = '\0';
    if (h->cat && !h->has_layout) {
        snprintf(reason, len,
                 "the registry is inconsistent (a project names a missing "
                 "circuit): restart tallyd");
        return false;
    }
    if (!h->hooks.is_ready || !h->hooks.is_ready(h->hooks.arg, reason, len)) {
        reason[len - 1] = '\0'; /* a hook that filled the buffer without terminating it */
        if (!reason[0])
            snprintf(reason, len, "not recovered or PostgreSQL unreachable");
        return false;
    }
    if (!h->cat) {
        snprintf(reason, len, "the registry is not loaded yet");
        return false;
    }
    if (!h->snap) {
        snprintf(reason, len, "no checkpoint published yet");
        return false;
    }
    return true;
}

/* What every /v1 route and the dashboard page answer until the first snapshot: 503 and the
 * reason, with Retry-After so that clients and proxies poll again soon rather than give
 * up (a standby may wait for the writer lock a long time). */
static void reply_starting(struct http_server *h, struct evhttp_request *req)
{
    char reason[REASON_MAX], message[REASON_MAX + 32];
    server_is_ready(h, reason, sizeof(reason));
    snprintf(message, sizeof(message), "tallyd is starting: %s", reason);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    http_reply_error(req, 503, "Service Unavailable", message);
}

/* ---- /v1 handlers ------------------------------------------------------------------------- */

/* Parses a decimal uint32 with nothing around it. */
static bool parse_u32(const char *s, uint32_t *out)
{
    if (!s || !*s || strlen(s) > 10)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static void free_text(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* Reads ?state= and ?circuit= into f; answers the error itself and returns -1. */
static int parse_filter(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q, struct http_filter *f)
{
    f->state = f->circuit = -1;
    const char *state = evhttp_find_header(q, "state");
    const char *circuit = evhttp_find_header(q, "circuit");
    if (state) {
        f->state = http_layout_find_state(&h->layout, state);
        if (f->state < 0) {
            http_reply_error(req, 404, "Not Found", "unknown state");
            return -1;
        }
    }
    if (circuit) {
        uint32_t id;
        if (!parse_u32(circuit, &id)) {
            http_reply_error(req, 400, "Bad Request", "circuit must be a circuit id");
            return -1;
        }
        f->circuit = http_layout_find_circuit(&h->layout, id);
        if (f->circuit < 0) {
            http_reply_error(req, 404, "Not Found", "unknown circuit");
            return -1;
        }
    }
    return 0;
}

static void get_summary(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q)
{
    (void)q;
    char etag[96];
    snap_etag(h, "summary", etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    http_render_summary(h->snap, b);
    reply(req, JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_results(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q)
{
    struct http_filter f;
    if (parse_filter(h, req, q, &f))
        return;
    const char *format = evhttp_find_header(q, "format");
    bool csv = format && strcmp(format, "csv") == 0;
    if (format && !csv && strcmp(format, "json") != 0) {
        http_reply_error(req, 400, "Bad Request", "format must be json or csv");
        return;
    }
    char variant[64], etag[128];
    snprintf(variant, sizeof(variant), "results%s", csv ? "-csv" : "");
    if (f.state >= 0)
        snprintf(variant + strlen(variant), sizeof(variant) - strlen(variant), "-s%" PRId64,
                 f.state);
    if (f.circuit >= 0)
        snprintf(variant + strlen(variant), sizeof(variant) - strlen(variant), "-c%" PRId64,
                 f.circuit);
    snap_etag(h, variant, etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    bool all = f.state < 0 && f.circuit < 0;
    if (csv && all) {
        http_snapshot_add_results_csv(h->snap, b);
    } else if (all) {
        http_snapshot_add_results_json(h->snap, b);
    } else {
        size_t len;
        char *text = http_render_results(h->snap, &f, csv, &len);
        evbuffer_add_reference(b, text, len, free_text, NULL);
    }
    reply(req, csv ? "text/csv; charset=utf-8" : JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_circuits(struct http_server *h, struct evhttp_request *req,
                         const struct evkeyvalq *q)
{
    struct http_filter f;
    if (evhttp_find_header(q, "circuit")) {
        http_reply_error(req, 400, "Bad Request", "use /v1/circuits/{id} for one circuit");
        return;
    }
    if (parse_filter(h, req, q, &f))
        return;
    char variant[64], etag[128];
    snprintf(variant, sizeof(variant), "circuits");
    if (f.state >= 0)
        snprintf(variant, sizeof(variant), "circuits-s%" PRId64, f.state);
    snap_etag(h, variant, etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    http_render_circuits(h->snap, f.state, b);
    reply(req, JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_circuit(struct http_server *h, struct evhttp_request *req, const char *id_text)
{
    uint32_t id;
    int64_t c = parse_u32(id_text, &id) ? http_layout_find_circuit(&h->layout, id) : -1;
    if (c < 0) {
        http_reply_error(req, 404, "Not Found", "unknown circuit");
        return;
    }
    char variant[32], etag[96];
    snprintf(variant, sizeof(variant), "circuit-%" PRIu32, id);
    snap_etag(h, variant, etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    http_render_circuit(h->snap, (uint32_t)c, b);
    reply(req, JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_collectors(struct http_server *h, struct evhttp_request *req,
                           const struct evkeyvalq *q)
{
    (void)q;
    char etag[96];
    snap_etag(h, "collectors", etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    http_render_collectors(h->snap, b);
    reply(req, JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_states(struct http_server *h, struct evhttp_request *req, const struct evkeyvalq *q)
{
    (void)q;
    char etag[96];
    snap_etag(h, "states", etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    http_render_states(h->snap, b);
    reply(req, JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_corrections(struct http_server *h, struct evhttp_request *req,
                            const struct evkeyvalq *q)
{
    (void)q;
    char etag[96];
    snap_etag(h, "corrections", etag, sizeof(etag));
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    http_render_corrections(h->snap, &h->corrections, b);
    reply(req, JSON_TYPE, etag, b);
    evbuffer_free(b);
}

static void get_events(struct http_server *h, struct evhttp_request *req, const struct evkeyvalq *q)
{
    const char *last = evhttp_find_header(evhttp_request_get_input_headers(req), "Last-Event-ID");
    if (!last) /* for clients that cannot set headers on the first connect */
        last = evhttp_find_header(q, "last_event_id");
    http_events_subscribe(&h->events, req, h->snap, last);
}

/* ---- unversioned handlers ----------------------------------------------------------------- */

static void get_metrics(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q)
{
    (void)q;
    struct http_metrics m;
    memset(&m, 0, sizeof(m));
    if (h->hooks.metrics) {
        h->hooks.metrics(h->hooks.arg, &m);
    } else if (h->snap) {
        m.votes_accepted = h->snap->totals.accepted;
        m.votes_duplicate = h->snap->totals.duplicate;
        m.votes_rejected_unknown_project = h->snap->totals.rejected_unknown_project;
        m.votes_rejected_not_allowed = h->snap->totals.rejected_not_allowed;
        m.writer_epoch = h->snap->writer_epoch;
    }
    struct http_metrics_extra x = {
        .snap = h->snap,
        .sse_subscribers = h->events.n_subs,
        .sse_dropped = h->events.dropped,
        .http_requests = h->requests,
    };
    struct evbuffer *b = evbuffer_new();
    http_render_metrics(&m, &x, b);
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(hd, "Cache-Control", "no-store");
    http_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void reply_status(struct evhttp_request *req, int code, const char *reason,
                         struct evbuffer *b)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", JSON_TYPE);
    evhttp_add_header(hd, "Cache-Control", "no-store");
    http_send_reply(req, code, reason, b);
}

static void get_healthz(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q)
{
    (void)h;
    (void)q;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"status\":\"alive\"}\n");
    reply_status(req, 200, "OK", b);
    evbuffer_free(b);
}

/* 200 once ready; 503 with why not, for whoever watches a standby wait for the lock. */
static void get_readyz(struct http_server *h, struct evhttp_request *req, const struct evkeyvalq *q)
{
    (void)q;
    char reason[REASON_MAX];
    struct evbuffer *b = evbuffer_new();
    if (server_is_ready(h, reason, sizeof(reason))) {
        evbuffer_add_printf(b, "{\"status\":\"ready\",\"ready\":true}\n");
        reply_status(req, 200, "OK", b);
    } else {
        evbuffer_add_printf(b, "{\"status\":\"not ready\",\"ready\":false,\"reason\":");
        http_json_string(b, reason);
        evbuffer_add(b, "}\n", 2);
        reply_status(req, 503, "Service Unavailable", b);
    }
    evbuffer_free(b);
}

/* ---- the dashboard ------------------------------------------------------------------------ */

#ifdef HTTP_HAVE_ASSETS
static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t x = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        x = (x ^ p[i]) * 0x100000001b3ULL;
    return x;
}

static int64_t find_asset(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < http_assets_count; i++)
        if (strcmp(http_assets[i].path, path) == 0)
            return (int64_t)i;
    return -1;
}

/* The files change only with the binary, whose ETag is their hash; "no-cache" makes the
 * browser revalidate (a cheap 304) so an upgrade never mixes old and new files. */
static void get_asset(struct http_server *h, struct evhttp_request *req, size_t i)
{
    const struct http_asset *a = &http_assets[i];
    const char *etag = h->asset_etags[i];
    if (not_modified(req, etag)) {
        reply_not_modified(req, etag);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", a->content_type);
    evhttp_add_header(hd, "Cache-Control", "no-cache");
    evhttp_add_header(hd, "ETag", etag);
    http_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}
#endif

/* ---- routing ------------------------------------------------------------------------------ */

typedef void (*route_cb)(struct http_server *h, struct evhttp_request *req,
                         const struct evkeyvalq *q);

static const struct route {
    const char *path;
    route_cb fn;
    bool needs_snapshot;
} routes[] = {
    {"/v1/summary", get_summary, true},         {"/v1/results", get_results, true},
    {"/v1/circuits", get_circuits, true},       {"/v1/collectors", get_collectors, true},
    {"/v1/events", get_events, true},           {"/v1/states", get_states, true},
    {"/v1/corrections", get_corrections, true}, {"/metrics", get_metrics, false},
    {"/healthz", get_healthz, false},           {"/readyz", get_readyz, false},
};

#define CIRCUIT_PREFIX "/v1/circuits/"
#define RECEIPT_PREFIX "/v1/receipts/"

/* True when a Connection header of the request lists the token "close". evhttp 2.1 closes
 * only on a header that is exactly "close" (one header, one token), so "keep-alive, close"
 * or "Close, TE" would keep the connection open. */
static bool wants_close(struct evhttp_request *req)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    for (const struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "Connection") != 0)
            continue;
        for (const char *p = kv->value; *p;) {
            p += strspn(p, " \t,");
            size_t n = strcspn(p, " \t,");
            if (n == 5 && evutil_ascii_strncasecmp(p, "close", 5) == 0)
                return true;
            p += n;
        }
    }
    return false;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    LOOPWATCH_SCOPE();
    struct http_server *h = arg;
    h->requests++;
    /* Said in the answer, and evhttp closes after it once the output headers say so. */
    if (wants_close(req)) {
        struct evkeyvalq *out = evhttp_request_get_output_headers(req);
        evhttp_remove_header(out, "Connection");
        evhttp_add_header(out, "Connection", "close");
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if ((cmd & KNOWN_METHODS) == 0) {
        http_reply_error(req, 501, "Not Implemented", "method not implemented");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";

    const struct route *r = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(path, routes[i].path) == 0)
            r = &routes[i];
    bool circuit = !r && strncmp(path, CIRCUIT_PREFIX, strlen(CIRCUIT_PREFIX)) == 0;
    bool receipt = !r && strncmp(path, RECEIPT_PREFIX, strlen(RECEIPT_PREFIX)) == 0;
    int64_t asset = -1;
#ifdef HTTP_HAVE_ASSETS
    if (!r && !circuit && !receipt)
        asset = find_asset(path);
#endif
    if (!r && !circuit && !receipt && asset < 0) {
        http_reply_error(req, 404, "Not Found", "not found");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        http_reply_error(req, 405, "Method Not Allowed", "method not allowed");
        return;
    }
    if (strncmp(path, "/v1/", 4) == 0)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Access-Control-Allow-Origin",
                          "*");
#ifdef HTTP_HAVE_ASSETS
    if (asset >= 0) {
        /* The page would only show errors until the API answers; its scripts and styles
         * have nothing to wait for. */
        if (!h->snap && strcmp(http_assets[asset].path, "/index.html") == 0)
            reply_starting(h, req);
        else
            get_asset(h, req, (size_t)asset);
        return;
    }
#endif
    if ((circuit || receipt || r->needs_snapshot) && !h->snap) {
        reply_starting(h, req);
        return;
    }
    if (receipt) {
        http_receipts_route(req, path + strlen(RECEIPT_PREFIX), h->receipt_cb, h->receipt_arg);
        return;
    }
    if (circuit) {
        get_circuit(h, req, path + strlen(CIRCUIT_PREFIX));
        return;
    }
    struct evkeyvalq q;
    q.tqh_first = NULL; /* TAILQ_INIT, which event2 does not export */
    q.tqh_last = &q.tqh_first;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (query && evhttp_parse_query_str(query, &q) != 0) {
        evhttp_clear_headers(&q);
        http_reply_error(req, 400, "Bad Request", "malformed query string");
        return;
    }
    r->fn(h, req, &q);
    evhttp_clear_headers(&q);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* Records the catalog and derives its layout; -1 (logged) when it is inconsistent, and
 * then h->cat is still set, so that /readyz says why and nothing is published. */
static int use_catalog(struct http_server *h, const struct http_catalog *catalog)
{
    h->cat = catalog;
    if (http_layout_init(&h->layout, catalog) != 0) {
        log_error("HTTP: the catalog names a circuit it does not have");
        return -1;
    }
    h->has_layout = true;
    http_corrections_init(&h->corrections, &h->layout);
    return 0;
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct http_server *h = arg;
    evconnlistener_enable(evhttp_bound_socket_get_listener(h->bound));
}

/* The listener's callback argument is evhttp's own, so its error callback finds our server
 * by listener. A handful of servers at most per process (one in tallyd), all on the loop. */
static struct http_server *listening[8];

static struct http_server *server_of_listener(struct evconnlistener *l)
{
    for (size_t i = 0; i < sizeof(listening) / sizeof(listening[0]); i++)
        if (listening[i] && evhttp_bound_socket_get_listener(listening[i]->bound) == l)
            return listening[i];
    return NULL;
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)arg; /* evhttp's, not ours */
    struct http_server *h = server_of_listener(l);
    if (!h) {
        evconnlistener_disable(l); /* cannot happen; never spin */
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        log_warn("HTTP: accept failed: %s", evutil_socket_error_to_string(err));
        return;
    }
    evconnlistener_disable(l);
    time_t now = time(NULL);
    if (now - h->accept_last_pause > 10)
        h->accept_backoff_ms = 0; /* a new episode */
    h->accept_last_pause = now;
    h->accept_backoff_ms = h->accept_backoff_ms ? h->accept_backoff_ms * 2 : 100;
    if (h->accept_backoff_ms > 1000)
        h->accept_backoff_ms = 1000;
    if (h->accept_pauses++ % 64 == 0)
        log_warn("HTTP: cannot accept (%s): pausing the listener for %d ms (pause %llu)",
                 evutil_socket_error_to_string(err), h->accept_backoff_ms,
                 (unsigned long long)h->accept_pauses);
    struct timeval tv = {h->accept_backoff_ms / 1000, (h->accept_backoff_ms % 1000) * 1000};
    event_add(h->accept_retry, &tv);
}

struct http_server *http_server_new(struct event_base *base, const char *host, uint16_t port,
                                    const struct http_catalog *catalog,
                                    const struct http_hooks *hooks)
{
    struct http_server *h = xcalloc(1, sizeof(*h));
    if (hooks)
        h->hooks = *hooks;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->etag_epoch = (uint32_t)((uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^
                               ((uint64_t)getpid() << 16));
    if (catalog && use_catalog(h, catalog) != 0)
        goto fail;
    if (http_events_init(&h->events, base) != 0)
        goto fail;
#ifdef HTTP_HAVE_ASSETS
    h->asset_etags = xcalloc(http_assets_count, sizeof(*h->asset_etags));
    for (size_t i = 0; i < http_assets_count; i++)
        snprintf(h->asset_etags[i], sizeof(h->asset_etags[i]), "\"a-%016" PRIx64 "\"",
                 fnv1a(http_assets[i].data, http_assets[i].len));
#endif
    h->http = evhttp_new(base);
    if (!h->http)
        goto fail;
    h->bound = evhttp_bind_socket_with_handle(h->http, host, port);
    if (!h->bound) {
        log_error("cannot serve HTTP on %s:%u: %s", host, port,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto fail;
    }
    h->accept_retry = evtimer_new(base, accept_retry_cb, h);
    for (size_t i = 0; i < sizeof(listening) / sizeof(listening[0]); i++)
        if (!listening[i]) {
            listening[i] = h;
            evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(h->bound),
                                        accept_error_cb);
            break;
        }
    /* Every method reaches on_request, so anything but GET/HEAD gets our 405 (or 501) with
     * a JSON body rather than evhttp's HTML 501. */
    evhttp_set_allowed_methods(h->http, (ev_uint16_t)(KNOWN_METHODS | HTTP_REQ_UNKNOWN));
    evhttp_set_max_body_size(h->http, 64 * 1024);
    evhttp_set_max_headers_size(h->http, 16 * 1024);
    evhttp_set_gencb(h->http, on_request, h);
    evhttp_set_timeout(h->http, 30);
    return h;
fail:
    http_server_free(h);
    return NULL;
}

void http_server_free(struct http_server *h)
{
    if (!h)
        return;
    /* Streams first: evhttp_free() then frees their connections without calling back. */
    http_events_cleanup(&h->events);
    if (h->http)
        evhttp_free(h->http);
    if (h->accept_retry)
        event_free(h->accept_retry);
    for (size_t i = 0; i < sizeof(listening) / sizeof(listening[0]); i++)
        if (listening[i] == h)
            listening[i] = NULL;
    http_snapshot_unref(h->snap);
    if (h->has_layout)
        http_corrections_cleanup(&h->corrections);
    http_layout_cleanup(&h->layout);
    free(h->asset_etags);
    SSL_CTX_free(h->tls);
    free(h);
}

/* evhttp's bevcb: each accepted socket gets a server-side TLS bufferevent. Never NULL: evhttp
 * would fall back to a plain socket bufferevent and serve HTTP on the HTTPS port. */
static struct bufferevent *make_tls_bev(struct event_base *base, void *arg)
{
    struct http_server *h = arg;
    SSL *ssl = SSL_new(h->tls);
    if (!ssl)
        abort(); /* allocation failure; the context was checked when it was made */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        abort(); /* allocation failure (ssl is freed with it: BEV_OPT_CLOSE_ON_FREE) */
    /* A client that closes without close_notify (most do, once they have their
     * Content-Length) ends the connection like a TCP EOF rather than as an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int http_server_use_tls(struct http_server *h, SSL_CTX *ctx)
{
    if (!ctx || h->tls) {
        log_error("HTTP: %s", ctx ? "TLS is already set" : "no TLS context");
        return -1;
    }
    SSL_CTX_up_ref(ctx);
    h->tls = ctx;
    evhttp_set_bevcb(h->http, make_tls_bev, h);
    return 0;
}

void http_server_set_catalog(struct http_server *h, const struct http_catalog *catalog)
{
    assert(catalog && !h->cat);
    /* Snapshots point into the layout: replacing it under them would not be safe. */
    if (!catalog || h->cat) {
        log_error("HTTP: the catalog can be set only once: ignored");
        return;
    }
    (void)use_catalog(h, catalog); /* a failure leaves the server starting, /readyz says why */
}

uint16_t http_server_port(const struct http_server *h)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h->bound);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

void http_server_publish(struct http_server *h, const struct http_checkpoint *cp)
{
    if (!h->has_layout) {
        /* No catalog to rank the votes against; an inconsistent one was logged when set. */
        if (!h->cat)
            log_error("HTTP: checkpoint %" PRIu64 " published before the catalog: ignored", cp->id);
        return;
    }
    size_t had = h->corrections.n;
    http_corrections_update(&h->corrections, &h->layout, cp);
    struct http_snapshot *s =
        http_snapshot_new(&h->layout, cp, h->snap, h->corrections.corrected_ms);
    s->corrections_from = had;
    s->corrections_to = h->corrections.n;
    bool status_changed = h->snap && http_status_differs(&h->snap->status, &s->status);
    if (status_changed)
        h->status_gen++;
    s->status_gen = h->status_gen;
    if (h->snap && (h->snap->checkpoint == cp->id || status_changed))
        h->etag_epoch = h->etag_epoch * 2654435761u + 1;
    http_snapshot_unref(h->snap); /* in-flight responses keep their own reference */
    h->snap = s;
    if (status_changed)
        http_events_status_changed(&h->events, s);
    else
        http_events_publish(&h->events, s, cp, &h->corrections);
}

void http_server_set_receipts(struct http_server *h, http_receipt_cb cb, void *arg)
{
    h->receipt_cb = cb;
    h->receipt_arg = arg;
}
