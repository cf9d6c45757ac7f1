/* The three kinds of node of the simulation: a collector modelled on libtally's session.c
 * and spool (Welcome, acks, confirmation per writer epoch, release of durable batches), a
 * tallyd over the real src/tally and src/wire driven as ingest.c, checkpoint.c and
 * startup.c drive it, and the PostgreSQL record as a committed checkpoint leaves it. The
 * choice of what happens next is sim_world.c's; the verdicts are sim_check.c's. */
#include "sim.h"

#include <stdio.h>
#include <string.h>

#include "tally.pb-c.h"
#include "wire/digest.h"

/* ---- network -------------------------------------------------------------------------- */

void sim_send(struct sim *s, int conn, bool to_server, const struct sim_msg *m)
{
    struct sim_conn *k = &s->conns[conn];
    struct sim_queue *q = to_server ? &k->c2s : &k->s2c;
    if (to_server ? !k->client_open || k->c2s_dead : !k->server_open || k->s2c_dead)
        return; /* a closed socket writes nothing; a dead path carries nothing */
    if (q->n == SIM_QUEUE) {
        /* tallyd drops a peer whose output buffer is over its limit (max_output_bytes);
         * the collector side of the model never fills a queue (window). */
        SIM_EV(s, "conn %u: queue full, tallyd drops it", k->id);
        sim_server_close(s, conn);
        return;
    }
    q->m[q->n++] = *m;
}

static void send_error(struct sim *s, int conn, uint8_t code, uint64_t expected)
{
    struct sim_msg m = {.kind = M_ERROR, .code = code, .expected = expected};
    sim_send(s, conn, false, &m);
    sim_server_close(s, conn); /* net_conn_fail: the Error goes out, then the close */
}

/* ---- collector (libtally) ------------------------------------------------------------- */

static struct sim_batch *batch_of(struct sim *s, int c, uint64_t seq)
{
    return &s->coll[c].gen[seq - 1];
}

void sim_collector_connect(struct sim *s, int c)
{
    struct sim_collector *col = &s->coll[c];
    if (!s->srv.up) {
        SIM_EV(s, "%s: connect refused (tallyd down)", col->name);
        return;
    }
    int slot = -1;
    for (int i = 0; i < SIM_MAX_CONNS && slot < 0; i++)
        if (!s->conns[i].used)
            slot = i;
    if (slot < 0)
        return; /* out of sockets: the next attempt may succeed */
    struct sim_conn *k = &s->conns[slot];
    memset(k, 0, sizeof(*k));
    k->used = k->client_open = k->server_open = true;
    k->coll = c;
    k->server_coll = -1;
    k->id = ++s->next_conn_id;
    col->conn = slot;
    col->state = CS_HELLO;
    s->st.reconnects++;
    SIM_EV(s, "%s: connect conn %u, Hello", col->name, k->id);
    struct sim_msg m = {.kind = M_HELLO};
    sim_send(s, slot, true, &m);
}

void sim_collector_close(struct sim *s, int c, const char *why)
{
    struct sim_collector *col = &s->coll[c];
    if (col->conn >= 0) {
        struct sim_conn *k = &s->conns[col->conn];
        k->client_open = false;
        k->s2c.n = 0; /* unread input is gone; what was written still reaches tallyd */
        SIM_EV(s, "%s: close conn %u (%s)", col->name, k->id, why);
    }
    col->conn = -1;
    if (col->state > CS_DOWN)
        col->state = CS_IDLE;
}

void sim_collector_crash(struct sim *s, int c)
{
    struct sim_collector *col = &s->coll[c];
    sim_collector_close(s, c, "crash");
    /* The spool (next_seq, durable_seq, the batch files) is on disk; the rest is not. */
    memset(col->confirmed, 0, sizeof(col->confirmed));
    col->confirm_epoch = 0;
    col->server_durable = col->durable_seq;
    col->state = CS_DOWN;
    s->st.collector_crashes++;
}

void sim_collector_restart(struct sim *s, int c)
{
    s->coll[c].state = CS_IDLE;
    SIM_EV(s, "%s: restart, spool durable %llu next %llu", s->coll[c].name,
           (unsigned long long)s->coll[c].durable_seq, (unsigned long long)s->coll[c].next_seq);
}

static bool can_send_next(const struct sim_collector *col)
{
    return col->state == CS_READY && col->send_seq < col->next_seq &&
           col->send_seq - 1 - col->acked_seq < col->window;
}

