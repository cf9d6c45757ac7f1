/* Checkpoint and recovery: what tally-push saw become durable survives a clean stop
 * (SIGTERM) and a crash (SIGKILL) of tallyd: tallies, collector watermarks, the ballot
 * token set (a re-push of the same voters under new collector ids counts nothing), and the
 * progress over time (/v1/history holds every checkpoint of the record after a restart). */
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

#define COLLECTORS 2

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    /* Collectors c0, c1 push the data; c2..c5 re-push the same files later. */
    if (ts_case_setup(&tc, "recovery", 600, 100, COLLECTORS, 60000, "0.03", "0.002", 0, 21))
        return -1;
    for (int i = COLLECTORS; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        if (ts_ctl(tc.conninfo, NULL, "add-collector", id, NULL) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* Runs tally-push as collector `id` on collector file `file_index` with its own spool `tag`,
 * waits for exit 0 and returns what it printed. */
static struct ts_push_result push_as(const char *id, uint32_t file_index, const char *tag)
{
    char file[1200], spool[1200], out[1200], err[1200];
    ts_case_paths(&tc, file_index, file, NULL, NULL, NULL, sizeof file);
    snprintf(spool, sizeof spool, "%s/spool-%s", tc.dir, tag);
    snprintf(out, sizeof out, "%s/push-%s.out", tc.dir, tag);
    snprintf(err, sizeof err, "%s/push-%s.err", tc.dir, tag);
    struct ts_proc p;
    assert_int_equal(ts_push_spawn(&p, &tc.d, id, spool, file, 0, out, err), 0);
    if (ts_proc_wait(&p, ts_scale(90000)) != 0) {
        ts_proc_kill(&p);
        ts_dump_tail("tally-push stderr", err, 30);
        fail_msg("tally-push %s did not finish within 90 s", tag);
    }
    if (ts_proc_code(&p) != 0) {
        ts_dump_tail("tally-push stderr", err, 30);
        fail_msg("tally-push %s exited %d", tag, ts_proc_code(&p));
    }
    struct ts_push_result r;
    if (ts_push_result_read(out, &r) != 0) {
        ts_dump_tail("tally-push stdout", out, 10);
        fail_msg("tally-push %s printed no result line", tag);
    }
    return r;
}

static void assert_results_exact(const char *when)
{
    if (ts_case_results_match(&tc) != 0)
        fail_msg("results differ from the truth %s", when);
}

/* Every vote of the re-pushed file is a duplicate or a rejection: nothing is accepted. */
static void assert_all_duplicates(const struct ts_push_result *r, const char *when)
{
    if (r->accepted != 0 || r->duplicate + r->rejected != r->votes || r->votes == 0)
        fail_msg("re-push %s: accepted %llu duplicate %llu rejected %llu of %llu votes; "
                 "the recovered ballot set should make all of them duplicates",
                 when, (unsigned long long)r->accepted, (unsigned long long)r->duplicate,
                 (unsigned long long)r->rejected, (unsigned long long)r->votes);
}

static uint64_t csv_total(const char *csv)
{
    uint64_t total = 0;
    const char *line = strchr(csv, '\n');
    while (line && line[1]) {
        unsigned long long id, votes;
        if (sscanf(line + 1, "%llu,%llu", &id, &votes) == 2)
            total += votes;
        line = strchr(line + 1, '\n');
    }
    return total;
}

static void assert_results_equal(const char *want, const char *when)
{
    char *got = ts_results_csv(tc.conninfo);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("results changed %s", when);
    free(got);
}

/* /v1/history names every checkpoint of the record, in order (fewer than the 2048 points
 * it keeps), the accepted votes never fall, and the last point's equal the record's. */
static void assert_history_matches_record(const char *when)
{
    static char body[1 << 20], ids[1 << 16];
    int code = ts_http_get(tc.d.http_port, "/v1/history", body, sizeof body, ts_scale(5000));
    if (code != 200)
        fail_msg("GET /v1/history %s answered %d", when, code);
    const char *p = strstr(body, "\"points\":[");
    assert_non_null(p);
    size_t len = 0;
    unsigned long long accepted = 0, prev = 0;
    ids[0] = '\0';
    for (const char *q = strstr(p, "{\"checkpoint\":"); q; q = strstr(q + 1, "{\"checkpoint\":")) {
        unsigned long long id = strtoull(q + strlen("{\"checkpoint\":"), NULL, 10);
        const char *a = strstr(q, "\"accepted\":");
        assert_non_null(a);
        accepted = strtoull(a + strlen("\"accepted\":"), NULL, 10);
        if (accepted < prev)
            fail_msg("/v1/history %s: accepted falls to %llu at checkpoint %llu", when, accepted,
                     id);
        prev = accepted;
        if (id == 0)
            continue; /* the empty state before the first checkpoint, if shown */
        len += (size_t)snprintf(ids + len, sizeof ids - len, "%s%llu", len ? "," : "", id);
        assert_true(len < sizeof ids);
    }
    char *want =
        ts_sql_text(tc.conninfo, "SELECT string_agg(id::text, ',' ORDER BY id) FROM checkpoints");
    assert_non_null(want);
    if (strcmp(ids, want) != 0)
        fail_msg("/v1/history %s names checkpoints %s; the record has %s", when, ids, want);
    free(want);
    uint64_t db = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo, "SELECT sum(accepted) FROM checkpoints", &db), 0);
    assert_int_equal(accepted, db);
}

