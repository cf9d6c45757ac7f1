/* The store thread: owns its own connection, takes one checkpoint job at a time from the
 * event loop, and retries it with back-off across PostgreSQL outages until it commits,
 * fails for good, or the worker is stopped. Owns no SQL (checkpoint.c, recover.c do). */
#include "store/internal.h"

#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKER_BACKOFF_MIN_MS 100
#define WORKER_BACKOFF_MAX_MS 5000

enum worker_link { WORKER_LINK_UNKNOWN, WORKER_LINK_UP, WORKER_LINK_DOWN };

struct store_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    char *conninfo;    /* NULL: the PG* environment */
    store_done_cb done;
    void *arg;

    /* Under mu. */
    const struct store_checkpoint *job; /* submitted and not finished; NULL when idle */
    bool stopping;
    struct timespec deadline; /* when stopping: give up an unwritten job after this */
    bool abandoned;           /* a job was left unwritten at stop */

    atomic_bool connected;
    atomic_uint_fast64_t errors; /* attempts that did not reach a result, ever */

    /* Worker thread only. */
    struct store *s;
    enum worker_link link;
    struct timespec down_since;
    unsigned failures;
};

static struct timespec worker_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

static struct timespec worker_after(struct timespec t, long ms)
{
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static bool worker_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

static double worker_seconds(struct timespec from, struct timespec to)
{
    return (double)(to.tv_sec - from.tv_sec) + (double)(to.tv_nsec - from.tv_nsec) / 1e9;
}

/* Logs once per change of reachability, not once per attempt. */
static void worker_mark_up(struct store_worker *w)
{
    atomic_store(&w->connected, true);
    if (w->link == WORKER_LINK_DOWN)
        log_info("store: PostgreSQL reachable again after %.1f s (%u failed attempts)",
                 worker_seconds(w->down_since, worker_now()), w->failures);
    else if (w->link == WORKER_LINK_UNKNOWN)
        log_info("store: worker connected to PostgreSQL");
    w->link = WORKER_LINK_UP;
    w->failures = 0;
}

static void worker_mark_down(struct store_worker *w, const char *why)
{
    atomic_store(&w->connected, false);
    w->failures++;
    if (w->link != WORKER_LINK_DOWN) {
        log_warn("store: PostgreSQL unreachable: %s; retrying with back-off (up to %d ms)", why,
                 WORKER_BACKOFF_MAX_MS);
        w->down_since = worker_now();
    }
    w->link = WORKER_LINK_DOWN;
}

/* One attempt at cp on the current connection, opening one if needed. *fresh tells
 * whether the connection was opened for this attempt. */
static enum store_result worker_attempt(struct store_worker *w, const struct store_checkpoint *cp,
                                        bool refresh, struct store_collector **list, size_t *n,
                                        bool *fresh, char *why, size_t why_len)
{
    *fresh = false;
    why[0] = '\0';
    if (!w->s) {
        w->s = store_open(w->conninfo, why, why_len);
        if (!w->s)
            return STORE_RETRY;
        *fresh = true;
    }
    enum store_result rc;
    if (refresh) {
        if (store_collectors_list(w->s, list, n) == 0)
            return STORE_OK;
        rc = PQstatus(w->s->conn) == CONNECTION_BAD ? STORE_RETRY : STORE_FATAL;
    } else {
        rc = store_checkpoint_write(w->s, cp);
    }
    if (rc != STORE_OK)
        snprintf(why, why_len, "%s", store_last_error(w->s));
    return rc;
}

/* Waits out a back-off. Returns false when the worker is stopping and its grace period
 * is over, so the job must be abandoned. */
static bool worker_backoff(struct store_worker *w, long ms)
{
    bool go_on = true;
    struct timespec until = worker_after(worker_now(), ms);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct timespec now = worker_now();
        if (w->stopping && !worker_before(now, w->deadline)) {
            go_on = false;
            break;
        }
        if (!worker_before(now, until))
            break;
        struct timespec wake = until;
        if (w->stopping && worker_before(w->deadline, wake))
            wake = w->deadline;
        int err = pthread_cond_timedwait(&w->cv, &w->mu, &wake);
        if (err != 0 && err != ETIMEDOUT)
            abort();
    }
    pthread_mutex_unlock(&w->mu);
    return go_on;
}

