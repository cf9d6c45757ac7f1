/* The chaos harness: a seeded generator that owns the truth, real tally-push collectors fed
 * through FIFOs (they spool and resend until durable), one or two real tallyd on one
 * database, a nemesis schedule drawn from the seed (tallyd SIGKILL, PostgreSQL crash, backend
 * termination, fault proxies, collector SIGKILL, a second and a paused writer, a full spool),
 * then heal + drain and a checker that compares the durable record with the truth and prints
 * one line. Exit 0 when nothing was lost, duplicated or unexpected and nothing hung; 1
 * otherwise; 2 on usage or setup errors. The proxies and feeders live in io.c. */
#include "chaos.h"
#include "support.h"

#include "push/push.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

#define MAX_COLLECTORS 16
#define PROJECT_BASE 1000u
#define UNKNOWN_PROJECT 999u
#define MAX_LABELS 24
#define MAX_SAMPLES 4096

/* ---- options ---- */

enum nemesis {
    N_KILL,
    N_PG_STOP,
    N_PG_BACKEND,
    N_PROXY,
    N_COLLECTOR_KILL,
    N_WRITERS,
    N_SPOOL_FULL,
    N_COUNT
};
static const char *const nemesis_names[N_COUNT] = {
    "kill", "pg-stop", "pg-backend", "proxy", "collector-kill", "writers", "spool-full"};

static const char *const proxy_kinds[] = {"db-cut", "db-commit", "latency",
                                          "slice",  "rst",       "blackhole"};

static struct {
    bool on[N_COUNT];
    unsigned proxy_kinds; /* bit k: proxy_kinds[k] alone was asked for (0: all of them) */
    char list[256];
    uint32_t cycles;
    uint64_t seed;
    bool long_run;
    uint32_t collectors;
    uint32_t projects;
    double rate;
    uint32_t batch;
    int gap_min, gap_max;
    double repeat_rate, unknown_rate;
    int resume_timeout_ms;
} opt = {
    .cycles = 10,
    .seed = 1,
    .collectors = 4,
    .projects = 300,
    .rate = 3000,
    .batch = 50,
    .gap_min = 100,
    .gap_max = 600,
    .repeat_rate = 0.05,
    .unknown_rate = 0.01,
    .resume_timeout_ms = 30000,
};

/* ---- seeded randomness: splitmix64 ---- */

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return mix(*s);
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

/* ---- the generator: pure functions of (seed, collector, index) ----
 * Fresh vote n of collector k: voter "s<seed>-<k>-<n>", for project proj(k, n), or for the
 * unknown project when unknown(k, n). A repeat is a voter of any collector voting again for
 * the same project: whichever copy arrives first counts, so the truth does not depend on the
 * order of arrival. Called on the I/O thread. */

static uint64_t gen_rng[MAX_COLLECTORS];
static uint64_t gen_fresh[MAX_COLLECTORS];

static uint64_t key3(uint64_t k, uint64_t n, uint64_t salt)
{
    return mix(mix(opt.seed ^ salt) ^ mix(k * 0x100000001b3ull + n));
}

static bool gen_unknown(uint64_t k, uint64_t n)
{
    return (double)(key3(k, n, 11) >> 11) / 9007199254740992.0 < opt.unknown_rate;
}

static uint32_t gen_project(uint64_t k, uint64_t n)
{
    return gen_unknown(k, n) ? UNKNOWN_PROJECT
                             : PROJECT_BASE + (uint32_t)(key3(k, n, 12) % opt.projects);
}

static void gen_more(uint32_t i, char **buf, size_t *len, size_t *cap)
{
    if (*cap - *len < 64) {
        *cap = *cap ? *cap * 2 : 1 << 20;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            abort();
    }
    uint64_t k = i, n;
    if (gen_fresh[i] > 0 && rng_unit(&gen_rng[i]) < opt.repeat_rate) {
        k = rng_next(&gen_rng[i]) % opt.collectors;
        n = rng_next(&gen_rng[i]) % gen_fresh[i];
        if (gen_unknown(k, n)) {
            k = i;
            n = gen_fresh[i]++;
        }
    } else {
        n = gen_fresh[i]++;
    }
    *len += (size_t)snprintf(*buf + *len, *cap - *len, "s%" PRIu64 "-%" PRIu64 "-%" PRIu64 ",%u\n",
                             opt.seed, k, n, gen_project(k, n));
}

/* ---- the world ---- */

struct slot {
    struct ts_tallyd d;
    bool standby; /* started with --standby */
    bool stopped; /* SIGSTOP'd */
};

static struct {
    char dir[1024];
    char pg_port[16];
    char conninfo[512];  /* direct, for the harness */
    char tallyd_db[512]; /* what tallyd gets: through the PostgreSQL proxy when on */
    struct slot s[2];
    int active;
    uint16_t c_port[2]; /* where collectors connect for slot i (a proxy or tallyd itself) */
    int px_db, px_c[2];
    struct ts_proc push[MAX_COLLECTORS];
    uint32_t push_starts[MAX_COLLECTORS];
    bool may_exit[MAX_COLLECTORS]; /* the spool-full nemesis watches this one itself */
    bool spool_tmpfs;
    PGconn *mon;
    int64_t t0;
    int failures;
    char failure[8][256];
} w = {.px_db = -1, .px_c = {-1, -1}};

static void failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failure(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%6.1f s] chaos: FAILURE: %s\n", (double)(ts_now_ms() - w.t0) / 1000.0, msg);
    if (w.failures < 8)
        snprintf(w.failure[w.failures], sizeof w.failure[0], "%s", msg);
    w.failures++;
}

#define say(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "[%6.1f s] chaos: ", (double)(ts_now_ms() - w.t0) / 1000.0);               \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
    } while (0)

/* A port below the kernel's ephemeral range (as tests/pg.sh picks): a killed tallyd's port
 * must not be taken by an outgoing connection before it comes back. */
