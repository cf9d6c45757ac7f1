/* The Redis peer: the natural alternative. redis-server (Debian's) started on a free loopback
 * port in a scratch directory; one Lua script per batch (EVALSHA), pipelined within the same
 * window as tallyd's collectors: SADD of the batch id (a retransmitted batch does nothing),
 * then per vote SADD of the ballot, the new ones added up per project inside the script, and
 * one HINCRBY per project of the batch. Persistence: AOF, auto-rewrite pinned off, no RDB
 * saves, with appendfsync always (redis_always: a reply means durable, tallyd's promise) or
 * everysec (redis_everysec). RESP is spoken directly over the socket: no client library.
 * Owns the redis-server process for the run. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* KEYS: ballots set, counts hash, batch ids set; ARGV: batch id, then ballot, project pairs.
 * Replies {accepted, repeated}, or {-1, 0} for a batch id already seen (a retransmission).
 * A ballot counts when SADD says it is new, so repeated voters count once, exactly; the new
 * votes are summed per project in a Lua table and written with one HINCRBY per project. */
static const char lua_script[] =
    "if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return {-1, 0} end\n"
    "local acc, dup, counts = 0, 0, {}\n"
    "for i = 2, #ARGV, 2 do\n"
    "  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then\n"
    "    local p = ARGV[i + 1]\n"
    "    counts[p] = (counts[p] or 0) + 1\n"
    "    acc = acc + 1\n"
    "  else\n"
    "    dup = dup + 1\n"
    "  end\n"
    "end\n"
    "for p, n in pairs(counts) do redis.call('HINCRBY', KEYS[2], p, n) end\n"
    "return {acc, dup}\n";

#define K_BALLOTS "bench:ballots"
#define K_COUNTS "bench:counts"
#define K_BATCHES "bench:batches"

/* ---- RESP ------------------------------------------------------------------------------ */

struct resp {
    char type;     /* + - : $ * */
    long long i;   /* ':' value; '$' and '*' length (-1: null) */
    const char *s; /* '+', '-', '$': points into the read buffer */
    size_t len;
    struct resp *el; /* '*': i elements, malloc'd */
};

static void resp_free(struct resp *r)
{
    if (r->type == '*' && r->el) {
        for (long long k = 0; k < r->i; k++)
            resp_free(&r->el[k]);
        free(r->el);
    }
    r->el = NULL;
}

/* Parses one reply at p (len bytes). Returns bytes used, 0 when incomplete, -1 when
 * malformed. */
static long resp_parse(const char *p, size_t len, struct resp *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return 0;
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return 0;
    if (nl == p || nl[-1] != '\r')
        return -1;
    size_t line = (size_t)(nl - p) + 1; /* through \n */
    out->type = p[0];
    switch (p[0]) {
    case '+':
    case '-':
        out->s = p + 1;
        out->len = line - 3;
        return (long)line;
    case ':':
        out->i = strtoll(p + 1, NULL, 10);
        return (long)line;
    case '$': {
        out->i = strtoll(p + 1, NULL, 10);
        if (out->i < 0)
            return (long)line;
        size_t need = line + (size_t)out->i + 2;
        if (len < need)
            return 0;
        out->s = p + line;
        out->len = (size_t)out->i;
        return (long)need;
    }
    case '*': {
        out->i = strtoll(p + 1, NULL, 10);
        if (out->i <= 0)
            return (long)line;
        out->el = calloc((size_t)out->i, sizeof(*out->el));
        if (!out->el)
            abort();
        size_t off = line;
        for (long long k = 0; k < out->i; k++) {
            long n = resp_parse(p + off, len - off, &out->el[k]);
            if (n <= 0) {
                out->i = k; /* free only what was parsed */
                resp_free(out);
                return n;
            }
            off += (size_t)n;
        }
        return (long)off;
    }
    default:
        return -1;
    }
}

struct cmdbuf {
    char *p;
    size_t len, cap;
};

