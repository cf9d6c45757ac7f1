/* /metrics of a real tallyd as Prometheus's own linter reads it: `promtool check metrics`
 * on the page taken when tallyd is ready, several times while collectors push, and once
 * all is durable (per-collector series of collectors that pushed and of one that did not).
 * Any parse error or lint problem fails, except the ones listed in lint_allowed with why.
 * Registered only where promtool is installed (Debian: prometheus); PROMTOOL names it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* c0 and c1 push their votes; c2 is registered too and stays silent (its series are
 * zeros). */
#define PUSHING 2
#define BODY_MAX (1u << 20)

static struct ts_case tc;
static time_t started_after, started_before; /* tallyd's start, to a second */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "metrics", 400, 60, PUSHING, 40000, "0.02", "0.001", 0, 43))
        return -1;
    if (ts_ctl(tc.conninfo, NULL, "add-collector", "c2", NULL) != 0)
        return -1;
    started_after = time(NULL);
    int rc = ts_tallyd_start(&tc.d, ts_scale(30000));
    started_before = time(NULL);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, false);
    return 0;
}

/* Lines of promtool's output that do not fail the test: a prefix of the line (metric name
 * first) and the reason it is accepted. None today: every family has HELP, counters end in
 * _total, units are base units. Keep the list short and each reason real. */
static const struct {
    const char *prefix;
    const char *why;
} lint_allowed[] = {
    {NULL, NULL},
};

static bool line_allowed(const char *line)
{
    for (size_t i = 0; lint_allowed[i].prefix; i++)
        if (strncmp(line, lint_allowed[i].prefix, strlen(lint_allowed[i].prefix)) == 0)
            return true;
    return false;
}

/* GET /metrics (200, Prometheus text); the body malloc'd. */
static char *get_metrics(void)
{
    char *b = malloc(BODY_MAX);
    assert_non_null(b);
    int status = ts_http_get(tc.d.http_port, "/metrics", b, BODY_MAX, ts_scale(10000));
    assert_int_equal(status, 200);
    assert_true(strlen(b) < BODY_MAX - 1); /* not cut short */
    return b;
}

/* Writes body to dir/metrics-<tag>.prom and runs promtool check metrics on it (stdin);
 * fails the test on exit 1 (parse error), on any other non-zero exit whose output is not
 * all allowed lines, and on any output line not allowed (lint problems exit 3). */
static void lint(const char *body, const char *tag)
{
    const char *promtool = getenv("PROMTOOL");
    assert_non_null(promtool);
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics-%s.prom", tc.dir, tag);
    assert_int_equal(ts_write_file(path, body), 0);

    char *const argv[] = {"/bin/sh",        "-c", "exec \"$0\" check metrics <\"$1\" 2>&1",
                          (char *)promtool, path, NULL};
    char *out = NULL;
    int rc = ts_run(argv, &out, NULL, ts_scale(30000));
    assert_non_null(out);
    size_t bad = 0;
    for (char *l = out, *next; l && *l; l = next) {
        next = strchr(l, '\n');
        if (next)
            *next++ = '\0';
        if (!*l)
            continue;
        if (!line_allowed(l)) {
            fprintf(stderr, "promtool (%s): %s\n", path, l);
            bad++;
        }
    }
    if (rc != 0 && rc != 3)
        fail_msg("promtool check metrics exited %d on %s (1: the page does not parse)", rc, path);
    if (bad)
        fail_msg("promtool check metrics: %zu problem(s) on %s (exit %d)", bad, path, rc);
    free(out);
    printf("promtool check metrics: %s: OK\n", tag);
}

static double value(const char *text, const char *series)
{
    const char *v = ts_metric_sample(text, series);
    if (!v)
        fail_msg("no sample %s in /metrics", series);
    return strtod(v, NULL);
}

static void test_promtool_accepts_metrics(void **state)
{
    (void)state;
    char *body = get_metrics();
    lint(body, "ready");
    free(body);

    /* Small batches, so that the pushes last and the pages in between show connected
     * collectors and not-yet-durable work. */
    struct ts_proc p[PUSHING];
    for (uint32_t i = 0; i < PUSHING; i++)
        assert_int_equal(ts_case_push(&tc, &p[i], i, 100), 0);
    int64_t deadline = ts_now_ms() + ts_scale(120000);
    int pages = 0;
    for (;;) {
        bool running = false;
        for (uint32_t i = 0; i < PUSHING; i++)
            running |= !ts_proc_done(&p[i]);
        if (!running)
            break;
        if (ts_now_ms() > deadline)
            fail_msg("tally-push did not finish within 120 s");
        if (pages < 5) {
            char tag[32];
            snprintf(tag, sizeof tag, "pushing-%d", ++pages);
            body = get_metrics();
            lint(body, tag);
            free(body);
        }
        ts_sleep_ms(50);
    }
    for (uint32_t i = 0; i < PUSHING; i++)
        assert_int_equal(ts_proc_code(&p[i]), 0);

    /* tally-push exits once all is durable; the snapshot follows the same COMMIT. */
    deadline = ts_now_ms() + ts_scale(10000);
    for (;;) {
        body = get_metrics();
        if (value(body, "tally_votes_accepted_total") == (double)tc.truth.accepted &&
            value(body, "tally_collector_durable_seq{collector=\"c1\"}") > 0 &&
            value(body, "tally_collector_durable_seq{collector=\"c0\"}") > 0)
            break;
        free(body);
        if (ts_now_ms() > deadline)
            fail_msg("/metrics did not reach %llu accepted votes",
                     (unsigned long long)tc.truth.accepted);
        ts_sleep_ms(100);
    }
    lint(body, "durable");

    /* The names other checks rely on. */
    static const char *const present[] = {
        "tally_build_info{",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "tally_postgres_up",
        "tally_connections_open",
        "tally_checkpoint_lag_seconds",
        "tally_collector_connected{collector=\"c2\"}",
        "tally_collector_applied_seq{collector=\"c0\"}",
        "tally_collector_last_seen_timestamp_seconds{collector=\"c1\"}",
    };
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
        if (!strstr(body, present[i]))
            fail_msg("/metrics lacks %s", present[i]);
    assert_true(value(body, "tally_postgres_up") == 1.0);
    assert_true(value(body, "tally_checkpoint_lag_seconds") == 0.0);
    assert_true(value(body, "tally_collector_durable_seq{collector=\"c2\"}") == 0.0);

    /* Seconds since the epoch written in full: "%.9g" gave 1.79612587e+09, up to 5 s off. */
    const char *st = ts_metric_sample(body, "process_start_time_seconds");
    assert_non_null(st);
    if (strcspn(st, "eE\n") < strcspn(st, "\n"))
        fail_msg("process_start_time_seconds written with an exponent: %.*s",
                 (int)strcspn(st, "\n"), st);
    double start = strtod(st, NULL);
    if (!(start >= (double)started_after - 2 && start <= (double)started_before + 2))
        fail_msg("process_start_time_seconds %.3f, tallyd started in [%lld, %lld]", start,
                 (long long)started_after, (long long)started_before);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtool_accepts_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
