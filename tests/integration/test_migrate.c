/* Migrating a version-3 database: a record written by SQL exactly as the old tallyd wrote
 * it (tokens and per-project counts in every batch row, one-vote batches among them) is
 * converted by migration 4's C step into count deltas, token pages and the hash chain.
 * Results stay identical, the old columns go, the pages hold exactly the old tokens and no
 * row that counts holds a token, and tallyctl verify agrees. An old record that disagrees
 * with itself is refused and left as it was. */
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

#define N_PROJECTS 400
#define N_COLLECTORS 4
#define N_CHECKPOINTS 12
/* Enough accepted tokens for three pages of at most 65,536. */
#define N_VOTES 250000

static char dir[1024];
static char registry[1200];
static char v3_conninfo[512]; /* it_migrate_v3: the old record, never migrated (a template) */
static struct ts_v3_summary v3;

/* The old tallyctl's `results --format csv` (project_id,votes over every project, by id)
 * read from the results view. The current tallyctl reads the version-5 record, so on
 * version 3 the view, which the old tallyctl agreed with, stands in for it. */
static const char results_csv_sql[] =
    "SELECT 'project_id,votes' || E'\\n'"
    " || string_agg(project_id || ',' || votes, E'\\n' ORDER BY project_id) || E'\\n'"
    " FROM results";

/* Count and fingerprint of a set of tokens given as 8-byte bytea chunks. */
static const char old_tokens_sql[] =
    "SELECT count(*) || ' ' || md5(string_agg(t, ''::bytea ORDER BY t)) FROM"
    " (SELECT substring(tokens FROM 8 * i + 1 FOR 8) AS t"
    "  FROM batches, generate_series(0, length(tokens) / 8 - 1) AS i) x";
static const char page_tokens_sql[] =
    "SELECT count(*) || ' ' || md5(string_agg(t, ''::bytea ORDER BY t)) FROM"
    " (SELECT substring(tokens FROM 8 * i + 1 FOR 8) AS t"
    "  FROM token_pages, generate_series(0, length(tokens) / 8 - 1) AS i) x";

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "%s", ts_workdir("migrate"));
    snprintf(registry, sizeof registry, "%s/registry.csv", dir);
    if (ts_registry_write(registry, N_PROJECTS))
        return -1;
    if (ts_db_create("it_migrate_v3", v3_conninfo, sizeof v3_conninfo))
        return -1;
    if (ts_ctl(v3_conninfo, NULL, "migrate", "--to", "3") != 0 ||
        ts_ctl(v3_conninfo, NULL, "load-registry", registry, NULL) != 0)
        return -1;
    for (int i = 0; i < N_COLLECTORS; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        if (ts_ctl(v3_conninfo, NULL, "add-collector", id, NULL) != 0)
            return -1;
    }
    if (ts_v3_record_write(v3_conninfo, N_COLLECTORS, N_CHECKPOINTS, N_VOTES, 7, &v3))
        return -1;
    fprintf(stderr,
            "old record: %" PRIu64 " checkpoints, %" PRIu64 " batches (%" PRIu64
            " of one vote), %" PRIu64 " votes, %" PRIu64 " accepted\n",
            v3.checkpoints, v3.batches, v3.one_vote_batches, v3.votes, v3.accepted);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_cleanup();
    return 0;
}

static uint64_t sql_u64(const char *conninfo, const char *sql)
{
    uint64_t v = UINT64_MAX;
    if (ts_sql_u64(conninfo, sql, &v) != 0)
        fail_msg("query failed: %s", sql);
    return v;
}

/* A token as stored (16 hex digits of little-endian bytes) as a number. */
static uint64_t le_hex_u64(const char *hex)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--) {
        unsigned byte = 0;
        sscanf(hex + 2 * b, "%2x", &byte);
        v = v << 8 | byte;
    }
    return v;
}

