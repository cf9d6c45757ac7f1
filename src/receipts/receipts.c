/* The receipts worker: a queue of requests guarded by a mutex, one thread that reads each
 * receipt through its own store connection (reopened after a failure) and renders its
 * JSON, and a mailbox of answers the loop empties when event_active wakes it. Owns its
 * connection and its jobs; knows nothing of HTTP but status codes. */
#include "receipts/receipts.h"

#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/xalloc.h"

/* After a failed connect, requests within this long are answered 503 at once rather than
 * each waiting for its own connect timeout. */
#define RECONNECT_PAUSE_MS 1000

struct job {
    TAILQ_ENTRY(job) link;
    char collector[64];
    uint64_t seq;
    receipts_done_cb done;
    void *arg;
    int status;
    char *body;
    size_t len;
};
TAILQ_HEAD(job_list, job);

struct receipts {
    struct event *done_ev; /* the loop's side of the mailbox */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job_list queue; /* waiting for the worker (lock) */
    struct job_list done;  /* answered, waiting for the loop (lock) */
    bool stop;             /* (lock) */
    size_t outstanding;    /* submitted, not yet handed back: loop only */
    size_t max;
    char *conninfo;
    struct store *db;     /* the worker's */
    int64_t failed_at_ms; /* the worker's: last connect failure, 0 none */
    char failed_why[256]; /* the worker's */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* {"error":"..."} with a message of plain ASCII (ours, or PostgreSQL's): quotes and
 * control bytes become spaces, so no escaping is needed. */
static char *error_body(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *error_body(size_t *len, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = ' ';
    size_t n = strlen(msg) + 16;
    char *b = xmalloc(n);
    *len = (size_t)snprintf(b, n, "{\"error\":\"%s\"}\n", msg);
    return b;
}

static char *put_hex(char *p, const uint8_t h[32])
{
    static const char hex[] = "0123456789abcdef";
    *p++ = '"';
    for (size_t i = 0; i < 32; i++) {
        *p++ = hex[h[i] >> 4];
        *p++ = hex[h[i] & 15];
    }
    *p++ = '"';
    return p;
}

char *receipts_render(const char *collector, uint64_t seq, const struct store_receipt *rc,
                      size_t *len)
{
    /* Every entry has a bounded size: 20 digits per number, 66 bytes per hash. */
    size_t cap = 512 + strlen(collector) + rc->n_path * 70 + rc->n_chain * 420;
    char *buf = xmalloc(cap);
    char *p = buf;
    p += sprintf(p, "{\"collector\":\"%s\",\"seq\":%" PRIu64 ",\"digest\":", collector, seq);
    p = put_hex(p, rc->digest);
    p += sprintf(p, ",\"checkpoint\":%" PRIu64 ",\"leaf_index\":%zu,\"tree_size\":%zu,\"path\":[",
                 rc->checkpoint, rc->leaf_index, rc->tree_size);
    for (size_t i = 0; i < rc->n_path; i++) {
        if (i)
            *p++ = ',';
        p = put_hex(p, rc->path[i]);
    }
    p += sprintf(p, "],\"chain\":[");
    for (size_t i = 0; i < rc->n_chain; i++) {
        const struct store_receipt_link *l = &rc->chain[i];
        p += sprintf(p,
                     "%s{\"id\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"prev_hash\":", i ? ",\n" : "\n",
                     l->id, l->epoch);
        p = put_hex(p, l->prev_hash);
        p += sprintf(p, ",\"merkle_root\":");
        p = put_hex(p, l->merkle_root);
        p += sprintf(p, ",\"body_hash\":");
        p = put_hex(p, l->body_hash);
        p += sprintf(p, ",\"hash\":");
        p = put_hex(p, l->hash);
        *p++ = '}';
    }
    p += sprintf(p, "],\"head\":");
    if (rc->n_chain)
        p = put_hex(p, rc->chain[rc->n_chain - 1].hash);
    else
        p += sprintf(p, "null");
    p += sprintf(p, "}\n");
    *len = (size_t)(p - buf);
    return buf;
}

/* ---- the worker ------------------------------------------------------------------------ */

/* A connection, opening one if there is none; NULL (with failed_why) when PostgreSQL
 * cannot be reached now. */
static struct store *worker_db(struct receipts *r)
{
    if (r->db)
        return r->db;
    if (r->failed_at_ms && mono_ms() - r->failed_at_ms < RECONNECT_PAUSE_MS)
        return NULL;
    char err[256];
    r->db = store_open(r->conninfo, err, sizeof(err));
    if (!r->db) {
        if (!r->failed_at_ms)
            log_warn("receipts: cannot reach PostgreSQL: %s", err);
        r->failed_at_ms = mono_ms();
        snprintf(r->failed_why, sizeof(r->failed_why), "%s", err);
        return NULL;
    }
    if (r->failed_at_ms)
        log_info("receipts: PostgreSQL reached again");
    r->failed_at_ms = 0;
    return r->db;
}

static void run_job(struct receipts *r, struct job *j)
{
    struct store_receipt rc;
    /* A connection lost since the last request fails once: a fresh one gets a second try. */
    for (int attempt = 0; attempt < 2; attempt++) {
        struct store *db = worker_db(r);
        if (!db) {
            j->status = 503;
            j->body = error_body(&j->len, "PostgreSQL unreachable: %s", r->failed_why);
            return;
        }
        int got = store_receipt_read(db, j->collector, j->seq, &rc);
        if (got == 0) {
            j->status = 200;
            j->body = receipts_render(j->collector, j->seq, &rc, &j->len);
            store_receipt_cleanup(&rc);
            return;
        }
        if (got == 1) {
            j->status = 404;
            j->body = error_body(&j->len, "no durable batch %s/%" PRIu64, j->collector, j->seq);
            return;
        }
        if (got == 2) {
            j->status = 409;
            j->body = error_body(&j->len,
                                 "batch %s/%" PRIu64 " is in checkpoint %" PRIu64
                                 ", older than chain format 3: no Merkle root proves it",
                                 j->collector, j->seq, rc.checkpoint);
            return;
        }
        log_warn("receipts: reading %s/%" PRIu64 ": %s", j->collector, j->seq,
                 store_last_error(db));
        snprintf(r->failed_why, sizeof(r->failed_why), "%s", store_last_error(db));
        store_close(db);
        r->db = NULL;
    }
    j->status = 503;
    j->body = error_body(&j->len, "the record could not be read: %s", r->failed_why);
}

static void *worker_main(void *arg)
{
    struct receipts *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stop && TAILQ_EMPTY(&r->queue))
            pthread_cond_wait(&r->wake, &r->lock);
        if (r->stop)
            break;
        struct job *j = TAILQ_FIRST(&r->queue);
        TAILQ_REMOVE(&r->queue, j, link);
        pthread_mutex_unlock(&r->lock);
        run_job(r, j);
        pthread_mutex_lock(&r->lock);
        TAILQ_INSERT_TAIL(&r->done, j, link);
        event_active(r->done_ev, 0, 0);
    }
    pthread_mutex_unlock(&r->lock);
    store_close(r->db);
    r->db = NULL;
    return NULL;
}

/* ---- the loop's side ------------------------------------------------------------------- */

static void deliver(struct receipts *r, struct job *j)
{
    r->outstanding--;
    j->done(j->arg, j->status, j->body, j->len);
    free(j);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct receipts *r = arg;
    struct job_list ready;
    TAILQ_INIT(&ready);
    pthread_mutex_lock(&r->lock);
    TAILQ_CONCAT(&ready, &r->done, link);
    pthread_mutex_unlock(&r->lock);
    while (!TAILQ_EMPTY(&ready)) {
        struct job *j = TAILQ_FIRST(&ready);
        TAILQ_REMOVE(&ready, j, link);
        deliver(r, j);
    }
}

struct receipts *receipts_new(struct event_base *base, const char *conninfo, size_t max_queued)
{
    struct receipts *r = xcalloc(1, sizeof(*r));
    r->max = max_queued ? max_queued : RECEIPTS_QUEUE_DEFAULT;
    r->conninfo = xstrdup(conninfo ? conninfo : "");
    TAILQ_INIT(&r->queue);
    TAILQ_INIT(&r->done);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->done_ev = event_new(base, -1, 0, on_done, r);
    if (!r->done_ev)
        goto fail;
    if (pthread_create(&r->thread, NULL, worker_main, r) != 0) {
        log_error("receipts: cannot start the worker thread");
        goto fail;
    }
    r->started = true;
    return r;
fail:
    receipts_free(r);
    return NULL;
}

int receipts_submit(struct receipts *r, const char *collector, uint64_t seq, receipts_done_cb done,
                    void *arg)
{
    if (r->outstanding >= r->max)
        return -1;
    struct job *j = xcalloc(1, sizeof(*j));
    snprintf(j->collector, sizeof(j->collector), "%s", collector);
    j->seq = seq;
    j->done = done;
    j->arg = arg;
    r->outstanding++;
    pthread_mutex_lock(&r->lock);
    TAILQ_INSERT_TAIL(&r->queue, j, link);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

void receipts_free(struct receipts *r)
{
    if (!r)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->lock);
        r->stop = true;
        pthread_cond_signal(&r->wake);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
    }
    /* The thread is gone: the lists are ours. Answers first, then the unanswered. */
    while (!TAILQ_EMPTY(&r->done)) {
        struct job *j = TAILQ_FIRST(&r->done);
        TAILQ_REMOVE(&r->done, j, link);
        deliver(r, j);
    }
    while (!TAILQ_EMPTY(&r->queue)) {
        struct job *j = TAILQ_FIRST(&r->queue);
        TAILQ_REMOVE(&r->queue, j, link);
        j->status = 503;
        j->body = error_body(&j->len, "tallyd is shutting down");
        deliver(r, j);
    }
    if (r->done_ev)
        event_free(r->done_ev);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r->conninfo);
    free(r);
}
