/* Mutual TLS on the collector port, against a real tallyd with certificates from the project's
 * own CA (tallyctl ca) and from an outside CA made with the openssl command:
 *  - plain TCP to the TLS port gets no Welcome: the connection ends at once, counted as a
 *    failed handshake;
 *  - a certificate from a CA tallyd does not trust fails the handshake;
 *  - a valid certificate whose Hello names another collector is refused with ERROR_AUTH,
 *    logged with both ids;
 *  - a disabled collector is refused with ERROR_COLLECTOR_DISABLED, and a live session of it
 *    is dropped once it is disabled;
 *  - a collector limited to two circuits has its votes for other projects rejected as
 *    not_allowed while the rest count;
 *  - a batch replayed with other content under a used seq is refused (ERROR_SEQ_CONFLICT);
 *  - good collectors (tally-push --tls-*) push everything and the results are exact. */
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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ts_case tc;
static char ca[600], ext[600], foreign[600], bundle[700];
static uint32_t allowed[2]; /* c2's circuits */
static uint64_t expected_not_allowed;

/* ---- helpers ------------------------------------------------------------------------------ */

static int sh(const char *cmd)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    return ts_run(argv, NULL, NULL, 60000);
}

static int ctl(char **out, char *const *args)
{
    char *argv[16] = {(char *)ts_prog("tallyctl"), "--db", tc.conninfo};
    int n = 3;
    for (; args[n - 3] && n < 15; n++)
        argv[n] = args[n - 3];
    argv[n] = NULL;
    return ts_run(argv, out, NULL, 60000);
}

/* tally-push over TLS; returns its exit code (-1 if it had to be killed after timeout_ms). */
static int push_tls(const char *collector, uint32_t file_of, const char *spool_tag,
                    const char *cert, const char *key, int timeout_ms, char *err_path,
                    size_t err_len)
{
    char file[1200], spool[1300], out[1300], server[32];
    ts_case_paths(&tc, file_of, file, NULL, NULL, NULL, sizeof file);
    snprintf(spool, sizeof spool, "%s/spool-%s", tc.dir, spool_tag);
    snprintf(out, sizeof out, "%s/push-%s.out", tc.dir, spool_tag);
    snprintf(err_path, err_len, "%s/push-%s.err", tc.dir, spool_tag);
    snprintf(server, sizeof server, "127.0.0.1:%u", tc.d.port);
    char cafile[1300];
    snprintf(cafile, sizeof cafile, "%s/ca.crt", ca);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--server",
                    server,
                    "--collector",
                    (char *)collector,
                    "--spool",
                    spool,
                    "--batch",
                    "500",
                    "--tls-cert",
                    (char *)cert,
                    "--tls-key",
                    (char *)key,
                    "--tls-ca",
                    cafile,
                    file,
                    NULL};
    struct ts_proc p;
    if (ts_spawn(&p, collector, argv, out, err_path) != 0)
        return -1;
    if (ts_proc_wait(&p, ts_scale(timeout_ms)) != 0) {
        ts_proc_kill(&p);
        return -1;
    }
    return ts_proc_code(&p);
}

static bool file_has(const char *path, const char *needle)
{
    char *text = ts_read_file(path);
    bool has = text && strstr(text, needle);
    free(text);
    return has;
}

static double metric(const char *series)
{
    static char body[1 << 20];
    if (ts_http_get(tc.d.http_port, "/metrics", body, sizeof body, 5000) != 200)
        return -1;
    return ts_metric(body, series);
}

/* ---- the raw TLS collector (support's ts_tls) --------------------------------------------- */

static int tconn_open(struct ts_tls *t, const char *cert, const char *key)
{
    char cafile[1300];
    snprintf(cafile, sizeof cafile, "%s/ca.crt", ca);
    return ts_tls_open(t, tc.d.port, cert, key, cafile);
}

/* The next frame: its case, and for an Error its code (else 0). -1 when the session ended. */
static int tconn_recv(struct ts_tls *t, int *code)
{
    struct ts_frame f;
    if (ts_tls_recv(t, &f, ts_scale(10000)) != 1)
        return -1;
    *code = f.kind == TALLY__FRAME__MSG_ERROR ? f.error_code : 0;
    if (f.kind == TALLY__FRAME__MSG_ERROR)
        fprintf(stderr, "tallyd: %s\n", f.message);
    return f.kind;
}

/* ---- the consultation ------------------------------------------------------------------- */

