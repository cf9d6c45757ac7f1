/* The held-back COMMIT nemesis (issue 9): on a throw-away PostgreSQL of its own (tests/pg.sh),
 * synchronous_standby_names names a standby that does not exist, so tallyd's checkpoint COMMIT
 * waits (committed locally, invisible to everyone else) while collectors push. tallyd must ack
 * nothing as durable, pause input at --backlog-votes with its RSS bounded; it is SIGKILLed, a
 * new tallyd waits for the writer lock the old backend still holds, and the COMMIT is then
 * released (variant A, a late COMMIT) or its backend terminated (variant B, committed
 * locally). Either way: ingest resumes < 5 s after release, every push exits 0, the results
 * and the collectors' sums equal the truth, tallyctl verify passes. Figures go to stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLLECTORS 4
#define BATCH 500
#define BACKLOG_VOTES 200000
#define VOTES 800000
#define HOLD_AFTER_PAUSE_MS 1500 /* held this long after the pause before tallyd is killed */
/* The new tallyd waits for the lock this long before the release: past tally-push's longest
 * reconnect backoff (5 s), so that the resume time includes the collectors finding it. */
#define WAIT_LOCK_MS 6000
#define TERMINATED_WAIT_MS 1500 /* B: terminated, still held, before the release */
#define RESUME_LIMIT_MS 5000    /* the bound, release -> durable votes moving */

enum variant { RELEASED, TERMINATED };

static char pg_dir[1100], admin[256];
static uint16_t pg_port_no;
static struct ts_case cases[2];

/* tests/pg.sh ACTION DIR; its exit code. */
static int pg(const char *action, const char *dir)
{
    char script[1100];
    snprintf(script, sizeof script, "%s/tests/pg.sh", ts_src_dir());
    char *argv[] = {"/bin/bash", script, (char *)action, (char *)dir, NULL};
    return ts_run(argv, NULL, NULL, ts_scale(120000));
}

static uint16_t read_port(const char *dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/port", dir);
    char *text = ts_read_file(path);
    unsigned long port = text ? strtoul(text, NULL, 10) : 0;
    free(text);
    return (uint16_t)port;
}

/* synchronous_standby_names for the whole server, reloaded. Neither statement writes a
 * transaction of its own, so neither waits for the standby it names. */
static int set_sync_names(const char *names)
{
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER SYSTEM SET synchronous_standby_names = '%s'", names);
    return ts_sql_exec(admin, sql) || ts_sql_exec(admin, "SELECT pg_reload_conf()") ? -1 : 0;
}

/* ts_tallyd_start without waiting for /readyz: a tallyd that waits for the writer lock. */
static int tallyd_spawn(struct ts_tallyd *d)
{
    if (!d->port) {
        d->port = ts_free_port();
        do
            d->http_port = ts_free_port();
        while (d->http_port == d->port);
    }
    char listen[32], http[32], cp[16], log[PATH_MAX], backlog[24];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d->port);
    snprintf(http, sizeof http, "127.0.0.1:%u", d->http_port);
    snprintf(cp, sizeof cp, "%d", d->checkpoint_ms);
    snprintf(log, sizeof log, "%s/tallyd-%d.log", d->dir, ++d->starts);
    snprintf(backlog, sizeof backlog, "%d", BACKLOG_VOTES);
    char *argv[] = {(char *)ts_prog("tallyd"),
                    "--db",
                    d->conninfo,
                    "--listen",
                    listen,
                    "--http",
                    http,
                    "--checkpoint-ms",
                    cp,
                    "--log-level",
                    "info",
                    "--backlog-votes",
                    backlog,
                    NULL};
    return ts_spawn(&d->proc, "tallyd", argv, NULL, log);
}

static long rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = ts_read_file(path);
    const char *v = text ? strstr(text, "VmRSS:") : NULL;
    long kb = v ? strtol(v + 6, NULL, 10) : -1;
    free(text);
    return kb;
}

static char metrics_body[1 << 18];

/* GET /metrics into metrics_body; 0 or -1. */
static int metrics_get(const struct ts_tallyd *d)
{
    return ts_http_get(d->http_port, "/metrics", metrics_body, sizeof metrics_body, 2000) == 200
               ? 0
               : -1;
}

