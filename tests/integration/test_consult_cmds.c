/* The organiser's commands of tallyctl (docs/consultation.md parts B and C) against a real
 * PostgreSQL. Part (a) needs nothing new of tallyd: the argument checks, a request left
 * pending when no tallyd runs (exit 3), the embargo's effect on the SQL views as
 * tally_reader, certify refused before the close, then on a record closed by SQL (votes
 * pushed through a tallyd first) the exact files of certify (the tie decided by the lot of
 * a seed set by SQL), its idempotence and --force, and export in every format (Pabulib
 * read back by tests/tools/pabulib_check.py, refused under the embargo). Part (b):
 * retract, tie rule, embargo and close applied by a running tallyd end to end. */
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

static char conninfo[512];
static const char *dir;

static const char registry[] =
    "project_id,project_name,circuit_id,circuit_name,state,seats,min_votes\n"
    "101,Agua,1,Uno,Lara,1,0\n"
    "102,\"Luz, \"\"solar\"\"\",1,Uno,Lara,1,0\n"
    "103,Escuela <nueva>,1,Uno,Lara,1,5\n"
    "201,Parque,2,Dos,Zulia,1,0\n"
    "202,Cancha,2,Dos,Zulia,1,0\n";

static const char tables[] = "table_id,circuit_id,electors\n"
                             "T1,1,20\n"
                             "T2,2,10\n";

/* 101 and 102 tie at 4 on circuit 1's one seat; 103 misses its min_votes; 201 wins 2. */
static const char votes[] = "voter,project_id,table_id\n"
                            "v1,101,T1\nv2,101,T1\nv3,101,T1\nv4,101,T1\n"
                            "v5,102,T1\nv6,102,T1\nv7,102,T1\nv8,102,T1\n"
                            "v9,103,T1\n"
                            "w1,201,T2\nw2,201,T2\nw3,201,T2\nw4,202,T2\n";

static const char seed_hex[] = "00112233445566778899aabbccddeeff";

/* tallyctl --db conninfo ARGS... (NULL-terminated); stdout and stderr into *out and *err
 * (malloc'd, never NULL). Returns the exit code. */
static int ctl(const char *db, char **out, char **err, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)ts_prog("tallyctl");
    argv[n++] = "--db";
    argv[n++] = (char *)db;
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char errp[1200];
    snprintf(errp, sizeof errp, "%s/tallyctl.err", dir);
    remove(errp);
    *out = NULL;
    int rc = ts_run(argv, out, errp, ts_scale(60000));
    *err = ts_read_file(errp);
    if (!*err)
        *err = strdup("");
    if (!*out)
        *out = strdup("");
    return rc;
}

static void assert_has(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("expected '%s' in:\n%s", want, text);
}

static void assert_file(const char *path, const char *want)
{
    char *got = ts_read_file(path);
    if (!got)
        fail_msg("%s missing", path);
    if (strcmp(got, want) != 0)
        fail_msg("%s is:\n%s\nexpected:\n%s", path, got, want);
    free(got);
}

/* Starts a tallyd on db, pushes text as collector c0 (batches of batch votes), stops it. */
static int push_votes(const char *db, const char *name, const char *text, uint32_t batch,
                      struct ts_tallyd *d, bool keep_running)
{
    char file[1200], spool[1200], out[1200], err[1200];
    snprintf(file, sizeof file, "%s/%s.csv", dir, name);
    snprintf(spool, sizeof spool, "%s/spool-%s", dir, name);
    snprintf(out, sizeof out, "%s/push-%s.out", dir, name);
    snprintf(err, sizeof err, "%s/push-%s.err", dir, name);
    if (ts_write_file(file, text) != 0)
        return -1;
    memset(d, 0, sizeof *d);
    snprintf(d->conninfo, sizeof d->conninfo, "%s", db);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    d->checkpoint_ms = 50;
    /* Requests and the embargo come with the refresh: a short one keeps the test short. */
    snprintf(d->extra, sizeof d->extra, "--refresh-ms 100");
    if (ts_tallyd_start(d, ts_scale(20000)) != 0)
        return -1;
    struct ts_proc p;
    if (ts_push_spawn(&p, d, "c0", spool, file, batch, out, err) != 0 ||
        ts_proc_wait(&p, ts_scale(30000)) != 0 || ts_proc_code(&p) != 0) {
        ts_dump_tail("tally-push", err, 20);
        return -1;
    }
    if (!keep_running && ts_tallyd_stop(d, ts_scale(20000)) != 0)
        return -1;
    return 0;
}