static uint16_t pick_port(uint64_t *rng)
{
    for (int i = 0; i < 500; i++) {
        uint16_t p = (uint16_t)rng_range(rng, 20000, 31999);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok && p != w.s[0].d.port && p != w.s[1].d.port && p != w.s[0].d.http_port &&
            p != w.s[1].d.http_port && p != w.c_port[0] && p != w.c_port[1])
            return p;
    }
    fprintf(stderr, "chaos: no free port\n");
    exit(2);
}

/* ---- the monitor: the harness's own session, reopened after outages ---- */

static void mon_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *mon(void)
{
    if (w.mon && PQstatus(w.mon) == CONNECTION_OK)
        return w.mon;
    if (w.mon)
        PQfinish(w.mon);
    char ci[600];
    snprintf(ci, sizeof ci, "%s connect_timeout=2", w.conninfo);
    w.mon = PQconnectdb(ci);
    if (PQstatus(w.mon) != CONNECTION_OK) {
        PQfinish(w.mon);
        w.mon = NULL;
        return NULL;
    }
    PQsetNoticeProcessor(w.mon, mon_notice, NULL);
    return w.mon;
}

/* First value of a one-row query; -1 while PostgreSQL is away. */
static int mon_u64(const char *sql, uint64_t *out)
{
    PGconn *c = mon();
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        *out = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        rc = 0;
    }
    PQclear(r);
    return rc;
}

static int durable_votes(int collector, uint64_t *out)
{
    char sql[160];
    if (collector < 0)
        snprintf(sql, sizeof sql, "SELECT coalesce(sum(votes), 0) FROM collectors");
    else
        snprintf(sql, sizeof sql, "SELECT votes FROM collectors WHERE id = 'c%d'", collector);
    return mon_u64(sql, out);
}

/* ---- recovery samples, per label ---- */

struct label {
    char name[32];
    uint32_t cycles;
    uint32_t n;
    int samples[MAX_SAMPLES]; /* ms: fault healed (or restart) -> ingest resumed */
    uint32_t n_ready;
    int ready[MAX_SAMPLES]; /* ms: restart -> /readyz 200 */
};
static struct label labels[MAX_LABELS];
static int n_labels;

static struct label *label(const char *name)
{
    for (int i = 0; i < n_labels; i++)
        if (!strcmp(labels[i].name, name))
            return &labels[i];
    if (n_labels == MAX_LABELS)
        abort();
    struct label *l = &labels[n_labels++];
    snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

static void sample(int *arr, uint32_t *n, int64_t ms)
{
    if (*n < MAX_SAMPLES)
        arr[(*n)++] = (int)ms;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile; -1 without samples. */
static int pct(int *arr, uint32_t n, double p)
{
    if (!n)
        return -1;
    qsort(arr, n, sizeof *arr, cmp_int);
    uint32_t rank = (uint32_t)ceil(p / 100.0 * n);
    return arr[rank ? rank - 1 : 0];
}

/* ---- tallyd ---- */

static int tallyd_spawn(int i, bool standby)
{
    struct ts_tallyd *d = &w.s[i].d;
    char listen[32], http[32], log[PATH_MAX];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d->port);
    snprintf(http, sizeof http, "127.0.0.1:%u", d->http_port);
    snprintf(log, sizeof log, "%s/tallyd%d-%d.log", w.dir, i, ++d->starts);
    char *argv[] = {(char *)ts_prog("tallyd"),
                    "--db",
                    w.tallyd_db,
                    "--listen",
                    listen,
                    "--http",
                    http,
                    "--checkpoint-ms",
                    "100",
                    "--log-level",
                    "info",
                    standby ? "--standby" : NULL,
                    NULL};
    w.s[i].standby = standby;
    w.s[i].stopped = false;
    return ts_spawn(&d->proc, "tallyd", argv, NULL, log);
}

static bool tallyd_running(int i)
{
    return w.s[i].d.proc.pid > 0 && !ts_proc_done(&w.s[i].d.proc);
}

/* Waits for /readyz 200 (10 ms polls); returns the wait in ms or -1 (exited or timed out). */
static int64_t tallyd_wait_ready(int i, int timeout_ms)
{
    int64_t t = ts_now_ms(), deadline = t + timeout_ms;
    while (ts_now_ms() < deadline) {
        if (!tallyd_running(i)) {
            say("tallyd %d exited (%d) before it was ready", i, ts_proc_code(&w.s[i].d.proc));
            ts_dump_tail("tallyd log", w.s[i].d.proc.err, 20);
            return -1;
        }
        if (ts_http_get(w.s[i].d.http_port, "/readyz", NULL, 0, 500) == 200)
            return ts_now_ms() - t;
        ts_sleep_ms(10);
    }
    say("tallyd %d not ready within %d ms", i, timeout_ms);
    ts_dump_tail("tallyd log", w.s[i].d.proc.err, 20);
    return -1;
}

static bool tallyd_ready_now(int i)
{
    return tallyd_running(i) && ts_http_get(w.s[i].d.http_port, "/readyz", NULL, 0, 500) == 200;
}

/* ---- collectors ---- */

static void spool_path(uint32_t i, char *out, size_t len)
{
    if (snprintf(out, len, "%s/spool-%u", w.dir, i) >= (int)len)
        abort();
}

/* tally-push for collector i reading a fresh FIFO (a restart gets a new one: the bytes left in
 * the old pipe belong to the dead process); the feeder writes the data again from byte 0,
 * which tally-push skips up to what its spool covers. */
static int push_spawn(uint32_t i)
{
    char fifo[PATH_MAX], spool[PATH_MAX], out[PATH_MAX], err[PATH_MAX], servers[64], cid[16],
        batch[16];
    uint32_t n = ++w.push_starts[i];
    snprintf(fifo, sizeof fifo, "%s/fifo-%u-%u", w.dir, i, n);
    spool_path(i, spool, sizeof spool);
    snprintf(out, sizeof out, "%s/push-%u.out", w.dir, i);
    snprintf(err, sizeof err, "%s/push-%u.err", w.dir, i);
    snprintf(servers, sizeof servers, "127.0.0.1:%u,127.0.0.1:%u", w.c_port[0], w.c_port[1]);
    snprintf(cid, sizeof cid, "c%u", i);
    snprintf(batch, sizeof batch, "%u", opt.batch);
    if (mkfifo(fifo, 0600) != 0) {
        fprintf(stderr, "chaos: mkfifo %s: %s\n", fifo, strerror(errno));
        return -1;
    }
    /* O_RDWR: the open does not wait for tally-push's; closing it is tally-push's EOF. */
    int fd = open(fifo, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "chaos: open %s: %s\n", fifo, strerror(errno));
        return -1;
    }
    /* The output file keeps only the last run's result line that counts. */
    unlink(out);
    char *argv[] = {(char *)ts_prog("tally-push"),
                    "--server",
                    servers,
                    "--collector",
                    cid,
                    "--spool",
                    spool,
                    "--batch",
                    batch,
                    fifo,
                    NULL};
    if (ts_spawn(&w.push[i], "tally-push", argv, out, err) != 0) {
        close(fd);
        return -1;
    }
    feed_attach(i, fd);
    return 0;
}