/* A query counting the files of batches (heap, TOAST) whose bytes hold token t as
 * stored (little-endian). Needs a superuser, as the fixture's postgres is. */
static void files_sql_for(char *sql, size_t len, uint64_t t)
{
    char hex[17];
    for (int b = 0; b < 8; b++)
        snprintf(hex + 2 * b, 3, "%02x", (unsigned)(t >> (8 * b)) & 0xff);
    snprintf(sql, len,
             "SELECT count(*) FROM (SELECT pg_relation_filepath('batches') AS f UNION ALL"
             " SELECT pg_relation_filepath(reltoastrelid) FROM pg_class"
             " WHERE relname = 'batches') x"
             " WHERE position('\\x%s'::bytea IN pg_read_binary_file(x.f)) > 0",
             hex);
}

/* The newest schema this build carries, as `tallyctl --version` says: "(schema N)". */
static int latest_schema(void)
{
    char *argv[] = {(char *)ts_prog("tallyctl"), "--version", NULL};
    char *out = NULL;
    int v = -1;
    if (ts_run(argv, &out, NULL, ts_scale(10000)) == 0 && out) {
        const char *p = strstr(out, "(schema ");
        if (p)
            v = atoi(p + 8);
    }
    free(out);
    assert_true(v > 0);
    return v;
}

