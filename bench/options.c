/* tally-bench's command line: the options, their defaults and checks, and --help. Fills one
 * struct bench_opts; knows nothing of the peers beyond their names. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Usage: tally-bench --peers LIST [OPTION]... [--json FILE]\n"
    "Counts one generated consultation with tallyd and with the systems people would use\n"
    "instead, one after the other, checks every count against the ground truth, and prints\n"
    "a table (stdout), progress (stderr) and, with --json, the figures as JSON.\n"
    "bench/run.sh installs what it needs, builds Release and runs the default comparison.\n"
    "\n"
    "Workload (generated in memory before any clock starts, or streamed):\n"
    "  --votes N             votes, repeated voters included (default 80000000: about\n"
    "                        10 s of tallyd; the workload and tallyd take ~3.5 GB then)\n"
    "  --stream              make each batch on the fly from (seed, collector, batch), for\n"
    "                        tallyd and the limit, as their collectors send it, keeping only\n"
    "                        what resends need; the ground truth comes from a count pass\n"
    "                        over the same recipe. Chosen by itself above 160000000 votes\n"
    "                        (4 GB in memory); the slow peers get their prefix in memory\n"
    "  --no-stream           hold the workload in memory whatever its size\n"
    "  --collectors K        collectors sending at once, 1..64 (default 4)\n"
    "  --batch N             votes per batch (default 10000)\n"
    "  --dup-rate R          share of votes by voters who already voted (default 0.05)\n"
    "  --retransmit-rate R   share of batches sent a second time (default 0.02)\n"
    "  --projects N          projects in the registry, ~7 per circuit (default 30000)\n"
    "  --zipf S              popularity exponent inside a circuit (default 1.1)\n"
    "  --seed N              (default 1)\n"
    "\n"
    "Systems:\n"
    "  --peers LIST          all, or a comma list of tallyd, tallyd_tls, redis_always,\n"
    "                        redis_everysec, redis (both), postgres, postgres_per_batch,\n"
    "                        limit; a Redis peer without redis-server is an error (run\n"
    "                        bench/run.sh, or apt-get install redis-server). tallyd_tls is\n"
    "                        tallyd with mutual TLS 1.3 on the collector port (a CA and\n"
    "                        certificates made in the scratch directory, each collector's\n"
    "                        pinned); 'all' leaves it out: --peers tallyd,tallyd_tls (or\n"
    "                        all,tallyd_tls) gives ratios.tls_vs_plain_durable, the two\n"
    "                        peers' rounds taking turns\n"
    "  --rounds N            tallyd runs (and tallyd_tls runs), each on a fresh database;\n"
    "                        the figures are the median round's (default 3; 1 for a\n"
    "                        streamed workload)\n"
    "  --peer-seconds S      time budget of redis_*, postgres and postgres_per_batch: they\n"
    "                        stop sending at S s and are measured on what they did; the\n"
    "                        limit repeats each pass until S s (default 12)\n"
    "  --peer-votes N        the prefix of the workload prepared for redis_* and postgres*\n"
    "                        (default 16000000)\n"
    "  --window N            batches in flight per collector, unacknowledged (default 16)\n"
    "  --max-undurable N     batches per collector sent but not yet durable (default 256)\n"
    "  --checkpoint-ms N     tallyd --checkpoint-ms (default 200)\n"
    "  --electors-factor F   electors = F x the distinct ballots (default 1.3): what tallyd's\n"
    "                        --expected-ballots is set to, as an operator knows the electorate\n"
    "  --expected-ballots N  instead: a number, 'auto' (the distinct ballots exactly) or\n"
    "                        'none' (tallyd's own default)\n"
    "  --pg-conns N          PostgreSQL-direct connections (default: one per collector)\n"
    "  --pg-group N          postgres: batches per transaction, at most (default: --window)\n"
    "  --db CONNINFO         use this PostgreSQL server (needs CREATEDB) instead of a scratch\n"
    "                        cluster made with tests/pg.sh\n"
    "  --tallyd PATH, --tallyctl PATH, --pg-sh PATH, --redis-server PATH\n"
    "                        programs (default: found next to tally-bench in the build tree,\n"
    "                        and redis-server in PATH)\n"
    "  --timeout S           limit for each system's run in seconds (default 900)\n"
    "  --json FILE           write the figures as JSON\n"
    "  --tallyd-arg ARG      pass ARG to tallyd (repeat for more, at most 8), e.g.\n"
    "                        --tallyd-arg=--backlog-votes=500000\n"
    "  --recovery            tallyd: after the last round, SIGKILL it with everything\n"
    "                        durable, drop the page cache (when allowed), start it again and\n"
    "                        time its recovery (for scale runs)\n"
    "  --keep                keep the scratch directory and databases (for debugging)\n"
    "  -h, --help            this help\n"
    "\n"
    "Exit status: 0 every system that ran counted exactly; 1 a miscount, or a system that\n"
    "was asked for could not run; 2 usage error; 130 interrupted.\n";

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

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!s[0] || *end || !(v >= min) || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_rate(const char *s, double *out)
{
    double v;
    if (parse_double(s, 0, 1, &v) || v >= 1)
        return -1;
    *out = v;
    return 0;
}

static const struct {
    const char *name;
    unsigned bits;
} peer_names[] = {
    {"all", PEER_ALL},
    {"tallyd", PEER_TALLYD},
    {"tallyd_tls", PEER_TALLYD_TLS},
    {"redis", PEER_REDIS},
    {"redis_always", PEER_REDIS_ALWAYS},
    {"redis_everysec", PEER_REDIS_EVERYSEC},
    {"postgres", PEER_POSTGRES},
    {"postgres_per_batch", PEER_POSTGRES_PER_BATCH},
    {"limit", PEER_LIMIT},
};

static int parse_peers(const char *s, struct bench_opts *o)
{
    o->peers = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t i = 0, n = sizeof(peer_names) / sizeof(peer_names[0]);
        while (i < n && strcmp(t, peer_names[i].name) != 0)
            i++;
        if (i == n)
            return -1;
        o->peers |= peer_names[i].bits;
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
    O_ROUNDS,
    O_PEER_SECONDS,
    O_PEER_VOTES,
    O_WINDOW,
    O_UNDURABLE,
    O_CPMS,
    O_ELECTORS,
    O_EXPECTED,
    O_PGCONNS,
    O_PGGROUP,
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
    O_STREAM,
    O_NO_STREAM,
};

static void set_defaults(struct bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->votes = 80000000;
    o->collectors = 4;
    o->batch = 10000;
    o->dup_rate = 0.05;
    o->retransmit_rate = 0.02;
    o->projects = 30000;
    o->zipf = 1.1;
    o->seed = 1;
    o->rounds = 3;
    o->peer_seconds = 12;
    o->peer_votes = 16000000;
    o->window = 16;
    o->max_undurable = 256;
    o->checkpoint_ms = 200;
    o->expected_ballots = EXPECTED_ELECTORS;
    o->electors_factor = 1.3;
    o->timeout_s = 900;
    o->pg_sh_path = TALLY_BENCH_PG_SH;
}

/* The options that take a number in a range: where it goes and what it may be. */
static int parse_number(int c, const char *a, struct bench_opts *o)
{
    uint64_t v;
    switch (c) {
    case O_VOTES:
        if (parse_u64(a, 1, UINT64_C(2000000000), &v))
            return usage_error("--votes: '%s' is not a number from 1 to 2000000000", a);
        o->votes = v;
        return 0;
    case O_COLLECTORS:
        if (parse_u64(a, 1, 64, &v))
            return usage_error("--collectors: '%s' is not a number from 1 to 64", a);
        o->collectors = (uint32_t)v;
        return 0;
    case O_BATCH:
        if (parse_u64(a, 1, 1000000, &v))
            return usage_error("--batch: '%s' is not a number from 1 to 1000000", a);
        o->batch = (uint32_t)v;
        return 0;
    case O_PROJECTS:
        if (parse_u64(a, 1, 10000000, &v))
            return usage_error("--projects: '%s' is not a number from 1 to 10000000", a);
        o->projects = (uint32_t)v;
        return 0;
    case O_SEED:
        if (parse_u64(a, 0, UINT64_MAX, &v))
            return usage_error("--seed: '%s' is not a number", a);
        o->seed = v;
        return 0;
    case O_ROUNDS:
        if (parse_u64(a, 1, 9, &v))
            return usage_error("--rounds: '%s' is not a number from 1 to 9", a);
        o->rounds = (uint32_t)v;
        return 0;
    case O_PEER_VOTES:
        if (parse_u64(a, 1, UINT64_C(2000000000), &v))
            return usage_error("--peer-votes: '%s' is not a number from 1 to 2000000000", a);
        o->peer_votes = v;
        return 0;
    case O_WINDOW:
        if (parse_u64(a, 1, 4096, &v))
            return usage_error("--window: '%s' is not a number from 1 to 4096", a);
        o->window = (uint32_t)v;
        return 0;
    case O_UNDURABLE:
        if (parse_u64(a, 1, 1000000, &v))
            return usage_error("--max-undurable: '%s' is not a number from 1 to 1000000", a);
        o->max_undurable = (uint32_t)v;
        return 0;
    case O_CPMS:
        if (parse_u64(a, 10, 600000, &v))
            return usage_error("--checkpoint-ms: '%s' is not a number from 10 to 600000", a);
        o->checkpoint_ms = (uint32_t)v;
        return 0;
    case O_PGCONNS:
        if (parse_u64(a, 1, 64, &v))
            return usage_error("--pg-conns: '%s' is not a number from 1 to 64", a);
        o->pg_conns = (uint32_t)v;
        return 0;
    case O_PGGROUP:
        if (parse_u64(a, 1, 4096, &v))
            return usage_error("--pg-group: '%s' is not a number from 1 to 4096", a);
        o->pg_group = (uint32_t)v;
        return 0;
    case O_TIMEOUT:
        if (parse_u64(a, 1, 86400, &v))
            return usage_error("--timeout: '%s' is not a number of seconds", a);
        o->timeout_s = (uint32_t)v;
        return 0;
    case O_DUP:
        if (parse_rate(a, &o->dup_rate))
            return usage_error("--dup-rate: '%s' is not a share in [0, 1)", a);
        return 0;
    case O_RETX:
        if (parse_rate(a, &o->retransmit_rate))
            return usage_error("--retransmit-rate: '%s' is not a share in [0, 1)", a);
        return 0;
    case O_ZIPF:
        if (parse_double(a, 0, 10, &o->zipf))
            return usage_error("--zipf: '%s' is not a number from 0 to 10", a);
        return 0;
    case O_PEER_SECONDS:
        if (parse_double(a, 0.1, 86400, &o->peer_seconds))
            return usage_error("--peer-seconds: '%s' is not a number of seconds (>= 0.1)", a);
        return 0;
    case O_ELECTORS:
        if (parse_double(a, 0.01, 100, &o->electors_factor))
            return usage_error("--electors-factor: '%s' is not a number from 0.01 to 100", a);
        o->expected_ballots = EXPECTED_ELECTORS;
        return 0;
    case O_EXPECTED:
        if (strcmp(a, "auto") == 0)
            o->expected_ballots = EXPECTED_AUTO;
        else if (strcmp(a, "none") == 0)
            o->expected_ballots = EXPECTED_NONE;
        else if (parse_u64(a, 1, UINT64_C(1) << 36, &v) == 0)
            o->expected_ballots = (int64_t)v;
        else
            return usage_error("--expected-ballots: '%s' is not a number, auto or none", a);
        return 0;
    default:
        return usage_error("unknown or incomplete option");
    }
}