static void cb_add(struct cmdbuf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void cb_arg(struct cmdbuf *b, const void *data, size_t n)
{
    char hdr[32];
    int h = snprintf(hdr, sizeof(hdr), "$%zu\r\n", n);
    cb_add(b, hdr, (size_t)h);
    cb_add(b, data, n);
    cb_add(b, "\r\n", 2);
}

static void cb_str(struct cmdbuf *b, const char *s)
{
    cb_arg(b, s, strlen(s));
}

static void cb_array(struct cmdbuf *b, size_t n)
{
    char hdr[32];
    int h = snprintf(hdr, sizeof(hdr), "*%zu\r\n", n);
    cb_add(b, hdr, (size_t)h);
}

/* A blocking connection for setup and read-back. */
struct rconn {
    int fd;
    char *buf;
    size_t len, cap;
};

static int rc_send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends a command (argv strings) and reads one reply into *out (valid until the next call).
 * Returns 0 or -1. */
static int rc_call(struct rconn *c, struct resp *out, int argc, const char *const *argv)
{
    struct cmdbuf b = {0};
    cb_array(&b, (size_t)argc);
    for (int i = 0; i < argc; i++)
        cb_str(&b, argv[i]);
    int rc = rc_send_all(c->fd, b.p, b.len);
    free(b.p);
    if (rc != 0)
        return -1;
    c->len = 0;
    double until = now_s() + 120;
    for (;;) {
        long n = resp_parse(c->buf, c->len, out);
        if (n < 0)
            return -1;
        if (n > 0)
            return 0;
        if (c->len == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 65536;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf)
                abort();
        }
        struct pollfd p = {c->fd, POLLIN, 0};
        if (now_s() > until || bench_stop)
            return -1;
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            return -1;
        }
        c->len += (size_t)k;
    }
}

/* ---- the server ------------------------------------------------------------------------ */

const char *redis_find(const struct bench_opts *o, char *buf, size_t len)
{
    if (o->redis_path) {
        if (access(o->redis_path, X_OK) != 0)
            return NULL;
        snprintf(buf, len, "%s", o->redis_path);
        return buf;
    }
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/bin:/usr/sbin:/usr/local/bin",
             path ? path : "/usr/local/bin:/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, len, "%s/redis-server", d);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

struct rd_col {
    struct rd_run *run;
    size_t k;
    pthread_t thread;
    bool started, ok;
    char err[256];
    struct lat reply;
    uint64_t accepted, duplicate, retransmits;
    size_t ops_done; /* sends answered, in order */
    _Atomic uint64_t votes_done;
    _Atomic int finished;
};

struct rd_run {
    struct bench_ctx *c;
    int port;
    struct cmdbuf **cmds; /* pre-encoded EVALSHA per batch, by collector */
    double deadline;
    double budget_end; /* no new sends after this (--peer-seconds); set before go */
    _Atomic int ready, go;
    struct rd_col *cols;
};

static void *rd_col_main(void *arg)
{
    struct rd_col *t = arg;
    struct rd_run *run = t->run;
    const struct bench_opts *o = run->c->o;
    const struct wl_collector *wc = &run->c->w->collectors[t->k];
    size_t n_ops = run->c->ops_limit[t->k];
    size_t cap = 65536, have = 0;
    char *buf = malloc(cap);
    double *sent = calloc(n_ops + 1, sizeof(double));
    if (!buf || !sent)
        abort();
    int fd = tcp_connect(run->port);
    atomic_fetch_add(&run->ready, 1);
    if (fd < 0) {
        snprintf(t->err, sizeof(t->err), "cannot connect to redis-server: %s", strerror(errno));
        goto out;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (!atomic_load(&run->go) && !bench_stop)
        sleep_ms(1);
    t->ok = true;
    /* After the budget no new command starts; the ones sent are answered, and counted. */
    size_t next = 0, acked = 0, woff = 0, end = n_ops;
    bool stopping = false;
    for (;;) {
        if (!stopping && now_s() > run->budget_end)
            stopping = true;
        if (stopping && woff == 0)
            end = next;
        if (!t->ok || acked >= end)
            break;
        if (bench_stop || now_s() > run->deadline) {
            snprintf(t->err, sizeof(t->err), "%s", bench_stop ? "stopped" : "timed out");
            t->ok = false;
            break;
        }
        bool writing = false;
        while (next < end && next - acked < o->window && !(stopping && woff == 0)) {
            const struct cmdbuf *cmd = &run->cmds[t->k][wc->ops[next].batch];
            ssize_t n = send(fd, cmd->p + woff, cmd->len - woff, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    snprintf(t->err, sizeof(t->err), "send: %s", strerror(errno));
                    t->ok = false;
                }
                writing = true;
                break;
            }
            woff += (size_t)n;
            if (woff == cmd->len) {
                sent[next++] = now_s();
                woff = 0;
            }
        }
        if (!t->ok)
            break;
        writing = writing || woff > 0;
        struct pollfd p = {fd, (short)(POLLIN | (writing ? POLLOUT : 0)), 0};
        if (poll(&p, 1, 100) <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
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
                snprintf(t->err, sizeof(t->err), "redis-server closed the connection");
                t->ok = false;
                break;
            }
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    snprintf(t->err, sizeof(t->err), "recv: %s", strerror(errno));
                    t->ok = false;
                }
                break;
            }
            have += (size_t)n;
        }
        size_t off = 0;
        while (t->ok) {
            struct resp r;
            long n = resp_parse(buf + off, have - off, &r);
            if (n == 0)
                break;
            if (n < 0 || r.type != '*' || r.i != 2 || r.el[0].type != ':' || r.el[1].type != ':') {
                snprintf(t->err, sizeof(t->err), "unexpected reply from redis: %.*s",
                         r.type == '-' ? (int)r.len : 40, r.type == '-' ? r.s : buf + off);
                t->ok = false;
                resp_free(&r);
                break;
            }
            const struct wl_op *op = &wc->ops[acked];
            if ((r.el[0].i < 0) != op->retransmit) {
                snprintf(t->err, sizeof(t->err), "batch %u: retransmission not recognised",
                         op->batch + 1);
                t->ok = false;
            } else if (op->retransmit) {
                t->retransmits++;
            } else {
                t->accepted += (uint64_t)r.el[0].i;
                t->duplicate += (uint64_t)r.el[1].i;
                lat_add(&t->reply, (now_s() - sent[acked]) * 1e3);
                atomic_fetch_add(&t->votes_done, wc->batches[op->batch].n);
            }
            resp_free(&r);
            acked++;
            off += (size_t)n;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    t->ops_done = acked;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(sent);
    atomic_store(&t->finished, 1);
    return NULL;
}

