/* PostgreSQL away: tallyd acknowledges batches provisionally but never reports them durable
 * before their checkpoint commits (tested with the tables locked, then with PostgreSQL
 * stopped), tally-push does not finish meanwhile, and once PostgreSQL is back everything
 * completes with exact results. Also: PostgreSQL stopped and restarted in the middle of a
 * multi-collector push loses nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally/protocol.h"
#include "tally.pb-c.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ts_case tc;

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    /* Whatever happened, later tests need the server back. */
    return ts_pg("start") == 0 ? 0 : -1;
}

/* Waits for an Ack answering seq (skipping durable-only acks). */
static struct ts_frame ack_for(int fd, uint64_t seq)
{
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    struct ts_frame f;
    while (ts_now_ms() < deadline) {
        int r = ts_wire_recv(fd, &f, (int)(deadline - ts_now_ms()));
        if (r <= 0)
            break;
        if (f.kind == TALLY__FRAME__MSG_ERROR)
            fail_msg("Error %d (%s) instead of an Ack for seq %llu", f.error_code, f.message,
                     (unsigned long long)seq);
        if (f.kind == TALLY__FRAME__MSG_ACK && f.seq == seq)
            return f;
    }
    fail_msg("no Ack for seq %llu within 10 s", (unsigned long long)seq);
    return f;
}

/* Highest durable_seq announced within ms milliseconds (start: the value known so far). */
static uint64_t durable_within(int fd, uint64_t start, uint64_t goal, int ms)
{
    int64_t deadline = ts_now_ms() + ms;
    uint64_t best = start;
    struct ts_frame f;
    while (best < goal && ts_now_ms() < deadline) {
        int r = ts_wire_recv(fd, &f, (int)(deadline - ts_now_ms()));
        if (r == 0)
            fail_msg("tallyd closed the collector connection");
        if (r < 0)
            break;
        if (f.kind == TALLY__FRAME__MSG_ACK && f.durable_seq > best)
            best = f.durable_seq;
    }
    return best;
}

static int setup_nodurable(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "nodurable", 300, 50, 1, 30000, "0.02", "0.001", 0, 41))
        return -1;
    return ts_ctl(tc.conninfo, NULL, "add-collector", "raw", NULL) == 0 ? 0 : -1;
}

static void test_no_durable_before_commit(void **state)
{
    (void)state;
    tc.d.checkpoint_ms = 100;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    uint32_t pid = ts_truth_first_project(tc.truth_csv);
    assert_true(pid != 0);
    enum { N = 10 };
    uint64_t ballots[N];
    uint32_t projects[N];
    for (int i = 0; i < N; i++) {
        ballots[i] = 0x0bad5eed00000000ull + (uint64_t)i;
        projects[i] = pid;
    }

    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "raw", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_WELCOME);
    assert_int_equal(f.durable_seq, 0);

    /* 1. Tables locked: the checkpoint cannot commit. */
    struct ts_db *lock = ts_db_open(tc.conninfo);
    assert_non_null(lock);
    assert_int_equal(ts_db_exec(lock, "BEGIN"), 0);
    assert_int_equal(ts_db_exec(lock, "LOCK TABLE checkpoints, batches, tallies, collectors "
                                      "IN ACCESS EXCLUSIVE MODE"),
                     0);
    assert_int_equal(ts_wire_batch(fd, 1, ballots, projects, N), 0);
    f = ack_for(fd, 1);
    assert_int_equal(f.accepted, N);
    assert_int_equal(f.durable_seq, 0);
    uint64_t durable = durable_within(fd, 0, 1, ts_scale(2000));
    assert_int_equal(durable, 0);
    uint64_t rows = 99;
    assert_int_equal(ts_db_u64(lock, "SELECT count(*) FROM batches", &rows), 0);
    assert_int_equal(rows, 0);
    assert_int_equal(ts_db_u64(lock, "SELECT coalesce(sum(votes), 0) FROM tallies", &rows), 0);
    assert_int_equal(rows, 0);
    assert_int_equal(ts_db_exec(lock, "ROLLBACK"), 0);
    ts_db_close(lock);
    durable = durable_within(fd, durable, 1, ts_scale(15000));
    assert_int_equal(durable, 1);
    assert_int_equal(
        ts_sql_u64(tc.conninfo, "SELECT count(*) FROM batches WHERE collector_id = 'raw'", &rows),
        0);
    assert_int_equal(rows, 1);

    /* 2. PostgreSQL stopped: provisional acks only, tally-push cannot finish. */
    assert_int_equal(ts_pg("stop"), 0);
    for (int i = 0; i < N; i++)
        ballots[i] += 1000;
    assert_int_equal(ts_wire_batch(fd, 2, ballots, projects, N), 0);
    f = ack_for(fd, 2);
    assert_int_equal(f.accepted, N);
    assert_true(f.durable_seq < 2);

    struct ts_proc push;
    char out[1200], err[1200];
    ts_case_paths(&tc, 0, NULL, NULL, out, err, sizeof out);
    assert_int_equal(ts_case_push(&tc, &push, 0, 500), 0);
    int64_t window_end = ts_now_ms() + 4000;
    durable = durable_within(fd, durable, 2, 4000);
    assert_true(durable < 2);
    while (ts_now_ms() < window_end)
        ts_sleep_ms(50);
    bool push_ended = ts_proc_done(&push);
    if (push_ended && ts_proc_code(&push) == 0)
        fail_msg("tally-push exited 0 while PostgreSQL was down: durability was claimed early");
    if (push_ended)
        fprintf(stderr, "tally-push gave up with %d while PostgreSQL was down; rerunning\n",
                ts_proc_code(&push));
    assert_false(ts_proc_done(&tc.d.proc));
    assert_int_equal(ts_http_get(tc.d.http_port, "/healthz", NULL, 0, 5000), 200);
    int ready = ts_http_get(tc.d.http_port, "/readyz", NULL, 0, 5000);
    if (ready == 200)
        fprintf(stderr, "note: /readyz still 200 with PostgreSQL down\n");

    /* 3. PostgreSQL back: everything becomes durable, results exact. */
    assert_int_equal(ts_pg("start"), 0);
    durable = durable_within(fd, durable, 2, ts_scale(30000));
    assert_int_equal(durable, 2);
    close(fd);
    if (push_ended)
        assert_int_equal(ts_case_push(&tc, &push, 0, 500), 0);
    if (ts_proc_wait(&push, ts_scale(60000)) != 0 || ts_proc_code(&push) != 0) {
        ts_dump_tail("tally-push stderr", err, 30);
        ts_dump_tail("tallyd log", tc.d.proc.err, 30);
        fail_msg("tally-push did not finish with 0 after PostgreSQL came back (%d)",
                 ts_proc_code(&push));
    }
    char *want = ts_truth_with(tc.truth_csv, pid, 2 * N);
    char *got = ts_results_csv(tc.conninfo);
    assert_non_null(got);
    if (strcmp(got, want) != 0) {
        char path[1200];
        snprintf(path, sizeof path, "%s/expected.csv", tc.dir);
        ts_write_file(path, want);
        ts_csv_compare(got, path);
        fail_msg("results wrong after the outage");
    }
    free(got);
    free(want);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