static double metric(const char *series)
{
    return ts_metric(metrics_body, series);
}

/* What the monitoring session reads: the committed state other sessions see. */
struct durable {
    uint64_t votes, seq_sum;
    uint64_t seq[COLLECTORS];
};

static int durable_read(struct ts_db *db, struct durable *out)
{
    memset(out, 0, sizeof *out);
    if (ts_db_u64(db, "SELECT coalesce(sum(votes), 0) FROM collectors", &out->votes) ||
        ts_db_u64(db, "SELECT coalesce(sum(durable_seq), 0) FROM collectors", &out->seq_sum))
        return -1;
    for (int i = 0; i < COLLECTORS; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT durable_seq FROM collectors WHERE id = 'c%d'", i);
        if (ts_db_u64(db, sql, &out->seq[i]))
            return -1;
    }
    return 0;
}

static uint64_t acks_compared; /* durable_seq figures of tallyd's checked against PostgreSQL */

/* No durable ack before COMMIT: each durable_seq tallyd reports (read first) is at most the
 * one committed and visible in PostgreSQL (read after). Returns the collector that broke
 * it, or -1. Collectors tallyd has no figure for yet are skipped. */
static int ack_before_commit(const struct ts_tallyd *d, struct ts_db *db, uint64_t *said,
                             uint64_t *committed)
{
    if (metrics_get(d) != 0)
        return -1;
    double m[COLLECTORS];
    for (int i = 0; i < COLLECTORS; i++) {
        char series[96];
        snprintf(series, sizeof series, "tally_collector_durable_seq{collector=\"c%d\"}", i);
        m[i] = metric(series);
    }
    struct durable now;
    if (durable_read(db, &now) != 0)
        return -1;
    for (int i = 0; i < COLLECTORS; i++) {
        acks_compared += !isnan(m[i]);
        if (!isnan(m[i]) && (uint64_t)m[i] > now.seq[i]) {
            *said = (uint64_t)m[i];
            *committed = now.seq[i];
            return i;
        }
    }
    return -1;
}

#define CHECK_ACKS(d, db)                                                                          \
    do {                                                                                           \
        uint64_t said_ = 0, committed_ = 0;                                                        \
        int c_ = ack_before_commit((d), (db), &said_, &committed_);                                \
        if (c_ >= 0) {                                                                             \
            ts_dump_tail("tallyd log", (d)->proc.err, 30);                                         \
            fail_msg("durable ack before COMMIT: tallyd says c%d durable_seq %llu, PostgreSQL "    \
                     "has %llu",                                                                   \
                     c_, (unsigned long long)said_, (unsigned long long)committed_);               \
        }                                                                                          \
    } while (0)

/* The backend of this database waiting for a synchronous standby, 0 when none, or -1 when
 * more than one. */
static int64_t syncrep_waiter(struct ts_db *db)
{
    uint64_t n = 0, pid = 0;
    if (ts_db_u64(db,
                  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND wait_event = 'SyncRep'",
                  &n))
        return -1;
    if (n == 0)
        return 0;
    if (n > 1 || ts_db_u64(db,
                           "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event = 'SyncRep'",
                           &pid))
        return -1;
    return (int64_t)pid;
}

static bool backend_alive(struct ts_db *db, int64_t pid)
{
    char sql[128];
    uint64_t n = 0;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld",
             (long long)pid);
    return ts_db_u64(db, sql, &n) == 0 && n > 0;
}

static bool log_has(const struct ts_tallyd *d, const char *text)
{
    char *log = ts_read_file(d->proc.err);
    bool has = log && strstr(log, text);
    free(log);
    return has;
}

/* The highest "durable up to N" collector i's tally-push has printed so far, or 0. */
static uint64_t push_said_durable(struct ts_case *c, uint32_t i)
{
    char err[1200];
    ts_case_paths(c, i, NULL, NULL, NULL, err, sizeof err);
    char *text = ts_read_file(err);
    uint64_t max = 0;
    for (const char *at = text; at && (at = strstr(at, "durable up to ")) != NULL; at++) {
        uint64_t n = strtoull(at + strlen("durable up to "), NULL, 10);
        if (n > max)
            max = n;
    }
    free(text);
    return max;
}

