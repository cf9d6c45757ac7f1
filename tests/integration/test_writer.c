/* One writer per database, against the participants that do not cooperate:
 *  - a second tallyd on a database with a live writer exits 1 within 10 s naming the holder;
 *    with --standby it waits (healthz 200, readyz 503 with the reason) and takes over when
 *    the first is killed, and the count is exact;
 *  - a paused writer (SIGSTOP, its PostgreSQL session killed, another writer started, then
 *    SIGCONT) exits 1 without acknowledging anything as durable;
 *  - a checkpoint COMMIT held back (synchronous_standby_names naming a standby that does not
 *    exist) while tallyd is killed and restarted, then released: the restarted tallyd waits
 *    for the dead writer's session, recovers the late commit, and nothing acknowledged is
 *    lost or counted twice;
 *  - a killed backend is survivable: the lock is taken again and the writer goes on;
 *  - a checkpoint row written behind the lock's back is refused by hash, fatally. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally.pb-c.h"
#include "tally/protocol.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return ts_case_setup(&tc, "writer", 300, 40, 3, 60000, "0.02", "0.001", 0, 77);
}

static int teardown(void **state)
{
    (void)state;
    /* Whatever happened, leave the shared server committing normally. */
    ts_sql_exec(ts_pg_conninfo(), "ALTER SYSTEM RESET synchronous_standby_names");
    ts_sql_exec(ts_pg_conninfo(), "SELECT pg_reload_conf()");
    ts_case_teardown(&tc, true);
    return 0;
}

/* Starts tallyd like ts_tallyd_start without waiting for /readyz (a standby never gets
 * there by itself). */
static void spawn_tallyd(struct ts_tallyd *d, const char *extra)
{
    if (!d->port) {
        d->port = ts_free_port();
        do
            d->http_port = ts_free_port();
        while (d->http_port == d->port);
    }
    char listen[32], http[32], log[1200];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d->port);
    snprintf(http, sizeof http, "127.0.0.1:%u", d->http_port);
    snprintf(log, sizeof log, "%s/tallyd-%d.log", d->dir, ++d->starts);
    char *argv[] = {
        (char *)ts_prog("tallyd"), "--db", d->conninfo,   "--listen", listen, "--http", http,
        "--checkpoint-ms",         "100",  (char *)extra, NULL};
    assert_int_equal(ts_spawn(&d->proc, "tallyd", argv, NULL, log), 0);
}

static struct ts_tallyd second(const char *name)
{
    struct ts_tallyd d;
    memset(&d, 0, sizeof d);
    snprintf(d.conninfo, sizeof d.conninfo, "%s", tc.conninfo);
    int n = snprintf(d.dir, sizeof d.dir, "%.900s/%s", tc.dir, name);
    assert_true(n > 0 && (size_t)n < sizeof d.dir);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", d.dir);
    assert_int_equal(system(cmd), 0);
    d.checkpoint_ms = 100;
    return d;
}

