/* The tallyd peer: a fresh database (tallyctl migrate, load-registry, add-collector), the
 * tallyd binary started with checkpoints on, and K collector threads that speak the wire
 * protocol over TCP: pipelined pre-encoded batches within a window, some seqs sent twice,
 * provisional and durable acks timed per batch. Counts are read back from PostgreSQL after
 * tallyd stops on SIGTERM. Owns the tallyd process and its database for the run. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/arena.h"
#include "tally/protocol.h"
#include "wire/wire.h"

#define TD_DB_NAME "tallybench_tallyd"

struct td_run;

struct durable_mark {
    uint64_t seq; /* durable_seq announced */
    double wall;  /* CLOCK_REALTIME when it arrived */
};

/* One collector thread. */
struct td_col {
    struct td_run *run;
    size_t k;
    pthread_t thread;
    bool started;
    /* results, read by the main thread after join */
    bool ok;
    char err[256];
    struct lat prov, dur;
    struct durable_mark *marks;
    size_t n_marks, cap_marks;
    uint64_t accepted, duplicate, rejected, retransmit_acks;
    double end_s, prov_end_s;
    _Atomic int finished; /* the thread is about to return */
    /* progress, read while running */
    _Atomic uint64_t votes_sent, votes_durable;
};

struct td_run {
    struct bench_ctx *c;
    int port;
    double deadline;
    _Atomic int ready;
    _Atomic int go;
    _Atomic int abort;
    struct td_col *cols;
};

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