void sim_collector_send(struct sim *s, int c)
{
    struct sim_collector *col = &s->coll[c];
    if (!can_send_next(col))
        return;
    struct sim_msg m = {.kind = M_BATCH, .seq = col->send_seq};
    SIM_EV(s, "%s: send batch %llu on conn %u", col->name, (unsigned long long)m.seq,
           s->conns[col->conn].id);
    sim_send(s, col->conn, true, &m);
    col->send_seq++;
}

bool sim_collector_owes(const struct sim *s, int c)
{
    const struct sim_collector *col = &s->coll[c];
    return col->state == CS_READY && col->send_seq - 1 > col->acked_seq;
}

/* client_fatal: with another process on this id it is what libtally must do; without, tallyd
 * or the model is wrong. */
static void collector_fatal(struct sim *s, int c, const char *why)
{
    struct sim_collector *col = &s->coll[c];
    int o = sim_owner(s, c);
    if (col->twin_of < 0 && !sim_has_twin(s, o)) {
        sim_fail(s, "%s: %s", col->name, why);
        return;
    }
    SIM_EV(s, "%s: fatal: %s; spool kept", col->name, why);
    sim_collector_close(s, c, "fatal");
    col->state = CS_FATAL;
    s->st.fatals++;
}

/* session.c durable_check: tallyd's durable seq against what this spool assigned/released. */
static int durable_check(struct sim *s, int c, uint64_t d, const char *where)
{
    struct sim_collector *col = &s->coll[c];
    if (d > col->next_seq - 1) {
        char why[128];
        snprintf(why, sizeof(why), "%s durable_seq %llu but the spool only assigned up to %llu",
                 where, (unsigned long long)d, (unsigned long long)(col->next_seq - 1));
        collector_fatal(s, c, why);
        return -1;
    }
    if (d < col->durable_seq) {
        sim_fail(s,
                 "%s: %s durable_seq %llu below %llu it confirmed and deleted: tallyd lost "
                 "durable data",
                 col->name, where, (unsigned long long)d, (unsigned long long)col->durable_seq);
        return -1;
    }
    col->server_durable = d;
    return 0;
}

/* client_spool_release: the collector deletes batches up to r for good. Each must be in the
 * record, with this very content. */
static void spool_release(struct sim *s, int c, uint64_t r)
{
    struct sim_collector *col = &s->coll[c];
    for (uint64_t q = col->durable_seq + 1; q <= r; q++) {
        const struct sim_stored_batch *b = &s->store.batches[sim_owner(s, c)][q];
        if (!s->lean &&
            (!b->have || memcmp(b->digest, batch_of(s, c, q)->digest, TALLY_DIGEST_BYTES) != 0)) {
            sim_fail(s, "%s deletes batch %llu from its spool but the record %s", col->name,
                     (unsigned long long)q, b->have ? "holds other content" : "does not hold it");
            return;
        }
    }
    SIM_EV(s, "%s: release up to %llu", col->name, (unsigned long long)r);
    col->durable_seq = r;
}

static void release_confirmed(struct sim *s, int c)
{
    struct sim_collector *col = &s->coll[c];
    uint64_t r = col->durable_seq;
    while (r < col->server_durable && r + 1 < col->next_seq &&
           (col->confirmed[r + 1] || s->bug == SIM_BUG_RELEASE_UNCONFIRMED))
        r++;
    if (r <= col->durable_seq)
        return;
    if (col->state == CS_READY) { /* send_skip_released */
        if (r > col->acked_seq)
            col->acked_seq = r;
        if (col->send_seq <= r)
            col->send_seq = r + 1;
    }
    spool_release(s, c, r);
}

static void on_welcome(struct sim *s, int c, const struct sim_msg *m)
{
    struct sim_collector *col = &s->coll[c];
    if (m->epoch == 0 || m->epoch != col->confirm_epoch)
        memset(col->confirmed, 0, sizeof(col->confirmed));
    col->confirm_epoch = m->epoch;
    if (durable_check(s, c, m->durable_seq, "Welcome") < 0)
        return;
    release_confirmed(s, c);
    col->state = CS_READY;
    col->send_seq = col->durable_seq + 1;
    col->acked_seq = col->durable_seq;
}

