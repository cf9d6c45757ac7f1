/* What a peer that does not cooperate can make tallyd spend, against a real tallyd on plain
 * TCP (loopback) with short limits:
 *  - a connection that never sends Hello is closed with ERROR_TIMEOUT at the Hello deadline;
 *  - 40 peers announcing 8 MiB frames of unknown fields before Hello are refused at once
 *    with ERROR_FRAME_TOO_LARGE, and tallyd's peak memory barely moves;
 *  - a 1-byte-per-400-ms sender is cut off at the frame deadline, an idle session at the idle
 *    timeout, while a session that sends Ping stays and gets its Pings answered;
 *  - collector ids that are not [A-Za-z0-9._-]{1,63} ("c0\njunk", "c0\0junk") are refused,
 *    and no error message carries a byte outside printable ASCII;
 *  - 2,000 idle connections are held only until the Hello deadline, while a good collector
 *    pushes meanwhile;
 *  - with `ulimit -n 256` and 400 connections, tallyd does not spin on accept, and serves
 *    again once the Hello deadline has freed its descriptors;
 *  - through all of it the results equal the truth and the log grows by a few hundred lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally/protocol.h"
#include "tally.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELLO_MS 2000
#define FRAME_MS 3000
#define IDLE_MS 4000

static struct ts_case tc;
static double baseline_s; /* c0's push with nobody else around */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max; /* 2,000 sockets of ours, plus tallyd's own */
    setrlimit(RLIMIT_NOFILE, &rl);
    if (ts_case_setup(&tc, "limits", 400, 60, 3, 600000, "0.02", "0.001", 0, 47) != 0)
        return -1;
    snprintf(tc.d.extra, sizeof tc.d.extra,
             "--hello-timeout-ms %d --frame-timeout-ms %d --idle-timeout-ms %d", HELLO_MS,
             FRAME_MS, IDLE_MS);
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* ---- what tallyd spends ------------------------------------------------------------------ */

static long proc_status_kb(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = ts_read_file(path);
    if (!text)
        return -1;
    long kb = -1;
    const char *p = strstr(text, field);
    if (p)
        kb = strtol(p + strlen(field) + 1, NULL, 10);
    free(text);
    return kb;
}

/* utime + stime in clock ticks. */
static long proc_cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *text = ts_read_file(path);
    if (!text)
        return -1;
    const char *p = strrchr(text, ')');
    long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st) != 2)
        ut = st = -1;
    free(text);
    return ut < 0 ? -1 : ut + st;
}

