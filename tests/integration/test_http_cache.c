/* The HTTP API's caching of a real tallyd over PostgreSQL, as a reverse proxy and a browser
 * see it: gzip answers (Content-Encoding, Vary, a -gz ETag, the body decompressed by zlib
 * equal to the plain one byte for byte, 304 on either tag, HEAD's length), Cache-Control per
 * route and X-Accel-Buffering on the event stream, per-resource ETags (a circuit's tag and
 * its 304 survive a checkpoint that changed only another circuit, and change with its own),
 * /v1/results?since= (only the rows changed after a checkpoint; every row for an id older
 * than the server's first snapshot), and /v1/history (a point per checkpoint, also after a
 * restart). docs/api.md, "Caching". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zlib.h>

#define COLLECTORS 2

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "http_cache", 600, 60, COLLECTORS, 20000, "0.02", "0.001", 0, 43))
        return -1;
    /* For the votes the test adds itself, one collector (and spool) per push. */
    if (ts_ctl(tc.conninfo, NULL, "add-collector", "x1", NULL) ||
        ts_ctl(tc.conninfo, NULL, "add-collector", "x2", NULL))
        return -1;
    tc.d.checkpoint_ms = 50;
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, false);
    return 0;
}

/* ---- a raw HTTP/1.1 client that keeps the headers and a binary body --------------------- */

struct hresp {
    int status;
    char head[8192];
    char *body; /* NUL-terminated; body_len bytes (may hold NULs) */
    size_t body_len;
};

static void hresp_free(struct hresp *r)
{
    free(r->body);
    r->body = NULL;
}

/* method path with extra header lines (each ending in \r\n, or NULL), Connection: close;
 * the whole answer in r (until the server closes). */
static void hreq(const char *method, const char *path, const char *headers, struct hresp *r)
{
    memset(r, 0, sizeof(*r));
    int fd = ts_connect(tc.d.http_port, ts_scale(5000));
    assert_true(fd >= 0);
    char req[2048];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
             method, path, headers ? headers : "");
    assert_int_equal(ts_send_all(fd, req, strlen(req)), 0);
    size_t got = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    for (;;) {
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0)
            fail_msg("%s %s: no complete answer within 10 s", method, path);
        struct pollfd pfd = {fd, POLLIN, 0};
        int n = poll(&pfd, 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (got + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = recv(fd, buf + got, cap - got - 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end)
        fail_msg("%s %s: no head in %zu bytes", method, path, got);
    snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - buf + 2), buf);
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &r->status), 1);
    r->body_len = got - (size_t)(end + 4 - buf);
    r->body = malloc(r->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
}

static void hget(const char *path, struct hresp *r)
{
    hreq("GET", path, NULL, r);
}

/* A header's value (case-insensitive name) copied into out, or NULL. */
static const char *hdr(const struct hresp *r, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
            const char *v = l + 3 + n;
            while (*v == ' ')
                v++;
            snprintf(out, len, "%.*s", (int)strcspn(v, "\r\n"), v);
            return out;
        }
    }
    return NULL;
}

static uint64_t json_u64(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(json, k);
    return p ? strtoull(p + strlen(k), NULL, 10) : UINT64_MAX;
}