/* Reads until one whole frame is buffered (blocking, bounded by the run's deadline). */
static int read_frame_blocking(struct td_col *t, int fd, uint8_t *buf, size_t cap, size_t *have,
                               struct arena *a, Tally__Frame **f, size_t *frame_len)
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
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n == 0) {
            col_fail(t, "tallyd closed the connection");
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            col_fail(t, "recv: %s", strerror(errno));
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

static void *col_main(void *arg)
{
    struct td_col *t = arg;
    struct td_run *run = t->run;
    struct bench_ctx *c = run->c;
    const struct bench_opts *o = c->o;
    const struct wl_collector *wc = &c->w->collectors[t->k];
    uint8_t **frames = c->frames[t->k];
    size_t *frame_len = c->frame_len[t->k];
    struct arena arena;
    arena_init(&arena, 16 * 1024);
    size_t cap = 256 * 1024, have = 0;
    uint8_t *buf = malloc(cap);
    double *sent_at = calloc(wc->n_batches + 1, sizeof(double));
    struct inflight *fifo = calloc(wc->n_ops + 1, sizeof(*fifo));
    if (!buf || !sent_at || !fifo)
        abort();
    bool counted_ready = false;
    int fd = tcp_connect(run->port);
    if (fd < 0) {
        col_fail(t, "cannot connect to tallyd on port %d: %s", run->port, strerror(errno));
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
    if (send(fd, hello, hlen, MSG_NOSIGNAL) != (ssize_t)hlen) {
        col_fail(t, "sending Hello: %s", strerror(errno));
        goto out;
    }
    Tally__Frame *f = NULL;
    size_t flen = 0;
    if (read_frame_blocking(t, fd, buf, cap, &have, &arena, &f, &flen) != 0)
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
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    atomic_fetch_add(&run->ready, 1);
    counted_ready = true;
    while (!atomic_load(&run->go) && !atomic_load(&run->abort) && !bench_stop)
        sleep_ms(1);

    size_t next_op = 0, head = 0, tail = 0, woff = 0;
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
                writing = true;
                woff = 0;
            }
            const struct wl_op *op = &wc->ops[next_op];
            const uint8_t *fr = frames[op->batch];
            size_t len = frame_len[op->batch];
            ssize_t n = send(fd, fr + woff, len - woff, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    col_fail(t, "send: %s", strerror(errno));
                break;
            }
            woff += (size_t)n;
            if (woff < len)
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

        struct pollfd p = {fd, (short)(POLLIN | (writing ? POLLOUT : 0)), 0};
        int pr = poll(&p, 1, 100);
        if (pr < 0 && errno != EINTR) {
            col_fail(t, "poll: %s", strerror(errno));
            break;
        }
        if (pr <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        for (;;) {
            if (have == cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                if (!buf)
                    abort();
            }
            ssize_t n = recv(fd, buf + have, cap - have, 0);
            if (n == 0) {
                col_fail(t, "tallyd closed the connection");
                break;
            }
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    col_fail(t, "recv: %s", strerror(errno));
                break;
            }
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
    if (fd >= 0)
        close(fd);
    arena_cleanup(&arena);
    free(buf);
    free(sent_at);
    free(fifo);
    return NULL;
}

/* ---- the run ------------------------------------------------------------------------- */

static int ctl(const char *tallyctl, const char *conninfo, const char *log, const char *a1,
               const char *a2)
{
    char *argv[] = {(char *)tallyctl, "--db", (char *)conninfo, (char *)a1, (char *)a2, NULL};
    int rc = proc_run(argv, log, 300000);
    if (rc != 0) {
        fprintf(stderr, "tally-bench: tallyctl %s %s failed (exit %d)\n", a1, a2 ? a2 : "", rc);
        file_tail(log, 20);
    }
    return rc == 0 ? 0 : -1;
}

static bool check_counts(struct bench_ctx *c, PGconn *db, struct peer_result *r)
{
    PGresult *res = PQexec(db, "SELECT project_id, votes FROM project_votes");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(r->note, sizeof(r->note), "reading tallies: %s", PQerrorMessage(db));
        PQclear(res);
        return false;
    }
    char why[300];
    bool ok = pg_check_counts(c->w, res, why, sizeof(why));
    PQclear(res);
    if (!ok)
        snprintf(r->note, sizeof(r->note), "PostgreSQL tallies: %s", why);
    return ok;
}

static bool check_collectors(struct bench_ctx *c, PGconn *db, struct peer_result *r)
{
    const struct workload *w = c->w;
    PGresult *res = PQexec(db, "SELECT coalesce(sum(batches),0), coalesce(sum(votes),0),"
                               " coalesce(sum(accepted),0), coalesce(sum(duplicate),0),"
                               " coalesce(sum(rejected),0) FROM collectors");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        uint64_t v[5];
        for (int i = 0; i < 5; i++)
            v[i] = strtoull(PQgetvalue(res, 0, i), NULL, 10);
        ok = v[0] == w->n_batches && v[1] == w->n_votes && v[2] == w->n_distinct &&
             v[3] == w->n_duplicate && v[4] == 0;
        if (!ok)
            snprintf(r->note, sizeof(r->note),
                     "collector totals: batches %llu votes %llu accepted %llu duplicate %llu "
                     "rejected %llu; expected %llu %llu %llu %llu 0",
                     (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
                     (unsigned long long)v[3], (unsigned long long)v[4],
                     (unsigned long long)w->n_batches, (unsigned long long)w->n_votes,
                     (unsigned long long)w->n_distinct, (unsigned long long)w->n_duplicate);
    } else {
        snprintf(r->note, sizeof(r->note), "reading collectors: %s", PQerrorMessage(db));
    }
    PQclear(res);
    return ok;
}

/* Checkpoint figures from the database: commit cadence and size from the checkpoints table;
 * duration = from the checkpoint transaction's start (committed_at is now(), the start of
 * the transaction) to the first durable ack that names one of its batches. */
static void checkpoint_figures(struct bench_ctx *c, PGconn *db, struct td_col *cols,
                               struct sbuf *js, double *dur_p99)
{
    *dur_p99 = 0;
    PGresult *cp = PQexec(db, "SELECT id, extract(epoch FROM committed_at)::float8, batches, votes"
                              " FROM checkpoints ORDER BY id");
    PGresult *bt = PQexec(db, "SELECT collector_id, seq, checkpoint_id FROM batches");
    if (PQresultStatus(cp) != PGRES_TUPLES_OK || PQresultStatus(bt) != PGRES_TUPLES_OK) {
        sb_printf(js, ", \"checkpoint\": null");
        PQclear(cp);
        PQclear(bt);
        return;
    }
    size_t n = (size_t)PQntuples(cp);
    uint64_t max_id = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = strtoull(PQgetvalue(cp, (int)i, 0), NULL, 10);
        if (id > max_id)
            max_id = id;
    }
    double *begin = calloc(max_id + 1, sizeof(double));
    double *first_ack = calloc(max_id + 1, sizeof(double));
    if (!begin || !first_ack)
        abort();
    struct lat interval = {0}, votes = {0}, batches = {0}, duration = {0};
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = strtoull(PQgetvalue(cp, (int)i, 0), NULL, 10);
        double at = strtod(PQgetvalue(cp, (int)i, 1), NULL);
        begin[id] = at;
        if (i > 0)
            lat_add(&interval, (at - prev) * 1e3);
        prev = at;
        lat_add(&batches, strtod(PQgetvalue(cp, (int)i, 2), NULL));
        lat_add(&votes, strtod(PQgetvalue(cp, (int)i, 3), NULL));
    }
    /* (collector, seq) -> checkpoint id, for every durable mark a collector saw. */
    const struct workload *w = c->w;
    uint64_t **cp_of = calloc(w->n_collectors, sizeof(*cp_of));
    if (!cp_of)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        cp_of[k] = calloc(w->collectors[k].n_batches + 1, sizeof(uint64_t));
        if (!cp_of[k])
            abort();
    }
    for (int i = 0; i < PQntuples(bt); i++) {
        const char *cid = PQgetvalue(bt, i, 0);
        uint64_t seq = strtoull(PQgetvalue(bt, i, 1), NULL, 10);
        uint64_t id = strtoull(PQgetvalue(bt, i, 2), NULL, 10);
        for (size_t k = 0; k < w->n_collectors; k++)
            if (strcmp(cid, w->collectors[k].id) == 0 && seq <= w->collectors[k].n_batches)
                cp_of[k][seq] = id;
    }
    for (size_t k = 0; k < w->n_collectors; k++) {
        for (size_t m = 0; m < cols[k].n_marks; m++) {
            uint64_t id = cp_of[k][cols[k].marks[m].seq];
            if (id == 0 || id > max_id)
                continue;
            if (first_ack[id] == 0 || cols[k].marks[m].wall < first_ack[id])
                first_ack[id] = cols[k].marks[m].wall;
        }
        free(cp_of[k]);
    }
    free(cp_of);
    for (uint64_t id = 1; id <= max_id; id++)
        if (begin[id] > 0 && first_ack[id] > 0)
            lat_add(&duration, (first_ack[id] - begin[id]) * 1e3);
    double vsum = 0, bsum = 0;
    for (size_t i = 0; i < votes.n; i++) {
        vsum += votes.v[i];
        bsum += batches.v[i];
    }
    *dur_p99 = lat_pct(&duration, 0.99);
    sb_printf(js, ", \"checkpoint\": {\"interval_setting_ms\": %u, \"count\": %zu",
              c->o->checkpoint_ms, n);
    sb_lat(js, "commit_interval_ms", &interval);
    sb_lat(js, "duration_ms", &duration);
    sb_printf(js,
              ", \"duration_note\": \"from the checkpoint transaction's start (committed_at) to "
              "the first durable ack naming one of its batches\", \"votes_per_checkpoint_mean\": "
              "%.0f, \"votes_per_checkpoint_max\": %.0f, \"batches_per_checkpoint_mean\": %.1f}",
              n ? vsum / (double)n : 0, lat_max(&votes), n ? bsum / (double)n : 0);
    lat_free(&interval);
    lat_free(&votes);
    lat_free(&batches);
    lat_free(&duration);
    free(begin);
    free(first_ack);
    PQclear(cp);
    PQclear(bt);
}

