/* net: a real event_base with a net_server on 127.0.0.1:0 and raw client sockets in the
 * same thread (non-blocking, the loop run between steps): deadlines, the connection limit,
 * the frame size before Hello, the input budget, the accept pause on EMFILE, printable
 * error messages, rate-limited logs, and TLS (handshake, pin, refusals, a large frame). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/arena.h"
#include "core/log.h"
#include "net/net.h"
#include "tls/tls.h"
#include "wire/wire.h"

/* ---- the server side ---------------------------------------------------------------- */

struct fx {
    struct event_base *base;
    struct net_server *srv;
    int hellos, batches, pings;
    uint64_t votes;
    bool was_tls, pin_ok;
    uint8_t pin[32];
    size_t flood_bytes; /* queued in answer to batch seq FLOOD_SEQ */
    int log_allowed;    /* net_conn_log_allowed at Ping nonce 42 (-1: not asked) */
};

/* Batch seq FLOOD_SEQ makes the server queue this many bytes of replies at once. */
#define FLOOD_SEQ 7777
#define FLOOD_FRAMES 140
#define FLOOD_MSG 60000

static void srv_send(struct net_conn *c, Tally__Frame *f)
{
    net_conn_send(c, f);
}

static int on_frame(void *arg, struct net_conn *c, const Tally__Frame *f)
{
    struct fx *fx = arg;
    if (f->msg_case == TALLY__FRAME__MSG_HELLO) {
        const char *id = f->hello->collector_id;
        fx->hellos++;
        fx->was_tls = net_conn_is_tls(c);
        fx->pin_ok = net_conn_peer_pin(c, fx->pin);
        if (strncmp(id, "bad", 3) == 0) {
            net_conn_set_name(c, id);
            net_conn_fail(c, TALLY__ERROR_CODE__ERROR_AUTH, 0, "unknown collector %s", id);
            return -1;
        }
        net_conn_set_name(c, id);
        net_conn_set_authenticated(c);
        Tally__Welcome w = TALLY__WELCOME__INIT;
        w.protocol_version = 1;
        Tally__Frame r = TALLY__FRAME__INIT;
        r.msg_case = TALLY__FRAME__MSG_WELCOME;
        r.welcome = &w;
        srv_send(c, &r);
    } else if (f->msg_case == TALLY__FRAME__MSG_PING) {
        fx->pings++;
        if (f->ping->nonce == 42)
            fx->log_allowed = net_conn_log_allowed(c);
        Tally__Ping p = TALLY__PING__INIT;
        p.nonce = f->ping->nonce;
        Tally__Frame r = TALLY__FRAME__INIT;
        r.msg_case = TALLY__FRAME__MSG_PING;
        r.ping = &p;
        srv_send(c, &r);
    } else if (f->msg_case == TALLY__FRAME__MSG_BATCH) {
        fx->batches++;
        fx->votes += f->batch->n_ballots;
        if (f->batch->seq == FLOOD_SEQ) {
            char *msg = malloc(FLOOD_MSG + 1);
            memset(msg, 'x', FLOOD_MSG);
            msg[FLOOD_MSG] = '\0';
            Tally__Error e = TALLY__ERROR__INIT;
            e.code = TALLY__ERROR_CODE__ERROR_TIMEOUT;
            e.message = msg;
            Tally__Frame r = TALLY__FRAME__INIT;
            r.msg_case = TALLY__FRAME__MSG_ERROR;
            r.error = &e;
            for (int i = 0; i < FLOOD_FRAMES; i++) {
                srv_send(c, &r);
                fx->flood_bytes += wire_frame_size(&r);
            }
            free(msg);
        }
    }
    return 0;
}

static void on_close(void *arg, struct net_conn *c)
{
    (void)arg;
    (void)c;
}

static struct net_server_config base_cfg(struct fx *fx)
{
    struct net_server_config cfg = {
        .host = "127.0.0.1",
        .port = 0,
        .max_frame_bytes = 8u << 20,
        .max_output_bytes = 4u << 20,
        .on_frame = on_frame,
        .on_close = on_close,
        .arg = fx,
    };
    return cfg;
}

static void fx_start(struct fx *fx, const struct net_server_config *cfg)
{
    memset(fx, 0, sizeof(*fx));
    fx->log_allowed = -1;
    fx->base = event_base_new();
    assert_non_null(fx->base);
    struct net_server_config c = *cfg;
    c.arg = fx;
    fx->srv = net_server_new(fx->base, &c);
    assert_non_null(fx->srv);
}

static void fx_stop(struct fx *fx)
{
    net_server_free(fx->srv);
    event_base_free(fx->base);
}

static void loop_ms(struct fx *fx, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(fx->base, &tv);
    event_base_dispatch(fx->base);
}

#define WAIT_UNTIL(fx, cond, ms)                                                                   \
    for (int wait_i_ = 0; wait_i_ < (ms) / 5 && !(cond); wait_i_++)                                \
    loop_ms((fx), 5)

static struct net_limit_counters limits_of(struct fx *fx)
{
    struct net_limit_counters l;
    net_server_limit_counters(fx->srv, &l);
    return l;
}

/* Connections the listener has taken, accepted or refused. */
static bool taken(struct fx *fx, uint64_t n)
{
    uint64_t bytes, accepted;
    net_server_counters(fx->srv, &bytes, &accepted);
    return accepted + limits_of(fx).conn_limit_refused >= n;
}

/* ---- the client side ---------------------------------------------------------------- */

struct cli {
    int fd;
    SSL *ssl;
    uint8_t *buf;
    size_t len, cap;
    bool eof;
    struct arena arena;
};

/* rcvbuf: SO_RCVBUF before connecting (0: the default), to make a peer that does not read
 * its replies fill the server's output quickly. */