static int used_memory(struct rconn *rc, uint64_t *out)
{
    const char *argv[] = {"INFO", "memory"};
    struct resp r;
    if (rc_call(rc, &r, 2, argv) != 0 || r.type != '$')
        return -1;
    const char *p = memmem(r.s, r.len, "used_memory:", 12);
    if (!p)
        return -1;
    *out = strtoull(p + 12, NULL, 10);
    return 0;
}

void peer_redis_run(struct bench_ctx *c, struct peer_result *r, bool fsync_always)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    char bin[1200];
    const char *redis = redis_find(o, bin, sizeof(bin));
    if (!redis) {
        peer_fail(r, "redis-server not found (install it: apt-get install redis-server; or "
                     "give --redis-server PATH)");
        return;
    }
    char dir[1200], log[1300], port_s[16];
    const char *fsync_mode = fsync_always ? "always" : "everysec";
    snprintf(dir, sizeof(dir), "%s/redis-%s", c->workdir, fsync_mode);
    snprintf(log, sizeof(log), "%s.log", dir);
    mkdir(dir, 0700);
    int port = free_port();
    snprintf(port_s, sizeof(port_s), "%d", port);
    char *aof[] = {(char *)redis,
                   "--port",
                   port_s,
                   "--bind",
                   "127.0.0.1",
                   "--dir",
                   dir,
                   "--daemonize",
                   "no",
                   "--save",
                   "",
                   "--appendonly",
                   "yes",
                   "--appendfsync",
                   (char *)fsync_mode,
                   "--auto-aof-rewrite-percentage",
                   "0",
                   NULL};
    progress(r->name,
             "starting %s on port %d (appendonly yes, appendfsync %s, no auto-rewrite, "
             "no RDB)",
             redis, port, fsync_mode);
    pid_t pid = proc_spawn(aof, log);
    struct rconn rc = {.fd = -1};
    struct rd_run run = {0};
    struct lat reply = {0};
    struct wl_part part = {0};
    size_t *ops_done = calloc(w->n_collectors, sizeof(size_t));
    uint64_t mem0 = 0, mem1 = 0;
    if (!ops_done)
        abort();
    if (pid < 0) {
        peer_fail(r, "cannot start redis-server");
        free(ops_done);
        return;
    }
    double until = now_s() + 30;
    while (rc.fd < 0 && now_s() < until && !bench_stop) {
        int code;
        if (!proc_alive(pid, &code)) {
            pid = 0;
            peer_fail(r, "redis-server exited (code %d) at start", code);
            file_tail(log, 20);
            goto done;
        }
        rc.fd = tcp_connect(port);
        if (rc.fd < 0)
            sleep_ms(50);
    }
    struct resp rep;
    const char *ping[] = {"PING"};
    if (rc.fd < 0 || rc_call(&rc, &rep, 1, ping) != 0 || rep.type != '+') {
        peer_fail(r, "redis-server does not answer PING");
        file_tail(log, 20);
        goto done;
    }
    const char *load[] = {"SCRIPT", "LOAD", lua_script};
    if (rc_call(&rc, &rep, 3, load) != 0 || rep.type != '$' || rep.len != 40) {
        peer_fail(r, "SCRIPT LOAD failed");
        goto done;
    }
    char sha[41];
    memcpy(sha, rep.s, 40);
    sha[40] = 0;
    used_memory(&rc, &mem0);

    /* Every command is encoded before the clock starts, as tallyd's frames are: those of
     * the prefix this peer gets (--peer-votes). */
    run.c = c;
    run.port = port;
    run.cmds = calloc(w->n_collectors, sizeof(*run.cmds));
    run.cols = calloc(w->n_collectors, sizeof(*run.cols));
    if (!run.cmds || !run.cols)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        const struct wl_collector *wc = &w->collectors[k];
        run.cmds[k] = calloc(wc->n_batches + 1, sizeof(struct cmdbuf));
        if (!run.cmds[k])
            abort();
        for (size_t b = 0; b < c->batches_limit[k]; b++) {
            const struct wl_batch *wb = &wc->batches[b];
            struct cmdbuf *cb = &run.cmds[k][b];
            char id[64];
            snprintf(id, sizeof(id), "%s:%llu", wc->id, (unsigned long long)wb->seq);
            cb_array(cb, 7 + 2 * (size_t)wb->n);
            cb_str(cb, "EVALSHA");
            cb_str(cb, sha);
            cb_str(cb, "3");
            cb_str(cb, K_BALLOTS);
            cb_str(cb, K_COUNTS);
            cb_str(cb, K_BATCHES);
            cb_str(cb, id);
            for (uint32_t i = 0; i < wb->n; i++) {
                char pid_s[16];
                cb_arg(cb, &wb->ballots[i], 8); /* the token's 8 bytes, as they are */
                snprintf(pid_s, sizeof(pid_s), "%u", wb->projects[i]);
                cb_str(cb, pid_s);
            }
        }
    }
    run.deadline = now_s() + o->timeout_s;
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct rd_col *t = &run.cols[k];
        t->run = &run;
        t->k = k;
        if (pthread_create(&t->thread, NULL, rd_col_main, t) == 0) {
            t->started = true;
        } else {
            atomic_fetch_add(&run.ready, 1);
            atomic_store(&t->finished, 1);
            snprintf(t->err, sizeof(t->err), "pthread_create failed");
        }
    }
    while (atomic_load(&run.ready) < (int)w->n_collectors && !bench_stop)
        sleep_ms(1);
    double t0 = now_s(), last = t0;
    run.budget_end = t0 + o->peer_seconds;
    atomic_store(&run.go, 1);
    progress(r->name, "%zu connections, window %u, for at most %g s", w->n_collectors, o->window,
             o->peer_seconds);
    for (;;) {
        bool all = true;
        for (size_t k = 0; k < w->n_collectors; k++)
            if (!atomic_load(&run.cols[k].finished))
                all = false;
        if (all)
            break;
        sleep_ms(20);
        double now = now_s();
        if (now - last >= 1.0) {
            uint64_t d = 0;
            for (size_t k = 0; k < w->n_collectors; k++)
                d += atomic_load(&run.cols[k].votes_done);
            progress(r->name, "%5.1f s: %llu votes counted (%.0f votes/s)", now - t0,
                     (unsigned long long)d, (double)d / (now - t0));
            last = now;
        }
    }
    double t_end = now_s();
    uint64_t acc = 0, dup = 0, retx = 0;
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct rd_col *t = &run.cols[k];
        if (t->started)
            pthread_join(t->thread, NULL);
        if (!t->ok && !r->failed)
            peer_fail(r, "collector %s: %s", w->collectors[k].id, t->err);
        lat_merge(&reply, &t->reply);
        acc += t->accepted;
        dup += t->duplicate;
        retx += t->retransmits;
        ops_done[k] = t->ops_done;
    }
    if (r->failed)
        goto done;
    peer_part_done(c, r, ops_done, t0, t_end, &part);

    used_memory(&rc, &mem1);
    const char *hgetall[] = {"HGETALL", K_COUNTS};
    if (rc_call(&rc, &rep, 2, hgetall) != 0 || rep.type != '*') {
        peer_fail(r, "HGETALL failed");
        goto done;
    }
    size_t n = rep.i > 0 ? (size_t)rep.i / 2 : 0;
    uint32_t *ids = calloc(n + 1, sizeof(uint32_t));
    uint64_t *votes = calloc(n + 1, sizeof(uint64_t));
    if (!ids || !votes)
        abort();
    for (size_t i = 0; i < n; i++) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)rep.el[2 * i].len, rep.el[2 * i].s);
        ids[i] = (uint32_t)strtoul(tmp, NULL, 10);
        snprintf(tmp, sizeof(tmp), "%.*s", (int)rep.el[2 * i + 1].len, rep.el[2 * i + 1].s);
        votes[i] = strtoull(tmp, NULL, 10);
    }
    resp_free(&rep);
    char why[300];
    r->ran = true;
    r->exact = wl_check(w, part.truth, ids, votes, n, why, sizeof(why));
    free(ids);
    free(votes);
    if (r->exact &&
        (acc != part.n_distinct || dup != part.n_duplicate || retx != part.n_retransmits)) {
        snprintf(why, sizeof(why),
                 "replies: accepted %llu duplicate %llu retransmits %llu; expected %llu %llu %llu",
                 (unsigned long long)acc, (unsigned long long)dup, (unsigned long long)retx,
                 (unsigned long long)part.n_distinct, (unsigned long long)part.n_duplicate,
                 (unsigned long long)part.n_retransmits);
        r->exact = false;
    }
    if (!r->exact) {
        snprintf(r->note, sizeof(r->note), "%s", why);
        progress(r->name, "NOT EXACT: %s", why);
    }
    double per_ballot =
        mem1 > mem0 ? (double)(mem1 - mem0) / (double)(part.n_distinct ? part.n_distinct : 1) : 0;
    sb_printf(&r->json,
              ", \"what\": \"redis-server with AOF, appendfsync %s; one EVALSHA per batch (SADD "
              "batch id; SADD ballot per vote, the new ones summed per project in the script, one "
              "HINCRBY per project), %zu connections pipelined with a window of %u; votes_per_s "
              "counts votes until the last reply\", \"config\": \"appendonly yes, appendfsync "
              "%s, auto-aof-rewrite-percentage 0, save \\\"\\\": %s\", "
              "\"used_memory_bytes_per_ballot\": %.1f",
              fsync_mode, w->n_collectors, o->window, fsync_mode,
              fsync_always ? "a reply is sent after the fsync of the AOF that holds it"
                           : "a reply may still lose up to 1 s of writes",
              per_ballot);
    sb_lat(&r->json, "reply_ms", &reply);
    sb_part(&r->json, c, &part, ops_done);
    snprintf(r->table, sizeof(r->table), "%sAOF %s; reply p50/p99 %.0f/%.0f ms; %.0f B/ballot",
             r->part ? "part of the workload (see JSON workload_part); " : "", fsync_mode,
             lat_pct(&reply, 0.5), lat_pct(&reply, 0.99), per_ballot);
    progress(r->name, "%.0f votes/s over %llu votes in %.1f s, %s", r->votes_per_s,
             (unsigned long long)r->votes, r->wall_s, r->exact ? "exact" : "NOT EXACT");

done:
    if (rc.fd >= 0) {
        const char *shut[] = {"SHUTDOWN", "NOSAVE"};
        struct resp ignore;
        rc_call(&rc, &ignore, 2, shut); /* the server closes the connection: no reply */
        close(rc.fd);
    }
    free(rc.buf);
    if (pid > 0 && proc_stop(pid, SIGTERM, 30000) < 0)
        progress(r->name, "redis-server had to be killed");
    lat_free(&reply);
    wl_part_free(&part);
    free(ops_done);
    if (run.cols) {
        for (size_t k = 0; k < w->n_collectors; k++)
            lat_free(&run.cols[k].reply);
        free(run.cols);
    }
    if (run.cmds) {
        for (size_t k = 0; k < w->n_collectors; k++) {
            for (size_t b = 0; b < c->batches_limit[k]; b++)
                free(run.cmds[k][b].p);
            free(run.cmds[k]);
        }
        free(run.cmds);
    }
}
