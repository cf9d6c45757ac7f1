/* tallyctl verify against a tampered record: a valid record (an old one, converted by
 * tallyctl migrate) verifies; then each copy of it gets one change an attacker with write
 * access could make, and verify must exit 1 naming the checkpoint, batch, page or project
 * that no longer agrees. Every copy is made with CREATE DATABASE ... TEMPLATE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_PROJECTS 200
#define N_COLLECTORS 3
#define N_CHECKPOINTS 8
#define N_VOTES 20000

static char base[512]; /* it_verify_base: the valid record */
static struct ts_v3_summary v3;
static char head[80]; /* its head hash, hex */

static uint64_t sql_u64(const char *conninfo, const char *sql)
{
    uint64_t v = UINT64_MAX;
    if (ts_sql_u64(conninfo, sql, &v) != 0)
        fail_msg("query failed: %s", sql);
    return v;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    char registry[1200];
    snprintf(registry, sizeof registry, "%s/registry.csv", ts_workdir("verify"));
    if (ts_registry_write(registry, N_PROJECTS) ||
        ts_db_create("it_verify_base", base, sizeof base))
        return -1;
    if (ts_ctl(base, NULL, "migrate", "--to", "3") != 0 ||
        ts_ctl(base, NULL, "load-registry", registry, NULL) != 0)
        return -1;
    for (int i = 0; i < N_COLLECTORS; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        if (ts_ctl(base, NULL, "add-collector", id, NULL) != 0)
            return -1;
    }
    if (ts_v3_record_write(base, N_COLLECTORS, N_CHECKPOINTS, N_VOTES, 3, &v3) ||
        ts_ctl(base, NULL, "migrate", NULL, NULL) != 0)
        return -1;
    char *h = ts_sql_text(base, "SELECT encode(hash, 'hex') FROM checkpoints"
                                " ORDER BY id DESC LIMIT 1");
    if (!h)
        return -1;
    snprintf(head, sizeof head, "%s", h);
    free(h);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_cleanup();
    return 0;
}

static void test_valid(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    int rc = ts_ctl_capture(base, &out, &err, "verify", NULL, NULL);
    if (rc != 0)
        fail_msg("verify of the valid record exited %d: %s", rc, err ? err : "");
    fprintf(stderr, "%s", out);
    char want[512];
    snprintf(want, sizeof want,
             "verified: %" PRIu64 " checkpoints, %" PRIu64 " batches of %d collectors, 1 token"
             " pages (%" PRIu64 " tokens), %" PRIu64 " votes over %d projects\nhead %s\n",
             v3.checkpoints, v3.batches, N_COLLECTORS, v3.accepted, v3.accepted, N_PROJECTS, head);
    assert_string_equal(out, want);
    assert_string_equal(err, "");
    free(out);
    free(err);
}

/* Runs verify on a fresh copy of the valid record with `tamper` applied; it must exit 1
 * with "tallyctl verify: FAILED: " and every one of the wanted pieces in its message. */
static void expect_failure(const char *what, const char *tamper, const char *want1,
                           const char *want2)
{
    char ci[512], *out = NULL, *err = NULL;
    assert_int_equal(ts_db_clone("it_verify_base", "it_verify_t", ci, sizeof ci), 0);
    if (ts_sql_exec(ci, tamper) != 0)
        fail_msg("%s: the tampering SQL failed", what);
    int rc = ts_ctl_capture(ci, &out, &err, "verify", NULL, NULL);
    fprintf(stderr, "%-34s -> %s", what, err ? err : "(nothing on stderr)\n");
    if (rc != 1)
        fail_msg("%s: verify exited %d, not 1 (stdout: %s)", what, rc, out ? out : "");
    if (!err || strncmp(err, "tallyctl verify: FAILED: ", 25) != 0)
        fail_msg("%s: no FAILED line", what);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("%s: the message lacks '%s'%s%s", what, want1, want2 ? " or " : "",
                 want2 ? want2 : "");
    assert_string_equal(out, "");
    free(out);
    free(err);
    ts_db_drop("it_verify_t");
}