/* The registry's first two circuits, and the truth once c2 may vote only in them. */
static int restrict_truth(void)
{
    char *reg = ts_read_file(tc.registry);
    char vpath[1300];
    snprintf(vpath, sizeof vpath, "%s/collector-2.csv", tc.votes);
    char *votes = ts_read_file(vpath);
    char *truth = ts_read_file(tc.truth_csv);
    if (!reg || !votes || !truth)
        return -1;
    /* project id -> circuit id (ids first and third; names may be quoted with commas). */
    enum { MAXP = 4096 };
    static uint32_t pid[MAXP], pcirc[MAXP];
    size_t np = 0, nc = 0;
    for (char *line = strchr(reg, '\n'); line && line[1] && np < MAXP;) {
        line++;
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        int field = 0;
        bool quoted = false;
        const char *f3 = NULL;
        for (char *c = line; *c; c++) {
            if (*c == '"')
                quoted = !quoted;
            else if (*c == ',' && !quoted && ++field == 2)
                f3 = c + 1;
        }
        pid[np] = (uint32_t)strtoul(line, NULL, 10);
        pcirc[np] = f3 ? (uint32_t)strtoul(f3, NULL, 10) : 0;
        if (nc < 2 && (nc == 0 || allowed[0] != pcirc[np]))
            allowed[nc++] = pcirc[np];
        np++;
        line = end;
    }
    /* Votes of c2 outside them, per project. */
    static uint64_t minus[MAXP];
    for (char *line = strchr(votes, '\n'); line && line[1];) {
        line++;
        char *comma = strchr(line, ',');
        if (!comma)
            break;
        uint32_t p = (uint32_t)strtoul(comma + 1, NULL, 10);
        for (size_t i = 0; i < np; i++)
            if (pid[i] == p) {
                if (pcirc[i] != allowed[0] && pcirc[i] != allowed[1]) {
                    minus[i]++;
                    expected_not_allowed++;
                }
                break;
            }
        line = strchr(line, '\n');
    }
    /* truth.csv, "project_id,votes", less those. */
    size_t cap = strlen(truth) + 64, len = 0;
    char *out = malloc(cap);
    for (char *line = truth; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        unsigned long p;
        unsigned long long v;
        if (sscanf(line, "%lu,%llu", &p, &v) == 2) {
            for (size_t i = 0; i < np; i++)
                if (pid[i] == p)
                    v -= minus[i];
            len += (size_t)snprintf(out + len, cap - len, "%lu,%llu\n", p, v);
        } else {
            len += (size_t)snprintf(out + len, cap - len, "%s\n", line);
        }
        line = end ? end + 1 : NULL;
    }
    char path[sizeof tc.truth_csv];
    snprintf(path, sizeof path, "%.1000s/truth-restricted.csv", tc.dir);
    int rc = ts_write_file(path, out);
    snprintf(tc.truth_csv, sizeof tc.truth_csv, "%s", path);
    free(out);
    free(reg);
    free(votes);
    free(truth);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "tls", 400, 60, 3, 60000, "0", "0", 0, 83) != 0)
        return -1;
    snprintf(ca, sizeof ca, "%.590s/ca", tc.dir);
    snprintf(ext, sizeof ext, "%.590s/ext", tc.dir);
    snprintf(foreign, sizeof foreign, "%.590s/foreign", tc.dir);
    snprintf(bundle, sizeof bundle, "%.590s/trusted.pem", tc.dir);
    char *init[] = {"ca", "init", ca, NULL};
    if (ctl(NULL, init) != 0)
        return -1;
    char *i0[] = {"ca", "issue", ca, "c0", NULL};
    char *i2[] = {"ca", "issue", ca, "c2", NULL};
    if (ctl(NULL, i0) != 0 || ctl(NULL, i2) != 0)
        return -1;
    /* Two outside CAs made with the openssl command: one tallyd trusts (an operator's own
     * PKI), one it does not. */
    char cmd[8192];
    for (int k = 0; k < 2; k++) {
        const char *d = k ? foreign : ext;
        const char *who = k ? "c0" : "c1";
        snprintf(
            cmd, sizeof cmd,
            "set -e; mkdir -p %s; cd %s; "
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            "-keyout ca.key -out ca.crt -days 30 -subj /CN=outside-ca-%d "
            "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign 2>/dev/null; "
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
            "-out %s.csr -subj /CN=%s 2>/dev/null; "
            "printf 'extendedKeyUsage=clientAuth\\n' > ext.cnf; "
            "openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
            "-out %s.crt -days 30 -extfile ext.cnf 2>/dev/null",
            d, d, k, who, who, who, who, who);
        if (sh(cmd) != 0)
            return -1;
    }
    snprintf(cmd, sizeof cmd, "cat %s/ca.crt %s/ca.crt > %s", ca, ext, bundle);
    if (sh(cmd) != 0 || restrict_truth() != 0)
        return -1;
    char c0crt[1300], c1crt[1300], c2crt[1300], list[64];
    snprintf(c0crt, sizeof c0crt, "%s/c0.crt", ca);
    snprintf(c1crt, sizeof c1crt, "%s/c1.crt", ext);
    snprintf(c2crt, sizeof c2crt, "%s/c2.crt", ca);
    snprintf(list, sizeof list, "%u,%u", allowed[0], allowed[1]);
    char *a0[] = {"add-collector", "c0", "--cert", c0crt, NULL};
    char *a1[] = {"add-collector", "c1", "--cert", c1crt, NULL};
    char *a2[] = {"add-collector", "c2", "--cert", c2crt, "--circuits", list, NULL};
    if (ctl(NULL, a0) != 0 || ctl(NULL, a1) != 0 || ctl(NULL, a2) != 0)
        return -1;
    snprintf(tc.d.extra, sizeof tc.d.extra,
             "--tls-cert %s/server.crt --tls-key %s/server.key --tls-ca %s", ca, ca, bundle);
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* ---- the tests ------------------------------------------------------------------------------ */