static void cli_open_rcvbuf(struct cli *k, uint16_t port, int rcvbuf)
{
    memset(k, 0, sizeof(*k));
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(k->fd >= 0);
    if (rcvbuf)
        assert_int_equal(setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Blocking: the kernel completes it from the backlog, whatever the listener does. */
    assert_int_equal(connect(k->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(k->fd, F_SETFL, fcntl(k->fd, F_GETFL) | O_NONBLOCK);
    k->cap = 1 << 16;
    k->buf = malloc(k->cap);
    arena_init(&k->arena, 4096);
}

static void cli_open(struct cli *k, uint16_t port)
{
    cli_open_rcvbuf(k, port, 0);
}

static void cli_close(struct cli *k)
{
    if (k->ssl)
        SSL_free(k->ssl);
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    free(k->buf);
    arena_cleanup(&k->arena);
}

static void cli_send(struct fx *fx, struct cli *k, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (int tries = 0; n > 0; tries++) {
        assert_true(tries < 20000);
        ssize_t w;
        if (k->ssl) {
            w = SSL_write(k->ssl, p, (int)(n > (1 << 20) ? 1 << 20 : n));
            if (w <= 0) {
                int e = SSL_get_error(k->ssl, (int)w);
                assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            }
        } else {
            w = send(k->fd, p, n, MSG_NOSIGNAL);
            if (w < 0)
                assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        }
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else {
            loop_ms(fx, 1);
        }
    }
}

static void cli_send_frame(struct fx *fx, struct cli *k, const Tally__Frame *f)
{
    size_t n = wire_frame_size(f);
    uint8_t *b = malloc(n);
    wire_frame_encode(f, b);
    cli_send(fx, k, b, n);
    free(b);
}

static void cli_hello(struct fx *fx, struct cli *k, const char *id)
{
    Tally__Hello h = TALLY__HELLO__INIT;
    h.collector_id = (char *)id;
    h.protocol_version = 1;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_HELLO;
    f.hello = &h;
    cli_send_frame(fx, k, &f);
}

static void cli_ping(struct fx *fx, struct cli *k, uint64_t nonce)
{
    Tally__Ping p = TALLY__PING__INIT;
    p.nonce = nonce;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_PING;
    f.ping = &p;
    cli_send_frame(fx, k, &f);
}

/* A batch frame of n votes, encoded (free it). */
static uint8_t *batch_frame(uint64_t seq, size_t n, size_t *len)
{
    uint64_t *ballots = calloc(n, sizeof(uint64_t));
    uint32_t *projects = calloc(n, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        ballots[i] = 0x1000 + i;
        projects[i] = (uint32_t)(i % 7);
    }
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    b.n_ballots = n;
    b.ballots = ballots;
    b.n_projects = n;
    b.projects = projects;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    *len = wire_frame_size(&f);
    uint8_t *out = malloc(*len);
    wire_frame_encode(&f, out);
    free(ballots);
    free(projects);
    return out;
}

static void cli_batch(struct fx *fx, struct cli *k, uint64_t seq, size_t n)
{
    size_t len;
    uint8_t *b = batch_frame(seq, n, &len);
    cli_send(fx, k, b, len);
    free(b);
}

/* Reads what is there (no blocking). */
static void cli_pump(struct cli *k)
{
    for (;;) {
        if (k->len == k->cap) {
            k->cap *= 2;
            k->buf = realloc(k->buf, k->cap);
        }
        ssize_t r;
        if (k->ssl) {
            ERR_clear_error();
            r = SSL_read(k->ssl, k->buf + k->len, (int)(k->cap - k->len));
            if (r <= 0) {
                int e = SSL_get_error(k->ssl, (int)r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    k->eof = true;
                return;
            }
        } else {
            r = recv(k->fd, k->buf + k->len, k->cap - k->len, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
                k->eof = true;
            if (r <= 0)
                return;
        }
        k->len += (size_t)r;
    }
}

/* The next frame from the server within ms, or NULL (timeout or EOF first). Valid until
 * the next call. */
static Tally__Frame *cli_frame(struct fx *fx, struct cli *k, int ms)
{
    arena_reset(&k->arena);
    for (int i = 0; i <= ms / 5; i++) {
        cli_pump(k);
        size_t plen = 0;
        if (k->len >= 4 && wire_frame_peek(k->buf, k->len, 1 << 24, &plen) == WIRE_OK) {
            Tally__Frame *f = NULL;
            assert_int_equal(wire_frame_decode(k->buf + 4, plen, &k->arena, &f), WIRE_OK);
            memmove(k->buf, k->buf + 4 + plen, k->len - 4 - plen);
            k->len -= 4 + plen;
            return f;
        }
        if (k->eof)
            return NULL;
        loop_ms(fx, 5);
    }
    return NULL;
}

static bool cli_wait_eof(struct fx *fx, struct cli *k, int ms)
{
    for (int i = 0; i <= ms / 5 && !k->eof; i++) {
        cli_pump(k);
        if (!k->eof)
            loop_ms(fx, 5);
    }
    return k->eof;
}

static void expect_error(struct fx *fx, struct cli *k, Tally__ErrorCode code, int ms)
{
    Tally__Frame *f = cli_frame(fx, k, ms);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f->error->code, code);
    assert_true(cli_wait_eof(fx, k, 2000));
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_arena_trim(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 1024);
    for (int i = 0; i < 100; i++)
        arena_alloc(&a, 100000);
    assert_true(arena_bytes(&a) >= 10000000);
    arena_trim(&a, 1 << 20);
    assert_int_equal(arena_bytes(&a), 0);
    assert_int_equal(arena_chunk_count(&a), 0);
    /* Back to the first size, and a small load stays in one kept chunk. */
    arena_alloc(&a, 100);
    assert_int_equal(arena_bytes(&a), 1024);
    arena_alloc(&a, 2000);
    arena_trim(&a, 1 << 20);
    assert_int_equal(arena_chunk_count(&a), 1);
    assert_true(arena_bytes(&a) >= 2000 && arena_bytes(&a) <= 1 << 20);
    arena_cleanup(&a);
}

static void test_hello_deadline(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.hello_timeout_ms = 150;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == 1, 1000);
    assert_int_equal(net_server_conn_count(fx.srv), 1);
    loop_ms(&fx, 50);
    assert_false(cli_wait_eof(&fx, &k, 0)); /* not before the deadline */
    expect_error(&fx, &k, TALLY__ERROR_CODE__ERROR_TIMEOUT, 1500);
    assert_int_equal(limits_of(&fx).hello_timeouts, 1);
    loop_ms(&fx, 10);
    assert_int_equal(net_server_conn_count(fx.srv), 0);
    cli_close(&k);
    fx_stop(&fx);
}

static void test_frame_deadline_cuts_slow_sender(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.frame_timeout_ms = 300;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    cli_hello(&fx, &k, "c1");
    Tally__Frame *f = cli_frame(&fx, &k, 1000);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_WELCOME);
    /* A 100-byte frame, one byte every 50 ms: 5 s to finish, cut at 0.3 s. */
    uint8_t hdr[4];
    wire_header_put(hdr, 100);
    cli_send(&fx, &k, hdr, 4);
    int sent = 0;
    for (; sent < 40 && !k.eof; sent++) {
        uint8_t b = 0;
        cli_send(&fx, &k, &b, 1);
        loop_ms(&fx, 50);
        cli_pump(&k);
        if (k.len)
            break;
    }
    assert_true(sent < 15);
    expect_error(&fx, &k, TALLY__ERROR_CODE__ERROR_TIMEOUT, 1000);
    assert_int_equal(limits_of(&fx).frame_timeouts, 1);
    assert_int_equal(fx.batches, 0);
    cli_close(&k);
    fx_stop(&fx);
}

static void test_idle_timeout_and_pings(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.idle_timeout_ms = 250;
    cfg.hello_timeout_ms = 5000;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    cli_hello(&fx, &k, "c1");
    assert_non_null(cli_frame(&fx, &k, 1000));
    /* Pings every 100 ms keep it open well past the timeout. */
    for (int i = 0; i < 8; i++) {
        cli_ping(&fx, &k, (uint64_t)i);
        Tally__Frame *f = cli_frame(&fx, &k, 1000);
        assert_non_null(f);
        assert_int_equal(f->msg_case, TALLY__FRAME__MSG_PING);
        assert_int_equal(f->ping->nonce, (uint64_t)i);
        loop_ms(&fx, 100);
    }
    assert_int_equal(limits_of(&fx).idle_timeouts, 0);
    expect_error(&fx, &k, TALLY__ERROR_CODE__ERROR_TIMEOUT, 1500);
    assert_int_equal(limits_of(&fx).idle_timeouts, 1);
    assert_int_equal(limits_of(&fx).hello_timeouts, 0);
    cli_close(&k);
    fx_stop(&fx);
}

static void test_pre_auth_oversized_frame(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.pre_auth_max_frame_bytes = 4096;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    /* An 8 MiB frame (within max_frame_bytes) before Hello, of which only 3 KiB are sent:
     * refused from its header, never waited for, never decoded. */
    uint8_t *junk = calloc(1, 4 + 3000);
    wire_header_put(junk, (8u << 20) - 16);
    cli_send(&fx, &k, junk, 4 + 3000);
    free(junk);
    expect_error(&fx, &k, TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 1000);
    assert_int_equal(limits_of(&fx).pre_auth_too_large, 1);
    assert_int_equal(fx.hellos + fx.batches, 0);
    cli_close(&k);

    /* After Hello the full size applies, even for a batch sent right behind it. */
    cli_open(&k, net_server_port(fx.srv));
    cli_hello(&fx, &k, "c1");
    cli_batch(&fx, &k, 1, 20000);
    WAIT_UNTIL(&fx, fx.batches == 1, 2000);
    assert_int_equal(fx.batches, 1);
    assert_int_equal(fx.votes, 20000);
    uint64_t buffered, arena;
    net_server_memory(fx.srv, &buffered, &arena);
    assert_int_equal(buffered, 0);
    cli_close(&k);
    fx_stop(&fx);
}

static void test_max_conns(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_conns = 2;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    struct cli k[4];
    cli_open(&k[0], port);
    cli_hello(&fx, &k[0], "c1");
    assert_non_null(cli_frame(&fx, &k[0], 1000));
    cli_open(&k[1], port);
    WAIT_UNTIL(&fx, taken(&fx, 2), 1000);
    /* Full: the connection without Hello makes room for the new one. */
    cli_open(&k[2], port);
    WAIT_UNTIL(&fx, taken(&fx, 3), 1000);
    assert_true(cli_wait_eof(&fx, &k[1], 1000));
    loop_ms(&fx, 10);
    assert_int_equal(net_server_conn_count(fx.srv), 2);
    assert_int_equal(limits_of(&fx).pre_auth_evicted, 1);
    assert_int_equal(limits_of(&fx).conn_limit_refused, 0);
    cli_hello(&fx, &k[2], "c2");
    assert_non_null(cli_frame(&fx, &k[2], 1000));
    /* Every slot authenticated: refused at accept. */
    cli_open(&k[3], port);
    WAIT_UNTIL(&fx, taken(&fx, 4), 1000);
    assert_int_equal(limits_of(&fx).conn_limit_refused, 1);
    assert_true(cli_wait_eof(&fx, &k[3], 1000));
    cli_pump(&k[0]);
    assert_false(k[0].eof);
    cli_ping(&fx, &k[0], 3);
    assert_non_null(cli_frame(&fx, &k[0], 1000));
    for (int i = 0; i < 4; i++)
        cli_close(&k[i]);
    fx_stop(&fx);
}

static void test_error_message_printable(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    cli_hello(&fx, &k, "bad\n\x01\xc3\xa9id\x7f");
    Tally__Frame *f = cli_frame(&fx, &k, 1000);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f->error->code, TALLY__ERROR_CODE__ERROR_AUTH);
    assert_string_equal(f->error->message, "unknown collector bad????id?");
    assert_true(cli_wait_eof(&fx, &k, 1000));
    cli_close(&k);
    fx_stop(&fx);
}

static void test_buffer_budget_pauses_and_resumes(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_buffered_bytes = 64 * 1024;
    fx_start(&fx, &cfg);
    struct cli k[2];
    for (int i = 0; i < 2; i++) {
        cli_open(&k[i], net_server_port(fx.srv));
        cli_hello(&fx, &k[i], i ? "c2" : "c1");
        assert_non_null(cli_frame(&fx, &k[i], 1000));
    }
    /* The tally is behind: frames wait; 2 x 1.5 MiB of them must not all be buffered. */
    net_server_pause(fx.srv);
    for (int j = 0; j < 240; j++)
        for (int i = 0; i < 2; i++)
            cli_batch(&fx, &k[i], (uint64_t)j + 1, 800);
    loop_ms(&fx, 100);
    uint64_t buffered, arena;
    net_server_memory(fx.srv, &buffered, &arena);
    assert_int_equal(limits_of(&fx).buffer_pauses, 1);
    assert_true(buffered < 64 * 1024 + 2 * 300 * 1024);
    assert_int_equal(fx.batches, 0);
    /* Whole frames buffered are processed, reading resumes below half, nothing is lost. */
    net_server_resume(fx.srv);
    WAIT_UNTIL(&fx, fx.batches == 480, 5000);
    assert_int_equal(fx.batches, 480);
    net_server_memory(fx.srv, &buffered, &arena);
    assert_int_equal(buffered, 0);
    for (int i = 0; i < 2; i++) {
        cli_pump(&k[i]);
        assert_false(k[i].eof);
        cli_close(&k[i]);
    }
    fx_stop(&fx);
}

static void test_large_frame_memory_returned(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    cli_hello(&fx, &k, "c1");
    assert_non_null(cli_frame(&fx, &k, 1000));
    /* ~3.6 MB on the wire, ~5 MB decoded: more than a connection may keep. */
    cli_batch(&fx, &k, 1, 400000);
    WAIT_UNTIL(&fx, fx.batches == 1, 5000);
    assert_int_equal(fx.batches, 1);
    uint64_t buffered, arena;
    net_server_memory(fx.srv, &buffered, &arena);
    assert_true(arena <= 4u << 20);
    /* A normal batch keeps its chunk (no malloc per frame). */
    cli_batch(&fx, &k, 2, 10000);
    WAIT_UNTIL(&fx, fx.batches == 2, 2000);
    net_server_memory(fx.srv, &buffered, &arena);
    assert_true(arena > 0 && arena <= 4u << 20);
    cli_close(&k);
    fx_stop(&fx);
}

static void test_emfile_pauses_listener(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    enum { N = 4 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
    }
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    /* No new descriptor from here on: accept fails with EMFILE. */
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    loop_ms(&fx, 400);
    struct net_limit_counters l = limits_of(&fx);
    /* 100, 200 ms...: a handful of pauses, not a busy loop. */
    assert_true(l.accept_pauses >= 1 && l.accept_pauses <= 4);
    assert_int_equal(net_server_conn_count(fx.srv), 0);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    /* Descriptors are back: the listener serves the waiting connections. */
    WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == N, 3000);
    assert_int_equal(net_server_conn_count(fx.srv), N);
    struct cli k;
    cli_open(&k, port);
    cli_hello(&fx, &k, "c1");
    assert_non_null(cli_frame(&fx, &k, 1000));
    cli_close(&k);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    fx_stop(&fx);
}

