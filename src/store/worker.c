/* The store thread, tallyd's single writer: owns the PostgreSQL session that holds the
 * writer lock, starts up on it (lock, epoch, migrations, recovery), then takes one
 * checkpoint job at a time from the event loop, fixes its place in the chain, and retries
 * it with back-off across PostgreSQL outages until it commits, fails for good, or the
 * worker is stopped. Owns no SQL (writer.c, checkpoint.c, recover.c, pages.c do). */
#include "store/chain.h"
#include "store/internal.h"

#include "core/crashpoint.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKER_BACKOFF_MIN_MS 100
#define WORKER_BACKOFF_MAX_MS 2000
#define WORKER_LOCK_POLL_MS 250       /* how often a waiting writer asks for the lock */
#define WORKER_COMPACT_MS 2000        /* fold count deltas into tallies at most this late */
#define WORKER_COMPACT_CHECKPOINTS 32 /* ... or after this many checkpoints */

enum worker_link { WORKER_LINK_UNKNOWN, WORKER_LINK_UP, WORKER_LINK_DOWN };

struct store_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    struct store_worker_config cfg;
    char *conninfo; /* cfg.conninfo's copy; NULL: the PG* environment */

    /* Under mu. */
    struct store_checkpoint *job; /* submitted and not finished; NULL when idle */
    bool started;                 /* start-up finished: jobs are taken */
    bool stopping;
    struct timespec deadline; /* when stopping: give up an unwritten job after this */
    bool abandoned;           /* a job was left unwritten at stop */
    char status[600];         /* what start-up is doing; "" once writing */

    atomic_bool connected;
    atomic_uint_fast64_t errors; /* attempts that did not reach a result, ever */
    atomic_uint_fast64_t epoch;

    /* Worker thread only. */
    struct store *s;
    bool locked; /* this session holds the writer lock */
    enum worker_link link;
    struct timespec down_since;
    unsigned failures;
    char host[256];
    uint64_t head_id; /* the chain's last committed checkpoint */
    uint8_t head_hash[STORE_HASH_BYTES];
    uint64_t compacted; /* tally_compaction.through */
    struct timespec compacted_at;
    struct store_pages pages;
    struct store_page_plan plan;
    struct store_prep prep;
    uint64_t requests_seen;      /* the highest request id handed to the loop */
    uint64_t last_correction_id; /* ids are chosen here, like checkpoint ids */
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

static void worker_set_status(struct store_worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void worker_set_status(struct store_worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&w->mu);
    vsnprintf(w->status, sizeof(w->status), fmt, ap);
    pthread_mutex_unlock(&w->mu);
    va_end(ap);
}

