/* Unit tests of libtally: the spool on disk (order, reopen, torn and corrupt files, cursor,
 * limits, nonces kept byte for byte), the session against a fake tallyd, and the failover
 * between several fake ones. A fake server runs in the test's own thread on a loopback socket:
 * whenever it waits for bytes it pumps the client, so the interleaving is deterministic and no
 * thread is needed. The TLS tests need a real TLS peer, so theirs is a thread speaking blocking
 * OpenSSL, with certificates made here with OpenSSL's API. Real end-to-end tests against
 * tallyd live in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "core/endian.h"
#include "tally/client.h"
#include "wire/digest.h"
#include "wire/wire.h"

/* Bytes of Batch.nonce libtally draws for each batch. */
#define NONCE_BYTES 16u

/* ---- scratch spool directories ---- */

struct env {
    char root[64];
    char spool[96];
};

static int env_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    strcpy(e->root, "/tmp/test_tallyclient-XXXXXX");
    if (!mkdtemp(e->root))
        return -1;
    /* One level below, so the library's mkdir is exercised. */
    snprintf(e->spool, sizeof(e->spool), "%s/spool", e->root);
    *state = e;
    return 0;
}

static void rm_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_dir(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    rm_dir(e->root);
    free(e);
    return 0;
}

static void batch_path(const struct env *e, uint64_t seq, char *out, size_t len)
{
    snprintf(out, len, "%s/batch-%020llu.pb", e->spool, (unsigned long long)seq);
}

static bool batch_exists(const struct env *e, uint64_t seq)
{
    char p[256];
    batch_path(e, seq, p, sizeof(p));
    return access(p, F_OK) == 0;
}

static size_t batch_files(const struct env *e)
{
    DIR *d = opendir(e->spool);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, "batch-", 6) == 0;
    closedir(d);
    return n;
}

static struct tally_client_config config(const struct env *e, uint16_t port)
{
    struct tally_client_config cfg = {
        .host = "127.0.0.1",
        .port = port ? port : 1,
        .collector_id = "col-01",
        .spool_dir = e->spool,
        .connect_timeout_ms = 2000,
    };
    return cfg;
}

static struct tally_client *open_client(const struct tally_client_config *cfg)
{
    char err[512];
    struct tally_client *c = tally_client_new(cfg, err, sizeof(err));
    if (!c)
        fail_msg("tally_client_new: %s", err);
    return c;
}

/* Spools a batch of n votes whose ballots encode tag, with cursor "cur-<tag>". */
static uint64_t spool_batch(struct tally_client *c, uint64_t tag, size_t n)
{
    uint64_t ballots[64];
    uint32_t projects[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        ballots[i] = tag * 1000 + i;
        projects[i] = (uint32_t)(i % 7);
    }
    char cursor[32];
    int len = snprintf(cursor, sizeof(cursor), "cur-%llu", (unsigned long long)tag);
    uint64_t seq = 0;
    assert_int_equal(tally_client_spool(c, ballots, projects, n, cursor, (size_t)len, &seq), 0);
    return seq;
}

static void assert_cursor(const struct tally_client *c, const char *want)
{
    char buf[TALLY_CLIENT_CURSOR_MAX];
    size_t len = 99;
    assert_int_equal(tally_client_last_cursor(c, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

static void file_truncate(const char *path, off_t len)
{
    assert_int_equal(truncate(path, len), 0);
}

static void file_flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* ---- the fake tallyd ---- */

/* Big enough for the one test whose batch must outgrow the socket buffers. */
#define FAKE_BUF (32u << 20)

struct fake {
    int lfd;
    int fd;
    uint16_t port;
    uint8_t *buf;
    size_t len;
    struct arena arena;
    uint8_t *last; /* the raw bytes (header included) of the frame fake_try_read returned */
    size_t last_len;
    bool hold; /* fake_send queues into out until fake_flush, to send frames in one write */
    uint8_t out[8192];
    size_t out_len;
    uint64_t epoch; /* writer epoch told in Welcome (fake_listen: 1) */
};

static void fake_listen(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->epoch = 1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    f->buf = malloc(FAKE_BUF);
    f->last = malloc(FAKE_BUF);
    assert_true(f->buf && f->last);
    arena_init(&f->arena, 1 << 16);
}

static void fake_close(struct fake *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->len = 0;
}

static void fake_cleanup(struct fake *f)
{
    fake_close(f);
    close(f->lfd);
    free(f->buf);
    free(f->last);
    arena_cleanup(&f->arena);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pumps the client a little while the fake waits; the client must not fail. */
static void pump_some(struct tally_client *c)
{
    int rc = tally_client_pump(c, 20);
    if (rc != 0 && rc != TALLY_CLIENT_ERR_INTR) {
        struct tally_client_stats st;
        tally_client_stats(c, &st);
        fail_msg("pump: %s (%s)", tally_client_strerror(rc), st.last_error);
    }
}

static void fake_accept(struct fake *f, struct tally_client *c)
{
    fake_close(f);
    int64_t end = mono_ms() + 5000;
    while (mono_ms() < end) {
        f->fd = accept(f->lfd, NULL, NULL);
        if (f->fd >= 0)
            return;
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        pump_some(c);
    }
    fail_msg("client did not connect");
}

/* Returns the next frame from the client (valid until the next call), or NULL if none came
 * within ms milliseconds of pumping. */
static Tally__Frame *fake_try_read(struct fake *f, struct tally_client *c, int ms)
{
    arena_reset(&f->arena);
    int64_t end = mono_ms() + ms;
    for (;;) {
        size_t plen;
        enum wire_status ws = wire_frame_peek(f->buf, f->len, FAKE_BUF - 4, &plen);
        assert_true(ws == WIRE_OK || ws == WIRE_NEED_MORE);
        if (ws == WIRE_OK) {
            Tally__Frame *fr;
            assert_int_equal(wire_frame_decode(f->buf + 4, plen, &f->arena, &fr), WIRE_OK);
            memcpy(f->last, f->buf, 4 + plen);
            f->last_len = 4 + plen;
            memmove(f->buf, f->buf + 4 + plen, f->len - 4 - plen);
            f->len -= 4 + plen;
            return fr;
        }
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) {
            ssize_t n = recv(f->fd, f->buf + f->len, FAKE_BUF - f->len, 0);
            assert_true(n > 0);
            f->len += (size_t)n;
            continue;
        }
        if (mono_ms() >= end)
            return NULL;
        pump_some(c);
    }
}

static Tally__Frame *fake_read(struct fake *f, struct tally_client *c)
{
    Tally__Frame *fr = fake_try_read(f, c, 5000);
    if (!fr)
        fail_msg("no frame from the client");
    return fr;
}

static void fake_send(struct fake *f, const Tally__Frame *fr)
{
    size_t n = wire_frame_size(fr);
    assert_true(n <= sizeof(f->out) - f->out_len);
    wire_frame_encode(fr, f->out + f->out_len);
    f->out_len += n;
    if (!f->hold) {
        assert_int_equal(send(f->fd, f->out, f->out_len, MSG_NOSIGNAL), (ssize_t)f->out_len);
        f->out_len = 0;
    }
}

/* Sends what fake_send queued since hold was set, in one write: the client, which only runs
 * when the fake pumps it, finds all of it in its first read. */
static void fake_flush(struct fake *f)
{
    f->hold = false;
    if (f->out_len)
        assert_int_equal(send(f->fd, f->out, f->out_len, MSG_NOSIGNAL), (ssize_t)f->out_len);
    f->out_len = 0;
}

static void fake_hello(struct fake *f, struct tally_client *c)
{
    fake_accept(f, c);
    Tally__Frame *fr = fake_read(f, c);
    assert_int_equal(fr->msg_case, TALLY__FRAME__MSG_HELLO);
    assert_string_equal(fr->hello->collector_id, "col-01");
    assert_int_equal(fr->hello->protocol_version, TALLY_PROTOCOL_VERSION);
}

static void fake_welcome_limits(struct fake *f, uint64_t durable, uint64_t accepted,
                                uint32_t max_votes, uint32_t max_frame)
{
    Tally__CollectorTotals t = TALLY__COLLECTOR_TOTALS__INIT;
    t.batches = durable;
    t.accepted = accepted;
    Tally__Welcome w = TALLY__WELCOME__INIT;
    w.durable_seq = durable;
    w.protocol_version = TALLY_PROTOCOL_VERSION;
    w.max_batch_votes = max_votes;
    w.max_frame_bytes = max_frame;
    w.totals = &t;
    w.writer_epoch = f->epoch;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_WELCOME;
    fr.welcome = &w;
    fake_send(f, &fr);
}

static void fake_welcome(struct fake *f, uint64_t durable, uint64_t accepted)
{
    fake_welcome_limits(f, durable, accepted, 1000, 1 << 20);
}

/* seq 0: a durable-only ack carrying totals. */
static void fake_ack(struct fake *f, uint64_t seq, uint64_t durable, uint64_t accepted)
{
    Tally__CollectorTotals t = TALLY__COLLECTOR_TOTALS__INIT;
    t.batches = durable;
    t.accepted = accepted;
    Tally__Ack a = TALLY__ACK__INIT;
    a.seq = seq;
    a.durable_seq = durable;
    if (seq == 0)
        a.durable_totals = &t;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ACK;
    fr.ack = &a;
    fake_send(f, &fr);
}

/* tallyd's answer to a batch it had applied before with the same content. */
static void fake_reack(struct fake *f, uint64_t seq, uint64_t durable)
{
    Tally__Ack a = TALLY__ACK__INIT;
    a.seq = seq;
    a.durable_seq = durable;
    a.retransmit = true;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ACK;
    fr.ack = &a;
    fake_send(f, &fr);
}

static void fake_error(struct fake *f, Tally__ErrorCode code, uint64_t expected)
{
    Tally__Error er = TALLY__ERROR__INIT;
    er.code = code;
    er.message = "fake says no";
    er.expected_seq = expected;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ERROR;
    fr.error = &er;
    fake_send(f, &fr);
}

/* Reads one Batch frame and checks it is seq with the ballots spool_batch gave tag == seq. */
static void fake_expect_batch(struct fake *f, struct tally_client *c, uint64_t seq, size_t n)
{
    Tally__Frame *fr = fake_read(f, c);
    assert_int_equal(fr->msg_case, TALLY__FRAME__MSG_BATCH);
    assert_int_equal(fr->batch->seq, seq);
    assert_int_equal(fr->batch->n_ballots, n);
    assert_int_equal(fr->batch->n_projects, n);
    for (size_t i = 0; i < n; i++) {
        assert_true(fr->batch->ballots[i] == seq * 1000 + i);
        assert_int_equal(fr->batch->projects[i], i % 7);
    }
}

/* Pumps until pred holds or 5 s pass. */
static void pump_until_durable(struct tally_client *c, uint64_t durable_seq)
{
    int64_t end = mono_ms() + 5000;
    struct tally_client_stats st;
    for (;;) {
        tally_client_stats(c, &st);
        if (st.durable_seq >= durable_seq)
            return;
        if (mono_ms() >= end)
            fail_msg("durable_seq stuck at %llu", (unsigned long long)st.durable_seq);
        pump_some(c);
    }
}

/* Pumps until the client reports a fatal status, which is returned. */
static int pump_until_fatal(struct tally_client *c)
{
    int64_t end = mono_ms() + 5000;
    while (mono_ms() < end) {
        int rc = tally_client_pump(c, 20);
        if (rc != 0 && rc != TALLY_CLIENT_ERR_INTR)
            return rc;
    }
    fail_msg("client did not fail");
    return 0;
}

/* ---- spool tests ---- */

static void test_spool_reopen_order(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    struct tally_client *c = open_client(&cfg);
    assert_cursor(c, "");
    assert_int_equal(spool_batch(c, 1, 5), 1);
    assert_int_equal(spool_batch(c, 2, 7), 2);
    assert_int_equal(spool_batch(c, 3, 1), 3);
    assert_cursor(c, "cur-3");
    assert_true(batch_exists(e, 1) && batch_exists(e, 2) && batch_exists(e, 3));
    tally_client_free(c);

    c = open_client(&cfg);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_spooled, 3);
    assert_int_equal(st.votes_spooled, 13);
    assert_int_equal(st.batches_pending, 3);
    assert_int_equal(st.votes_pending, 13);
    assert_int_equal(st.durable_seq, 0);
    assert_false(tally_client_is_durable(c));
    assert_cursor(c, "cur-3");
    assert_int_equal(spool_batch(c, 4, 2), 4);

    /* The cursor buffer must be big enough. */
    char small[2];
    size_t len;
    assert_int_equal(tally_client_last_cursor(c, small, sizeof(small), &len),
                     TALLY_CLIENT_ERR_INVALID);
    assert_int_equal(len, 5);
    tally_client_free(c);
}

static void test_spool_bad_arguments(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    struct tally_client *c = open_client(&cfg);
    uint64_t b = 1;
    uint32_t p = 1;
    assert_int_equal(tally_client_spool(c, &b, &p, 0, NULL, 0, NULL), TALLY_CLIENT_ERR_INVALID);
    static uint8_t big[TALLY_CLIENT_CURSOR_MAX + 1];
    assert_int_equal(tally_client_spool(c, &b, &p, 1, big, sizeof(big), NULL),
                     TALLY_CLIENT_ERR_INVALID);
    assert_int_equal(tally_client_spool(c, &b, &p, 1, NULL, 0, NULL), 0);
    assert_cursor(c, "");
    tally_client_free(c);

    char err[256];
    cfg.collector_id = "bad id";
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    cfg.collector_id = "col-01";
    cfg.port = 0;
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
}

static void test_spool_torn_newest_discarded(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 5);
    spool_batch(c, 2, 5);
    spool_batch(c, 3, 5);
    tally_client_free(c);

    /* A crash while batch 3 was being written: a short file. */
    char p3[256];
    batch_path(e, 3, p3, sizeof(p3));
    file_truncate(p3, file_size(p3) / 2);
    c = open_client(&cfg);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_spooled, 2);
    assert_int_equal(st.batches_pending, 2);
    assert_int_equal(st.votes_spooled, 10);
    assert_cursor(c, "cur-2"); /* not the torn batch's cursor */
    assert_false(batch_exists(e, 3));
    assert_int_equal(spool_batch(c, 3, 4), 3); /* its seq is given again: it was never sent */
    tally_client_free(c);

    /* An empty newest file (directory entry durable, data not) is torn too. */
    char p4[256];
    batch_path(e, 4, p4, sizeof(p4));
    int fd = open(p4, O_CREAT | O_WRONLY, 0600);
    close(fd);
    c = open_client(&cfg);
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_spooled, 3);
    assert_cursor(c, "cur-3");
    tally_client_free(c);
}

