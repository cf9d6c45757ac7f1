/* Unit tests for ctl_report: the certification's CSV files and report.html, and the
 * export's CSV, JSON and Pabulib writers, fed with structs: ranking through src/rules
 * (min_votes, a tie, a tie decided by lot), HTML escaping and a page with no script and no
 * external reference, CSV quoting, turnout rounding, the embargo's progress-only files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/report.h"

/* Runs a writer into a malloc'd string. */
#define CAPTURE(out, call)                                                                         \
    do {                                                                                           \
        size_t len_;                                                                               \
        FILE *f = open_memstream(&(out), &len_);                                                   \
        assert_non_null(f);                                                                        \
        assert_int_equal((call), 0);                                                               \
        assert_int_equal(fclose(f), 0);                                                            \
    } while (0)

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* Circuit 1 (Lara, 1 seat): 101 40, 102 3 (min 5: ineligible), 103 40 — a tie.
 * Circuit 2 (Zulia, 2 seats): 201 "Agua, \"pura\" <y> & luz" 7, 202 0. */
struct fixture {
    struct ctl_rep_project p1[3], p2[2];
    struct ctl_rep_circuit c[2];
    struct ctl_rep_correction corr[1];
    uint32_t corr_ids[2];
    int64_t corr_deltas[2];
    struct ctl_report r;
};

static void fixture_init(struct fixture *x, bool lot)
{
    memset(x, 0, sizeof(*x));
    x->p1[0] = (struct ctl_rep_project){.id = 103, .name = "Escuela", .votes = 40};
    x->p1[1] = (struct ctl_rep_project){.id = 102, .name = "Luz", .votes = 3, .min_votes = 5};
    x->p1[2] = (struct ctl_rep_project){.id = 101, .name = "Agua", .votes = 40};
    x->p2[0] = (struct ctl_rep_project){.id = 202, .name = "Parque", .votes = 0};
    x->p2[1] = (struct ctl_rep_project){.id = 201, .name = "Agua, \"pura\" <y> & luz", .votes = 7};
    x->c[0] = (struct ctl_rep_circuit){.id = 1,
                                       .name = "Uno",
                                       .state = "Lara",
                                       .seats = 1,
                                       .tables = 2,
                                       .tables_reported = 2,
                                       .electors = 150,
                                       .electors_reported = 150,
                                       .ballots = 83,
                                       .remaining = 0,
                                       .projects = x->p1,
                                       .n_projects = 3};
    x->c[1] = (struct ctl_rep_circuit){.id = 2,
                                       .name = "Dos <b>",
                                       .state = "Zulia",
                                       .seats = 2,
                                       .tables = 1,
                                       .tables_reported = 0,
                                       .electors = 80,
                                       .electors_reported = 0,
                                       .ballots = 0,
                                       .remaining = 0,
                                       .projects = x->p2,
                                       .n_projects = 2};
    x->corr_ids[0] = 101;
    x->corr_ids[1] = 103;
    x->corr_deltas[0] = -4;
    x->corr_deltas[1] = -1;
    x->corr[0] = (struct ctl_rep_correction){.id = 1,
                                             .checkpoint_id = 7,
                                             .retract = true,
                                             .actor = "junta <nacional>",
                                             .reason = "lote duplicado & err\xc3\xb3neo",
                                             .at_us = 1700000000000000LL,
                                             .collector_id = "c0",
                                             .seq = 17,
                                             .project_ids = x->corr_ids,
                                             .deltas = x->corr_deltas,
                                             .n_deltas = 2,
                                             .ballots_delta = -5};
    x->r = (struct ctl_report){.consultation = "Consulta <Popular> & \"Nacional\"",
                               .instance = "default",
                               .country = "Venezuela",
                               .official = true,
                               .checkpoint = 9,
                               .certified_us = 1700000100000000LL,
                               .certified_by = "auditor's",
                               .has_lot = lot,
                               .use_lot = lot,
                               .seed = lot ? seed : NULL,
                               .seed_len = lot ? sizeof(seed) : 0,
                               .circuits = x->c,
                               .n_circuits = 2,
                               .corrections = x->corr,
                               .n_corrections = 1};
    for (int i = 0; i < 32; i++) {
        x->r.head[i] = (uint8_t)i;
        x->r.seed_hash[i] = 0xab;
    }
    ctl_report_finish(&x->r);
}

