/* Failover under load: one database, an active tallyd and a standby (--standby, its own
 * ports), four tally-push collectors given both (--server A,B) pushing a generated
 * consultation. While they push, the active one is killed with SIGKILL; the standby takes
 * over (/readyz 200) and the killed one is started again as the new standby on its own ports;
 * three times, alternating. Then every tally-push exits 0, each having used both servers, the
 * results equal tally-gen's truth exactly, the collectors' durable sums equal its summary and
 * `tallyctl verify` accepts the record. Each take-over time (SIGKILL to the standby's /readyz
 * 200) is printed to stderr as `take-over N: X ms`.
 * Size from TALLY_FAILOVER_VOTES (default 2.4 M, 600 k per collector: enough that the last
 * kill still lands under load on a fast machine, about 5 s in all). The first kill waits for
 * a tenth of the votes to be durable, or for TALLY_FAILOVER_FIRST_AT votes when set (the
 * long test measures take-over with 10 M ballots durable that way). */
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
#define TAKEOVERS 3
#define BATCH 500

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *v = getenv("TALLY_FAILOVER_VOTES");
    uint64_t votes = v && *v ? strtoull(v, NULL, 10) : 2400000;
    return ts_case_setup(&tc, "failover", 2000, 2000 / 7 + 1, COLLECTORS, votes, "0.03", "0.002", 0,
                         61);
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* tallyd `name` of the pair: its own directory, logs and ports, on the case's database. */
static void node_init(struct ts_tallyd *d, const char *name)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->conninfo, sizeof d->conninfo, "%s", tc.conninfo);
    int n = snprintf(d->dir, sizeof d->dir, "%.900s/%s", tc.dir, name);
    assert_true(n > 0 && (size_t)n < sizeof d->dir);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", d->dir);
    assert_int_equal(system(cmd), 0);
    d->port = ts_free_port();
    do
        d->http_port = ts_free_port();
    while (d->http_port == d->port);
    d->checkpoint_ms = 100;
}

/* Starts tallyd on d's ports without waiting (a standby never gets ready by itself). */
static void node_spawn(struct ts_tallyd *d, bool standby)
{
    char listen[32], http[32], log[1200];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d->port);
    snprintf(http, sizeof http, "127.0.0.1:%u", d->http_port);
    snprintf(log, sizeof log, "%s/tallyd-%d.log", d->dir, ++d->starts);
    char *argv[] = {(char *)ts_prog("tallyd"),
                    "--db",
                    d->conninfo,
                    "--listen",
                    listen,
                    "--http",
                    http,
                    "--checkpoint-ms",
                    "100",
                    "--log-level",
                    "info",
                    standby ? "--standby" : NULL,
                    NULL};
    assert_int_equal(ts_spawn(&d->proc, "tallyd", argv, NULL, log), 0);
}

/* Waits for GET /readyz 200, asking every 5 ms; the time it took in ms, or -1. */
static int64_t node_wait_ready(struct ts_tallyd *d, int timeout_ms)
{
    int64_t t0 = ts_now_ms(), end = t0 + timeout_ms;
    while (ts_now_ms() < end) {
        if (ts_proc_done(&d->proc)) {
            ts_dump_tail("tallyd log", d->proc.err, 40);
            fail_msg("tallyd exited (%d) before it was ready", ts_proc_code(&d->proc));
        }
        if (ts_http_get(d->http_port, "/readyz", NULL, 0, 500) == 200)
            return ts_now_ms() - t0;
        ts_sleep_ms(5);
    }
    ts_dump_tail("tallyd log", d->proc.err, 40);
    return -1;
}

/* A standby started with node_spawn is up: alive, /healthz 200, not ready. */
static void node_check_standby(struct ts_tallyd *d)
{
    assert_int_equal(ts_tallyd_wait_http(d, "/healthz", 200, ts_scale(15000)), 0);
    int code = ts_http_get(d->http_port, "/readyz", NULL, 0, 2000);
    if (code != 503) {
        ts_dump_tail("standby log", d->proc.err, 20);
        fail_msg("a standby answers /readyz %d", code);
    }
}

static void push_spawn(struct ts_proc *p, uint32_t i, const char *servers)
{
    char file[1200], spool[1200], out[1200], err[1200], id[16], batch[16];
    ts_case_paths(&tc, i, file, spool, out, err, sizeof file);
    snprintf(id, sizeof id, "c%u", i);
    snprintf(batch, sizeof batch, "%u", BATCH);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--server",
                    (char *)servers,
                    "--collector",
                    id,
                    "--spool",
                    spool,
                    "--batch",
                    batch,
                    file,
                    NULL};
    assert_int_equal(ts_spawn(p, id, argv, out, err), 0);
}

static int running(struct ts_proc *p)
{
    int n = 0;
    for (int i = 0; i < COLLECTORS; i++)
        n += !ts_proc_done(&p[i]);
    return n;
}

static uint64_t durable_votes(struct ts_db *db, const char *what)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT coalesce(sum(%s), 0) FROM collectors", what);
    uint64_t v = 0;
    if (ts_db_u64(db, sql, &v) != 0)
        fail_msg("cannot read %s from PostgreSQL", what);
    return v;
}

