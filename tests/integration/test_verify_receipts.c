/* tally-push --verify-receipts (docs/consultation.md, "Part C"): a real tallyd and
 * PostgreSQL take c0's votes in some 15 batches, then tally-push checks every batch's
 * receipt from tallyd's HTTP port against the head in `checkpoints` (skipped while tallyd
 * has no receipts endpoint). Then, against a small HTTP(S) server in this process serving
 * receipts built here for the same spool's digests (BLAKE2b-256 below, RFC 7693, since only
 * OpenSSL 3.0 is linked): good ones verify, plain, chunked and over TLS; a tampered path, a
 * wrong head, a broken chain link, another collector's receipt, a 404, a 500, a truncated
 * body and a closed port each exit 1 naming the batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

static struct ts_case tc;
static char spool[1200], ca_dir[1200];

/* ---- BLAKE2b-256 (RFC 7693, unkeyed) ---------------------------------------------------- */

static const uint64_t b2_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
static const uint8_t b2_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

struct b2 {
    uint8_t b[128];
    uint64_t h[8], t;
    size_t c;
};

#define ROTR64(x, y) (((x) >> (y)) | ((x) << (64 - (y))))
#define B2G(a, b, c, d, x, y)                                                                      \
    do {                                                                                           \
        v[a] = v[a] + v[b] + (x);                                                                  \
        v[d] = ROTR64(v[d] ^ v[a], 32);                                                            \
        v[c] = v[c] + v[d];                                                                        \
        v[b] = ROTR64(v[b] ^ v[c], 24);                                                            \
        v[a] = v[a] + v[b] + (y);                                                                  \
        v[d] = ROTR64(v[d] ^ v[a], 16);                                                            \
        v[c] = v[c] + v[d];                                                                        \
        v[b] = ROTR64(v[b] ^ v[c], 63);                                                            \
    } while (0)

static void b2_compress(struct b2 *s, bool last)
{
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = b2_iv[i];
    }
    v[12] ^= s->t; /* messages here are far below 2^64 bytes: t's high word stays 0 */
    if (last)
        v[14] = ~v[14];
    for (int i = 0; i < 16; i++) {
        m[i] = 0;
        for (int k = 7; k >= 0; k--)
            m[i] = m[i] << 8 | s->b[8 * i + k];
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *z = b2_sigma[r];
        B2G(0, 4, 8, 12, m[z[0]], m[z[1]]);
        B2G(1, 5, 9, 13, m[z[2]], m[z[3]]);
        B2G(2, 6, 10, 14, m[z[4]], m[z[5]]);
        B2G(3, 7, 11, 15, m[z[6]], m[z[7]]);
        B2G(0, 5, 10, 15, m[z[8]], m[z[9]]);
        B2G(1, 6, 11, 12, m[z[10]], m[z[11]]);
        B2G(2, 7, 8, 13, m[z[12]], m[z[13]]);
        B2G(3, 4, 9, 14, m[z[14]], m[z[15]]);
    }
    for (int i = 0; i < 8; i++)
        s->h[i] ^= v[i] ^ v[i + 8];
}

static void b2_init(struct b2 *s)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->h, b2_iv, sizeof(s->h));
    s->h[0] ^= 0x01010000ULL ^ 32u;
}

static void b2_update(struct b2 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        if (s->c == 128) {
            s->t += 128;
            b2_compress(s, false);
            s->c = 0;
        }
        s->b[s->c++] = p[i];
    }
}

static void b2_final(struct b2 *s, uint8_t out[32])
{
    s->t += s->c;
    memset(s->b + s->c, 0, 128 - s->c);
    b2_compress(s, true);
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(s->h[i / 8] >> (8 * (i % 8)));
}

static void le(struct b2 *s, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    b2_update(s, b, (size_t)bytes);
}

