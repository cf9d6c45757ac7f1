/* The operators' command lines: tally-push reads a configuration file (the command line
 * overriding it, both checked by the same code), --check-config judges one without
 * connecting or touching the spool, and every program answers --version and -h with exit 0.
 * Needs no PostgreSQL: where tally-push must really run, the test plays a minimal tallyd
 * (Hello, Welcome, then it counts the votes of each Batch frame). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally.pb-c.h"
#include "tally/protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char work[1024];

static int setup(void **state)
{
    (void)state;
    snprintf(work, sizeof work, "%s", ts_workdir("cli"));
    return 0;
}

/* work/name, written with text; the path goes into path. */
static void put(const char *name, const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", work, name);
    if (ts_write_file(path, text) != 0)
        fail_msg("cannot write %s", path);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs argv; stdout into *out and stderr into *err (both malloc'd, never NULL). Returns the
 * exit code. */
static int run(char *const argv[], char **out, char **err)
{
    static unsigned n;
    char path[1200];
    snprintf(path, sizeof path, "%s/stderr-%u.txt", work, n++);
    int code = ts_run(argv, out, path, ts_scale(20000));
    *err = ts_read_file(path);
    if (!*err)
        *err = strdup("");
    if (!*out)
        *out = strdup("");
    return code;
}

/* tally-push with up to 8 arguments (NULL-terminated). */
static int push(char **out, char **err, const char *a0, const char *a1, const char *a2,
                const char *a3, const char *a4, const char *a5, const char *a6, const char *a7)
{
    char *argv[] = {(char *)ts_prog("tally-push"),
                    (char *)a0,
                    (char *)a1,
                    (char *)a2,
                    (char *)a3,
                    (char *)a4,
                    (char *)a5,
                    (char *)a6,
                    (char *)a7,
                    NULL};
    return run(argv, out, err);
}

#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"

static void test_check_config_good(void **state)
{
    (void)state;
    char key[1200], conf[1200], spool[1200], text[4096];
    put("good.key", KEY_HEX, key, sizeof key);
    snprintf(spool, sizeof spool, "%s/spool-good", work);
    snprintf(text, sizeof text,
             "# tally-push for collector c7\n"
             "server = 127.0.0.1:7400\n"
             "\n"
             "   collector=c7\n"
             "spool = \"%s\"\n"
             "ballot-key = %s\n"
             "batch = 250\n"
             "quiet = yes\n",
             spool, key);
    put("good.conf", text, conf, sizeof conf);
    char *out, *err;
    int code = push(&out, &err, "--config", conf, "--check-config", NULL, NULL, NULL, NULL, NULL);
    if (code != 0 || !strstr(out, "tally-push: configuration OK"))
        fail_msg("--check-config on a good file: exit %d (want 0), stdout '%s', stderr '%s'", code,
                 out, err);
    assert_null(strstr(err, "WARN")); /* the file's ballot key was taken */
    assert_false(exists(spool));      /* the spool is left alone */
    free(out);
    free(err);

    /* Without a file, the command line alone is judged. */
    code = push(&out, &err, "--check-config", "--server", "127.0.0.1:7400", "--collector", "c7",
                "--spool", spool, NULL);
    assert_int_equal(code, 0);
    assert_non_null(strstr(out, "configuration OK"));
    assert_false(exists(spool));
    free(out);
    free(err);
}

static void test_check_config_bad(void **state)
{
    (void)state;
    /* Each file is wrong at `line`; the command line is complete and valid, so only the
     * file's error can be reported: a value is checked even where the command line
     * overrides it (batch, server). */
    static const struct {
        const char *text;
        unsigned line;
        const char *why;
    } bad[] = {
        {"server = 127.0.0.1:7400\ncollector = c0\n# colours\ncolour = blue\n", 4,
         "unknown option 'colour'"},
        {"server = 127.0.0.1:7400\n\nbatch = none\n", 3,
         "--batch wants a positive number, not 'none'"},
        {"batch = 0\n", 1, "--batch wants a positive number, not '0'"},
        {"# where tallyd is\nserver = localhost\n", 2, "--server wants HOST:PORT, not 'localhost'"},
        {"collector = not an id!\n", 1, "collector id must be"},
        {"quiet = maybe\n", 1, "--quiet wants yes or no, not 'maybe'"},
        {"spool =\n", 1, "--spool wants a path"},
        {"server 127.0.0.1:7400\n", 1, "expected 'name = value'"},
        {"config = other.conf\n", 1, "'config' is for the command line only"},
        {"check-config = yes\n", 1, "for the command line only"},
        {"version = yes\n", 1, "for the command line only"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[64], conf[1200], where[1300];
        snprintf(name, sizeof name, "bad-%zu.conf", i);
        put(name, bad[i].text, conf, sizeof conf);
        snprintf(where, sizeof where, "%s:%u: ", conf, bad[i].line);
        char *out, *err;
        char *argv[] = {(char *)ts_prog("tally-push"),
                        "--config",
                        conf,
                        "--check-config",
                        "--server",
                        "127.0.0.1:7400",
                        "--collector",
                        "c0",
                        "--spool",
                        work,
                        "--batch",
                        "5",
                        NULL};
        int code = run(argv, &out, &err);
        if (code != 2 || !strstr(err, where) || !strstr(err, bad[i].why) ||
            strstr(out, "configuration OK"))
            fail_msg("file %zu (%s): exit %d (want 2), stderr '%s' (want '%s' and '%s')", i,
                     bad[i].text, code, err, where, bad[i].why);
        free(out);
        free(err);
    }

    /* A file that is not there. */
    char missing[1200], *out, *err;
    snprintf(missing, sizeof missing, "%s/no-such.conf", work);
    int code =
        push(&out, &err, "--config", missing, "--check-config", NULL, NULL, NULL, NULL, NULL);
    assert_int_equal(code, 2);
    assert_non_null(strstr(err, missing));
    free(out);
    free(err);

    /* Valid lines that leave a required option unset. */
    char conf[1200];
    put("partial.conf", "server = 127.0.0.1:7400\ncollector = c0\n", conf, sizeof conf);
    code = push(&out, &err, "--config", conf, "--check-config", NULL, NULL, NULL, NULL, NULL);
    assert_int_equal(code, 2);
    assert_non_null(strstr(err, "--server, --collector and --spool are required"));
    free(out);
    free(err);

    /* --check-config reads the ballot key: one that is not a key fails it. */
    char key[1200], text[2600];
    put("short.key", "0011\n", key, sizeof key);
    snprintf(text, sizeof text,
             "server = 127.0.0.1:7400\ncollector = c0\nspool = %s/s\nballot-key = %s\n", work, key);
    put("badkey.conf", text, conf, sizeof conf);
    code = push(&out, &err, "--config", conf, "--check-config", NULL, NULL, NULL, NULL, NULL);
    assert_int_equal(code, 2);
    assert_non_null(strstr(err, key));
    assert_null(strstr(out, "configuration OK"));
    free(out);
    free(err);
}

static void test_check_config_command_line(void **state)
{
    (void)state;
    char conf[1200], *out, *err;
    put("nospool.conf", "server = 127.0.0.1:7400\ncollector = c0\nbatch = 250\n", conf,
        sizeof conf);
    /* The file and the command line together make a whole configuration. */
    int code =
        push(&out, &err, "--config", conf, "--spool", work, "--check-config", NULL, NULL, NULL);
    assert_int_equal(code, 0);
    assert_non_null(strstr(out, "configuration OK"));
    free(out);
    free(err);
    /* A command-line value is checked like the file's, and named as the command line's. */
    code =
        push(&out, &err, "--config", conf, "--spool", work, "--batch", "0", "--check-config", NULL);
    assert_int_equal(code, 2);
    assert_non_null(strstr(err, "tally-push: --batch wants a positive number, not '0'"));
    assert_null(strstr(err, conf));
    free(out);
    free(err);
}

/* ---- a minimal tallyd --------------------------------------------------------------- */

static int fake_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "test_cli: listen: %s\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static bool readable(int fd, int64_t deadline)
{
    for (;;) {
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r > 0)
            return true;
        if (r == 0 || errno != EINTR)
            return false;
    }
}

static int read_full(int fd, void *buf, size_t len, int64_t deadline)
{
    uint8_t *p = buf;
    while (len > 0) {
        if (!readable(fd, deadline))
            return -1;
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One frame within timeout_ms, or NULL. */
static Tally__Frame *frame_recv(int fd, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    uint32_t be;
    if (read_full(fd, &be, sizeof be, deadline) != 0)
        return NULL;
    uint32_t len = ntohl(be);
    if (len > TALLY_DEFAULT_MAX_FRAME_BYTES)
        return NULL;
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        abort();
    Tally__Frame *f = NULL;
    if (read_full(fd, body, len, deadline) == 0)
        f = tally__frame__unpack(NULL, len, body);
    free(body);
    return f;
}

static int welcome_send(int fd)
{
    Tally__Welcome w = TALLY__WELCOME__INIT;
    w.protocol_version = TALLY_PROTOCOL_VERSION;
    w.max_batch_votes = TALLY_DEFAULT_MAX_BATCH_VOTES;
    w.max_frame_bytes = TALLY_DEFAULT_MAX_FRAME_BYTES;
    w.consultation_id = "cli";
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_WELCOME;
    f.welcome = &w;
    size_t n = tally__frame__get_packed_size(&f);
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        abort();
    uint32_t be = htonl((uint32_t)n);
    memcpy(buf, &be, 4);
    tally__frame__pack(&f, buf + 4);
    int rc = ts_send_all(fd, buf, n + 4);
    free(buf);
    return rc;
}

/* A real run from a file, with three of its settings overridden on the command line: the
 * server (the file's has no listener), the spool and the batch size. The collector id comes
 * from the file alone. */
static void test_run_file_with_overrides(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = fake_listen(&port);
    assert_true(lfd >= 0);
    char conf[1200], input[1200], spool_file[1200], spool_cli[1200], server[64], text[4096];
    snprintf(spool_file, sizeof spool_file, "%s/spool-file", work);
    snprintf(spool_cli, sizeof spool_cli, "%s/spool-cli", work);
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)port);
    snprintf(text, sizeof text,
             "server = 127.0.0.1:%u\ncollector = c-file\nspool = %s\nbatch = 5\nquiet = yes\n",
             (unsigned)ts_free_port(), spool_file);
    put("run.conf", text, conf, sizeof conf);
    put("votes.csv",
        "voter,project_id\nv1,11\nv2,12\nv3,13\nv4,14\nv5,15\nv6,16\nv7,17\nv8,18\nv9,19\nv10,20\n",
        input, sizeof input);

    char out[1200], err[1200];
    snprintf(out, sizeof out, "%s/run.out", work);
    snprintf(err, sizeof err, "%s/run.err", work);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--config",
                    conf,
                    "--server",
                    server,
                    "--spool",
                    spool_cli,
                    "--batch",
                    "3",
                    input,
                    NULL};
    struct ts_proc p;
    assert_int_equal(ts_spawn(&p, "tally-push", argv, out, err), 0);

    int fd = -1;
    if (readable(lfd, ts_now_ms() + ts_scale(15000)))
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        ts_dump_tail("tally-push stderr", err, 20);
        fail_msg("tally-push did not connect to --server %s (the command line's)", server);
    }
    Tally__Frame *f = frame_recv(fd, ts_scale(10000));
    if (!f || f->msg_case != TALLY__FRAME__MSG_HELLO)
        fail_msg("no Hello from tally-push");
    assert_string_equal(f->hello->collector_id, "c-file");
    tally__frame__free_unpacked(f, NULL);
    assert_int_equal(welcome_send(fd), 0);

    /* 10 votes in batches of --batch 3, not the file's 5. */
    static const size_t want[] = {3, 3, 3, 1};
    size_t got[8], n = 0, votes = 0;
    while (votes < 10 && n < 8) {
        f = frame_recv(fd, ts_scale(10000));
        if (!f) {
            ts_dump_tail("tally-push stderr", err, 20);
            fail_msg("tally-push sent %zu votes in %zu batches, then nothing", votes, n);
        }
        if (f->msg_case == TALLY__FRAME__MSG_BATCH) {
            got[n++] = f->batch->n_ballots;
            votes += f->batch->n_ballots;
        }
        tally__frame__free_unpacked(f, NULL);
    }
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
    assert_true(exists(spool_cli));
    assert_false(exists(spool_file));

    /* No Ack ever comes: tally-push waits; SIGTERM ends it with 1, naming the spool. */
    ts_proc_signal(&p, SIGTERM);
    assert_int_equal(ts_proc_wait(&p, ts_scale(10000)), 0);
    assert_int_equal(ts_proc_code(&p), 1);
    char *e = ts_read_file(err);
    assert_non_null(e);
    if (!strstr(e, spool_cli))
        fail_msg("stderr does not name the spool %s: %s", spool_cli, e);
    free(e);
    close(fd);
    close(lfd);
}

