/* libtally's public API (include/tally/client.h): the config checked and its defaults filled
 * in, batches encoded and spooled, stats, and tally_client_pump, the poll() loop that drives
 * the session. One non-blocking socket driven by poll(): the collector is a simple program and
 * needs no event library, but it must read acks while a large batch is still being written.
 * The connection is conn.c's, the protocol session.c's, which server to dial and when dial.c's,
 * the disk spool.c's, the bytes on the wire wire/'s, TLS tlsconn.c's. */
#include "tally/client.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "client/internal.h"
#include "core/xalloc.h"
#include "wire/digest.h"
#include "wire/wire.h"

#define DEFAULT_WINDOW 64u
#define DEFAULT_MAX_SPOOLED 256u
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_STALL_TIMEOUT_MS 60000
#define CONSULTATION_ID_MAX 255u
/* Batch.nonce: 128 bits make the stored digest as hard to brute-force as guessing the nonce. */
#define BATCH_NONCE_BYTES 16u

int64_t client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies src into dst, truncating to fit. */
void client_str_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void client_log(struct tally_client *c, enum tally_client_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->log_cb)
        c->log_cb(c->log_arg, level, msg);
}

/* A permanent failure: stop talking to the server; every later call returns code. */
int client_fatal(struct tally_client *c, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    client_conn_close(c);
    c->status = code;
    client_str_copy(c->last_error, sizeof(c->last_error), msg);
    client_log(c, TALLY_CLIENT_LOG_ERROR, "%s", msg);
    return code;
}

bool tally_client_id_is_valid(const char *id)
{
    return id && wire_collector_id_is_valid(id); /* the rule tallyd checks, in one place */
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
    case TALLY_CLIENT_ERR_AUTH:
        return "server refused this certificate for this collector id";
    case TALLY_CLIENT_ERR_DISABLED:
        return "collector disabled on the server";
    case TALLY_CLIENT_ERR_CLOSED:
        return "the consultation is closed";
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
    if (client_tls_new(cfg, &c->tls, err, err_len) < 0) {
        client_dial_cleanup(&c->dial);
        free(c);
        return NULL;
    }
    if (c->tls)
        c->wbuf = xmalloc(TLS_WBUF_BYTES);
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
        client_tls_free(c->tls);
        free(c->wbuf);
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
    client_conn_close(c);
    client_tls_free(c->tls);
    free(c->wbuf);
    client_dial_cleanup(&c->dial);
    client_spool_close(&c->spool);
    arena_cleanup(&c->arena);
    free(c->in);
    free(c->hello);
    free(c->spool_dir);
    free(c->consultation_id);
    free(c);
}

/* Gives b the next seq and a fresh nonce, encodes it and spools the frame with the cursor.
 * The caller has checked the content; b's arrays are only read. */
