/* PostgreSQL failover under load, with PostgreSQL's own streaming replication.
 *
 * A primary and a replica made from it by pg_basebackup -R (tests/pg.sh start / replica),
 * the replica synchronous: synchronous_standby_names = 'tally_replica' with
 * synchronous_commit = on, so a COMMIT returns (and tallyd acks a batch as durable) only once
 * the replica has flushed it. tallyd is given both servers in one multi-host conninfo with
 * target_session_attrs=read-write; nothing in tallyd knows which one is the primary.
 *
 * Before the fault, the dashboards' read-only SQL (the results view) and tallyctl results
 * and verify are run on the replica. Four tally-push collectors push a generated consultation;
 * under load the primary is crashed (SIGKILL of every server process, no shutdown). tallyd must
 * stay up
 * (/healthz 200, tally_postgres_up 0) while the replica is still a standby; the replica is
 * then promoted (pg_ctl promote) and tallyd must reconnect to it by itself and go on. At the
 * end every tally-push exits 0, the results on the new primary equal tally-gen's truth
 * exactly, the collectors' durable sums equal its summary and `tallyctl verify` accepts the
 * record: nothing acknowledged was lost with the primary, nothing counted twice. The time
 * from the promotion to the first durable progress on the new primary is printed to stderr
 * as `reconnect after promote: X ms`. Size from TALLY_PGFAILOVER_VOTES (default 2 M). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLLECTORS 4
#define BATCH 500

static struct ts_case tc;
static char primary_dir[1100], replica_dir[1100];
static uint16_t primary_port, replica_port;

/* tests/pg.sh ACTION DIR [ARG]; its exit code. */
static int pg(const char *action, const char *dir, const char *arg)
{
    char script[1100];
    snprintf(script, sizeof script, "%s/tests/pg.sh", ts_src_dir());
    char *argv[] = {"/bin/bash", script, (char *)action, (char *)dir, (char *)arg, NULL};
    return ts_run(argv, NULL, NULL, ts_scale(120000));
}

static uint16_t pg_port(const char *dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/port", dir);
    char *text = ts_read_file(path);
    unsigned long port = text ? strtoul(text, NULL, 10) : 0;
    free(text);
    return (uint16_t)port;
}

static void one_server(char *out, size_t len, uint16_t port, const char *db)
{
    snprintf(out, len, "host=127.0.0.1 port=%u user=postgres dbname=%s", port, db);
}

/* Waits until the primary sees the replica streaming with the wanted sync_state. */
static int wait_replication(const char *primary, const char *sync_state)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'tally_replica' "
             "AND state = 'streaming' AND sync_state = '%s'",
             sync_state);
    int64_t end = ts_now_ms() + ts_scale(30000);
    while (ts_now_ms() < end) {
        uint64_t n = 0;
        if (ts_sql_u64(primary, sql, &n) == 0 && n == 1)
            return 0;
        ts_sleep_ms(50);
    }
    fprintf(stderr, "the replica is not streaming as '%s' after 30 s\n", sync_state);
    return -1;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *v = getenv("TALLY_PGFAILOVER_VOTES");
    uint64_t votes = v && *v ? strtoull(v, NULL, 10) : 2000000;
    if (ts_case_data(&tc, "pgfailover", 2000, 2000 / 7 + 1, COLLECTORS, votes, "0.03", "0.002", 0,
                     67))
        return -1;
    snprintf(primary_dir, sizeof primary_dir, "%s/primary", tc.dir);
    snprintf(replica_dir, sizeof replica_dir, "%s/replica", tc.dir);
    if (pg("start", primary_dir, NULL) != 0)
        return -1;
    primary_port = pg_port(primary_dir);
    char admin[256], db[256];
    one_server(admin, sizeof admin, primary_port, "postgres");
    one_server(db, sizeof db, primary_port, "tally");
    if (ts_sql_exec(admin, "CREATE DATABASE tally") || ts_db_prepare(db, tc.registry, COLLECTORS))
        return -1;
    if (pg("replica", replica_dir, primary_dir) != 0)
        return -1;
    replica_port = pg_port(replica_dir);
    /* Synchronous from here on: set on the primary after the base backup, so that the
     * promoted replica does not wait for a standby of its own that nobody set up. */
    if (wait_replication(admin, "async") ||
        ts_sql_exec(admin, "ALTER SYSTEM SET synchronous_standby_names = 'tally_replica'") ||
        ts_sql_exec(admin, "SELECT pg_reload_conf()") || wait_replication(admin, "sync"))
        return -1;

    snprintf(tc.conninfo, sizeof tc.conninfo,
             "host=127.0.0.1,127.0.0.1 port=%u,%u user=postgres dbname=tally "
             "target_session_attrs=read-write",
             primary_port, replica_port);
    snprintf(tc.d.conninfo, sizeof tc.d.conninfo, "%s", tc.conninfo);
    snprintf(tc.d.dir, sizeof tc.d.dir, "%s", tc.dir);
    tc.d.checkpoint_ms = 100;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_tallyd_kill(&tc.d);
    ts_cleanup();
    pg("stop", replica_dir, NULL);
    pg("stop", primary_dir, NULL);
    return 0;
}