static void hex(const uint8_t *d, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- the record's hashes (docs/consultation.md, "Chain format v3") ---------------------- */

static void leaf_hash(const char *id, uint64_t seq, const uint8_t digest[32], uint8_t out[32])
{
    struct b2 s;
    b2_init(&s);
    b2_update(&s, "\0", 1);
    le(&s, strlen(id), 4);
    b2_update(&s, id, strlen(id));
    le(&s, seq, 8);
    b2_update(&s, digest, 32);
    b2_final(&s, out);
}

static void node_hash(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    struct b2 s;
    b2_init(&s);
    b2_update(&s, "\1", 1);
    b2_update(&s, l, 32);
    b2_update(&s, r, 32);
    b2_final(&s, out);
}

static size_t split(size_t n)
{
    size_t k = 1;
    while (2 * k < n)
        k *= 2;
    return k;
}

static void mth(uint8_t (*l)[32], size_t n, uint8_t out[32])
{
    if (n == 1) {
        memcpy(out, l[0], 32);
        return;
    }
    size_t k = split(n);
    uint8_t a[32], b[32];
    mth(l, k, a);
    mth(l + k, n - k, b);
    node_hash(a, b, out);
}

/* RFC 6962 PATH(m, D[n]), the sibling nearest the leaf first; returns its length. */
static size_t audit_path(uint8_t (*l)[32], size_t n, size_t m, uint8_t (*out)[32])
{
    if (n <= 1)
        return 0;
    size_t k = split(n), got;
    if (m < k) {
        got = audit_path(l, k, m, out);
        mth(l + k, n - k, out[got]);
    } else {
        got = audit_path(l + k, n - k, m - k, out);
        mth(l, k, out[got]);
    }
    return got + 1;
}

static void chain_link(const uint8_t prev[32], uint64_t id, uint64_t epoch, const uint8_t root[32],
                       const uint8_t body[32], uint8_t out[32])
{
    struct b2 s;
    b2_init(&s);
    b2_update(&s, "tallyd-checkpoint-v3", 20);
    b2_update(&s, prev, 32);
    le(&s, id, 8);
    le(&s, epoch, 8);
    b2_update(&s, root, 32);
    b2_update(&s, body, 32);
    b2_final(&s, out);
}

/* ---- the fake record: checkpoint 100 + k holds c0's k-th durable batch and two others ---- */

#define MAX_BATCHES 256
#define LEAVES 3

struct ckpt {
    uint64_t id;
    uint8_t prev[32], root[32], body[32], hash[32];
    uint8_t leaves[LEAVES][32];
};

static struct {
    size_t n;
    uint64_t seq[MAX_BATCHES];
    uint8_t digest[MAX_BATCHES][32];
    struct ckpt ck[MAX_BATCHES];
    uint8_t head[32];
} rec;

/* The spool's digests file: 40-byte records, LE64 seq then the digest (src/client/spool.c). */
static int record_build(void)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/digests", spool);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t r[40];
    rec.n = 0;
    while (rec.n < MAX_BATCHES && fread(r, 1, 40, f) == 40) {
        uint64_t seq = 0;
        for (int i = 7; i >= 0; i--)
            seq = seq << 8 | r[i];
        rec.seq[rec.n] = seq;
        memcpy(rec.digest[rec.n], r + 8, 32);
        rec.n++;
    }
    fclose(f);
    uint8_t prev[32];
    memset(prev, 0x77, 32);
    for (size_t k = 0; k < rec.n; k++) {
        struct ckpt *c = &rec.ck[k];
        c->id = 100 + k;
        uint8_t other[32];
        memset(other, (int)k, 32);
        leaf_hash("a-other", k, other, c->leaves[0]);
        leaf_hash("c0", rec.seq[k], rec.digest[k], c->leaves[1]);
        leaf_hash("z-other", k, other, c->leaves[2]);
        mth(c->leaves, LEAVES, c->root);
        memset(c->body, (int)(0x40 + k), 32);
        memcpy(c->prev, prev, 32);
        chain_link(c->prev, c->id, 2, c->root, c->body, c->hash);
        memcpy(prev, c->hash, 32);
    }
    memcpy(rec.head, prev, 32);
    return rec.n ? 0 : -1;
}

enum fake_mode {
    FAKE_GOOD,
    FAKE_CHUNKED,
    FAKE_PATH,      /* target's path tampered */
    FAKE_LINK,      /* a body_hash in the target's chain changed */
    FAKE_COLLECTOR, /* the target's receipt names c9 */
    FAKE_404,
    FAKE_500,
    FAKE_TRUNCATED, /* Content-Length promises more than is sent */
};

static struct {
    int fd;
    uint16_t port;
    volatile bool stop;
    enum fake_mode mode;
    uint64_t target; /* the seq the mode applies to */
    SSL_CTX *tls;    /* non-NULL: HTTPS */
    pthread_t thread;
    int requests;
} fake;