/* Everything the run holds, so that every exit path can release it. */
struct td_state {
    char conninfo[2048], log_ctl[1200], log_td[1200], registry[1200];
    pid_t pid;
    bool up;
    int code;
    uint64_t hwm0, rss0, hwm1, rss1;
    struct td_run run;
    double t0, t_end, t_prov;
    struct lat prov, dur;
    uint64_t acc, dup, rej, retx;
    /* once a second while running: seconds since start, votes durable by then */
    double *ser_t;
    uint64_t *ser_durable;
    size_t n_ser, cap_ser;
    double recovery_s;        /* --recovery: SIGKILL, restart, listening again */
    double recovery_logged_s; /* what tallyd's own log line says (-1: not found) */
    char argv_text[32][2100]; /* tallyd's command line, for the restart */
    int argc;
};

static void series_add(struct td_state *s, double t, uint64_t durable)
{
    if (s->n_ser == s->cap_ser) {
        s->cap_ser = s->cap_ser ? s->cap_ser * 2 : 64;
        s->ser_t = realloc(s->ser_t, s->cap_ser * sizeof(*s->ser_t));
        s->ser_durable = realloc(s->ser_durable, s->cap_ser * sizeof(*s->ser_durable));
        if (!s->ser_t || !s->ser_durable)
            abort();
    }
    s->ser_t[s->n_ser] = t;
    s->ser_durable[s->n_ser] = durable;
    s->n_ser++;
}

