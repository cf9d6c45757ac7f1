/* GET /v1/events: Server-Sent Events over evhttp's chunked replies. Owns the subscriber
 * list, the ring of recent events kept for Last-Event-ID replay, the keepalive timer and
 * the dropping of subscribers that fall behind. Events are rendered once and shared by
 * reference among every subscriber's output buffer. Does not build snapshots. */
#include "http/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "core/loopwatch.h"
#include "core/log.h"
#include "core/xalloc.h"

/* One rendered event, shared by the ring and by every buffer it was queued on. */
struct http_sse_blob {
    unsigned refs;
    size_t len;
    char data[];
};

struct http_sse_sub {
    struct http_sse_sub *prev, *next;
    struct http_events *ev;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
};

static struct http_sse_blob *blob_new(struct evbuffer *b)
{
    size_t len = evbuffer_get_length(b);
    struct http_sse_blob *blob = xmalloc(sizeof(*blob) + len);
    blob->refs = 1;
    blob->len = len;
    evbuffer_remove(b, blob->data, len);
    return blob;
}

static void blob_unref(struct http_sse_blob *blob)
{
    if (blob && --blob->refs == 0)
        free(blob);
}

static void blob_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    blob_unref(arg);
}

static void add_blob(struct evbuffer *b, struct http_sse_blob *blob)
{
    blob->refs++;
    if (evbuffer_add_reference(b, blob->data, blob->len, blob_cleanup, blob) != 0)
        abort();
}

/* ---- subscribers ---------------------------------------------------------------------------- */

static void sub_unlink(struct http_sse_sub *sub)
{
    struct http_events *ev = sub->ev;
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        ev->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    ev->n_subs--;
}

/* Stops evhttp from calling back into a subscriber that is going away. */
static void sub_forget(struct http_sse_sub *sub)
{
    evhttp_connection_set_closecb(sub->evcon, NULL, NULL);
    evhttp_request_set_on_complete_cb(sub->req, NULL, NULL);
    sub_unlink(sub);
}

static size_t sub_backlog(const struct http_sse_sub *sub)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(sub->evcon);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* Too far behind: close the connection; the client reconnects with Last-Event-ID and
 * gets a replay or a reset. Never called from this connection's own callbacks. */
static void sub_drop(struct http_sse_sub *sub, size_t backlog)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(sub->evcon, &addr, &port);
    char peer[96];
    snprintf(peer, sizeof(peer), "%s:%u", addr ? addr : "?", port);
    log_conn(LOG_WARN, peer, NULL, "event stream dropped: %zu bytes unsent", backlog);
    sub->ev->dropped++;
    sub_forget(sub);
    evhttp_connection_free(sub->evcon); /* frees the request too */
    free(sub);
}

/* The client went away (or the write timed out). evhttp has detached the unfinished
 * request from the dying connection and left it to us; when it has not, the connection
 * frees it. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct http_sse_sub *sub = arg;
    (void)evcon;
    evhttp_request_set_on_complete_cb(sub->req, NULL, NULL);
    sub_unlink(sub);
    if (!evhttp_request_get_connection(sub->req))
        evhttp_request_free(sub->req);
    free(sub);
}

/* evhttp finished the reply on its own (an error answer on a broken stream): the request
 * is freed right after this returns. */
static void on_complete(struct evhttp_request *req, void *arg)
{
    LOOPWATCH_SCOPE();
    struct http_sse_sub *sub = arg;
    (void)req;
    sub_forget(sub);
    free(sub);
}

static void sub_send(struct http_sse_sub *sub, struct evbuffer *b)
{
    evhttp_send_reply_chunk(sub->req, b);
}