/* The receipt JSON for batch k (malloc'd), tampered with per mode when k is the target. */
static char *receipt_json(size_t k, bool target)
{
    size_t cap = 4096 + 400 * rec.n, n = 0;
    char *b = malloc(cap);
    char h[65];
    const struct ckpt *c = &rec.ck[k];
    uint8_t path[4][32];
    size_t np = audit_path((uint8_t(*)[32])c->leaves, LEAVES, 1, path);
    if (target && fake.mode == FAKE_PATH)
        path[0][0] ^= 1;
    hex(rec.digest[k], h);
    n += (size_t)snprintf(b + n, cap - n,
                          "{\"collector\":\"%s\",\"seq\":%" PRIu64 ",\"digest\":\"%s\","
                          "\"checkpoint\":%" PRIu64 ",\"leaf_index\":1,\"tree_size\":%d,"
                          "\"path\":[",
                          target && fake.mode == FAKE_COLLECTOR ? "c9" : "c0", rec.seq[k], h, c->id,
                          LEAVES);
    for (size_t i = 0; i < np; i++) {
        hex(path[i], h);
        n += (size_t)snprintf(b + n, cap - n, "%s\"%s\"", i ? "," : "", h);
    }
    n += (size_t)snprintf(b + n, cap - n, "],\"chain\":[");
    for (size_t j = k; j < rec.n; j++) {
        const struct ckpt *e = &rec.ck[j];
        char p[65], r[65], bd[65];
        uint8_t body[32];
        memcpy(body, e->body, 32);
        if (target && fake.mode == FAKE_LINK && j == k + (k + 1 < rec.n))
            body[9] ^= 0x80;
        hex(e->prev, p);
        hex(e->root, r);
        hex(body, bd);
        hex(e->hash, h);
        n += (size_t)snprintf(b + n, cap - n,
                              "%s{\"id\":%" PRIu64 ",\"epoch\":2,\"prev_hash\":\"%s\","
                              "\"merkle_root\":\"%s\",\"body_hash\":\"%s\",\"hash\":\"%s\"}",
                              j > k ? "," : "", e->id, p, r, bd, h);
    }
    hex(rec.head, h);
    snprintf(b + n, cap - n, "],\"head\":\"%s\"}", h);
    return b;
}

static int io_write(SSL *ssl, int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = ssl ? SSL_write(ssl, buf, (int)n) : send(fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static void serve(int fd)
{
    SSL *ssl = NULL;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fake.tls) {
        ssl = SSL_new(fake.tls);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1)
            goto out;
    }
    char req[8192];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t r = ssl ? SSL_read(ssl, req + n, (int)(sizeof req - 1 - n))
                        : recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0)
            goto out;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    fake.requests++;
    char id[64];
    uint64_t seq = 0;
    size_t k = rec.n;
    if (sscanf(req, "GET /v1/receipts/%63[^/]/%" SCNu64 " HTTP/1.1", id, &seq) == 2 &&
        strcmp(id, "c0") == 0)
        for (k = 0; k < rec.n && rec.seq[k] != seq; k++)
            ;
    bool target = k < rec.n && seq == fake.target;
    char head[512];
    if (k == rec.n || (target && fake.mode == FAKE_404)) {
        const char *body = "{\"error\":\"no such durable batch\"}";
        snprintf(head, sizeof head,
                 "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 strlen(body));
        if (io_write(ssl, fd, head, strlen(head)) == 0)
            io_write(ssl, fd, body, strlen(body));
        goto out;
    }
    if (target && fake.mode == FAKE_500) {
        snprintf(head, sizeof head,
                 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
        io_write(ssl, fd, head, strlen(head));
        goto out;
    }
    char *body = receipt_json(k, target);
    size_t len = strlen(body);
    if (fake.mode == FAKE_CHUNKED) {
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
        io_write(ssl, fd, head, strlen(head));
        for (size_t at = 0; at < len; at += 100) {
            size_t c = len - at < 100 ? len - at : 100;
            char sz[32];
            snprintf(sz, sizeof sz, "%zx\r\n", c);
            io_write(ssl, fd, sz, strlen(sz));
            io_write(ssl, fd, body + at, c);
            io_write(ssl, fd, "\r\n", 2);
        }
        io_write(ssl, fd, "0\r\n\r\n", 5);
    } else {
        bool cut = target && fake.mode == FAKE_TRUNCATED;
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 len);
        if (io_write(ssl, fd, head, strlen(head)) == 0)
            io_write(ssl, fd, body, cut ? len / 2 : len);
    }
    free(body);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
}