/* Lines with needle in the log (stderr) while fn runs the server. */
static int count_log_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static void test_limit_logs_rate_limited(void **state)
{
    (void)state;
    char path[] = "/tmp/test_net_log_XXXXXX";
    int lf = mkstemp(path);
    assert_true(lf >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(lf, 2);

    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.hello_timeout_ms = 100;
    fx_start(&fx, &cfg);
    enum { N = 20 };
    struct cli k[N];
    for (int i = 0; i < N; i++)
        cli_open(&k[i], net_server_port(fx.srv));
    WAIT_UNTIL(&fx, limits_of(&fx).hello_timeouts == N, 3000);
    assert_int_equal(limits_of(&fx).hello_timeouts, N);
    for (int i = 0; i < N; i++)
        cli_close(&k[i]);
    fx_stop(&fx); /* writes the pending summary */

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(lf);
    assert_int_equal(count_log_lines(path, "no Hello within"), 5);
    assert_int_equal(count_log_lines(path, "15 more hello timeouts"), 1);
    /* Peers that never said Hello: connected/closing at DEBUG only. */
    assert_int_equal(count_log_lines(path, "connected"), 0);
    assert_int_equal(count_log_lines(path, "closing"), 5); /* "...; closing" of the 5 */
    unlink(path);
}

/* ---- back-pressure, budget, eviction, session logs (review of issue 8) -------------- */

static void expect_welcome(struct fx *fx, struct cli *k, const char *id)
{
    cli_hello(fx, k, id);
    Tally__Frame *f = cli_frame(fx, k, 1000);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_WELCOME);
}