static int make_db(const char *name, char *db, size_t len)
{
    char reg[1200], tab[1200];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(tab, sizeof tab, "%s/tables.csv", dir);
    if (ts_write_file(reg, registry) != 0 || ts_write_file(tab, tables) != 0 ||
        ts_db_create(name, db, len) != 0 || ts_db_prepare(db, reg, 2) != 0 ||
        ts_ctl(db, NULL, "load-tables", tab, NULL) != 0)
        return -1;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    dir = ts_workdir("consult_cmds");
    struct ts_tallyd d;
    if (make_db("consult_cmds", conninfo, sizeof conninfo) != 0 ||
        push_votes(conninfo, "votes", votes, 3, &d, false) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_cleanup();
    ts_db_drop("consult_cmds");
    return 0;
}

/* ---- part (a) ---------------------------------------------------------------------------- */

static void usage_is(int want, const char *msg, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)ts_prog("tallyctl");
    argv[n++] = "--db";
    argv[n++] = conninfo;
    va_list ap;
    va_start(ap, msg);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char errp[1200];
    snprintf(errp, sizeof errp, "%s/usage.err", dir);
    remove(errp);
    int rc = ts_run(argv, NULL, errp, ts_scale(20000));
    char *err = ts_read_file(errp);
    if (rc != want || !err || !strstr(err, msg))
        fail_msg("%s ...: exit %d (want %d), stderr:\n%s\n(want '%s')", argv[3], rc, want,
                 err ? err : "", msg);
    free(err);
}

static void test_usage(void **state)
{
    (void)state;
    usage_is(2, "retract needs --seq N", "retract", "--collector", "c0", "--reason", "x", "--actor",
             "a", NULL);
    usage_is(2, "not a batch seq", "retract", "--collector", "c0", "--seq", "0", "--reason", "x",
             "--actor", "a", NULL);
    usage_is(2, "invalid collector id", "retract", "--collector", "c/0", "--seq", "1", NULL);
    usage_is(2, "retract needs --actor NAME", "retract", "--collector", "c0", "--seq", "1",
             "--reason", "x", NULL);
    usage_is(2, "retract: unexpected argument '--force'", "retract", "--force", NULL);
    usage_is(2, "--seq given twice", "retract", "--seq", "1", "--seq=2", NULL);
    usage_is(2, "close needs --actor NAME", "close", NULL);
    usage_is(2, "--wait-ms: 'soon'", "close", "--actor", "a", "--wait-ms", "soon", NULL);
    usage_is(2, "--seed must be 32 to 128 hex digits", "set", "tie-rule", "lot", "--seed", "abcd",
             "--actor", "a", NULL);
    usage_is(2, "unknown rule 'coin'", "set", "tie-rule", "coin", NULL);
    usage_is(2, "unknown setting 'tie'", "set", "tie", NULL);
    usage_is(2, "embargo: 'maybe': on or off", "embargo", "maybe", NULL);
    usage_is(2, "certify needs --out DIR", "certify", NULL);
    usage_is(2, "unknown format 'xml'", "export", "--format", "xml", "--out", "/tmp/x", NULL);
    usage_is(2, "export needs --format", "export", "--out", "/tmp/x", NULL);
}

/* No tallyd runs: the request stays pending and says so (exit 3). */
static void test_request_pending(void **state)
{
    (void)state;
    char *out, *err;
    int rc = ctl(conninfo, &out, &err, "retract", "--collector", "c0", "--seq", "1", "--reason",
                 "prueba", "--actor", "ana", "--wait-ms", "300", NULL);
    assert_int_equal(rc, 3);
    assert_has(err, "not applied within 300 ms (no tallyd is running)");
    uint64_t v = 0;
    assert_int_equal(ts_sql_u64(conninfo,
                                "SELECT count(*) FROM requests WHERE done_at IS NULL AND kind ="
                                " 'retract' AND collector_id = 'c0' AND seq = 1 AND actor = 'ana'",
                                &v),
                     0);
    assert_int_equal(v, 1);
    /* Nobody is to apply it later in this test's record. */
    assert_int_equal(ts_sql_exec(conninfo, "DELETE FROM requests"), 0);
    free(out);
    free(err);
}

