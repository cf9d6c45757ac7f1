/* Option table, parsing and --help for tallyd. Owns no state beyond the config struct. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "core/addr.h"
#include "core/log.h"
#include "tally/protocol.h"

enum opt_kind { OPT_STR, OPT_ADDR, OPT_U32, OPT_U64, OPT_LEVEL, OPT_FLAG };

struct opt {
    const char *name;
    enum opt_kind kind;
    const char *def; /* default, as text; NULL for none */
    const char *arg;
    const char *help;
    uint64_t min, max;
};

static const struct opt opts[] = {
    {"db", OPT_STR, "", "CONNINFO",
     "PostgreSQL conninfo (libpq); empty uses the PG* environment variables", 0, 0},
    {"listen", OPT_ADDR, "127.0.0.1:7400", "HOST:PORT", "address for collectors (TCP)", 0, 0},
    {"http", OPT_ADDR, "127.0.0.1:7480", "HOST:PORT",
     "address for the dashboard, the results API, /metrics and health", 0, 0},
    {"checkpoint-ms", OPT_U32, "200", "N", "checkpoint interval in milliseconds", 10, 600000},
    {"backlog-votes", OPT_U64, "2000000", "N",
     "stop reading from collectors while this many votes are not yet durable", 1,
     UINT64_C(1) << 40},
    {"max-batch-votes", OPT_U32, "100000", "N", "largest batch accepted", 1, 10000000},
    {"max-frame-bytes", OPT_U32, "8388608", "N", "largest frame accepted", 1024, 1u << 30},
    {"expected-ballots", OPT_U64, "1000000", "N",
     "size the ballot set for this many voters up front (it grows past it)", 1, UINT64_C(1) << 36},
    {"shutdown-grace-ms", OPT_U32, "10000", "N",
     "on SIGTERM, how long to wait for PostgreSQL to take the final checkpoint", 0, 3600000},
    {"min-anonymity", OPT_U32, "100", "N",
     "store accepted ballot tokens in pages of at least N, apart from every count", 1, 32768},
    {"standby", OPT_FLAG, NULL, NULL,
     "if another tallyd writes this database, wait and take over when it stops (default: exit 1)",
     0, 0},
    {"log-level", OPT_LEVEL, "info", "LEVEL", "debug, info, warn or error", 0, 0},
    {"help", OPT_FLAG, NULL, NULL, "show this help and exit", 0, 0},
    {"version", OPT_FLAG, NULL, NULL, "show the version and exit", 0, 0},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static void usage(FILE *out)
{
    fprintf(out, "Usage: tallyd [OPTION]...\n"
                 "Counts votes streamed by collectors exactly once and checkpoints them to "
                 "PostgreSQL.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(out, "  %-28s %s", left, opts[i].help);
        if (opts[i].def && opts[i].def[0])
            fprintf(out, " (default %s)", opts[i].def);
        fputc('\n', out);
    }
    fprintf(out, "\nSignals: SIGTERM or SIGINT writes a final checkpoint and exits.\n"
                 "Exit status: 0 clean stop with everything durable; 1 runtime failure "
                 "(listen, database, final checkpoint); 2 usage error.\n");
}

static int apply(struct tallyd_config *cfg, const struct opt *o, const char *val)
{
    uint64_t v;
    const char *n = o->name;
    switch (o->kind) {
    case OPT_STR:
        cfg->db = val;
        return 0;
    case OPT_ADDR:
        if (strcmp(n, "listen") == 0)
            return addr_split(val, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port);
        return addr_split(val, cfg->http_host, sizeof(cfg->http_host), &cfg->http_port);
    case OPT_LEVEL:
        cfg->log_level = log_level_parse(val);
        return cfg->log_level < 0 ? -1 : 0;
    case OPT_U32:
    case OPT_U64:
        if (parse_u64(val, o->max, &v) || v < o->min)
            return -1;
        if (strcmp(n, "checkpoint-ms") == 0)
            cfg->checkpoint_ms = (uint32_t)v;
        else if (strcmp(n, "backlog-votes") == 0)
            cfg->backlog_votes = v;
        else if (strcmp(n, "max-batch-votes") == 0)
            cfg->max_batch_votes = (uint32_t)v;
        else if (strcmp(n, "max-frame-bytes") == 0)
            cfg->max_frame_bytes = (uint32_t)v;
        else if (strcmp(n, "expected-ballots") == 0)
            cfg->expected_ballots = v;
        else if (strcmp(n, "shutdown-grace-ms") == 0)
            cfg->shutdown_grace_ms = (uint32_t)v;
        else if (strcmp(n, "min-anonymity") == 0)
            cfg->min_anonymity = (uint32_t)v;
        return 0;
    case OPT_FLAG:
        return 0;
    }
    return -1;
}

static void bad_value(const struct opt *o, const char *val)
{
    fprintf(stderr, "tallyd: --%s: invalid value '%s'", o->name, val);
    if (o->kind == OPT_U32 || o->kind == OPT_U64)
        fprintf(stderr, " (an integer from %llu to %llu)", (unsigned long long)o->min,
                (unsigned long long)o->max);
    else if (o->kind == OPT_ADDR)
        fprintf(stderr, " (expected HOST:PORT)");
    fprintf(stderr, "\nTry 'tallyd --help'.\n");
}

int tallyd_config_parse(struct tallyd_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].def && apply(cfg, &opts[i], opts[i].def) != 0)
            return -1; /* a default that does not parse is a bug caught by any test */

    struct option lopts[N_OPTS + 1];
    for (size_t i = 0; i < N_OPTS; i++)
        lopts[i] = (struct option){
            opts[i].name, opts[i].kind == OPT_FLAG ? no_argument : required_argument, NULL, (int)i};
    lopts[N_OPTS] = (struct option){0};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == '?' || c == ':') {
            fprintf(stderr, "tallyd: unknown or incomplete option '%s'\nTry 'tallyd --help'.\n",
                    argv[optind - 1]);
            return -1;
        }
        const struct opt *o = &opts[c];
        if (strcmp(o->name, "help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(o->name, "standby") == 0) {
            cfg->standby = 1;
            continue;
        }
        if (strcmp(o->name, "version") == 0) {
            printf("tallyd 0.1.0 (protocol %u)\n", TALLY_PROTOCOL_VERSION);
            return 1;
        }
        if (apply(cfg, o, optarg) != 0) {
            bad_value(o, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tallyd: unexpected argument '%s'\nTry 'tallyd --help'.\n", argv[optind]);
        return -1;
    }
    return 0;
}
