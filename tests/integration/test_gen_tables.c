/* tally-gen with voting tables (issue 10): the files hold together (every valid vote names a
 * table of its project's circuit, no table over its electors, sheets with a later version 2
 * and a duplicate, the truth files agreeing), and a real tallyd fed as deploy/quickstart.sh
 * feeds it (load-tables, mutual TLS, votes then sheets from tally-push) ends with exactly
 * tally-gen's truth: results, batches, collectors and per table the table_progress view. */
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
#define CORRECTIONS 3

static const char *dir;
static char conninfo[512], reg_path[1200], tables_path[1200], votes_dir[1200], ca[1200];
static struct ts_tallyd d;

/* ---- small helpers ---------------------------------------------------------------------- */

static char *path_in(const char *sub)
{
    static char bufs[8][1400];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", votes_dir, sub);
    return b;
}

static int run(char **argv)
{
    int rc = ts_run(argv, NULL, NULL, ts_scale(120000));
    if (rc != 0)
        fprintf(stderr, "%s %s exited %d\n", argv[0], argv[1], rc);
    return rc;
}

static int gen_all(const char *out_dir, const char *seed)
{
    char *a1[] = {(char *)ts_prog("tally-gen"),
                  "registry",
                  "--out",
                  reg_path,
                  "--circuits",
                  "60",
                  "--projects",
                  "400",
                  "--seed",
                  (char *)seed,
                  NULL};
    char *a2[] = {(char *)ts_prog("tally-gen"),
                  "tables",
                  "--registry",
                  reg_path,
                  "--out",
                  tables_path,
                  "--tables-per-circuit",
                  "3",
                  "--electors-per-table",
                  "200",
                  "--seed",
                  (char *)seed,
                  NULL};
    char *a3[] = {(char *)ts_prog("tally-gen"),
                  "votes",
                  "--registry",
                  reg_path,
                  "--tables",
                  tables_path,
                  "--collectors",
                  "2",
                  "--votes",
                  "12000",
                  "--out-dir",
                  (char *)out_dir,
                  "--repeat-rate",
                  "0.05",
                  "--unknown-rate",
                  "0.01",
                  "--malformed",
                  "2",
                  "--sheet-share",
                  "0.3",
                  "--corrections",
                  "3",
                  "--seed",
                  (char *)seed,
                  "--quiet",
                  NULL};
    return run(a1) || run(a2) || run(a3) ? -1 : 0;
}

/* "key value" of truth-summary.txt; fails the test when missing. */
static uint64_t summary(const char *key)
{
    char *text = ts_read_file(path_in("truth-summary.txt"));
    assert_non_null(text);
    size_t n = strlen(key);
    for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, key, n) && l[n] == ' ') {
            uint64_t v = strtoull(l + n + 1, NULL, 10);
            free(text);
            return v;
        }
    }
    fail_msg("truth-summary.txt has no '%s'", key);
    return 0;
}

/* Splits one CSV record (RFC 4180 quotes, no newline inside) in place; returns fields. */
static size_t split(char *line, char **f, size_t max)
{
    size_t n = 0;
    char *w = line, *r = line;
    while (n < max) {
        f[n++] = w;
        if (*r == '"') {
            for (r++; *r && !(*r == '"' && r[1] != '"'); r++)
                *w++ = *r == '"' ? *++r : *r;
            if (*r == '"')
                r++;
        } else {
            while (*r && *r != ',')
                *w++ = *r++;
        }
        if (*r != ',') {
            *w = '\0';
            break;
        }
        r++;
        *w++ = '\0';
    }
    return n;
}

/* Lines of a file, each NUL-terminated in place (the text is the caller's to free). */
static size_t lines_of(char *text, char ***out)
{
    size_t n = 0, cap = 1024;
    char **v = malloc(cap * sizeof *v);
    assert_non_null(v);
    for (char *l = text; *l;) {
        char *e = strchr(l, '\n');
        if (e)
            *e = '\0';
        if (n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof *v);
            assert_non_null(v);
        }
        v[n++] = l;
        if (!e)
            break;
        l = e + 1;
    }
    *out = v;
    return n;
}

/* A tiny map of strings to two numbers, linear probing; enough for a test's few thousand. */
struct kv {
    char key[72];
    uint64_t a, b;
    char flag;
    bool used;
};
struct map {
    struct kv *s;
    size_t cap;
};

