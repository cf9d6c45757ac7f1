/* Refusals and hostile input: an unregistered collector is refused with a clear message, and
 * garbage on the collector port (bad frames, an oversized length prefix, messages out of
 * order) is answered with an Error or a close, never a crash; a normal push still works. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally/protocol.h"
#include "tally.pb-c.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "basic", 300, 50, 1, 20000, "0.02", "0.001", 0, 11))
        return -1;
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, false);
    return 0;
}

/* tallyd must still be running and healthy. */
static void assert_tallyd_alive(void)
{
    if (ts_proc_done(&tc.d.proc)) {
        ts_dump_tail("tallyd log", tc.d.proc.err, 60);
        fail_msg("tallyd died (exit %d)", ts_proc_code(&tc.d.proc));
    }
    assert_int_equal(ts_http_get(tc.d.http_port, "/healthz", NULL, 0, ts_scale(5000)), 200);
}

/* Reads what tallyd answers to a bad input: either an Error frame (with one of the allowed
 * codes) followed by a close, or a close. Fails on silence or anything else. */
static void expect_error_or_close(int fd, const int *codes, size_t n_codes, const char *what)
{
    struct ts_frame f;
    int r = ts_wire_recv(fd, &f, ts_scale(10000));
    if (r == 0)
        return; /* closed: fine */
    if (r < 0)
        fail_msg("%s: tallyd neither answered nor closed within 10 s", what);
    if (f.kind != TALLY__FRAME__MSG_ERROR)
        fail_msg("%s: expected Error or close, got frame kind %d", what, f.kind);
    bool ok = false;
    for (size_t i = 0; i < n_codes; i++)
        ok |= f.error_code == codes[i];
    if (!ok)
        fail_msg("%s: unexpected error code %d (%s)", what, f.error_code, f.message);
    /* After an Error the connection is closed. */
    r = ts_wire_recv(fd, &f, ts_scale(10000));
    if (r != 0)
        fail_msg("%s: connection not closed after Error (recv %d, kind %d)", what, r, f.kind);
}

