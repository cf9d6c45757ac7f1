/* SQLite's I/O-failure loop over libtally's spool (src/client/spool.c, compiled here with
 * TALLY_FAULT_INJECTION): one scenario through the public API against an in-thread fake tallyd
 * (spool, release, crash leftovers, reopen), run with each system call failing in turn (ENOSPC,
 * EIO, EDQUOT, EROFS; once or for good; writing nothing or half). Checks: the API reports it
 * with path and errno; a fault-free reopen loses or alters nothing reported spooled, reuses
 * no seq, keeps the newest cursor, and holds a durable digest for exactly every batch the
 * state calls durable. Attempt 2 spools votes naming their table, attempt 4 a sheet batch
 * (the spool's first: its state file goes to version 2 first). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/spool.h"
#include "core/arena.h"
#include "tally/client.h"
#include "wire/wire.h"

#define COLLECTOR "col-faults"
#define MAX_SEQ 64      /* far above what one scenario spools */
#define MAX_ATTEMPTS 64 /* tally_client_spool calls in one scenario, failed ones included */
#define FAKE_BUF (1u << 20)
#define WAIT_MS 3000       /* any wait longer than this is a hang: reported, not waited out */
#define MAX_RUNS_PER 10000 /* a loop that never ends its scenario is a bug too */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- what one run was told, and what it found ---- */

struct run {
    int err;        /* the injected errno */
    unsigned flags; /* CLIENT_SPOOL_FAULT_* */
    bool sticky;    /* failing for good from the nth call on */
    unsigned long nth;
    char dir[128];
    uint32_t attempt;           /* tally_client_spool calls so far (1-based content tags) */
    uint32_t reported[MAX_SEQ]; /* seq -> attempt the API reported spooled under it */
    bool failed_attempt[MAX_ATTEMPTS + 1]; /* attempts the API reported as failed */
    uint64_t max_reported;
    uint64_t durable_told; /* the fake's durable seq as told to the client */
    bool api_error;        /* some public call reported a failure */
    int problems;          /* invariants broken in this run */
};

/* Totals over all runs. */
static struct {
    unsigned long runs, faults_fired, api_errors, survivors, discarded, problems;
    unsigned long clean_calls; /* system calls of the scenario when none fails */
    char example[2][512];      /* what a collector is told: from tally_client_new, and later */
} total;

static void problem(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct run *r, const char *fmt, ...)
{
    r->problems++;
    if (total.problems + (unsigned long)r->problems > 40)
        return; /* enough to go on with */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s %s%s nth %lu: ", strerror(r->err), r->sticky ? "sticky" : "once",
            r->flags & CLIENT_SPOOL_FAULT_SHORT ? " short-write" : "", r->nth);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A failure the public API reported: it must name the spool and the injected errno. */
static void check_message(struct run *r, const char *what, const char *msg)
{
    r->api_error = true;
    if (!client_spool_fault_fired()) {
        problem(r, "%s failed with no fault injected yet: %s", what, msg);
        return;
    }
    if (!strstr(msg, strerror(r->err)) || !strstr(msg, r->dir))
        problem(r, "%s: message lacks the path or the errno: \"%s\"", what, msg);
    char *ex = total.example[strcmp(what, "tally_client_new") != 0];
    if (!ex[0])
        snprintf(ex, sizeof(total.example[0]), "%s: %s", what, msg);
}

static void content(uint32_t attempt, uint64_t *ballots, uint32_t *projects, size_t *n)
{
    *n = 2 + attempt % 3;
    for (size_t i = 0; i < *n; i++) {
        ballots[i] = (uint64_t)attempt * 1000 + i;
        projects[i] = (uint32_t)(i % 5 + 1);
    }
}

/* Attempts that spool something else than plain votes: the same content naming tables, or
 * one tally sheet of table "t<attempt>" (version attempt, projects 1 and 2). */
#define TABLES_ATTEMPT 2u
#define SHEET_ATTEMPT 4u