static uint64_t reader_u64(const char *sql)
{
    struct ts_db *db = ts_db_open(conninfo);
    assert_non_null(db);
    assert_int_equal(ts_db_exec(db, "SET ROLE tally_reader"), 0);
    uint64_t v = UINT64_MAX;
    assert_int_equal(ts_db_u64(db, sql, &v), 0);
    ts_db_close(db);
    return v;
}

static void test_embargo_sql(void **state)
{
    (void)state;
    char *out, *err, path[1200];
    assert_int_equal(ctl(conninfo, &out, &err, "embargo", NULL), 0);
    assert_has(out, "embargo off");
    free(out);
    free(err);
    assert_int_equal(reader_u64("SELECT count(*) FROM results WHERE votes IS NOT NULL"), 5);

    assert_int_equal(ctl(conninfo, &out, &err, "embargo", "on", "--actor", "ana", NULL), 0);
    assert_has(out, "embargo on: no tallyd is running: SQL readers see it now, tallyd from its "
                    "start");
    free(out);
    free(err);
    assert_int_equal(reader_u64("SELECT count(*) FROM results WHERE votes IS NOT NULL"), 0);
    assert_int_equal(reader_u64("SELECT count(*) FROM results WHERE rank IS NOT NULL"), 0);
    assert_int_equal(reader_u64("SELECT count(*) FROM circuit_winners"), 0);
    assert_int_equal(reader_u64("SELECT sum(ballots) FROM circuit_progress"), 13);
    assert_int_equal(reader_u64("SELECT count(*) FROM table_progress WHERE reported"), 2);
    assert_int_equal(reader_u64("SELECT count(*) FROM consultation_status WHERE embargo"), 1);

    assert_int_equal(ctl(conninfo, &out, &err, "embargo", NULL), 0);
    assert_has(out, "embargo on (since ");
    assert_has(out, ", by ana)");
    free(out);
    free(err);
    assert_int_equal(ctl(conninfo, &out, &err, "embargo", "on", NULL), 0);
    assert_has(out, "embargo on (already)");
    free(out);
    free(err);

    /* Exports under the embargo: pabulib refused, csv progress only. */
    snprintf(path, sizeof path, "%s/export-embargo", dir);
    assert_int_equal(
        ctl(conninfo, &out, &err, "export", "--format", "pabulib", "--out", path, NULL), 1);
    assert_has(err, "refused under the embargo");
    free(out);
    free(err);
    assert_int_equal(ctl(conninfo, &out, &err, "export", "--format", "csv", "--out", path, NULL),
                     0);
    assert_has(out, "under the embargo (progress only)");
    free(out);
    free(err);
    char file[1300];
    snprintf(file, sizeof file, "%s/circuit-1.csv", path);
    char *text = ts_read_file(file);
    assert_non_null(text);
    assert_null(strstr(text, "votes"));
    assert_null(strstr(text, "Agua"));
    assert_has(text, ",1,Uno,Lara,1,1,1,20,9,0.4500\n");
    free(text);
    snprintf(file, sizeof file, "%s/index.csv", path);
    text = ts_read_file(file);
    assert_non_null(text);
    assert_null(strstr(text, "winners"));
    free(text);

    assert_int_equal(ctl(conninfo, &out, &err, "embargo", "off", "--actor", "ana", NULL), 0);
    assert_has(out, "embargo off: no tallyd is running");
    free(out);
    free(err);
    assert_int_equal(reader_u64("SELECT count(*) FROM results WHERE votes IS NOT NULL"), 5);
}

static void test_certify_refused_open(void **state)
{
    (void)state;
    char *out, *err, path[1200];
    snprintf(path, sizeof path, "%s/cert-open", dir);
    assert_int_equal(ctl(conninfo, &out, &err, "certify", "--out", path, NULL), 1);
    assert_has(err, "the consultation is not closed");
    free(out);
    free(err);
}

