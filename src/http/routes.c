/* The routes of the HTTP API: the /v1 documents (each named by the version of what it
 * shows, so its ETag changes only when that did), /v1/results?since=, /v1/history, the
 * event stream, /metrics, health, the embedded dashboard, and what every route answers
 * while tallyd starts (no catalog or no snapshot yet). Rendering is render.c's, answering
 * (ETags, gzip, Cache-Control) reply.c's; this file picks the document and its tag.
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
#include "http/server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/loopwatch.h"
#include "core/xalloc.h"
#ifdef HTTP_HAVE_ASSETS
#include "http/assets/assets.h"
#endif

#define CSV_TYPE "text/csv; charset=utf-8"

/* ---- readiness and start-up --------------------------------------------------------------- */

/* A broken catalog comes first: it never heals, whatever the hook says. */
bool http_server_is_ready(const struct http_server *h, char *reason, size_t len)
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
    char reason[HTTP_REASON_MAX], message[HTTP_REASON_MAX + 32];
    http_server_is_ready(h, reason, sizeof(reason));
    snprintf(message, sizeof(message), "tallyd is starting: %s", reason);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    http_reply_error(req, 503, "Service Unavailable", message);
}

/* ---- documents ---------------------------------------------------------------------------- */

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

typedef void (*render_cb)(struct http_server *h, const void *arg, struct evbuffer *out);

/* Answers d (304 when the client has it) with render's body: the snapshot's cached one
 * when there is one under d's tag, else a fresh one, kept when too big to compress per
 * request. */
static void send_rendered(struct http_server *h, struct evhttp_request *req,
                          const struct http_doc *d, render_cb render, const void *arg)
{
    if (http_doc_not_modified(req, d))
        return;
    struct http_body b = {.snap = h->snap, .cached = http_snapshot_cached(h->snap, d->tag)};
    if (!b.cached) {
        b.buf = evbuffer_new();
        if (!b.buf)
            abort();
        render(h, arg, b.buf);
        size_t len = evbuffer_get_length(b.buf);
        if (len > HTTP_GZIP_SYNC_MAX) {
            char *flat = xmalloc(len);
            evbuffer_remove(b.buf, flat, len);
            b.cached = http_snapshot_cache_put(h->snap, d->tag, flat, len, 0, false);
            if (b.cached) {
                evbuffer_free(b.buf);
                b.buf = NULL;
            } else if (evbuffer_add_reference(b.buf, flat, len, free_text, NULL) != 0) {
                abort();
            }
        }
    }
    http_doc_send(h, req, d, &b);
    if (b.buf)
        evbuffer_free(b.buf);
}

/* Reads ?state= and ?circuit= into f; answers the error itself and returns -1. */
static int parse_filter(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q, struct http_filter *f)
{
    memset(f, 0, sizeof(*f));
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

static void render_summary(struct http_server *h, const void *arg, struct evbuffer *out)
{
    (void)arg;
    http_render_summary(h->snap, out);
}

static void get_summary(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q)
{
    (void)q;
    char v[48];
    struct http_doc d;
    http_version_format(h->snap->summary_version, v, sizeof(v));
    http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, true, "summary-v%s", v);
    send_rendered(h, req, &d, render_summary, NULL);
}

/* ?since=: 0 with f filled (full when the id is below what changes can be told from, or
 * does not fit 64 bits); -1 not a number; -2 above the current checkpoint. */
static int parse_since(const struct http_snapshot *s, const char *text, struct http_filter *f)
{
    uint64_t v = 0;
    bool big = false;
    if (!*text)
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (!big && v > (UINT64_MAX - d) / 10)
            big = true;
        v = big ? 0 : v * 10 + d;
    }
    f->since = true;
    f->since_big = big;
    if (big) {
        f->full = true;
        return 0;
    }
    /* Above the current checkpoint: the client's rows come from a record that went back
     * or from elsewhere; they are no base for changes. */
    f->since_id = v;
    f->full = v < s->since_min || v > s->checkpoint;
    return 0;
}