static int running(struct ts_proc *p)
{
    int n = 0;
    for (int i = 0; i < COLLECTORS; i++)
        n += !ts_proc_done(&p[i]);
    return n;
}

static void run_variant(struct ts_case *c, enum variant v)
{
    const char *vname = v == RELEASED ? "A released" : "B terminated";
    struct ts_tallyd *d = &c->d;
    ts_cleanup(); /* what a failed variant left running */
    acks_compared = 0;
    assert_int_equal(set_sync_names(""), 0);
    assert_int_equal(tallyd_spawn(d), 0);
    assert_int_equal(ts_tallyd_wait_http(d, "/readyz", 200, ts_scale(30000)), 0);
    struct ts_db *db = ts_db_open(c->conninfo);
    assert_non_null(db);
    struct ts_proc p[COLLECTORS];
    for (uint32_t i = 0; i < COLLECTORS; i++)
        assert_int_equal(ts_case_push(c, &p[i], i, BATCH), 0);
    int64_t t0 = ts_now_ms(), deadline = t0 + ts_scale(150000);

    /* 1. Pushing, some of it durable; then hold the commits back. */
    struct durable dur = {0};
    do {
        if (!running(p) || ts_now_ms() >= deadline)
            fail_msg("durable votes stuck at %llu before the hold", (unsigned long long)dur.votes);
        CHECK_ACKS(d, db);
        ts_sleep_ms(20);
        assert_int_equal(durable_read(db, &dur), 0);
    } while (dur.votes < VOTES / 8);
    long rss_before = rss_kb(d->proc.pid);
    int64_t hold_at = ts_now_ms();
    assert_int_equal(set_sync_names("nobody"), 0);

    /* tallyd's next COMMIT waits: its backend shows wait_event SyncRep. */
    int64_t waiter = 0, end = ts_now_ms() + ts_scale(15000);
    while ((waiter = syncrep_waiter(db)) == 0) {
        if (ts_now_ms() >= end)
            fail_msg("no COMMIT waits for the standby 15 s after the hold");
        ts_sleep_ms(10);
    }
    assert_true(waiter > 0);
    struct durable held;
    assert_int_equal(durable_read(db, &held), 0);
    fprintf(stderr,
            "[%s] hold: %lld ms after start, %llu votes durable, COMMIT of backend %lld "
            "waiting after %lld ms\n",
            vname, (long long)(hold_at - t0), (unsigned long long)held.votes, (long long)waiter,
            (long long)(ts_now_ms() - hold_at));

    /* While held: nothing moves in PostgreSQL, tallyd acks nothing as durable, pauses input
     * at the backlog limit, its RSS stays bounded. */
    int64_t paused_at = 0;
    long rss_pause = -1, rss_max = rss_before;
    double backlog_max = 0, lag_max = 0;
    end = ts_now_ms() + ts_scale(30000);
    for (;;) {
        int64_t now = ts_now_ms();
        if (paused_at && now - paused_at >= HOLD_AFTER_PAUSE_MS)
            break;
        if (now >= end) {
            ts_dump_tail("tallyd log", d->proc.err, 20);
            fail_msg("tallyd did not pause input within 30 s of the hold (backlog max %.0f)",
                     backlog_max);
        }
        if (ts_proc_done(&d->proc))
            fail_msg("tallyd exited (%d) while its COMMIT was held", ts_proc_code(&d->proc));
        CHECK_ACKS(d, db);
        double paused = metric("tally_ingest_paused"), backlog = metric("tally_backlog_votes");
        double lag = metric("tally_checkpoint_lag_seconds");
        if (backlog > backlog_max)
            backlog_max = backlog;
        if (lag > lag_max)
            lag_max = lag;
        long rss = rss_kb(d->proc.pid);
        if (rss > rss_max)
            rss_max = rss;
        if (!paused_at && paused == 1) {
            paused_at = now;
            rss_pause = rss;
        }
        struct durable x;
        assert_int_equal(durable_read(db, &x), 0);
        if (x.votes != held.votes || x.seq_sum != held.seq_sum)
            fail_msg("durable figures moved while the COMMIT was held: votes %llu -> %llu, "
                     "sum(durable_seq) %llu -> %llu",
                     (unsigned long long)held.votes, (unsigned long long)x.votes,
                     (unsigned long long)held.seq_sum, (unsigned long long)x.seq_sum);
        ts_sleep_ms(50);
    }
    long rss_end = rss_kb(d->proc.pid);
    if (rss_end > rss_max)
        rss_max = rss_end;
    fprintf(stderr,
            "[%s] held %lld ms: paused %lld ms after the hold, backlog max %.0f votes (limit "
            "%d), checkpoint lag up to %.1f s, RSS before %ld kB, at pause %ld kB, max %ld kB\n",
            vname, (long long)(ts_now_ms() - hold_at), (long long)(paused_at - hold_at),
            backlog_max, BACKLOG_VOTES, lag_max, rss_before, rss_pause, rss_max);
    if (log_has(d, "pausing input") == false)
        fail_msg("tallyd's log does not say it paused input");
    /* Bounded by the backlog: what came after the pause is at most the frames in flight. */
    if (backlog_max > 2.0 * BACKLOG_VOTES)
        fail_msg("backlog %.0f votes, twice the limit %d", backlog_max, BACKLOG_VOTES);
    if (rss_max - rss_pause > ts_scale(32 * 1024))
        fail_msg("tallyd's RSS grew by %ld kB after it paused", rss_max - rss_pause);
    if (lag_max < 1.0)
        fail_msg("tally_checkpoint_lag_seconds did not rise while held (max %.2f)", lag_max);

    /* 2. SIGKILL tallyd while its COMMIT waits: the backend stays, the lock with it. */
    ts_tallyd_kill(d);
    int64_t killed_at = ts_now_ms();
    ts_sleep_ms(200);
    if (!backend_alive(db, waiter) || syncrep_waiter(db) != waiter)
        fail_msg("backend %lld no longer waits for the standby after tallyd's SIGKILL",
                 (long long)waiter);

    /* A new tallyd waits for the lock of the dead one's session (no --standby needed). */
    assert_int_equal(tallyd_spawn(d), 0);
    assert_int_equal(ts_tallyd_wait_http(d, "/healthz", 200, ts_scale(15000)), 0);
    end = ts_now_ms() + ts_scale(15000);
    while (!log_has(d, "is gone but its PostgreSQL session still holds it")) {
        if (ts_proc_done(&d->proc) || ts_now_ms() >= end) {
            ts_dump_tail("new tallyd log", d->proc.err, 30);
            fail_msg("the new tallyd does not say it waits for the old session's writer lock");
        }
        ts_sleep_ms(20);
    }
    ts_sleep_ms(WAIT_LOCK_MS);
    if (ts_proc_done(&d->proc))
        fail_msg("the new tallyd exited (%d) waiting for the lock", ts_proc_code(&d->proc));
    int ready = ts_http_get(d->http_port, "/readyz", NULL, 0, 2000);
    if (ready == 200)
        fail_msg("the new tallyd is ready while the old session holds the writer lock");
    struct durable x;
    assert_int_equal(durable_read(db, &x), 0);
    if (x.votes != held.votes)
        fail_msg("durable votes moved before the release (%llu -> %llu)",
                 (unsigned long long)held.votes, (unsigned long long)x.votes);

    /* Nor was anything acked to the collectors beyond what was committed. */
    char said_text[160] = "";
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        uint64_t said = push_said_durable(c, i);
        size_t at = strlen(said_text);
        snprintf(said_text + at, sizeof said_text - at, "%sc%u %llu/%llu", i ? ", " : "", i,
                 (unsigned long long)said, (unsigned long long)held.seq[i]);
        if (said > held.seq[i])
            fail_msg("tally-push c%u printed durable up to %llu; PostgreSQL has %llu", i,
                     (unsigned long long)said, (unsigned long long)held.seq[i]);
    }

    fprintf(stderr, "[%s] while held, tally-push said durable up to / committed: %s\n", vname,
            said_text);

    /* 3. Release (A) or terminate the waiting backend, then release (B). */
    int64_t late_at = 0, gone_at = 0, release_at = 0, ready_at = 0, resume_at = 0;
    uint64_t late_votes = 0;
    struct durable late = {0};
    if (v == TERMINATED) {
        int64_t term_at = ts_now_ms();
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld, 10000)", (long long)waiter);
        char *t = ts_sql_text(admin, sql);
        if (!t || strcmp(t, "t") != 0)
            fail_msg("pg_terminate_backend(%lld) answered %s", (long long)waiter, t ? t : "NULL");
        free(t);
        if (backend_alive(db, waiter))
            fail_msg("backend %lld still there after pg_terminate_backend", (long long)waiter);
        gone_at = ts_now_ms();
        assert_int_equal(durable_read(db, &x), 0);
        late_votes = x.votes;
        late = x;
        if (late_votes <= held.votes)
            fail_msg("the terminated COMMIT is not visible (votes %llu): PostgreSQL committed it "
                     "locally",
                     (unsigned long long)late_votes);
        /* The new tallyd takes the lock; whatever it commits now waits in turn. */
        ts_sleep_ms(TERMINATED_WAIT_MS);
        int64_t w2 = syncrep_waiter(db);
        assert_int_equal(durable_read(db, &x), 0);
        CHECK_ACKS(d, db);
        fprintf(stderr,
                "[%s] terminated backend %lld (%lld ms); committed locally: %llu -> %llu votes; "
                "%lld ms later the new tallyd's backend %lld waits for the standby, votes %llu\n",
                vname, (long long)waiter, (long long)(gone_at - term_at),
                (unsigned long long)held.votes, (unsigned long long)late_votes,
                (long long)TERMINATED_WAIT_MS, (long long)w2, (unsigned long long)x.votes);
        if (x.votes != late_votes)
            fail_msg("durable votes moved while still held (%llu -> %llu)",
                     (unsigned long long)late_votes, (unsigned long long)x.votes);
        late_at = gone_at;
    }
    release_at = ts_now_ms();
    assert_int_equal(set_sync_names(""), 0);
    end = release_at + ts_scale(30000);
    while (!resume_at) {
        int64_t now = ts_now_ms();
        if (now >= end || ts_proc_done(&d->proc)) {
            ts_dump_tail("new tallyd log", d->proc.err, 30);
            fail_msg("no durable progress 30 s after the release (late %lld, gone %lld, ready "
                     "%lld)",
                     (long long)late_at, (long long)gone_at, (long long)ready_at);
        }
        bool alive = gone_at ? false : backend_alive(db, waiter);
        assert_int_equal(durable_read(db, &x), 0);
        if (!late_at && x.votes > held.votes)
            late_at = now;
        if (!gone_at && !alive) {
            gone_at = now;
            late_votes = x.votes;
            late = x;
        }
        if (gone_at && x.votes > late_votes)
            resume_at = now;
        if (!ready_at && ts_http_get(d->http_port, "/readyz", NULL, 0, 1000) == 200)
            ready_at = ts_now_ms();
        ts_sleep_ms(10);
    }
    if (v == RELEASED && late_votes <= held.votes)
        fail_msg("the released COMMIT did not land (votes %llu -> %llu)",
                 (unsigned long long)held.votes, (unsigned long long)late_votes);
    fprintf(stderr,
            "[%s] COMMIT held %lld ms in all, tallyd dead %lld ms of it; from the release: late "
            "COMMIT visible %+lld ms, old session gone %+lld ms, new tallyd ready %+lld ms, "
            "durable votes moving %+lld ms (late checkpoint %llu -> %llu votes)\n",
            vname, (long long)(release_at - hold_at), (long long)(release_at - killed_at),
            (long long)(late_at - release_at), (long long)(gone_at - release_at),
            (long long)(ready_at ? ready_at - release_at : -1), (long long)(resume_at - release_at),
            (unsigned long long)held.votes, (unsigned long long)late_votes);
    /* Reported, not asserted: each collector finds the new tallyd on its own reconnect
     * backoff (at most 5 s); a collector whose batches were all in the late checkpoint
     * never moves. */
    int64_t all_at = 0;
    end = ts_now_ms() + ts_scale(10000);
    while (!all_at && ts_now_ms() < end) {
        assert_int_equal(durable_read(db, &x), 0);
        int moved = 0;
        for (int i = 0; i < COLLECTORS; i++)
            moved += x.seq[i] > late.seq[i] || ts_proc_done(&p[i]);
        if (moved == COLLECTORS)
            all_at = ts_now_ms();
        else
            ts_sleep_ms(10);
    }
    fprintf(stderr, "[%s] every collector durable again (or done) %+lld ms after the release\n",
            vname, (long long)(all_at ? all_at - release_at : -1));
    if (resume_at - release_at > ts_scale(RESUME_LIMIT_MS))
        fail_msg("ingest resumed %lld ms after the release (limit %d ms)",
                 (long long)(resume_at - release_at), ts_scale(RESUME_LIMIT_MS));
    if (!log_has(d, "writer lock taken"))
        fail_msg("the new tallyd never logged taking the writer lock");

    /* 4. Drain; exactly once. */
    struct ts_push_result sum = {0};
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        char out[1200], err[1200];
        ts_case_paths(c, i, NULL, NULL, out, err, sizeof out);
        while (!ts_proc_done(&p[i])) {
            if (ts_now_ms() >= deadline) {
                ts_proc_kill(&p[i]);
                ts_dump_tail("tally-push stderr", err, 20);
                ts_dump_tail("tallyd log", d->proc.err, 20);
                fail_msg("tally-push c%u did not finish", i);
            }
            CHECK_ACKS(d, db);
            ts_sleep_ms(50);
        }
        if (ts_proc_code(&p[i]) != 0) {
            ts_dump_tail("tally-push stderr", err, 30);
            fail_msg("tally-push c%u exited %d", i, ts_proc_code(&p[i]));
        }
        if (ts_push_result_add(out, &sum) != 0)
            fail_msg("tally-push c%u printed no result line", i);
    }
    fprintf(stderr, "[%s] all %d pushes exited 0 after %lld ms: %llu votes, %llu batches\n", vname,
            COLLECTORS, (long long)(ts_now_ms() - t0), (unsigned long long)sum.votes,
            (unsigned long long)sum.batches);
    ts_db_close(db);
    fprintf(stderr,
            "[%s] %llu durable_seq figures of tallyd's /metrics checked against PostgreSQL\n",
            vname, (unsigned long long)acks_compared);
    if (acks_compared < 100)
        fail_msg("only %llu durable_seq figures compared: the check is vacuous",
                 (unsigned long long)acks_compared);
    assert_int_equal(ts_case_totals_match(c, &sum), 0);
    char *vout = NULL;
    assert_int_equal(ts_ctl(c->conninfo, &vout, "verify", NULL, NULL), 0);
    free(vout);
    assert_int_equal(ts_tallyd_stop(d, ts_scale(30000)), 0);
}

