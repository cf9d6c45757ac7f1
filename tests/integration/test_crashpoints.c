/* Crash points (src/core/crashpoint.h): for each named point, tallyd is started again and
 * again with TALLY_CRASH_AT=point:N, N spread over a range so the kills land at different
 * moments, while four collectors push; it dies there by SIGKILL (its log says which point)
 * and is started again at once. For during_reconnect the test makes the PostgreSQL session
 * lost (pg_terminate_backend of tallyd's backends) until tallyd dies re-opening it. Then a
 * tallyd without crash point lets every push finish: the results equal tally-gen's truth,
 * the database's and the pushes' sums equal its summary, and `tallyctl verify` passes.
 * Prints per point: kills, votes, recovery time (spawn -> /readyz 200) p50/p99.
 * Only a build configured with -DTALLY_CRASH_POINTS=ON has crash points: any other build
 * exits 77 at once (CTest SKIP_RETURN_CODE 77).
 * TALLY_CRASHPOINTS_KILLS (kills per point, default 6), TALLY_CRASHPOINTS_VOTES (per
 * point), TALLY_CRASHPOINTS_ONLY (one point's name), TALLY_CRASHPOINTS_SEED. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SKIP_CODE 77

#ifndef TALLY_CRASH_POINTS

int main(void)
{
    printf("test_crashpoints: skipped: this build has no crash points "
           "(configure with -DTALLY_CRASH_POINTS=ON)\n");
    return SKIP_CODE;
}

#else

#define COLLECTORS 4
#define BATCH 100 /* votes per batch: many batches, so many passes of every point */

/* A point and the range of N its kills are spread over: passes per second differ by
 * orders of magnitude (a read per frame, a pass per checkpoint, one per reconnect). */
struct point {
    const char *name;
    uint32_t lo, hi;
    bool lose_session; /* the test terminates tallyd's PostgreSQL session */
};

static const struct point points[] = {
    {"after_read", 5, 300, false},    {"mid_apply", 1, 300, false},
    {"before_commit", 1, 10, false},  {"after_commit_before_ack", 1, 10, false},
    {"mid_ack", 1, 30, false},        {"mid_checkpoint", 1, 10, false},
    {"during_reconnect", 1, 3, true}, {"token_page_open", 1, 10, false},
};
#define N_POINTS (sizeof(points) / sizeof(points[0]))

static struct ts_case tc;
static bool tc_live; /* tc holds a database to drop */
static struct ts_proc push[COLLECTORS];
static uint64_t rng_state;

/* One line per point, printed again together at the end. */
static char summary[N_POINTS][200];

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : def;
}

static uint32_t rnd(uint32_t n) /* uniform enough in [0, n) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return n ? (uint32_t)((rng_state >> 33) % n) : 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank over a sorted array. */
static int64_t percentile(const int64_t *v, size_t n, int pct)
{
    if (n == 0)
        return -1;
    size_t rank = ((size_t)pct * n + 99) / 100;
    return v[rank ? rank - 1 : 0];
}

/* Starts tallyd as ts_tallyd_start does, with TALLY_CRASH_AT=arm (NULL: unarmed) in its
 * environment only, and does not wait. */
static int tallyd_spawn(struct ts_tallyd *d, const char *arm)
{
    char listen[32], http[32], cp[16], log[PATH_MAX];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d->port);
    snprintf(http, sizeof http, "127.0.0.1:%u", d->http_port);
    snprintf(cp, sizeof cp, "%d", d->checkpoint_ms);
    snprintf(log, sizeof log, "%s/tallyd-%d.log", d->dir, ++d->starts);
    char *argv[] = {
        (char *)ts_prog("tallyd"), "--db", d->conninfo,   "--listen", listen, "--http", http,
        "--checkpoint-ms",         cp,     "--log-level", "info",     NULL};
    if (arm)
        setenv("TALLY_CRASH_AT", arm, 1);
    int rc = ts_spawn(&d->proc, "tallyd", argv, NULL, log);
    unsetenv("TALLY_CRASH_AT");
    return rc;
}