static struct kv *map_get(struct map *m, const char *key, bool add)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (size_t i = h % m->cap;; i = (i + 1) % m->cap) {
        if (!m->s[i].used) {
            if (!add)
                return NULL;
            m->s[i].used = true;
            snprintf(m->s[i].key, sizeof m->s[i].key, "%s", key);
            return &m->s[i];
        }
        if (!strcmp(m->s[i].key, key))
            return &m->s[i];
    }
}

static void map_init(struct map *m, size_t cap)
{
    m->cap = cap;
    m->s = calloc(cap, sizeof *m->s);
    assert_non_null(m->s);
}

/* ---- the files alone ---------------------------------------------------------------------- */

static void files_hold_together(void **state)
{
    (void)state;
    struct map proj, table, voter, sheet;
    map_init(&proj, 4096);   /* project id -> circuit */
    map_init(&table, 4096);  /* table -> circuit, electors */
    map_init(&voter, 65536); /* voter -> table index + 1 */
    map_init(&sheet, 8192);  /* "table/version" -> total ballots, rows */

    char **l, *text = ts_read_file(reg_path), *f[8];
    size_t n = lines_of(text, &l);
    for (size_t i = 1; i < n; i++)
        if (*l[i] && split(l[i], f, 8) >= 3)
            map_get(&proj, f[0], true)->a = strtoull(f[2], NULL, 10);
    free(l);
    free(text);

    text = ts_read_file(tables_path);
    n = lines_of(text, &l);
    assert_string_equal(l[0], "table_id,circuit_id,electors");
    uint64_t electors = 0, n_tables = 0;
    for (size_t i = 1; i < n; i++) {
        if (!*l[i])
            continue;
        assert_int_equal(split(l[i], f, 8), 3);
        struct kv *t = map_get(&table, f[0], true);
        t->a = strtoull(f[1], NULL, 10);
        t->b = strtoull(f[2], NULL, 10);
        electors += t->b;
        n_tables++;
        assert_true(t->b >= 200 * 3 / 4 - 1 && t->b <= 200 * 5 / 4 + 1);
    }
    free(l);
    free(text);
    assert_int_equal(n_tables, 180);
    assert_int_equal(summary("tables"), n_tables);
    assert_int_equal(summary("electors"), electors);

    /* Votes: a known project is of the table's circuit; a voter keeps one table. */
    uint64_t valid = 0;
    for (int c = 0; c < COLLECTORS; c++) {
        char name[32];
        snprintf(name, sizeof name, "collector-%d.csv", c);
        text = ts_read_file(path_in(name));
        assert_non_null(text);
        n = lines_of(text, &l);
        if (c % 2 == 0)
            assert_string_equal(l[0], "voter,project_id,table_id");
        for (size_t i = c % 2 == 0; i < n; i++) {
            if (!*l[i] || split(l[i], f, 8) != 3)
                continue; /* a planted malformed line */
            struct kv *t = map_get(&table, f[2], false);
            assert_non_null(t);
            struct kv *p = map_get(&proj, f[1], false);
            if (p) {
                assert_int_equal(p->a, t->a);
                valid++;
            }
            struct kv *v = map_get(&voter, f[0], true);
            if (!v->a)
                v->a = (uint64_t)(t - table.s) + 1;
            assert_int_equal(v->a, (uint64_t)(t - table.s) + 1);
        }
        free(l);
        free(text);
    }
    assert_int_equal(valid, summary("accepted") + summary("duplicate"));

    /* Sheets: every version 1 before any version 2; a version 2 lowers some counts and
     * raises others; no sheet over its table's electors. */
    text = ts_read_file(path_in("sheets.csv"));
    assert_non_null(text);
    n = lines_of(text, &l);
    assert_string_equal(l[0], "table_id,version,project_id,votes");
    bool seen_v2 = false;
    uint64_t blank = 0, null_ballots = 0, sheets = 0, v2 = 0;
    for (size_t i = 1; i < n; i++) {
        if (!*l[i])
            continue;
        assert_int_equal(split(l[i], f, 8), 4);
        struct kv *t = map_get(&table, f[0], false);
        assert_non_null(t);
        uint64_t version = strtoull(f[1], NULL, 10), votes = strtoull(f[3], NULL, 10);
        assert_true(version == 1 || version == 2);
        seen_v2 |= version == 2;
        assert_true(version == 2 || !seen_v2);
        if (strcmp(f[2], "blank") && strcmp(f[2], "null")) {
            struct kv *p = map_get(&proj, f[2], false);
            assert_non_null(p);
            assert_int_equal(p->a, t->a);
        }
        char key[96];
        snprintf(key, sizeof key, "%s/%s", f[0], f[1]);
        struct kv *s = map_get(&sheet, key, true);
        sheets += s->b == 0;
        s->a += votes;
        s->b++;
        assert_true(s->a <= t->b);
        /* Compare a version 2 row with the same row of version 1. */
        if (version == 2) {
            v2 += !strcmp(f[2], "null");
            snprintf(key, sizeof key, "%s/1", f[0]);
            assert_non_null(map_get(&sheet, key, false));
        }
    }
    free(l);
    free(text);
    assert_int_equal(v2, CORRECTIONS);
    assert_int_equal(summary("sheets"), sheets);
    assert_int_equal(summary("corrections"), CORRECTIONS);

    /* The latest version is the truth: blank, null, per table ballots. */
    text = ts_read_file(path_in("sheets.csv"));
    n = lines_of(text, &l);
    struct map latest;
    map_init(&latest, 8192); /* "table/project" -> votes of the latest version, version */
    for (size_t i = 1; i < n; i++) {
        if (!*l[i])
            continue;
        split(l[i], f, 8);
        char key[96];
        snprintf(key, sizeof key, "%s/%s", f[0], f[2]);
        struct kv *k = map_get(&latest, key, true);
        uint64_t version = strtoull(f[1], NULL, 10);
        if (version >= k->b) {
            if (k->b && version > k->b)
                k->flag = strtoull(f[3], NULL, 10) < k->a ? 'L' : 'H';
            k->a = strtoull(f[3], NULL, 10);
            k->b = version;
        }
    }
    free(l);
    free(text);
    uint64_t lower = 0, higher = 0, sheet_votes = 0;
    for (size_t i = 0; i < latest.cap; i++) {
        struct kv *k = &latest.s[i];
        if (!k->used)
            continue;
        lower += k->flag == 'L';
        higher += k->flag == 'H';
        const char *what = strrchr(k->key, '/') + 1;
        if (!strcmp(what, "blank"))
            blank += k->a;
        else if (!strcmp(what, "null"))
            null_ballots += k->a;
        else
            sheet_votes += k->a;
    }
    assert_true(lower == CORRECTIONS && higher >= 1);
    assert_int_equal(summary("blank"), blank);
    assert_int_equal(summary("null"), null_ballots);
    free(latest.s);

    /* The duplicate: one uncorrected version 1 sheet, row for row. */
    char *dup = ts_read_file(path_in("sheets-dup.csv")), *all = ts_read_file(path_in("sheets.csv"));
    assert_non_null(dup);
    assert_true(strncmp(dup, "table_id,version,project_id,votes\n", 34) == 0);
    assert_non_null(strstr(all, dup + 34));
    char dup_table[72];
    snprintf(dup_table, sizeof dup_table, "%.*s/2", (int)strcspn(dup + 34, ","), dup + 34);
    assert_null(map_get(&sheet, dup_table, false));
    free(dup);
    free(all);
    assert_int_equal(summary("sheets_duplicate"), 1);

    /* truth.csv: the accepted votes plus the sheets' project votes; truth-tables.csv: each
     * table's ballots, sheets as their latest total, none over its electors. */
    text = ts_read_file(path_in("truth.csv"));
    n = lines_of(text, &l);
    uint64_t sum = 0;
    for (size_t i = 1; i < n; i++)
        if (*l[i] && split(l[i], f, 8) == 2)
            sum += strtoull(f[1], NULL, 10);
    free(l);
    free(text);
    assert_int_equal(sum, summary("accepted") + sheet_votes);
    text = ts_read_file(path_in("truth-tables.csv"));
    n = lines_of(text, &l);
    assert_string_equal(l[0], "table_id,mode,ballots");
    uint64_t ballots = 0, reported = 0, by_sheet = 0, prev_ok = 1;
    for (size_t i = 1; i < n; i++) {
        if (!*l[i])
            continue;
        prev_ok &= i < 2 || strcmp(l[i - 1], l[i]) < 0;
        assert_int_equal(split(l[i], f, 8), 3);
        struct kv *t = map_get(&table, f[0], false);
        assert_non_null(t);
        uint64_t b = strtoull(f[2], NULL, 10);
        assert_true(b <= t->b);
        ballots += b;
        reported += strcmp(f[1], "none") != 0;
        if (!strcmp(f[1], "sheet")) {
            by_sheet++;
            char key[96];
            snprintf(key, sizeof key, "%s/2", f[0]);
            struct kv *s = map_get(&sheet, key, false);
            if (!s) {
                snprintf(key, sizeof key, "%s/1", f[0]);
                s = map_get(&sheet, key, false);
            }
            assert_non_null(s);
            assert_int_equal(s->a, b);
        }
    }
    free(l);
    free(text);
    assert_true(prev_ok);
    assert_int_equal(by_sheet, 54); /* 30 % of 180 */
    assert_int_equal(ballots, summary("ballots"));
    assert_int_equal(ballots, summary("accepted") + sheet_votes + blank + null_ballots);
    assert_int_equal(reported, summary("tables_reported"));
    free(proj.s);
    free(table.s);
    free(voter.s);
    free(sheet.s);
}