static void test_released(void **state)
{
    (void)state;
    run_variant(&cases[0], RELEASED);
}

static void test_terminated(void **state)
{
    (void)state;
    run_variant(&cases[1], TERMINATED);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    char base[1100];
    snprintf(base, sizeof base, "%s/itest/held_commit_pg", ts_bin_dir());
    pg("stop", base); /* a leftover of an interrupted run */
    snprintf(pg_dir, sizeof pg_dir, "%s", ts_workdir("held_commit_pg"));
    if (pg("start", pg_dir) != 0)
        return -1;
    pg_port_no = read_port(pg_dir);
    snprintf(admin, sizeof admin, "host=127.0.0.1 port=%u user=postgres dbname=postgres",
             pg_port_no);
    const char *names[2] = {"held_commit_a", "held_commit_b"};
    for (int i = 0; i < 2; i++) {
        struct ts_case *c = &cases[i];
        if (ts_case_data(c, names[i], 1000, 1000 / 7 + 1, COLLECTORS, VOTES, "0.03", "0.002", 0,
                         (uint64_t)(91 + i)))
            return -1;
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", names[i]);
        snprintf(c->conninfo, sizeof c->conninfo, "host=127.0.0.1 port=%u user=postgres dbname=%s",
                 pg_port_no, names[i]);
        if (ts_sql_exec(admin, sql) || ts_db_prepare(c->conninfo, c->registry, COLLECTORS))
            return -1;
        snprintf(c->d.conninfo, sizeof c->d.conninfo, "%s", c->conninfo);
        snprintf(c->d.dir, sizeof c->d.dir, "%s", c->dir);
        c->d.checkpoint_ms = 100;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        ts_tallyd_kill(&cases[i].d);
    ts_cleanup();
    set_sync_names(""); /* a failed test may leave it held: let the backends go */
    pg("stop", pg_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_released),
        cmocka_unit_test(test_terminated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