static int td_prepare(struct bench_ctx *c, struct td_state *s, const char *tallyctl,
                      struct peer_result *r)
{
    const struct workload *w = c->w;
    progress(r->name, "database %s: migrate, load %zu projects in %zu circuits, add %zu collectors",
             TD_DB_NAME, w->n_projects, w->n_circuits, w->n_collectors);
    if (wl_write_registry(w, s->registry) != 0 ||
        ctl(tallyctl, s->conninfo, s->log_ctl, "migrate", NULL) ||
        ctl(tallyctl, s->conninfo, s->log_ctl, "load-registry", s->registry)) {
        peer_fail(r, "preparing the database failed (see above)");
        return -1;
    }
    for (size_t k = 0; k < w->n_collectors; k++) {
        if (ctl(tallyctl, s->conninfo, s->log_ctl, "add-collector", w->collectors[k].id)) {
            peer_fail(r, "add-collector failed");
            return -1;
        }
    }
    return 0;
}

/* Starts tallyd with the command line in s and waits until it listens (it listens only
 * after recovery). Returns 0, or -1 after saying why. */
static int td_launch(struct td_state *s, const char *log, struct peer_result *r)
{
    char *argv[33];
    for (int i = 0; i < s->argc; i++)
        argv[i] = s->argv_text[i];
    argv[s->argc] = NULL;
    s->up = false;
    s->pid = proc_spawn(argv, log);
    if (s->pid < 0) {
        s->pid = 0;
        peer_fail(r, "cannot start tallyd");
        return -1;
    }
    double until = now_s() + 600;
    while (!bench_stop && now_s() < until) {
        if (!proc_alive(s->pid, &s->code)) {
            s->pid = 0;
            break;
        }
        int fd = tcp_connect(s->run.port);
        if (fd >= 0) {
            close(fd);
            s->up = true;
            break;
        }
        sleep_ms(10);
    }
    if (!s->up) {
        if (s->pid)
            peer_fail(r, "tallyd did not listen within 600 s");
        else
            peer_fail(r, "tallyd exited (code %d) at start", s->code);
        file_tail(log, 30);
        return -1;
    }
    return 0;
}

static void td_arg(struct td_state *s, const char *a)
{
    char *dst = s->argv_text[s->argc++];
    size_t n = strlen(a);
    if (n >= sizeof(s->argv_text[0]))
        n = sizeof(s->argv_text[0]) - 1;
    memmove(dst, a, n); /* a may be a field of s itself (the conninfo) */
    dst[n] = 0;
}

