/* Start-up that tells the truth: what cannot heal stops tallyd at once with the reason (a
 * database that does not exist, a misspelt conninfo keyword, a port in use), what can heal
 * is waited for with /healthz answering and the collector port held but refusing (PostgreSQL
 * down), and SIGHUP does not kill a running tallyd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally.pb-c.h"
#include "tally/protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return ts_case_setup(&tc, "startup", 50, 10, 1, 100, "0", "0", 0, 9);
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* Starts tallyd with db and the given ports; log in dir/<tag>.log. */
static void spawn(struct ts_proc *p, const char *db, uint16_t port, uint16_t http, const char *tag,
                  char *log, size_t len)
{
    char listen[32], h[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    snprintf(h, sizeof h, "127.0.0.1:%u", http);
    snprintf(log, len, "%s/%s.log", tc.dir, tag);
    char *argv[] = {
        (char *)ts_prog("tallyd"), "--db", (char *)db, "--listen", listen, "--http", h, NULL};
    assert_int_equal(ts_spawn(p, "tallyd", argv, NULL, log), 0);
}

static void expect_exit_1(const char *db, uint16_t port, uint16_t http, const char *tag,
                          int within_ms, const char *reason)
{
    struct ts_proc p;
    char log[1200];
    int64_t t0 = ts_now_ms();
    spawn(&p, db, port, http, tag, log, sizeof log);
    if (ts_proc_wait(&p, within_ms) != 0) {
        ts_proc_kill(&p);
        ts_dump_tail(tag, log, 20);
        fail_msg("%s: tallyd did not exit within %d ms", tag, within_ms);
    }
    assert_int_equal(ts_proc_code(&p), 1);
    char *text = ts_read_file(log);
    assert_non_null(text);
    if (!strstr(text, reason)) {
        ts_dump_tail(tag, log, 20);
        fail_msg("%s: the log does not say '%s'", tag, reason);
    }
    free(text);
    fprintf(stderr, "%s: exit 1 after %lld ms\n", tag, (long long)(ts_now_ms() - t0));
}

static void test_permanent_errors_stop_at_once(void **state)
{
    (void)state;
    char db[700];
    /* The fixture's conninfo names dbname=postgres; a later keyword wins in libpq. */
    snprintf(db, sizeof db, "%s dbname=nosuchdb", ts_pg_conninfo());
    expect_exit_1(db, ts_free_port(), ts_free_port(), "nosuchdb", 10000,
                  "database \"nosuchdb\" does not exist");
    snprintf(db, sizeof db, "%s hots=127.0.0.1", ts_pg_conninfo());
    expect_exit_1(db, ts_free_port(), ts_free_port(), "keyword", 10000,
                  "invalid connection option");
    snprintf(db, sizeof db, "%s user=nosuchrole", tc.conninfo);
    expect_exit_1(db, ts_free_port(), ts_free_port(), "role", 10000, "nosuchrole");

    /* A port in use, collector or HTTP: exit 1 at once with the errno's text. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    uint16_t busy = ntohs(sa.sin_port);
    expect_exit_1(tc.conninfo, busy, ts_free_port(), "listen-busy", 3000, "Address already in use");
    expect_exit_1(tc.conninfo, ts_free_port(), busy, "http-busy", 3000, "Address already in use");
    close(fd);
}

static void test_waits_for_postgres_with_health_answering(void **state)
{
    (void)state;
    char db[700];
    uint16_t nothing = ts_free_port(); /* no PostgreSQL there: connection refused */
    snprintf(db, sizeof db, "host=127.0.0.1 port=%u user=postgres dbname=postgres", nothing);
    struct ts_tallyd d;
    memset(&d, 0, sizeof d);
    d.port = ts_free_port();
    do
        d.http_port = ts_free_port();
    while (d.http_port == d.port);
    char log[1200];
    spawn(&d.proc, db, d.port, d.http_port, "no-postgres", log, sizeof log);
    assert_int_equal(ts_tallyd_wait_http(&d, "/healthz", 200, ts_scale(5000)), 0);
    char body[2048];
    assert_int_equal(ts_http_get(d.http_port, "/readyz", body, sizeof body, 2000), 503);
    assert_non_null(strstr(body, "PostgreSQL unreachable"));
    assert_int_equal(ts_http_get(d.http_port, "/v1/summary", NULL, 0, 2000), 503);
    /* The collector port is held, and refuses until start-up is done. */
    assert_true(ts_connect(d.port, 1000) < 0);
    ts_sleep_ms(1000);
    assert_false(ts_proc_done(&d.proc));
    ts_proc_signal(&d.proc, SIGTERM);
    assert_int_equal(ts_proc_wait(&d.proc, ts_scale(10000)), 0);
    assert_int_equal(ts_proc_code(&d.proc), 0);
}

static void test_sighup_does_not_kill(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    ts_proc_signal(&tc.d.proc, SIGHUP);
    ts_sleep_ms(500);
    assert_false(ts_proc_done(&tc.d.proc));
    assert_int_equal(ts_http_get(tc.d.http_port, "/healthz", NULL, 0, 2000), 200);
    char *text = ts_read_file(tc.d.proc.err);
    assert_non_null(text);
    assert_non_null(strstr(text, "received SIGHUP"));
    free(text);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

static bool log_has(const char *path, const char *needle)
{
    char *text = ts_read_file(path);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

/* SIGHUP reads --config again: live settings applied and logged, the others named as needing
 * a restart; a file that no longer parses changes nothing and tallyd goes on. (The support
 * code passes --log-level and --checkpoint-ms on the command line, which override the file.) */
static void test_sighup_reloads_the_file(void **state)
{
    (void)state;
    char conf[100];
    int n = snprintf(conf, sizeof conf, "%s/tallyd.conf", tc.dir);
    assert_true(n > 0 && (size_t)n < sizeof conf); /* it must fit tc.d.extra */
    assert_int_equal(
        ts_write_file(conf, "# tallyd\nshutdown-grace-ms = 9000\nbacklog-votes = 500000\n"), 0);
    snprintf(tc.d.extra, sizeof tc.d.extra, "--config %s", conf);
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    assert_int_equal(ts_write_file(conf, "shutdown-grace-ms = 8000\nbacklog-votes = 400000\n"
                                         "max-frame-bytes = 2048\n"),
                     0);
    ts_proc_signal(&tc.d.proc, SIGHUP);
    const char *want[] = {"reload: --shutdown-grace-ms changed: applied",
                          "reload: --backlog-votes changed: applied",
                          "reload: --max-frame-bytes changed: takes effect only after a restart"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        bool found = false;
        for (int64_t end = ts_now_ms() + ts_scale(5000); ts_now_ms() < end && !found;
             ts_sleep_ms(50))
            found = log_has(tc.d.proc.err, want[i]);
        if (!found) {
            ts_dump_tail("tallyd log", tc.d.proc.err, 20);
            fail_msg("the reload did not log '%s'", want[i]);
        }
    }
    assert_int_equal(ts_write_file(conf, "backlog-votes = lots\n"), 0);
    ts_proc_signal(&tc.d.proc, SIGHUP);
    ts_sleep_ms(500);
    assert_true(log_has(tc.d.proc.err, "keeping the running configuration"));
    assert_false(ts_proc_done(&tc.d.proc));
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    tc.d.extra[0] = '\0';

    /* --check-config: 0 on a good file, 2 naming the file and line on a bad one. */
    char *argv[] = {(char *)ts_prog("tallyd"), "--config", conf, "--check-config", NULL};
    assert_int_equal(ts_run(argv, NULL, NULL, 5000), 2);
    assert_int_equal(ts_write_file(conf, "checkpoint-ms = 50\nstandby = no\n"), 0);
    char *out = NULL;
    assert_int_equal(ts_run(argv, &out, NULL, 5000), 0);
    assert_non_null(strstr(out, "configuration OK"));
    free(out);
}

/* What an operator's Prometheus sees: build info, PostgreSQL up, process figures, and a
 * collector's presence live, not as of the last checkpoint. */
static void test_metrics_for_operators(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    static char m[1 << 17];
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, 5000), 1);
    ts_sleep_ms(600); /* idle: no checkpoint happens */
    assert_int_equal(ts_http_get(tc.d.http_port, "/metrics", m, sizeof m, 5000), 200);
    assert_non_null(strstr(m, "tally_collector_connected{collector=\"c0\"} 1\n"));
    assert_non_null(strstr(m, "tally_postgres_up 1\n"));
    assert_non_null(strstr(m, "tally_build_info{version=\"0.1.0\",commit=\""));
    assert_non_null(strstr(m, "tally_checkpoint_lag_seconds 0\n"));
    assert_non_null(strstr(m, "\nprocess_open_fds "));
    assert_non_null(strstr(m, "\nprocess_resident_memory_bytes "));
    close(fd);
    ts_sleep_ms(600);
    assert_int_equal(ts_http_get(tc.d.http_port, "/metrics", m, sizeof m, 5000), 200);
    assert_non_null(strstr(m, "tally_collector_connected{collector=\"c0\"} 0\n"));
    assert_int_equal(ts_http_get(tc.d.http_port, "/v1/summary", m, sizeof m, 5000), 200);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

/* Under systemd: READY=1 only once recovered (Type=notify), STATUS lines, STOPPING=1 at
 * SIGTERM; and lines with journald priorities when stderr is the journal's stream. */
static void test_systemd_notify_and_journal(void **state)
{
    (void)state;
    char sock[100], log[1200];
    int n = snprintf(sock, sizeof sock, "/tmp/tally-notify-%d.sock", (int)getpid());
    assert_true(n > 0 && (size_t)n < sizeof sock);
    unlink(sock);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(log, sizeof log, "%s/journal.log", tc.dir);
    assert_int_equal(ts_write_file(log, ""), 0);
    struct stat st;
    assert_int_equal(stat(log, &st), 0);
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("JOURNAL_STREAM", js, 1);
    struct ts_tallyd d;
    memset(&d, 0, sizeof d);
    d.port = ts_free_port();
    do
        d.http_port = ts_free_port();
    while (d.http_port == d.port);
    char listen[32], h[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d.port);
    snprintf(h, sizeof h, "127.0.0.1:%u", d.http_port);
    char *argv[] = {
        (char *)ts_prog("tallyd"), "--db", tc.conninfo, "--listen", listen, "--http", h, NULL};
    assert_int_equal(ts_spawn(&d.proc, "tallyd", argv, NULL, log), 0);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("JOURNAL_STREAM");
    assert_int_equal(ts_tallyd_wait_http(&d, "/readyz", 200, ts_scale(20000)), 0);

    char all[8192] = "";
    for (int64_t end = ts_now_ms() + ts_scale(5000); ts_now_ms() < end && !strstr(all, "READY=1");
         ts_sleep_ms(50)) {
        char buf[1024];
        ssize_t r;
        while ((r = recv(fd, buf, sizeof buf - 1, 0)) > 0) {
            buf[r] = '\0';
            strncat(all, buf, sizeof all - strlen(all) - 2);
            strcat(all, "\n");
        }
    }
    if (!strstr(all, "READY=1") || !strstr(all, "STATUS="))
        fail_msg("no READY=1/STATUS from tallyd: '%s'", all);
    ts_proc_signal(&d.proc, SIGTERM);
    assert_int_equal(ts_proc_wait(&d.proc, ts_scale(10000)), 0);
    assert_int_equal(ts_proc_code(&d.proc), 0);
    char buf[1024];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf - 1, 0)) > 0) {
        buf[r] = '\0';
        strncat(all, buf, sizeof all - strlen(all) - 1);
    }
    assert_non_null(strstr(all, "STOPPING=1"));
    close(fd);
    unlink(sock);
    char *text = ts_read_file(log);
    assert_non_null(text);
    assert_true(strncmp(text, "<6>", 3) == 0); /* info, no timestamp */
    assert_null(strstr(text, "Z INFO"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_permanent_errors_stop_at_once),
        cmocka_unit_test(test_waits_for_postgres_with_health_answering),
        cmocka_unit_test(test_sighup_does_not_kill),
        cmocka_unit_test(test_sighup_reloads_the_file),
        cmocka_unit_test(test_metrics_for_operators),
        cmocka_unit_test(test_systemd_notify_and_journal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