static void on_ack(struct sim *s, int c, const struct sim_msg *m)
{
    struct sim_collector *col = &s->coll[c];
    if (m->seq > 0) {
        if (m->seq >= col->send_seq) {
            sim_fail(s, "%s: tallyd acked seq %llu, which was not sent on this connection",
                     col->name, (unsigned long long)m->seq);
            return;
        }
        if (m->seq > col->acked_seq)
            col->acked_seq = m->seq;
        if (m->seq > col->durable_seq && m->seq < col->next_seq)
            col->confirmed[m->seq] = true;
        if (s->bug == SIM_BUG_RELEASE_ON_APPLY && m->seq > col->server_durable)
            col->server_durable = m->seq; /* planted: a provisional ack taken for durable */
    }
    if (m->durable_seq > col->server_durable && durable_check(s, c, m->durable_seq, "Ack") < 0)
        return;
    release_confirmed(s, c);
}

static void on_error(struct sim *s, int c, const struct sim_msg *m)
{
    struct sim_collector *col = &s->coll[c];
    switch (m->code) {
    case TALLY__ERROR_CODE__ERROR_SEQ_GAP:
        if (m->expected > col->next_seq) {
            collector_fatal(s, c, "tallyd expects a seq this spool never assigned");
            return;
        }
        if (m->expected && m->expected <= col->durable_seq) {
            sim_fail(s, "%s: tallyd expects seq %llu; spool next %llu, released up to %llu",
                     col->name, (unsigned long long)m->expected, (unsigned long long)col->next_seq,
                     (unsigned long long)col->durable_seq);
            return;
        }
        sim_collector_close(s, c, "seq gap");
        return;
    case TALLY__ERROR_CODE__ERROR_REPLACED:
        sim_collector_close(s, c, "replaced");
        return;
    case TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT:
        collector_fatal(s, c, "seq conflict: another source uses this collector id");
        return;
    default:
        /* SEQ_CONFLICT, NOT_HELLO and the like are fatal for libtally; with one source
         * per collector id none may happen. */
        sim_fail(s, "%s: tallyd sent error %u", col->name, m->code);
        return;
    }
}

void sim_collector_receive(struct sim *s, int conn, const struct sim_msg *m)
{
    int c = s->conns[conn].coll;
    struct sim_collector *col = &s->coll[c];
    if (col->conn != conn)
        return; /* not this process's socket any more */
    SIM_EV(s, "%s: got %s seq %llu durable %llu%s on conn %u", col->name,
           m->kind == M_WELCOME ? "Welcome"
           : m->kind == M_ACK   ? "Ack"
                                : "Error",
           (unsigned long long)m->seq, (unsigned long long)m->durable_seq,
           m->retransmit ? " (retransmit)" : "", s->conns[conn].id);
    if (m->kind == M_ERROR)
        on_error(s, c, m);
    else if (col->state == CS_HELLO && m->kind == M_WELCOME)
        on_welcome(s, c, m);
    else if (col->state == CS_READY && m->kind == M_ACK)
        on_ack(s, c, m);
    else
        sim_collector_close(s, c, "unexpected message");
}

/* ---- the record (PostgreSQL) ---------------------------------------------------------- */

/* store_checkpoint_write: one transaction; fencing on prev_seq, batches keyed by
 * (collector, seq), token pages, count deltas. */
