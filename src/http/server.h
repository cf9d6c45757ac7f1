/* Inside src/http only: the server object and what its four parts share. http.c owns the
 * lifecycle (bind, TLS, accept back-off, publish), routes.c the routing and the handlers,
 * reply.c the answer conventions (errors, ETag and If-None-Match, Accept-Encoding,
 * Cache-Control, Vary), gzip.c the compression (per request, once per asset, and in slices
 * for the big cached renderings). All on the loop thread. */
#ifndef HTTP_SERVER_H
#define HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>
#include <zlib.h>

#include "http/internal.h"

struct evhttp;
struct evhttp_bound_socket;
struct evkeyvalq;
struct ssl_ctx_st;

/* libevent 2.1 marks a method it does not know with this bit (http-internal.h:
 * EVHTTP_REQ_UNKNOWN_) and answers it with its own HTML 501 unless the bit is among the
 * allowed methods; allowed, such requests reach the router, which answers 501 in JSON. */
#if LIBEVENT_VERSION_NUMBER < 0x02020000
#define HTTP_REQ_UNKNOWN (1 << 15)
#else
#define HTTP_REQ_UNKNOWN 0
#endif
#define HTTP_KNOWN_METHODS                                                                         \
    (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |     \
     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

#define HTTP_JSON_TYPE "application/json; charset=utf-8"
#define HTTP_CACHE_PUBLIC "public, max-age=1" /* snapshot documents: a proxy may keep 1 s */
#define HTTP_REASON_MAX 256

/* Compression (gzip.c). Level 1: on the 36,000-project results (5.28 MB of JSON) it makes
 * 956 KB in 20-25 ms, level 6 712 KB in 61 ms; the loop that compresses also takes the
 * votes, and every snapshot (one each checkpoint, 200 ms by default) whose results a client
 * asks for is compressed again, the per-state documents too (docs/api.md, "Compression"). */
#define HTTP_GZIP_LEVEL 1
#define HTTP_GZIP_MIN 1024             /* smaller bodies stay plain */
#define HTTP_GZIP_SYNC_MAX (64u << 10) /* bigger ones are cached and compressed in slices */
#define HTTP_GZIP_CHUNK (16u << 10)    /* input per deflate() call of a slice */
#define HTTP_GZIP_SLICE_NS 2000000     /* a slice stops after the chunk that passes this */

struct http_gzip_waiter;

/* The sliced compression of one cached rendering, and the requests waiting for it. */
struct http_gzip_job {
    TAILQ_ENTRY(http_gzip_job) link;
    struct http_server *h;
    struct http_snapshot *snap; /* our reference: a newer snapshot may be published */
    struct http_cached *entry;
    z_stream z;
    unsigned char *out;
    size_t out_cap, in_off;
    uint32_t crc;
    unsigned slices;
    double longest_s, longest_cpu_s;
    TAILQ_HEAD(, http_gzip_waiter) waiters;
};

/* Jobs at once, at most: beyond, the answer goes plain rather than queue behind them. */
#define HTTP_GZIP_MAX_JOBS 8

struct http_gzip {
    struct event_base *base;
    z_stream sync; /* per-request compression, reset each time */
    bool sync_ready;
    TAILQ_HEAD(, http_gzip_job) jobs; /* round robin: the head gets the next slice */
    size_t n_jobs;
    /* A zero timeout: one slice of one job per loop turn, after the loop has polled (a
     * timer each would run every job's slice in one turn). */
    struct event *ev;
    uint64_t jobs_done;
    double longest_slice_s; /* the longest slice callback so far */
};

/* An embedded dashboard file, compressed once at start (NULL when it stays plain). */
struct http_asset_gz {
    char tag[32]; /* a-<fnv1a of the bytes> */
    unsigned char *gz;
    size_t gz_len;
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
    struct http_history history;
    struct http_gzip gz;
    http_receipt_cb receipt_cb; /* NULL: /v1/receipts answers 503 */
    void *receipt_arg;
    /* Part of every ETag beside the versions: changes at start, at a status change and when
     * the checkpoint id goes back, so no tag is ever reused for another body. */
    uint32_t etag_epoch;
    uint32_t status_gen; /* status changes published (snapshot status_gen) */
    uint64_t requests;
    struct http_asset_gz *assets;
    struct ssl_ctx_st *tls; /* our reference; NULL: plain HTTP */
    /* Out of descriptors, accept fails at once and the listening socket stays readable:
     * evhttp 2.1 sets no error callback, so libevent would call accept in a busy loop. We
     * pause the listener instead, 100 ms doubling to 1 s while it keeps failing. */
    struct event *accept_retry;
    int accept_backoff_ms;
    time_t accept_last_pause;
    uint64_t accept_pauses;
};

/* ---- answers (reply.c) ---------------------------------------------------------------- */

/* How a document is answered: its type, its Cache-Control, its ETag's opaque-tag (made by
 * http_doc_init: the variant, the version, the epoch, "-e" without counts) and whether it
 * may be compressed (then every answer says Vary: Accept-Encoding, and a gzip answer's tag
 * ends in "-gz"). */
struct http_doc {
    const char *type;
    const char *cache_control;
    char tag[128];
    bool weak;
    bool compressible;
};

/* Fills d for the current snapshot: tag is printf(fmt, ...) + "-<epoch>" + "-e" when the
 * snapshot has no counts. */
void http_doc_init(struct http_server *h, struct http_doc *d, const char *type,
                   const char *cache_control, bool weak, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* "<checkpoint>" or "<checkpoint>.<republish>". */
void http_version_format(struct http_version v, char *out, size_t len);
/* True when If-None-Match names d's tag or its gzip tag (weak comparison) or is "*": then
 * it has answered 304 itself, with that tag. */
bool http_doc_not_modified(struct evhttp_request *req, const struct http_doc *d);
/* Content-Type, Cache-Control, Vary and ETag of d, and Content-Encoding when gz. */
void http_doc_headers(struct evhttp_request *req, const struct http_doc *d, bool gz);
/* True when the request's Accept-Encoding takes gzip (or x-gzip, or *) with q > 0. */
bool http_accepts_gzip(struct evhttp_request *req);

/* A body to answer with: a fresh rendering, or a snapshot's cached one, whose head may be
 * replaced (/v1/results?since= with every row). */
struct http_body {
    struct evbuffer *buf;       /* a fresh rendering (the caller frees it), or NULL */
    struct http_snapshot *snap; /* with cached: whose */
    struct http_cached *cached;
    const char *head; /* replaces cached's head; NULL: keep it */
    size_t head_len;
};

/* Answers 200 with b, compressed when d allows, the client takes gzip and the body is at
 * least HTTP_GZIP_MIN bytes: a fresh body at once (when at most HTTP_GZIP_SYNC_MAX bytes;
 * plain above), a cached one from its compressed rows (made now by a sliced job the
 * request then waits for, when not made yet). */
void http_doc_send(struct http_server *h, struct evhttp_request *req, const struct http_doc *d,
                   const struct http_body *b);

/* ---- compression (gzip.c) ------------------------------------------------------------- */

int http_gzip_init(struct http_gzip *g, struct event_base *base)
    __attribute__((warn_unused_result));
/* Ends every job: its waiters' connections forget them (evhttp_free then frees their
 * requests), its snapshot reference is dropped. Before evhttp_free. */
void http_gzip_cleanup(struct http_gzip *g);
/* The published status hides the counts now (the embargo went on): every job on a snapshot
 * with counts ends, its waiters answered 503 with Retry-After (they ask again and get the
 * new snapshot's answer), so that no answer with counts leaves after the publish. */
void http_gzip_counts_hidden(struct http_gzip *g);
/* One gzip member of len bytes at data, appended to out. 0, or -1 (out unchanged). */
int http_gzip_compress(struct http_gzip *g, const void *data, size_t len, struct evbuffer *out)
    __attribute__((warn_unused_result));
/* The same into a malloc'd block (*out, *out_len), for what is compressed once. 0 or -1. */
int http_gzip_compress_flat(const void *data, size_t len, int level, unsigned char **out,
                            size_t *out_len) __attribute__((warn_unused_result));
/* The gzip member of a cached rendering whose rows are compressed (e->gz), with its own
 * head or head (head_len bytes) instead, appended to out (the rows by reference). */
void http_gzip_add_cached(struct http_cached *e, const char *head, size_t head_len,
                          struct evbuffer *out);
/* Compresses e's rows now when they are small (at most HTTP_GZIP_SYNC_MAX bytes). True when
 * e->gz is then ready (or failed: e->gz_failed). */
bool http_gzip_cached_now(struct http_gzip *g, struct http_cached *e);
/* Keeps req waiting for e's compressed rows (starting the job when none runs), to be
 * answered with d and head (copied; NULL: e's own) once they are made; answers plain at
 * once when HTTP_GZIP_MAX_JOBS jobs run already. */
void http_gzip_wait(struct http_server *h, struct http_snapshot *s, struct http_cached *e,
                    struct evhttp_request *req, const struct http_doc *d, const char *head,
                    size_t head_len);

/* ---- routing (routes.c) --------------------------------------------------------------- */

/* evhttp's generic callback: every request. */
void http_route_request(struct evhttp_request *req, void *arg);
/* True when tallyd says it is ready and there is a snapshot to serve; otherwise writes why
 * (one line, NUL-terminated) into reason. */
bool http_server_is_ready(const struct http_server *h, char *reason, size_t len);
/* Compresses the embedded dashboard files and names their ETags (at start). */
void http_assets_prepare(struct http_server *h);
void http_assets_free(struct http_server *h);

#endif