static void *fake_main(void *arg)
{
    (void)arg;
    while (!fake.stop) {
        struct pollfd p = {.fd = fake.fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(fake.fd, NULL, NULL);
        if (c >= 0)
            serve(c);
    }
    return NULL;
}

static int fake_start(void)
{
    fake.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fake.fd < 0 || bind(fake.fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(fake.fd, 16) != 0 || getsockname(fake.fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    fake.port = ntohs(a.sin_port);
    return pthread_create(&fake.thread, NULL, fake_main, NULL) == 0 ? 0 : -1;
}

/* ---- tally-push --verify-receipts ------------------------------------------------------- */

/* Runs it against port with head (hex) and the extra argument (may be NULL); stdout in *out,
 * stderr in *err (both malloc'd). Returns its exit code. */
static int verify(uint16_t port, const char *head, const char *a1, const char *a2, char **out,
                  char **err)
{
    char http[64], errp[1300];
    snprintf(http, sizeof http, "127.0.0.1:%u", (unsigned)port);
    snprintf(errp, sizeof errp, "%s/verify.err", tc.dir);
    remove(errp);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--verify-receipts",
                    "--spool",
                    spool,
                    "--head",
                    (char *)head,
                    "--http",
                    http,
                    (char *)a1,
                    (char *)a2,
                    NULL};
    int rc = ts_run(argv, out, errp, ts_scale(60000));
    *err = ts_read_file(errp);
    if (!*err)
        *err = strdup("");
    if (!*out)
        *out = strdup("");
    return rc;
}

static void assert_has(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("expected '%s' in:\n%s", want, text);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "verify_receipts", 40, 8, 1, 3000, "0.02", "0", 0, 41))
        return -1;
    tc.d.checkpoint_ms = 50;
    if (ts_tallyd_start(&tc.d, ts_scale(30000)) != 0)
        return -1;
    char file[1200], out[1200], err[1200];
    ts_case_paths(&tc, 0, file, spool, out, err, sizeof file);
    struct ts_proc p;
    if (ts_case_push(&tc, &p, 0, 200) != 0 || ts_proc_wait(&p, ts_scale(60000)) != 0 ||
        ts_proc_code(&p) != 0) {
        ts_dump_tail("tally-push stderr", err, 20);
        return -1;
    }
    return record_build();
}

static int teardown(void **state)
{
    (void)state;
    if (fake.thread) {
        fake.stop = true;
        pthread_join(fake.thread, NULL);
        close(fake.fd);
    }
    SSL_CTX_free(fake.tls);
    ts_case_teardown(&tc, false);
    return 0;
}

/* Against tallyd itself, once its endpoint is there. */
static void test_real_tallyd(void **state)
{
    (void)state;
    char *head = ts_sql_text(
        tc.conninfo, "SELECT encode(hash, 'hex') FROM checkpoints ORDER BY id DESC LIMIT 1");
    assert_non_null(head);
    char body[512];
    int st = ts_http_get(tc.d.http_port, "/v1/receipts/c0/1", body, sizeof body, 5000);
    if (st == 404) {
        fprintf(stderr, "tallyd answers 404 for /v1/receipts/c0/1: no receipts endpoint yet\n");
        free(head);
        skip();
    }
    char *out, *err;
    int rc = verify(tc.d.http_port, head, NULL, NULL, &out, &err);
    if (rc != 0)
        fail_msg("exit %d\n%s%s", rc, out, err);
    char want[160];
    snprintf(want, sizeof want, "receipts: %zu verified against head %s\n", rec.n, head);
    assert_string_equal(out, want);
    free(out);
    free(err);

    /* The collector named, and another head: the first batch fails. */
    char other[65];
    snprintf(other, sizeof other, "%s", head);
    other[0] = other[0] == '0' ? '1' : '0';
    rc = verify(tc.d.http_port, other, "--collector", "c0", &out, &err);
    assert_int_equal(rc, 1);
    char first[64];
    snprintf(first, sizeof first, "receipt for c0/%" PRIu64 ": ", rec.seq[0]);
    assert_has(err, first);
    assert_has(err, "does not reach head");
    free(out);
    free(err);
    free(head);
}

static void fake_case(enum fake_mode mode, size_t target_k, const char *head, int want_rc,
                      const char *want_err)
{
    fake.mode = mode;
    fake.target = rec.seq[target_k];
    char *out, *err;
    char h[65];
    hex(rec.head, h);
    int rc = verify(fake.port, head ? head : h, fake.tls ? "--http-tls-ca" : NULL,
                    fake.tls ? ca_dir : NULL, &out, &err);
    if (rc != want_rc)
        fail_msg("mode %d: exit %d, not %d\n%s%s", (int)mode, rc, want_rc, out, err);
    if (want_rc == 0) {
        char want[160];
        snprintf(want, sizeof want, "receipts: %zu verified against head %s\n", rec.n, h);
        assert_string_equal(out, want);
    } else {
        char who[64];
        snprintf(who, sizeof who, "tally-push: receipt for c0/%" PRIu64 ": ", rec.seq[target_k]);
        assert_has(err, who);
        assert_has(err, want_err);
        assert_string_equal(out, "");
    }
    free(out);
    free(err);
}