static void test_spool_corrupt_is_fatal(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 5);
    spool_batch(c, 2, 5);
    spool_batch(c, 3, 5);
    tally_client_free(c);

    char p2[256], err[512];
    batch_path(e, 2, p2, sizeof(p2));
    file_flip_byte(p2, 40);
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "damaged"));
    file_flip_byte(p2, 40);
    c = open_client(&cfg); /* repaired: fine again */
    tally_client_free(c);

    /* A batch missing from the middle is as bad. */
    char moved[300];
    snprintf(moved, sizeof(moved), "%s/../moved", e->spool);
    assert_int_equal(rename(p2, moved), 0);
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(rename(moved, p2), 0);

    /* A damaged state file. */
    char ps[256];
    snprintf(ps, sizeof(ps), "%s/state", e->spool);
    file_flip_byte(ps, 9);
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "state"));
    file_flip_byte(ps, 9);

    /* Batch files without a state file. */
    char moved_state[300];
    snprintf(moved_state, sizeof(moved_state), "%s/../state", e->spool);
    assert_int_equal(rename(ps, moved_state), 0);
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_int_equal(rename(moved_state, ps), 0);
    c = open_client(&cfg);
    tally_client_free(c);
}

static void test_spool_owner_and_lock(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    struct tally_client *c = open_client(&cfg);
    char err[512];
    /* A second process (or client) on the same spool would reuse seqs. */
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));
    tally_client_free(c);
    /* Another collector id on this spool is refused. */
    cfg.collector_id = "col-02";
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "col-01"));
}

static void test_spool_full(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    cfg.max_spooled = 2;
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    spool_batch(c, 2, 3);
    uint64_t b = 9;
    uint32_t p = 9;
    assert_int_equal(tally_client_spool(c, &b, &p, 1, "x", 1, NULL), TALLY_CLIENT_ERR_FULL);
    assert_int_equal(batch_files(e), 2);
    assert_cursor(c, "cur-2");
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.status, 0); /* full is not fatal */
    tally_client_free(c);
}

/* ---- session tests ---- */

static void test_session_durable_deletes_and_cursor_survives(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 4);
    spool_batch(c, 2, 6);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 4);
    fake_expect_batch(&f, c, 2, 6);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    assert_int_equal(tally_client_wait_durable(c, 100), TALLY_CLIENT_ERR_TIMEOUT);
    assert_int_equal(batch_files(e), 2); /* provisional acks delete nothing */
    fake_ack(&f, 0, 2, 9);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);

    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 2);
    assert_int_equal(st.acked_seq, 2);
    assert_true(st.connected && st.server_known);
    assert_int_equal(st.server.batches, 2);
    assert_int_equal(st.server.accepted, 9);
    tally_client_free(c);

    /* Every batch file is gone, the cursor and the numbering are not. */
    c = open_client(&cfg);
    assert_cursor(c, "cur-2");
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_spooled, 2);
    assert_int_equal(st.votes_spooled, 10);
    assert_int_equal(st.durable_seq, 2);
    assert_true(tally_client_is_durable(c));
    assert_int_equal(spool_batch(c, 3, 1), 3);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_resend_after_reconnect(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    for (uint64_t s = 1; s <= 3; s++)
        spool_batch(c, s, 3);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    for (uint64_t s = 1; s <= 3; s++)
        fake_expect_batch(&f, c, s, 3);
    fake_ack(&f, 1, 0, 0);
    /* tallyd goes away having made only batch 1 durable. */
    fake_close(&f);

    fake_hello(&f, c);
    fake_welcome(&f, 1, 3);
    fake_expect_batch(&f, c, 2, 3);
    fake_expect_batch(&f, c, 3, 3);
    pump_until_durable(c, 1);
    assert_false(batch_exists(e, 1));
    assert_true(batch_exists(e, 2) && batch_exists(e, 3));

    /* Batches spooled during the session flow too. */
    spool_batch(c, 4, 2);
    fake_expect_batch(&f, c, 4, 2);
    for (uint64_t s = 2; s <= 4; s++)
        fake_ack(&f, s, 1, 0);
    fake_ack(&f, 0, 4, 11);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.server.accepted, 11);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_window(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    cfg.window = 2;
    struct tally_client *c = open_client(&cfg);
    for (uint64_t s = 1; s <= 4; s++)
        spool_batch(c, s, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 2);
    assert_null(fake_try_read(&f, c, 200)); /* the window is full */
    fake_ack(&f, 1, 0, 0);
    fake_expect_batch(&f, c, 3, 2);
    assert_null(fake_try_read(&f, c, 100));
    fake_ack(&f, 2, 0, 0);
    fake_ack(&f, 3, 0, 0);
    fake_expect_batch(&f, c, 4, 2);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_seq_gap_resends(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    spool_batch(c, 2, 2);
    fake_hello(&f, c);
    /* A (buggy) Welcome that is behind what tallyd applied: the gap error names seq 2 ... */
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 2);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SEQ_GAP, 2);
    fake_close(&f);
    /* ... and the client starts a new session, resending from the oldest batch it holds:
     * batch 1 is durable there but was never acked to this client, so it goes out again. */
    fake_hello(&f, c);
    fake_welcome(&f, 1, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 2);
    fake_reack(&f, 1, 1);
    fake_ack(&f, 2, 1, 0);
    fake_ack(&f, 0, 2, 4);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);

    /* A gap naming a seq this spool never assigned is fatal. */
    spool_batch(c, 3, 2);
    fake_expect_batch(&f, c, 3, 2);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SEQ_GAP, 9);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_FOREIGN);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_foreign_spool(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f, c);
    /* The server holds 5 durable batches from this collector; this spool made only 1. */
    fake_welcome(&f, 5, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_FOREIGN);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_non_null(strstr(st.last_error, "wiped"));
    /* Sticky, and the spool is untouched. */
    assert_int_equal(tally_client_pump(c, 0), TALLY_CLIENT_ERR_FOREIGN);
    uint64_t b = 1;
    uint32_t p = 1;
    assert_int_equal(tally_client_spool(c, &b, &p, 1, NULL, 0, NULL), TALLY_CLIENT_ERR_FOREIGN);
    assert_int_equal(tally_client_wait_durable(c, 10), TALLY_CLIENT_ERR_FOREIGN);
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_server_went_back(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    spool_batch(c, 2, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 2, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 2);
    fake_reack(&f, 1, 2);
    fake_reack(&f, 2, 2);
    pump_until_durable(c, 2);
    fake_close(&f);
    /* Batches 1 and 2 were deleted as durable; a server that lost them cannot get them. */
    fake_hello(&f, c);
    fake_welcome(&f, 1, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_FOREIGN);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_refused(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f, c);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_REFUSED);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_non_null(strstr(st.last_error, "ERROR_UNKNOWN_COLLECTOR"));
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_transient_errors_retry(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f, c);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SHUTTING_DOWN, 0);
    fake_close(&f);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_REPLACED, 0);
    fake_close(&f);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 0, 1, 2);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_torn_newest_covered_by_state_is_corrupt(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    spool_batch(c, 2, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 1, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_reack(&f, 1, 1); /* writes state: next seq 3, durable 1 */
    pump_until_durable(c, 1);
    tally_client_free(c);
    fake_cleanup(&f);

    /* Batch 2 was complete when state was written, so damage to it is not a torn write. */
    char p2[256], err[512];
    batch_path(e, 2, p2, sizeof(p2));
    file_truncate(p2, 10);
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "damaged"));
}

static void test_session_server_away_backoff(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    uint16_t port = f.port;
    fake_cleanup(&f); /* nobody listens there now */
    struct tally_client_config cfg = config(e, port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    assert_int_equal(tally_client_wait_durable(c, 300), TALLY_CLIENT_ERR_TIMEOUT);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_false(st.connected);
    assert_int_equal(st.status, 0);
    assert_non_null(strstr(st.last_error, "connect"));
    tally_client_free(c);
}

/* Pumps for ms milliseconds; every call must return want. */
static void pump_expect(struct tally_client *c, int ms, int want)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end)
        assert_int_equal(tally_client_pump(c, 20), want);
}

/* True if a connection is waiting on the fake's listener (it is accepted and dropped). */
static bool fake_has_caller(struct fake *f)
{
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) {
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        return false;
    }
    close(fd);
    return true;
}

/* Reads one Batch frame of seq and returns a copy of its raw bytes (*len of them). */
static uint8_t *fake_read_raw_batch(struct fake *f, struct tally_client *c, uint64_t seq,
                                    size_t *len)
{
    Tally__Frame *fr = fake_read(f, c);
    assert_int_equal(fr->msg_case, TALLY__FRAME__MSG_BATCH);
    assert_int_equal(fr->batch->seq, seq);
    uint8_t *copy = malloc(f->last_len);
    assert_non_null(copy);
    memcpy(copy, f->last, f->last_len);
    *len = f->last_len;
    return copy;
}

static void test_session_seq_conflict_is_fatal(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    spool_batch(c, 2, 3);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 3);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_close(&f); /* lost before anything became durable */

    /* On the resend tallyd finds batch 1 as it was, but other content under seq 2: someone
     * else has been sending as col-01. */
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 3);
    fake_ack(&f, 1, 0, 0);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0);
    fake_close(&f);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_SEQ_CONFLICT);

    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.status, TALLY_CLIENT_ERR_SEQ_CONFLICT);
    assert_false(st.connected);
    assert_int_equal(st.reconnects, 1);
    assert_non_null(strstr(st.last_error, "another source is using collector id 'col-01'"));
    assert_non_null(strstr(st.last_error, "seq 2 "));
    assert_non_null(strstr(st.last_error, "ERROR_SEQ_CONFLICT"));
    assert_non_null(strstr(st.last_error, e->spool));
    assert_non_null(strstr(st.last_error, "kept"));
    assert_string_equal(tally_client_strerror(TALLY_CLIENT_ERR_SEQ_CONFLICT),
                        "another source is using this collector id");

    /* Sticky, no reconnect loop (backoff would have dialled again well within 300 ms), and
     * the spool is exactly as it was. */
    pump_expect(c, 300, TALLY_CLIENT_ERR_SEQ_CONFLICT);
    assert_false(fake_has_caller(&f));
    uint64_t b = 1;
    uint32_t p = 1;
    assert_int_equal(tally_client_spool(c, &b, &p, 1, NULL, 0, NULL),
                     TALLY_CLIENT_ERR_SEQ_CONFLICT);
    assert_int_equal(tally_client_wait_durable(c, 10), TALLY_CLIENT_ERR_SEQ_CONFLICT);
    tally_client_stats(c, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.batches_pending, 2);
    assert_int_equal(batch_files(e), 2);
    assert_true(batch_exists(e, 1) && batch_exists(e, 2));
    tally_client_free(c);

    /* Still a valid spool: a later run resumes from it. */
    c = open_client(&cfg);
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_pending, 2);
    assert_int_equal(st.durable_seq, 0);
    assert_cursor(c, "cur-2");
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_durable_covers_earlier_session(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    for (uint64_t s = 1; s <= 3; s++)
        spool_batch(c, s, 3);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    for (uint64_t s = 1; s <= 3; s++)
        fake_expect_batch(&f, c, s, 3);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_close(&f); /* batches 1 and 2 applied, nothing durable yet */

    /* The checkpoint commits just after the new Welcome went out: the first ack of the new
     * session makes batches 1 and 2 durable before the client resent them. They were acked
     * by seq on the first connection, so what tallyd holds is theirs: released, not resent
     * (test_session_ack_durable_unacked_resent has the unacked case). Both frames come in one
     * write so the client reads them before it writes any batch. */
    fake_hello(&f, c);
    f.hold = true;
    fake_welcome(&f, 0, 0);
    fake_ack(&f, 0, 2, 6);
    fake_flush(&f);
    pump_until_durable(c, 2);
    assert_false(batch_exists(e, 1) || batch_exists(e, 2));
    assert_true(batch_exists(e, 3));

    /* What is durable is not resent: batch 3 comes next, on this same connection. */
    fake_expect_batch(&f, c, 3, 3);
    assert_null(fake_try_read(&f, c, 100));
    fake_ack(&f, 3, 2, 0);
    spool_batch(c, 4, 1);
    fake_expect_batch(&f, c, 4, 1);
    fake_ack(&f, 4, 2, 0);
    fake_ack(&f, 0, 4, 10);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_true(st.connected);
    assert_int_equal(st.reconnects, 1); /* no forced reconnect */
    assert_int_equal(st.durable_seq, 4);
    assert_int_equal(st.acked_seq, 4);
    assert_int_equal(st.server.accepted, 10);
    assert_false(fake_has_caller(&f));

    /* Beyond what this spool ever assigned is still fatal. */
    fake_ack(&f, 0, 5, 10);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_FOREIGN);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* A batch too big for the socket buffers, acked on an earlier connection and found durable
 * while its resend is half written: the rest of its frame still goes out (the stream must stay
 * framed) although the spool let it go. */
