/* Fuzz harness: the HTTP side's request handling, from the request line to the answer: the
 * route match, /v1/circuits/{id}, the query string (evhttp_parse_query_str, then ?state=,
 * ?circuit=, ?format=, ?last_event_id=), Last-Event-ID, If-None-Match and Connection, in a
 * real http_server (src/http) on 127.0.0.1 with a small published registry, driven from the
 * same thread over a socket. Byte 0: bit 0, the rest is sent as it is (a whole raw request);
 * otherwise its first line is the request target (spaces and CR dropped) and the following
 * lines are header lines, sent as GET (bit 1: HEAD) with Connection: close. Bit 2: the
 * request meets the results under embargo (the same checkpoint published again with the
 * embargo on, then off). /v1/receipts/{collector}/{seq} goes to a stand-in for the receipts
 * worker that answers on the next loop turn (200, 404 or 409 by seq). Oracles: every
 * request that is whole gets one well-formed answer, never a 500. libevent itself is the
 * system library, so the fuzzer sees coverage of src/http only. */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "http/http.h"

static const struct http_catalog_circuit circuits[] = {
    {100, "Alpha", "Zulia", 2},
    {200, "Beta, \"b\"", "Lara", 1},
    {300, "Gamma", "Distrito Capital", 1},
};
static const struct http_catalog_project projects[] = {
    {1001, "Escuela", 0},
    {1002, "Cancha", 0},
    {2001, "Agua", 1},
    {3001, "Plaza", 2},
};
#define NP (sizeof(projects) / sizeof(projects[0]))
static const struct http_catalog catalog = {
    .consultation_id = "fuzz-consultation",
    .consultation_name = "Fuzz",
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
};

static bool ready(void *arg, char *reason, size_t len)
{
    (void)arg;
    (void)reason;
    (void)len;
    return true;
}

static struct event_base *base;
static struct http_server *srv;
static struct sockaddr_in addr;

static void publish_status(uint64_t id, uint64_t bump, bool embargo)
{
    uint64_t votes[NP] = {5 + bump, 3, 7, 0};
    uint32_t changed[] = {0};
    struct http_checkpoint cp = {
        .id = id,
        .committed_ms = 1732369200000 + (int64_t)id * 250,
        .votes = votes,
        .changed = changed,
        .n_changed = 1,
        .totals = {3, 122, 100, 15, 5, 2},
        .collectors = collectors,
        .n_collectors = 1,
        .epoch = 1,
    };
    memset(cp.head_hash, 0xab, sizeof(cp.head_hash));
    cp.status.embargo = embargo;
    http_server_publish(srv, &cp);
}

static void publish(uint64_t id, uint64_t bump)
{
    publish_status(id, bump, false);
}

/* The receipts worker's part: an answer on the next loop turn, as the real one's comes
 * from its thread. */
struct later {
    struct http_pending *p;
    uint64_t seq;
};

static void answer_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct later *l = arg;
    static const int codes[] = {200, 404, 409};
    int code = codes[l->seq % 3];
    char *body = strdup(code == 200 ? "{\"collector\":\"c1\"}\n" : "{\"error\":\"no\"}\n");
    http_pending_reply(l->p, code, body, strlen(body));
    free(l);
}

static int receipt(void *arg, const char *collector, uint64_t seq, struct http_pending *p)
{
    (void)arg;
    FUZZ_ASSERT(collector[0] && strlen(collector) <= 63 && seq >= 1);
    struct later *l = malloc(sizeof(*l));
    l->p = p;
    l->seq = seq;
    struct timeval zero = {0, 0};
    FUZZ_ASSERT(event_base_once(base, -1, EV_TIMEOUT, answer_later, l, &zero) == 0);
    return 0;
}