static int td_start(struct bench_ctx *c, struct td_state *s, const char *tallyd,
                    struct peer_result *r)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    int port = free_port(), http = free_port();
    s->run.port = port;
    char buf[64];
    td_arg(s, tallyd);
    td_arg(s, "--db");
    td_arg(s, s->conninfo);
    snprintf(buf, sizeof(buf), "127.0.0.1:%d", port);
    td_arg(s, "--listen");
    td_arg(s, buf);
    snprintf(buf, sizeof(buf), "127.0.0.1:%d", http);
    td_arg(s, "--http");
    td_arg(s, buf);
    snprintf(buf, sizeof(buf), "%u", o->checkpoint_ms);
    td_arg(s, "--checkpoint-ms");
    td_arg(s, buf);
    if (o->expected_ballots != 0) {
        uint64_t e = o->expected_ballots < 0 ? w->n_distinct : (uint64_t)o->expected_ballots;
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)e);
        td_arg(s, "--expected-ballots");
        td_arg(s, buf);
    }
    if (o->batch > TALLY_DEFAULT_MAX_BATCH_VOTES) {
        snprintf(buf, sizeof(buf), "%u", o->batch);
        td_arg(s, "--max-batch-votes");
        td_arg(s, buf);
        snprintf(buf, sizeof(buf), "%u", o->batch * 16u + 4096u);
        td_arg(s, "--max-frame-bytes");
        td_arg(s, buf);
    }
    for (int i = 0; i < o->n_tallyd_args; i++)
        td_arg(s, o->tallyd_args[i]);
    char shown[512] = "";
    for (int i = 3; i < s->argc; i++) {
        size_t n = strlen(shown);
        snprintf(shown + n, sizeof(shown) - n, " %s", s->argv_text[i]);
    }
    progress(r->name, "starting %s --db ...%s", tallyd, shown);
    if (td_launch(s, s->log_td, r) != 0)
        return -1;
    proc_mem_kb(s->pid, &s->hwm0, &s->rss0);
    return 0;
}

/* --recovery: SIGKILL with everything durable, start again, time until it listens. */
static void td_recovery(struct bench_ctx *c, struct td_state *s, struct peer_result *r)
{
    char log[1300];
    snprintf(log, sizeof(log), "%s/tallyd-recovery.log", c->workdir);
    progress(r->name, "SIGKILL to tallyd with %llu ballots durable; restarting it",
             (unsigned long long)c->w->n_distinct);
    proc_stop(s->pid, SIGKILL, 30000);
    s->pid = 0;
    double t0 = now_s();
    if (td_launch(s, log, r) != 0)
        return;
    s->recovery_s = now_s() - t0;
    s->recovery_logged_s = -1;
    FILE *f = fopen(log, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "recovered consultation");
        const char *q = p ? strstr(p, "' in ") : NULL;
        if (q)
            s->recovery_logged_s = strtod(q + 5, NULL);
    }
    if (f)
        fclose(f);
    progress(r->name, "recovered and listening after %.2f s (tallyd's log says %.2f s)",
             s->recovery_s, s->recovery_logged_s);
}