/* Polls /readyz every 10 ms. Returns the ms from t0 to the first 200, -1 when tallyd
 * exited first, -2 on timeout. */
static int64_t wait_ready(struct ts_tallyd *d, int64_t t0, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (ts_now_ms() < deadline) {
        if (ts_proc_done(&d->proc))
            return -1;
        if (ts_http_get(d->http_port, "/readyz", NULL, 0, 1000) == 200)
            return ts_now_ms() - t0;
        ts_sleep_ms(10);
    }
    return -2;
}

static int pushes_running(void)
{
    int n = 0;
    for (int i = 0; i < COLLECTORS; i++)
        n += !ts_proc_done(&push[i]);
    return n;
}

/* Its log says it died at this point, by this pass. */
static bool log_says_point(const struct ts_tallyd *d, const char *name, uint32_t n)
{
    char want[160];
    snprintf(want, sizeof want, "crash point: '%s' reached (pass %u): SIGKILL", name, n);
    char *log = ts_read_file(d->proc.err);
    bool ok = log && strstr(log, want);
    free(log);
    return ok;
}

/* Ends the PostgreSQL sessions tallyd has on its database; returns how many. */
static uint64_t lose_session(void)
{
    uint64_t n = 0;
    if (ts_sql_u64(tc.conninfo,
                   "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                   " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                   " AND application_name = 'tallyd'",
                   &n) != 0)
        return 0;
    return n;
}

/* What a point's rounds add up to. */
struct point_stats {
    int kills, before_ready, terminations, rounds;
    uint64_t votes;
    int64_t *rec; /* recovery times (ms), n_rec of them */
    size_t n_rec, cap_rec;
};

static void rec_add(struct point_stats *st, int64_t ms)
{
    if (st->n_rec == st->cap_rec) {
        st->cap_rec = st->cap_rec ? 2 * st->cap_rec : 64;
        st->rec = realloc(st->rec, st->cap_rec * sizeof(*st->rec));
        assert_non_null(st->rec);
    }
    st->rec[st->n_rec++] = ms;
}

/* One round: a fresh consultation and database, collectors pushing, tallyd killed at the
 * point until the kills are all done or the pushes are (whichever first), then the check
 * with an unarmed tallyd. The machine decides how many votes a life takes, so the data
 * is not sized to the kills: rounds go on until they add up. */
