/* The collector session as the protocol sees it: the frames tallyd sends decoded and handled
 * (Welcome checked, acks taken, tallyd's durable seq checked against the spool), batches
 * released once durable and acked, and tallyd's Errors turned into a fatal status or a new
 * session. No socket here: conn.c reads the bytes and writes the spooled batches within the
 * window; a session ends through client_conn_fail, client_conn_retry or client_fatal. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client/internal.h"
#include "core/xalloc.h"
#include "wire/wire.h"

/* tallyd only sends Welcome, Ack and Error: small. Anything bigger is not tallyd. */
#define MAX_IN_PAYLOAD (1u << 20)

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
    c->totals.sheets = t->sheets;
    c->totals.sheets_accepted = t->sheets_accepted;
    c->totals.sheets_duplicate = t->sheets_duplicate;
    c->totals.sheets_rejected = t->sheets_rejected;
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
        /* A sheet batch's rows count against max_batch_votes (wire_batch_check). */
        uint32_t size = b->sheets ? b->rows : b->votes;
        if (size > c->max_batch_votes ||
            b->frame_len - TALLY_FRAME_HEADER_BYTES > c->max_frame_bytes)
            return client_fatal(c, TALLY_CLIENT_ERR_PROTOCOL,
                                "spooled batch %" PRIu64 " (%u %s, %u bytes) exceeds the "
                                "server's limits (%u votes, %u bytes)",
                                b->seq, size, b->sheets ? "sheet rows" : "votes", b->frame_len,
                                c->max_batch_votes, c->max_frame_bytes);
    }
    if (!w->totals) {
        /* An older server without totals: report zeros rather than wait forever. */
        static const Tally__CollectorTotals zero = TALLY__COLLECTOR_TOTALS__INIT;
        totals_take(c, &zero);
    } else {
        totals_take(c, w->totals);
    }
    c->state = CONN_READY;
    c->idle_timeout_ms = w->idle_timeout_ms;
    c->session_start = client_now_ms();
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

/* The figures of a batch's first ack (a retransmit repeats none): rejected votes, and each
 * sheet's outcome, counted and logged. */
static void ack_counts_take(struct tally_client *c, const Tally__Ack *a)
{
    c->rejected_acked += a->rejected;
    c->rejected_not_allowed += a->rejected_not_allowed;
    for (size_t k = 1; k < a->n_rejected_by_reason && k < TALLY_CLIENT_REASONS; k++)
        c->rejected_by_reason[k] += a->rejected_by_reason[k];
    for (size_t i = 0; i < a->n_sheets; i++) {
        const Tally__SheetResult *r = a->sheets[i];
        /* The id came from tallyd: only echo one of the form it must have. */
        const char *t = r->table_id && wire_table_id_is_valid(r->table_id) ? r->table_id : "?";
        switch (r->status) {
        case TALLY__SHEET_STATUS__SHEET_ACCEPTED:
            c->sheets_accepted++;
            if (r->replaced_version) {
                c->sheets_replaced++;
                client_log(c, TALLY_CLIENT_LOG_INFO, "sheet %s version %u replaces version %u", t,
                           r->version, r->replaced_version);
            }
            break;
        case TALLY__SHEET_STATUS__SHEET_DUPLICATE:
            c->sheets_duplicate++;
            break;
        default: {
            unsigned k = (unsigned)r->reason;
            c->sheets_rejected++;
            if (k > 0 && k < TALLY_CLIENT_REASONS) {
                c->sheets_rejected_by_reason[k]++;
                c->rejected_by_reason[k]++;
            }
            client_log(c, TALLY_CLIENT_LOG_WARN, "sheet %s version %u rejected: %s", t, r->version,
                       tally_client_reason_name(k));
            break;
        }
        }
    }
}

static int on_ack(struct tally_client *c, const Tally__Ack *a)
{
    if (a->seq > 0) {
        if (a->seq >= c->send_seq) {
            client_conn_fail(c, "server %s acked seq %" PRIu64 " which was not sent yet",
                             c->dial.peer, a->seq);
            return 0;
        }
        if (a->seq > c->acked_seq)
            c->acked_seq = a->seq;
        /* Every pending seq below send_seq went out whole on this connection (released ones
         * are skipped, not sent), so tallyd acks our frame: applied now, or a retransmit of
         * content it holds already. */
        client_spool_confirm(&c->spool, a->seq);
        client_dial_progress(&c->dial); /* the session makes progress */
        if (!a->retransmit)
            ack_counts_take(c, a);
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
        client_conn_retry(c, "server %s: %s (expected seq %" PRIu64 "): %s", c->dial.peer, name,
                          want, msg);
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
    case TALLY__ERROR_CODE__ERROR_AUTH:
        /* Every server of the list pins the same certificates (one database): asking the
         * next would only be refused again. */
        return client_fatal(c, TALLY_CLIENT_ERR_AUTH,
                            "server %s refused collector %s: %s: %s%sthe certificate presented "
                            "is not the one pinned to this id (tallyctl add-collector %s "
                            "--cert FILE)",
                            c->dial.peer, c->collector_id, name, msg, *msg ? "; " : "",
                            c->collector_id);
    case TALLY__ERROR_CODE__ERROR_COLLECTOR_DISABLED:
        return client_fatal(c, TALLY_CLIENT_ERR_DISABLED,
                            "server %s refused collector %s: %s: %s%sthe collector is disabled "
                            "there; the spool in %s is kept",
                            c->dial.peer, c->collector_id, name, msg, *msg ? "; " : "",
                            c->spool_dir);
    case TALLY__ERROR_CODE__ERROR_CLOSED:
        return client_fatal(c, TALLY_CLIENT_ERR_CLOSED,
                            "server %s: %s: %s%sthe consultation is closed: batches not yet "
                            "counted stay in the spool in %s and will not be counted",
                            c->dial.peer, name, msg, *msg ? "; " : "", c->spool_dir);
    case TALLY__ERROR_CODE__ERROR_REPLACED:
    case TALLY__ERROR_CODE__ERROR_TIMEOUT:
        /* The same collector id connected again, or this session was too slow or idle: the
         * server is fine, ask it again. */
        client_conn_retry(c, "server %s: %s: %s", c->dial.peer, name, msg);
        return 0;
    default: /* SHUTTING_DOWN, INTERNAL and codes newer than us: this server cannot serve */
        client_conn_fail(c, "server %s: %s: %s", c->dial.peer, name, msg);
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
    } else if (f->msg_case == TALLY__FRAME__MSG_PING) {
        /* The answer to our keep-alive: its bytes reset the stall timer, its nonce is not
         * checked (one Ping is outstanding at most). */
        c->ping_owed = false;
        return 0;
    }
    client_conn_fail(c, "server %s sent an unexpected message (%d)", c->dial.peer,
                     (int)f->msg_case);
    return 0;
}

/* Decodes and handles every whole frame in the input buffer. */
int client_session_process(struct tally_client *c)
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
            /* A TLS alert or handshake record (content type 21 or 22, version 3.x). */
            bool tls_reply = !c->tls && c->in_len - off >= 2 &&
                             (c->in[off] == 0x15 || c->in[off] == 0x16) && c->in[off + 1] == 3;
            client_conn_fail(c, "server %s sent a bad frame%s", c->dial.peer,
                             tls_reply ? " (it speaks TLS: give --tls-cert, --tls-key and --tls-ca)"
                                       : "");
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