#define MID_COLLECTORS 4

static int setup_midrun(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return ts_case_setup(&tc, "pgrestart", 1500, 250, MID_COLLECTORS, 160000, "0.03", "0.002", 0,
                         43);
}

static void test_pg_restart_midrun(void **state)
{
    (void)state;
    tc.d.checkpoint_ms = 100;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    struct ts_proc p[MID_COLLECTORS];
    for (uint32_t i = 0; i < MID_COLLECTORS; i++)
        assert_int_equal(ts_case_push(&tc, &p[i], i, 250), 0);

    /* Wait for the first durable batches, then pull PostgreSQL away. */
    int64_t deadline = ts_now_ms() + ts_scale(20000);
    uint64_t batches = 0;
    while (ts_now_ms() < deadline) {
        if (ts_sql_u64(tc.conninfo, "SELECT coalesce(sum(batches), 0) FROM collectors", &batches) ==
                0 &&
            batches > 0)
            break;
        ts_sleep_ms(50);
    }
    assert_true(batches > 0);
    int running = 0;
    for (uint32_t i = 0; i < MID_COLLECTORS; i++)
        running += !ts_proc_done(&p[i]);
    if (running == 0)
        fail_msg("every push finished before the outage: the data set is too small");
    assert_int_equal(ts_pg("stop"), 0);
    fprintf(stderr, "PostgreSQL stopped with %d pushes running, %llu batches durable\n", running,
            (unsigned long long)batches);
    ts_sleep_ms(3000);
    assert_false(ts_proc_done(&tc.d.proc));
    assert_int_equal(ts_pg("start"), 0);

    struct ts_push_result sum = {0};
    for (uint32_t i = 0; i < MID_COLLECTORS; i++) {
        char out[1200], err[1200];
        ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
        if (ts_proc_wait(&p[i], ts_scale(120000)) != 0 || ts_proc_code(&p[i]) != 0) {
            ts_dump_tail("tally-push stderr", err, 30);
            ts_dump_tail("tallyd log", tc.d.proc.err, 30);
            fail_msg("tally-push c%u: exit %d after the outage", i, ts_proc_code(&p[i]));
        }
        struct ts_push_result r;
        assert_int_equal(ts_push_result_read(out, &r), 0);
        sum.votes += r.votes;
        sum.accepted += r.accepted;
        sum.duplicate += r.duplicate;
        sum.rejected += r.rejected;
    }
    assert_int_equal(ts_case_results_match(&tc), 0);
    assert_int_equal(sum.votes, tc.truth.votes);
    assert_int_equal(sum.accepted, tc.truth.accepted);
    assert_int_equal(sum.duplicate, tc.truth.duplicate);
    assert_int_equal(sum.rejected, tc.truth.rejected);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_durable_before_commit, setup_nodurable, teardown),
        cmocka_unit_test_setup_teardown(test_pg_restart_midrun, setup_midrun, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