static void run_round(size_t pi, int kills_wanted, uint64_t votes, struct point_stats *st)
{
    const struct point *pt = &points[pi];
    char name[64];
    snprintf(name, sizeof name, "crashpoints_%s_%d", pt->name, st->rounds);
    assert_int_equal(ts_case_setup(&tc, name, 1000, 150, COLLECTORS, votes, "0.03", "0.002", 0,
                                   (uint64_t)(700 + 100 * st->rounds + (int)pi)),
                     0);
    tc_live = true;
    st->rounds++;
    tc.d.checkpoint_ms = 100;
    /* The ports are fixed before the first start: the collectors dial them from the
     * first moment, while tallyd is still (re)starting. */
    tc.d.port = ts_free_port();
    do
        tc.d.http_port = ts_free_port();
    while (tc.d.http_port == tc.d.port);

    bool pushes_started = false, drained = false;
    while (st->kills < kills_wanted && !drained) {
        /* Stratified: the k-th kill's N falls in the k-th slice of [lo, hi]. */
        uint32_t span = pt->hi - pt->lo + 1;
        uint32_t n =
            pt->lo + (uint32_t)(((uint64_t)st->kills * span + rnd(span)) / (uint64_t)kills_wanted);
        char arm[96];
        snprintf(arm, sizeof arm, "%s:%u", pt->name, n);
        int64_t t0 = ts_now_ms();
        assert_int_equal(tallyd_spawn(&tc.d, arm), 0);
        if (!pushes_started) {
            for (uint32_t i = 0; i < COLLECTORS; i++)
                assert_int_equal(ts_case_push(&tc, &push[i], i, BATCH), 0);
            pushes_started = true;
        }
        int64_t ready = wait_ready(&tc.d, t0, ts_scale(60000));
        if (ready == -2) {
            ts_dump_tail("tallyd log", tc.d.proc.err, 40);
            fail_msg("%s: tallyd (armed %s) not ready within 60 s", pt->name, arm);
        }
        if (ready >= 0)
            rec_add(st, ready);
        else
            st->before_ready++;

        /* Wait for it to die at the point; for during_reconnect, take its session away
         * now and then until it does. */
        int64_t deadline = ts_now_ms() + ts_scale(30000);
        int64_t next_loss = ts_now_ms() + 50 + rnd(400);
        while (!ts_proc_done(&tc.d.proc)) {
            if (!pushes_running() && !ts_proc_done(&tc.d.proc)) {
                /* All durable: no traffic will bring it to the point. Not a kill. */
                ts_tallyd_kill(&tc.d);
                drained = true;
                break;
            }
            if (ts_now_ms() >= deadline) {
                ts_dump_tail("tallyd log", tc.d.proc.err, 30);
                fail_msg("%s: tallyd armed %s did not reach the point within 30 s (%d pushes "
                         "running)",
                         pt->name, arm, pushes_running());
            }
            if (pt->lose_session && ts_now_ms() >= next_loss) {
                st->terminations += (int)lose_session();
                next_loss = ts_now_ms() + 150 + rnd(450);
            }
            ts_sleep_ms(5);
        }
        if (drained)
            break;
        int code = ts_proc_code(&tc.d.proc);
        if (code != 128 + SIGKILL || !log_says_point(&tc.d, pt->name, n)) {
            ts_dump_tail("tallyd log", tc.d.proc.err, 40);
            fail_msg("%s: tallyd armed %s exited %d, not by the crash point", pt->name, arm, code);
        }
        st->kills++;
        if (getenv("TALLY_CRASHPOINTS_VERBOSE"))
            fprintf(stderr, "%s: round %d kill %d/%d at pass %u (ready in %lld ms)\n", pt->name,
                    st->rounds, st->kills, kills_wanted, n, (long long)ready);
    }

    /* Unarmed: everything durable, every push done. */
    int64_t t0 = ts_now_ms();
    assert_int_equal(tallyd_spawn(&tc.d, NULL), 0);
    int64_t ready = wait_ready(&tc.d, t0, ts_scale(60000));
    if (ready < 0) {
        ts_dump_tail("tallyd log", tc.d.proc.err, 40);
        fail_msg("%s: the unarmed tallyd did not get ready (%lld)", pt->name, (long long)ready);
    }
    rec_add(st, ready);
    struct ts_push_result sum = {0};
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        char out[1200], err[1200];
        ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
        if (ts_proc_wait(&push[i], ts_scale(180000)) != 0) {
            ts_proc_kill(&push[i]);
            ts_dump_tail("tally-push stderr", err, 30);
            ts_dump_tail("tallyd log", tc.d.proc.err, 30);
            fail_msg("%s: tally-push c%u did not finish within 180 s", pt->name, i);
        }
        if (ts_proc_code(&push[i]) != 0) {
            ts_dump_tail("tally-push stderr", err, 30);
            fail_msg("%s: tally-push c%u exited %d", pt->name, i, ts_proc_code(&push[i]));
        }
        if (ts_push_result_add(out, &sum) != 0)
            fail_msg("%s: tally-push c%u printed no result line", pt->name, i);
    }
    assert_int_equal(ts_case_totals_match(&tc, &sum), 0);
    char *vout = NULL;
    int vrc = ts_ctl(tc.conninfo, &vout, "verify", NULL, NULL);
    if (vrc != 0)
        fprintf(stderr, "%s\n", vout ? vout : "");
    free(vout);
    assert_int_equal(vrc, 0);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    st->votes += tc.truth.votes;
    ts_case_teardown(&tc, false);
    tc_live = false;
    ts_rm_rf(tc.dir); /* ~8 MB of votes and spools per round */
}