static void test_fake_server(void **state)
{
    (void)state;
    assert_true(rec.n >= 10);
    /* BLAKE2b-256 of nothing, as libsodium and docs/consultation.md have it. */
    struct b2 s;
    uint8_t e[32];
    char h[65];
    b2_init(&s);
    b2_final(&s, e);
    hex(e, h);
    assert_string_equal(h, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");

    assert_int_equal(fake_start(), 0);
    size_t mid = rec.n / 2;
    fake_case(FAKE_GOOD, 0, NULL, 0, NULL);
    fake_case(FAKE_CHUNKED, 0, NULL, 0, NULL);
    fake_case(FAKE_PATH, mid, NULL, 1, "its Merkle path (leaf 1 of 3, 2 hashes) does not lead");
    fake_case(FAKE_LINK, mid, NULL, 1, "hashes to");
    fake_case(FAKE_COLLECTOR, mid, NULL, 1, "the receipt is for c9/");
    fake_case(FAKE_404, mid, NULL, 1, "tallyd answers 404 Not Found, but the spool holds");
    fake_case(FAKE_500, mid, NULL, 1, "HTTP 500 Internal Server Error");
    fake_case(FAKE_TRUNCATED, mid, NULL, 1, "truncated response");
    /* A head that is not the chain's: the very first batch fails. */
    char wrong[65];
    hex(rec.head, wrong);
    wrong[63] = wrong[63] == 'a' ? 'b' : 'a';
    fake_case(FAKE_GOOD, 0, wrong, 1, "does not reach head");
    /* The head of an earlier checkpoint: the batches after it are not under it. */
    hex(rec.ck[mid].hash, wrong);
    fake_case(FAKE_GOOD, mid + 1, wrong, 1, "does not reach head");

    /* Nothing listening. */
    char *out, *err;
    hex(rec.head, h);
    uint16_t closed = ts_free_port();
    assert_int_equal(verify(closed, h, NULL, NULL, &out, &err), 1);
    assert_has(err, "cannot connect to 127.0.0.1");
    free(out);
    free(err);
    /* Usage errors: no --head, a bad --http. */
    char *argv[] = {(char *)ts_prog("tally-push"), "--verify-receipts", "--spool", spool, NULL};
    assert_int_equal(ts_run(argv, NULL, "/dev/null", 10000), 2);
    assert_int_equal(verify(fake.port, "xyz", NULL, NULL, &out, &err), 2);
    assert_has(err, "--head wants");
    free(out);
    free(err);
}

/* The same server over TLS with a `tallyctl ca` certificate for 127.0.0.1. */
static void test_fake_https(void **state)
{
    (void)state;
    snprintf(ca_dir, sizeof ca_dir, "%.1100s/ca", tc.dir);
    char *argv[] = {(char *)ts_prog("tallyctl"), "ca", "init", ca_dir, NULL};
    assert_int_equal(ts_run(argv, NULL, NULL, 60000), 0);
    char crt[1300], key[1300];
    snprintf(crt, sizeof crt, "%s/server.crt", ca_dir);
    snprintf(key, sizeof key, "%s/server.key", ca_dir);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    if (!fake.thread)
        assert_int_equal(fake_start(), 0);
    fake.tls = ctx;
    snprintf(ca_dir + strlen(ca_dir), sizeof ca_dir - strlen(ca_dir), "/ca.crt");
    fake_case(FAKE_GOOD, 0, NULL, 0, NULL);
    fake_case(FAKE_PATH, 1, NULL, 1, "does not lead");
    /* Plain HTTP to a TLS port fails as a transport error, naming the batch. */
    char *out, *err, h[65];
    hex(rec.head, h);
    assert_int_equal(verify(fake.port, h, NULL, NULL, &out, &err), 1);
    assert_has(err, "receipt for c0/");
    free(out);
    free(err);
    /* A CA that did not sign the server's certificate. */
    char other[1300];
    snprintf(other, sizeof other, "%.1100s/ca2", tc.dir);
    char *argv2[] = {(char *)ts_prog("tallyctl"), "ca", "init", other, NULL};
    assert_int_equal(ts_run(argv2, NULL, NULL, 60000), 0);
    snprintf(other + strlen(other), sizeof other - strlen(other), "/ca.crt");
    assert_int_equal(verify(fake.port, h, "--http-tls-ca", other, &out, &err), 1);
    assert_has(err, "certificate");
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_server),
        cmocka_unit_test(test_fake_https),
        cmocka_unit_test(test_real_tallyd),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