static char *head_hex(void)
{
    char *h = ts_sql_text(conninfo, "SELECT encode(hash, 'hex') FROM checkpoints"
                                    " ORDER BY id DESC LIMIT 1");
    assert_non_null(h);
    return h;
}

static void test_certify(void **state)
{
    (void)state;
    char sql[1024];
    /* The close and the tie rule as tallyd will write them, by SQL. */
    assert_int_equal(ts_sql_exec(conninfo, "UPDATE consultation_state SET closed_at = now(),"
                                           " closed_checkpoint_id = (SELECT max(id) FROM"
                                           " checkpoints)"),
                     0);
    snprintf(sql, sizeof sql,
             "UPDATE consultation_state SET tie_rule = 'lot', tie_seed = '\\x%s'::bytea,"
             " tie_seed_hash = '\\x%064d'::bytea",
             seed_hex, 7);
    assert_int_equal(ts_sql_exec(conninfo, sql), 0);

    char *out, *err, path[1200], file[1300], want[2048];
    snprintf(path, sizeof path, "%s/cert", dir);
    assert_int_equal(ctl(conninfo, &out, &err, "certify", "--out", path, "--actor", "junta", NULL),
                     0);
    char *head = head_hex();
    uint64_t last = 0;
    assert_int_equal(ts_sql_u64(conninfo, "SELECT max(id) FROM checkpoints", &last), 0);
    snprintf(want, sizeof want, "certified: head %s, checkpoint %llu, report %s/report.html\n",
             head, (unsigned long long)last, path);
    assert_has(out, want);
    free(out);
    free(err);

    /* Circuit 1: 101 and 102 tie at 4 on its one seat, decided by lot; which one wins is
     * BLAKE2b(seed || LE32 id): src/rules' test checks the order itself. */
    snprintf(file, sizeof file, "%s/projects.csv", path);
    char *text = ts_read_file(file);
    assert_non_null(text);
    bool first101 = strstr(text, "\n101,Agua,1,Lara,4,1,true,true,true\n") != NULL;
    snprintf(want, sizeof want,
             "project_id,project_name,circuit_id,state,votes,rank,winner,tie,by_lot\n"
             "%s%s"
             "103,Escuela <nueva>,1,Lara,1,3,false,false,false\n"
             "201,Parque,2,Zulia,3,1,true,false,false\n"
             "202,Cancha,2,Zulia,1,2,false,false,false\n",
             first101 ? "101,Agua,1,Lara,4,1,true,true,true\n"
                      : "102,\"Luz, \"\"solar\"\"\",1,Lara,4,1,true,true,true\n",
             first101 ? "102,\"Luz, \"\"solar\"\"\",1,Lara,4,1,false,true,false\n"
                      : "101,Agua,1,Lara,4,1,false,true,false\n");
    assert_string_equal(text, want);
    free(text);
    snprintf(file, sizeof file, "%s/circuits.csv", path);
    assert_file(file, "circuit_id,circuit_name,state,seats,tables,tables_reported,electors,"
                      "ballots,turnout,winners,tie\n"
                      "1,Uno,Lara,1,1,1,20,9,0.4500,1,true\n"
                      "2,Dos,Zulia,1,1,1,10,4,0.4000,1,false\n");
    snprintf(file, sizeof file, "%s/states.csv", path);
    assert_file(file, "state,circuits,tables,tables_reported,electors,ballots,turnout\n"
                      "Lara,1,1,1,20,9,0.4500\n"
                      "Zulia,1,1,1,10,4,0.4000\n");
    snprintf(file, sizeof file, "%s/report.html", path);
    text = ts_read_file(file);
    assert_non_null(text);
    assert_has(text, "Resultados oficiales");
    assert_has(text, head);
    assert_has(text, seed_hex);
    assert_has(text, "decidido por sorteo");
    assert_has(text, "Escuela &lt;nueva&gt;");
    assert_has(text, "Luz, &quot;solar&quot;");
    assert_has(text, "@media print");
    assert_null(strstr(text, "<script"));
    assert_null(strstr(text, "http"));
    free(text);

    /* The record: official at this head, with the report's SHA-256. */
    char *sha_argv[] = {"/usr/bin/sha256sum", file, NULL};
    char *sha = NULL;
    assert_int_equal(ts_run(sha_argv, &sha, NULL, ts_scale(10000)), 0);
    sha[64] = '\0';
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM consultation_state WHERE certified_by = 'junta'"
             " AND encode(report_sha256, 'hex') = '%s' AND encode(certified_hash, 'hex') = '%s'"
             " AND certified_checkpoint_id = %llu",
             sha, head, (unsigned long long)last);
    uint64_t v = 0;
    assert_int_equal(ts_sql_u64(conninfo, sql, &v), 0);
    assert_int_equal(v, 1);
    char *status = ts_sql_text(conninfo, "SELECT status FROM consultation_status");
    assert_string_equal(status, "official");
    free(status);

    /* Again: the same bytes, nothing changes. */
    char *before = ts_read_file(file);
    assert_int_equal(ctl(conninfo, &out, &err, "certify", "--out", path, NULL), 0);
    assert_has(out, "already certified: head ");
    assert_has(out, "(unchanged)");
    free(out);
    free(err);
    char *after = ts_read_file(file);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* A directory holding another projects.csv: refused without --force. */
    char other[1200];
    snprintf(other, sizeof other, "%s/cert-other", dir);
    snprintf(file, sizeof file, "%s/projects.csv", other);
    ts_rm_rf(other);
    char *mk[] = {"/bin/mkdir", "-p", other, NULL};
    assert_int_equal(ts_run(mk, NULL, NULL, 10000), 0);
    assert_int_equal(ts_write_file(file, "not ours\n"), 0);
    assert_int_equal(ctl(conninfo, &out, &err, "certify", "--out", other, NULL), 1);
    assert_has(err, "exists already with other content");
    free(out);
    free(err);
    assert_file(file, "not ours\n");
    assert_int_equal(ctl(conninfo, &out, &err, "certify", "--out", other, "--force", NULL), 0);
    free(out);
    free(err);
    text = ts_read_file(file);
    assert_has(text, "project_id,project_name");
    free(text);
    free(sha);
    free(head);
}