static void run_point(size_t pi)
{
    const struct point *pt = &points[pi];
    const int kills_wanted = (int)env_u64("TALLY_CRASHPOINTS_KILLS", 6);
    const uint64_t votes = env_u64("TALLY_CRASHPOINTS_VOTES", 400000);
    const char *only = getenv("TALLY_CRASHPOINTS_ONLY");
    if (only && *only && strcmp(only, pt->name) != 0) {
        snprintf(summary[pi], sizeof summary[pi], "%-24s not run (TALLY_CRASHPOINTS_ONLY)",
                 pt->name);
        skip();
    }
    rng_state = env_u64("TALLY_CRASHPOINTS_SEED", 9) * 1000 + pi;
    struct point_stats st = {0};
    int64_t t_start = ts_now_ms();
    while (st.kills < kills_wanted) {
        if (st.rounds >= 4 * kills_wanted)
            fail_msg("%s: %d rounds and only %d kills: the pushes finish before tallyd reaches "
                     "the point",
                     pt->name, st.rounds, st.kills);
        run_round(pi, kills_wanted, votes, &st);
    }
    qsort(st.rec, st.n_rec, sizeof(*st.rec), cmp_i64);
    char extra[64] = "";
    if (pt->lose_session)
        snprintf(extra, sizeof extra, ", %d sessions terminated", st.terminations);
    snprintf(summary[pi], sizeof summary[pi],
             "%-24s kills %2d (N %u..%u, %d before ready) rounds %d votes %llu recovery p50 "
             "%lld ms p99 %lld ms%s; %.1f s",
             pt->name, st.kills, pt->lo, pt->hi, st.before_ready, st.rounds,
             (unsigned long long)st.votes, (long long)percentile(st.rec, st.n_rec, 50),
             (long long)percentile(st.rec, st.n_rec, 99), extra,
             (double)(ts_now_ms() - t_start) / 1000.0);
    printf("crashpoints: %s\n", summary[pi]);
    fflush(stdout);
    free(st.rec);
}

static int teardown_point(void **state)
{
    (void)state;
    /* Still live: the test failed; keep its database and files for a look. */
    if (tc_live)
        ts_case_teardown(&tc, true);
    tc_live = false;
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    printf("crashpoints: summary\n");
    for (size_t i = 0; i < N_POINTS; i++)
        if (summary[i][0])
            printf("crashpoints:   %s\n", summary[i]);
    return 0;
}

#define POINT_TEST(i, fn)                                                                          \
    static void fn(void **state)                                                                   \
    {                                                                                              \
        (void)state;                                                                               \
        run_point(i);                                                                              \
    }

POINT_TEST(0, test_after_read)
POINT_TEST(1, test_mid_apply)
POINT_TEST(2, test_before_commit)
POINT_TEST(3, test_after_commit_before_ack)
POINT_TEST(4, test_mid_ack)
POINT_TEST(5, test_mid_checkpoint)
POINT_TEST(6, test_during_reconnect)
POINT_TEST(7, test_token_page_open)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_after_read, teardown_point),
        cmocka_unit_test_teardown(test_mid_apply, teardown_point),
        cmocka_unit_test_teardown(test_before_commit, teardown_point),
        cmocka_unit_test_teardown(test_after_commit_before_ack, teardown_point),
        cmocka_unit_test_teardown(test_mid_ack, teardown_point),
        cmocka_unit_test_teardown(test_mid_checkpoint, teardown_point),
        cmocka_unit_test_teardown(test_during_reconnect, teardown_point),
        cmocka_unit_test_teardown(test_token_page_open, teardown_point),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#endif