static bool sheet_is(const Tally__Batch *b, uint32_t att)
{
    char id[16];
    snprintf(id, sizeof(id), "t%" PRIu32, att);
    if (b->n_ballots || b->n_sheets != 1)
        return false;
    const Tally__Sheet *sh = b->sheets[0];
    return strcmp(sh->table_id, id) == 0 && sh->version == att && sh->n_projects == 2 &&
           sh->n_votes == 2 && sh->projects[0] == 1 && sh->projects[1] == 2 &&
           sh->votes[0] == att && sh->votes[1] == 1;
}

static size_t cursor_of(uint32_t attempt, char *out, size_t len)
{
    return (size_t)snprintf(out, len, "cur-%" PRIu32, attempt);
}

/* The attempt whose content batch b carries, or 0 if it is nobody's. */
static uint32_t batch_attempt(const struct client_spool_batch *b)
{
    struct arena a;
    arena_init(&a, 1024);
    Tally__Frame *f;
    uint32_t att = 0;
    if (wire_frame_decode(b->frame + 4, b->frame_len - 4, &a, &f) == WIRE_OK &&
        f->msg_case == TALLY__FRAME__MSG_BATCH && f->batch->n_sheets == 1) {
        uint32_t cand = f->batch->sheets[0]->version;
        if (f->batch->seq == b->seq && sheet_is(f->batch, cand))
            att = cand;
    } else if (f && f->msg_case == TALLY__FRAME__MSG_BATCH && f->batch->n_ballots > 0) {
        uint32_t cand = (uint32_t)(f->batch->ballots[0] / 1000);
        uint64_t ballots[8];
        uint32_t projects[8];
        size_t n;
        content(cand, ballots, projects, &n);
        if (f->batch->seq == b->seq && f->batch->n_ballots == n && f->batch->n_projects == n &&
            memcmp(f->batch->ballots, ballots, n * sizeof(*ballots)) == 0 &&
            memcmp(f->batch->projects, projects, n * sizeof(*projects)) == 0)
            att = cand;
    }
    arena_cleanup(&a);
    return att;
}

/* ---- the fake tallyd ---- */

struct fake {
    int lfd, fd;
    uint16_t port;
    uint8_t *buf;
    size_t len;
    struct arena arena;
};

static void fake_listen(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(f->lfd, 8) < 0 || getsockname(f->lfd, (struct sockaddr *)&sa, &len) < 0) {
        perror("fake tallyd");
        exit(1);
    }
    f->port = ntohs(sa.sin_port);
    f->buf = malloc(FAKE_BUF);
    if (!f->buf)
        abort();
    arena_init(&f->arena, 1 << 16);
}

static void fake_close(struct fake *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->len = 0;
}

static void fake_cleanup(struct fake *f)
{
    fake_close(f);
    close(f->lfd);
    free(f->buf);
    arena_cleanup(&f->arena);
}

/* Pumps the client briefly. Returns 0, or the fatal status it reported. */
static int pump(struct tally_client *c)
{
    int rc = tally_client_pump(c, 5);
    return rc == TALLY_CLIENT_ERR_INTR ? 0 : rc;
}

/* The fake's waits: 0 when done, a client status < 0 when the client failed meanwhile, or 1
 * on a timeout or a closed connection (a hang or a bug: the caller reports it). */
static int fake_accept(struct fake *f, struct tally_client *c)
{
    fake_close(f);
    int64_t end = mono_ms() + WAIT_MS;
    while (mono_ms() < end) {
        f->fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (f->fd >= 0) {
            /* Acks go out as small writes one after another: Nagle would hold each second
             * one for the client's delayed ACK, 40 ms a run. */
            int one = 1;
            (void)setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            return 0;
        }
        int rc = pump(c);
        if (rc < 0)
            return rc;
    }
    return 1;
}

static int fake_read(struct fake *f, struct tally_client *c, Tally__Frame **out)
{
    arena_reset(&f->arena);
    int64_t end = mono_ms() + WAIT_MS;
    for (;;) {
        size_t plen;
        enum wire_status ws = wire_frame_peek(f->buf, f->len, FAKE_BUF - 4, &plen);
        if (ws == WIRE_OK) {
            if (wire_frame_decode(f->buf + 4, plen, &f->arena, out) != WIRE_OK)
                return 1;
            memmove(f->buf, f->buf + 4 + plen, f->len - 4 - plen);
            f->len -= 4 + plen;
            return 0;
        }
        if (ws != WIRE_NEED_MORE)
            return 1;
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) {
            ssize_t n = recv(f->fd, f->buf + f->len, FAKE_BUF - f->len, 0);
            if (n <= 0) {
                /* The client closed: a fatal status explains it. */
                int rc = pump(c);
                return rc < 0 ? rc : 1;
            }
            f->len += (size_t)n;
            continue;
        }
        if (mono_ms() >= end)
            return 1;
        int rc = pump(c);
        if (rc < 0)
            return rc;
    }
}

