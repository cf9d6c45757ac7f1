/* tallyctl load-tables and the registry's min_votes column against the fixture PostgreSQL:
 * a registry of seven columns (min_votes in projects), voting tables loaded, reloaded
 * without change, refused whole on a conflict (with its file line, exit 1, nothing changed),
 * an unknown circuit, stdin, a large file in well under a second, status, and a database
 * before migration 7. With -DTALLY_TEST_STORE (the test linked with the store library),
 * store_tables_read too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TALLY_TEST_STORE
#include "store/store.h"
#endif

#define DB_NAME "it_tables"
#define REG_HDR "project_id,project_name,circuit_id,circuit_name,state,seats"
#define TAB_HDR "table_id,circuit_id,electors"

static char work[1024];
static char conninfo[512];

/* work/name, written with text; the path into path (static: one per call site is enough). */
static const char *put(const char *name, const char *text)
{
    static char paths[32][1200];
    static unsigned n;
    char *path = paths[n++ % 32];
    snprintf(path, 1200, "%s/%s", work, name);
    if (ts_write_file(path, text) != 0)
        fail_msg("cannot write %s", path);
    return path;
}

/* tallyctl with its stdout and stderr (both malloc'd, never NULL); returns the exit code. */
static int ctl(char **out, char **err, const char *a1, const char *a2, const char *a3)
{
    int code = ts_ctl_capture(conninfo, out, err, a1, a2, a3);
    if (!*out)
        *out = strdup("");
    if (!*err)
        *err = strdup("");
    return code;
}

/* tallyctl ARGS must exit with code and print needle on stdout (out) or stderr. */
static void expect_ctl(int code, const char *needle, bool on_stdout, const char *a1, const char *a2)
{
    char *out, *err;
    int got = ctl(&out, &err, a1, a2, NULL);
    const char *where = on_stdout ? out : err;
    if (got != code || !strstr(where, needle))
        fail_msg("tallyctl %s %s: want exit %d with \"%s\", got %d\nstdout: %s\nstderr: %s", a1,
                 a2 ? a2 : "", code, needle, got, out, err);
    free(out);
    free(err);
}

static uint64_t sql_u64(const char *sql)
{
    uint64_t v = UINT64_MAX;
    if (ts_sql_u64(conninfo, sql, &v) != 0)
        fail_msg("query failed: %s", sql);
    return v;
}

/* Every voting table as "id:circuit:electors;" in id order. */
static char *tables_text(void)
{
    char *t =
        ts_sql_text(conninfo, "SELECT coalesce(string_agg(v.id || ':' || a.code || ':' ||"
                              " v.electors, ';' ORDER BY v.id COLLATE \"C\"), '')"
                              " FROM voting_tables v JOIN areas a ON a.id = v.circuit_area_id");
    if (!t)
        fail_msg("cannot read voting_tables");
    return t;
}

static void expect_tables(const char *want)
{
    char *got = tables_text();
    if (strcmp(got, want) != 0)
        fail_msg("voting_tables: want %s, got %s", want, got);
    free(got);
}

static const char registry7[] = REG_HDR ",min_votes\n"
                                        "1,Agua,100,Circuito Uno,Zulia,2,150\n"
                                        "2,Luz,100,Circuito Uno,Zulia,2,0\n"
                                        "3,Vialidad,200,Circuito Dos,Lara,1,20\n"
                                        "4,Escuela,300,Circuito Tres,Lara,1,0\n";

