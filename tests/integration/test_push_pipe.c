/* tally-push fed through a pipe that goes quiet (a voting table sending a few votes at a
 * time): the votes read so far go out without waiting for a full batch, the session stays up
 * past tallyd's idle timeout (keep-alive Pings while the input is quiet), and the rest of the
 * input, when it comes, is counted exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDLE_MS 1500

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "push_pipe", 200, 30, 1, 3000, "0", "0", 0, 61) != 0)
        return -1;
    snprintf(tc.d.extra, sizeof tc.d.extra, "--idle-timeout-ms %d", IDLE_MS);
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* ts_send_all is for sockets (send(2)); a FIFO takes write(2). */
static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static double metric(const char *series)
{
    static char body[1 << 20];
    if (ts_http_get(tc.d.http_port, "/metrics", body, sizeof body, 5000) != 200)
        return -1;
    return ts_metric(body, series);
}

static void quiet_pipe(void **state)
{
    (void)state;
    char file[1200], fifo[1200], out[1200], err[1200], spool[1200];
    ts_case_paths(&tc, 0, file, spool, out, err, sizeof file);
    snprintf(fifo, sizeof fifo, "%.1100s/votes.fifo", tc.dir);
    if (mkfifo(fifo, 0600) != 0)
        fail_msg("mkfifo %s: %s", fifo, strerror(errno));
    char *votes = ts_read_file(file);
    assert_non_null(votes);

    struct ts_proc p;
    assert_int_equal(ts_push_spawn(&p, &tc.d, "c0", spool, fifo, 1000, out, err), 0);
    int w = open(fifo, O_WRONLY); /* waits for tally-push to open its end */
    assert_true(w >= 0);
    /* The header and the first 40 votes: far from a full batch of 1,000. */
    const char *cut = votes;
    for (int lines = 0; lines < 41 && cut; lines++) {
        cut = strchr(cut, '\n');
        if (cut)
            cut++;
    }
    assert_non_null(cut);
    assert_int_equal(write_all(w, votes, (size_t)(cut - votes)), 0);

    /* Quiet for three idle timeouts: the 40 are durable, the session still up. */
    ts_sleep_ms(3 * IDLE_MS);
    assert_false(ts_proc_done(&p));
    uint64_t durable = 0;
    assert_int_equal(
        ts_sql_u64(tc.conninfo, "SELECT votes FROM collectors WHERE id = 'c0'", &durable), 0);
    fprintf(stderr, "after %d ms of quiet input: %llu votes durable, idle timeouts %.0f\n",
            3 * IDLE_MS, (unsigned long long)durable, metric("tally_net_idle_timeouts_total"));
    assert_int_equal(durable, 40);
    assert_true(metric("tally_net_idle_timeouts_total") == 0);

    /* The rest, then the end of the input. */
    assert_int_equal(write_all(w, cut, strlen(cut)), 0);
    close(w);
    if (ts_proc_wait(&p, ts_scale(60000)) != 0) {
        ts_proc_kill(&p);
        fail_msg("tally-push did not finish");
    }
    if (ts_proc_code(&p) != 0)
        ts_dump_tail("tally-push", err, 20);
    assert_int_equal(ts_proc_code(&p), 0);
    free(votes);
    struct ts_push_result r;
    assert_int_equal(ts_push_result_read(out, &r), 0);
    assert_int_equal(ts_case_totals_match(&tc, &r), 0);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(20000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(quiet_pipe)};
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    ts_cleanup();
    return rc;
}