static void td_drive(struct bench_ctx *c, struct td_state *s, struct peer_result *r)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    struct td_run *run = &s->run;
    run->c = c;
    run->deadline = now_s() + o->timeout_s;
    run->cols = calloc(w->n_collectors, sizeof(*run->cols));
    if (!run->cols)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct td_col *t = &run->cols[k];
        t->run = run;
        t->k = k;
        t->ok = true;
        if (pthread_create(&t->thread, NULL, col_main, t) == 0) {
            t->started = true;
        } else {
            t->ok = false;
            snprintf(t->err, sizeof(t->err), "pthread_create failed");
            atomic_fetch_add(&run->ready, 1);
        }
    }
    while (atomic_load(&run->ready) < (int)w->n_collectors && !bench_stop)
        sleep_ms(1);
    s->t0 = now_s();
    atomic_store(&run->go, 1);
    progress(r->name,
             "%zu collectors connected; sending %llu votes in %llu batches (+%llu resent), "
             "window %u",
             w->n_collectors, (unsigned long long)w->n_votes, (unsigned long long)w->n_batches,
             (unsigned long long)w->n_retransmits, o->window);

    /* Watch: progress once a second; stop everything if tallyd dies. */
    double last = s->t0;
    for (;;) {
        bool all_done = true;
        for (size_t k = 0; k < w->n_collectors; k++)
            if (run->cols[k].started && !atomic_load(&run->cols[k].finished))
                all_done = false;
        if (all_done)
            break;
        if (!proc_alive(s->pid, &s->code)) {
            s->pid = 0;
            atomic_store(&run->abort, 1);
            peer_fail(r, "tallyd exited (code %d) during the run", s->code);
            file_tail(s->log_td, 30);
            break;
        }
        if (bench_stop) {
            atomic_store(&run->abort, 1);
            break;
        }
        sleep_ms(20);
        double now = now_s();
        if (now - last >= 1.0) {
            uint64_t sent = 0, dur = 0;
            for (size_t k = 0; k < w->n_collectors; k++) {
                sent += atomic_load(&run->cols[k].votes_sent);
                dur += atomic_load(&run->cols[k].votes_durable);
            }
            double prev_t = s->n_ser ? s->ser_t[s->n_ser - 1] : 0;
            uint64_t prev_d = s->n_ser ? s->ser_durable[s->n_ser - 1] : 0;
            series_add(s, now - s->t0, dur);
            progress(r->name,
                     "%5.1f s: %llu votes sent, %llu durable (%.0f durable votes/s; last second "
                     "%.0f)",
                     now - s->t0, (unsigned long long)sent, (unsigned long long)dur,
                     (double)dur / (now - s->t0), (double)(dur - prev_d) / (now - s->t0 - prev_t));
            last = now;
        }
    }
    for (size_t k = 0; k < w->n_collectors; k++)
        if (run->cols[k].started)
            pthread_join(run->cols[k].thread, NULL);

    s->t_end = s->t_prov = s->t0;
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct td_col *t = &run->cols[k];
        if (!t->ok && !r->failed)
            peer_fail(r, "collector %s: %s", w->collectors[k].id, t->err);
        if (t->end_s > s->t_end)
            s->t_end = t->end_s;
        if (t->prov_end_s > s->t_prov)
            s->t_prov = t->prov_end_s;
        lat_merge(&s->prov, &t->prov);
        lat_merge(&s->dur, &t->dur);
        s->acc += t->accepted;
        s->dup += t->duplicate;
        s->rej += t->rejected;
        s->retx += t->retransmit_acks;
    }
    if (s->pid > 0)
        proc_mem_kb(s->pid, &s->hwm1, &s->rss1);
}