static int spool_batch(struct tally_client *c, Tally__Batch *b, const void *cursor,
                       size_t cursor_len, uint64_t *seq_out)
{
    if (cursor_len > TALLY_CLIENT_CURSOR_MAX || (cursor_len && !cursor))
        return TALLY_CLIENT_ERR_INVALID;
    if (c->spool.count >= c->max_spooled)
        return TALLY_CLIENT_ERR_FULL;
    uint64_t seq = c->spool.next_seq;
    /* The nonce is drawn once, here: the frame is spooled with it and every resend, in this
     * process or after a restart, sends the spooled bytes, so tallyd always sees one digest
     * per seq. A batch encoded again would get another nonce and look like a conflict. */
    uint8_t nonce[BATCH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    b->seq = seq;
    b->nonce.data = nonce;
    b->nonce.len = sizeof(nonce);
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = b;
    size_t size = wire_frame_size(&f);
    if (c->max_frame_bytes && size - TALLY_FRAME_HEADER_BYTES > c->max_frame_bytes)
        return TALLY_CLIENT_ERR_INVALID;
    uint8_t *frame = xmalloc(size);
    wire_frame_encode(&f, frame);
    int rc = client_spool_append(&c->spool, frame, size, cursor, cursor_len);
    free(frame);
    if (rc == TALLY_CLIENT_ERR_INVALID)
        return rc; /* nothing written: the spool would not load what was asked for */
    if (rc < 0)
        return client_fatal(c, rc, "spool: %s", c->spool.err);
    if (seq_out)
        *seq_out = seq;
    return 0;
}

int tally_client_spool(struct tally_client *c, const uint64_t *ballots, const uint32_t *projects,
                       size_t n, const void *cursor, size_t cursor_len, uint64_t *seq_out)
{
    return tally_client_spool_tables(c, ballots, projects, NULL, n, NULL, 0, cursor, cursor_len,
                                     seq_out);
}

int tally_client_spool_tables(struct tally_client *c, const uint64_t *ballots,
                              const uint32_t *projects, const uint32_t *vote_tables, size_t n,
                              const char *const *tables, size_t n_tables, const void *cursor,
                              size_t cursor_len, uint64_t *seq_out)
{
    if (c->status)
        return c->status;
    if (n == 0 || n > UINT32_MAX || !ballots || !projects ||
        (c->max_batch_votes && n > c->max_batch_votes) || n_tables > WIRE_MAX_BATCH_TABLES ||
        (n_tables && (!tables || !vote_tables)))
        return TALLY_CLIENT_ERR_INVALID;
    for (size_t i = 0; i < n_tables; i++)
        if (!tables[i] || !wire_table_id_is_valid(tables[i]))
            return TALLY_CLIENT_ERR_INVALID;
    bool named = false;
    for (size_t i = 0; vote_tables && i < n; i++) {
        if (vote_tables[i] > n_tables)
            return TALLY_CLIENT_ERR_INVALID;
        named |= vote_tables[i] != 0;
    }
    /* protobuf-c wants mutable pointers but only reads them when packing. */
    Tally__Batch b = TALLY__BATCH__INIT;
    b.n_ballots = n;
    b.ballots = (uint64_t *)ballots;
    b.n_projects = n;
    b.projects = (uint32_t *)projects;
    /* No vote naming a table: the very batch tally_client_spool sends (its v1 digest). */
    if (named) {
        b.n_tables = n_tables;
        b.tables = (char **)tables;
        b.n_vote_tables = n;
        b.vote_tables = (uint32_t *)vote_tables;
    }
    return spool_batch(c, &b, cursor, cursor_len, seq_out);
}

int tally_client_spool_sheets(struct tally_client *c, const struct tally_client_sheet *sheets,
                              size_t n, const void *cursor, size_t cursor_len, uint64_t *seq_out)
{
    if (c->status)
        return c->status;
    if (n == 0 || n > WIRE_MAX_BATCH_SHEETS || !sheets)
        return TALLY_CLIENT_ERR_INVALID;
    uint64_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tally_client_sheet *sh = &sheets[i];
        if (!sh->table_id || !wire_table_id_is_valid(sh->table_id) ||
            (sh->n && (!sh->projects || !sh->votes)))
            return TALLY_CLIENT_ERR_INVALID;
        rows += sh->n;
    }
    uint32_t limit = c->max_batch_votes ? c->max_batch_votes : TALLY_DEFAULT_MAX_BATCH_VOTES;
    if (rows > limit)
        return TALLY_CLIENT_ERR_INVALID;
    Tally__Sheet *msg = xcalloc(n, sizeof(*msg));
    Tally__Sheet **ptrs = xcalloc(n, sizeof(*ptrs));
    for (size_t i = 0; i < n; i++) {
        const struct tally_client_sheet *sh = &sheets[i];
        tally__sheet__init(&msg[i]);
        msg[i].table_id = (char *)sh->table_id;
        msg[i].version = sh->version;
        msg[i].n_projects = sh->n;
        msg[i].projects = (uint32_t *)sh->projects;
        msg[i].n_votes = sh->n;
        msg[i].votes = (uint32_t *)sh->votes;
        msg[i].blank = sh->blank;
        msg[i].null_ballots = sh->null_ballots;
        ptrs[i] = &msg[i];
    }
    Tally__Batch b = TALLY__BATCH__INIT;
    b.n_sheets = n;
    b.sheets = ptrs;
    int rc = spool_batch(c, &b, cursor, cursor_len, seq_out);
    free(ptrs);
    free(msg);
    return rc;
}