/* ---- into a real tallyd ------------------------------------------------------------------ */

static int ctl(char *a1, char *a2, char *a3, char *a4, char *a5)
{
    char *argv[] = {(char *)ts_prog("tallyctl"), "--db", conninfo, a1, a2, a3, a4, a5, NULL};
    return run(argv);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    dir = ts_workdir("gen_tables");
    snprintf(reg_path, sizeof reg_path, "%s/registry.csv", dir);
    snprintf(tables_path, sizeof tables_path, "%s/tables.csv", dir);
    snprintf(votes_dir, sizeof votes_dir, "%s/votes", dir);
    snprintf(ca, sizeof ca, "%s/ca", dir);
    return gen_all(votes_dir, "11");
}

static int teardown(void **state)
{
    (void)state;
    ts_tallyd_kill(&d);
    ts_cleanup();
    return 0;
}

/* tally-push --sheets FILE over TLS as collector id; stdout in *out, stderr in *err. */
static int push_sheets(const char *id, const char *file, char **out, char **err)
{
    char server[64], spool[1400], cert[1400], key[1400], cafile[1400], errp[1400];
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)d.port);
    snprintf(spool, sizeof spool, "%s/spool-%s", dir, id);
    snprintf(cert, sizeof cert, "%s/%s.crt", ca, id);
    snprintf(key, sizeof key, "%s/%s.key", ca, id);
    snprintf(cafile, sizeof cafile, "%s/ca.crt", ca);
    snprintf(errp, sizeof errp, "%s/sheets-%s.err", dir, id);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--server",
                    server,
                    "--collector",
                    (char *)id,
                    "--spool",
                    spool,
                    "--tls-cert",
                    cert,
                    "--tls-key",
                    key,
                    "--tls-ca",
                    cafile,
                    "--sheets",
                    (char *)file,
                    NULL};
    int rc = ts_run(argv, out, errp, ts_scale(60000));
    *err = ts_read_file(errp);
    if (rc != 0)
        fprintf(stderr, "tally-push --sheets exited %d:\n%s", rc, *err ? *err : "");
    return rc;
}

