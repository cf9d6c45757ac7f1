/* The embargo on a real tallyd (docs/consultation.md, part B): votes durable, the embargo
 * set by SQL exactly as `tallyctl embargo on` sets it; once tallyd reports embargo_applied,
 * every HTTP output (/v1/summary, /v1/results as JSON and CSV, /v1/circuits, one circuit,
 * /v1/states, /v1/corrections, /v1/collectors, /metrics) and the event stream (the reset
 * an open stream gets, a new stream's snapshot, the checkpoint of votes pushed under
 * embargo) carry progress and no count; lifted, the counts are back and equal the truth.
 * Skipped, saying so, while this tallyd does not apply the embargo within 10 s. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <ctype.h>
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
#define BODY_MAX (8u << 20)

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "embargo", 120, 20, COLLECTORS, 8000, "0.02", "0.001", 0, 53))
        return -1;
    /* The embargo comes with the refresh: a short one keeps the test short. */
    snprintf(tc.d.extra, sizeof tc.d.extra, "--refresh-ms 100");
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, false);
    return 0;
}

static int get(const char *path, char **body)
{
    char *b = malloc(BODY_MAX);
    assert_non_null(b);
    int status = ts_http_get(tc.d.http_port, path, b, BODY_MAX, ts_scale(10000));
    *body = b;
    return status;
}

/* ---- no count anywhere: a JSON walk over every key ----------------------------------------- */

/* Keys that carry a count; "votes" only as a national or per-collector total (accepted
 * votes are progress). */
static const char *const count_keys[] = {
    "votes",    "rank",    "winner",      "winners",          "tie",   "margin", "margin_to_next",
    "eligible", "by_lot",  "decided",     "circuits_decided", "blank", "null",   "deltas",
    "delta",    "changed", "blank_delta", "null_delta",
};

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

static const char *string_end(const char *p)
{
    if (*p++ != '"')
        fail_msg("expected a string at %.40s", p - 1);
    for (; *p != '"'; p++) {
        if (!*p)
            fail_msg("unterminated string");
        if (*p == '\\')
            p++;
    }
    return p + 1;
}

static const char *walk(const char *p, const char *parent, const char *what)
{
    p = ws(p);
    if (*p == '{' || *p == '[') {
        bool obj = *p == '{';
        char close = obj ? '}' : ']';
        p = ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            char key[64] = "";
            if (obj) {
                const char *k = ws(p), *e = string_end(k);
                snprintf(key, sizeof(key), "%.*s", (int)(e - k - 2), k + 1);
                bool total = !strcmp(key, "votes") &&
                             (!strcmp(parent, "totals") || !strcmp(parent, "collectors"));
                for (size_t i = 0; i < sizeof(count_keys) / sizeof(count_keys[0]); i++)
                    if (!strcmp(key, count_keys[i]) && !total)
                        fail_msg("%s: \"%s\" (in \"%s\") under embargo", what, key, parent);
                p = ws(e);
                if (*p++ != ':')
                    fail_msg("%s: not JSON", what);
            }
            p = walk(p, obj ? key : parent, what);
            p = ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                fail_msg("%s: not JSON near %.40s", what, p - 1);
        }
    }
    if (*p == '"')
        return string_end(p);
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    char *end;
    strtod(p, &end);
    if (end == p)
        fail_msg("%s: not JSON near %.40s", what, p);
    return end;
}

static void assert_no_counts(const char *body, const char *what)
{
    const char *end = walk(body, "", what);
    if (*ws(end))
        fail_msg("%s: junk after the JSON", what);
}

static void sse_open(struct ts_sse *s, const char *last_event_id)
{
    assert_int_equal(ts_sse_open(s, tc.d.http_port, last_event_id), 0);
}

/* ---- the embargo as tallyctl sets it --------------------------------------------------------- */

/* 1 on, 0 off, -1 while tallyd has not written embargo_applied (NULL). */
static int embargo_applied(void)
{
    uint64_t v;
    if (ts_sql_u64(tc.conninfo,
                   "SELECT CASE WHEN embargo_applied IS NULL THEN 2 WHEN embargo_applied THEN 1"
                   " ELSE 0 END FROM consultation_state",
                   &v) != 0)
        return -1;
    return v == 2 ? -1 : (int)v;
}

/* `tallyctl embargo on|off`: the flag, embargo_applied cleared; then waits for tallyd.
 * False when it does not apply it within 10 s. */
static bool set_embargo(bool on)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "UPDATE consultation_state SET embargo = %s, embargo_applied = NULL,"
             " embargo_changed_at = now(), embargo_actor = 'test'",
             on ? "true" : "false");
    assert_int_equal(ts_sql_exec(tc.conninfo, sql), 0);
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    while (ts_now_ms() < deadline) {
        if (embargo_applied() == (on ? 1 : 0))
            return true;
        ts_sleep_ms(50);
    }
    return false;
}