static void expect_ping(struct fx *fx, struct cli *k, uint64_t nonce, int ms)
{
    Tally__Frame *f = cli_frame(fx, k, ms);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_PING);
    assert_int_equal(f->ping->nonce, nonce);
}

/* PostgreSQL is away (ingest pauses net): a collector still says Hello, within its
 * deadline and without counting as hostile; idle ones get their Pings answered; batches
 * (small ones too) and what is behind them wait for the resume. */
static void test_pause_serves_hello_and_ping(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.hello_timeout_ms = 300;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    struct cli k0, k1;
    cli_open(&k0, port);
    expect_welcome(&fx, &k0, "c1");
    net_server_pause(fx.srv);
    cli_open(&k1, port);
    expect_welcome(&fx, &k1, "c2");
    loop_ms(&fx, 400);
    assert_int_equal(limits_of(&fx).hello_timeouts, 0);
    cli_ping(&fx, &k0, 5);
    expect_ping(&fx, &k0, 5, 1000);
    /* A one-vote batch is as small as a Ping: it waits, and the Ping behind it too. */
    cli_batch(&fx, &k0, 1, 1);
    cli_ping(&fx, &k0, 6);
    cli_batch(&fx, &k1, 1, 2000);
    assert_null(cli_frame(&fx, &k0, 200));
    assert_int_equal(fx.batches, 0);
    assert_int_equal(fx.pings, 1);
    net_server_resume(fx.srv);
    expect_ping(&fx, &k0, 6, 1000);
    WAIT_UNTIL(&fx, fx.batches == 2, 1000);
    assert_int_equal(fx.batches, 2);
    /* Shutting down (accepting stopped, paused): no new session starts. */
    struct cli k2;
    cli_open(&k2, port);
    WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == 3, 1000);
    net_server_stop_accepting(fx.srv);
    net_server_pause(fx.srv);
    int hellos = fx.hellos;
    cli_hello(&fx, &k2, "c3");
    Tally__Frame *f = cli_frame(&fx, &k2, 200);
    assert_true(!f || f->msg_case != TALLY__FRAME__MSG_WELCOME); /* the Hello deadline may */
    assert_int_equal(fx.hellos, hellos);
    cli_ping(&fx, &k0, 7);
    expect_ping(&fx, &k0, 7, 1000);
    cli_close(&k0);
    cli_close(&k1);
    cli_close(&k2);
    fx_stop(&fx);
}