/* Which version a results document follows: its circuit's, its state's or the nation's.
 * Under embargo the head carries the national progress, so always the nation's. */
static struct http_version results_version(const struct http_snapshot *s,
                                           const struct http_filter *f)
{
    if (!http_snapshot_has_counts(s))
        return s->results_version;
    if (f->circuit >= 0)
        return s->circuit_version[f->circuit];
    if (f->state >= 0)
        return s->state_version[f->state];
    return s->results_version;
}

/* The rendering of f as b: the snapshot's under key, or a fresh one, kept when it is the
 * national one (every poller's) or big. *head_len: its head's length. */
static void results_body(struct http_server *h, const struct http_filter *f, bool csv,
                         const char *key, struct http_body *b, size_t *head_len)
{
    memset(b, 0, sizeof(*b));
    b->snap = h->snap;
    if ((b->cached = http_snapshot_cached(h->snap, key))) {
        *head_len = b->cached->head_len;
        return;
    }
    size_t len;
    char *text = http_render_results(h->snap, f, csv, &len, head_len);
    /* Rendered into room for every row: give back what a filtered one did not use. */
    text = xreallocarray(text, len ? len : 1, 1);
    bool all = f->state < 0 && f->circuit < 0 && !f->since;
    if ((all || len > HTTP_GZIP_SYNC_MAX) &&
        (b->cached = http_snapshot_cache_put(h->snap, key, text, len, *head_len, all)))
        return;
    b->buf = evbuffer_new();
    if (!b->buf || evbuffer_add_reference(b->buf, text, len, free_text, NULL) != 0)
        abort();
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
    const char *since = evhttp_find_header(q, "since");
    if (since && csv) {
        http_reply_error(req, 400, "Bad Request", "since is JSON only");
        return;
    }
    int rc = since ? parse_since(h->snap, since, &f) : 0;
    if (rc < 0) {
        http_reply_error(req, 400, "Bad Request", "since must be a checkpoint id");
        return;
    }
    char variant[96], v[48];
    int n = snprintf(variant, sizeof(variant), "results%s", csv ? "-csv" : "");
    if (f.state >= 0)
        n += snprintf(variant + n, sizeof(variant) - (size_t)n, "-s%" PRId64, f.state);
    if (f.circuit >= 0)
        snprintf(variant + n, sizeof(variant) - (size_t)n, "-c%" PRIu32,
                 h->layout.cat->circuits[f.circuit].id);
    http_version_format(results_version(h->snap, &f), v, sizeof(v));
    struct http_doc d, base;
    const char *type = csv ? CSV_TYPE : HTTP_JSON_TYPE;
    http_doc_init(h, &base, type, HTTP_CACHE_PUBLIC, true, "%s-v%s", variant, v);
    if (f.since_big)
        http_doc_init(h, &d, type, HTTP_CACHE_PUBLIC, true, "%s-sincebig-v%s", variant, v);
    else if (f.since)
        http_doc_init(h, &d, type, HTTP_CACHE_PUBLIC, true, "%s-since%" PRIu64 "-v%s", variant,
                      f.since_id, v);
    else
        d = base;
    if (http_doc_not_modified(req, &d))
        return;
    struct http_body b;
    size_t head_len;
    if (!f.since || !f.full) {
        /* The plain document, or only the changed rows: its own rendering. */
        results_body(h, &f, csv, d.tag, &b, &head_len);
        http_doc_send(h, req, &d, &b);
        if (b.buf)
            evbuffer_free(b.buf);
        return;
    }
    /* Every row under the since head: the plain document's rows, shared with it. */
    struct http_filter rows = f;
    rows.since = rows.since_big = rows.full = false;
    results_body(h, &rows, false, base.tag, &b, &head_len);
    struct evbuffer *head = evbuffer_new();
    if (!head)
        abort();
    http_render_results_head(h->snap, &f, false, head);
    if (b.cached) {
        b.head_len = evbuffer_get_length(head);
        b.head = (const char *)evbuffer_pullup(head, -1);
    } else {
        evbuffer_drain(b.buf, head_len);
        evbuffer_prepend_buffer(b.buf, head);
    }
    http_doc_send(h, req, &d, &b);
    if (b.buf)
        evbuffer_free(b.buf);
    evbuffer_free(head);
}