static void store_commit(struct sim *s, const struct sim_job *j)
{
    struct sim_store *st = &s->store;
    uint64_t upto[SIM_MAX_COLL];
    memcpy(upto, st->durable_seq, sizeof(upto));
    for (size_t i = 0; i < j->n_marks; i++) {
        int c = s->srv.sim_of[j->marks[i].collector];
        if (j->marks[i].durable_seq <= j->marks[i].prev_seq) {
            sim_fail(s, "record: %s watermark from %llu to %llu", s->coll[c].id,
                     (unsigned long long)j->marks[i].prev_seq,
                     (unsigned long long)j->marks[i].durable_seq);
            return;
        }
        if (j->marks[i].prev_seq != st->durable_seq[c]) {
            sim_fail(s, "fencing: %s moves from %llu but the record has %llu", s->coll[c].id,
                     (unsigned long long)j->marks[i].prev_seq,
                     (unsigned long long)st->durable_seq[c]);
            return;
        }
    }
    for (size_t i = 0; i < j->n_batches; i++) {
        const struct tally_delta_batch *b = &j->batches[i];
        int c = s->srv.sim_of[b->collector];
        if (b->seq < 1 || b->seq > SIM_MAX_BATCHES || st->batches[c][b->seq].have) {
            sim_fail(s, "record: batch %s/%llu stored twice (primary key)", s->coll[c].id,
                     (unsigned long long)b->seq);
            return;
        }
        if (b->seq != upto[c] + 1) {
            sim_fail(s, "record: batch %s/%llu after %llu", s->coll[c].id,
                     (unsigned long long)b->seq, (unsigned long long)upto[c]);
            return;
        }
        if (!sim_content(s, c, b->seq, b->digest)) {
            sim_fail(s, "record: batch %s/%llu with a digest the collector never sent",
                     s->coll[c].id, (unsigned long long)b->seq);
            return;
        }
        upto[c] = b->seq;
        struct sim_stored_batch *sb = &st->batches[c][b->seq];
        sb->have = true;
        memcpy(sb->digest, b->digest, TALLY_DIGEST_BYTES);
        sb->votes = b->votes;
        sb->accepted = b->accepted;
        sb->duplicate = b->duplicate;
        sb->rejected_unknown = b->rejected_unknown;
        sb->not_allowed = b->rejected_not_allowed;
        st->totals[c].not_allowed += b->rejected_not_allowed;
        st->hist[st->n_hist++] = (uint16_t)(c << 8 | b->seq);
    }
    for (size_t i = 0; i < j->n_marks; i++) {
        const struct tally_delta_mark *m = &j->marks[i];
        int c = s->srv.sim_of[m->collector];
        if (m->durable_seq != upto[c]) {
            sim_fail(s, "record: %s watermark %llu but its batches end at %llu", s->coll[c].id,
                     (unsigned long long)m->durable_seq, (unsigned long long)upto[c]);
            return;
        }
        st->durable_seq[c] = m->durable_seq;
        st->totals[c].batches += m->add.batches;
        st->totals[c].votes += m->add.votes;
        st->totals[c].accepted += m->add.accepted;
        st->totals[c].duplicate += m->add.duplicate;
        st->totals[c].rejected += m->add.rejected;
    }
    for (int c = 0; c < s->cfg.n_coll; c++)
        if (upto[c] != st->durable_seq[c]) {
            sim_fail(s, "record: batches of %s without a watermark", s->coll[c].id);
            return;
        }
    /* PostgreSQL would take a token twice (pages are not unique by token; recovery only
     * warns), so this one is the checker's, not the record's. */
    for (size_t i = 0; i < j->n_tokens; i++) {
        for (size_t k = 0; k < st->n_tokens && !s->lean; k++)
            if (st->tokens[k] == j->tokens[i]) {
                sim_fail(s, "record: token %016llx in two token pages: counted twice",
                         (unsigned long long)j->tokens[i]);
                return;
            }
        st->tokens[st->n_tokens++] = j->tokens[i];
    }
    for (size_t i = 0; i < j->n_touched; i++) {
        int p = sim_project_slot(s, j->ids[i]);
        if (p < 0) {
            sim_fail(s, "record: delta for project %u, which the registry lacks", j->ids[i]);
            return;
        }
        st->proj_votes[p] += (uint64_t)j->deltas[i];
    }
    st->n_checkpoints++;
    SIM_EV(s, "record: checkpoint %llu committed (%zu batches, %zu tokens)",
           (unsigned long long)st->n_checkpoints, j->n_batches, j->n_tokens);
}

/* ---- tallyd ---------------------------------------------------------------------------- */

static void shuffle_u64(struct sim *s, uint64_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t k = (size_t)sim_below(s, i);
        uint64_t x = v[i - 1];
        v[i - 1] = v[k];
        v[k] = x;
    }
}

/* startup.c rebuild_begin / rebuild_tokens / rebuild_digest, then start_cb's restrictions:
 * a new process with a key of its own, everything from the record. */