static void fake_send(struct fake *f, const Tally__Frame *fr)
{
    uint8_t out[512];
    size_t n = wire_frame_size(fr);
    if (n > sizeof(out))
        abort();
    wire_frame_encode(fr, out);
    /* A client that just failed closes its end; what it misses then does not matter. */
    (void)send(f->fd, out, n, MSG_NOSIGNAL);
}

static void fake_welcome(struct fake *f, uint64_t durable)
{
    Tally__CollectorTotals t = TALLY__COLLECTOR_TOTALS__INIT;
    t.batches = durable;
    Tally__Welcome w = TALLY__WELCOME__INIT;
    w.durable_seq = durable;
    w.protocol_version = TALLY_PROTOCOL_VERSION;
    w.max_batch_votes = 1000;
    w.max_frame_bytes = 1 << 20;
    w.totals = &t;
    w.writer_epoch = 1;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_WELCOME;
    fr.welcome = &w;
    fake_send(f, &fr);
}

/* seq 0: a durable-only ack with totals. */
static void fake_ack(struct fake *f, uint64_t seq, uint64_t durable)
{
    Tally__CollectorTotals t = TALLY__COLLECTOR_TOTALS__INIT;
    t.batches = durable;
    Tally__Ack a = TALLY__ACK__INIT;
    a.seq = seq;
    a.durable_seq = durable;
    if (seq == 0)
        a.durable_totals = &t;
    Tally__Frame fr = TALLY__FRAME__INIT;
    fr.msg_case = TALLY__FRAME__MSG_ACK;
    fr.ack = &a;
    fake_send(f, &fr);
}

/* ---- the scenario ---- */

static struct tally_client *client_open(struct run *r, uint16_t port)
{
    struct tally_client_config cfg = {
        .host = "127.0.0.1",
        .port = port,
        .collector_id = COLLECTOR,
        .spool_dir = r->dir,
        .connect_timeout_ms = 2000,
    };
    char err[512] = "";
    struct tally_client *c = tally_client_new(&cfg, err, sizeof(err));
    if (!c)
        check_message(r, "tally_client_new", err);
    return c;
}

static void client_error(struct run *r, struct tally_client *c, const char *what, int rc)
{
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    if (rc != TALLY_CLIENT_ERR_IO)
        problem(r, "%s returned %s, not an I/O error (%s)", what, tally_client_strerror(rc),
                st.last_error);
    check_message(r, what, st.last_error);
}

/* One tally_client_spool call. Returns 0, or -1 when the client failed (reported). */
static int spool_one(struct run *r, struct tally_client *c)
{
    uint32_t att = ++r->attempt;
    if (att > MAX_ATTEMPTS)
        abort();
    uint64_t ballots[8];
    uint32_t projects[8];
    size_t n;
    content(att, ballots, projects, &n);
    char cur[32];
    size_t cur_len = cursor_of(att, cur, sizeof(cur));
    uint64_t seq = 0;
    int rc;
    if (att == SHEET_ATTEMPT) {
        char id[16];
        snprintf(id, sizeof(id), "t%" PRIu32, att);
        const uint32_t sp[2] = {1, 2}, sv[2] = {att, 1};
        struct tally_client_sheet sh = {
            .table_id = id, .version = att, .projects = sp, .votes = sv, .n = 2};
        rc = tally_client_spool_sheets(c, &sh, 1, cur, cur_len, &seq);
    } else if (att == TABLES_ATTEMPT) {
        const char *const tables[] = {"t-a", "t-b"};
        uint32_t vt[8];
        for (size_t i = 0; i < n; i++)
            vt[i] = (uint32_t)(i % 3);
        rc = tally_client_spool_tables(c, ballots, projects, vt, n, tables, 2, cur, cur_len, &seq);
    } else {
        rc = tally_client_spool(c, ballots, projects, n, cur, cur_len, &seq);
    }
    if (rc < 0) {
        r->failed_attempt[att] = true;
        client_error(r, c, "tally_client_spool", rc);
        return -1;
    }
    if (seq == 0 || seq >= MAX_SEQ) {
        problem(r, "spooled under seq %" PRIu64, seq);
        return -1;
    }
    if (r->reported[seq] || seq <= r->max_reported)
        problem(r, "seq %" PRIu64 " handed out again (attempt %" PRIu32 ")", seq, att);
    r->reported[seq] = att;
    r->max_reported = seq;
    return 0;
}