static void test_html_escape(void **state)
{
    (void)state;
    char *out = NULL;
    CAPTURE(out, (ctl_html_escape(f, "<a href=\"x\">Tom & Jerry's</a>"), 0));
    assert_string_equal(out, "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
    free(out);
}

static void test_csv_field(void **state)
{
    (void)state;
    char *out = NULL;
    CAPTURE(out, (ctl_csv_field(f, "plain", ','), fputc('|', f), ctl_csv_field(f, "a,b", ','),
                  fputc('|', f), ctl_csv_field(f, "say \"hi\"", ','), fputc('|', f),
                  ctl_csv_field(f, "a;b", ';'), fputc('|', f), ctl_csv_field(f, "a,b", ';'),
                  fputc('|', f), ctl_csv_field(f, "two\nlines", ','), 0));
    assert_string_equal(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"a;b\"|a,b|\"two\nlines\"");
    free(out);
}

static void test_turnout(void **state)
{
    (void)state;
    char t[32];
    ctl_turnout_text(83, 150, t);
    assert_string_equal(t, "0.5533"); /* 0.55333 */
    ctl_turnout_text(1, 3, t);
    assert_string_equal(t, "0.3333");
    ctl_turnout_text(2, 3, t);
    assert_string_equal(t, "0.6667");
    ctl_turnout_text(1, 20000, t);
    assert_string_equal(t, "0.0001"); /* 0.00005 rounds half up */
    ctl_turnout_text(5, 5, t);
    assert_string_equal(t, "1.0000");
    ctl_turnout_text(0, 0, t);
    assert_string_equal(t, "");
}

/* Without a tie rule the tie stays: no winner in circuit 1. */
static void test_certification_csv_tie(void **state)
{
    (void)state;
    struct fixture x;
    fixture_init(&x, false);
    char *out = NULL;
    CAPTURE(out, ctl_report_projects_csv(f, &x.r));
    assert_string_equal(out,
                        "project_id,project_name,circuit_id,state,votes,rank,winner,tie,by_lot\n"
                        "101,Agua,1,Lara,40,1,false,true,false\n"
                        "103,Escuela,1,Lara,40,1,false,true,false\n"
                        "102,Luz,1,Lara,3,3,false,false,false\n"
                        "201,\"Agua, \"\"pura\"\" <y> & luz\",2,Zulia,7,1,true,false,false\n"
                        "202,Parque,2,Zulia,0,2,false,false,false\n");
    free(out);
    CAPTURE(out, ctl_report_circuits_csv(f, &x.r));
    assert_string_equal(out, "circuit_id,circuit_name,state,seats,tables,tables_reported,electors,"
                             "ballots,turnout,winners,tie\n"
                             "1,Uno,Lara,1,2,2,150,83,0.5533,0,true\n"
                             "2,Dos <b>,Zulia,2,1,0,80,0,,1,false\n");
    free(out);
    CAPTURE(out, ctl_report_states_csv(f, &x.r));
    assert_string_equal(out, "state,circuits,tables,tables_reported,electors,ballots,turnout\n"
                             "Lara,1,2,2,150,83,0.5533\n"
                             "Zulia,1,1,0,80,0,\n");
    free(out);
    ctl_report_cleanup(&x.r);
}

/* With the seed the tie on the last seat goes by lot: the lower BLAKE2b(seed || id). */
static void test_certification_lot(void **state)
{
    (void)state;
    struct fixture x;
    fixture_init(&x, true);
    struct rules_lot lot = {seed, sizeof(seed)};
    uint8_t k101[32], k103[32];
    rules_lot_key(&lot, 101, k101);
    rules_lot_key(&lot, 103, k103);
    uint32_t first = memcmp(k101, k103, 32) < 0 ? 101 : 103;
    const struct ctl_rep_circuit *c = &x.r.circuits[0];
    assert_int_equal(c->projects[0].id, first);
    assert_true(c->projects[0].out.winner);
    assert_true(c->projects[0].out.by_lot);
    assert_true(c->projects[0].out.tie);
    assert_false(c->projects[1].out.winner);
    assert_true(c->projects[1].out.tie);
    assert_int_equal(c->res.winners, 1);
    assert_true(c->res.tie);
    char *out = NULL;
    CAPTURE(out, ctl_report_projects_csv(f, &x.r));
    char want[128];
    snprintf(want, sizeof(want), "\n%u,%s,1,Lara,40,1,true,true,true\n", first,
             first == 101 ? "Agua" : "Escuela");
    assert_non_null(strstr(out, want));
    free(out);
    ctl_report_cleanup(&x.r);
}

static void test_report_html(void **state)
{
    (void)state;
    struct fixture x;
    fixture_init(&x, true);
    char *out = NULL;
    CAPTURE(out, ctl_report_html(f, &x.r));
    /* Self-contained: no script, no external reference of any kind. */
    assert_null(strstr(out, "<script"));
    assert_null(strstr(out, "http"));
    assert_null(strstr(out, "src="));
    assert_null(strstr(out, "href"));
    assert_null(strstr(out, "url("));
    assert_null(strstr(out, "@import"));
    assert_non_null(strstr(out, "@media print"));
    assert_non_null(strstr(out, "<html lang=\"es\">"));
    assert_non_null(strstr(out, "Resultados oficiales"));
    /* Every name escaped. */
    assert_non_null(strstr(out, "Consulta &lt;Popular&gt; &amp; &quot;Nacional&quot;"));
    assert_null(strstr(out, "<Popular>"));
    assert_non_null(strstr(out, "Agua, &quot;pura&quot; &lt;y&gt; &amp; luz"));
    assert_non_null(strstr(out, "Dos &lt;b&gt;"));
    assert_non_null(strstr(out, "junta &lt;nacional&gt;"));
    assert_non_null(strstr(out, "lote duplicado &amp; err\xc3\xb3neo"));
    assert_non_null(strstr(out, "auditor&#39;s"));
    /* The head, the seed's hash and the seed revealed. */
    assert_non_null(strstr(out, "000102030405060708090a0b0c0d0e0f"
                                "101112131415161718191a1b1c1d1e1f"));
    assert_non_null(strstr(out, "abababababababababababababababababababababababababababababab"
                                "abab"));
    assert_non_null(strstr(out, "0102030405060708090a0b0c0d0e0f10"));
    assert_non_null(strstr(out, "decidido por sorteo"));
    assert_non_null(strstr(out, "punto de control 9"));
    /* The correction: time, kind, batch, deltas. */
    assert_non_null(strstr(out, "2023-11-14 22:13:20 UTC"));
    assert_non_null(strstr(out, "Retiro de un lote"));
    assert_non_null(strstr(out, "Lote c0/17"));
    assert_non_null(strstr(out, "101: -4; 103: -1; papeletas: -5"));
    assert_non_null(strstr(out, "55,33 %"));
    assert_string_equal(out + strlen(out) - 8, "</html>\n");
    free(out);
    ctl_report_cleanup(&x.r);
}

static void test_export_csv_json(void **state)
{
    (void)state;
    struct fixture x;
    fixture_init(&x, false);
    x.r.official = false;
    char *out = NULL;
    const char *head = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    CAPTURE(out, ctl_export_circuit_csv(f, &x.r, 1));
    char want[1024];
    snprintf(want, sizeof(want),
             "status,head,checkpoint,circuit_id,circuit_name,state,seats,tables,tables_reported,"
             "electors,ballots,turnout,project_id,project_name,votes,rank,winner,tie,by_lot\n"
             "provisional,%s,9,2,Dos <b>,Zulia,2,1,0,80,0,,201,\"Agua, \"\"pura\"\" <y> & luz\","
             "7,1,true,false,false\n"
             "provisional,%s,9,2,Dos <b>,Zulia,2,1,0,80,0,,202,Parque,0,2,false,false,false\n",
             head, head);
    assert_string_equal(out, want);
    free(out);
    CAPTURE(out, ctl_export_circuit_json(f, &x.r, 0));
    assert_non_null(strstr(out, "\"status\": \"provisional\""));
    assert_non_null(strstr(out, "\"turnout\": 0.5533"));
    assert_non_null(strstr(out, "{\"id\": 102, \"name\": \"Luz\", \"votes\": 3, \"min_votes\": 5, "
                                "\"rank\": 3, \"eligible\": false"));
    free(out);

    /* Under the embargo: progress only. */
    x.r.embargo = true;
    CAPTURE(out, ctl_export_circuit_csv(f, &x.r, 0));
    snprintf(want, sizeof(want),
             "status,head,checkpoint,circuit_id,circuit_name,state,seats,tables,tables_reported,"
             "electors,ballots,turnout\nprovisional,%s,9,1,Uno,Lara,1,2,2,150,83,0.5533\n",
             head);
    assert_string_equal(out, want);
    free(out);
    CAPTURE(out, ctl_export_index_json(f, &x.r, "json"));
    assert_null(strstr(out, "votes"));
    assert_null(strstr(out, "winners"));
    assert_null(strstr(out, "decided"));
    assert_non_null(strstr(out, "\"file\": \"circuit-2.json\""));
    assert_non_null(strstr(out, "\"embargo\": true"));
    free(out);
    CAPTURE(out, ctl_export_index_csv(f, &x.r, "csv"));
    assert_null(strstr(out, "winners"));
    assert_non_null(strstr(out, ",circuit-1.csv\n"));
    free(out);
    ctl_report_cleanup(&x.r);
}

static void test_export_pabulib(void **state)
{
    (void)state;
    struct fixture x;
    fixture_init(&x, false);
    x.r.official = false;
    for (size_t k = 0; k < 3; k++) /* 40 + 2 + 40 vote lines (ranks stay as they were) */
        if (x.p1[k].id == 102)
            x.p1[k].votes = 2;
    char *out = NULL;
    CAPTURE(out, ctl_export_circuit_pabulib(f, &x.r, 1, NULL, NULL));
    assert_string_equal(out, "META\nkey;value\n"
                             "description;\"Consulta <Popular> & \"\"Nacional\"\"\"\n"
                             "country;Venezuela\nunit;2 Dos <b>\ninstance;default\n"
                             "num_projects;2\nnum_votes;7\nbudget;2\nvote_type;choose-1\n"
                             "rule;greedy\n"
                             "comment;#1: provisional results, chain head "
                             "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                             " at checkpoint 9 (tallyctl export)\n"
                             "PROJECTS\nproject_id;cost;votes;name\n"
                             "201;1;7;\"Agua, \"\"pura\"\" <y> & luz\"\n"
                             "202;1;0;Parque\n"
                             "VOTES\nvoter_id;vote\n"
                             "1;201\n2;201\n3;201\n4;201\n5;201\n6;201\n7;201\n");
    free(out);
    CAPTURE(out, ctl_export_circuit_pabulib(f, &x.r, 0, NULL, NULL));
    assert_non_null(strstr(out, "num_votes;82\n"));
    assert_non_null(strstr(out, "\n1;101\n"));
    assert_non_null(strstr(out, "\n41;102\n42;102\n43;103\n"));
    assert_non_null(strstr(out, "\n82;103\n"));
    free(out);

    x.r.embargo = true;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    assert_int_equal(ctl_export_circuit_pabulib(f, &x.r, 0, NULL, NULL), -1);
    fclose(f);
    assert_int_equal(len, 0);
    free(out);
    ctl_report_cleanup(&x.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_escape),       cmocka_unit_test(test_csv_field),
        cmocka_unit_test(test_turnout),           cmocka_unit_test(test_certification_csv_tie),
        cmocka_unit_test(test_certification_lot), cmocka_unit_test(test_report_html),
        cmocka_unit_test(test_export_csv_json),   cmocka_unit_test(test_export_pabulib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
