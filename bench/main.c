/* tally-bench: measures tallyd against Redis, PostgreSQL-direct and the in-process limit on
 * one workload, in one run, and checks every system's counts against the ground truth.
 * This file is the wiring: options, the scratch directory and PostgreSQL, the order of the
 * runs, the summary table on stdout and the JSON file. See bench/README.md. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "Usage: tally-bench --peers all|tallyd,redis,postgres,limit --votes N [OPTION]... "
    "[--json FILE]\n"
    "Counts one generated consultation with tallyd and with the systems people would use\n"
    "instead, one after the other, checks every count against the ground truth, and prints\n"
    "a table (stdout), progress (stderr) and, with --json, the figures as JSON.\n"
    "\n"
    "Workload (generated in memory before any clock starts):\n"
    "  --votes N             votes, repeated voters included (default 1000000)\n"
    "  --collectors K        collectors sending at once, 1..64 (default 4)\n"
    "  --batch N             votes per batch (default 10000)\n"
    "  --dup-rate R          share of votes by voters who already voted (default 0.05)\n"
    "  --retransmit-rate R   share of batches sent a second time (default 0.02)\n"
    "  --projects N          projects in the registry, ~7 per circuit (default 30000)\n"
    "  --zipf S              popularity exponent inside a circuit (default 1.1)\n"
    "  --seed N              (default 1)\n"
    "\n"
    "Systems:\n"
    "  --peers LIST          all, or a comma list of tallyd, redis, postgres, limit;\n"
    "                        'all' skips redis (with a note) when redis-server is missing\n"
    "  --window N            batches in flight per collector, unacknowledged (default 16)\n"
    "  --max-undurable N     batches per collector sent but not yet durable (default 256)\n"
    "  --checkpoint-ms N     tallyd --checkpoint-ms (default 200)\n"
    "  --expected-ballots N  tallyd --expected-ballots: a number, 'auto' (the workload's\n"
    "                        distinct ballots, the default) or 'none' (tallyd's own default)\n"
    "  --pg-conns N          PostgreSQL-direct connections (default: one per collector)\n"
    "  --db CONNINFO         use this PostgreSQL server (needs CREATEDB) instead of a scratch\n"
    "                        cluster made with tests/pg.sh\n"
    "  --tallyd PATH, --tallyctl PATH, --pg-sh PATH, --redis-server PATH\n"
    "                        programs (default: found next to tally-bench in the build tree,\n"
    "                        and redis-server in PATH)\n"
    "  --timeout S           limit for each system's run in seconds (default 900)\n"
    "  --json FILE           write the figures as JSON\n"
    "  --tallyd-arg ARG      pass ARG to tallyd (repeat for more, at most 8), e.g.\n"
    "                        --tallyd-arg=--backlog-votes=500000\n"
    "  --recovery            tallyd: after the run, SIGKILL it with everything durable,\n"
    "                        start it again and time its recovery (for scale runs)\n"
    "  --keep                keep the scratch directory and databases (for debugging)\n"
    "  -h, --help            this help\n"
    "\n"
    "Exit status: 0 every system that ran counted exactly; 1 a miscount, or a system that\n"
    "was asked for could not run; 2 usage error; 130 interrupted.\n";

static void on_signal(int sig)
{
    (void)sig;
    bench_stop = 1;
}

static int usage_error(const char *fmt, ...) BENCH_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tally-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'tally-bench --help'.\n");
    va_end(ap);
    return 2;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!s[0] || *end || !(v >= 0) || v >= 1)
        return -1;
    *out = v;
    return 0;
}

static int parse_peers(const char *s, struct bench_opts *o)
{
    o->peers = 0;
    o->peers_all = false;
    if (strcmp(s, "all") == 0) {
        o->peers = PEER_TALLYD | PEER_REDIS | PEER_POSTGRES | PEER_LIMIT;
        o->peers_all = true;
        return 0;
    }
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "tallyd") == 0)
            o->peers |= PEER_TALLYD;
        else if (strcmp(t, "redis") == 0)
            o->peers |= PEER_REDIS;
        else if (strcmp(t, "postgres") == 0)
            o->peers |= PEER_POSTGRES;
        else if (strcmp(t, "limit") == 0)
            o->peers |= PEER_LIMIT;
        else
            return -1;
    }
    return o->peers ? 0 : -1;
}

enum {
    O_PEERS = 256,
    O_VOTES,
    O_COLLECTORS,
    O_BATCH,
    O_DUP,
    O_RETX,
    O_PROJECTS,
    O_ZIPF,
    O_SEED,
    O_WINDOW,
    O_UNDURABLE,
    O_CPMS,
    O_EXPECTED,
    O_PGCONNS,
    O_DB,
    O_JSON,
    O_TALLYD,
    O_TALLYCTL,
    O_PGSH,
    O_REDIS,
    O_TIMEOUT,
    O_KEEP,
    O_RECOVERY,
    O_TALLYD_ARG,
};

/* Returns 0, 1 for --help, or 2 on a usage error (already reported). */
static int parse_args(struct bench_opts *o, int argc, char **argv)
{
    static const struct option lopts[] = {
        {"peers", required_argument, NULL, O_PEERS},
        {"votes", required_argument, NULL, O_VOTES},
        {"collectors", required_argument, NULL, O_COLLECTORS},
        {"batch", required_argument, NULL, O_BATCH},
        {"dup-rate", required_argument, NULL, O_DUP},
        {"retransmit-rate", required_argument, NULL, O_RETX},
        {"projects", required_argument, NULL, O_PROJECTS},
        {"zipf", required_argument, NULL, O_ZIPF},
        {"seed", required_argument, NULL, O_SEED},
        {"window", required_argument, NULL, O_WINDOW},
        {"max-undurable", required_argument, NULL, O_UNDURABLE},
        {"checkpoint-ms", required_argument, NULL, O_CPMS},
        {"expected-ballots", required_argument, NULL, O_EXPECTED},
        {"pg-conns", required_argument, NULL, O_PGCONNS},
        {"db", required_argument, NULL, O_DB},
        {"json", required_argument, NULL, O_JSON},
        {"tallyd", required_argument, NULL, O_TALLYD},
        {"tallyctl", required_argument, NULL, O_TALLYCTL},
        {"pg-sh", required_argument, NULL, O_PGSH},
        {"redis-server", required_argument, NULL, O_REDIS},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"keep", no_argument, NULL, O_KEEP},
        {"recovery", no_argument, NULL, O_RECOVERY},
        {"tallyd-arg", required_argument, NULL, O_TALLYD_ARG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->votes = 1000000;
    o->collectors = 4;
    o->batch = 10000;
    o->dup_rate = 0.05;
    o->retransmit_rate = 0.02;
    o->projects = 30000;
    o->zipf = 1.1;
    o->seed = 1;
    o->window = 16;
    o->max_undurable = 256;
    o->checkpoint_ms = 200;
    o->expected_ballots = -1;
    o->timeout_s = 900;
    o->pg_sh_path = TALLY_BENCH_PG_SH;
    bool peers_given = false;
    size_t cl = 0;
    for (int i = 0; i < argc && cl + 2 < sizeof(o->command); i++)
        cl += (size_t)snprintf(o->command + cl, sizeof(o->command) - cl, "%s%s", i ? " " : "",
                               argv[i]);

    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        const char *a = optarg;
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 1;
        case O_PEERS:
            if (parse_peers(a, o))
                return usage_error("--peers: '%s' is not 'all' or a list of tallyd, redis, "
                                   "postgres, limit",
                                   a);
            peers_given = true;
            break;
        case O_VOTES:
            if (parse_u64(a, 1, UINT64_C(2000000000), &v))
                return usage_error("--votes: '%s' is not a number from 1 to 2000000000", a);
            o->votes = v;
            break;
        case O_COLLECTORS:
            if (parse_u64(a, 1, 64, &v))
                return usage_error("--collectors: '%s' is not a number from 1 to 64", a);
            o->collectors = (uint32_t)v;
            break;
        case O_BATCH:
            if (parse_u64(a, 1, 1000000, &v))
                return usage_error("--batch: '%s' is not a number from 1 to 1000000", a);
            o->batch = (uint32_t)v;
            break;
        case O_DUP:
            if (parse_rate(a, &o->dup_rate))
                return usage_error("--dup-rate: '%s' is not a share in [0, 1)", a);
            break;
        case O_RETX:
            if (parse_rate(a, &o->retransmit_rate))
                return usage_error("--retransmit-rate: '%s' is not a share in [0, 1)", a);
            break;
        case O_PROJECTS:
            if (parse_u64(a, 1, 10000000, &v))
                return usage_error("--projects: '%s' is not a number from 1 to 10000000", a);
            o->projects = (uint32_t)v;
            break;
        case O_ZIPF: {
            char *end;
            o->zipf = strtod(a, &end);
            if (!a[0] || *end || !(o->zipf >= 0) || o->zipf > 10)
                return usage_error("--zipf: '%s' is not a number from 0 to 10", a);
            break;
        }
        case O_SEED:
            if (parse_u64(a, 0, UINT64_MAX, &v))
                return usage_error("--seed: '%s' is not a number", a);
            o->seed = v;
            break;
        case O_WINDOW:
            if (parse_u64(a, 1, 4096, &v))
                return usage_error("--window: '%s' is not a number from 1 to 4096", a);
            o->window = (uint32_t)v;
            break;
        case O_UNDURABLE:
            if (parse_u64(a, 1, 1000000, &v))
                return usage_error("--max-undurable: '%s' is not a number from 1 to 1000000", a);
            o->max_undurable = (uint32_t)v;
            break;
        case O_CPMS:
            if (parse_u64(a, 10, 600000, &v))
                return usage_error("--checkpoint-ms: '%s' is not a number from 10 to 600000", a);
            o->checkpoint_ms = (uint32_t)v;
            break;
        case O_EXPECTED:
            if (strcmp(a, "auto") == 0)
                o->expected_ballots = -1;
            else if (strcmp(a, "none") == 0)
                o->expected_ballots = 0;
            else if (parse_u64(a, 1, UINT64_C(1) << 36, &v) == 0)
                o->expected_ballots = (int64_t)v;
            else
                return usage_error("--expected-ballots: '%s' is not a number, auto or none", a);
            break;
        case O_PGCONNS:
            if (parse_u64(a, 1, 64, &v))
                return usage_error("--pg-conns: '%s' is not a number from 1 to 64", a);
            o->pg_conns = (uint32_t)v;
            break;
        case O_TIMEOUT:
            if (parse_u64(a, 1, 86400, &v))
                return usage_error("--timeout: '%s' is not a number of seconds", a);
            o->timeout_s = (uint32_t)v;
            break;
        case O_DB:
            o->db = a;
            break;
        case O_JSON:
            o->json_path = a;
            break;
        case O_TALLYD:
            o->tallyd_path = a;
            break;
        case O_TALLYCTL:
            o->tallyctl_path = a;
            break;
        case O_PGSH:
            o->pg_sh_path = a;
            break;
        case O_REDIS:
            o->redis_path = a;
            break;
        case O_KEEP:
            o->keep = true;
            break;
        case O_RECOVERY:
            o->recovery = true;
            break;
        case O_TALLYD_ARG:
            if (o->n_tallyd_args == 8)
                return usage_error("%s", "--tallyd-arg: at most 8");
            o->tallyd_args[o->n_tallyd_args++] = a;
            break;
        default:
            return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!peers_given)
        return usage_error("%s", "--peers is required (all, or a list of tallyd, redis, "
                                 "postgres, limit)");
    return 0;
}