static void test_session_durable_while_frame_half_written(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    int small = 4096; /* inherited by the accepted socket */
    assert_int_equal(setsockopt(f.lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);

    /* 9 bytes a vote (fixed64 + 1-byte varint); past the largest send buffer plus slack. */
    size_t wmem = 4u << 20;
    FILE *fp = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (fp) {
        unsigned long lo, def, hi;
        if (fscanf(fp, "%lu %lu %lu", &lo, &def, &hi) == 3)
            wmem = hi;
        fclose(fp);
    }
    size_t n = (wmem + (2u << 20)) / 9;
    if (n * 9 + 4096 > FAKE_BUF)
        skip();
    uint64_t *ballots = malloc(n * sizeof(*ballots));
    uint32_t *projects = malloc(n * sizeof(*projects));
    assert_true(ballots && projects);
    for (size_t i = 0; i < n; i++) {
        ballots[i] = 7000000 + i;
        projects[i] = (uint32_t)(i % 7);
    }
    uint64_t seq;
    assert_int_equal(tally_client_spool(c, ballots, projects, n, "big", 3, &seq), 0);
    assert_int_equal(seq, 1);
    spool_batch(c, 2, 2);

    /* The first connection: both batches applied and acked, nothing durable yet. */
    fake_hello(&f, c);
    fake_welcome_limits(&f, 0, 0, (uint32_t)n, FAKE_BUF);
    Tally__Frame *fr = fake_read(&f, c);
    assert_int_equal(fr->batch->seq, 1);
    fake_expect_batch(&f, c, 2, 2);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_close(&f);

    fake_hello(&f, c);
    fake_welcome_limits(&f, 0, 0, (uint32_t)n, FAKE_BUF);
    /* The fake reads nothing: the client fills the socket and stops in batch 1. */
    int64_t end = mono_ms() + 300;
    while (mono_ms() < end)
        pump_some(c);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_true(st.connected);
    assert_int_equal(st.sent_seq, 0);
    int queued = 0;
    assert_int_equal(ioctl(f.fd, FIONREAD, &queued), 0);
    assert_true(queued > 0);

    /* Batch 1, acked on the first connection, is durable now: released at once. */
    fake_ack(&f, 0, 1, (uint64_t)n);
    pump_until_durable(c, 1);
    assert_false(batch_exists(e, 1));

    /* The fake still receives the whole of batch 1 (a retransmission to tallyd), then 2. */
    fr = fake_read(&f, c);
    assert_int_equal(fr->msg_case, TALLY__FRAME__MSG_BATCH);
    assert_int_equal(fr->batch->seq, 1);
    assert_int_equal(fr->batch->n_ballots, n);
    assert_true(fr->batch->ballots[n - 1] == 7000000 + n - 1);
    assert_int_equal(fr->batch->nonce.len, NONCE_BYTES);
    fake_reack(&f, 1, 1);
    fake_expect_batch(&f, c, 2, 2);
    fake_reack(&f, 2, 1);
    fake_ack(&f, 0, 2, (uint64_t)n + 2);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    tally_client_stats(c, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(batch_files(e), 0);
    free(ballots);
    free(projects);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* The spool file holds the frame at this offset (src/client/spool.c). */
#define SPOOL_FRAME_AT 32

static uint8_t *file_read(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    static uint8_t buf[1 << 16];
    *len = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    return buf;
}

static void test_session_resend_is_byte_identical(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    /* The same votes twice: only the nonce tells the batches apart. */
    spool_batch(c, 1, 4);
    uint64_t ballots[4], seq;
    uint32_t projects[4];
    for (size_t i = 0; i < 4; i++) {
        ballots[i] = 1000 + i;
        projects[i] = (uint32_t)(i % 7);
    }
    assert_int_equal(tally_client_spool(c, ballots, projects, 4, NULL, 0, &seq), 0);
    assert_int_equal(seq, 2);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    size_t len1, len2;
    uint8_t *first1 = fake_read_raw_batch(&f, c, 1, &len1);
    Tally__Frame *fr = fake_read(&f, c);
    assert_int_equal(fr->batch->seq, 2);
    assert_int_equal(fr->batch->nonce.len, NONCE_BYTES);
    uint8_t nonce2[NONCE_BYTES];
    memcpy(nonce2, fr->batch->nonce.data, NONCE_BYTES);
    uint8_t *first2 = malloc(f.last_len);
    assert_non_null(first2);
    memcpy(first2, f.last, f.last_len);
    len2 = f.last_len;
    {
        Tally__Frame *d;
        struct arena a;
        arena_init(&a, 4096);
        assert_int_equal(wire_frame_decode(first1 + 4, len1 - 4, &a, &d), WIRE_OK);
        assert_int_equal(d->batch->nonce.len, NONCE_BYTES);
        assert_true(memcmp(d->batch->nonce.data, nonce2, NONCE_BYTES) != 0);
        arena_cleanup(&a);
    }
    /* What went out is what the spool holds. */
    char path[256];
    size_t flen;
    batch_path(e, 1, path, sizeof(path));
    const uint8_t *img = file_read(path, &flen);
    assert_true(flen >= SPOOL_FRAME_AT + len1);
    assert_memory_equal(img + SPOOL_FRAME_AT, first1, len1);
    fake_close(&f);

    /* Resent after a reconnect, by the same client. */
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    size_t l;
    uint8_t *again = fake_read_raw_batch(&f, c, 1, &l);
    assert_int_equal(l, len1);
    assert_memory_equal(again, first1, len1);
    free(again);
    again = fake_read_raw_batch(&f, c, 2, &l);
    assert_int_equal(l, len2);
    assert_memory_equal(again, first2, len2);
    free(again);
    fake_close(&f);
    tally_client_free(c);

    /* And by a new client on the reopened spool, as after a restart. */
    c = open_client(&cfg);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    again = fake_read_raw_batch(&f, c, 1, &l);
    assert_int_equal(l, len1);
    assert_memory_equal(again, first1, len1);
    free(again);
    again = fake_read_raw_batch(&f, c, 2, &l);
    assert_int_equal(l, len2);
    assert_memory_equal(again, first2, len2);
    free(again);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_ack(&f, 0, 2, 8);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    free(first1);
    free(first2);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* Rewrites batch file seq as the version before Batch.nonce wrote it: the same layout, the
 * frame without a nonce. Returns the new frame (*len bytes, caller frees). */
static uint8_t *spool_file_drop_nonce(const struct env *e, uint64_t seq, size_t *len)
{
    char path[256];
    batch_path(e, seq, path, sizeof(path));
    size_t flen;
    const uint8_t *img = file_read(path, &flen);
    uint32_t frame_len = le32_get(img + 20), cursor_len = le32_get(img + 24);
    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *fr;
    assert_int_equal(wire_frame_decode(img + SPOOL_FRAME_AT + 4, frame_len - 4, &a, &fr), WIRE_OK);
    assert_int_equal(fr->batch->nonce.len, NONCE_BYTES);
    fr->batch->nonce.len = 0;
    fr->batch->nonce.data = NULL;
    size_t new_len = wire_frame_size(fr);
    uint8_t *frame = malloc(new_len);
    assert_non_null(frame);
    wire_frame_encode(fr, frame);
    arena_cleanup(&a);

    size_t out_len = SPOOL_FRAME_AT + new_len + cursor_len + 16;
    uint8_t *out = malloc(out_len);
    assert_non_null(out);
    memcpy(out, img, SPOOL_FRAME_AT);
    le32_put(out + 20, (uint32_t)new_len);
    memcpy(out + SPOOL_FRAME_AT, frame, new_len);
    memcpy(out + SPOOL_FRAME_AT + new_len, img + SPOOL_FRAME_AT + frame_len, cursor_len);
    crypto_generichash(out + out_len - 16, 16, out, out_len - 16, NULL, 0);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(out, 1, out_len, fp), out_len);
    fclose(fp);
    free(out);
    *len = new_len;
    return frame;
}

static void test_session_old_spool_without_nonce(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    tally_client_free(c);
    size_t old_len;
    uint8_t *old = spool_file_drop_nonce(e, 1, &old_len);

    /* It loads, and goes out exactly as it was written: no nonce is added on the way. */
    c = open_client(&cfg);
    assert_cursor(c, "cur-1");
    spool_batch(c, 2, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    size_t l;
    uint8_t *got = fake_read_raw_batch(&f, c, 1, &l);
    assert_int_equal(l, old_len);
    assert_memory_equal(got, old, old_len);
    free(got);
    Tally__Frame *fr = fake_read(&f, c);
    assert_int_equal(fr->batch->seq, 2);
    assert_int_equal(fr->batch->nonce.len, NONCE_BYTES);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_ack(&f, 0, 2, 5);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    free(old);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* Reads the next frame, which must be batch seq exactly as its spool file holds it. */
static void fake_expect_spooled(struct fake *f, struct tally_client *c, const struct env *e,
                                uint64_t seq)
{
    size_t len;
    uint8_t *got = fake_read_raw_batch(f, c, seq, &len);
    char path[256];
    size_t flen;
    batch_path(e, seq, path, sizeof(path));
    const uint8_t *img = file_read(path, &flen);
    assert_int_equal(le32_get(img + 20), len);
    assert_memory_equal(img + SPOOL_FRAME_AT, got, len);
    free(got);
}

/* Two processes, each with its own spool, under one collector id: the other one's seq 1 is
 * durable, so Welcome says 1, and this client's own seq 1 was never acked. tallyd holds *some*
 * seq 1, not necessarily this one: it is resent and tallyd compares digests. */
static void test_session_welcome_durable_unacked_conflict(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);

    fake_hello(&f, c);
    fake_welcome(&f, 1, 2);
    fake_expect_spooled(&f, c, e, 1);
    assert_true(batch_exists(e, 1)); /* not released by the Welcome */
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_SEQ_CONFLICT);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_non_null(strstr(st.last_error, "seq 1 "));
    assert_int_equal(st.batches_pending, 1);
    assert_int_equal(st.durable_seq, 0);
    assert_true(batch_exists(e, 1));
    assert_int_equal(tally_client_wait_durable(c, 10), TALLY_CLIENT_ERR_SEQ_CONFLICT);
    tally_client_free(c);

    /* The spool on disk says nothing was released. */
    c = open_client(&cfg);
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 0);
    assert_int_equal(st.batches_pending, 1);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* The same Welcome when tallyd does hold this client's seq 1 (it was applied on a connection
 * whose ack was lost): the resend is acked as a retransmission and only that releases it. */
static void test_session_welcome_durable_unacked_confirmed(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);

    fake_hello(&f, c);
    fake_welcome(&f, 1, 2);
    fake_expect_spooled(&f, c, e, 1);
    assert_int_equal(tally_client_wait_durable(c, 100), TALLY_CLIENT_ERR_TIMEOUT);
    assert_true(batch_exists(e, 1));
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 0);
    assert_int_equal(st.sent_seq, 1);
    assert_int_equal(st.acked_seq, 0);

    fake_reack(&f, 1, 1);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 1);
    assert_int_equal(st.acked_seq, 1);
    assert_int_equal(st.reconnects, 0);
    assert_null(fake_try_read(&f, c, 100)); /* nothing more to send */
    tally_client_free(c);
    fake_cleanup(&f);
}

/* A durable-only ack mid-session covering batches sent on an earlier connection whose acks
 * were lost: they are resent like the rest and each goes only with its own ack. A durable
 * seq covering a batch sent on this connection, but not yet acked, does not release it
 * either. */