static void plaintext_gets_no_welcome(void **state)
{
    (void)state;
    double failures0 = metric("tally_net_tls_handshake_failures_total");
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION), 0);
    /* A Hello in clear is no ClientHello: tallyd ends the connection at once (perhaps after
     * a TLS alert, never a frame of ours), not at a deadline. */
    int64_t t0 = ts_now_ms(), until = t0 + ts_scale(5000);
    uint8_t got[256];
    size_t n = 0;
    bool ended = false;
    while (!ended && ts_now_ms() < until) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(until - ts_now_ms())) <= 0)
            continue;
        if (n == sizeof got)
            fail_msg("tallyd sent %zu bytes or more to a plaintext Hello", sizeof got);
        ssize_t r = recv(fd, got + n, sizeof got - n, 0);
        if (r > 0)
            n += (size_t)r;
        else if (r == 0 || errno == ECONNRESET || errno == EPIPE)
            ended = true;
        else if (errno != EINTR)
            fail_msg("recv: %s", strerror(errno));
    }
    int64_t took = ts_now_ms() - t0;
    close(fd);
    fprintf(stderr, "plaintext Hello: %zu bytes back (first 0x%02x), %s after %lld ms\n", n,
            n ? got[0] : 0, ended ? "connection ended" : "still open", (long long)took);
    assert_true(ended);
    /* What came back, if anything, is a TLS record (an alert), not a Welcome. */
    if (n >= 4) {
        uint32_t len;
        memcpy(&len, got, 4);
        len = ntohl(len);
        struct ts_frame f;
        if (len <= n - 4 && ts_wire_decode(got + 4, len, &f) == 1)
            assert_int_not_equal(f.kind, TALLY__FRAME__MSG_WELCOME);
    }
    /* ... counted as a failed handshake. */
    double failures1 = failures0;
    for (int64_t stop = ts_now_ms() + ts_scale(2000); failures1 <= failures0 && ts_now_ms() < stop;
         ts_sleep_ms(50))
        failures1 = metric("tally_net_tls_handshake_failures_total");
    fprintf(stderr, "tally_net_tls_handshake_failures_total %.0f -> %.0f\n", failures0, failures1);
    assert_true(failures0 >= 0);
    assert_true(failures1 >= failures0 + 1);
}

static void foreign_ca_fails_handshake(void **state)
{
    (void)state;
    char cert[1300], key[1300];
    snprintf(cert, sizeof cert, "%s/c0.crt", foreign);
    snprintf(key, sizeof key, "%s/c0.key", foreign);
    struct ts_tls t;
    int rc = tconn_open(&t, cert, key);
    int code = 0;
    /* TLS 1.3: the server's verdict on our certificate may come after our Finished, so
     * the handshake may "succeed" here and the first read fail. */
    if (rc == 0)
        rc = ts_tls_hello(&t, "c0", TALLY_PROTOCOL_VERSION) == 0 &&
                     tconn_recv(&t, &code) == TALLY__FRAME__MSG_WELCOME
                 ? 0
                 : -1;
    ts_tls_close(&t);
    assert_int_equal(rc, -1);
    char err[1300];
    int exit_code = push_tls("c0", 0, "foreign", cert, key, 20000, err, sizeof err);
    fprintf(stderr, "tally-push with a foreign certificate: exit %d\n", exit_code);
    assert_int_equal(exit_code, 4); /* documented: refused on its certificate */
    assert_true(file_has(err, "unknown ca"));
    assert_true(metric("tally_batches_total") == 0);
}