/* Runs one job to its end. Returns false if it was abandoned at stop. */
static bool worker_run(struct store_worker *w, const struct store_checkpoint *cp, int *rc_out,
                       struct store_collector **list, size_t *n)
{
    bool refresh = cp->n_batches == 0 && cp->n_marks == 0;
    long backoff = WORKER_BACKOFF_MIN_MS;
    bool retried_stale = false;
    char why[STORE_ERR_LEN];
    for (;;) {
        bool fresh;
        enum store_result rc = worker_attempt(w, cp, refresh, list, n, &fresh, why, sizeof(why));
        if (rc == STORE_OK || rc == STORE_FATAL) {
            worker_mark_up(w);
            if (refresh && rc == STORE_FATAL) {
                log_error("store: reading collectors: %s", why);
                rc = STORE_OK; /* nothing was written; the list is simply unknown */
            } else if (rc == STORE_FATAL) {
                log_error("store: checkpoint %" PRIu64 " not written: %s", cp->id, why);
            }
            *rc_out = rc;
            return true;
        }
        atomic_fetch_add(&w->errors, 1);
        store_close(w->s);
        w->s = NULL;
        if (!fresh && !retried_stale) {
            /* The server may have restarted since this connection was opened: one
             * immediate try on a new connection before calling it unreachable. */
            retried_stale = true;
            continue;
        }
        worker_mark_down(w, why);
        if (refresh) {
            /* Refreshes are advisory: answer "unknown" rather than block the queue. */
            *rc_out = STORE_OK;
            *list = NULL;
            *n = 0;
            return true;
        }
        if (!worker_backoff(w, backoff))
            return false;
        backoff = backoff * 2 > WORKER_BACKOFF_MAX_MS ? WORKER_BACKOFF_MAX_MS : backoff * 2;
    }
}

static void *worker_main(void *p)
{
    struct store_worker *w = p;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->job && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->job)
            break;
        const struct store_checkpoint *cp = w->job;
        pthread_mutex_unlock(&w->mu);

        int rc = STORE_OK;
        struct store_collector *list = NULL;
        size_t n = 0;
        bool finished = worker_run(w, cp, &rc, &list, &n);

        pthread_mutex_lock(&w->mu);
        w->job = NULL;
        if (!finished) {
            w->abandoned = true;
            break;
        }
        /* The slot is free before done() runs, so the loop may submit the next job as
         * soon as it hears of this one. */
        pthread_mutex_unlock(&w->mu);
        w->done(w->arg, cp, rc, list, n);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    store_close(w->s);
    w->s = NULL;
    return NULL;
}

struct store_worker *store_worker_new(const char *conninfo, store_done_cb done, void *arg)
{
    struct store_worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->done = done;
    w->arg = arg;
    if (conninfo && conninfo[0]) {
        w->conninfo = strdup(conninfo);
        if (!w->conninfo)
            abort();
    }
    atomic_init(&w->connected, false);
    atomic_init(&w->errors, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        log_error("store: cannot start the worker thread");
        goto fail;
    }
    return w;

fail:
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->conninfo);
    free(w);
    return NULL;
}

int store_worker_submit(struct store_worker *w, const struct store_checkpoint *cp)
{
    int rc = -1;
    pthread_mutex_lock(&w->mu);
    if (!w->job && !w->stopping) {
        w->job = cp;
        pthread_cond_signal(&w->cv);
        rc = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

bool store_worker_is_connected(struct store_worker *w)
{
    return atomic_load(&w->connected);
}

int store_worker_free(struct store_worker *w, int grace_ms)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    w->deadline = worker_after(worker_now(), grace_ms > 0 ? grace_ms : 0);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);

    int rc = w->abandoned ? -1 : 0;
    if (rc < 0)
        log_warn("store: worker stopped with a checkpoint unwritten; collectors will resend it");
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->conninfo);
    free(w);
    return rc;
}

uint64_t store_worker_failures(struct store_worker *w)
{
    return (uint64_t)atomic_load(&w->errors);
}
