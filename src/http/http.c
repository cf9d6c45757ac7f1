/* The evhttp server's life: binds the port (optionally speaking TLS through
 * bufferevent_openssl under evhttp; the SSL_CTX comes from the caller, src/tls), pauses the
 * listener while accept runs out of descriptors, takes the catalog, and swaps in the
 * snapshot each checkpoint publishes (with its point of the progress history and, after a
 * status change, a new ETag epoch). Routing and handlers live in routes.c, answers in
 * reply.c, compression in gzip.c, rendering in render.c, the event stream in events.c. */
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
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <openssl/ssl.h>

#include "core/loopwatch.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "http/server.h"
#include "tally/protocol.h"

const double http_checkpoint_bucket_le[HTTP_CHECKPOINT_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

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
    http_history_init(&h->history);
    if (http_events_init(&h->events, base) != 0 || http_gzip_init(&h->gz, base) != 0)
        goto fail;
    http_assets_prepare(h);
    h->http = evhttp_new(base);
    if (!h->http)
        goto fail;
    h->bound = evhttp_bind_socket_with_handle(h->http, host, port);
    if (!h->bound) {
        log_error("cannot serve HTTP on %s:%u: %s", host, port,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto fail;
    }
    /* An answer's last segment goes out at once instead of waiting for the reader's delayed
     * ACK (~40 ms per answer on a kept-alive connection, measured: 66 /v1/results a second
     * on one connection, 3,570 with it). Accepted sockets inherit it from the listener. */
    int one = 1;
    if (setsockopt(evhttp_bound_socket_get_fd(h->bound), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof(one)) != 0)
        log_warn("HTTP: cannot set TCP_NODELAY: %s", strerror(errno));
    h->accept_retry = evtimer_new(base, accept_retry_cb, h);
    for (size_t i = 0; i < sizeof(listening) / sizeof(listening[0]); i++)
        if (!listening[i]) {
            listening[i] = h;
            evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(h->bound),
                                        accept_error_cb);
            break;
        }
    /* Every method reaches the router, so anything but GET/HEAD gets our 405 (or 501) with
     * a JSON body rather than evhttp's HTML 501. */
    evhttp_set_allowed_methods(h->http, (ev_uint16_t)(HTTP_KNOWN_METHODS | HTTP_REQ_UNKNOWN));
    evhttp_set_max_body_size(h->http, 64 * 1024);
    evhttp_set_max_headers_size(h->http, 16 * 1024);
    evhttp_set_gencb(h->http, http_route_request, h);
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
    /* Streams and waiting requests first: evhttp_free() then frees their connections
     * without calling back. */
    http_events_cleanup(&h->events);
    http_gzip_cleanup(&h->gz);
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
    http_history_cleanup(&h->history);
    http_assets_free(h);
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

/* The history point of a snapshot: national and cumulative, every rejection reason of
 * votes together (as /v1/collectors counts them). */
static struct http_history_point history_point(const struct http_snapshot *s)
{
    const struct http_totals *t = &s->totals;
    uint64_t rejected = t->rejected_unknown_project + t->rejected_not_allowed;
    for (unsigned r = 3; r <= TALLY_REASON_VOTE_LAST; r++)
        rejected += t->rejected[r];
    return (struct http_history_point){s->checkpoint, s->committed_ms, t->accepted,
                                       t->duplicate,  rejected,        s->progress.tables_reported};
}

/* The recovered history comes with the first publish; checkpoint 0 (nothing committed)
 * is no point. */
static void history_update(struct http_server *h, const struct http_checkpoint *cp,
                           const struct http_snapshot *s)
{
    if (!h->snap && cp->history) {
        uint64_t last = 0;
        for (size_t i = 0; i < cp->n_history; i++) {
            const struct http_history_point *p = &cp->history[i];
            if (p->checkpoint == 0 || p->checkpoint >= cp->id || (i > 0 && p->checkpoint <= last)) {
                log_warn("HTTP: history point %zu (checkpoint %" PRIu64 ") out of order: skipped",
                         i, p->checkpoint);
                continue;
            }
            http_history_add(&h->history, p);
            last = p->checkpoint;
        }
        http_history_set_stride(&h->history, cp->history_stride);
    }
    if (s->checkpoint > 0) {
        struct http_history_point p = history_point(s);
        http_history_add(&h->history, &p);
    }
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
    /* Versions restart from this checkpoint then: a new epoch keeps every tag new. */
    if (h->snap && (status_changed || cp->id < h->snap->checkpoint))
        h->etag_epoch = h->etag_epoch * 2654435761u + 1;
    history_update(h, cp, s);
    http_snapshot_unref(h->snap); /* in-flight responses and jobs keep their own reference */
    h->snap = s;
    if (status_changed && !http_snapshot_has_counts(s))
        http_gzip_counts_hidden(&h->gz);
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