static bool push_running(uint32_t i)
{
    return w.push[i].pid > 0 && !ts_proc_done(&w.push[i]);
}

/* A collector that exited before the drain is a failure (it gave up), except after a full
 * spool, whose nemesis restarts it. */
static void check_pushes(void)
{
    for (uint32_t i = 0; i < opt.collectors; i++) {
        if (push_running(i) || w.push[i].pid <= 0 || w.may_exit[i])
            continue;
        failure("tally-push c%u exited %d during the run", i, ts_proc_code(&w.push[i]));
        ts_dump_tail("tally-push stderr", w.push[i].err, 10);
        if (push_spawn(i) != 0)
            exit(2);
    }
}

/* Sleeps ms while watching the collectors. */
static void idle(int64_t ms)
{
    int64_t end = ts_now_ms() + ms;
    while (ts_now_ms() < end) {
        check_pushes();
        int64_t left = end - ts_now_ms();
        ts_sleep_ms(left > 20 ? 20 : (int)(left > 0 ? left : 0));
    }
}

/* Waits until durable votes (of one collector, or all: -1) pass `since` and returns the ms
 * from t_heal, or -1 after the resume timeout (a hang: reported). */
static int64_t wait_resume(const char *what, int collector, int64_t t_heal)
{
    uint64_t base = 0;
    int64_t deadline = ts_now_ms() + ts_scale(opt.resume_timeout_ms);
    while (durable_votes(collector, &base) != 0) {
        if (ts_now_ms() > deadline) {
            failure("%s: PostgreSQL unreachable for the harness for %d ms after heal", what,
                    ts_scale(opt.resume_timeout_ms));
            return -1;
        }
        ts_sleep_ms(20);
    }
    for (;;) {
        uint64_t v;
        if (durable_votes(collector, &v) == 0 && v > base)
            return ts_now_ms() - t_heal;
        if (ts_now_ms() > deadline) {
            failure("%s: ingest did not resume within %d ms of the heal (durable votes stuck "
                    "at %" PRIu64 ")",
                    what, ts_scale(opt.resume_timeout_ms), base);
            return -1;
        }
        check_pushes();
        ts_sleep_ms(10);
    }
}

static void record_resume(const char *lab, int collector, int64_t t_heal)
{
    int64_t ms = wait_resume(lab, collector, t_heal);
    struct label *l = label(lab);
    if (ms >= 0)
        sample(l->samples, &l->n, ms);
}

/* Restarts slot i (not standby) and waits for it; a failure to come back is fatal here. */
static int64_t restart_active(int i)
{
    int64_t t = ts_now_ms();
    if (tallyd_spawn(i, false) != 0)
        exit(2);
    if (tallyd_wait_ready(i, ts_scale(60000)) < 0) {
        failure("tallyd did not come back ready within 60 s of its restart");
        return -1;
    }
    return ts_now_ms() - t;
}

/* ---- the nemeses: each applies one fault, heals it and records the recovery ---- */

static uint64_t nem_rng;

static int64_t hold_ms(int64_t short_lo, int64_t short_hi, int64_t long_lo, int64_t long_hi)
{
    return opt.long_run ? rng_range(&nem_rng, long_lo, long_hi)
                        : rng_range(&nem_rng, short_lo, short_hi);
}

static void nem_kill(void)
{
    int i = w.active;
    ts_proc_kill(&w.s[i].d.proc);
    ts_sleep_ms((int)rng_range(&nem_rng, 0, 50));
    int64_t t = ts_now_ms();
    int64_t ready = restart_active(i);
    struct label *l = label("kill");
    if (ready >= 0)
        sample(l->ready, &l->n_ready, ready);
    record_resume("kill", -1, t);
}

/* pg_ctl stop -m immediate on the cluster of tests/pg.sh's DIR (as its owner when root). */
static int pg_stop_immediate(void)
{
    char script[PATH_MAX + 512];
    snprintf(script, sizeof script,
             "d='%s'; r=$(cat \"$d/root\" 2>/dev/null || echo \"$d\"); "
             "b=${PGBIN:-/usr/lib/postgresql/15/bin}; "
             "if [ \"$(id -u)\" -eq 0 ]; then runuser -u postgres -- \"$b/pg_ctl\" -D \"$r/data\" "
             "-m immediate -w stop; else \"$b/pg_ctl\" -D \"$r/data\" -m immediate -w stop; fi",
             ts_pg_dir());
    char *argv[] = {"/bin/bash", "-c", script, NULL};
    return ts_run(argv, NULL, NULL, 60000);
}