void sim_server_start(struct sim *s)
{
    struct sim_server *sv = &s->srv;
    struct sim_store *st = &s->store;
    sv->epoch = ++st->epoch; /* store_writer_take_over */
    struct tally_project p[SIM_MAX_PROJECTS];
    uint64_t order[SIM_MAX_PROJECTS];
    for (int i = 0; i < s->cfg.n_projects; i++)
        order[i] = (uint64_t)i;
    shuffle_u64(s, order, (size_t)s->cfg.n_projects); /* "order free" */
    for (int i = 0; i < s->cfg.n_projects; i++) {
        p[i].id = s->cfg.project_ids[order[i]];
        p[i].circuit_id = 10 + s->cfg.circuit_of[order[i]];
    }
    uint64_t accepted = 0;
    for (int c = 0; c < s->cfg.n_coll; c++)
        accepted += st->totals[c].accepted; /* zero for a twin's slot */
    size_t expected = (size_t)(accepted > s->cfg.expected_ballots ? accepted + accepted / 4
                                                                  : s->cfg.expected_ballots);
    uint8_t key[TALLY_HASH_KEY_BYTES];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)sim_rand(&s->rng);
    sv->t = tally_new(p, (size_t)s->cfg.n_projects, expected, key);
    if (!sv->t) {
        sim_fail(s, "tally_new refused the registry");
        return;
    }
    for (int i = 0; i < s->cfg.n_projects; i++)
        tally_restore_votes(sv->t, s->cfg.project_ids[i], st->proj_votes[i]);
    /* Collectors come ORDER BY id: their tally indices differ from the sim's. */
    int by_id[SIM_MAX_COLL];
    int n_ids = 0;
    for (int c = 0; c < s->cfg.n_coll; c++) {
        if (s->coll[c].twin_of >= 0)
            continue;
        int k = n_ids++;
        while (k > 0 && strcmp(s->coll[by_id[k - 1]].id, s->coll[c].id) > 0) {
            by_id[k] = by_id[k - 1];
            k--;
        }
        by_id[k] = c;
    }
    for (int i = 0; i < n_ids; i++) {
        int c = by_id[i];
        const struct sim_totals *x = &st->totals[c];
        struct tally_totals tt = {.batches = x->batches,
                                  .votes = x->votes,
                                  .accepted = x->accepted,
                                  .duplicate = x->duplicate,
                                  .rejected = x->rejected,
                                  .rejected_not_allowed = x->not_allowed};
        uint64_t d = s->bug == SIM_BUG_FORGET_WATERMARK ? 0 : st->durable_seq[c];
        sv->tidx[c] = (int32_t)tally_collector_add(sv->t, s->coll[c].id, d, &tt);
        sv->sim_of[sv->tidx[c]] = c;
    }
    if (s->bug != SIM_BUG_SKIP_TOKENS && st->n_tokens) {
        /* Token pages come in whatever order the store reads them, in chunks. */
        uint64_t tok[SIM_MAX_TOKENS];
        memcpy(tok, st->tokens, st->n_tokens * sizeof(*tok));
        shuffle_u64(s, tok, st->n_tokens);
        size_t dup = 0;
        for (size_t i = 0; i < st->n_tokens;) {
            size_t n = 1 + (size_t)sim_below(s, st->n_tokens - i < 40 ? st->n_tokens - i : 40);
            if (n == 1)
                dup += !tally_restore_token(sv->t, tok[i]);
            else
                dup += tally_restore_tokens(sv->t, tok + i, n);
            i += n;
        }
        if (dup && !s->lean) /* tallyd only warns */
            sim_fail(s, "recovery: %zu stored tokens were already in the ballot set", dup);
    }
    for (int i = 0; i < n_ids && s->bug != SIM_BUG_FORGET_WATERMARK; i++) {
        int c = by_id[i];
        for (uint64_t q = 1; q <= st->durable_seq[c]; q++)
            if (!tally_restore_digest(sv->t, (uint32_t)sv->tidx[c], q, st->batches[c][q].digest))
                sim_fail(s, "recovery: digest %s/%llu refused", s->coll[c].id,
                         (unsigned long long)q);
    }
    for (int c = 0; c < s->cfg.n_coll; c++) {
        if (!s->coll[c].restricted || s->coll[c].twin_of >= 0)
            continue;
        uint32_t ids[3];
        size_t n = 0;
        for (uint32_t k = 0; k < 3; k++)
            if (s->coll[c].circuits_mask >> k & 1)
                ids[n++] = 10 + k;
        if (tally_collector_restrict(sv->t, (uint32_t)sv->tidx[c], ids, n) != 0)
            sim_fail(s, "tally_collector_restrict failed");
    }
    for (int c = 0; c < SIM_MAX_COLL; c++) {
        sv->conn_of[c] = -1;
        sv->last_durable_sent[c] = 0;
    }
    memset(sv->applied, 0, sizeof(sv->applied));
    sv->inflight = false;
    sv->up = true;
    SIM_EV(s, "tallyd: started, writer epoch %llu, %zu tokens recovered",
           (unsigned long long)sv->epoch, st->n_tokens);
    sim_check_server(s);
}