/* The budget trips while a collector is in the middle of a frame: it reads that frame to
 * its end (no frame timeout, no deadlock), then waits like the others. */
static void test_budget_reads_partial_frame_to_its_end(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_buffered_bytes = 64 * 1024;
    cfg.frame_timeout_ms = 300;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    struct cli a, b;
    cli_open(&a, port);
    expect_welcome(&fx, &a, "c1");
    cli_open(&b, port);
    expect_welcome(&fx, &b, "c2");
    net_server_pause(fx.srv);
    size_t len;
    uint8_t *half = batch_frame(1, 2000, &len);
    cli_send(&fx, &a, half, len / 2);
    loop_ms(&fx, 50);
    for (int j = 0; j < 100; j++)
        cli_batch(&fx, &b, (uint64_t)j + 1, 800);
    loop_ms(&fx, 100);
    assert_int_equal(limits_of(&fx).buffer_pauses, 1);
    cli_send(&fx, &a, half + len / 2, len - len / 2);
    free(half);
    loop_ms(&fx, 600);
    assert_int_equal(limits_of(&fx).frame_timeouts, 0);
    cli_pump(&a);
    assert_false(a.eof);
    assert_int_equal(a.len, 0);
    net_server_resume(fx.srv);
    WAIT_UNTIL(&fx, fx.batches == 101, 5000);
    assert_int_equal(fx.batches, 101);
    assert_int_equal(limits_of(&fx).frame_timeouts, 0);
    cli_close(&a);
    cli_close(&b);
    fx_stop(&fx);
}

/* A peer we stop reading from (its replies pile up) is not timed out for the frame it is
 * in the middle of: the frame clock runs only while we read. */
static void test_frame_clock_stops_while_output_full(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_output_bytes = 64 * 1024;
    cfg.frame_timeout_ms = 300;
    cfg.idle_timeout_ms = 300;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open_rcvbuf(&k, net_server_port(fx.srv), 4096);
    expect_welcome(&fx, &k, "c1");
    /* Batch FLOOD_SEQ (8 MB of replies) and the first 10 bytes of batch 78, in one write. */
    size_t l77, l78;
    uint8_t *b77 = batch_frame(FLOOD_SEQ, 1, &l77), *b78 = batch_frame(78, 50, &l78);
    uint8_t *both = malloc(l77 + 10);
    memcpy(both, b77, l77);
    memcpy(both + l77, b78, 10);
    cli_send(&fx, &k, both, l77 + 10);
    free(both);
    free(b77);
    WAIT_UNTIL(&fx, fx.batches == 1, 1000);
    assert_int_equal(fx.batches, 1);
    loop_ms(&fx, 700);
    assert_int_equal(limits_of(&fx).frame_timeouts, 0);
    assert_int_equal(limits_of(&fx).idle_timeouts, 0);
    /* Read the replies (discarding them): reading resumes, the frame can be finished. */
    size_t got = 0;
    for (int i = 0; i < 4000 && got < fx.flood_bytes; i++) {
        cli_pump(&k);
        got += k.len;
        k.len = 0;
        if (got < fx.flood_bytes)
            loop_ms(&fx, 1);
    }
    assert_int_equal(got, fx.flood_bytes);
    assert_false(k.eof);
    cli_send(&fx, &k, b78 + 10, l78 - 10);
    free(b78);
    WAIT_UNTIL(&fx, fx.batches == 2, 1000);
    assert_int_equal(fx.batches, 2);
    assert_int_equal(limits_of(&fx).frame_timeouts, 0);
    cli_close(&k);
    fx_stop(&fx);
}

/* An idle collector whose timer ran out while the budget kept it from being read (and so
 * from being idle) is timed out once reading is back: the timer is armed again. */
static void test_idle_rearmed_after_budget_pause(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_buffered_bytes = 64 * 1024;
    cfg.idle_timeout_ms = 300;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    struct cli a, b;
    cli_open(&a, port);
    expect_welcome(&fx, &a, "c1");
    cli_open(&b, port);
    expect_welcome(&fx, &b, "c2");
    net_server_pause(fx.srv);
    for (int j = 0; j < 100; j++)
        cli_batch(&fx, &b, (uint64_t)j + 1, 800);
    loop_ms(&fx, 500);
    assert_int_equal(limits_of(&fx).buffer_pauses, 1);
    assert_int_equal(limits_of(&fx).idle_timeouts, 0);
    net_server_resume(fx.srv);
    WAIT_UNTIL(&fx, fx.batches == 100, 5000);
    assert_int_equal(fx.batches, 100);
    expect_error(&fx, &a, TALLY__ERROR_CODE__ERROR_TIMEOUT, 1500);
    assert_true(limits_of(&fx).idle_timeouts >= 1);
    cli_close(&a);
    cli_close(&b);
    fx_stop(&fx);
}