static long log_lines(void)
{
    char *text = ts_read_file(tc.d.proc.err);
    if (!text)
        return 0;
    long n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

static double metric(const char *series)
{
    static char body[1 << 20];
    if (ts_http_get(tc.d.http_port, "/metrics", body, sizeof body, 5000) != 200)
        return -1;
    return ts_metric(body, series);
}

/* ---- raw peers ---------------------------------------------------------------------------- */

static int connect_ok(void)
{
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    return fd;
}

static void expect_error(int fd, int code, int within_ms)
{
    struct ts_frame f;
    int r = ts_wire_recv(fd, &f, ts_scale(within_ms));
    if (r != 1 || f.kind != TALLY__FRAME__MSG_ERROR)
        fail_msg("expected Error %d, got %s (kind %d)", code, r == 1 ? "a frame" : "no frame",
                 r == 1 ? f.kind : -1);
    if (f.error_code != code)
        fail_msg("expected Error %d, got Error %d: %s", code, f.error_code, f.message);
    for (const char *p = f.message; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            fail_msg("Error.message carries byte 0x%02x: %s", (unsigned char)*p, f.message);
    /* ... and then the connection ends. */
    r = ts_wire_recv(fd, &f, ts_scale(5000));
    assert_int_equal(r, 0);
}

static void hello_welcome(int fd, const char *id)
{
    assert_int_equal(ts_wire_hello(fd, id, TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(5000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_WELCOME);
}

static int send_ping(int fd, uint64_t nonce)
{
    Tally__Ping p = TALLY__PING__INIT;
    p.nonce = nonce;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_PING;
    f.ping = &p;
    uint8_t buf[64];
    size_t n = tally__frame__pack(&f, buf + 4);
    uint32_t be = htonl((uint32_t)n);
    memcpy(buf, &be, 4);
    return ts_send_all(fd, buf, n + 4);
}

/* A Hello frame whose collector id is the n bytes of id (NULs and newlines included). */
static int send_raw_hello(int fd, const char *id, size_t n)
{
    uint8_t hello[128], frame[160];
    size_t h = 0;
    hello[h++] = 0x0a; /* field 1, length-delimited */
    hello[h++] = (uint8_t)n;
    memcpy(hello + h, id, n);
    h += n;
    hello[h++] = 0x18; /* field 3, varint: protocol_version */
    hello[h++] = TALLY_PROTOCOL_VERSION;
    size_t f = 4;
    frame[f++] = 0x0a; /* Frame.hello = 1 */
    frame[f++] = (uint8_t)h;
    memcpy(frame + f, hello, h);
    f += h;
    uint32_t be = htonl((uint32_t)(f - 4));
    memcpy(frame, &be, 4);
    return ts_send_all(fd, frame, f);
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void push_collector(uint32_t i, double *seconds)
{
    struct ts_proc p;
    char out[1200], err[1200];
    ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
    int64_t t0 = ts_now_ms();
    assert_int_equal(ts_case_push(&tc, &p, i, 500), 0);
    if (ts_proc_wait(&p, ts_scale(120000)) != 0) {
        ts_proc_kill(&p);
        fail_msg("tally-push c%u did not finish", i);
    }
    if (ts_proc_code(&p) != 0) {
        ts_dump_tail("tally-push", err, 20);
        fail_msg("tally-push c%u exited %d", i, ts_proc_code(&p));
    }
    if (seconds)
        *seconds = (double)(ts_now_ms() - t0) / 1000.0;
}

static void good_collector_alone(void **state)
{
    (void)state;
    push_collector(0, &baseline_s);
    fprintf(stderr, "c0 alone: %.2f s\n", baseline_s);
}

static void hello_deadline(void **state)
{
    (void)state;
    long lines = log_lines();
    int fd = connect_ok();
    int64_t t0 = ts_now_ms();
    expect_error(fd, TALLY__ERROR_CODE__ERROR_TIMEOUT, HELLO_MS + 3000);
    int64_t took = ts_now_ms() - t0;
    close(fd);
    fprintf(stderr, "closed without Hello after %lld ms\n", (long long)took);
    assert_true(took >= HELLO_MS - 300);
    assert_true(metric("tally_net_hello_timeouts_total") >= 1);
    assert_true(log_lines() - lines <= 10);
}

static void oversized_before_hello(void **state)
{
    (void)state;
    long hwm0 = proc_status_kb(tc.d.proc.pid, "VmHWM:");
    enum { PEERS = 40, BIG = 8 * 1024 * 1024 - 1 };
    int fds[PEERS];
    /* 8 MiB of 2-byte unknown fields (field 15, varint 0), as an attacker sends them. */
    static uint8_t junk[1 << 16];
    for (size_t i = 0; i < sizeof junk; i += 2) {
        junk[i] = 0x78;
        junk[i + 1] = 0x00;
    }
    for (int i = 0; i < PEERS; i++) {
        fds[i] = connect_ok();
        uint32_t be = htonl(BIG);
        assert_int_equal(ts_send_all(fds[i], &be, 4), 0);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        /* As much as the socket takes without blocking: the rest would never be read. */
        for (int k = 0; k < 128; k++)
            if (send(fds[i], junk, sizeof junk, MSG_NOSIGNAL) < 0)
                break;
        fcntl(fds[i], F_SETFL, 0);
    }
    for (int i = 0; i < PEERS; i++) {
        struct ts_frame f;
        int r = ts_wire_recv(fds[i], &f, ts_scale(5000));
        if (r != 1 || f.kind != TALLY__FRAME__MSG_ERROR ||
            f.error_code != TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE)
            fail_msg("peer %d: expected ERROR_FRAME_TOO_LARGE (r %d kind %d code %d)", i, r,
                     r == 1 ? f.kind : -1, r == 1 ? f.error_code : -1);
        close(fds[i]);
    }
    long hwm1 = proc_status_kb(tc.d.proc.pid, "VmHWM:");
    fprintf(stderr, "peak RSS %ld -> %ld KiB with %d peers sending 8 MiB before Hello\n", hwm0,
            hwm1, PEERS);
    assert_true(hwm1 - hwm0 < 48 * 1024);
    assert_true(metric("tally_net_pre_auth_too_large_total") >= PEERS);
}

static void slow_sender(void **state)
{
    (void)state;
    int fd = connect_ok();
    hello_welcome(fd, "c1");
    /* A 100-byte frame, one byte every 400 ms: 40 s if it were let through. */
    uint32_t be = htonl(100);
    assert_int_equal(ts_send_all(fd, &be, 4), 0);
    int64_t t0 = ts_now_ms();
    struct ts_frame f;
    int r = 0;
    for (int i = 0; i < 100; i++) {
        uint8_t b = 0;
        if (send(fd, &b, 1, MSG_NOSIGNAL) != 1)
            break;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 400) > 0) {
            r = ts_wire_recv(fd, &f, 2000);
            break;
        }
    }
    int64_t took = ts_now_ms() - t0;
    close(fd);
    fprintf(stderr, "slow sender cut off after %lld ms\n", (long long)took);
    assert_int_equal(r, 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_TIMEOUT);
    assert_true(took >= FRAME_MS - 500 && took <= ts_scale(FRAME_MS + 3000));
}

static void idle_and_keepalive(void **state)
{
    (void)state;
    int idle = connect_ok();
    hello_welcome(idle, "c1");
    int live = connect_ok();
    hello_welcome(live, "c2");
    /* c2 pings every second for twice the idle timeout; c1 says nothing. */
    int64_t t0 = ts_now_ms();
    int pongs = 0;
    for (uint64_t n = 1; ts_now_ms() - t0 < 2 * IDLE_MS; n++) {
        assert_int_equal(send_ping(live, n), 0);
        struct ts_frame f;
        assert_int_equal(ts_wire_recv(live, &f, ts_scale(3000)), 1);
        assert_int_equal(f.kind, TALLY__FRAME__MSG_PING);
        pongs++;
        ts_sleep_ms(1000);
    }
    assert_true(pongs >= 5);
    expect_error(idle, TALLY__ERROR_CODE__ERROR_TIMEOUT, 1000);
    close(idle);
    close(live);
}

static void hello_hygiene(void **state)
{
    (void)state;
    static const struct {
        const char *id;
        size_t n;
    } bad[] = {
        {"c0\nforged log line", 18},
        {"c0\0junk", 7},
        {"c\xff\xfe", 3},
        {"", 0},
        {"0123456789012345678901234567890123456789012345678901234567890123", 64},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = connect_ok();
        assert_int_equal(send_raw_hello(fd, bad[i].id, bad[i].n), 0);
        struct ts_frame f;
        assert_int_equal(ts_wire_recv(fd, &f, ts_scale(5000)), 1);
        assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
        assert_true(f.error_code == TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR ||
                    f.error_code == TALLY__ERROR_CODE__ERROR_BAD_FRAME);
        for (const char *p = f.message; *p; p++)
            assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e);
        assert_null(strstr(f.message, "junk"));
        assert_null(strstr(f.message, "forged"));
        close(fd);
    }
    char *log = ts_read_file(tc.d.proc.err);
    assert_non_null(log);
    /* The newline in an id must not have started a line of its own. */
    for (const char *p = strstr(log, "forged log line"); p; p = strstr(p + 1, "forged log line"))
        fail_msg("the log carries a forged line");
    free(log);
}

static void idle_flood(void **state)
{
    (void)state;
    enum { N = 2000 };
    long lines = log_lines();
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = ts_connect(tc.d.port, 5000);
        assert_true(fds[i] >= 0);
    }
    double open_now = metric("tally_connections_open");
    fprintf(stderr, "%d idle connections made; tallyd holds %.0f\n", N, open_now);
    double with_s = 0;
    push_collector(1, &with_s);
    fprintf(stderr, "c1 with %d idle peers: %.2f s (c0 alone %.2f s: %.0f %%)\n", N, with_s,
            baseline_s, 100.0 * baseline_s / with_s);
    /* All of them are closed at the Hello deadline. */
    int64_t until = ts_now_ms() + ts_scale(HELLO_MS + 10000);
    double left = 0;
    do {
        ts_sleep_ms(250);
        left = metric("tally_connections_open");
    } while (left > 5 && ts_now_ms() < until);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    fprintf(stderr, "after the Hello deadline: %.0f connections open; log +%ld lines\n", left,
            log_lines() - lines);
    assert_true(left <= 5);
    assert_true(log_lines() - lines <= 300);
}

static void fd_exhaustion(void **state)
{
    (void)state;
    /* tallyd again, with 256 descriptors. */
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(20000)), 0);
    struct rlimit rl, low;
    getrlimit(RLIMIT_NOFILE, &rl);
    low = rl;
    low.rlim_cur = 256;
    setrlimit(RLIMIT_NOFILE, &low);
    int rc = ts_tallyd_start(&tc.d, ts_scale(30000));
    setrlimit(RLIMIT_NOFILE, &rl);
    assert_int_equal(rc, 0);
    long lines = log_lines();

    enum { N = 400 };
    static int fds[N];
    int made = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(tc.d.port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fds[i], (struct sockaddr *)&a, sizeof a) == 0 || errno == EINPROGRESS)
            made++;
    }
    /* Out of descriptors, tallyd must wait, not spin. */
    long t0 = proc_cpu_ticks(tc.d.proc.pid);
    ts_sleep_ms(1500);
    long t1 = proc_cpu_ticks(tc.d.proc.pid);
    double cpu = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) / 1.5;
    fprintf(stderr, "%d connections at ulimit -n 256: tallyd CPU %.0f %%\n", made, 100 * cpu);
    assert_true(cpu < 0.35);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* Once the Hello deadline has freed what it held, tallyd serves again. */
    assert_int_equal(ts_tallyd_wait_http(&tc.d, "/healthz", 200, ts_scale(HELLO_MS + 10000)), 0);
    push_collector(2, NULL);
    long added = log_lines() - lines;
    fprintf(stderr, "log +%ld lines\n", added);
    assert_true(added <= 300);
    assert_true(metric("tally_net_accept_pauses_total") >= 1);
}

static void counts_unchanged(void **state)
{
    (void)state;
    /* Every collector pushed its whole file exactly once; the attacks changed nothing. */
    int64_t until = ts_now_ms() + ts_scale(10000);
    int rc;
    while ((rc = ts_case_results_match(&tc)) != 0 && ts_now_ms() < until)
        ts_sleep_ms(200);
    assert_int_equal(rc, 0);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(20000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_collector_alone), cmocka_unit_test(hello_deadline),
        cmocka_unit_test(oversized_before_hello), cmocka_unit_test(slow_sender),
        cmocka_unit_test(idle_and_keepalive),     cmocka_unit_test(hello_hygiene),
        cmocka_unit_test(idle_flood),             cmocka_unit_test(fd_exhaustion),
        cmocka_unit_test(counts_unchanged),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    ts_cleanup();
    return rc;
}