static void test_failover(void **state)
{
    (void)state;
    struct ts_tallyd node[2];
    node_init(&node[0], "a");
    node_init(&node[1], "b");
    node_spawn(&node[0], false);
    if (node_wait_ready(&node[0], ts_scale(30000)) < 0)
        fail_msg("the first tallyd did not get ready");
    node_spawn(&node[1], true);
    node_check_standby(&node[1]);

    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%u,127.0.0.1:%u", node[0].port, node[1].port);
    struct ts_proc p[COLLECTORS];
    for (uint32_t i = 0; i < COLLECTORS; i++)
        push_spawn(&p[i], i, servers);
    int64_t t0 = ts_now_ms();

    /* Each kill waits for durable progress since the last take-over: the collectors are
     * pushing again by then, so it lands under load however fast the machine is. The steps
     * are small so that the pushes still run at the last one. */
    struct ts_db *db = ts_db_open(tc.conninfo);
    assert_non_null(db);
    const uint64_t step = tc.truth.votes / 10;
    const char *first_at = getenv("TALLY_FAILOVER_FIRST_AT");
    uint64_t at = first_at && *first_at ? strtoull(first_at, NULL, 10) - step : 0;
    int active = 0;
    int64_t deadline = t0 + ts_scale(90000 + (int)(tc.truth.votes / 200));
    for (int k = 1; k <= TAKEOVERS; k++) {
        uint64_t durable = 0;
        while ((durable = durable_votes(db, "votes")) < at + step) {
            if (!running(p) || ts_now_ms() >= deadline)
                fail_msg("take-over %d: durable votes stuck at %llu (%d pushes running): make "
                         "the data set larger",
                         k, (unsigned long long)durable, running(p));
            ts_sleep_ms(10);
        }
        if (durable >= tc.truth.votes)
            fail_msg("take-over %d: every vote is durable already: make the data set larger", k);
        uint64_t accepted = durable_votes(db, "accepted");
        struct ts_tallyd *dead = &node[active], *next = &node[1 - active];
        if (k > 1)
            node_check_standby(next); /* restarted at the last take-over */
        int pushing = running(p);
        int64_t kill_at = ts_now_ms();
        ts_tallyd_kill(dead);
        int64_t ms = node_wait_ready(next, ts_scale(30000));
        if (ms < 0)
            fail_msg("take-over %d: the standby did not get ready", k);
        ms = ts_now_ms() - kill_at;
        fprintf(stderr,
                "take-over %d: %lld ms (SIGKILL at %lld ms with %llu votes durable, %llu ballots "
                "accepted; %d pushes running)\n",
                k, (long long)ms, (long long)(kill_at - t0), (unsigned long long)durable,
                (unsigned long long)accepted, pushing);
        node_spawn(dead, true); /* the new standby, on its own ports again */
        active = 1 - active;
        at = durable_votes(db, "votes");
    }
    ts_db_close(db);

    struct ts_push_result sum = {0};
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        char out[1200], err[1200];
        ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
        int64_t left = deadline + ts_scale(30000) - ts_now_ms();
        if (ts_proc_wait(&p[i], left > 0 ? (int)left : 1) != 0) {
            ts_proc_kill(&p[i]);
            ts_dump_tail("tally-push stderr", err, 30);
            ts_dump_tail("active tallyd log", node[active].proc.err, 30);
            fail_msg("tally-push c%u did not finish", i);
        }
        if (ts_proc_code(&p[i]) != 0) {
            ts_dump_tail("tally-push stderr", err, 30);
            fail_msg("tally-push c%u exited %d", i, ts_proc_code(&p[i]));
        }
        /* It was pushing at the first kill, went on to the other server at once and had
         * another session after it (a collector in back-off may miss a short epoch). */
        char *log = ts_read_file(err);
        const char *first = log ? strstr(log, "connected to ") : NULL;
        bool again = first && strstr(first + 1, "connected to ");
        bool moved = log && strstr(log, "; trying server 2 of 2 (");
        free(log);
        if (!again || !moved) {
            ts_dump_tail("tally-push stderr", err, 30);
            fail_msg("tally-push c%u did not fail over", i);
        }
        if (ts_push_result_add(out, &sum) != 0)
            fail_msg("tally-push c%u printed no result line", i);
    }
    fprintf(stderr, "all pushes done after %lld ms\n", (long long)(ts_now_ms() - t0));

    assert_int_equal(ts_case_totals_match(&tc, &sum), 0);
    char *vout = NULL;
    assert_int_equal(ts_ctl(tc.conninfo, &vout, "verify", NULL, NULL), 0);
    free(vout);

    /* The standby stops while it waits; the active one stops cleanly. */
    node_check_standby(&node[1 - active]);
    assert_int_equal(ts_tallyd_stop(&node[1 - active], ts_scale(30000)), 0);
    assert_int_equal(ts_tallyd_stop(&node[active], ts_scale(30000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