/* Logs once per change of reachability, not once per attempt. */
static void worker_mark_up(struct store_worker *w)
{
    atomic_store(&w->connected, true);
    if (w->link == WORKER_LINK_DOWN)
        log_info("store: PostgreSQL reachable again after %.1f s (%u failed attempts)",
                 worker_seconds(w->down_since, worker_now()), w->failures);
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

static void worker_drop_session(struct store_worker *w)
{
    store_close(w->s);
    w->s = NULL;
    w->locked = false; /* the lock was the session's */
}

/* Waits ms, or less when stopping. Returns false when the worker is stopping and (for a
 * job) its grace period is over. */
static bool worker_sleep(struct store_worker *w, long ms, bool job)
{
    bool go_on = true;
    struct timespec until = worker_after(worker_now(), ms);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct timespec now = worker_now();
        if (w->stopping && (!job || !worker_before(now, w->deadline))) {
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

/* The holder named in the writer row is a tallyd of this host that no longer runs (gone,
 * a zombie, or its pid reused since it took over): its backend outlives it, e.g. while its
 * last COMMIT waits for a synchronous standby. */
static bool worker_holder_is_dead(const struct store_worker *w, const struct store_holder *h)
{
    if (!h->pid || strcmp(h->host, w->host) != 0 || h->pid == (int)getpid())
        return false;
    return proc_is_gone(h->pid, h->since_unix);
}

/* ---- start-up ------------------------------------------------------------------------ */

enum startup_step { STARTUP_DONE, STARTUP_RETRY, STARTUP_WAIT, STARTUP_FATAL };

/* Takes the writer role on the current session. */
static enum startup_step startup_lock(struct store_worker *w, char *why, size_t len)
{
    struct store_holder h;
    int got = store_writer_try_lock(w->s, &h);
    if (got < 0) {
        snprintf(why, len, "%s", store_last_error(w->s));
        return got == STORE_FATAL ? STARTUP_FATAL : STARTUP_RETRY;
    }
    if (got == 1) {
        w->locked = true;
        return STARTUP_DONE;
    }
    char who[200];
    store_holder_describe(&h, who, sizeof(who));
    if (!w->cfg.standby && !worker_holder_is_dead(w, &h)) {
        snprintf(why, len,
                 "another tallyd is the writer of this database: %s; stop it first, or start "
                 "this one with --standby to take over when it stops",
                 who);
        return STARTUP_FATAL;
    }
    char status[sizeof(w->status)];
    if (w->cfg.standby)
        snprintf(status, sizeof(status), "standby: waiting for the writer lock held by %s", who);
    else
        snprintf(status, sizeof(status),
                 "waiting for the writer lock: the tallyd that took it (%s) is gone but its "
                 "PostgreSQL session still holds it (a COMMIT still in flight?)",
                 who);
    pthread_mutex_lock(&w->mu);
    bool changed = strcmp(w->status, status) != 0;
    snprintf(w->status, sizeof(w->status), "%s", status);
    pthread_mutex_unlock(&w->mu);
    if (changed)
        log_info("store: %s", status);
    return STARTUP_WAIT;
}

/* One attempt at the whole start-up on one session. */
static enum startup_step startup_attempt(struct store_worker *w, struct store_started *st,
                                         char *why, size_t len)
{
    if (!w->s) {
        w->s = store_open(w->conninfo, why, len);
        if (!w->s && store_connect_error_is_permanent(why)) {
            char msg[STORE_ERR_LEN];
            snprintf(msg, sizeof(msg), "%s", why);
            snprintf(why, len,
                     "cannot connect to PostgreSQL: %.400s (waiting will not change that: "
                     "check --db)",
                     msg);
            return STARTUP_FATAL;
        }
        if (!w->s) {
            worker_set_status(w, "PostgreSQL unreachable: %s", why);
            return STARTUP_RETRY;
        }
    }
    if (!w->locked) {
        enum startup_step r = startup_lock(w, why, len);
        if (r != STARTUP_DONE)
            return r;
    }
    worker_mark_up(w);
    worker_set_status(w, "recovering from PostgreSQL");
    uint64_t epoch = 0;
    enum store_result rc = STORE_OK;
    if (store_role_read(w->s, st->role, &st->role_is_superuser, &st->role_owns_schema) < 0) {
        rc = PQstatus(w->s->conn) == CONNECTION_BAD ? STORE_RETRY : STORE_FATAL;
        goto fail;
    }
    /* Migrations first: the writer row is made by one. */
    if ((rc = store_migrate_at_start(w->s, st->role_is_superuser || st->role_owns_schema)) !=
            STORE_OK ||
        (rc = store_writer_take_over(w->s, w->host, (int)getpid(), &epoch)) != STORE_OK)
        goto fail;
    log_info("store: writer lock taken; this tallyd is the writer, epoch %" PRIu64, epoch);
    struct timespec t0 = worker_now();
    if (store_recover_all(w->s, &st->rec, &w->cfg.hooks) != 0 ||
        store_pages_load(w->s, &w->pages) != 0 || store_catalog_read(w->s, &st->catalog) != 0) {
        store_recovery_cleanup(&st->rec);
        goto fail;
    }
    st->epoch = epoch;
    st->recover_s = worker_seconds(t0, worker_now());
    atomic_store(&w->epoch, epoch);
    w->head_id = st->rec.last_checkpoint_id;
    memcpy(w->head_hash, st->rec.head_hash, sizeof(w->head_hash));
    w->last_correction_id = st->rec.last_correction_id;
    w->compacted = st->rec.compacted_through;
    w->compacted_at = worker_now();
    return STARTUP_DONE;

fail:
    snprintf(why, len, "%s", store_last_error(w->s));
    /* A lost session is retried like one never opened; anything else is permanent. */
    if (PQstatus(w->s->conn) == CONNECTION_BAD || rc == STORE_RETRY)
        return STARTUP_RETRY;
    return STARTUP_FATAL;
}

/* Runs start-up to its end. Returns false when the worker was stopped meanwhile. */
static bool worker_startup(struct store_worker *w)
{
    long backoff = WORKER_BACKOFF_MIN_MS;
    char why[STORE_ERR_LEN];
    for (;;) {
        struct store_started st;
        memset(&st, 0, sizeof(st));
        enum startup_step r = startup_attempt(w, &st, why, sizeof(why));
        if (r == STARTUP_DONE) {
            pthread_mutex_lock(&w->mu);
            w->started = true;
            w->status[0] = '\0';
            bool stop = w->stopping;
            pthread_mutex_unlock(&w->mu);
            if (stop) {
                store_recovery_cleanup(&st.rec);
                store_catalog_cleanup(&st.catalog);
                return false;
            }
            w->cfg.started(w->cfg.arg, 0, &st, NULL);
            return true;
        }
        if (r == STARTUP_FATAL) {
            /* started() reports it: one line, not two. */
            worker_set_status(w, "stopped: %s", why);
            w->cfg.started(w->cfg.arg, -1, NULL, why);
            return false;
        }
        if (r == STARTUP_WAIT) {
            if (!worker_sleep(w, WORKER_LOCK_POLL_MS, false))
                return false;
            continue;
        }
        atomic_fetch_add(&w->errors, 1);
        worker_mark_down(w, why);
        worker_drop_session(w);
        if (!worker_sleep(w, backoff, false))
            return false;
        backoff = backoff * 2 > WORKER_BACKOFF_MAX_MS ? WORKER_BACKOFF_MAX_MS : backoff * 2;
    }
}

/* ---- jobs ------------------------------------------------------------------------------ */

/* On a new session: take the writer lock again and make sure nobody took over meanwhile.
 * STORE_RETRY while the lock is busy (our own old backend may not have noticed yet),
 * STORE_FATAL once the epoch says another writer took over. */
static enum store_result worker_relock(struct store_worker *w)
{
    struct store_holder h;
    uint64_t mine = atomic_load(&w->epoch);
    int got = store_writer_try_lock(w->s, &h);
    if (got < 0)
        return (enum store_result)got;
    if (got == 0 && h.epoch == mine) {
        store_set_error(w->s, "the writer lock is still held by this tallyd's previous session");
        return STORE_RETRY;
    }
    if (got == 1) {
        w->locked = true;
        TALLY_CRASH_POINT("during_reconnect");
        enum store_result rc = store_writer_read(w->s, &h);
        if (rc != STORE_OK)
            return rc;
        if (h.epoch == mine) {
            log_info("store: PostgreSQL session re-established; writer lock taken again "
                     "(epoch %" PRIu64 ")",
                     mine);
            return STORE_OK;
        }
    }
    w->locked = false; /* not the writer any more, whatever this session holds */
    char who[200];
    store_holder_describe(&h, who, sizeof(who));
    store_set_error(w->s,
                    "another writer took over while this tallyd's PostgreSQL session was lost "
                    "(this tallyd's epoch %" PRIu64 "; now %s)",
                    mine, who);
    return STORE_FATAL;
}

/* Fixes the job's place in the chain, once: every attempt writes exactly this. */
static void worker_prepare(struct store_worker *w, struct store_checkpoint *cp,
                           struct store_prepared *pp)
{
    store_pages_plan(&w->pages, cp->tokens, cp->n_tokens, &w->plan);
    store_prepare(&w->prep, cp, w->head_id + 1, atomic_load(&w->epoch), w->head_hash,
                  w->last_correction_id + 1, &w->plan, pp);
}

/* What a refresh reads besides the collectors: the embargo write the job asks for, the
 * consultation's state and the pending requests (each request handed to the loop once). */
static int worker_read_refresh(struct store_worker *w, struct store_checkpoint *cp,
                               struct store_collector **list, size_t *n)
{
    if (store_embargo_applied_write(w->s, cp->embargo_applied, cp->set_embargo) < 0 ||
        store_collectors_list(w->s, list, n) < 0)
        return -1;
    if (store_state_read(w->s, &cp->state) < 0 ||
        store_requests_take(w->s, w->requests_seen, &cp->requests, &cp->n_requests) < 0) {
        store_collectors_free(*list, *n);
        *list = NULL;
        *n = 0;
        memset(&cp->state, 0, sizeof(cp->state));
        return -1;
    }
    for (size_t i = 0; i < cp->n_requests; i++)
        if (cp->requests[i].id > w->requests_seen)
            w->requests_seen = cp->requests[i].id;
    return 0;
}

static bool worker_job_writes(const struct store_checkpoint *cp)
{
    return cp->n_batches || cp->n_marks || cp->n_corrections || cp->n_events || cp->n_done;
}

/* One attempt at a job on the current session, opening (and locking) one if needed.
 * *fresh tells whether the session was opened for this attempt. */
static enum store_result worker_attempt(struct store_worker *w, const struct store_prepared *pp,
                                        struct store_checkpoint *cp, bool refresh,
                                        struct store_collector **list, size_t *n, bool *fresh,
                                        char *why, size_t why_len)
{
    *fresh = false;
    why[0] = '\0';
    enum store_result rc;
    if (!w->s) {
        w->s = store_open(w->conninfo, why, why_len);
        if (!w->s)
            return STORE_RETRY;
        *fresh = true;
    }
    if (!w->locked && (rc = worker_relock(w)) != STORE_OK)
        goto fail;
    if (refresh) {
        if (worker_read_refresh(w, cp, list, n) == 0)
            return STORE_OK;
        rc = PQstatus(w->s->conn) == CONNECTION_BAD ? STORE_RETRY : STORE_FATAL;
        goto fail;
    }
    rc = store_checkpoint_write(w->s, pp);
    if (rc == STORE_OK)
        return STORE_OK;
fail:
    snprintf(why, why_len, "%s", store_last_error(w->s));
    return rc;
}

/* Folds count deltas into tallies now and then, so views and recovery sum few of them.
 * Failing is harmless: the deltas stay where they are and count the same. */
static void worker_maybe_compact(struct store_worker *w)
{
    if (w->head_id <= w->compacted || !w->s)
        return;
    struct timespec now = worker_now();
    if (w->head_id - w->compacted < WORKER_COMPACT_CHECKPOINTS &&
        worker_seconds(w->compacted_at, now) * 1000 < WORKER_COMPACT_MS)
        return;
    if (store_compact(w->s, atomic_load(&w->epoch), w->compacted, w->head_id) == STORE_OK) {
        log_debug("store: tallies compacted through checkpoint %" PRIu64, w->head_id);
        w->compacted = w->head_id;
    } else {
        log_warn("store: compacting tallies: %s (will try again)", store_last_error(w->s));
        if (PQstatus(w->s->conn) == CONNECTION_BAD)
            worker_drop_session(w);
    }
    w->compacted_at = now;
}

/* The collectors list after a committed checkpoint that asked for it: advisory, like a
 * refresh-only job's, so a failure is logged and the list is "unknown" (NULL/0); the
 * checkpoint stands either way. */
static void worker_refresh_after(struct store_worker *w, struct store_checkpoint *cp,
                                 struct store_collector **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    if (!w->s || worker_read_refresh(w, cp, list, n) == 0)
        return;
    log_warn("store: reading collectors after a checkpoint: %s (will read them again)",
             store_last_error(w->s));
    *list = NULL;
    *n = 0;
    if (PQstatus(w->s->conn) == CONNECTION_BAD)
        worker_drop_session(w);
}

/* Runs one job to its end. Returns false if it was abandoned at stop. */
static bool worker_run(struct store_worker *w, struct store_checkpoint *cp, int *rc_out,
                       struct store_collector **list, size_t *n)
{
    bool refresh = !worker_job_writes(cp);
    memset(&cp->state, 0, sizeof(cp->state));
    cp->requests = NULL;
    cp->n_requests = 0;
    struct store_prepared pp;
    if (!refresh) {
        struct timespec t0 = worker_now();
        worker_prepare(w, cp, &pp);
        log_debug("store: checkpoint %" PRIu64 " prepared in %.1f ms (%zu tokens, %zu pages)",
                  pp.id, worker_seconds(t0, worker_now()) * 1e3, cp->n_tokens, w->plan.n_pages);
    }
    long backoff = WORKER_BACKOFF_MIN_MS;
    bool retried_stale = false;
    char why[STORE_ERR_LEN];
    for (;;) {
        bool fresh;
        enum store_result rc =
            worker_attempt(w, refresh ? NULL : &pp, cp, refresh, list, n, &fresh, why, sizeof(why));
        if (rc == STORE_OK || rc == STORE_FATAL) {
            worker_mark_up(w);
            if (refresh && rc == STORE_FATAL && w->locked) {
                log_error("store: reading collectors: %s", why);
                rc = STORE_OK; /* nothing was written; the list is simply unknown */
            } else if (rc == STORE_FATAL) {
                log_error("store: %s", why);
            } else if (!refresh) {
                TALLY_CRASH_POINT("after_commit_before_ack");
                cp->id = pp.id;
                memcpy(cp->hash, pp.hash, sizeof(cp->hash));
                w->head_id = pp.id;
                memcpy(w->head_hash, pp.hash, sizeof(w->head_hash));
                w->last_correction_id += cp->n_corrections;
                store_pages_commit(&w->pages, &w->plan);
                worker_maybe_compact(w);
                if (cp->refresh_collectors || cp->embargo_applied != STORE_EMBARGO_LEAVE)
                    worker_refresh_after(w, cp, list, n);
            }
            *rc_out = rc;
            return true;
        }
        atomic_fetch_add(&w->errors, 1);
        worker_drop_session(w);
        if (!fresh && !retried_stale) {
            /* The server may have restarted since this session was opened: one immediate
             * try on a new session before calling it unreachable. */
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
        if (!worker_sleep(w, backoff, true))
            return false;
        backoff = backoff * 2 > WORKER_BACKOFF_MAX_MS ? WORKER_BACKOFF_MAX_MS : backoff * 2;
    }
}

static void *worker_main(void *p)
{
    struct store_worker *w = p;
    if (!worker_startup(w))
        goto out;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->job && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->job)
            break;
        struct store_checkpoint *cp = w->job;
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
        w->cfg.done(w->cfg.arg, cp, rc, list, n);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
out:
    worker_drop_session(w);
    return NULL;
}

struct store_worker *store_worker_new(const struct store_worker_config *cfg)
{
    struct store_worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->cfg = *cfg;
    if (cfg->conninfo && cfg->conninfo[0]) {
        w->conninfo = strdup(cfg->conninfo);
        if (!w->conninfo)
            abort();
    }
    w->cfg.conninfo = w->conninfo;
    if (gethostname(w->host, sizeof(w->host) - 1) != 0)
        snprintf(w->host, sizeof(w->host), "unknown");
    store_pages_init(&w->pages, cfg->min_anonymity);
    store_prep_init(&w->prep);
    snprintf(w->status, sizeof(w->status), "connecting to PostgreSQL");
    atomic_init(&w->connected, false);
    atomic_init(&w->errors, 0);
    atomic_init(&w->epoch, 0);
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
    store_pages_cleanup(&w->pages);
    free(w->conninfo);
    free(w);
    return NULL;
}

int store_worker_submit(struct store_worker *w, struct store_checkpoint *cp)
{
    int rc = -1;
    pthread_mutex_lock(&w->mu);
    if (!w->job && !w->stopping && w->started) {
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

void store_worker_status(struct store_worker *w, char *buf, size_t len)
{
    pthread_mutex_lock(&w->mu);
    snprintf(buf, len, "%s", w->status);
    pthread_mutex_unlock(&w->mu);
}

uint64_t store_worker_epoch(struct store_worker *w)
{
    return (uint64_t)atomic_load(&w->epoch);
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
    store_pages_cleanup(&w->pages);
    store_page_plan_cleanup(&w->plan);
    store_prep_cleanup(&w->prep);
    free(w->conninfo);
    free(w);
    return rc;
}

uint64_t store_worker_failures(struct store_worker *w)
{
    return (uint64_t)atomic_load(&w->errors);
}
