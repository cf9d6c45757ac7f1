/* The collector session: Hello/Welcome, stream spooled batches within a window, read acks,
 * release batches once durable and acked, start over when a session ends. Owns the socket and
 * the session state machine; which server to dial and when belongs to dial.c, the disk to
 * spool.c, the bytes on the wire to wire/. One non-blocking socket driven by poll(): the
 * collector is a simple program and needs no event library, but it must read acks while a
 * large batch is still being written. */
#include "tally/client.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "client/dial.h"
#include "client/spool.h"
#include "core/xalloc.h"
#include "wire/wire.h"

#define DEFAULT_WINDOW 64u
#define DEFAULT_MAX_SPOOLED 256u
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_STALL_TIMEOUT_MS 60000
/* A session that lived this long was healthy: the next failure starts backoff over. */
#define SESSION_HEALTHY_MS 5000
/* tallyd only sends Welcome, Ack and Error: small. Anything bigger is not tallyd. */
#define MAX_IN_PAYLOAD (1u << 20)
#define READ_CHUNK 65536u
#define CONSULTATION_ID_MAX 255u
/* Batch.nonce: 128 bits make the stored digest as hard to brute-force as guessing the nonce. */
#define BATCH_NONCE_BYTES 16u

enum conn_state {
    CONN_IDLE,       /* no socket; next attempt at retry_at */
    CONN_CONNECTING, /* non-blocking connect in progress until deadline */
    CONN_HELLO,      /* Hello queued or sent; Welcome expected before deadline */
    CONN_READY,      /* session established: batches flow */
};

struct tally_client {
    char collector_id[TALLY_COLLECTOR_ID_MAX + 1];
    char *consultation_id;
    char *spool_dir; /* for messages */
    uint32_t window;
    uint32_t max_spooled;
    int connect_timeout_ms;
    int stall_timeout_ms;
    tally_client_log_cb log_cb;
    void *log_arg;

    struct client_spool spool;
    int status; /* sticky fatal status, or 0 */
    char last_error[512];

    struct client_dial dial; /* the servers, the one in use, when to try the next */
    enum conn_state state;
    int fd;
    int64_t deadline; /* CONNECTING: connect; HELLO: Welcome */
    int64_t retry_at;
    int64_t session_start;
    int64_t last_rx;

    uint8_t *hello;
    size_t hello_len, hello_off;
    uint64_t send_seq; /* next seq to write; its frame is partly written if send_off > 0 */
    size_t send_off;
    /* The rest of a frame that became durable (and was released) while partly written: the
     * stream must stay framed, so it is finished from this copy before anything else. */
    uint8_t *tail;
    size_t tail_len, tail_off;
    uint64_t acked_seq; /* highest seq acked in this session, or released as durable */
    /* tallyd's durable seq (>= spool.durable_seq): the batches between the two are durable
     * there but not yet acked to this process, so not known to be ours (see release_confirmed) */
    uint64_t server_durable;
    uint64_t confirm_epoch; /* writer epoch the spool's confirmations came from (Welcome) */
    size_t confirm_server;  /* and the server (dial.cur) that said it */

    uint8_t *in;
    size_t in_len, in_cap;
    struct arena arena;

