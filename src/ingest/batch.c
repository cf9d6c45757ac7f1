/* One batch from a collector: its checks (wire_batch_check, with messages that say which and
 * the figures), its digest, applying it to the tally — ballots, ballots naming their voting
 * table, or tally sheets — and the Ack. Runs on the loop. Sessions are ingest.c's; the
 * checkpoint that makes the batch durable is checkpoint.c's. */
#include "ingest/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crashpoint.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "net/net.h"
#include "wire/digest.h"
#include "wire/wire.h"

void ingest_batch_scratch_init(struct ingest *in)
{
    in->dict = xcalloc(WIRE_MAX_BATCH_TABLES, sizeof(*in->dict));
    in->sheets_in = xcalloc(WIRE_MAX_BATCH_SHEETS, sizeof(*in->sheets_in));
    in->sheet_digests = xcalloc(WIRE_MAX_BATCH_SHEETS, sizeof(*in->sheet_digests));
    in->sheets_out = xcalloc(WIRE_MAX_BATCH_SHEETS, sizeof(*in->sheets_out));
    in->sheet_results = xcalloc(WIRE_MAX_BATCH_SHEETS, sizeof(*in->sheet_results));
    in->sheet_result_ptrs = xcalloc(WIRE_MAX_BATCH_SHEETS, sizeof(*in->sheet_result_ptrs));
}

void ingest_batch_scratch_cleanup(struct ingest *in)
{
    free(in->dict);
    free(in->sheets_in);
    free(in->sheet_digests);
    free(in->sheets_out);
    free(in->sheet_results);
    free(in->sheet_result_ptrs);
}

/* Refuses a batch that breaks a rule of the wire (ERROR_BAD_BATCH), saying which. Returns 0
 * when the batch may be applied, -1 when the session was failed. */
static int batch_refuse_bad(struct ingest *in, struct net_conn *c, const Tally__Batch *b)
{
    unsigned long long seq = (unsigned long long)b->seq;
    switch (wire_batch_check(b, in->cfg.max_batch_votes)) {
    case WIRE_BATCH_OK:
        return 0;
    case WIRE_BATCH_MISMATCH:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu has %zu ballots but %zu projects", seq, b->n_ballots,
                      b->n_projects);
        break;
    case WIRE_BATCH_TOO_MANY:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu has %zu votes; the limit is %u", seq, b->n_ballots,
                      in->cfg.max_batch_votes);
        break;
    case WIRE_BATCH_SEQ_ZERO:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0, "batch seq 0 (seqs start at 1)");
        break;
    case WIRE_BATCH_NONCE_LONG:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu has a %zu-byte nonce; the limit is %d", seq, b->nonce.len,
                      WIRE_NONCE_MAX);
        break;
    case WIRE_BATCH_TABLES_LEN:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu has %zu ballots but %zu vote tables", seq, b->n_ballots,
                      b->n_vote_tables);
        break;
    case WIRE_BATCH_TABLE_INDEX:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu: a vote names a table past the %zu the batch lists", seq,
                      b->n_tables);
        break;
    case WIRE_BATCH_TABLE_ID:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu: a table id is not [A-Za-z0-9._-]{1,63}", seq);
        break;
    case WIRE_BATCH_TOO_MANY_TABLES:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu names %zu tables; the limit is %d", seq, b->n_tables,
                      WIRE_MAX_BATCH_TABLES);
        break;
    case WIRE_BATCH_MIXED:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu has both tally sheets and votes: a batch is one or the other",
                      seq);
        break;
    case WIRE_BATCH_TOO_MANY_SHEETS:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0,
                      "batch %llu has %zu tally sheets; the limit is %d sheets and %u rows", seq,
                      b->n_sheets, WIRE_MAX_BATCH_SHEETS, in->cfg.max_batch_votes);
        break;
    default:
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_BAD_BATCH, 0, "batch %llu is malformed", seq);
        break;
    }
    return -1;
}

/* A seq applied before with other content: loud on both sides, nothing applied. */
static void batch_conflict(struct ingest *in, struct net_conn *c, uint32_t idx, uint64_t seq,
                           const uint8_t *had, const uint8_t *digest)
{
    char was[2 * WIRE_DIGEST_BYTES + 1], now[2 * WIRE_DIGEST_BYTES + 1];
    wire_digest_hex(had, was);
    wire_digest_hex(digest, now);
    in->seq_conflicts++;
    if (net_conn_log_allowed(c))
        log_conn(LOG_ERROR, net_conn_peer(c), in->names[idx],
                 "batch seq %llu was applied before with other content (digest %s, this one %s): "
                 "another source is using this collector id; nothing of it applied",
                 (unsigned long long)seq, was, now);
    net_conn_fail(c, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0,
                  "batch seq %llu was applied before with other content (digest %.16s..., "
                  "this one %.16s...): another source is using collector id '%s'",
                  (unsigned long long)seq, was, now, in->names[idx]);
}