static void test_session_ack_durable_unacked_resent(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    for (uint64_t s = 1; s <= 3; s++)
        spool_batch(c, s, 3);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    for (uint64_t s = 1; s <= 3; s++)
        fake_expect_batch(&f, c, s, 3);
    fake_close(&f); /* no ack came back */

    /* Durable up to 2 arrives with the Welcome, before the client wrote anything. */
    fake_hello(&f, c);
    f.hold = true;
    fake_welcome(&f, 0, 0);
    fake_ack(&f, 0, 2, 6);
    fake_flush(&f);
    fake_expect_spooled(&f, c, e, 1);
    fake_expect_spooled(&f, c, e, 2);
    fake_expect_spooled(&f, c, e, 3);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 0);
    assert_int_equal(batch_files(e), 3);

    fake_reack(&f, 1, 2);
    pump_until_durable(c, 1);
    assert_false(batch_exists(e, 1));
    assert_true(batch_exists(e, 2));
    fake_reack(&f, 2, 2);
    pump_until_durable(c, 2);
    assert_true(batch_exists(e, 3));

    /* Batch 3 is durable before its ack comes. */
    fake_ack(&f, 0, 3, 9);
    assert_int_equal(tally_client_wait_durable(c, 100), TALLY_CLIENT_ERR_TIMEOUT);
    assert_true(batch_exists(e, 3));
    fake_reack(&f, 3, 3);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 3);
    assert_int_equal(st.acked_seq, 3);
    assert_int_equal(st.sent_seq, 3);
    assert_int_equal(st.reconnects, 1);
    assert_null(fake_try_read(&f, c, 100));
    tally_client_free(c);
    fake_cleanup(&f);
}

/* As above, but tallyd holds other content under seq 1: fatal, nothing released. */
static void test_session_ack_durable_unacked_conflict(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    spool_batch(c, 2, 3);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 3);
    fake_expect_batch(&f, c, 2, 3);
    fake_close(&f);

    fake_hello(&f, c);
    f.hold = true;
    fake_welcome(&f, 0, 0);
    fake_ack(&f, 0, 2, 6);
    fake_flush(&f);
    fake_expect_spooled(&f, c, e, 1);
    fake_expect_spooled(&f, c, e, 2);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_SEQ_CONFLICT);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_non_null(strstr(st.last_error, "seq 1 "));
    assert_int_equal(st.durable_seq, 0);
    assert_int_equal(st.batches_pending, 2);
    assert_true(batch_exists(e, 1) && batch_exists(e, 2));
    tally_client_free(c);
    fake_cleanup(&f);
}

/* What tallyd acked under its seq, on this connection or an earlier one, goes as soon as it is
 * durable: no resend, no extra traffic. Beside it, an unacked batch in the same durable range
 * is resent. */
static void test_session_acked_released_without_resend(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    for (uint64_t s = 1; s <= 3; s++)
        spool_batch(c, s, 2);

    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    for (uint64_t s = 1; s <= 3; s++)
        fake_expect_batch(&f, c, s, 2);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    pump_until_durable(c, 0);
    fake_close(&f); /* the ack of batch 3 is lost */

    /* 1 and 2 are released by the Welcome itself; only 3 goes out again. */
    fake_hello(&f, c);
    fake_welcome(&f, 3, 6);
    fake_expect_spooled(&f, c, e, 3);
    assert_false(batch_exists(e, 1) || batch_exists(e, 2));
    assert_true(batch_exists(e, 3));
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 2);
    fake_reack(&f, 3, 3);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);

    /* In the current session: acked, then durable, then gone; nothing is sent again. */
    spool_batch(c, 4, 2);
    spool_batch(c, 5, 2);
    fake_expect_batch(&f, c, 4, 2);
    fake_expect_batch(&f, c, 5, 2);
    fake_ack(&f, 4, 3, 0);
    fake_ack(&f, 5, 3, 0);
    fake_ack(&f, 0, 5, 10);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_null(fake_try_read(&f, c, 100));
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 5);
    assert_int_equal(st.acked_seq, 5);
    assert_int_equal(st.sent_seq, 5);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(batch_files(e), 0);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* An ack from one writer says nothing of what the next one holds: after a take-over (a new
 * writer epoch in Welcome) a batch acked before but not yet released is resent to check it
 * is ours, even though the new writer's durable seq covers it. */
static void test_session_new_epoch_unconfirms(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_ack(&f, 1, 0, 0);
    pump_until_durable(c, 0);
    fake_close(&f); /* that writer dies before its checkpoint */

    f.epoch = 2; /* another writer, whose seq 1 may be another source's */
    fake_hello(&f, c);
    fake_welcome(&f, 1, 2);
    fake_expect_spooled(&f, c, e, 1);
    assert_true(batch_exists(e, 1));
    fake_error(&f, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0);
    assert_int_equal(tally_client_wait_durable(c, 5000), TALLY_CLIENT_ERR_SEQ_CONFLICT);
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
    fake_cleanup(&f);
}

/* After a restart nothing is confirmed: a batch the server reports durable is resent by the
 * new process and released on its ack. */
static void test_session_restart_resends_durable_unconfirmed(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    spool_batch(c, 2, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_expect_batch(&f, c, 2, 2);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    pump_until_durable(c, 0);
    fake_close(&f);
    tally_client_free(c); /* the process stops before anything is durable */

    c = open_client(&cfg);
    fake_hello(&f, c);
    fake_welcome(&f, 2, 4);
    fake_expect_spooled(&f, c, e, 1);
    fake_expect_spooled(&f, c, e, 2);
    assert_int_equal(batch_files(e), 2);
    fake_reack(&f, 1, 2);
    fake_reack(&f, 2, 2);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* ---- several servers: an active tallyd and its standbys ---- */

struct logbuf {
    char text[32768];
    size_t len;
};

static void log_collect(void *arg, enum tally_client_log_level level, const char *msg)
{
    struct logbuf *b = arg;
    (void)level;
    int n = snprintf(b->text + b->len, sizeof(b->text) - b->len, "%s\n", msg);
    if (n > 0 && (size_t)n < sizeof(b->text) - b->len)
        b->len += (size_t)n;
}

/* A config naming 127.0.0.1:ports[i] for i < n (in list, which must outlive it), logging into
 * lb. */
static struct tally_client_config config_servers(const struct env *e,
                                                 struct tally_client_server *list,
                                                 const uint16_t *ports, size_t n, struct logbuf *lb)
{
    struct tally_client_config cfg = config(e, 0);
    cfg.host = NULL;
    cfg.port = 0;
    for (size_t i = 0; i < n; i++)
        list[i] = (struct tally_client_server){"127.0.0.1", ports[i]};
    cfg.servers = list;
    cfg.n_servers = n;
    memset(lb, 0, sizeof(*lb));
    cfg.log_cb = log_collect;
    cfg.log_arg = lb;
    return cfg;
}

/* A loopback port nobody listens on (a standby holds its port this way: bound, not
 * listening), as far as this process knows. */
static uint16_t dead_port(void)
{
    struct fake f;
    fake_listen(&f);
    uint16_t port = f.port;
    fake_cleanup(&f);
    return port;
}

static void assert_log_has(const struct logbuf *lb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void assert_log_has(const struct logbuf *lb, const char *fmt, ...)
{
    char want[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    if (!strstr(lb->text, want))
        fail_msg("log lacks '%s'; it says:\n%s", want, lb->text);
}

/* The first server refuses (a standby): the second is dialled at once, in the same round,
 * and the session runs there as with a single server. */
static void test_failover_refused_next_used(void **state)
{
    struct env *e = *state;
    struct fake f;
    uint16_t dead = dead_port();
    fake_listen(&f);
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg = config_servers(e, list, (uint16_t[]){dead, f.port}, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    spool_batch(c, 2, 3);

    fake_hello(&f, c);
    assert_log_has(&lb, "cannot connect to 127.0.0.1:%u", dead);
    assert_log_has(&lb, "trying server 2 of 2 (127.0.0.1:%u) now", f.port);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 3);
    fake_expect_batch(&f, c, 2, 3);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_ack(&f, 0, 2, 6);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    assert_log_has(&lb, "connected to 127.0.0.1:%u (server 2 of 2) as col-01", f.port);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_true(st.connected);
    assert_int_equal(st.server_index, 1);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(st.server.accepted, 6);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* A tallyd that is stopping says ERROR_SHUTTING_DOWN: the next server is asked, not the same
 * one again. A connection closed before Welcome moves on too; after a whole round failed the
 * client backs off and starts the next round where the list goes on. */
static void test_failover_shutting_down_next_used(void **state)
{
    struct env *e = *state;
    struct fake f1, f2;
    fake_listen(&f1);
    fake_listen(&f2);
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg =
        config_servers(e, list, (uint16_t[]){f1.port, f2.port}, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);

    fake_hello(&f1, c);
    fake_error(&f1, TALLY__ERROR_CODE__ERROR_SHUTTING_DOWN, 0);
    fake_close(&f1);
    fake_hello(&f2, c);
    assert_false(fake_has_caller(&f1));
    assert_log_has(
        &lb, "ERROR_SHUTTING_DOWN: fake says no; trying server 2 of 2 (127.0.0.1:%u) now", f2.port);

    /* f2 hangs up before its Welcome: that round is over, the next starts with f1. */
    fake_close(&f2);
    fake_hello(&f1, c);
    assert_false(fake_has_caller(&f2));
    assert_log_has(&lb, "no server answered: trying server 1 of 2 (127.0.0.1:%u) in", f1.port);
    fake_welcome(&f1, 0, 0);
    fake_expect_batch(&f1, c, 1, 2);
    fake_ack(&f1, 1, 0, 0);
    fake_ack(&f1, 0, 1, 2);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.server_index, 0);
    assert_int_equal(st.reconnects, 0); /* only one session ever got its Welcome */
    tally_client_free(c);
    fake_cleanup(&f2);
    fake_cleanup(&f1);
}

/* The active tallyd dies mid-session with batches acked but not durable; the standby takes
 * over (a new writer epoch) with a checkpoint the dead one committed but could not announce.
 * Everything not released goes to the new server: batch 2, covered by its durable seq but
 * acked only by the dead writer, is resent byte for byte and released on the new writer's own
 * ack; batch 3 is resent as new. Nothing is released on the old writer's word. */
static void test_failover_resends_what_is_not_durable(void **state)
{
    struct env *e = *state;
    struct fake f1, f2;
    fake_listen(&f1);
    fake_listen(&f2);
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg =
        config_servers(e, list, (uint16_t[]){f1.port, f2.port}, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    for (uint64_t s = 1; s <= 3; s++)
        spool_batch(c, s, 2);

    fake_hello(&f1, c);
    fake_welcome(&f1, 0, 0);
    for (uint64_t s = 1; s <= 3; s++)
        fake_expect_batch(&f1, c, s, 2);
    for (uint64_t s = 1; s <= 3; s++)
        fake_ack(&f1, s, 0, 0);
    fake_ack(&f1, 0, 1, 2);
    pump_until_durable(c, 1);
    fake_close(&f1); /* SIGKILL */

    f2.epoch = 2;
    fake_hello(&f2, c);
    assert_log_has(&lb, "closed by the server; trying server 2 of 2 (127.0.0.1:%u) now", f2.port);
    fake_welcome(&f2, 2, 4);
    fake_expect_spooled(&f2, c, e, 2);
    fake_expect_spooled(&f2, c, e, 3);
    assert_null(fake_try_read(&f2, c, 100));
    assert_false(batch_exists(e, 1));
    assert_true(batch_exists(e, 2) && batch_exists(e, 3));
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 1);

    fake_reack(&f2, 2, 2);
    pump_until_durable(c, 2);
    assert_true(batch_exists(e, 3));
    fake_ack(&f2, 3, 2, 0);
    assert_int_equal(tally_client_wait_durable(c, 100), TALLY_CLIENT_ERR_TIMEOUT);
    assert_true(batch_exists(e, 3)); /* acked, not yet durable */
    fake_ack(&f2, 0, 3, 6);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(batch_files(e), 0);
    tally_client_stats(c, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.server_index, 1);
    assert_false(fake_has_caller(&f1));
    tally_client_free(c);
    fake_cleanup(&f2);
    fake_cleanup(&f1);
}

/* The same epoch number from another listed server is not the same writer (two databases by
 * mistake): its durable seq releases nothing acked elsewhere. Back on the server that acked,
 * in the same epoch, the confirmations count again as they do with a single server. */
static void test_failover_acks_count_per_server(void **state)
{
    struct env *e = *state;
    struct fake f1, f2;
    fake_listen(&f1);
    fake_listen(&f2);
    f1.epoch = f2.epoch = 7;
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg =
        config_servers(e, list, (uint16_t[]){f1.port, f2.port}, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);

    fake_hello(&f1, c);
    fake_welcome(&f1, 0, 0);
    fake_expect_batch(&f1, c, 1, 2);
    fake_ack(&f1, 1, 0, 0);
    pump_until_durable(c, 0);
    fake_close(&f1);

    fake_hello(&f2, c);
    fake_welcome(&f2, 1, 2);
    fake_expect_spooled(&f2, c, e, 1);
    assert_true(batch_exists(e, 1));
    fake_reack(&f2, 1, 1);
    pump_until_durable(c, 1);

    /* Batch 2 acked by f2, then f2's connection drops and f1 is away: the round comes back
     * to f2, same epoch, whose durable seq now covers batch 2: released, not resent. */
    spool_batch(c, 2, 2);
    fake_expect_batch(&f2, c, 2, 2);
    fake_ack(&f2, 2, 1, 0);
    pump_until_durable(c, 1);
    fake_cleanup(&f1);
    fake_close(&f2);
    fake_hello(&f2, c);
    fake_welcome(&f2, 2, 4);
    pump_until_durable(c, 2);
    assert_null(fake_try_read(&f2, c, 100));
    assert_int_equal(batch_files(e), 0);
    tally_client_free(c);
    fake_cleanup(&f2);
}

/* Fatal stays fatal whichever server said it: no other server is asked. */
static void test_failover_fatal_stays_fatal(void **state)
{
    struct env *e = *state;
    struct fake f1, f2;
    fake_listen(&f1);
    fake_listen(&f2);
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg =
        config_servers(e, list, (uint16_t[]){f1.port, f2.port}, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f1, c);
    fake_error(&f1, TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_REFUSED);
    pump_expect(c, 300, TALLY_CLIENT_ERR_REFUSED);
    assert_false(fake_has_caller(&f2));
    assert_false(fake_has_caller(&f1));
    tally_client_free(c);

    /* Another source under this collector id, found on the first server. */
    c = open_client(&cfg);
    fake_hello(&f1, c);
    fake_welcome(&f1, 0, 0);
    fake_expect_spooled(&f1, c, e, 1);
    fake_error(&f1, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0);
    fake_close(&f1);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_SEQ_CONFLICT);
    pump_expect(c, 300, TALLY_CLIENT_ERR_SEQ_CONFLICT);
    assert_false(fake_has_caller(&f2));
    assert_false(fake_has_caller(&f1));
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
    fake_cleanup(&f2);
    fake_cleanup(&f1);
}

/* An error about this collector's session (SEQ_GAP, REPLACED) says nothing of the server's
 * health: the same server is asked again, after the back-off. */
static void test_failover_session_errors_same_server(void **state)
{
    struct env *e = *state;
    struct fake f1, f2;
    fake_listen(&f1);
    fake_listen(&f2);
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg =
        config_servers(e, list, (uint16_t[]){f1.port, f2.port}, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f1, c);
    fake_welcome(&f1, 0, 0);
    fake_expect_batch(&f1, c, 1, 2);
    fake_error(&f1, TALLY__ERROR_CODE__ERROR_SEQ_GAP, 1);
    fake_hello(&f1, c);
    assert_log_has(&lb, "retrying server 1 of 2 (127.0.0.1:%u) in", f1.port);
    fake_welcome(&f1, 0, 0);
    fake_expect_batch(&f1, c, 1, 2);
    fake_error(&f1, TALLY__ERROR_CODE__ERROR_REPLACED, 0);
    fake_hello(&f1, c);
    fake_welcome(&f1, 0, 0);
    fake_expect_batch(&f1, c, 1, 2);
    fake_ack(&f1, 1, 0, 0);
    fake_ack(&f1, 0, 1, 2);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_false(fake_has_caller(&f2));
    tally_client_free(c);
    fake_cleanup(&f2);
    fake_cleanup(&f1);
}

/* Nobody answers: the servers are dialled in turn, each once per round, and the client backs
 * off between rounds only, doubling: a handful of attempts in 450 ms, not a busy loop. */
static void test_failover_round_robin_backoff(void **state)
{
    struct env *e = *state;
    uint16_t ports[2] = {dead_port(), dead_port()};
    if (ports[0] == ports[1])
        ports[1] = dead_port();
    struct tally_client_server list[2];
    struct logbuf lb;
    struct tally_client_config cfg = config_servers(e, list, ports, 2, &lb);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    assert_int_equal(tally_client_wait_durable(c, 450), TALLY_CLIENT_ERR_TIMEOUT);
    tally_client_free(c);

    unsigned attempts = 0;
    for (const char *line = lb.text; *line; line = strchr(line, '\n') + 1) {
        char want[96];
        snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%u: ", ports[attempts % 2]);
        if (strncmp(line, want, strlen(want)) != 0)
            fail_msg("attempt %u: '%s' wanted, log:\n%s", attempts + 1, want, lb.text);
        const char *eol = strchr(line, '\n');
        snprintf(want, sizeof(want),
                 attempts % 2 ? "no server answered: trying server 1 of 2"
                              : "trying server 2 of 2 (127.0.0.1:%u) now",
                 ports[1]);
        const char *at = strstr(line, want);
        if (!at || at > eol)
            fail_msg("attempt %u does not say '%s':\n%s", attempts + 1, want, lb.text);
        attempts++;
    }
    /* Rounds start at 0, ~75, ~225 ms (back-off 50-100, then 100-200, then 200-400). */
    if (attempts < 4 || attempts > 8)
        fail_msg("%u attempts in 450 ms:\n%s", attempts, lb.text);
}

static void test_failover_config(void **state)
{
    struct env *e = *state;
    struct tally_client_server list[TALLY_CLIENT_SERVERS_MAX + 1];
    uint16_t ports[TALLY_CLIENT_SERVERS_MAX + 1];
    for (size_t i = 0; i <= TALLY_CLIENT_SERVERS_MAX; i++)
        ports[i] = (uint16_t)(7400 + i);
    struct logbuf lb;
    char err[256];
    struct tally_client_config cfg =
        config_servers(e, list, ports, TALLY_CLIENT_SERVERS_MAX + 1, &lb);
    cfg.n_servers = 2;
    struct tally_client *c = open_client(&cfg);
    tally_client_free(c);

    cfg.host = "127.0.0.1"; /* and a list */
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "not both"));
    cfg.host = NULL;
    cfg.port = 7400;
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    cfg.port = 0;
    cfg.n_servers = TALLY_CLIENT_SERVERS_MAX + 1;
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "too many"));
    cfg.n_servers = TALLY_CLIENT_SERVERS_MAX;
    c = open_client(&cfg);
    tally_client_free(c);
    list[1].port = 0;
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "server 2"));
    list[1].port = 7401;
    list[2].host = "";
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "server 3"));
    cfg.servers = NULL;
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    cfg.n_servers = 0; /* no list, no host */
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "host is required"));
}