static bool log_has(const struct ts_tallyd *d, const char *needle)
{
    char *text = ts_read_file(d->proc.err);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

static bool wait_log(const struct ts_tallyd *d, const char *needle, int ms)
{
    for (int64_t end = ts_now_ms() + ts_scale(ms); ts_now_ms() < end; ts_sleep_ms(50))
        if (log_has(d, needle))
            return true;
    return false;
}

static void push_all(struct ts_tallyd *d, uint32_t first, uint32_t n, const char *tag)
{
    struct ts_proc p[8];
    char err[8][1200];
    for (uint32_t i = 0; i < n; i++) {
        char file[1200], spool[1200], out[1200];
        ts_case_paths(&tc, first + i, file, spool, out, err[i], sizeof file);
        char id[16];
        snprintf(id, sizeof id, "c%u", first + i);
        strcat(out, tag);
        assert_int_equal(ts_push_spawn(&p[i], d, id, spool, file, 500, out, err[i]), 0);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (ts_proc_wait(&p[i], ts_scale(120000)) != 0) {
            ts_proc_kill(&p[i]);
            ts_dump_tail("tally-push stderr", err[i], 20);
            fail_msg("tally-push c%u did not finish", first + i);
        }
        if (ts_proc_code(&p[i]) != 0) {
            ts_dump_tail("tally-push stderr", err[i], 20);
            fail_msg("tally-push c%u exited %d", first + i, ts_proc_code(&p[i]));
        }
    }
}

/* Registers collector id and starts tally-push for it on collector file i's votes (all
 * counted already: its votes are duplicates), with a spool and output of its own. */
static void push_again_as(const char *id, uint32_t i, uint32_t batch, struct ts_proc *p, char *out,
                          char *err, size_t len)
{
    assert_int_equal(ts_ctl(tc.conninfo, NULL, "add-collector", id, NULL), 0);
    ts_sleep_ms(1500); /* tallyd learns of new collectors within a second */
    char file[1200], spool[1200];
    ts_case_paths(&tc, i, file, spool, out, err, len);
    snprintf(spool + strlen(spool), sizeof spool - strlen(spool), "-%s", id);
    snprintf(out + strlen(out), len - strlen(out), "-%s", id);
    assert_int_equal(ts_push_spawn(p, &tc.d, id, spool, file, batch, out, err), 0);
}

static void test_second_writer_refused_then_standby_takes_over(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);

    /* A second tallyd, not a standby: exit 1 within 10 s, naming the holder. */
    struct ts_tallyd b = second("b");
    int64_t t0 = ts_now_ms();
    spawn_tallyd(&b, "--log-level=info");
    assert_int_equal(ts_proc_wait(&b.proc, 10000), 0);
    assert_true(ts_now_ms() - t0 < 10000);
    assert_int_equal(ts_proc_code(&b.proc), 1);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)tc.d.proc.pid);
    if (!log_has(&b, "another tallyd is the writer") || !log_has(&b, pid)) {
        ts_dump_tail("second tallyd", b.proc.err, 20);
        fail_msg("the refusal does not name the holder (%s)", pid);
    }

    /* A standby: alive, not ready, says why, and takes nothing over while A lives. */
    struct ts_tallyd s = second("standby");
    spawn_tallyd(&s, "--standby");
    assert_int_equal(ts_tallyd_wait_http(&s, "/healthz", 200, ts_scale(10000)), 0);
    /* /healthz answers as soon as the HTTP port is bound, before the store's first try at
     * the lock (under ThreadSanitizer a while before): ask /readyz until it says why. */
    char body[2048] = "";
    for (int64_t until = ts_now_ms() + ts_scale(5000); ts_now_ms() < until; ts_sleep_ms(20)) {
        assert_int_equal(ts_http_get(s.http_port, "/readyz", body, sizeof body, 2000), 503);
        if (strstr(body, "waiting for the writer lock"))
            break;
    }
    if (!strstr(body, "waiting for the writer lock") || !strstr(body, pid)) {
        ts_proc_kill(&s.proc);
        fail_msg("the standby's /readyz does not say it waits for %s: %s", pid, body);
    }
    assert_true(wait_log(&s, "standby: waiting for the writer lock", 5000));

    /* Half the votes through A, then A dies; the standby takes over and gets the rest. */
    push_all(&tc.d, 0, 1, "-a");
    ts_tallyd_kill(&tc.d);
    assert_int_equal(ts_tallyd_wait_http(&s, "/readyz", 200, ts_scale(15000)), 0);
    assert_false(ts_proc_done(&s.proc));
    push_all(&s, 1, 2, "-s");
    /* c0 again through the new writer: everything durable, nothing counted twice. */
    push_all(&s, 0, 1, "-s");
    assert_int_equal(ts_case_results_match(&tc), 0);
    uint64_t epoch = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo, "SELECT epoch FROM writer", &epoch), 0);
    assert_true(epoch >= 2);
    assert_int_equal(ts_tallyd_stop(&s, ts_scale(30000)), 0);
}

static uint64_t durable_of(const char *collector)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT durable_seq FROM collectors WHERE id = '%s'", collector);
    uint64_t v = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo, sql, &v), 0);
    return v;
}

/* Reads frames until the connection closes or nothing comes for timeout_ms; returns the
 * highest durable_seq seen. */
static uint64_t drain_durable(int fd, int timeout_ms)
{
    uint64_t best = 0;
    struct ts_frame f;
    while (ts_wire_recv(fd, &f, timeout_ms) == 1)
        if (f.kind == TALLY__FRAME__MSG_ACK && f.durable_seq > best)
            best = f.durable_seq;
    return best;
}