static void test_convert(void **state)
{
    (void)state;
    char ci[512];
    assert_int_equal(ts_db_clone("it_migrate_v3", "it_migrate", ci, sizeof ci), 0);
    assert_true(v3.one_vote_batches > 0);
    assert_int_equal(sql_u64(ci, "SELECT max(version) FROM schema_migrations"), 3);
    char *before = ts_sql_text(ci, results_csv_sql);
    char *old_tokens = ts_sql_text(ci, old_tokens_sql);
    assert_non_null(before);
    assert_non_null(old_tokens);
    /* The old record linked each one-vote batch's token to its choice. */
    assert_true(sql_u64(ci, "SELECT count(*) FROM batches WHERE accepted = 1"
                            " AND cardinality(project_ids) = 1") > 0);

    /* The old link is in the table's files too, not only in what SELECT shows. */
    char files_sql[1024];
    files_sql_for(files_sql, sizeof files_sql, v3.one_vote_tokens[0]);
    assert_int_equal(ts_sql_exec(ci, "CHECKPOINT"), 0);
    assert_int_equal(sql_u64(ci, files_sql), 1);

    char *out = NULL, *err = NULL;
    int rc = ts_ctl_capture(ci, &out, &err, "migrate", NULL, NULL);
    if (rc != 0)
        fail_msg("tallyctl migrate exited %d: %s", rc, err ? err : "");
    char schema[64];
    snprintf(schema, sizeof schema, "schema version %d", latest_schema());
    assert_non_null(strstr(out, schema));
    free(out);
    free(err);

    /* The same results, from tallyctl and from the view dashboards read. */
    char *after = NULL;
    assert_int_equal(ts_ctl(ci, &after, "results", "--format", "csv"), 0);
    assert_string_equal(after, before);
    free(after);
    after = ts_sql_text(ci, results_csv_sql);
    assert_non_null(after);
    assert_string_equal(after, before);
    free(after);

    /* The old columns are gone; what is left of a batch holds no token. (Migration 7 brings
     * back a `counts` column: the batch's votes per project, LEB128, never beside a token;
     * converted batches have it NULL.) */
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM information_schema.columns"
                                 " WHERE table_name = 'batches'"
                                 " AND column_name IN ('tokens', 'project_ids')"),
                     0);
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM batches WHERE counts IS NOT NULL"), 0);
    char *cols = ts_sql_text(ci, "SELECT string_agg(column_name || ':' || data_type, ','"
                                 " ORDER BY column_name) FROM information_schema.columns"
                                 " WHERE table_name = 'batches'");
    assert_non_null(cols);
    assert_string_equal(cols, "accepted:integer,checkpoint_id:bigint,collector_id:text,"
                              "counts:bytea,digest:bytea,duplicate:integer,kind:text,"
                              "rejected_by_reason:ARRAY,rejected_not_allowed:integer,"
                              "rejected_unknown:integer,seq:bigint,sheets:integer,"
                              "sheets_accepted:integer,sheets_duplicate:integer,"
                              "table_ballots:ARRAY,table_ids:ARRAY,votes:integer");
    free(cols);
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM batches WHERE digest IS NOT NULL"), 0);
    /* DROP COLUMN leaves the values in every row's bytes: the rewrite after migration 5
     * took them out of the live files (heap and TOAST). */
    assert_int_equal(ts_sql_exec(ci, "CHECKPOINT"), 0);
    assert_int_equal(sql_u64(ci, files_sql), 0);

    /* The pages hold exactly the old tokens, each once. */
    char *page_tokens = ts_sql_text(ci, page_tokens_sql);
    assert_non_null(page_tokens);
    assert_string_equal(page_tokens, old_tokens);
    char expect_count[32];
    snprintf(expect_count, sizeof expect_count, "%" PRIu64 " ", v3.accepted);
    assert_true(strncmp(page_tokens, expect_count, strlen(expect_count)) == 0);
    free(page_tokens);

    /* Pages: ids 1..n, near-equal sizes, none above 65,536, none below 100 (or one page),
     * all listed by the last checkpoint, each with its own salt. */
    uint64_t pages = sql_u64(ci, "SELECT count(*) FROM token_pages");
    assert_int_equal(pages, (v3.accepted + 65535) / 65536);
    assert_true(pages >= 3);
    assert_int_equal(sql_u64(ci, "SELECT max(id) FROM token_pages"), pages);
    assert_int_equal(sql_u64(ci, "SELECT max(length(tokens) / 8) FROM token_pages") -
                         sql_u64(ci, "SELECT min(length(tokens) / 8) FROM token_pages"),
                     v3.accepted % pages ? 1 : 0);
    assert_true(sql_u64(ci, "SELECT max(length(tokens) / 8) FROM token_pages") <= 65536);
    assert_true(pages == 1 ||
                sql_u64(ci, "SELECT min(length(tokens) / 8) FROM token_pages") >= 100);
    assert_int_equal(sql_u64(ci, "SELECT count(DISTINCT salt) FROM token_pages"), pages);
    assert_int_equal(
        sql_u64(ci, "SELECT count(*) FROM checkpoints WHERE cardinality(page_ids) > 0"), 1);
    assert_int_equal(sql_u64(ci, "SELECT cardinality(page_ids) FROM checkpoints"
                                 " ORDER BY id DESC LIMIT 1"),
                     pages);
    /* In ascending order across pages: one sorted list cut in pieces. */
    for (uint64_t id = 1; id < pages; id++) {
        char sql[400];
        snprintf(
            sql, sizeof sql,
            "SELECT encode(substring(a.tokens FROM length(a.tokens) - 7), 'hex') || ' ' ||"
            " encode(substring(b.tokens FROM 1 FOR 8), 'hex') FROM token_pages a, token_pages b"
            " WHERE a.id = %" PRIu64 " AND b.id = a.id + 1",
            id);
        char *pair = ts_sql_text(ci, sql);
        assert_non_null(pair);
        assert_true(le_hex_u64(pair) < le_hex_u64(pair + 17));
        free(pair);
    }

    /* The chain and the compacted tallies. */
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM checkpoints"), v3.checkpoints);
    assert_int_equal(sql_u64(ci, "SELECT through FROM tally_compaction"), v3.checkpoints);
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM checkpoints WHERE epoch <> 0"), 0);
    assert_int_equal(sql_u64(ci, "SELECT sum(u.n) FROM checkpoints,"
                                 " unnest(delta_votes) AS u(n)"),
                     v3.accepted);
    assert_int_equal(sql_u64(ci, "SELECT sum(duplicate) FROM checkpoints"), v3.duplicate);
    assert_int_equal(sql_u64(ci, "SELECT sum(rejected) FROM checkpoints"), v3.rejected);
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM checkpoints c JOIN checkpoints p"
                                 " ON p.id = c.id - 1 WHERE c.prev_hash <> p.hash"),
                     0);

    /* No row that counts holds a token: the tokens of one-vote batches, as hex and as
     * numbers, appear in no row of batches, checkpoints, collectors or tallies (read as a
     * pg_dump would print them), and do appear in the token pages. */
    assert_true(v3.n_one_vote_tokens > 0);
    for (size_t i = 0; i < v3.n_one_vote_tokens; i++) {
        uint64_t t = v3.one_vote_tokens[i];
        char le_hex[17], sql[1024];
        for (int b = 0; b < 8; b++)
            snprintf(le_hex + 2 * b, 3, "%02x", (unsigned)(t >> (8 * b)) & 0xff);
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM (SELECT b::text AS t FROM batches b"
                 " UNION ALL SELECT c::text FROM checkpoints c"
                 " UNION ALL SELECT c::text FROM collectors c"
                 " UNION ALL SELECT t::text FROM tallies t) x"
                 " WHERE position('%s' IN x.t) > 0 OR position('%" PRIu64 "' IN x.t) > 0"
                 " OR position('%" PRId64 "' IN x.t) > 0",
                 le_hex, t, (int64_t)t);
        assert_int_equal(sql_u64(ci, sql), 0);
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM token_pages WHERE position('\\x%s'::bytea IN tokens) > 0",
                 le_hex);
        assert_int_equal(sql_u64(ci, sql), 1);
    }

    /* tallyctl verify agrees and prints the head of the chain. */
    out = err = NULL;
    rc = ts_ctl_capture(ci, &out, &err, "verify", NULL, NULL);
    if (rc != 0)
        fail_msg("tallyctl verify exited %d: %s", rc, err ? err : "");
    fprintf(stderr, "%s", out);
    char want[512];
    snprintf(want, sizeof want,
             "verified: %" PRIu64 " checkpoints, %" PRIu64 " batches of %d collectors, %" PRIu64
             " token pages (%" PRIu64 " tokens), %" PRIu64 " votes over %d projects\nhead ",
             v3.checkpoints, v3.batches, N_COLLECTORS, pages, v3.accepted, v3.accepted, N_PROJECTS);
    assert_true(strncmp(out, want, strlen(want)) == 0);
    char *head = ts_sql_text(ci, "SELECT encode(hash, 'hex') FROM checkpoints"
                                 " ORDER BY id DESC LIMIT 1");
    assert_non_null(head);
    assert_int_equal(strlen(head), 64);
    char head_line[80];
    snprintf(head_line, sizeof head_line, "%s\n", head);
    assert_string_equal(out + strlen(want), head_line);
    free(head);
    free(out);
    free(err);

    /* Migrating again changes nothing. */
    assert_int_equal(ts_ctl(ci, NULL, "migrate", NULL, NULL), 0);
    assert_int_equal(ts_ctl(ci, NULL, "verify", NULL, NULL), 0);
    free(old_tokens);
    free(before);
    ts_db_drop("it_migrate");
}