/* The fake reads batches first..last, checking they are what the API reported. */
static int fake_take(struct run *r, struct fake *f, struct tally_client *c, uint64_t first,
                     uint64_t last)
{
    for (uint64_t s = first; s <= last; s++) {
        Tally__Frame *fr;
        int rc = fake_read(f, c, &fr);
        if (rc < 0) {
            client_error(r, c, "tally_client_pump", rc);
            return -1;
        }
        if (rc > 0 || fr->msg_case != TALLY__FRAME__MSG_BATCH) {
            problem(r, "fake tallyd: no batch %" PRIu64 " from the client", s);
            return -1;
        }
        uint64_t seq = fr->batch->seq;
        if (seq != s || seq >= MAX_SEQ || !r->reported[seq]) {
            problem(r, "fake tallyd got seq %" PRIu64 ", wanted %" PRIu64 " (reported: %s)", seq, s,
                    seq < MAX_SEQ && r->reported[seq] ? "yes" : "no");
            return -1;
        }
        uint64_t ballots[8];
        uint32_t projects[8];
        size_t n;
        content(r->reported[seq], ballots, projects, &n);
        if (r->reported[seq] == SHEET_ATTEMPT) {
            if (!sheet_is(fr->batch, SHEET_ATTEMPT))
                problem(r, "fake tallyd: sheet batch %" PRIu64 " is not the one spooled", seq);
            continue;
        }
        if ((r->reported[seq] == TABLES_ATTEMPT) != (fr->batch->n_vote_tables == n))
            problem(r, "fake tallyd: batch %" PRIu64 " has %zu vote_tables", seq,
                    fr->batch->n_vote_tables);
        if (fr->batch->n_ballots != n ||
            memcmp(fr->batch->ballots, ballots, n * sizeof(*ballots)) != 0 ||
            memcmp(fr->batch->projects, projects, n * sizeof(*projects)) != 0)
            problem(r, "fake tallyd: batch %" PRIu64 " is not the content spooled", seq);
    }
    return 0;
}

/* Acks batches first..last (durable as told so far), then says durable up to durable, and
 * pumps until the client released them. Returns 0, or -1 when the client failed. */
static int fake_make_durable(struct run *r, struct fake *f, struct tally_client *c, uint64_t first,
                             uint64_t last, uint64_t durable)
{
    for (uint64_t s = first; s <= last; s++)
        fake_ack(f, s, r->durable_told);
    fake_ack(f, 0, durable);
    r->durable_told = durable;
    int64_t end = mono_ms() + WAIT_MS;
    for (;;) {
        struct tally_client_stats st;
        tally_client_stats(c, &st);
        if (st.durable_seq >= durable)
            return 0;
        if (mono_ms() >= end) {
            problem(r, "client never released up to %" PRIu64, durable);
            return -1;
        }
        int rc = pump(c);
        if (rc < 0) {
            client_error(r, c, "tally_client_pump", rc);
            return -1;
        }
    }
}

/* Writes len bytes of garbage into dir/name, as a crash could leave them. */
static void plant(const struct run *r, const char *name, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", r->dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    for (size_t i = 0; i < len; i++)
        fputc('x', f);
    fclose(f);
}

/* Open, spool 1..3, session: 1..2 durable, spool 4..5, 3..4 durable, close, leftovers of a
 * crash planted, reopen, spool 6, close. Stops at the first failure the API reports. */