/* ---- issue 8 on plain TCP: new errors, keep-alive, rejections by reason ---- */

static void fake_welcome_idle(struct fake *f, uint32_t idle_timeout_ms)
{
    Tally__Welcome w = TALLY__WELCOME__INIT;
    w.protocol_version = TALLY_PROTOCOL_VERSION;
    w.max_batch_votes = 1000;
    w.max_frame_bytes = 1 << 20;
    w.writer_epoch = f->epoch;
    w.idle_timeout_ms = idle_timeout_ms;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_WELCOME;
    fr.welcome = &w;
    fake_send(f, &fr);
}

static void fake_ping(struct fake *f, uint64_t nonce)
{
    Tally__Ping pg = TALLY__PING__INIT;
    pg.nonce = nonce;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_PING;
    fr.ping = &pg;
    fake_send(f, &fr);
}

static void test_session_disabled_is_fatal(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f, c);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_COLLECTOR_DISABLED, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_DISABLED);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_non_null(strstr(st.last_error, "ERROR_COLLECTOR_DISABLED"));
    assert_int_equal(tally_client_pump(c, 200), TALLY_CLIENT_ERR_DISABLED);
    assert_true(batch_exists(e, 1));
    /* Not retried: nobody comes back. */
    assert_true(accept(f.lfd, NULL, NULL) < 0);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_auth_error_is_fatal(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    fake_hello(&f, c);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_AUTH, 0);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_AUTH);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_non_null(strstr(st.last_error, "ERROR_AUTH"));
    assert_non_null(strstr(st.last_error, "pinned"));
    assert_int_equal(tally_client_pump(c, 200), TALLY_CLIENT_ERR_AUTH);
    assert_true(accept(f.lfd, NULL, NULL) < 0);
    assert_string_not_equal(tally_client_strerror(TALLY_CLIENT_ERR_AUTH), "unknown status");
    assert_string_not_equal(tally_client_strerror(TALLY_CLIENT_ERR_DISABLED), "unknown status");
    tally_client_free(c);
    fake_cleanup(&f);
}

static void test_session_timeout_error_reconnects(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_error(&f, TALLY__ERROR_CODE__ERROR_TIMEOUT, 0);
    fake_close(&f);
    fake_hello(&f, c); /* transient: it comes back */
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 2);
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 0, 1, 2);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* Welcome.idle_timeout_ms 600: a quiet session pings within a third of it, the Ping's answer
 * is traffic, and nothing else is sent while idle. */
static void test_session_ping_when_idle(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    fake_hello(&f, c);
    int64_t t0 = mono_ms();
    fake_welcome_idle(&f, 600);
    for (int i = 0; i < 3; i++) {
        Tally__Frame *fr = fake_try_read(&f, c, 400);
        assert_non_null(fr);
        assert_int_equal(fr->msg_case, TALLY__FRAME__MSG_PING);
        int64_t t = mono_ms();
        assert_true(t - t0 < 300); /* before idle_timeout_ms / 2 */
        t0 = t;
        fake_ping(&f, fr->ping->nonce);
    }
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_true(st.connected);
    assert_int_equal(st.reconnects, 0);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* Without idle timeout, no Ping; an unanswered Ping stalls the session like a missing ack. */
static void test_session_ping_unanswered_stalls(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    cfg.stall_timeout_ms = 300;
    struct tally_client *c = open_client(&cfg);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    assert_null(fake_try_read(&f, c, 400));
    fake_close(&f);
    fake_hello(&f, c); /* the close was seen: a new session */
    fake_welcome_idle(&f, 300);
    Tally__Frame *fr = fake_read(&f, c);
    assert_int_equal(fr->msg_case, TALLY__FRAME__MSG_PING);
    /* No answer: within the stall timeout the client gives up. */
    struct tally_client_stats st;
    int64_t end = mono_ms() + 2000;
    do {
        pump_some(c);
        tally_client_stats(c, &st);
    } while (st.connected && mono_ms() < end);
    assert_false(st.connected);
    if (!strstr(st.last_error, "answer to Ping"))
        fail_msg("last_error: %s", st.last_error);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* The stall timer starts when an answer is first owed: a batch spooled after a quiet spell
 * longer than the stall timeout still gets its whole stall timeout. */
static void test_session_stall_timer_starts_at_send(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    cfg.stall_timeout_ms = 300;
    struct tally_client *c = open_client(&cfg);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    assert_null(fake_try_read(&f, c, 500));
    spool_batch(c, 1, 2);
    fake_expect_batch(&f, c, 1, 2);
    for (int i = 0; i < 5; i++)
        pump_some(c);
    fake_ack(&f, 1, 1, 2);
    pump_until_durable(c, 1);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.reconnects, 0);
    assert_true(st.connected);
    tally_client_free(c);
    fake_cleanup(&f);
}

static void fake_ack_rejected(struct fake *f, uint64_t seq, uint32_t rejected, uint32_t not_allowed,
                              bool retransmit)
{
    Tally__Ack a = TALLY__ACK__INIT;
    a.seq = seq;
    a.rejected = rejected;
    a.rejected_not_allowed = not_allowed;
    a.rejected_unknown_project = rejected - not_allowed;
    a.retransmit = retransmit;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ACK;
    fr.ack = &a;
    fake_send(f, &fr);
}

static void test_session_rejected_not_allowed_counted(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 4);
    spool_batch(c, 2, 4);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_expect_batch(&f, c, 1, 4);
    fake_expect_batch(&f, c, 2, 4);
    fake_ack_rejected(&f, 1, 3, 2, false);
    fake_ack_rejected(&f, 2, 1, 1, false);
    fake_ack_rejected(&f, 2, 1, 1, true); /* a retransmit repeats no counts */
    fake_ack(&f, 0, 2, 4);
    pump_until_durable(c, 2);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.rejected_not_allowed, 3);
    assert_int_equal(st.rejected_acked, 4);
    assert_false(st.tls);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* ---- TLS: certificates, and a TLS server thread ---- */