static char *gunzip(const char *p, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    size_t cap = n * 10 + 4096;
    char *out = malloc(cap);
    assert_non_null(out);
    z.next_in = (unsigned char *)p;
    z.avail_in = (uInt)n;
    int rc;
    do {
        if (z.total_out == cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        z.next_out = (unsigned char *)out + z.total_out;
        z.avail_out = (uInt)(cap - z.total_out);
        rc = inflate(&z, Z_NO_FLUSH);
    } while (rc == Z_OK);
    *out_len = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || z.avail_in != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- the checks -------------------------------------------------------------------------- */

/* Plain and gzip answers of path: Vary on both, the gzip one with Content-Encoding and the
 * plain tag plus -gz, equal once decompressed; 304 on either tag; HEAD's length. */
static void check_gzip(const char *path)
{
    struct hresp plain, gz, r;
    char v[256], tag[256], want[256], inm[512];
    hget(path, &plain);
    assert_int_equal(plain.status, 200);
    assert_string_equal(hdr(&plain, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_null(hdr(&plain, "Content-Encoding", v, sizeof(v)));
    assert_non_null(hdr(&plain, "ETag", tag, sizeof(tag)));
    hreq("GET", path, "Accept-Encoding: gzip, deflate\r\n", &gz);
    assert_int_equal(gz.status, 200);
    assert_string_equal(hdr(&gz, "Vary", v, sizeof(v)), "Accept-Encoding");
    if (!hdr(&gz, "Content-Encoding", v, sizeof(v)) || strcmp(v, "gzip") != 0)
        fail_msg("%s: not compressed (%zu bytes)", path, plain.body_len);
    snprintf(want, sizeof(want), "%.*s-gz\"", (int)strlen(tag) - 1, tag);
    assert_string_equal(hdr(&gz, "ETag", v, sizeof(v)), want);
    size_t n;
    char *text = gunzip(gz.body, gz.body_len, &n);
    if (!text)
        fail_msg("%s: the gzip body does not decode", path);
    if (n != plain.body_len || memcmp(text, plain.body, n) != 0)
        fail_msg("%s: %zu bytes decompressed, %zu plain, not the same", path, n, plain.body_len);
    free(text);
    fprintf(stderr, "%s: %zu bytes, gzip %zu\n", path, plain.body_len, gz.body_len);

    snprintf(inm, sizeof(inm), "Accept-Encoding: gzip\r\nIf-None-Match: %s\r\n", want);
    hreq("GET", path, inm, &r);
    assert_int_equal(r.status, 304);
    assert_string_equal(hdr(&r, "ETag", v, sizeof(v)), want);
    assert_string_equal(hdr(&r, "Vary", v, sizeof(v)), "Accept-Encoding");
    hresp_free(&r);
    snprintf(inm, sizeof(inm), "If-None-Match: %s\r\n", tag);
    hreq("GET", path, inm, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    hresp_free(&r);
    hreq("HEAD", path, "Accept-Encoding: gzip\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Encoding", v, sizeof(v)), "gzip");
    assert_int_equal(strtoull(hdr(&r, "Content-Length", v, sizeof(v)), NULL, 10), gz.body_len);
    assert_int_equal(r.body_len, 0);
    hresp_free(&r);
    hresp_free(&plain);
    hresp_free(&gz);
}

static void check_cache_control(void)
{
    static const struct {
        const char *path, *want;
    } routes[] = {
        {"/v1/summary", "public, max-age=1"},
        {"/v1/results", "public, max-age=1"},
        {"/v1/results?format=csv", "public, max-age=1"},
        {"/v1/circuits", "public, max-age=1"},
        {"/v1/states", "public, max-age=1"},
        {"/v1/corrections", "public, max-age=1"},
        {"/v1/history", "public, max-age=1"},
        {"/v1/collectors", "no-cache"},
        {"/v1/circuits/4294967295", "no-cache"}, /* an error */
        {"/metrics", "no-store"},
        {"/healthz", "no-store"},
        {"/readyz", "no-store"},
    };
    struct hresp r;
    char v[128];
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        hget(routes[i].path, &r);
        if (!hdr(&r, "Cache-Control", v, sizeof(v)) || strcmp(v, routes[i].want) != 0)
            fail_msg("%s: Cache-Control %s, not %s", routes[i].path, v, routes[i].want);
        hresp_free(&r);
    }
    /* The stream: its head only (it never ends). */
    int fd = ts_connect(tc.d.http_port, ts_scale(5000));
    assert_true(fd >= 0);
    const char *req = "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(ts_send_all(fd, req, strlen(req)), 0);
    char head[4096];
    size_t got = 0;
    int64_t deadline = ts_now_ms() + ts_scale(5000);
    while (!memmem(head, got, "\r\n\r\n", 4)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (ts_now_ms() > deadline || poll(&pfd, 1, 100) < 0)
            fail_msg("/v1/events: no head");
        ssize_t k = recv(fd, head + got, sizeof(head) - 1 - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
        else if (k == 0)
            fail_msg("/v1/events: closed");
    }
    close(fd);
    head[got] = '\0';
    struct hresp sr = {.status = 200};
    snprintf(sr.head, sizeof(sr.head), "%s", head);
    assert_string_equal(hdr(&sr, "Cache-Control", v, sizeof(v)), "no-cache");
    assert_string_equal(hdr(&sr, "X-Accel-Buffering", v, sizeof(v)), "no");
}

static const char *etag(const char *path, char *out, size_t len)
{
    struct hresp r;
    hget(path, &r);
    if (r.status != 200)
        fail_msg("%s: %d", path, r.status);
    assert_non_null(hdr(&r, "ETag", out, len));
    hresp_free(&r);
    return out;
}

/* The ids after each {"id": of a document's array key, in order. */
static size_t ids_of(const char *body, const char *key, uint64_t *ids, size_t max)
{
    const char *p = strstr(body, key);
    assert_non_null(p);
    size_t n = 0;
    for (p = strstr(p, "{\"id\":"); p && n < max; p = strstr(p + 1, "{\"id\":"))
        ids[n++] = strtoull(p + 6, NULL, 10);
    return n;
}

/* The summary's checkpoint once its accepted votes reach want. */
static uint64_t wait_accepted(uint64_t want)
{
    int64_t deadline = ts_now_ms() + ts_scale(15000);
    for (;;) {
        struct hresp r;
        hget("/v1/summary", &r);
        assert_int_equal(r.status, 200);
        uint64_t accepted = json_u64(r.body, "accepted"), cp = json_u64(r.body, "checkpoint");
        hresp_free(&r);
        if (accepted == want)
            return cp;
        if (ts_now_ms() > deadline)
            fail_msg("accepted %" PRIu64 ", not %" PRIu64 " within 15 s", accepted, want);
        ts_sleep_ms(50);
    }
}

/* /v1/history: ids 1..n in order, one per checkpoint in the record. */
static void check_history(uint64_t accepted)
{
    uint64_t in_db;
    assert_int_equal(ts_sql_u64(tc.conninfo, "SELECT count(*) FROM checkpoints", &in_db), 0);
    struct hresp r;
    hget("/v1/history", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"stride\":1,\"points\":["));
    uint64_t cp = json_u64(r.body, "checkpoint"), n = 0, last_accepted = 0;
    for (const char *p = strstr(r.body, "{\"checkpoint\":"); p;
         p = strstr(p + 1, "{\"checkpoint\":")) {
        uint64_t id = strtoull(p + 14, NULL, 10);
        if (id != n + 1)
            fail_msg("history point %" PRIu64 " is checkpoint %" PRIu64, n, id);
        last_accepted = json_u64(p, "accepted");
        n++;
    }
    fprintf(stderr, "history: %" PRIu64 " points, %" PRIu64 " checkpoints in the record\n", n,
            in_db);
    assert_int_equal(n, in_db);
    assert_int_equal(n, cp);
    assert_int_equal(last_accepted, accepted);
    hresp_free(&r);
}

static void push_all(void)
{
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        struct ts_proc p;
        assert_int_equal(ts_case_push(&tc, &p, i, 0), 0);
        if (ts_proc_wait(&p, ts_scale(60000)) != 0) {
            ts_proc_kill(&p);
            fail_msg("tally-push c%u did not finish within 60 s", i);
        }
        assert_int_equal(ts_proc_code(&p), 0);
    }
}

/* More votes, from collector x<tag>: n for each of the projects. */
static void push_more(const uint64_t *projects, size_t np, unsigned n, unsigned tag)
{
    char spool[1200], out[1200], err[1200], path[1300], id[16];
    snprintf(id, sizeof(id), "x%u", tag);
    snprintf(spool, sizeof(spool), "%s/spool-x%u", tc.dir, tag);
    snprintf(out, sizeof(out), "%s/push-x%u.out", tc.dir, tag);
    snprintf(err, sizeof(err), "%s/push-x%u.err", tc.dir, tag);
    snprintf(path, sizeof(path), "%s/more-%u.csv", tc.dir, tag);
    size_t cap = np * n * 48 + 64, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (size_t k = 0; k < np; k++)
        for (unsigned i = 0; i < n; i++)
            len += (size_t)snprintf(text + len, cap - len, "cache-%u-%zu-%u,%" PRIu64 "\n", tag, k,
                                    i, projects[k]);
    assert_int_equal(ts_write_file(path, text), 0);
    free(text);
    struct ts_proc p;
    assert_int_equal(ts_push_spawn(&p, &tc.d, id, spool, path, 0, out, err), 0);
    if (ts_proc_wait(&p, ts_scale(30000)) != 0) {
        ts_proc_kill(&p);
        fail_msg("tally-push did not finish");
    }
    if (ts_proc_code(&p) != 0) {
        ts_dump_tail("tally-push", err, 20);
        fail_msg("tally-push exited %d", ts_proc_code(&p));
    }
}

static void test_cache(void **state)
{
    (void)state;
    struct hresp r;
    char v[256], path[256];

    /* Nothing committed yet: no point. */
    hget("/v1/history", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"stride\":1,\"points\":[]}"));
    hresp_free(&r);

    push_all();
    uint64_t accepted = tc.truth.accepted;
    uint64_t cp0 = wait_accepted(accepted);
    assert_true(cp0 >= COLLECTORS);

    check_gzip("/v1/results");
    check_gzip("/v1/results?format=csv");
    check_gzip("/v1/circuits");
    check_gzip("/v1/states");
    check_gzip("/v1/summary");
    check_cache_control();
    check_history(accepted);
    /* /metrics: gzip, Vary, and what was made in slices. */
    hreq("GET", "/metrics", "Accept-Encoding: gzip\r\n", &r);
    assert_string_equal(hdr(&r, "Content-Encoding", v, sizeof(v)), "gzip");
    assert_string_equal(hdr(&r, "Vary", v, sizeof(v)), "Accept-Encoding");
    size_t mn;
    char *metrics = gunzip(r.body, r.body_len, &mn);
    assert_non_null(metrics);
    assert_true(ts_metric(metrics, "tally_http_gzip_jobs_total") >= 2);
    fprintf(stderr, "longest gzip slice %.2f ms, longest loop callback %.2f ms\n",
            ts_metric(metrics, "tally_http_gzip_slice_max_seconds") * 1e3,
            ts_metric(metrics, "tally_loop_iteration_max_seconds") * 1e3);
    free(metrics);
    hresp_free(&r);

    /* Two circuits: A stays, B gets votes. */
    uint64_t circuits[256], a_projects[64], b_projects[64];
    hget("/v1/circuits", &r);
    size_t nc = ids_of(r.body, "\"circuits\":[", circuits, 256);
    hresp_free(&r);
    assert_true(nc >= 2);
    uint64_t a = circuits[0], b = circuits[1];
    snprintf(path, sizeof(path), "/v1/results?circuit=%" PRIu64, b);
    hget(path, &r);
    size_t nb = ids_of(r.body, "\"projects\":[", b_projects, 64);
    hresp_free(&r);
    snprintf(path, sizeof(path), "/v1/results?circuit=%" PRIu64, a);
    hget(path, &r);
    size_t na = ids_of(r.body, "\"projects\":[", a_projects, 64);
    hresp_free(&r);
    assert_true(na >= 1 && nb >= 2);
    char a_paths[3][128], a_tags[3][256], b_tag[256], inm[1024];
    snprintf(a_paths[0], sizeof(a_paths[0]), "/v1/circuits/%" PRIu64, a);
    snprintf(a_paths[1], sizeof(a_paths[1]), "/v1/results?circuit=%" PRIu64, a);
    snprintf(a_paths[2], sizeof(a_paths[2]), "/v1/results?circuit=%" PRIu64 "&since=%" PRIu64, a,
             cp0);
    for (int i = 0; i < 3; i++)
        etag(a_paths[i], a_tags[i], sizeof(a_tags[i]));
    snprintf(path, sizeof(path), "/v1/circuits/%" PRIu64, b);
    etag(path, b_tag, sizeof(b_tag));
    char national[256];
    etag("/v1/results", national, sizeof(national));

    /* 40 votes for B's first project, 3 for its second. */
    push_more(b_projects, 1, 40, 1);
    push_more(b_projects + 1, 1, 3, 2);
    accepted += 43;
    uint64_t cp1 = wait_accepted(accepted);
    assert_true(cp1 > cp0);
    for (int i = 0; i < 3; i++) {
        if (strcmp(etag(a_paths[i], v, sizeof(v)), a_tags[i]) != 0)
            fail_msg("%s: %s became %s after votes of another circuit", a_paths[i], a_tags[i], v);
        snprintf(inm, sizeof(inm), "If-None-Match: %s\r\n", a_tags[i]);
        hreq("GET", a_paths[i], inm, &r);
        assert_int_equal(r.status, 304);
        hresp_free(&r);
    }
    assert_string_not_equal(etag(path, v, sizeof(v)), b_tag);
    assert_string_not_equal(etag("/v1/results", v, sizeof(v)), national);

    /* since: only rows of B, the two voted for among them. */
    snprintf(path, sizeof(path), "/v1/results?since=%" PRIu64, cp0);
    hget(path, &r);
    assert_int_equal(r.status, 200);
    snprintf(v, sizeof(v), "\"checkpoint\":%" PRIu64 ",", cp1);
    assert_non_null(strstr(r.body, v));
    snprintf(v, sizeof(v), ",\"since\":%" PRIu64 ",\"full\":false,\"projects\":[", cp0);
    assert_non_null(strstr(r.body, v));
    uint64_t changed[64];
    size_t nch = ids_of(r.body, "\"projects\":[", changed, 64);
    fprintf(stderr, "since=%" PRIu64 ": %zu projects changed (circuit %" PRIu64 " has %zu)\n", cp0,
            nch, b, nb);
    bool got0 = false, got1 = false;
    for (size_t i = 0; i < nch; i++) {
        bool in_b = false;
        for (size_t k = 0; k < nb; k++)
            in_b |= changed[i] == b_projects[k];
        if (!in_b)
            fail_msg("project %" PRIu64 " is not in circuit %" PRIu64, changed[i], b);
        got0 |= changed[i] == b_projects[0];
        got1 |= changed[i] == b_projects[1];
    }
    assert_true(got0 && got1);
    hresp_free(&r);
    check_gzip("/v1/results?since=0");
    snprintf(path, sizeof(path), "/v1/results?since=%" PRIu64, cp1);
    hget(path, &r);
    assert_non_null(strstr(r.body, "\"full\":false,\"projects\":[]}"));
    hresp_free(&r);
    static const char *const bad[] = {"/v1/results?since=x", "/v1/results?since=1&format=csv"};
    for (size_t i = 0; i < 2; i++) {
        hget(bad[i], &r);
        assert_int_equal(r.status, 400);
        hresp_free(&r);
    }
    /* Above the current checkpoint: not this record's rows either. */
    snprintf(path, sizeof(path), "/v1/results?since=%" PRIu64, cp1 + 1);
    hget(path, &r);
    assert_int_equal(r.status, 200);
    snprintf(v, sizeof(v), ",\"since\":%" PRIu64 ",\"full\":true,\"projects\":[", cp1 + 1);
    assert_non_null(strstr(r.body, v));
    hresp_free(&r);
    check_history(accepted);

    /* A restart: its first snapshot is cp1, so since=cp1 - 1 and cp1 itself are no base
     * for changes, and the history comes back from the record. */
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(20000)), 0);
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    snprintf(path, sizeof(path), "/v1/results?since=%" PRIu64, cp1 - 1);
    hget(path, &r);
    assert_int_equal(r.status, 200);
    snprintf(v, sizeof(v), ",\"since\":%" PRIu64 ",\"full\":true,\"projects\":[", cp1 - 1);
    assert_non_null(strstr(r.body, v));
    uint64_t all[1024];
    assert_int_equal(ids_of(r.body, "\"projects\":[", all, 1024), 600);
    hresp_free(&r);
    /* Not even the first snapshot's own id: a copy of it from before the restart may have
     * been made under another status (the embargo lifted while tallyd was down). */
    snprintf(path, sizeof(path), "/v1/results?since=%" PRIu64, cp1);
    hget(path, &r);
    snprintf(v, sizeof(v), ",\"since\":%" PRIu64 ",\"full\":true,\"projects\":[", cp1);
    assert_non_null(strstr(r.body, v));
    hresp_free(&r);
    check_history(accepted);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(20000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