static int setup(void **state)
{
    (void)state;
    snprintf(work, sizeof work, "%s", ts_workdir("tables"));
    if (ts_db_create(DB_NAME, conninfo, sizeof conninfo) != 0 ||
        ts_ctl(conninfo, NULL, "migrate", NULL, NULL) != 0 ||
        ts_ctl(conninfo, NULL, "load-registry", put("registry7.csv", registry7), NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_cleanup();
    ts_db_drop(DB_NAME);
    ts_db_drop(DB_NAME "_v6");
    return 0;
}

static void test_registry_min_votes(void **state)
{
    (void)state;
    assert_int_equal(sql_u64("SELECT min_votes FROM projects WHERE id = 1"), 150);
    assert_int_equal(sql_u64("SELECT min_votes FROM projects WHERE id = 2"), 0);
    assert_int_equal(sql_u64("SELECT min_votes FROM projects WHERE id = 3"), 20);
    assert_int_equal(sql_u64("SELECT count(*) FROM tallies"), 4);
    /* The same file again: nothing new. */
    expect_ctl(0, "loaded 4 projects in 3 circuits, 2 states (0 new projects, 0 new circuits", true,
               "load-registry", put("registry7-again.csv", registry7));
    /* The six-column file of the same projects means min_votes 0: a conflict, line named. */
    const char *six = put("registry6.csv", REG_HDR "\n"
                                                   "2,Luz,100,Circuito Uno,Zulia,2\n"
                                                   "1,Agua,100,Circuito Uno,Zulia,2\n");
    char want[1400];
    snprintf(want, sizeof want, "%s:3: project 1 already has min_votes 150, not 0", six);
    expect_ctl(1, want, false, "load-registry", six);
    /* Within one file, and another value against the database. */
    const char *twice = put("registry7-twice.csv", REG_HDR ",min_votes\n"
                                                           "5,Cancha,300,Circuito Tres,Lara,1,9\n"
                                                           "5,Cancha,300,Circuito Tres,Lara,1,8\n");
    snprintf(want, sizeof want, "%s:3: project 5 already has min_votes 9 (line 2), not 8", twice);
    expect_ctl(1, want, false, "load-registry", twice);
    const char *other =
        put("registry7-other.csv", REG_HDR ",min_votes\n"
                                           "3,Vialidad,200,Circuito Dos,Lara,1,21\n");
    snprintf(want, sizeof want, "%s:2: project 3 already has min_votes 20, not 21", other);
    expect_ctl(1, want, false, "load-registry", other);
    assert_int_equal(sql_u64("SELECT count(*) FROM projects"), 4);
    assert_int_equal(sql_u64("SELECT min_votes FROM projects WHERE id = 3"), 20);
    /* A six-column file of new projects: min_votes 0. */
    expect_ctl(0, "(1 new projects", true, "load-registry",
               put("registry6-new.csv", REG_HDR "\n6,Parque,300,Circuito Tres,Lara,1\n"));
    assert_int_equal(sql_u64("SELECT min_votes FROM projects WHERE id = 6"), 0);
    expect_ctl(1, ":2: min_votes \"-5\" is not an integer from 0 to 2147483647", false,
               "load-registry",
               put("registry7-bad.csv", REG_HDR ",min_votes\n7,a,300,Circuito Tres,Lara,1,-5\n"));
}

static const char tables1[] = "\xef\xbb\xbf" TAB_HDR "\r\n"
                              "M-001,100,350\r\n"
                              "\r\n"
                              "M-002,100,0\r\n"
                              "\"M-003\",200,300\r\n"
                              "M-001,100,350\r\n" /* again, the same */
                              "a.b_c,200,2147483647\r\n";
static const char tables1_db[] = "M-001:100:350;M-002:100:0;M-003:200:300;a.b_c:200:2147483647";

static void test_load_and_reload(void **state)
{
    (void)state;
    const char *path = put("tables1.csv", tables1);
    expect_ctl(0, "loaded 4 tables in 2 circuits (2147484297 electors; 4 new)\n", true,
               "load-tables", path);
    expect_tables(tables1_db);
    expect_ctl(0, "loaded 4 tables in 2 circuits (2147484297 electors; 0 new)\n", true,
               "load-tables", path);
    expect_tables(tables1_db);
    /* Part of the same file: nothing new either. */
    expect_ctl(0, "loaded 1 tables in 1 circuits (300 electors; 0 new)\n", true, "load-tables",
               put("tables1-part.csv", TAB_HDR "\nM-003,200,300\n"));
    /* An empty file (header alone) loads nothing. */
    expect_ctl(0, "loaded 0 tables in 0 circuits (0 electors; 0 new)\n", true, "load-tables",
               put("tables-empty.csv", TAB_HDR "\n"));
    /* status mentions them. */
    expect_ctl(0, "tables           4 (2147484297 electors)\n", true, "status", NULL);
    char *out, *err;
    assert_int_equal(ctl(&out, &err, "status", "--format", "json"), 0);
    if (!strstr(out, "\"tables\": 4, \"electors\": 2147484297"))
        fail_msg("status json: %s", out);
    free(out);
    free(err);
}

/* Each of these files is refused whole: exit 1, FILE:LINE: reason, nothing changed. */
static void test_conflicts(void **state)
{
    (void)state;
    struct {
        const char *name, *text;
        int line;
        const char *reason;
    } cases[] = {
        {"electors.csv", TAB_HDR "\nM-004,300,10\nM-001,100,350\nM-003,200,301\n", 4,
         "table M-003 has 300 electors, not 301"},
        {"circuit.csv", TAB_HDR "\nM-004,300,10\nM-002,200,0\n", 3,
         "table M-002 is in circuit 100, not 200"},
        {"unknown.csv",
         TAB_HDR "\nM-004,300,10\nM-005,300,10\nM-006,300,10\nM-007,300,10\nM-008,300,10\n"
                 "M-009,123,10\nM-010,124,10\n",
         7, "circuit 123 is not in the registry (load-registry first)"},
        {"twice.csv", TAB_HDR "\nM-004,300,10\nM-005,300,10\n\nM-004,300,11\n", 5,
         "table M-004 already has 10 electors (line 2), not 11"},
        {"twice-circuit.csv", TAB_HDR "\nM-004,300,10\nM-004,100,10\n", 3,
         "table M-004 already in circuit 300 (line 2), not 100"},
        /* The first conflict by line, whatever its kind. */
        {"first.csv", TAB_HDR "\nM-004,300,10\nM-001,100,1\nM-005,999,1\n", 3,
         "table M-001 has 350 electors, not 1"},
        /* The reader's findings, with their line too. */
        {"bad-id.csv", TAB_HDR "\nM-004,300,10\nmesa 5,300,10\n", 3,
         "table_id \"mesa 5\" is not 1 to 63 of A-Z a-z 0-9 . _ -"},
        {"bad-electors.csv", TAB_HDR "\nM-004,300,10\nM-005,300,2147483648\n", 3,
         "electors \"2147483648\" is not an integer from 0 to 2147483647"},
        {"bad-header.csv", "table,circuit,electors\nM-004,300,10\n", 1,
         "the header must be exactly " TAB_HDR},
        {"quote.csv", TAB_HDR "\nM-004,300,10\n\"M-005,300,10\nM-006,300,10\n", 3,
         "unterminated quoted field (quote opened here)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = put(cases[i].name, cases[i].text);
        char want[1600];
        snprintf(want, sizeof want, "tallyctl: %s:%d: %s\n", path, cases[i].line, cases[i].reason);
        expect_ctl(1, want, false, "load-tables", path);
        expect_tables(tables1_db);
    }
    /* A file that names nothing is a usage error; so is a second one. */
    expect_ctl(2, "load-tables needs a CSV file", false, "load-tables", NULL);
    char *out, *err;
    assert_int_equal(ctl(&out, &err, "load-tables", "a.csv", "b.csv"), 2);
    if (!strstr(err, "load-tables: unexpected argument 'b.csv'"))
        fail_msg("two files: %s", err);
    free(out);
    free(err);
    expect_ctl(1, "no-such.csv: No such file or directory", false, "load-tables",
               "/nonexistent/no-such.csv");
    expect_tables(tables1_db);
}

/* FILE '-' is stdin. */
static void test_stdin(void **state)
{
    (void)state;
    const char *path = put("stdin.csv", TAB_HDR "\nS-1,300,7\nS-2,300,8\n");
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "exec '%s' --db '%s' load-tables - < '%s'", ts_prog("tallyctl"),
             conninfo, path);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *out = NULL;
    assert_int_equal(ts_run(argv, &out, NULL, ts_scale(60000)), 0);
    assert_non_null(out);
    assert_string_equal(out, "loaded 2 tables in 1 circuits (15 electors; 2 new)\n");
    free(out);
    const char *bad = put("stdin-bad.csv", TAB_HDR "\nS-1,300,9\n");
    snprintf(cmd, sizeof cmd, "exec '%s' --db '%s' load-tables - < '%s' 2>&1", ts_prog("tallyctl"),
             conninfo, bad);
    out = NULL;
    assert_int_equal(ts_run(argv, &out, NULL, ts_scale(60000)), 1);
    assert_non_null(out);
    if (!strstr(out, "<stdin>:2: table S-1 has 7 electors, not 9"))
        fail_msg("stdin conflict: %s", out);
    free(out);
    assert_int_equal(sql_u64("SELECT count(*) FROM voting_tables"), 6);
}

/* 20,000 tables over 4 circuits in well under a second (the connection included). */
static void test_large(void **state)
{
    (void)state;
    size_t cap = 64 + 20000 * 32, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "%s\n", TAB_HDR);
    static const unsigned circuits[4] = {100, 200, 300, 400};
    uint64_t electors = 0;
    for (unsigned i = 0; i < 20000; i++) {
        /* 400 is not in the registry yet: added below, the file reloaded. */
        unsigned c = circuits[i % 3];
        len += (size_t)snprintf(text + len, cap - len, "L-%05u,%u,%u\n", i, c, i % 700);
        electors += i % 700;
    }
    const char *path = put("large.csv", text);
    char want[128];
    snprintf(want, sizeof want,
             "loaded 20000 tables in 3 circuits (%" PRIu64 " electors; 20000 new)\n", electors);
    int64_t t0 = ts_now_ms();
    expect_ctl(0, want, true, "load-tables", path);
    int64_t ms = ts_now_ms() - t0;
    fprintf(stderr, "test_tables: 20000 tables loaded in %" PRId64 " ms\n", ms);
    assert_true(ms < ts_scale(1000));
    snprintf(want, sizeof want, "loaded 20000 tables in 3 circuits (%" PRIu64 " electors; 0 new)\n",
             electors);
    t0 = ts_now_ms();
    expect_ctl(0, want, true, "load-tables", path);
    ms = ts_now_ms() - t0;
    fprintf(stderr, "test_tables: reloaded in %" PRId64 " ms\n", ms);
    assert_true(ms < ts_scale(1000));
    /* The last line conflicting: found, by its line, and nothing of the rest loaded. */
    len += (size_t)snprintf(text + len, cap - len, "L-19999,400,1\n");
    path = put("large-bad.csv", text);
    snprintf(want, sizeof want, "%s:20002: circuit 400 is not in the registry", path);
    expect_ctl(1, want, false, "load-tables", path);
    assert_int_equal(sql_u64("SELECT count(*) FROM voting_tables"), 20006);
    free(text);
}

/* Before migration 7 there is nowhere to put tables or min_votes. */
static void test_old_schema(void **state)
{
    (void)state;
    char old[512];
    assert_int_equal(ts_db_create(DB_NAME "_v6", old, sizeof old), 0);
    assert_int_equal(ts_ctl(old, NULL, "migrate", "--to", "6"), 0);
    char *out = NULL, *err = NULL;
    assert_int_equal(
        ts_ctl_capture(old, &out, &err, "load-registry", put("registry7-old.csv", registry7), NULL),
        1);
    if (!err || !strstr(err, ":2: min_votes needs schema version 7"))
        fail_msg("old schema, min_votes: %s", err ? err : "");
    free(out);
    free(err);
    const char *six = put("registry6-old.csv", REG_HDR "\n1,Agua,100,Circuito Uno,Zulia,2\n");
    assert_int_equal(ts_ctl(old, NULL, "load-registry", six, NULL), 0);
    assert_int_equal(ts_ctl(old, NULL, "load-registry", six, NULL), 0);
    out = err = NULL;
    assert_int_equal(ts_ctl_capture(old, &out, &err, "load-tables",
                                    put("tables-old.csv", TAB_HDR "\nM-1,100,5\n"), NULL),
                     1);
    if (!err || !strstr(err, "voting tables need schema version 7"))
        fail_msg("old schema, tables: %s", err ? err : "");
    free(out);
    free(err);
    /* status still works, and says nothing of tables. */
    out = err = NULL;
    assert_int_equal(ts_ctl_capture(old, &out, &err, "status", NULL, NULL), 0);
    assert_null(strstr(out, "tables"));
    free(out);
    free(err);
}

#ifdef TALLY_TEST_STORE
static void test_store_tables_read(void **state)
{
    (void)state;
    char err[512] = "";
    struct store *s = store_open(conninfo, err, sizeof err);
    if (!s)
        fail_msg("store_open: %s", err);
    struct store_table *a = NULL;
    size_t n = 0;
    assert_int_equal(store_tables_read(s, &a, &n), 0);
    assert_int_equal(n, 20006);
    /* Byte order of the ids: upper case before lower. */
    assert_string_equal(a[0].id, "L-00000");
    assert_int_equal(a[0].circuit_id, 100);
    assert_int_equal(a[0].electors, 0);
    assert_string_equal(a[20000].id, "M-001");
    assert_int_equal(a[20000].circuit_id, 100);
    assert_int_equal(a[20000].electors, 350);
    assert_string_equal(a[20002].id, "M-003");
    assert_int_equal(a[20002].circuit_id, 200);
    assert_int_equal(a[20002].electors, 300);
    assert_string_equal(a[20003].id, "S-1");
    assert_string_equal(a[20005].id, "a.b_c");
    assert_int_equal(a[20005].electors, INT32_MAX);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(a[i - 1].id, a[i].id) < 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(a[i].line, 0);
    store_tables_free(a, n);

    struct store_catalog cat;
    assert_int_equal(store_catalog_read(s, &cat), 0);
    assert_int_equal(cat.n_projects, 5);
    assert_int_equal(cat.projects[0].id, 1);
    assert_int_equal(cat.projects[0].min_votes, 150);
    assert_int_equal(cat.projects[2].min_votes, 20);
    assert_int_equal(cat.projects[4].min_votes, 0);
    store_catalog_cleanup(&cat);
    store_close(s);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_min_votes),
        cmocka_unit_test(test_load_and_reload),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_large),
#ifdef TALLY_TEST_STORE
        cmocka_unit_test(test_store_tables_read),
#endif
        cmocka_unit_test(test_old_schema),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