static void broadcast(struct http_events *ev, struct http_sse_blob *blob, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    for (struct http_sse_sub *sub = ev->subs, *next; sub; sub = next) {
        next = sub->next;
        size_t backlog = sub_backlog(sub);
        if (backlog > HTTP_SSE_MAX_BACKLOG) {
            sub_drop(sub, backlog);
            continue;
        }
        if (blob)
            add_blob(b, blob);
        else
            evbuffer_add_reference(b, text, strlen(text), NULL, NULL);
        sub_send(sub, b);
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    evbuffer_free(b);
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    broadcast(arg, NULL, ": keepalive\n\n");
}

/* ---- the ring ------------------------------------------------------------------------------- */

static void ring_evict(struct http_events *ev)
{
    size_t k = ev->ring_head;
    ev->floor = ev->ring[k].id;
    ev->ring_bytes -= ev->ring[k].blob->len;
    blob_unref(ev->ring[k].blob);
    ev->ring[k].blob = NULL;
    ev->ring_head = (k + 1) % HTTP_SSE_RING;
    ev->ring_count--;
}

static void ring_push(struct http_events *ev, uint64_t id, struct http_sse_blob *blob)
{
    while (ev->ring_count == HTTP_SSE_RING ||
           (ev->ring_count > 0 && ev->ring_bytes + blob->len > HTTP_SSE_RING_BYTES))
        ring_evict(ev);
    size_t k = (ev->ring_head + ev->ring_count) % HTTP_SSE_RING;
    ev->ring[k].id = id;
    ev->ring[k].blob = blob;
    ev->ring_bytes += blob->len;
    ev->ring_count++;
}

static void ring_clear(struct http_events *ev)
{
    while (ev->ring_count > 0)
        ring_evict(ev);
}

/* ---- public --------------------------------------------------------------------------------- */

int http_events_init(struct http_events *ev, struct event_base *base)
{
    memset(ev, 0, sizeof(*ev));
    ev->keepalive = event_new(base, -1, EV_PERSIST, on_keepalive, ev);
    if (!ev->keepalive)
        return -1;
    struct timeval tv = {HTTP_SSE_KEEPALIVE_MS / 1000, (HTTP_SSE_KEEPALIVE_MS % 1000) * 1000};
    event_add(ev->keepalive, &tv);
    return 0;
}

void http_events_cleanup(struct http_events *ev)
{
    if (ev->keepalive)
        event_free(ev->keepalive);
    /* The requests and connections go with evhttp_free(). */
    while (ev->subs) {
        struct http_sse_sub *sub = ev->subs;
        sub_forget(sub);
        free(sub);
    }
    ring_clear(ev);
    memset(ev, 0, sizeof(*ev));
}

void http_events_publish(struct http_events *ev, struct http_snapshot *snap,
                         const struct http_checkpoint *cp, const struct http_corrections *corr)
{
    uint64_t id = snap->checkpoint;
    if (!ev->started) {
        /* The recovered state: nothing happened in this process before it. */
        ev->started = true;
        ev->floor = ev->latest = id;
        ev->gen = snap->status_gen;
        return;
    }
    if (id == ev->latest)
        return; /* the same checkpoint again (fresher collector states): no event */
    if (id < ev->latest) {
        log_warn("checkpoint id went back from %" PRIu64 " to %" PRIu64 ": event history reset",
                 ev->latest, id);
        ring_clear(ev);
        ev->floor = ev->latest = id;
        struct evbuffer *b = evbuffer_new();
        http_render_event_reset(snap, b);
        struct http_sse_blob *blob = blob_new(b);
        evbuffer_free(b);
        broadcast(ev, blob, NULL);
        blob_unref(blob);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    http_render_event_checkpoint(snap, cp->changed, cp->changed ? cp->n_changed : 0, b);
    /* The corrections it made durable follow it in the same ring entry, with its id, so a
     * replay from Last-Event-ID brings them exactly once. */
    http_render_event_corrections(snap, corr, snap->corrections_from, snap->corrections_to, b);
    struct http_sse_blob *blob = blob_new(b);
    evbuffer_free(b);
    ring_push(ev, id, blob); /* the ring takes the first reference */
    ev->latest = id;
    broadcast(ev, blob, NULL);
}

void http_events_status_changed(struct http_events *ev, struct http_snapshot *snap)
{
    /* Events rendered before the change may hold counts the new status hides (or lack the
     * ones it shows): none is replayed, and everyone starts over from the new state. */
    ring_clear(ev);
    ev->started = true;
    ev->floor = ev->latest = snap->checkpoint;
    ev->gen = snap->status_gen;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    http_snapshot_add_reset_event(snap, b);
    struct http_sse_blob *blob = blob_new(b);
    evbuffer_free(b);
    broadcast(ev, blob, NULL);
    blob_unref(blob);
}

static const char *parse_digits(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return NULL;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return s;
}

/* A Last-Event-ID: "<checkpoint>" or "<checkpoint>-<status gen>" (gen 0 when absent). */
static bool parse_event_id(const char *s, uint64_t *id, uint64_t *gen)
{
    if (!s)
        return false;
    while (*s == ' ')
        s++;
    if (!(s = parse_digits(s, id)))
        return false;
    *gen = 0;
    if (*s == '-' && !(s = parse_digits(s + 1, gen)))
        return false;
    while (*s == ' ')
        s++;
    return *s == '\0';
}

void http_events_subscribe(struct http_events *ev, struct evhttp_request *req,
                           struct http_snapshot *snap, const char *last_event_id)
{
    if (ev->n_subs >= HTTP_SSE_MAX_SUBSCRIBERS) {
        http_reply_error(req, 503, "Service Unavailable", "too many event-stream subscribers");
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    evhttp_send_reply_start(req, 200, "OK");
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return;

    struct http_sse_sub *sub = xcalloc(1, sizeof(*sub));
    sub->ev = ev;
    sub->req = req;
    sub->evcon = evcon;
    sub->next = ev->subs;
    if (ev->subs)
        ev->subs->prev = sub;
    ev->subs = sub;
    ev->n_subs++;
    evhttp_connection_set_closecb(evcon, on_close, sub);
    evhttp_request_set_on_complete_cb(req, on_complete, sub);
    /* evhttp watches for reads during a reply only to notice a close: a read timeout would
     * cut every quiet stream. A write that makes no progress for this long still drops it. */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    struct timeval wtv = {HTTP_SSE_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(bev, NULL, &wtv);

    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    evbuffer_add_printf(b, "retry: 3000\n\n");
    uint64_t k, gen;
    if (!parse_event_id(last_event_id, &k, &gen)) {
        http_render_event_snapshot(snap, b);
    } else if (k < ev->floor || k > ev->latest || gen != ev->gen) {
        /* Older than what the ring keeps, from another run, or from before a status change
         * (the embargo): resend everything. */
        http_snapshot_add_reset_event(snap, b);
    } else {
        for (size_t n = 0; n < ev->ring_count; n++) {
            size_t i = (ev->ring_head + n) % HTTP_SSE_RING;
            if (ev->ring[i].id > k)
                add_blob(b, ev->ring[i].blob);
        }
    }
    sub_send(sub, b);
    evbuffer_free(b);
}