void sim_server_crash(struct sim *s)
{
    struct sim_server *sv = &s->srv;
    if (sv->inflight) {
        /* Killed between seal and COMMIT's answer: PostgreSQL may have committed. */
        if (sim_chance(s, 500)) {
            SIM_EV(s, "tallyd: killed after COMMIT, before acking it");
            store_commit(s, &sv->job);
            s->st.late_commits++;
        } else {
            SIM_EV(s, "tallyd: killed before COMMIT");
            s->st.lost_seals++;
        }
    } else {
        SIM_EV(s, "tallyd: killed");
    }
    tally_free(sv->t);
    sv->t = NULL;
    sv->up = false;
    sv->inflight = false;
    for (int i = 0; i < SIM_MAX_CONNS; i++) {
        struct sim_conn *k = &s->conns[i];
        if (!k->used)
            continue;
        k->server_open = false;
        k->c2s.n = 0;
        /* What was in the socket buffer still arrives; libevent's buffer dies. */
        k->s2c.n = (int)sim_below(s, (uint64_t)k->s2c.n + 1);
    }
    s->st.server_crashes++;
}

/* ingest_shutdown: no more reading, the final checkpoint (group commits until nothing is
 * pending, durable acks sent), then every connection closed after its output left. */
void sim_server_stop(struct sim *s)
{
    struct sim_server *sv = &s->srv;
    SIM_EV(s, "tallyd: stopping");
    for (int i = 0; i < SIM_MAX_CONNS; i++)
        s->conns[i].c2s.n = 0; /* paused: what was not read stays unread */
    while (!s->violation[0] && (sv->inflight || tally_has_pending(sv->t))) {
        sim_server_seal(s);
        sim_server_commit(s);
    }
    for (int i = 0; i < SIM_MAX_CONNS; i++)
        if (s->conns[i].used)
            sim_server_close(s, i);
    tally_free(sv->t);
    sv->t = NULL;
    sv->up = false;
    s->st.stops++;
}

/* on_close: the connection is gone for tallyd. */
void sim_server_close(struct sim *s, int conn)
{
    struct sim_conn *k = &s->conns[conn];
    if (!k->server_open)
        return;
    k->server_open = false;
    k->c2s.n = 0;
    if (k->server_coll >= 0 && s->srv.conn_of[k->server_coll] == conn)
        s->srv.conn_of[k->server_coll] = -1;
}

static void send_ack(struct sim *s, int conn, int c, struct sim_msg *m)
{
    const struct tally_collector *col = tally_collector_at(s->srv.t, (uint32_t)s->srv.tidx[c]);
    m->kind = M_ACK;
    m->durable_seq = col->durable_seq;
    if (!s->lean && m->durable_seq > s->store.durable_seq[c])
        sim_fail(s, "tallyd tells %s durable_seq %llu; the record holds %llu", s->coll[c].id,
                 (unsigned long long)m->durable_seq, (unsigned long long)s->store.durable_seq[c]);
    if (m->durable_seq < s->srv.last_durable_sent[c])
        sim_fail(s, "tallyd's durable_seq for %s went back from %llu to %llu", s->coll[c].id,
                 (unsigned long long)s->srv.last_durable_sent[c],
                 (unsigned long long)m->durable_seq);
    s->srv.last_durable_sent[c] = m->durable_seq;
    sim_send(s, conn, false, m);
}

static void on_hello(struct sim *s, int conn, int c)
{
    struct sim_server *sv = &s->srv;
    int old = sv->conn_of[c];
    if (old >= 0 && old != conn) /* the newest connection wins */
        send_error(s, old, TALLY__ERROR_CODE__ERROR_REPLACED, 0);
    sv->conn_of[c] = conn;
    s->conns[conn].server_coll = c;
    const struct tally_collector *col = tally_collector_at(sv->t, (uint32_t)sv->tidx[c]);
    struct sim_msg w = {.kind = M_WELCOME, .durable_seq = col->durable_seq, .epoch = sv->epoch};
    if (!s->lean && w.durable_seq > s->store.durable_seq[c])
        sim_fail(s, "Welcome tells %s durable_seq %llu; the record holds %llu", s->coll[c].id,
                 (unsigned long long)w.durable_seq, (unsigned long long)s->store.durable_seq[c]);
    SIM_EV(s, "tallyd: Hello from %s on conn %u, Welcome durable %llu", s->coll[c].id,
           s->conns[conn].id, (unsigned long long)w.durable_seq);
    sim_send(s, conn, false, &w);
}