static EVP_PKEY *key_new(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static void ext_add(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A CA (san NULL) or a leaf certificate for san ("IP:127.0.0.1,DNS:localhost"), signed by
 * the issuer (NULL: self-signed). */
static X509 *cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                      const char *san, bool client)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    if (!san) {
        ext_add(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        ext_add(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        ext_add(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
        ext_add(x, &ctx, NID_subject_alt_name, san);
        ext_add(x, &ctx, NID_ext_key_usage, client ? "clientAuth" : "serverAuth");
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void pem_write(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (cert)
        assert_int_equal(PEM_write_X509(f, cert), 1);
    if (key)
        assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* Files in the env's root: ca.crt (the CA the client trusts) signing srv (127.0.0.1 and
 * localhost), other (other.example only) and cli (CN col-01, the client's); ca2.crt, a
 * foreign CA, signing foreign (127.0.0.1). */
struct pki {
    char ca[128], ca2[128];
    char srv_crt[128], srv_key[128], other_crt[128], other_key[128];
    char foreign_crt[128], foreign_key[128], cli_crt[128], cli_key[128];
};

static void pki_make(const struct env *e, struct pki *k)
{
#define PKI_PATH(f, name) snprintf(k->f, sizeof(k->f), "%s/%s", e->root, name)
    PKI_PATH(ca, "ca.crt");
    PKI_PATH(ca2, "ca2.crt");
    PKI_PATH(srv_crt, "srv.crt");
    PKI_PATH(srv_key, "srv.key");
    PKI_PATH(other_crt, "other.crt");
    PKI_PATH(other_key, "other.key");
    PKI_PATH(foreign_crt, "foreign.crt");
    PKI_PATH(foreign_key, "foreign.key");
    PKI_PATH(cli_crt, "cli.crt");
    PKI_PATH(cli_key, "cli.key");
#undef PKI_PATH
    EVP_PKEY *cak = key_new(), *ca2k = key_new();
    X509 *ca = cert_new(cak, "test CA", NULL, NULL, NULL, false);
    X509 *ca2 = cert_new(ca2k, "foreign CA", NULL, NULL, NULL, false);
    pem_write(k->ca, ca, NULL);
    pem_write(k->ca2, ca2, NULL);
    struct {
        const char *crt, *key, *cn, *san;
        X509 *issuer;
        EVP_PKEY *ikey;
        bool client;
    } leaves[] = {
        {k->srv_crt, k->srv_key, "tallyd", "IP:127.0.0.1,DNS:localhost", ca, cak, false},
        {k->other_crt, k->other_key, "other", "DNS:other.example", ca, cak, false},
        {k->foreign_crt, k->foreign_key, "tallyd", "IP:127.0.0.1", ca2, ca2k, false},
        {k->cli_crt, k->cli_key, "col-01", "DNS:col-01", ca, cak, true},
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        EVP_PKEY *lk = key_new();
        X509 *x = cert_new(lk, leaves[i].cn, leaves[i].issuer, leaves[i].ikey, leaves[i].san,
                           leaves[i].client);
        pem_write(leaves[i].crt, x, NULL);
        pem_write(leaves[i].key, NULL, lk);
        X509_free(x);
        EVP_PKEY_free(lk);
    }
    X509_free(ca);
    X509_free(ca2);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(ca2k);
}

enum tls_mode {
    TLS_MODE_ACK,  /* Welcome, then an Ack for each batch (rejected 1, not_allowed 1) */
    TLS_MODE_AUTH, /* ERROR_AUTH in answer to Hello */
};

/* A tallyd enough for the client's TLS: one session at a time, blocking OpenSSL, reads timed
 * out every 20 ms to check stop and its idle timeout. Counters are read while it runs. */
struct tls_server {
    int lfd;
    uint16_t port;
    SSL_CTX *ctx;
    enum tls_mode mode;
    uint32_t idle_timeout_ms; /* told in Welcome and enforced (ERROR_TIMEOUT) */
    pthread_t thread;
    atomic_bool stop;
    atomic_int sessions, handshakes_failed, acks, pings, timeouts;
    atomic_llong first_ping_ms; /* after Welcome; -1 before */
    char peer_cn[64];           /* of the last session's client certificate */
    char sni[128];              /* of the last session */
};

static void tls_send(SSL *ssl, const Tally__Frame *fr)
{
    uint8_t buf[512];
    size_t n = wire_frame_size(fr);
    assert_true(n <= sizeof(buf));
    wire_frame_encode(fr, buf);
    SSL_write(ssl, buf, (int)n);
}

static void tls_session(struct tls_server *t, SSL *ssl)
{
    static uint8_t buf[1 << 16];
    size_t len = 0;
    struct arena arena;
    arena_init(&arena, 4096);
    int64_t welcome_at = 0, last_rx = mono_ms();
    while (!atomic_load(&t->stop)) {
        int n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - len));
        if (n <= 0) {
            int e = SSL_get_error(ssl, n);
            if (e != SSL_ERROR_WANT_READ)
                break; /* closed, or the client refused us */
            if (t->idle_timeout_ms && welcome_at && mono_ms() - last_rx > t->idle_timeout_ms) {
                Tally__Error er = TALLY__ERROR__INIT;
                er.code = TALLY__ERROR_CODE__ERROR_TIMEOUT;
                er.message = "idle";
                Tally__Frame fr = TALLY__FRAME__INIT;
                fr.msg_case = TALLY__FRAME__MSG_ERROR;
                fr.error = &er;
                tls_send(ssl, &fr);
                atomic_fetch_add(&t->timeouts, 1);
                break;
            }
            continue;
        }
        last_rx = mono_ms();
        len += (size_t)n;
        size_t plen;
        while (wire_frame_peek(buf, len, sizeof(buf), &plen) == WIRE_OK) {
            Tally__Frame *in;
            if (wire_frame_decode(buf + 4, plen, &arena, &in) != WIRE_OK)
                goto done;
            Tally__Frame fr = TALLY__FRAME__INIT;
            if (in->msg_case == TALLY__FRAME__MSG_HELLO && t->mode == TLS_MODE_AUTH) {
                Tally__Error er = TALLY__ERROR__INIT;
                er.code = TALLY__ERROR_CODE__ERROR_AUTH;
                er.message = "certificate not pinned to col-01";
                fr.msg_case = TALLY__FRAME__MSG_ERROR;
                fr.error = &er;
                tls_send(ssl, &fr);
                goto done;
            } else if (in->msg_case == TALLY__FRAME__MSG_HELLO) {
                Tally__Welcome w = TALLY__WELCOME__INIT;
                w.protocol_version = TALLY_PROTOCOL_VERSION;
                w.max_batch_votes = 1000;
                w.max_frame_bytes = 1 << 20;
                w.writer_epoch = 1;
                w.idle_timeout_ms = t->idle_timeout_ms;
                fr.msg_case = TALLY__FRAME__MSG_WELCOME;
                fr.welcome = &w;
                tls_send(ssl, &fr);
                welcome_at = mono_ms();
            } else if (in->msg_case == TALLY__FRAME__MSG_BATCH) {
                Tally__CollectorTotals tot = TALLY__COLLECTOR_TOTALS__INIT;
                tot.batches = in->batch->seq;
                Tally__Ack a = TALLY__ACK__INIT;
                a.seq = in->batch->seq;
                a.durable_seq = in->batch->seq;
                a.rejected = 1;
                a.rejected_not_allowed = 1;
                a.durable_totals = &tot;
                fr.msg_case = TALLY__FRAME__MSG_ACK;
                fr.ack = &a;
                tls_send(ssl, &fr);
                atomic_fetch_add(&t->acks, 1);
            } else if (in->msg_case == TALLY__FRAME__MSG_PING) {
                long long expect = -1;
                atomic_compare_exchange_strong(&t->first_ping_ms, &expect,
                                               (long long)(mono_ms() - welcome_at));
                Tally__Ping pg = TALLY__PING__INIT;
                pg.nonce = in->ping->nonce;
                fr.msg_case = TALLY__FRAME__MSG_PING;
                fr.ping = &pg;
                tls_send(ssl, &fr);
                atomic_fetch_add(&t->pings, 1);
            }
            arena_reset(&arena);
            memmove(buf, buf + 4 + plen, len - 4 - plen);
            len -= 4 + plen;
        }
    }
done:
    arena_cleanup(&arena);
}

static void *tls_server_main(void *arg)
{
    struct tls_server *t = arg;
    while (!atomic_load(&t->stop)) {
        struct pollfd p = {.fd = t->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) != 1)
            continue;
        int fd = accept(t->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_usec = 20000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, fd);
        int rc;
        int64_t end = mono_ms() + 3000;
        while ((rc = SSL_accept(ssl)) != 1 && SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ &&
               mono_ms() < end && !atomic_load(&t->stop))
            ;
        if (rc != 1) {
            atomic_fetch_add(&t->handshakes_failed, 1);
        } else {
            X509 *peer = SSL_get1_peer_certificate(ssl);
            if (peer)
                X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, t->peer_cn,
                                          sizeof(t->peer_cn));
            X509_free(peer);
            const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
            snprintf(t->sni, sizeof(t->sni), "%s", sni ? sni : "");
            atomic_fetch_add(&t->sessions, 1);
            tls_session(t, ssl);
        }
        SSL_free(ssl);
        close(fd);
        ERR_clear_error();
    }
    return NULL;
}

static void tls_server_start(struct tls_server *t, const struct pki *k, const char *crt,
                             const char *key, enum tls_mode mode, uint32_t idle_timeout_ms)
{
    memset(t, 0, sizeof(*t));
    t->mode = mode;
    t->idle_timeout_ms = idle_timeout_ms;
    atomic_init(&t->first_ping_ms, -1);
    t->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(t->ctx);
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(t->ctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, k->ca, NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    t->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(t->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(t->lfd, 8), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(t->lfd, (struct sockaddr *)&sa, &len), 0);
    t->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&t->thread, NULL, tls_server_main, t), 0);
}

static void tls_server_stop(struct tls_server *t)
{
    atomic_store(&t->stop, true);
    pthread_join(t->thread, NULL);
    close(t->lfd);
    SSL_CTX_free(t->ctx);
}

static struct tally_client_config tls_config(const struct env *e, const struct pki *k,
                                             uint16_t port, struct logbuf *log)
{
    struct tally_client_config cfg = config(e, port);
    cfg.tls_cert = k->cli_crt;
    cfg.tls_key = k->cli_key;
    cfg.tls_ca = k->ca;
    cfg.log_cb = log ? log_collect : NULL;
    cfg.log_arg = log;
    return cfg;
}

/* Pumps for ms milliseconds; the client must not fail. */
static void pump_for(struct tally_client *c, int ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end)
        pump_some(c);
}

static void test_tls_session_acked(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    struct tls_server t;
    tls_server_start(&t, &k, k.srv_crt, k.srv_key, TLS_MODE_ACK, 0);
    struct tally_client_config cfg = tls_config(e, &k, t.port, NULL);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    spool_batch(c, 2, 40);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_false(batch_exists(e, 1) || batch_exists(e, 2));
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_true(st.tls);
    assert_true(st.connected);
    assert_int_equal(st.rejected_not_allowed, 2);
    assert_int_equal(atomic_load(&t.acks), 2);
    assert_int_equal(atomic_load(&t.sessions), 1);
    tally_client_free(c);
    tls_server_stop(&t);
    assert_string_equal(t.peer_cn, "col-01"); /* our certificate was presented */
    assert_string_equal(t.sni, "");           /* an address: no SNI */
}

static void test_tls_foreign_ca_refused(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    struct tls_server t;
    tls_server_start(&t, &k, k.foreign_crt, k.foreign_key, TLS_MODE_ACK, 0);
    struct logbuf log = {0};
    struct tally_client_config cfg = tls_config(e, &k, t.port, &log);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    /* Transient at first (another server might be fine), fatal after three rounds. */
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_AUTH);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_false(st.connected);
    if (!strstr(log.text, "tls: server certificate for 127.0.0.1:") ||
        !strstr(log.text, "not signed by --tls-ca ") || !strstr(log.text, k.ca) ||
        !strstr(log.text, "failed verification on every attempt"))
        fail_msg("log: %s", log.text);
    assert_non_null(strstr(st.last_error, "3 attempts in a row failed on a certificate"));
    assert_int_equal(atomic_load(&t.sessions), 0);
    assert_true(atomic_load(&t.handshakes_failed) >= 1);
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
    tls_server_stop(&t);
}

/* One certificate failure, then a server that refuses connections: the refusals are not
 * certificate failures (an attempt's TLS verdict ends with it), so the client keeps trying. */
static void test_tls_cert_failure_not_carried_over(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    struct tls_server t;
    tls_server_start(&t, &k, k.foreign_crt, k.foreign_key, TLS_MODE_ACK, 0);
    struct logbuf log = {0};
    struct tally_client_config cfg = tls_config(e, &k, t.port, &log);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    int64_t until = mono_ms() + 3000;
    while (!strstr(log.text, "not signed by --tls-ca") && mono_ms() < until)
        pump_some(c);
    assert_non_null(strstr(log.text, "not signed by --tls-ca"));
    tls_server_stop(&t); /* the port now refuses connections */
    pump_for(c, 2500);   /* fails the test on a fatal status */
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.status, 0);
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
}

static void test_tls_hostname_mismatch(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    struct tls_server t;
    tls_server_start(&t, &k, k.other_crt, k.other_key, TLS_MODE_ACK, 0);
    struct logbuf log = {0};
    struct tally_client_config cfg = tls_config(e, &k, t.port, &log);
    struct tally_client *c = open_client(&cfg);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_AUTH);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_false(st.connected);
    if (!strstr(log.text, "does not name 127.0.0.1"))
        fail_msg("log: %s", log.text);
    assert_int_equal(atomic_load(&t.sessions), 0);
    tally_client_free(c);
    /* The name it does hold, given: accepted, and sent as SNI. */
    cfg.tls_server_name = "other.example";
    c = open_client(&cfg);
    spool_batch(c, 1, 3);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    tally_client_free(c);
    tls_server_stop(&t);
    assert_string_equal(t.sni, "other.example");
}

