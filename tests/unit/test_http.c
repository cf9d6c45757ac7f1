/* http: the results API, event stream and metrics, served by a real evhttp server on
 * 127.0.0.1 (a port picked by the kernel) from a crafted registry whose circuits exercise
 * winners, ties at the seat boundary and circuits without votes. The test is its own HTTP
 * client over raw sockets and turns the event loop between reads, all on one thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <zlib.h>

#include "http/http.h"
#include "tls/tls.h"

/* ---- the crafted registry ------------------------------------------------------------------ */

/* Circuits (index: id, seats, votes):
 *   0: 100, 2 seats: 50, 30, 30, 30     one winner, a 3-way tie for the 2nd seat
 *   1: 200, 1 seat:  40, 10, 5          a clear winner, margin 30
 *   2: 300, 1 seat:  7, 7               a 2-way tie for the only seat
 *   3: 400, 1 seat:  0, 0               nobody voted: no winner, both tie
 *   4: 500, 2 seats: 9, 9, 1            a tie that fits the seats: both win
 * Dense order deliberately differs from id order. */
static const struct http_catalog_circuit circuits[] = {
    {100, "Alpha", "Zulia", 2},   {200, "Beta, \"the second\"", "Lara", 1},
    {300, "Gamma", "Lara", 1},    {400, "Delta", "Distrito Capital", 1},
    {500, "Epsilon", "Zulia", 2},
};

static const struct http_catalog_project projects[] = {
    {1004, "Cancha", 0},
    {1001, "Escuela", 0},
    {1002, "Dispensario", 0},
    {1003, "Vialidad", 0},
    {2001, "Agua, \"potable\"", 1},
    {2002, "Luz\nsolar", 1},
    {2003, "Mercado", 1},
    {3001, "Biblioteca", 2},
    {3002, "Plaza", 2},
    {4001, "Puente", 3},
    {4002, "Huerto", 3},
    {5003, "Taller", 4},
    {5001, "Radio", 4},
    {5002, "Cocina", 4},
};
#define NP (sizeof(projects) / sizeof(projects[0]))

static const uint64_t votes0[NP] = {30, 50, 30, 30, 10, 40, 5, 7, 7, 0, 0, 1, 9, 9};

static const struct http_catalog catalog = {
    .consultation_id = "consulta-2024-1",
    .consultation_name = "Consulta Popular Nacional",
    .projects = projects,
    .n_projects = NP,
    .circuits = circuits,
    .n_circuits = sizeof(circuits) / sizeof(circuits[0]),
};

static const struct http_collector_status collectors[] = {
    {"c1",
     true,
     1732369201123,
     3,
     5,
     {.batches = 3,
      .votes = 122,
      .accepted = 100,
      .duplicate = 15,
      .rejected_unknown_project = 5,
      .rejected_not_allowed = 2}},
    {"c0", false, 0, 0, 0, {.batches = 0}},
};

/* What the is_ready hook answers; each server under test points its hooks at one. */
struct readiness {
    bool ready;
    const char *reason; /* written when not ready; NULL writes nothing */
};

static struct readiness main_ready;

static bool hook_ready(void *arg, char *reason, size_t len)
{
    const struct readiness *r = arg;
    if (!r->ready && r->reason)
        snprintf(reason, len, "%s", r->reason);
    return r->ready;
}

static void hook_metrics(void *arg, struct http_metrics *m)
{
    (void)arg;
    m->votes_accepted = 247;
    m->votes_duplicate = 15;
    m->votes_rejected_unknown_project = 5;
    m->votes_rejected_not_allowed = 3;
    m->batches = 7;
    m->seq_conflicts = 3;
    m->bytes_received = 4096;
    m->connections_open = 1;
    m->connections_total = 3;
    m->checkpoints = 4;
    for (size_t b = 0; b <= HTTP_CHECKPOINT_BUCKETS; b++)
        m->checkpoint_bucket[b] = b < 3 ? 1 : b < 6 ? 3 : 4;
    m->checkpoint_seconds_sum = 0.25;
    m->checkpoint_lag_seconds = 0.125;
    m->pg_errors = 2;
    m->backlog_votes = 12;
    m->ballots = 247;
    m->paused = false;
    m->writer_epoch = 5;
    m->postgres_up = true;
    m->version = "9.8.7";
    m->commit = "abc1234";
    m->process_cpu_seconds = 1.5;
    m->process_resident_bytes = 1 << 20;
    m->process_open_fds = 12;
    m->process_max_fds = 1024;
    m->process_start_time = 1700000000.0;
}

static const struct http_hooks hooks = {hook_ready, hook_metrics, &main_ready};

static struct event_base *base;
static struct http_server *srv;
static uint16_t port;
static uint64_t next_cp = 10;
static uint64_t cur_votes[NP];
static uint64_t cur_epoch = 1;

/* The head hash published with checkpoint id: a function of the id, so that any event can
 * be checked, with bytes above 0x9f to catch upper-case hex. */
static void head_hash_of(uint64_t id, uint8_t out[32])
{
    for (size_t i = 0; i < 32; i++)
        out[i] = (uint8_t)(0xa5 ^ (id * 37 + i * 11));
}

/* "head_hash":"<64 hex digits>" as the server should render it for checkpoint id. */
static const char *head_hash_json(uint64_t id, char *out, size_t len)
{
    uint8_t hash[32];
    head_hash_of(id, hash);
    int n = snprintf(out, len, "\"head_hash\":\"");
    for (size_t i = 0; i < 32; i++)
        n += snprintf(out + n, len - (size_t)n, "%02x", hash[i]);
    snprintf(out + n, len - (size_t)n, "\"");
    return out;
}

static void publish_as(uint64_t id, const uint32_t *changed, size_t n_changed)
{
    struct http_checkpoint cp = {
        .id = id,
        .committed_ms = 1732369200000 + (int64_t)id * 250,
        .votes = cur_votes,
        .changed = changed,
        .n_changed = n_changed,
        .totals = {7, 270, 247, 15, 5, 3},
        .collectors = collectors,
        .n_collectors = 2,
        .epoch = cur_epoch,
    };
    head_hash_of(id, cp.head_hash);
    http_server_publish(srv, &cp);
}

static void publish(const uint32_t *changed, size_t n_changed)
{
    publish_as(next_cp++, changed, n_changed);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    srv = http_server_new(base, "127.0.0.1", 0, &catalog, &hooks);
    if (!srv)
        return -1;
    port = http_server_port(srv);
    if (port == 0)
        return -1;
    memcpy(cur_votes, votes0, sizeof(cur_votes));
    publish(NULL, 0); /* the recovered state */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_server_free(srv);
    event_base_free(base);
    return 0;
}

/* ---- a tiny HTTP client that turns the loop while it waits ------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the server's loop and polls fd for input, about 1 ms. */
static void pump(int fd)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    struct pollfd p = {fd, POLLIN, 0};
    poll(&p, fd >= 0 ? 1 : 0, 1);
    event_base_loop(base, EVLOOP_NONBLOCK);
}

/* While client_tls is set, connect_to() does a TLS handshake with it (verifying the server's
 * certificate for 127.0.0.1) and every helper below reads and writes through tls_of[fd]. */
static SSL_CTX *client_tls;
#define MAX_FD 4096
static SSL *tls_of[MAX_FD];

/* Finishes the TLS handshake on fd, turning the loop; the session, or NULL if it failed. */
static SSL *tls_handshake(int fd)
{
    SSL *ssl = SSL_new(client_tls);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
    int64_t deadline = now_ms() + 3000;
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1)
            return ssl;
        int e = SSL_get_error(ssl, r);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || now_ms() > deadline) {
            SSL_free(ssl);
            ERR_clear_error();
            return NULL;
        }
        pump(fd);
    }
}

static int connect_to(uint16_t to, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0 && fd < MAX_FD);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(to)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
    assert_true(r == 0 || errno == EINPROGRESS);
    if (client_tls) {
        tls_of[fd] = tls_handshake(fd);
        if (!tls_of[fd])
            fail_msg("TLS handshake with 127.0.0.1:%u failed", to);
    }
    return fd;
}

static void conn_close(int fd)
{
    SSL_free(tls_of[fd]);
    tls_of[fd] = NULL;
    close(fd);
}

/* send(2) or SSL_write: >0 bytes written, 0 to retry later, -1 on error. */
static ssize_t conn_send(int fd, const char *p, size_t n)
{
    SSL *ssl = tls_of[fd];
    if (!ssl) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN))
            return 0;
        return w;
    }
    int w = SSL_write(ssl, p, (int)n);
    if (w > 0)
        return w;
    int e = SSL_get_error(ssl, w);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static void send_text(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    int64_t deadline = now_ms() + 2000;
    while (off < n) {
        ssize_t w = conn_send(fd, s + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0)
            fail_msg("send: %s", strerror(errno));
        else
            pump(-1);
        if (now_ms() > deadline)
            fail_msg("send timed out");
    }
}

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Reads what is there; returns 0 on EOF, 1 otherwise. */
static int read_some(int fd, struct buf *b)
{
    char tmp[65536];
    SSL *ssl = tls_of[fd];
    while (ssl) {
        int n = SSL_read(ssl, tmp, sizeof(tmp));
        if (n > 0) {
            buf_add(b, tmp, (size_t)n);
            continue;
        }
        int e = SSL_get_error(ssl, n);
        ERR_clear_error();
        /* The client context ignores a missing close_notify: EOF reads as ZERO_RETURN. */
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n > 0) {
            buf_add(b, tmp, (size_t)n);
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET)
            return 0;
        return 1;
    }
}

/* Decodes as much chunked transfer coding as is complete; consumed counts raw bytes. */
static void dechunk(const struct buf *raw, size_t *consumed, struct buf *out)
{
    for (;;) {
        const char *p = raw->p + *consumed;
        const char *crlf = strstr(p, "\r\n");
        if (!crlf)
            return;
        size_t n = strtoul(p, NULL, 16);
        size_t need = (size_t)(crlf - p) + 2 + n + 2;
        if (raw->len - *consumed < need)
            return;
        buf_add(out, crlf + 2, n);
        *consumed += need;
    }
}

struct resp {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Header value (case-insensitive name) in a response head, copied into out; NULL if absent. */
static const char *header(const char *head, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            l += n + 1;
            while (*l == ' ')
                l++;
            size_t k = strcspn(l, "\r\n");
            snprintf(out, len, "%.*s", (int)k, l);
            return out;
        }
    }
    return NULL;
}

/* One request on its own connection ("Connection: close"); the whole response. */
static void request(const char *method, const char *path, const char *extra, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    int fd = connect_to(port, 0);
    char req[2048];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
             method, path, extra ? extra : "");
    send_text(fd, req);
    struct buf raw = {0};
    int64_t deadline = now_ms() + 3000;
    while (read_some(fd, &raw)) {
        if (now_ms() > deadline)
            fail_msg("%s %s: no complete answer within 3 s", method, path);
        pump(fd);
    }
    conn_close(fd);
    assert_non_null(raw.p);
    const char *end = strstr(raw.p, "\r\n\r\n");
    assert_non_null(end);
    snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - raw.p + 2), raw.p);
    assert_int_equal(sscanf(raw.p, "HTTP/1.1 %d", &r->status), 1);
    char te[64];
    struct buf body = {0};
    buf_add(&body, "", 0);
    size_t off = (size_t)(end + 4 - raw.p);
    if (header(r->head, "Transfer-Encoding", te, sizeof(te)) && strstr(te, "chunked")) {
        struct buf tail = {0};
        buf_add(&tail, raw.p + off, raw.len - off);
        size_t consumed = 0;
        dechunk(&tail, &consumed, &body);
        free(tail.p);
    } else {
        buf_add(&body, raw.p + off, raw.len - off);
    }
    free(raw.p);
    r->body = body.p;
    r->body_len = body.len;
}

static void get(const char *path, struct resp *r)
{
    request("GET", path, NULL, r);
}

/* ---- a JSON syntax checker (RFC 8259) -------------------------------------------------------- */

static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = json_string(json_ws(p));
                if (!p)
                    return NULL;
                p = json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            p = json_value(p);
            if (!p)
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    if (*p == '"')
        return json_string(p);
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    char *end;
    strtod(p, &end);
    return end == p ? NULL : end;
}

static void assert_json(const char *body)
{
    const char *end = json_value(body);
    if (!end || *json_ws(end) != '\0')
        fail_msg("not JSON: %.300s", body);
}

/* The object of a project {"id":ID,...} in a JSON body (copied into out). */
static const char *obj_of(const char *body, uint32_t id, char *out, size_t len)
{
    char key[32];
    snprintf(key, sizeof(key), "{\"id\":%" PRIu32 ",", id);
    const char *p = strstr(body, key);
    if (!p)
        fail_msg("no object with id %" PRIu32 " in %.200s", id, body);
    size_t n = strcspn(p, "}");
    snprintf(out, len, "%.*s}", (int)n, p);
    return out;
}

static void assert_has(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected %s in %.400s", needle, hay);
}