static void test_counts_changed(void **state)
{
    (void)state;
    char want[128], sql[512];
    /* One more vote in a checkpoint's delta: it no longer adds up to its accepted. */
    expect_failure("delta_votes element +1",
                   "UPDATE checkpoints SET delta_votes[1] = delta_votes[1] + 1 WHERE id = 3",
                   "checkpoint 3: its count deltas sum to", NULL);
    /* A vote moved from one project to another: the totals agree, the chain does not. */
    expect_failure("a vote moved between projects",
                   "UPDATE checkpoints SET delta_votes[1] = delta_votes[1] + 1,"
                   " delta_votes[2] = delta_votes[2] - 1 WHERE id = 4",
                   "checkpoint 4: stored hash", NULL);
    /* The compacted cache: one project one vote up. */
    uint64_t p = sql_u64(base, "SELECT min(project_id) FROM tallies WHERE votes > 0");
    snprintf(want, sizeof want, "project %" PRIu64 ": tallies holds", p);
    snprintf(sql, sizeof sql, "UPDATE tallies SET votes = votes + 1 WHERE project_id = %" PRIu64,
             p);
    expect_failure("tallies row +1", sql, want, NULL);
    /* What dashboards read, redefined to add a vote. */
    snprintf(want, sizeof want, "project %" PRIu64 ": the project_votes view says", p);
    snprintf(sql, sizeof sql,
             "CREATE OR REPLACE VIEW project_votes AS SELECT p.id AS project_id,"
             " coalesce(t.votes, 0) + (p.id = %" PRIu64 ")::int AS votes"
             " FROM projects p LEFT JOIN tallies t ON t.project_id = p.id",
             p);
    expect_failure("project_votes view redefined", sql, want, NULL);
}

static void test_batches_changed(void **state)
{
    (void)state;
    char want[160], sql[1024];
    uint64_t d1 = sql_u64(base, "SELECT durable_seq FROM collectors WHERE id = 'c1'");
    assert_true(d1 >= 3);
    /* A batch in the middle of c1's run: named by collector and seq. */
    snprintf(sql, sizeof sql, "DELETE FROM batches WHERE collector_id = 'c1' AND seq = %" PRIu64,
             d1 / 2);
    snprintf(want, sizeof want, "collector c1: batch seq %" PRIu64 " is missing", d1 / 2);
    expect_failure("one batch row deleted", sql, want, NULL);

    /* The last batch of c2 deleted and c2's watermark and totals wound back to match: the
     * checkpoint that held it no longer matches its figures. */
    uint64_t k = sql_u64(base, "SELECT checkpoint_id FROM batches WHERE collector_id = 'c2'"
                               " ORDER BY seq DESC LIMIT 1");
    snprintf(want, sizeof want, "checkpoint %" PRIu64 " lists ", k);
    expect_failure("batch deleted, collector adjusted",
                   "WITH b AS (DELETE FROM batches WHERE (collector_id, seq) ="
                   "  (SELECT collector_id, max(seq) FROM batches WHERE collector_id = 'c2'"
                   "   GROUP BY collector_id) RETURNING *)"
                   " UPDATE collectors c SET durable_seq = c.durable_seq - 1,"
                   "  batches = c.batches - 1, votes = c.votes - b.votes,"
                   "  accepted = c.accepted - b.accepted, duplicate = c.duplicate - b.duplicate,"
                   "  rejected = c.rejected - b.rejected_unknown"
                   " FROM b WHERE c.id = b.collector_id",
                   want, "the batches table holds");

    /* A batch inserted after c0's last. */
    uint64_t d0 = sql_u64(base, "SELECT durable_seq FROM collectors WHERE id = 'c0'");
    snprintf(want, sizeof want,
             "collector c0 holds batch seq %" PRIu64 ", past its durable_seq %" PRIu64, d0 + 1, d0);
    expect_failure("one batch row inserted",
                   "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted,"
                   " duplicate, rejected_unknown) SELECT 'c0', durable_seq + 1,"
                   " (SELECT max(id) FROM checkpoints), 1, 0, 1, 0 FROM collectors"
                   " WHERE id = 'c0'",
                   want, NULL);
    /* ... with c0's watermark and totals moved along. */
    snprintf(want, sizeof want, "checkpoint %" PRIu64 " lists ", v3.checkpoints);
    expect_failure("batch inserted, collector adjusted",
                   "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted,"
                   " duplicate, rejected_unknown) SELECT 'c0', durable_seq + 1,"
                   " (SELECT max(id) FROM checkpoints), 1, 0, 1, 0 FROM collectors"
                   " WHERE id = 'c0';"
                   "UPDATE collectors SET durable_seq = durable_seq + 1, batches = batches + 1,"
                   " votes = votes + 1, duplicate = duplicate + 1 WHERE id = 'c0'",
                   want, NULL);
    /* A batch's figures: one vote of c0/1 turned from duplicate to rejected. */
    k = sql_u64(base, "SELECT checkpoint_id FROM batches WHERE collector_id = 'c0' AND seq = 1");
    snprintf(want, sizeof want, "checkpoint %" PRIu64 " counts ", k);
    expect_failure("batch figures changed",
                   "UPDATE batches SET rejected_unknown = rejected_unknown + 1,"
                   " votes = votes + 1 WHERE collector_id = 'c0' AND seq = 1;"
                   "UPDATE collectors SET votes = votes + 1, rejected = rejected + 1"
                   " WHERE id = 'c0'",
                   want, "its batches sum to");
    /* A digest given to a converted batch. */
    snprintf(want, sizeof want, "checkpoint %" PRIu64 ": stored hash", k);
    expect_failure("batch digest set",
                   "UPDATE batches SET digest = decode(repeat('ab', 32), 'hex')"
                   " WHERE collector_id = 'c0' AND seq = 1",
                   want, NULL);
}