static void test_paused_writer_never_commits_again(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    uint64_t before = durable_of("c2");
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c2", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, 5000), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_WELCOME);

    /* Pause A, cut its PostgreSQL session, start B: B is the writer now. */
    ts_proc_signal(&tc.d.proc, SIGSTOP);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = current_database() AND application_name = 'tallyd'");
    uint64_t killed = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo, sql, &killed), 0);
    assert_true(killed >= 1);
    struct ts_tallyd b = second("b2");
    snprintf(b.conninfo, sizeof b.conninfo, "%s", tc.conninfo);
    assert_int_equal(ts_tallyd_start(&b, ts_scale(30000)), 0);

    /* A batch reaches A while it sleeps; then A wakes up. */
    uint64_t ballots[3] = {0x5e0000000001ull, 0x5e0000000002ull, 0x5e0000000003ull};
    uint32_t pid = ts_truth_first_project(tc.truth_csv);
    uint32_t projects[3] = {pid, pid, pid};
    assert_int_equal(ts_wire_batch(fd, before + 1, ballots, projects, 3), 0);
    ts_proc_signal(&tc.d.proc, SIGCONT);
    assert_int_equal(ts_proc_wait(&tc.d.proc, ts_scale(20000)), 0);
    assert_int_equal(ts_proc_code(&tc.d.proc), 1);
    assert_true(log_has(&tc.d, "another writer took over"));
    /* Nothing it said was durable, and the database holds nothing of it. */
    assert_true(drain_durable(fd, 1000) <= before);
    close(fd);
    assert_int_equal(durable_of("c2"), before);
    assert_false(ts_proc_done(&b.proc));
    assert_int_equal(ts_tallyd_stop(&b, ts_scale(30000)), 0);
}

static void test_late_commit_is_not_lost(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    /* A new collector id, so its seqs start at 1 and its votes (c1's file again) are all
     * duplicates: the point is the record's integrity, not the count. */
    /* Hold every COMMIT back until a standby that does not exist confirms it: the new
     * collector is registered first, since its own INSERT would wait too. */
    assert_int_equal(ts_ctl(tc.conninfo, NULL, "add-collector", "late", NULL), 0);
    ts_sleep_ms(1500); /* tallyd learns of it within a second */
    assert_int_equal(
        ts_sql_exec(ts_pg_conninfo(), "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"), 0);
    assert_int_equal(ts_sql_exec(ts_pg_conninfo(), "SELECT pg_reload_conf()"), 0);
    ts_sleep_ms(300);

    struct ts_proc p;
    char out[1200], err[1200];
    push_again_as("late", 1, 500, &p, out, err, sizeof out);

    uint64_t waiting = 0;
    for (int64_t end = ts_now_ms() + ts_scale(15000); ts_now_ms() < end && !waiting;
         ts_sleep_ms(50))
        ts_sql_u64(tc.conninfo,
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                   " AND datname = current_database()",
                   &waiting);
    assert_true(waiting >= 1);
    /* Killed and not reaped yet (a zombie, as under a parent that is slow to wait): dead
     * all the same. */
    struct ts_proc dead = tc.d.proc;
    kill(dead.pid, SIGKILL);
    ts_sleep_ms(200);

    /* Restarted while the dead writer's COMMIT still waits: it must wait too. */
    spawn_tallyd(&tc.d, "--log-level=info");
    assert_int_equal(ts_tallyd_wait_http(&tc.d, "/healthz", 200, ts_scale(10000)), 0);
    assert_true(wait_log(&tc.d, "still holds it", 10000));
    char body[2048];
    assert_int_equal(ts_http_get(tc.d.http_port, "/readyz", body, sizeof body, 2000), 503);
    assert_false(ts_proc_done(&tc.d.proc));
    assert_int_equal(ts_proc_wait(&dead, 5000), 0);

    /* Release: the late COMMIT lands, its session ends, the new tallyd takes over. */
    assert_int_equal(ts_sql_exec(ts_pg_conninfo(), "ALTER SYSTEM RESET synchronous_standby_names"),
                     0);
    assert_int_equal(ts_sql_exec(ts_pg_conninfo(), "SELECT pg_reload_conf()"), 0);
    assert_int_equal(ts_tallyd_wait_http(&tc.d, "/readyz", 200, ts_scale(20000)), 0);
    if (ts_proc_wait(&p, ts_scale(90000)) != 0) {
        ts_proc_kill(&p);
        ts_dump_tail("tally-push stderr", err, 30);
        fail_msg("tally-push did not finish after the release");
    }
    if (ts_proc_code(&p) != 0) {
        ts_dump_tail("tally-push stderr", err, 30);
        fail_msg("tally-push exited %d", ts_proc_code(&p));
    }
    /* Everything c1's file holds was already counted: the late collector's votes are all
     * duplicates, whether they came in the late commit or after it. */
    struct ts_push_result r;
    assert_int_equal(ts_push_result_read(out, &r), 0);
    assert_int_equal(r.accepted, 0);
    assert_int_equal(ts_case_results_match(&tc), 0);
    uint64_t batches = 0, durable = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo,
                                "SELECT count(*) FROM batches WHERE collector_id = 'late'",
                                &batches),
                     0);
    durable = durable_of("late");
    assert_int_equal(batches, durable);
    assert_int_equal(batches, r.batches);
    /* The record still verifies. */
    char *vout = NULL;
    assert_int_equal(ts_ctl(tc.conninfo, &vout, "verify", NULL, NULL), 0);
    free(vout);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