static void test_tls_auth_error_is_fatal(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    struct tls_server t;
    tls_server_start(&t, &k, k.srv_crt, k.srv_key, TLS_MODE_AUTH, 0);
    struct tally_client_config cfg = tls_config(e, &k, t.port, NULL);
    cfg.host = "localhost"; /* a DNS name this time */
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    assert_int_equal(pump_until_fatal(c), TALLY_CLIENT_ERR_AUTH);
    assert_int_equal(tally_client_pump(c, 300), TALLY_CLIENT_ERR_AUTH);
    assert_int_equal(atomic_load(&t.sessions), 1); /* not retried */
    assert_true(batch_exists(e, 1));
    tally_client_free(c);
    tls_server_stop(&t);
    assert_string_equal(t.sni, "localhost");
}

/* idle_timeout_ms 600, enforced by the server: Pings keep an idle session up for 3.5 times
 * that, the first before half of it. */
static void test_tls_idle_session_pings(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    struct tls_server t;
    tls_server_start(&t, &k, k.srv_crt, k.srv_key, TLS_MODE_ACK, 600);
    struct tally_client_config cfg = tls_config(e, &k, t.port, NULL);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    pump_for(c, 2100);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_true(st.connected);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(atomic_load(&t.sessions), 1);
    assert_int_equal(atomic_load(&t.timeouts), 0);
    assert_true(atomic_load(&t.pings) >= 6);
    long long first = atomic_load(&t.first_ping_ms);
    assert_true(first >= 0 && first < 300);
    tally_client_free(c);
    tls_server_stop(&t);
}

static void test_tls_config_errors(void **state)
{
    struct env *e = *state;
    struct pki k;
    pki_make(e, &k);
    char err[512];
    struct tally_client_config cfg = tls_config(e, &k, 1, NULL);
    cfg.tls_key = k.srv_key; /* another certificate's key */
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    char want[512];
    snprintf(want, sizeof(want), "tls: --tls-key %s does not match --tls-cert %s", k.srv_key,
             k.cli_crt);
    assert_string_equal(err, want);
    cfg = tls_config(e, &k, 1, NULL);
    cfg.tls_ca = "/nonexistent/ca.crt";
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_string_equal(err, "tls: --tls-ca /nonexistent/ca.crt: No such file or directory");
    cfg = tls_config(e, &k, 1, NULL);
    cfg.tls_key = NULL;
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "missing --tls-key"));
    cfg = config(e, 1);
    cfg.tls_server_name = "tallyd.example";
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "--tls-server-name needs"));
    cfg = tls_config(e, &k, 1, NULL);
    cfg.tls_cert = k.cli_key; /* a key where the certificate should be */
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "no PEM certificate"));
    /* Nothing was locked by the failures. */
    cfg = tls_config(e, &k, 1, NULL);
    tally_client_free(open_client(&cfg));
}

/* A plain client against a TLS server is told what is wrong when the server's alert arrives
 * (a TLS record: content type 21, version 3.3). */
static void test_tls_plain_client_hint(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct logbuf log = {0};
    struct tally_client_config cfg = config(e, f.port);
    cfg.log_cb = log_collect;
    cfg.log_arg = &log;
    struct tally_client *c = open_client(&cfg);
    fake_hello(&f, c);
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
    assert_int_equal(send(f.fd, alert, sizeof(alert), MSG_NOSIGNAL), (ssize_t)sizeof(alert));
    pump_for(c, 100);
    if (!strstr(log.text, "it speaks TLS: give --tls-cert, --tls-key and --tls-ca"))
        fail_msg("log: %s", log.text);
    tally_client_free(c);
    fake_cleanup(&f);
}

/* ---- voting tables, tally sheets and durable digests (issue 10) ---- */

static const char *const sheet_tables[] = {"mesa-1", "mesa-2"};

/* Spools votes naming tables: vote i names table i % 3 (0: none). */
static uint64_t spool_tables_batch(struct tally_client *c, uint64_t tag, size_t n)
{
    uint64_t ballots[64];
    uint32_t projects[64], vt[64];
    for (size_t i = 0; i < n; i++) {
        ballots[i] = tag * 1000 + i;
        projects[i] = (uint32_t)(i % 7);
        vt[i] = (uint32_t)(i % 3);
    }
    char cursor[32];
    int len = snprintf(cursor, sizeof(cursor), "cur-%llu", (unsigned long long)tag);
    uint64_t seq = 0;
    assert_int_equal(tally_client_spool_tables(c, ballots, projects, vt, n, sheet_tables, 2, cursor,
                                               (size_t)len, &seq),
                     0);
    return seq;
}

/* Spools one batch of two sheets (mesa-1 version v, mesa-2 version v). */
static uint64_t spool_sheets_batch(struct tally_client *c, uint32_t v)
{
    static const uint32_t p[3] = {1, 2, 3}, votes[3] = {10, 0, 5};
    struct tally_client_sheet sh[2] = {
        {.table_id = "mesa-1", .version = v, .projects = p, .votes = votes, .n = 3, .blank = 2},
        {.table_id = "mesa-2", .version = v, .n = 0, .blank = 1, .null_ballots = 4},
    };
    uint64_t seq = 0;
    assert_int_equal(tally_client_spool_sheets(c, sh, 2, "cur-s", 5, &seq), 0);
    return seq;
}

static uint32_t file_u32(const struct env *e, const char *name, size_t at)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", e->spool, name);
    size_t len;
    const uint8_t *img = file_read(path, &len);
    assert_true(len >= at + 4);
    return le32_get(img + at);
}

static void test_tables_sheets_bad_arguments(void **state)
{
    struct env *e = *state;
    struct tally_client_config cfg = config(e, 0);
    struct tally_client *c = open_client(&cfg);
    uint64_t ballots[2] = {1, 2};
    uint32_t projects[2] = {1, 1}, vt[2] = {1, 2};
    const char *bad[] = {"mesa-1", "mesa 2"};
    assert_int_equal(tally_client_spool_tables(c, ballots, projects, vt, 2, bad, 2, NULL, 0, NULL),
                     TALLY_CLIENT_ERR_INVALID);
    vt[1] = 3; /* past the dictionary */
    assert_int_equal(
        tally_client_spool_tables(c, ballots, projects, vt, 2, sheet_tables, 2, NULL, 0, NULL),
        TALLY_CLIENT_ERR_INVALID);
    assert_int_equal(
        tally_client_spool_tables(c, ballots, projects, NULL, 2, sheet_tables, 2, NULL, 0, NULL),
        TALLY_CLIENT_ERR_INVALID);
    struct tally_client_sheet sh = {.table_id = "mesa-1", .version = 1};
    assert_int_equal(tally_client_spool_sheets(c, &sh, 0, NULL, 0, NULL), TALLY_CLIENT_ERR_INVALID);
    struct tally_client_sheet *many = calloc(257, sizeof(*many));
    for (size_t i = 0; i < 257; i++)
        many[i] = sh;
    assert_int_equal(tally_client_spool_sheets(c, many, 257, NULL, 0, NULL),
                     TALLY_CLIENT_ERR_INVALID);
    free(many);
    sh.table_id = "";
    assert_int_equal(tally_client_spool_sheets(c, &sh, 1, NULL, 0, NULL), TALLY_CLIENT_ERR_INVALID);
    sh.table_id = "mesa-1";
    sh.n = 2; /* rows without arrays */
    assert_int_equal(tally_client_spool_sheets(c, &sh, 1, NULL, 0, NULL), TALLY_CLIENT_ERR_INVALID);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_spooled, 0);
    assert_int_equal(st.status, 0);
    /* No vote naming a table: the very batch tally_client_spool writes (no dictionary). */
    vt[0] = vt[1] = 0;
    uint64_t seq;
    assert_int_equal(
        tally_client_spool_tables(c, ballots, projects, vt, 2, sheet_tables, 2, NULL, 0, &seq), 0);
    tally_client_free(c);
    char path[256];
    batch_path(e, seq, path, sizeof(path));
    size_t len;
    const uint8_t *img = file_read(path, &len);
    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *fr;
    assert_int_equal(wire_frame_decode(img + SPOOL_FRAME_AT + 4, le32_get(img + 20) - 4, &a, &fr),
                     WIRE_OK);
    assert_int_equal(fr->batch->n_tables, 0);
    assert_int_equal(fr->batch->n_vote_tables, 0);
    arena_cleanup(&a);
    assert_int_equal(le32_get(img + 4), 1); /* a version-1 batch file */
}

static void test_tables_sheets_spool_roundtrip(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    assert_int_equal(spool_tables_batch(c, 1, 5), 1);
    assert_int_equal(file_u32(e, "state", 4), 1); /* no sheet yet: state version 1 */
    assert_int_equal(spool_sheets_batch(c, 1), 2);
    assert_int_equal(file_u32(e, "state", 4), 2); /* refused by an older libtally now */
    assert_int_equal(file_u32(e, "batch-00000000000000000001.pb", 4), 1);
    assert_int_equal(file_u32(e, "batch-00000000000000000002.pb", 4), 2);
    assert_int_equal(file_u32(e, "batch-00000000000000000002.pb", 16), 0); /* votes */
    assert_int_equal(file_u32(e, "batch-00000000000000000002.pb", 28), 2); /* sheets */
    spool_batch(c, 3, 2);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.votes_spooled, 7); /* sheets are not votes */
    assert_int_equal(st.batches_pending, 3);
    tally_client_free(c);

    /* Reopened (a restart): all three load, and go out byte for byte as spooled. */
    c = open_client(&cfg);
    assert_cursor(c, "cur-3");
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_pending, 3);
    assert_int_equal(st.votes_pending, 7);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    for (uint64_t seq = 1; seq <= 3; seq++) {
        size_t l, flen;
        uint8_t *got = fake_read_raw_batch(&f, c, seq, &l);
        char path[256];
        batch_path(e, seq, path, sizeof(path));
        const uint8_t *img = file_read(path, &flen);
        assert_int_equal(le32_get(img + 20), l);
        assert_memory_equal(img + SPOOL_FRAME_AT, got, l);
        struct arena a;
        arena_init(&a, 4096);
        Tally__Frame *fr;
        assert_int_equal(wire_frame_decode(got + 4, l - 4, &a, &fr), WIRE_OK);
        if (seq == 1) {
            assert_int_equal(fr->batch->n_tables, 2);
            assert_string_equal(fr->batch->tables[1], "mesa-2");
            assert_int_equal(fr->batch->n_vote_tables, 5);
            assert_int_equal(fr->batch->vote_tables[4], 1);
            assert_int_equal(wire_batch_check(fr->batch, 1000), WIRE_BATCH_OK);
        } else if (seq == 2) {
            assert_int_equal(fr->batch->n_ballots, 0);
            assert_int_equal(fr->batch->n_sheets, 2);
            assert_string_equal(fr->batch->sheets[0]->table_id, "mesa-1");
            assert_int_equal(fr->batch->sheets[0]->n_votes, 3);
            assert_int_equal(fr->batch->sheets[0]->blank, 2);
            assert_int_equal(fr->batch->sheets[1]->null_ballots, 4);
            assert_int_equal(fr->batch->nonce.len, NONCE_BYTES);
            assert_int_equal(wire_batch_check(fr->batch, 1000), WIRE_BATCH_OK);
        }
        arena_cleanup(&a);
        free(got);
    }
    tally_client_free(c);

    /* A torn newest sheet batch (a crash while spooling it) is discarded like any other. */
    char path[256];
    batch_path(e, 3, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    batch_path(e, 2, path, sizeof(path));
    file_truncate(path, file_size(path) - 3);
    c = open_client(&cfg);
    tally_client_stats(c, &st);
    assert_int_equal(st.batches_pending, 1);
    assert_int_equal(st.batches_spooled, 1);
    assert_false(batch_exists(e, 2));
    tally_client_free(c);
    fake_cleanup(&f);
}

static void fake_sheet_ack(struct fake *f, uint64_t seq, bool retransmit)
{
    Tally__SheetResult r[3];
    Tally__SheetResult *pr[3] = {&r[0], &r[1], &r[2]};
    for (int i = 0; i < 3; i++)
        tally__sheet_result__init(&r[i]);
    r[0].table_id = "mesa-1";
    r[0].version = 2;
    r[0].status = TALLY__SHEET_STATUS__SHEET_ACCEPTED;
    r[0].replaced_version = 1;
    r[1].table_id = "mesa-2";
    r[1].version = 2;
    r[1].status = TALLY__SHEET_STATUS__SHEET_REJECTED;
    r[1].reason = TALLY__REJECT_REASON__REJECT_SUPERSEDED;
    r[2].table_id = "mesa-3";
    r[2].version = 1;
    r[2].status = TALLY__SHEET_STATUS__SHEET_DUPLICATE;
    Tally__Ack a = TALLY__ACK__INIT;
    a.seq = seq;
    a.retransmit = retransmit;
    a.n_sheets = 3;
    a.sheets = pr;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ACK;
    fr.ack = &a;
    fake_send(f, &fr);
}

