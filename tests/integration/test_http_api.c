/* The HTTP API of a real tallyd over PostgreSQL: after two collectors push votes it has
 * never seen, /v1/results equals `tallyctl results` and the generator's truth for every
 * project (names and circuits equal the registry, winners are marked), /metrics counts the
 * accepted votes, /v1/events streams a checkpoint event with data: lines and resumes with
 * Last-Event-ID, and /readyz answers 200. Reporting progress (docs/api.md): without voting
 * tables every figure is 0 and turnout null; with tables loaded, tally sheets pushed by
 * `tally-push --sheets` (version 2 replacing version 1: a correction) and per-ballot votes
 * naming a table, /v1/summary, /v1/states, /v1/circuits, /v1/corrections and /metrics show
 * the tables reported, electors, turnout, decided and the correction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define COLLECTORS 2

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "http_api", 400, 60, COLLECTORS, 30000, "0.02", "0.001", 0, 41))
        return -1;
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, false);
    return 0;
}

/* ---- HTTP helpers ------------------------------------------------------------------------- */

#define BODY_MAX (8u << 20)

/* GET path; the body in a malloc'd string (NULL on failure), the status returned. */
static int get(const char *path, char **body)
{
    char *b = malloc(BODY_MAX);
    assert_non_null(b);
    int status = ts_http_get(tc.d.http_port, path, b, BODY_MAX, ts_scale(10000));
    *body = b;
    return status;
}

/* ---- RFC 4180 ------------------------------------------------------------------------------ */

/* Splits one record starting at *p into at most max fields (malloc'd, unquoted); advances
 * *p past its line end. Returns the field count, 0 at the end of the text. */
static size_t csv_record(const char **p, char **fields, size_t max)
{
    const char *s = *p;
    if (!*s)
        return 0;
    size_t n = 0;
    for (;;) {
        char *f = malloc(strlen(s) + 1);
        assert_non_null(f);
        size_t k = 0;
        if (*s == '"') {
            for (s++;; s++) {
                if (!*s)
                    fail_msg("csv: unterminated quoted field");
                if (*s == '"' && s[1] == '"')
                    f[k++] = *s++;
                else if (*s == '"')
                    break;
                else
                    f[k++] = *s;
            }
            s++;
        } else {
            while (*s && *s != ',' && *s != '\r' && *s != '\n')
                f[k++] = *s++;
        }
        f[k] = '\0';
        assert_true(n < max);
        fields[n++] = f;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '\r')
            s++;
        if (*s == '\n')
            s++;
        else if (*s)
            fail_msg("csv: junk after a field: %.20s", s);
        break;
    }
    *p = s;
    return n;
}

static void csv_free(char **fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(fields[i]);
}

/* ---- the event stream ------------------------------------------------------------------------ */

static void sse_open(struct ts_sse *s, const char *last_event_id)
{
    assert_int_equal(ts_sse_open(s, tc.d.http_port, last_event_id), 0);
}

static uint64_t json_u64(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(json, k);
    return p ? strtoull(p + strlen(k), NULL, 10) : UINT64_MAX;
}

/* ---- the test ------------------------------------------------------------------------------ */

/* One collector after the other, each until durable: at least one checkpoint each. */
static void push_all(void)
{
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        struct ts_proc p;
        assert_int_equal(ts_case_push(&tc, &p, i, 0), 0);
        if (ts_proc_wait(&p, ts_scale(60000)) != 0) {
            ts_proc_kill(&p);
            fail_msg("tally-push c%u did not finish within 60 s", i);
        }
        assert_int_equal(ts_proc_code(&p), 0);
    }
}

