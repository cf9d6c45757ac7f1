/* End-to-end crash test: four collectors push a consultation with repeated voters, votes for
 * unknown projects and a few malformed lines, while tallyd is killed with SIGKILL under load
 * several times (and restarted) and one collector is killed with SIGKILL and restarted with
 * the same arguments. At the end every tally-push has finished (exit 0; 3 for the collector
 * whose file has malformed lines), the results equal tally-gen's truth exactly, and the
 * accepted / duplicate / rejected sums equal its summary.
 * Size and kill count come from TALLY_CRASH_VOTES, TALLY_CRASH_PROJECTS, TALLY_CRASH_KILLS
 * (the long soak test raises them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLLECTORS 4
#define MALFORMED 7 /* planted in the last collector's file */

static struct ts_case tc;

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : def;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *name = getenv("TALLY_CRASH_NAME");
    uint32_t projects = (uint32_t)env_u64("TALLY_CRASH_PROJECTS", 2000);
    uint64_t votes = env_u64("TALLY_CRASH_VOTES", 400000);
    return ts_case_setup(&tc, name && *name ? name : "crash", projects, projects / 7 + 1,
                         COLLECTORS, votes, "0.03", "0.002", MALFORMED, 51);
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

static int running(struct ts_proc *p)
{
    int n = 0;
    for (int i = 0; i < COLLECTORS; i++)
        n += !ts_proc_done(&p[i]);
    return n;
}

static void test_crash(void **state)
{
    (void)state;
    const int kills_wanted = (int)env_u64("TALLY_CRASH_KILLS", 3);
    const uint32_t batch = 100; /* libtally spools at most 256 batches ahead of durable */
    tc.d.checkpoint_ms = 100;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);

    struct ts_proc p[COLLECTORS];
    for (uint32_t i = 0; i < COLLECTORS; i++)
        assert_int_equal(ts_case_push(&tc, &p[i], i, batch), 0);
    int64_t t0 = ts_now_ms();

    /* Kill tallyd each time durable progress has moved by a step since its last (re)start:
     * collectors are pushing again, so the kill lands under load however fast the machine
     * is. Kill collector c1 once, early. */
    struct ts_db *db = ts_db_open(tc.conninfo);
    assert_non_null(db);
    srand(7);
    int kills = 0;
    bool collector_killed = false;
    int64_t deadline = ts_now_ms() + ts_scale(120000);
    uint64_t at_restart = 0;
    const uint64_t step = tc.truth.votes / (4 * (uint64_t)kills_wanted);
    while (kills < kills_wanted && running(p) && ts_now_ms() < deadline) {
        uint64_t durable = 0;
        if (ts_db_u64(db, "SELECT coalesce(sum(votes), 0) FROM collectors", &durable) != 0)
            fail_msg("cannot read progress from PostgreSQL");
        if (!collector_killed && durable >= tc.truth.votes / 10 && !ts_proc_done(&p[1])) {
            ts_proc_kill(&p[1]);
            fprintf(stderr, "[%5lld ms] SIGKILL tally-push c1 at %llu durable votes; restarting\n",
                    (long long)(ts_now_ms() - t0), (unsigned long long)durable);
            assert_int_equal(ts_case_push(&tc, &p[1], 1, batch), 0);
            collector_killed = true;
        }
        if (durable >= at_restart + step) {
            ts_tallyd_kill(&tc.d);
            kills++;
            fprintf(stderr,
                    "[%5lld ms] SIGKILL tallyd (%d/%d) at %llu durable votes, %d pushes "
                    "running\n",
                    (long long)(ts_now_ms() - t0), kills, kills_wanted, (unsigned long long)durable,
                    running(p));
            ts_sleep_ms(rand() % 50);
            assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(60000)), 0);
            if (ts_db_u64(db, "SELECT coalesce(sum(votes), 0) FROM collectors", &at_restart))
                fail_msg("cannot read progress from PostgreSQL");
        }
        ts_sleep_ms(10);
    }
    ts_db_close(db);
    if (kills < kills_wanted || !collector_killed)
        fail_msg("the pushes finished after %d tallyd kills (wanted %d, collector killed: %d): "
                 "make the data set larger",
                 kills, kills_wanted, collector_killed);

    struct ts_push_result sum = {0};
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        char out[1200], err[1200];
        ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
        int want = i == COLLECTORS - 1 ? 3 : 0;
        if (ts_proc_wait(&p[i], ts_scale(180000)) != 0) {
            ts_proc_kill(&p[i]);
            ts_dump_tail("tally-push stderr", err, 30);
            ts_dump_tail("tallyd log", tc.d.proc.err, 30);
            fail_msg("tally-push c%u did not finish within 180 s", i);
        }
        if (ts_proc_code(&p[i]) != want) {
            ts_dump_tail("tally-push stderr", err, 30);
            fail_msg("tally-push c%u exited %d, want %d", i, ts_proc_code(&p[i]), want);
        }
        if (ts_push_result_add(out, &sum) != 0)
            fail_msg("tally-push c%u printed no result line", i);
    }
    fprintf(stderr, "[%5lld ms] all pushes done\n", (long long)(ts_now_ms() - t0));

    assert_int_equal(ts_case_totals_match(&tc, &sum), 0);

    /* And it all survives one more clean restart. */
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(60000)), 0);
    assert_int_equal(ts_case_results_match(&tc), 0);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