static void test_export(void **state)
{
    (void)state;
    char *out, *err, path[1200], file[1300];
    char *head = head_hex();
    snprintf(path, sizeof path, "%s/export", dir);
    assert_int_equal(ctl(conninfo, &out, &err, "export", "--format", "pabulib", "--out", path,
                         "--country", "Venezuela", NULL),
                     0);
    assert_has(out, "exported 2 circuits as pabulib");
    assert_has(out, "official");
    free(out);
    free(err);
    char f1[1300], f2[1300];
    snprintf(f1, sizeof f1, "%s/circuit-1.pb", path);
    snprintf(f2, sizeof f2, "%s/circuit-2.pb", path);
    char script[1200];
    snprintf(script, sizeof script, "%s/tests/tools/pabulib_check.py", ts_src_dir());
    char *argv[] = {"/usr/bin/python3", script, f1, f2, NULL};
    char *check = NULL;
    int rc = ts_run(argv, &check, NULL, ts_scale(30000));
    if (rc != 0)
        fail_msg("pabulib_check.py exited %d:\n%s", rc, check ? check : "");
    assert_has(check, "circuit-1.pb: ok: 3 projects, 9 votes; 101=4 102=4 103=1");
    assert_has(check, "circuit-2.pb: ok: 2 projects, 4 votes; 201=3 202=1");
    free(check);
    char *text = ts_read_file(f1);
    assert_has(text, "vote_type;choose-1\n");
    assert_has(text, "country;Venezuela\n");
    assert_has(text, "budget;1\n");
    assert_has(text, head);
    free(text);

    assert_int_equal(ctl(conninfo, &out, &err, "export", "--format", "json", "--out", path, NULL),
                     0);
    free(out);
    free(err);
    snprintf(file, sizeof file, "%s/index.json", path);
    text = ts_read_file(file);
    assert_non_null(text);
    assert_has(text, "\"status\": \"official\"");
    assert_has(text, head);
    assert_has(text, "\"file\": \"circuit-2.json\"");
    free(text);
    snprintf(file, sizeof file, "%s/circuit-2.json", path);
    text = ts_read_file(file);
    assert_has(text, "{\"id\": 201, \"name\": \"Parque\", \"votes\": 3");
    free(text);

    assert_int_equal(ctl(conninfo, &out, &err, "export", "--format", "csv", "--out", path, NULL),
                     0);
    free(out);
    free(err);
    snprintf(file, sizeof file, "%s/circuit-2.csv", path);
    text = ts_read_file(file);
    char want[512];
    snprintf(want, sizeof want, "official,%s,", head);
    assert_has(text, want);
    assert_has(text, ",2,Dos,Zulia,1,1,1,10,4,0.4000,201,Parque,3,1,true,false,false\n");
    free(text);
    free(head);
}