int tally_client_durable_digests(const struct tally_client *c,
                                 void (*cb)(void *arg, uint64_t seq, const uint8_t digest[32]),
                                 void *arg)
{
    if (!cb)
        return TALLY_CLIENT_ERR_INVALID;
    char err[256];
    int rc = client_spool_digests(&c->spool, cb, arg, err, sizeof(err));
    if (rc < 0 && c->log_cb)
        c->log_cb(c->log_arg, TALLY_CLIENT_LOG_WARN, err);
    return rc;
}

const char *tally_client_reason_name(unsigned k)
{
    static const char *const names[TALLY_REASON_COUNT] = {TALLY_REASON_NAMES};
    _Static_assert(TALLY_CLIENT_REASONS == TALLY_REASON_COUNT, "one list of reasons");
    return k > 0 && k < TALLY_CLIENT_REASONS ? names[k] : "unknown";
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
    client_str_copy(out->last_error, sizeof(out->last_error), c->last_error);
    out->rejected_not_allowed = c->rejected_not_allowed;
    out->rejected_acked = c->rejected_acked;
    out->tls = c->tls != NULL;
    out->sheets_accepted = c->sheets_accepted;
    out->sheets_duplicate = c->sheets_duplicate;
    out->sheets_rejected = c->sheets_rejected;
    out->sheets_replaced = c->sheets_replaced;
    memcpy(out->rejected_by_reason, c->rejected_by_reason, sizeof(out->rejected_by_reason));
    memcpy(out->sheets_rejected_by_reason, c->sheets_rejected_by_reason,
           sizeof(out->sheets_rejected_by_reason));
}

int tally_client_pump(struct tally_client *c, int timeout_ms)
{
    if (c->status)
        return c->status;
    int64_t end = client_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int rc = client_step(c);
        if (rc < 0 || c->status)
            return c->status ? c->status : rc;
        if (rc > 0)
            return 0;
        int64_t now = client_now_ms();
        if (now >= end)
            return 0;
        int64_t wake = client_conn_deadline(c);
        if (wake > end)
            wake = end;
        int wait = wake > now ? (int)(wake - now) : 0;
        /* Records OpenSSL has decrypted already are not in the socket: poll would not see
         * them. */
        if (c->state >= CONN_HELLO && client_tls_has_pending(&c->tc))
            continue;
        struct pollfd p = {.fd = c->fd, .events = c->rd_want ? c->rd_want : POLLIN};
        if (c->state == CONN_CONNECTING)
            p.events = POLLOUT;
        else if (c->state == CONN_TLS)
            p.events = c->tc.want ? c->tc.want : POLLIN;
        else if (client_conn_wants_write(c))
            p.events |= c->wr_want ? c->wr_want : POLLOUT;
        if (poll(&p, c->fd >= 0 ? 1 : 0, wait) < 0) {
            if (errno == EINTR)
                return TALLY_CLIENT_ERR_INTR;
            return client_fatal(c, TALLY_CLIENT_ERR_IO, "poll: %s", strerror(errno));
        }
    }
}

int tally_client_wait_durable(struct tally_client *c, int timeout_ms)
{
    int64_t end = client_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (c->status)
            return c->status;
        if (tally_client_is_durable(c) && c->server_known)
            return 0;
        int64_t now = client_now_ms();
        if (now >= end)
            return TALLY_CLIENT_ERR_TIMEOUT;
        int rc = tally_client_pump(c, (int)(end - now));
        if (rc < 0)
            return rc;
    }
}