static void test_empty(void **state)
{
    (void)state;
    char ci[512], *out = NULL;
    /* A new database, straight to the latest version. */
    assert_int_equal(ts_db_create("it_migrate_empty", ci, sizeof ci), 0);
    assert_int_equal(ts_ctl(ci, NULL, "migrate", NULL, NULL), 0);
    assert_int_equal(ts_ctl(ci, &out, "verify", NULL, NULL), 0);
    assert_non_null(strstr(out, "verified: 0 checkpoints, 0 batches of 0 collectors, 0 token "
                                "pages (0 tokens), 0 votes over 0 projects\nhead 0000000000"));
    free(out);

    /* A version-3 database with a registry and collectors but no checkpoint yet. */
    assert_int_equal(ts_db_create("it_migrate_empty", ci, sizeof ci), 0);
    assert_int_equal(ts_ctl(ci, NULL, "migrate", "--to", "3"), 0);
    assert_int_equal(ts_ctl(ci, NULL, "load-registry", registry, NULL), 0);
    assert_int_equal(ts_ctl(ci, NULL, "add-collector", "c0", NULL), 0);
    assert_int_equal(ts_ctl(ci, NULL, "migrate", NULL, NULL), 0);
    assert_int_equal(sql_u64(ci, "SELECT max(version) FROM schema_migrations"),
                     (uint64_t)latest_schema());
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM token_pages"), 0);
    assert_int_equal(sql_u64(ci, "SELECT through FROM tally_compaction"), 0);
    out = NULL;
    assert_int_equal(ts_ctl(ci, &out, "verify", NULL, NULL), 0);
    assert_non_null(strstr(out, "verified: 0 checkpoints, 0 batches of 1 collectors, 0 token "
                                "pages (0 tokens), 0 votes over 400 projects\n"));
    free(out);
    ts_db_drop("it_migrate_empty");
}