static void push(uint32_t i)
{
    struct ts_proc p;
    assert_int_equal(ts_case_push(&tc, &p, i, 500), 0);
    assert_int_equal(ts_proc_wait(&p, ts_scale(60000)), 0);
    assert_int_equal(ts_proc_code(&p), 0);
}

static void assert_outputs_without_counts(uint32_t circuit)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/circuits/%" PRIu32, circuit);
    const char *paths[] = {"/v1/summary", "/v1/results",     "/v1/circuits",  path,
                           "/v1/states",  "/v1/corrections", "/v1/collectors"};
    char *body;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int status = get(paths[i], &body);
        if (status != 200)
            fail_msg("%s: %d", paths[i], status);
        assert_no_counts(body, paths[i]);
        free(body);
    }
    assert_int_equal(get("/v1/summary", &body), 200);
    assert_non_null(strstr(body, "\"embargo\":true"));
    assert_non_null(strstr(body, "\"status\":\"provisional\""));
    assert_non_null(strstr(body, "\"progress\":{"));
    free(body);
    assert_int_equal(get("/v1/results?format=csv", &body), 200);
    if (strncmp(body, "project_id,project_name,circuit_id,circuit_name,state\r\n", 55) != 0)
        fail_msg("CSV under embargo: %.120s", body);
    free(body);
    assert_int_equal(get("/metrics", &body), 200);
    assert_non_null(strstr(body, "\ntally_embargo 1\n"));
    assert_null(strstr(body, "tally_blank_ballots"));
    assert_null(strstr(body, "tally_circuits_decided"));
    free(body);
}

static void test_embargo(void **state)
{
    (void)state;
    push(0);
    char *body;
    assert_int_equal(get("/v1/circuits", &body), 200);
    const char *c = strstr(body, "\"circuits\":[");
    assert_non_null(c);
    c = strstr(c, "{\"id\":");
    assert_non_null(c);
    uint32_t circuit = (uint32_t)strtoul(c + 6, NULL, 10);
    assert_non_null(strstr(body, "\"winners\":"));
    free(body);
    assert_int_equal(get("/v1/results", &body), 200);
    assert_non_null(strstr(body, "\"votes\":"));
    free(body);

    struct ts_sse open;
    sse_open(&open, NULL);
    struct ts_sse_event e;
    assert_true(ts_sse_next(&open, &e, ts_scale(5000)));
    assert_string_equal(e.kind, "snapshot");
    free(e.data);

    if (!set_embargo(true)) {
        ts_sse_close(&open);
        fprintf(stderr, "embargo: tallyd did not write embargo_applied within 10 s: "
                        "skipped until it applies the embargo\n");
        skip();
    }
    assert_outputs_without_counts(circuit);
    /* The open stream starts over without counts. */
    assert_true(ts_sse_next(&open, &e, ts_scale(5000)));
    assert_string_equal(e.kind, "reset");
    assert_no_counts(e.data, "reset event");
    free(e.data);
    struct ts_sse fresh;
    sse_open(&fresh, NULL);
    assert_true(ts_sse_next(&fresh, &e, ts_scale(5000)));
    assert_string_equal(e.kind, "snapshot");
    assert_no_counts(e.data, "snapshot event");
    free(e.data);
    ts_sse_close(&fresh);

    /* Votes durable under embargo: their checkpoint event has none either. */
    push(1);
    bool saw = false;
    while (ts_sse_next(&open, &e, ts_scale(2000))) {
        assert_no_counts(e.data, e.kind);
        saw |= !strcmp(e.kind, "checkpoint");
        free(e.data);
    }
    assert_true(saw);
    assert_outputs_without_counts(circuit);

    /* Lifted: the counts again, equal to the truth, and the stream starts over with them. */
    assert_true(set_embargo(false));
    assert_true(ts_sse_next(&open, &e, ts_scale(5000)));
    assert_string_equal(e.kind, "reset");
    assert_non_null(strstr(e.data, "\"changed\":[{\"id\":"));
    free(e.data);
    ts_sse_close(&open);
    assert_int_equal(get("/v1/summary", &body), 200);
    assert_non_null(strstr(body, "\"embargo\":false"));
    free(body);
    assert_int_equal(get("/v1/results?format=csv", &body), 200);
    assert_true(!strncmp(body, "project_id,project_name,circuit_id,circuit_name,state,votes,", 60));
    free(body);
    assert_int_equal(get("/v1/circuits", &body), 200);
    assert_non_null(strstr(body, "\"winners\":"));
    free(body);
    assert_int_equal(ts_case_results_match(&tc), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embargo),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    ts_cleanup();
    return rc;
}