static void test_api_matches_truth(void **state)
{
    (void)state;
    char *body;

    assert_int_equal(get("/readyz", &body), 200);
    free(body);

    /* A subscriber from before the votes: its first event is the snapshot. */
    struct ts_sse s;
    struct ts_sse_event e;
    sse_open(&s, NULL);
    assert_true(ts_sse_next(&s, &e, ts_scale(5000)));
    assert_string_equal(e.kind, "snapshot");
    assert_non_null(e.data);
    uint64_t start_id = e.id;
    free(e.data);

    push_all();

    /* tally-push exits once all is durable; the snapshot follows the same COMMIT. */
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    uint64_t accepted = 0;
    while (ts_now_ms() < deadline) {
        assert_int_equal(get("/v1/summary", &body), 200);
        accepted = json_u64(body, "accepted");
        free(body);
        if (accepted == tc.truth.accepted)
            break;
        ts_sleep_ms(100);
    }
    assert_int_equal(accepted, tc.truth.accepted);

    /* The stream delivered checkpoint events with data: lines; the last one carries the
     * final totals. */
    uint64_t first_cp = 0, last_cp = 0, last_accepted = 0;
    size_t checkpoints = 0;
    while (ts_sse_next(&s, &e, last_accepted == tc.truth.accepted ? 300 : ts_scale(5000))) {
        assert_string_equal(e.kind, "checkpoint");
        assert_non_null(e.data);
        assert_true(e.id > start_id);
        if (!first_cp)
            first_cp = e.id;
        last_cp = e.id;
        last_accepted = json_u64(e.data, "accepted");
        assert_non_null(strstr(e.data, "\"changed\":["));
        checkpoints++;
        free(e.data);
    }
    fprintf(stderr, "event stream: %zu checkpoint events, ids %" PRIu64 "..%" PRIu64 "\n",
            checkpoints, first_cp, last_cp);
    assert_true(checkpoints >= COLLECTORS);
    assert_int_equal(last_accepted, tc.truth.accepted);
    ts_sse_close(&s);

    /* Resuming after the first checkpoint replays the rest, ending at the same totals. */
    {
        char id[32];
        snprintf(id, sizeof(id), "%" PRIu64, first_cp);
        sse_open(&s, id);
        size_t replayed = 0;
        uint64_t replay_accepted = 0, prev = first_cp;
        while (ts_sse_next(&s, &e, 500)) {
            assert_string_equal(e.kind, "checkpoint");
            assert_true(e.id > prev);
            prev = e.id;
            replay_accepted = json_u64(e.data, "accepted");
            replayed++;
            free(e.data);
        }
        assert_int_equal(replayed, checkpoints - 1);
        assert_int_equal(prev, last_cp);
        assert_int_equal(replay_accepted, tc.truth.accepted);
        ts_sse_close(&s);
    }

    /* /v1/results as CSV: every project, the truth's votes, the registry's names. */
    char *ctl = ts_results_csv(tc.conninfo);
    assert_non_null(ctl);
    assert_int_equal(ts_csv_compare(ctl, tc.truth_csv), 0);
    free(ctl);

    assert_int_equal(get("/v1/results?format=csv", &body), 200);
    char *registry = ts_read_file(tc.registry);
    assert_non_null(registry);
    const char *rp = registry, *ap = body;
    char *rf[8], *af[12];
    size_t rn = csv_record(&rp, rf, 8), an = csv_record(&ap, af, 12);
    assert_int_equal(an, 9);
    assert_string_equal(af[0], "project_id");
    assert_string_equal(af[5], "votes");
    csv_free(rf, rn);
    csv_free(af, an);
    /* The API is ordered by id; so is the truth; the registry is not: index it. */
    size_t cap = 1024, n_reg = 0;
    char **reg = malloc(cap * sizeof(char *) * 6);
    assert_non_null(reg);
    while ((rn = csv_record(&rp, rf, 8)) > 0) {
        assert_int_equal(rn, 6);
        if (n_reg == cap) {
            cap *= 2;
            reg = realloc(reg, cap * sizeof(char *) * 6);
            assert_non_null(reg);
        }
        memcpy(&reg[n_reg * 6], rf, 6 * sizeof(char *));
        n_reg++;
    }
    size_t cap_text = strlen(body) + 64, used = 0, rows = 0, winners = 0;
    char *as_truth = malloc(cap_text);
    assert_non_null(as_truth);
    used += (size_t)snprintf(as_truth, cap_text, "project_id,votes\n");
    while ((an = csv_record(&ap, af, 12)) > 0) {
        assert_int_equal(an, 9);
        used += (size_t)snprintf(as_truth + used, cap_text - used, "%s,%s\n", af[0], af[5]);
        const char *const *r = NULL;
        for (size_t i = 0; i < n_reg && !r; i++)
            if (strcmp(reg[i * 6], af[0]) == 0)
                r = (const char *const *)&reg[i * 6];
        if (!r)
            fail_msg("project %s is not in the registry", af[0]);
        /* project_name, circuit_id, circuit_name, state round-trip through RFC 4180. */
        assert_string_equal(af[1], r[1]);
        assert_string_equal(af[2], r[2]);
        assert_string_equal(af[3], r[3]);
        assert_string_equal(af[4], r[4]);
        winners += strcmp(af[7], "true") == 0;
        rows++;
        csv_free(af, an);
    }
    assert_int_equal(rows, n_reg);
    assert_true(winners > 0);
    assert_int_equal(ts_csv_compare(as_truth, tc.truth_csv), 0);
    free(as_truth);
    free(body);

    /* /v1/results as JSON: the same votes for every project. */
    assert_int_equal(get("/v1/results", &body), 200);
    char *truth = ts_read_file(tc.truth_csv);
    assert_non_null(truth);
    size_t checked = 0;
    for (char *line = strtok(truth, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long id, votes;
        if (sscanf(line, "%llu,%llu", &id, &votes) != 2)
            continue;
        char key[48];
        snprintf(key, sizeof(key), "{\"id\":%llu,", id);
        const char *o = strstr(body, key);
        if (!o)
            fail_msg("project %llu missing from /v1/results", id);
        const char *v = strstr(o, "\"votes\":");
        assert_non_null(v);
        assert_true(v < strchr(o, '}'));
        assert_int_equal(strtoull(v + 8, NULL, 10), votes);
        checked++;
    }
    assert_int_equal(checked, n_reg);
    free(truth);
    free(body);
    for (size_t i = 0; i < n_reg * 6; i++)
        free(reg[i]);
    free(reg);
    free(registry);

    /* /metrics: the accepted, duplicate and rejected votes. */
    assert_int_equal(get("/metrics", &body), 200);
    assert_true(ts_metric(body, "tally_votes_accepted_total") == (double)tc.truth.accepted);
    assert_true(ts_metric(body, "tally_votes_duplicate_total") == (double)tc.truth.duplicate);
    assert_true(ts_metric(body, "tally_votes_rejected_total{reason=\"unknown_project\"}") ==
                (double)tc.truth.rejected);
    assert_true(ts_metric(body, "tally_last_checkpoint_id") >= (double)last_cp);
    assert_true(ts_metric(body, "tally_checkpoint_duration_seconds_count") >= (double)checkpoints);
    free(body);

    /* Circuits and collectors answer, and /readyz still says ready. No voting tables: the
     * progress is all zeros, turnout null, nothing decided, nothing corrected. */
    assert_int_equal(get("/v1/circuits", &body), 200);
    assert_non_null(strstr(body, "\"winners\":["));
    assert_non_null(strstr(body, "\"decided\":false,\"progress\":{\"tables\":0,"));
    assert_non_null(strstr(body, "\"corrected_at\":null"));
    assert_null(strstr(body, "\"decided\":true"));
    free(body);
    assert_int_equal(get("/v1/summary", &body), 200);
    assert_non_null(strstr(body, "\"progress\":{\"tables\":0,\"tables_reported\":0,"
                                 "\"electors\":0,\"electors_reported\":0,\"ballots\":0,"
                                 "\"turnout\":null,\"blank\":0,\"null\":0,"
                                 "\"circuits_decided\":0}"));
    free(body);
    assert_int_equal(get("/v1/states", &body), 200);
    assert_non_null(strstr(body, "\"progress\":{\"tables\":0,"));
    free(body);
    assert_int_equal(get("/v1/corrections", &body), 200);
    assert_non_null(strstr(body, "\"count\":0,\"corrections\":[]"));
    free(body);
    assert_int_equal(get("/metrics", &body), 200);
    assert_true(ts_metric(body, "tally_tables_expected") == 0);
    assert_true(ts_metric(body, "tally_tables_reported") == 0);
    assert_true(ts_metric(body, "tally_circuits_decided") == 0);
    free(body);
    assert_int_equal(get("/v1/collectors", &body), 200);
    assert_non_null(strstr(body, "{\"id\":\"c0\","));
    assert_non_null(strstr(body, "{\"id\":\"c1\","));
    free(body);
    assert_int_equal(get("/readyz", &body), 200);
    free(body);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

/* ---- reporting progress with voting tables ------------------------------------------------ */

static const char pr_registry[] =
    "project_id,project_name,circuit_id,circuit_name,state,seats,min_votes\n"
    "101,Agua,1,Uno,Lara,1,0\n"
    "102,Luz,1,Uno,Lara,1,0\n"
    "103,Vialidad,1,Uno,Lara,1,10\n"
    "201,Escuela,2,Dos,Zulia,1,0\n"
    "202,Cancha,2,Dos,Zulia,1,0\n"
    "301,Puente,3,Tres,Zulia,1,0\n";

/* T1 and T2 report circuit 1 by sheet, T3 of circuit 2 by per-ballot votes; circuit 3 has
 * no table. */
static const char pr_tables[] = "table_id,circuit_id,electors\n"
                                "T1,1,100\n"
                                "T2,1,50\n"
                                "T3,2,80\n";

static const char pr_sheets_v1[] = "table_id,version,project_id,votes\n"
                                   "T1,1,101,60\n"
                                   "T1,1,102,20\n"
                                   "T1,1,blank,5\n"
                                   "T1,1,null,5\n"
                                   "T2,1,101,10\n"
                                   "T2,1,102,10\n";

static const char pr_sheets_v2[] = "table_id,version,project_id,votes\n"
                                   "T1,2,101,50\n"
                                   "T1,2,102,30\n"
                                   "T1,2,blank,5\n"
                                   "T1,2,null,5\n";

static const char pr_votes[] = "v1,201,T3\nv2,201,T3\nv3,202,T3\nv4,201,T3\nv5,201,T3\n";

static struct ts_tallyd pr_d;

static int pr_get(const char *path, char **body)
{
    char *b = malloc(BODY_MAX);
    assert_non_null(b);
    int status = ts_http_get(pr_d.http_port, path, b, BODY_MAX, ts_scale(10000));
    *body = b;
    return status;
}

/* tally-push for a collector (its own spool: sheets and votes need one each) with one or
 * two more arguments (a2 may be NULL), to completion. */
static void pr_push(const char *dir, const char *collector, const char *tag, const char *a1,
                    const char *a2)
{
    char server[64], spool[1200], out[1200], err[1200];
    snprintf(server, sizeof server, "127.0.0.1:%u", pr_d.port);
    snprintf(spool, sizeof spool, "%s/spool-%s", dir, collector);
    snprintf(out, sizeof out, "%s/push-%s.out", dir, tag);
    snprintf(err, sizeof err, "%s/push-%s.err", dir, tag);
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
    struct ts_proc p;
    assert_int_equal(ts_spawn(&p, tag, argv, out, err), 0);
    if (ts_proc_wait(&p, ts_scale(30000)) != 0)
        ts_proc_kill(&p);
    int code = ts_proc_code(&p);
    if (code != 0) {
        ts_dump_tail("tally-push", err, 20);
        fail_msg("tally-push %s exited %d", tag, code);
    }
}

/* Polls path until its body holds want (a checkpoint may land just after the ack). */
static char *pr_wait_for(const char *path, const char *want)
{
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    for (;;) {
        char *body;
        assert_int_equal(pr_get(path, &body), 200);
        if (strstr(body, want))
            return body;
        if (ts_now_ms() > deadline)
            fail_msg("%s: no %s within 10 s in %.600s", path, want, body);
        free(body);
        ts_sleep_ms(50);
    }
}

static void test_progress_with_tables(void **state)
{
    (void)state;
    const char *dir = ts_workdir("http_progress");
    char reg[1200], tab[1200], sh1[1200], sh2[1200], votes[1200], conninfo[512];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(tab, sizeof tab, "%s/tables.csv", dir);
    snprintf(sh1, sizeof sh1, "%s/sheets-v1.csv", dir);
    snprintf(sh2, sizeof sh2, "%s/sheets-v2.csv", dir);
    snprintf(votes, sizeof votes, "%s/votes.csv", dir);
    assert_int_equal(ts_write_file(reg, pr_registry), 0);
    assert_int_equal(ts_write_file(tab, pr_tables), 0);
    assert_int_equal(ts_write_file(sh1, pr_sheets_v1), 0);
    assert_int_equal(ts_write_file(sh2, pr_sheets_v2), 0);
    assert_int_equal(ts_write_file(votes, pr_votes), 0);
    assert_int_equal(ts_db_create("http_progress", conninfo, sizeof conninfo), 0);
    assert_int_equal(ts_db_prepare(conninfo, reg, 2), 0);
    assert_int_equal(ts_ctl(conninfo, NULL, "load-tables", tab, NULL), 0);
    memset(&pr_d, 0, sizeof pr_d);
    snprintf(pr_d.conninfo, sizeof pr_d.conninfo, "%s", conninfo);
    snprintf(pr_d.dir, sizeof pr_d.dir, "%s", dir);
    pr_d.checkpoint_ms = 50;
    assert_int_equal(ts_tallyd_start(&pr_d, ts_scale(20000)), 0);

    /* Tables loaded, none reported. */
    char *body;
    assert_int_equal(pr_get("/v1/summary", &body), 200);
    assert_non_null(strstr(body, "\"progress\":{\"tables\":3,\"tables_reported\":0,"
                                 "\"electors\":230,\"electors_reported\":0,\"ballots\":0,"
                                 "\"turnout\":null,"));
    free(body);

    /* Circuit 1 by sheets (all its tables: decided), circuit 2 by per-ballot votes. */
    pr_push(dir, "c0", "sheets-v1", "--sheets", sh1);
    pr_push(dir, "c1", "votes", votes, NULL);
    body = pr_wait_for("/v1/summary", "\"tables_reported\":3,");
    assert_non_null(strstr(body, "\"progress\":{\"tables\":3,\"tables_reported\":3,"
                                 "\"electors\":230,\"electors_reported\":230,\"ballots\":115,"
                                 "\"turnout\":0.5000,\"blank\":5,\"null\":5,"
                                 "\"circuits_decided\":1}"));
    free(body);
    assert_int_equal(pr_get("/v1/circuits/1", &body), 200);
    assert_non_null(strstr(body, "\"winners\":[101]"));
    assert_non_null(strstr(body, "\"decided\":true,\"progress\":{\"tables\":2,"
                                 "\"tables_reported\":2,\"electors\":150,"
                                 "\"electors_reported\":150,\"ballots\":110,"
                                 "\"turnout\":0.7333,\"blank\":5,\"null\":5},"
                                 "\"corrected_at\":null"));
    assert_non_null(strstr(body, "\"min_votes\":10,\"eligible\":false"));
    free(body);
    /* Circuit 2: 75 electors of T3 may still vote: 201 (4) against 202 (1) is open. */
    assert_int_equal(pr_get("/v1/circuits/2", &body), 200);
    assert_non_null(strstr(body, "\"decided\":false,\"progress\":{\"tables\":1,"
                                 "\"tables_reported\":1,\"electors\":80,"
                                 "\"electors_reported\":80,\"ballots\":5,"));
    free(body);
    assert_int_equal(pr_get("/v1/circuits/3", &body), 200);
    assert_non_null(strstr(body, "\"decided\":false,\"progress\":{\"tables\":0,"));
    free(body);
    assert_int_equal(pr_get("/v1/states", &body), 200);
    assert_non_null(strstr(body, "{\"name\":\"Lara\",\"circuits\":1,"));
    assert_non_null(strstr(body, "\"tables\":1,\"tables_reported\":1,\"electors\":80,"));
    free(body);

    /* Version 2 of T1 replaces version 1: a correction, shown in /v1/corrections and as
     * corrected_at on circuit 1. */
    pr_push(dir, "c0", "sheets-v2", "--sheets", sh2);
    body = pr_wait_for("/v1/corrections", "\"count\":1,");
    assert_non_null(strstr(body, "\"kind\":\"sheet\",\"actor\":\"c0\",\"reason\":"
                                 "\"sheet version 2 replaces version 1\",\"at\":\""));
    assert_non_null(strstr(body, "\"table\":\"T1\",\"collector\":\"c0\",\"seq\":"));
    assert_non_null(strstr(body, "\"from_version\":1,\"to_version\":2,\"circuits\":[1],"
                                 "\"deltas\":[{\"project\":101,\"delta\":-10},"
                                 "{\"project\":102,\"delta\":10}],\"blank_delta\":0,"
                                 "\"null_delta\":0,\"ballots_delta\":0}"));
    free(body);
    assert_int_equal(pr_get("/v1/circuits", &body), 200);
    const char *c1 = strstr(body, "{\"id\":1,"), *c2 = strstr(body, "{\"id\":2,");
    assert_true(c1 && c2 && c1 < c2);
    const char *at = strstr(c1, "\"corrected_at\":");
    assert_true(at && at < c2 && at[15] == '"');
    assert_non_null(strstr(c2, "\"corrected_at\":null"));
    free(body);

    assert_int_equal(pr_get("/metrics", &body), 200);
    assert_true(ts_metric(body, "tally_tables_expected") == 3);
    assert_true(ts_metric(body, "tally_tables_reported") == 3);
    assert_true(ts_metric(body, "tally_electors_reported") == 230);
    assert_true(ts_metric(body, "tally_ballots_reported") == 115);
    assert_true(ts_metric(body, "tally_blank_ballots") == 5);
    assert_true(ts_metric(body, "tally_null_ballots") == 5);
    assert_true(ts_metric(body, "tally_circuits_decided") == 1);
    free(body);

    /* All of it comes back after a restart (recovered tables, sheets and corrections). */
    assert_int_equal(ts_tallyd_stop(&pr_d, ts_scale(20000)), 0);
    assert_int_equal(ts_tallyd_start(&pr_d, ts_scale(20000)), 0);
    assert_int_equal(pr_get("/v1/corrections", &body), 200);
    assert_non_null(strstr(body, "\"count\":1,"));
    free(body);
    assert_int_equal(pr_get("/v1/summary", &body), 200);
    assert_non_null(strstr(body, "\"tables_reported\":3,\"electors\":230,"));
    free(body);
    assert_int_equal(ts_tallyd_stop(&pr_d, ts_scale(20000)), 0);
    ts_db_drop("http_progress");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_matches_truth),
        cmocka_unit_test(test_progress_with_tables),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
