/* gzip (zlib) for the HTTP answers: small bodies per request, the dashboard files once at
 * start, and the big renderings a snapshot keeps (the national results: 5 MB of JSON for
 * 36,000 projects) once per snapshot, lazily, in slices of about 2 ms, one slice of one job
 * per loop turn (round robin, at most HTTP_GZIP_MAX_JOBS jobs), so the loop polls between
 * them; the requests that want one wait in its job and are all answered when it is done. Does not
 * decide who gets gzip (reply.c) nor render. */
#include "http/server.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "core/log.h"
#include "core/loopwatch.h"
#include "core/xalloc.h"

struct http_gzip_waiter {
    TAILQ_ENTRY(http_gzip_waiter) link;
    struct http_gzip_job *job;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct http_doc doc;
    char *head; /* replaces the entry's head; NULL: its own */
    size_t head_len;
};

static double clock_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* ---- one gzip member at once ---------------------------------------------------------- */

static void job_slice(evutil_socket_t fd, short what, void *arg);

int http_gzip_init(struct http_gzip *g, struct event_base *base)
{
    memset(g, 0, sizeof(*g));
    g->base = base;
    TAILQ_INIT(&g->jobs);
    g->ev = evtimer_new(base, job_slice, g);
    if (!g->ev)
        return -1;
    /* windowBits 15 + 16: a gzip header and trailer around the deflate stream. */
    if (deflateInit2(&g->sync, HTTP_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    g->sync_ready = true;
    return 0;
}

/* All of data through z (set up for a gzip or raw stream) into out, growing it. */
static int deflate_all(z_stream *z, const void *data, size_t len, unsigned char **out,
                       size_t *out_len)
{
    size_t cap = deflateBound(z, len);
    unsigned char *buf = xmalloc(cap);
    z->next_in = (unsigned char *)data;
    z->avail_in = (uInt)len;
    z->next_out = buf;
    z->avail_out = (uInt)cap;
    int rc = len > UINT32_MAX ? Z_BUF_ERROR : deflate(z, Z_FINISH);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = cap - z->avail_out;
    return 0;
}

static void free_block(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

int http_gzip_compress(struct http_gzip *g, const void *data, size_t len, struct evbuffer *out)
{
    if (!g->sync_ready || deflateReset(&g->sync) != Z_OK)
        return -1;
    unsigned char *gz;
    size_t gz_len;
    if (deflate_all(&g->sync, data, len, &gz, &gz_len) != 0)
        return -1;
    if (evbuffer_add_reference(out, gz, gz_len, free_block, NULL) != 0)
        abort();
    return 0;
}

int http_gzip_compress_flat(const void *data, size_t len, int level, unsigned char **out,
                            size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    int rc = deflate_all(&z, data, len, out, out_len);
    deflateEnd(&z);
    return rc;
}

/* ---- framing a cached rendering ------------------------------------------------------- */

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* RFC 1952: the gzip header; the head as stored deflate blocks (RFC 1951 3.2.4: BFINAL 0,
 * BTYPE 00, byte-aligned, LEN and its complement), which leave the stream byte-aligned for
 * the rows' own deflate stream (compressed from nothing before it, so it refers to nothing
 * before it); then CRC-32 and length of the whole. */
void http_gzip_add_cached(struct http_cached *e, const char *head, size_t head_len,
                          struct evbuffer *out)
{
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    assert(e->gz);
    if (!head) {
        head = e->body;
        head_len = e->head_len;
    }
    evbuffer_add(out, hdr, sizeof(hdr));
    for (size_t off = 0; off < head_len;) {
        size_t n = head_len - off > 65535 ? 65535 : head_len - off;
        unsigned char b[5] = {0, (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)~n,
                              (unsigned char)(~n >> 8)};
        evbuffer_add(out, b, sizeof(b));
        evbuffer_add(out, head + off, n);
        off += n;
    }
    http_cached_add_bytes(e, out, e->gz, e->gz_len);
    size_t rows = e->len - e->head_len;
    uint32_t crc = (uint32_t)crc32_combine(crc32(0, (const unsigned char *)head, (uInt)head_len),
                                           e->gz_crc, (z_off_t)rows);
    unsigned char trailer[8];
    put_le32(trailer, crc);
    put_le32(trailer + 4, (uint32_t)(head_len + rows));
    evbuffer_add(out, trailer, sizeof(trailer));
}

bool http_gzip_cached_now(struct http_gzip *g, struct http_cached *e)
{
    (void)g;
    size_t rows = e->len - e->head_len;
    if (rows > HTTP_GZIP_SYNC_MAX)
        return false;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, HTTP_GZIP_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        e->gz_failed = true;
        return true;
    }
    if (deflate_all(&z, e->body + e->head_len, rows, &e->gz, &e->gz_len) == 0)
        e->gz_crc = (uint32_t)crc32(0, (const unsigned char *)e->body + e->head_len, (uInt)rows);
    else
        e->gz_failed = true;
    deflateEnd(&z);
    return true;
}

/* ---- the sliced job ------------------------------------------------------------------- */

static void waiter_free(struct http_gzip_waiter *w)
{
    TAILQ_REMOVE(&w->job->waiters, w, link);
    free(w->head);
    free(w);
}

/* The connection failed before the answer (it timed out, or the server is going away;
 * libevent 2.1 reads nothing while a request waits, so a client that just left is seen
 * when its answer is written, after the close callback was cleared): a request evhttp
 * detached from the dying connection is ours to free, one still attached goes with the
 * connection. */
static void waiter_on_close(struct evhttp_connection *evcon, void *arg)
{
    LOOPWATCH_SCOPE();
    struct http_gzip_waiter *w = arg;
    (void)evcon;
    if (!evhttp_request_get_connection(w->req))
        evhttp_request_free(w->req);
    waiter_free(w);
}

static void job_free(struct http_gzip_job *j)
{
    while (!TAILQ_EMPTY(&j->waiters)) {
        struct http_gzip_waiter *w = TAILQ_FIRST(&j->waiters);
        /* The request stays on its connection, which evhttp_free() frees. */
        evhttp_connection_set_closecb(w->evcon, NULL, NULL);
        waiter_free(w);
    }
    TAILQ_REMOVE(&j->h->gz.jobs, j, link);
    j->h->gz.n_jobs--;
    j->entry->job = NULL;
    deflateEnd(&j->z);
    free(j->out);
    http_snapshot_unref(j->snap);
    free(j);
}

/* Answers req with e (under head, when not NULL): its gzip member when its rows are
 * compressed, else plain. */
static void answer(struct evhttp_request *req, const struct http_doc *d, struct http_cached *e,
                   const char *head, size_t head_len)
{
    struct evbuffer *out = evbuffer_new();
    if (!out)
        abort();
    if (e->gz) {
        http_gzip_add_cached(e, head, head_len, out);
    } else {
        if (head)
            evbuffer_add(out, head, head_len);
        else
            http_cached_add_bytes(e, out, e->body, e->head_len);
        http_cached_add_bytes(e, out, e->body + e->head_len, e->len - e->head_len);
    }
    http_doc_headers(req, d, e->gz != NULL);
    http_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

/* Every waiter gets its answer (plain when deflate failed). */
static void job_answer(struct http_gzip_job *j)
{
    while (!TAILQ_EMPTY(&j->waiters)) {
        struct http_gzip_waiter *w = TAILQ_FIRST(&j->waiters);
        evhttp_connection_set_closecb(w->evcon, NULL, NULL);
        answer(w->req, &w->doc, j->entry, w->head, w->head_len);
        waiter_free(w);
    }
}

/* Feeds z until this chunk is taken (and, with Z_FINISH, the stream ended), growing the
 * output. 1: the stream ended; 0: the chunk is in; -1: deflate failed. */
static int job_deflate(struct http_gzip_job *j, int flush)
{
    for (;;) {
        if (j->z.avail_out == 0) {
            j->out_cap *= 2;
            j->out = xreallocarray(j->out, j->out_cap, 1);
            j->z.next_out = j->out + j->z.total_out;
            j->z.avail_out = (uInt)(j->out_cap - j->z.total_out);
        }
        int rc = deflate(&j->z, flush);
        if (rc == Z_STREAM_END)
            return 1;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
        if (flush == Z_NO_FLUSH && j->z.avail_in == 0)
            return 0;
        if (rc == Z_BUF_ERROR && j->z.avail_out != 0)
            return -1; /* no progress with room to write: cannot happen */
    }
}

static void schedule(struct http_gzip *g)
{
    static const struct timeval zero = {0, 0};
    if (!TAILQ_EMPTY(&g->jobs) && !evtimer_pending(g->ev, NULL))
        evtimer_add(g->ev, &zero);
}

/* One slice of the job at the head, which then goes to the tail. */
static void job_slice(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct http_gzip *g = arg;
    struct http_gzip_job *j = TAILQ_FIRST(&g->jobs);
    if (!j)
        return;
    struct http_cached *e = j->entry;
    /* Nobody waits and a newer snapshot took over: nobody will ask for this one again. */
    if (TAILQ_EMPTY(&j->waiters) && j->snap != j->h->snap) {
        job_free(j);
        schedule(g);
        return;
    }
    double t0 = now_s(), cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    const unsigned char *rows = (const unsigned char *)e->body + e->head_len;
    size_t n = e->len - e->head_len;
    int rc = 0;
    do {
        size_t chunk = n - j->in_off < HTTP_GZIP_CHUNK ? n - j->in_off : HTTP_GZIP_CHUNK;
        j->z.next_in = (unsigned char *)rows + j->in_off;
        j->z.avail_in = (uInt)chunk;
        j->crc = (uint32_t)crc32(j->crc, rows + j->in_off, (uInt)chunk);
        rc = job_deflate(j, j->in_off + chunk == n ? Z_FINISH : Z_NO_FLUSH);
        j->in_off += chunk;
    } while (rc == 0 && now_s() - t0 < HTTP_GZIP_SLICE_NS / 1e9);
    double took = now_s() - t0, cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    j->slices++;
    if (took > j->longest_s)
        j->longest_s = took;
    if (cpu > j->longest_cpu_s) /* without the time other processes took the core */
        j->longest_cpu_s = cpu;
    if (took > g->longest_slice_s)
        g->longest_slice_s = took;
    if (rc == 0) {
        TAILQ_REMOVE(&g->jobs, j, link);
        TAILQ_INSERT_TAIL(&g->jobs, j, link);
        schedule(g);
        return;
    }
    if (rc == 1) {
        e->gz = xreallocarray(j->out, j->z.total_out ? j->z.total_out : 1, 1);
        e->gz_len = j->z.total_out;
        e->gz_crc = j->crc;
        j->out = NULL;
        log_debug("HTTP: gzip of %s: %zu bytes to %zu in %u slices, the longest %.2f ms "
                  "(%.2f ms of CPU)",
                  e->key, n, e->gz_len, j->slices, j->longest_s * 1e3, j->longest_cpu_s * 1e3);
    } else {
        e->gz_failed = true;
        log_warn("HTTP: gzip of %s failed: answered plain", e->key);
    }
    g->jobs_done++;
    job_answer(j);
    job_free(j);
    schedule(g);
}

static struct http_gzip_job *job_new(struct http_server *h, struct http_snapshot *s,
                                     struct http_cached *e)
{
    struct http_gzip_job *j = xcalloc(1, sizeof(*j));
    j->h = h;
    j->entry = e;
    TAILQ_INIT(&j->waiters);
    if (deflateInit2(&j->z, HTTP_GZIP_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(j);
        return NULL;
    }
    j->snap = http_snapshot_ref(s);
    /* Room for the worst case at once: growing would copy megabytes inside a slice, and
     * the pages past what deflate writes are never touched (the end shrinks it). */
    j->out_cap = deflateBound(&j->z, e->len - e->head_len);
    j->out = xmalloc(j->out_cap);
    j->z.next_out = j->out;
    j->z.avail_out = (uInt)j->out_cap;
    e->job = j;
    TAILQ_INSERT_TAIL(&h->gz.jobs, j, link);
    h->gz.n_jobs++;
    schedule(&h->gz);
    return j;
}

void http_gzip_wait(struct http_server *h, struct http_snapshot *s, struct http_cached *e,
                    struct evhttp_request *req, const struct http_doc *d, const char *head,
                    size_t head_len)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct http_gzip_job *j = e->job;
    if (!j && evcon && h->gz.n_jobs < HTTP_GZIP_MAX_JOBS)
        j = job_new(h, s, e);
    /* No connection to wait on, as many jobs as the loop should carry, or zlib could not
     * start: plain, at once. */
    if (!j) {
        answer(req, d, e, head, head_len);
        return;
    }
    struct http_gzip_waiter *w = xcalloc(1, sizeof(*w));
    w->job = j;
    w->req = req;
    w->evcon = evcon;
    w->doc = *d;
    if (head) {
        w->head = xmalloc(head_len + 1);
        memcpy(w->head, head, head_len);
        w->head_len = head_len;
    }
    /* evhttp serves one request of a connection at a time, so its close callback is ours
     * until the answer. */
    evhttp_connection_set_closecb(evcon, waiter_on_close, w);
    TAILQ_INSERT_TAIL(&j->waiters, w, link);
}

void http_gzip_counts_hidden(struct http_gzip *g)
{
    struct http_gzip_job *j, *next;
    for (j = TAILQ_FIRST(&g->jobs); j; j = next) {
        next = TAILQ_NEXT(j, link);
        if (!http_snapshot_has_counts(j->snap))
            continue;
        while (!TAILQ_EMPTY(&j->waiters)) {
            struct http_gzip_waiter *w = TAILQ_FIRST(&j->waiters);
            evhttp_connection_set_closecb(w->evcon, NULL, NULL);
            evhttp_add_header(evhttp_request_get_output_headers(w->req), "Retry-After", "1");
            http_reply_error(w->req, 503, "Service Unavailable",
                             "the results changed status while this answer was prepared: "
                             "ask again");
            waiter_free(w);
        }
        job_free(j);
    }
}

void http_gzip_cleanup(struct http_gzip *g)
{
    while (!TAILQ_EMPTY(&g->jobs))
        job_free(TAILQ_FIRST(&g->jobs));
    if (g->ev)
        event_free(g->ev);
    g->ev = NULL;
    if (g->sync_ready)
        deflateEnd(&g->sync);
    g->sync_ready = false;
}