static void nem_pg_stop(void)
{
    int64_t ms = hold_ms(2000, 5000, 10000, 60000);
    bool immediate = rng_range(&nem_rng, 0, 1) == 0;
    say("pg-stop: PostgreSQL %s for %lld ms",
        immediate ? "stopped (pg_ctl stop -m immediate)" : "crashed (SIGKILL)", (long long)ms);
    if (w.mon) {
        PQfinish(w.mon);
        w.mon = NULL;
    }
    if ((immediate ? pg_stop_immediate() : ts_pg("crash")) != 0)
        exit(2);
    idle(ms);
    if (ts_pg("start") != 0)
        exit(2);
    int64_t t = ts_now_ms();
    record_resume("pg-stop", -1, t);
}

static void nem_pg_backend(void)
{
    PGconn *c = mon();
    uint64_t n = 0;
    if (!c || mon_u64("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                      "datname = current_database() AND pid <> pg_backend_pid()",
                      &n) != 0) {
        failure("pg-backend: pg_terminate_backend failed: %s",
                c ? PQerrorMessage(c) : "no session");
        return;
    }
    int64_t t = ts_now_ms();
    say("pg-backend: terminated %" PRIu64 " session(s)", n);
    record_resume("pg-backend", -1, t);
}

static void nem_proxy(void)
{
    const char *const *kinds = proxy_kinds;
    int k;
    do
        k = (int)rng_range(&nem_rng, 0, 5);
    while (opt.proxy_kinds && !(opt.proxy_kinds & (1u << k)));
    char lab[32];
    snprintf(lab, sizeof lab, "proxy:%s", kinds[k]);
    struct px_fault f = {.mode = PX_PASS};
    int64_t t;
    if (k <= 1) {
        if (k == 0) {
            f.mode = PX_CUT;
            f.budget = (uint64_t)rng_range(&nem_rng, 0, 20000);
        } else {
            f.mode = PX_CUT_COMMIT;
            f.commit_phase = (int)rng_range(&nem_rng, 0, 1);
            f.rnd = rng_next(&nem_rng);
        }
        struct px_stats before, now;
        px_get_stats(w.px_db, &before);
        px_set(w.px_db, &f);
        int64_t deadline = ts_now_ms() + 5000;
        do {
            idle(10);
            px_get_stats(w.px_db, &now);
        } while (now.cuts == before.cuts && ts_now_ms() < deadline);
        px_heal(w.px_db);
        t = ts_now_ms();
        if (now.cuts == before.cuts)
            say("%s: no cut within 5 s (tallyd sent too little)", lab);
        else if (k == 1 && now.commit_cuts > before.commit_cuts)
            say("%s: cut at byte %" PRIu64 " of the %s", lab, f.rnd % (f.commit_phase ? 18 : 12),
                f.commit_phase ? "COMMIT's reply (CommandComplete + ReadyForQuery)"
                               : "COMMIT query");
    } else {
        int64_t ms = hold_ms(1000, 3000, 5000, 20000);
        if (k == 2)
            f.latency_ms = (int)rng_range(&nem_rng, 20, 300);
        else if (k == 3)
            f.slice = true;
        else if (k == 4) {
            f.mode = PX_CUT;
            f.budget = (uint64_t)rng_range(&nem_rng, 0, 100000);
        } else
            f.mode = PX_BLACKHOLE;
        for (int i = 0; i < 2; i++)
            px_set(w.px_c[i], &f);
        idle(ms);
        for (int i = 0; i < 2; i++)
            px_heal(w.px_c[i]);
        t = ts_now_ms();
    }
    label(lab)->cycles++;
    record_resume(lab, -1, t);
}

static void nem_collector_kill(void)
{
    uint32_t i = (uint32_t)rng_range(&nem_rng, 0, opt.collectors - 1);
    if (!push_running(i))
        return;
    ts_proc_kill(&w.push[i]);
    ts_sleep_ms((int)rng_range(&nem_rng, 0, 300));
    if (push_spawn(i) != 0)
        exit(2);
    record_resume("collector-kill", (int)i, ts_now_ms());
}

static void nem_writers(void)
{
    int a = w.active, b = 1 - a;
    if (rng_range(&nem_rng, 0, 2) == 0) {
        /* A second writer without --standby: it must refuse (exit 1) and never be ready. */
        if (tallyd_spawn(b, false) != 0)
            exit(2);
        int64_t deadline = ts_now_ms() + ts_scale(15000);
        bool ready = false;
        while (tallyd_running(b) && ts_now_ms() < deadline) {
            if (ts_http_get(w.s[b].d.http_port, "/readyz", NULL, 0, 500) == 200)
                ready = true;
            idle(20);
        }
        if (ready)
            failure("writers: a second tallyd without --standby became ready beside the active one "
                    "(log %s)",
                    w.s[b].d.proc.err);
        if (tallyd_running(b)) {
            failure("writers: a second tallyd without --standby still runs after 15 s (log %s)",
                    w.s[b].d.proc.err);
            ts_proc_kill(&w.s[b].d.proc);
        } else if (ts_proc_code(&w.s[b].d.proc) != 1) {
            failure("writers: a second tallyd exited %d, want 1 (log %s)",
                    ts_proc_code(&w.s[b].d.proc), w.s[b].d.proc.err);
        }
        label("writers:second")->cycles++;
        record_resume("writers:second", -1, ts_now_ms());
        return;
    }
    /* A standby waits; the active one is paused; then resumed, or killed for a take-over. */
    if (tallyd_spawn(b, true) != 0)
        exit(2);
    idle(rng_range(&nem_rng, 200, 800));
    int64_t pause = hold_ms(500, 3000, 3000, 20000);
    kill(w.s[a].d.proc.pid, SIGSTOP);
    w.s[a].stopped = true;
    idle(pause);
    if (tallyd_ready_now(b))
        failure("writers: the standby became ready while the active tallyd was only paused");
    kill(w.s[a].d.proc.pid, SIGCONT);
    w.s[a].stopped = false;
    int64_t t = ts_now_ms();
    label("writers:pause")->cycles++;
    record_resume("writers:pause", -1, t);
    if (rng_range(&nem_rng, 0, 1) == 0) {
        ts_proc_kill(&w.s[a].d.proc);
        t = ts_now_ms();
        int64_t r = tallyd_wait_ready(b, ts_scale(30000));
        struct label *l = label("writers:takeover");
        l->cycles++;
        if (r < 0) {
            failure("writers: the standby did not take over within 30 s of the kill");
            restart_active(b);
        } else {
            sample(l->ready, &l->n_ready, ts_now_ms() - t);
        }
        w.s[b].standby = false;
        w.active = b;
        record_resume("writers:takeover", -1, t);
    } else {
        ts_proc_signal(&w.s[b].d.proc, SIGTERM);
        if (ts_proc_wait(&w.s[b].d.proc, ts_scale(15000)) != 0) {
            failure("writers: the standby did not exit within 15 s of SIGTERM");
            ts_proc_kill(&w.s[b].d.proc);
        }
    }
}