/* Bare connects cannot hold the slots: the oldest connection without Hello is closed to
 * make room, at the pre-auth cap and at the total cap; only a server whose every slot is
 * authenticated refuses at accept. */
static void test_pre_auth_eviction(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_conns = 3;
    cfg.max_pre_auth_conns = 2;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    struct cli k[6];
    cli_open(&k[0], port);
    expect_welcome(&fx, &k[0], "c0");
    for (int i = 1; i <= 3; i++) {
        cli_open(&k[i], port);
        WAIT_UNTIL(&fx, taken(&fx, (uint64_t)i + 1), 1000);
    }
    /* k[3] found two before Hello (the cap): k[1], the oldest, made room. */
    assert_int_equal(limits_of(&fx).pre_auth_evicted, 1);
    assert_true(cli_wait_eof(&fx, &k[1], 1000));
    /* k[4] finds every slot taken, k[2] the oldest without Hello. */
    cli_open(&k[4], port);
    WAIT_UNTIL(&fx, taken(&fx, 5), 1000);
    assert_int_equal(limits_of(&fx).pre_auth_evicted, 2);
    assert_true(cli_wait_eof(&fx, &k[2], 1000));
    expect_welcome(&fx, &k[3], "c3");
    expect_welcome(&fx, &k[4], "c4");
    assert_int_equal(net_server_conn_count(fx.srv), 3);
    cli_open(&k[5], port);
    WAIT_UNTIL(&fx, taken(&fx, 6), 1000);
    assert_int_equal(limits_of(&fx).conn_limit_refused, 1);
    assert_true(cli_wait_eof(&fx, &k[5], 1000));
    assert_int_equal(limits_of(&fx).pre_auth_evicted, 2);
    assert_int_equal(limits_of(&fx).hello_timeouts, 0);
    cli_ping(&fx, &k[0], 1);
    expect_ping(&fx, &k[0], 1, 1000);
    for (int i = 0; i < 6; i++)
        cli_close(&k[i]);
    fx_stop(&fx);
}

/* Bytes of peers before Hello are not counted in the budget good collectors obey. */
static void test_pre_auth_bytes_not_budgeted(void **state)
{
    (void)state;
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.max_buffered_bytes = 8 * 1024;
    cfg.pre_auth_max_frame_bytes = 4096;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    struct cli a;
    cli_open(&a, port);
    expect_welcome(&fx, &a, "c1");
    enum { N = 5 };
    struct cli k[N];
    uint8_t junk[4 + 3000] = {0};
    wire_header_put(junk, 4000);
    for (int i = 0; i < N; i++) {
        cli_open(&k[i], port);
        cli_send(&fx, &k[i], junk, sizeof(junk));
    }
    loop_ms(&fx, 100);
    uint64_t buffered, arena;
    net_server_memory(fx.srv, &buffered, &arena);
    assert_int_equal(buffered, N * sizeof(junk));
    assert_int_equal(limits_of(&fx).buffer_pauses, 0);
    cli_batch(&fx, &a, 1, 100);
    WAIT_UNTIL(&fx, fx.batches == 1, 1000);
    assert_int_equal(fx.batches, 1);
    for (int i = 0; i < N; i++)
        cli_close(&k[i]);
    cli_close(&a);
    fx_stop(&fx);
}

/* One certificate holder reconnecting in a loop: at most 20 session lines per name per
 * 60 s, then one summary; another collector's lines are not affected. */
static void test_session_logs_per_collector(void **state)
{
    (void)state;
    char path[] = "/tmp/test_net_log_XXXXXX";
    int lf = mkstemp(path);
    assert_true(lf >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(lf, 2);

    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);
    /* Each session: "session open" and "peer closed the connection". */
    for (int i = 0; i < 16; i++) {
        struct cli k;
        cli_open(&k, port);
        expect_welcome(&fx, &k, "c1");
        if (i == 15) {
            cli_ping(&fx, &k, 42);
            expect_ping(&fx, &k, 42, 1000);
        }
        cli_close(&k);
        WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == 0, 1000);
    }
    assert_int_equal(fx.log_allowed, 0);
    struct cli k;
    cli_open(&k, port);
    expect_welcome(&fx, &k, "c2");
    cli_ping(&fx, &k, 42);
    expect_ping(&fx, &k, 42, 1000);
    assert_int_equal(fx.log_allowed, 1);
    cli_close(&k);
    WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == 0, 1000);
    fx_stop(&fx); /* writes the pending summary */

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(lf);
    assert_int_equal(count_log_lines(path, " c1] "), 20);
    /* 16 x 2 lines and the one net_conn_log_allowed asked for: 13 not logged. */
    assert_int_equal(count_log_lines(path, "collector c1: 13 more session lines in the last 60 s"),
                     1);
    assert_int_equal(count_log_lines(path, " c2] session open"), 1);
    assert_int_equal(count_log_lines(path, " c2] peer closed"), 1);
    assert_int_equal(count_log_lines(path, "collector c2:"), 0);
    unlink(path);
}

/* ---- TLS ---------------------------------------------------------------------------- */

struct pki {
    EVP_PKEY *ca_key, *srv_key, *cli_key, *other_ca_key, *other_key;
    X509 *ca, *srv, *cli, *other_ca, *other;
    SSL_CTX *sctx, *cctx, *cctx_foreign, *cctx_nocert;
};

static X509 *cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    if (ca) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        X509_EXTENSION *e =
            X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        e = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static SSL_CTX *client_ctx(X509 *cert, EVP_PKEY *key)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (cert) {
        assert_int_equal(SSL_CTX_use_certificate(c, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(c, key), 1);
    }
    return c;
}