static void other_collectors_certificate(void **state)
{
    (void)state;
    char cert[1300], key[1300];
    snprintf(cert, sizeof cert, "%s/c2.crt", ca);
    snprintf(key, sizeof key, "%s/c2.key", ca);
    struct ts_tls t;
    assert_int_equal(tconn_open(&t, cert, key), 0);
    assert_int_equal(ts_tls_hello(&t, "c0", TALLY_PROTOCOL_VERSION), 0);
    int code = 0;
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_ERROR);
    assert_int_equal(code, TALLY__ERROR_CODE__ERROR_AUTH);
    ts_tls_close(&t);
    assert_true(file_has(tc.d.proc.err, "belongs to collector 'c2'"));
    assert_true(file_has(tc.d.proc.err, "Hello names collector 'c0'"));
    char err[1300];
    int exit_code = push_tls("c0", 0, "wrongid", cert, key, 20000, err, sizeof err);
    assert_int_equal(exit_code, 4);
    assert_true(file_has(err, "ERROR_AUTH"));
}

static void disabled_collector(void **state)
{
    (void)state;
    char cert[1300], key[1300];
    snprintf(cert, sizeof cert, "%s/c1.crt", ext);
    snprintf(key, sizeof key, "%s/c1.key", ext);
    /* A live session of c1 ... */
    struct ts_tls t;
    assert_int_equal(tconn_open(&t, cert, key), 0);
    assert_int_equal(ts_tls_hello(&t, "c1", TALLY_PROTOCOL_VERSION), 0);
    int code = 0;
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_WELCOME);
    /* ... is dropped when c1 is disabled, */
    char *dis[] = {"disable-collector", "c1", NULL};
    assert_int_equal(ctl(NULL, dis), 0);
    int kind = tconn_recv(&t, &code);
    ts_tls_close(&t);
    assert_int_equal(kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(code, TALLY__ERROR_CODE__ERROR_COLLECTOR_DISABLED);
    /* and its next Hello is refused. */
    assert_int_equal(tconn_open(&t, cert, key), 0);
    assert_int_equal(ts_tls_hello(&t, "c1", TALLY_PROTOCOL_VERSION), 0);
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_ERROR);
    assert_int_equal(code, TALLY__ERROR_CODE__ERROR_COLLECTOR_DISABLED);
    ts_tls_close(&t);
    char err[1300];
    assert_int_equal(push_tls("c1", 1, "disabled", cert, key, 20000, err, sizeof err), 5);
    char *en[] = {"enable-collector", "c1", NULL};
    assert_int_equal(ctl(NULL, en), 0);
    ts_sleep_ms(1500); /* tallyd re-reads the collectors every second */
}

/* A certificate the CA signed but nobody pinned speaks for no collector; a collector
 * registered without a pin cannot speak at all under TLS. */
static void unpinned_certificate_and_collector(void **state)
{
    (void)state;
    char *issue[] = {"ca", "issue", ca, "c9", NULL};
    assert_int_equal(ctl(NULL, issue), 0);
    char *add[] = {"add-collector", "nopin", NULL};
    assert_int_equal(ctl(NULL, add), 0);
    ts_sleep_ms(1500); /* tallyd re-reads the collectors every second */
    char cert[1300], key[1300];
    snprintf(cert, sizeof cert, "%s/c9.crt", ca);
    snprintf(key, sizeof key, "%s/c9.key", ca);
    static const char *const names[] = {"c9", "nopin", "c0"};
    for (size_t i = 0; i < 3; i++) {
        struct ts_tls t;
        assert_int_equal(tconn_open(&t, cert, key), 0);
        assert_int_equal(ts_tls_hello(&t, names[i], TALLY_PROTOCOL_VERSION), 0);
        struct ts_frame f;
        assert_int_equal(ts_tls_recv(&t, &f, ts_scale(10000)), 1);
        assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
        fprintf(stderr, "Hello %s with an unpinned certificate: %s\n", names[i], f.message);
        /* c9 is not registered at all: unknown; the others: not this certificate's */
        assert_int_equal(f.error_code, i == 0 ? TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR
                                              : TALLY__ERROR_CODE__ERROR_AUTH);
        if (i > 0)
            assert_non_null(strstr(f.message, "is pinned to no collector"));
        ts_tls_close(&t);
    }
}