/* ---- the record ---------------------------------------------------------------------- */

static void machine_json(struct sbuf *b)
{
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                    cpu[strcspn(cpu, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    unsigned long long mem = 0;
    f = fopen("/proc/meminfo", "r");
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemTotal: %llu kB", &mem) == 1)
                break;
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    sb_printf(b, "\"machine\": {\"nproc\": %ld, \"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    sb_json_str(b, cpu);
    sb_printf(b, ", \"mem_total_kb\": %llu, \"kernel\": ", mem);
    sb_json_str(b, u.release);
    sb_printf(b, "}");
}

static void peer_json(struct sbuf *b, const char *key, struct peer_result *r)
{
    sb_printf(b, ",\n  \"%s\": {\"votes_per_s\": %.0f, \"exact\": %s", key,
              r->ran ? r->votes_per_s : 0.0, r->ran && r->exact ? "true" : "false");
    if (r->skipped) {
        sb_printf(b, ", \"skipped\": true, \"reason\": ");
        sb_json_str(b, r->note);
    } else if (r->failed) {
        sb_printf(b, ", \"failed\": true, \"reason\": ");
        sb_json_str(b, r->note);
    } else if (r->ran) {
        sb_printf(b, ", \"wall_s\": %.3f", r->wall_s);
        if (!r->exact) {
            sb_printf(b, ", \"miscount\": ");
            sb_json_str(b, r->note);
        }
        if (r->json.s)
            sb_printf(b, "%s", r->json.s);
    }
    sb_printf(b, "}");
}

static bool usable(const struct peer_result *r)
{
    return r->ran && r->exact && r->votes_per_s > 0;
}

static void ratio_json(struct sbuf *b, bool first, const char *key, const struct peer_result *a,
                       double av, const struct peer_result *d, double dv)
{
    if (usable(a) && usable(d) && dv > 0)
        sb_printf(b, "%s\"%s\": %.3f", first ? "" : ", ", key, av / dv);
    else
        sb_printf(b, "%s\"%s\": null", first ? "" : ", ", key);
}

static void fmt_num(char *out, size_t len, double v)
{
    char raw[64];
    snprintf(raw, sizeof(raw), "%.0f", v);
    size_t n = strlen(raw), o = 0;
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = raw[i];
    }
    out[o] = 0;
}

static void table_row(const struct peer_result *r)
{
    char num[64] = "-";
    if (r->ran)
        fmt_num(num, sizeof(num), r->votes_per_s);
    const char *exact = r->skipped ? "skip" : r->failed ? "FAIL" : r->exact ? "yes" : "NO";
    char wall[32] = "-";
    if (r->ran)
        snprintf(wall, sizeof(wall), "%.2f", r->wall_s);
    printf("%-14s %14s  %-5s %8s   %s\n", r->name, num, exact, wall,
           r->skipped || r->failed || (r->ran && !r->exact) ? r->note : r->table);
}

static void ratio_line(const char *what, const struct peer_result *a, double av,
                       const struct peer_result *d, double dv, double target, bool fraction)
{
    if (!usable(a) || !usable(d) || dv <= 0) {
        printf("  %-34s n/a\n", what);
        return;
    }
    double x = av / dv;
    if (fraction)
        printf("  %-34s %7.1f %%   target >= %.0f %%: %s\n", what, x * 100, target * 100,
               x >= target ? "met" : "NOT met");
    else
        printf("  %-34s %7.1f x   target >= %.0f x: %s\n", what, x, target,
               x >= target ? "met" : "NOT met");
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct bench_opts o;
    int prc = parse_args(&o, argc, argv);
    if (prc)
        return prc == 1 ? 0 : 2;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct peer_result res[5];
    const char *names[5] = {"tallyd", "redis", "redis_default", "postgres", "limit"};
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 5; i++)
        res[i].name = names[i];
    struct peer_result *r_td = &res[0], *r_rd = &res[1], *r_rdd = &res[2], *r_pg = &res[3],
                       *r_lim = &res[4];

    /* Is Redis there? Decided before anything starts, so that a missing redis-server that
     * was asked for by name fails fast. */
    char redis_buf[1200];
    if (o.peers & PEER_REDIS) {
        if (!redis_find(&o, redis_buf, sizeof(redis_buf))) {
            const char *why = "redis-server is not installed (apt-get install redis-server, or "
                              "--redis-server PATH)";
            if (!o.peers_all) {
                fprintf(stderr, "tally-bench: redis was asked for but %s\n", why);
                return 1;
            }
            fprintf(stderr, "tally-bench: note: skipping redis: %s\n", why);
            o.peers &= ~(unsigned)PEER_REDIS;
            snprintf(r_rd->note, sizeof(r_rd->note), "%s", why);
            snprintf(r_rdd->note, sizeof(r_rdd->note), "%s", why);
        }
    }
    for (int i = 0; i < 5; i++)
        if (!res[i].note[0])
            snprintf(res[i].note, sizeof(res[i].note), "not requested (--peers)");

    struct workload w;
    double g0 = now_s();
    progress("setup", "generating %llu votes over %u projects, %u collectors, batches of %u",
             (unsigned long long)o.votes, o.projects, o.collectors, o.batch);
    wl_generate(&w, &o);
    progress("setup",
             "%llu votes: %llu distinct ballots, %llu repeated; %zu projects in %zu circuits; "
             "%llu batches, %llu sent twice (%.1f s)",
             (unsigned long long)w.n_votes, (unsigned long long)w.n_distinct,
             (unsigned long long)w.n_duplicate, w.n_projects, w.n_circuits,
             (unsigned long long)w.n_batches, (unsigned long long)w.n_retransmits, now_s() - g0);

    struct bench_ctx ctx = {.o = &o, .w = &w};
    snprintf(ctx.workdir, sizeof(ctx.workdir), "/tmp/tally-bench.XXXXXX");
    if (!mkdtemp(ctx.workdir)) {
        perror("tally-bench: mkdtemp");
        wl_free(&w);
        return 1;
    }
    /* PostgreSQL (user postgres) must reach the cluster directory inside. */
    chmod(ctx.workdir, 0711);
    struct pg_env pg;
    memset(&pg, 0, sizeof(pg));
    bool pg_up = false;
    if (o.peers & (PEER_TALLYD | PEER_LIMIT))
        frames_encode(&ctx);

    if ((o.peers & PEER_LIMIT) && !bench_stop) {
        peer_limit_run(&ctx, r_lim);
    }
    if ((o.peers & (PEER_TALLYD | PEER_POSTGRES)) && !bench_stop) {
        if (pg_env_start(&pg, &o, ctx.workdir) == 0) {
            pg_up = true;
            ctx.pg = &pg;
        } else {
            if (o.peers & PEER_TALLYD)
                peer_fail(r_td, "no PostgreSQL");
            if (o.peers & PEER_POSTGRES)
                peer_fail(r_pg, "no PostgreSQL");
        }
    }
    if ((o.peers & PEER_TALLYD) && pg_up && !bench_stop)
        peer_tallyd_run(&ctx, r_td);
    frames_free(&ctx);
    if ((o.peers & PEER_POSTGRES) && pg_up && !bench_stop)
        peer_postgres_run(&ctx, r_pg);
    if (pg_up)
        pg_env_stop(&pg);
    if ((o.peers & PEER_REDIS) && !bench_stop) {
        peer_redis_run(&ctx, r_rd, false);
        if (!bench_stop)
            peer_redis_run(&ctx, r_rdd, true);
    }

    /* What was not run: skipped (not asked for, or not available) or interrupted. */
    unsigned bits[5] = {PEER_TALLYD, PEER_REDIS, PEER_REDIS, PEER_POSTGRES, PEER_LIMIT};
    for (int i = 0; i < 5; i++) {
        if (!(o.peers & bits[i]))
            res[i].skipped = true;
        else if (!res[i].ran && !res[i].failed)
            peer_fail(&res[i], "%s", bench_stop ? "interrupted" : "did not run");
    }
    int status = 0;
    for (int i = 0; i < 5; i++)
        if (!res[i].skipped && (!res[i].ran || !res[i].exact))
            status = 1;
    if (bench_stop)
        status = 130;

    /* The table. */
    char n1[32], n2[32], n3[32];
    fmt_num(n1, sizeof(n1), (double)w.n_votes);
    fmt_num(n2, sizeof(n2), (double)w.n_distinct);
    fmt_num(n3, sizeof(n3), (double)w.n_duplicate);
    printf("\ntally-bench: %s votes (%s distinct ballots, %s repeated voters), %zu projects in "
           "%zu circuits,\n             %zu collectors, batches of %u (%llu batches, %llu sent "
           "twice), checkpoint every %u ms\n\n",
           n1, n2, n3, w.n_projects, w.n_circuits, w.n_collectors, o.batch,
           (unsigned long long)w.n_batches, (unsigned long long)w.n_retransmits, o.checkpoint_ms);
    printf("%-14s %14s  %-5s %8s   %s\n", "system", "votes/s", "exact", "wall s", "notes");
    const int order[5] = {0, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        table_row(&res[order[i]]);
    printf("\nratios (tallyd durable ingest against):\n");
    ratio_line("redis (AOF everysec)", r_td, r_td->votes_per_s, r_rd, r_rd->votes_per_s, 20, false);
    ratio_line("redis (default config)", r_td, r_td->votes_per_s, r_rdd, r_rdd->votes_per_s, 20,
               false);
    ratio_line("postgres-direct", r_td, r_td->votes_per_s, r_pg, r_pg->votes_per_s, 10, false);
    ratio_line("limit (apply)", r_td, r_td->votes_per_s, r_lim, r_lim->votes_per_s, 0.5, true);
    ratio_line("limit (decode+apply)", r_td, r_td->votes_per_s, r_lim, r_lim->alt_votes_per_s, 0.5,
               true);
    if (usable(r_td)) {
        double target = 2.0 * o.checkpoint_ms + 50;
        printf("  %-34s %7.0f ms  target <= %.0f ms: %s\n", "durable ack p99", r_td->durable_p99_ms,
               target, r_td->durable_p99_ms <= target ? "met" : "NOT met");
        printf("  %-34s %7.1f B   target <= 24 B: %s\n", "tallyd memory per distinct ballot",
               r_td->bytes_per_ballot, r_td->bytes_per_ballot <= 24 ? "met" : "NOT met");
    }
    printf("\n%s\n", status == 0 ? "all systems that ran counted exactly"
                                 : "FAILED: a system miscounted or could not run (see above)");
    fflush(stdout);

    /* The JSON record. */
    if (o.json_path) {
        struct sbuf b = {0};
        char date[64];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
        sb_printf(&b, "{\n  \"tool\": \"tally-bench\", \"date\": \"%s\", \"command\": ", date);
        sb_json_str(&b, o.command);
        sb_printf(&b, ",\n  ");
        machine_json(&b);
        sb_printf(&b,
                  ",\n  \"workload\": {\"votes\": %llu, \"distinct_ballots\": %llu, "
                  "\"repeated_votes\": %llu, \"projects\": %zu, \"circuits\": %zu, "
                  "\"collectors\": %zu, \"batch\": %u, \"batches\": %llu, "
                  "\"retransmitted_batches\": %llu, \"dup_rate\": %g, \"retransmit_rate\": %g, "
                  "\"zipf\": %g, \"seed\": %llu, \"window\": %u, \"checkpoint_ms\": %u}",
                  (unsigned long long)w.n_votes, (unsigned long long)w.n_distinct,
                  (unsigned long long)w.n_duplicate, w.n_projects, w.n_circuits, w.n_collectors,
                  o.batch, (unsigned long long)w.n_batches, (unsigned long long)w.n_retransmits,
                  o.dup_rate, o.retransmit_rate, o.zipf, (unsigned long long)o.seed, o.window,
                  o.checkpoint_ms);
        peer_json(&b, "tallyd", r_td);
        peer_json(&b, "redis", r_rd);
        peer_json(&b, "redis_default", r_rdd);
        peer_json(&b, "postgres", r_pg);
        peer_json(&b, "limit", r_lim);
        sb_printf(&b, ",\n  \"ratios\": {");
        ratio_json(&b, true, "tallyd/redis", r_td, r_td->votes_per_s, r_rd, r_rd->votes_per_s);
        ratio_json(&b, false, "tallyd/redis_default", r_td, r_td->votes_per_s, r_rdd,
                   r_rdd->votes_per_s);
        ratio_json(&b, false, "tallyd/postgres", r_td, r_td->votes_per_s, r_pg, r_pg->votes_per_s);
        ratio_json(&b, false, "tallyd/limit", r_td, r_td->votes_per_s, r_lim, r_lim->votes_per_s);
        ratio_json(&b, false, "tallyd/limit_decode_apply", r_td, r_td->votes_per_s, r_lim,
                   r_lim->alt_votes_per_s);
        sb_printf(&b, "}");
        double target = 2.0 * o.checkpoint_ms + 50;
        sb_printf(&b,
                  ",\n  \"targets\": {\"tallyd/redis\": 20, \"tallyd/postgres\": 10, "
                  "\"tallyd/limit\": 0.5, \"durable_ack_p99_ms\": %.0f, "
                  "\"bytes_per_ballot\": 24",
                  target);
        if (usable(r_td))
            sb_printf(
                &b,
                ", \"met\": {\"redis\": %s, \"postgres\": %s, \"limit\": %s, "
                "\"durable_ack_p99\": %s, \"bytes_per_ballot\": %s}",
                usable(r_rd) ? (r_td->votes_per_s >= 20 * r_rd->votes_per_s ? "true" : "false")
                             : "null",
                usable(r_pg) ? (r_td->votes_per_s >= 10 * r_pg->votes_per_s ? "true" : "false")
                             : "null",
                usable(r_lim) ? (r_td->votes_per_s >= 0.5 * r_lim->votes_per_s ? "true" : "false")
                              : "null",
                r_td->durable_p99_ms <= target ? "true" : "false",
                r_td->bytes_per_ballot <= 24 ? "true" : "false");
        sb_printf(&b, "},\n  \"exit_status\": %d\n}\n", status);
        FILE *f = fopen(o.json_path, "w");
        if (!f || fwrite(b.s, 1, b.len, f) != b.len || fclose(f) != 0) {
            fprintf(stderr, "tally-bench: cannot write %s\n", o.json_path);
            if (status == 0)
                status = 1;
        } else {
            progress("done", "figures written to %s", o.json_path);
        }
        sb_free(&b);
    }

    for (int i = 0; i < 5; i++)
        sb_free(&res[i].json);
    if (o.keep) {
        progress("done", "kept the scratch directory %s", ctx.workdir);
    } else {
        char rootf[1200], alt[1024] = "";
        snprintf(rootf, sizeof(rootf), "%s/pg/root", ctx.workdir);
        FILE *f = fopen(rootf, "r");
        if (f) {
            if (fgets(alt, sizeof(alt), f))
                alt[strcspn(alt, "\n")] = 0;
            fclose(f);
        }
        rm_rf(ctx.workdir);
        if (alt[0] && strncmp(alt, "/var/tmp/tally-pg-", 18) == 0)
            rm_rf(alt);
    }
    wl_free(&w);
    return status;
}