static int running(struct ts_proc *p)
{
    int n = 0;
    for (int i = 0; i < COLLECTORS; i++)
        n += !ts_proc_done(&p[i]);
    return n;
}

static uint64_t durable_votes(const char *conninfo)
{
    uint64_t v = 0;
    if (ts_sql_u64(conninfo, "SELECT coalesce(sum(votes), 0) FROM collectors", &v) != 0)
        return UINT64_MAX;
    return v;
}

/* The value of a sample in tallyd's /metrics, or NAN. */
static double metric(uint16_t http_port, const char *series)
{
    static char body[1 << 18];
    if (ts_http_get(http_port, "/metrics", body, sizeof body, 2000) != 200)
        return NAN;
    return ts_metric(body, series);
}

/* The dashboards' SQL and tallyctl's read-only commands work on the hot standby. */
static void check_reads_on_replica(void)
{
    char replica[256];
    one_server(replica, sizeof replica, replica_port, "tally");
    uint64_t rows = 0;
    if (ts_sql_u64(replica, "SELECT count(*) FROM results", &rows) != 0 || rows == 0)
        fail_msg("the results view cannot be read on the replica (%llu rows)",
                 (unsigned long long)rows);
    char *out = NULL, *err = NULL;
    int rc = ts_ctl_capture(replica, &out, &err, "results", "--format", "csv");
    if (rc != 0)
        fail_msg("tallyctl results on the replica exited %d: %s", rc, err ? err : "");
    free(out);
    free(err);
    out = err = NULL;
    rc = ts_ctl_capture(replica, &out, &err, "verify", NULL, NULL);
    if (rc != 0)
        fail_msg("tallyctl verify on the replica exited %d: %s", rc, err ? err : "");
    free(out);
    free(err);
}