/* ---- part (b): a running tallyd applies the requests ------------------------------------- */

static void test_applied_by_tallyd(void **state)
{
    (void)state;
    char db[512];
    struct ts_tallyd d;
    assert_int_equal(make_db("consult_cmds_b", db, sizeof db), 0);
    assert_int_equal(push_votes(db, "votes-b", votes, 3, &d, true), 0);
    char *out, *err, path[1200];

    /* Batch 1 holds v1..v3: three votes for 101 at T1. */
    assert_int_equal(ctl(db, &out, &err, "retract", "--collector", "c0", "--seq", "1", "--reason",
                         "lote duplicado", "--actor", "junta", NULL),
                     0);
    assert_has(out, "retracted c0/1 in checkpoint ");
    assert_has(out, ": 101 -3; ballots -3\n");
    free(out);
    free(err);
    uint64_t v = 0;
    assert_int_equal(ts_sql_u64(db, "SELECT votes FROM results WHERE project_id = 101", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(ctl(db, &out, &err, "retract", "--collector", "c0", "--seq", "1", "--reason",
                         "otra vez", "--actor", "junta", NULL),
                     1);
    assert_has(err, "refused");
    free(out);
    free(err);

    assert_int_equal(
        ctl(db, &out, &err, "set", "tie-rule", "lot", "--seed", seed_hex, "--actor", "junta", NULL),
        0);
    char *hash = ts_sql_text(db, "SELECT encode(tie_seed_hash, 'hex') FROM consultation_state");
    assert_non_null(hash);
    assert_has(out, hash);
    free(hash);
    free(out);
    free(err);

    assert_int_equal(ctl(db, &out, &err, "embargo", "on", "--actor", "junta", NULL), 0);
    assert_has(out, "applied by tallyd");
    free(out);
    free(err);
    assert_int_equal(ctl(db, &out, &err, "embargo", "off", NULL), 0);
    free(out);
    free(err);

    assert_int_equal(ctl(db, &out, &err, "close", "--actor", "junta", NULL), 0);
    assert_has(out, "closed at checkpoint ");
    char *head = ts_sql_text(db, "SELECT encode(hash, 'hex') FROM checkpoints"
                                 " ORDER BY id DESC LIMIT 1");
    assert_non_null(head);
    assert_has(out, head);
    free(out);
    free(err);

    snprintf(path, sizeof path, "%s/cert-b", dir);
    assert_int_equal(ctl(db, &out, &err, "certify", "--out", path, NULL), 0);
    assert_has(out, head);
    free(out);
    free(err);
    free(head);
    /* The report lists the retraction; 101 lost three votes, so 102 wins alone. */
    char file[1300];
    snprintf(file, sizeof file, "%s/report.html", path);
    char *text = ts_read_file(file);
    assert_non_null(text);
    assert_has(text, "Retiro de un lote");
    assert_has(text, "Lote c0/1");
    assert_has(text, "lote duplicado");
    assert_has(text, "101: -3; papeletas: -3");
    free(text);
    snprintf(file, sizeof file, "%s/projects.csv", path);
    text = ts_read_file(file);
    assert_has(text, "\n102,\"Luz, \"\"solar\"\"\",1,Lara,4,1,true,false,false\n");
    free(text);
    ts_tallyd_kill(&d);
    ts_db_drop("consult_cmds_b");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_request_pending),
        cmocka_unit_test(test_embargo_sql),
        cmocka_unit_test(test_certify_refused_open),
        cmocka_unit_test(test_certify),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_applied_by_tallyd),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