/* Applies the sheets of b (checked by wire_batch_check). */
static enum tally_apply_status batch_apply_sheets(struct ingest *in, uint32_t idx,
                                                  const Tally__Batch *b, const uint8_t *digest,
                                                  struct tally_batch_result *res,
                                                  uint64_t *expected, const uint8_t **had)
{
    for (size_t i = 0; i < b->n_sheets; i++) {
        const Tally__Sheet *s = b->sheets[i];
        wire_sheet_digest(s, in->sheet_digests[i]);
        in->sheets_in[i] = (struct tally_sheet_in){
            .table = tally_table_find(in->tally, s->table_id),
            .version = s->version,
            .projects = s->projects,
            .votes = s->votes,
            .n_projects = s->n_projects,
            .n_votes = s->n_votes,
            .blank = s->blank,
            .null_ballots = s->null_ballots,
            .digest = in->sheet_digests[i],
        };
    }
    return tally_apply_sheets(in->tally, idx, b->seq, digest, in->sheets_in, b->n_sheets,
                              in->sheets_out, res, expected, had);
}

/* The Ack's sheet results, pointing into the scratch (valid until the next batch). */
static void batch_sheet_results(struct ingest *in, const Tally__Batch *b, Tally__Ack *ack)
{
    for (size_t i = 0; i < b->n_sheets; i++) {
        Tally__SheetResult *r = &in->sheet_results[i];
        tally__sheet_result__init(r);
        r->table_id = b->sheets[i]->table_id;
        r->version = b->sheets[i]->version;
        switch (in->sheets_out[i].status) {
        case TALLY_SHEET_ACCEPTED:
            r->status = TALLY__SHEET_STATUS__SHEET_ACCEPTED;
            break;
        case TALLY_SHEET_DUPLICATE:
            r->status = TALLY__SHEET_STATUS__SHEET_DUPLICATE;
            break;
        default:
            r->status = TALLY__SHEET_STATUS__SHEET_REJECTED;
            break;
        }
        r->reason = (Tally__RejectReason)in->sheets_out[i].reason;
        r->replaced_version = in->sheets_out[i].replaced_version;
        in->sheet_result_ptrs[i] = r;
    }
    ack->n_sheets = b->n_sheets;
    ack->sheets = in->sheet_result_ptrs;
}

int ingest_on_batch(struct ingest *in, struct net_conn *c, uint32_t idx, const Tally__Batch *b)
{
    if (batch_refuse_bad(in, c, b) < 0)
        return -1;
    if (in->closed && b->seq > tally_collector_at(in->tally, idx)->applied_seq) {
        /* A retransmission of an applied batch is still acknowledged below. */
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_CLOSED, 0,
                      "the consultation is closed: batch %llu is not taken",
                      (unsigned long long)b->seq);
        return -1;
    }
    uint8_t digest[WIRE_DIGEST_BYTES];
    wire_batch_digest_msg(b, digest);
    struct tally_batch_result res;
    memset(&res, 0, sizeof(res));
    uint64_t expected = 0;
    const uint8_t *had = NULL;
    enum tally_apply_status st;
    if (b->n_sheets) {
        st = batch_apply_sheets(in, idx, b, digest, &res, &expected, &had);
    } else {
        for (size_t k = 0; k < b->n_tables; k++)
            in->dict[k] = tally_table_find(in->tally, b->tables[k]);
        st = tally_apply_batch_tables(
            in->tally, idx, b->seq, digest, b->ballots, b->projects, b->n_ballots, in->dict,
            b->n_tables, b->n_vote_tables ? b->vote_tables : NULL, &res, &expected, &had);
    }
    if (st == TALLY_CONFLICT) {
        batch_conflict(in, c, idx, b->seq, had, digest);
        return -1;
    }
    if (st == TALLY_GAP) {
        net_conn_fail(c, TALLY__ERROR_CODE__ERROR_SEQ_GAP, expected,
                      "batch seq %llu skips ahead; expected seq %llu", (unsigned long long)b->seq,
                      (unsigned long long)expected);
        return -1;
    }
    TALLY_CRASH_POINT_IF("mid_apply", st == TALLY_APPLIED);
    const struct tally_collector *col = tally_collector_at(in->tally, idx);
    Tally__Ack ack = TALLY__ACK__INIT;
    ack.seq = b->seq;
    ack.durable_seq = col->durable_seq;
    if (st == TALLY_APPLIED && b->n_sheets) {
        batch_sheet_results(in, b, &ack);
    } else if (st == TALLY_APPLIED) {
        ack.accepted = res.accepted;
        ack.duplicate_ballots = res.duplicate;
        ack.rejected_unknown_project = res.rejected_unknown;
        ack.rejected_not_allowed = res.rejected_not_allowed;
        uint32_t rejected = 0;
        for (size_t k = 1; k < TALLY_REASONS; k++)
            rejected += res.reasons[k];
        ack.rejected = rejected;
        /* The reasons a table brings are told by number; a batch without them keeps the
         * Ack an older collector knows. */
        if (rejected != res.rejected_unknown + res.rejected_not_allowed) {
            ack.n_rejected_by_reason = TALLY_REASONS;
            ack.rejected_by_reason = res.reasons;
        }
    } else {
        ack.retransmit = true;
    }
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_ACK;
    f.ack = &ack;
    net_conn_send(c, &f);
    if (st == TALLY_APPLIED) {
        if (!in->pending_since_ms)
            in->pending_since_ms = ingest_wall_ms(in);
        ingest_backpressure_check(in);
    }
    return 0;
}
