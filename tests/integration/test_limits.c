/* What a peer that does not cooperate can make tallyd spend, against a real tallyd on
 * loopback with short limits, in two modes from this one source: plain TCP (test_limits) and,
 * with TALLY_LIMITS_TLS=1 (test_limits_tls), mutual TLS with certificates from `tallyctl ca`,
 * every raw peer a TLS session of its own (or a raw TCP connection to the TLS port):
 *  - a connection that never sends Hello is closed with ERROR_TIMEOUT at the Hello deadline;
 *    over TLS, one that never even starts the handshake is closed then too, nothing sent;
 *  - 40 peers announcing 8 MiB frames of unknown fields before Hello are refused at once
 *    with ERROR_FRAME_TOO_LARGE, and tallyd's peak memory barely moves;
 *  - a 1-byte-per-400-ms sender is cut off at the frame deadline, an idle session at the idle
 *    timeout, while a session that sends Ping stays and gets its Pings answered;
 *  - collector ids that are not [A-Za-z0-9._-]{1,63} ("c0\njunk", "c0\0junk") are refused,
 *    and no error message carries a byte outside printable ASCII;
 *  - 2,000 idle TCP connections are held only until the Hello deadline, while a good
 *    collector pushes meanwhile;
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
static bool tls_mode;     /* TALLY_LIMITS_TLS=1 */
static char ca_dir[1100]; /* tallyctl ca init: ca.crt, server.*, c0..c2 */

/* tallyctl --db tc.conninfo args... (NULL-terminated). Its exit code. */
static int ctl(char *const *args)
{
    char *argv[16] = {(char *)ts_prog("tallyctl"), "--db", tc.conninfo};
    int n = 3;
    for (; args[n - 3] && n < 15; n++)
        argv[n] = args[n - 3];
    argv[n] = NULL;
    return ts_run(argv, NULL, NULL, 60000);
}