/* A killed backend is survivable: the writer takes the lock again on its next session,
 * its epoch still the current one, and goes on. */
static void test_backend_killed_writer_goes_on(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    assert_int_equal(ts_ctl(tc.conninfo, NULL, "add-collector", "k", NULL), 0);
    ts_sleep_ms(1500); /* tallyd learns of it within a second */
    struct ts_proc p;
    char out[1200], err[1200];
    push_again_as("k", 2, 200, &p, out, err, sizeof out);
    ts_sleep_ms(300);
    uint64_t killed = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo,
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE datname = current_database()"
                                " AND application_name = 'tallyd'",
                                &killed),
                     0);
    assert_true(killed >= 1);
    if (ts_proc_wait(&p, ts_scale(60000)) != 0 || ts_proc_code(&p) != 0) {
        ts_proc_kill(&p);
        ts_dump_tail("tally-push stderr", err, 20);
        fail_msg("tally-push did not finish after the backend was killed");
    }
    assert_false(ts_proc_done(&tc.d.proc));
    assert_true(wait_log(&tc.d, "writer lock taken again", 5000));
    assert_int_equal(ts_case_results_match(&tc), 0);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    assert_int_equal(ts_ctl(tc.conninfo, NULL, "verify", NULL, NULL), 0);
}

/* Something wrote the next checkpoint id behind the lock's back: tallyd compares it with
 * its own by hash, refuses it and stops without acknowledging its batch as durable. */
static void test_foreign_checkpoint_row_is_fatal(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    uint64_t before = durable_of("k");
    assert_int_equal(
        ts_sql_exec(tc.conninfo,
                    "INSERT INTO checkpoints (id, batches, votes, accepted, prev_hash,"
                    " hash) SELECT id + 1, 0, 0, 0, hash, decode(repeat('ab', 32), 'hex')"
                    " FROM checkpoints ORDER BY id DESC LIMIT 1"),
        0);
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "k", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, 5000), 1);
    uint64_t ballots[1] = {0x5e0000000009ull};
    uint32_t pid = ts_truth_first_project(tc.truth_csv);
    assert_int_equal(ts_wire_batch(fd, before + 1, ballots, &pid, 1), 0);
    assert_int_equal(ts_proc_wait(&tc.d.proc, ts_scale(15000)), 0);
    assert_int_equal(ts_proc_code(&tc.d.proc), 1);
    assert_true(log_has(&tc.d, "is not the one this tallyd wrote"));
    assert_true(drain_durable(fd, 1000) <= before);
    close(fd);
    assert_int_equal(durable_of("k"), before);
    assert_int_equal(
        ts_sql_exec(tc.conninfo,
                    "DELETE FROM checkpoints WHERE id = (SELECT max(id) FROM checkpoints)"),
        0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_writer_refused_then_standby_takes_over),
        cmocka_unit_test(test_paused_writer_never_commits_again),
        cmocka_unit_test(test_late_commit_is_not_lost),
        cmocka_unit_test(test_backend_killed_writer_goes_on),
        cmocka_unit_test(test_foreign_checkpoint_row_is_fatal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