static void assert_project(const char *body, uint32_t id, uint64_t votes, uint32_t rank,
                           bool winner, bool tie)
{
    char o[512], want[128];
    obj_of(body, id, o, sizeof(o));
    snprintf(want, sizeof(want),
             "\"votes\":%" PRIu64 ",\"rank\":%" PRIu32 ",\"winner\":%s,"
             "\"tie\":%s",
             votes, rank, winner ? "true" : "false", tie ? "true" : "false");
    assert_has(o, want);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_results_json(void **state)
{
    (void)state;
    struct resp r;
    get("/v1/results", &r);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(header(r.head, "Content-Type", v, sizeof(v)),
                        "application/json; charset=utf-8");
    assert_string_equal(header(r.head, "Cache-Control", v, sizeof(v)), "public, max-age=1");
    assert_string_equal(header(r.head, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_json(r.body);
    assert_has(r.body, "\"consultation\":{\"id\":\"consulta-2024-1\",\"name\":\"Consulta Popular "
                       "Nacional\"}");
    assert_has(r.body, "\"checkpoint\":10,");
    /* 2 seats, 50/30/30/30: the 3-way tie for the 2nd seat picks nobody. */
    assert_project(r.body, 1001, 50, 1, true, false);
    assert_project(r.body, 1002, 30, 2, false, true);
    assert_project(r.body, 1003, 30, 2, false, true);
    assert_project(r.body, 1004, 30, 2, false, true);
    /* 1 seat, clear winner. */
    assert_project(r.body, 2002, 40, 1, true, false);
    assert_project(r.body, 2001, 10, 2, false, false);
    assert_project(r.body, 2003, 5, 3, false, false);
    /* 1 seat, 2-way tie. */
    assert_project(r.body, 3001, 7, 1, false, true);
    assert_project(r.body, 3002, 7, 1, false, true);
    /* Nobody voted. */
    assert_project(r.body, 4001, 0, 1, false, true);
    assert_project(r.body, 4002, 0, 1, false, true);
    /* A tie inside the seats: both win. */
    assert_project(r.body, 5001, 9, 1, true, false);
    assert_project(r.body, 5002, 9, 1, true, false);
    assert_project(r.body, 5003, 1, 3, false, false);
    char o[256];
    assert_has(obj_of(r.body, 2001, o, sizeof(o)),
               "\"name\":\"Agua, \\\"potable\\\"\",\"circuit_id\":200,");
    assert_has(obj_of(r.body, 2002, o, sizeof(o)), "\"name\":\"Luz\\nsolar\"");
    /* Every project, ordered by id. */
    const char *prev = r.body;
    uint32_t ids[NP];
    for (size_t i = 0; i < NP; i++)
        ids[i] = projects[i].id;
    for (size_t i = 0; i < NP; i++)
        for (size_t j = i + 1; j < NP; j++)
            if (ids[j] < ids[i]) {
                uint32_t t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
    for (size_t i = 0; i < NP; i++) {
        char key[32];
        snprintf(key, sizeof(key), "{\"id\":%" PRIu32 ",", ids[i]);
        const char *at = strstr(r.body, key);
        assert_non_null(at);
        assert_true(at > prev);
        prev = at;
    }
    resp_free(&r);

    /* HEAD: the same headers, no body. */
    request("HEAD", "/v1/results", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_results_filters(void **state)
{
    (void)state;
    struct resp r;
    get("/v1/results?state=Lara", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_int_equal(count(r.body, "\n{\"id\":"), 5);
    assert_int_equal(count(r.body, "\"circuit_id\":200"), 3);
    assert_int_equal(count(r.body, "\"circuit_id\":300"), 2);
    resp_free(&r);

    get("/v1/results?circuit=100", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(count(r.body, "\n{\"id\":"), 4);
    assert_int_equal(count(r.body, "\"circuit_id\":100"), 4);
    resp_free(&r);

    get("/v1/results?state=Distrito%20Capital", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(count(r.body, "\n{\"id\":"), 2);
    resp_free(&r);

    get("/v1/results?state=Zulia&circuit=200", &r); /* both apply: nothing left */
    assert_int_equal(r.status, 200);
    assert_int_equal(count(r.body, "\n{\"id\":"), 0);
    assert_json(r.body);
    resp_free(&r);

    get("/v1/results?state=Nowhere", &r);
    assert_int_equal(r.status, 404);
    assert_json(r.body);
    assert_has(r.body, "\"error\":");
    resp_free(&r);

    get("/v1/results?circuit=12x", &r);
    assert_int_equal(r.status, 400);
    assert_has(r.body, "\"error\":");
    resp_free(&r);

    get("/v1/results?format=xml", &r);
    assert_int_equal(r.status, 400);
    assert_has(r.body, "\"error\":");
    resp_free(&r);
}

static void test_results_csv(void **state)
{
    (void)state;
    struct resp r;
    get("/v1/results?format=csv", &r);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(header(r.head, "Content-Type", v, sizeof(v)), "text/csv; charset=utf-8");
    const char *want_head =
        "project_id,project_name,circuit_id,circuit_name,state,votes,rank,winner,tie\r\n";
    assert_memory_equal(r.body, want_head, strlen(want_head));
    assert_int_equal(count(r.body, "\r\n"),
                     NP + 1); /* header and rows; "Luz\nsolar" has a bare LF */
    resp_free(&r);

    get("/v1/results?format=csv&circuit=200", &r);
    assert_int_equal(r.status, 200);
    assert_has(r.body,
               "\r\n2001,\"Agua, \"\"potable\"\"\",200,\"Beta, \"\"the second\"\"\",Lara,10,"
               "2,false,false\r\n");
    assert_has(r.body, "\r\n2002,\"Luz\nsolar\",200,\"Beta, \"\"the second\"\"\",Lara,40,1,true,"
                       "false\r\n");
    assert_has(r.body, "\r\n2003,Mercado,200,");
    resp_free(&r);

    get("/v1/results?format=csv&circuit=300", &r);
    assert_has(r.body, "\r\n3001,Biblioteca,300,Gamma,Lara,7,1,false,true\r\n");
    resp_free(&r);
}

static void test_circuits(void **state)
{
    (void)state;
    struct resp r;
    get("/v1/circuits", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    char o[512];
    assert_has(obj_of(r.body, 100, o, sizeof(o)),
               "\"seats\":2,\"projects\":4,\"votes\":140,\"winners\":[1001],\"tie\":true,"
               "\"margin\":0");
    assert_has(obj_of(r.body, 200, o, sizeof(o)),
               "\"seats\":1,\"projects\":3,\"votes\":55,\"winners\":[2002],\"tie\":false,"
               "\"margin\":30");
    assert_has(obj_of(r.body, 300, o, sizeof(o)), "\"winners\":[],\"tie\":true,\"margin\":0");
    assert_has(obj_of(r.body, 400, o, sizeof(o)),
               "\"votes\":0,\"winners\":[],\"tie\":true,\"margin\":0");
    assert_has(obj_of(r.body, 500, o, sizeof(o)),
               "\"winners\":[5001,5002],\"tie\":false,\"margin\":8");
    assert_has(obj_of(r.body, 400, o, sizeof(o)), "\"state\":\"Distrito Capital\"");
    resp_free(&r);

    get("/v1/circuits?state=Zulia", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(count(r.body, "\"seats\":"), 2);
    resp_free(&r);

    get("/v1/circuits/200", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "\"id\":200,\"name\":\"Beta, \\\"the second\\\"\",\"state\":\"Lara\","
                       "\"seats\":1");
    assert_has(r.body, "\"margin\":30,\"ranking\":[");
    const char *a = strstr(r.body, "{\"id\":2002,"), *b = strstr(r.body, "{\"id\":2001,"),
               *c = strstr(r.body, "{\"id\":2003,");
    assert_true(a && b && c && a < b && b < c);
    assert_has(obj_of(r.body, 2002, o, sizeof(o)),
               "\"votes\":40,\"rank\":1,\"winner\":true,\"tie\":false,\"margin_to_next\":30");
    assert_has(obj_of(r.body, 2001, o, sizeof(o)), "\"rank\":2,\"winner\":false,\"tie\":false,"
                                                   "\"margin_to_next\":5");
    assert_has(obj_of(r.body, 2003, o, sizeof(o)), "\"margin_to_next\":null");
    resp_free(&r);

    get("/v1/circuits/100", &r);
    assert_has(obj_of(r.body, 1001, o, sizeof(o)), "\"winner\":true,\"tie\":false,"
                                                   "\"margin_to_next\":20");
    /* Ties in rank order by project id. */
    a = strstr(r.body, "{\"id\":1002,");
    b = strstr(r.body, "{\"id\":1003,");
    c = strstr(r.body, "{\"id\":1004,");
    assert_true(a && b && c && a < b && b < c);
    resp_free(&r);

    const char *missing[] = {"/v1/circuits/999", "/v1/circuits/abc", "/v1/circuits/",
                             "/v1/circuits/99999999999"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        get(missing[i], &r);
        assert_int_equal(r.status, 404);
        assert_json(r.body);
        assert_has(r.body, "\"error\":");
        resp_free(&r);
    }
}

static void test_summary_and_collectors(void **state)
{
    (void)state;
    struct resp r;
    get("/v1/summary", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "\"totals\":{\"batches\":7,\"votes\":270,\"accepted\":247,"
                       "\"duplicate\":15,\"rejected\":{\"unknown_project\":5,\"not_allowed\":3}}");
    assert_has(r.body, "\"collectors\":{\"registered\":2,\"connected\":1,\"reporting\":1}");
    assert_has(r.body, "\"projects\":14,\"circuits\":5");
    assert_has(r.body, "{\"name\":\"Lara\",\"circuits\":2,\"projects\":5,\"votes\":69,"
                       "\"winners\":1,\"progress\":{\"tables\":0,");
    assert_has(r.body, "\"name\":\"Distrito Capital\"");
    assert_has(r.body, "\"time\":\"20");
    resp_free(&r);

    get("/v1/collectors", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "{\"id\":\"c0\",\"connected\":false,\"last_seen\":null,");
    assert_has(r.body,
               "{\"id\":\"c1\",\"connected\":true,\"last_seen\":\"2024-11-23T13:40:01.123Z\","
               "\"batches\":3,\"votes\":122,\"accepted\":100,\"duplicate\":15,"
               "\"rejected\":7,\"rejected_by_reason\":{\"unknown_project\":5,"
               "\"not_allowed\":2},\"durable_seq\":3,\"applied_seq\":5,\"lag\":2,"
               "\"rejected_tables\":{\"unknown_table\":0,\"outside_table_circuit\":0,"
               "\"over_electors\":0,\"table_mode_conflict\":0},\"sheets\":{\"sent\":0,"
               "\"accepted\":0,\"duplicate\":0,\"rejected\":0}}");
    assert_true(strstr(r.body, "\"c0\"") < strstr(r.body, "\"c1\"")); /* ordered by id */
    resp_free(&r);
}

static void test_etag(void **state)
{
    (void)state;
    struct resp r;
    char etag[128], extra[256], v[128];
    get("/v1/results", &r);
    assert_non_null(header(r.head, "ETag", etag, sizeof(etag)));
    assert_true(strncmp(etag, "W/\"results-v", 12) == 0);
    resp_free(&r);

    snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", etag);
    request("GET", "/v1/results", extra, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(header(r.head, "ETag", v, sizeof(v)), etag);
    resp_free(&r);

    /* Another variant does not match the same tag. */
    request("GET", "/v1/results?format=csv", extra, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(r.head, "ETag", v, sizeof(v)));
    assert_string_not_equal(v, etag);
    resp_free(&r);

    /* A new checkpoint changes it. */
    uint32_t changed[] = {6};
    cur_votes[6] += 1;
    publish(changed, 1);
    request("GET", "/v1/results", extra, &r);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(header(r.head, "ETag", v, sizeof(v)), etag);
    assert_project(r.body, 2003, 6, 3, false, false);
    resp_free(&r);
    /* Weak comparison: the tag without its W/ matches too. */
    assert_true(strncmp(v, "W/\"", 3) == 0);
    snprintf(extra, sizeof(extra), "If-None-Match: \"x\", %s\r\n", v + 2);
    request("GET", "/v1/results", extra, &r);
    assert_int_equal(r.status, 304);
    resp_free(&r);
}

static void test_errors(void **state)
{
    (void)state;
    struct resp r;
    char v[128];
    get("/nope", &r);
    assert_int_equal(r.status, 404);
    assert_json(r.body);
    assert_has(r.body, "{\"error\":");
    assert_string_equal(header(r.head, "Content-Type", v, sizeof(v)),
                        "application/json; charset=utf-8");
    resp_free(&r);

    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        request(methods[i], "/v1/results", "Content-Length: 0\r\n", &r);
        assert_int_equal(r.status, 405);
        assert_string_equal(header(r.head, "Allow", v, sizeof(v)), "GET, HEAD");
        assert_json(r.body);
        assert_has(r.body, "{\"error\":");
        resp_free(&r);
    }
    request("POST", "/healthz", "Content-Length: 0\r\n", &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
}

static void test_health(void **state)
{
    (void)state;
    struct resp r;
    get("/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* Not ready: the hook's reason, as JSON (a quote in it escaped). */
    main_ready = (struct readiness){false, "PostgreSQL unreachable: \"db1\" refused"};
    get("/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_json(r.body);
    assert_has(r.body, "\"ready\":false,\"reason\":\"PostgreSQL unreachable: \\\"db1\\\" "
                       "refused\"}");
    resp_free(&r);
    /* A hook that gives no reason still gets one. */
    main_ready = (struct readiness){false, NULL};
    get("/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_json(r.body);
    assert_has(r.body, "\"reason\":\"not recovered or PostgreSQL unreachable\"");
    resp_free(&r);
    main_ready = (struct readiness){true, NULL};
    get("/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "\"status\":\"ready\"");
    assert_has(r.body, "\"ready\":true");
    resp_free(&r);
}

static void test_dashboard(void **state)
{
    (void)state;
    struct resp r;
    char v[128], etag[128], extra[256];
    get("/", &r);
    if (r.status == 404) { /* built without src/http/assets */
        assert_json(r.body);
        resp_free(&r);
        return;
    }
    assert_int_equal(r.status, 200);
    assert_non_null(header(r.head, "Content-Type", v, sizeof(v)));
    assert_true(strncmp(v, "text/html", 9) == 0);
    assert_non_null(header(r.head, "Cache-Control", v, sizeof(v)));
    assert_non_null(header(r.head, "ETag", etag, sizeof(etag)));
    assert_true(r.body_len > 0);
    resp_free(&r);
    snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", etag);
    request("GET", "/index.html", extra, &r);
    assert_int_equal(r.status, 304);
    resp_free(&r);
}

/* ---- Prometheus text exposition 0.0.4: a line-format checker ------------------------------ */

struct prom_type {
    char name[128];
    char type[16];
};

static bool prom_name(const char **p, char *out, size_t len)
{
    const char *s = *p;
    if (!(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
        return false;
    while (isalnum((unsigned char)*s) || *s == '_' || *s == ':')
        s++;
    if ((size_t)(s - *p) >= len)
        return false;
    snprintf(out, len, "%.*s", (int)(s - *p), *p);
    *p = s;
    return true;
}

static const char *type_of(const struct prom_type *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return t[i].type;
    return NULL;
}

/* Checks every line; returns the value of `want` (first sample with that exact text before
 * the value, labels included) or NAN. */
static double prom_check(const char *text, const char *want)
{
    struct prom_type types[128];
    size_t n_types = 0;
    double found = NAN;
    char hist[128] = "";
    double last_le = -INFINITY, last_bucket = -1, inf_bucket = -1;
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            fail_msg("metrics: last line not terminated");
        char l[512];
        snprintf(l, sizeof(l), "%.*s", (int)(eol - line), line);
        line = eol + 1;
        if (l[0] == '#') {
            char kw[16], name[128], rest[16] = "";
            if (sscanf(l, "# %15s %127s %15s", kw, name, rest) < 2)
                fail_msg("metrics: bad comment: %s", l);
            if (strcmp(kw, "TYPE") == 0) {
                const char *known[] = {"counter", "gauge", "histogram", "summary", "untyped"};
                bool ok = false;
                for (size_t i = 0; i < 5; i++)
                    ok |= strcmp(rest, known[i]) == 0;
                if (!ok || strlen(l) != strlen("# TYPE  ") + strlen(name) + strlen(rest))
                    fail_msg("metrics: bad type: %s", l);
                if (type_of(types, n_types, name))
                    fail_msg("metrics: declared twice: %s", l);
                assert_true(n_types < 128);
                snprintf(types[n_types].name, sizeof(types[n_types].name), "%s", name);
                snprintf(types[n_types].type, sizeof(types[n_types].type), "%s", rest);
                n_types++;
            }
            continue;
        }
        const char *p = l;
        char name[128];
        if (!prom_name(&p, name, sizeof(name)))
            fail_msg("metrics: bad name: %s", l);
        char le[64] = "";
        if (*p == '{') {
            p++;
            while (*p != '}') {
                char lname[64];
                if (!prom_name(&p, lname, sizeof(lname)) || *p++ != '=' || *p++ != '"')
                    fail_msg("metrics: bad label: %s", l);
                const char *v = p;
                while (*p && *p != '"')
                    p += *p == '\\' ? 2 : 1;
                if (*p++ != '"')
                    fail_msg("metrics: unterminated label: %s", l);
                if (strcmp(lname, "le") == 0)
                    snprintf(le, sizeof(le), "%.*s", (int)(p - 1 - v), v);
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    fail_msg("metrics: bad label list: %s", l);
            }
            p++;
        }
        if (*p++ != ' ')
            fail_msg("metrics: no value: %s", l);
        char *end;
        double value = strtod(p, &end);
        if (end == p || *end != '\0')
            fail_msg("metrics: bad value: %s", l);
        if (strncmp(l, want, strlen(want)) == 0 && l[strlen(want)] == ' ')
            found = value;

        /* The family the sample belongs to must be declared. */
        const char *t = type_of(types, n_types, name);
        char family[128];
        snprintf(family, sizeof(family), "%s", name);
        if (!t) {
            const char *suffixes[] = {"_bucket", "_sum", "_count"};
            for (size_t i = 0; i < 3 && !t; i++) {
                size_t fl = strlen(name), sl = strlen(suffixes[i]);
                if (fl > sl && strcmp(name + fl - sl, suffixes[i]) == 0) {
                    snprintf(family, sizeof(family), "%.*s", (int)(fl - sl), name);
                    t = type_of(types, n_types, family);
                    if (t && strcmp(t, "histogram") != 0 && strcmp(t, "summary") != 0)
                        t = NULL;
                }
            }
        }
        if (!t)
            fail_msg("metrics: sample without # TYPE: %s", l);
        if (strcmp(t, "histogram") != 0)
            continue;
        if (strcmp(hist, family) != 0) {
            snprintf(hist, sizeof(hist), "%s", family);
            last_le = -INFINITY;
            last_bucket = -1;
            inf_bucket = -1;
        }
        size_t fl = strlen(family);
        if (strcmp(name + fl, "_bucket") == 0) {
            if (inf_bucket >= 0)
                fail_msg("metrics: bucket after +Inf: %s", l);
            double bound = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
            if (!le[0] || bound <= last_le || value < last_bucket)
                fail_msg("metrics: buckets not increasing: %s", l);
            last_le = bound;
            last_bucket = value;
            if (isinf(bound))
                inf_bucket = value;
        } else if (strcmp(name + fl, "_count") == 0) {
            if (inf_bucket < 0 || inf_bucket != value)
                fail_msg("metrics: +Inf bucket %g != _count %g", inf_bucket, value);
        }
    }
    return found;
}

static void test_metrics(void **state)
{
    (void)state;
    struct resp r;
    char v[128];
    get("/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(r.head, "Content-Type", v, sizeof(v)));
    assert_true(strncmp(v, "text/plain; version=0.0.4", 25) == 0);
    assert_true(prom_check(r.body, "tally_votes_accepted_total") == 247);
    assert_true(prom_check(r.body, "tally_votes_duplicate_total") == 15);
    assert_true(prom_check(r.body, "tally_votes_rejected_total{reason=\"unknown_project\"}") == 5);
    assert_true(prom_check(r.body, "tally_votes_rejected_total{reason=\"not_allowed\"}") == 3);
    assert_true(prom_check(r.body, "tally_batches_total") == 7);
    assert_true(prom_check(r.body, "tally_seq_conflicts_total") == 3);
    assert_has(r.body, "# HELP tally_seq_conflicts_total Batches refused because their seq was "
                       "applied before with other content (ERROR_SEQ_CONFLICT).\n"
                       "# TYPE tally_seq_conflicts_total counter\n");
    assert_true(prom_check(r.body, "tally_writer_epoch") == 5);
    assert_has(r.body, "# TYPE tally_writer_epoch gauge\n");
    assert_true(prom_check(r.body, "tally_bytes_received_total") == 4096);
    assert_true(prom_check(r.body, "tally_connections_open") == 1);
    /* No gauge named like the counter's family (OpenMetrics: tally_connections_total's
     * family is tally_connections). */
    assert_null(strstr(r.body, "# TYPE tally_connections gauge"));
    assert_true(prom_check(r.body, "tally_build_info{version=\"9.8.7\",commit=\"abc1234\"}") == 1);
    assert_true(prom_check(r.body, "tally_postgres_up") == 1);
    assert_true(prom_check(r.body, "process_cpu_seconds_total") == 1.5);
    assert_true(prom_check(r.body, "process_resident_memory_bytes") == 1 << 20);
    assert_true(prom_check(r.body, "process_open_fds") == 12);
    assert_true(prom_check(r.body, "process_max_fds") == 1024);
    assert_true(prom_check(r.body, "process_start_time_seconds") == 1700000000.0);
    assert_has(r.body, "# TYPE tally_collector_connected gauge\n");
    assert_true(prom_check(r.body, "tally_connections_total") == 3);
    assert_true(prom_check(r.body, "tally_checkpoint_duration_seconds_count") == 4);
    assert_true(prom_check(r.body, "tally_checkpoint_duration_seconds_bucket{le=\"+Inf\"}") == 4);
    assert_true(prom_check(r.body, "tally_checkpoint_duration_seconds_sum") == 0.25);
    assert_true(prom_check(r.body, "tally_checkpoint_lag_seconds") == 0.125);
    assert_true(prom_check(r.body, "tally_pg_errors_total") == 2);
    assert_true(prom_check(r.body, "tally_backlog_votes") == 12);
    assert_true(prom_check(r.body, "tally_ballots") == 247);
    assert_true(prom_check(r.body, "tally_ingest_paused") == 0);
    assert_true(prom_check(r.body, "tally_collectors_connected") == 1);
    assert_true(prom_check(r.body, "tally_last_checkpoint_id") >= 10);
    assert_has(r.body, "# HELP tally_votes_accepted_total ");
    assert_has(r.body, "# TYPE tally_checkpoint_duration_seconds histogram\n");
    resp_free(&r);
}

/* ---- the event stream --------------------------------------------------------------------------
 */

struct sse {
    int fd;
    struct buf raw, body;
    size_t consumed, read; /* raw bytes dechunked; body bytes handed out as events */
    int status;
};

struct sse_event {
    uint64_t id;
    char event[32];
    char *data;
};

static void sse_open(struct sse *s, const char *last_event_id, int rcvbuf)
{
    memset(s, 0, sizeof(*s));
    s->fd = connect_to(port, rcvbuf);
    char req[512];
    snprintf(req, sizeof(req),
             "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n%s%s%s"
             "\r\n",
             last_event_id ? "Last-Event-ID: " : "", last_event_id ? last_event_id : "",
             last_event_id ? "\r\n" : "");
    send_text(s->fd, req);
    int64_t deadline = now_ms() + 2000;
    const char *end = NULL;
    while (!(s->raw.p && (end = strstr(s->raw.p, "\r\n\r\n")))) {
        if (!read_some(s->fd, &s->raw) || now_ms() > deadline)
            fail_msg("event stream: no response head");
        pump(s->fd);
    }
    assert_int_equal(sscanf(s->raw.p, "HTTP/1.1 %d", &s->status), 1);
    char head[2048], v[128];
    snprintf(head, sizeof(head), "%.*s", (int)(end - s->raw.p + 2), s->raw.p);
    assert_string_equal(header(head, "Content-Type", v, sizeof(v)), "text/event-stream");
    assert_string_equal(header(head, "Transfer-Encoding", v, sizeof(v)), "chunked");
    s->consumed = (size_t)(end + 4 - s->raw.p);
    buf_add(&s->body, "", 0);
}

static void sse_close(struct sse *s)
{
    conn_close(s->fd);
    free(s->raw.p);
    free(s->body.p);
}

/* The next event (comments and retry: fields skipped), within timeout_ms; false if none. */
static bool sse_next(struct sse *s, struct sse_event *e, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        dechunk(&s->raw, &s->consumed, &s->body);
        const char *start = s->body.p + s->read;
        const char *end = strstr(start, "\n\n");
        if (end) {
            s->read += (size_t)(end + 2 - start);
            memset(e, 0, sizeof(*e));
            bool any = false;
            for (const char *l = start; l < end + 1;) {
                const char *eol = strchr(l, '\n');
                if (!strncmp(l, "id: ", 4)) {
                    e->id = strtoull(l + 4, NULL, 10);
                    any = true;
                } else if (!strncmp(l, "event: ", 7)) {
                    snprintf(e->event, sizeof(e->event), "%.*s", (int)(eol - l - 7), l + 7);
                } else if (!strncmp(l, "data: ", 6)) {
                    e->data = strndup(l + 6, (size_t)(eol - l - 6));
                }
                l = eol + 1;
            }
            if (any)
                return true;
            free(e->data);
            continue;
        }
        if (now_ms() > deadline)
            return false;
        if (!read_some(s->fd, &s->raw)) {
            dechunk(&s->raw, &s->consumed, &s->body);
            if (!strstr(s->body.p + s->read, "\n\n"))
                return false;
            continue;
        }
        pump(s->fd);
    }
}

static void expect_event(struct sse *s, const char *kind, uint64_t id, struct sse_event *e)
{
    if (!sse_next(s, e, 2000))
        fail_msg("no %s event %" PRIu64 " within 2 s", kind, id);
    assert_string_equal(e->event, kind);
    assert_int_equal(e->id, id);
    assert_non_null(e->data);
    assert_json(e->data);
    char want[64];
    snprintf(want, sizeof(want), "{\"checkpoint\":%" PRIu64 ",\"time\":", id);
    assert_true(strncmp(e->data, want, strlen(want)) == 0);
    assert_has(e->data, "\"totals\":{\"batches\":7,");
    assert_has(e->data, "\"rejected\":{\"unknown_project\":5,\"not_allowed\":3}}");
}

static double metric_now(const char *name)
{
    struct resp r;
    get("/metrics", &r);
    double v = prom_check(r.body, name);
    resp_free(&r);
    return v;
}

static void test_events(void **state)
{
    (void)state;
    struct sse s;
    struct sse_event e;
    uint64_t first = next_cp;

    /* A fresh subscriber starts from a snapshot of the totals. */
    sse_open(&s, NULL, 0);
    assert_int_equal(s.status, 200);
    expect_event(&s, "snapshot", first - 1, &e);
    assert_null(strstr(e.data, "\"changed\""));
    free(e.data);
    assert_true(metric_now("tally_http_sse_subscribers") == 1);

    /* Two checkpoints, two events with what changed. */
    uint32_t c1[] = {1, 7};
    cur_votes[1] += 5;
    cur_votes[7] += 1;
    publish(c1, 2);
    uint32_t c2[] = {8};
    cur_votes[8] += 3;
    publish(c2, 1);
    expect_event(&s, "checkpoint", first, &e);
    assert_has(e.data, "\"changed\":[{\"id\":1001,\"votes\":55},{\"id\":3001,\"votes\":8}]");
    free(e.data);
    expect_event(&s, "checkpoint", first + 1, &e);
    assert_has(e.data, "\"changed\":[{\"id\":3002,\"votes\":10}]");
    free(e.data);
    sse_close(&s);

    /* Resuming after the first: the second is replayed, and nothing else. */
    char id[32];
    snprintf(id, sizeof(id), "%" PRIu64, first);
    sse_open(&s, id, 0);
    expect_event(&s, "checkpoint", first + 1, &e);
    assert_has(e.data, "\"changed\":[{\"id\":3002,\"votes\":10}]");
    free(e.data);
    assert_false(sse_next(&s, &e, 100));
    /* It stays subscribed: the next checkpoint arrives live. */
    publish(c2, 1);
    expect_event(&s, "checkpoint", first + 2, &e);
    free(e.data);
    sse_close(&s);

    /* Up to date: nothing to replay. */
    snprintf(id, sizeof(id), "%" PRIu64, first + 2);
    sse_open(&s, id, 0);
    assert_false(sse_next(&s, &e, 100));
    sse_close(&s);

    /* From before this process's history, or from the future: a reset with every project. */
    const char *stale[] = {"3", "999999"};
    for (size_t i = 0; i < 2; i++) {
        sse_open(&s, stale[i], 0);
        expect_event(&s, "reset", first + 2, &e);
        assert_int_equal(count(e.data, "{\"id\":"), NP);
        assert_has(e.data, "{\"id\":1001,\"votes\":55}");
        assert_has(e.data, "{\"id\":4001,\"votes\":0}");
        free(e.data);
        sse_close(&s);
    }

    /* Closed streams are noticed and forgotten. */
    int64_t deadline = now_ms() + 2000;
    while (metric_now("tally_http_sse_subscribers") != 0 && now_ms() < deadline)
        pump(-1);
    assert_true(metric_now("tally_http_sse_subscribers") == 0);
}

/* The same checkpoint published again: new ETags, no event. A lower id: a reset. */
static void test_events_republish(void **state)
{
    (void)state;
    struct sse s;
    struct sse_event e;
    struct resp r;
    char etag1[128], etag2[128];
    uint64_t cur = next_cp - 1;
    sse_open(&s, NULL, 0);
    expect_event(&s, "snapshot", cur, &e);
    free(e.data);
    get("/v1/collectors", &r);
    header(r.head, "ETag", etag1, sizeof(etag1));
    resp_free(&r);
    publish_as(cur, NULL, 0);
    get("/v1/collectors", &r);
    header(r.head, "ETag", etag2, sizeof(etag2));
    resp_free(&r);
    assert_string_not_equal(etag1, etag2);
    assert_false(sse_next(&s, &e, 100));
    publish_as(cur - 1, NULL, 0);
    expect_event(&s, "reset", cur - 1, &e);
    assert_int_equal(count(e.data, "{\"id\":"), NP);
    free(e.data);
    publish(NULL, 0); /* next_cp: history goes on from here */
    expect_event(&s, "checkpoint", next_cp - 1, &e);
    assert_has(e.data, "\"changed\":[]");
    free(e.data);
    sse_close(&s);
}

static void test_events_ring_overflow(void **state)
{
    (void)state;
    struct sse s;
    struct sse_event e;
    uint64_t first = next_cp;
    uint32_t c[] = {0};
    for (int i = 0; i < 600; i++) {
        cur_votes[0]++;
        publish(c, 1);
    }
    char id[32];
    /* The first of those 600 has left the ring: reset. */
    snprintf(id, sizeof(id), "%" PRIu64, first);
    sse_open(&s, id, 0);
    expect_event(&s, "reset", next_cp - 1, &e);
    free(e.data);
    sse_close(&s);
    /* One still in the ring: the rest replayed in order. */
    snprintf(id, sizeof(id), "%" PRIu64, next_cp - 4);
    sse_open(&s, id, 0);
    for (uint64_t k = next_cp - 3; k < next_cp; k++) {
        expect_event(&s, "checkpoint", k, &e);
        free(e.data);
    }
    sse_close(&s);
}

/* A subscriber that stops reading is dropped once its backlog passes the bound. */
static void test_events_slow_subscriber(void **state)
{
    (void)state;
    struct sse s;
    struct sse_event e;
    sse_open(&s, NULL, 4096);
    assert_true(sse_next(&s, &e, 2000));
    free(e.data);
    assert_true(metric_now("tally_http_sse_subscribers") == 1);
    double dropped0 = metric_now("tally_http_sse_dropped_total");
    /* Every project changed, with a long list: ~14 projects a event is small, so publish
     * many; the client reads nothing meanwhile. */
    uint32_t all[NP];
    for (uint32_t i = 0; i < NP; i++)
        all[i] = i;
    int64_t deadline = now_ms() + 3000;
    while (metric_now("tally_http_sse_subscribers") == 1 && now_ms() < deadline) {
        for (int k = 0; k < 2000; k++) {
            cur_votes[k % NP]++;
            publish(all, NP);
        }
        pump(-1);
    }
    assert_true(metric_now("tally_http_sse_subscribers") == 0);
    assert_true(metric_now("tally_http_sse_dropped_total") == dropped0 + 1);
    sse_close(&s);
}

/* The head of the hash chain in /v1/summary and in every kind of event. */
static void test_head_hash(void **state)
{
    (void)state;
    struct resp r;
    struct sse s;
    struct sse_event e;
    char want[128];
    cur_epoch = 7;
    uint64_t id = next_cp;
    publish(NULL, 0);
    get("/v1/summary", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, head_hash_json(id, want, sizeof(want)));
    /* At the top level, and exactly 64 lower-case hex digits. */
    const char *h = strstr(r.body, ",\"head_hash\":\"");
    assert_non_null(h);
    h += strlen(",\"head_hash\":\"");
    assert_int_equal(strspn(h, "0123456789abcdef"), 64);
    assert_int_equal(h[64], '"');
    assert_has(r.body, "\"writer_epoch\":7,");
    resp_free(&r);

    sse_open(&s, NULL, 0);
    expect_event(&s, "snapshot", id, &e);
    assert_has(e.data, head_hash_json(id, want, sizeof(want)));
    free(e.data);
    uint32_t c[] = {2};
    cur_votes[2]++;
    publish(c, 1);
    expect_event(&s, "checkpoint", id + 1, &e);
    assert_has(e.data, head_hash_json(id + 1, want, sizeof(want)));
    free(e.data);
    sse_close(&s);
    /* A reset carries the head too. */
    sse_open(&s, "999999", 0);
    expect_event(&s, "reset", id + 1, &e);
    assert_has(e.data, head_hash_json(id + 1, want, sizeof(want)));
    free(e.data);
    sse_close(&s);
    cur_epoch = 1;
}

/* Points the client and publish_as() at another server until use_main_server(). */
static struct http_server *main_srv;
static uint16_t main_port;

static void use_server(struct http_server *other)
{
    main_srv = srv;
    main_port = port;
    srv = other;
    port = http_server_port(other);
}

static void use_main_server(void)
{
    srv = main_srv;
    port = main_port;
}

/* A /v1 answer while tallyd starts: 503, Retry-After: 1, and the reason. */
static void assert_starting(const char *path, const char *reason)
{
    struct resp r;
    char v[256], want[512];
    get(path, &r);
    assert_int_equal(r.status, 503);
    assert_json(r.body);
    assert_string_equal(header(r.head, "Retry-After", v, sizeof(v)), "1");
    assert_string_equal(header(r.head, "Content-Type", v, sizeof(v)),
                        "application/json; charset=utf-8");
    snprintf(want, sizeof(want), "{\"error\":\"tallyd is starting: %s\"}\n", reason);
    assert_string_equal(r.body, want);
    resp_free(&r);
}

static void assert_not_ready(const char *reason)
{
    struct resp r;
    char want[512];
    get("/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_json(r.body);
    snprintf(want, sizeof(want), "\"ready\":false,\"reason\":\"%s\"}", reason);
    assert_has(r.body, want);
    resp_free(&r);
}

/* Bound before the catalog: alive, not ready with the hook's reason, the API 503 with
 * Retry-After; then the catalog and the recovered state, and it serves. */
static void test_starting(void **state)
{
    (void)state;
    const char *lock = "waiting for the writer lock held by tallyd on host db1 pid 123 since "
                       "2026-12-01 09:44:00+00";
    struct readiness ready = {false, lock};
    struct http_hooks h = {hook_ready, hook_metrics, &ready};
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, NULL, &h);
    assert_non_null(other);
    use_server(other);
    struct resp r;
    char v[128];
    cur_epoch = 1;

    get("/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_not_ready(lock);
    const char *api[] = {"/v1/summary",  "/v1/results",        "/v1/results?format=csv",
                         "/v1/circuits", "/v1/circuits/100",   "/v1/collectors",
                         "/v1/events",   "/v1/results?state=x"};
    for (size_t i = 0; i < sizeof(api) / sizeof(api[0]); i++)
        assert_starting(api[i], lock);
    request("HEAD", "/v1/summary", NULL, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    /* The page too, when the dashboard is built in; its scripts and styles are served. */
    get("/style.css", &r);
    bool assets = r.status == 200;
    resp_free(&r);
    if (assets) {
        assert_starting("/", lock);
        assert_starting("/index.html", lock);
    } else {
        get("/", &r);
        assert_int_equal(r.status, 404);
        resp_free(&r);
    }
    /* Unknown paths and other methods answer as ever. */
    get("/nope", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    get("/v1/nope", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    request("POST", "/v1/summary", "Content-Length: 0\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(r.head, "Allow", v, sizeof(v)), "GET, HEAD");
    resp_free(&r);
    /* /metrics: the hook's figures, zeros for what needs a snapshot. */
    get("/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_true(prom_check(r.body, "tally_votes_accepted_total") == 247);
    assert_true(prom_check(r.body, "tally_writer_epoch") == 5);
    assert_true(prom_check(r.body, "tally_last_checkpoint_id") == 0);
    assert_true(prom_check(r.body, "tally_collectors_registered") == 0);
    resp_free(&r);

    /* The lock taken and recovered, but the registry not given yet. */
    ready.ready = true;
    assert_not_ready("the registry is not loaded yet");
    assert_starting("/v1/summary", "the registry is not loaded yet");
    ready = (struct readiness){false, "recovering"};
    http_server_set_catalog(other, &catalog);
    assert_not_ready("recovering");
    assert_starting("/v1/summary", "recovering");
    ready.ready = true;
    assert_not_ready("no checkpoint published yet");
    assert_starting("/v1/circuits/100", "no checkpoint published yet");

    /* The recovered state of an empty database: checkpoint 0, no chain yet. */
    publish_as(0, NULL, 0);
    get("/v1/summary", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "\"checkpoint\":0,");
    assert_has(r.body, "\"head_hash\":null,\"writer_epoch\":1,");
    assert_null(header(r.head, "Retry-After", v, sizeof(v)));
    resp_free(&r);
    get("/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_has(r.body, "\"ready\":true");
    resp_free(&r);
    get("/v1/circuits/100", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    if (assets) {
        get("/", &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    /* Losing PostgreSQL later: not ready, but the durable numbers are still served. */
    ready = (struct readiness){false, "PostgreSQL unreachable"};
    assert_not_ready("PostgreSQL unreachable");
    get("/v1/summary", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* The first commit: the chain has a head. */
    publish_as(1, NULL, 0);
    char want[128];
    get("/v1/summary", &r);
    assert_has(r.body, head_hash_json(1, want, sizeof(want)));
    resp_free(&r);
    use_main_server();
    http_server_free(other);
}

/* A catalog naming a circuit it does not have: refused by http_server_new(); given later,
 * the server stays starting and says why. */
static void test_bad_catalog(void **state)
{
    (void)state;
    static const struct http_catalog_project bad_projects[] = {{1, "Uno", 0}, {2, "Dos", 9}};
    static const struct http_catalog bad = {
        .consultation_id = "x",
        .consultation_name = "X",
        .projects = bad_projects,
        .n_projects = 2,
        .circuits = circuits,
        .n_circuits = 1,
    };
    assert_null(http_server_new(base, "127.0.0.1", 0, &bad, &hooks));
    struct readiness ready = {true, NULL};
    struct http_hooks h = {hook_ready, hook_metrics, &ready};
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, NULL, &h);
    assert_non_null(other);
    use_server(other);
    http_server_set_catalog(other, &bad);
    publish_as(1, NULL, 0); /* ignored: nothing to rank the votes against */
    const char *why = "the registry is inconsistent (a project names a missing circuit): "
                      "restart tallyd";
    assert_not_ready(why);
    assert_starting("/v1/summary", why);
    use_main_server();
    http_server_free(other);
}

/* ---- reporting progress, min_votes and corrections ------------------------------------------ */

/* Circuits: 10 (1 seat; tables T1 per-ballot 40 of 50, T2 unreported 30: 40 votes may come),
 * 20 (1 seat; T3 by sheet 65 of 70, blank 3, null 2; 201 below its min_votes), 30 (2 seats,
 * no tables: decided stays false). */
static const struct http_catalog_circuit pg_circuits[] = {
    {10, "Uno", "A", 1}, {20, "Dos", "A", 1}, {30, "Tres", "B", 2}};
static const struct http_catalog_project pg_projects[] = {{101, "p101", 0}, {102, "p102", 0},
                                                          {201, "p201", 1}, {202, "p202", 1},
                                                          {301, "p301", 2}, {302, "p302", 2}};
static const uint32_t pg_min_votes[] = {0, 0, 50, 0, 0, 0};
static const struct http_catalog pg_catalog = {
    .consultation_id = "pg",
    .consultation_name = "Progress",
    .projects = pg_projects,
    .n_projects = 6,
    .circuits = pg_circuits,
    .n_circuits = 3,
    .min_votes = pg_min_votes,
};

static uint64_t pg_votes[6] = {30, 10, 40, 20, 5, 0};
static struct http_table pg_tables[] = {
    {10, 50, true, false, 40, 0, 0},
    {10, 30, false, false, 0, 0, 0},
    {20, 70, true, true, 65, 3, 2},
};
static const uint32_t c1_ids[] = {201, 202};
static const int64_t c1_deltas[] = {5, -5};
static const uint32_t c2_ids[] = {101};
static const int64_t c2_deltas[] = {-3};
static const struct http_correction pg_corr[] = {
    {.id = 1,
     .checkpoint = 2,
     .retract = false,
     .actor = "c1",
     .reason = "sheet version 2 replaces version 1",
     .at_ms = 1732369260000,
     .table_id = "T3",
     .has_table_circuit = true,
     .table_circuit_id = 20,
     .collector_id = "c1",
     .seq = 4,
     .from_version = 1,
     .to_version = 2,
     .project_ids = c1_ids,
     .deltas = c1_deltas,
     .n_deltas = 2,
     .blank_delta = 1,
     .null_delta = 0,
     .ballots_delta = 1},
    {.id = 2,
     .checkpoint = 3,
     .retract = true,
     .actor = "ops",
     .reason = "bad \"batch\"",
     .at_ms = 1732369320000,
     .collector_id = "c2",
     .seq = 9,
     .project_ids = c2_ids,
     .deltas = c2_deltas,
     .n_deltas = 1,
     .ballots_delta = -3},
};

static void pg_publish(uint64_t id, size_t n_tables, size_t n_corr, const uint32_t *changed,
                       size_t n_changed)
{
    struct http_checkpoint cp = {
        .id = id,
        .committed_ms = 1732369200000 + (int64_t)id * 1000,
        .votes = pg_votes,
        .changed = changed,
        .n_changed = n_changed,
        .tables = n_tables ? pg_tables : NULL,
        .n_tables = n_tables,
        .corrections = pg_corr,
        .n_corrections = n_corr,
    };
    http_server_publish(srv, &cp);
}

static void test_progress(void **state)
{
    (void)state;
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &pg_catalog, NULL);
    assert_non_null(other);
    use_server(other);
    struct resp r;

    /* No tables: every progress figure 0, turnout null, nothing decided. */
    pg_publish(1, 0, 0, NULL, 0);
    get("/v1/summary", &r);
    assert_json(r.body);
    assert_has(r.body, "\"progress\":{\"tables\":0,\"tables_reported\":0,\"electors\":0,"
                       "\"electors_reported\":0,\"ballots\":0,\"turnout\":null,\"blank\":0,"
                       "\"null\":0,\"circuits_decided\":0}");
    resp_free(&r);
    get("/v1/circuits/20", &r);
    assert_json(r.body);
    assert_has(r.body, "\"decided\":false,\"progress\":{\"tables\":0,");
    assert_has(r.body, "\"corrected_at\":null}");
    /* min_votes: 201 leads with 40 but needs 50; 202 wins. */
    char o[512];
    assert_has(obj_of(r.body, 201, o, sizeof(o)),
               "\"rank\":1,\"winner\":false,\"tie\":false,\"margin_to_next\":20,"
               "\"min_votes\":50,\"eligible\":false,\"by_lot\":false");
    assert_has(obj_of(r.body, 202, o, sizeof(o)), "\"winner\":true,");
    assert_has(obj_of(r.body, 202, o, sizeof(o)), "\"min_votes\":0,\"eligible\":true");
    assert_has(r.body, "\"winners\":[202]");
    resp_free(&r);
    get("/v1/corrections", &r);
    assert_json(r.body);
    assert_has(r.body, "\"count\":0,\"corrections\":[]}");
    resp_free(&r);

    /* Tables loaded, then a sheet correction (recovered: no event). */
    pg_publish(2, 3, 1, NULL, 0);
    get("/v1/summary", &r);
    assert_json(r.body);
    assert_has(r.body, "\"progress\":{\"tables\":3,\"tables_reported\":2,\"electors\":150,"
                       "\"electors_reported\":120,\"ballots\":105,\"turnout\":0.8750,"
                       "\"blank\":3,\"null\":2,\"circuits_decided\":1}");
    resp_free(&r);
    get("/v1/circuits", &r);
    assert_json(r.body);
    const char *c10 = strstr(r.body, "{\"id\":10,"), *c20 = strstr(r.body, "{\"id\":20,"),
               *c30 = strstr(r.body, "{\"id\":30,");
    assert_true(c10 && c20 && c30 && c10 < c20 && c20 < c30);
    assert_true(strstr(c10, "\"decided\":false,\"progress\":{\"tables\":2,\"tables_reported\":1,"
                            "\"electors\":80,\"electors_reported\":50,\"ballots\":40,"
                            "\"turnout\":0.8000,\"blank\":0,\"null\":0},\"corrected_at\":null") ==
                strstr(c10, "\"decided\""));
    assert_has(c20, "\"decided\":true,\"progress\":{\"tables\":1,\"tables_reported\":1,"
                    "\"electors\":70,\"electors_reported\":70,\"ballots\":65,\"turnout\":0.9286,"
                    "\"blank\":3,\"null\":2},\"corrected_at\":\"2024-11-23T13:41:00.000Z\"");
    assert_has(c30, "\"decided\":false,\"progress\":{\"tables\":0,");
    resp_free(&r);
    get("/v1/states", &r);
    assert_json(r.body);
    assert_has(r.body, "{\"name\":\"A\",\"circuits\":2,\"votes\":100,\"winners\":2,\"progress\":"
                       "{\"tables\":3,\"tables_reported\":2,");
    assert_has(r.body, "\"circuits_decided\":1}");
    assert_has(r.body, "{\"name\":\"B\",\"circuits\":1,\"votes\":5,\"winners\":1,\"progress\":"
                       "{\"tables\":0,");
    resp_free(&r);
    get("/metrics", &r);
    assert_true(prom_check(r.body, "tally_tables_expected") == 3);
    assert_true(prom_check(r.body, "tally_tables_reported") == 2);
    assert_true(prom_check(r.body, "tally_electors") == 150);
    assert_true(prom_check(r.body, "tally_electors_reported") == 120);
    assert_true(prom_check(r.body, "tally_ballots_reported") == 105);
    assert_true(prom_check(r.body, "tally_blank_ballots") == 3);
    assert_true(prom_check(r.body, "tally_null_ballots") == 2);
    assert_true(prom_check(r.body, "tally_circuits_decided") == 1);
    assert_has(r.body, "# TYPE tally_tables_reported gauge\n");
    resp_free(&r);

    /* A subscriber, then checkpoint 3: T2 reports, a retraction. The checkpoint event
     * carries the national progress and the circuits that changed; a correction event
     * with the checkpoint's id follows it. */
    struct sse s;
    struct sse_event e;
    sse_open(&s, NULL, 0);
    if (!sse_next(&s, &e, 2000))
        fail_msg("no snapshot event");
    assert_string_equal(e.event, "snapshot");
    assert_has(e.data, "\"progress\":{\"tables\":3,");
    free(e.data);
    pg_tables[1] = (struct http_table){10, 30, true, false, 30, 0, 0};
    pg_votes[0] -= 3;
    pg_votes[1] += 30;
    uint32_t changed[] = {0, 1};
    pg_publish(3, 3, 2, changed, 2);
    if (!sse_next(&s, &e, 2000))
        fail_msg("no checkpoint event");
    assert_string_equal(e.event, "checkpoint");
    assert_int_equal(e.id, 3);
    assert_json(e.data);
    assert_has(e.data, "\"progress\":{\"tables\":3,\"tables_reported\":3,\"electors\":150,"
                       "\"electors_reported\":150,\"ballots\":135,\"turnout\":0.9000,");
    assert_has(e.data, "\"changed\":[{\"id\":101,\"votes\":27},{\"id\":102,\"votes\":40}]");
    /* Circuit 10 changed (progress, winner, corrected); 20 and 30 did not. 40 > 27 + 10. */
    assert_has(e.data, "\"circuits\":[{\"id\":10,\"winners\":[102],\"tie\":false,"
                       "\"decided\":true,\"progress\":{\"tables\":2,\"tables_reported\":2,");
    assert_has(e.data, "\"corrected_at\":\"2024-11-23T13:42:00.000Z\"}]}");
    assert_int_equal(count(e.data, "{\"id\":"), 3);
    free(e.data);
    if (!sse_next(&s, &e, 2000))
        fail_msg("no correction event");
    assert_string_equal(e.event, "correction");
    assert_int_equal(e.id, 3);
    assert_json(e.data);
    assert_string_equal(
        e.data, "{\"id\":2,\"checkpoint\":3,\"kind\":\"retract\",\"actor\":\"ops\",\"reason\":"
                "\"bad \\\"batch\\\"\",\"at\":\"2024-11-23T13:42:00.000Z\",\"table\":null,"
                "\"collector\":\"c2\",\"seq\":9,\"from_version\":null,\"to_version\":null,"
                "\"circuits\":[10],\"deltas\":[{\"project\":101,\"delta\":-3}],\"blank_delta\":0,"
                "\"null_delta\":0,\"ballots_delta\":-3}");
    free(e.data);
    assert_false(sse_next(&s, &e, 100));
    sse_close(&s);

    /* Replay from checkpoint 2 brings the checkpoint and its correction again. */
    sse_open(&s, "2", 0);
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "checkpoint");
    free(e.data);
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "correction");
    free(e.data);
    sse_close(&s);

    get("/v1/corrections", &r);
    assert_json(r.body);
    assert_has(r.body, "\"checkpoint\":3,");
    assert_has(r.body, "\"count\":2,");
    const char *k2 = strstr(r.body, "{\"id\":2,"), *k1 = strstr(r.body, "{\"id\":1,");
    assert_true(k1 && k2 && k2 < k1); /* newest first */
    assert_has(k1, "{\"id\":1,\"checkpoint\":2,\"kind\":\"sheet\",\"actor\":\"c1\",\"reason\":"
                   "\"sheet version 2 replaces version 1\",\"at\":\"2024-11-23T13:41:00.000Z\","
                   "\"table\":\"T3\",\"collector\":\"c1\",\"seq\":4,\"from_version\":1,"
                   "\"to_version\":2,\"circuits\":[20],\"deltas\":[{\"project\":201,\"delta\":5},"
                   "{\"project\":202,\"delta\":-5}],\"blank_delta\":1,\"null_delta\":0,"
                   "\"ballots_delta\":1}");
    resp_free(&r);

    use_main_server();
    http_server_free(other);
}

static void test_no_snapshot_yet(void **state)
{
    (void)state;
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &catalog, &hooks);
    assert_non_null(other);
    uint16_t saved = port;
    port = http_server_port(other);
    struct resp r;
    get("/v1/results", &r);
    assert_int_equal(r.status, 503);
    assert_json(r.body);
    resp_free(&r);
    /* The hook says ready (test_health left it so), but there is nothing to serve yet. */
    assert_not_ready("no checkpoint published yet");
    get("/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    get("/metrics", &r);
    assert_int_equal(r.status, 200);
    prom_check(r.body, "tally_ballots");
    resp_free(&r);
    port = saved;
    http_server_free(other);
    /* Binding a port in use fails cleanly. */
    assert_null(http_server_new(base, "127.0.0.1", port, &catalog, &hooks));
}

/* Freeing the server with streams open (tallyd's shutdown) releases everything. */
static void test_free_with_open_streams(void **state)
{
    (void)state;
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &catalog, &hooks);
    assert_non_null(other);
    struct http_server *saved_srv = srv;
    uint16_t saved = port;
    srv = other;
    port = http_server_port(other);
    publish(NULL, 0);
    struct sse a, b;
    struct sse_event e;
    sse_open(&a, NULL, 0);
    sse_open(&b, "1", 0);
    assert_true(sse_next(&a, &e, 2000));
    free(e.data);
    assert_true(sse_next(&b, &e, 2000));
    assert_string_equal(e.event, "reset");
    free(e.data);
    uint32_t c[] = {0};
    publish(c, 1);
    http_server_free(other);
    srv = saved_srv;
    port = saved;
    /* The clients see the end of the stream. */
    assert_false(sse_next(&a, &e, 500));
    sse_close(&a);
    sse_close(&b);
}

/* ---- error bodies, Connection: close, HTTPS ------------------------------------------------ */

/* Reads one response on fd (a Content-Length body) into r; fails after 3 s. */
static void read_response(int fd, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    struct buf raw = {0};
    buf_add(&raw, "", 0);
    int64_t deadline = now_ms() + 3000;
    for (bool open = true;; open = read_some(fd, &raw)) {
        const char *end = strstr(raw.p, "\r\n\r\n");
        if (end) {
            snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - raw.p + 2), raw.p);
            char cl[32];
            size_t off = (size_t)(end + 4 - raw.p);
            size_t want =
                header(r->head, "Content-Length", cl, sizeof(cl)) ? strtoul(cl, 0, 10) : 0;
            if (raw.len - off >= want) {
                assert_int_equal(raw.len - off, want); /* nothing after it: one response */
                assert_int_equal(sscanf(raw.p, "HTTP/1.%*d %d", &r->status), 1);
                r->body = strndup(raw.p + off, want);
                r->body_len = want;
                free(raw.p);
                return;
            }
        }
        if (!open || now_ms() > deadline)
            fail_msg("no complete response (have %zu bytes: %.80s)", raw.len, raw.p);
        pump(fd);
    }
}

/* True when the server closes fd within ms (EOF), false when it is still open then. */
static bool closes_within(int fd, int ms)
{
    struct buf extra = {0};
    int64_t deadline = now_ms() + ms;
    bool closed = false;
    while (now_ms() < deadline && !(closed = !read_some(fd, &extra)))
        pump(fd);
    if (extra.len)
        fail_msg("unexpected bytes after the response: %.400s", extra.p);
    free(extra.p);
    return closed;
}

/* What every error answer looks like: the status, the JSON body, its type. */
static void assert_json_error(const struct resp *r, int status)
{
    char v[128];
    assert_int_equal(r->status, status);
    assert_json(r->body);
    assert_true(strncmp(r->body, "{\"error\":\"", 10) == 0);
    assert_string_equal(header(r->head, "Content-Type", v, sizeof(v)),
                        "application/json; charset=utf-8");
}

static void test_error_bodies(void **state)
{
    (void)state;
    struct resp r;
    char v[128];
    /* Methods libevent 2.1 does not know: its own HTML 501 unless we let them through. */
    request("FROB", "/v1/results", NULL, &r);
    assert_json_error(&r, 501);
    assert_string_equal(r.body, "{\"error\":\"method not implemented\"}\n");
    resp_free(&r);
    request("PROPFIND", "/nope", "Content-Length: 0\r\n", &r);
    assert_json_error(&r, 501);
    resp_free(&r);
    /* Known methods, known or unknown paths. */
    request("TRACE", "/healthz", NULL, &r);
    assert_json_error(&r, 405);
    assert_string_equal(header(r.head, "Allow", v, sizeof(v)), "GET, HEAD");
    resp_free(&r);
    request("POST", "/v1/summary", "Content-Length: 5\r\n\r\nhello", &r);
    assert_json_error(&r, 405);
    resp_free(&r);
    request("GET", "/v1/nope?x=1", NULL, &r);
    assert_json_error(&r, 404);
    resp_free(&r);
    request("HEAD", "/nope", NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    /* Where libevent 2.1 answers before any callback of ours (see the top of http.c): still
     * the right status and the connection closes, but its body is HTML. */
    int fd = connect_to(port, 0);
    send_text(fd, "GET /v1/summary HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n");
    read_response(fd, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(header(r.head, "Connection", v, sizeof(v)), "close");
    assert_true(closes_within(fd, 2000));
    conn_close(fd);
    resp_free(&r);
    fd = connect_to(port, 0);
    send_text(fd, "POST /v1/summary HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    read_response(fd, &r);
    assert_int_equal(r.status, 413);
    assert_true(closes_within(fd, 2000));
    conn_close(fd);
    resp_free(&r);
}

/* Connection: close is honoured in every spelling RFC 9110 allows, on answers and errors. */
static void check_connection_close(void)
{
    struct resp r;
    char v[64];
    /* Keep-alive by default: two requests on one connection. */
    int fd = connect_to(port, 0);
    send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(fd, &r);
    assert_int_equal(r.status, 200);
    assert_null(header(r.head, "Connection", v, sizeof(v)));
    resp_free(&r);
    assert_false(closes_within(fd, 100));
    /* A token list with close in it (evhttp alone only knows the exact value "close"). */
    send_text(fd, "GET /v1/summary HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n");
    read_response(fd, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(r.head, "Connection", v, sizeof(v)), "close");
    assert_true(closes_within(fd, 2000));
    resp_free(&r);
    conn_close(fd);

    static const char *const reqs[] = {
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: TE\r\nConnection: close\r\nTE: x\r\n\r\n",
        "DELETE /v1/results HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n",
        "FROB / HTTP/1.1\r\nHost: x\r\nConnection:close\r\n\r\n",
    };
    static const int status[] = {200, 404, 405, 501};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        fd = connect_to(port, 0);
        send_text(fd, reqs[i]);
        read_response(fd, &r);
        assert_int_equal(r.status, status[i]);
        assert_string_equal(header(r.head, "Connection", v, sizeof(v)), "close");
        assert_true(closes_within(fd, 2000));
        resp_free(&r);
        conn_close(fd);
    }
}

static void test_connection_close(void **state)
{
    (void)state;
    check_connection_close();
}

/* The same server behind TLS (a certificate from tls_ca_init): the API, errors,
 * Connection: close and the event stream; plain HTTP on that port gets no answer. */
static void test_https(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_http_tls.XXXXXX", crt[128], key[128], ca[128], err[256] = "";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tls_ca_init(dir, NULL, 0, err, sizeof(err)), 0);
    snprintf(crt, sizeof(crt), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    SSL_CTX *sctx = tls_server_ctx_new(crt, key, NULL, err, sizeof(err));
    assert_non_null(sctx);

    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &catalog, &hooks);
    assert_non_null(other);
    assert_int_equal(http_server_use_tls(other, sctx), 0);
    assert_int_equal(http_server_use_tls(other, sctx), -1); /* once */
    tls_ctx_free(sctx);                                     /* the server keeps its own reference */
    use_server(other);
    publish(NULL, 0);

    client_tls = SSL_CTX_new(TLS_client_method());
    assert_non_null(client_tls);
    assert_int_equal(SSL_CTX_load_verify_locations(client_tls, ca, NULL), 1);
    SSL_CTX_set_verify(client_tls, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(client_tls, SSL_OP_IGNORE_UNEXPECTED_EOF);

    struct resp r;
    get("/v1/summary", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "\"rejected\":{\"unknown_project\":5,\"not_allowed\":3}");
    resp_free(&r);
    get("/nope", &r);
    assert_json_error(&r, 404);
    resp_free(&r);
    request("FROB", "/", NULL, &r);
    assert_json_error(&r, 501);
    resp_free(&r);
    check_connection_close();

    /* TLS 1.2 is enough on the HTTP port. */
    SSL_CTX_set_max_proto_version(client_tls, TLS1_2_VERSION);
    get("/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    SSL_CTX_set_max_proto_version(client_tls, 0);

    /* The event stream over TLS: the snapshot, then a checkpoint as it is published. */
    struct sse s;
    struct sse_event e;
    uint64_t first = next_cp;
    sse_open(&s, NULL, 0);
    assert_int_equal(s.status, 200);
    expect_event(&s, "snapshot", first - 1, &e);
    free(e.data);
    uint32_t c[] = {3};
    cur_votes[3] += 2;
    publish(c, 1);
    expect_event(&s, "checkpoint", first, &e);
    assert_has(e.data, "\"changed\":[{\"id\":1003,\"votes\":");
    free(e.data);
    sse_close(&s);

    /* A client with another CA does not trust it. */
    SSL_CTX *trusting = client_tls;
    client_tls = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_tls, SSL_VERIFY_PEER, NULL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS);
    assert_null(tls_handshake(fd));
    close(fd);
    SSL_CTX_free(client_tls);
    client_tls = NULL;

    /* Plain HTTP to the HTTPS port: no HTTP answer, the connection is dropped. */
    fd = connect_to(port, 0);
    send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    struct buf got = {0};
    buf_add(&got, "", 0);
    int64_t deadline = now_ms() + 3000;
    while (read_some(fd, &got) && now_ms() < deadline)
        pump(fd);
    assert_true(now_ms() < deadline);
    assert_null(strstr(got.p, "HTTP/1."));
    free(got.p);
    close(fd);

    SSL_CTX_free(trusting);
    http_server_free(other);
    use_main_server();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- the embargo, the status, receipts ------------------------------------------------------ */

/* Keys that carry a count (a project's votes, rank, winner, tie, margin, blank, null,
 * decided): none may appear under embargo. "votes" is allowed only as a national or
 * per-collector total (accepted votes are progress). */
static const char *const count_keys[] = {
    "votes",   "rank",    "winner",           "winners",
    "tie",     "margin",  "margin_to_next",   "eligible",
    "by_lot",  "decided", "circuits_decided", "blank",
    "null",    "deltas",  "blank_delta",      "null_delta",
    "changed", "delta",
};

/* Walks a JSON value, failing on a count key; parent is the key of the object or array it
 * is in ("" at the top). Returns the end of the value. */
static const char *walk_no_counts(const char *p, const char *parent, const char *what)
{
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        bool obj = *p == '{';
        char close = obj ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            char key[64] = "";
            if (obj) {
                const char *k = json_ws(p);
                const char *e = json_string(k);
                assert_non_null(e);
                snprintf(key, sizeof(key), "%.*s", (int)(e - k - 2), k + 1);
                bool total = !strcmp(key, "votes") &&
                             (!strcmp(parent, "totals") || !strcmp(parent, "collectors"));
                for (size_t i = 0; i < sizeof(count_keys) / sizeof(count_keys[0]); i++)
                    if (!strcmp(key, count_keys[i]) && !total)
                        fail_msg("%s: key \"%s\" (in \"%s\") under embargo", what, key, parent);
                p = json_ws(e);
                assert_int_equal(*p, ':');
                p++;
            }
            p = walk_no_counts(p, obj ? key : parent, what);
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            assert_int_equal(*p, ',');
            p++;
        }
    }
    const char *end = json_value(p);
    assert_non_null(end);
    return end;
}

static void assert_no_counts(const char *body, const char *what)
{
    assert_json(body);
    walk_no_counts(body, "", what);
}

/* pg_tables as test_progress starts them (it changes them as it goes). */
static const struct http_table emb_tables[] = {
    {10, 50, true, false, 40, 0, 0},
    {10, 30, false, false, 0, 0, 0},
    {20, 70, true, true, 65, 3, 2},
};

static void pg_publish_status(uint64_t id, size_t n_corr, const uint32_t *changed, size_t n_changed,
                              const struct http_status *st)
{
    struct http_checkpoint cp = {
        .id = id,
        .committed_ms = 1732369200000 + (int64_t)id * 1000,
        .votes = pg_votes,
        .changed = changed,
        .n_changed = n_changed,
        .totals = {4, 105, 100, 3, 1, 1},
        .tables = emb_tables,
        .n_tables = 3,
        .corrections = pg_corr,
        .n_corrections = n_corr,
        .status = *st,
    };
    http_server_publish(srv, &cp);
}

/* Every route a snapshot renders, with and without filters. */
static const char *const embargo_paths[] = {
    "/v1/summary",     "/v1/results",          "/v1/results?state=A", "/v1/results?circuit=20",
    "/v1/circuits",    "/v1/circuits?state=B", "/v1/circuits/10",     "/v1/circuits/20",
    "/v1/circuits/30", "/v1/states",           "/v1/corrections",     "/v1/collectors",
};

static void assert_every_route_without_counts(void)
{
    struct resp r;
    for (size_t i = 0; i < sizeof(embargo_paths) / sizeof(embargo_paths[0]); i++) {
        get(embargo_paths[i], &r);
        assert_int_equal(r.status, 200);
        assert_no_counts(r.body, embargo_paths[i]);
        char v[128];
        assert_non_null(header(r.head, "ETag", v, sizeof(v)));
        assert_non_null(strstr(v, "-e\""));
        resp_free(&r);
    }
    get("/v1/results?format=csv", &r);
    assert_int_equal(r.status, 200);
    assert_true(!strncmp(r.body, "project_id,project_name,circuit_id,circuit_name,state\r\n", 55));
    assert_null(strstr(r.body, "true"));
    assert_null(strstr(r.body, "false"));
    assert_has(r.body, "\r\n101,p101,10,Uno,A\r\n");
    resp_free(&r);
    get("/metrics", &r);
    assert_has(r.body, "\ntally_embargo 1\n");
    assert_null(strstr(r.body, "tally_blank_ballots"));
    assert_null(strstr(r.body, "tally_null_ballots"));
    assert_null(strstr(r.body, "tally_circuits_decided"));
    assert_has(r.body, "\ntally_ballots_reported 105\n");
    resp_free(&r);
}

static void test_embargo(void **state)
{
    (void)state;
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &pg_catalog, NULL);
    assert_non_null(other);
    use_server(other);
    struct resp r;
    char etag[128], hdr[256];
    struct http_status open = {0}, embargo = {.embargo = true};

    pg_publish_status(1, 1, NULL, 0, &open);
    get("/v1/circuits/20", &r);
    assert_has(r.body, "\"votes\":60,\"winners\":[202]");
    assert_non_null(header(r.head, "ETag", etag, sizeof(etag)));
    resp_free(&r);
    get("/v1/summary", &r);
    assert_has(r.body, "\"status\":\"provisional\",\"certified_hash\":null,\"closed\":false,"
                       "\"embargo\":false,\"tie_seed_hash\":null");
    resp_free(&r);
    struct sse s;
    sse_open(&s, NULL, 0);
    struct sse_event e;
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "snapshot");
    free(e.data);

    /* The same checkpoint under embargo: every route at once, a new ETag, and the stream
     * starts over from a reset without counts. */
    pg_publish_status(1, 1, NULL, 0, &embargo);
    assert_every_route_without_counts();
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    request("GET", "/v1/circuits/20", hdr, &r);
    assert_int_equal(r.status, 200); /* never the cached body with counts */
    assert_no_counts(r.body, "circuit 20 revalidated");
    assert_has(r.body, "\"embargo\":true");
    assert_has(r.body, "\"ranking\":[\n{\"id\":201,\"name\":\"p201\",\"min_votes\":50}");
    resp_free(&r);
    get("/v1/summary", &r);
    assert_has(r.body, "\"embargo\":true");
    assert_has(r.body, "\"progress\":{\"tables\":3,\"tables_reported\":2,\"electors\":150,"
                       "\"electors_reported\":120,\"ballots\":105,\"turnout\":0.8750}");
    resp_free(&r);
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "reset");
    assert_int_equal(e.id, 1);
    assert_no_counts(e.data, "reset event");
    assert_has(e.data, "\"embargo\":true");
    free(e.data);

    /* A checkpoint under embargo: its event and its correction's carry no count. */
    static const uint32_t changed[] = {0, 2};
    pg_publish_status(2, 2, changed, 2, &embargo);
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "checkpoint");
    assert_no_counts(e.data, "checkpoint event");
    assert_has(e.data, "\"circuits\":[{\"id\":10,\"progress\":{");
    free(e.data);
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "correction");
    assert_no_counts(e.data, "correction event");
    assert_has(e.data, "\"ballots_delta\":-3}");
    free(e.data);
    assert_every_route_without_counts();
    /* A client resuming from before the embargo gets no replay of counted events. */
    struct sse s2;
    sse_open(&s2, "1", 0);
    assert_true(sse_next(&s2, &e, 2000));
    assert_no_counts(e.data, "resumed stream");
    free(e.data);
    sse_close(&s2);
    /* Event ids carry the status change: "2-1" is up to date, "2" (from before) is not. */
    sse_open(&s2, "2-1", 0);
    assert_false(sse_next(&s2, &e, 100));
    sse_close(&s2);
    sse_open(&s2, "2", 0);
    assert_true(sse_next(&s2, &e, 2000));
    assert_string_equal(e.event, "reset");
    assert_no_counts(e.data, "reset of a stream from before the embargo");
    free(e.data);
    sse_close(&s2);
    sse_open(&s2, NULL, 0);
    assert_true(sse_next(&s2, &e, 2000));
    assert_string_equal(e.event, "snapshot");
    assert_no_counts(e.data, "snapshot event");
    free(e.data);
    sse_close(&s2);

    /* Lifted: the counts are back, with other ETags, and a reset with every project. */
    get("/v1/circuits/20", &r);
    assert_non_null(header(r.head, "ETag", etag, sizeof(etag)));
    resp_free(&r);
    pg_publish_status(2, 2, NULL, 0, &open);
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    request("GET", "/v1/circuits/20", hdr, &r);
    assert_int_equal(r.status, 200);
    assert_has(r.body, "\"votes\":60,\"winners\":[202]");
    assert_null(strstr(r.body, "\"embargo\""));
    resp_free(&r);
    assert_true(sse_next(&s, &e, 2000));
    assert_string_equal(e.event, "reset");
    assert_has(e.data, "\"changed\":[{\"id\":101,\"votes\":");
    free(e.data);
    get("/v1/corrections", &r);
    assert_has(r.body, "\"deltas\":[{\"project\":101,\"delta\":-3}]");
    resp_free(&r);
    get("/metrics", &r);
    assert_has(r.body, "\ntally_embargo 0\n");
    assert_has(r.body, "\ntally_blank_ballots 3\n");
    resp_free(&r);
    sse_close(&s);
    http_server_free(other);
    use_main_server();
}

static void test_status(void **state)
{
    (void)state;
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &pg_catalog, NULL);
    assert_non_null(other);
    use_server(other);
    struct http_status st = {.closed = true, .certified = true, .tie_rule = true};
    for (int i = 0; i < 32; i++) {
        st.certified_hash[i] = (uint8_t)(0xf0 + (i & 15));
        st.tie_seed_hash[i] = (uint8_t)i;
    }
    pg_publish_status(3, 0, NULL, 0, &st);
    struct resp r;
    get("/v1/summary", &r);
    assert_json(r.body);
    assert_has(r.body,
               "\"status\":\"official\",\"certified_hash\":\"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
               "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\",\"closed\":true,\"embargo\":false,"
               "\"tie_seed_hash\":\"000102030405060708090a0b0c0d0e0f"
               "101112131415161718191a1b1c1d1e1f\"");
    resp_free(&r);
    get("/metrics", &r);
    assert_has(r.body, "\ntally_official 1\n");
    resp_free(&r);
    struct sse s;
    sse_open(&s, NULL, 0);
    struct sse_event e;
    assert_true(sse_next(&s, &e, 2000));
    assert_has(e.data, "\"status\":\"official\",");
    assert_has(e.data, "\"closed\":true,\"embargo\":false,");
    free(e.data);
    sse_close(&s);
    http_server_free(other);
    use_main_server();
}

/* A receipts server in miniature: requests wait here until the test answers them. */
static struct http_pending *waiting[4];
static size_t n_waiting;
static char last_collector[64];
static uint64_t last_seq;

static int fake_receipt(void *arg, const char *collector, uint64_t seq, struct http_pending *p)
{
    (void)arg;
    if (n_waiting == 4)
        return -1;
    snprintf(last_collector, sizeof(last_collector), "%s", collector);
    last_seq = seq;
    waiting[n_waiting++] = p;
    return 0;
}

/* Sends a request and turns the loop until the receipt callback holds it. */
static int receipt_send(const char *path)
{
    int fd = connect_to(port, 0);
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    size_t had = n_waiting;
    send_text(fd, req);
    int64_t deadline = now_ms() + 2000;
    while (n_waiting == had && now_ms() < deadline)
        pump(fd);
    assert_int_equal(n_waiting, had + 1);
    return fd;
}

static void test_receipts_route(void **state)
{
    (void)state;
    struct resp r;
    char v[64];
    /* None set: 503 with Retry-After. */
    get("/v1/receipts/c0/1", &r);
    assert_int_equal(r.status, 503);
    assert_json(r.body);
    assert_string_equal(header(r.head, "Retry-After", v, sizeof(v)), "1");
    resp_free(&r);
    http_server_set_receipts(srv, fake_receipt, NULL);
    static const char *const bad[] = {
        "/v1/receipts/c0",
        "/v1/receipts/c0/",
        "/v1/receipts//1",
        "/v1/receipts/c0/0",
        "/v1/receipts/c0/01",
        "/v1/receipts/c0/-1",
        "/v1/receipts/c0/1x",
        "/v1/receipts/c%20/1",
        "/v1/receipts/c0/1/2",
        "/v1/receipts/c0/9223372036854775808",
        "/v1/receipts/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        get(bad[i], &r);
        if (r.status != 400)
            fail_msg("%s: %d, not 400", bad[i], r.status);
        assert_json(r.body);
        resp_free(&r);
    }
    assert_int_equal(n_waiting, 0);

    /* Held until answered, then the answer as given. */
    int fd = receipt_send("/v1/receipts/c.0_-Z/9223372036854775807");
    assert_string_equal(last_collector, "c.0_-Z");
    assert_true(last_seq == 9223372036854775807ULL);
    for (int i = 0; i < 20; i++)
        pump(fd); /* nothing comes while it waits */
    char *body = strdup("{\"collector\":\"c.0_-Z\"}\n");
    http_pending_reply(waiting[--n_waiting], 200, body, strlen(body));
    read_response(fd, &r);
    conn_close(fd);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"collector\":\"c.0_-Z\"}\n");
    assert_string_equal(header(r.head, "Content-Type", v, sizeof(v)),
                        "application/json; charset=utf-8");
    resp_free(&r);

    /* A 404 and a 503 as the worker says. */
    fd = receipt_send("/v1/receipts/c1/5");
    body = strdup("{\"error\":\"no durable batch c1/5\"}\n");
    http_pending_reply(waiting[--n_waiting], 404, body, strlen(body));
    read_response(fd, &r);
    conn_close(fd);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    fd = receipt_send("/v1/receipts/c1/6");
    body = strdup("{\"error\":\"PostgreSQL unreachable\"}\n");
    http_pending_reply(waiting[--n_waiting], 503, body, strlen(body));
    read_response(fd, &r);
    conn_close(fd);
    assert_int_equal(r.status, 503);
    assert_string_equal(header(r.head, "Retry-After", v, sizeof(v)), "1");
    resp_free(&r);

    /* The client goes away before the answer: answering later only frees. */
    fd = receipt_send("/v1/receipts/c2/1");
    conn_close(fd);
    for (int i = 0; i < 50; i++)
        pump(-1);
    body = strdup("{}\n");
    http_pending_reply(waiting[--n_waiting], 200, body, 3);

    /* A full queue: 503 with Retry-After, and the waiting ones still answer. */
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = receipt_send("/v1/receipts/c3/1");
    get("/v1/receipts/c3/2", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(header(r.head, "Retry-After", v, sizeof(v)), "1");
    resp_free(&r);
    while (n_waiting) {
        body = strdup("{}\n");
        http_pending_reply(waiting[--n_waiting], 200, body, 3);
        read_response(fds[n_waiting], &r);
        conn_close(fds[n_waiting]);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    /* Still pending when the server goes: freeing it leaves the pending to be answered. */
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &pg_catalog, NULL);
    assert_non_null(other);
    use_server(other);
    struct http_status open = {0};
    pg_publish_status(1, 0, NULL, 0, &open);
    http_server_set_receipts(srv, fake_receipt, NULL);
    fd = receipt_send("/v1/receipts/c4/1");
    http_server_free(other);
    use_main_server();
    body = strdup("{}\n");
    http_pending_reply(waiting[--n_waiting], 200, body, 3);
    conn_close(fd);
    http_server_set_receipts(srv, NULL, NULL);
}

/* ---- gzip, per-resource ETags, ?since=, /v1/history --------------------------------------- */

/* The whole of one gzip member (nothing after it), or NULL when it does not decode. */
static char *gunzip(const char *p, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    size_t cap = n * 8 + 1024;
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

/* A server of its own with the crafted registry, and what it was last given. */
static uint64_t cache_votes[NP];
static uint64_t cache_accepted;

static void cache_publish(uint64_t id, bool embargo)
{
    struct http_checkpoint cp = {
        .id = id,
        .committed_ms = 1732369200000 + (int64_t)id * 1000,
        .votes = cache_votes,
        .totals = {7, 270, cache_accepted, 15, 5, 3},
        .collectors = collectors,
        .n_collectors = 2,
        .epoch = 1,
    };
    cp.status.embargo = embargo;
    head_hash_of(id, cp.head_hash);
    http_server_publish(srv, &cp);
}

static struct http_server *cache_server(void)
{
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &catalog, NULL);
    assert_non_null(other);
    use_server(other);
    memcpy(cache_votes, votes0, sizeof(cache_votes));
    cache_accepted = 247;
    return other;
}

static void cache_server_free(struct http_server *other)
{
    http_server_free(other);
    use_main_server();
}

/* GET (or HEAD) path with these header lines; the answer in r. */
static void get_with(const char *method, const char *path, const char *headers, struct resp *r)
{
    request(method, path, headers, r);
}

static const char *etag_of(const char *path, char *out, size_t len)
{
    struct resp r;
    get(path, &r);
    assert_int_equal(r.status, 200);
    if (!header(r.head, "ETag", out, len))
        fail_msg("%s: no ETag", path);
    resp_free(&r);
    return out;
}

/* The same document plain and gzip: Vary on both, Content-Encoding and a -gz tag on the
 * second, and the same bytes once decompressed. */
static void assert_gzip_equals_plain(const char *path)
{
    struct resp plain, gz;
    char v[160], tag[160], tag_gz[160];
    get(path, &plain);
    assert_int_equal(plain.status, 200);
    assert_string_equal(header(plain.head, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_null(header(plain.head, "Content-Encoding", v, sizeof(v)));
    bool has_tag = header(plain.head, "ETag", tag, sizeof(tag)) != NULL; /* not /metrics */
    get_with("GET", path, "Accept-Encoding: gzip, deflate, br\r\n", &gz);
    assert_int_equal(gz.status, 200);
    assert_string_equal(header(gz.head, "Vary", v, sizeof(v)), "Accept-Encoding");
    if (!header(gz.head, "Content-Encoding", v, sizeof(v)) || strcmp(v, "gzip") != 0)
        fail_msg("%s: not compressed (%zu bytes plain)", path, plain.body_len);
    if (has_tag) {
        assert_non_null(header(gz.head, "ETag", tag_gz, sizeof(tag_gz)));
        snprintf(v, sizeof(v), "%.*s-gz\"", (int)strlen(tag) - 1, tag);
        assert_string_equal(tag_gz, v);
    }
    assert_true(gz.body_len < plain.body_len);
    size_t n;
    char *text = gunzip(gz.body, gz.body_len, &n);
    if (!text)
        fail_msg("%s: the gzip body does not decode", path);
    assert_int_equal(n, plain.body_len);
    assert_memory_equal(text, plain.body, n);
    free(text);
    resp_free(&plain);
    resp_free(&gz);
}

/* Whether the answer to Accept-Encoding: ae is compressed. */
static bool gzipped_with(const char *path, const char *ae)
{
    struct resp r;
    char hdr[256], v[64];
    snprintf(hdr, sizeof(hdr), "Accept-Encoding: %s\r\n", ae);
    get_with("GET", path, hdr, &r);
    assert_int_equal(r.status, 200);
    bool gz = header(r.head, "Content-Encoding", v, sizeof(v)) != NULL;
    resp_free(&r);
    return gz;
}

static void test_gzip(void **state)
{
    (void)state;
    struct http_server *other = cache_server();
    cache_publish(10, false);
    /* Cached (the national results, JSON and CSV), compressed by a job; rendered per
     * request and compressed at once; the metrics. */
    assert_gzip_equals_plain("/v1/results");
    assert_gzip_equals_plain("/v1/circuits");
    assert_gzip_equals_plain("/v1/summary");
    /* /metrics counts this very request: only the same start. */
    struct resp m;
    char mv[64];
    get_with("GET", "/metrics", "Accept-Encoding: gzip\r\n", &m);
    assert_string_equal(header(m.head, "Content-Encoding", mv, sizeof(mv)), "gzip");
    assert_string_equal(header(m.head, "Vary", mv, sizeof(mv)), "Accept-Encoding");
    size_t mn;
    char *mt = gunzip(m.body, m.body_len, &mn);
    assert_non_null(mt);
    assert_true(strncmp(mt, "# HELP tally_build_info", 23) == 0);
    free(mt);
    resp_free(&m);
    /* The same again comes from what the first one made. */
    assert_gzip_equals_plain("/v1/results");
    /* The dashboard's page, compressed once at start (when built with it). */
    struct resp page;
    get("/", &page);
    if (page.status == 200 && page.body_len >= 1024)
        assert_gzip_equals_plain("/");
    resp_free(&page);

    static const struct {
        const char *ae;
        bool gz;
    } cases[] = {
        {"gzip", true},
        {"GZIP", true},
        {"x-gzip", true},
        {"*", true},
        {"br , gzip ; q=0.5", true},
        {"gzip;q=1.0", true},
        {"gzip;q=0.001", true},
        {"identity;q=1, gzip;q=0.2", true},
        {"gzip;q=0", false},
        {"gzip; q=0.000", false},
        {"gzip;q=0, *", false},
        {"*;q=0", false},
        {"*;q=0, gzip", true},
        {"identity", false},
        {"deflate, br", false},
        {"gzipx", false},
        {"gzip;q=abc", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (gzipped_with("/v1/circuits", cases[i].ae) != cases[i].gz)
            fail_msg("Accept-Encoding: %s: %s", cases[i].ae, cases[i].gz ? "plain" : "gzip");
    /* Two headers: together. */
    struct resp r;
    char v[160], tag[160], hdr[320];
    get_with("GET", "/v1/circuits", "Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n", &r);
    assert_non_null(header(r.head, "Content-Encoding", v, sizeof(v)));
    resp_free(&r);

    /* Under 1 KiB: plain, but Vary all the same. */
    get_with("GET", "/v1/circuits/400", "Accept-Encoding: gzip\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len < 1024);
    assert_null(header(r.head, "Content-Encoding", v, sizeof(v)));
    assert_string_equal(header(r.head, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_string_equal(header(r.head, "Cache-Control", v, sizeof(v)), "public, max-age=1");
    resp_free(&r);
    /* Errors: plain JSON, no-cache. */
    get_with("GET", "/v1/circuits/999", "Accept-Encoding: gzip\r\n", &r);
    assert_json_error(&r, 404);
    assert_null(header(r.head, "Content-Encoding", v, sizeof(v)));
    assert_string_equal(header(r.head, "Cache-Control", v, sizeof(v)), "no-cache");
    resp_free(&r);

    /* If-None-Match with the gzip tag, and with the plain one, from a client that takes
     * gzip: 304 either way, naming the tag it has. */
    get_with("GET", "/v1/results", "Accept-Encoding: gzip\r\n", &r);
    assert_non_null(header(r.head, "ETag", tag, sizeof(tag)));
    size_t gz_len = r.body_len;
    resp_free(&r);
    snprintf(hdr, sizeof(hdr), "Accept-Encoding: gzip\r\nIf-None-Match: %s\r\n", tag);
    get_with("GET", "/v1/results", hdr, &r);
    assert_int_equal(r.status, 304);
    assert_string_equal(header(r.head, "ETag", v, sizeof(v)), tag);
    assert_string_equal(header(r.head, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_string_equal(header(r.head, "Cache-Control", v, sizeof(v)), "public, max-age=1");
    resp_free(&r);
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", tag);
    get_with("GET", "/v1/results", hdr, &r);
    assert_int_equal(r.status, 304);
    resp_free(&r);
    /* HEAD: the length of the gzip body it would send, and none. */
    get_with("HEAD", "/v1/results", "Accept-Encoding: gzip\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(r.head, "Content-Encoding", v, sizeof(v)), "gzip");
    assert_int_equal(strtoul(header(r.head, "Content-Length", v, sizeof(v)), NULL, 10), gz_len);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);

    /* Cache-Control per route; the stream unbuffered for a proxy. */
    static const char *const public_paths[] = {
        "/v1/summary",      "/v1/results", "/v1/results?circuit=200", "/v1/circuits",
        "/v1/circuits/200", "/v1/states",  "/v1/corrections",         "/v1/history",
    };
    for (size_t i = 0; i < sizeof(public_paths) / sizeof(public_paths[0]); i++) {
        get(public_paths[i], &r);
        assert_int_equal(r.status, 200);
        if (strcmp(header(r.head, "Cache-Control", v, sizeof(v)), "public, max-age=1") != 0)
            fail_msg("%s: Cache-Control %s", public_paths[i], v);
        resp_free(&r);
    }
    get("/v1/collectors", &r);
    assert_string_equal(header(r.head, "Cache-Control", v, sizeof(v)), "no-cache");
    resp_free(&r);
    get("/metrics", &r);
    assert_string_equal(header(r.head, "Cache-Control", v, sizeof(v)), "no-store");
    resp_free(&r);
    struct sse s;
    struct sse_event e;
    sse_open(&s, NULL, 0);
    expect_event(&s, "snapshot", 10, &e);
    free(e.data);
    assert_string_equal(header(s.raw.p, "Cache-Control", v, sizeof(v)), "no-cache");
    assert_string_equal(header(s.raw.p, "X-Accel-Buffering", v, sizeof(v)), "no");
    sse_close(&s);
    cache_server_free(other);
}

/* Circuit 200 (Lara) and circuit 100 (Zulia): a checkpoint that changes only circuit 100
 * keeps every tag of circuit 200 and of Lara, and 304 still answers for them. */
static void test_etag_per_resource(void **state)
{
    (void)state;
    struct http_server *other = cache_server();
    cache_publish(10, false);
    static const char *const lara[] = {"/v1/circuits/200", "/v1/results?circuit=200",
                                       "/v1/results?state=Lara", "/v1/circuits?state=Lara"};
    static const char *const national[] = {
        "/v1/circuits/100", "/v1/results", "/v1/results?format=csv",
        "/v1/circuits",     "/v1/states",  "/v1/summary"};
    enum { NL = sizeof(lara) / sizeof(lara[0]), NN = sizeof(national) / sizeof(national[0]) };
    char tl[NL][160], tn[NN][160], v[160], hdr[768];
    for (size_t i = 0; i < NL; i++)
        etag_of(lara[i], tl[i], sizeof(tl[i]));
    for (size_t i = 0; i < NN; i++)
        etag_of(national[i], tn[i], sizeof(tn[i]));
    assert_true(strncmp(tl[0], "W/\"c200-v10-", 12) == 0);

    cache_votes[1] += 7; /* project 1001, circuit 100 */
    cache_publish(11, false);
    for (size_t i = 0; i < NL; i++) {
        if (strcmp(etag_of(lara[i], v, sizeof(v)), tl[i]) != 0)
            fail_msg("%s: %s became %s after another circuit's votes", lara[i], tl[i], v);
        struct resp r;
        snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", tl[i]);
        get_with("GET", lara[i], hdr, &r);
        assert_int_equal(r.status, 304);
        resp_free(&r);
    }
    for (size_t i = 0; i < NN; i++)
        if (strcmp(etag_of(national[i], v, sizeof(v)), tn[i]) == 0)
            fail_msg("%s: still %s after its votes changed", national[i], v);
    assert_true(strncmp(etag_of("/v1/circuits/100", v, sizeof(v)), "W/\"c100-v11-", 12) == 0);

    /* A checkpoint that changes nothing of the registry's rows (only the totals): the
     * circuits keep their tags, the summary does not. */
    etag_of("/v1/summary", tn[0], sizeof(tn[0]));
    etag_of("/v1/circuits/100", tn[1], sizeof(tn[1]));
    cache_accepted += 1;
    cache_publish(12, false);
    assert_string_not_equal(etag_of("/v1/summary", v, sizeof(v)), tn[0]);
    assert_string_equal(etag_of("/v1/circuits/100", v, sizeof(v)), tn[1]);

    /* Now circuit 200's own votes. */
    cache_votes[6] += 1; /* project 2003 */
    cache_publish(13, false);
    for (size_t i = 0; i < NL; i++)
        if (strcmp(etag_of(lara[i], v, sizeof(v)), tl[i]) == 0)
            fail_msg("%s: still %s after its votes changed", lara[i], v);
    assert_true(strncmp(etag_of("/v1/circuits/200", v, sizeof(v)), "W/\"c200-v13-", 12) == 0);

    /* The same checkpoint again (fresher collectors): the same document tags; the
     * collectors' tag names the republish. */
    char col[160];
    etag_of("/v1/collectors", col, sizeof(col));
    etag_of("/v1/circuits/200", tl[0], sizeof(tl[0]));
    cache_publish(13, false);
    assert_string_equal(etag_of("/v1/circuits/200", v, sizeof(v)), tl[0]);
    assert_string_not_equal(etag_of("/v1/collectors", v, sizeof(v)), col);
    assert_true(strncmp(v, "\"collectors-cp13.1-", 19) == 0);

    /* A status change (embargo): every tag changes, and says -e. */
    cache_publish(14, true);
    assert_string_not_equal(etag_of("/v1/circuits/200", v, sizeof(v)), tl[0]);
    assert_non_null(strstr(v, "-e\""));
    cache_server_free(other);
}

/* The ids of the projects of a /v1/results body, in order, as "1001,2003,". */
static void project_ids(const char *body, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = strstr(body, "{\"id\":"); p; p = strstr(p + 1, "{\"id\":")) {
        if (p > body && strncmp(p - 14, "\"consultation\"", 14) == 0)
            continue;
        n += (size_t)snprintf(out + n, len - n, "%lu,", strtoul(p + 6, NULL, 10));
    }
}

static void expect_since(const char *path, const char *head, const char *ids)
{
    struct resp r;
    char got[1024];
    get(path, &r);
    if (r.status != 200)
        fail_msg("%s: %d %s", path, r.status, r.body);
    assert_json(r.body);
    assert_has(r.body, head);
    project_ids(strstr(r.body, "\"projects\":["), got, sizeof(got));
    if (strcmp(got, ids) != 0)
        fail_msg("%s: projects %s, not %s", path, got, ids);
    resp_free(&r);
}

#define ALL_IDS "1001,1002,1003,1004,2001,2002,2003,3001,3002,4001,4002,5001,5002,5003,"

static void test_since(void **state)
{
    (void)state;
    struct http_server *other = cache_server();
    /* The first snapshot's own id is no base (a client may hold it from before a restart,
     * under another status); the next one is. */
    cache_publish(9, false);
    expect_since("/v1/results?since=9", ",\"since\":9,\"full\":true,\"projects\":[", ALL_IDS);
    cache_publish(10, false);
    expect_since("/v1/results?since=10", "\"checkpoint\":10,", "");
    expect_since("/v1/results?since=10", ",\"since\":10,\"full\":false,\"projects\":[", "");
    /* At or before the first snapshot: every project. */
    expect_since("/v1/results?since=9", ",\"since\":9,\"full\":true,\"projects\":[", ALL_IDS);
    expect_since("/v1/results?since=0", "\"full\":true", ALL_IDS);
    expect_since("/v1/results?since=99999999999999999999999",
                 ",\"since\":null,\"full\":true,\"projects\":[", ALL_IDS);

    /* 2003: 5 -> 6 votes keeps its rank (3) and every other row of circuit 200. */
    cache_votes[6] = 6;
    cache_publish(11, false);
    /* 5003: 1 -> 20 makes it first in circuit 500: the other two rows change rank too. */
    cache_votes[11] = 20;
    cache_publish(12, false);
    expect_since("/v1/results?since=10", "\"checkpoint\":12,\"time\":", "2003,5001,5002,5003,");
    expect_since("/v1/results?since=11", "\"since\":11,\"full\":false", "5001,5002,5003,");
    expect_since("/v1/results?since=12", "\"since\":12,\"full\":false", "");
    expect_since("/v1/results?since=10&circuit=200", "\"full\":false", "2003,");
    expect_since("/v1/results?since=10&state=Lara", "\"full\":false", "2003,");
    expect_since("/v1/results?since=11&state=Lara", "\"full\":false", "");
    expect_since("/v1/results?since=9&state=Lara", "\"full\":true", "2001,2002,2003,3001,3002,");
    /* The rows are the results' own, byte for byte. */
    struct resp a, b;
    get("/v1/results?since=10&circuit=200", &a);
    get("/v1/results?circuit=200", &b);
    const char *row = strstr(a.body, "{\"id\":2003,");
    assert_non_null(row);
    char one[256];
    snprintf(one, sizeof(one), "%.*s", (int)(strchr(row, '}') - row + 1), row);
    assert_has(b.body, one);
    resp_free(&a);
    resp_free(&b);
    /* Every row under the since head: the same rows as /v1/results. */
    get("/v1/results?since=3", &a);
    get("/v1/results", &b);
    assert_string_equal(strstr(a.body, "\"projects\":["), strstr(b.body, "\"projects\":["));
    resp_free(&a);
    resp_free(&b);
    assert_gzip_equals_plain("/v1/results?since=3");

    /* The tag covers since. */
    char t1[160], t2[160], hdr[256];
    etag_of("/v1/results?since=10", t1, sizeof(t1));
    etag_of("/v1/results?since=11", t2, sizeof(t2));
    assert_string_not_equal(t1, t2);
    assert_string_not_equal(t1, etag_of("/v1/results", t2, sizeof(t2)));
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", t1);
    get_with("GET", "/v1/results?since=10", hdr, &a);
    assert_int_equal(a.status, 304);
    resp_free(&a);

    static const struct {
        const char *path, *error;
    } bad[] = {
        {"/v1/results?since=", "since must be a checkpoint id"},
        {"/v1/results?since=abc", "since must be a checkpoint id"},
        {"/v1/results?since=-1", "since must be a checkpoint id"},
        {"/v1/results?since=1e3", "since must be a checkpoint id"},
        {"/v1/results?since=%2012", "since must be a checkpoint id"},
        {"/v1/results?since=10&format=csv", "since is JSON only"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        get(bad[i].path, &a);
        assert_json_error(&a, 400);
        char want[128];
        snprintf(want, sizeof(want), "{\"error\":\"%s\"}\n", bad[i].error);
        if (strcmp(a.body, want) != 0)
            fail_msg("%s: %s", bad[i].path, a.body);
        resp_free(&a);
    }

    /* Embargo from checkpoint 13: since at or before it answers everything, without
     * counts; after it, the rows (which have no counts to change) are unchanged. */
    cache_votes[0] += 3;
    cache_publish(13, true);
    expect_since("/v1/results?since=12", "\"since\":12,\"full\":true,\"embargo\":true", ALL_IDS);
    expect_since("/v1/results?since=13", "\"since\":13,\"full\":true", ALL_IDS);
    cache_votes[0] += 3;
    cache_publish(14, true);
    expect_since("/v1/results?since=13", "\"since\":13,\"full\":true,\"embargo\":true", ALL_IDS);
    expect_since("/v1/results?since=14", "\"since\":14,\"full\":false,\"embargo\":true", "");
    get("/v1/results?since=12", &a);
    assert_no_counts(a.body, "/v1/results?since=12");
    resp_free(&a);
    /* Lifted at 15: everything again, with counts. */
    cache_publish(15, false);
    expect_since("/v1/results?since=14", "\"since\":14,\"full\":true,\"projects\":[", ALL_IDS);
    get("/v1/results?since=14", &a);
    assert_project(a.body, 1004, 36, 2, true, false);
    resp_free(&a);
    cache_publish(16, false);
    expect_since("/v1/results?since=15", "\"since\":15,\"full\":true", ALL_IDS);
    cache_votes[13] += 1; /* 5002 */
    cache_publish(17, false);
    expect_since("/v1/results?since=16", "\"full\":false", "5001,5002,");
    cache_server_free(other);
}

static void test_history(void **state)
{
    (void)state;
    struct http_server *other = cache_server();
    /* The record's history, given with the first publish (one point out of order). */
    static const struct http_history_point past[] = {
        {3, 1732369203000, 10, 1, 0, 1},
        {5, 1732369205000, 20, 2, 1, 2},
        {4, 1732369204000, 15, 1, 0, 1},
        {7, 1732369207000, 30, 3, 2, 2},
    };
    struct http_checkpoint cp = {
        .id = 8,
        .committed_ms = 1732369208000,
        .votes = cache_votes,
        .totals = {7, 270, 247, 15, 5, 3},
        .collectors = collectors,
        .n_collectors = 2,
        .history = past,
        .n_history = 4,
    };
    cp.totals.rejected[3] = 2; /* unknown_table */
    http_server_publish(srv, &cp);
    struct resp r;
    get("/v1/history", &r);
    assert_int_equal(r.status, 200);
    assert_json(r.body);
    assert_has(r.body, "{\"consultation\":{\"id\":\"consulta-2024-1\",\"name\":\"Consulta "
                       "Popular Nacional\"},\"checkpoint\":8,\"time\":\"2024-11-23T13:40:08.000Z\","
                       "\"stride\":1,\"points\":[\n"
                       "{\"checkpoint\":3,\"time\":\"2024-11-23T13:40:03.000Z\",\"accepted\":10,"
                       "\"duplicate\":1,\"rejected\":0,\"tables_reported\":1},\n"
                       "{\"checkpoint\":5,");
    assert_has(r.body, "},\n{\"checkpoint\":7,");
    /* Its own point: the totals, rejected by every reason (5 + 3 + 2). */
    assert_has(r.body, ",\n{\"checkpoint\":8,\"time\":\"2024-11-23T13:40:08.000Z\","
                       "\"accepted\":247,\"duplicate\":15,\"rejected\":10,"
                       "\"tables_reported\":0}]}\n");
    assert_int_equal(count(r.body, "{\"checkpoint\":"), 4);
    assert_null(strstr(r.body, "{\"checkpoint\":4,"));
    char tag[160];
    assert_non_null(header(r.head, "ETag", tag, sizeof(tag)));
    resp_free(&r);
    /* Ignored after the first publish. */
    cp.id = 9;
    cp.committed_ms += 1000;
    http_server_publish(srv, &cp);
    cp.history = NULL;
    cp.n_history = 0;
    cp.id = 10;
    cp.committed_ms += 1000;
    http_server_publish(srv, &cp);
    http_server_publish(srv, &cp); /* the same again: one point */
    get("/v1/history", &r);
    assert_int_equal(count(r.body, "{\"checkpoint\":"), 6);
    assert_has(r.body, "{\"checkpoint\":9,");
    assert_has(r.body, "{\"checkpoint\":10,");
    assert_string_not_equal(header(r.head, "ETag", tag, sizeof(tag)), "");
    resp_free(&r);
    /* Under embargo the history stays: it is progress. */
    cp.id = 11;
    cp.status.embargo = true;
    http_server_publish(srv, &cp);
    get("/v1/history", &r);
    assert_int_equal(count(r.body, "{\"checkpoint\":"), 7);
    assert_has(r.body, "\"accepted\":247");
    resp_free(&r);
    for (cp.id = 12; cp.id < 20; cp.id++)
        http_server_publish(srv, &cp);
    assert_gzip_equals_plain("/v1/history");
    cache_server_free(other);
}

/* ---- the sliced compression of a big rendering --------------------------------------------- */

#define BIG_PROJECTS 24000u
#define BIG_CIRCUITS 3000u

static struct http_catalog_project *big_projects;
static struct http_catalog_circuit *big_circuits;
static char **big_names;
static uint64_t *big_votes;
static struct http_catalog big_catalog;

static void big_catalog_make(void)
{
    static const char *const states[] = {"Amazonas", "Anzoátegui", "Apure",    "Aragua",
                                         "Barinas",  "Bolívar",    "Carabobo", "Cojedes"};
    big_projects = calloc(BIG_PROJECTS, sizeof(*big_projects));
    big_circuits = calloc(BIG_CIRCUITS, sizeof(*big_circuits));
    big_names = calloc(BIG_PROJECTS + BIG_CIRCUITS, sizeof(char *));
    big_votes = calloc(BIG_PROJECTS, sizeof(uint64_t));
    assert_true(big_projects && big_circuits && big_names && big_votes);
    for (uint32_t c = 0; c < BIG_CIRCUITS; c++) {
        assert_true(asprintf(&big_names[BIG_PROJECTS + c], "Circuito Comunal %u", c) > 0);
        big_circuits[c] = (struct http_catalog_circuit){
            70000000 + c * 7, big_names[BIG_PROJECTS + c], states[c % 8], 1 + c % 2};
    }
    /* Names that compress about as badly as real ones do: a job of many slices. */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (uint32_t i = 0; i < BIG_PROJECTS; i++) {
        uint64_t r[3];
        for (int k = 0; k < 3; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r[k] = x;
        }
        assert_true(asprintf(&big_names[i],
                             "Rehabilitación %016" PRIx64 " de la cancha %016" PRIx64
                             " del sector \"%016" PRIx64 "\" número %u",
                             r[0], r[1], r[2], i) > 0);
        big_projects[i] =
            (struct http_catalog_project){1000000 + i * 13, big_names[i], i % BIG_CIRCUITS};
        big_votes[i] = (i * 7919u) % 1000;
    }
    big_catalog = (struct http_catalog){"big",        "Grande",     big_projects, BIG_PROJECTS,
                                        big_circuits, BIG_CIRCUITS, NULL};
}

static void big_catalog_free(void)
{
    for (uint32_t i = 0; i < BIG_PROJECTS + BIG_CIRCUITS; i++)
        free(big_names[i]);
    free(big_names);
    free(big_projects);
    free(big_circuits);
    free(big_votes);
}

static void big_publish(uint64_t id)
{
    struct http_checkpoint cp = {
        .id = id, .committed_ms = 1732369200000 + (int64_t)id, .votes = big_votes};
    http_server_publish(srv, &cp);
}

/* Sends a request (Connection: close); the loop has not read it yet. */
static int send_only(const char *method, const char *path, const char *headers)
{
    int fd = connect_to(port, 0);
    char req[1024];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
             method, path, headers ? headers : "");
    send_text(fd, req);
    return fd;
}

/* The rest of the answer on fd, until the server closes it, into r (the body binary). */
static void receive(int fd, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    struct buf raw = {0};
    buf_add(&raw, "", 0);
    int64_t deadline = now_ms() + 10000;
    while (read_some(fd, &raw)) {
        if (now_ms() > deadline)
            fail_msg("no complete answer within 10 s");
        pump(fd);
    }
    conn_close(fd);
    const char *end = strstr(raw.p, "\r\n\r\n");
    assert_non_null(end);
    snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - raw.p + 2), raw.p);
    assert_int_equal(sscanf(raw.p, "HTTP/1.1 %d", &r->status), 1);
    size_t off = (size_t)(end + 4 - raw.p);
    r->body_len = raw.len - off;
    r->body = malloc(r->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, raw.p + off, r->body_len);
    r->body[r->body_len] = '\0';
    free(raw.p);
}

static void test_gzip_sliced(void **state)
{
    (void)state;
    big_catalog_make();
    struct http_server *other = http_server_new(base, "127.0.0.1", 0, &big_catalog, NULL);
    assert_non_null(other);
    use_server(other);
    big_publish(1);
    struct resp plain;
    char tag[160], v[160];
    get("/v1/results", &plain);
    assert_int_equal(plain.status, 200);
    assert_true(plain.body_len > (4u << 20));
    assert_non_null(header(plain.head, "ETag", tag, sizeof(tag)));
    double jobs0 = metric_now("tally_http_gzip_jobs_total");

    /* Three wait for the same job (one of them a HEAD), a fourth goes away meanwhile, and a
     * new snapshot is published before it is done (its own job then runs beside it). */
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = send_only(i == 2 ? "HEAD" : "GET", "/v1/results", "Accept-Encoding: gzip\r\n");
    /* Each loop iteration runs at most one slice: none holds the loop long. Timed in this
     * thread's CPU time too, which other processes on the machine do not stretch. */
    double longest = 0, longest_cpu = 0;
    for (int i = 0; i < 400; i++) {
        struct timespec a, b, ca, cb;
        clock_gettime(CLOCK_MONOTONIC, &a);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        double c = (double)(cb.tv_sec - ca.tv_sec) + (double)(cb.tv_nsec - ca.tv_nsec) / 1e9;
        longest = s > longest ? s : longest;
        longest_cpu = c > longest_cpu ? c : longest_cpu;
        if (i == 3) {
            assert_true(metric_now("tally_http_gzip_jobs_total") == jobs0); /* still going */
            conn_close(fds[3]);
            big_votes[0] += 1;
            big_publish(2);
        }
    }
    struct resp r[3];
    for (int i = 0; i < 3; i++)
        receive(fds[i], &r[i]);
    double slice_max = metric_now("tally_http_gzip_slice_max_seconds");
    fprintf(stderr,
            "sliced gzip of %zu bytes: longest loop iteration %.2f ms (CPU %.2f ms), "
            "longest slice %.2f ms\n",
            plain.body_len, longest * 1e3, longest_cpu * 1e3, slice_max * 1e3);
    assert_true(slice_max > 0);
    assert_true(longest_cpu < 0.010);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].status, 200);
        assert_string_equal(header(r[i].head, "Content-Encoding", v, sizeof(v)), "gzip");
        /* The tag of the snapshot they asked: the first one. */
        snprintf(v, sizeof(v), "%.*s-gz\"", (int)strlen(tag) - 1, tag);
        char got[160];
        assert_string_equal(header(r[i].head, "ETag", got, sizeof(got)), v);
    }
    size_t n;
    char *text = gunzip(r[0].body, r[0].body_len, &n);
    assert_non_null(text);
    assert_int_equal(n, plain.body_len);
    assert_memory_equal(text, plain.body, n);
    free(text);
    assert_int_equal(r[1].body_len, r[0].body_len);
    assert_memory_equal(r[1].body, r[0].body, r[0].body_len);
    assert_int_equal(r[2].body_len, 0);
    assert_int_equal(strtoul(header(r[2].head, "Content-Length", v, sizeof(v)), NULL, 10),
                     r[0].body_len);
    for (int i = 0; i < 3; i++)
        resp_free(&r[i]);
    assert_true(metric_now("tally_http_gzip_jobs_total") == jobs0 + 1);

    /* The new snapshot: compressed once more, then served from it. */
    assert_gzip_equals_plain("/v1/results");
    assert_gzip_equals_plain("/v1/results");
    assert_true(metric_now("tally_http_gzip_jobs_total") == jobs0 + 2);
    /* Under the since head, the same compressed rows. */
    assert_gzip_equals_plain("/v1/results?since=0");
    assert_true(metric_now("tally_http_gzip_jobs_total") == jobs0 + 2);
    assert_gzip_equals_plain("/v1/results?state=Apure"); /* over 64 KiB: kept, a job */
    assert_true(metric_now("tally_http_gzip_jobs_total") == jobs0 + 3);

    /* The embargo goes on while a request waits for the gzip of a snapshot with counts: it
     * is sent away to ask again (503, Retry-After), not answered with counts after the
     * publish that hid them. */
    big_publish(3);
    int fe = send_only("GET", "/v1/results", "Accept-Encoding: gzip\r\n");
    for (int i = 0; i < 3; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    struct http_checkpoint cp = {.id = 3, .committed_ms = 1732369200003, .votes = big_votes};
    cp.status.embargo = true;
    http_server_publish(srv, &cp);
    struct resp e;
    receive(fe, &e);
    assert_int_equal(e.status, 503);
    assert_non_null(header(e.head, "Retry-After", v, sizeof(v)));
    assert_null(strstr(e.body, "\"votes\""));
    resp_free(&e);

    /* Freed while a request waits for a job: nothing leaks, nothing is answered. */
    big_publish(3);
    int fd = send_only("GET", "/v1/results?format=csv", "Accept-Encoding: gzip\r\n");
    /* An iteration accepts, the next reads and routes it, the third runs a first slice. */
    for (int i = 0; i < 3; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    http_server_free(other);
    use_main_server();
    assert_true(closes_within(fd, 2000));
    conn_close(fd);
    resp_free(&plain);
    big_catalog_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_json),
        cmocka_unit_test(test_results_filters),
        cmocka_unit_test(test_results_csv),
        cmocka_unit_test(test_circuits),
        cmocka_unit_test(test_summary_and_collectors),
        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_dashboard),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_events_republish),
        cmocka_unit_test(test_events_ring_overflow),
        cmocka_unit_test(test_events_slow_subscriber),
        cmocka_unit_test(test_head_hash),
        cmocka_unit_test(test_starting),
        cmocka_unit_test(test_bad_catalog),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_no_snapshot_yet),
        cmocka_unit_test(test_free_with_open_streams),
        cmocka_unit_test(test_embargo),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_receipts_route),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_etag_per_resource),
        cmocka_unit_test(test_since),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_gzip_sliced),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