static void render_circuits(struct http_server *h, const void *arg, struct evbuffer *out)
{
    http_render_circuits(h->snap, *(const int64_t *)arg, out);
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
    char v[48];
    struct http_doc d;
    if (f.state >= 0) {
        http_version_format(h->snap->state_version[f.state], v, sizeof(v));
        http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, true, "circuits-s%" PRId64 "-v%s",
                      f.state, v);
    } else {
        http_version_format(h->snap->results_version, v, sizeof(v));
        http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, true, "circuits-v%s", v);
    }
    send_rendered(h, req, &d, render_circuits, &f.state);
}

static void render_circuit(struct http_server *h, const void *arg, struct evbuffer *out)
{
    http_render_circuit(h->snap, *(const uint32_t *)arg, out);
}

static void get_circuit(struct http_server *h, struct evhttp_request *req, const char *id_text)
{
    uint32_t id;
    int64_t c = parse_u32(id_text, &id) ? http_layout_find_circuit(&h->layout, id) : -1;
    if (c < 0) {
        http_reply_error(req, 404, "Not Found", "unknown circuit");
        return;
    }
    char v[48];
    struct http_doc d;
    uint32_t ci = (uint32_t)c;
    http_version_format(h->snap->circuit_version[ci], v, sizeof(v));
    http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, true, "c%" PRIu32 "-v%s", id, v);
    send_rendered(h, req, &d, render_circuit, &ci);
}

static void render_collectors(struct http_server *h, const void *arg, struct evbuffer *out)
{
    (void)arg;
    http_render_collectors(h->snap, out);
}

/* Collector states are per snapshot (a republish carries fresher ones): named by it. Not
 * for shared caches: no-cache, as before. */
static void get_collectors(struct http_server *h, struct evhttp_request *req,
                           const struct evkeyvalq *q)
{
    (void)q;
    char v[48];
    struct http_doc d;
    http_version_format((struct http_version){h->snap->checkpoint, h->snap->republish}, v,
                        sizeof(v));
    http_doc_init(h, &d, HTTP_JSON_TYPE, "no-cache", false, "collectors-cp%s", v);
    send_rendered(h, req, &d, render_collectors, NULL);
}

static void render_states(struct http_server *h, const void *arg, struct evbuffer *out)
{
    (void)arg;
    http_render_states(h->snap, out);
}

static void get_states(struct http_server *h, struct evhttp_request *req, const struct evkeyvalq *q)
{
    (void)q;
    char v[48];
    struct http_doc d;
    http_version_format(h->snap->results_version, v, sizeof(v));
    http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, true, "states-v%s", v);
    send_rendered(h, req, &d, render_states, NULL);
}

static void render_corrections(struct http_server *h, const void *arg, struct evbuffer *out)
{
    (void)arg;
    http_render_corrections(h->snap, &h->corrections, out);
}

/* The log only grows: its length names it. */
static void get_corrections(struct http_server *h, struct evhttp_request *req,
                            const struct evkeyvalq *q)
{
    (void)q;
    struct http_doc d;
    http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, true, "corrections-n%zu",
                  h->snap->corrections_to);
    send_rendered(h, req, &d, render_corrections, NULL);
}

static void render_history(struct http_server *h, const void *arg, struct evbuffer *out)
{
    (void)arg;
    http_render_history(h->snap, &h->history, out);
}