    uint32_t max_batch_votes, max_frame_bytes;
    struct tally_client_totals totals;
    bool server_known;
    uint64_t sessions;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies src into dst, truncating to fit. */
static void str_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void client_log(struct tally_client *c, enum tally_client_log_level level, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

static void client_log(struct tally_client *c, enum tally_client_log_level level, const char *fmt,
                       ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->log_cb)
        c->log_cb(c->log_arg, level, msg);
}

static void conn_close(struct tally_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CONN_IDLE;
    c->in_len = 0;
    c->send_off = 0;
    c->hello_off = 0;
    free(c->tail);
    c->tail = NULL;
    c->tail_len = c->tail_off = 0;
    arena_reset(&c->arena);
}

/* The one way a session or an attempt ends for a transient reason: log, close, and let the
 * reconnect policy say which server comes next, and when. move_on: the server is away or
 * stopping; false: the reason is this collector's session, the server is fine. */
static void conn_end(struct tally_client *c, bool move_on, const char *fmt, va_list ap)
{
    char why[384];
    vsnprintf(why, sizeof(why), fmt, ap);
    int64_t now = now_ms();
    bool was_up = c->state == CONN_READY;
    if (was_up && now - c->session_start >= SESSION_HEALTHY_MS)
        client_dial_progress(&c->dial);
    bool first = c->dial.failures == 0;
    conn_close(c);
    int delay = client_dial_failed(&c->dial, move_on);
    c->retry_at = now + delay;
    str_copy(c->last_error, sizeof(c->last_error), why);
    enum tally_client_log_level level =
        first || was_up ? TALLY_CLIENT_LOG_WARN : TALLY_CLIENT_LOG_DEBUG;
    const struct client_dial *d = &c->dial;
    if (d->n == 1)
        client_log(c, level, "%s; retrying in %d ms", why, delay);
    else if (delay == 0)
        client_log(c, level, "%s; trying server %zu of %zu (%s) now", why, d->cur + 1, d->n,
                   client_dial_name(d));
    else
        client_log(c, level, "%s; %s server %zu of %zu (%s) in %d ms", why,
                   move_on ? "no server answered: trying" : "retrying", d->cur + 1, d->n,
                   client_dial_name(d), delay);
}

static void conn_fail(struct tally_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_fail(struct tally_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_end(c, true, fmt, ap);
    va_end(ap);
}

/* Like conn_fail, for a reason that concerns this collector's session and not the server's
 * health: the same server is tried again after the back-off. */
static void conn_retry(struct tally_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_retry(struct tally_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_end(c, false, fmt, ap);
    va_end(ap);
}

/* A permanent failure: stop talking to the server; every later call returns code. */
static int client_fatal(struct tally_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int client_fatal(struct tally_client *c, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    conn_close(c);
    c->status = code;
    str_copy(c->last_error, sizeof(c->last_error), msg);
    client_log(c, TALLY_CLIENT_LOG_ERROR, "%s", msg);
    return code;
}

bool tally_client_id_is_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > TALLY_COLLECTOR_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

const char *tally_client_strerror(int status)
{
    switch (status) {
    case TALLY_CLIENT_OK:
        return "ok";
    case TALLY_CLIENT_ERR_FULL:
        return "spool full";
    case TALLY_CLIENT_ERR_TIMEOUT:
        return "timed out";
    case TALLY_CLIENT_ERR_INTR:
        return "interrupted";
    case TALLY_CLIENT_ERR_INVALID:
        return "invalid argument";
    case TALLY_CLIENT_ERR_IO:
        return "spool I/O error";
    case TALLY_CLIENT_ERR_CORRUPT:
        return "spool corrupt";
    case TALLY_CLIENT_ERR_REFUSED:
        return "refused by server";
    case TALLY_CLIENT_ERR_PROTOCOL:
        return "protocol error";
    case TALLY_CLIENT_ERR_FOREIGN:
        return "spool does not match server";
    case TALLY_CLIENT_ERR_SEQ_CONFLICT:
        return "another source is using this collector id";
    default:
        return "unknown status";
    }
}

struct tally_client *tally_client_new(const struct tally_client_config *cfg, char *err,
                                      size_t err_len)
{
    const char *why = NULL;
    if (!cfg)
        why = "config is required";
    else if (!tally_client_id_is_valid(cfg->collector_id))
        why = "collector id must be 1-63 characters of [A-Za-z0-9._-]";
    else if (!cfg->spool_dir || !*cfg->spool_dir)
        why = "spool dir is required";
    else if (cfg->consultation_id && strlen(cfg->consultation_id) > CONSULTATION_ID_MAX)
        why = "consultation id too long";
    else if (cfg->connect_timeout_ms < 0 || cfg->stall_timeout_ms < 0)
        why = "timeouts must not be negative";
    if (why) {
        if (err_len)
            snprintf(err, err_len, "%s", why);
        return NULL;
    }
    if (sodium_init() < 0) {
        if (err_len)
            snprintf(err, err_len, "libsodium failed to initialise");
        return NULL;
    }

    struct tally_client *c = xcalloc(1, sizeof(*c));
    c->fd = -1;
    if (client_dial_init(&c->dial, cfg, err, err_len) < 0) {
        free(c);
        return NULL;
    }
    c->consultation_id = xstrdup(cfg->consultation_id ? cfg->consultation_id : "");
    c->spool_dir = xstrdup(cfg->spool_dir);
    snprintf(c->collector_id, sizeof(c->collector_id), "%s", cfg->collector_id);
    c->max_spooled = cfg->max_spooled ? cfg->max_spooled : DEFAULT_MAX_SPOOLED;
    c->window = cfg->window ? cfg->window : DEFAULT_WINDOW;
    if (c->window > c->max_spooled)
        c->window = c->max_spooled;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->stall_timeout_ms = cfg->stall_timeout_ms ? cfg->stall_timeout_ms : DEFAULT_STALL_TIMEOUT_MS;
    c->log_cb = cfg->log_cb;
    c->log_arg = cfg->log_arg;
    arena_init(&c->arena, 4096);

    if (client_spool_open(&c->spool, cfg->spool_dir, c->collector_id) < 0) {
        if (err_len)
            snprintf(err, err_len, "spool %s: %s", cfg->spool_dir, c->spool.err);
        client_spool_close(&c->spool);
        arena_cleanup(&c->arena);
        free(c->spool_dir);
        free(c->consultation_id);
        client_dial_cleanup(&c->dial);
        free(c);
        return NULL;
    }
    c->server_durable = c->spool.durable_seq;
    if (c->spool.discarded_seq)
        client_log(c, TALLY_CLIENT_LOG_INFO,
                   "discarded batch %" PRIu64 ": a crash cut its spooling short, it was never sent",
                   c->spool.discarded_seq);
    return c;
}

void tally_client_free(struct tally_client *c)
{
    if (!c)
        return;
    conn_close(c);
    client_dial_cleanup(&c->dial);
    client_spool_close(&c->spool);
    arena_cleanup(&c->arena);
    free(c->in);
    free(c->hello);
    free(c->spool_dir);
    free(c->consultation_id);
    free(c);
}

int tally_client_spool(struct tally_client *c, const uint64_t *ballots, const uint32_t *projects,
                       size_t n, const void *cursor, size_t cursor_len, uint64_t *seq_out)
{
    if (c->status)
        return c->status;
    if (n == 0 || n > UINT32_MAX || !ballots || !projects ||
        (c->max_batch_votes && n > c->max_batch_votes) || cursor_len > TALLY_CLIENT_CURSOR_MAX ||
        (cursor_len && !cursor))
        return TALLY_CLIENT_ERR_INVALID;
    if (c->spool.count >= c->max_spooled)
        return TALLY_CLIENT_ERR_FULL;

    uint64_t seq = c->spool.next_seq;
    /* The nonce is drawn once, here: the frame is spooled with it and every resend, in this
     * process or after a restart, sends the spooled bytes, so tallyd always sees one digest
     * per seq. A batch encoded again would get another nonce and look like a conflict. */
    uint8_t nonce[BATCH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    /* protobuf-c wants mutable pointers but only reads them when packing. */
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    b.n_ballots = n;
    b.ballots = (uint64_t *)ballots;
    b.n_projects = n;
    b.projects = (uint32_t *)projects;
    b.nonce.data = nonce;
    b.nonce.len = sizeof(nonce);
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    size_t size = wire_frame_size(&f);
    if (c->max_frame_bytes && size - TALLY_FRAME_HEADER_BYTES > c->max_frame_bytes)
        return TALLY_CLIENT_ERR_INVALID;
    uint8_t *frame = xmalloc(size);
    wire_frame_encode(&f, frame);
    int rc = client_spool_append(&c->spool, frame, size, (uint32_t)n, cursor, cursor_len);
    free(frame);
    if (rc < 0)
        return client_fatal(c, rc, "spool: %s", c->spool.err);
    if (seq_out)
        *seq_out = seq;
    return 0;
}

int tally_client_last_cursor(const struct tally_client *c, void *buf, size_t len, size_t *out_len)
{
    *out_len = c->spool.cursor_len;
    if (len < c->spool.cursor_len)
        return TALLY_CLIENT_ERR_INVALID;
    if (c->spool.cursor_len)
        memcpy(buf, c->spool.cursor, c->spool.cursor_len);
    return 0;
}

bool tally_client_is_durable(const struct tally_client *c)
{
    return c->spool.count == 0;
}

void tally_client_stats(const struct tally_client *c, struct tally_client_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->batches_spooled = c->spool.next_seq - 1;
    out->votes_spooled = c->spool.durable_votes + c->spool.pending_votes;
    out->batches_pending = c->spool.count;
    out->votes_pending = c->spool.pending_votes;
    out->durable_seq = c->spool.durable_seq;
    out->connected = c->state == CONN_READY;
    out->server_index = (uint32_t)c->dial.cur;
    if (out->connected) {
        out->acked_seq = c->acked_seq;
        out->sent_seq = c->send_seq - 1;
    }
    out->reconnects = c->sessions ? c->sessions - 1 : 0;
    out->server = c->totals;
    out->server_known = c->server_known;
    out->max_batch_votes = c->max_batch_votes;
    out->max_frame_bytes = c->max_frame_bytes;
    out->status = c->status;
    str_copy(out->last_error, sizeof(out->last_error), c->last_error);
}

/* ---- connecting ---- */

static void hello_build(struct tally_client *c)
{
    Tally__Hello h = TALLY__HELLO__INIT;
    h.collector_id = c->collector_id;
    h.consultation_id = c->consultation_id;
    h.protocol_version = TALLY_PROTOCOL_VERSION;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_HELLO;
    f.hello = &h;
    free(c->hello);
    c->hello = xmalloc(wire_frame_size(&f));
    c->hello_len = wire_frame_encode(&f, c->hello);
    c->hello_off = 0;
}

static void conn_established(struct tally_client *c)
{
    int one = 1;
    /* Acks are small and latency-bound; Nagle would hold them behind batches. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* While waiting for a checkpoint nothing flows: let the kernel notice a dead peer. */
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_KEEPIDLE
    int idle = 30, intvl = 10, cnt = 3;
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
#endif
    hello_build(c);
    c->state = CONN_HELLO;
    c->deadline = now_ms() + c->connect_timeout_ms;
    c->last_rx = now_ms();
    c->in_len = 0;
}

/* Where dial.c left things: a socket connected, connecting, or nothing and a reason. */
static void conn_dialled(struct tally_client *c, enum client_dial_status st, int fd,
                         const char *why)
{
    c->fd = fd;
    switch (st) {
    case CLIENT_DIAL_CONNECTED:
        conn_established(c);
        return;
    case CLIENT_DIAL_PENDING:
        c->state = CONN_CONNECTING;
        c->deadline = now_ms() + c->connect_timeout_ms;
        return;
    case CLIENT_DIAL_FAILED:
        c->state = CONN_IDLE;
        conn_fail(c, "%s", why);
        return;
    }
}

/* Starts a connect to the current server. */
static void conn_start(struct tally_client *c)
{
    char why[320];
    int fd;
    enum client_dial_status st = client_dial_start(&c->dial, &fd, why, sizeof(why));
    conn_dialled(c, st, fd, why);
}

/* The pending connect finished (err == 0) or failed: go on, or try the next address. */
static void conn_connect_done(struct tally_client *c, int err, const char *what)
{
    char why[320];
    int fd = c->fd;
    c->fd = -1;
    c->state = CONN_IDLE;
    enum client_dial_status st = client_dial_finish(&c->dial, err, what, &fd, why, sizeof(why));
    conn_dialled(c, st, fd, why);
}

/* ---- frames from the server ---- */

/* tallyd says it holds batches up to d durably: check d against what this spool ever assigned
 * and already released, and remember it. Releasing is release_confirmed's business. */
static int durable_check(struct tally_client *c, uint64_t d, const char *where)
{
    uint64_t highest = c->spool.next_seq - 1;
    if (d > highest)
        return client_fatal(c, TALLY_CLIENT_ERR_FOREIGN,
                            "%s: server holds batches up to seq %" PRIu64 " for collector %s, "
                            "but this spool only ever assigned up to %" PRIu64 ": another "
                            "source is using collector id '%s', or this spool was wiped or "
                            "belongs to another server; refusing to number batches again",
                            where, d, c->collector_id, highest, c->collector_id);
    if (d < c->spool.durable_seq)
        return client_fatal(c, TALLY_CLIENT_ERR_FOREIGN,
                            "%s: server says durable up to seq %" PRIu64
                            " but it confirmed %" PRIu64
                            " before and those batches were deleted: the server lost durable "
                            "data or is another server",
                            where, d, c->spool.durable_seq);
    c->server_durable = d;
    return 0;
}

/* Batches up to r (< next_seq) are about to be released: this session must not send them, and
 * no ack is owed for them. Must run before the release, which frees the frames: a frame
 * already partly written has its rest copied to finish it. */
static void send_skip_released(struct tally_client *c, uint64_t r)
{
    if (r > c->acked_seq)
        c->acked_seq = r;
    if (c->send_seq > r)
        return;
    if (c->send_off > 0) {
        const struct client_spool_batch *b = client_spool_get(&c->spool, c->send_seq);
        assert(b && !c->tail);
        c->tail_len = b->frame_len - c->send_off;
        c->tail = xmalloc(c->tail_len);
        memcpy(c->tail, b->frame + c->send_off, c->tail_len);
        c->tail_off = 0;
        c->send_off = 0;
    }
    c->send_seq = r + 1;
}

/* Deletes the batches that are durable on the server AND confirmed: tallyd's durable seq only
 * says it holds some content under those seqs, the Ack{seq} of our frame that it holds ours.
 * When another source uses this collector id (its own spool, the same seqs), its batches make
 * the durable seq cover ours; ours are resent and refused with ERROR_SEQ_CONFLICT instead of
 * being deleted unsent. Durable but unconfirmed batches are never skipped: every session sends
 * all pending batches in seq order, so they go out before anything newer, and their ack (a
 * retransmit) releases them. */
static int release_confirmed(struct tally_client *c)
{
    uint64_t r = client_spool_confirmed_upto(&c->spool, c->server_durable);
    if (r <= c->spool.durable_seq)
        return 0;
    if (c->state == CONN_READY)
        send_skip_released(c, r);
    if (client_spool_release(&c->spool, r) < 0)
        return client_fatal(c, TALLY_CLIENT_ERR_IO, "spool: %s", c->spool.err);
    return 0;
}

static void totals_take(struct tally_client *c, const Tally__CollectorTotals *t)
{
    if (!t)
        return;
    c->totals.batches = t->batches;
    c->totals.votes = t->votes;
    c->totals.accepted = t->accepted;
    c->totals.duplicate = t->duplicate;
    c->totals.rejected = t->rejected;
    c->server_known = true;
}

static int on_welcome(struct tally_client *c, const Tally__Welcome *w)
{
    if (w->protocol_version && w->protocol_version != TALLY_PROTOCOL_VERSION)
        return client_fatal(c, TALLY_CLIENT_ERR_REFUSED,
                            "server at %s speaks protocol %u, this collector %u", c->dial.peer,
                            w->protocol_version, TALLY_PROTOCOL_VERSION);
    /* An Ack{seq} means "this writer holds this content under seq"; a tallyd that started
     * since (a new writer epoch) may hold another source's batch there instead, so its
     * durable seq confirms nothing acked before. 0: an older tallyd that does not say.
     * Epochs are numbered per database: the same number from another listed server is the
     * same writer only if the list names one database, which nothing here can check, so
     * acks count per server too (a failover always brings a new epoch anyway). */
    if (w->writer_epoch == 0 || w->writer_epoch != c->confirm_epoch ||
        c->dial.cur != c->confirm_server)
        client_spool_unconfirm_all(&c->spool);
    c->confirm_epoch = w->writer_epoch;
    c->confirm_server = c->dial.cur;
    /* Welcome may lower server_durable (tallyd lost what it had not checkpointed): the
     * batches above it are still pending here and simply go out again. */
    int rc = durable_check(c, w->durable_seq, "Welcome");
    if (rc == 0)
        rc = release_confirmed(c);
    if (rc < 0)
        return rc;
    c->max_batch_votes = w->max_batch_votes ? w->max_batch_votes : TALLY_DEFAULT_MAX_BATCH_VOTES;
    c->max_frame_bytes = w->max_frame_bytes ? w->max_frame_bytes : TALLY_DEFAULT_MAX_FRAME_BYTES;
    /* A batch over the server's limits would be refused on every retry: say so now. */
    for (size_t i = 0; i < c->spool.count; i++) {
        const struct client_spool_batch *b = &c->spool.batches[i];
        if (b->votes > c->max_batch_votes ||
            b->frame_len - TALLY_FRAME_HEADER_BYTES > c->max_frame_bytes)
            return client_fatal(c, TALLY_CLIENT_ERR_PROTOCOL,
                                "spooled batch %" PRIu64 " (%u votes, %u bytes) exceeds the "
                                "server's limits (%u votes, %u bytes)",
                                b->seq, b->votes, b->frame_len, c->max_batch_votes,
                                c->max_frame_bytes);
    }
    if (!w->totals) {
        /* An older server without totals: report zeros rather than wait forever. */
        static const Tally__CollectorTotals zero = TALLY__COLLECTOR_TOTALS__INIT;
        totals_take(c, &zero);
    } else {
        totals_take(c, w->totals);
    }
    c->state = CONN_READY;
    c->session_start = now_ms();
    c->send_seq = c->spool.durable_seq + 1;
    c->send_off = 0;
    c->acked_seq = c->spool.durable_seq;
    c->sessions++;
    uint64_t unconfirmed = c->server_durable - c->spool.durable_seq;
    char why[128] = "";
    if (unconfirmed)
        snprintf(why, sizeof(why),
                 " (%" PRIu64 " durable there but never acked to this process: resent to check "
                 "they are ours)",
                 unconfirmed);
    char which[64] = "";
    if (c->dial.n > 1)
        snprintf(which, sizeof(which), " (server %zu of %zu)", c->dial.cur + 1, c->dial.n);
    client_log(c, TALLY_CLIENT_LOG_INFO,
               "connected to %s%s as %s: writer epoch %" PRIu64 ", durable seq %" PRIu64
               ", %zu batches to send%s",
               c->dial.peer, which, c->collector_id, w->writer_epoch, c->server_durable,
               c->spool.count, why);
    c->last_error[0] = '\0';
    return 0;
}

static int on_ack(struct tally_client *c, const Tally__Ack *a)
{
    if (a->seq > 0) {
        if (a->seq >= c->send_seq) {
            conn_fail(c, "server %s acked seq %" PRIu64 " which was not sent yet", c->dial.peer,
                      a->seq);
            return 0;
        }
        if (a->seq > c->acked_seq)
            c->acked_seq = a->seq;
        /* Every pending seq below send_seq went out whole on this connection (released ones
         * are skipped, not sent), so tallyd acks our frame: applied now, or a retransmit of
         * content it holds already. */
        client_spool_confirm(&c->spool, a->seq);
        client_dial_progress(&c->dial); /* the session makes progress */
    }
    /* Within a session durable_seq only grows; a lower one (an ack that does not carry it)
     * is no news. Only Welcome may tell us the server went backwards. It may pass what this
     * session sent: a batch sent on an earlier connection, applied but not durable then, can
     * be checkpointed before its resend comes. The bound is what this spool ever assigned,
     * which durable_check enforces. */
    int rc = 0;
    if (a->durable_seq > c->server_durable)
        rc = durable_check(c, a->durable_seq, "Ack");
    if (rc == 0)
        rc = release_confirmed(c);
    if (rc < 0)
        return rc;
    totals_take(c, a->durable_totals);
    return 0;
}

static int on_error(struct tally_client *c, const Tally__Error *e)
{
    const char *name = wire_error_name(e->code);
    const char *msg = e->message ? e->message : "";
    switch (e->code) {
    case TALLY__ERROR_CODE__ERROR_UNKNOWN_COLLECTOR:
    case TALLY__ERROR_CODE__ERROR_BAD_VERSION:
    case TALLY__ERROR_CODE__ERROR_WRONG_CONSULTATION:
        return client_fatal(c, TALLY_CLIENT_ERR_REFUSED, "server %s refused collector %s: %s: %s",
                            c->dial.peer, c->collector_id, name, msg);
    case TALLY__ERROR_CODE__ERROR_BAD_FRAME:
    case TALLY__ERROR_CODE__ERROR_FRAME_TOO_LARGE:
    case TALLY__ERROR_CODE__ERROR_BAD_BATCH:
    case TALLY__ERROR_CODE__ERROR_NOT_HELLO:
        return client_fatal(c, TALLY_CLIENT_ERR_PROTOCOL,
                            "server %s rejected what we sent (%s: %s); resending would repeat it",
                            c->dial.peer, name, msg);
    case TALLY__ERROR_CODE__ERROR_SEQ_GAP: {
        uint64_t want = e->expected_seq;
        if (want > c->spool.next_seq)
            return client_fatal(c, TALLY_CLIENT_ERR_FOREIGN,
                                "server %s expects seq %" PRIu64 " but this spool only ever "
                                "assigned up to %" PRIu64 ": the spool was wiped or belongs to "
                                "another server",
                                c->dial.peer, want, c->spool.next_seq - 1);
        if (want && want <= c->spool.durable_seq)
            return client_fatal(c, TALLY_CLIENT_ERR_FOREIGN,
                                "server %s expects seq %" PRIu64 " but it confirmed up to %" PRIu64
                                " as durable before: the server lost durable data",
                                c->dial.peer, want, c->spool.durable_seq);
        /* We still hold batch `want`: a new session resends from the durable seq. */
        conn_retry(c, "server %s: %s (expected seq %" PRIu64 "): %s", c->dial.peer, name, want,
                   msg);
        return 0;
    }
    case TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT: {
        /* Another process, or a copy of this spool, numbers batches under our collector id.
         * Resending would be refused again and spooling on would only widen the damage: stop,
         * and leave the spool as it is for whoever sorts it out. tallyd applies batches in
         * order and acks each, so the one it refused is the first sent and not acked. */
        char which[48] = "a batch it was sent";
        if (c->state == CONN_READY && c->acked_seq + 1 < c->send_seq)
            snprintf(which, sizeof(which), "seq %" PRIu64, c->acked_seq + 1);
        return client_fatal(c, TALLY_CLIENT_ERR_SEQ_CONFLICT,
                            "another source is using collector id '%s': tallyd at %s holds other "
                            "content for %s (%s%s%s); the spool in %s is kept",
                            c->collector_id, c->dial.peer, which, name, *msg ? ": " : "", msg,
                            c->spool_dir);
    }
    case TALLY__ERROR_CODE__ERROR_REPLACED:
        /* The same collector id connected again: the server is fine, ask it again. */
        conn_retry(c, "server %s: %s: %s", c->dial.peer, name, msg);
        return 0;
    default: /* SHUTTING_DOWN, INTERNAL and codes newer than us: this server cannot serve */
        conn_fail(c, "server %s: %s: %s", c->dial.peer, name, msg);
        return 0;
    }
}

static int on_frame(struct tally_client *c, const Tally__Frame *f)
{
    if (f->msg_case == TALLY__FRAME__MSG_ERROR)
        return on_error(c, f->error);
    if (c->state == CONN_HELLO) {
        if (f->msg_case == TALLY__FRAME__MSG_WELCOME)
            return on_welcome(c, f->welcome);
    } else if (f->msg_case == TALLY__FRAME__MSG_ACK) {
        return on_ack(c, f->ack);
    }
    conn_fail(c, "server %s sent an unexpected message (%d)", c->dial.peer, (int)f->msg_case);
    return 0;
}

/* Decodes and handles every whole frame in the input buffer. */
static int conn_process(struct tally_client *c)
{
    size_t off = 0;
    while (c->state >= CONN_HELLO) {
        size_t plen;
        enum wire_status ws = wire_frame_peek(c->in + off, c->in_len - off, MAX_IN_PAYLOAD, &plen);
        if (ws == WIRE_NEED_MORE)
            break;
        Tally__Frame *f = NULL;
        if (ws == WIRE_OK)
            ws = wire_frame_decode(c->in + off + 4, plen, &c->arena, &f);
        if (ws != WIRE_OK) {
            conn_fail(c, "server %s sent a bad frame", c->dial.peer);
            return 0;
        }
        off += 4 + plen;
        int rc = on_frame(c, f);
        arena_reset(&c->arena);
        if (rc < 0)
            return rc;
    }
    if (c->state >= CONN_HELLO && off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return 0;
}

/* Reads whatever is available. Returns 1 if anything happened, 0 if not, or a fatal status. */
static int conn_read(struct tally_client *c)
{
    int progress = 0;
    while (c->state >= CONN_HELLO) {
        if (c->in_cap - c->in_len < READ_CHUNK) {
            c->in_cap = c->in_len + READ_CHUNK;
            c->in = xreallocarray(c->in, c->in_cap, 1);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        progress = 1;
        if (n <= 0) {
            conn_fail(c, "connection to %s %s", c->dial.peer,
                      n == 0 ? "closed by the server" : strerror(errno));
            break;
        }
        c->in_len += (size_t)n;
        c->last_rx = now_ms();
        int rc = conn_process(c);
        if (rc < 0)
            return rc;
    }
    return progress;
}

static bool can_send_next(const struct tally_client *c)
{
    return c->send_seq < c->spool.next_seq && c->send_seq - 1 - c->acked_seq < c->window;
}

/* Writes as much as the socket takes. Returns 1 if anything was written, 0 if not. */
static int conn_write(struct tally_client *c)
{
    int progress = 0;
    for (;;) {
        const uint8_t *p;
        size_t len;
        if (c->state == CONN_HELLO) {
            if (c->hello_off == c->hello_len)
                break;
            p = c->hello + c->hello_off;
            len = c->hello_len - c->hello_off;
        } else if (c->state == CONN_READY && c->tail) {
            p = c->tail + c->tail_off;
            len = c->tail_len - c->tail_off;
        } else if (c->state == CONN_READY) {
            if (c->send_off == 0 && !can_send_next(c))
                break;
            const struct client_spool_batch *b = client_spool_get(&c->spool, c->send_seq);
            p = b->frame + c->send_off;
            len = b->frame_len - c->send_off;
        } else {
            break;
        }
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        progress = 1;
        if (n < 0) {
            conn_fail(c, "connection to %s: %s", c->dial.peer, strerror(errno));
            break;
        }
        if (c->state == CONN_HELLO) {
            c->hello_off += (size_t)n;
        } else if (c->tail) {
            c->tail_off += (size_t)n;
            if (c->tail_off == c->tail_len) {
                free(c->tail);
                c->tail = NULL;
                c->tail_len = c->tail_off = 0;
            }
        } else {
            c->send_off += (size_t)n;
            if (c->send_off == client_spool_get(&c->spool, c->send_seq)->frame_len) {
                c->send_seq++;
                c->send_off = 0;
            }
        }
    }
    return progress;
}

static bool acks_owed(const struct tally_client *c)
{
    return c->send_off > 0 || c->tail || c->send_seq - 1 > c->acked_seq;
}

/* When the current state times out, or INT64_MAX. */
static int64_t conn_deadline(const struct tally_client *c)
{
    switch (c->state) {
    case CONN_IDLE:
        return c->retry_at;
    case CONN_CONNECTING:
    case CONN_HELLO:
        return c->deadline;
    case CONN_READY:
        return acks_owed(c) ? c->last_rx + c->stall_timeout_ms : INT64_MAX;
    }
    return INT64_MAX;
}

/* One round of everything that can be done without waiting. Returns 1 if anything happened,
 * 0 if nothing could, or a fatal status. */
static int client_step(struct tally_client *c)
{
    int64_t now = now_ms();
    if (c->state == CONN_IDLE) {
        if (now < c->retry_at)
            return 0;
        conn_start(c);
        return 1;
    }
    if (c->state == CONN_CONNECTING) {
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        if (poll(&p, 1, 0) > 0) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
            else if (err == 0 && (p.revents & (POLLERR | POLLHUP)))
                err = ECONNREFUSED;
            conn_connect_done(c, err, NULL);
            return 1;
        }
        if (now >= c->deadline) {
            conn_connect_done(c, ETIMEDOUT, "connect timed out");
            return 1;
        }
        return 0;
    }
    int progress = conn_read(c);
    if (progress < 0)
        return progress;
    if (c->state >= CONN_HELLO)
        progress |= conn_write(c);
    now = now_ms();
    if (c->state == CONN_HELLO && now >= c->deadline) {
        conn_fail(c, "no Welcome from %s within %d ms", c->dial.peer, c->connect_timeout_ms);
        progress = 1;
    } else if (c->state == CONN_READY && acks_owed(c) && now - c->last_rx >= c->stall_timeout_ms) {
        conn_fail(c, "no ack from %s for %d ms", c->dial.peer, c->stall_timeout_ms);
        progress = 1;
    }
    return progress;
}

int tally_client_pump(struct tally_client *c, int timeout_ms)
{
    if (c->status)
        return c->status;
    int64_t end = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int rc = client_step(c);
        if (rc < 0 || c->status)
            return c->status ? c->status : rc;
        if (rc > 0)
            return 0;
        int64_t now = now_ms();
        if (now >= end)
            return 0;
        int64_t wake = conn_deadline(c);
        if (wake > end)
            wake = end;
        int wait = wake > now ? (int)(wake - now) : 0;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (c->state == CONN_CONNECTING)
            p.events = POLLOUT;
        else if ((c->state == CONN_HELLO && c->hello_off < c->hello_len) ||
                 (c->state == CONN_READY && (c->tail || c->send_off > 0 || can_send_next(c))))
            p.events |= POLLOUT;
        if (poll(&p, c->fd >= 0 ? 1 : 0, wait) < 0) {
            if (errno == EINTR)
                return TALLY_CLIENT_ERR_INTR;
            return client_fatal(c, TALLY_CLIENT_ERR_IO, "poll: %s", strerror(errno));
        }
    }
}

int tally_client_wait_durable(struct tally_client *c, int timeout_ms)
{
    int64_t end = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (c->status)
            return c->status;
        if (tally_client_is_durable(c) && c->server_known)
            return 0;
        int64_t now = now_ms();
        if (now >= end)
            return TALLY_CLIENT_ERR_TIMEOUT;
        int rc = tally_client_pump(c, (int)(end - now));
        if (rc < 0)
            return rc;
    }
}