static void test_sheets_acks_counted_and_logged(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct logbuf lb;
    struct tally_client_config cfg = config(e, f.port);
    memset(&lb, 0, sizeof(lb));
    cfg.log_cb = log_collect;
    cfg.log_arg = &lb;
    struct tally_client *c = open_client(&cfg);
    spool_tables_batch(c, 1, 4);
    spool_sheets_batch(c, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    fake_read(&f, c);
    fake_read(&f, c);
    /* The ballot batch: 2 votes rejected, one over_electors, one unknown_table. */
    uint32_t reasons[7] = {0, 0, 0, 1, 0, 1, 0};
    Tally__Ack a = TALLY__ACK__INIT;
    a.seq = 1;
    a.accepted = 2;
    a.rejected = 2;
    a.n_rejected_by_reason = 7;
    a.rejected_by_reason = reasons;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ACK;
    fr.ack = &a;
    fake_send(&f, &fr);
    fake_sheet_ack(&f, 2, false);
    /* Durable, with tallyd's sheet totals. */
    Tally__CollectorTotals t = TALLY__COLLECTOR_TOTALS__INIT;
    t.batches = 2;
    t.sheets = 3;
    t.sheets_accepted = 1;
    t.sheets_duplicate = 1;
    t.sheets_rejected = 1;
    Tally__Ack d = TALLY__ACK__INIT;
    d.durable_seq = 2;
    d.durable_totals = &t;
    fr.ack = &d;
    fake_send(&f, &fr);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.sheets_accepted, 1);
    assert_int_equal(st.sheets_duplicate, 1);
    assert_int_equal(st.sheets_rejected, 1);
    assert_int_equal(st.sheets_replaced, 1);
    assert_int_equal(st.rejected_acked, 2);
    assert_int_equal(st.rejected_by_reason[3], 1);
    assert_int_equal(st.rejected_by_reason[5], 1);
    assert_int_equal(st.rejected_by_reason[8], 1); /* the superseded sheet */
    assert_int_equal(st.sheets_rejected_by_reason[8], 1);
    assert_int_equal(st.sheets_rejected_by_reason[5], 0);
    assert_int_equal(st.server.sheets, 3);
    assert_int_equal(st.server.sheets_rejected, 1);
    assert_log_has(&lb, "sheet mesa-2 version 2 rejected: superseded");
    assert_log_has(&lb, "sheet mesa-1 version 2 replaces version 1");
    assert_string_equal(tally_client_reason_name(1), "unknown_project");
    assert_string_equal(tally_client_reason_name(6), "table_mode_conflict");
    assert_string_equal(tally_client_reason_name(9), "bad_sheet");
    assert_string_equal(tally_client_reason_name(0), "unknown");
    assert_string_equal(tally_client_reason_name(10), "unknown");
    tally_client_free(c);
    fake_cleanup(&f);
}

struct digest_list {
    uint64_t seq[16];
    uint8_t d[16][32];
    size_t n;
};

static void digest_take(void *arg, uint64_t seq, const uint8_t digest[32])
{
    struct digest_list *l = arg;
    assert_true(l->n < 16);
    l->seq[l->n] = seq;
    memcpy(l->d[l->n], digest, 32);
    l->n++;
}

static void digests_file(const struct env *e, char *out, size_t len)
{
    snprintf(out, len, "%s/digests", e->spool);
}

static void test_durable_digests(void **state)
{
    struct env *e = *state;
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    spool_batch(c, 1, 3);
    spool_tables_batch(c, 2, 3);
    spool_sheets_batch(c, 1);
    fake_hello(&f, c);
    fake_welcome(&f, 0, 0);
    uint8_t want[3][32];
    for (uint64_t seq = 1; seq <= 3; seq++) {
        Tally__Frame *fr = fake_read(&f, c);
        wire_batch_digest_msg(fr->batch, want[seq - 1]);
        if (seq == 1) { /* a plain batch keeps its v1 digest */
            uint8_t v1[32];
            wire_batch_digest(1, fr->batch->nonce.data, fr->batch->nonce.len, fr->batch->ballots,
                              fr->batch->projects, 3, v1);
            assert_memory_equal(v1, want[0], 32);
        }
    }
    struct digest_list l = {0};
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), 0);
    assert_int_equal(l.n, 0); /* nothing durable yet */
    fake_ack(&f, 1, 0, 0);
    fake_ack(&f, 2, 0, 0);
    fake_ack(&f, 0, 2, 6);
    pump_until_durable(c, 2);
    fake_ack(&f, 3, 2, 0);
    fake_ack(&f, 0, 3, 6);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), 0);
    assert_int_equal(l.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(l.seq[i], i + 1);
        assert_memory_equal(l.d[i], want[i], 32);
    }
    tally_client_free(c);
    char path[256];
    digests_file(e, path, sizeof(path));
    assert_int_equal(file_size(path), 3 * 40);

    /* A crash mid-append leaves a torn record, or whole ones past the state's durable seq
     * (appended, then the state not replaced): the next open cuts both off. */
    FILE *fp = fopen(path, "ab");
    uint8_t rec[40] = {0};
    le64_put(rec, 4);
    assert_int_equal(fwrite(rec, 1, 40, fp), 40);
    assert_int_equal(fwrite(rec, 1, 17, fp), 17);
    fclose(fp);
    c = open_client(&cfg);
    assert_int_equal(file_size(path), 3 * 40);
    memset(&l, 0, sizeof(l));
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), 0);
    assert_int_equal(l.n, 3);
    /* New records go on after them. */
    spool_batch(c, 4, 2);
    fake_hello(&f, c);
    fake_welcome(&f, 3, 6);
    fake_read(&f, c);
    fake_ack(&f, 4, 3, 0);
    fake_ack(&f, 0, 4, 8);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.seq[3], 4);
    tally_client_free(c);

    /* Records out of order are damage, not a crash: at the tail open refuses the spool,
     * further in the reader says so. */
    fp = fopen(path, "r+b");
    assert_int_equal(fseek(fp, 40, SEEK_SET), 0);
    le64_put(rec, 9);
    assert_int_equal(fwrite(rec, 1, 8, fp), 8);
    fclose(fp);
    c = open_client(&cfg);
    memset(&l, 0, sizeof(l));
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), TALLY_CLIENT_ERR_CORRUPT);
    assert_int_equal(l.n, 2); /* 1 and 9 delivered, then 3 after 9 refused */
    tally_client_free(c);
    fp = fopen(path, "r+b");
    assert_int_equal(fseek(fp, 3 * 40, SEEK_SET), 0);
    le64_put(rec, 2); /* the last record: 2 after 3 */
    assert_int_equal(fwrite(rec, 1, 8, fp), 8);
    fclose(fp);
    char err[512];
    assert_null(tally_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "digests is damaged"));
    fake_cleanup(&f);
}

/* A spool as libtally.so.1 left it, byte for byte: state version 1 (durable up to 2, its
 * batches deleted long ago), batch 3 pending with a nonce, no digests file. */
static void write_old_spool(const struct env *e, uint8_t **frame, size_t *frame_len)
{
    assert_int_equal(mkdir(e->spool, 0700), 0);
    const char *id = "col-01";
    uint8_t st[40 + 6 + 5 + 16];
    le32_put(st, 0x53594c54u);
    le32_put(st + 4, 1);
    le64_put(st + 8, 3);  /* next seq */
    le64_put(st + 16, 2); /* durable seq */
    le64_put(st + 24, 7); /* durable votes */
    le32_put(st + 32, 6);
    le32_put(st + 36, 5);
    memcpy(st + 40, id, 6);
    memcpy(st + 46, "cur-2", 5);
    crypto_generichash(st + 51, 16, st, 51, NULL, 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/state", e->spool);
    FILE *fp = fopen(path, "wb");
    assert_int_equal(fwrite(st, 1, sizeof(st), fp), sizeof(st));
    fclose(fp);

    uint64_t ballots[2] = {3000, 3001};
    uint32_t projects[2] = {0, 1};
    uint8_t nonce[NONCE_BYTES];
    memset(nonce, 0x5a, sizeof(nonce));
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = 3;
    b.n_ballots = b.n_projects = 2;
    b.ballots = ballots;
    b.projects = projects;
    b.nonce.data = nonce;
    b.nonce.len = sizeof(nonce);
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_BATCH;
    fr.batch = &b;
    *frame_len = wire_frame_size(&fr);
    *frame = malloc(*frame_len);
    wire_frame_encode(&fr, *frame);
    size_t len = 32 + *frame_len + 5 + 16;
    uint8_t *img = malloc(len);
    le32_put(img, 0x42594c54u);
    le32_put(img + 4, 1);
    le64_put(img + 8, 3);
    le32_put(img + 16, 2);
    le32_put(img + 20, (uint32_t)*frame_len);
    le32_put(img + 24, 5);
    le32_put(img + 28, 0);
    memcpy(img + 32, *frame, *frame_len);
    memcpy(img + 32 + *frame_len, "cur-3", 5);
    crypto_generichash(img + len - 16, 16, img, len - 16, NULL, 0);
    batch_path(e, 3, path, sizeof(path));
    fp = fopen(path, "wb");
    assert_int_equal(fwrite(img, 1, len, fp), len);
    fclose(fp);
    free(img);
}

static void test_old_spool_opens_and_resends(void **state)
{
    struct env *e = *state;
    uint8_t *old;
    size_t old_len;
    write_old_spool(e, &old, &old_len);
    struct fake f;
    fake_listen(&f);
    struct tally_client_config cfg = config(e, f.port);
    struct tally_client *c = open_client(&cfg);
    assert_cursor(c, "cur-3");
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    assert_int_equal(st.durable_seq, 2);
    assert_int_equal(st.batches_pending, 1);
    assert_int_equal(st.votes_spooled, 9);
    struct digest_list l = {0};
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), 0);
    assert_int_equal(l.n, 0); /* made durable before digests were kept: no record */
    fake_hello(&f, c);
    fake_welcome(&f, 2, 7);
    size_t got_len;
    uint8_t *got = fake_read_raw_batch(&f, c, 3, &got_len);
    assert_int_equal(got_len, old_len);
    assert_memory_equal(got, old, old_len);
    fake_ack(&f, 3, 2, 0);
    fake_ack(&f, 0, 3, 9);
    assert_int_equal(tally_client_wait_durable(c, 5000), 0);
    assert_int_equal(tally_client_durable_digests(c, digest_take, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.seq[0], 3);
    uint8_t nonce[NONCE_BYTES], want[32];
    memset(nonce, 0x5a, sizeof(nonce));
    const uint64_t ballots[2] = {3000, 3001};
    const uint32_t projects[2] = {0, 1};
    wire_batch_digest(3, nonce, sizeof(nonce), ballots, projects, 2, want);
    assert_memory_equal(l.d[0], want, 32);
    assert_int_equal(file_u32(e, "state", 4), 1); /* still readable by libtally.so.1 */
    free(got);
    free(old);
    tally_client_free(c);
    fake_cleanup(&f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_spool_reopen_order),
        T(test_tables_sheets_bad_arguments),
        T(test_tables_sheets_spool_roundtrip),
        T(test_sheets_acks_counted_and_logged),
        T(test_durable_digests),
        T(test_old_spool_opens_and_resends),
        T(test_spool_bad_arguments),
        T(test_spool_torn_newest_discarded),
        T(test_spool_corrupt_is_fatal),
        T(test_spool_owner_and_lock),
        T(test_spool_full),
        T(test_session_durable_deletes_and_cursor_survives),
        T(test_session_resend_after_reconnect),
        T(test_session_window),
        T(test_session_seq_gap_resends),
        T(test_session_foreign_spool),
        T(test_session_server_went_back),
        T(test_session_refused),
        T(test_session_transient_errors_retry),
        T(test_session_torn_newest_covered_by_state_is_corrupt),
        T(test_session_server_away_backoff),
        T(test_session_seq_conflict_is_fatal),
        T(test_session_durable_covers_earlier_session),
        T(test_session_durable_while_frame_half_written),
        T(test_session_resend_is_byte_identical),
        T(test_session_old_spool_without_nonce),
        T(test_session_welcome_durable_unacked_conflict),
        T(test_session_welcome_durable_unacked_confirmed),
        T(test_session_ack_durable_unacked_resent),
        T(test_session_ack_durable_unacked_conflict),
        T(test_session_acked_released_without_resend),
        T(test_session_new_epoch_unconfirms),
        T(test_session_restart_resends_durable_unconfirmed),
        T(test_failover_refused_next_used),
        T(test_failover_shutting_down_next_used),
        T(test_failover_resends_what_is_not_durable),
        T(test_failover_acks_count_per_server),
        T(test_failover_fatal_stays_fatal),
        T(test_failover_session_errors_same_server),
        T(test_failover_round_robin_backoff),
        T(test_failover_config),
        T(test_session_disabled_is_fatal),
        T(test_session_auth_error_is_fatal),
        T(test_session_timeout_error_reconnects),
        T(test_session_ping_when_idle),
        T(test_session_ping_unanswered_stalls),
        T(test_session_stall_timer_starts_at_send),
        T(test_session_rejected_not_allowed_counted),
        T(test_tls_session_acked),
        T(test_tls_foreign_ca_refused),
        T(test_tls_hostname_mismatch),
        T(test_tls_cert_failure_not_carried_over),
        T(test_tls_auth_error_is_fatal),
        T(test_tls_idle_session_pings),
        T(test_tls_config_errors),
        T(test_tls_plain_client_hint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