/* Columns of checkpoints a from those of b (temporary table sw holds the originals). */
#define SWAP_SET                                                                                   \
    "committed_at = s.committed_at, batches = s.batches, votes = s.votes,"                         \
    " accepted = s.accepted, epoch = s.epoch, duplicate = s.duplicate, rejected = s.rejected,"     \
    " delta_ids = s.delta_ids, delta_votes = s.delta_votes, page_ids = s.page_ids,"                \
    " page_digests = s.page_digests, prev_hash = s.prev_hash, hash = s.hash"

/* Checkpoints 2 and 3 exchange places: every column but the id (batches and collectors
 * refer to the ids). hash is unique, so checkpoint 2's goes aside first. */
#define SWAP_2_3                                                                                   \
    "CREATE TEMP TABLE sw AS SELECT * FROM checkpoints WHERE id IN (2, 3);"                        \
    "UPDATE checkpoints SET hash = decode(repeat('00', 31) || '01', 'hex') WHERE id = 2;"          \
    "UPDATE checkpoints c SET " SWAP_SET " FROM sw s WHERE c.id = 3 AND s.id = 2;"                 \
    "UPDATE checkpoints c SET " SWAP_SET " FROM sw s WHERE c.id = 2 AND s.id = 3;"

static void test_order_changed(void **state)
{
    (void)state;
    expect_failure("checkpoints 2 and 3 swapped", "BEGIN;" SWAP_2_3 "COMMIT", "checkpoint 2", NULL);
    /* The same with their batches moved along, so that every figure agrees: only the chain
     * says the order is wrong. */
    expect_failure("... with their batches",
                   "BEGIN;" SWAP_2_3 "UPDATE batches SET checkpoint_id = 5 - checkpoint_id"
                   " WHERE checkpoint_id IN (2, 3);"
                   "COMMIT",
                   "checkpoint 2: prev_hash", "is not checkpoint 1's hash");
}

static void test_page_changed(void **state)
{
    (void)state;
    expect_failure("token page overlaid",
                   "UPDATE token_pages SET tokens = overlay(tokens PLACING"
                   " '\\x0102030405060708'::bytea FROM 81 FOR 8) WHERE id = 1",
                   "token page 1: its digest is", NULL);
    /* A token added to the page, the digest in the checkpoint left as it was. */
    expect_failure("token appended to a page",
                   "UPDATE token_pages SET tokens = tokens || '\\xffffffffffffffff'::bytea"
                   " WHERE id = 1",
                   "token page 1: its digest is", NULL);
    /* ... and the digest the last checkpoint lists replaced to match: the chain breaks. */
    char want[64];
    snprintf(want, sizeof want, "checkpoint %" PRIu64 ": stored hash", v3.checkpoints);
    expect_failure("page digest in checkpoint replaced",
                   "UPDATE checkpoints SET page_digests = decode(repeat('5c', 32), 'hex')"
                   " WHERE id = (SELECT max(id) FROM checkpoints)",
                   want, NULL);
}