static void pki_init(struct pki *p)
{
    memset(p, 0, sizeof(*p));
    p->ca_key = EVP_EC_gen("P-256");
    p->srv_key = EVP_EC_gen("P-256");
    p->cli_key = EVP_EC_gen("P-256");
    p->other_ca_key = EVP_EC_gen("P-256");
    p->other_key = EVP_EC_gen("P-256");
    p->ca = cert_new(p->ca_key, "test CA", NULL, NULL, true);
    p->srv = cert_new(p->srv_key, "localhost", p->ca, p->ca_key, false);
    p->cli = cert_new(p->cli_key, "c1", p->ca, p->ca_key, false);
    p->other_ca = cert_new(p->other_ca_key, "foreign CA", NULL, NULL, true);
    p->other = cert_new(p->other_key, "c1", p->other_ca, p->other_ca_key, false);

    /* The server's context as tallyd makes it, from PEM files. */
    char dir[] = "/tmp/test_net_pki_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char crt[300], key[300], ca[300];
    snprintf(crt, sizeof(crt), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    FILE *f = fopen(crt, "w");
    PEM_write_X509(f, p->srv);
    fclose(f);
    f = fopen(key, "w");
    PEM_write_PrivateKey(f, p->srv_key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(ca, "w");
    PEM_write_X509(f, p->ca);
    fclose(f);
    char err[256] = "";
    p->sctx = tls_server_ctx_new(crt, key, ca, err, sizeof(err));
    if (!p->sctx)
        fail_msg("tls_server_ctx_new: %s", err);
    unlink(crt);
    unlink(key);
    unlink(ca);
    rmdir(dir);

    p->cctx = client_ctx(p->cli, p->cli_key);
    p->cctx_foreign = client_ctx(p->other, p->other_key);
    p->cctx_nocert = client_ctx(NULL, NULL);
}

static void pki_free(struct pki *p)
{
    tls_ctx_free(p->sctx);
    SSL_CTX_free(p->cctx);
    SSL_CTX_free(p->cctx_foreign);
    SSL_CTX_free(p->cctx_nocert);
    X509 *certs[] = {p->ca, p->srv, p->cli, p->other_ca, p->other};
    EVP_PKEY *keys[] = {p->ca_key, p->srv_key, p->cli_key, p->other_ca_key, p->other_key};
    for (int i = 0; i < 5; i++) {
        X509_free(certs[i]);
        EVP_PKEY_free(keys[i]);
    }
}

/* Client handshake interleaved with the server's loop. True when it completed (with TLS
 * 1.3 the server may still refuse the client's certificate right after). */
static bool cli_tls(struct fx *fx, struct cli *k, SSL_CTX *ctx)
{
    k->ssl = SSL_new(ctx);
    SSL_set_fd(k->ssl, k->fd);
    SSL_set_connect_state(k->ssl);
    for (int i = 0; i < 1000; i++) {
        ERR_clear_error();
        int r = SSL_do_handshake(k->ssl);
        if (r == 1)
            return true;
        int e = SSL_get_error(k->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return false;
        loop_ms(fx, 2);
    }
    return false;
}

static void test_tls(void **state)
{
    (void)state;
    struct pki p;
    pki_init(&p);
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.tls = p.sctx;
    cfg.hello_timeout_ms = 400;
    cfg.pre_auth_max_frame_bytes = 4096;
    fx_start(&fx, &cfg);
    uint16_t port = net_server_port(fx.srv);

    /* A good collector: handshake, the pin of its certificate, a Welcome back, a frame of
     * ~4 MB (hundreds of records) and an error that arrives before the close. */
    struct cli k;
    cli_open(&k, port);
    assert_true(cli_tls(&fx, &k, p.cctx));
    cli_hello(&fx, &k, "c1");
    Tally__Frame *f = cli_frame(&fx, &k, 2000);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_WELCOME);
    assert_true(fx.was_tls);
    assert_true(fx.pin_ok);
    uint8_t want[32];
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(p.cli), &der);
    assert_true(n > 0);
    SHA256(der, (size_t)n, want); /* the pin, computed here by hand */
    OPENSSL_free(der);
    assert_memory_equal(fx.pin, want, 32);
    cli_batch(&fx, &k, 1, 400000);
    WAIT_UNTIL(&fx, fx.batches == 1, 5000);
    assert_int_equal(fx.votes, 400000);
    cli_ping(&fx, &k, 7);
    f = cli_frame(&fx, &k, 2000);
    assert_non_null(f);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_PING);
    cli_close(&k);

    cli_open(&k, port);
    assert_true(cli_tls(&fx, &k, p.cctx));
    cli_hello(&fx, &k, "bad\x01");
    expect_error(&fx, &k, TALLY__ERROR_CODE__ERROR_AUTH, 2000);
    cli_close(&k);
    assert_int_equal(limits_of(&fx).tls_handshake_failures, 0);

    /* Plain TCP at the TLS port. */
    cli_open(&k, port);
    cli_send(&fx, &k, "GET / HTTP/1.0\r\n\r\n", 18);
    assert_true(cli_wait_eof(&fx, &k, 2000));
    assert_int_equal(k.len, 0);
    cli_close(&k);
    WAIT_UNTIL(&fx, limits_of(&fx).tls_handshake_failures == 1, 1000);
    assert_int_equal(limits_of(&fx).tls_handshake_failures, 1);

    /* A certificate from another CA, then none at all. */
    SSL_CTX *bad[] = {p.cctx_foreign, p.cctx_nocert};
    for (int i = 0; i < 2; i++) {
        cli_open(&k, port);
        if (cli_tls(&fx, &k, bad[i]))
            cli_hello(&fx, &k, "c1");
        assert_true(cli_wait_eof(&fx, &k, 2000));
        cli_close(&k);
        WAIT_UNTIL(&fx, limits_of(&fx).tls_handshake_failures == (uint64_t)(2 + i), 1000);
        assert_int_equal(limits_of(&fx).tls_handshake_failures, 2 + i);
    }
    assert_int_equal(fx.hellos, 2);

    /* An oversized frame before Hello, through TLS. */
    cli_open(&k, port);
    assert_true(cli_tls(&fx, &k, p.cctx));
    uint8_t hdr[4];
    wire_header_put(hdr, 1u << 20);
    cli_send(&fx, &k, hdr, 4);
    expect_error(&fx, &k, TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, 2000);
    assert_int_equal(limits_of(&fx).pre_auth_too_large, 1);
    cli_close(&k);

    /* No handshake at all: the Hello deadline closes it, and nothing is sent in clear. */
    cli_open(&k, port);
    assert_true(cli_wait_eof(&fx, &k, 2000));
    assert_int_equal(k.len, 0);
    assert_int_equal(limits_of(&fx).hello_timeouts, 1);
    cli_close(&k);

    fx_stop(&fx);
    pki_free(&p);
}