/* Batch seq for collector id c, with the content of process `from`'s spool. */
static void on_batch(struct sim *s, int conn, int c, int from, uint64_t seq)
{
    struct sim_server *sv = &s->srv;
    const struct sim_batch *b = batch_of(s, from, seq);
    uint8_t digest[WIRE_DIGEST_BYTES];
    wire_batch_digest(seq, b->nonce, SIM_NONCE, b->ballots, b->projects, b->n, digest);
    struct tally_batch_result res = {0};
    uint64_t expected = 0;
    const uint8_t *had = NULL;
    uint32_t ti = (uint32_t)sv->tidx[c];
    uint64_t applied_before = tally_collector_at(sv->t, ti)->applied_seq;
    enum tally_apply_status rc = tally_apply_batch(sv->t, ti, seq, digest, b->ballots, b->projects,
                                                   b->n, &res, &expected, &had);
    SIM_EV(s, "tallyd: batch %s/%llu on conn %u: %s", s->coll[c].id, (unsigned long long)seq,
           s->conns[conn].id,
           rc == TALLY_APPLIED      ? "applied"
           : rc == TALLY_RETRANSMIT ? "retransmit"
           : rc == TALLY_GAP        ? "gap"
                                    : "conflict");
    /* What this id's seq holds already, in this process or in the record. */
    const uint8_t *held = sv->applied[c][seq]             ? sv->applied_digest[c][seq]
                          : s->store.batches[c][seq].have ? s->store.batches[c][seq].digest
                                                          : NULL;
    struct sim_msg ack = {.seq = seq};
    switch (rc) {
    case TALLY_APPLIED:
        if (!s->lean && held) {
            sim_fail(s, "batch %s/%llu applied twice (%s)", s->coll[c].id, (unsigned long long)seq,
                     sv->applied[c][seq] ? "in this process" : "it is in the record");
            return;
        }
        if (res.accepted + res.duplicate + res.rejected_unknown + res.rejected_not_allowed !=
            b->n) {
            sim_fail(s, "batch %s/%llu: %u votes but results add up to %u", s->coll[c].id,
                     (unsigned long long)seq, b->n,
                     res.accepted + res.duplicate + res.rejected_unknown +
                         res.rejected_not_allowed);
            return;
        }
        sv->applied[c][seq] = true;
        memcpy(sv->applied_digest[c][seq], digest, sizeof(digest));
        s->st.applied++;
        send_ack(s, conn, c, &ack);
        return;
    case TALLY_RETRANSMIT:
        if (!held || memcmp(held, digest, sizeof(digest)) != 0) {
            sim_fail(s, "batch %s/%llu taken for a retransmission of %s", s->coll[c].id,
                     (unsigned long long)seq, held ? "other content" : "nothing");
            return;
        }
        s->st.retransmits++;
        ack.retransmit = true;
        send_ack(s, conn, c, &ack);
        return;
    case TALLY_GAP:
        if (expected != applied_before + 1)
            sim_fail(s, "gap: expected %llu, applied %llu", (unsigned long long)expected,
                     (unsigned long long)applied_before);
        s->st.gaps++;
        send_error(s, conn, TALLY__ERROR_CODE__ERROR_SEQ_GAP, expected);
        return;
    case TALLY_CONFLICT:
        if (!held || memcmp(held, digest, sizeof(digest)) == 0 ||
            memcmp(had, held, sizeof(digest)) != 0)
            sim_fail(s, "batch %s/%llu: a seq conflict over %s", s->coll[c].id,
                     (unsigned long long)seq, held ? "the same content" : "nothing held");
        s->st.conflicts++;
        send_error(s, conn, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT, 0);
        return;
    }
}

void sim_server_receive(struct sim *s, int conn, const struct sim_msg *m)
{
    struct sim_conn *k = &s->conns[conn];
    if (k->server_coll < 0) {
        if (m->kind != M_HELLO) {
            send_error(s, conn, TALLY__ERROR_CODE__ERROR_NOT_HELLO, 0);
            return;
        }
        on_hello(s, conn, sim_owner(s, k->coll));
        return;
    }
    if (m->kind != M_BATCH) {
        send_error(s, conn, TALLY__ERROR_CODE__ERROR_BAD_FRAME, 0);
        return;
    }
    on_batch(s, conn, k->server_coll, k->coll, m->seq);
}