static void test_last_checkpoint_deleted(void **state)
{
    (void)state;
    char want[160];
    const char *drop_last =
        "UPDATE collectors SET last_checkpoint_id = (SELECT max(id) - 1 FROM checkpoints)"
        " WHERE last_checkpoint_id = (SELECT max(id) FROM checkpoints);"
        "DELETE FROM batches WHERE checkpoint_id = (SELECT max(id) FROM checkpoints);"
        "DELETE FROM checkpoints WHERE id = (SELECT max(id) FROM checkpoints);";
    char *c = ts_sql_text(base, "SELECT min(collector_id COLLATE \"C\") FROM batches"
                                " WHERE checkpoint_id = (SELECT max(id) FROM checkpoints)");
    assert_non_null(c);
    snprintf(want, sizeof want, "collector %s: batch seq", c);
    free(c);
    char sql[2048];
    snprintf(sql, sizeof sql, "BEGIN;%sCOMMIT", drop_last);
    expect_failure("last checkpoint deleted", sql, want, "is missing");

    /* ... and the collectors wound back to what they were before it: the chain up to the
     * new last checkpoint holds, but the token pages it listed are now listed by none. */
    snprintf(sql, sizeof sql,
             "BEGIN;"
             "CREATE TEMP TABLE gone AS SELECT collector_id, count(*) AS n, max(seq) AS top,"
             " min(seq) AS bottom, sum(votes) AS votes, sum(accepted) AS accepted,"
             " sum(duplicate) AS duplicate, sum(rejected_unknown) AS rejected FROM batches"
             " WHERE checkpoint_id = (SELECT max(id) FROM checkpoints) GROUP BY 1;"
             "%s"
             "UPDATE collectors c SET durable_seq = g.bottom - 1, batches = c.batches - g.n,"
             " votes = c.votes - g.votes, accepted = c.accepted - g.accepted,"
             " duplicate = c.duplicate - g.duplicate, rejected = c.rejected - g.rejected"
             " FROM gone g WHERE c.id = g.collector_id;"
             "COMMIT",
             drop_last);
    expect_failure("... collectors adjusted", sql, "token page 1 is listed by no checkpoint", NULL);
    /* ... and the pages deleted too: the tokens of every earlier batch went with them. */
    char sql2[2400];
    snprintf(sql2, sizeof sql2, "%.*s;DELETE FROM token_pages;COMMIT",
             (int)(strlen(sql) - strlen(";COMMIT")), sql);
    snprintf(want, sizeof want, "the token pages hold 0 tokens, the batches accepted");
    expect_failure("... pages deleted", sql2, want, NULL);
}

/* Schema 7 on a record written before it (every checkpoint of format NULL): the columns
 * only format 3 records must stay empty, and format 3 claimed for an old checkpoint must
 * hash as format 3. (Format 3 records themselves, built from the store's own encodings,
 * are verified and tampered with in tests/unit/test_store.c, test_pg_verify_v3: this
 * program does not link the store.) */
static void test_format3_columns_on_old_record(void **state)
{
    (void)state;
    char want[160];
    uint64_t k = sql_u64(base, "SELECT checkpoint_id FROM batches WHERE collector_id = 'c0'"
                               " AND seq = 1");
    snprintf(want, sizeof want, "checkpoint %" PRIu64 " has no format but its batch c0/1 holds", k);
    expect_failure("counts on an old batch",
                   "UPDATE batches SET counts = decode('0101', 'hex') WHERE collector_id = 'c0'"
                   " AND seq = 1",
                   want, NULL);
    /* (a sheet batch rejects no votes: the collector's rejected total no longer adds up) */
    expect_failure("an old batch made a sheet batch",
                   "UPDATE batches SET kind = 'sheets' WHERE collector_id = 'c0' AND seq = 1",
                   "collector c0 totals", "rejected");
    expect_failure("a sheet in an old checkpoint",
                   "INSERT INTO voting_tables VALUES ('T1', (SELECT circuit_area_id FROM projects"
                   " ORDER BY id LIMIT 1), 100);"
                   "INSERT INTO sheets VALUES ('T1', 1, 2, 'c0', 1, decode(repeat('00', 32),"
                   " 'hex'), '{}', '{}', 0, 0)",
                   "checkpoint 2 has no format but holds sheet T1 version 1", NULL);
    /* Its batches then lack what format 3 holds (counts, reasons): named with it. */
    expect_failure("format 3 claimed for an old checkpoint",
                   "UPDATE checkpoints SET format = 3, merkle_root = decode(repeat('00', 32),"
                   " 'hex'), body_hash = decode(repeat('00', 32), 'hex') WHERE id = 1",
                   "checkpoint 1 ", NULL);
    snprintf(want, sizeof want, "checkpoint %" PRIu64, v3.checkpoints);
    expect_failure("format 3 claimed for the last checkpoint",
                   "UPDATE checkpoints SET format = 3, merkle_root = decode(repeat('00', 32),"
                   " 'hex'), body_hash = decode(repeat('00', 32), 'hex')"
                   " WHERE id = (SELECT max(id) FROM checkpoints)",
                   want, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_counts_changed),
        cmocka_unit_test(test_batches_changed),
        cmocka_unit_test(test_order_changed),
        cmocka_unit_test(test_page_changed),
        cmocka_unit_test(test_last_checkpoint_deleted),
        cmocka_unit_test(test_format3_columns_on_old_record),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    if (rc == 0)
        ts_db_drop("it_verify_base");
    return rc;
}
