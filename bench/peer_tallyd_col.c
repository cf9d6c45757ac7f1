/* The tallyd peer's collector threads: each speaks the wire protocol to tallyd over TCP,
 * or mutual TLS 1.3 for the tallyd_tls peer (struct td_conn, peer_tallyd_tls.c), Hello and
 * Welcome, then pipelined pre-encoded batches within the window (some seqs sent
 * twice), checking every ack and timing provisional and durable acks per batch. A streamed
 * workload's batches are made and encoded here, one ahead of the sends, and the last
 * TD_RING kept for resends. Owns its socket and buffers; the run (peer_tallyd.c) owns the
 * rest. */
#include "peer_tallyd.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "tally/protocol.h"
#include "wire/wire.h"

static void col_fail(struct td_col *t, const char *fmt, ...) BENCH_PRINTF(2, 3);

static void col_fail(struct td_col *t, const char *fmt, ...)
{
    if (!t->ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
    t->ok = false;
}

/* Reads until one whole frame is buffered (waiting in poll, bounded by the run's
 * deadline). */
static int read_frame_blocking(struct td_col *t, struct td_conn *cn, uint8_t *buf, size_t cap,
                               size_t *have, struct arena *a, Tally__Frame **f, size_t *frame_len)
{
    for (;;) {
        size_t len = 0;
        enum wire_status st = wire_frame_peek(buf, *have, cap - 4, &len);
        if (st == WIRE_OK) {
            if (wire_frame_decode(buf + 4, len, a, f) != WIRE_OK) {
                col_fail(t, "undecodable frame from tallyd");
                return -1;
            }
            *frame_len = 4 + len;
            return 0;
        }
        if (st != WIRE_NEED_MORE) {
            col_fail(t, "bad frame header from tallyd");
            return -1;
        }
        if (now_s() > t->run->deadline || bench_stop) {
            col_fail(t, "timed out waiting for tallyd");
            return -1;
        }
        struct pollfd p = {cn->fd, POLLIN, 0};
        if (!td_conn_pending(cn) && poll(&p, 1, 100) <= 0)
            continue;
        char err[300];
        ssize_t n = td_conn_recv(cn, buf + *have, cap - *have, err, sizeof(err));
        if (n < 0) {
            col_fail(t, "waiting for Welcome: %s", err);
            return -1;
        }
        *have += (size_t)n;
    }
}

static void mark_add(struct td_col *t, uint64_t seq, double wall)
{
    if (t->n_marks == t->cap_marks) {
        t->cap_marks = t->cap_marks ? t->cap_marks * 2 : 256;
        t->marks = realloc(t->marks, t->cap_marks * sizeof(*t->marks));
        if (!t->marks)
            abort();
    }
    t->marks[t->n_marks++] = (struct durable_mark){seq, wall};
}

struct inflight {
    uint32_t op;
    double sent;
};

/* Where a collector's frames come from: the pre-encoded ones (frames != NULL), or a ring of
 * the last TD_RING batches made here. */
struct frame_src {
    uint8_t **frames;
    size_t *frame_len;
    uint8_t *ring[TD_RING];
    size_t ring_len[TD_RING], ring_cap[TD_RING];
    size_t ring_batch[TD_RING]; /* 1 + the batch a slot holds; 0: none */
    uint64_t *ballots;
    uint32_t *projects;
    size_t made; /* batches 0..made-1 have been made */
};

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Makes and encodes the next batch into its slot of the ring, on the thread's CPU clock. */
static void src_make(struct td_col *t, struct frame_src *fs)
{
    const struct workload *w = t->run->c->w;
    size_t b = fs->made, slot = b % TD_RING;
    const struct wl_batch *wb = &w->collectors[t->k].batches[b];
    double c0 = thread_cpu_s();
    wl_stream_fill(w, t->k, b, fs->ballots, fs->projects, t->truth);
    fs->ring_len[slot] = frame_batch_encode(wb->seq, fs->ballots, fs->projects, wb->n,
                                            &fs->ring[slot], &fs->ring_cap[slot]);
    fs->ring_batch[slot] = b + 1;
    fs->made++;
    t->gen_cpu_s += thread_cpu_s() - c0;
    t->gen_votes += wb->n;
    t->gen_batches++;
}

/* The frame of batch b, made first when it is the next one; NULL if the ring no longer
 * holds it (a resend further back than TD_RING, which the workload never asks for). */
static const uint8_t *src_frame(struct td_col *t, struct frame_src *fs, size_t b, size_t *len)
{
    if (fs->frames) {
        *len = fs->frame_len[b];
        return fs->frames[b];
    }
    if (b == fs->made)
        src_make(t, fs);
    size_t slot = b % TD_RING;
    if (fs->ring_batch[slot] != b + 1)
        return NULL;
    *len = fs->ring_len[slot];
    return fs->ring[slot];
}

static void src_cleanup(struct frame_src *fs)
{
    for (size_t i = 0; i < TD_RING; i++)
        free(fs->ring[i]);
    free(fs->ballots);
    free(fs->projects);
}

void *td_col_main(void *arg)
{
    struct td_col *t = arg;
    struct td_run *run = t->run;
    struct bench_ctx *c = run->c;
    const struct bench_opts *o = c->o;
    const struct wl_collector *wc = &c->w->collectors[t->k];
    struct frame_src fs = {0};
    if (c->w->stream) {
        fs.ballots = calloc(o->batch, sizeof(uint64_t));
        fs.projects = calloc(o->batch, sizeof(uint32_t));
        if (!fs.ballots || !fs.projects)
            abort();
    } else {
        fs.frames = c->frames[t->k];
        fs.frame_len = c->frame_len[t->k];
    }
    struct arena arena;
    arena_init(&arena, 16 * 1024);
    size_t cap = 256 * 1024, have = 0;
    uint8_t *buf = malloc(cap);
    double *sent_at = calloc(wc->n_batches + 1, sizeof(double));
    struct inflight *fifo = calloc(wc->n_ops + 1, sizeof(*fifo));
    if (!buf || !sent_at || !fifo)
        abort();
    bool counted_ready = false;
    char err[300];
    struct td_conn cn;
    int open_rc = td_conn_open(&cn, run, t->k, err, sizeof(err));
    td_conn_describe(&cn, t->transport, sizeof(t->transport));
    if (open_rc != 0) {
        col_fail(t, "%s", err);
        goto out;
    }

    /* Session: Hello, then Welcome with durable_seq 0 (a fresh database). */
    Tally__Hello h = TALLY__HELLO__INIT;
    h.collector_id = (char *)wc->id;
    h.consultation_id = "";
    h.protocol_version = TALLY_PROTOCOL_VERSION;
    Tally__Frame hf = TALLY__FRAME__INIT;
    hf.msg_case = TALLY__FRAME__MSG_HELLO;
    hf.hello = &h;
    uint8_t hello[256];
    size_t hlen = wire_frame_encode(&hf, hello);
    for (size_t off = 0; off < hlen;) {
        ssize_t n = td_conn_send(&cn, hello + off, hlen - off, err, sizeof(err));
        if (n < 0) {
            col_fail(t, "sending Hello: %s", err);
            goto out;
        }
        off += (size_t)n;
        struct pollfd p = {cn.fd, POLLOUT, 0};
        if (n == 0 && (now_s() > run->deadline || poll(&p, 1, 100) < 0)) {
            col_fail(t, "sending Hello: timed out");
            goto out;
        }
    }
    Tally__Frame *f = NULL;
    size_t flen = 0;
    if (read_frame_blocking(t, &cn, buf, cap, &have, &arena, &f, &flen) != 0)
        goto out;
    if (f->msg_case == TALLY__FRAME__MSG_ERROR) {
        col_fail(t, "tallyd refused the session: %s", f->error->message);
        goto out;
    }
    if (f->msg_case != TALLY__FRAME__MSG_WELCOME || f->welcome->durable_seq != 0) {
        col_fail(t, "expected Welcome with durable_seq 0");
        goto out;
    }
    arena_reset(&arena);
    memmove(buf, buf + flen, have - flen);
    have -= flen;

    if (!fs.frames && wc->n_batches) /* streamed: the first batch before the clock starts */
        src_make(t, &fs);
    atomic_fetch_add(&run->ready, 1);
    counted_ready = true;
    while (!atomic_load(&run->go) && !atomic_load(&run->abort) && !bench_stop)
        sleep_ms(1);

    size_t next_op = 0, head = 0, tail = 0, woff = 0, started = 0, fr_len = 0;
    const uint8_t *fr = NULL;
    bool writing = false;
    uint64_t durable = 0, acked_ops = 0;
    while (t->ok) {
        if (bench_stop || atomic_load(&run->abort)) {
            col_fail(t, "stopped");
            break;
        }
        if (now_s() > run->deadline) {
            col_fail(t, "timed out: %zu of %zu sends done, durable_seq %llu of %zu", next_op,
                     wc->n_ops, (unsigned long long)durable, wc->n_batches);
            break;
        }
        /* Send while the window allows. */
        for (;;) {
            if (!writing) {
                if (next_op >= wc->n_ops || tail - head >= o->window)
                    break;
                const struct wl_op *op = &wc->ops[next_op];
                if (!op->retransmit && wc->batches[op->batch].seq > durable + o->max_undurable)
                    break;
                fr = src_frame(t, &fs, op->batch, &fr_len);
                if (!fr) {
                    col_fail(t, "batch %u is no longer in the ring of frames", op->batch);
                    break;
                }
                started += !op->retransmit;
                writing = true;
                woff = 0;
            }
            const struct wl_op *op = &wc->ops[next_op];
            /* The rest of the frame in one call: TLS cuts it into 16 KiB records itself. */
            ssize_t n = td_conn_send(&cn, fr + woff, fr_len - woff, err, sizeof(err));
            if (n < 0)
                col_fail(t, "%s", err);
            if (n <= 0)
                break;
            woff += (size_t)n;
            if (woff < fr_len)
                continue;
            double now = now_s();
            fifo[tail++] = (struct inflight){(uint32_t)next_op, now};
            if (!op->retransmit) {
                sent_at[wc->batches[op->batch].seq] = now;
                atomic_fetch_add(&t->votes_sent, wc->batches[op->batch].n);
            }
            writing = false;
            next_op++;
        }
        if (!t->ok)
            break;
        if (next_op >= wc->n_ops && head == tail && durable >= wc->n_batches)
            break;
        /* Streamed: make the next batch while the window waits for acks, so that making it
         * is seldom what the sends wait for. One ahead only, so the ring keeps every batch
         * a resend can still ask for. */
        if (!fs.frames && !writing && fs.made == started && fs.made < wc->n_batches)
            src_make(t, &fs);

        /* TLS may hold decrypted acks poll cannot see: read them without waiting. */
        bool pending = td_conn_pending(&cn);
        struct pollfd p = {cn.fd, (short)(POLLIN | (writing ? POLLOUT : 0)), 0};
        int pr = poll(&p, 1, pending ? 0 : 100);
        if (pr < 0 && errno != EINTR) {
            col_fail(t, "poll: %s", strerror(errno));
            break;
        }
        if (!pending && (pr <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))))
            continue;
        for (;;) {
            if (have == cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                if (!buf)
                    abort();
            }
            ssize_t n = td_conn_recv(&cn, buf + have, cap - have, err, sizeof(err));
            if (n < 0)
                col_fail(t, "%s", err);
            if (n <= 0)
                break;
            have += (size_t)n;
        }
        size_t off = 0;
        while (t->ok) {
            size_t len = 0;
            enum wire_status st = wire_frame_peek(buf + off, have - off, cap, &len);
            if (st == WIRE_NEED_MORE)
                break;
            if (st != WIRE_OK || wire_frame_decode(buf + off + 4, len, &arena, &f) != WIRE_OK) {
                col_fail(t, "bad frame from tallyd");
                break;
            }
            off += 4 + len;
            double now = now_s();
            if (f->msg_case == TALLY__FRAME__MSG_ERROR) {
                col_fail(t, "tallyd: error %d: %s", (int)f->error->code, f->error->message);
            } else if (f->msg_case != TALLY__FRAME__MSG_ACK) {
                col_fail(t, "unexpected message %d from tallyd", (int)f->msg_case);
            } else {
                const Tally__Ack *ack = f->ack;
                if (ack->seq > 0) {
                    if (head == tail) {
                        col_fail(t, "ack for seq %llu with nothing in flight",
                                 (unsigned long long)ack->seq);
                        break;
                    }
                    struct inflight in = fifo[head++];
                    const struct wl_op *op = &wc->ops[in.op];
                    uint64_t seq = wc->batches[op->batch].seq;
                    if (ack->seq != seq || (bool)ack->retransmit != op->retransmit) {
                        col_fail(t, "ack for seq %llu%s, expected %llu%s",
                                 (unsigned long long)ack->seq,
                                 ack->retransmit ? " (retransmit)" : "", (unsigned long long)seq,
                                 op->retransmit ? " (retransmit)" : "");
                        break;
                    }
                    acked_ops++;
                    if (op->retransmit) {
                        t->retransmit_acks++;
                    } else {
                        lat_add(&t->prov, (now - in.sent) * 1e3);
                        t->accepted += ack->accepted;
                        t->duplicate += ack->duplicate_ballots;
                        t->rejected += ack->rejected;
                    }
                    if (acked_ops == wc->n_ops)
                        t->prov_end_s = now;
                }
                if (ack->durable_seq > durable) {
                    if (ack->durable_seq > wc->n_batches) {
                        col_fail(t, "durable_seq %llu beyond the last batch",
                                 (unsigned long long)ack->durable_seq);
                        break;
                    }
                    for (uint64_t s = durable + 1; s <= ack->durable_seq; s++) {
                        if (sent_at[s] == 0) {
                            col_fail(t, "durable_seq %llu covers a batch not sent yet",
                                     (unsigned long long)ack->durable_seq);
                            break;
                        }
                        lat_add(&t->dur, (now - sent_at[s]) * 1e3);
                        atomic_fetch_add(&t->votes_durable, wc->batches[s - 1].n);
                    }
                    durable = ack->durable_seq;
                    mark_add(t, durable, wall_s());
                }
            }
            arena_reset(&arena);
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    t->end_s = now_s();

out:
    if (!counted_ready)
        atomic_fetch_add(&run->ready, 1);
    atomic_store(&t->finished, 1);
    td_conn_close(&cn);
    arena_cleanup(&arena);
    src_cleanup(&fs);
    free(buf);
    free(sent_at);
    free(fifo);
    return NULL;
}