static void fill_fs(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/filler", dir) >= (int)sizeof path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    static char block[65536];
    if (fd < 0)
        return;
    while (write(fd, block, sizeof block) > 0)
        ;
    /* The last bytes too: small writes until none fits. */
    while (write(fd, block, 512) > 0)
        ;
    close(fd);
}

static void nem_spool_full(void)
{
    char spool[PATH_MAX], filler[PATH_MAX + 16];
    spool_path(0, spool, sizeof spool);
    snprintf(filler, sizeof filler, "%s/filler", spool);
    int64_t ms = hold_ms(1000, 3000, 5000, 20000);
    w.may_exit[0] = true;
    fill_fs(spool);
    idle(ms);
    bool exited = !push_running(0);
    if (exited) {
        char *err = ts_read_file(w.push[0].err);
        bool loud = err && strstr(err, "No space left on device") && strstr(err, spool);
        say("spool-full: tally-push c0 exited %d%s", ts_proc_code(&w.push[0]),
            loud ? " naming the spool and ENOSPC" : "");
        if (!loud)
            failure("spool-full: tally-push c0 exited %d without naming the spool path and "
                    "ENOSPC (%s)",
                    ts_proc_code(&w.push[0]), w.push[0].err);
        free(err);
    }
    unlink(filler);
    int64_t t = ts_now_ms();
    if (exited && push_spawn(0) != 0)
        exit(2);
    w.may_exit[0] = false;
    label("spool-full")->cycles++;
    record_resume("spool-full", 0, t);
}

/* ---- the checker ---- */

struct vote {
    uint64_t token;
    uint32_t project;
};