static void scenario(struct run *r, struct fake *f)
{
    struct tally_client *c = client_open(r, f->port);
    if (!c)
        return;
    for (int i = 0; i < 3; i++)
        if (spool_one(r, c) < 0)
            goto out;
    Tally__Frame *hello = NULL;
    int rc = fake_accept(f, c);
    if (rc == 0)
        rc = fake_read(f, c, &hello);
    if (rc < 0) {
        client_error(r, c, "tally_client_pump", rc);
        goto out;
    }
    if (rc > 0 || hello->msg_case != TALLY__FRAME__MSG_HELLO) {
        problem(r, "fake tallyd: no Hello from the client");
        goto out;
    }
    fake_welcome(f, 0);
    if (fake_take(r, f, c, 1, 3) < 0 || fake_make_durable(r, f, c, 1, 2, 2) < 0)
        goto out;
    for (int i = 0; i < 2; i++)
        if (spool_one(r, c) < 0)
            goto out;
    if (fake_take(r, f, c, 4, 5) < 0 || fake_make_durable(r, f, c, 3, 5, 4) < 0)
        goto out;
    tally_client_free(c);
    fake_close(f);
    /* What a crash would have left for the next open to clean up: a torn newest batch, the
     * file of a batch already durable whose delete did not happen, a stale state.tmp. */
    plant(r, "batch-00000000000000000006.pb", 20);
    plant(r, "batch-00000000000000000003.pb", 60);
    plant(r, "state.tmp", 10);
    c = client_open(r, f->port);
    if (!c)
        return;
    (void)spool_one(r, c);
out:
    tally_client_free(c);
    fake_close(f);
}

/* ---- the check, from a fault-free reopen ---- */

static void rm_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(path);
}

struct digests_seen {
    uint64_t n;
    bool out_of_order;
};

static void digest_seen(void *arg, uint64_t seq, const uint8_t digest[32])
{
    struct digests_seen *ds = arg;
    (void)digest;
    ds->n++;
    if (seq != ds->n)
        ds->out_of_order = true;
}

static void verify(struct run *r)
{
    struct client_spool s;
    if (client_spool_open(&s, r->dir, COLLECTOR) < 0) {
        problem(r, "spool does not reopen once the fault is gone: %s", s.err);
        return;
    }
    if (s.durable_seq > r->durable_told)
        problem(r, "spool says durable up to %" PRIu64 ", tallyd said %" PRIu64, s.durable_seq,
                r->durable_told);
    /* Lost: reported spooled, neither durable nor pending intact. */
    for (uint64_t seq = 1; seq <= r->max_reported; seq++) {
        if (!r->reported[seq] || seq <= s.durable_seq)
            continue;
        const struct client_spool_batch *b = client_spool_get(&s, seq);
        uint32_t att = b ? batch_attempt(b) : 0;
        if (att != r->reported[seq])
            problem(r, "LOST batch %" PRIu64 " (attempt %" PRIu32 "): %s", seq, r->reported[seq],
                    b ? "other content" : "missing");
    }
    /* Unexpected: pending on disk without having been reported spooled. */
    uint32_t newest = 0;
    for (size_t i = 0; i < s.count; i++) {
        const struct client_spool_batch *b = &s.batches[i];
        uint32_t att = batch_attempt(b);
        newest = att;
        if (b->seq < MAX_SEQ && r->reported[b->seq] == att && att)
            continue;
        if (att && att <= MAX_ATTEMPTS && r->failed_attempt[att]) {
            /* A batch reported failed whose file could not be deleted either: it goes out
             * after the restart, and the cursor says so (checked below). */
            total.survivors++;
            if (!r->sticky)
                problem(r, "batch %" PRIu64 " reported failed survived a one-off fault", b->seq);
            continue;
        }
        problem(r, "UNEXPECTED batch %" PRIu64 " (content of attempt %" PRIu32 ")", b->seq, att);
    }
    /* The digests: one record for each durable seq, in order, none beyond. */
    struct digests_seen ds = {0};
    char derr[256];
    if (client_spool_digests(&s, digest_seen, &ds, derr, sizeof(derr)) < 0)
        problem(r, "digests do not read back: %s", derr);
    if (ds.n != s.durable_seq || ds.out_of_order)
        problem(r, "digests: %" PRIu64 " records%s for durable seq %" PRIu64, ds.n,
                ds.out_of_order ? " out of order" : "", s.durable_seq);
    total.discarded += s.discarded_seq != 0;
    if (s.next_seq <= r->max_reported)
        problem(r, "REUSE: next seq %" PRIu64 " but seq %" PRIu64 " was reported spooled",
                s.next_seq, r->max_reported);
    /* The cursor: that of the newest batch on disk, else of the newest one reported. */
    if (!newest && r->max_reported)
        newest = r->reported[r->max_reported];
    char want[32] = "";
    size_t want_len = newest ? cursor_of(newest, want, sizeof(want)) : 0;
    if (s.cursor_len != want_len || memcmp(s.cursor, want, want_len) != 0)
        problem(r, "cursor is \"%.*s\", want \"%s\"", (int)s.cursor_len, (const char *)s.cursor,
                want);
    client_spool_close(&s);
}