/* A CA, the server's certificate, c0..c2's, each pinned to its collector; tallyd's flags. */
static int tls_prepare(void)
{
    snprintf(ca_dir, sizeof ca_dir, "%.1090s/ca", tc.dir);
    char *init[] = {"ca", "init", ca_dir, NULL};
    if (ctl(init) != 0)
        return -1;
    for (uint32_t i = 0; i < tc.collectors; i++) {
        char id[16], crt[1200];
        snprintf(id, sizeof id, "c%u", i);
        snprintf(crt, sizeof crt, "%s/%s.crt", ca_dir, id);
        char *issue[] = {"ca", "issue", ca_dir, id, NULL};
        char *pin[] = {"add-collector", id, "--cert", crt, NULL};
        if (ctl(issue) != 0 || ctl(pin) != 0)
            return -1;
    }
    char flags[1900];
    snprintf(flags, sizeof flags,
             " --tls-cert %.580s/server.crt --tls-key %.580s/server.key --tls-ca %.580s/ca.crt",
             ca_dir, ca_dir, ca_dir);
    strncat(tc.d.extra, flags, sizeof tc.d.extra - strlen(tc.d.extra) - 1);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max; /* 2,000 sockets of ours, plus tallyd's own */
    setrlimit(RLIMIT_NOFILE, &rl);
    const char *mode = getenv("TALLY_LIMITS_TLS");
    tls_mode = mode && strcmp(mode, "1") == 0;
    fprintf(stderr, "mode: %s\n", tls_mode ? "TLS" : "plain TCP");
    if (ts_case_setup(&tc, tls_mode ? "limits_tls" : "limits", 400, 60, 3, 600000, "0.02", "0.001",
                      0, 47) != 0)
        return -1;
    snprintf(tc.d.extra, sizeof tc.d.extra,
             "--hello-timeout-ms %d --frame-timeout-ms %d --idle-timeout-ms %d", HELLO_MS, FRAME_MS,
             IDLE_MS);
    if (tls_mode && tls_prepare() != 0)
        return -1;
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
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
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

/* ---- raw peers: plain TCP, or a TLS session presenting a collector's certificate ------- */

struct peer {
    int fd;          /* plain mode */
    struct ts_tls t; /* TLS mode */
};

/* A peer; over TLS it presents collector `as`'s certificate (and has done its handshake). */
static void peer_open(struct peer *p, const char *as)
{
    memset(p, 0, sizeof *p);
    p->fd = p->t.fd = -1;
    if (!tls_mode) {
        p->fd = ts_connect(tc.d.port, 5000);
        assert_true(p->fd >= 0);
        return;
    }
    char cert[1200], key[1200], ca[1200];
    snprintf(cert, sizeof cert, "%s/%s.crt", ca_dir, as);
    snprintf(key, sizeof key, "%s/%s.key", ca_dir, as);
    snprintf(ca, sizeof ca, "%s/ca.crt", ca_dir);
    if (ts_tls_open(&p->t, tc.d.port, cert, key, ca) != 0)
        fail_msg("TLS handshake as %s failed", as);
}

static int peer_send(struct peer *p, const void *buf, size_t len)
{
    return tls_mode ? ts_tls_send_all(&p->t, buf, len) : ts_send_all(p->fd, buf, len);
}

static int peer_recv(struct peer *p, struct ts_frame *f, int timeout_ms)
{
    return tls_mode ? ts_tls_recv(&p->t, f, timeout_ms) : ts_wire_recv(p->fd, f, timeout_ms);
}

static void peer_close(struct peer *p)
{
    if (tls_mode)
        ts_tls_close(&p->t);
    else if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static void expect_error(struct peer *p, int code, int within_ms)
{
    struct ts_frame f;
    int r = peer_recv(p, &f, ts_scale(within_ms));
    if (r != 1 || f.kind != TALLY__FRAME__MSG_ERROR)
        fail_msg("expected Error %d, got %s (kind %d)", code, r == 1 ? "a frame" : "no frame",
                 r == 1 ? f.kind : -1);
    if (f.error_code != code)
        fail_msg("expected Error %d, got Error %d: %s", code, f.error_code, f.message);
    for (const char *c = f.message; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            fail_msg("Error.message carries byte 0x%02x: %s", (unsigned char)*c, f.message);
    /* ... and then the connection ends. */
    r = peer_recv(p, &f, ts_scale(5000));
    assert_int_equal(r, 0);
}

static void hello_welcome(struct peer *p, const char *id)
{
    uint8_t *buf;
    size_t n = ts_wire_hello_bytes(&buf, id, TALLY_PROTOCOL_VERSION);
    int rc = peer_send(p, buf, n);
    free(buf);
    assert_int_equal(rc, 0);
    struct ts_frame f;
    assert_int_equal(peer_recv(p, &f, ts_scale(5000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_WELCOME);
}

static int send_ping(struct peer *peer, uint64_t nonce)
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
    return peer_send(peer, buf, n + 4);
}

/* A raw TCP connection (to the TLS port: no handshake) ends within within_ms without a byte
 * from tallyd. Returns how long it took, or -1 (said why). */
static int64_t raw_closed_within(int fd, int64_t since, int within_ms)
{
    int64_t until = ts_now_ms() + within_ms;
    for (;;) {
        int left = (int)(until - ts_now_ms());
        if (left <= 0) {
            fprintf(stderr, "raw connection still open after %d ms\n", within_ms);
            return -1;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0)
            continue;
        uint8_t b[64];
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return ts_now_ms() - since;
        if (r > 0) {
            fprintf(stderr, "tallyd sent %zd bytes (first 0x%02x) to a peer that sent none\n", r,
                    b[0]);
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

/* A Hello frame whose collector id is the n bytes of id (NULs and newlines included). */
static int send_raw_hello(struct peer *p, const char *id, size_t n)
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
    return peer_send(p, frame, f);
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void push_collector(uint32_t i, double *seconds)
{
    struct ts_proc p;
    char out[1200], err[1200];
    ts_case_paths(&tc, i, NULL, NULL, out, err, sizeof out);
    int64_t t0 = ts_now_ms();
    if (tls_mode)
        assert_int_equal(ts_case_push_tls(&tc, &p, i, 500, ca_dir), 0);
    else
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
    double timeouts0 = metric("tally_net_hello_timeouts_total");
    /* Over TLS, also a TCP connection that never starts the handshake. */
    int raw = tls_mode ? ts_connect(tc.d.port, 5000) : -1;
    int64_t raw_t0 = ts_now_ms();
    assert_true(!tls_mode || raw >= 0);
    struct peer p;
    peer_open(&p, "c0");
    int64_t t0 = ts_now_ms();
    expect_error(&p, TALLY__ERROR_CODE__ERROR_TIMEOUT, HELLO_MS + 3000);
    int64_t took = ts_now_ms() - t0;
    peer_close(&p);
    fprintf(stderr, "closed without Hello after %lld ms%s\n", (long long)took,
            tls_mode ? " (a TLS session)" : "");
    assert_true(took >= HELLO_MS - 300);
    if (tls_mode) {
        int64_t raw_took = raw_closed_within(raw, raw_t0, ts_scale(HELLO_MS + 3000));
        close(raw);
        fprintf(stderr, "TCP without a handshake closed after %lld ms, nothing sent\n",
                (long long)raw_took);
        assert_true(raw_took >= HELLO_MS - 300);
    }
    double timeouts1 = metric("tally_net_hello_timeouts_total");
    assert_true(timeouts1 >= timeouts0 + (tls_mode ? 2 : 1));
    assert_true(log_lines() - lines <= 10);
}

static void oversized_before_hello(void **state)
{
    (void)state;
    long hwm0 = proc_status_kb(tc.d.proc.pid, "VmHWM:");
    enum { PEERS = 40, BIG = 8 * 1024 * 1024 - 1 };
    static struct peer peers[PEERS];
    /* 8 MiB of 2-byte unknown fields (field 15, varint 0), as an attacker sends them. */
    static uint8_t junk[1 << 16];
    for (size_t i = 0; i < sizeof junk; i += 2) {
        junk[i] = 0x78;
        junk[i + 1] = 0x00;
    }
    long sent = 0;
    for (int i = 0; i < PEERS; i++) {
        struct peer *p = &peers[i];
        peer_open(p, "c0");
        uint32_t be = htonl(BIG);
        assert_int_equal(peer_send(p, &be, 4), 0);
        /* As much as the socket takes without blocking: the rest would never be read. */
        if (tls_mode) {
            for (int k = 0; k < 128; k++) {
                long w = ts_tls_send_some(&p->t, junk, sizeof junk);
                if (w <= 0)
                    break;
                sent += w;
            }
        } else {
            fcntl(p->fd, F_SETFL, O_NONBLOCK);
            for (int k = 0; k < 128; k++) {
                ssize_t w = send(p->fd, junk, sizeof junk, MSG_NOSIGNAL);
                if (w < 0)
                    break;
                sent += w;
            }
            fcntl(p->fd, F_SETFL, 0);
        }
    }
    for (int i = 0; i < PEERS; i++) {
        struct ts_frame f;
        int r = peer_recv(&peers[i], &f, ts_scale(5000));
        if (r != 1 || f.kind != TALLY__FRAME__MSG_ERROR ||
            f.error_code != TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE)
            fail_msg("peer %d: expected ERROR_FRAME_TOO_LARGE (r %d kind %d code %d)", i, r,
                     r == 1 ? f.kind : -1, r == 1 ? f.error_code : -1);
        peer_close(&peers[i]);
    }
    long hwm1 = proc_status_kb(tc.d.proc.pid, "VmHWM:");
    fprintf(stderr,
            "peak RSS %ld -> %ld KiB with %d peers announcing 8 MiB before Hello (%ld KiB of it "
            "sent)\n",
            hwm0, hwm1, PEERS, sent / 1024);
    assert_true(hwm1 - hwm0 < ts_scale(48) * 1024); /* sanitizers keep freed memory */
    assert_true(metric("tally_net_pre_auth_too_large_total") >= PEERS);
}

static void slow_sender(void **state)
{
    (void)state;
    struct peer p;
    peer_open(&p, "c1");
    hello_welcome(&p, "c1");
    /* A 100-byte frame, one byte every 400 ms (over TLS, one record each): 40 s if it were
     * let through. */
    uint32_t be = htonl(100);
    assert_int_equal(peer_send(&p, &be, 4), 0);
    int64_t t0 = ts_now_ms();
    struct ts_frame f;
    int r = 0;
    for (int i = 0; i < 100; i++) {
        uint8_t b = 0;
        if (peer_send(&p, &b, 1) != 0)
            break;
        if (tls_mode) {
            /* A timeout keeps what was read: the next call goes on. */
            r = ts_tls_recv(&p.t, &f, 400);
            if (r != -1)
                break;
            continue;
        }
        struct pollfd pfd = {p.fd, POLLIN, 0};
        if (poll(&pfd, 1, 400) > 0) {
            r = ts_wire_recv(p.fd, &f, 2000);
            break;
        }
    }
    int64_t took = ts_now_ms() - t0;
    peer_close(&p);
    fprintf(stderr, "slow sender cut off after %lld ms\n", (long long)took);
    assert_int_equal(r, 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_TIMEOUT);
    assert_true(took >= FRAME_MS - 500 && took <= ts_scale(FRAME_MS + 3000));
}

static void idle_and_keepalive(void **state)
{
    (void)state;
    struct peer idle, live;
    peer_open(&idle, "c1");
    hello_welcome(&idle, "c1");
    peer_open(&live, "c2");
    hello_welcome(&live, "c2");
    /* c2 pings every second for twice the idle timeout; c1 says nothing. */
    int64_t t0 = ts_now_ms();
    int pongs = 0;
    for (uint64_t n = 1; ts_now_ms() - t0 < 2 * IDLE_MS; n++) {
        assert_int_equal(send_ping(&live, n), 0);
        struct ts_frame f;
        assert_int_equal(peer_recv(&live, &f, ts_scale(3000)), 1);
        assert_int_equal(f.kind, TALLY__FRAME__MSG_PING);
        pongs++;
        ts_sleep_ms(1000);
    }
    fprintf(stderr, "%d Pings answered over %d ms; the silent session closed\n", pongs,
            2 * IDLE_MS);
    assert_true(pongs >= 5);
    expect_error(&idle, TALLY__ERROR_CODE__ERROR_TIMEOUT, 1000);
    peer_close(&idle);
    peer_close(&live);
}

static void check_refusal(struct peer *p, const int *codes, size_t n_codes)
{
    struct ts_frame f;
    assert_int_equal(peer_recv(p, &f, ts_scale(5000)), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    bool known = false;
    for (size_t i = 0; i < n_codes; i++)
        known = known || f.error_code == codes[i];
    if (!known)
        fail_msg("unexpected Error %d: %s", f.error_code, f.message);
    for (const char *c = f.message; *c; c++)
        assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c <= 0x7e);
    assert_null(strstr(f.message, "junk"));
    assert_null(strstr(f.message, "forged"));
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
    static const int refused[] = {TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR,
                                  TALLY__ERROR_CODE__ERROR_BAD_FRAME};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct peer p;
        peer_open(&p, "c0");
        assert_int_equal(send_raw_hello(&p, bad[i].id, bad[i].n), 0);
        check_refusal(&p, refused, 2);
        peer_close(&p);
    }
    if (tls_mode) {
        /* A good id, but not the one c0's certificate is pinned to. */
        static const int auth[] = {TALLY__ERROR_CODE__ERROR_AUTH};
        struct peer p;
        peer_open(&p, "c0");
        assert_int_equal(send_raw_hello(&p, "c1", 2), 0);
        check_refusal(&p, auth, 1);
        peer_close(&p);
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
    /* Everything tallyd logged through all of it (both runs, start and stop included). */
    long total = 0;
    for (int n = 1; n <= tc.d.starts; n++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/tallyd-%d.log", tc.dir, n);
        char *text = ts_read_file(path);
        for (const char *p = text; p && *p; p++)
            total += *p == '\n';
        free(text);
    }
    fprintf(stderr, "tallyd logged %ld lines in all (%d runs)\n", total, tc.d.starts);
    assert_true(total <= 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_collector_alone),
        cmocka_unit_test(hello_deadline),
        cmocka_unit_test(oversized_before_hello),
        cmocka_unit_test(slow_sender),
        cmocka_unit_test(idle_and_keepalive),
        cmocka_unit_test(hello_hygiene),
        cmocka_unit_test(idle_flood),
        cmocka_unit_test(fd_exhaustion),
        cmocka_unit_test(counts_unchanged),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    ts_cleanup();
    return rc;
}