static int cmp_vote(const void *a, const void *b)
{
    const struct vote *x = a, *y = b;
    if (x->token != y->token)
        return (x->token > y->token) - (x->token < y->token);
    return (x->project > y->project) - (x->project < y->project);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

struct truth {
    uint64_t generated, accepted, duplicate, rejected;
    uint64_t per_collector[MAX_COLLECTORS];
    uint64_t *count;  /* [projects] */
    uint64_t *tokens; /* sorted, distinct */
    size_t n_tokens;
};

/* The truth, from the bytes written to the collectors (all of them were read: every
 * tally-push reached EOF). */
static void truth_build(struct truth *t)
{
    memset(t, 0, sizeof *t);
    t->count = calloc(opt.projects, sizeof *t->count);
    size_t cap = 1 << 16, n = 0;
    struct vote *v = malloc(cap * sizeof *v);
    for (uint32_t i = 0; i < opt.collectors; i++) {
        size_t len;
        const char *b = feed_data(i, &len);
        for (size_t off = 0; off < len;) {
            const char *nl = memchr(b + off, '\n', len - off);
            const char *comma = memchr(b + off, ',', (size_t)(nl - (b + off)));
            uint32_t project = (uint32_t)strtoul(comma + 1, NULL, 10);
            uint64_t tok = push_token(push_demo_key, b + off, (size_t)(comma - (b + off)));
            off = (size_t)(nl - b) + 1;
            t->generated++;
            t->per_collector[i]++;
            if (project < PROJECT_BASE || project >= PROJECT_BASE + opt.projects) {
                t->rejected++;
                continue;
            }
            if (n == cap)
                v = realloc(v, (cap *= 2) * sizeof *v);
            v[n++] = (struct vote){tok, project};
        }
    }
    qsort(v, n, sizeof *v, cmp_vote);
    t->tokens = malloc((n + 1) * sizeof *t->tokens);
    for (size_t j = 0; j < n; j++) {
        if (j > 0 && v[j].token == v[j - 1].token) {
            t->duplicate++;
            if (v[j].project != v[j - 1].project)
                fprintf(stderr,
                        "chaos: token collision in the generated data (seed %" PRIu64
                        "): the truth is ambiguous\n",
                        opt.seed);
            continue;
        }
        t->accepted++;
        t->count[v[j].project - PROJECT_BASE]++;
        t->tokens[t->n_tokens++] = v[j].token;
    }
    free(v);
    /* CHAOS_TAMPER=1 checks the checker: a truth off by one vote each way and one ballot must
     * give lost 1, duplicated 1 and one unexpected ballot. */
    const char *tamper = getenv("CHAOS_TAMPER");
    if (tamper && *tamper == '1' && opt.projects > 1 && t->count[1] > 0 && t->n_tokens > 0) {
        t->count[0]++;
        t->count[1]--;
        memmove(t->tokens, t->tokens + 1, --t->n_tokens * sizeof *t->tokens);
    }
}

struct verdict {
    uint64_t acked, lost, duplicated, unexpected;
    uint64_t tok_lost, tok_repeated, tok_unexpected;
    int diffs;
};

static void check_results(const struct truth *t, struct verdict *vd)
{
    char *csv = ts_results_csv(w.conninfo);
    if (!csv) {
        failure("checker: tallyctl results failed");
        return;
    }
    uint64_t *got = calloc(opt.projects, sizeof *got);
    for (char *line = strtok(csv, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long p, n;
        if (sscanf(line, "%llu,%llu", &p, &n) != 2)
            continue; /* the header */
        if (p < PROJECT_BASE || p >= PROJECT_BASE + opt.projects) {
            if (n) {
                vd->unexpected += n;
                if (vd->diffs++ < 5)
                    fprintf(stderr, "chaos: project %llu: %llu votes, none generated\n", p, n);
            }
            continue;
        }
        got[p - PROJECT_BASE] += n;
    }
    free(csv);
    for (uint32_t j = 0; j < opt.projects; j++) {
        uint64_t want = t->count[j], have = got[j];
        if (want == have)
            continue;
        if (have < want)
            vd->lost += want - have;
        else if (want == 0)
            vd->unexpected += have;
        else
            vd->duplicated += have - want;
        if (vd->diffs++ < 5)
            fprintf(stderr, "chaos: project %u: %" PRIu64 " votes, truth %" PRIu64 "\n",
                    PROJECT_BASE + j, have, want);
    }
    free(got);
}

static void check_collectors(const struct truth *t, struct verdict *vd)
{
    PGconn *c = mon();
    PGresult *r = c ? PQexec(c, "SELECT id, votes, accepted, duplicate, rejected FROM collectors "
                                "ORDER BY id")
                    : NULL;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        failure("checker: cannot read the collectors table");
        PQclear(r);
        return;
    }
    uint64_t acc = 0, dup = 0, rej = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        unsigned i;
        if (sscanf(PQgetvalue(r, row, 0), "c%u", &i) != 1 || i >= opt.collectors)
            continue;
        uint64_t votes = strtoull(PQgetvalue(r, row, 1), NULL, 10);
        vd->acked += votes;
        acc += strtoull(PQgetvalue(r, row, 2), NULL, 10);
        dup += strtoull(PQgetvalue(r, row, 3), NULL, 10);
        rej += strtoull(PQgetvalue(r, row, 4), NULL, 10);
        if (votes != t->per_collector[i])
            failure("checker: collectors c%u: %" PRIu64 " durable votes, %" PRIu64 " generated", i,
                    votes, t->per_collector[i]);
    }
    PQclear(r);
    if (acc != t->accepted || dup != t->duplicate || rej != t->rejected)
        failure("checker: collectors table accepted/duplicate/rejected %" PRIu64 "/%" PRIu64
                "/%" PRIu64 ", truth %" PRIu64 "/%" PRIu64 "/%" PRIu64,
                acc, dup, rej, t->accepted, t->duplicate, t->rejected);
}

/* The ballot set: every token page against the truth's distinct tokens. */
static void check_tokens(const struct truth *t, struct verdict *vd)
{
    PGconn *c = mon();
    PGresult *r =
        c ? PQexecParams(c, "SELECT tokens FROM token_pages", 0, NULL, NULL, NULL, NULL, 1) : NULL;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        failure("checker: cannot read token_pages");
        PQclear(r);
        return;
    }
    size_t n = 0;
    for (int row = 0; row < PQntuples(r); row++)
        n += (size_t)PQgetlength(r, row, 0) / 8;
    uint64_t *db = malloc((n + 1) * sizeof *db);
    size_t k = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, 0);
        for (int off = 0; off + 8 <= PQgetlength(r, row, 0); off += 8) {
            uint64_t x = 0;
            for (int j = 7; j >= 0; j--)
                x = x << 8 | b[off + j];
            db[k++] = x;
        }
    }
    PQclear(r);
    qsort(db, n, sizeof *db, cmp_u64);
    size_t i = 0, j = 0;
    while (i < t->n_tokens || j < n) {
        if (j > 0 && j < n && db[j] == db[j - 1]) {
            vd->tok_repeated++;
            j++;
        } else if (j == n || (i < t->n_tokens && t->tokens[i] < db[j])) {
            vd->tok_lost++;
            i++;
        } else if (i == t->n_tokens || db[j] < t->tokens[i]) {
            vd->tok_unexpected++;
            j++;
        } else {
            i++;
            j++;
        }
    }
    free(db);
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chaos --nemesis LIST [--cycles N] [--seed S] [--long] [--collectors N]\n"
            "             [--rate VOTES_PER_S] [--projects N] [--batch N] [--gap-ms MIN-MAX]\n"
            "LIST: comma-separated among kill, pg-stop, pg-backend, proxy, collector-kill,\n"
            "      writers, spool-full; 'all' for every one (one fault per cycle, interleaved);\n"
            "      proxy:KIND for one kind of proxy fault only (db-cut, db-commit, latency,\n"
            "      slice, rst, blackhole).\n"
            "Environment: TALLY_BIN_DIR, TALLY_SRC_DIR, TALLY_PG_DIR (a tests/pg.sh cluster).\n");
}

static int parse_list(const char *s)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    snprintf(opt.list, sizeof opt.list, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        bool found = false;
        for (int k = 0; k < 6; k++) {
            if (!strncmp(tok, "proxy:", 6) && !strcmp(tok + 6, proxy_kinds[k])) {
                opt.on[N_PROXY] = true;
                opt.proxy_kinds |= 1u << k;
                found = true;
            }
        }
        for (int n = 0; n < N_COUNT; n++) {
            if (!strcmp(tok, "all") || !strcmp(tok, nemesis_names[n])) {
                opt.on[n] = true;
                found = true;
            }
        }
        if (!found && strcmp(tok, "none") != 0) {
            fprintf(stderr, "chaos: unknown nemesis '%s'\n", tok);
            return -1;
        }
    }
    return 0;
}