static void td_report(struct bench_ctx *c, struct td_state *s, struct peer_result *r)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    double wall = s->t_end - s->t0;
    r->ran = true;
    r->wall_s = wall;
    r->votes_per_s = (double)w->n_votes / wall;
    PGconn *db = PQconnectdb(s->conninfo);
    bool exact = PQstatus(db) == CONNECTION_OK;
    if (!exact)
        snprintf(r->note, sizeof(r->note), "cannot read results: %s", PQerrorMessage(db));
    exact = exact && check_counts(c, db, r) && check_collectors(c, db, r);
    if (exact && (s->acc != w->n_distinct || s->dup != w->n_duplicate || s->rej != 0 ||
                  s->retx != w->n_retransmits)) {
        snprintf(r->note, sizeof(r->note),
                 "acks: accepted %llu duplicate %llu rejected %llu retransmits %llu; expected "
                 "%llu %llu 0 %llu",
                 (unsigned long long)s->acc, (unsigned long long)s->dup, (unsigned long long)s->rej,
                 (unsigned long long)s->retx, (unsigned long long)w->n_distinct,
                 (unsigned long long)w->n_duplicate, (unsigned long long)w->n_retransmits);
        exact = false;
    }
    r->exact = exact;
    if (!exact)
        progress(r->name, "NOT EXACT: %s", r->note);

    uint64_t distinct = w->n_distinct ? w->n_distinct : 1;
    double per_ballot =
        s->hwm1 > s->hwm0 ? (double)(s->hwm1 - s->hwm0) * 1024.0 / (double)distinct : 0;
    double target = 2.0 * o->checkpoint_ms + 50;
    double dur_p99 = lat_pct(&s->dur, 0.99);
    r->durable_p99_ms = dur_p99;
    r->bytes_per_ballot = per_ballot;
    sb_printf(&r->json,
              ", \"what\": \"tallyd binary, %zu collector threads over TCP loopback, checkpoints "
              "to PostgreSQL every %u ms; votes_per_s counts votes until all are durable\"",
              w->n_collectors, o->checkpoint_ms);
    sb_printf(&r->json, ", \"applied_votes_per_s\": %.0f",
              (double)w->n_votes / (s->t_prov - s->t0 > 0 ? s->t_prov - s->t0 : wall));
    sb_lat(&r->json, "provisional_ack_ms", &s->prov);
    sb_lat(&r->json, "durable_ack_ms", &s->dur);
    sb_printf(&r->json, ", \"durable_p99_target_ms\": %.0f, \"durable_p99_within_target\": %s",
              target, dur_p99 <= target ? "true" : "false");
    double cp_p99 = 0;
    if (PQstatus(db) == CONNECTION_OK)
        checkpoint_figures(c, db, s->run.cols, &r->json, &cp_p99);
    PQfinish(db);
    uint64_t exp_ballots = o->expected_ballots < 0 ? w->n_distinct : (uint64_t)o->expected_ballots;
    sb_printf(&r->json,
              ", \"memory\": {\"vmhwm_baseline_kb\": %llu, \"vmhwm_peak_kb\": %llu, "
              "\"vmrss_end_kb\": %llu, \"distinct_ballots\": %llu, \"bytes_per_ballot\": %.2f, "
              "\"expected_ballots_flag\": %llu}",
              (unsigned long long)s->hwm0, (unsigned long long)s->hwm1, (unsigned long long)s->rss1,
              (unsigned long long)w->n_distinct, per_ballot, (unsigned long long)exp_ballots);
    sb_printf(&r->json,
              ", \"collectors\": %zu, \"window\": %u, \"max_undurable\": %u, \"batches\": %llu, "
              "\"retransmitted_batches\": %llu, \"accepted\": %llu, \"duplicate\": %llu, "
              "\"rejected\": %llu",
              w->n_collectors, o->window, o->max_undurable, (unsigned long long)w->n_batches,
              (unsigned long long)s->retx, (unsigned long long)s->acc, (unsigned long long)s->dup,
              (unsigned long long)s->rej);
    sb_printf(&r->json, ", \"series\": [");
    for (size_t i = 0; i < s->n_ser; i++) {
        double pt = i ? s->ser_t[i - 1] : 0;
        uint64_t pd = i ? s->ser_durable[i - 1] : 0;
        sb_printf(&r->json, "%s{\"t_s\": %.2f, \"durable\": %llu, \"votes_per_s\": %.0f}",
                  i ? ", " : "", s->ser_t[i], (unsigned long long)s->ser_durable[i],
                  (double)(s->ser_durable[i] - pd) / (s->ser_t[i] - pt));
    }
    sb_printf(&r->json, "]");
    if (o->recovery)
        sb_printf(&r->json,
                  ", \"recovery\": {\"ballots\": %llu, \"restart_to_listening_s\": %.3f, "
                  "\"tallyd_logged_s\": %.3f}",
                  (unsigned long long)w->n_distinct, s->recovery_s, s->recovery_logged_s);
    snprintf(r->table, sizeof(r->table),
             "ack ms p50/p99/p999: provisional %.1f/%.1f/%.1f, durable %.0f/%.0f/%.0f; "
             "checkpoint p99 %.0f ms; %.1f B/ballot",
             lat_pct(&s->prov, 0.5), lat_pct(&s->prov, 0.99), lat_pct(&s->prov, 0.999),
             lat_pct(&s->dur, 0.5), dur_p99, lat_pct(&s->dur, 0.999), cp_p99, per_ballot);
    progress(r->name, "%.0f votes/s to durable, %s; durable ack p99 %.0f ms, %.1f bytes/ballot",
             r->votes_per_s, r->exact ? "exact" : "NOT EXACT", dur_p99, per_ballot);
}