/* checkpoint.c send_durable_acks: Ack{seq 0} to each collector whose watermark moved. */
static void send_durable_acks(struct sim *s, const struct sim_job *j, bool from_mark)
{
    for (size_t i = 0; i < j->n_marks; i++) {
        int c = s->srv.sim_of[j->marks[i].collector];
        int conn = s->srv.conn_of[c];
        if (conn < 0)
            continue;
        struct sim_msg m = {.seq = 0};
        if (from_mark) { /* planted bug: what is sealed, not what is committed */
            m.kind = M_ACK;
            m.durable_seq = j->marks[i].durable_seq;
            if (!s->lean && m.durable_seq > s->store.durable_seq[c])
                sim_fail(s, "tallyd tells %s durable_seq %llu; the record holds %llu",
                         s->coll[c].id, (unsigned long long)m.durable_seq,
                         (unsigned long long)s->store.durable_seq[c]);
            sim_send(s, conn, false, &m);
            continue;
        }
        send_ack(s, conn, c, &m);
    }
}

/* memcpy and memcmp for buffers a delta leaves NULL while they are empty. */
static void copy(void *dst, const void *src, size_t n)
{
    if (n)
        memcpy(dst, src, n);
}

static bool differ(const void *a, const void *b, size_t n)
{
    return n && memcmp(a, b, n) != 0;
}

void sim_server_seal(struct sim *s)
{
    struct sim_server *sv = &s->srv;
    if (!sv->up || sv->inflight)
        return;
    struct tally_delta *d = tally_checkpoint_seal(sv->t);
    if (!d)
        return;
    struct sim_job *j = &sv->job;
    j->n_batches = d->n_batches;
    j->n_marks = d->n_marks;
    j->n_tokens = d->n_tokens;
    j->n_touched = d->n_touched;
    copy(j->batches, d->batches, d->n_batches * sizeof(*d->batches));
    copy(j->marks, d->marks, d->n_marks * sizeof(*d->marks));
    copy(j->tokens, d->tokens, d->n_tokens * sizeof(*d->tokens));
    copy(j->ids, d->out_ids, d->n_touched * sizeof(*d->out_ids));
    copy(j->deltas, d->out_deltas, d->n_touched * sizeof(*d->out_deltas));
    sv->inflight = true;
    SIM_EV(s, "tallyd: seal (%zu batches, %zu marks)", j->n_batches, j->n_marks);
    if (s->bug == SIM_BUG_ACK_AT_SEAL)
        send_durable_acks(s, j, true);
}

/* The store thread's answer came (ingest_done_cb): COMMIT happened. */
void sim_server_commit(struct sim *s)
{
    struct sim_server *sv = &s->srv;
    if (!sv->up || !sv->inflight)
        return;
    const struct tally_delta *d = tally_checkpoint_inflight(sv->t);
    const struct sim_job *j = &sv->job;
    /* The store thread reads the delta while the loop applies more: it must not move. */
    if (!d || d->n_batches != j->n_batches || d->n_marks != j->n_marks ||
        d->n_tokens != j->n_tokens || d->n_touched != j->n_touched ||
        differ(d->batches, j->batches, j->n_batches * sizeof(*d->batches)) ||
        differ(d->marks, j->marks, j->n_marks * sizeof(*d->marks)) ||
        differ(d->tokens, j->tokens, j->n_tokens * sizeof(*d->tokens)) ||
        differ(d->out_ids, j->ids, j->n_touched * sizeof(*j->ids)) ||
        differ(d->out_deltas, j->deltas, j->n_touched * sizeof(*j->deltas))) {
        sim_fail(s, "the sealed delta changed before its COMMIT");
        return;
    }
    store_commit(s, j);
    if (s->violation[0])
        return;
    tally_checkpoint_commit(sv->t);
    sv->inflight = false;
    s->st.checkpoints++;
    if (s->bug != SIM_BUG_ACK_AT_SEAL)
        send_durable_acks(s, j, false);
    sim_check_server(s);
    /* Group commit: what piled up meanwhile goes at once. */
    if (tally_has_pending(sv->t))
        sim_server_seal(s);
}