static void test_unknown_collector(void **state)
{
    (void)state;
    /* tally-push: exits 1 with a message that names the problem. */
    char spool[1200], out[1200], err[1200], file[1200];
    ts_case_paths(&tc, 0, file, NULL, NULL, NULL, sizeof file);
    snprintf(spool, sizeof spool, "%s/spool-nosuch", tc.dir);
    snprintf(out, sizeof out, "%s/push-nosuch.out", tc.dir);
    snprintf(err, sizeof err, "%s/push-nosuch.err", tc.dir);
    struct ts_proc p;
    assert_int_equal(ts_push_spawn(&p, &tc.d, "nosuch-collector", spool, file, 0, out, err), 0);
    if (ts_proc_wait(&p, ts_scale(30000)) != 0) {
        ts_proc_kill(&p);
        ts_dump_tail("tally-push stderr", err, 20);
        fail_msg("tally-push for an unregistered collector did not exit within 30 s");
    }
    int code = ts_proc_code(&p);
    char *msg = ts_read_file(err);
    if (code != 1 || !msg || !strcasestr(msg, "collector")) {
        ts_dump_tail("tally-push stderr", err, 20);
        fail_msg("tally-push for an unregistered collector: exit %d (want 1) and a message "
                 "mentioning the collector",
                 code);
    }
    fprintf(stderr, "tally-push refused as expected: %s", msg);
    free(msg);

    /* The protocol itself: Error UNKNOWN_COLLECTOR, then close. */
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "nosuch-collector", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR);
    close(fd);

    /* A protocol version tallyd does not speak. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION + 100), 0);
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_BAD_VERSION);
    close(fd);
    assert_tallyd_alive();
}

static void test_malformed_frames(void **state)
{
    (void)state;
    const int too_large[] = {TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE,
                             TALLY__ERROR_CODE__ERROR_BAD_FRAME};
    const int bad_frame[] = {TALLY__ERROR_CODE__ERROR_BAD_FRAME,
                             TALLY__ERROR_CODE__ERROR_NOT_HELLO};
    const int not_hello[] = {TALLY__ERROR_CODE__ERROR_NOT_HELLO,
                             TALLY__ERROR_CODE__ERROR_BAD_FRAME};
    const int bad_batch[] = {TALLY__ERROR_CODE__ERROR_BAD_BATCH,
                             TALLY__ERROR_CODE__ERROR_BAD_FRAME};
    int fd;

    /* 1. An oversized length prefix (4 GiB - 1), then bytes that never complete it. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    assert_int_equal(ts_send_all(fd, huge, sizeof huge), 0);
    expect_error_or_close(fd, too_large, 2, "oversized length prefix");
    close(fd);
    assert_tallyd_alive();

    /* 2. Just over the announced maximum. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    uint32_t over = TALLY_DEFAULT_MAX_FRAME_BYTES + 1;
    const unsigned char over_be[] = {(unsigned char)(over >> 24), (unsigned char)(over >> 16),
                                     (unsigned char)(over >> 8), (unsigned char)over};
    assert_int_equal(ts_send_all(fd, over_be, 4), 0);
    expect_error_or_close(fd, too_large, 2, "frame over the maximum");
    close(fd);

    /* 3. A complete frame of garbage that protobuf cannot decode. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    unsigned char garbage[4 + 32];
    garbage[0] = 0;
    garbage[1] = 0;
    garbage[2] = 0;
    garbage[3] = 32;
    memset(garbage + 4, 0xff, 32);
    assert_int_equal(ts_send_all(fd, garbage, sizeof garbage), 0);
    expect_error_or_close(fd, bad_frame, 2, "undecodable frame");
    close(fd);
    assert_tallyd_alive();

    /* 4. A Batch before any Hello. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    uint64_t ballots[3] = {1, 2, 3};
    uint32_t projects[3] = {1, 2, 3};
    assert_int_equal(ts_wire_batch(fd, 1, ballots, projects, 3), 0);
    expect_error_or_close(fd, not_hello, 2, "Batch before Hello");
    close(fd);

    /* 5. After a good Hello: a Batch whose arrays differ in length. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_WELCOME);
    {
        /* Hand-built so that projects has one entry fewer than ballots. */
        Tally__Batch b = TALLY__BATCH__INIT;
        b.seq = f.durable_seq + 1;
        b.n_ballots = 3;
        b.ballots = ballots;
        b.n_projects = 2;
        b.projects = projects;
        Tally__Frame fr = TALLY__FRAME__INIT;
        fr.msg_case = TALLY__FRAME__MSG_BATCH;
        fr.batch = &b;
        size_t n = tally__frame__get_packed_size(&fr);
        unsigned char *buf = malloc(n + 4);
        assert_non_null(buf);
        buf[0] = (unsigned char)(n >> 24);
        buf[1] = (unsigned char)(n >> 16);
        buf[2] = (unsigned char)(n >> 8);
        buf[3] = (unsigned char)n;
        tally__frame__pack(&fr, buf + 4);
        assert_int_equal(ts_send_all(fd, buf, n + 4), 0);
        free(buf);
    }
    expect_error_or_close(fd, bad_batch, 2, "ballots and projects of different lengths");
    close(fd);
    assert_tallyd_alive();

    /* 6. Half a frame, then a hang-up; and a connect-and-close. */
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    const unsigned char half[] = {0, 0, 0, 100, 0x0a, 0x05};
    assert_int_equal(ts_send_all(fd, half, sizeof half), 0);
    close(fd);
    fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    close(fd);

    /* 7. Random bytes (fixed seed), many connections. */
    srand(42);
    for (int i = 0; i < 30; i++) {
        fd = ts_connect(tc.d.port, 5000);
        assert_true(fd >= 0);
        unsigned char noise[512];
        size_t n = 1 + (size_t)(rand() % (int)sizeof noise);
        for (size_t k = 0; k < n; k++)
            noise[k] = (unsigned char)rand();
        if (i % 3 == 0) { /* a plausible small length prefix followed by noise */
            noise[0] = 0;
            noise[1] = 0;
            noise[2] = (unsigned char)(n > 4 ? (n - 4) >> 8 : 0);
            noise[3] = (unsigned char)(n > 4 ? (n - 4) : 0);
        }
        ts_send_all(fd, noise, n); /* tallyd may already have closed */
        struct ts_frame junk;
        ts_wire_recv(fd, &junk, 200);
        close(fd);
    }
    assert_tallyd_alive();

    /* A normal push afterwards still works and counts exactly. */
    struct ts_proc p;
    char out[1200];
    ts_case_paths(&tc, 0, NULL, NULL, out, NULL, sizeof out);
    assert_int_equal(ts_case_push(&tc, &p, 0, 0), 0);
    if (ts_proc_wait(&p, ts_scale(60000)) != 0) {
        ts_proc_kill(&p);
        fail_msg("tally-push did not finish within 60 s");
    }
    assert_int_equal(ts_proc_code(&p), 0);
    struct ts_push_result r;
    assert_int_equal(ts_push_result_read(out, &r), 0);
    assert_int_equal(r.accepted, tc.truth.accepted);
    assert_int_equal(r.duplicate, tc.truth.duplicate);
    assert_int_equal(r.rejected, tc.truth.rejected);
    assert_int_equal(ts_case_results_match(&tc), 0);
    assert_tallyd_alive();
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_collector),
        cmocka_unit_test(test_malformed_frames),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