static void test_pgfailover(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    struct ts_proc p[COLLECTORS];
    for (uint32_t i = 0; i < COLLECTORS; i++)
        assert_int_equal(ts_case_push(&tc, &p[i], i, BATCH), 0);
    int64_t t0 = ts_now_ms(), deadline = t0 + ts_scale(120000);

    char primary[256], replica[256];
    one_server(primary, sizeof primary, primary_port, "tally");
    one_server(replica, sizeof replica, replica_port, "tally");
    uint64_t durable = 0;
    while ((durable = durable_votes(primary)) == UINT64_MAX || durable < tc.truth.votes / 3) {
        if (!running(p) || ts_now_ms() >= deadline)
            fail_msg("durable votes stuck at %llu before the crash: make the data set larger",
                     (unsigned long long)durable);
        ts_sleep_ms(10);
    }
    if (durable >= tc.truth.votes)
        fail_msg("every vote is durable already: make the data set larger");
    check_reads_on_replica();

    int pushing = running(p);
    int64_t crash_at = ts_now_ms();
    assert_int_equal(pg("crash", primary_dir, NULL), 0);
    fprintf(stderr, "primary crashed at %lld ms with %llu votes durable, %d pushes running\n",
            (long long)(crash_at - t0), (unsigned long long)durable, pushing);

    /* tallyd waits for a writable server: alive, answering, saying PostgreSQL is down. */
    int64_t end = ts_now_ms() + ts_scale(15000);
    while (metric(tc.d.http_port, "tally_postgres_up") != 0) {
        if (ts_proc_done(&tc.d.proc) || ts_now_ms() >= end) {
            ts_dump_tail("tallyd log", tc.d.proc.err, 30);
            fail_msg("tallyd did not report PostgreSQL down after the crash");
        }
        ts_sleep_ms(20);
    }
    ts_sleep_ms(500);
    if (ts_proc_done(&tc.d.proc))
        fail_msg("tallyd exited (%d) while only the replica was left", ts_proc_code(&tc.d.proc));
    assert_int_equal(ts_http_get(tc.d.http_port, "/healthz", NULL, 0, 2000), 200);
    uint64_t on_replica = durable_votes(replica);
    assert_true(on_replica != UINT64_MAX);

    int64_t promote_at = ts_now_ms();
    assert_int_equal(pg("promote", replica_dir, NULL), 0);
    uint64_t now = 0;
    end = ts_now_ms() + ts_scale(30000);
    while ((now = durable_votes(replica)) == UINT64_MAX || now <= on_replica) {
        if (ts_proc_done(&tc.d.proc) || ts_now_ms() >= end) {
            ts_dump_tail("tallyd log", tc.d.proc.err, 30);
            fail_msg("no durable progress on the promoted replica (%llu votes)",
                     (unsigned long long)on_replica);
        }
        ts_sleep_ms(10);
    }
    fprintf(stderr,
            "reconnect after promote: %lld ms (primary crashed %lld ms before the promotion; "
            "%llu votes durable on the replica then)\n",
            (long long)(ts_now_ms() - promote_at), (long long)(promote_at - crash_at),
            (unsigned long long)on_replica);
    if (metric(tc.d.http_port, "tally_postgres_up") != 1)
        fail_msg("tally_postgres_up is not 1 after the reconnect");

    struct ts_push_result sum = {0};
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        char out[1200], err[1200];
        ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
        int64_t left = deadline - ts_now_ms();
        if (ts_proc_wait(&p[i], left > 0 ? (int)left : 1) != 0) {
            ts_proc_kill(&p[i]);
            ts_dump_tail("tally-push stderr", err, 30);
            ts_dump_tail("tallyd log", tc.d.proc.err, 30);
            fail_msg("tally-push c%u did not finish", i);
        }
        if (ts_proc_code(&p[i]) != 0) {
            ts_dump_tail("tally-push stderr", err, 30);
            fail_msg("tally-push c%u exited %d", i, ts_proc_code(&p[i]));
        }
        if (ts_push_result_add(out, &sum) != 0)
            fail_msg("tally-push c%u printed no result line", i);
    }
    fprintf(stderr, "all pushes done after %lld ms\n", (long long)(ts_now_ms() - t0));

    char *log = ts_read_file(tc.d.proc.err);
    bool relocked = log && strstr(log, "writer lock taken again");
    free(log);
    if (!relocked) {
        ts_dump_tail("tallyd log", tc.d.proc.err, 30);
        fail_msg("tallyd did not log taking the writer lock again on the new primary");
    }
    assert_int_equal(ts_case_totals_match(&tc, &sum), 0);
    char *vout = NULL;
    assert_int_equal(ts_ctl(tc.conninfo, &vout, "verify", NULL, NULL), 0);
    free(vout);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pgfailover),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