/* ---- --version and -h everywhere ------------------------------------------------------ */

static void test_version_and_help(void **state)
{
    (void)state;
    static const char *const progs[] = {"tally-push", "tallyctl", "tally-gen", "tallyd"};
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
        char want[128], *out, *err, *help_out, *help_err;
        snprintf(want, sizeof want, "%s 0.1.0", progs[i]);
        char *v[] = {(char *)ts_prog(progs[i]), "--version", NULL};
        int code = run(v, &out, &err);
        if (code != 0 || strncmp(out, want, strlen(want)) != 0)
            fail_msg("%s --version: exit %d, stdout '%s' (want '%s...'), stderr '%s'", progs[i],
                     code, out, want, err);
        if (strcmp(progs[i], "tally-push") == 0 || strcmp(progs[i], "tallyd") == 0) {
            snprintf(want, sizeof want, "%s 0.1.0 (protocol %u)\n", progs[i],
                     TALLY_PROTOCOL_VERSION);
            assert_string_equal(out, want);
        }
        free(out);
        free(err);

        char *h[] = {(char *)ts_prog(progs[i]), "-h", NULL};
        char *help[] = {(char *)ts_prog(progs[i]), "--help", NULL};
        code = run(h, &out, &err);
        if (code != 0 || strncasecmp(out, "usage:", 6) != 0)
            fail_msg("%s -h: exit %d, stdout '%.80s', stderr '%s'", progs[i], code, out, err);
        assert_int_equal(run(help, &help_out, &help_err), 0);
        assert_string_equal(out, help_out); /* -h is --help */
        assert_non_null(strstr(out, "--version"));
        free(out);
        free(err);
        free(help_out);
        free(help_err);
    }

    /* tally-push's --help comes from its options table: every option is there. */
    static const char *const opts[] = {"--server HOST:PORT", "--collector ID", "--spool DIR",
                                       "--ballot-key FILE",  "--batch N",      "--quiet",
                                       "--config FILE",      "--check-config", "--help",
                                       "--version"};
    char *h[] = {(char *)ts_prog("tally-push"), "-h", NULL};
    char *out, *err;
    assert_int_equal(run(h, &out, &err), 0);
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i]))
            fail_msg("tally-push --help does not list %s", opts[i]);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_config_good),
        cmocka_unit_test(test_check_config_bad),
        cmocka_unit_test(test_check_config_command_line),
        cmocka_unit_test(test_run_file_with_overrides),
        cmocka_unit_test(test_version_and_help),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