void peer_tallyd_run(struct bench_ctx *c, struct peer_result *r)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    char dir[1024], b_tallyd[1200], b_ctl[1200];
    self_dir(dir, sizeof(dir));
    char cand1[1200], cand2[1200], cand3[1200], cand4[1200];
    snprintf(cand1, sizeof(cand1), "%s/../tallyd", dir);
    snprintf(cand2, sizeof(cand2), "%s/tallyd", dir);
    snprintf(cand3, sizeof(cand3), "%s/../src/ctl/tallyctl", dir);
    snprintf(cand4, sizeof(cand4), "%s/tallyctl", dir);
    const char *const td_cands[] = {cand1, cand2, TALLY_BENCH_TALLYD, NULL};
    const char *const ctl_cands[] = {cand3, cand4, TALLY_BENCH_TALLYCTL, NULL};
    const char *tallyd = find_prog(o->tallyd_path, td_cands, b_tallyd, sizeof(b_tallyd));
    const char *tallyctl = find_prog(o->tallyctl_path, ctl_cands, b_ctl, sizeof(b_ctl));
    if (!tallyd || !tallyctl) {
        peer_fail(r, "%s not found (build it, or give --%s PATH)", tallyd ? "tallyctl" : "tallyd",
                  tallyd ? "tallyctl" : "tallyd");
        return;
    }

    struct td_state *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    snprintf(s->log_ctl, sizeof(s->log_ctl), "%s/tallyctl.log", c->workdir);
    snprintf(s->log_td, sizeof(s->log_td), "%s/tallyd.log", c->workdir);
    snprintf(s->registry, sizeof(s->registry), "%s/registry.csv", c->workdir);
    if (pg_db_create(c->pg, TD_DB_NAME, s->conninfo, sizeof(s->conninfo)) != 0) {
        peer_fail(r, "cannot create database " TD_DB_NAME);
        free(s);
        return;
    }
    if (td_prepare(c, s, tallyctl, r) == 0 && td_start(c, s, tallyd, r) == 0) {
        td_drive(c, s, r);
        if (o->recovery && !r->failed && !bench_stop && s->pid > 0)
            td_recovery(c, s, r);
    }
    if (s->pid > 0) {
        progress(r->name, "SIGTERM to tallyd (final checkpoint, exit)");
        s->code = proc_stop(s->pid, SIGTERM, 60000);
        if (s->code != 0 && !r->failed) {
            peer_fail(r, "tallyd exited with %d on SIGTERM", s->code);
            file_tail(s->log_td, 30);
        }
    }
    if (!r->failed && !bench_stop)
        td_report(c, s, r);

    lat_free(&s->prov);
    lat_free(&s->dur);
    free(s->ser_t);
    free(s->ser_durable);
    if (s->run.cols) {
        for (size_t k = 0; k < w->n_collectors; k++) {
            lat_free(&s->run.cols[k].prov);
            lat_free(&s->run.cols[k].dur);
            free(s->run.cols[k].marks);
        }
        free(s->run.cols);
    }
    free(s);
    if (!o->keep)
        pg_db_drop(c->pg, TD_DB_NAME);
}