/* ---- the loop ---- */

static void run_one(struct fake *f, int err, unsigned flags, unsigned long nth, const char *root,
                    bool *fired)
{
    bool sticky = flags & CLIENT_SPOOL_FAULT_STICKY;
    struct run *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->err = err;
    r->sticky = sticky;
    r->flags = flags;
    r->nth = nth;
    snprintf(r->dir, sizeof(r->dir), "%s/spool", root);
    client_spool_fault_arm(nth, err, flags);
    scenario(r, f);
    /* A stuck disk stays stuck for one more open: it must fail as cleanly. */
    if (client_spool_fault_fired() && sticky) {
        struct tally_client *c = client_open(r, f->port);
        if (c) {
            problem(r, "spool opened on a disk that fails every call");
            tally_client_free(c);
        }
    }
    *fired = client_spool_fault_fired();
    unsigned long calls = client_spool_fault_calls();
    client_spool_fault_arm(0, 0, 0);
    if (!*fired)
        total.clean_calls = calls;
    if (*fired && !r->api_error)
        problem(r, "the fault was swallowed: no call reported an error");
    if (!*fired && r->api_error)
        problem(r, "an error without a fault");
    verify(r);
    total.runs++;
    total.faults_fired += *fired;
    total.api_errors += r->api_error;
    total.problems += (unsigned long)r->problems;
    rm_dir(r->dir);
    free(r);
}

int main(void)
{
    static const int errs[] = {ENOSPC, EIO, EDQUOT, EROFS};
    /* tmpfs where there is one: ~6,000 fsyncs cost half a minute on a real disk here, and
     * what is tested is what the spool makes of failing calls, not the disk. */
    char root[64];
    snprintf(root, sizeof(root), "%s/test_spool_faults-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    struct fake f;
    fake_listen(&f);
    int64_t t0 = mono_ms();
    for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
        for (unsigned flags = 0; flags < 4; flags++) {
            /* Call nth fails, for nth = 1, 2, ... until the scenario makes fewer calls. */
            unsigned long points = 0;
            for (bool fired = true; fired; points += fired) {
                run_one(&f, errs[e], flags, points + 1, root, &fired);
                if (points > MAX_RUNS_PER) {
                    fprintf(stderr, "FAIL the scenario never runs out of calls\n");
                    return 1;
                }
            }
            printf("spool faults: %-26s %-6s %-11s %3lu failure points\n", strerror(errs[e]),
                   flags & CLIENT_SPOOL_FAULT_STICKY ? "sticky" : "once",
                   flags & CLIENT_SPOOL_FAULT_SHORT ? "short-write" : "", points);
        }
    }
    fake_cleanup(&f);
    rmdir(root);
    printf("spool faults: %lu runs, %lu calls in the fault-free scenario, %lu faults, %lu "
           "reported by the API, %lu failed batches that survived whole, %lu torn ones "
           "discarded, %lu problems, %.1f s\n",
           total.runs, total.clean_calls, total.faults_fired, total.api_errors, total.survivors,
           total.discarded, total.problems, (double)(mono_ms() - t0) / 1000.0);
    printf("spool faults: e.g. %s\nspool faults: e.g. %s\n", total.example[0], total.example[1]);
    return total.problems ? 1 : 0;
}