int bench_parse_args(struct bench_opts *o, int argc, char **argv)
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
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"peer-seconds", required_argument, NULL, O_PEER_SECONDS},
        {"peer-votes", required_argument, NULL, O_PEER_VOTES},
        {"window", required_argument, NULL, O_WINDOW},
        {"max-undurable", required_argument, NULL, O_UNDURABLE},
        {"checkpoint-ms", required_argument, NULL, O_CPMS},
        {"electors-factor", required_argument, NULL, O_ELECTORS},
        {"expected-ballots", required_argument, NULL, O_EXPECTED},
        {"pg-conns", required_argument, NULL, O_PGCONNS},
        {"pg-group", required_argument, NULL, O_PGGROUP},
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
        {"stream", no_argument, NULL, O_STREAM},
        {"no-stream", no_argument, NULL, O_NO_STREAM},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    set_defaults(o);
    bool peers_given = false, rounds_given = false;
    size_t cl = 0;
    for (int i = 0; i < argc && cl + 2 < sizeof(o->command); i++)
        cl += (size_t)snprintf(o->command + cl, sizeof(o->command) - cl, "%s%s", i ? " " : "",
                               argv[i]);

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        const char *a = optarg;
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 1;
        case O_PEERS:
            if (parse_peers(a, o))
                return usage_error("--peers: '%s' is not 'all' or a list of tallyd, "
                                   "tallyd_tls, redis_always, redis_everysec, redis, postgres, "
                                   "postgres_per_batch, limit",
                                   a);
            peers_given = true;
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
        case O_STREAM:
            o->stream = 1;
            break;
        case O_NO_STREAM:
            o->stream = -1;
            break;
        case O_TALLYD_ARG:
            if (o->n_tallyd_args == 8)
                return usage_error("%s", "--tallyd-arg: at most 8");
            o->tallyd_args[o->n_tallyd_args++] = a;
            break;
        case '?':
        case ':':
            return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        default:
            if (parse_number(c, a, o))
                return 2;
            rounds_given |= c == O_ROUNDS;
            break;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!peers_given)
        return usage_error("%s", "--peers is required (all, or a list of tallyd, tallyd_tls, "
                                 "redis_always, redis_everysec, postgres, postgres_per_batch, "
                                 "limit)");
    /* A streamed run is a scale run: one round of it is long enough for a figure. */
    o->streamed = o->stream > 0 || (o->stream == 0 && o->votes > WL_STREAM_AUTO_VOTES);
    if (o->streamed && !rounds_given)
        o->rounds = 1;
    return 0;
}