/* Pinning another certificate to a collector drops its live session. */
static void repinned_session_dropped(void **state)
{
    (void)state;
    char cert[1300], key[1300], other[1300];
    snprintf(cert, sizeof cert, "%s/c2.crt", ca);
    snprintf(key, sizeof key, "%s/c2.key", ca);
    snprintf(other, sizeof other, "%s/c9.crt", ca);
    struct ts_tls t;
    assert_int_equal(tconn_open(&t, cert, key), 0);
    assert_int_equal(ts_tls_hello(&t, "c2", TALLY_PROTOCOL_VERSION), 0);
    int code = 0;
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_WELCOME);
    char *repin[] = {"add-collector", "c2", "--cert", other, NULL};
    assert_int_equal(ctl(NULL, repin), 0);
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_ERROR);
    assert_int_equal(code, TALLY__ERROR_CODE__ERROR_AUTH);
    ts_tls_close(&t);
    char *back[] = {"add-collector", "c2", "--cert", cert, NULL};
    assert_int_equal(ctl(NULL, back), 0);
    ts_sleep_ms(1500);
}

static void good_collectors_and_circuits(void **state)
{
    (void)state;
    static const char *dirs[3] = {ca, ext, ca};
    for (uint32_t i = 0; i < 3; i++) {
        char cert[1300], key[1300], id[8], err[1300];
        snprintf(id, sizeof id, "c%u", i);
        snprintf(cert, sizeof cert, "%s/%s.crt", dirs[i], id);
        snprintf(key, sizeof key, "%s/%s.key", dirs[i], id);
        int rc = push_tls(id, i, id, cert, key, 60000, err, sizeof err);
        if (rc != 0) {
            ts_dump_tail("tally-push", err, 20);
            fail_msg("tally-push %s exited %d", id, rc);
        }
    }
    int64_t until = ts_now_ms() + ts_scale(10000);
    int rc;
    while ((rc = ts_case_results_match(&tc)) != 0 && ts_now_ms() < until)
        ts_sleep_ms(200);
    assert_int_equal(rc, 0);
    fprintf(stderr, "c2: %llu votes outside its circuits rejected\n",
            (unsigned long long)expected_not_allowed);
    assert_true(expected_not_allowed > 0);
    assert_true(metric("tally_votes_rejected_total{reason=\"not_allowed\"}") ==
                (double)expected_not_allowed);
}

static void replay_with_other_content(void **state)
{
    (void)state;
    char cert[1300], key[1300], err[1300];
    snprintf(cert, sizeof cert, "%s/c0.crt", ca);
    snprintf(key, sizeof key, "%s/c0.key", ca);
    /* Seq 1 of c0 again, with other content, from the holder of c0's certificate. */
    struct ts_tls t;
    assert_int_equal(tconn_open(&t, cert, key), 0);
    assert_int_equal(ts_tls_hello(&t, "c0", TALLY_PROTOCOL_VERSION), 0);
    int code = 0;
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_WELCOME);
    uint64_t ballots[2] = {0x1111, 0x2222};
    uint32_t projects[2] = {0, 0};
    char *first = ts_read_file(tc.registry);
    assert_non_null(first);
    projects[0] = projects[1] = (uint32_t)strtoul(strchr(first, '\n') + 1, NULL, 10);
    free(first);
    assert_int_equal(ts_tls_batch(&t, 1, ballots, projects, 2), 0);
    assert_int_equal(tconn_recv(&t, &code), TALLY__FRAME__MSG_ERROR);
    assert_int_equal(code, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT);
    ts_tls_close(&t);
    /* tally-push with a fresh spool under c0 refuses to number batches again. */
    int rc = push_tls("c0", 0, "replay", cert, key, 30000, err, sizeof err);
    assert_int_not_equal(rc, 0);
    assert_true(file_has(err, "another source is using collector id 'c0'"));
    assert_int_equal(ts_case_results_match(&tc), 0);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(20000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plaintext_gets_no_welcome),
        cmocka_unit_test(foreign_ca_fails_handshake),
        cmocka_unit_test(other_collectors_certificate),
        cmocka_unit_test(disabled_collector),
        cmocka_unit_test(unpinned_certificate_and_collector),
        cmocka_unit_test(repinned_session_dropped),
        cmocka_unit_test(good_collectors_and_circuits),
        cmocka_unit_test(replay_with_other_content),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    ts_cleanup();
    return rc;
}