static int parse_options(int argc, char **argv)
{
    static const struct option lo[] = {{"nemesis", required_argument, NULL, 'n'},
                                       {"cycles", required_argument, NULL, 'c'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"long", no_argument, NULL, 'l'},
                                       {"collectors", required_argument, NULL, 'C'},
                                       {"rate", required_argument, NULL, 'r'},
                                       {"projects", required_argument, NULL, 'p'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {"gap-ms", required_argument, NULL, 'g'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    bool have_list = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (parse_list(optarg) != 0)
                return -1;
            have_list = true;
            break;
        case 'c':
            opt.cycles = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 's':
            opt.seed = strtoull(optarg, NULL, 10);
            break;
        case 'l':
            opt.long_run = true;
            break;
        case 'C':
            opt.collectors = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            opt.rate = strtod(optarg, NULL);
            break;
        case 'p':
            opt.projects = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            opt.batch = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'g':
            if (sscanf(optarg, "%d-%d", &opt.gap_min, &opt.gap_max) != 2 ||
                opt.gap_min > opt.gap_max) {
                fprintf(stderr, "chaos: --gap-ms wants MIN-MAX\n");
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (!have_list || optind != argc || opt.collectors < 1 || opt.collectors > MAX_COLLECTORS ||
        opt.projects < 1 || opt.batch < 1 || opt.rate <= 0) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static void setup(void)
{
    char path[PATH_MAX];
    /* A spool tmpfs left by an interrupted run would stop the scratch dir's removal. */
    snprintf(path, sizeof path, "%s/itest/chaos/spool-0", ts_bin_dir());
    (void)umount2(path, MNT_DETACH);
    if (snprintf(w.dir, sizeof w.dir, "%s", ts_workdir("chaos")) >= (int)sizeof w.dir) {
        fprintf(stderr, "chaos: scratch path too long\n");
        exit(2);
    }
    if (ts_pg("start") != 0 || ts_db_create("chaos", w.conninfo, sizeof w.conninfo) != 0)
        exit(2);
    char reg[PATH_MAX + 16];
    snprintf(reg, sizeof reg, "%s/registry.csv", w.dir);
    if (ts_registry_write(reg, opt.projects) != 0 ||
        ts_db_prepare(w.conninfo, reg, opt.collectors) != 0)
        exit(2);
    const char *p = strstr(w.conninfo, "port=");
    snprintf(w.pg_port, sizeof w.pg_port, "%.*s", p ? (int)strcspn(p + 5, " ") : 0, p ? p + 5 : "");

    uint64_t prng = mix(opt.seed ^ 0x5eed);
    for (int i = 0; i < 2; i++) {
        w.s[i].d.port = pick_port(&prng);
        w.s[i].d.http_port = pick_port(&prng);
        snprintf(w.s[i].d.dir, sizeof w.s[i].d.dir, "%s", w.dir);
        w.c_port[i] = w.s[i].d.port;
    }
    if (io_start() != 0)
        exit(2);
    snprintf(w.tallyd_db, sizeof w.tallyd_db, "%s", w.conninfo);
    if (opt.on[N_PROXY]) {
        uint16_t dbp = pick_port(&prng);
        w.px_db = px_add("postgres", dbp, (uint16_t)atoi(w.pg_port));
        snprintf(w.tallyd_db, sizeof w.tallyd_db,
                 "host=127.0.0.1 port=%u user=postgres dbname=chaos", dbp);
        for (int i = 0; i < 2; i++) {
            w.c_port[i] = pick_port(&prng);
            w.px_c[i] = px_add("collectors", w.c_port[i], w.s[i].d.port);
        }
        if (w.px_db < 0 || w.px_c[0] < 0 || w.px_c[1] < 0)
            exit(2);
    }
    if (opt.on[N_SPOOL_FULL]) {
        spool_path(0, path, sizeof path);
        mkdir(path, 0700);
        if (mount("tmpfs", path, "tmpfs", 0, "size=4m,mode=0700") != 0) {
            say("spool-full SKIPPED: cannot mount a tmpfs on %s: %s (needs root / "
                "CAP_SYS_ADMIN)",
                path, strerror(errno));
            opt.on[N_SPOOL_FULL] = false;
        } else {
            w.spool_tmpfs = true;
        }
    }
    for (uint32_t i = 0; i < opt.collectors; i++)
        gen_rng[i] = mix(opt.seed * 31 + i);
    if (feed_init(opt.collectors, opt.rate, gen_more) != 0)
        exit(2);
    if (tallyd_spawn(0, false) != 0 || tallyd_wait_ready(0, ts_scale(60000)) < 0)
        exit(2);
    for (uint32_t i = 0; i < opt.collectors; i++)
        if (push_spawn(i) != 0)
            exit(2);
}

/* Heal everything, let the collectors finish, stop tallyd cleanly. */
static void drain(void)
{
    say("heal + drain");
    for (int i = 0; i < 2; i++) {
        if (w.s[i].stopped)
            kill(w.s[i].d.proc.pid, SIGCONT);
        if (w.px_c[i] >= 0)
            px_heal(w.px_c[i]);
    }
    if (w.px_db >= 0)
        px_heal(w.px_db);
    if (ts_pg("start") != 0)
        exit(2);
    if (!tallyd_running(w.active))
        restart_active(w.active);
    feed_finish();
    int64_t deadline = ts_now_ms() + ts_scale(180000);
    for (uint32_t i = 0; i < opt.collectors; i++) {
        if (ts_proc_wait(&w.push[i],
                         (int)(deadline - ts_now_ms() > 0 ? deadline - ts_now_ms() : 0)) != 0) {
            failure("drain: tally-push c%u did not finish within 180 s of the heal (a hang)", i);
            ts_dump_tail("tally-push stderr", w.push[i].err, 15);
            ts_dump_tail("tallyd log", w.s[w.active].d.proc.err, 15);
            ts_proc_kill(&w.push[i]);
            continue;
        }
        if (ts_proc_code(&w.push[i]) != 0) {
            failure("drain: tally-push c%u exited %d", i, ts_proc_code(&w.push[i]));
            ts_dump_tail("tally-push stderr", w.push[i].err, 15);
        }
    }
    int rc = ts_tallyd_stop(&w.s[w.active].d, ts_scale(30000));
    if (rc != 0)
        failure("drain: tallyd exited %d on SIGTERM, want 0", rc);
    for (int i = 0; i < 2; i++)
        if (tallyd_running(i)) {
            failure("drain: tallyd %d (standby) still running", i);
            ts_proc_kill(&w.s[i].d.proc);
        }
}

int main(int argc, char **argv)
{
    if (parse_options(argc, argv) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    w.t0 = ts_now_ms();
    nem_rng = mix(opt.seed ^ 0xc4a05ull);
    setup();
    say("seed %" PRIu64 ", nemesis %s, %u cycles%s: tallyd on %u (collectors via %u), "
        "PostgreSQL %s via %s",
        opt.seed, opt.list, opt.cycles, opt.long_run ? " (long)" : "", w.s[0].d.port, w.c_port[0],
        w.pg_port, opt.on[N_PROXY] ? "a proxy" : "direct");
    idle(500);

    int enabled[N_COUNT], n_enabled = 0;
    for (int n = 0; n < N_COUNT; n++)
        if (opt.on[n])
            enabled[n_enabled++] = n;
    for (uint32_t c = 0; c < opt.cycles && n_enabled; c++) {
        idle(rng_range(&nem_rng, opt.gap_min, opt.gap_max));
        int n = enabled[rng_range(&nem_rng, 0, n_enabled - 1)];
        if (c % 10 == 0 || n != N_KILL)
            say("cycle %u/%u: %s (%" PRIu64 " votes generated)", c + 1, opt.cycles,
                nemesis_names[n], feed_generated());
        switch (n) {
        case N_KILL:
            label("kill")->cycles++;
            nem_kill();
            break;
        case N_PG_STOP:
            label("pg-stop")->cycles++;
            nem_pg_stop();
            break;
        case N_PG_BACKEND:
            label("pg-backend")->cycles++;
            nem_pg_backend();
            break;
        case N_PROXY:
            nem_proxy();
            break;
        case N_COLLECTOR_KILL:
            label("collector-kill")->cycles++;
            nem_collector_kill();
            break;
        case N_WRITERS:
            nem_writers();
            break;
        case N_SPOOL_FULL:
            nem_spool_full();
            break;
        }
    }
    idle(300);
    int64_t t_fault_end = ts_now_ms();
    drain();
    int64_t t_drain = ts_now_ms() - t_fault_end;

    struct truth t;
    truth_build(&t);
    struct verdict vd = {0};
    check_results(&t, &vd);
    check_collectors(&t, &vd);
    check_tokens(&t, &vd);
    char *verify_err = NULL;
    if (ts_ctl_capture(w.conninfo, NULL, &verify_err, "verify", NULL, NULL) != 0)
        failure("checker: tallyctl verify failed: %.200s", verify_err ? verify_err : "");
    free(verify_err);

    int all[MAX_SAMPLES];
    uint32_t n_all = 0;
    for (int i = 0; i < n_labels; i++) {
        struct label *l = &labels[i];
        for (uint32_t j = 0; j < l->n && n_all < MAX_SAMPLES; j++)
            all[n_all++] = l->samples[j];
        fprintf(stderr, "chaos:   %-18s cycles %4u  resume p50 %5d ms p99 %5d ms (%u samples)",
                l->name, l->cycles, pct(l->samples, l->n, 50), pct(l->samples, l->n, 99), l->n);
        if (l->n_ready)
            fprintf(stderr, "  ready p50 %5d ms p99 %5d ms", pct(l->ready, l->n_ready, 50),
                    pct(l->ready, l->n_ready, 99));
        fputc('\n', stderr);
    }
    bool bad = vd.lost || vd.duplicated || vd.unexpected || vd.tok_lost || vd.tok_repeated ||
               vd.tok_unexpected || w.failures;
    printf("chaos: seed %" PRIu64 " nemesis %s cycles %u%s: generated %" PRIu64 " acked %" PRIu64
           " lost %" PRIu64 " duplicated %" PRIu64 " unexpected %" PRIu64 " (ballots: lost %" PRIu64
           " repeated %" PRIu64 " unexpected %" PRIu64
           ") recovery p50 %d ms p99 %d ms, drain %.1f s, %.1f s in all: %s\n",
           opt.seed, opt.list, opt.cycles, opt.long_run ? " long" : "", t.generated, vd.acked,
           vd.lost, vd.duplicated, vd.unexpected, vd.tok_lost, vd.tok_repeated, vd.tok_unexpected,
           pct(all, n_all, 50), pct(all, n_all, 99), (double)t_drain / 1000.0,
           (double)(ts_now_ms() - w.t0) / 1000.0, bad ? "FAILED" : "ok");
    for (int i = 0; i < w.failures && i < 8; i++)
        printf("chaos:   failure: %s\n", w.failure[i]);
    fflush(stdout);

    if (w.mon)
        PQfinish(w.mon);
    io_stop();
    if (w.spool_tmpfs) {
        char path[PATH_MAX];
        spool_path(0, path, sizeof path);
        (void)umount2(path, MNT_DETACH);
    }
    ts_cleanup();
    if (!bad)
        ts_db_drop("chaos");
    return bad ? 1 : 0;
}