static uint64_t sql(const char *q)
{
    uint64_t v = UINT64_MAX;
    if (ts_sql_u64(conninfo, q, &v) != 0)
        fail_msg("query failed: %s", q);
    return v;
}

static void loads_into_tallyd(void **state)
{
    (void)state;
    assert_int_equal(ts_db_create("gen_tables", conninfo, sizeof conninfo), 0);
    char *init[] = {(char *)ts_prog("tallyctl"), "ca", "init", ca, NULL};
    assert_int_equal(run(init), 0);
    assert_int_equal(ctl("migrate", NULL, NULL, NULL, NULL), 0);
    assert_int_equal(ctl("load-registry", reg_path, NULL, NULL, NULL), 0);
    assert_int_equal(ctl("load-tables", tables_path, NULL, NULL, NULL), 0);
    char ids[COLLECTORS][8], certs[COLLECTORS][1400];
    for (int i = 0; i < COLLECTORS; i++) {
        snprintf(ids[i], sizeof ids[i], "c%d", i);
        snprintf(certs[i], sizeof certs[i], "%s/c%d.crt", ca, i);
        char *issue[] = {(char *)ts_prog("tallyctl"), "ca", "issue", ca, ids[i], NULL};
        assert_int_equal(run(issue), 0);
        assert_int_equal(ctl("add-collector", ids[i], "--cert", certs[i], NULL), 0);
    }
    memset(&d, 0, sizeof d);
    snprintf(d.conninfo, sizeof d.conninfo, "%s", conninfo);
    snprintf(d.dir, sizeof d.dir, "%s", dir);
    snprintf(d.extra, sizeof d.extra,
             "--tls-cert %.600s/server.crt --tls-key %.600s/server.key --tls-ca %.600s/ca.crt", ca,
             ca, ca);
    d.checkpoint_ms = 100;
    assert_int_equal(ts_tallyd_start(&d, ts_scale(30000)), 0);

    /* The votes from every collector at once, then the sheets: sheets.csv (version 2 after
     * version 1) from c0, the duplicate from the last collector. */
    struct ts_proc p[COLLECTORS];
    char out[COLLECTORS][1400], err[COLLECTORS][1400], cafile[1400];
    snprintf(cafile, sizeof cafile, "%s/ca.crt", ca);
    for (int i = 0; i < COLLECTORS; i++) {
        char file[32], spool[1400], key[1400];
        snprintf(file, sizeof file, "collector-%d.csv", i);
        snprintf(spool, sizeof spool, "%s/spool-c%d", dir, i);
        snprintf(key, sizeof key, "%s/c%d.key", ca, i);
        snprintf(out[i], sizeof out[i], "%s/push-c%d.out", dir, i);
        snprintf(err[i], sizeof err[i], "%s/push-c%d.err", dir, i);
        assert_int_equal(ts_push_spawn_tls(&p[i], &d, ids[i], spool, path_in(file), 1000, certs[i],
                                           key, cafile, out[i], err[i]),
                         0);
    }
    for (int i = 0; i < COLLECTORS; i++) {
        assert_int_equal(ts_proc_wait(&p[i], ts_scale(90000)), 0);
        int code = ts_proc_code(&p[i]);
        if (code != 0 && !(code == 3 && i == COLLECTORS - 1)) {
            ts_dump_tail("tally-push", err[i], 20);
            fail_msg("tally-push c%d exited %d", i, code);
        }
    }
    char *sout = NULL, *serr = NULL;
    assert_int_equal(push_sheets("c0", path_in("sheets.csv"), &sout, &serr), 0);
    uint64_t n_sheets = summary("sheets");
    char want[160];
    snprintf(want, sizeof want, "sheets %llu accepted %llu duplicate 0 rejected 0",
             (unsigned long long)n_sheets, (unsigned long long)n_sheets);
    if (!strstr(sout, want))
        fail_msg("expected '%s' in: %s", want, sout);
    const char *at = serr;
    for (int k = 0; k < CORRECTIONS; k++) {
        at = strstr(at, "version 2 replaces version 1");
        assert_non_null(at);
        at++;
    }
    free(sout);
    free(serr);
    assert_int_equal(push_sheets(ids[COLLECTORS - 1], path_in("sheets-dup.csv"), &sout, &serr), 0);
    assert_non_null(strstr(sout, "sheets 1 accepted 0 duplicate 1 rejected 0"));
    free(sout);
    free(serr);

    /* Results, batches and collectors against the truth. */
    char *res = ts_results_csv(conninfo);
    assert_non_null(res);
    assert_int_equal(ts_csv_compare(res, path_in("truth.csv")), 0);
    free(res);
    uint64_t votes = summary("votes"), acc = summary("accepted"), dup = summary("duplicate"),
             rej = summary("rejected"), sdup = summary("sheets_duplicate");
    assert_int_equal(sql("SELECT coalesce(sum(votes), 0) FROM batches"), votes);
    assert_int_equal(sql("SELECT coalesce(sum(accepted), 0) FROM batches"), acc);
    assert_int_equal(sql("SELECT coalesce(sum(duplicate), 0) FROM batches"), dup);
    assert_int_equal(sql("SELECT coalesce(sum(votes - accepted - duplicate), 0) FROM batches"),
                     rej);
    assert_int_equal(sql("SELECT coalesce(sum(sheets), 0) FROM batches"), n_sheets + sdup);
    assert_int_equal(sql("SELECT coalesce(sum(sheets_accepted), 0) FROM batches"), n_sheets);
    assert_int_equal(sql("SELECT coalesce(sum(sheets_duplicate), 0) FROM batches"), sdup);
    assert_int_equal(sql("SELECT sum(votes) FROM collectors"), votes);
    assert_int_equal(sql("SELECT sum(accepted) FROM collectors"), acc);
    assert_int_equal(sql("SELECT sum(duplicate) FROM collectors"), dup);
    assert_int_equal(sql("SELECT sum(rejected) FROM collectors"), rej);
    assert_int_equal(sql("SELECT sum(sheets) FROM collectors"), n_sheets + sdup);
    assert_int_equal(sql("SELECT sum(sheets_accepted) FROM collectors"), n_sheets);
    assert_int_equal(sql("SELECT sum(sheets_duplicate) FROM collectors"), sdup);
    assert_int_equal(sql("SELECT sum(sheets_rejected) FROM collectors"), 0);
    assert_int_equal(sql("SELECT count(*) FROM corrections WHERE kind = 'sheet'"),
                     summary("corrections"));

    /* Progress: per table, and the national figures. */
    char *got = ts_sql_text(conninfo, "SELECT 'table_id,mode,ballots' || E'\\n' || "
                                      "string_agg(table_id || ',' || mode || ',' || ballots, "
                                      "E'\\n' ORDER BY table_id COLLATE \"C\") || E'\\n' "
                                      "FROM table_progress");
    assert_non_null(got);
    char *truth = ts_read_file(path_in("truth-tables.csv"));
    assert_non_null(truth);
    if (strcmp(got, truth) != 0)
        assert_int_equal(ts_csv_compare(got, path_in("truth-tables.csv")), 0);
    free(got);
    free(truth);
    assert_int_equal(sql("SELECT sum(tables) FROM circuit_progress"), summary("tables"));
    assert_int_equal(sql("SELECT sum(tables_reported) FROM circuit_progress"),
                     summary("tables_reported"));
    assert_int_equal(sql("SELECT sum(electors) FROM circuit_progress"), summary("electors"));
    assert_int_equal(sql("SELECT sum(electors_reported) FROM circuit_progress"),
                     summary("electors_reported"));
    assert_int_equal(sql("SELECT sum(ballots) FROM circuit_progress"), summary("ballots"));
    assert_int_equal(sql("SELECT sum(blank) FROM (SELECT DISTINCT ON (table_id) blank FROM "
                         "sheets ORDER BY table_id, version DESC) s"),
                     summary("blank"));
    assert_int_equal(sql("SELECT sum(null_ballots) FROM (SELECT DISTINCT ON (table_id) "
                         "null_ballots FROM sheets ORDER BY table_id, version DESC) s"),
                     summary("null"));

    /* What the API says of it (the quickstart shows the same). */
    char body[8192];
    assert_int_equal(ts_http_get(d.http_port, "/v1/summary", body, sizeof body, ts_scale(5000)),
                     200);
    snprintf(want, sizeof want, "\"tables_reported\":%llu",
             (unsigned long long)summary("tables_reported"));
    if (!strstr(body, want))
        fail_msg("expected %s in /v1/summary: %s", want, body);
    assert_int_equal(ts_tallyd_stop(&d, ts_scale(30000)), 0);
    char *v = NULL;
    assert_int_equal(ts_ctl(conninfo, &v, "verify", NULL, NULL), 0);
    free(v);
}