static void test_recovery(void **state)
{
    (void)state;
    tc.d.checkpoint_ms = 200;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);

    /* Phase 1: c0 alone; tally-push exits 0 only once everything is in PostgreSQL. */
    struct ts_push_result r0 = push_as("c0", 0, "c0");
    char *snap = ts_results_csv(tc.conninfo);
    assert_non_null(snap);
    assert_int_equal(csv_total(snap), r0.accepted);
    assert_true(r0.accepted > 0);

    /* Clean stop: a final checkpoint, exit 0; restart recovers the same numbers. */
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    assert_results_equal(snap, "across SIGTERM");
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    assert_results_equal(snap, "across a restart");
    assert_history_matches_record("after a clean restart");

    /* Watermark recovered: c0 again on its own spool has nothing left to count. */
    push_as("c0", 0, "c0");
    assert_results_equal(snap, "after c0 ran again on its own spool");
    /* Tokens recovered: the same voters under a new collector count nothing. */
    struct ts_push_result r2 = push_as("c2", 0, "c2");
    assert_all_duplicates(&r2, "after a clean restart");
    assert_results_equal(snap, "after the re-push as c2");
    free(snap);

    /* Phase 2: c1 (new voters, and repeats of c0's), durable, then SIGKILL. */
    struct ts_push_result r1 = push_as("c1", 1, "c1");
    assert_results_exact("after both collectors");
    assert_int_equal(r0.votes + r1.votes, tc.truth.votes);
    assert_int_equal(r0.accepted + r1.accepted, tc.truth.accepted);
    assert_int_equal(r0.duplicate + r1.duplicate, tc.truth.duplicate);
    assert_int_equal(r0.rejected + r1.rejected, tc.truth.rejected);

    ts_tallyd_kill(&tc.d);
    assert_results_exact("after SIGKILL");
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    assert_results_exact("after a restart from SIGKILL");
    assert_history_matches_record("after a restart from SIGKILL");
    push_as("c1", 1, "c1");
    struct ts_push_result r3 = push_as("c3", 1, "c3");
    assert_all_duplicates(&r3, "after a crash restart");
    struct ts_push_result r4 = push_as("c4", 0, "c4");
    assert_all_duplicates(&r4, "after a crash restart");
    assert_results_exact("at the end");

    /* The durable per-collector figures add up. */
    struct ts_push_result db;
    assert_int_equal(ts_db_collector_sums(tc.conninfo, &db), 0);
    assert_int_equal(db.accepted, tc.truth.accepted);
    assert_int_equal(db.votes, tc.truth.votes + r2.votes + r3.votes + r4.votes);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovery),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