/* An old record that disagrees with itself: migrate exits 1 naming the problem, and the
 * database is left at version 3 as it was. */
static void expect_refused(const char *tamper, const char *want1, const char *want2)
{
    char ci[512], *out = NULL, *err = NULL;
    assert_int_equal(ts_db_clone("it_migrate_v3", "it_migrate_bad", ci, sizeof ci), 0);
    assert_int_equal(ts_sql_exec(ci, tamper), 0);
    int rc = ts_ctl_capture(ci, &out, &err, "migrate", NULL, NULL);
    fprintf(stderr, "refused: %s", err ? err : "(no message)\n");
    assert_int_equal(rc, 1);
    assert_non_null(err);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("migrate's message lacks '%s'%s%s", want1, want2 ? " or " : "",
                 want2 ? want2 : "");
    assert_int_equal(sql_u64(ci, "SELECT max(version) FROM schema_migrations"), 3);
    assert_int_equal(sql_u64(ci, "SELECT count(*) FROM pg_tables WHERE tablename = 'token_pages'"),
                     0);
    free(out);
    free(err);
    ts_db_drop("it_migrate_bad");
}

static void test_refuses_inconsistent(void **state)
{
    (void)state;
    char want[64];
    /* One token in two batches: the first token of the first batch with two or more
     * tokens becomes a copy of another batch's first token. */
    snprintf(want, sizeof want, "%" PRIu64 " accepted tokens", v3.accepted);
    expect_refused("UPDATE batches b SET tokens = overlay(b.tokens PLACING"
                   "  (SELECT substring(o.tokens FROM 1 FOR 8) FROM batches o"
                   "   WHERE o.accepted > 0 AND (o.collector_id, o.seq) <> (b.collector_id, b.seq)"
                   "   ORDER BY o.checkpoint_id DESC, o.collector_id, o.seq LIMIT 1)"
                   "  FROM 1 FOR 8)"
                   " WHERE (b.collector_id, b.seq) = (SELECT collector_id, seq FROM batches"
                   "  WHERE accepted >= 2 ORDER BY checkpoint_id, collector_id, seq LIMIT 1)",
                   want, "distinct");
    /* tallies one vote off the batches' counts for one project. */
    expect_refused("UPDATE tallies SET votes = votes + 1 WHERE project_id = 1005", "project 1005",
                   "tallies");
    /* A batch whose counts do not add up to its accepted votes. */
    expect_refused("UPDATE batches SET counts[1] = counts[1] + 1"
                   " WHERE (collector_id, seq) = ('c1', 2)",
                   "batch c1/2", "counts");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_refuses_inconsistent),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    if (rc == 0)
        ts_db_drop("it_migrate_v3");
    return rc;
}