/* Back-pressure over TLS: reading stops at the input cap between records and resumes
 * once frames are consumed, with nothing stranded inside OpenSSL (the client sends
 * nothing more after its batches, as a collector waiting for acks). */
static void test_tls_backpressure(void **state)
{
    (void)state;
    struct pki p;
    pki_init(&p);
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.tls = p.sctx;
    cfg.max_frame_bytes = 32 * 1024;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    assert_true(cli_tls(&fx, &k, p.cctx));
    cli_hello(&fx, &k, "c1");
    assert_non_null(cli_frame(&fx, &k, 2000));
    net_server_pause(fx.srv);
    /* Frames of ~7 KB in one write, so 16 KiB records straddle them, ending 8 KiB past
     * the cap (32 KiB + 4 + 256 KiB): the record that crosses the cap is the last. */
    size_t cap = 32 * 1024 + 4 + 256 * 1024, total = 0, n = 0;
    uint8_t *all = malloc(cap + 64 * 1024);
    while (total < cap + 8 * 1024) {
        uint64_t ballots[700];
        uint32_t projects[700];
        size_t votes = total + 8000 < cap + 8 * 1024 ? 700 : 100;
        for (size_t i = 0; i < votes; i++) {
            ballots[i] = n * 1000 + i;
            projects[i] = 1;
        }
        Tally__Batch b = TALLY__BATCH__INIT;
        b.seq = n + 1;
        b.n_ballots = b.n_projects = votes;
        b.ballots = ballots;
        b.projects = projects;
        Tally__Frame f = TALLY__FRAME__INIT;
        f.msg_case = TALLY__FRAME__MSG_BATCH;
        f.batch = &b;
        total += wire_frame_encode(&f, all + total);
        n++;
    }
    cli_send(&fx, &k, all, total);
    free(all);
    loop_ms(&fx, 100);
    uint64_t buffered, arena;
    net_server_memory(fx.srv, &buffered, &arena);
    /* The cap, plus at most one record. */
    assert_true(buffered >= cap - 8 * 1024 && buffered <= cap + 17 * 1024);
    assert_int_equal(fx.batches, 0);
    net_server_resume(fx.srv);
    WAIT_UNTIL(&fx, fx.batches == (int)n, 3000);
    assert_int_equal(fx.batches, n);
    cli_close(&k);
    fx_stop(&fx);
    pki_free(&p);
}

/* A connect-and-close without a byte (a load balancer's probe) is a tcp_probe at DEBUG,
 * not a TLS handshake failure; bytes that are not TLS still are one. Plain TCP too. */
static void test_tcp_probe(void **state)
{
    (void)state;
    struct pki p;
    pki_init(&p);
    struct fx fx;
    struct net_server_config cfg = base_cfg(&fx);
    cfg.tls = p.sctx;
    fx_start(&fx, &cfg);
    struct cli k;
    cli_open(&k, net_server_port(fx.srv));
    WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == 1, 1000);
    cli_close(&k);
    WAIT_UNTIL(&fx, limits_of(&fx).tcp_probes == 1, 1000);
    assert_int_equal(limits_of(&fx).tcp_probes, 1);
    assert_int_equal(limits_of(&fx).tls_handshake_failures, 0);
    cli_open(&k, net_server_port(fx.srv));
    cli_send(&fx, &k, "\x16\x03\x01\x00\x05hello", 10);
    cli_close(&k);
    WAIT_UNTIL(&fx, limits_of(&fx).tls_handshake_failures == 1, 1000);
    assert_int_equal(limits_of(&fx).tls_handshake_failures, 1);
    assert_int_equal(limits_of(&fx).tcp_probes, 1);
    fx_stop(&fx);
    pki_free(&p);

    cfg = base_cfg(&fx);
    fx_start(&fx, &cfg);
    cli_open(&k, net_server_port(fx.srv));
    WAIT_UNTIL(&fx, net_server_conn_count(fx.srv) == 1, 1000);
    cli_close(&k);
    WAIT_UNTIL(&fx, limits_of(&fx).tcp_probes == 1, 1000);
    assert_int_equal(limits_of(&fx).tcp_probes, 1);
    fx_stop(&fx);
}

int main(void)
{
    /* As tallyd: a write to a closed peer is an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_INFO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_trim),
        cmocka_unit_test(test_hello_deadline),
        cmocka_unit_test(test_frame_deadline_cuts_slow_sender),
        cmocka_unit_test(test_idle_timeout_and_pings),
        cmocka_unit_test(test_pre_auth_oversized_frame),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_error_message_printable),
        cmocka_unit_test(test_buffer_budget_pauses_and_resumes),
        cmocka_unit_test(test_large_frame_memory_returned),
        cmocka_unit_test(test_emfile_pauses_listener),
        cmocka_unit_test(test_limit_logs_rate_limited),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_tls_backpressure),
        cmocka_unit_test(test_pause_serves_hello_and_ping),
        cmocka_unit_test(test_budget_reads_partial_frame_to_its_end),
        cmocka_unit_test(test_frame_clock_stops_while_output_full),
        cmocka_unit_test(test_idle_rearmed_after_budget_pause),
        cmocka_unit_test(test_pre_auth_eviction),
        cmocka_unit_test(test_pre_auth_bytes_not_budgeted),
        cmocka_unit_test(test_session_logs_per_collector),
        cmocka_unit_test(test_tcp_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
