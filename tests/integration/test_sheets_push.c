/* tally-push against a real tallyd and PostgreSQL for issue 10 (docs/consultation.md): a
 * sheets CSV through --sheets (tallyd's verdict per sheet in tally-push's lines and summary,
 * a higher version in a second file replacing the first, the same file again changing
 * nothing), and a three-column vote CSV whose votes name their table (a table reported by
 * sheet refuses them: table_mode_conflict). The raw-wire checks are test_sheets.c's. */
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
static struct ts_tallyd d;
static const char *dir;

static const char registry[] =
    "project_id,project_name,circuit_id,circuit_name,state,seats,min_votes\n"
    "101,Agua,1,Uno,Lara,1,0\n"
    "102,Luz,1,Uno,Lara,1,0\n"
    "201,Escuela,2,Dos,Zulia,1,0\n";

static const char tables[] = "table_id,circuit_id,electors\n"
                             "T1,1,100\n"
                             "T2,1,50\n"
                             "T3,2,80\n";

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    dir = ts_workdir("sheets_push");
    char reg[1200], tab[1200];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(tab, sizeof tab, "%s/tables.csv", dir);
    if (ts_write_file(reg, registry) != 0 || ts_write_file(tab, tables) != 0 ||
        ts_db_create("sheets_push", conninfo, sizeof conninfo) != 0 ||
        ts_db_prepare(conninfo, reg, 2) != 0 ||
        ts_ctl(conninfo, NULL, "load-tables", tab, NULL) != 0)
        return -1;
    memset(&d, 0, sizeof d);
    snprintf(d.conninfo, sizeof d.conninfo, "%s", conninfo);
    snprintf(d.dir, sizeof d.dir, "%s", dir);
    d.checkpoint_ms = 50;
    return ts_tallyd_start(&d, ts_scale(20000));
}

static int teardown(void **state)
{
    (void)state;
    ts_tallyd_kill(&d);
    ts_cleanup();
    return 0;
}

/* Runs tally-push as collector with args after the common ones; stdout in *out, stderr in
 * *err (both malloc'd). Returns its exit code. */
static int push(const char *collector, const char *a1, const char *a2, char **out, char **err)
{
    char server[64], spool[1200], errp[1200];
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)d.port);
    snprintf(spool, sizeof spool, "%s/spool-%s", dir, collector);
    snprintf(errp, sizeof errp, "%s/push-%s.err", dir, collector);
    remove(errp);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--server",
                    server,
                    "--collector",
                    (char *)collector,
                    "--spool",
                    spool,
                    (char *)a1,
                    (char *)a2,
                    NULL};
    if (!a2)
        argv[8] = NULL;
    int rc = ts_run(argv, out, errp, ts_scale(30000));
    *err = ts_read_file(errp);
    if (!*err)
        *err = strdup("");
    if (rc != 0)
        fprintf(stderr, "tally-push exited %d:\n%s\n%s", rc, *out ? *out : "", *err);
    return rc;
}

static void assert_has(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("expected '%s' in:\n%s", want, text);
}

static void test_sheets_file(void **state)
{
    (void)state;
    char f1[1200], f2[1200];
    snprintf(f1, sizeof f1, "%s/sheets1.csv", dir);
    snprintf(f2, sizeof f2, "%s/sheets2.csv", dir);
    /* T1's rows stand apart; T2 names a project of another circuit; T9 does not exist. */
    assert_int_equal(ts_write_file(f1, "table_id,version,project_id,votes\n"
                                       "T1,1,101,10\n"
                                       "T3,1,201,7\n"
                                       "T1,1,102,5\n"
                                       "T2,1,201,3\n"
                                       "T9,1,101,1\n"
                                       "T1,1,blank,2\n"
                                       "T1,1,null,1\n"),
                     0);
    char *out = NULL, *err = NULL;
    assert_int_equal(push("c0", "--sheets", f1, &out, &err), 0);
    assert_has(out, "sheets 4 accepted 2 duplicate 0 rejected 2");
    assert_has(out, "unknown_table 1");
    assert_has(out, "outside_table_circuit 1");
    assert_has(err, "sheet T9 version 1 rejected: unknown_table");
    assert_has(err, "sheet T2 version 1 rejected: outside_table_circuit");
    free(out);
    free(err);

    /* The same file again: nothing new is spooled, the totals stand. */
    assert_int_equal(push("c0", "--sheets", f1, &out, &err), 0);
    assert_has(out, "sheets 4 accepted 2 duplicate 0 rejected 2");
    free(out);
    free(err);

    /* A second file: T1 version 2 replaces version 1; T3 version 1 again, its rows in another
     * order, is a duplicate. */
    assert_int_equal(ts_write_file(f2, "table_id,version,project_id,votes\n"
                                       "T1,2,102,6\n"
                                       "T1,2,101,9\n"
                                       "T1,2,blank,2\n"
                                       "T3,1,201,7\n"),
                     0);
    assert_int_equal(push("c0", "--sheets", f2, &out, &err), 0);
    assert_has(err, "sheet T1 version 2 replaces version 1");
    assert_has(out, "sheets 6 accepted 3 duplicate 1 rejected 2");
    free(out);
    free(err);

    uint64_t v = 0;
    assert_int_equal(ts_sql_u64(conninfo, "SELECT count(*) FROM sheets", &v), 0);
    assert_int_equal(v, 3); /* T1 v1, T1 v2, T3 v1 */
}

static void test_votes_with_tables(void **state)
{
    (void)state;
    char f[1200];
    snprintf(f, sizeof f, "%s/votes.csv", dir);
    /* T2 takes per-ballot votes; T1 reported by sheet (test_sheets_file) refuses them. */
    assert_int_equal(ts_write_file(f, "voter,project_id,table_id\n"
                                      "v1,101,T2\n"
                                      "v2,102,T2\n"
                                      "v3,101,\n"
                                      "v4,101\n"
                                      "v5,101,T1\n"),
                     0);
    char *out = NULL, *err = NULL;
    assert_int_equal(push("c1", f, NULL, &out, &err), 0);
    assert_has(out, "votes 5 accepted 4 duplicate 0 rejected 1");
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sheets_file),
        cmocka_unit_test(test_votes_with_tables),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