/* The same seed, the same files; another seed, other files. */
static void deterministic(void **state)
{
    (void)state;
    char again[1300], other[1300];
    snprintf(again, sizeof again, "%s/again", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    char *saved_reg = ts_read_file(reg_path), *saved_tab = ts_read_file(tables_path);
    assert_int_equal(gen_all(again, "11"), 0);
    char *reg2 = ts_read_file(reg_path), *tab2 = ts_read_file(tables_path);
    assert_string_equal(saved_reg, reg2);
    assert_string_equal(saved_tab, tab2);
    const char *files[] = {"collector-0.csv", "collector-1.csv", "sheets.csv",
                           "sheets-dup.csv",  "truth.csv",       "truth-summary.txt",
                           "truth-tables.csv"};
    char a[1500], b[1500];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", votes_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", again, files[i]);
        char *x = ts_read_file(a), *y = ts_read_file(b);
        assert_non_null(x);
        assert_non_null(y);
        if (strcmp(x, y))
            fail_msg("%s differs between two runs with the same seed", files[i]);
        free(x);
        free(y);
    }
    assert_int_equal(gen_all(other, "12"), 0);
    snprintf(a, sizeof a, "%s/sheets.csv", votes_dir);
    snprintf(b, sizeof b, "%s/sheets.csv", other);
    char *x = ts_read_file(a), *y = ts_read_file(b);
    assert_true(strcmp(x, y) != 0);
    free(x);
    free(y);
    free(saved_reg);
    free(saved_tab);
    free(reg2);
    free(tab2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_hold_together),
        cmocka_unit_test(loads_into_tallyd),
        cmocka_unit_test(deterministic),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