static void teardown(void)
{
    http_server_free(srv);
    event_base_free(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    static const struct http_hooks hooks = {ready, NULL, NULL};
    srv = http_server_new(base, "127.0.0.1", 0, &catalog, &hooks);
    FUZZ_ASSERT(srv);
    for (uint64_t id = 10; id < 14; id++) /* the recovered state, then three events */
        publish(id, id - 10);
    http_server_set_receipts(srv, receipt, NULL);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(http_server_port(srv));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    atexit(teardown);
    return 0;
}

/* The request the input stands for (see the top of the file). */
static char *build(const uint8_t *data, size_t size, size_t *out_len)
{
    size_t cap = 3 * size + 128, n = 0;
    char *r = malloc(cap);
    if (data[0] & 1) {
        memcpy(r, data + 1, size - 1);
        *out_len = size - 1;
        return r;
    }
    n += (size_t)snprintf(r, cap, "%s ", data[0] & 2 ? "HEAD" : "GET");
    size_t i = 1;
    for (; i < size && data[i] != '\n'; i++)
        if (data[i] != ' ' && data[i] != '\r')
            r[n++] = (char)data[i];
    if (n == 4 + (data[0] & 2 ? 1u : 0u))
        r[n++] = '/';
    n += (size_t)snprintf(r + n, cap - n, " HTTP/1.1\r\nHost: fuzz\r\n");
    while (i < size) {
        i++; /* the '\n' */
        size_t start = n;
        for (; i < size && data[i] != '\n'; i++)
            if (data[i] != '\r')
                r[n++] = (char)data[i];
        size_t l = n - start;
        /* An empty line would end the head early; a body length would make evhttp wait
         * for a body that never comes. */
        if (l == 0 || (l >= 14 && strncasecmp(r + start, "content-length", 14) == 0) ||
            (l >= 17 && strncasecmp(r + start, "transfer-encoding", 17) == 0)) {
            n = start;
            continue;
        }
        r[n++] = '\r';
        r[n++] = '\n';
    }
    n += (size_t)snprintf(r + n, cap - n, "Connection: close\r\n\r\n");
    *out_len = n;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    size_t len;
    char *req = build(data, size, &len);
    bool embargo = data[0] & 4;
    if (embargo)
        publish_status(13, 3, true);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_ASSERT(fd >= 0);
    FUZZ_ASSERT(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
    /* Non-blocking: libFuzzer's once-a-second SIGALRM would cut a blocking connect. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        FUZZ_ASSERT(errno == EINPROGRESS || errno == EINTR);
        struct pollfd pfd = {fd, POLLOUT, 0};
        int n;
        while ((n = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
            ;
        int err = 0;
        socklen_t elen = sizeof(err);
        FUZZ_ASSERT(n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0);
        if (err)
            fprintf(stderr, "connect: %s\n", strerror(err));
        FUZZ_ASSERT(err == 0);
    }
    /* Closed with a reset: no TIME_WAIT on either side, which at 10,000 connections a
     * second would use up the ephemeral ports (of everyone on the machine) in seconds. */
    struct linger lg = {1, 0};
    FUZZ_ASSERT(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    size_t sent = 0, got = 0, cap = 1 << 16;
    char *resp = malloc(cap);
    bool eof = false;
    int idle = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!eof && idle < 64) {
        bool progress = false;
        if (sent < len) {
            ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                progress = true;
            } else if (w < 0 && errno != EAGAIN) {
                break; /* the server closed on us (a refused request) */
            }
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        for (;;) {
            if (got == cap)
                resp = realloc(resp, cap *= 2);
            ssize_t r = recv(fd, resp + got, cap - got, 0);
            if (r > 0) {
                got += (size_t)r;
                progress = true;
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EINTR))
                eof = true;
            break;
        }
        idle = progress ? 0 : idle + 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        FUZZ_ASSERT(now.tv_sec - t0.tv_sec < 10); /* a request that hangs the loop */
    }
    close(fd);
    for (int i = 0; i < 8; i++) /* the server sees the close and frees the connection */
        event_base_loop(base, EVLOOP_NONBLOCK);
    if (embargo)
        publish_status(13, 3, false);

    int status = 0;
    if (got > 0) {
        /* evhttp answers in the request's version ("HTTP/0.1", "HTTP/88888888882.1"). */
        FUZZ_ASSERT(got >= 5 && memcmp(resp, "HTTP/", 5) == 0);
        const char *sp = memchr(resp, ' ', got < 40 ? got : 40);
        FUZZ_ASSERT(sp && sp + 4 <= resp + got);
        FUZZ_ASSERT(sp[1] >= '1' && sp[1] <= '5' && sp[2] >= '0' && sp[2] <= '9' && sp[3] >= '0' &&
                    sp[3] <= '9');
        status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        FUZZ_ASSERT(status != 500);
    }
    if (!(data[0] & 1))
        FUZZ_ASSERT(status != 0); /* a whole request gets an answer */
    fuzz_verdict = status == 200 || status == 304 ? FUZZ_ACCEPTED : FUZZ_REFUSED;
    free(resp);
    free(req);
    return 0;
}