/* A point per checkpoint: named by the snapshot. */
static void get_history(struct http_server *h, struct evhttp_request *req,
                        const struct evkeyvalq *q)
{
    (void)q;
    char v[48];
    struct http_doc d;
    http_version_format((struct http_version){h->snap->checkpoint, h->snap->republish}, v,
                        sizeof(v));
    http_doc_init(h, &d, HTTP_JSON_TYPE, HTTP_CACHE_PUBLIC, false, "history-cp%s", v);
    send_rendered(h, req, &d, render_history, NULL);
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
        .gzip_jobs = h->gz.jobs_done,
        .gzip_slice_max_s = h->gz.longest_slice_s,
    };
    struct evbuffer *b = evbuffer_new(), *gz = evbuffer_new();
    if (!b || !gz)
        abort();
    http_render_metrics(&m, &x, b);
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(hd, "Cache-Control", "no-store");
    evhttp_add_header(hd, "Vary", "Accept-Encoding");
    size_t len = evbuffer_get_length(b);
    if (len >= HTTP_GZIP_MIN && http_accepts_gzip(req) &&
        http_gzip_compress(&h->gz, evbuffer_pullup(b, -1), len, gz) == 0) {
        evhttp_add_header(hd, "Content-Encoding", "gzip");
        http_send_reply(req, 200, "OK", gz);
    } else {
        http_send_reply(req, 200, "OK", b);
    }
    evbuffer_free(gz);
    evbuffer_free(b);
}

static void reply_status(struct evhttp_request *req, int code, const char *reason,
                         struct evbuffer *b)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", HTTP_JSON_TYPE);
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
    char reason[HTTP_REASON_MAX];
    struct evbuffer *b = evbuffer_new();
    if (http_server_is_ready(h, reason, sizeof(reason))) {
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
    const struct http_asset_gz *z = &h->assets[i];
    struct http_doc d = {
        .type = a->content_type, .cache_control = "no-cache", .compressible = true};
    snprintf(d.tag, sizeof(d.tag), "%s", z->tag);
    if (http_doc_not_modified(req, &d))
        return;
    bool gz = z->gz && http_accepts_gzip(req);
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    if (gz)
        evbuffer_add_reference(b, z->gz, z->gz_len, NULL, NULL);
    else
        evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
    http_doc_headers(req, &d, gz);
    http_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}
#endif

void http_assets_prepare(struct http_server *h)
{
#ifdef HTTP_HAVE_ASSETS
    h->assets = xcalloc(http_assets_count + 1, sizeof(*h->assets));
    for (size_t i = 0; i < http_assets_count; i++) {
        const struct http_asset *a = &http_assets[i];
        snprintf(h->assets[i].tag, sizeof(h->assets[i].tag), "a-%016" PRIx64,
                 fnv1a(a->data, a->len));
        /* Once, at start: the best compression is worth its few milliseconds. */
        if (a->len >= HTTP_GZIP_MIN &&
            http_gzip_compress_flat(a->data, a->len, 9, &h->assets[i].gz, &h->assets[i].gz_len))
            h->assets[i].gz = NULL;
    }
#else
    (void)h;
#endif
}

void http_assets_free(struct http_server *h)
{
#ifdef HTTP_HAVE_ASSETS
    for (size_t i = 0; h->assets && i < http_assets_count; i++)
        free(h->assets[i].gz);
#endif
    free(h->assets);
    h->assets = NULL;
}

/* ---- routing ------------------------------------------------------------------------------ */

typedef void (*route_cb)(struct http_server *h, struct evhttp_request *req,
                         const struct evkeyvalq *q);

static const struct route {
    const char *path;
    route_cb fn;
    bool needs_snapshot;
} routes[] = {
    {"/v1/summary", get_summary, true},
    {"/v1/results", get_results, true},
    {"/v1/circuits", get_circuits, true},
    {"/v1/collectors", get_collectors, true},
    {"/v1/events", get_events, true},
    {"/v1/states", get_states, true},
    {"/v1/corrections", get_corrections, true},
    {"/v1/history", get_history, true},
    {"/metrics", get_metrics, false},
    {"/healthz", get_healthz, false},
    {"/readyz", get_readyz, false},
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

void http_route_request(struct evhttp_request *req, void *arg)
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
    if ((cmd & HTTP_KNOWN_METHODS) == 0) {
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
